"""perfagent evaluate: score patches the way SWE-fficiency does, measured with perfagent's own rules.

Per task, three detached worktrees at the base commit: the base, the patch under evaluation, and the expert patch.
The patch is applied as SWE-fficiency's harness applies it (`git apply`, else GNU `patch --fuzz=5`, see
perfagent.repos.repositories.apply_patch; each row records which one did); test files it touches are reset (and the task's test_patch
applied) so a patch cannot pass by editing tests. The task's tests run on the base and on the patch: a patch passes
when every test passing on the base still passes, and its workload result must equal the base's (GSO's check: a
patch that passes the tests but computes something else is incorrect). The workload is then timed in fresh sandboxed processes, base,
patch and expert in one rotation (B P E, E P B, ...), so drift hits both comparisons alike:
  speedup = median over rounds of base time / patched time, with its interval;
  speedup ratio = patch speedup / expert speedup (an incorrect patch, or one that does not apply, has speedup 1.0);
and over tasks the harmonic mean of the ratios, as SWE-fficiency reports it. Task-file records that are not valid
tasks are not scored but listed, as rows with `skipped` (the reason), and counted.

`mode="script"` instead runs each workload script as written (its own timeit loop) and parses the `Mean:` it prints,
as the benchmark's harness does, alternating base, patch and expert `script_runs` times.

The pass over the task file is runner.TaskRun's (as batch's is); the output files' names are in outputs.py.
"""
from __future__ import annotations

import json
import os
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel

from perfagent.config import Settings
from perfagent.events import Broadcast, duration
from perfagent.runs.envs import Environments
from perfagent.runs.executors import task_events
from perfagent.localize.testselect import is_test_file
from perfagent.record import append_jsonl, read_jsonl, write_json
from perfagent.repos.builds import detect
from perfagent.repos.repositories import PATCH_FUZZ, Applied, RepoCache, apply_patch
from perfagent.runs.outputs import EVALUATION, EVALUATION_REPORT, row_label, summarize
from perfagent.runs.runner import Say, TaskCounts, TaskRun
from perfagent.repos.diffs import patched_files
from perfagent.runs.tasks import BadRecord, Task
from perfagent.localize.source import MODULE_LEVEL, SourceIndex, edited_spans
from perfagent.loop.unseen import Unseen, choose
from perfagent.loop.verdict import compare_inputs
from perfagent.measure.integrity import ResultDrift, TimingTampered
from perfagent.measure.workload import COLD_START_FACTOR, Workload, WorkloadRunner
from perfagent.sandbox import gitsafe
from perfagent.sandbox.bytecode import compile_stale
from perfagent.measure.stats import ratio_of_speedups, speed_stats
from perfagent.sandbox.run import Limits, child_env, run, run_shell
from perfagent.sandbox.testrun import run_pytest


class EvalJob(BaseModel):
    """An evaluation's options (the evaluate command's defaults) and the settings its timing and sandbox take as
    optimize does: sample-seconds, alpha, memory-mb, max-processes, isolation."""
    out: Path
    repo_cache: Path
    env_cache: Path
    mode: str  # "harness" or "script"
    pairs: int
    timeout_s: float  # evaluate's own: each test run and workload run of a task (the setting is optimize's)
    settings: Settings
    script_runs: int = 3


def read_predictions(path: Path) -> dict[str, str]:
    """instance_id -> model_patch (the last line wins)."""
    return {r["instance_id"]: r.get("model_patch") or "" for r in read_jsonl(path) if "instance_id" in r}


def _prepare(worktree: Path, patch: str | None, task: Task) -> tuple[bool, str, Applied | None]:
    """Apply `patch` (None: leave the base), reset test files it touched, apply the task's test_patch. Returns whether
    it all applied, why not, and how `patch` applied (None: no patch)."""
    applied, problem, how = True, "", None
    if patch is not None:
        how = apply_patch(worktree, patch)
        applied, problem = how.ok, how.error
        touched_tests = [p for p in patched_files(patch) if is_test_file(p)] if applied else []
        for path in touched_tests:  # back to the base version; files the patch added go
            restored = gitsafe.run(worktree, "checkout", "HEAD", "--", path)
            if restored.returncode:
                (worktree / path).unlink(missing_ok=True)
    if task.test_patch.strip():
        result = apply_patch(worktree, task.test_patch)
        if not result.ok:
            return False, f"the task's test_patch does not apply: {result.error}", how
    return applied, problem, how


