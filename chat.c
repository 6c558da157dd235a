/* chat.c: the chat formats as a table, their detection, and rendering to token ids (chat.h).
 *
 * A format is data: the strings around each turn, the end-of-turn token, where the system message
 * goes, a default system message, the generation prompt. Strings of the table may spell the
 * format's special tokens, which become their ids; "{date}" stands for the date line's date.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat.h"

typedef enum {
    SYS_TURN,     /* a turn of its own, only when there is a system message */
    SYS_ALWAYS,   /* a turn of its own, written even when empty (Llama 3.1's date lines) */
    SYS_FOLD,     /* no system role: sys_prefix + message + sys_suffix opens the first user turn */
    SYS_FOLD_LAST /* the same in the last user turn (Mistral Nemo's template); a live chat, whose
                     earlier turns are in the cache, keeps it in the first, as llama.cpp does */
} SystemMode;

struct ChatFormat {
    const char *name;
    const char *needs[3];    /* detection: the template holds all of these... */
    const char *lacks[2];    /* ...and none of these */
    const char *specials[8]; /* spellings that are tokens when the vocabulary has them */
    const char *eot;         /* ends a turn; the reply stops there (must be a token) */
    const char *start;       /* once, before everything */
    SystemMode system;
    const char *sys_prefix, *sys_suffix;
    const char *user_prefix, *user_suffix;
    const char *asst_prefix;       /* before a reply in the history */
    const char *asst_before_eot;   /* after a reply's text, before eot */
    const char *after_eot;         /* after eot, closing the assistant's turn */
    const char *gen;               /* the generation prompt */
    const char *gen_no_think;      /* the same with thinking off (Qwen3), or NULL */
    const char *default_system;    /* when no -y is given, or NULL */
    int trim_content, trim_system; /* strip surrounding whitespace (Jinja's trim) */
};

#define CHATML_SPECIALS                                                                            \
    { "<|im_start|>", "<|im_end|>" }
#define CHATML_TURNS                                                                               \
    "<|im_end|>", "", SYS_TURN, "<|im_start|>system\n", "<|im_end|>\n", "<|im_start|>user\n",      \
        "<|im_end|>\n", "<|im_start|>assistant\n", "", "\n", "<|im_start|>assistant\n"

