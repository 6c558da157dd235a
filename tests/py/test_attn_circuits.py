"""Attention that teaches and discovers: --attn-explain, --dump-attn-norms, --attn-probe induction
(the atlas's prefix-matching and copying scores) and -v's measured cost table.

    cd /work/main && make && /usr/bin/python3 -m pytest -q -s tests/py/test_attn_circuits.py

The numbers --attn-explain prints are the engine's (copied during the forward pass); here they are
held to reference.py's rotated q and k, raw scores q.k, probabilities and values. The
value-weighted maps are held to ||p_ij W_O,h v_j|| from the reference's values and o_proj; the
induction score to a numpy computation from the --dump-attn file; the copying score to numpy from
the Hugging Face weights.
"""

import math
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import RUN, need_run, run
from reference import Reference, load_state_dict
from test_attention import run_attention, section, window_of
from test_engine import N_GEN, VARIANTS, generated_ids, prompt_ids

TOL = 1e-5


def ids_of(files, logits):
    P = len(prompt_ids(files["f32"]))
    return prompt_ids(files["f32"]) + generated_ids(logits, P)[:-1]


def parse_explain(stdout):
    lines = section(stdout, "attention explained:")
    rows = [l.split() for l in lines if re.match(r"^\s*\d+\s+-?\d", l)]
    comp = {}
    for name in ("q", "o"):
        line = next(l for l in lines if f"|{name}| = " in l)
        m = re.search(rf"\|{name}\| = (\S+), {name}\[0\.\.\d+\] =(.*)", line)
        comp[name] = (float(m.group(1).rstrip(",")), [float(x) for x in m.group(2).split()])
    return lines, rows, comp