def _script_mean(python: str, script: Path, worktree: Path, limits: Limits) -> float:
    result = run([python, str(script)], cwd=worktree, env=child_env({"PYTHONPATH": str(worktree)}), limits=limits,
                 readable=[script])
    match = re.search(r"^Mean:\s*([0-9.eE+-]+)", result.stdout, re.MULTILINE)
    if not result.ok or not match:
        raise RuntimeError(f"the workload script {result.failure() if not result.ok else 'printed no Mean:'}:\n"
                           f"{result.tail()}")
    return float(match.group(1))


def _speed(pairs: list[tuple[float, float]], settings: Settings) -> dict:
    base, patched = [p[0] for p in pairs], [p[1] for p in pairs]
    s = speed_stats(base, patched, alpha=settings.alpha, min_effect=0.0)
    return {"speedup": s.speedup, "ci_low": s.ci_low, "ci_high": s.ci_high, "p_value": s.p_value,
            "pairs": len(pairs), "ratios": list(np.divide(base, patched))}


@dataclass
class _Trees:
    """A task's three worktrees at its base commit, and how code runs in them."""
    base: Path
    model: Path  # the patch under evaluation
    expert: Path
    python: str
    limits: Limits
    folder: Path  # the task's output folder: the workload script, temporary files in tmp/
    patch: str | None = None  # the patch under evaluation
    notify: Broadcast = field(default_factory=Broadcast)  # what the task is doing, for the parent's output

    def names(self, trees: list[Path]) -> str:
        return " and ".join({self.base: "base", self.model: "patch", self.expert: "expert"}[t] for t in trees)


def evaluate_task(task_record: dict, patch: str | None, job_record: dict) -> dict:
    """Score one patch (None: no prediction) on one task; never raises for the task's own failure."""
    task, job = Task.model_validate(task_record), EvalJob.model_validate(job_record)
    folder = job.out / "tasks" / task.instance_id
    (folder / "tmp").mkdir(parents=True, exist_ok=True)
    row = {"instance_id": task.instance_id, "predicted": patch is not None, "applied": False, "tests_passed": False,
           "apply_method": None, "speedup": None, "expert": None, "ratio": None,
           "recorded_expert_speedup": task.gold_speedup}
    cache, notify = RepoCache(job.repo_cache), Broadcast(task_events())
    try:
        with ExitStack() as stack:
            notify.note(f"checking out {task.base_commit[:10]} for the base, the patch and the expert patch")
            base, model, expert = (stack.enter_context(cache.checkout(task.repo, task.base_commit)) for _ in range(3))
            notify.note("preparing the task's environment (built once per setup command) and compiling")
            python = Environments(job.env_cache).python_for(task, base, (model, expert))  # built before any patch:
            # a patched source must stay newer than the build products
            _apply(task, patch, (base, model, expert), row)
            trees = _Trees(base, model, expert, python, job.settings.limits(timeout_s=job.timeout_s), folder, patch,
                           notify)
            _rebuild(task, trees, row)
            _test(task, trees, row)
            _time(task, job, trees, row)
    except Exception as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    return _with_ratio(row)


def _apply(task: Task, patch: str | None, trees: tuple[Path, Path, Path], row: dict) -> None:
    """Prepare the base, patch and expert worktrees (see _prepare); an expert patch that does not apply is an error."""
    base, model, expert = trees
    _prepare(base, None, task)
    row["applied"], row["apply_error"], how = _prepare(model, patch, task) if patch else (False, "no patch", None)
    if how and how.method:
        row["apply_method"] = how.method
        if how.log:  # why `git apply` refused it, and how far GNU patch had to fuzz its hunks
            row["apply_log"] = how.log[:2000]
    expert_ok, expert_problem, expert_how = _prepare(expert, task.patch, task)
    row["expert_apply_method"] = expert_how.method
    if not expert_ok:
        raise RuntimeError(f"the expert patch does not apply: {expert_problem}")


