/* model.c: turns a validated GGUF file into a Config, Weights bound by name, type and shape, a
 * Tokenizer and a RunState. Everything the forward pass relies on is checked here, once, with an
 * error that names the key or tensor and says what was expected and what was found.
 */
#define _DEFAULT_SOURCE  /* madvise and MADV_HUGEPAGE, where the system has them */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#endif

#include "model.h"

#define MAX_DIM (1 << 20)        /* sanity bounds: far above any model this program is for */
#define MAX_LAYERS 1024
#define MAX_CTX (1 << 20)

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
        return fail(err, "metadata '%s' = %lld is out of range [%d, %d]", key, (long long)v, lo, hi);
    *out = (int)v;
    return 0;
}

static int get_real(const GGUF *g, const char *key, double def, double *out, Error *err) {
    int found = gguf_get_float(g, key, out, err);
    if (found < 0) return -1;
    if (!found) *out = def;
    return 0;
}

static int read_config(const GGUF *g, Config *c, Error *err) {
    memset(c, 0, sizeof *c);
    Str arch;
    int found = gguf_get_str(g, "general.architecture", &arch, err);
    if (found < 0) return -1;
    if (!found) return fail(err, "missing metadata 'general.architecture'");
    int is_gpt2 = str_eq(arch, "gpt2");
    if (!is_gpt2 && !str_eq(arch, "llama") && !str_eq(arch, "qwen2"))
        return fail(err, "unsupported architecture '%.*s' (supported: llama, qwen2, gpt2)",
                    (int)(arch.len > 40 ? 40 : arch.len), arch.ptr);
    snprintf(c->arch, sizeof c->arch, "%.*s", (int)arch.len, arch.ptr);
    const char *a = c->arch;

    if (get_dim(g, a, "embedding_length", -1, 1, MAX_DIM, &c->dim, err) ||
        get_dim(g, a, "feed_forward_length", -1, 1, MAX_DIM, &c->hidden_dim, err) ||
        get_dim(g, a, "block_count", -1, 1, MAX_LAYERS, &c->n_layers, err) ||
        get_dim(g, a, "attention.head_count", -1, 1, MAX_DIM, &c->n_heads, err) ||
        get_dim(g, a, "attention.head_count_kv", c->n_heads, 1, MAX_DIM, &c->n_kv_heads, err) ||
        get_dim(g, a, "context_length", -1, 1, MAX_CTX, &c->seq_len, err) ||
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

    double eps;
    if (is_gpt2) {
        c->norm = NORM_LAYER;
        if (get_real(g, "gpt2.attention.layer_norm_epsilon", 1e-5, &eps, err)) return -1;
        if (c->dim % c->n_heads)
            return fail(err, "head_count %d does not divide embedding_length %d", c->n_heads, c->dim);
        if (c->n_kv_heads != c->n_heads)
            return fail(err, "gpt2 models have no grouped-query attention (head_count_kv %d != %d)",
                        c->n_kv_heads, c->n_heads);
        c->pos = POS_LEARNED;
        c->ffn = FFN_GELU_TANH;
        Str s;
        if ((found = gguf_get_str(g, "tinygpt.position_encoding", &s, err)) < 0) return -1;
        if (found) {
            if (str_eq(s, "sinusoidal")) c->pos = POS_SINUSOIDAL;
            else if (!str_eq(s, "learned"))
                return fail(err, "tinygpt.position_encoding '%.*s' is unknown (learned, sinusoidal)",
                            (int)(s.len > 40 ? 40 : s.len), s.ptr);
        }
        if ((found = gguf_get_str(g, "tinygpt.ffn_activation", &s, err)) < 0) return -1;
        if (found) {
            if (str_eq(s, "gelu_erf")) c->ffn = FFN_GELU_ERF;
            else if (!str_eq(s, "gelu_tanh"))
                return fail(err, "tinygpt.ffn_activation '%.*s' is unknown (gelu_tanh, gelu_erf)",
                            (int)(s.len > 40 ? 40 : s.len), s.ptr);
        }
    } else {
        char key[128];
        c->norm = NORM_RMS;
        c->pos = POS_ROPE;
        c->ffn = FFN_SWIGLU;
        c->rope_style = str_eq(arch, "qwen2") ? ROPE_NEOX : ROPE_INTERLEAVED;
        snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
        if (get_real(g, key, 1e-5, &eps, err)) return -1;
        double theta;
        snprintf(key, sizeof key, "%s.rope.freq_base", a);
        if (get_real(g, key, 10000.0, &theta, err)) return -1;
        if (!(theta > 1.0) || !isfinite(theta))
            return fail(err, "%s = %g: RoPE base must be a finite number above 1", key, theta);
        c->rope_theta = (float)theta;
        if (get_dim(g, a, "rope.dimension_count", c->head_dim, 2, c->head_dim, &c->rope_dim, err))
            return -1;
        if (c->rope_dim % 2)
            return fail(err, "%s.rope.dimension_count %d is odd", a, c->rope_dim);
    }
    /* A float64 epsilon can be positive and still round to float 0: a row of zeros would then
       normalize to 0 * inf = NaN. */
    if (!(eps > 0.0) || eps > 1.0 || (float)eps == 0.0f)
        return fail(err, "norm epsilon %g is out of range (0, 1] as a float32", eps);
    c->norm_eps = (float)eps;
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
    if (gt->type == GGML_Q8_0 && cols > Q8_MAX_COLS)
        return fail(err, "tensor '%s': Q8_0 rows of %d exceed this build's limit of %d", name, cols,
                    Q8_MAX_COLS);
    if (!kernels_supported(gt->type))
        return fail(err, "tensor '%s' has type %s, which this build cannot run (F32, F16, Q8_0)", name,
                    ggml_type_name(gt->type));
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
    *v = gt->data;  /* offsets are aligned to >= 32 bytes, so this is a properly aligned float* */
    return 0;
}

static int bind_layer(const GGUF *g, const Config *c, int l, LayerWeights *w, Error *err) {
    const int dim = c->dim, hid = c->hidden_dim;
    const int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    const int bias = c->norm == NORM_LAYER;  /* GPT-2 has every bias; llama-family ones may */
    char n[96];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d." s, l), n)
    if (bind_vector(g, NAME("attn_norm.weight"), dim, 1, &w->attn_norm, err) ||
        bind_vector(g, NAME("attn_norm.bias"), dim, bias, &w->attn_norm_b, err) ||
        bind_vector(g, NAME("ffn_norm.weight"), dim, 1, &w->ffn_norm, err) ||
        bind_vector(g, NAME("ffn_norm.bias"), dim, bias, &w->ffn_norm_b, err))
        return -1;
    if (c->norm == NORM_LAYER) {  /* GPT-2: one fused (3*dim, dim) projection, rows q | k | v */
        Tensor qkv;
        const float *b;
        if (bind_matrix(g, NAME("attn_qkv.weight"), 3 * dim, dim, 1, &qkv, err) ||
            bind_vector(g, NAME("attn_qkv.bias"), 3 * dim, 1, &b, err))
            return -1;
        w->wq = tensor_rows(&qkv, 0, dim);
        w->wk = tensor_rows(&qkv, dim, dim);
        w->wv = tensor_rows(&qkv, 2 * dim, dim);
        w->bq = b;
        w->bk = b + dim;
        w->bv = b + 2 * dim;
    } else {
        if (bind_matrix(g, NAME("attn_q.weight"), q_dim, dim, 1, &w->wq, err) ||
            bind_matrix(g, NAME("attn_k.weight"), kv_dim, dim, 1, &w->wk, err) ||
            bind_matrix(g, NAME("attn_v.weight"), kv_dim, dim, 1, &w->wv, err) ||
            bind_vector(g, NAME("attn_q.bias"), q_dim, 0, &w->bq, err) ||
            bind_vector(g, NAME("attn_k.bias"), kv_dim, 0, &w->bk, err) ||
            bind_vector(g, NAME("attn_v.bias"), kv_dim, 0, &w->bv, err))
            return -1;
    }
    if (bind_matrix(g, NAME("attn_output.weight"), dim, q_dim, 1, &w->wo, err) ||
        bind_vector(g, NAME("attn_output.bias"), dim, bias, &w->bo, err) ||
        bind_matrix(g, NAME("ffn_gate.weight"), hid, dim, c->ffn == FFN_SWIGLU, &w->w_gate, err) ||
        bind_vector(g, NAME("ffn_gate.bias"), hid, 0, &w->b_gate, err) ||
        bind_matrix(g, NAME("ffn_up.weight"), hid, dim, 1, &w->w_up, err) ||
        bind_vector(g, NAME("ffn_up.bias"), hid, bias, &w->b_up, err) ||
        bind_matrix(g, NAME("ffn_down.weight"), dim, hid, 1, &w->w_down, err) ||
        bind_vector(g, NAME("ffn_down.bias"), dim, bias, &w->b_down, err))
        return -1;
#undef NAME
    return 0;
}

static int bind_weights(const GGUF *g, Config *c, Weights *w, Error *err) {
    const GGUFTensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return fail(err, "missing tensor 'token_embd.weight'");
    if (emb->n_dims != 2 || emb->ne[1] > (uint64_t)MAX_DIM * 4)
        return fail(err, "tensor 'token_embd.weight' must be 2-D with at most %d rows", MAX_DIM * 4);
    c->vocab_size = (int)emb->ne[1];
    if (bind_matrix(g, "token_embd.weight", c->vocab_size, c->dim, 1, &w->token_embd, err)) return -1;
    if (c->pos == POS_LEARNED &&
        bind_matrix(g, "position_embd.weight", c->seq_len, c->dim, 1, &w->pos_embd, err))
        return -1;
    const int bias = c->norm == NORM_LAYER;
    if (bind_vector(g, "output_norm.weight", c->dim, 1, &w->out_norm, err) ||
        bind_vector(g, "output_norm.bias", c->dim, bias, &w->out_norm_b, err) ||
        bind_matrix(g, "output.weight", c->vocab_size, c->dim, 0, &w->output, err))
        return -1;
    c->tied = w->output.data == NULL;
    if (c->tied) w->output = w->token_embd;
    w->layers = calloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w->layers) return fail(err, "out of memory");
    for (int l = 0; l < c->n_layers; l++)
        if (bind_layer(g, c, l, &w->layers[l], err)) return -1;
    return 0;
}

