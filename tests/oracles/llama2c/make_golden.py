#!/usr/bin/python3
"""Run llama2.c itself on the test checkpoints and record what it produced, as the goldens of
tests/py/test_llama2c.py and tests/c/golden.sh (tests/fixtures/llama2c/).

    git clone https://github.com/karpathy/llama2.c /tmp/llama2.c   # outside this repository
    git -C /tmp/llama2.c checkout 350e04f                             # the commit the goldens used
    /usr/bin/python3 tests/oracles/llama2c/make_golden.py /tmp/llama2.c

Builds llama2.c's run.c and runq.c (gcc -O2, no OpenMP) and harness.c (its encode and greedy loop
printing ids) in a temporary folder, writes the checkpoints with tests/gen/make_llama2c.py, and
records: the files' SHA-256, llama2.c's encode on a set of texts (our 512-piece tokenizer.bin, and
Llama 2's 32000 when llama.cpp's vocabulary is in ../shared/peers), and for each checkpoint and
prompt llama2.c's greedy ids and the exact stdout of `run MODEL -z TOK -t 0 -n STEPS -i PROMPT`
(runq for version 2; llama2.c has no reader of version 1).
"""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "tests" / "gen"))
import make_llama2c as gen  # noqa: E402

LLAMA_VOCAB = REPO.parent / "shared/peers/llama.cpp-tokenizer-tests/ggml-vocab-llama-spm.gguf"
OUT = REPO / "tests/fixtures/llama2c"
PROMPTS = ["In the beginning God created", "And the LORD said unto", ""]
STEPS = 40
# llama2.c's reader for each checkpoint's format
READERS = {"l2c_legacy": "run", "l2c_unshared_legacy": "run", "l2c_v2": "runq", "l2c_v2_gs16": "runq"}
EXTRA_TEXTS = ["<0x41>", "<s>hi</s>", "<unk>", " <0x0A> ", "a<0xE6>b", "\n<s>\n", "\u2581x",
               "Once upon a time", "\u2581 already has a sentencepiece space \u2581\u2581 symbol"]


def texts():
    t = json.loads((REPO / "tests/fixtures/tokenizer_texts.json").read_text())
    inp = LLAMA_VOCAB.with_name(LLAMA_VOCAB.name + ".inp")
    if inp.exists():
        t += [x for x in inp.read_text().split("\n__ggml_vocab_test__\n") if x]
    seen, out = set(), []
    for x in t + EXTRA_TEXTS:
        if "\0" not in x and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def main(src):
    src = Path(src)
    tmp = Path(tempfile.mkdtemp())
    try:
        for f in ("run.c", "runq.c"):
            shutil.copy(src / f, tmp / f)
        shutil.copy(HERE / "harness.c", tmp / "harness.c")
        cc = ["gcc", "-O2", "-o"]
        subprocess.run(cc + [str(tmp / "run"), str(tmp / "run.c"), "-lm"], check=True)
        subprocess.run(cc + [str(tmp / "runq"), str(tmp / "runq.c"), "-lm"], check=True)
        subprocess.run(cc + [str(tmp / "harness"), str(tmp / "harness.c"), "-lm"], check=True)
        subprocess.run(cc + [str(tmp / "harnessq"), "-DRUNQ", str(tmp / "harness.c"), "-lm"], check=True)
        models = gen.write_models(tmp / "m")
        tok = models / "tok512.bin"
        golden = {"llama2c_commit": subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"],
                                                   capture_output=True, text=True).stdout.strip(),
                  "sha256": {p.name: gen.sha256(p) for p in sorted(models.glob("*.bin"))},
                  "texts": texts(), "encode": {}, "greedy": []}

        def encode(tok_path, vocab):
            out = subprocess.run([str(tmp / "harness"), "tok", str(tok_path), str(vocab)] + golden["texts"],
                                 capture_output=True, text=True, check=True).stdout
            return [[int(i) for i in line.split()] for line in out.split("\n")[:-1]]

        golden["encode"]["tok512"] = encode(tok, 512)
        if LLAMA_VOCAB.exists():
            llama_tok = tmp / "llama_tokenizer.bin"
            llama_tok.write_bytes(gen.tokenizer_bin_from_gguf(LLAMA_VOCAB))
            # our writer, from llama.cpp's copy of the vocabulary, gives llama2.c's own file
            assert llama_tok.read_bytes() == (src / "tokenizer.bin").read_bytes()
            golden["sha256"]["llama_tokenizer.bin"] = gen.sha256(llama_tok)
            golden["encode"]["llama"] = encode(llama_tok, 32000)
        for name, reader in READERS.items():
            for prompt in PROMPTS:
                h = tmp / ("harnessq" if reader == "runq" else "harness")
                ids = subprocess.run([str(h), "gen", str(models / f"{name}.bin"), str(tok), str(STEPS), prompt],
                                     capture_output=True, text=True, check=True).stdout
                p, g = ids.split("|")
                cmd = [reader, f"{name}.bin", "-z", "tok512.bin", "-t", "0", "-n", str(STEPS), "-i", prompt]
                stdout = subprocess.run([str(tmp / reader)] + cmd[1:], cwd=models, capture_output=True,
                                        check=True).stdout.decode("utf-8", "replace")
                golden["greedy"].append({"model": name, "prompt": prompt, "steps": STEPS, "command": cmd,
                                         "prompt_ids": [int(i) for i in p.split()],
                                         "ids": [int(i) for i in g.split()], "stdout": stdout})
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "golden.json").write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
        # the committed tiny checkpoint (tests/c: bad_input.sh, golden.sh) and its llama2.c output
        gen.main(["--tiny", str(OUT)])
        cmd = ["run", "tiny.bin", "-t", "0", "-n", "24", "-i", "In the beginning"]
        tiny = subprocess.run([str(tmp / "run")] + cmd[1:], cwd=OUT, capture_output=True, check=True).stdout
        (OUT / "tiny.golden.txt").write_bytes(tiny)
        print(f"wrote {OUT}/golden.json, tiny.bin, tokenizer.bin, tiny.golden.txt")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
