/* gguf_vocab.h: the Tokenizer of a GGUF file, from its tokenizer.ggml.* metadata (gguf_vocab.c). */
#ifndef GGUF_VOCAB_H
#define GGUF_VOCAB_H

#include "gguf.h"
#include "tokenizer.h"

/* Builds *tok from g's vocabulary. The token list must hold *vocab_size tokens (the rows of
   token_embd.weight); a file without weights (vocab_only) takes its size from the list instead,
   when it holds at most max_vocab. */
int gguf_tokenizer(const GGUF *g, int vocab_only, int max_vocab, int *vocab_size, Tokenizer **tok,
                   Error *err);

#endif /* GGUF_VOCAB_H */