/* ---- tokenizer ------------------------------------------------------------------------- */

/* Finds the array `key` with elements of `type`; returns its kv or NULL (with err) if wrong. */
static const GGUFKV *get_array(const GGUF *g, const char *key, uint32_t type, int required,
                               Error *err) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) {
        if (required) fail(err, "missing metadata '%s' (the model has no tokenizer)", key);
        return NULL;
    }
    if (kv->type != GGUF_ARRAY || kv->elem_type != type) {
        fail(err, "metadata '%s' must be an array of type %u", key, type);
        return NULL;
    }
    return kv;
}

/* Collects the strings of a validated string array (each: u64 length + bytes). */
static Str *string_array(const GGUFKV *kv) {
    Str *s = malloc((kv->len ? kv->len : 1) * sizeof *s);
    if (!s) return NULL;
    const uint8_t *p = kv->data;
    for (uint64_t i = 0; i < kv->len; i++) {
        uint64_t n;
        memcpy(&n, p, 8);
        s[i].ptr = (const char *)p + 8;
        s[i].len = (size_t)n;
        p += 8 + n;
    }
    return s;
}

static int get_token_id(const GGUF *g, const char *key, int n_vocab, int *out, Error *err) {
    int64_t v;
    int found = gguf_get_int(g, key, &v, err);
    *out = -1;
    if (found < 0) return -1;
    if (!found) return 0;
    if (v < 0 || v >= n_vocab)
        return fail(err, "metadata '%s' = %lld is not a token id (vocabulary %d)", key, (long long)v,
                    n_vocab);
    *out = (int)v;
    return 0;
}

