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

/* The coref probe (--attn-probe coref): sentences with the antecedent in [brackets] and the pronoun
   in {braces}, e.g. "The doctor fired [the nurse] because {she} was tired.". Each runs on its own
   (positions from 0, BOS first when the tokenizer adds one); for every head, the query is the
   pronoun's first token p, and the sentence counts when the key with the largest weight among
   1 .. p-1 (not the first token, where many heads park their weight, nor the pronoun itself) is
   a token of the antecedent: a token whose text overlaps the marked span, so a span cut inside a
   token counts as that token. */
typedef struct {
    char *text;     /* the sentence without its markers, NUL-terminated (malloc'ed) */
    int ant0, ant1; /* the antecedent's bytes [ant0, ant1) in text */
    int pro0, pro1; /* the pronoun's bytes [pro0, pro1) */
    int line;       /* its line in the file (from 1), or its number in the built-in set */
} CorefSentence;

/* One line: exactly one non-empty [antecedent] and one non-empty {pronoun} after it. The error
   names line_no (attn_coref_sentences calls it for each line of a text). */
int attn_coref_parse_line(const char *line, size_t len, int line_no, CorefSentence *s, Error *err);
/* The sentences of a probe file's text (blank lines and lines starting with '#' skipped), or the
   built-in set (COREF_BUILTIN sentences) when text is NULL. *out is malloc'ed. */
int attn_coref_sentences(const char *text, size_t len, CorefSentence **out, int *n, Error *err);
void attn_coref_sentences_free(CorefSentence *s, int n);

/* Every head's score over the sentences, and the first sentence (which the maps hold at the end
   of the run) for the views. Heads are (layer * n_heads + head). */
struct AttnCoref {
    int n, heads;   /* sentences; layers x heads */
    int *hits;      /* (heads) sentences whose pronoun attends most to the antecedent */
    int *vhits;     /* (heads) the same with the value-weighted attention p_ij ||W_O,h v_j|| */
    double *pvalue; /* (heads) P(hits or more) if each sentence's top key were drawn uniformly */
    double chance;  /* mean over sentences of the antecedent's share of keys 1 .. p-1 */
    double alpha;   /* a head is `coref` when pvalue < alpha = COREF_ALPHA / heads */
    int pron;       /* the first sentence: the pronoun's first token */
    unsigned char *ant; /* (its tokens) 1 where a token of the first sentence is the antecedent */
    int n_tokens;
};

#define COREF_BUILTIN 44 /* sentences in the built-in set */
#define COREF_ALPHA 0.05 /* family-wise error over all heads (Bonferroni) */

/* Runs every sentence through the model with the maps' hook set (maps initialised here for the
   longest sentence, from the options), scores every head, and leaves the first sentence's maps
   (and value norms) in maps. */
int attn_coref_run(Model *m, const AttnOptions *o, const CorefSentence *s, int n, AttnMaps *maps,
                   AttnCoref *c, Error *err);
void attn_coref_free(AttnCoref *c);
/* 1 when head k is above chance by the test (its role is `coref`). */
int attn_coref_role(const AttnCoref *c, int k);
/* The table: one line per head "L.H coref A/N (P%)", the value-weighted column, the p-value, then
   the chance level and the best heads. source names the sentences ("built in" or the file). */
void attn_coref_print(const AttnCoref *c, int n_heads, const char *source, FILE *f);

#endif /* ATTN_PROBE_H */
