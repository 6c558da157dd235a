/* kernels_avx512.c: the AVX-512 kernel set (F, BW, VL; VNNI for the int8 dot products): the
 * template kernels_simd.h on 16-float vectors, and the integer Q8_0 tile for prompts. Target
 * attributes enable the instructions per function, so the file builds without -march flags;
 * kernels_available() offers the set only on CPUs that have all four extensions. */
#include "kernels_sets.h"

#ifdef KERNELS_X86
#include "kernels_x86.h"

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))

/* The end of tile_q8_avx512 and tile_lv_avx512: their Q8T_R x Q8T_P accumulators (row r, positions
   0..15 in acc[r][0], 16..31 in acc[r][1]) stored transposed, out[t * ostride + r] for the nr
   rows and nt positions that exist. */
static inline __attribute__((always_inline)) TARGET void tile_store_avx512(float *out, int ostride,
                                                                           __m512 acc[Q8T_R][2],
                                                                           int nr, int nt) {
    float tile[Q8T_R][Q8T_P];
#pragma GCC unroll 4
    for (int r = 0; r < Q8T_R; r++) {
        _mm512_storeu_ps(tile[r], acc[r][0]);
        _mm512_storeu_ps(tile[r] + 16, acc[r][1]);
    }
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++) out[(size_t)t * ostride + r] = tile[r][t];
}

/* Q8_0 weights times Q8_0 activations for a prompt, Q8T_R = 4 rows x Q8T_P = 32 positions, with
 * VNNI's vpdpbusd: 16 lanes, each adding four products of an unsigned byte and a signed byte to
 * an int32. w[r] is row r's first block (rows past nr repeat the last); the activations come
 * packed by pack_q8_positions() (kernels.c), per Q8_0 block b:
 *   xp[b * 1024 + g * 128 + t * 4 + j]   byte 4g + j of position t's block (signed);
 *   xs[b * 32 + t]  -128 * (the sum of position t's 32 bytes);  xd[b * 32 + t]  its scale.
 * Four weight bytes are broadcast to every lane with 128 added to each (an XOR of the sign bit:
 * unsigned now), so a lane sums (w + 128) * x over the block, and starting it at -128 * sum(x)
 * leaves exactly sum w * x; times both scales, it joins the float accumulator. The 8 int32 and
 * 8 float accumulators stay in registers. out[t * ostride + r] = the result (t < nt, r < nr). */
static TARGET void tile_q8_avx512(float *out, int ostride, const BlockQ8 *const *w, int nr,
                                  const int8_t *xp, const int32_t *xs, const float *xd, int nb,
                                  int nt) {
    const __m512i bias = _mm512_set1_epi32((int)0x80808080u);
    __m512 acc[Q8T_R][2];
#pragma GCC unroll 4
    for (int r = 0; r < Q8T_R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const int8_t *xb = xp + (size_t)b * 1024;
        const __m512i s0 = _mm512_loadu_si512(xs + (size_t)b * 32);
        const __m512i s1 = _mm512_loadu_si512(xs + (size_t)b * 32 + 16);
        __m512i ia[Q8T_R][2];
#pragma GCC unroll 4
        for (int r = 0; r < Q8T_R; r++) ia[r][0] = s0, ia[r][1] = s1;
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i x0 = _mm512_loadu_si512(xb + g * 128),
                          x1 = _mm512_loadu_si512(xb + g * 128 + 64);
#pragma GCC unroll 4
            for (int r = 0; r < Q8T_R; r++) {
                int32_t w4;
                memcpy(&w4, w[r][b].qs + 4 * g, 4);
                const __m512i wv = _mm512_xor_si512(_mm512_set1_epi32(w4), bias);
                ia[r][0] = _mm512_dpbusd_epi32(ia[r][0], wv, x0);
                ia[r][1] = _mm512_dpbusd_epi32(ia[r][1], wv, x1);
            }
        }
        const __m512 d0 = _mm512_loadu_ps(xd + (size_t)b * 32),
                     d1 = _mm512_loadu_ps(xd + (size_t)b * 32 + 16);
#pragma GCC unroll 4
        for (int r = 0; r < Q8T_R; r++) {
            const __m512 dw = _mm512_set1_ps(_cvtsh_ss(w[r][b].d));
            acc[r][0] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][0]), _mm512_mul_ps(dw, d0), acc[r][0]);
            acc[r][1] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][1]), _mm512_mul_ps(dw, d1), acc[r][1]);
        }
    }
    tile_store_avx512(out, ostride, acc, nr, nt);
}

/* One group of G (16 or 32: a constant where this is inlined) columns of tile_lv_avx512 for its
   Q8T_R rows: integer sums of u * x, started at -128 sum(x) so that they are exactly sum q x,
   then scaled by the row's a and the positions' activation scales, minus b times the scaled
   activation sums. */
static inline __attribute__((always_inline)) TARGET void lv_group_avx512(
    __m512 acc[Q8T_R][2], const uint8_t *const *wu, const float *const *wa, const float *const *wb,
    const int8_t *xp, const int32_t *xn, const float *xa, const float *xm, int g, const int G) {
    const int c0 = g * G, h = c0 / 16; /* first column; first group of 16 */
    __m512i s0 = _mm512_loadu_si512(xn + (size_t)h * 32),
            s1 = _mm512_loadu_si512(xn + (size_t)h * 32 + 16);
    if (G == 32) {
        s0 = _mm512_add_epi32(s0, _mm512_loadu_si512(xn + (size_t)h * 32 + 32));
        s1 = _mm512_add_epi32(s1, _mm512_loadu_si512(xn + (size_t)h * 32 + 48));
    }
    __m512i ia[Q8T_R][2];
#pragma GCC unroll 4
    for (int r = 0; r < Q8T_R; r++) ia[r][0] = s0, ia[r][1] = s1;
#pragma GCC unroll 8
    for (int k = 0; k < G / 4; k++) {
        const int8_t *xk = xp + (size_t)(c0 / 4 + k) * 128;
        const __m512i x0 = _mm512_loadu_si512(xk), x1 = _mm512_loadu_si512(xk + 64);
#pragma GCC unroll 4
        for (int r = 0; r < Q8T_R; r++) {
            int32_t w4;
            memcpy(&w4, wu[r] + c0 + 4 * k, 4);
            const __m512i wv = _mm512_set1_epi32(w4);
            ia[r][0] = _mm512_dpbusd_epi32(ia[r][0], wv, x0);
            ia[r][1] = _mm512_dpbusd_epi32(ia[r][1], wv, x1);
        }
    }
    const __m512 a0 = _mm512_loadu_ps(xa + (size_t)h * 32),
                 a1 = _mm512_loadu_ps(xa + (size_t)h * 32 + 16);
#pragma GCC unroll 4
    for (int r = 0; r < Q8T_R; r++) {
        const __m512 sw = _mm512_set1_ps(wa[r][g]);
        acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][0]), _mm512_mul_ps(sw, a0), acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[r][1]), _mm512_mul_ps(sw, a1), acc[r][1]);
    }
    if (!wb) return;
    __m512 m0 = _mm512_loadu_ps(xm + (size_t)h * 32),
           m1 = _mm512_loadu_ps(xm + (size_t)h * 32 + 16);
    if (G == 32) {
        m0 = _mm512_add_ps(m0, _mm512_loadu_ps(xm + (size_t)h * 32 + 32));
        m1 = _mm512_add_ps(m1, _mm512_loadu_ps(xm + (size_t)h * 32 + 48));
    }