/* Order matters: the first row whose markers match is the format (Qwen3 before plain ChatML). */
static const ChatFormat FORMATS[] = {
    {"qwen3",
     {"<|im_start|>", "enable_thinking"},
     {NULL},
     CHATML_SPECIALS,
     CHATML_TURNS,
     "<|im_start|>assistant\n<think>\n\n</think>\n\n",
     NULL,
     0,
     0},
    {"qwen2.5",
     {"<|im_start|>", "You are Qwen, created by Alibaba Cloud"},
     {NULL},
     CHATML_SPECIALS,
     CHATML_TURNS,
     NULL,
     "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
     0,
     0},
    {"smollm2",
     {"<|im_start|>", "named SmolLM"},
     {NULL},
     CHATML_SPECIALS,
     CHATML_TURNS,
     NULL,
     "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
     0,
     0},
    {"chatml", {"<|im_start|>"}, {NULL}, CHATML_SPECIALS, CHATML_TURNS, NULL, NULL, 0, 0},
    {"llama3.1",
     {"<|start_header_id|>", "Cutting Knowledge Date"},
     {NULL},
     {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
     "<|eot_id|>",
     "<|begin_of_text|>",
     SYS_ALWAYS,
     "<|start_header_id|>system<|end_header_id|>\n\n"
     "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n",
     "<|eot_id|>",
     "<|start_header_id|>user<|end_header_id|>\n\n",
     "<|eot_id|>",
     "<|start_header_id|>assistant<|end_header_id|>\n\n",
     "",
     "",
     "<|start_header_id|>assistant<|end_header_id|>\n\n",
     NULL,
     NULL,
     1,
     1},
    {"llama3",
     {"<|start_header_id|>"},
     {NULL},
     {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},
     "<|eot_id|>",
     "<|begin_of_text|>",
     SYS_TURN,
     "<|start_header_id|>system<|end_header_id|>\n\n",
     "<|eot_id|>",
     "<|start_header_id|>user<|end_header_id|>\n\n",
     "<|eot_id|>",
     "<|start_header_id|>assistant<|end_header_id|>\n\n",
     "",
     "",
     "<|start_header_id|>assistant<|end_header_id|>\n\n",
     NULL,
     NULL,
     1,
     1},
    {"gemma",
     {"<start_of_turn>"},
     {NULL},
     {"<bos>", "<start_of_turn>", "<end_of_turn>"},
     "<end_of_turn>",
     "<bos>",
     SYS_FOLD,
     "",
     "\n\n",
     "<start_of_turn>user\n",
     "<end_of_turn>\n",
     "<start_of_turn>model\n",
     "",
     "\n",
     "<start_of_turn>model\n",
     NULL,
     NULL,
     1,
     0},
    {"phi3",
     {"<|user|>", "<|end|>"},
     {NULL},
     {"<s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"},
     "<|end|>",
     "<s>",
     SYS_TURN,
     "<|system|>\n",
     "<|end|>\n",
     "<|user|>\n",
     "<|end|>\n",
     "<|assistant|>\n",
     "",
     "\n",
     "<|assistant|>\n",
     NULL,
     NULL,
     0,
     0},
    {"zephyr",
     {"<|user|>"},
     {NULL},
     {"</s>", "<|system|>", "<|user|>", "<|assistant|>"},
     "</s>",
     "",
     SYS_TURN,
     "<|system|>\n",
     "</s>\n",
     "<|user|>\n",
     "</s>\n",
     "<|assistant|>\n",
     "",
     "\n",
     "<|assistant|>\n",
     NULL,
     NULL,
     0,
     0},
    {"llama2",
     {"[INST]", "<<SYS>>"},
     {NULL},
     {"<s>", "</s>"},
     "</s>",
     "",
     SYS_FOLD,
     "<<SYS>>\n",
     "\n<</SYS>>\n\n",
     "<s>[INST] ",
     " [/INST]",
     " ",
     " ",
     "",
     "",
     NULL,
     NULL,
     1,
     1},
    {"mistral",
     {"[INST] "},
     {NULL},
     {"<s>", "</s>", "[INST]", "[/INST]"},
     "</s>",
     "<s>",
     SYS_FOLD,
     "",
     "\n\n",
     "[INST] ",
     " [/INST]",
     "",
     "",
     "",
     "",
     NULL,
     NULL,
     0,
     0},
    {"mistral-nemo",
     {"[INST]"},
     {NULL},
     {"<s>", "</s>", "[INST]", "[/INST]"},
     "</s>",
     "<s>",
     SYS_FOLD_LAST,
     "",
     "\n\n",
     "[INST]",
     "[/INST]",
     "",
     "",
     "",
     "",
     NULL,
     NULL,
     0,
     0},
};
#define N_FORMATS (sizeof FORMATS / sizeof FORMATS[0])
#define N_SPECIALS (sizeof FORMATS[0].specials / sizeof FORMATS[0].specials[0])

const char *chat_format_names(void) {
    static char names[256];
    if (!names[0]) {
        size_t len = 0;
        for (size_t i = 0; i < N_FORMATS; i++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                                    FORMATS[i].name);
    }
    return names;
}

static int contains(const char *s, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++)
        if (memcmp(s + i, needle, n) == 0) return 1;
    return 0;
}

const ChatFormat *chat_detect(const char *tmpl, size_t len) {
    for (size_t i = 0; i < N_FORMATS; i++) {
        const ChatFormat *f = &FORMATS[i];
        int ok = 1;
        for (int k = 0; k < 3 && f->needs[k] && ok; k++) ok = contains(tmpl, len, f->needs[k]);
        for (int k = 0; k < 2 && f->lacks[k] && ok; k++) ok = !contains(tmpl, len, f->lacks[k]);
        if (ok) return f;
    }
    return NULL;
}

