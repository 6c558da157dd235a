#!/usr/bin/python3
"""Train the small Llama-family model shipped as models/kjv.gguf, on the King James Bible.

    /usr/bin/python3 train.py            # the shipped model (~45-50 min on 2 CPU cores)
    /usr/bin/python3 train.py --smoke    # tiny model, a few steps, written under build/ only
    /usr/bin/python3 train.py --measure 30 --dim 320 ...   # tokens/s of a shape, then exit
    /usr/bin/python3 train.py --induction # a 2-layer model trained on repeated random passages,
                                          # which grows an induction head: models/induction.gguf
                                          # (docs/attention.md)

Corpus: the King James Bible (public domain) from Debian's bible-kjv-text (`bible` program),
rendered as plain text: per chapter a heading line ("Genesis 1"), then one verse per line
(without verse numbers), chapters separated by a blank line. Validation split: every 20th
chapter in book order (chapters 20, 40, 60, ... counting from 1), never seen in training,
neither by the tokenizer nor by the model.

Tokenizer: SentencePiece BPE with byte fallback trained on the training split's lines with the
settings our C tokenizer reproduces exactly (identity normalization, no whitespace cleanup).
Model: HF llama conventions (RMSNorm, rotate-half RoPE, SwiGLU, grouped-query attention, tied
embeddings), float32 on the CPU, AdamW with linear warmup and cosine decay. Everything is
deterministic: fixed seeds, 2 threads, batches drawn from a seeded generator.

Outputs: an HF-style directory (config.json, model.safetensors written by hand,
tokenizer.model, tokenizer_config.json), then export.py writes the GGUF; for the shipped model
also models/kjv-card.json; next to the GGUF kjv-valid.txt (a few held-out chapters for the
perplexity test) and models/kjv-words.txt (every word of the KJV, for the word-validity test).
"""

import argparse
import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import time

import sentencepiece as spm
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.abspath(__file__))
VALID_EVERY = 20  # every 20th chapter is held out


# ----------------------------------------------------------------------------------------------
# Corpus

def kjv_chapters():
    """[(heading, [verse, ...])] for the 1189 chapters, in book order."""
    out = subprocess.run(["bible", "-l100000", "gen1:1-rev22:21"], check=True,
                         capture_output=True).stdout.decode("utf-8")
    chapters = []
    for line in out.split("\n"):
        m = re.fullmatch(r" +\d+ (.*)", line)
        if m:
            chapters[-1][1].append(m.group(1).strip())
        elif line.strip():
            chapters.append((line.strip(), []))  # "Genesis 1", "1 Samuel 3", ...
    assert len(chapters) == 1189 and sum(len(v) for _, v in chapters) == 31102, "unexpected KJV text"
    return chapters


def chapter_text(ch):
    return ch[0] + "\n" + "\n".join(ch[1]) + "\n"


def split_corpus(chapters):
    train = [c for i, c in enumerate(chapters) if (i + 1) % VALID_EVERY]
    valid = [c for i, c in enumerate(chapters) if (i + 1) % VALID_EVERY == 0]
    return "\n".join(map(chapter_text, train)), "\n".join(map(chapter_text, valid)), valid


def words(text):
    """The words of a text, in order, as tests/py/test_shipped.py counts them: split on whitespace,
    strip leading and trailing non-letters, lower-case; pieces without letters are not words."""
    out = []
    for w in text.split():
        w = re.sub(r"^[^A-Za-z]+|[^A-Za-z]+$", "", w).lower()
        if w:
            out.append(w)
    return out


def train_tokenizer(train_text, vocab_size):
    model = io.BytesIO()  # in memory, so no temporary path ends up in the model file
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([l for l in train_text.split("\n") if l]), model_writer=model,
        model_type="bpe", vocab_size=vocab_size, byte_fallback=True,
        normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        split_digits=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, shuffle_input_sentence=False, minloglevel=2)
    return model.getvalue()


# ----------------------------------------------------------------------------------------------
# Model (parameter names as in Hugging Face's LlamaForCausalLM)

