/* The ranges of the numeric options (cli.c's option table), walked from the table itself: each
 * option's bounds just inside are accepted and stored, just outside refused with one line that
 * states the range, and --help shows every range. Then the rules the ranges exist for: values
 * the sampler cannot use (a repetition penalty of 0 divides by 0, a temperature whose inverse
 * overflows a float) are refused. Exits non-zero on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int passed, failed;

static void check(int ok, const char *what, const char *detail) {
    if (!ok) printf("FAIL: %s (%s)\n", what, detail);
    ok ? passed++ : failed++;
}

/* Parses `./run m.gguf --chat FLAG VALUE` (--chat: --keep needs it, and no number forbids it),
   with `-md d.gguf` before --draft-max, which needs it. */
static int parse(Options *o, const char *flag, const char *value, Error *err) {
    const int draft = strcmp(flag, "--draft-max") == 0;
    char *argv[] = {"run",
                    "m.gguf",
                    "--chat",
                    draft ? "-md" : (char *)flag,
                    draft ? "d.gguf" : (char *)value,
                    (char *)flag,
                    (char *)value,
                    NULL};
    err->msg[0] = '\0';
    return cli_parse(o, draft ? 7 : 5, argv, err);
}

static void expect_accepted(const CliRange *r, double v) {
    char val[64], what[256];
    Options o;
    Error err;
    snprintf(val, sizeof val, r->integer ? "%.0f" : "%.9g", v);
    snprintf(what, sizeof what, "%s %s (range %s) is accepted", r->flag, val, r->text);
    check(parse(&o, r->flag, val, &err) == 0, what, err.msg);
}

static void expect_refused(const CliRange *r, double v) {
    char val[64], what[256];
    Options o;
    Error err;
    snprintf(val, sizeof val, r->integer ? "%.0f" : "%.9g", v);
    snprintf(what, sizeof what, "%s %s (range %s) is refused with the range", r->flag, val,
             r->text);
    const int rc = parse(&o, r->flag, val, &err);
    check(rc != 0 && strstr(err.msg, r->text) && strstr(err.msg, val) && !strchr(err.msg, '\n'),
          what, rc ? err.msg : "accepted");
}

/* The nearest value of the option's type beyond v, downwards (dir -1) or upwards (+1). */
static double beyond(const CliRange *r, double v, int dir) {
    if (r->integer) return v + dir;
    return nextafterf((float)v, dir < 0 ? -INFINITY : INFINITY);
}

static void walk_table(const char *help) {
    CliRange r;
    int n = 0;
    for (int i = 0; cli_range(i, &r); i++, n++) {
        if (r.lo_open) {
            expect_refused(&r, r.lo);
            expect_accepted(&r, beyond(&r, r.lo, +1));
        } else {
            expect_accepted(&r, r.lo);
            if (!(r.or_zero && beyond(&r, r.lo, -1) == 0.0))
                expect_refused(&r, beyond(&r, r.lo, -1));
        }
        expect_accepted(&r, r.hi);
        expect_refused(&r, beyond(&r, r.hi, +1));
        if (r.or_zero) {
            expect_accepted(&r, 0.0);
            expect_refused(&r, r.lo / 2);
        }
        /* --help: the option's entry, up to the next option's, states the range */
        const char *entry = strstr(help, r.flag), *next = entry ? strstr(entry, "\n  -") : NULL;
        const char *shown = entry ? strstr(entry, r.text) : NULL;
        check(shown && (!next || shown < next), "--help states the range", r.flag);
    }
    check(n >= 14, "the table has the numeric options", "fewer than 14 found");
}

/* Values a float field cannot hold, or that the sampler cannot use. */
static void rules(void) {
    static const char *refused[][2] = {
        {"--repeat-penalty", "0"}, /* logits divided by 0 */
        {"--repeat-penalty", "1e-30"},
        {"--temp", "1e-30"},  /* 1/T overflows a float */
        {"--temp", "1e-50"},  /* 0 as a float, yet not the 0 that means greedy */
        {"--top-p", "1e-50"}, /* 0 as a float */
        {"--temp", "nan"},
        {"--min-p", "inf"},
        {"--presence-penalty", "1e300"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        Options o;
        Error err;
        char what[96];
        snprintf(what, sizeof what, "%s %s is refused", refused[i][0], refused[i][1]);
        check(parse(&o, refused[i][0], refused[i][1], &err) != 0, what, "accepted");
    }
    Options o;
    Error err;
    check(parse(&o, "--temp", "0", &err) == 0 && o.temperature == 0.0f, "--temp 0 (greedy)",
          err.msg);
    check(parse(&o, "--repeat-penalty", "1.5", &err) == 0 && o.repeat_penalty == 1.5f,
          "--repeat-penalty 1.5 is stored", err.msg);
}

int main(void) {
    char help[16384];
    FILE *f = tmpfile();
    if (!f) return fprintf(stderr, "test_cli: no temporary file\n"), 1;
    cli_usage(f);
    rewind(f);
    help[fread(help, 1, sizeof help - 1, f)] = '\0';
    fclose(f);
    walk_table(help);
    rules();
    printf("test_cli: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
