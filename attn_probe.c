/* attn_probe.c: prompts built to find heads that do one thing.
 *
 *   --attn-probe induction  BOS, 50 random tokens, the same 50 again: the prefix-matching score
 *                           of the atlas (attn_views.c) reads the second copy
 *   --attn-probe coref      sentences with a marked pronoun and antecedent, each run on its own:
 *                           per head, how often the pronoun attends most to the antecedent
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_circuits.h"

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

/* ------------------------------------------------------------------------------------------ */
/* The coref probe's sentences. Plain stories and biblical prose, the kinds of text small models
   are trained on; each has a second noun the pronoun could go to, and none starts with its
   antecedent (a model without BOS has its first word at position 0, which the probe leaves
   out). */

static const char *const COREF_SET[COREF_BUILTIN] = {
    "The doctor fired [the nurse] because {she} was tired.",
    "Tom gave [Lily] a red ball, and {she} said thank you.",
    "Once upon a time, [a little girl] found a dog, and {she} took it home.",
    "The boy saw [his mom] in the garden and ran to {her}.",
    "Ben had [a big box] of toys, and {it} was full of cars.",
    "Sara met [a friendly cat] in the park. {It} purred and sat on her lap.",
    "The mom told [Tim] to clean his room, but {he} wanted to play.",
    "One day, [a small bird] flew to the tree, and {it} sang a happy song.",
    "Lucy and her brother found [an old key]. {It} opened the little door.",
    "The teacher smiled at [the boy] because {he} had read the whole book.",
    "Mia asked [her dad] for a cookie, and {he} gave her two.",
    "The girl lost [her doll] in the park, and she looked for {it} all day.",
    "The dog chased [the ball] across the yard until {it} stopped by the fence.",
    "Anna hugged [her grandpa], and {he} laughed.",
    "The old woman gave [the little boy] an apple, and {he} ate it.",
    "Max saw [a big red truck] on the road. {It} was very loud.",
    "The princess found [a frog] by the pond, and {it} jumped into the water.",
    "Jack wanted to play with [Sue], but {she} was asleep.",
    "The bunny found [a carrot] because {it} was orange and bright.",
    "Lily gave [her brother] a hug when {he} came home.",
    "The girl looked at [the moon], and {it} was big and bright.",
    "Tim dropped [the cup], and {it} broke on the floor.",
    "The queen called [the knight] and told {him} to go home.",
    "Sam found [a shiny coin] under the bed and put {it} in his pocket.",
    "And Abraham called [Isaac], and blessed {him}.",
    "And the LORD spake unto [Moses], and {he} went up into the mount.",
    "And Jacob loved [Rachel], and {she} was beautiful and well favoured.",
    "And Pharaoh called [Joseph], and {he} stood before the king.",
    "And Saul sent for [David], and {he} came unto him.",
    "And Ruth went to [Naomi], and kissed {her}.",
    "And the king commanded [the servant] that {he} should bring the bread.",
    "And Boaz took [Ruth], and {she} was his wife.",
    "And Samuel anointed [Saul], and {he} was king over Israel.",
    "And the angel came in unto [Mary], and {she} was troubled.",
    "And Moses chose [Joshua], and {he} went out to fight with Amalek.",
    "And Jesus called [Peter], and {he} left his nets.",
    "And Cain rose up against [Abel] his brother, and slew {him}.",
    "And Elijah went to [the widow], and {she} gave him bread.",
    "And the scribes brought unto him [a woman], and {she} stood in the midst.",
    "And Laban gave [Leah] to Jacob, and {she} bare him a son.",
    "And the priests took up [the ark] of the LORD, and carried {it} into the house.",
    "And Abraham built [an altar] there, and laid the wood upon {it}.",
    "And David took [a stone] from his bag, and slang {it}, and smote the Philistine.",
    "And Jonathan loved [David] as his own soul, and gave {him} his robe.",
};

/* The marked span between open and close: one of each, in this order, not empty. Returns the
   offsets of the two markers in line, or -1 with an error. */
static int marker_pair(const char *line, size_t len, char open, char close, const char *what,
                       int line_no, int *at_open, int *at_close, Error *err) {
    int n_open = 0, n_close = 0;
    for (size_t i = 0; i < len; i++) {
        if (line[i] == open) n_open++, *at_open = (int)i;
        if (line[i] == close) n_close++, *at_close = (int)i;
    }
    if (n_open == 0 && n_close == 0)
        return fail(err, "line %d: no %s in %s, e.g. %s", line_no, what,
                    open == '{' ? "{braces}" : "[brackets]", open == '{' ? "{she}" : "[the nurse]");
    if (n_open != 1 || n_close != 1 || *at_close < *at_open)
        return fail(err,
                    "line %d: unbalanced %c %c (%d %c, %d %c): mark the %s with one %c and one "
                    "%c after it",
                    line_no, open, close, n_open, open, n_close, close, what, open, close);
    if (*at_close == *at_open + 1)
        return fail(err, "line %d: the %s %c%c is empty", line_no, what, open, close);
    return 0;
}

