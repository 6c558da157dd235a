/* kernels_simd.h: the SIMD leaf kernels, written once and compiled once per instruction set.
 *
 * Each SIMD set is a file of its own (kernels_avx512.c, kernels_avx2.c, kernels_neon.c) that
 * defines the mapping macros below, includes this file once, and so defines its table
 * `const Kernels FN(kernels)` (kernels_avx512, ...). The macros end where that file ends. This
 * file stops with #error when one it needs is missing. Required:
 *
 *   NAME            the set's name, a string ("AVX-512")
 *   FN(name)        the function's name with the set's suffix (dot_f32 -> dot_f32_avx2)
 *   TARGET          a function attribute enabling the set (empty where it is the baseline)
 *   VF, VL          a vector of VL floats
 *   vzero() vload(p) vloadh(p) vloadbf(p) vfma(a, b, c) vsum(v)
 *                   zero; load VL floats; load VL halves (F16) or VL BF16 as floats (BF16:
 *                   widened by a 16-bit shift, exact); a * b + c; horizontal sum
 *   vset1(x) vstore(p, v)   broadcast a float; store VL floats
 *   vstoreh(p, v)   store VL floats as halves, rounded to nearest even (as f32_to_f16)
 *   f16s(h)         one half to float in hardware (a table lookup would miss the cache)
 *   TR              weight rows of a matrix-matrix tile; its 2 * TR accumulators of 2 * VL
 *                   positions, two activation vectors and a broadcast fill the register file.
 *                   At least 3: attention's products take TR / 3 queries at a time, or
 *                   AR (optional) at a time, then TR / 3, where the registers hold 4 * AR
 *                   accumulators, 4 vectors and a broadcast
 *   Q8_ACC_TYPE, Q8_ACC_ZERO(), Q8_ACC_SUM(a), Q8_DOT(acc, wblock, xblock, scale)
 *                   a float accumulator for Q8_0 dot products, its zero, its sum as one float,
 *                   and acc += scale * (the exact integer dot product of one pair of 32-byte
 *                   blocks)
 *   TILE_Q8         the set's integer Q8_0 tile for prompts (Kernels.tile_q8), or NULL
 *   GEMV_Q8P, GEMV_Q4P, GEMV_Q5P   the set's decoding kernels for repacked Q8_0, Q4_0 and
 *                   Q5_0 (Kernels.gemv_packed), or NULL
 *   TILE_Q8P, TILE_Q4P, TILE_Q5P   its prompt tiles for them (Kernels.tile_packed), or NULL
 *   TILE_ACT        their activations quantized (Kernels.tile_act), or NULL
 *   I8DOT16(a, b), I8DOT32(a, b)
 *                   the exact sum of the 16 or 32 products a[i] * b[i] of signed bytes, as an
 *                   int (|a[i]|, |b[i]| <= 127: the levels of the quantized types, unpacked)
 * Optional: TILE_LV, the set's integer tile for the other quantized types (Kernels.tile_lv):
 *                   with it, the rows of levels it takes (Kernels.lv_row) are compiled too, and
 *                   LV_Q4_1, LV_Q5_0, LV_Q5_1, LV_IQ4_NL may name the set's own for those types
 * Optional: DOT_Q4_0, DOT_Q4_1, DOT_Q5_0, DOT_Q5_1, DOT_IQ4_NL, DOT_Q2_K, DOT_Q3_K, DOT_Q4_K,
 *                   DOT_Q5_K, DOT_Q6_K, a set's own dot product for that type (a DotFn defined
 *                   before this file is included), in place of the generic one here.
 * Optional: GEMV_Q4KP, GEMV_Q6KP, the set's decoding kernels for repacked Q4_K and Q6_K
 * (Kernels.gemv_packed_k), TILE_Q4KP, TILE_Q6KP its prompt tiles for them
 * (Kernels.tile_packed_k) and TILE_ACT_K their activations (Kernels.tile_act_k); NULL when not
 * defined.
 * Optional, for sets whose vectors hold two blocks (all four or none):
 *   Q8_ACC2_TYPE, Q8_ACC2_ZERO(), Q8_ACC2_FOLD(a), Q8_DOT2(acc, wblocks, xblocks)
 *                   a wider accumulator, its zero, it folded to a Q8_ACC_TYPE, and acc += the
 *                   scaled integer dot products of blocks [0] and [1], each with its own scales
 *
 * Every function handles any length: vector loop, then a scalar tail.
 */
#include "kernels_sets.h"

#if !defined(NAME) || !defined(FN) || !defined(TARGET) || !defined(TILE_Q8) ||                     \
    !defined(GEMV_Q8P) || !defined(GEMV_Q4P) || !defined(GEMV_Q5P)
#error "kernels_simd.h: define NAME, FN, TARGET, TILE_Q8, GEMV_Q8P, GEMV_Q4P and GEMV_Q5P first"
#endif
#ifndef GEMV_Q4KP
#define GEMV_Q4KP NULL
#endif
#ifndef GEMV_Q6KP
#define GEMV_Q6KP NULL
#endif
#ifndef TILE_Q4KP
#define TILE_Q4KP NULL
#endif
#ifndef TILE_Q6KP
#define TILE_Q6KP NULL
#endif
#ifndef TILE_ACT_K
#define TILE_ACT_K NULL
#endif
#if !defined(TILE_Q8P) || !defined(TILE_Q4P) || !defined(TILE_Q5P) || !defined(TILE_ACT)
#error "kernels_simd.h: define TILE_Q8P, TILE_Q4P, TILE_Q5P and TILE_ACT first"
#endif
#if !defined(VF) || !defined(VL) || !defined(vzero) || !defined(vload) || !defined(vloadh) ||      \
    !defined(vfma) || !defined(vsum) || !defined(vset1) || !defined(vstore) || !defined(f16s) ||   \
    !defined(vstoreh) || !defined(vloadbf)
