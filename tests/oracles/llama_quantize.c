/* llama_quantize.c: llama.cpp's own quantizer on a GGUF, for the tests and bench/quality.py, which
 * need files quantized BY llama.cpp (its choice of type per tensor, its block quantizers). The npm
 * oracle (node-llama-cpp 3.21.1) ships llama.cpp v0.4.0 as shared libraries but no quantize
 * program, so this opens libllama with dlopen and calls llama_model_quantize.
 *
 *   llama_quantize [--keep-alignment] [--imatrix FILE] LIBDIR IN.gguf OUT.gguf FTYPE [THREADS]
 *
 * LIBDIR holds libllama.v0.4.0.so (its ggml libraries are found beside it through its RUNPATH,
 * $ORIGIN); FTYPE is one of the names in FTYPES (llama.cpp's llama_ftype, lower case). Exit 0 on
 * success; 1 with one line on stderr when the library is missing or refuses the file.
 *
 * The output's general.alignment is set to 32 (a metadata override). v0.4.0's GGUF writer copies
 * the input's keys, general.alignment among them (export.py writes 64), but lays the file out
 * with its context's alignment, always GGUF's default of 32: the data section then starts where
 * the key does not say, and neither llama.cpp nor ./run can read the file. --keep-alignment
 * leaves the key as llama.cpp copies it (the tests check that this still happens).
 *
 * --imatrix FILE gives llama.cpp an importance matrix (which the i-quants below 3 bits and
 * IQ3_XXS require), through the C API's llama_model_imatrix_data: FILE holds records of a u32
 * length, the tensor's name ending in NULs to that length (a multiple of 4), a u32 count and that
 * many float32 (one per column of the tensor: the mean square of its inputs), little-endian.
 */
#include <assert.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIBRARY "libllama.v0.4.0.so"

/* llama_model_quantize_params as llama.h of llama.cpp v0.4.0 declares it (the layout, field by
   field: 4 ints, 6 bools, 4 pointers, a size_t; 64 bytes on LP64). The enums are ints. Only
   nthread and ftype are set here; the rest keep llama.cpp's defaults. */
typedef struct {
    int32_t nthread;              /* <= 0: all hardware threads */
    int32_t ftype;                /* enum llama_ftype */
    int32_t output_tensor_type;   /* enum ggml_type (GGML_TYPE_COUNT: the ftype's choice) */
    int32_t token_embedding_type; /* enum ggml_type */
    bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
    const void *imatrix, *kv_overrides, *tt_overrides;
    const int32_t *prune_layers;
    size_t max_buf_size;
} QuantizeParams;
static_assert(sizeof(QuantizeParams) == 64, "llama_model_quantize_params of v0.4.0 is 64 bytes");
static_assert(offsetof(QuantizeParams, imatrix) == 24, "pointers start after the bools' padding");

/* llama_model_kv_override of v0.4.0: a type tag (enum, INT = 0), the key, a 128-byte union; an
   array of them ends with an empty key. */
typedef struct {
    int32_t tag;
    char key[128];
    union {
        int64_t i64;
        double f64;
        bool b;
        char str[128];
    } val;
} KvOverride;
static_assert(sizeof(KvOverride) == 264, "llama_model_kv_override of v0.4.0 is 264 bytes");
#define KV_OVERRIDE_INT 0

/* llama_model_imatrix_data of v0.4.0; an array of them ends with a NULL name. */
typedef struct {
    const char *name;
    const float *data;
    size_t size;
} ImatrixData;

typedef QuantizeParams (*DefaultParamsFn)(void);
typedef uint32_t (*QuantizeFn)(const char *in, const char *out, const QuantizeParams *params);
typedef void (*BackendInitFn)(void);

/* The ftypes asked for by name: llama.cpp's numbers (enum llama_ftype in its llama.h). */
static const struct {
    const char *name;
    int32_t ftype;
} FTYPES[] = {
    {"f32", 0},     {"f16", 1},     {"q4_0", 2},     {"q4_1", 3},    {"q8_0", 7},
    {"q5_0", 8},    {"q5_1", 9},    {"q2_k", 10},    {"q3_k_s", 11}, {"q3_k_m", 12},
    {"q3_k_l", 13}, {"q4_k_s", 14}, {"q4_k_m", 15},  {"q5_k_s", 16}, {"q5_k_m", 17},
    {"q6_k", 18},   {"iq4_nl", 25}, {"iq2_xxs", 19}, {"iq2_xs", 20}, {"iq3_xxs", 23},
    {"iq1_s", 24},  {"iq3_s", 26},  {"iq3_m", 27},   {"iq2_s", 28},  {"iq2_m", 29},
    {"iq4_xs", 30}, {"iq1_m", 31},  {"bf16", 32},
};

static int ftype_of(const char *name) {
    for (size_t i = 0; i < sizeof FTYPES / sizeof FTYPES[0]; i++)
        if (strcmp(FTYPES[i].name, name) == 0) return FTYPES[i].ftype;
    return -1;
}

/* The library's symbol, or NULL after saying which is missing. */
static void *symbol(void *lib, const char *name) {
    void *fn = dlsym(lib, name);
    if (!fn) fprintf(stderr, "llama_quantize: %s has no %s\n", LIBRARY, name);
    return fn;
}

