/* unicode.c: the Unicode the tokenizers need (unicode.h): UTF-8 decoding, encoding and
 * validation, the character classes of the pre-tokenizers' patterns (letters, numbers, spaces,
 * from unicode_tables.h), the words those patterns cut, and NFC. */
#include "unicode.h"

#include <stdlib.h>

#include "unicode_tables.h"

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if it is not one (Unicode Table 3-7: no
   overlongs, no surrogates, nothing above U+10FFFF). If `maximal` is given it receives the length
   of the maximal prefix of a valid sequence (>= 1), which is what one U+FFFD replaces, and
   *incomplete is set when the bytes so far are valid but the input ends too early. */
size_t utf8_seq(const unsigned char *s, size_t n, size_t *maximal, int *incomplete) {
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80)
        need = 1;
    else if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90; /* overlong */
        if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        need = 0;
    }
    size_t i = 1;
    if (need > 1) {
        for (; i < need && i < n; i++) {
            unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
            if (s[i] < lo_i || s[i] > hi_i) break;
        }
    }
    if (maximal) *maximal = i;
    if (incomplete) *incomplete = need > 1 && i == n && i < need;
    return need > 0 && i == need ? need : 0;
}

int utf8_valid(const char *s, size_t len, size_t *bad_offset) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq(u + i, len - i, NULL, NULL);
        if (n == 0) {
            if (bad_offset) *bad_offset = i;
            return 0;
        }
        i += n;
    }
    return 1;
}

/* Decodes the (valid) character at s[0..n) into *cp and returns its length. */
size_t utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    size_t len = utf8_seq(u, n, NULL, NULL);
    if (len <= 1) {
        *cp = u[0];
        return 1;
    }
    uint32_t v = u[0] & (0xFF >> (len + 1));
    for (size_t i = 1; i < len; i++) v = v << 6 | (u[i] & 0x3F);
    *cp = v;
    return len;
}

size_t utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------------------------------ */
/* Character classes and the pre-tokenizers' words */

static int in_table(uint32_t cp, const UnicodeRange *r, int n) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo)
            hi = mid - 1;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static int char_class(uint32_t cp) {
    if (cp < 0x80) { /* fast path for ASCII */
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CH_LETTER;
        if (cp >= '0' && cp <= '9') return CH_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return CH_SPACE;
        return CH_OTHER;
    }
    if (in_table(cp, unicode_letter, (int)(sizeof unicode_letter / sizeof *unicode_letter)))
        return CH_LETTER;
    if (in_table(cp, unicode_number, (int)(sizeof unicode_number / sizeof *unicode_number)))
        return CH_NUMBER;
    if (in_table(cp, unicode_space, (int)(sizeof unicode_space / sizeof *unicode_space)))
        return CH_SPACE;
    return CH_OTHER;
}

/* Class of the character at s[i], or -1 at the end; *k receives its length. */
int char_class_at(const char *s, size_t n, size_t i, size_t *k) {
    if (i >= n) {
        *k = 0;
        return -1;
    }
    uint32_t cp;
    *k = utf8_decode(s + i, n - i, &cp);
    return char_class(cp);
}

/* End of the run of characters of class `cls` starting at i. */
static size_t run_end(const char *s, size_t n, size_t i, int cls) {
    size_t k;
    while (char_class_at(s, n, i, &k) == cls) i += k;
    return i;
}

/* Where the whitespace run s[i..end) ends as a pre-token under \s+(?!\S), then \s+ (both
   patterns end so): before its last character when a non-space follows (that character starts the
   next pre-token, as in " word"), or the whole run when it ends the text or is one character. */
static size_t space_run_end(const char *s, size_t n, size_t i, size_t end) {
    if (end == n) return end;
    size_t last = end; /* start of the run's last character */
    do last--;
    while (((unsigned char)s[last] & 0xC0) == 0x80);
    return last > i ? last : end;
}

/* End of the pre-token starting at s[i] (i < n), trying the alternatives of GPT-2's pattern
       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
   in order, as the regex engine does. */
size_t gpt2_pretoken_end(const char *s, size_t n, size_t i) {
    if (s[i] == '\'' && i + 1 < n) {
        char a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return i + 3;
    }
    size_t k;
    int cls = char_class_at(s, n, i, &k);
    size_t j = i;
    if (s[i] == ' ') { /* the optional leading space of the next three alternatives */
        size_t k2;
        int next = char_class_at(s, n, i + 1, &k2);
        if (next == CH_LETTER || next == CH_NUMBER || next == CH_OTHER) {
            j = i + 1;
            cls = next;
        }
    }
    if (cls != CH_SPACE) return run_end(s, n, j, cls);
    return space_run_end(s, n, i, run_end(s, n, i, CH_SPACE));
}

/* End of the pre-token starting at s[i] (i < n) for Llama 3's pattern (max_digits 3) and Qwen2's
   (max_digits 1):
       (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
       \s*[\r\n]+|\s+(?!\S)|\s+
   again the alternatives in order. */
