/* forward.c: the forward pass. A batch of positions goes through each layer together (one
 * matrix-matrix product per weight): the whole prompt at once, then each generated token alone,
 * reading the keys and values of every earlier position from the KV cache.
 *
 * Letters: n = positions in the batch, d = width of a row.
 */
#include <math.h>
#include <string.h>

#include "model.h"

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

/* RoPE on x (n, n_heads * head_dim) for positions pos0 + t, with layer l's table (a local
 * layer's own base, or the global one). */
static void rope_forward(float *x, const RunState *s, const Config *c, int l, int n_heads, int n,
                         int pos0) {
    const size_t half = (size_t)c->rope_dim / 2;
    const float *cs = layer_local(c, l) ? s->rope_cos_swa : s->rope_cos;
    const float *sn = layer_local(c, l) ? s->rope_sin_swa : s->rope_sin;
    if (n == 1) {
        rope_position(x, cs + pos0 * half, sn + pos0 * half, n_heads, c->head_dim, c->rope_dim,
                      c->rope_style);
        return;
    }
#pragma omp parallel for
    for (int t = 0; t < n; t++)
        rope_position(x + (size_t)t * n_heads * c->head_dim, cs + (pos0 + t) * half,
                      sn + (pos0 + t) * half, n_heads, c->head_dim, c->rope_dim, c->rope_style);
}

/* Queries and keys of the n positions just projected, ready for attention: biases, the per-head
 * norms (q (n, n_heads, head_dim) seen as n * n_heads rows), the score scale when it is not
 * 1 / sqrt(head_dim) (folded into q, since the kernels divide by sqrt(head_dim)), RoPE. */
static void qk_forward(RunState *s, const Config *c, const LayerWeights *lw, int l, int n,
                       int pos0) {
    const int q_dim = c->n_heads * c->head_dim, kv_dim = c->n_kv_heads * c->head_dim;
    add_bias(s->q, lw->bq, n, q_dim);
    add_bias(s->k, lw->bk, n, kv_dim);
    add_bias(s->v, lw->bv, n, kv_dim);
    if (c->qk_norm) {
        norm_forward(s->q, s->q, lw->q_norm, NULL, NORM_RMS, c->norm_eps, n * c->n_heads,
                     c->head_dim);
        norm_forward(s->k, s->k, lw->k_norm, NULL, NORM_RMS, c->norm_eps, n * c->n_kv_heads,
                     c->head_dim);
    }
    if (c->q_scale != 1.0f)
        for (size_t i = 0; i < (size_t)n * q_dim; i++) s->q[i] *= c->q_scale;
    if (c->pos == POS_ROPE) {
        rope_forward(s->q, s, c, l, c->n_heads, n, pos0);
        rope_forward(s->k, s, c, l, c->n_kv_heads, n, pos0);
    }
}

/* Attention for the n positions just projected: their keys and values (s->k, s->v) join this
 * layer's cache, then their queries attend to everything in it. The tiled kernel computes the
 * output; only when a hook wants the probabilities are they computed as well, by the textbook
 * kernel, so capturing costs nothing when it is off and never changes the output. */
static void attention_forward(Model *m, int layer, int n, int pos0) {
    RunState *s = &m->state;
    void *kc, *vc;
    const AttnShape shape = layer_attn(m, layer, &kc, &vc);
    kv_store(kc, vc, s->k, s->v, n, pos0, &shape);
    attention(s->att_out, s->q, kc, vc, n, pos0, &shape);
    if (s->attn_hook && pos0 + n <= s->probs_stride) { /* positions the hook asked for */
        attention_ref(NULL, s->probs, s->probs_stride, s->q, kc, vc, n, pos0, &shape);
        s->attn_hook(s->attn_hook_ctx, layer, pos0, n, s->probs, s->probs_stride);
    }
}

static float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

static float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f)); }

