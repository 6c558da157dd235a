"""Speculative decoding (-md, --lookup): greedily (-t 0) the text is the same bytes as plain
decoding's, for every family and weight type of tests/gen/make_models.py and for the shipped
model, in generation and in a chat; with drafts from a Q4_0 copy of the same weights (mostly
accepted), from a model of the same vocabulary with its weights shuffled (mostly rejected) and
from prompt lookup. The sampling side (the distribution) is tests/c/test_spec.c's.
"""

import re
import subprocess
import sys

import numpy as np
import pytest

import make_models
from conftest import EXPORT, PYTHON, ROOT, RUN, export, need_run

sys.path.insert(0, str(ROOT))
import export as export_py  # noqa: E402
import quants  # noqa: E402
from gguf_read import read_gguf  # noqa: E402

SHIPPED = ROOT / "models" / "kjv.gguf"
PROMPT = "the cat sat on the mat, the cat sat on the mat, and then the"
N = 40


def generate(model, *args, prompt=PROMPT, n=N):
    """(stdout, stderr) of a greedy run; one thread (the same bits as any number, and no waiting
    on a busy machine)."""
    r = subprocess.run([str(RUN), str(model), "-i", prompt, "-n", str(n), "-t", "0", "-v",
                        "--threads", "1", *args],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, f"./run {' '.join(args)}: {r.stderr.decode(errors='replace')}"
    return r.stdout, r.stderr.decode(errors="replace")


def acceptance(stderr):
    """(drafted, accepted) from -v's line."""
    m = re.search(r"speculative \([a-z ]+\): \d+ steps, drafted (\d+) tokens, accepted (\d+)", stderr)
    assert m, f"no speculative line in: {stderr}"
    return int(m.group(1)), int(m.group(2))


def shuffled(src, out, seed=1):
    """A model of src's shape and vocabulary whose every tensor holds its values in another order:
    a different model that drafts mostly wrong tokens."""
    g = read_gguf(src)
    plan = export_py.Plan()
    rng = np.random.default_rng(seed)
    for key in g.key_order:
        vtype = g.metadata_types[key].replace("arr[", "arr_").rstrip("]")
        value = {"general.file_type": quants.DTYPES["f32"][1],
                 "general.alignment": export_py.ALIGNMENT}.get(key, g.metadata[key])
        plan.kv(key, vtype, value)
    for name in g.tensor_order:
        t = g.tensors[name].astype("float32")
        plan.tensor(name, t.shape, lambda t=t: rng.permutation(t.ravel()).reshape(t.shape))
    export_py.write_gguf(str(out), plan, "f32")
    return out


@pytest.fixture(scope="module")
def drafts(build, tmp_path_factory):
    """drafts(variant) -> (q4_0 copy, shuffled copy) of the variant's weights."""
    made = {}
    d = tmp_path_factory.mktemp("drafts")

    def get(variant):
        if variant not in made:
            files = build(variant)
            q4 = d / f"{variant}.q4_0.gguf"
            r = export(files["hf"], q4, "--dtype", "q4_0")
            assert r.returncode == 0, r.stderr
            made[variant] = (q4, shuffled(files["f32"], d / f"{variant}.shuffled.gguf"))
        return made[variant]

    return get


@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("variant", make_models.VARIANTS)
def test_greedy_same_text(build, drafts, variant, dtype):
    need_run()
    model = build(variant)[dtype]
    q4, other = drafts(variant)
    plain, _ = generate(model)
    assert len(plain) > 0
    for args in (["--lookup", "5"], ["-md", str(q4), "--draft-max", "5"],
                 ["-md", str(other), "--draft-max", "3"]):
        out, err = generate(model, *args)
        drafted, accepted = acceptance(err)
        assert out == plain, f"{variant} {dtype} {' '.join(args)}: {out!r} != plain {plain!r}"
        assert drafted > 0 or args[0] == "--lookup"
        assert 0 <= accepted <= drafted


@pytest.mark.parametrize("variant", ["llama_gqa", "gpt2"])
def test_greedy_same_text_with_penalties(build, drafts, variant):
    """The penalties count the drafted tokens each check looks past: greedy text stays the same."""
    need_run()
    model = build(variant)["f32"]
    q4, _ = drafts(variant)
    pen = ["--repeat-penalty", "1.3", "--presence-penalty", "0.2", "--repeat-last-n", "16"]
    plain, _ = generate(model, *pen)
    for args in (["--lookup", "4"], ["-md", str(q4), "--draft-max", "6"]):
        out, _ = generate(model, *pen, *args)
        assert out == plain, f"{variant} {' '.join(args)}"


@pytest.fixture(scope="module")
def shipped_q4(tmp_path_factory):
    out = tmp_path_factory.mktemp("kjv") / "kjv.q4_0.gguf"
    r = subprocess.run([PYTHON, str(ROOT / "tools" / "quantize_gguf.py"), str(SHIPPED), str(out),
                        "--dtype", "q4_0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def test_shipped_model(shipped_q4):
    """The shipped model with its own Q4_0 copy drafting (most drafts accepted) and with lookup on
    a verse it is asked to go on with after seeing it once (lookup finds something)."""
    need_run()
    verse = "And God said, Let there be light: and there was light. And God said, Let there be"
    for prompt in (verse, "And the LORD said unto Moses"):
        plain, _ = generate(SHIPPED, prompt=prompt, n=64)
        out, err = generate(SHIPPED, "-md", str(shipped_q4), prompt=prompt, n=64)
        assert out == plain
        drafted, accepted = acceptance(err)
        assert accepted > drafted // 2, err
        out, err = generate(SHIPPED, "--lookup", "8", prompt=prompt, n=64)
        assert out == plain
        drafted, accepted = acceptance(err)
        assert accepted > 0, err


def test_chat(shipped_q4):
    """A chat of three turns: the replies and the KV cache's tokens (-v) as without speculation."""
    need_run()
    turns = b"And the LORD said unto Moses\nIn the beginning God created\nThe LORD is my shepherd\n"

    def chat(*args):
        r = subprocess.run([str(RUN), str(SHIPPED), "--chat", "--chat-template", "llama2", "-n",
                            "30", "-t", "0", "-v", "--threads", "1", *args], input=turns, capture_output=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        err = r.stderr.decode()
        cache = [line for line in err.splitlines() if "[cache:" in line or "reply" in line]
        return r.stdout, cache, err

    plain, cache, _ = chat()
    for args in (["--lookup", "4"], ["-md", str(shipped_q4), "--draft-max", "4"]):
        out, spec_cache, err = chat(*args)
        assert out == plain and spec_cache == cache, args
        assert acceptance(err)[1] > 0


def test_chat_stop_inside_a_draft(shipped_q4):
    """A stop string completed by an accepted draft: that token and the drafts after it leave the
    cache, as if they had never been fed (the next turn sees the same cache)."""
    need_run()
    turns = b"And the LORD said unto Moses\nAnd the LORD said unto Moses\n"
    runs = []
    for args in ([], ["-md", str(shipped_q4), "--draft-max", "8"]):
        r = subprocess.run([str(RUN), str(SHIPPED), "--chat", "--chat-template", "llama2", "-n",
                            "40", "-t", "0", "-v", "--threads", "1", "--stop", "seed", *args], input=turns,
                           capture_output=True, timeout=300)
        assert r.returncode == 0, r.stderr
        runs.append((r.stdout, [x for x in r.stderr.decode().splitlines() if "[cache:" in x]))
    assert runs[0] == runs[1]


def test_context_full(shipped_q4):
    """Drafts stop at the end of the context: the same text and the same stop as plain decoding."""
    need_run()
    verse = "And God said, Let there be light: and there was light. And God said, Let there be"
    plain = generate(SHIPPED, "-c", "40", prompt=verse, n=100)
    assert "[context length 40 reached]" in plain[1]
    for args in (["--lookup", "8"], ["-md", str(shipped_q4), "--draft-max", "8"]):
        out, err = generate(SHIPPED, "-c", "40", *args, prompt=verse, n=100)
        assert out == plain[0] and "[context length 40 reached]" in err, args
