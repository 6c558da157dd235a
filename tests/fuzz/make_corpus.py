"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/NAME/): run from the repository's
root as `/usr/bin/python3 tests/fuzz/make_corpus.py` (numpy), then commit what changed.

gguf/: three tiny models that bind, with export.py's writer (one obvious place for the format),
each a different corner of the binding, plus two truncations of the first:
  llama_spm.gguf   llama, GQA, F16 matrices, SentencePiece with byte fallback, a user-defined and
                   an unused piece, tied output
  qwen2_q8.gguf    qwen2 (q/k/v biases, rotate-half RoPE), Q8_0 matrices, a SentencePiece
                   vocabulary without byte tokens (unknown characters become <unk>), separate output
  gpt2_bpe.gguf    gpt2 (LayerNorm, fused qkv, learned positions, erf GELU), F32, GPT-2 BPE
tokenizer/: a few short texts (ASCII, other scripts, U+2581, whitespace runs, contractions, bad
UTF-8). cli/: command lines, arguments separated by NUL bytes, the first being the program.
numeric/: the option bytes and weight settings of fuzz_numeric.c (its comment gives the layout):
clean runs in F32 and F16, and NaN, inf, denormal, 1e10 and near-65504 weights with the sampler's
options and the F16 KV cache. probe/: --probe-file texts: good lines (a comment, a blank line, CRLF),
malformed ones, and UTF-8 sentences.
"""

import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
import export  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
SPACE = "\u2581"


def spm_vocab(byte_tokens):
    """(tokens, scores, types): control/unknown first, bytes, then pieces best-scored first."""
    tokens, types = ["<unk>", "<s>", "</s>"], [2, 3, 3]
    if byte_tokens:
        tokens += [f"<0x{b:02X}>" for b in range(256)]
        types += [6] * 256
    pieces = [SPACE, "a", "b", "e", "h", "t", SPACE + "t", "he", SPACE + "the", "ab", SPACE + "a"]
    tokens += pieces
    types += [1] * len(pieces)
    tokens += ["<|u|>", "ba"]  # a user-defined piece (never split) and an unused one
    types += [4, 5]
    scores = [0.0] * (len(tokens) - len(pieces) - 2) + [-float(i) for i in range(len(pieces))]
    scores += [0.0, -1.5]
    return tokens, scores, types


def gpt2_vocab():
    """(tokens, types, merges): the 256 byte characters, a few merges, <|endoftext|>."""
    chars = []
    n = 0
    for b in range(256):
        printable = ord("!") <= b <= ord("~") or 0xA1 <= b <= 0xAC or b >= 0xAE
        chars.append(chr(b) if printable else chr(256 + n))
        n += not printable
    merges = ["\u0120 t", "h e", "\u0120t he", "i n", "\u0120 a"]
    tokens = chars + [m.replace(" ", "") for m in merges] + ["<|endoftext|>"]
    types = [1] * (len(tokens) - 1) + [3]
    return tokens, types, merges


def tokenizer_kv(plan, kind, tokens, types, scores=None, merges=None, bos=1, eos=2, unk=0):
    plan.kv("tokenizer.ggml.model", "str", kind)
    plan.kv("tokenizer.ggml.pre", "str", "default")
    plan.kv("tokenizer.ggml.tokens", "arr_str", tokens)
    if scores is not None:
        plan.kv("tokenizer.ggml.scores", "arr_f32", scores)
    plan.kv("tokenizer.ggml.token_type", "arr_i32", types)
    if merges is not None:
        plan.kv("tokenizer.ggml.merges", "arr_str", merges)
    plan.kv("tokenizer.ggml.bos_token_id", "u32", bos)
    plan.kv("tokenizer.ggml.eos_token_id", "u32", eos)
    if unk is not None:
        plan.kv("tokenizer.ggml.unknown_token_id", "u32", unk)
    plan.kv("tokenizer.ggml.add_bos_token", "bool", kind == "llama")


def dims(plan, arch, ctx, dim, hidden, heads, kv_heads=None):
    plan.kv("general.architecture", "str", arch)
    plan.kv("general.alignment", "u32", export.ALIGNMENT)
    plan.kv(f"{arch}.context_length", "u32", ctx)
    plan.kv(f"{arch}.embedding_length", "u32", dim)
    plan.kv(f"{arch}.block_count", "u32", 1)
    plan.kv(f"{arch}.feed_forward_length", "u32", hidden)
    plan.kv(f"{arch}.attention.head_count", "u32", heads)
    if kv_heads is not None:
        plan.kv(f"{arch}.attention.head_count_kv", "u32", kv_heads)


def weights(plan, rng, shapes):
    for name, shape in shapes:
        if name.endswith("norm.weight"):
            plan.tensor(name, shape, lambda s=shape: np.ones(s, np.float32))
        else:
            w = (rng.standard_normal(shape) * 0.1).astype(np.float32)
            plan.tensor(name, shape, lambda w=w: w)


def llama_like(arch, dim, hidden, heads, kv_heads, vocab, biases, tied):
    head = dim // heads
    q, kv = heads * head, kv_heads * head
    shapes = [("token_embd.weight", (vocab, dim)), ("output_norm.weight", (dim,))]
    if not tied:
        shapes.append(("output.weight", (vocab, dim)))
    shapes += [("blk.0.attn_norm.weight", (dim,)), ("blk.0.ffn_norm.weight", (dim,)),
               ("blk.0.attn_q.weight", (q, dim)), ("blk.0.attn_k.weight", (kv, dim)),
               ("blk.0.attn_v.weight", (kv, dim)), ("blk.0.attn_output.weight", (dim, q)),
               ("blk.0.ffn_gate.weight", (hidden, dim)), ("blk.0.ffn_up.weight", (hidden, dim)),
               ("blk.0.ffn_down.weight", (dim, hidden))]
    if biases:
        shapes += [("blk.0.attn_q.bias", (q,)), ("blk.0.attn_k.bias", (kv,)),
                   ("blk.0.attn_v.bias", (kv,))]
    return shapes


def llama_spm(path):
    plan = export.Plan()
    dims(plan, "llama", 16, 8, 8, 2, 1)
    plan.kv("llama.rope.dimension_count", "u32", 4)
    tokens, scores, types = spm_vocab(byte_tokens=True)
    tokenizer_kv(plan, "llama", tokens, types, scores)
    plan.kv("tokenizer.ggml.add_space_prefix", "bool", True)
    weights(plan, np.random.default_rng(1), llama_like("llama", 8, 8, 2, 1, len(tokens), False, True))
    export.write_gguf(path, plan, "f16")


def qwen2_q8(path):
    plan = export.Plan()
    dims(plan, "qwen2", 8, 32, 32, 4, 2)
    plan.kv("qwen2.rope.freq_base", "f32", 1000000.0)
    plan.kv("qwen2.attention.layer_norm_rms_epsilon", "f32", 1e-6)
    tokens, scores, types = spm_vocab(byte_tokens=False)
    tokenizer_kv(plan, "llama", tokens, types, scores)
    weights(plan, np.random.default_rng(2), llama_like("qwen2", 32, 32, 4, 2, len(tokens), True, False))
    export.write_gguf(path, plan, "q8_0")


def gpt2_bpe(path):
    plan = export.Plan()
    dims(plan, "gpt2", 8, 8, 16, 2)
    plan.kv("tinygpt.position_encoding", "str", "learned")
    plan.kv("tinygpt.ffn_activation", "str", "gelu_erf")
    tokens, types, merges = gpt2_vocab()
    eot = len(tokens) - 1
    tokenizer_kv(plan, "gpt2", tokens, types, merges=merges, bos=eot, eos=eot, unk=None)
    d, h, v = 8, 16, len(tokens)
    shapes = [("token_embd.weight", (v, d)), ("position_embd.weight", (8, d)),
              ("output_norm.weight", (d,)), ("output_norm.bias", (d,)),
              ("blk.0.attn_norm.weight", (d,)), ("blk.0.attn_norm.bias", (d,)),
              ("blk.0.attn_qkv.weight", (3 * d, d)), ("blk.0.attn_qkv.bias", (3 * d,)),
              ("blk.0.attn_output.weight", (d, d)), ("blk.0.attn_output.bias", (d,)),
              ("blk.0.ffn_norm.weight", (d,)), ("blk.0.ffn_norm.bias", (d,)),
              ("blk.0.ffn_up.weight", (h, d)), ("blk.0.ffn_up.bias", (h,)),
              ("blk.0.ffn_down.weight", (d, h)), ("blk.0.ffn_down.bias", (d,))]
    weights(plan, np.random.default_rng(3), shapes)
    export.write_gguf(path, plan, "f32")


TEXTS = {
    "ascii.txt": b"In the beginning God created the heaven and the earth.",
    "scripts.txt": "caf\u00e9 \u03bb\u03cc\u03b3\u03bf\u03c2 \u65e5\u672c \U0001F600 na\u00efve".encode(),
    "spaces.txt": ("  two  spaces\t\ttabs\n\nlines " + SPACE + "x" + SPACE).encode(),
    "contractions.txt": b"it's they're we've I'm he'd you'll 123 4567 <s> <|endoftext|>",
    "bad_utf8.txt": b"ok \xff\xfe \xc3 \xed\xa0\x80 \xf4\x90\x80\x80 end",
}

COMMAND_LINES = {
    "generate.bin": ["./run", "model.gguf", "-i", "In the beginning", "-n", "16", "-t", "0"],
    "sampling.bin": ["run", "m.gguf", "--temp", "0.7", "--top-p", "0.9", "--top-k", "40",
                     "--seed", "42", "--batch-size", "8", "--threads", "2"],
    "attention.bin": ["/usr/bin/run", "m.gguf", "--dump-attn", "a.npy", "--attn-html", "a.html",
                      "--attn-show", "1.2", "--attn-stats", "-v", "--tokenize"],
    "ppl.bin": ["./run", "m.gguf", "--ppl", "text.txt", "--dump-logits", "l.npy"],
    "errors.bin": ["./run", "-n", "12abc", "--bogus", "-h"],
}

# name: (13 option bytes: flags, temperature, top-k, top-p, min-p, repeat, frequency, presence,
# window, three prompt tokens, seed; then weight settings (tensor, element, value index))
NUMERIC = {
    "clean_f32_greedy": ([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 9, 1], []),
    "clean_f16_sampling": ([1, 5, 10, 1, 1, 2, 1, 1, 2, 1, 7, 3, 2], []),
    "nan_output_norm_min_p": ([0, 5, 0, 0, 1, 0, 0, 0, 0, 1, 4, 8, 3], [(1, 0, 0)]),
    "tiny_temperature": ([0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 4, 8, 4], []),
    "f16_kv_overflow_v": ([2, 4, 5, 2, 2, 3, 3, 2, 3, 1, 6, 2, 5],
                          [(6, k, 8) for k in range(0, 32, 4)]),
    "inf_embedding_diagnose": ([4, 5, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 6], [(0, 3 * 32, 1)]),
    "near_f16_limit_f16_weights": ([3, 5, 34, 3, 3, 1, 2, 3, 3, 9, 2, 4, 7],
                                   [(4 + k % 9, k * 7, 5 + k % 3) for k in range(12)]),
    "denormals_penalties": ([0, 6, 3, 1, 2, 1, 2, 3, 2, 1, 2, 3, 8],
                            [(k % 21, k * 13, 3 + (k % 2) * 11) for k in range(20)]),
}


PROBE_FILES = {
    "good.txt": b"The doctor fired [the nurse] because {she} was tired.\n# a comment\n\n"
                b"And Abraham called [Isaac], and blessed {him}.\r\n",
    "bad.txt": b"The doctor fired [the nurse because {she} was tired.\n"
               b"{She} said that [the nurse] was tired.\nThe [] and {she}\n",
    "utf8.txt": "Die \u00c4rztin entlie\u00df [die Pflegerin], weil {sie} m\u00fcde war.\n".encode(),
}


def write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def main():
    gguf = os.path.join(OUT, "gguf")
    os.makedirs(gguf, exist_ok=True)
    for make in (llama_spm, qwen2_q8, gpt2_bpe):
        make(os.path.join(gguf, make.__name__ + ".gguf"))
    with open(os.path.join(gguf, "llama_spm.gguf"), "rb") as f:
        whole = f.read()
    tokens_at = whole.index(b"tokenizer.ggml.tokens")
    write(gguf, "cut_in_metadata.gguf", whole[:tokens_at + 200])
    write(gguf, "cut_in_data.gguf", whole[:len(whole) - 100])
    for name, data in TEXTS.items():
        write(os.path.join(OUT, "tokenizer"), name, data)
    for name, argv in COMMAND_LINES.items():
        write(os.path.join(OUT, "cli"), name, b"\0".join(a.encode() for a in argv))
    for name, (options, sets) in NUMERIC.items():
        data = bytes(options) + b"".join(bytes([t, e & 255, e >> 8, v]) for t, e, v in sets)
        write(os.path.join(OUT, "numeric"), name, data)
    for name, data in PROBE_FILES.items():
        write(os.path.join(OUT, "probe"), name, data)


if __name__ == "__main__":
    main()
