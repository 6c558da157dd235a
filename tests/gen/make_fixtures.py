#!/usr/bin/python3
"""Build the golden fixtures committed to the repo, so the C-only test needs no Python.

    python3 tests/gen/make_fixtures.py        (writes into tests/fixtures/)

For each of llama_gqa, qwen2 and gpt2 (the small variants of tests/gen/make_models.py: dim 64,
2 layers, vocab 512, context 128, so each GGUF stays under 400 KB):

  <variant>.gguf         export.py's F32 output
  <variant>.prompt.txt   the exact prompt bytes (no trailing newline)
  <variant>.ids.txt      prompt ids + N_GEN greedy ids from the float64 PyTorch reference,
                         space separated on one line
  <variant>.logits.npy   float32 [T, vocab], T = P + N_GEN - 1: the reference logits at every
                         fed position, exactly what `./run <variant>.gguf -i "$(cat prompt)"
                         -n N_GEN -t 0 --dump-logits out.npy` must write

Greedy ties would make the golden test flaky, so every generated step must win by a clear
margin (MIN_MARGIN); otherwise the script fails and a different prompt should be chosen.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "py"))  # reference.py; make_models.py is beside this file

import make_models  # noqa: E402
from reference import Reference  # noqa: E402

FIXTURES = TESTS / "fixtures"
EXPORT = TESTS.parent / "export.py"
VARIANTS = ["llama_gqa", "qwen2", "gpt2"]
PROMPT = "And God said, Let there be light: and there was light."
N_GEN = 32
MAX_BYTES = 400 * 1024
MIN_MARGIN = 1e-3  # top-1 minus top-2 reference logit at each generated step


def build(variant, tmp):
    hf = make_models.make_model(variant, Path(tmp) / variant, small=True)
    gguf = FIXTURES / f"{variant}.gguf"
    subprocess.run([sys.executable, str(EXPORT), str(hf), str(gguf)], check=True,
                   stderr=subprocess.DEVNULL)
    size = gguf.stat().st_size
    assert size < MAX_BYTES, f"{gguf} is {size} bytes (limit {MAX_BYTES})"

    ref = Reference(hf)  # float64
    prompt_ids = ref.encode(PROMPT)
    gen = ref.greedy(prompt_ids, N_GEN)
    ids = prompt_ids + gen
    logits = ref.logits(ids[:-1])  # the last generated token is never fed
    P = len(prompt_ids)
    assert logits.shape[0] == P + N_GEN - 1
    margins = []
    for k in range(N_GEN):
        row = np.sort(logits[P - 1 + k])
        margins.append(row[-1] - row[-2])
    assert min(margins) >= MIN_MARGIN, f"{variant}: greedy near-tie (margin {min(margins):.2e})"
    assert int(np.argmax(logits[P - 1])) == gen[0]

    (FIXTURES / f"{variant}.prompt.txt").write_bytes(PROMPT.encode())
    (FIXTURES / f"{variant}.ids.txt").write_text(" ".join(map(str, ids)) + "\n")
    np.save(FIXTURES / f"{variant}.logits.npy", logits.astype(np.float32))
    print(f"{variant}: {size} bytes, P={P}, T={logits.shape[0]}, vocab={logits.shape[1]}, "
          f"min greedy margin {min(margins):.3f}, text {ref.decode(gen)!r}")


def main():
    FIXTURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for v in VARIANTS:
            build(v, tmp)


if __name__ == "__main__":
    main()
