/* kernels.c: the matrix products every layer runs, one entry point per operation.
 *
 * matmul() picks the kernel from the weight's type once per call. Each kernel has a plain reference
 * (matmul_ref, a textbook triple loop) that tests compare against. OpenMP splits output rows across
 * threads; without OpenMP the pragmas are ignored and the same code runs on one thread.
 *
 * F16 weights are read in place: each row is widened to floats just before it is used, so the
 * file's 2 bytes per weight are all that is ever stored.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* ---- half precision ---------------------------------------------------------------------- */

/* IEEE 754 binary16 -> binary32, exact for every input (subnormals, infinities, NaN). */
float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {                      /* inf or NaN */
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {                  /* normal: rebias 15 -> 127 */
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {                 /* signed zero */
        bits = sign;
    } else {                                /* subnormal: mant * 2^-24, exactly representable */
        float f = (float)mant * (1.0f / 16777216.0f);
        memcpy(&bits, &f, 4);
        bits |= sign;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u)                /* inf or NaN */
        return sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0);
    if (absx >= 0x477ff000u) return sign | 0x7c00;  /* rounds past 65504: inf */
    if (absx < 0x38800000u) {               /* below the smallest normal half: subnormal or 0 */
        float a;
        memcpy(&a, &absx, 4);
        /* a * 2^24 rounded to nearest even gives the subnormal mantissa directly. */
        return sign | (uint16_t)lrintf(a * 16777216.0f);
    }
    uint32_t mant = absx & 0x7fffff;
    uint32_t exp = (absx >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff;          /* the 13 bits dropped: round to nearest even */
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

/* All 65,536 halves widened once, so the hot loops do a table load instead of bit surgery. */
static float f16_table[1 << 16];

void kernels_init(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) f16_table[i] = f16_to_f32((uint16_t)i);
}

int kernels_supported(uint32_t type) { return type == GGML_F32 || type == GGML_F16; }

/* ---- row access ------------------------------------------------------------------------ */

static const uint8_t *row_ptr(const Tensor *w, int row) {
    return (const uint8_t *)w->data + (size_t)row * w->row_bytes;
}

void tensor_row(float *out, const Tensor *w, int row) {
    const uint8_t *p = row_ptr(w, row);
    if (w->type == GGML_F32) {
        memcpy(out, p, (size_t)w->cols * sizeof(float));
    } else {
        const uint16_t *h = (const uint16_t *)p;
        for (int i = 0; i < w->cols; i++) out[i] = f16_table[h[i]];
    }
}

Tensor tensor_rows(const Tensor *w, int start, int n) {
    Tensor v = *w;
    v.rows = n;
    v.data = row_ptr(w, start);
    return v;
}

/* ---- reference ------------------------------------------------------------------------- */

void matmul_ref(float *out, const float *x, const Tensor *w, int n) {
    for (int t = 0; t < n; t++)
        for (int r = 0; r < w->rows; r++) {
            const uint8_t *p = row_ptr(w, r);
            float sum = 0.0f;
            for (int c = 0; c < w->cols; c++) {
                float wv = w->type == GGML_F32 ? ((const float *)p)[c]
                                               : f16_to_f32(((const uint16_t *)p)[c]);
                sum += wv * x[(size_t)t * w->cols + c];
            }
            out[(size_t)t * w->rows + r] = sum;
        }
}

/* ---- portable kernels ------------------------------------------------------------------ */

static float dot_f32(const float *a, const float *b, int n) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* Rows are the outer loop so each weight row is read from memory once for the whole batch. */
static void matmul_f32(float *out, const float *x, const Tensor *w, int n) {
    const int rows = w->rows, cols = w->cols;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *wr = (const float *)row_ptr(w, r);
        for (int t = 0; t < n; t++) out[(size_t)t * rows + r] = dot_f32(wr, x + (size_t)t * cols, cols);
    }
}

/* F16: widen a block of rows to floats on the stack, then reuse it across the batch. */
#define F16_CHUNK 2048
static void matmul_f16(float *out, const float *x, const Tensor *w, int n) {
    const int rows = w->rows, cols = w->cols;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const uint16_t *wr = (const uint16_t *)row_ptr(w, r);
        float buf[F16_CHUNK];
        float acc[8] = {0};  /* a few partial sums per batch row, flushed below */
        for (int t0 = 0; t0 < n; t0 += 8) {
            int nt = n - t0 < 8 ? n - t0 : 8;
            for (int k = 0; k < nt; k++) acc[k] = 0.0f;
            for (int c0 = 0; c0 < cols; c0 += F16_CHUNK) {
                int m = cols - c0 < F16_CHUNK ? cols - c0 : F16_CHUNK;
                for (int i = 0; i < m; i++) buf[i] = f16_table[wr[c0 + i]];
                for (int k = 0; k < nt; k++)
                    acc[k] += dot_f32(buf, x + (size_t)(t0 + k) * cols + c0, m);
            }
            for (int k = 0; k < nt; k++) out[(size_t)(t0 + k) * rows + r] = acc[k];
        }
    }
}

void matmul(float *out, const float *x, const Tensor *w, int n) {
    switch (w->type) {
    case GGML_F32: matmul_f32(out, x, w, n); break;
    case GGML_F16: matmul_f16(out, x, w, n); break;
    default: abort();  /* model_load refuses every other type */
    }
}
