/* attn_views.h: seeing attention (attn_views.c). */
#ifndef ATTN_VIEWS_H
#define ATTN_VIEWS_H

#include "model.h"

/* Seeing attention: the probabilities the forward pass hands to RunState.attn_hook,
   kept for every layer and head, then dumped, drawn or summarised. Nothing runs when no
   attention output is asked for (the hook stays NULL). */

typedef struct {
    const char *dump; /* --dump-attn PATH.npy, or NULL */
    const char *html; /* --attn-html PATH.html, or NULL */
    int show_layer;   /* --attn-show L.H; -1 = off */
    int show_head;
    int stats; /* --attn-stats */
} AttnOptions;

typedef struct {
    int n_layers, n_heads;
    int window;   /* sliding window W, 0 = none */
    int cap;      /* positions the maps have room for: rows and columns of each map */
    int n;        /* positions captured so far (T) */
    int n_prompt; /* positions 0 .. n_prompt-1 are the prompt, the rest generated */
    float *probs; /* (n_layers, n_heads, cap, cap): row i = query i, column j = key j;
                               zero above the diagonal and outside the window */
    int *tokens;  /* (cap) the token fed at each position */
} AttnMaps;

int attn_wanted(const AttnOptions *o);
/* "L.H" -> layer and head (range checked later, against the model). */
int attn_parse_head(const char *s, int *layer, int *head, Error *err);
/* Checks the options against the model and allocates maps for `cap` positions (refused above
   2 GiB: they take n_layers * n_heads * cap^2 * 4 bytes). */
int attn_maps_init(AttnMaps *a, const AttnOptions *o, const Config *c, int n_prompt, int cap,
                   Error *err);
void attn_maps_free(AttnMaps *a);
/* The AttnHook: ctx is an AttnMaps*. */
void attn_hook(void *ctx, int layer, int pos0, int n, const float *probs, int stride);
/* Records the tokens fed at positions pos0 .. pos0+n-1 (for labels). */
void attn_maps_tokens(AttnMaps *a, int pos0, const int *tokens, int n);
/* Shrinks the maps in place to (n_layers, n_heads, n, n), the shape --dump-attn writes. */
void attn_maps_pack(AttnMaps *a);
/* The page, the atlas and the terminal heatmap. `printed` says whether stdout already carries
   text (the views are then preceded by a blank line). */
int attn_report(const AttnMaps *a, const AttnOptions *o, const Tokenizer *tok,
                const char *model_name, int printed, Error *err);
/* -v: the KV cache's size; the FLOP share of attention for the first and last generated token. */
void attn_print_kv_cache(const Config *c, FILE *f);
void attn_print_cost(const Config *c, int n_prompt, int generated, FILE *f);

#endif /* ATTN_VIEWS_H */
