/* half.h: IEEE 754 binary16 ("F16", the half-precision weights and --kv-cache f16) to and from
 * float. The lowest module of the kernels: kernels_quant.c (block scales) and kernels.c both
 * read halves through it. */
#ifndef HALF_H
#define HALF_H

#include <stdint.h>

float f16_to_f32(uint16_t h); /* exact for every input: subnormals, infinities, NaN */
uint16_t f32_to_f16(float f); /* round to nearest even; beyond 65504 gives inf */

/* All 65,536 halves widened (filled by half_init()), so that scalar code, such as the tails of
   the SIMD loops, does a table load instead of bit surgery. */
extern float f16_table[1 << 16];
void half_init(void); /* fills f16_table; kernels_init() calls it */

#endif /* HALF_H */
