/* Special tokens in the text (tokenizer_encode_special, tokenizer.h) against a brute-force matcher.
 *
 *   test_tokenizer
 *
 * Random vocabularies: the three letters a, b, c as SentencePiece pieces (no longer pieces, no
 * dummy prefix, so the text between special tokens encodes one letter per id), and a few dozen
 * special tokens, user-defined or control, spelled with 1 to 7 of those letters, some spellings
 * repeated (the first id of a spelling is the token it names, as the string table has it).
 * Random texts of 0 to 300 letters. The expected ids come from the definition: from the left, at
 * each position the longest wanted special token spelled there (user-defined ones always, control
 * ones with parse_special), else the letter; tried at every token length, by string comparison.
 * Then 64 special tokens of 20 to 41 bytes, all one letter but (mostly) the last, on texts of that
 * letter: every position starts long partial matches. First, tokenizer_byte_piece on byte
 * pieces and near misses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

enum { N_LETTERS = 3, MAX_SPECIALS = 64, MAX_TEXT = 300 };

static int passed, failed;

static unsigned rng_state = 12345;
static unsigned rnd(unsigned n) { /* xorshift32, uniform enough for test data */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state % n;
}

/* The ids the definition gives: tokens[0..n), types as built; letter_id[c - 'a']. */
static int brute_force(const Str *tokens, const int32_t *types, int n, const char *text, size_t len,
                       int parse_special, int *out) {
    int k = 0;
    for (size_t i = 0; i < len;) {
        int best = -1;
        size_t best_len = 0;
        for (int id = 0; id < n; id++) {
            size_t l = tokens[id].len;
            int wanted =
                types[id] == TOKEN_USER_DEFINED ||
                (parse_special && (types[id] == TOKEN_CONTROL || types[id] == TOKEN_UNKNOWN));
            if (l <= best_len || l > len - i || memcmp(tokens[id].ptr, text + i, l) != 0) continue;
            int first = id; /* the spelling names its first id */
            for (int j = 0; j < id; j++)
                if (tokens[j].len == l && memcmp(tokens[j].ptr, tokens[id].ptr, l) == 0) {
                    first = j;
                    break;
                }
            if (first != id) continue; /* judged at its first id */
            if (!wanted) continue;
            best = id;
            best_len = l;
        }
        if (best >= 0) {
            out[k++] = best;
            i += best_len;
        } else {
            out[k++] = 3 + (text[i] - 'a'); /* ids 3..5 are a, b, c */
            i++;
        }
    }
    return k;
}

static void check_case(const Tokenizer *tok, const Str *tokens, const int32_t *types, int n,
                       const char *text, size_t len, int parse_special, const char *what) {
    static int want[MAX_TEXT + 1];
    int *got = NULL, n_got = 0;
    Error err;
    if (tokenizer_encode_special(tok, text, len, parse_special, &got, &n_got, &err) != 0) {
        printf("FAIL: %s: %s\n", what, err.msg);
        failed++;
        return;
    }
    int n_want = brute_force(tokens, types, n, text, len, parse_special, want);
    int ok = n_got == n_want && memcmp(got, want, (size_t)n_want * sizeof *want) == 0;
    if (!ok) {
        printf("FAIL: %s: text \"%.*s\", parse_special %d:\n  got ", what, (int)len, text,
               parse_special);
        for (int i = 0; i < n_got; i++) printf(" %d", got[i]);
        printf("\n  want");
        for (int i = 0; i < n_want; i++) printf(" %d", want[i]);
        printf("\n");
    }
    ok ? passed++ : failed++;
    free(got);
}

/* One random vocabulary and 50 random texts, both modes. */
/* A SentencePiece vocabulary of n tokens: <unk> 0, BOS 1, EOS 2, no end-of-turn token. */
static TokenizerSpec spm_spec(const Str *tokens, const int32_t *types, int n) {
    return (TokenizerSpec){.kind = TOK_SPM,
                           .n_vocab = n,
                           .tokens = tokens,
                           .types = types,
                           .bos_id = 1,
                           .eos_id = 2,
                           .unk_id = 0,
                           .eot_id = -1};
}

