/* spec.h: speculative decoding (spec.c). Something cheap proposes the next few tokens, a draft;
 * the model checks the token just sampled and the draft in one forward pass over their positions
 * (the prompt's path: each weight read once for all of them) and keeps the longest prefix of the
 * draft that it would itself have produced, plus one token of its own.
 *
 * Two proposers: a second, smaller model with the same vocabulary, run greedily (-md), and prompt
 * lookup (--lookup): the tokens that followed the last earlier occurrence of the last few tokens,
 * in the prompt or in what was generated. Either proposes with certainty (a point mass), so the
 * check is sampler_verify: the output is distributed exactly as plain sampling's, and greedily
 * it is the same tokens. Rolling back is free: the keys and values of rejected positions lie past
 * the end of what is kept, and the next pass overwrites them.
 */
#ifndef SPEC_H
#define SPEC_H

#include "model.h"
#include "sampler.h"

#define SPEC_MAX 64    /* tokens drafted per step, at most (--draft-max, --lookup) */
#define LOOKUP_NGRAM 3 /* --lookup matches the last 3 tokens, else 2, else 1 */

typedef struct {
    Model *target;   /* borrowed: the model whose output counts */
    Model draft;     /* owned when has_draft */
    int has_draft;   /* 1: -md; 0: prompt lookup */
    int max;         /* tokens proposed per step, at most (--draft-max or --lookup) */
    int verbose;     /* -v: a non-finite logit's error names the layer */
    int *draft_hist; /* (draft seq_len) the tokens whose keys and values the draft's cache holds */
    int draft_n;     /* how many: positions 0 .. draft_n - 1 */
    int ids[SPEC_MAX + 1]; /* the token checked and its draft, one forward pass */
    int *window;           /* (sampler's last_n) its penalty window, saved around a check, owned */
    int window_cap;
    long steps, drafted, accepted; /* forward passes of the target, tokens proposed, kept */
} Spec;

/* Speculation for target: with a draft model loaded from draft_path (batch positions per pass,
   kv its cache type, repack: model_repack it), proposing up to max tokens, or without one
   (draft_path NULL) prompt lookup of up to max tokens. Refuses a draft whose vocabulary differs
   from the target's. */
int spec_open(Spec *s, Model *target, const char *draft_path, int max, int batch, KvType kv,
              int repack, int verbose, Error *err);
void spec_free(Spec *s);

/* Up to max tokens that may follow hist[0..n) (n >= 1), into out; returns how many (0: nothing
   to propose), or -1 on an error (the draft model's forward pass). */
int spec_propose(Spec *s, const int *hist, int n, int max, int *out, Error *err);

/* One step. hist[0..n) are the tokens so far, the last, hist[n-1], just sampled (and recorded in
   sp's penalty window) and not yet in the target's cache, which holds positions 0 .. n-2. Proposes
   up to max tokens (fewer where the context or the batch ends), runs the target over hist[n-1]
   and them at positions n-1 .., and checks each in order with sampler_verify. Returns j >= 0,
   the accepted tokens in out[0..j) (now in the cache at positions n .. n+j-1), and in *next the
   token after them, sampled (not in the cache); or -1 on an error. sp's penalty window is as it
   was on entry: the caller records the tokens it keeps. */
int spec_step(Spec *s, Sampler *sp, const int *hist, int n, int max, int *out, int *next,
              Error *err);

/* -v: "speculative: S steps, drafted D, accepted A (R%), T tokens per step" on f. */
void spec_print_stats(const Spec *s, FILE *f);

#endif /* SPEC_H */
