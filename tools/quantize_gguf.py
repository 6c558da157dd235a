#!/usr/bin/python3
"""Re-type the matrices of an F32 or F16 GGUF (the shipped models/kjv.gguf, whose Hugging Face
directory is not shipped), with export.py's quantizers and choice of types per tensor:

    python3 tools/quantize_gguf.py IN.gguf OUT.gguf --dtype q4_k_m

Metadata is copied (general.file_type set for the new dtype, general.alignment to the one
export.py writes); tensors keep their names, so
export.py's rules (quants.tensor_type) apply as they would to a fresh export. The input is read
with the tests' GGUF reader (tests/py/gguf_read.py), which decodes any type to float32.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "py")]

import export  # noqa: E402
import quants  # noqa: E402
from gguf_read import read_gguf  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--dtype", choices=sorted(quants.DTYPES), required=True)
    args = ap.parse_args(argv)
    g = read_gguf(args.inp)
    plan = export.Plan()
    for key in g.key_order:
        vtype = g.metadata_types[key].replace("arr[", "arr_").rstrip("]")
        value = {"general.file_type": quants.DTYPES[args.dtype][1],
                 "general.alignment": export.ALIGNMENT}.get(key, g.metadata[key])  # as written
        plan.kv(key, vtype, value)
    for name in g.tensor_order:
        t = g.tensors[name]
        plan.tensor(name, t.shape, lambda t=t: t.astype("float32"))
    n, total, size = export.write_gguf(args.out, plan, args.dtype)
    print(f"wrote {args.out}: {n} tensors, {size} bytes, dtype {args.dtype}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