int attn_coref_parse_line(const char *line, size_t len, int line_no, CorefSentence *s, Error *err) {
    int a0, a1, p0, p1;
    memset(s, 0, sizeof *s);
    if (memchr(line, '\0', len)) return fail(err, "line %d holds a NUL byte", line_no);
    if (marker_pair(line, len, '[', ']', "antecedent", line_no, &a0, &a1, err) ||
        marker_pair(line, len, '{', '}', "pronoun", line_no, &p0, &p1, err))
        return -1;
    if (p0 < a1) {
        const int pl = p1 - p0 - 1 < 40 ? p1 - p0 - 1 : 40,
                  al = a1 - a0 - 1 < 40 ? a1 - a0 - 1 : 40;
        return fail(err,
                    "line %d: the pronoun {%.*s} comes before the antecedent [%.*s] ends: the "
                    "pronoun must follow its antecedent",
                    line_no, pl, line + p0 + 1, al, line + a0 + 1);
    }
    if (!(s->text = malloc(len - 3))) return fail(err, "out of memory for the probe's sentences");
    size_t w = 0;
    for (size_t i = 0; i < len; i++)
        if ((int)i != a0 && (int)i != a1 && (int)i != p0 && (int)i != p1) s->text[w++] = line[i];
    s->text[w] = '\0';
    /* offsets in the text without markers: each marker before a position shifts it by one */
    s->ant0 = a0, s->ant1 = a1 - 1, s->pro0 = p0 - 2, s->pro1 = p1 - 3;
    s->line = line_no;
    return 0;
}

void attn_coref_sentences_free(CorefSentence *s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i].text);
    free(s);
}

