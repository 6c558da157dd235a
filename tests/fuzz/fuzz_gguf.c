/* fuzz_gguf.c: the GGUF container and the model binding. The bytes are parsed as a GGUF file
 * (gguf_parse) and bound as a model without run state (model_init with batch 0: config, every
 * tensor by name, type and shape, the tokenizer); a model that binds encodes a short text and
 * decodes the ids it got and a few others.
 *   make fuzz && build/fuzz/fuzz_gguf -dict=tests/fuzz/gguf.dict CORPUS_DIR
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "model.h"
#include "tokenizer.h"

/* Decodes ids[0..n) and checks the output is valid UTF-8 (what decoder_push promises). */
static void decode(const Model *m, const int *ids, int n) {
    size_t cap = 2 * ((size_t)tokenizer_max_token_len(m->tokenizer) + 8);
    char *out = malloc(cap);
    CHECK(out != NULL);
    Decoder d;
    decoder_init(&d);
    for (int i = 0; i < n; i++) {
        size_t k = decoder_push(m->tokenizer, &d, ids[i], out, cap);
        CHECK(k < cap && out[k] == '\0' && utf8_valid(out, k, NULL));
    }
    size_t k = decoder_flush(&d, out, cap);
    CHECK(k < cap && utf8_valid(out, k, NULL));
    free(out);
}

static void use_tokenizer(const Model *m) {
    static const char text[] = "In the beginning God created the heaven and the earth. \xC3\xA9 <s>";
    const int vocab = m->config.vocab_size;
    int *ids, n;
    Error err;
    if (tokenizer_encode(m->tokenizer, text, sizeof text - 1, &ids, &n, &err) == 0) {
        for (int i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < vocab);
        decode(m, ids, n);
        free(ids);
    } else {
        CHECK_ERROR(&err);
    }
    /* The first ids, the last ones, and some just outside the vocabulary (decoded as nothing). */
    int some[] = {0, 1, 2, 3, vocab - 2, vocab - 1, vocab, -1};
    decode(m, some, (int)(sizeof some / sizeof some[0]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Model m;
    Error err;
    memset(&m, 0, sizeof m);
    if (gguf_parse(&m.file, data, size, &err) != 0) {
        CHECK_ERROR(&err);
        return 0;
    }
    if (model_init(&m, 0, &err) != 0) {  /* frees m, m.file included */
        CHECK_ERROR(&err);
        return 0;
    }
    use_tokenizer(&m);
    model_free(&m);
    return 0;
}
