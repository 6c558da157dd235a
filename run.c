/* run.c: the forward pass, the sampler and the command line.
 *
 *   ./run MODEL.gguf -i "prompt"      generate text (stdout), timings (stderr)
 *
 * The forward pass takes a batch of positions: the whole prompt goes through each layer together
 * (one matrix-matrix product per weight), then each generated token goes through alone, reading
 * the keys and values of every earlier position from the KV cache.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "model.h"

/* ------------------------------------------------------------------------------------------ */
/* Layers. Letters: n = positions in the batch, d = width of a row. */

/* One row: out (d) = norm(x (d)) * w + b: RMSNorm when kind is RMS, else LayerNorm. */
static void norm_row(float *out, const float *x, const float *w, const float *b, NormKind kind,
                     float eps, int d) {
    double mean = 0.0, var = 0.0;
    if (kind == NORM_LAYER) {
        for (int i = 0; i < d; i++) mean += x[i];
        mean /= d;
    }
    for (int i = 0; i < d; i++) var += (x[i] - mean) * (x[i] - mean);
    float scale = (float)(1.0 / sqrt(var / d + eps));
    for (int i = 0; i < d; i++) {
        float y = (float)(x[i] - mean) * scale * w[i];
        out[i] = b ? y + b[i] : y;
    }
}

/* Per-position loops below run their one position directly when decoding: even a parallel
 * region that an if clause keeps to one thread costs ~1.5 us to enter, and decoding calls
 * these 4 times per layer. */

/* out (n, d) = norm(x (n, d)) * w + b, row by row. */
static void norm_forward(float *out, const float *x, const float *w, const float *b, NormKind kind,
                         float eps, int n, int d) {
    if (n == 1) {
        norm_row(out, x, w, b, kind, eps, d);
        return;
    }
#pragma omp parallel for
    for (int t = 0; t < n; t++)
        norm_row(out + (size_t)t * d, x + (size_t)t * d, w, b, kind, eps, d);
}

static void add_bias(float *x, const float *b, int n, int d) {
    if (!b) return;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < d; i++) x[(size_t)t * d + i] += b[i];
}

/* Rotates the first rope_dim dims of each of the n_heads heads in v (one position) by the
 * angles whose cosines and sines are cs, sn (rope_dim / 2 of each). Interleaved style rotates
 * pairs (2i, 2i+1); NeoX style ("rotate half") rotates pairs (i, i + rope_dim / 2). One loop per
 * style, with no branch inside, so that the compiler vectorizes both. */
static void rope_position(float *restrict v, const float *restrict cs, const float *restrict sn,
                          int n_heads, int head_dim, int rope_dim, RopeStyle style) {
    const int half = rope_dim / 2;
    for (int h = 0; h < n_heads; h++, v += head_dim) {
        if (style == ROPE_NEOX) {
#pragma omp simd
            for (int i = 0; i < half; i++) {
                const float v0 = v[i], v1 = v[i + half];
                v[i] = v0 * cs[i] - v1 * sn[i];
                v[i + half] = v0 * sn[i] + v1 * cs[i];
            }
        } else {
#pragma omp simd
            for (int i = 0; i < half; i++) {
                const float v0 = v[2 * i], v1 = v[2 * i + 1];
                v[2 * i] = v0 * cs[i] - v1 * sn[i];
                v[2 * i + 1] = v0 * sn[i] + v1 * cs[i];
            }
        }
    }
}

/* RoPE on x (n, n_heads * head_dim) for positions pos0 + t. */
static void rope_forward(float *x, const RunState *s, const Config *c, int n_heads, int n, int pos0) {
    const size_t half = (size_t)c->rope_dim / 2;
    if (n == 1) {
        rope_position(x, s->rope_cos + pos0 * half, s->rope_sin + pos0 * half, n_heads, c->head_dim,
                      c->rope_dim, c->rope_style);
        return;
    }
#pragma omp parallel for
    for (int t = 0; t < n; t++)
        rope_position(x + (size_t)t * n_heads * c->head_dim, s->rope_cos + (pos0 + t) * half,
                      s->rope_sin + (pos0 + t) * half, n_heads, c->head_dim, c->rope_dim,
                      c->rope_style);
}

