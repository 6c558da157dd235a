/* test_kernels.c: every optimized kernel against its plain reference, on shapes that are not
 * multiples of any vector width or block size; and the half-precision conversions, exhaustively.
 * Exits non-zero on any failure. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "kernels_iquant.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok)
        passed++;
    else {
        failed++;
        printf("FAIL %s\n", what);
    }
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* Every half converts to the float it denotes and back to itself; NaNs stay NaN. */
static void test_f16_roundtrip(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? !isnan(f) : f32_to_f16(f) != h) bad++;
    }
    check(bad == 0, "f16 -> f32 -> f16 round trip of all 65536 halves");
    /* values of known encodings */
    check(f16_to_f32(0x3c00) == 1.0f && f16_to_f32(0xc000) == -2.0f &&
              f16_to_f32(0x7bff) == 65504.0f && f16_to_f32(0x0001) == ldexpf(1.0f, -24),
          "f16 known values");
    check(f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00 &&         /* tie -> even */
              f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3c02 && /* tie -> even, upward */
              f32_to_f16(65520.0f) == 0x7c00 && f32_to_f16(65519.0f) == 0x7bff,
          "f32 -> f16 rounding to nearest even and overflow");
#ifdef __FLT16_MAX__
    /* the compiler's own conversion, where it has one, is an independent reference */
    int diff = 0;
    for (int i = 0; i < 1000000; i++) {
        float f = ldexpf(frand(), (int)(frand() * 30));
        _Float16 h = (_Float16)f;
        uint16_t bits;
        memcpy(&bits, &h, 2);
        if (bits != f32_to_f16(f)) diff++;
    }
    check(diff == 0, "f32 -> f16 agrees with the compiler's _Float16 on 1e6 values");
#endif
}

/* BF16, the top half of a float: every one of the 65,536 widens to the float with those top bits
   (known encodings, and back to itself but for NaN, which stays NaN); f32_to_bf16 rounds as an
   independent reference in double precision does: 8 significant bits, ties to even (rint), the
   float's subnormals in steps of 2^-133, past the largest BF16 to infinity. */
static void test_bf16(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = bf16_to_f32((uint16_t)h);
        const int is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (is_nan ? !isnan(f) || !isnan(bf16_to_f32(f32_to_bf16(f))) : f32_to_bf16(f) != h) bad++;
    }
    check(bad == 0, "bf16 -> f32 -> bf16 round trip of all 65536 (NaN stays NaN)");
    check(bf16_to_f32(0x3f80) == 1.0f && bf16_to_f32(0xc000) == -2.0f &&
              bf16_to_f32(0x7f7f) == ldexpf(255.0f, 120) &&
              bf16_to_f32(0x0001) == ldexpf(1, -133) && bf16_to_f32(0x7f80) == INFINITY &&
              signbit(bf16_to_f32(0x8000)),
          "bf16 known values");
    int diff = 0;
    for (int i = 0; i < 2000000; i++) {
        float f = ldexpf(frand(), (int)(frand() * 140.0f));
        if (i % 4 == 1) f = ldexpf(1.0f + (float)(i % 256) / 256.0f + ldexpf(1, -8), i % 60 - 30);
        if (i % 4 == 2) { /* the midpoints of random BF16 pairs, exactly, and their neighbours */
            const uint16_t h = (uint16_t)(frand() * 32767.0f + 32768.0f) & 0xff7f;
            const float m = (bf16_to_f32(h) + bf16_to_f32((uint16_t)(h + 1))) / 2;
            f = i % 8 == 2 ? m : nextafterf(m, i % 16 == 6 ? INFINITY : -INFINITY);
        }
        const int e = ilogb(f) > -126 ? ilogb(f) : -126;
        double q = f == 0 ? 0.0 : ldexp(rint(ldexp((double)f, 7 - e)), e - 7);
        if (fabs(q) > FLT_MAX) q = copysign(INFINITY, q);
        const float got = bf16_to_f32(f32_to_bf16(f));
        if (got != (float)q || signbit(got) != signbit(f)) {
            if (diff++ < 3) printf("  %a: f32_to_bf16 %a, reference %a\n", f, got, q);
        }
    }
    check(diff == 0, "f32 -> bf16 rounds to nearest even as a double-precision reference, 2e6");
    check(f32_to_bf16(FLT_MAX) == 0x7f80 && f32_to_bf16(ldexpf(255.5f, 120)) == 0x7f80 &&
              f32_to_bf16(nextafterf(ldexpf(255.5f, 120), 0)) == 0x7f7f,
          "f32 -> bf16 overflow to infinity");
}

/* A set's bf16_to_f32_row widens every BF16 to bf16_to_f32's bits, in rows that leave a tail. */
static void test_bf16_row(const Kernels *k) {
    enum { N = 65536 };
    uint16_t *h = malloc(N * sizeof(uint16_t));
    float *f = malloc(N * sizeof(float));
    for (uint32_t i = 0; i < N; i++) h[i] = (uint16_t)(i * 40503u); /* all, shuffled */
    int bad = 0;
    for (int n0 = 0; n0 < N; n0 += 1001) {
        const int n = N - n0 < 1001 ? N - n0 : 1001;
        k->bf16_to_f32_row(f + n0, h + n0, n);
        for (int i = n0; i < n0 + n; i++) {
            const float r = bf16_to_f32(h[i]);
            bad += memcmp(&f[i], &r, 4) != 0;
        }
    }
    char what[96];
    snprintf(what, sizeof what, "%s: bf16_to_f32_row = bf16_to_f32 on all 65536", k->name);
    check(bad == 0, what);
    free(h);
    free(f);
}

/* The quantized types, with where their half scales lie in a block: random bytes everywhere
   else are valid levels and 6-bit scales. Q8_0, last, also has its own quantizer and tests. */
static const struct {
    uint32_t type;
    int scale_at[2]; /* byte offsets of the block's halves (-1: none) */
} QTYPES[] = {
    {GGML_Q4_0, {offsetof(BlockQ4_0, d), -1}},
    {GGML_Q4_1, {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)}},
    {GGML_Q5_0, {offsetof(BlockQ5_0, d), -1}},
    {GGML_Q5_1, {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)}},
    {GGML_IQ4_NL, {offsetof(BlockIQ4NL, d), -1}},
    {GGML_Q2_K, {offsetof(BlockQ2K, d), offsetof(BlockQ2K, dmin)}},
    {GGML_Q3_K, {offsetof(BlockQ3K, d), -1}},
    {GGML_Q4_K, {offsetof(BlockQ4K, d), offsetof(BlockQ4K, dmin)}},
    {GGML_Q5_K, {offsetof(BlockQ5K, d), offsetof(BlockQ5K, dmin)}},
    {GGML_Q6_K, {offsetof(BlockQ6K, d), -1}},
    {GGML_IQ4_XS, {offsetof(BlockIQ4XS, d), -1}},
    {GGML_IQ3_S, {offsetof(BlockIQ3S, d), -1}},
    {GGML_IQ3_XXS, {offsetof(BlockIQ3XXS, d), -1}},
    {GGML_IQ2_XXS, {offsetof(BlockIQ2XXS, d), -1}},
    {GGML_IQ2_XS, {offsetof(BlockIQ2XS, d), -1}},
    {GGML_IQ2_S, {offsetof(BlockIQ2S, d), -1}},
    {GGML_IQ1_S, {offsetof(BlockIQ1S, d), -1}},
    {GGML_IQ1_M, {-1, -1}}, /* its half in four nibbles: random_blocks */
    {GGML_Q8_0, {offsetof(BlockQ8, d), -1}},
};
#define N_QTYPES (int)(sizeof QTYPES / sizeof QTYPES[0])

/* Random bytes, with each half scale set to a random value of size ~1 / (the type's largest
   level), so that weights are O(1); one block in seven gets zero scales (an all-zero block). */
static void random_blocks(uint32_t type, uint8_t *out, int nblocks) {
    int q = 0;
    while (q < N_QTYPES - 1 && QTYPES[q].type != type) q++;
    const size_t bytes = ggml_row_bytes(type, ggml_block_size(type));
    const float top = ggml_block_size(type) == 32 ? 8.0f : 500.0f; /* K-quants: scale * level */
    for (int b = 0; b < nblocks; b++) {
        uint8_t *blk = out + (size_t)b * bytes;
        for (size_t i = 0; i < bytes; i++) blk[i] = (uint8_t)(frand() * 128.0f + 128.0f);
        for (int k = 0; k < 2 && QTYPES[q].scale_at[k] >= 0; k++) {
            const uint16_t h = b % 7 == 3 ? 0 : f32_to_f16(frand() / top);
            memcpy(blk + QTYPES[q].scale_at[k], &h, 2);
        }
        if (type == GGML_IQ1_M) { /* the top nibbles of its four u16 scales, lowest first */
            const uint16_t h = b % 7 == 3 ? 0 : f32_to_f16(frand() / top);
            for (int k = 0; k < 4; k++) {
                uint8_t *hi = blk + offsetof(BlockIQ1M, scales) + 2 * k + 1;
                *hi = (uint8_t)((*hi & 15) | ((h >> (4 * k)) & 15) << 4);
            }
        }
    }
}

