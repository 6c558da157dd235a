/* attn_maps.c: the attention capture. The forward pass hands each layer's softmax probabilities
 * to RunState.attn_hook; attn_hook keeps them for every layer and head, in maps of (T, T): row
 * i = the query at position i, column j = the key at position j; entries above the diagonal (the
 * future) and outside a sliding window are exactly zero. For --attn-explain the hook also copies
 * one query's q, keys, values, weights and output from the run state. The views read the maps
 * (attn_views.c, attn_circuits.c, attn_probe.c); this file reads none of them.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "attn_maps.h"

#define ATTN_MAX_BYTES ((double)(2u << 30)) /* refuse maps larger than 2 GiB */

/* The KV cache as kernels.h lays it out (floats or halves, --kv-cache), for layer l: key j, dim i
   of KV head h, and the row of value j of KV head h (head_dim floats) into out. */
static float cache_key(const Model *m, int l, int h, int j, int i) {
    void *kc, *vc;
    const AttnShape a = layer_attn(m, l, &kc, &vc);
    return kv_key(kc, &a, h, j, i);
}

void attn_cache_value(float *out, const Model *m, int l, int h, int j) {
    void *kc, *vc;
    const AttnShape a = layer_attn(m, l, &kc, &vc);
    kv_value(out, vc, &a, h, j);
}

/* --attn-explain: the query, its keys, values, weights and output, copied while the forward pass
   is in its layer. */
