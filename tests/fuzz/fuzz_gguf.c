/* fuzz_gguf.c: the GGUF container and the model binding. The bytes are parsed as a GGUF file
 * (gguf_parse) and bound as a model without run state (model_init with batch 0: config, every
 * tensor by name, type and shape, the tokenizer); a model that binds encodes a short text and
 * decodes the ids it got and a few others. A small model whose weights a trained one could have
 * (F32 or F16, finite, |w| <= 64) is then bound again with a run state and runs a prompt and a
 * decoding step: what model.c binds, forward() must run, and such weights give finite logits.
 *   make fuzz && build/fuzz/fuzz_gguf -dict=tests/fuzz/gguf.dict CORPUS_DIR
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kernels.h"
#include "model.h"
#include "tokenizer.h"
#include "unicode.h"

/* Decodes ids[0..n) and checks the output is valid UTF-8 (what decoder_push promises). */
static void decode(const Model *m, const int *ids, int n) {
    size_t cap = decoder_cap(m->tokenizer);
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
    static const char text[] =
        "In the beginning God created the heaven and the earth. \xC3\xA9 <s>";
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

/* Floats of the run state for batches of `cap` (model.c's alloc_state, roughly): inputs whose
   state would be large skip the forward pass, so that one input stays fast. */
static double state_floats(const Config *c, int cap) {
    const double q = (double)c->n_heads * c->head_dim, kv = (double)c->n_kv_heads * c->head_dim;
    return cap * (3.0 * c->dim + 2 * q + 2 * kv + 2.0 * c->hidden_dim +
                  (double)c->n_heads * c->seq_len + c->vocab_size) +
           2.0 * (c->seq_len + KV_TILE) * c->n_layers * kv +
           (double)c->seq_len * (c->dim + c->rope_dim);
}

/* 1 if every weight is one a trained model could have: finite and at most 64 in magnitude, so
   that a forward pass stays far from float32's range (random bytes as weights overflow it, and
   what the kernels do with inf and NaN is not what this target tests). Q8_0 weights are d * q
   with |q| <= 127, so |d| <= 0.5 keeps them in range. */
static int weights_sane(const GGUF *g) {
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const GGUFTensor *t = &g->tensors[i];
        const uint8_t *p = t->data;
        for (size_t k = 0; t->type == GGML_Q8_0 && k < t->nbytes; k += sizeof(BlockQ8)) {
            uint16_t d;
            memcpy(&d, p + k, 2);
            if ((d & 0x7FFF) > 0x3800) return 0; /* 0x3800 is 0.5 */
        }
        for (size_t k = 0; t->type == GGML_F32 && k < t->nbytes; k += 4) {
            float f;
            memcpy(&f, p + k, 4);
            if (!(fabsf(f) <= 64.0f)) return 0; /* NaN too */
        }
        for (size_t k = 0; t->type == GGML_F16 && k < t->nbytes; k += 2) {
            uint16_t h;
            memcpy(&h, p + k, 2);
            if ((h & 0x7FFF) > 0x5400) return 0; /* 0x5400 is 64.0; above: larger, inf, NaN */
        }
        for (size_t k = 0; t->type == GGML_BF16 && k < t->nbytes; k += 2) {
            uint16_t h;
            memcpy(&h, p + k, 2);
            if ((h & 0x7FFF) > 0x4280) return 0; /* 0x4280 is 64.0 in BF16 */
        }
    }
    return 1;
}

/* The first tokens of a prompt at position 0, then one more token after them; the logits of
   both must be finite. */
static void run_forward(Model *m) {
    const Config *c = &m->config;
    const int vocab = c->vocab_size;
    int prompt[4] = {0, vocab - 1, vocab / 2, 1 % vocab};
    int n = c->seq_len - 1 < 4 ? c->seq_len - 1 : 4;
    Error err;
    if (n > 0) {
        CHECK(forward(m, prompt, n, 0, LOGITS_ALL, &err) == 0);
        CHECK(forward_check(m, prompt, n, 0, LOGITS_ALL, 0, &err) == 0);
    }
    CHECK(forward(m, prompt, 1, n, LOGITS_LAST, &err) == 0);
    CHECK(forward_check(m, prompt, 1, n, LOGITS_LAST, 0, &err) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init = 0;
    if (!init) kernels_init(); /* the half table (F16 weights) and the best kernel set */
    init = 1;
    Model m;
    Error err;
    memset(&m, 0, sizeof m);
    if (gguf_parse(&m.file, data, size, &err) != 0) {
        CHECK_ERROR(&err);
        return 0;
    }
    if (model_init(&m, 0, 0, KV_F32, &err) != 0) { /* frees m, m.file included */
        CHECK_ERROR(&err);
        return 0;
    }
    use_tokenizer(&m);
    const int small = !m.config.vocab_only && state_floats(&m.config, 4) < (1 << 20) &&
                      weights_sane(&m.file); /* a vocabulary-only file has nothing to run */
    model_free(&m);
    if (small) {
        CHECK(gguf_parse(&m.file, data, size, &err) == 0 &&
              model_init(&m, 4, 0, KV_F32, &err) == 0);
        run_forward(&m);
        model_free(&m);
    }
    return 0;
}
