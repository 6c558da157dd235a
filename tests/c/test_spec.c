/* Speculative sampling on the shipped induction model (models/induction.gguf, run from the repository's root):
 * the tokens that spec_step produces must be distributed as plain sampling's. The model drafts for
 * itself (greedily, so a draft is rejected as often as sampling would not have picked the argmax),
 * with temperature 1, top-k 3 and a repeat penalty (which the check must apply over the drafted
 * tokens too). Over many seeds, the first, second and third tokens after the prompt are counted as
 * singles, pairs and triples, and compared by chi-square with the distribution stated from scratch:
 * the logits of every prefix from plain one-token forward passes, penalized, the 3 best
 * softmaxed. Fixed seeds: the outcome is the same every run. Then -t 0: spec_step's tokens are the
 * greedy ones, for drafts of every length. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "spec.h"

#define MODEL "models/induction.gguf"
#define TOPK 3
#define SEEDS 3000
#define REPEAT 1.5f

static int passed, failed;

static void check(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    ok ? passed++ : failed++;
}

static const int PROMPT[] = {1, 300, 261, 345, 394, 325}; /* any ids of its 512 */
#define NP ((int)(sizeof PROMPT / sizeof PROMPT[0]))

/* The plain distribution after the prompt and then extra[0..n_extra): logits of a one-token
   forward pass per position, the repeat penalty over every token so far, the TOPK best at
   temperature 1. tok[TOPK], prob[TOPK]. */
static void reference(Model *m, const int *extra, int n_extra, int *tok, double *prob) {
    int ids[NP + 3];
    memcpy(ids, PROMPT, sizeof PROMPT);
    if (n_extra) memcpy(ids + NP, extra, (size_t)n_extra * sizeof *extra);
    const int n = NP + n_extra, V = m->config.vocab_size;
    Error err;
    for (int p = 0; p < n; p++) forward(m, ids + p, 1, p, LOGITS_LAST, &err);
    float *l = malloc((size_t)V * sizeof *l);
    memcpy(l, m->state.logits, (size_t)V * sizeof *l);
    for (int v = 0; v < V; v++) {
        int seen = 0;
        for (int p = 0; p < n; p++) seen |= ids[p] == v;
        if (seen) l[v] = l[v] > 0 ? l[v] / REPEAT : l[v] * REPEAT;
    }
    for (int k = 0; k < TOPK; k++) { /* the TOPK best, lower id first among equals */
        int best = -1;
        for (int v = 0; v < V; v++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= tok[j] == v;
            if (!taken && (best < 0 || l[v] > l[best])) best = v;
        }
        tok[k] = best;
    }
    double sum = 0.0;
    for (int k = 0; k < TOPK; k++) sum += prob[k] = exp((double)l[tok[k]] - l[tok[0]]);
    for (int k = 0; k < TOPK; k++) prob[k] /= sum;
    free(l);
}

/* Three tokens after the prompt, as run.c's decode loop makes them: the first sampled from the
   prompt's logits, then spec_step for each token not yet in the cache. */
static int three(Spec *s, Sampler *sp, const float *prompt_logits, int *out, Error *err) {
    int hist[NP + 3 + SPEC_MAX], queue[SPEC_MAX], n = NP, got = 0;
    memcpy(hist, PROMPT, sizeof PROMPT);
    for (int i = 0; i < NP; i++) sampler_accept(sp, PROMPT[i]);
    int next = sampler_sample(sp, prompt_logits);
    while (got < 3) {
        out[got++] = hist[n++] = next;
        sampler_accept(sp, next);
        if (got == 3) break;
        const int j = spec_step(s, sp, hist, n, 2, queue, &next, err);
        if (j < 0) return -1;
        for (int i = 0; i < j && got < 3; i++) {
            out[got++] = hist[n++] = queue[i];
            sampler_accept(sp, queue[i]);
        }
    }
    return 0;
}

/* chi-square of counts against probabilities (categories with an expected count of at least 5,
   the others pooled) below the 1e-4 critical value (Wilson-Hilferty). */
static void chi_square(const char *what, const long *count, const double *prob, int n, long total) {
    double stat = 0.0, rest_e = 0.0, rest_o = 0.0;
    int df = -1;
    for (int i = 0; i < n; i++) {
        const double e = prob[i] * total;
        if (e < 5.0) {
            rest_e += e;
            rest_o += count[i];
            continue;
        }
        stat += (count[i] - e) * (count[i] - e) / e;
        df++;
    }
    if (rest_e >= 5.0) {
        stat += (rest_o - rest_e) * (rest_o - rest_e) / rest_e;
        df++;
    } else if (rest_o > 3 * rest_e + 10) { /* rare outcomes far too common */
        stat = INFINITY;
    }
    if (df < 1) df = 1;
    const double z = 3.719, a = 2.0 / (9.0 * df), crit = df * pow(1.0 - a + z * sqrt(a), 3.0);
    char line[200];
    snprintf(line, sizeof line, "%s: chi-square %.1f, %d degrees of freedom, 1e-4 critical %.1f",
             what, stat, df, crit);
    check(stat < crit, line);
}

