"""./run --dump-layers against the PyTorch reference: the residual stream, layer by layer.

    /usr/bin/python3 -m pytest -q -s tests/py/test_layers.py

--dump-layers writes float32 [layers + 1, T, dim] for the T prompt positions: the embeddings, then
the residual stream after each layer. It is compared with Reference.hidden (float64) on the same
token ids, per layer and position, relative to max(1, max|ref|) of that row:
  - every family of tests/gen/make_models.py in F32 (reference on the stored weights) and F16
    (reference on the weights rounded to float16) within 1e-4, and Q8_0 (reference with Q8_0
    weights and activations) within 3e-2, the bounds test_engine.py holds the logits to;
  - the 2- to 6-bit types on llama_gqa against the reference on the file's dequantized weights
    whose products quantize their inputs as the engine does (test_quant.py's QuantReference),
    every row within test_quant.py's MAX_TOL and the first position within FIRST_TOL.
The last row of the dump, through the output norm and head, is also held to --dump-logits.
"""

import subprocess

import numpy as np
import pytest

from conftest import RUN, need_run
from gguf_to_hf import gguf_to_hf
from reference import Reference
from test_engine import PROMPT, Q8_DECODE_TOL, TOL, VARIANTS, prompt_ids, record
from test_quant import FIRST_TOL, MAX_TOL, QuantReference, qdir, quant_file  # noqa: F401 (fixture)

QUANT_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl"]


def dump_layers(model, *flags):
    """./run MODEL -i PROMPT -n 1 --dump-layers: (layers [L + 1, P, dim], logits [P, vocab])."""
    out, logits = f"{model}.layers.npy", f"{model}.layers-logits.npy"
    r = subprocess.run([str(RUN), str(model), "-i", PROMPT, "-n", "1", "-t", "0", "--dump-layers",
                        out, "--dump-logits", logits, *flags], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return np.load(out), np.load(logits)


def row_errors(ours, ref):
    """[L + 1, P]: max|ours - ref| / max(1, max|ref|) per layer and position."""
    return np.abs(ours - ref).max(-1) / np.maximum(1.0, np.abs(ref).max(-1))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_layers(build, variant, dtype):
    need_run()
    files = build(variant)
    model = files[dtype]
    ids = prompt_ids(model)
    ours, logits = dump_layers(model)
    ref = Reference(files["hf"], weights=dtype)
    ref.context = min(ref.cfg.get("max_position_embeddings", 0), 4096) or None  # ./run's default
    if dtype == "q8_0":
        ref.q8_decode_from = 0
    want = ref.hidden(ids)
    assert ours.dtype == np.float32 and ours.shape == want.shape, (ours.shape, want.shape)
    assert logits.shape[0] == len(ids)  # -n 1: the prompt's positions only
    err = row_errors(ours, want)
    layer, pos = np.unravel_index(err.argmax(), err.shape)
    line = f"{variant:16s} {dtype}: layers max rel err {err.max():.2e} (stage {layer}, position {pos})"
    record(line)
    assert err.max() <= (Q8_DECODE_TOL if dtype == "q8_0" else TOL), line
    if dtype == "f32":  # the prompt in batches of 3: rows land at their positions
        batched, _ = dump_layers(model, "-b", "3")
        assert row_errors(batched, want).max() <= TOL
    # the stream is the one the logits come from: the reference's head on our last stage
    ref_logits = ref.logits(ids)
    assert np.abs(logits - ref_logits).max() / max(1.0, np.abs(ref_logits).max()) <= \
        (Q8_DECODE_TOL if dtype == "q8_0" else TOL)


@pytest.mark.parametrize("dtype", QUANT_TYPES)
def test_layers_quantized(qdir, dtype):  # noqa: F811 (qdir is test_quant.py's fixture)
    need_run()
    model = quant_file(qdir, "llama_gqa", dtype)
    ids = prompt_ids(model)
    ours, _ = dump_layers(model)
    want = QuantReference(model, gguf_to_hf(model, qdir / f"llama_gqa.{dtype}.hf")).hidden(ids)
    assert ours.shape == want.shape, (ours.shape, want.shape)
    err = row_errors(ours, want)
    record(f"llama_gqa        {dtype}: layers max rel err {err.max():.2e}, first position "
           f"{err[:, 0].max():.2e}")
    assert err.max() <= MAX_TOL, err.max()
    assert err[:, 0].max() <= FIRST_TOL, err[:, 0].max()


def test_dump_layers_refusals(build, tmp_path):
    need_run()
    model = build("llama_gqa")["f32"]
    for args in (["--chat"], ["--ppl", str(model)]):
        r = subprocess.run([str(RUN), str(model), *args, "--dump-layers", str(tmp_path / "x.npy")],
                           capture_output=True, text=True, timeout=60, input="")
        assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
        assert "--dump-layers does not work with --chat or --ppl" in r.stderr
