/* kernels_x86_dots.h: dot products with the levels unpacked in registers, for the types without
 * an AVX-512 dot of their own (the 32-weight Q4_1, Q5_0, Q5_1, IQ4_NL; Q2_K and Q3_K), written once
 * for the two x86 sets. kernels_avx512.c and kernels_avx2.c each include it (no include guard:
 * once per set) after defining
 *   TARGET, FN(name)       as for kernels_simd.h
 *   X86_DPBUSD(acc, u, x)  acc (8 int32 lanes) plus, per lane, the sum of 4 products u * x of
 *                          unsigned bytes u (at most 127: AVX2 sums pairs of products in 16 bits)
 *                          and signed bytes x
 *   X86_BITMASK32(h)       32 bytes, byte j 0xff where bit j of the uint32 h is set, else 0
 * and it defines DOT_Q4_1, DOT_Q5_0, DOT_Q5_1, DOT_IQ4_NL, DOT_Q2_K and DOT_Q3_K for the template.
 * The template's generic versions unpack a block's levels into a byte array and read it back,
 * which stalls on store forwarding at every block (measured: 15M Q4_K, 95% Q5_0, decoded at 6%
 * of its bandwidth limit). Same integer sums as dot_ref; the floats are summed in another order. */

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
    const Block32 w = block32(row, b, type);
    const __m128i v = _mm_loadu_si128((const __m128i *)w.qs);
    __m256i q = _mm256_and_si256(
        _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1),
        _mm256_set1_epi8(15));
    if (w.qh) {
        uint32_t h;
        memcpy(&h, w.qh, 4);
        q = _mm256_or_si256(q, _mm256_and_si256(X86_BITMASK32(h), _mm256_set1_epi8(16)));
    }
    if (type == GGML_IQ4_NL) /* the grid looked up by nibble, in each 128-bit half */
        q = _mm256_shuffle_epi8(
            _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)iq4nl)), q);
    *d = _cvtsh_ss(w.d);
    *m = w.m ? _cvtsh_ss(w.m) : 0.0f;
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

/* ---- Q2_K and Q3_K: 16 groups of 16, 2-bit levels (Q3_K: a third bit) --------------------
 * Weight 128 n + 32 j + l is bits 2j of qs[32 n + l]: one shift and mask of a 32-byte load gives
 * the 32 weights of groups 8n + 2j (low 128-bit half) and 8n + 2j + 1 (high half). Levels (at
 * most 7) times activations in 16-bit pairs (maddubs: no saturation), then times the groups'
 * scales into 32 bits (madd); the offsets meet Q8_K's bsums. */

/* acc (8 float lanes) += d_x (d sum_g s_g sum q x - dmin sum_g c_g sum x) for one block: s8 the
   16 groups' scales (signed bytes), c16 the offsets' multipliers (16 words); Q3_K (hmask not
   NULL) adds 4 to q where bit 4n + j of hmask[l] is set. */
static inline __attribute__((always_inline)) TARGET __m256
FN(x86_k2_block)(__m256 acc, const uint8_t *qs, const uint8_t *hmask, __m128i s8, __m256i c16,
                 float d, float dmin, const BlockQ8K *x) {
    const __m256i s16 = _mm256_cvtepi8_epi16(s8); /* groups 0-7 in the low half, 8-15 high */
    const __m256i s_lo = _mm256_permute2x128_si256(s16, s16, 0x00),
                  s_hi = _mm256_permute2x128_si256(s16, s16, 0x11);
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    const __m256i hm = hmask ? _mm256_loadu_si256((const __m256i *)hmask) : _mm256_setzero_si256();
    __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * n));
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256i q = _mm256_and_si256(_mm256_srli_epi16(v, 2 * j), m3);
            if (hmask) {
                const __m256i bit = _mm256_set1_epi8((char)(1 << (4 * n + j)));
                q = _mm256_or_si256(
                    q, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), four));
            }
            /* words 2j and 2j + 1 of this n's scales, broadcast to the low and high half */
            const __m256i pick =
                _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * j + 1))),
                                 _mm_set1_epi16((short)(0x0100 + 0x0202 * 2 * j)));
            const __m256i s = _mm256_shuffle_epi8(n ? s_hi : s_lo, pick);
            const __m256i p = _mm256_maddubs_epi16(
                q, _mm256_loadu_si256((const __m256i *)(x->qs + 128 * n + 32 * j)));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, s));
        }
    }
    const __m256i corr = _mm256_madd_epi16(c16, _mm256_loadu_si256((const __m256i *)x->bsums));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(x->d * d), acc);
    return _mm256_fnmadd_ps(_mm256_cvtepi32_ps(corr), _mm256_set1_ps(x->d * dmin), acc);
}

/* Q2_K: weight = d (sc_g & 15) q - dmin (sc_g >> 4). */
static TARGET float FN(dot_q2_k_x86)(const void *wv, const void *xv, int n) {
    const BlockQ2K *w = wv;
    const BlockQ8K *x = xv;
    const __m128i m4 = _mm_set1_epi8(15);
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++) {
        const __m128i sc = _mm_loadu_si128((const __m128i *)w[b].scales);
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
        acc = FN(x86_k2_block)(acc, w[b].qs, NULL, _mm_and_si128(sc, m4), mins, _cvtsh_ss(w[b].d),
                               _cvtsh_ss(w[b].dmin), &x[b]);
    }
    return hsum256(acc);
}

/* Q3_K's 16 6-bit scales minus 32 as signed bytes, in word operations: low 4 bits of group g in
   nibble g / 8 of scales[g % 8], high 2 bits at bit 2 (g / 4) of scales[8 + g % 4]. */
static inline __attribute__((always_inline)) TARGET __m128i
FN(x86_q3k_scales)(const uint8_t s[12]) {
    uint64_t lo;
    uint32_t hi;
    memcpy(&lo, s, 8);
    memcpy(&hi, s + 8, 4);
    const uint64_t nib = 0x0f0f0f0f0f0f0f0full;
    const uint32_t two = 0x03030303u;
    const uint64_t h0 = (uint64_t)(hi & two) | (uint64_t)(hi >> 2 & two) << 32;      /* g 0-7 */
    const uint64_t h1 = (uint64_t)(hi >> 4 & two) | (uint64_t)(hi >> 6 & two) << 32; /* g 8-15 */
    const __m128i s6 =
        _mm_set_epi64x((long long)((lo >> 4 & nib) | h1 << 4), (long long)((lo & nib) | h0 << 4));
    return _mm_sub_epi8(s6, _mm_set1_epi8(32));
}

/* Q3_K: weight = d s_g (q - 4), q = the 2 bits plus 4 where the high bit is set; the offsets are
   4 s_g sum x. */
static TARGET float FN(dot_q3_k_x86)(const void *wv, const void *xv, int n) {
    const BlockQ3K *w = wv;
    const BlockQ8K *x = xv;
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < n / QK_K; b++) {
        const __m128i s8 = FN(x86_q3k_scales)(w[b].scales);
        const float d = _cvtsh_ss(w[b].d);
        acc = FN(x86_k2_block)(acc, w[b].qs, w[b].hmask, s8,
                               _mm256_slli_epi16(_mm256_cvtepi8_epi16(s8), 2), d, d, &x[b]);
    }
    return hsum256(acc);
}
#define DOT_Q2_K FN(dot_q2_k_x86)
#define DOT_Q3_K FN(dot_q3_k_x86)
