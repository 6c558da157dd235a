/* kernels_simd.h: the SIMD leaf kernels, written once and compiled once per instruction set.
 *
 * kernels.c includes this file several times, each time after defining the mapping macros for one
 * instruction set (AVX-512, AVX2, NEON):
 *
 *   FN(name)        the function's name with the set's suffix (dot_f32 -> dot_f32_avx2)
 *   TARGET          a function attribute enabling the set (empty where it is the baseline)
 *   VF, VL          a vector of VL floats
 *   vzero() vload(p) vloadh(p) vfma(a, b, c) vsum(v)
 *                   zero; load VL floats; load VL halves as floats; a * b + c; horizontal sum
 *   vset1(x) vstore(p, v)   broadcast a float; store VL floats
 *   f16s(h)         one half to float in hardware (a table lookup would miss the cache)
 *   TR              weight rows of a matrix-matrix tile; its 2 * TR accumulators of 2 * VL
 *                   positions, two activation vectors and a broadcast fill the register file
 *   Q8_ACC_TYPE, Q8_ACC_ZERO(), Q8_ACC_SUM(a), Q8_DOT(acc, wblock, xblock, scale)
 *                   a float accumulator for Q8_0 dot products, and acc += scale * (the exact
 *                   integer dot product of one pair of 32-byte blocks)
 *
 * Every function handles any length: vector loop, then a scalar tail.
 */

/* sum_i w[i] * x[i]; four independent accumulators hide the FMA latency. The first few products
 * are done one at a time until w sits on a vector boundary, so that no load of the weights (read
 * from memory, unlike x) straddles two cache lines: GGUF's default alignment is 32 bytes, half a
 * 512-bit vector, and straddling loads cost a third of the bandwidth here. */
static TARGET float FN(dot_f32)(const float *w, const float *x, int n) {
    VF a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
    const int off = (int)((uintptr_t)w / sizeof(float) % VL);
    int i = 0, head = off ? VL - off : 0;
    float sum_head = 0.0f;
    for (; i < head && i < n; i++) sum_head += w[i] * x[i];
    for (; i + 4 * VL <= n; i += 4 * VL) {
        a0 = vfma(vload(w + i), vload(x + i), a0);
        a1 = vfma(vload(w + i + VL), vload(x + i + VL), a1);
        a2 = vfma(vload(w + i + 2 * VL), vload(x + i + 2 * VL), a2);
        a3 = vfma(vload(w + i + 3 * VL), vload(x + i + 3 * VL), a3);
    }
    for (; i + VL <= n; i += VL) a0 = vfma(vload(w + i), vload(x + i), a0);
    float sum = vsum(a0) + vsum(a1) + (vsum(a2) + vsum(a3)) + sum_head;
    for (; i < n; i++) sum += w[i] * x[i];
    return sum;
}

/* The same with half-precision weights, widened in registers. */
static TARGET float FN(dot_f16)(const uint16_t *w, const float *x, int n) {
    VF a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
    int i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        a0 = vfma(vloadh(w + i), vload(x + i), a0);
        a1 = vfma(vloadh(w + i + VL), vload(x + i + VL), a1);
        a2 = vfma(vloadh(w + i + 2 * VL), vload(x + i + 2 * VL), a2);
        a3 = vfma(vloadh(w + i + 3 * VL), vload(x + i + 3 * VL), a3);
    }
    for (; i + VL <= n; i += VL) a0 = vfma(vloadh(w + i), vload(x + i), a0);
    float sum = vsum(a0) + vsum(a1) + (vsum(a2) + vsum(a3));
    for (; i < n; i++) sum += f16_table[w[i]] * x[i];
    return sum;
}

/* Q8_0 weights against Q8_0-quantized activations: per block an exact integer dot product,
 * then scaled by both blocks' scales: sum_b d_w[b] * d_x[b] * sum_i w[b][i] * x[b][i]. */