class OneDNNLinear(torch.autograd.Function):
    """y = x @ w.T through oneDNN (mkldnn_linear), forward and backward. Debian's torch uses the
    reference BLAS for F.linear (~2 GFLOP/s here); oneDNN's kernels are ~7x faster for training."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        y = torch._C._nn.mkldnn_linear(x.reshape(-1, x.shape[-1]).to_mkldnn(), w.to_mkldnn(), None)
        return y.to_dense().view(*x.shape[:-1], w.shape[0])

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        mm = lambda a, b: torch._C._nn.mkldnn_linear(a.contiguous().to_mkldnn(), b.contiguous().to_mkldnn(), None).to_dense()
        return mm(g2, w.t()).view(x.shape), mm(g2.t(), x2.t())  # dL/dx = g @ w, dL/dw = g.T @ x


def _bmm(a, b):  # (N, m, k) @ (N, k, n), one oneDNN call per matrix: still ~10x aten::bmm here
    bt = b.transpose(1, 2)
    return torch.stack([torch._C._nn.mkldnn_linear(a[i].contiguous().to_mkldnn(), bt[i].contiguous().to_mkldnn(),
                                                   None).to_dense() for i in range(a.shape[0])])


class OneDNNBmm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _bmm(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        return _bmm(g, b.transpose(1, 2)), _bmm(a.transpose(1, 2), g)


FAST = torch.backends.mkldnn.is_available()


def linear(x, w):
    return OneDNNLinear.apply(x, w) if FAST else F.linear(x, w)


def matmul(a, b):  # batched over leading dimensions
    if not FAST:
        return a @ b
    lead = a.shape[:-2]
    out = OneDNNBmm.apply(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]))
    return out.view(*lead, *out.shape[-2:])


class Linear(nn.Linear):
    def forward(self, x):
        return linear(x, self.weight)

def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.nh, self.nkv, self.hd = a.heads, a.kv_heads, a.dim // a.heads
        self.q_proj = Linear(a.dim, self.nh * self.hd, bias=False)
        self.k_proj = Linear(a.dim, self.nkv * self.hd, bias=False)
        self.v_proj = Linear(a.dim, self.nkv * self.hd, bias=False)
        self.o_proj = Linear(self.nh * self.hd, a.dim, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.nh // self.nkv, dim=1)  # KV head j serves query heads j*g..
        v = v.repeat_interleave(self.nh // self.nkv, dim=1)
        att = torch.softmax(matmul(q, k.transpose(-1, -2)) / math.sqrt(self.hd) + mask, dim=-1)
        return self.o_proj(matmul(att, v).transpose(1, 2).reshape(B, T, self.nh * self.hd))


class MLP(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.gate_proj = Linear(a.dim, a.hidden, bias=False)
        self.up_proj = Linear(a.dim, a.hidden, bias=False)
        self.down_proj = Linear(a.hidden, a.dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(a.dim, a.eps), RMSNorm(a.dim, a.eps)
        self.self_attn, self.mlp = Attention(a), MLP(a)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a
        self.embed_tokens = nn.Embedding(a.vocab, a.dim)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.layers))
        self.norm = RMSNorm(a.dim, a.eps)
        hd = a.dim // a.heads
        inv_freq = 1.0 / (a.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        ang = torch.outer(torch.arange(a.ctx, dtype=torch.float64), inv_freq)
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos().float(), persistent=False)
        self.register_buffer("sin", ang.sin().float(), persistent=False)
        self.register_buffer("mask", torch.full((a.ctx, a.ctx), float("-inf")).triu(1), persistent=False)
        for name, p in self.named_parameters():  # GPT-2 style init, scaled residual outputs
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * a.layers) if name.endswith(("o_proj.weight", "down_proj.weight")) else 0.02
                if getattr(a, "fan_in_init", False) and name != "embed_tokens.weight":
                    std = 1 / math.sqrt(p.shape[1])  # larger: q.k starts far from 0, a shorter plateau
                nn.init.normal_(p, 0.0, std)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, self.cos[:T], self.sin[:T], self.mask[:T, :T])
        return linear(self.norm(x), self.embed_tokens.weight)  # tied output layer


# ----------------------------------------------------------------------------------------------
# Data, evaluation

def get_batch(stream, a, gen, bos):
    """a.batch windows of a.ctx + 1 tokens at random offsets. Even rows start with BOS (as a
    prompt does in ./run), odd rows are raw windows (as the later windows of --ppl are)."""
    offs = torch.randint(0, len(stream) - a.ctx - 1, (a.batch,), generator=gen)
    x = torch.stack([stream[o:o + a.ctx + 1] for o in offs])
    x[0::2, 1:] = x[0::2, :-1].clone()
    x[0::2, 0] = bos
    return x[:, :-1], x[:, 1:]


def probe_candidates(sp):
    """The ids ./run --attn-probe induction draws its tokens from (attn_probe.c): the tokens that
    decode to printable text on their own, i.e. pieces without control characters and the byte
    tokens of printable ASCII; never <unk>, BOS or EOS. Training on these ids is training on what
    the probe measures."""
    out = []
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i):
            continue
        if sp.is_byte(i):
            keep = 0x20 <= int(sp.id_to_piece(i)[3:5], 16) < 0x7F  # a byte >= 0x80 is half a character
        else:
            keep = all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in sp.id_to_piece(i).replace("\u2581", " "))
        if keep:
            out.append(i)
    return torch.tensor(out, dtype=torch.long)


def get_induction_batch(a, gen, bos, cand, R=None):
    """A batch of rows shaped like the induction probe: BOS, R distinct tokens drawn from the probe's
    candidates, the same R tokens again (2R + 1 tokens, no filler). The second copy can be predicted
    only by finding the previous occurrence of the current token and taking the token after it. R is
    drawn per batch in 8 <= R <= (ctx - 1) / 2 so that no fixed offset does the same; the probe's
    R = 50 is among them. Returns inputs, targets and R: target i is token i + 1, so targets 0..R-1
    are the first copy (unpredictable), R + 1..2R - 1 the predictable part of the second.
    Training takes the loss on the second copy only: the first copy's targets are distinct tokens
    never seen before in the row, so they teach the model not to predict tokens of its context,
    the opposite of what the second copy teaches (random filler after the copies would do the
    same, on most of the row: docs/attention.md)."""
    if R is None:
        R = int(torch.randint(8, (a.ctx - 1) // 2 + 1, (1,), generator=gen))
    pick = torch.rand(a.batch, len(cand), generator=gen).argsort(dim=1)[:, :R]
    x = torch.cat([torch.full((a.batch, 1), bos, dtype=torch.long), cand[pick], cand[pick]], dim=1)
    return x[:, :-1], x[:, 1:], R


def copy_losses(logits, y, R):
    """Mean loss (nats) on the first copy's targets and on the second copy's predictable ones."""
    l = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none").view(y.shape)
    return l[:, :R].mean().item(), l[:, R + 1:].mean().item()


def best_induction_head(gguf):
    """./run GGUF --attn-probe induction --attn-stats: the atlas line of the head with the highest
    prefix-matching score, as printed."""
    exe = os.path.join(ROOT, "run")
    if not os.path.exists(exe):
        return "(./run not built: make, then ./run %s --attn-probe induction -n 0 --attn-stats)" % gguf
    out = subprocess.run([exe, gguf, "--attn-probe", "induction", "-n", "0", "--attn-stats"], check=True,
                         capture_output=True).stdout.decode()
    lines = out[out.index("layer head"):].split("\n")
    header, rows = lines[0], [l for l in lines[1:] if re.match(r"^\s+\d+\s+\d+\s", l)]
    col = header.split().index("induct")
    return header + "\n" + max(rows, key=lambda l: float(l.split()[col]))


@torch.no_grad()
def ppl_nll(model, ids, L):
    """Mean NLL with ./run --ppl's windows: length L, stride L/2, each window from position 0,
    scoring only targets not scored by the previous window."""
    total, count, prev_end, b, N = 0.0, 0, 0, 0, len(ids)
    while True:
        end = min(b + L, N)
        logp = F.log_softmax(model(ids[None, b:end])[0].double(), dim=-1)
        for i in range(max(prev_end, b + 1), end):
            total -= logp[i - 1 - b, ids[i]].item()
            count += 1
        prev_end = end
        if end == N:
            return total / count
        b += L // 2


@torch.no_grad()
def quick_val(model, windows):
    return sum(F.cross_entropy(model(x[None, :-1])[0], x[1:]).item() for x in windows) / len(windows)


# ----------------------------------------------------------------------------------------------
# Output

def write_safetensors(path, tensors):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        raw = t.detach().contiguous().float().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def save_hf(model, a, tok_model, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    sd = {"model." + k: v for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(out_dir, "model.safetensors"), sd)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.dim,
           "intermediate_size": a.hidden, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
           "num_key_value_heads": a.kv_heads, "max_position_embeddings": a.ctx, "vocab_size": a.vocab,
           "rms_norm_eps": a.eps, "rope_theta": a.rope_theta, "hidden_act": "silu",
           "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(out_dir, "tokenizer.model"), "wb") as f:
        f.write(tok_model)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                   "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, f, indent=1)


def hms(s):
    return f"{int(s) // 60}:{int(s) % 60:02d}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1300)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", help="the HF directory (default build/kjv-hf, build/induction-hf, ...)")
    ap.add_argument("--gguf", help="the GGUF (default models/kjv.gguf, models/induction.gguf, ...)")
    ap.add_argument("--measure", type=int, default=0, metavar="N", help="time N steps and exit")
    ap.add_argument("--smoke", action="store_true", help="tiny model, few steps, output under build/")
    ap.add_argument("--induction", action="store_true",
                    help="a 2-layer model trained on repeated random passages (the probe's tokens), which "
                         "grows an induction head: models/induction.gguf")
    a = ap.parse_args()
    a.eps, a.rope_theta = 1e-5, 10000.0
    ship = not a.smoke and not a.measure and not a.induction
    if a.induction:
        a.dim, a.layers, a.heads, a.kv_heads, a.hidden, a.vocab, a.ctx = 64, 2, 4, 2, 128, 512, 128
        a.batch, a.steps, a.warmup, a.eval_every, a.lr, a.min_lr = 16, 3000, 30, 250, 3e-3, 3e-3
        a.weight_decay, a.fan_in_init = 0.0, True
        a.out_dir = a.out_dir or os.path.join(ROOT, "build", "induction-hf")
        a.gguf = a.gguf or os.path.join(ROOT, "models", "induction.gguf")
    if a.smoke:
        a.dim, a.layers, a.heads, a.kv_heads, a.hidden, a.vocab = 64, 2, 4, 2, 128, 512
        a.batch, a.steps, a.warmup, a.eval_every = 8, 30, 5, 15
        a.out_dir = a.out_dir or os.path.join(ROOT, "build", "kjv-smoke-hf")
        a.gguf = a.gguf or os.path.join(ROOT, "build", "kjv-smoke.gguf")
    a.out_dir = a.out_dir or os.path.join(ROOT, "build", "kjv-hf")
    a.gguf = a.gguf or os.path.join(ROOT, "models", "kjv.gguf")
    t_start = time.time()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)

    chapters = kjv_chapters()
    train_text, valid_text, valid_chapters = split_corpus(chapters)
    tok_model = train_tokenizer(train_text, a.vocab)
    sp = spm.SentencePieceProcessor(model_proto=tok_model)
    # Each split is tokenized as one string, the way ./run tokenizes a file.
    stream = torch.tensor(sp.encode(train_text), dtype=torch.long)
    valid = torch.tensor([sp.bos_id()] + sp.encode(valid_text), dtype=torch.long)
    print(f"corpus: {len(train_text)} + {len(valid_text)} chars (train + valid), "
          f"{len(stream)} + {len(valid)} tokens, vocab {a.vocab} ({time.time() - t_start:.0f} s)", flush=True)

    model = Llama(a)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, dim {a.dim}, {a.layers} layers, {a.heads} heads, "
          f"{a.kv_heads} kv heads, hidden {a.hidden}, ctx {a.ctx}", flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(a.seed)
    vgen = torch.Generator().manual_seed(a.seed + 1)
    voffs = torch.randint(0, len(valid) - a.ctx - 1, (32,), generator=vgen)
    vwindows = [valid[o:o + a.ctx + 1] for o in voffs]
    if a.induction:
        cand = probe_candidates(sp)
        print(f"induction rows: tokens drawn from the probe's {len(cand)} candidates", flush=True)
        ex, ey, _ = get_induction_batch(a, torch.Generator().manual_seed(a.seed + 2), sp.bos_id(), cand, R=50)

        @torch.no_grad()
        def eval_copies():  # a.batch fixed rows shaped like the probe
            return copy_losses(model(ex), ey, 50)

    steps = a.measure or a.steps
    t_train, loss_ema, val, n_tok = time.time(), None, None, 0
    for step in range(1, steps + 1):
        lr = a.lr * step / a.warmup if step <= a.warmup else \
            a.min_lr + 0.5 * (a.lr - a.min_lr) * (1 + math.cos(math.pi * (step - a.warmup) / max(1, a.steps - a.warmup)))
        for g in opt.param_groups:
            g["lr"] = lr
        if a.induction:  # the loss on the second copy's predictable targets only (see get_induction_batch)
            x, y, R = get_induction_batch(a, gen, sp.bos_id(), cand)
            loss = F.cross_entropy(model(x)[:, R + 1:].reshape(-1, a.vocab), y[:, R + 1:].reshape(-1))
        else:
            x, y = get_batch(stream, a, gen, sp.bos_id())
            loss = F.cross_entropy(model(x).view(-1, a.vocab), y.reshape(-1))
        n_tok += x.numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_ema = loss.item() if loss_ema is None else 0.9 * loss_ema + 0.1 * loss.item()
        el = time.time() - t_train
        if step % 10 == 0 or step == steps:
            tps = n_tok / el
            print(f"step {step:5d}/{steps} | loss {loss.item():.4f} (avg {loss_ema:.4f}) | lr {lr:.2e} | "
                  f"{tps:,.0f} tok/s | elapsed {hms(time.time() - t_start)} | left {hms(el / step * (steps - step))}",
                  flush=True)
        if not a.measure and (step % a.eval_every == 0 or step == steps):
            model.eval()
            if a.induction:
                first, second = eval_copies()
                print(f"step {step:5d} | probe-shaped rows (R = 50): loss on the first copy {first:.4f}, "
                      f"on the second {second:.4f} (uniform over the {len(cand)} candidates: "
                      f"{math.log(len(cand)):.4f})", flush=True)
            else:
                val = quick_val(model, vwindows)
                print(f"step {step:5d} | validation loss {val:.4f} (32 fixed windows)", flush=True)
            model.train()
    if a.measure:
        print(f"measure: {a.measure} steps, {a.measure * a.batch * a.ctx / (time.time() - t_train):,.0f} tok/s, "
              f"{(time.time() - t_train) / a.measure:.3f} s/step", flush=True)
        return 0
    train_time = time.time() - t_train

    model.eval()
    if not a.induction:
        val_nll = ppl_nll(model, valid, a.ctx)
        print(f"validation split: loss {val_nll:.4f}, perplexity {math.exp(val_nll):.2f} ({len(valid)} tokens, "
              f"--ppl windows)", flush=True)
    save_hf(model, a, tok_model, a.out_dir)
    f32_bytes = 4 * n_params
    dtype = "f16" if f32_bytes > 16_000_000 else "f32"
    os.makedirs(os.path.dirname(os.path.abspath(a.gguf)), exist_ok=True)
    subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), a.out_dir, a.gguf, "--dtype", dtype], check=True)
    wall = time.time() - t_start
    print(f"wrote {a.gguf} ({os.path.getsize(a.gguf)} bytes, {dtype}); total wall time {hms(wall)}", flush=True)
    if a.induction:
        if os.path.exists(os.path.join(ROOT, "run")):
            probe = subprocess.run([os.path.join(ROOT, "run"), a.gguf, "--attn-probe", "induction", "--tokenize"],
                                   check=True, capture_output=True).stdout.split()
            trained = set(cand.tolist())
            print(f"the probe's {len(probe) - 1} tokens after BOS: "
                  f"{sum(int(t) in trained for t in probe[1:])} among the trained candidates", flush=True)
        print("the head with the best prefix-matching score (./run %s --attn-probe induction -n 0 --attn-stats):\n%s"
              % (os.path.relpath(a.gguf), best_induction_head(a.gguf)), flush=True)
        return 0
    # Next to the GGUF, for tests/py/test_shipped.py: a few held-out chapters (~20 KB) for the
    # perplexity check, and every word of the KJV for the word-validity check.
    models = os.path.dirname(os.path.abspath(a.gguf))
    valid_file = ""
    for ch in valid_chapters:
        if len(valid_file) > 20000:
            break
        valid_file += ("\n" if valid_file else "") + chapter_text(ch)
    with open(os.path.join(models, "kjv-valid.txt"), "w") as f:
        f.write(valid_file)
    with open(os.path.join(models, "kjv-words.txt"), "w") as f:
        f.write("\n".join(sorted(set(words("\n".join(map(chapter_text, chapters)))))) + "\n")
    if not ship:
        return 0
    card = {"file": os.path.basename(a.gguf), "architecture": "llama", "parameters": n_params,
            "layers": a.layers, "heads": a.heads, "kv_heads": a.kv_heads, "dim": a.dim, "hidden": a.hidden,
            "context": a.ctx, "vocab": a.vocab, "tied_embeddings": True, "dtype": dtype,
            "corpus": "King James Bible (public domain), Debian bible-kjv-text; validation = every "
                      f"{VALID_EVERY}th chapter ({len(valid_chapters)} chapters)",
            "train_tokens": len(stream), "valid_tokens": len(valid), "tokens_seen": a.steps * a.batch * a.ctx,
            "steps": a.steps, "batch": a.batch, "lr": a.lr, "min_lr": a.min_lr, "warmup": a.warmup,
            "final_train_loss": round(loss_ema, 4), "valid_loss": round(val_nll, 4),
            "valid_perplexity": round(math.exp(val_nll), 3), "training_seconds": round(train_time),
            "wall_seconds": round(wall), "threads": a.threads,
            "command": "/usr/bin/python3 train.py " + " ".join(sys.argv[1:])}
    with open(os.path.join(models, "kjv-card.json"), "w") as f:
        json.dump(card, f, indent=1)
        f.write("\n")
    print(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
