/* kernels_attn.c: causal attention over the KV cache (kernels.h): the cache's element types and
 * layout, kv_store() and its readers, attention_ref(), the textbook version, and attention(), the
 * tiled online-softmax version that runs the active kernel set's leaf kernels (kernels_simd.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_sets.h"

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_max_threads(void) { return 1; }
#endif

/* The element types: how kv_store() writes a row of n floats (dst[i * stride], the elements
   counted in the type), and kv_elt() below, how everything else reads element i back. */
static void put_f32(void *dst, size_t stride, const float *src, int n) {
    float *d = dst;
    for (int i = 0; i < n; i++) d[(size_t)i * stride] = src[i];
}
static void put_f16(void *dst, size_t stride, const float *src, int n) {
    uint16_t *d = dst, h[256];
    for (int i0 = 0; i0 < n; i0 += 256) { /* rounded in the set's vectors, then placed */
        const int m = n - i0 < 256 ? n - i0 : 256;
        kernels_active()->f32_to_f16_row(h, src + i0, m);
        for (int i = 0; i < m; i++) d[(size_t)(i0 + i) * stride] = h[i];
    }
}
static void (*const kv_put[KV_TYPES])(void *dst, size_t stride, const float *src,
                                      int n) = {[KV_F32] = put_f32, [KV_F16] = put_f16};

/* Element i of a cache of type t as a float; t is a constant wherever this is inlined, so that
   each reference below compiles to its own straight loop (a call per element made the
   attention dumps, which run attention_ref, three times slower). */
#ifdef __GNUC__
#define KV_INLINE inline __attribute__((always_inline))
#else
#define KV_INLINE inline
#endif
static KV_INLINE float kv_elt(const void *c, size_t i, const KvType t) {
    return t == KV_F16 ? f16_table[((const uint16_t *)c)[i]] : ((const float *)c)[i];
}

const KvTypeInfo kv_types[KV_TYPES] = {
    [KV_F32] = {"f32", sizeof(float)}, [KV_F16] = {"f16", sizeof(uint16_t)}};

int kv_type_from_name(const char *name, KvType *out) {
    for (int t = 0; t < KV_TYPES; t++)
        if (strcmp(name, kv_types[t].name) == 0) {
            *out = (KvType)t;
            return 0;
        }
    return -1;
}

/* Where key j, dimension i of KV head h, and value j of head h, live in a layer's cache (in
   elements). */
static size_t key_index(const AttnShape *a, int h, int j, int i) {
    return (size_t)(j / KV_TILE) * a->tile_stride + ((size_t)h * a->head_dim + i) * KV_TILE +
           j % KV_TILE;
}
static size_t value_index(const AttnShape *a, int h, int j) {
    return (size_t)(j / KV_TILE) * a->tile_stride +
           ((size_t)h * KV_TILE + j % KV_TILE) * a->head_dim;
}

float kv_key(const void *kc, const AttnShape *a, int h, int j, int i) {
    return kv_elt(kc, key_index(a, h, j, i), a->kv_type);
}

void kv_value(float *out, const void *vc, const AttnShape *a, int h, int j) {
    const size_t v0 = value_index(a, h, j);
    for (int i = 0; i < a->head_dim; i++) out[i] = kv_elt(vc, v0 + i, a->kv_type);
}

/* KV head h's keys and values of the n positions. A tile's keys are zeroed when its first
   position is written: attention scores whole tiles (masking the positions not written yet), so
   that it never reads memory nothing wrote (the cache is not zeroed at allocation, see
   state_alloc in model.c); every tile's first write is at its first position, positions being
   written in order from 0. */
static void kv_store_head(void *kc, void *vc, const float *k, const float *v, int n, int pos0,
                          const AttnShape *a, int h) {
    const int hd = a->head_dim, kv_dim = a->n_kv_heads * hd;
    const size_t bytes = kv_types[a->kv_type].bytes;
    void (*put)(void *, size_t, const float *, int) = kv_put[a->kv_type];
    for (int t = 0; t < n; t++) {
        if ((pos0 + t) % KV_TILE == 0) /* head h's keys of the tile: (hd, KV_TILE), contiguous */
            memset((char *)kc + key_index(a, h, pos0 + t, 0) * bytes, 0,
                   (size_t)hd * KV_TILE * bytes);
        /* dimension i of the key at stride KV_TILE, the value's row contiguous */
        put((char *)kc + key_index(a, h, pos0 + t, 0) * bytes, KV_TILE,
            k + (size_t)t * kv_dim + h * hd, hd);
        put((char *)vc + value_index(a, h, pos0 + t) * bytes, 1, v + (size_t)t * kv_dim + h * hd,
            hd);
    }
}

