"""GGUF's quantized types for export.py: a quantizer of our own per type (numpy: all the groups
of a chunk and all their candidate scales at once) that picks each block's scales to minimize
the block's squared error, and the packing of levels and scales into ggml's block layouts
(stated in kernels_quant.h).

Every type stores integer levels q and per-group scales, weight = a * q - b. For one group the
search is the same whatever the type (fit_group): a few candidate scales spread around the one
that maps the extreme value to the extreme level, each refined by a least-squares fit of (a, b) to
its levels and re-quantized; the candidate of least squared error wins. K-quants then quantize the
groups' a and b against a super-block scale (6, 8 or 4 bits) and re-quantize the levels with the
values actually stored.

    quantize(ggml_type, w) -> bytes       w: (rows, cols) float32, cols a multiple of the block
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0 = 0, 1, 2, 3, 6, 7, 8
GGML_Q2_K, GGML_Q3_K, GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_IQ4_NL = 10, 11, 12, 13, 14, 20
GGML_BF16 = 30

# type: (name, elements per block, bytes per block)
TYPES = {
    GGML_F32: ("F32", 1, 4), GGML_F16: ("F16", 1, 2),
    GGML_Q4_0: ("Q4_0", 32, 18), GGML_Q4_1: ("Q4_1", 32, 20), GGML_Q5_0: ("Q5_0", 32, 22),
    GGML_Q5_1: ("Q5_1", 32, 24), GGML_Q8_0: ("Q8_0", 32, 34), GGML_Q2_K: ("Q2_K", 256, 84),
    GGML_Q3_K: ("Q3_K", 256, 110), GGML_Q4_K: ("Q4_K", 256, 144), GGML_Q5_K: ("Q5_K", 256, 176),
    GGML_Q6_K: ("Q6_K", 256, 210), GGML_IQ4_NL: ("IQ4_NL", 32, 18), GGML_BF16: ("BF16", 1, 2),
}

IQ4NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                        dtype=np.float32)
# IQ4_NL's candidate scales: (value of largest magnitude) / t for each t
IQ4NL_DIVISORS = list(np.linspace(-127, -95, 9)) + [113.0, 100.0]

# weights quantized at a time: each candidates' array is about 1.5 MB (C x CHUNK float32);
# 4x larger or smaller chunks measured slower
CHUNK = 32768


def nbytes(ttype, shape):
    _, block, size = TYPES[ttype]
    n = int(np.prod(shape))
    return n // block * size


def f16(x):
    """x rounded to float16 and back (what the file stores)."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


# ---- fitting groups: every candidate scale of every group at once -----------------------------
#
# A group's weights run down the first axis, so that every operation runs along long rows of
# groups: x (n, 1, B) the B groups of n weights, candidates a and b (1, C, B) for each group,
# levels q (n, C, B). Sums over a group (_group_sum) add in the order numpy adds a contiguous
# row, so the scales chosen (and the files) are those of the search it replaced, which handled
# one candidate at a time on (B, n) rows; tests/py/test_quant.py compares the bytes.

def _group_sum(t):
    """t (n, ...) -> (...): the sum over the first axis for n a multiple of 8 up to 128, in
    numpy's order for a contiguous row of float32 (eight running sums, then a tree of pairs,
    added to 0)."""
    n = t.shape[0]
    assert n % 8 == 0 and 8 <= n <= 128, n
    r = t[:8].copy()
    for i in range(8, n, 8):
        r += t[i:i + 8]
    p = r[0::2] + r[1::2]  # r0 + r1, r2 + r3, r4 + r5, r6 + r7
    return ((p[0] + p[1]) + (p[2] + p[3])) + np.float32(0)


def _levels(x, a, b, lo, hi):
    """Nearest levels for weight = a q - b, clipped to [lo, hi] (a = 0: level 0 or lo)."""
    zero = a == 0
    any_zero = zero.any()
    q = np.add(x, b, out=np.empty(np.broadcast_shapes(np.shape(x), np.shape(a), np.shape(b)),
                                  dtype=np.float32))
    q /= np.where(zero, 1.0, a) if any_zero else a
    np.rint(q, out=q)
    if any_zero:  # a group of zeros: no division by its scale
        q = np.where(zero, max(lo, 0), q)
    return _clip(q, lo, hi)


