"""A small, independent GGUF v3 reader used by the tests to check what export.py wrote.

    g = read_gguf(path)
    g.metadata["llama.block_count"], g.metadata_types[...], g.tensors["token_embd.weight"]

It deliberately shares no code with export.py so that a bug in the writer is not mirrored here.
Tensors come back as numpy arrays with shape (rows, cols) = reversed GGUF ne (ne[0] is the
contiguous dimension), in their stored dtype (float32 or float16; BF16 and the quantized types
as float32, exactly).
"""

import struct
from dataclasses import dataclass, field

import numpy as np

from quant_decode import BLOCKS, decode

VALUE_TYPES = {0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
               8: "str", 9: "arr", 10: "u64", 11: "i64", 12: "f64"}
SCALARS = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f",
           "bool": "<?", "u64": "<Q", "i64": "<q", "f64": "<d"}
GGML_TYPES = {0: np.float32, 1: np.float16}
BF16 = 30  # bfloat16: the top 16 bits of a float32


@dataclass
class GGUF:
    version: int
    metadata: dict = field(default_factory=dict)        # key -> python value (lists for arrays)
    metadata_types: dict = field(default_factory=dict)  # key -> "u32", "str", "arr[str]", ...
    tensors: dict = field(default_factory=dict)         # name -> np.ndarray (rows, cols)
    tensor_types: dict = field(default_factory=dict)    # name -> ggml type number
    tensor_offsets: dict = field(default_factory=dict)  # name -> offset in the data section
    key_order: list = field(default_factory=list)
    tensor_order: list = field(default_factory=list)
    data_start: int = 0


class _Cursor:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take("<Q")
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8")
        self.pos += n
        return s

    def value(self, vtype):
        t = VALUE_TYPES[vtype]
        if t == "str":
            return self.string(), t
        if t == "arr":
            et, n = self.take("<I"), self.take("<Q")
            vals = [self.value(et)[0] for _ in range(n)]
            return vals, f"arr[{VALUE_TYPES[et]}]"
        return self.take(SCALARS[t]), t


GGML_Q8_0 = 8


def tensor_infos(c, n_tensors):
    """The n_tensors descriptors at the cursor: (name, dims, type, offset) each."""
    infos = []
    for _ in range(n_tensors):
        name = c.string()
        n_dims = c.take("<I")
        ne = [c.take("<Q") for _ in range(n_dims)]
        ttype, off = c.take("<I"), c.take("<Q")
        infos.append((name, ne, ttype, off))
    return infos


def read_gguf(path):
    with open(path, "rb") as f:
        buf = f.read()
    c = _Cursor(buf)
    assert buf[:4] == b"GGUF", f"{path}: bad magic {buf[:4]!r}"
    c.pos = 4
    version, n_tensors, n_kv = c.take("<I"), c.take("<Q"), c.take("<Q")
    g = GGUF(version=version)
    for _ in range(n_kv):
        key = c.string()
        assert key not in g.metadata, f"duplicate key {key}"
        g.metadata[key], g.metadata_types[key] = c.value(c.take("<I"))
        g.key_order.append(key)
    align = g.metadata.get("general.alignment", 32)
    infos = tensor_infos(c, n_tensors)
    for name, _, _, off in infos:
        assert off % align == 0, f"{name}: offset {off} not aligned to {align}"
    data_start = c.pos + (align - c.pos % align) % align
    assert all(b == 0 for b in buf[c.pos:data_start]), "non-zero padding before the data section"
    g.data_start = data_start
    for name, ne, ttype, off in infos:
        n = int(np.prod(ne))
        start = data_start + off
        if ttype in BLOCKS:  # quantized: blocks along each row (quant_decode.py), as float32
            tname, block, size = BLOCKS[ttype]
            assert ne[0] % block == 0, f"{name}: {tname} rows of {ne[0]}"
            nb = n // block
            assert start + nb * size <= len(buf), f"{name}: data past the end of the file"
            raw = np.frombuffer(buf, dtype=np.uint8, count=nb * size, offset=start)
            a = decode(ttype, raw).reshape(list(reversed(ne)))
        elif ttype == BF16:  # widened by a shift into a float32's top half
            assert start + 2 * n <= len(buf), f"{name}: data past the end of the file"
            raw = np.frombuffer(buf, dtype="<u2", count=n, offset=start)
            a = (raw.astype(np.uint32) << 16).view(np.float32).reshape(list(reversed(ne)))
        else:
            dt = np.dtype(GGML_TYPES[ttype]).newbyteorder("<")
            assert start + n * dt.itemsize <= len(buf), f"{name}: data past the end of the file"
            a = np.frombuffer(buf, dtype=dt, count=n, offset=start).reshape(list(reversed(ne)))
        g.tensors[name] = a
        g.tensor_types[name] = ttype
        g.tensor_offsets[name] = off
        g.tensor_order.append(name)
    return g


