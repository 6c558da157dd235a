"""Seeing attention: --dump-attn, --attn-stats, --attn-show and --attn-html against PyTorch.

    cd /work/main && make && /usr/bin/python3 -m pytest -q -s tests/py/test_attention.py

For every variant of tests/gen/make_models.py (GQA, MQA, biases, a sliding window, both RoPE
conventions, learned and sinusoidal positions) the F32 model is run greedily with every attention
output at once. The dumped probabilities [layers, heads, T, T] must equal reference.py's
softmax probabilities within 1e-5 at every one of the T = prompt + 63 positions, every row must sum
to 1, and the masked entries (the future, keys outside the window) must be exactly zero. The atlas
is recomputed with numpy from the dump, the terminal view is parsed, and the HTML page is opened in
headless Chromium (skipped, with the reason, when no chromium is installed; CI installs it).
"""

import os
import pty
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import RUN, need_run, run
from reference import Reference
from test_engine import N_GEN, PROMPT, VARIANTS, generated_ids, prompt_ids

ATT_TOL = 1e-5
SHOW = (1, 0)  # the head --attn-show prints: layer 1 (every test model has 2), head 0


def window_of(hf, layer=None):
    """The sliding window of the model's attention (of `layer` where layers differ), or None."""
    import json

    cfg = json.loads((hf / "config.json").read_text())
    if cfg["model_type"] == "mistral" or cfg.get("use_sliding_window") and cfg["max_window_layers"] == 0:
        return cfg["sliding_window"]
    if cfg["model_type"] == "phi3":
        return cfg.get("sliding_window")
    if cfg["model_type"].startswith("gemma3"):  # local layers l % P < P - 1 (P = 6: 5 local, 1 global)
        P = cfg.get("sliding_window_pattern", 6)
        assert layer is not None, "gemma3's window depends on the layer"
        return cfg["sliding_window"] if layer % P < P - 1 else None
    return None


def visible_mask(T, window):
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    return (j <= i) & ((j > i - window) if window else True)


_runs = {}


def run_attention(model, *extra):
    """./run MODEL -i PROMPT -n 64 -t 0 with every attention output; returns a dict with the
    stdout text, the logits, the maps and the page's path. Cached per (model, extra)."""
    key = (str(model), extra)
    if key not in _runs:
        base = str(model) + ".attn" + "".join(extra).replace(" ", "_")
        paths = {k: Path(f"{base}.{k}") for k in ("logits.npy", "npy", "norms.npy", "html")}
        r = run(model, "-i", PROMPT, "-n", str(N_GEN), "-t", "0", "--dump-logits", paths["logits.npy"],
                "--dump-attn", paths["npy"], "--dump-attn-norms", paths["norms.npy"],
                "--attn-html", paths["html"], "--attn-stats", "--attn-show", "%d.%d" % SHOW, *extra)
        _runs[key] = dict(stdout=r.stdout.decode(), stderr=r.stderr.decode(),
                          logits=np.load(paths["logits.npy"]), att=np.load(paths["npy"]),
                          norms=np.load(paths["norms.npy"]), html=paths["html"])
    return _runs[key]


# ----------------------------------------------------------------------------------------------
# The weights

@pytest.mark.parametrize("variant", VARIANTS)
def test_dump_matches_reference(build, variant):
    need_run()
    files = build(variant)
    out = run_attention(files["f32"])
    att, logits = out["att"], out["logits"]
    P = len(prompt_ids(files["f32"]))
    ids = prompt_ids(files["f32"]) + generated_ids(logits, P)[:-1]
    T = len(ids)
    ref = Reference(files["hf"]).attention(ids)
    assert att.dtype == np.float32
    assert att.shape == ref.shape == (ref.shape[0], ref.shape[1], T, T), (att.shape, ref.shape)

    err = np.abs(att - ref).max()
    where = np.unravel_index(np.abs(att - ref).argmax(), att.shape)
    print(f"{variant:16s} attention [L, H, T, T] = {list(att.shape)}: max |ours - torch| {err:.2e} "
          f"at (layer, head, query, key) {tuple(int(x) for x in where)}")
    assert err <= ATT_TOL

    windows = [window_of(files["hf"], layer) for layer in range(att.shape[0])]
    hidden = np.broadcast_to(~np.stack([visible_mask(T, w) for w in windows])[:, None], att.shape)
    assert np.all(att[hidden] == 0.0), "masked entries must be exactly zero"
    assert np.all(ref[hidden] == 0.0)  # the reference agrees on what is masked
    assert np.abs(att.sum(axis=-1) - 1.0).max() <= ATT_TOL
    # a window either masks well inside the sequence or lies beyond it (Phi-3.5's 262,144)
    assert all(not w or w + 5 < T or w >= T for w in windows), (windows, T)