/* Attention for the n positions just projected: their keys and values (s->k, s->v) join this
 * layer's cache, then their queries attend to everything in it. The tiled kernel computes the
 * output; only when a hook wants the probabilities are they computed as well, by the textbook
 * kernel, so capturing costs nothing when it is off and never changes the output. */
static void attention_forward(RunState *s, const Config *c, int layer, int n, int pos0) {
    const size_t kv_dim = (size_t)c->n_kv_heads * c->head_dim;
    float *kc = s->key_cache + (size_t)layer * kv_dim * KV_TILE;
    float *vc = s->value_cache + (size_t)layer * kv_dim * KV_TILE;
    const AttnShape shape = {c->n_heads, c->n_kv_heads, c->head_dim, c->sliding_window,
                             (size_t)c->n_layers * kv_dim * KV_TILE};
    kv_store(kc, vc, s->k, s->v, n, pos0, &shape);
    attention(s->att_out, s->q, kc, vc, n, pos0, &shape);
    if (s->attn_hook) {
        attention_ref(NULL, s->probs, c->seq_len, s->q, kc, vc, n, pos0, &shape);
        s->attn_hook(s->attn_hook_ctx, layer, pos0, n, s->probs);
    }
}

static float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

static float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }

/* The feed-forward's nonlinearity on one position's hidden row (d values), in place in up:
 * SwiGLU: up * silu(gate), silu(g) = g * sigmoid(g); GELU: gelu(up). A function of its own, with
 * restrict pointers, so that the compiler sees no aliasing and vectorizes the SwiGLU loop. */
static void activation(float *restrict up, const float *restrict gate, FfnKind kind, int d) {
    if (kind == FFN_SWIGLU) {
#pragma omp simd
        for (int i = 0; i < d; i++) up[i] *= gate[i] / (1.0f + exp_fast(-gate[i]));
    } else if (kind == FFN_GELU_TANH) {
        for (int i = 0; i < d; i++) up[i] = gelu_tanh(up[i]);
    } else {
        for (int i = 0; i < d; i++) up[i] = gelu_erf(up[i]);
    }
}

/* Feed-forward: hb (n, hidden) from xb (n, dim), result in xb2 (n, dim). */
static void ffn_forward(RunState *s, const Config *c, const LayerWeights *w, int n) {
    if (c->ffn == FFN_SWIGLU) {
        float *const outs[2] = {s->hb, s->hb2};
        const Tensor *const ws[2] = {&w->w_up, &w->w_gate};
        matmul_many(outs, s->xb, ws, 2, n);
    } else {
        matmul(s->hb, s->xb, &w->w_up, n);
    }
    add_bias(s->hb, w->b_up, n, c->hidden_dim);
    if (c->ffn == FFN_SWIGLU) add_bias(s->hb2, w->b_gate, n, c->hidden_dim);
    const size_t d = (size_t)c->hidden_dim;
    if (n == 1) {
        activation(s->hb, s->hb2, c->ffn, c->hidden_dim);
    } else {
#pragma omp parallel for
        for (int t = 0; t < n; t++) activation(s->hb + t * d, s->hb2 + t * d, c->ffn, c->hidden_dim);
    }
    matmul(s->xb2, s->hb, &w->w_down, n);
    add_bias(s->xb2, w->b_down, n, c->dim);
}

