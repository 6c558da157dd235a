/* kernels.h: tensors, the matrix products (kernels.c) and attention (kernels_attn.c); the leaf
   kernels come in sets, one file per instruction set: see kernels_sets.h). */
#ifndef KERNELS_H
#define KERNELS_H

#include <string.h>

#include "gguf.h"
#include "half.h"
#include "kernels_quant.h"

/* One matmul interface; the kernel for a weight type is chosen once per call from the tensor's
   type, never per element. */

typedef struct {
    uint32_t type;  /* GGML_*: any type weight_type() knows (kernels_quant.h) */
    int rows, cols; /* (rows, cols); a row is `cols` contiguous elements */
    size_t row_bytes;
    const void *data;      /* borrowed from the mmap; NULL when the tensor is absent */
    const uint8_t *packed; /* Q8_0, Q4_0, Q5_0, Q4_K, Q6_K: the same weights repacked for decoding
                              (Q8P, KP layouts below), borrowed from the model; else NULL */
} Tensor;

/* The KV cache's element type (--kv-cache): F32, or F16, half the bytes, each key and value
   rounded to nearest even (f32_to_f16) as kv_store() writes it. The attention kernels of a type
   are chosen once per call (Kernels.att_scores[type], att_pv[type]). */
typedef enum { KV_F32, KV_F16, KV_TYPES } KvType;
typedef struct {
    const char *name; /* --kv-cache's spelling: "f32", "f16" */
    size_t bytes;     /* per element */
} KvTypeInfo;
extern const KvTypeInfo kv_types[KV_TYPES];
int kv_type_from_name(const char *name, KvType *out); /* 0, or -1 for an unknown name */

/* One weight row against the activations in the format its type's dot product takes (floats,
   or quantized to Q8_0 or Q8_K: WeightType.act), n columns. */
typedef float (*DotFn)(const void *w, const void *x, int n);

