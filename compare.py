#!/usr/bin/python3
"""Compare ./run with PyTorch, layer by layer, on one prompt.

    /usr/bin/python3 compare.py HF_DIR [MODEL.gguf] -i PROMPT [-n N] [--json] [--dtype TYPE]

HF_DIR is a Hugging Face model directory; MODEL.gguf the file ./run runs (without it, HF_DIR is
exported first with export.py --dtype TYPE, default f32, into a temporary directory). The token
ids are ./run's (--tokenize); the float64 PyTorch reference (reference.py, no transformers
needed) runs the same ids. Printed: per layer, the largest absolute and relative difference of
the residual stream (--dump-layers) over the prompt's positions; the first layer and position
beyond the tolerance; the logits' largest difference, top-1 agreement and KL divergence per
position; with -n N, whether the reference, fed the engine's own tokens, picks each of the N
greedy tokens the engine picked (teacher-forced greedy agreement).

A relative difference is max|ours - ref| / max(1, max|ref|) over one position's row. Tolerances
by the file's weight type (docs/compare.md explains them): F32 and F16 1e-4, the reference running
the same weights (F16 rounded as the file stores them); Q8_0 3e-2, the reference with the same
Q8_0 weights quantizing its activations as the engine does. The 2- to 6-bit types are compared
with the float weights: the difference is then mostly the type's own rounding, and the bound is
loose (Q6_K 0.25, 5-bit 0.5, 4-bit 0.75, Q3_K 1, Q2_K 2: above what the random test models reach,
trained models stay well below); the engine's exactness on them is in tests/py/test_layers.py.

Exit status: 0 within tolerance, 1 beyond, 2 on an error (one line on stderr).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RUN = Path(os.environ.get("RUN_BIN", ROOT / "run"))
# the weight types a ggml tensor type number names (the 2-D ones; 1-D tensors are F32)
GGML_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 20: "IQ4_NL", 30: "BF16"}
# (the reference's weights, tolerance) per kind of file: see the docstring
TOLERANCE = {"f32": ("f32", 1e-4), "f16": ("f16", 1e-4), "q8_0": ("q8_0", 3e-2)}
# the 2- to 6-bit types against the float weights: the file's bound is its coarsest type's
LOOSE = {"Q6_K": 0.25, "Q5_0": 0.5, "Q5_1": 0.5, "Q5_K": 0.5, "Q4_0": 0.75, "Q4_1": 0.75,
         "Q4_K": 0.75, "IQ4_NL": 0.75, "Q3_K": 1.0, "Q2_K": 2.0}
DEFAULT_CTX = 4096  # ./run's context when none is asked for (model.h): longrope decides by it


class CompareError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        print(f"compare.py: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


# ----------------------------------------------------------------------------------------------
# The GGUF file: which weight types it holds (its header and tensor list only)

def _read(f, fmt):
    size = struct.calcsize(fmt)
    b = f.read(size)
    if len(b) != size:
        raise CompareError("the GGUF file is truncated")
    return struct.unpack(fmt, b)


def _skip_value(f, vtype):
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    if vtype == 8:
        (n,) = _read(f, "<Q")
        f.seek(n, 1)
    elif vtype == 9:
        etype, n = _read(f, "<IQ")
        if etype in sizes:
            f.seek(sizes[etype] * n, 1)
        else:
            for _ in range(n):
                _skip_value(f, etype)
    elif vtype in sizes:
        f.seek(sizes[vtype], 1)
    else:
        raise CompareError(f"the GGUF file has a metadata value of unknown type {vtype}")


def weight_types(path):
    """The set of ggml type names of the file's 2-D tensors."""
    try:
        with open(path, "rb") as f:
            magic, version, n_tensors, n_kv = _read(f, "<IIQQ")
            if magic != 0x46554747 or version not in (2, 3):
                raise CompareError(f"{path} is not a GGUF v2/v3 file")
            for _ in range(n_kv):
                (n,) = _read(f, "<Q")
                f.seek(n, 1)
                _skip_value(f, _read(f, "<I")[0])
            types = set()
            for _ in range(n_tensors):
                (n,) = _read(f, "<Q")
                f.seek(n, 1)
                (n_dims,) = _read(f, "<I")
                f.seek(8 * n_dims, 1)
                ttype, _ = _read(f, "<IQ")
                if n_dims == 2:
                    types.add(GGML_NAMES.get(ttype, f"type {ttype}"))
            return types
    except OSError as e:
        raise CompareError(f"cannot read {path}: {e.strerror}")