def _clip(q, lo, hi):
    """np.clip(q, lo, hi) in place, faster: numpy's clip returns the bound for a value equal to
    it, so a level of -0 clipped at 0 becomes +0 (adding 0 does that, and nothing else)."""
    np.maximum(q, np.float32(lo), out=q)
    np.minimum(q, np.float32(hi), out=q)
    if lo == 0:
        q += np.float32(0)
    return q


def _sse(x, a, b, q):
    """Squared error of each group (C, B): a q - b against x."""
    e = a * q
    e -= b
    e -= x
    np.square(e, out=e)
    return _group_sum(e)


def _refit(x, sx, q, affine, min_le0):
    """Least-squares (a, b) (1, C, B) for fixed levels q: weight = a q - b; b = 0 when not
    affine; b >= 0 (the group's offset below zero, as K-quants store it) when min_le0.
    sx: the groups' sums."""
    n = x.shape[0]
    sqq, sqx = _group_sum(q * q)[None], _group_sum(q * x)[None]
    a_sym = np.divide(sqx, sqq, out=np.zeros_like(sqx), where=sqq > 0)
    if not affine:
        return a_sym, np.zeros_like(a_sym)
    return affine_fit(n, _group_sum(q)[None], sx, sqq, sqx, a_sym, min_le0)


def affine_fit(n, sq, sx, sqq, sqx, a_sym, min_le0):
    """The least-squares (a, b) of weight = a q - b from a group's n levels and weights' sums
    (sq, sx, sqq: q q, sqx: q x); a_sym: the fit with b = 0, kept where the system is singular
    and, when min_le0, where b would fall below 0 (a K-quant stores only b >= 0)."""
    det = n * sqq - sq * sq
    a = np.divide(n * sqx - sq * sx, det, out=a_sym.copy(), where=det > 0)
    b = (a * sq - sx) / n
    if min_le0:
        a = np.where(b < 0, a_sym, a)
        b = np.maximum(b, 0)
    return a, b


def _interleave(u, v):
    """(1, C, B) twice -> (2 C, B) in the order the search tries them: u[0], v[0], u[1], ..."""
    return np.stack([u[0], v[0]], 1).reshape(-1, u.shape[-1])


def _first_least(errors, *values):
    """errors (K, B) of K tries per group, values (K, B) each: per group the values of the first
    try of least error (the search keeps the earlier of equal ones), as (B, 1)."""
    k = errors.argmin(axis=0)[None]
    return [np.take_along_axis(v, k, 0).T for v in values]


def extreme(x):
    """x (B, n) -> (B,): each row's value of largest magnitude, signed (the first of equal ones)."""
    return np.take_along_axis(x, np.abs(x).argmax(-1)[:, None], -1)[:, 0]


def candidates(x, lo, hi, affine, min_le0=False):
    """x (B, n) float32 -> the search's candidate (a, b) of each row, in the order it tries
    them, as a list of pairs of (B,) arrays: for affine types the min-max span shrunk a little
    at a time (outliers clip, the rest gain), else the extreme value mapped to levels near lo
    and near hi."""
    if affine:
        xmin, xmax = x.min(-1), x.max(-1)
        base_lo = np.minimum(xmin, 0) if min_le0 else xmin
        span = xmax - base_lo
        cands = []
        for f in np.linspace(1.0, 0.75, 6):
            for shift in (0.0, 0.5):
                a = span * f / (hi - lo)
                b = -(base_lo + shift * (1 - f) * span)
                if min_le0:
                    b = np.maximum(b, 0)
                cands.append((a, b))
        return cands
    xm = extreme(x)
    return [(xm / t, np.zeros_like(xm))
            for t in list(np.linspace(lo, lo * 0.7, 7)) + list(np.linspace(hi, hi * 0.8, 3))
            if t != 0]


