/* The streaming decoder (decoder_push, tokenizer.h) against golden texts.
 *
 *   test_decoder [FIXTURES_DIR]        (default tests/fixtures: run from the repository root)
 *
 * The fixtures pair each text tok_texts/NN.txt with the ids an independent encoder gives it
 * (tests/gen/make_tokenizers.py): tokenizer_golden_spm.txt for llama_gqa.gguf (SentencePiece with
 * byte fallback: a character outside its 512 pieces is split into byte tokens <0xE4><0xB8><0xAD>)
 * and tokenizer_golden_gpt2.txt for gpt2.gguf (GPT-2's byte tokens). Pushing the ids one at a
 * time, as generation does,
 *   - each push returns only whole UTF-8 characters: the bytes of a character split across tokens
 *     come out together, with the token that completes it, never as halves or U+FFFD;
 *   - the pushes together (and the final flush) give back the text; for SentencePiece, spaces
 *     travel as U+2581, so a U+2581 in the text comes back as a space.
 * And a character cut short by the end of the stream is flushed as one U+FFFD. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define MAX_IDS 4096
#define MAX_TEXT 65536

static int passed, failed;

static void check(int ok, const char *what) {
    if (!ok) printf("FAIL: %s\n", what);
    ok ? passed++ : failed++;
}

/* 1 when s[0..n) is a sequence of whole UTF-8 characters: a lead byte, then exactly the number
   of continuation bytes (10xxxxxx) it announces. (The decoder's own validator is not used: a test
   of the decoder should not trust it.) */
static int whole_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t len = s[i] < 0x80             ? 1
                     : (s[i] & 0xE0) == 0xC0 ? 2
                     : (s[i] & 0xF0) == 0xE0 ? 3
                     : (s[i] & 0xF8) == 0xF0 ? 4
                                             : 0;
        if (len == 0 || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

/* Reads a whole file into buf (NUL-terminated); returns its length, or -1. */
static long read_file(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    int too_long = !feof(f) && fgetc(f) != EOF;
    fclose(f);
    if (too_long) return -1;
    buf[n] = '\0';
    return (long)n;
}

/* The text with every U+2581 (E2 96 81) read as a space, in place; returns the new length. */
static size_t spm_spaces(char *s, size_t n) {
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
            s[w++] = ' ';
            i += 2;
        } else {
            s[w++] = s[i];
        }
    }
    return w;
}

/* The room one push needs, as tokenizer.h states it. */
static size_t piece_capacity(const Tokenizer *tok) { return decoder_cap(tok); }

/* Pushes ids[0..n) one by one into out (capacity cap); each push must return whole characters.
   Returns the length written, or -1 (with a FAIL line) when a push returned part of a character. */
static long decode(const Tokenizer *tok, const int *ids, int n, int flush, char *out, size_t cap,
                   const char *what) {
    const size_t piece_cap = piece_capacity(tok);
    char *piece = malloc(piece_cap);
    Decoder d;
    decoder_init(&d);
    size_t w = 0;
    for (int i = 0; i <= n; i++) {
        if (i == n && !flush) break;
        size_t len = i < n ? decoder_push(tok, &d, ids[i], piece, piece_cap)
                           : decoder_flush(&d, piece, piece_cap);
        if (!whole_utf8((const unsigned char *)piece, len) || w + len >= cap) {
            printf("FAIL: %s: after id %d (token %d of %d), %zu bytes that are not whole "
                   "UTF-8 characters\n",
                   what, i < n ? ids[i] : -1, i, n, len);
            free(piece);
            return -1;
        }
        memcpy(out + w, piece, len);
        w += len;
    }
    out[w] = '\0';
    free(piece);
    return (long)w;
}

/* Every line of a golden ids file, decoded, against its text. */
static void test_goldens(const Tokenizer *tok, const char *dir, const char *golden, int spm) {
    char path[1024], what[1200];
    static char line[MAX_TEXT], text[MAX_TEXT], got[MAX_TEXT];
    static int ids[MAX_IDS];
    snprintf(path, sizeof path, "%s/%s", dir, golden);
    FILE *f = fopen(path, "r");
    if (!f) {
        check(0, path);
        return;
    }
    int lines = 0, good = 0;
    for (int t = 0; fgets(line, sizeof line, f); t++, lines++) {
        int n = 0, used;
        for (const char *p = line; n < MAX_IDS && sscanf(p, "%d%n", &ids[n], &used) == 1; p += used)
            n++;
        snprintf(path, sizeof path, "%s/tok_texts/%02d.txt", dir, t);
        long len = read_file(path, text, sizeof text);
        snprintf(what, sizeof what, "%s line %d (%s)", golden, t + 1, path);
        if (len < 0) {
            check(0, what);
            continue;
        }
        if (spm) len = (long)spm_spaces(text, (size_t)len);
        long got_len = decode(tok, ids, n, 1, got, sizeof got, what);
        if (got_len < 0) {
            failed++;
            continue;
        }
        if (got_len != len || memcmp(got, text, (size_t)len) != 0) {
            printf("FAIL: %s: decoded to \"%s\", the text is \"%s\"\n", what, got, text);
            failed++;
            continue;
        }
        passed++;
        good++;
    }
    fclose(f);
    printf("%s %s: %d of %d texts decoded whole, token by token\n", good == lines ? "ok" : "FAIL",
           golden, good, lines);
}

