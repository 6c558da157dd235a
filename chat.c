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
    SYS_FOLD,     /* no system role: sys.prefix + message + sys.suffix opens the first user turn */
    SYS_FOLD_LAST /* the same in the last user turn (Mistral Nemo's template); a live chat, whose
                     earlier turns are in the cache, keeps it in the first, as llama.cpp does */
} SystemMode;

/* Text around a message: prefix + content + suffix. */
typedef struct {
    const char *prefix, *suffix;
} Wrap;

struct ChatFormat {
    const char *name;
    const char *needs[3];    /* detection: the template holds all of these */
    const char *specials[8]; /* spellings that are tokens when the vocabulary has them */
    const char *eot;         /* ends a turn; the reply stops there (must be a token) */
    const char *start;       /* once, before everything */
    SystemMode system;
    Wrap sys; /* the system message: its turn, or what folds it into a user turn */
    Wrap user;
    Wrap asst;                     /* a reply in the history: prefix, then text before eot */
    const char *after_eot;         /* after eot, closing the assistant's turn */
    const char *gen;               /* the generation prompt */
    const char *gen_no_think;      /* the same with thinking off (Qwen3), or NULL */
    const char *default_system;    /* when no -y is given, or NULL */
    int trim_content, trim_system; /* strip surrounding whitespace (Jinja's trim) */
};

/* ChatML: <|im_start|>role\ncontent<|im_end|>\n */
#define CHATML                                                                                     \
    .specials = {"<|im_start|>", "<|im_end|>"}, .eot = "<|im_end|>", .start = "",                  \
    .system = SYS_TURN, .sys = {"<|im_start|>system\n", "<|im_end|>\n"},                           \
    .user = {"<|im_start|>user\n", "<|im_end|>\n"}, .asst = {"<|im_start|>assistant\n", ""},       \
    .after_eot = "\n", .gen = "<|im_start|>assistant\n"
