/* model.c: turns a validated GGUF file into a Config, Weights bound by name, type and shape, a
 * Tokenizer and a RunState. Everything the forward pass relies on is checked here, once, with an
 * error that names the key or tensor and says what was expected and what was found.
 */
#define _DEFAULT_SOURCE /* madvise and MADV_HUGEPAGE, where the system has them */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h> /* sysconf, access */
#endif

#include "filemap.h"
#include "gguf_vocab.h"
#include "llama2c.h"
#include "model.h"

/* ---- architectures -------------------------------------------------------------------- */

typedef enum { OPTIONAL, REQUIRED } Need;

/* What an architecture's files leave unsaid: the choices its family always makes. A new family
   is a row here (plus, if its layers compute something new, the few functions that compute it). */
typedef struct {
    const char *name; /* general.architecture */
    NormKind norm;
    const char *eps_key; /* "<arch>." + this: the norm's epsilon (default 1e-5) */
    PosKind pos;
    RopeStyle rope_style;
    FfnKind ffn;
    int fused_qkv;
    int fused_gate_up;
    Need bias[N_BIAS]; /* REQUIRED: every layer has them; OPTIONAL: the file decides */
    int qk_norm;       /* RMSNorm over each head's q and k (attn_q_norm, attn_k_norm) */
    int post_norms;    /* norms on the sublayers' outputs (post_attention_norm, post_ffw_norm) */
    int scale_embd;    /* embeddings times sqrt(dim) */
    int swa_pattern;   /* see Config; llama.cpp's files leave it, and the local base, unsaid */
    float rope_theta_swa;
    int scale_by_dim_layers; /* with this many layers and no attention.scale in the file, scores
                                are scaled by 1 / sqrt(dim / n_heads) rather than 1 / sqrt(head_dim),
                                as llama.cpp decides it (0: never) */
} ArchSpec;

/* clang-format off: one family per row, its fields in the same order */
static const ArchSpec ARCHS[] = {
    /* Llama (and llama2.c's models): RMSNorm, RoPE on pairs (2i, 2i+1) (GGUF stores q and k rows
       permuted for it), SwiGLU; no biases, though fine-tunes may add them. */
    {.name = "llama",
     .norm = NORM_RMS,
     .eps_key = "attention.layer_norm_rms_epsilon",
     .pos = POS_ROPE,
     .rope_style = ROPE_INTERLEAVED,
     .ffn = FFN_SWIGLU,
     .fused_qkv = 0,
     .bias = {OPTIONAL, OPTIONAL, OPTIONAL, OPTIONAL}},
    /* Qwen2: Llama's layers with rotate-half RoPE and biases on q, k and v. */
    {.name = "qwen2",
     .norm = NORM_RMS,
     .eps_key = "attention.layer_norm_rms_epsilon",
     .pos = POS_ROPE,
     .rope_style = ROPE_NEOX,
     .ffn = FFN_SWIGLU,
     .fused_qkv = 0,
     .bias = {OPTIONAL, OPTIONAL, OPTIONAL, OPTIONAL}},
    /* GPT-2: LayerNorm, learned positions, GELU (tanh), one fused q|k|v projection, every bias. */
    {.name = "gpt2",
     .norm = NORM_LAYER,
     .eps_key = "attention.layer_norm_epsilon",
     .pos = POS_LEARNED,
     .rope_style = ROPE_INTERLEAVED,
     .ffn = FFN_GELU_TANH,
     .fused_qkv = 1,
     .bias = {REQUIRED, REQUIRED, REQUIRED, REQUIRED}},
    /* Qwen3: Qwen2's layers without biases, an RMSNorm over each head's q and k before RoPE,
       head_dim from attention.key_length. */
    {.name = "qwen3",
     .norm = NORM_RMS,
     .eps_key = "attention.layer_norm_rms_epsilon",
     .pos = POS_ROPE,
     .rope_style = ROPE_NEOX,
     .ffn = FFN_SWIGLU,
     .fused_qkv = 0,
     .bias = {OPTIONAL, OPTIONAL, OPTIONAL, OPTIONAL},
     .qk_norm = 1},
    /* Gemma 3: RMSNorm (the file stores Gemma's 1 + w), norms before and after both sublayers,
       GeGLU, embeddings times sqrt(dim), q/k norms; 5 local layers (window, RoPE base 10000,
       unscaled) for every global one, as llama.cpp fixes them for this architecture. */
    {.name = "gemma3",
     .norm = NORM_RMS,
     .eps_key = "attention.layer_norm_rms_epsilon",
     .pos = POS_ROPE,
     .rope_style = ROPE_NEOX,
     .ffn = FFN_GEGLU,
     .fused_qkv = 0,
     .bias = {OPTIONAL, OPTIONAL, OPTIONAL, OPTIONAL},
     .qk_norm = 1,
     .post_norms = 1,
     .scale_embd = 1,
     .swa_pattern = 6,
     .rope_theta_swa = 10000.0f,
     /* Gemma 3 27B: query_pre_attn_scalar 168 = 5376 / 32, head_dim 128; llama.cpp's files for it
        leave the scale unsaid and llama.cpp tells the 27B by its 62 layers */
     .scale_by_dim_layers = 62},
    /* Phi-3: Llama's layers with rotate-half RoPE, one q|k|v projection and one gate|up. */
    {.name = "phi3",
     .norm = NORM_RMS,
     .eps_key = "attention.layer_norm_rms_epsilon",
     .pos = POS_ROPE,
     .rope_style = ROPE_NEOX,
     .ffn = FFN_SWIGLU,
     .fused_qkv = 1,
     .fused_gate_up = 1,
     .bias = {OPTIONAL, OPTIONAL, OPTIONAL, OPTIONAL}},
};
/* clang-format on */
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

/* ---- metadata -------------------------------------------------------------------------- */

/* Reads "<arch>.<suffix>" as an integer in [lo, hi]; absent -> *out = def, or an error if def < 0. */
static int get_dim(const GGUF *g, const char *arch, const char *suffix, int def, int lo, int hi,
                   int *out, Error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    int found = gguf_get_int(g, key, &v, err);
    if (found < 0) return -1;
    if (!found) {
        if (def < 0) return fail(err, "missing metadata '%s'", key);
        *out = def;
        return 0;
    }
    if (v < lo || v > hi)
        return fail(err, "metadata '%s' = %lld is out of range [%d, %d]", key, (long long)v, lo,
                    hi);
    *out = (int)v;
    return 0;
}

static int get_real(const GGUF *g, const char *key, double def, double *out, Error *err) {
    int found = gguf_get_float(g, key, out, err);
    if (found < 0) return -1;
    if (!found) *out = def;
    return 0;
}

/* An optional string key naming one of `n` choices; absent leaves *out as it is. */
static int get_choice(const GGUF *g, const char *key, const char *const *names, int n, int *out,
                      Error *err) {
    Str s;
    int found = gguf_get_str(g, key, &s, err);
    if (found <= 0) return found;
    for (int i = 0; i < n; i++)
        if (names[i] && str_eq(s, names[i])) {
            *out = i;
            return 0;
        }
    char list[128] = "";
    for (int i = 0; i < n; i++)
        if (names[i])
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", *list ? ", " : "",
                     names[i]);
    return fail(err, "%s '%.*s' is unknown (%s)", key, (int)(s.len > 40 ? 40 : s.len), s.ptr, list);
}

