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


class Reference:
    def __init__(self, hf_dir, dtype=torch.float64, f16_weights=False, weights="f32"):
        """weights: "f32" as stored; "f16" (or f16_weights=True) rounds every 2-D weight to
        float16 and back; "q8_0" rounds it to GGUF's Q8_0 blocks along the rows the file stores
        (F16 where a row is not a multiple of 32 long), so that the engine running a converted
        file is compared with the same weights."""
        if f16_weights:
            weights = "f16"
        self.dir = Path(hf_dir)
        self.cfg = json.loads((self.dir / "config.json").read_text())
        self.dtype = dtype
        self.type = self.cfg["model_type"]
        sd = load_state_dict(self.dir)
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
            if weights == "q8_0" and t.dim() == 2:
                # GGUF rows are (out, in); GPT-2's Conv1D stores (in, out), so its rows are columns
                conv1d = self.type == "gpt2" and any(k in name for k in ("c_attn", "c_proj", "c_fc"))
                t = q8_0_round(t.t()).t() if conv1d else q8_0_round(t)
            w[name] = t.to(dtype)
        self.w = w
        self._tok = None
        self.q8_decode_from = None  # see _in
        self._att = None  # a list collecting each layer's probabilities [heads, T, T] when set
        self._parts = None  # a list collecting each layer's attention inputs when set

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

    def _lin(self, x, name, bias=True):
        y = self._in(x) @ self.w[name + ".weight"].T
        if bias and name + ".bias" in self.w:
            y = y + self.w[name + ".bias"]
        return y

    def _llama(self, ids):
        c, w = self.cfg, self.w
        D, L = c["hidden_size"], c["num_hidden_layers"]
        nh = c["num_attention_heads"]
        nkv = c.get("num_key_value_heads") or nh
        hd = c.get("head_dim") or D // nh
        eps = c.get("rms_norm_eps", 1e-6)
        theta = c.get("rope_theta", 10000.0)
        T = len(ids)

        def rmsnorm(x, g):
            return x * torch.rsqrt(torch.mean(x * x, dim=-1, keepdim=True) + eps) * g

        inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(self.dtype)[:, None, :], emb.sin().to(self.dtype)[:, None, :]

        x = F.embedding(ids, w["embed_tokens.weight"])
        for i in range(L):
            p = f"layers.{i}."
            window = None
            if c["model_type"] == "mistral":
                window = c.get("sliding_window")
            elif c["model_type"] == "qwen2" and c.get("use_sliding_window") and \
                    i >= c.get("max_window_layers", L):
                window = c.get("sliding_window")
            mask = attention_mask(T, window, self.dtype)

            h = rmsnorm(x, w[p + "input_layernorm.weight"])
            q = self._lin(h, p + "self_attn.q_proj").view(T, nh, hd)
            k = self._lin(h, p + "self_attn.k_proj").view(T, nkv, hd)
            v = self._lin(h, p + "self_attn.v_proj").view(T, nkv, hd)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            # GQA: KV head j serves query heads j*g .. j*g+g-1 (HF's repeat_kv).
            k = k.repeat_interleave(nh // nkv, dim=1)
            v = v.repeat_interleave(nh // nkv, dim=1)
            raw = torch.einsum("ihd,jhd->hij", q, k)
            att = F.softmax(raw / math.sqrt(hd) + mask, dim=-1)
            self._record(q, k, v, raw, att, w[p + "self_attn.o_proj.weight"])
            o = torch.einsum("hij,jhd->ihd", att, v).reshape(T, nh * hd)
            x = x + self._lin(o, p + "self_attn.o_proj")

            h = rmsnorm(x, w[p + "post_attention_layernorm.weight"])
            m = F.silu(self._lin(h, p + "mlp.gate_proj")) * self._lin(h, p + "mlp.up_proj")
            x = x + self._lin(m, p + "mlp.down_proj")
        x = rmsnorm(x, w["norm.weight"])
        tied = c.get("tie_word_embeddings", False) or "lm_head.weight" not in w
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
        for i in range(L):
            p = f"h.{i}."
            qkv = conv1d(ln(x, p + "ln_1"), p + "attn.c_attn")
            q, k, v = (t.reshape(T, nh, hd) for t in qkv.split(D, dim=-1))
            raw = torch.einsum("ihd,jhd->hij", q, k)
            att = F.softmax(raw / math.sqrt(hd) + mask, dim=-1)
            self._record(q, k, v, raw, att, w[p + "attn.c_proj.weight"].T)
            o = torch.einsum("hij,jhd->ihd", att, v).reshape(T, D)
            x = x + conv1d(o, p + "attn.c_proj")
            m = F.gelu(conv1d(ln(x, p + "ln_2"), p + "mlp.c_fc"), approximate=approximate)
            x = x + conv1d(m, p + "mlp.c_proj")
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


class Gpt2Tokenizer:
    """GPT-2 byte-level BPE from vocab.json + merges.txt or tokenizer.json."""

    PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

    def __init__(self, d):
        if (d / "tokenizer.json").exists():
            tj = json.loads((d / "tokenizer.json").read_text(encoding="utf-8"))
            vocab = dict(tj["model"]["vocab"])
            merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
            for a in tj.get("added_tokens", []):
                vocab[a["content"]] = a["id"]
        else:
            vocab = json.loads((d / "vocab.json").read_text(encoding="utf-8"))
            merges = [l for l in (d / "merges.txt").read_text(encoding="utf-8").split("\n")
                      if l and not l.startswith("#version")]
        self.vocab = vocab
        self.id_to_tok = {i: t for t, i in vocab.items()}
        self.ranks = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
            list(range(ord("®"), ord("ÿ") + 1))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        self.b2u = {b: chr(c) for b, c in zip(bs, cs)}
        self.u2b = {v: k for k, v in self.b2u.items()}
        tc = d / "tokenizer_config.json"
        cfg = json.loads(tc.read_text()) if tc.exists() else {}
        self.add_bos = cfg.get("add_bos_token", False)
        self.eot = vocab.get("<|endoftext|>")

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), math.inf), k) for k, (a, b) in enumerate(zip(parts, parts[1:]))]
            r, k = min(pairs)
            if r == math.inf:
                break
            parts[k:k + 2] = [parts[k] + parts[k + 1]]
        return parts

    def encode(self, text):
        import regex

        ids = [self.eot] if self.add_bos else []
        for word in regex.findall(self.PATTERN, text):
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
