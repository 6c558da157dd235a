/* gguf.h: the GGUF v3 container (gguf.c): metadata and tensors, bounds-checked, in place.
 * Spec: ggml-org/ggml docs/gguf.md. All integers little-endian. */
#ifndef GGUF_H
#define GGUF_H

#include "common.h"

/* metadata value types */
/* clang-format off */
enum {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4, GGUF_INT32 = 5,
    GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10,
    GGUF_INT64 = 11, GGUF_FLOAT64 = 12, GGUF_NTYPES
};
/* clang-format on */

/* tensor types (ggml_type numbering); the ones gguf.c knows the sizes of, all of which the engine
   runs (kernels_quant.h). Q8_K is what K-quant dot products quantize activations to. */
/* clang-format off */
enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7,
    GGML_Q8_0 = 8, GGML_Q2_K = 10, GGML_Q3_K = 11, GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14,
    GGML_Q8_K = 15, GGML_IQ2_XXS = 16, GGML_IQ2_XS = 17, GGML_IQ3_XXS = 18, GGML_IQ1_S = 19,
    GGML_IQ4_NL = 20, GGML_IQ3_S = 21, GGML_IQ2_S = 22, GGML_IQ4_XS = 23, GGML_IQ1_M = 29,
    GGML_BF16 = 30, GGML_TYPE_COUNT
};
/* clang-format on */

typedef struct {
    Str key;
    uint32_t type;       /* GGUF_* */
    const uint8_t *data; /* the value's bytes in the file; for STRING the bytes after the length,
                               for ARRAY the first element */
    uint64_t len;        /* STRING: byte length; ARRAY: element count; else 1 */
    uint32_t elem_type;  /* ARRAY only: type of the elements */
} GGUFKV;

typedef struct {
    Str name;
    uint32_t n_dims;
    uint64_t ne[4];   /* ne[0] is the contiguous (innermost) dimension; unused dims are 1 */
    uint32_t type;    /* GGML_* */
    uint64_t offset;  /* from the start of the data section */
    const void *data; /* in the file's buffer */
    size_t nbytes;
} GGUFTensor;

typedef struct {
    const uint8_t *buf; /* the whole file: gguf_open's mmap, or the buffer given to gguf_parse */
    size_t size;
    int mapped; /* 1: buf is gguf_open's mapping, which gguf_close unmaps; 0: borrowed */
    uint32_t version;
    uint32_t alignment; /* general.alignment, default 32 */
    uint64_t n_kv, n_tensors;
    GGUFKV *kv;                 /* (n_kv), owned */
    GGUFTensor *tensors;        /* (n_tensors), in file order, owned */
    const GGUFTensor **by_name; /* (n_tensors) the same, sorted by name for lookup, owned */
} GGUF;

/* Checks every byte of the GGUF file held in buf[0..size) (magic, version, each metadata entry,
   each tensor's shape, type and extent, no name twice) and indexes it; no I/O. g borrows buf,
   which must outlive it; tensor data is aligned as far as buf is (an mmap: to the page). */
int gguf_parse(GGUF *g, const uint8_t *buf, size_t size, Error *err);
/* Maps the file at path read-only and parses it. */
int gguf_open(GGUF *g, const char *path, Error *err);
/* Frees what gguf_parse allocated, unmaps what gguf_open mapped, and zeroes g (safe to repeat). */
void gguf_close(GGUF *g);
const GGUFKV *gguf_find(const GGUF *g, const char *key);
const GGUFTensor *gguf_find_tensor(const GGUF *g, const char *name);
/* Typed getters: return 1 if found and converted, 0 if absent, -1 (with err) on a wrong type.
   gguf_get_int takes any integer type, gguf_get_float any number. */
int gguf_get_int(const GGUF *g, const char *key, int64_t *out, Error *err);
int gguf_get_float(const GGUF *g, const char *key, double *out, Error *err);
int gguf_get_bool(const GGUF *g, const char *key, int *out, Error *err);
int gguf_get_str(const GGUF *g, const char *key, Str *out, Error *err);
/* Bytes per row of `n` elements of a tensor type; 0 if the type is unknown or n does not fit it. */
size_t ggml_row_bytes(uint32_t type, uint64_t n);
const char *ggml_type_name(uint32_t type); /* "unsupported" for a type gguf.c does not know */
/* Elements per block of a known type (1 for F32/F16/BF16; 32 or 256 for the quantized ones), 0 if
   unknown. */
uint32_t ggml_block_size(uint32_t type);

#endif /* GGUF_H */