static const ArchSpec *find_arch(Str name) {
    for (size_t i = 0; i < N_ARCHS; i++)
        if (str_eq(name, ARCHS[i].name)) return &ARCHS[i];
    return NULL;
}

/* Dimensions and the attention's shape. */
static int read_dims(const GGUF *g, Config *c, Error *err) {
    const char *a = c->arch;
    if (get_dim(g, a, "embedding_length", -1, 1, MAX_DIM, &c->dim, err) ||
        get_dim(g, a, "feed_forward_length", -1, 1, MAX_DIM, &c->hidden_dim, err) ||
        get_dim(g, a, "block_count", -1, 1, MAX_LAYERS, &c->n_layers, err) ||
        get_dim(g, a, "attention.head_count", -1, 1, MAX_DIM, &c->n_heads, err) ||
        get_dim(g, a, "attention.head_count_kv", c->n_heads, 1, MAX_DIM, &c->n_kv_heads, err) ||
        get_dim(g, a, "context_length", -1, 1, MAX_CTX, &c->ctx_train, err) ||
        get_dim(g, a, "attention.sliding_window", 0, 0, MAX_CTX, &c->sliding_window, err))
        return -1;
    if (c->n_heads > c->dim)
        return fail(err, "%d heads cannot split embedding_length %d", c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads)
        return fail(err, "attention.head_count_kv %d does not divide head_count %d", c->n_kv_heads,
                    c->n_heads);
    int def_head = c->dim % c->n_heads == 0 ? c->dim / c->n_heads : -1;
    int vlen;
    if (get_dim(g, a, "attention.key_length", def_head, 1, MAX_DIM, &c->head_dim, err) ||
        get_dim(g, a, "attention.value_length", c->head_dim, 1, MAX_DIM, &vlen, err))
        return -1;
    if (vlen != c->head_dim)
        return fail(err, "attention.value_length %d differs from key_length %d (unsupported)", vlen,
                    c->head_dim);
    if ((int64_t)c->n_heads * c->head_dim > MAX_DIM)
        return fail(err, "%d heads of %d dims are out of range", c->n_heads, c->head_dim);
    return 0;
}

/* A RoPE base "<arch>.<suffix>" (default def): finite and above 1. */
static int get_rope_base(const GGUF *g, const char *arch, const char *suffix, double def,
                         float *out, Error *err) {
    char key[128];
    double theta;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (get_real(g, key, def, &theta, err)) return -1;
    if (!(theta > 1.0) || !isfinite(theta) || theta > 1e30)
        return fail(err, "%s = %g: RoPE base must be a finite number above 1", key, theta);
    *out = (float)theta;
    return 0;
}

/* RoPE's bases, the dimensions it rotates and its scaling: none, or linear (positions divided by
   rope.scaling.factor). Llama 3's frequency-dependent scaling is the tensor rope_freqs.weight
   (bind_weights), as llama.cpp stores it. */
static int read_rope(const GGUF *g, Config *c, double theta_swa, Error *err) {
    if (get_rope_base(g, c->arch, "rope.freq_base", 10000.0, &c->rope_theta, err)) return -1;
    c->rope_theta_swa = c->rope_theta;
    if (c->swa_pattern &&
        get_rope_base(g, c->arch, "rope.freq_base_swa", theta_swa, &c->rope_theta_swa, err))
        return -1;
    if (get_dim(g, c->arch, "rope.dimension_count", c->head_dim, 2, c->head_dim, &c->rope_dim, err))
        return -1;
    if (c->rope_dim % 2)
        return fail(err, "%s.rope.dimension_count %d is odd", c->arch, c->rope_dim);
    static const char *const scalings[] = {"none", "linear"};
    char key[128];
    int type = 0;
    double factor = 1.0;
    snprintf(key, sizeof key, "%s.rope.scaling.type", c->arch);
    if (get_choice(g, key, scalings, 2, &type, err)) return -1;
    snprintf(key, sizeof key, "%s.rope.scaling.factor", c->arch);
    if (type == 1 && get_real(g, key, 1.0, &factor, err)) return -1;
    if (!(factor >= 1e-3 && factor <= 1e6))
        return fail(err, "%s = %g is out of range [0.001, 1e6]", key, factor);
    c->rope_freq_scale = (float)(1.0 / factor);
    double attn_factor;
    snprintf(key, sizeof key, "%s.rope.scaling.attn_factor", c->arch);
    if (get_real(g, key, 1.0, &attn_factor, err)) return -1;
    if (!(attn_factor > 0.0 && attn_factor <= 1e3))
        return fail(err, "%s = %g is out of range (0, 1000]", key, attn_factor);
    c->rope_attn_factor = (float)attn_factor;
    return get_dim(g, c->arch, "rope.scaling.original_context_length", 0, 0, MAX_CTX,
                   &c->rope_ctx_orig, err);
}

/* The attention's score scale: "<arch>.attention.scale", else the family's default: 1 / sqrt(dim /
   n_heads) (whole division, as llama.cpp) at the layer count the family names, 1 / sqrt(head_dim)
   otherwise. */
static int read_attn_scale(const GGUF *g, const ArchSpec *arch, Config *c, Error *err) {
    char key[128];
    double scale;
    int by_dim = arch->scale_by_dim_layers && c->n_layers == arch->scale_by_dim_layers;
    double def = 1.0 / sqrt((double)(by_dim ? c->dim / c->n_heads : c->head_dim));
    snprintf(key, sizeof key, "%s.attention.scale", c->arch);
    if (get_real(g, key, def, &scale, err)) return -1;
    if (!(scale > 0.0 && scale <= 1e3))
        return fail(err, "%s = %g is out of range (0, 1000]", key, scale);
    c->attn_scale = (float)scale;
    c->q_scale = (float)(scale * sqrt((double)c->head_dim)); /* exactly 1 for the default */
    return 0;
}

/* Keys llama.cpp reads that change the computation in ways this program does not implement
   (mixtures of experts, soft-capped or scaled logits, parallel residuals, bidirectional
   attention). A file that sets one is refused by name rather than run wrongly. `neutral` is the
   value that means "off" (a file may write it explicitly). */
static const struct {
    const char *suffix; /* after "<arch>." */
    double neutral;
} UNSUPPORTED_KEYS[] = {
    {"expert_count", 0},          {"attn_logit_softcapping", 0}, {"final_logit_softcapping", 0},
    {"logit_scale", 1},           {"residual_scale", 1},         {"embedding_scale", 1},
    {"use_parallel_residual", 0}, {"attention.causal", 1},
};

