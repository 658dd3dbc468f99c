"""Memory in the verdict: a candidate's peak memory per workload call against the unmodified code's.

With objective time, memory is a limit: one measurement of the candidate after its result check, rejected when its
peak exceeds max-memory-growth times the baseline's. With objective memory, it is the goal: baseline and candidate
values in ABBA pairs through the same sequential rule as time ("faster" there means a peak lower by min-effect), and
time becomes the limit, through a non-inferiority test on the same rule."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from perfagent.measure.integrity import Expected
from perfagent.measure.stats import FASTER, NOT_FASTER, Sampling, SpeedStats, Timing, compare_speed
from perfagent.measure.workload import Memory, WorkloadRunner
from perfagent import formats

SLACK_BYTES = 1 << 20  # growth under 1 MiB never counts: interpreter noise, and tiny baselines
# the least spread of log memory ratios assumed: peaks are often exactly equal pair after pair, and zero spread would
# let 3 pairs decide any difference; 1% keeps an effect near min-effect to more pairs, as on a quiet machine
MEMORY_NOISE_FLOOR = 0.01
NOT_SLOWER, SLOWER = "not slower", "slower"  # the non-inferiority test's decisions, as recorded


def mib(size: float) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def baseline_memory(measured: Memory | None) -> dict | None:
    """The unmodified code's figures, as cached and recorded (None for a command workload)."""
    return None if measured is None else {"peak_bytes": measured.peak, "rss_peak_bytes": measured.rss}


def memory_record(baseline: dict, candidate: Memory) -> dict:
    """A verdict's memory figures: bytes per call, growth = candidate / baseline peak (flat, numbers or None)."""
    base = baseline["peak_bytes"]
    return {"baseline_peak_bytes": base, "candidate_peak_bytes": candidate.peak,
            "growth": candidate.peak / max(base, 1), "rss_baseline_bytes": baseline["rss_peak_bytes"],
            "rss_candidate_bytes": candidate.rss}


def too_much_memory(record: dict, limit: float) -> str | None:
    """Why a candidate's peak is too large (beyond `limit` times the baseline's, by SLACK_BYTES at least), or None."""
    base, cand = record["baseline_peak_bytes"], record["candidate_peak_bytes"]
    if cand <= limit * base or cand - base < SLACK_BYTES:
        return None
    return (f"peak {mib(cand)} per call, {record['growth']:.2f}x the baseline's {mib(base)} "
            f"(max-memory-growth {limit:g})")


def _median(values: list) -> int | None:
    return None if not values or None in values else int(np.median(values))


def compare_memory(runner: WorkloadRunner, reference: Path, candidate: tuple[Path, Expected], sampling: Sampling,
                   progress: Callable[[SpeedStats], None]) -> tuple[SpeedStats, dict, dict]:
    """Objective memory: peaks of the reference and candidate worktrees in ABBA pairs, each from a fresh process, until
    `sampling`'s rule decides; a peak lower by less than SLACK_BYTES is "not faster" all the same. `candidate` is its
    worktree and what its calls must return. Returns the decision, the verdict's memory record and the peaks of each
    side."""
    peaks: dict[str, list] = {"baseline": [], "candidate": [], "rss_baseline": [], "rss_candidate": []}

    def taker(tree: Path, side: str, expect: Expected | None = None) -> Callable[[int], float]:
        def take(_loops: int) -> float:
            measured = runner.memory(tree, expect)
            peaks[side].append(measured.peak)
            peaks[f"rss_{side}"].append(measured.rss)
            return float(max(measured.peak, 1))  # a ratio of peaks: never 0
        return take

    tree, expect = candidate
    stats, _, _ = compare_speed(taker(reference, "baseline"), taker(tree, "candidate", expect),
                                replace(sampling, warmup=0, noise_floor=MEMORY_NOISE_FLOOR), progress)
    base, cand = _median(peaks["baseline"]), _median(peaks["candidate"])
    if stats.decision == FASTER and base - cand < SLACK_BYTES:
        stats = replace(stats, decision=NOT_FASTER)
    record = {"baseline_peak_bytes": base, "candidate_peak_bytes": cand, "growth": cand / max(base, 1),
              "rss_baseline_bytes": _median(peaks["rss_baseline"]),
              "rss_candidate_bytes": _median(peaks["rss_candidate"]),
              "growth_ci_low": 1 / stats.ci_high, "growth_ci_high": 1 / stats.ci_low, "p_value": stats.p_value,
              "pairs": stats.n_base}
    return stats, record, {"memory_baseline": peaks["baseline"], "memory_candidate": peaks["candidate"]}


def describe_memory(record: dict) -> str:
    text = f"peak {mib(record['candidate_peak_bytes'])} per call, {record['growth']:.2f}x the baseline's " \
           f"{mib(record['baseline_peak_bytes'])}"
    if "pairs" in record:
        text += (f" [{record['growth_ci_low']:.3f}, {record['growth_ci_high']:.3f}] (95% CI), "
                 f"{formats.p_value(record['p_value'])}, {formats.plural(record['pairs'], 'pair')}")
    return text


def _scaled(value: Timing | float, factor: float) -> Timing | float:
    return value._replace(wall=value.wall * factor, cpu=value.cpu * factor) if isinstance(value, Timing) \
        else value * factor


def _unscaled(stats: SpeedStats, margin: float) -> SpeedStats:
    decision = {FASTER: NOT_SLOWER, NOT_FASTER: SLOWER}.get(stats.decision, stats.decision)
    return replace(stats, speedup=stats.speedup / margin, ci_low=stats.ci_low / margin,
                   ci_high=stats.ci_high / margin, cand_median=stats.cand_median * margin, decision=decision)


def time_not_worse(sample_base: Callable[[int], Timing], sample_cand: Callable[[int], Timing], sampling: Sampling,
                   progress: Callable[[SpeedStats], None], ladder: tuple[int, ...]) -> tuple[SpeedStats, list, list]:
    """Objective memory's time check, a non-inferiority test: is the speedup's interval at or above
    1 / (1 + min-effect)? That is the sequential rule's "faster" with a minimum effect of 0 on candidate times scaled
    by 1 / (1 + min-effect), with the same false-acceptance guarantee. Stats and values come back unscaled, decided
    NOT_SLOWER, SLOWER or undecided."""
    margin = 1 + sampling.min_effect
    stats, base, cand = compare_speed(sample_base, lambda loops: _scaled(sample_cand(loops), 1 / margin),
                                      replace(sampling, min_effect=0.0), lambda s: progress(_unscaled(s, margin)),
                                      ladder)
    return _unscaled(stats, margin), base, [_scaled(c, margin) for c in cand]