float *forward(Model *m, const int *tokens, int n, int pos0, int all_logits) {
    const Config *c = &m->config;
    const Weights *w = &m->weights;
    RunState *s = &m->state;
    const int dim = c->dim, q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;

    for (int t = 0; t < n; t++) {
        float *x = s->x + (size_t)t * dim;
        tensor_row(x, &w->token_embd, tokens[t]);
        if (c->pos == POS_LEARNED || c->pos == POS_SINUSOIDAL) {
            float *pe = s->xb;  /* scratch */
            if (c->pos == POS_LEARNED) tensor_row(pe, &w->pos_embd, pos0 + t);
            else memcpy(pe, s->pos_table + (size_t)(pos0 + t) * dim, (size_t)dim * sizeof(float));
            for (int i = 0; i < dim; i++) x[i] += pe[i];
        }
    }

    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *lw = &w->layers[l];
        norm_forward(s->xb, s->x, lw->attn_norm, lw->attn_norm_b, c->norm, c->norm_eps, n, dim);
        float *const qkv_out[3] = {s->q, s->k, s->v};
        const Tensor *const qkv[3] = {&lw->wq, &lw->wk, &lw->wv};
        matmul_many(qkv_out, s->xb, qkv, 3, n);
        add_bias(s->q, lw->bq, n, q_dim);
        add_bias(s->k, lw->bk, n, kv_dim);
        add_bias(s->v, lw->bv, n, kv_dim);
        if (c->pos == POS_ROPE) {
            rope_forward(s->q, s, c, c->n_heads, n, pos0);
            rope_forward(s->k, s, c, c->n_kv_heads, n, pos0);
        }
        attention_forward(s, c, l, n, pos0);
        matmul(s->xb2, s->att_out, &lw->wo, n);
        add_bias(s->xb2, lw->bo, n, dim);
        for (size_t i = 0; i < (size_t)n * dim; i++) s->x[i] += s->xb2[i];

        norm_forward(s->xb, s->x, lw->ffn_norm, lw->ffn_norm_b, c->norm, c->norm_eps, n, dim);
        ffn_forward(s, c, lw, n);
        for (size_t i = 0; i < (size_t)n * dim; i++) s->x[i] += s->xb2[i];
    }

    /* logits only where they are needed: every position, or just the last */
    const int first = all_logits ? 0 : n - 1, count = n - first;
    norm_forward(s->xb, s->x + (size_t)first * dim, w->out_norm, w->out_norm_b, c->norm, c->norm_eps,
                 count, dim);
    matmul(s->logits, s->xb, &w->output, count);
    return s->logits;
}

/* ------------------------------------------------------------------------------------------ */
/* Sampler: temperature, then top-k, then top-p (nucleus), as llama.cpp orders them. */

typedef struct {
    float prob;
    int index;
} ProbIndex;

typedef struct {
    int vocab_size;
    float temperature;      /* 0 = greedy */
    float top_p;            /* 1 = off */
    int top_k;              /* 0 = off */
    uint64_t rng;           /* xorshift64* state */
    ProbIndex *candidates;  /* (vocab_size) scratch */
    float *probs;           /* (vocab_size) scratch */
} Sampler;

static uint32_t random_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float random_f32(uint64_t *state) { return (random_u32(state) >> 8) / 16777216.0f; }

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;  /* strict: the lowest index wins a tie */
    return best;
}

/* Candidate order: higher probability first, the lower index first among equals (a total order,
 * so the tokens kept never depend on how they were found). */
static int better(ProbIndex x, ProbIndex y) {
    return x.prob != y.prob ? x.prob > y.prob : x.index < y.index;
}

static int compare_desc(const void *a, const void *b) {
    const ProbIndex *x = a, *y = b;
    return better(*x, *y) ? -1 : better(*y, *x) ? 1 : 0;
}

