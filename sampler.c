/* sampler.c: temperature, top-k, top-p and the draw, each a step over candidates (sampler.h). */
#include <stdlib.h>

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
    *s = (Sampler){vocab_size, temperature, top_p, top_k, seed * 2654435761u + 1, NULL, NULL};
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
    s->cand = NULL;
    s->probs = NULL;
}

int sampler_argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i; /* strict: the lowest index wins a tie */
    return best;
}

void sampler_softmax(float *probs, const float *logits, int n, float temperature) {
    const float max = logits[sampler_argmax(logits, n)], inv_t = 1.0f / temperature;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) {
        probs[i] = exp_fast((logits[i] - max) * inv_t);
        sum += probs[i];
    }
    const float inv_sum = 1.0f / sum;
#pragma omp simd
    for (int i = 0; i < n; i++) probs[i] *= inv_sum;
}

static int better(Candidate x, Candidate y) {
    return x.prob != y.prob ? x.prob > y.prob : x.index < y.index;
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

int sampler_draw(const Candidate *cand, int kept, float u) {
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

int sampler_sample(Sampler *s, const float *logits) {
    const int n = s->vocab_size;
    if (s->temperature == 0.0f) return sampler_argmax(logits, n);
    sampler_softmax(s->probs, logits, n, s->temperature);
    int kept;
    if (s->top_k > 0 && s->top_k < n) {
        kept = sampler_top_k(s->cand, s->probs, n, s->top_k);
    } else if (s->top_p < 1.0f) {
        kept = sampler_top_p_candidates(s->cand, s->probs, n, s->top_p);
    } else {
        for (int i = 0; i < n; i++) s->cand[i] = (Candidate){s->probs[i], i};
        kept = n;
    }
    if (s->top_p < 1.0f) kept = sampler_top_p(s->cand, kept, s->top_p);
    return sampler_draw(s->cand, kept, random_f32(&s->rng));
}
