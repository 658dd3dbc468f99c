"""Decide on one candidate: guards, syntax, tests, files its runs leave in the repository, result equivalence (on the
perturbed input too), then speed. Cheap checks first; every rejection carries a named reason and the evidence."""
from __future__ import annotations

import difflib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from perfagent.loop.guards import protected_reason, suspicious_reason, unsafe_reason
from perfagent.loop.memory import NOT_SLOWER, SLOWER, compare_memory, describe_memory, memory_record, mib, \
    time_not_worse, too_much_memory
from perfagent.measure.generality import carried_across_calls, undecided
from perfagent.loop.unseen import Inputs
from perfagent.measure.calls import compare_calls
from perfagent.measure.integrity import Expected, ResultDrift, TimingTampered, clock_tampered, work_moved
from perfagent.measure.workload import OWN_INPUT, FilesWritten, WorkloadFailed, WorkloadRunner
from perfagent.sandbox.behaviour import Event, new_behaviour
from perfagent.measure.compare import Comparison, compare_results
from perfagent.measure.stats import FASTER, NOT_FASTER, Sampling, SpeedStats, compare_rotation, compare_speed, \
    samples_record, walls
from perfagent.reasons import ACCEPTED, CARRIED_ACROSS_CALLS, IDENTICAL, NO_LESS_MEMORY, NOT_COMPARED, \
    ONLY_ON_BENCHMARK_INPUT, PROTECTED_FILE, RESULT_CHANGED, SUSPICIOUS_CODE, SYNTAX_ERROR, TESTS_FAILED, \
    TESTS_TAMPERED, TIMING_TAMPERED, TOO_NOISY, UNSAFE_BEHAVIOUR, UNSAFE_CODE, USES_TOO_MUCH_MEMORY, WORK_MOVED, \
    WORKLOAD_FAILED
from perfagent.reasons import NOT_FASTER as NOT_FASTER_REASON, SLOWER as SLOWER_REASON  # stats and memory decisions
from perfagent import formats
from perfagent.sandbox.run import Limits
from perfagent.sandbox.testrun import run_pytest
from perfagent.sandbox.tree import snapshot

RECOUNTS = 2  # runs of the unmodified code's tests when a candidate's had more tasks at once (Judge._recount)


def candidate_limits(limits: Limits, baseline_seconds: float, floor_s: float) -> Limits:
    """Candidates get a generous multiple of the baseline's time, then are killed."""
    return replace(limits, timeout_s=max(floor_s, 10 * baseline_seconds))


def compare_inputs(expected: dict[str, object], actual: dict[str, object]) -> Comparison:
    """The first difference between two runs' results, input by input; one on the perturbed input says so."""
    for name, value in expected.items():
        comparison = compare_results(value, actual[name])
        if not comparison.equal:
            return comparison if name == OWN_INPUT else Comparison(False, f"on the {name}: {comparison.detail}")
    return Comparison(True, "")


@dataclass(frozen=True)
class Verdict:
    """A candidate's verdict, made once by the Judge (or by the loop, for a candidate never judged) and recorded as
    made; what the round does with it afterwards is the candidate's record (loop/candidate.py)."""
    reason: str
    detail: str = ""
    tests_run: list[str] = field(default_factory=list)
    tests_failed: list[str] = field(default_factory=list)
    result_check: str = ""
    speed: SpeedStats | None = None
    samples: dict | None = None  # timing values (seconds per call, wall and CPU) of baseline and candidate
    timing_s: float | None = None  # wall seconds the speed decision took
    behaviour: list[dict] = field(default_factory=list)  # unsafe behaviour: what the candidate's code did, new
    memory: dict | None = None  # peak memory per call, baseline and candidate (loop/memory.py; flat: numbers, None)
    also_checked: str = ""  # what the result check compared besides the workload's result: calls, unseen inputs
    unseen: list[dict] = field(default_factory=list)  # the speedup on inputs it has not seen (loop/unseen.py)

    @property
    def accepted(self) -> bool:
        return self.reason == ACCEPTED

    def as_dict(self) -> dict:
        data = asdict(self)
        data["speed"] = self.speed.as_dict() if self.speed else None
        return data


