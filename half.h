/* half.h: the two 16-bit float formats to and from float: IEEE 754 binary16 ("F16", the
 * half-precision weights and --kv-cache f16) and bfloat16 ("BF16" weights). The lowest module of
 * the kernels: kernels_quant.c (block scales) and kernels.c both read halves through it. */
#ifndef HALF_H
#define HALF_H

#include <stdint.h>
#include <string.h>

float f16_to_f32(uint16_t h); /* exact for every input: subnormals, infinities, NaN */
uint16_t f32_to_f16(float f); /* round to nearest even; beyond 65504 gives inf */

/* BF16 is the top 16 bits of a float (sign, the same 8 exponent bits, 7 of the 23 mantissa
   bits): widening is a shift, exact for every input. */
static inline float bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
uint16_t f32_to_bf16(float f); /* round to nearest even; past the largest BF16 gives inf; NaN
                                  stays NaN (quiet) */

/* All 65,536 halves widened (filled by half_init()), so that scalar code, such as the tails of
   the SIMD loops, does a table load instead of bit surgery. */
extern float f16_table[1 << 16];
void half_init(void); /* fills f16_table; kernels_init() calls it */

#endif /* HALF_H */