/* Makes a random (rows, cols) tensor of a type and its exact float values. */
static void *make_weights(uint32_t type, int rows, int cols, float *wf, size_t *row_bytes) {
    *row_bytes = ggml_row_bytes(type, (uint64_t)cols);
    uint8_t *data = malloc(*row_bytes * rows);
    float *tmp = malloc((size_t)cols * sizeof(float));
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) tmp[c] = frand();
        if (r == 1 && cols >= 32) memset(tmp, 0, 32 * sizeof(float)); /* an all-zero Q8 block */
        uint8_t *row = data + *row_bytes * r;
        if (type == GGML_F32)
            memcpy(row, tmp, (size_t)cols * sizeof(float));
        else if (type == GGML_F16)
            for (int c = 0; c < cols; c++) ((uint16_t *)row)[c] = f32_to_f16(tmp[c]);
        else if (type == GGML_BF16)
            for (int c = 0; c < cols; c++) ((uint16_t *)row)[c] = f32_to_bf16(tmp[c]);
        else if (type == GGML_Q8_0)
            quantize_q8_0((BlockQ8 *)row, tmp, cols);
        else
            random_blocks(type, row, cols / (int)ggml_block_size(type));
        Tensor one = {type, 1, cols, *row_bytes, row, NULL};
        tensor_row(wf + (size_t)r * cols, &one, 0);
    }
    free(tmp);
    return data;
}

/* matmul with kernel set k vs matmul_ref: |diff| <= 1e-5 * sum |w x| (a bound on float
 * reassociation error). Q8_0 quantizes the activations at every batch size, as matmul_ref does:
 * decoding's dot products, the prompt's integer tiles (AVX-512) or float tiles (other sets). */
static void test_matmul(const Kernels *k, uint32_t type, int rows, int cols, int n) {
    float *wf = malloc((size_t)rows * cols * sizeof(float));
    size_t rb;
    void *wdata = make_weights(type, rows, cols, wf, &rb);
    float *x = malloc((size_t)n * cols * sizeof(float));
    float *out = malloc((size_t)n * rows * sizeof(float)),
          *ref = malloc((size_t)n * rows * sizeof(float));
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = frand();
    Tensor w = {type, rows, cols, rb, wdata, NULL};
    kernels_use(k);
    matmul(out, x, &w, n);
    matmul_ref(ref, x, &w, n);
    int ok = 1;
    for (int t = 0; t < n && ok; t++)
        for (int r = 0; r < rows; r++) {
            double mag = 0.0;
            for (int c = 0; c < cols; c++)
                mag += fabs((double)wf[(size_t)r * cols + c] * x[(size_t)t * cols + c]);
            double o = out[(size_t)t * rows + r], e = ref[(size_t)t * rows + r];
            if (!(fabs(o - e) <= 1e-5 * mag + 1e-30)) {
                printf("  %s %s %dx%d n=%d row %d pos %d: kernel %.9g reference %.9g\n", k->name,
                       ggml_type_name(type), rows, cols, n, r, t, o, e);
                ok = 0;
                break;
            }
        }
    char what[128];
    snprintf(what, sizeof what, "matmul %s %s rows %d cols %d batch %d", k->name,
             ggml_type_name(type), rows, cols, n);
    check(ok, what);
    free(wdata);
    free(wf);
    free(x);
    free(out);
    free(ref);
}

/* matmul_many over weights of different heights and types equals one matmul_ref per weight. */
static void test_matmul_many(const Kernels *k, int n, const uint32_t types[3], int cols) {
    const int rows[3] = {37, 8, 70};
    float *x = malloc((size_t)n * cols * sizeof(float)), *out[3], *ref[3], *wf[3];
    void *data[3];
    Tensor w[3];
    const Tensor *ws[3] = {&w[0], &w[1], &w[2]};
    for (int i = 0; i < n * cols; i++) x[i] = frand();
    for (int j = 0; j < 3; j++) {
        size_t rb;
        wf[j] = malloc((size_t)rows[j] * cols * sizeof(float));
        data[j] = make_weights(types[j], rows[j], cols, wf[j], &rb);
        w[j] = (Tensor){types[j], rows[j], cols, rb, data[j], NULL};
        out[j] = malloc((size_t)n * rows[j] * sizeof(float));
        ref[j] = malloc((size_t)n * rows[j] * sizeof(float));
    }
    kernels_use(k);
    matmul_many(out, x, ws, 3, n);
    int ok = 1;
    for (int j = 0; j < 3; j++) {
        matmul_ref(ref[j], x, &w[j], n);
        for (int t = 0; t < n; t++) /* within float reassociation: 1e-5 sum |w x| */
            for (int r = 0; r < rows[j]; r++) {
                double mag = 0.0;
                for (int c = 0; c < cols; c++)
                    mag += fabs((double)wf[j][(size_t)r * cols + c] * x[(size_t)t * cols + c]);
                const size_t i = (size_t)t * rows[j] + r;
                ok &= fabs((double)out[j][i] - ref[j][i]) <= 1e-5 * mag + 1e-30;
            }
        free(wf[j]);
        free(data[j]);
        free(out[j]);
        free(ref[j]);
    }
    char what[96];
    snprintf(what, sizeof what, "matmul_many %s: %s + %s + %s weights, batch %d", k->name,
             ggml_type_name(types[0]), ggml_type_name(types[1]), ggml_type_name(types[2]), n);
    check(ok, what);
    free(x);
}

/* Q8_0, Q4_0 and Q5_0 repacked (the Q8P layout, kernels.h), on odd row counts (partial groups) and
 * odd block counts: the plain gemv_packed_ref against matmul_ref within float reassociation;
 * the set's gemv_packed, where it has one, bit for bit against gemv_packed_ref; matmul through
 * the packed tensor and through views of it (tensor_rows: on a group boundary they keep the
 * packed rows, elsewhere they read the file's) equal to gemv_packed_ref's rows, when decoding
 * (batches 1 and 3) and in prompts (13 and 29: whole and partial tiles of Q8P_T positions) where
 * the set has tile_packed; where it has not, matmul_ref's within float reassociation. */
