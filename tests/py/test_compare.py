"""compare.py, the user's comparison of ./run with PyTorch, on the test models.

    /usr/bin/python3 -m pytest -q -s tests/py/test_compare.py

Every family of tests/gen/make_models.py in F32 is within tolerance (exit 0) with its greedy tokens
agreeing; F16, Q8_0 and an exported Q4_K_M file too; the numbers it prints are those of the
dump against Reference.hidden and of the logits, recomputed here; a GGUF whose layer 2 was
perturbed (and nothing else) is beyond tolerance (exit 1) first at layer 2; bad input is one line
and exit 2.
"""

import contextlib
import io
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from conftest import PYTHON, ROOT, RUN, export, need_run
from gguf_read import read_gguf
from reference import Reference
from test_engine import PROMPT, VARIANTS, prompt_ids

COMPARE = ROOT / "compare.py"


def compare(*args):
    return subprocess.run([PYTHON, str(COMPARE), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env={"RUN_BIN": str(RUN), "PATH": "/usr/bin:/bin"})


def compare_json(*args, rc=0):
    """compare.py --json, in this process (torch loads once): its numbers, and its exit status
    checked."""
    import compare as tool

    tool.RUN = RUN
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = tool.main([*map(str, args), "--json"])
    assert status == rc, out.getvalue()[-300:]
    return json.loads(out.getvalue())


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_family(build, variant):
    need_run()
    files = build(variant)
    res = compare_json(files["hf"], files["f32"], "-i", PROMPT, "-n", "4")
    n_layers = len(res["layers"]) - 1
    cfg = json.loads((files["hf"] / "config.json").read_text())
    assert n_layers == cfg.get("num_hidden_layers", cfg.get("n_layer"))
    assert res["within"] and res["first_beyond"] is None and res["tolerance"] == 1e-4
    assert max(row["max_rel"] for row in res["layers"]) <= 1e-4
    assert res["greedy"] == {"steps": 4, "agree": 4, "first_disagree": None}
    lg = res["logits"]
    assert lg["positions"] == len(res["prompt_ids"]) + 3 and lg["top1_agree"] == lg["positions"]
    assert max(lg["kl"]) < 1e-8


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_weight_types(build, dtype):
    need_run()
    files = build("llama_gqa")
    res = compare_json(files["hf"], files[dtype], "-i", PROMPT)
    assert res["within"] and res["tolerance"] == {"f16": 1e-4, "q8_0": 3e-2}[dtype]
    assert res["weights"] == ({"f16": ["F16"], "q8_0": ["Q8_0"]}[dtype])


def test_exported_quantized(tmp_path):
    """No GGUF given: the directory is exported with --dtype, here a 4-bit mixture (Q4_K and Q6_K
    on rows of 256), compared with the float weights at its coarsest type's bound."""
    need_run()
    import make_models

    hf = make_models.make_model("llama_256", tmp_path / "llama_256")
    res = compare_json(hf, "-i", PROMPT, "--dtype", "q4_k_m")
    assert res["model"] is None and res["weights"] == ["F32", "Q4_K", "Q6_K"] or \
        res["weights"] == ["Q4_K", "Q6_K"], res["weights"]
    assert res["tolerance"] == 0.75
    assert res["within"] and 1e-3 < res["logits"]["max_rel"] < 0.75  # the rounding shows


def test_numbers(build):
    """The table's numbers, recomputed from ./run's dumps and the reference."""
    need_run()
    files = build("gemma3")
    res = compare_json(files["hf"], files["f32"], "-i", PROMPT, "-n", "3")
    ids = prompt_ids(files["f32"])
    assert res["prompt_ids"] == ids
    out = files["f32"].parent / "numbers"
    r = subprocess.run([str(RUN), str(files["f32"]), "-i", PROMPT, "-n", "3", "-t", "0",
                        "--dump-layers", f"{out}.layers.npy", "--dump-logits", f"{out}.logits.npy"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    layers, logits = np.load(f"{out}.layers.npy"), np.load(f"{out}.logits.npy")
    ref = Reference(files["hf"])
    ref.context = 4096
    want = ref.hidden(ids)
    for s, row in enumerate(res["layers"]):
        assert row["layer"] == ("embd" if s == 0 else s - 1)
        assert row["max_abs"] == pytest.approx(np.abs(layers[s] - want[s]).max(), rel=1e-9)
    fed = ids + [int(logits[t].argmax()) for t in range(len(ids) - 1, logits.shape[0] - 1)]
    want_logits = ref.logits(fed)
    np.testing.assert_allclose(res["logits"]["kl"], kl(logits, want_logits), rtol=1e-6, atol=1e-14)
    assert res["logits"]["max_abs"] == pytest.approx(np.abs(logits - want_logits).max(), rel=1e-9)


def kl(ours, ref):
    """KL(softmax(ref) || softmax(ours)) per row, with torch's kl_div."""
    return torch.nn.functional.kl_div(torch.from_numpy(ours.astype(np.float64)).log_softmax(-1),
                                      torch.from_numpy(ref).log_softmax(-1), log_target=True,
                                      reduction="none").sum(-1).numpy()


def test_planted_error(tmp_path):
    """llama_256 (4 layers) with layer 2's down projection perturbed by 1%: compare.py must find
    the embeddings and layers 0 and 1 within tolerance and layer 2 the first beyond, exit 1."""
    need_run()
    import make_models

    hf = make_models.make_model("llama_256", tmp_path / "llama_256")
    good = tmp_path / "good.gguf"
    assert export(hf, good).returncode == 0
    g = read_gguf(good)
    name = "blk.2.ffn_down.weight"
    w = g.tensors[name]
    bad = tmp_path / "bad.gguf"
    shutil.copy(good, bad)
    noise = np.random.default_rng(0).standard_normal(w.shape).astype(np.float32) * 0.01 * w.std()
    with open(bad, "r+b") as f:
        f.seek(g.data_start + g.tensor_offsets[name])
        f.write((w + noise).astype("<f4").tobytes())
    assert compare_json(hf, good, "-i", PROMPT)["within"]
    res = compare_json(hf, bad, "-i", PROMPT, rc=1)
    assert not res["within"]
    assert [row["max_rel"] <= 1e-4 for row in res["layers"]] == [True, True, True, False, False]
    assert res["first_beyond"]["layer"] == 2 and res["first_beyond"]["position"] == 0
    # the logits' KL, large now, as torch computes it from the planted weights' own logits
    ids = res["prompt_ids"]
    r = subprocess.run([str(RUN), str(bad), "-i", PROMPT, "-n", "1", "--dump-logits",
                        f"{bad}.logits.npy"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = kl(np.load(f"{bad}.logits.npy"), Reference(hf).logits(ids))
    assert want.min() > 1e-6
    np.testing.assert_allclose(res["logits"]["kl"], want, rtol=1e-6)
    text = compare(hf, bad, "-i", PROMPT)
    assert text.returncode == 1 and "first beyond tolerance: layer 2, position 0" in text.stdout
    assert text.stdout.rstrip().endswith("BEYOND tolerance")


def test_errors(build, tmp_path):
    need_run()
    files = build("llama_gqa")
    other = build("gemma3")  # more layers than llama_gqa
    cases = [((tmp_path, "-i", "x"), "has no config.json"),
             ((files["hf"], files["f32"], "-i", "x", "-n", "-1"), "-n expects an integer"),
             ((files["hf"], files["f32"]), "the following arguments are required: -i"),
             ((files["hf"], tmp_path / "missing.gguf", "-i", "x"), "cannot read"),
             ((files["hf"], files["hf"] / "config.json", "-i", "x"), "is not a GGUF"),
             ((other["hf"], files["f32"], "-i", PROMPT), "are they the same model?")]
    for args, words in cases:
        r = compare(*args)
        assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, (args, r.stderr)
        assert r.stderr.startswith("compare.py: error: ") and words in r.stderr, r.stderr
