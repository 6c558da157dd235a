/* fuzz_numeric.c: non-finite and extreme numbers through the forward pass and the sampler. Each
 * input builds a tiny llama in memory (a GGUF written here: 2 layers, dim 32, vocabulary 32), sets
 * chosen weights to chosen values (NaN, +-inf, denormals, values near F16's limit 65504, huge
 * ones), picks the sampler's options and the KV cache's type, then decodes a few tokens:
 *
 *   bytes 0-12  options: flags (bit 0: F16 matrices, bit 1: F16 KV cache, bit 2: -v's diagnosis),
 *               temperature, top-k, top-p, min-p, repeat, frequency and presence penalties, their
 *               window, three prompt tokens, the seed
 *   then        4 bytes per weight set: tensor, element (2 bytes), value (table below)
 *
 * The contract (model.h, sampler.h): token ids outside the vocabulary are refused in one line;
 * after each forward pass the rule's check passes exactly when every logit is finite, and when it
 * fails its error is one line and nothing is sampled from those logits; the sampler returns an id
 * in range whatever it is given (checked on the refused logits too); no sanitizer report.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "model.h"
#include "sampler.h"

enum { DIM = 32, HIDDEN = 64, LAYERS = 2, HEADS = 4, KV_HEADS = 2, VOCAB = 32, CTX = 16 };
enum { KV_DIM = DIM / HEADS * KV_HEADS, MAX_TENSORS = 3 + 9 * LAYERS, OPTIONS = 13 };

/* A growing byte buffer, the GGUF being written. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *v, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
        CHECK(b->p != NULL);
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}
static void put_u32(Buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(Buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(Buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_u32(Buf *b, const char *key, uint32_t v) {
    put_str(b, key);
    put_u32(b, 4);
    put_u32(b, v);
}
static void kv_f32(Buf *b, const char *key, float v) {
    put_str(b, key);
    put_u32(b, 6);
    put(b, &v, 4);
}
static void kv_str(Buf *b, const char *key, const char *v) {
    put_str(b, key);
    put_u32(b, 8);
    put_str(b, v);
}

/* A tensor of the model: name, GGUF shape (ne0 = the row length), type, where its data goes. */
typedef struct {
    char name[32];
    uint64_t ne0, ne1;
    int f16;
    size_t offset, count;
} TensorPlan;

static int plan_tensors(TensorPlan *t, int f16) {
    int n = 0;
    const struct {
        const char *name;
        uint64_t ne0, ne1;
        int matrix;
    } layer[9] = {
        {"attn_norm", DIM, 1, 0},     {"attn_q", DIM, DIM, 1},      {"attn_k", DIM, KV_DIM, 1},
        {"attn_v", DIM, KV_DIM, 1},   {"attn_output", DIM, DIM, 1}, {"ffn_norm", DIM, 1, 0},
        {"ffn_gate", DIM, HIDDEN, 1}, {"ffn_up", DIM, HIDDEN, 1},   {"ffn_down", HIDDEN, DIM, 1}};
    t[n++] = (TensorPlan){"token_embd.weight", DIM, VOCAB, f16, 0, 0};
    t[n++] = (TensorPlan){"output_norm.weight", DIM, 1, 0, 0, 0};
    t[n++] = (TensorPlan){"output.weight", DIM, VOCAB, f16, 0, 0};
    for (int l = 0; l < LAYERS; l++)
        for (int k = 0; k < 9; k++) {
            t[n] = (TensorPlan){"", layer[k].ne0, layer[k].ne1, f16 && layer[k].matrix, 0, 0};
            snprintf(t[n].name, sizeof t[n].name, "blk.%d.%s.weight", l, layer[k].name);
            n++;
        }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        t[i].count = (size_t)(t[i].ne0 * t[i].ne1);
        t[i].offset = off;
        off += (t[i].count * (t[i].f16 ? 2 : 4) + 31) / 32 * 32;
    }
    return n;
}