static void test_q8p(const Kernels *k, uint32_t type, int rows, int cols) {
    const int nb = cols / QK8_0, qb = Q8P_QB(type), groups = (rows + Q8P_R - 1) / Q8P_R, n = 29;
    float *wf = malloc((size_t)rows * cols * sizeof(float));
    size_t rb;
    void *wdata = make_weights(type, rows, cols, wf, &rb);
    Tensor w = {type, rows, cols, rb, wdata, NULL};
    void (*const kern)(float *, int, const uint8_t *, const BlockQ8 *, const int32_t *,
                       const float *, int) = k->gemv_packed[type];
    uint8_t *packed = aligned_alloc(64, q8p_bytes(&w));
    q8p_pack(packed, &w);
    float *x = malloc((size_t)n * cols * sizeof(float));
    float *ref = malloc((size_t)n * rows * sizeof(float)), *mref = malloc((size_t)n * rows * 4);
    float *out = malloc((size_t)n * rows * sizeof(float)), got[Q8P_R];
    BlockQ8 *xq = malloc((size_t)nb * sizeof(BlockQ8));
    int32_t *xs = malloc((size_t)nb * sizeof(int32_t));
    float *xd = malloc((size_t)nb * sizeof(float));
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = frand();
    int ok_ref = 1, ok_set = 1, ok_mm = 1;
    matmul_ref(mref, x, &w, n);
    double *mag = malloc((size_t)n * rows * sizeof(double)); /* sum |w x|: the error's scale */
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            double m = 0.0;
            for (int c = 0; c < cols; c++)
                m += fabs((double)wf[(size_t)r * cols + c] * x[(size_t)t * cols + c]);
            mag[(size_t)t * rows + r] = m;
        }
    for (int t = 0; t < n; t++) {
        quantize_q8_0(xq, x + (size_t)t * cols, cols);
        q8p_act(xs, xd, xq, nb);
        for (int g = 0; g < groups; g++) {
            const int nr = rows - g * Q8P_R < Q8P_R ? rows - g * Q8P_R : Q8P_R;
            const uint8_t *wg = packed + (size_t)g * Q8P_GROUP_BYTES(nb, qb);
            float *rg = ref + (size_t)t * rows + g * Q8P_R;
            gemv_packed_ref(type, rg, nr, wg, xq, xs, xd, nb);
            if (kern) {
                kern(got, nr, wg, xq, xs, xd, nb);
                ok_set &= memcmp(got, rg, (size_t)nr * sizeof(float)) == 0;
            }
            for (int r = 0; r < nr; r++) {
                const size_t i = (size_t)t * rows + g * Q8P_R + r;
                ok_ref &= fabs((double)rg[r] - mref[i]) <= 1e-5 * mag[i] + 1e-30;
            }
        }
    }
    kernels_use(k);
    w.packed = packed;
    const int batches[] = {1, 3, 13, 29};
    for (int i = 0; i < 4; i++) { /* decoding, one position at a time; prompts, in tiles */
        const int batch = batches[i];
        const int exact = batch < 4 ? kern != NULL : k->tile_packed[type] != NULL;
        matmul(out, x, &w, batch);
        for (size_t j = 0; j < (size_t)batch * rows; j++)
            ok_mm &=
                exact ? out[j] == ref[j] : fabs((double)out[j] - mref[j]) <= 1e-5 * mag[j] + 1e-30;
    }
    for (int start = 0; start<rows; start += rows> 20 ? 13 : 16) { /* views, some aligned */
        const Tensor v = tensor_rows(&w, start, rows - start);
        ok_mm &= (v.packed != NULL) == (start % Q8P_R == 0);
        matmul(out, x, &v, 1);
        if (v.packed && kern)
            ok_mm &= memcmp(out, ref + start, (size_t)(rows - start) * sizeof(float)) == 0;
        matmul(out, x, &v, 13);
        if (v.packed && k->tile_packed[type])
            for (int t = 0; t < 13; t++)
                ok_mm &= memcmp(out + (size_t)t * (rows - start), ref + (size_t)t * rows + start,
                                (size_t)(rows - start) * sizeof(float)) == 0;
    }
    char what[160];
    snprintf(
        what, sizeof what,
        "%s repacked %dx%d: reference vs matmul_ref, %s kernels (%s, %s) and matmul equal to it",
        ggml_type_name(type), rows, cols, k->name, kern ? "decode" : "no decode",
        k->tile_packed[type] ? "prompt" : "no prompt");
    check(ok_ref && ok_set && ok_mm, what);
    free(wf);
    free(wdata);
    free(packed);
    free(x);
    free(ref);
    free(mref);
    free(mag);
    free(out);
    free(xq);
    free(xs);
    free(xd);
}

/* Q4_K and Q6_K repacked (the KP layout, kernels.h), on row counts that leave a partial group
 * and on 1 to 11 super-blocks:
 *   - the set's gemv_packed_k, where it has one, bit for bit against gemv_packed_k_ref;
 *   - gemv_packed_k_ref against the file layout's dot_ref and the set's dot product (what
 *     --no-repack decodes with): the same exact integer sums per super-block, summed in another
 *     order in floats, so within (nb + 4) 2^-22 M, M = sum_i (|a q_i| + |b|) |x_i| over the
 *     weights' Levels and the quantized activations (every float term is at most M, and each
 *     side rounds fewer than 2 (nb + 4) times, by at most 2^-24 of such a term): a wrong group
 *     would be off by ~M / (8 nb); checked on the first 3 positions;
 *   - matmul through the packed tensor, and through views of it (tensor_rows), equal to the
 *     reference's rows (to the set's dot product when the set has no kernel) when decoding
 *     (batches 1 and 3), and in prompts (4, 13, 20 and 29: tiles of 4, 12, 12 + 8 and
 *     12 + 12 + 5 positions) where the set has tile_packed_k: each position's outputs the bits
 *     of gemv_packed_k_ref on that position quantized alone, as decoding quantizes it. */
static void test_kp(const Kernels *k, uint32_t type, int rows, int cols) {
    const int nb = cols / QK_K, groups = (rows + Q8P_R - 1) / Q8P_R, n = 29, n_file = 3;
    const size_t gbytes = packed_group_bytes(type, cols);
    float *wf = malloc((size_t)rows * cols * sizeof(float));
    size_t rb;
    uint8_t *wdata = make_weights(type, rows, cols, wf, &rb);
    Tensor w = {type, rows, cols, rb, wdata, NULL};
    void (*const kern)(float *, int, const uint8_t *, const BlockQ8K *, const int32_t *, int) =
        k->gemv_packed_k[type];
    const int tile = k->tile_packed_k[type] != NULL;
    const DotFn dot = k->dot[type];
    uint8_t *packed = aligned_alloc(64, packed_bytes(&w));
    tensor_pack(packed, &w);
    float *x = malloc((size_t)n * cols * sizeof(float));
    float *ref = malloc((size_t)n * rows * sizeof(float)), *dots = malloc((size_t)n * rows * 4);
    float *out = malloc((size_t)n * rows * sizeof(float)), got[Q8P_R];
    BlockQ8K *xq = malloc((size_t)nb * sizeof(BlockQ8K));
    int32_t *xk = malloc((size_t)nb * KP_XK * sizeof(int32_t));
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = frand() * (i % 5 ? 1.0f : 3.0f);
    int ok_set = 1, ok_file = 1, ok_mm = 1, ok_tile = 1;
    double worst = 0.0;
    for (int t = 0; t < n; t++) {
        quantize_q8_k(xq, x + (size_t)t * cols, cols);
        kp_act(xk, xq, nb);
        for (int g = 0; g < groups; g++) {
            const int nr = rows - g * Q8P_R < Q8P_R ? rows - g * Q8P_R : Q8P_R;
            float *rg = ref + (size_t)t * rows + g * Q8P_R;
            gemv_packed_k_ref(type, rg, nr, packed + (size_t)g * gbytes, xq, xk, nb);
            if (kern) {
                kern(got, nr, packed + (size_t)g * gbytes, xq, xk, nb);
                ok_set &= memcmp(got, rg, (size_t)nr * sizeof(float)) == 0;
            }
        }
        for (int r = 0; r < rows && t < n_file; r++) {
            const uint8_t *row = wdata + (size_t)r * rb;
            double mag = 0.0;
            for (int b = 0; b < nb; b++) {
                Levels lw, lx;
                weight_type(type)->unpack(row + b * ggml_row_bytes(type, QK_K), &lw);
                weight_type(GGML_Q8_K)->unpack(&xq[b], &lx);
                for (int i = 0; i < QK_K; i++)
                    mag += (fabs((double)lw.a[i / 16] * lw.q[i]) + fabs((double)lw.b[i / 16])) *
                           fabs((double)lx.a[i / 16] * lx.q[i]);
            }
            const double bound = (nb + 4) * ldexp(mag, -22) + 1e-30, e = ref[(size_t)t * rows + r];
            const float fd = dot ? dot(row, xq, cols) : dot_ref(type, row, xq, cols);
            dots[(size_t)t * rows + r] = fd;
            const double d1 = fabs(e - dot_ref(type, row, xq, cols)), d2 = fabs(e - fd);
            ok_file &= d1 <= bound && d2 <= bound;
            if ((d1 > d2 ? d1 : d2) / bound > worst) worst = (d1 > d2 ? d1 : d2) / bound;
        }
    }
    kernels_use(k);
    w.packed = packed;
    const float *expect = kern ? ref : dots; /* without a kernel, matmul reads the file */
    for (int batch = 1; batch <= n_file; batch += n_file - 1) {
        matmul(out, x, &w, batch);
        ok_mm &= memcmp(out, expect, (size_t)batch * rows * sizeof(float)) == 0;
    }
    const int prompts[] = {4, 13, 20, 29};
    for (int i = 0; i < 4 && tile; i++) {
        matmul(out, x, &w, prompts[i]);
        ok_tile &= memcmp(out, ref, (size_t)prompts[i] * rows * sizeof(float)) == 0;
    }
    for (int start = 0; start<rows; start += rows> 20 ? 13 : 16) { /* views, some aligned */
        const Tensor v = tensor_rows(&w, start, rows - start);
        const int vr = rows - start;
        ok_mm &= (v.packed != NULL) == (start % Q8P_R == 0);
        matmul(out, x, &v, 1);
        if (v.packed || !kern) ok_mm &= memcmp(out, expect + start, (size_t)vr * 4) == 0;
        matmul(out, x, &v, 13);
        if (v.packed && tile)
            for (int t = 0; t < 13; t++)
                ok_tile &= memcmp(out + (size_t)t * vr, ref + (size_t)t * rows + start,
                                  (size_t)vr * sizeof(float)) == 0;
    }
    char what[200];
    snprintf(what, sizeof what,
             "%s repacked %dx%d: %s kernels (%s, %s) = reference = matmul; reference vs the file "
             "layout's dots within bound (worst %.2f of it)",
             ggml_type_name(type), rows, cols, k->name, kern ? "decode" : "no decode: file layout",
             tile ? "prompt" : "no prompt", worst);
    check(ok_set && ok_file && ok_mm && ok_tile, what);
    free(wf);
    free(wdata);
    free(packed);
    free(x);
    free(ref);
    free(dots);
    free(out);
    free(xq);
    free(xk);
}

