"""Independent PyTorch reference for the models tinygpt runs, read straight from a Hugging Face dir.

    ref = Reference(hf_dir)                  # float64; dtype=torch.float32 also possible
    ref = Reference(hf_dir, f16_weights=True)   # every 2-D weight rounded to float16 and back,
                                                 # i.e. what a --dtype f16 GGUF contains
    ref.logits(ids) -> np.ndarray [T, vocab]  (full recomputation, no KV cache)
    ref.attention(ids) -> np.ndarray [layers, heads, T, T]  the softmax probabilities of every
                                              layer and query head, masked entries exactly 0
    ref.attention_parts(ids) -> per layer a dict of np.ndarrays: q, k, v [T, heads, head_dim]
                                              (after RoPE; k, v repeated per query head), raw q.k
                                              [heads, T, T] (unscaled, unmasked), probs, and wo
                                              [dim, heads * head_dim] (out = wo @ o)
    ref.hidden(ids) -> np.ndarray [layers + 1, T, dim]  the residual stream: the embeddings (with
                                              positions and Gemma's scale), then after each layer
    ref.greedy(prompt_ids, n) -> list of n generated ids (argmax, lowest index wins ties)
    ref.encode(text), ref.decode(ids)         (the tokenizer, independently of export.py / ./run)

It shares no code with export.py on purpose: it has its own safetensors / .bin loading, undoes the
"transformer." / "model." prefixes itself, applies GPT-2's Conv1D weights as x @ W + b (as HF does),
and uses HF's rotate-half RoPE on the *unpermuted* q/k weights. So if export.py permuted or
transposed something wrongly, the engine's logits would disagree with this reference.

Everything is written with torch's own functions (F.layer_norm, F.gelu, F.softmax, F.silu,
F.embedding) and explicit masks so it can be read as the definition of each architecture.
"""

