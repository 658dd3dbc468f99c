"""Regenerate workloads/tasks.jsonl, the bundled batch-mode tasks, from their sources.

Every task has a folder workloads/task-sources/<instance_id>/ holding
- workload.py: its SWE-fficiency-style benchmark (setup(), workload(), then the top-level timeit loop);
- expert.txt: the expert optimisation, as SEARCH/REPLACE blocks against the bundled example repository.
TASKS below names each task's repository, covering tests and edited functions. For every task this script builds the
repository with repos/examples.build (fixed commit id) and its extensions in place (repos/builds.py: the compiled
example, nearby, is a Cython one), applies the expert edits and takes `git diff` as the patch,
collects the covering tests' node ids (PASS_TO_PASS), checks that those tests pass with the patch and that workload()
returns the same result with and without it, and times workload() at both states with perfagent's workload runner
(the lower quartile of --loops calls in one process, each after its own setup()). Only the timings (gold_speedup, pre_edit_runtime) differ from one run
to the next.

    python benchmarks/make_tasks.py [--loops 15] [--output workloads/tasks.jsonl] [--only INSTANCE_ID ...]

With --only, those tasks' records are made again and the output file's other records are kept as they are.

A development script: it reads the package (repos/examples.py, the edits, the workload runner) and is not part of it.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from perfagent.config import Settings
from perfagent.edits.search_replace import apply_edits, parse_edits
from perfagent.measure.compare import compare_results
from perfagent.measure.workload import Workload, WorkloadRunner
from perfagent.repos import examples
from perfagent.repos.builds import detect

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "workloads"
SOURCES = WORKLOADS / "task-sources"
# git without the user's configuration (diff prefixes, context size, algorithm...), so patches are reproducible
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
DIFF = ["diff", "--no-color", "--no-ext-diff", "--no-renames", "-U3", "--diff-algorithm=myers", "--abbrev=10",
        "--src-prefix=a/", "--dst-prefix=b/"]

TASKS = {
    "perfagent-examples__inventory-1": {
        "repo": "inventory", "covering_tests": ["tests/test_catalog.py", "tests/test_orders.py"],
        "edited_functions": ["inventory/catalog.py::Catalog.__init__", "inventory/catalog.py::Catalog.add",
                             "inventory/catalog.py::Catalog.get"]},
    "perfagent-examples__inventory-2": {
        "repo": "inventory", "covering_tests": ["tests/test_orders.py"],
        "edited_functions": ["inventory/orders.py::unique_customers", "inventory/orders.py::repeat_customers"]},
    "perfagent-examples__inventory-3": {
        "repo": "inventory", "covering_tests": ["tests/test_forecast.py"],
        "edited_functions": ["inventory/forecast.py::rolling_demand"]},
    "perfagent-examples__graphkit-1": {
        "repo": "graphkit", "covering_tests": ["tests/test_paths.py"],
        "edited_functions": ["graphkit/paths.py::shortest_distances"]},
    "perfagent-examples__graphkit-2": {
        "repo": "graphkit", "covering_tests": ["tests/test_components.py"],
        "edited_functions": ["graphkit/components.py::connected_components"]},
    "perfagent-examples__graphkit-3": {
        "repo": "graphkit", "covering_tests": ["tests/test_ordering.py"],
        "edited_functions": ["graphkit/ordering.py::topological_order"]},
    "perfagent-examples__nearby-1": {
        "repo": "nearby", "covering_tests": ["tests/test_pairs.py"],
        "edited_functions": ["nearby/_core.pyx::count_close_pairs"]},
}


def run(cmd: list[str], cwd: Path, **env: str) -> str:
    """stdout of `cmd`; the repository is importable and pytest loads no plugins of the surrounding environment."""
    full_env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1",
                "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **GIT_ENV, **env}
    done = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def build(repo: Path) -> None:
    """The repository's extensions built in place, as perfagent builds a worktree (none for a pure-Python one)."""
    command = detect(repo, sys.executable).command
    if command:
        run(["/bin/sh", "-c", command], repo)


def expert_patch(instance_id: str, repo: Path) -> str:
    """Apply the task's expert edits to the built repository `repo` and return them as a `git diff`."""
    result = apply_edits(repo, parse_edits((SOURCES / instance_id / "expert.txt").read_text(encoding="utf-8")))
    if not result.ok:
        raise SystemExit(f"{instance_id}: expert edits do not apply: {[f.reason for f in result.failures]}")
    return run(["git", *DIFF], repo)


def collect(repo: Path, test_files: list[str]) -> list[str]:
    out = run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *test_files], repo)
    return [line for line in out.splitlines() if "::" in line]


def runner(repo: Path, workload: Path, tmp: Path) -> WorkloadRunner:
    """perfagent's runner of `workload` on the code in `repo` (it drops the workload's own timeit loop)."""
    return WorkloadRunner(Workload.parse(str(workload), repo), sys.executable, tmp, Settings(isolation="rlimits").limits())


def make_task(instance_id: str, spec: dict, tmp: Path, loops: int) -> dict:
    base, patched = tmp / "base", tmp / "patched"
    base_commit = examples.build(spec["repo"], base)
    examples.build(spec["repo"], patched)
    patch = expert_patch(instance_id, patched)
    build(base)
    build(patched)
    workload = SOURCES / instance_id / "workload.py"
    tests = collect(base, spec["covering_tests"])
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], patched)
    timer = runner(base, workload, tmp)
    before, after = timer.results(base)[0], timer.results(patched)[0]
    if any(isinstance(r, dict) and r.get("$") == "exception" for r in before.values()) or \
            not compare_results(before, after).equal:
        raise SystemExit(f"{instance_id}: the expert patch changes the workload's result (or it raises)")
    pre, post = timer.sample(base, loops).wall, timer.sample(patched, loops).wall
    print(f"{instance_id}: {pre * 1e3:.1f} ms -> {post * 1e3:.1f} ms ({pre / post:.1f}x)", file=sys.stderr)
    return {
        "instance_id": instance_id,
        "repo": f"{examples.OWNER}/{spec['repo']}",
        "base_commit": base_commit,
        "patch": patch,
        "test_patch": "",
        "workload": workload.read_text(encoding="utf-8"),
        "edited_files": run(["git", *DIFF, "--name-only"], patched).split(),
        "edited_functions": spec["edited_functions"],
        "covering_tests": spec["covering_tests"],
        "PASS_TO_PASS": tests,
        "gold_speedup": round(pre / post, 2),
        "pre_edit_runtime": round(pre, 5),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=WORKLOADS / "tasks.jsonl")
    parser.add_argument("--loops", type=int, default=15, help="timed workload() calls per state")
    parser.add_argument("--only", nargs="+", choices=list(TASKS), help="make these tasks' records again, keep the rest")
    args = parser.parse_args()
    kept = {} if not args.only or not args.output.exists() else \
        {r["instance_id"]: r for r in map(json.loads, args.output.read_text(encoding="utf-8").splitlines())}
    records = []
    for instance_id, spec in TASKS.items():
        if instance_id in kept and instance_id not in args.only:
            records.append(kept[instance_id])
            continue
        with tempfile.TemporaryDirectory(prefix="perfagent-task-") as tmp:
            records.append(make_task(instance_id, spec, Path(tmp), args.loops))
    args.output.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    print(f"wrote {len(records)} tasks to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