/* Llama 3: <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>, contents trimmed */
#define LLAMA3                                                                                     \
    .specials = {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"},   \
    .eot = "<|eot_id|>", .start = "<|begin_of_text|>",                                             \
    .user = {"<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"},                        \
    .asst = {"<|start_header_id|>assistant<|end_header_id|>\n\n", ""}, .after_eot = "",            \
    .gen = "<|start_header_id|>assistant<|end_header_id|>\n\n", .trim_content = 1,                 \
    .trim_system = 1

/* Order matters: the first row whose markers are all in the template is its format (Qwen3 before
   plain ChatML, Phi-3 before Zephyr, Llama 2 before Mistral). */
/* clang-format off */
static const ChatFormat FORMATS[] = {
    {.name = "qwen3", .needs = {"<|im_start|>", "enable_thinking"}, CHATML,
     .gen_no_think = "<|im_start|>assistant\n<think>\n\n</think>\n\n"},
    {.name = "qwen2.5", .needs = {"<|im_start|>", "You are Qwen, created by Alibaba Cloud"}, CHATML,
     .default_system = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."},
    {.name = "smollm2", .needs = {"<|im_start|>", "named SmolLM"}, CHATML,
     .default_system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
    {.name = "chatml", .needs = {"<|im_start|>"}, CHATML},
    {.name = "llama3.1", .needs = {"<|start_header_id|>", "Cutting Knowledge Date"}, LLAMA3,
     .system = SYS_ALWAYS,
     .sys = {"<|start_header_id|>system<|end_header_id|>\n\n"
             "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n", "<|eot_id|>"}},
    {.name = "llama3", .needs = {"<|start_header_id|>"}, LLAMA3,
     .system = SYS_TURN, .sys = {"<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"}},
    {.name = "gemma", .needs = {"<start_of_turn>"},
     .specials = {"<bos>", "<start_of_turn>", "<end_of_turn>"}, .eot = "<end_of_turn>",
     .start = "<bos>", .system = SYS_FOLD, .sys = {"", "\n\n"},
     .user = {"<start_of_turn>user\n", "<end_of_turn>\n"}, .asst = {"<start_of_turn>model\n", ""},
     .after_eot = "\n", .gen = "<start_of_turn>model\n", .trim_content = 1},
    {.name = "phi3", .needs = {"<|user|>", "<|end|>"},
     .specials = {"<s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"}, .eot = "<|end|>",
     .start = "<s>", .system = SYS_TURN, .sys = {"<|system|>\n", "<|end|>\n"},
     .user = {"<|user|>\n", "<|end|>\n"}, .asst = {"<|assistant|>\n", ""}, .after_eot = "\n",
     .gen = "<|assistant|>\n"},
    {.name = "zephyr", .needs = {"<|user|>"},
     .specials = {"</s>", "<|system|>", "<|user|>", "<|assistant|>"}, .eot = "</s>", .start = "",
     .system = SYS_TURN, .sys = {"<|system|>\n", "</s>\n"}, .user = {"<|user|>\n", "</s>\n"},
     .asst = {"<|assistant|>\n", ""}, .after_eot = "\n", .gen = "<|assistant|>\n"},
    {.name = "llama2", .needs = {"[INST]", "<<SYS>>"}, .specials = {"<s>", "</s>"}, .eot = "</s>",
     .start = "", .system = SYS_FOLD, .sys = {"<<SYS>>\n", "\n<</SYS>>\n\n"},
     .user = {"<s>[INST] ", " [/INST]"}, .asst = {" ", " "}, .after_eot = "", .gen = "",
     .trim_content = 1, .trim_system = 1},
    {.name = "mistral", .needs = {"[INST] "}, .specials = {"<s>", "</s>", "[INST]", "[/INST]"},
     .eot = "</s>", .start = "<s>", .system = SYS_FOLD, .sys = {"", "\n\n"},
     .user = {"[INST] ", " [/INST]"}, .asst = {"", ""}, .after_eot = "", .gen = ""},
    {.name = "mistral-nemo", .needs = {"[INST]"}, .specials = {"<s>", "</s>", "[INST]", "[/INST]"},
     .eot = "</s>", .start = "<s>", .system = SYS_FOLD_LAST, .sys = {"", "\n\n"},
     .user = {"[INST]", "[/INST]"}, .asst = {"", ""}, .after_eot = "", .gen = ""},
};
/* clang-format on */
#define N_FORMATS (sizeof FORMATS / sizeof FORMATS[0])
#define N_SPECIALS (sizeof FORMATS[0].specials / sizeof FORMATS[0].specials[0])

/* The list is built once; a name that would not fit whole ends it with "..." (test_chat.py checks
   that every format is listed), and nothing is written past the buffer. */
const char *chat_format_names(void) {
    static char names[512];
    if (!names[0]) {
        size_t len = 0;
        for (size_t i = 0; i < N_FORMATS; i++) {
            const size_t room = sizeof names - len - 4; /* "..." and the NUL stay possible */
            int k = snprintf(names + len, room, "%s%s", i ? ", " : "", FORMATS[i].name);
            if (k < 0 || (size_t)k >= room) {
                memcpy(names + len, "...", 4);
                break;
            }
            len += (size_t)k;
        }
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
    while (s && *s) { /* NULL: a field the table leaves out, nothing */
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
    if (add_format(b, f->user.prefix, err)) return -1;
    if (fold && c->system &&
        (add_format(b, f->sys.prefix, err) || add_content(b, c->system, f->trim_system, err) ||
         add_format(b, f->sys.suffix, err)))
        return -1;
    if (add_content(b, user, f->trim_content, err) || add_format(b, f->user.suffix, err)) return -1;
    return 0;
}

static int add_start(Builder *b, Error *err) {
    const Chat *c = b->chat;
    const ChatFormat *f = c->format;
    if (add_format(b, f->start, err)) return -1;
    if (f->system == SYS_ALWAYS || (f->system == SYS_TURN && c->system))
        return add_format(b, f->sys.prefix, err) ||
                       add_content(b, c->system ? c->system : "", f->trim_system, err) ||
                       add_format(b, f->sys.suffix, err)
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
                : add_format(&b, f->asst.prefix, err) ||
                      add_content(&b, msgs[i].text, f->trim_content, err) ||
                      add_format(&b, f->asst.suffix, err) || add_format(&b, f->eot, err) ||
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
    /* Planted bug that tests/py/test_chat_session.py (mistral_nemo) catches: SYS_FOLD_LAST left
       out here, which drops Mistral Nemo's system message from a live chat. */
    const int fold = first && (f->system == SYS_FOLD || f->system == SYS_FOLD_LAST);
    if (add_user(&b, user, fold, err) || add_gen(&b, err) || flush(&b, err)) goto done;
    rc = 0;
done:
    free(b.text);
    return rc;
}
