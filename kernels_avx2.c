/* kernels_avx2.c: the AVX2 kernel set (AVX2 + FMA + F16C): the template kernels_simd.h on 8-float
 * vectors. Target attributes enable the instructions per function, so the file builds without
 * -march flags; kernels_available() offers the set only on CPUs that have them. */
#include "kernels_sets.h"

#ifdef KERNELS_X86
#include "kernels_x86.h"

/* 16 registers of 8 floats, so tiles of 6 rows x 16 positions. No integer
   tile: AVX2's byte products (vpmaddubsw) saturate at 16 bits for these operands. */
#define TILE_Q8 NULL
#define GEMV_Q8P NULL
#define GEMV_Q4P NULL
#define GEMV_Q5P NULL
#define TILE_Q8P NULL
#define TILE_Q4P NULL
#define TILE_Q5P NULL
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
#define vstoreh(p, v)                                                                              \
    _mm_storeu_si128((__m128i *)(p),                                                               \
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
/* BF16: 8 of them zero-extended to 32 bits, shifted into a float's top half */
#define vloadbf(p)                                                                                 \
    _mm256_castsi256_ps(                                                                           \
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
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
/* for kernels_x86_dots.h: pairs of byte products in 16 bits (u <= 127, |x| <= 127: at most
   32,258, no saturation), then pairs of those in 32 */
#define X86_DPBUSD(acc, u, x)                                                                      \
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)))
#define X86_BITMASK32(h) bitmask32_avx2(h)
/* byte j = 0xff where bit j of h is set: byte j / 8 of h to byte j (a shuffle within each 128-bit
   half, h in both), then its bit j % 8 tested */
static TARGET inline __m256i bitmask32_avx2(uint32_t h) {
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)h),
        _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}
#include "kernels_x86_dots.h"

/* last: the template takes the DOT_* above */
#include "kernels_simd.h"
#endif /* KERNELS_X86 */