#error "kernels_simd.h: define VF, VL, vzero, vload(h, bf), vfma, vsum, vset1, vstore(h), f16s"
#endif
#if !defined(I8DOT16) || !defined(I8DOT32)
#error "kernels_simd.h: define I8DOT16 and I8DOT32 first"
#endif
#if !defined(TR) || TR < 3
#error "kernels_simd.h: define TR, at least 3, first"
#endif
#if !defined(Q8_ACC_TYPE) || !defined(Q8_ACC_ZERO) || !defined(Q8_ACC_SUM) || !defined(Q8_DOT)
#error "kernels_simd.h: define Q8_ACC_TYPE, Q8_ACC_ZERO, Q8_ACC_SUM and Q8_DOT first"
#endif
#if (defined(Q8_DOT2) || defined(Q8_ACC2_TYPE) || defined(Q8_ACC2_ZERO) ||                         \
     defined(Q8_ACC2_FOLD)) &&                                                                     \
    !(defined(Q8_DOT2) && defined(Q8_ACC2_TYPE) && defined(Q8_ACC2_ZERO) && defined(Q8_ACC2_FOLD))
#error "kernels_simd.h: define all of Q8_DOT2, Q8_ACC2_TYPE, Q8_ACC2_ZERO, Q8_ACC2_FOLD, or none"
#endif

/* The weights of dot_from: floats, or 16-bit floats widened in registers. */
#define W_F32 0
#define W_F16 1
#define W_BF16 2

/* sum_{i0 <= i < n} w[i] * x[i], plus `sum`, for weights that are floats, halves or BF16 (kind,
 * W_*), the 16-bit ones widened in registers; kind is a constant wherever this is inlined, so
 * each caller gets its own straight loop. Four independent accumulators hide the FMA latency. */
static inline __attribute__((always_inline)) TARGET float FN(dot_from)(const void *w,
                                                                       const float *x, int i0,
                                                                       int n, float sum,
                                                                       const int kind) {
    const float *wf = w;
    const uint16_t *wh = w;
/* VL weights from k widened to floats, or (WONE) the one weight k */
#define WLOAD(k)                                                                                   \
    (kind == W_F16 ? vloadh(wh + (k)) : kind == W_BF16 ? vloadbf(wh + (k)) : vload(wf + (k)))
#define WONE(k) (kind == W_F16 ? f16_table[wh[k]] : kind == W_BF16 ? bf16_to_f32(wh[k]) : wf[k])
    VF a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
    int i = i0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        a0 = vfma(WLOAD(i), vload(x + i), a0);
        a1 = vfma(WLOAD(i + VL), vload(x + i + VL), a1);
        a2 = vfma(WLOAD(i + 2 * VL), vload(x + i + 2 * VL), a2);
        a3 = vfma(WLOAD(i + 3 * VL), vload(x + i + 3 * VL), a3);
    }
    for (; i + VL <= n; i += VL) a0 = vfma(WLOAD(i), vload(x + i), a0);
    sum = vsum(a0) + vsum(a1) + (vsum(a2) + vsum(a3)) + sum;
    for (; i < n; i++) sum += WONE(i) * x[i];
#undef WLOAD
#undef WONE
    return sum;
}

/* The first few products are done one at a time until w sits on a vector boundary, so that no
 * load of the weights (read from memory, unlike x) straddles two cache lines: GGUF's default
 * alignment is 32 bytes, half a 512-bit vector, and straddling loads cost a third of the
 * bandwidth here. */
static TARGET float FN(dot_f32)(const void *wv, const void *x, int n) {
    const float *w = wv;
    const int off = (int)((uintptr_t)w / sizeof(float) % VL);
    int i = 0, head = off ? VL - off : 0;
    float sum_head = 0.0f;
    for (; i < head && i < n; i++) sum_head += w[i] * ((const float *)x)[i];
    return FN(dot_from)(w, x, i, n, sum_head, W_F32);
}

/* No alignment head for halves (F16, BF16): a load of VL halves is at most 32 bytes, which from
   GGUF's 32-byte alignment stays within a cache line (rows of a multiple of 16 halves). */
static TARGET float FN(dot_f16)(const void *w, const void *x, int n) {
    return FN(dot_from)(w, x, 0, n, 0.0f, W_F16);
}

/* BF16 weights, widened exactly, then the F32 arithmetic. */
static TARGET float FN(dot_bf16)(const void *w, const void *x, int n) {
    return FN(dot_from)(w, x, 0, n, 0.0f, W_BF16);
}

/* Q8_0 weights against Q8_0-quantized activations: per block an exact integer dot product,
 * then scaled by both blocks' scales: sum_b d_w[b] * d_x[b] * sum_i w[b][i] * x[b][i]. */
