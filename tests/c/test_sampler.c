/* The sampler (sampler.c) against a brute-force statement of what it should do: llama.cpp's
 * penalties on the logits of the tokens seen (counted by scanning the history), temperature, then
 * the top-k tokens, then the smallest prefix of them (most probable first, the lower index first
 * among equals) whose full-vocabulary probability reaches top-p, then those whose penalized logit
 * is at least the largest + log(min-p), then a draw from that set renormalized. For each case: no draw ever falls outside the set, and over 100,000
 * draws every token's frequency is within 5 standard deviations of its probability.
 * The steps are also checked one by one on cases whose answer is exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "sampler.h"

static int passed, failed;

static void check(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    ok ? passed++ : failed++;
}

/* Penalties and min-p of a case; zero = off. */
typedef struct {
    float min_p, repeat, frequency, presence;
    int last_n;
    const int *history; /* (n_history) tokens fed, oldest first */
    int n_history;
} Extra;

/* llama.cpp's penalties, stated per token: count its occurrences among the last last_n. */
static void penalize(float *out, const float *logits, int n, const Extra *x) {
    for (int i = 0; i < n; i++) {
        out[i] = logits[i];
        if (!x || x->last_n == 0) continue;
        int count = 0;
        for (int h = x->n_history - x->last_n; h < x->n_history; h++)
            count += h >= 0 && x->history[h] == i;
        if (count == 0) continue;
        float r = x->repeat ? x->repeat : 1.0f;
        out[i] = out[i] > 0 ? out[i] / r : out[i] * r;
        out[i] -= count * x->frequency + x->presence;
    }
}

