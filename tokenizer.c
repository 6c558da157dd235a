/* tokenizer.c: text -> token ids and back, for the two tokenizer families in model.h.
 *
 *   TOK_SPM   SentencePiece BPE (tokenizer.ggml.model "llama"). Matches the sentencepiece library
 *             (bpe_model.cc) for models with identity normalization: spaces become U+2581, an
 *             optional dummy prefix is added, then adjacent symbols are merged best score first.
 *   TOK_GPT2  byte-level BPE (tokenizer.ggml.model "gpt2"). Matches openai/gpt-2 src/encoder.py
 *             and Hugging Face's byte-level BPE: split into words with the vocabulary's
 *             pre-tokenizer (GPT-2's, Llama 3's, Qwen2's or SmolLM's), map bytes to printable
 *             characters, merge by rank.
 *
 * Both merge loops use a binary heap of candidate pairs over a doubly linked list of symbols, so a
 * long input costs O(n log n), not O(n^2). Before either runs, the text is cut at the spellings of
 * special tokens (user-defined ones always, control ones on request), as Hugging Face's added
 * tokens and llama.cpp's tokenizer_st_partition do; each piece between them is encoded alone. The
 * spellings are found in one pass over the text (an Aho-Corasick automaton), however many and
 * long they are.
 */
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "tokenizer.h"
#include "unicode.h"

/* ------------------------------------------------------------------------------------------ */
/* The tokenizer */

/* A node of the special-token automaton: the string of the path from the root (a reversed
   spelling's prefix, that is, the end of a spelling, read backwards). Nodes are numbered in order
   of depth, and a node's children are consecutive, by increasing byte. */
typedef struct {
    int32_t fail;    /* the node of the longest proper suffix of this string that is in the trie */
    int32_t depth;   /* the string's length */
    int32_t id;      /* the special token the string spells (reversed), or -1 */
    int32_t out[2];  /* the deepest node on the fail chain from here, this one first, whose token
                        is wanted in mode m (SPECIAL_MODES), or -1: the longest such token */
    int32_t child;   /* the first child; the others follow it */
    int32_t n_child; /* children, at most 256 */
    unsigned char byte; /* the byte of the edge into this node */
} SpecialNode;

enum { SPECIAL_USER = 1, SPECIAL_CONTROL = 2 }; /* special_class: user-defined; control, unknown */
/* The tokens a mode matches in the text: [0] user-defined ones (always), [1] every special one
   (parse_special). */
static const unsigned char SPECIAL_MODES[2] = {SPECIAL_USER, SPECIAL_USER | SPECIAL_CONTROL};

struct Tokenizer {
    TokenizerKind kind;
    TokenizerPre pre;
    int n_vocab;
    char *text;     /* owned: every token string, then every decoded string, NUL-separated */
    Str *tokens;    /* (n_vocab) token strings, into text */
    Str *decoded;   /* (n_vocab) bytes a token decodes to (control tokens: empty), into text */
    float *scores;  /* (n_vocab) SPM merge priority, higher first */
    int32_t *types; /* (n_vocab) TOKEN_* */
    int32_t *slots; /* string -> id open-addressing table: id or -1; size mask + 1 */
    uint32_t mask;
    int byte_id[256]; /* SPM: id of <0xXX>; GPT-2: id of the byte's printable character; or -1 */
    int has_byte_tokens; /* SPM: all 256 <0xXX> tokens exist, so unknown characters fall back to them */
    /* Special tokens matched in the text: an Aho-Corasick automaton over their spellings,
       reversed (see "Special tokens in the text"). Node 0 is the root, the empty string. */
    SpecialNode *snodes; /* (n_snodes) */
    int32_t n_snodes;
    int32_t sroot[256];    /* the root's child by byte, or -1 */
    int special_wanted[2]; /* some token is wanted in the mode (SPECIAL_MODES) */
    /* Merges (GPT-2, or SPM by rank): (left id, right id) -> rank and merged id, open
       addressing on the pair. */
    uint64_t *pair_keys; /* (pair_mask + 1) key = left << 32 | right, or UINT64_MAX when empty */
    int32_t *pair_rank, *pair_id;
    uint32_t pair_mask;
    int bos_id, eos_id, unk_id, eot_id;
    int add_bos, add_space_prefix;
    int spm_ranks;       /* SPM: pieces merge by the rank of their merge, not by score */
    int metaspace_split; /* SPM by rank: never across a U+2581 */
    int metaspace;       /* SPM: Hugging Face's Metaspace pre-tokenizer made the U+2581s */
    int max_token_len;
    int max_decoded_len; /* bytes of the longest decoded string */
    Str space; /* SPM: how the pieces spell a space (SPACE_SYMBOL, or " " in llama2.c's files) */
};

/* "▁" (U+2581), SentencePiece's visible space. */
static const char SPACE_SYMBOL[] = "\xE2\x96\x81";
/* What sentencepiece decodes an unknown token to (its default unk_surface, " ⁇ "). */
static const char UNK_SURFACE[] = " \xE2\x81\x87 ";

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static uint32_t hash_pair(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL; /* murmur3 finalizer */
    key ^= key >> 33;
    return (uint32_t)key;
}

/* Table size: a power of two at least twice n, so probes stay short. */
static uint32_t table_size(int n) {
    uint32_t size = 16;
    while (size < 2u * (uint32_t)n) size *= 2;
    return size;
}

/* Returns the id of the token spelled s[0..n), or -1. */
static int lookup(const Tokenizer *t, const char *s, size_t n) {
    for (uint32_t i = hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
        int id = t->slots[i];
        if (id < 0) return -1;
        if (t->tokens[id].len == n && memcmp(t->tokens[id].ptr, s, n) == 0) return id;
    }
}

