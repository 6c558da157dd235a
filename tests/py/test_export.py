"""export.py on the conventions of trained checkpoints from public repositories.

    /usr/bin/python3 -m pytest -q tests/py/test_export.py

- Tied embeddings saved once, as lm_head.weight (make_models.py's llama_lm_head): exported as
  token_embd.weight with no output.weight, and the engine then agrees with the reference, which
  ties them as Hugging Face does.
- GPT-2 files carry output.weight, a copy of the embeddings (as llama.cpp's converter writes them
  and llama.cpp builds of early 2025 require); untied GPT-2 keeps its own lm_head.
"""

import json
import subprocess

import numpy as np

from conftest import PYTHON, ROOT, RUN, export, need_run
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
