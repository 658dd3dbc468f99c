"""Benchmark: perfagent on real repositories at their real size, with a perfect model and no named tests.

    python benchmarks/real_repos.py TASKS.jsonl [TASKS.jsonl ...] --repo-cache DIR --out DIR
        [--env-cache DIR] [--ids ID ...] [--skip-evaluate] [--skip-warm]

For each task file, three steps through the installed `perfagent` command:
1. cold: `perfagent batch --model oracle --select-tests --max-iterations 1` with an empty baseline cache: each task's
   expert patch is the model's one reply, and perfagent chooses the tests itself;
2. warm: the same batch again, with the cache the cold run filled (a second run on the same commit);
3. `perfagent evaluate` of the cold run's predictions (the committed oracle patches) against the experts.
Per task it prints: seconds from the run's start to the first verdict (cold, warm), the cold run's total seconds,
how many test files were selected, whether the task's covering test file is among them (for a task that lists none,
any file in the `tests/` folder next to an edited file counts), the expert patch's verdict and speedup in the loop,
and evaluate's speedup ratio; then the harmonic mean of the ratios.

Targets (2-core machine): first verdict within 300 s cold and 90 s warm; the covering file selected on at least 90% of
tasks; the expert patch accepted on every task whose workload exercises the change; harmonic-mean ratio >= 0.9 on
those tasks.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path, PurePosixPath

from scipy import stats

from batch_runs import first_verdict as _first_verdict, perfagent as _perfagent, summary as _summary


def _covering_selected(task: dict, selected: list[str]) -> bool:
    covering = task.get("covering_tests") or []
    if covering:
        return any(c in selected for c in covering)
    folders = {(PurePosixPath(f).parent / "tests").as_posix() for f in task.get("edited_files") or []}
    return any(PurePosixPath(s).parent.as_posix() in folders for s in selected)


def run_file(tasks_file: Path, args) -> list[dict]:
    name = tasks_file.stem
    folder = args.out / name
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [json.loads(line) for line in tasks_file.read_text().splitlines() if line.strip()]
    if args.ids:
        tasks = [t for t in tasks if t["instance_id"] in args.ids]
    subset = folder / "tasks.jsonl"
    subset.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    cache = folder / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    common = ["--repo-cache", str(args.repo_cache), "--env-cache", str(args.env_cache)]
    batch = ["batch", str(subset), "--model", "oracle", "--select-tests", "--max-iterations", "1", *common]
    for phase in ("cold",) if args.skip_warm else ("cold", "warm"):
        shutil.rmtree(folder / phase, ignore_errors=True)
        _perfagent([*batch, "--out", str(folder / phase)], cache, folder / f"{phase}.log")
    if not args.skip_evaluate:
        shutil.rmtree(folder / "eval", ignore_errors=True)
        _perfagent(["evaluate", str(subset), "--predictions", str(folder / "cold" / "predictions.jsonl"),
                    "--out", str(folder / "eval"), *common], cache, folder / "eval.log")
    evaluated = {}
    for line in (folder / "eval" / "evaluation.jsonl").read_text().splitlines() if (folder / "eval").exists() else []:
        row = json.loads(line)
        evaluated[row.get("instance_id")] = row
    rows = []
    for task in tasks:
        cold, warm = _summary(folder / "cold", task["instance_id"]), _summary(folder / "warm", task["instance_id"])
        candidate = (cold.get("candidates") or [{}])[0]
        verdict = candidate.get("verdict") or {}
        selected = (cold.get("tests") or {}).get("files") or {}
        row = evaluated.get(task["instance_id"], {})
        rows.append({"task": task["instance_id"], "first_cold_s": _first_verdict(cold),
                     "first_warm_s": _first_verdict(warm), "total_s": cold.get("elapsed_s"),
                     "files": len(selected), "covering": _covering_selected(task, list(selected)),
                     "verdict": verdict.get("reason") or cold.get("error") or cold.get("status"),
                     "speedup": (verdict.get("speed") or {}).get("speedup"), "ratio": row.get("ratio"),
                     "expert_eval": (row.get("expert") or {}).get("speedup"),
                     "expert_ci_low": (row.get("expert") or {}).get("ci_low"), "eval_error": row.get("error")})
    return rows


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", nargs="+", type=Path)
    parser.add_argument("--repo-cache", type=Path, required=True)
    parser.add_argument("--env-cache", type=Path, default=Path("~/.cache/perfagent/envs").expanduser())
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ids", nargs="*")
    parser.add_argument("--skip-evaluate", action="store_true")
    parser.add_argument("--skip-warm", action="store_true", help="one batch run, on a cold perfagent cache")
    args = parser.parse_args()
    print(f"{'task':28} {'1st cold':>8} {'1st warm':>8} {'total':>6} {'files':>5} {'cover':>5} "
          f"{'verdict':24} {'speedup':>8} {'expert':>7} {'ratio':>6}")
    for tasks_file in args.tasks:
        rows = run_file(tasks_file, args)
        (args.out / tasks_file.stem / "rows.json").write_text(json.dumps(rows, indent=1))
        for r in rows:
            print(f"{r['task']:28} {_fmt(r['first_cold_s'], '8.0f')} {_fmt(r['first_warm_s'], '8.0f')} "
                  f"{_fmt(r['total_s'], '6.0f')} {r['files']:5d} {'yes' if r['covering'] else 'no':>5} "
                  f"{str(r['verdict'])[:24]:24} {_fmt(r['speedup'], '7.2f')}x {_fmt(r['expert_eval'], '6.2f')}x "
                  f"{_fmt(r['ratio'], '6.2f')}")
        exercised = [r for r in rows if r["expert_ci_low"] and r["expert_ci_low"] > 1.0 and r["ratio"]]
        covered = sum(r["covering"] for r in rows)
        print(f"{tasks_file.stem}: covering file selected on {covered} of {len(rows)} tasks; harmonic-mean ratio "
              f"{_fmt(stats.hmean([r['ratio'] for r in exercised]) if exercised else None, '.2f')} over the "
              f"{len(exercised)} task(s) whose expert speedup's interval is above 1.0 "
              f"({', '.join(r['task'] for r in exercised)})")


if __name__ == "__main__":
    main()
