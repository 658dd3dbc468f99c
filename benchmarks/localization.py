"""Benchmark: does perfagent's profile point at the code the expert changed?

    python benchmarks/localization.py TASKS.jsonl --repo-cache DIR [--env-cache DIR | --python PY]
        [--expert-speedups evaluation.jsonl ...] [--seconds 3] [--timeout 600] [--ids ID ...] [--out FILE.json]
    python benchmarks/localization.py TASKS.jsonl --rescore FILE.json [--rank-by self] [--expert-speedups ...]

For each task (SWE-fficiency format, with the expert patch), the workload is profiled at the base commit exactly as
`perfagent optimize` profiles it (profile_workload, in the task's environment). The expert patch's hunks are mapped
to the functions they edit at the base commit (perfagent.localize.source.edited_spans); then, per task:
- rank of each edited function in perfagent's ranking (None: not among the ranked functions);
- hit@k: any edited function is in the top k; recall@k: the share of edited functions in the top k;
- file hit@k / file recall@k: the same for the edited files among the files of the top k functions.
Counted: Python, Cython and C/C++ files of the repository other than tests (a compiled function is ranked when the
profile has native frames, see perfagent.localize.native). A task whose patch edits no function (only imports,
constants, class attributes, or new functions) has no function targets: it counts for the file metrics only.

Whether a workload exercises the change at all is measured, not guessed: `--expert-speedups` takes an
evaluation.jsonl from `perfagent evaluate --gold`; a task whose expert speedup's 95% interval reaches down to 1.0 or
below is "not exercised" (the expert patch does not make this workload faster, so no profile can point at it).
The target metric is the top-5 hit rate over exercised tasks.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


from perfagent.localize import compiled, hotspots as localize
from perfagent.runs.envs import Environments
from perfagent.config import Settings
from perfagent.localize.hotspots import is_repository_code, ProfileOptions, profile_workload
from perfagent.record import read_jsonl
from perfagent.repos.repositories import RepoCache
from perfagent.localize.source import MODULE_LEVEL, SourceIndex, edited_spans
from perfagent.runs.tasks import load_tasks
from perfagent.measure.workload import Workload
from perfagent.sandbox.run import Limits, run_shell

KS = (1, 3, 5, 10)


def exercised_by(paths: list[Path]) -> dict[str, bool | None]:
    """instance_id -> the expert patch speeds the workload up (95% interval above 1.0); None when not measured."""
    verdicts: dict[str, bool | None] = {}
    for row in (row for path in paths for row in read_jsonl(path)):
        expert = row.get("expert")
        verdicts[row["instance_id"]] = expert["ci_low"] > 1.0 if expert else None
    return verdicts


def metrics(ranked_keys: list[str], ranked_files: list[str], targets: list[str], files: list[str]) -> dict:
    """Ranks (1-based) of the target functions and files, and hit/recall at each k."""
    ranks = {t: ranked_keys.index(t) + 1 if t in ranked_keys else None for t in targets}
    first_in_file = {}
    for i, f in enumerate(ranked_files, 1):
        first_in_file.setdefault(f, i)
    file_ranks = {f: first_in_file.get(f) for f in files}
    row: dict = {"ranks": ranks, "file_ranks": file_ranks}
    for k in KS:
        inside = [r is not None and r <= k for r in ranks.values()]
        in_files = [r is not None and r <= k for r in file_ranks.values()]
        row[f"hit@{k}"] = any(inside) if targets else None
        row[f"recall@{k}"] = sum(inside) / len(inside) if targets else None
        row[f"file_hit@{k}"] = any(in_files) if files else None
        row[f"file_recall@{k}"] = sum(in_files) / len(in_files) if files else None
    return row


def localize_task(task, cache: RepoCache, python_for, seconds: float, limits: Limits, use_pyspy: bool) -> dict:
    row: dict = {"instance_id": task.instance_id}
    with cache.checkout(task.repo, task.base_commit) as worktree, tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        python = python_for(task, worktree)
        if task.rebuild_cmd:
            failed = run_shell(task.rebuild_cmd, worktree, python, limits)
            if failed:
                raise RuntimeError(f"the rebuild command failed: {failed}")
        script = tmp / "workload.py"
        script.write_text(task.workload, encoding="utf-8")
        workload = Workload.parse(str(script), worktree)
        index = SourceIndex(worktree)
        edited = [s for s in edited_spans(index, task.patch) if is_repository_code(s.file, workload)
                  and (s.file.endswith(".py") or compiled.suffix(s.file) in compiled.SUFFIXES)]
        targets = [s.key for s in edited if s.qualname != MODULE_LEVEL]
        files = list(dict.fromkeys(s.file for s in edited))
        profile = profile_workload(worktree, workload, python=python, tmp=tmp, limits=limits,
                                   options=ProfileOptions(seconds=seconds, use_pyspy=use_pyspy, limit=None))
    row.update(profiler=profile.profiler, samples=profile.samples, edited=targets, edited_files=files,
               module_level_only=sorted({s.file for s in edited if s.qualname == MODULE_LEVEL} - {
                   s.file for s in edited if s.qualname != MODULE_LEVEL}),
               functions=[(h.key, h.file, h.self_share, h.cum_share, h.depth) for h in profile.hotspots
                          if h.qualname != MODULE_LEVEL])
    return row


def rank(row: dict, rank_by: str) -> dict:
    """Rank the row's profiled functions by perfagent's score (or by self share alone, the earlier ranking) and score
    the edited functions against that ranking."""
    key = {"score": lambda f: localize.score(f[2], f[3], f[4]), "self": lambda f: f[2]}[rank_by]
    ranked = sorted(row["functions"], key=lambda f: (key(f), f[3], f[0]), reverse=True)
    row["top"] = [(f[0], round(f[2], 4), round(f[3], 4)) for f in ranked[:10]]
    row.update(metrics([f[0] for f in ranked], [f[1] for f in ranked], row["edited"], row["edited_files"]))
    return row


def aggregate(rows: list[dict]) -> dict:
    out = {}
    for metric in [f"{m}@{k}" for m in ("hit", "recall", "file_hit", "file_recall") for k in KS]:
        values = [r[metric] for r in rows if r.get(metric) is not None]
        out[metric] = sum(values) / len(values) if values else None
    out["tasks"] = len([r for r in rows if r.get("edited")])
    return out


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def report(rows: list[dict]) -> dict:
    print(f"\n{'task':32} {'exercised':9} {'profiler':8} {'ranks of edited functions':44} file rank")
    for r in rows:
        if "error" in r:
            print(f"{r['instance_id']:32} {_fmt(r.get('exercised')):9} error: {r['error'].splitlines()[0][:90]}")
            continue
        ranks = ", ".join(f"{k.split(':')[-1]}={_fmt(v)}" for k, v in r["ranks"].items()) or "(module level only)"
        files = ", ".join(_fmt(v) for v in r["file_ranks"].values())
        print(f"{r['instance_id']:32} {_fmt(r.get('exercised')):9} {r['profiler']:8} {ranks[:44]:44} {files}")
    ok = [r for r in rows if "error" not in r]
    groups = {"all profiled tasks": ok, "exercised tasks": [r for r in ok if r.get("exercised")]}
    summary = {name: aggregate(group) for name, group in groups.items()}
    for name, agg in summary.items():
        print(f"\n{name} ({agg['tasks']})".ljust(26) + "".join(f"{f'@{k}':>7}" for k in KS))
        for metric in ("hit", "recall", "file_hit", "file_recall"):
            print(f"  {metric.replace('_', ' '):22}" + "".join(f"{_fmt(agg[f'{metric}@{k}']):>7}" for k in KS))
    exercised = summary["exercised tasks"]
    if exercised["tasks"]:
        print(f"\ntarget: expert-edited function in the top 5 for >= 80% of exercised tasks: "
              f"{exercised['hit@5']:.0%} of {exercised['tasks']}")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", type=Path)
    parser.add_argument("--repo-cache", type=Path, default=Path("~/.cache/perfagent/repos"))
    parser.add_argument("--env-cache", type=Path, default=Path("~/.cache/perfagent/envs"))
    parser.add_argument("--python", help="run every task with this interpreter instead of the task environments")
    parser.add_argument("--expert-speedups", type=Path, action="append", default=[],
                        help="evaluation.jsonl of `perfagent evaluate --gold` (repeatable)")
    parser.add_argument("--timeout", type=float, default=600, help="limit for setup() and one workload() call")
    parser.add_argument("--rescore", type=Path, help="rank the profiles of an earlier --out file again instead of "
                        "profiling (e.g. with other --expert-speedups or --rank-by)")
    parser.add_argument("--rank-by", choices=["score", "self"], default="score",
                        help="perfagent's ranking score, or self share alone (the earlier ranking)")
    parser.add_argument("--seconds", type=float, default=3.0, help="profiling time per task (optimize's default)")
    parser.add_argument("--cprofile", action="store_true", help="profile with cProfile instead of py-spy")
    parser.add_argument("--ids", nargs="*", help="only these instance ids")
    parser.add_argument("--out", type=Path, help="write the rows and aggregates as JSON here")
    args = parser.parse_args(argv)

    tasks, bad = load_tasks(args.tasks)
    for record in bad:
        print(f"skipping a bad task record: {record}")
    tasks = [t for t in tasks if not args.ids or t.instance_id in args.ids]
    exercised = exercised_by(args.expert_speedups)
    if args.rescore:
        rows = [r for r in json.loads(args.rescore.read_text())["rows"] if r["instance_id"] in
                {t.instance_id for t in tasks}]
    else:
        cache, envs = RepoCache(args.repo_cache), Environments(args.env_cache)
        python_for = (lambda task, tree: args.python) if args.python else envs.python_for
        limits = Settings().limits(timeout_s=args.timeout)
        rows = []
        for task in tasks:
            try:
                row = localize_task(task, cache, python_for, args.seconds, limits, not args.cprofile)
            except Exception as exc:  # one task's failure is reported, the others still run
                row = {"instance_id": task.instance_id, "error": f"{type(exc).__name__}: {exc}"}
            rows.append(row if "error" in row else rank(row, args.rank_by))
            print(f"{task.instance_id}: " + (row["error"].splitlines()[0][:120] if "error" in row else
                                             f"{row['profiler']}, ranks {row['ranks']}, top {row['top'][:3]}"),
                  flush=True)
    for row in rows:
        if args.rescore and "error" not in row:
            rank(row, args.rank_by)
        row["exercised"] = exercised.get(row["instance_id"])
    summary = report(rows)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"tasks_file": str(args.tasks), "seconds": args.seconds,
                                        "rank_by": args.rank_by, "rows": rows,
                                        "summary": summary, "bad_records": [str(b) for b in bad]}, indent=1))


if __name__ == "__main__":
    main()
