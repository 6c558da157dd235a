/* kernels_quant.c: the quantized weight types (layouts in kernels_quant.h): one unpack per type
 * into the common form weight = a * q - b, and the table that names it; the activation
 * quantizers (Q8_0, Q8_K); the dequantizer and the reference dot product, written once. */
#include <math.h>
#include <string.h>

#include "kernels_iquant.h"
#include "kernels_sets.h"

#pragma STDC FP_CONTRACT OFF /* a * q - b rounded twice, as ggml and the numpy decoder do */

static float half(uint16_t h) { return f16_table[h]; }

/* Groups of 16 in a block of 32 share the block's scale: a and b for both. */
static void set_block32(Levels *out, float a, float b) {
    out->n = QK;
    out->a[0] = out->a[1] = a;
    out->b[0] = out->b[1] = b;
}

/* The legacy 4-bit nibbles: weight j < 16 low nibble of qs[j], weight j + 16 high nibble. */
static void nibbles(int8_t *q, const uint8_t *qs, int offset) {
    for (int j = 0; j < QK / 2; j++) {
        q[j] = (int8_t)((qs[j] & 15) - offset);
        q[j + QK / 2] = (int8_t)((qs[j] >> 4) - offset);
    }
}

/* Bit 4 of weight j is bit j of the little-endian u32 qh. */
static void fifth_bits(int8_t *q, const uint8_t qh[4]) {
    const uint32_t h =
        (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    for (int j = 0; j < QK; j++) q[j] = (int8_t)(q[j] + (int)((h >> j) & 1) * 16);
}

static void unpack_q4_0(const void *block, Levels *out) {
    const BlockQ4_0 *b = block;
    nibbles(out->q, b->qs, 8);
    set_block32(out, half(b->d), 0.0f);
}

/* Q4_1 and Q5_1 add m: a * q - (-m), which is exactly d * q + m. */
static void unpack_q4_1(const void *block, Levels *out) {
    const BlockQ4_1 *b = block;
    nibbles(out->q, b->qs, 0);
    set_block32(out, half(b->d), -half(b->m));
}

static void unpack_q5_0(const void *block, Levels *out) {
    const BlockQ5_0 *b = block;
    nibbles(out->q, b->qs, 0);
    fifth_bits(out->q, b->qh);
    for (int j = 0; j < QK; j++) out->q[j] = (int8_t)(out->q[j] - 16);
    set_block32(out, half(b->d), 0.0f);
}

static void unpack_q5_1(const void *block, Levels *out) {
    const BlockQ5_1 *b = block;
    nibbles(out->q, b->qs, 0);
    fifth_bits(out->q, b->qh);
    set_block32(out, half(b->d), -half(b->m));
}

static void unpack_q8_0(const void *block, Levels *out) {
    const BlockQ8 *b = block;
    memcpy(out->q, b->qs, QK);
    set_block32(out, half(b->d), 0.0f);
}

/* ggml's kvalues_iq4nl */
const int8_t IQ4NL_VALUES[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                 1,    13,   25,  38,  53,  69,  89,  113};

static void unpack_iq4_nl(const void *block, Levels *out) {
    const BlockIQ4NL *b = block;
    for (int j = 0; j < QK / 2; j++) {
        out->q[j] = IQ4NL_VALUES[b->qs[j] & 15];
        out->q[j + QK / 2] = IQ4NL_VALUES[b->qs[j] >> 4];
    }
    set_block32(out, half(b->d), 0.0f);
}

/* Q2_K and Q3_K place their 2 low bits alike: weight i = 128 n + 32 j + l (l < 32) is bits 2j
   of qs[32 n + l]. */
static int two_bits(const uint8_t *qs, int i) {
    const int n = i / 128, j = i % 128 / 32, l = i % 32;
    return (qs[32 * n + l] >> (2 * j)) & 3;
}

static void unpack_q2_k(const void *block, Levels *out) {
    const BlockQ2K *b = block;
    const float d = half(b->d), dmin = half(b->dmin);
    out->n = QK_K;
    for (int i = 0; i < QK_K; i++) out->q[i] = (int8_t)two_bits(b->qs, i);
    for (int g = 0; g < QK_K / 16; g++) {
        out->a[g] = d * (float)(b->scales[g] & 15);
        out->b[g] = dmin * (float)(b->scales[g] >> 4);
    }
}

static void unpack_q3_k(const void *block, Levels *out) {
    const BlockQ3K *b = block;
    const float d = half(b->d);
    out->n = QK_K;
    for (int i = 0; i < QK_K; i++) {
        const int bit = 4 * (i / 128) + i % 128 / 32; /* 4n + j */
        const int high = (b->hmask[i % 32] >> bit) & 1;
        out->q[i] = (int8_t)(two_bits(b->qs, i) - (high ? 0 : 4));
    }
    for (int g = 0; g < QK_K / 16; g++) {
        const int lo = (b->scales[g % 8] >> (4 * (g / 8))) & 15;
        const int hi = (b->scales[8 + g % 4] >> (2 * (g / 4))) & 3;
        out->a[g] = d * (float)((lo | hi << 4) - 32);
        out->b[g] = 0.0f;
    }
}

/* Weight 64 c + 32 h + l of Q4_K/Q5_K is nibble h of qs[32 c + l]. */
static void unpack_k4_common(const uint8_t *qs, const uint8_t scales[12], float d, float dmin,
                             Levels *out) {
    out->n = QK_K;
    for (int i = 0; i < QK_K; i++) {
        const int c = i / 64, h = i % 64 / 32, l = i % 32;
        out->q[i] = (int8_t)((qs[32 * c + l] >> (4 * h)) & 15);
    }
    for (int g = 0; g < QK_K / 32; g++) {
        int sc, m;
        scale_min_k4(scales, g, &sc, &m);
        out->a[2 * g] = out->a[2 * g + 1] = d * (float)sc;
        out->b[2 * g] = out->b[2 * g + 1] = dmin * (float)m;
    }
}

static void unpack_q4_k(const void *block, Levels *out) {
    const BlockQ4K *b = block;
    unpack_k4_common(b->qs, b->scales, half(b->d), half(b->dmin), out);
}

static void unpack_q5_k(const void *block, Levels *out) {
    const BlockQ5K *b = block;
    unpack_k4_common(b->qs, b->scales, half(b->d), half(b->dmin), out);
    for (int i = 0; i < QK_K; i++) {
        const int bit = 2 * (i / 64) + i % 64 / 32; /* 2c + h */
        out->q[i] = (int8_t)(out->q[i] + ((b->qh[i % 32] >> bit) & 1) * 16);
    }
}

static void unpack_q6_k(const void *block, Levels *out) {
    const BlockQ6K *b = block;
    const float d = half(b->d);
    out->n = QK_K;
    for (int i = 0; i < QK_K; i++) {
        const int n = i / 128, k = i % 128 / 32, l = i % 32;
        const int lo = (b->ql[64 * n + 32 * (k % 2) + l] >> (4 * (k / 2))) & 15;
        const int hi = (b->qh[32 * n + l] >> (2 * k)) & 3;
        out->q[i] = (int8_t)((lo | hi << 4) - 32);
    }
    for (int g = 0; g < QK_K / 16; g++) {
        out->a[g] = d * (float)b->scales[g];
        out->b[g] = 0.0f;
    }
}

static void unpack_q8_k(const void *block, Levels *out) {
    const BlockQ8K *b = block;
    out->n = QK_K;
    memcpy(out->q, b->qs, QK_K);
    for (int g = 0; g < QK_K / 16; g++) {
        out->a[g] = b->d;
        out->b[g] = 0.0f;
    }
}

/* ---- activations ------------------------------------------------------------------------ */

/* GGUF's Q8_0 quantizer: per block of 32, d = max|x| / 127, q = round(x * (1 / d)) (to nearest,
   ties to even, as lrintf); a block whose d is 0 as a half gets q = 0 (never a division by zero).
   Decoding quantizes every matrix's input, ~60 times a token, so the loops are written to
   vectorize: the rounding adds and subtracts 1.5 * 2^23 (exact for |x * id| <= 127) instead of
   calling lrintf (measured: 3.7 -> 0.5 us for 768 values). */
void quantize_q8_0(BlockQ8 *out, const float *x, int n) {
    for (int b = 0; b < n / QK8_0; b++) {
        const float *xb = x + (size_t)b * QK8_0;
        float amax = 0.0f;
        /* a NaN never wins a comparison, in any order of them: the same maximum vectorized */
#pragma omp simd reduction(max : amax)
        for (int i = 0; i < QK8_0; i++) {
            const float a = fabsf(xb[i]);
            amax = a > amax ? a : amax;
        }
        const float d = amax / 127.0f;
        out[b].d = f32_to_f16(d);
        /* A scale that rounds to a zero half makes every value 0 whatever q is, so q = 0 too (and
           1 / d, which overflows for the tiniest d, is never taken). */
        const float id = out[b].d & 0x7fff ? 1.0f / d : 0.0f;
        int8_t *q = out[b].qs;
#pragma omp simd
        for (int i = 0; i < QK8_0; i++) {
            float v = (xb[i] * id + 12582912.0f) - 12582912.0f;
            v = v >= -127.0f ? (v <= 127.0f ? v : 127.0f) : -127.0f; /* NaN and inf: no UB */
            q[i] = (int8_t)(int)v;
        }
    }
}

/* llama.cpp's Q8_K quantizer: per block of 256, the value of largest magnitude, max, maps to
   -127 (iscale = -127 / max, d = 1 / iscale, q = round(iscale * x) to nearest even, at most
   127); an all-zero block gets d = 0. Same rounding trick as Q8_0; non-finite values are
   clamped to the range before the conversion, so it is always defined. */
void quantize_q8_k(BlockQ8K *out, const float *x, int n) {
    for (int b = 0; b < n / QK_K; b++) {
        const float *xb = x + (size_t)b * QK_K;
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < QK_K; i++)
            if (fabsf(xb[i]) > amax) {
                amax = fabsf(xb[i]);
                max = xb[i];
            }
        BlockQ8K *o = &out[b];
        const float iscale = amax > 0.0f ? -127.0f / max : 0.0f;
        o->d = amax > 0.0f ? 1.0f / iscale : 0.0f;
#pragma omp simd
        for (int i = 0; i < QK_K; i++) {
            /* a statement of its own: no compiler fuses it with the add (Clang contracts within
               an expression), so its rounding is the one tile_act_k_avx512 repeats */
            const float p = xb[i] * iscale;
            float v = (p + 12582912.0f) - 12582912.0f;
            v = v >= -127.0f ? (v <= 127.0f ? v : 127.0f) : -127.0f;
            o->qs[i] = (int8_t)(int)v;
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int i = 0; i < 16; i++) s += o->qs[16 * g + i];
            o->bsums[g] = (int16_t)s;
        }
    }
}

