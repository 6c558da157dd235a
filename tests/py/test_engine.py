"""End-to-end tests: HF dir -> export.py -> ./run, compared with the PyTorch reference.

    cd /work/main && make && /usr/bin/python3 -m pytest -q -s tests/py/test_engine.py

For every variant of tests/gen/make_models.py (random tiny models covering the conventions we
support) the model is exported to F32 and F16 GGUF files and run greedily with --dump-logits.
The engine's logits are compared with reference.py at every position of
prompt + generated tokens, so prompt processing (batched), the KV cache and every generated step
are all checked.

Tolerance: max|ours - ref| <= 1e-4 * max(1, max|ref|) per position, for F32 files against the
float64 reference and for F16 files against the float64 reference whose 2-D weights were rounded
to float16 (the engine must compute exactly what the file says; the error due to F16 itself is
printed, not asserted). Measured errors go to stdout (-s) and tests/.cache/errors.txt; the
models and GGUF files are in pytest's temporary directory (/tmp/pytest-of-$USER/pytest-N/models0).

Tests needing ./run are skipped with a message when the binary is missing (build it with make);
the export round-trip and refusal tests need only Python.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS / "gen"))

import make_models  # noqa: E402
from gguf_read import read_gguf, without_key  # noqa: E402
from reference import Reference, read_safetensors  # noqa: E402

from conftest import ERRORS, export, need_run, run  # noqa: E402  (shared with test_attention.py)

PROMPT = "In the beginning God created the heaven and the earth."  # ~20 tokens in both tokenizers
N_GEN = 64
TOL = 1e-4          # relative to max(1, max|ref|), per position
KV_TOL = 1e-5       # -b 1 vs default batch, relative
Q8_DECODE_TOL = 3e-2  # Q8_0 files (activations quantized too; see test_logits)

VARIANTS = make_models.VARIANTS


def record(line):
    print(line)
    with open(ERRORS, "a") as f:
        f.write(line + "\n")


# ----------------------------------------------------------------------------------------------
# Fixtures: workdir and build are in conftest.py, shared with test_attention.py.

_runs = {}


def run_greedy(model, batch=None):
    """./run MODEL -i PROMPT -n 64 -t 0 --dump-logits; returns (stdout bytes, logits [T, V])."""
    key = (str(model), batch)
    if key not in _runs:
        out = Path(str(model) + (f".b{batch}" if batch else "") + ".logits.npy")
        args = ["-i", PROMPT, "-n", str(N_GEN), "-t", "0", "--dump-logits", str(out)]
        if batch:
            args += ["-b", str(batch)]
        r = run(model, *args)
        _runs[key] = (r.stdout, np.load(out))
    return _runs[key]


def prompt_ids(model):
    r = run(model, "--tokenize", "-i", PROMPT)
    return [int(t) for t in r.stdout.split()]


def generated_ids(logits, P):
    """Greedy ids the engine must have chosen: generated token k = argmax(logits[P-1+k]). The test
    models never generate EOS (make_models zeroes its output row), so all N_GEN steps are run and
    the last generated token is never fed: T = P + N_GEN - 1."""
    T = logits.shape[0]
    assert T == P + N_GEN - 1 and T >= 64, f"{T} logit rows, expected P + {N_GEN - 1} = {P + N_GEN - 1}"
    return [int(np.argmax(logits[P - 1 + k])) for k in range(N_GEN)]


def max_rel_err(ours, ref):
    """Per-position max|ours - ref| / max(1, max|ref|): returns (worst value, its position)."""
    err = np.abs(ours - ref).max(axis=1) / np.maximum(1.0, np.abs(ref).max(axis=1))
    return float(err.max()), int(err.argmax())


# ----------------------------------------------------------------------------------------------
# Export round trip (no ./run needed)

def unpermute(w, n_head):
    """Inverse of export.py's permute_for_interleaved_rope: rows (2i, 2i+1) of each head go back
    to (i, i + head_dim/2), HF's rotate-half order."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_roundtrip(build, variant):
    files = build(variant)
    cfg = json.loads((files["hf"] / "config.json").read_text())
    ref = Reference(files["hf"], dtype=torch.float32)  # its own loader, prefixes stripped
    w = {k: v.numpy() for k, v in ref.w.items()}
    g = read_gguf(files["f32"])
    m = g.metadata
    assert g.version == 3
    # 64: a cache line, so aligned F32 rows never straddle two (the reader checks every offset)
    assert m["general.alignment"] == 64 and m["general.file_type"] == 0
    assert (g.data_start % 64 == 0 and
            all(off % 64 == 0 for off in g.tensor_offsets.values())), "tensor data not 64-aligned"
    arch = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
            "gemma3_text": "gemma3", "phi3": "phi3", "gpt2": "gpt2"}[cfg["model_type"]]
    assert m["general.architecture"] == arch
    V = cfg["vocab_size"]
    assert g.tensors["token_embd.weight"].shape[0] == V
    assert len(m["tokenizer.ggml.tokens"]) == V and len(m["tokenizer.ggml.token_type"]) == V
    for key in ("context_length", "embedding_length", "block_count", "feed_forward_length",
                "attention.head_count"):
        assert g.metadata_types[f"{arch}.{key}"] == "u32"

    if arch == "gpt2":
        D = cfg["n_embd"]
        assert m["gpt2.embedding_length"] == D and m["gpt2.block_count"] == cfg["n_layer"]
        assert m["gpt2.context_length"] == cfg["n_positions"]
        assert m["tokenizer.ggml.model"] == "gpt2" and m["tokenizer.ggml.pre"] == "gpt-2"
        assert len(m["tokenizer.ggml.merges"]) > 200 and m["tokenizer.ggml.add_bos_token"] is False
        eot = m["tokenizer.ggml.tokens"].index("<|endoftext|>")
        assert m["tokenizer.ggml.bos_token_id"] == m["tokenizer.ggml.eos_token_id"] == eot
        assert m["tokenizer.ggml.token_type"][eot] == 3
        # Conv1D (in, out) -> (out, in): all four in every layer. attn_output is square, so its
        # shape cannot tell whether it was transposed; only its values can.
        for i in range(cfg["n_layer"]):
            for hf_name, name in [("attn.c_attn", "attn_qkv"), ("attn.c_proj", "attn_output"),
                                  ("mlp.c_fc", "ffn_up"), ("mlp.c_proj", "ffn_down")]:
                np.testing.assert_array_equal(g.tensors[f"blk.{i}.{name}.weight"],
                                              w[f"h.{i}.{hf_name}.weight"].T, err_msg=f"blk.{i}.{name}")
                np.testing.assert_array_equal(g.tensors[f"blk.{i}.{name}.bias"], w[f"h.{i}.{hf_name}.bias"])
        sinus = cfg.get("position_embedding_type") == "sinusoidal"
        assert ("position_embd.weight" in g.tensors) == (not sinus)
        assert (m.get("tinygpt.position_encoding") == "sinusoidal") == sinus
        assert (m.get("tinygpt.ffn_activation") == "gelu_erf") == (cfg["activation_function"] == "gelu")
        tied = False  # output.weight always: a copy of the embeddings when tied
        n_expected = 1 + (not sinus) + 2 + 1 + 12 * cfg["n_layer"]
    else:
        D, nh = cfg["hidden_size"], cfg["num_attention_heads"]
        nkv = cfg.get("num_key_value_heads", nh)
        hd = cfg.get("head_dim") or D // nh
        assert m[f"{arch}.attention.head_count_kv"] == nkv
        assert m[f"{arch}.rope.dimension_count"] == int(hd * cfg.get("partial_rotary_factor", 1.0))
        assert abs(m[f"{arch}.rope.freq_base"] - cfg["rope_theta"]) <= 1e-6 * cfg["rope_theta"]
        assert abs(m[f"{arch}.attention.layer_norm_rms_epsilon"] - cfg["rms_norm_eps"]) < 1e-12
        # llama.cpp's converter writes key_length for these families whatever its value
        assert (f"{arch}.attention.key_length" in m) == (hd * nh != D or arch in ("qwen3", "gemma3"))
        window = cfg.get("sliding_window") if cfg["model_type"] in ("mistral", "gemma3_text", "phi3") or \
            cfg.get("use_sliding_window") and cfg["max_window_layers"] == 0 else None
        assert m.get(f"{arch}.attention.sliding_window") == window
        rs = cfg.get("rope_scaling") or {}
        kind = rs.get("rope_type", rs.get("type"))
        assert m.get(f"{arch}.rope.scaling.type") == ("linear" if kind == "linear" else None)
        assert m.get(f"{arch}.rope.scaling.factor") == (rs["factor"] if kind == "linear" else None)
        assert ("rope_freqs.weight" in g.tensors) == (kind == "llama3")
        if kind == "llama3":  # divisors of the plain frequencies, from the reference's own rule
            plain = ref._rope_inv_freq(hd, cfg["rope_theta"], None).numpy()
            scaled = ref._rope_inv_freq(hd, cfg["rope_theta"], rs).numpy()
            np.testing.assert_allclose(g.tensors["rope_freqs.weight"], plain / scaled, rtol=1e-6)
            assert len(set(np.round(plain / scaled, 4))) >= 3  # kept, smoothed and divided
        if arch == "gemma3":
            qpas = cfg["query_pre_attn_scalar"]
            assert m.get("gemma3.attention.scale") == (None if qpas == hd else
                                                       pytest.approx(qpas ** -0.5, rel=1e-6))
            local = cfg["rope_local_base_freq"]
            assert m.get("gemma3.rope.freq_base_swa") == (None if local == 10000 else local)
        assert m["tokenizer.ggml.model"] == "llama" and m["tokenizer.ggml.pre"] == "default"
        assert m["tokenizer.ggml.add_space_prefix"] is True
        assert m["tokenizer.ggml.add_bos_token"] == (variant != "llama_bias")
        assert m["tokenizer.ggml.bos_token_id"] == 1
        assert m["tokenizer.ggml.eos_token_id"] == cfg["eos_token_id"]  # phi3: <|endoftext|>, 512
        assert m["tokenizer.ggml.unknown_token_id"] == 0
        types = m["tokenizer.ggml.token_type"]
        assert types[:3] == [2, 3, 3] and types[3:259] == [6] * 256
        assert m["tokenizer.ggml.tokens"][3 + 0x41] == "<0x41>"
        assert len(m["tokenizer.ggml.scores"]) == V
        if arch == "phi3":  # fused q|k|v and gate|up, as in the checkpoint
            for i in (0, 1):
                np.testing.assert_array_equal(g.tensors[f"blk.{i}.attn_qkv.weight"],
                                              w[f"layers.{i}.self_attn.qkv_proj.weight"])
                np.testing.assert_array_equal(g.tensors[f"blk.{i}.ffn_up.weight"],
                                              w[f"layers.{i}.mlp.gate_up_proj.weight"])
            longrope = kind == "longrope"
            assert ("rope_factors_long.weight" in g.tensors) == longrope
            if longrope:
                np.testing.assert_array_equal(g.tensors["rope_factors_long.weight"], np.float32(rs["long_factor"]))
                np.testing.assert_array_equal(g.tensors["rope_factors_short.weight"], np.float32(rs["short_factor"]))
                growth = cfg["max_position_embeddings"] / cfg["original_max_position_embeddings"]
                assert m["phi3.rope.scaling.attn_factor"] == pytest.approx(
                    np.sqrt(1 + np.log(growth) / np.log(cfg["original_max_position_embeddings"])), rel=1e-6)
            assert m["phi3.rope.scaling.original_context_length"] == cfg["original_max_position_embeddings"]
        for i in (0, 1) if arch != "phi3" else ():
            p = f"layers.{i}.self_attn."
            q, k = g.tensors[f"blk.{i}.attn_q.weight"], g.tensors[f"blk.{i}.attn_k.weight"]
            if arch == "llama":  # interleaved RoPE: export permuted q and k (and their biases)
                np.testing.assert_array_equal(unpermute(q, nh), w[p + "q_proj.weight"])
                np.testing.assert_array_equal(unpermute(k, nkv), w[p + "k_proj.weight"])
                assert not np.array_equal(q, w[p + "q_proj.weight"])
                if p + "q_proj.bias" in w:
                    np.testing.assert_array_equal(unpermute(g.tensors[f"blk.{i}.attn_q.bias"], nh),
                                                  w[p + "q_proj.bias"])
                    np.testing.assert_array_equal(unpermute(g.tensors[f"blk.{i}.attn_k.bias"], nkv),
                                                  w[p + "k_proj.bias"])
            else:  # qwen2, qwen3, gemma3: NeoX RoPE, HF order kept
                np.testing.assert_array_equal(q, w[p + "q_proj.weight"])
                if arch == "qwen2":
                    np.testing.assert_array_equal(g.tensors[f"blk.{i}.attn_k.bias"], w[p + "k_proj.bias"])
            # Gemma's norms compute x * (1 + w): llama.cpp's files store 1 + w
            shift = 1.0 if arch == "gemma3" else 0.0
            if arch in ("qwen3", "gemma3"):
                np.testing.assert_array_equal(g.tensors[f"blk.{i}.attn_q_norm.weight"], w[p + "q_norm.weight"] + shift)
                np.testing.assert_array_equal(g.tensors[f"blk.{i}.attn_k_norm.weight"], w[p + "k_norm.weight"] + shift)
            ffn_norm = "pre_feedforward_layernorm" if arch == "gemma3" else "post_attention_layernorm"
            np.testing.assert_array_equal(g.tensors[f"blk.{i}.ffn_norm.weight"],
                                          w[f"layers.{i}.{ffn_norm}.weight"] + shift)
            if arch == "gemma3":
                for hf_name, name in [("post_attention_layernorm", "post_attention_norm"),
                                      ("post_feedforward_layernorm", "post_ffw_norm")]:
                    np.testing.assert_array_equal(g.tensors[f"blk.{i}.{name}.weight"],
                                                  w[f"layers.{i}.{hf_name}.weight"] + shift)
            np.testing.assert_array_equal(g.tensors[f"blk.{i}.attn_v.weight"], w[p + "v_proj.weight"])
            np.testing.assert_array_equal(g.tensors[f"blk.{i}.ffn_gate.weight"],
                                          w[f"layers.{i}.mlp.gate_proj.weight"])
        tied = cfg["tie_word_embeddings"]
        n_bias = (4 if cfg.get("attention_bias") else 3 if arch == "qwen2" else 0) + \
            (3 if cfg.get("mlp_bias") else 0)
        per_layer = 9 + n_bias + 2 * (arch in ("qwen3", "gemma3")) + 2 * (arch == "gemma3") - 3 * (arch == "phi3")
        n_expected = 2 + (not tied) + per_layer * cfg["num_hidden_layers"] + (kind == "llama3") + \
            2 * (kind == "longrope")
    assert ("output.weight" in g.tensors) == (not tied)
    assert len(g.tensors) == n_expected, sorted(g.tensors)
    emb_name = "wte.weight" if arch == "gpt2" else "embed_tokens.weight"
    np.testing.assert_array_equal(g.tensors["token_embd.weight"], w[emb_name])
    n_tok = len(ref.tokenizer.vocab) if arch == "gpt2" else ref.tokenizer.sp.vocab_size()
    if arch == "phi3":  # Phi-3's added tokens follow the pieces, as control tokens
        added = make_models.phi3_added_tokens(n_tok)
        assert {i: m["tokenizer.ggml.tokens"][i] for i in added} == added
        assert [m["tokenizer.ggml.token_type"][i] for i in added] == [3] * len(added)
        assert m["tokenizer.ggml.padding_token_id"] == cfg["pad_token_id"] == n_tok
        n_tok += len(added)
    for i in range(n_tok, V):  # embedding larger than the tokenizer: padded
        assert m["tokenizer.ggml.tokens"][i] == f"[PAD{i}]" and m["tokenizer.ggml.token_type"][i] == 5

    # F16 file: 2-D tensors F16 (exactly the rounded F32 ones), 1-D tensors F32.
    g16 = read_gguf(files["f16"])
    assert g16.metadata["general.file_type"] == 1
    assert g16.tensor_order == g.tensor_order
    for name, a in g.tensors.items():
        b = g16.tensors[name]
        assert g16.tensor_types[name] == (1 if a.ndim == 2 else 0), name
        np.testing.assert_array_equal(b, a.astype(np.float16) if a.ndim == 2 else a)
    record(f"{variant:16s} export round trip OK ({len(g.tensors)} tensors)")


