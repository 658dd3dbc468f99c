"""Speed measurement: interleaved samples from fresh processes, and the statistical decision.

Samples come in pairs taken back to back (baseline and candidate, in ABBA order), so the machine's slow swings in
speed hit both members of a pair alike; each pair gives a log speedup log(baseline / candidate). Rules:
- "sequential" (default): decide at every look, as soon as the answer is clear. Values start short
  (`short_sample_seconds`), looks at 3, 5 and 8 pairs; still open, values of `sample_seconds` (the careful end: the
  lower quartile of about 1 s of calls), looks at 5, 10, ... 40 pairs. A look accepts when a one-sided t-test rejects
  "no difference" at the stage's nominal level AND the 95% t-interval of the geometric-mean speedup lies at or above
  1 + min_effect; it rejects as "not faster" when that interval lies below 1 + min_effect. The nominal level is the
  same at every look of a stage and is set so that, over all the stage's looks, identical code is accepted with
  chance at most the stage's share of `alpha` (sequential_level: a Pocock-type group-sequential boundary). The short
  stage spends `short_alpha`, the long one the rest, so the whole comparison keeps `alpha` (a union bound, whatever
  the choice between the stages). Under "no difference" the log speedups are symmetric about 0 (ABBA order makes
  the sides exchangeable), where the t-test is valid and, for heavy tails, conservative. Real pairs also cluster
  (a few in a row at +5%, say), and three pairs from one cluster look far tighter than the machine is: the spread
  used is never below `noise_floor`, the spread of the baseline's A/A pairs. A 2x or 0.5x effect is decided at the
  first looks on short values; a small one goes on to long values and more pairs.
- "paired" (the rule before): Wilcoxon signed-rank on the log speedups at level `alpha` and a bootstrap interval
  of the median speedup, at 10, 15, ... 40 pairs of long values.
- "mannwhitney": the two groups as independent samples; a one-sided Mann-Whitney U test, and a bootstrap interval
  of median(baseline) / median(candidate).
For the last two, a candidate is faster when the test rejects "no difference" at level `alpha` AND the whole interval
lies at or above 1 + `min_effect`, and "not faster" as soon as the interval's upper end is below 1 + `min_effect`.
Otherwise more samples are taken, up to a cap, and a still-open question is reported as too noisy.
scipy.stats is imported by the functions that use it: it takes a second or more to import, and a command that stops
at its input (a typo, a missing file) should say so at once.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, replace
from typing import Callable, NamedTuple

import numpy as np

from perfagent import formats

FASTER, NOT_FASTER, UNDECIDED = "faster", "not faster", "undecided"
CONFIDENCE = 0.95  # of the sequential rule's intervals of the speedup (the other rules take theirs as an argument)


class Timing(NamedTuple):
    """One timing value, per workload call: wall seconds, from the kernel's stamps of the harness's marks (decisions
    use these), and CPU seconds as the child counted them. For the checks of measure/integrity.py: the child's own
    clock's figure for the same calls, the run's seconds outside its calls, and the kernel's count of the whole
    run's CPU seconds, each per call (None where not measured); and for measure/generality.py, the wall seconds of
    the process's first call after setup(), and how many calls the value is made of."""
    wall: float
    cpu: float
    claimed: float | None = None
    outside: float | None = None
    run_cpu: float | None = None
    first: float | None = None
    calls: int = 1


def walls(samples) -> list[float]:
    return [s.wall if isinstance(s, Timing) else s for s in samples]


@dataclass(frozen=True)
class SpeedStats:
    speedup: float  # > 1: the candidate is faster (sequential: geometric mean of the pairs' ratios; paired: their
    # median; mannwhitney: median(baseline) / median(candidate))
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # one-sided, against "no difference": a t-test, Wilcoxon signed-rank or Mann-Whitney U
    n_base: int
    n_cand: int
    base_median: float
    cand_median: float
    base_spread: float  # interquartile range / median of the baseline samples
    decision: str

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return formats.comparison(self.as_dict())


def relative_spread(samples) -> float:
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else 0.0


def _interval(data: tuple, statistic, confidence: float, n_resamples: int, seed: int, paired: bool):
    from scipy import stats
    return stats.bootstrap(data, statistic, vectorized=True, paired=paired, confidence_level=confidence,
                           n_resamples=n_resamples, method="percentile",
                           random_state=np.random.default_rng(seed)).confidence_interval


