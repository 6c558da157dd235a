/* gguf.c: checks every byte of a GGUF v3 file before anyone touches a tensor. gguf_parse works on
 * a buffer (and is what the fuzz target tests/fuzz/fuzz_gguf.c feeds); gguf_open maps a file
 * (filemap.h) and hands the mapping to it.
 *
 * Layout (ggml-org/ggml docs/gguf.md), little-endian:
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv      x { string key | u32 type | value }           string = u64 length + bytes
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   zero padding to general.alignment | tensor data (offsets relative to here, each aligned)
 *
 * Every read goes through a Reader that knows where the file ends, so a truncated or corrupt file
 * produces an error naming the field, never a read past the buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "filemap.h"
#include "gguf.h"

#define GGUF_MAX_DIMS 4

typedef struct {
    const uint8_t *p, *end;
    Error *err;
} Reader;

static int need(Reader *r, uint64_t n, const char *what) {
    if ((uint64_t)(r->end - r->p) < n)
        return fail(r->err, "truncated file: %s needs %llu bytes, %llu left", what,
                    (unsigned long long)n, (unsigned long long)(r->end - r->p));
    return 0;
}

static int read_u32(Reader *r, uint32_t *v, const char *what) {
    if (need(r, 4, what)) return -1;
    memcpy(v, r->p, 4);
    r->p += 4;
    return 0;
}

static int read_u64(Reader *r, uint64_t *v, const char *what) {
    if (need(r, 8, what)) return -1;
    memcpy(v, r->p, 8);
    r->p += 8;
    return 0;
}

static int read_str(Reader *r, Str *s, const char *what) {
    uint64_t len;
    if (read_u64(r, &len, what) || need(r, len, what)) return -1;
    s->ptr = (const char *)r->p;
    s->len = (size_t)len;
    r->p += len;
    return 0;
}

/* Names in messages are cut at 80 bytes: a corrupt length must not make a megabyte line. */
static int shown(Str s) { return (int)(s.len < 80 ? s.len : 80); }

