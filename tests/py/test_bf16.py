"""BF16 weights (GGML type 30): export.py writes them (--dtype bf16, rounded to nearest even from
F32; a BF16 checkpoint by default, its bits copied), ./run reads them in place, and both agree
with independent references: torch's own bfloat16 rounding, the float64 PyTorch reference on the
BF16-rounded weights, and the live llama.cpp (test_llamacpp.py), whose own quantizer also writes
BF16 files from F32 ones (tests/oracles/llama_quantize.c).

    make && /usr/bin/python3 -m pytest -q tests/py/test_bf16.py
"""

import json
import struct
import sys

import numpy as np
import pytest
import torch

import make_models
from conftest import ROOT, export, need_run
from gguf_read import read_gguf
from make_models import VARIANTS
from reference import Reference
from test_engine import TOL, generated_ids, max_rel_err, prompt_ids, record, run_greedy
import test_llamacpp as T

sys.path.insert(0, str(ROOT))
import export as exporter  # noqa: E402

GGML_BF16, FTYPE_BF16 = 30, 32  # ggml's type, llama.cpp's general.file_type (MOSTLY_BF16)
# One variant of each family (llama, mistral, qwen2, qwen3, gemma3, phi3, gpt2), so that the file
# stays within a minute or two: the F32 and F16 paths these share run every variant
# (test_engine.py, test_llamacpp.py).
FAMILIES = ["llama_gqa", "mistral_window", "qwen2", "qwen3", "gemma3", "phi3_longrope", "gpt2"]
assert set(FAMILIES) <= set(VARIANTS)