/* The expected distribution: probs[i] for the kept tokens, 0 elsewhere. */
static void expected(float *want, const float *raw, int n, float temp, int k, float p,
                     const Extra *x) {
    double *pr = malloc(n * sizeof *pr), max, sum = 0.0;
    int *order = malloc(n * sizeof *order);
    float *logits = malloc(n * sizeof *logits);
    penalize(logits, raw, n, x);
    max = logits[0];
    for (int i = 0; i < n; i++) max = logits[i] > max ? logits[i] : max;
    for (int i = 0; i < n; i++) sum += pr[i] = exp((logits[i] - max) / temp);
    for (int i = 0; i < n; i++) pr[i] /= sum, order[i] = i;
    for (int i = 0; i < n; i++) /* selection sort: slow and obviously right */
        for (int j = i + 1; j < n; j++)
            if (pr[order[j]] > pr[order[i]] ||
                (pr[order[j]] == pr[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    int kept = k > 0 && k < n ? k : n;
    double cum = 0.0;
    for (int i = 0; i < kept && p < 1.0f; i++)
        if ((cum += pr[order[i]]) >= p) {
            kept = i + 1;
            break;
        }
    if (x && x->min_p > 0.0f) { /* kept stays a prefix: logits fall along the order */
        int m = 0;
        while (m < kept && logits[order[m]] >= (float)max + logf(x->min_p)) m++;
        kept = m;
    }
    double total = 0.0;
    for (int i = 0; i < kept; i++) total += pr[order[i]];
    for (int i = 0; i < n; i++) want[i] = 0.0f;
    for (int i = 0; i < kept; i++) want[order[i]] = (float)(pr[order[i]] / total);
    free(pr);
    free(order);
    free(logits);
}

/* draft -1: draws with sampler_sample; else sampler_verify's tokens for that drafted token (-2:
   the most probable one),
   which must be distributed as the draws (speculative sampling's guarantee), with the draft
   accepted as often as its probability. */
static void test_draws(const char *name, const float *logits, int n, float temp, int k, float p,
                       const Extra *x, int draft) {
    enum { DRAWS = 100000 };
    Sampler sp;
    Error err;
    if (sampler_init(&sp, n, temp, p, k, 12345, &err)) {
        check(0, err.msg);
        return;
    }
    if (x) {
        sp.min_p = x->min_p;
        if (sampler_set_penalties(&sp, x->last_n, x->repeat ? x->repeat : 1.0f, x->frequency,
                                  x->presence, &err)) {
            check(0, err.msg);
            return;
        }
        for (int h = 0; h < x->n_history; h++) sampler_accept(&sp, x->history[h]);
    }
    float *want = malloc(n * sizeof *want);
    int *count = calloc(n, sizeof *count);
    expected(want, logits, n, temp, k, p, x);
    if (draft == -2) draft = sampler_argmax(want, n);
    int ok = 1, accepted = 0;
    for (int d = 0; d < DRAWS; d++) {
        int t = draft == -1 ? sampler_sample(&sp, logits) : -1;
        if (draft >= 0) {
            const int acc = sampler_verify(&sp, logits, draft, &t);
            ok &= !acc || t == draft;
            accepted += acc;
        }
        if (t < 0 || t >= n) {
            ok = 0;
            break;
        }
        count[t]++;
    }
    double worst = 0.0;
    if (draft >= 0) { /* accepted with probability p(draft) */
        const double pd = want[draft], sd = sqrt(DRAWS * pd * (1.0 - pd)) + 1e-9;
        worst = fabs(accepted - DRAWS * pd) / sd;
    }
    for (int i = 0; i < n; i++) {
        if (want[i] == 0.0f) {
            ok &= count[i] == 0;
            continue;
        }
        double sd = sqrt(DRAWS * want[i] * (1.0 - want[i])) + 1e-9;
        double z = fabs(count[i] - DRAWS * (double)want[i]) / sd;
        worst = z > worst ? z : worst;
    }
    ok &= worst <= 5.0;
    char what[160];
    snprintf(what, sizeof what, "%s (n %d, t %.2f, k %d, p %.2f): worst deviation %.1f sd", name, n,
             temp, k, p, worst);
    check(ok, what);
    sampler_free(&sp);
    free(want);
    free(count);
}

static void test_case(const char *name, const float *logits, int n, float temp, int k, float p,
                      const Extra *x) {
    test_draws(name, logits, n, temp, k, p, x, -1);
}

/* Greedy, p is a point mass on the argmax: the draft is accepted exactly when it is the argmax,
   and the token is the argmax either way; no random number is drawn. */
static void test_verify_greedy(const float *logits, int n) {
    Sampler sp;
    Error err;
    if (sampler_init(&sp, n, 0.0f, 1.0f, 0, 1, &err)) {
        check(0, err.msg);
        return;
    }
    const int best = sampler_argmax(logits, n);
    int ok = 1, t;
    for (int d = 0; d < n; d++)
        ok &= sampler_verify(&sp, logits, d, &t) == (d == best) && t == best;
    ok &= sp.rng == 1 * 2654435761u + 1;
    check(ok, "verify, greedy: a draft is accepted exactly when it is the argmax");
    sampler_free(&sp);
}

/* The steps on cases with exact answers: probabilities that are sums of powers of two. */
static void test_steps(void) {
    const float quarter[4] = {0.25f, 0.25f, 0.25f, 0.25f}, zeros[4] = {0};
    Candidate cand[4];
    float probs[4];
    sampler_softmax(probs, zeros, 4, 0.7f);
    check(probs[0] == 0.25f && probs[3] == 0.25f, "softmax of equal logits is exactly 1/4 each");
    int kept = sampler_top_p_candidates(cand, quarter, 4, 0.5f);
    check(kept == 4 && cand[0].index == 0 && cand[3].index == 3, "top-p candidates: ties by index");
    check(sampler_top_p(cand, kept, 0.5f) == 2,
          "top-p 0.5 over four quarters keeps exactly 2 (>=)");
    check(sampler_top_p(cand, kept, 0.75f) == 3, "top-p 0.75 keeps exactly 3");
    kept = sampler_top_p_candidates(cand, quarter, 4, 0.001f);
    check(kept == 1 && cand[0].index == 0,
          "top-p below every probability keeps the most probable token (not an empty set)");
    check(sampler_draw(cand, 1, 0.999f) == 0, "a draw from one candidate is that candidate");
    kept = sampler_top_k(cand, quarter, 4, 2);
    check(kept == 2 && cand[0].index == 0 && cand[1].index == 1,
          "top-k 2 of equals: lowest indices");
    check(sampler_argmax(quarter, 4) == 0, "argmax: the lowest index wins a tie");
}

/* sampler_argmax (two passes over lanes) against the definition, the one-pass loop, on lengths
 * around its lane count and on values with ties, NaN (never the maximum, even at 0),
 * +-0, infinities and the largest value first, last or in the tail. */
static int argmax_one_pass(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best] || (isnan(v[best]) && !isnan(v[i]))) best = i;
    return best;
}
static void test_argmax(void) {
    enum { MAX = 70 };
    float v[MAX];
    uint64_t rng = 11;
    int ok = 1, cases = 0;
    for (int n = 1; n <= MAX; n++)
        for (int kind = 0; kind < 6; kind++) {
            for (int i = 0; i < n; i++) {
                rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
                const int r = (int)((rng * 0x2545F4914F6CDD1Dull) >> 58); /* 0..63 */
                v[i] = kind == 0   ? (float)(r % 5)                       /* many ties */
                       : kind == 1 ? (r % 7 == 0 ? NAN : (float)r)        /* NaNs */
                       : kind == 2 ? (r % 2 ? 0.0f : -0.0f)               /* signed zeros */
                       : kind == 3 ? (r % 9 == 0 ? INFINITY : -(float)r)
                       : kind == 4 ? -(float)i /* largest first */
                                   : (float)i; /* largest last */
            }
            if (kind == 1 && n % 2) v[0] = NAN; /* a NaN at 0 is beaten by any number */
            ok &= sampler_argmax(v, n) == argmax_one_pass(v, n);
            cases++;
        }
    char what[96];
    snprintf(what, sizeof what, "argmax = the one-pass loop on %d vectors (ties, NaN, +-0, inf)",
             cases);
    check(ok, what);
}

/* Greedy decoding sees the penalties too: the argmax of the penalized logits. */
static void test_greedy_penalties(const float *logits, int n, const Extra *x) {
    Sampler sp;
    Error err;
    float *pen = malloc(n * sizeof *pen);
    penalize(pen, logits, n, x);
    int want = 0;
    for (int i = 1; i < n; i++) want = pen[i] > pen[want] ? i : want;
    int ok = !sampler_init(&sp, n, 0.0f, 1.0f, 0, 1, &err) &&
             !sampler_set_penalties(&sp, x->last_n, x->repeat, x->frequency, x->presence, &err);
    for (int h = 0; ok && h < x->n_history; h++) sampler_accept(&sp, x->history[h]);
    int got = ok ? sampler_sample(&sp, logits) : -1;
    char what[160];
    snprintf(what, sizeof what, "greedy after penalties picks %d (the unpenalized best is %d)", got,
             sampler_argmax(logits, n));
    check(ok && got == want && got != sampler_argmax(logits, n), what);
    sampler_free(&sp);
    free(pen);
}

/* Stop strings: texts over a small alphabet cut into random pieces. Stated by brute force: the
   stop string whose first occurrence ends first (the longest among those ending there) cuts the
   text at its start; the printed bytes are exactly the text before it, or all of it. */
static void test_stop_strings(void) {
    static const char *const stops[3] = {"aba", "ba", "cabc"};
    uint64_t rng = 99;
    int bad = 0, stopped_count = 0, held_back = 0;
    for (int trial = 0; trial < 3000; trial++) {
        char text[41];
        int len = 1 + trial % 40;
        for (int i = 0; i < len; i++) {
            rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
            text[i] = "abcd"[(rng * 0x2545F4914F6CDD1Dull) >> 62];
        }
        text[len] = 0;
        int nstops = 1 + trial % 3; /* "aba"; "aba" and "ba"; all three */
        int cut = len;
        for (int end = 1; end <= len && cut == len; end++)
            for (int k = 0; k < nstops; k++) {
                int m = (int)strlen(stops[k]);
                if (m <= end && memcmp(text + end - m, stops[k], m) == 0 && end - m < cut)
                    cut = end - m;
            }
        StopText st;
        stop_init(&st, stops, nstops);
        char out[64];
        size_t n_out = 0;
        int stopped = 0;
        for (int i = 0; i < len && !stopped;) {
            int piece = 1 + (int)(((rng ^= rng << 13) >> 7) % 4);
            if (piece > len - i) piece = len - i;
            const char *pr;
            size_t np;
            stopped = stop_push(&st, text + i, (size_t)piece, &pr, &np);
            held_back += !stopped && np < st.len;
            memcpy(out + n_out, pr, np);
            n_out += np;
            i += piece;
        }
        if (!stopped) {
            const char *pr;
            size_t np;
            stop_flush(&st, &pr, &np);
            memcpy(out + n_out, pr, np);
            n_out += np;
        }
        stopped_count += stopped;
        if (stopped != (cut < len) || n_out != (size_t)cut || memcmp(out, text, n_out) != 0) {
            if (bad++ < 3)
                printf("  stop: text %s stops %d: printed %.*s, want %.*s\n", text, nstops,
                       (int)n_out, out, cut, text);
        }
        stop_free(&st);
    }
    char what[160];
    snprintf(what, sizeof what,
             "stop strings over 3000 texts cut into pieces: %d wrong (%d stopped, %d held back)",
             bad, stopped_count, held_back);
    check(bad == 0 && stopped_count > 100 && held_back > 100, what);
}

/* The new steps on exact cases. */
static void test_new_steps(void) {
    float logits[5] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f};
    int counts[5] = {0}, recent[4] = {0, 1, 1, 3};
    sampler_penalties(logits, 5, recent, 4, 2.0f, 0.5f, 0.25f, counts);
    /* 0 once: 2/2 - 0.5 - 0.25; 1 twice: -1*2 - 1 - 0.25; 3 once: 3/2 - 0.75 */
    check(logits[0] == 0.25f && logits[1] == -3.25f && logits[2] == 0.5f && logits[3] == 0.75f &&
              logits[4] == -2.0f && counts[0] == 0 && counts[1] == 0 && counts[3] == 0,
          "penalties on exact values; counts left zero");
    const float l2[4] = {0.0f, -logf(2.0f), -logf(4.0f), -logf(8.0f)};
    Candidate cand[4];
    float probs[4] = {0.5f, 0.25f, 0.125f, 0.125f};
    int kept = sampler_min_p_candidates(cand, probs, l2, 4, 0.3f);
    check(kept == 2 && cand[0].index == 0 && cand[1].index == 1, "min-p 0.3 keeps 1 and 1/2");
    check(sampler_min_p(cand, kept, l2, 0.5f) == 2, "min-p 0.5 keeps a token at exactly half");
    check(sampler_min_p(cand, 2, l2, 0.6f) == 1, "min-p 0.6 keeps only the best");
}