def fit_group(x, lo, hi, affine, min_le0=False):
    """x (B, n): per row the (a, b) with levels in [lo, hi] of least squared error found among
    candidates; returns a, b (B, 1) float32. Symmetric types (affine False) have b = 0.
    Each candidate scale is tried as it is and refitted by least squares on its levels."""
    x = x.astype(np.float32)
    cands = candidates(x, lo, hi, affine, min_le0)
    a = np.stack([c[0] for c in cands])[None]  # (1, C, B)
    b = np.stack([c[1] for c in cands])[None]
    xt = np.ascontiguousarray(x.T)[:, None]  # (n, 1, B)
    q = _levels(xt, a, b, lo, hi)
    a2, b2 = _refit(xt, _group_sum(xt), q, affine, min_le0)
    q2 = _levels(xt, a2, b2, lo, hi)
    errors = _interleave(_sse(xt, a, b, q)[None], _sse(xt, a2, b2, q2)[None])  # (2 C, B)
    best_a, best_b = _first_least(errors, _interleave(a, a2), _interleave(b, b2))
    return best_a.astype(np.float32), best_b.astype(np.float32)


# ---- the legacy 32-blocks ---------------------------------------------------------------------

def _nibbles(q):
    """(B, 32) levels 0..15 -> (B, 16) bytes: weight j low nibble of byte j, j + 16 high."""
    q = q.astype(np.uint8)
    return (q[:, :16] & 15) | ((q[:, 16:] & 15) << 4)


def _fifth_bits(q):
    """(B, 32) levels 0..31 -> (B, 4) bytes: bit 4 of weight j is bit j of a little-endian u32."""
    bits = (q.astype(np.uint32) >> 4) & 1
    h = (bits << np.arange(32, dtype=np.uint32)).sum(-1, dtype=np.uint32)
    return h.astype("<u4").view(np.uint8).reshape(-1, 4)


def _half_bytes(v):
    return np.asarray(v, dtype=np.float32).reshape(-1).astype("<f2").view(np.uint8).reshape(-1, 2)


def _legacy(x, ttype):
    """x (B, 32) -> (B, bytes) for Q4_0, Q4_1, Q5_0, Q5_1."""
    bits = 4 if ttype in (GGML_Q4_0, GGML_Q4_1) else 5
    affine = ttype in (GGML_Q4_1, GGML_Q5_1)
    top = (1 << bits) - 1
    if affine:  # weight = d q + m: a = d, b = -m, levels 0..top
        a, b = fit_group(x, 0, top, True)
        d, m = f16(a), f16(-b)
        q = _levels(x, d, -m, 0, top)
        parts = [_half_bytes(d), _half_bytes(m)]
    else:  # weight = d (q - off), levels -off .. top - off
        off = 1 << (bits - 1)
        a, _ = fit_group(x, -off, top - off, False)
        d = f16(a)
        q = _levels(x, d, 0, -off, top - off) + off
        parts = [_half_bytes(d)]
    if bits == 5:
        parts.append(_fifth_bits(q))
    parts.append(_nibbles(q))
    return np.concatenate(parts, axis=1)


def _q8_0(x):
    """Q8_0 as ggml's reference quantizer (what reference.py's q8_0_round states):
    d = max|x| / 127, q = x / d rounded half away from zero. At 8 bits the search gains nothing
    measurable, and files stay what other Q8_0 writers make."""
    d = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0)
    v = x * inv
    q = (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int8)
    return np.concatenate([_half_bytes(d), q.view(np.uint8)], axis=1)


def _nearest_iq4(v):
    """Index of the IQ4_NL level nearest to each v."""
    mids = (IQ4NL_VALUES[1:] + IQ4NL_VALUES[:-1]) / 2
    idx = np.zeros(v.shape, dtype=np.uint8)  # the midpoints below v: np.searchsorted's index,
    for m in mids:                           # several times faster over many values
        idx += v > m
    return idx