static void test_random(int round) {
    static char spell[MAX_SPECIALS][8];
    Str tokens[6 + MAX_SPECIALS] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4},
                                    {"a", 1},     {"b", 1},   {"c", 1}};
    int32_t types[6 + MAX_SPECIALS] = {TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL,
                                       TOKEN_NORMAL,  TOKEN_NORMAL,  TOKEN_NORMAL};
    const int n_special = 1 + (int)rnd(MAX_SPECIALS);
    for (int s = 0; s < n_special; s++) {
        if (s > 0 && rnd(8) == 0) { /* a repeated spelling */
            memcpy(spell[s], spell[rnd((unsigned)s)], sizeof spell[s]);
        } else {
            size_t l = 1 + rnd(7);
            for (size_t i = 0; i < l; i++) spell[s][i] = (char)('a' + rnd(N_LETTERS));
            spell[s][l] = 0;
        }
        tokens[6 + s] = (Str){spell[s], strlen(spell[s])};
        types[6 + s] = rnd(2) ? TOKEN_USER_DEFINED : TOKEN_CONTROL;
    }
    const int n = 6 + n_special;
    TokenizerSpec spec = spm_spec(tokens, types, n);
    Tokenizer *tok;
    Error err;
    if (tokenizer_build(&tok, &spec, &err) != 0) {
        printf("FAIL: round %d: %s\n", round, err.msg);
        failed++;
        return;
    }
    for (int t = 0; t < 50; t++) {
        char text[MAX_TEXT], what[64];
        size_t len = rnd(MAX_TEXT + 1);
        for (size_t i = 0; i < len; i++) text[i] = (char)('a' + rnd(N_LETTERS));
        snprintf(what, sizeof what, "round %d text %d", round, t);
        check_case(tok, tokens, types, n, text, len, 0, what);
        check_case(tok, tokens, types, n, text, len, 1, what);
    }
    tokenizer_free(tok);
}

/* Long spellings that share long prefixes with the text: "aa...ab" (20 to 40 bytes) and "aa...a"
   of 41, on texts of a's (and one b). */
static void test_long_partial_matches(void) {
    enum { N = 64 };
    static char spell[N][48];
    Str tokens[6 + N] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"a", 1}, {"b", 1}, {"c", 1}};
    int32_t types[6 + N] = {TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL,
                            TOKEN_NORMAL,  TOKEN_NORMAL,  TOKEN_NORMAL};
    for (int s = 0; s < N; s++) {
        size_t l = s + 1 < N ? 20 + (size_t)(s % 21) : 41;
        memset(spell[s], 'a', l);
        if (s + 1 < N) spell[s][l - 1] = (char)('b' + s % 2);
        tokens[6 + s] = (Str){spell[s], l};
        types[6 + s] = s % 3 ? TOKEN_USER_DEFINED : TOKEN_CONTROL;
    }
    TokenizerSpec spec = spm_spec(tokens, types, 6 + N);
    Tokenizer *tok;
    Error err;
    if (tokenizer_build(&tok, &spec, &err) != 0) {
        printf("FAIL: long spellings: %s\n", err.msg);
        failed++;
        return;
    }
    char text[MAX_TEXT];
    memset(text, 'a', sizeof text);
    for (size_t b = 0; b < sizeof text; b += 37) {
        text[b] = 'b';
        check_case(tok, tokens, types, 6 + N, text, sizeof text, 0, "long spellings");
        check_case(tok, tokens, types, 6 + N, text, sizeof text, 1, "long spellings");
    }
    tokenizer_free(tok);
}

