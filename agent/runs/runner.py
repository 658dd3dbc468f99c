"""The skeleton `perfagent batch` and `perfagent evaluate` share: one pass over the valid tasks of a task file.

Tasks an earlier pass into the same output folder finished are skipped; the rest go to an executor (executors.py),
and each task's row is appended to the results file as it arrives, by this process only, so a pass cut short (Ctrl-C,
a crash, kill -9) resumes where it stopped. batch.Batch and evaluate.Evaluation fill in what runs on each task and what
else is written. No presentation here: lines go to `say`, counts to `progress` (the command line draws the bar), and
with them what each running task reports as it goes (events its worker sends, executors.task_events).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from perfagent.events import Event
from perfagent.measure.load import loaded_note
from perfagent.record import append_jsonl
from perfagent.runs.tasks import BadRecord, Task, load_tasks

Say = Callable[[str], None]


class TaskFileError(ValueError):
    """A task file that is missing, unreadable, or holds no valid task."""


def read_task_file(path: Path) -> tuple[list[Task], list[BadRecord]]:
    """The file's valid tasks and its bad records. A file without one valid task is refused, naming its problems:
    it is the wrong file (predictions, an empty file), and a pass over it would do nothing."""
    if not Path(path).is_file():
        raise TaskFileError(f"task file {path} not found")
    try:
        tasks, bad = load_tasks(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"cannot read the task file {path}: {exc}") from None
    if not tasks:
        problems = "; ".join(map(str, bad[:3])) + (f"; ... ({len(bad)} records)" if len(bad) > 3 else "")
        raise TaskFileError(f"no valid task in {path}: {problems or 'it is empty'}")
    return tasks, bad


@dataclass
class TaskCounts:
    """Where a pass stands; `progress` gets it before the first task, after each one, and whenever a running task
    reports an event."""
    total: int  # valid tasks in the task file
    workers: int
    done: int = 0  # of the tasks, finished by this pass or an earlier one
    failed: int = 0  # finished by this pass with a failure (TaskRun.failed)
    bad: int = 0  # task-file records that are not valid tasks
    spend: dict | None = None  # batch: model calls and cost so far (the shared budget's ledger)
    latest: tuple[str, Event | None] | None = None  # what this call is about: (task id, the event it reported), or
    # (task id, None) once the task's row is in; None for the counts alone

    @property
    def running(self) -> int:
        return min(self.total - self.done, self.workers)


class TaskRun(ABC):
    """One pass (run()). Subclasses set `results` and `work` and fill in the hooks below; `work(*arguments(task))`
    runs in a worker, so it is a module-level function (set as staticmethod), and it returns the task's row rather
    than raise for the task's own failure."""
    results: str  # the file in `out` that gets each finished task's row
    work: Callable[..., dict]

    def __init__(self, tasks_file: Path, out: Path, executor, *, say: Say = print,
                 progress: Callable[[TaskCounts], None] = lambda counts: None):
        self.tasks_file, self.out, self.executor = tasks_file, out, executor
        self.say, self.progress = say, progress
        self.tasks: list[Task] = []
        self.counts = TaskCounts(total=0, workers=executor.workers)

    @abstractmethod
    def begin(self, tasks: list[Task], bad: list[BadRecord]) -> set[str]:
        """Before any task runs (`out` exists): record what the bad records leave, and return the ids of the tasks
        an earlier pass finished."""

    @abstractmethod
    def arguments(self, task: Task) -> tuple:
        """What `work` gets for `task` (plain data: it may go to another process or machine)."""

    @abstractmethod
    def lost(self, task: Task, error: BaseException) -> dict:
        """The row of a task whose worker died (the task's own failures are rows `work` returns)."""

    def record(self, task: Task, row: dict) -> None:
        """After `row` is appended to the results: anything else it changes."""

    @abstractmethod
    def failed(self, row: dict) -> bool:
        """Whether `row` is a failure, counted in TaskCounts.failed."""

    @abstractmethod
    def describe(self, task: Task, row: dict) -> str:
        """The line said when `task` finishes (after its count, "[3/10] ")."""

    def run(self) -> TaskCounts:
        """Run every task not finished yet; on an interrupt, stop the workers and re-raise it."""
        self.tasks, bad = read_task_file(self.tasks_file)
        for record in bad:
            self.say(f"[yellow]skipping a bad task record: {record}[/]")
        self.out.mkdir(parents=True, exist_ok=True)
        counts = self.counts
        counts.total, counts.bad = len(self.tasks), len(bad)
        finished = self.begin(self.tasks, bad)
        pending = [t for t in self.tasks if t.instance_id not in finished]
        counts.done = len(self.tasks) - len(pending)
        self.progress(counts)
        loaded = loaded_note()
        if loaded and pending:
            self.say(f"[yellow]warning: {loaded}[/]")
        interrupted, ended = False, set()

        def reported(i: int, event: Event) -> None:
            if i not in ended:  # an event that was still on its way when the task's row came in is of no use now
                self._report(pending[i].instance_id, event)
        try:
            for i, row in self.executor.map(self.work, [self.arguments(t) for t in pending], reported):
                ended.add(i)
                task = pending[i]
                if isinstance(row, BaseException):  # the worker itself died
                    row = self.lost(task, row)
                append_jsonl(self.out / self.results, row)
                self.record(task, row)
                counts.done += 1
                counts.failed += self.failed(row)
                self.say(f"[{counts.done}/{counts.total}] {self.describe(task, row)}")
                self._report(task.instance_id, None)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            self.executor.close(interrupted)
        return counts

    def _report(self, task: str, event: Event | None) -> None:
        """`progress` about one task: an event it reported, or (None) that it is done."""
        self.counts.latest = (task, event)
        try:
            self.progress(self.counts)
        finally:
            self.counts.latest = None