def _rebuild(task: Task, trees: _Trees, row: dict) -> None:
    """The task's rebuild command in each tree that runs (a patch that does not build counts as not applied), then
    its bytecode, which children do not write (sandbox/bytecode.py). Without one, the build repos/builds.py detects
    runs where a patch changed more than Python source (the environment's products are up to date elsewhere)."""
    build = detect(trees.base, trees.python, task.rebuild_cmd)
    patches = {trees.base: "", trees.expert: task.patch, trees.model: trees.patch or ""}
    for tree in [trees.base, trees.expert] + ([trees.model] if row["applied"] else []):
        needed = build.needed(None if task.rebuild_cmd else patched_files(patches[tree]))
        failed = needed and run_shell(build.command, tree, trees.python, trees.limits)
        compile_stale(tree, trees.python, trees.limits)
        if failed and tree == trees.model:
            row["applied"], row["apply_error"] = False, f"rebuild failed: {failed}"
        elif failed:
            raise RuntimeError(f"the rebuild command fails on the {'base' if tree == trees.base else 'expert'} "
                               f"code: {failed}")


def _test(task: Task, trees: _Trees, row: dict) -> None:
    """The task's tests on the base, which must pass them, and on the applied patch: it passes when every test
    passing on the base still passes."""
    base, model, python, limits = trees.base, trees.model, trees.python, trees.limits
    trees.notify.note(f"running the tests on the {trees.names([base, model] if row['applied'] else [base])}")
    if task.test_cmd:  # the task's own test command: pass means exit status 0, as on the base
        row["tests"] = task.test_cmd
        failed = run_shell(task.test_cmd, base, python, limits)
        if failed:
            raise RuntimeError(f"the test command fails on the base code: {failed}")
        if row["applied"]:
            failed = run_shell(task.test_cmd, model, python, limits)
            row["tests_passed"], row["tests_broken"] = not failed, [failed] if failed else []
        return
    targets = row["tests"] = task.test_targets(base)
    at_base = run_pytest(base, targets, python=python, tmp=trees.folder / "tmp", limits=limits)
    if at_base.cut_short():  # a timeout is not a set of passing tests
        raise RuntimeError(f"the base code's test run {at_base.cut_short()}; raise --timeout-s")
    passing = at_base.passing()
    row["tests_passing_at_base"] = len(passing)
    if row["applied"]:
        after = run_pytest(model, targets, python=python, tmp=trees.folder / "tmp", limits=limits)
        broken = sorted(passing - after.passing())
        row["tests_passed"], row["tests_broken"] = not broken, broken[:20]
        if after.cut_short():
            row["tests_broken"] = [f"the test run {after.cut_short()}"] + broken[:19]


def _time(task: Task, job: EvalJob, trees: _Trees, row: dict) -> None:
    """Check that a passing patch leaves the workload's result unchanged (harness mode), then time the base against
    it, if it is still scored, and against the expert patch."""
    script = trees.folder / "workload.py"
    script.write_text(task.workload, encoding="utf-8")
    runner = WorkloadRunner(Workload.parse(str(script), trees.base), trees.python, trees.folder / "tmp", trees.limits)
    scored = row["applied"] and row["tests_passed"]
    if scored and job.mode == "harness":  # GSO's equivalence check: passing tests is not enough
        trees.notify.note("checking the patch's workload result against the base's")
        same = compare_inputs(runner.results(trees.base)[0], runner.results(trees.model)[0])
        row["result_unchanged"], scored = same.equal, same.equal
        if not same.equal:
            row["result_change"] = same.detail[:500]
    try:
        timings = _measure(job, runner, trees, [trees.model, trees.expert] if scored else [trees.expert], script)
    except (ResultDrift, TimingTampered) as exc:  # the model's patch, whose calls alone are held to a result
        row["result_unchanged"], row["result_change"], scored = False, str(exc)[:500], False
        timings = _measure(job, runner, trees, [trees.expert], script)
    row["expert"] = _speed(timings[-1], job.settings)
    row["cold_start"] = runner.cold_start
    row["speedup"] = _speed(timings[0], job.settings) if scored else None
    if scored and job.mode == "harness":
        _generality(job, runner, trees, row)


