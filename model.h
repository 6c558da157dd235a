/* model.h: the types of the whole program, read top to bottom like a specification.
 *
 *   GGUF file (gguf.c)  ->  Config + Weights (run.c)  ->  forward pass (run.c, kernels.c)
 *   tokenizer (tokenizer.c) turns text into token ids and back; sampler (run.c) picks the next id.
 *
 * Conventions: every function that can fail takes an Error* and returns 0 on success, -1 on
 * failure with a one-line message in err->msg; main() prints it and exits non-zero.
 * Shapes are written (rows, cols), row-major, cols contiguous.
 */
#ifndef MODEL_H
#define MODEL_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Errors */

typedef struct {
    char msg[512];
} Error;

/* Records a printf-style message and returns -1, so callers can write `return fail(err, ...)`. */
static inline int fail(Error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A byte string borrowed from elsewhere (usually the mmap); not NUL-terminated. */
typedef struct {
    const char *ptr;
    size_t len;
} Str;

/* ------------------------------------------------------------------------------------------ */
/* GGUF v3 container (gguf.c). Spec: ggml-org/ggml docs/gguf.md. All integers little-endian. */

enum {  /* metadata value types */
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4,
    GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9,
    GGUF_UINT64 = 10, GGUF_INT64 = 11, GGUF_FLOAT64 = 12, GGUF_NTYPES
};

enum {  /* tensor types (ggml_type numbering) */
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q8_0 = 8
};

typedef struct {
    Str key;
    uint32_t type;          /* GGUF_* */
    const uint8_t *data;    /* the value's bytes in the mmap; for STRING the bytes after the length,
                               for ARRAY the first element */
    uint64_t len;           /* STRING: byte length; ARRAY: element count; else 1 */
    uint32_t elem_type;     /* ARRAY only: type of the elements */
} GGUFKV;

typedef struct {
    Str name;
    uint32_t n_dims;
    uint64_t ne[4];         /* ne[0] is the contiguous (innermost) dimension; unused dims are 1 */
    uint32_t type;          /* GGML_* */
    uint64_t offset;        /* from the start of the data section */
    const void *data;       /* in the mmap */
    size_t nbytes;
} GGUFTensor;

typedef struct {
    const uint8_t *map;     /* the whole file, mmapped read-only */
    size_t size;
    uint32_t version;
    uint32_t alignment;     /* general.alignment, default 32 */
    uint64_t n_kv, n_tensors;
    GGUFKV *kv;             /* (n_kv), owned */
    GGUFTensor *tensors;    /* (n_tensors), owned */
} GGUF;

int gguf_open(GGUF *g, const char *path, Error *err);
void gguf_close(GGUF *g);
const GGUFKV *gguf_find(const GGUF *g, const char *key);
const GGUFTensor *gguf_find_tensor(const GGUF *g, const char *name);
/* Typed getters: return 1 if found and converted, 0 if absent, -1 (with err) on a wrong type. */
int gguf_get_int(const GGUF *g, const char *key, int64_t *out, Error *err);
int gguf_get_float(const GGUF *g, const char *key, double *out, Error *err);
int gguf_get_bool(const GGUF *g, const char *key, int *out, Error *err);
int gguf_get_str(const GGUF *g, const char *key, Str *out, Error *err);
/* Bytes per row of `n` elements of a tensor type; 0 if the type is unknown or n does not fit it. */
size_t ggml_row_bytes(uint32_t type, uint64_t n);
const char *ggml_type_name(uint32_t type);

/* ------------------------------------------------------------------------------------------ */
/* Tokenizer (tokenizer.c) */

typedef enum {
    TOK_SPM,    /* tokenizer.ggml.model = "llama": SentencePiece BPE with scores and byte fallback */
    TOK_GPT2    /* tokenizer.ggml.model = "gpt2": byte-level BPE with merges, GPT-2 pre-tokenizer */
} TokenizerKind;

enum {  /* tokenizer.ggml.token_type values */
    TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4,
    TOKEN_UNUSED = 5, TOKEN_BYTE = 6
};

/* What the model file says about its tokenizer; everything here is borrowed and may be freed
   after tokenizer_build (which copies what it keeps). */
typedef struct {
    TokenizerKind kind;
    int n_vocab;
    const Str *tokens;          /* (n_vocab) token strings as stored in the file */
    const float *scores;        /* (n_vocab) or NULL; SPM merge priority, higher merges first */
    const int32_t *types;       /* (n_vocab) TOKEN_* or NULL (all normal) */
    int n_merges;
    const Str *merges;          /* (n_merges) "left right", rank = index; GPT-2 only */
    int bos_id, eos_id, unk_id; /* -1 when absent */
    int add_bos;                /* prepend BOS when encoding a prompt */
    int add_space_prefix;       /* SPM: prepend one space (SentencePiece's add_dummy_prefix) */
} TokenizerSpec;

typedef struct Tokenizer Tokenizer;  /* opaque; defined in tokenizer.c */

int tokenizer_build(Tokenizer **out, const TokenizerSpec *spec, Error *err);
void tokenizer_free(Tokenizer *t);
int tokenizer_bos(const Tokenizer *t);         /* -1 when none */
int tokenizer_eos(const Tokenizer *t);         /* -1 when none */
int tokenizer_adds_bos(const Tokenizer *t);

/* Encodes `len` bytes of UTF-8 text (invalid UTF-8 is an error). Prepends BOS when the tokenizer
   adds one. *ids is malloc'ed and owned by the caller. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int **ids, int *n_ids,
                     Error *err);

/* Streaming decoder: feed token ids one at a time, get back bytes that form only complete UTF-8
   characters. Bytes of a character split across tokens are held until it is complete; a byte
   sequence that can never be valid UTF-8 comes out as U+FFFD. */
typedef struct {
    unsigned char pending[8];
    int n_pending;
    int prev_token;             /* last non-control token pushed, -1 at the start. SentencePiece
                                   drops the leading space of the first piece, so to decode a
                                   continuation set it to the prompt's last id after decoder_init */
} Decoder;

void decoder_init(Decoder *d);
/* Appends the text for `token` to out (capacity cap, NUL-terminated); returns bytes written.
   cap must be at least 2 * (longest token + 8). Control tokens (BOS, EOS, ...) produce nothing. */
size_t decoder_push(const Tokenizer *t, Decoder *d, int token, char *out, size_t cap);
/* Emits whatever is still pending at the end of the stream (as U+FFFD). */
size_t decoder_flush(Decoder *d, char *out, size_t cap);
int tokenizer_max_token_len(const Tokenizer *t);

/* Returns 1 if the bytes are valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int utf8_valid(const char *s, size_t len, size_t *bad_offset);

/* ------------------------------------------------------------------------------------------ */
/* Tensors and kernels (kernels.c). One matmul interface; the kernel for a weight type is chosen
   once per call from the tensor's type, never per element. */

typedef struct {
    uint32_t type;          /* GGML_F32, GGML_F16 or GGML_Q8_0 */
    int rows, cols;         /* (rows, cols); a row is `cols` contiguous elements */
    size_t row_bytes;
    const void *data;       /* borrowed from the mmap; NULL when the tensor is absent */
} Tensor;

/* Q8_0, GGUF's 8-bit type: blocks of 32 weights sharing one F16 scale, weight = d * qs[i]. */
#define QK8_0 32
typedef struct {
    uint16_t d;             /* scale, IEEE half */
    int8_t qs[QK8_0];
} BlockQ8;
_Static_assert(sizeof(BlockQ8) == 34, "Q8_0 blocks are 34 bytes in GGUF files");

/* A set of leaf kernels for one instruction set (AVX-512, AVX2, NEON or portable C). */
typedef struct {
    const char *name;
    int tile_r, tile_c;     /* tile_f32 computes tile_r weight rows x tile_c positions */
    float (*dot_f32)(const float *w, const float *x, int n);
    float (*dot_f16)(const uint16_t *w, const float *x, int n);
    float (*dot_q8)(const BlockQ8 *w, const BlockQ8 *x, int nblocks);
    /* out[t * ostride + r] = (accumulate ? out[..] : 0) + sum_i w[r * wstride + i] xt[i * tile_c + t]
       for r < nr <= tile_r, t < nt <= tile_c: xt holds tile_c positions transposed */
    void (*tile_f32)(float *out, int ostride, const float *w, int wstride, int nr, const float *xt,
                     int k, int nt, int accumulate);
    void (*f16_to_f32_row)(float *out, const uint16_t *in, int n);
    /* attention on one key tile (see kernels_simd.h): scores s (nq, KV_TILE) of queries q against
       transposed keys kt (hd, KV_TILE); o (nq, hd) += p (nq, KV_TILE) times values v (nk, hd) */
    void (*att_scores)(float *s, const float *q, int qstride, int nq, const float *kt, int hd,
                       float scale);
    void (*att_pv)(float *o, int ostride, const float *p, int nq, const float *v, int nk, int hd);
    /* Q8_0 weights against Q8_0 activations in integer arithmetic, Q8T_R rows x Q8T_P positions
       (NULL in sets without one; see gemm() in kernels.c for the packed layouts) */
    void (*tile_q8)(float *out, int ostride, const BlockQ8 *const *w, int nr, const int8_t *xp,
                    const int32_t *xs, const float *xd, int nb, int nt);
} Kernels;
#define Q8T_R 4                 /* weight rows of a tile_q8 */
#define Q8T_P 32                /* positions of a tile_q8 */

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);              /* round to nearest even */

