"""The quantized types: the engine's dequantizer bit for bit against an independent numpy decoder
(quant_decode.py) on random blocks with edge values; export.py's quantizers (quants.py) within
stated errors; models in every type against the PyTorch reference run on the dequantized weights;
and llama.cpp (the live v0.4.0 of test_llamacpp.py) agreeing on greedy tokens for files of every
type; the same two checks on files quantized by llama.cpp itself (tests/oracles/llama_quantize.c).

    make && /usr/bin/python3 -m pytest -q tests/py/test_quant.py
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, RUN, export, need_run
from gguf_read import read_gguf
from gguf_to_hf import gguf_to_hf
from quant_decode import BLOCKS, BY_NAME, decode
from reference import Reference
import test_llamacpp as T

sys.path.insert(0, str(ROOT))
import quants  # noqa: E402

DEQUANT = ROOT / "build" / "native" / "tests" / "c" / "dequant"
PROMPT = "In the beginning God created the heaven and the earth."
N_GEN = 24

# ----------------------------------------------------------------------------------------------
# Dequantization: the engine's C against quant_decode.py, bit for bit

# Where each type keeps its half scales (byte offsets in a block), for the edge values.
HALVES = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "IQ4_NL": [0],
          "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
          "IQ4_XS": [0], "IQ3_S": [0], "IQ3_XXS": [0], "IQ2_XXS": [0], "IQ2_XS": [0], "IQ2_S": [0],
          "IQ1_S": [0]}
EDGE_HALVES = [0x0000, 0x8000, 0x0001, 0x8001, 0x03ff, 0x0400, 0x3c00, 0xbc00, 0x7bff, 0xfbff]


def random_halves(n, rng):
    """n finite halves of either sign, every tenth an edge value."""
    h = rng.integers(0, 0x7c00, size=n, dtype=np.uint16) | \
        (rng.integers(0, 2, size=n, dtype=np.uint16) << 15)
    h[::10] = np.resize(EDGE_HALVES, h[::10].shape)
    return h


def random_blocks(ttype, n, rng):
    """n random blocks: random bytes (every level and packed scale value occurs), half scales
    drawn from finite values with every tenth block an edge value (0, -0, subnormals, 65504, ...),
    one block of all-0x00 levels and one of all-0xFF."""
    name, _, size = BLOCKS[ttype]
    raw = rng.integers(0, 256, size=(n, size), dtype=np.uint8)
    for col in HALVES.get(name, []):
        h = random_halves(n, rng)
        raw[:, col:col + 2] = h.astype("<u2").view(np.uint8).reshape(n, 2)
    if name == "Q8_K":  # a float scale
        d = rng.standard_normal(n).astype("<f4")
        d[::10] = 0
        raw[:, 0:4] = d.view(np.uint8).reshape(n, 4)
    keep = {c + k for c in HALVES.get(name, []) for k in (0, 1)}
    levels = [c for c in range(size) if c not in keep and not (name == "Q8_K" and c < 4)]
    raw[0, levels], raw[1, levels] = 0x00, 0xFF
    if name == "IQ1_M":  # its half is the top nibbles of the four u16 scales, lowest first
        h = random_halves(n, rng)
        for k in range(4):
            col = 48 + 2 * k + 1
            raw[:, col] = (raw[:, col] & 15) | (((h >> (4 * k)) & 15) << 4).astype(np.uint8)
    return raw


@pytest.mark.parametrize("name", [BLOCKS[t][0] for t in sorted(BLOCKS)])
def test_dequantize_bit_exact(name, tmp_path):
    if not DEQUANT.exists():
        pytest.skip("build/native/tests/c/dequant missing: make test-py builds it")
    ttype = BY_NAME[name]
    raw = random_blocks(ttype, 2000, np.random.default_rng(ttype))
    (tmp_path / "in").write_bytes(raw.tobytes())
    subprocess.run([str(DEQUANT), str(ttype), str(tmp_path / "in"), str(tmp_path / "out")],
                   check=True, timeout=60)
    ours = np.fromfile(tmp_path / "out", dtype="<f4")
    theirs = decode(ttype, raw.tobytes())
    assert ours.shape == theirs.shape
    diff = np.flatnonzero(ours.view(np.uint32) != theirs.view(np.uint32))
    assert diff.size == 0, f"{name}: {diff.size} weights differ, first at {diff[0]}: " \
                           f"C {ours[diff[0]]!r}, numpy {theirs[diff[0]]!r}"
    assert np.isfinite(theirs).all() and np.abs(theirs).max() > 0  # edges, not inf/NaN scales


# ----------------------------------------------------------------------------------------------
# export.py's quantizers: what they write decodes (quant_decode.py) close to the weights

# RMS error / RMS weight on Gaussian weights (512 x 256), measured 2026-11-27, with ~15% margin;
# levels of a uniform quantizer of the type's bits on a Gaussian would give about these numbers.
RMSE = {"Q2_K": 0.31, "Q3_K": 0.17, "IQ4_NL": 0.086, "Q4_0": 0.096, "Q4_K": 0.084, "Q4_1": 0.083,
        "Q5_0": 0.047, "Q5_K": 0.043, "Q5_1": 0.042, "Q6_K": 0.0195, "Q8_0": 0.006}


@pytest.mark.parametrize("name", sorted(RMSE))
def test_quantizer_error(name):
    ttype = BY_NAME[name]
    rng = np.random.default_rng(1)
    w = rng.standard_normal((512, 256)).astype(np.float32)
    w[3] = 0.0                        # an all-zero row: all-zero blocks
    w[5, :32] = 1e-30                 # scales that are 0 as halves
    w[7] = np.abs(w[7])               # all positive: K-quants' min is clamped to 0
    w[9, 10] = 40.0                   # an outlier
    raw = quants.quantize(ttype, w)
    assert len(raw) == quants.nbytes(ttype, w.shape)
    got = decode(ttype, raw).reshape(w.shape)
    assert np.isfinite(got).all()
    assert np.all(got[3] == 0)
    rel = np.sqrt(((got - w) ** 2).mean()) / np.sqrt((w ** 2).mean())
    print(f"{name}: {len(raw) * 8 / w.size:.4f} bits/weight, relative RMS error {rel:.4f}")
    assert rel <= RMSE[name]
    # the error our search reaches is at most that of the plain quantizer ggml's reference code
    # uses for the legacy symmetric types (the extreme value to the extreme level)
    if name in ("Q4_0", "Q5_0"):
        lo = -8 if name == "Q4_0" else -16
        b = w.reshape(-1, 32)
        xm = np.take_along_axis(b, np.abs(b).argmax(1)[:, None], 1)
        d = (xm / lo).astype(np.float16).astype(np.float32)
        q = np.clip(np.rint(b / np.where(d == 0, 1, d)), lo, -lo - 1)
        plain = np.sqrt(((d * q - b) ** 2).mean()) / np.sqrt((w ** 2).mean())
        assert rel <= plain, (rel, plain)


# ----------------------------------------------------------------------------------------------
# The search over all candidates at once writes what the one-candidate-at-a-time search wrote
# (quants_v1.py, the code it replaced), byte for byte

def edge_matrix(rows=48, cols=2048, seed=5):
    """Gaussian rows at several magnitudes, with the rows that make levels and sums of 0:
    zeros, -0.0, values that are 0 as halves, constant, sparse, one-signed, an outlier."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w *= np.float32(10.0) ** rng.integers(-6, 4, size=(rows, 1)).astype(np.float32)
    w[0] = 0.0
    w[1] = -0.0
    w[2, :300] = 1e-30
    w[3] = 0.5
    w[4, ::3] = 0.0
    w[5, ::2] = -0.0
    w[6] = np.abs(w[6])
    w[7] = -np.abs(w[7])
    w[8, 10] = 4e4
    w[9] = rng.uniform(-1, 1, cols)
    w[10] = np.rint(rng.uniform(-8, 8, cols))  # values exactly on levels
    w[11, :256] = np.resize([0.0, -0.0, 1.0, -1.0], 256)
    return w


