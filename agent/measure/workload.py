"""What to make faster: a Python file with `setup()` and `workload()` (SWE-fficiency's convention; `workload()`'s
return value is the workload's result, and an optional `perturbed_setup()` gives a second input it must hold on), or a
shell command (its stdout is the result)."""
from __future__ import annotations

import ast
import hashlib
import json
import resource
import signal
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from perfagent.measure import HARNESS
from perfagent.measure.compare import compare_results
from perfagent.measure.integrity import Calls, Expected, ResultDrift, read_calls
from perfagent.measure.stats import Timing
from perfagent.sandbox.behaviour import Event
from perfagent.sandbox.marks import MarkChannel
from perfagent.sandbox.run import Limits, RunResult, child_env, run
from perfagent.sandbox.tree import Snapshot, snapshot

OWN_INPUT, PERTURBED_INPUT = "input", "perturbed input"
COLD_START_FACTOR = 3  # first call of a process this many times slower than the later ones: only the first counts


class WorkloadError(ValueError):
    pass


class Memory(NamedTuple):
    """What one workload() call after setup() allocates at its peak: tracemalloc's figure (every allocation through
    Python's allocators, numpy's included), and the process's peak RSS growth during a second, untraced call (None
    where the sandbox does not let the process reset its high-water mark)."""
    peak: int
    rss: int | None


def workload_functions(source: str) -> set[str]:
    """The top-level functions of a workload file's source; WorkloadError unless it is Python that defines setup() and
    workload() (the one rule for workload files, whether given to optimize or in a task file)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise WorkloadError(f"is not valid Python: {exc.msg} (line {exc.lineno})") from None
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    missing = [f"{name}()" for name in ("setup", "workload") if name not in defined]
    if missing:
        raise WorkloadError(f"must define top-level functions setup() and workload(); missing: {', '.join(missing)}")
    return defined


@dataclass(frozen=True)
class Workload:
    kind: str  # "python" or "command"
    spec: str  # as the user gave it
    path: Path | None = None  # the workload file (python kind)
    repo_relative: str | None = None  # its path inside the repository, when it lives there
    perturbed: bool = False  # the file defines perturbed_setup(): a second input of the same kind

    @classmethod
    def parse(cls, spec: str, repo: Path) -> "Workload":
        repo = Path(repo).resolve()
        if not spec.strip():
            raise WorkloadError("the workload is empty: give a .py file with setup()/workload() or a command")
        candidate = Path(spec) if Path(spec).is_absolute() else repo / spec
        if not candidate.is_file():
            candidate = Path(spec).resolve()
        if not candidate.is_file() and (not spec.endswith(".py") or len(spec.split()) > 1):
            return cls("command", spec)  # e.g. "python tool.py --size 3"
        if not candidate.is_file():
            raise WorkloadError(f"workload file {spec} not found (looked in {repo} and the current folder)")
        candidate = candidate.resolve()
        try:
            defined = workload_functions(candidate.read_text(encoding="utf-8"))
        except WorkloadError as exc:
            raise WorkloadError(f"workload file {candidate} {exc}. For a shell command, pass the command "
                                f"instead.") from None
        relative = candidate.relative_to(repo).as_posix() if candidate.is_relative_to(repo) else None
        return cls("python", spec, candidate, relative, "perturbed_setup" in defined)

    @property
    def files(self) -> list[Path]:
        """What the sandbox must let the workload's processes read."""
        return [self.path] if self.path else []

    def digest(self) -> str:
        """What the workload does, wherever its file lives: a digest of the file's text, or the command."""
        text = self.path.read_text(encoding="utf-8") if self.path else self.spec
        return f"{self.kind}:{hashlib.sha256(text.encode()).hexdigest()}"

    def describe(self) -> str:
        return f"{self.path} (setup/workload)" if self.kind == "python" else f"command: {self.spec}"

    def harness_argv(self, python: str) -> list[str]:
        """The one command line of every harness run: what a run is for reaches it on its mark channel (order)."""
        return [python, str(HARNESS), str(self.path)]

    def profile_argv(self, python: str) -> list[str]:
        if self.kind == "python":
            return self.harness_argv(python)
        # py-spy --subprocesses gives up when its own child is not Python at the moment it looks, and a shell may
        # not have started the command's interpreter yet (1 run in 4 inside bubblewrap): a Python parent that
        # waits, idle and so unsampled, for the shell is always there.
        return [python, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))", *self.command_argv()]

    def command_argv(self) -> list[str]:
        return ["/bin/sh", "-c", self.spec]


