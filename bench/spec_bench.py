#!/usr/bin/python3
"""make bench, speculative rows: decoding with and without speculation, here and in a natively built
llama.cpp, on the same files with the same settings.

    python3 bench/spec_bench.py [--quick] [--shape 110M] [--threads 2] [--n-predict 128]
                                [--draft-max 8] [--reps 3] [--llamacpp auto|on|off]
                                [--out bench/results-spec.md]

1. Builds llama.cpp natively from the source bundled with the npm oracle node-llama-cpp
   (bench/build_llamacpp.sh: cmake -DGGML_NATIVE=ON, Release; llama-bench, llama-speculative,
   llama-lookup, llama-quantize; cached under build/llama.cpp). Without the bundle or cmake, or
   with --llamacpp off, only our rows are measured, and the table says why.
2. Rows, each greedy (-t 0), --n-predict tokens, median of --reps runs:
   (a) the shipped model (models/kjv.gguf, F32) on prompts where prompt lookup has something to
       find (a passage, then its start again; a verse quoted twice): plain decoding, --lookup N,
       and -md with a Q4_0 copy of the same weights (tools/quantize_gguf.py);
   (b) self-speculation at bench.py's shape (--shape; 15M with --quick): an F16 and a Q8_0 target,
       a Q4_0 copy of the same random weights drafting (bench.py's exports), plain vs -md vs
       --lookup;
   (c) what one check costs: the target's forward pass over k + 1 positions (a 90-token prompt
       in batches of k + 1, the output head left out) against one decoding step, k = 1, 4, 8,
       per target: with acceptance
       rate a and k drafted, a step yields (1 - a^(k+1)) / (1 - a) tokens for that cost plus the
       draft's (a draft model's k steps; prompt lookup's: nothing).
   llama.cpp: llama-bench -p 0 -n N (plain), llama-speculative -md and llama-lookup with
   --spec-draft-n-max (the bundled version's name for --draft-max), --temp 0, the same threads;
   decode tok/s as each prints it.
3. Writes the tables with the machine, the date and the commit to --out (default
   bench/results-spec.md; build/bench/results-spec-quick.md with --quick).
"""

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402  (models, prompts, the machine)

RUN = ROOT / "run"
SHIPPED = ROOT / "models" / "kjv.gguf"
BUILD = ROOT / "build" / "bench"
LLAMA_BIN = ROOT / "build" / "llama.cpp" / "build" / "bin"

PASSAGE = ("In the beginning God created the heaven and the earth. And the earth was without form, "
           "and void; and darkness was upon the face of the deep. And the Spirit of God moved upon "
           "the face of the waters. Again: In the beginning God created the heaven")
VERSE = ("The LORD is my shepherd; I shall not want. He maketh me to lie down in green pastures: he "
         "leadeth me beside the still waters. The LORD is my shepherd; I shall not want. He maketh")
PROMPTS = {"passage, then its start": PASSAGE, "a verse quoted twice": VERSE}
VERIFY_PROMPT = 90  # tokens, in batches of k + 1 = 2, 5, 9: whole batches, startup amortized


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def ours(model, prompt, n, threads, *extra):
    """One ./run: (decode tok/s, drafted, accepted) from its stderr (-v)."""
    cmd = [str(RUN), str(model), "-i", prompt, "-n", str(n), "-t", "0", "--threads",
           str(threads), "-v", *extra]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise bench.BenchError(f"{' '.join(cmd)}: {r.stderr.strip()[-300:]}")
    m = re.search(r"prompt: (\d+) tokens, ([\d.]+) tok/s \| generated: (\d+) tokens, ([\d.]+) tok/s",
                  r.stderr)
    s = re.search(r"drafted (\d+) tokens, accepted (\d+)", r.stderr)
    if not m:
        raise bench.BenchError(f"cannot parse ./run's stderr: {r.stderr.strip()[-300:]}")
    return float(m.group(4)), int(s.group(1)) if s else 0, int(s.group(2)) if s else 0, \
        float(m.group(2))


def median_runs(fn, reps):
    runs = [fn() for _ in range(reps)]
    return tuple(statistics.median(r[i] for r in runs) for i in range(len(runs[0])))


