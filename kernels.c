/* kernels.c: the driver of the kernels: the matrix products every layer runs, their plain
 * reference, and the choice of a kernel set (attention is kernels_attn.c).
 *
 * One entry point, matmul(out, x, w, n), for every weight type (F32, F16 and the quantized types
 * of kernels_quant.h):
 *   - n small (decoding): each output is one dot product of a weight row with x; the work is
 *     reading the weights once, so the kernels are plain streaming dot products.
 *   - n large (a prompt): a tiled matrix-matrix product; each weight row is loaded once per tile
 *     of TC positions and each activation once per TR rows, so it is bound by arithmetic.
 * Quantized weights always meet activations quantized as well (as in llama.cpp: to Q8_0, or to
 * Q8_K for the K-quants): exact integer dot products per group when decoding, and for prompts
 * integer tiles where the set has them (AVX-512 VNNI: Q8_0, Q4_0, Q5_0, Q4_K and Q6_K on their
 * repacked copy, tile_packed and tile_packed_k, else every quantized type on its file layout),
 * else float tiles on the dequantized values of both (the same sums up to rounding).
 * OpenMP splits output rows across threads. Every row is computed by one thread in a fixed
 * order, so results do not depend on the thread count.
 *
 * The leaf kernels come in sets, a file each (kernels_sets.h): AVX-512, AVX2 (x86-64 with GCC or
 * Clang), NEON (AArch64) and a portable C fallback. kernels_init() picks the best set the CPU has,
 * once. matmul_ref() is the textbook version the tests hold every set against.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_sets.h"

#ifdef _OPENMP
#include <omp.h>
#else /* one thread: the two OpenMP calls the scratch per thread needs (GemmInput.wbuf) */
static int omp_get_max_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif

/* ---- choosing a set -------------------------------------------------------------------- */

static const Kernels *active = &kernels_portable;

