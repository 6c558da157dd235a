/* fuzz.h: what the fuzz targets share. Each target (fuzz_*.c) defines LLVMFuzzerTestOneInput, which
 * libFuzzer calls (make fuzz builds build/fuzz/fuzz_*) or the replay driver does (replay.c, built
 * by every variant and run by make test-c over the seed corpus and the regressions).
 *
 * The contract a target checks: any input ends in success or in a one-line error, as main() would
 * print it. Anything else (a crash, a leak, an absurd allocation, a broken invariant) aborts, and
 * libFuzzer keeps the input as a crash.
 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void check_failed(const char *what, const char *file, int line) {
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
    abort();
}

/* An invariant of the code under test; aborts with the condition's text if it does not hold. */
#define CHECK(cond) ((cond) ? (void)0 : check_failed(#cond, __FILE__, __LINE__))

/* After a function returned -1: its message must be one non-empty printable line. */
static inline void check_error(const Error *err, const char *file, int line) {
    int ok = err->msg[0] != '\0';
    for (const char *p = err->msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) ok = 0;
    if (!ok) {
        fprintf(stderr, "%s:%d: the error is not one printable line: \"%s\"\n", file, line,
                err->msg);
        abort();
    }
}
#define CHECK_ERROR(err) check_error(err, __FILE__, __LINE__)

#endif /* FUZZ_H */
