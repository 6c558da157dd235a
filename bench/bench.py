#!/usr/bin/python3
"""make bench: tinygpt's speed against the machine's limits, measured in the same run.

    python3 bench/bench.py [--quick] [--shapes 15M,42M,110M]
                           [--types f32,f16,bf16,q8_0,q4_0,q4_k,q4_k_m,iq4_xs,iq3_m,iq2_m]
                           [--threads 1,2]
                           [--prompt-tokens 128[,512,1024]] [--reps 3] [--llamacpp auto|on|off]
                           [--kv-cache f32|f16]
                           [--out bench/results.md]

1. Runs build/bench/limits (bench/limits.c): read bandwidth and FP32 FMA peak with 1 and 2 threads,
   before the runs and again after them; the higher of the two is used (the memory bus is shared
   with other machines, and a limit measured while they were busy would flatter every row).
2. Builds random-weight llama models at llama2.c's three shapes as Hugging Face directories
   (build/bench/<shape>-hf, reused when present) and exports each in F32, F16, BF16, Q8_0, Q4_0, Q4_K and
   the Q4_K_M mixture with export.py
   (build/bench/<shape>-<type>.gguf, re-exported when export.py or the directory is newer), and
   the i-quant file types IQ4_XS, IQ3_M and IQ2_M from the F32 file with llama.cpp's own quantizer
   (build/tools/llama_quantize), given an all-ones importance matrix (IQ2_M's types require one;
   the speed does not depend on its values).
3. For each prompt length x shape x type x threads: `./run MODEL -i PROMPT -n 128 -t 0 --threads N`
   with a prompt of exactly P tokens (128 unless --prompt-tokens says more; BOS included, checked
   with --tokenize; longer prompts show attention's growing share), median of --reps runs of the prompt and
   generation tok/s that ./run prints on stderr, and the peak RSS of each run (wait4's ru_maxrss).
4. Beside each row, llama.cpp on the same file with the same prompt ids and the same number of
   greedy tokens and threads (bench/llamacpp.mjs: node-llama-cpp 3.21.1's prebuilt llama.cpp v0.4.0,
   installed by `cd tests/oracles && npm ci --omit=optional`; skipped with a note when missing, or
   with --llamacpp off): its own perf counters (prompt eval and eval time, what its tools print),
   median of --reps runs, and the ratio ours / llama.cpp. The JavaScript binding's cost per token
   (wall clock around the same calls minus llama.cpp's counters) is reported, not counted.
   Other processes' CPU use is measured around every row: llama.cpp's threads spin while they
   wait, so on a busy 2-core machine its 2-thread figures collapse; such rows are marked busy.
5. Prints the tables and writes them, with the machine, the limits, the date and the commit, to --out.

Limits (stated again in the output):
- decode limit (tok/s) = read bandwidth(threads) / bytes of weights read per token, where the bytes
  are the stored sizes of every 2-D weight tensor (attention q/k/v/o, FFN gate/up/down, output) plus
  one row of token_embd (a token reads only its own embedding row). Norm vectors (~0.01%) and the
  KV cache are not counted. The memory bus is shared and its bandwidth drifts from minute to
  minute, so each row also measures it beside itself (bench/limits, best of 3 passes, right before
  and right after our runs of the row, the higher used) and states the decode % of that limit.
- prompt limit (tok/s) = FMA peak(threads) / FLOPs per prompt token, FLOPs per prompt token =
  2 x (parameters of the layers' 2-D weights) + 2 x vocab x dim / P: every prompt position goes
  through every layer matrix (an FMA per weight), the output head is computed once, for the last
  of the P prompt positions. Attention scores (QK^T, PV) are not counted (~1-4% at P = 128).
- peak RSS allowance = (file size + KV cache) x 1.1, KV cache = 2 x layers x context x kv_dim x
  2 B (--kv-cache f16, the default, passed to ./run and llama.cpp alike; 4 B with --kv-cache f32;
  the decode columns that count the KV read count the same bytes per element). F16 is llama.cpp's
  default; its F32 cache (the bench's setting before 2026-11-27) decodes about 3x slower, so
  comparing with it flattered ours.

Random weights (seeded), scaled as in tests/gen/make_models.py; the SentencePiece fixture tokenizer
(tests/fixtures/spm-kjv.model, 512 tokens; export pads the vocabulary to 32,000); the output row of
EOS is zero, so its logit (0) is never the greedy maximum and every run generates all 128 tokens.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "gen"))
import make_models  # noqa: E402  (write_safetensors, write_spm_tokenizer, the test models' scales)
sys.path.insert(0, str(ROOT))
import quants  # noqa: E402  (every GGUF type's block: elements and bytes, as export.py writes them)
sys.path.insert(0, str(ROOT / "tests" / "py"))
import quant_decode  # noqa: E402  (the blocks of the types export.py does not write: the i-quants)

BUILD = ROOT / "build" / "bench"
RUN = ROOT / "run"
LIMITS = BUILD / "limits"
EXPORT = ROOT / "export.py"
LLAMACPP = ROOT / "bench" / "llamacpp.mjs"
NODE_LLAMA = ROOT / "tests" / "oracles" / "node_modules" / "node-llama-cpp"
BUSY_LIMIT = 0.1  # cores other processes may use during a row before it is marked busy

VOCAB, CONTEXT = 32000, 2048  # room for a 1024-token prompt and the generated tokens
# llama2.c's stories15M / 42M / 110M: dim, layers, heads (= kv heads), FFN hidden
SHAPES = {"15M": (288, 6, 6, 768), "42M": (512, 8, 8, 1376), "110M": (768, 12, 12, 2048)}
TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q4_k_m", "iq4_xs", "iq3_m", "iq2_m"]
LLAMACPP_FTYPES = {"iq4_xs", "iq3_m", "iq2_m"}  # quantized by llama.cpp, the rest by export.py
QUANTIZE = ROOT / "build" / "tools" / "llama_quantize"
QUANTIZE_LIBS = ROOT / "tests/oracles/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
BLOCKS = {**quant_decode.BLOCKS, **quants.TYPES}  # type: (name, elements, bytes per block)
PROMPT_TOKENS, N_PREDICT = 128, 128  # the default prompt length
LOAD_LIMIT = 0.5

# Text for the prompt (cut to exactly PROMPT_TOKENS tokens).
TEXT = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and "
    "void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of "
    "the waters. And God said, Let there be light: and there was light. And God saw the light, that "
    "it was good: and God divided the light from the darkness. And God called the light Day, and the "
    "darkness he called Night. And the evening and the morning were the first day. And God said, Let "
    "there be a firmament in the midst of the waters, and let it divide the waters from the waters. "
    "And God made the firmament, and divided the waters which were under the firmament from the "
    "waters which were above the firmament: and it was so. And God called the firmament Heaven. And "
    "the evening and the morning were the second day. And God said, Let the waters under the heaven "
    "be gathered together unto one place, and let the dry land appear: and it was so. And God called "
    "the dry land Earth; and the gathering together of the waters called he Seas: and God saw that "
    "it was good. And God said, Let the earth bring forth grass, the herb yielding seed, and the "
    "fruit tree yielding fruit after his kind, whose seed is in itself, upon the earth: and it was so.")


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# Models

def hf_config(shape):
    dim, layers, heads, hidden = SHAPES[shape]
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": dim,
            "intermediate_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": heads, "max_position_embeddings": CONTEXT, "vocab_size": VOCAB,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu", "rope_scaling": None,
            "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
            "torch_dtype": "float32", "initializer_range": 0.02}


def make_hf(shape):
    """build/bench/<shape>-hf: config.json, model.safetensors, tokenizer. Reused when its config is
    the one we would write; built in a temporary directory and renamed, so never half-written."""
    d = BUILD / f"{shape}-hf"
    cfg = hf_config(shape)
    cfg_path = d / "config.json"
    if cfg_path.exists() and (d / "model.safetensors").exists() and \
            json.loads(cfg_path.read_text()) == cfg:
        return d
    t0 = time.time()
    tmp = BUILD / f"{shape}-hf.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dim, layers, heads, hidden = SHAPES[shape]
    rng = np.random.default_rng(sum(map(ord, shape)))

    def normal(shp, std):
        return rng.standard_normal(shp, dtype=np.float32) * np.float32(std)

    def norm(n):
        return 1.0 + normal(n, 0.1)

    t = {"model.embed_tokens.weight": normal((VOCAB, dim), 0.5)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = norm(dim)
        for proj in "qkvo":
            t[p + f"self_attn.{proj}_proj.weight"] = normal((dim, dim), dim ** -0.5)
        t[p + "post_attention_layernorm.weight"] = norm(dim)
        t[p + "mlp.gate_proj.weight"] = normal((hidden, dim), dim ** -0.5)
        t[p + "mlp.up_proj.weight"] = normal((hidden, dim), dim ** -0.5)
        t[p + "mlp.down_proj.weight"] = normal((dim, hidden), hidden ** -0.5)
    t["model.norm.weight"] = norm(dim)
    t["lm_head.weight"] = normal((VOCAB, dim), 0.3)
    t["lm_head.weight"][cfg["eos_token_id"]] = 0.0  # EOS never wins: all 128 tokens are generated
    make_models.write_safetensors(tmp / "model.safetensors", t)
    make_models.write_spm_tokenizer(tmp)
    (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    log(f"bench: made {d.relative_to(ROOT)} ({time.time() - t0:.1f} s)")
    return d


def ones_imatrix(src, path):
    """An all-ones importance matrix for the layer matrices of src, in llama_quantize.c's format."""
    out = b""
    for name, (shape, _, _) in gguf_header(src)[1].items():
        if name.startswith("blk.") and len(shape) == 2:
            key = name.encode() + b"\0" * (4 - len(name) % 4)
            out += struct.pack("<I", len(key)) + key + struct.pack("<I", shape[1])
            out += np.ones(shape[1], dtype="<f4").tobytes()
    path.write_bytes(out)
    return path