/* A set of leaf kernels for one instruction set (AVX-512, AVX2, NEON or portable C). */
typedef struct {
    const char *name;
    int tile_r, tile_c;         /* tile_f32 computes tile_r weight rows x tile_c positions */
    DotFn dot[GGML_TYPE_COUNT]; /* by weight type; NULL: the set has none, dot_ref() runs */
    /* out[t * ostride + r] = (accumulate ? out[..] : 0) + sum_i w[r * wstride + i] xt[i * tile_c + t]
       for r < nr <= tile_r, t < nt <= tile_c: xt holds tile_c positions transposed */
    void (*tile_f32)(float *out, int ostride, const float *w, int wstride, int nr, const float *xt,
                     int k, int nt, int accumulate);
    void (*f16_to_f32_row)(float *out, const uint16_t *in, int n);
    void (*bf16_to_f32_row)(float *out, const uint16_t *in, int n); /* exact, as bf16_to_f32 */
    /* attention on one key tile (see kernels_simd.h): scores s (nq, KV_TILE) of queries q against
       all KV_TILE transposed keys kt (hd, KV_TILE), unscaled (the softmax scales them); o (nq, hd)
       += p (nq, nk) times values v (nk, hd), p's rows KV_TILE apart */
    /* by the cache's element type (KvType above): kt and v hold floats or halves */
    void (*att_scores[KV_TYPES])(float *s, const float *q, int qstride, int nq, const void *kt,
                                 int hd);
    void (*att_pv[KV_TYPES])(float *o, int ostride, const float *p, int nq, const void *v, int nk,
                             int hd);
    /* n floats to halves, rounded to nearest even as f32_to_f16 (finite inputs) */
    void (*f32_to_f16_row)(uint16_t *out, const float *in, int n);
    /* Q8_0 weights against Q8_0 activations in integer arithmetic, Q8T_R rows x Q8T_P positions
       (NULL in sets without one; the packed layout is at tile_q8_avx512, kernels_avx512.c) */
    void (*tile_q8)(float *out, int ostride, const BlockQ8 *const *w, int nr, const int8_t *xp,
                    const int32_t *xs, const float *xd, int nb, int nt);
    /* The other quantized types for prompts, in integer arithmetic (NULL in sets without it):
       nr <= Q8T_R weight rows unpacked once to levels u = q + 128 (unsigned bytes, wu[r][i]) and
       per group of G = 16 or 32 columns the row's a and b (weight = a q - b; wb NULL when every
       b is 0), against Q8T_P positions of activations quantized (Q8_0 or Q8_K) and packed in
       groups of 16 columns (layout at tile_lv_avx512, kernels_avx512.c); cols columns. */
    void (*tile_lv)(float *out, int ostride, const uint8_t *const *wu, const float *const *wa,
                    const float *const *wb, int nr, const int8_t *xp, const int32_t *xn,
                    const float *xa, const float *xm, int cols, int G, int nt);
    /* one weight row as tile_lv's levels u (cols), a and b (cols / G), by weight type (NULL:
       the type's generic unpack, kernels_quant.c, runs) */
    void (*lv_row[GGML_TYPE_COUNT])(uint8_t *u, float *a, float *b, const void *row, int cols);
    /* Decoding with Q8_0, Q4_0 or Q5_0 weights repacked (the Q8P layout below), by weight type:
       out[r] for the nr <= Q8P_R rows of one group w (nb blocks) against one position's Q8_0
       activations x, with xs[b] = -128 * (the sum of x[b]'s 32 levels) and xd[b] = x[b]'s
       scale as a float (q8p_act). NULL for types the set has none for: then Tensor.packed is
       not built (model_repack) */
    void (*gemv_packed[GGML_TYPE_COUNT])(float *out, int nr, const uint8_t *w, const BlockQ8 *x,
                                         const int32_t *xs, const float *xd, int nb);
    /* The same for Q4_K and Q6_K repacked (the KP layout below): one group w of nb super-blocks
       against one position's Q8_K activations x and their words xk (kp_act). NULL: not built */
    void (*gemv_packed_k[GGML_TYPE_COUNT])(float *out, int nr, const uint8_t *w, const BlockQ8K *x,
                                           const int32_t *xk, int nb);
    /* Prompts with Q8_0, Q4_0 or Q5_0 weights repacked, by weight type: out[t * ostride + r] for the
       nr <= Q8P_R rows of one group w (nb blocks) and nt <= Q8P_T positions, whose Q8_0
       activations come interleaved by block (q8p_tile_act): for block b and position t,
       xq[(b * Q8P_T + t) * 32 ..] its 32 levels, xs[b * Q8P_T + t] and xd[..] as q8p_act gives
       them; positions nt .. Q8P_T - 1 are read (zeros) and not stored. Each output is summed as
       gemv_packed_ref sums it, bit for bit. NULL: prompts read the file's layout instead */
    void (*tile_packed[GGML_TYPE_COUNT])(float *out, int ostride, int nr, const uint8_t *w,
                                         const int8_t *xq, const int32_t *xs, const float *xd,
                                         int nb, int nt);
    /* q8p_tile_act (below) in the set's vectors, bit for bit (NULL: the plain one runs) */
    void (*tile_act)(int8_t *xq, int32_t *xs, float *xd, const float *x, int nb, int t);
    /* Prompts with Q4_K or Q6_K weights repacked (the KP layout below), by weight type:
       out[t * ostride + r] for the nr <= Q8P_R rows of one group w (nb super-blocks) and
       nt <= Q8P_T positions, whose Q8_K activations come interleaved by super-block
       (kp_tile_act): for super-block b and position t, x[b * Q8P_T + t] and its words
       xk[(b * Q8P_T + t) * KP_XK ..] as kp_act gives them; positions nt .. Q8P_T - 1 are read
       (zeros) and not stored. Each output is summed as gemv_packed_k_ref sums it, bit for bit.
       NULL: prompts read the file's layout instead */
    void (*tile_packed_k[GGML_TYPE_COUNT])(float *out, int ostride, int nr, const uint8_t *w,
                                           const BlockQ8K *x, const int32_t *xk, int nb, int nt);
    /* kp_tile_act (below) in the set's vectors, bit for bit (NULL: the plain one runs) */
    void (*tile_act_k)(BlockQ8K *xq, int32_t *xk, const float *x, int nb, int t);
} Kernels;
#define Q8T_R 4  /* weight rows of a tile_q8 */
#define Q8T_P 32 /* positions of a tile_q8 */
#define Q8P_T 12 /* positions of a tile_packed */

