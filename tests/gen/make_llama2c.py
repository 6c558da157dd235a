#!/usr/bin/python3
"""Write llama2.c checkpoints and tokenizer.bin files for the tests, from the formats alone.

    python3 tests/gen/make_llama2c.py OUT_DIR        the test set (MODELS below) + tok512.bin
    python3 tests/gen/make_llama2c.py --tiny OUT_DIR tests/fixtures/llama2c's committed files

The layouts are llama2.c's (karpathy/llama2.c export.py and tokenizer.py; llama2c.h describes
them): the legacy header of 7 int32 (negative vocab_size = a classifier of its own), version 1
("ak42", fp32) and version 2 (int8 in groups with an fp32 scale each). Weights are random and
seeded with numpy's legacy RandomState, whose streams numpy keeps fixed across releases, so the
files made on any machine are the bytes llama2.c's programs produced the committed goldens from
(tests/fixtures/llama2c/README.md); test_llama2c.py checks their SHA-256 first.
"""

import hashlib
import struct
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures"
MAGIC = 0x616B3432  # "ak42"

# name -> (dims, shared classifier, format, group size for version 2, seed). Dims: dim, hidden_dim,
# n_layers, n_heads, n_kv_heads, vocab_size, seq_len. The same seed gives the same weights, so
# l2c_legacy, l2c_v1 and l2c_v2 hold one model in three layouts.
BASE = dict(dim=64, hidden_dim=192, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=512, seq_len=128)
MODELS = {
    "l2c_legacy": (BASE, True, "legacy", None, 1),
    "l2c_v1": (BASE, True, "v1", None, 1),
    "l2c_v2": (BASE, True, "v2", 64, 1),
    "l2c_unshared_legacy": (dict(BASE, n_kv_heads=4), False, "legacy", None, 2),
    "l2c_unshared_v1": (dict(BASE, n_kv_heads=4), False, "v1", None, 2),
    "l2c_v2_gs16": (dict(BASE, n_kv_heads=1), False, "v2", 16, 3),
    # groups of 48: Q8_0's blocks of 32 would straddle two groups' scales, so fp32 at load
    "l2c_v2_gs48": (dict(BASE, dim=96), False, "v2", 48, 4),
}
# A model only for --tokenize with a vocabulary of n tokens (Llama 2's 32000): the smallest shapes.
def vocab_only_dims(n):
    return dict(dim=2, hidden_dim=1, n_layers=1, n_heads=1, n_kv_heads=1, vocab_size=n, seq_len=8)


TINY = dict(dim=16, hidden_dim=32, n_layers=1, n_heads=2, n_kv_heads=2, vocab_size=512, seq_len=32)


# ----------------------------------------------------------------------------------------------
# Tokenizer

def tokenizer_bin(pieces, scores, bos_id, eos_id):
    """tokenizer.bin bytes: uint32 max_token_length, then per token float32 score, int32 length
    and the bytes, where U+2581 is written as a space and BOS/EOS as "\\n<s>\\n" / "\\n</s>\\n"."""
    toks = []
    for i, p in enumerate(pieces):
        t = "\n<s>\n" if i == bos_id else "\n</s>\n" if i == eos_id else p
        toks.append(t.replace("\u2581", " ").encode("utf-8"))
    out = [struct.pack("<I", max(len(t) for t in toks))]
    for t, s in zip(toks, scores):
        out.append(struct.pack("<fi", s, len(t)) + t)
    return b"".join(out)


