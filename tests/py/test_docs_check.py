"""tests/docs_check.py, the check of the docs' examples: what it finds, what it accepts, what it
refuses."""

import sys

from conftest import TESTS

sys.path.insert(0, str(TESTS))
import docs_check  # noqa: E402


def test_finds_commands_and_outputs_in_console_blocks_only():
    lines = [
        "text",
        "```sh",
        "$ not checked",
        "```",
        "- a list item:",
        "  ```console",
        "  $ echo a",
        "  a",
        "  $ echo b; echo c",
        "  b",
        "  c",
        "  ```",
    ]
    found = docs_check.find_examples("x.md", lines)
    assert [(e.line, e.command, e.expected, e.indent) for e in found] == [
        (7, "echo a", ["a"], "  "),
        (9, "echo b; echo c", ["b", "c"], "  "),
    ]
    assert (found[1].out_start, found[1].out_end) == (9, 11)  # the lines --update replaces


def test_numbers_with_a_point_have_a_tolerance_integers_none():
    same = docs_check.same_line
    assert same("|q| = 6.615360, max |diff| 4.73e-08", "|q| = 6.615361, max |diff| 6.1e-08")
    assert not same("|q| = 6.615360", "|q| = 6.625360")  # 1.5e-3 relative: a real change
    assert not same("fed 54 tokens", "fed 55 tokens")
    assert not same("18432 bytes per token", "18433 bytes per token")  # within 1e-4, but an integer
    assert same("18432.0 bytes", "18433.0 bytes")
    assert not same("12 layers x 192 kv dim", "6 layers x 64 kv dim")
    assert not same("p = 0.5 broad", "p = 0.5 local")


def test_an_ellipsis_line_stands_for_any_run_of_lines():
    m = docs_check.matches
    assert m(["a", "...", "d"], ["a", "b", "c", "d"])
    assert m(["a", "...", "d"], ["a", "d"])
    assert m(["a", "  ...", "c", "...", "f"], ["a", "b", "c", "d", "e", "f"])
    assert not m(["a", "...", "d"], ["a", "b", "c"])
    assert not m(["a", "b"], ["a", "b", "c"])  # nothing left out without an ellipsis


def test_a_command_writing_to_stderr_must_redirect_it():
    out, problem = docs_check.run("echo out; echo err >&2")
    assert out == ["out"] and "stderr" in problem and "err" in problem
    out, problem = docs_check.run("echo out; (echo err >&2) 2>/dev/null")
    assert out == ["out"] and problem is None
    out, problem = docs_check.run("(echo out; echo err >&2) 2>&1")
    assert out == ["out", "err"] and problem is None