/* The feed-forward's nonlinearity on one position's hidden row (d values), in place in up:
 * SwiGLU: up * silu(gate), silu(g) = g * sigmoid(g); GeGLU: up * gelu(gate); GELU: gelu(up). A
 * function of its own, with restrict pointers, so that the compiler sees no aliasing and
 * vectorizes the SwiGLU loop. */
static void activation(float *restrict up, const float *restrict gate, FfnKind kind, int d) {
    if (kind == FFN_SWIGLU) {
#pragma omp simd
        for (int i = 0; i < d; i++) up[i] *= gate[i] / (1.0f + exp_fast(-gate[i]));
    } else if (kind == FFN_GEGLU) {
        for (int i = 0; i < d; i++) up[i] *= gelu_tanh(gate[i]);
    } else if (kind == FFN_GELU_TANH) {
        for (int i = 0; i < d; i++) up[i] = gelu_tanh(up[i]);
    } else {
        for (int i = 0; i < d; i++) up[i] = gelu_erf(up[i]);
    }
}

/* Feed-forward: hb (n, hidden) from xb (n, dim), result in xb2 (n, dim). */
static void ffn_forward(RunState *s, const Config *c, const LayerWeights *w, int n) {
    if (ffn_gated(c->ffn)) {
        float *const outs[2] = {s->hb, s->hb2};
        const Tensor *const ws[2] = {&w->w_up, &w->w_gate};
        matmul_many(outs, s->xb, ws, 2, n);
    } else {
        matmul(s->hb, s->xb, &w->w_up, n);
    }
    add_bias(s->hb, w->b_up, n, c->hidden_dim);
    if (ffn_gated(c->ffn)) add_bias(s->hb2, w->b_gate, n, c->hidden_dim);
    const size_t d = (size_t)c->hidden_dim;
    if (n == 1) {
        activation(s->hb, s->hb2, c->ffn, c->hidden_dim);
    } else {
#pragma omp parallel for
        for (int t = 0; t < n; t++)
            activation(s->hb + t * d, s->hb2 + t * d, c->ffn, c->hidden_dim);
    }
    matmul(s->xb2, s->hb, &w->w_down, n);
    add_bias(s->xb2, w->b_down, n, c->dim);
}

/* x (n, dim) += the sublayer output xb2 (n, dim), normalized first where the model has a norm
 * after each sublayer (post, else NULL). */
static void residual_add(RunState *s, const Config *c, const float *post, int n) {
    if (post) norm_forward(s->xb2, s->xb2, post, NULL, c->norm, c->norm_eps, n, c->dim);
    const size_t d = (size_t)c->dim;
    if (n == 1) {
        for (size_t i = 0; i < d; i++) s->x[i] += s->xb2[i];
        return;
    }
#pragma omp parallel for
    for (int t = 0; t < n; t++)
        for (size_t i = 0; i < d; i++) s->x[t * d + i] += s->xb2[t * d + i];
}

/* Index of the first value of x (n) that is not finite (NaN or +-inf), or -1. */
static long first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return (long)i;
    return -1;
}

/* The pass itself. trace: NULL, or where to record the first layer after which the residual
   stream x (n, dim) held a non-finite value (-1: already after the embeddings; n_layers: it
   stayed finite), checked only when asked (forward_check's diagnosis). */
