/* sampler.h: picks the next token from the logits (sampler.c).
 *
 * Temperature, then top-k, then top-p (nucleus), then a draw from what is left, renormalized: the
 * order llama.cpp uses. Each step is a small pure function over an array of candidates, so the
 * tests can check each against a brute-force statement of it; sampler_sample() chains them.
 */
#ifndef SAMPLER_H
#define SAMPLER_H

#include <stdint.h>

#include "common.h"

/* A token and its probability. Candidates are ordered by higher probability first, the lower
   index first among equals: a total order, so the tokens kept never depend on how they were
   found. */
typedef struct {
    float prob;
    int index;
} Candidate;

typedef struct {
    int vocab_size;
    float temperature; /* 0 = greedy */
    float top_p;       /* 1 = off */
    int top_k;         /* 0 = off */
    uint64_t rng;      /* xorshift64* state */
    Candidate *cand;   /* (vocab_size) scratch, owned */
    float *probs;      /* (vocab_size) scratch, owned */
} Sampler;

int sampler_init(Sampler *s, int vocab_size, float temperature, float top_p, int top_k,
                 uint64_t seed, Error *err);
void sampler_free(Sampler *s);
/* The next token for logits (vocab_size): argmax when the temperature is 0, else a draw. */
int sampler_sample(Sampler *s, const float *logits);

/* The steps. n is the vocabulary size; each returns how many candidates it kept. */

/* Index of the largest of v[0..n); the lowest index wins a tie. */
int sampler_argmax(const float *v, int n);
/* probs (n) = softmax(logits / temperature), temperature > 0. */
void sampler_softmax(float *probs, const float *logits, int n, float temperature);
/* The k best of probs into cand[0..k), best first (1 <= k <= n). */
int sampler_top_k(Candidate *cand, const float *probs, int n, int k);
/* Every token that top-p = p could need, into cand, best first: the most probable token and all
   those at or above (1 - p) / (n - 1) (a token below that is never needed: see sampler.c). */
int sampler_top_p_candidates(Candidate *cand, const float *probs, int n, float p);
/* The smallest prefix of cand[0..kept) (sorted best first) whose probabilities reach p; at least
   one candidate. */
int sampler_top_p(const Candidate *cand, int kept, float p);
/* Draws from cand[0..kept) in proportion to their probabilities, u uniform in [0, 1). */
int sampler_draw(const Candidate *cand, int kept, float u);

#endif /* SAMPLER_H */
