"""sandbox.tests: exact node ids and outcomes from real pytest runs, and per-test coverage."""
import sys

from perfagent.sandbox.testrun import run_pytest, coverage_by_line
from tests.conftest import RLIMITS, make_repo

FILES = {
    "lib/__init__.py": "",
    "lib/m.py": "def double(x):\n    return 2 * x\n\n\ndef half(x):\n    return x / 2\n",
    "tests/test_m.py": '''\
        import pytest
        from lib.m import double, half


        @pytest.mark.parametrize("x", [1, "a b", 3])
        def test_double(x):
            assert double(x) == x + x


        def test_half():
            assert half(4) == 3


        @pytest.mark.skip
        def test_skipped():
            pass


        @pytest.fixture
        def broken():
            raise RuntimeError("fixture")


        def test_error(broken):
            pass
        ''',
    "tests/test_other.py": "from lib.m import half\n\n\ndef test_half_again():\n    assert half(2) == 1\n",
}


def test_outcomes_with_exact_ids(tmp_path):
    repo = make_repo(tmp_path / "r", FILES)
    run = run_pytest(repo, [], python=sys.executable, tmp=tmp_path / "t", limits=RLIMITS.limits(timeout_s=120))
    assert run.outcomes == {
        "tests/test_m.py::test_double[1]": "passed",
        "tests/test_m.py::test_double[a b]": "passed",
        "tests/test_m.py::test_double[3]": "passed",
        "tests/test_m.py::test_half": "failed",
        "tests/test_m.py::test_skipped": "skipped",
        "tests/test_m.py::test_error": "error",
        "tests/test_other.py::test_half_again": "passed",
    }
    assert run.failing() == ["tests/test_m.py::test_error", "tests/test_m.py::test_half"]


def test_selected_targets_and_collection_errors(tmp_path):
    repo = make_repo(tmp_path / "r", {**FILES, "tests/test_broken.py": "import does_not_exist\n"})
    run = run_pytest(repo, ["tests/test_other.py"], python=sys.executable, tmp=tmp_path / "t",
                     limits=RLIMITS.limits(timeout_s=120))
    assert run.outcomes == {"tests/test_other.py::test_half_again": "passed"}
    run = run_pytest(repo, ["tests/test_broken.py"], python=sys.executable, tmp=tmp_path / "t",
                     limits=RLIMITS.limits(timeout_s=120))
    assert run.failing() == ["<collect> tests/test_broken.py"]


def test_coverage_maps_lines_to_tests(tmp_path):
    repo = make_repo(tmp_path / "r", FILES)
    cov = tmp_path / "cov.db"
    run_pytest(repo, [], python=sys.executable, tmp=tmp_path / "t", limits=RLIMITS.limits(timeout_s=120),
               coverage_file=cov)
    by_line = coverage_by_line(cov, repo.resolve())
    assert by_line["lib/m.py"][2] == {f"tests/test_m.py::test_double[{p}]" for p in ("1", "a b", "3")}
    assert by_line["lib/m.py"][6] == {"tests/test_m.py::test_half", "tests/test_other.py::test_half_again"}


def test_exitfirst_stops_at_the_first_failure_and_a_timeout_says_what_was_running(tmp_path):
    repo = make_repo(tmp_path / "r", {**FILES, "tests/test_slow.py": "import time\n\n\ndef test_slow():\n"
                                      "    time.sleep(60)\n"})
    run = run_pytest(repo, ["tests/test_m.py", "tests/test_other.py"], python=sys.executable, tmp=tmp_path / "t",
                     limits=RLIMITS.limits(timeout_s=120), exitfirst=True)
    assert run.failing() == ["tests/test_m.py::test_half"] and "tests/test_other.py::test_half_again" not in \
        run.outcomes and run.cut_short() is None
    run = run_pytest(repo, ["tests/test_m.py", "tests/test_other.py"], python=sys.executable, tmp=tmp_path / "t",
                     limits=RLIMITS.limits(timeout_s=120), exitfirst=True,
                     deselect={"tests/test_m.py::test_half", "tests/test_m.py::test_error"})  # failing at baseline
    assert run.failing() == [] and "tests/test_other.py::test_half_again" in run.outcomes
    assert "tests/test_m.py::test_half" not in run.outcomes
    run = run_pytest(repo, ["tests/test_other.py", "tests/test_slow.py"], python=sys.executable, tmp=tmp_path / "t",
                     limits=RLIMITS.limits(timeout_s=3))
    assert run.outcomes == {"tests/test_other.py::test_half_again": "passed"} and run.failing() == []
    assert run.running[0] == "tests/test_slow.py::test_slow" and 0 < run.running[1] < 5
    assert run.cut_short().startswith("timed out after 3 s while tests/test_slow.py::test_slow had been running for")


def test_a_repository_without_tests(tmp_path):
    repo = make_repo(tmp_path / "r", {"lib/m.py": "x = 1\n"})
    run = run_pytest(repo, [], python=sys.executable, tmp=tmp_path / "t", limits=RLIMITS.limits(timeout_s=120))
    assert run.outcomes == {} and run.failing() == []
    run = run_pytest(repo, ["tests/missing.py"], python=sys.executable, tmp=tmp_path / "t",
                     limits=RLIMITS.limits(timeout_s=120))
    assert run.failing() == ["<pytest>"] and "not found" in run.process.tail()