@dataclass
class Checked:
    """A candidate that passed every check but the timing."""
    tests_run: list[str]  # the baseline-passing tests it passes too
    result_check: str  # IDENTICAL, or NOT_COMPARED
    memory: dict | None = None  # objective time: its peak memory against the baseline's, within max-memory-growth
    also_checked: str = ""  # besides the workload's result: the calls where the work happens, unseen inputs


@dataclass(frozen=True)
class Reference:
    """What a candidate is judged against: the current branch head's state, as measured. Frozen copies: what a later
    run finds (the tests a candidate's edit selects) makes a new Reference (with_tests), passed on explicitly, so a
    value once given to a check never changes under it."""
    worktree: Path
    passing_tests: frozenset[str]  # stable passes at baseline
    results: Mapping[str, object]  # per input: OWN_INPUT, and PERTURBED_INPUT when the workload has one
    seconds: float  # one workload run at baseline
    test_seconds: Mapping[str, float]  # test file (or --tests target) -> seconds of its baseline run
    writes: frozenset[str]  # files the baseline's tests and workload runs left in the repository
    excluded_tests: frozenset[str] = frozenset()  # flaky or failing at baseline: deselected, never run
    behaviour: frozenset[Event] = frozenset()  # what the baseline's runs did (sandbox/behaviour.py)
    memory: Mapping | None = None  # the unmodified code's peak memory per call (loop/memory.py); None for a command
    digests: tuple[str, ...] = ()  # of its results on its own input, call by call in one process (integrity.Expected)

    def __post_init__(self):
        for name in ("passing_tests", "writes", "excluded_tests", "behaviour"):
            object.__setattr__(self, name, frozenset(getattr(self, name)))
        for name in ("results", "test_seconds", "memory"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))
        object.__setattr__(self, "digests", tuple(self.digests))

    def with_tests(self, passing: set[str], seconds: dict[str, float], excluded: set[str],
                   behaviour: set[Event]) -> "Reference":
        """This reference with the baseline's test runs as they now are (a TestPlan's, after it selected more),
        their behaviour added to what the workload's runs did."""
        return replace(self, passing_tests=passing, test_seconds=seconds, excluded_tests=excluded,
                       behaviour=self.behaviour | behaviour)