/* Restores the min-heap (the worst candidate at the root) below node i of h[0..n). */
static void heap_down(ProbIndex *h, int n, int i) {
    for (;;) {
        int worst = i, l = 2 * i + 1, r = l + 1;
        if (l < n && better(h[worst], h[l])) worst = l;
        if (r < n && better(h[worst], h[r])) worst = r;
        if (worst == i) return;
        ProbIndex t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

/* The k best of probs[0..n) into cand[0..k), best first: one pass keeping a heap of the k best
 * so far, then a sort of those k alone (a full sort of a 32,000-token vocabulary for every token
 * cost more than the forward pass of a small model). */
static void top_k(ProbIndex *cand, const float *probs, int n, int k) {
    for (int i = 0; i < k; i++) cand[i] = (ProbIndex){probs[i], i};
    for (int i = k / 2 - 1; i >= 0; i--) heap_down(cand, k, i);
    for (int i = k; i < n; i++) {
        const ProbIndex c = {probs[i], i};
        if (better(c, cand[0])) {
            cand[0] = c;
            heap_down(cand, k, 0);
        }
    }
    qsort(cand, (size_t)k, sizeof *cand, compare_desc);
}

/* Temperature, then top-k, then top-p, then a draw from what is left, renormalized. */
static int sample(Sampler *sp, const float *logits) {
    const int n = sp->vocab_size;
    if (sp->temperature == 0.0f) return argmax(logits, n);
    float *probs = sp->probs;
    const float max = logits[argmax(logits, n)], inv_t = 1.0f / sp->temperature;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) {
        probs[i] = exp_fast((logits[i] - max) * inv_t);
        sum += probs[i];
    }
    const float inv_sum = 1.0f / sum;
#pragma omp simd
    for (int i = 0; i < n; i++) probs[i] *= inv_sum;

    ProbIndex *cand = sp->candidates;
    int kept = n;
    if (sp->top_k > 0 && sp->top_k < n) {
        kept = sp->top_k;
        top_k(cand, probs, n, kept);
    } else if (sp->top_p < 1.0f) {
        /* A token below (1 - top_p) / (n - 1) can never be needed to reach top_p: all of them
           together hold less than 1 - top_p. Only the rest are sorted. */
        const float cutoff = (1.0f - sp->top_p) / (float)(n - 1 > 0 ? n - 1 : 1);
        kept = 0;
        for (int i = 0; i < n; i++)
            if (probs[i] >= cutoff) cand[kept++] = (ProbIndex){probs[i], i};
        qsort(cand, (size_t)kept, sizeof *cand, compare_desc);
    } else {
        for (int i = 0; i < n; i++) cand[i] = (ProbIndex){probs[i], i};
    }
    if (sp->top_p < 1.0f) {
        float cum = 0.0f;
        for (int i = 0; i < kept; i++) {
            cum += cand[i].prob;
            if (cum >= sp->top_p) {
                kept = i + 1;
                break;
            }
        }
    }
    float total = 0.0f;
    for (int i = 0; i < kept; i++) total += cand[i].prob;
    float r = random_f32(&sp->rng) * total, cum = 0.0f;
    for (int i = 0; i < kept; i++) {
        cum += cand[i].prob;
        if (r < cum) return cand[i].index;
    }
    return cand[kept - 1].index;  /* rounding left r at the very top */
}

/* ------------------------------------------------------------------------------------------ */
/* Outputs */

/* A growing (rows, cols) float32 matrix written as a NumPy .npy file at the end. */
typedef struct {
    float *data;
    size_t rows, cols, cap_rows;
} Matrix;

static int matrix_append(Matrix *mx, const float *rows, size_t n, Error *err) {
    if (mx->rows + n > mx->cap_rows) {
        size_t cap = mx->cap_rows ? mx->cap_rows * 2 : 64;
        while (cap < mx->rows + n) cap *= 2;
        float *p = realloc(mx->data, cap * mx->cols * sizeof(float));
        if (!p) return fail(err, "out of memory keeping %zu rows of logits", cap);
        mx->data = p;
        mx->cap_rows = cap;
    }
    memcpy(mx->data + mx->rows * mx->cols, rows, n * mx->cols * sizeof(float));
    mx->rows += n;
    return 0;
}

/* NumPy format 1.0: magic, version, u16 header length, a Python dict literal padded with spaces
   to a multiple of 64 bytes and ended by a newline, then the raw little-endian data. */
static int write_npy(const char *path, const float *data, const size_t *shape, int ndim, Error *err) {
    char dict[256];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        len += snprintf(dict + len, sizeof dict - len, "%zu,%s", shape[i], i + 1 < ndim ? " " : "");
        count *= shape[i];
    }
    len += snprintf(dict + len, sizeof dict - len, "), }");
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return fail(err, "cannot write '%s': %s", path, strerror(errno));
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    uint16_t hlen = (uint16_t)(len + pad + 1);
    head[8] = hlen & 0xff;
    head[9] = hlen >> 8;
    fwrite(head, 1, 10, f);
    fwrite(dict, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t wrote = fwrite(data, sizeof(float), count, f);
    if (fclose(f) != 0 || wrote != count) return fail(err, "error writing '%s'", path);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Command line */

typedef struct {
    const char *model;
    const char *prompt;     /* NULL = empty prompt (BOS only); "-" = read stdin */
    int steps;              /* new tokens to generate */
    float temperature, top_p;
    int top_k;
    uint64_t seed;
    int batch;              /* prompt positions per forward call */
    int threads;            /* 0 = OpenMP's default */
    int tokenize;           /* print the prompt's ids and exit */
    const char *dump_logits;
    const char *ppl;        /* text file to measure perplexity on */
    AttnOptions attn;       /* --dump-attn, --attn-html, --attn-show, --attn-stats (attn.c) */
    int verbose;
    char default_model[4096];
} Options;

#define DEFAULT_MODEL "models/kjv.gguf"

static void usage(FILE *f) {
    fprintf(f,
        "usage: ./run [MODEL.gguf] [options]\n"
        "Generates text from a GGUF model (llama, qwen2 or gpt2 architecture); without MODEL,\n"
        "from the model shipped in " DEFAULT_MODEL " next to the program.\n"
        "\n"
        "  -i, --prompt TEXT      prompt text; '-' reads it from stdin (default: empty)\n"
        "  -n, --n-predict N      new tokens to generate after the prompt (default 128)\n"
        "  -t, --temp T           temperature; 0 = greedy (default 0.8)\n"
        "  -p, --top-p P          nucleus sampling threshold in (0, 1]; 1 = off (default 0.95)\n"
        "  -k, --top-k K          sample from the K most likely tokens; 0 = off (default 40)\n"
        "  -s, --seed S           random seed (default: from the clock)\n"
        "  -b, --batch-size N     prompt positions per forward pass; 1 = token by token (default 64)\n"
        "      --threads N        threads for the matrix products (default: all cores)\n"
        "      --tokenize         print the prompt's token ids on one line and exit\n"
        "      --dump-logits PATH write the logits of every position fed to the model as .npy\n"
        "                         float32 [T, vocab], T = prompt tokens + generated tokens - 1\n"
        "      --ppl FILE         print the model's perplexity on a text file and exit\n"
        "      --dump-attn PATH   write the attention weights of the same T positions as .npy,\n"
        "                         float32 [layers, heads, T, T] (row = query, column = key)\n"
        "      --attn-html PATH   write a self-contained HTML page of every layer and head\n"
        "      --attn-show L.H    after the text, print layer L head H (from 0) as a heatmap on\n"
        "                         stdout with each query's top three keys\n"
        "      --attn-stats       after the text, print one line of statistics per layer and head\n"
        "                         (attention maps take layers x heads x T^2 x 4 bytes, e.g.\n"
        "                         12 x 12 x 200^2 x 4 = 23 MB; refused above 2 GiB)\n"
        "  -v, --verbose          print the model's configuration and KV-cache size, and the\n"
        "                         attention share of the FLOPs, on stderr\n"
        "  -h, --help             show this help\n");
}

/* Parses a whole-string integer in [lo, hi]; anything else is an error naming the flag. */
static int parse_int(const char *flag, const char *s, long lo, long hi, long *out, Error *err) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return fail(err, "%s expects an integer in [%ld, %ld], got '%s'", flag, lo, hi, s);
    *out = v;
    return 0;
}

static int parse_float(const char *flag, const char *s, double lo, double hi, float *out, Error *err) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return fail(err, "%s expects a number in [%g, %g], got '%s'", flag, lo, hi, s);
    *out = (float)v;
    return 0;
}

