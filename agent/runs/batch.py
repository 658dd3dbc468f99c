"""perfagent batch: the optimize loop over every task of a task file.

Output folder (names in outputs.py; the pass over the tasks is runner.TaskRun's):
  predictions.jsonl   one line per finished task, SWE-fficiency's format (instance_id, model_patch, model_name_or_path)
  results.jsonl       the same tasks with status, accepted patches, speedup, spend, error (status "skipped": the
                      repository does not build here; error is the build's first error)
  tasks/<id>/         the task's workload, log, run record (summary.json, trajectory.json, profiles)
  spend.json          model calls and cost of the whole batch (the shared budget's ledger)
  bad_records.json    task-file records that failed validation
A task counts as done once its line is in predictions.jsonl, which only the parent process writes; a rerun skips
done tasks and redoes the rest (a task cut short starts over in a clean folder), so every task ends up done once.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from perfagent.config import load_settings
from perfagent.runs.envs import BuildError, Environments
from perfagent.model.llm import SharedBudget
from perfagent.events import LogObserver, Note
from perfagent.loop.optimizer import Optimizer
from perfagent.reasons import FAILED, FINISHED, MODEL_FAILED, SKIPPED
from perfagent.record import append_jsonl, read_jsonl, write_json
from perfagent.repos.repositories import RepoCache, diff
from perfagent.runs.outputs import BAD_RECORDS, BATCH_RESULTS, LEDGER, PREDICTIONS
from perfagent.runs.runner import Say, TaskCounts, TaskRun
from perfagent.runs.tasks import BadRecord, Task
from perfagent.sandbox import gitsafe

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


def solve(task_record: dict, job_record: dict) -> dict:
    """Run the optimize loop on one task (in a worker process); never raises for a task's own failure."""
    task, job = Task.model_validate(task_record), BatchJob.model_validate(job_record)
    folder = job.out / "tasks" / task.instance_id
    shutil.rmtree(folder, ignore_errors=True)  # what an attempt cut short left
    folder.mkdir(parents=True)
    result = {"instance_id": task.instance_id, "model_patch": "", "model_name_or_path": job.model,
              "status": FAILED, "accepted": 0}
    with open(folder / "log.txt", "w", encoding="utf-8") as log:
        observer = LogObserver(log)
        try:
            with RepoCache(job.repo_cache).checkout(task.repo, task.base_commit) as worktree:
                workload = folder / "workload.py"
                workload.write_text(task.workload, encoding="utf-8")
                started = time.monotonic()
                python = Environments(job.env_cache).python_for(task, worktree)
                result["environment_s"] = round(time.monotonic() - started, 1)  # a build, or a copy of its products
                settings = load_settings(worktree, {
                    **job.settings, "workload": str(workload), "model": job.model_for(task, folder),
                    "api_base": job.api_base, "tests": [] if job.select_tests else task.test_targets(worktree),
                    "python": python, "allow_failing_tests": True,
                    "rebuild_cmd": task.rebuild_cmd})
                budget = SharedBudget(max_usd=job.task_budget_usd, ledger=job.out / LEDGER,
                                      total_usd=job.budget_usd, total_calls=job.max_calls)
                summary = Optimizer(worktree, settings, out=folder / "run", observer=observer, budget=budget).run()
                if summary.branch:
                    result["model_patch"] = diff(worktree, task.base_commit, summary.final_commit)
                    try:
                        gitsafe.git(worktree, "branch", "-D", summary.branch)  # never through the worktree's .git
                    except gitsafe.GitError:
                        pass
                result.update(status=FAILED if summary.status == MODEL_FAILED else FINISHED,
                              accepted=summary.accepted, stop_reason=summary.stop_reason,
                              speedup=summary.final.speed.speedup if summary.final else None,
                              llm=summary.llm.model_dump())
        except BuildError as exc:  # the repository does not build here: not the task's failure (tried again on resume)
            result.update(status=SKIPPED, error=exc.first_error, detail=str(exc))
            observer(Note(f"skipped: {exc}"))
        except Exception as exc:  # the task failed; the batch goes on
            result["error"] = f"{type(exc).__name__}: {exc}"
            observer(Note(f"failed: {result['error']}"))
    return result


def done_ids(out: Path) -> set[str]:
    """Tasks whose model run finished. A task that failed (environment, repository, setup, the model's server) has
    no prediction and is tried again on resume."""
    return {r["instance_id"] for r in read_jsonl(out / PREDICTIONS) if "instance_id" in r}


def spend(out: Path) -> dict:
    return SharedBudget(ledger=out / LEDGER)._read()


class Batch(TaskRun):
    """A batch's pass over its task file (runner.TaskRun): solve() on each task not yet done."""
    results = BATCH_RESULTS
    work = staticmethod(solve)

    def __init__(self, tasks_file: Path, job: BatchJob, executor, **callbacks):
        super().__init__(tasks_file, job.out, executor, **callbacks)
        self.job = job

    def begin(self, tasks: list[Task], bad: list[BadRecord]) -> set[str]:
        write_json(self.out / BAD_RECORDS, [vars(b) for b in bad])
        finished = done_ids(self.out)
        if finished:
            done = sum(t.instance_id in finished for t in tasks)
            self.say(f"resuming: {done} of {len(tasks)} tasks already done in {self.out}")
        self.counts.spend = spend(self.out)
        return finished

    def arguments(self, task: Task) -> tuple:
        return task.model_dump(mode="json", by_alias=True), self.job.model_dump(mode="json")

    def lost(self, task: Task, error: BaseException) -> dict:
        return {"instance_id": task.instance_id, "model_patch": "", "model_name_or_path": self.job.model,
                "status": FAILED, "accepted": 0, "error": f"{type(error).__name__}: {error}"}

    def record(self, task: Task, row: dict) -> None:
        if row["status"] == FINISHED:
            append_jsonl(self.out / PREDICTIONS, {k: row[k] for k in ("instance_id", "model_patch",
                                                                      "model_name_or_path")})
        self.counts.spend = spend(self.out)

    def failed(self, row: dict) -> bool:
        return row["status"] == FAILED

    def describe(self, task: Task, row: dict) -> str:
        return (f"{task.instance_id}: {row['status']}"
                + (f", {row['accepted']} accepted" if row["status"] == FINISHED else "")
                + (f", {row['speedup']:.2f}x" if row.get("speedup") else "")
                + (f" ({row['error'].splitlines()[0][:200]})" if row.get("error") else ""))


def run_batch(tasks_file: Path, job: BatchJob, executor, *, say: Say = print,
              progress: Callable[[TaskCounts], None] = lambda counts: None) -> TaskCounts:
    """Solve every task of `tasks_file` not yet done in `job.out`; returns the final counts."""
    return Batch(tasks_file, job, executor, say=say, progress=progress).run()