const ChatFormat *chat_format_by_name(const char *name) {
    for (size_t i = 0; i < N_FORMATS; i++)
        if (strcmp(FORMATS[i].name, name) == 0) return &FORMATS[i];
    return NULL;
}

const char *chat_format_name(const ChatFormat *f) { return f->name; }

int chat_init(Chat *c, const ChatFormat *f, const Tokenizer *t, const char *system,
              const char *date, int no_think, Error *err) {
    memset(c, 0, sizeof *c);
    c->format = f;
    c->tok = t;
    c->system = system ? system : f->default_system;
    if (no_think && !f->gen_no_think)
        return fail(err, "--no-think: the %s format has no thinking switch", f->name);
    c->no_think = no_think;
    if (!date) { /* what Hugging Face's strftime_now("%d %b %Y") writes */
        time_t now = time(NULL);
        struct tm tm;
        strftime(c->today, sizeof c->today, "%d %b %Y", localtime_r(&now, &tm));
        date = c->today;
    }
    c->date = date;
    for (size_t k = 0; k < N_SPECIALS; k++)
        c->special_ids[k] =
            f->specials[k] ? tokenizer_find_special(t, f->specials[k], strlen(f->specials[k])) : -1;
    c->eot = tokenizer_find_special(t, f->eot, strlen(f->eot));
    if (c->eot < 0)
        return fail(err,
                    "the %s chat format ends each turn with %s, which is not a special token of "
                    "this model's vocabulary",
                    f->name, f->eot);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Rendering: ids so far, and the text of the segment since the last special token */

int idvec_push(IdVec *v, const int *ids, int n, Error *err) {
    if (v->n + n > v->cap) {
        int cap = v->cap ? v->cap : 64;
        while (cap < v->n + n) cap *= 2;
        int *p = realloc(v->ids, (size_t)cap * sizeof *p);
        if (!p) return fail(err, "out of memory (%d token ids)", cap);
        v->ids = p;
        v->cap = cap;
    }
    memcpy(v->ids + v->n, ids, (size_t)n * sizeof *ids);
    v->n += n;
    return 0;
}

void idvec_free(IdVec *v) {
    free(v->ids);
    *v = (IdVec){NULL, 0, 0};
}

typedef struct {
    const Chat *chat;
    IdVec *out;
    char *text; /* the pending segment, not NUL-terminated */
    size_t len, cap;
} Builder;

static int add_text(Builder *b, const char *s, size_t n, Error *err) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->text, cap);
        if (!p) return fail(err, "out of memory rendering the chat");
        b->text = p;
        b->cap = cap;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
    return 0;
}

/* Tokenizes the pending segment, as Hugging Face tokenizes the text between two added tokens. */
static int flush(Builder *b, Error *err) {
    if (b->len == 0) return 0;
    int *ids, n;
    if (tokenizer_encode_segment(b->chat->tok, b->text, b->len, &ids, &n, err)) return -1;
    int rc = idvec_push(b->out, ids, n, err);
    free(ids);
    b->len = 0;
    return rc;
}

/* The format's own text: its special spellings become their ids, "{date}" the date. */
static int add_format(Builder *b, const char *s, Error *err) {
    const ChatFormat *f = b->chat->format;
    while (*s) {
        size_t best = 0;
        int id = -1;
        for (size_t k = 0; k < N_SPECIALS; k++) {
            size_t n = f->specials[k] ? strlen(f->specials[k]) : 0;
            if (n > best && b->chat->special_ids[k] >= 0 && strncmp(s, f->specials[k], n) == 0) {
                best = n;
                id = b->chat->special_ids[k];
            }
        }
        if (id >= 0) {
            if (flush(b, err) || idvec_push(b->out, &id, 1, err)) return -1;
            s += best;
        } else if (strncmp(s, "{date}", 6) == 0) {
            if (add_text(b, b->chat->date, strlen(b->chat->date), err)) return -1;
            s += 6;
        } else {
            if (add_text(b, s, 1, err)) return -1;
            s++;
        }
    }
    return 0;
}

