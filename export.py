#!/usr/bin/python3
"""Convert a Hugging Face model directory, or a llama2.c checkpoint, to a GGUF v3 file that ./run
(and llama.cpp) can load.

    python3 export.py IN_DIR OUT.gguf [--dtype f32|f16|bf16|q8_0|q4_k_m|...] [--vocab-only]
    python3 export.py MODEL.bin OUT.gguf [--tokenizer tokenizer.bin] [--dtype f32|f16|q8_0]

A llama2.c checkpoint is any of its three layouts (legacy, version 1, version 2: see llama2c.h);
version 2's int8 groups are dequantized (q * scale) for f32 and f16, and with --dtype q8_0 and a
group size that is a multiple of 32 kept as they are, each scale rounded to float16, which is
what ./run does with them at load.

Supported: config.json model_type gpt2, llama, mistral, qwen2; weights as model.safetensors,
sharded safetensors with model.safetensors.index.json, pytorch_model.bin or its sharded index
variant; tokenizers as SentencePiece tokenizer.model (BPE), tokenizer.json (GPT-2 byte-level BPE)
or vocab.json + merges.txt (GPT-2 byte-level BPE).

The file layout, metadata keys and tensor names follow the format described in docs/formats.md (llama.cpp's
names) so that the C engine only needs to know one convention per
architecture. Anything the engine cannot run exactly (rope scaling, other activations, other
pre-tokenizers, ...) is refused with a one-line message on stderr and exit status 1, because a
silently wrong conversion is much harder to debug than a refusal.

No dependency beyond numpy (and sentencepiece / torch only when the input needs them):
safetensors and the SentencePiece protobuf are parsed by hand.
"""

import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np

import quants


class ExportError(Exception):
    """A problem with the input that we refuse to convert; main() prints it on one line."""


def refuse(msg):
    raise ExportError(msg)


# ----------------------------------------------------------------------------------------------
# Weight sources: give tensor shapes up front (for the GGUF header) and load tensors one at a
# time (so that a big model is never held twice in memory while we write it).

SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


class SafetensorsFile:
    """One .safetensors file: 8-byte little-endian header length, a JSON header
    {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then raw bytes
    (offsets are relative to the end of the header)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        self.header = header
        self.data_start = 8 + n

    def keys(self):
        return list(self.header)

    def shape(self, name):
        return tuple(self.header[name]["shape"])

    def stored_dtype(self, name):
        return self.header[name]["dtype"]

    def load(self, name):
        info = self.header[name]
        if info["dtype"] not in SAFETENSORS_DTYPES:
            refuse(f"{self.path}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            raw = f.read(end - begin)
        a = np.frombuffer(raw, dtype=SAFETENSORS_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":
            # bfloat16 is the top half of a float32: shift the bits into place.
            a = (a.astype(np.uint32) << 16).view(np.float32)
        return a.reshape(info["shape"]).astype(np.float32)


class TorchBinFile:
    """One pytorch_model*.bin (a pickled state dict). torch.load reads it whole, which is fine for
    the file sizes we handle; we keep only one such shard in memory at a time."""

    def __init__(self, path):
        import torch  # only needed for .bin inputs

        self.path = path
        self._torch = torch
        self.sd = self._load()
        self.shapes = {k: tuple(v.shape) for k, v in self.sd.items() if hasattr(v, "shape")}

    def _load(self):
        try:
            return self._torch.load(self.path, map_location="cpu")
        except Exception as e:  # corrupt file, unpickling error, ...
            refuse(f"{self.path}: cannot torch.load: {e}")

    def keys(self):
        return list(self.shapes)

    def shape(self, name):
        return self.shapes[name]

    def stored_dtype(self, name):
        if self.sd is None:
            self.sd = self._load()
        return {"torch.bfloat16": "BF16", "torch.float16": "F16", "torch.float32": "F32"}.get(
            str(self.sd[name].dtype), str(self.sd[name].dtype))

    def load(self, name):
        if self.sd is None:
            self.sd = self._load()
        return self.sd[name].float().numpy()

    def release(self):
        self.sd = None


class WeightSource:
    """All weight files of a model directory, seen as one name -> tensor mapping."""

    def __init__(self, in_dir):
        self.where = {}  # tensor name -> file object
        self.files = []
        st_index = os.path.join(in_dir, "model.safetensors.index.json")
        bin_index = os.path.join(in_dir, "pytorch_model.bin.index.json")
        if os.path.exists(os.path.join(in_dir, "model.safetensors")):
            self._add(SafetensorsFile(os.path.join(in_dir, "model.safetensors")))
        elif os.path.exists(st_index):
            self._add_index(in_dir, st_index, SafetensorsFile)
        elif os.path.exists(os.path.join(in_dir, "pytorch_model.bin")):
            self._add(TorchBinFile(os.path.join(in_dir, "pytorch_model.bin")))
        elif os.path.exists(bin_index):
            self._add_index(in_dir, bin_index, TorchBinFile)
        else:
            refuse(f"{in_dir}: no weights found (model.safetensors, model.safetensors.index.json, "
                   "pytorch_model.bin or pytorch_model.bin.index.json)")
        self._current_bin = None

    def _add(self, f):
        self.files.append(f)
        for k in f.keys():
            self.where[k] = f

    def _add_index(self, in_dir, index_path, cls):
        with open(index_path) as fh:
            weight_map = json.load(fh)["weight_map"]
        for shard in sorted(set(weight_map.values())):
            path = os.path.join(in_dir, shard)
            if not os.path.exists(path):
                refuse(f"{index_path} names shard {shard}, which does not exist")
            f = cls(path)
            if isinstance(f, TorchBinFile):
                f.release()  # reloaded on demand, one shard at a time
            self._add(f)

    def keys(self):
        return list(self.where)

    def shape(self, name):
        return self.where[name].shape(name)

    def all_bf16(self):
        """Whether every matrix (2-D or more) of the checkpoint is stored as BF16."""
        names = [k for k in self.where if len(self.shape(k)) >= 2]
        return bool(names) and all(self.where[k].stored_dtype(k) == "BF16" for k in names)

    def load(self, name):
        f = self.where[name]
        if isinstance(f, TorchBinFile) and len(self.files) > 1:
            if self._current_bin is not f and self._current_bin is not None:
                self._current_bin.release()
            self._current_bin = f
        return f.load(name)


# ----------------------------------------------------------------------------------------------
# Architectures: config -> metadata, and HF tensor names -> GGUF tensor plan.

def permute_for_interleaved_rope(w, n_head):
    """HF llama rotates (x[i], x[i + head_dim/2]) pairs ("rotate half"); our engine (like
    llama.cpp) rotates adjacent pairs (x[2i], x[2i+1]). Reordering the output rows of q_proj and
    k_proj within each head so that row i and row i + head_dim/2 become rows 2i and 2i+1 makes
    both conventions compute the same attention scores (q.k is invariant under applying the same
    row permutation to q and k). Exactly llama.cpp's convert_hf_to_gguf.py `permute`; works for
    the 1-D biases too."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def strip_prefix(name, prefixes):
    for p in prefixes:
        if name.startswith(p):
            return name[len(p):]
    return name


def require_int(cfg, key, default=None):
    v = cfg.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        refuse(f"config.json: {key} must be a positive integer (got {v!r})")
    return v


class Plan:
    """What to write: metadata (key, gguf type, value) and tensors (name, shape, loader)."""

    def __init__(self):
        self.metadata = []
        self.tensors = []  # (gguf_name, shape (rows, cols) or (n,), load function)
        self.default_dtype = "f32"  # --dtype when none is given: "bf16" for a BF16 checkpoint

    def kv(self, key, vtype, value):
        self.metadata.append((key, vtype, value))

    def tensor(self, name, shape, load):
        self.tensors.append((name, tuple(shape), load))


def tied_embeddings(cfg, default, has_lm_head):
    """Whether the output layer reuses token_embd (then no output.weight is written). Like HF,
    tie_word_embeddings wins over a saved lm_head.weight (HF re-ties it on load); a checkpoint
    without lm_head.weight can only mean tied."""
    tied = bool(cfg.get("tie_word_embeddings", default))
    if tied and has_lm_head:
        print("note: lm_head.weight ignored: tie_word_embeddings is true", file=sys.stderr)
    if not tied and not has_lm_head:
        print("note: no lm_head.weight: using the token embedding as the output layer", file=sys.stderr)
    return tied or not has_lm_head


def first_id(v):
    """config ids can be an int, a list of ints (several EOS tokens: we keep the first) or null."""
    if isinstance(v, list):
        v = v[0] if v else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def plan_dims(plan, arch, n_ctx, dim, n_layers, hidden, n_heads):
    """The dimension keys every architecture has (llama.cpp's names, prefixed by the arch)."""
    plan.kv(f"{arch}.context_length", "u32", n_ctx)
    plan.kv(f"{arch}.embedding_length", "u32", dim)
    plan.kv(f"{arch}.block_count", "u32", n_layers)
    plan.kv(f"{arch}.feed_forward_length", "u32", hidden)
    plan.kv(f"{arch}.attention.head_count", "u32", n_heads)


