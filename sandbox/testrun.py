"""Run the target's pytest suite in a worktree and read back exact per-test outcomes and per-test line coverage."""
from __future__ import annotations

import json
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from perfagent.formats import plural
from perfagent.sandbox.canary import Canary, planted
from perfagent.sandbox.run import Limits, RunResult, child_env, run

_PLUGIN = Path(__file__).with_name("pytest_plugin.py")
_PLUGIN_MODULE = "perfagent_pytest_plugin"
NO_TESTS_COLLECTED = 5  # pytest's exit code


_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}  # a test's worst phase is its outcome
PYTEST_ITSELF = "<pytest>"  # the pseudo-test that fails when pytest could not run at all


@dataclass(frozen=True)
class SuiteRun:
    outcomes: dict[str, str]  # node id -> passed / failed / error / skipped
    process: RunResult
    seconds_by_file: dict[str, float] = field(default_factory=dict)  # test durations summed per test file
    running: tuple[str, float] | None = None  # a test that started and never finished: (node id, seconds it ran)
    problems: dict[str, str] = field(default_factory=dict)  # "<collect> path" -> pytest's own message
    tampered: str | None = None  # how the run misreported its canary (sandbox/canary.py), whose tests are not above

    def failing(self) -> list[str]:
        return sorted(k for k, v in self.outcomes.items() if v in ("failed", "error"))

    def passing(self) -> set[str]:
        return {k for k, v in self.outcomes.items() if v == "passed"}

    def cut_short(self) -> str | None:
        """How a run that pytest did not finish ended (timeout, signal), or None when it finished."""
        if not (self.process.timed_out or self.process.returncode < 0):
            return None
        where = (f"while {self.running[0]} had been running for {self.running[1]:.0f} s" if self.running
                 else "before any test started")
        return f"{self.process.failure()} {where}, with {plural(len(self.outcomes), 'test')} finished"


def test_file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _read_events(report: Path) -> tuple[dict[str, str], dict[str, float], tuple[str, float] | None, dict[str, str]]:
    outcomes: dict[str, str] = {}
    seconds: dict[str, float] = {}
    problems: dict[str, str] = {}
    started: dict[str, float] = {}
    try:
        lines = report.read_text(encoding="utf-8").splitlines()
    except OSError:  # never written
        lines = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:  # the last line of a killed run may be cut
            continue
        if "start" in event:
            started[event["start"]] = event["t"]
            continue
        nodeid, outcome = event["test"], event["outcome"]
        started.pop(nodeid, None)
        if _RANK[outcome] >= _RANK.get(outcomes.get(nodeid), -1):
            outcomes[nodeid] = outcome
        file = test_file_of(nodeid)
        seconds[file] = seconds.get(file, 0.0) + (event.get("seconds") or 0.0)
        if "detail" in event:
            problems[nodeid] = event["detail"]
    running = None
    for nodeid, t in started.items():
        if nodeid not in outcomes:
            running = (nodeid, time.time() - t)
    return outcomes, seconds, running, problems


# size: where and what to run, then keyword-only pytest and coverage options, most with a default
def run_pytest(worktree: Path, targets: list[str], *, python: str, tmp: Path, limits: Limits,
               coverage_file: Path | None = None, measure: list[str] = (), exitfirst: bool = False,
               deselect: set[str] = frozenset(), canary: bool = False) -> SuiteRun:
    """Run pytest on `targets` (all of the suite when empty), in this order; with `coverage_file`, record per-test
    coverage of the repository's code, or of the files in `measure` only (much faster: the rest runs untraced);
    with `exitfirst`, stop at the first failing test; the tests in `deselect` do not run; with `canary` (a candidate's
    run, of at least one target), a canary test file runs last, and the run says whether it was misreported."""
    plugin_dir = tmp / "plugin"
    plugin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_PLUGIN, plugin_dir / f"{_PLUGIN_MODULE}.py")
    report = tmp / "outcomes.jsonl"
    report.unlink(missing_ok=True)
    deselected = tmp / "deselect.txt"
    deselected.write_text("".join(f"{nodeid}\n" for nodeid in sorted(deselect)), encoding="utf-8")
    env = child_env({"PYTHONPATH": f"{worktree}:{plugin_dir}", "PERFAGENT_TEST_REPORT": str(report),
                     "PERFAGENT_DESELECT": str(deselected),
                     "PYTHONDONTWRITEBYTECODE": "1",
                     "HYPOTHESIS_STORAGE_DIRECTORY": str(tmp / "hypothesis")})  # not in the worktree
    pytest_args = ["-m", "pytest", "-q", "-p", _PLUGIN_MODULE, "-p", "no:cacheprovider", "--color=no",
                   *(["-x"] if exitfirst else []), *targets]
    if coverage_file is None:
        argv = [python, *pytest_args]
    else:
        env["PERFAGENT_COVERAGE_CONTEXT"] = "1"
        scope = f"--include={','.join(str(worktree / f) for f in measure)}" if measure else f"--source={worktree}"
        argv = [python, "-m", "coverage", "run", f"--data-file={coverage_file}", scope, *pytest_args]
    with planted(worktree, targets) if canary else nullcontext() as planted_canary:
        if planted_canary:
            argv.append(planted_canary.path.relative_to(worktree).as_posix())  # last: the plugin runs its tests last
        process = run(argv, cwd=worktree, env=env, limits=limits,
                      writable=[tmp] + ([coverage_file.parent] if coverage_file else []))
    outcomes, seconds, running, problems = _read_events(report)
    if not outcomes and process.returncode not in (0, NO_TESTS_COLLECTED) and not process.timed_out:
        outcomes = {PYTEST_ITSELF: "error"}  # pytest itself could not run (bad arguments, internal error)
    suite = SuiteRun(outcomes, process, seconds, running, problems)
    return _without_canary(suite, planted_canary) if planted_canary else suite


def _without_canary(run: SuiteRun, canary: Canary) -> SuiteRun:
    """`run` with its canary's tests taken out of what it reports, and `tampered` set when it misreported them."""
    ids = set(canary.nodeids(run.outcomes).values())
    rest = {nodeid: outcome for nodeid, outcome in run.outcomes.items() if nodeid not in ids}
    stopped = run.cut_short() is not None or any(outcome in ("failed", "error") for outcome in rest.values())
    return replace(run, outcomes=rest, tampered=canary.tampered(run.outcomes, stopped),
                   seconds_by_file={file: s for file, s in run.seconds_by_file.items()
                                    if PurePosixPath(file).name != canary.path.name},
                   running=None if run.running and run.running[0] in ids else run.running,
                   problems={nodeid: text for nodeid, text in run.problems.items() if nodeid not in ids})


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