/* The set's tile_act_k against the plain kp_tile_act, bit for bit, on super-blocks of random
 * values and of quantize_q8_k's edge cases: all zero, the largest magnitude twice with both
 * signs (the first one sets the sign of the scale), ties of the rounding (the largest value -127
 * makes the scale 1: 2.5 -> 2, -3.5 -> -4), a subnormal largest value (its
 * iscale overflows to infinity), NaNs (one, and a block of NaN but one value), infinities, values
 * near the float range; each written at every position of a tile (x NULL: zeros). */
static void test_tile_act_k(const Kernels *k) {
    if (!k->tile_act_k) return;
    enum { NB = 9 };
    float x[NB * QK_K];
    for (int i = 0; i < NB * QK_K; i++) x[i] = frand() * 3.0f;
    float *b1 = x + QK_K, *b2 = x + 2 * QK_K, *b3 = x + 3 * QK_K, *b4 = x + 4 * QK_K;
    float *b5 = x + 5 * QK_K, *b6 = x + 6 * QK_K, *b7 = x + 7 * QK_K;
    for (int i = 0; i < QK_K; i++) {
        b1[i] = 0.0f;
        b3[i] = i == 9 ? -127.0f : (float)(i % 8) - 3.5f;
        b4[i] = (float)ldexp(frand(), -140);
        b5[i] = i == 17 ? 1.0f : NAN;
        b7[i] = frand() * 3e38f;
    }
    b2[37] = 4.0f, b2[45] = -4.0f, b2[200] = -4.0f; /* |4| the largest: +4 first, in a vector */
    b4[77] = 1e-39f;                                /* the largest, subnormal */
    x[11] = NAN;
    b6[3] = INFINITY, b6[250] = -INFINITY;
    BlockQ8K q1[NB * Q8P_T], q2[NB * Q8P_T];
    int32_t k1[NB * Q8P_T * KP_XK], k2[NB * Q8P_T * KP_XK];
    memset(q1, 1, sizeof q1), memset(q2, 2, sizeof q2);
    for (int t = 0; t < Q8P_T; t++) {
        kp_tile_act(q1, k1, t == 3 ? NULL : x, NB, t);
        k->tile_act_k(q2, k2, t == 3 ? NULL : x, NB, t);
    }
    const BlockQ8K *tie = &q1[3 * Q8P_T], *sign = &q1[2 * Q8P_T];
    char what[96];
    snprintf(what, sizeof what, "tile_act_k %s equals kp_tile_act bit for bit", k->name);
    check(!memcmp(q1, q2, sizeof q1) && !memcmp(k1, k2, sizeof k1) && tie->d == 1.0f &&
              tie->qs[6] == 2 && tie->qs[0] == -4 && sign->qs[37] == -127 && sign->qs[45] == 127 &&
              sign->qs[200] == 127,
          what);
}

/* The set's tile_act against the plain q8p_tile_act, bit for bit, on blocks of random values and
 * of the edge cases of quantize_q8_0: all zero, a scale that rounds to a zero or a subnormal
 * half, ties of the rounding (the largest value 127 makes the scale 1: 2.5 -> 2, -3.5 -> -4), a
 * NaN, infinities, values past the halves' range; each written at every position of a tile
 * (x NULL: zeros). */
static void test_tile_act(const Kernels *k) {
    if (!k->tile_act) return;
    enum { NB = 9 };
    float x[NB * QK8_0];
    for (int i = 0; i < NB * QK8_0; i++) x[i] = frand() * 3.0f;
    for (int i = 0; i < 32; i++) {
        x[32 + i] = 0.0f;                                     /* block 1: zeros */
        x[64 + i] = (float)ldexp(frand(), -30);               /* 2: the half's scale is 0 */
        x[96 + i] = (float)ldexp(frand(), -20);               /* 3: a subnormal half */
        x[128 + i] = i == 5 ? 127.0f : (float)(i % 8) - 3.5f; /* 4: ties */
        x[224 + i] = frand() * 1e30f;                         /* 7: past the halves' range */
    }
    x[160 + 3] = NAN; /* 5: NaNs among ordinary values: one, and the block's last 16 */
    for (int i = 16; i < 32; i++) x[160 + i] = NAN;
    x[192 + 7] = INFINITY; /* 6: infinities */
    x[192 + 9] = -INFINITY;
    int8_t q1[NB * Q8P_T * QK8_0], q2[NB * Q8P_T * QK8_0];
    int32_t s1[NB * Q8P_T], s2[NB * Q8P_T];
    float d1[NB * Q8P_T], d2[NB * Q8P_T];
    memset(q1, 1, sizeof q1), memset(q2, 2, sizeof q2);
    for (int t = 0; t < Q8P_T; t++) {
        q8p_tile_act(q1, s1, d1, t == 3 ? NULL : x, NB, t);
        k->tile_act(q2, s2, d2, t == 3 ? NULL : x, NB, t);
    }
    char what[96];
    snprintf(what, sizeof what, "tile_act %s equals q8p_tile_act bit for bit", k->name);
    check(!memcmp(q1, q2, sizeof q1) && !memcmp(s1, s2, sizeof s1) && !memcmp(d1, d2, sizeof d1) &&
              d1[4 * Q8P_T] == 1.0f && q1[4 * Q8P_T * QK8_0] == -4 &&
              q1[4 * Q8P_T * QK8_0 + 6] == 2,
          what);
}

/* Every type, decoding (batch 1) and a prompt (batch 9), with the types that can be repacked
   (Q8_0, Q4_0, Q5_0, Q4_K, Q6_K) packed and not: 2 threads give the same bits as 1 (each output is
   computed by one thread in a fixed order). 83 rows are fewer row groups than a prompt's
   product splits into runs; 515 are more (runs of unequal sizes). */
static void test_threads(const Kernels *k) {
#ifdef _OPENMP
    const uint32_t types[] = {GGML_F32,  GGML_F16,  GGML_BF16, GGML_Q8_0,
                              GGML_Q4_0, GGML_Q5_0, GGML_Q4_K, GGML_Q6_K};
    const int heights[] = {83, 515}, max_rows = 515, cols = 512, n = 9;
    float *x = malloc((size_t)n * cols * sizeof(float)), *o1 = malloc((size_t)n * max_rows * 4),
          *o2 = malloc((size_t)n * max_rows * 4), *wf = malloc((size_t)max_rows * cols * 4);
    for (int i = 0; i < n * cols; i++) x[i] = frand();
    int ok = 1;
    const int saved = omp_get_max_threads();
    kernels_use(k);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (int pack = 0; pack <= (packed_group_bytes(types[i], cols) > 0); pack++)
            for (int hi = 0; hi < 2; hi++) {
                const int rows = heights[hi];
                size_t rb;
                void *data = make_weights(types[i], rows, cols, wf, &rb);
                Tensor w = {types[i], rows, cols, rb, data, NULL};
                uint8_t *packed = pack ? aligned_alloc(64, packed_bytes(&w)) : NULL;
                if (pack) tensor_pack(packed, &w);
                w.packed = packed;
                for (int batch = 1; batch <= n; batch += n - 1) {
                    omp_set_num_threads(1);
                    matmul(o1, x, &w, batch);
                    omp_set_num_threads(2);
                    matmul(o2, x, &w, batch);
                    ok &= memcmp(o1, o2, (size_t)batch * rows * sizeof(float)) == 0;
                }
                free(packed);
                free(data);
            }
    omp_set_num_threads(saved);
    char what[96];
    snprintf(what, sizeof what, "matmul %s: 1 and 2 threads give the same bits", k->name);
    check(ok, what);
    free(x);
    free(o1);
    free(o2);
    free(wf);
#else
    (void)k;
    printf("  (no OpenMP: the thread-count test is skipped)\n");
#endif
}