static void explain_capture(AttnMaps *a, int layer, int pos0, int n, const float *probs,
                            int stride) {
    AttnExplain *e = &a->explain;
    if (!e->q || layer != e->layer || e->pos < pos0 || e->pos >= pos0 + n) return;
    const Config *c = &a->model->config;
    const RunState *s = &a->model->state;
    const int t = e->pos - pos0, hd = e->head_dim;
    const size_t row = (size_t)t * c->n_heads + e->head;
    memcpy(e->q, s->q + row * hd, (size_t)hd * sizeof(float));
    if (c->q_scale != 1.0f)
        for (int i = 0; i < hd; i++) e->q[i] /= c->q_scale;
    memcpy(e->out, s->att_out + row * hd, (size_t)hd * sizeof(float));
    memcpy(e->probs, probs + row * stride, (size_t)(e->pos + 1) * sizeof(float));
    for (int j = 0; j <= e->pos; j++) {
        for (int i = 0; i < hd; i++)
            e->k[(size_t)j * hd + i] = cache_key(a->model, layer, e->kv_head, j, i);
        attn_cache_value(e->v + (size_t)j * hd, a->model, layer, e->kv_head, j);
    }
    e->captured = 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Capture */

int attn_wanted(const AttnOptions *o) {
    return o->dump || o->dump_norms || o->html || o->show_layer >= 0 || o->stats ||
           o->explain[0] >= 0 || o->probe;
}

/* Room for the explained query's numbers (explain_capture fills them in the hook). */
static int explain_init(AttnExplain *e, const AttnOptions *o, const Config *c, int cap,
                        Error *err) {
    e->layer = o->explain[0];
    e->head = o->explain[1];
    e->pos = o->explain[2];
    if (e->layer >= c->n_layers || e->head >= c->n_heads)
        return fail(err, "--attn-explain %d.%d.%d: the model has layers 0..%d and heads 0..%d",
                    e->layer, e->head, e->pos, c->n_layers - 1, c->n_heads - 1);
    if (e->pos >= cap)
        return fail(err,
                    "--attn-explain %d.%d.%d: this run feeds at most %d positions (0..%d: prompt "
                    "tokens + generated - 1)",
                    e->layer, e->head, e->pos, cap, cap - 1);
    e->group = c->n_heads / c->n_kv_heads;
    e->kv_head = e->head / e->group;
    e->lo = attn_first_visible(e->pos, layer_window(c, e->layer));
    e->head_dim = c->head_dim;
    const size_t hd = (size_t)c->head_dim, keys = (size_t)e->pos + 1;
    e->q = malloc(hd * sizeof(float));
    e->out = malloc(hd * sizeof(float));
    e->probs = malloc(keys * sizeof(float));
    e->k = malloc(keys * hd * sizeof(float));
    e->v = malloc(keys * hd * sizeof(float));
    if (!e->q || !e->out || !e->probs || !e->k || !e->v)
        return fail(err, "out of memory for --attn-explain");
    return 0;
}

int attn_parse_ints(const char *s, int *out, int n, const char *flag, Error *err) {
    /* exactly n runs of 1 to 6 digits separated by '.': no signs, spaces or trailing text */
    const char *p = s;
    for (int k = 0; k < n; k++) {
        size_t len = strspn(p, "0123456789");
        if (len == 0 || len > 6 || (k + 1 < n ? p[len] != '.' : p[len] != '\0')) {
            if (n == 2)
                return fail(err, "%s expects LAYER.HEAD, e.g. 0.3 (counting from 0), got '%s'",
                            flag, s);
            return fail(err,
                        "%s expects LAYER.HEAD.POSITION, e.g. 1.0.7 (counting from 0), got '%s'",
                        flag, s);
        }
        out[k] = atoi(p);
        p += len + 1;
    }
    return 0;
}

int attn_maps_init(AttnMaps *a, const AttnOptions *o, const Model *m, int n_prompt, int cap,
                   Error *err) {
    const Config *c = &m->config;
    memset(a, 0, sizeof *a);
    a->model = m;
    if (o->show_layer >= c->n_layers || o->show_head >= c->n_heads)
        return fail(err, "--attn-show %d.%d: the model has layers 0..%d and heads 0..%d",
                    o->show_layer, o->show_head, c->n_layers - 1, c->n_heads - 1);
    if (o->stats && cap < 2)
        return fail(err,
                    "--attn-stats needs at least 2 positions (prompt tokens + generated - 1), "
                    "this run has %d",
                    cap);
    double bytes = (double)c->n_layers * c->n_heads * cap * (double)cap * sizeof(float);
    if (bytes > ATTN_MAX_BYTES)
        return fail(err,
                    "attention maps for %d positions need %.1f GiB (%d layers x %d heads x "
                    "%d x %d x 4 bytes), more than the 2 GiB limit; shorten the prompt or -n",
                    cap, bytes / (1 << 30), c->n_layers, c->n_heads, cap, cap);
    a->n_layers = c->n_layers;
    a->n_heads = c->n_heads;
    a->window = c->sliding_window;
    a->cap = cap;
    a->n_prompt = n_prompt;
    a->probs = calloc((size_t)c->n_layers * c->n_heads * cap * cap, sizeof(float));
    a->tokens = calloc((size_t)cap, sizeof(int));
    if (!a->probs || !a->tokens) {
        attn_maps_free(a);
        return fail(err, "out of memory for the attention maps (%.0f MB)", bytes / 1e6);
    }
    if (o->explain[0] >= 0 && explain_init(&a->explain, o, c, cap, err)) {
        attn_maps_free(a);
        return -1;
    }
    return 0;
}

void attn_maps_free(AttnMaps *a) {
    AttnExplain *e = &a->explain;
    free(a->probs);
    free(a->tokens);
    free(a->vnorms);
    free(e->q);
    free(e->out);
    free(e->probs);
    free(e->k);
    free(e->v);
    a->probs = NULL;
    a->tokens = NULL;
    a->vnorms = NULL;
    memset(e, 0, sizeof *e);
}

void attn_hook(void *ctx, int layer, int pos0, int n, const float *probs, int stride) {
    AttnMaps *a = ctx;
    for (int t = 0; t < n && pos0 + t < a->cap; t++) {
        const int i = pos0 + t;
        /* keys after i are zero in the hook's row and already zero in ours (calloc) */
        for (int h = 0; h < a->n_heads; h++)
            memcpy(attn_map_row(a, layer, h, i), probs + ((size_t)t * a->n_heads + h) * stride,
                   (size_t)(i + 1) * sizeof(float));
        if (i + 1 > a->n) a->n = i + 1;
    }
    explain_capture(a, layer, pos0, n, probs, stride);
}

void attn_maps_tokens(AttnMaps *a, int pos0, const int *tokens, int n) {
    for (int t = 0; t < n && pos0 + t < a->cap; t++) a->tokens[pos0 + t] = tokens[t];
}

void attn_maps_pack(AttnMaps *a) {
    const int T = a->n;
    if (T == a->cap) return;
    /* Row r moves from r * cap to r * T (r counts rows over all maps): never forwards, so copying
       in increasing order never overwrites a row not yet moved. */
    for (size_t r = 0; r < (size_t)a->n_layers * a->n_heads * a->cap; r++) {
        size_t map = r / a->cap, i = r % a->cap;
        if ((int)i < T)
            memmove(a->probs + (map * T + i) * T, a->probs + r * a->cap, (size_t)T * sizeof(float));
    }
    a->cap = T;
}

/* ------------------------------------------------------------------------------------------ */
/* Token labels: the text each position's token decodes to. Each piece keeps its own leading
   space (SentencePiece drops it at the start of a text; a label should not). A byte token that
   only starts a character gets "…", the token completing it the whole character. */

char **attn_token_labels(const AttnMaps *a, const Tokenizer *tok, unsigned char *special,
                         Error *err) {
    const size_t cap = decoder_cap(tok) + 32;
    char **labels = calloc((size_t)a->n, sizeof *labels);
    char *buf = malloc(cap);
    if (!labels || !buf) goto oom;
    Decoder d;
    decoder_init(&d);
    for (int i = 0; i < a->n; i++) {
        const int id = a->tokens[i];
        d.prev_token = id; /* not at the start: keep the leading space (a no-op for control ids) */
        size_t len = decoder_push(tok, &d, id, buf, cap);
        if (len == 0) {
            special[i] = 1;
            if (d.n_pending > 0)
                snprintf(buf, cap, "\xE2\x80\xA6");
            else if (id == tokenizer_bos(tok))
                snprintf(buf, cap, "<bos>");
            else if (id == tokenizer_eos(tok))
                snprintf(buf, cap, "<eos>");
            else
                snprintf(buf, cap, "<%d>", id);
        }
        if (!(labels[i] = strdup(buf))) goto oom;
    }
    free(buf);
    return labels;
oom:
    if (labels)
        for (int i = 0; i < a->n; i++) free(labels[i]);
    free(labels);
    free(buf);
    fail(err, "out of memory for token labels");
    return NULL;
}

void attn_free_labels(char **labels, int n) {
    for (int i = 0; i < n; i++) free(labels[i]);
    free(labels);
}

/* Writes s for a terminal into out (capacity >= 4 * cols + 1), at most `cols` characters:
   whitespace shown as visible marks (space ·, newline ↵, tab →), other control characters in
   caret notation, so no token can move the cursor or start an escape sequence. Returns the
   characters written (one column each, except wide CJK/emoji, which we do not measure). */
int attn_visible(const char *s, char *out, int cols) {
    int n = 0;
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n < cols;) {
        int k = attn_utf8_len(*p);
        const char *mark = NULL;
        char caret[3] = {'^', 0, 0};
        if (*p == ' ')
            mark = "\xC2\xB7";
        else if (*p == '\n')
            mark = "\xE2\x86\xB5";
        else if (*p == '\t')
            mark = "\xE2\x86\x92";
        else if (*p < 0x20 || *p == 0x7F)
            caret[1] = (char)(*p ^ 0x40), mark = caret;
        else if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F)
            mark = "\xEF\xBF\xBD"; /* C1 */
        if (mark && mark == caret && n + 2 > cols) break;
        if (mark) {
            size_t m = strlen(mark);
            memcpy(out + w, mark, m);
            w += m;
            n += mark == caret ? 2 : 1;
        } else {
            memcpy(out + w, p, (size_t)k);
            w += (size_t)k;
            n++;
        }
        p += k;
    }
    out[w] = '\0';
    return n;
}
