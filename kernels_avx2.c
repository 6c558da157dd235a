/* kernels_avx2.c: the AVX2 kernel set (AVX2 + FMA + F16C): the template kernels_simd.h on 8-float
 * vectors. Target attributes enable the instructions per function, so the file builds without
 * -march flags; kernels_available() offers the set only on CPUs that have them. */
#include "kernels_sets.h"

#ifdef KERNELS_X86
#include "kernels_x86.h"

/* 16 registers of 8 floats, so tiles of 6 rows x 16 positions. No integer
   tile: AVX2's byte products (vpmaddubsw) saturate at 16 bits for these operands. */
#define TILE_Q8 NULL
#define TILE_LV NULL
#define GEMV_Q8P NULL
#define GEMV_Q4P NULL
#define TILE_Q8P NULL
#define TILE_Q4P NULL
#define TILE_ACT NULL
#define FN(name) name##_avx2
#define NAME "AVX2"
#define TARGET __attribute__((target("avx2,fma,f16c")))
#define VF __m256
#define VL 8
#define vzero() _mm256_setzero_ps()
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, v) _mm256_storeu_ps(p, v)
#define vloadh(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define vset1(x) _mm256_set1_ps(x)
#define f16s(h) _cvtsh_ss(h)
#define vfma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vsum(v) hsum256(v)
#define TR 6
#define Q8_ACC_TYPE __m256
#define Q8_ACC_ZERO() _mm256_setzero_ps()
#define Q8_ACC_SUM(a) hsum256(a)
/* without VNNI: unsigned x signed byte pairs summed to int16 (cannot overflow: |w| <= 128,
   |x| <= 127), then pairs of int16 to int32 */
#define Q8_DOT(acc, wb, xb, scale)                                                                 \
    do {                                                                                           \
        __m256i w_ = _mm256_loadu_si256((const __m256i *)(wb)->qs);                                \
        __m256i x_ = _mm256_loadu_si256((const __m256i *)(xb)->qs);                                \
        __m256i p16_ = _mm256_maddubs_epi16(_mm256_sign_epi8(w_, w_), _mm256_sign_epi8(x_, w_));   \
        __m256i p_ = _mm256_madd_epi16(p16_, _mm256_set1_epi16(1));                                \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p_), _mm256_set1_ps(scale), acc);                 \
    } while (0)
/* signed bytes a * b, 16 or 32 of them: |a| times b with a's sign, pairs summed to int16 (at
   most 2 * 127 * 127: no saturation), then to int32 */
static TARGET inline int i8dot32_avx2(const int8_t *a, const int8_t *b) {
    const __m256i va = _mm256_loadu_si256((const __m256i *)a),
                  vb = _mm256_loadu_si256((const __m256i *)b);
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(va, va), _mm256_sign_epi8(vb, va));
    return hsum256_epi32(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
static TARGET inline int i8dot16_avx2(const int8_t *a, const int8_t *b) {
    const __m128i va = _mm_loadu_si128((const __m128i *)a),
                  vb = _mm_loadu_si128((const __m128i *)b);
    const __m128i p = _mm_maddubs_epi16(_mm_sign_epi8(va, va), _mm_sign_epi8(vb, va));
    return hsum128_epi32(_mm_madd_epi16(p, _mm_set1_epi16(1)));
}
#define I8DOT32(a, b) i8dot32_avx2(a, b)
#define I8DOT16(a, b) i8dot16_avx2(a, b)
#include "kernels_simd.h"
#endif /* KERNELS_X86 */
