/* run.c: the program. Reads the command line (cli.c), loads the model (model.c), then generates
 * text, chats, measures perplexity or prints token ids.
 *
 *   ./run MODEL.gguf -i "prompt"      generate text (stdout), timings (stderr)
 *   ./run MODEL.gguf --chat           a conversation (chat.h), replies on stdout
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "attn_circuits.h"
#include "attn_probe.h"
#include "attn_views.h"
#include "chat.h"
#include "cli.h"
#include "model.h"
#include "sampler.h"
#include "spec.h"
#include "unicode.h"

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
static int write_npy(const char *path, const float *data, const size_t *shape, int ndim,
                     Error *err) {
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

/* Reads all of f into a malloc'ed buffer (capped at 1 GiB). */
static char *read_all(FILE *f, const char *what, size_t *len, Error *err) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fail(err, "out of memory reading %s", what);
        return NULL;
    }
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *p = cap > ((size_t)1 << 30) ? NULL : realloc(buf, cap *= 2);
            if (!p) {
                free(buf);
                fail(err, "%s is too large", what);
                return NULL;
            }
            buf = p;
        }
    }
    if (ferror(f)) {
        free(buf);
        fail(err, "error reading %s", what);
        return NULL;
    }
    *len = n;
    return buf;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The sampler the options describe: temperature, top-k, top-p, min-p and the penalties. */
static int sampler_from_options(Sampler *sp, const Config *c, const Options *o, Error *err) {
    if (sampler_init(sp, c->vocab_size, o->temperature, o->top_p, o->top_k, o->seed, err))
        return -1;
    sp->min_p = o->min_p;
    if (sampler_set_penalties(sp, o->repeat_last_n, o->repeat_penalty, o->frequency_penalty,
                              o->presence_penalty, err)) {
        sampler_free(sp);
        return -1;
    }
    return 0;
}

/* The generated text on its way to stdout: each token decoded (Decoder), then held back as long as
   it may be the start of a stop string (StopText). */
typedef struct {
    const Tokenizer *tok;
    Decoder dec;
    StopText stop;
    char *text; /* (cap) one token's text, decoder_cap bytes */
    size_t cap;
} Output;

/* prev: the token before the first one printed (SentencePiece drops a leading space only after
   BOS). */
static int output_init(Output *out, const Tokenizer *tok, const Options *o, int prev, Error *err) {
    out->tok = tok;
    out->cap = decoder_cap(tok);
    out->text = malloc(out->cap);
    if (!out->text) return fail(err, "out of memory");
    stop_init(&out->stop, o->stop.items, o->stop.n);
    decoder_init(&out->dec);
    out->dec.prev_token = prev;
    return 0;
}

/* Prints text through the stop strings; returns 1 once one of them has come (-1: out of memory).
   final: the end of the stream, the held tail is printed too. */
static int emit(StopText *st, const char *text, size_t len, int final, Error *err) {
    const char *out;
    size_t n;
    int stopped = stop_push(st, text, len, &out, &n);
    if (stopped < 0) return fail(err, "out of memory (stop strings)");
    fwrite(out, 1, n, stdout);
    if (final && !stopped) {
        stop_flush(st, &out, &n);
        fwrite(out, 1, n, stdout);
    }
    fflush(stdout);
    return stopped;
}

/* Prints one token's text: 1 once a stop string has come, -1 on an error. */
static int output_push(Output *out, int token, Error *err) {
    size_t len = decoder_push(out->tok, &out->dec, token, out->text, out->cap);
    return emit(&out->stop, out->text, len, 0, err);
}

/* The end of the stream: what the decoder and the stop strings still hold. */
static int output_finish(Output *out, Error *err) {
    return emit(&out->stop, out->text, decoder_flush(&out->dec, out->text, out->cap), 1, err);
}

static void output_free(Output *out) {
    stop_free(&out->stop);
    free(out->text);
}

/* --dump-attn-norms: the value-weighted maps p_ij ||W_O,h v_j|| (n_layers, n_heads, T, T). */
static int write_attn_norms(const AttnMaps *a, const char *path, Error *err) {
    const size_t T = (size_t)a->n, maps = (size_t)a->n_layers * a->n_heads;
    float *out = malloc(maps * T * T * sizeof(float) + 1);
    if (!out) return fail(err, "out of memory for --dump-attn-norms");
    for (size_t k = 0; k < maps; k++)
        for (size_t i = 0; i < T; i++)
            for (size_t j = 0; j < T; j++)
                out[(k * T + i) * T + j] = a->probs[(k * T + i) * T + j] * a->vnorms[k * T + j];
    size_t shape[4] = {(size_t)a->n_layers, (size_t)a->n_heads, T, T};
    int rc = write_npy(path, out, shape, 4, err);
    free(out);
    return rc;
}

/* --dump-layers: the residual stream of the prompt's positions, (stages, n, dim) with stages =
   n_layers + 1 (the embeddings, then after each layer); filled by the forward pass's hook. */
typedef struct {
    float *x;
    int stages, n, dim;
} LayerDump;