static int lookup_pair(const Tokenizer *t, int left, int right, int *merged) {
    uint64_t key = (uint64_t)left << 32 | (uint32_t)right;
    for (uint32_t i = hash_pair(key) & t->pair_mask;; i = (i + 1) & t->pair_mask) {
        if (t->pair_keys[i] == UINT64_MAX) return -1;
        if (t->pair_keys[i] == key) {
            *merged = t->pair_id[i];
            return t->pair_rank[i];
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* GPT-2's byte <-> printable character map (bytes_to_unicode in openai/gpt-2 src/encoder.py):
   printable Latin-1 bytes map to themselves, the other 68 to U+0100, U+0101, ... in byte order. */

static void gpt2_byte_chars(uint32_t cp_of_byte[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        cp_of_byte[b] = printable ? (uint32_t)b : (uint32_t)(256 + n++);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Building */

/* Writes the bytes token `id` decodes to at out and returns their count: at most the token's own
   length ("▁" is 3 bytes for 1, a GPT-2 byte character 1-2 bytes for 1), or the unk surface. */
static size_t decoded_text(const Tokenizer *t, int id, const int *byte_of_cp, char *out) {
    Str s = t->tokens[id];
    int type = t->types[id];
    if (type == TOKEN_CONTROL) return 0;
    if (t->kind == TOK_SPM) {
        if (type == TOKEN_UNKNOWN) {
            memcpy(out, UNK_SURFACE, sizeof UNK_SURFACE - 1);
            return sizeof UNK_SURFACE - 1;
        }
        if (type == TOKEN_BYTE) {
            for (int b = 0; b < 256; b++)
                if (t->byte_id[b] == id) {
                    out[0] = (char)b;
                    return 1;
                }
        }
        size_t n = 0;
        for (size_t i = 0; i < s.len;) {
            if (s.len - i >= t->space.len && memcmp(s.ptr + i, t->space.ptr, t->space.len) == 0) {
                out[n++] = ' ';
                i += t->space.len;
            } else {
                out[n++] = s.ptr[i++];
            }
        }
        return n;
    }
    /* GPT-2: each character is one byte, except in user-defined tokens (added as plain text) and
       characters outside the map, which stand for themselves. */
    if (type == TOKEN_USER_DEFINED || !utf8_valid(s.ptr, s.len, NULL)) {
        memcpy(out, s.ptr, s.len);
        return s.len;
    }
    size_t n = 0;
    for (size_t i = 0; i < s.len;) {
        uint32_t cp;
        size_t k = utf8_decode(s.ptr + i, s.len - i, &cp);
        if (cp < 324 && byte_of_cp[cp] >= 0)
            out[n++] = (char)byte_of_cp[cp];
        else
            memcpy(out + n, s.ptr + i, k), n += k;
        i += k;
    }
    return n;
}

int tokenizer_byte_piece(Str s) {
    if (s.len != 6 || memcmp(s.ptr, "<0x", 3) != 0 || s.ptr[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s.ptr[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static int build_merges(Tokenizer *t, const TokenizerSpec *spec, Error *err) {
    t->pair_mask = table_size(spec->n_merges) - 1;
    size_t size = (size_t)t->pair_mask + 1;
    t->pair_keys = malloc(size * sizeof *t->pair_keys);
    t->pair_rank = malloc(size * sizeof *t->pair_rank);
    t->pair_id = malloc(size * sizeof *t->pair_id);
    if (!t->pair_keys || !t->pair_rank || !t->pair_id) return fail(err, "out of memory (merges)");
    for (size_t i = 0; i < size; i++) t->pair_keys[i] = UINT64_MAX;
    char *joined = malloc((size_t)t->max_token_len * 2 + 1);
    if (!joined) return fail(err, "out of memory (merges)");
    for (int r = 0; r < spec->n_merges; r++) {
        Str m = spec->merges[r];
        /* "left right": the separator is the first space after the first character, since a token
           may itself be a space in some vocabularies. */
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
        int left = -1, right = -1, merged = -1;
        if (sp) {
            size_t ln = (size_t)(sp - m.ptr), rn = m.len - ln - 1;
            left = lookup(t, m.ptr, ln);
            right = lookup(t, sp + 1, rn);
            if (ln + rn <= (size_t)t->max_token_len * 2) {
                memcpy(joined, m.ptr, ln);
                memcpy(joined + ln, sp + 1, rn);
                merged = lookup(t, joined, ln + rn);
            }
        }
        if (left < 0 || right < 0 || merged < 0) {
            free(joined);
            return fail(err,
                        "tokenizer merge %d \"%.*s\" names tokens that are not in the vocabulary",
                        r, (int)(m.len > 100 ? 100 : m.len), m.ptr);
        }
        /* A repeated merge takes the later rank, like the dict the reference builds from the list. */
        uint64_t key = (uint64_t)left << 32 | (uint32_t)right;
        uint32_t i = hash_pair(key) & t->pair_mask;
        while (t->pair_keys[i] != UINT64_MAX && t->pair_keys[i] != key) i = (i + 1) & t->pair_mask;
        t->pair_keys[i] = key;
        t->pair_rank[i] = r;
        t->pair_id[i] = merged;
    }
    free(joined);
    return 0;
}

static int special_class(int type) {
    if (type == TOKEN_USER_DEFINED) return SPECIAL_USER;
    return type == TOKEN_CONTROL || type == TOKEN_UNKNOWN ? SPECIAL_CONTROL : 0;
}

/* The child of `node` by byte c, or -1. */
static int32_t special_child(const Tokenizer *t, int32_t node, unsigned char c) {
    if (node == 0) return t->sroot[c];
    int32_t lo = t->snodes[node].child, hi = lo + t->snodes[node].n_child - 1;
    while (lo <= hi) { /* the children are sorted by byte */
        int32_t mid = lo + (hi - lo) / 2;
        if (t->snodes[mid].byte == c) return mid;
        if (t->snodes[mid].byte < c)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* A spelling names the first id that has it (the string table's rule), so a special spelling
   whose first id is a normal token is never matched: 1 when id is special and names itself. */
static int special_spelling(const Tokenizer *t, int id) {
    Str s = t->tokens[id];
    return s.len > 0 && special_class(t->types[id]) && lookup(t, s.ptr, s.len) == id;
}

typedef struct {
    Str s;
    int id;
} Spelling;

/* Reversed spellings in byte order: those that share an end are neighbours. */
static int by_reversed(const void *pa, const void *pb) {
    const Str *a = &((const Spelling *)pa)->s, *b = &((const Spelling *)pb)->s;
    for (size_t i = 1; i <= a->len && i <= b->len; i++) {
        unsigned char x = (unsigned char)a->ptr[a->len - i], y = (unsigned char)b->ptr[b->len - i];
        if (x != y) return x < y ? -1 : 1;
    }
    return a->len < b->len ? -1 : a->len > b->len;
}

/* The trie of the reversed spellings sp[0..m) (sorted), one depth at a time, so that nodes are
   numbered by depth and siblings are consecutive. cur[k]: the node spelling k has reached. */
static void special_trie(Tokenizer *t, Spelling *sp, int32_t *cur, int m) {
    t->snodes[0] = (SpecialNode){0, 0, -1, {-1, -1}, 1, 0, 0};
    t->n_snodes = 1;
    for (int k = 0; k < m; k++) cur[k] = 0;
    for (size_t d = 1; m > 0; d++) {
        int kept = 0;
        int32_t prev = -1, prev_parent = -1; /* the node made last at this depth, its parent */
        for (int k = 0; k < m; k++) {
            const unsigned char c = (unsigned char)sp[k].s.ptr[sp[k].s.len - d];
            const int32_t parent_id = cur[k];
            int32_t v = prev;
            if (prev < 0 || t->snodes[prev].byte != c || parent_id != prev_parent) {
                v = t->n_snodes++;
                t->snodes[v] = (SpecialNode){0, (int32_t)d, -1, {-1, -1}, 0, 0, c};
                SpecialNode *parent = &t->snodes[parent_id];
                if (parent->n_child++ == 0) parent->child = v;
            }
            prev = v;
            prev_parent = parent_id;
            if (sp[k].s.len == d) {
                t->snodes[v].id = sp[k].id;
            } else {
                sp[kept] = sp[k];
                cur[kept++] = v;
            }
        }
        m = kept;
    }
    for (int c = 0; c < 256; c++) t->sroot[c] = -1;
    for (int32_t v = t->snodes[0].child; v < t->snodes[0].child + t->snodes[0].n_child; v++)
        t->sroot[t->snodes[v].byte] = v;
}

/* Each node's fail link and longest wanted token, in order of depth (a node's fail link is
   shallower, so its own is known). */
static void special_links(Tokenizer *t) {
    for (int32_t u = 0; u < t->n_snodes; u++) {
        for (int32_t v = t->snodes[u].child; v < t->snodes[u].child + t->snodes[u].n_child; v++) {
            SpecialNode *nv = &t->snodes[v];
            int32_t f = -1;
            for (int32_t w = u; w != 0 && f < 0;) {
                w = t->snodes[w].fail;
                f = special_child(t, w, nv->byte);
            }
            nv->fail = f < 0 ? 0 : f;
            for (int mode = 0; mode < 2; mode++) {
                const int own =
                    nv->id >= 0 && (special_class(t->types[nv->id]) & SPECIAL_MODES[mode]);
                nv->out[mode] = own ? v : t->snodes[nv->fail].out[mode];
                if (own) t->special_wanted[mode] = 1;
            }
        }
    }
}

static int build_specials(Tokenizer *t, Error *err) {
    size_t total = 0; /* bytes of every special spelling: a bound on the trie's nodes */
    int m = 0;
    for (int id = 0; id < t->n_vocab; id++)
        if (special_spelling(t, id)) total += t->tokens[id].len, m++;
    if (total >= INT32_MAX / 2) return fail(err, "tokenizer: special tokens too long (%zu)", total);
    t->snodes = malloc((total + 1) * sizeof *t->snodes);
    Spelling *sp = malloc((size_t)(m ? m : 1) * sizeof *sp);
    int32_t *cur = malloc((size_t)(m ? m : 1) * sizeof *cur);
    if (!t->snodes || !sp || !cur) {
        free(sp);
        free(cur);
        return fail(err, "out of memory (special tokens)");
    }
    m = 0;
    for (int id = 0; id < t->n_vocab; id++)
        if (special_spelling(t, id)) sp[m++] = (Spelling){t->tokens[id], id};
    qsort(sp, (size_t)m, sizeof *sp, by_reversed);
    special_trie(t, sp, cur, m);
    special_links(t);
    free(sp);
    free(cur);
    return 0;
}

/* What the file says, checked before anything is built: sizes and the ids of special tokens. */
static int check_spec(const TokenizerSpec *spec, Error *err) {
    const int n = spec->n_vocab;
    if (n <= 0) return fail(err, "tokenizer: empty vocabulary");
    if (spec->kind == TOK_GPT2 && spec->n_merges > 0 && !spec->merges)
        return fail(err, "tokenizer: gpt2 merges missing");
    for (int id = 0; id < n; id++)
        if (spec->tokens[id].len > (size_t)1 << 20)
            return fail(err, "tokenizer: token %d is %zu bytes long", id, spec->tokens[id].len);
    const int ids[4] = {spec->bos_id, spec->eos_id, spec->unk_id, spec->eot_id};
    for (int i = 0; i < 4; i++)
        if (ids[i] < -1 || ids[i] >= n)
            return fail(err, "tokenizer: special token id %d outside the vocabulary of %d", ids[i],
                        n);
    return 0;
}

/* Copies the token strings, scores and types into t, with room after the strings for their
   decoded forms (*decoded_at), and fills the string -> id table. */
static int copy_tokens(Tokenizer *t, const TokenizerSpec *spec, char **decoded_at, Error *err) {
    const int n = spec->n_vocab;
    size_t total = 0; /* a decoded form is at most its token's length, or the unk surface */
    for (int id = 0; id < n; id++) total += 2 * (spec->tokens[id].len + 1) + sizeof UNK_SURFACE;
    t->text = malloc(total);
    t->tokens = malloc((size_t)n * sizeof *t->tokens);
    t->decoded = malloc((size_t)n * sizeof *t->decoded);
    t->scores = malloc((size_t)n * sizeof *t->scores);
    t->types = malloc((size_t)n * sizeof *t->types);
    t->mask = table_size(n) - 1;
    t->slots = malloc(((size_t)t->mask + 1) * sizeof *t->slots);
    if (!t->text || !t->tokens || !t->decoded || !t->scores || !t->types || !t->slots)
        return fail(err, "out of memory (tokenizer, %d tokens)", n);
    char *p = t->text;
    for (int id = 0; id < n; id++) {
        Str s = spec->tokens[id];
        memcpy(p, s.ptr, s.len);
        p[s.len] = '\0';
        t->tokens[id] = (Str){p, s.len};
        p += s.len + 1;
        t->scores[id] = spec->scores ? spec->scores[id] : 0.0f;
        t->types[id] = spec->types ? spec->types[id] : TOKEN_NORMAL;
        if ((int)s.len > t->max_token_len) t->max_token_len = (int)s.len;
    }
    *decoded_at = p;
    memset(t->slots, 0xFF, ((size_t)t->mask + 1) * sizeof *t->slots);
    for (int id = 0; id < n; id++) {
        Str s = t->tokens[id];
        if (lookup(t, s.ptr, s.len) >= 0) continue; /* a repeated string keeps its first id */
        uint32_t i = hash_bytes(s.ptr, s.len) & t->mask;
        while (t->slots[i] >= 0) i = (i + 1) & t->mask;
        t->slots[i] = id;
    }
    return 0;
}

/* The tokens of single bytes: SentencePiece's <0xXX> pieces, or GPT-2's byte characters (and
   byte_of_cp, their inverse, for decoding; -1 elsewhere). */
static void build_bytes(Tokenizer *t, int byte_of_cp[324]) {
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    for (int c = 0; c < 324; c++) byte_of_cp[c] = -1;
    if (t->kind == TOK_SPM) {
        int n_bytes = 0;
        for (int id = 0; id < t->n_vocab; id++) {
            int b = t->types[id] == TOKEN_BYTE ? tokenizer_byte_piece(t->tokens[id]) : -1;
            if (b >= 0 && t->byte_id[b] < 0) t->byte_id[b] = id, n_bytes++;
        }
        t->has_byte_tokens = n_bytes == 256;
        return;
    }
    uint32_t cp_of_byte[256];
    gpt2_byte_chars(cp_of_byte);
    for (int b = 0; b < 256; b++) {
        char ch[4];
        size_t k = utf8_encode(cp_of_byte[b], ch);
        t->byte_id[b] = lookup(t, ch, k);
        byte_of_cp[cp_of_byte[b]] = b;
    }
}

/* Each token's decoded bytes, written from p on (copy_tokens left the room). */
static void build_decoded(Tokenizer *t, const int byte_of_cp[324], char *p) {
    for (int id = 0; id < t->n_vocab; id++) {
        size_t k = decoded_text(t, id, byte_of_cp, p);
        t->decoded[id] = (Str){p, k};
        if ((int)k > t->max_decoded_len) t->max_decoded_len = (int)k;
        p += k;
        *p++ = '\0';
    }
}

int tokenizer_build(Tokenizer **out, const TokenizerSpec *spec, Error *err) {
    *out = NULL;
    if (check_spec(spec, err)) return -1;
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) return fail(err, "out of memory (tokenizer)");
    t->kind = spec->kind;
    t->pre = spec->pre;
    t->n_vocab = spec->n_vocab;
    t->bos_id = spec->bos_id;
    t->eos_id = spec->eos_id;
    t->unk_id = spec->unk_id;
    t->eot_id = spec->eot_id;
    t->add_bos = spec->add_bos;
    t->add_space_prefix = spec->kind == TOK_SPM && spec->add_space_prefix;
    t->space = spec->spaces_as_is ? (Str){" ", 1} : (Str){SPACE_SYMBOL, 3};
    char *decoded_at = NULL;
    int byte_of_cp[324]; /* GPT-2: code point -> byte, or -1 */
    if (copy_tokens(t, spec, &decoded_at, err)) goto fail;
    build_bytes(t, byte_of_cp);
    t->spm_ranks = t->kind == TOK_SPM && spec->n_merges > 0;
    t->metaspace_split = t->spm_ranks && spec->metaspace_split;
    t->metaspace = t->kind == TOK_SPM && spec->metaspace;
    if ((t->kind == TOK_GPT2 || t->spm_ranks) && build_merges(t, spec, err)) goto fail;
    if (build_specials(t, err)) goto fail;
    build_decoded(t, byte_of_cp, decoded_at);
    *out = t;
    return 0;
fail:
    tokenizer_free(t);
    return -1;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->tokens);
    free(t->decoded);
    free(t->scores);
    free(t->types);
    free(t->slots);
    free(t->pair_keys);
    free(t->pair_rank);
    free(t->pair_id);
    free(t->snodes);
    free(t);
}

int tokenizer_bos(const Tokenizer *t) { return t->bos_id; }
int tokenizer_eos(const Tokenizer *t) { return t->eos_id; }
int tokenizer_eot(const Tokenizer *t) { return t->eot_id; }
int tokenizer_adds_bos(const Tokenizer *t) { return t->add_bos && t->bos_id >= 0; }
int tokenizer_same_vocab(const Tokenizer *a, const Tokenizer *b) {
    if (a->n_vocab != b->n_vocab) return 0;
    for (int i = 0; i < a->n_vocab; i++)
        if (a->tokens[i].len != b->tokens[i].len ||
            memcmp(a->tokens[i].ptr, b->tokens[i].ptr, a->tokens[i].len) != 0)
            return i + 1;
    return -1;
}

int tokenizer_max_token_len(const Tokenizer *t) { return t->max_token_len; }

/* A push emits the held bytes (at most 3: the start of a 4-byte character) and the token's, each
   byte at worst a 3-byte U+FFFD of its own, then a NUL. */
size_t decoder_cap(const Tokenizer *t) { return 3 * ((size_t)t->max_decoded_len + 3) + 1; }

/* ------------------------------------------------------------------------------------------ */
/* The merge machinery shared by both encoders */

typedef struct {
    int start, len; /* bytes of the symbol in the text being encoded; len 0 = merged away */
    int id;         /* GPT-2 and SPM by rank: token id of the symbol, or -1 (SPM: none) */
    int prev, next; /* neighbours in the list, -1 at the ends */
} Symbol;

typedef struct {
    double priority; /* lower pops first: -score (SPM) or rank (GPT-2) */
    int left, right; /* symbol indices */
    int len;         /* SPM: bytes of the merged piece, to detect stale entries */
} Merge;
_Static_assert(sizeof(Merge) <= HEAP_MAX_ELEM, "merge candidates fit heap.h's elements");

typedef struct {
    Merge *items;
    int n;
} Heap;

/* The order of both references: best priority first, then the leftmost pair. */
static int before(const void *pa, const void *pb) {
    const Merge *a = pa, *b = pb;
    return a->priority < b->priority || (a->priority == b->priority && a->left < b->left);
}

/* The callers size the heap for the worst case (one candidate per symbol, two more per merge),
   so it never grows. */
static void heap_push(Heap *h, Merge c) {
    h->items[h->n++] = c;
    heap_sift_up(h->items, sizeof c, h->n - 1, before);
}

static Merge heap_pop(Heap *h) {
    Merge top = h->items[0];
    h->items[0] = h->items[--h->n];
    heap_sift_down(h->items, sizeof top, h->n, 0, before);
    return top;
}

/* A growable id list: the output of tokenizer_encode. */
typedef struct {
    int *ids;
    int n, cap;
} IdList;

static int push_id(IdList *l, int id, Error *err) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        int *ids = realloc(l->ids, (size_t)cap * sizeof *ids);
        if (!ids) return fail(err, "out of memory (token ids)");
        l->ids = ids;
        l->cap = cap;
    }
    l->ids[l->n++] = id;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* SentencePiece BPE (bpe_model.cc Model::Encode) */

/* Ids a merge may produce: sentencepiece keeps control, unknown and byte pieces out of its merge
   table, so "<s>" in the text can never become the BOS token. */
static int spm_mergeable(const Tokenizer *t, int id) {
    int type = t->types[id];
    return type == TOKEN_NORMAL || type == TOKEN_USER_DEFINED || type == TOKEN_UNUSED;
}

typedef struct {
    const Tokenizer *t;
    const char *text; /* the normalized text */
    Symbol *sym;
    Heap heap;
    /* Unused pieces are merged through but never output: sentencepiece remembers, per unused
       piece, the last pair that was proposed to form it (rev_merge) and splits it back. */
    int *rev; /* (n_vocab) start of the left part, or -1; NULL until needed */
    int *rev_left, *rev_right;
} SpmState;

/* By rank (Hugging Face's BPE): the pair must be a merge, the lowest rank goes first; with
   metaspace_split, never one whose right side starts a word (a U+2581). */
static void spm_propose_rank(SpmState *st, int left, int right) {
    const Tokenizer *t = st->t;
    const Symbol *l = &st->sym[left], *r = &st->sym[right];
    int merged, rank;
    if (l->id < 0 || r->id < 0) return;
    if (t->metaspace_split && (size_t)r->len >= t->space.len &&
        memcmp(st->text + r->start, t->space.ptr, t->space.len) == 0)
        return;
    if ((rank = lookup_pair(t, l->id, r->id, &merged)) < 0 || !spm_mergeable(t, merged)) return;
    heap_push(&st->heap, (Merge){(double)rank, left, right, l->len + r->len});
}

static int spm_propose(SpmState *st, int left, int right, Error *err) {
    if (left < 0 || right < 0) return 0;
    if (st->t->spm_ranks) {
        spm_propose_rank(st, left, right);
        return 0;
    }
    const Symbol *l = &st->sym[left], *r = &st->sym[right];
    int id = lookup(st->t, st->text + l->start, (size_t)(l->len + r->len));
    if (id < 0 || !spm_mergeable(st->t, id)) return 0;
    heap_push(&st->heap, (Merge){-(double)st->t->scores[id], left, right, l->len + r->len});
    if (st->t->types[id] == TOKEN_UNUSED) {
        if (!st->rev) {
            int n = st->t->n_vocab;
            st->rev = malloc((size_t)n * sizeof *st->rev);
            st->rev_left = malloc((size_t)n * sizeof *st->rev_left);
            st->rev_right = malloc((size_t)n * sizeof *st->rev_right);
            if (!st->rev || !st->rev_left || !st->rev_right)
                return fail(err, "out of memory (spm)");
            for (int i = 0; i < n; i++) st->rev[i] = -1;
        }
        st->rev[id] = l->start;
        st->rev_left[id] = l->len;
        st->rev_right[id] = r->len;
    }
    return 0;
}

/* Outputs the piece text[start..start+len): its id, unused pieces split back into the pair that
   formed them, and pieces not in the vocabulary as byte tokens (byte fallback) or unk. */
static int spm_emit(SpmState *st, int start, int len, IdList *out, Error *err) {
    const Tokenizer *t = st->t;
    int id = lookup(t, st->text + start, (size_t)len);
    if (id >= 0 && t->types[id] == TOKEN_UNUSED && st->rev && st->rev[id] >= 0) {
        int ls = st->rev[id], ll = st->rev_left[id], rl = st->rev_right[id];
        if (spm_emit(st, ls, ll, out, err) != 0) return -1;
        return spm_emit(st, ls + ll, rl, out, err);
    }
    if (id >= 0 && t->types[id] != TOKEN_UNKNOWN) return push_id(out, id, err);
    if (t->has_byte_tokens) {
        for (int i = 0; i < len; i++)
            if (push_id(out, t->byte_id[(unsigned char)st->text[start + i]], err) != 0) return -1;
        return 0;
    }
    if (t->unk_id < 0)
        return fail(err,
                    "cannot encode \"%.*s\": not in the vocabulary, no byte tokens, no unk token",
                    len, st->text + start);
    return push_id(out, t->unk_id, err);
}

/* Encodes one piece of text between special tokens. add_prefix: the dummy prefix, which llama.cpp
   and Hugging Face's "legacy" Llama tokenizers give the text at the start and after each special
   token (so "<s>Hi" is <s> "▁Hi"). */
static int spm_encode(const Tokenizer *t, const char *text, size_t len, int add_prefix, IdList *out,
                      Error *err) {
    if (len == 0) return 0; /* sentencepiece adds no dummy prefix to an empty input */
    /* Normalize: dummy prefix, then every ' ' becomes "▁" (3 bytes). */
    if (len > (size_t)INT32_MAX / 8) return fail(err, "prompt too long (%zu bytes)", len);
    size_t n_chars = len + 1; /* bound on the symbols: one per input byte, plus the prefix */
    char *norm = malloc(3 * n_chars);
    Symbol *sym = malloc(n_chars * sizeof *sym);
    /* Each symbol proposes one pair, each merge at most two more. */
    Merge *cand = malloc(3 * n_chars * sizeof *cand);
    SpmState st = {t, norm, sym, {cand, 0}, NULL, NULL, NULL};
    int rc = -1;
    if (!norm || !sym || !cand) {
        fail(err, "out of memory (encoding %zu bytes)", len);
        goto done;
    }
    size_t n = 0;
    const Str sp = t->space;
    /* Metaspace prepends none to a text that already starts with one (a space or a U+2581) */
    if (add_prefix && t->metaspace &&
        (text[0] == ' ' || (len >= 3 && memcmp(text, SPACE_SYMBOL, 3) == 0)))
        add_prefix = 0;
    if (add_prefix) memcpy(norm, sp.ptr, sp.len), n = sp.len;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ')
            memcpy(norm + n, sp.ptr, sp.len), n += sp.len;
        else
            norm[n++] = text[i];
    }

    /* Split into symbols, one UTF-8 character each (user-defined tokens were cut out before). */
    int n_sym = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = (int)utf8_decode(norm + i, n - i, &cp);
        const int id = t->spm_ranks ? lookup(t, norm + i, (size_t)k) : -1;
        sym[n_sym] = (Symbol){(int)i, k, id, n_sym - 1, -1};
        if (n_sym > 0) sym[n_sym - 1].next = n_sym;
        n_sym++;
        i += (size_t)k;
    }
    for (int i = 1; i < n_sym; i++)
        if (spm_propose(&st, i - 1, i, err) != 0) goto done;

    while (st.heap.n > 0) {
        Merge c = heap_pop(&st.heap);
        Symbol *l = &sym[c.left], *r = &sym[c.right];
        /* Stale: one side was merged into something else since this pair was proposed. */
        if (l->len == 0 || r->len == 0 || l->len + r->len != c.len) continue;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = c.left;
        r->len = 0;
        if (t->spm_ranks) l->id = lookup(t, norm + l->start, (size_t)l->len);
        if (spm_propose(&st, l->prev, c.left, err) != 0) goto done;
        if (spm_propose(&st, c.left, l->next, err) != 0) goto done;
    }
    for (int i = 0; i >= 0 && n_sym > 0; i = sym[i].next)
        if (spm_emit(&st, sym[i].start, sym[i].len, out, err) != 0) goto done;
    rc = 0;
done:
    free(norm);
    free(sym);
    free(cand);
    free(st.rev);
    free(st.rev_left);
    free(st.rev_right);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* GPT-2 byte-level BPE (openai/gpt-2 src/encoder.py) */

/* End of the pre-token starting at s[i] of a segment s[0..n). */
static size_t pretoken_end(TokenizerPre pre, const char *s, size_t n, size_t i) {
    switch (pre) {
    case PRE_LLAMA3: return llama3_pretoken_end(s, n, i, 3);
    case PRE_QWEN2: return llama3_pretoken_end(s, n, i, 1);
    case PRE_GPT2:
    case PRE_SMOLLM: break;
    }
    return gpt2_pretoken_end(s, n, i);
}

/* End of the segment starting at s[i] that the pre-tokenizer's regex then splits: SmolLM's first
   step cuts every digit out alone (Hugging Face's Digits(individual_digits)); the others take the
   whole text. */
static size_t segment_end(TokenizerPre pre, const char *s, size_t n, size_t i) {
    if (pre != PRE_SMOLLM) return n;
    size_t k;
    if (char_class_at(s, n, i, &k) == CH_NUMBER) return i + k;
    while (i < n && char_class_at(s, n, i, &k) != CH_NUMBER) i += k;
    return i;
}

/* Merges the byte symbols of one pre-token, lowest rank first, and appends the resulting ids. */
static int gpt2_bpe(const Tokenizer *t, const char *s, size_t n, Symbol *sym, Heap *heap,
                    IdList *out, Error *err) {
    for (size_t i = 0; i < n; i++) {
        int id = t->byte_id[(unsigned char)s[i]];
        if (id < 0) {
            if (t->unk_id < 0)
                return fail(err, "byte 0x%02X has no token in this gpt2 vocabulary",
                            (unsigned char)s[i]);
            id = t->unk_id;
        }
        sym[i] = (Symbol){(int)i, 1, id, (int)i - 1, i + 1 < n ? (int)i + 1 : -1};
    }
    heap->n = 0;
    for (size_t i = 1; i < n; i++) {
        int merged, rank = lookup_pair(t, sym[i - 1].id, sym[i].id, &merged);
        if (rank >= 0) heap_push(heap, (Merge){rank, (int)i - 1, (int)i, 0});
    }
    while (heap->n > 0) {
        Merge c = heap_pop(heap);
        Symbol *l = &sym[c.left], *r = &sym[c.right];
        /* Stale unless both are still there, adjacent, and still the pair of this rank. */
        if (l->len == 0 || r->len == 0 || l->next != c.right) continue;
        int merged, rank = lookup_pair(t, l->id, r->id, &merged);
        if (rank != (int)c.priority) continue;
        l->id = merged;
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = c.left;
        r->len = 0;
        if (l->prev >= 0 && (rank = lookup_pair(t, sym[l->prev].id, l->id, &merged)) >= 0)
            heap_push(heap, (Merge){rank, l->prev, c.left, 0});
        if (l->next >= 0 && (rank = lookup_pair(t, l->id, sym[l->next].id, &merged)) >= 0)
            heap_push(heap, (Merge){rank, c.left, l->next, 0});
    }
    for (int i = 0; i >= 0; i = sym[i].next)
        if (push_id(out, sym[i].id, err) != 0) return -1;
    return 0;
}

/* Encodes one piece of text between special tokens with a byte-level BPE vocabulary: NFC if the
   pre-tokenizer asks for it, split into words, each word merged on its own; with Llama 3's
   ignore_merges a word that is a token as a whole is that token. */
static int bpe_encode(const Tokenizer *t, const char *text, size_t len, IdList *out, Error *err) {
    if (len == 0) return 0;
    char *norm = NULL;
    if (t->pre == PRE_QWEN2 && unicode_nfc(text, len, &norm, &len, err) != 0) return -1;
    if (norm) text = norm;
    if (len > (size_t)INT32_MAX / 4) {
        free(norm);
        return fail(err, "prompt too long (%zu bytes)", len);
    }
    Symbol *sym = malloc(len * sizeof *sym);
    Merge *cand = malloc(3 * len * sizeof *cand);
    char *mapped = malloc(2 * len); /* a word in GPT-2's byte characters: 1-2 bytes per byte */
    Heap heap = {cand, 0};
    int rc = -1;
    if (!sym || !cand || !mapped) {
        fail(err, "out of memory (encoding %zu bytes)", len);
        goto done;
    }
    for (size_t seg = 0; seg < len;) {
        size_t seg_end = segment_end(t->pre, text, len, seg);
        for (size_t i = seg; i < seg_end;) {
            size_t end = pretoken_end(t->pre, text, seg_end, i);
            int id = -1;
            if (t->pre == PRE_LLAMA3) {
                size_t m = 0;
                for (size_t j = i; j < end; j++) {
                    int b = t->byte_id[(unsigned char)text[j]];
                    Str c = b >= 0 ? t->tokens[b] : (Str){"", 0};
                    memcpy(mapped + m, c.ptr, c.len);
                    m += c.len;
                }
                id = lookup(t, mapped, m);
            }
            if (id >= 0 ? push_id(out, id, err)
                        : gpt2_bpe(t, text + i, end - i, sym, &heap, out, err))
                goto done;
            i = end;
        }
        seg = seg_end;
    }
    rc = 0;
done:
    free(norm);
    free(sym);
    free(cand);
    free(mapped);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Special tokens in the text, and the whole encoder */

/* match[i] receives the node of the longest special token wanted in `mode` that is spelled at
   text[i], or -1. One pass from the end of the text through the automaton of reversed spellings:
   after reading text[i..len) backwards, the automaton is at the longest suffix of that reading
   (prefix of text[i..]) that is in the trie, and that node's out[] is the longest token there.
   Every step goes one node deeper at most and each fail link goes shallower, so the pass costs
   O(len) steps whatever the spellings. */
static void special_matches(const Tokenizer *t, const char *text, size_t len, int mode,
                            int32_t *match) {
    int32_t v = 0;
    for (size_t i = len; i-- > 0;) {
        const unsigned char c = (unsigned char)text[i];
        int32_t next;
        while ((next = special_child(t, v, c)) < 0 && v != 0) v = t->snodes[v].fail;
        v = next < 0 ? 0 : next;
        match[i] = t->snodes[v].out[mode];
    }
}

static int encode(const Tokenizer *t, const char *text, size_t len, int parse_special, int add_bos,
                  int **ids, int *n_ids, Error *err) {
    *ids = NULL;
    *n_ids = 0;
    size_t bad;
    if (!utf8_valid(text, len, &bad)) return fail(err, "prompt is not valid UTF-8 (byte %zu)", bad);
    IdList out = {NULL, 0, 0};
    const int mode = parse_special ? 1 : 0;
    int32_t *match = NULL; /* (len) the special token spelled at each byte (special_matches) */
    if (t->special_wanted[mode] && len > 0) {
        if (!(match = malloc(len * sizeof *match)))
            return fail(err, "out of memory (encoding %zu bytes)", len);
        special_matches(t, text, len, mode, match);
    }
    if (add_bos && tokenizer_adds_bos(t) && push_id(&out, t->bos_id, err) != 0) goto fail;
    /* Leftmost-longest matches of special tokens, as Hugging Face finds added tokens; the text
       between two is encoded alone. */
    int after_special = 1; /* at the start or after a special token (SentencePiece's prefix) */
    size_t start = 0;
    for (size_t i = 0; i <= len;) {
        const int32_t node = i < len && match ? match[i] : -1;
        if (i < len && node < 0) {
            i++;
            continue;
        }
        if (i > start) {
            int rc = t->kind == TOK_SPM
                         ? spm_encode(t, text + start, i - start,
                                      t->add_space_prefix && after_special, &out, err)
                         : bpe_encode(t, text + start, i - start, &out, err);
            if (rc != 0) goto fail;
            after_special = 0;
        }
        if (i == len) break;
        if (push_id(&out, t->snodes[node].id, err) != 0) goto fail;
        after_special = 1;
        i += (size_t)t->snodes[node].depth;
        start = i;
    }
    free(match);
    if (!out.ids) { /* empty prompt without BOS: still hand back a valid allocation */
        out.ids = malloc(sizeof *out.ids);
        if (!out.ids) return fail(err, "out of memory (token ids)");
    }
    *ids = out.ids;
    *n_ids = out.n;
    return 0;
fail:
    free(match);
    free(out.ids);
    return -1;
}

int tokenizer_encode_special(const Tokenizer *t, const char *text, size_t len, int parse_special,
                             int **ids, int *n_ids, Error *err) {
    return encode(t, text, len, parse_special, 1, ids, n_ids, err);
}

int tokenizer_encode_segment(const Tokenizer *t, const char *text, size_t len, int **ids,
                             int *n_ids, Error *err) {
    return encode(t, text, len, 0, 0, ids, n_ids, err);
}

int tokenizer_find_special(const Tokenizer *t, const char *s, size_t n) {
    int id = lookup(t, s, n);
    return id >= 0 && special_class(t->types[id]) ? id : -1;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int **ids, int *n_ids,
                     Error *err) {
    return tokenizer_encode_special(t, text, len, 0, ids, n_ids, err);
}

/* ------------------------------------------------------------------------------------------ */
/* Streaming decoder */

void decoder_init(Decoder *d) {
    d->n_pending = 0;
    d->prev_token = -1;
}

static const char REPLACEMENT[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Appends bytes to the output through the UTF-8 assembler in d->pending: complete characters go
   out, an incomplete tail waits, and each maximal invalid subpart becomes one U+FFFD (the
   "replace" rule of Python's bytes.decode and of the WHATWG encoding standard). */
static size_t emit_bytes(Decoder *d, const char *bytes, size_t n, char *out, size_t cap, size_t w) {
    unsigned char buf[16];
    size_t consumed = 0;
    while (consumed < n || d->n_pending > 0) {
        /* Work on pending + the next few new bytes; a character is at most 4 bytes. */
        size_t m = (size_t)d->n_pending;
        memcpy(buf, d->pending, m);
        size_t take = n - consumed < 4 ? n - consumed : 4;
        memcpy(buf + m, bytes + consumed, take);
        m += take;
        if (m == 0) break;
        size_t maximal;
        int incomplete;
        size_t k = utf8_seq(buf, m, &maximal, &incomplete);
        size_t used; /* bytes of buf consumed by this step */
        if (k > 0) { /* (room: cap >= decoder_cap, so these two breaks never happen) */
            if (w + k + 1 > cap) break;
            memcpy(out + w, buf, k);
            w += k;
            used = k;
        } else if (incomplete) {
            /* Valid so far but cut short: keep it all for the next token. */
            memcpy(d->pending, buf, m);
            d->n_pending = (int)m;
            consumed += take;
            break;
        } else {
            if (w + 3 + 1 > cap) break;
            memcpy(out + w, REPLACEMENT, 3);
            w += 3;
            used = maximal;
        }
        /* Drop `used` bytes: first from pending, then from the new bytes. */
        if (used >= (size_t)d->n_pending) {
            consumed += used - (size_t)d->n_pending;
            d->n_pending = 0;
        } else {
            memmove(d->pending, d->pending + used, (size_t)d->n_pending - used);
            d->n_pending -= (int)used;
        }
    }
    out[w] = '\0';
    return w;
}

size_t decoder_push(const Tokenizer *t, Decoder *d, int token, char *out, size_t cap) {
    if (cap == 0) return 0;
    out[0] = '\0';
    if (token < 0 || token >= t->n_vocab || t->types[token] == TOKEN_CONTROL) return 0;
    Str s = t->decoded[token];
    /* sentencepiece drops the space its dummy prefix added: the leading "▁" of the first piece that
       is not a control token. prev_token is only set by non-control tokens here, but a caller
       continuing after a prompt may set it to the prompt's last id, which can be BOS. */
    int at_start = d->prev_token < 0 || d->prev_token >= t->n_vocab ||
                   t->types[d->prev_token] == TOKEN_CONTROL;
    if (t->add_space_prefix && at_start && s.len > 0 && s.ptr[0] == ' ' &&
        t->tokens[token].len >= t->space.len &&
        memcmp(t->tokens[token].ptr, t->space.ptr, t->space.len) == 0) {
        s.ptr++;
        s.len--;
    }
    d->prev_token = token;
    return emit_bytes(d, s.ptr, s.len, out, cap, 0);
}

size_t decoder_flush(Decoder *d, char *out, size_t cap) {
    if (cap == 0) return 0;
    size_t w = 0;
    if (d->n_pending > 0 && cap >= 4) {
        memcpy(out, REPLACEMENT, 3); /* an incomplete character is one maximal subpart */
        w = 3;
    }
    d->n_pending = 0;
    out[w] = '\0';
    return w;
}
