"""Test selection at the scale of the change: static candidates, coverage on those only, honest timeouts, the cache,
and the interpreter check, on a small multi-package repository with known answers (real git, pytest, coverage)."""
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from perfagent.config import Settings
from perfagent.repos.cache import BaselineCache, InterpreterError
from perfagent.localize.source import FunctionSpan
from perfagent.localize.testselect import Selection, StaticIndex, TestPlan, TestSelectionError, is_test_file, \
    is_test_module
from perfagent.loop.guards import protected_reason
from tests.conftest import RLIMITS, git, make_repo

# path: (a test file, a module pytest collects)
TEST_FILES = {
    "tests/test_core.py": (True, True), "pkg/tests/test_core.py": (True, True), "test_core.py": (True, True),
    "pkg/core_test.py": (True, True), "test/test_io.py": (True, True),
    "tests/helpers.py": (True, False), "pkg/tests/__init__.py": (True, False), "test/util.py": (True, False),
    "tests/data/input.csv": (True, False), "conftest.py": (True, False), "pkg/conftest.py": (True, False),
    "test_utils/factories.py": (True, False), "test_data.json": (True, False),
    "pkg/core.py": (False, False), "pkg/testing.py": (False, False), "pkg/test.py": (False, False),
    "tests.py": (False, False), "pkg/contest.py": (False, False), "pkg/latest/mod.py": (False, False),
    "mytests/mod.py": (False, False), "pkg/testing/assertions.py": (False, False),
}


@pytest.mark.parametrize("path", TEST_FILES)
def test_which_files_are_test_files(path):
    """One rule for test code (what candidates may not edit, evaluation resets, profiles leave out), and within it
    the modules pytest collects; the guard names conftest.py files apart."""
    assert (is_test_file(path), is_test_module(path)) == TEST_FILES[path]
    expected = ("a pytest conftest.py" if path.endswith("conftest.py") else "a test file") if is_test_file(path) \
        else None
    assert protected_reason(path, None) == expected


SHOP = {
    "shop/__init__.py": "from shop.prices import total\n",
    "shop/prices.py": "def total(items):\n    return sum(items)\n\n\ndef discount(x):\n    return x * 0.9\n",
    "shop/stock/__init__.py": "",
    "shop/stock/levels.py": "class Level:\n    def __init__(self):\n        self.n = 0\n\n"
                            "    def bump(self):\n        self.n += 1\n        return self.n\n",
    "shop/tests/__init__.py": "",
    "shop/tests/test_prices.py": "from shop.prices import total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n\n\n"
                                 "def test_total_empty():\n    assert total([]) == 0\n",
    "shop/tests/test_public.py": "import shop\n\n\ndef test_public_total():\n    assert shop.total([2]) == 2\n",
    "shop/stock/tests/__init__.py": "",
    "shop/stock/tests/test_levels.py": "from shop.stock.levels import Level\n\n\n"
                                       "def test_bump():\n    assert Level().bump() == 1\n",
    "shop/stock/tests/test_misc.py": "def test_nothing_here():\n    assert True\n",
    "tests/test_unrelated.py": "def test_unrelated():\n    assert 1 + 1 == 2\n",
}
TOTAL = FunctionSpan("shop/prices.py", "total", 1, 2)
DISCOUNT = FunctionSpan("shop/prices.py", "discount", 5, 6)
BUMP = FunctionSpan("shop/stock/levels.py", "Level.bump", 5, 7)


def _plan(tmp_path, cache_root=None, messages=None, **settings):
    plan_settings = replace(Settings().plan_settings(), **{"whole_suite_files": 0, **settings})
    return TestPlan(plan_settings, python=sys.executable, tmp=tmp_path / "tmp",
                    limits=RLIMITS.limits(timeout_s=120), cache=BaselineCache(cache_root),
                    notify=(lambda e: messages.append(e.text() or "")) if messages is not None else (lambda e: None))


def _start(plan, repo):
    plan.start(repo, git(repo, "rev-parse", "HEAD").strip(), git(repo, "ls-files").splitlines())


