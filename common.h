/* common.h: what every module shares: an error that carries one line up to main(), and a byte
 * string borrowed from elsewhere.
 *
 * Convention: every function that can fail takes an Error* and returns 0 on success, -1 on
 * failure with a one-line message in err->msg; main() prints it and exits non-zero.
 */
#ifndef COMMON_H
#define COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char msg[512];
} Error;

/* Records a printf-style message as one printable line and returns -1, so callers can write
   `return fail(err, ...)`. */
static inline int fail(Error *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* One line whatever a name from the file or the command line held (found by fuzzing):
           control bytes, newlines and terminal escapes among them, become '?'. */
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    }
    return -1;
}

/* A byte string borrowed from elsewhere (usually the mmap); not NUL-terminated. */
typedef struct {
    const char *ptr;
    size_t len;
} Str;

/* 1 when s holds exactly the bytes of the C string z. */
static inline int str_eq(Str s, const char *z) {
    return s.len == strlen(z) && memcmp(s.ptr, z, s.len) == 0;
}

#endif /* COMMON_H */
