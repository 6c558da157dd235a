#!/usr/bin/python3
"""mutants.py: mutation testing of the test suite. Each mutant in tools/mutants.txt is a one-line
bug planted in a source file; the tests named beside it must fail on it (KILLED). A mutant they let
through (SURVIVED) is a bug the suite cannot see.

The tree (git ls-files, and the npm oracles' node_modules link) is copied once into a temporary
directory and built; then for each mutant: plant it, rebuild incrementally, run its tests fastest
first until one fails, put the file back. One line per mutant, then the count, the kill ratio and
the total time. Exits non-zero when a mutant survived (except those the list marks pending: their
killing test is still to come), is stale (its old text does not occur exactly once in its file),
does not compile, or when a named test fails on the unmutated tree (a test that fails anyway would
"kill" every mutant).

    /usr/bin/python3 tools/mutants.py [--only PATTERN]... [--list] [--keep] [--timeout SECONDS]

Standard library only."""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIST = os.path.join(ROOT, "tools", "mutants.txt")
PYTHON = "/usr/bin/python3"

# Short test names as the list writes them -> (shell command, rough seconds on an idle 2-core
# machine: the order in which a mutant's tests run, what make builds first). A name not here runs
# as a shell command, after a build of everything. The C tests run line-buffered (stdbuf), so that
# a FAIL line arrives when printed and the test can be stopped there.
RUN_TOOLS = ["run", "build/npycmp"]
C_TESTS = {
    "test_decoder": ("stdbuf -oL build/native/tests/c/test_decoder", 0.1,
                     ["build/native/tests/c/test_decoder"]),
    "bad_input.sh": ("sh tests/c/bad_input.sh", 1, RUN_TOOLS),
    "golden.sh": ("sh tests/c/golden.sh", 2, RUN_TOOLS),
    "test_kernels": ("OMP_STACKSIZE=128K stdbuf -oL build/native/tests/c/test_kernels", 6,
                     ["build/native/tests/c/test_kernels"]),
    "test_sampler": ("stdbuf -oL build/native/tests/c/test_sampler", 9,
                     ["build/native/tests/c/test_sampler"]),
    "test_spec": ("stdbuf -oL build/native/tests/c/test_spec", 2,
                  ["build/native/tests/c/test_spec"]),
    "test_tokenizer": ("stdbuf -oL build/native/tests/c/test_tokenizer", 1,
                       ["build/native/tests/c/test_tokenizer"]),
    "test_cli": ("stdbuf -oL build/native/tests/c/test_cli", 0.1,
                 ["build/native/tests/c/test_cli"]),
}
for _name in ("gguf", "tokenizer", "cli", "llama2c", "numeric"):
    C_TESTS["replay_" + _name] = (f"build/native/tests/fuzz/replay_{_name} tests/fuzz/*/{_name}", 1,
                                  [f"build/native/tests/fuzz/replay_{_name}"])
# What tests/py needs built, and everything (for `make test-c` and other commands).
PY_TOOLS = ["run", "build/native/tests/c/dequant", "build/tools/llama_quantize"]
EVERYTHING = sorted({t for _, _, ts in C_TESTS.values() for t in ts} | set(PY_TOOLS))


def expand(test):
    """(command, estimated seconds, make targets) of a test as the list names it."""
    if test in C_TESTS:
        return C_TESTS[test]
    if test.startswith("test_") and ".py" in test:  # test_X.py, test_X.py::name, test_X.py -k expr
        return f"{PYTHON} -m pytest -q -x -p no:cacheprovider tests/py/{test}", 20, PY_TOOLS
    return test, 40, EVERYTHING


def parse(path):
    """The mutants: dicts of file, old, new, tests, pending, line (in the list)."""
    line_re = re.compile(r"^(\??)(\S+)\s+`([^`]*)`\s+`([^`]*)`\s+(.+)$")
    mutants, errors = [], []
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, 1):
            text = text.rstrip("\n")
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            m = line_re.match(text)
            if not m:
                errors.append(f"{path}:{n}: not FILE `OLD` `NEW` TEST[; TEST...]: {text}")
                continue
            tests = [t.strip() for t in m.group(5).split(";") if t.strip()]
            mutants.append(dict(pending=m.group(1) == "?", file=m.group(2), old=m.group(3),
                                new=m.group(4), tests=tests, line=n))
    return mutants, errors


def name(m):
    """FILE:LINE (of the source; of the list while it is stale) `OLD` -> `NEW`"""
    return f"{m['file']}:{m.get('src_line') or m['line']} `{m['old']}` -> `{m['new']}`"


def stale(m, root):
    """Why the mutant cannot be planted, or None (and m's line in its source file is noted)."""
    path = os.path.join(root, m["file"])
    if not os.path.isfile(path):
        return "no such file"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    count = text.count(m["old"])
    if m["old"] == m["new"]:
        return "old and new text are the same"
    if count != 1:
        return f"old text occurs {count} times (must be once)"
    m["src_line"] = text[:text.index(m["old"])].count("\n") + 1
    return None


def copy_tree(dest):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = os.path.join(ROOT, rel)
        if not os.path.lexists(src):  # deleted in the work tree, not yet committed
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)
    modules = os.path.join(ROOT, "tests", "oracles", "node_modules")
    if os.path.exists(modules):
        os.symlink(os.path.realpath(modules), os.path.join(dest, "tests/oracles/node_modules"))


