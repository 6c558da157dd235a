"""GGUF's quantized block types decoded in numpy, written from the layouts (ggml's block structs,
as kernels_quant.h states them) and independently of the engine's C and of export.py's quantizers:
the tests hold both against this.

    decode(ggml_type, raw_bytes) -> float32 array of the weights, in file order

Each decoder evaluates the weight the way ggml's dequantizers do, in float32 and in the same
order (scale products first), so that the engine's dequantizer must match bit for bit.
"""

import re
from pathlib import Path

import numpy as np

# type: (name, elements per block, bytes per block)
BLOCKS = {2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24),
          8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
          12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
          15: ("Q8_K", 256, 292), 20: ("IQ4_NL", 32, 18), 23: ("IQ4_XS", 256, 136),
          21: ("IQ3_S", 256, 110), 18: ("IQ3_XXS", 256, 98), 16: ("IQ2_XXS", 256, 66),
          17: ("IQ2_XS", 256, 74), 22: ("IQ2_S", 256, 82), 19: ("IQ1_S", 256, 50),
          29: ("IQ1_M", 256, 56)}
BY_NAME = {v[0]: k for k, v in BLOCKS.items()}

IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113],
                 dtype=np.float32)


def _f16(raw, col):
    """The half at byte col of each block row, as float32 (B, 1)."""
    return raw[:, col:col + 2].copy().view("<f2").astype(np.float32)


def _lo_hi(qs):
    """Legacy nibbles: (B, 16) bytes -> (B, 32): low nibbles are weights 0..15, high 16..31."""
    return np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32)


def _qh_bits(raw, col):
    """Bit j of the little-endian u32 at col -> (B, 32) of 0/1 for weight j."""
    h = raw[:, col:col + 4].copy().view("<u4")
    return ((h >> np.arange(32, dtype=np.uint32)) & 1).astype(np.int32)


def q4_0(raw):
    d = _f16(raw, 0)
    return (_lo_hi(raw[:, 2:18]) - 8).astype(np.float32) * d


def q4_1(raw):
    d, m = _f16(raw, 0), _f16(raw, 2)
    return _lo_hi(raw[:, 4:20]).astype(np.float32) * d + m


def q5_0(raw):
    d = _f16(raw, 0)
    q = _lo_hi(raw[:, 6:22]) | (_qh_bits(raw, 2) << 4)
    return (q - 16).astype(np.float32) * d


def q5_1(raw):
    d, m = _f16(raw, 0), _f16(raw, 2)
    q = _lo_hi(raw[:, 8:24]) | (_qh_bits(raw, 4) << 4)
    return q.astype(np.float32) * d + m


def q8_0(raw):
    return raw[:, 2:34].copy().view(np.int8).astype(np.float32) * _f16(raw, 0)


def iq4_nl(raw):
    return _f16(raw, 0) * IQ4NL[_lo_hi(raw[:, 2:18])]


def _crumbs(qs):
    """Q2_K/Q3_K low bits: (B, 64) bytes -> (B, 256): weight 128 n + 32 j + l is bits 2j..2j+1
    of byte 32 n + l."""
    b = qs.reshape(-1, 2, 1, 32)  # n, (j), l
    shifts = (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)
    return ((b >> shifts) & 3).reshape(-1, 256).astype(np.int32)


def _per16(v):
    """(B, 16) group values -> (B, 256), each repeated over its 16 weights."""
    return np.repeat(v, 16, axis=1)


def q2_k(raw):
    sc = raw[:, 0:16]
    q = _crumbs(raw[:, 16:80])
    d, dmin = _f16(raw, 80), _f16(raw, 82)
    dl = d * (sc & 15).astype(np.float32)
    ml = dmin * (sc >> 4).astype(np.float32)
    return _per16(dl) * q.astype(np.float32) - _per16(ml)