static TARGET float FN(dot_q8)(const BlockQ8 *w, const BlockQ8 *x, int nblocks) {
    Q8_ACC_TYPE acc0 = Q8_ACC_ZERO(), acc1 = Q8_ACC_ZERO();
    int b = 0;
#ifdef Q8_DOT2  /* two blocks per instruction where the vectors are wide enough */
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

/* Attention's two products for one tile of KV_TILE keys, on nq <= ATT_QB queries of one head,
 * in blocks of AR queries by 4 vectors so that the 4 * AR accumulators stay in registers and
 * each key or value vector loaded serves AR queries (a small matrix-matrix product); the
 * queries left over (all of them when decoding) go one at a time:
 *   att_scores: s[i * KV_TILE + j] = sum_d (scale * q[i * qstride + d]) * kt[d * KV_TILE + j] for
 *               every j < KV_TILE; kt is the tile's keys transposed, as the cache stores them;
 *   att_pv:     o[i * ostride + d] += sum_{j < nk} p[i * KV_TILE + j] * v[j * hd + d]. */
#define AR (TR / 3)

/* R queries (R is AR or 1, a constant wherever this is inlined, so that the 4 * R accumulators
   are registers) against all KV_TILE keys. */
static inline __attribute__((always_inline)) TARGET void
FN(att_scores_rows)(float *s, const float *q, int qstride, const float *kt, int hd, float scale,
                    const int R) {
    for (int j0 = 0; j0 < KV_TILE; j0 += 4 * VL) {
        VF acc[AR][4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = vzero();
        for (int d = 0; d < hd; d++) {
            const float *kd = kt + (size_t)d * KV_TILE + j0;
            const VF k0 = vload(kd), k1 = vload(kd + VL), k2 = vload(kd + 2 * VL),
                     k3 = vload(kd + 3 * VL);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const VF qd = vset1(q[(size_t)r * qstride + d] * scale);
                acc[r][0] = vfma(qd, k0, acc[r][0]);
                acc[r][1] = vfma(qd, k1, acc[r][1]);
                acc[r][2] = vfma(qd, k2, acc[r][2]);
                acc[r][3] = vfma(qd, k3, acc[r][3]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) vstore(s + (size_t)r * KV_TILE + j0 + c * VL, acc[r][c]);
    }
}

static TARGET void FN(att_scores)(float *s, const float *q, int qstride, int nq, const float *kt,
                                  int hd, float scale) {
    int i = 0;
    for (; i + AR <= nq; i += AR)
        FN(att_scores_rows)(s + (size_t)i * KV_TILE, q + (size_t)i * qstride, qstride, kt, hd, scale, AR);
    for (; i < nq; i++)  /* the rest one query at a time (decoding has just one) */
        FN(att_scores_rows)(s + (size_t)i * KV_TILE, q + (size_t)i * qstride, qstride, kt, hd, scale, 1);
}

/* R queries (AR or 1, as above): o rows += their probabilities times nk value rows. */
static inline __attribute__((always_inline)) TARGET void
FN(att_pv_rows)(float *o, int ostride, const float *p, const float *v, int nk, int hd, const int R) {
    int d0 = 0;
    for (; d0 + 4 * VL <= hd; d0 += 4 * VL) {
        VF acc[AR][4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) acc[r][c] = vload(o + (size_t)r * ostride + d0 + c * VL);
        for (int j = 0; j < nk; j++) {
            const float *vj = v + (size_t)j * hd + d0;
            const VF v0 = vload(vj), v1 = vload(vj + VL), v2 = vload(vj + 2 * VL),
                     v3 = vload(vj + 3 * VL);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const VF pj = vset1(p[(size_t)r * KV_TILE + j]);
                acc[r][0] = vfma(pj, v0, acc[r][0]);
                acc[r][1] = vfma(pj, v1, acc[r][1]);
                acc[r][2] = vfma(pj, v2, acc[r][2]);
                acc[r][3] = vfma(pj, v3, acc[r][3]);
            }
        }
        for (int r = 0; r < R; r++)
            for (int c = 0; c < 4; c++) vstore(o + (size_t)r * ostride + d0 + c * VL, acc[r][c]);
    }
    for (; d0 + VL <= hd; d0 += VL) {  /* head dims that are not a multiple of 4 vectors */
        VF acc[AR];
        for (int r = 0; r < R; r++) acc[r] = vload(o + (size_t)r * ostride + d0);
        for (int j = 0; j < nk; j++) {
            const VF vj = vload(v + (size_t)j * hd + d0);
            for (int r = 0; r < R; r++) acc[r] = vfma(vset1(p[(size_t)r * KV_TILE + j]), vj, acc[r]);
        }
        for (int r = 0; r < R; r++) vstore(o + (size_t)r * ostride + d0, acc[r]);
    }
    for (; d0 < hd; d0++)
        for (int r = 0; r < R; r++) {
            float sum = o[(size_t)r * ostride + d0];
            for (int j = 0; j < nk; j++) sum += p[(size_t)r * KV_TILE + j] * v[(size_t)j * hd + d0];
            o[(size_t)r * ostride + d0] = sum;
        }
}

static TARGET void FN(att_pv)(float *o, int ostride, const float *p, int nq, const float *v, int nk,
                              int hd) {
    int i = 0;
    for (; i + AR <= nq; i += AR)
        FN(att_pv_rows)(o + (size_t)i * ostride, ostride, p + (size_t)i * KV_TILE, v, nk, hd, AR);
    for (; i < nq; i++)
        FN(att_pv_rows)(o + (size_t)i * ostride, ostride, p + (size_t)i * KV_TILE, v, nk, hd, 1);
}
#undef AR

/* Widens n halves to floats (a weight tile, before tile_f32). */
static TARGET void FN(f16_to_f32_row)(float *out, const uint16_t *in, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) vstore(out + i, vloadh(in + i));
    for (; i < n; i++) out[i] = f16_table[in[i]];
}

static const Kernels FN(kernels) = {
    NAME, TR, 2 * VL, FN(dot_f32), FN(dot_f16), FN(dot_q8), FN(tile_f32), FN(f16_to_f32_row),
    FN(att_scores), FN(att_pv), TILE_Q8,
};
