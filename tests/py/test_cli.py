"""The command line: --help is generated from cli.c's option table; docs/usage.md shows it."""

import subprocess

from conftest import ROOT, RUN, need_run


def test_docs_usage_is_the_help():
    """docs/usage.md's `$ ./run --help` block is the help, line for line (tests/docs_check.py checks
    it too; `tests/docs_check.py --update` refreshes it)."""
    need_run()
    out = subprocess.run([str(RUN), "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    usage = (ROOT / "docs" / "usage.md").read_text()
    start = usage.index("```console\n$ ./run --help\n")
    block = usage[start:usage.index("```", start + 3)].splitlines()[2:]
    assert block == out.stdout.rstrip("\n").splitlines(), "docs/usage.md's --help block differs from ./run --help"


def test_every_option_in_the_help_is_accepted():
    """Each option --help lists parses (with a value where it names one); none is listed twice."""
    need_run()
    out = subprocess.run([str(RUN), "--help"], capture_output=True, text=True, timeout=30).stdout
    seen = set()
    values = {"TEXT": "hi", "N": "1", "T": "0", "P": "0.5", "K": "1", "S": "1", "PATH": "/dev/null",
              "FILE": "/dev/null", "L.H": "0.0", "R": "1.1", "A": "0.5", "MODE": "generate",
              "NAME": "chatml", "L.H.POS": "0.0.0", "KIND": "induction"}
    for line in out.splitlines():
        if not line.startswith("  ") or line.startswith("   " * 8):
            continue
        words = line.replace(",", " ").split()
        names = [w for w in words[:3] if w.startswith("-")]
        arg = words[len(names)] if len(names) < len(words) and words[len(names)] in values else None
        for name in names:
            assert name not in seen, f"{name} listed twice"
            seen.add(name)
            if name in ("-h", "--help"):
                continue
            args = [name] + ([values[arg]] if arg else [])
            # -n 0 with --tokenize: parses, loads the shipped model, prints ids, exits 0
            r = subprocess.run([str(RUN), *args, "--tokenize", "-n", "0"], capture_output=True,
                               text=True, timeout=60)
            assert "unknown option" not in r.stderr and "needs a value" not in r.stderr, (name, r.stderr)
    assert len(seen) >= 20
