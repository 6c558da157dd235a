"""The F16 KV cache (--kv-cache f16) against the PyTorch reference.

    /usr/bin/python3 -m pytest -q -s tests/py/test_kv_cache.py

Each model is run greedily (prompt + 64 generated tokens, as test_engine.py) with --kv-cache f16
and --dump-logits, and its logits at every position are compared with reference.py on
the same ids, twice:
  - against the plain reference: the error the F16 cache itself brings (keys and values rounded
    to 11 significant bits), held to F16_TOL = 5e-3 x max(1, max|ref|) per position, a measured
    bound: 3.3e-4 .. 1.1e-3 over these nine models on 2026-11-27 (gemma3 the worst), while their
    F32 cache's logits stay within test_engine.py's TOL = 1e-4 (measured <= 1.2e-6). The F16
    logits must not be the F32 ones bit for bit, so that an ignored flag fails.
  - against the reference whose keys and values are rounded to float16 as the engine stores them
    (Reference.kv_f16): the engine computes what its cache holds, so this error is the float
    error plus the rare key or value that rounds one half-step apart (the engine rounds its
    float32 keys, the reference its float64 ones: a value within 1e-7 of a midpoint between two
    halves goes either way). Measured 1e-6 .. 2.0e-4 (mistral_window); held to ROUNDED_TOL = 1e-3,
    and to at most half the error against the plain reference (measured: 3.6x .. 630x smaller),
    so that the F16 error is shown to be the rounding of the cache and nothing else.
1 and 2 threads give the same bits with an F16 cache; a prompt in one batch and token by token
(-b 1) agree within KV16_TOL = 3e-4 (measured 3.3e-5: the two paths' keys differ in float
rounding, and a few then round to different halves); -v counts 2 bytes per cached element;
--dump-attn reads the F16 cache.
"""

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import ERRORS, need_run, run
from reference import Reference

PROMPT = "In the beginning God created the heaven and the earth."
N_GEN = 64
TOL = 1e-4       # relative to max(1, max|ref|), per position (test_engine.py's F32 bound)
F16_TOL = 5e-3      # the F16 cache against the plain reference: measured, see the docstring
ROUNDED_TOL = 1e-3  # against the reference with F16 keys and values: measured, see the docstring
KV16_TOL = 3e-4     # -b 1 vs the default batch with an F16 cache, relative

# GQA, MQA, biases, a sliding window, q/k norms, Gemma 3's scale and local layers, fused qkv,
# GPT-2 (learned positions, LayerNorm)
VARIANTS = ["llama_gqa", "llama_mqa", "llama_bias", "mistral_window", "qwen2", "qwen3", "gemma3",
            "phi3", "gpt2"]


def record(line):
    print(line)
    with open(ERRORS, "a") as f:
        f.write(line + "\n")


def greedy(model, *extra):
    """./run MODEL -i PROMPT -n 64 -t 0 --dump-logits EXTRA; returns the logits [T, V]."""
    out = Path(f"{model}.{'_'.join(a.strip('-') for a in extra) or 'default'}.npy")
    run(model, "-i", PROMPT, "-n", str(N_GEN), "-t", "0", "--dump-logits", str(out), *extra)
    return np.load(out)


def fed_ids(model, logits, n=N_GEN):
    """The ids fed to the model: the prompt, then every generated token (n) but the last."""
    prompt = [int(t) for t in run(model, "--tokenize", "-i", PROMPT).stdout.split()]
    P = len(prompt)
    assert logits.shape[0] == P + n - 1
    return prompt + [int(np.argmax(logits[P - 1 + k])) for k in range(n - 1)]


def rel_err(ours, ref):
    """Per-position max|ours - ref| / max(1, max|ref|)."""
    return np.abs(ours - ref).max(axis=1) / np.maximum(1.0, np.abs(ref).max(axis=1))