int kernels_available(const Kernels **sets, int max) {
    int n = 0;
#ifdef KERNELS_X86
    __builtin_cpu_init();
    if (n < max && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        sets[n++] = &kernels_avx512;
    /* F16C is not asked for: every AVX2 CPU has it, and Clang cannot ask */
    if (n < max && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        sets[n++] = &kernels_avx2;
#endif
#ifdef KERNELS_NEON
    if (n < max) sets[n++] = &kernels_neon;
#endif
    if (n < max) sets[n++] = &kernels_portable;
    return n;
}

void kernels_init(void) {
    half_init();
    const Kernels *sets[4];
    kernels_available(sets, 4);
    active = sets[0]; /* the best first */
}

void kernels_use(const Kernels *k) { active = k; }
const Kernels *kernels_active(void) { return active; }

int kernels_supported(uint32_t type) { return weight_type(type) != NULL; }

/* ---- row access ------------------------------------------------------------------------ */

static const uint8_t *row_ptr(const Tensor *w, int row) {
    return (const uint8_t *)w->data + (size_t)row * w->row_bytes;
}

/* Columns [c0, c0 + n) of row `row` as floats; c0 and n multiples of the type's block. Halves
   (F16, BF16) are widened by the set's kernel, the rest by the type's dequantizer. */
static void row_span(float *out, const Tensor *w, int row, int c0, int n) {
    const uint8_t *p = row_ptr(w, row) + ggml_row_bytes(w->type, (uint64_t)c0);
    if (w->type == GGML_F16)
        active->f16_to_f32_row(out, (const uint16_t *)p, n);
    else if (w->type == GGML_BF16)
        active->bf16_to_f32_row(out, (const uint16_t *)p, n);
    else
        dequantize(w->type, out, p, n);
}

/* The activations x (n floats) in the format act (GGML_Q8_0 or GGML_Q8_K), into out. */
static void quantize_act(uint32_t act, void *out, const float *x, int n) {
    weight_type(act)->quantize(out, x, n);
}

void tensor_row(float *out, const Tensor *w, int row) { row_span(out, w, row, 0, w->cols); }

Tensor tensor_rows(const Tensor *w, int start, int n) {
    Tensor v = *w;
    v.rows = n;
    v.data = row_ptr(w, start);
    /* a view starting on a group boundary keeps the packed rows (its last group may hold rows
       past the view: they are computed and not stored); any other view is read in place */
    v.packed = w->packed && start % Q8P_R == 0
                   ? w->packed + (size_t)(start / Q8P_R) * packed_group_bytes(w->type, w->cols)
                   : NULL;
    return v;
}

/* ---- Q8_0, Q4_0 and Q5_0 repacked for decoding (the Q8P layout, kernels.h) ------------ */

size_t q8p_bytes(const Tensor *w) {
    return (size_t)((w->rows + Q8P_R - 1) / Q8P_R) * Q8P_GROUP_BYTES(w->cols / QK, Q8P_QB(w->type));
}

/* Row r's block b (blk, the file's) into the group dg of its layout: one function per type. */
typedef void (*PackBlock)(uint8_t *dg, int r, int b, const uint8_t *blk);

/* The walk every packing shares: each group of Q8P_R rows cleared (rows past the tensor's last
   keep zero scales), then its rows' blocks packed one by one; threads split groups. */
static void pack_groups(uint8_t *dst, const Tensor *w, PackBlock pack) {
    const int block = (int)ggml_block_size(w->type), nb = w->cols / block;
    const int groups = (w->rows + Q8P_R - 1) / Q8P_R;
    const size_t gbytes = packed_group_bytes(w->type, w->cols), bytes = w->row_bytes / nb;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < groups; g++) {
        uint8_t *dg = dst + (size_t)g * gbytes;
        memset(dg, 0, gbytes);
        for (int r = 0; r < Q8P_R && g * Q8P_R + r < w->rows; r++) {
            const uint8_t *src = row_ptr(w, g * Q8P_R + r);
            for (int b = 0; b < nb; b++) pack(dg, r, b, src + (size_t)b * bytes);
        }
    }
}

/* Q5_0's fifth bits of one row's block (the file's qh, bit i for weight i) as the Q8P layout's 4
   bytes qh[r][j]: bit k of byte j for weight 4k + j, bit 4 + k for weight 16 + 4k + j. */
static void q5p_fifth_bits(uint8_t out[4], const uint8_t qh[4]) {
    const uint32_t h = qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    for (int j = 0; j < 4; j++) {
        unsigned v = 0;
        for (int k = 0; k < 4; k++)
            v |= (h >> (4 * k + j) & 1) << k | (h >> (16 + 4 * k + j) & 1) << (4 + k);
        out[j] = (uint8_t)v;
    }
}

/* The block types start with their half scale; the levels follow: 32 bytes (Q8_0, stored plus
   128), or 16 of nibbles (Q4_0 as they are; Q5_0 after its 4 bytes of fifth bits, which follow
   the nibbles in the layout). */
static inline void q8p_block(uint8_t *dg, int r, int b, const uint8_t *blk, const uint32_t type) {
    const int qb = Q8P_QB(type), q5 = type == GGML_Q5_0, lv = q5 ? 6 : 2; /* levels start */
    const int words = (q5 ? 256 : qb) / (Q8P_R * 4); /* 4-byte words of levels per row block */
    const uint32_t offset = type == GGML_Q8_0 ? 0x80808080u : 0;
    uint8_t *qs = dg + Q8P_QS(b, qb) + (size_t)r * 4; /* qs[k][r][j] at k * 64 */
    for (int k = 0; k < words; k++) {
        uint32_t v;
        memcpy(&v, blk + lv + 4 * k, 4);
        v ^= offset;
        memcpy(qs + (size_t)k * Q8P_R * 4, &v, 4);
    }
    if (q5) q5p_fifth_bits(qs + (size_t)words * Q8P_R * 4, blk + 2);
    memcpy(dg + Q8P_SCALES(b, qb) + 2 * r, blk, 2);
}
static void q8p_block_q8_0(uint8_t *dg, int r, int b, const uint8_t *blk) {
    q8p_block(dg, r, b, blk, GGML_Q8_0);
}
static void q8p_block_q4_0(uint8_t *dg, int r, int b, const uint8_t *blk) {
    q8p_block(dg, r, b, blk, GGML_Q4_0);
}
static void q8p_block_q5_0(uint8_t *dg, int r, int b, const uint8_t *blk) {
    q8p_block(dg, r, b, blk, GGML_Q5_0);
}

void q8p_pack(uint8_t *dst, const Tensor *w) {
    pack_groups(dst, w,
                w->type == GGML_Q8_0   ? q8p_block_q8_0
                : w->type == GGML_Q4_0 ? q8p_block_q4_0
                                       : q8p_block_q5_0);
}

void q8p_act(int32_t *xs, float *xd, const BlockQ8 *x, int nb) {
    for (int b = 0; b < nb; b++) {
        int32_t sum = 0;
        for (int i = 0; i < QK8_0; i++) sum += x[b].qs[i];
        xs[b] = -128 * sum;
        xd[b] = f16_table[x[b].d];
    }
}

void q8p_tile_act(int8_t *xq, int32_t *xs, float *xd, const float *x, int nb, int t) {
    for (int b = 0; b < nb; b++) {
        BlockQ8 q;
        if (x)
            quantize_q8_0(&q, x + (size_t)b * QK8_0, QK8_0);
        else
            memset(&q, 0, sizeof q);
        const size_t at = (size_t)b * Q8P_T + t;
        memcpy(xq + at * QK8_0, q.qs, QK8_0);
        q8p_act(xs + at, xd + at, &q, 1);
    }
}

/* Row r: sum_b (offset_b + sum_i q_r[b][i] x[b][i]) * (d_r[b] * xd[b]), the int sum exact
   (q unsigned: Q8_0's level + 128 with offset_b = xs[b] = -128 sum x; Q4_0's nibble with
   offset_b = xs[b] / 16 = -8 sum x; Q5_0's nibble plus 16 times its fifth bit with
   offset_b = xs[b] / 8 = -16 sum x), the float terms added in block order with one rounding
   each (fmaf), as the vector lanes do. */
void gemv_packed_ref(uint32_t type, float *out, int nr, const uint8_t *w, const BlockQ8 *x,
                     const int32_t *xs, const float *xd, int nb) {
    const int qb = Q8P_QB(type);
    for (int r = 0; r < nr; r++) {
        float acc = 0.0f;
        for (int b = 0; b < nb; b++) {
            const uint8_t *qs = w + Q8P_QS(b, qb);
            uint16_t d;
            memcpy(&d, w + Q8P_SCALES(b, qb) + 2 * r, 2);
            int32_t isum = type == GGML_Q8_0 ? xs[b] : type == GGML_Q5_0 ? xs[b] / 8 : xs[b] / 16;
            for (int i = 0; i < QK; i++) {
                const int byte = type == GGML_Q8_0 ? i : i % 16; /* Q4_0, Q5_0: nibble i / 16 */
                const int v = qs[(byte / 4) * Q8P_R * 4 + r * 4 + byte % 4];
                int q = type == GGML_Q8_0 ? v : (v >> (4 * (i / 16))) & 15;
                if (type == GGML_Q5_0) /* bit byte / 4 + 4 (i / 16) of qh[r][byte % 4] */
                    q |= (qs[256 + r * 4 + byte % 4] >> (byte / 4 + 4 * (i / 16)) & 1) << 4;
                isum += q * x[b].qs[i];
            }
            acc = fmaf((float)isum, f16_table[d] * xd[b], acc);
        }
        out[r] = acc;
    }
}

/* ---- Q4_K and Q6_K repacked for decoding (the KP layout, kernels.h) -------------------- */

/* Row r's super-block b (blk, the file's block) into super-block b of its group dg. */
static void kp_block_q4_k(uint8_t *dg, int r, int b, const uint8_t *blk) {
    const BlockQ4K *q = (const BlockQ4K *)blk;
    uint8_t *sb = dg + (size_t)b * KP_SB(GGML_Q4_K);
    memcpy(sb + 2 * r, &q->d, 2);
    memcpy(sb + 32 + 2 * r, &q->dmin, 2);
    for (int g = 0; g < 8; g++) {
        int sc, m;
        scale_min_k4(q->scales, g, &sc, &m);
        sb[64 + 16 * g + r] = (uint8_t)sc;
        sb[192 + 32 * (g / 2) + 2 * r + g % 2] = (uint8_t)m;
    }
    for (int v = 0; v < 32; v++) /* vector v = 8 c + k holds bytes 32 c + 4 k .. of each row */
        memcpy(sb + KP_HEAD + (size_t)v * 64 + 4 * r, q->qs + 4 * v, 4);
}

/* Q6_K's 256 levels (0..63) in order (kernels_quant.h: weight 128 n + 32 k + l, its low 4 bits
   in nibble k / 2 of ql[64 n + 32 (k % 2) + l], its high 2 at bit 2k of qh[32 n + l]); the
   type's own unpack says the same through floats and takes 5x longer, the most of a load. */
static void q6_k_levels(uint8_t *q, const BlockQ6K *b) {
    for (int n = 0; n < 2; n++)
        for (int l = 0; l < 32; l++) {
            const int lo0 = b->ql[64 * n + l], lo1 = b->ql[64 * n + 32 + l], h = b->qh[32 * n + l];
            q[128 * n + l] = (uint8_t)((lo0 & 15) | (h & 3) << 4);
            q[128 * n + 32 + l] = (uint8_t)((lo1 & 15) | (h >> 2 & 3) << 4);
            q[128 * n + 64 + l] = (uint8_t)((lo0 >> 4) | (h >> 4 & 3) << 4);
            q[128 * n + 96 + l] = (uint8_t)((lo1 >> 4) | (h >> 6) << 4);
        }
}

static void kp_block_q6_k(uint8_t *dg, int r, int b, const uint8_t *blk) {
    const BlockQ6K *q6 = (const BlockQ6K *)blk;
    uint8_t *sb = dg + (size_t)b * KP_SB(GGML_Q6_K);
    const float d = f16_table[q6->d];
    memcpy(sb + 4 * r, &d, 4);
    uint8_t lv[QK_K];
    q6_k_levels(lv, q6);
    for (int g = 0; g < 16; g++) {
        sb[64 + 16 * g + r] = (uint8_t)q6->scales[g];
        const uint8_t *q = lv + 16 * g;
        for (int p = 0; p < 3; p++)
            for (int j = 0; j < 4; j++) {
                const int own = q[4 * p + j], last = q[12 + j];
                sb[KP_HEAD + (size_t)(3 * g + p) * 64 + 4 * r + j] =
                    (uint8_t)(own | ((last >> (2 * p)) & 3) << 6);
            }
    }
}

void kp_act(int32_t *xk, const BlockQ8K *x, int nb) {
    for (int b = 0; b < nb; b++) {
        const int16_t *s = x[b].bsums;
        int32_t *o = xk + (size_t)b * KP_XK;
        for (int g = 0; g < 16; g++) o[g] = -32 * s[g];
        for (int i = 0; i < 4; i++) {
            const int lo = s[4 * i] + s[4 * i + 1], hi = s[4 * i + 2] + s[4 * i + 3];
            o[16 + i] = (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
        }
    }
}

void kp_tile_act(BlockQ8K *xq, int32_t *xk, const float *x, int nb, int t) {
    for (int b = 0; b < nb; b++) {
        const size_t at = (size_t)b * Q8P_T + t;
        if (x)
            quantize_q8_k(xq + at, x + (size_t)b * QK_K, QK_K);
        else
            memset(xq + at, 0, sizeof *xq);
        kp_act(xk + at * KP_XK, xq + at, 1);
    }
}

/* Row r: per super-block b the exact integer sums isum = sum_g sc_g sum_i q_i x_i (Q6_K: of
   q - 32, the offset through x's bsums) and, for Q4_K, msum = sum_g m_g (the sum of x over g),
   then acc = fma(isum, d_r * x_b.d, acc) and acc = fma(-msum, dmin_r * x_b.d, acc), as the
   vector lanes do. xk is not read: the sums come from x's bsums, so that the kernel's use of
   kp_act is checked too. */
void gemv_packed_k_ref(uint32_t type, float *out, int nr, const uint8_t *w, const BlockQ8K *x,
                       const int32_t *xk, int nb) {
    (void)xk;
    for (int r = 0; r < nr; r++) {
        float acc = 0.0f;
        for (int b = 0; b < nb; b++) {
            const uint8_t *sb = w + (size_t)b * KP_SB(type), *qs = sb + KP_HEAD;
            const int8_t *xq = x[b].qs;
            const int16_t *bsums = x[b].bsums;
            int32_t isum = 0, msum = 0;
            if (type == GGML_Q4_K) {
                for (int g = 0; g < 8; g++) {
                    const int c = g / 2, h = g % 2;
                    int32_t s = 0;
                    for (int k = 0; k < 8; k++)
                        for (int j = 0; j < 4; j++) {
                            const int v = qs[(size_t)(8 * c + k) * 64 + 4 * r + j];
                            s += ((v >> (4 * h)) & 15) * xq[64 * c + 32 * h + 4 * k + j];
                        }
                    isum += s * sb[64 + 16 * g + r];
                    msum += sb[192 + 32 * c + 2 * r + h] * (bsums[2 * g] + bsums[2 * g + 1]);
                }
                uint16_t d, dmin;
                memcpy(&d, sb + 2 * r, 2);
                memcpy(&dmin, sb + 32 + 2 * r, 2);
                acc = fmaf((float)isum, f16_table[d] * x[b].d, acc);
                acc = fmaf(-(float)msum, f16_table[dmin] * x[b].d, acc);
            } else {
                for (int g = 0; g < 16; g++) {
                    const uint8_t *u = qs + (size_t)g * 3 * 64 + 4 * r; /* u[64 p + j] */
                    int32_t s = -32 * bsums[g];
                    for (int j = 0; j < 4; j++) {
                        for (int p = 0; p < 3; p++)
                            s += (u[64 * p + j] & 63) * xq[16 * g + 4 * p + j];
                        const int last = u[j] >> 6 | (u[64 + j] >> 6) << 2 | (u[128 + j] >> 6) << 4;
                        s += last * xq[16 * g + 12 + j];
                    }
                    isum += s * (int8_t)sb[64 + 16 * g + r];
                }
                float d;
                memcpy(&d, sb + 4 * r, 4);
                acc = fmaf((float)isum, d * x[b].d, acc);
            }
        }
        out[r] = acc;
    }
}

/* ---- either layout --------------------------------------------------------------------- */

int kernels_packs(const Kernels *k, uint32_t type) {
    return type < GGML_TYPE_COUNT && (k->gemv_packed[type] || k->gemv_packed_k[type]);
}

int kernels_tiles_packed(const Kernels *k, uint32_t type) {
    return type < GGML_TYPE_COUNT && (k->tile_packed[type] || k->tile_packed_k[type]);
}

size_t packed_group_bytes(uint32_t type, int cols) {
    switch (type) {
    case GGML_Q8_0:
    case GGML_Q4_0:
    case GGML_Q5_0: return Q8P_GROUP_BYTES(cols / QK, Q8P_QB(type));
    case GGML_Q4_K:
    case GGML_Q6_K: return (size_t)(cols / QK_K) * KP_SB(type);
    default: return 0;
    }
}

size_t packed_bytes(const Tensor *w) {
    return (size_t)((w->rows + Q8P_R - 1) / Q8P_R) * packed_group_bytes(w->type, w->cols);
}

void tensor_pack(uint8_t *dst, const Tensor *w) {
    switch (w->type) {
    case GGML_Q4_K: pack_groups(dst, w, kp_block_q4_k); break;
    case GGML_Q6_K: pack_groups(dst, w, kp_block_q6_k); break;
    default: q8p_pack(dst, w);
    }
}

/* ---- reference ------------------------------------------------------------------------- */

/* The textbook product, one weight at a time, with weights widened exactly. For quantized
   weights the activations are quantized first, as the kernels do (and widened back exactly). */
void matmul_ref(float *out, const float *x, const Tensor *w, int n) {
    const uint32_t act = weight_type(w->type)->act;
    float *wrow = malloc((size_t)w->cols * sizeof(float));
    float *xq = malloc((size_t)w->cols * sizeof(float));
    void *blocks = malloc(ggml_row_bytes(act, (uint64_t)w->cols) + 1);
    if (!wrow || !xq || !blocks) abort();
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * w->cols;
        if (act != GGML_F32) {
            quantize_act(act, blocks, xt, w->cols);
            dequantize(act, xq, blocks, w->cols);
            xt = xq;
        }
        for (int r = 0; r < w->rows; r++) {
            dequantize(w->type, wrow, row_ptr(w, r), w->cols);
            float sum = 0.0f;
            for (int c = 0; c < w->cols; c++) sum += wrow[c] * xt[c];
            out[(size_t)t * w->rows + r] = sum;
        }
    }
    free(wrow);
    free(xq);
    free(blocks);
}

/* ---- the driver ------------------------------------------------------------------------ */

#define GEMM_MIN_N 4 /* from this many positions on, the tiled product pays off */
/* Columns of non-F32 weights widened at a time (a multiple of every block): 2048 holds a whole
   row of 110M's feed-forward down projection, whose second chunk of 1024 re-read and re-wrote
   the tile's outputs (one 768 x 2048 F16 product on one core: 85-99 -> 100 GFLOP/s, 1024 -> 2048). */
#define KC 2048
/* Floats from one widened row to the next: KC and one cache line more, so that the tile's TR rows
   do not all fall in one set of the 8-way L1 cache (rows 4 KiB apart do; a few % faster at 110M
   F16 in a microbenchmark of one matmul, within the noise of a busy machine). */
#define KC_STRIDE (KC + 16)

/* Several products share one input (q, k and v; gate and up): their rows are numbered as one
 * list, so one parallel loop covers them all and the threads meet once instead of per weight. */
typedef struct {
    float *out[MATMUL_MAX];
    const Tensor *w[MATMUL_MAX];
    int start[MATMUL_MAX + 1]; /* first row (or row group) of each weight in the joint list */
    int count;
} Batch;

/* Does decoding read w repacked (Q8P or KP) with the set's kernel? */
static int packed(const Kernels *k, const Tensor *w) {
    return w->packed && kernels_packs(k, w->type);
}

/* Does a prompt read w repacked, with the set's tile_packed or tile_packed_k? */
static int packed_tile(const Kernels *k, const Tensor *w) {
    return w->packed && kernels_tiles_packed(k, w->type);
}

/* Rows of weights read in the file's layout that one decoding work item takes, one dot product
   after another: the per-item work (finding the weight, its type and kernel) then costs 1/16 as
   much. A 768-wide row of halves streams in ~60 ns; 110M F16 decoding at 1 thread went from
   85-86 to 98-103 tok/s (Zen 4) with items of 16 rows instead of one. */
#define GEMV_R 16

/* Numbers the batch's work items: for a prompt, groups of the set's tile_r rows, or of Q8P_R
   rows for weights read repacked; when decoding, groups of GEMV_R rows, or of Q8P_R rows for
   packed weights. */
static void batch_number(Batch *b, int gemm_path) {
    b->start[0] = 0;
    for (int j = 0; j < b->count; j++) {
        const Tensor *w = b->w[j];
        const int unit = gemm_path           ? (packed_tile(active, w) ? Q8P_R : active->tile_r)
                         : packed(active, w) ? Q8P_R
                                             : GEMV_R;
        b->start[j + 1] = b->start[j] + (w->rows + unit - 1) / unit;
    }
}

static int batch_find(const Batch *b, int i) {
    int j = 0;
    while (i >= b->start[j + 1]) j++;
    return j;
}

/* Decoding: one dot product per (position, row), GEMV_R rows to a work item, or one packed
 * kernel call per group of Q8P_R rows, split across threads. For quantized weights the
 * position's activations are quantized once, up front, into the formats the batch's types take
 * (Q8_0, Q8_K) on the calling thread's stack (no worker's), sized to the call: 2.2 KB of Q8_0 for
 * 2048 columns (at most Q8_MAX_COLS: 149 KB of Q8_K), so that decoding allocates nothing.
 * acts[f] is the activations in format f (the floats themselves for GGML_F32). */
static void gemv(const Batch *b, const float *x, int n) {
    const Kernels *k = active;
    const int cols = b->w[0]->cols, total = b->start[b->count], nb = cols / QK8_0;
    const int nbk = cols / QK_K;
    int need[GGML_TYPE_COUNT] = {0}, any_packed = 0, any_kp = 0;
    for (int j = 0; j < b->count; j++) {
        need[weight_type(b->w[j]->type)->act] = 1;
        any_packed |= packed(k, b->w[j]) && k->gemv_packed[b->w[j]->type];
        any_kp |= packed(k, b->w[j]) && k->gemv_packed_k[b->w[j]->type];
    }
    /* floats, so that Q8_K's float scales are aligned */
    float x80[need[GGML_Q8_0] ? ggml_row_bytes(GGML_Q8_0, cols) / 4 + 1 : 1];
    float x8k[need[GGML_Q8_K] ? ggml_row_bytes(GGML_Q8_K, cols) / 4 + 1 : 1];
    int32_t xs[any_packed ? nb : 1];
    float xd[any_packed ? nb : 1];
    int32_t xk[any_kp ? nbk * KP_XK : 1];
    const void *acts[GGML_TYPE_COUNT] = {[GGML_Q8_0] = x80, [GGML_Q8_K] = x8k};
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * cols;
        acts[GGML_F32] = xt;
        if (need[GGML_Q8_0]) quantize_q8_0((BlockQ8 *)x80, xt, cols);
        if (need[GGML_Q8_K]) quantize_q8_k((BlockQ8K *)x8k, xt, cols);
        if (any_packed) q8p_act(xs, xd, (const BlockQ8 *)x80, nb);
        if (any_kp) kp_act(xk, (const BlockQ8K *)x8k, nbk);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < total; i++) {
            const int j = batch_find(b, i), r = i - b->start[j]; /* a group of rows */
            const Tensor *w = b->w[j];
            float *out = b->out[j] + (size_t)t * w->rows;
            if (packed(k, w)) {
                const int r0 = r * Q8P_R, nr = w->rows - r0 < Q8P_R ? w->rows - r0 : Q8P_R;
                const uint8_t *wg = w->packed + (size_t)r * packed_group_bytes(w->type, cols);
                if (k->gemv_packed[w->type])
                    k->gemv_packed[w->type](out + r0, nr, wg, (const BlockQ8 *)x80, xs, xd, nb);
                else
                    k->gemv_packed_k[w->type](out + r0, nr, wg, (const BlockQ8K *)x8k, xk, nbk);
                continue;
            }
            const void *xa = acts[weight_type(w->type)->act];
            const DotFn dot = k->dot[w->type];
            const int r1 = (r + 1) * GEMV_R < w->rows ? (r + 1) * GEMV_R : w->rows;
            for (int row = r * GEMV_R; row < r1; row++)
                out[row] = dot ? dot(row_ptr(w, row), xa, cols)
                               : dot_ref(w->type, row_ptr(w, row), xa, cols);
        }
    }
}

