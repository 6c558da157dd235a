/* kernels_portable.c: the portable kernel set, plain C for every target (and the fallback where
 * no SIMD set applies). `#pragma omp simd` lets the compiler vectorize the inner loops with
 * whatever the target's baseline has. */
#include "kernels_sets.h"

static float dot_f32_c(const void *wv, const void *xv, int n) {
    const float *w = wv, *x = xv;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) sum += w[i] * x[i];
    return sum;
}

static float dot_f16_c(const void *wv, const void *xv, int n) {
    const uint16_t *w = wv;
    const float *x = xv;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) sum += f16_table[w[i]] * x[i];
    return sum;
}

static float dot_bf16_c(const void *wv, const void *xv, int n) {
    const uint16_t *w = wv;
    const float *x = xv;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) sum += bf16_to_f32(w[i]) * x[i];
    return sum;
}

static float dot_q8_c(const void *wv, const void *xv, int n) {
    const BlockQ8 *w = wv, *x = xv;
    float sum = 0.0f;
    for (int b = 0; b < n / QK8_0; b++) {
        int32_t s = 0;
        for (int i = 0; i < QK8_0; i++) s += w[b].qs[i] * x[b].qs[i];
        sum += f16_table[w[b].d] * f16_table[x[b].d] * (float)s;
    }
    return sum;
}

#define TR_C 4
#define TC_C 8
static void tile_f32_c(float *out, int ostride, const float *w, int wstride, int nr,
                       const float *xt, int k, int nt, int accumulate) {
    for (int r = 0; r < nr; r++) {
        float acc[TC_C] = {0};
        for (int i = 0; i < k; i++) {
            const float wv = w[(size_t)r * wstride + i];
#pragma omp simd
            for (int t = 0; t < TC_C; t++) acc[t] += wv * xt[(size_t)i * TC_C + t];
        }
        for (int t = 0; t < nt; t++) {
            float *o = out + (size_t)t * ostride + r;
            *o = accumulate ? *o + acc[t] : acc[t];
        }
    }
}

static void f16_to_f32_row_c(float *out, const uint16_t *in, int n) {
    for (int i = 0; i < n; i++) out[i] = f16_table[in[i]];
}

static void bf16_to_f32_row_c(float *out, const uint16_t *in, int n) {
    for (int i = 0; i < n; i++) out[i] = bf16_to_f32(in[i]);
}

/* Attention's two products are one small matrix product (see kernels_simd.h):
 * c[r * cs + j] (+)= sum_i a[r * as + i] * b[i * bs + j], r < nrows, j < ncols; b holds floats
 * (half = 0) or halves (half = 1, an F16 KV cache), a constant wherever this is inlined. */
static inline void small_mm_c(float *c, int cs, const float *a, int as, const void *b, int bs,
                              int nrows, int k, int ncols, int accumulate, const int half) {
    const float *bf = b;
    const uint16_t *bh = b;
    for (int r = 0; r < nrows; r++) {
        float *cr = c + (size_t)r * cs;
        if (!accumulate)
            for (int j = 0; j < ncols; j++) cr[j] = 0.0f;
        for (int i = 0; i < k; i++) {
            const float ai = a[(size_t)r * as + i];
            const size_t bi = (size_t)i * bs;
#pragma omp simd
            for (int j = 0; j < ncols; j++)
                cr[j] += ai * (half ? f16_table[bh[bi + j]] : bf[bi + j]);
        }
    }
}

/* s (nq, KV_TILE) = q (nq, hd) kt (hd, KV_TILE): every key of the tile, written or not */
static void att_scores_f32_c(float *s, const float *q, int qstride, int nq, const void *kt,
                             int hd) {
    small_mm_c(s, KV_TILE, q, qstride, kt, KV_TILE, nq, hd, KV_TILE, 0, 0);
}
static void att_scores_f16_c(float *s, const float *q, int qstride, int nq, const void *kt,
                             int hd) {
    small_mm_c(s, KV_TILE, q, qstride, kt, KV_TILE, nq, hd, KV_TILE, 0, 1);
}

/* o (nq, hd) += p (nq, nk) v (nk, hd) */
static void att_pv_f32_c(float *o, int ostride, const float *p, int nq, const void *v, int nk,
                         int hd) {
    small_mm_c(o, ostride, p, KV_TILE, v, hd, nq, nk, hd, 1, 0);
}
static void att_pv_f16_c(float *o, int ostride, const float *p, int nq, const void *v, int nk,
                         int hd) {
    small_mm_c(o, ostride, p, KV_TILE, v, hd, nq, nk, hd, 1, 1);
}

static void f32_to_f16_row_c(uint16_t *out, const float *in, int n) {
    for (int i = 0; i < n; i++) out[i] = f32_to_f16(in[i]);
}

const Kernels kernels_portable = {
    .name = "portable C",
    .tile_r = TR_C,
    .tile_c = TC_C,
    .dot = {[GGML_F32] = dot_f32_c,
            [GGML_F16] = dot_f16_c,
            [GGML_BF16] = dot_bf16_c,
            [GGML_Q8_0] = dot_q8_c},
    .tile_f32 = tile_f32_c,
    .f16_to_f32_row = f16_to_f32_row_c,
    .bf16_to_f32_row = bf16_to_f32_row_c,
    .att_scores = {[KV_F32] = att_scores_f32_c, [KV_F16] = att_scores_f16_c},
    .att_pv = {[KV_F32] = att_pv_f32_c, [KV_F16] = att_pv_f16_c},
    .f32_to_f16_row = f32_to_f16_row_c,
    .tile_q8 = NULL,
};