LLAMA_FAMILY = [v for v in VARIANTS if v in make_models.LLAMA_VARIANTS]
# The scores test below states plain RoPE on the projections: the families with RoPE scaling or
# q/k norms are checked end to end against the reference (test_logits) instead.
PLAIN_ROPE = [v for v in LLAMA_FAMILY if make_models.LLAMA_VARIANTS[v]["cfg"].get("model_type", "llama")
              in ("llama", "mistral", "qwen2") and not make_models.LLAMA_VARIANTS[v]["cfg"].get("rope_scaling")]


def rope(x, pos, theta, pairs):
    """Rotates the last axis (a head, d values) of x [T, heads, d] at positions pos [T]. pairs
    "interleaved": (x[2i], x[2i+1]) turn by pos * theta^(-2i/d) (the engine's llama convention);
    "half": (x[i], x[i + d/2]) by the same angle (HF's rotate-half, the engine's qwen2 one)."""
    d = x.shape[-1]
    angle = pos[:, None, None] * theta ** (-np.arange(0, d, 2) / d)[None, None, :]
    cos, sin = np.cos(angle), np.sin(angle)
    a, b = (x[..., 0::2], x[..., 1::2]) if pairs == "interleaved" else (x[..., :d // 2], x[..., d // 2:])
    ra, rb = a * cos - b * sin, a * sin + b * cos
    out = np.empty_like(x)
    if pairs == "interleaved":
        out[..., 0::2], out[..., 1::2] = ra, rb
    else:
        out[..., :d // 2], out[..., d // 2:] = ra, rb
    return out


@pytest.mark.parametrize("variant", PLAIN_ROPE)
def test_rope_convention(build, variant):
    """The attention scores q.k of the GGUF's q/k weights under the engine's RoPE convention equal
    those of HF's weights under rotate-half, in every layer and head, at positions far apart. This
    states what export's q/k row permutation is for, without its code or its inverse: q permuted
    and k not (or the reverse) changes the scores."""
    files = build(variant)
    cfg = json.loads((files["hf"] / "config.json").read_text())
    w = {k: v.numpy() for k, v in Reference(files["hf"]).w.items()}  # float64, its own loader
    g = read_gguf(files["f32"])
    arch = g.metadata["general.architecture"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    theta_hf, theta_gguf = cfg["rope_theta"], g.metadata[f"{arch}.rope.freq_base"]
    pairs = {"llama": "interleaved", "qwen2": "half"}[arch]
    rng = np.random.default_rng(0)
    pos = np.array([0, 1, 5, 17, 63, 64, 100])
    x = rng.standard_normal((len(pos), cfg["hidden_size"]))

    def scores(q, k):  # [T, nh, hd], [T, nkv, hd] -> [nh, T, T]; query head h reads KV head h // g
        return np.einsum("ihd,jhd->hij", q, np.repeat(k, nh // nkv, axis=1))

    def proj(tensors, name, n):  # x @ W.T + b as [T, n heads, hd]
        y = x @ tensors[name + ".weight"].astype(np.float64).T
        if name + ".bias" in tensors:
            y = y + tensors[name + ".bias"]
        return y.reshape(len(pos), n, hd)

    for i in range(cfg["num_hidden_layers"]):
        hf, gg = f"layers.{i}.self_attn.", f"blk.{i}."
        want = scores(rope(proj(w, hf + "q_proj", nh), pos, theta_hf, "half"),
                      rope(proj(w, hf + "k_proj", nkv), pos, theta_hf, "half"))
        got = scores(rope(proj(g.tensors, gg + "attn_q", nh), pos, theta_gguf, pairs),
                      rope(proj(g.tensors, gg + "attn_k", nkv), pos, theta_gguf, pairs))
        err = np.abs(got - want).max() / np.abs(want).max()
        # float64 throughout, and the test models' thetas (1e4, 5e5, 1e6) are exact in the f32 GGUF
        assert err < 1e-9, f"layer {i}: q.k scores of the GGUF ({pairs} RoPE) differ from HF's " \
                           f"by {err:.2e} of their scale"


# ----------------------------------------------------------------------------------------------
# Engine vs reference

@pytest.mark.parametrize("variant", VARIANTS)
def test_tokenize(build, variant):
    """./run --tokenize agrees with the reference tokenizer (sentencepiece / GPT-2 BPE in Python)."""
    need_run()
    files = build(variant)
    ours = prompt_ids(files["f32"])
    expected = Reference(files["hf"]).encode(PROMPT)
    assert ours == expected
    assert 15 <= len(ours) <= 30


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", ["f32", "f16", "q8_0"])
def test_logits(build, variant, dtype):
    need_run()
    files = build(variant)
    model = files[dtype]
    P = len(prompt_ids(model))
    stdout, ours = run_greedy(model)
    assert ours.dtype == np.float32 and ours.ndim == 2
    gen = generated_ids(ours, P)
    T = ours.shape[0]
    ids = prompt_ids(model) + gen[:-1]  # the fed tokens: prompt + all generated but the last
    assert len(ids) == T

    ref = Reference(files["hf"], weights=dtype)
    # Q8_0: every matrix product quantizes its activations to 8 bits too, the prompt's (integer
    # tiles on AVX-512, float tiles elsewhere) as the decoding kernels do. The reference mirrors it.
    if dtype == "q8_0":
        ref.q8_decode_from = 0
    ref_logits = ref.logits(ids)
    assert ref_logits.shape == ours.shape, (ref_logits.shape, ours.shape)
    tol = np.full(T, TOL)
    if dtype == "q8_0":
        # An activation within float rounding of a .5 boundary can quantize one step apart in
        # the engine (float32) and the reference (float64); in these 64-wide models one such
        # step moves the logits by up to ~1e-2 and later positions see it through the cache.
        tol[:] = Q8_DECODE_TOL
    errs = np.abs(ours - ref_logits).max(axis=1) / np.maximum(1.0, np.abs(ref_logits).max(axis=1))
    line = f"{variant:16s} {dtype}: max rel err {errs[:P].max():.2e} over the prompt"
    line += f", {errs[P:].max():.2e} over generated positions ({T} in all, P={P})"
    if dtype != "f32":
        err32, _ = max_rel_err(ours, Reference(files["hf"]).logits(ids))
        line += f"; vs pure-F32 reference {err32:.2e} (weight rounding, not asserted)"
    record(line)
    assert np.all(errs <= tol), line

    # Greedy: our choice is a maximum of the reference's logits too (up to the tolerance; exact
    # ties may go either way).
    for k, tok in enumerate(gen):
        row = ref_logits[P - 1 + k]
        scale = max(1.0, np.abs(row).max())
        assert row.max() - row[tok] <= tol[P - 1 + k] * scale, \
            f"step {k}: chose {tok}, reference max at {row.argmax()}"

    # Text: stdout is exactly the generated tokens decoded (skipped for padding ids, which have
    # no defined text).
    n_tok = len(ref.tokenizer.vocab) if variant.startswith("gpt2") else ref.tokenizer.sp.vocab_size()
    if any(t >= n_tok for t in gen):
        print(f"{variant}: generated a padding id, text check skipped")
        return
    # The engine writes valid UTF-8: byte tokens that do not form a valid sequence become U+FFFD
    # (Python's errors="replace" policy), and a final newline ends the output.
    raw = ref.tokenizer.decode_bytes(gen)
    expected = raw.decode("utf-8", errors="replace").encode()
    assert stdout in (expected, expected + b"\n"), \
        f"stdout {stdout[:200]!r}\nexpected {expected[:200]!r}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_kv_cache_batch1(build, variant):
    """Prompt fed one token per forward pass (-b 1) gives the same logits as the default batch."""
    need_run()
    model = build(variant)["f32"]
    _, a = run_greedy(model)
    _, b = run_greedy(model, batch=1)
    assert a.shape == b.shape
    err, pos = max_rel_err(b, a)
    record(f"{variant:16s} -b 1 vs default batch: max rel diff {err:.2e} at position {pos}")
    assert err <= KV_TOL


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_copied_weights(build, variant, dtype):
    """F32 and F16 matrices are copied at load into 2 MB pages (model_repack) and read there: the
    logits with and without --no-repack (which reads the file in place) are the same bits for
    F16, whose dot products sum alike at any address, and within float rounding for F32, whose
    dot products sum the few elements before the first 64-byte boundary of a row apart (the
    copy's rows start on a cache line, the file's at its 32-byte alignment). Measured
    2026-11-28: identical for both on every variant (their rows are 256 bytes: no partial head)."""
    need_run()
    model = build(variant)[dtype]
    args = ["-i", PROMPT, "-n", "16", "-t", "0", "--dump-logits"]
    copied, infile = Path(str(model) + ".copied.npy"), Path(str(model) + ".infile.npy")
    r = run(model, *args, str(copied))
    assert b"MB copied into 2 MB pages" in r.stderr, r.stderr
    r = run(model, *args, str(infile), "--no-repack")
    assert b"copied" not in r.stderr, r.stderr
    a, b = np.load(copied), np.load(infile)
    assert a.shape == b.shape
    err, pos = max_rel_err(a, b)
    record(f"{variant:16s} {dtype} copied vs --no-repack: max rel diff {err:.2e} at {pos}")
    if dtype == "f16":
        assert np.array_equal(a, b)
    else:
        assert err <= 1e-6


# ----------------------------------------------------------------------------------------------
# Refusals: each one exits 1 with a single line naming the problem, and writes no file.

def _edit_config(d, **changes):
    cfg = json.loads((d / "config.json").read_text())
    for k, v in changes.items():
        if v is _DELETE:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (d / "config.json").write_text(json.dumps(cfg))


_DELETE = object()


def _edit_weights(d, fn):
    sd = {k: v.numpy() for k, v in read_safetensors(d / "model.safetensors").items()}
    make_models.write_safetensors(d / "model.safetensors", fn(sd))


def _train_spm(d, **kw):
    import sentencepiece as spm

    text = d / "text.txt"
    text.write_text("In the beginning God created the heaven and the earth.\n" * 50 +
                    "And the earth was without form, and void; and darkness was upon the deep.\n" * 50)
    args = dict(input=str(text), model_prefix=str(d / "tmp_spm"), vocab_size=30, minloglevel=2,
                character_coverage=1.0)
    args.update(kw)
    spm.SentencePieceTrainer.train(**args)
    shutil.move(d / "tmp_spm.model", d / "tokenizer.model")


def _split_pretokenizer(d):
    tj = json.loads((d / "tokenizer.json").read_text())
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    (d / "tokenizer.json").write_text(json.dumps(tj))


def _drop_tensor(sd):
    del sd["model.layers.1.mlp.up_proj.weight"]
    return sd


def _shrink_vocab(d):
    _edit_config(d, vocab_size=500)
    _edit_weights(d, lambda sd: {k: (v[:500] if k in ("model.embed_tokens.weight", "lm_head.weight") else v)
                                 for k, v in sd.items()})


REFUSALS = {
    # name: (variant, mutation of the HF dir, substring expected in the message)
    "model_type": ("llama_gqa", lambda d: _edit_config(d, model_type="bert"), "model_type"),
    "rope_scaling": ("llama_gqa", lambda d: _edit_config(d, rope_scaling={"type": "yarn", "factor": 2.0}),
                     "rope_scaling"),
    "llama3_scaling_qwen": ("qwen3", lambda d: _edit_config(d, rope_scaling=dict(
        make_models.LLAMA_VARIANTS["llama3_scaled"]["cfg"]["rope_scaling"])), "llama3 for llama"),
    "llama3_scaling_factors": ("llama3_scaled", lambda d: _edit_config(d, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
        "original_max_position_embeddings": 64}), "must exceed low_freq_factor"),
    "gemma3_pattern": ("gemma3", lambda d: _edit_config(d, sliding_window_pattern=4), "5 sliding layers"),
    "gemma3_softcap": ("gemma3", lambda d: _edit_config(d, final_logit_softcapping=30.0),
                       "final_logit_softcapping"),
    "gemma3_activation": ("gemma3", lambda d: _edit_config(d, hidden_activation="silu"), "hidden_activation"),
    "hidden_act": ("llama_gqa", lambda d: _edit_config(d, hidden_act="gelu"), "hidden_act"),
    "inverse_layer_idx": ("gpt2", lambda d: _edit_config(d, scale_attn_by_inverse_layer_idx=True),
                          "scale_attn_by_inverse_layer_idx"),
    "scale_attn_weights": ("gpt2", lambda d: _edit_config(d, scale_attn_weights=False), "scale_attn_weights"),
    "gelu_fast": ("gpt2", lambda d: _edit_config(d, activation_function="gelu_fast"), "activation_function"),
    "missing_weight": ("llama_gqa", lambda d: _edit_weights(d, _drop_tensor), "missing weight"),
    "shape_mismatch": ("llama_gqa", lambda d: _edit_config(d, intermediate_size=100), "shape"),
    "heads_divide_dim": ("llama_gqa", lambda d: _edit_config(d, num_attention_heads=6, num_key_value_heads=2),
                         "does not divide hidden_size"),
    "kv_divide_heads": ("llama_gqa", lambda d: _edit_config(d, num_key_value_heads=3),
                        "num_key_value_heads 3 does not divide"),
    "no_tokenizer": ("llama_gqa", lambda d: (d / "tokenizer.model").unlink(), "no tokenizer"),
    "tokenizer_larger_than_embedding": ("llama_gqa", _shrink_vocab, "tokenizer has 512 tokens"),
    "spm_unigram": ("llama_gqa", lambda d: _train_spm(d, model_type="unigram",
                                                       normalization_rule_name="identity",
                                                       remove_extra_whitespaces=False), "unigram"),
    "spm_normalizer": ("llama_gqa", lambda d: _train_spm(d, model_type="bpe"), "nmt_nfkc"),
    "spm_remove_whitespace": ("llama_gqa", lambda d: _train_spm(d, model_type="bpe",
                                                                 normalization_rule_name="identity",
                                                                 remove_extra_whitespaces=True),
                              "remove_extra_whitespaces"),
    "split_pretokenizer": ("gpt2_noprefix", _split_pretokenizer, "Split"),
    "qwen2_mixed_window": ("qwen2", lambda d: _edit_config(d, use_sliding_window=True, sliding_window=8,
                                                           max_window_layers=1), "max_window_layers"),
    "no_weights": ("llama_gqa", lambda d: (d / "model.safetensors").unlink(), "no weights"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_export_refuses(tmp_path, name):
    variant, mutate, needle = REFUSALS[name]
    d = make_models.make_model(variant, tmp_path / variant)
    mutate(d)
    out = tmp_path / "out.gguf"
    r = export(d, out)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0], lines[0]
    assert not out.exists() and not Path(str(out) + ".tmp").exists()
    print(f"refused {name}: {lines[0]}")


def test_export_sharded_bin(build, tmp_path):
    """pytorch_model.bin split into two shards with pytorch_model.bin.index.json exports to the
    very same bytes as the single-file original (same directory name, since general.name is it)."""
    files = build("gpt2_noprefix")
    d = tmp_path / "gpt2_noprefix"
    shutil.copytree(files["hf"], d)
    sd = torch.load(d / "pytorch_model.bin", map_location="cpu")
    (d / "pytorch_model.bin").unlink()
    names = list(sd)
    shards = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    weight_map = {}
    for fname, ns in shards.items():
        torch.save({n: sd[n] for n in ns}, d / fname)
        weight_map.update({n: fname for n in ns})
    (d / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    out = tmp_path / "out.gguf"
    r = export(d, out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == files["f32"].read_bytes()


def test_tokenizer_json_equals_vocab_merges(build, tmp_path):
    """The same GPT-2 BPE given as tokenizer.json or as vocab.json + merges.txt exports the same
    tokenizer metadata."""
    a = read_gguf(build("gpt2")["f32"]).metadata
    b = read_gguf(build("gpt2_noprefix")["f32"]).metadata
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token"):
        assert a[key] == b[key], key


def test_export_bf16_safetensors(build, tmp_path):
    """bfloat16 safetensors (how most checkpoints are published) are widened exactly to F32 with
    --dtype f32 (by default they stay BF16: test_bf16.py)."""
    files = build("llama_gqa")
    d = tmp_path / "llama_gqa"
    shutil.copytree(files["hf"], d)
    sd = read_safetensors(d / "model.safetensors")
    header = {}
    blobs = []
    offset = 0
    for name, t in sd.items():  # hand-written bf16 file: make_models only writes f32/f16
        b = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    (d / "model.safetensors").write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))
    out = tmp_path / "out.gguf"
    r = export(d, out, "--dtype", "f32")
    assert r.returncode == 0, r.stderr
    g = read_gguf(out)
    assert g.tensor_types["token_embd.weight"] == 0
    expected = sd["model.embed_tokens.weight"].to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(g.tensors["token_embd.weight"], expected)


# ----------------------------------------------------------------------------------------------
# The context allocated (-c)

def test_context_allocated(build):
    """A 32k-context model (qwen3, as Qwen3-0.6B) allocates 4096 positions unless -c asks for
    another number (at most the model's), and the logits do not depend on it."""
    need_run()
    model = build("qwen3")["f32"]
    assert read_gguf(model).metadata["qwen3.context_length"] == 32768
    kv_per_token = 2 * 2 * 2 * 32 * 4  # (k, v) x layers x kv heads x head_dim x 4 bytes
    for args, ctx in [([], 4096), (["-c", "100"], 100), (["-c", "32768"], 32768)]:
        r = run(model, "-v", "-n", "1", "-t", "0", "-i", "In", *args)
        err = r.stderr.decode()
        assert f"context {ctx} (of 32768)" in err, err
        assert f"at the context length {ctx}\n" in err and kv_per_token == 1024, err
    _, full = run_greedy(model)
    out = Path(str(model) + ".c60.npy")
    r = run(model, "-i", PROMPT, "-n", str(N_GEN), "-t", "0", "-c", "60", "--dump-logits", str(out))
    assert b"[context length 60 reached]" in r.stderr
    small = np.load(out)
    assert small.shape[0] == 60  # every position of the allocated context was fed
    np.testing.assert_array_equal(small, full[:60])


def test_longrope_short_factors(build, tmp_path):
    """Phi-3.5's longrope takes the short factors when the context allocated is at most the
    original one (-c 32 here; the default 4096 takes the long ones, test_logits): the logits of
    all 32 positions against the reference, whose sequence never outgrows the original context."""
    need_run()
    files = build("phi3_longrope")
    out = tmp_path / "short.npy"
    r = run(files["f32"], "-i", PROMPT, "-n", str(N_GEN), "-t", "0", "-c", "32", "--dump-logits", str(out), "-v")
    assert b"longrope (short factors, original context 32" in r.stderr, r.stderr
    ours = np.load(out)
    P = len(prompt_ids(files["f32"]))
    ids = prompt_ids(files["f32"]) + [int(np.argmax(ours[t])) for t in range(P - 1, 31)]
    ref = Reference(files["hf"]).logits(ids)
    assert ours.shape == ref.shape == (32, ref.shape[1])
    err, pos = max_rel_err(ours, ref)
    record(f"phi3_longrope    -c 32 (short factors): max rel err {err:.2e} at position {pos}")
    assert err <= TOL
    _, long_logits = run_greedy(files["f32"])  # long factors: different numbers from position 0 on
    assert np.abs(long_logits[:32] - ours).max() > 1e-2


# ----------------------------------------------------------------------------------------------
# Gemma 3 27B's attention scale in llama.cpp's files

def gemma3_27b_without_scale(build, tmp_path):
    """make_models' gemma3_27b (62 layers, query_pre_attn_scalar = dim / heads = 16, head_dim 32)
    as llama.cpp's converter writes the 27B: without gemma3.attention.scale."""
    files = build("gemma3_27b")
    assert read_gguf(files["f32"]).metadata["gemma3.attention.scale"] == pytest.approx(16 ** -0.5)
    model = tmp_path / "gemma3_27b.no_scale.gguf"
    without_key(files["f32"], "gemma3.attention.scale", model)
    assert "gemma3.attention.scale" not in read_gguf(model).metadata
    return files, model


def test_gemma3_27b_scale_from_layer_count(build, tmp_path):
    """Without the key, the 27B's 62 layers give 1/sqrt(dim / heads) = 1/4, not 1/sqrt(head_dim):
    -v says so, and the logits equal the reference's, which reads query_pre_attn_scalar from
    config.json."""
    need_run()
    files, model = gemma3_27b_without_scale(build, tmp_path)
    err = run(model, "-v", "-n", "1", "-i", "x").stderr.decode()
    assert "attention scale 0.25," in err, err
    P = len(prompt_ids(model))
    _, ours = run_greedy(model)
    ids = prompt_ids(model) + generated_ids(ours, P)[:-1]
    err, pos = max_rel_err(ours, Reference(files["hf"]).logits(ids))
    record(f"gemma3_27b without attention.scale: max rel err {err:.2e} (position {pos})")
    assert err <= TOL
