"""Bad input gets a clear, actionable error, exit code 2, and leaves the user's repository exactly as it was."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SMALL_LIB, make_repo, perfagent_branches, repo_state, scripted_session
from tests.test_optimize import invoke


def _run(repo, tmp_path, *extra, model=None):
    model = model or scripted_session(tmp_path / "s.json", ["no edit"])
    return invoke("optimize", repo, "--model", model, "--out", tmp_path / "run", *extra)


def _assert_error(repo, before, code, output, *needles):
    assert code == 2, output
    assert "error:" in output
    flat = " ".join(output.split())
    for needle in needles:
        assert needle in flat, output
    assert repo_state(repo) == before
    assert perfagent_branches(repo) == []


def test_not_a_git_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    code, output = _run(tmp_path / "plain", tmp_path, "-w", "bench.py")
    assert code == 2 and "not a git repository: run `git init`" in " ".join(output.split())


def test_workload_without_setup_and_workload(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "bad.py": "def run():\n    pass\n"})
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "bad.py")
    _assert_error(repo, before, code, output, "must define top-level functions setup() and workload()",
                  "missing: setup(), workload()")


def test_missing_workload_file(small_repo, tmp_path):
    before = repo_state(small_repo)
    code, output = _run(small_repo, tmp_path, "-w", "nope.py")
    _assert_error(small_repo, before, code, output, "workload file nope.py not found")


def test_workload_that_fails_at_baseline(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "crash.py": "def setup():\n    pass\n\n\ndef workload():\n"
                                      "    raise SystemExit('boom: input file missing')\n"})
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "crash.py")
    _assert_error(repo, before, code, output, "the workload fails on the unmodified code",
                  "boom: input file missing")


def test_workload_that_times_out_at_baseline(tmp_path):
    files = {**SMALL_LIB, "hang.py": "import time\n\n\ndef setup():\n    pass\n\n\ndef workload():\n"
                                      "    time.sleep(600)\n"}
    files["pyproject.toml"] += "timeout-s = 3\n"
    repo = make_repo(tmp_path / "r", files)
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "hang.py")
    _assert_error(repo, before, code, output, "the workload fails on the unmodified code", "timed out after 3 s")


def test_failing_baseline_tests(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "tests/test_broken.py": "def test_broken():\n    assert 1 == 2\n"})
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "bench.py")
    _assert_error(repo, before, code, output, "1 test(s) fail on the unmodified code",
                  "tests/test_broken.py::test_broken", "--allow-failing-tests")


def test_missing_api_key_names_the_variable(small_repo, tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    before = repo_state(small_repo)
    code, output = _run(small_repo, tmp_path, "-w", "bench.py", model="anthropic/claude-3-5-sonnet-20240620")
    _assert_error(small_repo, before, code, output, "ANTHROPIC_API_KEY")


def test_invalid_settings_in_pyproject(tmp_path):
    files = {**SMALL_LIB}
    files["pyproject.toml"] += "max-iteration = 3\n"  # misspelt
    repo = make_repo(tmp_path / "r", files)
    code, output = _run(repo, tmp_path, "-w", "bench.py")
    assert code == 2 and "max_iteration: Extra inputs are not permitted" in " ".join(output.split())


@pytest.mark.parametrize("spec, message", [
    ("scripted:/nonexistent/session.json", "/nonexistent/session.json"),
])
def test_bad_scripted_session(small_repo, tmp_path, spec, message):
    code, output = _run(small_repo, tmp_path, "-w", "bench.py", model=spec)
    assert code == 2 and message in " ".join(output.split())


def test_missing_model(small_repo, tmp_path):
    code, output = invoke("optimize", small_repo, "-w", "bench.py", "--out", tmp_path / "run")
    assert code == 2 and "model: Field required" in " ".join(output.split())


def test_piped_output_is_not_hard_wrapped(tmp_path):
    """Output to a pipe or a log keeps each message on one line, however long, so it stays greppable."""
    missing = tmp_path / ("a-folder-name-long-enough-to-pass-eighty-columns-" * 3) / "missing"
    result = subprocess.run([str(Path(sys.executable).with_name("perfagent")), "report", str(missing)],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if str(missing) in line]
    assert len(lines) == 1 and "does not exist" in lines[0], result.stdout + result.stderr


def test_no_test_reaches_the_hot_functions(tmp_path):
    """A loud warning that correctness rests on the result alone; with require-tests = true, a stop."""
    files = {**SMALL_LIB, "tests/test_core.py": "def test_arithmetic():\n    assert 1 + 1 == 2\n"}
    repo = make_repo(tmp_path / "r", files)
    code, output = _run(repo, tmp_path, "-w", "bench.py")
    assert code == 0, output
    flat = " ".join(output.split())
    assert "warning: no test reaches " in flat and "correctness rests on the workload's result alone" in flat
    files["pyproject.toml"] += "require-tests = true\n"
    repo = make_repo(tmp_path / "r2", files)
    before = repo_state(repo)
    code, output = invoke("optimize", repo, "-w", "bench.py", "--model",
                          scripted_session(tmp_path / "s2.json", ["no edit"]), "--out", tmp_path / "run2")
    _assert_error(repo, before, code, output, "no test reaches", "(require-tests = true)")


def test_named_test_file_that_does_not_exist(small_repo, tmp_path):
    before = repo_state(small_repo)
    code, output = _run(small_repo, tmp_path, "-w", "bench.py", "--tests", "tests/test_missing.py")
    _assert_error(small_repo, before, code, output, "pytest cannot run tests/test_missing.py",
                  "file or directory not found")
    assert "fail on the unmodified code" not in output


def test_a_suite_pytest_cannot_collect_shows_pytests_own_error(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "conftest.py": "import pytest\n\ndef broken(:\n"})
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "bench.py")
    _assert_error(repo, before, code, output, "pytest cannot run the test suite", "SyntaxError")
    assert "fail on the unmodified code" not in output


def test_batch_refuses_a_usd_budget_for_an_unpriced_model_before_any_task(tmp_path):
    code, output = invoke("batch", ROOT / "workloads" / "tasks.jsonl", "--model", "openai/my-local-model",
                          "--api-base", "http://127.0.0.1:9/v1", "--budget-usd", "5", "--out", tmp_path / "b")
    assert code == 2 and "litellm has no price for it" in " ".join(output.split())
    assert not (tmp_path / "b").exists()
