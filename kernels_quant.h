/* kernels_quant.h: GGUF's quantized weight types, as ggml lays out their blocks (ggml-org/ggml
 * docs/gguf.md and ggml's sources), read in place from the mmap (kernels_quant.c).
 *
 * Every quantized type stores integer levels q and per-group scales; a weight is a * q - b, with
 * a and b shared by a group of 16 or 32 weights. kernels_quant.c states each type by one
 * function, its unpack, which turns one block into that form (Levels); the dequantizer and the
 * reference dot product are written once on top of it. Activations meet these weights quantized
 * to Q8_0 (the 32-blocks) or Q8_K (the 256-blocks), as in llama.cpp, so that a dot product is
 * integer sums per group, scaled once per group.
 */
#ifndef KERNELS_QUANT_H
#define KERNELS_QUANT_H

#include <stdint.h>

#include "gguf.h"

#define QK 32    /* weights per block of the legacy types (Q4_0 .. Q8_0, IQ4_NL) */
#define QK_K 256 /* weights per super-block of the K-quants */

/* Q8_0: d * qs[i] (8.5 bits per weight) */
#define QK8_0 32
typedef struct {
    uint16_t d; /* scale, IEEE half */
    int8_t qs[QK8_0];
} BlockQ8;
_Static_assert(sizeof(BlockQ8) == 34, "Q8_0 blocks are 34 bytes in GGUF files");

/* Q4_0: d * (q - 8), q in 0..15; weight j < 16 in the low nibble of qs[j], weight j + 16 in the
   high nibble (4.5 bits per weight) */
typedef struct {
    uint16_t d;
    uint8_t qs[QK / 2];
} BlockQ4_0;
_Static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 blocks are 18 bytes");

/* Q4_1: d * q + m, q in 0..15, nibbles as Q4_0 (5 bits per weight) */
typedef struct {
    uint16_t d, m;
    uint8_t qs[QK / 2];
} BlockQ4_1;
_Static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 blocks are 20 bytes");

/* Q5_0: d * (q - 16), q in 0..31: the low 4 bits as Q4_0, bit 4 of weight j is bit j of qh
   (a little-endian u32) (5.5 bits per weight) */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
} BlockQ5_0;
_Static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 blocks are 22 bytes");

/* Q5_1: d * q + m, q in 0..31, bits as Q5_0 (6 bits per weight) */
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK / 2];
} BlockQ5_1;
_Static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 blocks are 24 bytes");

/* IQ4_NL: d * IQ4NL_VALUES[q], q a 4-bit index, nibbles as Q4_0 (4.5 bits per weight) */
typedef struct {
    uint16_t d;
    uint8_t qs[QK / 2];
} BlockIQ4NL;
_Static_assert(sizeof(BlockIQ4NL) == 18, "IQ4_NL blocks are 18 bytes");

/* The fields of block b of a row of the 32-weight types with nibbles (Q4_1, Q5_0, Q5_1, IQ4_NL;
   `type` a constant wherever this is inlined, so the choice folds away): qh NULL and m 0 where
   the type has none. For the kernels that unpack the four alike. */
typedef struct {
    const uint8_t *qs, *qh;
    uint16_t d, m; /* halves */
} Block32;
static inline Block32 block32(const void *row, int b, uint32_t type) {
    if (type == GGML_Q4_1) {
        const BlockQ4_1 *w = (const BlockQ4_1 *)row + b;
        return (Block32){w->qs, NULL, w->d, w->m};
    }
    if (type == GGML_Q5_0) {
        const BlockQ5_0 *w = (const BlockQ5_0 *)row + b;
        return (Block32){w->qs, w->qh, w->d, 0};
    }
    if (type == GGML_Q5_1) {
        const BlockQ5_1 *w = (const BlockQ5_1 *)row + b;
        return (Block32){w->qs, w->qh, w->d, w->m};
    }
    const BlockIQ4NL *w = (const BlockIQ4NL *)row + b;
    return (Block32){w->qs, NULL, w->d, 0};
}

/* Q2_K: 16 groups of 16; weight i = d * (scales[g] & 15) * q - dmin * (scales[g] >> 4),
   g = i / 16, q 2 bits. Weight i = 128 n + 32 j + l (l < 32) is bits 2j of qs[32 n + l]
   (2.625 bits per weight) */
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d, dmin;
} BlockQ2K;
_Static_assert(sizeof(BlockQ2K) == 84, "Q2_K blocks are 84 bytes");

