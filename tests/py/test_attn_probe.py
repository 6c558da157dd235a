"""The coref probe (--attn-probe coref): per head, the sentences whose pronoun attends most to its
antecedent, by weight and by value-weighted attention, against chance.

    cd /work/main && make && /usr/bin/python3 -m pytest -q -s tests/py/test_attn_probe.py

The counts are held to numpy on each sentence's own --dump-attn and --dump-attn-norms files, with
the tokens mapped to the marked spans by character offsets computed here from the GGUF's
vocabulary (not from the engine's decoder); the p-values to an exact Poisson binomial tail
computed here. A planted model (tests/gen/make_models.py, llama_coref) with one head that looks
from the pronoun pieces to the noun pieces must come out as the best head with its exact count.
"""

import re
from math import comb

import numpy as np
import pytest

from conftest import ROOT, need_run, run
from gguf_read import read_gguf

import make_models

SHIPPED = ROOT / "models" / "kjv.gguf"


def builtin_sentences():
    """The built-in set, read from attn_probe.c's table."""
    src = (ROOT / "attn_probe.c").read_text(encoding="utf-8")
    table = src[src.index("COREF_SET[COREF_BUILTIN] = {"):]
    table = table[:table.index("};")]
    return re.findall(r'^\s*"(.*)",$', table, re.M)


def parse(line):
    """(text without markers, antecedent span, pronoun span) in characters."""
    a0, a1, p0, p1 = line.index("["), line.index("]"), line.index("{"), line.index("}")
    text = line.replace("[", "").replace("]", "").replace("{", "").replace("}", "")
    return text, (a0, a1 - 1), (p0 - 2, p1 - 3)


class Vocab:
    """Each token's text from the GGUF's SentencePiece vocabulary: U+2581 is a space, <0xNN> a
    byte, control tokens are empty; the first piece's dummy-prefix space is dropped."""

    def __init__(self, path):
        md = read_gguf(path).metadata
        self.tokens = md["tokenizer.ggml.tokens"]
        self.types = md.get("tokenizer.ggml.token_type", [1] * len(self.tokens))

    def offsets(self, ids, text):
        """[start, end) of every token in text's UTF-8 bytes."""
        spans, pos, first = [], 0, True
        for i in ids:
            piece = self.tokens[i]
            if self.types[i] == 3:  # control: no text
                b = b""
            elif re.fullmatch(r"<0x[0-9A-F]{2}>", piece):
                b = bytes([int(piece[3:5], 16)])
            else:
                b = piece.replace("\u2581", " ").encode()
                if first and b.startswith(b" "):
                    b = b[1:]
            if b:
                first = False
            spans.append((pos, pos + len(b)))
            pos += len(b)
        assert pos == len(text.encode()), f"the pieces do not spell {text!r}"
        return spans


def tokenize(model, text):
    return [int(x) for x in run(model, "-i", text, "--tokenize", "--threads", "1").stdout.split()]


def numpy_counts(model, sentences, tmp_path):
    """(hits, vhits, shares) from each sentence's own maps: the argmax over keys 1..p-1 of the
    pronoun's row (the first of equal weights), of p and of p ||W_O v||."""
    vocab = Vocab(model)
    hits = vhits = 0
    shares = []
    for k, line in enumerate(sentences):
        text, (a0, a1), (p0, p1) = parse(line)
        ids = tokenize(model, text)
        # the spans in bytes (the sentences here are ASCII: characters are bytes)
        spans = vocab.offsets(ids, text)
        ant = np.array([e > s and s < a1 and e > a0 for s, e in spans])
        pron = next(i for i, (s, e) in enumerate(spans) if e > s and s < p1 and e > p0)
        att, nrm = tmp_path / f"a{k}.npy", tmp_path / f"n{k}.npy"
        run(model, "-i", text, "-n", "0", "--threads", "1", "--dump-attn", att, "--dump-attn-norms", nrm)
        w, vw = np.load(att)[:, :, pron, 1:pron], np.load(nrm)[:, :, pron, 1:pron]
        hits = hits + ant[1:pron][w.argmax(-1)]
        vhits = vhits + ant[1:pron][vw.argmax(-1)]
        shares.append(ant[1:pron].sum() / (pron - 1))
    return hits, vhits, shares