def _iq4_nl(x):
    """IQ4_NL: one scale per 32-block over 16 fixed levels; candidates d = (value of largest
    magnitude) / t, each as it is and refitted on its levels, all rounded to float16 as stored
    (the layout of fit_group: weights down the first axis)."""
    xm = extreme(x)
    d = np.stack([xm / t for t in IQ4NL_DIVISORS])[None]
    xt = np.ascontiguousarray(x.T)[:, None]  # (32, 1, B)
    v = IQ4NL_VALUES[_nearest_iq4(xt / np.where(d == 0, 1.0, d))]  # (32, C, B)
    vv = _group_sum(v * v)[None]
    d2 = np.divide(_group_sum(v * xt)[None], vv, out=np.zeros_like(d), where=vv > 0)
    tries = _interleave(f16(d), f16(d2))[:, None].transpose(1, 0, 2)  # (1, 2 C, B)
    err = tries * IQ4NL_VALUES[_nearest_iq4(xt / np.where(tries == 0, 1.0, tries))] - xt
    best_d, = _first_least(_group_sum(err * err), tries[0])
    idx = _nearest_iq4(x / np.where(best_d == 0, 1.0, best_d))
    return np.concatenate([_half_bytes(best_d), _nibbles(idx)], axis=1)


# ---- K-quants: 256-blocks of groups -----------------------------------------------------------

def _scales(v, top):
    """Group values v (B, G) >= 0 as d * s with integer s in 0..top: d (B, 1) stored as f16."""
    d = f16(v.max(-1, keepdims=True) / top)
    safe = np.where(d == 0, 1.0, d)
    s = np.clip(np.rint(v / safe), 0, top)
    return d, np.where(d == 0, 0, s)


def _signed_scales(v, top):
    """Group values v (B, G) as d * s with integer s in -top..top."""
    d = f16(np.abs(v).max(-1, keepdims=True) / top)
    safe = np.where(d == 0, 1.0, d)
    s = np.clip(np.rint(v / safe), -top, top)
    return d, np.where(d == 0, 0, s)


def _two_bits(q):
    """(B, 256) levels 0..3 -> (B, 64): weight 128 n + 32 j + l at bits 2j of byte 32 n + l."""
    q = q.astype(np.uint8).reshape(-1, 2, 4, 32)  # n, j, l
    return (q << (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]).sum(
        2, dtype=np.uint8).reshape(-1, 64)


def _k_affine(x, group, top, sbits):
    """Groups with offsets (Q2_K, Q4_K, Q5_K): x (B, 256) -> levels (B, 256), integer scales
    and mins (B, 256 / group), d, dmin."""
    g = x.reshape(-1, group)
    a, b = fit_group(g, 0, top, True, min_le0=True)
    a, b = a.reshape(x.shape[0], -1), b.reshape(x.shape[0], -1)
    stop = (1 << sbits) - 1
    d, sc = _scales(a, stop)
    dmin, m = _scales(b, stop)
    ea = np.repeat(d * sc, group, axis=1)  # the values stored, per weight
    eb = np.repeat(dmin * m, group, axis=1)
    q = _levels(x, ea, eb, 0, top)
    return q, sc.astype(np.uint8), m.astype(np.uint8), d, dmin


def _k4_scales(sc, m):
    """Eight 6-bit scales and mins -> 12 bytes (the packing kernels_quant.h states)."""
    out = np.zeros((sc.shape[0], 12), dtype=np.uint8)
    out[:, 0:4] = (sc[:, :4] & 63) | ((sc[:, 4:] >> 4) << 6)
    out[:, 4:8] = (m[:, :4] & 63) | ((m[:, 4:] >> 4) << 6)
    out[:, 8:12] = (sc[:, 4:] & 15) | ((m[:, 4:] & 15) << 4)
    return out


def _q2_k(x):
    q, sc, m, d, dmin = _k_affine(x, 16, 3, 4)
    return np.concatenate([sc | (m << 4), _two_bits(q), _half_bytes(d), _half_bytes(dmin)], 1)


