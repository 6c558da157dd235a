/* attn_maps.h: the attention capture (attn_maps.c): the options of the attention views, the
 * maps every layer and head fills during the forward pass, the explained query's copy of the
 * engine's numbers, and the token labels the views print. The other attention modules
 * (attn_circuits, attn_probe, attn_views) build on these types; this one uses none of theirs. */
#ifndef ATTN_MAPS_H
#define ATTN_MAPS_H

#include "model.h"

/* Seeing attention: the probabilities the forward pass hands to RunState.attn_hook,
   kept for every layer and head, then dumped, drawn or summarised. Nothing runs when no
   attention output is asked for (the hook stays NULL). */

typedef struct {
    const char *dump;       /* --dump-attn PATH.npy, or NULL */
    const char *dump_norms; /* --dump-attn-norms PATH.npy, or NULL */
    const char *html;       /* --attn-html PATH.html, or NULL */
    int show_layer;         /* --attn-show L.H; -1 = off */
    int show_head;
    int stats;              /* --attn-stats */
    int explain[3];         /* --attn-explain L.H.POS: layer, head, query position; [0] = -1: off */
    const char *probe;      /* --attn-probe NAME ("induction", "coref"): the prompt is replaced */
    const char *probe_file; /* --probe-file FILE: the coref probe's sentences, or NULL */
} AttnOptions;

typedef struct AttnCoref AttnCoref; /* the coref probe's scores (attn_probe.h) */

/* One query followed through the formula (--attn-explain): everything the engine computed for
   it, copied during the forward pass by the hook. */
typedef struct {
    int layer, head, pos; /* the query: layer, query head, position */
    int kv_head, group; /* its key/value head, shared by query heads kv_head * group .. + group-1 */
    int lo;             /* first key it sees (the window): keys lo .. pos, keys before lo masked */
    int head_dim;
    int captured; /* 1 once the forward pass reached the query */
    float *q;     /* (head_dim) the query the engine used (after RoPE when the model has it) */
    float *k, *v; /* (pos + 1, head_dim) the keys and values of positions 0 .. pos in the cache */
    float *probs; /* (pos + 1) the engine's softmax weights */
    float *out;   /* (head_dim) the engine's attention output for this head (the tiled kernel) */
} AttnExplain;

typedef struct {
    int n_layers, n_heads;
    int window;          /* sliding window W, 0 = none */
    int cap;             /* positions the maps have room for: rows and columns of each map */
    int n;               /* positions captured so far (T) */
    int n_prompt;        /* positions 0 .. n_prompt-1 are the prompt, the rest generated */
    float *probs;        /* (n_layers, n_heads, cap, cap): row i = query i, column j = key j;
                               zero above the diagonal and outside the window */
    int *tokens;         /* (cap) the token fed at each position */
    const Model *model;  /* borrowed: the explain capture reads its run state in the hook */
    AttnExplain explain; /* explain.q == NULL: not asked for */
    float *vnorms; /* (n_layers, n_heads, n) ||W_O,h v_j||, after the run; NULL if not wanted */
    int probe_start, probe_len; /* --attn-probe induction: the passage of probe_len tokens starts
                                   at probe_start and is repeated once right after; 0 = no probe */
    double *step_ms; /* (cap) -v: milliseconds of the forward pass that fed position i (generated
                        tokens only; 0 for the prompt's positions), or NULL */
    const AttnCoref *coref; /* --attn-probe coref: every head's score over the sentences (the maps
                               hold the first sentence), or NULL; borrowed */
} AttnMaps;

int attn_wanted(const AttnOptions *o);
/* "L.H" -> layer and head, "L.H.POS" for --attn-explain: n numbers separated by dots (range
   checked later, against the model). */
int attn_parse_ints(const char *s, int *out, int n, const char *flag, Error *err);
/* Checks the options against the model and allocates maps for `cap` positions (refused above
   2 GiB: they take n_layers * n_heads * cap^2 * 4 bytes). */
int attn_maps_init(AttnMaps *a, const AttnOptions *o, const Model *m, int n_prompt, int cap,
                   Error *err);
void attn_maps_free(AttnMaps *a);
/* The AttnHook: ctx is an AttnMaps*. Also copies the explained query's numbers when the forward
   pass computes its layer. */
void attn_hook(void *ctx, int layer, int pos0, int n, const float *probs, int stride);
/* Records the tokens fed at positions pos0 .. pos0+n-1 (for labels). */
void attn_maps_tokens(AttnMaps *a, int pos0, const int *tokens, int n);
/* Shrinks the maps in place to (n_layers, n_heads, n, n), the shape --dump-attn writes. */
void attn_maps_pack(AttnMaps *a);
/* Row i of head (l, h): cap floats, keys 0 .. cap-1. */
static inline float *attn_map_row(const AttnMaps *a, int l, int h, int i) {
    return a->probs + (((size_t)l * a->n_heads + h) * a->cap + i) * a->cap;
}

/* Value j of KV head h in layer l's cache (floats or halves, --kv-cache) as head_dim floats. */
void attn_cache_value(float *out, const Model *m, int l, int h, int j);

/* Labels: the text each position's token decodes to, each piece with its own leading space;
   special[i] is set for control tokens (labelled <bos>, <eos>, <ID>) and for a byte token that
   only starts a character (labelled with an ellipsis). NULL when out of memory. */
char **attn_token_labels(const AttnMaps *a, const Tokenizer *tok, unsigned char *special,
                         Error *err);
void attn_free_labels(char **labels, int n);
/* s for a terminal in out (capacity >= 4 * cols + 1), at most cols characters, whitespace and
   control characters made visible; returns the characters written. */
int attn_visible(const char *s, char *out, int cols);
/* Bytes of the UTF-8 character starting with byte c (the text is valid UTF-8). */
static inline int attn_utf8_len(unsigned char c) {
    return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

#endif /* ATTN_MAPS_H */