/* Logits on min-p's cut exactly (the largest + log(min_p), computed as sampler.c does) are kept
   by both min-p steps and drawn. */
static void test_min_p_cut(void) {
    const float min_p = 0.25f, cut = 1.0f + logf(min_p);
    const float logits[4] = {1.0f, cut, nextafterf(cut, -INFINITY), -3.0f};
    Candidate cand[4];
    float probs[4];
    sampler_softmax(probs, logits, 4, 1.0f);
    int kept = sampler_min_p_candidates(cand, probs, logits, 4, min_p);
    check(kept == 2 && cand[1].index == 1, "min-p candidates keep a logit exactly on the cut");
    for (int i = 0; i < 4; i++) cand[i] = (Candidate){probs[i], i};
    check(sampler_min_p(cand, 4, logits, min_p) == 2, "min-p keeps a logit exactly on the cut");
    Sampler sp;
    Error err;
    int drawn[4] = {0};
    if (sampler_init(&sp, 4, 1.0f, 1.0f, 0, 5, &err)) {
        check(0, err.msg);
        return;
    }
    sp.min_p = min_p;
    for (int d = 0; d < 2000; d++) drawn[sampler_sample(&sp, logits)]++;
    sampler_free(&sp);
    char what[128];
    snprintf(what, sizeof what, "min-p 0.25 draws the token on the cut (%d of 2000) and no other",
             drawn[1]);
    check(drawn[1] > 100 && drawn[2] == 0 && drawn[3] == 0, what);
}