def bits(a):
    """float32 values that are BF16 (low 16 bits zero) -> their BF16 bits."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    assert not np.any(u & 0xffff), "not BF16 values"
    return (u >> 16).astype(np.uint16)


def torch_bf16(a):
    """torch's float32 -> bfloat16 rounding, as bits: the independent reference."""
    t = torch.from_numpy(np.array(a, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view(np.uint16)


@pytest.fixture(scope="module")
def bf16dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bf16")


_files = {}


def bf16_files(build, d, variant):
    """The variant's F32 checkpoint exported with --dtype bf16, and the same model as a BF16
    checkpoint (torch's bfloat16 safetensors or .bin) exported by default: (from_f32, ckpt, hf)."""
    if variant not in _files:
        f32 = build(variant)
        a = d / f"{variant}.from-f32.bf16.gguf"
        r = export(f32["hf"], a, "--dtype", "bf16")
        assert r.returncode == 0, r.stderr
        hf = make_models.make_model(variant, d / f"{variant}.bf16-hf", bf16=True)
        b = d / f"{variant}.ckpt.gguf"
        r = export(hf, b)
        assert r.returncode == 0, r.stderr
        assert "writing them as BF16, the same bits" in r.stderr, r.stderr
        _files[variant] = (a, b, hf)
    return _files[variant]


def test_to_bf16_is_torchs_rounding():
    """export.py's rounding against torch's on ties (both ways), their neighbours, subnormals,
    the largest BF16 and random floats of every exponent."""
    rng = np.random.default_rng(30)
    h = rng.integers(0, 0x7f7f, 20000).astype(np.uint32)
    lo = (h << 16).view(np.float32)
    mid = ((h << 16) | 0x8000).view(np.float32)  # exactly halfway to the next BF16
    x = np.concatenate([lo, mid, -mid, np.nextafter(mid, np.float32(0)),
                        np.nextafter(mid, np.float32(np.inf)),
                        (rng.integers(0, 0x7f7fffff, 100000).astype(np.uint32)).view(np.float32),
                        np.float32([0.0, -0.0, 1e-45, -1e-40, 3.389e38, -3.3895e38])])
    np.testing.assert_array_equal(exporter.to_bf16(x), torch_bf16(x))


@pytest.mark.parametrize("variant", ["llama_gqa", "gpt2", "gpt2_noprefix"])
def test_bf16_checkpoint_bit_for_bit(build, bf16dir, variant):
    """A BF16 checkpoint exported by default: general.file_type BF16, every matrix BF16 holding
    the checkpoint's bits (the same as its --dtype f32 export's values, which are those bits
    widened), and the embedding's bits equal to the checkpoint file's own bytes. gpt2_noprefix is
    a pytorch_model.bin."""
    _, model, hf = bf16_files(build, bf16dir, variant)
    wide = bf16dir / f"{variant}.ckpt.f32.gguf"
    r = export(hf, wide, "--dtype", "f32")
    assert r.returncode == 0, r.stderr
    g, w = read_gguf(model), read_gguf(wide)
    assert g.metadata["general.file_type"] == FTYPE_BF16
    assert g.tensor_order == w.tensor_order
    for name, a in w.tensors.items():
        assert g.tensor_types[name] == (GGML_BF16 if a.ndim == 2 else 0), name
        if a.ndim == 2:
            np.testing.assert_array_equal(bits(g.tensors[name]), bits(a), name)
        else:
            np.testing.assert_array_equal(g.tensors[name], a, name)
    if variant == "llama_gqa":  # the raw bytes of the safetensors file
        st = hf / "model.safetensors"
        raw = st.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        info = json.loads(raw[8:8 + n])["model.embed_tokens.weight"]
        assert info["dtype"] == "BF16"
        b, e = info["data_offsets"]
        stored = np.frombuffer(raw[8 + n + b:8 + n + e], dtype="<u2")
        np.testing.assert_array_equal(bits(g.tensors["token_embd.weight"]).ravel(), stored)
    record(f"{variant:16s} BF16 checkpoint -> BF16 GGUF: every matrix bit for bit")


def test_f32_checkpoint_to_bf16(build, bf16dir):
    """--dtype bf16 from an F32 checkpoint: each matrix is torch's rounding of the F32 export's."""
    model, _, _ = bf16_files(build, bf16dir, "llama_gqa")
    g, w = read_gguf(model), read_gguf(build("llama_gqa")["f32"])
    assert g.metadata["general.file_type"] == FTYPE_BF16
    for name, a in w.tensors.items():
        if a.ndim == 2:
            np.testing.assert_array_equal(bits(g.tensors[name]), torch_bf16(a), name)


def check_logits(model, ref):
    """Our greedy logits on model against the float64 reference, within the F32 path's TOL."""
    P = len(prompt_ids(model))
    _, ours = run_greedy(model)
    ids = prompt_ids(model) + generated_ids(ours, P)[:-1]
    theirs = ref.logits(ids)
    err, pos = max_rel_err(ours, theirs)
    record(f"{model.name:28s} vs float64 reference on the BF16 weights: {err:.2e} at {pos}")
    assert err <= TOL, (err, pos)


@pytest.mark.parametrize("variant", FAMILIES)
def test_logits_bf16(build, bf16dir, variant):
    """Every family, --dtype bf16: the reference with its matrices rounded to BF16 by torch."""
    need_run()
    model, _, _ = bf16_files(build, bf16dir, variant)
    check_logits(model, Reference(build(variant)["hf"], weights="bf16"))


@pytest.mark.parametrize("variant", ["llama_gqa", "gpt2"])
def test_logits_bf16_checkpoint(build, bf16dir, variant):
    """A BF16 checkpoint's file: the reference on the checkpoint's own weights (widened)."""
    need_run()
    _, model, hf = bf16_files(build, bf16dir, variant)
    check_logits(model, Reference(hf))


@pytest.mark.parametrize("variant", ["llama_gqa", "qwen2", "gpt2"])
def test_llamacpp_bf16(build, bf16dir, variant, tmp_path):
    """llama.cpp on our BF16 files: the same tokens and greedy text (ties within float rounding;
    the files llama.cpp runs differently whatever the type are test_llamacpp.KNOWN's)."""
    need_run()
    T.need_oracle()
    model, _, _ = bf16_files(build, bf16dir, variant)
    T.check(variant, T.compare(model, tmp_path), "bf16")


@pytest.mark.parametrize("variant", ["llama_256"])
def test_llamacpp_quantizer_bf16(bf16dir, variant, tmp_path):
    """llama.cpp's own quantizer writes BF16 from an F32 file: its bits are ours (export.py's
    --dtype bf16 of the same model), we run it within TOL of the reference on those
    weights, and llama.cpp's greedy text on it is ours."""
    need_run()
    T.need_oracle()
    T.need_quantizer()
    hf = make_models.make_model(variant, bf16dir / variant)
    src = bf16dir / f"{variant}.f32.gguf"
    assert export(hf, src, "--dtype", "f32").returncode == 0
    out = T.llama_quantize(src, bf16dir / f"{variant}.llamacpp-bf16.gguf", "bf16")
    g, w = read_gguf(out), read_gguf(src)
    assert GGML_BF16 in set(g.tensor_types.values())
    for name, a in w.tensors.items():  # every matrix llama.cpp made BF16 is torch's rounding
        if g.tensor_types[name] == GGML_BF16:
            np.testing.assert_array_equal(bits(g.tensors[name]), torch_bf16(a), name)
    ours = bf16dir / f"{variant}.bf16.gguf"
    assert export(hf, ours, "--dtype", "bf16").returncode == 0
    o = read_gguf(ours)
    for name, a in g.tensors.items():
        np.testing.assert_array_equal(o.tensors[name], a, name)
    from gguf_to_hf import gguf_to_hf

    check_logits(out, Reference(gguf_to_hf(out, tmp_path / "hf")))
    T.check(variant, T.compare(out, tmp_path), "bf16")