static void layer_hook(void *ctx, int stage, int pos0, int n, const float *x) {
    LayerDump *d = ctx;
    for (int t = 0; t < n && pos0 + t < d->n; t++)
        memcpy(d->x + ((size_t)stage * d->n + pos0 + t) * d->dim, x + (size_t)t * d->dim,
               (size_t)d->dim * sizeof(float));
}

/* A run of generate(): what its pieces (prompt, decoding, report) share. */
typedef struct {
    Model *m;
    const Options *o;
    Sampler sp;
    Matrix dump;         /* --dump-logits: the logits of every position fed */
    LayerDump layers;    /* --dump-layers; layers.x NULL when off */
    AttnMaps maps;       /* the attention views' capture; maps.probs NULL when off */
    double *step_ms;     /* (seq_len) -v: each generated token's forward pass, by position */
    const float *logits; /* (vocab) the last position's, to sample from */
    Spec *spec;          /* speculative decoding (-md, --lookup), or NULL */
    int generated;       /* tokens sampled */
    int stop_reason;     /* 0: -n tokens, 1: end of text, 2: context full, 3: a stop string */
} Generation;

/* Runs one batch (forward, the rule for non-finite logits, --dump-logits, the attention views);
   g->logits becomes the last position's. */
static int gen_forward(Generation *g, const int *ids, int n, int pos, Logits want, Error *err) {
    Model *m = g->m;
    const double ts = g->step_ms && n == 1 ? now_seconds() : 0.0;
    if (forward(m, ids, n, pos, want, err) ||
        forward_check(m, ids, n, pos, want, g->o->verbose, err))
        return -1;
    if (g->step_ms && n == 1) g->step_ms[pos] = (now_seconds() - ts) * 1e3;
    if (g->maps.probs) attn_maps_tokens(&g->maps, pos, ids, n);
    if (want == LOGITS_NONE) return 0;
    const size_t rows = want == LOGITS_ALL ? (size_t)n : 1;
    if (g->o->dump_logits && matrix_append(&g->dump, m->state.logits, rows, err)) return -1;
    g->logits = m->state.logits + (rows - 1) * m->config.vocab_size;
    return 0;
}

/* The prompt: every token into the penalties' window (the first, BOS, included: golden.sh's
   penalty-window check fails without it), then the forward passes in batches of state.cap
   positions. */
static int feed_prompt(Generation *g, const int *prompt, int n_prompt, Error *err) {
    for (int i = 0; i < n_prompt; i++) sampler_accept(&g->sp, prompt[i]);
    const int cap = g->m->state.cap;
    for (int i = 0; i < n_prompt; i += cap) {
        const int n = n_prompt - i < cap ? n_prompt - i : cap;
        const Logits want = g->o->dump_logits   ? LOGITS_ALL
                            : i + n == n_prompt ? LOGITS_LAST
                                                : LOGITS_NONE;
        if (gen_forward(g, prompt + i, n, i, want, err)) return -1;
    }
    return 0;
}

/* Sample, print, feed back: until -n tokens, the end of text, a stop string or a full context.
   prev: the prompt's last token (SentencePiece drops a leading space only after BOS). With
   speculation, each token fed comes with a draft checked in the same pass (spec_step): the drafts
   accepted are printed next, already in the cache, then the token sampled after them. hist: the
   tokens at positions 0 .. pos - 1, room for seq_len + 1 (speculation only, else NULL). */
static int decode(Generation *g, int *hist, int prev, int pos, Error *err) {
    Model *m = g->m;
    const Options *o = g->o;
    const int eos = tokenizer_eos(m->tokenizer), eot = tokenizer_eot(m->tokenizer);
    Output out;
    if (output_init(&out, m->tokenizer, o, prev, err)) return -1;
    int rc = -1, queue[SPEC_MAX], qn = 0, qi = 0, pending = -1;
    while (g->generated < o->steps) {
        const int in_cache = qi < qn; /* an accepted draft */
        int next = in_cache       ? queue[qi++]
                   : pending >= 0 ? pending
                                  : sampler_sample(&g->sp, g->logits);
        if (!in_cache) pending = -1;
        g->generated++;
        if (next == eos || next == eot) { /* eot: a chat model's end of turn */
            g->stop_reason = 1;
            break;
        }
        sampler_accept(&g->sp, next);
        int stopped = output_push(&out, next, err);
        if (stopped < 0) goto done;
        if (stopped) {
            g->stop_reason = 3;
            break;
        }
        if (g->generated == o->steps || in_cache) continue;
        if (pos == m->config.seq_len) {
            g->stop_reason = 2;
            break;
        }
        if (g->spec) {
            hist[pos] = next;
            qn = spec_step(g->spec, &g->sp, hist, pos + 1, o->steps - g->generated - 1, queue,
                           &pending, err);
            if (qn < 0) goto done;
            memcpy(hist + pos + 1, queue, (size_t)qn * sizeof *queue);
            qi = 0;
            pos += 1 + qn;
        } else if (gen_forward(g, &next, 1, pos++, LOGITS_LAST, err)) {
            goto done;
        }
    }
    if (g->stop_reason != 3 && output_finish(&out, err) < 0) goto done;
    rc = 0;
done: /* the text so far ends its line, on an error too */
    if (g->generated) fputc('\n', stdout);
    fflush(stdout);
    output_free(&out);
    return rc;
}