static int refuse_unsupported_keys(const GGUF *g, const char *arch, Error *err) {
    for (size_t i = 0; i < sizeof UNSUPPORTED_KEYS / sizeof UNSUPPORTED_KEYS[0]; i++) {
        char key[128];
        snprintf(key, sizeof key, "%s.%s", arch, UNSUPPORTED_KEYS[i].suffix);
        const GGUFKV *kv = gguf_find(g, key);
        if (!kv) continue;
        double x;
        int b;
        if (kv->type == GGUF_BOOL) {
            if (gguf_get_bool(g, key, &b, err) < 0) return -1;
            x = b;
        } else if (gguf_get_float(g, key, &x, err) < 0) { /* a string or an array: named */
            return -1;
        }
        if (x != UNSUPPORTED_KEYS[i].neutral)
            return fail(err, "metadata '%s' = %g is not supported by this program", key, x);
    }
    return 0;
}

static void read_biases(const GGUF *g, const ArchSpec *arch, Config *c);

static int read_config(const GGUF *g, Config *c, Error *err) {
    memset(c, 0, sizeof *c);
    Str name;
    int found = gguf_get_str(g, "general.architecture", &name, err);
    if (found < 0) return -1;
    if (!found) return fail(err, "missing metadata 'general.architecture'");
    const ArchSpec *arch = find_arch(name);
    if (!arch)
        return fail(
            err,
            "unsupported architecture '%.*s' (supported: llama, qwen2, qwen3, gemma3, phi3, gpt2)",
            (int)(name.len > 40 ? 40 : name.len), name.ptr);
    snprintf(c->arch, sizeof c->arch, "%s", arch->name);
    c->norm = arch->norm;
    c->pos = arch->pos;
    c->rope_style = arch->rope_style;
    c->ffn = arch->ffn;
    c->fused_qkv = arch->fused_qkv;
    c->fused_gate_up = arch->fused_gate_up;
    c->qk_norm = arch->qk_norm;
    c->post_norms = arch->post_norms;
    c->swa_pattern = arch->swa_pattern;
    if (read_dims(g, c, err) || refuse_unsupported_keys(g, c->arch, err) ||
        read_attn_scale(g, arch, c, err))
        return -1;
    c->embd_scale = arch->scale_embd ? (float)sqrt((double)c->dim) : 1.0f;

    /* this program's own exports may pick other positions or activations (export.py) */
    static const char *const positions[] = {NULL, "learned", "sinusoidal"};
    static const char *const activations[] = {NULL, "gelu_tanh", "gelu_erf"};
    int pos = c->pos, ffn = c->ffn;
    if (c->pos != POS_ROPE && get_choice(g, "tinygpt.position_encoding", positions, 3, &pos, err))
        return -1;
    if (c->ffn == FFN_GELU_TANH &&
        get_choice(g, "tinygpt.ffn_activation", activations, 3, &ffn, err))
        return -1;
    c->pos = (PosKind)pos;
    c->ffn = (FfnKind)ffn;
    if (c->pos == POS_ROPE && read_rope(g, c, arch->rope_theta_swa, err)) return -1;

    char key[128];
    double eps;
    snprintf(key, sizeof key, "%s.%s", c->arch, arch->eps_key);
    if (get_real(g, key, 1e-5, &eps, err)) return -1;
    /* A float64 epsilon can be positive and still round to float 0: a row of zeros would then
       normalize to 0 * inf = NaN. */
    if (!(eps > 0.0) || eps > 1.0 || (float)eps == 0.0f)
        return fail(err, "norm epsilon %g is out of range (0, 1] as a float32", eps);
    c->norm_eps = (float)eps;
    read_biases(g, arch, c);
    return 0;
}

/* ---- tensors --------------------------------------------------------------------------- */

/* Binds the 2-D tensor `name`, which must have shape (rows, cols). Absent: error if required. */
static int bind_matrix(const GGUF *g, const char *name, int rows, int cols, int required, Tensor *t,
                       Error *err) {
    memset(t, 0, sizeof *t);
    const GGUFTensor *gt = gguf_find_tensor(g, name);
    if (!gt) return required ? fail(err, "missing tensor '%s'", name) : 0;
    if (gt->n_dims != 2 || gt->ne[0] != (uint64_t)cols || gt->ne[1] != (uint64_t)rows)
        return fail(err, "tensor '%s' has shape [%llu, %llu] (ne0, ne1), expected [%d, %d]", name,
                    (unsigned long long)gt->ne[0],
                    (unsigned long long)(gt->n_dims > 1 ? gt->ne[1] : 1), cols, rows);
    if (!kernels_supported(gt->type))
        return fail(err, "tensor '%s' has type %s, which this build cannot run", name,
                    ggml_type_name(gt->type));
    if (weight_type(gt->type)->act != GGML_F32 && cols > Q8_MAX_COLS)
        return fail(err, "tensor '%s': %s rows of %d exceed this build's limit of %d", name,
                    ggml_type_name(gt->type), cols, Q8_MAX_COLS);
    t->type = gt->type;
    t->rows = rows;
    t->cols = cols;
    t->row_bytes = ggml_row_bytes(gt->type, (uint64_t)cols);
    t->data = gt->data;
    return 0;
}

/* Binds the F32 vector `name` of length n. */
static int bind_vector(const GGUF *g, const char *name, int n, int required, const float **v,
                       Error *err) {
    *v = NULL;
    const GGUFTensor *gt = gguf_find_tensor(g, name);
    if (!gt) return required ? fail(err, "missing tensor '%s'", name) : 0;
    if (gt->n_dims != 1 || gt->ne[0] != (uint64_t)n)
        return fail(err, "tensor '%s' has %u dims and %llu elements, expected a vector of %d", name,
                    gt->n_dims, (unsigned long long)gt->ne[0], n);
    if (gt->type != GGML_F32)
        return fail(err, "tensor '%s' has type %s, expected F32 (norms and biases)", name,
                    ggml_type_name(gt->type));
    *v = gt->data; /* at TENSOR_ALIGN (model_init copies the others), an aligned float* */
    return 0;
}

/* The tensors of a model, as data: each row names a tensor, where it is bound, its shape in
 * symbolic dimensions, and when the model has it. */
typedef enum {
    D_1,
    D_DIM,
    D_HIDDEN,
    D_HIDDEN2,
    D_HEAD,
    D_Q,
    D_KV,
    D_QKV,
    D_VOCAB,
    D_CTX,
    D_ROPE_HALF
} Dim;
typedef enum {
    WHEN_ALWAYS,
    WHEN_SPLIT_QKV,   /* separate q, k, v projections */
    WHEN_FUSED_QKV,   /* one fused projection */
    WHEN_GATED,       /* a gated feed-forward (SwiGLU, GeGLU) with gate and up apart */
    WHEN_SPLIT_UP,    /* up apart from the gate (or no gate) */
    WHEN_FUSED_UP,    /* one gate|up projection */
    WHEN_LONGROPE,    /* the file has longrope's factors */
    WHEN_QK_NORM,     /* q and k normalized per head */
    WHEN_POST_NORMS,  /* sublayer outputs normalized */
    WHEN_ROPE_FREQS,  /* the file has RoPE frequency factors */
    WHEN_LEARNED_POS, /* learned position embeddings */
    WHEN_NOT_TIED     /* an output head of its own; absent = tied to token_embd */
} When;

