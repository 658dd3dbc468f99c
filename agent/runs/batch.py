"""perfagent batch: the optimize loop over every task of a task file.

Output folder:
  predictions.jsonl   one line per finished task, SWE-fficiency's format (instance_id, model_patch, model_name_or_path)
  results.jsonl       the same tasks with status, accepted patches, speedup, spend, error
  tasks/<id>/         the task's workload, log, run record (summary.json, trajectory.json, profiles)
  spend.json          model calls and cost of the whole batch (the shared budget's ledger)
  bad_records.json    task-file records that failed validation
A task counts as done once its line is in predictions.jsonl, which only the parent process writes; a rerun skips
done tasks and redoes the rest (a task cut short starts over in a clean folder), so every task ends up done once.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

from pydantic import BaseModel
from rich.text import Text

from perfagent.config import load_settings
from perfagent.runs.envs import Environments
from perfagent.model.llm import SharedBudget
from perfagent.loop.optimizer import MODEL_FAILURE_STATUS, Optimizer
from perfagent.record import append_jsonl, read_jsonl, write_json
from perfagent.repos.repositories import RepoCache, diff
from perfagent.runs.tasks import Task, load_tasks

PREDICTIONS, RESULTS, LEDGER = "predictions.jsonl", "results.jsonl", "spend.json"
ORACLE = "oracle"  # --model oracle: each task's expert patch is the model's reply


class BatchJob(BaseModel):
    """What every worker needs to solve a task (sent to worker processes and Ray tasks)."""
    model: str
    out: Path
    repo_cache: Path
    env_cache: Path
    api_base: str | None = None
    budget_usd: float | None = None  # whole batch
    max_calls: int | None = None  # whole batch
    task_budget_usd: float | None = None
    settings: dict = {}  # Settings fields for every task (max_iterations, min_samples, ...)

    select_tests: bool = False  # perfagent chooses the tests, as in optimize without --tests; else the task's

    def model_for(self, task: Task, folder: Path) -> str:
        """`scripted:FOLDER` means one recorded session per task: FOLDER/<instance_id>.json; `oracle` replays the
        task's expert patch (written to `folder`)."""
        if self.model.startswith("scripted:") and Path(self.model.removeprefix("scripted:")).is_dir():
            return f"scripted:{Path(self.model.removeprefix('scripted:')) / (task.instance_id + '.json')}"
        if self.model == ORACLE:
            (folder / "expert.patch").write_text(task.patch, encoding="utf-8")
            return f"oracle:{folder / 'expert.patch'}"
        return self.model


def _plain(message: str) -> str:
    return Text.from_markup(message).plain


def solve(task_record: dict, job_record: dict) -> dict:
    """Run the optimize loop on one task (in a worker process); never raises for a task's own failure."""
    task, job = Task.model_validate(task_record), BatchJob.model_validate(job_record)
    folder = job.out / "tasks" / task.instance_id
    shutil.rmtree(folder, ignore_errors=True)  # what an attempt cut short left
    folder.mkdir(parents=True)
    result = {"instance_id": task.instance_id, "model_patch": "", "model_name_or_path": job.model,
              "status": "failed", "accepted": 0}
    with open(folder / "log.txt", "w", encoding="utf-8") as log:
        def say(message: str) -> None:
            log.write(_plain(message) + "\n")
            log.flush()

        try:
            with RepoCache(job.repo_cache).checkout(task.repo, task.base_commit) as worktree:
                workload = folder / "workload.py"
                workload.write_text(task.workload, encoding="utf-8")
                python = Environments(job.env_cache).python_for(task, worktree)
                settings = load_settings(worktree, {
                    **job.settings, "workload": str(workload), "model": job.model_for(task, folder),
                    "api_base": job.api_base, "tests": [] if job.select_tests else task.test_targets(worktree),
                    "python": python, "allow_failing_tests": True,
                    "rebuild_cmd": task.rebuild_cmd})
                budget = SharedBudget(max_usd=job.task_budget_usd, ledger=job.out / LEDGER,
                                      total_usd=job.budget_usd, total_calls=job.max_calls)
                summary = Optimizer(worktree, settings, out=folder / "run", say=say, budget=budget).run()
                if summary.get("branch"):
                    result["model_patch"] = diff(worktree, task.base_commit, summary["final_commit"])
                    subprocess.run(["git", "branch", "-D", summary["branch"]], cwd=worktree, capture_output=True)
                final = summary.get("final") or {}
                result.update(status="failed" if summary["status"] == MODEL_FAILURE_STATUS else "finished",
                              accepted=summary["accepted"], stop_reason=summary["stop_reason"],
                              speedup=(final.get("speed") or {}).get("speedup"), llm=summary["llm"])
        except Exception as exc:  # the task failed; the batch goes on
            result["error"] = f"{type(exc).__name__}: {exc}"
            say(f"failed: {result['error']}")
    return result


def done_ids(out: Path) -> set[str]:
    """Tasks whose model run finished. A task that failed (environment, repository, setup, the model's server) has
    no prediction and is tried again on resume."""
    return {r["instance_id"] for r in read_jsonl(out / PREDICTIONS) if "instance_id" in r}


def spend(out: Path) -> dict:
    return SharedBudget(ledger=out / LEDGER)._read()


def run_batch(tasks_file: Path, job: BatchJob, executor, *, say: Callable[[str], None] = print,
              progress: Callable[[dict], None] = lambda state: None) -> dict:
    """Solve every task of `tasks_file` not yet done in `job.out`; returns the final progress state."""
    tasks, bad = load_tasks(tasks_file)
    job.out.mkdir(parents=True, exist_ok=True)
    write_json(job.out / "bad_records.json", [vars(b) for b in bad])
    for record in bad:
        say(f"[yellow]skipping a bad task record: {record}[/]")
    finished = done_ids(job.out)
    pending = [t for t in tasks if t.instance_id not in finished]
    state = {"total": len(tasks), "done": len(tasks) - len(pending), "failed": 0, "running": 0, "bad": len(bad),
             "spend": spend(job.out)}
    if finished:
        say(f"resuming: {state['done']} of {len(tasks)} tasks already done in {job.out}")
    jobs = [(t.model_dump(mode="json", by_alias=True), job.model_dump(mode="json")) for t in pending]
    state["running"] = min(len(jobs), executor.workers)
    progress(state)
    interrupted = False
    try:
        for i, outcome in executor.map(solve, jobs):
            task = pending[i]
            if isinstance(outcome, BaseException):  # the worker itself died
                outcome = {"instance_id": task.instance_id, "model_patch": "", "model_name_or_path": job.model,
                           "status": "failed", "accepted": 0, "error": f"{type(outcome).__name__}: {outcome}"}
            append_jsonl(job.out / RESULTS, outcome)
            if outcome["status"] == "finished":
                append_jsonl(job.out / PREDICTIONS, {k: outcome[k] for k in
                                                     ("instance_id", "model_patch", "model_name_or_path")})
            state["done"] += 1
            state["failed"] += outcome["status"] == "failed"
            state["running"] = min(state["total"] - state["done"], executor.workers)
            state["spend"] = spend(job.out)
            say(f"[{state['done']}/{state['total']}] {task.instance_id}: {outcome['status']}"
                + (f", {outcome['accepted']} accepted" if outcome["status"] == "finished" else "")
                + (f", {outcome['speedup']:.2f}x" if outcome.get("speedup") else "")
                + (f" ({outcome['error'].splitlines()[0][:200]})" if outcome.get("error") else ""))
            progress(state)
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        executor.close(interrupted)
    return state