def test_static_candidates_rank_by_evidence(tmp_path):
    repo = make_repo(tmp_path / "r", SHOP)
    index = StaticIndex(repo, git(repo, "ls-files").splitlines())
    ranked = dict(index.candidates(TOTAL, limit=5))
    assert list(ranked) == ["shop/tests/test_prices.py", "shop/tests/test_public.py"]
    assert ranked["shop/tests/test_prices.py"] == ("named after the module, imports the module, mentions total, "
                                                   "in the package's tests")
    assert ranked["shop/tests/test_public.py"] == "mentions total, in the package's tests"
    assert [f for f, _ in index.candidates(BUMP, limit=5)] == ["shop/stock/tests/test_levels.py",
                                                               "shop/stock/tests/test_misc.py"]


def test_of_equal_evidence_the_cheaper_test_file_comes_first(tmp_path):
    """A big test module is a slow guard for a first verdict: of files with the same evidence, the smaller leads."""
    big = "from shop.prices import total\n\n\n" + "".join(
        f"def test_total_{i}():\n    assert total([{i}]) == {i}\n\n\n" for i in range(800))
    small = "from shop.prices import total\n\n\ndef test_total():\n    assert total([1]) == 1\n"
    repo = make_repo(tmp_path / "r", {**SHOP, "shop/tests/test_all.py": big, "shop/tests/test_sums.py": small})
    ranked = [f for f, _ in StaticIndex(repo, git(repo, "ls-files").splitlines()).candidates(TOTAL, limit=5)]
    assert ranked.index("shop/tests/test_sums.py") < ranked.index("shop/tests/test_all.py"), ranked