@pytest.mark.parametrize("n", [16, 32])
def test_group_sum_is_numpys(n):
    """quants._group_sum adds a column in the order numpy's sum adds a contiguous row: the
    assumption that makes the new search pick the old scales."""
    rng = np.random.default_rng(n)
    rows = (rng.standard_normal((20000, n)) *
            np.exp(rng.uniform(-20, 20, (20000, n)))).astype(np.float32)
    rows[0], rows[1] = -0.0, 0.0
    got = quants._group_sum(np.ascontiguousarray(rows.T))
    assert np.array_equal(got.view(np.uint32), rows.sum(-1).view(np.uint32))


@pytest.mark.parametrize("name", sorted(RMSE))
def test_quantizer_bytes_as_v1(name, monkeypatch):
    import quants_v1

    ttype = BY_NAME[name]
    w = edge_matrix()
    want = quants_v1.quantize(ttype, w)
    assert quants.quantize(ttype, w) == want
    monkeypatch.setattr(quants, "CHUNK", 4096)  # other chunks of groups: the same bytes
    assert quants.quantize(ttype, w) == want


@pytest.mark.parametrize("variant", ["llama_256", "llama_gqa"])
def test_export_bytes_as_v1(variant, tmp_path, monkeypatch):
    """Every --dtype of export.py: the same file with the old quantizer."""
    import export
    import make_models
    import quants_v1

    hf = make_models.make_model(variant, tmp_path / variant)
    for dtype in sorted(quants.DTYPES):
        new, old = tmp_path / f"{dtype}.gguf", tmp_path / f"{dtype}.v1.gguf"
        assert export.main([str(hf), str(new), "--dtype", dtype]) == 0
        with monkeypatch.context() as m:
            m.setattr(quants, "quantize", quants_v1.quantize)
            assert export.main([str(hf), str(old), "--dtype", dtype]) == 0
        assert new.read_bytes() == old.read_bytes(), dtype


