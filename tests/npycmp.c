/* npycmp.c: compares the logits the engine dumped with golden PyTorch logits, without Python.
 *
 *   npycmp OURS.npy REF.npy TOL [IDS_FILE PROMPT_LEN]
 *
 * Both files hold float32 [T, vocab]. Passes when, at every position t,
 *   max_v |ours[t,v] - ref[t,v]| <= TOL * max(1, max_v |ref[t,v]|).
 * With IDS_FILE (the golden token sequence, prompt then greedy tokens) it also checks greedy
 * decoding: the token we pick at step k, argmax(ours[P-1+k]), must be the golden one, or, where
 * they differ, within TOL of the reference's best logit there (a tie the two may break apart).
 * Prints one line per file pair and exits 1 on failure, 2 on unreadable input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *data;
    size_t rows, cols;
} Npy;

/* Reads a version 1.x little-endian float32 2-D C-order .npy file. */
static int npy_read(const char *path, Npy *a) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "npycmp: cannot open %s\n", path); return -1; }
    unsigned char head[10];
    char dict[4096];
    int ok = fread(head, 1, 10, f) == 10 && memcmp(head, "\x93NUMPY", 6) == 0 && head[6] == 1;
    size_t hlen = head[8] | (size_t)head[9] << 8;
    ok = ok && hlen < sizeof dict && fread(dict, 1, hlen, f) == hlen;
    if (ok) {
        dict[hlen] = 0;
        const char *shape = strstr(dict, "'shape': (");
        ok = strstr(dict, "'descr': '<f4'") && strstr(dict, "'fortran_order': False") && shape &&
             sscanf(shape + 10, "%zu, %zu", &a->rows, &a->cols) == 2;
    }
    if (ok) {
        size_t n = a->rows * a->cols;
        a->data = malloc(n * sizeof(float) + 1);
        ok = a->data && fread(a->data, sizeof(float), n, f) == n;
    }
    fclose(f);
    if (!ok) fprintf(stderr, "npycmp: %s is not a float32 2-D .npy file\n", path);
    return ok ? 0 : -1;
}

static size_t argmax(const float *v, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: npycmp OURS.npy REF.npy TOL [IDS_FILE PROMPT_LEN]\n");
        return 2;
    }
    Npy ours = {0}, ref = {0};
    double tol = atof(argv[3]);
    if (npy_read(argv[1], &ours) || npy_read(argv[2], &ref)) return 2;
    if (ours.rows != ref.rows || ours.cols != ref.cols) {
        printf("FAIL %s: shape [%zu, %zu], reference [%zu, %zu]\n", argv[1], ours.rows, ours.cols,
               ref.rows, ref.cols);
        return 1;
    }
    int ok = 1;
    double worst = 0.0;  /* the largest error as a fraction of its position's allowance */
    for (size_t t = 0; t < ref.rows; t++) {
        const float *o = ours.data + t * ref.cols, *r = ref.data + t * ref.cols;
        double err = 0.0, mag = 1.0;
        for (size_t v = 0; v < ref.cols; v++) {
            double d = fabs((double)o[v] - r[v]);
            if (!(d <= err)) err = d;  /* NaN propagates as a failure */
            if (fabs(r[v]) > mag) mag = fabs(r[v]);
        }
        if (!(err <= tol * mag)) {
            if (ok) printf("FAIL %s position %zu: max error %.3g > %.3g\n", argv[1], t, err, tol * mag);
            ok = 0;
        }
        if (err / (tol * mag) > worst) worst = err / (tol * mag);
    }
    if (argc == 6) {
        FILE *f = fopen(argv[4], "r");
        long p = atol(argv[5]);
        if (!f || p < 1) { fprintf(stderr, "npycmp: bad ids file or prompt length\n"); return 2; }
        long id, k = 0, n_ids = 0;
        long *ids = malloc((ref.rows + 2) * sizeof *ids);
        while (fscanf(f, "%ld", &id) == 1 && n_ids < (long)ref.rows + 1) ids[n_ids++] = id;
        fclose(f);
        if (n_ids != (long)ref.rows + 1) {
            printf("FAIL %s: %ld golden ids for %zu logit rows\n", argv[4], n_ids, ref.rows);
            return 1;
        }
        for (k = 0; p - 1 + k < (long)ref.rows; k++) {
            const float *o = ours.data + (p - 1 + k) * ref.cols, *r = ref.data + (p - 1 + k) * ref.cols;
            size_t pick = argmax(o, ref.cols), best = argmax(r, ref.cols);
            if ((long)pick != ids[p + k] && !(r[best] - r[pick] <= tol * fmax(1.0, fabs(r[best])))) {
                printf("FAIL greedy step %ld: picked %zu, golden %ld\n", k, pick, ids[p + k]);
                ok = 0;
            }
        }
        free(ids);
    }
    printf("%s %s: %zu positions, worst error %.3f of the allowance\n", ok ? "ok" : "FAIL", argv[1],
           ref.rows, worst);
    free(ours.data);
    free(ref.data);
    return ok ? 0 : 1;
}
