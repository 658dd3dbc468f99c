"""Benchmark: how often perfagent's speed decision is right, and how long it takes.

    python benchmarks/measurement.py [--pairs 150] [--long-pairs 55] [--data PATH] [--replay]   (~25 min)

Code variants differ only in the iteration count of one pure-Python loop: the candidate A, an identical copy of it
(the A/A case) and baselines with 3, 5, 10 and 30% more iterations (A is then that much faster), on workloads of
about 5 ms, 50 ms and 1 s per call.
1. Record: for each workload and baseline, a long run of back-to-back (baseline, candidate) samples in ABBA order,
   each from a fresh sandboxed process exactly as perfagent takes them (WorkloadRunner.sample, loops calibrated to
   --sample-seconds, perfagent's sample_seconds by default). Saved to --data; --replay re-analyses a saved
   file without recording.
2. Replay: sandbox.measure.compare_speed itself, with perfagent's default Sampling, for the "paired",
   "mannwhitney" and "sequential" (first look after 5 pairs) rules on the same data: fed from the recorded run starting at every --stride-th pair (real order,
   but overlapping trials), and fed the run's pairs in --shuffled random orders (many more trials, assuming pairs
   are exchangeable).
Prints, per case, the share of trials accepted as faster, rejected and left undecided, the pairs used and the
measurement seconds (wall time of the samples consumed, warm-up included). Targets: A/A acceptance (the false
acceptance rate) under 1%; detection of a 10% effect at least 95%. A 3% effect equals the minimum effect, so it is
accepted only when its interval happens to clear 3%.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import timeit
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from agent.config import Settings  # noqa: E402
from agent.workload import Workload, WorkloadRunner  # noqa: E402
from sandbox.measure import FASTER, NOT_FASTER, Sampling, Timing, compare_speed, relative_spread  # noqa: E402
from sandbox.run import Limits  # noqa: E402

EFFECTS = {"A/A": 0.0, "3%": 0.03, "5%": 0.05, "10%": 0.10, "30%": 0.30}  # baseline's extra work
RULES = ("paired", "mannwhitney", "sequential")
FIRST_LOOK = {"sequential": 5}  # pairs before a rule's first decision, where it differs from Sampling()'s
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
    """Loop count for which spin() takes about `seconds` here (median of a few timings, as the CPU swings)."""
    n, namespace = 500_000, {}
    exec(WORK.format(n=n), namespace)
    typical = float(np.median(timeit.repeat(namespace["spin"], number=1, repeat=7)))
    return max(1, round(n * seconds / typical))


def make_variant(folder: Path, n: int) -> Path:
    (folder / "synth").mkdir(parents=True)
    (folder / "synth" / "__init__.py").write_text("")
    (folder / "synth" / "work.py").write_text(WORK.format(n=n))
    return folder


def record_pairs(runner: WorkloadRunner, base: Path, cand: Path, loops: int, count: int, what: str) -> list:
    """`count` back-to-back pairs in ABBA order, each [base wall/call, base process s, cand wall/call, cand
    process s, load, base cpu/call, cand cpu/call] (load: 1-minute load average; other jobs add noise)."""
    def timed(worktree: Path) -> tuple[Timing, float]:
        start = time.perf_counter()
        timing = runner.sample(worktree, loops)
        return timing, time.perf_counter() - start

    pairs = []
    for k in range(count):
        if k % 2:
            c, c_s = timed(cand)
            b, b_s = timed(base)
        else:
            b, b_s = timed(base)
            c, c_s = timed(cand)
        pairs.append([b.wall, b_s, c.wall, c_s, os.getloadavg()[0], b.cpu, c.cpu])
        if (k + 1) % 20 == 0 or k + 1 == count:
            print(f"  {what}: {k + 1}/{count} pairs", file=sys.stderr, flush=True)
    return pairs


def record(args) -> dict:
    data = {"python": sys.version, "sample_seconds": args.sample_seconds, "sequences": []}
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
                if name not in args.effects:
                    continue
                base = make_variant(tmp / f"d{d}-base{v}", round(n * (1 + effect)))
                loops = runner.calibrate(base, args.sample_seconds)
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


def shuffled(pairs: list, sampling: Sampling, count: int, rng) -> list:
    """`count` trials on the recorded pairs in random order: many more trials than the offsets give, valid as far
    as the pairs are exchangeable (see the autocorrelation column)."""
    return [replay([pairs[i] for i in rng.permutation(len(pairs))], 0, sampling) for _ in range(count)]


def describe_sequences(data: dict) -> None:
    print("recorded runs (ratio = baseline / candidate wall time per call; spread = interquartile range / median; "
          "cpu = the same for\nCPU time; autocorr = lag-1 autocorrelation of log ratios; load = 1-minute load "
          "average)")
    print(f"{'workload':>8}  {'effect':>6}  {'loops':>5}  {'pairs':>5}  {'cand/call':>9}  {'ratio':>5}  "
          f"{'ratio spread':>12}  {'cand spread':>11}  {'cpu ratio spread':>16}  {'autocorr':>8}  {'load':>5}")
    for seq in data["sequences"]:
        p = np.array(seq["pairs"])
        p[:, 5:7] = np.where(p[:, 5:7] > 0, p[:, 5:7], np.nan)  # CPU clocks tick coarsely: short calls can read 0
        ratios = p[:, 0] / p[:, 2]
        cmed = np.median(p[:, 2])
        autocorr = np.corrcoef(np.log(ratios[:-1]), np.log(ratios[1:]))[0, 1]
        print(f"{label(seq['seconds']):>8}  {seq['effect']:>6}  {seq['loops']:>5}  {len(p):>5}  "
              f"{cmed * 1000:>7.1f}ms  {np.median(ratios):>5.3f}  {relative_spread(ratios):>12.1%}  "
              f"{relative_spread(p[:, 2]):>11.1%}  {relative_spread((p[:, 5] / p[:, 6])[np.isfinite(p[:, 5] / p[:, 6])]):>16.1%}  {autocorr:>8.2f}  "
              f"{np.median(p[:, 4]):>5.1f}")


def trials(pairs: list, rule: str, stride: int, count: int) -> tuple[list, list] | None:
    """Trials from every `stride`-th offset and `count` shuffled trials; None when the run is too short."""
    sampling = Sampling(test=rule, min_samples=FIRST_LOOK.get(rule, Sampling.min_samples))
    last = len(pairs) - sampling.warmup - sampling.max_samples
    if last < 0:
        return None
    return ([replay(pairs, s, sampling) for s in range(0, last + 1, stride)],
            shuffled(pairs, sampling, count, np.random.default_rng(0)))


def rate(trials: list, decision: str = FASTER) -> float:
    return sum(t[0] == decision for t in trials) / len(trials)


def analyse(data: dict, stride: int, count: int) -> dict:
    """Per (workload, effect, rule): (offset trials, shuffled trials), each trial (decision, pairs, seconds)."""
    results, defaults = {}, Sampling()
    print(f"\ndecisions: compare_speed with Sampling() defaults (first look after {defaults.min_samples} pairs, then "
          f"every {defaults.step}, at most {defaults.max_samples}, {defaults.warmup} warm-up pair). In each recorded "
          f"run, trials\nstart {stride} pair(s) apart (while {defaults.warmup + defaults.max_samples} pairs remain); "
          f"overlapping trials are not independent: ~indep = recorded pairs / pairs per trial.\n"
          f"pairs and seconds are medians; seconds = wall time of the samples used, warm-up included. shuffled = "
          f"accepted in {count} trials on the run's pairs in random order.")
    print(f"{'workload':>8}  {'effect':>6}  {'rule':<11}  {'trials':>6}  {'~indep':>6}  {'accepted':>8}  "
          f"{'not faster':>10}  {'undecided':>9}  {'pairs':>5}  {'seconds':>7}  {'shuffled':>8}")
    with ProcessPoolExecutor() as pool:  # the replay takes minutes: use every core
        jobs = [(seq, rule, pool.submit(trials, seq["pairs"], rule, stride, count))
                for seq in data["sequences"] for rule in RULES]
        for seq, rule, job in jobs:
            what = f"{label(seq['seconds']):>8}  {seq['effect']:>6}  {rule:<11}"
            if job.result() is None:
                print(f"{what}  too few pairs recorded")
                continue
            offsets, mixed = results[seq["seconds"], seq["effect"], rule] = job.result()
            accepted, rejected = rate(offsets), rate(offsets, NOT_FASTER)
            used = np.median([t[1] for t in offsets])
            print(f"{what}  {len(offsets):>6}  {len(seq['pairs']) / (used + defaults.warmup):>6.1f}  "
                  f"{accepted:>8.1%}  {rejected:>10.1%}  {1 - accepted - rejected:>9.1%}  {used:>5.0f}  "
                  f"{np.median([t[2] for t in offsets]):>7.1f}  {rate(mixed):>8.1%}")
    return results


def verdicts(results: dict) -> None:
    """One line per rule and target; a target is met when both the offset and the shuffled trials meet it."""
    print()
    for rule in RULES:
        aa = [v for (_, effect, r), v in results.items() if r == rule and effect == "A/A"]
        if aa:
            trials, mixed = (sum((v[i] for v in aa), []) for i in (0, 1))
            high = stats.binomtest(round(rate(mixed) * len(mixed)), len(mixed)).proportion_ci(0.95).high
            met = max(rate(trials), rate(mixed)) < 0.01
            print(f"{rule}: false acceptance {rate(trials):.1%} of {len(trials)} offset trials, {rate(mixed):.1%} of "
                  f"{len(mixed)} shuffled (95% upper bound {high:.1%}); target < 1%: {'MET' if met else 'NOT MET'}")
        tens = {s: v for (s, effect, r), v in results.items() if r == rule and effect == "10%"}
        if tens:
            met = min(min(rate(v[0]), rate(v[1])) for v in tens.values()) >= 0.95
            print(f"{rule}: detection of a 10% speedup (offset / shuffled trials) "
                  + ", ".join(f"{label(s)} {rate(v[0]):.0%} / {rate(v[1]):.0%}" for s, v in tens.items())
                  + f"; target >= 95%: {'MET' if met else 'NOT MET'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[0.005, 0.05, 1.0],
                        help="seconds per workload() call")
    parser.add_argument("--sample-seconds", type=float, default=Settings.model_fields["sample_seconds"].default,
                        help="target duration of one timing sample (perfagent's sample_seconds)")
    parser.add_argument("--effects", nargs="+", default=list(EFFECTS), choices=list(EFFECTS),
                        help="cases to record (A/A is identical code)")
    parser.add_argument("--pairs", type=int, default=150, help="pairs recorded per case, workloads under 0.5 s")
    parser.add_argument("--long-pairs", type=int, default=55, help="pairs recorded per case, workloads of 0.5 s+")
    parser.add_argument("--stride", type=int, default=1, help="pairs between the starts of two replayed trials")
    parser.add_argument("--shuffled", type=int, default=150, help="shuffled-order trials per case")
    parser.add_argument("--data", default="/tmp/perfagent-measurement.json", help="recorded samples (JSON)")
    parser.add_argument("--replay", action="store_true", help="analyse --data instead of recording")
    args = parser.parse_args()
    data = json.loads(Path(args.data).read_text()) if args.replay else record(args)
    describe_sequences(data)
    verdicts(analyse(data, args.stride, args.shuffled))


if __name__ == "__main__":
    main()
