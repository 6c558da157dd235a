/* limits: the machine's two ceilings for ./run, measured in the same run as the benchmark.
 *
 *   bench/limits [--mib N] [--passes N]          prints one JSON object on stdout
 *
 * - Read bandwidth (GB/s, 1e9 bytes/s) with 1 and 2 threads: sum a 64-byte-aligned float array of
 *   N MiB (default 1024) that was written beforehand (every page touched by the thread that later reads it), best of
 *   several passes. Decoding a token reads every weight once, so this bounds decode speed.
 * - FP32 FMA peak (GFLOP/s, an FMA = 2 FLOPs) with 1 and 2 threads: independent FMA chains, enough of
 *   them to cover the FMA latency on every FMA unit, with the widest vectors the CPU has (AVX-512,
 *   else AVX2+FMA, else scalar), chosen at run time. A prompt is matrix-matrix products, so this
 *   bounds prompt speed.
 *
 * C11; OpenMP when available (without it the 2-thread figures are 1-thread ones, "openmp": false).
 * The SIMD variants are compiled with GCC/Clang target attributes so the figures are the machine's,
 * whatever -march the build used; other compilers get the portable scalar code.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#else /* one thread: the pragmas are ignored, and these answer for the team */
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define X86_DISPATCH 1
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- read bandwidth -------------------------------------------------------------------- */

/* Sum of a[0..n): several independent accumulators so the adds never wait on each other. */
static float sum_scalar(const float *a, size_t n) {
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k];
    for (; i < n; i++) s[0] += a[i];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

#ifdef X86_DISPATCH
/* One function per vector type V of L lanes: four independent sums, so that the additions'
 * latency never holds back the loads. */
#define SUM_VEC(NAME, TARGET, V, L, ZERO, ADD, LOAD, STORE)                                        \
    __attribute__((target(TARGET))) static float NAME(const float *a, size_t n) {                  \
        V s[4] = {ZERO(), ZERO(), ZERO(), ZERO()};                                                 \
        size_t i = 0;                                                                              \
        for (; i + 4 * L <= n; i += 4 * L) {                                                       \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) s[k] =                             \
                ADD(s[k], LOAD(a + i + k * L));                                                    \
        }                                                                                          \
        float t[L], sum = sum_scalar(a + i, n - i);                                                \
        STORE(t, ADD(ADD(s[0], s[1]), ADD(s[2], s[3])));                                           \
        for (int j = 0; j < L; j++) sum += t[j];                                                   \
        return sum;                                                                                \
    }
SUM_VEC(sum_avx2, "avx2", __m256, 8, _mm256_setzero_ps, _mm256_add_ps, _mm256_loadu_ps,
        _mm256_storeu_ps)
SUM_VEC(sum_avx512, "avx512f", __m512, 16, _mm512_setzero_ps, _mm512_add_ps, _mm512_loadu_ps,
        _mm512_storeu_ps)
#endif

typedef float (*SumFn)(const float *, size_t);

/* Thread t of nt owns the t-th contiguous slice, the same split for writing and reading. */
static void slice(size_t n, int t, int nt, size_t *lo, size_t *hi) {
    *lo = n / nt * t;
    *hi = t == nt - 1 ? n : n / nt * (t + 1);
}

