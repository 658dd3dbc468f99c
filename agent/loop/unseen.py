"""Inputs the candidate has not seen: variants of the workload's setup() (measure/variants.py), chosen once on the
unmodified code, on which every candidate's results must hold and an accepted candidate's speedup too.

A variant is kept when the unmodified code runs it without error, in about the time of the original (0.5x to 2x of
a call: the same kind and size of work), and it computes something else: its result differs, or, for a workload
that returns None, the results of the calls to the hot functions do (recorder.py). At most KEEP are kept, in the
order variants.py makes them (seeds first, the purest change). A workload that defines perturbed_setup() has its own
second input; one whose setup() has no literal to change gets no variant, and the run says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from perfagent.measure.calls import compare_calls
from perfagent.measure.compare import Comparison, compare_results
from perfagent.measure.variants import Variant, make_variants
from perfagent.measure.workload import Workload, WorkloadFailed, WorkloadRunner

KEEP = 2  # variants kept: each costs every candidate a result run, and the first one an accepted candidate's timing
TRIES = 4  # variants tried at most (one result run each, on the unmodified code, once per run)
SAME_WORK = (0.5, 2.0)  # a variant's call time against the original's: outside, it is other work, not other values


@dataclass
class Unseen:
    """One kept variant: its runner (on the variant's file, sharing what the main runner watches and saw), and the
    unmodified code's result on it and records of its calls."""
    variant: Variant
    runner: WorkloadRunner
    result: object
    records: dict
    seconds: float

    def describe(self) -> str:
        return f"variant '{self.variant.name}' ({self.variant.describe()})"

    def check(self, candidate: Path, targets: tuple[str, ...]) -> Comparison:
        """The candidate's result, and its recorded calls, on this input against the unmodified code's."""
        result, _ = self.runner.result(candidate, record=targets)
        same = compare_results(self.result, result)
        if same.equal and targets:
            same = compare_calls(self.records, self.runner.recorded.get(candidate.resolve(), {}))
        return same if same.equal else Comparison(False, f"on the input of {self.describe()}: {same.detail}")


@dataclass
class Inputs:
    """The kept variants of a run, and what to tell about them."""
    kept: list[Unseen] = field(default_factory=list)
    note: str = ""


def choose(runner: WorkloadRunner, reference: Path, targets: tuple[str, ...], folder: Path) -> Inputs:
    """Variants of the workload's setup() that the unmodified code (in `reference`) runs as other work of the same
    size, written into `folder`; `targets` are the hot functions, whose calls are recorded."""
    workload = runner.workload
    if workload.kind != "python" or workload.perturbed:
        return Inputs(note="" if workload.kind != "python" else "the workload's own perturbed_setup() is its unseen "
                      "input")
    try:
        made = make_variants(workload.path.read_text(encoding="utf-8"))
    except SyntaxError as exc:
        return Inputs(note=f"no variant of setup() could be made ({exc.msg})")
    if not made.variants:
        return Inputs(note=f"no variant of setup() could be made: {made.note}")
    original = runner.result(reference, record=targets)  # recorded like the variants: its time compares with theirs
    base_records = runner.recorded.get(reference.resolve(), {})
    inputs, tried = Inputs(), []
    for variant in made.variants[:TRIES]:
        unseen, why = _try(variant, runner, reference, original, (targets, base_records), folder)
        tried.append(f"'{variant.name}' {why}" if why else f"'{variant.name}' kept")
        if unseen:
            inputs.kept.append(unseen)
        if len(inputs.kept) == KEEP:
            break
    inputs.note = "variants of setup(): " + "; ".join(tried)
    return inputs


def _try(variant: Variant, runner: WorkloadRunner, reference: Path, original: tuple[object, float],
         recorded: tuple[tuple[str, ...], dict], folder: Path) -> tuple[Unseen | None, str]:
    """The variant kept, or None and why not."""
    path = folder / f"variant-{variant.name.replace(' ', '-')}.py"
    path.write_text(variant.source, encoding="utf-8")
    own = replace(runner, workload=Workload.parse(str(path), reference), cold_start=None, cold_starts={}, digests={},
                  recorded={})
    targets, base_records = recorded
    try:
        result, seconds = own.result(reference, record=targets)
    except WorkloadFailed as exc:
        said = [line for line in str(exc).splitlines() if line.strip()]
        return None, f"fails on the unmodified code ({said[-1].strip()[:120] if said else 'no output'})"
    ratio = seconds / max(original[1], 1e-9)
    if not SAME_WORK[0] <= ratio <= SAME_WORK[1]:
        # one run a side may have met a slow moment of the machine (half or twice the time under load): the faster
        # of two runs a side decides, as noise only ever adds time
        again = min(seconds, own.result(reference, record=targets)[1])
        ratio = again / max(min(original[1], runner.result(reference, record=targets)[1]), 1e-9)
    if not SAME_WORK[0] <= ratio <= SAME_WORK[1]:
        return None, f"takes {ratio:.1f}x the original's time: other work"
    records = own.recorded.get(reference.resolve(), {})
    if compare_results(original[0], result).equal and _calls(records) == _calls(base_records):
        return None, "computes what the original does" + ("" if targets else " (the workload returns the same)")
    return Unseen(variant, own, result, records, seconds), ""


def _calls(records: dict) -> dict:
    """The recorded calls as they compare between inputs: per function, each call's arguments and result."""
    return {target: [(c.get("args"), c.get("result")) for c in calls] for target, calls in records.items()
            if ":" in target and isinstance(calls, list)}
