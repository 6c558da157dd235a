/* cli.h: the command line of ./run (cli.c), read from one table of options. */
#ifndef CLI_H
#define CLI_H

#include <stdint.h>
#include <stdio.h>

#include "attn_maps.h"
#include "common.h"

#define DEFAULT_MODEL "models/kjv.gguf" /* beside the program, when no model is given */

#define MAX_STOP 8 /* --stop strings */

#define DRAFT_MAX_DEFAULT 8 /* --draft-max: a first guess, not yet chosen by measurement */

/* A repeatable string option's values, borrowed from argv. */
typedef struct {
    const char *items[MAX_STOP];
    int n;
} StrList;

typedef struct {
    const char *model;
    const char *tokenizer; /* -z: a llama2.c checkpoint's tokenizer.bin, or NULL */
    const char *prompt;    /* NULL = empty prompt (BOS only); "-" = read stdin */
    int steps;             /* new tokens to generate */
    float temperature, top_p;
    int top_k;
    uint64_t seed;
    int batch; /* prompt positions per forward call */
    int ctx;   /* positions to allocate (KV cache, RoPE tables); 0 = model_load's default */
    const char *kv_cache_name; /* --kv-cache: "f32" or "f16", or NULL */
    KvType kv_cache;           /* the KV cache's element type it names (default KV_F32) */
    int threads;               /* 0 = OpenMP's default */
    int no_repack;             /* read the weights in the file (no model_repack) */
    int tokenize;              /* print the prompt's ids and exit */
    int parse_special;         /* control-token spellings in the prompt become those tokens */
    const char *dump_logits;
    const char *dump_layers; /* the prompt's residual stream after each layer, .npy */
    const char *ppl;         /* text file to measure perplexity on */
    AttnOptions attn;        /* --dump-attn, --attn-html, --attn-show, --attn-stats */
    /* chat (chat.h) */
    int chat;                  /* --chat, or -m chat (llama2.c's spelling) */
    const char *mode;          /* -m: "generate" or "chat" */
    const char *system;        /* -y: the system message; NULL = the format's default */
    const char *chat_template; /* a format's name; NULL = recognized from the file */
    const char *chat_date;     /* Llama 3.1's date line; NULL = today */
    int no_think;              /* Qwen3: replies open with an empty <think></think> */
    int context_shift;         /* a full context drops the oldest turns; 0 = stop */
    int keep;                  /* tokens after the system message kept by a shift */
    /* sampling, llama.cpp's names (sampler.h) */
    float min_p, repeat_penalty, presence_penalty, frequency_penalty;
    int repeat_last_n;
    StrList stop; /* --stop: generation ends before any of these, which are not printed */
    /* speculative decoding (spec.h) */
    const char *draft_model; /* -md: a smaller model with the same vocabulary drafts */
    int draft_max;           /* tokens it drafts per step */
    int lookup;              /* prompt lookup: tokens proposed per step; 0 = off */
    int verbose;
    int help; /* -h: print the usage and exit */
    char default_model[4096];
} Options;

/* Fills o from argv (argv[0] is the program, used to find the shipped model). Returns 0, or -1
   with a one-line error: an unknown option, a missing or malformed value, a value out of range. */
int cli_parse(Options *o, int argc, char **argv, Error *err);
/* A numeric option's range, as the option table states it. */
typedef struct {
    const char *flag; /* its long spelling ("--temp") */
    int integer;      /* 1: an integer; 0: a number (stored as a float) */
    double lo, hi;
    int lo_open;   /* 1: lo is excluded, (lo, hi] */
    int or_zero;   /* 1: 0 is accepted besides (it means "off") */
    char text[80]; /* as --help and the errors write it: "[0, 1]", "(0, 1]" */
} CliRange;
/* The range of the i-th numeric option (i from 0) into out; 0 when there are fewer. */
int cli_range(int i, CliRange *out);
/* The usage text, generated from the option table. */
void cli_usage(FILE *f);

#endif /* CLI_H */
