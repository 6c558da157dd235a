#!/usr/bin/python3
"""Create tiny random-weight Hugging Face model directories for the tests.

    python3 tests/gen/make_models.py OUT_DIR [VARIANT ...]     (default: all variants)

Each variant is a directory OUT_DIR/<variant> with config.json, weights and tokenizer files laid out
exactly like a real HF checkpoint of that family, so that export.py and reference.py are
exercised on the real conventions (Conv1D layout, "transformer." / "model." prefixes, buffers of
old GPT-2 checkpoints, sharded safetensors, pytorch_model.bin, ...). Everything is seeded and
deterministic; the models are tiny (dim 64, 2 layers) so the tests stay fast on 2 shared cores.

Weights are random but scaled so the logits are non-trivial (std of order 1): a model whose logits
are all ~0 would make every comparison pass vacuously and greedy decoding a coin toss over ties.
"""

import json
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures"


# ----------------------------------------------------------------------------------------------
# Tokenizer files

def tokenizer_paths():
    """(SentencePiece model, GPT-2 BPE dir): the committed fixtures made by make_tokenizers.py."""
    spm_path, bpe_dir = FIXTURES / "spm-kjv.model", FIXTURES / "gpt2-bpe"
    for p in (spm_path, bpe_dir / "vocab.json", bpe_dir / "merges.txt"):
        if not p.exists():
            sys.exit(f"make_models: {p} is missing; run /usr/bin/python3 tests/gen/make_tokenizers.py")
    return spm_path, bpe_dir


def gpt2_vocab_size(bpe_dir):
    with open(bpe_dir / "vocab.json", encoding="utf-8") as f:
        return len(json.load(f))


# Phi-3's tokens beyond its 32,000 SentencePiece pieces, ids 32000 to 32010 (its
# tokenizer_config.json's added_tokens_decoder and added_tokens.json); here they follow the 512
# pieces of spm-kjv, from id 512.
PHI3_ADDED = ["<|endoftext|>", "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>",
              "<|placeholder3|>", "<|placeholder4|>", "<|system|>", "<|end|>", "<|placeholder5|>",
              "<|placeholder6|>", "<|user|>"]


def phi3_added_tokens(n_pieces):
    """{id: text} of Phi-3's added tokens after n_pieces pieces."""
    return {n_pieces + k: t for k, t in enumerate(PHI3_ADDED)}


def write_spm_tokenizer(d, add_bos=True, small=False, phi3=False):
    """tokenizer.model: the 512-piece spm-kjv.model, or with small make_tokenizers.py's 64-piece
    model of Genesis 1:1-5. phi3: Phi-3's added tokens after the pieces, listed as Phi-3 lists
    them (added_tokens_decoder: special, rstrip but <|endoftext|>; added_tokens.json), with
    <|endoftext|> as the EOS and padding token; returns the {id: text} added."""
    if small:
        from make_tokenizers import small_spm_model

        (d / "tokenizer.model").write_bytes(small_spm_model())
    else:
        shutil.copy(tokenizer_paths()[0], d / "tokenizer.model")
    tcfg = {"add_bos_token": add_bos, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
            "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizer"}
    added = {}
    if phi3:
        import sentencepiece as spm

        n = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model")).vocab_size()
        added = phi3_added_tokens(n)

        def entry(text, special, rstrip):
            return {"content": text, "lstrip": False, "normalized": False, "rstrip": rstrip,
                    "single_word": False, "special": special}

        dec = {"0": entry("<unk>", True, False), "1": entry("<s>", True, False),
               "2": entry("</s>", False, True)}
        dec.update({str(i): entry(t, True, t != "<|endoftext|>") for i, t in added.items()})
        tcfg.update(added_tokens_decoder=dec, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
        (d / "added_tokens.json").write_text(json.dumps({t: i for i, t in added.items()}, indent=1))
    (d / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=1))
    return added