/* Why generation stopped, the timings, then the files asked for (--dump-logits, the attention
   views). */
static int report(Generation *g, int n_prompt, double load_s, double t_prompt, double t_gen,
                  Error *err) {
    const Model *m = g->m;
    const Config *c = &m->config;
    const Options *o = g->o;
    if (g->stop_reason == 1) fprintf(stderr, "[end of text]\n");
    if (g->stop_reason == 2) fprintf(stderr, "[context length %d reached]\n", c->seq_len);
    if (g->stop_reason == 3) fprintf(stderr, "[stop string]\n");
    fprintf(stderr, "load: %.1f MB mapped and touched", m->file.size / 1e6);
    if (m->aligned_bytes)
        fprintf(stderr, ", %.1f MB copied off %d-byte alignment", m->aligned_bytes / 1e6,
                TENSOR_ALIGN);
    if (m->packed_bytes) fprintf(stderr, ", %.1f MB copied into 2 MB pages", m->packed_bytes / 1e6);
    fprintf(stderr, " in %.0f ms\n", load_s * 1e3);
    fprintf(stderr, "prompt: %d tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s\n", n_prompt,
            n_prompt / (t_prompt > 0 ? t_prompt : 1e-9), g->generated,
            g->generated / (t_gen > 0 ? t_gen : 1e-9));
    if (o->dump_logits) {
        size_t shape[2] = {g->dump.rows, g->dump.cols};
        if (write_npy(o->dump_logits, g->dump.data, shape, 2, err)) return -1;
    }
    if (o->dump_layers) {
        const LayerDump *d = &g->layers;
        size_t shape[3] = {(size_t)d->stages, (size_t)d->n, (size_t)d->dim};
        if (write_npy(o->dump_layers, d->x, shape, 3, err)) return -1;
    }
    AttnMaps *maps = &g->maps;
    if (o->verbose && g->spec) spec_print_stats(g->spec, stderr);
    if (o->verbose)
        attn_print_cost(c, n_prompt, g->generated, g->step_ms, maps->probs != NULL, stderr);
    if (!maps->probs) return 0;
    attn_maps_pack(maps);
    size_t shape[4] = {(size_t)c->n_layers, (size_t)c->n_heads, (size_t)maps->n, (size_t)maps->n};
    if (o->attn.dump && write_npy(o->attn.dump, maps->probs, shape, 4, err)) return -1;
    if ((o->attn.dump_norms || o->attn.html) && attn_value_norms(maps, err)) return -1;
    if (o->attn.dump_norms && write_attn_norms(maps, o->attn.dump_norms, err)) return -1;
    return attn_report(maps, &o->attn, m->tokenizer, o->model, g->generated > 0, err);
}

/* Runs the prompt and the generation loop; text to stdout, timings to stderr. probe_start >= 0:
   the prompt is the induction probe, its passage starting there. */
static int generate(Model *m, const Options *o, const int *prompt, int n_prompt, int probe_start,
                    double load_s, Error *err) {
    const Config *c = &m->config;
    Generation g = {.m = m, .o = o, .dump = {NULL, 0, (size_t)c->vocab_size, 0}};
    int *hist = NULL; /* speculation: the tokens at each position */
    g.step_ms = o->verbose ? calloc((size_t)c->seq_len, sizeof(double)) : NULL;
    int rc = -1;
    if (o->verbose && !g.step_ms) {
        fail(err, "out of memory");
        goto done;
    }
    if (sampler_from_options(&g.sp, c, o, err)) goto done;
    if (o->dump_layers) {
        g.layers = (LayerDump){NULL, c->n_layers + 1, n_prompt, c->dim};
        g.layers.x = malloc((size_t)g.layers.stages * n_prompt * c->dim * sizeof(float));
        if (!g.layers.x) {
            fail(err, "out of memory for --dump-layers");
            goto done;
        }
        m->state.layer_hook = layer_hook;
        m->state.layer_hook_ctx = &g.layers;
    }
    Spec spec;
    if (o->draft_model || o->lookup) {
        if (spec_open(&spec, m, o->draft_model, o->draft_model ? o->draft_max : o->lookup, o->batch,
                      o->kv_cache, !o->no_repack, o->verbose, err))
            goto done;
        g.spec = &spec;
        if (!(hist = malloc(((size_t)c->seq_len + 1) * sizeof *hist))) {
            fail(err, "out of memory");
            goto done;
        }
        memcpy(hist, prompt, (size_t)n_prompt * sizeof *hist);
    }
    if (attn_wanted(&o->attn)) { /* room for every position fed: prompt + steps - 1, at most */
        int T = n_prompt + (o->steps > 1 ? o->steps - 1 : 0);
        if (attn_maps_init(&g.maps, &o->attn, m, n_prompt, T < c->seq_len ? T : c->seq_len, err))
            goto done;
        if (probe_start >= 0) {
            g.maps.probe_start = probe_start;
            g.maps.probe_len = PROBE_LEN;
        }
        g.maps.step_ms = g.step_ms;
        if (model_set_attn_hook(m, attn_hook, &g.maps, g.maps.cap, err)) goto done;
    }
    const double t0 = now_seconds();
    if (feed_prompt(&g, prompt, n_prompt, err)) goto done;
    const double t1 = now_seconds();
    if (decode(&g, hist, prompt[n_prompt - 1], n_prompt, err)) goto done;
    const double t2 = now_seconds();
    rc = report(&g, n_prompt, load_s, t1 - t0, t2 - t1, err);
done:
    if (g.spec) spec_free(g.spec);
    free(hist);
    model_set_attn_hook(m, NULL, NULL, 0, NULL);
    m->state.layer_hook = NULL;
    free(g.layers.x);
    attn_maps_free(&g.maps);
    free(g.step_ms);
    free(g.dump.data);
    sampler_free(&g.sp);
    return rc;
}