/* Q8P: Q8_0, Q4_0 and Q5_0 weights repacked at load so that decoding streams them with few
 * instructions (model_repack; --no-repack keeps the file's layout). In the file a row is
 * nb = cols / 32 blocks of 34 (18, 22) bytes, so one row's blocks feed one dot product and every
 * block needs its own scale broadcast and a horizontal sum. Here Q8P_R = 16 rows form a group,
 * one row per 32-bit lane of a 512-bit vector, Q8P_GROUP_BYTES(nb, qb) bytes per group, groups
 * one after another, qb = Q8P_QB(type) bytes of levels per block of 16 rows: 512 for Q8_0, 256
 * for Q4_0, 320 for Q5_0. A group is ceil(nb / 2) units of 64 + 2 qb bytes, for blocks
 * b = 2u, 2u + 1:
 *   d[i][r]         (64 bytes) row r's scale of block 2u + i, a half (zero-padded when odd);
 *   qs[i][k][r][j]  (qb bytes per block) byte 4k + j of row r's block 2u + i: for Q8_0 the
 *                   level plus 128 (as unsigned: VNNI multiplies unsigned by signed bytes),
 *                   k < 8; for Q4_0 and Q5_0 the file's byte (nibbles: weights 4k + j and
 *                   16 + 4k + j), k < 4; for Q5_0 then
 *   qh[i][r][j]     (64 bytes, the last of Q5_0's 320) the fifth bits of the weights whose
 *                   nibbles byte j of each qs[i][k][r] holds: bit k that of weight 4k + j, bit
 *                   4 + k that of weight 16 + 4k + j (the file's qh, bit i for weight i,
 *                   regrouped so that a byte lane finds its bits in its own byte: a byte-wise
 *                   bit test makes a product's mask, and a masked add puts the 16 in).
 * Rows past the tensor's last (in the last group) have scale 0. One vector of 4 activation
 * bytes broadcast then meets 16 rows at once, and the int32 lane sums are already per row: no
 * horizontal sums. Every vector is 64-byte aligned, and the weights are read as one forward
 * stream (measured: the scales in a stream of their own after the qs read slower from memory).
 * Same bytes as the file (Q5_0: 16 x 22 = 32 + 320 per block), plus 32 per group when nb is
 * odd. */
#define Q8P_R 16
#define Q8P_QB(type) ((type) == GGML_Q8_0 ? 512 : (type) == GGML_Q5_0 ? 320 : 256)
#define Q8P_UNIT(qb) (64 + 2 * (size_t)(qb))
#define Q8P_GROUP_BYTES(nb, qb) ((size_t)((nb) + 1) / 2 * 64 + (size_t)(nb) * (qb))
/* where block b of a group starts: its scales (16 halves), and its levels */
#define Q8P_SCALES(b, qb) ((size_t)(b) / 2 * Q8P_UNIT(qb) + (size_t)(b) % 2 * 32)
#define Q8P_QS(b, qb) ((size_t)(b) / 2 * Q8P_UNIT(qb) + 64 + (size_t)(b) % 2 * (qb))
size_t q8p_bytes(const Tensor *w); /* the packed size of Q8_0, Q4_0 or Q5_0 tensor w */
/* Repacks Q8_0, Q4_0 or Q5_0 tensor w into dst (q8p_bytes(w) bytes, 64-byte aligned); threads split
   groups. */
