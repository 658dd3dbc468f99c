"""Benchmark: how often perfagent's speed decision is right, and how long it takes.

    python benchmarks/measurement.py [--pairs 200] [--long-pairs 60] [--data PATH] [--replay]

Code variants differ only in the iteration count of one pure-Python loop: the candidate A, an identical copy of it
(the A/A case) and baselines with 3, 5, 10 and 30% more iterations (A is then that much faster), on workloads of
about 5 ms, 50 ms and 1 s per call.
1. Record: for each workload and baseline, a long run of back-to-back (baseline, candidate) samples in ABBA order,
   each from a fresh sandboxed process exactly as perfagent takes them (WorkloadRunner.sample, loops calibrated to
   0.1 s per sample). Saved to --data; --replay re-analyses a saved file without recording.
2. Replay: sandbox.measure.compare_speed itself, with perfagent's default Sampling, fed from the recorded run
   starting at every --stride-th pair, for the "paired" and the "mannwhitney" rules on the same data.
Prints, per case, the share of trials accepted as faster, rejected and left undecided, the pairs used and the
measurement seconds (wall time of the samples consumed, warm-up included). Targets: A/A acceptance (the false
acceptance rate) under 1%; detection of a 10% effect at least 95%.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from agent.workload import Workload, WorkloadRunner  # noqa: E402
from sandbox.measure import FASTER, NOT_FASTER, Sampling, compare_speed  # noqa: E402
from sandbox.run import Limits  # noqa: E402

SAMPLE_SECONDS = 0.1  # perfagent's default sample_seconds
EFFECTS = {"A/A": 0.0, "3%": 0.03, "5%": 0.05, "10%": 0.10, "30%": 0.30}  # baseline's extra work
RULES = ("paired", "mannwhitney")
WORK = """N = {n}


def spin():
    total = 0
    for i in range(N):
        total += i * i % 7
    return total
"""
WORKLOAD = """from synth.work import spin


def setup():
    pass


def workload():
    return spin()