# ----------------------------------------------------------------------------------------------
# Models in each type against the PyTorch reference on the dequantized weights

# The 256-wide model runs every type as asked; the 64-wide llama_gqa runs the K-quants through
# llama.cpp's fallbacks (Q5_0, Q5_1, Q8_0, IQ4_NL for rows of 64).
DTYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl",
          "q4_k_m", "q5_k_m"]
MODELS = ["llama_256", "llama_gqa"]

_files = {}


def quant_file(build_dir, variant, dtype):
    """The variant exported in dtype (made once a session)."""
    import make_models

    key = (variant, dtype)
    if key not in _files:
        hf = build_dir / variant
        if not (hf / "config.json").exists():
            make_models.make_model(variant, hf)
        out = build_dir / f"{variant}.{dtype}.gguf"
        r = export(hf, out, "--dtype", dtype)
        assert r.returncode == 0, r.stderr
        _files[key] = out
    return _files[key]


@pytest.fixture(scope="module")
def qdir(tmp_path_factory):
    return tmp_path_factory.mktemp("quant")


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def q8_0_act(x):
    """The engine's quantize_q8_0 in float32: d = amax / 127, levels rint(x / d) (ties to even),
    values f16(d) * q; d 0 as a half gives zeros."""
    b = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    d = np.abs(b).max(-1, keepdims=True) / np.float32(127)
    dh = f16(d)
    inv = np.where(dh != 0, np.float32(1) / np.where(d == 0, 1, d), 0).astype(np.float32)
    q = np.clip(np.rint(b * inv), -127, 127)
    return (dh * q).reshape(x.shape)