typedef struct {
    const char *name; /* after "blk.N." for a layer's tensors */
    size_t offset;    /* of the Tensor (matrix) or const float* (vector) it binds */
    int matrix;       /* 1: (rows, cols) of any supported type; 0: F32 vector (rows) */
    Dim rows, cols;
    When when;
    int bias; /* 1 + BiasGroup for a bias (it binds when c->bias[group]), else 0 */
} TensorSpec;

#define LW(field) offsetof(LayerWeights, field)
#define GW(field) offsetof(Weights, field)
#define MAT(r, c) .matrix = 1, .rows = r, .cols = c
#define VEC(n) .rows = n, .cols = D_1
#define BIAS(group) .bias = 1 + (group)

static const TensorSpec LAYER_TENSORS[] = {
    {"attn_norm.weight", LW(attn_norm), VEC(D_DIM)},
    {"attn_norm.bias", LW(attn_norm_b), VEC(D_DIM), BIAS(BIAS_NORM)},
    {"attn_q.weight", LW(wq), MAT(D_Q, D_DIM), .when = WHEN_SPLIT_QKV},
    {"attn_k.weight", LW(wk), MAT(D_KV, D_DIM), .when = WHEN_SPLIT_QKV},
    {"attn_v.weight", LW(wv), MAT(D_KV, D_DIM), .when = WHEN_SPLIT_QKV},
    {"attn_q.bias", LW(bq), VEC(D_Q), .when = WHEN_SPLIT_QKV, BIAS(BIAS_QKV)},
    {"attn_k.bias", LW(bk), VEC(D_KV), .when = WHEN_SPLIT_QKV, BIAS(BIAS_QKV)},
    {"attn_v.bias", LW(bv), VEC(D_KV), .when = WHEN_SPLIT_QKV, BIAS(BIAS_QKV)},
    {"attn_qkv.weight", LW(wqkv), MAT(D_QKV, D_DIM), .when = WHEN_FUSED_QKV},
    {"attn_qkv.bias", LW(bqkv), VEC(D_QKV), .when = WHEN_FUSED_QKV, BIAS(BIAS_QKV)},
    {"attn_q_norm.weight", LW(q_norm), VEC(D_HEAD), .when = WHEN_QK_NORM},
    {"attn_k_norm.weight", LW(k_norm), VEC(D_HEAD), .when = WHEN_QK_NORM},
    {"attn_output.weight", LW(wo), MAT(D_DIM, D_Q)},
    {"attn_output.bias", LW(bo), VEC(D_DIM), BIAS(BIAS_OUT)},
    {"post_attention_norm.weight", LW(post_attn_norm), VEC(D_DIM), .when = WHEN_POST_NORMS},
    {"ffn_norm.weight", LW(ffn_norm), VEC(D_DIM)},
    {"ffn_norm.bias", LW(ffn_norm_b), VEC(D_DIM), BIAS(BIAS_NORM)},
    {"ffn_gate.weight", LW(w_gate), MAT(D_HIDDEN, D_DIM), .when = WHEN_GATED},
    {"ffn_gate.bias", LW(b_gate), VEC(D_HIDDEN), .when = WHEN_GATED, BIAS(BIAS_FFN)},
    {"ffn_up.weight", LW(w_up), MAT(D_HIDDEN, D_DIM), .when = WHEN_SPLIT_UP},
    {"ffn_up.weight", LW(w_gate_up), MAT(D_HIDDEN2, D_DIM), .when = WHEN_FUSED_UP},
    {"ffn_up.bias", LW(b_up), VEC(D_HIDDEN), BIAS(BIAS_FFN)},
    {"ffn_down.weight", LW(w_down), MAT(D_DIM, D_HIDDEN)},
    {"ffn_down.bias", LW(b_down), VEC(D_DIM), BIAS(BIAS_FFN)},
    {"post_ffw_norm.weight", LW(post_ffn_norm), VEC(D_DIM), .when = WHEN_POST_NORMS},
};

static const TensorSpec MODEL_TENSORS[] = {
    {"token_embd.weight", GW(token_embd), MAT(D_VOCAB, D_DIM)},
    {"position_embd.weight", GW(pos_embd), MAT(D_CTX, D_DIM), .when = WHEN_LEARNED_POS},
    {"output_norm.weight", GW(out_norm), VEC(D_DIM)},
    {"output_norm.bias", GW(out_norm_b), VEC(D_DIM), BIAS(BIAS_NORM)},
    {"output.weight", GW(output), MAT(D_VOCAB, D_DIM), .when = WHEN_NOT_TIED},
    {"rope_freqs.weight", GW(rope_freqs), VEC(D_ROPE_HALF), .when = WHEN_ROPE_FREQS},
    {"rope_factors_long.weight", GW(rope_long), VEC(D_ROPE_HALF), .when = WHEN_LONGROPE},
    {"rope_factors_short.weight", GW(rope_short), VEC(D_ROPE_HALF), .when = WHEN_LONGROPE},
};

static int dim_value(Dim d, const Config *c) {
    const int q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim;
    switch (d) {
    case D_1: return 1;
    case D_DIM: return c->dim;
    case D_HIDDEN: return c->hidden_dim;
    case D_HIDDEN2: return 2 * c->hidden_dim;
    case D_HEAD: return c->head_dim;
    case D_Q: return q;
    case D_KV: return kv;
    case D_QKV: return q + 2 * kv;
    case D_VOCAB: return c->vocab_size;
    case D_CTX: return c->ctx_train;
    case D_ROPE_HALF: return c->rope_dim / 2;
    }
    return 0;
}

/* Whether the model has the tensor of row s at all. */
static int applies(const TensorSpec *s, const Config *c) {
    switch (s->when) {
    case WHEN_ALWAYS: return 1;
    case WHEN_SPLIT_QKV: return !c->fused_qkv;
    case WHEN_FUSED_QKV: return c->fused_qkv;
    case WHEN_GATED: return ffn_gated(c->ffn) && !c->fused_gate_up;
    case WHEN_SPLIT_UP: return !c->fused_gate_up;
    case WHEN_FUSED_UP: return c->fused_gate_up;
    case WHEN_LONGROPE: return c->longrope;
    case WHEN_QK_NORM: return c->qk_norm;
    case WHEN_POST_NORMS: return c->post_norms;
    case WHEN_ROPE_FREQS: return c->rope_freqs;
    case WHEN_LEARNED_POS: return c->pos == POS_LEARNED;
    case WHEN_NOT_TIED: return !c->tied;
    }
    return 0;
}

/* Binds the rows of `specs` that apply into base (a LayerWeights or Weights); prefix goes
   before each name ("blk.3." or ""). */
static int bind_table(const GGUF *g, const Config *c, const TensorSpec *specs, size_t n,
                      const char *prefix, void *base, Error *err) {
    for (size_t i = 0; i < n; i++) {
        const TensorSpec *s = &specs[i];
        if (!applies(s, c) || (s->bias && !c->bias[s->bias - 1])) continue;
        char name[96];
        snprintf(name, sizeof name, "%s%s", prefix, s->name);
        void *field = (char *)base + s->offset;
        const int rows = dim_value(s->rows, c);
        if (s->matrix ? bind_matrix(g, name, rows, dim_value(s->cols, c), 1, field, err)
                      : bind_vector(g, name, rows, 1, field, err))
            return -1;
    }
    return 0;
}