def test_dump_prompt_only(build):
    """-n 0: only the prompt is analysed, T = P, and the atlas starts stdout (no generated text)."""
    need_run()
    model = build("llama_gqa")["f32"]
    npy = Path(str(model) + ".n0.attn.npy")
    r = run(model, "-i", PROMPT, "-n", "0", "--dump-attn", npy, "--attn-stats")
    P = len(prompt_ids(model))
    assert np.load(npy).shape == (2, 8, P, P)
    assert r.stdout.decode().startswith("attention atlas: 2 layers x 8 heads, %d positions" % P)


def test_dump_batch1_equals_batched(build):
    """The hook sees the same probabilities whether the prompt goes through in one batch or
    token by token."""
    need_run()
    model = build("qwen2_window")["f32"]
    a = run_attention(model)["att"]
    b = run_attention(model, "-b", "1")["att"]
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 1e-6


# ----------------------------------------------------------------------------------------------
# The atlas

def atlas(a):
    """numpy version of --attn-stats over queries 1..T-1: distance, entropy, prev, self, sink."""
    T = a.shape[-1]
    i = np.arange(T)
    q = a[:, :, 1:, :].astype(np.float64)
    dist = (q * (i[1:, None] - i[None, :])).sum(-1).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(q > 0, q * np.log(q), 0.0).sum(-1).mean(-1)
    prev = q[:, :, i[:-1], i[:-1]].mean(-1)  # row i (index i-1 of q), key i-1
    self_ = q[:, :, i[:-1], i[1:]].mean(-1)
    sink = q[:, :, :, 0].mean(-1)
    return dist, ent, prev, self_, sink


def role(dist, prev, self_, sink):
    if prev >= 0.5:
        return "previous-token"
    if sink >= 0.5:
        return "first-token/sink"
    if self_ >= 0.5:
        return "self"
    if dist <= 3.0:
        return "local"
    return "broad"


def section(stdout, title):
    """The lines of one view: from the line starting with `title` to the next blank line pair."""
    lines = stdout.split("\n")
    start = next(k for k, l in enumerate(lines) if l.startswith(title))
    end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("attention ")), len(lines))
    return lines[start:end]


@pytest.mark.parametrize("variant", ["llama_gqa", "mistral_window", "gpt2_sinusoidal"])
def test_stats(build, variant):
    need_run()
    out = run_attention(build(variant)["f32"])
    att = out["att"]
    L, H, T, _ = att.shape
    lines = section(out["stdout"], "attention atlas:")
    assert lines[0] == f"attention atlas: {L} layers x {H} heads, {T} positions (averages over queries 1..{T - 1})"
    assert lines[1].split() == ["layer", "head", "distance", "entropy", "prev", "self", "sink", "role"]
    rows = [l for l in lines[2:] if l.strip()]
    assert len(rows) == L * H
    dist, ent, prev, self_, sink = atlas(att)
    for k, line in enumerate(rows):
        f = line.split()
        l, h = int(f[0]), int(f[1])
        assert (l, h) == divmod(k, H)
        got = [float(x) for x in f[2:7]]
        want = [dist[l, h], ent[l, h], prev[l, h], self_[l, h], sink[l, h]]
        np.testing.assert_allclose(got, want, atol=6e-4, err_msg=line)
        assert f[7] == role(dist[l, h], prev[l, h], self_[l, h], sink[l, h]), line
    print(f"{variant}: atlas\n" + "\n".join(lines))