@dataclass
class Judge:
    runner: WorkloadRunner  # with the candidates' limits
    python: str
    tmp: Path
    sampling: Sampling
    ladder: tuple[int, ...]  # loop counts of the value lengths timing may use, shortest first (value_ladder)
    workload_path: str | None  # repository-relative, when the workload lives in the repository
    timeout_floor_s: float
    max_memory_growth: float  # objective time: the largest peak memory per call, times the baseline's
    allowed_edits: list[str] = field(default_factory=list)
    submodules: tuple[str, ...] = ()  # paths of the repository's submodules
    compare_output: bool = True  # False: a command workload's stdout is not compared, only its exit status counts
    allowed_behaviour: list[str] = field(default_factory=list)  # allow-behaviour: KIND or KIND:GLOB
    objective: str = "time"  # or "memory": what a candidate must lower (loop/memory.py)
    floors: dict = field(default_factory=dict)  # A/A spreads of the baseline's time outside calls and run CPU
    allow_cross_call_caching: bool = False  # a gain first calls do not show is accepted, and said to be carried
    inputs: Inputs = field(default_factory=Inputs)  # the variants of setup() kept on the unmodified code
    reference_calls: dict = field(default_factory=dict, repr=False)  # targets -> the unmodified code's call records

    def gain(self, verdict: Verdict) -> tuple[float, float, float]:
        """An accepted verdict's gain in the objective, as (estimate, 95% low, 95% high), larger is better: the
        speedup, or with objective memory how many times smaller the peak is."""
        if self.objective == "memory":
            m = verdict.memory
            return 1 / m["growth"], 1 / m["growth_ci_high"], 1 / m["growth_ci_low"]
        return verdict.speed.speedup, verdict.speed.ci_low, verdict.speed.ci_high

    def test_limits(self, ref: "Reference", tests: list[str]) -> Limits:
        return candidate_limits(self.runner.limits, sum(ref.test_seconds.get(t, 0.0) for t in tests),
                                self.timeout_floor_s)

    def static_checks(self, before: dict[str, str], after: dict[str, str]) -> Verdict | None:
        """Reject on the diff alone: protected files, benchmark-gaming code, syntax errors."""
        for path in after:
            why = protected_reason(path, self.workload_path, self.allowed_edits, self.submodules)
            if why:
                return Verdict(PROTECTED_FILE, f"{path} is {why}")
        for path, text in after.items():
            added = "\n".join(line[1:] for line in difflib.unified_diff(
                before.get(path, "").splitlines(), text.splitlines(), lineterm="", n=0)
                if line.startswith("+") and not line.startswith("+++"))
            why = suspicious_reason(added, PurePosixPath(self.workload_path).name if self.workload_path else None)
            if why:
                return Verdict(SUSPICIOUS_CODE, f"{path}: {why}")
            why = unsafe_reason(added, path)
            if why:
                return Verdict(UNSAFE_CODE, f"{path}: {why}")
            if path.endswith(".py"):
                try:
                    compile(text, path, "exec", dont_inherit=True)
                except SyntaxError as exc:
                    return Verdict(SYNTAX_ERROR, f"{path}:{exc.lineno}: {exc.msg}")
        return None

    def _unsafe(self, candidate: Path, ref: Reference, behaviour: set[Event], checked: list[str],
                result_check: str = "") -> Verdict | None:
        """Reject what the candidate's runs did that the baseline's never did: the audit hook sees it even when the
        sandbox made it fail, and the code would do it for real once merged."""
        from perfagent.sandbox.behaviour import allow_hint

        baseline = ref.behaviour | self.runner.behaviour(ref.worktree)
        fresh = new_behaviour(behaviour | self.runner.behaviour(candidate), baseline, self.allowed_behaviour)
        if not fresh:
            return None
        more = f" (and {len(fresh) - 1} more: {'; '.join(e.describe() for e in fresh[1:4])})" if len(fresh) > 1 else ""
        hint = allow_hint(fresh[0])
        return Verdict(UNSAFE_BEHAVIOUR, f"{fresh[0].describe()}{more}; the unmodified code never does this"
                       f"{f' ({hint})' if hint else ''}", checked,
                       result_check=result_check, behaviour=[e.as_dict() for e in fresh])

    @staticmethod
    def _untrustworthy(exc: ResultDrift | TimingTampered | FilesWritten, checked: "Checked") -> Verdict:
        """A timing or memory run whose account the parent cannot accept: a call returned something other than the
        checked result, the run's marks do not hold up, or it left files for the next run."""
        if isinstance(exc, ResultDrift):
            return Verdict(RESULT_CHANGED, str(exc), checked.tests_run, result_check=str(exc))
        reason = TIMING_TAMPERED if isinstance(exc, TimingTampered) else SUSPICIOUS_CODE
        return Verdict(reason, str(exc), checked.tests_run, result_check=checked.result_check)

    def _run_failed(self, candidate: Path, ref: Reference, exc: WorkloadFailed, checked: list[str],
                    result_check: str = "") -> Verdict:
        """A workload run that failed: unsafe behaviour when it did something new (the sandbox may be why it
        failed), else the failure itself."""
        return (self._unsafe(candidate, ref, set(), checked, result_check)
                or Verdict(WORKLOAD_FAILED, str(exc), checked, result_check=result_check))

    def _tests(self, candidate: Path, ref: Reference, tests: list[str]) -> tuple[list[str], Verdict | None]:
        """Run the selected tests in order, stopping at the first failure; (the baseline-passing tests checked, a
        rejection or None). Tests that fail only the way the unmodified code fails them under the very same command
        (_shared_failures) are no evidence: they are left out and the run is made once more without them."""
        checked = sorted(t for t in ref.passing_tests if any(t.startswith(s) for s in tests))
        if not tests:
            return checked, None
        tmp = self.tmp / candidate.name
        tmp.mkdir(parents=True, exist_ok=True)
        deselect = set(ref.excluded_tests)
        while True:
            run = run_pytest(candidate, tests, python=self.python, tmp=tmp, limits=self.test_limits(ref, tests),
                             exitfirst=True, deselect=deselect, canary=True)
            unsafe = self._unsafe(candidate, ref, set(run.process.behaviour), checked)
            if unsafe and all(e["count"] is not None for e in unsafe.behaviour):
                unsafe = self._recount(candidate, ref, tests, set(run.process.behaviour), checked)
            if unsafe:
                return checked, unsafe
            if run.tampered:  # its outcomes cannot be believed, the failures it reports aside
                return checked, Verdict(TESTS_TAMPERED, f"{run.tampered}\n{run.process.tail(15)}", checked)
            failed = [t for t in checked if run.outcomes.get(t) in ("failed", "error")]
            broken = [t for t in run.failing() if t.startswith("<")]  # collection errors, pytest itself
            cut = run.cut_short()
            shared = set() if cut or broken or not failed or deselect != set(ref.excluded_tests) else \
                self._shared_failures(ref, tests, deselect, failed)
            if not shared:
                break
            deselect |= shared
            checked = [t for t in checked if t not in shared]
        if cut:
            detail = f"the test run {cut}"
        elif failed or broken:
            detail = (f"{formats.plural(len(failed) + len(broken), 'test')} failed (the run stops at the first "
                      f"failure): {', '.join((broken + failed)[:5])}")
        elif any(run.outcomes.get(t) != "passed" for t in checked):  # skipped now, or never ran
            lost = [t for t in checked if run.outcomes.get(t) != "passed"]
            failed, detail = lost, (f"{len(lost)} of {formats.plural(len(checked), 'test')} no longer pass (skipped "
                                    f"or not run): "
                                    f"{', '.join(lost[:5])}")
        else:
            return checked, None
        return checked, Verdict(TESTS_FAILED, f"{detail}\n{run.process.tail(15)}", checked, broken + failed)

    def _shared_failures(self, ref: Reference, tests: list[str], deselect: set[str], failed: list[str]) -> set[str]:
        """The tests that fail when the unmodified code runs the candidate's test command (all of it, not stopping
        at a failure), when they include every test the candidate failed; else none. The baseline ran the tests
        otherwise (each file alone, then together, without deselected tests), and a repository's tests can depend on
        their order: astropy 5.1's warn about an expired leap-second file in whichever test first needs it, which is
        another one once a failing one is deselected. Such a test guards nothing in this command."""
        again = run_pytest(ref.worktree, tests, python=self.python, tmp=self.tmp / "shared-failures",
                           limits=self.test_limits(ref, tests), deselect=deselect, canary=True)
        failing = set(again.failing())
        return failing if set(failed) <= failing else set()

    def _recount(self, candidate: Path, ref: Reference, tests: list[str], behaviour: set[Event],
                 checked: list[str]) -> Verdict | None:
        """The candidate's test run had more tasks alive at once than any baseline run of the tests, and did nothing
        else new. How many threads overlap depends on the machine's load (a thread that has ended may not be reaped
        yet), and the baseline's runs were few and ran the tests otherwise (each file alone, then all of them, without
        deselected tests or the canary): the unmodified code runs the candidate's very test command again, up to
        RECOUNTS times, and a count it reaches too is no evidence. One above all of them still is."""
        counted: set[Event] = set()
        unsafe = None
        for _ in range(RECOUNTS):
            again = run_pytest(ref.worktree, tests, python=self.python, tmp=self.tmp / "recount",
                               limits=self.test_limits(ref, tests), exitfirst=True, deselect=ref.excluded_tests,
                               canary=True)
            counted |= {e for e in again.process.behaviour if e.count is not None}
            unsafe = self._unsafe(candidate, replace(ref, behaviour=ref.behaviour | counted), behaviour, checked)
            if unsafe is None:
                return None
        return unsafe

    def judge(self, candidate: Path, ref: Reference, tests: list[str],
              progress: Callable[..., None] = lambda step, stats=None: None, targets: tuple[str, ...] = ()) -> Verdict:
        """`progress` is told each check's outcome as it is measured: (text), and (text, SpeedStats) at each look of
        the timing; `targets` are the functions whose calls are recorded and compared (see check)."""
        checked = self.check(candidate, ref, tests, progress, targets)
        return checked if isinstance(checked, Verdict) else self.time(candidate, ref, checked, progress)

    def check(self, candidate: Path, ref: Reference, tests: list[str],
              progress: Callable[..., None] = lambda step, stats=None: None,
              targets: tuple[str, ...] = ()) -> "Verdict | Checked":
        """Every check but the timing, cheapest first: a rejection, or what the timing's verdict builds on. The calls
        to `targets` ("module:qualname": the hot functions and those the candidate edits) are recorded in its result
        run and held to the unmodified code's."""
        before = snapshot(candidate, keep=ref.writes)
        checked, rejection = self._tests(candidate, ref, tests)
        if rejection:
            return rejection
        progress(f"tests: {len(checked)} of {len(checked)} pass")
        try:
            results, _ = self.runner.results(candidate, ref.results if self.compare_output else None, targets)
        except WorkloadFailed as exc:
            return self._run_failed(candidate, ref, exc, checked)
        if targets:  # the unmodified code's run with the same recorder, which imports the targets' modules: what
            self._reference_calls(ref, targets)  # that import does is no candidate's doing (a workload may not)
        unsafe = self._unsafe(candidate, ref, set(), checked)
        if unsafe:
            return unsafe
        changed = before.changes(snapshot(candidate))
        before.restore(changed & ref.writes)  # what the unmodified code's runs write too carries nothing further
        written = sorted(changed - ref.writes)
        if written:
            return Verdict(SUSPICIOUS_CODE, str(FilesWritten(written)), checked)
        self.runner.watch(candidate, ref.writes)  # every later run on it, each timing value's included
        held = self._results_hold(candidate, ref, results, targets, checked)
        if isinstance(held, Verdict):
            return held
        result_check = IDENTICAL if self.compare_output else NOT_COMPARED
        progress(f"result: {result_check}" + (f"; {held}" if held else ""))
        memory = self._memory(candidate, ref, checked, result_check, progress)
        return memory if isinstance(memory, Verdict) else Checked(checked, result_check, memory, held)

    def _results_hold(self, candidate: Path, ref: Reference, results: dict, targets: tuple[str, ...],
                      checked: list[str]) -> "Verdict | str":
        """The candidate's results against the unmodified code's, cheapest first: the workload's own on each input,
        the calls to `targets` (recorder.py: where the work happens, when the workload returns None), then on the
        inputs it has not seen (loop/unseen.py). A rejection, or what was compared besides the workload's result."""
        if self.compare_output:
            comparison = compare_inputs(ref.results, results)
            if not comparison.equal:
                return Verdict(RESULT_CHANGED, comparison.detail, checked, result_check=comparison.detail)
        also = []
        if targets:
            calls = compare_calls(self._reference_calls(ref, targets), self.runner.recorded.get(candidate.resolve(), {}))
            if not calls.equal:
                return Verdict(RESULT_CHANGED, calls.detail, checked, result_check=calls.detail)
            also.append(f"calls: {calls.summary()}")
        for unseen in self.inputs.kept:
            try:
                comparison = unseen.check(candidate, targets)
            except WorkloadFailed as exc:
                return self._run_failed(candidate, ref, exc, checked, f"on the input of {unseen.describe()}")
            if not comparison.equal:
                return Verdict(RESULT_CHANGED, comparison.detail, checked, result_check=comparison.detail)
        if self.inputs.kept:
            also.append(f"unseen inputs: {len(self.inputs.kept)} (variants of setup())")
        return "; ".join(also)

    def _reference_calls(self, ref: Reference, targets: tuple[str, ...]) -> dict:
        """The unmodified code's recorded calls to `targets` (one result run per set of targets, kept)."""
        key = tuple(sorted(targets))
        if key not in self.reference_calls:
            self.runner.result(ref.worktree, record=key)
            self.reference_calls[key] = self.runner.recorded.get(ref.worktree.resolve(), {})
        return self.reference_calls[key]

    def _memory(self, candidate: Path, ref: Reference, checked: list[str], result_check: str,
                progress: Callable[..., None]) -> "Verdict | dict | None":
        """Objective time: one run measuring the candidate's peak memory per call; a rejection when it exceeds
        max-memory-growth times the unmodified code's, else the verdict's memory record (None: not measured)."""
        if self.objective != "time" or not ref.memory:
            return None
        try:
            measured = self.runner.memory(candidate, self._expected(candidate, ref))
        except WorkloadFailed as exc:
            return self._run_failed(candidate, ref, exc, checked, result_check)
        except (ResultDrift, TimingTampered, FilesWritten) as exc:
            return self._untrustworthy(exc, Checked(checked, result_check))
        unsafe = self._unsafe(candidate, ref, set(), checked, result_check)
        if unsafe:
            return unsafe
        record = memory_record(ref.memory, measured)
        progress(f"memory: peak {mib(measured.peak)} per call, {record['growth']:.2f}x the baseline's")
        too_much = too_much_memory(record, self.max_memory_growth)
        if too_much:
            return Verdict(USES_TOO_MUCH_MEMORY, too_much, checked, result_check=result_check, memory=record)
        return record

    def time(self, candidate: Path, ref: Reference, checked: "Checked",
             progress: Callable[..., None] = lambda step, stats=None: None) -> Verdict:
        """The speed decision against the reference, for a candidate that passed `check` (objective memory: the
        memory decision, then time's)."""
        if self.objective == "memory":
            return self._lower_memory(candidate, ref, checked, progress)
        started, expect = time.perf_counter(), self._expected(candidate, ref)
        try:
            timed = compare_speed(lambda loops: self.runner.sample(ref.worktree, loops),
                                  lambda loops: self.runner.sample(candidate, loops, expect),
                                  self.sampling, self._timing_progress(progress), self.ladder)
        except WorkloadFailed as exc:
            return self._run_failed(candidate, ref, exc, checked.tests_run, checked.result_check)
        except (ResultDrift, TimingTampered, FilesWritten) as exc:
            return self._untrustworthy(exc, checked)
        return self._speed_verdict(candidate, ref, checked, timed, time.perf_counter() - started)

    def time_round(self, ref: Reference, survivors: list[tuple[Path, Checked]],
                   progress: list[Callable[..., None]]) -> list[Verdict]:
        """The speed decisions of several candidates of one round, timed in one rotation against the reference
        (objective time; objective memory, or a workload failing in the rotation: one after the other)."""
        if self.objective == "memory" or len(survivors) == 1:
            return [self.time(tree, ref, checked, p) for (tree, checked), p in zip(survivors, progress)]
        started = time.perf_counter()
        samplers = [lambda loops, tree=tree, expect=self._expected(tree, ref): self.runner.sample(tree, loops, expect)
                    for tree, _ in survivors]
        try:
            timed = compare_rotation(lambda loops: self.runner.sample(ref.worktree, loops), samplers,
                                     self.sampling, lambda i, s: self._timing_progress(progress[i])(s), self.ladder)
        except (WorkloadFailed, ResultDrift, TimingTampered, FilesWritten):  # whose it was: each timed alone shows
            return [self.time(tree, ref, checked, p) for (tree, checked), p in zip(survivors, progress)]
        seconds = time.perf_counter() - started
        return [self._speed_verdict(tree, ref, checked, result, seconds)
                for (tree, checked), result in zip(survivors, timed)]

    def _speed_verdict(self, candidate: Path, ref: Reference, checked: Checked, timed: tuple,
                       seconds: float) -> Verdict:
        """The verdict on a timed candidate: `timed` is (decision, baseline values, candidate values)."""
        (speed, base, cand), tests_run, result_check = timed, checked.tests_run, checked.result_check
        unseen: list[dict] = []
        try:
            if speed.decision == FASTER:
                self._settle_first_calls(candidate, ref, base, cand)
            reason, detail = self._speed_reason(speed, base, cand)
            if reason == ACCEPTED:
                unseen, why = self._speed_unseen(candidate, ref, base, cand)
                reason, detail = (ONLY_ON_BENCHMARK_INPUT, f"{why}; timing: {detail}") if why else (reason, detail)
        except (WorkloadFailed, ResultDrift, TimingTampered, FilesWritten) as exc:
            return self._run_failed(candidate, ref, exc, tests_run, result_check) \
                if isinstance(exc, WorkloadFailed) else self._untrustworthy(exc, checked)
        unsafe = self._unsafe(candidate, ref, set(), tests_run, result_check)  # the timing runs ran more calls
        if unsafe:
            return unsafe
        return Verdict(reason, detail, tests_run, result_check=result_check, speed=speed,
                       samples=samples_record(base, cand), timing_s=seconds, memory=checked.memory,
                       also_checked=checked.also_checked, unseen=unseen)

    def _speed_unseen(self, candidate: Path, ref: Reference, base: list, cand: list) -> tuple[list[dict], str | None]:
        """The speedup on each kept variant of setup() (loop/unseen.py), through the sequential rule with no minimum
        effect, i.e. any significant gain: (their records, and why the gain does not hold, or None). Every variant,
        not one: each changes other literals (numbers, strings), and a fast path keyed on one literal is faster on
        a variant that leaves it alone. The variants' values are as long as the decision's (`base` and `cand`),
        whose spread they share: the same work of the same size on the same code, so it is pooled in and an honest
        gain decides at the first look (3 pairs) where the variant's own spread would take 5 to 8."""
        loops = cand[-1].calls
        pool = tuple(float(np.log(b / c)) for b, c in zip(walls(base), walls(cand)))
        sampling = replace(self.sampling, min_effect=0.0, pool=pool)
        records = []
        for unseen in self.inputs.kept:
            expect = unseen.runner.expected(candidate, unseen.runner.sequence(ref.worktree))
            speed, _, _ = compare_speed(lambda loops: unseen.runner.sample(ref.worktree, loops),
                                        lambda loops: unseen.runner.sample(candidate, loops, expect),
                                        sampling, None, (loops,))
            records.append({"variant": unseen.variant.name, "changes": unseen.variant.describe(),
                            "speed": speed.as_dict()})
            if speed.decision != FASTER:
                return records, f"on the input of {unseen.describe()}: {speed.describe()}, no significant gain"
        return records, None

    def _settle_first_calls(self, candidate: Path, ref: Reference, base: list, cand: list) -> None:
        """More pairs of the decision's values (appended to `base` and `cand`), ABBA, while their first calls lean
        towards a gain carried across calls without showing it (generality.undecided)."""
        expect, loops = self._expected(candidate, ref), cand[-1].calls
        while undecided(base, cand):
            for side in (("base", "cand") if len(base) % 2 == 0 else ("cand", "base")):
                if side == "base":
                    base.append(self.runner.sample(ref.worktree, loops))
                else:
                    cand.append(self.runner.sample(candidate, loops, expect))

    def _speed_reason(self, speed: SpeedStats, base: list, cand: list) -> tuple[str, str]:
        """The speed decision's reason and detail, unless what the kernel saw (integrity.py) or the first calls
        (generality.py) tell against it."""
        timing = f"timing: {speed.describe()}"
        tampered = clock_tampered(base, cand)
        if tampered:
            return TIMING_TAMPERED, f"{tampered}; {timing}"
        if speed.decision == NOT_FASTER:
            return NOT_FASTER_REASON, speed.describe()
        if speed.decision != FASTER:
            return TOO_NOISY, (f"{speed.describe()}; could not resolve a {self.sampling.min_effect:.0%} effect in "
                               f"{formats.plural(self.sampling.max_samples, 'pair')}")
        moved = work_moved(base, cand, self.floors)
        if moved:
            return WORK_MOVED, f"{moved}; {timing}"
        carried = carried_across_calls(base, cand)
        if carried and not self.allow_cross_call_caching:
            return CARRIED_ACROSS_CALLS, f"{carried}; {timing}"
        return ACCEPTED, speed.describe() + (f"; carried across calls, as allowed: {carried.split(' (allow')[0]}"
                                             if carried else "")

    def _expected(self, candidate: Path, ref: Reference) -> Expected:
        """What the candidate's later calls must return: the result its check accepted (measure/integrity.py)."""
        return self.runner.expected(candidate, ref.digests)

    def _timing_progress(self, progress: Callable[..., None]) -> Callable[[SpeedStats], None]:
        return lambda s: progress(f"timing: {formats.interval(s.as_dict())} after "
                                  f"{formats.plural(s.n_base, 'pair')}, {formats.p_value(s.p_value)}: {s.decision}", s)

    def _lower_memory(self, candidate: Path, ref: Reference, checked: Checked,
                      progress: Callable[..., None]) -> Verdict:
        """Objective memory: a peak lower by min-effect (ABBA pairs, the sequential rule), then time not worse by
        more than min-effect (its non-inferiority test); each undecided within max-samples is too noisy."""
        tests_run, result_check = checked.tests_run, checked.result_check
        started, speed, samples, expect = time.perf_counter(), None, {}, self._expected(candidate, ref)
        try:
            memory, record, samples = compare_memory(
                self.runner, ref.worktree, (candidate, expect), self.sampling,
                lambda s: progress(f"memory: {1 / s.speedup:.2f}x the baseline's after "
                                   f"{formats.plural(s.n_base, 'pair')}: {s.decision}"))
            if memory.decision == FASTER:
                speed, base, cand = time_not_worse(lambda loops: self.runner.sample(ref.worktree, loops),
                                                   lambda loops: self.runner.sample(candidate, loops, expect),
                                                   self.sampling, self._timing_progress(progress), self.ladder)
                samples.update(samples_record(base, cand))
        except WorkloadFailed as exc:
            return self._run_failed(candidate, ref, exc, tests_run, result_check)
        except (ResultDrift, TimingTampered, FilesWritten) as exc:
            return self._untrustworthy(exc, checked)
        unsafe = self._unsafe(candidate, ref, set(), tests_run, result_check)
        if unsafe:
            return unsafe
        reason, detail = self._memory_reason(memory, speed), describe_memory(record)
        if speed is not None:
            detail += f"; time {speed.describe()}, {speed.decision} (limit {1 / (1 + self.sampling.min_effect):.3f}x)"
        return Verdict(reason, detail, tests_run, result_check=result_check, speed=speed, samples=samples,
                       timing_s=time.perf_counter() - started, memory=record)

    @staticmethod
    def _memory_reason(memory: SpeedStats, speed: SpeedStats | None) -> str:
        if speed is None:
            return NO_LESS_MEMORY if memory.decision == NOT_FASTER else TOO_NOISY
        return {NOT_SLOWER: ACCEPTED, SLOWER: SLOWER_REASON}.get(speed.decision, TOO_NOISY)