/* --attn-probe coref: the sentences of --probe-file (or the built-in set) through the model, the
   table of every head's score on stdout, then the other attention outputs for the first
   sentence. Nothing is generated. */
static int coref_probe(Model *m, const Options *o, Error *err) {
    char *text = NULL;
    size_t len = 0, bad;
    if (o->attn.probe_file) {
        FILE *f = fopen(o->attn.probe_file, "rb");
        if (!f) return fail(err, "cannot open '%s': %s", o->attn.probe_file, strerror(errno));
        text = read_all(f, o->attn.probe_file, &len, err);
        fclose(f);
        if (!text) return -1;
        if (!utf8_valid(text, len, &bad)) {
            free(text);
            return fail(err, "'%s' is not valid UTF-8 (byte %zu)", o->attn.probe_file, bad);
        }
    }
    CorefSentence *s = NULL;
    int n = 0, rc = -1;
    AttnMaps maps = {0};
    AttnCoref c = {0};
    if (attn_coref_sentences(text, len, &s, &n, err) ||
        attn_coref_run(m, &o->attn, s, n, &maps, &c, err))
        goto done;
    attn_coref_print(&c, m->config.n_heads, o->attn.probe_file ? o->attn.probe_file : "built in",
                     stdout);
    maps.coref = &c;
    attn_maps_pack(&maps);
    size_t shape[4] = {(size_t)maps.n_layers, (size_t)maps.n_heads, (size_t)maps.n, (size_t)maps.n};
    if (o->attn.dump && write_npy(o->attn.dump, maps.probs, shape, 4, err)) goto done;
    if (o->attn.dump_norms && write_attn_norms(&maps, o->attn.dump_norms, err)) goto done;
    rc = attn_report(&maps, &o->attn, m->tokenizer, o->model, 1, err);
done:
    attn_maps_free(&maps);
    attn_coref_free(&c);
    attn_coref_sentences_free(s, n);
    free(text);
    return rc;
}

/* Perplexity of the model on a text file, over the full context, sliding over long texts:
 * windows of L = context tokens start every S = L/2 tokens; each window runs from position 0
 * and scores only the tokens the previous window did not (token i predicted from the logits at
 * i - 1), so every token but the first is scored once, with at least L/2 tokens of context once
 * the text is longer than a window. perplexity = exp(mean negative log-likelihood). */