def by_llamacpp(shape, ftype, hf):
    """The F32 export quantized to ftype by llama.cpp's quantizer."""
    src = export(shape, "f32", hf)
    out = BUILD / f"{shape}-{ftype}.gguf"
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    if not QUANTIZE.exists() or not (QUANTIZE_LIBS / "libllama.v0.4.0.so").exists():
        raise BenchError(f"{ftype} needs llama.cpp's quantizer: make build/tools/llama_quantize "
                         "and cd tests/oracles && npm ci --omit=optional")
    t0 = time.time()
    im = ones_imatrix(src, BUILD / f"{shape}-ones.imatrix")
    r = subprocess.run([str(QUANTIZE), "--imatrix", str(im), str(QUANTIZE_LIBS), str(src),
                        str(out), ftype, "2"], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"llama_quantize {src.name} {ftype} failed: {r.stderr.strip()[-500:]}")
    log(f"bench: quantized {out.relative_to(ROOT)} with llama.cpp ({time.time() - t0:.1f} s)")
    return out


def export(shape, dtype, hf):
    if dtype in LLAMACPP_FTYPES:
        return by_llamacpp(shape, dtype, hf)
    out = BUILD / f"{shape}-{dtype}.gguf"
    newest_input = max(EXPORT.stat().st_mtime, (hf / "model.safetensors").stat().st_mtime)
    if out.exists() and out.stat().st_mtime >= newest_input:
        return out
    t0 = time.time()
    r = subprocess.run([sys.executable, str(EXPORT), str(hf), str(out), "--dtype", dtype],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise BenchError(f"export.py {hf.name} --dtype {dtype} failed: {r.stderr.strip()[-500:]}")
    log(f"bench: exported {out.relative_to(ROOT)} ({time.time() - t0:.1f} s)")
    return out


# GGUF header: what the bench needs (tensor shapes, types, sizes; a few metadata values).
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
          11: "<q", 12: "<d"}


