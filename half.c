/* half.c: the two 16-bit float formats of weights and caches, to and from float (see half.h). */
#include "half.h"

#include <math.h>
#include <string.h>

/* IEEE 754 binary16 -> binary32, exact for every input (subnormals, infinities, NaN). */
float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) { /* inf or NaN */
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) { /* normal: rebias 15 -> 127 */
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) { /* signed zero */
        bits = sign;
    } else { /* subnormal: mant * 2^-24, exactly representable */
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
    if (absx >= 0x7f800000u) /* inf or NaN */
        return sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0);
    if (absx >= 0x477ff000u) return sign | 0x7c00; /* rounds past 65504: inf */
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal or 0 */
        float a;
        memcpy(&a, &absx, 4);
        /* a * 2^24 rounded to nearest even gives the subnormal mantissa directly. */
        return sign | (uint16_t)lrintf(a * 16777216.0f);
    }
    uint32_t mant = absx & 0x7fffff;
    uint32_t exp = (absx >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fff; /* the 13 bits dropped: round to nearest even */
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return sign | (uint16_t)h;
}

uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)(x >> 16 | 0x40); /* NaN: keep it one */
    /* round the 16 bits dropped to nearest even: add just under half, plus the kept lsb; a carry
       out of the mantissa moves to the next exponent, past the largest finite one to inf */
    return (uint16_t)((x + 0x7fffu + (x >> 16 & 1)) >> 16);
}

float f16_table[1 << 16];

void half_init(void) {
    for (uint32_t i = 0; i < (1u << 16); i++) f16_table[i] = f16_to_f32((uint16_t)i);
}
