/* fuzz_probe.c: the coref probe's sentence file (--probe-file). attn_coref_sentences must return
 * sentences whose marked spans lie in their text, non-empty, the antecedent's before the
 * pronoun's, or refuse with a one-line error.
 */
#include <string.h>

#include "attn_probe.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char empty[1] = "";
    CorefSentence *s = NULL;
    int n = 0;
    Error err;
    /* NULL asks for the built-in set: an empty input is an empty file */
    const char *text = size ? (const char *)data : empty;
    if (attn_coref_sentences(text, size, &s, &n, &err) != 0) {
        CHECK_ERROR(&err);
        return 0;
    }
    CHECK(n > 0);
    for (int i = 0; i < n; i++) {
        const int len = (int)strlen(s[i].text);
        CHECK(s[i].line >= 1 && s[i].line >= (i ? s[i - 1].line + 1 : 1));
        CHECK(0 <= s[i].ant0 && s[i].ant0 < s[i].ant1 && s[i].ant1 <= s[i].pro0);
        CHECK(s[i].pro0 < s[i].pro1 && s[i].pro1 <= len);
    }
    attn_coref_sentences_free(s, n);
    return 0;
}