/* Non-finite numbers, step by step: NaN never wins and has probability 0, an order exists with
   NaN in it, 1/T overflowing is greedy, a repeat penalty <= 0 is refused. */
static void test_nonfinite_steps(void) {
    const float nan_first[4] = {NAN, 1.0f, 3.0f, 2.0f}, all_nan[3] = {NAN, NAN, NAN};
    check(sampler_argmax(nan_first, 4) == 2, "argmax: a NaN at 0 loses to the numbers after it");
    check(sampler_argmax(all_nan, 3) == 0, "argmax: all NaN gives 0");
    float probs[4];
    sampler_softmax(probs, nan_first, 4, 1.0f);
    check(probs[0] == 0.0f && fabsf(probs[1] + probs[2] + probs[3] - 1.0f) < 1e-6f,
          "softmax: a NaN logit has probability 0, the others sum to 1");
    Candidate cand[4];
    int kept = sampler_min_p_candidates(cand, probs, nan_first, 4, 0.1f);
    check(kept >= 1 && cand[0].index == 2 && sampler_min_p(cand, kept, nan_first, 0.1f) >= 1,
          "min-p with a NaN first keeps the best number");
    const float nan_probs[4] = {NAN, 0.5f, NAN, 0.25f};
    kept = sampler_top_k(cand, nan_probs, 4, 4);
    check(kept == 4 && cand[0].index == 1 && cand[1].index == 3 && cand[2].index == 0 &&
              cand[3].index == 2,
          "top-k orders NaN probabilities last, by index");
    kept = sampler_top_k(cand, nan_probs, 4, 2);
    check(kept == 2 && cand[0].index == 1 && cand[1].index == 3, "top-k 2 never keeps a NaN");
    const float falling[3] = {2.0f, 1.0f, 0.0f};
    Sampler sp;
    Error err;
    if (sampler_init(&sp, 3, 1e-39f, 1.0f, 0, 3, &err)) {
        check(0, err.msg);
        return;
    }
    int greedy = 1;
    for (int d = 0; d < 100; d++) greedy &= sampler_sample(&sp, falling) == 0;
    check(greedy, "temperature 1e-39 (1/T overflows) is greedy");
    const float bad_repeat[3] = {0.0f, -1.0f, NAN};
    for (int i = 0; i < 3; i++) {
        err.msg[0] = 0;
        int rc = sampler_set_penalties(&sp, 64, bad_repeat[i], 0.0f, 0.0f, &err);
        char what[640];
        snprintf(what, sizeof what, "repeat penalty %g refused: %s", bad_repeat[i], err.msg);
        check(rc == -1 && strstr(err.msg, "repeat penalty") != NULL, what);
    }
    check(sampler_set_penalties(&sp, 64, 1.0f, INFINITY, 0.0f, &err) == -1,
          "an infinite frequency penalty is refused");
    sampler_free(&sp);
}

