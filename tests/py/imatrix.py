"""An importance matrix for llama.cpp's quantizer (which the i-quants below 3 bits and IQ3_XXS
require): per matrix, the mean square of each input column over a text, as llama.cpp's
llama-imatrix collects it, computed by the PyTorch reference on the F32 model and written in
tests/oracles/llama_quantize.c's --imatrix format (records of a u32 length, the tensor's name
NUL-padded to that length, a multiple of 4; a u32 count; that many little-endian float32).

    write_imatrix(src_gguf, out_path, work_dir, token_ids)
"""

import struct

from gguf_read import read_gguf
from gguf_to_hf import gguf_to_hf
from reference import Reference

# the Hugging Face names of the matrices (reference.py's) -> GGUF's
HF_TO_GGUF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


class ImatrixReference(Reference):
    """The reference, summing the squares of each layer matrix's inputs per column."""

    def __init__(self, hf_dir):
        super().__init__(hf_dir)
        self.sums, self.count = {}, {}

    def _lin(self, x, name, bias=True):
        parts = name.split(".")
        key = f"blk.{parts[1]}.{HF_TO_GGUF['.'.join(parts[2:])]}.weight"
        rows = x.reshape(-1, x.shape[-1]).double()
        self.sums[key] = self.sums.get(key, 0) + (rows ** 2).sum(0).numpy()
        self.count[key] = self.count.get(key, 0) + rows.shape[0]
        return super()._lin(x, name, bias)


def write_imatrix(src, path, work, ids):
    """The importance matrix of src (an F32 llama GGUF) over the token ids (at most the model's
    context), written to path."""
    ref = ImatrixReference(gguf_to_hf(src, work / f"{src.stem}.imatrix.hf"))
    ref.logits(ids[:int(read_gguf(src).metadata["llama.context_length"])])
    out = b""
    for key in sorted(ref.sums):
        name = key.encode() + b"\0"
        name += b"\0" * (-len(name) % 4)
        v = (ref.sums[key] / ref.count[key]).astype("<f4")
        out += struct.pack("<I", len(name)) + name + struct.pack("<I", v.size) + v.tobytes()
    path.write_bytes(out)
    return path
