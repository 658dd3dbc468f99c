"""The first phase of a run: the unmodified code's tests and workload, measured once (and cached per commit), become
the Reference every candidate is judged against."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from perfagent.config import ConfigError, Settings
from perfagent.events import Broadcast
from perfagent.localize.testselect import TestPlan
from perfagent.loop.environment import Environment
from perfagent.loop.memory import baseline_memory, mib
from perfagent.loop.verdict import Judge, Reference, candidate_limits, compare_inputs
from perfagent.measure.integrity import aa_spread
from perfagent.measure.load import loaded_note
from perfagent.measure.stats import Noise, Sampling, measure_noise, value_ladder, walls
from perfagent.measure.workload import Workload, WorkloadFailed, WorkloadRunner
from perfagent import formats
from perfagent.repos.cache import BaselineCache, interpreter
from perfagent.sandbox import gitsafe
from perfagent.sandbox.behaviour import from_records

NOISE_PAIRS = 10  # A/A pairs of the unmodified code at baseline, for the noise estimate
LONG_VALUE_S = 0.5  # timing values at least this long have about the noise of load.py's 1 s values


class BaselineError(RuntimeError):
    """The unmodified code does not pass its tests or run its workload: nothing can be judged against it."""


def fix_for(failed: WorkloadFailed) -> str:
    """What the user can do about the unmodified code's workload failure: raise the limit it hit, or fix the code."""
    if failed.limit == "time":
        return "Raise timeout-s if the workload needs more time."
    if failed.limit == "memory":
        return "Raise memory-mb if the workload needs more memory."
    return "Fix the workload or the code it calls" + (f": it raised {failed.exception}" if failed.exception else ".")


def _first_look(workload: Workload, seconds: float, ladder: tuple[int, ...]) -> str:
    """The baseline's first look at the workload's time (one call, before calibration), said to be that: every
    comparison times values of its own, at the machine's speed of its moment."""
    if workload.kind == "command":
        return f"one run of the workload command took {formats.seconds(seconds)}; each timing value is one run"
    return (f"one workload() call took {formats.seconds(seconds)} (a first look, not a timing value); "
            f"{formats.calls_per_value(ladder)}")


@dataclass
class Baseline:
    """What the phase measured, and the tools made from it for the phases after."""
    plan: TestPlan
    runner: WorkloadRunner  # with the baseline's limits (profiling, the final measurement)
    reference: Reference
    ladder: tuple[int, ...]  # loop counts of the timing values, shortest first
    sampling: Sampling  # the decision rule, with the baseline's noise floor
    compare_output: bool
    measured: dict  # results, seconds, loops, cold_start, noise, behaviour, memory (cached as it is)
    submodules: tuple[str, ...] = ()  # the repository's submodule paths, whose files no commit of the run can hold

    def record(self, cache_hits: int) -> dict:
        return {"workload_seconds": self.measured["seconds"], "loops": self.measured["loops"],
                "noise": self.measured["noise"], "cold_start": self.runner.cold_start, "cache_hits": cache_hits,
                "memory": self.measured["memory"]}

    def judge(self, settings: Settings, env: Environment, workload: Workload) -> Judge:
        """The judge of candidates: the baseline's protocol, with limits scaled to the baseline's time."""
        limits = candidate_limits(env.limits, self.reference.seconds * self.measured["loops"],
                                  settings.candidate_timeout_s)
        return Judge(runner=WorkloadRunner(workload, env.python, env.tmpdir("candidates"), limits),
                     python=env.python, tmp=env.tmpdir("tests"), sampling=self.sampling, ladder=self.ladder,
                     workload_path=workload.repo_relative, timeout_floor_s=settings.candidate_timeout_s,
                     allowed_edits=settings.allow_edits, compare_output=self.compare_output,
                     submodules=self.submodules,
                     allowed_behaviour=settings.allow_behaviour, objective=settings.objective,
                     max_memory_growth=settings.max_memory_growth,
                     allow_cross_call_caching=settings.allow_cross_call_caching or not settings.generality_checks,
                     floors={"outside": self.measured["noise"].get("outside_spread"),
                             "run_cpu": self.measured["noise"].get("cpu_spread")})


