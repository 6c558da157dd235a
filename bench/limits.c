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
__attribute__((target("avx2"))) static float sum_avx2(const float *a, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7] + sum_scalar(a + i, n - i);
}

__attribute__((target("avx512f"))) static float sum_avx512(const float *a, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(a + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(a + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(a + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(a + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3))) +
           sum_scalar(a + i, n - i);
}
#endif

typedef float (*SumFn)(const float *, size_t);

/* Thread t of nt owns the t-th contiguous slice, the same split for writing and reading. */
static void slice(size_t n, int t, int nt, size_t *lo, size_t *hi) {
    *lo = n / nt * t;
    *hi = t == nt - 1 ? n : n / nt * (t + 1);
}

static void fill(float *a, size_t n, int nt) {
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), k = omp_get_num_threads();
#else
    {
        int t = 0, k = 1;
        (void)nt;
#endif
        size_t lo, hi;
        slice(n, t, k, &lo, &hi);
        for (size_t i = lo; i < hi; i++) a[i] = (float)(i & 1023) * (1.0f / 1024);
    }
}

/* Best bandwidth over `passes` full reads of a[0..n) with nt threads, in GB/s. */
static double read_bw(SumFn sum, const float *a, size_t n, int nt, int passes, double *checksum) {
    double best = 0;
    for (int p = 0; p < passes; p++) {
        double total = 0, t0 = now();
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(+ : total)
        {
            int t = omp_get_thread_num(), k = omp_get_num_threads();
#else
        {
            int t = 0, k = 1;
            (void)nt;
#endif
            size_t lo, hi;
            slice(n, t, k, &lo, &hi);
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
        for (int k = 0; k < NACC; k++) acc[k] = acc[k] * m + c;  /* 2 FLOPs, fused or not */
    float s = 0;
    for (int k = 0; k < NACC; k++) s += acc[k];
    return s;
}

#ifdef X86_DISPATCH
/* Written out, 16 accumulators (of 16 vector registers on AVX2, 32 on AVX-512) plus m and c:
 * covers 4-cycle latency x 2 FMA units (8 in flight) with room to spare. */
#define FMA16(FMA, a, m, c)                                                                        \
    a##0 = FMA(a##0, m, c); a##1 = FMA(a##1, m, c); a##2 = FMA(a##2, m, c); a##3 = FMA(a##3, m, c);     \
    a##4 = FMA(a##4, m, c); a##5 = FMA(a##5, m, c); a##6 = FMA(a##6, m, c); a##7 = FMA(a##7, m, c);     \
    a##8 = FMA(a##8, m, c); a##9 = FMA(a##9, m, c); a##10 = FMA(a##10, m, c); a##11 = FMA(a##11, m, c); \
    a##12 = FMA(a##12, m, c); a##13 = FMA(a##13, m, c); a##14 = FMA(a##14, m, c); a##15 = FMA(a##15, m, c)

__attribute__((target("avx2,fma"))) static float fma_avx2(long iters, float seed) {
    const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    __m256 a0 = _mm256_set1_ps(seed), a1 = _mm256_add_ps(a0, c), a2 = _mm256_add_ps(a1, c),
           a3 = _mm256_add_ps(a2, c), a4 = _mm256_add_ps(a3, c), a5 = _mm256_add_ps(a4, c),
           a6 = _mm256_add_ps(a5, c), a7 = _mm256_add_ps(a6, c), a8 = _mm256_add_ps(a7, c),
           a9 = _mm256_add_ps(a8, c), a10 = _mm256_add_ps(a9, c), a11 = _mm256_add_ps(a10, c),
           a12 = _mm256_add_ps(a11, c), a13 = _mm256_add_ps(a12, c), a14 = _mm256_add_ps(a13, c),
           a15 = _mm256_add_ps(a14, c);
    for (long i = 0; i < iters; i++) {
        FMA16(_mm256_fmadd_ps, a, m, c);
    }
    __m256 s = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                      _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))),
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)),
                      _mm256_add_ps(_mm256_add_ps(a12, a13), _mm256_add_ps(a14, a15))));
    float t[8];
    _mm256_storeu_ps(t, s);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

__attribute__((target("avx512f"))) static float fma_avx512(long iters, float seed) {
    const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    __m512 a0 = _mm512_set1_ps(seed), a1 = _mm512_add_ps(a0, c), a2 = _mm512_add_ps(a1, c),
           a3 = _mm512_add_ps(a2, c), a4 = _mm512_add_ps(a3, c), a5 = _mm512_add_ps(a4, c),
           a6 = _mm512_add_ps(a5, c), a7 = _mm512_add_ps(a6, c), a8 = _mm512_add_ps(a7, c),
           a9 = _mm512_add_ps(a8, c), a10 = _mm512_add_ps(a9, c), a11 = _mm512_add_ps(a10, c),
           a12 = _mm512_add_ps(a11, c), a13 = _mm512_add_ps(a12, c), a14 = _mm512_add_ps(a13, c),
           a15 = _mm512_add_ps(a14, c);
    for (long i = 0; i < iters; i++) {
        FMA16(_mm512_fmadd_ps, a, m, c);
    }
    __m512 s = _mm512_add_ps(
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                      _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))),
        _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                      _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    return _mm512_reduce_add_ps(s);
}
#endif

typedef float (*FmaFn)(long, float);

/* Best GFLOP/s over `passes` runs of `iters` rounds per thread with nt threads. */
static double fma_peak(FmaFn fn, int lanes, long iters, int nt, int passes, double *checksum) {
    double best = 0;
    for (int p = 0; p < passes; p++) {
        double total = 0, t0 = now();
        int k = 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) reduction(+ : total)
        {
#pragma omp single
            k = omp_get_num_threads();
            total += fn(iters, 1.0f + omp_get_thread_num());
        }
#else
        (void)nt;
        total += fn(iters, 1.0f);
#endif
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
        if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = atol(argv[++i]);
        else if (!strcmp(argv[i], "--passes") && i + 1 < argc) passes = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--mib N (>= 1, default 1024)] [--passes N (default 5)]\n", argv[0]);
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
    for (int j = 0; j < 2; j++) peak[j] = fma_peak(fma, lanes, iters, threads[j], passes, &checksum);

    size_t n = (size_t)mib * 1024 * 1024 / sizeof(float);
    /* aligned to a cache line, as export.py aligns tensors: from malloc (16 bytes past a page)
       every 512-bit load straddles two lines, which read ~30% slower here */
    float *a = aligned_alloc(64, n * sizeof(float));
    if (!a) {
        fprintf(stderr, "error: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    for (int j = 0; j < 2; j++) {
        fill(a, n, threads[j]);  /* each thread writes the slice it will read: pages are touched */
        bw[j] = read_bw(sum, a, n, threads[j], passes, &checksum);
    }
    free(a);

    printf("{\"isa\": \"%s\", \"openmp\": %s, \"max_threads\": %d, \"array_mib\": %ld, \"passes\": %d,\n",
           isa, have_omp ? "true" : "false", max_threads(), mib, passes);
    printf(" \"read_gbs\": {\"1\": %.2f, \"2\": %.2f},\n", bw[0], bw[1]);
    printf(" \"fma_gflops\": {\"1\": %.1f, \"2\": %.1f},\n", peak[0], peak[1]);
    printf(" \"checksum\": %.6g}\n", checksum);
    return 0;
}
