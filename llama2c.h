/* llama2c.h: llama2.c's files (karpathy/llama2.c), read as the Config, Weights and Tokenizer of
 * model.h (llama2c.c). model.c turns to these when a file lacks the GGUF magic.
 *
 * Checkpoints (model.bin), little-endian, in the three layouts llama2.c's export.py writes:
 *   legacy     7 int32: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 *              (vocab_size < 0: the classifier is a matrix of its own, else the embedding),
 *              then fp32: token_embd, per kind then per layer attn_norm, wq, wk, wv, wo,
 *              ffn_norm, w1, w2, w3; the final norm; two unused RoPE tables of
 *              (seq_len, head_size / 2) each; the classifier when not shared.
 *   version 1  "ak42" (uint32 0x616b3432), int32 1, the 7 int32, uint8 shared_classifier, zeros
 *              to byte 256; fp32: attn_norm (all layers), ffn_norm, final norm, token_embd,
 *              wq, wk, wv, wo, w1, w2, w3 (each all layers), classifier when not shared.
 *   version 2  the same header with int32 2, and int32 group_size after the flag; fp32 norms as
 *              in version 1, then each matrix of the version 1 order as int8 values (the
 *              layer's whole matrix) followed by one fp32 scale per group_size values
 *              (weight = q * scale), what llama2.c's runq.c reads.
 * llama2.c hard-codes the rest: head_size = dim / n_heads, RMSNorm epsilon 1e-5, RoPE on pairs
 * (2i, 2i+1) with theta 10000 over the whole head, SwiGLU with w1 = gate, w3 = up, w2 = down.
 *
 * Tokenizer (tokenizer.bin): uint32 max_token_length, then per token: float32 score, int32
 * length, the bytes (SentencePiece's pieces with U+2581 written as a space; BOS and EOS spelled
 * "\n<s>\n" and "\n</s>\n"). The token count is not in the file: it is the model's vocab_size.
 */
#ifndef LLAMA2C_H
#define LLAMA2C_H

#include "model.h"

/* What a checkpoint's header says. */
typedef struct {
    int version; /* 0 legacy, 1 fp32, 2 int8 groups */
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared;      /* the classifier is the token embedding */
    int group_size;  /* version 2: values per fp32 scale */
    size_t header;   /* bytes before the first weight: 28 (legacy) or 256 */
    size_t expected; /* the file size the header implies */
} L2CHeader;

/* 1 when buf starts with llama2.c's version magic "ak42" (a legacy file has no magic). */
int llama2c_has_magic(const uint8_t *buf, size_t size);
/* Reads and checks the header of buf[0..size): every dimension in range and consistent, and the
   size equal to what the shapes need. No I/O (the fuzz target feeds it). */
int llama2c_header(const uint8_t *buf, size_t size, L2CHeader *h, Error *err);
/* Header, then Config and Weights: fp32 matrices and norms point into buf (which must outlive
   them, aligned to 4 bytes); version 2 matrices are converted into *owned (malloc'ed, the
   caller frees it; NULL otherwise): see llama2c.c for how. w->layers is malloc'ed. */
int llama2c_bind(const uint8_t *buf, size_t size, Config *c, Weights *w, void **owned, Error *err);
/* Builds the tokenizer from the bytes of a tokenizer.bin for a model of n_vocab tokens. */
int llama2c_tokenizer(const uint8_t *buf, size_t size, int n_vocab, Tokenizer **tok, Error *err);

/* The tokenizer.bin to use for the checkpoint at model_path: `given` (-z) if not NULL, else
   tokenizer.bin beside the model, else in the current directory (llama2.c's default). Writes the
   path to out (cap bytes); error when none exists. */
int llama2c_find_tokenizer(const char *model_path, const char *given, char *out, size_t cap,
                           Error *err);

#endif /* LLAMA2C_H */