/* e^x within 2 ulp of expf, in straight-line code the compiler can vectorize (libm's expf and
 * floorf are calls it cannot): x = n ln2 + r with |r| <= ln2/2, n rounded to nearest by adding and
 * subtracting 1.5 * 2^23, e^r by a degree-7 polynomial (Cephes' coefficients), times 2^n built in
 * the exponent bits. Below -87.3 it returns ~1e-38, not 0; above 88.3, ~2e38, not inf; NaN stays
 * NaN (n is taken from a copy where NaN became -87.3, so the conversion to int is always defined).
 * Used by the tiled softmax and by SiLU, which call it ~10^6 times per prompt
 * (tests/test_kernels.c holds it to 1.5e-7 relative). */
static inline float exp_fast(float x) {
    const float shifter = 12582912.0f;
    const float xn = x > -87.3f ? (x < 88.3f ? x : 88.3f) : -87.3f;
    x = x < -87.3f ? -87.3f : x > 88.3f ? 88.3f : x;
    const float n = (xn * 1.44269504088896341f + shifter) - shifter;
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;  /* ln2 split in two: exact n*hi */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);  /* 2^n, from its exponent bits */
    return p * scale;
}
void quantize_q8_0(BlockQ8 *out, const float *x, int n);  /* n a multiple of 32 */
void kernels_init(void);                   /* F16 table; picks the best kernel set; call once */
int kernels_available(const Kernels **sets, int max);     /* best first; returns the count */
void kernels_use(const Kernels *k);        /* tests: run matmul with a given set */
const Kernels *kernels_active(void);
int kernels_supported(uint32_t type);

