/* chat.h: chat templates of instruct models, rendered to token ids (chat.c).
 *
 * A model's GGUF file carries its Hugging Face chat template (tokenizer.chat_template, Jinja
 * text). We do not run Jinja: the template is recognized as one of a few known formats by
 * distinctive markers, and the format, a row of chat.c's table, says what goes around each turn.
 * Rendering yields token ids: the format's special tokens (<|im_start|>, <|eot_id|>, ...) are
 * looked up in the vocabulary by their exact spelling, never tokenized from text, and the text
 * between two special tokens is tokenized as one segment, as Hugging Face tokenizes the rendered
 * template. Message text is never searched for special spellings: "<|im_end|>" typed by a user
 * stays text.
 */
#ifndef CHAT_H
#define CHAT_H

#include "common.h"
#include "tokenizer.h"

typedef enum { ROLE_USER, ROLE_ASSISTANT } ChatRole;

typedef struct {
    ChatRole role;
    const char *text; /* UTF-8, NUL-terminated */
} ChatMessage;

typedef struct ChatFormat ChatFormat; /* a row of chat.c's table */

typedef struct {
    const ChatFormat *format;
    const Tokenizer *tok; /* borrowed */
    const char *system;   /* the system message: -y, else the format's default, else NULL */
    const char *date;     /* Llama 3.1's "Today Date: " line (--chat-date, else today) */
    int no_think;         /* Qwen3: an empty <think></think> block opens each reply */
    int special_ids[8];   /* (format->specials) id of each spelling, -1 where it is text here */
    int eot;              /* the format's end-of-turn token */
    char today[32];       /* storage for date when it is today's */
} Chat;

/* Names of the known formats, comma-separated, for messages and --help. */
const char *chat_format_names(void);
/* The format a template is, by its markers; NULL when none matches. */
const ChatFormat *chat_detect(const char *tmpl, size_t len);
/* The format named `name`; NULL when there is none. */
const ChatFormat *chat_format_by_name(const char *name);
const char *chat_format_name(const ChatFormat *f);

/* Binds a format to a vocabulary: looks up its special tokens (the end-of-turn token must be one;
   the others are text when the vocabulary lacks them, as they are for a tokenizer that does not
   have them). system NULL = the format's default system message, if any; date NULL = today. */
int chat_init(Chat *c, const ChatFormat *f, const Tokenizer *t, const char *system,
              const char *date, int no_think, Error *err);

/* Token ids, growing; ids malloc'ed. */
typedef struct {
    int *ids;
    int n, cap;
} IdVec;

int idvec_push(IdVec *v, const int *ids, int n, Error *err);
void idvec_free(IdVec *v);

/* The whole conversation msgs[0..n) (user first, then alternating, ending with a user turn), the
   system message and the generation prompt, as Hugging Face's apply_chat_template(...,
   add_generation_prompt=True) renders and tokenizes it. Appends to out. */
int chat_render(const Chat *c, const ChatMessage *msgs, int n, IdVec *out, Error *err);

/* What a live conversation feeds for a new user turn, appended to out: for the first turn, the
   start, the system message, the turn and the generation prompt (= chat_render of that one
   message); for a later one (the earlier turns being in the KV cache as they were fed, where a
   template would rewrite the history, as Qwen3 drops old thinking and Mistral Nemo moves the
   system message to the newest turn, the cache keeps what was fed), the end of the assistant's reply (the end-of-turn token and what the
   format writes after it), the turn and the generation prompt. *turn_start receives the index in
   out where the turn itself begins (after the system message or the previous reply's end): the
   oldest turns are dropped from there when the context is full. */
int chat_turn(const Chat *c, int first, const char *user, IdVec *out, int *turn_start, Error *err);

#endif /* CHAT_H */
