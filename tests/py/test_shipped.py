"""Checks of the shipped model models/kjv.gguf (trained by train.py) against the PyTorch reference.

    cd /work/main && make && /usr/bin/python3 -m pytest -q -s tests/py/test_shipped.py
    KJV_GGUF=build/kjv-smoke.gguf KJV_MIN_WORD_FRACTION=0 ... (the --smoke model: same checks,
    except that its word figure is only printed)

The HF directory is not shipped, so tests/py/gguf_to_hf.py rebuilds one from the GGUF (q/k rows
un-permuted, F16 widened exactly) and reference.py (float64) runs it. Token ids come from
./run --tokenize. The files the tests need sit next to the GGUF: kjv-valid.txt (held-out
chapters) and kjv-words.txt (the KJV's words); train.py writes both.

- greedy: `./run M -i "And the LORD said" -n 128 -t 0 --dump-logits X.npy`. The engine's picks are
  argmax of its dumped logits; the reference runs prompt + picks in one pass. At every position
  max|ours - ref| <= 1e-4 * max(1, max|ref|), and each pick is the reference's argmax or, if not,
  a tie: ref[pick] >= max(ref) - that bound. 128 tokens unless the engine stopped at EOS.
- perplexity: `./run M --ppl kjv-valid.txt` prints `perplexity: X`; the reference computes the
  same definition (whole file tokenized once, BOS included; windows of L = context length, stride
  L/2, each from position 0; targets t_i for i in [max(prev_end, b+1), end) scored with the logits
  at i-1; exp of the mean NLL) and the two agree within 0.1% (relative).
- word validity: temperature 0.8 (default top-k/top-p), seeds 1..10, 200 tokens each from the
  same prompt. A word is a whitespace-separated piece of the generated text with leading and
  trailing non-letters (punctuation, digits) stripped, lower-cased; pieces without letters are
  skipped. At least 95% of the words (counted with multiplicity, over all seeds) must occur in the
  King James Bible's word set (kjv-words.txt, built with the same rule). Set KJV_MIN_WORD_FRACTION
  to change the threshold (e.g. 0 for the smoke model).
"""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F
import torch

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS / "py"))

from gguf_to_hf import gguf_to_hf  # noqa: E402
from reference import Reference  # noqa: E402

sys.path.insert(0, str(ROOT))
from train import words  # noqa: E402  (the one word rule, also used to list the corpus words)

RUN = Path(os.environ.get("RUN_BIN", ROOT / "run"))
MODEL = Path(os.environ.get("KJV_GGUF", ROOT / "models" / "kjv.gguf"))
VALID = MODEL.parent / "kjv-valid.txt"
WORDS = MODEL.parent / "kjv-words.txt"
PROMPT = "And the LORD said"
N_GEN = 128
TOL = 1e-4
MIN_WORDS = float(os.environ.get("KJV_MIN_WORD_FRACTION", "0.95"))


def run(*args, input=None):
    r = subprocess.run([str(RUN), str(MODEL), *map(str, args)], capture_output=True, timeout=600, input=input)
    return r


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    if not MODEL.exists():
        pytest.skip(f"{MODEL} not found: train it with `/usr/bin/python3 train.py` (or set KJV_GGUF)")
    if not RUN.exists():
        pytest.skip(f"{RUN} not found: build it with `make` in {ROOT} (or set RUN_BIN)")
    return Reference(gguf_to_hf(MODEL, tmp_path_factory.mktemp("kjv-hf")))


def tokenize(text):
    r = run("--tokenize", "-i", "-", input=text.encode())
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return [int(t) for t in r.stdout.split()]


def test_greedy_matches_reference(ref, tmp_path):
    dump = tmp_path / "logits.npy"
    r = run("-i", PROMPT, "-n", N_GEN, "-t", 0, "--dump-logits", dump)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    prompt = tokenize(PROMPT)
    P = len(prompt)
    ours = np.load(dump).astype(np.float64)
    picks = [int(np.argmax(ours[P - 1 + k])) for k in range(ours.shape[0] - P + 1)]
    stopped = b"[end of text]" in r.stderr  # the engine stops at EOS (the reference does not)
    assert len(picks) == N_GEN or stopped, f"{len(picks)} tokens generated, expected {N_GEN}"
    theirs = ref.logits(prompt + picks[:-1])
    assert theirs.shape == ours.shape
    worst = 0.0
    for i in range(ours.shape[0]):
        bound = TOL * max(1.0, np.abs(theirs[i]).max())
        err = np.abs(ours[i] - theirs[i]).max()
        worst = max(worst, err / bound * TOL)
        assert err <= bound, f"position {i}: max|ours - ref| = {err:.3g} > {bound:.3g}"
        if i >= P - 1:
            pick = picks[i - P + 1]
            best = int(np.argmax(theirs[i]))
            assert pick == best or theirs[i, pick] >= theirs[i, best] - bound, \
                f"position {i}: engine picked {pick}, reference {best} (logits {theirs[i, pick]} vs {theirs[i, best]})"
    print(f"\ngreedy: {len(picks)} tokens identical to the reference; worst relative logit error {worst:.2e}")


def reference_perplexity(ref, ids):
    L = ref.cfg["max_position_embeddings"]
    total, count, prev_end, b, N = 0.0, 0, 0, 0, len(ids)
    while True:
        end = min(b + L, N)
        logp = F.log_softmax(torch.from_numpy(ref.logits(ids[b:end])), dim=-1).numpy()
        for i in range(max(prev_end, b + 1), end):
            total -= logp[i - 1 - b, ids[i]]
            count += 1
        prev_end = end
        if end == N:
            return math.exp(total / count), count
        b += L // 2


def test_perplexity_matches_reference(ref):
    if not VALID.exists():
        pytest.skip(f"{VALID} not found (train.py writes it next to the GGUF)")
    r = run("--ppl", VALID)
    if r.returncode != 0 and b"--ppl" in r.stderr:
        pytest.skip(f"./run does not support --ppl yet: {r.stderr.decode(errors='replace').strip()}")
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    m = re.search(rb"^perplexity: (\S+)\s*$", r.stdout, re.M)
    assert m, f"no 'perplexity: <value>' line on stdout: {r.stdout[:200]!r}"
    ours = float(m.group(1))
    theirs, n = reference_perplexity(ref, tokenize(VALID.read_text(encoding="utf-8")))
    print(f"\nperplexity on {VALID.name} ({n} targets): engine {ours:.4f}, reference {theirs:.4f}")
    assert abs(ours - theirs) <= 1e-3 * theirs


def test_generated_words_are_kjv_words(ref):
    if not WORDS.exists():
        pytest.skip(f"{WORDS} not found (train.py writes it next to the GGUF)")
    known = set(WORDS.read_text().split())
    total = valid = 0
    unknown = []
    for seed in range(1, 11):
        r = run("-i", PROMPT, "-n", 200, "-t", 0.8, "-s", seed)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        for w in words(r.stdout.decode("utf-8", errors="replace")):
            total += 1
            valid += w in known
            if w not in known:
                unknown.append(w)
    frac = valid / max(total, 1)
    print(f"\nwords: {valid}/{total} = {100 * frac:.2f}% occur in the KJV (threshold {100 * MIN_WORDS:.0f}%); "
          f"unknown e.g. {unknown[:15]}")
    assert total > 0 and frac >= MIN_WORDS
