/* llama_quantize.c: llama.cpp's own quantizer on a GGUF, for the tests and bench/quality.py, which
 * need files quantized BY llama.cpp (its choice of type per tensor, its block quantizers). The npm
 * oracle (node-llama-cpp 3.21.1) ships llama.cpp v0.4.0 as shared libraries but no quantize
 * program, so this opens libllama with dlopen and calls llama_model_quantize.
 *
 *   llama_quantize [--keep-alignment] LIBDIR IN.gguf OUT.gguf FTYPE [THREADS]
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

typedef QuantizeParams (*DefaultParamsFn)(void);
typedef uint32_t (*QuantizeFn)(const char *in, const char *out, const QuantizeParams *params);
typedef void (*BackendInitFn)(void);

/* The ftypes asked for by name: llama.cpp's numbers (enum llama_ftype in its llama.h). */
static const struct {
    const char *name;
    int32_t ftype;
} FTYPES[] = {
    {"f32", 0},     {"f16", 1},     {"q4_0", 2},    {"q4_1", 3},    {"q8_0", 7},    {"q5_0", 8},
    {"q5_1", 9},    {"q2_k", 10},   {"q3_k_s", 11}, {"q3_k_m", 12}, {"q3_k_l", 13}, {"q4_k_s", 14},
    {"q4_k_m", 15}, {"q5_k_s", 16}, {"q5_k_m", 17}, {"q6_k", 18},   {"iq4_nl", 25}, {"bf16", 32},
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

int main(int argc, char **argv) {
    const bool keep_alignment = argc > 1 && strcmp(argv[1], "--keep-alignment") == 0;
    argc -= keep_alignment;
    argv += keep_alignment;
    if (argc < 5 || argc > 6) {
        fprintf(
            stderr,
            "usage: llama_quantize [--keep-alignment] LIBDIR IN.gguf OUT.gguf FTYPE [THREADS]\n");
        return 2;
    }
    const int ftype = ftype_of(argv[4]);
    if (ftype < 0) {
        fprintf(stderr,
                "llama_quantize: unknown ftype '%s' (f32, f16, bf16, q4_0 ... q6_k, iq4_nl)\n",
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
    if (quantize(argv[2], argv[3], &params) != 0) {
        fprintf(stderr, "llama_quantize: llama.cpp failed to quantize %s to %s\n", argv[2],
                argv[4]);
        return 1;
    }
    return 0;
}
