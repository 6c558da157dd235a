/* cli.c: every option of ./run is one row of OPTIONS: its spellings, its argument, its help and
 * how its value is stored. The parser and the --help text both read the table, so an option
 * cannot be known to one and missing from the other, and anything not in it is an error.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

typedef enum {
    OPT_FLAG,   /* no value: sets an int to 1 */
    OPT_STRING, /* a const char* borrowed from argv */
    OPT_INT,    /* an int in [lo, hi] */
    OPT_FLOAT,  /* a float in [lo, hi] */
    OPT_SEED,   /* a uint64_t in [lo, hi] */
    OPT_HEAD,   /* "L.H" into attn.show_layer, attn.show_head */
    OPT_EXPLAIN /* "L.H.POS" into attn.explain */
} OptKind;

typedef struct {
    const char *shrt; /* "-i", or NULL */
    const char *lng;  /* "--prompt" */
    const char *arg;  /* the value's name in the help, NULL for a flag */
    OptKind kind;
    size_t offset;    /* where the value goes in Options */
    double lo, hi;    /* range of a number */
    const char *help; /* lines after the first are indented under it */
} OptionSpec;

#define AT(field) offsetof(Options, field)

static const OptionSpec OPTIONS[] = {
    {"-i", "--prompt", "TEXT", OPT_STRING, AT(prompt), 0, 0,
     "prompt text; '-' reads it from stdin (default: empty)"},
    {"-n", "--n-predict", "N", OPT_INT, AT(steps), 0, 1 << 30,
     "new tokens to generate after the prompt (default 128)"},
    {"-t", "--temp", "T", OPT_FLOAT, AT(temperature), 0.0, 100.0,
     "temperature; 0 = greedy (default 0.8)"},
    {"-p", "--top-p", "P", OPT_FLOAT, AT(top_p), 1e-6, 1.0,
     "nucleus sampling threshold in (0, 1]; 1 = off (default 0.95)"},
    {"-k", "--top-k", "K", OPT_INT, AT(top_k), 0, 1 << 30,
     "sample from the K most likely tokens; 0 = off (default 40)"},
    {"-s", "--seed", "S", OPT_SEED, AT(seed), 0, 0x7fffffff,
     "random seed (default: from the clock)"},
    {"-b", "--batch-size", "N", OPT_INT, AT(batch), 1, 4096,
     "prompt positions per forward pass; 1 = token by token (default 64)"},
    {NULL, "--threads", "N", OPT_INT, AT(threads), 1, 1024,
     "threads for the matrix products (default: all cores)"},
    {NULL, "--tokenize", NULL, OPT_FLAG, AT(tokenize), 0, 0,
     "print the prompt's token ids on one line and exit"},
    {NULL, "--dump-logits", "PATH", OPT_STRING, AT(dump_logits), 0, 0,
     "write the logits of every position fed to the model as .npy\n"
     "float32 [T, vocab], T = prompt tokens + generated tokens - 1"},
    {NULL, "--ppl", "FILE", OPT_STRING, AT(ppl), 0, 0,
     "print the model's perplexity on a text file and exit"},
    {NULL, "--dump-attn", "PATH", OPT_STRING, AT(attn.dump), 0, 0,
     "write the attention weights of the same T positions as .npy,\n"
     "float32 [layers, heads, T, T] (row = query, column = key)"},
    {NULL, "--attn-html", "PATH", OPT_STRING, AT(attn.html), 0, 0,
     "write a self-contained HTML page of every layer and head"},
    {NULL, "--attn-show", "L.H", OPT_HEAD, 0, 0, 0,
     "after the text, print layer L head H (from 0) as a heatmap on\n"
     "stdout with each query's top three keys"},
    {NULL, "--attn-stats", NULL, OPT_FLAG, AT(attn.stats), 0, 0,
     "after the text, print one line of statistics per layer and head\n"
     "(attention maps take layers x heads x T^2 x 4 bytes, e.g.\n"
     "12 x 12 x 200^2 x 4 = 23 MB; refused above 2 GiB)"},
    {NULL, "--attn-explain", "L.H.POS", OPT_EXPLAIN, 0, 0, 0,
     "after the text, follow the query at position POS of layer L\n"
     "head H through the formula, with the engine's numbers"},
    {NULL, "--attn-probe", "NAME", OPT_STRING, AT(attn.probe), 0, 0,
     "replace the prompt by a probe: 'induction' = 50 random tokens\n"
     "of the vocabulary, then the same 50 again (the atlas then\n"
     "scores induction and copying)"},
    {NULL, "--dump-attn-norms", "PATH", OPT_STRING, AT(attn.dump_norms), 0, 0,
     "write ||p_ij W_O,h v_j||, key j's contribution to query i's\n"
     "output, as .npy float32 [layers, heads, T, T]"},
    {"-v", "--verbose", NULL, OPT_FLAG, AT(verbose), 0, 0,
     "print the model's configuration and KV-cache size, and the\n"
     "attention share of the FLOPs, on stderr"},
    {"-h", "--help", NULL, OPT_FLAG, AT(help), 0, 0, "show this help"},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

void cli_usage(FILE *f) {
    fprintf(f,
            "usage: ./run [MODEL.gguf] [options]\n"
            "Generates text from a GGUF model (llama, qwen2 or gpt2 architecture); without MODEL,\n"
            "from the model shipped in " DEFAULT_MODEL " next to the program.\n\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const OptionSpec *s = &OPTIONS[i];
        char names[64];
        int len =
            snprintf(names, sizeof names, "%s%s%s%s%s", s->shrt ? s->shrt : "",
                     s->shrt ? ", " : "    ", s->lng, s->arg ? " " : "", s->arg ? s->arg : "");
        fprintf(f, "  %s", names);
        const char *line = s->help;
        int pad = len < 22 ? 23 - len : 1; /* help starts in column 25 */
        for (;;) {
            const char *nl = strchr(line, '\n');
            int n = nl ? (int)(nl - line) : (int)strlen(line);
            fprintf(f, "%*s%.*s\n", pad, "", n, line);
            if (!nl) break;
            line = nl + 1;
            pad = 25;
        }
    }
}

/* Stores val (NULL for a flag) as s says; an error names the option and what it expects. */
static int store(Options *o, const OptionSpec *s, const char *flag, const char *val, Error *err) {
    void *field = (char *)o + s->offset;
    char *end = NULL;
    double v = 0.0;
    if (s->kind == OPT_INT || s->kind == OPT_FLOAT || s->kind == OPT_SEED) {
        errno = 0;
        v = s->kind == OPT_FLOAT ? strtod(val, &end) : (double)strtol(val, &end, 10);
        if (errno || end == val || *end || !(v >= s->lo && v <= s->hi)) {
            if (s->kind == OPT_FLOAT)
                return fail(err, "%s expects a number in [%g, %g], got '%s'", flag, s->lo, s->hi,
                            val);
            return fail(err, "%s expects an integer in [%.0f, %.0f], got '%s'", flag, s->lo, s->hi,
                        val);
        }
    }
    switch (s->kind) {
    case OPT_FLAG: *(int *)field = 1; break;
    case OPT_STRING: *(const char **)field = val; break;
    case OPT_INT: *(int *)field = (int)v; break;
    case OPT_FLOAT: *(float *)field = (float)v; break;
    case OPT_SEED: *(uint64_t *)field = (uint64_t)v; break;
    case OPT_HEAD: {
        int lh[2];
        if (attn_parse_ints(val, lh, 2, flag, err)) return -1;
        o->attn.show_layer = lh[0];
        o->attn.show_head = lh[1];
        return 0;
    }
    case OPT_EXPLAIN: return attn_parse_ints(val, o->attn.explain, 3, flag, err);
    }
    return 0;
}

static const OptionSpec *find_option(const char *a) {
    for (size_t i = 0; i < N_OPTIONS; i++)
        if ((OPTIONS[i].shrt && strcmp(a, OPTIONS[i].shrt) == 0) || strcmp(a, OPTIONS[i].lng) == 0)
            return &OPTIONS[i];
    return NULL;
}

int cli_parse(Options *o, int argc, char **argv, Error *err) {
    memset(o, 0, sizeof *o);
    o->steps = 128;
    o->temperature = 0.8f;
    o->top_p = 0.95f;
    o->top_k = 40;
    o->seed = (uint64_t)time(NULL);
    o->batch = 64;
    o->attn.show_layer = o->attn.show_head = -1;
    o->attn.explain[0] = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->model)
                return fail(err, "unexpected argument '%s' (the model is '%s')", a, o->model);
            o->model = a;
            continue;
        }
        const OptionSpec *s = find_option(a);
        if (!s) return fail(err, "unknown option '%s' (see ./run --help)", a);
        const char *val = NULL;
        if (s->arg && !(val = i + 1 < argc ? argv[++i] : NULL))
            return fail(err, "option %s needs a value (%s)", a, s->arg);
        if (store(o, s, a, val, err)) return -1;
        if (o->help) return 0;
    }
    if (o->ppl && attn_wanted(&o->attn))
        return fail(err, "the attention outputs (--dump-attn, --attn-*) do not work with --ppl");
    if (o->attn.probe && strcmp(o->attn.probe, "induction") != 0)
        return fail(err, "--attn-probe: the probe is 'induction', got '%s'", o->attn.probe);
    if (o->attn.probe && o->prompt)
        return fail(err, "--attn-probe replaces the prompt: give one or the other");
    if (!o->model) { /* the shipped model, found next to the program */
        const char *prog = argc > 0 && argv[0] ? argv[0] : "./run";
        const char *slash = strrchr(prog, '/');
        int dir = slash ? (int)(slash - prog) : 1;
        snprintf(o->default_model, sizeof o->default_model, "%.*s/%s", dir, slash ? prog : ".",
                 DEFAULT_MODEL);
        o->model = o->default_model;
        if (access(o->model, R_OK) != 0)
            return fail(err, "no model given and the shipped model %s is missing (see --help)",
                        o->model);
    }
    return 0;
}