static void put_metadata(Buf *b) {
    kv_str(b, "general.architecture", "llama");
    kv_u32(b, "general.alignment", 32);
    kv_u32(b, "llama.context_length", CTX);
    kv_u32(b, "llama.embedding_length", DIM);
    kv_u32(b, "llama.feed_forward_length", HIDDEN);
    kv_u32(b, "llama.block_count", LAYERS);
    kv_u32(b, "llama.attention.head_count", HEADS);
    kv_u32(b, "llama.attention.head_count_kv", KV_HEADS);
    kv_f32(b, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_str(b, "tokenizer.ggml.model", "llama");
    put_str(b, "tokenizer.ggml.tokens");
    put_u32(b, 9);
    put_u32(b, 8);
    put_u64(b, VOCAB);
    static const char *const special[3] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < VOCAB; i++) {
        char piece[8] = {(char)('a' + i % 26), (char)('a' + i / 26), 0};
        put_str(b, i < 3 ? special[i] : piece);
    }
    put_str(b, "tokenizer.ggml.scores");
    put_u32(b, 9);
    put_u32(b, 6);
    put_u64(b, VOCAB);
    for (int i = 0; i < VOCAB; i++) {
        const float s = -(float)i;
        put(b, &s, 4);
    }
    put_str(b, "tokenizer.ggml.token_type");
    put_u32(b, 9);
    put_u32(b, 5);
    put_u64(b, VOCAB);
    for (int i = 0; i < VOCAB; i++) put_u32(b, i == 0 ? 2 : i < 3 ? 3 : 1);
    kv_u32(b, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(b, "tokenizer.ggml.eos_token_id", 2);
}

/* The values a weight can be set to; from 16 on, +-powers of two from 2^-140 to 2^130. */
static float poke_value(uint8_t v) {
    static const float table[16] = {
        NAN,   INFINITY, -INFINITY, 1e-45f,   1.1754942e-38f, 65504.0f, -65504.0f, 65520.0f,
        1e10f, -1e10f,   3.4e38f,   -3.4e38f, 0.0f,           1e-20f,   -1e-45f,   65519.0f};
    if (v < 16) return table[v];
    return ldexpf(v & 1 ? -1.0f : 1.0f, (v - 16) * 270 / 239 - 140);
}

/* The model's GGUF: metadata, tensor infos, weights in [-0.5, 0.5) (norms 1), then the pokes. */
static uint8_t *build_model(const uint8_t *pokes, size_t n_pokes, int f16, size_t *size) {
    TensorPlan t[MAX_TENSORS];
    const int n = plan_tensors(t, f16);
    Buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, (uint64_t)n);
    put_u64(&b, 15); /* metadata entries */
    put_metadata(&b);
    for (int i = 0; i < n; i++) {
        put_str(&b, t[i].name);
        put_u32(&b, t[i].ne1 > 1 ? 2 : 1);
        put_u64(&b, t[i].ne0);
        if (t[i].ne1 > 1) put_u64(&b, t[i].ne1);
        put_u32(&b, t[i].f16 ? GGML_F16 : GGML_F32);
        put_u64(&b, t[i].offset);
    }
    const size_t data = (b.n + 31) / 32 * 32;
    const size_t total = data + t[n - 1].offset + t[n - 1].count * (t[n - 1].f16 ? 2 : 4);
    uint8_t *buf = aligned_alloc(64, (total + 63) / 64 * 64);
    CHECK(buf != NULL);
    memset(buf, 0, total);
    memcpy(buf, b.p, b.n);
    free(b.p);
    uint64_t rng = 88172645463325252ull;
    for (int i = 0; i < n; i++)
        for (size_t k = 0; k < t[i].count; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            const int norm = t[i].ne1 == 1;
            const float w = norm ? 1.0f : (float)(rng >> 40) / 16777216.0f - 0.5f;
            uint8_t *p = buf + data + t[i].offset;
            if (t[i].f16) {
                const uint16_t h = f32_to_f16(w);
                memcpy(p + 2 * k, &h, 2);
            } else {
                memcpy(p + 4 * k, &w, 4);
            }
        }
    for (size_t j = 0; j < n_pokes; j++) {
        const uint8_t *q = pokes + 4 * j;
        const TensorPlan *tp = &t[q[0] % n];
        const size_t k = (size_t)(q[1] | q[2] << 8) % tp->count;
        const float v = poke_value(q[3]);
        uint8_t *p = buf + data + tp->offset;
        if (tp->f16) {
            const uint16_t h = isnan(v) ? 0x7e00 : f32_to_f16(v);
            memcpy(p + 2 * k, &h, 2);
        } else {
            memcpy(p + 4 * k, &v, 4);
        }
    }
    *size = total;
    return buf;
}

