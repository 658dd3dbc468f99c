"""Profile a workload and rank the repository's own functions by where the time goes.

py-spy samples the workload from outside (raw stacks with full file names); when py-spy cannot run, cProfile runs
inside the harness. Only samples below the harness's `perfagent_profiled_workload` frame count, so `setup()` is
excluded. Attribution, per sample:
- self time goes to the deepest frame that belongs to the repository, so time spent in the stdlib, builtins or C
  extensions counts for the repository function that called them;
- cumulative time goes once to every repository function on the stack (recursion is not counted twice);
- comprehensions, generator expressions and lambdas fold into their enclosing function (they share its line span).
Ranking score = self share: it points at the code to change; cumulative share and callers are given as context.
"""
from __future__ import annotations

import json
import shutil
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.source import FunctionSpan, SourceIndex
from agent.workload import Workload
from sandbox.run import Limits, child_env, run

from sandbox import HARNESS
_WORKLOAD_FRAME = "perfagent_profiled_workload"


@dataclass
class Hotspot:
    key: str  # module:Qual.name
    file: str
    qualname: str
    start: int
    end: int
    self_share: float  # of workload time
    cum_share: float
    calls: int | None = None  # known with cProfile only
    lines: list[tuple[int, float]] = field(default_factory=list)  # hottest lines and their share
    callers: list[tuple[str, float]] = field(default_factory=list)  # repository callers on the hot path
    callees: list[tuple[str, float]] = field(default_factory=list)  # repository callees and their share


@dataclass
class Profile:
    profiler: str  # "py-spy" or "cProfile"
    samples: int
    seconds: float
    hotspots: list[Hotspot]
    raw_path: str | None = None  # py-spy raw stacks, for flame graphs
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def top(self, n: int) -> list[Hotspot]:
        return self.hotspots[:n]


class ProfileError(RuntimeError):
    pass


def _excluded(file: str, workload: Workload) -> bool:
    """Tests, the workload itself and installed packages are not the repository's code to optimize."""
    name, parts = Path(file).name, Path(file).parts
    return ("tests" in parts[:-1] or name.startswith("test_") or name == "conftest.py"
            or "site-packages" in parts or file == workload.repo_relative)


class _Tally:
    """Accumulates samples into per-function self/cumulative counts, line counts and call edges."""

    def __init__(self, index: SourceIndex, workload: Workload):
        self.index, self.workload = index, workload
        self.total = 0
        self.self = Counter()
        self.cum = Counter()
        self.lines: dict[str, Counter] = defaultdict(Counter)
        self.edges = Counter()
        self.spans: dict[str, FunctionSpan] = {}

    def repo_span(self, filename: str, line: int) -> FunctionSpan | None:
        file = self.index.relative(filename)
        if file is None or _excluded(file, self.workload):
            return None
        span = self.index.function_at(file, line)
        self.spans.setdefault(span.key, span)
        return span

    def add_stack(self, frames: list[tuple[str, int]], count: int) -> None:
        """frames: (filename, line) from the outermost workload frame to the leaf."""
        self.total += count
        chain: list[tuple[str, int]] = []
        for filename, line in frames:
            span = self.repo_span(filename, line)
            if span is not None:
                chain.append((span.key, line))
        if not chain:
            return
        leaf, leaf_line = chain[-1]
        self.self[leaf] += count
        self.lines[leaf][leaf_line] += count
        keys = [k for k, _ in chain]
        for key in set(keys):
            self.cum[key] += count
        for edge in {(a, b) for a, b in zip(keys, keys[1:]) if a != b}:
            self.edges[edge] += count

    def hotspots(self, limit: int = 50) -> list[Hotspot]:
        total = max(self.total, 1)
        ranked = sorted(self.cum, key=lambda k: (self.self[k], self.cum[k]), reverse=True)[:limit]
        result = []
        for key in ranked:
            span = self.spans[key]
            lines = [(line, n / total) for line, n in self.lines[key].most_common(8)]
            callers = [(a, n / total) for (a, b), n in self.edges.most_common() if b == key][:5]
            callees = [(b, n / total) for (a, b), n in self.edges.most_common() if a == key][:5]
            result.append(Hotspot(key, span.file, span.qualname, span.start, span.end, self.self[key] / total,
                                  self.cum[key] / total, None, lines, callers, callees))
        return result


def _parse_frame(frame: str) -> tuple[str, str, int] | None:
    """py-spy raw frame 'func (file:line)' -> (func, file, line)."""
    if not frame.endswith(")") or " (" not in frame:
        return None
    func, _, location = frame[:-1].rpartition(" (")
    file, _, line = location.rpartition(":")
    return (func, file, int(line)) if line.isdigit() else None