def q8_k_act(x):
    """llama.cpp's Q8_K in float32: the value of largest magnitude maps to -127."""
    b = x.astype(np.float32).reshape(x.shape[0], -1, 256)
    mx = np.take_along_axis(b, np.abs(b).argmax(-1)[..., None], -1)
    iscale = np.where(mx != 0, np.float32(-127) / np.where(mx == 0, 1, mx), 0).astype(np.float32)
    q = np.minimum(np.rint(b * iscale), 127)
    d = np.where(mx != 0, np.float32(1) / np.where(iscale == 0, 1, iscale), 0).astype(np.float32)
    return (d * q).reshape(x.shape)


ACT = {8: q8_0_act, 2: q8_0_act, 3: q8_0_act, 6: q8_0_act, 7: q8_0_act, 20: q8_0_act,
       10: q8_k_act, 11: q8_k_act, 12: q8_k_act, 13: q8_k_act, 14: q8_k_act,
       **{t: q8_k_act for t in (16, 17, 18, 19, 21, 22, 23, 29)}}  # the i-quants
HF_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
            "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
            "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


class QuantReference(Reference):
    """The reference on a GGUF's dequantized weights, whose matrix products quantize their input
    as the engine does for each weight's type (Q8_0 or Q8_K, in float32); the rest in float64."""

    def __init__(self, gguf, hf_dir):
        super().__init__(hf_dir)
        g = read_gguf(gguf)
        self.acts = {}
        for name, t in g.tensor_types.items():
            parts = name.split(".")
            if parts[0] == "blk" and parts[2] in HF_NAMES:
                self.acts[f"layers.{parts[1]}.{HF_NAMES[parts[2]]}"] = ACT.get(t)
        out = g.tensor_types.get("output.weight", g.tensor_types["token_embd.weight"])
        self.acts["output"] = ACT.get(out)
        self._act = None
        # near_tie_flip(): the near ties of position 0's quantized inputs recorded, and one
        # chosen (input, indices, values) applied
        self.near, self.flip = None, None

    def _lin(self, x, name, bias=True):
        self._act = self.acts[name]
        y = super()._lin(x, name, bias)
        self._act = self.acts["output"]  # the last product, the output's, calls _in directly
        return y

    def _in(self, x):
        if self._act is None:
            return x
        y = self._act(x.numpy())
        # products with one input (q, k, v; gate, up) share its quantization, as in the engine:
        # a near tie is named by the input's bytes and the format
        key = (hash(x[0].numpy().tobytes()), self._act)
        if self.near is not None:
            self.near += [(key, i, v, dist) for i, v, dist in near_ties(self._act, x[0])
                          if not any(n[0] == key and np.array_equal(n[1], i) for n in self.near)]
        if self.flip and self.flip[0] == key:
            y[0].flat[self.flip[1]] = self.flip[2]  # (input, indices, values)
        return torch_from(y, x)


# Activations closer than this to a rounding boundary can round the other way in the engine:
# float32 and float64 sums of one activation differ by ~1e-6 of it (levels up to 127: ~1e-4 of a
# level; Q8_0's scale, a half, relative to itself: ~1e-6).
NEAR_TIE = 1e-4
NEAR_HALF = 1e-5


