/* npycmp.c: compares the logits the engine dumped with golden PyTorch logits, without Python.
 *
 *   npycmp OURS.npy REF.npy TOL [IDS_FILE PROMPT_LEN]
 *
 * Both files hold float32 [T, vocab]. Passes when, at every position t,
 *   max_v |ours[t,v] - ref[t,v]| <= TOL * max(1, max_v |ref[t,v]|).
 * With IDS_FILE (the golden token sequence, prompt then greedy tokens) it also checks greedy
 * decoding: the token we pick at step k, argmax(ours[P-1+k]), must be the golden one, or, where
 * they differ, within TOL of the reference's best logit there (a tie the two may break apart).
 * Prints one line per file pair and exits 1 on failure, 2 on unreadable input.
 *
 *   npycmp --attn ATTN.npy
 *
 * checks an attention dump, float32 [layers, heads, T, T]: every row sums to 1 within 1e-5 and
 * every entry above the diagonal (a key in the future) is exactly zero. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *data;
    size_t rows, cols; /* cols = the last dimension, rows = the product of the others */
    size_t shape[4];
    int ndim;
} Npy;

/* Reads a version 1.x little-endian float32 C-order .npy file of 1 to 4 dimensions. */
static int npy_read(const char *path, Npy *a) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "npycmp: cannot open %s\n", path);
        return -1;
    }
    unsigned char head[10];
    char dict[4096];
    int ok = fread(head, 1, 10, f) == 10 && memcmp(head, "\x93NUMPY", 6) == 0 && head[6] == 1;
    size_t hlen = head[8] | (size_t)head[9] << 8;
    ok = ok && hlen < sizeof dict && fread(dict, 1, hlen, f) == hlen;
    if (ok) {
        dict[hlen] = 0;
        const char *shape = strstr(dict, "'shape': (");
        ok = strstr(dict, "'descr': '<f4'") && strstr(dict, "'fortran_order': False") && shape;
        const char *p = ok ? shape + 10 : "";
        a->ndim = 0;
        a->rows = 1;
        while (ok && *p >= '0' && *p <= '9' && a->ndim < 4) {
            char *end;
            a->shape[a->ndim] = strtoul(p, &end, 10);
            a->rows *= a->shape[a->ndim++];
            p = end + strspn(end, ", ");
        }
        ok = ok && a->ndim >= 1 && *p == ')';
        if (ok) a->cols = a->shape[a->ndim - 1];
        if (ok) a->rows /= a->cols ? a->cols : 1;
    }
    if (ok) {
        size_t n = a->rows * a->cols;
        a->data = malloc(n * sizeof(float) + 1);
        ok = a->data && fread(a->data, sizeof(float), n, f) == n;
    }
    fclose(f);
    if (!ok) fprintf(stderr, "npycmp: %s is not a float32 .npy file of 1 to 4 dimensions\n", path);
    return ok ? 0 : -1;
}

static size_t argmax(const float *v, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* Rows sum to 1, the future is exactly zero. */
static int check_attention(const char *path) {
    Npy a = {0};
    if (npy_read(path, &a)) return 2;
    if (a.ndim != 4 || a.shape[2] != a.shape[3]) {
        printf("FAIL %s: not [layers, heads, T, T]\n", path);
        return 1;
    }
    const size_t T = a.cols;
    int ok = 1;
    double worst = 0.0;
    for (size_t r = 0; r < a.rows; r++) {
        const float *p = a.data + r * T;
        const size_t i = r % T; /* the query */
        double sum = 0.0;
        for (size_t j = 0; j < T; j++) {
            sum += p[j];
            if (j > i && p[j] != 0.0f) {
                if (ok) printf("FAIL %s: query %zu attends to the future key %zu\n", path, i, j);
                ok = 0;
            }
        }
        if (!(fabs(sum - 1.0) <= 1e-5)) {
            if (ok) printf("FAIL %s: row %zu sums to %.8f\n", path, r, sum);
            ok = 0;
        }
        if (fabs(sum - 1.0) > worst) worst = fabs(sum - 1.0);
    }
    printf("%s %s: [%zu, %zu, %zu, %zu], worst |row sum - 1| %.1e\n", ok ? "ok" : "FAIL", path,
           a.shape[0], a.shape[1], T, T, worst);
    free(a.data);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--attn") == 0) return check_attention(argv[2]);
    if (argc != 4 && argc != 6) {
        fprintf(stderr,
                "usage: npycmp OURS.npy REF.npy TOL [IDS_FILE PROMPT_LEN] | --attn ATTN.npy\n");
        return 2;
    }
    Npy ours = {0}, ref = {0};
    double tol = atof(argv[3]);
    if (npy_read(argv[1], &ours) || npy_read(argv[2], &ref)) return 2;
    if (ours.ndim != 2 || ref.ndim != 2) {
        printf("FAIL %s, %s: logits must be [T, vocab]\n", argv[1], argv[2]);
        return 1;
    }
    if (ours.rows != ref.rows || ours.cols != ref.cols) {
        printf("FAIL %s: shape [%zu, %zu], reference [%zu, %zu]\n", argv[1], ours.rows, ours.cols,
               ref.rows, ref.cols);
        return 1;
    }
    int ok = 1;
    double worst = 0.0; /* the largest error as a fraction of its position's allowance */
    for (size_t t = 0; t < ref.rows; t++) {
        const float *o = ours.data + t * ref.cols, *r = ref.data + t * ref.cols;
        double err = 0.0, mag = 1.0;
        for (size_t v = 0; v < ref.cols; v++) {
            double d = fabs((double)o[v] - r[v]);
            if (!(d <= err)) err = d; /* NaN propagates as a failure */
            if (fabs(r[v]) > mag) mag = fabs(r[v]);
        }
        if (!(err <= tol * mag)) {
            if (ok)
                printf("FAIL %s position %zu: max error %.3g > %.3g\n", argv[1], t, err, tol * mag);
            ok = 0;
        }
        if (err / (tol * mag) > worst) worst = err / (tol * mag);
    }
    if (argc == 6) {
        FILE *f = fopen(argv[4], "r");
        long p = atol(argv[5]);
        if (!f || p < 1) {
            fprintf(stderr, "npycmp: bad ids file or prompt length\n");
            return 2;
        }
        long id, k = 0, n_ids = 0;
        long *ids = malloc((ref.rows + 2) * sizeof *ids);
        while (fscanf(f, "%ld", &id) == 1 && n_ids < (long)ref.rows + 1) ids[n_ids++] = id;
        fclose(f);
        if (n_ids != (long)ref.rows + 1) {
            printf("FAIL %s: %ld golden ids for %zu logit rows\n", argv[4], n_ids, ref.rows);
            return 1;
        }
        for (k = 0; p - 1 + k < (long)ref.rows; k++) {
            const float *o = ours.data + (p - 1 + k) * ref.cols,
                        *r = ref.data + (p - 1 + k) * ref.cols;
            size_t pick = argmax(o, ref.cols), best = argmax(r, ref.cols);
            if ((long)pick != ids[p + k] &&
                !(r[best] - r[pick] <= tol * fmax(1.0, fabs(r[best])))) {
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
