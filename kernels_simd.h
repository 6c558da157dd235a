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
 *   TR, TC          the tile of the matrix-matrix kernel: TR weight rows x TC positions, so that
 *                   TR * TC accumulators plus TR weight vectors fit in the register file
 *   Q8_DOT(acc, w, x)  acc += the 32 products of one Q8_0 block pair, as floats, unscaled... see
 *                   dot_q8 below for how the scales are applied
 *
 * Every function handles any length: vector loop, then a scalar tail.
 */

/* sum_i w[i] * x[i]; four independent accumulators hide the FMA latency. */
static TARGET float FN(dot_f32)(const float *w, const float *x, int n) {
    VF a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
    int i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        a0 = vfma(vload(w + i), vload(x + i), a0);
        a1 = vfma(vload(w + i + VL), vload(x + i + VL), a1);
        a2 = vfma(vload(w + i + 2 * VL), vload(x + i + 2 * VL), a2);
        a3 = vfma(vload(w + i + 3 * VL), vload(x + i + 3 * VL), a3);
    }
    for (; i + VL <= n; i += VL) a0 = vfma(vload(w + i), vload(x + i), a0);
    float sum = vsum(a0) + vsum(a1) + (vsum(a2) + vsum(a3));
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
    for (; b + 2 <= nblocks; b += 2) {
        Q8_DOT(acc0, &w[b], &x[b], f16_table[w[b].d] * f16_table[x[b].d]);
        Q8_DOT(acc1, &w[b + 1], &x[b + 1], f16_table[w[b + 1].d] * f16_table[x[b + 1].d]);
    }
    if (b < nblocks) Q8_DOT(acc0, &w[b], &x[b], f16_table[w[b].d] * f16_table[x[b].d]);
    return Q8_ACC_SUM(acc0) + Q8_ACC_SUM(acc1);
}

/* A TR x TC tile of a matrix-matrix product over k:
 *   out[t * ostride + r] (+)= sum_i w[r * wstride + i] * x[t * xstride + i]
 * Each weight vector is loaded once and used TC times, each activation vector once for TR rows,
 * so the loop is bound by FMAs, not loads. The accumulators stay in registers. */
static TARGET void FN(tile_f32)(float *out, int ostride, const float *w, int wstride, const float *x,
                                int xstride, int k, int accumulate) {
    VF acc[TR][TC];
#pragma GCC unroll 8
    for (int r = 0; r < TR; r++)
#pragma GCC unroll 8
        for (int t = 0; t < TC; t++) acc[r][t] = vzero();
    int i = 0;
    for (; i + VL <= k; i += VL) {
        VF wv[TR];
#pragma GCC unroll 8
        for (int r = 0; r < TR; r++) wv[r] = vload(w + (size_t)r * wstride + i);
#pragma GCC unroll 8
        for (int t = 0; t < TC; t++) {
            VF xv = vload(x + (size_t)t * xstride + i);
#pragma GCC unroll 8
            for (int r = 0; r < TR; r++) acc[r][t] = vfma(wv[r], xv, acc[r][t]);
        }
    }
    for (int r = 0; r < TR; r++)
        for (int t = 0; t < TC; t++) {
            float s = vsum(acc[r][t]);
            for (int j = i; j < k; j++) s += w[(size_t)r * wstride + j] * x[(size_t)t * xstride + j];
            float *o = out + (size_t)t * ostride + r;
            *o = accumulate ? *o + s : s;
        }
}

/* Widens n halves to floats (a weight tile, before tile_f32). */
static TARGET void FN(f16_to_f32_row)(float *out, const uint16_t *in, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) vstore(out + i, vloadh(in + i));
    for (; i < n; i++) out[i] = f16_table[in[i]];
}

static const Kernels FN(kernels) = {
    NAME, TR, TC, FN(dot_f32), FN(dot_f16), FN(dot_q8), FN(tile_f32), FN(f16_to_f32_row),
};