/* A prompt's positions split by KV head across threads (each head's part of a tile is its own
   memory); a decoded token's directly, without entering a parallel region. */
void kv_store(void *kc, void *vc, const float *k, const float *v, int n, int pos0,
              const AttnShape *a) {
    if (n == 1) {
        for (int h = 0; h < a->n_kv_heads; h++) kv_store_head(kc, vc, k, v, n, pos0, a, h);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int h = 0; h < a->n_kv_heads; h++) kv_store_head(kc, vc, k, v, n, pos0, a, h);
}

/* The textbook version: for each query and head, every score, then the softmax, then the
 * weighted sum of values. probs (n, n_heads, probs_stride) receives each row's softmax, zero
 * outside the visible keys; out may be NULL when only the probabilities are wanted. */
static KV_INLINE void attention_ref_typed(float *out, float *probs, int probs_stride,
                                          const float *q, const void *kc, const void *vc, int n,
                                          int pos0, const AttnShape *a, const KvType type) {
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < a->n_heads; h++) {
            const int p = pos0 + t, lo = attn_first_visible(p, a->window), kvh = h / group;
            const float *qh = q + ((size_t)t * a->n_heads + h) * hd;
            float *pr = probs + ((size_t)t * a->n_heads + h) * probs_stride;
            float max = -INFINITY, sum = 0.0f;
            for (int j = 0; j < probs_stride; j++) pr[j] = 0.0f;
            for (int j = lo; j <= p; j++) {
                float dot = 0.0f;
                for (int i = 0; i < hd; i++)
                    dot += qh[i] * kv_elt(kc, key_index(a, kvh, j, i), type);
                pr[j] = dot * scale;
                max = fmaxf(max, pr[j]);
            }
            for (int j = lo; j <= p; j++) sum += pr[j] = expf(pr[j] - max);
            for (int j = lo; j <= p; j++) pr[j] /= sum;
            if (!out) continue;
            float *oh = out + ((size_t)t * a->n_heads + h) * hd;
            for (int i = 0; i < hd; i++) oh[i] = 0.0f;
            for (int j = lo; j <= p; j++)
                for (int i = 0; i < hd; i++)
                    oh[i] += pr[j] * kv_elt(vc, value_index(a, kvh, j) + i, type);
        }
}
static void attention_ref_f32(float *out, float *probs, int probs_stride, const float *q,
                              const void *kc, const void *vc, int n, int pos0, const AttnShape *a) {
    attention_ref_typed(out, probs, probs_stride, q, kc, vc, n, pos0, a, KV_F32);
}
static void attention_ref_f16(float *out, float *probs, int probs_stride, const float *q,
                              const void *kc, const void *vc, int n, int pos0, const AttnShape *a) {
    attention_ref_typed(out, probs, probs_stride, q, kc, vc, n, pos0, a, KV_F16);
}

void attention_ref(float *out, float *probs, int probs_stride, const float *q, const void *kc,
                   const void *vc, int n, int pos0, const AttnShape *a) {
    static void (*const by_type[KV_TYPES])(float *, float *, int, const float *, const void *,
                                           const void *, int, int, const AttnShape *) = {
        [KV_F32] = attention_ref_f32, [KV_F16] = attention_ref_f16};
    by_type[a->kv_type](out, probs, probs_stride, q, kc, vc, n, pos0, a);
}

/* The plain products of one key tile (Kernels.att_scores, att_pv), each sum in index order. */
void att_scores_ref(KvType type, float *s, const float *q, int qstride, int nq, const void *kt,
                    int hd) {
    for (int r = 0; r < nq; r++)
        for (int j = 0; j < KV_TILE; j++) {
            float sum = 0.0f;
            for (int i = 0; i < hd; i++)
                sum += q[(size_t)r * qstride + i] * kv_elt(kt, (size_t)i * KV_TILE + j, type);
            s[(size_t)r * KV_TILE + j] = sum;
        }
}

void att_pv_ref(KvType type, float *o, int ostride, const float *p, int nq, const void *v, int nk,
                int hd) {
    for (int r = 0; r < nq; r++)
        for (int d = 0; d < hd; d++) {
            float sum = o[(size_t)r * ostride + d];
            for (int j = 0; j < nk; j++)
                sum += p[(size_t)r * KV_TILE + j] * kv_elt(v, (size_t)j * hd + d, type);
            o[(size_t)r * ostride + d] = sum;
        }
}

#define ATT_QB 24 /* queries per task: AVX-512 tile products take 6 at a time */