def order(mode: str, out: Path, **fields) -> MarkChannel:
    """A mark channel holding a harness run's order (measure/harness.py): its mode, its output file and the rest."""
    channel = MarkChannel()
    channel.send(json.dumps({"mode": mode, "out": str(out), **fields}).encode())
    return channel


class FilesWritten(RuntimeError):
    """A run left files in a watched worktree (put back since): state a later run could read."""

    def __init__(self, paths: list[str]):
        super().__init__(f"writes files into the repository while running: {', '.join(paths[:5])}")
        self.paths = paths


class WorkloadFailed(RuntimeError):
    """The workload crashed or timed out; `run` holds the process result. The message shows the workload's own output
    and traceback as the user knows their files (user_frames); `exception` is the traceback's exception line."""

    def __init__(self, what: str, result: RunResult, traceback: str | None = None, paths: dict[str, str] | None = None):
        output = traceback or result.tail(60)
        shown = user_frames(output, paths)
        super().__init__(f"{what} {'raised' if traceback else result.failure()}" + (f":\n{shown}" if shown else ""))
        self.run, self.exception = result, exception_line(user_frames(output, paths, lines=None))

    @property
    def limit(self) -> str | None:
        """The limit the run hit: "time" (the wall-clock timeout, or the CPU time derived from it), "memory" (the
        address space, memory-mb), or None when the code failed on its own."""
        if self.run.timed_out or self.run.returncode == -signal.SIGXCPU:
            return "time"
        if (self.exception or "").startswith("MemoryError") or "MemoryError" in self.run.stderr[-4000:]:
            return "memory"
        return None


def repository_paths(worktree: Path, workload: Workload) -> dict[str, str]:
    """How a child's paths read to the user: files of the worktree (a temporary folder) relative to the repository,
    the workload file by its path in the repository (user_frames' `paths`)."""
    paths = {f"{folder}/": "" for folder in {str(worktree), str(Path(worktree).resolve())}}
    if workload.path and workload.repo_relative:
        paths[str(workload.path)] = workload.repo_relative
    return paths


def user_frames(output: str, paths: dict[str, str] | None = None, lines: int | None = 25) -> str:
    """The last `lines` of `output` (all: None) with the traceback entries of perfagent's harness removed, and each of
    `paths` (as the child saw it) replaced by what the user knows it as: the user's frames are what they can fix."""
    kept, skipping = [], False
    for line in output.splitlines():
        if line.startswith('  File "'):
            skipping = line.startswith(f'  File "{HARNESS.parent}')
        elif not line.startswith("    "):
            skipping = False
        if not skipping:
            kept.append(line)
    text = "\n".join(kept if lines is None else kept[-lines:])
    for seen in sorted(paths or {}, key=len, reverse=True):  # a folder's files before the folder
        text = text.replace(seen, paths[seen])
    return text