static TARGET float FN(dot_q8)(const void *wv, const void *xv, int n) {
    const BlockQ8 *w = wv, *x = xv;
    const int nblocks = n / QK8_0;
    Q8_ACC_TYPE acc0 = Q8_ACC_ZERO(), acc1 = Q8_ACC_ZERO();
    int b = 0;
#ifdef Q8_DOT2 /* two blocks per instruction where the vectors are wide enough */
    Q8_ACC2_TYPE acc2 = Q8_ACC2_ZERO();
    for (; b + 2 <= nblocks; b += 2) Q8_DOT2(acc2, &w[b], &x[b]);
    acc0 = Q8_ACC2_FOLD(acc2);
#endif
    for (; b + 2 <= nblocks; b += 2) {
        Q8_DOT(acc0, &w[b], &x[b], f16s(w[b].d) * f16s(x[b].d));
        Q8_DOT(acc1, &w[b + 1], &x[b + 1], f16s(w[b + 1].d) * f16s(x[b + 1].d));
    }
    if (b < nblocks) Q8_DOT(acc0, &w[b], &x[b], f16s(w[b].d) * f16s(x[b].d));
    return Q8_ACC_SUM(acc0) + Q8_ACC_SUM(acc1);
}

/* ---- the other quantized types -----------------------------------------------------------
 * Each block's levels are unpacked to signed bytes first (plain loops over a block, which the
 * compiler vectorizes for the set), then multiplied with the activations' bytes in exact integer
 * sums of 16 or 32 (I8DOT16/32), scaled per group: the same sums as dot_ref (kernels_quant.c),
 * summed in another order. Legacy types meet Q8_0 activations, K-quants Q8_K. */

/* 16 bytes of nibbles -> 32 levels: low nibbles are weights 0..15, high 16..31; minus off. */
static inline __attribute__((always_inline)) TARGET void FN(nibbles32)(int8_t *q, const uint8_t *qs,
                                                                       int off) {
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 15) - off);
        q[j + 16] = (int8_t)((qs[j] >> 4) - off);
    }
}

#ifndef DOT_Q4_0 /* else the set's own */
static TARGET float FN(dot_q4_0)(const void *wv, const void *xv, int n) {
    const BlockQ4_0 *w = wv;
    const BlockQ8 *x = xv;
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int8_t q[QK];
        FN(nibbles32)(q, w[b].qs, 8);
        sum += f16s(w[b].d) * f16s(x[b].d) * (float)I8DOT32(q, x[b].qs);
    }
    return sum;
}
#define DOT_Q4_0 FN(dot_q4_0)
#endif

/* Q4_1, Q5_0, Q5_1 and IQ4_NL, for sets without their own dots: block b of a row of `type` (a
   constant wherever this is inlined) as its signed levels q, and d, m: weight = d q + m. */
static inline __attribute__((always_inline)) TARGET void FN(levels32)(int8_t *restrict q, float *d,
                                                                      float *m, const void *row,
                                                                      int b, const uint32_t type) {
    static const int8_t iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};
    const Block32 w = block32(row, b, type);
    const int off = type == GGML_Q5_0 ? 16 : 0;
    uint32_t h = 0; /* bit j: the fifth bit of weight j */
    if (w.qh) memcpy(&h, w.qh, 4);
    for (int j = 0; j < 16; j++) {
        const int lo = (w.qs[j] & 15) | ((h >> j) & 1) << 4;
        const int hi = (w.qs[j] >> 4) | ((h >> (j + 16)) & 1) << 4;
        q[j] = (int8_t)(type == GGML_IQ4_NL ? iq4nl[lo] : lo - off);
        q[j + 16] = (int8_t)(type == GGML_IQ4_NL ? iq4nl[hi] : hi - off);
    }
    *d = f16s(w.d);
    *m = w.m ? f16s(w.m) : 0.0f;
}

/* sum_b d_x (d sum q x + m sum x), the second term for the types with m (Q4_1, Q5_1). */
static inline __attribute__((always_inline)) TARGET float FN(dot32)(const void *w, const void *xv,
                                                                    int n, const uint32_t type) {
    const BlockQ8 *x = xv;
    float sum = 0.0f;
    for (int b = 0; b < n / QK; b++) {
        int8_t q[QK];
        float d, m;
        FN(levels32)(q, &d, &m, w, b, type);
        float s = d * (float)I8DOT32(q, x[b].qs);
        if (type == GGML_Q4_1 || type == GGML_Q5_1) {
            int xsum = 0;
            for (int j = 0; j < QK; j++) xsum += x[b].qs[j];
            s += m * (float)xsum;
        }
        sum += f16s(x[b].d) * s;
    }
    return sum;
}

#ifndef DOT_Q4_1 /* else the set's own (as the three below) */
static TARGET float FN(dot_q4_1)(const void *w, const void *x, int n) {
    return FN(dot32)(w, x, n, GGML_Q4_1);
}
#define DOT_Q4_1 FN(dot_q4_1)
#endif
#ifndef DOT_Q5_0
static TARGET float FN(dot_q5_0)(const void *w, const void *x, int n) {
    return FN(dot32)(w, x, n, GGML_Q5_0);
}
#define DOT_Q5_0 FN(dot_q5_0)
#endif
#ifndef DOT_Q5_1
static TARGET float FN(dot_q5_1)(const void *w, const void *x, int n) {
    return FN(dot32)(w, x, n, GGML_Q5_1);
}
#define DOT_Q5_1 FN(dot_q5_1)
#endif
#ifndef DOT_IQ4_NL
static TARGET float FN(dot_iq4_nl)(const void *w, const void *x, int n) {
    return FN(dot32)(w, x, n, GGML_IQ4_NL);
}
#define DOT_IQ4_NL FN(dot_iq4_nl)
#endif