def near_ties(act, x):
    """The inputs x (one position) that lie near a rounding boundary of act's grid, each as
    (indices, their values rounded the other way, distance): a level within NEAR_TIE levels of
    the midpoint between two levels, or (Q8_0) a block scale within NEAR_HALF of itself of the
    midpoint between two halves (the whole block then moves)."""
    k = 32 if act is q8_0_act else 256
    b = x.numpy().astype(np.float32).reshape(-1, k)
    if act is q8_0_act:
        d = np.abs(b).max(-1, keepdims=True) / np.float32(127)
        step = f16(d)
        s = b * np.where(d != 0, np.float32(1) / np.where(d == 0, 1, d), 0).astype(np.float32)
    else:
        mx = np.take_along_axis(b, np.abs(b).argmax(-1)[:, None], -1)
        iscale = np.where(mx != 0, np.float32(-127) / np.where(mx == 0, 1, mx), 0)
        step = np.where(iscale != 0, 1 / np.where(iscale == 0, 1, iscale), 0)
        s = b * iscale.astype(np.float32)
    q = np.rint(s)
    other = q + np.sign(s - q)
    dist = 0.5 - np.abs(s - q)
    value = (step * other).astype(np.float32)
    out = [(np.array([i]), value.flat[i:i + 1], float(dist.flat[i]))
           for i in np.flatnonzero((dist < NEAR_TIE) & (np.abs(other) <= 127))]
    if act is q8_0_act:  # the scale's half: the neighbour on the far side of the nearer midpoint
        h = d.astype(np.float16)
        for sign in (-np.inf, np.inf):
            nb = np.nextafter(h, np.float16(sign)).astype(np.float32)
            mid = (h.astype(np.float32) + nb) / 2
            rel = np.abs(d - mid) / np.where(d == 0, 1, d)
            for blk in np.flatnonzero((rel[:, 0] < NEAR_HALF) & (d[:, 0] != 0)):
                out.append((np.arange(blk * k, (blk + 1) * k), (nb[blk] * q[blk]).astype(
                    np.float32), float(rel[blk, 0])))
    return out


def torch_from(a, like):
    import torch
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).to(like.dtype)


