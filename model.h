/* model.h: the map of the program; open it first. It shows the model (Config, Weights, RunState),
 * how it is loaded and run, and the header of each module it is built from:
 *
 *   GGUF file (gguf.h)  ->  Config + Weights + Tokenizer + RunState (model.c)
 *   forward pass (forward.c) over the kernels (kernels.h: matmul, attention)
 *   tokenizer (tokenizer.h) turns text into token ids and back; sampler (sampler.h) picks the
 *   next id; attn_maps.h keeps the attention weights, attn_views.h shows them; run.c is the
 *   command line.
 *
 * Conventions (common.h): every function that can fail takes an Error* and returns 0 on success,
 * -1 on failure with a one-line message in err->msg; main() prints it and exits non-zero.
 * Shapes are written (rows, cols), row-major, cols contiguous.
 */
#ifndef MODEL_H
#define MODEL_H

#include <stdio.h>

#include "common.h"
#include "gguf.h"
#include "kernels.h"
#include "tokenizer.h"

/* The model (model.c reads it from a GGUF file; run.c runs it). */

typedef enum { NORM_RMS, NORM_LAYER } NormKind; /* RMSNorm, or LayerNorm */
typedef enum { POS_ROPE, POS_LEARNED, POS_SINUSOIDAL } PosKind;
typedef enum { ROPE_INTERLEAVED, ROPE_NEOX } RopeStyle; /* pairs (2i, 2i+1) or (i, i + d/2) */
/* SwiGLU: silu(gate) * up; GELU: gelu(up) (no gate); GeGLU: gelu_tanh(gate) * up (Gemma) */
typedef enum { FFN_SWIGLU, FFN_GELU_TANH, FFN_GELU_ERF, FFN_GEGLU } FfnKind;
static inline int ffn_gated(FfnKind k) { return k == FFN_SWIGLU || k == FFN_GEGLU; }
/* Groups of biases a file has or lacks together. */
typedef enum {
    BIAS_QKV,  /* the q, k and v projections (fused or not) */
    BIAS_OUT,  /* attention's output projection */
    BIAS_FFN,  /* the feed-forward's matrices */
    BIAS_NORM, /* the norms (LayerNorm's beta) */
    N_BIAS
} BiasGroup;

/* Sanity bounds on the dimensions a file (GGUF or llama2.c) may state: far above any model this
   program is for. */
#define MAX_DIM (1 << 20)
#define MAX_LAYERS 1024
#define MAX_CTX (1 << 20)

/* Every choice the forward pass makes is a field here, read from the file or from the
   architecture's table entry in model.c (never inferred from another field). */
