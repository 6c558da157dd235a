/* gguf_vocab.c: the Tokenizer a GGUF file's tokenizer.ggml.* metadata describes (gguf_vocab.h):
 * the kind and pre-tokenizer named, the tokens, scores, types and merges copied out of the file's
 * arrays, the special ids checked against the vocabulary.
 */
#include <stdlib.h>
#include <string.h>

#include "gguf_vocab.h"

/* Finds the array `key` with elements of `type`; returns its kv or NULL (with err) if wrong. */
static const GGUFKV *get_array(const GGUF *g, const char *key, uint32_t type, int required,
                               Error *err) {
    const GGUFKV *kv = gguf_find(g, key);
    if (!kv) {
        if (required) fail(err, "missing metadata '%s' (the model has no tokenizer)", key);
        return NULL;
    }
    if (kv->type != GGUF_ARRAY || kv->elem_type != type) {
        fail(err, "metadata '%s' must be an array of type %u", key, type);
        return NULL;
    }
    return kv;
}

/* Collects the strings of a validated string array (each: u64 length + bytes). */
static Str *string_array(const GGUFKV *kv) {
    Str *s = malloc((kv->len ? kv->len : 1) * sizeof *s);
    if (!s) return NULL;
    const uint8_t *p = kv->data;
    for (uint64_t i = 0; i < kv->len; i++) {
        uint64_t n;
        memcpy(&n, p, 8);
        s[i].ptr = (const char *)p + 8;
        s[i].len = (size_t)n;
        p += 8 + n;
    }
    return s;
}

static int get_token_id(const GGUF *g, const char *key, int n_vocab, int *out, Error *err) {
    int64_t v;
    int found = gguf_get_int(g, key, &v, err);
    *out = -1;
    if (found < 0) return -1;
    if (!found) return 0;
    if (v < 0 || v >= n_vocab)
        return fail(err, "metadata '%s' = %lld is not a token id (vocabulary %d)", key,
                    (long long)v, n_vocab);
    *out = (int)v;
    return 0;
}

/* tokenizer.ggml.pre names, as llama.cpp's llama-vocab.cpp maps them to its pre-tokenizer types:
   those it gives GPT-2's, Llama 3's, Qwen2's and SmolLM's regexes (with Llama 3's, llama.cpp also
   sets ignore_merges; tokenizer.c does it for PRE_LLAMA3). "gpt2" is what this program's exports
   wrote before they used llama.cpp's names. */
static const struct {
    const char *name;
    TokenizerPre pre;
} PRE_NAMES[] = {
    {"gpt-2", PRE_GPT2},       {"gpt2", PRE_GPT2},       {"phi-2", PRE_GPT2},
    {"jina-es", PRE_GPT2},     {"jina-de", PRE_GPT2},    {"jina-v2-es", PRE_GPT2},
    {"jina-v2-de", PRE_GPT2},  {"gigachat", PRE_GPT2},   {"a.x-4.0", PRE_GPT2},
    {"mellum", PRE_GPT2},      {"exaone4", PRE_GPT2},    {"llama-bpe", PRE_LLAMA3},
    {"llama3", PRE_LLAMA3},    {"llama-v3", PRE_LLAMA3}, {"falcon3", PRE_LLAMA3},
    {"falcon-h1", PRE_LLAMA3}, {"pixtral", PRE_LLAMA3},  {"midm-2.0", PRE_LLAMA3},
    {"lfm2", PRE_LLAMA3},      {"qwen2", PRE_QWEN2},     {"deepseek-r1-qwen", PRE_QWEN2},
    {"megrez", PRE_QWEN2},     {"smollm", PRE_SMOLLM},
};

static int find_pre(Str name, TokenizerPre *pre) {
    for (size_t i = 0; i < sizeof PRE_NAMES / sizeof PRE_NAMES[0]; i++)
        if (str_eq(name, PRE_NAMES[i].name)) {
            *pre = PRE_NAMES[i].pre;
            return 0;
        }
    return -1;
}

