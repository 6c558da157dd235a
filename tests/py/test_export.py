"""export.py on the conventions of trained checkpoints from public repositories.

    /usr/bin/python3 -m pytest -q tests/py/test_export.py

- Tied embeddings saved once, as lm_head.weight (make_models.py's llama_lm_head): exported as
  token_embd.weight with no output.weight, and the engine then agrees with the reference, which
  ties them as Hugging Face does.
- A tokenizer.json BPE with byte fallback behind a Metaspace pre-tokenizer, whose merges are not
  expressible as SentencePiece scores (the same variant's): exported with its merges and a
  one-line warning, and ./run tokenizes exactly as transformers.js (npm @lenml/tokenizers, a port
  of Hugging Face's tokenizers) on the tokenizer tests' texts.
- GPT-2 files carry output.weight, a copy of the embeddings (as llama.cpp's converter writes them
  and llama.cpp builds of early 2025 require); untied GPT-2 keeps its own lm_head.
"""

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, ROOT, RUN, TESTS, export, need_run
from gguf_read import read_gguf
from reference import Reference, read_safetensors

import make_models


def test_tied_lm_head_only(tmp_path):
    hf = make_models.make_model("llama_lm_head", tmp_path / "hf")
    stored = read_safetensors(hf / "model.safetensors")
    assert "lm_head.weight" in stored and "model.embed_tokens.weight" not in stored
    out = tmp_path / "m.gguf"
    r = export(hf, out)
    assert r.returncode == 0, r.stderr
    g = read_gguf(out)
    assert "output.weight" not in g.tensors
    np.testing.assert_array_equal(g.tensors["token_embd.weight"], stored["lm_head.weight"].numpy())
    if not RUN.exists():
        return
    res = subprocess.run([PYTHON, str(ROOT / "compare.py"), str(hf), str(out), "-i",
                          "In the beginning God created", "-n", "4", "--json"],
                         capture_output=True, text=True, timeout=300,
                         env={"RUN_BIN": str(RUN), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stdout[-500:] + res.stderr
    assert json.loads(res.stdout)["greedy"]["agree"] == 4


def test_reference_ties_lm_head_only(tmp_path):
    """The reference reads such a directory as Hugging Face does: one matrix, both roles."""
    hf = make_models.make_model("llama_lm_head", tmp_path / "hf")
    ref = Reference(hf)
    np.testing.assert_array_equal(ref.w["embed_tokens.weight"].numpy(), ref.w["lm_head.weight"].numpy())


def test_gpt2_output_weight(build):
    for variant in ("gpt2", "gpt2_sinusoidal", "gpt2_noprefix"):
        files = build(variant)
        cfg = json.loads((files["hf"] / "config.json").read_text())
        w = Reference(files["hf"]).w
        for dtype in ("f32", "f16", "q8_0"):
            g = read_gguf(files[dtype])
            assert "output.weight" in g.tensors, (variant, dtype)
            assert g.tensor_types["output.weight"] == g.tensor_types["token_embd.weight"]
            want = w["wte.weight" if cfg.get("tie_word_embeddings", True) else "lm_head.weight"]
            if dtype == "f32":
                np.testing.assert_array_equal(g.tensors["output.weight"], want.numpy())
        need_run()
        # the engine reads it: a file whose output.weight is zeroed prints other logits
        g = read_gguf(files["f32"])
        zero = files["f32"].parent / f"{variant}.zero-output.gguf"
        data = bytearray(files["f32"].read_bytes())
        start = g.data_start + g.tensor_offsets["output.weight"]
        data[start:start + g.tensors["output.weight"].nbytes] = bytes(g.tensors["output.weight"].nbytes)
        zero.write_bytes(bytes(data))
        out = zero.parent / f"{variant}.zero-output.npy"
        r = subprocess.run([str(RUN), str(zero), "-i", "x", "-n", "1", "--dump-logits", str(out)],
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert not np.load(out).any()


def test_metaspace_merges_by_rank(tmp_path):
    hf = make_models.make_model("llama_lm_head", tmp_path / "hf")
    out = tmp_path / "m.gguf"
    r = export(hf, out)
    assert r.returncode == 0, r.stderr
    warning = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "merges are not SentencePiece scores" in warning[0], r.stderr
    assert "llama.cpp reads the scores" in warning[0]
    m = read_gguf(out).metadata
    tj = json.loads((hf / "tokenizer.json").read_text(encoding="utf-8"))
    assert m["tokenizer.ggml.model"] == "llama"
    assert m["tokenizer.ggml.merges"] == [" ".join(p) for p in tj["model"]["merges"]]
    assert m["tinygpt.tokenizer.metaspace"] is True
    assert "tinygpt.tokenizer.metaspace_split" not in m  # split false: merges span words
    need_run()
    if not shutil.which("node"):
        pytest.skip("node is not installed (transformers.js is the reference)")
    from test_hf_tokenizers import TEXTS, clean, compare, random_texts

    texts = clean(TEXTS + random_texts(40, seed=12) + [
        "the lll shalll", "In the beginning God created the heaven and the earth.",
        "  two  spaces", "\u2581already\u2581marked", "tail ", "é 中"])
    p = subprocess.run(["node", str(TESTS / "oracles" / "hf_tokenize.js")], cwd=TESTS / "oracles",
                       input=json.dumps({"dir": str(hf), "texts": texts}).encode(),
                       capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()
    matched, bad = compare(out, texts, json.loads(p.stdout), "--parse-special")
    assert not bad, f"{len(bad)} of {len(texts)} texts differ from transformers.js, first: {bad[0]}"


def test_metaspace_first_refused(tmp_path):
    """prepend_scheme "first" (a prefix only before the first text, not after special tokens) is
    not what ./run does: refused, in one line."""
    hf = make_models.make_model("llama_lm_head", tmp_path / "hf")
    tj = json.loads((hf / "tokenizer.json").read_text(encoding="utf-8"))
    tj["pre_tokenizer"]["prepend_scheme"] = "first"
    (hf / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    r = export(hf, tmp_path / "m.gguf")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "Metaspace" in r.stderr and "'first'" in r.stderr, r.stderr