#pragma GCC unroll 4
    for (int r = 0; r < Q8T_R; r++) {
        const __m512 bw = _mm512_set1_ps(wb[r][g]);
        acc[r][0] = _mm512_fnmadd_ps(bw, m0, acc[r][0]);
        acc[r][1] = _mm512_fnmadd_ps(bw, m1, acc[r][1]);
    }
}

/* The quantized types other than Q8_0 for a prompt, Q8T_R = 4 rows x Q8T_P = 32 positions with
 * vpdpbusd, on weight rows unpacked once to levels (kernels.c, group_lv) and activations packed by
 * pack_lv_positions() (kernels.c), for a column c and a position t < 32:
 *   xp[(c / 4) * 128 + t * 4 + c % 4]  the activation level (signed byte; as tile_q8's layout);
 *   per group of 16 columns, at [(c / 16) * 32 + t]: xn = -128 * (the sum of its 16 levels),
 *   xa = the activations' scale there, xm = xa * (the sum of its levels).
 * For weight = a q - b and activation = xa p per group: sum a xa sum(q p) - b xm, the same
 * terms as dot_ref (kernels_quant.c) in another order. out[t * ostride + r] = the result. */
static TARGET void tile_lv_avx512(float *out, int ostride, const uint8_t *const *wu,
                                  const float *const *wa, const float *const *wb, int nr,
                                  const int8_t *xp, const int32_t *xn, const float *xa,
                                  const float *xm, int cols, int G, int nt) {
    __m512 acc[Q8T_R][2];
#pragma GCC unroll 4
    for (int r = 0; r < Q8T_R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    if (G == 32)
        for (int g = 0; g < cols / 32; g++) lv_group_avx512(acc, wu, wa, wb, xp, xn, xa, xm, g, 32);
    else
        for (int g = 0; g < cols / 16; g++) lv_group_avx512(acc, wu, wa, wb, xp, xn, xa, xm, g, 16);
    tile_store_avx512(out, ostride, acc, nr, nt);
}

/* Decoding with repacked Q8_0 weights (the Q8P layout, kernels.h): one group of 16 rows, a row
 * per lane. Per block, 8 vpdpbusd each multiply 4 weight bytes of every row (unsigned: w + 128)
 * by the same 4 activation bytes, broadcast from memory; starting the lanes at xs[b] =
 * -128 * sum(x[b]) leaves each lane exactly row r's sum w * x. Then one conversion of the 16
 * rows' scales, times x's, and one FMA: about 20 instructions per 544 bytes of weights, where
 * a dot product per row spends about 12 per 68. Two int accumulators halve the dependency
 * chain; the float lanes add blocks in order, as gemv_packed_ref. */
static TARGET void gemv_q8p_avx512(float *out, int nr, const uint8_t *w, const BlockQ8 *x,
                                   const int32_t *xs, const float *xd, int nb) {
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = w + Q8P_QS(b, 512);
        const int8_t *xb = x[b].qs;
        __m512i i0 = _mm512_set1_epi32(xs[b]), i1 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 8; k += 2) {
            int32_t x0, x1;
            memcpy(&x0, xb + 4 * k, 4);
            memcpy(&x1, xb + 4 * k + 4, 4);
            i0 = _mm512_dpbusd_epi32(i0, _mm512_load_si512(wb + 64 * k), _mm512_set1_epi32(x0));
            i1 =
                _mm512_dpbusd_epi32(i1, _mm512_load_si512(wb + 64 * k + 64), _mm512_set1_epi32(x1));
        }
        const __m512 s = _mm512_mul_ps(
            _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(w + Q8P_SCALES(b, 512)))),
            _mm512_set1_ps(xd[b]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), s, acc);
    }
    _mm512_mask_storeu_ps(out, (__mmask16)((1u << nr) - 1), acc);
}

/* Vector k (< 4) of a repacked Q4_0 or Q5_0 block wb (type a constant where this is inlined):
 * the levels of its two products as unsigned bytes, lo (weights 4k + j of the 16 rows) and hi
 * (16 + 4k + j): the low and high nibbles, and for Q5_0 16 more in the bytes whose fifth bit,
 * bit k (lo) or 4 + k (hi) of the same byte of the block's qh vector h, is set (a byte-wise bit
 * test into a mask register, then a masked add). */