def tokenizer_bin_from_spm(model_path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    n = sp.get_piece_size()
    return tokenizer_bin([sp.id_to_piece(i) for i in range(n)], [sp.get_score(i) for i in range(n)],
                         sp.bos_id(), sp.eos_id())


def tokenizer_bin_from_gguf(path):
    """From a GGUF SentencePiece vocabulary (e.g. llama.cpp's ggml-vocab-llama-spm.gguf)."""
    sys.path.insert(0, str(TESTS / "py"))
    from gguf_read import read_gguf

    g = read_gguf(path).metadata
    return tokenizer_bin(g["tokenizer.ggml.tokens"], g["tokenizer.ggml.scores"],
                         g["tokenizer.ggml.bos_token_id"], g["tokenizer.ggml.eos_token_id"])


# ----------------------------------------------------------------------------------------------
# Weights

def random_weights(d, shared, seed):
    """llama2.c's tensors (model.py's names), float32. Scaled so that logits have a spread of a few
    units: greedy decoding then has clear winners instead of near-ties."""
    rng = np.random.RandomState(seed)
    D, H, L = d["dim"], d["hidden_dim"], d["n_layers"]
    kv = D // d["n_heads"] * d["n_kv_heads"]

    def mat(rows, cols, gain=1.0):
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    emb = 0.5 * rng.standard_normal((d["vocab_size"], D))
    emb[3:259] *= 0.3  # byte pieces: rarely the argmax, so that greedy texts stay printable ASCII
    w = {"tok_embeddings": emb.astype(np.float32)}
    for i in range(L):
        p = f"layers.{i}."
        w[p + "attention_norm"] = norm(D)
        w[p + "wq"], w[p + "wk"], w[p + "wv"] = mat(D, D, 2.0), mat(kv, D, 2.0), mat(kv, D)
        w[p + "wo"] = mat(D, D)
        w[p + "ffn_norm"] = norm(D)
        w[p + "w1"], w[p + "w2"], w[p + "w3"] = mat(H, D), mat(D, H), mat(H, D)
    w["norm"] = norm(D)
    if shared:
        w["output"] = w["tok_embeddings"]
    else:
        out = rng.standard_normal((d["vocab_size"], D)) * 4.0 / np.sqrt(D)
        out[3:259] *= 0.3  # as for the embeddings above
        w["output"] = out.astype(np.float32)
    return w


def per_layer(w, d, name):
    return [w[f"layers.{i}.{name}"] for i in range(d["n_layers"])]


def quantize(w, gs):
    """llama2.c's export.py quantize_q80, from its definition: per group of gs values of the
    flattened tensor, scale = max|w| / 127 (float32), q = round-half-even(w / scale) as int8."""
    g = w.astype(np.float32).reshape(-1, gs)
    scale = (np.abs(g).max(axis=1) / np.float32(127.0)).astype(np.float32)
    q = np.round(g / scale[:, None]).astype(np.int8)
    return q, scale


def header7(d, vocab):
    return struct.pack("<7i", d["dim"], d["hidden_dim"], d["n_layers"], d["n_heads"],
                       d["n_kv_heads"], vocab, d["seq_len"])


def pad256(head):
    assert len(head) <= 256
    return head + b"\0" * (256 - len(head))


def rope_tables(d):
    """The (seq_len, head_size / 2) cos and sin tables model.py precomputes (theta 10000), which
    the legacy format stores and llama2.c no longer reads."""
    hs = d["dim"] // d["n_heads"]
    freqs = 1.0 / (10000.0 ** (np.arange(0, hs, 2)[: hs // 2].astype(np.float32) / hs))
    f = np.outer(np.arange(d["seq_len"]), freqs).astype(np.float32)
    # cos and sin in float64, rounded once: torch's float32 ones agree to 1 ulp at most
    return np.cos(f.astype(np.float64)).astype(np.float32), np.sin(f.astype(np.float64)).astype(np.float32)


def checkpoint_bytes(w, d, shared, fmt, gs=None):
    f32 = lambda a: np.ascontiguousarray(a, dtype="<f4").tobytes()
    norms = per_layer(w, d, "attention_norm") + per_layer(w, d, "ffn_norm") + [w["norm"]]
    mats = [w["tok_embeddings"]]
    for name in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
        mats += per_layer(w, d, name)
    if not shared:
        mats.append(w["output"])
    if fmt == "legacy":
        out = [header7(d, d["vocab_size"] if shared else -d["vocab_size"]), f32(w["tok_embeddings"])]
        for name in ("attention_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3"):
            out += [f32(t) for t in per_layer(w, d, name)]
        out.append(f32(w["norm"]))
        out += [f32(t) for t in rope_tables(d)]
        if not shared:
            out.append(f32(w["output"]))
        return b"".join(out)
    if fmt == "v1":
        head = struct.pack("<Ii", MAGIC, 1) + header7(d, d["vocab_size"]) + struct.pack("B", shared)
        return pad256(head) + b"".join(f32(t) for t in norms + mats)
    assert fmt == "v2"
    head = struct.pack("<Ii", MAGIC, 2) + header7(d, d["vocab_size"]) + struct.pack("<Bi", shared, gs)
    out = [pad256(head)] + [f32(t) for t in norms]
    for t in mats:
        q, s = quantize(t, gs)
        out += [q.tobytes(), f32(s)]
    return b"".join(out)


def write_models(out_dir, names=None):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tok512.bin").write_bytes(tokenizer_bin_from_spm(FIXTURES / "spm-kjv.model"))
    for name, (d, shared, fmt, gs, seed) in MODELS.items():
        if names is None or name in names:
            data = checkpoint_bytes(random_weights(d, shared, seed), d, shared, fmt, gs)
            (out_dir / f"{name}.bin").write_bytes(data)
    return out_dir


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main(argv):
    if argv[:1] == ["--tiny"]:
        out = Path(argv[1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "tokenizer.bin").write_bytes(tokenizer_bin_from_spm(FIXTURES / "spm-kjv.model"))
        (out / "tiny.bin").write_bytes(checkpoint_bytes(random_weights(TINY, True, 7), TINY, True, "legacy"))
        return
    if len(argv) != 1:
        sys.exit(__doc__)
    write_models(argv[0])
    for p in sorted(Path(argv[0]).glob("*.bin")):
        print(sha256(p), p.name)


if __name__ == "__main__":
    main(sys.argv[1:])