static int load_tokenizer(const GGUF *g, const Config *c, Tokenizer **tok, Error *err) {
    TokenizerSpec spec;
    memset(&spec, 0, sizeof spec);
    Str kind;
    int found = gguf_get_str(g, "tokenizer.ggml.model", &kind, err);
    if (found < 0) return -1;
    if (!found) return fail(err, "missing metadata 'tokenizer.ggml.model' (the model has no tokenizer)");
    if (str_eq(kind, "llama")) spec.kind = TOK_SPM;
    else if (str_eq(kind, "gpt2")) spec.kind = TOK_GPT2;
    else
        return fail(err, "unsupported tokenizer '%.*s' (supported: llama, gpt2)",
                    (int)(kind.len > 40 ? 40 : kind.len), kind.ptr);
    Str pre;
    if ((found = gguf_get_str(g, "tokenizer.ggml.pre", &pre, err)) < 0) return -1;
    if (found && spec.kind == TOK_GPT2 && !str_eq(pre, "gpt2") && !str_eq(pre, "default"))
        return fail(err, "unsupported pre-tokenizer '%.*s' (supported: gpt2)",
                    (int)(pre.len > 40 ? 40 : pre.len), pre.ptr);

    const GGUFKV *tokens = get_array(g, "tokenizer.ggml.tokens", GGUF_STRING, 1, err);
    if (!tokens) return -1;
    if (tokens->len != (uint64_t)c->vocab_size)
        return fail(err, "tokenizer has %llu tokens but token_embd.weight has %d rows",
                    (unsigned long long)tokens->len, c->vocab_size);
    spec.n_vocab = c->vocab_size;

    const GGUFKV *scores = get_array(g, "tokenizer.ggml.scores", GGUF_FLOAT32, 0, err);
    const GGUFKV *types = get_array(g, "tokenizer.ggml.token_type", GGUF_INT32, 0, err);
    const GGUFKV *merges = get_array(g, "tokenizer.ggml.merges", GGUF_STRING, 0, err);
    if ((!scores && gguf_find(g, "tokenizer.ggml.scores")) ||
        (!types && gguf_find(g, "tokenizer.ggml.token_type")) ||
        (!merges && gguf_find(g, "tokenizer.ggml.merges")))
        return -1;
    if ((scores && scores->len != tokens->len) || (types && types->len != tokens->len))
        return fail(err, "tokenizer scores/token_type arrays do not match the %llu tokens",
                    (unsigned long long)tokens->len);
    if (spec.kind == TOK_GPT2 && !merges)
        return fail(err, "missing metadata 'tokenizer.ggml.merges' (needed by a gpt2 tokenizer)");
    if (merges && merges->len > (uint64_t)INT32_MAX)
        return fail(err, "too many merges");

    int rc = -1;
    Str *tok_strs = string_array(tokens);
    Str *merge_strs = merges ? string_array(merges) : NULL;
    float *score_v = scores ? malloc(tokens->len * sizeof(float) + 1) : NULL;
    int32_t *type_v = types ? malloc(tokens->len * sizeof(int32_t) + 1) : NULL;
    if (!tok_strs || (merges && !merge_strs) || (scores && !score_v) || (types && !type_v)) {
        fail(err, "out of memory loading the tokenizer");
        goto done;
    }
    /* Metadata arrays are not aligned in the file: copy them out instead of casting. */
    if (score_v) memcpy(score_v, scores->data, tokens->len * sizeof(float));
    if (type_v) memcpy(type_v, types->data, tokens->len * sizeof(int32_t));
    spec.tokens = tok_strs;
    spec.scores = score_v;
    spec.types = type_v;
    spec.merges = merge_strs;
    spec.n_merges = merges ? (int)merges->len : 0;

    int add_bos = spec.kind == TOK_SPM, space = spec.kind == TOK_SPM;
    if (get_token_id(g, "tokenizer.ggml.bos_token_id", spec.n_vocab, &spec.bos_id, err) ||
        get_token_id(g, "tokenizer.ggml.eos_token_id", spec.n_vocab, &spec.eos_id, err) ||
        get_token_id(g, "tokenizer.ggml.unknown_token_id", spec.n_vocab, &spec.unk_id, err) ||
        gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, err) < 0 ||
        gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &space, err) < 0)
        goto done;
    spec.add_bos = add_bos;
    spec.add_space_prefix = space;
    rc = tokenizer_build(tok, &spec, err);