def without_key(path, key, out):
    """Copies the GGUF file at path to out with the metadata key left out (a file as another
    converter writes it, for a reader's defaults); the tensor data is moved to the new alignment
    boundary, its offsets being relative to the data section."""
    with open(path, "rb") as f:
        buf = f.read()
    c = _Cursor(buf)
    c.pos = 4
    version, n_tensors, n_kv = c.take("<I"), c.take("<Q"), c.take("<Q")
    kept, found, align = [], False, 32
    for _ in range(n_kv):
        start = c.pos
        name = c.string()
        value, _ = c.value(c.take("<I"))
        if name == key:
            found = True
        else:
            kept.append(buf[start:c.pos])
        if name == "general.alignment":
            align = value
    assert found, f"{path}: no metadata key {key}"
    infos_start = c.pos
    for _ in range(n_tensors):
        c.string()
        c.pos += 4 + 8 * c.take("<I") + 4 + 8  # n_dims, ne, type, offset
    data = buf[c.pos + (align - c.pos % align) % align:]
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv - 1) + b"".join(kept) + \
        buf[infos_start:c.pos]
    with open(out, "wb") as f:
        f.write(head + bytes((align - len(head) % align) % align) + data)


def tensor_bytes(ttype, ne):
    """Bytes of a tensor of ggml type ttype and shape ne."""
    n = int(np.prod(ne))
    if ttype in BLOCKS:
        _, block, size = BLOCKS[ttype]
        return n // block * size
    return n * (2 if ttype == BF16 else np.dtype(GGML_TYPES[ttype]).itemsize)


def realigned(path, align, out):
    """Copies the GGUF file at path to out with general.alignment = align (1, 2 or 4: a legal file
    as another writer may make it) and each tensor moved to a file offset that is a multiple of
    align and of no larger power of two (odd for 1, 2 mod 4 for 2, 4 mod 8 for 4), so that none
    is aligned for more than align."""
    assert align in (1, 2, 4)
    with open(path, "rb") as f:
        buf = f.read()
    c = _Cursor(buf)
    c.pos = 4
    version, n_tensors, n_kv = c.take("<I"), c.take("<Q"), c.take("<Q")
    kept, old_align = [], 32
    for _ in range(n_kv):
        start = c.pos
        name = c.string()
        value, _ = c.value(c.take("<I"))
        if name == "general.alignment":
            old_align = value
        else:
            kept.append(buf[start:c.pos])
    key = b"general.alignment"
    kept.append(struct.pack("<Q", len(key)) + key + struct.pack("<II", 4, align))
    infos = tensor_infos(c, n_tensors)
    old_start = c.pos + (old_align - c.pos % old_align) % old_align
    head_len = 24 + sum(len(k) for k in kept) + sum(8 + len(n.encode()) + 4 + 8 * len(ne) + 4 + 8
                                                   for n, ne, _, _ in infos)
    data_start = head_len + (align - head_len % align) % align
    pos, placed = data_start, []
    for name, ne, ttype, off in infos:
        while pos % align or pos % (2 * align) == 0:
            pos += 1
        size = tensor_bytes(ttype, ne)
        placed.append((name, ne, ttype, pos - data_start, buf[old_start + off:old_start + off + size]))
        pos += size
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kept)) + b"".join(kept)
    for name, ne, ttype, off, _ in placed:
        n = name.encode()
        head += struct.pack("<Q", len(n)) + n + struct.pack("<I", len(ne)) + \
            b"".join(struct.pack("<Q", x) for x in ne) + struct.pack("<IQ", ttype, off)
    assert len(head) == head_len
    data = bytearray(pos - data_start)
    for _, _, _, off, raw in placed:
        data[off:off + len(raw)] = raw
    with open(out, "wb") as f:
        f.write(head + bytes(data_start - head_len) + bytes(data))
