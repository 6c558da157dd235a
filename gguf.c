/* gguf.c: maps a GGUF v3 file and checks every byte of it before anyone touches a tensor.
 *
 * Layout (ggml-org/ggml docs/gguf.md), little-endian:
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv      x { string key | u32 type | value }           string = u64 length + bytes
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   zero padding to general.alignment | tensor data (offsets relative to here, each aligned)
 *
 * Every read goes through a Reader that knows where the file ends, so a truncated or corrupt file
 * produces an error naming the field, never a read past the mapping.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Size in bytes of one scalar value of a metadata type; 0 for string/array. */
static size_t scalar_size(uint32_t type) {
    switch (type) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
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

static int read_kv(Reader *r, GGUFKV *kv) {
    char key[96];
    if (read_str(r, &kv->key, "metadata key")) return -1;
    snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 80 ? kv->key.len : 80), kv->key.ptr);
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
        if (es) {  /* fixed-size elements: one bounds check for the whole array */
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

size_t ggml_row_bytes(uint32_t type, uint64_t n) {
    if (n > ((uint64_t)1 << 40)) return 0;
    switch (type) {
    case GGML_F32: return (size_t)n * 4;
    case GGML_F16: return (size_t)n * 2;
    case GGML_Q8_0: return n % 32 ? 0 : (size_t)(n / 32) * 34;  /* f16 scale + 32 int8 */
    default: return 0;
    }
}

const char *ggml_type_name(uint32_t type) {
    switch (type) {
    case GGML_F32: return "F32";
    case GGML_F16: return "F16";
    case GGML_Q8_0: return "Q8_0";
    default: return "unsupported";
    }
}

static int read_tensor_info(Reader *r, GGUFTensor *t) {
    char name[96];
    if (read_str(r, &t->name, "tensor name")) return -1;
    snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 80 ? t->name.len : 80), t->name.ptr);
    if (read_u32(r, &t->n_dims, name)) return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r->err, "tensor '%s': %u dimensions (expected 1 to %d)", name, t->n_dims,
                    GGUF_MAX_DIMS);
    uint64_t count = 1;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < t->n_dims; i++) {
        if (read_u64(r, &t->ne[i], name)) return -1;
        /* Cap each dimension and the product at 2^40 so the byte size below cannot overflow. */
        if (t->ne[i] == 0 || t->ne[i] > ((uint64_t)1 << 40) || count > ((uint64_t)1 << 40) / t->ne[i])
            return fail(r->err, "tensor '%s': absurd dimension %llu", name,
                        (unsigned long long)t->ne[i]);
        count *= t->ne[i];
    }
    if (read_u32(r, &t->type, name) || read_u64(r, &t->offset, name)) return -1;
    size_t row = ggml_row_bytes(t->type, t->ne[0]);
    if (row == 0) {
        if (t->type == GGML_Q8_0)
            return fail(r->err, "tensor '%s': Q8_0 row length %llu is not a multiple of 32", name,
                        (unsigned long long)t->ne[0]);
        return fail(r->err, "tensor '%s': unsupported tensor type %u (supported: F32, F16, Q8_0)",
                    name, t->type);
    }
    t->nbytes = row * (size_t)(count / t->ne[0]);
    return 0;
}