/* Activations quantized (Q8_0 or Q8_K) and packed for tile_lv, in blocks of Q8T_P positions
   (layout at tile_lv_avx512, kernels_avx512.c). */
typedef struct {
    int8_t *xp;  /* (position blocks, cols / 4, Q8T_P, 4) levels */
    int32_t *xn; /* (position blocks, cols / 16, Q8T_P) -128 * the sum of a group's 16 levels */
    float *xa;   /* (position blocks, cols / 16, Q8T_P) the activation scale of the group */
    float *xm;   /* (position blocks, cols / 16, Q8T_P) xa * the sum of the group's levels */
} LvInput;

/* What a prompt's product builds from x before the tiles run, on the heap (a worker thread may
 * have as little as 128 KiB of stack: musl's default). Quantized weights in a prompt meet
 * activations quantized as in decoding and in matmul_ref: each position's activations are
 * quantized once per call. */
typedef struct {
    /* by activation format (WeightType.act): x transposed in blocks of TC, as floats
       (xt[GGML_F32]) or through Q8_0 / Q8_K and back (for weights without an integer tile) */
    float *xt[GGML_TYPE_COUNT];
    int8_t *xp; /* Q8_0 weights with tile_q8: x quantized and packed (kernels_avx512.c) */
    int32_t *xs;
    float *xd;
    float *wbuf; /* weights other than F32 without an integer tile: TR rows of KC columns
                           widened to floats, for each thread a parallel loop started here may have */
    LvInput lv[GGML_TYPE_COUNT]; /* by activation format: for weights with tile_lv */
    uint8_t *lvbuf; /* for each thread: Q8T_R weight rows unpacked to levels (group_lv) */
    /* repacked weights with tile_packed: x quantized to Q8_0 in tiles of Q8P_T positions, each
       tile nb blocks x Q8P_T positions (q8p_tile_act), zero past n */
    int8_t *pq;  /* (tiles, nb, Q8P_T, 32) levels */
    int32_t *ps; /* (tiles, nb, Q8P_T) -128 * the sum of a block's levels */
    float *pd;   /* (tiles, nb, Q8P_T) the block's scale */
    /* repacked Q4_K and Q6_K weights with tile_packed_k: x quantized to Q8_K in tiles of Q8P_T
       positions, each tile cols / 256 super-blocks x Q8P_T positions (kp_tile_act), zero past n */
    BlockQ8K *kq; /* (tiles, nb, Q8P_T) blocks */
    int32_t *kk;  /* (tiles, nb, Q8P_T, KP_XK) their words (kp_act) */
} GemmInput;

