#!/usr/bin/python3
"""Rebuild a Hugging Face llama directory from a tinygpt GGUF (arch "llama"), so that
reference.py can run a model that is shipped only as GGUF.

    python3 tests/py/gguf_to_hf.py MODEL.gguf OUT_DIR

Writes config.json and model.safetensors (F32; F16 tensors are widened exactly). q and k rows
are un-permuted back to HF's rotate-half order (the inverse of export.py's llama.cpp `permute`),
so the reference applies its own RoPE convention to the original weights. Reads the file with
tests/py/gguf_read.py, independently of export.py. No tokenizer is written: the tests take token
ids from ./run --tokenize.
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gguf_read import read_gguf  # noqa: E402


def unpermute(w, n_head):
    """Inverse of w.reshape(n_head, 2, r // n_head // 2, ...).swapaxes(1, 2).reshape(w.shape)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_to_hf(gguf_path, out_dir):
    g = read_gguf(gguf_path)
    m = g.metadata
    assert m["general.architecture"] == "llama", "only llama GGUFs are supported"
    p = "llama."
    nh, nkv = m[p + "attention.head_count"], m[p + "attention.head_count_kv"]
    dim, n_layers = m[p + "embedding_length"], m[p + "block_count"]
    assert m[p + "rope.dimension_count"] * nh == dim, "head_dim != dim / n_heads is not handled"
    assert not any(k.startswith(p + "attention.sliding_window") for k in m)
    tied = "output.weight" not in g.tensors
    cfg = {"model_type": "llama", "hidden_size": dim, "num_hidden_layers": n_layers,
           "num_attention_heads": nh, "num_key_value_heads": nkv,
           "intermediate_size": m[p + "feed_forward_length"],
           "max_position_embeddings": m[p + "context_length"],
           "vocab_size": g.tensors["token_embd.weight"].shape[0],
           "rms_norm_eps": m[p + "attention.layer_norm_rms_epsilon"],
           "rope_theta": m[p + "rope.freq_base"], "hidden_act": "silu", "tie_word_embeddings": tied,
           "attention_bias": any(n.endswith("attn_q.bias") for n in g.tensors)}
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    per_layer = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
                 "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
    tensors = {}
    for name, t in g.tensors.items():
        w = np.asarray(t, dtype=np.float32)  # F16 -> F32 is exact
        if name in names:
            tensors[names[name]] = w
            continue
        blk, i, kind, suffix = name.split(".")
        if kind == "attn_q":
            w = unpermute(w, nh)
        elif kind == "attn_k":
            w = unpermute(w, nkv)
        tensors[f"model.layers.{i}.{per_layer[kind]}.{suffix}"] = w
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    header, blobs, off = {}, [], 0
    for name, w in tensors.items():
        raw = np.ascontiguousarray(w).astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(w.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    with open(out / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    return out


if __name__ == "__main__":
    gguf_to_hf(sys.argv[1], sys.argv[2])
