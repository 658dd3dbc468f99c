"""Benchmark: py-spy's overhead on the bundled example workload, and perfagent's own orchestration overhead.

    python benchmarks/overhead.py [--pairs 15]

1. py-spy: the example workload's per-call time in one long-running process, with py-spy attached (at perfagent's
   sampling rate) in every other window. Target: under 5% slower when profiled.
2. Orchestration: `perfagent optimize` on the example with the recorded session; for every iteration, the seconds
   perfagent spent itself (wall time minus child processes minus model calls) against the seconds in child
   processes. Target: under 10%.
3. Sandbox start: per isolation level, the median seconds of a sandboxed `python -c pass` (launcher, namespaces,
   Landlock, behaviour monitor, private TMPDIR, wait) against the same command started directly, interleaved.
4. With `--against REV`: what this code's checks cost against an earlier revision's (e.g. the one before the
   verdict stopped trusting the candidate's process: kernel-stamped calls, per-call result digests, the worktree
   compared after every run, the canary test, compiled bytecode, the kernel's counts): `perfagent demo` run by
   each in turn (`--rounds` times, alternating), its wall time and each candidate's seconds to its verdict, side by
   side, with the verdicts (which must not differ). REV is installed in its own venv under a temporary folder.
Each is a ratio or difference measured side by side in one run, so machine noise hits both sides alike.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent

EXAMPLE = ROOT / "workloads" / "textstats"


def example_repo(tmp: Path) -> Path:
    repo = tmp / "textstats"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(repo), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "example"], check=True)
    return repo


CALL_LOGGER = """
import json, sys, time
sys.path.insert(0, {repo!r})
import workload
workload.setup()
calls, deadline = [], time.monotonic() + {seconds}
print("ready", flush=True)
while time.monotonic() < deadline:
    start = time.monotonic()
    workload.workload()
    calls.append((start, time.monotonic()))
json.dump(calls, open({out!r}, "w"))
"""


def pyspy_overhead(repo: Path, tmp: Path, pairs: int, window: float = 2.0) -> None:
    """One long-running workload process; py-spy attaches for every other window (ABBA order). Comparing adjacent
    windows of the same process cancels the machine's slow swings between faster and slower phases."""
    out = tmp / "calls.json"
    script = CALL_LOGGER.format(repo=str(repo), seconds=2 * pairs * (window + 0.5) + 5, out=str(out))
    child = subprocess.Popen([sys.executable, "-c", script], cwd=repo, stdout=subprocess.PIPE, text=True)
    child.stdout.readline()
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    windows = []  # (start, end, profiled)
    for i in range(2 * pairs):
        profiled = i % 4 in (1, 2)
        start = time.monotonic()
        if profiled:
            subprocess.run([pyspy, "record", "--pid", str(child.pid), "--duration", str(int(window)), "--rate", "200",
                            "-f", "raw", "-o", str(tmp / "attach.raw")], check=True, capture_output=True)
        else:
            time.sleep(window)
        windows.append((start, time.monotonic(), profiled))
        time.sleep(0.2)
    child.wait()
    calls = json.loads(out.read_text())

    def mean_call(start, end):
        inside = [b - a for a, b in calls if a >= start and b <= end]
        return sum(inside) / len(inside) if inside else None

    ratios = []
    for k in range(0, len(windows) - 1, 2):
        a, b = windows[k], windows[k + 1]
        plain, profiled = (a, b) if b[2] else (b, a)
        p, q = mean_call(*plain[:2]), mean_call(*profiled[:2])
        if p and q:
            ratios.append(q / p)
    ci = stats.bootstrap((np.array(ratios),), np.median, confidence_level=0.95,
                         random_state=np.random.default_rng(0)).confidence_interval
    print(f"py-spy overhead: {np.median(ratios) - 1:+.1%} per workload call (95% CI {ci.low - 1:+.1%} to "
          f"{ci.high - 1:+.1%}; {len(ratios)} window pairs of {window:.0f} s, rate 200 Hz, attached to one "
          f"process)  target < +5%")