/* xt[blk][i][t] = x[blk * TC + t][i] (zero past n). A task is 16 columns of one block: 16
   contiguous floats of each of its TC positions go to 16 rows of TC, all within 16 * TC floats
   that stay in L1 (reading one column down all positions took ~4% of a 110M F32 prompt). Tasks
   are split across threads so that both have work even for one block. */
#define TP_COLS 16
static void transpose_blocks(float *xt, const float *x, int n, int cols, int TCk) {
    const int blocks = (n + TCk - 1) / TCk, chunks = (cols + TP_COLS - 1) / TP_COLS;
#pragma omp parallel for schedule(static)
    for (int task = 0; task < blocks * chunks; task++) {
        const int blk = task / chunks, c0 = task % chunks * TP_COLS;
        const int nc = cols - c0 < TP_COLS ? cols - c0 : TP_COLS;
        float *dst = xt + ((size_t)blk * cols + c0) * TCk;
        for (int t = 0; t < TCk; t++) {
            const int pos = blk * TCk + t;
            const float *src = x + (size_t)pos * cols + c0;
            if (pos < n)
                for (int u = 0; u < nc; u++) dst[(size_t)u * TCk + t] = src[u];
            else
                for (int u = 0; u < nc; u++) dst[(size_t)u * TCk + t] = 0.0f;
        }
    }
}

