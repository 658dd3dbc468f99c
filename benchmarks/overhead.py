"""Benchmark: py-spy's overhead on the bundled example workload, and perfagent's own orchestration overhead.

    python benchmarks/overhead.py [--pairs 15]

1. py-spy: the example workload's per-call time measured inside fresh processes, alternating plain runs with runs
   under `py-spy record` at perfagent's sampling rate. Target: under 5% slower when profiled.
2. Orchestration: `perfagent optimize` on the example with the recorded session; for every iteration, the seconds
   perfagent spent itself (wall time minus child processes minus model calls) against the seconds in child
   processes. Target: under 10%.
Both are ratios measured side by side in one run, so machine noise hits both sides alike.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox import HARNESS  # noqa: E402
from sandbox.measure import speed_stats  # noqa: E402

EXAMPLE = ROOT / "workloads" / "textstats"


def example_repo(tmp: Path) -> Path:
    repo = tmp / "textstats"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "example"], check=True)
    return repo


def per_call(repo: Path, out: Path, loops: int, pyspy: bool) -> float:
    argv = [sys.executable, str(HARNESS), "time", str(repo / "workload.py"), str(out), str(loops)]
    if pyspy:
        pyspy_bin = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        argv = [pyspy_bin, "record", "-f", "raw", "--full-filenames", "--rate", "200", "-o", str(out) + ".raw",
                "--", *argv]
    subprocess.run(argv, cwd=repo, check=True, capture_output=True, env={"PATH": "/usr/bin:/bin",
                                                                         "PYTHONPATH": str(repo)})
    wall = json.loads(out.read_text())["wall"]
    return sorted(wall)[len(wall) // 2]


def pyspy_overhead(repo: Path, tmp: Path, pairs: int) -> None:
    plain, profiled = [], []
    for i in range(pairs):
        order = [(plain, False), (profiled, True)] if i % 2 == 0 else [(profiled, True), (plain, False)]
        for samples, pyspy in order:
            samples.append(per_call(repo, tmp / "t.json", 10, pyspy))
    s = speed_stats(profiled, plain, min_effect=0.0)
    print(f"py-spy overhead: {s.speedup - 1:+.1%} per workload call (95% CI {s.ci_low - 1:+.1%} to "
          f"{s.ci_high - 1:+.1%}; plain {s.cand_median * 1000:.1f} ms, profiled {s.base_median * 1000:.1f} ms; "
          f"{pairs} pairs, 10 calls each)  target < +5%")


def orchestration_overhead(repo: Path, tmp: Path) -> None:
    out = tmp / "run"
    session = EXAMPLE.parent / "textstats.session.json"
    subprocess.run([sys.executable, "-m", "agent.cli", "optimize", str(repo), "-w", "workload.py", "-m",
                    f"scripted:{session}", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    candidates = json.loads((out / "summary.json").read_text())["candidates"]
    print("orchestration overhead per iteration (perfagent's own seconds / child-process seconds):")
    for c in candidates:
        t = c["seconds"]
        print(f"  {c['n']}: {t['perfagent']:.2f} s / {t['child_processes']:.2f} s = "
              f"{t['perfagent'] / max(t['child_processes'], 1e-9):.1%}  ({c['verdict']['reason']})")
    own = sum(c["seconds"]["perfagent"] for c in candidates)
    child = sum(c["seconds"]["child_processes"] for c in candidates)
    print(f"  all iterations: {own:.2f} s / {child:.2f} s = {own / child:.1%}  target < 10%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = example_repo(tmp)
        pyspy_overhead(repo, tmp, args.pairs)
        orchestration_overhead(repo, tmp)


if __name__ == "__main__":
    main()