/* The reference itself against double-precision sums, so a wrong reference cannot pass. */
static void test_reference(void) {
    int rows = 37, cols = 301, n = 3, ok = 1;
    float *wf = malloc((size_t)rows * cols * sizeof(float)),
          *x = malloc((size_t)n * cols * sizeof(float));
    float *ref = malloc((size_t)n * rows * sizeof(float));
    for (int i = 0; i < rows * cols; i++) wf[i] = frand();
    for (int i = 0; i < n * cols; i++) x[i] = frand();
    Tensor w = {GGML_F32, rows, cols, (size_t)cols * 4, wf, NULL};
    matmul_ref(ref, x, &w, n);
    for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
            double exact = 0.0, mag = 0.0;
            for (int c = 0; c < cols; c++) {
                exact += (double)wf[r * cols + c] * x[t * cols + c];
                mag += fabs((double)wf[r * cols + c] * x[t * cols + c]);
            }
            if (fabs(ref[t * rows + r] - exact) > 1e-5 * mag) ok = 0;
        }
    check(ok, "matmul_ref agrees with double-precision sums");
    free(wf);
    free(x);
    free(ref);
}

/* Q8_0 quantizer: zero blocks give d = 0 and q = 0; elsewhere |x - d q| <= d / 2 plus the F16
   rounding of d (127 * 2^-11 * d at most), and max |q| = 127. */
static void test_quantize(void) {
    float x[96];
    BlockQ8 b[3];
    for (int i = 0; i < 96; i++)
        x[i] = i < 32 ? 0.0f : frand() * (i < 64 ? 0.02f : 50.0f); /* scales stay normal halves */
    quantize_q8_0(b, x, 96);
    int ok = b[0].d == 0;
    for (int i = 0; i < 32; i++) ok &= b[0].qs[i] == 0;
    for (int k = 1; k < 3; k++) {
        float d = f16_to_f32(b[k].d);
        int maxq = 0;
        for (int i = 0; i < 32; i++) {
            ok &= fabsf(x[k * 32 + i] - d * b[k].qs[i]) <= d * (0.5f + 127.0f / 2048.0f);
            if (abs(b[k].qs[i]) > maxq) maxq = abs(b[k].qs[i]);
        }
        ok &= maxq == 127;
    }
    check(ok, "quantize_q8_0: zero block, rounding error, full range");
    /* a block whose scale is below the smallest half (1 / d would overflow a float): all zero;
       non-finite values land on the range's ends (clang's UBSan flags the float-to-int otherwise) */
    for (int i = 0; i < 32; i++) x[i] = 1e-40f * (float)(i - 16);
    for (int i = 32; i < 64; i++) x[i] = i == 40 ? INFINITY : i == 41 ? NAN : 0.5f;
    quantize_q8_0(b, x, 64);
    ok = b[0].d == 0;
    for (int i = 0; i < 32; i++) ok &= b[0].qs[i] == 0;
    for (int i = 0; i < 32; i++) ok &= b[1].qs[i] != -128;
    check(ok, "quantize_q8_0: a scale too small for a half gives zeros; inf and NaN stay in range");
}

/* The larger of a running worst and a new error; NaN counts as infinitely bad. */
static double worse(double worst, double e) { return isnan(e) ? INFINITY : e > worst ? e : worst; }

/* A set's f32_to_f16_row (an F16 KV cache's rounding) gives f32_to_f16's bits for finite floats:
 * every half's own value and the two midpoints around it (ties, to even) and a float either side
 * of each midpoint, both signs; the overflow boundary; floats of random exponents from 2^-30 to
 * 2^20 (subnormal halves, overflow). Lengths that leave a scalar tail. NaN is left out: the
 * hardware keeps a NaN's payload, f32_to_f16 does not. */
static void test_f32_to_f16_row(const Kernels *k) {
    enum { N = 6 * 65536 + 1000003 };
    float *x = malloc(N * sizeof(float));
    uint16_t *h = malloc(N * sizeof(uint16_t));
    int m = 0;
    for (uint32_t b = 0; b < 0x7c00; b++) { /* the finite non-negative halves */
        const float f = f16_to_f32((uint16_t)b), up = f16_to_f32((uint16_t)(b + 1));
        const float mid = f + (up - f) / 2; /* exact: one more bit than a half */
        x[m++] = f;
        x[m++] = -mid;
        x[m++] = mid;
        x[m++] = nextafterf(mid, 0.0f);
        x[m++] = nextafterf(mid, INFINITY);
        x[m++] = -nextafterf(mid, INFINITY);
    }
    const float edges[] = {65504.0f, 65519.99f, 65520.0f, -65520.0f, 1e30f, -0.0f, 0.0f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) x[m++] = edges[i];
    while (m < N) x[m++] = ldexpf(frand(), (int)(frand() * 25.0f) - 5);
    int bad = 0;
    for (int n0 = 0; n0 < N; n0 += 1001) { /* rows of 1001: a tail in every vector width */
        const int n = N - n0 < 1001 ? N - n0 : 1001;
        k->f32_to_f16_row(h + n0, x + n0, n);
        for (int i = n0; i < n0 + n; i++) bad += h[i] != f32_to_f16(x[i]);
    }
    char what[96];
    snprintf(what, sizeof what, "%s: f32_to_f16_row = f32_to_f16 on %d floats (ties, edges)",
             k->name, N);
    if (bad) printf("  %d differ\n", bad);
    check(bad == 0, what);
    free(x);
    free(h);
}

/* A set's attention tile products of each cache type against att_scores_ref / att_pv_ref, for nq
 * queries (rows qstride = hd + 3 apart), head dim hd and nk keys written. Tolerance: two float
 * sums of m terms in different orders differ by at most 2 (m + 1) 2^-24 times the sum of the
 * terms' magnitudes (m = hd for a score, nk + 1 for an output, its old value included). And the
 * F16 kernels on halves give exactly the F32 kernels' bits on those halves widened. */
static void test_att_kernels(const Kernels *k, int nq, int hd, int nk) {
    const int qs = hd + 3, os = hd + 1;
    float *q = malloc((size_t)nq * qs * sizeof(float)), *kt = malloc((size_t)hd * KV_TILE * 4);
    float *v = malloc((size_t)KV_TILE * hd * sizeof(float)), *p = malloc(nq * KV_TILE * 4);
    uint16_t *kth = malloc((size_t)hd * KV_TILE * 2), *vh = malloc((size_t)KV_TILE * hd * 2);
    float *s = malloc(nq * KV_TILE * 4), *sr = malloc(nq * KV_TILE * 4),
          *s16 = malloc(nq * KV_TILE * 4);
    float *o0 = malloc((size_t)nq * os * 4), *o = malloc((size_t)nq * os * 4),
          *orf = malloc((size_t)nq * os * 4), *o16 = malloc((size_t)nq * os * 4);
    for (int i = 0; i < nq * qs; i++) q[i] = 2.0f * frand();
    for (int i = 0; i < hd * KV_TILE; i++) kt[i] = f16_to_f32(kth[i] = f32_to_f16(3.0f * frand()));
    for (int i = 0; i < KV_TILE * hd; i++) v[i] = f16_to_f32(vh[i] = f32_to_f16(frand()));
    for (int i = 0; i < nq * KV_TILE; i++) p[i] = 0.5f + 0.5f * frand();
    for (int i = 0; i < nq * os; i++) o0[i] = frand();
    double worst = 0.0;
    int exact = 1;
    for (int t = 0; t < KV_TYPES; t++) {
        const void *keys = t == KV_F16 ? (const void *)kth : kt,
                   *vals = t == KV_F16 ? (const void *)vh : v;
        k->att_scores[t](s, q, qs, nq, keys, hd);
        att_scores_ref((KvType)t, sr, q, qs, nq, keys, hd);
        memcpy(o, o0, (size_t)nq * os * 4);
        memcpy(orf, o0, (size_t)nq * os * 4);
        k->att_pv[t](o, os, p, nq, vals, nk, hd);
        att_pv_ref((KvType)t, orf, os, p, nq, vals, nk, hd);
        for (int r = 0; r < nq; r++) {
            for (int j = 0; j < KV_TILE; j++) {
                double mag = 0.0;
                for (int i = 0; i < hd; i++)
                    mag += fabs((double)q[r * qs + i] * kt[i * KV_TILE + j]);
                const double tol = 2.0 * (hd + 1) * ldexp(1.0, -24) * mag + 1e-30;
                worst = worse(worst, fabs((double)s[r * KV_TILE + j] - sr[r * KV_TILE + j]) / tol);
            }
            for (int d = 0; d < hd; d++) {
                double mag = fabs(o0[r * os + d]);
                for (int j = 0; j < nk; j++)
                    mag += fabs((double)p[r * KV_TILE + j] * v[j * hd + d]);
                const double tol = 2.0 * (nk + 2) * ldexp(1.0, -24) * mag + 1e-30;
                worst = worse(worst, fabs((double)o[r * os + d] - orf[r * os + d]) / tol);
            }
            exact &= o[r * os + hd] == o0[r * os + hd]; /* past the head's dims: untouched */
        }
        if (t == KV_F32) { /* kept for the F16 run to equal */
            memcpy(s16, s, nq * KV_TILE * 4);
            memcpy(o16, o, (size_t)nq * os * 4);
        } else {
            exact &=
                memcmp(s16, s, nq * KV_TILE * 4) == 0 && memcmp(o16, o, (size_t)nq * os * 4) == 0;
        }
    }
    char what[160];
    snprintf(what, sizeof what,
             "%s: att_scores, att_pv (f32, f16) vs their references, %d queries, head dim %d, "
             "%d keys; f16 = f32 on the same values",
             k->name, nq, hd, nk);
    if (!(worst <= 1.0 && exact))
        printf("  worst error / tolerance %.3g, f16 = f32: %d\n", worst, exact);
    check(worst <= 1.0 && exact, what);
    free(q);
    free(kt);
    free(v);
    free(p);
    free(kth);
    free(vh);
    free(s);
    free(sr);
    free(s16);
    free(o0);
    free(o);
    free(orf);
    free(o16);
}