/* SentencePiece pieces merged by rank (a Metaspace tokenizer.json's merges): the lowest rank
   first; with metaspace_split no merge whose right side starts a word; Metaspace's prefix only
   before a text that does not start with a space. */
static void test_merge_ranks(void) {
    static const Str tokens[] = {{"<unk>", 5},
                                 {"<s>", 3},
                                 {"</s>", 4},
                                 {"\xE2\x96\x81", 3},
                                 {"a", 1},
                                 {"b", 1},
                                 {"a\xE2\x96\x81", 4},
                                 {"\xE2\x96\x81"
                                  "b",
                                  4}};
    static const int32_t types[] = {TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL, TOKEN_NORMAL,
                                    TOKEN_NORMAL,  TOKEN_NORMAL,  TOKEN_NORMAL,  TOKEN_NORMAL};
    static const Str merges[] = {{"a \xE2\x96\x81", 5}, {"\xE2\x96\x81 b", 5}};
    static const struct {
        int split, meta, prefix;
        const char *text;
        int n, ids[3];
    } cases[] = {
        {0, 0, 0, "a b", 2, {6, 5}},    /* a+_ (rank 0) first */
        {1, 0, 0, "a b", 2, {4, 7}},    /* _ starts a word: only _+b */
        {0, 1, 1, " b", 1, {7}},        /* Metaspace: no prefix before a space */
        {0, 0, 1, " b", 2, {3, 7}},     /* the dummy prefix always */
        {1, 1, 1, "a b", 3, {3, 4, 7}}, /* "_a_b": a+_ crosses a word, _+b does not */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        TokenizerSpec spec = spm_spec(tokens, types, 8);
        spec.merges = merges;
        spec.n_merges = 2;
        spec.metaspace_split = cases[c].split;
        spec.metaspace = cases[c].meta;
        spec.add_space_prefix = cases[c].prefix;
        Tokenizer *tok = NULL;
        Error err;
        int *got = NULL, n = 0;
        int ok = tokenizer_build(&tok, &spec, &err) == 0;
        ok = ok && tokenizer_encode(tok, cases[c].text, strlen(cases[c].text), &got, &n, &err) == 0;
        ok = ok && n == cases[c].n && memcmp(got, cases[c].ids, (size_t)n * sizeof *got) == 0;
        if (!ok) {
            printf("FAIL: merge ranks, case %zu (\"%s\"):", c, cases[c].text);
            for (int i = 0; i < n; i++) printf(" %d", got[i]);
            printf("\n");
        }
        ok ? passed++ : failed++;
        free(got);
        if (tok) tokenizer_free(tok);
    }
}

/* SentencePiece's byte pieces: "<0x" two uppercase hex digits ">", nothing else. */
static void test_byte_piece(void) {
    static const struct {
        const char *piece;
        int byte;
    } cases[] = {{"<0x00>", 0},   {"<0x41>", 0x41}, {"<0x0A>", 10}, {"<0xFF>", 255},
                 {"<0x9F>", 159}, {"<0xff>", -1},   {"<0x4G>", -1}, {"<0x41", -1},
                 {"<0x411>", -1}, {"<0X41>", -1},   {"[0x41>", -1}, {"<0x41]", -1},
                 {"<0x:0>", -1},  {"<0x@0>", -1},   {"", -1},       {"A", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const Str s = {cases[i].piece, strlen(cases[i].piece)};
        const int got = tokenizer_byte_piece(s);
        if (got == cases[i].byte) {
            passed++;
        } else {
            failed++;
            printf("FAIL byte piece '%s': %d, want %d\n", cases[i].piece, got, cases[i].byte);
        }
    }
}

int main(void) {
    test_byte_piece();
    for (int round = 0; round < 200; round++) test_random(round);
    test_long_partial_matches();
    test_merge_ranks();
    printf("%s test_tokenizer: %d passed, %d failed (special tokens vs brute force)\n",
           failed ? "FAIL" : "ok", passed, failed);
    return failed ? 1 : 0;
}
