"""Benchmark: how often perfagent's speed decision is right, and how long it takes, for the rule before issue 15
and the sequential rule, side by side on the same recorded data.

    python benchmarks/measurement.py [--data PATH] [--replay] [--short-seconds 0.1 0.3]   (~50 min to record)

The table in docs/development.md (Benchmarks) comes from `--replay` of a recording made here.

Code variants differ only in the iteration count of one pure-Python loop: the candidate A, an identical copy of it
(the A/A case), baselines with 3, 5, 10 and 30% and 2x more iterations (A is then that much faster) and one with half
as many (A is 2x slower), on workloads of about 5 ms, 50 ms and 1 s per call.
1. Record: for each workload, case and value length (0.1, 0.3 and 1 s of calls; loops calibrated on the baseline),
   a run of back-to-back (baseline, candidate) values in ABBA order, each from a fresh sandboxed process exactly as
   perfagent takes them (WorkloadRunner.sample). Saved to --data; --replay re-analyses a saved file.
2. Replay: perfagent.measure.stats.compare_speed itself, with the rule before ("today": paired, 1 s values) and the
   sequential rule (Settings().sampling(), starting with each --short-seconds length), fed from the recorded runs
   starting at every recorded pair and in --shuffled random orders.
Prints per case the share accepted, rejected and left undecided, the pairs and the measurement seconds (wall time
of the processes consumed, warm-up included); then issue 15's targets, met or not, and the table of docs/development.md.
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
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple


import numpy as np
from scipy import stats

from perfagent.config import Settings
from perfagent.measure.workload import Workload, WorkloadRunner
from perfagent.sandbox import isolation
from perfagent.measure.stats import (FASTER, NOT_FASTER, UNDECIDED, Timing, compare_speed,
                             measure_noise, relative_spread)

# the baseline's extra work: the candidate is that much faster ("0.5x": the baseline does half, so 2x slower)
EFFECTS = {"A/A": 0.0, "3%": 0.03, "5%": 0.05, "10%": 0.10, "30%": 0.30, "2x": 1.0, "0.5x": -0.5}
LENGTHS = (0.1, 0.3, 1.0)  # seconds of calls behind one value, recorded for each case
TODAY = Settings(decision_rule="paired", min_samples=10).sampling()  # the rule before issue 15, on values of sample_seconds
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
    """Per workload, effect and value length (loops calibrated on the baseline, as perfagent does), one run of
    pairs; lengths that give the same loop count share one run."""
    level = isolation.choose("auto")  # values are taken as perfagent takes them, sandbox included
    data = {"python": sys.version, "sample_seconds": args.sample_seconds, "isolation": level.level, "sequences": []}
    with tempfile.TemporaryDirectory(prefix="perfagent-measurement-") as tmp:
        tmp = Path(tmp)
        (tmp / "workload.py").write_text(WORKLOAD)
        runner = WorkloadRunner(Workload.parse("workload.py", tmp), sys.executable, tmp / "runner",
                                Settings().limits(timeout_s=120, isolation=level))
        runner.tmp.mkdir()
        for d, seconds in enumerate(args.durations):
            n = iterations_for(seconds)
            cand = make_variant(tmp / f"d{d}-cand", n)
            for v, (name, effect) in enumerate(EFFECTS.items()):
                if name not in args.effects:
                    continue
                base = make_variant(tmp / f"d{d}-base{v}", round(n * (1 + effect)))
                by_loops: dict[int, list[float]] = {}
                for length in args.lengths:
                    by_loops.setdefault(runner.calibrate(base, length), []).append(length)
                for loops, lengths in by_loops.items():
                    count = args.long_pairs if max(lengths) >= args.sample_seconds else args.pairs
                    what = f"{label(seconds)} {name} ({loops} loops, values of {'/'.join(map(label, lengths))})"
                    print(f"recording {what}", file=sys.stderr, flush=True)
                    data["sequences"].append({"seconds": seconds, "effect": name, "n": n, "loops": loops,
                                              "lengths": lengths,
                                              "pairs": record_pairs(runner, base, cand, loops, count, what)})
                    Path(args.data).write_text(json.dumps(data))
    return data


def describe_sequences(data: dict) -> None:
    print(f"recorded runs ({data.get('isolation', 'rlimits')} isolation; ratio = baseline / candidate wall time per "
          f"call; spread = interquartile range / median;\nautocorr = lag-1 autocorrelation of log ratios; "
          f"load = 1-minute load average)")
    print(f"{'workload':>8}  {'effect':>6}  {'loops':>5}  {'pairs':>5}  {'cand/call':>9}  {'ratio':>5}  "
          f"{'ratio spread':>12}  {'cand spread':>11}  {'autocorr':>8}  {'load':>5}")
    for seq in data["sequences"]:
        p = np.array(seq["pairs"])
        ratios = p[:, 0] / p[:, 2]
        autocorr = np.corrcoef(np.log(ratios[:-1]), np.log(ratios[1:]))[0, 1]
        print(f"{label(seq['seconds']):>8}  {seq['effect']:>6}  {seq['loops']:>5}  {len(p):>5}  "
              f"{np.median(p[:, 2]) * 1000:>7.1f}ms  {np.median(ratios):>5.3f}  {relative_spread(ratios):>12.1%}  "
              f"{relative_spread(p[:, 2]):>11.1%}  {autocorr:>8.2f}  {np.median(p[:, 4]):>5.1f}")


class Trial(NamedTuple):
    decision: str
    pairs: int  # pairs used, every stage together, warm-up excluded
    seconds: float  # wall time of every process the decision consumed, warm-up included


def streams_for(sequences: list[dict], lengths: tuple[float, ...]) -> tuple[list, ...] | None:
    """The recorded runs that values of `lengths` (shortest first) come from; one run serves lengths with the same
    loop count, as value_ladder merges them. None when one is not recorded."""
    found = []
    for length in lengths:
        seq = next((q for q in sequences if length in q["lengths"]), None)
        if seq is None:
            return None
        if not found or seq is not found[-1]:
            found.append(seq)
    return tuple(q["pairs"] for q in found)


def replay(streams: tuple[list, ...], sampling: Sampling) -> Trial:
    """compare_speed fed from recorded runs (one per rung of the ladder, each read from its start)."""
    positions, walls = [0] * len(streams), []

    def take(rung: int, side: int) -> float:
        pairs = streams[rung]
        pair = pairs[positions[rung] // 2 % len(pairs)]
        positions[rung] += 1
        walls.append(pair[2 * side + 1])
        return pair[2 * side]

    ladder = tuple(range(len(streams)))
    speed, _, _ = compare_speed(lambda k: take(k, 0), lambda k: take(k, 1), sampling, ladder=ladder)
    return Trial(speed.decision, sum(positions) // 2 - sampling.warmup, sum(walls))


def trials(streams: tuple[list, ...], sampling: Sampling, count: int) -> tuple[list, list]:
    """Trials starting at every recorded pair (circularly: each run read in its real order from there, wrapping at its
    end) and `count` trials on the runs' pairs in random order (valid as far as pairs are exchangeable: see the
    autocorrelation column)."""
    rng = np.random.default_rng(0)
    offsets = [replay(tuple(p[s % len(p):] + p[:s % len(p)] for p in streams), sampling)
               for s in range(max(len(p) for p in streams))]
    mixed = [replay(tuple([p[i] for i in rng.permutation(len(p))] for p in streams), sampling) for _ in range(count)]
    return offsets, mixed


def rate(trials: list, decision: str = FASTER) -> float:
    return sum(t.decision == decision for t in trials) / len(trials)


def upper(trials: list) -> float:
    """95% upper bound of the acceptance rate (Clopper-Pearson)."""
    return stats.binomtest(sum(t.decision == FASTER for t in trials), len(trials)).proportion_ci(0.95).high


def rules(args) -> dict[str, tuple[Sampling, tuple[float, ...]]]:
    """Each replayed rule: its Sampling and the value lengths it uses, shortest first."""
    new = {f"seq {label(short)}": (Settings().sampling(), (short, args.sample_seconds)) for short in args.short_seconds}
    return {"today": (TODAY, (args.sample_seconds,)), **new}


def noise_floors(cases: dict, args) -> dict[float, float]:
    """Per workload size, the A/A pair spread perfagent would measure at baseline (its first 10 pairs of long values),
    which the sequential rule takes as the least spread of log speedups."""
    floors = {}
    for (seconds, effect), seqs in cases.items():
        if effect == "A/A":
            pairs = np.array(streams_for(seqs, (args.sample_seconds,))[0][:10])
            floors[seconds] = measure_noise(pairs[:, 0], pairs[:, 2], Sampling.max_samples).pair_spread
    return floors


def analyse(data: dict, args) -> dict:
    """Per (workload, effect, rule): (offset trials, shuffled trials)."""
    cases: dict[tuple, list] = {}
    for seq in data["sequences"]:
        cases.setdefault((seq["seconds"], seq["effect"]), []).append(seq)
    floors = noise_floors(cases, args)
    print("\nnoise floors (A/A pair spread at baseline): "
          + ", ".join(f"{label(s)} {f:.1%}" for s, f in floors.items()))
    print(f"\ndecisions, per rule: 'today' is the paired rule before (first look at 10 pairs of "
          f"{label(args.sample_seconds)} values, 1 warm-up pair); 'seq X' is the sequential rule\n(Settings().sampling()) "
          f"starting with values of X."
          f" Trials start at every recorded pair (offset) and on shuffled pairs ({args.shuffled} per case).\n"
          f"pairs and seconds are medians over offset trials; seconds = wall time of the processes used; <=5: share "
          f"decided within 5 pairs.")
    print(f"{'workload':>8}  {'effect':>6}  {'rule':<10}  {'trials':>6}  {'accepted':>8}  {'not faster':>10}  "
          f"{'undecided':>9}  {'pairs':>5}  {'<=5':>4}  {'seconds':>7}  {'shuffled':>8}")
    results = {}
    with ProcessPoolExecutor() as pool:  # the replay takes minutes: use every core
        jobs = [(key, name, pool.submit(trials, streams, replace(sampling, noise_floor=floors.get(key[0], 0.0))
                                        if sampling.test == "sequential" else sampling, args.shuffled))
                for key, seqs in cases.items() for name, (sampling, lengths) in rules(args).items()
                if (streams := streams_for(seqs, lengths))]
        for (seconds, effect), name, job in jobs:
            offsets, mixed = results[seconds, effect, name] = job.result()
            accepted, rejected = rate(offsets), rate(offsets, NOT_FASTER)
            print(f"{label(seconds):>8}  {effect:>6}  {name:<10}  {len(offsets):>6}  {accepted:>8.1%}  "
                  f"{rejected:>10.1%}  {1 - accepted - rejected:>9.1%}  {np.median([t.pairs for t in offsets]):>5.0f}  "
                  f"{np.mean([t.pairs <= 5 and t.decision != UNDECIDED for t in offsets]):>4.0%}  "
                  f"{np.median([t.seconds for t in offsets]):>7.1f}  {rate(mixed):>8.1%}")
    return results


def verdicts(results: dict, args) -> None:
    """The targets of issue 15, per rule; each detection and speed target must hold on offset and shuffled trials."""
    sizes = sorted({s for s, _, _ in results})

    def both(seconds, effect, name):
        return results.get((seconds, effect, name), ([], []))

    def median_seconds(seconds, effect, name):
        return np.median([t.seconds for t in both(seconds, effect, name)[0]])

    print()
    for name in rules(args):
        aa = [t for s in sizes for t in both(s, "A/A", name)[1]]
        aa_offsets = [t for s in sizes for t in both(s, "A/A", name)[0]]
        if aa:
            met = max(rate(aa), rate(aa_offsets)) < 0.01
            print(f"{name}: false acceptance {rate(aa_offsets):.1%} of {len(aa_offsets)} offset trials, "
                  f"{rate(aa):.1%} of {len(aa)} shuffled (95% upper bound {upper(aa + aa_offsets):.1%}); "
                  f"target < 1%: {'MET' if met else 'NOT MET'}")
        for effect, need, where in (("10%", 0.99, sizes), ("5%", 0.95, [s for s in sizes if s >= 0.05])):
            got = {s: min(rate(both(s, effect, name)[0]), rate(both(s, effect, name)[1]))
                   for s in where if both(s, effect, name)[0]}
            if got:
                print(f"{name}: {effect} detected " + ", ".join(f"{label(s)} {r:.0%}" for s, r in got.items())
                      + f"; target >= {need:.0%}: {'MET' if min(got.values()) >= need else 'NOT MET'}")
        if name == "today":
            continue
        fast = {(s, e): min(np.mean([t.pairs <= 5 and t.decision != UNDECIDED for t in v]) for v in both(s, e, name))
                for s in sizes for e in ("2x", "0.5x") if both(s, e, name)[0]}
        if fast:
            print(f"{name}: 2x / 0.5x decided within 5 pairs " + ", ".join(f"{label(s)} {e} {r:.0%}" for (s, e), r in
                                                                         fast.items())
                  + f"; target >= 95%: {'MET' if min(fast.values()) >= 0.95 else 'NOT MET'}")
        for effects, need in ((("2x", "0.5x"), 0.20), (("10%",), 0.60)):
            ratios = {(s, e): median_seconds(s, e, name) / median_seconds(s, e, "today")
                      for s in sizes for e in effects if both(s, e, name)[0]}
            if ratios:
                print(f"{name}: median seconds per decision / today's: "
                      + ", ".join(f"{label(s)} {e} {r:.0%}" for (s, e), r in ratios.items())
                      + f"; target <= {need:.0%}: {'MET' if max(ratios.values()) <= need else 'NOT MET'}")


def markdown(results: dict, args) -> None:
    """docs/development.md's table: per workload size and rule, the targets' figures and median seconds per effect."""
    sizes = sorted({s for s, _, _ in results})
    effects = [e for e in EFFECTS if any((s, e, "today") in results for s in sizes)]
    print("\n| workload | rule | false acceptance (A/A), 95% upper bound | 10% detected | 5% detected | 2x / 0.5x "
          "decided within 5 pairs | median seconds per decision: " + ", ".join(effects)
          + " |\n|---|---|---|---|---|---|---|")
    for s in sizes:
        for name in rules(args):
            def got(effect):
                pair = results.get((s, effect, name))
                return pair[0] + pair[1] if pair else None
            aa = got("A/A")
            cells = [f"{sum(t.decision == FASTER for t in aa)} of {len(aa)} ({upper(aa):.1%})" if aa else "-"]
            cells += [f"{min(rate(results[s, e, name][0]), rate(results[s, e, name][1])):.0%}" if got(e) else "-"
                      for e in ("10%", "5%")]
            cells.append(" / ".join(f"{np.mean([t.pairs <= 5 and t.decision != UNDECIDED for t in got(e)]):.0%}"
                                    if got(e) else "-" for e in ("2x", "0.5x")))
            cells.append(" / ".join(f"{np.median([t.seconds for t in results[s, e, name][0]]):.1f}" if got(e) else "-"
                                    for e in effects))
            print(f"| {label(s)} | {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[0.005, 0.05, 1.0],
                        help="seconds per workload() call")
    parser.add_argument("--sample-seconds", type=float, default=Settings.model_fields["sample_seconds"].default,
                        help="target duration of one timing sample (perfagent's sample_seconds)")
    parser.add_argument("--effects", nargs="+", default=list(EFFECTS), choices=list(EFFECTS),
                        help="cases to record (A/A is identical code)")
    parser.add_argument("--lengths", type=float, nargs="+", default=list(LENGTHS),
                        help="value lengths to record (seconds of calls behind one value)")
    parser.add_argument("--pairs", type=int, default=50, help="pairs recorded per case with short values")
    parser.add_argument("--long-pairs", type=int, default=42,
                        help="pairs recorded per case with values of --sample-seconds")
    parser.add_argument("--short-seconds", type=float, nargs="+",
                        default=[Settings.model_fields["short_sample_seconds"].default],
                        help="short value lengths to replay the sequential rule with (each must be recorded)")
    parser.add_argument("--shuffled", type=int, default=300, help="shuffled-order trials per case")
    parser.add_argument("--data", default="/tmp/perfagent-measurement.json", help="recorded samples (JSON)")
    parser.add_argument("--replay", action="store_true", help="analyse --data instead of recording")
    args = parser.parse_args()
    data = json.loads(Path(args.data).read_text()) if args.replay else record(args)
    describe_sequences(data)
    results = analyse(data, args)
    verdicts(results, args)
    markdown(results, args)


if __name__ == "__main__":
    main()