done:
    free(tok_strs);
    free(merge_strs);
    free(score_v);
    free(type_v);
    return rc;
}

/* ---- run state ------------------------------------------------------------------------- */

/* n floats. Buffers under 2 MB are zeroed (calloc). Larger ones (the KV cache, above all) are
 * left as they come, since every buffer is written before it is read, so that their pages are
 * touched lazily, when first used; they are aligned to 2 MB and marked for transparent huge
 * pages where Linux offers them, so that a first touch maps 2 MB instead of 4 KB. In a virtual
 * machine a 4 KB first touch is expensive: measured here (Firecracker, 150 MB memset), 10 us per
 * 4 KB page against 0.3-6 us per 4 KB with huge pages, which was ~28 ms of the first 128-token
 * prompt at 110M and ~0.3 ms of each decoded token (each writes fresh cache rows). Returns NULL
 * when out of memory. */
static float *state_alloc(size_t n) {
    const size_t huge = (size_t)2 << 20, bytes = n * sizeof(float);
    if (bytes < huge || n > SIZE_MAX / sizeof(float) - huge) return calloc(n ? n : 1, sizeof(float));
    const size_t rounded = (bytes + huge - 1) / huge * huge;
    float *p = aligned_alloc(huge, rounded);
    if (!p) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE);  /* advice only: a refusal changes nothing */