@functools.lru_cache(maxsize=None)
def sequential_level(looks: tuple[int, ...], alpha: float, pooled_df: int = 0, draws: int = 200_000) -> float:
    """The one-sided level at which each look tests "no difference", so that over all `looks` (pair counts) the
    chance of any look rejecting it is `alpha`: the alpha-quantile of the smallest p-value across the looks, for
    Gaussian pairs under the null (a Pocock-type boundary computed by simulation; t statistics are scale-free, so
    one simulation fits any noise level). `pooled_df`: the spread also draws on that many degrees of freedom of
    another comparison of the same work (sequential_stats' `pool`). Seeded: the same looks always give the same
    level."""
    from scipy import special
    rng = np.random.default_rng(20261130)
    smallest = np.ones(draws)
    # the alpha-quantile of the smallest p-value is at most alpha (the first look alone reaches alpha that often), so
    # a p-value above 2 * alpha never decides it: only t statistics beyond that p-value's t are converted, a small
    # share of them (converting a t statistic to its p-value is most of the simulation's time)
    beyond = {n: special.stdtrit(n - 1 + pooled_df, 1 - 2 * alpha) for n in looks}
    for chunk in np.array_split(np.arange(draws), 8):
        x = rng.standard_normal((len(chunk), looks[-1]))
        pooled = rng.chisquare(pooled_df, len(chunk)) if pooled_df else 0.0
        sums, squares = np.cumsum(x, axis=1), np.cumsum(x * x, axis=1)  # every look's mean and spread at once
        low = smallest[chunk]
        for n in looks:
            mean = sums[:, n - 1] / n
            spread = np.sqrt((squares[:, n - 1] - n * mean * mean + pooled) / (n - 1 + pooled_df))
            t = mean / (spread / np.sqrt(n))
            far = t > beyond[n]
            low[far] = np.minimum(low[far], special.stdtr(n - 1 + pooled_df, -t[far]))  # t's upper tail
        smallest[chunk] = low
    return float(np.quantile(smallest, alpha))


def sequential_stats(base, cand, *, level: float, min_effect: float, noise_floor: float = 0.0,
                     pool: tuple[float, ...] = ()) -> SpeedStats:
    """One look of the "sequential" rule (module docstring) on the log speedups of the pairs so far; their standard
    deviation is taken as at least `noise_floor`. `pool`: the log speedups of another comparison of the same work,
    whose variance these pairs are taken to share: the spread pools both (a pooled-variance t-test), so that a few
    pairs can decide with the other comparison's degrees of freedom (`level` must be computed with them)."""
    from scipy import special  # Student's t without scipy.stats' per-call overhead (a look is a few values)
    base, cand = np.asarray(base, float), np.asarray(cand, float)
    logs, pool = np.log(base / cand), np.asarray(pool, float)
    mean = float(np.mean(logs))
    squares = float(np.sum((logs - mean) ** 2)) + (float(np.sum((pool - pool.mean()) ** 2)) if len(pool) else 0.0)
    df = len(logs) - 1 + max(len(pool) - 1, 0)
    spread = max(float(np.sqrt(squares / df)), noise_floor) if len(logs) >= 2 else 0.0
    if spread == 0:  # no spread: the data say exactly this
        low = high = mean
        p_value = 0.0 if mean > 0 and len(logs) >= 2 else 1.0
    else:
        error = spread / np.sqrt(len(logs))
        half = float(special.stdtrit(df, 0.5 + CONFIDENCE / 2)) * error
        low, high = mean - half, mean + half
        p_value = float(special.stdtr(df, -mean / error))
    threshold = np.log1p(min_effect)
    decision = (FASTER if p_value <= level and low >= threshold else NOT_FASTER if high < threshold
                else UNDECIDED)
    return SpeedStats(
        speedup=float(np.exp(mean)), ci_low=float(np.exp(low)), ci_high=float(np.exp(high)), confidence=CONFIDENCE,
        p_value=p_value, n_base=len(base), n_cand=len(cand), base_median=float(np.median(base)),
        cand_median=float(np.median(cand)), base_spread=relative_spread(base), decision=decision,
    )


# size: the two samples, the settings of the caller (Settings is their home), then knobs of the test
def speed_stats(base, cand, *, alpha: float, min_effect: float, confidence: float = 0.95,
                test: str = "paired", n_resamples: int = 2000, seed: int = 0) -> SpeedStats:
    from scipy import stats
    base, cand = np.asarray(base, float), np.asarray(cand, float)
    if test == "paired":
        ratios = base / cand
        speedup = float(np.median(ratios))
        p_value = float(stats.wilcoxon(np.log(ratios), alternative="greater").pvalue) if np.any(ratios != 1) \
            else 1.0
        ci = _interval((ratios,), lambda r, axis: np.median(r, axis=axis), confidence, n_resamples, seed, False)
    elif test == "mannwhitney":
        speedup = float(np.median(base) / np.median(cand))
        p_value = float(stats.mannwhitneyu(cand, base, alternative="less").pvalue)
        ci = _interval((base, cand), lambda b, c, axis: np.median(b, axis=axis) / np.median(c, axis=axis),
                       confidence, n_resamples, seed, False)
    else:
        raise ValueError(f"unknown test {test!r}: use 'paired' or 'mannwhitney' (or Sampling(test='sequential'))")
    threshold = 1.0 + min_effect
    if p_value < alpha and ci.low >= threshold:
        decision = FASTER
    elif ci.high < threshold:
        decision = NOT_FASTER
    else:
        decision = UNDECIDED
    return SpeedStats(
        speedup=speedup, ci_low=float(ci.low), ci_high=float(ci.high), confidence=confidence, p_value=p_value,
        n_base=len(base), n_cand=len(cand), base_median=float(np.median(base)), cand_median=float(np.median(cand)),
        base_spread=relative_spread(base), decision=decision,
    )