# What each decoder family's config and checkpoints leave implicit, and how llama.cpp's converter
# writes it: arch, whether q/k rows are permuted for interleaved RoPE (llama only), the bias
# convention, per-head q/k norms, Gemma's norms (stored as 1 + w, two more per layer), its
# activation key and its tied default.
FAMILIES = {
    "llama": dict(arch="llama", permute=True, biases="config", tied=False),
    "mistral": dict(arch="llama", permute=True, biases="none", tied=False),
    "qwen2": dict(arch="qwen2", biases="qkv", tied=False),
    "qwen3": dict(arch="qwen3", biases="config", qk_norm=True, tied=False, key_length=True),
    "gemma3_text": dict(arch="gemma3", biases="config", qk_norm=True, gemma=True, tied=True,
                        act_key="hidden_activation", act="gelu_pytorch_tanh", key_length=True),
    "phi3": dict(arch="phi3", biases="none", fused=True, tied=False),
}


def llama3_rope_factors(head_dim, theta, scaling):
    """Llama 3's frequency-dependent RoPE scaling as the per-frequency divisors llama.cpp stores
    in rope_freqs.weight: 1 for wavelengths below original_context / high_freq_factor, the factor
    above original_context / low_freq_factor, and in between the divisor that blends the two
    linearly in original_context / wavelength."""
    for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
        if not isinstance(scaling.get(k), (int, float)) or scaling[k] <= 0:
            refuse(f"config.json: rope_scaling llama3 needs a positive {k} (got {scaling.get(k)!r})")
    factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    if hi <= lo:
        refuse(f"config.json: rope_scaling high_freq_factor {hi} must exceed low_freq_factor {lo}")
    out = []
    for i in range(0, head_dim, 2):
        wavelen = 2 * np.pi * theta ** (i / head_dim)
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def plan_rope_scaling(cfg, fam, arch, head_dim, rope_dim, theta, plan):
    """rope_scaling: none, linear (rope.scaling.type and .factor, as llama.cpp writes them) or
    Llama 3's (the tensor rope_freqs.weight). Returns the extra tensors to write."""
    rs = cfg.get("rope_scaling")
    if rs is None:
        return []
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "default":
        return []
    if kind == "linear":
        factor = rs.get("factor")
        if not isinstance(factor, (int, float)) or factor <= 0:
            refuse(f"config.json: rope_scaling linear needs a positive factor (got {factor!r})")
        plan.kv(f"{arch}.rope.scaling.type", "str", "linear")
        plan.kv(f"{arch}.rope.scaling.factor", "f32", float(factor))
        return []
    if kind == "llama3" and fam["arch"] == "llama":
        factors = llama3_rope_factors(head_dim, theta, rs)
        return [("rope_freqs.weight", (head_dim // 2,), lambda: factors)]
    if kind in ("longrope", "su") and fam["arch"] == "phi3":
        return plan_longrope(cfg, arch, rope_dim, rs, plan)
    refuse(f"config.json: rope_scaling {rs!r} is not supported (linear; llama3 for llama; "
           "longrope for phi3)")


def plan_longrope(cfg, arch, rope_dim, rs, plan):
    """Phi-3's longrope as llama.cpp writes it: the two sets of frequency divisors as tensors, the
    original context, and the factor on RoPE's cosines and sines (Hugging Face's default,
    sqrt(1 + ln(context / original) / ln(original)), unless the config gives one)."""
    n_ctx = cfg["max_position_embeddings"]
    orig = cfg.get("original_max_position_embeddings")
    if not isinstance(orig, int) or orig <= 0:
        refuse(f"config.json: longrope needs original_max_position_embeddings (got {orig!r})")
    long, short = rs.get("long_factor"), rs.get("short_factor")
    for name, f in (("long_factor", long), ("short_factor", short)):
        if not isinstance(f, list) or len(f) != rope_dim // 2 or \
                not all(isinstance(x, (int, float)) and x > 0 for x in f):
            refuse(f"config.json: rope_scaling {name} must be {rope_dim // 2} positive numbers")
    scale = n_ctx / orig
    attn = rs.get("attention_factor")
    if attn is None:
        attn = math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0
    plan.kv(f"{arch}.rope.scaling.attn_factor", "f32", float(attn))
    long_a, short_a = np.array(long, dtype=np.float32), np.array(short, dtype=np.float32)
    return [("rope_factors_long.weight", (rope_dim // 2,), lambda: long_a),
            ("rope_factors_short.weight", (rope_dim // 2,), lambda: short_a)]


def gemma_window_pattern(cfg, n_layers):
    """Gemma 3's local/global layers must be llama.cpp's fixed pattern: every 6th layer global."""
    types = cfg.get("layer_types")
    pattern = cfg.get("sliding_window_pattern", 6)
    if types is None:
        types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                 for i in range(n_layers)]
    want = ["full_attention" if i % 6 == 5 else "sliding_attention" for i in range(n_layers)]
    if list(types) != want:
        refuse(f"config.json: gemma3 layer types {types} differ from 5 sliding layers per full one "
               "(the only pattern llama.cpp's gemma3 files can express)")


def plan_llama(cfg, ws, arch, plan):
    """The RoPE decoders: llama, mistral (both exported as arch "llama"), qwen2, qwen3, gemma3."""
    model_type = cfg["model_type"]
    fam = FAMILIES[model_type]
    gemma = fam.get("gemma", False)
    dim = require_int(cfg, "hidden_size")
    n_layers = require_int(cfg, "num_hidden_layers")
    n_heads = require_int(cfg, "num_attention_heads")
    n_kv = require_int(cfg, "num_key_value_heads", n_heads) if cfg.get("num_key_value_heads") is not None \
        else n_heads  # HF: absent or null means plain multi-head attention
    hidden = require_int(cfg, "intermediate_size")
    n_ctx = require_int(cfg, "max_position_embeddings")
    vocab = require_int(cfg, "vocab_size")
    act_key = fam.get("act_key", "hidden_act")
    act = cfg.get(act_key) or fam.get("act", "silu")
    if act != fam.get("act", "silu"):
        refuse(f"config.json: {act_key} {act!r} is not supported ({model_type} needs {fam.get('act', 'silu')})")
    if cfg.get("head_dim") is not None:
        head_dim = require_int(cfg, "head_dim")
    else:
        if dim % n_heads:
            refuse(f"config.json: num_attention_heads {n_heads} does not divide hidden_size {dim}")
        head_dim = dim // n_heads
    if head_dim % 2:
        refuse(f"head_dim {head_dim} is odd: RoPE needs pairs")
    if n_heads % n_kv:
        refuse(f"config.json: num_key_value_heads {n_kv} does not divide num_attention_heads {n_heads}")
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    # Phi-3's family may rotate only part of each head (Phi-4-mini: 3/4); llama.cpp writes
    # int(factor * hidden_size) // heads
    rot = cfg.get("partial_rotary_factor", 1.0)
    if rot != 1.0 and model_type != "phi3":
        refuse("config.json: partial_rotary_factor != 1 is not supported")
    rope_dim = int(rot * dim) // n_heads if rot != 1.0 else head_dim
    if not 0 < rope_dim <= head_dim or rope_dim % 2:
        refuse(f"config.json: partial_rotary_factor {rot} gives {rope_dim} rotated dims of {head_dim}")
    for cap in ("final_logit_softcapping", "attn_logit_softcapping"):
        if cfg.get(cap) is not None:
            refuse(f"config.json: {cap} {cfg[cap]!r} is not supported")

    # Sliding window. Mistral: every layer uses config.sliding_window (null = none).
    # Qwen2/3: only when use_sliding_window, and then only layers >= max_window_layers use it.
    # Gemma 3: its local layers (5 of every 6). Other mixes of windowed and full layers are refused.
    window = None
    if model_type in ("mistral", "phi3"):
        window = cfg.get("sliding_window")
    elif model_type in ("qwen2", "qwen3") and cfg.get("use_sliding_window", False):
        w = cfg.get("sliding_window")
        mwl = cfg.get("max_window_layers", n_layers)
        if w is None or mwl >= n_layers:
            window = None  # no layer is windowed
        elif mwl <= 0:
            window = w  # every layer is windowed
        else:
            refuse(f"config.json: {model_type} sliding window on layers >= max_window_layers={mwl} of "
                   f"{n_layers} (per-layer windows are not supported)")
    elif gemma:
        window = cfg.get("sliding_window")
        gemma_window_pattern(cfg, n_layers)
    if window is not None and (not isinstance(window, int) or isinstance(window, bool) or window <= 0):
        refuse(f"config.json: sliding_window must be a positive integer (got {window!r})")

    # Which biases exist: qwen2 always has q/k/v biases; HF llama and qwen3 have attention_bias
    # (q,k,v,o), llama also mlp_bias (gate, up, down); mistral has none.
    if fam["biases"] == "qkv":
        attn_bias = {"q": True, "k": True, "v": True, "o": False}
        mlp_bias = False
    elif fam["biases"] == "config":
        ab = bool(cfg.get("attention_bias", False))
        attn_bias = {"q": ab, "k": ab, "v": ab, "o": ab}
        mlp_bias = bool(cfg.get("mlp_bias", False)) and model_type == "llama"
    else:
        attn_bias = {"q": False, "k": False, "v": False, "o": False}
        mlp_bias = False

    plan_dims(plan, arch, n_ctx, dim, n_layers, hidden, n_heads)
    plan.kv(f"{arch}.attention.head_count_kv", "u32", n_kv)
    plan.kv(f"{arch}.attention.layer_norm_rms_epsilon", "f32", float(eps))
    plan.kv(f"{arch}.rope.freq_base", "f32", float(theta))
    plan.kv(f"{arch}.rope.dimension_count", "u32", rope_dim)
    if model_type == "phi3" and cfg.get("original_max_position_embeddings") is not None:
        plan.kv(f"{arch}.rope.scaling.original_context_length", "u32",
                require_int(cfg, "original_max_position_embeddings"))
    if head_dim * n_heads != dim or fam.get("key_length"):
        plan.kv(f"{arch}.attention.key_length", "u32", head_dim)
        plan.kv(f"{arch}.attention.value_length", "u32", head_dim)
    if window is not None:
        plan.kv(f"{arch}.attention.sliding_window", "u32", window)
    if gemma:
        # llama.cpp fixes the local layers' base at 10000 and the scale at 1/sqrt(head_dim) for
        # gemma3 (dim/heads for the 27B); other values are written under its general keys.
        local = cfg.get("rope_local_base_freq", 10000.0)
        if local != 10000.0:
            plan.kv(f"{arch}.rope.freq_base_swa", "f32", float(local))
        qpas = cfg.get("query_pre_attn_scalar", head_dim)
        if not isinstance(qpas, (int, float)) or qpas <= 0:
            refuse(f"config.json: query_pre_attn_scalar must be positive (got {qpas!r})")
        if qpas != head_dim:
            plan.kv(f"{arch}.attention.scale", "f32", float(qpas) ** -0.5)
    extra_tensors = plan_rope_scaling(cfg, fam, arch, head_dim, rope_dim, theta, plan)

    # Rename HF keys (with or without the "model." prefix) to GGUF names.
    names = {}  # gguf name -> (hf name, transform)
    ignored = re.compile(r"(^|\.)rotary_emb(_local)?\.inv_freq$")
    permute_q = fam.get("permute", False)  # the others keep HF's rotate-half convention
    # Gemma's RMSNorm computes x * (1 + w); llama.cpp's files store 1 + w
    norm_transform = (lambda w: w + 1.0) if gemma else None
    has_lm_head = False
    per_layer = {"input_layernorm.weight": "attn_norm.weight"}
    if gemma:
        per_layer.update({"post_attention_layernorm.weight": "post_attention_norm.weight",
                          "pre_feedforward_layernorm.weight": "ffn_norm.weight",
                          "post_feedforward_layernorm.weight": "post_ffw_norm.weight"})
    else:
        per_layer["post_attention_layernorm.weight"] = "ffn_norm.weight"
    if fam.get("qk_norm"):
        per_layer.update({"self_attn.q_norm.weight": "attn_q_norm.weight",
                          "self_attn.k_norm.weight": "attn_k_norm.weight"})
    for p, g in [("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v"), ("o", "attn_output"),
                 ("qkv", "attn_qkv")]:
        for kind in ("weight", "bias"):
            per_layer[f"self_attn.{p}_proj.{kind}"] = f"{g}.{kind}"
    for p in ("gate", "up", "down"):
        for kind in ("weight", "bias"):
            per_layer[f"mlp.{p}_proj.{kind}"] = f"ffn_{p}.{kind}"
    per_layer["mlp.gate_up_proj.weight"] = "ffn_up.weight"  # Phi-3: rows gate | up
    for hf in ws.keys():
        if ignored.search(hf):
            continue
        n = strip_prefix(hf, ["model."])
        if n == "lm_head.weight":
            has_lm_head = True
            names["output.weight"] = (hf, None)
            continue
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", n)
        if n == "embed_tokens.weight":
            names["token_embd.weight"] = (hf, None)
        elif n == "norm.weight":
            names["output_norm.weight"] = (hf, norm_transform)
        elif m:
            i, rest = int(m.group(1)), m.group(2)
            if rest not in per_layer or i >= n_layers:
                refuse(f"unexpected tensor {hf!r} in the weights")
            g = f"blk.{i}.{per_layer[rest]}"
            transform = norm_transform if rest.endswith("norm.weight") else None
            if permute_q and rest.startswith("self_attn.q_proj."):
                transform = lambda w: permute_for_interleaved_rope(w, n_heads)
            elif permute_q and rest.startswith("self_attn.k_proj."):
                transform = lambda w: permute_for_interleaved_rope(w, n_kv)
            names[g] = (hf, transform)
        else:
            refuse(f"unexpected tensor {hf!r} in the weights")

    tied = tied_embeddings(cfg, fam["tied"], has_lm_head)
    expected = [("token_embd.weight", (vocab, dim)), ("output_norm.weight", (dim,))]
    if not tied:
        expected.append(("output.weight", (vocab, dim)))
    for i in range(n_layers):
        b = f"blk.{i}."
        expected += [(b + g, (dim,)) for h, g in per_layer.items()
                     if h.endswith("layernorm.weight")]
        if fam.get("qk_norm"):
            expected += [(b + "attn_q_norm.weight", (head_dim,)), (b + "attn_k_norm.weight", (head_dim,))]
        shapes = {"q": (n_heads * head_dim, dim), "k": (n_kv * head_dim, dim),
                  "v": (n_kv * head_dim, dim), "o": (dim, n_heads * head_dim)}
        if fam.get("fused"):  # Phi-3: q|k|v and gate|up each one matrix
            expected += [(b + "attn_qkv.weight", ((n_heads + 2 * n_kv) * head_dim, dim)),
                         (b + "attn_output.weight", shapes["o"]),
                         (b + "ffn_up.weight", (2 * hidden, dim)), (b + "ffn_down.weight", (dim, hidden))]
            continue
        for p, g in [("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v"), ("o", "attn_output")]:
            expected.append((f"{b}{g}.weight", shapes[p]))
            if attn_bias[p]:
                expected.append((f"{b}{g}.bias", shapes[p][:1]))
        for p, shape in [("gate", (hidden, dim)), ("up", (hidden, dim)), ("down", (dim, hidden))]:
            expected.append((f"{b}ffn_{p}.weight", shape))
            if mlp_bias:
                expected.append((f"{b}ffn_{p}.bias", shape[:1]))
    for name, shape, load in extra_tensors:
        plan.tensor(name, shape, load)
    return finish_plan(plan, ws, names, expected, tied), vocab


def transpose_conv1d(w):
    """HF GPT-2 uses Conv1D layers whose weight is (in, out), the transpose of nn.Linear's; GGUF
    wants (out, in) rows like every other matrix, so those four weights per layer are transposed."""
    return np.ascontiguousarray(w.T)


def plan_gpt2(cfg, ws, arch, plan):
    dim = require_int(cfg, "n_embd")
    n_layers = require_int(cfg, "n_layer")
    n_heads = require_int(cfg, "n_head")
    n_ctx = require_int(cfg, "n_positions", cfg.get("n_ctx"))
    vocab = require_int(cfg, "vocab_size")
    hidden = cfg.get("n_inner") or 4 * dim
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    if dim % n_heads:
        refuse(f"config.json: n_head {n_heads} does not divide n_embd {dim}")
    if cfg.get("scale_attn_by_inverse_layer_idx", False):
        refuse("config.json: scale_attn_by_inverse_layer_idx=true is not supported")
    if not cfg.get("scale_attn_weights", True):
        refuse("config.json: scale_attn_weights=false is not supported (scores are always / sqrt(head_dim))")
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        refuse(f"config.json: activation_function {act!r} is not supported "
               "(gelu_new, gelu_pytorch_tanh or gelu)")
    pos = cfg.get("position_embedding_type", "absolute")
    if pos not in ("absolute", "sinusoidal"):
        refuse(f"config.json: position_embedding_type {pos!r} is not supported (absolute or sinusoidal)")
    if cfg.get("rope_scaling") is not None:
        refuse("config.json: rope_scaling is not supported")

    plan_dims(plan, arch, n_ctx, dim, n_layers, hidden, n_heads)
    plan.kv(f"{arch}.attention.layer_norm_epsilon", "f32", float(eps))
    if pos == "sinusoidal":
        plan.kv("tinygpt.position_encoding", "str", "sinusoidal")
    if act == "gelu":
        plan.kv("tinygpt.ffn_activation", "str", "gelu_erf")

    # attn.bias (the causal mask) and attn.masked_bias are buffers of old checkpoints, not weights.
    ignored = re.compile(r"(^|\.)attn\.(bias|masked_bias)$")
    names = {}
    has_lm_head = False
    simple = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
              "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
    per_layer = {"ln_1.weight": ("attn_norm.weight", None), "ln_1.bias": ("attn_norm.bias", None),
                 "ln_2.weight": ("ffn_norm.weight", None), "ln_2.bias": ("ffn_norm.bias", None),
                 "attn.c_attn.weight": ("attn_qkv.weight", transpose_conv1d),
                 "attn.c_attn.bias": ("attn_qkv.bias", None),
                 "attn.c_proj.weight": ("attn_output.weight", transpose_conv1d),
                 "attn.c_proj.bias": ("attn_output.bias", None),
                 "mlp.c_fc.weight": ("ffn_up.weight", transpose_conv1d),
                 "mlp.c_fc.bias": ("ffn_up.bias", None),
                 "mlp.c_proj.weight": ("ffn_down.weight", transpose_conv1d),
                 "mlp.c_proj.bias": ("ffn_down.bias", None)}
    for hf in ws.keys():
        if ignored.search(hf):
            continue
        if hf == "lm_head.weight":
            has_lm_head = True
            names["output.weight"] = (hf, None)
            continue
        n = strip_prefix(hf, ["transformer."])
        m = re.fullmatch(r"h\.(\d+)\.(.+)", n)
        if n in simple:
            names[simple[n]] = (hf, None)
        elif m and m.group(2) in per_layer and int(m.group(1)) < n_layers:
            g, t = per_layer[m.group(2)]
            names[f"blk.{m.group(1)}.{g}"] = (hf, t)
        else:
            refuse(f"unexpected tensor {hf!r} in the weights")
    if pos == "sinusoidal" and "position_embd.weight" in names:
        refuse("config.json says sinusoidal positions but the weights contain wpe.weight")

    tied = tied_embeddings(cfg, True, has_lm_head)
    if tied and "token_embd.weight" in names:
        # output.weight always, a copy of the embeddings when tied (vocab x dim more bytes), as
        # llama.cpp's converter writes it: its builds of early 2025 require it for GPT-2
        names["output.weight"] = names["token_embd.weight"]
    expected = [("token_embd.weight", (vocab, dim))]
    if pos == "absolute":
        expected.append(("position_embd.weight", (n_ctx, dim)))
    expected += [("output_norm.weight", (dim,)), ("output_norm.bias", (dim,)),
                 ("output.weight", (vocab, dim))]
    for i in range(n_layers):
        b = f"blk.{i}."
        expected += [(b + "attn_norm.weight", (dim,)), (b + "attn_norm.bias", (dim,)),
                     (b + "attn_qkv.weight", (3 * dim, dim)), (b + "attn_qkv.bias", (3 * dim,)),
                     (b + "attn_output.weight", (dim, dim)), (b + "attn_output.bias", (dim,)),
                     (b + "ffn_norm.weight", (dim,)), (b + "ffn_norm.bias", (dim,)),
                     (b + "ffn_up.weight", (hidden, dim)), (b + "ffn_up.bias", (hidden,)),
                     (b + "ffn_down.weight", (dim, hidden)), (b + "ffn_down.bias", (dim,))]
    return finish_plan(plan, ws, names, expected, tied), vocab


def finish_plan(plan, ws, names, expected, tied):
    """Check every expected tensor exists with the shape the config implies, then add them to the
    plan in a fixed order. An untied output.weight that the config does not expect (tied) is
    dropped: the engine reuses token_embd. Tied weights saved once, under the output's name
    (safetensors keeps one of two shared tensors), are the embeddings."""
    if tied and "token_embd.weight" not in names and "output.weight" in names:
        print("note: the token embedding is lm_head.weight (tied weights saved once)", file=sys.stderr)
        keep = any(g == "output.weight" for g, _ in expected)  # GPT-2 writes both
        names["token_embd.weight"] = names["output.weight"] if keep else names.pop("output.weight")
    for gname, shape in expected:
        if gname not in names:
            refuse(f"missing weight for {gname} (expected shape {shape})")
        hf, transform = names[gname]
        src_shape = tuple(ws.shape(hf))
        got = tuple(reversed(src_shape)) if transform is transpose_conv1d else src_shape
        if got != tuple(shape):
            stored = " (Conv1D, stored transposed)" if transform is transpose_conv1d else ""
            refuse(f"weight {hf} has shape {tuple(src_shape)}{stored}, config implies "
                   f"{tuple(shape)} for {gname}")

        def load(hf=hf, transform=transform):
            w = ws.load(hf)
            return transform(w) if transform is not None else w

        plan.tensor(gname, shape, load)
    extra = set(names) - {g for g, _ in expected}
    if extra - {"output.weight"}:
        refuse(f"weights not used by the config: {sorted(extra)}")
    return tied


# ----------------------------------------------------------------------------------------------
# Tokenizers

def parse_protobuf(buf):
    """Minimal protobuf wire-format parser: returns {field_number: [values]} where varints are
    ints, 32/64-bit fields raw bytes, and length-delimited fields raw bytes (parse again for
    sub-messages). Enough for SentencePiece's ModelProto without the protobuf package."""
    fields = {}
    i = 0

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    while i < len(buf):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            v = varint()
        elif wire == 1:
            v = buf[i:i + 8]
            i += 8
        elif wire == 2:
            n = varint()
            v = buf[i:i + n]
            i += n
        elif wire == 5:
            v = buf[i:i + 4]
            i += 4
        else:
            refuse(f"tokenizer.model: unsupported protobuf wire type {wire}")
        fields.setdefault(field, []).append(v)
    return fields


def tokenizer_config(in_dir):
    p = os.path.join(in_dir, "tokenizer_config.json")
    if os.path.exists(p):
        with open(p) as f:
            return json.load(f)
    return {}


def token_content(v):
    """tokenizer_config.json stores bos_token either as a string or as {"content": ...}."""
    if isinstance(v, dict):
        return v.get("content")
    return v if isinstance(v, str) else None


def load_spm(path):
    """SentencePiece model: pieces, scores and types with the sentencepiece library; the
    normalizer and trainer settings (which the library does not expose) from the protobuf."""
    import sentencepiece as spm

    with open(path, "rb") as f:
        proto = parse_protobuf(f.read())
    # ModelProto: pieces=1, trainer_spec=2, normalizer_spec=3.
    trainer = parse_protobuf(proto[2][-1]) if 2 in proto else {}
    normalizer = parse_protobuf(proto[3][-1]) if 3 in proto else {}
    model_type = trainer.get(3, [1])[-1]  # enum ModelType, default UNIGRAM=1; BPE=2
    if model_type != 2:
        names = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
        refuse(f"tokenizer.model: SentencePiece model_type {names.get(model_type, model_type)} "
               "is not supported (only bpe)")
    norm_name = normalizer.get(1, [b""])[-1].decode()
    if norm_name != "identity":
        refuse(f"tokenizer.model: normalizer {norm_name or '(unnamed)'!r} is not supported (only identity)")
    if normalizer.get(4, [1])[-1]:  # remove_extra_whitespaces, default true
        refuse("tokenizer.model: remove_extra_whitespaces=true is not supported")
    add_dummy_prefix = bool(normalizer.get(3, [1])[-1])  # default true
    byte_fallback = bool(trainer.get(35, [0])[-1])

    sp = spm.SentencePieceProcessor(model_file=path)
    tokens, scores, types = [], [], []
    raw_pieces = proto.get(1, [])
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        # The SentencePiece.Type enum (NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5,
        # BYTE 6) has exactly GGUF's token_type numbering. The library has no is_user_defined(),
        # so read the type field (3, default NORMAL) of the piece message itself.
        t = parse_protobuf(raw_pieces[i]).get(3, [1])[-1]
        types.append(t)
    return {"model": "llama", "pre": "default", "tokens": tokens, "scores": scores, "types": types,
            "merges": None, "add_space_prefix": add_dummy_prefix, "byte_fallback": byte_fallback,
            "bos": sp.bos_id() if sp.bos_id() >= 0 else None,
            "eos": sp.eos_id() if sp.eos_id() >= 0 else None,
            "unk": sp.unk_id() if sp.unk_id() >= 0 else None,
            "pad": sp.pad_id() if sp.pad_id() >= 0 else None, "default_add_bos": True}


def added_from_tokenizer_config(tcfg):
    out = []
    for i, d in (tcfg.get("added_tokens_decoder") or {}).items():
        out.append((int(i), d["content"], bool(d.get("special", False))))
    return out


def added_tokens(in_dir, tcfg):
    """(id, text, special) of the tokens a Hugging Face directory adds beside its vocabulary:
    tokenizer_config.json's added_tokens_decoder, then added_tokens.json (special unless the
    first says otherwise)."""
    added = added_from_tokenizer_config(tcfg)
    p = os.path.join(in_dir, "added_tokens.json")
    if os.path.exists(p):
        with open(p) as f:
            for content, i in json.load(f).items():
                if all(a[0] != i for a in added):
                    added.append((i, content, True))
    return added


# SentencePiece piece types, as GGUF's tokenizer.ggml.token_type stores them.
SPM_CONTROL, SPM_USER_DEFINED = 3, 4


def add_spm_added_tokens(tok, in_dir, tcfg):
    """Phi-3 and others keep their chat tokens outside tokenizer.model (<|endoftext|> = 32000,
    <|user|>, <|end|>, ... listed only in tokenizer_config.json / added_tokens.json): append them
    after the pieces, control tokens if special, user-defined otherwise, as llama.cpp's converter
    does. One already among the pieces must have the same text; ids must continue the pieces
    without a gap."""
    for i, text, special in sorted(added_tokens(in_dir, tcfg)):
        n = len(tok["tokens"])
        if i < n:
            if tok["tokens"][i] != text:
                refuse(f"added token {i} is {text!r} but tokenizer.model's piece {i} is {tok['tokens'][i]!r}")
            continue
        if i != n:
            refuse(f"added token {text!r} has id {i}, but the vocabulary so far ends at {n - 1}")
        tok["tokens"].append(text)
        tok["scores"].append(0.0)
        tok["types"].append(SPM_CONTROL if special else SPM_USER_DEFINED)


def load_vocab_merges(in_dir, tcfg):
    with open(os.path.join(in_dir, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    merges = []
    with open(os.path.join(in_dir, "merges.txt"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#version") or not line.strip():
                continue
            if len(line.split(" ")) != 2:
                refuse(f"merges.txt: malformed line {line!r}")
            merges.append(line)
    return gpt2_tokenizer(vocab, merges, added_tokens(in_dir, tcfg), "vocab.json")


# The pre-tokenizer regexes of tokenizer.json files, by the name llama.cpp gives the rules
# (tokenizer.ggml.pre). Llama 3 and Qwen2 differ only in \p{N}{1,3} against \p{N}.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")


def describe_pretokenizer(pt):
    if pt is None:
        return "none"
    if pt.get("type") == "Split":
        pattern = pt.get("pattern", {})
        return f"Split (regex {pattern.get('Regex', pattern.get('String'))!r})"
    if pt.get("type") == "Sequence":
        return "Sequence[" + ", ".join(describe_pretokenizer(p) for p in pt.get("pretokenizers", [])) + "]"
    return str(pt.get("type"))


def describe_normalizer(nm):
    if nm is None:
        return "none"
    if nm.get("type") == "Sequence":
        return "Sequence[" + ", ".join(describe_normalizer(n) for n in nm.get("normalizers", [])) + "]"
    return str(nm.get("type"))


def byte_level_pre(tj):
    """The llama.cpp pre-tokenizer name of a byte-level BPE tokenizer.json, read from the structure
    of its normalizer and pre-tokenizer (llama.cpp's converter recognises a tokenizer by hashing
    its output on a test text, which needs the tokenizers library; the structure says the same):
        ByteLevel(use_regex)                              gpt-2
        Split(Llama 3's regex, Isolated), ByteLevel       llama-bpe
        NFC; Split(Qwen2's regex, Isolated), ByteLevel    qwen2
        Digits(individual_digits), ByteLevel(use_regex)   smollm
    Anything else is refused, naming what was found."""
    pt, nm = tj.get("pre_tokenizer"), tj.get("normalizer")
    steps = pt.get("pretokenizers", []) if pt and pt.get("type") == "Sequence" else [pt] if pt else []
    kinds = [s.get("type") for s in steps]
    pre = None
    if kinds and kinds[-1] == "ByteLevel" and not steps[-1].get("add_prefix_space", False):
        use_regex = steps[-1].get("use_regex", True)
        if kinds == ["ByteLevel"] and use_regex and nm is None:
            pre = "gpt-2"
        elif kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and use_regex \
                and nm is None:
            pre = "smollm"
        elif kinds == ["Split", "ByteLevel"] and not use_regex and steps[0].get("behavior") == "Isolated" \
                and not steps[0].get("invert", False):
            regex = steps[0].get("pattern", {}).get("Regex")
            if regex == LLAMA3_REGEX and nm is None:
                pre = "llama-bpe"
            elif regex == QWEN2_REGEX and nm == {"type": "NFC"}:
                pre = "qwen2"
    if pre is None:
        refuse(f"tokenizer.json: normalizer {describe_normalizer(nm)} with pre-tokenizer "
               f"{describe_pretokenizer(pt)} is not supported (byte-level BPE: GPT-2's, Llama 3's, "
               "Qwen2's or SmolLM's pre-tokenizer)")
    # llama.cpp ignores merges for exactly the Llama 3 family (a word that is a token stays whole).
    if bool(tj["model"].get("ignore_merges", False)) and pre != "llama-bpe":
        refuse(f"tokenizer.json: ignore_merges with the {pre} pre-tokenizer is not supported")
    return pre


def looks_special(text):
    """Added tokens that llama.cpp's converter types CONTROL although tokenizer.json does not mark
    them special (does_token_look_special)."""
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
            or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<\uff5c") and text.endswith("\uff5c>"))
            or (text.startswith("<unused") and text.endswith(">")))


def gpt2_tokenizer(vocab, merges, added, source, pre="gpt-2"):
    """Common part of the byte-level BPE inputs. vocab: {token: id}; added: list of (id, content,
    special). Added tokens are CONTROL when special (or looking special, as llama.cpp's converter
    decides), else USER_DEFINED, stored as the plain text they match."""
    n = max(list(vocab.values()) + [a[0] for a in added]) + 1
    tokens = [None] * n
    types = [1] * n
    for t, i in vocab.items():
        tokens[i] = t
    for i, content, special in added:
        if tokens[i] is not None and tokens[i] != content:
            refuse(f"{source}: added token {content!r} collides with {tokens[i]!r} at id {i}")
        tokens[i] = content
        types[i] = 3 if special or looks_special(content) else 4
    missing = [i for i, t in enumerate(tokens) if t is None]
    if missing:
        refuse(f"{source}: token ids are not contiguous (no token for id {missing[0]})")
    eot = vocab.get("<|endoftext|>")
    if eot is None:
        eot = next((i for i, c, _ in added if c == "<|endoftext|>"), None)
    if eot is not None:
        types[eot] = 3  # GPT-2's only special token: document separator, used as BOS and EOS
    gpt2 = pre == "gpt-2"
    return {"model": "gpt2", "pre": pre, "tokens": tokens, "scores": None, "types": types,
            "merges": merges, "add_space_prefix": None, "bos": eot if gpt2 else None,
            "eos": eot if gpt2 else None, "unk": None, "pad": None, "default_add_bos": False}


def a_special(a):
    return bool(a.get("special", False))


def spm_bpe_tokenizer(tj):
    """A SentencePiece BPE model as tokenizer.json holds it (Gemma 3, TinyLlama, Mistral): BPE with
    byte_fallback, spaces replaced by U+2581 in the normalizer, with a Prepend of U+2581 when the
    model adds a dummy prefix. Written as llama.cpp writes a SentencePiece vocabulary (model
    "llama", scores, token types). tokenizer.json has merge ranks where SentencePiece has scores:
    a piece's score is minus the rank of the first merge that forms it, so merging by best score
    merges in rank order. That is exact only if every split of a piece into two pieces is a merge
    (SentencePiece tries them all); this is checked, and refused otherwise."""
    model = tj["model"]
    add_space_prefix, metaspace = spm_spaces(tj.get("normalizer"), tj.get("pre_tokenizer"))
    vocab = model["vocab"]
    n = max(vocab.values()) + 1
    tokens = [None] * n
    for t, i in vocab.items():
        tokens[i] = t
    if any(t is None for t in tokens):
        refuse("tokenizer.json: token ids are not contiguous")
    merges = [m.split(" ", 1) if isinstance(m, str) else m for m in model.get("merges", [])]
    first_rank = {}
    for r, (a, b) in enumerate(merges):
        if a + b not in vocab:
            refuse(f"tokenizer.json: merge {r} ({a!r}, {b!r}) forms no token")
        first_rank.setdefault(vocab[a + b], r)
    merge_set = {(a, b) for a, b in merges}
    by_rank = []  # tokens that only merging by rank forms as Hugging Face does
    added = {a["id"]: a for a in tj.get("added_tokens", []) if a["id"] < n}
    unk = vocab.get(model.get("unk_token")) if model.get("unk_token") else None
    types, scores = [], []
    for i, t in enumerate(tokens):
        if i in added:
            # Kept as tokenizer.json spells them. llama.cpp's converter writes the U+2581 of
            # user-defined tokens as spaces (Gemma's "▁▁" becomes "  ", matched in the text
            # before the normalizer) and scores them -1000; Hugging Face instead matches the
            # literal "▁▁" and also forms it from spaces by its merge, early. Keeping the
            # spelling and the merge rank gives Hugging Face's ids on every text.
            types.append(3 if a_special(added[i]) or looks_special(t) else 4)
            scores.append(-float(first_rank[i]) if i in first_rank else -1000.0)
        elif i == unk:
            types.append(2)
            scores.append(0.0)
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", t):
            types.append(6)
            scores.append(0.0)
        else:
            types.append(1)
            scores.append(-float(first_rank.get(i, len(merges) + i)))
            if any(t[:j] in vocab and t[j:] in vocab and (t[:j], t[j:]) not in merge_set
                   for j in range(1, len(t))):
                by_rank.append(t)
    tok = {"model": "llama", "pre": "default", "tokens": tokens, "scores": scores, "types": types,
           "merges": None, "add_space_prefix": add_space_prefix, "bos": None, "eos": None,
           "unk": unk, "pad": None, "default_add_bos": True, "metaspace": metaspace}
    if by_rank:
        # A token that splits into two tokens without that merge: SentencePiece's best-score
        # merging would form it where Hugging Face's merge ranks do not. The merges go in the
        # file, and ./run applies them by rank; llama.cpp reads only the scores.
        if any(" " in a or " " in b for a, b in merges):
            refuse("tokenizer.json: a merge holds a space, which tokenizer.ggml.merges cannot write")
        tok["merges"] = [f"{a} {b}" for a, b in merges]
        print(f"warning: tokenizer.json's merges are not SentencePiece scores ({len(by_rank)} tokens, "
              f"e.g. {by_rank[0]!r}): written as tokenizer.ggml.merges, which ./run applies by rank "
              f"as Hugging Face does; llama.cpp reads the scores (minus the merge rank) and can "
              f"tokenize some words differently", file=sys.stderr)
    return tok


def spm_spaces(nm, pt):
    """How a byte-fallback BPE's tokenizer.json turns spaces into U+2581: (add_space_prefix,
    metaspace). Either the normalizer replaces them (after a Prepend of U+2581 when the model adds
    a dummy prefix), or a Metaspace pre-tokenizer does: metaspace is then "split" or "whole" (split
    cuts the text before each U+2581, and merges never join across), and prepend_scheme "always"
    adds the prefix to each text between special tokens that does not start with a space."""
    steps = nm.get("normalizers", []) if nm and nm.get("type") == "Sequence" else [nm] if nm else []
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
    prepend = {"type": "Prepend", "prepend": "\u2581"}
    if not steps and pt and pt.get("type") == "Metaspace":
        scheme = pt.get("prepend_scheme", "always" if pt.get("add_prefix_space", True) else "never")
        if pt.get("replacement") != "\u2581" or scheme not in ("always", "never"):
            refuse(f"tokenizer.json: Metaspace with replacement {pt.get('replacement')!r} and "
                   f"prepend_scheme {scheme!r} is not supported (U+2581, always or never)")
        return scheme == "always", "split" if pt.get("split", True) else "whole"
    if steps == [replace]:
        add_space_prefix = False
    elif steps == [prepend, replace]:
        add_space_prefix = True
    else:
        refuse(f"tokenizer.json: normalizer {describe_normalizer(nm)} of a byte-fallback BPE is not "
               "supported (only Replace(' ', '\u2581'), optionally after Prepend('\u2581'), or a "
               "Metaspace pre-tokenizer)")
    # Splitting on " " after the normalizer replaced every space finds nothing: no effect.
    if pt is not None and pt != {"type": "Split", "pattern": {"String": " "},
                                 "behavior": "MergedWithPrevious", "invert": False}:
        refuse(f"tokenizer.json: pre-tokenizer {describe_pretokenizer(pt)} of a byte-fallback BPE is "
               "not supported")
    return add_space_prefix, None


def load_tokenizer_json(in_dir):
    """HF tokenizers' tokenizer.json: a byte-level BPE (GPT-2, Llama 3, Qwen2/3, SmolLM2) or a
    SentencePiece-style BPE with byte fallback (Gemma 3, TinyLlama, Mistral)."""
    with open(os.path.join(in_dir, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        refuse(f"tokenizer.json: model type {model.get('type')!r} is not supported (only BPE)")
    if model.get("byte_fallback"):
        tok = spm_bpe_tokenizer(tj)
    else:
        pre = byte_level_pre(tj)
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        added = [(a["id"], a["content"], bool(a.get("special", False))) for a in tj.get("added_tokens", [])]
        tok = gpt2_tokenizer(model["vocab"], merges, added, "tokenizer.json", pre)
    # A template that puts a special token before the text (Llama 3's <|begin_of_text|>, Gemma's
    # <bos>) is how tokenizer.json says it adds BOS.
    single = ((tj.get("post_processor") or {}).get("single") or
              next((p.get("single") for p in (tj.get("post_processor") or {}).get("processors", [])
                    if p.get("type") == "TemplateProcessing"), None))
    if single and "SpecialToken" in single[0]:
        content = single[0]["SpecialToken"]["id"]
        if content in tok["tokens"]:
            tok["bos"] = tok["tokens"].index(content)
            tok["default_add_bos"] = True
    elif single:
        tok["default_add_bos"] = False
    return tok


# End-of-turn tokens, in order of preference (llama.cpp recognises these spellings at load).
EOT_TOKENS = ("<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>")


def load_tokenizer(in_dir, cfg):
    tcfg = tokenizer_config(in_dir)
    if os.path.exists(os.path.join(in_dir, "tokenizer.model")):
        tok = load_spm(os.path.join(in_dir, "tokenizer.model"))
        add_spm_added_tokens(tok, in_dir, tcfg)
    elif os.path.exists(os.path.join(in_dir, "tokenizer.json")):
        tok = load_tokenizer_json(in_dir)
    elif os.path.exists(os.path.join(in_dir, "vocab.json")) and \
            os.path.exists(os.path.join(in_dir, "merges.txt")):
        if cfg.get("model_type") != "gpt2":
            # Without tokenizer.json we cannot know the pre-tokenizer; only GPT-2 itself is known
            # to use GPT-2's regex (Qwen2, for example, uses a different one).
            refuse(f"vocab.json + merges.txt without tokenizer.json: pre-tokenizer of a "
                   f"{cfg.get('model_type')} model is unknown (only gpt2 is assumed to use GPT-2's regex)")
        tok = load_vocab_merges(in_dir, tcfg)
    else:
        refuse(f"{in_dir}: no tokenizer found (tokenizer.model, tokenizer.json or vocab.json + merges.txt)")

    # Special tokens: config.json first, then tokenizer_config.json's token strings, then the
    # tokenizer's own defaults.
    for which in ("bos", "eos", "unk"):
        cid = first_id(cfg.get(f"{which}_token_id"))
        if cid is None:
            content = token_content(tcfg.get(f"{which}_token"))
            if content is not None and content in tok["tokens"]:
                cid = tok["tokens"].index(content)
        if cid is not None:
            tok[which] = cid
    pad = first_id(cfg.get("pad_token_id"))
    if pad is None:
        content = token_content(tcfg.get("pad_token"))
        if content is not None and content in tok["tokens"]:
            pad = tok["tokens"].index(content)
    if pad is not None:
        tok["pad"] = pad
    tok["eot"] = next((tok["tokens"].index(t) for t in EOT_TOKENS if t in tok["tokens"]), None)
    add_bos = tcfg.get("add_bos_token")
    tok["add_bos"] = bool(tok["default_add_bos"] if add_bos is None else add_bos)
    if tok["add_bos"] and tok["bos"] is None:
        refuse("the tokenizer adds a BOS token but names none (bos_token)")
    # The Jinja chat template, stored as llama.cpp stores it (./run --chat recognizes its format).
    template = tcfg.get("chat_template")
    tok["chat_template"] = template if isinstance(template, str) else None
    return tok


def tokenizer_metadata(plan, tok, n_vocab):
    """Pad the vocabulary to the embedding's row count (models often round vocab_size up); added
    tokens beyond it (Gemma 3's <image_soft_token>) are dropped, as llama.cpp's converter does."""
    tokens, types = list(tok["tokens"]), list(tok["types"])
    scores = list(tok["scores"]) if tok["scores"] is not None else None
    while len(tokens) > n_vocab and types[-1] in (3, 4):
        tokens.pop(), types.pop()
        if scores is not None:
            scores.pop()
    if len(tokens) > n_vocab:
        refuse(f"tokenizer has {len(tokens)} tokens but the embedding only {n_vocab} rows")
    for i in range(len(tokens), n_vocab):
        tokens.append(f"[PAD{i}]")
        types.append(5)
        if scores is not None:
            scores.append(0.0)
    for which in ("bos", "eos", "unk", "pad", "eot"):
        if tok.get(which) is not None and not 0 <= tok[which] < n_vocab:
            refuse(f"{which} token id {tok[which]} is outside the vocabulary (size {n_vocab})")
    plan.kv("tokenizer.ggml.model", "str", tok["model"])
    plan.kv("tokenizer.ggml.pre", "str", tok["pre"])
    plan.kv("tokenizer.ggml.tokens", "arr_str", tokens)
    if scores is not None:
        plan.kv("tokenizer.ggml.scores", "arr_f32", scores)
    plan.kv("tokenizer.ggml.token_type", "arr_i32", types)
    if tok["merges"] is not None:
        plan.kv("tokenizer.ggml.merges", "arr_str", tok["merges"])
    names = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
             "pad": "padding_token_id", "eot": "eot_token_id"}
    for which, key in names.items():
        if tok.get(which) is not None:
            plan.kv(f"tokenizer.ggml.{key}", "u32", tok[which])
    plan.kv("tokenizer.ggml.add_bos_token", "bool", tok["add_bos"])
    if tok.get("chat_template"):
        plan.kv("tokenizer.chat_template", "str", tok["chat_template"])
    if tok["add_space_prefix"] is not None:
        plan.kv("tokenizer.ggml.add_space_prefix", "bool", tok["add_space_prefix"])
    if tok.get("metaspace"):  # Hugging Face's Metaspace: its prefix rule, and where merges stop
        plan.kv("tinygpt.tokenizer.metaspace", "bool", True)
        if tok["merges"] is not None and tok["metaspace"] == "split":
            plan.kv("tinygpt.tokenizer.metaspace_split", "bool", True)


def build_vocab_plan(in_dir):
    """--vocab-only: a GGUF with the tokenizer and no tensors, like llama.cpp's ggml-vocab-*.gguf
    (./run reads it for --tokenize). config.json is optional here; without it the architecture
    is written as llama."""
    cfg_path = os.path.join(in_dir, "config.json")
    cfg = {}
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            cfg = json.load(f)
    tok = load_tokenizer(in_dir, cfg)
    plan = Plan()
    plan.kv("general.architecture", "str", ARCHS.get(cfg.get("model_type"), "llama"))
    plan.kv("general.name", "str", os.path.basename(os.path.normpath(in_dir)))
    plan.kv("general.alignment", "u32", ALIGNMENT)
    n_vocab = cfg.get("vocab_size") if isinstance(cfg.get("vocab_size"), int) else len(tok["tokens"])
    tokenizer_metadata(plan, tok, n_vocab)
    return plan


# ----------------------------------------------------------------------------------------------
# GGUF writer

# Tensor data offsets are multiples of this. GGUF's default is 32; 64 (a cache line) keeps every
# row of an F32 matrix whose width is a multiple of 16 on a cache-line boundary, so 512-bit loads
# never straddle two lines: measured here, decoding's F32 dot products read 24.6 GB/s on one core
# from rows 32 bytes off a line, and 36 GB/s from aligned ones.
ALIGNMENT = 64
GGUF_TYPES = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7,
              "str": 8, "arr": 9, "u64": 10, "i64": 11, "f64": 12}
SCALAR_FMT = {"u32": "<I", "i32": "<i", "f32": "<f", "bool": "<?", "u64": "<Q"}
GGML_F32, GGML_F16, GGML_Q8_0, GGML_BF16 = 0, 1, quants.GGML_Q8_0, quants.GGML_BF16


def to_bf16(w):
    """float32 -> BF16 bits (little-endian uint16), rounded to nearest even: the top half of each
    float after adding just under half of the dropped 16 bits, plus the kept lowest bit (finite
    inputs; a BF16 checkpoint's values, widened exactly on loading, come back bit for bit)."""
    x = np.ascontiguousarray(w, dtype="<f4").view("<u4")
    return ((x + np.uint32(0x7fff) + ((x >> 16) & np.uint32(1))) >> 16).astype("<u2")
QK8_0 = 32  # values per Q8_0 block


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, value):
    """Encode a metadata value (type tag + payload). vtype is one of our short names above, with
    "arr_X" for arrays of X."""
    if vtype == "str":
        return struct.pack("<I", GGUF_TYPES["str"]) + gguf_string(value)
    if vtype.startswith("arr_"):
        et = vtype[4:]
        out = [struct.pack("<IIQ", GGUF_TYPES["arr"], GGUF_TYPES[et], len(value))]
        if et == "str":
            out += [gguf_string(v) for v in value]
        else:
            dt = {"f32": "<f4", "i32": "<i4", "u32": "<u4"}[et]
            out.append(np.asarray(value, dtype=dt).tobytes())
        return b"".join(out)
    return struct.pack("<I", GGUF_TYPES[vtype]) + struct.pack(SCALAR_FMT[vtype], value)


def pad_to(n):
    return (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT


FILE_TYPES = {k: v[1] for k, v in quants.DTYPES.items()}  # llama.cpp's general.file_type values


def tensor_nbytes(ttype, shape):
    return quants.nbytes(ttype, shape)


def write_gguf(path, plan, dtype):
    """Header and tensor infos first (all offsets are known from the shapes), then each tensor's
    data as it is loaded: only one tensor is in memory at a time."""
    infos = []
    offset = 0
    names = [t[0] for t in plan.tensors]
    n_layers = len({n.split(".")[1] for n in names if n.startswith("blk.")})
    for name, shape, load in plan.tensors:
        ttype, note = quants.tensor_type(dtype, name, shape, n_layers, "output.weight" in names)
        if note:
            print(f"note: {name}: {note}", file=sys.stderr)
        nbytes = tensor_nbytes(ttype, shape)
        infos.append((name, shape, ttype, offset, nbytes, load))
        offset += nbytes + pad_to(nbytes)

    tmp = path + ".tmp"
    try:
        size = _write_gguf_file(tmp, plan, infos)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)  # never leave a half-written file behind
        raise
    os.replace(tmp, path)
    return len(infos), sum(i[4] for i in infos), size


def _write_gguf_file(tmp, plan, infos):
    with open(tmp, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(plan.metadata)))
        for key, vtype, value in plan.metadata:
            f.write(gguf_string(key) + gguf_value(vtype, value))
        for name, shape, ttype, off, _, _ in infos:
            ne = list(reversed(shape))  # ne[0] is the contiguous dimension (columns)
            f.write(gguf_string(name) + struct.pack("<I", len(ne)))
            f.write(struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", ttype, off))
        f.write(b"\0" * pad_to(f.tell()))
        data_start = f.tell()
        for k, (name, shape, ttype, off, nbytes, load) in enumerate(infos):
            w = load()
            if isinstance(w, Int8Groups):  # llama2.c's version 2
                if ttype == GGML_Q8_0 and w.gs % QK8_0 == 0:
                    data = w.q8_0_bytes()
                    f.write(data + b"\0" * pad_to(nbytes))
                    print(f"[{k + 1:3d}/{len(infos)}] {name:28s} {'x'.join(map(str, shape)):>12s} "
                          "Q8_0 (llama2.c's int8 groups kept)", file=sys.stderr)
                    continue
                w = w.dequantized()
            w = np.asarray(w, dtype=np.float32)
            if w.shape != shape:
                raise AssertionError(f"internal: {name} has shape {w.shape}, planned {shape}")
            if not np.all(np.isfinite(w)):
                refuse(f"{name}: weights contain inf or nan")
            if ttype == GGML_BF16:
                data = to_bf16(w)
                if np.any((data & 0x7fff) == 0x7f80):
                    refuse(f"{name}: weights overflow bfloat16 (use --dtype f32)")
                data = data.tobytes()
            elif ttype not in (GGML_F32, GGML_F16):
                if np.abs(w).max() / 4.0 > 65504.0:  # the smallest level range (Q2_K) is 0..3
                    refuse(f"{name}: {quants.TYPES[ttype][0]} scales overflow float16 "
                           "(use --dtype f32)")
                data = quants.quantize(ttype, w)
            else:
                w = w.astype("<f2" if ttype == GGML_F16 else "<f4")
                if ttype == GGML_F16 and not np.all(np.isfinite(w)):
                    refuse(f"{name}: weights overflow float16 (use --dtype f32)")
                data = np.ascontiguousarray(w).tobytes()
            assert f.tell() == data_start + off and len(data) == nbytes
            f.write(data)
            f.write(b"\0" * pad_to(nbytes))
            print(f"[{k + 1:3d}/{len(infos)}] {name:28s} {'x'.join(map(str, shape)):>12s} "
                  f"{quants.TYPES[ttype][0]}", file=sys.stderr)
            del w
        return f.tell()


# ----------------------------------------------------------------------------------------------
# llama2.c checkpoints (model.bin + tokenizer.bin; the layouts are described in llama2c.h)

L2C_MAGIC = 0x616B3432  # "ak42"


class Int8Groups:
    """A version 2 matrix: int8 values q (rows, cols) with one float32 scale per gs values."""

    def __init__(self, q, scales, gs):
        self.q, self.scales, self.gs = q, scales, gs

    def dequantized(self):
        """q * scale in float32, what llama2.c's runq.c multiplies by."""
        return (self.q.reshape(-1, self.gs).astype(np.float32) * self.scales[:, None]).reshape(self.q.shape)

    def q8_0_bytes(self):
        """Q8_0 blocks the way ./run converts them at load: each group's int8 values kept, its
        scale rounded to float16 (gs a multiple of 32, so a block lies within one group)."""
        blocks = self.q.reshape(-1, QK8_0)
        d = np.repeat(self.scales, self.gs // QK8_0)
        if np.abs(d).max() > 65504.0:
            refuse("a group's scale overflows float16 (use --dtype f32)")
        out = np.empty((blocks.shape[0], 2 + QK8_0), dtype=np.uint8)
        out[:, :2] = d.astype("<f2").view(np.uint8).reshape(-1, 2)
        out[:, 2:] = blocks.view(np.uint8)
        return out.tobytes()


def read_llama2c(path):
    """Header dict and tensors {gguf name: array or Int8Groups}, views of a memory map."""
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    if len(buf) < 28:
        refuse(f"{path}: {len(buf)} bytes, too small for a llama2.c checkpoint")
    magic, version = struct.unpack_from("<Ii", buf, 0)
    if magic == L2C_MAGIC:
        if version not in (1, 2) or len(buf) < 256:
            refuse(f"{path}: llama2.c version {version} (1 or 2, with a 256-byte header) is not supported")
        dims = struct.unpack_from("<7i", buf, 8)
        shared, gs, pos = bool(buf[36]), struct.unpack_from("<i", buf, 37)[0], 256
    else:
        dims, version, gs, pos = struct.unpack_from("<7i", buf, 0), 0, 0, 28
        shared = dims[5] > 0
    dim, hidden, n_layers, n_heads, n_kv, vocab, n_ctx = dims
    vocab = abs(vocab)
    h = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab,
             n_ctx=n_ctx, shared=shared, version=version, gs=gs)
    if min(dim, hidden, n_layers, n_heads, n_kv, vocab, n_ctx) <= 0 or dim % n_heads or \
            n_heads % n_kv or (dim // n_heads) % 2 or (version == 2 and (gs <= 0 or dim % gs or hidden % gs)):
        refuse(f"{path}: llama2.c header {dims} (group size {gs}) is not a valid model")
    hs, kv = dim // n_heads, dim // n_heads * n_kv

    def take(shape, quantized=False):
        nonlocal pos
        n = int(np.prod(shape))
        need = n + 4 * (n // gs) if quantized else 4 * n
        if pos + need > len(buf):
            refuse(f"{path}: truncated ({len(buf)} bytes; the header's shapes need more)")
        if quantized:
            q = buf[pos:pos + n].view(np.int8).reshape(shape)
            scales = np.frombuffer(buf, "<f4", n // gs, pos + n)
            t = Int8Groups(q, scales, gs)
        else:
            t = np.frombuffer(buf, "<f4", n, pos).reshape(shape)
        pos += need
        return t

    mats = {"attn_q": (dim, dim), "attn_k": (kv, dim), "attn_v": (kv, dim), "attn_output": (dim, dim),
            "ffn_gate": (hidden, dim), "ffn_down": (dim, hidden), "ffn_up": (hidden, dim)}
    t = {}

    def layers(name, shape, quantized=False):
        for i in range(n_layers):
            t[f"blk.{i}.{name}.weight"] = take(shape, quantized)

    if version == 0:  # token_embd, then each kind for all layers, final norm, RoPE tables, output
        t["token_embd.weight"] = take((vocab, dim))
        layers("attn_norm", (dim,))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            layers(name, mats[name])
        layers("ffn_norm", (dim,))
        for name in ("ffn_gate", "ffn_down", "ffn_up"):
            layers(name, mats[name])
        t["output_norm.weight"] = take((dim,))
        take((2, n_ctx, hs // 2))  # RoPE tables, not read by llama2.c any more
    else:  # the norms, then the matrices (int8 groups in version 2)
        layers("attn_norm", (dim,))
        layers("ffn_norm", (dim,))
        t["output_norm.weight"] = take((dim,))
        t["token_embd.weight"] = take((vocab, dim), version == 2)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"):
            layers(name, mats[name], version == 2)
    if not shared:
        t["output.weight"] = take((vocab, dim), version == 2)
    if pos != len(buf):
        refuse(f"{path}: {len(buf)} bytes, the header's shapes need {pos}")
    return h, t


def load_tokenizer_bin(path, n_vocab):
    """tokenizer.bin: uint32 max_token_length, then n_vocab x (float32 score, int32 length, bytes).
    The pieces get SentencePiece's spelling back (a space is U+2581, BOS and EOS "<s>", "</s>");
    ids 0, 1, 2 are llama2.c's <unk>, BOS and EOS, <0xNN> pieces its byte fallback."""
    with open(path, "rb") as f:
        buf = f.read()
    pos, tokens, scores, types = 4, [], [], []
    for i in range(n_vocab):
        if pos + 8 > len(buf):
            refuse(f"{path}: {i} tokens, the model's vocabulary has {n_vocab}")
        score, n = struct.unpack_from("<fi", buf, pos)
        if n < 0 or pos + 8 + n > len(buf):
            refuse(f"{path}: truncated in token {i}")
        piece = buf[pos + 8:pos + 8 + n].decode("utf-8", errors="replace")
        pos += 8 + n
        if i in (1, 2) and piece in ("\n<s>\n", "\n</s>\n"):
            piece = piece.strip("\n")
        tokens.append(piece.replace(" ", "\u2581"))
        scores.append(score)
        types.append(6 if re.fullmatch(r"<0x[0-9A-F]{2}>", piece) else 2 if i == 0 else 3 if i in (1, 2) else 1)
    if pos != len(buf):
        refuse(f"{path}: more than the model's {n_vocab} tokens")
    return {"model": "llama", "pre": "default", "tokens": tokens, "scores": scores, "types": types,
            "merges": None, "add_space_prefix": True, "bos": 1, "eos": 2, "unk": 0, "pad": None,
            "add_bos": True}


def build_plan_llama2c(path, tokenizer):
    """llama2.c's weights are already in GGUF's convention (RoPE on adjacent pairs): no permutation."""
    h, t = read_llama2c(path)
    if tokenizer is None:
        tokenizer = os.path.join(os.path.dirname(path), "tokenizer.bin")
        if not os.path.exists(tokenizer):
            refuse(f"no tokenizer.bin beside {path} (give one with --tokenizer)")
    tok = load_tokenizer_bin(tokenizer, h["vocab"])
    plan = Plan()
    plan.kv("general.architecture", "str", "llama")
    plan.kv("general.name", "str", os.path.splitext(os.path.basename(path))[0])
    plan.kv("general.alignment", "u32", ALIGNMENT)
    plan.kv("general.file_type", "u32", 0)  # set in main() from --dtype
    plan_dims(plan, "llama", h["n_ctx"], h["dim"], h["n_layers"], h["hidden"], h["n_heads"])
    plan.kv("llama.attention.head_count_kv", "u32", h["n_kv"])
    plan.kv("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5)  # what llama2.c hard-codes
    plan.kv("llama.rope.freq_base", "f32", 10000.0)
    plan.kv("llama.rope.dimension_count", "u32", h["dim"] // h["n_heads"])
    for name, w in t.items():
        plan.tensor(name, w.q.shape if isinstance(w, Int8Groups) else w.shape, lambda w=w: w)
    tokenizer_metadata(plan, tok, h["vocab"])
    return plan


# ----------------------------------------------------------------------------------------------

ARCHS = {"gpt2": "gpt2", **{t: f["arch"] for t, f in FAMILIES.items()}}


def build_plan(in_dir):
    cfg_path = os.path.join(in_dir, "config.json")
    if not os.path.exists(cfg_path):
        refuse(f"{in_dir}: no config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    model_type = cfg.get("model_type")
    if model_type not in ARCHS:
        refuse(f"config.json: model_type {model_type!r} is not supported ({', '.join(ARCHS)})")
    arch = ARCHS[model_type]
    tok = load_tokenizer(in_dir, cfg)  # before the weights: a cheap, common failure
    ws = WeightSource(in_dir)
    plan = Plan()
    if ws.all_bf16():
        plan.default_dtype = "bf16"
    plan.kv("general.architecture", "str", arch)
    plan.kv("general.name", "str", os.path.basename(os.path.normpath(in_dir)))
    plan.kv("general.alignment", "u32", ALIGNMENT)
    plan.kv("general.file_type", "u32", 0)  # set in main() from --dtype
    if arch == "gpt2":
        tied, n_vocab = plan_gpt2(cfg, ws, arch, plan)
    else:
        tied, n_vocab = plan_llama(cfg, ws, arch, plan)
    tokenizer_metadata(plan, tok, n_vocab)
    return plan


def main(argv=None):
    ap = argparse.ArgumentParser(description="Convert a Hugging Face model directory, or a llama2.c "
                                             "checkpoint with its tokenizer.bin, to GGUF v3.")
    ap.add_argument("in_dir", help="a Hugging Face model directory, or a llama2.c model.bin")
    ap.add_argument("out")
    ap.add_argument("--tokenizer", help="llama2.c's tokenizer.bin for a model.bin (default: "
                                        "tokenizer.bin beside it)")
    ap.add_argument("--dtype", choices=sorted(FILE_TYPES),
                    help="type of the 2-D weight matrices (1-D tensors are always f32); default "
                         "bf16 for a checkpoint whose matrices are all BF16 (the same bits), "
                         "else f32; "
                         "q4_k_m and q5_k_m mix in q6_k as llama.cpp does; rows a type's block "
                         "does not divide fall back as llama.cpp does (see docs/formats.md)")
    ap.add_argument("--vocab-only", action="store_true",
                    help="write the tokenizer alone, no tensors (config.json and weights optional)")
    args = ap.parse_args(argv)
    try:
        if os.path.isfile(args.in_dir):
            if args.vocab_only:
                refuse("--vocab-only is for a model directory")
            plan = build_plan_llama2c(args.in_dir, args.tokenizer)
        elif args.tokenizer:
            refuse("--tokenizer is for a llama2.c model.bin; a model directory has its own")
        elif args.vocab_only:
            plan = build_vocab_plan(args.in_dir)
        else:
            plan = build_plan(args.in_dir)
        dtype = args.dtype or plan.default_dtype
        if args.dtype is None and dtype != "f32":
            print(f"note: the checkpoint's matrices are all BF16: writing them as BF16, the same "
                  f"bits (--dtype f32 to widen them)", file=sys.stderr)
        plan.metadata = [(k, t, FILE_TYPES[dtype] if k == "general.file_type" else v)
                         for k, t, v in plan.metadata]
        n, total, size = write_gguf(args.out, plan, dtype)
    except ExportError as e:
        print(f"export.py: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {n} tensors, {total} bytes of tensor data ({size} bytes total), "
          f"dtype {dtype}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