static inline __attribute__((always_inline)) TARGET void nib_levels_avx512(__m512i *lo, __m512i *hi,
                                                                           const uint8_t *wb,
                                                                           __m512i h, int k,
                                                                           const uint32_t type) {
    const __m512i m4 = _mm512_set1_epi8(15), b4 = _mm512_set1_epi8(16);
    const __m512i v = _mm512_load_si512(wb + 64 * k);
    *lo = _mm512_and_si512(v, m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    if (type == GGML_Q5_0) {
        const __mmask64 l5 = _mm512_test_epi8_mask(h, _mm512_set1_epi8((char)(1 << k))),
                        h5 = _mm512_test_epi8_mask(h, _mm512_set1_epi8((char)(16 << k)));
        *lo = _mm512_mask_add_epi8(*lo, l5, *lo, b4);
        *hi = _mm512_mask_add_epi8(*hi, h5, *hi, b4);
    }
}

/* The lanes' starting value for block b of a 4- or 5-bit type: xs[b] = -128 sum x scaled to the
   offset of the unsigned levels, Q4_0's -8 sum x (q - 8), Q5_0's -16 sum x (q - 16). */
#define NIB_START(type, s) ((type) == GGML_Q5_0 ? (s) / 8 : (s) / 16)

/* Q4_0 or Q5_0 repacked (the Q8P layout with 256 (320) bytes per block): as gemv_q8p_avx512,
 * each 64-byte vector of nibbles giving two products (nib_levels_avx512); the lanes start at
 * NIB_START, which leaves sum (q - 8) x (Q5_0: (q - 16) x). */
static inline __attribute__((always_inline)) TARGET void gemv_nib_avx512(
    float *out, int nr, const uint8_t *w, const BlockQ8 *x, const int32_t *xs, const float *xd,
    int nb, const uint32_t type) {
    const int qb = Q8P_QB(type);
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = w + Q8P_QS(b, qb);
        const int8_t *xb = x[b].qs;
        const __m512i h = type == GGML_Q5_0 ? _mm512_load_si512(wb + 256) : _mm512_setzero_si512();
        __m512i i0 = _mm512_set1_epi32(NIB_START(type, xs[b])), i1 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            int32_t x0, x1;
            memcpy(&x0, xb + 4 * k, 4);
            memcpy(&x1, xb + 16 + 4 * k, 4);
            __m512i lo, hi;
            nib_levels_avx512(&lo, &hi, wb, h, k, type);
            i0 = _mm512_dpbusd_epi32(i0, lo, _mm512_set1_epi32(x0));
            i1 = _mm512_dpbusd_epi32(i1, hi, _mm512_set1_epi32(x1));
        }
        const __m512 s = _mm512_mul_ps(
            _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(w + Q8P_SCALES(b, qb)))),
            _mm512_set1_ps(xd[b]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0, i1)), s, acc);
    }
    _mm512_mask_storeu_ps(out, (__mmask16)((1u << nr) - 1), acc);
}
static TARGET void gemv_q4p_avx512(float *out, int nr, const uint8_t *w, const BlockQ8 *x,
                                   const int32_t *xs, const float *xd, int nb) {
    gemv_nib_avx512(out, nr, w, x, xs, xd, nb, GGML_Q4_0);
}
static TARGET void gemv_q5p_avx512(float *out, int nr, const uint8_t *w, const BlockQ8 *x,
                                   const int32_t *xs, const float *xd, int nb) {
    gemv_nib_avx512(out, nr, w, x, xs, xd, nb, GGML_Q5_0);
}

/* 4 bytes at p broadcast to every 32-bit lane, from memory (a load each, not a wider load split
   in general registers) */
#define BCAST4(p) _mm512_broadcastd_epi32(_mm_loadu_si32(p))

/* Q4_K repacked (the KP layout, kernels.h): one group of 16 rows, a row per lane. Each 64-byte
 * vector of levels gives two products, its low nibbles (group 2c) and its high ones (2c + 1),
 * each into its group's int32 sum; a group's sum times the 16 rows' scales (bytes widened,
 * vpmulld) joins isum. The mins meet the sums of the activations' groups of 32, two groups per
 * vpdpwssd (kp_act's pair words). Then per super-block two FMAs, d and dmin times x's scale, in
 * the order of gemv_packed_k_ref. */
static TARGET void gemv_q4kp_avx512(float *out, int nr, const uint8_t *w, const BlockQ8K *x,
                                    const int32_t *xk, int nb) {
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, w += KP_SB(GGML_Q4_K)) {
        const uint8_t *qs = w + KP_HEAD;
        const int8_t *xq = x[b].qs;
        __m512i isum = _mm512_setzero_si512(), msum = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m512i v = _mm512_load_si512(qs + (size_t)(8 * c + k) * 64);
                s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(v, m4), BCAST4(xq + 64 * c + 4 * k));
                s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                         BCAST4(xq + 64 * c + 32 + 4 * k));
            }
            const __m512i sc0 =
                _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(w + 64 + 32 * c)));
            const __m512i sc1 =
                _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(w + 80 + 32 * c)));
            isum = _mm512_add_epi32(
                isum, _mm512_add_epi32(_mm512_mullo_epi32(s0, sc0), _mm512_mullo_epi32(s1, sc1)));
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            msum = _mm512_dpwssd_epi32(
                msum, _mm512_cvtepu8_epi16(_mm256_load_si256((const __m256i *)(w + 192 + 32 * i))),
                _mm512_set1_epi32(xk[(size_t)b * KP_XK + 16 + i]));
        const __m512 xd = _mm512_set1_ps(x[b].d);
        const __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)w));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(w + 32)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, xd), acc);
        acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dmin, xd), acc);
    }
    _mm512_mask_storeu_ps(out, (__mmask16)((1u << nr) - 1), acc);
}

/* Q6_K repacked (KP): per group of 16 weights three vectors, whose bits 0-5 are the levels of
 * three products and whose bits 6-7, gathered by three masked shifts (no byte crosses into its
 * neighbour: what a 16-bit shift moves in is masked off), the fourth's. A group's int32 sum
 * starts at -32 times its activations' sum (kp_act), so it ends as sum (q - 32) x, and is then
 * scaled by the 16 rows' signed scales (vpmulld). One FMA per super-block. */
static TARGET void gemv_q6kp_avx512(float *out, int nr, const uint8_t *w, const BlockQ8K *x,
                                    const int32_t *xk, int nb) {
    const __m512i m6 = _mm512_set1_epi8(63), top = _mm512_set1_epi8((char)0xc0);
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, w += KP_SB(GGML_Q6_K)) {
        const uint8_t *qs = w + KP_HEAD;
        const int8_t *xq = x[b].qs;
        __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int g = 0; g < 16; g++) {
            const uint8_t *u = qs + (size_t)g * 192;
            const __m512i v0 = _mm512_load_si512(u), v1 = _mm512_load_si512(u + 64),
                          v2 = _mm512_load_si512(u + 128);
            /* t | (v & 0xc0) for t with zero top bits: ternary logic 0xF8 = a | (b & c) */
            __m512i t = _mm512_srli_epi16(_mm512_and_si512(v0, top), 2);
            t = _mm512_srli_epi16(_mm512_ternarylogic_epi32(t, v1, top, 0xF8), 2);
            t = _mm512_srli_epi16(_mm512_ternarylogic_epi32(t, v2, top, 0xF8), 2);
            const int8_t *xg = xq + 16 * g; /* 4 activation bytes broadcast from memory */
            __m512i s = _mm512_set1_epi32(xk[(size_t)b * KP_XK + g]);
            s = _mm512_dpbusd_epi32(s, _mm512_and_si512(v0, m6), BCAST4(xg));
            s = _mm512_dpbusd_epi32(s, _mm512_and_si512(v1, m6), BCAST4(xg + 4));
            s = _mm512_dpbusd_epi32(s, _mm512_and_si512(v2, m6), BCAST4(xg + 8));
            s = _mm512_dpbusd_epi32(s, t, BCAST4(xg + 12));
            const __m512i sc =
                _mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(w + 64 + 16 * g)));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(s, sc));
        }
        const __m512 d = _mm512_load_ps((const float *)w);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, _mm512_set1_ps(x[b].d)),
                              acc);
    }
    _mm512_mask_storeu_ps(out, (__mmask16)((1u << nr) - 1), acc);
}