/* Whatever the logits (NaN, +-inf, huge, denormal) and the options, every id is in range. */
static void test_any_input(void) {
    enum { V = 37 };
    static const float specials[8] = {NAN, INFINITY, -INFINITY, 3e38f, -3e38f, 1e-45f, 0.0f, 1e30f};
    static const float temps[4] = {0.0f, 1e-39f, 0.7f, 100.0f}, tops[2] = {1.0f, 0.5f};
    static const float min_ps[3] = {0.0f, 0.1f, 1.0f}, repeats[3] = {1.0f, 1e-30f, 100.0f};
    static const int top_ks[3] = {0, 1, 5};
    float logits[V];
    uint64_t rng = 2024;
    int bad = 0, runs = 0;
    for (int trial = 0; trial < 40; trial++) {
        for (int i = 0; i < V; i++) {
            rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
            const unsigned r = (unsigned)((rng * 0x2545F4914F6CDD1Dull) >> 32);
            const int special = trial % 4 == 0 ? 1 : (int)(r % 4) == 0; /* trial 0: all special */
            logits[i] = special ? specials[(r >> 8) % 8] : (float)((int)(r >> 16) % 200) / 10.0f;
        }
        for (int t = 0; t < 4; t++)
            for (int k = 0; k < 3; k++)
                for (int p = 0; p < 2; p++)
                    for (int mp = 0; mp < 3; mp++)
                        for (int rp = 0; rp < 3; rp++) {
                            Sampler sp;
                            Error err;
                            if (sampler_init(&sp, V, temps[t], tops[p], top_ks[k], trial, &err) ||
                                sampler_set_penalties(&sp, 8, repeats[rp], rp ? 3e38f : 0.0f,
                                                      rp ? -1.0f : 0.0f, &err)) {
                                bad++;
                                continue;
                            }
                            sp.min_p = min_ps[mp];
                            for (int h = 0; h < 8; h++) sampler_accept(&sp, (trial + 5 * h) % V);
                            for (int d = 0; d < 3; d++) {
                                const int id = sampler_sample(&sp, logits);
                                bad += id < 0 || id >= V;
                                runs++;
                            }
                            sampler_free(&sp);
                        }
    }
    char what[160];
    snprintf(what, sizeof what,
             "%d samples from logits with NaN, inf, huge and denormal values, every option: %d "
             "out of range",
             runs, bad);
    check(bad == 0, what);
}