/* Returns 1 when -h was given, 0 to run, -1 on a bad command line. */
static int parse_args(int argc, char **argv, Options *o, Error *err) {
    memset(o, 0, sizeof *o);
    o->steps = 128;
    o->temperature = 0.8f;
    o->top_p = 0.95f;
    o->top_k = 40;
    o->seed = (uint64_t)time(NULL);
    o->batch = 64;
    o->attn.show_layer = o->attn.show_head = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
#define IS(s, l) (strcmp(a, s) == 0 || strcmp(a, l) == 0)
#define VALUE() (i + 1 < argc ? argv[++i] : NULL)
        if (IS("-h", "--help")) return 1;
        if (IS("-v", "--verbose")) { o->verbose = 1; continue; }
        if (strcmp(a, "--tokenize") == 0) { o->tokenize = 1; continue; }
        if (strcmp(a, "--attn-stats") == 0) { o->attn.stats = 1; continue; }
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->model) return fail(err, "unexpected argument '%s' (the model is '%s')", a, o->model);
            o->model = a;
            continue;
        }
        int known = IS("-i", "--prompt") || IS("-n", "--n-predict") || IS("-t", "--temp") ||
                    IS("-p", "--top-p") || IS("-k", "--top-k") || IS("-s", "--seed") ||
                    IS("-b", "--batch-size") || strcmp(a, "--threads") == 0 ||
                    strcmp(a, "--dump-logits") == 0 || strcmp(a, "--ppl") == 0 ||
                    strcmp(a, "--dump-attn") == 0 || strcmp(a, "--attn-html") == 0 ||
                    strcmp(a, "--attn-show") == 0;
        if (!known) return fail(err, "unknown option '%s' (see ./run --help)", a);
        const char *val = VALUE();
        if (!val) return fail(err, "option %s needs a value", a);
        if (IS("-i", "--prompt")) o->prompt = val;
        else if (strcmp(a, "--dump-logits") == 0) o->dump_logits = val;
        else if (strcmp(a, "--ppl") == 0) o->ppl = val;
        else if (strcmp(a, "--dump-attn") == 0) o->attn.dump = val;
        else if (strcmp(a, "--attn-html") == 0) o->attn.html = val;
        else if (strcmp(a, "--attn-show") == 0) {
            if (attn_parse_head(val, &o->attn.show_layer, &o->attn.show_head, err)) return -1;
        }
        else if (IS("-n", "--n-predict")) {
            if (parse_int(a, val, 0, 1 << 30, &v, err)) return -1;
            o->steps = (int)v;
        } else if (IS("-t", "--temp")) {
            if (parse_float(a, val, 0.0, 100.0, &o->temperature, err)) return -1;
        } else if (IS("-p", "--top-p")) {
            if (parse_float(a, val, 1e-6, 1.0, &o->top_p, err)) return -1;
        } else if (IS("-k", "--top-k")) {
            if (parse_int(a, val, 0, 1 << 30, &v, err)) return -1;
            o->top_k = (int)v;
        } else if (IS("-s", "--seed")) {
            if (parse_int(a, val, 0, 0x7fffffffL, &v, err)) return -1;
            o->seed = (uint64_t)v;
        } else if (IS("-b", "--batch-size")) {
            if (parse_int(a, val, 1, 4096, &v, err)) return -1;
            o->batch = (int)v;
        } else {
            if (parse_int(a, val, 1, 1024, &v, err)) return -1;
            o->threads = (int)v;
        }
