/* run.c: the program. Reads the command line (cli.c), loads the model (model.c), then generates
 * text, measures perplexity or prints token ids.
 *
 *   ./run MODEL.gguf -i "prompt"      generate text (stdout), timings (stderr)
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "attn_views.h"
#include "cli.h"
#include "model.h"
#include "sampler.h"

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

/* Runs the prompt and the generation loop; text to stdout, timings to stderr. probe_start >= 0:
   the prompt is the induction probe, its passage starting there. */
static int generate(Model *m, const Options *o, const int *prompt, int n_prompt, int probe_start,
                    double load_s, Error *err) {
    const Config *c = &m->config;
    const int eos = tokenizer_eos(m->tokenizer);
    Matrix dump = {NULL, 0, (size_t)c->vocab_size, 0};
    Sampler sp = {0};
    size_t cap = 2 * ((size_t)tokenizer_max_token_len(m->tokenizer) + 8);
    char *text = malloc(cap);
    AttnMaps maps = {0};
    /* -v: the time of each generated token's forward pass, by position (its KV length) */
    double *step_ms = o->verbose ? calloc((size_t)c->seq_len, sizeof(double)) : NULL;
    int rc = -1;
    if (!text || (o->verbose && !step_ms)) {
        fail(err, "out of memory");
        goto done;
    }
    if (sampler_init(&sp, c->vocab_size, o->temperature, o->top_p, o->top_k, o->seed, err))
        goto done;
    if (attn_wanted(&o->attn)) { /* room for every position fed: prompt + steps - 1, at most */
        int T = n_prompt + (o->steps > 1 ? o->steps - 1 : 0);
        if (attn_maps_init(&maps, &o->attn, m, n_prompt, T < c->seq_len ? T : c->seq_len, err))
            goto done;
        if (probe_start >= 0) {
            maps.probe_start = probe_start;
            maps.probe_len = PROBE_LEN;
        }
        maps.step_ms = step_ms;
        if (model_set_attn_hook(m, attn_hook, &maps, maps.cap, err)) goto done;
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
    dec.prev_token = prompt[n_prompt - 1]; /* SentencePiece drops a leading space only after BOS */
    int pos = n_prompt, generated = 0, stop_reason = 0;
    while (generated < o->steps) {
        int next = sampler_sample(&sp, logits);
        generated++;
        if (next == eos) {
            stop_reason = 1;
            break;
        }
        size_t len = decoder_push(m->tokenizer, &dec, next, text, cap);
        fwrite(text, 1, len, stdout);
        fflush(stdout);
        if (generated == o->steps) break;
        if (pos == c->seq_len) {
            stop_reason = 2;
            break;
        }
        double ts = step_ms ? now_seconds() : 0.0;
        logits = forward(m, &next, 1, pos, 0);
        if (step_ms) step_ms[pos] = (now_seconds() - ts) * 1e3;
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
    fprintf(stderr, "load: %.1f MB mapped and touched in %.0f ms\n", m->file.size / 1e6,
            load_s * 1e3);
    fprintf(stderr, "prompt: %d tokens, %.1f tok/s | generated: %d tokens, %.1f tok/s\n", n_prompt,
            n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9), generated,
            generated / (t2 - t1 > 0 ? t2 - t1 : 1e-9));
    if (o->dump_logits) {
        size_t shape[2] = {dump.rows, dump.cols};
        if (write_npy(o->dump_logits, dump.data, shape, 2, err)) goto done;
    }
    if (o->verbose) attn_print_cost(c, n_prompt, generated, step_ms, maps.probs != NULL, stderr);
    if (maps.probs) {
        attn_maps_pack(&maps);
        size_t shape[4] = {(size_t)c->n_layers, (size_t)c->n_heads, (size_t)maps.n, (size_t)maps.n};
        if (o->attn.dump && write_npy(o->attn.dump, maps.probs, shape, 4, err)) goto done;
        if ((o->attn.dump_norms || o->attn.html) && attn_value_norms(&maps, err)) goto done;
        if (o->attn.dump_norms && write_attn_norms(&maps, o->attn.dump_norms, err)) goto done;
        if (attn_report(&maps, &o->attn, m->tokenizer, o->model, generated > 0, err)) goto done;
    }
    rc = 0;
done:
    model_set_attn_hook(m, NULL, NULL, 0, NULL);
    attn_maps_free(&maps);
    free(step_ms);
    free(dump.data);
    sampler_free(&sp);
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
        int first = prev_end > b + 1 ? prev_end : b + 1; /* first target scored */
        for (int i = b; i < end - 1; i += m->state.cap) {
            int n = end - 1 - i < m->state.cap ? end - 1 - i : m->state.cap;
            const float *logits = forward(m, ids + i, n, i - b, 1);
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
    if (m.config.vocab_only && !o->tokenize) {
        fail(err, "'%s' holds a vocabulary and no weights: only --tokenize works on it", o->model);
        goto done;
    }
    if (o->verbose && !m.config.vocab_only) {
        print_config(&m.config, stderr);
        attn_print_kv_cache(&m.config, stderr);
    }
    if (o->ppl) {
        rc = perplexity(&m, o->ppl, err);
        goto done;
    }
    int probe_start = -1;
    if (o->attn.probe) {
        if (attn_probe_tokens(&m, o->attn.probe, &ids, &n_ids, &probe_start, err)) goto done;
    } else if (tokenizer_encode(m.tokenizer, text, len, &ids, &n_ids, err)) {
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
        fail(err, "the prompt is %d tokens, longer than the model's context of %d", n_ids,
             m.config.seq_len);
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
