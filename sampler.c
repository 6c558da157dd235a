/* sampler.c: penalties, temperature, top-k, top-p, min-p and the draw, each a step over
 * candidates, and stop strings over the streamed text (sampler.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "kernels.h" /* exp_fast */
#include "sampler.h"

_Static_assert(sizeof(Candidate) <= HEAP_MAX_ELEM, "candidates fit heap.h's elements");

static uint32_t random_u32(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

static float random_f32(uint64_t *state) { return (random_u32(state) >> 8) / 16777216.0f; }

int sampler_init(Sampler *s, int vocab_size, float temperature, float top_p, int top_k,
                 uint64_t seed, Error *err) {
    *s = (Sampler){.vocab_size = vocab_size,
                   .temperature = temperature,
                   .top_p = top_p,
                   .top_k = top_k,
                   .rng = seed * 2654435761u + 1,
                   .repeat = 1.0f};
    s->cand = malloc((size_t)vocab_size * sizeof *s->cand);
    s->probs = malloc((size_t)vocab_size * sizeof *s->probs);
    if (!s->cand || !s->probs) {
        sampler_free(s);
        return fail(err, "out of memory for the sampler (%d tokens)", vocab_size);
    }
    return 0;
}

void sampler_free(Sampler *s) {
    free(s->cand);
    free(s->probs);
    free(s->recent);
    free(s->penalized);
    free(s->counts);
    s->cand = NULL;
    s->probs = NULL;
    s->recent = s->counts = NULL;
    s->penalized = NULL;
}

int sampler_set_penalties(Sampler *s, int last_n, float repeat, float frequency, float presence,
                          Error *err) {
    if (!(repeat > 0.0f) || !isfinite(repeat))
        return fail(err, "the repeat penalty must be a finite number above 0 (1 = off), got %g",
                    repeat);
    if (!isfinite(frequency) || !isfinite(presence))
        return fail(err, "the frequency and presence penalties must be finite, got %g and %g",
                    frequency, presence);
    if (last_n <= 0 || (repeat == 1.0f && frequency == 0.0f && presence == 0.0f)) return 0;
    s->recent = malloc((size_t)last_n * sizeof *s->recent);
    s->penalized = malloc((size_t)s->vocab_size * sizeof *s->penalized);
    s->counts = calloc((size_t)s->vocab_size, sizeof *s->counts);
    if (!s->recent || !s->penalized || !s->counts)
        return fail(err, "out of memory for the penalties (%d tokens)", last_n);
    s->last_n = last_n;
    s->repeat = repeat;
    s->frequency = frequency;
    s->presence = presence;
    return 0;
}

void sampler_accept(Sampler *s, int token) {
    if (!s->last_n) return;
    s->recent[s->next_recent] = token;
    s->next_recent = (s->next_recent + 1) % s->last_n;
    if (s->n_recent < s->last_n) s->n_recent++;
}

void sampler_penalties(float *logits, int n, const int *recent, int n_recent, float repeat,
                       float frequency, float presence, int *counts) {
    for (int i = 0; i < n_recent; i++)
        if (recent[i] >= 0 && recent[i] < n) counts[recent[i]]++;
    for (int i = 0; i < n_recent; i++) {
        const int t = recent[i];
        if (t < 0 || t >= n || counts[t] == 0) continue; /* done at its first occurrence */
        float *l = &logits[t];
        *l = *l > 0.0f ? *l / repeat : *l * repeat;
        *l -= (float)counts[t] * frequency + presence;
        counts[t] = 0;
    }
}

/* What `best = 0; for each i: if (v[i] > v[best] || (v[best] is NaN and v[i] is not)) best = i`
   returns (the lowest index wins a tie; NaN never wins; all NaN gives 0), in two passes: the
   largest value, kept in ARGMAX_LANES independent lanes that start at -inf (which a NaN never
   replaces), then the first index holding it. The one-pass loop waits on the load of v[best] at
   every element: ~60 us for 32,000 logits, 2% of a 110M Q4_K token (Zen 4). */
#define ARGMAX_LANES 16
int sampler_argmax(const float *v, int n) {
    if (n <= 0) return 0;
    float lane[ARGMAX_LANES], m = -INFINITY;
    for (int u = 0; u < ARGMAX_LANES; u++) lane[u] = -INFINITY;
    int i = 0;
    for (; i + ARGMAX_LANES <= n; i += ARGMAX_LANES)
#pragma omp simd
        for (int u = 0; u < ARGMAX_LANES; u++) lane[u] = v[i + u] > lane[u] ? v[i + u] : lane[u];
    for (; i < n; i++) m = v[i] > m ? v[i] : m;
    for (int u = 0; u < ARGMAX_LANES; u++) m = lane[u] > m ? lane[u] : m;
    for (i = 0; i < n; i++) /* -0 == +0: the first of them, as the one-pass loop keeps it */
        if (v[i] == m) return i;
    return 0; /* every value is NaN */
}

/* Finite max and 1 / temperature (sampler_sample sees to it) keep every exponent <= 0 and the
   largest term 1, so the sum is at least 1; a NaN logit gets 0. */
void sampler_softmax(float *probs, const float *logits, int n, float temperature) {
    const float max = logits[sampler_argmax(logits, n)], inv_t = 1.0f / temperature;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) {
        const float e = exp_fast((logits[i] - max) * inv_t);
        probs[i] = logits[i] == logits[i] ? e : 0.0f;
        sum += probs[i];
    }
    const float inv_sum = 1.0f / sum;
#pragma omp simd
    for (int i = 0; i < n; i++) probs[i] *= inv_sum;
}