#endif
    return p;
}

static int alloc_state(RunState *s, const Config *c, int cap, Error *err) {
    memset(s, 0, sizeof *s);
    s->cap = cap;
    const size_t q_dim = (size_t)c->n_heads * c->head_dim, kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    const size_t cache = (size_t)kv_tiles(c->seq_len) * c->n_layers * kv_dim * KV_TILE;
    struct { float **p; size_t n; } bufs[] = {
        {&s->x, cap * (size_t)c->dim},          {&s->xb, cap * (size_t)c->dim},
        {&s->xb2, cap * (size_t)c->dim},        {&s->q, cap * q_dim},
        {&s->k, cap * kv_dim},                  {&s->v, cap * kv_dim},
        {&s->att_out, cap * q_dim},             {&s->hb, cap * (size_t)c->hidden_dim},
        {&s->hb2, cap * (size_t)c->hidden_dim}, {&s->probs, cap * (size_t)c->n_heads * c->seq_len},
        {&s->logits, cap * (size_t)c->vocab_size},
        {&s->key_cache, cache},                 {&s->value_cache, cache},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        *bufs[i].p = state_alloc(bufs[i].n);
        if (!*bufs[i].p)
            return fail(err, "out of memory: %zu floats for the run state (context %d)", bufs[i].n,
                        c->seq_len);
    }
    if (c->pos == POS_ROPE) {
        const int half = c->rope_dim / 2;
        s->rope_cos = malloc((size_t)c->seq_len * half * sizeof(float));
        s->rope_sin = malloc((size_t)c->seq_len * half * sizeof(float));
        if (!s->rope_cos || !s->rope_sin) return fail(err, "out of memory for the RoPE table");
        for (int p = 0; p < c->seq_len; p++)
            for (int i = 0; i < half; i++) {
                /* angle = p * theta^(-2i/d), in double: at long contexts float angles drift */
                double angle = p * pow((double)c->rope_theta, -2.0 * i / c->rope_dim);
                s->rope_cos[(size_t)p * half + i] = (float)cos(angle);
                s->rope_sin[(size_t)p * half + i] = (float)sin(angle);
            }
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
    float *bufs[] = {s->x, s->xb, s->xb2, s->q, s->k, s->v, s->att_out, s->hb, s->hb2, s->probs, s->logits,
                     s->key_cache, s->value_cache, s->rope_cos, s->rope_sin, s->pos_table};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    memset(s, 0, sizeof *s);
}

/* ---- public ---------------------------------------------------------------------------- */

/* Touches every page of the tensors each token reads (all but the embeddings, which are read a
 * row at a time), from all threads. The first access to a mapped page is far slower than reading
 * it (measured here: ~1.3 us per 4 KB page, 150-220 ms for a 440 MB model, against 16 ms to
 * read it all once mapped), so paying it at load keeps it out of the first forward pass and
 * makes the timings of the prompt measure computing, not mapping. */
static void prefault(const GGUF *g) {
    const size_t page = 4096;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const GGUFTensor *t = &g->tensors[i];
        if (str_eq(t->name, "token_embd.weight") || str_eq(t->name, "position_embd.weight")) continue;
        const volatile uint8_t *p = t->data;
        const long pages = (long)((t->nbytes + page - 1) / page);
#pragma omp parallel for schedule(static)
        for (long k = 0; k < pages; k++) (void)p[(size_t)k * page];
    }
}