/* How an attention case draws its inputs: q = q_offset + q_scale * U(-1, 1),
 * k = k_offset + U(-1, 1), v = U(-1, 1). */
typedef struct {
    float q_offset, q_scale, k_offset;
    const char *what;
} AttDraw;

/* The test's own statement of attention, in double precision, for one query qh (hd) of KV head
 * kvh against keys lo .. p of k and v (rows of kvd floats, as drawn): the scores
 * s_j = q . k_j / sqrt(hd), their softmax in P[lo .. p] (after subtracting max s, as double's
 * exp overflows too), and out (hd) = sum_j P_j v_j. Returns max_j sum_i |q_i k_ji| / sqrt(hd). */
static double attention_double(double *P, double *out, const float *qh, const float *k,
                               const float *v, int kvd, int kvh, int hd, int lo, int p) {
    const double scale = 1.0 / sqrt((double)hd);
    double max = -INFINITY, mag = 0.0, sum = 0.0;
    for (int j = lo; j <= p; j++) {
        const float *kj = k + (size_t)j * kvd + (size_t)kvh * hd;
        double dot = 0.0, m = 0.0;
        for (int i = 0; i < hd; i++) {
            dot += (double)qh[i] * kj[i];
            m += fabs((double)qh[i] * kj[i]);
        }
        P[j] = dot * scale;
        max = P[j] > max ? P[j] : max;
        mag = m * scale > mag ? m * scale : mag;
    }
    for (int j = lo; j <= p; j++) sum += P[j] = exp(P[j] - max);
    for (int i = 0; i < hd; i++) out[i] = 0.0;
    for (int j = lo; j <= p; j++) {
        P[j] /= sum;
        for (int i = 0; i < hd; i++) out[i] += P[j] * v[(size_t)j * kvd + (size_t)kvh * hd + i];
    }
    return mag;
}

/* Element i of a cache of type t, read here without the library's readers. */
static float cache_elt(const void *c, KvType t, size_t i) {
    return t == KV_F16 ? f16_to_f32(((const uint16_t *)c)[i]) : ((const float *)c)[i];
}

/* Both attention() (tiled, online softmax, the active set's tile products) and attention_ref()
 * against the test's own statement in double precision (attention_double), from the keys and
 * values as drawn, not read back from the cache, over the visible keys of each query.
 * Tolerance: a float dot product of hd terms is within (hd + 2) 2^-24 sum_i |q_i k_ji| of the
 * exact one (scale included), so every score is within d of it, d the largest such bound of the
 * row; softmax moves by at most 2d in sum |dP|, so out, a mix of rows of v with |v| <= 1, by 2d;
 * 1e-5 more for exp_fast and the sums over keys. attention_ref's probabilities are held to P
 * (within 2d + 1e-6) and are exactly 0 outside the visible keys.
 * The cache is filled by kv_store() in two calls (the earlier positions, then the queries' own),
 * as layer 1 of a 3-layer cache, and read back against the layout kernels.h gives; the rest of
 * its last tile is never written (malloc), as in a cache not yet filled.
 * An F16 cache (type KV_F16) gets keys and values drawn as above and rounded to halves, so that
 * the same bounds hold, and must give the bits an F32 cache of those values gives, in attention()
 * and attention_ref() (probabilities included): widening a half is exact and the products are
 * the same in the same order. */
static void test_attention(const int shape[6], const AttDraw *dr, KvType type) {
    const int n_heads = shape[0], n_kv = shape[1], hd = shape[2], n = shape[3], pos0 = shape[4];
    const int window = shape[5], len = pos0 + n, qd = n_heads * hd, kvd = n_kv * hd, layers = 3;
    const int pstride = len + 3; /* probability rows a little longer than the keys */
    const size_t tile = (size_t)kvd * KV_TILE, cache = kv_tiles(len) * layers * tile;
    const AttnShape a = {n_heads, n_kv, hd, window, layers * tile, type};
    const size_t eb = kv_types[type].bytes;
    float *q = malloc((size_t)n * qd * sizeof(float)),
          *k = malloc((size_t)len * kvd * sizeof(float));
    float *v = malloc((size_t)len * kvd * sizeof(float));
    char *key_cache = malloc(cache * eb), *value_cache = malloc(cache * eb);
    char *kc = key_cache + tile * eb, *vc = value_cache + tile * eb; /* layer 1 */
    float *out = malloc((size_t)n * qd * sizeof(float)),
          *ref = malloc((size_t)n * qd * sizeof(float));
    float *probs = malloc((size_t)n * n_heads * pstride * sizeof(float));
    double *P = malloc((size_t)len * sizeof(double)), *o = malloc((size_t)hd * sizeof(double));
    for (int i = 0; i < n * qd; i++) q[i] = dr->q_offset + dr->q_scale * frand();
    for (int i = 0; i < len * kvd; i++) {
        k[i] = dr->k_offset + frand();
        v[i] = frand();
        if (type == KV_F16) {
            k[i] = f16_to_f32(f32_to_f16(k[i]));
            v[i] = f16_to_f32(f32_to_f16(v[i]));
        }
    }
    kv_store(kc, vc, k, v, pos0, 0, &a);
    kv_store(kc, vc, k + (size_t)pos0 * kvd, v + (size_t)pos0 * kvd, n, pos0, &a);
    int layout_ok = 1; /* and kv_key, kv_value read the same back */
    float *vrow = malloc((size_t)hd * sizeof(float));
    for (int j = 0; j < len; j++)
        for (int h = 0; h < n_kv; h++) {
            kv_value(vrow, vc, &a, h, j);
            for (int i = 0; i < hd; i++) {
                const size_t t = (size_t)(j / KV_TILE) * a.tile_stride, jt = j % KV_TILE;
                const float kj = k[(size_t)j * kvd + h * hd + i],
                            vj = v[(size_t)j * kvd + h * hd + i];
                layout_ok &= cache_elt(kc, type, t + ((size_t)h * hd + i) * KV_TILE + jt) == kj &&
                             cache_elt(vc, type, t + ((size_t)h * KV_TILE + jt) * hd + i) == vj &&
                             kv_key(kc, &a, h, j, i) == kj && vrow[i] == vj;
            }
        }
    free(vrow);
    attention(out, q, kc, vc, n, pos0, &a);
    int same_bits = 1; /* 2 threads give the bits of 1, though a task may hold more heads with 1 */
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(saved == 1 ? 2 : 1);
    attention(ref, q, kc, vc, n, pos0, &a);
    omp_set_num_threads(saved);
    same_bits = memcmp(ref, out, (size_t)n * qd * sizeof(float)) == 0;
#endif
    attention_ref(ref, probs, pstride, q, kc, vc, n, pos0, &a);
    int as_f32 = 1; /* F16: the bits of an F32 cache holding the same values */
    if (type == KV_F16) {
        const AttnShape a32 = {n_heads, n_kv, hd, window, layers * tile, KV_F32};
        float *kc32 = malloc(cache * sizeof(float)), *vc32 = malloc(cache * sizeof(float));
        float *out32 = malloc((size_t)n * qd * sizeof(float)),
              *ref32 = malloc((size_t)n * qd * sizeof(float));
        float *probs32 = malloc((size_t)n * n_heads * pstride * sizeof(float));
        kv_store(kc32 + tile, vc32 + tile, k, v, len, 0, &a32);
        attention(out32, q, kc32 + tile, vc32 + tile, n, pos0, &a32);
        attention_ref(ref32, probs32, pstride, q, kc32 + tile, vc32 + tile, n, pos0, &a32);
        as_f32 = memcmp(out, out32, (size_t)n * qd * sizeof(float)) == 0 &&
                 memcmp(ref, ref32, (size_t)n * qd * sizeof(float)) == 0 &&
                 memcmp(probs, probs32, (size_t)n * n_heads * pstride * sizeof(float)) == 0;
        free(kc32);
        free(vc32);
        free(out32);
        free(ref32);
        free(probs32);
    }
    double worst_out = 0.0, worst_ref = 0.0, worst_p = 0.0; /* |error| / tolerance */
    int masked_ok = 1;
    for (int t = 0; t < n; t++)
        for (int h = 0; h < n_heads; h++) {
            const int p = pos0 + t, lo = attn_first_visible(p, window), kvh = h / (n_heads / n_kv);
            const double mag = attention_double(P, o, q + ((size_t)t * n_heads + h) * hd, k, v, kvd,
                                                kvh, hd, lo, p);
            const double d = (hd + 2) * ldexp(1.0, -24) * mag, tol = 2 * d + 1e-5; /* see above */
            const size_t row = ((size_t)t * n_heads + h) * hd;
            for (int i = 0; i < hd; i++) {
                worst_out = worse(worst_out, fabs(out[row + i] - o[i]) / tol);
                worst_ref = worse(worst_ref, fabs(ref[row + i] - o[i]) / tol);
            }
            const float *pr = probs + ((size_t)t * n_heads + h) * pstride;
            for (int j = 0; j < pstride; j++) {
                if (j < lo || j > p) {
                    masked_ok &= pr[j] == 0.0f;
                    continue;
                }
                worst_p = worse(worst_p, fabs(pr[j] - P[j]) / (2 * d + 1e-6));
            }
        }
    char what[160];
    snprintf(what, sizeof what,
             "attention heads %d/%d dim %d, %d queries from %d, window %d, %s, %s cache", n_heads,
             n_kv, hd, n, pos0, window, dr->what, kv_types[type].name);
    if (!(worst_out <= 1.0 && worst_ref <= 1.0 && worst_p <= 1.0))
        printf("  %s: worst error / tolerance: attention %.3g, attention_ref %.3g, its "
               "probabilities %.3g\n",
               what, worst_out, worst_ref, worst_p);
    if (!same_bits) printf("  %s: 1 and 2 threads differ\n", what);
    if (!as_f32) printf("  %s: differs from an F32 cache of the same values\n", what);
    if (!layout_ok) printf("  %s: the cache's layout or kv_key/kv_value differ\n", what);
    check(layout_ok && masked_ok && same_bits && as_f32 && worst_out <= 1.0 && worst_ref <= 1.0 &&
              worst_p <= 1.0,
          what);
    free(q);
    free(k);
    free(v);
    free(key_cache);
    free(value_cache);
    free(out);
    free(ref);
    free(probs);
    free(P);
    free(o);
}