/* out (n, w->rows) = x (n, w->cols) @ w^T: row t of out holds W x_t. For Q8_0 weights the
   activations are quantized to Q8_0 too, at every n (integer products per block). */
void matmul(float *out, const float *x, const Tensor *w, int n);
/* count (<= MATMUL_MAX) products of the same input x (n, cols) in one pass over the threads:
   outs[j] (n, ws[j]->rows) = x @ ws[j]^T. The weights must share cols. */
#define MATMUL_MAX 4
#define Q8_MAX_COLS (4096 * QK8_0)  /* decoding quantizes one row of activations on the stack */
void matmul_many(float *const *outs, const float *x, const Tensor *const *ws, int count, int n);
/* The plain reference the optimized kernels are tested against. */
void matmul_ref(float *out, const float *x, const Tensor *w, int n);
/* The shape of one layer's attention. Query head h reads key/value head h / (n_heads / n_kv_heads). */
typedef struct {
    int n_heads, n_kv_heads, head_dim;
    int window;             /* 0 = none; else a query at p sees keys p-W < j <= p */
    size_t tile_stride;     /* floats from one tile of a layer's cache to its next (see below) */
} AttnShape;

/* The KV cache grows in tiles of KV_TILE positions. A tile holds those positions' keys and values
 * for every layer, so the memory a sequence touches grows with its length, not with the context:
 *   key_cache   (tiles, n_layers, n_kv_heads, head_dim, KV_TILE): each head's keys transposed,
 *               so that a query's scores against a tile are head_dim vector multiply-adds
 *               across positions (no horizontal sums, no copying), over one contiguous 16 KB
 *               (head_dim 64);
 *   value_cache (tiles, n_layers, n_kv_heads, KV_TILE, head_dim): a head's values one contiguous
 *               row per position, so the weighted sum streams through memory.
 * For one layer, kc and vc point at its part of tile 0 (key_cache + layer * kv_dim * KV_TILE),
 * and tile_stride = n_layers * kv_dim * KV_TILE. Key j, dim i of KV head h is then
 *   kc[(j / KV_TILE) * tile_stride + (h * head_dim + i) * KV_TILE + j % KV_TILE]
 * and value j, dim i is vc[(j / KV_TILE) * tile_stride + (h * KV_TILE + j % KV_TILE) * head_dim + i].
 * kv_store() writes n positions' keys and values k, v (n, n_kv_heads * head_dim), as the
 * projections produce them, into positions pos0 .. pos0+n-1 of that layout. */
