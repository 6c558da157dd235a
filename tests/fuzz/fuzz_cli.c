/* fuzz_cli.c: the command line. The bytes, split at NULs, are an argv (the first piece is the
 * program's name, which cli_parse uses to look for the shipped model with access()); cli_parse
 * must accept them with every value in its range, or refuse them with a one-line error.
 */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A NUL-terminated copy; argv points at the start of each piece. */
    char *buf = malloc(size + 1);
    char **argv = malloc((size + 2) * sizeof *argv);
    CHECK(buf && argv);
    memcpy(buf, data, size);
    buf[size] = '\0';
    int argc = 0;
    argv[argc++] = buf;
    for (size_t i = 0; i < size; i++)
        if (buf[i] == '\0' && i + 1 < size) argv[argc++] = buf + i + 1;
    argv[argc] = NULL;

    Options o;
    Error err;
    if (cli_parse(&o, argc, argv, &err) != 0) {
        CHECK_ERROR(&err);
    } else if (!o.help) {
        CHECK(o.model != NULL && o.steps >= 0 && o.batch >= 1 && o.batch <= 4096);
        CHECK(o.temperature >= 0.0f && o.top_p > 0.0f && o.top_p <= 1.0f && o.top_k >= 0);
        CHECK(o.threads >= 0);
        CHECK((o.attn.show_layer < 0) == (o.attn.show_head < 0));
        CHECK(!(o.ppl && (o.attn.dump || o.attn.html || o.attn.stats || o.attn.show_layer >= 0)));
    }
    free(argv);
    free(buf);
    return 0;
}