/* The order of candidates: higher probability first, NaN below everything (as -inf), then the
   lower index: a total order, as qsort and the heap need. */
static int better(Candidate x, Candidate y) {
    const float a = x.prob == x.prob ? x.prob : -INFINITY,
                b = y.prob == y.prob ? y.prob : -INFINITY;
    return a != b ? a > b : x.index < y.index;
}

/* Heap order for the k best: the worst candidate at the root, where a newcomer replaces it. */
static int worse(const void *a, const void *b) {
    return better(*(const Candidate *)b, *(const Candidate *)a);
}

static int compare_desc(const void *a, const void *b) {
    const Candidate *x = a, *y = b;
    return better(*x, *y) ? -1 : better(*y, *x) ? 1 : 0;
}

/* One pass keeping a heap of the k best so far, then a sort of those k alone (a full sort of a
 * 32,000-token vocabulary for every token cost more than the forward pass of a small model). */
int sampler_top_k(Candidate *cand, const float *probs, int n, int k) {
    for (int i = 0; i < k; i++) cand[i] = (Candidate){probs[i], i};
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(cand, sizeof *cand, k, i, worse);
    for (int i = k; i < n; i++) {
        const Candidate c = {probs[i], i};
        if (better(c, cand[0])) {
            cand[0] = c;
            heap_sift_down(cand, sizeof *cand, k, 0, worse);
        }
    }
    qsort(cand, (size_t)k, sizeof *cand, compare_desc);
    return k;
}

/* Why the cutoff is safe: a token x other than the most probable is needed only when the tokens
 * before it hold less than p, so x and the tokens after it hold more than 1 - p. There are at
 * most n - 1 of those, none above prob(x), so prob(x) > (1 - p) / (n - 1). The most probable
 * token is always needed, and kept even when it is below the cutoff (flat logits and a small p). */
int sampler_top_p_candidates(Candidate *cand, const float *probs, int n, float p) {
    const float cutoff = (1.0f - p) / (float)(n - 1 > 0 ? n - 1 : 1);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (probs[i] >= cutoff) cand[kept++] = (Candidate){probs[i], i};
    if (kept == 0) { /* any token kept would have been the most probable among them */
        const int best = sampler_argmax(probs, n);
        cand[kept++] = (Candidate){probs[best], best};
    }
    qsort(cand, (size_t)kept, sizeof *cand, compare_desc);
    return kept;
}

int sampler_top_p(const Candidate *cand, int kept, float p) {
    float cum = 0.0f;
    for (int i = 0; i < kept; i++) {
        cum += cand[i].prob;
        if (cum >= p) return i + 1;
    }
    return kept; /* rounding kept the sum below p: everything */
}

int sampler_min_p_candidates(Candidate *cand, const float *probs, const float *logits, int n,
                             float min_p) {
    const int best = sampler_argmax(logits, n);
    const float cut = logits[best] + logf(min_p);
    int kept = 0;
    for (int i = 0; i < n; i++) /* >=: test_sampler's min-p on the cut fails with > */
        if (logits[i] >= cut) cand[kept++] = (Candidate){probs[i], i};
    if (kept == 0) cand[kept++] = (Candidate){probs[best], best}; /* the cut is NaN */
    qsort(cand, (size_t)kept, sizeof *cand, compare_desc);
    return kept;
}

int sampler_min_p(const Candidate *cand, int kept, const float *logits, float min_p) {
    if (kept <= 0) return 0;
    const float cut = logits[cand[0].index] + logf(min_p);
    int i = 1;
    while (i < kept && logits[cand[i].index] >= cut) i++;
    return i;
}

int sampler_draw(const Candidate *cand, int kept, float u) {
    if (kept <= 0) return 0;
    float total = 0.0f;
    for (int i = 0; i < kept; i++) total += cand[i].prob;
    const float r = u * total;
    float cum = 0.0f;
    for (int i = 0; i < kept; i++) {
        cum += cand[i].prob;
        if (r < cum) return cand[i].index;
    }
    return cand[kept - 1].index; /* rounding left r at the very top */
}

/* The candidates sampler_sample draws from, into s->cand[0..kept), their probabilities not yet
   renormalized; returns kept, or 0 for a greedy choice, *best (the argmax of the penalized
   logits) then being the token. */