def file_kind(types):
    """(the reference's weights, tolerance): f32, f16, q8_0 for the files whose 2-D weights the
    reference can hold exactly, else the float weights and the coarsest type's loose bound."""
    for kind, allowed in (("f32", {"F32"}), ("f16", {"F32", "F16"}), ("q8_0", {"F32", "F16", "Q8_0"})):
        if types <= allowed:
            return TOLERANCE[kind]
    unknown = sorted(types - set(LOOSE) - {"F32", "F16", "Q8_0"})
    if unknown:
        raise CompareError(f"the GGUF holds {', '.join(unknown)} weights, which compare.py has no "
                           f"tolerance for")
    return "f32", max(LOOSE[t] for t in types if t in LOOSE)


# ----------------------------------------------------------------------------------------------
# The two sides

def run_engine(gguf, prompt, n, work):
    """./run on the prompt: (token ids, layers [L + 1, P, dim], logits [T, vocab], text)."""
    if not RUN.exists():
        raise CompareError(f"{RUN} is missing: build it with make")

    def call(*args):
        r = subprocess.run([str(RUN), str(gguf), "-i", prompt, *args], capture_output=True)
        if r.returncode != 0:
            raise CompareError("./run: " + r.stderr.decode(errors="replace").strip().splitlines()[-1])
        return r.stdout

    ids = [int(t) for t in call("--tokenize").split()]
    layers, logits = work / "layers.npy", work / "logits.npy"
    text = call("-n", str(max(n, 1)), "-t", "0", "--dump-layers", str(layers), "--dump-logits",
                str(logits))
    return ids, np.load(layers), np.load(logits), text.decode(errors="replace")


def export(hf_dir, dtype, work):
    out = work / f"model.{dtype}.gguf"
    r = subprocess.run([sys.executable, str(ROOT / "export.py"), str(hf_dir), str(out), "--dtype",
                        dtype], capture_output=True, text=True)
    if r.returncode != 0:
        raise CompareError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "export failed")
    return out


def reference(hf_dir, weights):
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CompareError("the reference needs torch (Debian: apt-get install python3-torch)")
    from reference import Reference

    ref = Reference(hf_dir, weights=weights)
    if weights == "q8_0":
        ref.q8_decode_from = 0  # the engine quantizes every product's input to Q8_0 blocks
    ctx = ref.cfg.get("max_position_embeddings") or ref.cfg.get("n_positions")
    ref.context = min(ctx, DEFAULT_CTX) if ctx else None
    return ref


# ----------------------------------------------------------------------------------------------
# The numbers

def row_errors(ours, ref):
    """Per row (the last axis): (max|ours - ref|, that / max(1, max|ref|))."""
    a = np.abs(ours - ref).max(-1)
    return a, a / np.maximum(1.0, np.abs(ref).max(-1))


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def kl(ref, ours):
    """KL(p_ref || p_ours) per row, in nats, from the logits in float64."""
    p, q = softmax(ref.astype(np.float64)), softmax(ours.astype(np.float64))
    return (p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300)))).sum(-1)


