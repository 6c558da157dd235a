/* The sampler (sampler.c) against a brute-force statement of what it should do:
 * temperature, then the top-k tokens, then the smallest prefix of them (most probable first, the
 * lower index first among equals) whose full-vocabulary probability reaches top-p, then a draw
 * from that set renormalized. For each case: no draw ever falls outside the set, and over 100,000
 * draws every token's frequency is within 5 standard deviations of its probability.
 * The steps are also checked one by one on cases whose answer is exact. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"
#include "sampler.h"

static int passed, failed;

static void check(int ok, const char *what) {
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    ok ? passed++ : failed++;
}

/* The expected distribution: probs[i] for the kept tokens, 0 elsewhere. */
static void expected(float *want, const float *logits, int n, float temp, int k, float p) {
    double *pr = malloc(n * sizeof *pr), max = logits[0], sum = 0.0;
    int *order = malloc(n * sizeof *order);
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
    double total = 0.0;
    for (int i = 0; i < kept; i++) total += pr[order[i]];
    for (int i = 0; i < n; i++) want[i] = 0.0f;
    for (int i = 0; i < kept; i++) want[order[i]] = (float)(pr[order[i]] / total);
    free(pr);
    free(order);
}

static void test_case(const char *name, const float *logits, int n, float temp, int k, float p) {
    enum { DRAWS = 100000 };
    Sampler sp;
    Error err;
    if (sampler_init(&sp, n, temp, p, k, 12345, &err)) {
        check(0, err.msg);
        return;
    }
    float *want = malloc(n * sizeof *want);
    int *count = calloc(n, sizeof *count);
    expected(want, logits, n, temp, k, p);
    for (int d = 0; d < DRAWS; d++) count[sampler_sample(&sp, logits)]++;
    int ok = 1;
    double worst = 0.0;
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
    for (int i = 0; i < N; i++) flat[i] = 1.0f;
    test_case("top-k", logits, N, 1.0f, 40, 1.0f);
    test_case("top-k then top-p", logits, N, 0.3f, 40, 0.5f);
    test_case("top-k then top-p, few tokens", few, 8, 1.0f, 5, 0.6f);
    test_case("top-p alone", logits, N, 0.7f, 0, 0.6f);
    test_case("no truncation", few, 8, 1.3f, 0, 1.0f);
    test_case("ties at the cut (lower index kept)", few, 8, 1.0f, 3, 1.0f);
    test_case("all equal, top-k", flat, N, 1.0f, 5, 1.0f);
    test_case("top-k 1 is greedy", logits, N, 1.0f, 1, 1.0f);
    test_case("top-k larger than the vocabulary", few, 8, 1.0f, 50, 0.9f);
    test_case("top-p exactly on a cumulative sum", four, 4, 1.0f, 0, 0.5f);
    test_case("top-p below every probability, flat logits", flat, N, 1.0f, 0, 0.001f);
    printf("test_sampler: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