void q8p_pack(uint8_t *dst, const Tensor *w);
/* The plain reference of Kernels.gemv_packed[type] (same arguments), summing in the same order. */
void gemv_packed_ref(uint32_t type, float *out, int nr, const uint8_t *w, const BlockQ8 *x,
                     const int32_t *xs, const float *xd, int nb);
/* One position's Q8_0 activations x (nb blocks) as gemv_packed takes them: xs, xd (nb each). */
void q8p_act(int32_t *xs, float *xd, const BlockQ8 *x, int nb);
/* Position t (< Q8P_T) of a tile_packed's activations: x (nb * 32 floats) quantized to Q8_0 as
   decoding does (quantize_q8_0, q8p_act) into xq, xs, xd (layout at Kernels.tile_packed);
   x NULL: zeros. */
void q8p_tile_act(int8_t *xq, int32_t *xs, float *xd, const float *x, int nb, int t);

/* KP: Q4_K and Q6_K repacked for decoding, the Q8P idea for the K-quants' super-blocks of 256
 * weights (model_repack; --no-repack keeps the file's layout). A group is Q8P_R = 16 rows, one
 * per 32-bit lane, holding the nb = cols / 256 super-blocks one after another, KP_SB(type) bytes
 * each. Every scale and min is stored as a byte of its own, so that the kernel unpacks nothing
 * but levels; for a super-block, with r the row in the group:
 *   Q4_K, 2368 bytes (the file's 16 rows: 2304, +2.8%):
 *     d[r], dmin[r]   (32 + 32) halves, as in the file;
 *     sc[g][r]        (128) the 6-bit scale of group g (weights 32 g .. 32 g + 31);
 *     m[i][r][h]      (128) the 6-bit min of group 2 i + h (pairs, for vpdpwssd);
 *     qs[c][k][r][j]  (2048) byte 32 c + 4 k + j of row r's qs (c < 4, k < 8): its low nibble is
 *                     weight 64 c + 4 k + j (group 2 c), its high one weight 64 c + 32 + 4 k + j.
 *   Q6_K, 3392 bytes (file: 3360, +1%):
 *     d[r]            (64) floats (the file's halves, widened: no padding needed);
 *     sc[g][r]        (256) the signed scale of group g (weights 16 g .. 16 g + 15), as in the file;
 *     qs[g][p][r][j]  (3072) three vectors per group (p < 3): byte j of row r holds the level
 *                     (0..63, the file's q + 32) of weight 16 g + 4 p + j in bits 0-5, and bits
 *                     2 p, 2 p + 1 of the level of weight 16 g + 12 + j in bits 6-7.
 * A vector of 4 activation bytes broadcast meets 16 rows, as in Q8P; Q6_K's 6-bit levels cost
 * 9 logic operations per 4 such products (no shuffles). Rows past the tensor's last have zero
 * scales. The activations stay Q8_K, as for the file-layout dot products: one float scale per
 * 256 weights, so that a super-block is exact integer sums scaled once, and the sums of 16
 * (bsums) carry Q6_K's offset 32 and Q4_K's mins. Every vector is 64-byte aligned; one forward
 * stream. */
#define KP_SB(type) ((type) == GGML_Q4_K ? (size_t)2368 : (size_t)3392)
#define KP_HEAD 320 /* bytes before the levels in either type's super-block */
/* words per super-block of kp_act: Q6_K's group offsets -32 bsums[g] (16), then Q4_K's sums of
   the groups of 32 in pairs as two int16, s[2 i] | s[2 i + 1] << 16 (4) */