def _generality(job: EvalJob, runner: WorkloadRunner, trees: _Trees, row: dict) -> None:
    """Whether the patch's gain holds beyond the benchmark's own situation, as optimize judges a candidate (what
    SWE-fficiency's harness scores as correct regardless): on first calls in a process, and on each variant of
    setup() it has not seen (loop/unseen.py), with its calls to the functions it edits held to the unmodified code's.
    `general` is False when either fails."""
    row["first_calls"] = "holds" if not _carried(runner.cold_starts, trees) else (
        "its later calls in a process are far faster than its first (results kept across calls): timed on first "
        "calls only")
    targets = tuple(s.key for s in edited_spans(SourceIndex(trees.base), trees.patch or "")
                    if s.qualname != MODULE_LEVEL)
    folder = trees.folder / "variants"
    folder.mkdir(parents=True, exist_ok=True)
    trees.notify.note("checking that the gain holds on variants of setup() the patch has not seen")
    inputs = choose(runner, trees.base, targets, folder)
    row["unseen"] = {"note": inputs.note, "variants": []}
    holds_unseen = True
    for unseen in inputs.kept:  # each: a fast path keyed on one literal is faster on a variant that leaves it alone
        record = _on_variant(job, runner, trees, unseen, targets)
        row["unseen"]["variants"].append(record)
        holds_unseen = record["result_unchanged"] and record["speedup"]["ci_low"] > 1
        if not holds_unseen:
            break
    row["general"] = row["first_calls"] == "holds" and holds_unseen


def _on_variant(job: EvalJob, runner: WorkloadRunner, trees: _Trees, unseen: Unseen, targets: tuple[str, ...]) -> dict:
    """The patch on one variant of setup(): its results (and calls to `targets`) against the base's, then, when
    they hold, the base against the patch in job.pairs ABBA pairs."""
    same = unseen.check(trees.model, targets)
    record = dict(variant=unseen.variant.name, changes=unseen.variant.describe(), result_unchanged=same.equal,
                  result_change=same.detail[:500] or None, speedup=None)
    if same.equal:
        loops = 1 if runner.cold_start else unseen.runner.calibrate(trees.base, job.settings.sample_seconds)
        expect = unseen.runner.expected(trees.model, unseen.runner.sequence(trees.base))
        pairs, eta = [], _Eta(trees.notify, "unseen", f"timing base and patch on '{unseen.variant.name}': pair",
                              job.pairs)
        for k in range(job.pairs):
            order = (trees.base, trees.model) if k % 2 == 0 else (trees.model, trees.base)
            values = {t: unseen.runner.sample(t, loops, expect if t == trees.model else None).wall for t in order}
            pairs.append((values[trees.base], values[trees.model]))
            eta.step()
        record["speedup"] = _speed(pairs, job.settings)
    return record


def _carried(cold_starts: dict, trees: _Trees) -> bool:
    """The patch's first call in a process is far slower than its later ones, and the base's is not (or by far less):
    its later calls reuse what the first computed. A slow first call of the base too (a lazy import, noise on a busy
    machine) is the workload's own, not the patch's."""
    if trees.model not in cold_starts:
        return False
    first, later = cold_starts[trees.model]
    if trees.base not in cold_starts:
        return True
    base_first, base_later = cold_starts[trees.base]
    return first / later > COLD_START_FACTOR * base_first / base_later


def _with_ratio(row: dict) -> dict:
    """The speedup ratio with its interval. SWE-fficiency: a patch that fails to apply or is incorrect counts as no
    speedup."""
    if row["speedup"]:
        _, row["ratio_ci_low"], row["ratio_ci_high"] = ratio_of_speedups(row["speedup"]["ratios"],
                                                                         row["expert"]["ratios"])
        row["ratio"] = row["speedup"]["speedup"] / row["expert"]["speedup"]
    else:
        row["ratio"] = 1.0 / row["expert"]["speedup"]
    return row