int gguf_tokenizer(const GGUF *g, int vocab_only, int max_vocab, int *vocab_size, Tokenizer **tok,
                   Error *err) {
    TokenizerSpec spec;
    memset(&spec, 0, sizeof spec);
    Str kind;
    int found = gguf_get_str(g, "tokenizer.ggml.model", &kind, err);
    if (found < 0) return -1;
    if (!found)
        return fail(err, "missing metadata 'tokenizer.ggml.model' (the model has no tokenizer)");
    if (str_eq(kind, "llama"))
        spec.kind = TOK_SPM;
    else if (str_eq(kind, "gpt2"))
        spec.kind = TOK_GPT2;
    else
        return fail(err, "unsupported tokenizer '%.*s' (supported: llama, gpt2)",
                    (int)(kind.len > 40 ? 40 : kind.len), kind.ptr);
    /* The pre-tokenizer of a byte-level BPE vocabulary. Absent (files from before the key
       existed): GPT-2's rules. SentencePiece has none. */
    Str pre;
    if ((found = gguf_get_str(g, "tokenizer.ggml.pre", &pre, err)) < 0) return -1;
    spec.pre = PRE_GPT2;
    if (found && spec.kind == TOK_GPT2 && find_pre(pre, &spec.pre) != 0)
        return fail(err,
                    "unsupported pre-tokenizer '%.*s' for a gpt2 vocabulary (supported: gpt-2, "
                    "llama-bpe, qwen2, smollm and the names llama.cpp treats as one of them)",
                    (int)(pre.len > 40 ? 40 : pre.len), pre.ptr);

    const GGUFKV *tokens = get_array(g, "tokenizer.ggml.tokens", GGUF_STRING, 1, err);
    if (!tokens) return -1;
    if (vocab_only && tokens->len <= (uint64_t)max_vocab) *vocab_size = (int)tokens->len;
    if (tokens->len != (uint64_t)*vocab_size)
        return fail(err, "tokenizer has %llu tokens but token_embd.weight has %d rows",
                    (unsigned long long)tokens->len, *vocab_size);
    spec.n_vocab = *vocab_size;

    const GGUFKV *scores = get_array(g, "tokenizer.ggml.scores", GGUF_FLOAT32, 0, err);
    const GGUFKV *types = get_array(g, "tokenizer.ggml.token_type", GGUF_INT32, 0, err);
    const GGUFKV *merges = get_array(g, "tokenizer.ggml.merges", GGUF_STRING, 0, err);
    if ((!scores && gguf_find(g, "tokenizer.ggml.scores")) ||
        (!types && gguf_find(g, "tokenizer.ggml.token_type")) ||
        (!merges && gguf_find(g, "tokenizer.ggml.merges")))
        return -1;
    if ((scores && scores->len != tokens->len) || (types && types->len != tokens->len))
        return fail(err, "tokenizer scores/token_type arrays do not match the %llu tokens",
                    (unsigned long long)tokens->len);
    if (spec.kind == TOK_GPT2 && !merges)
        return fail(err, "missing metadata 'tokenizer.ggml.merges' (needed by a gpt2 tokenizer)");
    if (merges && merges->len > (uint64_t)INT32_MAX) return fail(err, "too many merges");

    int rc = -1;
    Str *tok_strs = string_array(tokens);
    Str *merge_strs = merges ? string_array(merges) : NULL;
    float *score_v = scores ? malloc(tokens->len * sizeof(float) + 1) : NULL;
    int32_t *type_v = types ? malloc(tokens->len * sizeof(int32_t) + 1) : NULL;
    if (!tok_strs || (merges && !merge_strs) || (scores && !score_v) || (types && !type_v)) {
        fail(err, "out of memory loading the tokenizer");
        goto done;
    }
    /* Metadata arrays are not aligned in the file: copy them out instead of casting. */
    if (score_v) memcpy(score_v, scores->data, tokens->len * sizeof(float));
    if (type_v) memcpy(type_v, types->data, tokens->len * sizeof(int32_t));
    spec.tokens = tok_strs;
    spec.scores = score_v;
    spec.types = type_v;
    spec.merges = merge_strs;
    spec.n_merges = merges ? (int)merges->len : 0;

    int add_bos = spec.kind == TOK_SPM, space = spec.kind == TOK_SPM;
    if (get_token_id(g, "tokenizer.ggml.bos_token_id", spec.n_vocab, &spec.bos_id, err) ||
        get_token_id(g, "tokenizer.ggml.eos_token_id", spec.n_vocab, &spec.eos_id, err) ||
        get_token_id(g, "tokenizer.ggml.unknown_token_id", spec.n_vocab, &spec.unk_id, err) ||
        get_token_id(g, "tokenizer.ggml.eot_token_id", spec.n_vocab, &spec.eot_id, err) ||
        gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, err) < 0 ||
        gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &space, err) < 0)
        goto done;
    spec.add_bos = add_bos;
    spec.add_space_prefix = space;
    /* a Metaspace pre-tokenizer's spaces; merges by rank never join across a "▁" with split */
    int meta = 0, split = 0;
    if (gguf_get_bool(g, "tinygpt.tokenizer.metaspace", &meta, err) < 0 ||
        gguf_get_bool(g, "tinygpt.tokenizer.metaspace_split", &split, err) < 0)
        goto done;
    spec.metaspace = meta;
    spec.metaspace_split = split;
    rc = tokenizer_build(tok, &spec, err);
done:
    free(tok_strs);
    free(merge_strs);
    free(score_v);
    free(type_v);
    return rc;
}