#define KV_TILE 64
static inline int kv_tiles(int seq_len) { return (seq_len + KV_TILE - 1) / KV_TILE; }
void kv_store(float *kc, float *vc, const float *k, const float *v, int n, int pos0,
              const AttnShape *a);

/* Causal attention for n queries at positions pos0 .. pos0+n-1 against a layer's cache kc, vc
 * (positions 0 .. pos0+n-1 filled):
 *   q (n, n_heads * head_dim) -> out (n, n_heads * head_dim), the heads' outputs concatenated.
 * attention() works in tiles with an online softmax and never stores a row of scores;
 * attention_ref() is the textbook version that also hands out the probabilities:
 * probs (n, n_heads, probs_stride), zero outside the visible keys (out may be NULL). */
void attention(float *out, const float *q, const float *kc, const float *vc, int n, int pos0,
               const AttnShape *a);
void attention_ref(float *out, float *probs, int probs_stride, const float *q, const float *kc,
                   const float *vc, int n, int pos0, const AttnShape *a);

/* out (w->cols) = row `row` of w as floats (embedding lookup). */
void tensor_row(float *out, const Tensor *w, int row);
/* A view of rows [start, start + n) of w (used to split GPT-2's fused qkv weight). */
Tensor tensor_rows(const Tensor *w, int start, int n);

/* ------------------------------------------------------------------------------------------ */
/* The model (model.c reads it from a GGUF file; run.c runs it). */

typedef enum { NORM_RMS, NORM_LAYER } NormKind;           /* RMSNorm, or LayerNorm with bias */
typedef enum { POS_ROPE, POS_LEARNED, POS_SINUSOIDAL } PosKind;
typedef enum { ROPE_INTERLEAVED, ROPE_NEOX } RopeStyle;   /* pairs (2i, 2i+1) or (i, i + d/2) */
typedef enum { FFN_SWIGLU, FFN_GELU_TANH, FFN_GELU_ERF } FfnKind;

typedef struct {
    char arch[16];          /* general.architecture: "llama", "qwen2" or "gpt2" */
    int dim;                /* residual stream width */
    int hidden_dim;         /* feed-forward width */
    int n_layers;
    int n_heads;            /* query heads */
    int n_kv_heads;         /* key/value heads; divides n_heads (GQA; 1 = MQA) */
    int head_dim;           /* q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim */
    int vocab_size;
    int seq_len;            /* context length */
    NormKind norm;
    float norm_eps;
    PosKind pos;
    RopeStyle rope_style;
    float rope_theta;
    int rope_dim;           /* rotated dims per head (<= head_dim, even) */
    FfnKind ffn;
    int sliding_window;     /* 0 = none; else a query at i sees keys i-W < j <= i */
    int tied;               /* output head shares token_embd */
} Config;

typedef struct {
    const float *attn_norm, *attn_norm_b;  /* (dim); _b NULL for RMSNorm */
    Tensor wq, wk, wv;                     /* (q_dim, dim), (kv_dim, dim), (kv_dim, dim) */
    Tensor wo;                             /* (dim, q_dim) */
    const float *bq, *bk, *bv, *bo;        /* (q_dim), (kv_dim), (kv_dim), (dim); NULL if absent */
    const float *ffn_norm, *ffn_norm_b;    /* (dim) */
    Tensor w_gate;                         /* (hidden, dim); SwiGLU only */
    Tensor w_up;                           /* (hidden, dim) */
    Tensor w_down;                         /* (dim, hidden) */
    const float *b_gate, *b_up, *b_down;   /* (hidden), (hidden), (dim); NULL if absent */
} LayerWeights;

typedef struct {
    Tensor token_embd;                     /* (vocab, dim) */
    Tensor pos_embd;                       /* (seq_len, dim); learned positions only */
    LayerWeights *layers;                  /* (n_layers), owned */
    const float *out_norm, *out_norm_b;    /* (dim) */
    Tensor output;                         /* (vocab, dim); a copy of token_embd's view if tied */
} Weights;

/* Called after each layer's attention with the softmax probabilities of the n positions just
   processed: probs[(t * n_heads + h) * seq_len + j] for key j, zero outside [lo, pos0 + t]. */
typedef void (*AttnHook)(void *ctx, int layer, int pos0, int n, const float *probs);