def test_roles():
    """The role rules on made-up maps: each pattern gets its label."""
    T = 20
    maps = {"previous-token": np.eye(T, k=-1), "self": np.eye(T), "first-token/sink": np.zeros((T, T)),
            "local": np.zeros((T, T)), "broad": np.tril(np.ones((T, T)))}
    maps["previous-token"][0, 0] = 1
    maps["first-token/sink"][:, 0] = 1
    for r in range(T):  # two and three keys back: distance 2.4, nothing on prev, self or sink
        maps["local"][r, max(r - 2, 0)] += 0.6
        maps["local"][r, max(r - 3, 0)] += 0.4
    maps["broad"] /= maps["broad"].sum(-1, keepdims=True)
    for name, m in maps.items():
        a = m[None, None]
        assert np.allclose(a.sum(-1), 1)
        d, _, p, s, k = (x[0, 0] for x in atlas(a))
        assert role(d, p, s, k) == name, (name, d, p, s, k)


# ----------------------------------------------------------------------------------------------
# The terminal view

RAMP = ".:-=+*#%@"


@pytest.mark.parametrize("variant", ["llama_gqa", "qwen2_window"])
def test_show_plain(build, variant):
    """Without a terminal: one character per visible cell from RAMP, blanks before a window, nothing
    after the diagonal; then each query's top three keys, matching the dump."""
    need_run()
    files = build(variant)
    out = run_attention(files["f32"])
    att = out["att"][SHOW]
    T = att.shape[0]
    W = window_of(files["hf"])
    lines = section(out["stdout"], "attention layer %d head %d:" % SHOW)
    assert "\x1b" not in "\n".join(lines), "no escape sequences when stdout is not a terminal"
    assert lines[0].startswith(f"attention layer {SHOW[0]} head {SHOW[1]}: {T} positions")
    iw = len(str(T - 1))
    grid = lines[1 + 6:1 + 6 + T]  # after the title and six rows of vertical key labels
    heading = lines.index("top keys per query: position token <- key token weight (three largest)")
    assert lines[1 + 6 + T:heading] == [""]
    top = [l for l in lines[heading + 1:] if l.strip()]
    assert len(top) == T
    prefix = iw + 1 + 10 + 1  # position, space, 10-column label, space
    for i, line in enumerate(grid):
        assert int(line[:iw]) == i
        cells = line[prefix:]
        lo = i - W + 1 if W and i >= W else 0
        assert len(cells) == i + 1, (i, line)
        assert cells[:lo] == " " * lo
        for j in range(lo, i + 1):
            assert cells[j] == RAMP[min(8, int(att[i, j] * 9))], (i, j, att[i, j], line)

    for i, line in enumerate(top):
        head, tail = line.split(" <-")
        assert int(head.split()[0]) == i
        f = tail.split()
        assert len(f) % 3 == 0
        keys, weights = [int(x) for x in f[0::3]], [float(x) for x in f[2::3]]
        visible = min(i + 1, W) if W else i + 1
        assert len(keys) == min(3, visible)
        expected = sorted(range(i + 1), key=lambda j: (-att[i, j], j))[:3]
        assert keys == expected, line  # ties go to the earlier key
        np.testing.assert_allclose(weights, att[i, expected], atol=6e-4)


def test_show_tty(build):
    """On a terminal the cells are 256-colour backgrounds (and NO_COLOR turns them off)."""
    need_run()
    model = build("llama_gqa")["f32"]

    def on_pty(env):
        master, slave = pty.openpty()
        p = subprocess.Popen([str(RUN), str(model), "-i", PROMPT, "-n", "2",
                              "-t", "0", "--attn-show", "0.1"], stdout=slave, stderr=subprocess.DEVNULL,
                             env=env)
        os.close(slave)
        data = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        p.wait(timeout=60)
        os.close(master)
        assert p.returncode == 0
        return data.decode(errors="replace")

    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    assert "\x1b[48;5;" in on_pty(env)
    assert "\x1b[" not in on_pty(dict(env, NO_COLOR="1"))


# ----------------------------------------------------------------------------------------------
# The page, in a real browser

def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium found (Debian: apt-get install chromium); the page is not rendered")