/* Quantizes each position of x (n, cols) to Q8_0 and packs it for tile_q8: xp, xs, xd over
   ceil(n / Q8T_P) blocks of positions (layout at tile_q8_avx512), zero past n. A block at a
   time (quantize_q8_0 treats blocks independently), so that a thread holds one on its stack. */
static void pack_q8_positions(GemmInput *in, const float *x, int n, int cols) {
    const int nb = cols / QK8_0, pblocks = (n + Q8T_P - 1) / Q8T_P;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < pblocks * Q8T_P; t++) {
        const int pb = t / Q8T_P, tt = t % Q8T_P;
        for (int b = 0; b < nb; b++) {
            BlockQ8 q;
            if (t < n)
                quantize_q8_0(&q, x + (size_t)t * cols + (size_t)b * QK8_0, QK8_0);
            else
                memset(&q, 0, sizeof q);
            const size_t blk = (size_t)pb * nb + b;
            int8_t *dst = in->xp + blk * 1024 + (size_t)tt * 4;
            int32_t sum = 0;
            for (int g = 0; g < 8; g++)
                for (int j = 0; j < 4; j++) {
                    dst[g * 128 + j] = q.qs[g * 4 + j];
                    sum += q.qs[g * 4 + j];
                }
            in->xs[blk * Q8T_P + tt] = -128 * sum;
            in->xd[blk * Q8T_P + tt] = f16_table[q.d];
        }
    }
}

/* Quantizes each position of x (n, cols) to format act and packs it for tile_lv (LvInput), zero
   past n; a block at a time, through the format's own unpack (so that its levels and scales are
   exactly the ones dot_ref reads). */