class Stage(NamedTuple):
    """Part of a sequential comparison: values of one length (`rung` of the caller's ladder of loop counts), the pair
    counts at which a decision may be taken, and the share of the false-acceptance rate spent on them."""
    rung: int
    looks: tuple[int, ...]
    alpha: float


@dataclass(frozen=True)
class Sampling:
    """A comparison's decision rule. The fields that are settings have their defaults in Settings, which builds
    this (Settings.sampling)."""
    test: str  # "sequential", "paired" or "mannwhitney" (module docstring)
    min_samples: int  # pairs per side before the first decision on the longest values
    max_samples: int  # pairs per side; beyond this the machine is called too noisy
    alpha: float  # false acceptance of identical code, over every look
    min_effect: float
    step: int = 5  # pairs added between decisions
    warmup: int = 0  # pairs discarded at the start (the candidate's result check has just run its code)
    # sequential rule: looks on the short values, when they are shorter, and the share of alpha they spend (chosen on
    # the recordings of benchmarks/measurement.py; the false-acceptance bound holds for any choice)
    short_looks: tuple[int, ...] = (3, 5, 8)
    short_alpha: float = 0.004
    noise_floor: float = 0.0  # sequential rule: the least spread of log speedups to assume (the baseline's A/A pairs)
    pool: tuple[float, ...] = ()  # sequential rule: log speedups of values of this length from another comparison
    # of the same work, whose variance is pooled in (sequential_stats): the speed checks on variants of the input
    below: float = 0.0  # a look whose interval ends under this speedup decides "not faster" at once: a version
    # that must reach another's interval to count (loop/minimal.py) need not be timed until it is faster than the base

    @property
    def looks(self) -> tuple[int, ...]:
        """Pair counts at which the longest values are judged: min_samples, then every `step` up to max_samples."""
        return (*range(self.min_samples, self.max_samples, self.step), self.max_samples)

    def stages(self, rungs: int) -> list[Stage]:
        """The sequential plan for a ladder of `rungs` value lengths (1 or 2): short values first, where their looks
        may decide, then the longest. With one length, the short looks lead into the long ones."""
        if self.test != "sequential":
            return [Stage(rungs - 1, self.looks, self.alpha)]
        if rungs == 1:
            return [Stage(0, tuple(sorted({*self.short_looks, *self.looks})), self.alpha)]
        return [Stage(0, self.short_looks, self.short_alpha),
                Stage(rungs - 1, self.looks, self.alpha - self.short_alpha)]

    def decide(self, base, cand, stage: Stage) -> SpeedStats:
        if self.test == "sequential":
            level = sequential_level(stage.looks, stage.alpha, max(len(self.pool) - 1, 0))
            decided = sequential_stats(base, cand, level=level, min_effect=self.min_effect,
                                       noise_floor=self.noise_floor, pool=self.pool)
        else:
            decided = speed_stats(base, cand, alpha=self.alpha, min_effect=self.min_effect, test=self.test)
        return replace(decided, decision=NOT_FASTER) if decided.ci_high < self.below else decided


def compare_speed(sample_base: Callable[[int], Timing | float], sample_cand: Callable[[int], Timing | float],
                  sampling: Sampling, progress: Callable[[SpeedStats], None] | None = None,
                  ladder: tuple[int, ...] = (1,)) -> tuple[SpeedStats, list, list]:
    """Alternate baseline and candidate values (ABBA order, so drift hits both alike) until decided; returns the
    decision on wall time and the last stage's values as the sample functions gave them. The sample functions take a
    loop count from `ladder` (increasing: short values first; see Sampling.stages). `progress` sees every interim
    decision."""
    for _ in range(sampling.warmup):
        sample_base(ladder[0]), sample_cand(ladder[0])
    [result] = compare_rotation(sample_base, [sample_cand], sampling,
                                progress and (lambda _, stats: progress(stats)), ladder)
    return result


