#!/usr/bin/python3
"""Build the golden fixtures committed to the repo, so the C-only test needs no Python.

    /usr/bin/python3 tests/gen/make_fixtures.py NAME ...     (writes into tests/fixtures/)

NAME is one of the FIXTURES below. Each is a model of tests/gen/make_models.py, exported by
export.py, and what the float64 PyTorch reference (reference.py) computes on it:

  <name>.gguf         export.py's output (F32, or F16 for llama_long)
  <name>.prompt.txt   the exact prompt bytes (no trailing newline)
  <name>.ids.txt      prompt ids + n_gen greedy ids from the reference, space separated on one line
  <name>.logits.npy   float32 [T, vocab], T = P + n_gen - 1: the reference logits at every fed
                      position, exactly what `./run <name>.gguf -i "$(cat prompt)" -n n_gen -t 0
                      --dump-logits out.npy` must write

  llama_gqa, qwen2, gpt2   the small variants (dim 64, 2 layers, vocabulary 512, context 128;
                           under 400 KB each), 51 or 49 positions
  llama_long               100 positions, so the KV cache's second tile of 64 keys is used, with
                           a 64-piece tokenizer to keep 100 rows of logits small (25 KB); RMSNorm
                           epsilon 1e-3 against embeddings of mean square 2.5e-3, F16 weights

The committed llama_gqa, qwen2 and gpt2 GGUFs predate export.py's 64-byte alignment (they are
32-byte aligned, a layout the engine must keep reading): made again they differ in
general.alignment and padding, not in any value, so they are left as they are.

Greedy ties would make the golden test flaky, so every generated step must win by a clear
margin (MIN_MARGIN); otherwise the script fails and a different prompt should be chosen.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS.parent))  # reference.py; make_models.py is beside this file

import make_models  # noqa: E402
from make_tokenizers import GENESIS  # noqa: E402
from reference import Reference  # noqa: E402

FIXTURES = TESTS / "fixtures"
EXPORT = TESTS.parent / "export.py"
PROMPT = "And God said, Let there be light: and there was light."
# name: the GGUF's dtype, the prompt, greedy tokens generated, size limit of the GGUF
FIXTURE_SPECS = {
    "llama_gqa": dict(dtype="f32", prompt=PROMPT, n_gen=32, max_bytes=400 * 1024),
    "qwen2": dict(dtype="f32", prompt=PROMPT, n_gen=32, max_bytes=400 * 1024),
    "gpt2": dict(dtype="f32", prompt=PROMPT, n_gen=32, max_bytes=400 * 1024),
    "llama_long": dict(dtype="f16", prompt=" ".join(GENESIS[3:5]), n_gen=34, max_bytes=64 * 1024),
}
MIN_MARGIN = 1e-3  # top-1 minus top-2 reference logit at each generated step


def build(name, tmp):
    spec = FIXTURE_SPECS[name]
    hf = make_models.make_model(name, Path(tmp) / name, small=name in make_models.VARIANTS)
    gguf = FIXTURES / f"{name}.gguf"
    subprocess.run([sys.executable, str(EXPORT), str(hf), str(gguf), "--dtype", spec["dtype"]],
                   check=True, stderr=subprocess.DEVNULL)
    size = gguf.stat().st_size
    assert size < spec["max_bytes"], f"{gguf} is {size} bytes (limit {spec['max_bytes']})"

    ref = Reference(hf, weights=spec["dtype"])  # float64, on the weights the file holds
    prompt_ids = ref.encode(spec["prompt"])
    n_gen = spec["n_gen"]
    gen = ref.greedy(prompt_ids, n_gen)
    ids = prompt_ids + gen
    logits = ref.logits(ids[:-1])  # the last generated token is never fed
    P = len(prompt_ids)
    assert logits.shape[0] == P + n_gen - 1
    margins = []
    for k in range(n_gen):
        row = np.sort(logits[P - 1 + k])
        margins.append(row[-1] - row[-2])
    assert min(margins) >= MIN_MARGIN, f"{name}: greedy near-tie (margin {min(margins):.2e})"
    assert int(np.argmax(logits[P - 1])) == gen[0]

    (FIXTURES / f"{name}.prompt.txt").write_bytes(spec["prompt"].encode())
    (FIXTURES / f"{name}.ids.txt").write_text(" ".join(map(str, ids)) + "\n")
    np.save(FIXTURES / f"{name}.logits.npy", logits.astype(np.float32))
    print(f"{name}: {size} bytes, P={P}, T={logits.shape[0]}, vocab={logits.shape[1]}, "
          f"min greedy margin {min(margins):.3f}, text {ref.decode(gen)!r}")


def main(names):
    unknown = [n for n in names if n not in FIXTURE_SPECS]
    if not names or unknown:
        sys.exit(f"usage: make_fixtures.py NAME ...  (NAME: {' '.join(FIXTURE_SPECS)})")
    FIXTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for n in names:
            build(n, tmp)


if __name__ == "__main__":
    main(sys.argv[1:])
