#!/usr/bin/python3
"""The quality tables of docs/formats.md's Quantized types: each quantized type against F32, for files
quantized by llama.cpp (its llama_model_quantize, through build/tools/llama_quantize) and by our
export.py (tools/quantize_gguf.py, the same rules as export.py --dtype).

    python3 bench/quality.py [--model kjv|110M] [--ppl-bytes N] [--top1-bytes N] [--no-ours]
                             [--ftypes q8_0,...,iq2_m] [--out FILE]

kjv: the shipped models/kjv.gguf (F32). 110M: llama2.c's 110M shape with random weights, made and
exported to F32 as make bench does (bench.py's make_hf/export, build/bench/110M-f32.gguf).
Files go to build/quality/. llama.cpp's i-quant files (iq4_xs, iq3_m, iq2_m) are quantized with an
importance matrix: the F32 model's mean square matrix inputs over the first 2000 characters of
TEXT (tests/py/imatrix.py, which needs torch). For each file:
  size          the file's bytes
  bits/weight   bits of the 2-D matrices / their weights (vectors stay F32 in every file)
  perplexity    `./run FILE --ppl TEXT`, TEXT = models/kjv-valid.txt (its first --ppl-bytes bytes
                when given), and its change against F32's
  top-1         over the positions of the first --top1-bytes bytes of the same text (fed as one
                prompt, --dump-logits), the share where the file's most probable next token is F32's
  KL            the mean over those positions of KL(F32's next-token distribution || the file's),
                in nats
  types         the share of matrix weights in each type
Prints the machine and the date, then a Markdown table (also written to --out when given).
"""

import argparse
import datetime
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests" / "py")]
import bench  # noqa: E402  (make_hf, export, machine)
import quant_decode  # noqa: E402
import quants  # noqa: E402

RUN = ROOT / "run"
QUANTIZE = ROOT / "build" / "tools" / "llama_quantize"
LIBDIR = ROOT / "tests/oracles/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"
TEXT = ROOT / "models" / "kjv-valid.txt"
OUT = ROOT / "build" / "quality"

# llama.cpp's ftypes, each with the export.py dtype that asks for the same (None: no such dtype)
ROWS = [("bf16", "bf16"), ("q8_0", "q8_0"), ("q6_k", "q6_k"), ("q5_k_m", "q5_k_m"), ("q5_k_s", "q5_k"),
        ("q5_1", "q5_1"), ("q5_0", "q5_0"), ("q4_k_m", "q4_k_m"), ("q4_k_s", "q4_k"),
        ("q4_1", "q4_1"), ("q4_0", "q4_0"), ("iq4_nl", "iq4_nl"), ("q3_k_l", None),
        ("q3_k_m", None), ("q3_k_s", "q3_k"), ("q2_k", "q2_k"), ("iq4_xs", None),
        ("iq3_m", None), ("iq2_m", None)]
# The i-quants' files get an importance matrix (tests/py/imatrix.py: the F32 model's mean square
# inputs over the first IMATRIX_CHARS of the text); IQ2_M's types require one.
IQ_FTYPES = {"iq4_xs", "iq3_m", "iq2_m"}
IMATRIX_CHARS = 2000
TYPES = {**quant_decode.BLOCKS, **quants.TYPES}  # (name, block, bytes) of every type
TYPE_NAMES = {t: v[0] for t, v in TYPES.items()}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def f32_source(model):
    if model == "kjv":
        return ROOT / "models" / "kjv.gguf"
    return bench.export("110M", "f32", bench.make_hf("110M"))


def imatrix(src, model):
    """The importance matrix of the F32 file src (made once, beside the files)."""
    out = OUT / f"{model}.imatrix"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        from imatrix import write_imatrix  # torch
        text = TEXT.read_text()[:IMATRIX_CHARS]
        ids = subprocess.run([str(RUN), str(src), "-i", "-", "--tokenize"], input=text.encode(),
                             capture_output=True, check=True).stdout.split()
        write_imatrix(src, out, OUT, [int(t) for t in ids])
    return out