/* Prompts with repacked Q8_0, Q4_0 or Q5_0 weights: one group of 16 rows, a row per lane as in
 * decoding, against np <= Q8P_T = 12 positions at once (type and np are constants where this is
 * inlined). Each vector of weight levels is loaded once (for Q4_0 and Q5_0 split into its two
 * products' levels once, nib_levels_avx512) and meets the 12 positions' 4 activation bytes,
 * broadcast from memory inside vpdpbusd: 12 int accumulators and 12 float ones fill 24 of the
 * 32 registers. A position's lanes start at its xs (Q4_0, Q5_0: NIB_START) and end as
 * gemv_q8p_avx512's (gemv_nib_avx512's), and its float lanes add the blocks in the same order
 * with the same products: the same bits as decoding that position alone. The 16 rows' outputs
 * of a position are one store. */
static inline __attribute__((always_inline)) TARGET void tile_packed_avx512(
    float *out, int ostride, int nr, const uint8_t *w, const int8_t *xq, const int32_t *xs,
    const float *xd, int nb, int nt, const uint32_t type, const int np) {
    const int qb = Q8P_QB(type);
    __m512 acc[Q8P_T];
#pragma GCC unroll 12
    for (int t = 0; t < np; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *wb = w + Q8P_QS(b, qb);
        const int8_t *xb = xq + (size_t)b * Q8P_T * QK8_0; /* position t's levels at t * 32 */
        const int32_t *sb = xs + (size_t)b * Q8P_T;
        __m512i ia[Q8P_T];
#pragma GCC unroll 12
        for (int t = 0; t < np; t++)
            ia[t] = _mm512_set1_epi32(type == GGML_Q8_0 ? sb[t] : NIB_START(type, sb[t]));
        if (type != GGML_Q8_0) {
            const __m512i h =
                type == GGML_Q5_0 ? _mm512_load_si512(wb + 256) : _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m512i lo, hi;
                nib_levels_avx512(&lo, &hi, wb, h, k, type);
#pragma GCC unroll 12
                for (int t = 0; t < np; t++) {
                    int32_t x0, x1;
                    memcpy(&x0, xb + t * QK8_0 + 4 * k, 4);
                    memcpy(&x1, xb + t * QK8_0 + 16 + 4 * k, 4);
                    ia[t] = _mm512_dpbusd_epi32(ia[t], lo, _mm512_set1_epi32(x0));
                    ia[t] = _mm512_dpbusd_epi32(ia[t], hi, _mm512_set1_epi32(x1));
                }
            }
        } else {
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m512i v = _mm512_load_si512(wb + 64 * k);
#pragma GCC unroll 12
                for (int t = 0; t < np; t++) {
                    int32_t x0;
                    memcpy(&x0, xb + t * QK8_0 + 4 * k, 4);
                    ia[t] = _mm512_dpbusd_epi32(ia[t], v, _mm512_set1_epi32(x0));
                }
            }
        }
        const __m512 ws =
            _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(w + Q8P_SCALES(b, qb))));
        const float *db = xd + (size_t)b * Q8P_T;
#pragma GCC unroll 12
        for (int t = 0; t < np; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ia[t]),
                                     _mm512_mul_ps(ws, _mm512_set1_ps(db[t])), acc[t]);
    }
    const __mmask16 rows = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(out + (size_t)t * ostride, rows, acc[t]);
}

/* The one choice of tile width for every type: a last tile of nt <= 8 (4) positions takes the
   kernel for 8 (4), which computes no position it does not store but what the tile's registers
   allow (64 = 5 x 12 + 4: a default batch). */
static inline __attribute__((always_inline)) TARGET void tile_width_avx512(
    float *out, int ostride, int nr, const uint8_t *w, const int8_t *xq, const int32_t *xs,
    const float *xd, int nb, int nt, const uint32_t type) {
    if (nt > 8)
        tile_packed_avx512(out, ostride, nr, w, xq, xs, xd, nb, nt, type, 12);
    else if (nt > 4)
        tile_packed_avx512(out, ostride, nr, w, xq, xs, xd, nb, nt, type, 8);
    else
        tile_packed_avx512(out, ostride, nr, w, xq, xs, xd, nb, nt, type, 4);
}
static TARGET void tile_q8p_avx512(float *out, int ostride, int nr, const uint8_t *w,
                                   const int8_t *xq, const int32_t *xs, const float *xd, int nb,
                                   int nt) {
    tile_width_avx512(out, ostride, nr, w, xq, xs, xd, nb, nt, GGML_Q8_0);
}
static TARGET void tile_q4p_avx512(float *out, int ostride, int nr, const uint8_t *w,
                                   const int8_t *xq, const int32_t *xs, const float *xd, int nb,
                                   int nt) {
    tile_width_avx512(out, ostride, nr, w, xq, xs, xd, nb, nt, GGML_Q4_0);
}
static TARGET void tile_q5p_avx512(float *out, int ostride, int nr, const uint8_t *w,
                                   const int8_t *xq, const int32_t *xs, const float *xd, int nb,
                                   int nt) {
    tile_width_avx512(out, ostride, nr, w, xq, xs, xd, nb, nt, GGML_Q5_0);
}

/* q8p_tile_act (kernels.c) bit for bit: per block of 32, the largest |x| (NaN never wins: each
 * new vector is max_ps's first operand, which loses to the running maximum when it is NaN, as it
 * loses quantize_q8_0's comparison), d = that / 127 rounded to a half to nearest even (vcvtps2ph,
 * as f32_to_f16), the levels x * (1 / d) clamped to +-127 (NaN: -127, again max_ps's second
 * operand) and rounded to nearest even by the conversion (the clamp's bounds are integers, so
 * clamping first changes nothing), their sum and the half's value. */