def _measure(job: EvalJob, runner: WorkloadRunner, trees: _Trees, timed: list[Path],
             script: Path) -> list[list[tuple[float, float]]]:
    """(base seconds, patched seconds) pairs for each of `timed` against the base."""
    base = trees.base
    if job.mode == "script":
        out, eta = [], _Eta(trees.notify, "script", f"running the workload script on the "
                            f"{trees.names([base, *timed])}: run", job.script_runs * len(timed))
        for tree in timed:
            pairs = []
            for k in range(job.script_runs):
                order = (base, tree) if k % 2 == 0 else (tree, base)
                seconds = {t: _script_mean(trees.python, script, t, trees.limits) for t in order}
                pairs.append((seconds[base], seconds[tree]))
                eta.step()
            out.append(pairs)
        return out
    trees.notify.note("calibrating: how many workload() calls make a timing value of about "
                      f"{job.settings.sample_seconds:g} s")
    # per tree: a fast patch needs more calls per value; any cold start (see calibrate) means 1 call for all
    loops = {base: runner.calibrate(base, job.settings.sample_seconds)}
    # the model's patch is untrusted: its calls must keep returning the result its check accepted
    expect = {trees.model: runner.expected(trees.model, runner.sequence(base))} if trees.model in timed else {}
    loops.update({tree: runner.calibrate(tree, job.settings.sample_seconds, expect.get(tree)) for tree in timed})
    if runner.cold_start:
        loops = dict.fromkeys(loops, 1)
    trees.notify.note(_timing_plan(trees, loops, job.pairs + 1))
    # one rotation (B P E, then E P B, ...) after a warm-up round: drift hits the patch's and the expert's
    # comparisons alike, so their ratio is not skewed by when each was timed
    rounds, eta = [], _Eta(trees.notify, "timing", f"timing the {trees.names([base, *timed])}: round", job.pairs + 1)
    for k in range(job.pairs + 1):
        order = [base, *timed] if k % 2 == 0 else [*reversed(timed), base]
        rounds.append({tree: runner.sample(tree, loops[tree], expect.get(tree)).wall for tree in order})
        eta.step()
    return [[(r[base], r[tree]) for r in rounds[1:]] for tree in timed]


def _timing_plan(trees: _Trees, loops: dict[Path, int], rounds: int) -> str:
    """What the timing will do, and why a fast patch's values take longer than its timed calls: each call runs after
    its own setup(), which is not timed."""
    calls = ", ".join(f"{n} for the {trees.names([tree])}" for tree, n in loops.items())
    return (f"timing: {rounds} rounds (the first a warm-up), one value each from a fresh process; a value is "
            f"{calls} workload() calls, each after its own untimed setup()")


class _Eta:
    """A timing loop's progress, with the time left at its pace so far."""

    def __init__(self, notify: Broadcast, key: str, description: str, total: int):
        self.notify, self.key, self.description, self.total = notify, key, description, total
        self.done, self.started = 0, time.monotonic()
        notify.progress(key, description, 0, total)

    def step(self) -> None:
        self.done += 1
        pace = (time.monotonic() - self.started) / self.done
        left = f"{duration(pace)} each, about {duration(pace * (self.total - self.done))} left"
        self.notify.progress(self.key, self.description, self.done, self.total, left)


def skipped_rows(bad: list[BadRecord], patches: dict[str, str] | None) -> list[dict]:
    """One evaluation row per task-file record that is not a valid task: not scored, but listed and counted."""
    return [{"instance_id": b.instance_id, "line": b.line, "skipped": b.problem,
             "predicted": patches is None or b.instance_id in patches, "applied": False, "tests_passed": False,
             "ratio": None} for b in bad]