def exception_line(output: str) -> str | None:
    """The exception that ended the last traceback in `output` (`TypeError: ...`), or None when there is none."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last):")]
    after = lines[starts[-1] + 1:] if starts else []
    return next((line for line in after if line.strip() and not line.startswith(" ")), None)


def _quartile(values) -> float:
    return float(np.percentile(values, 25))


def _cold_start(calls: list[float]) -> tuple[float, float] | None:
    """(first call, typical later call) when the first call of a process is much slower than the rest, else None."""
    later = sorted(calls[1:])
    typical = later[len(later) // 2] if len(later) >= 2 else None
    if typical is not None and calls[0] > COLD_START_FACTOR * typical and calls[0] - typical > 0.005:
        return calls[0], typical
    return None


@dataclass
class WorkloadRunner:
    """Runs one workload on the code in a worktree, each time in a fresh sandboxed process. Calls are timed from the
    kernel's stamps of the harness's marks, and every call's result is digested (measure/integrity.py)."""
    workload: Workload
    python: str
    tmp: Path
    limits: Limits
    cold_start: tuple[float, float] | None = None
    cold_starts: dict[Path, tuple[float, float]] = field(default_factory=dict, repr=False)  # worktree -> its
    # calibration's (first call, typical later call), where the first was far slower
    seen: dict[Path, set[Event]] = field(default_factory=dict, repr=False)  # worktree -> what its runs did
    digests: dict[Path, list[str]] = field(default_factory=dict, repr=False)  # worktree -> its results' digests,
    # call by call, from its longest run on its own input
    watched: dict[Path, tuple[Snapshot, set[str]]] = field(default_factory=dict, repr=False)  # see watch()
    recorded: dict[Path, dict] = field(default_factory=dict, repr=False)  # worktree -> its last result run's records
    # of the calls to the functions it was asked to record (recorder.py)

    def _run(self, worktree: Path, argv: list[str], writable: list[Path] = (),
             marks: MarkChannel | None = None) -> RunResult:
        result = run(argv, cwd=worktree, env=child_env({"PYTHONPATH": str(worktree)}), limits=self.limits,
                     writable=writable, readable=self.workload.files, marks=marks)
        self.seen.setdefault(Path(worktree).resolve(), set()).update(result.behaviour)
        watch = self.watched.get(Path(worktree).resolve())
        if watch:
            before, allowed = watch
            changed = before.changes(snapshot(worktree))
            before.restore(changed)
            if changed - allowed:
                raise FilesWritten(sorted(changed - allowed))
        return result

    def watch(self, worktree: Path, allowed: set[str]) -> None:
        """From now on, every run on `worktree` must leave it as it is now: what a run changes is put back after it,
        and a change to any path but `allowed` ones (which the unmodified code's runs write too) raises FilesWritten,
        so no run leaves state in the worktree for the next."""
        self.watched[Path(worktree).resolve()] = (snapshot(worktree, keep=allowed), set(allowed))

    def behaviour(self, worktree: Path) -> set[Event]:
        """What the workload's runs on `worktree` did (sandbox/behaviour.py), so far."""
        return self.seen.get(Path(worktree).resolve(), set())

    def _harness(self, worktree: Path, mode: str, **fields) -> tuple[dict, Calls, RunResult]:
        """One harness run with a fresh output folder, removed afterwards (nothing written there reaches a later
        run): its output, its calls as the kernel saw them, and the process."""
        folder = Path(tempfile.mkdtemp(prefix="run-", dir=self.tmp))
        out = folder / "out.json"
        channel = order(mode, out, **fields)
        try:
            result = self._run(worktree, self.workload.harness_argv(self.python), [folder], channel)
            if not result.ok or not out.exists():
                raise WorkloadFailed(f"the workload ({mode})", result, paths=repository_paths(worktree, self.workload))
            value = json.loads(out.read_text())
            return value, read_calls(channel.marks, value.get("calls", [])), result
        finally:
            channel.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _calls(self, worktree: Path, expect: Expected | None = None, **fields) -> tuple[dict, Calls, RunResult]:
        """A run of workload() calls (mode "calls"), each call's result held to `expect`; on the own input, its
        digests are the worktree's when they are the longest sequence seen there."""
        value, calls, result = self._harness(worktree, "calls", **fields)
        raised = value.get("raised") or []
        if expect is None and 0 < len(raised) < len(calls.calls):  # not the exception that is its result: a failure
            raise WorkloadFailed(f"the workload (call {raised[0] + 1} of {len(calls.calls)} in a process)", result,
                                 str(value.get("traceback")), repository_paths(worktree, self.workload))
        mismatch = expect and expect.mismatch(calls.calls)
        if mismatch:
            raise ResultDrift(mismatch)
        known = self.digests.setdefault(Path(worktree).resolve(), [])
        if fields.get("input") == "setup" and len(calls.calls) > len(known) and (
                not known or calls.calls[0].digest == known[0]):  # the first result, once checked, stays the first
            known[:] = [c.digest for c in calls.calls]
        return value, calls, result

    def result(self, worktree: Path, perturbed: bool = False, record: tuple[str, ...] = ()) -> tuple[object, float]:
        """The workload's result (normal form, or stdout for a command) and its call's seconds (a command: its run's);
        with `perturbed`, on the input of the file's perturbed_setup(); with `record`, the calls to those functions
        ("module:qualname") recorded into `recorded` (on the own input: a call recorded is a slower call)."""
        if self.workload.kind == "command":
            result = self._run(worktree, self.workload.command_argv())
            if not result.ok:
                raise WorkloadFailed("the workload command", result, paths=repository_paths(worktree, self.workload))
            return result.stdout, result.seconds
        value, calls, _ = self._calls(worktree, input="perturbed_setup" if perturbed else "setup", loops=1,
                                      **({"record": list(record)} if record else {}))
        if record:
            self.recorded[Path(worktree).resolve()] = value.get("records") or {}
        return value["result"], calls.calls[0].wall

    def results(self, worktree: Path, expected: dict[str, object] | None = None,
                record: tuple[str, ...] = ()) -> tuple[dict[str, object], float]:
        """The result on each input (OWN_INPUT, and PERTURBED_INPUT when the file defines perturbed_setup()) and the
        seconds of the run on its own input (with `record`, its calls recorded, see result()). With `expected`, a
        result on the own input that differs from it ends the runs there: the perturbed input could not change that
        verdict."""
        result, seconds = self.result(worktree, record=record)
        results = {OWN_INPUT: result}
        if self.workload.perturbed and (expected is None or compare_results(expected[OWN_INPUT], result).equal):
            results[PERTURBED_INPUT] = self.result(worktree, perturbed=True)[0]
        return results, seconds

    def calibrate(self, worktree: Path, target_s: float, expect: Expected | None = None) -> int:
        """Inner loop count so one timing value takes about `target_s` (always 1 for a command), the calls' results
        held to `expect`. When the calls after the first are much faster (a cache that setup() does not reset), only
        the real work counts: 1 call per process, and `cold_start` holds (first call, typical later call) in
        seconds."""
        if self.workload.kind == "command":
            return 1
        calls = self._calibration_calls(worktree, expect, target_s)
        cold = _cold_start(calls)
        if cold and _cold_start(self._calibration_calls(worktree, expect, target_s)):  # a first call the machine
            self.cold_start = self.cold_start or cold  # slowed (preempted) is not slow again in another process
            self.cold_starts[worktree] = cold
            return 1
        per_call = sorted(calls)[len(calls) // 2]
        return max(1, min(1000, round(target_s / max(per_call, 1e-6))))

    def _calibration_calls(self, worktree: Path, expect: Expected | None, target_s: float) -> list[float]:
        return [c.wall for c in self._calls(worktree, expect, input="setup", seconds=target_s)[1].calls]

    def memory(self, worktree: Path, expect: Expected | None = None) -> Memory | None:
        """The workload's memory per call, from a fresh process of its own (tracing would slow the timing runs), its
        calls' results held to `expect`; None for a command, whose allocations perfagent cannot see."""
        if self.workload.kind == "command":
            return None
        measured, calls, _ = self._harness(worktree, "memory")
        mismatch = expect and expect.mismatch(calls.calls)
        if mismatch:
            raise ResultDrift(mismatch)
        return Memory(measured["peak"], measured["rss"])

    def sample(self, worktree: Path, loops: int, expect: Expected | None = None) -> Timing:
        """One timing value from a fresh process: the lower quartile of its calls' seconds, each call timed by the
        kernel's stamps and its result held to `expect`. Speed on these machines swings by up to 2x for tenths of a
        second; a low quantile of many calls in one process keeps the calls that ran at full speed
        (benchmarks/measurement.py compares this with the mean and the minimum). A command is timed whole."""
        if self.workload.kind == "command":
            cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = self._run(worktree, self.workload.command_argv())
            if not result.ok:
                raise WorkloadFailed("the workload command", result, paths=repository_paths(worktree, self.workload))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            return Timing(result.seconds, after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime)
        _, calls, result = self._calls(worktree, expect, input="setup", loops=loops)
        n = len(calls.calls)
        return Timing(_quartile([c.wall for c in calls.calls]), _quartile([c.cpu for c in calls.calls]),
                      _quartile([c.claimed for c in calls.calls]), calls.outside / n,
                      None if result.cpu_s is None else result.cpu_s / n, calls.calls[0].wall, n)

    def sequence(self, worktree: Path) -> tuple[str, ...]:
        """The digests of `worktree`'s results on its own input, call by call, from its longest run so far."""
        return tuple(self.digests.get(Path(worktree).resolve(), ()))

    def expected(self, worktree: Path, reference: tuple[str, ...]) -> Expected:
        """What every later call's result on `worktree` must digest to, once its result on the own input was checked
        against the reference's (whose digests, call by call, are `reference`)."""
        mine = self.digests.get(Path(worktree).resolve()) or [""]
        return Expected.of(reference or mine, mine[0])
