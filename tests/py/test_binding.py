"""Model binding (model.c) on fixtures edited in their metadata: the shapes it derives must be the
ones it checks, and memory it does not need must not be asked for.

    make && /usr/bin/python3 -m pytest -q tests/test_binding.py
"""

import resource
import struct
import subprocess

import pytest

from conftest import ROOT, RUN, need_run
from gguf_read import read_gguf

FIX = ROOT / "tests" / "fixtures"


def kv_u32(key, value):
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<II", 4, value)


def kv_str(key, value):
    k, v = key.encode(), value.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<IQ", 8, len(v)) + v


def with_metadata(src, dst, entries):
    """src with metadata entries inserted before its first one. The entries are padded to a
    multiple of 64 bytes with a string entry, so that the data section moves by whole alignment
    units and every tensor offset stays valid."""
    buf = src.read_bytes()
    g = read_gguf(src)
    assert 64 % g.metadata["general.alignment"] == 0
    extra = b"".join(entries)
    n = len(entries)
    pad = (-(len(extra) + 8 + 3 + 4 + 8)) % 64  # one more string entry "pad" of `pad` bytes
    extra += kv_str("pad", "x" * pad)
    assert len(extra) % 64 == 0
    (n_kv,) = struct.unpack_from("<Q", buf, 16)
    head = buf[:16] + struct.pack("<Q", n_kv + n + 1)
    dst.write_bytes(head + extra + buf[24:])
    return dst


def with_u32(src, dst, key, value):
    """src with the existing u32 metadata `key` set to value (same size, edited in place)."""
    buf = bytearray(src.read_bytes())
    k = key.encode()
    at = buf.index(struct.pack("<Q", len(k)) + k + struct.pack("<I", 4))
    struct.pack_into("<I", buf, at + 8 + len(k) + 4, value)
    dst.write_bytes(bytes(buf))
    return dst


def run_raw(model, *args, mem_limit=None):
    def limit():
        if mem_limit:
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
    return subprocess.run([str(RUN), str(model), *args], capture_output=True, text=True,
                          timeout=120, preexec_fn=limit)


def test_metadata_editing_keeps_the_file_valid(tmp_path):
    need_run()
    m = with_metadata(FIX / "gpt2.gguf", tmp_path / "gpt2.gguf", [kv_u32("note.x", 1)])
    r = run_raw(m, "-i", "In the beginning", "-n", "4", "-t", "0")
    ref = run_raw(FIX / "gpt2.gguf", "-i", "In the beginning", "-n", "4", "-t", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ref.stdout


def test_gpt2_head_dim_sizes_the_fused_projection(tmp_path):
    """GPT-2's fused q|k|v rows are q_dim + 2 kv_dim, with q_dim = heads * key_length. A file whose
    key_length does not match its fused tensor must be refused with the tensor's shape (an engine
    that split the tensor by embedding_length read past its query buffer)."""
    need_run()
    m = with_metadata(FIX / "gpt2.gguf", tmp_path / "gpt2_kl.gguf",
                      [kv_u32("gpt2.attention.key_length", 8),
                       kv_u32("gpt2.attention.value_length", 8)])
    r = run_raw(m, "-i", "In the beginning", "-n", "4", "-t", "0")
    assert r.returncode == 1, f"exit {r.returncode}: {r.stderr}"
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "blk.0.attn_qkv.weight" in err[0] and "[64, 96]" in err[0], err


@pytest.mark.parametrize("attn", [False, True])
def test_no_probabilities_buffer_unless_asked(tmp_path, attn):
    """A 32k context with batches of 4096: the attention probabilities (batch x heads x context
    floats, 4 GiB here) are not allocated when no attention output is asked, and are sized by the
    positions captured when one is. Run under a 3 GiB address-space limit."""
    need_run()
    m = with_u32(FIX / "llama_gqa.gguf", tmp_path / "long.gguf", "llama.context_length", 32768)
    args = ["-i", "In the beginning", "-n", "4", "-t", "0", "-b", "4096", "-c", "32768"]
    if attn:
        args.append("--attn-stats")
    r = run_raw(m, *args, mem_limit=3 << 30)
    assert r.returncode == 0, r.stderr


def kv_f32(key, value):
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<If", 6, value)


def test_rope_scaling_keys(tmp_path):
    """llama.cpp's rope.scaling keys: linear with factor 1 computes exactly what the file without
    them does, factor 4 something else; a scaling type this program does not run is refused."""
    need_run()
    args = ["-i", "In the beginning God created", "-n", "12", "-t", "0"]
    ref = run_raw(FIX / "llama_gqa.gguf", *args)
    outs = {}
    for factor in (1.0, 4.0):
        m = with_metadata(FIX / "llama_gqa.gguf", tmp_path / f"lin{factor}.gguf",
                          [kv_str("llama.rope.scaling.type", "linear"),
                           kv_f32("llama.rope.scaling.factor", factor)])
        r = run_raw(m, *args)
        assert r.returncode == 0, r.stderr
        outs[factor] = r.stdout
    assert outs[1.0] == ref.stdout and outs[4.0] != ref.stdout
    m = with_metadata(FIX / "llama_gqa.gguf", tmp_path / "yarn.gguf",
                      [kv_str("llama.rope.scaling.type", "yarn")])
    r = run_raw(m, *args)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(err) == 1, r.stderr
    assert "llama.rope.scaling.type 'yarn' is unknown (none, linear)" in err[0], err
