"""Profile a workload and rank the repository's own functions by where the time goes.

py-spy samples the workload from outside (raw stacks with full file names and line numbers; with its native frames
when the checkout has compiled extensions of its own, see perfagent.localize.native); when py-spy cannot run,
cProfile runs inside the harness. Only time below the harness's `perfagent_profiled_workload` frame counts
(py-spy: samples with that frame on the stack; cProfile: it profiles that call only), so `setup()` is excluded.
Attribution, per sample (cProfile: per call edge, see tally_cprofile):
- self time goes to the deepest frame that belongs to the repository, so time spent in the stdlib, builtins or C
  extensions counts for the repository function that called them (a sorted() inside a method counts for it); with
  native frames, the repository's own Cython and C functions below its Python ones are frames like them (see
  _Tally.chain);
- cumulative time goes once per sample to every repository function on the stack, so recursion is not counted
  twice and no share exceeds 100%;
- comprehensions, generator expressions and lambdas fold into their enclosing function (they share its line span);
  nested functions and methods are named like Python's __qualname__ (`outer.<locals>.inner`, `Class.method`);
- the hottest lines of a function are its lines on the stack (once per sample), so a caller's hottest line is the
  call that leads to its time; call counts are known with cProfile only (py-spy: None).
Test files (perfagent.localize.testselect.is_test_file), the workload file and installed packages are not the
repository's code.

Ranking score = self share + cumulative share / 2**depth, where depth is how many repository functions sit above
the function on the stack (py-spy: averaged over its samples; cProfile: the fewest on any path). A change can pay
off in two places: where the time is spent (self: the leaf doing the work, including the library calls it makes),
and in the code that decides how much work happens below it (cumulative: the API function the workload calls, which
an algorithmic fix rewrites). Ranking by self alone hides the second kind: in real tasks the function the expert
rewrote was often the entry point with little self time. Ranking by cumulative alone fills the top with the chain
of dispatchers between the entry point and the leaves, each with nearly the same share. Halving the cumulative term
per level keeps the entry points and the functions just below them in view while deep dispatchers rank by what
they do themselves. `benchmarks/localization.py` measures the ranking against the functions experts edited.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from collections import Counter, defaultdict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from perfagent.localize import native
from perfagent.localize.source import FunctionSpan, SourceIndex
from perfagent.localize.testselect import is_test_file
from perfagent.measure.workload import Workload, order, user_frames
from perfagent.sandbox.run import Limits, RunResult, child_env, run

WORKLOAD_FRAME = "perfagent_profiled_workload"
WORKLOAD_CALLER = "<workload>"  # the caller of the repository functions the workload calls directly
_SAMPLES = re.compile(r"Samples: (\d+) Errors: (\d+)")  # py-spy's last words


@dataclass
class Hotspot:
    key: str  # module:Qual.name
    file: str
    qualname: str
    start: int
    end: int
    self_share: float  # of workload time
    cum_share: float
    depth: float = 0.0  # repository functions above it on the stack (py-spy: mean over its samples; cProfile: fewest)
    score: float = 0.0  # what the ranking sorts by, see score()
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
    native: bool = False  # py-spy's stacks hold native frames (see perfagent.localize.native)

    def as_dict(self) -> dict:
        return asdict(self)

    def top(self, n: int) -> list[Hotspot]:
        return self.hotspots[:n]


class ProfileError(RuntimeError):
    pass


def score(self_share: float, cum_share: float, depth: float) -> float:
    """The ranking score (see the module docstring)."""
    return self_share + cum_share / 2 ** depth


def is_repository_code(file: str, workload: Workload) -> bool:
    """Tests, the workload itself and installed packages are not the repository's code to optimize."""
    return not (is_test_file(file) or "site-packages" in Path(file).parts or file == workload.repo_relative)


