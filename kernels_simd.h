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

/* Widens n halves to floats (a weight tile, before tile_f32). */
static TARGET void FN(f16_to_f32_row)(float *out, const uint16_t *in, int n) {
    int i = 0;
    for (; i + VL <= n; i += VL) vstore(out + i, vloadh(in + i));
    for (; i < n; i++) out[i] = f16_table[in[i]];
}

static const Kernels FN(kernels) = {
    NAME, TR, 2 * VL, FN(dot_f32), FN(dot_f16), FN(dot_q8), FN(tile_f32), FN(f16_to_f32_row),
};