def _q4_k(x):
    q, sc, m, d, dmin = _k_affine(x, 32, 15, 6)
    q = q.astype(np.uint8).reshape(-1, 4, 2, 32)  # c, h, l
    qs = (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128)
    return np.concatenate([_half_bytes(d), _half_bytes(dmin), _k4_scales(sc, m), qs], 1)


def _q5_k(x):
    q, sc, m, d, dmin = _k_affine(x, 32, 31, 6)
    q = q.astype(np.uint8).reshape(-1, 4, 2, 32)
    qs = ((q[:, :, 0] & 15) | ((q[:, :, 1] & 15) << 4)).reshape(-1, 128)
    hb = ((q >> 4) & 1).reshape(-1, 8, 32)  # bit 2c + h of qh[l]
    qh = (hb << np.arange(8, dtype=np.uint8)[None, :, None]).sum(1, dtype=np.uint8)
    return np.concatenate([_half_bytes(d), _half_bytes(dmin), _k4_scales(sc, m), qh, qs], 1)


def _k_symmetric(x, lo, hi, stop):
    g = x.reshape(-1, 16)
    a, _ = fit_group(g, lo, hi, False)
    d, sc = _signed_scales(a.reshape(x.shape[0], -1), stop)
    q = _levels(x, np.repeat(d * sc, 16, axis=1), 0, lo, hi)
    return q, sc, d


def _q3_k(x):
    q, sc, d = _k_symmetric(x, -4, 3, 31)
    u = (q + 4).astype(np.uint8)  # value = (u & 3) - 4 * !(u >> 2)
    hb = (u >> 2).reshape(-1, 2, 4, 32)  # n, j, l: bit 4n + j of hmask[l]
    hmask = (hb.reshape(-1, 8, 32) << np.arange(8, dtype=np.uint8)[None, :, None]).sum(
        1, dtype=np.uint8)
    s = (sc + 32).astype(np.uint8)  # 6 bits
    scales = np.zeros((x.shape[0], 12), dtype=np.uint8)
    scales[:, :8] = (s[:, :8] & 15) | ((s[:, 8:] & 15) << 4)
    for g in range(4):
        scales[:, 8 + g] = sum(((s[:, g + 4 * k] >> 4) & 3) << (2 * k) for k in range(4))
    return np.concatenate([hmask, _two_bits(u & 3), scales, _half_bytes(d)], 1)


def _q6_k(x):
    q, sc, d = _k_symmetric(x, -32, 31, 127)
    u = (q + 32).astype(np.uint8).reshape(-1, 2, 4, 32)  # n, k, l
    lo, hi = u & 15, u >> 4
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)],
                        axis=2).reshape(-1, 128)  # byte 64 n + 32 (k % 2) + l
    qh = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6))
    return np.concatenate([ql, qh.reshape(-1, 64), sc.astype(np.int8).view(np.uint8),
                           _half_bytes(d)], 1)


BLOCK_QUANTIZERS = {
    GGML_Q4_0: lambda x: _legacy(x, GGML_Q4_0), GGML_Q4_1: lambda x: _legacy(x, GGML_Q4_1),
    GGML_Q5_0: lambda x: _legacy(x, GGML_Q5_0), GGML_Q5_1: lambda x: _legacy(x, GGML_Q5_1),
    GGML_Q8_0: _q8_0, GGML_IQ4_NL: _iq4_nl, GGML_Q2_K: _q2_k, GGML_Q3_K: _q3_k,
    GGML_Q4_K: _q4_k, GGML_Q5_K: _q5_k, GGML_Q6_K: _q6_k,
}