/* Which bias groups the file has: required ones must be there; an optional group is present when
   its first tensor is in layer 0, and then every layer must have the whole group. */
static void read_biases(const GGUF *g, const ArchSpec *arch, Config *c) {
    for (int b = 0; b < N_BIAS; b++) {
        c->bias[b] = arch->bias[b] == REQUIRED;
        for (size_t i = 0; i < sizeof LAYER_TENSORS / sizeof LAYER_TENSORS[0] && !c->bias[b]; i++) {
            const TensorSpec *s = &LAYER_TENSORS[i];
            if (s->bias != 1 + b || !applies(s, c)) continue;
            char name[96];
            snprintf(name, sizeof name, "blk.0.%s", s->name);
            c->bias[b] = gguf_find_tensor(g, name) != NULL;
            break;
        }
    }
}

static int bind_weights(const GGUF *g, Config *c, Weights *w, Error *err) {
    const GGUFTensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return fail(err, "missing tensor 'token_embd.weight'");
    if (emb->n_dims != 2 || emb->ne[1] > (uint64_t)MAX_DIM * 4)
        return fail(err, "tensor 'token_embd.weight' must be 2-D with at most %d rows",
                    MAX_DIM * 4);
    c->vocab_size = (int)emb->ne[1];
    c->tied = gguf_find_tensor(g, "output.weight") == NULL;
    c->rope_freqs = gguf_find_tensor(g, "rope_freqs.weight") != NULL;
    c->longrope = gguf_find_tensor(g, "rope_factors_long.weight") != NULL;
    if ((c->rope_freqs || c->longrope) && c->pos != POS_ROPE)
        return fail(err, "RoPE frequency factors in a model without RoPE");
    if (c->rope_freqs && c->longrope)
        return fail(err, "both rope_freqs.weight and rope_factors_long.weight: which applies?");
    if (c->longrope && c->rope_ctx_orig == 0)
        return fail(err, "rope_factors_long.weight needs %s.rope.scaling.original_context_length",
                    c->arch);
    if (bind_table(g, c, MODEL_TENSORS, sizeof MODEL_TENSORS / sizeof MODEL_TENSORS[0], "", w, err))
        return -1;
    if (c->tied) w->output = w->token_embd;
    const float *factors[3] = {w->rope_freqs, w->rope_long, w->rope_short};
    for (int f = 0; f < 3; f++)
        for (int i = 0; factors[f] && i < c->rope_dim / 2; i++)
            if (!(factors[f][i] > 0.0f) || !isfinite(factors[f][i]))
                return fail(err, "RoPE frequency factor %d = %g: factors must be positive", i,
                            factors[f][i]);
    w->layers = calloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w->layers) return fail(err, "out of memory");
    const int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    for (int l = 0; l < c->n_layers; l++) {
        LayerWeights *lw = &w->layers[l];
        char prefix[32];
        snprintf(prefix, sizeof prefix, "blk.%d.", l);
        if (bind_table(g, c, LAYER_TENSORS, sizeof LAYER_TENSORS / sizeof LAYER_TENSORS[0], prefix,
                       lw, err))
            return -1;
        if (c->fused_gate_up) { /* rows gate | up */
            lw->w_gate = tensor_rows(&lw->w_gate_up, 0, c->hidden_dim);
            lw->w_up = tensor_rows(&lw->w_gate_up, c->hidden_dim, c->hidden_dim);
        }
        if (c->fused_qkv) { /* rows q | k | v of the one projection */
            lw->wq = tensor_rows(&lw->wqkv, 0, q_dim);
            lw->wk = tensor_rows(&lw->wqkv, q_dim, kv_dim);
            lw->wv = tensor_rows(&lw->wqkv, q_dim + kv_dim, kv_dim);
            if (lw->bqkv) {
                lw->bq = lw->bqkv;
                lw->bk = lw->bqkv + q_dim;
                lw->bv = lw->bqkv + q_dim + kv_dim;
            }
        }
    }
    return 0;
}

/* ---- tokenizer ------------------------------------------------------------------------- */

static int load_tokenizer(const GGUF *g, Config *c, Tokenizer **tok, Error *err) {
    return gguf_tokenizer(g, c->vocab_only, MAX_DIM * 4, &c->vocab_size, tok, err);
}

/* ---- run state ------------------------------------------------------------------------- */

/* n elements of `size` bytes. Buffers under 2 MB are zeroed, and so touched now, at load, rather
 * than by the first prompt (whose timing would count their page faults: see below), and 64-byte
 * aligned, so that the 16 outputs a repacked prompt tile stores per position (kernels.c,
 * group_packed) are one cache line, which no other thread writes. Larger ones (the KV cache,
 * above all) are left as they come, since every buffer is written before it is read (the keys
 * of a cache tile's positions not written yet, which attention reads and masks, are zeroed by
 * kv_store when the tile's first position is written), so that
 * their pages are touched lazily, when first used; they are aligned to 2 MB and marked for
 * transparent huge pages where Linux offers them, so that a first touch maps 2 MB instead of 4 KB.
 * In a virtual machine a 4 KB first touch is expensive: measured here (Firecracker, 150 MB
 * memset), 10 us per 4 KB page against 0.3-6 us per 4 KB with huge pages, which was ~28 ms of the
 * first 128-token prompt at 110M and ~0.3 ms of each decoded token (each writes fresh cache rows).
 * Returns NULL when out of memory. */
static void *state_alloc(size_t n, size_t size) {
    const size_t huge = (size_t)2 << 20, bytes = n * size;
    if (n > (SIZE_MAX - huge) / size) return NULL;
    if (bytes < huge) {
        const size_t padded = (bytes + 64) / 64 * 64; /* at least one line, even for n = 0 */
        void *p = aligned_alloc(64, padded);
        if (p) memset(p, 0, padded);
        return p;
    }
    const size_t rounded = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, rounded);
    if (!p) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE); /* advice only: a refusal changes nothing */
#endif
    return p;
}

/* RoPE's cosines and sines for every position p and frequency i < rope_dim / 2: the angle is
 * p * scale * theta^(-2i / rope_dim) / freqs[i] (freqs NULL: 1), computed in double, since at
 * long contexts float angles drift; both are multiplied by mscale. */
static int rope_table(float **cos_out, float **sin_out, const Config *c, float theta, float scale,
                      const float *freqs, float mscale, Error *err) {
    const int half = c->rope_dim / 2;
    float *cs = *cos_out = malloc((size_t)c->seq_len * half * sizeof(float));
    float *sn = *sin_out = malloc((size_t)c->seq_len * half * sizeof(float));
    if (!cs || !sn) return fail(err, "out of memory for the RoPE table");
    for (int i = 0; i < half; i++) {
        const double freq =
            scale * pow((double)theta, -2.0 * i / c->rope_dim) / (freqs ? freqs[i] : 1.0);
        for (int p = 0; p < c->seq_len; p++) {
            cs[(size_t)p * half + i] = (float)(mscale * cos(p * freq));
            sn[(size_t)p * half + i] = (float)(mscale * sin(p * freq));
        }
    }
    return 0;
}

