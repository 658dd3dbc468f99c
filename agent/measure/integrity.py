"""What the kernel saw of a harness run, against what the child said.

The child is untrusted: the candidate's code runs in it and can fake its clock, send marks of its own, return a
wrong result when it guesses it is being timed, or do its work outside the timed call (lazily after the call returns,
in setup(), in another thread). So:
- a call's time is the span between the kernel's stamps of its marks (sandbox/marks.py), never the child's figure;
  the child's own clock is only compared with it: one that runs slow is tampering (`clock_tampered`);
- marks that do not follow the harness's protocol are tampering (`read_calls`);
- every call's result is digested and must match what was checked (`Expected`), so a timing run is no place to
  return something cheaper;
- forged marks cannot make work disappear, only move it out of the region they delimit, where it shows in the run's
  other time and in the kernel's count of the run's CPU (`work_moved`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perfagent.sandbox.marks import Mark

# per call, beyond what the baseline's runs show, the child's clock may miss this much of a call and this share of it:
# the marks' own system calls, and on a loaded machine the moments the process waits for a CPU between a mark and its
# clock. The decision never uses the child's clock, so a clock that runs only a little slow gains nothing; this check
# names the ones that try.
CLOCK_SLACK_S = 1e-3
CLOCK_SLACK = 0.2
MOVED_SHARE = 0.5  # work moved: more than this share of the time saved per call reappears outside the calls,
NOISE_FACTOR = 3  # and by more than this many times the baseline's A/A spread of that time


class TimingTampered(RuntimeError):
    """The child's account of its run does not hold against the kernel's."""


class ResultDrift(RuntimeError):
    """A call's result differs from the one that was checked."""


@dataclass(frozen=True)
class Call:
    wall: float  # seconds between its marks, by the kernel's clock
    claimed: float  # seconds by the child's own clock (a cross-check)
    cpu: float  # CPU seconds by the child's own count (recorded, not trusted)
    digest: str  # of the normal form of its result


@dataclass(frozen=True)
class Calls:
    """A harness run's calls as the kernel saw them."""
    calls: list[Call]
    outside: float  # seconds of the run outside its calls: loading the workload, setup(), digests


def read_calls(marks: list[Mark], reported: list) -> Calls:
    """The calls of one run from its marks ("H", then "S<i>" and "E<i>" around each call, then "X") and the child's
    report of them ([wall, cpu, digest] each); TimingTampered unless both follow the protocol."""
    expected = [b"H", *(m for i in range(len(reported)) for m in (b"S%d" % i, b"E%d" % i)), b"X"]
    if [m.data for m in marks] != expected:
        got = b" ".join(m.data[:12] for m in marks[:12]).decode("ascii", "replace")
        raise TimingTampered(f"the run's marks do not follow the harness's protocol ({len(marks)} marks: {got}"
                             f"{' ...' if len(marks) > 12 else ''}; expected {len(expected)})")
    try:
        calls = [Call((marks[2 * i + 2].ns - marks[2 * i + 1].ns) / 1e9, float(wall), float(cpu), str(digest))
                 for i, (wall, cpu, digest) in enumerate(reported)]
    except (TypeError, ValueError) as exc:
        raise TimingTampered(f"the run's report of its calls is malformed ({exc})") from None
    span = (marks[-1].ns - marks[0].ns) / 1e9
    return Calls(calls, max(0.0, span - sum(c.wall for c in calls)))


@dataclass(frozen=True)
class Expected:
    """The digests a run's results must have: one for every call, or (for a workload whose result changes from call
    to call in a process, as the unmodified code's did) one per call position, unchecked beyond those known."""
    digests: tuple[str, ...]

    @classmethod
    def of(cls, reference: tuple[str, ...] | list[str], checked: str) -> "Expected":
        """From the unmodified code's digests, call by call, and the digest of the candidate's checked result (equal
        to the reference's within float tolerance, so not always the same digest)."""
        return cls((checked,)) if len(set(reference)) <= 1 else cls(tuple(reference))

    def mismatch(self, calls: list[Call]) -> str | None:
        for i, call in enumerate(calls):
            want = self.digests[0] if len(self.digests) == 1 else self.digests[i] if i < len(self.digests) else None
            if want is not None and call.digest != want:
                return f"call {i + 1} of {len(calls)} in a timing run returned a different result than the checked one"
        return None