static int candidates(Sampler *s, const float *logits, int *best) {
    const int n = s->vocab_size;
    if (s->last_n) {
        memcpy(s->penalized, logits, (size_t)n * sizeof *logits);
        sampler_penalties(s->penalized, n, s->recent, s->n_recent, s->repeat, s->frequency,
                          s->presence, s->counts);
        logits = s->penalized;
    }
    *best = sampler_argmax(logits, n);
    /* greedy: at temperature 0, when 1/T overflows (T < ~3e-39), and when the largest logit is
       not a number (+inf, or every logit -inf or NaN), where the softmax has no meaning */
    if (s->temperature == 0.0f || !isfinite(1.0f / s->temperature) || !isfinite(logits[*best]))
        return 0;
    sampler_softmax(s->probs, logits, n, s->temperature);
    int kept;
    if (s->top_k > 0 && s->top_k < n) {
        kept = sampler_top_k(s->cand, s->probs, n, s->top_k);
    } else if (s->top_p < 1.0f) {
        kept = sampler_top_p_candidates(s->cand, s->probs, n, s->top_p);
    } else if (s->min_p > 0.0f) {
        kept = sampler_min_p_candidates(s->cand, s->probs, logits, n, s->min_p);
    } else {
        for (int i = 0; i < n; i++) s->cand[i] = (Candidate){s->probs[i], i};
        kept = n;
    }
    if (s->top_p < 1.0f) kept = sampler_top_p(s->cand, kept, s->top_p);
    if (s->min_p > 0.0f) kept = sampler_min_p(s->cand, kept, logits, s->min_p);
    return kept;
}

int sampler_sample(Sampler *s, const float *logits) {
    int best;
    const int kept = candidates(s, logits, &best);
    if (kept == 0) return best;
    return sampler_draw(s->cand, kept, random_f32(&s->rng));
}

int sampler_verify(Sampler *s, const float *logits, int draft, int *token) {
    int best;
    const int kept = candidates(s, logits, &best);
    if (kept == 0) { /* p is a point mass on best */
        *token = best;
        return best == draft;
    }
    float total = 0.0f, p_draft = 0.0f;
    int at = -1;
    for (int i = 0; i < kept; i++) {
        total += s->cand[i].prob;
        if (s->cand[i].index == draft) {
            p_draft = s->cand[i].prob;
            at = i;
        }
    }
    /* q is a point mass on the draft: accept with probability min(1, p / q) = p(draft) */
    if (at >= 0 && random_f32(&s->rng) * total < p_draft) {
        *token = draft;
        return 1;
    }
    /* else from the residual max(0, p - q), normalized: p without the draft */
    if (at >= 0 && kept > 1) s->cand[at].prob = 0.0f;
    *token = sampler_draw(s->cand, kept, random_f32(&s->rng));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Stop strings */

void stop_init(StopText *st, const char *const *stops, int n_stops) {
    *st = (StopText){stops, n_stops, NULL, 0, 0, 0};
}

void stop_free(StopText *st) {
    free(st->held);
    st->held = NULL;
}

/* 1 when held[from..len) is the start of some stop string. */
static int could_start(const StopText *st, size_t from) {
    for (int k = 0; k < st->n_stops; k++) {
        size_t n = strlen(st->stops[k]);
        if (st->len - from < n && memcmp(st->held + from, st->stops[k], st->len - from) == 0)
            return 1;
    }
    return 0;
}

int stop_push(StopText *st, const char *piece, size_t n, const char **print, size_t *n_print) {
    /* drop what the last call released */
    if (st->out) {
        memmove(st->held, st->held + st->out, st->len - st->out);
        st->len -= st->out;
        st->out = 0;
    }
    if (st->len + n > st->cap) {
        size_t cap = st->cap ? st->cap : 64;
        while (cap < st->len + n) cap *= 2;
        char *p = realloc(st->held, cap);
        if (!p) return -1;
        st->held = p;
        st->cap = cap;
    }
    if (n) memcpy(st->held + st->len, piece, n);
    st->len += n;
    *print = st->held ? st->held : "";
    /* Earlier calls found no stop string, so one that is complete now ends in the new piece:
       the one ending first wins, and the longest of those. */
    size_t best_end = SIZE_MAX, best_start = 0;
    for (int k = 0; k < st->n_stops; k++) {
        size_t m = strlen(st->stops[k]);
        for (size_t end = m; end <= st->len; end++) {
            if (memcmp(st->held + end - m, st->stops[k], m) != 0) continue;
            if (end < best_end || (end == best_end && end - m < best_start)) {
                best_end = end;
                best_start = end - m;
            }
            break; /* its first occurrence */
        }
    }
    if (best_end != SIZE_MAX) {
        *n_print = best_start;
        st->len = st->out = 0;
        return 1;
    }
    size_t keep_from = 0;
    while (keep_from < st->len && !could_start(st, keep_from)) keep_from++;
    *n_print = st->out = keep_from;
    return 0;
}

void stop_flush(StopText *st, const char **print, size_t *n_print) {
    *print = st->held ? st->held + st->out : "";
    *n_print = st->len - st->out;
    st->len = st->out = 0;
}