static int perplexity(Model *m, const char *path, int verbose, Error *err) {
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
    if (L < 2) { /* a window of one position predicts nothing */
        fail(err, "--ppl needs a context of at least 2 positions; this one is %d (see -c)", L);
        goto done;
    }
    double nll = 0.0, t0 = now_seconds();
    long scored = 0, fed = 0;
    int prev_end = 0;
    for (int b = 0; prev_end < n_ids; b += stride) {
        int end = b + L < n_ids ? b + L : n_ids;
        int first = prev_end > b + 1 ? prev_end : b + 1; /* first target scored */
        for (int i = b; i < end - 1; i += m->state.cap) {
            int n = end - 1 - i < m->state.cap ? end - 1 - i : m->state.cap;
            if (forward(m, ids + i, n, i - b, LOGITS_ALL, err) ||
                forward_check(m, ids + i, n, i - b, LOGITS_ALL, verbose, err))
                goto done;
            const float *logits = m->state.logits;
            for (int t = 0; t < n; t++) {
                int target = i + t + 1;
                if (target < first) continue;
                const float *lg = logits + (size_t)t * V;
                double max = lg[0], sum = 0.0;
                for (int v = 1; v < V; v++)
                    if (lg[v] > max) max = lg[v];
                for (int v = 0; v < V; v++) sum += exp(lg[v] - max);
                nll += log(sum) + max - lg[ids[target]];
                scored++;
            }
            fed += n;
        }
        prev_end = end;
    }
    if (scored == 0) {
        fail(err, "--ppl scored no token of '%s' (%d tokens, context %d)", path, n_ids, L);
        goto done;
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

/* ------------------------------------------------------------------------------------------ */
/* Chat */

/* Ctrl-C during a reply stops the reply, not the program. */
static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

/* The chat format: --chat-template, else the one recognized in the file's template. */
static int chat_setup(Chat *chat, Model *m, const Options *o, Error *err) {
    const ChatFormat *f;
    if (o->chat_template) {
        if (!(f = chat_format_by_name(o->chat_template)))
            return fail(err, "--chat-template: unknown format '%s' (known: %s)", o->chat_template,
                        chat_format_names());
    } else {
        Str t;
        int found = gguf_get_str(&m->file, "tokenizer.chat_template", &t, err);
        if (found < 0) return -1;
        if (!found)
            return fail(err,
                        "'%s' has no chat template (tokenizer.chat_template): name a format with "
                        "--chat-template (%s)",
                        o->model, chat_format_names());
        if (!(f = chat_detect(t.ptr, t.len)))
            return fail(err,
                        "the chat template of '%s' (%zu bytes, \"%.*s...\") is none of the formats "
                        "known here (%s): name one with --chat-template",
                        o->model, t.len, (int)(t.len < 48 ? t.len : 48), t.ptr,
                        chat_format_names());
    }
    if (o->verbose)
        fprintf(stderr, "chat format: %s (%s)\n", chat_format_name(f),
                o->chat_template ? "--chat-template" : "recognized in the file");
    return chat_init(chat, f, m->tokenizer, o->system, o->chat_date, o->no_think, err);
}

/* --chat --tokenize: the lines of stdin (or -i) alternate user and assistant turns, the last the
   user's; prints the ids of the conversation up to the assistant's next reply. */
static int chat_tokenize(Model *m, const Options *o, Error *err) {
    Chat chat;
    if (chat_setup(&chat, m, o, err)) return -1;
    size_t len = 0;
    char *text = NULL;
    if (o->prompt && strcmp(o->prompt, "-") != 0) {
        len = strlen(o->prompt);
        text = malloc(len + 1);
        if (text) memcpy(text, o->prompt, len + 1);
    } else {
        text = read_all(stdin, "the turns on stdin", &len, err);
        if (!text) return -1;
        char *p = realloc(text, len + 1);
        if (!p) {
            free(text);
            return fail(err, "out of memory");
        }
        p[len] = 0;
        text = p;
    }
    if (!text) return fail(err, "out of memory");
    const char *nul = memchr(text, 0, len);
    if (nul) {
        fail(err, "the turns hold a NUL byte (byte %zu): turns are text", (size_t)(nul - text));
        free(text);
        return -1;
    }
    size_t bad;
    ChatMessage *msgs = malloc((len + 1) * sizeof *msgs);
    IdVec ids = {0};
    int n = 0, rc = -1;
    if (!msgs) {
        fail(err, "out of memory");
        goto done;
    }
    if (!utf8_valid(text, len, &bad)) {
        fail(err, "the turns are not valid UTF-8 (byte %zu)", bad);
        goto done;
    }
    if (len && text[len - 1] == '\n') text[--len] = 0; /* the last line's end, not an empty turn */
    for (char *line = text;;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (nl && nl > line && nl[-1] == '\r') nl[-1] = 0;
        msgs[n] = (ChatMessage){n % 2 ? ROLE_ASSISTANT : ROLE_USER, line};
        n++;
        if (!nl) break;
        line = nl + 1;
    }
    if (chat_render(&chat, msgs, n, &ids, err)) goto done;
    for (int i = 0; i < ids.n; i++) printf("%s%d", i ? " " : "", ids.ids[i]);
    printf("\n");
    rc = 0;
done:
    idvec_free(&ids);
    free(msgs);
    free(text);
    return rc;
}

/* A conversation: every token in the KV cache, by position, and where each turn starts. */
typedef struct {
    Model *m;
    const Options *o;
    Chat chat;
    Sampler sp;
    IdVec hist;      /* hist.ids[p] is the token at position p of the cache */
    IdVec starts;    /* index in hist of each turn's start (after the system message) */
    int protect;     /* hist[0..protect) is never dropped: start, system, --keep */
    Matrix dump;     /* --dump-logits: the logits of every position fed */
    Spec *spec;      /* speculative decoding (-md, --lookup), or NULL */
    long fed_tokens; /* forward passes' positions, recomputation included */
} Conversation;

/* Runs ids[0..n) at the next positions; returns the logits of the last. record: new tokens (for
   the penalties and --dump-logits), not a recomputation after a context shift. */
static const float *feed(Conversation *cv, const int *ids, int n, int record, Error *err) {
    Model *m = cv->m;
    const float *logits = NULL;
    const int want_all = record && cv->o->dump_logits != NULL;
    for (int i = 0; i < n; i += m->state.cap) {
        int k = n - i < m->state.cap ? n - i : m->state.cap;
        const Logits want = want_all ? LOGITS_ALL : i + k == n ? LOGITS_LAST : LOGITS_NONE;
        if (forward(m, ids + i, k, cv->hist.n, want, err) ||
            forward_check(m, ids + i, k, cv->hist.n, want, cv->o->verbose, err))
            return NULL;
        logits = m->state.logits;
        if (want_all && matrix_append(&cv->dump, logits, (size_t)k, err)) return NULL;
        if (want_all) logits += (size_t)(k - 1) * m->config.vocab_size;
        if (idvec_push(&cv->hist, ids + i, k, err)) return NULL;
        for (int t = 0; t < k && record; t++) sampler_accept(&cv->sp, ids[i + t]);
        cv->fed_tokens += k;
    }
    return logits;
}

/* Room for `need` more positions. The policy: stop (an error naming the fix), or drop the oldest
 * whole turns after the protected start, before turn `current` (which stays), down to half the
 * unprotected context if that many can go, and recompute the keys and values of every token after
 * the cut at its new position. Recomputing, rather than re-rotating the cached keys, is exact for
 * any position encoding (RoPE, learned, sinusoidal) and costs one prompt pass over what follows
 * the cut. Returns 1 when the whole previous turn went too (with its end, still to be fed). */
static int make_room(Conversation *cv, int need, int current, Error *err) {
    const int L = cv->m->config.seq_len;
    if (cv->hist.n + need <= L) return 0;
    if (!cv->o->context_shift)
        return fail(err,
                    "context full: the conversation holds %d of the model's %d positions and "
                    "needs %d more (--context-shift drops the oldest turns)",
                    cv->hist.n, L, need);
    int first = 0; /* the oldest turn that may go */
    while (first < current && cv->starts.ids[first] < cv->protect) first++;
    const int target = cv->protect + (L - cv->protect) / 2;
    int last = first, n_after = cv->hist.n; /* drop turns first .. last - 1 */
    while (last < current && (n_after + need > L || n_after > target)) {
        last++;
        int end = last < cv->starts.n ? cv->starts.ids[last] : cv->hist.n;
        n_after = cv->hist.n - (end - cv->starts.ids[first]);
    }
    if (n_after + need > L)
        return fail(err,
                    "context full: the kept start (%d tokens) and the current turn (%d) leave no "
                    "room for %d more of the %d positions",
                    cv->protect, current < cv->starts.n ? cv->hist.n - cv->starts.ids[current] : 0,
                    need, L);
    const int cut = cv->starts.ids[first];
    const int end = last < cv->starts.n ? cv->starts.ids[last] : cv->hist.n;
    const int dropped = end - cut, moved = cv->hist.n - end;
    memmove(cv->hist.ids + cut, cv->hist.ids + end, (size_t)moved * sizeof(int));
    for (int i = last; i < cv->starts.n; i++)
        cv->starts.ids[first + i - last] = cv->starts.ids[i] - dropped;
    cv->starts.n -= last - first;
    cv->hist.n = cut;
    int *tail = malloc((size_t)(moved ? moved : 1) * sizeof *tail);
    if (!tail) return fail(err, "out of memory (context shift)");
    memcpy(tail, cv->hist.ids + cut, (size_t)moved * sizeof *tail);
    const int ok = moved == 0 || feed(cv, tail, moved, 0, err) != NULL;
    free(tail);
    if (!ok) return -1;
    fprintf(stderr, "[context shift: dropped tokens %d..%d (%d turns), recomputed %d, cache %d]\n",
            cut, end - 1, last - first, moved, cv->hist.n);
    return moved == 0; /* the cut reached the end: the last reply's closing goes with it */
}

/* Reads one line of the user's (without its newline); 0 at the end of input or /exit. */
static int read_turn(char **line, size_t *cap, int tty, Error *err) {
    for (;;) {
        if (tty) fputs("> ", stderr);
        errno = 0;
        ssize_t n = getline(line, cap, stdin);
        if (n < 0 && errno == EINTR) { /* Ctrl-C at the prompt: a new prompt */
            clearerr(stdin);
            interrupted = 0;
            if (tty) fputc('\n', stderr);
            continue;
        }
        if (n < 0) {
            if (ferror(stdin))
                return fail(err, "error reading the user's turn: %s", strerror(errno));
            if (tty) fputc('\n', stderr);
            return 0;
        }
        while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = 0;
        const char *nul = memchr(*line, 0, (size_t)n);
        if (nul)
            return fail(err, "the user's turn holds a NUL byte (byte %zu): turns are text",
                        (size_t)(nul - *line));
        size_t bad;
        if (!utf8_valid(*line, (size_t)n, &bad))
            return fail(err, "the user's turn is not valid UTF-8 (byte %zu)", bad);
        if (strcmp(*line, "/exit") == 0) return 0;
        if (n > 0) return 1;
    }
}

static void print_ids(const char *what, const int *ids, int n) {
    fprintf(stderr, " %s", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
}

/* Feeds next, just sampled, with a draft checked in the same pass (spec_step): the accepted
   tokens go to queue (already in the cache and hist, not yet in the penalty window), the token
   sampled after them to *pending. Returns how many were accepted, or -1. */
static int feed_spec(Conversation *cv, int next, int max, int *queue, int *pending, Error *err) {
    if (idvec_push(&cv->hist, &next, 1, err)) return -1;
    sampler_accept(&cv->sp, next);
    const int j = spec_step(cv->spec, &cv->sp, cv->hist.ids, cv->hist.n, max, queue, pending, err);
    if (j < 0 || idvec_push(&cv->hist, queue, j, err)) return -1;
    cv->fed_tokens += 1 + j;
    return j;
}

/* One reply: samples until the end of the turn, a stop string, -n tokens, Ctrl-C or a full
   context; streams it to stdout. Every token printed is fed, the -n-th too, so that the next turn
   follows the reply the user saw. With speculation, drafts accepted (queue) are in the cache
   before they are printed: those not printed leave it again. */
static int reply(Conversation *cv, const float *logits, Error *err) {
    Model *m = cv->m;
    const Options *o = cv->o;
    const int eos = tokenizer_eos(m->tokenizer), eot = tokenizer_eot(m->tokenizer);
    Output out;
    if (output_init(&out, m->tokenizer, o, cv->hist.ids[cv->hist.n - 1], err)) return -1;
    int rc = -1, stopped = 0, fed = 0; /* the reply's tokens fed: the last `fed` in the cache */
    int queue[SPEC_MAX], qn = 0, qi = 0, pending = -1;
    for (int generated = 0; generated < o->steps && !interrupted; generated++) {
        const int in_cache = qi < qn; /* an accepted draft */
        int next = in_cache       ? queue[qi++]
                   : pending >= 0 ? pending
                                  : sampler_sample(&cv->sp, logits);
        if (!in_cache) pending = -1;
        if (next == cv->chat.eot || next == eos || next == eot) { /* the file's too */
            qi -= in_cache;
            break;
        }
        if ((stopped = output_push(&out, next, err)) != 0) {
            qi -= in_cache;
            break;
        }
        fed++;
        if (in_cache) {
            sampler_accept(&cv->sp, next);
            continue;
        }
        const int room = m->config.seq_len - cv->hist.n - 1, left = o->steps - generated - 1;
        if (cv->spec && room > 0 && left > 0) {
            if ((qn = feed_spec(cv, next, room < left ? room : left, queue, &pending, err)) < 0)
                goto done;
            qi = 0;
            continue;
        }
        if (make_room(cv, 1, cv->starts.n - 1, err) < 0) goto done;
        if (!(logits = feed(cv, &next, 1, 1, err))) goto done;
    }
    cv->hist.n -= qn - qi; /* drafts in the cache not printed */
    if (stopped >= 0 && !stopped && output_finish(&out, err) < 0) goto done;
    fputc('\n', stdout);
    fflush(stdout);
    if (interrupted) fprintf(stderr, "[interrupted]\n");
    interrupted = 0;
    if (o->verbose) print_ids("reply", cv->hist.ids + cv->hist.n - fed, fed);
    rc = stopped < 0 ? -1 : 0;
done:
    output_free(&out);
    return rc;
}

/* The conversation: a turn from the user, its tokens fed after everything already in the cache
   (a turn costs its own tokens, whatever the history), a reply; until /exit or the end of input.
   stdin need not be a terminal: then each line is a turn. */
static int chat_loop(Model *m, const Options *o, Error *err) {
    Conversation cv = {.m = m, .o = o};
    cv.dump = (Matrix){NULL, 0, (size_t)m->config.vocab_size, 0};
    if (chat_setup(&cv.chat, m, o, err) || sampler_from_options(&cv.sp, &m->config, o, err))
        return -1;
    Spec spec;
    if (o->draft_model || o->lookup) {
        if (spec_open(&spec, m, o->draft_model, o->draft_model ? o->draft_max : o->lookup, o->batch,
                      o->kv_cache, !o->no_repack, o->verbose, err)) {
            sampler_free(&cv.sp);
            return -1;
        }
        cv.spec = &spec;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint; /* no SA_RESTART: Ctrl-C interrupts the read of a turn */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    const int tty = isatty(STDIN_FILENO);
    if (tty)
        fprintf(stderr, "chat (%s format): /exit or Ctrl-D ends, Ctrl-C stops a reply\n",
                chat_format_name(cv.chat.format));
    char *line = NULL;
    size_t line_cap = 0;
    IdVec turn = {0};
    int rc = -1, more;
    const char *first = o->prompt && strcmp(o->prompt, "-") != 0 ? o->prompt : NULL;
    for (int k = 0;; k++) {
        if (first && k == 0) {
            more = 1;
        } else if ((more = read_turn(&line, &line_cap, tty, err)) < 0) {
            goto done;
        }
        if (!more) break;
        int turn_start;
        turn.n = 0;
        if (chat_turn(&cv.chat, k == 0, first && k == 0 ? first : line, &turn, &turn_start, err))
            goto done;
        int skip = 0;
        if (k > 0) { /* room: the previous reply's end goes if its turn does */
            int r = make_room(&cv, turn.n + 1, cv.starts.n, err);
            if (r < 0) goto done;
            if (r == 1) {
                skip = turn_start;
                if (make_room(&cv, turn.n - skip + 1, cv.starts.n, err) < 0) goto done;
            }
        } else if (turn.n + 1 > m->config.seq_len) {
            fail(err, "the first turn is %d tokens; the model's context is %d", turn.n,
                 m->config.seq_len);
            goto done;
        }
        const int before = cv.hist.n;
        if (idvec_push(&cv.starts, (int[]){before + turn_start - skip}, 1, err)) goto done;
        if (k == 0) cv.protect = turn_start + o->keep;
        const long fed_before = cv.fed_tokens;
        const float *logits = feed(&cv, turn.ids + skip, turn.n - skip, 1, err);
        if (!logits) goto done;
        if (o->verbose) {
            fprintf(stderr, "[turn %d: fed %ld tokens (the turn's own), cache %d of %d]", k + 1,
                    cv.fed_tokens - fed_before, cv.hist.n, m->config.seq_len);
            print_ids("fed", turn.ids + skip, turn.n - skip);
            fputc('\n', stderr);
        }
        if (reply(&cv, logits, err)) goto done;
        if (o->verbose) fprintf(stderr, "\n");
    }
    if (o->verbose) {
        print_ids("[cache:", cv.hist.ids, cv.hist.n);
        fprintf(stderr, "]\n");
    }
    if (o->dump_logits) {
        size_t shape[2] = {cv.dump.rows, cv.dump.cols};
        if (write_npy(o->dump_logits, cv.dump.data, shape, 2, err)) goto done;
    }
    if (o->verbose && cv.spec) spec_print_stats(cv.spec, stderr);
    rc = 0;
done:
    if (rc && strncmp(err->msg, "context full", 12) == 0) { /* the default policy: a message */
        fprintf(stderr, "[%s]\n", err->msg);
        rc = 0;
    }
    free(line);
    idvec_free(&turn);
    idvec_free(&cv.hist);
    idvec_free(&cv.starts);
    free(cv.dump.data);
    sampler_free(&cv.sp);
    if (cv.spec) spec_free(cv.spec);
    return rc;
}

static int run_chat(const Options *o, Error *err) {
    Model m;
    if (model_load_with(&m, o->model, o->tokenizer, o->batch, o->ctx, o->kv_cache, err)) return -1;
    if (!o->no_repack && model_repack(&m, err)) {
        model_free(&m);
        return -1;
    }
    int rc = -1;
    if (m.config.vocab_only && !o->tokenize)
        fail(err, "'%s' holds a vocabulary and no weights: only --tokenize works on it", o->model);
    else
        rc = o->tokenize ? chat_tokenize(&m, o, err) : chat_loop(&m, o, err);
    model_free(&m);
    return rc;
}

static int run(const Options *o, Error *err) {
    if (o->chat) return run_chat(o, err);
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
    if (model_load_with(&m, o->model, o->tokenizer, o->batch, o->ctx, o->kv_cache, err)) {
        free(stdin_text);
        return -1;
    }
    if (!o->no_repack && model_repack(&m, err)) goto done;
    if (m.config.vocab_only && !o->tokenize) {
        fail(err, "'%s' holds a vocabulary and no weights: only --tokenize works on it", o->model);
        goto done;
    }
    if (o->verbose && !m.config.vocab_only) {
        print_config(&m.config, stderr);
        attn_print_kv_cache(&m.config, stderr);
    }
    if (o->ppl) {
        rc = perplexity(&m, o->ppl, o->verbose, err);
        goto done;
    }
    if (o->attn.probe && strcmp(o->attn.probe, "coref") == 0) {
        rc = coref_probe(&m, o, err);
        goto done;
    }
    int probe_start = -1;
    if (o->attn.probe) {
        if (attn_probe_tokens(&m, o->attn.probe, &ids, &n_ids, &probe_start, err)) goto done;
    } else if (tokenizer_encode_special(m.tokenizer, text, len, o->parse_special, &ids, &n_ids,
                                        err)) {
        goto done;
    }
    if (o->tokenize) {
        for (int i = 0; i < n_ids; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
        rc = 0;
        goto done;
    }
    if (n_ids == 0) { /* nothing to condition on: start from BOS when the model has one */
        int bos = tokenizer_bos(m.tokenizer);
        if (bos < 0) {
            fail(err, "the prompt is empty and the model has no BOS token to start from");
            goto done;
        }
        free(ids);
        ids = malloc(sizeof *ids);
        if (!ids) {
            fail(err, "out of memory");
            goto done;
        }
        ids[0] = bos;
        n_ids = 1;
    }
    if (n_ids > m.config.seq_len) {
        fail(err,
             "the prompt is %d tokens, longer than the context of %d (the model's is %d; see -c)",
             n_ids, m.config.seq_len, m.config.ctx_train);
        goto done;
    }
    rc = generate(&m, o, ids, n_ids, probe_start, now_seconds() - t_load, err);
done:
    free(ids);
    free(stdin_text);
    model_free(&m);
    return rc;
}

int main(int argc, char **argv) {
    Options o;
    Error err = {{0}};
    if (cli_parse(&o, argc, argv, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    if (o.help) {
        cli_usage(stdout);
        return 0;
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