static TARGET void tile_act_avx512(int8_t *xq, int32_t *xs, float *xd, const float *x, int nb,
                                   int t) {
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int b = 0; b < nb; b++) {
        const size_t at = (size_t)b * Q8P_T + t;
        if (!x) {
            memset(xq + at * QK8_0, 0, QK8_0);
            xs[at] = 0;
            xd[at] = 0.0f;
            continue;
        }
        const __m512 v0 = _mm512_loadu_ps(x + (size_t)b * QK8_0),
                     v1 = _mm512_loadu_ps(x + (size_t)b * QK8_0 + 16);
        __m512 m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps());
        m = _mm512_max_ps(_mm512_abs_ps(v1), m);
        const float d = _mm512_reduce_max_ps(m) / 127.0f;
        const uint16_t h = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        const __m512 id = _mm512_set1_ps(h & 0x7fff ? 1.0f / d : 0.0f);
        const __m512i q0 =
            _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, id), lo), hi));
        const __m512i q1 =
            _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, id), lo), hi));
        _mm_storeu_si128((__m128i *)(xq + at * QK8_0), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(xq + at * QK8_0 + 16), _mm512_cvtepi32_epi8(q1));
        xs[at] = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        xd[at] = _cvtsh_ss(h);
    }
}

/* Prompts with repacked Q4_K weights (KP): one group of 16 rows, a row per lane as in
 * gemv_q4kp_avx512, against np <= Q8P_T = 12 positions (a constant where this is inlined). Per
 * group of 32 weights its 8 vectors of nibbles are taken out once and meet every position's
 * activation bytes (broadcast from memory inside vpdpbusd); the position's group sum times the
 * 16 rows' scales joins its isum, 12 of them in registers. Per super-block each position's mins
 * meet its pair words (vpdpwssd) and its float lanes take gemv_q4kp_avx512's two FMAs: integer
 * sums exact in any order, float terms in the same order, so the same bits as decoding. */
static inline __attribute__((always_inline)) TARGET void tile_q4kp_np(float *out, int ostride,
                                                                      int nr, const uint8_t *w,
                                                                      const BlockQ8K *x,
                                                                      const int32_t *xk, int nb,
                                                                      int nt, const int np) {
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512 acc[Q8P_T];
#pragma GCC unroll 12
    for (int t = 0; t < np; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, w += KP_SB(GGML_Q4_K)) {
        const BlockQ8K *xb = x + (size_t)b * Q8P_T;
        const int32_t *kb = xk + (size_t)b * Q8P_T * KP_XK;
        __m512i isum[Q8P_T];
#pragma GCC unroll 12
        for (int t = 0; t < np; t++) isum[t] = _mm512_setzero_si512();
        for (int g = 0; g < 8; g++) { /* weights 32 g ..: nibbles g % 2 of vectors 8 (g / 2) .. */
            const uint8_t *qs = w + KP_HEAD + (size_t)(g / 2) * 8 * 64;
            __m512i q[8];
#pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m512i v = _mm512_load_si512(qs + (size_t)k * 64);
                q[k] = _mm512_and_si512(g % 2 ? _mm512_srli_epi16(v, 4) : v, m4);
            }
            const __m512i sc =
                _mm512_cvtepu8_epi32(_mm_load_si128((const __m128i *)(w + 64 + 16 * g)));
#pragma GCC unroll 12
            for (int t = 0; t < np; t++) {
                const int8_t *xg = xb[t].qs + 32 * g;
                __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[0], BCAST4(xg));
#pragma GCC unroll 7
                for (int k = 1; k < 8; k++) s = _mm512_dpbusd_epi32(s, q[k], BCAST4(xg + 4 * k));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s, sc));
            }
        }
        __m512i mins[4];
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            mins[i] = _mm512_cvtepu8_epi16(_mm256_load_si256((const __m256i *)(w + 192 + 32 * i)));
        const __m512 d = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)w));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(w + 32)));
#pragma GCC unroll 12
        for (int t = 0; t < np; t++) {
            __m512i msum = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
                msum = _mm512_dpwssd_epi32(msum, mins[i], BCAST4(kb + t * KP_XK + 16 + i));
            const __m512 xd = _mm512_set1_ps(xb[t].d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, xd), acc[t]);
            acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dmin, xd), acc[t]);
        }
    }
    const __mmask16 rows = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(out + (size_t)t * ostride, rows, acc[t]);
}

/* Prompts with repacked Q6_K weights (KP): as tile_q4kp_np, per group of 16 weights its three
 * vectors split once into four of levels (gemv_q6kp_avx512's masked shifts), which meet every
 * position; a position's group sum starts at its -32 bsums word and ends times the rows' signed
 * scales in its isum; one FMA per super-block and position, as in decoding. */
static inline __attribute__((always_inline)) TARGET void tile_q6kp_np(float *out, int ostride,
                                                                      int nr, const uint8_t *w,
                                                                      const BlockQ8K *x,
                                                                      const int32_t *xk, int nb,
                                                                      int nt, const int np) {
    const __m512i m6 = _mm512_set1_epi8(63), top = _mm512_set1_epi8((char)0xc0);
    __m512 acc[Q8P_T];
#pragma GCC unroll 12
    for (int t = 0; t < np; t++) acc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++, w += KP_SB(GGML_Q6_K)) {
        const BlockQ8K *xb = x + (size_t)b * Q8P_T;
        const int32_t *kb = xk + (size_t)b * Q8P_T * KP_XK;
        __m512i isum[Q8P_T];
#pragma GCC unroll 12
        for (int t = 0; t < np; t++) isum[t] = _mm512_setzero_si512();
        for (int g = 0; g < 16; g++) {
            const uint8_t *u = w + KP_HEAD + (size_t)g * 192;
            const __m512i v0 = _mm512_load_si512(u), v1 = _mm512_load_si512(u + 64),
                          v2 = _mm512_load_si512(u + 128);
            __m512i q3 = _mm512_srli_epi16(_mm512_and_si512(v0, top), 2);
            q3 = _mm512_srli_epi16(_mm512_ternarylogic_epi32(q3, v1, top, 0xF8), 2);
            q3 = _mm512_srli_epi16(_mm512_ternarylogic_epi32(q3, v2, top, 0xF8), 2);
            const __m512i q0 = _mm512_and_si512(v0, m6), q1 = _mm512_and_si512(v1, m6),
                          q2 = _mm512_and_si512(v2, m6);
            const __m512i sc =
                _mm512_cvtepi8_epi32(_mm_load_si128((const __m128i *)(w + 64 + 16 * g)));
#pragma GCC unroll 12
            for (int t = 0; t < np; t++) {
                const int8_t *xg = xb[t].qs + 16 * g;
                __m512i s = BCAST4(kb + t * KP_XK + g);
                s = _mm512_dpbusd_epi32(s, q0, BCAST4(xg));
                s = _mm512_dpbusd_epi32(s, q1, BCAST4(xg + 4));
                s = _mm512_dpbusd_epi32(s, q2, BCAST4(xg + 8));
                s = _mm512_dpbusd_epi32(s, q3, BCAST4(xg + 12));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(s, sc));
            }
        }
        const __m512 d = _mm512_load_ps((const float *)w);