/* exp_fast against libm's exp in double, over the whole range where e^x is a normal float. */
static void test_exp_fast(void) {
    double worst = 0.0;
    for (float x = -87.0f; x < 88.0f; x += 0.00137f) {
        double e = exp((double)x), rel = fabs(exp_fast(x) - e) / e;
        if (rel > worst) worst = rel;
    }
    check(worst <= 1.5e-7 && isnan(exp_fast(NAN)) && exp_fast(-INFINITY) < 1e-37f &&
              isfinite(exp_fast(1000.0f)) && exp_fast(0.0f) == 1.0f,
          "exp_fast within 1.5e-7 of exp");
}

/* Every set's dot product for each quantized type (its own, or the reference where it has none)
 * against dot_ref on the same quantized activations: |diff| <= 1e-5 sum |w x| (float
 * reassociation of exact integer sums). And the bound the activations' quantization gives:
 * dot_ref differs from the float product of the weights with the unquantized x by at most
 *   sum over activation blocks b of (sum_{i in b} |w_i|) * e_b,
 * e_b the largest error of one quantized activation of the block: Q8_0 rounds to a step of
 * d = amax_b / 127, then stores d as a half (relative error 2^-11, on levels up to 127), so
 * e_b = amax_b / 127 * (1/2 + 127 / 2048); Q8_K keeps d in float: e_b = amax_b / 127 * (1/2 +
 * 1e-6). Plus 1e-5 sum |w x| of float rounding. */
static void test_dots(const Kernels *k, uint32_t type, int nblocks) {
    const int block = (int)ggml_block_size(type), n = nblocks * block;
    const uint32_t act = weight_type(type)->act;
    uint8_t *w = malloc(ggml_row_bytes(type, n));
    void *xq = malloc(ggml_row_bytes(act, n));
    float *x = malloc(n * sizeof(float)), *wf = malloc(n * sizeof(float));
    int ok = 1;
    for (int trial = 0; trial < 20 && ok; trial++) {
        random_blocks(type, w, nblocks);
        for (int i = 0; i < n; i++) x[i] = frand() * (trial % 3 ? 1.0f : 1e-3f);
        if (trial == 1) memset(x, 0, block * sizeof(float)); /* an all-zero activation block */
        weight_type(act)->quantize(xq, x, n);
        dequantize(type, wf, w, n);
        const float ref = dot_ref(type, w, xq, n);
        const float got = k->dot[type] ? k->dot[type](w, xq, n) : ref;
        double exact = 0.0, mag = 0.0, bound = 0.0;
        const int ablock = (int)ggml_block_size(act);
        const double e_rel = act == GGML_Q8_0 ? 0.5 + 127.0 / 2048.0 : 0.5 + 1e-6;
        for (int b = 0; b < n / ablock; b++) {
            double wsum = 0.0, amax = 0.0;
            for (int i = b * ablock; i < (b + 1) * ablock; i++) {
                exact += (double)wf[i] * x[i];
                mag += fabs((double)wf[i] * x[i]);
                wsum += fabs(wf[i]);
                amax = fmax(amax, fabs(x[i]));
            }
            bound += wsum * amax / 127.0 * e_rel;
        }
        if (!(fabs(got - ref) <= 1e-5 * mag + 1e-30) ||
            !(fabs(ref - exact) <= bound + 1e-5 * mag + 1e-30)) {
            printf("  %s %s %d blocks: kernel %.9g reference %.9g float product %.9g (bound "
                   "%.3g)\n",
                   k->name, ggml_type_name(type), nblocks, got, ref, exact, bound);
            ok = 0;
        }
    }
    char what[128];
    snprintf(what, sizeof what,
             "dot %s %s (%s) %d blocks: vs dot_ref, and dot_ref within the "
             "activation bound",
             k->name, ggml_type_name(type), k->dot[type] ? "own" : "reference", nblocks);
    check(ok, what);
    free(w);
    free(xq);
    free(x);
    free(wf);
}

/* The keys of a tile's positions not written yet are read by attention (its scores cover whole
   tiles, then masked): kv_store() zeroes a tile's keys when it writes the tile's first position,
   so that they are 0, never whatever the memory held (here NaN), whether written by a prompt
   or one decoded position at a time. */
static void test_kv_unwritten(KvType type) {
    const int n_kv = 2, hd = 8, kvd = n_kv * hd, layers = 2, len = 70;
    const size_t tile = (size_t)kvd * KV_TILE, cache = 2 * layers * tile, eb = kv_types[type].bytes;
    const AttnShape a = {n_kv, n_kv, hd, 0, layers * tile, type};
    char *kc = malloc(cache * eb), *vc = malloc(cache * eb);
    float *k = malloc((size_t)len * kvd * sizeof(float)), *v = malloc((size_t)len * kvd * 4);
    memset(kc, 0xff, cache * eb); /* NaN, as float and as half */
    memset(vc, 0xff, cache * eb);
    for (int i = 0; i < len * kvd; i++) k[i] = v[i] = (float)(i % 7) - 3.0f;
    kv_store(kc + tile * eb, vc + tile * eb, k, v, 10, 0, &a); /* layer 1: a prompt of 10 */
    for (int p = 10; p < len; p++) /* then one position at a time, into the second tile */
        kv_store(kc + tile * eb, vc + tile * eb, k + (size_t)p * kvd, v + (size_t)p * kvd, 1, p,
                 &a);
    int written = 1, zero = 1;
    for (int h = 0; h < n_kv; h++)
        for (int i = 0; i < hd; i++) {
            for (int j = 0; j < len; j++)
                written &= kv_key(kc + tile * eb, &a, h, j, i) == k[(size_t)j * kvd + h * hd + i];
            for (int j = len; j < 2 * KV_TILE; j++)
                zero &= kv_key(kc + tile * eb, &a, h, j, i) == 0;
        }
    char what[128];
    snprintf(what, sizeof what, "kv_store %s: keys written, the rest of the last tile 0",
             kv_types[type].name);
    check(written && zero, what);
    free(kc);
    free(vc);
    free(k);
    free(v);
}