def measure(ids, layers, logits, ref, n, tol):
    P = len(ids)
    if max(ids) >= ref.cfg["vocab_size"]:
        raise CompareError(f"./run's token id {max(ids)} is outside the directory's vocabulary "
                           f"({ref.cfg['vocab_size']}): are they the same model?")
    want = ref.hidden(ids)
    if want.shape != layers.shape:
        raise CompareError(f"the GGUF's residual stream is {list(layers.shape)} and the directory's "
                           f"{list(want.shape)}: are they the same model?")
    fed = ids + [int(np.argmax(logits[t])) for t in range(P - 1, logits.shape[0] - 1)]
    want_logits = ref.logits(fed)
    if want_logits.shape != logits.shape:
        raise CompareError(f"the GGUF's logits are {list(logits.shape)} and the directory's "
                           f"{list(want_logits.shape)}: are they the same model?")
    abs_l, rel_l = row_errors(layers, want)
    beyond = np.argwhere(rel_l > tol)  # (stage, position), stage-major: the first comes first
    abs_g, rel_g = row_errors(logits, want_logits)
    top_ours, top_ref = logits.argmax(-1), want_logits.argmax(-1)
    res = {
        "tolerance": tol, "prompt_ids": ids,
        "layers": [{"layer": "embd" if s == 0 else s - 1, "max_abs": float(abs_l[s].max()),
                    "max_rel": float(rel_l[s].max())} for s in range(layers.shape[0])],
        "first_beyond": None if not len(beyond) else
        {"layer": "embd" if beyond[0][0] == 0 else int(beyond[0][0]) - 1,
         "position": int(beyond[0][1]), "token": ids[beyond[0][1]],
         "rel": float(rel_l[tuple(beyond[0])])},
        "logits": {"max_abs": float(abs_g.max()), "max_rel": float(rel_g.max()),
                   "top1_agree": int((top_ours == top_ref).sum()), "positions": len(fed),
                   "kl": [float(k) for k in kl(want_logits, logits)],
                   "top1_ours": [int(t) for t in top_ours], "top1_ref": [int(t) for t in top_ref]},
    }
    if n > 0:  # the engine's picks are the argmax of its own logits, rows P-1 .. P+n-2
        steps = range(P - 1, logits.shape[0])
        agree = sum(int(top_ours[t] == top_ref[t]) for t in steps)
        res["greedy"] = {"steps": len(steps), "agree": agree,
                         "first_disagree": next((t - P + 1 for t in steps if top_ours[t] != top_ref[t]), None)}
    res["within"] = not len(beyond) and bool(rel_g.max() <= tol)
    return res


def report(res, gguf, weights, types, out=sys.stdout):
    pr = lambda *a: print(*a, file=out)  # noqa: E731
    lg = res["logits"]
    pr(f"model: {gguf} ({', '.join(sorted(types))} weights; tolerance {res['tolerance']:g}, "
       f"reference on the {weights.upper()} weights)")
    pr(f"prompt: {len(res['prompt_ids'])} tokens")
    pr("layer      max abs    max rel")
    for row in res["layers"]:
        mark = "  beyond" if row["max_rel"] > res["tolerance"] else ""
        pr(f"{row['layer']!s:>5}  {row['max_abs']:9.2e}  {row['max_rel']:9.2e}{mark}")
    fb = res["first_beyond"]
    pr("first beyond tolerance: " + ("none" if fb is None else
       f"layer {fb['layer']}, position {fb['position']} (token {fb['token']}): {fb['rel']:.2e}"))
    pr(f"logits: max abs {lg['max_abs']:.2e}, max rel {lg['max_rel']:.2e}, top-1 agreement "
       f"{lg['top1_agree']}/{lg['positions']}")
    pr("KL per position: " + " ".join(f"{k:.1e}" for k in lg["kl"]))
    if "greedy" in res:
        g = res["greedy"]
        first = "" if g["first_disagree"] is None else f", first apart at token {g['first_disagree']}"
        pr(f"greedy, teacher-forced: {g['agree']}/{g['steps']} tokens agree{first}")
    pr("within tolerance" if res["within"] else "BEYOND tolerance")


def main(argv=None):
    ap = Parser(description="Compare ./run with the PyTorch reference, layer by layer.")
    ap.add_argument("hf_dir", help="the Hugging Face model directory")
    ap.add_argument("gguf", nargs="?", help="the GGUF file (default: HF_DIR exported with --dtype)")
    ap.add_argument("-i", "--prompt", required=True)
    ap.add_argument("-n", type=int, default=0, help="greedy tokens to check, teacher-forced")
    ap.add_argument("--dtype", default="f32", help="export.py's --dtype when no GGUF is given")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = ap.parse_args(argv)
    if not 0 <= args.n <= 4096:
        ap.error(f"-n expects an integer in [0, 4096], got {args.n}")
    hf = Path(args.hf_dir)
    try:
        if not (hf / "config.json").is_file():
            raise CompareError(f"{hf} has no config.json: give a Hugging Face model directory")
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            gguf = Path(args.gguf) if args.gguf else export(hf, args.dtype, work)
            types = weight_types(gguf)
            weights, tol = file_kind(types)
            ref = reference(hf, weights)
            ids, layers, logits, text = run_engine(gguf, args.prompt, args.n, work)
            res = measure(ids, layers, logits, ref, args.n, tol)
    except CompareError as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    res.update(model=str(gguf) if args.gguf else None, weights=sorted(types), text=text)
    if args.json:
        print(json.dumps(res))
    else:
        report(res, gguf if args.gguf else f"{hf} exported --dtype {args.dtype}", weights, types)
    return 0 if res["within"] else 1


if __name__ == "__main__":
    sys.exit(main())