#pragma GCC unroll 12
        for (int t = 0; t < np; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]),
                                     _mm512_mul_ps(d, _mm512_set1_ps(xb[t].d)), acc[t]);
    }
    const __mmask16 rows = (__mmask16)((1u << nr) - 1);
    for (int t = 0; t < nt; t++) _mm512_mask_storeu_ps(out + (size_t)t * ostride, rows, acc[t]);
}

/* A last tile of nt <= 8 (4) positions takes the kernel for 8 (4), as tile_q8p_avx512. */
static TARGET void tile_q4kp_avx512(float *out, int ostride, int nr, const uint8_t *w,
                                    const BlockQ8K *x, const int32_t *xk, int nb, int nt) {
    if (nt > 8)
        tile_q4kp_np(out, ostride, nr, w, x, xk, nb, nt, 12);
    else if (nt > 4)
        tile_q4kp_np(out, ostride, nr, w, x, xk, nb, nt, 8);
    else
        tile_q4kp_np(out, ostride, nr, w, x, xk, nb, nt, 4);
}

static TARGET void tile_q6kp_avx512(float *out, int ostride, int nr, const uint8_t *w,
                                    const BlockQ8K *x, const int32_t *xk, int nb, int nt) {
    if (nt > 8)
        tile_q6kp_np(out, ostride, nr, w, x, xk, nb, nt, 12);
    else if (nt > 4)
        tile_q6kp_np(out, ostride, nr, w, x, xk, nb, nt, 8);
    else
        tile_q6kp_np(out, ostride, nr, w, x, xk, nb, nt, 4);
}

/* 16 values x times iscale as quantize_q8_k rounds and clamps them (see below), as bytes. */
static inline __attribute__((always_inline)) TARGET __m128i k_levels16(const float *x, __m512 is) {
    const __m512 shifter = _mm512_set1_ps(12582912.0f);
    __m512 f = _mm512_mul_ps(_mm512_loadu_ps(x), is);
    f = _mm512_sub_ps(_mm512_add_ps(f, shifter), shifter);
    f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(f));
}

/* kp_tile_act (kernels.c) bit for bit: quantize_q8_k's steps in vectors. The largest |x| (NaN
 * never wins, as in tile_act_avx512), the first value that reaches it (the scalar loop keeps the
 * first of equal ones) gives max; the levels x * iscale, rounded by adding and subtracting
 * 1.5 * 2^23 as quantize_q8_k does (three separate roundings, no FMA), clamped with NaN to -127
 * (max_ps's second operand); a group's sum of 16 levels from vpsadbw over the levels plus 128
 * (sums of 8, added in pairs), minus 2048. kp_act then takes the block's bsums. */
static TARGET void tile_act_k_avx512(BlockQ8K *xq, int32_t *xk, const float *x, int nb, int t) {
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14),
                  odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
    for (int b = 0; b < nb; b++) {
        const size_t at = (size_t)b * Q8P_T + t;
        BlockQ8K *o = xq + at;
        if (!x) {
            memset(o, 0, sizeof *o);
            memset(xk + at * KP_XK, 0, KP_XK * sizeof(int32_t));
            continue;
        }
        const float *xb = x + (size_t)b * QK_K;
        __m512 m = _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb + 16 * i)), m);
        const float amax = _mm512_reduce_max_ps(m);
        float iscale = 0.0f;
        if (amax > 0.0f) {
            int first = 0;
            for (int i = 0; i < 16; i++) {
                const __mmask16 eq = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(xb + 16 * i)),
                                                        _mm512_set1_ps(amax), _CMP_EQ_OQ);
                if (eq) {
                    first = 16 * i + __builtin_ctz(eq);
                    break;
                }
            }
            iscale = -127.0f / xb[first];
        }
        o->d = amax > 0.0f ? 1.0f / iscale : 0.0f;
        const __m512 is = _mm512_set1_ps(iscale);
        __m512i sad[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const float *xc = xb + 64 * c;
            __m512i v = _mm512_castsi128_si512(k_levels16(xc, is));
            v = _mm512_inserti32x4(v, k_levels16(xc + 16, is), 1);
            v = _mm512_inserti32x4(v, k_levels16(xc + 32, is), 2);
            v = _mm512_inserti32x4(v, k_levels16(xc + 48, is), 3);
            _mm512_storeu_si512(o->qs + 64 * c, v);
            sad[c] = _mm512_sad_epu8(_mm512_xor_si512(v, bias), _mm512_setzero_si512());
        }
        const __m512i off = _mm512_set1_epi64(16 * 128);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) { /* groups 8 h .. 8 h + 7 */
            const __m512i s =
                _mm512_add_epi64(_mm512_permutex2var_epi64(sad[2 * h], even, sad[2 * h + 1]),
                                 _mm512_permutex2var_epi64(sad[2 * h], odd, sad[2 * h + 1]));
            _mm_storeu_si128((__m128i *)(o->bsums + 8 * h),
                             _mm512_cvtepi64_epi16(_mm512_sub_epi64(s, off)));
        }
        kp_act(xk + at * KP_XK, o, 1);
    }
}

/* ---- the 4-, 5- and 6-bit types' dot products, their levels unpacked in registers ----------
 * The template's generic versions unpack a block's levels into a byte array and read it back,
 * which here stalls on every block (32-byte loads of data just stored as 16-byte halves cannot
 * be forwarded); these unpack in registers with shifts and masks and multiply with VNNI, levels
 * as unsigned bytes: the offsets (Q4_0's 8, Q6_K's 32, the K-quants' mins) are applied once per
 * group through the activations' sums. Same integer sums as dot_ref; floats summed in another
 * order. */

/* The 8 int32 lanes of a ymm, or of a float ymm, summed. */
#define HSUM_I32(v) hsum256_epi32(v)

/* Q4_0: sum_b d_w d_x (sum q x - 8 sum x), q the unsigned nibbles. */
static TARGET float dot_q4_0_vnni(const void *wv, const void *xv, int n) {
    const BlockQ4_0 *w = wv;
    const BlockQ8 *x = xv;
    const __m256i m4 = _mm256_set1_epi8(15), eight = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int nb = n / QK;
    int b = 0;
    for (; b < nb; b++) {
        const __m128i v = _mm_loadu_si128((const __m128i *)w[b].qs);
        const __m256i q = _mm256_and_si256(
            _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1), m4);
        const __m256i xb = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i p = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), q, xb),
                                           _mm256_dpbusd_epi32(_mm256_setzero_si256(), eight, xb));
        const __m256 sc = _mm256_set1_ps(_cvtsh_ss(w[b].d) * _cvtsh_ss(x[b].d));
        if (b % 2)
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc1);
        else
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc0);
    }
    return hsum256(_mm256_add_ps(acc0, acc1));
}