int main(void) {
    kernels_init();
    test_kv_unwritten(KV_F32);
    test_kv_unwritten(KV_F16);
    test_f16_roundtrip();
    test_bf16();
    test_reference();
    test_quantize();
    test_exp_fast();
    const Kernels *sets[4];
    int n_sets = kernels_available(sets, 4);
    /* shapes not multiples of any vector width or tile (Q8_0 needs cols % 32 == 0) */
    const int shapes[][3] = {{1, 1, 1},      {7, 3, 1},     {33, 17, 2},   {64, 64, 1},
                             {129, 95, 5},   {256, 257, 9}, {31, 4099, 3}, {5, 2047, 17},
                             {300, 768, 64}, {13, 1030, 7}};
    const int q8_shapes[][3] = {{1, 32, 1},   {7, 64, 1},     {33, 96, 2},    {129, 2048, 1},
                                {30, 160, 5}, {64, 1056, 13}, {300, 768, 64}, {5, 4096, 3}};
    for (int s = 0; s < n_sets; s++) {
        printf("kernel set: %s\n", sets[s]->name);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            for (int t = 0; t < 3; t++) {
                const uint32_t floats[3] = {GGML_F32, GGML_F16, GGML_BF16};
                test_matmul(sets[s], floats[t], shapes[i][0], shapes[i][1], shapes[i][2]);
            }
        for (size_t i = 0; i < sizeof q8_shapes / sizeof q8_shapes[0]; i++)
            test_matmul(sets[s], GGML_Q8_0, q8_shapes[i][0], q8_shapes[i][1], q8_shapes[i][2]);
        /* one batch, weights of several types: activations in every format at once */
        const uint32_t mix1[3] = {GGML_F32, GGML_Q8_0, GGML_F16},
                       mix2[3] = {GGML_Q4_K, GGML_IQ4_NL, GGML_Q6_K},
                       mix3[3] = {GGML_BF16, GGML_Q4_K, GGML_F16};
        for (int n = 1; n <= 41; n += n < 11 ? 10 : 30) {
            test_matmul_many(sets[s], n, mix1, 96);
            test_matmul_many(sets[s], n, mix2, 512);
            test_matmul_many(sets[s], n, mix3, 256);
        }
        /* the other quantized types: odd row counts and batches, rows of 1..17 blocks */
        for (int q = 0; q < N_QTYPES - 1; q++) { /* all but Q8_0 */
            const int b = (int)ggml_block_size(QTYPES[q].type);
            /* and prompts of more than one block of tile_lv's 32 positions, odd row counts */
            const int qshapes[][3] = {{1, b, 1},       {7, 3 * b, 1},   {33, 5 * b, 2},
                                      {13, 17 * b, 7}, {30, 2 * b, 5},  {37, 7 * b, 45},
                                      {5, b, 33},      {18, 3 * b, 64}, {3, 9 * b, 4}};
            for (size_t i = 0; i < sizeof qshapes / sizeof qshapes[0]; i++)
                test_matmul(sets[s], QTYPES[q].type, qshapes[i][0], qshapes[i][1], qshapes[i][2]);
            for (int nb = 1; nb <= 9; nb += 4) test_dots(sets[s], QTYPES[q].type, nb);
        }
        test_dots(sets[s], GGML_Q8_0, 5);
        const int q8p_shapes[][2] = {{1, 32},    {7, 96},     {16, 64},  {33, 160},
                                     {129, 768}, {300, 1056}, {48, 2048}};
        for (size_t i = 0; i < sizeof q8p_shapes / sizeof q8p_shapes[0]; i++)
            for (int t = 0; t < 3; t++) {
                const uint32_t types[] = {GGML_Q8_0, GGML_Q4_0, GGML_Q5_0};
                test_q8p(sets[s], types[t], q8p_shapes[i][0], q8p_shapes[i][1]);
            }
        const int kp_shapes[][2] = {{1, 256},    {7, 512},   {16, 256}, {33, 768},
                                    {129, 1024}, {45, 2816}, {300, 768}};
        for (size_t i = 0; i < sizeof kp_shapes / sizeof kp_shapes[0]; i++)
            for (int t = 0; t < 2; t++)
                test_kp(sets[s], t ? GGML_Q6_K : GGML_Q4_K, kp_shapes[i][0], kp_shapes[i][1]);
        test_threads(sets[s]);
        test_f32_to_f16_row(sets[s]);
        test_bf16_row(sets[s]);
        /* queries (AR = 6 and TR / 3 blocks, single rows), head dims and written keys that are
           not multiples of any vector */
        const int att_k[][3] = {{1, 64, 64},  {1, 5, 1},   {7, 17, 37}, {24, 64, 64},
                                {13, 48, 63}, {6, 260, 2}, {2, 3, 64}};
        for (size_t i = 0; i < sizeof att_k / sizeof att_k[0]; i++)
            test_att_kernels(sets[s], att_k[i][0], att_k[i][1], att_k[i][2]);
        test_tile_act(sets[s]);
        test_tile_act_k(sets[s]);
    }
    /* attention shapes: heads, KV heads, head dim, queries, first position, window. The cache's
       tiles hold KV_TILE = 64 keys: single queries at and around the tile boundaries, prompts
       whose keys span two and three tiles, windows that start on, before and after a boundary;
       the last 64-position batch of a 1024-token prompt at 110M's shape (a long sequence: 12 x 3
       tasks of 16 tiles each, split between 2 threads) */
    const int att[][6] = {{8, 2, 8, 1, 0, 0},      {8, 2, 8, 37, 0, 0},     {4, 4, 64, 130, 0, 0},
                          {12, 1, 16, 5, 100, 0},  {8, 2, 8, 70, 3, 7},     {6, 3, 32, 1, 200, 64},
                          {2, 1, 5, 17, 64, 16},   {4, 2, 16, 200, 0, 65},  {2, 1, 260, 20, 5, 0},
                          {4, 2, 16, 1, 63, 0},    {4, 2, 16, 1, 64, 0},    {4, 2, 16, 1, 65, 0},
                          {4, 2, 16, 1, 127, 0},   {4, 2, 16, 1, 128, 0},   {4, 2, 16, 1, 129, 0},
                          {2, 1, 64, 1, 192, 0},   {4, 2, 16, 1, 128, 64},  {4, 2, 16, 1, 128, 65},
                          {4, 2, 16, 1, 127, 64},  {4, 2, 16, 1, 126, 64},  {4, 2, 16, 1, 64, 1},
                          {4, 2, 16, 1, 191, 2},   {4, 2, 16, 10, 60, 0},   {4, 2, 16, 2, 127, 0},
                          {4, 2, 16, 66, 63, 0},   {4, 2, 16, 129, 0, 0},   {4, 2, 16, 60, 100, 0},
                          {4, 2, 16, 33, 64, 0},   {4, 2, 16, 20, 120, 10}, {4, 2, 16, 100, 50, 64},
                          {2, 2, 64, 40, 100, 30}, {12, 12, 64, 64, 960, 0}};
    /* ordinary scores; scores of a few hundred, where e^s overflows a float (the softmax must
       subtract the maximum); and +-100 sum_i q_i / sqrt(hd) (q_i >= 1: at least 100 sqrt(hd),
       220 at head dim 5) added to every score of a query, which changes nothing but the size of
       the exponents */
    const AttDraw draws[] = {{0.0f, 3.0f, 0.0f, "ordinary scores"},
                             {0.0f, 300.0f, 0.0f, "large scores"},
                             {2.0f, 1.0f, 100.0f, "large common offset"},
                             {2.0f, 1.0f, -100.0f, "large negative common offset"}};
    for (int s = 0; s < n_sets; s++) { /* the tiled attention with each set's tile products */
        kernels_use(sets[s]);
        printf("attention with kernel set: %s\n", sets[s]->name);
        for (size_t i = 0; i < sizeof att / sizeof att[0]; i++)
            for (size_t d = 0; d < sizeof draws / sizeof draws[0]; d++) {
                test_attention(att[i], &draws[d], KV_F32);
                if (d % 2 == 0) /* F16: ordinary scores and a large common offset */
                    test_attention(att[i], &draws[d], KV_F16);
            }
    }
    kernels_use(sets[0]);
    printf("test_kernels: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
