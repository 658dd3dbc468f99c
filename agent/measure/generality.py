"""Whether a gain holds beyond the benchmark's own situation: on the first call after setup() in a fresh process, and
(see variants.py) on inputs the candidate has not seen.

A benchmark repeats one workload: setup() builds equal inputs before every call, and every timing value is many calls
in one process. A candidate that keeps results from call to call (a module-level dict keyed by the arguments, a
class attribute keyed by `hash(self)`) serves every call after the first from memory: its warm calls are far faster,
its first call is not. Each timing value's first call is such a first call, timed like the others, so the pairs
of a comparison show both: the time saved on first calls against the time saved on the calls the value is made of.
"""
from __future__ import annotations

import numpy as np

CARRIED_SHARE = 0.5  # a first call saves less than this share of what the value's calls save: the gain is carried,
CARRIED_ALPHA = 0.05  # at this level: honest code, whose first calls save what the others do, sits half a saving
# away from that line, so it is rejected far less often than this; a cache sits half a saving beyond it, and a 3-pair
# decision must be able to see that (at 0.01 the t-test of 3 pairs needs t < -6.96)


CARRIED_PAIRS = 8  # pairs at most to tell a carried gain apart, when the first ones lean that way but do not show it


def _leaning(base: list, cand: list) -> tuple[np.ndarray, np.ndarray] | None:
    """(time saved per call, time saved on the first call) per pair of values of more than one call each, or None
    where there are none (values of one call: the first call is all there is)."""
    pairs = [(b, c) for b, c in zip(base, cand) if b.first is not None and c.first is not None and c.calls > 1]
    if len(pairs) < 2:
        return None
    return np.array([b.wall - c.wall for b, c in pairs]), np.array([b.first - c.first for b, c in pairs])


def undecided(base: list, cand: list) -> bool:
    """The first calls so far lean towards a carried gain without showing it: more pairs may settle it. Honest code,
    whose first calls save what the others save, never leans that way for long, so costs no more pairs."""
    leaning = _leaning(base, cand)
    if leaning is None or len(base) >= CARRIED_PAIRS or carried_across_calls(base, cand) is not None:
        return False
    saved, first = leaning
    return float(np.mean(first - CARRIED_SHARE * saved)) < 0


def _less(values: np.ndarray, alpha: float) -> bool:
    """A one-sided t-test that the values' mean is below 0."""
    if len(values) < 2:
        return False
    if np.ptp(values) == 0:
        return bool(values[0] < 0)
    from scipy import stats  # on use, as in stats.py
    return float(stats.ttest_1samp(values, 0.0, alternative="less").pvalue) < alpha


def carried_across_calls(base: list, cand: list, alpha: float = CARRIED_ALPHA) -> str | None:
    """Why the candidate's gain comes from state carried from one call to the next, or None: over paired Timing
    values with more than one call each, the time saved on first calls falls short of CARRIED_SHARE of the time
    saved per call, significantly at `alpha`. In seconds, not ratios: a first call that also pays a one-time cost
    (a lazy import, a table built once by the unmodified code too) saves what the others save, not the same share."""
    leaning = _leaning(base, cand)
    if leaning is None:
        return None
    saved, first = leaning
    if np.mean(saved) <= 0 or not _less(first - CARRIED_SHARE * saved, alpha):
        return None
    return (f"the calls it was timed on save {np.mean(saved) * 1e3:.3g} ms each, the first call after setup() in a "
            f"fresh process {np.mean(first) * 1e3:.3g} ms: the gain comes from results kept from one call to the "
            f"next (allow it with allow-cross-call-caching = true, if real use repeats identical calls)")
