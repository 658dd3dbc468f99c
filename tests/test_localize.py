"""Profiling and attribution on small real programs with known answers (real py-spy and cProfile runs)."""
import difflib
import json
import sys

import pytest

from perfagent.localize.hotspots import ProfileOptions, profile_workload, tally_pyspy
from perfagent.localize.source import FunctionSpan, SourceIndex, edited_spans, touched_functions
from perfagent.measure.workload import Workload
from tests.conftest import RLIMITS, git, make_repo

PROGRAM = {
    "pkg/__init__.py": "",
    "pkg/mod.py": '''\
        import time
        from fractions import Fraction


        def frac_sum(n):
            # the work happens in the stdlib's fractions module, driven by a generator expression
            return sum(Fraction(i, i + 1) for i in range(n))


        def squares(n):
            return sum([i * i for i in range(n) if i % 3])


        class Catalog:
            def __init__(self, names):
                self.names = names

            def ordered(self):
                # builtin sorted() and a lambda: both count for this method
                return sorted(self.names, key=lambda s: s[::-1])


        def outer(n):
            def inner(k):
                total = 0
                for i in range(k):
                    total += i % 7
                return total
            return inner(n)


        def rec(n, k):
            if n == 0:
                return squares(k)
            return rec(n - 1, k)


        def helper(x):
            return x + 1


        def expensive_setup():
            end = time.perf_counter() + 0.4
            while time.perf_counter() < end:
                pass
        ''',
    "bench.py": '''\
        from pkg.mod import Catalog, expensive_setup, frac_sum, helper, outer, rec, squares


        def setup():
            global CATALOG
            expensive_setup()
            CATALOG = Catalog([str(i * 7919 % 100003) for i in range(15000)])


        def workload():
            frac_sum(2500)
            squares(100000)
            CATALOG.ordered()
            outer(150000)
            rec(40, 100000)
            return [helper(i) for i in range(7)]
        ''',
}


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("prog") / "repo", PROGRAM)


@pytest.fixture(scope="module", params=["py-spy", "cProfile"])
def profile(request, program, tmp_path_factory):
    """One real profile per profiler, shared by the attribution tests."""
    workload = Workload.parse("bench.py", program)
    return profile_workload(program, workload, python=sys.executable, tmp=tmp_path_factory.mktemp("profile"),
                            limits=RLIMITS.limits(timeout_s=120),
                            options=ProfileOptions(seconds=1.0, use_pyspy=request.param == "py-spy"))


def _spots(profile):
    return {h.qualname: h for h in profile.hotspots}


def test_profiler_used(profile, request):
    assert profile.profiler == request.node.callspec.params["profile"]
    assert profile.samples > 0 and profile.hotspots


def test_library_and_builtin_time_counts_for_the_repository_caller(profile):
    spots = _spots(profile)
    assert spots["frac_sum"].self_share > 0.1  # Fraction arithmetic in fractions.py
    assert spots["Catalog.ordered"].self_share > 0.03  # sorted() in C, key lambda folded in
    assert all(h.file.startswith("pkg/") for h in profile.hotspots)  # no stdlib, no workload file


def test_generated_frames_fold_into_their_function(profile):
    spots = _spots(profile)
    assert not any(part in name for name in spots for part in ("<listcomp>", "<genexpr>", "<lambda>"))
    assert spots["squares"].self_share > 0.05
    squares = spots["squares"]
    assert squares.key == "pkg.mod:squares" and squares.file == "pkg/mod.py"
    assert (squares.start, squares.end) == (10, 11)