static void quantize_q8_0_any(void *out, const float *x, int n) { quantize_q8_0(out, x, n); }
static void quantize_q8_k_any(void *out, const float *x, int n) { quantize_q8_k(out, x, n); }

/* ---- the table -------------------------------------------------------------------------- */

static const WeightType TYPES[GGML_TYPE_COUNT] = {
    [GGML_F32] = {GGML_F32, GGML_F32, NULL, NULL},
    [GGML_F16] = {GGML_F16, GGML_F32, NULL, NULL},
    [GGML_Q4_0] = {GGML_Q4_0, GGML_Q8_0, unpack_q4_0, NULL},
    [GGML_Q4_1] = {GGML_Q4_1, GGML_Q8_0, unpack_q4_1, NULL},
    [GGML_Q5_0] = {GGML_Q5_0, GGML_Q8_0, unpack_q5_0, NULL},
    [GGML_Q5_1] = {GGML_Q5_1, GGML_Q8_0, unpack_q5_1, NULL},
    [GGML_Q8_0] = {GGML_Q8_0, GGML_Q8_0, unpack_q8_0, quantize_q8_0_any},
    [GGML_Q2_K] = {GGML_Q2_K, GGML_Q8_K, unpack_q2_k, NULL},
    [GGML_Q3_K] = {GGML_Q3_K, GGML_Q8_K, unpack_q3_k, NULL},
    [GGML_Q4_K] = {GGML_Q4_K, GGML_Q8_K, unpack_q4_k, NULL},
    [GGML_Q5_K] = {GGML_Q5_K, GGML_Q8_K, unpack_q5_k, NULL},
    [GGML_Q6_K] = {GGML_Q6_K, GGML_Q8_K, unpack_q6_k, NULL},
    [GGML_Q8_K] = {GGML_Q8_K, GGML_Q8_K, unpack_q8_k, quantize_q8_k_any},
    [GGML_IQ4_NL] = {GGML_IQ4_NL, GGML_Q8_0, unpack_iq4_nl, NULL},
    [GGML_IQ4_XS] = {GGML_IQ4_XS, GGML_Q8_K, unpack_iq4_xs, NULL},
    [GGML_IQ3_S] = {GGML_IQ3_S, GGML_Q8_K, unpack_iq3_s, NULL},
    [GGML_IQ3_XXS] = {GGML_IQ3_XXS, GGML_Q8_K, unpack_iq3_xxs, NULL},
    [GGML_IQ2_XXS] = {GGML_IQ2_XXS, GGML_Q8_K, unpack_iq2_xxs, NULL},
    [GGML_IQ2_XS] = {GGML_IQ2_XS, GGML_Q8_K, unpack_iq2_xs, NULL},
    [GGML_IQ2_S] = {GGML_IQ2_S, GGML_Q8_K, unpack_iq2_s, NULL},
    [GGML_IQ1_S] = {GGML_IQ1_S, GGML_Q8_K, unpack_iq1_s, NULL},
    [GGML_IQ1_M] = {GGML_IQ1_M, GGML_Q8_K, unpack_iq1_m, NULL},
    [GGML_BF16] = {GGML_BF16, GGML_F32, NULL, NULL},
};

