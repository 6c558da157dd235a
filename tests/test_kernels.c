/* test_kernels.c: every optimized kernel against its plain reference, on shapes that are not
 * multiples of any vector width or block size; and the half-precision conversions, exhaustively.
 * Exits non-zero on any failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) passed++;
    else {
        failed++;
        printf("FAIL %s\n", what);
    }
}

static uint64_t rng = 88172645463325252ull;
static float frand(void) {  /* uniform in [-1, 1) */
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* Every half converts to the float it denotes and back to itself; NaNs stay NaN. */
static void test_f16_roundtrip(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? !isnan(f) : f32_to_f16(f) != h) bad++;
    }
    check(bad == 0, "f16 -> f32 -> f16 round trip of all 65536 halves");
    /* values of known encodings */
    check(f16_to_f32(0x3c00) == 1.0f && f16_to_f32(0xc000) == -2.0f && f16_to_f32(0x7bff) == 65504.0f &&
          f16_to_f32(0x0001) == ldexpf(1.0f, -24), "f16 known values");
    check(f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00 &&          /* tie -> even */
          f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3c02 &&      /* tie -> even, upward */
          f32_to_f16(65520.0f) == 0x7c00 && f32_to_f16(65519.0f) == 0x7bff,
          "f32 -> f16 rounding to nearest even and overflow");
#ifdef __FLT16_MAX__
    /* the compiler's own conversion, where it has one, is an independent reference */
    int diff = 0;
    for (int i = 0; i < 1000000; i++) {
        float f = ldexpf(frand(), (int)(frand() * 30));
        _Float16 h = (_Float16)f;
        uint16_t bits;
        memcpy(&bits, &h, 2);
        if (bits != f32_to_f16(f)) diff++;
    }
    check(diff == 0, "f32 -> f16 agrees with the compiler's _Float16 on 1e6 values");
#endif
}

/* matmul vs matmul_ref: |diff| <= 1e-5 * sum |w x| (a bound on float reassociation error). */
static void test_matmul(uint32_t type, int rows, int cols, int n) {
    size_t esize = type == GGML_F32 ? 4 : 2;
    void *wdata = malloc((size_t)rows * cols * esize);
    float *wf = malloc((size_t)rows * cols * sizeof(float));
    float *x = malloc((size_t)n * cols * sizeof(float));
    float *out = malloc((size_t)n * rows * sizeof(float)), *ref = malloc((size_t)n * rows * sizeof(float));
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        float v = frand();
        if (type == GGML_F32) ((float *)wdata)[i] = wf[i] = v;
        else {
            ((uint16_t *)wdata)[i] = f32_to_f16(v);
            wf[i] = f16_to_f32(f32_to_f16(v));
        }
    }
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = frand();
    Tensor w = {type, rows, cols, (size_t)cols * esize, wdata};
    matmul(out, x, &w, n);
    matmul_ref(ref, x, &w, n);
    int ok = 1;
    for (int t = 0; t < n && ok; t++)
        for (int r = 0; r < rows; r++) {
            double mag = 0.0, exact = 0.0;
            for (int c = 0; c < cols; c++) {
                mag += fabs((double)wf[(size_t)r * cols + c] * x[(size_t)t * cols + c]);
                exact += (double)wf[(size_t)r * cols + c] * x[(size_t)t * cols + c];
            }
            double o = out[(size_t)t * rows + r], e = ref[(size_t)t * rows + r];
            if (fabs(o - e) > 1e-5 * mag + 1e-30 || fabs(e - exact) > 1e-5 * mag + 1e-30) {
                printf("  %s %dx%d n=%d row %d pos %d: kernel %.9g reference %.9g exact %.9g\n",
                       ggml_type_name(type), rows, cols, n, r, t, o, e, exact);
                ok = 0;
                break;
            }
        }
    char what[96];
    snprintf(what, sizeof what, "matmul %s rows %d cols %d batch %d", ggml_type_name(type), rows, cols, n);
    check(ok, what);
    /* tensor_row must return the row the kernels use */
    float *row = malloc((size_t)cols * sizeof(float));
    tensor_row(row, &w, rows - 1);
    check(memcmp(row, wf + (size_t)(rows - 1) * cols, (size_t)cols * sizeof(float)) == 0, "tensor_row");
    free(row); free(wdata); free(wf); free(x); free(out); free(ref);
}

int main(void) {
    kernels_init();
    test_f16_roundtrip();
    const int shapes[][3] = {{1, 1, 1}, {7, 3, 1}, {33, 17, 2}, {64, 64, 1}, {129, 95, 5},
                             {256, 257, 9}, {31, 4099, 3}, {5, 2047, 17}, {300, 768, 64}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (uint32_t type = GGML_F32; type <= GGML_F16; type++)
            test_matmul(type, shapes[i][0], shapes[i][1], shapes[i][2]);
    printf("test_kernels: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