def test_nested_functions_have_python_qualnames(profile):
    spots = _spots(profile)
    inner, outer = spots["outer.<locals>.inner"], spots["outer"]
    assert inner.key == "pkg.mod:outer.<locals>.inner" and inner.self_share > 0.05
    assert outer.cum_share >= inner.cum_share - 1e-9 and outer.self_share < inner.self_share
    assert [name for name, _ in inner.callers] == ["pkg.mod:outer"]
    [(caller, share)] = outer.callers
    assert caller == "<workload>" and share == pytest.approx(outer.cum_share, rel=0.05)
    assert outer.callees[0][0] == "pkg.mod:outer.<locals>.inner"
    assert inner.depth == pytest.approx(1, abs=0.05) and outer.depth == pytest.approx(0, abs=0.05)


def test_setup_is_not_workload_time(profile):
    assert "expensive_setup" not in _spots(profile)  # 0.4 s of repository code in setup()


def test_recursion_is_counted_once(profile):
    spots = _spots(profile)
    rec, squares = spots["rec"], spots["squares"]
    # squares runs as often from the workload as from the bottom of rec's 41 frames: rec's share is about half of
    # squares'; counted once per frame it would be 41 times that
    assert 0.25 * squares.cum_share < rec.cum_share < 0.8 * squares.cum_share
    assert rec.self_share < 0.05
    assert all(0 <= h.self_share <= h.cum_share + 1e-9 <= 1.0 + 1e-9 for h in profile.hotspots)


def test_call_counts_and_lines(profile):
    spots = _spots(profile)
    if profile.profiler == "py-spy":
        assert all(h.calls is None for h in profile.hotspots), "a sampler does not know call counts"
        outer, inner = spots["outer"], spots["outer.<locals>.inner"]
        assert outer.lines[0][0] == outer.end, "a caller's hottest line is the call of its hot callee"
        assert all(inner.start <= line <= inner.end for line, _ in inner.lines)
        assert profile.raw_path
    else:
        runs = spots["frac_sum"].calls  # one per workload() call; its generator's resumptions are not calls of it
        assert runs >= 1 and spots["Catalog.ordered"].calls == runs and spots["outer"].calls == runs
        assert spots["helper"].calls == 7 * runs and spots["squares"].calls == 2 * runs
        assert spots["rec"].calls == 41 * runs  # recursive calls are calls


def test_ranking_score(program):
    """score = self + cumulative / 2**depth, on synthetic py-spy stacks with known shares: the entry point `rec`
    (no self time) ranks above `inner`, which has self time but sits one level down."""
    workload = Workload.parse("bench.py", program)
    frame = "{} (" + str(program / "pkg" / "mod.py") + ":{})"
    top = f"perfagent_profiled_workload ({program}/harness.py:1)"
    raw = (";".join([top, frame.format("rec", 35), frame.format("rec", 35), frame.format("rec", 34),
                     frame.format("squares", 11)]) + " 60\n"
           + ";".join([top, frame.format("outer", 29), frame.format("inner", 27)]) + " 30\n"
           + ";".join([top, frame.format("frac_sum", 7)]) + " 10\n")
    spots = tally_pyspy(raw, SourceIndex(program), workload).hotspots()
    assert [(h.qualname, h.score) for h in spots] == [
        ("squares", 0.9), ("rec", 0.6), ("outer.<locals>.inner", 0.45), ("outer", 0.3), ("frac_sum", 0.2)]
    rec = spots[1]
    assert (rec.self_share, rec.cum_share, rec.depth) == (0.0, 0.6, 0.0) and sorted(rec.lines) == [(34, 0.6), (35, 0.6)]


def test_recursive_stack_counted_once(program):
    """A synthetic raw py-spy stack rec -> rec -> squares: cumulative shares stay at 100%, self goes to the leaf."""
    workload = Workload.parse("bench.py", program)
    mod = program / "pkg" / "mod.py"
    frame = "{name} (" + str(mod) + ":{line})"
    stack = ";".join([
        f"perfagent_profiled_workload ({program}/harness.py:1)",
        frame.format(name="rec", line=35), frame.format(name="rec", line=34),
        frame.format(name="squares", line=11),
    ])
    tally = tally_pyspy(f"{stack} 7\n<module> (x.py:1) 3\n", SourceIndex(program), workload)
    assert tally.total == 7  # the sample outside the workload frame is not counted
    spots = {h.qualname: h for h in tally.hotspots()}
    assert spots["rec"].cum_share == 1.0 and spots["rec"].self_share == 0.0
    assert spots["squares"].self_share == 1.0 and spots["squares"].depth == 1
    assert spots["squares"].callers == [("pkg.mod:rec", 1.0)]