def quantize(ttype, w, threads=None):
    """w (rows, cols) float32, cols a multiple of the type's block -> the tensor's bytes. Chunks
    run on `threads` threads (default: the CPUs this process may use); numpy releases the GIL
    in its loops, and each chunk's bytes depend on that chunk alone."""
    _, block, size = TYPES[ttype]
    blocks = np.asarray(w, dtype=np.float32).reshape(-1, block)
    out = np.empty((blocks.shape[0], size), dtype=np.uint8)
    step = max(1, CHUNK // block)

    def one(s):
        out[s:s + step] = BLOCK_QUANTIZERS[ttype](blocks[s:s + step])

    with ThreadPoolExecutor(threads or len(os.sched_getaffinity(0))) as pool:
        list(pool.map(one, range(0, blocks.shape[0], step)))
    return out.tobytes()


# ---- which type each tensor gets --------------------------------------------------------------

# --dtype -> (the 2-D matrices' type, llama.cpp's general.file_type, the mixture's larger type)
DTYPES = {
    "f32": (GGML_F32, 0, None), "f16": (GGML_F16, 1, None), "bf16": (GGML_BF16, 32, None),
    "q8_0": (GGML_Q8_0, 7, None),
    "q4_0": (GGML_Q4_0, 2, None), "q4_1": (GGML_Q4_1, 3, None), "q5_0": (GGML_Q5_0, 8, None),
    "q5_1": (GGML_Q5_1, 9, None), "q2_k": (GGML_Q2_K, 10, None), "q3_k": (GGML_Q3_K, 11, None),
    "q4_k": (GGML_Q4_K, 14, None), "q5_k": (GGML_Q5_K, 16, None), "q6_k": (GGML_Q6_K, 18, None),
    "iq4_nl": (GGML_IQ4_NL, 25, None),
    "q4_k_m": (GGML_Q4_K, 15, GGML_Q6_K), "q5_k_m": (GGML_Q5_K, 17, GGML_Q6_K),
}

# llama.cpp's fallback for a K-quant on rows not a multiple of 256 (src/llama-quant.cpp)
K_FALLBACK = {GGML_Q2_K: GGML_IQ4_NL, GGML_Q3_K: GGML_IQ4_NL, GGML_Q4_K: GGML_Q5_0,
              GGML_Q5_K: GGML_Q5_1, GGML_Q6_K: GGML_Q8_0}


def use_more_bits(i_layer, n_layers):
    """llama.cpp's choice of the layers whose attn_v / ffn_down get the larger type in the _M
    mixtures: the first and last eighth, and every third layer in between."""
    return (i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8
            or (i_layer - n_layers // 8) % 3 == 2)


def tensor_type(dtype, name, shape, n_layers, has_output):
    """The type of one tensor, and a note for stderr when it is not the one --dtype names.
    1-D tensors (norms, biases) stay F32. Mixtures (q4_k_m, q5_k_m) follow llama.cpp: the output
    matrix (the token embedding when it is tied to the output) gets Q6_K, and so do attn_v and
    ffn_down in the layers use_more_bits picks; a fused attn_qkv gets Q5_K (Q6_K in q5_k_m). A type whose block does not divide the rows falls
    back as llama.cpp does (K-quants: K_FALLBACK), then to F16."""
    if len(shape) != 2 or dtype == "f32":
        return GGML_F32, None
    base, _, larger = DTYPES[dtype]
    t = base
    if larger is not None:
        layer = int(name.split(".")[1]) if name.startswith("blk.") else -1
        is_output = name == "output.weight" or (not has_output and name == "token_embd.weight")
        if is_output:
            t = larger if shape[1] % TYPES[base][1] == 0 else GGML_Q8_0
        elif (name.endswith("attn_v.weight") or name.endswith("ffn_down.weight")) and \
                use_more_bits(layer, n_layers):
            t = larger
        elif name.endswith("attn_qkv.weight"):  # a fused q, k, v: one step up
            t = {GGML_Q4_K: GGML_Q5_K, GGML_Q5_K: GGML_Q6_K}[base]
    if t in K_FALLBACK and shape[1] % 256:
        t = K_FALLBACK[t]
    if shape[1] % TYPES[t][1]:
        t = GGML_F16
    note = None
    if t != base:
        note = f"{TYPES[t][0]}" + (" (rows of %d)" % shape[1] if shape[1] % TYPES[base][1] else "")
    return t, note
