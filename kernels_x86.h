/* kernels_x86.h: what the two x86-64 sets (kernels_avx512.c, kernels_avx2.c) share. */
#ifndef KERNELS_X86_H
#define KERNELS_X86_H

#include <immintrin.h>

/* Sum of 8 floats. AVX2 code, which the AVX-512 functions may inline too (a subset of theirs). */
static __attribute__((target("avx2,fma,f16c"))) inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* Sum of 8 int32 lanes. */
static __attribute__((target("avx2"))) inline int hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

/* Sum of 4 int32 lanes. */
static __attribute__((target("avx2"))) inline int hsum128_epi32(__m128i s) {
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1)));
}

#endif /* KERNELS_X86_H */