#define KP_XK 20
void kp_act(int32_t *xk, const BlockQ8K *x, int nb);
/* The plain reference of Kernels.gemv_packed_k[type], summing in the same order. */
void gemv_packed_k_ref(uint32_t type, float *out, int nr, const uint8_t *w, const BlockQ8K *x,
                       const int32_t *xk, int nb);
/* Position t (< Q8P_T) of a tile_packed_k's activations: x (nb * 256 floats) quantized to Q8_K
   as decoding does (quantize_q8_k, kp_act) into xq, xk (layout at Kernels.tile_packed_k); x NULL:
   zeros. */
void kp_tile_act(BlockQ8K *xq, int32_t *xk, const float *x, int nb, int t);

/* Either layout by weight type: does set k decode the type repacked, and its prompts too (then
   matmul never reads the file's layout); the bytes of one group of Q8P_R rows of `cols` columns;
   the packed size of w; and the packing (threads split groups). */
int kernels_packs(const Kernels *k, uint32_t type);
int kernels_tiles_packed(const Kernels *k, uint32_t type); /* do its prompts read it repacked */
size_t packed_group_bytes(uint32_t type, int cols);
size_t packed_bytes(const Tensor *w);
void tensor_pack(uint8_t *dst, const Tensor *w);

/* e^x within 2 ulp of expf, in straight-line code the compiler can vectorize (libm's expf and
 * floorf are calls it cannot): x = n ln2 + r with |r| <= ln2/2, n rounded to nearest by adding and
 * subtracting 1.5 * 2^23, e^r by a degree-7 polynomial (Cephes' coefficients), times 2^n built in
 * the exponent bits. Below -87.3 it returns ~1e-38, not 0; above 88.3, ~2e38, not inf; NaN stays
 * NaN (n is taken from a copy where NaN became -87.3, so the conversion to int is always defined).
 * Used by the tiled softmax and by SiLU, which call it ~10^6 times per prompt
 * (tests/c/test_kernels.c holds it to 1.5e-7 relative). */
static inline float exp_fast(float x) {
    const float shifter = 12582912.0f;
    const float xn = x > -87.3f ? (x < 88.3f ? x : 88.3f) : -87.3f;
    x = x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x;
    const float n = (xn * 1.44269504088896341f + shifter) - shifter;
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f; /* ln2 split in two: exact n*hi */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale); /* 2^n, from its exponent bits */
    return p * scale;
}
void kernels_init(void); /* F16 table; picks the best kernel set; call once */
int kernels_available(const Kernels **sets, int max); /* best first; returns the count */
void kernels_use(const Kernels *k);                   /* tests: run matmul with a given set */
const Kernels *kernels_active(void);
int kernels_supported(uint32_t type);

/* out (n, w->rows) = x (n, w->cols) @ w^T: row t of out holds W x_t. For quantized weights the
   activations are quantized too (Q8_0 or Q8_K, by the weight type's act), at every n: integer
   products per group of 16 weights. */
void matmul(float *out, const float *x, const Tensor *w, int n);
/* count (<= MATMUL_MAX) products of the same input x (n, cols) in one pass over the threads:
   outs[j] (n, ws[j]->rows) = x @ ws[j]^T. The weights must share cols. */
#define MATMUL_MAX 4
/* decoding quantizes a row of activations on the caller's stack: cols / 32 blocks of 34 bytes
   (Q8_0) or cols / 256 of 292 (Q8_K), 149 KB at most, and for repacked weights their words
   (8 bytes per 32 columns, 80 per 256: 41 KB at most) */
#define Q8_MAX_COLS (4096 * QK8_0)
void matmul_many(float *const *outs, const float *x, const Tensor *const *ws, int count, int n);
/* The plain reference the optimized kernels are tested against. */
void matmul_ref(float *out, const float *x, const Tensor *w, int n);
/* The shape of one layer's attention. Query head h reads key/value head h / (n_heads / n_kv_heads). */
typedef struct {
    int n_heads, n_kv_heads, head_dim;
    int window;         /* 0 = none; else a query at p sees keys p-W < j <= p */
    size_t tile_stride; /* elements from one tile of a layer's cache to its next (see below) */
    KvType kv_type;     /* the cache's element type (KV_F32 = 0 when not set) */
} AttnShape;