def by_llamacpp(src, model, ftype):
    out = OUT / f"{model}.llamacpp-{ftype}.gguf"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        flags = ["--imatrix", str(imatrix(src, model))] if ftype in IQ_FTYPES else []
        r = subprocess.run([str(QUANTIZE), *flags, str(LIBDIR), str(src), str(out), ftype, "2"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"quality: llama.cpp's quantizer failed on {ftype}: {r.stderr.strip()[-300:]}")
    return out


def by_export(src, model, dtype):
    out = OUT / f"{model}.ours-{dtype}.gguf"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        r = subprocess.run([sys.executable, str(ROOT / "tools" / "quantize_gguf.py"), str(src),
                            str(out), "--dtype", dtype], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"quality: quantize_gguf.py --dtype {dtype} failed: {r.stderr.strip()[-300:]}")
    return out


def matrix_types(path):
    """(bits per matrix weight, {type name: share of matrix weights}) from the file's header."""
    _, tensors = header(path)
    bits, n, share = 0, 0, {}
    for shape, ttype in tensors.values():
        if len(shape) != 2:
            continue
        k = int(np.prod(shape))
        _, block, size = TYPES[ttype]
        bits += 8 * k // block * size
        n += k
        share[TYPE_NAMES[ttype]] = share.get(TYPE_NAMES[ttype], 0) + k
    return bits / n, {t: c / n for t, c in sorted(share.items(), key=lambda kv: -kv[1])}


def header(path):
    """The tensors' (shape, type) of a GGUF, through bench.py's header reader (every type)."""
    meta, tensors = bench.gguf_header(path)
    return meta, {name: (shape, ttype) for name, (shape, ttype, _) in tensors.items()}


def perplexity(path, text):
    r = subprocess.run([str(RUN), str(path), "--ppl", str(text)], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"quality: ./run {path.name} --ppl failed: {r.stderr.strip()}")
    return float(r.stdout.split("perplexity:")[1].split()[0])


def log_probs(path, prompt, tmp):
    dump = Path(tmp) / f"{path.stem}.npy"
    r = subprocess.run([str(RUN), str(path), "-i", "-", "-n", "1", "-t", "0", "--dump-logits",
                        str(dump)], input=prompt.encode(), capture_output=True)
    if r.returncode != 0:
        sys.exit(f"quality: ./run {path.name} --dump-logits failed: {r.stderr.decode().strip()}")
    z = np.load(dump).astype(np.float64)
    z -= z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def measure(path, ref, texts, tmp):
    """One row's numbers; ref: F32's (perplexity, log-probabilities), None for F32 itself."""
    ppl_text, prompt = texts
    lp = log_probs(path, prompt, tmp)
    ppl = perplexity(path, ppl_text)
    bpw, types = matrix_types(path)
    row = {"size": path.stat().st_size, "bpw": bpw, "ppl": ppl, "types": types, "lp": lp}
    ref_ppl, ref_lp = ref if ref else (ppl, lp)
    row["dppl"] = ppl / ref_ppl - 1
    row["top1"] = (lp.argmax(1) == ref_lp.argmax(1)).sum(), len(lp)
    row["kl"] = float((np.exp(ref_lp) * (ref_lp - lp)).sum(1).mean())
    return row


def cells(row):
    if row is None:
        return ["—"] * 5
    top, n = row["top1"]
    return [f"{row['size'] / 1e6:.2f} MB", f"{row['bpw']:.2f}",
            f"{row['ppl']:.6g} ({100 * row['dppl']:+.2f}%)", f"{100 * top / n:.1f}%",
            f"{row['kl']:.4f}"]


def types_cell(row):
    return ", ".join(f"{t} {100 * s:.0f}%" for t, s in row["types"].items())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["kjv", "110M"], default="kjv")
    ap.add_argument("--ppl-bytes", type=int, default=0, help="perplexity on the text's first N "
                    "bytes (0: all of it)")
    ap.add_argument("--top1-bytes", type=int, default=900)
    ap.add_argument("--no-ours", action="store_true", help="llama.cpp's files only (export.py's "
                    "numpy quantizer takes longer than llama.cpp's)")
    ap.add_argument("--ftypes", default=",".join(f for f, _ in ROWS),
                    help="llama.cpp's file types to measure (default: all rows)")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    unknown = set(a.ftypes.split(",")) - {f for f, _ in ROWS}
    if unknown:
        ap.error(f"unknown ftype {', '.join(sorted(unknown))} ({', '.join(f for f, _ in ROWS)})")
    for p, why in ((RUN, "make"), (QUANTIZE, "make build/tools/llama_quantize"),
                   (LIBDIR / "libllama.v0.4.0.so", "cd tests/oracles && npm ci --omit=optional")):
        if not p.exists():
            sys.exit(f"quality: {p} missing: {why}")
    OUT.mkdir(parents=True, exist_ok=True)
    text = TEXT.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        ppl_text = TEXT
        if a.ppl_bytes:
            ppl_text = Path(tmp) / "ppl.txt"
            ppl_text.write_bytes(TEXT.read_bytes()[:a.ppl_bytes])
        texts = (ppl_text, text.encode()[:a.top1_bytes].decode(errors="ignore"))
        src = f32_source(a.model)
        log(f"quality: {a.model}: F32")
        f32 = measure(src, None, texts, tmp)
        ref = (f32["ppl"], f32["lp"])
        rows = [("f32", f32, None)]
        for ftype, dtype in [r for r in ROWS if r[0] in a.ftypes.split(",")]:
            log(f"quality: {a.model}: {ftype}")
            theirs = measure(by_llamacpp(src, a.model, ftype), ref, texts, tmp)
            ours = measure(by_export(src, a.model, dtype), ref, texts, tmp) \
                if dtype and not a.no_ours else None
            rows.append((ftype, theirs, ours))
            log(" | ".join(cells(theirs) + cells(ours)))
    cpu, cores, isa = bench.machine()
    lines = [f"{a.model}: {src.name}, perplexity on {ppl_text.name if not a.ppl_bytes else f'the first {a.ppl_bytes} bytes of kjv-valid.txt'}"
             f", top-1 and KL over {f32['top1'][1]} positions; {cpu}, {cores} cores; "
             f"{platform.system()}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             "",
             "| type | llama.cpp: file | bits/weight | perplexity (vs F32) | top-1 = F32 | KL | "
             "export.py: file | bits/weight | perplexity (vs F32) | top-1 = F32 | KL |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, theirs, ours in rows:
        lines.append(f"| {name} | " + " | ".join(cells(theirs) + cells(ours if name != "f32" else
                                                                        None)) + " |")
    lines += ["", "Types of the matrix weights (llama.cpp's files | export.py's):", ""]
    for name, theirs, ours in rows[1:]:
        lines.append(f"- {name}: {types_cell(theirs)}" + (f" | {types_cell(ours)}" if ours else ""))
    out = "\n".join(lines) + "\n"
    print(out)
    if a.out:
        Path(a.out).write_text(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
