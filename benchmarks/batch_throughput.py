"""Benchmark: batch throughput (tasks per hour) on the bundled tasks with 1 and 2 workers.

    python benchmarks/batch_throughput.py [--workers 1 2] [--executor local] [--set KEY=VALUE ...]   (~10 min)

Runs `perfagent batch` on workloads/tasks.jsonl with the recorded sessions (scripted model), once per worker count,
each into a fresh output folder; the repository and environment caches are built first, outside the timed runs (as
in a long batch, where they are built once). Prints wall time, tasks per hour, and the speedup each run's accepted
patches reached (so a faster run that measured worse is visible). Each worker owns its cores, so 2 workers on a
2-core machine trade timing quality for throughput only through shared caches and memory bandwidth.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perfagent.record import read_jsonl

ROOT = Path(__file__).resolve().parent.parent

TASKS = ROOT / "workloads" / "tasks.jsonl"
SESSIONS = ROOT / "workloads" / "sessions"


def batch(out: Path, workers: int, caches: list[str], extra: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "perfagent", "batch", str(TASKS), "--model", f"scripted:{SESSIONS}",
                    "--out", str(out), "--workers", str(workers), *caches, *extra], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--executor", default="local")
    parser.add_argument("--set", action="append", default=[], help="optimize settings for every task")
    args = parser.parse_args()
    extra = ["--executor", args.executor] + [a for s in args.set for a in ("--set", s)]
    with tempfile.TemporaryDirectory(prefix="perfagent-throughput-") as tmp:
        tmp = Path(tmp)
        caches = ["--repo-cache", str(tmp / "repos"), "--env-cache", str(tmp / "envs")]
        warm = batch(tmp / "warm-up", 1, caches, ["--max-iterations", "1"])
        print(f"warm-up (builds caches, 1 candidate per task): {warm:.0f} s")
        tasks = len(TASKS.read_text().splitlines())
        print(f"{'workers':>7}  {'tasks':>5}  {'seconds':>7}  {'tasks/hour':>10}  {'failed':>6}  speedups")
        for workers in args.workers:
            out = tmp / f"w{workers}"
            seconds = batch(out, workers, caches, extra)
            results = read_jsonl(out / "results.jsonl")
            failed = sum(r["status"] == "failed" for r in results)
            speedups = " ".join(f"{r['speedup']:.1f}x" if r.get("speedup") else "-" for r in results)
            print(f"{workers:>7}  {tasks:>5}  {seconds:>7.0f}  {tasks * 3600 / seconds:>10.0f}  {failed:>6}  {speedups}")
            print(json.dumps({"workers": workers, "seconds": seconds, "tasks": tasks}), file=sys.stderr)


if __name__ == "__main__":
    main()