/* The KV cache grows in tiles of KV_TILE positions. A tile holds those positions' keys and values
 * for every layer, so the memory a sequence touches grows with its length, not with the context:
 *   key_cache   (tiles, n_layers, n_kv_heads, head_dim, KV_TILE): each head's keys transposed,
 *               so that a query's scores against a tile are head_dim vector multiply-adds
 *               across positions (no horizontal sums, no copying), over one contiguous 16 KB
 *               (head_dim 64, F32; 8 KB in F16);
 *   value_cache (tiles, n_layers, n_kv_heads, KV_TILE, head_dim): a head's values one contiguous
 *               row per position, so the weighted sum streams through memory.
 * The elements are floats or halves (AttnShape.kv_type); the layout is the same, in elements.
 * For one layer, kc and vc point at its part of tile 0 (key_cache + layer * kv_dim * KV_TILE
 * elements), and tile_stride = n_layers * kv_dim * KV_TILE. Key j, dim i of KV head h is then
 *   kc[(j / KV_TILE) * tile_stride + (h * head_dim + i) * KV_TILE + j % KV_TILE]
 * and value j, dim i is vc[(j / KV_TILE) * tile_stride + (h * KV_TILE + j % KV_TILE) * head_dim + i].
 * kv_store() writes n positions' keys and values k, v (n, n_kv_heads * head_dim), as the
 * projections produce them, into positions pos0 .. pos0+n-1 of that layout (F16: rounded to
 * nearest even). kv_key() and kv_value() read one key element and one value row back as floats. */
#define KV_TILE 64
static inline int kv_tiles(int seq_len) { return (seq_len + KV_TILE - 1) / KV_TILE; }
void kv_store(void *kc, void *vc, const float *k, const float *v, int n, int pos0,
              const AttnShape *a);
float kv_key(const void *kc, const AttnShape *a, int h, int j, int i);
void kv_value(float *out, const void *vc, const AttnShape *a, int h, int j); /* (head_dim) */

/* Causal attention for n queries at positions pos0 .. pos0+n-1 against a layer's cache kc, vc
 * (positions 0 .. pos0+n-1 filled):
 *   q (n, n_heads * head_dim) -> out (n, n_heads * head_dim), the heads' outputs concatenated.
 * attention() works in tiles with an online softmax and never stores a row of scores;
 * attention_ref() is the textbook version that also hands out the probabilities:
 * probs (n, n_heads, probs_stride), zero outside the visible keys (out may be NULL). */
/* The causal mask and the sliding window, the one place they are written: the query at position p
   sees the keys attn_first_visible(p, window) .. p (window 0: every key from 0). */
static inline int attn_first_visible(int p, int window) {
    return window && p >= window ? p - window + 1 : 0;
}

void attention(float *out, const float *q, const void *kc, const void *vc, int n, int pos0,
               const AttnShape *a);
void attention_ref(float *out, float *probs, int probs_stride, const float *q, const void *kc,
                   const void *vc, int n, int pos0, const AttnShape *a);
/* The plain references of Kernels.att_scores[type] and att_pv[type] (same arguments). */
void att_scores_ref(KvType type, float *s, const float *q, int qstride, int nq, const void *kt,
                    int hd);
void att_pv_ref(KvType type, float *o, int ostride, const float *p, int nq, const void *v, int nk,
                int hd);

/* out (w->cols) = row `row` of w as floats (embedding lookup). */
void tensor_row(float *out, const Tensor *w, int row);
/* A view of rows [start, start + n) of w (used to split GPT-2's fused qkv weight). */
Tensor tensor_rows(const Tensor *w, int start, int n);

#endif /* KERNELS_H */
