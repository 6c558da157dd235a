/* kernels_neon.c: the NEON kernel set (AArch64, where NEON is the baseline): the template
 * kernels_simd.h on 4-float vectors. */
#include "kernels_sets.h"

#ifdef KERNELS_NEON
#include <arm_neon.h>

/* 32 registers of 4 floats, so tiles of 12 rows x 8 positions. */
#define TILE_Q8 NULL
#define GEMV_Q8P NULL
#define GEMV_Q4P NULL
#define GEMV_Q5P NULL
#define TILE_Q8P NULL
#define TILE_Q4P NULL
#define TILE_Q5P NULL
#define TILE_ACT NULL
#define FN(name) name##_neon
#define NAME "NEON"
#define TARGET
#define VF float32x4_t
#define VL 4
#define vzero() vdupq_n_f32(0.0f)
#define vload(p) vld1q_f32(p)
#define vstore(p, v) vst1q_f32(p, v)
#define vloadh(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)))
/* FPCR's rounding mode, which Linux leaves at its default: to nearest even */
#define vstoreh(p, v) vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(v)))
/* BF16: 4 of them widened to 32 bits with a shift left by 16 (one instruction) */
#define vloadbf(p) vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16))
#define vset1(x) vdupq_n_f32(x)
#define f16s(h) vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0)
#define vfma(a, b, c) vfmaq_f32(c, a, b)
#define vsum(v) vaddvq_f32(v)
#define TR 12
#define Q8_ACC_TYPE float32x4_t
#define Q8_ACC_ZERO() vdupq_n_f32(0.0f)
#define Q8_ACC_SUM(a) vaddvq_f32(a)
/* products widened to int16 one at a time, then pairwise into int32: no int16 overflow */
#define Q8_DOT(acc, wb, xb, scale)                                                                 \
    do {                                                                                           \
        int8x16_t w0_ = vld1q_s8((wb)->qs), w1_ = vld1q_s8((wb)->qs + 16);                         \
        int8x16_t x0_ = vld1q_s8((xb)->qs), x1_ = vld1q_s8((xb)->qs + 16);                         \
        int32x4_t p_ = vpaddlq_s16(vmull_s8(vget_low_s8(w0_), vget_low_s8(x0_)));                  \
        p_ = vpadalq_s16(p_, vmull_high_s8(w0_, x0_));                                             \
        p_ = vpadalq_s16(p_, vmull_s8(vget_low_s8(w1_), vget_low_s8(x1_)));                        \
        p_ = vpadalq_s16(p_, vmull_high_s8(w1_, x1_));                                             \
        acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p_), scale);                                          \
    } while (0)
/* signed bytes a * b, 16 or 32 of them: products widened to int16, pairwise into int32 */
static inline int i8dot16_neon(const int8_t *a, const int8_t *b) {
    const int8x16_t va = vld1q_s8(a), vb = vld1q_s8(b);
    int32x4_t p = vpaddlq_s16(vmull_s8(vget_low_s8(va), vget_low_s8(vb)));
    p = vpadalq_s16(p, vmull_high_s8(va, vb));
    return vaddvq_s32(p);
}
#define I8DOT32(a, b) (i8dot16_neon(a, b) + i8dot16_neon((a) + 16, (b) + 16))
#define I8DOT16(a, b) i8dot16_neon(a, b)
#include "kernels_simd.h"
#endif /* KERNELS_NEON */