/* Q4_K and Q5_K's eight 6-bit scales and mins (scale_min_k4's layout) in a few word
   operations: bytes 0-7 of *sc and *m are groups 0-7. */
static inline void k4_scales(const uint8_t s[12], uint64_t *sc, uint64_t *m) {
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    const uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    *sc = (uint64_t)(u0 & 0x3f3f3f3fu) | (uint64_t)sc_hi << 32;
    *m = (uint64_t)(u1 & 0x3f3f3f3fu) | (uint64_t)m_hi << 32;
}

/* Q4_K and Q5_K (qh: Q5_K's, else NULL): acc (8 float lanes) += d_x (d sum_g sc_g sum q x -
   dmin sum_g m_g sum x), group g = 2c + h the nibbles h of qs[32c ..], plus 16 where bit 2c + h
   of qh[l] is set. Levels times activations in 16-bit pairs (maddubs: at most 2 * 31 * 127, no
   saturation), then times the group's scale into 32 bits (madd); the mins meet Q8_K's bsums. */
static inline __attribute__((always_inline)) TARGET __m256
k4_block_vnni(__m256 acc, const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, float d,
              float dmin, const BlockQ8K *x) {
    const __m256i m4 = _mm256_set1_epi8(15), bit4 = _mm256_set1_epi8(16);
    const __m256i hv = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    uint64_t sc, m;
    k4_scales(scales, &sc, &m);
    const __m128i m8 = _mm_cvtsi64_si128((long long)m);
    const __m256i mins = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8)),
                                           _mm256_loadu_si256((const __m256i *)x->bsums));
    /* the 8 scales as 16-bit words in both halves; group g's broadcast by a byte shuffle */
    const __m256i sc16 =
        _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
    __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        if (qh) { /* bit 2c (2c + 1) of each byte to bit 4 */
            lo = _mm256_or_si256(
                lo, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * c), 4), bit4));
            hi = _mm256_or_si256(
                hi, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * c + 1), 4), bit4));
        }
        const __m256i s0 =
            _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * 2 * c)));
        const __m256i s1 =
            _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * c + 1))));
        const __m256i p0 =
            _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(x->qs + 64 * c)));
        const __m256i p1 =
            _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(x->qs + 64 * c + 32)));
        isum = _mm256_add_epi32(
            isum, _mm256_add_epi32(_mm256_madd_epi16(p0, s0), _mm256_madd_epi16(p1, s1)));
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(x->d * d), acc);
    return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(x->d * dmin), acc);
}

static TARGET float dot_q4_k_vnni(const void *wv, const void *xv, int n) {
    const BlockQ4K *w = wv;
    const BlockQ8K *x = xv;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++)
        acc = k4_block_vnni(acc, w[b].qs, NULL, w[b].scales, _cvtsh_ss(w[b].d),
                            _cvtsh_ss(w[b].dmin), &x[b]);
    return hsum256(acc);
}

static TARGET float dot_q5_k_vnni(const void *wv, const void *xv, int n) {
    const BlockQ5K *w = wv;
    const BlockQ8K *x = xv;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++)
        acc = k4_block_vnni(acc, w[b].qs, w[b].qh, w[b].scales, _cvtsh_ss(w[b].d),
                            _cvtsh_ss(w[b].dmin), &x[b]);
    return hsum256(acc);
}

/* Q6_K: per block d d_x sum_g s_g (sum q x - 32 sum x), q = the 6-bit unsigned levels; the 32
   weights (n, k) (weight 128 n + 32 k + l) are groups 8n + 2k and 8n + 2k + 1, lanes 0-3 and
   4-7 of their products, scaled by a vector of both groups' scales. */
static TARGET float dot_q6_k_vnni(const void *wv, const void *xv, int n) {
    const BlockQ6K *w = wv;
    const BlockQ8K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(15), m2 = _mm256_set1_epi8(0x30);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++) {
        const __m128i sc = _mm_loadu_si128((const __m128i *)w[b].scales);
        /* the offsets: 32 sum_g s_g sum x_g, the sums from Q8_K's bsums */
        const __m256i corr = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc),
                                               _mm256_loadu_si256((const __m256i *)x[b].bsums));
        __m256i isum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(corr, 5));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_and_si256(hb, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int j = 4 * h + k; /* groups 2j, 2j + 1 */
                const __m256i s = _mm256_cvtepi8_epi32(_mm_shuffle_epi8(
                    sc, _mm_set1_epi64x((long long)(0x0101010100000000ull +
                                                    (uint64_t)(2 * j) * 0x0101010101010101ull))));
                const __m256i p = _mm256_dpbusd_epi32(
                    _mm256_setzero_si256(), q[k],
                    _mm256_loadu_si256((const __m256i *)(x[b].qs + 128 * h + 32 * k)));
                isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(p, s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(_cvtsh_ss(w[b].d) * x[b].d),
                              acc);
    }
    return hsum256(acc);
}
#undef HSUM_I32
#define DOT_Q4_0 dot_q4_0_vnni
#define DOT_Q4_K dot_q4_k_vnni
#define DOT_Q5_K dot_q5_k_vnni
#define DOT_Q6_K dot_q6_k_vnni