def tally_pyspy(raw: str, index: SourceIndex, workload: Workload, *, below_harness: bool = True) -> _Tally:
    tally = _Tally(index, workload)
    for row in raw.splitlines():
        stack, _, count = row.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f for f in map(_parse_frame, stack.split(";")) if f]
        if below_harness:
            starts = [i for i, (func, _, _) in enumerate(frames) if func == _WORKLOAD_FRAME]
            if not starts:
                continue  # setup(), imports, interpreter start-up
            frames = frames[starts[0] + 1:]
        tally.add_stack([(file, line) for _, file, line in frames], int(count))
    return tally


def tally_cprofile(stats: dict, index: SourceIndex, workload: Workload) -> tuple[_Tally, dict[str, int]]:
    """cProfile has no stacks: self time of non-repository functions goes to their repository callers, split by the
    cumulative time of each call edge; cumulative time is cProfile's own (which handles recursion)."""
    tally = _Tally(index, workload)
    functions = {(f["file"], f["line"], f["name"]): f for f in stats["functions"]}
    root = next((f for f in functions.values() if f["name"] == _WORKLOAD_FRAME), None)
    tally.total = max(int((root or {}).get("cumtime", 0) * 1e6), 1)
    calls: dict[str, int] = {}

    def owner(fn: dict, depth: int = 0) -> list[tuple[str, float]]:
        span = tally.repo_span(fn["file"], fn["line"])
        if span is not None:
            return [(span.key, 1.0)]
        edges = [(functions.get((cf, cl, cn)), ct) for cf, cl, cn, _tt, ct in fn["callers"]]
        edges = [(c, t) for c, t in edges if c is not None and c["name"] != _WORKLOAD_FRAME]
        total = sum(t for _, t in edges)
        if depth > 20 or total <= 0:
            return []
        return [(k, w * t / total) for c, t in edges for k, w in owner(c, depth + 1)]

    for fn in functions.values():
        for key, weight in owner(fn):
            tally.self[key] += int(fn["tottime"] * 1e6 * weight)
        span = tally.repo_span(fn["file"], fn["line"])
        if span is not None:
            tally.cum[span.key] = max(tally.cum[span.key], int(fn["cumtime"] * 1e6))
            calls[span.key] = calls.get(span.key, 0) + fn["ncalls"]
            for cf, cl, _cn, _tt, ct in fn["callers"]:
                caller = tally.repo_span(cf, cl)
                if caller is not None and caller.key != span.key:
                    tally.edges[(caller.key, span.key)] += int(ct * 1e6)
    for key, own in tally.self.items():  # the split is an estimate: keep it within the function's total
        tally.cum[key] = max(tally.cum[key], own)
    return tally, calls


def profile_workload(worktree: Path, workload: Workload, *, python: str, tmp: Path, seconds: float = 3.0,
                     limits: Limits = Limits(), use_pyspy: bool = True) -> Profile:
    """Profile `workload` running on the code in `worktree`; py-spy first, cProfile when py-spy cannot run."""
    worktree = worktree.resolve()
    index = SourceIndex(worktree)
    env = child_env({"PYTHONPATH": str(worktree)})
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    note = ""
    if use_pyspy and Path(pyspy).exists():
        raw_path = tmp / "pyspy.raw"
        raw_path.unlink(missing_ok=True)
        target = workload.profile_argv(python, HARNESS, tmp / "profile.json", seconds)
        argv = [pyspy, "record", "-f", "raw", "--full-filenames", "--rate", "200", "-o", str(raw_path)]
        if workload.kind == "command":
            argv.append("--subprocesses")
        result = run([*argv, "--", *target], cwd=worktree, env=env, limits=limits, writable=[tmp],
                     readable=workload.files)
        if result.ok and raw_path.exists():
            tally = tally_pyspy(raw_path.read_text(), index, workload, below_harness=workload.kind == "python")
            if tally.total:
                return Profile("py-spy", tally.total, result.seconds, tally.hotspots(), str(raw_path))
        note = f"py-spy could not profile the workload ({result.failure()}): {result.tail(3)}"
    if workload.kind != "python":
        raise ProfileError(note or "py-spy is not installed, and cProfile needs a setup()/workload() workload")
    out = tmp / "cprofile.json"
    result = run(workload.harness_argv(python, HARNESS, "cprofile", out, seconds), cwd=worktree, env=env,
                 limits=limits, writable=[tmp], readable=workload.files)
    if not result.ok:
        raise ProfileError(f"the workload failed under cProfile ({result.failure()}):\n{result.tail()}")
    tally, calls = tally_cprofile(json.loads(out.read_text()), index, workload)
    hotspots = tally.hotspots()
    for h in hotspots:
        h.calls = calls.get(h.key)
    return Profile("cProfile", tally.total, result.seconds, hotspots, None, note)