/* The key and value caches in the element type c->kv_cache. */
static int alloc_kv_cache(RunState *s, const Config *c, Error *err) {
    const size_t kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    const size_t n = (size_t)kv_tiles(c->seq_len) * c->n_layers * kv_dim * KV_TILE;
    s->key_cache = state_alloc(n, kv_types[c->kv_cache].bytes);
    s->value_cache = state_alloc(n, kv_types[c->kv_cache].bytes);
    if (!s->key_cache || !s->value_cache)
        return fail(err, "out of memory: 2 x %zu %s elements for the KV cache (context %d)", n,
                    kv_types[c->kv_cache].name, c->seq_len);
    return 0;
}

static int alloc_state(RunState *s, const Config *c, const Weights *w, int cap, Error *err) {
    memset(s, 0, sizeof *s);
    s->cap = cap;
    const size_t q_dim = (size_t)c->n_heads * c->head_dim,
                 kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    struct {
        float **p;
        size_t n;
    } bufs[] = {
        {&s->x, cap * (size_t)c->dim},
        {&s->xb, cap * (size_t)c->dim},
        {&s->xb2, cap * (size_t)c->dim},
        {&s->q, cap * q_dim},
        {&s->k, cap * kv_dim},
        {&s->v, cap * kv_dim},
        {&s->att_out, cap * q_dim},
        {&s->hb, cap * (size_t)c->hidden_dim},
        {&s->hb2, cap * (size_t)c->hidden_dim},
        {&s->logits, cap * (size_t)c->vocab_size},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        *bufs[i].p = state_alloc(bufs[i].n, sizeof(float));
        if (!*bufs[i].p)
            return fail(err, "out of memory: %zu floats for the run state (context %d)", bufs[i].n,
                        c->seq_len);
    }
    if (alloc_kv_cache(s, c, err)) return -1;
    if (c->pos == POS_ROPE) {
        /* longrope: the long factors when the context allocated exceeds the original one, as
           llama.cpp decides (Hugging Face decides by the sequence's length so far) */
        const float *freqs = !c->longrope                    ? w->rope_freqs
                             : c->seq_len > c->rope_ctx_orig ? w->rope_long
                                                             : w->rope_short;
        if (rope_table(&s->rope_cos, &s->rope_sin, c, c->rope_theta, c->rope_freq_scale, freqs,
                       c->rope_attn_factor, err))
            return -1;
        if (c->swa_pattern && rope_table(&s->rope_cos_swa, &s->rope_sin_swa, c, c->rope_theta_swa,
                                         1.0f, NULL, 1.0f, err))
            return -1;
    }
    if (c->pos == POS_SINUSOIDAL) {
        s->pos_table = malloc((size_t)c->seq_len * c->dim * sizeof(float));
        if (!s->pos_table) return fail(err, "out of memory for the position table");
        for (int p = 0; p < c->seq_len; p++)
            for (int i = 0; i < c->dim; i++) {
                /* PE[p, 2k] = sin(p / 10000^(2k/dim)), PE[p, 2k+1] = cos(same) */
                double angle = p / pow(10000.0, (double)(i & ~1) / c->dim);
                s->pos_table[(size_t)p * c->dim + i] = (float)(i % 2 ? cos(angle) : sin(angle));
            }
    }
    return 0;
}

static void free_state(RunState *s) {
    float *bufs[] = {
        s->x,        s->xb,           s->xb2,          s->q,        s->k,      s->v,
        s->att_out,  s->hb,           s->hb2,          s->probs,    s->logits, s->rope_cos,
        s->rope_sin, s->rope_cos_swa, s->rope_sin_swa, s->pos_table};
    free(s->key_cache);
    free(s->value_cache);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(s, 0, sizeof *s);
}

/* ---- public ---------------------------------------------------------------------------- */

/* Touches every page of the tensors each token reads (all but the embeddings, which are read a
 * row at a time), from all threads. The first access to a mapped page is far slower than reading
 * it (measured here: ~1.3 us per 4 KB page, 150-220 ms for a 440 MB model, against 16 ms to
 * read it all once mapped), so paying it at load keeps it out of the first forward pass and
 * makes the timings of the prompt measure computing, not mapping. */
static void prefault_range(const void *data, size_t nbytes) {
    const size_t page = 4096;
    const volatile uint8_t *p = data;
    const long pages = (long)((nbytes + page - 1) / page);
#pragma omp parallel for schedule(static)
    for (long k = 0; k < pages; k++) (void)p[(size_t)k * page];
}

static void prefault(const GGUF *g) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const GGUFTensor *t = &g->tensors[i];
        if (str_eq(t->name, "token_embd.weight") || str_eq(t->name, "position_embd.weight"))
            continue;
        prefault_range(t->data, t->nbytes);
    }
}

/* The cache this run allocates: a context asked for, or the model's capped at DEFAULT_CTX, of
   elements of type kv_cache. */
static int choose_cache(Config *c, int ctx, KvType kv_cache, Error *err) {
    if (ctx < 0 || ctx > c->ctx_train)
        return fail(err, "a context of %d positions was asked for; the model's is %d", ctx,
                    c->ctx_train);
    c->seq_len = ctx ? ctx : c->ctx_train < DEFAULT_CTX ? c->ctx_train : DEFAULT_CTX;
    c->kv_cache = kv_cache;
    return 0;
}

/* Whole pages of [data, data + n) in the file's mapping handed back to the system (they stay in
   the page cache): advice, for memory nothing reads any more. */
static void release_range(const GGUF *f, const void *data, size_t n) {
#if defined(MADV_DONTNEED) && defined(_SC_PAGESIZE)
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)f->buf;
    const uintptr_t start = (uintptr_t)data, end = start + n;
    if (!f->mapped || page == 0 || start < lo || end > lo + f->size) return;
    const uintptr_t a = (start + page - 1) / page * page, b = end / page * page;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED); /* a refusal changes nothing */
#else
    (void)f;
    (void)data;
    (void)n;
#endif
}

static int misaligned(const GGUFTensor *t) {
    return t->nbytes && (uintptr_t)t->data % TENSOR_ALIGN != 0;
}

/* Copies every tensor the file places off TENSOR_ALIGN (a general.alignment below it) into one
   allocation, m->aligned, each on a cache line, and points the file's index at the copies: the
   kernels load floats and halves (and vectors) from tensors as aligned, which is undefined
   behaviour on an odd address, and the file is legal. Costs the copied tensors' bytes once,
   and nothing for a file aligned to 32 or more. */
