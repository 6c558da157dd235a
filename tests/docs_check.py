#!/usr/bin/env python3
"""The examples in README.md and docs/*.md are what the program prints: run and compare them.

An example is a fenced block whose info string is `console` (the fence may be indented, as in a
list item). In it, a line `$ COMMAND` is run with sh from the repository root, and the lines after
it, up to the next `$ ` line or the end of the block, are what it must print on stdout. A command
that also writes to stderr fails the check unless the command redirects it (2>&1, 2>/dev/null):
the block then shows everything a terminal would. A line `...` stands for any number of lines.
Numbers with a decimal point or an exponent may differ by 1e-5 + 1e-4 x their size (kernel sets
of other CPUs round differently); everything else must be equal, integers included.

    tests/docs_check.py            check every example; exit 1 on a difference, with a diff
    tests/docs_check.py --update   rewrite the outputs that differ from what the commands print
                                   (blocks with a `...` line are reported, to be edited by hand)

Standard library only; run it with any python3.
"""
import difflib
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^( *)```(\S*)\s*$")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
TIMEOUT = 120  # seconds per command


class Example:
    """One command of a console block: where it is, the command, the output shown."""

    def __init__(self, path, line, indent, command, expected, out_start, out_end):
        self.path, self.line, self.indent = path, line, indent
        self.command, self.expected = command, expected
        self.out_start, self.out_end = out_start, out_end  # the output's lines [start, end)


def find_examples(path, lines):
    examples, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, info = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and not FENCE.match(lines[j]):
            j += 1
        if j == len(lines):
            sys.exit(f"{path}:{i + 1}: a fenced block that is never closed")
        if info == "console":
            body = [l[len(indent):] if l.startswith(indent) else l.lstrip() for l in lines[i + 1 : j]]
            k = 0
            while k < len(body):
                if not body[k].startswith("$ "):
                    sys.exit(f"{path}:{i + 2 + k}: a console block must start with a '$ ' command line")
                end = k + 1
                while end < len(body) and not body[end].startswith("$ "):
                    end += 1
                examples.append(
                    Example(path, i + 2 + k, indent, body[k][2:], body[k + 1 : end], i + 2 + k, i + 1 + end)
                )
                k = end
        i = j + 1
    return examples


def run(command):
    env = dict(os.environ, NO_COLOR="1", TERM="dumb", LC_ALL="C.UTF-8")
    for k in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):  # `make help` under `make docs-check`: as typed
        env.pop(k, None)
    try:
        p = subprocess.run(
            ["sh", "-c", command], cwd=ROOT, env=env, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return None, f"did not finish in {TIMEOUT} s"
    out = p.stdout.decode("utf-8", "replace").split("\n")
    out = [l.rstrip() for l in out]
    while out and out[-1] == "":
        out.pop()
    err = p.stderr.decode("utf-8", "replace").strip()
    if err:
        return out, "it also writes to stderr (redirect it in the command: 2>&1 or 2>/dev/null):\n  " + err.split("\n")[0]
    return out, None


def same_line(expected, actual):
    if expected.rstrip() == actual:
        return True
    e_text, a_text = NUMBER.split(expected.rstrip()), NUMBER.split(actual)
    if e_text != a_text:
        return False
    for e, a in zip(NUMBER.findall(expected), NUMBER.findall(actual)):
        if e == a:
            continue
        if not any(c in e + a for c in ".eE"):
            return False  # integers are exact
        x, y = float(e), float(a)
        if abs(x - y) > 1e-5 + 1e-4 * max(abs(x), abs(y)):
            return False
    return True


def matches(expected, actual):
    """Expected lines against actual ones, a `...` line matching any run of lines."""
    memo = {}

    def go(i, j):
        if (i, j) in memo:
            return memo[i, j]
        if i == len(expected):
            r = j == len(actual)
        elif expected[i].strip() == "...":
            r = any(go(i + 1, k) for k in range(j, len(actual) + 1))
        else:
            r = j < len(actual) and same_line(expected[i], actual[j]) and go(i + 1, j + 1)
        memo[i, j] = r
        return r

    return go(0, 0)


def main():
    update = "--update" in sys.argv[1:]
    paths = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    failed, checked, rewritten = 0, 0, 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        rel = os.path.relpath(path, ROOT)
        edits = []
        for ex in find_examples(rel, lines):
            checked += 1
            actual, problem = run(ex.command)
            if problem:
                print(f"{rel}:{ex.line}: $ {ex.command}\n  {problem}")
                failed += 1
                continue
            if matches(ex.expected, actual):
                continue
            if update and not any(l.strip() == "..." for l in ex.expected):
                edits.append((ex.out_start, ex.out_end, [ex.indent + l if l else l for l in actual]))
                continue
            failed += 1
            print(f"{rel}:{ex.line}: $ {ex.command}")
            if update:
                print("  the block has a '...' line: edit it by hand")
            diff = difflib.unified_diff(ex.expected, actual, "in the docs", "printed now", lineterm="", n=2)
            print("\n".join("  " + d for d in diff))
        if edits:
            for start, end, new in sorted(edits, reverse=True):
                lines[start:end] = new
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines))
            rewritten += len(edits)
            print(f"{rel}: rewrote {len(edits)} output(s)")
    print(f"docs-check: {checked} examples, {failed} differ" + (f", {rewritten} rewritten" if update else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