static int pack_lv_positions(LvInput *in, uint32_t act, const float *x, int n, int cols) {
    const int pblocks = (n + Q8T_P - 1) / Q8T_P, block = (int)ggml_block_size(act);
    const size_t groups = (size_t)pblocks * (cols / 16) * Q8T_P;
    in->xp = aligned_alloc(64, (size_t)pblocks * cols * Q8T_P);
    in->xn = aligned_alloc(64, groups * sizeof(int32_t));
    in->xa = aligned_alloc(64, groups * sizeof(float));
    in->xm = aligned_alloc(64, groups * sizeof(float));
    if (!in->xp || !in->xn || !in->xa || !in->xm) return -1;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < pblocks * Q8T_P; t++) {
        const int pb = t / Q8T_P, tt = t % Q8T_P;
        int8_t *xp = in->xp + (size_t)pb * cols * Q8T_P + tt * 4;
        const size_t gi = (size_t)pb * (cols / 16) * Q8T_P + tt;
        for (int c0 = 0; c0 < cols; c0 += block) {
            BlockQ8K q; /* room for one block of either format */
            Levels lv;
            if (t < n) {
                quantize_act(act, &q, x + (size_t)t * cols + c0, block);
                weight_type(act)->unpack(&q, &lv);
            } else {
                memset(&lv, 0, sizeof lv);
            }
            for (int i = 0; i < block; i++) xp[(size_t)(c0 + i) / 4 * 128 + (c0 + i) % 4] = lv.q[i];
            for (int g = 0; g < block / 16; g++) {
                int32_t sum = 0;
                for (int i = 0; i < 16; i++) sum += lv.q[16 * g + i];
                const size_t at = gi + (size_t)(c0 / 16 + g) * Q8T_P;
                in->xn[at] = -128 * sum;
                in->xa[at] = lv.a[g];
                in->xm[at] = lv.a[g] * (float)sum;
            }
        }
    }
    return 0;
}

static void gemm_free(GemmInput *in) {
    for (int f = 0; f < GGML_TYPE_COUNT; f++) {
        free(in->xt[f]);
        free(in->lv[f].xp);
        free(in->lv[f].xn);
        free(in->lv[f].xa);
        free(in->lv[f].xm);
    }
    free(in->lvbuf);
    free(in->xp);
    free(in->xs);
    free(in->xd);
    free(in->wbuf);
    free(in->pq);
    free(in->ps);
    free(in->pd);
    free(in->kq);
    free(in->kk);
}

/* x (n, cols) quantized for tile_packed into in->pq, ps, pd; -1 when out of memory. */
static int pack_packed_positions(GemmInput *in, const float *x, int n, int cols) {
    const int nb = cols / QK8_0, tiles = (n + Q8P_T - 1) / Q8P_T;
    const size_t blocks = (size_t)tiles * nb * Q8P_T;
    in->pq = aligned_alloc(64, blocks * QK8_0);
    in->ps = aligned_alloc(64, (blocks * sizeof(int32_t) + 63) / 64 * 64);
    in->pd = aligned_alloc(64, (blocks * sizeof(float) + 63) / 64 * 64);
    if (!in->pq || !in->ps || !in->pd) return -1;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < tiles * Q8P_T; t++) {
        const size_t at = (size_t)(t / Q8P_T) * nb * Q8P_T; /* the tile's first block */
        (active->tile_act ? active->tile_act
                          : q8p_tile_act)(in->pq + at * QK8_0, in->ps + at, in->pd + at,
                                          t < n ? x + (size_t)t * cols : NULL, nb, t % Q8P_T);
    }
    return 0;
}

/* x (n, cols) quantized for tile_packed_k into in->kq, kk; -1 when out of memory. */
static int pack_kp_positions(GemmInput *in, const float *x, int n, int cols) {
    const int nb = cols / QK_K, tiles = (n + Q8P_T - 1) / Q8P_T;
    const size_t blocks = (size_t)tiles * nb * Q8P_T;
    in->kq = aligned_alloc(64, (blocks * sizeof(BlockQ8K) + 63) / 64 * 64);
    in->kk = aligned_alloc(64, (blocks * KP_XK * sizeof(int32_t) + 63) / 64 * 64);
    if (!in->kq || !in->kk) return -1;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < tiles * Q8P_T; t++) {
        const size_t at = (size_t)(t / Q8P_T) * nb * Q8P_T; /* the tile's first block */
        (active->tile_act_k ? active->tile_act_k : kp_tile_act)(
            in->kq + at, in->kk + at * KP_XK, t < n ? x + (size_t)t * cols : NULL, nb, t % Q8P_T);
    }
    return 0;
}

/* Does weight w run on the set's integer Q8_0 tile? */
static int int_tile(const Kernels *k, const Tensor *w) {
    return w->type == GGML_Q8_0 && k->tile_q8;
}

/* The group of columns that share a weight's a and b (Levels) when tile_lv runs it, by type;
   0 for the types it does not run (F32, F16; Q8_0 has tile_q8). Types whose b is nonzero. */
static const uint8_t LV_GROUP[GGML_TYPE_COUNT] = {
    [GGML_Q4_0] = 32, [GGML_Q4_1] = 32, [GGML_Q5_0] = 32, [GGML_Q5_1] = 32, [GGML_IQ4_NL] = 32,
    [GGML_Q4_K] = 32, [GGML_Q5_K] = 32, [GGML_Q2_K] = 16, [GGML_Q3_K] = 16, [GGML_Q6_K] = 16};
static const uint8_t LV_MIN[GGML_TYPE_COUNT] = {
    [GGML_Q4_1] = 1, [GGML_Q5_1] = 1, [GGML_Q4_K] = 1, [GGML_Q5_K] = 1, [GGML_Q2_K] = 1};

/* Does weight w run on the set's integer tile for levels? */
static int lv_tile(const Kernels *k, const Tensor *w) { return k->tile_lv && LV_GROUP[w->type]; }

/* Bytes of one thread's room for Q8T_R rows of levels (u, then a and b per group of 16 at most). */
static size_t lv_room(int cols) {
    return (size_t)Q8T_R * cols + 2 * (size_t)Q8T_R * (cols / 16) * sizeof(float);
}

/* x (n, cols) through format act and back, transposed into xt (NULL: out of memory). */
static float *act_transposed(uint32_t act, const float *x, int n, int cols, int TCk) {
    const size_t xt_floats = (size_t)(n + TCk - 1) / TCk * cols * TCk;
    float *xt = malloc(xt_floats * sizeof(float));
    if (!xt || act == GGML_F32) {
        if (xt) transpose_blocks(xt, x, n, cols, TCk);
        return xt;
    }
    float *xq = malloc((size_t)n * cols * sizeof(float));
    if (!xq) {
        free(xt);
        return NULL;
    }
    const int block = (int)ggml_block_size(act);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < n; t++)
        for (int c = 0; c < cols; c += block) { /* a block at a time, on this thread's stack */
            BlockQ8K q;                         /* room for one block of either format */
            quantize_act(act, &q, x + (size_t)t * cols + c, block);
            dequantize(act, xq + (size_t)t * cols + c, &q, block);
        }
    transpose_blocks(xt, xq, n, cols, TCk);
    free(xq);
    return xt;
}