size_t llama3_pretoken_end(const char *s, size_t n, size_t i, int max_digits) {
    if (s[i] == '\'' && i + 1 < n) {
        char a = (char)(s[i + 1] | 0x20), b = i + 2 < n ? (char)(s[i + 2] | 0x20) : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return i + 3;
    }
    size_t k, k2;
    int cls = char_class_at(s, n, i, &k);
    if (cls == CH_LETTER) return run_end(s, n, i, CH_LETTER);
    int newline = s[i] == '\r' || s[i] == '\n';
    if (cls != CH_NUMBER && !newline && char_class_at(s, n, i + k, &k2) == CH_LETTER)
        return run_end(s, n, i + k, CH_LETTER); /* one leading non-letter, then letters */
    if (cls == CH_NUMBER) {
        size_t j = i;
        for (int d = 0; d < max_digits && char_class_at(s, n, j, &k2) == CH_NUMBER; d++) j += k2;
        return j;
    }
    size_t j = i;
    if (s[i] == ' ' && char_class_at(s, n, i + 1, &k2) == CH_OTHER) j = i + 1;
    if (char_class_at(s, n, j, &k2) == CH_OTHER) {
        j = run_end(s, n, j, CH_OTHER);
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    /* Whitespace. \s*[\r\n]+: up to and including the run's last newline, if it has one. */
    size_t end = run_end(s, n, i, CH_SPACE), after_newline = 0;
    for (size_t p = i; p < end; p++)
        if (s[p] == '\r' || s[p] == '\n') after_newline = p + 1;
    if (after_newline) return after_newline;
    return space_run_end(s, n, i, end);
}

/* ------------------------------------------------------------------------------------------ */
/* NFC (Qwen2's normalizer): canonical decomposition, canonical order, composition. */

enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7 };
enum { HANGUL_NL = 19, HANGUL_NV = 21, HANGUL_NT = 28, HANGUL_NS = 19 * 21 * 28 };

static int combining_class(uint32_t cp) {
    int lo = 0, hi = (int)(sizeof unicode_combining / sizeof *unicode_combining) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < unicode_combining[mid].lo)
            hi = mid - 1;
        else if (cp > unicode_combining[mid].hi)
            lo = mid + 1;
        else
            return unicode_combining[mid].ccc;
    }
    return 0;
}

static const UnicodeDecomp *find_decomp(uint32_t cp) {
    int lo = 0, hi = (int)(sizeof unicode_decomp / sizeof *unicode_decomp) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < unicode_decomp[mid].cp)
            hi = mid - 1;
        else if (cp > unicode_decomp[mid].cp)
            lo = mid + 1;
        else
            return &unicode_decomp[mid];
    }
    return NULL;
}

/* The primary composite of a + b, or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_NL && b >= HANGUL_V && b < HANGUL_V + HANGUL_NV)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_NV + (b - HANGUL_V)) * HANGUL_NT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_NS && (a - HANGUL_S) % HANGUL_NT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_NT)
        return a + (b - HANGUL_T);
    int lo = 0, hi = (int)(sizeof unicode_compose / sizeof *unicode_compose) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const UnicodeDecomp *d = &unicode_decomp[unicode_compose[mid]];
        if (a < d->first || (a == d->first && b < d->second))
            hi = mid - 1;
        else if (a > d->first || b > d->second)
            lo = mid + 1;
        else
            return d->cp;
    }
    return 0;
}

/* Appends the full canonical decomposition of cp (at most 4 code points). */
static void decompose(uint32_t cp, uint32_t *out, size_t *n) {
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_NS) {
        uint32_t s = cp - HANGUL_S;
        out[(*n)++] = HANGUL_L + s / (HANGUL_NV * HANGUL_NT);
        out[(*n)++] = HANGUL_V + s % (HANGUL_NV * HANGUL_NT) / HANGUL_NT;
        if (s % HANGUL_NT) out[(*n)++] = HANGUL_T + s % HANGUL_NT;
        return;
    }
    const UnicodeDecomp *d = find_decomp(cp);
    if (!d) {
        out[(*n)++] = cp;
        return;
    }
    decompose(d->first, out, n);
    if (d->second) decompose(d->second, out, n);
}

/* NFC of text[0..len) (valid UTF-8) into a malloc'ed buffer (*out, *out_len); *out stays NULL
   when the text is NFC already because no code point can change. */
int unicode_nfc(const char *text, size_t len, char **out, size_t *out_len, Error *err) {
    *out = NULL;
    int all_low = 1;
    for (size_t i = 0; i < len && all_low;) {
        uint32_t cp;
        i += utf8_decode(text + i, len - i, &cp);
        all_low = cp < UNICODE_NFC_FIRST;
    }
    if (all_low) return 0;
    uint32_t *cps = malloc(4 * len * sizeof *cps); /* a code point decomposes into at most 4 */
    if (!cps) return fail(err, "out of memory (NFC of %zu bytes)", len);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utf8_decode(text + i, len - i, &cp);
        decompose(cp, cps, &n);
    }
    /* Canonical order: a stable sort of each run of non-starters by combining class. */
    for (size_t i = 1; i < n; i++) {
        int c = combining_class(cps[i]);
        if (c == 0) continue;
        for (size_t j = i; j > 0; j--) {
            int p = combining_class(cps[j - 1]);
            if (p <= c) break;
            uint32_t tmp = cps[j];
            cps[j] = cps[j - 1];
            cps[j - 1] = tmp;
        }
    }
    /* Compose: each character joins the last starter unless something between blocks it (a
       starter, or a mark of the same or a higher class). */
    size_t w = 0, starter = SIZE_MAX;
    int last_class = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cps[i];
        int cc = combining_class(c);
        if (starter != SIZE_MAX && (w == starter + 1 || last_class < cc)) {
            uint32_t composite = compose(cps[starter], c);
            if (composite) {
                cps[starter] = composite;
                continue;
            }
        }
        if (cc == 0) starter = w;
        last_class = cc;
        cps[w++] = c;
    }
    char *buf = malloc(4 * w + 1);
    if (!buf) {
        free(cps);
        return fail(err, "out of memory (NFC of %zu bytes)", len);
    }
    size_t k = 0;
    for (size_t i = 0; i < w; i++) k += utf8_encode(cps[i], buf + k);
    free(cps);
    *out = buf;
    *out_len = k;
    return 0;
}