def test_a_nested_def_line_runs_in_the_enclosing_function(program):
    """py-spy names the running function: outer's frame on the `def inner` line (making the function object) is
    outer's time, and inner's frame on its own `def` line (3.11 reports that while a call starts) is inner's."""
    workload = Workload.parse("bench.py", program)
    frame = "{} (" + str(program / "pkg" / "mod.py") + ":{})"
    top = f"perfagent_profiled_workload ({program}/harness.py:1)"
    raw = (";".join([top, frame.format("outer", 24)]) + " 3\n"
           + ";".join([top, frame.format("outer", 29), frame.format("outer.<locals>.inner", 24)]) + " 1\n")
    spots = {h.qualname: h for h in tally_pyspy(raw, SourceIndex(program), workload).hotspots()}
    assert spots["outer"].self_share == 0.75 and spots["outer"].cum_share == 1.0
    assert spots["outer.<locals>.inner"].self_share == 0.25


def test_source_index_names_and_spans(tmp_path):
    (tmp_path / "m.py").write_text(
        "class A:\n"
        "    @staticmethod\n"
        "    def f():\n"
        "        def inner():\n"
        "            class B:\n"
        "                def g(self):\n"
        "                    return [x for x in range(3)]\n"
        "            return B\n"
        "        return inner\n"
        "\n"
        "x = 1\n")
    index = SourceIndex(tmp_path)
    names = {s.qualname: (s.start, s.end) for s in index.functions("m.py")}
    assert names == {"A.f": (2, 9), "A.f.<locals>.inner": (4, 8), "A.f.<locals>.inner.<locals>.B.g": (6, 7)}
    assert index.function_at("m.py", 7).qualname == "A.f.<locals>.inner.<locals>.B.g"
    assert index.function_at("m.py", 9).qualname == "A.f"
    assert index.function_at("m.py", 11).qualname == "<module>"
    assert index.relative("/elsewhere/m.py") is None


def test_edited_spans_of_a_patch(program):
    """Replaced lines, lines added inside a function, module-level edits, new functions, new files."""
    patch = '''\
diff --git a/pkg/mod.py b/pkg/mod.py
--- a/pkg/mod.py
+++ b/pkg/mod.py
@@ -1,3 +1,4 @@
 import time
+import heapq
 from fractions import Fraction
 
@@ -10,2 +11,2 @@
 def squares(n):
-    return sum([i * i for i in range(n) if i % 3])
+    return sum(i * i for i in range(n) if i % 3)
@@ -23,7 +24,8 @@
 def outer(n):
     def inner(k):
         total = 0
+        k = int(k)
         for i in range(k):
             total += i % 7
         return total
     return inner(n)
@@ -40,3 +42,7 @@
 
 
+def new_helper(x):
+    return x
+
+
 def expensive_setup():
diff --git a/pkg/new.py b/pkg/new.py
--- /dev/null
+++ b/pkg/new.py
@@ -0,0 +1 @@
+x = 1
'''
    index = SourceIndex(program)
    assert {s.key for s in edited_spans(index, patch)} == {
        "pkg.mod:<module>", "pkg.mod:squares", "pkg.mod:outer.<locals>.inner"}
    replacement = patch[patch.index("@@ -10,2"):patch.index("@@ -23,7")]  # the last line of squares, replaced
    assert [s.key for s in edited_spans(index, "--- a/pkg/mod.py\n+++ b/pkg/mod.py\n" + replacement)] == [
        "pkg.mod:squares"]
    zero_context = "--- a/pkg/mod.py\n+++ b/pkg/mod.py\n@@ -28,0 +29 @@\n+    n = int(n)\n"  # diff -U0: after line 28
    assert [s.key for s in edited_spans(index, zero_context)] == ["pkg.mod:outer"]