static void test_distribution(Model *m, Spec *s) {
    static long c1[TOPK], c2[TOPK * TOPK], c3[TOPK * TOPK * TOPK];
    int t1[TOPK], t2[TOPK][TOPK], t3[TOPK][TOPK][TOPK];
    double p1[TOPK], p2[TOPK][TOPK], p3[TOPK][TOPK][TOPK];
    double e2[TOPK * TOPK], e3[TOPK * TOPK * TOPK];
    reference(m, NULL, 0, t1, p1);
    for (int a = 0; a < TOPK; a++) {
        reference(m, (int[]){t1[a]}, 1, t2[a], p2[a]);
        for (int b = 0; b < TOPK; b++)
            reference(m, (int[]){t1[a], t2[a][b]}, 2, t3[a][b], p3[a][b]);
    }
    for (int a = 0; a < TOPK; a++)
        for (int b = 0; b < TOPK; b++) {
            e2[a * TOPK + b] = p1[a] * p2[a][b];
            for (int c = 0; c < TOPK; c++)
                e3[(a * TOPK + b) * TOPK + c] = p1[a] * p2[a][b] * p3[a][b][c];
        }
    Error err;
    float *prompt_logits = malloc((size_t)m->config.vocab_size * sizeof *prompt_logits);
    forward(m, PROMPT, NP, 0, LOGITS_LAST, &err);
    memcpy(prompt_logits, m->state.logits, (size_t)m->config.vocab_size * sizeof *prompt_logits);
    long outside = 0;
    for (int seed = 1; seed <= SEEDS; seed++) {
        Sampler sp;
        int out[3];
        if (sampler_init(&sp, m->config.vocab_size, 1.0f, 1.0f, TOPK, (uint64_t)seed, &err) ||
            sampler_set_penalties(&sp, 64, REPEAT, 0.0f, 0.0f, &err) ||
            three(s, &sp, prompt_logits, out, &err)) {
            check(0, err.msg);
            return;
        }
        sampler_free(&sp);
        int a = 0, b = 0, c = 0;
        while (a < TOPK && t1[a] != out[0]) a++;
        if (a < TOPK)
            while (b < TOPK && t2[a][b] != out[1]) b++;
        if (a < TOPK && b < TOPK)
            while (c < TOPK && t3[a][b][c] != out[2]) c++;
        if (a == TOPK || b == TOPK || c == TOPK) {
            outside++;
            continue;
        }
        c1[a]++;
        c2[a * TOPK + b]++;
        c3[(a * TOPK + b) * TOPK + c]++;
    }
    free(prompt_logits);
    char line[160];
    snprintf(line, sizeof line, "every token among the top %d of its position (%ld outside)", TOPK,
             outside);
    check(outside == 0, line);
    chi_square("first token", c1, p1, TOPK, SEEDS);
    chi_square("pairs", c2, e2, TOPK * TOPK, SEEDS);
    chi_square("triples", c3, e3, TOPK * TOPK * TOPK, SEEDS);
    printf("drafted %ld, accepted %ld\n", s->drafted, s->accepted);
    check(s->accepted > 0 && s->accepted < s->drafted, "some drafts accepted, some rejected");
}

/* -t 0: each spec_step's tokens are the greedy continuation, whatever the draft's length; and,
   the model drafting for itself, every draft is accepted. */
static void test_greedy(Model *m, Spec *s) {
    enum { N = 24 };
    int plain[NP + N], hist[NP + N + SPEC_MAX], queue[SPEC_MAX];
    Error err;
    memcpy(plain, PROMPT, sizeof PROMPT);
    forward(m, PROMPT, NP, 0, LOGITS_LAST, &err);
    for (int i = NP; i < NP + N; i++) {
        plain[i] = sampler_argmax(m->state.logits, m->config.vocab_size);
        forward(m, plain + i, 1, i, LOGITS_LAST, &err);
    }
    const long drafted = s->drafted, accepted = s->accepted;
    for (int max = 1; max <= 8; max++) {
        Sampler sp;
        sampler_init(&sp, m->config.vocab_size, 0.0f, 1.0f, 0, 1, &err);
        forward(m, PROMPT, NP, 0, LOGITS_LAST, &err);
        memcpy(hist, PROMPT, sizeof PROMPT);
        int n = NP, next = sampler_sample(&sp, m->state.logits), ok = 1;
        while (n < NP + N) {
            hist[n++] = next;
            const int j = spec_step(s, &sp, hist, n, max, queue, &next, &err);
            if (j < 0) {
                ok = 0;
                break;
            }
            memcpy(hist + n, queue, (size_t)j * sizeof *queue);
            n += j;
        }
        for (int i = 0; ok && i < NP + N; i++) ok &= hist[i] == plain[i];
        char line[120];
        snprintf(line, sizeof line, "greedy, drafts of up to %d tokens: the plain tokens", max);
        check(ok, line);
        sampler_free(&sp);
    }
    char line[120];
    snprintf(line, sizeof line, "greedy, drafting for itself: %ld of %ld drafts accepted",
             s->accepted - accepted, s->drafted - drafted);
    check(s->drafted > drafted && s->accepted - accepted == s->drafted - drafted, line);
}

int main(void) {
#ifdef _OPENMP
    omp_set_num_threads(1); /* a model this small: threads would only wait for each other */
#endif
    kernels_init();
    Model m;
    Spec s;
    Error err;
    if (model_load(&m, MODEL, 16, 0, &err)) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    if (spec_open(&s, &m, MODEL, 2, 16, KV_F32, 0, 0, &err)) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    test_distribution(&m, &s);
    test_greedy(&m, &s);
    spec_free(&s);
    model_free(&m);
    printf("test_spec: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