static void fill(float *a, size_t n, int nt) {
    (void)nt; /* unused without OpenMP */
#pragma omp parallel num_threads(nt)
    {
        size_t lo, hi;
        slice(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        for (size_t i = lo; i < hi; i++) a[i] = (float)(i & 1023) * (1.0f / 1024);
    }
}

/* Best bandwidth over `passes` full reads of a[0..n) with nt threads, in GB/s. */
static double read_bw(SumFn sum, const float *a, size_t n, int nt, int passes, double *checksum) {
    (void)nt; /* unused without OpenMP */
    double best = 0;
    for (int p = 0; p < passes; p++) {
        double total = 0, t0 = now();
#pragma omp parallel num_threads(nt) reduction(+ : total)
        {
            size_t lo, hi;
            slice(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
            total += sum(a + lo, hi - lo);
        }
        double dt = now() - t0;
        *checksum += total;
        double gbs = n * sizeof(float) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    return best;
}

/* ---- FMA peak -------------------------------------------------------------------------- */

/* Each variant runs `iters` rounds of NACC independent FMAs acc = acc * m + c and returns a value
 * depending on every accumulator (so nothing is optimized away). m < 1 keeps the values bounded
 * and away from denormals. FLOPs = iters * NACC * lanes * 2. */
#define NACC 16

static float fma_scalar(long iters, float seed) {
    float acc[NACC];
    for (int k = 0; k < NACC; k++) acc[k] = seed + k;
    const float m = 0.9999999f, c = 1e-7f;
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < NACC; k++) acc[k] = acc[k] * m + c; /* 2 FLOPs, fused or not */
    float s = 0;
    for (int k = 0; k < NACC; k++) s += acc[k];
    return s;
}

#ifdef X86_DISPATCH
/* One function per vector type V of L lanes: NACC = 16 accumulators (of 16 vector registers on
 * AVX2, 32 on AVX-512) plus m and c, which covers 4-cycle latency x 2 FMA units (8 in flight)
 * with room to spare. The loops over the accumulators are unrolled whole, so the array lives in
 * registers. */
#define FMA_PEAK(NAME, TARGET, V, L, SET1, FMADD, STORE)                                           \
    __attribute__((target(TARGET))) static float NAME(long iters, float seed) {                    \
        const V m = SET1(0.9999999f), c = SET1(1e-7f);                                             \
        V a[NACC];                                                                                 \
        _Pragma("GCC unroll 16") for (int k = 0; k < NACC; k++) a[k] = SET1(seed + k * 1e-7f);     \
        for (long i = 0; i < iters; i++) {                                                         \
            _Pragma("GCC unroll 16") for (int k = 0; k < NACC; k++) a[k] = FMADD(a[k], m, c);      \
        }                                                                                          \
        float t[L], s = 0;                                                                         \
        for (int k = 0; k < NACC; k++) {                                                           \
            STORE(t, a[k]);                                                                        \
            for (int j = 0; j < L; j++) s += t[j];                                                 \
        }                                                                                          \
        return s;                                                                                  \
    }
FMA_PEAK(fma_avx2, "avx2,fma", __m256, 8, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps)
FMA_PEAK(fma_avx512, "avx512f", __m512, 16, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps)
#endif

typedef float (*FmaFn)(long, float);

/* Best GFLOP/s over `passes` runs of `iters` rounds per thread with nt threads. */
static double fma_peak(FmaFn fn, int lanes, long iters, int nt, int passes, double *checksum) {
    (void)nt; /* unused without OpenMP */
    double best = 0;
    for (int p = 0; p < passes; p++) {
        double total = 0, t0 = now();
        int k = 1;
#pragma omp parallel num_threads(nt) reduction(+ : total)
        {
#pragma omp single
            k = omp_get_num_threads();
            total += fn(iters, 1.0f + omp_get_thread_num());
        }
        double dt = now() - t0;
        *checksum += total;
        double gflops = (double)iters * NACC * lanes * 2 * k / dt / 1e9;
        if (gflops > best) best = gflops;
    }
    return best;
}

/* ---- main ------------------------------------------------------------------------------ */

int main(int argc, char **argv) {
    long mib = 1024;
    int passes = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = atol(argv[++i]);
        else if (!strcmp(argv[i], "--passes") && i + 1 < argc)
            passes = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--mib N (>= 1, default 1024)] [--passes N (default 5)]\n",
                    argv[0]);
            return 2;
        }
    }
    if (mib < 1 || passes < 1) {
        fprintf(stderr, "error: --mib and --passes must be >= 1\n");
        return 2;
    }

    SumFn sum = sum_scalar;
    FmaFn fma = fma_scalar;
    int lanes = 1;
    const char *isa = "scalar";
#ifdef X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        sum = sum_avx512, fma = fma_avx512, lanes = 16, isa = "avx512";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        sum = sum_avx2, fma = fma_avx2, lanes = 8, isa = "avx2+fma";
    }
#endif
    const int threads[2] = {1, 2};
    int have_omp = 0;
#ifdef _OPENMP
    have_omp = 1;
#endif

    double checksum = 0;
    double bw[2], peak[2];

    /* FMA first (the big array is not allocated yet). Calibrate the round count to ~0.1 s. */
    long iters = 1 << 16;
    for (;;) {
        double t0 = now();
        checksum += fma(iters, 1.0f);
        double dt = now() - t0;
        if (dt > 0.05 || iters > (1L << 40)) {
            iters = (long)(iters * 0.1 / (dt > 1e-6 ? dt : 1e-6)) + 1;
            break;
        }
        iters *= 4;
    }
    for (int j = 0; j < 2; j++)
        peak[j] = fma_peak(fma, lanes, iters, threads[j], passes, &checksum);

    size_t n = (size_t)mib * 1024 * 1024 / sizeof(float);
    /* aligned to a cache line, as export.py aligns tensors: from malloc (16 bytes past a page)
       every 512-bit load straddles two lines, which read ~30% slower here */
    float *a = aligned_alloc(64, n * sizeof(float));
    if (!a) {
        fprintf(stderr, "error: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    for (int j = 0; j < 2; j++) {
        fill(a, n, threads[j]); /* each thread writes the slice it will read: pages are touched */
        bw[j] = read_bw(sum, a, n, threads[j], passes, &checksum);
    }
    free(a);

    printf("{\"isa\": \"%s\", \"openmp\": %s, \"max_threads\": %d, \"array_mib\": %ld, \"passes\": "
           "%d,\n",
           isa, have_omp ? "true" : "false", max_threads(), mib, passes);
    printf(" \"read_gbs\": {\"1\": %.2f, \"2\": %.2f},\n", bw[0], bw[1]);
    printf(" \"fma_gflops\": {\"1\": %.1f, \"2\": %.1f},\n", peak[0], peak[1]);
    printf(" \"checksum\": %.6g}\n", checksum);
    return 0;
}