def ours_logits(model, *flags, n=N_GEN):
    """Our logits (run with flags) at every position of PROMPT and of n - 1 greedy tokens, and
    PROMPT's token ids."""
    dump = f"{model}{''.join(flags)}.n{n}.logits.npy"
    r = subprocess.run([str(RUN), str(model), "-i", PROMPT, "-n", str(n), "-t", "0",
                        "--dump-logits", dump, *flags], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    ids = subprocess.run([str(RUN), str(model), "--tokenize", "-i", PROMPT], capture_output=True,
                         text=True, timeout=60).stdout.split()
    return np.load(dump), [int(t) for t in ids]


# Logits of the engine vs the reference, relative to max(1, max|logit|) per position. Until the
# first activation that lies within float rounding of a rounding boundary of its 8-bit grid, they
# agree to float rounding (4e-7 measured); such an activation lands one step apart in the engine
# (float32 sums) and the reference (float64 sums), later activations then cross boundaries of
# their own, and the logits settle at the noise level of the activations' quantization (as for
# Q8_0 in test_engine.py). Measured 2026-11-27: llama_gqa median 2e-7, max 8.4e-3; llama_256,
# where the first crossing comes within a few positions, median up to 2.0e-2, max 3.3e-2. So:
#   every position within MAX_TOL; the first position (a single token, BOS, whose products see
#   few activations) within FIRST_TOL; and on the 64-wide model the median within MEDIAN_TOL.
MAX_TOL = 5e-2
FIRST_TOL = 1e-5
MEDIAN_TOL = 1e-5


def check_vs_reference(model, hf_dir, median=False, flags=()):
    """Our logits on model (prompt + greedy; run with flags) against QuantReference on its
    dequantized weights: every position within MAX_TOL, the first within FIRST_TOL, and with median
    the median within MEDIAN_TOL."""
    ours, ids = ours_logits(model, *flags)
    P = len(ids)
    gen = [int(np.argmax(ours[P - 1 + k])) for k in range(ours.shape[0] - P + 1)]
    ref = QuantReference(model, gguf_to_hf(model, hf_dir)).logits(ids + gen[:-1])
    err = np.abs(ours - ref).max(1) / np.maximum(1.0, np.abs(ref).max(1))
    print(f"{model.name}: first {err[0]:.2e}, median {np.median(err):.2e}, max {err.max():.2e}")
    assert err.max() <= MAX_TOL, err.max()
    if err[0] > FIRST_TOL:
        flip = near_tie_flip(model, hf_dir, ids[0], ours[0])
        assert flip, f"first position {err[0]:.2e}, and no near tie explains it"
        print(f"  first position: inputs {flip[1][0]}..{flip[1][-1]} of a product, "
              f"{flip[3]:.1e} from a rounding boundary, rounded the other way: {flip[4]:.2e}")
    if median:
        assert np.median(err) <= MEDIAN_TOL, np.median(err)


def near_tie_flip(model, hf_dir, bos, ours0):
    """When the first position (one token) is off: the one near tie (near_ties: a level or a
    block's half scale) which, rounded the other way in the reference, brings the position within
    FIRST_TOL of ours (the engine's float32 sums put it on the other side), as (input, indices,
    values, distance, error); None when no single one does."""
    ref = QuantReference(model, hf_dir)
    ref.near = []
    ref.logits([bos])
    for call, i, v, dist in sorted(ref.near, key=lambda c: c[3])[:64]:
        ref.near, ref.flip = None, (call, i, v)
        row = ref.logits([bos])[0]
        err = np.abs(ours0 - row).max() / max(1.0, np.abs(row).max())
        if err <= FIRST_TOL:
            return call, i, v, dist, err
    return None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", MODELS)
def test_logits_vs_reference(qdir, variant, dtype):
    need_run()
    model = quant_file(qdir, variant, dtype)
    check_vs_reference(model, qdir / f"{variant}.{dtype}.hf", median=variant == "llama_gqa")


def prompt_logits(model, *flags):
    """Our logits at every position of PROMPT (one batch: the prompt's matrix products)."""
    return ours_logits(model, *flags, n=1)[0][:-1]


# The types read repacked (model_repack: Q8_0, Q4_0 and Q5_0 in the Q8P layout, Q4_K and Q6_K
# in KP; decoding and, where the kernel set has the tiles, prompts) are the same weights with
# their float sums in another order: the prompt's logits with and without --no-repack agree as
# the engine agrees with the reference above (every position within MAX_TOL), and the repacked
# ones give the same bits with 1 and 2 threads. llama_256's rows are 256 columns: one
# super-block. Measured 2026-11-27 (AVX-512): Q4_0 0 (its two prompt tiles sum alike; Q5_0 too,
# 2026-11-28), Q4_K, Q6_K and Q4_K_M at most 5.5e-7; a Q6_K prompt tile that skipped one group of 16 weights gave 0.83.
@pytest.mark.parametrize("dtype", ["q4_0", "q5_0", "q4_k", "q6_k", "q4_k_m"])
def test_repacked_prompt(qdir, dtype):
    need_run()
    model = quant_file(qdir, "llama_256", dtype)
    packed, plain = prompt_logits(model), prompt_logits(model, "--no-repack")
    assert packed.shape == plain.shape and packed.shape[0] > 4
    err = np.abs(packed - plain).max(1) / np.maximum(1.0, np.abs(plain).max(1))
    print(f"{model.name}: repacked vs --no-repack, first {err[0]:.2e}, max {err.max():.2e}")
    assert err.max() <= MAX_TOL, err.max()
    one, two = prompt_logits(model, "--threads", "1"), prompt_logits(model, "--threads", "2")
    assert np.array_equal(one, packed) and np.array_equal(two, packed)


# The types repacked at load (Q8P, KP in kernels.h), read by the default run above through the
# repacked copy where the CPU has the kernels (AVX-512 VNNI), here in the file's layout: both within
# the same bounds. llama_gqa's Q4_K file is mostly Q5_0 (rows of 64), as 15M's (rows of 288).
@pytest.mark.parametrize("variant,dtype", [(v, d) for v in MODELS for d in ("q4_0", "q5_0")]
                         + [("llama_gqa", "q4_k"), ("llama_256", "q4_k_m")])
def test_logits_vs_reference_no_repack(qdir, variant, dtype):
    need_run()
    model = quant_file(qdir, variant, dtype)
    check_vs_reference(model, qdir / f"{variant}.{dtype}.hf", median=variant == "llama_gqa",
                       flags=("--no-repack",))


# ----------------------------------------------------------------------------------------------
# llama.cpp on the same files: greedy tokens, and whole next-token distributions

PROBS_ORACLE = ROOT / "tests" / "oracles" / "llamacpp_probs.mjs"
# With 8-bit activations, an activation that rounds one step apart in llama.cpp and here (their
# float sums differ in the fourth digit: see test_llamacpp.py) moves later activations across
# their own rounding boundaries, and the logits settle at the noise level of the activations'
# quantization: 2e-2 to 3.3e-2 of the logit scale against our mirrored reference above. So:
#   greedy: our top two logits closer than TIE_Q of the scale are a tie (the sequences may part);
#   distributions, teacher-forced along our greedy tokens: total variation <= TV_MAX, and the log
#   odds of every token with p > 1e-3 against the top one within LOGODDS_MAX. Measured on
#   llama_256 (2026-11-27): TV 0.07-0.10, log odds 0.50-0.66 (F32: 0.0035 and 0.023), while a
#   layout read wrongly makes a different model (TV near 1).
TIE_Q = 3e-2
TV_MAX = 0.2
LOGODDS_MAX = 1.2
# llama_gqa (rows of 64) in the K-quants tests the fallbacks: IQ4_NL, Q5_0, Q5_1, Q8_0.
LLAMACPP = [("llama_256", d) for d in DTYPES] + [("llama_gqa", d) for d in
                                                 ("q2_k", "q4_k", "q5_k", "q6_k")]


def llamacpp_probs(model, ids):
    r = subprocess.run(["node", str(PROBS_ORACLE), str(model)], input=json.dumps(ids),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in out, f"llama.cpp refuses {model}: {out['error']}"
    return out["probs"]


def check_llamacpp(model, tmp_path):
    """llama.cpp on model: greedy tokens equal (ties within TIE_Q), and teacher-forced along our
    greedy tokens, its next-token distributions within TV_MAX and LOGODDS_MAX of ours."""
    types = set(read_gguf(model).tensor_types.values())
    # greedy, ties within the activations' noise aside
    diff = T.compare(model, tmp_path, TIE_Q)
    assert diff is None, f"{model.name} ({sorted(types)}): {diff}"
    # distributions along our greedy sequence
    ours, ids = ours_logits(model)
    P = len(ids)
    seq = ids + [int(np.argmax(ours[P - 1 + k])) for k in range(ours.shape[0] - P)]
    theirs = llamacpp_probs(model, seq)
    assert len(theirs) == ours.shape[0]
    lp = ours - ours.max(1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(1, keepdims=True))
    tv = odds = 0.0
    for i, row in enumerate(theirs):
        p = np.zeros(ours.shape[1])
        for tok, q in row:
            p[tok] = q
        tv = max(tv, 0.5 * np.abs(p - np.exp(lp[i])).sum())
        top, m = int(np.argmax(p)), p > 1e-3
        odds = max(odds, np.abs(np.log(p[m] / p[top]) - (lp[i][m] - lp[i][top])).max())
    print(f"{model.name}: total variation {tv:.3f}, log odds {odds:.3f}")
    assert tv <= TV_MAX and odds <= LOGODDS_MAX, (tv, odds)


@pytest.mark.parametrize("variant,dtype", LLAMACPP)
def test_llamacpp(qdir, variant, dtype):
    need_run()
    T.need_oracle()
    check_llamacpp(quant_file(qdir, variant, dtype), qdir)


# ----------------------------------------------------------------------------------------------
# Files quantized by llama.cpp itself (its llama_model_quantize, through tests/oracles/
# llama_quantize.c): its choice of type per tensor and its block quantizers, read by us

# Every ftype of the types we read, from an F32 file: on llama_256 (rows of 256 and 512, where
# the K-quants apply as asked) and on the shipped model (192 wide: llama.cpp falls back to other
# types on every matrix but ffn_down, e.g. Q2_K's file holds Q3_K, Q4_0 and Q8_0).
FTYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s",
          "q4_k_m", "q5_k_s", "q5_k_m", "q6_k", "iq4_nl"]
BY_LLAMACPP = ["llama_256", "kjv"]


def llamacpp_file(qdir, variant, ftype):
    """variant's F32 file (the shipped model for kjv) quantized by llama.cpp to ftype."""
    T.need_quantizer()
    key = (variant, "llama.cpp " + ftype)
    if key not in _files:
        src = ROOT / "models" / "kjv.gguf" if variant == "kjv" else quant_file(qdir, variant, "f32")
        _files[key] = T.llama_quantize(src, qdir / f"{variant}.llamacpp-{ftype}.gguf", ftype)
    return _files[key]


@pytest.mark.parametrize("ftype", FTYPES)
@pytest.mark.parametrize("variant", BY_LLAMACPP)
def test_llamacpp_quantized_vs_reference(qdir, variant, ftype):
    need_run()
    model = llamacpp_file(qdir, variant, ftype)
    check_vs_reference(model, qdir / f"{model.stem}.hf")


@pytest.mark.parametrize("ftype", FTYPES)
@pytest.mark.parametrize("variant", BY_LLAMACPP)
def test_llamacpp_quantized_greedy(qdir, variant, ftype):
    need_run()
    T.need_oracle()
    check_llamacpp(llamacpp_file(qdir, variant, ftype), qdir)


def test_llamacpp_quantizer_keeps_our_alignment_key(qdir):
    """Why llama_quantize.c sets general.alignment: llama.cpp v0.4.0's quantizer copies our 64
    but lays the file out at 32, so the data section starts 32 bytes before where the key puts
    it; llama.cpp refuses its own file and ./run says the tensors lie past the data."""
    need_run()
    T.need_oracle()
    T.need_quantizer()
    src = quant_file(qdir, "llama_256", "f32")
    out = T.llama_quantize(src, qdir / "llama_256.llamacpp-kept.gguf", "q4_0", "--keep-alignment")
    assert read_gguf(src).metadata["general.alignment"] == 64
    r = subprocess.run([str(RUN), str(out), "-n", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "lie outside the file's" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "error" in T.llamacpp(out, [PROMPT]), "llama.cpp reads the file: drop the override"


def test_llama_quantize_tool_errors(tmp_path):
    """The tool says in one line what is missing: the library, or an ftype it does not know, or
    what is wrong: an importance matrix file it cannot read (here a name not padded to 4)."""
    if not T.QUANTIZE.exists():
        pytest.skip(f"{T.QUANTIZE} missing: make build/tools/llama_quantize")
    src, out = ROOT / "models" / "kjv.gguf", tmp_path / "out.gguf"
    bad = tmp_path / "bad.imatrix"
    bad.write_bytes(b"\x03\0\0\0ab\0\x01\0\0\0\0\0\x80\x3f")
    for args, code, msg in [([tmp_path, src, out, "q4_0"], 1, "cannot load llama.cpp"),
                            ([T.LIBDIR, src, out, "q4_k"], 2, "unknown ftype 'q4_k'"),
                            ([T.LIBDIR, src, out, "q4_0", "0"], 2, "THREADS must be 1 to 256"),
                            (["--imatrix", bad, T.LIBDIR, src, out, "iq4_xs"], 1,
                             "is not an importance matrix file"),
                            (["--imatrix", tmp_path / "none", T.LIBDIR, src, out, "iq4_xs"], 1,
                             "cannot open the importance matrix")]:
        r = subprocess.run([str(T.QUANTIZE), *map(str, args)], capture_output=True, text=True)
        assert r.returncode == code and msg in r.stderr, (args, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()
