"""Benchmark: perfagent on SWE-fficiency tasks of repositories with compiled extensions (numpy, astropy), with a
perfect model and no named tests, environments built from the package index.

    python benchmarks/compiled_repos.py TASKS.jsonl --repo-cache DIR --env-cache DIR --out DIR
        [--ids ID ...] [--skip-evaluate] [--skip-warm]

TASKS.jsonl comes from make_compiled_tasks.py. Steps, one build at a time (run it under `nice -n 19`):
1. environments: each task's environment is built (cold: the build, timed; an environment already in the cache
   keeps the time recorded when this benchmark built it, in OUT/envs.json) and then taken again for a second
   checkout (warm: the cache's products copied in). A task whose repository does not build is listed with the
   build's first error and left out of what follows;
2. real_repos.py's runs on the tasks that built, plus a test-breaking variant of an expert patch (VARIANTS: the
   expert patch with one more change that the covering tests catch and the workload never meets): `perfagent batch
   --model oracle --select-tests` cold and warm, and `perfagent evaluate`.
Per task it prints the environment's build (cold) and copy (warm) seconds, real_repos.py's columns (first verdict
cold and warm, test files selected, the covering file among them, the expert patch's verdict and speedup, evaluate's
ratio), the build seconds of each candidate's rebuild ("-": no build ran, as for a Python-only edit), and the
profile's first hotspot in compiled code (a .pyx function and its hottest line, or a C function); then the first
compiled hotspot of a workload whose time is inside an extension (NATIVE_PROBES).

Targets: >= 8 tasks that build, the expert patch accepted on >= 6, the covering file selected, the variant
rejected as "tests failed".
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from batch_runs import PERFAGENT, summary as _summary
from real_repos import _fmt, run_file

from perfagent.repos.repositories import RepoCache
from perfagent.runs.envs import BuildError, Environments
from perfagent.runs.tasks import Task

# instance -> (a line the expert patch adds, what the variant adds instead): a change the tests see
VARIANTS = {
    # wrap_at no longer wraps angles that are out of range (test_angles.py checks it); the workload's angles are all
    # within range, so its result is unchanged and it still gains the expert's early return
    "astropy__astropy-16222": ("+        wraps = (self_angle - wrap_angle_floor) // a360\n",
                               "+        wraps = 0 * ((self_angle - wrap_angle_floor) // a360)\n"),
}
BROKEN = "-broken-tests"


def environments(tasks: list[dict], args) -> dict[str, dict]:
    """Build (or take from the cache) each task's environment, cold then warm; OUT/envs.json keeps the results."""
    path = args.out / "envs.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    envs, repos = Environments(args.env_cache), RepoCache(args.repo_cache)
    for record in tasks:
        task = Task.model_validate(record)
        row = known.setdefault(task.instance_id, {})
        for phase in ("cold", "warm"):
            with repos.checkout(task.repo, task.base_commit) as worktree:
                started = time.monotonic()
                try:
                    envs.python_for(task, worktree)
                except BuildError as exc:
                    row.update(error=exc.first_error, detail=str(exc))
                    break
                seconds = round(time.monotonic() - started, 1)
                row.pop("error", None)
                if phase == "warm" or not row.get("cold_s"):  # a cached environment keeps its recorded build
                    row[f"{phase}_s"] = seconds
        print(f"{task.instance_id}: " + (f"does not build: {row['error']}" if row.get("error") else
                                         f"built in {_fmt(row.get('cold_s'), '.0f')} s, "
                                         f"taken warm in {row['warm_s']:.1f} s"), flush=True)
        path.write_text(json.dumps(known, indent=1))
    return known


def variant(record: dict) -> dict | None:
    change = VARIANTS.get(record["instance_id"])
    if not change or change[0] not in record["patch"]:
        return None
    return {**record, "instance_id": record["instance_id"] + BROKEN, "patch": record["patch"].replace(*change)}


def rebuilds(folder: Path, instance_id: str) -> str:
    """Each candidate's build seconds in the cold run ("-": no build ran)."""
    candidates = _summary(folder / "cold", instance_id).get("candidates") or []
    return " ".join(_fmt(c.get("build_s"), ".1f") for c in candidates) or "-"


def native_hotspot(folder: Path, instance_id: str) -> str:
    """The cold run's first hotspot in compiled code (a .pyx or C source), as `file:line function (share)`; "-" when
    the profile placed none there."""
    path = folder / "cold" / "tasks" / instance_id / "run" / "profile-before.json"
    hotspots = json.loads(path.read_text()).get("hotspots") or [] if path.exists() else []
    spot = next((h for h in hotspots if not h["file"].endswith(".py")), None)
    if spot is None:
        return "-"
    line = max(spot["lines"], key=lambda pair: pair[1])[0] if spot["lines"] else spot["start"]
    return f"{spot['file']}:{line} {spot['qualname']} ({spot['cum_share']:.0%})"


