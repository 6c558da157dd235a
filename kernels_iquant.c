/* kernels_iquant.c: the i-quants' unpacks (layouts in kernels_iquant.h) into the common form of
 * kernels_quant.h: weight i = a[i / 16] * q[i], with the products ggml's dequantizers take (a
 * per-group float scale times a signed small integer), so that dequantize() matches them bit for
 * bit. */
#include <string.h>

#include "half.h"
#include "kernels_iquant.h"
#include "kernels_iquant_grids.h"

#pragma STDC FP_CONTRACT OFF

static float half(uint16_t h) { return f16_table[h]; }

static uint32_t u32_at(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A 7-bit sign as the 8 signs of its weights: bit 7 makes the count of minus signs even. */
static uint8_t signs7(uint32_t s) {
    s &= 127;
    const uint32_t odd = (uint32_t)__builtin_popcount(s) & 1;
    return (uint8_t)(s | odd << 7);
}

/* n grid elements of `bits` bits each from `code` into levels, negated where `signs` has the bit
   (bit j for element j), times mul plus add: q[j] = mul * (+-level) + add. */
static void grid_points(int8_t *q, uint16_t code, int n, int bits, const int8_t *levels,
                        uint8_t signs, int mul, int add) {
    for (int j = 0; j < n; j++) {
        const int v = levels[(code >> (bits * j)) & ((1 << bits) - 1)];
        q[j] = (int8_t)(mul * ((signs >> j) & 1 ? -v : v) + add);
    }
}

static void set_groups(Levels *out, int g16, float a) {
    out->a[g16] = a;
    out->b[g16] = 0.0f;
}

void unpack_iq4_xs(const void *block, Levels *out) {
    const BlockIQ4XS *b = block;
    const float d = half(b->d);
    out->n = QK_K;
    for (int g = 0; g < QK_K / 32; g++) {
        const int ls = ((b->scales_l[g / 2] >> (4 * (g % 2))) & 15) | ((b->scales_h >> (2 * g)) & 3)
                                                                          << 4;
        const float dl = d * (float)(ls - 32);
        set_groups(out, 2 * g, dl);
        set_groups(out, 2 * g + 1, dl);
        for (int j = 0; j < 16; j++) {
            out->q[32 * g + j] = IQ4NL_VALUES[b->qs[16 * g + j] & 15];
            out->q[32 * g + j + 16] = IQ4NL_VALUES[b->qs[16 * g + j] >> 4];
        }
    }
}

void unpack_iq3_xxs(const void *block, Levels *out) {
    const BlockIQ3XXS *b = block;
    const float d = half(b->d);
    out->n = QK_K;
    for (int g = 0; g < QK_K / 32; g++) {
        const uint32_t t = u32_at(b->qs + QK_K / 4 + 4 * g);
        const float db = d * (0.5f + (float)(t >> 28)) * 0.5f;
        set_groups(out, 2 * g, db);
        set_groups(out, 2 * g + 1, db);
        for (int l = 0; l < 4; l++) {
            const uint8_t s = signs7(t >> (7 * l));
            int8_t *q = out->q + 32 * g + 8 * l;
            grid_points(q, IQ3XXS_GRID[b->qs[8 * g + 2 * l]], 4, 3, IQ3XXS_LEVELS, s, 1, 0);
            grid_points(q + 4, IQ3XXS_GRID[b->qs[8 * g + 2 * l + 1]], 4, 3, IQ3XXS_LEVELS,
                        (uint8_t)(s >> 4), 1, 0);
        }
    }
}

void unpack_iq3_s(const void *block, Levels *out) {
    const BlockIQ3S *b = block;
    const float d = half(b->d);
    out->n = QK_K;
    for (int g = 0; g < QK_K / 32; g++) {
        const float db = d * (float)(1 + 2 * ((b->scales[g / 2] >> (4 * (g % 2))) & 15));
        set_groups(out, 2 * g, db);
        set_groups(out, 2 * g + 1, db);
        for (int k = 0; k < 8; k++) {
            const int idx = b->qs[8 * g + k] | ((b->qh[g] >> k) & 1) << 8;
            const uint8_t s = (uint8_t)(b->signs[4 * g + k / 2] >> (4 * (k % 2)));
            grid_points(out->q + 32 * g + 4 * k, IQ3S_GRID[idx], 4, 3, IQ3S_LEVELS, s, 1, 0);
        }
    }
}

void unpack_iq2_xxs(const void *block, Levels *out) {
    const BlockIQ2XXS *b = block;
    const uint8_t *qs = (const uint8_t *)b->qs;
    const float d = half(b->d);
    out->n = QK_K;
    for (int g = 0; g < QK_K / 32; g++) {
        const uint32_t t = u32_at(qs + 8 * g + 4);
        const float db = d * (0.5f + (float)(t >> 28)) * 0.25f;
        set_groups(out, 2 * g, db);
        set_groups(out, 2 * g + 1, db);
        for (int l = 0; l < 4; l++)
            grid_points(out->q + 32 * g + 8 * l, IQ2XXS_GRID[qs[8 * g + l]], 8, 2, IQ2_LEVELS,
                        signs7(t >> (7 * l)), 1, 0);
    }
}

/* IQ2_XS and IQ2_S: per 16 weights h, d * (0.5 + nibble h % 2 of scales[h / 2]) * 0.25 */
static void iq2_scales(Levels *out, float d, const uint8_t scales[QK_K / 32]) {
    for (int h = 0; h < QK_K / 16; h++)
        set_groups(out, h, d * (0.5f + (float)((scales[h / 2] >> (4 * (h % 2))) & 15)) * 0.25f);
}

void unpack_iq2_xs(const void *block, Levels *out) {
    const BlockIQ2XS *b = block;
    out->n = QK_K;
    iq2_scales(out, half(b->d), b->scales);
    for (int k = 0; k < QK_K / 8; k++)
        grid_points(out->q + 8 * k, IQ2XS_GRID[b->qs[k] & 511], 8, 2, IQ2_LEVELS,
                    signs7(b->qs[k] >> 9), 1, 0);
}

void unpack_iq2_s(const void *block, Levels *out) {
    const BlockIQ2S *b = block;
    out->n = QK_K;
    iq2_scales(out, half(b->d), b->scales);
    for (int k = 0; k < QK_K / 8; k++) {
        const int idx = b->qs[k] | ((b->qh[k / 4] >> (2 * (k % 4))) & 3) << 8;
        grid_points(out->q + 8 * k, IQ2S_GRID[idx], 8, 2, IQ2_LEVELS, b->qs[QK_K / 8 + k], 1, 0);
    }
}

/* IQ1_S and IQ1_M: dl * (grid + delta), delta = +-1/8, as (dl / 8) * (8 grid +- 1): scaling by
   a power of two is exact, so both products round the same real number. */
void unpack_iq1_s(const void *block, Levels *out) {
    const BlockIQ1S *b = block;
    const float d = half(b->d);
    out->n = QK_K;
    for (int g = 0; g < QK_K / 32; g++) {
        const int qh = b->qh[g];
        const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
        set_groups(out, 2 * g, dl * 0.125f);
        set_groups(out, 2 * g + 1, dl * 0.125f);
        for (int l = 0; l < 4; l++) {
            const int idx = b->qs[4 * g + l] | ((qh >> (3 * l)) & 7) << 8;
            grid_points(out->q + 32 * g + 8 * l, IQ1S_GRID[idx], 8, 2, IQ1S_LEVELS, 0, 8,
                        qh & 0x8000 ? -1 : 1);
        }
    }
}

void unpack_iq1_m(const void *block, Levels *out) {
    const BlockIQ1M *b = block;
    uint16_t sc[4];
    memcpy(sc, b->scales, sizeof sc); /* little-endian hosts, as GGUF */
    const uint16_t dh = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                   ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    const float d = half(dh);
    out->n = QK_K;
    for (int h = 0; h < QK_K / 16; h++) {
        const float dl = d * (float)(2 * ((sc[h / 4] >> (3 * (h % 4))) & 7) + 1);
        set_groups(out, h, dl * 0.125f);
    }
    for (int k = 0; k < QK_K / 8; k++) {
        const int nib = (b->qh[k / 2] >> (4 * (k % 2))) & 15;
        grid_points(out->q + 8 * k, IQ1S_GRID[b->qs[k] | (nib & 7) << 8], 8, 2, IQ1S_LEVELS, 0, 8,
                    nib & 8 ? -1 : 1);
    }
}