int main(void) {
    kernels_init();
    enum { N = 500 };
    static float logits[N], flat[N], few[8] = {2.0f, 1.0f, 1.0f, 0.5f, 3.0f, -1.0f, 1.0f, 0.0f};
    static const float four[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    uint64_t rng = 7;
    for (int i = 0; i < N; i++) { /* xorshift, uniform in [0, 6) */
        rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
        logits[i] = 6.0f * (float)((rng * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
    }
    test_steps();
    test_argmax();
    for (int i = 0; i < N; i++) flat[i] = 1.0f;
    test_case("top-k", logits, N, 1.0f, 40, 1.0f, NULL);
    test_case("top-k then top-p", logits, N, 0.3f, 40, 0.5f, NULL);
    test_case("top-k then top-p, few tokens", few, 8, 1.0f, 5, 0.6f, NULL);
    test_case("top-p alone", logits, N, 0.7f, 0, 0.6f, NULL);
    test_case("no truncation", few, 8, 1.3f, 0, 1.0f, NULL);
    test_case("ties at the cut (lower index kept)", few, 8, 1.0f, 3, 1.0f, NULL);
    test_case("all equal, top-k", flat, N, 1.0f, 5, 1.0f, NULL);
    test_case("top-k 1 is greedy", logits, N, 1.0f, 1, 1.0f, NULL);
    test_case("top-k larger than the vocabulary", few, 8, 1.0f, 50, 0.9f, NULL);
    test_case("top-p exactly on a cumulative sum", four, 4, 1.0f, 0, 0.5f, NULL);
    test_case("top-p below every probability, flat logits", flat, N, 1.0f, 0, 0.001f, NULL);
    test_verify_greedy(logits, N);
    test_draws("verify, the draft the most likely token", few, 8, 1.0f, 0, 1.0f, NULL, 4);
    test_draws("verify, the draft a likely token", few, 8, 1.0f, 5, 0.95f, NULL, 0);
    test_draws("verify, the draft outside top-k", logits, N, 0.7f, 10, 1.0f, NULL,
               sampler_argmax(logits, N) == 0 ? 1 : 0);
    test_new_steps();
    test_min_p_cut();
    test_nonfinite_steps();
    test_any_input();
    test_stop_strings();
    static int history[100];
    for (int h = 0; h < 100; h++) history[h] = (h * 37) % 60; /* tokens 0..59, some repeated */
    Extra pen = {0.0f, 1.3f, 0.2f, 0.4f, 64, history, 100};
    test_case("penalties over the last 64 of 100 tokens", logits, N, 0.8f, 0, 1.0f, &pen);
    Extra neg = {0.0f, 0.7f, -0.3f, -0.5f, 100, history, 100}; /* rewards, even */
    test_case("negative penalties, repeat < 1", logits, N, 1.0f, 50, 0.9f, &neg);
    Extra minp = {0.05f, 1.0f, 0.0f, 0.0f, 0, NULL, 0};
    test_case("min-p alone", logits, N, 1.0f, 0, 1.0f, &minp);
    Extra minp_t = {0.2f, 1.0f, 0.0f, 0.0f, 0, NULL, 0};
    test_case("min-p after top-k and top-p, temperature 2", logits, N, 2.0f, 100, 0.95f, &minp_t);
    Extra all = {0.1f, 1.5f, 0.1f, 0.3f, 32, history, 100};
    test_case("penalties then min-p", logits, N, 0.9f, 0, 1.0f, &all);
    test_draws("verify after penalties then min-p", logits, N, 0.9f, 0, 1.0f, &all, -2);
    static int top[3];
    top[0] = top[1] = top[2] = sampler_argmax(logits, N);
    Extra big = {0.0f, 4.0f, 1.0f, 1.0f, 3, top, 3};
    test_greedy_penalties(logits, N, &big);
    printf("test_sampler: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
