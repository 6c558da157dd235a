/* attn_circuits.h: what attention does with the values, from the weights and the run state
 * (attn_circuits.c): the explained query, the value norms, the copying score. */
#ifndef ATTN_CIRCUITS_H
#define ATTN_CIRCUITS_H

#include "attn_maps.h"

/* Prints the explained query step by step (fails when the run never reached its position). */
int attn_explain_print(const AttnMaps *a, char **labels, FILE *f, Error *err);
/* The same numbers as a JSON object, for the page (the query must have been captured). */
void attn_explain_json(const AttnMaps *a, FILE *f);
/* a->vnorms (n_layers, n_heads, T): ||W_O,h v_j|| for every key j, from the engine's value cache
   after the run; the contribution of key j to query i through head h is p_ij times it. */
int attn_value_norms(AttnMaps *a, Error *err);
/* The copying score of every head (n_layers * n_heads values), through the OV circuit: for each
   probe token t, the logits W_U diag(g_out) W_O,h W_V,h norm_l(e_t), and the fraction of the
   vocabulary whose logit is below t's own (1 = the head raises t above every other token,
   about 0.5 = no preference). */
int attn_copying_scores(const AttnMaps *a, double *score, Error *err);

#endif /* ATTN_CIRCUITS_H */
