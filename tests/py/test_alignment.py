"""GGUF files with a general.alignment below the 32 bytes llama.cpp writes (1 and 2 are legal):
their tensors, at odd file offsets, generate exactly what the same model aligned to 32 does, with
the weights copied at load and with --no-repack, in F32 and quantized; and under
AddressSanitizer + UBSan (build/asan/run, `make build/asan/run`), which stops on any misaligned
load.

    make && make build/asan/run && /usr/bin/python3 -m pytest -q tests/py/test_alignment.py
"""

import subprocess

import numpy as np
import pytest

from conftest import PYTHON, ROOT, RUN, need_run
from gguf_read import read_gguf, realigned, tensor_bytes

FIX = ROOT / "tests" / "fixtures"
ASAN = ROOT / "build" / "asan" / "run"
PROMPT = "In the beginning God created"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> path: the llama_gqa fixture (F32), its Q8_0 and Q4_K_M re-typings, and gpt2's."""
    d = tmp_path_factory.mktemp("align")
    out = {"llama_gqa": FIX / "llama_gqa.gguf", "gpt2": FIX / "gpt2.gguf"}
    for dtype in ("q8_0", "q4_k_m"):
        path = d / f"llama_gqa.{dtype}.gguf"
        r = subprocess.run([PYTHON, str(ROOT / "tools" / "quantize_gguf.py"), str(out["llama_gqa"]),
                            str(path), "--dtype", dtype], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        out[f"llama_gqa.{dtype}"] = path
    return out


def generate(binary, model, out, *args):
    """Greedy text, the logits of every position and the load line, from binary (exit 0 and a
    quiet stderr: the sanitizers print their reports there)."""
    r = subprocess.run([str(binary), str(model), "-i", PROMPT, "-n", "6", "-t", "0",
                        "--dump-logits", str(out), *args], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-2000:]
    assert b"runtime error" not in r.stderr and b"Sanitizer" not in r.stderr, r.stderr[-2000:]
    load = next(line for line in r.stderr.decode().splitlines() if line.startswith("load:"))
    return r.stdout, np.load(out), load


def test_realigned_files_are_misaligned(models, tmp_path):
    """The files the tests below run: the same tensors, none of them 4-byte aligned in the file."""
    for align in (1, 2):
        path = tmp_path / f"a{align}.gguf"
        realigned(models["llama_gqa"], align, path)
        g, g0 = read_gguf(path), read_gguf(models["llama_gqa"])
        assert g.metadata["general.alignment"] == align
        assert all(np.array_equal(g.tensors[k], g0.tensors[k]) for k in g0.tensors)
        assert all((g.data_start + off) % 4 != 0 for off in g.tensor_offsets.values())


@pytest.mark.parametrize("binary", ["run", "asan"])
@pytest.mark.parametrize("name", ["llama_gqa", "llama_gqa.q8_0", "llama_gqa.q4_k_m", "gpt2"])
@pytest.mark.parametrize("align", [1, 2])
def test_small_alignment_generates_as_aligned(models, tmp_path, binary, name, align):
    """Alignment 1 or 2: the same text and bit-identical logits as the file aligned to 32, with
    the weights copied at load (default) and read in place (--no-repack)."""
    exe = RUN if binary == "run" else ASAN
    if binary == "run":
        need_run()
    elif not ASAN.exists():
        pytest.skip(f"{ASAN} not built (make build/asan/run)")
    model = tmp_path / f"{name}.a{align}.gguf"
    realigned(models[name], align, model)
    for flags in ([], ["--no-repack"]):
        want_text, want, want_load = generate(exe, models[name], tmp_path / "want.npy", *flags)
        text, got, load = generate(exe, model, tmp_path / "got.npy", *flags)
        assert text == want_text, (flags, text, want_text)
        assert np.array_equal(got, want), (flags, float(np.abs(got - want).max()))
        # the copy's cost is stated: every tensor (none is 4-byte aligned), none for the original
        g = read_gguf(model)
        mb = sum(tensor_bytes(g.tensor_types[k], a.shape) for k, a in g.tensors.items()) / 1e6
        assert "copied off 32-byte alignment" not in want_load, want_load
        assert f"{mb:.1f} MB copied off 32-byte alignment" in load, load