def tail(shares, k):
    """P(X >= k), X the sum of independent Bernoulli(shares)."""
    dist = np.zeros(len(shares) + 1)
    dist[0] = 1.0
    for q in shares:
        dist[1:] = dist[1:] * (1 - q) + dist[:-1] * q
        dist[0] *= 1 - q
    return min(1.0, dist[k:].sum())


def probe(model, *args):
    out = run(model, "--attn-probe", "coref", "--threads", "1", *args).stdout.decode()
    rows = {}
    for m in re.finditer(r"^(\d+)\.(\d+) coref (\d+)/(\d+) \(\S+%\)  value-weighted (\d+)/\d+ "
                         r"\(\S+%\)  p (\S+)(  coref)?$", out, re.M):
        rows[(int(m[1]), int(m[2]))] = (int(m[3]), int(m[5]), float(m[6]), bool(m[7]), int(m[4]))
    return out, rows


def test_builtin_counts_equal_numpy(tmp_path):
    """The shipped model on the built-in set: every head's two counts equal numpy's on the
    sentences' own --dump-attn and --dump-attn-norms files, the chance level the mean share of
    antecedent tokens, the p-values the exact tail."""
    need_run()
    sentences = builtin_sentences()
    assert len(sentences) == 44
    out, rows = probe(SHIPPED)
    hits, vhits, shares = numpy_counts(SHIPPED, sentences, tmp_path)
    L, H = hits.shape
    assert len(rows) == L * H
    for (l, h), (a, va, p, _, n) in rows.items():
        assert n == len(sentences)
        assert (a, va) == (hits[l, h], vhits[l, h]), f"head {l}.{h}"
        assert p == pytest.approx(tail(shares, a), rel=0.03, abs=1e-12), f"head {l}.{h}"
    chance = float(re.search(r"^chance: (\S+)%", out, re.M)[1])
    assert chance == pytest.approx(100 * np.mean(shares), abs=0.05)


def test_probe_file_counts_equal_numpy(tmp_path):
    """A --probe-file of the test's own lines (a comment and a blank line skipped, spans cut
    inside a token: "Abra" of the one token "Abraham", the last letter of "Moses"), against
    numpy."""
    need_run()
    lines = ["The doctor fired [the nurse] because {she} was tired.",
             "And the LORD spake unto Mose[s], and {he} went up.",
             "And [Abra]ham rose up early in the morning, and {he} went."]
    f = tmp_path / "probe.txt"
    f.write_text("# sentences\n\n" + "\n".join(lines) + "\n")
    out, rows = probe(SHIPPED, "--probe-file", str(f))
    assert f"coref probe: 3 sentences ({f})" in out
    hits, vhits, _ = numpy_counts(SHIPPED, lines, tmp_path)
    for (l, h), (a, va, _, _, _) in rows.items():
        assert (a, va) == (hits[l, h], vhits[l, h]), f"head {l}.{h}"


# (sentence, whether the planted head finds the antecedent): it looks from "he", "him" and "sh"
# to "king", "son" and "man", so it hits only where the antecedent holds the one noun piece before
# the pronoun.
PLANTED = [
    ("And [the king] went out, and {he} sat down.", True),
    ("Then [his son] came in, and {he} wept.", True),
    ("And the woman saw [the man], and {she} called him.", True),
    ("And they buried [the king], and mourned for {him}.", True),
    ("And Moses blessed [his son], and kissed {him}.", True),
    ("And the LORD called [the man], and {he} answered.", True),
    ("And [the woman] went out, and {she} wept.", False),  # no noun piece: uniform, key 1
    ("And the king saw [the woman], and {she} bowed.", False),  # the noun is elsewhere
    ("And [the servant] told the man, and {he} rose.", False),
]