typedef struct {
    int cap;                /* positions per forward call (the prompt batch) */
    float *x;               /* (cap, dim) residual stream */
    float *xb;              /* (cap, dim) normalized input of a sublayer */
    float *xb2;             /* (cap, dim) sublayer output */
    float *q;               /* (cap, q_dim) */
    float *k, *v;           /* (cap, kv_dim) this batch's keys and values, before kv_store() */
    float *att_out;         /* (cap, q_dim) attention output, heads concatenated */
    float *hb, *hb2;        /* (cap, hidden) */
    float *probs;           /* (cap, n_heads, seq_len) attention probabilities */
    float *logits;          /* (cap, vocab) */
    float *key_cache;       /* (kv_tiles(seq_len), n_layers, kv_dim * KV_TILE), see kv_store() */
    float *value_cache;     /* (kv_tiles(seq_len), n_layers, kv_dim * KV_TILE) */
    float *rope_cos, *rope_sin;  /* (seq_len, rope_dim / 2) */
    float *pos_table;       /* (seq_len, dim) sinusoidal encodings, else NULL */
    AttnHook attn_hook;     /* NULL = probabilities are not handed out */
    void *attn_hook_ctx;
} RunState;

typedef struct {
    GGUF file;              /* owns the mmap every Tensor points into */
    Config config;
    Weights weights;
    Tokenizer *tokenizer;
    RunState state;
} Model;

/* Opens, validates and binds a model; allocates the run state for batches of `batch` positions. */
int model_load(Model *m, const char *path, int batch, Error *err);
void model_free(Model *m);
void print_config(const Config *c, FILE *f);

/* Runs tokens[0..n) at positions pos0 .. pos0+n-1 (n <= state.cap), appending their keys and values
   to the cache. Returns logits (n, vocab) when all_logits, else only the last position's (1, vocab). */
float *forward(Model *m, const int *tokens, int n, int pos0, int all_logits);

/* ------------------------------------------------------------------------------------------ */
/* Seeing attention (attn.c): the probabilities the forward pass hands to RunState.attn_hook,
   kept for every layer and head, then dumped, drawn or summarised. Nothing runs when no
   attention output is asked for (the hook stays NULL). */

typedef struct {
    const char *dump;       /* --dump-attn PATH.npy, or NULL */
    const char *html;       /* --attn-html PATH.html, or NULL */
    int show_layer;         /* --attn-show L.H; -1 = off */
    int show_head;
    int stats;              /* --attn-stats */
} AttnOptions;

typedef struct {
    int n_layers, n_heads;
    int seq_len;            /* row stride of the probabilities the hook receives */
    int window;             /* sliding window W, 0 = none */
    int cap;                /* positions the maps have room for: rows and columns of each map */
    int n;                  /* positions captured so far (T) */
    int n_prompt;           /* positions 0 .. n_prompt-1 are the prompt, the rest generated */
    float *probs;           /* (n_layers, n_heads, cap, cap): row i = query i, column j = key j;
                               zero above the diagonal and outside the window */
    int *tokens;            /* (cap) the token fed at each position */
} AttnMaps;

int attn_wanted(const AttnOptions *o);
/* "L.H" -> layer and head (range checked later, against the model). */
int attn_parse_head(const char *s, int *layer, int *head, Error *err);
/* Checks the options against the model and allocates maps for `cap` positions (refused above
   2 GiB: they take n_layers * n_heads * cap^2 * 4 bytes). */
int attn_maps_init(AttnMaps *a, const AttnOptions *o, const Config *c, int n_prompt, int cap,
                   Error *err);
void attn_maps_free(AttnMaps *a);
/* The AttnHook: ctx is an AttnMaps*. */
void attn_hook(void *ctx, int layer, int pos0, int n, const float *probs);
/* Records the tokens fed at positions pos0 .. pos0+n-1 (for labels). */
void attn_maps_tokens(AttnMaps *a, int pos0, const int *tokens, int n);
/* Shrinks the maps in place to (n_layers, n_heads, n, n), the shape --dump-attn writes. */
void attn_maps_pack(AttnMaps *a);
/* The page, the atlas and the terminal heatmap. `printed` says whether stdout already carries
   text (the views are then preceded by a blank line). */
int attn_report(const AttnMaps *a, const AttnOptions *o, const Tokenizer *tok, const char *model_name,
                int printed, Error *err);
/* -v: the KV cache's size; the FLOP share of attention for the first and last generated token. */
void attn_print_kv_cache(const Config *c, FILE *f);
void attn_print_cost(const Config *c, int n_prompt, int generated, FILE *f);

#endif /* MODEL_H */
