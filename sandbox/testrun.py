"""Run the target's pytest suite in a worktree and read back exact per-test outcomes and per-test line coverage."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from sandbox.run import Limits, RunResult, child_env, run

_PLUGIN = Path(__file__).with_name("pytest_plugin.py")
_PLUGIN_MODULE = "perfagent_pytest_plugin"
NO_TESTS_COLLECTED = 5  # pytest's exit code


@dataclass(frozen=True)
class SuiteRun:
    outcomes: dict[str, str]  # node id -> passed / failed / error / skipped
    process: RunResult

    def failing(self) -> list[str]:
        return sorted(k for k, v in self.outcomes.items() if v in ("failed", "error"))

    def passing(self) -> set[str]:
        return {k for k, v in self.outcomes.items() if v == "passed"}


def run_pytest(worktree: Path, targets: list[str], *, python: str, tmp: Path, limits: Limits,
               coverage_file: Path | None = None) -> SuiteRun:
    """Run pytest on `targets` (all of the suite when empty); with `coverage_file`, record per-test coverage."""
    plugin_dir = tmp / "plugin"
    plugin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_PLUGIN, plugin_dir / f"{_PLUGIN_MODULE}.py")
    report = tmp / "outcomes.json"
    report.unlink(missing_ok=True)
    env = child_env({"PYTHONPATH": f"{worktree}:{plugin_dir}", "PERFAGENT_TEST_REPORT": str(report),
                     "PYTHONDONTWRITEBYTECODE": "1",
                     "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp / "hypothesis")})  # not in the worktree
    pytest_args = ["-m", "pytest", "-q", "-p", _PLUGIN_MODULE, "-p", "no:cacheprovider", "--color=no", *targets]
    if coverage_file is None:
        argv = [python, *pytest_args]
    else:
        env["PERFAGENT_COVERAGE_CONTEXT"] = "1"
        argv = [python, "-m", "coverage", "run", f"--data-file={coverage_file}", f"--source={worktree}",
                *pytest_args]
    process = run(argv, cwd=worktree, env=env, limits=limits,
                  writable=[tmp] + ([coverage_file.parent] if coverage_file else []))
    try:
        outcomes = json.loads(report.read_text())
    except (OSError, ValueError):  # never written, or cut short by a kill
        outcomes = {}
    if not outcomes and process.returncode not in (0, NO_TESTS_COLLECTED):
        outcomes = {"<pytest>": "error"}  # pytest itself could not run (bad arguments, internal error, timeout)
    return SuiteRun(outcomes, process)


def coverage_by_line(coverage_file: Path, worktree: Path) -> dict[str, dict[int, set[str]]]:
    """{repo-relative file: {line: node ids of the tests that executed it}} from a run_pytest coverage file."""
    import coverage

    data = coverage.CoverageData(basename=str(coverage_file))
    data.read()
    result: dict[str, dict[int, set[str]]] = {}
    for measured in data.measured_files():
        path = Path(measured)
        if not path.is_relative_to(worktree):
            continue
        by_line = data.contexts_by_lineno(measured)
        result[path.relative_to(worktree).as_posix()] = {
            line: {c for c in contexts if c} for line, contexts in by_line.items() if any(contexts)
        }
    return result