int gguf_open(GGUF *g, const char *path, Error *err) {
    memset(g, 0, sizeof *g);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(err, "cannot open model '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, "model '%s' is not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        return fail(err, "model '%s' is too small to be a GGUF file (%lld bytes)", path,
                    (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);  /* the mapping stays valid */
    if (map == MAP_FAILED) return fail(err, "cannot mmap '%s': %s", path, strerror(errno));
    posix_madvise(map, (size_t)st.st_size, POSIX_MADV_WILLNEED);  /* start reading ahead */
    g->map = map;
    g->size = (size_t)st.st_size;

    Reader r = {g->map, g->map + g->size, err};
    if (memcmp(r.p, "GGUF", 4) != 0) {
        fail(err, "'%s' is not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")", path,
             r.p[0], r.p[1], r.p[2], r.p[3]);
        goto bad;
    }
    r.p += 4;
    read_u32(&r, &g->version, "version");
    if (g->version != 3) {
        fail(err, "unsupported GGUF version %u (expected 3)", g->version);
        goto bad;
    }
    if (read_u64(&r, &g->n_tensors, "tensor count") || read_u64(&r, &g->n_kv, "metadata count"))
        goto bad;
    /* Each entry takes at least 8 bytes in the file: bounds the allocations by the file size. */
    if (g->n_kv > g->size / 8 || g->n_tensors > g->size / 8) {
        fail(err, "truncated or corrupt header: %llu metadata entries and %llu tensors cannot fit in %zu bytes",
             (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, g->size);
        goto bad;
    }
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) {
        fail(err, "out of memory reading the GGUF header");
        goto bad;
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (read_kv(&r, &g->kv[i])) goto bad;

    g->alignment = 32;
    int64_t align;
    int found = gguf_get_int(g, "general.alignment", &align, err);
    if (found < 0) goto bad;
    if (found) {
        if (align <= 0 || align > 65536 || !is_pow2((uint64_t)align)) {
            fail(err, "general.alignment is %lld (expected a power of two)", (long long)align);
            goto bad;
        }
        g->alignment = (uint32_t)align;
    }

    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (read_tensor_info(&r, &g->tensors[i])) goto bad;

    size_t header = (size_t)(r.p - g->map);
    size_t data_start = (header + g->alignment - 1) / g->alignment * g->alignment;
    if (data_start > g->size) {
        fail(err, "truncated file: tensor data would start at byte %zu of %zu", data_start, g->size);
        goto bad;
    }
    size_t data_size = g->size - data_start;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        GGUFTensor *t = &g->tensors[i];
        if (t->offset % g->alignment) {
            fail(err, "tensor '%.*s': offset %llu is not a multiple of the alignment %u",
                 (int)t->name.len, t->name.ptr, (unsigned long long)t->offset, g->alignment);
            goto bad;
        }
        if (t->offset > data_size || t->nbytes > data_size - t->offset) {
            fail(err, "tensor '%.*s': bytes %llu..%llu lie outside the file's %zu data bytes "
                 "(truncated or corrupt file)", (int)t->name.len, t->name.ptr,
                 (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                 data_size);
            goto bad;
        }
        t->data = g->map + data_start + t->offset;
        for (uint64_t j = 0; j < i; j++)
            if (g->tensors[j].name.len == t->name.len &&
                memcmp(g->tensors[j].name.ptr, t->name.ptr, t->name.len) == 0) {
                fail(err, "tensor '%.*s' appears twice", (int)t->name.len, t->name.ptr);
                goto bad;
            }
    }
    return 0;
bad:
    gguf_close(g);
    return -1;
}

void gguf_close(GGUF *g) {
    if (g->map) munmap((void *)g->map, g->size);
    free(g->kv);
    free(g->tensors);
    memset(g, 0, sizeof *g);
}

const GGUFKV *gguf_find(const GGUF *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const GGUFTensor *gguf_find_tensor(const GGUF *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

/* Reads any integer-typed scalar at p as int64 (uint64 above INT64_MAX is rejected by callers). */
static int scalar_int(uint32_t type, const uint8_t *p, int64_t *out) {
    switch (type) {
    case GGUF_UINT8: *out = *p; return 0;
    case GGUF_INT8: *out = (int8_t)*p; return 0;
    case GGUF_UINT16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_INT16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_UINT32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_INT32: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_UINT64: {
        uint64_t v; memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)v; return 0;
    }
    case GGUF_INT64: { int64_t v; memcpy(&v, p, 8); *out = v; return 0; }
    default: return -1;
    }
}

int gguf_get_int(const GGUF *g, const char *key, int64_t *out, Error *err) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) return 0;
    if (scalar_int(kv->type, kv->data, out) != 0)
        return fail(err, "metadata '%s' has type %u, expected an integer", key, kv->type);
    return 1;
}

int gguf_get_float(const GGUF *g, const char *key, double *out, Error *err) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type == GGUF_FLOAT32) {
        float v;
        memcpy(&v, kv->data, 4);
        *out = v;
    } else if (kv->type == GGUF_FLOAT64) {
        memcpy(out, kv->data, 8);
    } else {
        int64_t v;
        if (scalar_int(kv->type, kv->data, &v) != 0)
            return fail(err, "metadata '%s' has type %u, expected a number", key, kv->type);
        *out = (double)v;
    }
    return 1;
}

int gguf_get_bool(const GGUF *g, const char *key, int *out, Error *err) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type != GGUF_BOOL)
        return fail(err, "metadata '%s' has type %u, expected a bool", key, kv->type);
    *out = kv->data[0] != 0;
    return 1;
}

int gguf_get_str(const GGUF *g, const char *key, Str *out, Error *err) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) return 0;
    if (kv->type != GGUF_STRING)
        return fail(err, "metadata '%s' has type %u, expected a string", key, kv->type);
    out->ptr = (const char *)kv->data;
    out->len = (size_t)kv->len;
    return 1;
}
