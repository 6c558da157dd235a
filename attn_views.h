/* attn_views.h: seeing attention (attn_views.c). */
#ifndef ATTN_VIEWS_H
#define ATTN_VIEWS_H

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
    int stats;         /* --attn-stats */
    int explain[3];    /* --attn-explain L.H.POS: layer, head, query position; [0] = -1: off */
    const char *probe; /* --attn-probe NAME ("induction"): the prompt is replaced by the probe */
} AttnOptions;

/* One query followed through the formula (--attn-explain): everything the engine computed for
   it, copied during the forward pass by the hook (attn_circuits.c). */
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
/* -v: the KV cache's size; the FLOP share of attention for the first and last generated token;
   with step_ms, the measured time per generated token against its position. */
void attn_print_kv_cache(const Config *c, FILE *f);
void attn_print_cost(const Config *c, int n_prompt, int generated, const double *step_ms,
                     int capturing, FILE *f);

/* The induction probe (--attn-probe induction): BOS when the model has one, then PROBE_LEN
   tokens drawn without replacement, seed PROBE_SEED, from the ids that decode to whole text on
   their own (no control tokens, no lone UTF-8 pieces), then the same tokens again. Returns the
   ids (malloc'ed) and where the passage starts; fails when the context or vocabulary is too
   small. */
#define PROBE_LEN 50
#define PROBE_SEED 20221208u
int attn_probe_tokens(const Model *m, const char *name, int **ids, int *n_ids, int *start,
                      Error *err);

/* attn_circuits.c: what the weights do with the values.
   The hook's part for --attn-explain: copies the explained query's numbers when the forward pass
   computes its layer (called from attn_hook). */
void attn_explain_capture(AttnMaps *a, int layer, int pos0, int n, const float *probs, int stride);
/* s for a terminal in out (capacity >= 4 * cols + 1), at most cols characters, whitespace and
   control characters made visible; returns the characters written. */
int attn_visible(const char *s, char *out, int cols);
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

#endif /* ATTN_VIEWS_H */