class _Tally:
    """Accumulates samples into per-function self/cumulative counts, line counts and call edges."""

    def __init__(self, index: SourceIndex, workload: Workload):
        self.index, self.workload = index, workload
        self.total = 0
        self.self = Counter()
        self.cum = Counter()
        self.lines: dict[str, Counter] = defaultdict(Counter)
        self.edges = Counter()
        self.depth = Counter()  # sum over samples of the number of repository functions above this one
        self.spans: dict[str, FunctionSpan] = {}
        self.native = native.NativeSources(index)

    def repo_span(self, filename: str, line: int, name: str | None = None) -> FunctionSpan | None:
        file = self.index.relative(filename)
        if file is None or not is_repository_code(file, self.workload):
            return None
        span = self.index.function_at(file, line, name)
        self.spans.setdefault(span.key, span)
        return span

    def place(self, name: str, filename: str, line: int) -> tuple[FunctionSpan, int | None, bool] | None:
        """The repository function a frame runs in, its line there (None: not known) and whether the frame is native
        code (see perfagent.localize.native); None for code outside the repository."""
        if native.owns(name, filename, line):
            placed = self.native.place(name, filename, line)
            if placed is None or not is_repository_code(placed[0].file, self.workload):
                return None
            self.spans.setdefault(placed[0].key, placed[0])
            return (*placed, True)
        span = self.repo_span(filename, line, name)
        return None if span is None else (span, line, False)

    def chain(self, frames: list[tuple[str, str, int]]) -> list[tuple[str, int | None]]:
        """The repository functions of a stack, outermost first, with their lines. Native frames extend the Python
        stack downwards: one above a repository Python frame is glue that calls back into Python (numpy's
        __array_function__ dispatch in C), left out as a Python-only profile leaves it out, so the Python function
        keeps its depth; and a Cython function's wrapper and its body are one frame, at the body's line."""
        placed = [p for p in (self.place(*frame) for frame in frames) if p is not None]
        python = max((i for i, (_, _, is_native) in enumerate(placed) if not is_native), default=-1)
        chain: list[tuple[str, int | None]] = []
        for i, (span, line, is_native) in enumerate(placed):
            if is_native and i < python:
                continue
            if is_native and chain and chain[-1][0] == span.key:
                chain[-1] = (span.key, line or chain[-1][1])
            else:
                chain.append((span.key, line))
        return chain

    def add_stack(self, frames: list[tuple[str, str, int]], count: int) -> None:
        """frames: (function, filename, line) from the outermost workload frame to the leaf."""
        self.total += count
        chain = self.chain(frames)
        if not chain:
            return
        self.self[chain[-1][0]] += count
        for key, line in set(chain):  # each line once per sample, as each function
            if line:
                self.lines[key][line] += count
        keys = list(dict.fromkeys(k for k, _ in chain))  # outermost occurrence first: recursion counts once
        for depth, key in enumerate(keys):
            self.cum[key] += count
            self.depth[key] += depth * count
        chained = [WORKLOAD_CALLER] + [k for k, _ in chain]
        for edge in {(a, b) for a, b in zip(chained, chained[1:]) if a != b}:
            self.edges[edge] += count

    def hotspots(self, limit: int | None = 50) -> list[Hotspot]:
        total = max(self.total, 1)
        depth = {k: self.depth[k] / self.cum[k] if self.cum[k] else 0.0 for k in self.cum}
        scores = {k: score(self.self[k] / total, self.cum[k] / total, depth[k]) for k in self.cum}
        ranked = sorted(self.cum, key=lambda k: (scores[k], self.cum[k], k), reverse=True)[:limit]
        edges = self.edges.most_common()
        result = []
        for key in ranked:
            span = self.spans[key]
            result.append(Hotspot(
                key, span.file, span.qualname, span.start, span.end, self.self[key] / total, self.cum[key] / total,
                depth=round(depth[key], 2), score=round(scores[key], 4),
                lines=[(line, n / total) for line, n in self.lines[key].most_common(8)],
                callers=[(a, n / total) for (a, b), n in edges if b == key][:5],
                callees=[(b, n / total) for (a, b), n in edges if a == key][:5]))
        return result


def parse_frame(frame: str) -> tuple[str, str, int] | None:
    """py-spy raw frame 'func (file:line)' -> (func, file, line); a native frame without debug info,
    'func (library.so)', has line 0."""
    if not frame.endswith(")") or " (" not in frame:
        return None
    func, _, location = frame[:-1].rpartition(" (")
    file, _, line = location.rpartition(":")
    return (func, file, int(line)) if line.isdigit() else (func, location, 0)