@pytest.mark.parametrize("variant", VARIANTS)
def test_f16_cache_logits(build, variant):
    need_run()
    files = build(variant)
    model = files["f32"]
    f16 = greedy(model, "--kv-cache", "f16")
    f32 = greedy(model)
    assert f16.shape == f32.shape
    assert not np.array_equal(f16, f32), "--kv-cache f16 gave the F32 cache's logits"
    ids = fed_ids(model, f16)
    ref = Reference(files["hf"])
    plain = ref.logits(ids)
    ref.kv_f16 = True
    rounded = ref.logits(ids)
    assert not np.array_equal(plain, rounded)
    err_rounded, err_plain = rel_err(f16, rounded).max(), rel_err(f16, plain).max()
    ids32 = fed_ids(model, f32)
    err32 = rel_err(f32, Reference(files["hf"]).logits(ids32)).max()
    record(f"{variant:16s} --kv-cache f16: max rel err {err_rounded:.2e} against the reference "
           f"with F16 keys and values, {err_plain:.2e} against the plain one (F32 cache: "
           f"{err32:.2e}), {f16.shape[0]} positions")
    assert err_plain <= F16_TOL
    assert err_rounded <= ROUNDED_TOL and err_rounded <= err_plain / 2
    assert err32 <= TOL


def test_f16_cache_threads_and_batch(build):
    """1 and 2 threads: the same bits (every row and attention task is one thread's); the prompt
    token by token (-b 1, the decoding path) against one batch (the prompt path)."""
    need_run()
    model = build("llama_gqa")["f32"]
    one = greedy(model, "--kv-cache", "f16", "--threads", "1")
    two = greedy(model, "--kv-cache", "f16", "--threads", "2")
    np.testing.assert_array_equal(one, two)
    by_token = greedy(model, "--kv-cache", "f16", "-b", "1")
    assert rel_err(by_token, one).max() <= KV16_TOL


def test_f16_cache_bytes(build):
    """-v: the cache's size at 2 bytes per element, per token and in the cost table."""
    need_run()
    model = build("llama_gqa")["f32"]
    per_token = {}
    for kv in ("f32", "f16"):
        err = run(model, "-v", "-n", "8", "-t", "0", "-i", PROMPT, "--kv-cache", kv).stderr.decode()
        m = re.search(r"kv cache: 2 \(k, v\) x (\d+) layers x (\d+) kv dim x (\d+) bytes = (\d+) "
                      r"bytes per token", err)
        assert m, err
        layers, kv_dim, elt, total = (int(x) for x in m.groups())
        assert elt == {"f32": 4, "f16": 2}[kv] and total == 2 * layers * kv_dim * elt
        per_token[kv] = total
    assert per_token["f16"] * 2 == per_token["f32"]


def test_f16_cache_attention_dump(build, tmp_path):
    """--dump-attn reads the F16 cache: the probabilities within test_attention.py's 1e-5 of the
    reference with F16 keys and values (measured 1.2e-6), rows summing to 1, and not the F32
    cache's bits."""
    need_run()
    files = build("llama_gqa")
    model = files["f32"]
    dumps = {}
    for kv in ("f32", "f16"):
        out = tmp_path / f"attn.{kv}.npy"
        logits = tmp_path / f"logits.{kv}.npy"
        run(model, "-i", PROMPT, "-n", "8", "-t", "0", "--kv-cache", kv, "--dump-attn", str(out),
            "--dump-logits", str(logits))
        dumps[kv] = (np.load(out), np.load(logits))
    att16, logits16 = dumps["f16"]
    assert not np.array_equal(att16, dumps["f32"][0])
    np.testing.assert_allclose(att16.sum(axis=-1), 1.0, atol=1e-5)
    ref = Reference(files["hf"])
    ref.kv_f16 = True
    want = ref.attention(fed_ids(model, logits16, 8))
    err = np.abs(att16 - want).max()
    record(f"llama_gqa        --kv-cache f16 --dump-attn: max abs err {err:.2e} against the "
           f"reference with F16 keys and values")
    assert err <= 1e-5