def compare_rotation(sample_base: Callable[[int], Timing | float], samplers: list[Callable[[int], Timing | float]],
                     sampling: Sampling, progress: Callable[[int, SpeedStats], None] | None = None,
                     ladder: tuple[int, ...] = (1,)) -> list[tuple[SpeedStats, list, list]]:
    """Several candidates against one baseline in one rotation: each round takes a baseline value and one of every
    undecided candidate, in an order that rotates round by round (so drift and position hit all alike; compare_speed
    is the one-candidate case, ABBA). Each candidate is decided by `sampling`'s rule on its pairs with
    the baseline values of the same rounds; a decided one leaves the rotation. Returns, per candidate, its decision
    and its last stage's values; `progress` sees (candidate index, interim decision)."""
    results: list = [None] * len(samplers)
    undecided = list(range(len(samplers)))
    for stage in sampling.stages(len(ladder)):
        loops, base, cand = ladder[stage.rung], {i: [] for i in undecided}, {i: [] for i in undecided}
        rounds = 0
        for target in stage.looks:
            for rounds in range(rounds, target):
                order = [None, *undecided]  # None: the baseline
                order = order[rounds % len(order):] + order[:rounds % len(order)]
                values = {i: (sample_base if i is None else samplers[i])(loops) for i in order}
                for i in undecided:
                    base[i].append(values[None])
                    cand[i].append(values[i])
            rounds = target
            for i in list(undecided):
                results[i] = (sampling.decide(walls(base[i]), walls(cand[i]), stage), base[i], cand[i])
                if progress:
                    progress(i, results[i][0])
                if results[i][0].decision != UNDECIDED:
                    undecided.remove(i)
            if not undecided:
                return results
    return results


@dataclass(frozen=True)
class Noise:
    """How noisy timing is here, from A/A pairs of the unmodified code."""
    pairs: int
    sample_spread: float  # interquartile range / median of single samples
    pair_spread: float  # robust standard deviation of log(pair ratio)
    resolvable: float  # about the smallest speedup the paired rule can resolve within `max_samples` pairs
    outside_spread: float | None = None  # seconds per call: how the run's time outside its calls varies (integrity)
    cpu_spread: float | None = None  # seconds per call: how the kernel's count of the run's CPU varies (integrity)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return formats.noise(self.as_dict())


def measure_noise(first, second, max_samples: int) -> Noise:
    """From two sample lists of the same code taken as back-to-back pairs."""
    first, second = np.asarray(first, float), np.asarray(second, float)
    log_ratios = np.log(first / second)
    q1, q3 = np.percentile(log_ratios, [25, 75])
    sigma = float((q3 - q1) / 1.349)  # IQR of a normal distribution is 1.349 sigma
    # the median's standard error is about 1.25 sigma / sqrt(n); a 95% interval must clear 1 by two of them
    resolvable = float(np.exp(2 * 1.96 * 1.2533 * sigma / np.sqrt(max_samples)))
    return Noise(len(first), relative_spread(np.concatenate([first, second])), sigma, resolvable)


def value_ladder(loops: int, sample_seconds: float, short_seconds: float) -> tuple[int, ...]:
    """Loop counts of the value lengths a comparison may use, shortest first: `loops` is calibrated to
    `sample_seconds`; short values take about `short_seconds` (one call at least). One rung when they coincide."""
    short = max(1, round(loops * short_seconds / sample_seconds))
    return (short, loops) if short < loops else (loops,)


def samples_record(base: list, cand: list) -> dict:
    """The samples of a comparison for the run record: wall and CPU seconds per call, and the CPU-time speedup."""
    record = {"baseline": walls(base), "candidate": walls(cand)}
    if base and isinstance(base[0], Timing) and all(t.cpu > 0 for t in [*base, *cand]):
        record["baseline_cpu"] = [t.cpu for t in base]
        record["candidate_cpu"] = [t.cpu for t in cand]
        record["cpu_speedup"] = float(np.median(np.divide(record["baseline_cpu"], record["candidate_cpu"])))
    return record



def ratio_of_speedups(first, second, *, confidence: float = 0.95) -> tuple[float, float, float]:
    """How two independent sets of per-pair speedups compare (e.g. a model's and an expert's patch, each timed against
    the same baseline): the ratio of their 20%-trimmed geometric means, with the interval of Yuen's trimmed t-test on
    the log speedups (at 10 pairs a side a bootstrap interval of medians covers the truth too rarely)."""
    from scipy import stats
    a, b = np.log(np.asarray(first, float)), np.log(np.asarray(second, float))
    estimate = stats.trim_mean(a, 0.2) - stats.trim_mean(b, 0.2)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return float(np.exp(estimate)), float(np.exp(estimate)), float(np.exp(estimate))
    ci = stats.ttest_ind(a, b, equal_var=False, trim=0.2).confidence_interval(confidence)
    return float(np.exp(estimate)), float(np.exp(ci.low)), float(np.exp(ci.high))
