/* fuzz_llama2c.c: llama2.c's checkpoints and tokenizer.bin (llama2c.c). The first byte picks the
 * parser:
 *   even: the rest is a checkpoint, bound by llama2c_bind: it must refuse with a one-line error,
 *         or give a Config that llama2.c's shapes allow and weights that all lie inside the
 *         input (fp32, in place) or inside the converted buffer (version 2);
 *   odd:  bytes 1-2 are a vocabulary size (1..65536), the rest a tokenizer.bin for it: refused
 *         in one line, or a tokenizer that encodes a text to ids in range.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "llama2c.h"

/* p..p+n inside [lo, lo + size). */
static int inside(const void *p, size_t n, const void *lo, size_t size) {
    const uint8_t *a = p, *b = lo;
    return a >= b && n <= size && (size_t)(a - b) <= size - n;
}

static void check_tensor(const Tensor *t, const uint8_t *buf, size_t size, const void *conv,
                         size_t conv_size) {
    const size_t n = (size_t)t->rows * t->row_bytes;
    CHECK(t->data != NULL && t->rows > 0 && t->cols > 0);
    CHECK(inside(t->data, n, buf, size) || (conv && inside(t->data, n, conv, conv_size)));
}

static void fuzz_checkpoint(const uint8_t *buf, size_t size) {
    Config c;
    Weights w;
    void *conv = NULL;
    Error err;
    if (llama2c_bind(buf, size, &c, &w, &conv, &err) != 0) {
        CHECK_ERROR(&err);
        CHECK(conv == NULL && w.layers == NULL);
        return;
    }
    CHECK(c.dim % c.n_heads == 0 && c.n_heads % c.n_kv_heads == 0 && c.head_dim % 2 == 0);
    CHECK(c.head_dim * c.n_heads == c.dim && c.vocab_size > 0 && c.seq_len > 0);
    /* converted: at most 4 bytes per int8 weight, each matrix padded to 64 bytes */
    const size_t conv_size = conv ? size * 4 + 64 * (7 * (size_t)c.n_layers + 2) : 0;
    check_tensor(&w.token_embd, buf, size, conv, conv_size);
    check_tensor(&w.output, buf, size, conv, conv_size);
    CHECK(inside(w.out_norm, (size_t)c.dim * 4, buf, size));
    for (int l = 0; l < c.n_layers; l++) {
        const LayerWeights *lw = &w.layers[l];
        const Tensor *ts[] = {&lw->wq,     &lw->wk,   &lw->wv,    &lw->wo,
                              &lw->w_gate, &lw->w_up, &lw->w_down};
        for (size_t i = 0; i < sizeof ts / sizeof *ts; i++)
            check_tensor(ts[i], buf, size, conv, conv_size);
        CHECK(inside(lw->attn_norm, (size_t)c.dim * 4, buf, size));
        CHECK(inside(lw->ffn_norm, (size_t)c.dim * 4, buf, size));
    }
    free(w.layers);
    free(conv);
}

static void fuzz_tokenizer(const uint8_t *buf, size_t size, int n_vocab) {
    Tokenizer *t;
    Error err;
    if (llama2c_tokenizer(buf, size, n_vocab, &t, &err) != 0) {
        CHECK_ERROR(&err);
        return;
    }
    static const char text[] = "In the beginning \xE2\x96\x81 <0x41> caf\xC3\xA9";
    int *ids, n;
    if (tokenizer_encode(t, text, sizeof text - 1, &ids, &n, &err) != 0) {
        CHECK_ERROR(&err); /* a vocabulary without byte pieces or <unk> for a character */
    } else {
        CHECK(n >= 1 && ids[0] == 1);
        for (int i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < n_vocab);
        free(ids);
    }
    tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    /* an aligned copy, as a mapping is */
    const int tok = data[0] & 1;
    const size_t skip = tok ? 3 : 1;
    uint8_t *buf = malloc(size - skip + 1);
    CHECK(buf != NULL);
    memcpy(buf, data + skip, size - skip);
    if (tok)
        fuzz_tokenizer(buf, size - skip, 1 + (data[1] | data[2] << 8));
    else
        fuzz_checkpoint(buf, size - skip);
    free(buf);
    return 0;
}