# A workload whose time is inside an extension, for a repository of these tasks: astropy's fast CSV reader (the Cython
# CParser of astropy/io/ascii/cparser.pyx and its C tokenizer). The tasks' own workloads mostly spend theirs in Python.
NATIVE_PROBES = {"astropy/astropy": """\
from astropy.io import ascii


def setup():
    global text
    text = "\\n".join(",".join(f"{i * j + 0.5}" for j in range(20)) for i in range(20000))


def workload():
    ascii.read(text, format="csv", fast_reader=True, guess=False)
"""}


def native_probe(tasks: list[dict], args) -> str:
    """`perfagent profile` of NATIVE_PROBES' workload on the first task of its repository (its checkout and
    environment), as `file:line function (share)` of the first compiled hotspot, or why there is none."""
    record = next((t for t in tasks if t["repo"] in NATIVE_PROBES), None)
    if record is None:
        return "no task of a repository with a probe"
    task = Task.model_validate(record)
    with RepoCache(args.repo_cache).checkout(task.repo, task.base_commit) as worktree:
        python = Environments(args.env_cache).python_for(task, worktree)
        probe = worktree.parent / "probe.py"
        probe.write_text(NATIVE_PROBES[task.repo])
        shown = subprocess.run([PERFAGENT, "profile", str(worktree), "-w", str(probe), "--python", python, "--json",
                                "--top", "30"], capture_output=True, text=True)
    if shown.returncode:
        return f"perfagent profile failed: {shown.stderr.strip()[-300:]}"
    hotspots = json.loads(shown.stdout).get("hotspots") or []
    spot = next((h for h in hotspots if not h["file"].endswith(".py")), None)
    if spot is None:
        return "no compiled hotspot"
    line = max(spot["lines"], key=lambda pair: pair[1])[0] if spot["lines"] else spot["start"]
    return f"{task.instance_id}: {spot['file']}:{line} {spot['qualname']} ({spot['cum_share']:.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", type=Path)
    parser.add_argument("--repo-cache", type=Path, required=True)
    parser.add_argument("--env-cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ids", nargs="*")
    parser.add_argument("--skip-evaluate", action="store_true")
    parser.add_argument("--skip-warm", action="store_true", help="one batch run, on a cold perfagent cache")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = [json.loads(line) for line in args.tasks.read_text().splitlines() if line.strip()]
    tasks = [t for t in tasks if not args.ids or t["instance_id"] in args.ids]
    built = environments(tasks, args)
    runnable = [t for t in tasks if not built[t["instance_id"]].get("error")]
    runnable += [v for v in map(variant, runnable) if v]
    subset = args.out / "compiled.jsonl"
    subset.write_text("".join(json.dumps(t) + "\n" for t in runnable))
    args.ids = None
    rows = run_file(subset, args)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    folder = args.out / subset.stem
    print(f"\n{'task':34} {'env cold':>8} {'warm':>5} {'1st cold':>8} {'1st warm':>8} {'files':>5} {'cover':>5} "
          f"{'verdict':24} {'speedup':>8} {'ratio':>6}  rebuilds (s)  compiled hotspot")
    for r in rows:
        env = built.get(r["task"].removesuffix(BROKEN), {})
        print(f"{r['task']:34} {_fmt(env.get('cold_s'), '8.0f')} {_fmt(env.get('warm_s'), '5.1f')} "
              f"{_fmt(r['first_cold_s'], '8.0f')} {_fmt(r['first_warm_s'], '8.0f')} {r['files']:5d} "
              f"{'yes' if r['covering'] else 'no':>5} {str(r['verdict'])[:24]:24} {_fmt(r['speedup'], '7.2f')}x "
              f"{_fmt(r['ratio'], '6.2f')}  {rebuilds(folder, r['task']):12}  {native_hotspot(folder, r['task'])}")
    accepted = sum(r["verdict"] == "accepted" for r in rows if not r["task"].endswith(BROKEN))
    print(f"expert patch accepted on {accepted} of {len(rows) - sum(r['task'].endswith(BROKEN) for r in rows)} tasks "
          f"that build; variants: " + ", ".join(f"{r['task']} {r['verdict']}" for r in rows
                                                if r["task"].endswith(BROKEN)))
    print(f"hotspot of a workload whose time is inside an extension: {native_probe(runnable, args)}")
    failed = {i: e for i, e in built.items() if e.get("error")}
    for instance_id, row in failed.items():
        print(f"does not build here: {instance_id}: {row['error']}")


if __name__ == "__main__":
    main()