def _median(values) -> float:
    return float(np.median(values))


def clock_tampered(base: list, cand: list) -> str | None:
    """Why the candidate's own clock cannot be right, or None: it missed more of its calls' time, by the kernel's
    stamps, than the unmodified code's clock did (base, cand: Timing values with `claimed`)."""
    if not cand or any(t.claimed is None for t in [*base, *cand]):
        return None
    missed = _median([t.wall - t.claimed for t in cand]) - (_median([t.wall - t.claimed for t in base]) if base else 0)
    wall = _median([t.wall for t in cand])
    if missed <= max(CLOCK_SLACK_S, CLOCK_SLACK * wall):
        return None
    return (f"its own clock says {_median([t.claimed for t in cand]):.4g} s per call where the kernel's stamps say "
            f"{wall:.4g} s: the code changed how the process reads time")


def aa_spread(first: list, second: list, field: str) -> float | None:
    """How much `field` ("outside" or "run_cpu", per call) differs between two runs of the same code: the robust
    standard deviation of its differences over A/A pairs of Timing values, or None where it was not measured."""
    diffs = [getattr(a, field) - getattr(b, field) for a, b in zip(first, second)
             if getattr(a, field) is not None and getattr(b, field) is not None]
    if len(diffs) < 4:
        return None
    q1, q3 = np.percentile(diffs, [25, 75])
    return float((q3 - q1) / 1.349)  # the IQR of a normal distribution is 1.349 sigma


def _cpu_share(values: list) -> float:
    """The share of the unmodified code's wall time its process spent on a CPU: below 1 on a loaded machine, where a
    call's wall time includes time the process waited for one, so a second of wall saved is less CPU saved."""
    return min(1.0, _median([t.run_cpu / (t.wall + t.outside) for t in values]))


def work_moved(base: list, cand: list, floors: dict[str, float | None]) -> str | None:
    """Why the time the candidate saves in its calls is not saved work, or None. Over paired values (base[i], cand[i]),
    the median time saved per call must not reappear, in every pair, by more than MOVED_SHARE of it and beyond
    NOISE_FACTOR times the baseline's A/A spread (`floors`, by field), in the run's time outside its calls ("outside": setup(), loading,
    a result computed after the call returns) or in the kernel's count of the run's CPU ("run_cpu": another thread
    or process working while the clock does not run; judged only with its A/A spread known, since the loading of
    the workload's modules, whose CPU time varies most, is in it)."""
    saved = _median([b.wall - c.wall for b, c in zip(base, cand)]) if cand else 0.0
    if saved <= 0:
        return None
    for field in ("outside", "run_cpu"):
        values = [(getattr(b, field), getattr(c, field)) for b, c in zip(base, cand)]
        if not values or any(b is None or c is None for b, c in values) or (
                field == "run_cpu" and floors.get(field) is None):  # it needs the A/A spread: loading dominates it
            continue
        expected = saved if field == "outside" else saved * _cpu_share(base)  # what should have gone from it
        # the least of the pairs, not their median: work that moved reappears in every pair, while the time outside
        # the calls of a loaded machine (process start, imports) jumps by tens of ms in some; with the 3 pairs a
        # large gain is decided on, a median of those jumps rejected honest code
        kept = min(c - b for b, c in values) + (expected if field == "run_cpu" else 0.0)
        if kept > MOVED_SHARE * expected and kept > NOISE_FACTOR * (floors.get(field) or 0.0):
            where = ("outside it: in setup(), loading, or computing the result after the call returns"
                     if field == "outside" else
                     "in the kernel's count of the run's CPU time: work done in another thread or process, or while "
                     "the clock is not running")
            return f"of the {saved * 1e3:.3g} ms per call saved inside workload(), {kept * 1e3:.3g} ms reappear {where}"
    return None