def read_stacks(raw: str, below_harness: bool = True) -> list[tuple[list[tuple[str, str, int]], int]]:
    """py-spy raw output -> (frames (func, file, line) from the outermost to the leaf, sample count) per stack; with
    `below_harness`, only the frames below the harness's call of workload(), and only stacks that have it."""
    stacks = []
    for row in raw.splitlines():
        stack, _, count = row.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [f for f in map(parse_frame, stack.split(";")) if f]
        if below_harness:
            starts = [i for i, (func, _, _) in enumerate(frames) if func == WORKLOAD_FRAME]
            if not starts:
                continue  # setup(), imports, interpreter start-up
            frames = frames[starts[0] + 1:]
        stacks.append((frames, int(count)))
    return stacks


def tally_pyspy(raw: str, index: SourceIndex, workload: Workload, *, below_harness: bool = True) -> _Tally:
    tally = _Tally(index, workload)
    for frames, count in read_stacks(raw, below_harness):
        tally.add_stack(frames, count)
    return tally


def tally_cprofile(stats: dict, index: SourceIndex, workload: Workload) -> tuple[_Tally, dict[str, int]]:
    """cProfile has no stacks: self time of non-repository functions goes to their repository callers, split by the
    cumulative time of each call edge; cumulative time is cProfile's own (which counts recursion once); the depth is
    the fewest repository functions on any call path from the workload; calls are those of the function's own code
    object (not of the comprehensions and lambdas folded into it)."""
    tally = _Tally(index, workload)
    functions = {(f["file"], f["line"], f["name"]): f for f in stats["functions"]}
    root = next((f for f in functions.values() if f["name"] == WORKLOAD_FRAME), None)
    tally.total = max(int((root or {}).get("cumtime", 0) * 1e6), 1)
    calls: dict[str, int] = {}

    def owner(fn: dict, depth: int = 0) -> list[tuple[str, float]]:
        span = tally.repo_span(fn["file"], fn["line"])
        if span is not None:
            return [(span.key, 1.0)]
        edges = [(functions.get((cf, cl, cn)), ct) for cf, cl, cn, _tt, ct in fn["callers"]]
        edges = [(c, t) for c, t in edges if c is not None and c["name"] != WORKLOAD_FRAME]
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
            if fn["name"] == span.qualname.rpartition(".")[2]:
                calls[span.key] = calls.get(span.key, 0) + fn["ncalls"]
            for cf, cl, cn, _tt, ct in fn["callers"]:
                caller = tally.repo_span(cf, cl)
                if caller is not None and caller.key != span.key:
                    tally.edges[(caller.key, span.key)] += int(ct * 1e6)
                elif caller is None and cn == "workload" and Path(cf).resolve() == workload.path:
                    tally.edges[(WORKLOAD_CALLER, span.key)] += int(ct * 1e6)
    for key, own in tally.self.items():  # the split is an estimate: keep it within the function's total
        tally.cum[key] = max(tally.cum[key], own)
    for key, depth in _shortest_depths(functions, root, tally).items():
        tally.depth[key] = depth * tally.cum[key]  # hotspots() divides by cum
    return tally, calls


def _shortest_depths(functions: dict, root: dict | None, tally: _Tally) -> dict[str, int]:
    """Fewest repository functions above each repository function on a call path from the workload (0-1 BFS)."""
    callees = defaultdict(list)
    for id_, fn in functions.items():
        for cf, cl, cn, _tt, _ct in fn["callers"]:
            callees[(cf, cl, cn)].append(id_)
    start = (root["file"], root["line"], root["name"]) if root else None
    best = {start: 0}
    queue = deque([start] if start else [])
    while queue:
        node = queue.popleft()
        fn = functions[node]
        step = 1 if tally.repo_span(fn["file"], fn["line"]) is not None else 0
        for callee in callees[node]:
            if best[node] + step < best.get(callee, 1 << 30):
                best[callee] = best[node] + step
                (queue.append if step else queue.appendleft)(callee)
    depths: dict[str, int] = {}
    for node, depth in best.items():
        span = tally.repo_span(*node[:2])
        if span is not None:
            depths[span.key] = min(depth, depths.get(span.key, depth))
    return depths