typedef struct {
    char arch[16];  /* general.architecture: "llama", "qwen2", "qwen3", "gemma3", "phi3", "gpt2" */
    int dim;        /* residual stream width */
    int hidden_dim; /* feed-forward width */
    int n_layers;
    int n_heads;    /* query heads */
    int n_kv_heads; /* key/value heads; divides n_heads (GQA; 1 = MQA) */
    int head_dim;   /* q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim */
    int vocab_size;
    int ctx_train;   /* the model's context (context_length): learned position rows */
    int seq_len;     /* the context allocated for this run (KV cache, RoPE tables): <= ctx_train */
    KvType kv_cache; /* the KV cache's element type for this run (model_load_with) */
    NormKind norm;
    float norm_eps;
    PosKind pos;
    RopeStyle rope_style; /* RoPE only */
    float rope_theta;
    int rope_dim;          /* rotated dims per head (<= head_dim, even) */
    float rope_freq_scale; /* linear RoPE scaling: positions times this (1 / factor; 1 = none) */
    int rope_freqs;        /* 1: the file has rope_freqs.weight, per-frequency divisors (Llama 3) */
    int longrope;          /* 1: rope_factors_long/short.weight, divisors chosen by the context
                              allocated against rope_ctx_orig (Phi-3.5's "longrope") */
    int rope_ctx_orig;     /* rope.scaling.original_context_length (0 = absent) */
    float rope_attn_factor; /* RoPE's cosines and sines times this (longrope's; 1 = none) */
    float rope_theta_swa;   /* RoPE base of the local layers (swa_pattern > 0), unscaled */
    FfnKind ffn;
    int fused_qkv;      /* one (q_dim + 2 kv_dim, dim) projection, rows q | k | v (GPT-2, Phi-3) */
    int fused_gate_up;  /* one (2 hidden, dim) ffn_up, rows gate | up (Phi-3) */
    int bias[N_BIAS];   /* 1 where the file has that group of biases, in every layer */
    int sliding_window; /* 0 = none; else a query at i sees keys i-W < j <= i */
    int swa_pattern;    /* 0: the window (if any) and RoPE are the same in every layer; P: layers
                           l % P < P - 1 are local (window, rope_theta_swa), the rest global */
    int qk_norm;        /* RMSNorm over each head of q and k before RoPE (Qwen3, Gemma 3) */
    int post_norms;     /* a norm on the attention's and the FFN's outputs too (Gemma 3) */
    float embd_scale;   /* token embeddings multiplied by this (Gemma 3: sqrt(dim); else 1) */
    float attn_scale;   /* scores q.k times this (default 1 / sqrt(head_dim)) */
    float q_scale;      /* attn_scale * sqrt(head_dim), folded into q: the attention kernels
                           divide by sqrt(head_dim) (1 when the file does not say otherwise) */
    int tied;           /* output head shares token_embd */
    int vocab_only;     /* the file has a vocabulary and no tensors: only tokenizing works */
} Config;

typedef struct {
    const float *attn_norm, *attn_norm_b; /* (dim); _b NULL without norm biases */
    Tensor wq, wk, wv;                    /* (q_dim, dim), (kv_dim, dim), (kv_dim, dim) */
    Tensor wqkv;                          /* (q_dim + 2 kv_dim, dim) when fused: wq, wk, wv are
                                              views of its rows */
    Tensor wo;                            /* (dim, q_dim) */
    const float *bq, *bk, *bv, *bo;       /* (q_dim), (kv_dim), (kv_dim), (dim); NULL if absent */
    const float *bqkv;            /* (q_dim + 2 kv_dim) when fused: bq, bk, bv point into it */
    const float *q_norm, *k_norm; /* (head_dim) each; qk_norm only */
    const float *post_attn_norm;  /* (dim); post_norms only */
    const float *ffn_norm, *ffn_norm_b;  /* (dim) */
    Tensor w_gate;                       /* (hidden, dim); SwiGLU only */
    Tensor w_up;                         /* (hidden, dim) */
    Tensor w_gate_up;                    /* (2 hidden, dim) when fused: w_gate, w_up are views */
    Tensor w_down;                       /* (dim, hidden) */
    const float *b_gate, *b_up, *b_down; /* (hidden), (hidden), (dim); NULL if absent */
    const float *post_ffn_norm;          /* (dim); post_norms only */
} LayerWeights;

typedef struct {
    Tensor token_embd;                  /* (vocab, dim) */
    Tensor pos_embd;                    /* (seq_len, dim); learned positions only */
    LayerWeights *layers;               /* (n_layers), owned */
    const float *out_norm, *out_norm_b; /* (dim) */
    Tensor output;                      /* (vocab, dim); a copy of token_embd's view if tied */
    const float *rope_freqs;            /* (rope_dim / 2) divisors of RoPE's frequencies, or NULL */
    const float *rope_long, *rope_short; /* (rope_dim / 2) longrope's divisors, or NULL */
} Weights;

/* Called after each layer's attention with the softmax probabilities of the n positions just
   processed: probs[(t * n_heads + h) * stride + j] for key j, zero outside [lo, pos0 + t]. */
typedef void (*AttnHook)(void *ctx, int layer, int pos0, int n, const float *probs, int stride);

/* Called with the residual stream x (n, dim) of the n positions just processed: after the
   embeddings (stage 0), then after each layer l (stage l + 1). */