/* The K-quants' levels, each type's unpacked by one function per block that both uses share:
 * the bytes q + add (mod 256), written straight to their destination, in the widths the loop
 * computes. The dot products below take add = 0, the signed levels, into a block array; the
 * prompt's rows of levels (Kernels.lv_row, in sets with TILE_LV) take add = 128, the unsigned u
 * of tile_lv, into the row itself (staging levels in a small array and reading them back in
 * wider loads stalled on store forwarding: measured, the row then cost half as much as the
 * tile). Layouts: kernels_quant.h. */

/* Q4_K and Q5_K: weight 64 c + 32 h + l is nibble h of qs[32 c + l], plus 16 (Q5_K: qh not
   NULL) where bit 2c + h of qh[l] is set. */
static inline __attribute__((always_inline)) TARGET void FN(levels_k4)(uint8_t *restrict u,
                                                                       const uint8_t *restrict qs,
                                                                       const uint8_t *restrict qh,
                                                                       int add) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            const int h = qh ? qh[l] >> (2 * c) : 0;
            u[64 * c + l] = (uint8_t)(((qs[32 * c + l] & 15) | (h & 1) << 4) + add);
            u[64 * c + 32 + l] = (uint8_t)(((qs[32 * c + l] >> 4) | (h & 2) << 3) + add);
        }
}

/* Q6_K: q - 32, weight 128 h + 32 k + l. */
static inline __attribute__((always_inline)) TARGET void FN(levels_q6_k)(uint8_t *restrict u,
                                                                         const BlockQ6K *restrict w,
                                                                         int add) {
    const int a = add - 32;
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = w->ql + 64 * h, *qh = w->qh + 32 * h;
        uint8_t *uu = u + 128 * h;
        for (int l = 0; l < 32; l++) {
            uu[l] = (uint8_t)(((ql[l] & 15) | (qh[l] & 3) << 4) + a);
            uu[32 + l] = (uint8_t)(((ql[32 + l] & 15) | (qh[l] >> 2 & 3) << 4) + a);
            uu[64 + l] = (uint8_t)(((ql[l] >> 4) | (qh[l] >> 4 & 3) << 4) + a);
            uu[96 + l] = (uint8_t)(((ql[32 + l] >> 4) | (qh[l] >> 6) << 4) + a);
        }
    }
}

/* Q2_K and Q3_K: weight 128 n + 32 j + l is bits 2j of qs[32 n + l]; Q3_K (hmask not NULL)
   subtracts 4 where its high bit, bit 4n + j of hmask[l], is clear. */
static inline __attribute__((always_inline)) TARGET void FN(levels_crumbs)(
    uint8_t *restrict u, const uint8_t *restrict qs, const uint8_t *restrict hmask, int add) {
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                u[128 * n + 32 * j + l] =
                    (uint8_t)(((qs[32 * n + l] >> (2 * j)) & 3) + add -
                              (hmask ? (~hmask[l] >> (4 * n + j) & 1) * 4 : 0));
}

/* Q3_K's 6-bit scale of group g, minus 32. */
static inline int FN(q3k_scale)(const uint8_t sc[12], int g) {
    return (((sc[g % 8] >> (4 * (g / 8))) & 15) | ((sc[8 + g % 4] >> (2 * (g / 4))) & 3) << 4) - 32;
}

/* Q4_K and Q5_K: weight = d sc_g q - dmin m_g over 8 groups of 32, so per block
   d_x (d sum_g sc_g sum q x - dmin sum_g m_g sum x), sum x from the activations' bsums. */
static inline __attribute__((always_inline)) TARGET float FN(k4_block)(const int8_t *q,
                                                                       const uint8_t *scales,
                                                                       float d, float dmin,
                                                                       const BlockQ8K *x) {
    int isum = 0, msum = 0;
    for (int g = 0; g < 8; g++) {
        int sc, m;
        scale_min_k4(scales, g, &sc, &m);
        isum += sc * I8DOT32(q + 32 * g, x->qs + 32 * g);
        msum += m * (x->bsums[2 * g] + x->bsums[2 * g + 1]);
    }
    return x->d * (d * (float)isum - dmin * (float)msum);
}

#ifndef DOT_Q4_K /* else the set's own */
static TARGET float FN(dot_q4_k)(const void *wv, const void *xv, int n) {
    const BlockQ4K *w = wv;
    const BlockQ8K *x = xv;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int8_t q[QK_K];
        FN(levels_k4)((uint8_t *)q, w[b].qs, NULL, 0);
        sum += FN(k4_block)(q, w[b].scales, f16s(w[b].d), f16s(w[b].dmin), &x[b]);
    }
    return sum;
}
#define DOT_Q4_K FN(dot_q4_k)
#endif

#ifndef DOT_Q5_K /* else the set's own */
static TARGET float FN(dot_q5_k)(const void *wv, const void *xv, int n) {
    const BlockQ5K *w = wv;
    const BlockQ8K *x = xv;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int8_t q[QK_K];
        FN(levels_k4)((uint8_t *)q, w[b].qs, w[b].qh, 0);
        sum += FN(k4_block)(q, w[b].scales, f16s(w[b].d), f16s(w[b].dmin), &x[b]);
    }
    return sum;
}
#define DOT_Q5_K FN(dot_q5_k)
#endif

/* Q6_K: weight = d scales[g] (q - 32) over 16 groups of 16. */
#ifndef DOT_Q6_K /* else the set's own */
static TARGET float FN(dot_q6_k)(const void *wv, const void *xv, int n) {
    const BlockQ6K *w = wv;
    const BlockQ8K *x = xv;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int8_t q[QK_K];
        FN(levels_q6_k)((uint8_t *)q, &w[b], 0);
        int isum = 0;
        for (int g = 0; g < 16; g++) isum += w[b].scales[g] * I8DOT16(q + 16 * g, x[b].qs + 16 * g);
        sum += f16s(w[b].d) * x[b].d * (float)isum;
    }
    return sum;
}
#define DOT_Q6_K FN(dot_q6_k)
#endif