def llama(tool, args):
    """A llama.cpp tool's output (stdout + stderr), or raises."""
    cmd = [str(LLAMA_BIN / tool), *map(str, args)]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise bench.BenchError(f"{tool} exited {r.returncode}: {r.stdout.strip()[-300:]}")
    return r.stdout


def llama_spec(tool, target, prompt, n, threads, draft_max, draft=None):
    """llama-speculative / llama-lookup: (decode tok/s, drafted, accepted)."""
    args = ["-m", target, "-p", prompt, "-n", n, "-t", threads, "--temp", 0,
            "--spec-draft-n-max", draft_max, "-c", 1024]  # this version's name for --draft-max
    if draft:
        args += ["-md", draft, "--threads-draft", threads]
    out = llama(tool, args)
    speed = re.search(r"decoded\s+\d+ tokens in\s+[\d.]+ seconds, speed:\s+([\d.]+) t/s", out)
    drafted = re.search(r"n_drafted\s*=\s*(\d+)", out)
    accept = re.search(r"n_accept\s*=\s*(\d+)", out)
    if not (speed and drafted and accept):
        raise bench.BenchError(f"cannot parse {tool}'s output: {out.strip()[-300:]}")
    return float(speed.group(1)), int(drafted.group(1)), int(accept.group(1))


def llama_plain(target, n, threads):
    """llama-bench's decode tok/s (-p 0 -n N)."""
    out = llama("llama-bench", ["-m", target, "-p", 0, "-n", n, "-t", threads, "-o", "json"])
    try:
        return float(json.loads(out[out.index("["):])[0]["avg_ts"])
    except (ValueError, KeyError, IndexError):
        raise bench.BenchError(f"cannot parse llama-bench's output: {out.strip()[-300:]}")


def build_llamacpp(mode):
    """The reason llama.cpp is not measured, or None when its tools are built."""
    if mode == "off":
        return "--llamacpp off"
    t0 = time.time()
    r = subprocess.run(["sh", str(ROOT / "bench" / "build_llamacpp.sh"), "2"], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["build failed"])[-1]
        if mode == "on":
            sys.exit(f"spec_bench: llama.cpp could not be built: {why}")
        return why
    log(f"spec_bench: llama.cpp tools in {LLAMA_BIN.relative_to(ROOT)} ({time.time() - t0:.0f} s)")
    return None