class BaselinePhase:
    def __init__(self, settings: Settings, env: Environment, cache: BaselineCache, notify: Broadcast):
        self.settings, self.env, self.cache, self.notify = settings, env, cache, notify

    def run(self, worktree: Path, commit: str, workload: Workload, files: list[str]) -> Baseline:
        """Measure the unmodified code at `commit` in `worktree`; `files` are the repository's tracked files."""
        if self.settings.objective == "memory" and workload.kind == "command":
            raise ConfigError("objective memory needs a workload file with setup() and workload(): perfagent cannot "
                              "see a command's allocations")
        failed = self.env.rebuild(worktree)
        if failed:
            raise BaselineError(f"the unmodified code does not build: {failed}")
        self.notify.note(f"sandbox: {self.env.limits.isolation.describe()}")
        plan = self._test_plan(worktree, commit, files)
        runner = WorkloadRunner(workload, self.env.python, self.env.tmpdir("baseline"), self.env.limits)
        compare_output = self.settings.compare_output or workload.kind != "command"
        measured = self._workload(runner, worktree, (commit, workload), compare_output)
        self._warn_cold_start(runner)
        ladder = value_ladder(measured["loops"], self.settings.sample_seconds, self.settings.short_sample_seconds)
        self.notify.note(f"baseline: {_first_look(workload, measured['seconds'], ladder)}")
        reference = Reference(worktree, plan.passing, measured["results"], measured["seconds"], plan.files,
                              self.env.written(worktree), plan.excluded, from_records(measured["behaviour"]),
                              measured["memory"], tuple(measured["digests"])).with_tests(*plan.seen())
        sampling = replace(self.settings.sampling(), noise_floor=measured["noise"]["pair_spread"])
        return Baseline(plan, runner, reference, ladder, sampling, compare_output, measured,
                        tuple(gitsafe.submodules(worktree)))

    def _test_plan(self, worktree: Path, commit: str, files: list[str]) -> TestPlan:
        s = self.settings
        plan = TestPlan(s.plan_settings(), python=s.python, tmp=self.env.tmpdir("baseline"), limits=self.env.limits,
                        cache=self.cache, notify=self.notify)
        self.notify.note("baseline: " + ("running the named tests twice" if s.tests else
                                         "finding the tests that guard the code"))
        plan.start(worktree, commit, files)
        if plan.flaky:
            self.notify.note(f"{formats.plural(len(plan.flaky), 'flaky test')} ignored for verdicts: "
                             f"{', '.join(sorted(plan.flaky)[:5])}", warning=True)
        return plan

    def _workload(self, runner: WorkloadRunner, worktree: Path, what: tuple[str, Workload],
                  compare_output: bool) -> dict:
        """The workload's result, time, loop count and A/A noise on the unmodified code, from the cache when this
        commit, interpreter and workload were measured before."""
        s, (commit, workload) = self.settings, what
        key = ("workload", commit, interpreter(s.python).fingerprint, workload.digest(), s.sample_seconds,
               NOISE_PAIRS, s.max_samples, self.env.limits.isolation.level)
        cached = self.cache.get(*key)
        if cached:
            self.notify.note("baseline workload measurements: from the cache (an earlier run on this commit took "
                             "them, at the machine's speed then; every comparison times both sides afresh)")
            runner.cold_start = tuple(cached["cold_start"]) if cached["cold_start"] else None
            if "memory" not in cached:  # cached before memory was measured: the rest still holds
                cached["memory"] = self._memory(runner, worktree)
                self.cache.put(cached, *key)
            return cached
        try:
            results, seconds = runner.results(worktree)
            same = compare_inputs(results, runner.results(worktree)[0])
            if compare_output and not same.equal:
                raise BaselineError("the workload's result differs between two runs of the unmodified code "
                                    f"({same.detail}); make it deterministic (seed random generators)")
            loops = runner.calibrate(worktree, s.sample_seconds)
            noise = self._noise(runner, worktree, loops)
        except WorkloadFailed as exc:
            raise BaselineError(f"the workload fails on the unmodified code: {exc}\n{fix_for(exc)}") from None
        memory = self._memory(runner, worktree)
        measured = {"results": results, "seconds": seconds, "loops": loops, "cold_start": runner.cold_start,
                    "noise": noise.as_dict(), "behaviour": [e.as_dict() for e in runner.behaviour(worktree)],
                    "memory": memory, "digests": runner.sequence(worktree)}
        self.cache.put(measured, *key)
        return measured

    def _memory(self, runner: WorkloadRunner, worktree: Path) -> dict | None:
        """The unmodified code's peak memory per call, measured once (loop/memory.py)."""
        try:
            memory = baseline_memory(runner.memory(worktree))
        except WorkloadFailed as exc:
            raise BaselineError(f"the workload fails on the unmodified code when its memory is measured (one call "
                                f"under tracemalloc): {exc}\n{fix_for(exc)}") from None
        if memory:
            rss = memory["rss_peak_bytes"]
            self.notify.note(f"baseline: peak memory {mib(memory['peak_bytes'])} per call (tracemalloc)"
                             + (f", RSS +{mib(rss)}" if rss is not None else ""))
        return memory

    def _warn_cold_start(self, runner: WorkloadRunner) -> None:
        if runner.cold_start:
            first, later = runner.cold_start
            self.notify.note(f"workload() takes {first * 1000:.1f} ms on its first call in a process and "
                             f"{later * 1000:.1f} ms on later ones (a cache setup() does not reset?): timing only the "
                             f"first call of each process", warning=True)

    def _noise(self, runner: WorkloadRunner, worktree: Path, loops: int) -> Noise:
        """Time the unmodified code against itself in back-to-back pairs: how small a gain can be resolved here."""
        pairs = []
        for i in range(NOISE_PAIRS):
            pairs.append((runner.sample(worktree, loops), runner.sample(worktree, loops)))
            self.notify.progress("noise", "baseline: timing noise", i + 1, NOISE_PAIRS)
        first, second = [p[0] for p in pairs], [p[1] for p in pairs]
        noise = replace(measure_noise(walls(first), walls(second), self.settings.max_samples),
                        outside_spread=aa_spread(first, second, "outside"),
                        cpu_spread=aa_spread(first, second, "run_cpu"))
        self.notify.note(f"baseline: {noise.describe()}")
        # the quiet machine's noise that load.py knows is that of values of about a second; shorter values are
        # noisier on any machine, so only the load average speaks for them
        value_s = sorted(t.wall * t.calls for t in first)[len(first) // 2]
        loaded = loaded_note(noise.pair_spread if value_s >= LONG_VALUE_S else None)
        if loaded:
            self.notify.note(loaded, warning=True)
        if noise.resolvable > 1 + self.settings.min_effect:
            self.notify.note(f"this machine is too noisy to resolve the minimum effect of "
                             f"{self.settings.min_effect:.0%} reliably: expect 'too noisy' verdicts for small gains",
                             warning=True)
        return noise
