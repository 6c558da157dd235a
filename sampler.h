/* sampler.h: picks the next token from the logits (sampler.c).
 *
 * Repetition penalties on the logits, then temperature, then top-k, then top-p (nucleus), then
 * min-p, then a draw from what is left, renormalized: the order llama.cpp uses (its min-p, like
 * ours, compares logits before the temperature). Each step is a small pure function over an array of candidates, so the
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
    float min_p;       /* 0 = off */
    uint64_t rng;      /* xorshift64* state */
    Candidate *cand;   /* (vocab_size) scratch, owned */
    float *probs;      /* (vocab_size) scratch, owned */
    /* repetition penalties over the last `last_n` tokens accepted (llama.cpp's) */
    float repeat, frequency, presence; /* 1, 0, 0 = off */
    int last_n;                        /* window; 0 = off */
    int *recent;                       /* (last_n) ring of accepted tokens, owned */
    int n_recent, next_recent;         /* tokens in the ring, slot of the next one */
    float *penalized;                  /* (vocab_size) the logits after the penalties, owned */
    int *counts;                       /* (vocab_size) zero between uses, owned */
} Sampler;

int sampler_init(Sampler *s, int vocab_size, float temperature, float top_p, int top_k,
                 uint64_t seed, Error *err);
void sampler_free(Sampler *s);
/* Turns the penalties on (any of repeat != 1, frequency != 0, presence != 0, with last_n > 0).
   -1 for a repeat penalty that is not a finite number above 0 (dividing by it would make
   infinities, then NaN) or a non-finite frequency or presence penalty. */
int sampler_set_penalties(Sampler *s, int last_n, float repeat, float frequency, float presence,
                          Error *err);
/* Records a token fed to the model (prompt or generated) for the penalties. */
void sampler_accept(Sampler *s, int token);
/* The next token for logits (vocab_size): argmax when the temperature is 0, else a draw. Always an
   id in [0, vocab_size), whatever the logits hold. Non-finite numbers: a NaN logit is never
   picked while a number is there (probability 0, never the argmax); the choice is greedy (the
   argmax) when 1 / temperature overflows to inf (a temperature below ~3e-39) or when the largest
   logit is +inf (the first +inf) or there is none (all -inf or NaN: the first -inf, else 0).
   run.c never gets here with a non-finite logit: forward() refuses them first. */
int sampler_sample(Sampler *s, const float *logits);
/* Speculative sampling's check of a drafted token against the logits (vocab_size) of its position,
   the draft proposed with certainty (a point mass q): accepts it with probability p(draft), p the
   distribution sampler_sample draws from (penalties, temperature, top-k, top-p, min-p applied),
   else draws *token from p with the draft's share removed, renormalized (the residual
   max(0, p - q)); so *token is distributed exactly as sampler_sample's draw. Greedy, p is a point
   mass: accepted when the draft is the argmax, which is *token. Returns 1 when accepted (*token
   is the draft), 0 when not. */
int sampler_verify(Sampler *s, const float *logits, int draft, int *token);

/* The steps. n is the vocabulary size; each returns how many candidates it kept. */

/* Index of the largest of v[0..n); the lowest index wins a tie; NaN never wins (all NaN: 0). */
int sampler_argmax(const float *v, int n);
/* probs (n) = softmax(logits / temperature), temperature > 0 with 1 / temperature finite, the
   largest logit finite; a NaN logit gets probability 0. */
void sampler_softmax(float *probs, const float *logits, int n, float temperature);
/* The k best of probs into cand[0..k), best first (1 <= k <= n). */
int sampler_top_k(Candidate *cand, const float *probs, int n, int k);
/* Every token that top-p = p could need, into cand, best first: the most probable token and all
   those at or above (1 - p) / (n - 1) (a token below that is never needed: see sampler.c). */
int sampler_top_p_candidates(Candidate *cand, const float *probs, int n, float p);
/* The smallest prefix of cand[0..kept) (sorted best first) whose probabilities reach p; at least
   one candidate. */
int sampler_top_p(const Candidate *cand, int kept, float p);
/* llama.cpp's penalties on logits (n), for the tokens recent[0..n_recent): a token seen c > 0
   times has its logit divided by `repeat` when positive, multiplied when not, then lowered by
   c * frequency + presence. counts (n) is zero on entry and on return. */
void sampler_penalties(float *logits, int n, const int *recent, int n_recent, float repeat,
                       float frequency, float presence, int *counts);
/* Every token whose logit is at least the largest + log(min_p), into cand, best first (min-p
   with nothing before it; 0 < min_p <= 1); at least the argmax, even when the cut is NaN. */
int sampler_min_p_candidates(Candidate *cand, const float *probs, const float *logits, int n,
                             float min_p);
/* The prefix of cand[0..kept) (sorted best first, cand[0] the best token of all) whose logits are
   at least cand[0]'s + log(min_p). */
int sampler_min_p(const Candidate *cand, int kept, const float *logits, float min_p);
/* Draws from cand[0..kept) in proportion to their probabilities, u uniform in [0, 1); kept >= 1
   (0 for none). */
int sampler_draw(const Candidate *cand, int kept, float u);

/* Stop strings over streamed text: what may be printed now, holding back any tail that could
   still become a stop string across the next tokens. */
typedef struct {
    const char *const *stops; /* (n_stops) borrowed, non-empty */
    int n_stops;
    char *held; /* text not yet released, owned */
    size_t len, cap, out;
} StopText;

void stop_init(StopText *st, const char *const *stops, int n_stops);
void stop_free(StopText *st);
/* Appends piece[0..n). Returns 1 when a stop string is now complete (the one that ends first,
   the longest of those), else 0, or -1 out of memory. *print, *n_print: the bytes to print now
   (valid until the next call): the text before the stop string when one completed, else all but
   the held tail. After a stop, the rest is dropped. */
int stop_push(StopText *st, const char *piece, size_t n, const char **print, size_t *n_print);
/* The held tail at the end of the stream (no stop string came), and resets for a new reply. */
void stop_flush(StopText *st, const char **print, size_t *n_print);

#endif /* SAMPLER_H */
