"""quants.py's quantizers as they were before the search ran over all candidates at once
(commit b75a748): one candidate scale at a time over (groups, weights) rows, and np.searchsorted
for IQ4_NL's levels. Kept only for test_quant.py, which requires the current quants.py to write
the same bytes, so that the files export.py writes did not change with its speed.

    quantize(ggml_type, w) -> bytes       w: (rows, cols) float32, cols a multiple of the block
"""

import numpy as np

GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1, GGML_Q5_0, GGML_Q5_1, GGML_Q8_0 = 0, 1, 2, 3, 6, 7, 8
GGML_Q2_K, GGML_Q3_K, GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_IQ4_NL = 10, 11, 12, 13, 14, 20

# type: (name, elements per block, bytes per block)
TYPES = {
    GGML_F32: ("F32", 1, 4), GGML_F16: ("F16", 1, 2),
    GGML_Q4_0: ("Q4_0", 32, 18), GGML_Q4_1: ("Q4_1", 32, 20), GGML_Q5_0: ("Q5_0", 32, 22),
    GGML_Q5_1: ("Q5_1", 32, 24), GGML_Q8_0: ("Q8_0", 32, 34), GGML_Q2_K: ("Q2_K", 256, 84),
    GGML_Q3_K: ("Q3_K", 256, 110), GGML_Q4_K: ("Q4_K", 256, 144), GGML_Q5_K: ("Q5_K", 256, 176),
    GGML_Q6_K: ("Q6_K", 256, 210), GGML_IQ4_NL: ("IQ4_NL", 32, 18),
}

IQ4NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                        dtype=np.float32)

CHUNK = 8192  # blocks quantized at a time: bounds the candidates' memory (~50 MB)


def nbytes(ttype, shape):
    _, block, size = TYPES[ttype]
    n = int(np.prod(shape))
    return n // block * size


def f16(x):
    """x rounded to float16 and back (what the file stores)."""
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


# ---- fitting one group ------------------------------------------------------------------------

def _levels(x, a, b, lo, hi):
    """Nearest levels for weight = a q - b, clipped to [lo, hi] (a = 0: level 0 or lo)."""
    safe = np.where(a == 0, 1.0, a)
    q = np.rint((x + b) / safe)
    q = np.where(a == 0, max(lo, 0), q)
    return np.clip(q, lo, hi)


def _sse(x, a, b, q):
    return ((a * q - b - x) ** 2).sum(axis=-1)


def _refit(x, q, affine, min_le0):
    """Least-squares (a, b) for fixed levels q: weight = a q - b; b = 0 when not affine; b >= 0
    (the group's offset below zero, as K-quants store it) when min_le0."""
    n = x.shape[-1]
    sq, sx = q.sum(-1, keepdims=True), x.sum(-1, keepdims=True)
    sqq, sqx = (q * q).sum(-1, keepdims=True), (q * x).sum(-1, keepdims=True)
    a_sym = np.divide(sqx, sqq, out=np.zeros_like(sqx), where=sqq > 0)
    if not affine:
        return a_sym, np.zeros_like(a_sym)
    det = n * sqq - sq * sq
    a = np.divide(n * sqx - sq * sx, det, out=a_sym.copy(), where=det > 0)
    b = (a * sq - sx) / n
    if min_le0:  # an offset below 0 is not storable: fit a alone with b = 0
        a = np.where(b < 0, a_sym, a)
        b = np.maximum(b, 0)
    return a, b


def fit_group(x, lo, hi, affine, min_le0=False):
    """x (B, n): per row the (a, b) with levels in [lo, hi] of least squared error found among
    candidates; returns a, b (B, 1) float32. Symmetric types (affine False) have b = 0."""
    x = x.astype(np.float32)
    xmin, xmax = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
    if affine:
        base_lo = np.minimum(xmin, 0) if min_le0 else xmin
        span = xmax - base_lo
        cands = []
        for f in np.linspace(1.0, 0.75, 6):  # shrink the range: outliers clip, the rest gain
            for shift in (0.0, 0.5):
                a = span * f / (hi - lo)
                b = -(base_lo + shift * (1 - f) * span)
                if min_le0:
                    b = np.maximum(b, 0)
                cands.append((a, b))
    else:
        amax_idx = np.abs(x).argmax(-1)[:, None]
        xm = np.take_along_axis(x, amax_idx, -1)  # the value of largest magnitude, signed
        cands = [(xm / t, np.zeros_like(xm))
                 for t in list(np.linspace(lo, lo * 0.7, 7)) + list(np.linspace(hi, hi * 0.8, 3))
                 if t != 0]
    best_a = best_b = best_e = None
    for a, b in cands:
        q = _levels(x, a, b, lo, hi)
        a2, b2 = _refit(x, q, affine, min_le0)
        q2 = _levels(x, a2, b2, lo, hi)
        for aa, bb, qq in ((a, b, q), (a2, b2, q2)):
            e = _sse(x, aa, bb, qq)[:, None]
            if best_e is None:
                best_a, best_b, best_e = aa, bb, e
            else:
                better = e < best_e
                best_a = np.where(better, aa, best_a)
                best_b = np.where(better, bb, best_b)
                best_e = np.where(better, e, best_e)
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
    """Q8_0 as ggml's reference quantizer (what tests/py/reference.py's q8_0_round states):
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
    return np.searchsorted(mids, v)


def _iq4_nl(x):
    amax_idx = np.abs(x).argmax(-1)[:, None]
    xm = np.take_along_axis(x, amax_idx, -1)
    best_d = best_e = None
    for t in list(np.linspace(-127, -95, 9)) + [113.0, 100.0]:
        d = xm / t
        safe = np.where(d == 0, 1.0, d)
        idx = _nearest_iq4(x / safe)
        v = IQ4NL_VALUES[idx]
        vv = (v * v).sum(-1, keepdims=True)
        d2 = np.divide((v * x).sum(-1, keepdims=True), vv, out=np.zeros_like(d), where=vv > 0)
        for dd in (d, d2):
            dd = f16(dd)
            safe = np.where(dd == 0, 1.0, dd)
            e = ((dd * IQ4NL_VALUES[_nearest_iq4(x / safe)] - x) ** 2).sum(-1, keepdims=True)
            if best_e is None:
                best_d, best_e = dd, e
            else:
                best_d = np.where(e < best_e, dd, best_d)
                best_e = np.minimum(e, best_e)
    safe = np.where(best_d == 0, 1.0, best_d)
    idx = _nearest_iq4(x / safe)
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


def quantize(ttype, w):
    """w (rows, cols) float32, cols a multiple of the type's block -> the tensor's bytes."""
    _, block, size = TYPES[ttype]
    blocks = np.asarray(w, dtype=np.float32).reshape(-1, block)
    out = np.empty((blocks.shape[0], size), dtype=np.uint8)
    for s in range(0, blocks.shape[0], CHUNK):
        out[s:s + CHUNK] = BLOCK_QUANTIZERS[ttype](blocks[s:s + CHUNK])
    return out.tobytes()