SHAPES = '''\
import os


def first(x):
    y = x + 1
    return y


class Box:
    size = 3

    def grow(self, n):
        total = self.size
        for i in range(n):
            total += i
        return total


def last():
    return 0
'''
# (what the change does, the new text, the functions it touches as keys of m.py)
CHANGES = [
    ("a function inserted between two", SHAPES.replace("def last", "def middle():\n    pass\n\n\ndef last"),
     ["m:<module>"]),
    ("a line inserted inside a function", SHAPES.replace("    y = x + 1\n", "    x = int(x)\n    y = x + 1\n"),
     ["m:first"]),
    ("a line changed inside a method", SHAPES.replace("total += i\n", "total += 2 * i\n"), ["m:Box.grow"]),
    ("a class attribute and an import", SHAPES.replace("size = 3", "size = 4").replace("import os", "import sys"),
     ["m:<module>"]),
    ("the last function deleted, with the blank lines above it", SHAPES.replace("\n\ndef last():\n    return 0\n", ""),
     ["m:<module>", "m:last"]),
    ("a method's last line deleted", SHAPES.replace("        return total\n", ""), ["m:Box.grow"]),
    ("a decorator added above a def: the module's (its tests include the function's)",
     SHAPES.replace("def first", "@functools.cache\ndef first"), ["m:<module>"]),
    ("a line appended to the file", SHAPES + "x = last()\n", ["m:<module>"]),
]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("shapes"), {"m.py": SHAPES})


@pytest.mark.parametrize("what, after, keys", CHANGES, ids=[c[0] for c in CHANGES])
def test_the_functions_a_change_touches(shapes, what, after, keys):
    """One rule for a change given as before/after texts and as a diff (git's, or difflib's with any context)."""
    index = SourceIndex(shapes)
    assert sorted(s.key for s in touched_functions(index, {"m.py": SHAPES}, {"m.py": after})) == keys
    (shapes / "m.py").write_text(after)
    try:
        diffs = [git(shapes, "diff"), git(shapes, "diff", "-U0")]
    finally:
        git(shapes, "checkout", "--", "m.py")  # the index reads the old side
    diffs += ["".join(difflib.unified_diff(SHAPES.splitlines(True), after.splitlines(True), "a/m.py", "b/m.py", n=n))
              for n in (0, 3)]
    assert all(sorted(s.key for s in edited_spans(index, diff)) == keys for diff in diffs), diffs


def test_a_file_the_change_creates_touches_nothing(shapes):
    """It has no old lines: a new module is reached through the edits that import it."""
    index = SourceIndex(shapes)
    assert touched_functions(index, {"new.py": ""}, {"new.py": "def f():\n    pass\n"}) == []
    after = {"new.py": "x = 1\n", "m.py": SHAPES.replace("size = 3", "size = 4")}
    assert touched_functions(index, {"m.py": SHAPES}, after) == [FunctionSpan("m.py", "<module>", 1, 10)]
    assert edited_spans(index, "--- /dev/null\n+++ b/new.py\n@@ -0,0 +1 @@\n+x = 1\n") == []


def test_profile_command_json(program):
    from typer.testing import CliRunner

    from perfagent.cli import app

    result = CliRunner().invoke(app, ["profile", str(program), "-w", "bench.py", "--seconds", "1", "--json",
                                      "--top", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["profiler"] == "py-spy" and len(data["hotspots"]) == 4
    first = data["hotspots"][0]
    assert {"key", "qualname", "file", "start", "end", "self_share", "cum_share", "calls", "lines", "callers",
            "callees", "depth", "score"} <= set(first)
    assert first["calls"] is None and first["file"] == "pkg/mod.py"