import json
import math
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------
# Loading

ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
             "BOOL": torch.bool, "U8": torch.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=ST_DTYPES[info["dtype"]]) if e > b else \
            torch.zeros(0, dtype=ST_DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out


def load_state_dict(d):
    d = Path(d)
    if (d / "model.safetensors").exists():
        return read_safetensors(d / "model.safetensors")
    for index, reader in [("model.safetensors.index.json", read_safetensors),
                          ("pytorch_model.bin.index.json", lambda p: torch.load(p, map_location="cpu"))]:
        if (d / index).exists():
            sd = {}
            for shard in sorted(set(json.loads((d / index).read_text())["weight_map"].values())):
                sd.update(reader(d / shard))
            return sd
    return torch.load(d / "pytorch_model.bin", map_location="cpu")


def sinusoidal_table(n_ctx, dim):
    """PE[pos, 2i] = sin(pos / 10000^(2i/dim)), PE[pos, 2i+1] = cos(same) (Vaswani et al.)."""
    pos = torch.arange(n_ctx, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, two_i / dim)
    pe = torch.zeros(n_ctx, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe


def rotate_half(x):
    """HF's RoPE convention: the pairs are (x[i], x[i + d/2])."""
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def attention_mask(T, window, dtype):
    """Additive mask: query i sees keys j <= i, and with a sliding window W only i - W < j."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i
    if window is not None:
        allowed = allowed & (j > i - window)
    m = torch.zeros(T, T, dtype=dtype)
    return m.masked_fill(~allowed, float("-inf"))


# ----------------------------------------------------------------------------------------------

def q8_0_round(t):
    """The values a Q8_0 GGUF stores for a 2-D weight (rows, cols), from GGUF's definition of the
    type (ggml's reference quantizer), not from export.py's code: per block of 32 along a row,
    d = max|x| / 127 in float32 (a zero block gets d = 0), q = x * (1 / d) rounded half away from
    zero, and the block holds f16(d) * q. Rows whose length is not a multiple of 32 are stored as
    F16 instead."""
    w = t.contiguous().to(torch.float32)
    if w.shape[1] % 32:
        return w.half().float()
    b = w.reshape(-1, 32)
    d = b.abs().amax(dim=1, keepdim=True) / 127.0
    inv = torch.where(d != 0, 1.0 / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(d))
    x = b * inv
    q = torch.sign(x) * torch.floor(x.abs() + 0.5)
    return (d.half().float() * q).reshape(w.shape)


def q8_0_activations(x):
    """What the engine's decoding kernels do to a matrix product's input when the weights are
    Q8_0: per block of 32, d = max|x| / 127 in float32, q = x / d rounded half to even, and the
    product sees f16(d) * q."""
    T, n = x.shape
    b = x.to(torch.float32).reshape(T, n // 32, 32)
    d = b.abs().amax(-1, keepdim=True) / 127.0
    inv = torch.where(d != 0, 1.0 / torch.where(d != 0, d, torch.ones_like(d)), torch.zeros_like(d))
    q = torch.round(b * inv)
    return (q * d.half().float()).reshape(T, n).to(x.dtype)


def read_llama2c(path, half_scales=False):
    """A llama2.c checkpoint, read from the layouts of llama2.c's export.py (legacy: 7 int32 and a
    negative vocab_size for an own classifier; "ak42" version 1 fp32 and version 2 int8 groups
    with an fp32 scale each, both with a 256-byte header), as an HF Llama config and state dict.
    llama2.c rotates q and k on pairs (2i, 2i+1); HF's rotate-half pairs (i, i + d/2), so q and k
    rows are permuted the way HF's conversion of Meta's checkpoints does. Version 2 weights are
    q * scale in float32, what llama2.c's runq.c multiplies by (its activations aside); with
    half_scales, q * float16(scale), the Q8_0 blocks ./run converts them to."""
    buf = Path(path).read_bytes()
    magic, version = struct.unpack_from("<Ii", buf, 0)
    if magic == 0x616B3432:
        dims = struct.unpack_from("<7i", buf, 8)
        shared = buf[36] == 1
        gs = struct.unpack_from("<i", buf, 37)[0] if version == 2 else None
        pos = 256
    else:
        version, gs, pos = 0, None, 28
        dims = struct.unpack_from("<7i", buf, 0)
        shared = dims[5] > 0
    D, H, L, nh, nkv, V, T = dims
    V = abs(V)
    hs = D // nh
    kv = hs * nkv

    def take(shape, quantized=False):
        nonlocal pos
        n = int(np.prod(shape))
        if quantized:
            q = np.frombuffer(buf, np.int8, n, pos).astype(np.float32)
            s = np.frombuffer(buf, "<f4", n // gs, pos + n)
            if half_scales:
                s = s.astype(np.float16).astype(np.float32)
            pos += n + 4 * (n // gs)
            return (q.reshape(-1, gs) * s[:, None]).reshape(shape)
        a = np.frombuffer(buf, "<f4", n, pos).reshape(shape)
        pos += 4 * n
        return a

    mats = {"wq": (D, D), "wk": (kv, D), "wv": (kv, D), "wo": (D, D), "w1": (H, D), "w2": (D, H),
            "w3": (H, D)}
    t = {}
    if version == 0:
        t["emb"] = take((V, D))
        t["attn_norm"] = [take((D,)) for _ in range(L)]
        for k in ("wq", "wk", "wv", "wo"):
            t[k] = [take(mats[k]) for _ in range(L)]
        t["ffn_norm"] = [take((D,)) for _ in range(L)]
        for k in ("w1", "w2", "w3"):
            t[k] = [take(mats[k]) for _ in range(L)]
        t["norm"] = take((D,))
        take((2, T, hs // 2))  # the RoPE tables llama2.c no longer reads
    else:
        t["attn_norm"] = [take((D,)) for _ in range(L)]
        t["ffn_norm"] = [take((D,)) for _ in range(L)]
        t["norm"] = take((D,))
        t["emb"] = take((V, D), version == 2)
        for k in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
            t[k] = [take(mats[k], version == 2) for _ in range(L)]
    t["cls"] = t["emb"] if shared else take((V, D), version == 2)
    assert pos == len(buf), f"{path}: {len(buf)} bytes, the layout needs {pos}"

    def rotate_half_rows(w, heads):  # rows (2i, 2i+1) of each head -> (i, i + hs/2)
        return w.reshape(heads, hs // 2, 2, D).transpose(0, 2, 1, 3).reshape(heads * hs, D)

    sd = {"model.embed_tokens.weight": t["emb"], "model.norm.weight": t["norm"],
          "lm_head.weight": t["cls"]}
    for i in range(L):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = t["attn_norm"][i]
        sd[p + "post_attention_layernorm.weight"] = t["ffn_norm"][i]
        sd[p + "self_attn.q_proj.weight"] = rotate_half_rows(t["wq"][i], nh)
        sd[p + "self_attn.k_proj.weight"] = rotate_half_rows(t["wk"][i], nkv)
        sd[p + "self_attn.v_proj.weight"] = t["wv"][i]
        sd[p + "self_attn.o_proj.weight"] = t["wo"][i]
        sd[p + "mlp.gate_proj.weight"] = t["w1"][i]
        sd[p + "mlp.down_proj.weight"] = t["w2"][i]
        sd[p + "mlp.up_proj.weight"] = t["w3"][i]
    cfg = {"model_type": "llama", "hidden_size": D, "intermediate_size": H, "num_hidden_layers": L,
           "num_attention_heads": nh, "num_key_value_heads": nkv, "vocab_size": V,
           "max_position_embeddings": T, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": shared}
    return cfg, {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in sd.items()}


class Reference:
    @classmethod
    def llama2c(cls, path, dtype=torch.float64, weights="f32", half_scales=False):
        """The reference for a llama2.c checkpoint (read_llama2c); weights as in __init__."""
        ref = cls.__new__(cls)
        ref.cfg, sd = read_llama2c(path, half_scales)
        ref._setup(None, sd, dtype, weights)
        return ref

    def __init__(self, hf_dir, dtype=torch.float64, f16_weights=False, weights="f32"):
        """weights: "f32" as stored; "f16" (or f16_weights=True) rounds every 2-D weight to
        float16 and back, "bf16" to bfloat16 and back; "q8_0" rounds it to GGUF's Q8_0 blocks along the rows the file stores
        (F16 where a row is not a multiple of 32 long), so that the engine running a converted
        file is compared with the same weights."""
        if f16_weights:
            weights = "f16"
        self.cfg = json.loads((Path(hf_dir) / "config.json").read_text())
        self._setup(Path(hf_dir), load_state_dict(hf_dir), dtype, weights)

    def _setup(self, hf_dir, sd, dtype, weights):
        self.dir = hf_dir
        self.dtype = dtype
        self.type = self.cfg["model_type"]
        w = {}
        for name, t in sd.items():
            for p in ("transformer.", "model."):
                if name.startswith(p):
                    name = name[len(p):]
            if name.endswith("attn.bias") and t.dim() == 4 or name.endswith("attn.masked_bias") \
                    or name.endswith("rotary_emb.inv_freq"):
                continue  # buffers of old checkpoints, not weights
            t = t.float()
            if weights == "f16" and t.dim() == 2:
                t = t.half().float()  # exactly what an F16 GGUF stores
            if weights == "bf16" and t.dim() == 2:
                t = t.bfloat16().float()  # a BF16 GGUF's, rounded by torch
            if weights == "q8_0" and t.dim() == 2:
                # GGUF rows are (out, in); GPT-2's Conv1D stores (in, out), so its rows are columns
                conv1d = self.type == "gpt2" and any(k in name for k in ("c_attn", "c_proj", "c_fc"))
                t = q8_0_round(t.t()).t() if conv1d else q8_0_round(t)
            w[name] = t.to(dtype)
        # tied embeddings saved once, as the output layer: Hugging Face ties them back on load
        emb = "wte.weight" if self.type == "gpt2" else "embed_tokens.weight"
        if emb not in w and "lm_head.weight" in w:
            w[emb] = w["lm_head.weight"]
        self.w = w
        self._tok = None
        self.q8_decode_from = None  # see _in
        self.kv_f16 = False  # True: keys and values rounded to float16 as stored (see _kv)
        self._att = None  # a list collecting each layer's probabilities [heads, T, T] when set
        self._parts = None  # a list collecting each layer's attention inputs when set
        # the context the engine allocated: longrope takes its long factors when it exceeds the
        # original one (None: when the sequence does, as Hugging Face decides)
        self.context = None
        self._hid = None  # a list collecting the residual stream [T, dim] after each layer when set

    # -- model -----------------------------------------------------------------------------------

    def logits(self, ids):
        ids = torch.as_tensor(list(ids), dtype=torch.long)
        with torch.no_grad():
            out = self._gpt2(ids) if self.type == "gpt2" else self._llama(ids)
        return out.to(torch.float64).numpy()

    def attention(self, ids):
        self._att = []
        try:
            self.logits(ids)
            return torch.stack(self._att).to(torch.float64).numpy()
        finally:
            self._att = None

    def attention_parts(self, ids):
        self._parts = []
        try:
            self.logits(ids)
            return [{k: v.to(torch.float64).numpy() for k, v in p.items()} for p in self._parts]
        finally:
            self._parts = None

    def hidden(self, ids):
        self._hid = []
        try:
            self.logits(ids)
            return torch.stack(self._hid).to(torch.float64).numpy()
        finally:
            self._hid = None

    def _stream(self, x):
        if self._hid is not None:
            self._hid.append(x)

    def _record(self, q, k, v, raw, att, wo):
        if self._att is not None:
            self._att.append(att)
        if self._parts is not None:
            self._parts.append(dict(q=q, k=k, v=v, raw=raw, probs=att, wo=wo))

    def greedy(self, prompt_ids, n):
        ids = list(prompt_ids)
        for _ in range(n):
            ids.append(int(np.argmax(self.logits(ids)[-1])))  # np.argmax: first max wins
        return ids[len(prompt_ids):]

    def _in(self, x):
        """The input of a matrix product: for a Q8_0 file, positions from q8_decode_from on are
        quantized to Q8_0 blocks as the engine's kernels do (the engine quantizes every position,
        so its tests set 0; None keeps float activations throughout)."""
        if self.q8_decode_from is None or x.shape[-1] % 32:
            return x
        x = x.clone()
        x[self.q8_decode_from:] = q8_0_activations(x[self.q8_decode_from:])
        return x

    def _kv(self, k, v):
        """Keys (after RoPE) and values as attention reads them: for the engine's --kv-cache f16,
        rounded to float16 from float32 (the engine's own values), to nearest even."""
        if not self.kv_f16:
            return k, v
        def r(t):
            return t.to(torch.float32).to(torch.float16).to(self.dtype)
        return r(k), r(v)

    def _lin(self, x, name, bias=True):
        y = self._in(x) @ self.w[name + ".weight"].T
        if bias and name + ".bias" in self.w:
            y = y + self.w[name + ".bias"]
        return y

    def _rope_inv_freq(self, hd, theta, scaling, T=None):
        """inv_freq[i] = theta^(-2i/hd), then rescaled as Hugging Face's rope init functions do
        (modeling_rope_utils): "linear" divides every frequency by the factor; "llama3" keeps the
        high frequencies (wavelength below original_context / high_freq_factor), divides the low
        ones (wavelength above original_context / low_freq_factor) by the factor, and blends the
        two in between, linearly in original_context / wavelength."""
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
        if kind == "default":
            return inv
        factor = scaling.get("factor")
        if kind == "linear":
            return inv / factor
        if kind in ("longrope", "su"):
            # Phi-3: the frequencies divided by long_factor once the sequence is longer than
            # original_max_position_embeddings, else by short_factor
            orig = self.cfg["original_max_position_embeddings"]
            ext = scaling["long_factor"] if T is not None and T > orig else scaling["short_factor"]
            return inv / torch.tensor(ext, dtype=torch.float64)
        if kind == "llama3":
            lo, hi = scaling["low_freq_factor"], scaling["high_freq_factor"]
            old = scaling["original_max_position_embeddings"]
            wavelen = 2 * math.pi / inv
            scaled = torch.where(wavelen > old / lo, inv / factor, inv)
            smooth = (old / wavelen - lo) / (hi - lo)
            blended = (1 - smooth) * scaled / factor + smooth * scaled
            medium = (wavelen >= old / hi) & (wavelen <= old / lo)
            return torch.where(medium, blended, scaled)
        raise ValueError(f"rope_scaling {kind!r} is not in the reference")

    def _cos_sin(self, T, hd, theta, scaling):
        inv = self._rope_inv_freq(hd, theta, scaling, self.context or T)
        freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        # longrope scales cos and sin (attention_factor, by default from the context's growth)
        m = 1.0
        kind = (scaling or {}).get("rope_type", (scaling or {}).get("type"))
        if kind in ("longrope", "su"):
            c = self.cfg
            growth = c["max_position_embeddings"] / c["original_max_position_embeddings"]
            m = scaling.get("attention_factor") or (
                math.sqrt(1 + math.log(growth) / math.log(c["original_max_position_embeddings"]))
                if growth > 1 else 1.0)
        return (m * emb.cos()).to(self.dtype)[:, None, :], (m * emb.sin()).to(self.dtype)[:, None, :]

    def _layer_window(self, i):
        """The sliding window of layer i (None = full causal attention), per family."""
        c, L = self.cfg, self.cfg["num_hidden_layers"]
        t = c["model_type"]
        if t in ("mistral", "phi3"):
            return c.get("sliding_window")
        if t in ("qwen2", "qwen3") and c.get("use_sliding_window") and i >= c.get("max_window_layers", L):
            return c.get("sliding_window")
        if t == "gemma3_text" and self._gemma_sliding(i):
            return c["sliding_window"]
        return None

    def _gemma_sliding(self, i):
        """Gemma 3's layer types: config.layer_types, else every layer but each
        sliding_window_pattern-th (default 6) is a sliding one."""
        c = self.cfg
        if c.get("layer_types"):
            return c["layer_types"][i] == "sliding_attention"
        return bool((i + 1) % c.get("sliding_window_pattern", 6))

    def _llama(self, ids):
        """Llama, Mistral, Qwen2, Qwen3 and Gemma 3 (text): pre-norm decoder layers with RoPE
        (rotate-half on Hugging Face's own q/k weights), grouped-query attention and a gated MLP.
        Qwen3 and Gemma 3 RMS-normalize each head of q and k before RoPE; Gemma 3 also scales the
        embeddings by sqrt(hidden_size), normalizes with x * (1 + w), normalizes each sublayer's
        output before the residual add, uses GeGLU (tanh), scores scaled by
        query_pre_attn_scalar^-0.5, and gives sliding layers their own unscaled RoPE base."""
        c, w = self.cfg, self.w
        t = c["model_type"]
        gemma = t == "gemma3_text"
        D, L = c["hidden_size"], c["num_hidden_layers"]
        nh = c["num_attention_heads"]
        nkv = c.get("num_key_value_heads") or nh
        hd = c.get("head_dim") or D // nh
        rot = int(hd * c.get("partial_rotary_factor", 1.0))  # Phi: RoPE on the first rot dims
        eps = c.get("rms_norm_eps", 1e-6)
        theta = c.get("rope_theta", 10000.0)
        T = len(ids)

        def rope(x, cos, sin):
            r, rest = x[..., :rot], x[..., rot:]
            return torch.cat((r * cos + rotate_half(r) * sin, rest), dim=-1)

        def rmsnorm(x, g):
            y = x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + eps)
            return y * (1.0 + g) if gemma else y * g

        rope_global = self._cos_sin(T, rot, theta, c.get("rope_scaling"))
        rope_local = self._cos_sin(T, rot, c.get("rope_local_base_freq", 10000.0), None) if gemma else None
        scale = c["query_pre_attn_scalar"] ** -0.5 if gemma else 1.0 / math.sqrt(hd)
        if gemma:
            act = {"gelu_pytorch_tanh": lambda g: F.gelu(g, approximate="tanh")}[c["hidden_activation"]]
        else:
            act = F.silu

        x = F.embedding(ids, w["embed_tokens.weight"])
        if gemma:
            x = x * torch.tensor(D ** 0.5, dtype=self.dtype)
        self._stream(x)
        for i in range(L):
            p = f"layers.{i}."
            mask = attention_mask(T, self._layer_window(i), self.dtype)
            cos, sin = rope_local if gemma and self._gemma_sliding(i) else rope_global

            h = rmsnorm(x, w[p + "input_layernorm.weight"])
            if p + "self_attn.qkv_proj.weight" in w:  # Phi-3: one projection, rows q | k | v
                q, k, v = self._lin(h, p + "self_attn.qkv_proj").split([nh * hd, nkv * hd, nkv * hd], dim=-1)
            else:
                q, k, v = (self._lin(h, p + f"self_attn.{n}_proj") for n in "qkv")
            q, k, v = q.reshape(T, nh, hd), k.reshape(T, nkv, hd), v.reshape(T, nkv, hd)
            if p + "self_attn.q_norm.weight" in w:
                q = rmsnorm(q, w[p + "self_attn.q_norm.weight"])
                k = rmsnorm(k, w[p + "self_attn.k_norm.weight"])
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            k, v = self._kv(k, v)
            # GQA: KV head j serves query heads j*g .. j*g+g-1 (HF's repeat_kv).
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
            raw = torch.einsum("ihd,jhd->hij", q, k)
            att = F.softmax(raw * scale + mask, dim=-1)
            self._record(q, k, v, raw, att, w[p + "self_attn.o_proj.weight"])
            o = torch.einsum("hij,jhd->ihd", att, v).reshape(T, nh * hd)
            o = self._lin(o, p + "self_attn.o_proj")
            if gemma:
                o = rmsnorm(o, w[p + "post_attention_layernorm.weight"])
            x = x + o

            ffn_norm = "pre_feedforward_layernorm" if gemma else "post_attention_layernorm"
            h = rmsnorm(x, w[p + ffn_norm + ".weight"])
            if p + "mlp.gate_up_proj.weight" in w:  # Phi-3: one projection, gate then up
                gate, up = self._lin(h, p + "mlp.gate_up_proj").chunk(2, dim=-1)
            else:
                gate, up = self._lin(h, p + "mlp.gate_proj"), self._lin(h, p + "mlp.up_proj")
            m = act(gate) * up
            m = self._lin(m, p + "mlp.down_proj")
            if gemma:
                m = rmsnorm(m, w[p + "post_feedforward_layernorm.weight"])
            x = x + m
            self._stream(x)
        x = rmsnorm(x, w["norm.weight"])
        tied = c.get("tie_word_embeddings", gemma) or "lm_head.weight" not in w
        return self._in(x) @ (w["embed_tokens.weight"] if tied else w["lm_head.weight"]).T

    def _gpt2(self, ids):
        c, w = self.cfg, self.w
        D, L, nh = c["n_embd"], c["n_layer"], c["n_head"]
        hd = D // nh
        eps = c.get("layer_norm_epsilon", 1e-5)
        T = len(ids)
        act = c.get("activation_function", "gelu_new")
        approximate = "none" if act == "gelu" else "tanh"

        def conv1d(x, name):  # HF Conv1D: weight is (in, out), y = x @ W + b
            return self._in(x) @ w[name + ".weight"] + w[name + ".bias"]

        def ln(x, name):
            return F.layer_norm(x, (D,), w[name + ".weight"], w[name + ".bias"], eps)

        x = F.embedding(ids, w["wte.weight"])
        if c.get("position_embedding_type") == "sinusoidal":
            x = x + sinusoidal_table(T, D).to(self.dtype)
        else:
            x = x + w["wpe.weight"][:T]
        mask = attention_mask(T, None, self.dtype)
        self._stream(x)
        for i in range(L):
            p = f"h.{i}."
            qkv = conv1d(ln(x, p + "ln_1"), p + "attn.c_attn")
            q, k, v = (t.reshape(T, nh, hd) for t in qkv.split(D, dim=-1))
            k, v = self._kv(k, v)
            raw = torch.einsum("ihd,jhd->hij", q, k)
            att = F.softmax(raw / math.sqrt(hd) + mask, dim=-1)
            self._record(q, k, v, raw, att, w[p + "attn.c_proj.weight"].T)
            o = torch.einsum("hij,jhd->ihd", att, v).reshape(T, D)
            x = x + conv1d(o, p + "attn.c_proj")
            m = F.gelu(conv1d(ln(x, p + "ln_2"), p + "mlp.c_fc"), approximate=approximate)
            x = x + conv1d(m, p + "mlp.c_proj")
            self._stream(x)
        x = ln(x, "ln_f")
        tied = c.get("tie_word_embeddings", True) or "lm_head.weight" not in w
        return self._in(x) @ (w["wte.weight"] if tied else w["lm_head.weight"]).T

    # -- tokenizer -------------------------------------------------------------------------------

    @property
    def tokenizer(self):
        if self._tok is None:
            self._tok = SpmTokenizer(self.dir) if (self.dir / "tokenizer.model").exists() \
                else Gpt2Tokenizer(self.dir)
        return self._tok

    def encode(self, text):
        return self.tokenizer.encode(text)

    def decode(self, ids):
        return self.tokenizer.decode(ids)


class SpmTokenizer:
    def __init__(self, d):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
        tc = d / "tokenizer_config.json"
        cfg = json.loads(tc.read_text()) if tc.exists() else {}
        self.add_bos = cfg.get("add_bos_token", True)

    def encode(self, text):
        return ([self.sp.bos_id()] if self.add_bos else []) + self.sp.encode(text)

    def decode_bytes(self, ids):
        """Bytes of the generated continuation, as a streaming decoder prints them: each piece's
        text with "▁" -> " " and byte tokens <0xXX> as raw bytes; control tokens print nothing.
        Unlike sp.decode, the leading space of the first piece is kept (it follows the prompt)."""
        out = b""
        for i in ids:
            if i >= self.sp.vocab_size() or self.sp.is_control(i) or self.sp.is_unknown(i):
                continue
            piece = self.sp.id_to_piece(i)
            if self.sp.is_byte(i):
                out += bytes([int(piece[3:5], 16)])
            else:
                out += piece.replace("\u2581", " ").encode()
        return out

    def decode(self, ids):
        return self.sp.decode([i for i in ids if i < self.sp.vocab_size()])


def byte_chars():
    """GPT-2's byte -> character map: printable Latin-1 bytes stand for themselves, the others for
    the characters from U+0100 on, in byte order, so that every byte sequence is visible text."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Gpt2Tokenizer:
    """GPT-2 byte-level BPE from vocab.json + merges.txt or tokenizer.json (Gpt2Tokenizer(dir)),
    or with another family's pre-tokenizer (Gpt2Tokenizer.from_rules)."""

    PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

    def __init__(self, d):
        if (d / "tokenizer.json").exists():
            tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
            vocab = dict(tj["model"]["vocab"])
            merges = tj["model"]["merges"]
            for a in tj.get("added_tokens", []):
                vocab[a["content"]] = a["id"]
        else:
            vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
            merges = [l for l in (d / "merges.txt").read_text(encoding="utf-8").split("\n")
                      if l and not l.startswith("#version")]
        tc = d / "tokenizer_config.json"
        cfg = json.loads(tc.read_text()) if tc.exists() else {}
        self._setup(vocab, merges, self._gpt2_words, add_bos=cfg.get("add_bos_token", False))

    @classmethod
    def from_rules(cls, vocab, merges, words, nfc=False, ignore_merges=False):
        """The same BPE under other pre-tokenizer rules: words(text) -> the pieces BPE runs on
        (a tokenizer.json's own regex, applied with the `regex` module), NFC first when nfc, and
        with ignore_merges (Llama 3) a piece that is in the vocabulary whole stays whole."""
        tok = cls.__new__(cls)
        tok._setup(vocab, merges, words, nfc=nfc, ignore_merges=ignore_merges)
        return tok

    @classmethod
    def from_tokenizer_json(cls, tj):
        """The BPE a tokenizer.json (a dict) describes, its rules read from the file: the
        normalizer (none or NFC), the pre-tokenizer (ByteLevel, or a Sequence of Split on a regex
        with Isolated behaviour, Digits and ByteLevel; each applied with the `regex` module) and
        the model's ignore_merges."""
        import regex

        def split(pattern):  # Isolated: the matches and the text between them, each a piece
            def pieces(text):
                out, at = [], 0
                for m in pattern.finditer(text):
                    out += [text[at:m.start()], m.group()]
                    at = m.end()
                return [p for p in out + [text[at:]] if p]
            return pieces

        def step(p):
            if p["type"] == "Split":
                assert p["behavior"] == "Isolated" and not p["invert"], p
                return split(regex.compile(p["pattern"]["Regex"]))
            if p["type"] == "Digits":
                return split(regex.compile(r"\p{N}" if p["individual_digits"] else r"\p{N}+"))
            assert p["type"] == "ByteLevel" and not p["add_prefix_space"], p
            return (lambda t: regex.findall(cls.PATTERN, t)) if p["use_regex"] else (lambda t: [t])

        pre = tj["pre_tokenizer"]
        steps = [step(p) for p in (pre["pretokenizers"] if pre["type"] == "Sequence" else [pre])]

        def words(text):
            pieces = [text]
            for s in steps:
                pieces = [w for p in pieces for w in s(p)]
            return pieces

        assert tj["normalizer"] in (None, {"type": "NFC"}), tj["normalizer"]
        return cls.from_rules(tj["model"]["vocab"], tj["model"]["merges"], words,
                              nfc=tj["normalizer"] is not None,
                              ignore_merges=tj["model"].get("ignore_merges", False))

    def _setup(self, vocab, merges, words, add_bos=False, nfc=False, ignore_merges=False):
        self.vocab, self.words, self.nfc, self.ignore_merges = vocab, words, nfc, ignore_merges
        self.id_to_tok = {i: t for t, i in vocab.items()}
        # merges: "a b" strings (merges.txt, older tokenizer.json) or [a, b] pairs (newer ones)
        self.ranks = {tuple(m.split(" ") if isinstance(m, str) else m): r for r, m in enumerate(merges)}
        self.b2u = byte_chars()
        self.u2b = {v: k for k, v in self.b2u.items()}
        self.add_bos = add_bos
        self.eot = vocab.get("<|endoftext|>")

    def _gpt2_words(self, text):
        import regex

        return regex.findall(self.PATTERN, text)

    def _bpe(self, word):
        if self.ignore_merges and word in self.vocab:
            return [word]
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), math.inf), k) for k, (a, b) in enumerate(zip(parts, parts[1:]))]
            r, k = min(pairs)
            if r == math.inf:
                break
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        return parts

    def encode(self, text):
        if self.nfc:
            import unicodedata

            text = unicodedata.normalize("NFC", text)
        ids = [self.eot] if self.add_bos else []
        for word in self.words(text):
            ids += [self.vocab[p] for p in self._bpe("".join(self.b2u[b] for b in word.encode()))]
        return ids

    def decode_bytes(self, ids):
        out = b""
        for i in ids:
            t = self.id_to_tok.get(i)
            if t is None or i == self.eot:
                continue
            out += bytes(self.u2b[ch] for ch in t)
        return out

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")