/* Q3_K: 16 groups of 16; weight i = d * (s_g - 32) * (q - 4 * !hbit), q the 2 bits placed as
   Q2_K's, hbit bit 4n + j of hmask[i % 32]; the 6-bit scales s_g: low 4 bits in the nibble g / 8
   of scales[g % 8], high 2 bits at bit 2 (g / 4) of scales[8 + g % 4] (3.4375 bits per weight) */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} BlockQ3K;
_Static_assert(sizeof(BlockQ3K) == 110, "Q3_K blocks are 110 bytes");

/* Q4_K: 8 groups of 32; weight i = d * sc_g * q - dmin * m_g, g = i / 32; 6-bit sc_g, m_g
   packed in scales[12] (scale_min_k4 in kernels_quant.c); weight 64 c + 32 h + l is nibble h of
   qs[32 c + l] (4.5 bits per weight) */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} BlockQ4K;
_Static_assert(sizeof(BlockQ4K) == 144, "Q4_K blocks are 144 bytes");

/* Q5_K: Q4_K with a fifth bit: weight 64 c + 32 h + l adds 16 when bit 2c + h of qh[l] is set
   (5.5 bits per weight) */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} BlockQ5K;
_Static_assert(sizeof(BlockQ5K) == 176, "Q5_K blocks are 176 bytes");

/* Q6_K: 16 groups of 16; weight i = d * scales[i / 16] * (q - 32), q 6 bits: weight
   128 n + 32 k + l has its low 4 bits in nibble k / 2 of ql[64 n + 32 (k % 2) + l] and its high
   2 bits at bit 2k of qh[32 n + l] (6.5625 bits per weight) */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} BlockQ6K;
_Static_assert(sizeof(BlockQ6K) == 210, "Q6_K blocks are 210 bytes");

/* Q8_K, the activations of K-quant dot products: d * qs[i], d a float; bsums[g] = the sum of
   group g's 16 levels */
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} BlockQ8K;
_Static_assert(sizeof(BlockQ8K) == 292, "Q8_K blocks are 292 bytes");

/* Q4_K and Q5_K's eight 6-bit scales and mins in 12 bytes: groups 0-3 in the low 6 bits of
   bytes 0-3 (scales) and 4-7 (mins); groups 4-7 have their low 4 bits in the nibbles of bytes
   8-11 and their high 2 bits in the top bits of bytes 0-3 (scales) and 4-7 (mins). */
static inline void scale_min_k4(const uint8_t s[12], int g, int *sc, int *m) {
    if (g < 4) {
        *sc = s[g] & 63;
        *m = s[g + 4] & 63;
    } else {
        *sc = (s[g + 4] & 15) | (s[g - 4] >> 6) << 4;
        *m = (s[g + 4] >> 4) | (s[g] >> 6) << 4;
    }
}

/* One block in the common form: weight i = a[i / 16] * q[i] - b[i / 16] (n weights). */
typedef struct {
    int n;
    int8_t q[QK_K];
    float a[QK_K / 16], b[QK_K / 16];
} Levels;

/* What the engine knows of a weight type beyond its size (gguf.c): the format its dot products
   take the activations in, and how to read a block. */
typedef struct {
    uint32_t type;
    uint32_t act; /* GGML_F32 (the floats themselves), GGML_Q8_0 or GGML_Q8_K */
    void (*unpack)(const void *block, Levels *out); /* NULL for F32, F16 and BF16 */
    /* the activation formats: quantize n floats (a multiple of the block) into blocks */
    void (*quantize)(void *out, const float *x, int n);
} WeightType;

/* IQ4_NL's 16 levels, a non-uniform grid denser near 0 (also IQ4_XS's) */
extern const int8_t IQ4NL_VALUES[16];

const WeightType *weight_type(uint32_t type); /* NULL for a type the engine cannot run */

void quantize_q8_0(BlockQ8 *out, const float *x, int n);  /* n a multiple of 32 */
void quantize_q8_k(BlockQ8K *out, const float *x, int n); /* n a multiple of 256 */
/* n weights (a multiple of the type's block) as floats, exactly as stored */
void dequantize(uint32_t type, float *out, const void *w, int n);
/* The plain reference dot product of n weights of a quantized type with activations x already
   quantized to its act format: per group of 16, the integer sums sum q_w q_x and sum q_x, then
   scaled: sum_g a_x (a_w sum q_w q_x - b_w sum q_x). */
float dot_ref(uint32_t type, const void *w, const void *x, int n);

#endif /* KERNELS_QUANT_H */