#ifndef DOT_Q2_K /* else the set's own (as Q3_K) */
/* Q2_K: weight = d (sc_g & 15) q - dmin (sc_g >> 4) over 16 groups of 16. */
static TARGET float FN(dot_q2_k)(const void *wv, const void *xv, int n) {
    const BlockQ2K *w = wv;
    const BlockQ8K *x = xv;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int8_t q[QK_K];
        FN(levels_crumbs)((uint8_t *)q, w[b].qs, NULL, 0);
        int isum = 0, msum = 0;
        for (int g = 0; g < 16; g++) {
            isum += (w[b].scales[g] & 15) * I8DOT16(q + 16 * g, x[b].qs + 16 * g);
            msum += (w[b].scales[g] >> 4) * x[b].bsums[g];
        }
        sum += x[b].d * (f16s(w[b].d) * (float)isum - f16s(w[b].dmin) * (float)msum);
    }
    return sum;
}

#define DOT_Q2_K FN(dot_q2_k)
#endif

#ifndef DOT_Q3_K
/* Q3_K: weight = d (s_g - 32) (q - 4 !high) over 16 groups of 16. */
static TARGET float FN(dot_q3_k)(const void *wv, const void *xv, int n) {
    const BlockQ3K *w = wv;
    const BlockQ8K *x = xv;
    float sum = 0.0f;
    for (int b = 0; b < n / QK_K; b++) {
        int8_t q[QK_K];
        FN(levels_crumbs)((uint8_t *)q, w[b].qs, w[b].hmask, 0);
        int isum = 0;
        for (int g = 0; g < 16; g++)
            isum += FN(q3k_scale)(w[b].scales, g) * I8DOT16(q + 16 * g, x[b].qs + 16 * g);
        sum += f16s(w[b].d) * x[b].d * (float)isum;
    }
    return sum;
}
#define DOT_Q3_K FN(dot_q3_k)
#endif

/* The i-quants (kernels_iquant.h): each weight block through its type's unpack, then the set's
   integer sums per group of 16, scaled as dot_ref scales them. */
static inline __attribute__((always_inline)) TARGET float FN(dot_unpacked)(const void *wv,
                                                                           const void *xv, int n,
                                                                           uint32_t type) {
    void (*unpack)(const void *, Levels *) = weight_type(type)->unpack;
    const size_t bytes = ggml_row_bytes(type, QK_K);
    const BlockQ8K *x = xv;
    float sum = 0.0f;
    Levels lv;
    for (int b = 0; b < n / QK_K; b++) {
        unpack((const uint8_t *)wv + (size_t)b * bytes, &lv);
        for (int g = 0; g < 16; g++) {
            const int isum = I8DOT16(lv.q + 16 * g, x[b].qs + 16 * g);
            sum += x[b].d * (lv.a[g] * (float)isum - lv.b[g] * (float)x[b].bsums[g]);
        }
    }
    return sum;
}
#define DOT_UNPACKED(name, type)                                                                   \
    static TARGET float FN(name)(const void *w, const void *x, int n) {                            \
        return FN(dot_unpacked)(w, x, n, type);                                                    \
    }
DOT_UNPACKED(dot_iq4_xs, GGML_IQ4_XS)
DOT_UNPACKED(dot_iq3_s, GGML_IQ3_S)
DOT_UNPACKED(dot_iq3_xxs, GGML_IQ3_XXS)
DOT_UNPACKED(dot_iq2_xxs, GGML_IQ2_XXS)
DOT_UNPACKED(dot_iq2_xs, GGML_IQ2_XS)
DOT_UNPACKED(dot_iq2_s, GGML_IQ2_S)
DOT_UNPACKED(dot_iq1_s, GGML_IQ1_S)
DOT_UNPACKED(dot_iq1_m, GGML_IQ1_M)
#undef DOT_UNPACKED

#ifdef TILE_LV
/* ---- a weight row as levels, for the integer prompt tile (Kernels.tile_lv) ----------------
 * u[i] = q_i + 128 (as an unsigned byte) for every column, and per group of the type's G columns
 * (16 or 32) a and b: weight = a q - b, the values of the type's unpack in kernels_quant.c. A row
 * is unpacked once per prompt and serves every position, so it must cost far less than the
 * products (the type's generic unpack, one weight at a time, took twice the time of the tile
 * itself at 110M Q4_0). The 32-weight types other than Q4_0 are the set's own (LV_Q4_1, ...),
 * or the generic unpack in kernels.c where it has none. */

/* 16 bytes of nibbles -> 32 levels plus `add`: low nibbles are weights 0..15, high 16..31. */
static inline __attribute__((always_inline)) TARGET void FN(lv_nibbles)(uint8_t *restrict u,
                                                                        const uint8_t *restrict qs,
                                                                        int add) {
    for (int j = 0; j < 16; j++) u[j] = (uint8_t)((qs[j] & 15) + add);
    for (int j = 0; j < 16; j++) u[j + 16] = (uint8_t)((qs[j] >> 4) + add);
}