def write_metaspace_tokenizer(d):
    """tokenizer.json only: a BPE with byte fallback behind a Metaspace pre-tokenizer, its merges
    not expressible as SentencePiece scores (make_tokenizers.metaspace_bpe_json), learned from
    Genesis 1:1-5 and the tokenizer tests' texts. Returns its vocabulary size."""
    from make_tokenizers import GENESIS, TEXTS, metaspace_bpe_json

    tj = metaspace_bpe_json(GENESIS + TEXTS[1:], 300)
    (d / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
         "tokenizer_class": "LlamaTokenizerFast"}, indent=1))
    return len(tj["model"]["vocab"])


# The pre-tokenizer of GPT-2's tokenizer.json: GPT-2's regex, then bytes as characters
GPT2_PRE_TOKENIZER = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True}


def read_gpt2_bpe(vocab_path, merges_path):
    """(vocab {token: id}, merges ["a b", ...]) from GPT-2's two files (vocab.json or
    encoder.json; merges.txt or vocab.bpe, whose first line is a #version comment)."""
    vocab = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
    merges = [l for l in Path(merges_path).read_text(encoding="utf-8").split("\n")
              if l and not l.startswith("#version")]
    return vocab, merges


def gpt2_tokenizer_json(vocab, merges, pre_tokenizer=GPT2_PRE_TOKENIZER):
    """A byte-level BPE's tokenizer.json as HF tokenizers writes it (BPE model, <|endoftext|> an
    added special token), with GPT-2's pre-tokenizer or another."""
    eot = vocab["<|endoftext|>"]
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": eot, "content": "<|endoftext|>", "single_word": False,
                              "lstrip": False, "rstrip": False, "normalized": True, "special": True}],
            "normalizer": None,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "vocab": vocab, "merges": merges}}


def write_gpt2_tokenizer(d, as_tokenizer_json=False):
    """vocab.json + merges.txt (the classic GPT-2 layout) or a single tokenizer.json as written by
    HF tokenizers (ByteLevel pre-tokenizer with GPT-2's regex, BPE model)."""
    _, bpe_dir = tokenizer_paths()
    if not as_tokenizer_json:
        shutil.copy(bpe_dir / "vocab.json", d / "vocab.json")
        shutil.copy(bpe_dir / "merges.txt", d / "merges.txt")
    else:
        tj = gpt2_tokenizer_json(*read_gpt2_bpe(bpe_dir / "vocab.json", bpe_dir / "merges.txt"))
        (d / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"add_prefix_space": False, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
         "unk_token": "<|endoftext|>", "model_max_length": 1024, "tokenizer_class": "GPT2Tokenizer"},
        indent=1))


# ----------------------------------------------------------------------------------------------
# Weight files