@pytest.mark.parametrize("variant", VARIANTS)
def test_explain_matches_reference(build, variant):
    """Every number of the explained query equals the reference's: |q| and its first components,
    each key's raw q.k and scaled score, the weights, |p v| and the output, within 1e-5 (relative to
    max(1, |value|) for q.k, which reaches tens)."""
    need_run()
    files = build(variant)
    base = run_attention(files["f32"])
    L, H, T, _ = base["att"].shape
    layer, head, pos = L - 1, H - 1, T - 3
    out = run_attention(files["f32"], "--attn-explain", f"{layer}.{head}.{pos}")
    ids = ids_of(files, out["logits"])
    parts = Reference(files["hf"]).attention_parts(ids)[layer]
    q, k, v = parts["q"][pos, head], parts["k"][:, head], parts["v"][:, head]
    raw, probs = parts["raw"][head, pos], parts["probs"][head, pos]
    hd = q.shape[0]
    lines, rows, comp = parse_explain(out["stdout"])

    assert lines[0].startswith(f"attention explained: layer {layer} head {head}, query {pos} ")
    import json
    cfg = json.loads((files["hf"] / "config.json").read_text())
    nkv = cfg.get("num_key_value_heads") or cfg.get("num_attention_heads") or cfg["n_head"]
    group = H // nkv
    if group > 1:
        assert f"key/value head {head // group} is shared by query heads {head // group * group}.." \
               f"{head // group * group + group - 1}" in lines[1], lines[1]
    rope = cfg["model_type"] != "gpt2"
    assert ("rotated by RoPE" in "\n".join(lines)) == rope
    # the model's scale: 1/sqrt(head_dim) unless the config says otherwise (Gemma 3's
    # query_pre_attn_scalar, written as attention.scale)
    scale = 1 / math.sqrt(hd)
    if cfg["model_type"].startswith("gemma3") and cfg.get("query_pre_attn_scalar", hd) != hd:
        scale = cfg["query_pre_attn_scalar"] ** -0.5
        assert f"scale = {scale:.6f} (the file's attention.scale, not 1/sqrt({hd}))" in "\n".join(lines)
    else:
        assert f"1/sqrt({hd}) = {scale:.6f}" in "\n".join(lines)

    assert len(rows) == pos + 1
    W = window_of(files["hf"], layer)
    lo = pos - W + 1 if W and pos >= W else 0
    for j, f in enumerate(rows):
        assert int(f[0]) == j
        assert abs(float(f[1]) - raw[j]) <= TOL * max(1.0, abs(raw[j])), (j, f, raw[j])
        if j < lo:
            assert f[2:4] == ["-inf", "window"] and float(f[4]) == 0.0, f
            continue
        assert f[3] == "visible"
        assert abs(float(f[2]) - raw[j] * scale) <= TOL * max(1.0, abs(raw[j])), f
        assert abs(float(f[4]) - probs[j]) <= TOL, (f, probs[j])
        assert abs(float(f[5]) - probs[j] * np.linalg.norm(v[j])) <= TOL * max(1.0, np.linalg.norm(v[j])), f
    if W and pos >= W:
        assert lo > 0, "the window must mask some keys of the explained query"
    o = probs @ v
    if "pairs (2i, 2i+1)" in "\n".join(lines):  # the GGUF's interleaved order of HF's dims
        q = q.reshape(2, hd // 2).T.reshape(hd)
    for name, ref in (("q", q), ("o", o)):
        n, first = comp[name]
        assert abs(n - np.linalg.norm(ref)) <= TOL * max(1.0, np.linalg.norm(ref)), (name, n)
        np.testing.assert_allclose(first, ref[:len(first)], atol=2e-6, rtol=TOL)
    check = next(l for l in lines if l.startswith("check:"))
    diffs = [float(x) for x in re.findall(r"max \|diff\| (\S+?)[;\s]", check + " ")]
    assert len(diffs) == 2 and max(diffs) <= 1e-5, check
    print(f"{variant}: explained {layer}.{head}.{pos}, {len(rows)} keys, {lines[-1]}")


def test_explain_errors(build):
    need_run()
    model = build("llama_gqa")["f32"]
    r = __import__("subprocess").run([str(RUN), str(model), "-i", "hi", "-n", "2", "--attn-explain", "0.0.40"],
                                      capture_output=True, text=True)
    assert r.returncode == 1 and "feeds at most" in r.stderr, r.stderr
    r = __import__("subprocess").run([str(RUN), str(model), "-i", "hi", "--attn-explain", "0.0"],
                                      capture_output=True, text=True)
    assert r.returncode == 2 and "expects LAYER.HEAD.POSITION" in r.stderr, r.stderr


# ----------------------------------------------------------------------------------------------
# Value-weighted maps

@pytest.mark.parametrize("variant", ["llama_gqa", "llama_bias", "mistral_window", "gpt2", "qwen2_window"])
def test_norms_match_reference(build, variant):
    """--dump-attn-norms [L, H, T, T] = p_ij ||W_O,h v_j|| with the reference's weights p, values
    v and output projection W_O, within 1e-5 relative to the largest entry of each map."""
    need_run()
    files = build(variant)
    out = run_attention(files["f32"])
    got = out["norms"]
    ids = ids_of(files, out["logits"])
    parts = Reference(files["hf"]).attention_parts(ids)
    L, H, T, _ = got.shape
    assert got.dtype == np.float32 and (L, H, T) == (len(parts), parts[0]["probs"].shape[0], len(ids))
    for l, p in enumerate(parts):
        hd = p["v"].shape[-1]
        for h in range(H):
            wo_h = p["wo"][:, h * hd:(h + 1) * hd]                    # [dim, hd]
            norms = np.linalg.norm(p["v"][:, h] @ wo_h.T, axis=-1)   # [T]
            want = p["probs"][h] * norms[None, :]
            err = np.abs(got[l, h] - want).max() / max(1.0, want.max())
            assert err <= TOL, (l, h, err)
    att = out["att"]
    assert np.all(got[att == 0] == 0), "a masked key contributes nothing"
    print(f"{variant}: norms [L, H, T, T] = {list(got.shape)}, max {got.max():.3f}")


# ----------------------------------------------------------------------------------------------
# The induction probe and the research scores

def probe_run(model, tmp_path, *extra):
    npy = tmp_path / "probe.npy"
    r = run(model, "--attn-probe", "induction", "-n", "1", "-t", "0", "--attn-stats", "--dump-attn", npy, *extra)
    ids = [int(x) for x in run(model, "--attn-probe", "induction", "--tokenize").stdout.split()]
    return r.stdout.decode(), np.load(npy), ids


def prefix_matching(att, start, R):
    """numpy: the mean weight of each second-copy query i on key i - R + 1."""
    i = np.arange(start + R, start + 2 * R)
    return att[:, :, i, i - R + 1].astype(np.float64).mean(-1)


def atlas_rows(stdout):
    lines = section(stdout, "attention atlas:")
    head = next(k for k, l in enumerate(lines) if l.startswith("layer head"))
    assert lines[head].split() == ["layer", "head", "distance", "entropy", "prev", "self", "sink",
                                   "induct", "copy", "role"]
    return lines, [l.split() for l in lines[head + 1:] if l.strip()]


@pytest.mark.parametrize("variant", ["llama_gqa", "gpt2", "qwen2_window"])
def test_probe_and_induction_score(build, tmp_path, variant):
    need_run()
    model = build(variant)["f32"]
    stdout, att, ids = probe_run(model, tmp_path)
    R = 50
    start = len(ids) - 2 * R
    assert start in (0, 1)
    assert ids[start:start + R] == ids[start + R:], "the passage is repeated once"
    assert len(set(ids[start:start + R])) == R, "its tokens are distinct"
    assert ids == [int(x) for x in run(model, "--attn-probe", "induction", "--tokenize").stdout.split()], \
        "the probe is seeded"
    assert att.shape[-1] == len(ids)  # -n 1: the probe alone is fed
    lines, rows = atlas_rows(stdout)
    assert f"positions {start}..{start + R - 1} repeated at {start + R}..{start + 2 * R - 1}" in lines[1]
    want = prefix_matching(att, start, R)
    for f in rows:
        l, h = int(f[0]), int(f[1])
        assert abs(float(f[7]) - want[l, h]) <= 6e-4, (f, want[l, h])
        assert (f[9] == "induction") == (want[l, h] >= 0.4)
        assert 0.0 <= float(f[8]) <= 1.0


def rms(x, g, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def test_copying_score(build, tmp_path):
    """The OV copying score from the Hugging Face weights with numpy: for each probe token t, the
    logits of the probe's tokens from W_U g W_O,h W_V,h norm(e_t), and the fraction of the others
    below t's own."""
    need_run()
    files = build("llama_gqa")
    stdout, att, ids = probe_run(files["f32"], tmp_path)
    copy = copy_scores(files["hf"], ids[-50:])
    _, rows = atlas_rows(stdout)
    for f in rows:
        assert abs(float(f[8]) - copy[int(f[0]), int(f[1])]) <= 2e-3, (f, copy[int(f[0]), int(f[1])])


def copy_scores(hf, toks):
    """numpy, from a Hugging Face llama directory: [layer, head] -> the OV copying score over the
    probe tokens toks."""
    import json
    cfg = json.loads((hf / "config.json").read_text())
    sd = {k.replace("model.", "", 1): v.double().numpy() for k, v in load_state_dict(hf).items()}
    L, H, nkv, D = cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd, eps = D // H, cfg["rms_norm_eps"]
    E = sd["embed_tokens.weight"][toks]
    U = (sd["lm_head.weight"] if "lm_head.weight" in sd else sd["embed_tokens.weight"])[toks] * sd["norm.weight"]
    out = np.zeros((L, H))
    for l in range(L):
        for h in range(H):
            p = f"layers.{l}."
            x = rms(E, sd[p + "input_layernorm.weight"], eps)
            kvh = h // (H // nkv)
            v = x @ sd[p + "self_attn.v_proj.weight"][kvh * hd:(kvh + 1) * hd].T
            y = v @ sd[p + "self_attn.o_proj.weight"][:, h * hd:(h + 1) * hd].T
            logits = y @ U.T                                  # [t, t2]
            own = np.diag(logits)
            out[l, h] = ((logits < own[:, None]).sum(-1) / (len(toks) - 1)).mean()
    return out


# ----------------------------------------------------------------------------------------------
# The cost, measured

def test_cost_table(build):
    """-v prints the time of every generated token's forward pass in groups of positions, with the
    KV cache's bytes at that length and the FLOP model; the numbers are not checked (the machine is
    shared), the structure and the bytes are."""
    need_run()
    model = build("llama_gqa")["f32"]
    P = len(prompt_ids(model))
    r = run(model, "-i", "In the beginning God created the heaven and the earth.", "-n", "40", "-t", "0", "-v")
    err = r.stderr.decode().splitlines()
    k = next(i for i, l in enumerate(err) if l.startswith("time per generated token"))
    assert "with the attention capture on" not in err[k]
    assert err[k + 1].split() == ["positions", "keys", "ms/token", "FLOP", "model", "kv", "cache"]
    rows = [l.split() for l in err[k + 2:] if re.match(r"^\s+\d+\.\.", l)]
    assert 1 <= len(rows) <= 12
    positions = []
    flops = []
    for f in rows:
        a, b = (int(x) for x in f[0].split(".."))
        positions += list(range(a, b + 1))
        assert int(f[1]) == (a + b) // 2 + 1
        assert float(f[2]) >= 0
        flops.append(float(f[3]))
        kv = 2 * 2 * 16 * 4 * (b + 1)  # 2 layers x kv_dim 2 x 8 (16) x 4 bytes
        unit = {"bytes": 1, "KiB": 1024, "MiB": 1 << 20}[f[5]]
        assert abs(float(f[4]) * unit - kv) <= 0.06 * unit, (f, kv)
    assert positions == list(range(P, P + 40 - 1))  # generated tokens 2..40 are fed one at a time
    assert flops == sorted(flops), "the FLOP model grows with the keys"


def test_cost_counts_each_layers_window(build):
    """The FLOP model counts, in each layer, the keys that layer's window lets a query see: in
    Gemma 3 (layers 0-4 local with a window of 8, layer 5 global) the global layer sees every key,
    so the printed keys are the mean over the layers, not the window."""
    need_run()
    files = build("gemma3")
    model, L = files["f32"], 6
    P = len(prompt_ids(model))
    r = run(model, "-i", "In the beginning God created the heaven and the earth.", "-n", "30", "-t", "0",
            "-c", "64", "-v")
    assert r.returncode == 0, r.stderr
    err = r.stderr.decode()
    windows = [window_of(files["hf"], l) for l in range(L)]
    assert windows == [8, 8, 8, 8, 8, None]

    def keys(pos):
        return sum(pos + 1 - (max(0, pos - w + 1) if w else 0) for w in windows) / L

    first, last = P - 1, P + 30 - 2
    m = re.search(r"first generated token \((\S+) keys\) -> .* for the last \((\S+) keys\); "
                  r".* at the full context \((\S+) keys\)", err)
    assert m, err
    assert [float(x) for x in m.groups()] == pytest.approx([keys(first), keys(last), keys(63)], abs=1e-4)
    assert keys(last) > 8  # the global layer's keys are counted, not the window's
    lines = err.splitlines()
    k = next(i for i, l in enumerate(lines) if l.startswith("time per generated token"))
    rows = [l.split() for l in lines[k + 2:] if re.match(r"^\s+\d+\.\.", l)]
    assert rows
    for f in rows:
        a, b = (int(x) for x in f[0].split(".."))
        assert float(f[1]) == pytest.approx(keys((a + b) // 2), abs=1e-4), f


# ----------------------------------------------------------------------------------------------
# The shipped model and the induction model (the walkthrough of docs/attention.md)

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_model_has_no_induction_head(tmp_path):
    """docs/attention.md's first finding: the KJV model has no head with a prefix-matching score of 0.4 on
    the probe (its best is 0.022), so the atlas names none `induction`."""
    need_run()
    stdout, att, ids = probe_run(ROOT / "models" / "kjv.gguf", tmp_path)
    score = prefix_matching(att, len(ids) - 100, 50)
    _, rows = atlas_rows(stdout)
    assert all(f[9] != "induction" for f in rows)
    assert 0.01 < score.max() < 0.03, score.max()


def test_induction_model(tmp_path):
    """docs/attention.md's second finding: models/induction.gguf (train.py --induction) has induction
    heads. The atlas names at least one head `induction`; every head's printed prefix-matching score
    equals numpy's from the --dump-attn file, and its copying score numpy's from the file's weights
    (read back by tests/py/gguf_to_hf.py). The model copies: its greedy prediction is the right
    token at all 49 predictable positions of the probe's second copy (--dump-logits). The OV
    copying score of its induction heads is below 0.5 (0.34 to 0.43): it reads the raw embedding,
    while layer 1 reads a residual stream that layer 0 has rewritten (docs/attention.md)."""
    need_run()
    from gguf_to_hf import gguf_to_hf
    model = ROOT / "models" / "induction.gguf"
    assert model.exists(), "models/induction.gguf is committed (train.py --induction makes it)"
    stdout, att, ids = probe_run(model, tmp_path, "--dump-logits", tmp_path / "logits.npy")
    score = prefix_matching(att, len(ids) - 100, 50)
    copy = copy_scores(Path(gguf_to_hf(model, tmp_path / "induction.hf")), ids[-50:])
    pred = np.load(tmp_path / "logits.npy").argmax(-1)
    assert [int(pred[i]) for i in range(51, 100)] == ids[52:101], "the second copy is predicted"
    _, rows = atlas_rows(stdout)
    induction = []
    for f in rows:
        l, h = int(f[0]), int(f[1])
        assert abs(float(f[7]) - score[l, h]) <= 6e-4, (f, score[l, h])
        assert abs(float(f[8]) - copy[l, h]) <= 2e-3, (f, copy[l, h])
        assert (f[9] == "induction") == (score[l, h] >= 0.4), f
        if f[9] == "induction":
            induction.append((l, h))
    assert induction, "no head passes 0.4: %s" % score
    print("induction heads", induction, "prefix matching", score.max(), "copy", [copy[lh] for lh in induction])


# ----------------------------------------------------------------------------------------------
# The page's new panels, in headless Chromium

def test_page_panels(build, tmp_path):
    """A page with every new panel filled (the probe, an explained query, -v's cost, the value
    norms) renders with no script error; the atlas lists the heads with the probe's columns, the
    explain panel shows the query's keys, the cost plot is drawn, and the value-weighted view
    draws too."""
    need_run()
    from test_attention import browse, check_page, page_meta
    model = build("llama_gqa")["f32"]
    page = tmp_path / "panels.html"
    run(model, "--attn-probe", "induction", "-n", "12", "-t", "0", "--attn-explain", "1.5.60",
        "--attn-html", page, "-v")
    meta = page_meta(page)
    L, H, T = meta["layers"], meta["heads"], meta["positions"]
    assert meta["probe"] == [1, 50] and len(meta["stats"]) == L * H and len(meta["vscale"]) == L * H
    assert len(meta["cost"]["ms"]) == T - 101 and meta["cost"]["pos"][0] == 101
    check_page(page, L, H, T)
    r = browse(page, "--dump-dom")
    atlas = r.stdout[r.stdout.index('<table id="atlas">'):]
    atlas = atlas[:atlas.index("</table>")]
    assert atlas.count("<tr") == 1 + L * H and "induct" in atlas
    box = re.search(r'<div id="explainbox">([^<]*)</div>', r.stdout).group(1)
    assert "layer 1 head 5, query 60" in box and "shared by query heads 4..7" in box
    assert len([l for l in box.splitlines() if re.match(r"^\s+\d+\s+-?\d", l)]) == 61
    assert re.search(r'<canvas id="cost" width="520" height="220">', r.stdout)
    assert "Measured on the machine" in r.stdout
    # the value-weighted view: the same page with the mode switched before drawing
    vpage = tmp_path / "panels_v.html"
    vpage.write_text(page.read_text(encoding="utf-8").replace('let mode = "p";', 'let mode = "v";'),
                     encoding="utf-8")
    check_page(vpage, L, H, T)
    r = browse(vpage, "--dump-dom")
    assert "value-weighted |p W_O v|, scaled" in r.stdout


PAGE_T = int(__import__("os").environ.get("TINYGPT_PAGE_T", "256"))


def test_page_at_scale(workdir, tmp_path):
    """32 layers x 32 heads x PAGE_T tokens (256 by default; TINYGPT_PAGE_T=513 for the size
    docs/attention.md states) of the synthetic tests/gen model llama_page: the page is written, renders in
    headless Chromium with no script error, and its size is printed."""
    need_run()
    import subprocess
    import sys
    sys.path.insert(0, str(ROOT / "tests" / "gen"))
    import make_models
    from conftest import export
    from test_attention import browse
    hf = make_models.make_model("llama_page", workdir / "llama_page")
    gguf = workdir / "llama_page.f32.gguf"
    assert export(hf, gguf, "--dtype", "f32").returncode == 0
    text = (ROOT / "models" / "kjv-valid.txt").read_text()
    # a prompt of exactly PAGE_T tokens: the first words of the held-out chapters
    n = 2 * PAGE_T
    while len(run(gguf, "--tokenize", "-i", text[:n]).stdout.split()) < PAGE_T:
        n += PAGE_T
    words = text[:n]
    while len(run(gguf, "--tokenize", "-i", words).stdout.split()) > PAGE_T:
        words = words[:-1]
    page = tmp_path / "scale.html"
    run(gguf, "-i", words, "-n", "0", "--attn-html", page)
    r = browse(page, "--dump-dom")
    status = re.search(r'<pre id="status">([^<]*)</pre>', r.stdout)
    assert status and status.group(1).startswith("ok: 32 layers x 32 heads, "), (status, r.stderr[-2000:])
    console = [l for l in r.stderr.splitlines() if "CONSOLE" in l]
    assert not console, "\n".join(console)
    print(f"page at 32 x 32 x {status.group(1).split(', ')[1]}: {page.stat().st_size / 1e6:.1f} MB; {status.group(1)}")