/* Builds what the batch's weight types need from x; returns -1 when out of memory. */
static int gemm_input(GemmInput *in, const Batch *b, const float *x, int n) {
    const Kernels *k = active;
    const int cols = b->w[0]->cols;
    int any_int = 0, any_widened = 0, any_lv = 0;
    memset(in, 0, sizeof *in);
    for (int j = 0; j < b->count; j++) {
        const Tensor *w = b->w[j];
        const uint32_t act = weight_type(w->type)->act;
        if (packed_tile(k, w)) {
            if (k->tile_packed_k[w->type] ? !in->kq && pack_kp_positions(in, x, n, cols)
                                          : !in->pq && pack_packed_positions(in, x, n, cols))
                return -1;
            continue;
        }
        if (lv_tile(k, w)) {
            any_lv = 1;
            if (!in->lv[act].xp && pack_lv_positions(&in->lv[act], act, x, n, cols)) return -1;
            continue;
        }
        any_int |= int_tile(k, w);
        any_widened |= !int_tile(k, w) && w->type != GGML_F32;
        if (!int_tile(k, w) && !in->xt[act] &&
            !(in->xt[act] = act_transposed(act, x, n, cols, k->tile_c)))
            return -1;
    }
    if (any_lv) {
        const size_t room = (lv_room(cols) + 63) / 64 * 64;
        in->lvbuf = aligned_alloc(64, (size_t)omp_get_max_threads() * room);
        if (!in->lvbuf) return -1;
    }
    if (any_widened) {
        in->wbuf = malloc((size_t)omp_get_max_threads() * k->tile_r * KC_STRIDE * sizeof(float));
        if (!in->wbuf) return -1;
    }
    if (any_int) {
        const size_t nblk = (size_t)(n + Q8T_P - 1) / Q8T_P * (cols / QK8_0);
        in->xp = aligned_alloc(64, nblk * 1024);
        in->xs = aligned_alloc(64, nblk * Q8T_P * sizeof(int32_t));
        in->xd = aligned_alloc(64, nblk * Q8T_P * sizeof(float));
        if (!in->xp || !in->xs || !in->xd) return -1;
        pack_q8_positions(in, x, n, cols);
    }
    return 0;
}

/* One row group of a Q8_0 weight with tile_q8: Q8T_R rows at a time, read in place, against
   every block of Q8T_P positions. */
static void group_q8_int(float *out, const Tensor *w, int r0, int nr, const GemmInput *in, int n) {
    const int nb = w->cols / QK8_0, rows = w->rows, pblocks = (n + Q8T_P - 1) / Q8T_P;
    for (int s = 0; s < nr; s += Q8T_R) {
        const int sr = nr - s < Q8T_R ? nr - s : Q8T_R;
        const BlockQ8 *wr[Q8T_R];
        for (int rr = 0; rr < Q8T_R; rr++) /* rows past sr repeat the last */
            wr[rr] = (const BlockQ8 *)row_ptr(w, r0 + s + (rr < sr ? rr : sr - 1));
        for (int pb = 0; pb < pblocks; pb++) {
            const int nt = n - pb * Q8T_P < Q8T_P ? n - pb * Q8T_P : Q8T_P;
            const size_t blk = (size_t)pb * nb;
            active->tile_q8(out + (size_t)pb * Q8T_P * rows + r0 + s, rows, wr, sr,
                            in->xp + blk * 1024, in->xs + blk * Q8T_P, in->xd + blk * Q8T_P, nb,
                            nt);
        }
    }
}

/* Row `row` of w as levels for tile_lv: u[i] = q_i + 128, and per group of G columns a and b
   (Levels: weight = a q - b), by the set's unpacking for the type, else the type's own unpack. */
static void unpack_lv_row(uint8_t *u, float *a, float *b, const Tensor *w, int row, int G) {
    if (active->lv_row[w->type]) {
        active->lv_row[w->type](u, a, b, row_ptr(w, row), w->cols);
        return;
    }
    const WeightType *t = weight_type(w->type);
    const int block = (int)ggml_block_size(w->type);
    const size_t bytes = ggml_row_bytes(w->type, (uint64_t)block);
    const uint8_t *p = row_ptr(w, row);
    Levels lv;
    for (int c0 = 0; c0 < w->cols; c0 += block, p += bytes) {
        t->unpack(p, &lv);
        for (int i = 0; i < block; i++) u[c0 + i] = (uint8_t)(lv.q[i] + 128);
        for (int g = 0; g < block / G; g++) {
            a[c0 / G + g] = lv.a[g * G / 16];
            b[c0 / G + g] = lv.b[g * G / 16];
        }
    }
}

/* One row group of a weight with tile_lv: Q8T_R rows at a time, unpacked once into this thread's
   room and run against every block of Q8T_P positions. */
static void group_lv(float *out, const Tensor *w, int r0, int nr, const GemmInput *in, int n) {
    const int cols = w->cols, rows = w->rows, pblocks = (n + Q8T_P - 1) / Q8T_P;
    const int G = LV_GROUP[w->type], ng = cols / G;
    const LvInput *x = &in->lv[weight_type(w->type)->act];
    uint8_t *room = in->lvbuf + (size_t)omp_get_thread_num() * ((lv_room(cols) + 63) / 64 * 64);
    float *ab = (float *)(room + (size_t)Q8T_R * cols); /* a of each row, then b of each row */
    const uint8_t *wu[Q8T_R];
    const float *wa[Q8T_R], *wb[Q8T_R];
    for (int s = 0; s < nr; s += Q8T_R) {
        const int sr = nr - s < Q8T_R ? nr - s : Q8T_R;
        for (int rr = 0; rr < Q8T_R; rr++) { /* rows past sr repeat the last */
            const int i = rr < sr ? rr : sr - 1;
            wu[rr] = room + (size_t)i * cols;
            wa[rr] = ab + (size_t)i * ng;
            wb[rr] = ab + (size_t)(Q8T_R + i) * ng;
            if (rr < sr)
                unpack_lv_row(room + (size_t)rr * cols, ab + (size_t)rr * ng,
                              ab + (size_t)(Q8T_R + rr) * ng, w, r0 + s + rr, G);
        }
        for (int pb = 0; pb < pblocks; pb++) {
            const int nt = n - pb * Q8T_P < Q8T_P ? n - pb * Q8T_P : Q8T_P;
            const size_t gi = (size_t)pb * (cols / 16) * Q8T_P;
            active->tile_lv(out + (size_t)pb * Q8T_P * rows + r0 + s, rows, wu, wa,
                            LV_MIN[w->type] ? wb : NULL, sr, x->xp + (size_t)pb * cols * Q8T_P,
                            x->xn + gi, x->xa + gi, x->xm + gi, cols, G, nt);
        }
    }
}

/* One group of Q8P_R rows of a repacked weight (group g) with tile_packed or tile_packed_k,
   against every tile of Q8P_T positions. The group's weights (nb * 544 bytes for Q8_0, 2,368
   per super-block for Q4_K) stay in the L1 or L2 cache while the tiles of activations stream
   past them. */
