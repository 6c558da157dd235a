/* cli.h: the command line of ./run (cli.c), read from one table of options. */
#ifndef CLI_H
#define CLI_H

#include <stdint.h>
#include <stdio.h>

#include "attn_views.h"
#include "common.h"

#define DEFAULT_MODEL "models/kjv.gguf" /* beside the program, when no model is given */

typedef struct {
    const char *model;
    const char *tokenizer; /* -z: a llama2.c checkpoint's tokenizer.bin, or NULL */
    const char *prompt;    /* NULL = empty prompt (BOS only); "-" = read stdin */
    int steps;             /* new tokens to generate */
    float temperature, top_p;
    int top_k;
    uint64_t seed;
    int batch;         /* prompt positions per forward call */
    int ctx;           /* positions to allocate (KV cache, RoPE tables); 0 = model_load's default */
    int threads;       /* 0 = OpenMP's default */
    int tokenize;      /* print the prompt's ids and exit */
    int parse_special; /* control-token spellings in the prompt become those tokens */
    const char *dump_logits;
    const char *ppl;  /* text file to measure perplexity on */
    AttnOptions attn; /* --dump-attn, --attn-html, --attn-show, --attn-stats */
    int verbose;
    int help; /* -h: print the usage and exit */
    char default_model[4096];
} Options;

/* Fills o from argv (argv[0] is the program, used to find the shipped model). Returns 0, or -1
   with a one-line error: an unknown option, a missing or malformed value, a value out of range. */
int cli_parse(Options *o, int argc, char **argv, Error *err);
/* The usage text, generated from the option table. */
void cli_usage(FILE *f);

#endif /* CLI_H */
