/* attn_probe.h: prompts built to find heads that do one thing (attn_probe.c). */
#ifndef ATTN_PROBE_H
#define ATTN_PROBE_H

#include "attn_maps.h"

/* The induction probe (--attn-probe induction): BOS when the model has one, then PROBE_LEN
   tokens drawn without replacement, seed PROBE_SEED, from the ids that decode to whole text on
   their own (no control tokens, no lone UTF-8 pieces), then the same tokens again. Returns the
   ids (malloc'ed) and where the passage starts; fails when the context or vocabulary is too
   small. */
#define PROBE_LEN 50
#define PROBE_SEED 20221208u
int attn_probe_tokens(const Model *m, const char *name, int **ids, int *n_ids, int *start,
                      Error *err);

#endif /* ATTN_PROBE_H */