typedef void (*LayerHook)(void *ctx, int stage, int pos0, int n, const float *x);

typedef struct {
    int cap;           /* positions per forward call (the prompt batch) */
    float *x;          /* (cap, dim) residual stream */
    float *xb;         /* (cap, dim) normalized input of a sublayer */
    float *xb2;        /* (cap, dim) sublayer output */
    float *q;          /* (cap, q_dim) */
    float *k, *v;      /* (cap, kv_dim) this batch's keys and values, before kv_store() */
    float *att_out;    /* (cap, q_dim) attention output, heads concatenated */
    float *hb, *hb2;   /* (cap, hidden) */
    float *probs;      /* (cap, n_heads, probs_stride) attention probabilities; allocated only
                               while a hook wants them (model_set_attn_hook) */
    int probs_stride;  /* keys per row of probs: the positions the hook will see */
    float *logits;     /* (cap, vocab) */
    void *key_cache;   /* (kv_tiles(seq_len), n_layers, kv_dim * KV_TILE) elements of the type
                          config.kv_cache (floats or halves), see kv_store() */
    void *value_cache; /* (kv_tiles(seq_len), n_layers, kv_dim * KV_TILE), the same type */
    float *rope_cos, *rope_sin; /* (seq_len, rope_dim / 2): global layers (all but local ones) */
    float *rope_cos_swa, *rope_sin_swa; /* the same for local layers; NULL without swa_pattern */
    float *pos_table;                   /* (seq_len, dim) sinusoidal encodings, else NULL */
    AttnHook attn_hook;                 /* NULL = probabilities are not handed out */
    void *attn_hook_ctx;
    LayerHook layer_hook; /* NULL = the residual stream is not handed out (--dump-layers) */
    void *layer_hook_ctx;
} RunState;

typedef struct {
    GGUF file; /* owns the mmap every Tensor points into; for a llama2.c checkpoint (llama2c.h)
                  only the mapping (buf, size, mapped): no metadata, no tensors */
    void *converted;      /* weights converted at load (llama2.c's int8 groups), owned; else NULL */
    void *aligned;        /* the tensors a file places off TENSOR_ALIGN, copied at load, owned; else
                        NULL (see model_init) */
    size_t aligned_bytes; /* their bytes */
    uint8_t *packed;      /* the matrices, repacked or copied (model_repack), owned; else NULL */
    size_t packed_bytes;
    Config config;
    Weights weights;
    Tokenizer *tokenizer;
    RunState state;
} Model;

/* The alignment the kernels read tensors at: every float of an F32 tensor, every half of a
   quantized block, rows of AVX-512 vectors. llama.cpp writes files aligned to 32 bytes; a file
   with a smaller general.alignment (1, 2, ... are legal) has its other tensors copied at load. */
#define TENSOR_ALIGN 32

/* The context allocated when none is asked for: the model's, capped here, so that a model trained
   on 32k positions does not reserve a 32k-position KV cache for a short run. */
#define DEFAULT_CTX 4096

/* Whether layer l is a local layer (a sliding window and its own RoPE base) of a model that
   alternates local and global layers. */
static inline int layer_local(const Config *c, int l) {
    return c->swa_pattern > 0 && l % c->swa_pattern < c->swa_pattern - 1;
}
/* The window of layer l's attention: 0 = none. */
static inline int layer_window(const Config *c, int l) {
    return c->swa_pattern == 0 || layer_local(c, l) ? c->sliding_window : 0;
}

/* Opens, validates and binds a model; allocates the run state for batches of `batch` positions
   and a context of `ctx` positions (0: the model's context capped at DEFAULT_CTX; more than the
   model's is an error), its KV cache of F32 elements. */
int model_load(Model *m, const char *path, int batch, int ctx, Error *err);
/* The same, with the tokenizer.bin of a llama2.c checkpoint (NULL: found beside the model or in
   the current directory, see llama2c.h; a GGUF file must have none, it carries its own) and the
   KV cache's element type (--kv-cache: F16 halves its bytes). */