/* The block-less types: floats, and weights widened to floats exactly. */
static int is_float(uint32_t type) {
    return type == GGML_F32 || type == GGML_F16 || type == GGML_BF16;
}

const WeightType *weight_type(uint32_t type) {
    return type < GGML_TYPE_COUNT && (TYPES[type].unpack || is_float(type)) ? &TYPES[type] : NULL;
}

/* ---- written once on top of the unpacks ------------------------------------------------- */

void dequantize(uint32_t type, float *out, const void *w, int n) {
    const WeightType *t = &TYPES[type];
    if (type == GGML_F32) {
        memcpy(out, w, (size_t)n * sizeof(float));
        return;
    }
    if (type == GGML_F16) {
        for (int i = 0; i < n; i++) out[i] = f16_table[((const uint16_t *)w)[i]];
        return;
    }
    if (type == GGML_BF16) {
        for (int i = 0; i < n; i++) out[i] = bf16_to_f32(((const uint16_t *)w)[i]);
        return;
    }
    const int block = (int)ggml_block_size(type);
    const size_t bytes = ggml_row_bytes(type, (uint64_t)block);
    Levels lv;
    for (int b = 0; b < n / block; b++) {
        t->unpack((const uint8_t *)w + (size_t)b * bytes, &lv);
        float *o = out + (size_t)b * block;
        for (int i = 0; i < block; i++) o[i] = lv.a[i / 16] * (float)lv.q[i] - lv.b[i / 16];
    }
}

float dot_ref(uint32_t type, const void *w, const void *x, int n) {
    const WeightType *t = &TYPES[type];
    const int block = (int)ggml_block_size(type);
    const size_t wbytes = ggml_row_bytes(type, (uint64_t)block);
    const size_t xbytes = ggml_row_bytes(t->act, (uint64_t)block);
    Levels lw, lx;
    float sum = 0.0f;
    for (int b = 0; b < n / block; b++) {
        t->unpack((const uint8_t *)w + (size_t)b * wbytes, &lw);
        TYPES[t->act].unpack((const uint8_t *)x + (size_t)b * xbytes, &lx);
        for (int g = 0; g < block / 16; g++) {
            int32_t isum = 0, xsum = 0;
            for (int i = 16 * g; i < 16 * g + 16; i++) {
                isum += lw.q[i] * lx.q[i];
                xsum += lx.q[i];
            }
            sum += lx.a[g] * (lw.a[g] * (float)isum - lw.b[g] * (float)xsum);
        }
    }
    return sum;
}