/* The online softmax of one query on one key tile: si holds the tile's KV_TILE raw scores q.k, of
 * which [ja, jb] are visible; m is the query's running maximum (of raw scores), l its running sum
 * kept in ATT_LANES partial sums (added up once, at the end), o (hd) its output so far. si becomes
 * the probabilities times e^(-m) (0 where masked), o and l are rescaled when the maximum grows.
 * scale (> 0) is applied inside the exponent, so that the scores need no pass of their own. The
 * loops run over the whole tile in rows of ATT_LANES with the mask as a select, so that they
 * vectorize without a horizontal sum (keys not written yet, past the last query, only meet the
 * select); the maximum's last 16 lanes are folded in independent pairs. */
#define ATT_LANES 16
#ifdef __GNUC__ /* inlined at both calls, so that the whole-tile one drops the mask */
#define SOFTMAX_INLINE inline __attribute__((always_inline))
#else
#define SOFTMAX_INLINE inline
#endif
static SOFTMAX_INLINE void softmax_tile(float *restrict si, int ja, int jb, float scale, float *m,
                                        float *restrict l, float *restrict o, int hd) {
    float mx[ATT_LANES], sum[ATT_LANES];
#pragma omp simd
    for (int u = 0; u < ATT_LANES; u++) mx[u] = -INFINITY;
    for (int j = 0; j < KV_TILE; j += ATT_LANES)
#pragma omp simd
        for (int u = 0; u < ATT_LANES; u++) {
            const float v = j + u >= ja && j + u <= jb ? si[j + u] : -INFINITY;
            mx[u] = v > mx[u] ? v : mx[u]; /* (fmaxf is a libm call) */
        }
    float m4[4];
    for (int c = 0; c < 4; c++) {
        const float a = mx[c] > mx[c + 4] ? mx[c] : mx[c + 4];
        const float b = mx[c + 8] > mx[c + 12] ? mx[c + 8] : mx[c + 12];
        m4[c] = a > b ? a : b;
    }
    const float m01 = m4[0] > m4[1] ? m4[0] : m4[1], m23 = m4[2] > m4[3] ? m4[2] : m4[3];
    const float tile_max = m01 > m23 ? m01 : m23;
    const float m_new = tile_max > *m ? tile_max : *m;
#pragma omp simd
    for (int u = 0; u < ATT_LANES; u++) sum[u] = 0.0f;
    for (int j = 0; j < KV_TILE; j += ATT_LANES)
#pragma omp simd
        for (int u = 0; u < ATT_LANES; u++) {
            const float e =
                j + u >= ja && j + u <= jb ? exp_fast((si[j + u] - m_new) * scale) : 0.0f;
            si[j + u] = e;
            sum[u] += e;
        }
    if (m_new > *m) { /* else the correction is exactly 1 */
        const float correction = exp_fast((*m - m_new) * scale);
#pragma omp simd
        for (int d = 0; d < hd; d++) o[d] *= correction;
#pragma omp simd
        for (int u = 0; u < ATT_LANES; u++) l[u] *= correction;
    }
#pragma omp simd
    for (int u = 0; u < ATT_LANES; u++) l[u] += sum[u];
    *m = m_new;
}

/* One task of attention(): queries t0 .. t0+nq-1 of heads h0 .. h0+nh-1 against the cache, one
 * key tile at a time, and within a tile one head after another: the tile's scores (the set's
 * att_scores), the online softmax on them, then their weighted values (att_pv). Keys a query may
 * not see get probability 0. att_scores scores whole tiles, so in the last tile it also reads keys
 * not written yet (past the last query: whatever the cache holds there); their scores are masked
 * like the future, and att_pv reads only the nk keys written. A head's sums are the same whatever
 * heads share its task; sharing is for decoding, where a tile's heads lie side by side in the
 * cache: one task streams all its heads' keys (and values) as one run of memory instead of an
 * 8 KB block per head (F16, head_dim 64), which the hardware prefetchers met cold each time. */