int model_init(Model *m, int batch, Error *err) {
    if (read_config(&m->file, &m->config, err) ||
        bind_weights(&m->file, &m->config, &m->weights, err) ||
        load_tokenizer(&m->file, &m->config, &m->tokenizer, err) ||
        (batch > 0 && alloc_state(&m->state, &m->config, batch, err))) {
        model_free(m);
        return -1;
    }
    return 0;
}

int model_load(Model *m, const char *path, int batch, Error *err) {
    memset(m, 0, sizeof *m);
    if (gguf_open(&m->file, path, err) || model_init(m, batch, err)) return -1;
    prefault(&m->file);
    return 0;
}

void model_free(Model *m) {
    free_state(&m->state);
    if (m->tokenizer) tokenizer_free(m->tokenizer);
    free(m->weights.layers);
    gguf_close(&m->file);
    memset(m, 0, sizeof *m);
}

void print_config(const Config *c, FILE *f) {
    static const char *norms[] = {"RMSNorm", "LayerNorm"};
    static const char *pos[] = {"RoPE", "learned", "sinusoidal"};
    static const char *ffn[] = {"SwiGLU", "GELU (tanh)", "GELU (erf)"};
    fprintf(f, "model: %s, dim %d, %d layers, %d heads (%d kv, head dim %d), ffn %d %s, vocab %d, "
               "context %d, %s eps %g, positions %s", c->arch, c->dim, c->n_layers, c->n_heads,
            c->n_kv_heads, c->head_dim, c->hidden_dim, ffn[c->ffn], c->vocab_size, c->seq_len,
            norms[c->norm], c->norm_eps, pos[c->pos]);
    if (c->pos == POS_ROPE)
        fprintf(f, " (%s, theta %g, %d dims)",
                c->rope_style == ROPE_NEOX ? "rotate-half" : "interleaved", c->rope_theta, c->rope_dim);
    if (c->sliding_window) fprintf(f, ", sliding window %d", c->sliding_window);
    fprintf(f, ", %s output\n", c->tied ? "tied" : "separate");
}
