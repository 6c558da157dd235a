/* spec.c: speculative decoding: proposing drafts (a draft model, prompt lookup) and checking them
 * with the target in one forward pass (spec.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "spec.h"

int spec_open(Spec *s, Model *target, const char *draft_path, int max, int batch, KvType kv,
              int repack, int verbose, Error *err) {
    memset(s, 0, sizeof *s);
    s->target = target;
    s->max = max < SPEC_MAX ? max : SPEC_MAX;
    s->verbose = verbose;
    if (!draft_path) return 0;
    /* the draft's own context (capped as model_load caps it): past it, steps go undrafted */
    if (model_load_with(&s->draft, draft_path, NULL, batch, 0, kv, err)) return -1;
    s->has_draft = 1;
    if (repack && model_repack(&s->draft, err)) goto fail;
    if (s->draft.config.vocab_only) {
        fail(err, "the draft model '%s' holds a vocabulary and no weights", draft_path);
        goto fail;
    }
    const int same = tokenizer_same_vocab(target->tokenizer, s->draft.tokenizer);
    if (same == 0 || s->draft.config.vocab_size != target->config.vocab_size) {
        fail(err,
             "the draft model '%s' has a vocabulary of %d tokens, the model %d: a draft must "
             "have the same vocabulary (-md)",
             draft_path, s->draft.config.vocab_size, target->config.vocab_size);
        goto fail;
    }
    if (same > 0) {
        fail(err,
             "the draft model '%s' has another vocabulary (token %d differs): a draft must have "
             "the same vocabulary (-md)",
             draft_path, same - 1);
        goto fail;
    }
    s->draft_hist = malloc((size_t)s->draft.config.seq_len * sizeof *s->draft_hist);
    if (!s->draft_hist) {
        fail(err, "out of memory (draft model)");
        goto fail;
    }
    return 0;
fail:
    spec_free(s);
    return -1;
}

void spec_free(Spec *s) {
    if (s->has_draft) model_free(&s->draft);
    s->has_draft = 0;
    free(s->draft_hist);
    free(s->window);
    s->draft_hist = s->window = NULL;
}

/* Prompt lookup: the most recent earlier occurrence of the last g tokens (g = LOOKUP_NGRAM, then
   shorter), and up to max of the tokens that followed it. */
static int lookup(const int *hist, int n, int max, int *out) {
    for (int g = LOOKUP_NGRAM; g >= 1; g--) {
        if (n < g + 1) continue;
        const int *key = hist + n - g;
        for (int i = n - g - 1; i >= 0; i--) {
            if (memcmp(hist + i, key, (size_t)g * sizeof *key) != 0) continue;
            int k = 0;
            while (k < max && i + g + k < n) {
                out[k] = hist[i + g + k];
                k++;
            }
            return k;
        }
    }
    return 0;
}

/* The draft model, greedily: its cache first catches up with hist (it keeps the longest prefix
   it already holds: a rollback or a context shift needs nothing more), then max tokens. */
static int draft_propose(Spec *s, const int *hist, int n, int max, int *out, Error *err) {
    Model *d = &s->draft;
    const int L = d->config.seq_len, V = d->config.vocab_size;
    if (max > L - n + 1) max = L - n + 1; /* the last draft is never fed */
    if (max <= 0) return 0;
    int keep = 0;
    while (keep < s->draft_n && keep < n - 1 && s->draft_hist[keep] == hist[keep]) keep++;
    for (int i = keep; i < n; i += d->state.cap) {
        const int k = n - i < d->state.cap ? n - i : d->state.cap;
        if (forward(d, hist + i, k, i, i + k == n ? LOGITS_LAST : LOGITS_NONE, err)) return -1;
        memcpy(s->draft_hist + i, hist + i, (size_t)k * sizeof *hist);
    }
    s->draft_n = n;
    for (int j = 0;; j++) {
        out[j] = sampler_argmax(d->state.logits, V);
        if (j + 1 == max) return max;
        if (forward(d, out + j, 1, n + j, LOGITS_LAST, err)) return -1;
        s->draft_hist[n + j] = out[j];
        s->draft_n = n + j + 1;
    }
}

int spec_propose(Spec *s, const int *hist, int n, int max, int *out, Error *err) {
    if (max > s->max) max = s->max;
    if (max <= 0 || n < 1) return 0;
    return s->has_draft ? draft_propose(s, hist, n, max, out, err) : lookup(hist, n, max, out);
}

/* The sampler's penalty window, saved before a check and put back after it. */
static int window_save(Spec *s, const Sampler *sp, Error *err) {
    if (!sp->last_n) return 0;
    if (s->window_cap < sp->last_n) {
        int *w = realloc(s->window, (size_t)sp->last_n * sizeof *w);
        if (!w) return fail(err, "out of memory (speculative decoding)");
        s->window = w;
        s->window_cap = sp->last_n;
    }
    memcpy(s->window, sp->recent, (size_t)sp->last_n * sizeof *s->window);
    return 0;
}

static void window_restore(const Spec *s, Sampler *sp, int n_recent, int next_recent) {
    if (!sp->last_n) return;
    memcpy(sp->recent, s->window, (size_t)sp->last_n * sizeof *s->window);
    sp->n_recent = n_recent;
    sp->next_recent = next_recent;
}

/* Row t of the logits after a pass over ids at pos0, checked for non-finite numbers as plain
   decoding checks the positions it computes (rows past a rejection are never looked at). */
static const float *row(Spec *s, int t, int pos0, Error *err) {
    Model *m = s->target;
    const size_t V = (size_t)m->config.vocab_size;
    const float *r = m->state.logits + t * V;
    for (size_t i = 0; i < V; i++)
        if (!isfinite(r[i])) {
            forward_check(m, s->ids, t + 1, pos0, LOGITS_ALL, s->verbose, err);
            return NULL;
        }
    return r;
}

int spec_step(Spec *s, Sampler *sp, const int *hist, int n, int max, int *out, int *next,
              Error *err) {
    Model *m = s->target;
    const int pos0 = n - 1;
    if (max > m->config.seq_len - n) max = m->config.seq_len - n;
    if (max > m->state.cap - 1) max = m->state.cap - 1;
    const int k = spec_propose(s, hist, n, max, s->ids + 1, err);
    if (k < 0) return -1;
    s->ids[0] = hist[n - 1];
    if (forward(m, s->ids, k + 1, pos0, k ? LOGITS_ALL : LOGITS_LAST, err)) return -1;
    if (window_save(s, sp, err)) return -1;
    const int n_recent = sp->n_recent, next_recent = sp->next_recent;
    int j = 0;
    for (;; j++) {
        const float *logits = row(s, j, pos0, err);
        if (!logits) return -1;
        if (j == k) {
            *next = sampler_sample(sp, logits);
            break;
        }
        if (!sampler_verify(sp, logits, s->ids[1 + j], next)) break;
        out[j] = s->ids[1 + j];
        sampler_accept(sp, out[j]);
    }
    window_restore(s, sp, n_recent, next_recent);
    s->steps++;
    s->drafted += k;
    s->accepted += j;
    return j;
}

void spec_print_stats(const Spec *s, FILE *f) {
    fprintf(f,
            "speculative (%s): %ld steps, drafted %ld tokens, accepted %ld (%.1f%%), %.2f tokens "
            "per step\n",
            s->has_draft ? "draft model" : "prompt lookup", s->steps, s->drafted, s->accepted,
            s->drafted ? 100.0 * s->accepted / s->drafted : 0.0,
            s->steps ? (double)(s->steps + s->accepted) / s->steps : 0.0);
}