/* FILE's records (see the top) as an array ending with a NULL name, or NULL after saying why.
   The names and floats live in one block, *data; the caller frees both. */
static ImatrixData *read_imatrix(const char *path, void **data) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "llama_quantize: cannot open the importance matrix %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    const long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = len > 0 ? malloc((size_t)len + 1) : NULL;
    size_t n = 0, at = 0;
    ImatrixData *out = NULL;
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) goto bad;
    while (at < (size_t)len) {
        uint32_t nlen, count;
        if ((size_t)len - at < 4) goto bad;
        memcpy(&nlen, buf + at, 4);
        if ((size_t)len - at - 4 < (size_t)nlen + 4 || nlen == 0 || nlen % 4 ||
            buf[at + 4 + nlen - 1])
            goto bad;
        memcpy(&count, buf + at + 4 + nlen, 4);
        const size_t floats_at = at + 8 + nlen;
        if (((size_t)len - floats_at) / 4 < count) goto bad;
        ImatrixData *grown = realloc(out, (n + 2) * sizeof *out);
        if (!grown) goto bad;
        out = grown;
        out[n++] =
            (ImatrixData){(const char *)buf + at + 4, (const float *)(buf + floats_at), count};
        at = floats_at + 4 * (size_t)count;
    }
    if (!out) goto bad;
    out[n] = (ImatrixData){0};
    fclose(f);
    *data = buf;
    return out;
bad:
    fprintf(stderr, "llama_quantize: %s is not an importance matrix file\n", path);
    fclose(f);
    free(buf);
    free(out);
    return NULL;
}

int main(int argc, char **argv) {
    bool keep_alignment = false;
    const char *imatrix_path = NULL;
    while (argc > 1 && strncmp(argv[1], "--", 2) == 0) {
        if (strcmp(argv[1], "--keep-alignment") == 0)
            keep_alignment = true;
        else if (strcmp(argv[1], "--imatrix") == 0 && argc > 2)
            imatrix_path = (++argv, --argc, argv[1]);
        else
            break;
        argc--;
        argv++;
    }
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: llama_quantize [--keep-alignment] [--imatrix FILE] LIBDIR IN.gguf "
                        "OUT.gguf FTYPE [THREADS]\n");
        return 2;
    }
    const int ftype = ftype_of(argv[4]);
    if (ftype < 0) {
        fprintf(
            stderr,
            "llama_quantize: unknown ftype '%s' (f32, f16, bf16, q4_0 ... q6_k, iq4_nl, iq4_xs ... "
            "iq1_m)\n",
            argv[4]);
        return 2;
    }
    char *end = NULL;
    const long threads = argc == 6 ? strtol(argv[5], &end, 10) : 1;
    if (argc == 6 && (*end || end == argv[5] || threads < 1 || threads > 256)) {
        fprintf(stderr, "llama_quantize: THREADS must be 1 to 256, got '%s'\n", argv[5]);
        return 2;
    }
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", argv[1], LIBRARY) >= (int)sizeof path) {
        fprintf(stderr, "llama_quantize: LIBDIR too long\n");
        return 2;
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "llama_quantize: cannot load llama.cpp: %s\n", dlerror());
        return 1;
    }
    BackendInitFn backend_init = (BackendInitFn)symbol(lib, "llama_backend_init");
    DefaultParamsFn defaults = (DefaultParamsFn)symbol(lib, "llama_model_quantize_default_params");
    QuantizeFn quantize = (QuantizeFn)symbol(lib, "llama_model_quantize");
    if (!backend_init || !defaults || !quantize) return 1;

    backend_init();
    QuantizeParams params = defaults();
    /* The defaults as v0.4.0 sets them (ftype Q8_0, both tensor types GGML_TYPE_COUNT = 43,
       quantize_output_tensor on, no imatrix, an 8 GiB buffer): other values mean another
       layout, whose fields this program would misread. */
    if (params.ftype != 7 || params.output_tensor_type != 43 || params.token_embedding_type != 43 ||
        params.allow_requantize || !params.quantize_output_tensor || params.pure ||
        params.imatrix || params.max_buf_size != ((size_t)8 << 30)) {
        fprintf(stderr, "llama_quantize: %s's default parameters are not v0.4.0's layout\n",
                LIBRARY);
        return 1;
    }
    params.ftype = ftype;
    params.nthread = (int32_t)threads;
    KvOverride overrides[2] = {{.tag = KV_OVERRIDE_INT, .key = "general.alignment", .val.i64 = 32},
                               {0}};
    if (!keep_alignment) params.kv_overrides = overrides;
    void *imatrix_data = NULL;
    ImatrixData *imatrix = imatrix_path ? read_imatrix(imatrix_path, &imatrix_data) : NULL;
    if (imatrix_path && !imatrix) return 1;
    params.imatrix = imatrix;
    const uint32_t failed = quantize(argv[2], argv[3], &params);
    free(imatrix);
    free(imatrix_data);
    if (failed) {
        fprintf(stderr, "llama_quantize: llama.cpp failed to quantize %s to %s\n", argv[2],
                argv[4]);
        return 1;
    }
    return 0;
}