def quantize_shipped():
    out = BUILD / "kjv-q4_0.gguf"
    script = ROOT / "tools" / "quantize_gguf.py"
    if out.exists() and out.stat().st_mtime >= max(SHIPPED.stat().st_mtime, script.stat().st_mtime):
        return out
    r = subprocess.run([sys.executable, str(script), str(SHIPPED), str(out), "--dtype", "q4_0"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise bench.BenchError(f"quantize_gguf.py failed: {r.stderr.strip()[-300:]}")
    return out


def rate(drafted, accepted):
    return f"{100.0 * accepted / drafted:.0f}%" if drafted else "-"


def speculative_rows(a, cases, why_not):
    """Rows of (a) and (b): one per case and method."""
    rows = []
    for name, target, draft, prompt in cases:
        log(f"spec_bench: {name} ...")
        plain = median_runs(lambda: ours(target, prompt, a.n_predict, a.threads), a.reps)
        methods = [("plain", [], None), (f"--lookup {a.draft_max}", ["--lookup", a.draft_max],
                                         "llama-lookup"),
                   (f"-md {draft.name}", ["-md", str(draft), "--draft-max", a.draft_max],
                    "llama-speculative")]
        for label, extra, tool in methods:
            r = plain if not extra else median_runs(
                lambda: ours(target, prompt, a.n_predict, a.threads, *map(str, extra)), a.reps)
            peer, peer_rate = "-", "-"
            if not why_not:
                try:
                    if tool is None:
                        p = llama_plain(target, a.n_predict, a.threads)
                    else:
                        res = median_runs(lambda: llama_spec(
                            tool, target, prompt, a.n_predict, a.threads, a.draft_max,
                            draft if tool == "llama-speculative" else None), a.reps)
                        p, peer_rate = res[0], rate(res[1], res[2])
                    peer = f"{p:.1f}"
                    ratio = f"{r[0] / p:.2f}x"
                except bench.BenchError as e:
                    log(f"spec_bench: {e}")
                    peer, ratio = "failed", "-"
            else:
                ratio = "-"
            rows.append(f"| {name} | {label} | {r[0]:.1f} | {r[0] / plain[0]:.2f}x | "
                        f"{rate(r[1], r[2])} | {peer} | {peer_rate} | {ratio} |")
    return rows


def verify_rows(a, targets):
    """(c): the cost of a forward pass over k + 1 positions against one decoding step."""
    rows = []
    for name, target in targets:
        log(f"spec_bench: verify cost, {name} ...")
        step = median_runs(lambda: ours(target, PASSAGE, a.n_predict, a.threads), a.reps)[0]
        cells = []
        prompt = bench.make_prompt(target, VERIFY_PROMPT)
        for k in (1, 4, 8):
            tps = median_runs(lambda: ours(target, prompt, 1, a.threads, "-b", str(k + 1)),
                              a.reps)[3]
            cells.append(f"{((k + 1) / tps) * step:.2f}")
        rows.append(f"| {name} | {1000.0 / step:.2f} | " + " | ".join(cells) + " |")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="110M", choices=sorted(bench.SHAPES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-predict", type=int, default=128)
    ap.add_argument("--draft-max", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--llamacpp", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--quick", action="store_true",
                    help="development: 15M, 32 tokens, 1 rep; checks that everything runs")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    if a.quick:
        a.shape, a.n_predict, a.reps = "15M", 32, 1
    if a.out is None:
        a.out = str(BUILD / "results-spec-quick.md" if a.quick else ROOT / "bench" / "results-spec.md")
    BUILD.mkdir(parents=True, exist_ok=True)
    why_not = build_llamacpp(a.llamacpp)
    if why_not:
        log(f"spec_bench: llama.cpp not measured: {why_not}")
    try:
        kjv_q4 = quantize_shipped()
        hf = bench.make_hf(a.shape)
        f16, q8, q4 = (bench.export(a.shape, t, hf) for t in ("f16", "q8_0", "q4_0"))
        cases = [(f"kjv F32, {p}", SHIPPED, kjv_q4, text) for p, text in PROMPTS.items()]
        cases += [(f"{a.shape} {t.upper()}", m, q4, PASSAGE) for t, m in (("f16", f16), ("q8_0", q8))]
        rows = speculative_rows(a, cases, why_not)
        vrows = verify_rows(a, [("kjv F32", SHIPPED), (f"{a.shape} F16", f16),
                                (f"{a.shape} Q8_0", q8), (f"{a.shape} Q4_0 (draft)", q4)])
    except bench.BenchError as e:
        sys.exit(f"spec_bench: {e}")
    peer = f"llama.cpp built natively ({LLAMA_BIN.relative_to(ROOT)})" if not why_not else \
        f"llama.cpp not measured: {why_not}"
    text = "\n".join([
        "# Speculative decoding (make bench)", "",
        f"{bench.machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit "
        f"{bench.git_commit()}; {a.threads} threads, {a.n_predict} greedy tokens, --draft-max "
        f"{a.draft_max}, median of {a.reps}; load average {bench.loadavg():.2f}; {peer}.", "",
        "Decode tok/s; x plain: against our plain decoding of the same prompt; acceptance: drafted "
        "tokens kept; peer: llama-bench (plain), llama-lookup, llama-speculative with the same "
        "files, prompt, tokens, --draft-max and threads.", "",
        "| case | method | tok/s | x plain | acceptance | peer tok/s | peer acceptance | ours / peer |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        "What a check costs: one decoding step (ms), and the forward pass over k + 1 positions in "
        f"one batch, in decoding steps (a {VERIFY_PROMPT}-token prompt in batches of k + 1, -b k+1: "
        "the output head, which a prompt runs for its last batch only, is left out; a check runs "
        "it for all k + 1 positions).", "",
        "| target | step ms | k = 1 | k = 4 | k = 8 |", "|---|---|---|---|---|", *vrows, ""])
    Path(a.out).write_text(text)
    print(text)
    log(f"spec_bench: wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