def orchestration_overhead(repo: Path, tmp: Path) -> None:
    out = tmp / "run"
    session = EXAMPLE.parent / "textstats.session.json"
    subprocess.run([sys.executable, "-m", "perfagent", "optimize", str(repo), "-w", "workload.py", "-m",
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


def sandbox_start(tmp: Path, rounds: int = 30) -> None:
    from perfagent.sandbox import isolation
    from perfagent.config import Settings
    from perfagent.sandbox.run import run

    argv = [sys.executable, "-c", "pass"]
    levels = [level for level in isolation.LEVELS if isolation.available(level)]
    seconds: dict[str, list[float]] = {level: [] for level in ["direct", *levels]}
    for _ in range(rounds):
        for level in seconds:
            start = time.perf_counter()
            if level == "direct":
                subprocess.run(argv, check=True)
            else:
                assert run(argv, cwd=tmp, limits=Settings().limits(timeout_s=60, isolation=isolation.choose(level))).ok
            seconds[level].append(time.perf_counter() - start)
    direct = float(np.median(seconds["direct"]))
    print(f"sandbox start ({rounds} rounds, median): direct {direct * 1000:.0f} ms; " + "; ".join(
        f"{level} +{(np.median(seconds[level]) - direct) * 1000:.0f} ms" for level in levels))


def _install(rev: str, tmp: Path) -> Path:
    """`perfagent` of revision `rev`, installed in a venv of its own: the program's path."""
    source, venv = tmp / f"src-{rev}", tmp / f"venv-{rev}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach", str(source), rev], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"), "-e", str(source)],
                   check=True)
    return venv / "bin" / "perfagent"


def _demo(program: list[str], folder: Path) -> tuple[float, list[tuple[str, float]], dict[str, float]]:
    """One `perfagent demo` in a fresh folder: its wall seconds, per candidate (verdict, seconds of its iteration),
    and the candidates' seconds summed by where they went (child processes, perfagent's own)."""
    folder.mkdir()
    start = time.perf_counter()
    subprocess.run([*program, "demo"], cwd=folder, check=True, capture_output=True)
    wall = time.perf_counter() - start
    summary = json.loads((folder / "perfagent-demo-run" / "summary.json").read_text())
    split = {part: sum(c["seconds"][part] for c in summary["candidates"]) for part in ("child_processes", "perfagent")}
    return wall, [(c["verdict"]["reason"], c["seconds"]["wall"]) for c in summary["candidates"]], split


def against(rev: str, tmp: Path, rounds: int) -> None:
    old = [str(_install(rev, tmp))]
    try:
        new = [sys.executable, "-m", "perfagent"]
        runs: dict[str, list] = {"old": [], "new": []}
        for k in range(rounds):
            for side in (("old", "new") if k % 2 == 0 else ("new", "old")):
                runs[side].append(_demo(old if side == "old" else new, tmp / f"demo-{side}-{k}"))
        for side in runs:
            walls = [w for w, _, _ in runs[side]]
            child, own = (np.median([split[part] for _, _, split in runs[side]]) for part in ("child_processes",
                                                                                                "perfagent"))
            print(f"demo wall time, {'revision ' + rev if side == 'old' else 'this code'}: "
                  + ", ".join(f"{w:.0f} s" for w in walls) + f" (median {np.median(walls):.0f} s; the candidates' "
                  f"child processes {child:.0f} s, perfagent's own {own:.1f} s)")
        print("per candidate, seconds of its iteration (median over rounds), revision " + rev + " / this code:")
        verdicts = {side: [[v for v, _ in cands] for _, cands, _ in runs[side]] for side in runs}
        for i, (reason, _) in enumerate(runs["new"][0][1]):
            seconds = {side: np.median([cands[i][1] for _, cands, _ in runs[side] if i < len(cands)]) for side in runs}
            print(f"  {i + 1} {reason:24} {seconds['old']:6.1f} / {seconds['new']:6.1f} s "
                  f"({seconds['new'] / seconds['old'] - 1:+.0%})")
        same = all(v == verdicts["old"][0] for v in verdicts["old"] + verdicts["new"])
        print(f"verdicts {'the same in every run' if same else 'DIFFER: ' + repr(verdicts)}")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / f"src-{rev}")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--against", metavar="REV", help="compare the demo's cost with this revision's (only that)")
    parser.add_argument("--rounds", type=int, default=2, help="with --against: demo runs per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.against:
            against(args.against, tmp, args.rounds)
            return
        repo = example_repo(tmp)
        sandbox_start(tmp)
        pyspy_overhead(repo, tmp, args.pairs)
        orchestration_overhead(repo, tmp)


if __name__ == "__main__":
    main()
