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
    OPT_LIST,   /* a repeatable string, appended to a StrList */
    OPT_EXPLAIN /* "L.H.POS" into attn.explain */
} OptKind;

typedef struct {
    const char *shrt; /* "-i", or NULL */
    const char *lng;  /* "--prompt" */
    const char *arg;  /* the value's name in the help, NULL for a flag */
    OptKind kind;
    size_t offset;    /* where the value goes in Options */
    double lo, hi;    /* range of a number: [lo, hi], unless `bounds` says otherwise */
    unsigned bounds;  /* LO_OPEN, OR_ZERO: what [lo, hi] alone cannot say */
    const char *help; /* lines after the first are indented under it */
} OptionSpec;

#define AT(field) offsetof(Options, field)

/* A number's range beyond [lo, hi]: its lower end excluded, (lo, hi], or 0 accepted besides (a
   value meaning "off" below a range whose smaller values make no sense). */
enum { LO_OPEN = 1, OR_ZERO = 2 };

static const OptionSpec OPTIONS[] = {
    {"-i", "--prompt", "TEXT", OPT_STRING, AT(prompt), 0, 0, 0,
     "prompt text; '-' reads it from stdin (default: empty)"},
    {"-n", "--n-predict", "N", OPT_INT, AT(steps), 0, 1 << 30, 0,
     "new tokens to generate after the prompt (default 128)"},
    {"-t", "--temp", "T", OPT_FLOAT, AT(temperature), 1e-3, 100.0, OR_ZERO,
     "temperature; 0 = greedy (default 0.8)"},
    {"-p", "--top-p", "P", OPT_FLOAT, AT(top_p), 0.0, 1.0, LO_OPEN,
     "nucleus sampling threshold; 1 = off (default 0.95)"},
    {"-k", "--top-k", "K", OPT_INT, AT(top_k), 0, 1 << 30, 0,
     "sample from the K most likely tokens; 0 = off (default 40)"},
    {"-s", "--seed", "S", OPT_SEED, AT(seed), 0, 0x7fffffff, 0,
     "random seed (default: from the clock)"},
    {"-c", "--ctx-size", "N", OPT_INT, AT(ctx), 0, 1 << 20, 0,
     "context to allocate, at most the model's; 0 = the model's\n"
     "context capped at 4096 (default 0)"},
    {NULL, "--kv-cache", "TYPE", OPT_STRING, AT(kv_cache_name), 0, 0, 0,
     "the KV cache's element type: f32 (default) or f16, half the\n"
     "bytes (keys and values rounded to nearest even)"},
    {"-b", "--batch-size", "N", OPT_INT, AT(batch), 1, 4096, 0,
     "prompt positions per forward pass; 1 = token by token (default 64)"},
    {NULL, "--min-p", "P", OPT_FLOAT, AT(min_p), 0.0, 1.0, 0,
     "keep tokens at least P times as likely as the best (before\n"
     "the temperature); 0 = off (default 0)"},
    {NULL, "--repeat-penalty", "R", OPT_FLOAT, AT(repeat_penalty), 1e-3, 100.0, 0,
     "divide a positive logit by R (multiply a negative one) for\n"
     "tokens among the last --repeat-last-n; 1 = off (default 1)"},
    {NULL, "--repeat-last-n", "N", OPT_INT, AT(repeat_last_n), 0, 1 << 20, 0,
     "tokens the penalties look back over; 0 = off (default 64)"},
    {NULL, "--presence-penalty", "A", OPT_FLOAT, AT(presence_penalty), -100.0, 100.0, 0,
     "subtract A from the logit of each token seen (default 0)"},
    {NULL, "--frequency-penalty", "A", OPT_FLOAT, AT(frequency_penalty), -100.0, 100.0, 0,
     "subtract A times its count from each token's logit (default 0)"},
    {NULL, "--stop", "TEXT", OPT_LIST, AT(stop), 0, 0, 0,
     "end the reply before TEXT, not printed; repeatable (up to 8)"},
    {"-md", "--model-draft", "FILE", OPT_STRING, AT(draft_model), 0, 0, 0,
     "speculative decoding: this smaller model with the same\n"
     "vocabulary drafts tokens greedily, the model checks them all in\n"
     "one pass; the output is the same as without (docs/speculative.md)"},
    {NULL, "--draft-max", "N", OPT_INT, AT(draft_max), 1, 64, 0,
     "tokens the draft model proposes per step (default 8)"},
    {NULL, "--lookup", "N", OPT_INT, AT(lookup), 0, 64, 0,
     "speculative decoding by prompt lookup: propose up to N tokens\n"
     "that followed the last earlier occurrence of the last 3 (2, 1)\n"
     "tokens in the prompt or the text so far; 0 = off (default 0)"},
    {NULL, "--chat", NULL, OPT_FLAG, AT(chat), 0, 0, 0,
     "chat: user turns from the terminal or stdin (one per line),\n"
     "replies streamed; /exit or Ctrl-D ends, Ctrl-C stops a reply.\n"
     "With --tokenize: stdin's lines alternate user and assistant\n"
     "(last: user); prints the ids fed up to the first reply"},
    {"-m", "--mode", "MODE", OPT_STRING, AT(mode), 0, 0, 0,
     "generate (default) or chat (= --chat), as llama2.c"},
    {"-y", "--system-prompt", "TEXT", OPT_STRING, AT(system), 0, 0, 0,
     "the chat's system message (default: the format's, if any)"},
    {NULL, "--chat-template", "NAME", OPT_STRING, AT(chat_template), 0, 0, 0,
     "chat format instead of the one recognized in the file: chatml,\n"
     "qwen2.5, qwen3, smollm2, llama3, llama3.1, llama2, zephyr,\n"
     "gemma, phi3, mistral, mistral-nemo"},
    {NULL, "--chat-date", "TEXT", OPT_STRING, AT(chat_date), 0, 0, 0,
     "the date Llama 3.1's template writes (default: today,\n"
     "as \"27 Nov 2026\")"},
    {NULL, "--no-think", NULL, OPT_FLAG, AT(no_think), 0, 0, 0,
     "Qwen3: replies start with an empty <think></think> block"},
    {NULL, "--context-shift", NULL, OPT_FLAG, AT(context_shift), 0, 0, 0,
     "when the chat fills the context, drop the oldest turns (the\n"
     "system message and --keep tokens stay) and recompute the rest;\n"
     "default: stop with a message"},
    {NULL, "--keep", "N", OPT_INT, AT(keep), 0, 1 << 30, 0,
     "tokens after the system message a context shift keeps (def. 0)"},
    {NULL, "--threads", "N", OPT_INT, AT(threads), 1, 1024, 0,
     "threads for the matrix products (default: all cores)"},
    {NULL, "--no-repack", NULL, OPT_FLAG, AT(no_repack), 0, 0, 0,
     "read the weights in place from the file; by default they are\n"
     "copied at load into 2 MB pages for faster decoding and prompts\n"
     "(Q8_0, Q4_0, Q5_0, Q4_K and Q6_K repacked, with AVX-512 VNNI),\n"
     "and the file's pages under them released"},
    {"-z", "--tokenizer", "PATH", OPT_STRING, AT(tokenizer), 0, 0, 0,
     "tokenizer.bin of a llama2.c checkpoint (default: tokenizer.bin\n"
     "beside the model, else in the current directory)"},
    {NULL, "--tokenize", NULL, OPT_FLAG, AT(tokenize), 0, 0, 0,
     "print the prompt's token ids on one line and exit"},
    {NULL, "--parse-special", NULL, OPT_FLAG, AT(parse_special), 0, 0, 0,
     "control tokens spelled in the prompt (<|im_start|>) become\n"
     "those tokens, as llama.cpp's parse_special; default: text"},
    {NULL, "--dump-logits", "PATH", OPT_STRING, AT(dump_logits), 0, 0, 0,
     "write the logits of every position fed to the model as .npy\n"
     "float32 [T, vocab], T = prompt tokens + generated tokens - 1"},
    {NULL, "--dump-layers", "PATH", OPT_STRING, AT(dump_layers), 0, 0, 0,
     "write the residual stream of the prompt's positions as .npy\n"
     "float32 [layers + 1, prompt tokens, dim]: the embeddings, then\n"
     "the stream after each layer"},
    {NULL, "--ppl", "FILE", OPT_STRING, AT(ppl), 0, 0, 0,
     "print the model's perplexity on a text file and exit"},
    {NULL, "--dump-attn", "PATH", OPT_STRING, AT(attn.dump), 0, 0, 0,
     "write the attention weights of the same T positions as .npy,\n"
     "float32 [layers, heads, T, T] (row = query, column = key)"},
    {NULL, "--attn-html", "PATH", OPT_STRING, AT(attn.html), 0, 0, 0,
     "write a self-contained HTML page of every layer and head"},
    {NULL, "--attn-show", "L.H", OPT_HEAD, 0, 0, 0, 0,
     "after the text, print layer L head H (from 0) as a heatmap on\n"
     "stdout with each query's top three keys"},
    {NULL, "--attn-stats", NULL, OPT_FLAG, AT(attn.stats), 0, 0, 0,
     "after the text, print one line of statistics per layer and head\n"
     "(attention maps take layers x heads x T^2 x 4 bytes, e.g.\n"
     "12 x 12 x 200^2 x 4 = 23 MB; refused above 2 GiB)"},
    {NULL, "--attn-explain", "L.H.POS", OPT_EXPLAIN, 0, 0, 0, 0,
     "after the text, follow the query at position POS of layer L\n"
     "head H through the formula, with the engine's numbers"},
    {NULL, "--attn-probe", "KIND", OPT_STRING, AT(attn.probe), 0, 0, 0,
     "replace the prompt by a probe: 'induction' = 50 random tokens\n"
     "of the vocabulary, then the same 50 again (the atlas then\n"
     "scores induction and copying); 'coref' = sentences with a\n"
     "pronoun and its antecedent marked: per head, how often the\n"
     "pronoun attends most to the antecedent (nothing generated)"},
    {NULL, "--probe-file", "FILE", OPT_STRING, AT(attn.probe_file), 0, 0, 0,
     "the coref probe's sentences, one a line, the antecedent in\n"
     "[brackets], the pronoun in {braces} (default: 44 built in)"},
    {NULL, "--dump-attn-norms", "PATH", OPT_STRING, AT(attn.dump_norms), 0, 0, 0,
     "write ||p_ij W_O,h v_j||, key j's contribution to query i's\n"
     "output, as .npy float32 [layers, heads, T, T]"},
    {"-v", "--verbose", NULL, OPT_FLAG, AT(verbose), 0, 0, 0,
     "print the model's configuration and KV-cache size, and the\n"
     "attention share of the FLOPs, on stderr"},
    {"-h", "--help", NULL, OPT_FLAG, AT(help), 0, 0, 0, "show this help"},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

static int is_number(const OptionSpec *s) {
    return s->kind == OPT_INT || s->kind == OPT_FLOAT || s->kind == OPT_SEED;
}

/* [lo, hi], or (lo, hi] with LO_OPEN; integers in full. */
static void range_text(const OptionSpec *s, char *buf, size_t size) {
    const char *fmt = s->kind == OPT_FLOAT ? "%c%g, %g]" : "%c%.0f, %.0f]";
    snprintf(buf, size, fmt, s->bounds & LO_OPEN ? '(' : '[', s->lo, s->hi);
}

/* Whether the value typed, `typed`, stored as v, is in the range: a float is checked as stored,
   against its bounds as floats (1e-50 is 0 as a float, 1e300 infinite, 1e-6 9.99999997e-7), but
   the 0 of OR_ZERO must be typed as 0. */
static int in_range(const OptionSpec *s, double typed, double v) {
    const int f = s->kind == OPT_FLOAT;
    const double lo = f ? (double)(float)s->lo : s->lo, hi = f ? (double)(float)s->hi : s->hi;
    if ((s->bounds & OR_ZERO) && typed == 0.0) return 1;
    return (s->bounds & LO_OPEN ? v > lo : v >= lo) && v <= hi; /* NaN: neither */
}

int cli_range(int i, CliRange *out) {
    for (size_t k = 0; k < N_OPTIONS; k++) {
        const OptionSpec *s = &OPTIONS[k];
        if (!is_number(s) || i-- > 0) continue;
        *out = (CliRange){.flag = s->lng,
                          .integer = s->kind != OPT_FLOAT,
                          .lo = s->lo,
                          .hi = s->hi,
                          .lo_open = !!(s->bounds & LO_OPEN),
                          .or_zero = !!(s->bounds & OR_ZERO)};
        range_text(s, out->text, sizeof out->text);
        return 1;
    }
    return 0;
}

void cli_usage(FILE *f) {
    fprintf(f,
            "usage: ./run [MODEL.gguf | MODEL.bin] [options]\n"
            "Generates text from a GGUF model (architectures llama, qwen2, qwen3, gemma3, phi3,\n"
            "gpt2) or a llama2.c checkpoint; without MODEL, from the model shipped in\n"
            "" DEFAULT_MODEL " next to the program.\n\n");
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
        if (is_number(s)) {
            char range[80];
            range_text(s, range, sizeof range);
            fprintf(f, "%25s%s in %s%s\n", "", s->arg, range, s->bounds & OR_ZERO ? ", or 0" : "");
        }
    }
}