def gguf_header(path):
    with open(path, "rb") as f:
        def take(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string():
            return f.read(take("<Q")).decode("utf-8")

        def value(vt):
            if vt == 8:
                return string()
            if vt == 9:
                et, n = take("<I"), take("<Q")
                if et in SCALAR:  # skip numeric arrays without decoding them
                    f.seek(n * struct.calcsize(SCALAR[et]), 1)
                    return None
                return [value(et) for _ in range(n)] if et != 8 else [string() for _ in range(n)]
            return take(SCALAR[vt])

        if f.read(4) != b"GGUF":
            raise BenchError(f"{path}: not a GGUF file")
        take("<I")
        n_tensors, n_kv = take("<Q"), take("<Q")
        meta = {}
        for _ in range(n_kv):
            key = string()
            meta[key] = value(take("<I"))
        tensors = {}
        for _ in range(n_tensors):
            name = string()
            ne = [take("<Q") for _ in range(take("<I"))]
            ttype, _ = take("<I"), take("<Q")
            if ttype not in BLOCKS:
                raise BenchError(f"{path}: {name} has ggml type {ttype}, unknown to the bench")
            # the stored size, from the type's real block (a mixture's tensors each their own)
            _, block, size = BLOCKS[ttype]
            tensors[name] = (list(reversed(ne)), ttype, int(np.prod(ne)) // block * size)
    return meta, tensors


KV_BYTES = {"f32": 4, "f16": 2}  # bytes per cached key or value element, by ./run --kv-cache


def model_costs(path, P, kv="f32"):
    """Bytes of weights read per decoded token, FLOPs per prompt token (for a P-token prompt), the
    KV cache bytes (elements of the type kv), and the parameters of each type among the 2-D
    weights (a mixture such as Q4_K_M holds several; rows a type's block does not divide fall back
    to another type)."""
    meta, tensors = gguf_header(path)
    arch = meta["general.architecture"]
    layers, ctx = meta[f"{arch}.block_count"], meta[f"{arch}.context_length"]
    dim, heads = meta[f"{arch}.embedding_length"], meta[f"{arch}.attention.head_count"]
    kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
    head_dim = meta.get(f"{arch}.attention.key_length", dim // heads)
    read_bytes, read_params, layer_params, types = 0, 0, 0, {}
    vocab = tensors["token_embd.weight"][0][0]
    for name, (shape, ttype, nbytes) in tensors.items():
        if len(shape) != 2:
            continue
        types[ttype] = types.get(ttype, 0) + shape[0] * shape[1]  # parameters of each type
        if name == "token_embd.weight":
            read_bytes += nbytes // shape[0]  # one row
            read_params += shape[1]
        else:
            read_bytes += nbytes
            read_params += shape[0] * shape[1]
            if name != "output.weight":
                layer_params += shape[0] * shape[1]
    if "output.weight" not in tensors:  # tied: the whole embedding is the output head
        read_bytes += tensors["token_embd.weight"][2] - tensors["token_embd.weight"][2] // vocab
        read_params += (vocab - 1) * dim
    flops = 2 * layer_params + 2 * vocab * dim / P
    kv_cache = 2 * layers * ctx * kv_heads * head_dim * KV_BYTES[kv]
    # Keys and values a decoded token reads, averaged over the generation (positions P .. P+N-2).
    kv_read = 2 * layers * kv_heads * head_dim * KV_BYTES[kv] * (P + N_PREDICT / 2)
    return {"read_bytes": read_bytes, "flops": flops, "kv_cache": kv_cache, "kv_read": kv_read,
            "types": types, "read_params": read_params,
            "file_bytes": path.stat().st_size, "layers": layers, "dim": dim, "context": ctx}


# ----------------------------------------------------------------------------------------------
# Running ./run

def tokenize(model, text):
    r = subprocess.run([str(RUN), str(model), "-i", text, "--tokenize"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise BenchError(f"./run --tokenize failed: {r.stderr.strip()}")
    return r.stdout.split()


def make_prompt(model, P):
    """The longest word prefix of TEXT (repeated as often as needed) with at most P tokens, then
    filler words until exactly P (each checked with ./run --tokenize)."""
    text = TEXT
    while len(tokenize(model, text)) < P:
        text += " " + TEXT
    words = text.split()
    lo, hi = 1, len(words)  # largest k with tokens(words[:k]) <= P
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(tokenize(model, " ".join(words[:mid]))) <= P:
            lo = mid
        else:
            hi = mid - 1
    text = " ".join(words[:lo])
    for _ in range(P):
        n = len(tokenize(model, text))
        if n == P:
            return text
        for filler in (" a", " I", ",", "."):
            if len(tokenize(model, text + filler)) <= P:
                text += filler
                break
        else:
            break
    raise BenchError(f"bench: cannot make a prompt of exactly {P} tokens")


def warm(path):
    """Read the file once so that the timed runs find it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


# Peak RSS: a child's ru_maxrss also counts the memory of the process it was forked from when it
# was exec'd (Linux carries the old address space's high-water mark over exec), and this Python
# process holds numpy and the models it wrote. So ./run is started from a small process that forks
# it and reports its rusage: GNU time when installed, else a minimal Python launcher.
TIME = "/usr/bin/time"
LAUNCHER = ("import os, sys\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os.execv(sys.argv[2], sys.argv[2:])\n"
            "_, status, ru = os.wait4(pid, 0)\n"
            "open(sys.argv[1], 'w').write(str(ru.ru_maxrss))\n"
            "sys.exit(os.waitstatus_to_exitcode(status))\n")


def run_once(model, prompt, threads, kv="f32"):
    """One ./run: (prompt tokens, prompt tok/s, generated tokens, gen tok/s, end of text?, peak RSS
    in bytes). stderr goes to a temporary file, the peak RSS (KiB) to another."""
    cmd = [str(RUN), str(model), "-i", prompt, "-n", str(N_PREDICT), "-t", "0",
           "--threads", str(threads), "--kv-cache", kv]
    with tempfile.TemporaryFile("w+") as err, tempfile.NamedTemporaryFile("r") as rss_file:
        if os.access(TIME, os.X_OK):
            wrapper = [TIME, "-q", "-f", "%M", "-o", rss_file.name]
        else:
            wrapper = [sys.executable, "-S", "-c", LAUNCHER, rss_file.name]
        p = subprocess.run(wrapper + cmd, stdout=subprocess.DEVNULL, stderr=err)
        err.seek(0)
        text = err.read()
        try:
            rss = int(rss_file.read().split()[-1]) * 1024
        except (ValueError, IndexError):
            rss = 0
    if p.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:2])} ... exited {p.returncode}: {text.strip()[-300:]}")
    line = [l for l in text.splitlines() if l.startswith("prompt:")]
    try:
        # prompt: P tokens, X tok/s | generated: G tokens, Y tok/s
        a, b = line[-1].split("|")
        pw, gw = a.split(), b.split()
        P, X, G, Y = int(pw[1]), float(pw[3]), int(gw[1]), float(gw[3])
    except (IndexError, ValueError):
        raise BenchError(f"cannot parse ./run's stderr: {text.strip()[-300:]}")
    return P, X, G, Y, "[end of text]" in text, rss


def llamacpp_once(model, prompt_ids, threads, kv):
    """One llama.cpp run (bench/llamacpp.mjs): dict of prompt_tps, decode_tps (its perf counters)
    and wall_prompt_tps, wall_decode_tps (JavaScript's clock), prompt_tokens, decode_tokens."""
    r = subprocess.run(["node", str(LLAMACPP), str(model), str(threads), str(N_PREDICT), kv],
                       input=json.dumps(prompt_ids), capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise BenchError(f"llama.cpp on {model.name} exited {r.returncode}: {r.stderr.strip()[-300:]}")
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise BenchError(f"cannot parse bench/llamacpp.mjs's output: {r.stdout.strip()[-300:]}")


def llamacpp_available():
    """None when bench/llamacpp.mjs can run, else why not."""
    if not shutil.which("node"):
        return "node is not installed"
    if not NODE_LLAMA.exists():
        return "node-llama-cpp is not installed (cd tests/oracles && npm ci --omit=optional)"
    return None


# ----------------------------------------------------------------------------------------------

def machine():
    """CPU model (with family/model: a VM may show only the brand), cores, the relevant ISA flags."""
    info = {}
    try:
        for l in open("/proc/cpuinfo"):
            k, _, v = l.partition(":")
            info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    cpu = info.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in info:
        cpu += f" (family {info['cpu family']}, model {info.get('model', '?')})"
    flags = info.get("flags", "").split()
    isa = [f for f in ("avx512f", "avx512_vnni", "avx_vnni", "avx2", "fma", "f16c") if f in flags]
    return cpu, os.cpu_count(), " ".join(isa)


def git_commit():
    try:
        h = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.strip()
        return (h or "unknown") + (" + uncommitted changes" if dirty else "")
    except OSError:
        return "unknown"


def loadavg():
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def cpu_busy():
    """(busy CPU seconds of the whole machine, of this process and its children) so far: their
    difference over the run is what other processes used (the load average would count ours)."""
    import resource
    try:
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        machine_s = (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        machine_s = float("nan")
    own = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))
    return machine_s, own


def pct(x):
    return f"{100 * x:.0f}%"


ROW_PASSES = 3  # the read bandwidth measured beside each row: ~1.6 s with 1024 MiB


def row_bandwidth(a, th):
    """The read bandwidth (GB/s) with th threads now: bench/limits on the --limits-mib array
    (at 256 MiB, 2 threads read up to 48 GB/s at times, against 30-35 with 1024)."""
    r = subprocess.run([str(LIMITS), "--mib", str(a.limits_mib), "--passes", str(ROW_PASSES)],
                       stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise BenchError("bench/limits failed")
    return json.loads(r.stdout)["read_gbs"][str(th)]


def bench_row(a, model, s, t, th, PL, prompt, prompt_ids, c, bw, peak, why_not, problems):
    """One row: ours (and llama.cpp's unless why_not) on one file, thread count and prompt."""
    if th not in bw:
        raise BenchError(f"no limits measured for {th} threads")
    b0, w0 = cpu_busy(), time.time()
    bw_row = row_bandwidth(a, th)
    res = [run_once(model, prompt, th, a.kv_cache) for _ in range(a.reps)]
    bw_row = max(bw_row, row_bandwidth(a, th))
    for P, X, G, Y, eot, rss in res:
        if P != PL or G != N_PREDICT or eot:
            problems.append(f"{s} {t} {th} threads: prompt {P} tokens, generated {G}"
                            + (" (end of text)" if eot else ""))
    pt = statistics.median(x[1] for x in res)
    dt = statistics.median(x[3] for x in res)
    rss = max(x[5] for x in res)
    plim = peak[th] * 1e9 / c["flops"]
    dlim = bw[th] * 1e9 / c["read_bytes"]
    allow = (c["file_bytes"] + c["kv_cache"]) * 1.1
    if rss > allow:
        problems.append(f"{s} {t} {th} threads: peak RSS {rss / 1e6:.0f} MB > allowance "
                        f"{allow / 1e6:.0f} MB")
    row = dict(shape=s, type=t.upper(), threads=th, P=PL, prompt=pt, prompt_lim=plim,
               decode=dt, decode_lim=dlim, rss=rss, allow=allow, bw_row=bw_row,
               prompt_runs=[x[1] for x in res], decode_runs=[x[3] for x in res])
    if not why_not:
        lc = [llamacpp_once(model, prompt_ids, th, a.kv_cache) for _ in range(a.reps)]
        for x in lc:
            if x["prompt_tokens"] != PL or x["decode_tokens"] != N_PREDICT - 1:
                problems.append(f"{s} {t} {th} threads: llama.cpp timed {x['prompt_tokens']} "
                                f"prompt tokens and {x['decode_tokens']} decode runs")
        for k in ("prompt_tps", "decode_tps", "wall_prompt_tps", "wall_decode_tps"):
            row["llama_" + k] = statistics.median(x[k] for x in lc)
    b1 = cpu_busy()
    row["others"] = ((b1[0] - b0[0]) - (b1[1] - b0[1])) / max(time.time() - w0, 1e-9)
    log(f"{s:>5} {t:>5} {th}t P={PL:<4}  prompt {pt:8.1f} tok/s ({pct(pt / plim):>4} of {plim:7.0f})"
        f"  decode {dt:7.1f} tok/s ({pct(dt / dlim):>4} of {dlim:6.0f};"
        f" {pct(dt * c['read_bytes'] / (bw_row * 1e9)):>4} at {bw_row:.1f} GB/s beside it)"
        f"  RSS {rss / 1e6:5.0f} / {allow / 1e6:5.0f} MB"
        + (f"  | llama.cpp prompt {row['llama_prompt_tps']:8.1f} decode "
           f"{row['llama_decode_tps']:7.1f}" if not why_not else "")
        + (f"  BUSY ({row['others']:.2f} cores used by others)" if row["others"] > BUSY_LIMIT else ""))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt-tokens", default=str(PROMPT_TOKENS),
                    help="prompt lengths, e.g. 128,512,1024 (at most %d)" % (CONTEXT - N_PREDICT))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--kv-cache", choices=sorted(KV_BYTES), default="f16",
                    help="the KV cache type of both programs (./run --kv-cache; default f16, "
                         "llama.cpp's own default: its F32 cache decodes ~3x slower)")
    ap.add_argument("--limits-mib", type=int, default=1024, help="read-bandwidth array size")
    ap.add_argument("--llamacpp", choices=["auto", "on", "off"], default="auto",
                    help="llama.cpp beside each row: auto = when node-llama-cpp is installed")
    ap.add_argument("--quick", action="store_true",
                    help="development: 15M only, 1 rep, 256 MiB bandwidth array")
    ap.add_argument("--out", help="Markdown output (default bench/results.md; "
                                   "build/bench/results-quick.md with --quick)")
    a = ap.parse_args(argv)
    if a.quick:
        a.shapes, a.reps, a.limits_mib = "15M", 1, 256
    if a.out is None:
        a.out = str(BUILD / "results-quick.md" if a.quick else ROOT / "bench" / "results.md")
    shapes, types = a.shapes.split(","), a.types.split(",")
    threads = [int(t) for t in a.threads.split(",")]
    try:
        lengths = [int(n) for n in a.prompt_tokens.split(",")]
    except ValueError:
        ap.error(f"--prompt-tokens expects numbers: {a.prompt_tokens}")
    for n in lengths:
        if not 2 <= n <= CONTEXT - N_PREDICT:
            ap.error(f"--prompt-tokens {n}: out of range [2, {CONTEXT - N_PREDICT}]")
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s} ({', '.join(SHAPES)})")
    for t in types:
        if t not in TYPES:
            ap.error(f"unknown type {t} ({', '.join(TYPES)})")
    for f in (RUN, LIMITS):
        if not os.access(f, os.X_OK):
            sys.exit(f"bench: {f} is missing: run `make bench`")
    why_not = llamacpp_available() if a.llamacpp != "off" else "--llamacpp off"
    if why_not and a.llamacpp == "on":
        sys.exit(f"bench: llama.cpp cannot run: {why_not}")
    if why_not:
        log(f"bench: llama.cpp not measured: {why_not}")
    BUILD.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    busy0 = cpu_busy()
    load0 = loadavg()
    if load0 > LOAD_LIMIT:
        log(f"bench: WARNING: load average {load0:.2f} > {LOAD_LIMIT}: another process is using the "
            "CPU; the numbers will be low and noisy")

    # Models first (slow only the first time), so the limits and the runs are measured together.
    models = {}
    for s in shapes:
        hf = make_hf(s)
        for t in types:
            models[s, t] = export(s, t, hf)
    t_models = time.time() - t_start

    def measure_limits(when):
        log(f"bench: measuring the machine's limits {when} ({a.limits_mib} MiB array) ...")
        r = subprocess.run([str(LIMITS), "--mib", str(a.limits_mib)], stdout=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit("bench: limits failed")
        lim = json.loads(r.stdout)
        bw = {int(k): v for k, v in lim["read_gbs"].items()}
        peak = {int(k): v for k, v in lim["fma_gflops"].items()}
        log(f"bench: read {bw[1]:.1f} / {bw.get(2, float('nan')):.1f} GB/s, FMA {peak[1]:.0f} / "
            f"{peak.get(2, float('nan')):.0f} GFLOP/s (1 / 2 threads, {lim['isa']})")
        return lim, bw, peak

    # The limits are measured before the runs and again after them, and the higher of the two is
    # used: this machine shares its memory bus, and a limit measured while a neighbour was busy
    # would flatter every row.
    lim, bw, peak = measure_limits("before the runs")

    prompts = {P: make_prompt(models[shapes[0], types[0]], P) for P in lengths}
    rows, problems, costs = [], [], {}
    for PL in lengths:
        prompt = prompts[PL]
        for s in shapes:
            for t in types:
                model = models[s, t]
                c = costs[s, t, PL] = model_costs(model, PL, a.kv_cache)
                if t not in ("f32", "f16", "bf16") and 1 in c["types"]:
                    problems.append(f"{s} {t}: some matrices were stored as F16 (rows no block divides)")
                prompt_ids = [int(x) for x in tokenize(model, prompt)]
                if len(prompt_ids) != PL:
                    raise BenchError(f"{model.name}: prompt is {len(prompt_ids)} tokens, not {PL}")
                warm(model)
                for th in threads:
                    rows.append(bench_row(a, model, s, t, th, PL, prompt, prompt_ids, c, bw, peak,
                                          why_not, problems))
    _, bw2, peak2 = measure_limits("after the runs")
    bw_before, bw = bw, {k: max(v, bw2.get(k, 0.0)) for k, v in bw.items()}
    peak = {k: max(v, peak2.get(k, 0.0)) for k, v in peak.items()}
    for r in rows:  # the percentages against the higher limits
        c = costs[r["shape"], r["type"].lower(), r["P"]]
        r["prompt_lim"] = peak[r["threads"]] * 1e9 / c["flops"]
        r["decode_lim"] = bw[r["threads"]] * 1e9 / c["read_bytes"]
        r["decode_lim_kv"] = bw[r["threads"]] * 1e9 / (c["read_bytes"] + c["kv_read"])
        r["decode_lim_row"] = r["bw_row"] * 1e9 / c["read_bytes"]
    total = time.time() - t_start
    busy1 = cpu_busy()
    others = ((busy1[0] - busy0[0]) - (busy1[1] - busy0[1])) / total  # cores, on average

    # ---- output
    cpu, cores, isa = machine()
    several = len(lengths) > 1  # a prompt-length column only when there are several

    def key(r):
        return f"| {r['shape']} | {r['type']} | {r['threads']} | " + (f"{r['P']} | " if several else "")
    key_head = "| shape | type | threads | " + ("prompt tokens | " if several else "")
    key_rule = "|---|---|---|" + ("---|" if several else "")
    head = (key_head + "prompt tok/s | % of FMA limit | decode tok/s | "
            "% of bandwidth limit | % with the KV read counted | read GB/s beside the row: "
            "decode % of its limit | peak RSS / allowance (MB) |\n"
            + key_rule + "---|---|---|---|---|---|---|\n")
    table = head + "".join(
        key(r) + f"{r['prompt']:.0f} | "
        f"{pct(r['prompt'] / r['prompt_lim'])} of {r['prompt_lim']:.0f} | {r['decode']:.1f} | "
        f"{pct(r['decode'] / r['decode_lim'])} of {r['decode_lim']:.0f} | "
        f"{pct(r['decode'] / r['decode_lim_kv'])} of {r['decode_lim_kv']:.0f} | "
        f"{r['bw_row']:.1f}: {pct(r['decode'] / r['decode_lim_row'])} of "
        f"{r['decode_lim_row']:.0f} | "
        f"{r['rss'] / 1e6:.0f} / {r['allow'] / 1e6:.0f} |\n" for r in rows)
    def mix(c):  # the 2-D weights' types, by share of parameters
        total = sum(c["types"].values())
        return ", ".join(f"{BLOCKS[k][0]} {100 * v / total:.0f}%"
                         for k, v in sorted(c["types"].items(), key=lambda kv: -kv[1]))

    per_model = ("| shape | type | file MB | weights read per token (MB) | bits per weight read | "
                 "2-D weights by type | MFLOP per prompt token | KV cache MB | "
                 "KV read per decoded token (MB, mean) |\n|---|---|---|---|---|---|---|---|---|\n"
                 + "".join(
                     f"| {s} | {t.upper()} | {c['file_bytes'] / 1e6:.1f} | {c['read_bytes'] / 1e6:.1f} | "
                     f"{8 * c['read_bytes'] / c['read_params']:.2f} | {mix(c)} | "
                     f"{c['flops'] / 1e6:.1f} | {c['kv_cache'] / 1e6:.1f} | {c['kv_read'] / 1e6:.1f} |\n"
                     for (s, t, P), c in costs.items() if P == lengths[0]))
    loaded = load0 > LOAD_LIMIT or others > 0.1
    side = ""
    if not why_not:
        side = (key_head + "prompt tok/s ours / llama.cpp (ratio) | decode tok/s ours / "
                "llama.cpp (ratio) | others' CPU during the row |\n" + key_rule + "---|---|---|\n"
                + "".join(
                    key(r) + f"{r['prompt']:.0f} / "
                    f"{r['llama_prompt_tps']:.0f} ({r['prompt'] / r['llama_prompt_tps']:.2f}) | "
                    f"{r['decode']:.1f} / {r['llama_decode_tps']:.1f} "
                    f"({r['decode'] / r['llama_decode_tps']:.2f}) | {r['others']:.2f} cores"
                    + (" **busy**" if r["others"] > BUSY_LIMIT else "") + " |\n" for r in rows))
        js_decode = statistics.median(1e3 / r["llama_wall_decode_tps"] - 1e3 / r["llama_decode_tps"]
                                      for r in rows)
        js_prompt = statistics.median(1e3 * r["P"] / r["llama_wall_prompt_tps"]
                                      - 1e3 * r["P"] / r["llama_prompt_tps"] for r in rows)
        busy_rows = sum(r["others"] > BUSY_LIMIT for r in rows)
    md = [
        "# tinygpt benchmark (`make bench`)",
        "",
        f"- machine: {cpu}, {cores} cores; {isa}",
        f"- limits measured in this run (bench/limits.c, {lim['isa']}), before and after the runs, "
        f"the higher used: read bandwidth {bw[1]:.1f} GB/s (1 thread), "
        f"{bw.get(2, float('nan')):.1f} GB/s (2 threads), sum of a 64-byte-aligned "
        f"{lim['array_mib']} MiB float array, best of {lim['passes']} (before: "
        f"{bw_before[1]:.1f} / {bw_before.get(2, float('nan')):.1f}, after: {bw2[1]:.1f} / "
        f"{bw2.get(2, float('nan')):.1f}); FP32 FMA peak {peak[1]:.0f} GFLOP/s (1 thread), "
        f"{peak.get(2, float('nan')):.0f} GFLOP/s (2 threads)",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t_start))}; commit {git_commit()}",
        f"- load average {load0:.2f} at the start; other processes used {others:.2f} cores on "
        "average during the run"
        + (" — **the machine was busy: these numbers are not representative**" if loaded else ""),
        f"- runtime {total:.0f} s (models built/exported: {t_models:.0f} s)",
        f"- each row: `./run MODEL -i PROMPT -n {N_PREDICT} -t 0 --threads N --kv-cache "
        f"{a.kv_cache}`, prompt of exactly "
        f"{', '.join(map(str, lengths))} tokens (BOS included), median of {a.reps} runs; random weights, vocabulary "
        f"{VOCAB}, context {CONTEXT}",
        "",
        table.rstrip("\n"),
        "",
        "Limits: decode limit = read bandwidth / bytes of the weights a token reads (every 2-D "
        "weight, output included, plus one row of the token embedding; not the KV cache); prompt "
        "limit = FMA peak / (2 x layer matrix parameters + 2 x vocab x dim / P), i.e. one FMA per "
        "weight per prompt position with the output head computed once per prompt (attention "
        "scores not counted). The quantized types' prompt speed is compared with the FP32 FMA peak "
        "although their products are integer (AVX-512 VNNI). Bytes per weight are the stored "
        "sizes of each tensor's own type (its real block: Q4_0 18 B per 32, Q4_K 144 B per 256, "
        "Q6_K 210 B per 256, ...), so mixtures such as Q4_K_M, and rows a type's block does not "
        "divide (stored in a fallback type), are counted as stored. Decode tok/s is ./run's: generated tokens / generation time, where "
        f"the first of the {N_PREDICT} tokens comes from the prompt's logits. "
        "Peak RSS allowance = (file + KV cache) x 1.1, KV cache = 2 x layers x context x kv_dim x "
        f"{KV_BYTES[a.kv_cache]} B ({a.kv_cache.upper()}). "
        f"The bandwidth is DRAM's (a {lim['array_mib']} MiB array): weights that fit in the "
        "last-level cache (the small models) can be read faster, over 100% of this limit. The KV "
        "cache a decoded token reads (last column below) is not in the limit either: a few % of "
        "the weights at 110M, up to ~17% at 15M Q8_0; the column after it counts those bytes too "
        "(weights + the mean KV read per decoded token), the bytes a token really streams. "
        "The memory bus is shared with other machines, and its bandwidth changes from minute to "
        f"minute (21.6 to 28.3 GB/s at one thread within 10 minutes, 2026-11-28): the "
        f"bandwidth beside the row is measured right before and right after our {a.reps} runs "
        f"of that row ({lim['array_mib']} MiB array, best of {ROW_PASSES} passes, the higher of "
        "the two used), and the decode limit of that column uses it.",
        "",
        per_model.rstrip("\n"),
    ]
    if side:
        md += ["", "## Side by side with llama.cpp", "",
               f"llama.cpp v0.4.0 (npm node-llama-cpp 3.21.1, prebuilt CPU library) on the same "
               f"files, prompt ids and thread counts, {N_PREDICT} greedy tokens, the same KV cache type "
               f"as ours ({a.kv_cache.upper()}), "
               f"whole prompt in one batch; figures from llama.cpp's own perf counters (prompt eval "
               f"time, eval time), median of {a.reps} runs. The JavaScript binding adds "
               f"{js_decode:.3f} ms per decoded token and {js_prompt:.2f} ms per prompt (median over "
               f"rows, wall clock minus llama.cpp's counters), not counted. Ratio > 1: ours faster.",
               "", side.rstrip("\n")]
        if busy_rows:
            md += ["", f"{busy_rows} rows ran while other processes used more than {BUSY_LIMIT} "
                   "cores: llama.cpp's spinning threads make its figures there (2 threads "
                   "especially) unreliable."]
    if problems:
        md += ["", "Problems:", ""] + [f"- {p}" for p in problems]
    Path(a.out).write_text("\n".join(md) + "\n")
    print("\n".join(md[:7]))
    print()
    print(table, end="")
    if side:
        print("\n" + side, end="")
    if problems:
        print("\nProblems:\n" + "\n".join(f"- {p}" for p in problems))
    print(f"\nbench: {total:.0f} s; written to {os.path.relpath(a.out)}")
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        sys.exit(f"bench: error: {e}")
