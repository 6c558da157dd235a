/* tokenizer.h: text -> token ids and back (tokenizer.c). */
#ifndef TOKENIZER_H
#define TOKENIZER_H

#include "common.h"

/* Tokenizer (tokenizer.c) */

typedef enum {
    TOK_SPM, /* tokenizer.ggml.model = "llama": SentencePiece BPE with scores and byte fallback */
    TOK_GPT2 /* tokenizer.ggml.model = "gpt2": byte-level BPE with merges and a pre-tokenizer */
} TokenizerKind;

/* How a byte-level BPE vocabulary splits text into words before merging (tokenizer.ggml.pre;
   model.c maps llama.cpp's names and aliases to these). */
typedef enum {
    PRE_GPT2,   /* GPT-2's regex */
    PRE_LLAMA3, /* Llama 3's regex: case-insensitive contractions, a letter run may take one
                   leading non-letter, digits in groups of up to 3, newlines kept with the
                   whitespace before them; a word that is itself a token is not merged */
    PRE_QWEN2,  /* Llama 3's regex with single digits, after Unicode NFC; merges always run */
    PRE_SMOLLM  /* every digit alone, then GPT-2's regex on the text between */
} TokenizerPre;

/* tokenizer.ggml.token_type values */
enum {
    TOKEN_NORMAL = 1,
    TOKEN_UNKNOWN = 2,
    TOKEN_CONTROL = 3,
    TOKEN_USER_DEFINED = 4,
    TOKEN_UNUSED = 5,
    TOKEN_BYTE = 6
};

/* The byte a SentencePiece byte piece stands for: "<0xNN>" with two upper-case hex digits, else
   -1. */
int tokenizer_byte_piece(Str piece);

/* What the model file says about its tokenizer; everything here is borrowed and may be freed
   after tokenizer_build (which copies what it keeps). */
typedef struct {
    TokenizerKind kind;
    TokenizerPre pre; /* TOK_GPT2 only */
    int n_vocab;
    const Str *tokens;    /* (n_vocab) token strings as stored in the file */
    const float *scores;  /* (n_vocab) or NULL; SPM merge priority, higher merges first */
    const int32_t *types; /* (n_vocab) TOKEN_* or NULL (all normal) */
    int n_merges;
    const Str *merges;          /* (n_merges) "left right", rank = index; GPT-2, or SPM whose
                                   pieces merge by rank instead of by score (Hugging Face's BPE) */
    int bos_id, eos_id, unk_id; /* -1 when absent */
    int eot_id;                 /* end of turn (<|eot_id|>, <|im_end|>, ...), -1 when absent */
    int add_bos;                /* prepend BOS when encoding a prompt */
    int add_space_prefix;       /* SPM: prepend one space (SentencePiece's add_dummy_prefix) */
    int spaces_as_is;    /* SPM: the pieces spell a space ' ', not U+2581, and a U+2581 in the text
                         is text (llama2.c's tokenizer.bin) */
    int metaspace;       /* SPM: the U+2581s come from Hugging Face's Metaspace pre-tokenizer,
                            whose prefix is not added to a text that starts with a space */
    int metaspace_split; /* SPM by rank: no merge joins across a U+2581 (each word starts at one,
                            as Hugging Face's Metaspace pre-tokenizer splits the text) */
} TokenizerSpec;

typedef struct Tokenizer Tokenizer; /* opaque; defined in tokenizer.c */

int tokenizer_build(Tokenizer **out, const TokenizerSpec *spec, Error *err);
void tokenizer_free(Tokenizer *t);
int tokenizer_bos(const Tokenizer *t); /* -1 when none */
int tokenizer_eos(const Tokenizer *t); /* -1 when none */
int tokenizer_eot(const Tokenizer *t); /* -1 when none */
int tokenizer_adds_bos(const Tokenizer *t);

/* Encodes `len` bytes of UTF-8 text (invalid UTF-8 is an error). Prepends BOS when the tokenizer
   adds one. *ids is malloc'ed and owned by the caller.
   As in Hugging Face's tokenizers and llama.cpp, the spellings of user-defined tokens (Qwen's
   <think>, Gemma's <table> and newline runs) become those tokens before anything else; the
   spellings of control tokens (<|im_start|>, <|eot_id|>, <start_of_turn>) and of the unknown
   token do only when parse_special is set (llama.cpp's parse_special), else they are plain text.
   tokenizer_encode is tokenizer_encode_special with parse_special = 0. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int **ids, int *n_ids,
                     Error *err);
int tokenizer_encode_special(const Tokenizer *t, const char *text, size_t len, int parse_special,
                             int **ids, int *n_ids, Error *err);
/* Encodes text that follows a special token in a rendered chat template: no BOS, control-token
   spellings stay text, SentencePiece's dummy prefix as after a special token. */
int tokenizer_encode_segment(const Tokenizer *t, const char *text, size_t len, int **ids,
                             int *n_ids, Error *err);
/* Id of the control, user-defined or unknown token spelled exactly s[0..n), or -1. */
int tokenizer_find_special(const Tokenizer *t, const char *s, size_t n);

/* Streaming decoder: feed token ids one at a time, get back bytes that form only complete UTF-8
   characters. Bytes of a character split across tokens are held until it is complete; a byte
   sequence that can never be valid UTF-8 comes out as U+FFFD. */
typedef struct {
    unsigned char pending[8];
    int n_pending;
    int prev_token; /* last non-control token pushed, -1 at the start. SentencePiece
                                   drops the leading space of the first piece, so to decode a
                                   continuation set it to the prompt's last id after decoder_init */
} Decoder;

void decoder_init(Decoder *d);
/* The capacity of out that decoder_push and decoder_flush need, whatever the token: a vocabulary
   whose pieces are not validated (SentencePiece, tokenizer.bin) may hold a long piece of bytes
   that are never UTF-8, each of which comes out as a 3-byte U+FFFD. */
size_t decoder_cap(const Tokenizer *t);
/* Appends the text for `token` to out (capacity cap >= decoder_cap(t), NUL-terminated); returns
   bytes written. Control tokens (BOS, EOS, ...) produce nothing. */
size_t decoder_push(const Tokenizer *t, Decoder *d, int token, char *out, size_t cap);
/* Emits whatever is still pending at the end of the stream (as U+FFFD); cap as for a push. */
size_t decoder_flush(Decoder *d, char *out, size_t cap);
/* Whether two vocabularies are the same token strings in the same order: -1 when they are, 0 when
   their sizes differ, else 1 + the first id whose strings differ. */
int tokenizer_same_vocab(const Tokenizer *a, const Tokenizer *b);
int tokenizer_max_token_len(const Tokenizer *t);

#endif /* TOKENIZER_H */