/* Stores val (NULL for a flag) as s says; an error names the option and what it expects. */
static int store(Options *o, const OptionSpec *s, const char *flag, const char *val, Error *err) {
    void *field = (char *)o + s->offset;
    char *end = NULL;
    double v = 0.0;
    if (is_number(s)) {
        errno = 0;
        const double typed =
            s->kind == OPT_FLOAT ? strtod(val, &end) : (double)strtol(val, &end, 10);
        v = s->kind == OPT_FLOAT ? (double)(float)typed : typed;
        if (errno || end == val || *end || !in_range(s, typed, v)) {
            char range[80];
            range_text(s, range, sizeof range);
            return fail(err, "%s expects %s%s in %s, got '%s'", flag,
                        s->bounds & OR_ZERO ? "0 or " : "",
                        s->kind == OPT_FLOAT ? "a number" : "an integer", range, val);
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
    case OPT_LIST: {
        StrList *list = field;
        if (list->n == MAX_STOP) return fail(err, "%s is allowed at most %d times", flag, MAX_STOP);
        if (!*val) return fail(err, "%s expects a non-empty text", flag);
        list->items[list->n++] = val;
        break;
    }
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
    o->repeat_penalty = 1.0f;
    o->repeat_last_n = 64;
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
    if (o->kv_cache_name && kv_type_from_name(o->kv_cache_name, &o->kv_cache))
        return fail(err, "--kv-cache expects f32 or f16, got '%s'", o->kv_cache_name);
    if (o->mode) {
        if (strcmp(o->mode, "chat") == 0)
            o->chat = 1;
        else if (strcmp(o->mode, "generate") != 0)
            return fail(err, "-m expects generate or chat, got '%s'", o->mode);
    }
    if ((o->chat || o->ppl) && o->dump_layers)
        return fail(err, "--dump-layers does not work with --chat or --ppl: give a prompt with -i");
    if (o->chat && (o->ppl || attn_wanted(&o->attn)))
        return fail(err, "--chat does not work with --ppl or the attention outputs");
    if (!o->chat && (o->system || o->chat_template || o->chat_date || o->no_think ||
                     o->context_shift || o->keep))
        return fail(err, "-y, --chat-template, --chat-date, --no-think, --context-shift and "
                         "--keep need --chat");
    if (o->draft_model && o->lookup)
        return fail(err, "-md and --lookup are two ways to draft tokens: give one");
    if (o->draft_max && !o->draft_model) return fail(err, "--draft-max needs -md (a draft model)");
    if (!o->draft_max) o->draft_max = DRAFT_MAX_DEFAULT;
    if ((o->draft_model || o->lookup) && (o->ppl || o->dump_logits || attn_wanted(&o->attn)))
        return fail(err, "-md and --lookup (speculative decoding) do not work with --ppl, "
                         "--dump-logits or the attention outputs: run those without them");
    if (o->ppl && attn_wanted(&o->attn))
        return fail(err, "the attention outputs (--dump-attn, --attn-*) do not work with --ppl");
    if (o->attn.probe && strcmp(o->attn.probe, "induction") != 0 &&
        strcmp(o->attn.probe, "coref") != 0)
        return fail(err, "--attn-probe: the probes are 'induction' and 'coref', got '%s'",
                    o->attn.probe);
    if (o->attn.probe_file && !(o->attn.probe && strcmp(o->attn.probe, "coref") == 0))
        return fail(err, "--probe-file needs --attn-probe coref");
    if (o->attn.probe && strcmp(o->attn.probe, "coref") == 0 && o->tokenize)
        return fail(err, "--tokenize prints one prompt's ids, and the coref probe runs many "
                         "sentences: tokenize one with -i (markers removed)");
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