def _record_skipped(path: Path, skipped: list[dict]) -> None:
    """Make `path` (evaluation.jsonl) list exactly the current skipped records, once each: appended on the first run,
    left alone on a resumed one, replaced (in one atomic rewrite) when the task file changed."""
    rows = read_jsonl(path)
    if [r for r in rows if r.get("skipped")] == skipped:
        return
    if not any(r.get("skipped") for r in rows):
        for row in skipped:
            append_jsonl(path, row)
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in [r for r in rows if not r.get("skipped")] + skipped:
            f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Evaluation(TaskRun):
    """An evaluation's pass over its task file (runner.TaskRun): evaluate_task() on each task not yet evaluated."""
    results = EVALUATION
    work = staticmethod(evaluate_task)

    def __init__(self, tasks_file: Path, patches: dict[str, str] | None, job: EvalJob, executor, **callbacks):
        super().__init__(tasks_file, job.out, executor, **callbacks)
        self.patches, self.job = patches, job
        self.rows: dict[str, dict] = {}  # instance_id -> its row, from this pass or an earlier one
        self.bad: list[BadRecord] = []
        self.skipped: list[dict] = []  # rows of the bad records

    def begin(self, tasks: list[Task], bad: list[BadRecord]) -> set[str]:
        if self.patches is not None:
            unknown = sorted(set(self.patches) - {t.instance_id for t in tasks} - {b.instance_id for b in bad})
            if unknown:
                self.say(f"[yellow]predictions for tasks not in the task file are ignored: "
                         f"{', '.join(unknown[:10])}[/]")
        self.bad, self.skipped = bad, skipped_rows(bad, self.patches)
        _record_skipped(self.out / EVALUATION, self.skipped)
        self.rows = {r["instance_id"]: r for r in read_jsonl(self.out / EVALUATION) if not r.get("skipped")}
        return set(self.rows)

    def arguments(self, task: Task) -> tuple:
        patch = task.patch if self.patches is None else self.patches.get(task.instance_id)
        return task.model_dump(mode="json", by_alias=True), patch, self.job.model_dump(mode="json")

    def lost(self, task: Task, error: BaseException) -> dict:
        return {"instance_id": task.instance_id, "applied": False, "tests_passed": False, "ratio": None,
                "error": f"{type(error).__name__}: {error}"}

    def record(self, task: Task, row: dict) -> None:
        self.rows[row["instance_id"]] = row

    def failed(self, row: dict) -> bool:
        return bool(row.get("error"))

    def describe(self, task: Task, row: dict) -> str:
        return describe_row(row)

    def report(self) -> dict:
        """report.json: every row, in the task file's order, skipped records last, and their summary."""
        ordered = [self.rows[t.instance_id] for t in self.tasks if t.instance_id in self.rows] + self.skipped
        return {"gold": self.patches is None, "mode": self.job.mode, "summary": summarize(ordered), "tasks": ordered,
                "bad_records": [str(b) for b in self.bad]}


def run_evaluation(tasks_file: Path, patches: dict[str, str] | None, job: EvalJob, executor, *, say: Say = print,
                   progress: Callable[[TaskCounts], None] = lambda counts: None) -> dict:
    """Evaluate `patches` (instance_id -> patch; None: the expert patches themselves) on every task; tasks already
    in the output's evaluation.jsonl are not redone. Records that are not valid tasks are listed as skipped rows.
    Writes report.json and returns it."""
    evaluation = Evaluation(tasks_file, patches, job, executor, say=say, progress=progress)
    evaluation.run()
    report = evaluation.report()
    write_json(job.out / EVALUATION_REPORT, report)
    return report


def describe_row(row: dict) -> str:
    name = row_label(row)
    if row.get("skipped"):
        where = f"{name} (line {row.get('line')})" if row.get("instance_id") else name
        return f"{where}: skipped, not a valid task: {row['skipped'][:200]}"
    if row.get("error"):
        return f"{name}: error: {row['error'].splitlines()[0][:200]}"
    speed = row.get("speedup")
    fallback = row.get("applied") and row.get("apply_method") == PATCH_FUZZ
    return (f"{name}: applied={row['applied']}{' (by patch --fuzz)' if fallback else ''} "
            f"tests={'pass' if row['tests_passed'] else 'FAIL'} speedup={speed['speedup']:.2f}x " if speed else
            f"{name}: not scored, {why_not_scored(row)} (speedup 1.0{'; applied by patch --fuzz' if fallback else ''}) "
            ) + f"expert={row['expert']['speedup']:.2f}x ratio={row['ratio']:.2f}"


def why_not_scored(row: dict) -> str:
    """Why a patch counts as no speedup, SWE-fficiency's rule for an incorrect patch."""
    if not row.get("predicted"):
        return "no patch"
    if not row.get("applied"):
        return "does not apply"
    if not row.get("tests_passed"):
        return "tests fail"
    return "result changed" if row.get("result_unchanged") is False else "not measured"