static void group_packed(float *out, const Tensor *w, int g, const GemmInput *in, int n) {
    const int rows = w->rows, r0 = g * Q8P_R, nr = rows - r0 < Q8P_R ? rows - r0 : Q8P_R;
    const uint8_t *wg = w->packed + (size_t)g * packed_group_bytes(w->type, w->cols);
    for (int t0 = 0; t0 < n; t0 += Q8P_T) {
        const int nt = n - t0 < Q8P_T ? n - t0 : Q8P_T;
        float *o = out + (size_t)t0 * rows + r0;
        if (active->tile_packed_k[w->type]) {
            const int nb = w->cols / QK_K;
            const size_t at = (size_t)t0 * nb; /* the tile's first block */
            active->tile_packed_k[w->type](o, rows, nr, wg, in->kq + at, in->kk + at * KP_XK, nb,
                                           nt);
        } else {
            const int nb = w->cols / QK8_0;
            const size_t at = (size_t)t0 * nb;
            active->tile_packed[w->type](o, rows, nr, wg, in->pq + at * QK8_0, in->ps + at,
                                         in->pd + at, nb, nt);
        }
    }
}

/* The number of runs gemm() splits `groups` row groups into for `threads` threads: every group
   its own run when one_each, else threads x (at least 4, and enough for runs of at most 8
   groups), at most groups. The runs differ by one group at most, the longer ones first, so
   that the shorter ones, taken last, even out the threads. */
static int gemm_runs(int groups, int threads, int one_each) {
    if (one_each) return groups;
    const int per_thread = (groups + 8 * threads - 1) / (8 * threads);
    const int runs = threads * (per_thread > 4 ? per_thread : 4);
    return runs < groups ? runs : groups;
}

/* A prompt: each task takes TR weight rows and runs tiles against every block of positions. F32
 * rows are read in place; other rows are widened KC columns at a time into the thread's
 * buffer first (GemmInput.wbuf), and the tiles accumulate across those column chunks. Weights
 * read repacked take group_packed instead (Q8P_R rows a task), Q8_0 weights with an integer
 * tile kernel group_q8_int, the other quantized types group_lv.
 * Threads take runs of up to 8 row groups, not single groups: a group's TR outputs per position
 * share cache lines with its neighbours', and when neighbouring groups ran on different threads
 * those lines went back and forth between the cores (measured at 110M Q8_0: feed-forward up/gate
 * 29 -> 17 ms for 128 positions with one contiguous run per thread). But at least 4 runs per
 * thread, so that small matrices still split evenly (15M's 288 rows are 24 groups of 12: runs of
 * 8 gave one thread 16 and the other 8) and a thread slowed by another process hands work to
 * the others. The runs are a multiple of the threads in number and differ by at most one group
 * in size (gemm_runs), rather than runs of a fixed size and a short last one: 15M's q, k and v
 * (72 groups) in runs of 8 were 9 runs, 5 for one thread and 4 for the other (a 10% longer
 * product at 2 threads, from each group's CPU time), 42M's 43 groups in runs of 5 were 9.
 * Groups of repacked rows go one at a time: their 16 outputs per position are a
 * cache line of their own when the output is 64-byte aligned with rows a multiple of 16 (the run
 * state's buffers are), and 18 groups (288 rows) split 9 + 9 where runs of 2 split 10 + 8. */
static void gemm(const Batch *b, const float *x, int n) {
    const Kernels *k = active;
    const int cols = b->w[0]->cols, TRk = k->tile_r, TCk = k->tile_c, groups = b->start[b->count];
    const int blocks = (n + TCk - 1) / TCk;
    int all_packed = 1;
    for (int j = 0; j < b->count; j++) all_packed &= packed_tile(k, b->w[j]);
    const int runs = gemm_runs(groups, omp_get_max_threads(), all_packed);
    const int base = runs ? groups / runs : 0, extra = runs ? groups % runs : 0; /* run sizes */
    GemmInput in;
    if (gemm_input(&in, b, x, n)) { /* no room for the copies: the decoding path needs none */
        gemm_free(&in);
        Batch rows = *b;
        batch_number(&rows, 0);
        gemv(&rows, x, n);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int run = 0; run < runs; run++) { /* runs of groups: see above */
        const int g0 = run * base + (run < extra ? run : extra);
        for (int g = g0; g < g0 + base + (run < extra); g++) {
            const int j = batch_find(b, g);
            const Tensor *w = b->w[j];
            const int rows = w->rows, r0 = (g - b->start[j]) * TRk;
            const int nr = rows - r0 < TRk ? rows - r0 : TRk;
            if (packed_tile(k, w)) {
                group_packed(b->out[j], w, g - b->start[j], &in, n);
                continue;
            }
            if (int_tile(k, w)) {
                group_q8_int(b->out[j], w, r0, nr, &in, n);
                continue;
            }
            if (lv_tile(k, w)) {
                group_lv(b->out[j], w, r0, nr, &in, n);
                continue;
            }
            const float *xt = in.xt[weight_type(w->type)->act];
            const int in_place = w->type == GGML_F32, kc_max = in_place ? cols : KC;
            for (int c0 = 0; c0 < cols; c0 += kc_max) {
                const int kc = cols - c0 < kc_max ? cols - c0 : kc_max;
                const float *wt;
                int wstride;
                if (in_place) {
                    wt = (const float *)row_ptr(w, r0) + c0;
                    wstride = cols;
                } else { /* widened into this thread's buffer */
                    float *buf = in.wbuf + (size_t)omp_get_thread_num() * TRk * KC_STRIDE;
                    for (int r = 0; r < nr; r++)
                        row_span(buf + (size_t)r * KC_STRIDE, w, r0 + r, c0, kc);
                    wt = buf;
                    wstride = KC_STRIDE;
                }
                for (int blk = 0; blk < blocks; blk++) {
                    const int nt = n - blk * TCk < TCk ? n - blk * TCk : TCk;
                    k->tile_f32(b->out[j] + (size_t)blk * TCk * rows + r0, rows, wt, wstride, nr,
                                xt + ((size_t)blk * cols + c0) * TCk, kc, nt, c0 > 0);
                }
            }
        }
    }
    gemm_free(&in);
}

void matmul_many(float *const *outs, const float *x, const Tensor *const *ws, int count, int n) {
    Batch b = {0};
    const int gemm_path = n >= GEMM_MIN_N;
    b.count = count;
    for (int j = 0; j < count; j++) {
        b.out[j] = outs[j];
        b.w[j] = ws[j];
    }
    batch_number(&b, gemm_path);
    if (gemm_path)
        gemm(&b, x, n);
    else
        gemv(&b, x, n);
}

void matmul(float *out, const float *x, const Tensor *w, int n) { matmul_many(&out, x, &w, 1, n); }