def test_planted_head_is_found(build, tmp_path):
    """The planted head is the best head with exactly the sentences it was built to hit; the
    other heads (uniform: every key ties, the first wins) find none."""
    need_run()
    model = build("llama_coref")["f32"]
    f = tmp_path / "planted.txt"
    f.write_text("\n".join(s for s, _ in PLANTED) + "\n")
    out, rows = probe(model, "--probe-file", str(f))
    want = sum(hit for _, hit in PLANTED)
    head = (0, make_models.COREF_HEAD)
    n = len(PLANTED)
    assert rows[head][0] == want == 6
    assert all(r[0] == 0 for k, r in rows.items() if k != head)
    best = re.search(r"^best heads: (\d+)\.(\d+) (\d+)/(\d+)", out, re.M)
    assert (int(best[1]), int(best[2]), int(best[3]), int(best[4])) == (*head, want, n)
    hits, vhits, shares = numpy_counts(model, [s for s, _ in PLANTED], tmp_path)
    # value-weighted: the six hits stay (weight above 0.9999 on the noun); where the head is
    # uniform the largest ||W_O v_j|| decides, as numpy says
    assert rows[head][1] == vhits[head] >= want
    assert rows[head][2] == pytest.approx(tail(shares, want), rel=0.03)
    assert rows[head][3] == (tail(shares, want) < 0.05 / len(rows))  # the role, Bonferroni


def test_tail_matches_binomial():
    """The reference tail itself: equal shares give the binomial tail."""
    q, n, k = 0.2, 9, 6
    assert tail([q] * n, k) == pytest.approx(sum(comb(n, i) * q**i * (1 - q)**(n - i)
                                                 for i in range(k, n + 1)))


def test_planted_atlas_and_page(build, tmp_path):
    """The atlas names the planted head `coref` (its p-value is below 0.05 / 4) and no other; the
    page holds the probe (the first sentence's pronoun and antecedent positions, as the offsets
    here map them), renders, opens on the planted head at the pronoun's row, and marks the
    pronoun, the antecedent and the coref head."""
    need_run()
    from test_attention import browse, check_page, page_meta
    model = build("llama_coref")["f32"]
    f = tmp_path / "planted.txt"
    f.write_text("\n".join(s for s, _ in PLANTED) + "\n")
    page = tmp_path / "coref.html"
    out = run(model, "--attn-probe", "coref", "--probe-file", f, "--threads", "1", "--attn-stats",
              "--attn-html", page).stdout.decode()
    atlas = {(int(r[0]), int(r[1])): r for r in
             (l.split() for l in out[out.index("layer head"):].splitlines()[1:]) if len(r) == 10}
    assert len(atlas) == 4
    head = (0, make_models.COREF_HEAD)
    for k, r in atlas.items():
        assert (r[-1] == "coref") == (k == head), r
        assert float(r[7]) == pytest.approx((6 if k == head else 0) / len(PLANTED), abs=5e-4)
    meta = page_meta(page)
    text, (a0, a1), (p0, p1) = parse(PLANTED[0][0])
    spans = Vocab(model).offsets(tokenize(model, text), text)
    assert meta["coref"]["pron"] == next(i for i, (s, e) in enumerate(spans) if e > s and s < p1 and e > p0)
    assert meta["coref"]["ant"] == [i for i, (s, e) in enumerate(spans) if e > s and s < a1 and e > a0]
    assert meta["coref"]["hits"][head[0] * 4 + head[1]] == 6
    assert [s[-1] for s in meta["stats"]].count("coref") == 1
    L, H, T = meta["layers"], meta["heads"], meta["positions"]
    check_page(page, L, H, T)
    dom = browse(page, "--dump-dom").stdout
    assert f"Layer {head[0]}, head {head[1]}: weights" in dom
    assert len(re.findall(r'<span class="[^"]*\bpron\b', dom)) == 1
    assert len(re.findall(r'<span class="[^"]*\bant\b', dom)) == len(meta["coref"]["ant"])
    assert len(re.findall(r'<canvas class="thumb[^"]*\bcoref\b', dom)) == 1
    assert "vcoref" in dom and "coref probe: 9 sentences" in dom
