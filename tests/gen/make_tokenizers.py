#!/usr/bin/python3
"""Makes the tokenizer fixtures in tests/fixtures/ from the King James Bible (public domain).

    spm-kjv.model                 SentencePiece BPE, 512 pieces, byte fallback (sentencepiece library)
    gpt2-bpe/vocab.json           GPT-2-style byte-level BPE, 512 tokens, trained here
    gpt2-bpe/merges.txt
    tokenizer_texts.json          test strings (list of str)
    tok_texts/NN.txt              the same strings, one file each, exact UTF-8 bytes
    tokenizer_golden_spm.txt      per string: sentencepiece's ids with BOS, space-separated
    tokenizer_golden_gpt2.txt     per string: the ids of GPT-2's encoder.py algorithm (Gpt2Encoder
                                  below) on gpt2-bpe, which tests/fixtures/gpt2.gguf carries

The text comes from the `bible` program (Debian package bible-kjv, which brings bible-kjv-text).
Everything is deterministic: running this again gives byte-identical files.

Usage: /usr/bin/python3 tests/gen/make_tokenizers.py            (from the repository root or anywhere)
       /usr/bin/python3 tests/gen/make_tokenizers.py --texts    only the texts and the two id goldens,
                                                                 from the committed models (no `bible`)
"""
import collections
import io
import json
import os
import re
import subprocess
import sys

import regex
import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(os.path.dirname(HERE), "fixtures")

# GPT-2's pre-tokenizer, exactly as in openai/gpt-2 src/encoder.py.
GPT2_PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

TEXTS = [
    "",
    "Hello world",
    "In the beginning God created the heaven and the earth.",
    " leading space",
    "trailing space ",
    "   ",
    "multiple   spaces  between    words",
    "tabs\tand\ttab\t\tpairs",
    "line one\nline two\n\nline four\n",
    "windows\r\nline\r\nendings\r\n",
    "digits 0123456789 and 3.14159, 1,000,000 and 2024-11-22",
    "Punctuation!? (parens) [brackets] {braces} <angle> \"quotes\" 'single' -- dashes... @#$%^&*_+=~`|\\/",
    "Contractions: it's, don't, we'll, they're, I've, I'm, he'd, IT'S, O'Neil's",
    "Accents: café, naïve, über, Müller, niño, façade, Ångström",
    "CJK: 中文字符测试，日本語のテキスト、한국어 텍스트",
    "Emoji: 😀 👍🏽 ❤️ 🇺🇸 👨‍👩‍👧‍👦 🧑🏻‍💻",
    "Mixed: English русский ελληνικά العربية עברית हिन्दी ไทย",
    "Arabic: بسم الله الرحمن الرحيم",
    "Cyrillic: В начале сотворил Бог небо и землю.",
    "Special strings are plain text: <s> </s> <unk> <|endoftext|> <0x41>",
    "\u2581 already has a sentencepiece space \u2581\u2581 symbol",
    "a",
    " ",
    "\n",
    "x  \n  y\t \t z",
    "Mathematical ∑ ∫ √ ≤ ≥ ≠ ∞ π and superscripts x² y³ ½ ⅓ Ⅻ",
    "Zero\u200bwidth\u200dand\u00a0no-break\u3000ideographic space",
    "!!!???...,,,;;;:::",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "And the LORD said unto Moses, Stretch out thine hand toward heaven, that there may be darkness "
    "over the land of Egypt, even darkness which may be felt. And Moses stretched forth his hand toward "
    "heaven; and there was a thick darkness in all the land of Egypt three days:",
    # Runs of a symbol whose doubled pair is a merge ("l l" in both vocabularies): the same pair
    # at overlapping places ties on priority and the leftmost must merge first ("lll" -> ll l).
    "lll",
    " lll lllll\nllll\tlllllll",
    "all ill will shalll wellll Hellllo tell-all-llll",
    "Illl! O'Nelll's balll, lll.",
]


def kjv_lines():
    """The whole King James Bible as printed by `bible`, one output line per list item."""
    out = subprocess.run(["bible", "gen1:1-rev22:21"], check=True, capture_output=True).stdout
    return [line for line in out.decode("utf-8").split("\n") if line.strip()]