static int align_tensors(Model *m, Error *err) {
    GGUF *g = &m->file;
    size_t total = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (misaligned(&g->tensors[i])) total += (g->tensors[i].nbytes + 63) / 64 * 64;
    if (total == 0) return 0;
    uint8_t *copy = aligned_alloc(64, total);
    if (!copy)
        return fail(err,
                    "out of memory: %.1f MB to align the tensors of a file aligned to %u bytes",
                    total / 1e6, g->alignment);
    m->aligned = copy;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        GGUFTensor *t = &g->tensors[i];
        if (!misaligned(t)) continue;
        memcpy(copy, t->data, t->nbytes);
        m->aligned_bytes += t->nbytes;
        release_range(g, t->data, t->nbytes);
        t->data = copy;
        copy += (t->nbytes + 63) / 64 * 64;
    }
    return 0;
}

int model_init(Model *m, int batch, int ctx, KvType kv_cache, Error *err) {
    if (align_tensors(m, err)) {
        model_free(m);
        return -1;
    }
    if (m->file.n_tensors == 0) { /* a vocabulary-only file (llama.cpp's ggml-vocab-*.gguf) */
        memset(&m->config, 0, sizeof m->config);
        m->config.vocab_only = 1;
        if (load_tokenizer(&m->file, &m->config, &m->tokenizer, err)) {
            model_free(m);
            return -1;
        }
        return 0;
    }
    if (read_config(&m->file, &m->config, err) ||
        bind_weights(&m->file, &m->config, &m->weights, err) ||
        choose_cache(&m->config, ctx, kv_cache, err) ||
        load_tokenizer(&m->file, &m->config, &m->tokenizer, err) ||
        (batch > 0 && alloc_state(&m->state, &m->config, &m->weights, batch, err))) {
        model_free(m);
        return -1;
    }
    return 0;
}

/* 1 when the file at path exists and does not start with the GGUF magic: a llama2.c checkpoint,
   or nothing this program reads (llama2c.c's error then says both). Unreadable: 0, so that
   gguf_open reports it. */
static int lacks_gguf_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4];
    const size_t n = fread(magic, 1, 4, f);
    const int readable = !ferror(f);
    fclose(f);
    return readable && (n < 4 || memcmp(magic, "GGUF", 4) != 0);
}

/* A Hugging Face model as it is downloaded, given instead of a converted file: its directory
   (with config.json), or its safetensors or PyTorch weights. Returns -1 with an error that says
   how to convert it (export.py, beside this program's sources), or 0 for anything else. */
static int refuse_unconverted(const char *path, Error *err) {
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    char cfg[4200];
    if (S_ISDIR(st.st_mode)) {
        snprintf(cfg, sizeof cfg, "%s/config.json", path);
        if (access(cfg, R_OK) != 0) return 0;
        return fail(err,
                    "'%s' is a Hugging Face model directory: convert it with python3 export.py %s "
                    "out.gguf, then ./run out.gguf",
                    path, path);
    }
    uint8_t head[9] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    const size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    uint64_t json = 0; /* safetensors: the JSON header's length, then the header, '{' first */
    for (int i = 7; i >= 0; i--) json = json << 8 | head[i];
    const char *kind = NULL;
    if (n == 9 && head[8] == '{' && json >= 2 && json <= (uint64_t)st.st_size - 8)
        kind = "safetensors";
    else if (n >= 4 && memcmp(head, "PK\003\004", 4) == 0) /* a zip: torch.save's format */
        kind = "PyTorch";
    if (!kind) return 0;
    const char *slash = strrchr(path, '/');
    const int dir = slash ? (int)(slash - path) : 1;
    return fail(err,
                "'%s' is %s weights, not a GGUF file: convert the model's directory with python3 "
                "export.py %.*s out.gguf, then ./run out.gguf",
                path, kind, dir, slash ? path : ".");
}

/* The file at path mapped whole (what: "model" or "tokenizer", for the errors). */
static int map_nonempty(const char *path, const char *what, const uint8_t **buf, size_t *size,
                        Error *err) {
    const int rc = map_file(path, what, 1, buf, size, err);
    return rc > 0 ? fail(err, "%s '%s' is empty", what, path) : rc;
}

/* A llama2.c checkpoint (llama2c.h): mapped into m->file, bound by llama2c_bind, with the
   tokenizer.bin found for it. */
static int load_llama2c(Model *m, const char *path, const char *tokenizer, Error *err) {
    char tok_path[4096];
    const uint8_t *tbuf;
    size_t tsize;
    if (map_nonempty(path, "model", &m->file.buf, &m->file.size, err)) return -1;
    m->file.mapped = 1;
    if (llama2c_bind(m->file.buf, m->file.size, &m->config, &m->weights, &m->converted, err) ||
        llama2c_find_tokenizer(path, tokenizer, tok_path, sizeof tok_path, err) ||
        map_nonempty(tok_path, "tokenizer", &tbuf, &tsize, err))
        return -1;
    const int rc = llama2c_tokenizer(tbuf, tsize, m->config.vocab_size, &m->tokenizer, err);
    unmap_file(tbuf, tsize);
    return rc;
}

int model_load_with(Model *m, const char *path, const char *tokenizer, int batch, int ctx,
                    KvType kv_cache, Error *err) {
    memset(m, 0, sizeof *m);
    if (refuse_unconverted(path, err)) return -1;
    if (lacks_gguf_magic(path)) {
        if (load_llama2c(m, path, tokenizer, err) || choose_cache(&m->config, ctx, kv_cache, err) ||
            (batch > 0 && alloc_state(&m->state, &m->config, &m->weights, batch, err))) {
            model_free(m);
            return -1;
        }
        prefault_range(m->file.buf, m->file.size);
        return 0;
    }
    if (tokenizer)
        return fail(err,
                    "a tokenizer (-z) is for llama2.c checkpoints; '%s' is a GGUF file with "
                    "its own",
                    path);
    if (gguf_open(&m->file, path, err) || model_init(m, batch, ctx, kv_cache, err)) return -1;
    prefault(&m->file);
    return 0;
}

int model_load(Model *m, const char *path, int batch, int ctx, Error *err) {
    return model_load_with(m, path, NULL, batch, ctx, KV_F32, err);
}

int model_set_attn_hook(Model *m, AttnHook hook, void *ctx, int max_positions, Error *err) {
    RunState *s = &m->state;
    free(s->probs);
    s->probs = NULL;
    s->attn_hook = NULL;
    s->attn_hook_ctx = NULL;
    if (!hook) return 0;
    if (max_positions < 1 || max_positions > m->config.seq_len)
        return fail(err, "attention probabilities for %d positions: the context is %d",
                    max_positions, m->config.seq_len);
    const size_t n = (size_t)s->cap * m->config.n_heads * max_positions;
    if (!(s->probs = malloc(n * sizeof(float))))
        return fail(err, "out of memory: %zu floats for the attention probabilities", n);
    s->probs_stride = max_positions;
    s->attn_hook = hook;
    s->attn_hook_ctx = ctx;
    return 0;
}

/* The matrices forward() multiplies by: every layer's (the views of fused ones, not the fused
   tensors, which it never multiplies by whole) and the output head. Returns the count. */
static int matmul_tensors(Model *m, Tensor **out) {
    int n = 0;
    for (int l = 0; l < m->config.n_layers; l++) {
        LayerWeights *lw = &m->weights.layers[l];
        Tensor *ts[] = {&lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->w_gate, &lw->w_up, &lw->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) out[n++] = ts[i];
    }
    out[n++] = &m->weights.output;
    return n;
}