"""


def label(seconds: float) -> str:
    return f"{seconds:g} s" if seconds >= 1 else f"{seconds * 1000:g} ms"


def iterations_for(seconds: float) -> int:
    """Loop count for which spin() takes about `seconds` here (fastest of a few timings, as the CPU swings)."""
    n, namespace = 200_000, {}
    exec(WORK.format(n=n), namespace)
    best = min(timeit.repeat(namespace["spin"], number=1, repeat=5))
    return max(1, round(n * seconds / best))


def make_variant(folder: Path, n: int) -> Path:
    (folder / "synth").mkdir(parents=True)
    (folder / "synth" / "__init__.py").write_text("")
    (folder / "synth" / "work.py").write_text(WORK.format(n=n))
    return folder


def record_pairs(runner: WorkloadRunner, base: Path, cand: Path, loops: int, count: int, what: str) -> list:
    """`count` back-to-back pairs in ABBA order, each [base value, base wall s, cand value, cand wall s, load]
    (load: the 1-minute load average after the pair; other jobs on the machine add noise)."""
    def timed(worktree: Path) -> tuple[float, float]:
        start = time.perf_counter()
        value = runner.sample(worktree, loops)
        return value, time.perf_counter() - start

    pairs = []
    for k in range(count):
        if k % 2:
            c = timed(cand)
            b = timed(base)
        else:
            b = timed(base)
            c = timed(cand)
        pairs.append([*b, *c, os.getloadavg()[0]])
        if (k + 1) % 20 == 0 or k + 1 == count:
            print(f"  {what}: {k + 1}/{count} pairs", file=sys.stderr, flush=True)
    return pairs


def record(args) -> dict:
    data = {"python": sys.version, "sample_seconds": SAMPLE_SECONDS, "sequences": []}
    with tempfile.TemporaryDirectory(prefix="perfagent-measurement-") as tmp:
        tmp = Path(tmp)
        (tmp / "workload.py").write_text(WORKLOAD)
        runner = WorkloadRunner(Workload.parse("workload.py", tmp), sys.executable, tmp / "runner",
                                Limits(timeout_s=120))
        runner.tmp.mkdir()
        for d, seconds in enumerate(args.durations):
            n = iterations_for(seconds)
            cand = make_variant(tmp / f"d{d}-cand", n)
            count = args.long_pairs if seconds >= 0.5 else args.pairs
            for v, (name, effect) in enumerate(EFFECTS.items()):
                base = make_variant(tmp / f"d{d}-base{v}", round(n * (1 + effect)))
                loops = runner.calibrate(base, SAMPLE_SECONDS)
                what = f"{label(seconds)} {name} ({loops} loops)"
                print(f"recording {what}", file=sys.stderr, flush=True)
                data["sequences"].append({"seconds": seconds, "effect": name, "n": n, "loops": loops,
                                          "pairs": record_pairs(runner, base, cand, loops, count, what)})
                Path(args.data).write_text(json.dumps(data))
    return data


def replay(pairs: list, start: int, sampling: Sampling) -> tuple[str, int, float]:
    """compare_speed fed from the recorded pairs from `start` on: decision, pairs used, measurement seconds."""
    bases, cands, walls = iter(pairs[start:]), iter(pairs[start:]), []

    def take(stream, i):
        pair = next(stream)
        walls.append(pair[i + 1])
        return pair[i]

    speed, base, _ = compare_speed(lambda: take(bases, 0), lambda: take(cands, 2), sampling)
    return speed.decision, len(base), sum(walls)


def describe_sequences(data: dict) -> None:
    print("recorded runs (ratio = baseline / candidate; spread = interquartile range / median)")
    print(f"{'workload':>8}  {'effect':>6}  {'loops':>5}  {'pairs':>5}  {'cand/call':>9}  {'pair ratio':>10}  "
          f"{'ratio spread':>12}  {'cand spread':>11}  {'load':>4}")
    for seq in data["sequences"]:
        p = np.array(seq["pairs"])
        ratios = p[:, 0] / p[:, 2]
        q1, q3 = np.percentile(ratios, [25, 75])
        cq1, cmed, cq3 = np.percentile(p[:, 2], [25, 50, 75])
        print(f"{label(seq['seconds']):>8}  {seq['effect']:>6}  {seq['loops']:>5}  {len(p):>5}  "
              f"{cmed * 1000:>7.1f}ms  {np.median(ratios):>10.3f}  {(q3 - q1) / np.median(ratios):>12.1%}  "
              f"{(cq3 - cq1) / cmed:>11.1%}  {np.median(p[:, 4]):>4.1f}")


def analyse(data: dict, stride: int) -> dict:
    """Per (workload, effect, rule): the trials' decisions, pairs used and seconds; prints the table."""
    results, defaults = {}, Sampling()
    print(f"\ndecisions: compare_speed with Sampling() defaults (first look after {defaults.min_samples} pairs, then "
          f"every {defaults.step}, at most {defaults.max_samples}, {defaults.warmup} warm-up pair); in each recorded "
          f"run,\ntrials start {stride} pair(s) apart (while {defaults.warmup + defaults.max_samples} pairs remain). "
          f"Overlapping trials are not independent: ~indep = recorded pairs / pairs per trial.\n"
          f"pairs and seconds are medians; seconds = wall time of the samples used, warm-up included.")
    print(f"{'workload':>8}  {'effect':>6}  {'rule':<11}  {'trials':>6}  {'~indep':>6}  {'accepted':>8}  "
          f"{'not faster':>10}  {'undecided':>9}  {'pairs':>5}  {'seconds':>7}")
    for seq in data["sequences"]:
        for rule in RULES:
            sampling = Sampling(test=rule)
            last = len(seq["pairs"]) - sampling.warmup - sampling.max_samples
            trials = [replay(seq["pairs"], s, sampling) for s in range(0, last + 1, stride)]
            results[seq["seconds"], seq["effect"], rule] = trials
            if not trials:
                print(f"{label(seq['seconds']):>8}  {seq['effect']:>6}  {rule:<11}  too few pairs recorded")
                continue
            decisions = [t[0] for t in trials]
            accepted, rejected = decisions.count(FASTER) / len(trials), decisions.count(NOT_FASTER) / len(trials)
            pairs = np.median([t[1] for t in trials])
            print(f"{label(seq['seconds']):>8}  {seq['effect']:>6}  {rule:<11}  {len(trials):>6}  "
                  f"{len(seq['pairs']) / (pairs + sampling.warmup):>6.1f}  {accepted:>8.1%}  {rejected:>10.1%}  "
                  f"{1 - accepted - rejected:>9.1%}  {pairs:>5.0f}  {np.median([t[2] for t in trials]):>7.1f}")
    return results


def verdicts(results: dict) -> None:
    print()
    for rule in RULES:
        aa = [t for (_, effect, r), ts in results.items() if r == rule and effect == "A/A" for t in ts]
        if aa:
            k = sum(t[0] == FASTER for t in aa)
            high = stats.binomtest(k, len(aa)).proportion_ci(0.95).high
            print(f"{rule}: false acceptance {k}/{len(aa)} A/A trials = {k / len(aa):.1%} (target < 1%: "
                  f"{'MET' if k / len(aa) < 0.01 else 'NOT MET'}; 95% upper bound {high:.1%} if the overlapping "
                  f"trials were independent)")
        tens = {s: ts for (s, effect, r), ts in results.items() if r == rule and effect == "10%" and ts}
        if tens:
            rates = {s: sum(t[0] == FASTER for t in ts) / len(ts) for s, ts in tens.items()}
            print(f"{rule}: detection of a 10% speedup " + ", ".join(f"{label(s)} {r:.0%}" for s, r in rates.items())
                  + f" (target >= 95%: {'MET' if min(rates.values()) >= 0.95 else 'NOT MET'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[0.005, 0.05, 1.0],
                        help="seconds per workload() call")
    parser.add_argument("--pairs", type=int, default=150, help="pairs recorded per case, workloads under 0.5 s")
    parser.add_argument("--long-pairs", type=int, default=55, help="pairs recorded per case, workloads of 0.5 s+")
    parser.add_argument("--stride", type=int, default=1, help="pairs between the starts of two replayed trials")
    parser.add_argument("--data", default="/tmp/perfagent-measurement.json", help="recorded samples (JSON)")
    parser.add_argument("--replay", action="store_true", help="analyse --data instead of recording")
    args = parser.parse_args()
    data = json.loads(Path(args.data).read_text()) if args.replay else record(args)
    describe_sequences(data)
    verdicts(analyse(data, args.stride))


if __name__ == "__main__":
    main()