/* The sampler the option bytes describe (every value one the command line accepts, and the
   temperature 1e-39, whose inverse overflows). */
static void make_sampler(Sampler *sp, const uint8_t *o) {
    static const float temps[8] = {0.0f, 1e-39f, 1e-30f, 0.01f, 0.5f, 1.0f, 2.0f, 100.0f};
    static const float top_ps[4] = {1.0f, 0.9f, 0.5f, 1e-6f};
    static const float min_ps[4] = {0.0f, 0.05f, 0.5f, 1.0f};
    static const float repeats[4] = {1.0f, 1e-30f, 1.5f, 100.0f};
    static const float adds[4] = {0.0f, 0.5f, -100.0f, 100.0f};
    static const int last_ns[4] = {0, 1, 4, 64};
    Error err;
    CHECK(sampler_init(sp, VOCAB, temps[o[1] % 8], top_ps[o[3] % 4], o[2] % (VOCAB + 2), o[12],
                       &err) == 0);
    sp->min_p = min_ps[o[4] % 4];
    CHECK(sampler_set_penalties(sp, last_ns[o[8] % 4], repeats[o[5] % 4], adds[o[6] % 4],
                                adds[o[7] % 4], &err) == 0);
}

/* The rule's check after a forward pass: passes exactly when every logit computed is finite. */
static int checked(Model *m, const int *ids, int n, int pos, int diagnose) {
    Error err;
    CHECK(forward(m, ids, n, pos, LOGITS_ALL, &err) == 0);
    int finite = 1;
    for (size_t i = 0; i < (size_t)n * VOCAB; i++) finite &= isfinite(m->state.logits[i]);
    const int ok = forward_check(m, ids, n, pos, LOGITS_ALL, diagnose, &err) == 0;
    if (!ok) CHECK_ERROR(&err);
    CHECK(ok == finite);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) kernels_init(); /* the half table and the best kernel set */
    init = 1;
    if (size < OPTIONS) return 0;
    const uint8_t *o = data;
    const size_t n_pokes = (size - OPTIONS) / 4 < 64 ? (size - OPTIONS) / 4 : 64;
    size_t gsize;
    uint8_t *buf = build_model(data + OPTIONS, n_pokes, o[0] & 1, &gsize);
    Model m;
    Error err;
    memset(&m, 0, sizeof m);
    CHECK(gguf_parse(&m.file, buf, gsize, &err) == 0);
    CHECK(model_init(&m, 4, 0, o[0] & 2 ? KV_F16 : KV_F32, &err) == 0);
    const int bad_ids[2] = {-1, VOCAB};
    for (int i = 0; i < 2; i++) {
        CHECK(forward(&m, &bad_ids[i], 1, 0, LOGITS_LAST, &err) == -1);
        CHECK_ERROR(&err);
    }
    Sampler sp;
    make_sampler(&sp, o);
    int ids[3] = {o[9] % VOCAB, o[10] % VOCAB, o[11] % VOCAB}, pos = 0;
    for (int i = 0; i < 3; i++) sampler_accept(&sp, ids[i]);
    int ok = checked(&m, ids, 3, pos, o[0] & 4);
    pos += 3;
    for (int step = 0; step < 4; step++) {
        const float *logits = m.state.logits + (size_t)(pos == 3 ? 2 : 0) * VOCAB;
        const int next = sampler_sample(&sp, logits); /* refused logits too: in range anyway */
        CHECK(next >= 0 && next < VOCAB);
        if (!ok) break; /* the run stops: nothing sampled from them goes on */
        sampler_accept(&sp, next);
        ok = checked(&m, &next, 1, pos++, o[0] & 4);
    }
    sampler_free(&sp);
    model_free(&m);
    free(buf);
    return 0;
}
