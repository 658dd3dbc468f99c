"""Speed measurement: interleaved samples from fresh processes, and the statistical decision.

Samples come in pairs taken back to back (baseline and candidate, in ABBA order). Two decision rules:
- "paired" (default): per-pair speedups r_i = baseline_i / candidate_i; a one-sided Wilcoxon signed-rank test on
  log r_i, and a bootstrap confidence interval of median(r_i). Pairing cancels the machine's slow swings in speed,
  which hit both members of a pair alike.
- "mannwhitney": the two groups as independent samples; a one-sided Mann-Whitney U test, and a bootstrap interval
  of median(baseline) / median(candidate).
Either way a candidate is faster when the test rejects "no difference" at level `alpha` AND the whole interval lies
at or above 1 + `min_effect`; it is "not faster" as soon as the interval's upper end is below 1 + `min_effect`;
otherwise more samples are taken, up to a cap, and a still-open question is reported as too noisy.
- "sequential": a group-sequential paired rule that may decide at every look, from the first (5 pairs by default):
  one-sided t bounds on the mean log speedup at level alpha / (number of planned looks). Bonferroni over the looks
  holds whatever their dependence, so false acceptance stays below alpha overall; under "no difference" the pairs'
  log speedups are symmetric about 0 (ABBA order makes the two sides exchangeable), where the t bound is sound and,
  for heavy tails, conservative. A 2x or 0.5x effect is decided at the first look; small ones take every look.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

import numpy as np
from scipy import stats

FASTER, NOT_FASTER, UNDECIDED = "faster", "not faster", "undecided"


class Timing(NamedTuple):
    """One timing value: wall-clock and CPU seconds per workload call. Decisions use wall time."""
    wall: float
    cpu: float


def walls(samples) -> list[float]:
    return [s.wall if isinstance(s, Timing) else s for s in samples]


@dataclass(frozen=True)
class SpeedStats:
    speedup: float  # median(baseline) / median(candidate); > 1 means the candidate is faster
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float  # one-sided: the candidate is faster (Wilcoxon signed-rank on pairs, or Mann-Whitney U)
    n_base: int
    n_cand: int
    base_median: float
    cand_median: float
    base_spread: float  # interquartile range / median of the baseline samples
    decision: str

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"{self.speedup:.3f}x [{self.ci_low:.3f}, {self.ci_high:.3f}] at {self.confidence:.0%}, "
                f"p={self.p_value:.2g}, n={self.n_base}+{self.n_cand}, baseline spread {self.base_spread:.1%}")


def relative_spread(samples) -> float:
    q1, med, q3 = np.percentile(samples, [25, 50, 75])
    return float((q3 - q1) / med) if med > 0 else 0.0


def _interval(data: tuple, statistic, confidence: float, n_resamples: int, seed: int, paired: bool):
    return stats.bootstrap(data, statistic, vectorized=True, paired=paired, confidence_level=confidence,
                           n_resamples=n_resamples, method="percentile",
                           random_state=np.random.default_rng(seed)).confidence_interval


def sequential_stats(base, cand, *, alpha: float = 0.01, min_effect: float = 0.03, looks: int = 8) -> SpeedStats:
    """One look of the "sequential" rule (module docstring): the geometric-mean speedup and its two-sided interval at
    confidence 1 - 2 * alpha / looks, whose lower end must clear 1 + min_effect to accept."""
    base, cand = np.asarray(base, float), np.asarray(cand, float)
    logs = np.log(base / cand)
    level = alpha / looks
    mean = float(np.mean(logs))
    if len(logs) < 2 or np.ptp(logs) == 0:
        low = high = mean
        p_value = 0.0 if mean > 0 and len(logs) >= 2 else 1.0
    else:
        half = float(stats.t.ppf(1 - level, len(logs) - 1) * np.std(logs, ddof=1) / np.sqrt(len(logs)))
        low, high = mean - half, mean + half
        p_value = float(stats.ttest_1samp(logs, 0.0, alternative="greater").pvalue)
    threshold = np.log1p(min_effect)
    decision = FASTER if low >= threshold else NOT_FASTER if high < threshold else UNDECIDED
    return SpeedStats(
        speedup=float(np.exp(mean)), ci_low=float(np.exp(low)), ci_high=float(np.exp(high)), confidence=1 - 2 * level,
        p_value=p_value, n_base=len(base), n_cand=len(cand), base_median=float(np.median(base)),
        cand_median=float(np.median(cand)), base_spread=relative_spread(base), decision=decision,
    )


def speed_stats(base, cand, *, alpha: float = 0.01, min_effect: float = 0.03, confidence: float = 0.95,
                test: str = "paired", n_resamples: int = 2000, seed: int = 0) -> SpeedStats:
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


@dataclass(frozen=True)
class Sampling:
    min_samples: int = 10  # per side, before the first decision
    max_samples: int = 40  # per side; beyond this the machine is called too noisy
    step: int = 5  # samples added per side between decisions
    warmup: int = 1  # pairs discarded at the start
    alpha: float = 0.01
    min_effect: float = 0.03
    confidence: float = 0.95
    test: str = "paired"  # or "mannwhitney", or "sequential" (best with min_samples=5)

    @property
    def looks(self) -> int:
        """How many decisions compare_speed may take: at min_samples, then every `step` pairs up to max_samples."""
        return 1 + -(-max(0, self.max_samples - self.min_samples) // self.step)

    def decide(self, base, cand) -> SpeedStats:
        if self.test == "sequential":
            return sequential_stats(base, cand, alpha=self.alpha, min_effect=self.min_effect, looks=self.looks)
        return speed_stats(base, cand, alpha=self.alpha, min_effect=self.min_effect, confidence=self.confidence,
                           test=self.test)


def compare_speed(sample_base: Callable[[], Timing | float], sample_cand: Callable[[], Timing | float],
                  sampling: Sampling = Sampling(),
                  progress: Callable[[SpeedStats], None] | None = None) -> tuple[SpeedStats, list, list]:
    """Alternate baseline and candidate samples (ABBA order, so drift hits both alike) until decided; returns the
    decision on wall time and the samples as the sample functions gave them. `progress` sees every interim
    decision."""
    for i in range(sampling.warmup):
        sample_base(), sample_cand()
    base: list = []
    cand: list = []
    target = sampling.min_samples
    while True:
        while len(base) < target:
            if len(base) % 2:
                cand.append(sample_cand())
                base.append(sample_base())
            else:
                base.append(sample_base())
                cand.append(sample_cand())
        result = sampling.decide(walls(base), walls(cand))
        if progress:
            progress(result)
        if result.decision != UNDECIDED or target >= sampling.max_samples:
            return result, base, cand
        target = min(target + sampling.step, sampling.max_samples)


@dataclass(frozen=True)
class Noise:
    """How noisy timing is here, from A/A pairs of the unmodified code."""
    pairs: int
    sample_spread: float  # interquartile range / median of single samples
    pair_spread: float  # robust standard deviation of log(pair ratio)
    resolvable: float  # about the smallest speedup the paired rule can resolve within `max_samples` pairs

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"samples vary {self.sample_spread:.1%} (IQR/median), back-to-back pairs {self.pair_spread:.1%}; "
                f"smallest resolvable speedup about {self.resolvable - 1:.1%}")


def measure_noise(first, second, max_samples: int) -> Noise:
    """From two sample lists of the same code taken as back-to-back pairs."""
    first, second = np.asarray(first, float), np.asarray(second, float)
    log_ratios = np.log(first / second)
    q1, q3 = np.percentile(log_ratios, [25, 75])
    sigma = float((q3 - q1) / 1.349)  # IQR of a normal distribution is 1.349 sigma
    # the median's standard error is about 1.25 sigma / sqrt(n); a 95% interval must clear 1 by two of them
    resolvable = float(np.exp(2 * 1.96 * 1.2533 * sigma / np.sqrt(max_samples)))
    return Noise(len(first), relative_spread(np.concatenate([first, second])), sigma, resolvable)


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
    a, b = np.log(np.asarray(first, float)), np.log(np.asarray(second, float))
    estimate = stats.trim_mean(a, 0.2) - stats.trim_mean(b, 0.2)
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return float(np.exp(estimate)), float(np.exp(estimate)), float(np.exp(estimate))
    ci = stats.ttest_ind(a, b, equal_var=False, trim=0.2).confidence_interval(confidence)
    return float(np.exp(estimate)), float(np.exp(ci.low)), float(np.exp(ci.high))