static void attention_task(float *out, const float *q, const void *kc, const void *vc, int n,
                           int pos0, const AttnShape *a, int h0, int nh, int t0) {
    const Kernels *k = kernels_active();
    void (*scores)(float *, const float *, int, int, const void *, int) = k->att_scores[a->kv_type];
    void (*pv)(float *, int, const float *, int, const void *, int, int) = k->att_pv[a->kv_type];
    const size_t bytes = kv_types[a->kv_type].bytes;
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads, stride = a->n_heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    const int nq = n - t0 < ATT_QB ? n - t0 : ATT_QB; /* nh * nq <= ATT_QB (attention) */
    /* row r = (head h0 + r / nq, query t0 + r % nq) */
    float s[ATT_QB][KV_TILE], m[ATT_QB], l[ATT_QB][ATT_LANES];
    for (int r = 0; r < nh * nq; r++) {
        float *o = out + (size_t)(t0 + r % nq) * stride + (size_t)(h0 + r / nq) * hd;
        m[r] = -INFINITY;
        for (int u = 0; u < ATT_LANES; u++) l[r][u] = 0.0f;
        for (int d = 0; d < hd; d++) o[d] = 0.0f;
    }
    /* the tiles holding keys any query of the block can see */
    const int j_lo = attn_first_visible(pos0 + t0, a->window), j_hi = pos0 + t0 + nq - 1;
    for (int j0 = j_lo / KV_TILE * KV_TILE; j0 <= j_hi; j0 += KV_TILE) {
        const int nk = j_hi - j0 + 1 < KV_TILE ? j_hi - j0 + 1 : KV_TILE; /* keys written */
        for (int hh = 0; hh < nh; hh++) {
            const int h = h0 + hh, kvh = h / group;
            const float *qb = q + (size_t)t0 * stride + (size_t)h * hd; /* query i: + i * stride */
            float *ob = out + (size_t)t0 * stride + (size_t)h * hd;
            float(*sh)[KV_TILE] = s + hh * nq;
            scores(sh[0], qb, stride, nq, (const char *)kc + key_index(a, kvh, j0, 0) * bytes, hd);
            for (int i = 0; i < nq; i++) {
                const int p = pos0 + t0 + i, lo = attn_first_visible(p, a->window), r = hh * nq + i;
                /* this query's visible keys in the tile: [ja, jb], relative to j0 */
                const int ja = (lo > j0 ? lo : j0) - j0,
                          jb = (p < j0 + nk - 1 ? p : j0 + nk - 1) - j0;
                if (ja > jb) { /* none: probabilities 0, the running softmax unchanged */
                    memset(sh[i], 0, sizeof sh[i]);
                    continue;
                }
                if (ja == 0 && jb == KV_TILE - 1) /* the whole tile visible: no mask to apply */
                    softmax_tile(sh[i], 0, KV_TILE - 1, scale, &m[r], l[r], ob + (size_t)i * stride,
                                 hd);
                else
                    softmax_tile(sh[i], ja, jb, scale, &m[r], l[r], ob + (size_t)i * stride, hd);
            }
            pv(ob, stride, sh[0], nq, (const char *)vc + value_index(a, kvh, j0) * bytes, nk, hd);
        }
    }
    for (int r = 0; r < nh * nq; r++) {
        float *o = out + (size_t)(t0 + r % nq) * stride + (size_t)(h0 + r / nq) * hd, sum = 0.0f;
        for (int u = 0; u < ATT_LANES; u++) sum += l[r][u];
        const float inv = 1.0f / sum;
        for (int d = 0; d < hd; d++) o[d] *= inv;
    }
}

/* Tiled attention with an online softmax (the "flash attention" idea). A block of up to ATT_QB
 * queries of one head visits the keys in the cache's own tiles of KV_TILE. For each query it
 * keeps the running maximum score m, the running sum l of exp(score - m) and the output o
 * accumulated so far; a tile with a larger maximum m' rescales l and o by exp(m - m') before
 * adding its own terms. At the end o / l is exactly the softmax-weighted sum, yet no row of T
 * scores, let alone the T x T matrix, is ever stored: a thread needs ATT_QB x KV_TILE scores,
 * whatever the length of the sequence.
 * A task is a query block of one head, or of as many heads as fit in ATT_QB rows when the block
 * is shorter (decoding: one query), as long as every thread still gets a task. Each (query,
 * head) is summed the same way in any task, so results do not depend on the number of threads. */
void attention(float *out, const float *q, const void *kc, const void *vc, int n, int pos0,
               const AttnShape *a) {
    const int n_blocks = (n + ATT_QB - 1) / ATT_QB, nq = n < ATT_QB ? n : ATT_QB;
    const int threads = omp_get_max_threads(), per_thread = (a->n_heads + threads - 1) / threads;
    int nh = 1; /* heads per task */
    if (n_blocks == 1) nh = ATT_QB / nq < per_thread ? ATT_QB / nq : per_thread;
    const int n_groups = (a->n_heads + nh - 1) / nh;
    /* a thread's next task is most often the same heads' (their keys and values still in the
       cache), and each head's last query blocks, which see the most keys, go first, so that
       the cheapest tasks are the ones left to even out the threads at the end */
#pragma omp parallel for schedule(dynamic, 1)
    for (int task = 0; task < n_blocks * n_groups; task++) {
        const int block = n_blocks - 1 - task % n_blocks, h0 = task / n_blocks * nh;
        attention_task(out, q, kc, vc, n, pos0, a, h0, a->n_heads - h0 < nh ? a->n_heads - h0 : nh,
                       block * ATT_QB);
    }
}