def q3_k(raw):
    hmask, qs, sb = raw[:, 0:32], raw[:, 32:96], raw[:, 96:108]
    d = _f16(raw, 108)
    g = np.arange(16)
    lo = (sb[:, g % 8] >> (4 * (g // 8)).astype(np.uint8)) & 15
    hi = (sb[:, 8 + g % 4] >> (2 * (g // 4)).astype(np.uint8)) & 3
    s = (lo | (hi << 4)).astype(np.int32) - 32
    i = np.arange(256)
    bit = (4 * (i // 128) + (i % 128) // 32).astype(np.uint8)
    high = (hmask[:, i % 32] >> bit) & 1
    q = _crumbs(qs) - np.where(high == 1, 0, 4)
    dl = d * s.astype(np.float32)
    return _per16(dl) * q.astype(np.float32)


def _k4_scale_min(sb):
    """(B, 12) -> 6-bit scales and mins (B, 8)."""
    sb = sb.astype(np.int32)
    sc = np.concatenate([sb[:, 0:4] & 63, (sb[:, 8:12] & 15) | ((sb[:, 0:4] >> 6) << 4)], 1)
    m = np.concatenate([sb[:, 4:8] & 63, (sb[:, 8:12] >> 4) | ((sb[:, 4:8] >> 6) << 4)], 1)
    return sc, m


def _k4_nibbles(qs):
    """(B, 128) -> (B, 256): weight 64 c + 32 h + l is nibble h of byte 32 c + l."""
    b = qs.reshape(-1, 4, 1, 32)
    return ((b >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)) & 15).reshape(-1, 256)


def _k4_values(raw, q, sb):
    d, dmin = _f16(raw, 0), _f16(raw, 2)
    sc, m = _k4_scale_min(sb)
    d1 = np.repeat(d * sc.astype(np.float32), 32, axis=1)
    m1 = np.repeat(dmin * m.astype(np.float32), 32, axis=1)
    return d1 * q.astype(np.float32) - m1


def q4_k(raw):
    return _k4_values(raw, _k4_nibbles(raw[:, 16:144]).astype(np.int32), raw[:, 4:16])


def q5_k(raw):
    q = _k4_nibbles(raw[:, 48:176]).astype(np.int32)
    i = np.arange(256)
    bit = (2 * (i // 64) + (i % 64) // 32).astype(np.uint8)
    q = q + (((raw[:, 16:48][:, i % 32] >> bit) & 1).astype(np.int32) << 4)
    return _k4_values(raw, q, raw[:, 4:16])


def q6_k(raw):
    ql, qh = raw[:, 0:128], raw[:, 128:192]
    sc = raw[:, 192:208].copy().view(np.int8).astype(np.float32)
    d = _f16(raw, 208)
    i = np.arange(256)
    n, k, l = i // 128, (i % 128) // 32, i % 32
    lo = (ql[:, 64 * n + 32 * (k % 2) + l] >> (4 * (k // 2)).astype(np.uint8)) & 15
    hi = (qh[:, 32 * n + l] >> (2 * k).astype(np.uint8)) & 3
    q = (lo.astype(np.int32) | (hi.astype(np.int32) << 4)) - 32
    return _per16(d * sc) * q.astype(np.float32)


def q8_k(raw):
    d = raw[:, 0:4].copy().view("<f4")
    return d * raw[:, 4:260].copy().view(np.int8).astype(np.float32)


# ---- the i-quants (kernels_iquant.h) -------------------------------------------------------

def _grids():
    """The codebooks as (points, elements) arrays of grid values, from the data header (its
    numbers; the tests hold them to ggml's dequantization): each point a uint16 of level
    indices, element j at bit `bits` * j."""
    text = (Path(__file__).resolve().parents[2] / "kernels_iquant_grids.h").read_text()
    levels = {"IQ2": [8, 25, 43], "IQ3XXS": [4, 12, 20, 28, 36, 44, 52, 62],
              "IQ3S": [1, 3, 5, 7, 9, 11, 13, 15], "IQ1S": [-1, 0, 1]}
    shape = {"IQ2XXS": ("IQ2", 8, 2), "IQ2XS": ("IQ2", 8, 2), "IQ2S": ("IQ2", 8, 2),
             "IQ3XXS": ("IQ3XXS", 4, 3), "IQ3S": ("IQ3S", 4, 3), "IQ1S": ("IQ1S", 8, 2)}
    out = {}
    for name, body in re.findall(r"(\w+)_GRID\[\d+\] = \{([^}]*)\}", text):
        lv, n, bits = shape[name]
        codes = np.array([int(v, 16) for v in re.findall(r"0x[0-9a-f]+", body)])[:, None]
        idx = (codes >> (bits * np.arange(n))) & ((1 << bits) - 1)
        out[name] = np.array(levels[lv], dtype=np.float32)[idx]
    return out


GRIDS = _grids()
BIT8 = (1 << np.arange(8)).astype(np.uint8)


def _sign_bits(s):
    """Sign bytes (..., ) -> (..., 8) of +1/-1, bit j for element j."""
    return np.where((s[..., None] & BIT8) != 0, -1.0, 1.0).astype(np.float32)


def _signs7(s):
    """7-bit signs: the 8th bit makes the count of set bits even."""
    s = (s & 127).astype(np.uint32)
    par = np.unpackbits(s.astype(np.uint8)[..., None], axis=-1).sum(-1) & 1
    return (s | (par << 7)).astype(np.uint8)


def _u16(raw, col, n):
    return raw[:, col:col + 2 * n].copy().view("<u2").astype(np.uint32)


def _u32(raw, col, n):
    return raw[:, col:col + 4 * n].copy().view("<u4").astype(np.uint32)


def _per(v, k):
    return np.repeat(v, k, axis=1)


def iq4_xs(raw):
    d = _f16(raw, 0)
    sh = _u16(raw, 2, 1)
    g = np.arange(8)
    ls = ((raw[:, 4 + g // 2] >> (4 * (g % 2)).astype(np.uint8)) & 15).astype(np.int32) | \
        (((sh >> (2 * g).astype(np.uint32)) & 3) << 4).astype(np.int32)
    dl = d * (ls - 32).astype(np.float32)
    qs = raw[:, 8:136].reshape(-1, 8, 16)
    q = np.concatenate([qs & 15, qs >> 4], axis=2).reshape(-1, 256)
    return _per(dl, 32) * IQ4NL[q]


def iq3_xxs(raw):
    d = _f16(raw, 0)
    t = _u32(raw, 66, 8)  # (B, 8)
    db = d * (0.5 + (t >> 28).astype(np.float32)) * np.float32(0.5)
    signs = _signs7(t[:, :, None] >> (7 * np.arange(4, dtype=np.uint32)))  # (B, 8, 4)
    pts = GRIDS["IQ3XXS"][raw[:, 2:66]].reshape(-1, 8, 4, 8)  # g, l, two 4-vectors
    v = pts * _sign_bits(signs)
    return _per(db, 32) * v.reshape(-1, 256)


def iq3_s(raw):
    d = _f16(raw, 0)
    qs, qh, sg, sc = raw[:, 2:66], raw[:, 66:74], raw[:, 74:106], raw[:, 106:110]
    g = np.arange(8)
    db = d * (1 + 2 * ((sc[:, g // 2] >> (4 * (g % 2)).astype(np.uint8)) & 15)).astype(np.float32)
    k = np.arange(64)
    hi = (qh[:, k // 8] >> (k % 8).astype(np.uint8)) & 1
    idx = qs.astype(np.int32) | (hi.astype(np.int32) << 8)
    pts = GRIDS["IQ3S"][idx].reshape(-1, 32, 8)  # each 8 weights
    return _per(db, 32) * (pts * _sign_bits(sg)).reshape(-1, 256)


def iq2_xxs(raw):
    d = _f16(raw, 0)
    w = _u32(raw, 2, 16).reshape(-1, 8, 2)
    db = d * (0.5 + (w[:, :, 1] >> 28).astype(np.float32)) * np.float32(0.25)
    idx = raw[:, 2:66].reshape(-1, 8, 8)[:, :, 0:4]  # (B, g, l)
    signs = _signs7(w[:, :, 1:2] >> (7 * np.arange(4, dtype=np.uint32)))
    v = GRIDS["IQ2XXS"][idx] * _sign_bits(signs)
    return _per(db, 32) * v.reshape(-1, 256)


def _iq2_scales(d, sc):
    h = np.arange(16)
    s = ((sc[:, h // 2] >> (4 * (h % 2)).astype(np.uint8)) & 15).astype(np.float32)
    return _per(d * (0.5 + s) * np.float32(0.25), 16)


def iq2_xs(raw):
    qs = _u16(raw, 2, 32)
    v = GRIDS["IQ2XS"][qs & 511] * _sign_bits(_signs7(qs >> 9))
    return _iq2_scales(_f16(raw, 0), raw[:, 66:74]) * v.reshape(-1, 256)


def iq2_s(raw):
    qs, sg, qh = raw[:, 2:34], raw[:, 34:66], raw[:, 66:74]
    k = np.arange(32)
    hi = (qh[:, k // 4] >> (2 * (k % 4)).astype(np.uint8)) & 3
    idx = qs.astype(np.int32) | (hi.astype(np.int32) << 8)
    v = GRIDS["IQ2S"][idx] * _sign_bits(sg)
    return _iq2_scales(_f16(raw, 0), raw[:, 74:82]) * v.reshape(-1, 256)


def iq1_s(raw):
    d = _f16(raw, 0)
    qh = _u16(raw, 34, 8)  # (B, 8)
    dl = d * (2 * ((qh >> 12) & 7) + 1).astype(np.float32)
    delta = np.where(qh & 0x8000, -0.125, 0.125).astype(np.float32)
    l = np.arange(4, dtype=np.uint32)
    hi = (qh[:, :, None] >> (3 * l)) & 7
    idx = raw[:, 2:34].reshape(-1, 8, 4).astype(np.uint32) | (hi << 8)
    v = GRIDS["IQ1S"][idx] + delta[:, :, None, None]
    return _per(dl, 32) * v.reshape(-1, 256)


def iq1_m(raw):
    qs, qh, sc = raw[:, 0:32], raw[:, 32:48], _u16(raw, 48, 4)
    dh = (sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0xf0) | ((sc[:, 2] >> 4) & 0xf00) | \
        (sc[:, 3] & 0xf000)
    d = dh.astype(np.uint16).view(np.float16).astype(np.float32)[:, None]
    h = np.arange(16)
    dl = d * (2 * ((sc[:, h // 4] >> (3 * (h % 4)).astype(np.uint32)) & 7) + 1).astype(np.float32)
    k = np.arange(32)
    nib = (qh[:, k // 2] >> (4 * (k % 2)).astype(np.uint8)) & 15
    idx = qs.astype(np.int32) | ((nib & 7).astype(np.int32) << 8)
    delta = np.where(nib & 8, -0.125, 0.125).astype(np.float32)
    v = GRIDS["IQ1S"][idx] + delta[:, :, None]
    return _per(dl, 16) * v.reshape(-1, 256)


DECODERS = {2: q4_0, 3: q4_1, 6: q5_0, 7: q5_1, 8: q8_0, 10: q2_k, 11: q3_k, 12: q4_k, 13: q5_k,
            14: q6_k, 15: q8_k, 20: iq4_nl, 23: iq4_xs, 21: iq3_s, 18: iq3_xxs, 16: iq2_xxs,
            17: iq2_xs, 22: iq2_s, 19: iq1_s, 29: iq1_m}


def decode(ttype, raw):
    """The weights of whole blocks of type ttype in raw (bytes or uint8 array), float32."""
    _, block, size = BLOCKS[ttype]
    a = np.frombuffer(raw, dtype=np.uint8) if isinstance(raw, (bytes, bytearray)) else raw
    a = a.reshape(-1, size)
    with np.errstate(over="ignore", invalid="ignore"):  # inf/NaN scales decode as ggml's would
        return DECODERS[ttype](a).astype(np.float32).reshape(-1)
