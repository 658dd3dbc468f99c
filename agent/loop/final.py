"""The last phase of a run with commits: the branch against the original code, profiled, and timed unless one commit on
the original is the whole branch, whose own comparison already timed exactly that (same code on both sides)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from perfagent.localize.hotspots import Profile
from perfagent.loop.baseline import Baseline
from perfagent.loop.candidate import CandidateRecord
from perfagent.loop.context import RunContext
from perfagent.loop.focus import profile
from perfagent.loop.memory import compare_memory, memory_record
from perfagent.measure.stats import Sampling, SpeedStats, compare_speed, samples_record
from perfagent.sandbox import gitsafe
from perfagent.sandbox.workspace import head

FINAL_PAIRS = 10  # at most: its interval, not a decision, is what the final measurement is for


def final_measurement(ctx: RunContext, baseline: Baseline, branch: Path, base_commit: str,
                      kept: list[CandidateRecord]) -> tuple[dict, Profile]:
    """(the final record, the profile after); `kept` are the candidates whose commits are on the branch."""
    after = profile(ctx.env, branch, baseline.runner, ctx.settings)
    only = kept[0] if len(kept) == 1 else None
    parent = gitsafe.git(branch, "rev-parse", f"{only.commit}^").strip() if only else None
    if only and only.commit == head(branch) and parent == base_commit:
        ctx.notify.note(f"the final code is candidate {only.n} on the original: its comparison is the final "
                        f"measurement")
        verdict = only.verdict
        return {"speed": verdict.speed.as_dict(), "samples": verdict.samples, "accepted": 1, "memory": verdict.memory,
                "from_candidate": only.n}, after
    ctx.notify.note("measuring the final code against the original")
    runner = baseline.runner

    def progress(stats: SpeedStats) -> None:
        ctx.notify.progress("final", "final code: timing", stats.n_base, FINAL_PAIRS, f"{stats.speedup:.2f}x")

    sampling = replace(baseline.sampling, min_effect=0.0, max_samples=FINAL_PAIRS)
    with ctx.env.scratch(base_commit) as original:
        ctx.env.rebuild(original)
        speed, base, final = compare_speed(lambda loops: runner.sample(original, loops),
                                           lambda loops: runner.sample(branch, loops), sampling, progress,
                                           baseline.ladder)
        memory = _memory(ctx, baseline, (original, branch), sampling)
    ctx.notify.progress("final", "final code: timing", speed.n_base, speed.n_base)
    return {"speed": speed.as_dict(), "samples": samples_record(base, final), "accepted": len(kept),
            "memory": memory}, after


def _memory(ctx: RunContext, baseline: Baseline, trees: tuple[Path, Path], sampling: Sampling) -> dict | None:
    """The branch's peak memory per call against the original's: compared in pairs when memory is the objective,
    else one measurement against the baseline's (None for a command workload)."""
    if baseline.reference.memory is None:
        return None
    if ctx.settings.objective == "memory":
        return compare_memory(baseline.runner, *trees, sampling, lambda stats: None)[1]
    return memory_record(baseline.reference.memory, baseline.runner.memory(trees[1]))