/* "ab中" without the token holding the last byte of 中: the two held bytes flush as one U+FFFD. */
static void test_cut_short(const Tokenizer *tok, const char *name) {
    const char *text = "ab\xE4\xB8\xAD";
    int *ids = NULL, n = 0;
    char got[64], what[128];
    Error err;
    snprintf(what, sizeof what, "%s: \"ab\" and the first two bytes of U+4E2D, then the end", name);
    if (tokenizer_encode(tok, text, strlen(text), &ids, &n, &err) != 0) {
        check(0, err.msg);
        return;
    }
    long whole = decode(tok, ids, n, 1, got, sizeof got, what);
    int ok =
        whole == 5 && memcmp(got, text, 5) == 0; /* the last id alone completes the character */
    ok = ok && decode(tok, ids, n - 1, 0, got, sizeof got, what) == 2 && memcmp(got, "ab", 2) == 0;
    ok = ok && decode(tok, ids, n - 1, 1, got, sizeof got, what) == 5 &&
         memcmp(got, "ab\xEF\xBF\xBD", 5) == 0;
    check(ok, what);
    if (ok) printf("ok %s: held, then one U+FFFD\n", what);
    free(ids);
}

/* A vocabulary whose pieces are not validated (SentencePiece, tokenizer.bin) may hold a piece of
   bytes that are never UTF-8: each byte comes out as one U+FFFD (3 bytes), and none is dropped,
   however long the piece; after the held start of a character, that start is one U+FFFD more. */
static void test_long_invalid(void) {
    enum { LONG = 40 };
    char junk[LONG];
    memset(junk, 0xFF, sizeof junk);
    const Str tokens[] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"\xE4\xB8", 2}, {junk, LONG}};
    const int32_t types[] = {TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL, TOKEN_NORMAL,
                             TOKEN_NORMAL};
    TokenizerSpec spec = {.kind = TOK_SPM,
                          .n_vocab = 5,
                          .tokens = tokens,
                          .types = types,
                          .bos_id = 1,
                          .eos_id = 2,
                          .unk_id = 0,
                          .eot_id = -1};
    Tokenizer *tok;
    Error err;
    if (tokenizer_build(&tok, &spec, &err) != 0) {
        check(0, err.msg);
        return;
    }
    static const struct {
        int ids[2], n;
        const char *what;
    } cases[] = {{{4}, 1, "a piece of 40 bytes 0xFF"},
                 {{3, 4}, 2, "E4 B8 (held), then a piece of 40 bytes 0xFF"}};
    for (int c = 0; c < 2; c++) {
        char got[512], what[128];
        const size_t want = 3 * (size_t)(LONG + (cases[c].n - 1));
        snprintf(what, sizeof what, "%s: %zu U+FFFD", cases[c].what, want / 3);
        long len = decode(tok, cases[c].ids, cases[c].n, 1, got, sizeof got, what);
        int ok = len == (long)want;
        for (long i = 0; ok && i < len; i += 3) ok = memcmp(got + i, "\xEF\xBF\xBD", 3) == 0;
        if (!ok) printf("FAIL: %s: got %ld bytes (%ld U+FFFD)\n", what, len, len / 3);
        ok ? passed++ : failed++;
        if (ok) printf("ok %s\n", what);
    }
    tokenizer_free(tok);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures";
    static const struct {
        const char *model, *golden;
        int spm;
    } cases[] = {
        {"llama_gqa.gguf", "tokenizer_golden_spm.txt", 1},
        {"gpt2.gguf", "tokenizer_golden_gpt2.txt", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].model);
        Model m;
        Error err;
        if (model_load(&m, path, 0, 0, &err) != 0) { /* batch 0: the tokenizer, no run state */
            printf("FAIL: %s: %s\n", path, err.msg);
            failed++;
            continue;
        }
        test_goldens(m.tokenizer, dir, cases[i].golden, cases[i].spm);
        test_cut_short(m.tokenizer, cases[i].model);
        model_free(&m);
    }
    test_long_invalid();
    printf("test_decoder: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