static TARGET void FN(lv_q4_0)(uint8_t *restrict u, float *restrict a, float *restrict b,
                               const void *restrict row, int cols) {
    const BlockQ4_0 *w = row;
    for (int k = 0; k < cols / QK; k++) {
        FN(lv_nibbles)(u + k * QK, w[k].qs, 128 - 8);
        a[k] = f16s(w[k].d);
        b[k] = 0.0f;
    }
}

/* Q4_K and Q5_K's groups of 32: a = d sc_g, b = dmin m_g */
static inline __attribute__((always_inline)) TARGET void FN(lv_k4_scales)(float *a, float *b,
                                                                          const uint8_t *scales,
                                                                          float d, float dmin) {
    for (int g = 0; g < 8; g++) {
        int sc, m;
        scale_min_k4(scales, g, &sc, &m);
        a[g] = d * (float)sc;
        b[g] = dmin * (float)m;
    }
}

static TARGET void FN(lv_q4_k)(uint8_t *restrict u, float *restrict a, float *restrict b,
                               const void *restrict row, int cols) {
    const BlockQ4K *w = row;
    for (int k = 0; k < cols / QK_K; k++) {
        FN(levels_k4)(u + k * QK_K, w[k].qs, NULL, 128);
        FN(lv_k4_scales)(a + 8 * k, b + 8 * k, w[k].scales, f16s(w[k].d), f16s(w[k].dmin));
    }
}

static TARGET void FN(lv_q5_k)(uint8_t *restrict u, float *restrict a, float *restrict b,
                               const void *restrict row, int cols) {
    const BlockQ5K *w = row;
    for (int k = 0; k < cols / QK_K; k++) {
        FN(levels_k4)(u + k * QK_K, w[k].qs, w[k].qh, 128);
        FN(lv_k4_scales)(a + 8 * k, b + 8 * k, w[k].scales, f16s(w[k].d), f16s(w[k].dmin));
    }
}

static TARGET void FN(lv_q6_k)(uint8_t *restrict u, float *restrict a, float *restrict b,
                               const void *restrict row, int cols) {
    const BlockQ6K *w = row;
    for (int k = 0; k < cols / QK_K; k++) {
        FN(levels_q6_k)(u + k * QK_K, &w[k], 128);
        const float d = f16s(w[k].d);
        for (int g = 0; g < 16; g++) {
            a[16 * k + g] = d * (float)w[k].scales[g];
            b[16 * k + g] = 0.0f;
        }
    }
}

static TARGET void FN(lv_q2_k)(uint8_t *restrict u, float *restrict a, float *restrict b,
                               const void *restrict row, int cols) {
    const BlockQ2K *w = row;
    for (int k = 0; k < cols / QK_K; k++) {
        FN(levels_crumbs)(u + k * QK_K, w[k].qs, NULL, 128);
        const float d = f16s(w[k].d), dmin = f16s(w[k].dmin);
        for (int g = 0; g < 16; g++) {
            a[16 * k + g] = d * (float)(w[k].scales[g] & 15);
            b[16 * k + g] = dmin * (float)(w[k].scales[g] >> 4);
        }
    }
}

static TARGET void FN(lv_q3_k)(uint8_t *restrict u, float *restrict a, float *restrict b,
                               const void *restrict row, int cols) {
    const BlockQ3K *w = row;
    for (int k = 0; k < cols / QK_K; k++) {
        FN(levels_crumbs)(u + k * QK_K, w[k].qs, w[k].hmask, 128);
        const float d = f16s(w[k].d);
        for (int g = 0; g < 16; g++) {
            a[16 * k + g] = d * (float)FN(q3k_scale)(w[k].scales, g);
            b[16 * k + g] = 0.0f;
        }
    }
}

#ifndef LV_Q4_1 /* the set's own rows for these types, else kernels.c's generic unpack */
#define LV_Q4_1 NULL
#endif
#ifndef LV_Q5_0
#define LV_Q5_0 NULL
#endif
#ifndef LV_Q5_1
#define LV_Q5_1 NULL
#endif
#ifndef LV_IQ4_NL
#define LV_IQ4_NL NULL
#endif
#endif /* TILE_LV */

/* A tile of a matrix-matrix product: TR weight rows x TC = 2 * VL positions, over k columns:
 *   out[t * ostride + r] (+)= sum_i w[r * wstride + i] * xt[i * TC + t]   (r < nr, t < nt)
 * xt holds the tile's positions transposed, TC per column, so one column of activations is two
 * vector loads. Each weight is broadcast and multiplied into both, so a step is 2 + TR loads for
 * 2 * TR FMAs, and the 2 * TR accumulators stay in registers with no horizontal sums. A tile
 * with fewer than TR rows repeats its last row and drops the copies. */
static TARGET void FN(tile_f32)(float *out, int ostride, const float *w, int wstride, int nr,
                                const float *xt, int k, int nt, int accumulate) {
    const float *wr[TR];
    VF acc[TR][2];
#pragma GCC unroll 16
    for (int r = 0; r < TR; r++) {
        wr[r] = w + (size_t)(r < nr ? r : nr - 1) * wstride;
        acc[r][0] = acc[r][1] = vzero();
    }
    for (int i = 0; i < k; i++) {
        const VF x0 = vload(xt + (size_t)i * 2 * VL), x1 = vload(xt + (size_t)i * 2 * VL + VL);
#pragma GCC unroll 16
        for (int r = 0; r < TR; r++) {
            const VF b = vset1(wr[r][i]);
            acc[r][0] = vfma(b, x0, acc[r][0]);
            acc[r][1] = vfma(b, x1, acc[r][1]);
        }
    }
    float tile[TR][2 * VL];
    for (int r = 0; r < TR; r++) {
        vstore(tile[r], acc[r][0]);
        vstore(tile[r] + VL, acc[r][1]);
    }
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++) {
            float *o = out + (size_t)t * ostride + r;
            *o = accumulate ? *o + tile[r][t] : tile[r][t];
        }
}