static int is_space(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* A message's text, stripped as Jinja's trim filter does when the format asks for it. */
static int add_content(Builder *b, const char *s, int trim, Error *err) {
    size_t n = strlen(s);
    if (trim) {
        while (n && is_space(*s)) s++, n--;
        while (n && is_space(s[n - 1])) n--;
    }
    return add_text(b, s, n, err);
}

/* The ids flushed so far: where a turn starts (its first special token comes after them). */
static int mark(const Builder *b) { return b->out->n; }

/* A user turn; fold: the system message goes in it (SYS_FOLD, SYS_FOLD_LAST). */
static int add_user(Builder *b, const char *user, int fold, Error *err) {
    const Chat *c = b->chat;
    const ChatFormat *f = c->format;
    if (add_format(b, f->user_prefix, err)) return -1;
    if (fold && c->system &&
        (add_format(b, f->sys_prefix, err) || add_content(b, c->system, f->trim_system, err) ||
         add_format(b, f->sys_suffix, err)))
        return -1;
    if (add_content(b, user, f->trim_content, err) || add_format(b, f->user_suffix, err)) return -1;
    return 0;
}

static int add_start(Builder *b, Error *err) {
    const Chat *c = b->chat;
    const ChatFormat *f = c->format;
    if (add_format(b, f->start, err)) return -1;
    if (f->system == SYS_ALWAYS || (f->system == SYS_TURN && c->system))
        return add_format(b, f->sys_prefix, err) ||
                       add_content(b, c->system ? c->system : "", f->trim_system, err) ||
                       add_format(b, f->sys_suffix, err)
                   ? -1
                   : 0;
    return 0;
}

static int add_gen(Builder *b, Error *err) {
    const Chat *c = b->chat;
    return add_format(b, c->no_think ? c->format->gen_no_think : c->format->gen, err);
}

int chat_render(const Chat *c, const ChatMessage *msgs, int n, IdVec *out, Error *err) {
    const ChatFormat *f = c->format;
    if (n < 1 || n % 2 == 0)
        return fail(err,
                    "a conversation alternates user and assistant turns and ends with the "
                    "user's (got %d turns)",
                    n);
    Builder b = {c, out, NULL, 0, 0};
    int rc = -1;
    if (add_start(&b, err)) goto done;
    for (int i = 0; i < n; i++) {
        if (msgs[i].role != (i % 2 ? ROLE_ASSISTANT : ROLE_USER)) {
            fail(err, "turn %d should be the %s's", i + 1, i % 2 ? "assistant" : "user");
            goto done;
        }
        const int fold =
            (f->system == SYS_FOLD && i == 0) || (f->system == SYS_FOLD_LAST && i == n - 1);
        if (msgs[i].role == ROLE_USER
                ? add_user(&b, msgs[i].text, fold, err)
                : add_format(&b, f->asst_prefix, err) ||
                      add_content(&b, msgs[i].text, f->trim_content, err) ||
                      add_format(&b, f->asst_before_eot, err) || add_format(&b, f->eot, err) ||
                      add_format(&b, f->after_eot, err))
            goto done;
    }
    if (add_gen(&b, err) || flush(&b, err)) goto done;
    rc = 0;
done:
    free(b.text);
    return rc;
}

int chat_turn(const Chat *c, int first, const char *user, IdVec *out, int *turn_start, Error *err) {
    const ChatFormat *f = c->format;
    Builder b = {c, out, NULL, 0, 0};
    int rc = -1;
    if (first ? add_start(&b, err)
              : idvec_push(out, &c->eot, 1, err) || add_format(&b, f->after_eot, err))
        goto done;
    *turn_start = mark(&b);
    const int fold = first && (f->system == SYS_FOLD || f->system == SYS_FOLD_LAST);
    if (add_user(&b, user, fold, err) || add_gen(&b, err) || flush(&b, err)) goto done;
    rc = 0;
done:
    free(b.text);
    return rc;
}