def bf16_bits(a):
    """float32 array -> its values rounded to bfloat16 by torch (as a BF16 checkpoint saved by
    torch holds them), as little-endian uint16 bits."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)
    return t.view(torch.int16).numpy().view("<u2")


def write_safetensors(path, tensors, bf16=False):
    """safetensors by hand: u64 LE header size, JSON header (padded with spaces to 8 bytes, like the
    reference implementation), then the raw little-endian bytes in header order. bf16: float32
    tensors stored as BF16, rounded by torch."""
    header, offset, blobs = {}, 0, []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
                 np.dtype(np.bool_): "BOOL", np.dtype(np.uint8): "U8"}[a.dtype]
        if bf16 and dtype == "F32":
            a, dtype = bf16_bits(a), "BF16"
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def write_weights(d, tensors, storage, bf16=False):
    """The tensors in the variant's storage; bf16: float32 tensors as torch's bfloat16."""
    if storage == "lm_head_only":  # tied: the embedding saved once, as lm_head.weight
        tensors = {("lm_head.weight" if k == "model.embed_tokens.weight" else k): v
                   for k, v in tensors.items()}
        storage = "safetensors"
    if storage == "safetensors":
        write_safetensors(d / "model.safetensors", tensors, bf16)
    elif storage == "sharded":
        # Two shards split in the middle of the (ordered) tensor list, plus the index that maps each
        # tensor to its shard, as transformers' save_pretrained(max_shard_size=...) does.
        names = list(tensors)
        half = len(names) // 2
        shards = {"model-00001-of-00002.safetensors": names[:half],
                  "model-00002-of-00002.safetensors": names[half:]}
        weight_map = {}
        for fname, ns in shards.items():
            write_safetensors(d / fname, {n: tensors[n] for n in ns}, bf16)
            weight_map.update({n: fname for n in ns})
        total = sum(a.nbytes for a in tensors.values())
        (d / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    elif storage == "bin":
        import torch

        sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
        if bf16:
            sd = {k: v.to(torch.bfloat16) if v.dtype == torch.float32 else v for k, v in sd.items()}
        torch.save(sd, d / "pytorch_model.bin")
    else:
        raise ValueError(storage)


# ----------------------------------------------------------------------------------------------
# Variants

def _rng(name):
    return np.random.RandomState(zlib.crc32(name.encode()) & 0x7FFFFFFF)


def _normal(rng, shape, std):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def _norm_weight(rng, n):
    """Norm gains around 1 but not all identical, so a transposed/misplaced norm is caught."""
    return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)


def _silence_eos(output_matrix, eos):
    """Zero the output row of EOS so its logit is exactly 0, below the maximum (logits have std ~1
    over 512 tokens): greedy generation then never stops early and the tests always get the full
    P + 63 rows. (EOS is never fed to the model, so in a tied model its input row is unused.)"""
    output_matrix[eos] = 0.0


LLAMA_VARIANTS = {
    # name: config overrides (on top of LLAMA_BASE) and options
    "llama_gqa": dict(cfg={"num_attention_heads": 8, "num_key_value_heads": 2,
                           "tie_word_embeddings": False}),
    "llama_mqa": dict(cfg={"num_attention_heads": 4, "num_key_value_heads": 1,
                           "tie_word_embeddings": True, "rms_norm_eps": 1e-6},
                      extra_vocab=8),  # embedding 520 rows > 512 tokens: tests vocab padding
    "llama_bias": dict(cfg={"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
                            "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": False,
                            "rope_theta": 500000.0},
                       add_bos=False),
    "mistral_window": dict(cfg={"model_type": "mistral", "architectures": ["MistralForCausalLM"],
                                "num_attention_heads": 4, "num_key_value_heads": 2,
                                "sliding_window": 16, "tie_word_embeddings": False},
                           storage="sharded"),
    "qwen2": dict(cfg={"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                       "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 1000000.0,
                       "tie_word_embeddings": True, "rms_norm_eps": 1e-6,
                       # As in real Qwen2 configs: a window is configured but not used.
                       "use_sliding_window": False, "sliding_window": 32768, "max_window_layers": 21}),
    # Qwen2 with its window on every layer (max_window_layers 0), shorter than the test sequence.
    "qwen2_window": dict(cfg={"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
                              "num_attention_heads": 8, "num_key_value_heads": 4, "rope_theta": 1000000.0,
                              "tie_word_embeddings": False, "use_sliding_window": True,
                              "sliding_window": 12, "max_window_layers": 0}),
    # Llama 3.x's frequency-dependent RoPE scaling (Llama 3.2 1B's factors, tied embeddings), with
    # an original context of 64 so that the test's positions see all three regimes: with head_dim
    # 16 and theta 5e5 the wavelengths are 6.3 (< 64/4: kept), 32 (between: smoothed) and > 64
    # (divided by 8).
    "llama3_scaled": dict(cfg={"num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 500000.0,
                               "tie_word_embeddings": True, "max_position_embeddings": 1024,
                               "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0,
                                                "original_max_position_embeddings": 64}}),
    # Linear RoPE scaling (positions divided by the factor), as in long-context Llama 2 fine-tunes.
    "llama_linear": dict(cfg={"num_attention_heads": 4, "num_key_value_heads": 4,
                              "tie_word_embeddings": False,
                              "rope_scaling": {"type": "linear", "factor": 4.0}}),
    # Qwen3: q/k RMSNorm per head, head_dim 32 with 4 heads in a 64-wide model (q is 128 wide), tied,
    # no biases; a 32k context as in Qwen3-0.6B, which -c must not allocate whole.
    "qwen3": dict(cfg={"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"],
                       "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
                       "rope_theta": 1000000.0, "tie_word_embeddings": True, "rms_norm_eps": 1e-6,
                       "attention_bias": False, "max_position_embeddings": 32768,
                       "use_sliding_window": False, "sliding_window": None, "max_window_layers": 2}),
    # Gemma 3 (as Gemma-3-270M/1B: gemma3_text, tied, GeGLU, sandwich norms stored as w with 1 + w
    # applied, q/k norms, head_dim 32 != 64 / 4): 6 layers so that layers 0-4 are local (window 8,
    # base 10000) and layer 5 global (base 1e6, linear scaling 8 as in Gemma 3 4B+).
    "gemma3": dict(cfg={"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
                        "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 1,
                        "head_dim": 32, "query_pre_attn_scalar": 32, "rope_theta": 1000000.0,
                        "rope_local_base_freq": 10000.0, "sliding_window": 8, "sliding_window_pattern": 6,
                        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
                        "hidden_activation": "gelu_pytorch_tanh", "hidden_act": None,
                        "tie_word_embeddings": True, "rms_norm_eps": 1e-6, "attention_bias": False,
                        "final_logit_softcapping": None, "attn_logit_softcapping": None,
                        "max_position_embeddings": 32768},
                   embed_std=0.1),
    # Gemma 3 27B's convention: query_pre_attn_scalar = dim / heads, not head_dim (scale 1/sqrt(48)),
    # an untied output, and a local RoPE base other than llama.cpp's fixed 10000; 3 layers, all
    # local (the pattern's sixth layer is the first global one).
    "gemma3_scale": dict(cfg={"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
                              "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                              "head_dim": 16, "query_pre_attn_scalar": 48, "rope_theta": 1000000.0,
                              "rope_local_base_freq": 20000.0, "sliding_window": 12,
                              "hidden_activation": "gelu_pytorch_tanh", "hidden_act": None,
                              "tie_word_embeddings": False,
                              "rms_norm_eps": 1e-6, "max_position_embeddings": 256},
                         embed_std=0.1),
    # Phi-3 (mini-4k's conventions): fused q|k|v and gate|up, untied, a sliding window shorter
    # than the test (2047 in the real model); RoPE on half of each head (as Phi-4-mini's 3/4);
    # Phi-3's tokenizer (write_spm_tokenizer: <|endoftext|> ... <|user|> after the pieces).
    "phi3": dict(cfg={"model_type": "phi3", "architectures": ["Phi3ForCausalLM"],
                      "num_attention_heads": 4, "num_key_value_heads": 4, "sliding_window": 16,
                      "partial_rotary_factor": 0.5, "max_position_embeddings": 4096,
                      "original_max_position_embeddings": 4096, "tie_word_embeddings": False,
                      "bos_token_id": 1, "eos_token_id": 2}),
    # Phi-3.5's longrope: per-frequency divisors, long ones once the context exceeds the original
    # 32 (so the default context takes them, and -c 32 the short ones), cosines and sines times
    # sqrt(1 + ln(4096 / 32) / ln(32)); a window longer than the test, as Phi-3.5's 262144.
    "phi3_longrope": dict(cfg={"model_type": "phi3", "architectures": ["Phi3ForCausalLM"],
                               "num_attention_heads": 4, "num_key_value_heads": 2, "sliding_window": 262144,
                               "max_position_embeddings": 4096, "original_max_position_embeddings": 32,
                               "tie_word_embeddings": False,
                               "rope_scaling": {"type": "longrope",
                                                "short_factor": [1.0, 1.02, 1.1, 1.3, 1.7, 2.4, 3.1, 3.9],
                                                "long_factor": [1.0, 1.3, 2.2, 4.5, 9.0, 17.0, 28.0, 40.0]}}),
}

LLAMA_BASE = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
              "intermediate_size": 96, "num_hidden_layers": 2, "max_position_embeddings": 256,
              "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "rope_scaling": None,
              "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32", "initializer_range": 0.02}

GPT2_VARIANTS = {
    "gpt2": dict(cfg={"activation_function": "gelu_new"}, prefix="transformer.", buffers=True),
    "gpt2_noprefix": dict(cfg={"activation_function": "gelu", "tie_word_embeddings": False},
                          prefix="", storage="bin", buffers=True, tokenizer_json=True),
    "gpt2_sinusoidal": dict(cfg={"activation_function": "gelu_pytorch_tanh",
                                 "position_embedding_type": "sinusoidal"},
                            prefix="transformer.", extra_vocab=4),
}

GPT2_BASE = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 64, "n_layer": 2,
             "n_head": 4, "n_positions": 256, "n_ctx": 256, "n_inner": None, "layer_norm_epsilon": 1e-5,
             "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
             "reorder_and_upcast_attn": False, "torch_dtype": "float32"}

VARIANTS = list(LLAMA_VARIANTS) + list(GPT2_VARIANTS)

# The conventions of trained checkpoints found in public repositories (tests/py/test_export.py):
# GQA 8/4 and tied embeddings saved once, under the output's name (safetensors stores one of two
# shared tensors; this one keeps lm_head.weight and no model.embed_tokens.weight). Not in VARIANTS.
REAL_VARIANTS = {
    "llama_lm_head": dict(cfg={"num_attention_heads": 8, "num_key_value_heads": 4,
                               "tie_word_embeddings": True},
                          storage="lm_head_only", tokenizer="metaspace_bpe"),
}

# Made only as golden fixtures (tests/gen/make_fixtures.py), which store positions x vocabulary
# logits: hence the 64-piece tokenizer. Not in VARIANTS.
FIXTURE_VARIANTS = {
    # Context for the KV cache's second tile of 64 keys. RMSNorm's epsilon (1e-3) is 40% of the
    # embeddings' mean square (std 0.05): a norm that drops it is off by >1000x the tolerance.
    "llama_long": dict(cfg={"hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4,
                            "num_key_value_heads": 2, "max_position_embeddings": 128,
                            "rms_norm_eps": 1e-3, "tie_word_embeddings": False},
                       small_tokenizer=True, embed_std=0.05),
    # The attention page at scale (tests/py/test_attn_circuits.py): 32 layers x 32 heads and a
    # context of 640, narrow (head dim 4) so that it stays small (2.6M parameters).
    "llama_page": dict(cfg={"hidden_size": 128, "intermediate_size": 32, "num_hidden_layers": 32,
                            "num_attention_heads": 32, "num_key_value_heads": 8,
                            "max_position_embeddings": 640, "tie_word_embeddings": True}),
}

# A planted coreference head (tests/py/test_attn_probe.py): one layer of 4 heads in which head
# COREF_HEAD attends from the pronoun pieces to the noun pieces and the other heads attend
# uniformly (their queries are zero). The marker pieces' embeddings are one-hot on dims 0
# (pronoun) and 1 (noun), so after the layer's RMSNorm (weights 1) they read 8 = sqrt(64) there;
# the head's query and key read those dims into the slowest RoPE pair (theta 1e6, head_dim 16:
# 5.6e-6 radians per position, nothing over a sentence), so a pronoun's score on a noun is
# 8 * 8 / sqrt(16) = 16 and exactly 0 on every other key (a weight above 0.9999 on the noun, or
# the same weight on every key where there is none). Not in VARIANTS.
COREF_HEAD = 2
COREF_PRONOUNS = ["\u2581he", "\u2581him", "\u2581sh"]  # spm-kjv pieces: "she" is "▁sh" "e"
COREF_NOUNS = ["\u2581king", "\u2581son", "\u2581man"]


def _plant_coref(t, cfg, d):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    D, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    hd = D // nh
    emb = t["model.embed_tokens.weight"]
    emb[:, :2] = 0.0
    for dim, pieces in ((0, COREF_PRONOUNS), (1, COREF_NOUNS)):
        for piece in pieces:
            emb[sp.piece_to_id(piece)] = np.eye(D, dtype=emb.dtype)[dim]
    t["model.layers.0.input_layernorm.weight"][:] = 1.0
    q, k = t["model.layers.0.self_attn.q_proj.weight"], t["model.layers.0.self_attn.k_proj.weight"]
    row = COREF_HEAD * hd + hd // 2 - 1  # Hugging Face's order: the slowest pair is (d/2-1, d-1)
    q[:] = 0.0
    q[row, 0] = 1.0
    k[row] = k[row + hd // 2] = 0.0  # the pair's partner too: keys without a noun are then 0
    k[row, 1] = 1.0


PROBE_VARIANTS = {
    "llama_coref": dict(cfg={"num_hidden_layers": 1, "num_attention_heads": 4,
                             "num_key_value_heads": 4, "rope_theta": 1000000.0,
                             "tie_word_embeddings": False},
                        plant=_plant_coref),
}

# For the quantized types (tests/py/test_quant.py): rows of 256 and 512, so that the K-quants
# apply without fallbacks; 4 layers, so that the q4_k_m mixture has layers of both types. Not in
# VARIANTS.
QUANT_VARIANTS = {
    "llama_256": dict(cfg={"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
                           "num_attention_heads": 4, "num_key_value_heads": 2,
                           "tie_word_embeddings": False}),
}

# Gemma 3 27B's attention scale as llama.cpp's files leave it (tests/py/test_engine.py strips the
# key export.py writes): 62 layers, the 27B's count, by which the reader tells it;
# query_pre_attn_scalar = dim / heads = 16, not head_dim 32. Narrow, so that it stays small. Not in
# VARIANTS.
DEPTH_VARIANTS = {
    "gemma3_27b": dict(cfg={"model_type": "gemma3_text", "architectures": ["Gemma3ForCausalLM"],
                            "num_hidden_layers": 62, "num_attention_heads": 4, "num_key_value_heads": 2,
                            "head_dim": 32, "query_pre_attn_scalar": 16, "intermediate_size": 32,
                            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window": 12,
                            "hidden_activation": "gelu_pytorch_tanh", "hidden_act": None,
                            "tie_word_embeddings": True, "rms_norm_eps": 1e-6,
                            "max_position_embeddings": 256},
                       embed_std=0.1),
}

# make_fixtures.py needs files < 400 KB: a smaller MLP and context, same structure.
SMALL = {"llama": {"intermediate_size": 24, "max_position_embeddings": 128},
         "gpt2": {"n_inner": 64, "n_positions": 128, "n_ctx": 128}}


def make_llama(name, d, small, bf16=False):
    spec = {**LLAMA_VARIANTS, **FIXTURE_VARIANTS, **QUANT_VARIANTS, **DEPTH_VARIANTS,
            **PROBE_VARIANTS, **REAL_VARIANTS}[name]
    rng = _rng(name)
    cfg = dict(LLAMA_BASE, **spec["cfg"])
    if small:
        cfg.update(SMALL["llama"])
    phi3 = cfg["model_type"] == "phi3"
    if spec.get("tokenizer") == "metaspace_bpe":
        added, n_tok = [], write_metaspace_tokenizer(d)
    else:
        added = write_spm_tokenizer(d, add_bos=spec.get("add_bos", True),
                                    small=spec.get("small_tokenizer", False), phi3=phi3)
        import sentencepiece as spm

        n_tok = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model")).vocab_size() + len(added)
    cfg["vocab_size"] = V = n_tok + spec.get("extra_vocab", 0)
    if phi3:  # as Phi-3's config: <|endoftext|> ends and pads; rows padded to a multiple of 64
        cfg["vocab_size"] = V = -(-n_tok // 64) * 64  # (32,064 for its 32,011 tokens)
        cfg["eos_token_id"] = cfg["pad_token_id"] = min(added)
    D, H, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or D // nh
    qwen = cfg["model_type"] == "qwen2"
    gemma = cfg["model_type"] == "gemma3_text"
    qk_norm = cfg["model_type"] in ("qwen3", "gemma3_text")
    # Gemma's norms compute x * (1 + w): their weights are stored around 0
    norm = (lambda r, n: _norm_weight(r, n) - 1.0) if gemma else _norm_weight
    ab, mb = cfg.get("attention_bias", False), cfg.get("mlp_bias", False)
    # A tied embedding is also the output layer: kept small, or the residual stream stays
    # dominated by the current token's embedding and the model just repeats it.
    tied = cfg["tie_word_embeddings"]
    t = {"model.embed_tokens.weight": _normal(rng, (V, D), spec.get("embed_std", 0.15 if tied else 0.5))}
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm(rng, D)
        for proj, shape in [("q", (nh * hd, D)), ("k", (nkv * hd, D)), ("v", (nkv * hd, D)),
                            ("o", (D, nh * hd))]:
            t[p + f"self_attn.{proj}_proj.weight"] = _normal(rng, shape, 1.0 / np.sqrt(shape[1]))
            if ab or (qwen and proj != "o"):
                t[p + f"self_attn.{proj}_proj.bias"] = _normal(rng, shape[:1], 0.1)
        if qk_norm:
            t[p + "self_attn.q_norm.weight"] = norm(rng, hd)
            t[p + "self_attn.k_norm.weight"] = norm(rng, hd)
        t[p + "post_attention_layernorm.weight"] = norm(rng, D)
        if gemma:
            t[p + "pre_feedforward_layernorm.weight"] = norm(rng, D)
            t[p + "post_feedforward_layernorm.weight"] = norm(rng, D)
        for proj, shape in [("gate", (H, D)), ("up", (H, D)), ("down", (D, H))]:
            t[p + f"mlp.{proj}_proj.weight"] = _normal(rng, shape, 1.0 / np.sqrt(shape[1]))
            if mb:
                t[p + f"mlp.{proj}_proj.bias"] = _normal(rng, shape[:1], 0.1)
    if phi3:  # one q|k|v and one gate|up matrix per layer
        for i in range(L):
            p = f"model.layers.{i}."
            t[p + "self_attn.qkv_proj.weight"] = np.concatenate(
                [t.pop(p + f"self_attn.{n}_proj.weight") for n in "qkv"])
            t[p + "mlp.gate_up_proj.weight"] = np.concatenate(
                [t.pop(p + f"mlp.{n}_proj.weight") for n in ("gate", "up")])
    t["model.norm.weight"] = norm(rng, D)
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = _normal(rng, (V, D), 0.3)
    # Phi-3's added tokens end generation too, and its padding rows are no text: silenced as EOS
    silent = [cfg["eos_token_id"]] + (list(range(min(added), V)) if added else [])
    for eos in silent:
        _silence_eos(t["lm_head.weight" if not tied else "model.embed_tokens.weight"], eos)
    if "plant" in spec:
        spec["plant"](t, cfg, d)
    write_weights(d, t, spec.get("storage", "safetensors"), bf16)
    return cfg


def make_gpt2(name, d, small, bf16=False):
    spec = GPT2_VARIANTS[name]
    rng = _rng(name)
    cfg = dict(GPT2_BASE, **spec["cfg"])
    if small:
        cfg.update(SMALL["gpt2"])
    _, bpe_dir = tokenizer_paths()
    n_tok = gpt2_vocab_size(bpe_dir)
    cfg["vocab_size"] = V = n_tok + spec.get("extra_vocab", 0)
    cfg["bos_token_id"] = cfg["eos_token_id"] = n_tok - 1  # <|endoftext|> is the last token
    D, L, C = cfg["n_embd"], cfg["n_layer"], cfg["n_positions"]
    H = cfg["n_inner"] or 4 * D
    pre = spec["prefix"]
    # A tied embedding is also the output layer: kept small, or the residual stream stays
    # dominated by the current token's embedding and the model just repeats it.
    tied = cfg.get("tie_word_embeddings", True)
    t = {pre + "wte.weight": _normal(rng, (V, D), 0.1 if tied else 0.3)}
    if cfg.get("position_embedding_type") != "sinusoidal":
        t[pre + "wpe.weight"] = _normal(rng, (C, D), 0.1)
    for i in range(L):
        p = f"{pre}h.{i}."
        # Conv1D weights are (in, out): note the shapes.
        t[p + "ln_1.weight"] = _norm_weight(rng, D)
        t[p + "ln_1.bias"] = _normal(rng, (D,), 0.05)
        t[p + "attn.c_attn.weight"] = _normal(rng, (D, 3 * D), 1.0 / np.sqrt(D))
        t[p + "attn.c_attn.bias"] = _normal(rng, (3 * D,), 0.05)
        t[p + "attn.c_proj.weight"] = _normal(rng, (D, D), 1.0 / np.sqrt(D))
        t[p + "attn.c_proj.bias"] = _normal(rng, (D,), 0.05)
        t[p + "ln_2.weight"] = _norm_weight(rng, D)
        t[p + "ln_2.bias"] = _normal(rng, (D,), 0.05)
        t[p + "mlp.c_fc.weight"] = _normal(rng, (D, H), 1.0 / np.sqrt(D))
        t[p + "mlp.c_fc.bias"] = _normal(rng, (H,), 0.05)
        t[p + "mlp.c_proj.weight"] = _normal(rng, (H, D), 1.0 / np.sqrt(H))
        t[p + "mlp.c_proj.bias"] = _normal(rng, (D,), 0.05)
        if spec.get("buffers"):
            # Old checkpoints saved the causal mask and the masked fill value as buffers.
            t[p + "attn.bias"] = np.tril(np.ones((C, C), dtype=np.float32)).reshape(1, 1, C, C)
            t[p + "attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    t[pre + "ln_f.weight"] = _norm_weight(rng, D)
    t[pre + "ln_f.bias"] = _normal(rng, (D,), 0.05)
    if not tied:
        t["lm_head.weight"] = _normal(rng, (V, D), 0.3)
    _silence_eos(t["lm_head.weight" if not tied else pre + "wte.weight"], cfg["eos_token_id"])
    write_weights(d, t, spec.get("storage", "safetensors"), bf16)
    write_gpt2_tokenizer(d, as_tokenizer_json=spec.get("tokenizer_json", False))
    return cfg


def make_model(name, out_dir, small=False, bf16=False):
    """Create (or recreate) the HF directory for variant `name` at out_dir; returns its Path.
    bf16: a BF16 checkpoint (every float tensor stored as torch's bfloat16, as most checkpoints
    on the hub now are)."""
    d = Path(out_dir)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    llama = any(name in v for v in (LLAMA_VARIANTS, FIXTURE_VARIANTS, QUANT_VARIANTS, DEPTH_VARIANTS,
                                    PROBE_VARIANTS, REAL_VARIANTS))
    cfg = make_llama(name, d, small, bf16) if llama else make_gpt2(name, d, small, bf16)
    if bf16:
        cfg["torch_dtype"] = "bfloat16"
    (d / "config.json").write_text(json.dumps(cfg, indent=1))
    return d


def main(argv):
    if not argv:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    out, names = Path(argv[0]), argv[1:] or VARIANTS
    for n in names:
        known = VARIANTS + list(FIXTURE_VARIANTS) + list(QUANT_VARIANTS) + list(PROBE_VARIANTS)
        if n not in known:
            print(f"unknown variant {n}; known: {' '.join(known)}", file=sys.stderr)
            return 2
        print(make_model(n, out / n))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