#undef IS
#undef VALUE
    }
    if (o->ppl && attn_wanted(&o->attn))
        return fail(err, "the attention outputs (--dump-attn, --attn-*) do not work with --ppl");
    if (!o->model) {  /* the shipped model, found next to the program */
        const char *slash = strrchr(argv[0], '/');
        int dir = slash ? (int)(slash - argv[0]) : 1;
        snprintf(o->default_model, sizeof o->default_model, "%.*s/%s", dir, slash ? argv[0] : ".",
                 DEFAULT_MODEL);
        o->model = o->default_model;
        if (access(o->model, R_OK) != 0)
            return fail(err, "no model given and the shipped model %s is missing (see --help)", o->model);
    }
    return 0;
}

/* Reads all of f into a malloc'ed buffer (capped at 1 GiB). */
static char *read_all(FILE *f, const char *what, size_t *len, Error *err) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) { fail(err, "out of memory reading %s", what); return NULL; }
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *p = cap > ((size_t)1 << 30) ? NULL : realloc(buf, cap *= 2);
            if (!p) { free(buf); fail(err, "%s is too large", what); return NULL; }
            buf = p;
        }
    }
    if (ferror(f)) { free(buf); fail(err, "error reading %s", what); return NULL; }
    *len = n;
    return buf;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs the prompt and the generation loop; text to stdout, timings to stderr. */