def sh(cmd, cwd, timeout):
    """(exit code, or 'timeout', or 'FAIL' when the command printed a line starting with FAIL,
    where it is stopped: every test here exits non-zero after such a line; the last lines of its
    output) of a shell command, run in a process group of its own so that it can be stopped whole."""
    p = subprocess.Popen(cmd, shell=True, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"), start_new_session=True)
    timer = threading.Timer(timeout, os.killpg, (p.pid, signal.SIGKILL)) if timeout else None
    if timer:
        timer.start()
    tail, rc = [], None
    try:
        for raw in p.stdout:
            line = raw.decode(errors="replace").rstrip()
            tail = (tail + [line])[-3:]
            if line.startswith("FAIL"):
                rc = "FAIL"
                os.killpg(p.pid, signal.SIGKILL)
                break
    except BaseException:  # interrupted: the command goes too
        os.killpg(p.pid, signal.SIGKILL)
        raise
    finally:
        p.stdout.close()
        code = p.wait()
        if timer:
            timer.cancel()
    if rc is None:
        rc = "timeout" if timer and code == -signal.SIGKILL else code
    return rc, " | ".join(tail)


def build(tree, targets):
    # The program's file target is spelled $(CURDIR)/run (`make run` would also generate with it).
    paths = [os.path.join(tree, "run") if t == "run" else t for t in targets]
    return sh("make -s -j2 " + " ".join(paths), tree, None)


def run_tests(tests, tree, timeout):
    """The first test (fastest first) that fails, with why; None when all pass. Each is built
    first (what it needs of the engine, rebuilt where a source changed). timeout: a test's
    seconds before it counts as failing."""
    for t in sorted(tests, key=lambda t: expand(t)[1]):
        rc, out = build(tree, expand(t)[2])
        if rc != 0:
            return "BUILD", out
        rc, out = sh(expand(t)[0], tree, timeout(t))
        if rc != 0:
            return t, (f"timeout after {timeout(t):.0f} s" if rc == "timeout" else out)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", metavar="PATTERN", action="append",
                    help="only the mutants whose file, old or new text contains PATTERN (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutants and their state")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy of the tree")
    ap.add_argument("--timeout", type=float, default=300,
                    help="seconds a test may run before it counts as failing: this, or 3 times "
                         "its time on the unmutated tree if longer (default 300)")
    args = ap.parse_args()

    mutants, errors = parse(LIST)
    if args.only:
        mutants = [m for m in mutants if any(p in name(m) for p in args.only)]
    bad = 0
    for e in errors:
        print("ERROR", e)
        bad += 1
    for m in mutants:
        why = stale(m, ROOT)
        m["stale"] = why
        if why:
            print(f"STALE    {name(m)}: {why}")
            bad += 1
    if args.list:
        for m in mutants:
            if not m["stale"]:
                tag = "pending" if m["pending"] else "ready  "
                print(f"{tag}  {name(m)}  [{'; '.join(m['tests'])}]")
        print(f"{len(mutants)} mutants ({sum(m['pending'] for m in mutants)} pending)")
        return 1 if bad else 0
    mutants = [m for m in mutants if not m["stale"]]
    if not mutants:
        print("no mutants to run")
        return 1

    start = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that the copy is removed
    tree = tempfile.mkdtemp(prefix="mutants.")
    try:
        return run_all(mutants, tree, args, bad, start)
    finally:
        if args.keep:
            print("the copy is kept in", tree)
        else:
            shutil.rmtree(tree, ignore_errors=True)


def run_all(mutants, tree, args, bad, start):
    copy_tree(tree)
    rc, out = build(tree, EVERYTHING)
    if rc != 0:
        print("ERROR the unmutated tree does not build:", out)
        return 1
    # Every test named must pass on the unmutated tree, or it would "kill" every mutant.
    names = sorted({t for m in mutants for t in m["tests"]}, key=lambda t: expand(t)[1])
    base = {}  # seconds on the unmutated tree (a loaded machine is slower for every run)
    for t in names:
        t0 = time.time()
        failed = run_tests([t], tree, lambda _: args.timeout)
        base[t] = time.time() - t0
        print(f"{'FAILS' if failed else 'passes':8} {t} on the unmutated tree"
              f" ({time.time() - t0:.1f} s){': ' + failed[1] if failed else ''}", flush=True)
        if failed:
            return 1
    print(f"copy, build and baseline: {time.time() - start:.0f} s", flush=True)

    killed = survived = pending_survived = 0
    for m in mutants:
        t0 = time.time()
        path = os.path.join(tree, m["file"])
        with open(path, encoding="utf-8") as f:
            original = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(m["old"], m["new"], 1))
        try:
            result = run_tests(m["tests"], tree, lambda t: max(args.timeout, 3 * base[t]))
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
        secs = f"({time.time() - t0:.0f} s)"
        if result and result[0] == "BUILD":
            print(f"ERROR    {name(m)}: does not compile {secs}: {result[1]}")
            bad += 1
        elif result:
            killed += 1
            note = "  (marked pending: drop the mark)" if m["pending"] else ""
            why = f" ({result[1]})" if result[1].startswith("timeout") else ""
            print(f"KILLED   {name(m)} by {result[0]}{why} {secs}{note}")
        elif m["pending"]:
            pending_survived += 1
            print(f"SURVIVED {name(m)} {secs}  (pending: the test that kills it is not merged)")
        else:
            survived += 1
            print(f"SURVIVED {name(m)} {secs}")
        sys.stdout.flush()
    total = killed + survived + pending_survived
    print(f"{total} mutants: {killed} killed, {survived} survived, "
          f"{pending_survived} pending survived, {bad} errors; "
          f"kill ratio {killed / total:.0%} ({killed}/{total}); total {time.time() - start:.0f} s")
    return 1 if survived or bad else 0


if __name__ == "__main__":
    sys.exit(main())
