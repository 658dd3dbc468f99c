"""Profiling and attribution on small real programs with known answers (real py-spy and cProfile runs)."""
import json
import sys

import pytest

from agent.localize import profile_workload, tally_pyspy
from agent.source import SourceIndex
from agent.workload import Workload
from sandbox.run import Limits
from tests.conftest import make_repo

PROGRAM = {
    "pkg/__init__.py": "",
    "pkg/mod.py": '''\
        import time
        from fractions import Fraction


        def frac_sum(n):
            # all the work happens in the stdlib's fractions module
            return sum(Fraction(i, i + 1) for i in range(n))


        def squares(n):
            return sum([i * i for i in range(n) if i % 3])


        class Shape:
            def area(self, n):
                return squares(n)


        def depth(n):
            return squares(2000) if n == 0 else depth(n - 1)


        def expensive_setup():
            end = time.perf_counter() + 0.5
            while time.perf_counter() < end:
                pass
        ''',
    "bench.py": '''\
        from pkg.mod import Shape, depth, expensive_setup, frac_sum


        def setup():
            expensive_setup()


        def workload():
            frac_sum(3000)
            Shape().area(200000)
            for _ in range(5):
                depth(30)
        ''',
}


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("prog") / "repo", PROGRAM)


def _profile(repo, tmp_path, use_pyspy):
    workload = Workload.parse("bench.py", repo)
    return profile_workload(repo, workload, python=sys.executable, tmp=tmp_path, seconds=2.0,
                            limits=Limits(timeout_s=120), use_pyspy=use_pyspy)


@pytest.mark.parametrize("use_pyspy", [True, False], ids=["py-spy", "cProfile"])
def test_attribution_rules(program, tmp_path, use_pyspy):
    profile = _profile(program, tmp_path, use_pyspy)
    assert profile.profiler == ("py-spy" if use_pyspy else "cProfile")
    spots = {h.qualname: h for h in profile.hotspots}
    # stdlib time (fractions.py) is charged to the repository function that called it
    assert spots["frac_sum"].self_share > 0.15
    assert not any("fractions" in h.file for h in profile.hotspots)
    # comprehensions fold into their function; methods get their class in the name
    assert "squares" in spots and not any("<" in name for name in spots)
    assert spots["Shape.area"].cum_share >= 0.5 * spots["squares"].cum_share
    # setup() is not workload time; the workload file is not the repository's code
    assert "expensive_setup" not in spots and not any(h.file == "bench.py" for h in profile.hotspots)
    # recursion is counted once per sample
    assert all(0 <= h.self_share <= h.cum_share + 1e-9 <= 1.0 + 1e-9 for h in profile.hotspots)
    assert spots["frac_sum"].key == "pkg.mod:frac_sum" and spots["frac_sum"].file == "pkg/mod.py"
    if use_pyspy:
        assert profile.raw_path and spots["squares"].lines, "py-spy gives line-level detail"
        assert all(spots["squares"].start <= line <= spots["squares"].end for line, _ in spots["squares"].lines)
    else:
        assert spots["frac_sum"].calls == spots["frac_sum"].calls and spots["Shape.area"].calls > 0


def test_recursive_stack_counted_once(program):
    """A synthetic raw py-spy stack a -> b -> a -> b: cumulative shares stay at 100%, self goes to the leaf."""
    workload = Workload.parse("bench.py", program)
    mod = program / "pkg" / "mod.py"
    frame = "{name} (" + str(mod) + ":{line})"
    stack = ";".join([
        f"perfagent_profiled_workload ({program}/harness.py:1)",
        frame.format(name="depth", line=19), frame.format(name="depth", line=19),
        frame.format(name="squares", line=10),
    ])
    tally = tally_pyspy(f"{stack} 7\n<module> (x.py:1) 3\n", SourceIndex(program), workload)
    assert tally.total == 7  # the sample outside the workload frame is not counted
    spots = {h.qualname: h for h in tally.hotspots()}
    assert spots["depth"].cum_share == 1.0 and spots["depth"].self_share == 0.0
    assert spots["squares"].self_share == 1.0
    assert spots["squares"].callers == [("pkg.mod:depth", 1.0)]


def test_source_index_names_and_spans(tmp_path):
    (tmp_path / "m.py").write_text(
        "class A:\n"
        "    @staticmethod\n"
        "    def f():\n"
        "        def inner():\n"
        "            return [x for x in range(3)]\n"
        "        return inner\n"
        "\n"
        "x = 1\n")
    index = SourceIndex(tmp_path)
    names = {s.qualname: (s.start, s.end) for s in index.functions("m.py")}
    assert names == {"A.f": (2, 6), "A.f.inner": (4, 5)}
    assert index.function_at("m.py", 5).qualname == "A.f.inner"
    assert index.function_at("m.py", 6).qualname == "A.f"
    assert index.function_at("m.py", 8).qualname == "<module>"
    assert index.relative("/elsewhere/m.py") is None


def test_profile_command_json(program):
    from typer.testing import CliRunner

    from agent.cli import app

    result = CliRunner().invoke(app, ["profile", str(program), "-w", "bench.py", "--seconds", "1.5", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["profiler"] == "py-spy"
    assert data["hotspots"][0]["qualname"] in {"frac_sum", "squares"}