/* The template's mapping: 32 registers of 16 floats, so tiles of 12 rows x 32 positions. */
#define TILE_Q8 tile_q8_avx512
#define TILE_LV tile_lv_avx512
#define GEMV_Q8P gemv_q8p_avx512
#define GEMV_Q4P gemv_q4p_avx512
#define GEMV_Q5P gemv_q5p_avx512
#define GEMV_Q4KP gemv_q4kp_avx512
#define GEMV_Q6KP gemv_q6kp_avx512
#define TILE_Q8P tile_q8p_avx512
#define TILE_Q4P tile_q4p_avx512
#define TILE_Q5P tile_q5p_avx512
#define TILE_ACT tile_act_avx512
#define TILE_Q4KP tile_q4kp_avx512
#define TILE_Q6KP tile_q6kp_avx512
#define TILE_ACT_K tile_act_k_avx512
#define FN(name) name##_avx512
#define NAME "AVX-512"
#define VF __m512
#define VL 16
#define vzero() _mm512_setzero_ps()
#define vload(p) _mm512_loadu_ps(p)
#define vstore(p, v) _mm512_storeu_ps(p, v)
#define vloadh(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define vstoreh(p, v)                                                                              \
    _mm256_storeu_si256((__m256i *)(p),                                                            \
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
/* BF16: 16 of them zero-extended to 32 bits, shifted into a float's top half */
#define vloadbf(p)                                                                                 \
    _mm512_castsi512_ps(                                                                           \
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define vset1(x) _mm512_set1_ps(x)
#define f16s(h) _cvtsh_ss(h)
#define vfma(a, b, c) _mm512_fmadd_ps(a, b, c)
#define vsum(v) _mm512_reduce_add_ps(v)
#define TR 12
#define AR 6 /* attention: queries per block of its tile products (24 accumulators) */
/* |w| as unsigned bytes times x with w's sign, summed in fours into 8 int32 lanes (VNNI) */
#define Q8_ACC_TYPE __m256
#define Q8_ACC_ZERO() _mm256_setzero_ps()
#define Q8_ACC_SUM(a) hsum256(a)
#define Q8_DOT(acc, wb, xb, scale)                                                                 \
    do {                                                                                           \
        __m256i w_ = _mm256_loadu_si256((const __m256i *)(wb)->qs);                                \
        __m256i x_ = _mm256_loadu_si256((const __m256i *)(xb)->qs);                                \
        __m256i p_ = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w_, w_),         \
                                         _mm256_sign_epi8(x_, w_));                                \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p_), _mm256_set1_ps(scale), acc);                 \
    } while (0)
/* Two blocks at once in 512 bits: |w| times x with w's sign (x negated where w < 0, by mask),
   each half scaled by its own pair of scales; folded to 256 bits at the end. */
#define Q8_ACC2_TYPE __m512
#define Q8_ACC2_ZERO() _mm512_setzero_ps()
#define Q8_ACC2_FOLD(a)                                                                            \
    _mm256_add_ps(_mm512_castps512_ps256(a),                                                       \
                  _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)))
#define Q8_DOT2(acc, wb, xb)                                                                       \
    do {                                                                                           \
        const __m512i w_ = _mm512_inserti64x4(                                                     \
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(wb)[0].qs)),               \
            _mm256_loadu_si256((const __m256i *)(wb)[1].qs), 1);                                   \
        const __m512i x_ = _mm512_inserti64x4(                                                     \
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(xb)[0].qs)),               \
            _mm256_loadu_si256((const __m256i *)(xb)[1].qs), 1);                                   \
        const __m512i sx_ =                                                                        \
            _mm512_mask_sub_epi8(x_, _mm512_movepi8_mask(w_), _mm512_setzero_si512(), x_);         \
        const __m512i p_ = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w_), sx_);  \
        const __m512 s_ = _mm512_castpd_ps(_mm512_insertf64x4(                                     \
            _mm512_castps_pd(_mm512_set1_ps(f16s((wb)[0].d) * f16s((xb)[0].d))),                   \
            _mm256_castps_pd(_mm256_set1_ps(f16s((wb)[1].d) * f16s((xb)[1].d))), 1));              \
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p_), s_, acc);                                    \
    } while (0)
/* signed bytes a * b, 16 or 32 of them, with VNNI: |a| (unsigned) times b with a's sign */
static TARGET inline int i8dot32_avx512(const int8_t *a, const int8_t *b) {
    const __m256i va = _mm256_loadu_si256((const __m256i *)a),
                  vb = _mm256_loadu_si256((const __m256i *)b);
    return hsum256_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(va, va),
                                             _mm256_sign_epi8(vb, va)));
}
static TARGET inline int i8dot16_avx512(const int8_t *a, const int8_t *b) {
    const __m128i va = _mm_loadu_si128((const __m128i *)a),
                  vb = _mm_loadu_si128((const __m128i *)b);
    return hsum128_epi32(
        _mm_dpbusd_epi32(_mm_setzero_si128(), _mm_sign_epi8(va, va), _mm_sign_epi8(vb, va)));
}
#define I8DOT32(a, b) i8dot32_avx512(a, b)
#define I8DOT16(a, b) i8dot16_avx512(a, b)
/* for kernels_x86_dots.h: VNNI, and a mask register's bits as bytes */
#define X86_DPBUSD(acc, u, x) _mm256_dpbusd_epi32(acc, u, x)
#define X86_BITMASK32(h) _mm256_movm_epi8((__mmask32)(h))
#include "kernels_x86_dots.h"

/* Rows of levels for tile_lv (Kernels.lv_row) of the same four types, from the same unpacking in
   registers as their dot products: u = q - off + 128 (IQ4_NL: its signed value + 128), stored 32
   at a time, a = d and b = -m (weight = d (q - off) + m) per block. */
static inline __attribute__((always_inline)) TARGET void lv_row32_avx512(
    uint8_t *restrict u, float *restrict a, float *restrict b, const void *restrict row, int cols,
    const uint32_t type) {
    for (int k = 0; k < cols / QK; k++) {
        float d, m;
        int off;
        const __m256i q = x86_levels32_avx512(row, k, type, &d, &m, &off);
        _mm256_storeu_si256((__m256i *)(u + k * QK),
                            _mm256_add_epi8(q, _mm256_set1_epi8((char)(128 - off))));
        a[k] = d;
        b[k] = -m;
    }
}
static TARGET void lv_q4_1_x86(uint8_t *u, float *a, float *b, const void *row, int cols) {
    lv_row32_avx512(u, a, b, row, cols, GGML_Q4_1);
}
static TARGET void lv_q5_0_x86(uint8_t *u, float *a, float *b, const void *row, int cols) {
    lv_row32_avx512(u, a, b, row, cols, GGML_Q5_0);
}
static TARGET void lv_q5_1_x86(uint8_t *u, float *a, float *b, const void *row, int cols) {
    lv_row32_avx512(u, a, b, row, cols, GGML_Q5_1);
}
static TARGET void lv_iq4_nl_x86(uint8_t *u, float *a, float *b, const void *row, int cols) {
    lv_row32_avx512(u, a, b, row, cols, GGML_IQ4_NL);
}
#define LV_Q4_1 lv_q4_1_x86
#define LV_Q5_0 lv_q5_0_x86
#define LV_Q5_1 lv_q5_1_x86
#define LV_IQ4_NL lv_iq4_nl_x86

/* last: the template takes the DOT_* and LV_* above */
#include "kernels_simd.h"
#endif /* KERNELS_X86 */
