/* kernels_x86_dots.h: the dot products of the 32-weight types other than Q4_0 and Q8_0 (Q4_1,
 * Q5_0, Q5_1, IQ4_NL) with their levels unpacked in registers, written once for the two x86 sets.
 * kernels_avx512.c and kernels_avx2.c each include it (no include guard: once per set) after
 * defining
 *   TARGET, FN(name)       as for kernels_simd.h
 *   X86_DPBUSD(acc, u, x)  acc (8 int32 lanes) plus, per lane, the sum of 4 products u * x of
 *                          unsigned bytes u (at most 127: AVX2 sums pairs of products in 16 bits)
 *                          and signed bytes x
 *   X86_BITMASK32(h)       32 bytes, byte j 0xff where bit j of the uint32 h is set, else 0
 * and it defines DOT_Q4_1, DOT_Q5_0, DOT_Q5_1 and DOT_IQ4_NL for the template. The template's
 * generic versions unpack a block's levels into a byte array and read it back, which stalls on
 * store forwarding at every block (measured: 15M Q4_K, 95% Q5_0, decoded at 6% of its bandwidth
 * limit). Same integer sums as dot_ref; the floats are summed in another order. */

/* Block b of a row of `type` (a constant wherever this is inlined) as its 32 levels q in one
   vector, with d, m and off such that weight j = d (q_j - off) + m: q_j unsigned (0..31), except
   IQ4_NL's, which are its signed grid values (off 0). Nibbles: weight j < 16 is the low nibble of
   qs[j], weight j + 16 the high one; Q5's fifth bit of weight j is bit j of qh. */
static inline __attribute__((always_inline)) TARGET __m256i FN(x86_levels32)(const void *row, int b,
                                                                             const uint32_t type,
                                                                             float *d, float *m,
                                                                             int *off) {
    static const int8_t iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};
    const uint8_t *qs, *qh = NULL;
    uint16_t hd, hm = 0;
    if (type == GGML_Q4_1) {
        const BlockQ4_1 *w = (const BlockQ4_1 *)row + b;
        qs = w->qs, hd = w->d, hm = w->m;
    } else if (type == GGML_Q5_0) {
        const BlockQ5_0 *w = (const BlockQ5_0 *)row + b;
        qs = w->qs, qh = w->qh, hd = w->d;
    } else if (type == GGML_Q5_1) {
        const BlockQ5_1 *w = (const BlockQ5_1 *)row + b;
        qs = w->qs, qh = w->qh, hd = w->d, hm = w->m;
    } else { /* GGML_IQ4_NL */
        const BlockIQ4NL *w = (const BlockIQ4NL *)row + b;
        qs = w->qs, hd = w->d;
    }
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m256i q = _mm256_and_si256(
        _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1),
        _mm256_set1_epi8(15));
    if (qh) {
        uint32_t h;
        memcpy(&h, qh, 4);
        q = _mm256_or_si256(q, _mm256_and_si256(X86_BITMASK32(h), _mm256_set1_epi8(16)));
    }
    if (type == GGML_IQ4_NL) /* the grid looked up by nibble, in each 128-bit half */
        q = _mm256_shuffle_epi8(
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl)), q);
    *d = _cvtsh_ss(hd);
    *m = hm ? _cvtsh_ss(hm) : 0.0f;
    *off = type == GGML_Q5_0 ? 16 : 0;
    return q;
}

/* One block's terms added to acc (8 float lanes): d_x (d (sum q x - off sum x) + m sum x). */
static inline __attribute__((always_inline)) TARGET __m256 FN(x86_block32)(__m256 acc,
                                                                           const void *w,
                                                                           const BlockQ8 *x, int b,
                                                                           const uint32_t type) {
    const __m256i zero = _mm256_setzero_si256();
    float d, m;
    int off;
    const __m256i q = FN(x86_levels32)(w, b, type, &d, &m, &off);
    const __m256i xb = _mm256_loadu_si256((const __m256i *)x[b].qs);
    const float dx = _cvtsh_ss(x[b].d);
    __m256i p; /* signed levels: |q| times x with q's sign */
    if (type == GGML_IQ4_NL)
        p = X86_DPBUSD(zero, _mm256_sign_epi8(q, q), _mm256_sign_epi8(xb, q));
    else
        p = X86_DPBUSD(zero, q, xb);
    if (off) p = _mm256_sub_epi32(p, X86_DPBUSD(zero, _mm256_set1_epi8((char)off), xb));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * dx), acc);
    if (type == GGML_Q4_1 || type == GGML_Q5_1)
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(X86_DPBUSD(zero, _mm256_set1_epi8(1), xb)),
                              _mm256_set1_ps(m * dx), acc);
    return acc;
}

/* Blocks in pairs into two accumulators, halving the chain of dependent FMAs. */
static inline __attribute__((always_inline)) TARGET float FN(x86_dot32)(const void *w,
                                                                        const void *xv, int n,
                                                                        const uint32_t type) {
    const BlockQ8 *x = xv;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    const int nb = n / QK;
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        acc0 = FN(x86_block32)(acc0, w, x, b, type);
        acc1 = FN(x86_block32)(acc1, w, x, b + 1, type);
    }
    if (b < nb) acc0 = FN(x86_block32)(acc0, w, x, b, type);
    return hsum256(_mm256_add_ps(acc0, acc1));
}

static TARGET float FN(dot_q4_1_x86)(const void *w, const void *x, int n) {
    return FN(x86_dot32)(w, x, n, GGML_Q4_1);
}
static TARGET float FN(dot_q5_0_x86)(const void *w, const void *x, int n) {
    return FN(x86_dot32)(w, x, n, GGML_Q5_0);
}
static TARGET float FN(dot_q5_1_x86)(const void *w, const void *x, int n) {
    return FN(x86_dot32)(w, x, n, GGML_Q5_1);
}
static TARGET float FN(dot_iq4_nl_x86)(const void *w, const void *x, int n) {
    return FN(x86_dot32)(w, x, n, GGML_IQ4_NL);
}
#define DOT_Q4_1 FN(dot_q4_1_x86)
#define DOT_Q5_0 FN(dot_q5_0_x86)
#define DOT_Q5_1 FN(dot_q5_1_x86)
#define DOT_IQ4_NL FN(dot_iq4_nl_x86)