/* Attention's two products on one tile of KV_TILE keys, for nq <= ATT_QB queries of one head, are
 * one small matrix product, c (nrows, ncols) (+)= a (nrows, k) b (k, ncols):
 *   att_scores: s (nq, KV_TILE) = q (nq, hd) kt (hd, KV_TILE), kt the tile's keys transposed as
 *               the cache stores them; all KV_TILE columns, including keys not written yet (past
 *               the last query): the caller masks what a query may not see, and scales;
 *   att_pv:     o (nq, hd) += p (nq, nk) v (nk, hd), the tile's first nk keys.
 * It runs in blocks of AR rows of a by 4 vectors of columns, so that the 4 * AR accumulators stay
 * in registers and each vector of b loaded serves AR rows (AVX-512: 6 rows, 24 accumulators,
 * measured 11% faster than 4), then in blocks of TR / 3 rows; the rows left over (all of them
 * when decoding) go one at a time. Each element of a is broadcast straight from memory. */
#ifndef AR
#define AR (TR / 3)
#endif
#define AR_SMALL (TR / 3)

/* R rows (AR or 1, a constant wherever this is inlined, so that the 4 * R accumulators are
 * registers): c[r * cs + j] (+)= sum_i a[r * as + i] * b[i * bs + j] for j < ncols.
 * accumulate, a constant too, says whether c's values are added to or replaced; half, another,
 * whether b holds floats or halves (an F16 KV cache), widened in registers as they are loaded:
 * the same products in the same order, so halves give the bits their floats would. */
static inline __attribute__((always_inline)) TARGET void FN(small_mm_rows)(
    float *c, int cs, const float *a, int as, const void *b, int bs, int k, int ncols,
    int accumulate, const int R, const int half) {
    const float *bf = b;
    const uint16_t *bh = b;
#define BLOAD(off) (half ? vloadh(bh + (off)) : vload(bf + (off)))
    int j0 = 0;
    for (; j0 + 4 * VL <= ncols; j0 += 4 * VL) {
        VF acc[AR][4];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            for (int v = 0; v < 4; v++)
                acc[r][v] = accumulate ? vload(c + (size_t)r * cs + j0 + v * VL) : vzero();
        for (int i = 0; i < k; i++) {
            const size_t bi = (size_t)i * bs + j0;
            const VF b0 = BLOAD(bi), b1 = BLOAD(bi + VL), b2 = BLOAD(bi + 2 * VL),
                     b3 = BLOAD(bi + 3 * VL);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const VF ar = vset1(a[(size_t)r * as + i]);
                acc[r][0] = vfma(ar, b0, acc[r][0]);
                acc[r][1] = vfma(ar, b1, acc[r][1]);
                acc[r][2] = vfma(ar, b2, acc[r][2]);
                acc[r][3] = vfma(ar, b3, acc[r][3]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int v = 0; v < 4; v++) vstore(c + (size_t)r * cs + j0 + v * VL, acc[r][v]);
    }
    for (; j0 + VL <= ncols; j0 += VL) { /* column counts that are not a multiple of 4 vectors */
        VF acc[AR];
        for (int r = 0; r < R; r++) acc[r] = accumulate ? vload(c + (size_t)r * cs + j0) : vzero();
        for (int i = 0; i < k; i++) {
            const VF bi = BLOAD((size_t)i * bs + j0);
            for (int r = 0; r < R; r++) acc[r] = vfma(vset1(a[(size_t)r * as + i]), bi, acc[r]);
        }
        for (int r = 0; r < R; r++) vstore(c + (size_t)r * cs + j0, acc[r]);
    }
#undef BLOAD
    for (; j0 < ncols; j0++)
        for (int r = 0; r < R; r++) {
            float sum = accumulate ? c[(size_t)r * cs + j0] : 0.0f;
            for (int i = 0; i < k; i++) {
                const size_t bi = (size_t)i * bs + j0;
                sum += a[(size_t)r * as + i] * (half ? f16_table[bh[bi]] : bf[bi]);
            }
            c[(size_t)r * cs + j0] = sum;
        }
}

/* All nrows rows: blocks of AR, then one at a time. */
static inline __attribute__((always_inline)) TARGET void FN(small_mm)(
    float *c, int cs, const float *a, int as, const void *b, int bs, int nrows, int k, int ncols,
    int accumulate, const int half) {
    int r = 0;
    for (; r + AR <= nrows; r += AR) {
        float *cr = c + (size_t)r * cs;
        FN(small_mm_rows)(cr, cs, a + (size_t)r * as, as, b, bs, k, ncols, accumulate, AR, half);
    }
    for (; AR_SMALL < AR && r + AR_SMALL <= nrows; r += AR_SMALL) {
        float *cr = c + (size_t)r * cs;
        FN(small_mm_rows)
        (cr, cs, a + (size_t)r * as, as, b, bs, k, ncols, accumulate, AR_SMALL, half);
    }
    for (; r < nrows; r++) {
        float *cr = c + (size_t)r * cs;
        FN(small_mm_rows)(cr, cs, a + (size_t)r * as, as, b, bs, k, ncols, accumulate, 1, half);
    }
}
#undef AR
#undef AR_SMALL

/* The cache's keys and values as floats (half = 0) or halves (half = 1): one function each. */
static TARGET void FN(att_scores_f32)(float *s, const float *q, int qstride, int nq, const void *kt,
                                      int hd) {
    FN(small_mm)(s, KV_TILE, q, qstride, kt, KV_TILE, nq, hd, KV_TILE, 0, 0);
}
static TARGET void FN(att_scores_f16)(float *s, const float *q, int qstride, int nq, const void *kt,
                                      int hd) {
    FN(small_mm)(s, KV_TILE, q, qstride, kt, KV_TILE, nq, hd, KV_TILE, 0, 1);
}

static TARGET void FN(att_pv_f32)(float *o, int ostride, const float *p, int nq, const void *v,
                                  int nk, int hd) {
    FN(small_mm)(o, ostride, p, KV_TILE, v, hd, nq, nk, hd, 1, 0);
}
static TARGET void FN(att_pv_f16)(float *o, int ostride, const float *p, int nq, const void *v,
                                  int nk, int hd) {
    FN(small_mm)(o, ostride, p, KV_TILE, v, hd, nq, nk, hd, 1, 1);
}

/* Widens n halves to floats (a weight tile, before tile_f32). */
static TARGET void FN(f16_to_f32_row)(float *out, const uint16_t *in, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) vstore(out + i, vloadh(in + i));
    for (; i < n; i++) out[i] = f16_table[in[i]];
}