/* Is tensor w in the file's mapping (not converted at load onto the heap)? */
static int in_mapping(const GGUF *f, const Tensor *w) {
    const uintptr_t lo = (uintptr_t)f->buf, start = (uintptr_t)w->data;
    return f->mapped && w->data && start >= lo &&
           start + (size_t)w->rows * w->row_bytes <= lo + f->size;
}

/* The file's pages under tensor w, once it is repacked and nothing reads them (decoding and
 * prompts both read the packed copy: the set has tile_packed or tile_packed_k for its type; other
 * sets, and --no-repack, which builds no copy, keep them), handed back to the
 * system: they stay in the page cache but leave this process's resident set, so the weights are
 * not resident twice (measured: 110M Q8_0, 1,024-token prompt, peak RSS 360 MB before). A reader
 * that still comes (the embedding lookups of a tied output head, --attn's circuits) maps them
 * again from the cache, so this is advice, never a change of what is read. Whole pages inside the
 * range only, and only in the mapping: a tensor converted at load (llama2.c) lives on the heap,
 * where MADV_DONTNEED would zero it. */
static void release_file_pages(const GGUF *f, const Tensor *w) {
    if (in_mapping(f, w)) release_range(f, w->data, (size_t)w->rows * w->row_bytes);
}

/* The bytes tensor w takes in m->packed: its repacked layout, or its own copied as it is, or
   nothing (no data, or a tensor the set does not pack that lives on the heap), rounded up to a
   cache line, so that every tensor starts on one (and rows of a multiple of 64 bytes too). */
static size_t moved_bytes(const Model *m, const Kernels *k, const Tensor *w) {
    size_t bytes = 0;
    if (w->data && kernels_packs(k, w->type))
        bytes = packed_bytes(w);
    else if (in_mapping(&m->file, w))
        bytes = (size_t)w->rows * w->row_bytes;
    return (bytes + 63) / 64 * 64;
}

/* n bytes from src to dst in 1 MB pieces across threads: the copy's first touches of its fresh
   pages (zeroed by the kernel, and in a virtual machine first backed by the host) are most of
   its cost, and they run in parallel. */
static void copy_parallel(uint8_t *dst, const uint8_t *src, size_t n) {
    const size_t piece = (size_t)1 << 20;
    const long pieces = (long)((n + piece - 1) / piece);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < pieces; i++) {
        const size_t off = (size_t)i * piece;
        memcpy(dst + off, src + off, n - off < piece ? n - off : piece);
    }
}

int model_repack(Model *m, Error *err) {
    const Kernels *k = kernels_active();
    if (m->config.vocab_only || !m->weights.layers) return 0;
    Tensor **ts = malloc(((size_t)m->config.n_layers * 7 + 1) * sizeof *ts);
    if (!ts) return fail(err, "out of memory");
    const int n = matmul_tensors(m, ts);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += moved_bytes(m, k, ts[i]);
    if (total == 0) {
        free(ts);
        return 0;
    }
    const size_t huge = (size_t)2 << 20, rounded = (total + huge - 1) / huge * huge;
    if ((m->packed = aligned_alloc(huge, rounded))) {
#ifdef MADV_HUGEPAGE
        madvise(m->packed, rounded, MADV_HUGEPAGE); /* advice only, as state_alloc's */
#endif
    } else {
        free(ts);
        return fail(err, "out of memory: %.1f MB to repack the weights (--no-repack)", total / 1e6);
    }
    m->packed_bytes = total;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        Tensor *w = ts[i];
        const size_t bytes = moved_bytes(m, k, w);
        if (bytes == 0) continue;
        /* tensor by tensor, so that the resident set never holds both copies of all */
        if (kernels_packs(k, w->type)) {
            tensor_pack(m->packed + off, w);
            w->packed = m->packed + off;
            if (kernels_tiles_packed(k, w->type)) release_file_pages(&m->file, w);
        } else {
            copy_parallel(m->packed + off, w->data, (size_t)w->rows * w->row_bytes);
            release_file_pages(&m->file, w);
            w->data = m->packed + off;
        }
        off += bytes;
    }
    free(ts);
    return 0;
}

void model_free(Model *m) {
    free_state(&m->state);
    if (m->tokenizer) tokenizer_free(m->tokenizer);
    free(m->weights.layers);
    free(m->converted);
    free(m->aligned);
    free(m->packed);
    gguf_close(&m->file);
    memset(m, 0, sizeof *m);
}

void print_config(const Config *c, FILE *f) {
    static const char *norms[] = {"RMSNorm", "LayerNorm"};
    static const char *pos[] = {"RoPE", "learned", "sinusoidal"};
    static const char *ffn[] = {"SwiGLU", "GELU (tanh)", "GELU (erf)", "GeGLU (tanh)"};
    fprintf(f,
            "model: %s, dim %d, %d layers, %d heads (%d kv, head dim %d), ffn %d %s, vocab %d, "
            "context %d (of %d), %s eps %g, positions %s",
            c->arch, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->hidden_dim,
            ffn[c->ffn], c->vocab_size, c->seq_len, c->ctx_train, norms[c->norm], c->norm_eps,
            pos[c->pos]);
    if (c->pos == POS_ROPE) {
        fprintf(f, " (%s, theta %g, %d dims",
                c->rope_style == ROPE_NEOX ? "rotate-half" : "interleaved", c->rope_theta,
                c->rope_dim);
        if (c->rope_freq_scale != 1.0f)
            fprintf(f, ", linear scaling x%g", 1.0 / c->rope_freq_scale);
        if (c->rope_freqs) fprintf(f, ", frequency factors");
        if (c->longrope)
            fprintf(f, ", longrope (%s factors, original context %d, attention factor %g)",
                    c->seq_len > c->rope_ctx_orig ? "long" : "short", c->rope_ctx_orig,
                    c->rope_attn_factor);
        fprintf(f, ")");
    }
    if (c->sliding_window) fprintf(f, ", sliding window %d", c->sliding_window);
    if (c->swa_pattern)
        fprintf(f, " on %d of every %d layers (theta %g)", c->swa_pattern - 1, c->swa_pattern,
                c->rope_theta_swa);
    if (c->qk_norm) fprintf(f, ", q/k norms");
    if (c->post_norms) fprintf(f, ", post-sublayer norms");
    if (c->embd_scale != 1.0f) fprintf(f, ", embeddings x%g", c->embd_scale);
    if (c->q_scale != 1.0f) fprintf(f, ", attention scale %g", c->attn_scale);
    static const char *bias[N_BIAS] = {"qkv", "out", "ffn", "norm"};
    fprintf(f, ", %s q|k|v%s, biases:", c->fused_qkv ? "fused" : "separate",
            c->fused_gate_up ? ", fused gate|up" : "");
    int any = 0;
    for (int b = 0; b < N_BIAS; b++)
        if (c->bias[b]) fprintf(f, " %s", bias[b]), any = 1;
    fprintf(f, "%s, %s output\n", any ? "" : " none", c->tied ? "tied" : "separate");
}
