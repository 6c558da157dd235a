/* attn_views.h: seeing attention (attn_views.c): the atlas, the terminal heatmap, the page and the
 * cost of context, drawn from the maps of attn_maps.h. */
#ifndef ATTN_VIEWS_H
#define ATTN_VIEWS_H

#include "attn_maps.h"

/* The page, the atlas and the terminal heatmap. `printed` says whether stdout already carries
   text (the views are then preceded by a blank line). */
int attn_report(const AttnMaps *a, const AttnOptions *o, const Tokenizer *tok,
                const char *model_name, int printed, Error *err);
/* -v: the KV cache's size; the FLOP share of attention for the first and last generated token;
   with step_ms, the measured time per generated token against its position. */
void attn_print_kv_cache(const Config *c, FILE *f);
void attn_print_cost(const Config *c, int n_prompt, int generated, const double *step_ms,
                     int capturing, FILE *f);

#endif /* ATTN_VIEWS_H */
