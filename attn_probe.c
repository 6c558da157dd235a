/* attn_probe.c: prompts built to find heads that do one thing.
 *
 *   --attn-probe induction  BOS, 50 random tokens, the same 50 again: the prefix-matching score
 *                           of the atlas (attn_views.c) reads the second copy
 */
#include <stdlib.h>
#include <string.h>

#include "attn_probe.h"

/* The induction probe. Random tokens have no bigram statistics to lean on, so on their second
   occurrence the only way to predict (or attend to) what comes next is to find the previous
   occurrence of the current token and look one step after it: what an induction head does. */

static uint64_t probe_next(uint64_t *state) { /* xorshift64*: seeded, the same on every machine */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1DULL;
}

int attn_probe_tokens(const Model *m, const char *name, int **ids, int *n_ids, int *start,
                      Error *err) {
    const Tokenizer *tok = m->tokenizer;
    const int V = m->config.vocab_size, bos = tokenizer_bos(tok);
    *start = bos >= 0 ? 1 : 0;
    *n_ids = *start + 2 * PROBE_LEN;
    if (strcmp(name, "induction") != 0) return fail(err, "unknown probe '%s'", name);
    if (*n_ids > m->config.seq_len)
        return fail(err, "the induction probe is %d tokens, longer than the model's context of %d",
                    *n_ids, m->config.seq_len);
    /* the candidates: ids that decode to printable text on their own */
    const size_t cap = decoder_cap(tok);
    int *cand = malloc((size_t)V * sizeof(int)), n_cand = 0;
    char *buf = malloc(cap);
    *ids = malloc((size_t)*n_ids * sizeof(int));
    if (!cand || !buf || !*ids) {
        free(cand);
        free(buf);
        free(*ids);
        *ids = NULL;
        return fail(err, "out of memory for the probe");
    }
    for (int id = 0; id < V; id++) {
        Decoder d;
        decoder_init(&d);
        d.prev_token = id;
        size_t len = decoder_push(tok, &d, id, buf, cap);
        int plain = len > 0 && d.n_pending == 0 && !strstr(buf, "\xEF\xBF\xBD"); /* no U+FFFD */
        for (size_t k = 0; k < len && plain; k++)
            plain = (unsigned char)buf[k] >= 0x20 && buf[k] != 0x7F; /* no control characters */
        if (plain && id != bos && id != tokenizer_eos(tok)) cand[n_cand++] = id;
    }
    free(buf);
    if (n_cand < PROBE_LEN) {
        free(cand);
        free(*ids);
        *ids = NULL;
        return fail(err,
                    "the vocabulary has %d tokens that decode on their own, the probe needs %d",
                    n_cand, PROBE_LEN);
    }
    /* PROBE_LEN distinct candidates: the first steps of a seeded Fisher-Yates shuffle */
    uint64_t state = PROBE_SEED;
    for (int k = 0; k < PROBE_LEN; k++) {
        int r = k + (int)(probe_next(&state) % (uint64_t)(n_cand - k));
        int t = cand[k];
        cand[k] = cand[r];
        cand[r] = t;
    }
    if (bos >= 0) (*ids)[0] = bos;
    for (int k = 0; k < PROBE_LEN; k++)
        (*ids)[*start + k] = (*ids)[*start + PROBE_LEN + k] = cand[k];
    free(cand);
    return 0;
}
