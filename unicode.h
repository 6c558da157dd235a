/* unicode.h: the Unicode the tokenizers need: UTF-8 (validation as Unicode's Table 3-7: no
 * overlongs, no surrogates, nothing above U+10FFFF), the character classes of the pre-tokenizers'
 * regular expressions, the words GPT-2's and Llama 3's patterns cut, and NFC. */
#ifndef UNICODE_H
#define UNICODE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* Returns 1 if the bytes are valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF); else 0 and,
   if bad_offset is given, the offset of the first invalid byte. */
int utf8_valid(const char *s, size_t len, size_t *bad_offset);
/* Length of the valid sequence at s[0..n), or 0 (see unicode.c for maximal and incomplete). */
size_t utf8_seq(const unsigned char *s, size_t n, size_t *maximal, int *incomplete);
size_t utf8_decode(const char *s, size_t n, uint32_t *cp); /* bytes read; cp the code point */
size_t utf8_encode(uint32_t cp, char *out);                /* bytes written (1-4) */

/* \p{L}, \p{N}, \s and the rest, as the patterns use them. */
typedef enum { CH_LETTER, CH_NUMBER, CH_SPACE, CH_OTHER } CharClass;
/* Class of the character at s[i], or -1 at the end (i >= n); *k receives its length in bytes. */
int char_class_at(const char *s, size_t n, size_t i, size_t *k);

/* End of the pre-token (word) starting at s[i] (i < n) under GPT-2's pattern, and under Llama 3's
   (max_digits 3) or Qwen2's (max_digits 1): the patterns are spelled out in unicode.c. */
size_t gpt2_pretoken_end(const char *s, size_t n, size_t i);
size_t llama3_pretoken_end(const char *s, size_t n, size_t i, int max_digits);

/* NFC of text[0..len) (valid UTF-8) into a malloc'ed buffer (*out, *out_len) the caller frees;
   *out stays NULL when the text is NFC already. */
int unicode_nfc(const char *text, size_t len, char **out, size_t *out_len, Error *err);

#endif /* UNICODE_H */