static void forward_pass(Model *m, const int *tokens, int n, int pos0, Logits want, int *trace) {
    const Config *c = &m->config;
    const Weights *w = &m->weights;
    RunState *s = &m->state;
    const int dim = c->dim;
    const size_t nx = (size_t)n * dim;

    for (int t = 0; t < n; t++) {
        float *x = s->x + (size_t)t * dim;
        tensor_row(x, &w->token_embd, tokens[t]);
        if (c->embd_scale != 1.0f)
            for (int i = 0; i < dim; i++) x[i] *= c->embd_scale;
        if (c->pos == POS_LEARNED || c->pos == POS_SINUSOIDAL) {
            float *pe = s->xb; /* scratch */
            if (c->pos == POS_LEARNED)
                tensor_row(pe, &w->pos_embd, pos0 + t);
            else
                memcpy(pe, s->pos_table + (size_t)(pos0 + t) * dim, (size_t)dim * sizeof(float));
            for (int i = 0; i < dim; i++) x[i] += pe[i];
        }
    }
    if (trace) *trace = first_nonfinite(s->x, nx) >= 0 ? -1 : c->n_layers;
    if (s->layer_hook) s->layer_hook(s->layer_hook_ctx, 0, pos0, n, s->x);

    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *lw = &w->layers[l];
        norm_forward(s->xb, s->x, lw->attn_norm, lw->attn_norm_b, c->norm, c->norm_eps, n, dim);
        float *const qkv_out[3] = {s->q, s->k, s->v};
        const Tensor *const qkv[3] = {&lw->wq, &lw->wk, &lw->wv};
        matmul_many(qkv_out, s->xb, qkv, 3, n);
        qk_forward(s, c, lw, l, n, pos0);
        attention_forward(m, l, n, pos0);
        matmul(s->xb2, s->att_out, &lw->wo, n);
        add_bias(s->xb2, lw->bo, n, dim);
        residual_add(s, c, lw->post_attn_norm, n);

        norm_forward(s->xb, s->x, lw->ffn_norm, lw->ffn_norm_b, c->norm, c->norm_eps, n, dim);
        ffn_forward(s, c, lw, n);
        residual_add(s, c, lw->post_ffn_norm, n);
        if (trace && *trace == c->n_layers && first_nonfinite(s->x, nx) >= 0) *trace = l;
        if (s->layer_hook) s->layer_hook(s->layer_hook_ctx, l + 1, pos0, n, s->x);
    }

    /* logits only where they are needed: every position, just the last, or none */
    if (want == LOGITS_NONE) return;
    const int first = want == LOGITS_ALL ? 0 : n - 1, count = n - first;
    norm_forward(s->xb, s->x + (size_t)first * dim, w->out_norm, w->out_norm_b, c->norm,
                 c->norm_eps, count, dim);
    matmul(s->logits, s->xb, &w->output, count);
}

int forward(Model *m, const int *tokens, int n, int pos0, Logits want, Error *err) {
    const int vocab = m->config.vocab_size;
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= vocab)
            return fail(err, "token id %d at position %d is outside the vocabulary [0, %d)",
                        tokens[t], pos0 + t, vocab);
    forward_pass(m, tokens, n, pos0, want, NULL);
    return 0;
}

int forward_check(Model *m, const int *tokens, int n, int pos0, Logits want, int diagnose,
                  Error *err) {
    if (want == LOGITS_NONE) return 0;
    const int first = want == LOGITS_ALL ? 0 : n - 1;
    const size_t vocab = (size_t)m->config.vocab_size;
    const long bad = first_nonfinite(m->state.logits, (size_t)(n - first) * vocab);
    if (bad < 0) return 0;
    const int t = first + (int)(bad / (long)vocab);
    const float value = m->state.logits[bad];
    char where[128] = "";
    if (diagnose) { /* the same positions again, the residual stream checked after each layer */
        int layer;
        forward_pass(m, tokens, n, pos0, want, &layer);
        if (layer < 0)
            snprintf(where, sizeof where, "; the token embeddings are not finite");
        else if (layer < m->config.n_layers)
            snprintf(where, sizeof where, "; the residual stream first held one after layer %d",
                     layer);
        else
            snprintf(where, sizeof where,
                     "; the residual stream stayed finite: the output norm or head made it");
    }
    return fail(err,
                "the model produced a non-finite logit (%s) at position %d (token %d); the weights "
                "or the KV cache overflowed: try --kv-cache f32 or an F32/F16 file%s",
                isnan(value) ? "nan"
                : value > 0  ? "inf"
                             : "-inf",
                pos0 + t, tokens[t], where);
}