@dataclass(frozen=True)
class ProfileOptions:
    seconds: float  # of workload() calls, after setup() (the profile-seconds setting)
    use_pyspy: bool = True  # False: cProfile only
    limit: int | None = 50  # hotspots kept, best first (None: all)
    native: bool = True  # py-spy's native frames when the checkout has compiled extensions of its own


@dataclass(frozen=True)
class _Session:
    """What each profiler run of one profile_workload call shares."""
    worktree: Path
    workload: Workload
    python: str
    tmp: Path
    limits: Limits
    seconds: float

    def run(self, argv: list[str], channel) -> RunResult:
        try:
            return run(argv, cwd=self.worktree, env=child_env({"PYTHONPATH": str(self.worktree)}), limits=self.limits,
                       writable=[self.tmp], readable=self.workload.files, marks=channel)
        finally:
            if channel:
                channel.close()


def profile_workload(worktree: Path, workload: Workload, *, python: str, tmp: Path, limits: Limits,
                     options: ProfileOptions) -> Profile:
    """Profile `workload` running on the code in `worktree`; py-spy first (with native frames when the checkout has
    extensions of its own, else or when that fails without), cProfile when py-spy cannot run."""
    session = _Session(worktree.resolve(), workload, python, tmp, limits, options.seconds)
    index = SourceIndex(session.worktree)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    notes = []
    if options.use_pyspy and Path(pyspy).exists():
        for with_native in [True, False] if options.native and native.has_extensions(session.worktree) else [False]:
            result, raw, failed = _pyspy(session, pyspy, with_native)
            if raw is not None:
                tally = tally_pyspy(raw.read_text(), index, workload, below_harness=workload.kind == "python")
                if tally.total:
                    return Profile("py-spy", tally.total, result.seconds, tally.hotspots(options.limit), str(raw),
                                   " ".join(notes), native=with_native)
            failed = failed or f"py-spy{' --native' * with_native} sampled no workload call: {result.tail(3)}"
            notes.append(f"{failed}; profiled without native frames, so the time inside the repository's extensions "
                         f"counts for their Python callers." if with_native else failed)
        if result.timed_out:  # setup() and one workload() call take longer than the limit: cProfile is slower still
            raise ProfileError(f"{notes[-1]}\nsetup() and one workload() call must finish within the time limit")
    if workload.kind != "python":
        raise ProfileError(notes[-1] if notes else "py-spy is not installed, and cProfile needs a setup()/workload() "
                                                   "workload")
    out = tmp / "cprofile.json"
    result = session.run(workload.harness_argv(python), order("cprofile", out, seconds=session.seconds))
    if not result.ok:
        raise ProfileError(f"the workload failed under cProfile ({result.failure()}):\n{user_frames(result.tail())}")
    tally, calls = tally_cprofile(json.loads(out.read_text()), index, workload)
    hotspots = tally.hotspots(options.limit)
    for h in hotspots:
        h.calls = calls.get(h.key)
    return Profile("cProfile", tally.total, result.seconds, hotspots, None, " ".join(notes))


def _pyspy(session: _Session, pyspy: str, with_native: bool) -> tuple[RunResult, Path | None, str]:
    """One py-spy run, its raw stacks and, when it failed or lost most native samples (stacks it could not unwind),
    no stacks and why."""
    raw = session.tmp / "pyspy.raw"
    raw.unlink(missing_ok=True)
    argv = [pyspy, "record", "-f", "raw", "--full-filenames", "--rate", "200", "-o", str(raw)]
    argv += ["--subprocesses"] if session.workload.kind == "command" else []
    argv += ["--native"] if with_native else []
    channel = order("profile", session.tmp / "profile.json", seconds=session.seconds) \
        if session.workload.kind == "python" else None
    result = session.run([*argv, "--", *session.workload.profile_argv(session.python)], channel)
    if not result.ok or not raw.exists():
        return result, None, f"py-spy{' --native' * with_native} could not profile the workload " \
                             f"({result.failure()}): {result.tail(3)}"
    samples, errors = map(int, (_SAMPLES.findall(result.stdout + result.stderr) or [(1, 0)])[-1])
    if errors > samples:
        return result, None, f"py-spy --native could not unwind {errors} of {samples + errors} samples"
    return result, raw, ""