/* Size in bytes of one scalar value of a metadata type; 0 for string/array. */
static size_t scalar_size(uint32_t type) {
    switch (type) {
    case GGUF_UINT8:
    case GGUF_INT8:
    case GGUF_BOOL: return 1;
    case GGUF_UINT16:
    case GGUF_INT16: return 2;
    case GGUF_UINT32:
    case GGUF_INT32:
    case GGUF_FLOAT32: return 4;
    case GGUF_UINT64:
    case GGUF_INT64:
    case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static int skip_value(Reader *r, uint32_t type, const char *key) {
    if (type == GGUF_STRING) {
        Str s;
        return read_str(r, &s, key);
    }
    size_t n = scalar_size(type);
    if (n == 0) return fail(r->err, "metadata '%s': unknown value type %u", key, type);
    if (need(r, n, key)) return -1;
    r->p += n;
    return 0;
}

static int read_kv(Reader *r, void *out) {
    GGUFKV *kv = out;
    char key[96];
    if (read_str(r, &kv->key, "metadata key")) return -1;
    snprintf(key, sizeof key, "%.*s", shown(kv->key), kv->key.ptr);
    if (read_u32(r, &kv->type, key)) return -1;
    kv->len = 1;
    kv->elem_type = 0;
    if (kv->type == GGUF_STRING) {
        Str s;
        if (read_str(r, &s, key)) return -1;
        kv->data = (const uint8_t *)s.ptr;
        kv->len = s.len;
    } else if (kv->type == GGUF_ARRAY) {
        if (read_u32(r, &kv->elem_type, key) || read_u64(r, &kv->len, key)) return -1;
        if (kv->elem_type == GGUF_ARRAY)
            return fail(r->err, "metadata '%s': nested arrays are not supported", key);
        kv->data = r->p;
        size_t es = scalar_size(kv->elem_type);
        if (es) { /* fixed-size elements: one bounds check for the whole array */
            if (kv->len > (uint64_t)(r->end - r->p) / es)
                return fail(r->err, "truncated file: array '%s' of %llu elements", key,
                            (unsigned long long)kv->len);
            r->p += kv->len * es;
        } else {
            for (uint64_t i = 0; i < kv->len; i++)
                if (skip_value(r, kv->elem_type, key)) return -1;
        }
    } else {
        kv->data = r->p;
        if (skip_value(r, kv->type, key)) return -1;
    }
    return 0;
}

static int is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

/* What the container needs to know of a tensor type: its name and the bytes of a block of
   `block` elements (ggml's layouts: kernels_quant.h). Types not listed are refused by name. */
typedef struct {
    const char *name;
    uint32_t block, bytes;
} TypeSize;

/* clang-format off */
static const TypeSize TYPE_SIZES[GGML_TYPE_COUNT] = {
    [GGML_F32] = {"F32", 1, 4},       [GGML_F16] = {"F16", 1, 2},
    [GGML_Q4_0] = {"Q4_0", 32, 18},   [GGML_Q4_1] = {"Q4_1", 32, 20},
    [GGML_Q5_0] = {"Q5_0", 32, 22},   [GGML_Q5_1] = {"Q5_1", 32, 24},
    [GGML_Q8_0] = {"Q8_0", 32, 34},   [GGML_Q2_K] = {"Q2_K", 256, 84},
    [GGML_Q3_K] = {"Q3_K", 256, 110}, [GGML_Q4_K] = {"Q4_K", 256, 144},
    [GGML_Q5_K] = {"Q5_K", 256, 176}, [GGML_Q6_K] = {"Q6_K", 256, 210},
    [GGML_Q8_K] = {"Q8_K", 256, 292}, [GGML_IQ4_NL] = {"IQ4_NL", 32, 18},
    /* the i-quants (kernels_iquant.h) */
    [GGML_IQ4_XS] = {"IQ4_XS", 256, 136},
    [GGML_IQ3_S] = {"IQ3_S", 256, 110},
    [GGML_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [GGML_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [GGML_IQ2_XS] = {"IQ2_XS", 256, 74},
    [GGML_IQ2_S] = {"IQ2_S", 256, 82},
    [GGML_IQ1_S] = {"IQ1_S", 256, 50},
    [GGML_IQ1_M] = {"IQ1_M", 256, 56},
    [GGML_BF16] = {"BF16", 1, 2},
};
/* clang-format on */

static const TypeSize *type_size(uint32_t type) {
    return type < GGML_TYPE_COUNT && TYPE_SIZES[type].name ? &TYPE_SIZES[type] : NULL;
}

uint32_t ggml_block_size(uint32_t type) {
    const TypeSize *t = type_size(type);
    return t ? t->block : 0;
}

size_t ggml_row_bytes(uint32_t type, uint64_t n) {
    const TypeSize *t = type_size(type);
    if (!t || n > ((uint64_t)1 << 40) || n % t->block) return 0;
    return (size_t)(n / t->block) * t->bytes;
}

const char *ggml_type_name(uint32_t type) {
    const TypeSize *t = type_size(type);
    return t ? t->name : "unsupported";
}

static int read_tensor_info(Reader *r, void *out) {
    GGUFTensor *t = out;
    char name[96];
    if (read_str(r, &t->name, "tensor name")) return -1;
    snprintf(name, sizeof name, "%.*s", shown(t->name), t->name.ptr);
    if (read_u32(r, &t->n_dims, name)) return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r->err, "tensor '%s': %u dimensions (expected 1 to %d)", name, t->n_dims,
                    GGUF_MAX_DIMS);
    uint64_t count = 1;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) {
        if (read_u64(r, &t->ne[i], name)) return -1;
        /* Cap each dimension and the product at 2^40 so the byte size below cannot overflow. */
        if (t->ne[i] == 0 || t->ne[i] > ((uint64_t)1 << 40) ||
            count > ((uint64_t)1 << 40) / t->ne[i])
            return fail(r->err, "tensor '%s': absurd dimension %llu", name,
                        (unsigned long long)t->ne[i]);
        count *= t->ne[i];
    }
    if (read_u32(r, &t->type, name) || read_u64(r, &t->offset, name)) return -1;
    size_t row = ggml_row_bytes(t->type, t->ne[0]);
    if (row == 0) {
        if (ggml_block_size(t->type))
            return fail(r->err, "tensor '%s': %s row length %llu is not a multiple of %u", name,
                        ggml_type_name(t->type), (unsigned long long)t->ne[0],
                        ggml_block_size(t->type));
        return fail(r->err,
                    "tensor '%s': unsupported tensor type %u (supported: F32, F16, BF16, Q4_0, "
                    "Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K, Q8_K, IQ4_NL, IQ4_XS, IQ3_S, IQ3_XXS, "
                    "IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M)",
                    name, t->type);
    }
    t->nbytes = row * (size_t)(count / t->ne[0]);
    return 0;
}

/* "GGUF", version 3, then the two counts, which must fit in the buffer. */
static int read_header(Reader *r, GGUF *g) {
    if (memcmp(r->p, "GGUF", 4) != 0)
        return fail(r->err, "not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")",
                    r->p[0], r->p[1], r->p[2], r->p[3]);
    r->p += 4;
    if (read_u32(r, &g->version, "version") || read_u64(r, &g->n_tensors, "tensor count") ||
        read_u64(r, &g->n_kv, "metadata count"))
        return -1;
    if (g->version != 3)
        return fail(r->err, "unsupported GGUF version %u (expected 3)", g->version);
    /* Each entry takes at least 8 bytes in the file. */
    if (g->n_kv > g->size / 8 || g->n_tensors > g->size / 8)
        return fail(r->err,
                    "truncated or corrupt header: %llu metadata entries and %llu tensors "
                    "cannot fit in %zu bytes",
                    (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, g->size);
    return 0;
}

static int read_alignment(GGUF *g, Error *err) {
    g->alignment = 32;
    int64_t align;
    int found = gguf_get_int(g, "general.alignment", &align, err);
    if (found < 0) return -1;
    if (found) {
        if (align <= 0 || align > 65536 || !is_pow2((uint64_t)align))
            return fail(err, "general.alignment is %lld (expected a power of two up to 65536)",
                        (long long)align);
        g->alignment = (uint32_t)align;
    }
    return 0;
}

/* Points each tensor into the data section, which starts at the first aligned byte after the
   header (header_end), checking that its bytes lie inside the buffer. A file without tensors (a
   vocabulary-only file, as llama.cpp writes them) may end at its header, unpadded. */
static int place_tensors(GGUF *g, size_t header_end, Error *err) {
    size_t data_start = (header_end + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors == 0 && header_end <= g->size) return 0;
    if (data_start > g->size)
        return fail(err, "truncated file: tensor data would start at byte %zu of %zu", data_start,
                    g->size);
    size_t data_size = g->size - data_start;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        GGUFTensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return fail(err, "tensor '%.*s': offset %llu is not a multiple of the alignment %u",
                        shown(t->name), t->name.ptr, (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return fail(err,
                        "tensor '%.*s': bytes %llu..%llu lie outside the file's %zu data bytes "
                        "(truncated or corrupt file)",
                        shown(t->name), t->name.ptr, (unsigned long long)t->offset,
                        (unsigned long long)(t->offset + t->nbytes), data_size);
        t->data = g->buf + data_start + t->offset;
    }
    return 0;
}

/* Orders names as memcmp does, a prefix first. */
static int name_cmp(Str a, const char *b, size_t b_len) {
    int c = memcmp(a.ptr, b, a.len < b_len ? a.len : b_len);
    return c ? c : (a.len > b_len) - (a.len < b_len);
}

static int by_name_cmp(const void *pa, const void *pb) {
    const GGUFTensor *a = *(const GGUFTensor *const *)pa, *b = *(const GGUFTensor *const *)pb;
    return name_cmp(a->name, b->name.ptr, b->name.len);
}

/* Sorts the tensors by name, for a binary search in gguf_find_tensor; a name twice is an error
   (which one would a lookup mean?). Sorting keeps a file of many tensors O(n log n). */
static int index_tensors(GGUF *g, Error *err) {
    g->by_name = malloc((g->n_tensors ? (size_t)g->n_tensors : 1) * sizeof *g->by_name);
    if (!g->by_name)
        return fail(err, "out of memory indexing %llu tensors", (unsigned long long)g->n_tensors);
    for (uint64_t i = 0; i < g->n_tensors; i++) g->by_name[i] = &g->tensors[i];
    qsort(g->by_name, (size_t)g->n_tensors, sizeof *g->by_name, by_name_cmp);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        Str name = g->by_name[i]->name;
        if (name_cmp(g->by_name[i - 1]->name, name.ptr, name.len) == 0)
            return fail(err, "tensor '%.*s' appears twice", shown(name), name.ptr);
    }
    return 0;
}

/* Room for entry i of an array that grows as its entries are read (capacity *cap), so that
   memory follows what the file holds, not what a corrupt count claims. Returns the array, moved
   or not, or NULL when out of memory (the old one is then still valid). */
static void *grow(void *array, size_t *cap, size_t i, size_t elem_size) {
    if (i < *cap) return array;
    size_t n = *cap ? 2 * *cap : 16;
    void *p = realloc(array, n * elem_size);
    if (p) *cap = n;
    return p;
}

/* Reads n entries of `size` bytes each with read_one into *items, growing it as they come. */
static int read_entries(Reader *r, void **items, uint64_t n, size_t size,
                        int (*read_one)(Reader *r, void *item), const char *what) {
    size_t cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        char *p = grow(*items, &cap, (size_t)i, size);
        if (!p) return fail(r->err, "out of memory reading %s %llu", what, (unsigned long long)i);
        *items = p;
        if (read_one(r, p + (size_t)i * size)) return -1;
    }
    return 0;
}

int gguf_parse(GGUF *g, const uint8_t *buf, size_t size, Error *err) {
    memset(g, 0, sizeof *g);
    if (size < 24)
        return fail(err, "too small to be a GGUF file (%zu bytes, the header alone is 24)", size);
    g->buf = buf;
    g->size = size;
    Reader r = {buf, buf + size, err};
    void *kv = NULL, *tensors = NULL; /* the arrays as they grow; g owns them at every step */
    int bad = read_header(&r, g) ||
              read_entries(&r, &kv, g->n_kv, sizeof *g->kv, read_kv, "metadata entry");
    g->kv = kv;
    bad = bad || read_alignment(g, err) ||
          read_entries(&r, &tensors, g->n_tensors, sizeof *g->tensors, read_tensor_info,
                       "tensor info");
    g->tensors = tensors;
    if (bad || place_tensors(g, (size_t)(r.p - buf), err) || index_tensors(g, err)) {
        gguf_close(g);
        return -1;
    }
    return 0;
}

int gguf_open(GGUF *g, const char *path, Error *err) {
    memset(g, 0, sizeof *g);
    const uint8_t *map;
    size_t size;
    const int rc = map_file(path, "model", 24, &map, &size, err);
    if (rc < 0) return -1;
    if (rc > 0) /* say what gguf_parse would say */
        return fail(err, "model '%s' is too small to be a GGUF file (%lld bytes)", path,
                    (long long)size);
    if (gguf_parse(g, map, size, err)) {
        unmap_file(map, size);
        return -1;
    }
    g->mapped = 1;
    return 0;
}

void gguf_close(GGUF *g) {
    if (g->mapped) unmap_file(g->buf, g->size);
    free(g->kv);
    free(g->tensors);
    free(g->by_name);
    memset(g, 0, sizeof *g);
}

const GGUFKV *gguf_find(const GGUF *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const GGUFTensor *gguf_find_tensor(const GGUF *g, const char *name) {
    const size_t len = strlen(name);
    size_t lo = 0, hi = (size_t)g->n_tensors; /* the name, if present, is in by_name[lo..hi) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(g->by_name[mid]->name, name, len);
        if (c == 0) return g->by_name[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Reads any integer-typed scalar at p as int64: its bytes widened, the signed types sign-extended
   (uint64 above INT64_MAX is refused). */
static int scalar_int(uint32_t type, const uint8_t *p, int64_t *out) {
    const int is_signed =
        type == GGUF_INT8 || type == GGUF_INT16 || type == GGUF_INT32 || type == GGUF_INT64;
    if (!is_signed && type != GGUF_UINT8 && type != GGUF_UINT16 && type != GGUF_UINT32 &&
        type != GGUF_UINT64)
        return -1;
    const size_t n = scalar_size(type);
    uint64_t u = 0;
    memcpy(&u, p, n); /* little-endian, as the whole file */
    const uint64_t sign = (uint64_t)1 << (8 * n - 1);
    if (is_signed && n < 8 && (u & sign)) u |= ~(sign - 1); /* extend the sign */
    if (!is_signed && u > (uint64_t)INT64_MAX) return -1;
    memcpy(out, &u, sizeof u); /* two's complement bits as int64 */
    return 0;
}

/* The getters share this: find `key`, let `convert` turn its value into *out (-1 for a type it
   does not take) and name the expected type in the error. */
typedef int (*Convert)(const GGUFKV *kv, void *out);

static int get_typed(const GGUF *g, const char *key, Convert convert, void *out,
                     const char *expected, Error *err) {
    static const char *names[GGUF_NTYPES] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                             "int32",  "float32", "bool",   "string", "array",
                                             "uint64", "int64",   "float64"};
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) return 0;
    if (convert(kv, out) != 0) /* read_kv admits only known types, so names[] covers kv->type */
        return fail(err, "metadata '%s' is %s %s, expected %s", key,
                    kv->type == GGUF_ARRAY ? "an" : "a", names[kv->type], expected);
    return 1;
}

static int to_int(const GGUFKV *kv, void *out) { return scalar_int(kv->type, kv->data, out); }

static int to_float(const GGUFKV *kv, void *out) {
    double *d = out;
    int64_t v;
    if (kv->type == GGUF_FLOAT32) {
        float f;
        memcpy(&f, kv->data, 4);
        *d = f;
    } else if (kv->type == GGUF_FLOAT64) {
        memcpy(d, kv->data, 8);
    } else {
        if (scalar_int(kv->type, kv->data, &v) != 0) return -1;
        *d = (double)v;
    }
    return 0;
}

static int to_bool(const GGUFKV *kv, void *out) {
    if (kv->type != GGUF_BOOL) return -1;
    *(int *)out = kv->data[0] != 0;
    return 0;
}

static int to_str(const GGUFKV *kv, void *out) {
    if (kv->type != GGUF_STRING) return -1;
    *(Str *)out = (Str){(const char *)kv->data, (size_t)kv->len};
    return 0;
}

int gguf_get_int(const GGUF *g, const char *key, int64_t *out, Error *err) {
    return get_typed(g, key, to_int, out, "an integer", err);
}

int gguf_get_float(const GGUF *g, const char *key, double *out, Error *err) {
    return get_typed(g, key, to_float, out, "a number", err);
}

int gguf_get_bool(const GGUF *g, const char *key, int *out, Error *err) {
    return get_typed(g, key, to_bool, out, "a bool", err);
}

int gguf_get_str(const GGUF *g, const char *key, Str *out, Error *err) {
    return get_typed(g, key, to_str, out, "a string", err);
}