def spm_bpe(sentences, vocab_size, byte_fallback):
    """A SentencePiece BPE model's bytes. Sentences come from an iterator and the model goes to
    memory, so no temporary path ends up in the model's trainer_spec and the bytes are the same
    on every run."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, model_type="bpe",
        vocab_size=vocab_size, byte_fallback=byte_fallback, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=True,
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        shuffle_input_sentence=False, minloglevel=2)
    return model.getvalue()


def train_spm(lines):
    with open(os.path.join(FIX, "spm-kjv.model"), "wb") as f:
        f.write(spm_bpe(lines, 512, byte_fallback=True))


# Genesis 1:1-5 (KJV), the whole text of small_spm_model's vocabulary.
GENESIS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And the Spirit of God moved upon the face of the waters.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
    "And God called the light Day, and the darkness he called Night.",
    "And the evening and the morning were the first day.",
]


def small_spm_model(vocab_size=64):
    """For golden fixtures that store logits (positions x vocabulary floats): 64 pieces, no byte
    fallback, learned from GENESIS alone (a character outside it is <unk>)."""
    return spm_bpe(GENESIS, vocab_size, byte_fallback=False)


def metaspace_words(line, split):
    """Hugging Face's Metaspace pre-tokenizer (replacement U+2581, prepend_scheme "always"):
    spaces become U+2581, one is prepended, and with split the text splits before each of them."""
    text = "\u2581" + line.replace(" ", "\u2581")
    return [w for w in re.split("(?=\u2581)", text) if w] if split else [text]


def learn_merges(words, n_merges):
    """BPE training: n_merges times, the most frequent adjacent pair of symbols (counted over
    words, a {tuple of symbols: count}), ties to the pair first in sorted order, merged everywhere.
    Returns the merges in order (pairs of symbols)."""
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new_words = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + c
        words = new_words
    return merges


def metaspace_bpe_json(lines, n_merges, split=False):
    """A tokenizer.json as Hugging Face tokenizers trains a BPE with byte fallback behind a
    Metaspace pre-tokenizer: merges learned on the pre-tokenized pieces (whole lines without
    split, so that tokens such as "nd_" span words; most frequent pair first, ties by the pair's
    order), vocabulary <unk> <s> </s>, the 256 byte tokens, the characters, then one token per
    merge. Its merges are not SentencePiece scores: a token can split into two tokens without
    that merge (both "ab" and "_a" + "b" give "_ab"), which merging by best score would join.
    The pre-tokenizer also carries the older add_prefix_space, which transformers.js reads."""
    words = collections.Counter(w for line in lines for w in metaspace_words(line, split))
    words = {tuple(w): c for w, c in words.items()}
    merges = learn_merges(words, n_merges)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for ch in sorted({ch for line in lines for w in metaspace_words(line, split) for ch in w}):
        vocab.setdefault(ch, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    special = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": False, "special": True} for t, i in list(vocab.items())[:3]]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": special,
            "normalizer": None,
            "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True,
                              "prepend_scheme": "always", "split": split},
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}}],
                               "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"Sequence": {"id": "B", "type_id": 1}}],
                               "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
            "decoder": {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True,
                        "prepend_scheme": "always", "split": split},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                      "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                      "byte_fallback": True, "ignore_merges": False, "vocab": vocab,
                      "merges": [[a, b] for a, b in merges]}}


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (openai/gpt-2 src/encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def train_gpt2_bpe(text, n_merges):
    """Plain BPE on pre-token counts: repeatedly merge the most frequent adjacent pair (ties: the
    pair seen first in sorted order, so the result is deterministic)."""
    b2u = bytes_to_unicode()
    counts = collections.Counter(GPT2_PAT.findall(text))
    words = {}
    for tok, c in counts.items():
        w = tuple(b2u[b] for b in tok.encode("utf-8"))
        words[w] = words.get(w, 0) + c
    merges = learn_merges(words, n_merges)
    # vocab.json: the 256 byte characters in GPT-2's order (printable bytes first, as in its
    # encoder.json), then one token per merge, then EOS.
    vocab = {}
    for ch in b2u.values():
        vocab[ch] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    d = os.path.join(FIX, "gpt2-bpe")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    return vocab


class Gpt2Encoder:
    """GPT-2's byte-level BPE as openai/gpt-2 src/encoder.py does it: pre-tokenize with GPT2_PAT,
    then in each pre-token repeatedly take the lowest-ranked adjacent pair and merge every
    occurrence of it from left to right."""

    def __init__(self, vocab_json, merges_txt):
        with open(vocab_json, encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(merges_txt, encoding="utf-8") as f:
            lines = f.read().split("\n")[1:-1]
        self.bpe_ranks = dict(zip([tuple(m.split()) for m in lines], range(len(lines))))
        self.byte_encoder = bytes_to_unicode()
        self.cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = set(zip(word, word[1:]))
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = set(zip(word, word[1:]))
        self.cache[token] = " ".join(word)
        return self.cache[token]

    def encode(self, text):
        ids = []
        for token in GPT2_PAT.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids


def write_texts():
    with open(os.path.join(FIX, "tokenizer_texts.json"), "w", encoding="utf-8") as f:
        json.dump(TEXTS, f, ensure_ascii=False, indent=1)
        f.write("\n")
    d = os.path.join(FIX, "tok_texts")
    os.makedirs(d, exist_ok=True)
    for i, t in enumerate(TEXTS):
        with open(os.path.join(d, f"{i:02d}.txt"), "wb") as f:
            f.write(t.encode("utf-8"))


def write_golden_spm():
    sp = spm.SentencePieceProcessor(model_file=os.path.join(FIX, "spm-kjv.model"))
    with open(os.path.join(FIX, "tokenizer_golden_spm.txt"), "w") as f:
        for t in TEXTS:
            f.write(" ".join(str(i) for i in [sp.bos_id()] + sp.encode(t)) + "\n")


def write_golden_gpt2():
    d = os.path.join(FIX, "gpt2-bpe")
    enc = Gpt2Encoder(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt"))
    with open(os.path.join(FIX, "tokenizer_golden_gpt2.txt"), "w") as f:
        for t in TEXTS:
            f.write(" ".join(str(i) for i in enc.encode(t)) + "\n")


def main(argv):
    os.makedirs(FIX, exist_ok=True)
    if argv == ["--texts"]:
        write_texts()
        write_golden_spm()
        write_golden_gpt2()
        return
    if argv:
        sys.exit(__doc__.strip().split("\n\n")[-1])
    lines = kjv_lines()
    train_spm(lines)
    # 1 MB of the Bible is plenty for 255 merges and keeps this script fast.
    text = "\n".join(lines)[:1_000_000]
    vocab = train_gpt2_bpe(text, 512 - 256 - 1)
    write_texts()
    write_golden_spm()
    write_golden_gpt2()
    print(f"wrote fixtures to {FIX}: gpt2 vocab {len(vocab)}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
