"""Fixtures and helpers shared by the test modules (pytest loads this file first).

    build(variant) -> dict(hf=dir, f32=gguf, f16=gguf)   session fixture: each variant of
                      tests/gen/make_models.py is made and exported once per session
    vocab_gguf(src_dir)                                  session fixture: the vocabulary-only GGUF
                                                         export.py --vocab-only makes from src_dir's
                                                         tokenizer.json (+ tokenizer_config.json)
    run(model, *args)                                    ./run, asserting exit 0
    need_run()                                           skip when ./run is not built
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]   # tests/: py/ (this), gen/, fixtures/, oracles/
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"
sys.path.insert(0, str(TESTS / "gen"))
sys.path.insert(0, str(ROOT))  # reference.py, the PyTorch reference compare.py runs too

import make_models  # noqa: E402

PYTHON = "/usr/bin/python3"
EXPORT = ROOT / "export.py"
RUN = Path(os.environ.get("RUN_BIN", ROOT / "run"))
CACHE = TESTS / ".cache"
ERRORS = CACHE / "errors.txt"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """A fresh directory per session (pytest keeps the last few under /tmp/pytest-of-$USER for
    inspection), so concurrent sessions never share files; building all models takes ~2 s."""
    CACHE.mkdir(exist_ok=True)
    ERRORS.write_text("")
    return tmp_path_factory.mktemp("models")


_built = {}


def export(hf_dir, out, *extra):
    return subprocess.run([PYTHON, str(EXPORT), str(hf_dir), str(out), *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def build(workdir):
    """build(variant) -> dict(hf=dir, f32=gguf, f16=gguf); each variant is made once a session."""

    def get(variant):
        if variant not in _built:
            hf = make_models.make_model(variant, workdir / variant)
            files = {"hf": hf}
            for dtype in ("f32", "f16", "q8_0"):
                out = workdir / f"{variant}.{dtype}.gguf"
                r = export(hf, out, "--dtype", dtype)
                assert r.returncode == 0, f"export failed: {r.stderr}"
                files[dtype] = out
            _built[variant] = files
        return _built[variant]

    return get


@pytest.fixture(scope="session")
def vocab_gguf(tmp_path_factory):
    """vocab_gguf(src_dir) -> path of the vocabulary-only GGUF that `export.py --vocab-only` makes
    from the tokenizer.json (and tokenizer_config.json) in src_dir, once a session per directory;
    an export error fails the test with export.py's message."""
    made = {}

    def get(src):
        src = Path(src).resolve()
        if src not in made:
            out = tmp_path_factory.mktemp("vocab") / f"{src.parent.name}-{src.name}.gguf"
            r = export(src, out, "--vocab-only")
            assert r.returncode == 0, f"export.py --vocab-only {src} failed: {r.stderr}"
            made[src] = out
        return made[src]

    return get


def need_run():
    if not RUN.exists():
        pytest.skip(f"{RUN} not found: build it with `make` in {ROOT} (or set RUN_BIN)")


def run(model, *args, input=None):
    r = subprocess.run([str(RUN), str(model), *args], capture_output=True, timeout=300, input=input)
    assert r.returncode == 0, f"./run {' '.join(map(str, args))} failed ({r.returncode}): " \
                              f"{r.stderr.decode(errors='replace')}"
    return r
