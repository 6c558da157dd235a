/* fuzz_tokenizer.c: the tokenizers of committed models, loaded once: SentencePiece with byte
 * fallback (tests/fixtures/llama_gqa.gguf), GPT-2 byte-level BPE (tests/fixtures/gpt2.gguf), and
 * SentencePiece with byte fallback, a user-defined and an unused piece (the seed llama_spm.gguf
 * of fuzz_gguf). Each input is
 *   - encoded as text: invalid UTF-8 must be a one-line error; valid UTF-8 must encode (each
 *     vocabulary covers every byte) to ids in range that decode back to the same text;
 *   - read as token ids, two bytes each (modulo a little more than the vocabulary, so that some
 *     fall outside it), through a streaming decoder whose output must be valid UTF-8.
 * The fixtures are found from the working directory, the repository's root (make runs there).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "model.h"
#include "tokenizer.h"
#include "unicode.h"

static const struct {
    const char *path;
    int spm;          /* SentencePiece: decoding gives "\xE2\x96\x81" back as a space */
    const char *user; /* its user-defined piece, or NULL */
} FIXTURES[] = {{"tests/fixtures/llama_gqa.gguf", 1, NULL},
                {"tests/fixtures/gpt2.gguf", 0, NULL},
                {"tests/fuzz/corpus/gguf/llama_spm.gguf", 1, "<|u|>"}};
#define N_FIXTURES (int)(sizeof FIXTURES / sizeof FIXTURES[0])

/* Kept for the whole run; never freed (still reachable, so not a leak). */
static Model models[N_FIXTURES];

static void load_fixtures(void) {
    static int loaded;
    if (loaded) return;
    for (int i = 0; i < N_FIXTURES; i++) {
        Error err;
        if (model_load(&models[i], FIXTURES[i].path, 0, 0, &err) != 0) {
            fprintf(stderr, "fuzz_tokenizer: %s (run from the repository's root)\n", err.msg);
            exit(1);
        }
    }
    loaded = 1;
}

/* A decoder's output for ids[0..n), all of it, after `prev` (-1: at the start); *len receives its
   length. */
static char *decode_all(const Tokenizer *t, const int *ids, size_t n, int prev, size_t *len) {
    size_t step = decoder_cap(t), cap = step * (n + 1) + 1;
    char *out = malloc(cap);
    CHECK(out != NULL);
    Decoder d;
    decoder_init(&d);
    d.prev_token = prev;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = decoder_push(t, &d, ids[i], out + w, step);
        CHECK(k < step && out[w + k] == '\0');
        w += k;
    }
    w += decoder_flush(&d, out + w, step);
    CHECK(utf8_valid(out, w, NULL));
    *len = w;
    return out;
}

/* SentencePiece reads U+2581 in the text as a space, so that is what decoding gives back. A
   user-defined piece is cut out of the text first and the text after it gets the dummy prefix as
   the text at the start does (llama.cpp's and Hugging Face's "legacy" behaviour), which decodes
   as one more space there, unless nothing follows before the next such piece or the end. */
static char *spm_expected(const char *text, size_t len, const char *user, size_t *out_len) {
    const size_t ulen = user ? strlen(user) : 0;
    char *e = malloc(2 * len + 1);
    CHECK(e != NULL);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (ulen && len - i >= ulen && memcmp(text + i, user, ulen) == 0) {
            memcpy(e + n, user, ulen), n += ulen, i += ulen;
            if (i < len && !(len - i >= ulen && memcmp(text + i, user, ulen) == 0)) e[n++] = ' ';
        } else if (len - i >= 3 && memcmp(text + i, "\xE2\x96\x81", 3) == 0) {
            e[n++] = ' ', i += 3;
        } else {
            e[n++] = text[i++];
        }
    }
    *out_len = n;
    return e;
}

static void encode_text(const Model *m, int spm, const char *user, const char *text, size_t len) {
    int *ids, n;
    Error err;
    if (!utf8_valid(text, len, NULL)) {
        CHECK(tokenizer_encode(m->tokenizer, text, len, &ids, &n, &err) != 0);
        CHECK_ERROR(&err);
        CHECK(strstr(err.msg, "not valid UTF-8") != NULL);
        return;
    }
    CHECK(tokenizer_encode(m->tokenizer, text, len, &ids, &n, &err) == 0);
    for (int i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < m->config.vocab_size);
    size_t got_len, want_len = len;
    char *got = decode_all(m->tokenizer, ids, (size_t)n, -1, &got_len);
    char *want = spm ? spm_expected(text, len, user, &want_len) : NULL;
    CHECK(got_len == want_len && memcmp(got, want ? want : text, got_len) == 0);
    free(want);
    free(got);
    free(ids);
}

static void decode_bytes(const Model *m, const uint8_t *data, size_t size) {
    const int vocab = m->config.vocab_size;
    size_t n = size / 2;
    int *ids = malloc((n ? n : 1) * sizeof *ids);
    CHECK(ids != NULL);
    for (size_t i = 0; i < n; i++) {
        unsigned v = (unsigned)data[2 * i] | (unsigned)data[2 * i + 1] << 8;
        ids[i] = (int)(v % (unsigned)(vocab + 16)) - 8; /* [-8, vocab + 8) */
    }
    /* An odd last byte says what came before (a caller continuing after a prompt sets it). */
    int prev = size % 2 ? (int)data[size - 1] - 8 : -1;
    size_t len;
    free(decode_all(m->tokenizer, ids, n, prev, &len));
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load_fixtures();
    for (int i = 0; i < N_FIXTURES; i++) {
        encode_text(&models[i], FIXTURES[i].spm, FIXTURES[i].user, (const char *)data, size);
        decode_bytes(&models[i], data, size);
    }
    return 0;
}