/* Widens n BF16 to floats (a weight tile, before tile_f32). */
static TARGET void FN(bf16_to_f32_row)(float *out, const uint16_t *in, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) vstore(out + i, vloadbf(in + i));
    for (; i < n; i++) out[i] = bf16_to_f32(in[i]);
}

/* Rounds n floats to halves (an F16 KV cache's keys and values, kv_store). */
static TARGET void FN(f32_to_f16_row)(uint16_t *out, const float *in, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) vstoreh(out + i, vload(in + i));
    for (; i < n; i++) out[i] = f32_to_f16(in[i]);
}

const Kernels FN(kernels) = {
    .name = NAME,
    .tile_r = TR,
    .tile_c = 2 * VL,
    /* clang-format off */
    .dot = {[GGML_F32] = FN(dot_f32),
            [GGML_F16] = FN(dot_f16),
            [GGML_BF16] = FN(dot_bf16),
            [GGML_Q8_0] = FN(dot_q8),
            [GGML_Q4_0] = DOT_Q4_0,
            [GGML_Q4_1] = DOT_Q4_1,
            [GGML_Q5_0] = DOT_Q5_0,
            [GGML_Q5_1] = DOT_Q5_1,
            [GGML_IQ4_NL] = DOT_IQ4_NL,
            [GGML_Q4_K] = DOT_Q4_K,
            [GGML_Q5_K] = DOT_Q5_K,
            [GGML_Q6_K] = DOT_Q6_K,
            [GGML_Q2_K] = DOT_Q2_K,
            [GGML_Q3_K] = DOT_Q3_K,
            [GGML_IQ4_XS] = FN(dot_iq4_xs),
            [GGML_IQ3_S] = FN(dot_iq3_s),
            [GGML_IQ3_XXS] = FN(dot_iq3_xxs),
            [GGML_IQ2_XXS] = FN(dot_iq2_xxs),
            [GGML_IQ2_XS] = FN(dot_iq2_xs),
            [GGML_IQ2_S] = FN(dot_iq2_s),
            [GGML_IQ1_S] = FN(dot_iq1_s),
            [GGML_IQ1_M] = FN(dot_iq1_m)},
    /* clang-format on */
    .tile_f32 = FN(tile_f32),
    .f16_to_f32_row = FN(f16_to_f32_row),
    .bf16_to_f32_row = FN(bf16_to_f32_row),
    .att_scores = {[KV_F32] = FN(att_scores_f32), [KV_F16] = FN(att_scores_f16)},
    .att_pv = {[KV_F32] = FN(att_pv_f32), [KV_F16] = FN(att_pv_f16)},
    .f32_to_f16_row = FN(f32_to_f16_row),
    .tile_q8 = TILE_Q8,
#ifdef TILE_LV
    .tile_lv = TILE_LV,
    .lv_row = {[GGML_Q4_0] = FN(lv_q4_0),
               [GGML_Q4_1] = LV_Q4_1,
               [GGML_Q5_0] = LV_Q5_0,
               [GGML_Q5_1] = LV_Q5_1,
               [GGML_IQ4_NL] = LV_IQ4_NL,
               [GGML_Q4_K] = FN(lv_q4_k),
               [GGML_Q5_K] = FN(lv_q5_k),
               [GGML_Q6_K] = FN(lv_q6_k),
               [GGML_Q2_K] = FN(lv_q2_k),
               [GGML_Q3_K] = FN(lv_q3_k)},
#endif
    .gemv_packed = {[GGML_Q8_0] = GEMV_Q8P, [GGML_Q4_0] = GEMV_Q4P, [GGML_Q5_0] = GEMV_Q5P},
    .gemv_packed_k = {[GGML_Q4_K] = GEMV_Q4KP, [GGML_Q6_K] = GEMV_Q6KP},
    .tile_packed = {[GGML_Q8_0] = TILE_Q8P, [GGML_Q4_0] = TILE_Q4P, [GGML_Q5_0] = TILE_Q5P},
    .tile_act = TILE_ACT,
    .tile_packed_k = {[GGML_Q4_K] = TILE_Q4KP, [GGML_Q6_K] = TILE_Q6KP},
    .tile_act_k = TILE_ACT_K,
};
