/* attn_circuits.c: what attention does with the values, in the engine's own numbers.
 *
 *   --attn-explain L.H.POS  one query through the formula: q, each key's q.k, the scaled score,
 *                           the mask, the softmax weight, |p v|, and the output sum_j p_j v_j
 *   --dump-attn-norms PATH  ||p_ij W_O,h v_j||: how much key j moves query i's output through
 *                           head h (Kobayashi et al. 2020), beside the raw weights
 *   the copying score       of the atlas on the induction probe, through the OV circuit
 *
 * Nothing here recomputes the forward pass: the query, keys, values, weights and output are
 * copied from the run state while the forward pass is in the explained layer (attn_maps.c's
 * hook), and the value norms read the KV cache the run filled. What is computed
 * here is only what the engine never writes down: the dot products q.k one at a time (the tiled
 * kernel keeps no score), the products p_j v_j, and the products with W_O.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_circuits.h"

/* The model's scale of q.k before the softmax: 1 / sqrt(head_dim) unless the file says otherwise
   (attention.scale; the engine folds the ratio into q, see forward.c, and the capture below
   takes it out again so that q and q.k are the model's own). The check line of --attn-explain
   compares the softmax of the scores scaled by it with the engine's weights. */
static float attn_scale(const Config *c) { return c->attn_scale; }