int attn_coref_sentences(const char *text, size_t len, CorefSentence **out, int *n, Error *err) {
    int cap = 0, count = 0, line_no = 0;
    CorefSentence *s = NULL;
    for (size_t at = 0; text ? at < len : count < COREF_BUILTIN;) {
        const char *line = text ? text + at : COREF_SET[count];
        size_t ll = text ? 0 : strlen(line);
        if (text) {
            while (at + ll < len && line[ll] != '\n') ll++;
            at += ll + 1;
            if (ll > 0 && line[ll - 1] == '\r') ll--;
        }
        line_no++;
        size_t lead = 0; /* the text is not NUL-terminated: count within the line */
        while (lead < ll && (line[lead] == ' ' || line[lead] == '\t')) lead++;
        if (lead >= ll || line[lead] == '#') continue; /* blank, or a comment */
        if (count == cap) {
            CorefSentence *p = realloc(s, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *s);
            if (!p) {
                attn_coref_sentences_free(s, count);
                return fail(err, "out of memory for the probe's sentences");
            }
            s = p;
        }
        if (attn_coref_parse_line(line, ll, line_no, &s[count], err)) {
            attn_coref_sentences_free(s, count);
            return -1;
        }
        count++;
    }
    if (count == 0) {
        free(s);
        return fail(err, "the probe file holds no sentences (one a line, e.g. 'The doctor fired "
                         "[the nurse] because {she} was tired.')");
    }
    *out = s;
    *n = count;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Sentences to positions. The tokens are decoded one at a time, which gives back the sentence
   (checked), so each token covers a range of its bytes: a token belongs to the antecedent when
   its range overlaps the marked span, and the pronoun's first token is the first that overlaps
   the pronoun's span. */

typedef struct {
    int *ids, n;        /* the tokens, BOS first when the tokenizer adds one */
    int pron;           /* position of the pronoun's first token */
    unsigned char *ant; /* (n) 1 where the token overlaps the antecedent */
    double share;       /* antecedent tokens among keys 1 .. pron-1, over pron - 1 */
} CorefItem;

static int coref_item(const Tokenizer *tok, const CorefSentence *s, int seq_len, CorefItem *it,
                      Error *err) {
    const size_t len = strlen(s->text), cap = decoder_cap(tok);
    memset(it, 0, sizeof *it);
    if (tokenizer_encode(tok, s->text, len, &it->ids, &it->n, err)) return -1;
    if (it->n > seq_len)
        return fail(err,
                    "line %d: the sentence is %d tokens, longer than the context of %d (see -c)",
                    s->line, it->n, seq_len);
    char *buf = malloc(cap);
    it->ant = calloc((size_t)it->n, 1);
    if (!buf || !it->ant) {
        free(buf);
        return fail(err, "out of memory for the probe's tokens");
    }
    Decoder d;
    decoder_init(&d);
    size_t off = 0;
    int ok = 1;
    it->pron = -1;
    for (int i = 0; i < it->n && ok; i++) {
        const size_t k = decoder_push(tok, &d, it->ids[i], buf, cap);
        ok = off + k <= len && memcmp(buf, s->text + off, k) == 0;
        if (k > 0 && (int)off < s->ant1 && (int)(off + k) > s->ant0) it->ant[i] = 1;
        if (k > 0 && it->pron < 0 && (int)off < s->pro1 && (int)(off + k) > s->pro0) it->pron = i;
        off += k;
    }
    free(buf);
    if (!ok || off != len || it->pron < 0)
        return fail(err,
                    "line %d: the tokens do not decode back to the sentence (at byte %zu), so the "
                    "marked words cannot be found among them",
                    s->line, off);
    int keys = 0;
    for (int j = 1; j < it->n; j++) {
        if (it->ant[j] && j >= it->pron)
            return fail(err,
                        "line %d: the antecedent and the pronoun share token %d: put a word "
                        "between them",
                        s->line, j);
        keys += it->ant[j];
    }
    if (keys == 0)
        return fail(err,
                    "line %d: the antecedent is only in the first token, which the probe leaves "
                    "out (keys 1..p-1): put a word before it",
                    s->line);
    it->share = (double)keys / (it->pron - 1);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Scoring */

/* The key among 1 .. p-1 with the largest w[j] (the earlier one on a tie). */
static int top_key(const float *w, int p) {
    int best = 1;
    for (int j = 2; j < p; j++)
        if (w[j] > w[best]) best = j;
    return best;
}

/* P(X >= k) for X the number of successes in n independent trials of probabilities q[0..n-1]
   (a Poisson binomial distribution), by the exact recurrence over the trials. */
static double tail_at_least(const double *q, int n, int k, double *dist) {
    dist[0] = 1.0;
    for (int i = 1; i <= n; i++) dist[i] = 0.0;
    for (int t = 0; t < n; t++)
        for (int i = t + 1; i >= 0; i--)
            dist[i] = dist[i] * (1.0 - q[t]) + (i > 0 ? dist[i - 1] * q[t] : 0.0);
    double s = 0.0;
    for (int i = k; i <= n; i++) s += dist[i];
    return s < 1.0 ? s : 1.0;
}

/* Adds one sentence's hits: for every head, the top key of the pronoun's row, by weight and by
   weight times the value norm. */
static void coref_score(const AttnMaps *a, const CorefItem *it, AttnCoref *c, float *vw) {
    const int p = it->pron, T = a->n;
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; h < a->n_heads; h++) {
            const int k = l * a->n_heads + h;
            const float *row = attn_map_row(a, l, h, p);
            for (int j = 0; j < p; j++) vw[j] = row[j] * a->vnorms[(size_t)k * T + j];
            c->hits[k] += it->ant[top_key(row, p)];
            c->vhits[k] += it->ant[top_key(vw, p)];
        }
}

/* Feeds one sentence from position 0 (the maps hold it afterwards) and its value norms. */
static int coref_feed(Model *m, AttnMaps *a, const CorefItem *it, Error *err) {
    a->n = 0;
    a->n_prompt = it->n;
    a->explain.captured = 0;
    for (int i = 0; i < it->n; i += m->state.cap) {
        const int k = it->n - i < m->state.cap ? it->n - i : m->state.cap;
        if (forward(m, it->ids + i, k, i, LOGITS_NONE, err)) return -1;
        attn_maps_tokens(a, i, it->ids + i, k);
    }
    return attn_value_norms(a, err);
}

static void items_free(CorefItem *it, int n) {
    for (int i = 0; it && i < n; i++) {
        free(it[i].ids);
        free(it[i].ant);
    }
    free(it);
}

int attn_coref_run(Model *m, const AttnOptions *o, const CorefSentence *s, int n, AttnMaps *maps,
                   AttnCoref *c, Error *err) {
    const Config *cf = &m->config;
    const int heads = cf->n_layers * cf->n_heads;
    CorefItem *it = calloc((size_t)n, sizeof *it);
    double *q = malloc((size_t)n * sizeof *q), *dist = malloc((size_t)(n + 1) * sizeof *dist);
    float *vw = NULL;
    int rc = -1, cap = 0;
    memset(c, 0, sizeof *c);
    c->hits = calloc((size_t)heads, sizeof *c->hits);
    c->vhits = calloc((size_t)heads, sizeof *c->vhits);
    c->pvalue = malloc((size_t)heads * sizeof *c->pvalue);
    if (!it || !q || !dist || !c->hits || !c->vhits || !c->pvalue) {
        fail(err, "out of memory for the coref probe");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (coref_item(m->tokenizer, &s[i], cf->seq_len, &it[i], err)) goto done;
        if (it[i].n > cap) cap = it[i].n;
    }
    if (attn_maps_init(maps, o, m, it[0].n, cap, err) ||
        model_set_attn_hook(m, attn_hook, maps, cap, err))
        goto done;
    if (!(vw = malloc((size_t)cap * sizeof *vw))) {
        fail(err, "out of memory for the coref probe");
        goto done;
    }
    /* the last sentence fed is the first: its maps stay for the views */
    for (int i = n - 1; i >= 0; i--) {
        if (coref_feed(m, maps, &it[i], err)) goto done;
        coref_score(maps, &it[i], c, vw);
        q[i] = it[i].share;
        c->chance += it[i].share / n;
    }
    c->n = n;
    c->heads = heads;
    c->alpha = COREF_ALPHA / heads;
    for (int k = 0; k < heads; k++) c->pvalue[k] = tail_at_least(q, n, c->hits[k], dist);
    c->pron = it[0].pron;
    c->n_tokens = it[0].n;
    c->ant = it[0].ant;
    it[0].ant = NULL;
    rc = 0;
done:
    model_set_attn_hook(m, NULL, NULL, 0, NULL);
    items_free(it, n);
    free(q);
    free(dist);
    free(vw);
    return rc;
}

void attn_coref_free(AttnCoref *c) {
    free(c->hits);
    free(c->vhits);
    free(c->pvalue);
    free(c->ant);
    memset(c, 0, sizeof *c);
}

int attn_coref_role(const AttnCoref *c, int k) { return c->pvalue[k] < c->alpha; }

/* The heads in order of hits, then value-weighted hits, then (layer, head). */
static int better(const AttnCoref *c, int x, int y) {
    if (c->hits[x] != c->hits[y]) return c->hits[x] > c->hits[y];
    if (c->vhits[x] != c->vhits[y]) return c->vhits[x] > c->vhits[y];
    return x < y;
}

#define COREF_BEST 3 /* heads named on the last line */

void attn_coref_print(const AttnCoref *c, int n_heads, const char *source, FILE *f) {
    const int n = c->n;
    int best[COREF_BEST] = {-1, -1, -1}, n_role = 0;
    fprintf(f,
            "coref probe: %d sentences (%s); per head, the sentences whose pronoun (its first "
            "token) attends most to the antecedent among keys 1..p-1\n",
            n, source);
    fprintf(f,
            "chance: %.1f%% (the mean share of antecedent tokens among keys 1..p-1: %.1f of %d "
            "sentences); p = P(as many or more by chance), coref when p < %.2g (%.2g over %d "
            "heads)\n",
            100.0 * c->chance, c->chance * n, n, c->alpha, COREF_ALPHA, c->heads);
    for (int k = 0; k < c->heads; k++) {
        fprintf(f, "%d.%d coref %d/%d (%.1f%%)  value-weighted %d/%d (%.1f%%)  p %.2g%s\n",
                k / n_heads, k % n_heads, c->hits[k], n, 100.0 * c->hits[k] / n, c->vhits[k], n,
                100.0 * c->vhits[k] / n, c->pvalue[k], attn_coref_role(c, k) ? "  coref" : "");
        n_role += attn_coref_role(c, k);
        for (int r = 0; r < COREF_BEST; r++)
            if (best[r] < 0 || better(c, k, best[r])) {
                for (int t = COREF_BEST - 1; t > r; t--) best[t] = best[t - 1];
                best[r] = k;
                break;
            }
    }
    fprintf(f, "best heads:");
    for (int r = 0; r < COREF_BEST && best[r] >= 0; r++)
        fprintf(f, "%s %d.%d %d/%d (%.1f%%, p %.2g)", r ? "," : "", best[r] / n_heads,
                best[r] % n_heads, c->hits[best[r]], n, 100.0 * c->hits[best[r]] / n,
                c->pvalue[best[r]]);
    fprintf(f, "; %d head%s above chance\n", n_role, n_role == 1 ? "" : "s");
}