def test_selection_runs_only_the_candidates_and_maps_functions_to_tests(tmp_path):
    repo = make_repo(tmp_path / "r", SHOP)
    messages = []
    plan = _plan(tmp_path, messages=messages)
    _start(plan, repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    preview = plan.preview([TOTAL, DISCOUNT])  # the hotspots: evidence only, nothing runs yet
    assert preview.likely == ["shop/tests/test_prices.py", "shop/tests/test_public.py"] and not plan.files
    assert any("tests for total: shop/tests/test_prices.py (named after the module" in m for m in messages)
    guard = plan.guard(repo, head, [TOTAL, DISCOUNT])
    # test_prices reaches total twice, test_public once; nothing reaches discount
    assert guard.files == ["shop/tests/test_prices.py", "shop/tests/test_public.py"]
    assert guard.unguarded == ["shop.prices:discount"]
    assert set(plan.files) == {"shop/tests/test_prices.py", "shop/tests/test_public.py"}  # nothing else ran
    assert plan.passing == {"shop/tests/test_prices.py::test_total", "shop/tests/test_prices.py::test_total_empty",
                            "shop/tests/test_public.py::test_public_total"}
    assert any("running the tests for total under coverage: shop/tests/test_prices.py, shop/tests/test_public.py"
               in m for m in messages)
    # a candidate that edits Level.bump: its own tests first, then those guarding the hotspots
    candidate = plan.for_candidate(repo, head, [BUMP], guard)
    assert candidate.files == ["shop/stock/tests/test_levels.py", *guard.files] and candidate.unguarded == []
    assert "shop/stock/tests/test_misc.py" in plan.files  # a candidate that ran, reaching nothing
    assert "tests/test_unrelated.py" not in plan.files
    # module-level code runs at import: the tests of its module's functions guard it; a data file needs none
    module_level = [FunctionSpan("shop/prices.py", "<module>", 1, 6), FunctionSpan("NOTES.txt", "<module>", 1, 1)]
    assert plan.guard(repo, head, module_level) == Selection(guard.files, [])


def test_small_suite_runs_whole_under_coverage(tmp_path):
    repo = make_repo(tmp_path / "r", SHOP)
    plan = _plan(tmp_path, whole_suite_files=40)
    _start(plan, repo)
    assert plan.whole_suite and "tests/test_unrelated.py" in plan.files and len(plan.passing) == 6
    guard = plan.guard(repo, "HEAD", [TOTAL])
    assert guard.files == ["shop/tests/test_prices.py", "shop/tests/test_public.py"]


def test_second_plan_on_the_same_commit_runs_nothing(tmp_path):
    repo = make_repo(tmp_path / "r", SHOP)
    first = _plan(tmp_path, cache_root=tmp_path / "cache")
    _start(first, repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    before = first.limits.usage.processes
    first.guard(repo, head, [TOTAL])
    assert first.limits.usage.processes - before == 3  # two files under coverage, one each, then both plain in one
    second = _plan(tmp_path, cache_root=tmp_path / "cache")
    _start(second, repo)
    before = second.limits.usage.processes
    assert second.guard(repo, head, [TOTAL]).files == first.guard(repo, head, [TOTAL]).files
    assert second.limits.usage.processes == before and second.passing == first.passing and second.cache.hits == 4
    uncached = _plan(tmp_path, cache_root=None)  # --no-cache
    _start(uncached, repo)
    before = uncached.limits.usage.processes
    uncached.guard(repo, head, [TOTAL])
    assert uncached.limits.usage.processes - before == 3


def test_a_selected_file_that_times_out_is_left_out_with_the_reason(tmp_path):
    repo = make_repo(tmp_path / "r", {**SHOP, "shop/tests/test_prices.py": SHOP["shop/tests/test_prices.py"] +
                                      "\n\ndef test_total_slow():\n    import time\n    time.sleep(60)\n"})
    messages = []
    plan = _plan(tmp_path, messages=messages, file_timeout_s=12)  # the other tests finish in time on a loaded machine
    _start(plan, repo)
    guard = plan.guard(repo, "HEAD", [TOTAL])
    assert guard.files == ["shop/tests/test_public.py"]
    timeout = next(m for m in messages if "timed out" in m)
    assert "the baseline run of shop/tests/test_prices.py timed out after 12 s while " \
           "shop/tests/test_prices.py::test_total_slow had been running for" in timeout
    assert "with 2 tests finished; raise test-file-timeout-s (now 12 s)" in timeout
    assert "fail" not in timeout


def test_a_small_suite_too_slow_to_run_whole_is_selected_from_instead(tmp_path):
    """A timeout is reported as one, never as a failing test, and the plan falls back to choosing per function."""
    repo = make_repo(tmp_path / "r", {**SHOP, "tests/test_slow.py": "import time\n\n\ndef test_slow():\n"
                                      "    time.sleep(60)\n"})
    messages = []
    plan = _plan(tmp_path, messages=messages, whole_suite_files=40)
    plan.limits = RLIMITS.limits(timeout_s=5)
    _start(plan, repo)
    timeout = next(m for m in messages if "timed out" in m)
    assert "the baseline run of the test suite timed out after 5 s while tests/test_slow.py::test_slow had been " \
           "running for" in timeout and "choosing test files per function instead (raise timeout-s" in timeout
    assert "fail" not in timeout and plan.selecting and not plan.whole_suite
    assert plan.guard(repo, "HEAD", [TOTAL]).files == ["shop/tests/test_prices.py", "shop/tests/test_public.py"]


def test_named_tests_that_cannot_be_collected_are_a_usage_error(tmp_path):
    repo = make_repo(tmp_path / "r", {**SHOP, "shop/tests/test_broken.py": "import does_not_exist\n"})
    with pytest.raises(TestSelectionError, match=r"pytest cannot run tests/missing\.py:(.|\n)*not found"):
        _start(_plan(tmp_path, explicit=["tests/missing.py"]), repo)
    with pytest.raises(TestSelectionError, match=r"pytest cannot collect shop/tests/test_broken\.py:(.|\n)*"
                                                  r"No module named 'does_not_exist'"):
        _start(_plan(tmp_path, explicit=["shop/tests/test_broken.py"]), repo)


def test_an_interpreter_without_pytest_is_named_with_the_install_command(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    python = str(tmp_path / "bare" / "bin" / "python")
    repo = make_repo(tmp_path / "r", SHOP)
    plan = TestPlan(Settings().plan_settings(), python=python, tmp=tmp_path / "tmp",
                    limits=RLIMITS.limits(timeout_s=60), cache=BaselineCache(None), notify=lambda e: print(e.text()))
    with pytest.raises(InterpreterError, match=rf"{python} has no pytest, which runs the target's tests: install "
                                               rf"it with `{python} -m pip install pytest`"):
        _start(plan, repo)


def test_a_namesake_in_a_sibling_package_is_no_evidence(tmp_path):
    repo = make_repo(tmp_path / "r", {**SHOP, "shop/other/tests/test_levels.py": "def test_other_levels():\n"
                                      "    assert True\n", "tests/test_levels.py": "def test_top_level():\n"
                                      "    assert True\n"})
    ranked = dict(StaticIndex(repo, git(repo, "ls-files").splitlines()).candidates(BUMP, limit=5))
    assert "shop/other/tests/test_levels.py" not in ranked  # another module's namesake
    assert ranked["tests/test_levels.py"] == "named after the module"  # a top-level tests/ folder mirrors the package


def test_a_packages_core_module_is_tested_under_the_packages_name(tmp_path):
    """astropy__astropy-16222: coordinates/angles/core.py's tests are coordinates/tests/test_angles.py, a large file
    that only mentions Angle; smaller files that mention it too came first, and the covering file was not run."""
    big = "from pkg.sub import Angle\n\n" + "".join(f"def test_{i}():\n    assert Angle\n\n" for i in range(2000))
    repo = make_repo(tmp_path / "r", {"pkg/__init__.py": "", "pkg/sub/__init__.py": "from .angles.core import Angle\n",
                                      "pkg/sub/angles/__init__.py": "",
                                      "pkg/sub/angles/core.py": "class Angle:\n    def wrap(self):\n        return 1\n",
                                      "pkg/sub/tests/test_angles.py": big,
                                      **{f"pkg/sub/tests/test_small{i}.py": "from pkg.sub import Angle\n\n"
                                         "def test_it():\n    assert Angle\n" for i in range(3)}})
    wrap = FunctionSpan("pkg/sub/angles/core.py", "Angle.wrap", 2, 3)
    ranked = StaticIndex(repo, git(repo, "ls-files").splitlines()).candidates(wrap, limit=3)
    assert ranked[0] == ("pkg/sub/tests/test_angles.py", "named after the module, mentions Angle")


def test_the_reference_stays_as_it_was_when_a_candidate_selects_more_tests(tmp_path):
    """The reference a candidate is judged against is a frozen value: test files that a later candidate's edit
    selects (and runs at baseline) make a new Reference, and the one already given out keeps what it held."""
    from perfagent.loop.verdict import Reference

    repo = make_repo(tmp_path / "r", SHOP)
    plan = _plan(tmp_path)
    _start(plan, repo)
    head = git(repo, "rev-parse", "HEAD").strip()
    guard = plan.guard(repo, head, [TOTAL])
    first = Reference(repo, set(), {}, 0.1, {}, set()).with_tests(*plan.seen())
    held = (set(first.passing_tests), dict(first.test_seconds), set(first.excluded_tests), set(first.behaviour))
    plan.for_candidate(repo, head, [BUMP], guard)  # runs the stock tests at baseline
    assert "shop/stock/tests/test_levels.py" in plan.files
    assert (first.passing_tests, dict(first.test_seconds), first.excluded_tests, first.behaviour) == held
    later = first.with_tests(*plan.seen())
    assert "shop/stock/tests/test_levels.py::test_bump" in later.passing_tests - first.passing_tests
    assert "shop/stock/tests/test_levels.py" in later.test_seconds
    with pytest.raises(AttributeError):
        first.passing_tests.add("x")
    with pytest.raises(TypeError):
        first.test_seconds["x"] = 1.0


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin the process to one")
def test_a_baseline_measured_on_fewer_cpus_is_not_taken_from_the_cache(tmp_path):
    """What a run does depends on the CPUs it may use: OpenBLAS starts a thread per CPU, and the behaviour monitor
    counts threads. A sympy expert patch was rejected as starting 'processes or threads the unmodified code never did
    (2 at once against 1)': its baseline came from the cache of a batch worker pinned to one core, its own run had
    two. An entry written on one CPU is a miss on two, and found again on one."""
    cache, cpus = BaselineCache(tmp_path / "cache"), os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cpus)})
        cache.put({"tasks at once": 1}, "tests", "abc123")
        assert cache.get("tests", "abc123") == {"tasks at once": 1}
    finally:
        os.sched_setaffinity(0, cpus)
    assert cache.get("tests", "abc123") is None