static double norm(const float *x, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

/* score (pos + 1) = q.k_j for every key, in float, summed in the order of the engine's textbook
   kernel: the one number per key the tiled kernel never keeps. */
static void explain_dots(const AttnExplain *e, float *score) {
    const int hd = e->head_dim;
    for (int j = 0; j <= e->pos; j++) {
        float dot = 0.0f;
        for (int i = 0; i < hd; i++) dot += e->q[i] * e->k[(size_t)j * hd + i];
        score[j] = dot;
    }
}

#define EXPLAIN_COMPONENTS 8 /* components of q and o printed */

static void print_components(FILE *f, const char *name, const float *x, int n) {
    const int k = n < EXPLAIN_COMPONENTS ? n : EXPLAIN_COMPONENTS;
    fprintf(f, "|%s| = %.6f, %s[0..%d] =", name, norm(x, n), name, k - 1);
    for (int i = 0; i < k; i++) fprintf(f, " %.6f", x[i]);
    fputc('\n', f);
}

int attn_explain_print(const AttnMaps *a, char **labels, FILE *f, Error *err) {
    const AttnExplain *e = &a->explain;
    const Config *c = &a->model->config;
    if (!e->captured)
        return fail(err, "--attn-explain %d.%d.%d: the run fed %d positions (0..%d), not %d",
                    e->layer, e->head, e->pos, a->n, a->n - 1, e->pos);
    const int hd = e->head_dim, P = e->pos;
    const float scale = attn_scale(c);
    char vis[4 * 12 + 1];
    attn_visible(labels[P], vis, 12);
    fprintf(f, "attention explained: layer %d head %d, query %d %s\n", e->layer, e->head, P, vis);
    if (e->group > 1)
        fprintf(f,
                "grouped-query attention: key/value head %d is shared by query heads %d..%d "
                "(%d query heads per key/value head)\n",
                e->kv_head, e->kv_head * e->group, e->kv_head * e->group + e->group - 1, e->group);
    else
        fprintf(f, "key/value head %d (one per query head)\n", e->kv_head);
    if (c->pos == POS_ROPE)
        fprintf(
            f,
            "q and k are rotated by RoPE (%d of %d dims per head, by angles proportional to the "
            "position): the scores below are those of the rotated q and k; dims rotate in "
            "pairs %s\n",
            c->rope_dim, hd,
            c->rope_style == ROPE_NEOX ? "(i, i + d/2)"
                                       : "(2i, 2i+1) (Hugging Face's order lists them as "
                                         "(i, i + d/2): the same vectors, permuted)");
    else
        fprintf(f,
                "no RoPE: positions entered with the embeddings; q and k are used as projected\n");
    print_components(f, "q", e->q, hd);
    if (c->q_scale != 1.0f)
        fprintf(f, "scale = %.6f (the file's attention.scale, not 1/sqrt(%d))\n", scale, hd);
    else
        fprintf(f, "scale = 1/sqrt(head_dim) = 1/sqrt(%d) = %.6f (the engine's own)\n", hd, scale);
    fprintf(f, "  key          q.k       scaled     mask            p      |p v|  token\n");

    /* the scores in float, summed in the order of the engine's textbook kernel */
    double max = -INFINITY, sum = 0.0, worst_p = 0.0;
    float *score = malloc((size_t)(P + 1) * sizeof(float)),
          *of = malloc((size_t)hd * sizeof(float));
    double *o = calloc((size_t)hd, sizeof(double));
    if (!score || !of || !o) {
        free(score);
        free(of);
        free(o);
        return fail(err, "out of memory explaining a query");
    }
    explain_dots(e, score);
    for (int j = e->lo; j <= P; j++)
        if (score[j] * scale > max) max = score[j] * scale;
    for (int j = e->lo; j <= P; j++) sum += exp((double)score[j] * scale - max);
    for (int j = 0; j <= P; j++) {
        const float p = e->probs[j];
        const float *v = e->v + (size_t)j * hd;
        double pv = 0.0;
        for (int i = 0; i < hd; i++) {
            pv += (double)(p * v[i]) * (p * v[i]);
            o[i] += (double)p * v[i];
        }
        attn_visible(labels[j], vis, 12);
        if (j < e->lo) {
            fprintf(f, "%5d %12.6f %12s %8s %12.8f %10.6f  %s\n", j, score[j], "-inf", "window", p,
                    sqrt(pv), vis);
            continue;
        }
        const double soft = exp((double)score[j] * scale - max) / sum;
        if (fabs(soft - p) > worst_p) worst_p = fabs(soft - p);
        fprintf(f, "%5d %12.6f %12.6f %8s %12.8f %10.6f  %s\n", j, score[j], score[j] * scale,
                "visible", p, sqrt(pv), vis);
    }
    if (P + 1 < a->n) fprintf(f, "%5d.. the future: masked (never computed)\n", P + 1);
    double worst_o = 0.0;
    for (int i = 0; i < hd; i++) {
        of[i] = (float)o[i];
        if (fabs(o[i] - e->out[i]) > worst_o) worst_o = fabs(o[i] - e->out[i]);
    }
    fprintf(f, "output o = sum_j p_j v_j (head_dim %d): ", hd);
    print_components(f, "o", of, hd);
    fprintf(f,
            "check: softmax of the scaled scores vs the engine's weights: max |diff| %.2e; "
            "o vs the engine's output (its tiled kernel): max |diff| %.2e\n",
            worst_p, worst_o);
    free(score);
    free(of);
    free(o);
    return 0;
}

static void json_floats(FILE *f, const char *name, const float *x, int n) {
    fprintf(f, ", \"%s\": [", name);
    for (int i = 0; i < n; i++) fprintf(f, "%s%.8g", i ? ", " : "", x[i]);
    fputc(']', f);
}

void attn_explain_json(const AttnMaps *a, FILE *f) {
    const AttnExplain *e = &a->explain;
    const Config *c = &a->model->config;
    const int hd = e->head_dim, keys = e->pos + 1;
    float *score = malloc((size_t)keys * sizeof(float)), *pv = malloc((size_t)keys * sizeof(float));
    float *o = calloc((size_t)hd, sizeof(float));
    if (!score || !pv || !o) {
        fputs("null", f);
        free(score);
        free(pv);
        free(o);
        return;
    }
    explain_dots(e, score);
    for (int j = 0; j < keys; j++) {
        double s = 0.0;
        for (int i = 0; i < hd; i++) {
            const float x = e->probs[j] * e->v[(size_t)j * hd + i];
            s += (double)x * x;
            o[i] += x;
        }
        pv[j] = (float)sqrt(s);
    }
    fprintf(f,
            "{\"layer\": %d, \"head\": %d, \"pos\": %d, \"kv_head\": %d, \"group\": %d, "
            "\"lo\": %d, \"head_dim\": %d, \"scale\": %.8g, \"rope\": %s",
            e->layer, e->head, e->pos, e->kv_head, e->group, e->lo, hd, attn_scale(c),
            c->pos != POS_ROPE           ? "null"
            : c->rope_style == ROPE_NEOX ? "\"neox\""
                                         : "\"interleaved\"");
    json_floats(f, "q", e->q, hd);
    json_floats(f, "dots", score, keys);
    json_floats(f, "probs", e->probs, keys);
    json_floats(f, "pv", pv, keys);
    json_floats(f, "o", o, hd);
    json_floats(f, "engine_o", e->out, hd);
    fputc('}', f);
    free(score);
    free(pv);
    free(o);
}

/* ------------------------------------------------------------------------------------------ */
/* Value-weighted maps. Head h's output at query i is W_O,h sum_j p_ij v_j (W_O,h: the head_dim
   columns of W_O that read head h), so key j contributes p_ij W_O,h v_j, whose norm is
   p_ij ||W_O,h v_j||: the weight times a norm that depends on the key alone. That norm is
   computed here for every (layer, head, key), from the values in the cache. */

/* Every row of w as floats: (rows, cols), malloc'ed. */
static float *matrix_floats(const Tensor *w) {
    float *out = malloc((size_t)w->rows * w->cols * sizeof(float));
    if (out)
        for (int r = 0; r < w->rows; r++) tensor_row(out + (size_t)r * w->cols, w, r);
    return out;
}

int attn_value_norms(AttnMaps *a, Error *err) {
    const Model *m = a->model;
    const Config *c = &m->config;
    const int T = a->n, H = c->n_heads, hd = c->head_dim, dim = c->dim, q_dim = H * hd;
    const int group = c->n_heads / c->n_kv_heads;
    free(a->vnorms); /* those of an earlier run over the same maps (the coref probe's sentences) */
    a->vnorms = malloc((size_t)c->n_layers * H * (T > 0 ? T : 1) * sizeof(float));
    if (!a->vnorms) return fail(err, "out of memory for the value norms");
    /* the layer's values as floats (n_kv_heads, T, head_dim), whatever the cache's type */
    float *vals = malloc((size_t)c->n_kv_heads * (T > 0 ? T : 1) * hd * sizeof(float));
    if (!vals) return fail(err, "out of memory for the values");
    for (int l = 0; l < c->n_layers; l++) {
        float *wo = matrix_floats(&m->weights.layers[l].wo); /* (dim, q_dim) */
        if (!wo) {
            free(vals);
            return fail(err, "out of memory for layer %d's output projection", l);
        }
        for (int h = 0; h < c->n_kv_heads; h++)
            for (int j = 0; j < T; j++)
                attn_cache_value(vals + ((size_t)h * T + j) * hd, m, l, h, j);
        float *out = a->vnorms + (size_t)l * H * T;
#pragma omp parallel for
        for (int k = 0; k < H * T; k++) {
            const int h = k / T, j = k % T;
            const float *v = vals + ((size_t)(h / group) * T + j) * hd;
            double ss = 0.0;
            for (int r = 0; r < dim; r++) {
                const float *w = wo + (size_t)r * q_dim + (size_t)h * hd;
                float y = 0.0f;
                for (int i = 0; i < hd; i++) y += w[i] * v[i];
                ss += (double)y * y;
            }
            out[k] = (float)sqrt(ss);
        }
        free(wo);
    }
    free(vals);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The copying score, through the OV circuit (Elhage et al. 2021): if head h attended only to a
   token t, it would add W_O,h W_V,h x_t to the residual stream, x_t = the layer's attention norm
   of t's embedding (the token alone: no position, no earlier layers). Read through the
   unembedding W_U with the final norm's gain g (its normalisation only rescales all logits
   alike), the head copies when t's own logit beats those of the other probe tokens. Biases are
   left out: they add the same vector whatever the token. Cost per layer: the probe's R tokens
   through W_V (kv_dim x dim), each head's W_O,h (dim x head_dim) and R rows of W_U. */

static void norm_row(float *out, const float *x, const float *w, const float *b, const Config *c) {
    const int d = c->dim;
    double mean = 0.0, var = 0.0;
    if (c->norm == NORM_LAYER) {
        for (int i = 0; i < d; i++) mean += x[i];
        mean /= d;
    }
    for (int i = 0; i < d; i++) var += (x[i] - mean) * (x[i] - mean);
    const double scale = 1.0 / sqrt(var / d + c->norm_eps);
    for (int i = 0; i < d; i++) out[i] = (float)((x[i] - mean) * scale) * w[i] + (b ? b[i] : 0.0f);
}

int attn_copying_scores(const AttnMaps *a, double *score, Error *err) {
    const Model *m = a->model;
    const Config *c = &m->config;
    const int R = a->probe_len, dim = c->dim, hd = c->head_dim, H = c->n_heads;
    const int group = H / c->n_kv_heads, kv_dim = c->n_kv_heads * hd;
    const int *toks = a->tokens + a->probe_start;
    float *e = malloc((size_t)R * dim * sizeof(float));    /* (R, dim) embeddings */
    float *x = malloc((size_t)R * dim * sizeof(float));    /* (R, dim) normed */
    float *u = malloc((size_t)R * dim * sizeof(float));    /* (R, dim) g * W_U rows */
    float *v = malloc((size_t)R * kv_dim * sizeof(float)); /* (R, kv_dim) */
    float *y = malloc((size_t)R * dim * sizeof(float));    /* (R, dim) one head's output */
    float *wv = malloc((size_t)kv_dim * dim * sizeof(float)), *wo = NULL;
    int rc = -1;
    if (!e || !x || !u || !v || !y || !wv) {
        fail(err, "out of memory for the copying scores");
        goto done;
    }
    for (int t = 0; t < R; t++) {
        tensor_row(e + (size_t)t * dim, &m->weights.token_embd, toks[t]);
        tensor_row(u + (size_t)t * dim, &m->weights.output, toks[t]);
        for (int r = 0; r < dim; r++) u[(size_t)t * dim + r] *= m->weights.out_norm[r];
    }
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *lw = &m->weights.layers[l];
        for (int r = 0; r < kv_dim; r++) tensor_row(wv + (size_t)r * dim, &lw->wv, r);
        if (!(wo = matrix_floats(&lw->wo))) {
            fail(err, "out of memory for layer %d's output projection", l);
            goto done;
        }
        for (int t = 0; t < R; t++) {
            norm_row(x + (size_t)t * dim, e + (size_t)t * dim, lw->attn_norm, lw->attn_norm_b, c);
            for (int r = 0; r < kv_dim; r++) {
                float s = 0.0f;
                for (int i = 0; i < dim; i++) s += wv[(size_t)r * dim + i] * x[(size_t)t * dim + i];
                v[(size_t)t * kv_dim + r] = s;
            }
        }
        for (int h = 0; h < H; h++) {
            const int kvh = h / group;
            for (int t = 0; t < R; t++)
                for (int r = 0; r < dim; r++) {
                    const float *w = wo + (size_t)r * H * hd + (size_t)h * hd;
                    const float *vt = v + (size_t)t * kv_dim + (size_t)kvh * hd;
                    float s = 0.0f;
                    for (int i = 0; i < hd; i++) s += w[i] * vt[i];
                    y[(size_t)t * dim + r] = s;
                }
            double below = 0.0;
            for (int t = 0; t < R; t++) { /* logits of every probe token t2 for head output y_t */
                double own = 0.0;
                int n_below = 0;
                for (int t2 = -1; t2 < R; t2++) {
                    if (t2 == t) continue;
                    const int which = t2 < 0 ? t : t2;
                    double lg = 0.0;
                    for (int r = 0; r < dim; r++)
                        lg += (double)u[(size_t)which * dim + r] * y[(size_t)t * dim + r];
                    if (t2 < 0)
                        own = lg;
                    else
                        n_below += lg < own;
                }
                below += (double)n_below / (R - 1);
            }
            score[(size_t)l * H + h] = below / R;
        }
        free(wo);
        wo = NULL;
    }
    rc = 0;
done:
    free(e);
    free(x);
    free(u);
    free(v);
    free(y);
    free(wv);
    free(wo);
    return rc;
}