static int generate(Model *m, const Options *o, const int *prompt, int n_prompt, double load_s,
                    Error *err) {
    const Config *c = &m->config;
    const int eos = tokenizer_eos(m->tokenizer);
    Matrix dump = {NULL, 0, (size_t)c->vocab_size, 0};
    Sampler sp = {c->vocab_size, o->temperature, o->top_p, o->top_k, o->seed * 2654435761u + 1,
                  NULL, NULL};
    sp.candidates = malloc((size_t)c->vocab_size * sizeof *sp.candidates);
    sp.probs = malloc((size_t)c->vocab_size * sizeof *sp.probs);
    size_t cap = 2 * ((size_t)tokenizer_max_token_len(m->tokenizer) + 8);
    char *text = malloc(cap);
    AttnMaps maps = {0};
    int rc = -1;
    if (!sp.candidates || !sp.probs || !text) { fail(err, "out of memory"); goto done; }
    if (attn_wanted(&o->attn)) {  /* room for every position fed: prompt + steps - 1, at most */
        int T = n_prompt + (o->steps > 1 ? o->steps - 1 : 0);
        if (attn_maps_init(&maps, &o->attn, c, n_prompt, T < c->seq_len ? T : c->seq_len, err))
            goto done;
        m->state.attn_hook = attn_hook;
        m->state.attn_hook_ctx = &maps;
    }

    /* prompt: in batches of o->batch positions */
    double t0 = now_seconds();
    const float *logits = NULL;
    for (int i = 0; i < n_prompt; i += m->state.cap) {
        int n = n_prompt - i < m->state.cap ? n_prompt - i : m->state.cap;
        logits = forward(m, prompt + i, n, i, o->dump_logits != NULL);
        if (maps.probs) attn_maps_tokens(&maps, i, prompt + i, n);
        if (o->dump_logits && matrix_append(&dump, logits, (size_t)n, err)) goto done;
        if (o->dump_logits) logits += (size_t)(n - 1) * c->vocab_size;
    }
    double t1 = now_seconds();

    /* generation: sample, print, feed back */
    Decoder dec;
    decoder_init(&dec);
    dec.prev_token = prompt[n_prompt - 1];  /* SentencePiece drops a leading space only after BOS */
    int pos = n_prompt, generated = 0, stop_reason = 0;
    while (generated < o->steps) {
        int next = sample(&sp, logits);
        generated++;
        if (next == eos) { stop_reason = 1; break; }
        size_t len = decoder_push(m->tokenizer, &dec, next, text, cap);
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        if (generated == o->steps) break;
        if (pos == c->seq_len) { stop_reason = 2; break; }
        logits = forward(m, &next, 1, pos, 0);
        if (maps.probs) attn_maps_tokens(&maps, pos, &next, 1);
        pos++;
        if (o->dump_logits && matrix_append(&dump, logits, 1, err)) goto done;
    }
    size_t len = decoder_flush(&dec, text, cap);
    fwrite(text, 1, len, stdout);
    if (generated) fputc('\n', stdout);
    fflush(stdout);
    double t2 = now_seconds();

    if (stop_reason == 1) fprintf(stderr, "[end of text]\n");
    if (stop_reason == 2) fprintf(stderr, "[context length %d reached]\n", c->seq_len);
    fprintf(stderr, "load: %.1f MB mapped and touched in %.0f ms\n", m->file.size / 1e6, load_s * 1e3);
    fprintf(stderr, "prompt: %d tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s\n", n_prompt,
            n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9), generated,
            generated / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
    if (o->dump_logits) {
        size_t shape[2] = {dump.rows, dump.cols};
        if (write_npy(o->dump_logits, dump.data, shape, 2, err)) goto done;
    }
    if (o->verbose) attn_print_cost(c, n_prompt, generated, stderr);
    if (maps.probs) {
        attn_maps_pack(&maps);
        size_t shape[4] = {(size_t)c->n_layers, (size_t)c->n_heads, (size_t)maps.n, (size_t)maps.n};
        if (o->attn.dump && write_npy(o->attn.dump, maps.probs, shape, 4, err)) goto done;
        if (attn_report(&maps, &o->attn, m->tokenizer, o->model, generated > 0, err)) goto done;
    }
    rc = 0;
done:
    m->state.attn_hook = NULL;
    attn_maps_free(&maps);
    free(dump.data);
    free(sp.candidates);
    free(sp.probs);
    free(text);
    return rc;
}

/* Perplexity of the model on a text file, over the full context, sliding over long texts:
 * windows of L = context tokens start every S = L/2 tokens; each window runs from position 0
 * and scores only the tokens the previous window did not (token i predicted from the logits at
 * i - 1), so every token but the first is scored once, with at least L/2 tokens of context once
 * the text is longer than a window. perplexity = exp(mean negative log-likelihood). */