int model_load_with(Model *m, const char *path, const char *tokenizer, int batch, int ctx,
                    KvType kv_cache, Error *err);
/* The same for a model whose m->file is already parsed (from a buffer: the fuzz target); batch 0
   binds without allocating a run state. Tensors not at a multiple of TENSOR_ALIGN in memory are
   first copied into m->aligned (their file pages released), so that every reader, repacked or
   not (--no-repack), finds them aligned. On failure m is freed, m->file included. */
int model_init(Model *m, int batch, int ctx, KvType kv_cache, Error *err);
void model_free(Model *m);
void print_config(const Config *c, FILE *f);

/* Layer l's attention shape and its part of tile 0 of the key and value caches (kernels.h). */
static inline AttnShape layer_attn(const Model *m, int l, void **kc, void **vc) {
    const Config *c = &m->config;
    const size_t kv_dim = (size_t)c->n_kv_heads * c->head_dim,
                 first = (size_t)l * kv_dim * KV_TILE * kv_types[c->kv_cache].bytes;
    *kc = (char *)m->state.key_cache + first;
    *vc = (char *)m->state.value_cache + first;
    const AttnShape a = {c->n_heads,
                         c->n_kv_heads,
                         c->head_dim,
                         layer_window(c, l),
                         (size_t)c->n_layers * kv_dim * KV_TILE,
                         c->kv_cache};
    return a;
}

/* Moves the matrices the forward pass multiplies by (every layer's and the output head) into one
   allocation in 2 MB pages, m->packed: the Q8_0, Q4_0, Q5_0, Q4_K and Q6_K ones repacked into
   the layouts of kernels.h (Q8P, KP) where the active kernel set has a decoding kernel for their
   type (KP: 1-3% more bytes), the others copied as they are (from the file's mapping; tensors
   converted at load stay on the heap). Streaming weights from 2 MB pages instead of the page
   cache's 4 KB ones is ~20% faster (one core, 110M F16 and F32 decoding, 2026-11-28). Where
   nothing reads the file's copy any more (a copied matrix, a repacked one whose type has a
   prompt tile in the set: all five with AVX-512 VNNI), its pages are released from the
   process (they stay in the page cache). Returns -1 when out of memory. */
int model_repack(Model *m, Error *err);

/* From now on hands each layer's attention probabilities to hook(ctx, ...), for positions below
   max_positions (<= seq_len); allocates their buffer (cap, n_heads, max_positions) now. A NULL
   hook stops it and frees the buffer. */
int model_set_attn_hook(Model *m, AttnHook hook, void *ctx, int max_positions, Error *err);

/* The logits a forward pass computes: the last position's (decoding, a prompt's last batch), every
   position's (--dump-logits, --ppl), or none (a prompt's earlier batches: the output head is the
   largest matrix, and each call reads it whole for one row). */
typedef enum { LOGITS_LAST, LOGITS_ALL, LOGITS_NONE } Logits;

/* Runs tokens[0..n) at positions pos0 .. pos0+n-1 (n <= state.cap), appending their keys and values
   to the cache. The logits go to state.logits: (n, vocab) for LOGITS_ALL, (1, vocab) for
   LOGITS_LAST, none for LOGITS_NONE. Returns 0, or -1 when a token id is outside [0, vocab)
   (nothing runs). */
int forward(Model *m, const int *tokens, int n, int pos0, Logits want, Error *err);

/* The rule for non-finite numbers: a logit that is NaN or +-inf stops the run, never reaches the
   sampler or a score. After forward(m, tokens, n, pos0, want) succeeded, returns 0 when every logit
   it computed is finite, else -1 with an error naming the first position (and its token) whose
   logits are not. diagnose (-v): the error also names the first layer after which the residual
   stream held a non-finite value, found by running the same positions again with a check per layer
   (only here, on the error path: the normal pass checks nothing but the logits). */
int forward_check(Model *m, const int *tokens, int n, int pos0, Logits want, int diagnose,
                  Error *err);

#endif /* MODEL_H */