def browse(page, *args):
    """Runs headless Chromium on a local file, offline: a fresh profile, no background services,
    every host name unresolvable. Returns the completed process (stdout = what --dump-dom gave)."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", *args, page.resolve().as_uri()]
        return subprocess.run(cmd, capture_output=True, timeout=180, text=True)


def png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG, unfiltered by hand."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def check_page(html, L, H, T):
    """Opens the page: it must report success for L x H maps and T tokens, draw them, and ask for
    nothing from the network."""
    text = html.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    # no address anywhere outside the data blocks (base64 may contain "//" by chance, tokens
    # anything; both are inert)
    outside = re.sub(r'(<script id="(weights|toks|vnorms)" type="[a-z/]+">)[^<]*', r"\1", text)
    for needle in ("http:", "https:", "//", "src=", "url(", "@import", "fetch(", "XMLHttpRequest",
                   "WebSocket", "<link", "<img", "<iframe"):
        assert needle not in outside, f"the page contains {needle!r}"

    r = browse(html, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    status = re.search(r'<pre id="status">([^<]*)</pre>', r.stdout)
    assert status, r.stdout[-2000:]
    assert status.group(1).startswith(f"ok: {L} layers x {H} heads, {T} tokens, {L * H} maps"), status.group(1)
    assert len(re.findall(r'<canvas class="thumb[ "]', r.stdout)) == L * H  # one is "thumb sel"
    assert len(re.findall(r'<span[^>]*title="position \d+"', r.stdout)) == T
    console = [l for l in r.stderr.splitlines() if "CONSOLE" in l or "Content Security Policy" in l]
    assert not console, "\n".join(console)
    ms = int(re.search(r"rendered in (\d+) ms", status.group(1)).group(1))

    with tempfile.TemporaryDirectory() as d:
        shot = Path(d) / "page.png"
        r = browse(html, f"--screenshot={shot}", "--window-size=1280,1000", "--hide-scrollbars")
        assert shot.exists(), r.stderr[-2000:]
        w, h, bpp, rows = png_pixels(shot)
    colours = {row[x:x + 3] for row in rows[::4] for x in range(0, w * bpp, 4 * bpp)}
    assert len(colours) >= 20, f"screenshot looks blank: {len(colours)} colours"
    return ms, status.group(1)


def page_meta(html):
    """The page's "meta" data block, as a dict."""
    import json

    text = html.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script id="meta" type="application/json">([^<]*)</script>', text).group(1))


@pytest.mark.parametrize("variant", ["llama_gqa", "mistral_window"])
def test_html_renders(build, variant):
    need_run()
    files = build(variant)
    out = run_attention(files["f32"])
    L, H, T, _ = out["att"].shape
    # the script masks by the first key each query sees, which the C side writes into the page
    first = page_meta(out["html"])["first_visible"]
    assert first == [[int(np.argmax(row)) for row in visible_mask(T, window_of(files["hf"]))]] * L
    ms, status = check_page(out["html"], L, H, T)
    print(f"{variant}: page {out['html'].stat().st_size} bytes, {status}")


def test_html_escapes_tokens(build, tmp_path):
    """Text that looks like markup stays text: the page still renders, with one span per token and
    the characters shown literally."""
    need_run()
    model = build("gpt2")["f32"]
    prompt = '</script><img src=x onerror=alert(1)> & "q" \'a\'\n\tend \\u003c'
    page = tmp_path / "escape.html"
    npy = tmp_path / "escape.npy"
    run(model, "-i", prompt, "-n", "3", "-t", "0", "--attn-html", page, "--dump-attn", npy)
    L, H, T, _ = np.load(npy).shape
    check_page(page, L, H, T)
    r = browse(page, "--dump-dom")
    spans = re.findall(r'<span[^>]*title="position \d+"[^>]*>([^<]*)</span>', r.stdout)
    shown = "".join(spans).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&quot;", '"')
    assert "</script><img·src=x·onerror=alert(1)>·&·\"q\"·'a'↵→end·\\u003c" in shown, shown
    assert "<img" not in r.stdout.replace("&lt;img", "")
