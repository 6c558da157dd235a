"""quants.py's quantizers as they were before the search ran over all candidates at once
(commit b75a748): one candidate scale at a time over (groups, weights) rows, and np.searchsorted
for IQ4_NL's levels. Kept only for test_quant.py, which requires the current quants.py to write
the same bytes, so that the files export.py writes did not change with its speed.

Only the evaluation of the candidates changed in that commit: the candidates themselves
(quants.candidates, IQ4NL_DIVISORS) and the code that lays out each type's blocks (_legacy,
_q8_0, the K-quants) are quants.py's own, run here with this module's fit_group in its place.

    quantize(ggml_type, w) -> bytes       w: (rows, cols) float32, cols a multiple of the block
"""

import types

import numpy as np

import quants
from quants import (GGML_IQ4_NL, GGML_Q2_K, GGML_Q3_K, GGML_Q4_0, GGML_Q4_1, GGML_Q4_K,  # noqa: F401
                    GGML_Q5_0, GGML_Q5_1, GGML_Q5_K, GGML_Q6_K, GGML_Q8_0, IQ4NL_DIVISORS,
                    IQ4NL_VALUES, TYPES, _fifth_bits, _half_bytes, _k4_scales, _nibbles, _scales, _signed_scales,
                    _two_bits, f16)

CHUNK = 8192  # blocks quantized at a time: bounds the candidates' memory (~50 MB)


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
    return quants.affine_fit(n, sq, sx, sqq, sqx, a_sym, min_le0)


def fit_group(x, lo, hi, affine, min_le0=False):
    """x (B, n): per row the (a, b) with levels in [lo, hi] of least squared error found among
    candidates; returns a, b (B, 1) float32. Symmetric types (affine False) have b = 0."""
    x = x.astype(np.float32)
    cands = [(a[:, None], b[:, None]) for a, b in quants.candidates(x, lo, hi, affine, min_le0)]
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


def _nearest_iq4(v):
    """Index of the IQ4_NL level nearest to each v."""
    mids = (IQ4NL_VALUES[1:] + IQ4NL_VALUES[:-1]) / 2
    return np.searchsorted(mids, v)


def _iq4_nl(x):
    xm = quants.extreme(x)[:, None]
    best_d = best_e = None
    for t in IQ4NL_DIVISORS:
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


# ---- the block layouts: quants.py's functions, their fit_group this module's -----------------

def _old_search(fn):
    """quants.py's fn with its global names (fit_group, _k_affine, ...) looked up here."""
    return types.FunctionType(fn.__code__, globals(), fn.__name__, fn.__defaults__)


_legacy, _q8_0, _k_affine, _k_symmetric = (_old_search(f) for f in (
    quants._legacy, quants._q8_0, quants._k_affine, quants._k_symmetric))
_q2_k, _q3_k, _q4_k, _q5_k, _q6_k = (_old_search(f) for f in (
    quants._q2_k, quants._q3_k, quants._q4_k, quants._q5_k, quants._q6_k))

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
