/* kernels_iquant.h: the i-quants, GGUF's codebook types, as ggml lays out their blocks of 256
 * weights; read in place like the other quantized types (kernels_quant.h), each by one unpack
 * into the common form weight i = a[i / 16] * q[i] - b[i / 16] (here b = 0), in kernels_iquant.c.
 *
 * Most i-quants store, per 8 (or 4) weights, an index into a fixed grid of 8-vectors (or
 * 4-vectors) of small magnitudes, plus sign bits; the grids are in kernels_iquant_grids.h. A
 * "7-bit sign" s holds the signs of 7 weights; the 8th is the parity of s (an even number of
 * minus signs in all). Weight w of a group of 8 is negative when bit w of the signs is set.
 * All halves are IEEE; all multi-byte fields little-endian.
 */
#ifndef KERNELS_IQUANT_H
#define KERNELS_IQUANT_H

#include <stdint.h>

#include "kernels_quant.h"

/* IQ4_XS: IQ4_NL's 16 levels with a 6-bit scale per 32 weights: weight 32 g + j (j < 16) is
   d * (ls_g - 32) * IQ4NL_VALUES[low nibble of qs[16 g + j]], j + 16 the high nibble; ls_g's low
   4 bits are nibble g % 2 of scales_l[g / 2], its high 2 bits bits 2g of scales_h
   (4.25 bits per weight) */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} BlockIQ4XS;
_Static_assert(sizeof(BlockIQ4XS) == 136, "IQ4_XS blocks are 136 bytes");

/* IQ3_XXS: per 32 weights g, a u32 t (bytes 64 + 4g of qs): scale d * (0.5 + (t >> 28)) * 0.5,
   and for each 8 weights l the 7-bit sign (t >> 7l) & 127; the 8 weights are two IQ3XXS_GRID
   4-vectors, indices qs[8g + 2l] and qs[8g + 2l + 1] (3.0625 bits per weight) */
typedef struct {
    uint16_t d;
    uint8_t qs[3 * QK_K / 8];
} BlockIQ3XXS;
_Static_assert(sizeof(BlockIQ3XXS) == 98, "IQ3_XXS blocks are 98 bytes");

/* IQ3_S: per 32 weights g, scale d * (1 + 2 * nibble g % 2 of scales[g / 2]); each 4 weights k
   (k < 8 within g) are the IQ3S_GRID 4-vector of index qs[8g + k] + 256 * bit k of qh[g]; the
   signs of weights 8l .. 8l + 7 are the bits of signs[4g + l], all 8 stored (3.4375 bits per
   weight) */
typedef struct {
    uint16_t d;
    uint8_t qs[QK_K / 4];
    uint8_t qh[QK_K / 32];
    uint8_t signs[QK_K / 8];
    uint8_t scales[QK_K / 64];
} BlockIQ3S;
_Static_assert(sizeof(BlockIQ3S) == 110, "IQ3_S blocks are 110 bytes");

/* IQ2_XXS: per 32 weights g, two u32 (bytes 8g of qs): the first holds four IQ2XXS_GRID indices
   (byte l for weights 8l .. 8l + 7), the second t the scale d * (0.5 + (t >> 28)) * 0.25 and the
   7-bit signs (t >> 7l) & 127 (2.0625 bits per weight) */
typedef struct {
    uint16_t d;
    uint16_t qs[QK_K / 8];
} BlockIQ2XXS;
_Static_assert(sizeof(BlockIQ2XXS) == 66, "IQ2_XXS blocks are 66 bytes");

/* IQ2_XS: each 8 weights k of the block: qs[k] = IQ2XS_GRID index (9 bits) | 7-bit sign << 9;
   per 16 weights h a scale d * (0.5 + nibble h % 2 of scales[h / 2]) * 0.25 (2.3125 bits per
   weight) */
typedef struct {
    uint16_t d;
    uint16_t qs[QK_K / 8];
    uint8_t scales[QK_K / 32];
} BlockIQ2XS;
_Static_assert(sizeof(BlockIQ2XS) == 74, "IQ2_XS blocks are 74 bytes");

/* IQ2_S: each 8 weights k (k = 4g + l): IQ2S_GRID index qs[k] + 256 * bits 2l..2l+1 of qh[g],
   signs the 8 bits of qs[32 + k]; scales as IQ2_XS (2.5625 bits per weight) */
typedef struct {
    uint16_t d;
    uint8_t qs[QK_K / 4];
    uint8_t qh[QK_K / 32];
    uint8_t scales[QK_K / 32];
} BlockIQ2S;
_Static_assert(sizeof(BlockIQ2S) == 82, "IQ2_S blocks are 82 bytes");

/* IQ1_S: per 32 weights g, the u16 qh[g]: scale dl = d * (2 * (qh >> 12 & 7) + 1), delta
   -1/8 if bit 15 else +1/8; each 8 weights l are dl * (IQ1S_GRID point + delta), index
   qs[4g + l] + 256 * (qh >> 3l & 7) (1.5625 bits per weight). As levels: q = 8 * grid +- 1,
   a = dl / 8, exactly the same products. */
typedef struct {
    uint16_t d;
    uint8_t qs[QK_K / 8];
    uint16_t qh[QK_K / 32];
} BlockIQ1S;
_Static_assert(sizeof(BlockIQ1S) == 50, "IQ1_S blocks are 50 bytes");

/* IQ1_M: no d field: d is the half whose 4 nibbles are the top nibbles of the four u16 of
   scales (lowest first); per 16 weights h, scale d * (2 * s_h + 1), s_h the 3 bits at 3 (h % 4)
   of u16 h / 4; each 8 weights k: IQ1S_GRID index qs[k] + 256 * (nibble k % 2 of qh[k / 2] & 7),
   delta -1/8 if bit 3 of that nibble else +1/8 (1.75 bits per weight) */
typedef struct {
    uint8_t qs[QK_K / 8];
    uint8_t qh[QK_K / 16];
    uint8_t scales[QK_K / 32];
} BlockIQ1M;
_Static_assert(sizeof(BlockIQ1M) == 56, "IQ1_M blocks are 56 bytes");

/* The unpacks (WeightType.unpack) of one block of each. */
void unpack_iq4_xs(const void *block, Levels *out);
void unpack_iq3_xxs(const void *block, Levels *out);
void unpack_iq3_s(const void *block, Levels *out);
void unpack_iq2_xxs(const void *block, Levels *out);
void unpack_iq2_xs(const void *block, Levels *out);
void unpack_iq2_s(const void *block, Levels *out);
void unpack_iq1_s(const void *block, Levels *out);
void unpack_iq1_m(const void *block, Levels *out);

#endif /* KERNELS_IQUANT_H */