static int perplexity(Model *m, const char *path, Error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, "cannot open '%s': %s", path, strerror(errno));
    size_t len;
    char *text = read_all(f, path, &len, err);
    fclose(f);
    if (!text) return -1;
    int *ids = NULL, n_ids = 0, rc = -1;
    size_t bad;
    if (!utf8_valid(text, len, &bad)) {
        fail(err, "'%s' is not valid UTF-8 (byte %zu)", path, bad);
        goto done;
    }
    if (tokenizer_encode(m->tokenizer, text, len, &ids, &n_ids, err)) goto done;
    if (n_ids < 2) {
        fail(err, "'%s' has %d tokens; perplexity needs at least 2", path, n_ids);
        goto done;
    }
    const int L = m->config.seq_len, stride = L / 2 > 0 ? L / 2 : 1, V = m->config.vocab_size;
    double nll = 0.0, t0 = now_seconds();
    long scored = 0, fed = 0;
    int prev_end = 0;
    for (int b = 0; prev_end < n_ids; b += stride) {
        int end = b + L < n_ids ? b + L : n_ids;
        int first = prev_end > b + 1 ? prev_end : b + 1;  /* first target scored */
        for (int i = b; i < end - 1; i += m->state.cap) {
            int n = end - 1 - i < m->state.cap ? end - 1 - i : m->state.cap;
            const float *logits = forward(m, ids + i, n, i - b, 1);
            for (int t = 0; t < n; t++) {
                int target = i + t + 1;
                if (target < first) continue;
                const float *lg = logits + (size_t)t * V;
                double max = lg[0], sum = 0.0;
                for (int v = 1; v < V; v++) if (lg[v] > max) max = lg[v];
                for (int v = 0; v < V; v++) sum += exp(lg[v] - max);
                nll += log(sum) + max - lg[ids[target]];
                scored++;
            }
            fed += n;
        }
        prev_end = end;
    }
    double secs = now_seconds() - t0;
    printf("perplexity: %.4f\n", exp(nll / scored));
    fprintf(stderr, "%ld tokens scored (%d in the file, context %d, stride %d), %.1f tok/s\n",
            scored, n_ids, L, stride, fed / (secs > 0 ? secs : 1e-9));
    rc = 0;
done:
    free(ids);
    free(text);
    return rc;
}

static int run(const Options *o, Error *err) {
    size_t len = 0;
    char *stdin_text = NULL;
    const char *text = o->prompt ? o->prompt : "";
    if (o->prompt && strcmp(o->prompt, "-") == 0) {
        if (!(stdin_text = read_all(stdin, "the prompt on stdin", &len, err))) return -1;
        text = stdin_text;
    } else {
        len = strlen(text);
    }
    size_t bad;
    if (!utf8_valid(text, len, &bad)) {
        free(stdin_text);
        return fail(err, "the prompt is not valid UTF-8 (byte %zu)", bad);
    }

    Model m;
    int *ids = NULL, n_ids = 0, rc = -1;
    double t_load = now_seconds();
    if (model_load(&m, o->model, o->batch, err)) {
        free(stdin_text);
        return -1;
    }
    if (o->verbose) {
        print_config(&m.config, stderr);
        attn_print_kv_cache(&m.config, stderr);
    }
    if (o->ppl) {
        rc = perplexity(&m, o->ppl, err);
        goto done;
    }
    if (tokenizer_encode(m.tokenizer, text, len, &ids, &n_ids, err)) goto done;
    if (o->tokenize) {
        for (int i = 0; i < n_ids; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
        rc = 0;
        goto done;
    }
    if (n_ids == 0) {  /* nothing to condition on: start from BOS when the model has one */
        int bos = tokenizer_bos(m.tokenizer);
        if (bos < 0) { fail(err, "the prompt is empty and the model has no BOS token to start from"); goto done; }
        free(ids);
        ids = malloc(sizeof *ids);
        if (!ids) { fail(err, "out of memory"); goto done; }
        ids[0] = bos;
        n_ids = 1;
    }
    if (n_ids > m.config.seq_len) {
        fail(err, "the prompt is %d tokens, longer than the model's context of %d", n_ids,
             m.config.seq_len);
        goto done;
    }
    rc = generate(&m, o, ids, n_ids, now_seconds() - t_load, err);
done:
    free(ids);
    free(stdin_text);
    model_free(&m);
    return rc;
}

int main(int argc, char **argv) {
    Options o;
    Error err = {{0}};
    int parsed = parse_args(argc, argv, &o, &err);
    if (parsed == 1) {
        usage(stdout);
        return 0;
    }
    if (parsed < 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
#ifdef _OPENMP
    if (o.threads) omp_set_num_threads(o.threads);
#else
    if (o.threads > 1) fprintf(stderr, "note: built without OpenMP, running on 1 thread\n");
#endif
    kernels_init();
    if (run(&o, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
