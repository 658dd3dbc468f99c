"""The terminal's view of work in progress: a run's events as rich lines, progress bars with ETA for its long steps
(baseline tests, timing noise, each timing comparison), and the bar over a batch's or an evaluation's tasks; bars only
when the output is a terminal."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.text import Text

from perfagent import events
from perfagent.runs.runner import TaskCounts


class TerminalObserver:
    """`interactive`: a person reviews in this terminal, and the reviewer shows candidates, checks and verdicts
    itself (with its own spinner, so no progress bars here)."""

    def __init__(self, console: Console, interactive: bool = False):
        self.console, self.interactive = console, interactive
        self._bars: Progress | None = None
        self._tasks: dict[str, int] = {}

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.Progress):
            if self.console.is_terminal and not self.interactive:
                self._progress(event)
        elif isinstance(event, events.Note):
            self.console.print(f"[yellow]{escape(event.text())}[/]" if event.warning else escape(event.text()))
        elif isinstance(event, events.CandidateProposed) and not self.interactive:
            self.console.print(escape(event.text()))
        elif isinstance(event, events.VerdictReached) and not self.interactive:
            verdict = event.candidate["verdict"]
            first = verdict["detail"].splitlines()[0] if verdict["detail"] else ""
            self.console.print(f"  [{'green' if event.accepted else 'red'}]{escape(verdict['reason'])}[/]: "
                               f"{escape(first)}")

    def close(self) -> None:
        """End a progress display that an interruption left open."""
        if self._bars is not None:
            self._bars.stop()
            self._bars, self._tasks = None, {}

    def _progress(self, event: events.Progress) -> None:
        if event.finished and event.key not in self._tasks:
            return  # a step that ended before its first report: nothing to show
        if self._bars is None:
            self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=self.console,
                                  transient=True)
            self._bars.start()
        if event.key not in self._tasks:
            self._tasks[event.key] = self._bars.add_task(event.description, total=event.total, status="")
        self._bars.update(self._tasks[event.key], description=event.description, completed=event.done,
                          total=event.total, status=event.status)
        if event.finished:
            self._bars.refresh()  # its last state is drawn, however short the step was
            self._bars.remove_task(self._tasks.pop(event.key))
            if not self._tasks:
                self.close()


class _Eta(ProgressColumn):
    """Time left at this pass's pace so far (rich's own estimate reads the last 30 s only, which hold no finished
    task when tasks take minutes). Tasks an earlier pass finished do not count towards the pace."""

    def render(self, task) -> Text:
        finished = task.completed - task.fields["resumed"]
        if not finished or task.total is None or task.elapsed is None:
            return Text("ETA -:--:--")
        return Text(f"ETA {timedelta(seconds=round((task.total - task.completed) * task.elapsed / finished))}")


@contextmanager
def task_bar(terminal: Console, what: str, redirect_stdout: bool = False) -> Iterator[Callable[[TaskCounts], None]]:
    """A progress bar with ETA over a batch's or an evaluation's tasks on `terminal` (stderr), advanced by the
    callback this yields (the runner's `progress`); lines printed meanwhile appear above it. Not on a terminal (a
    pipe, a log, CI): no bar, each finished task's line is the progress. `redirect_stdout`: stdout is the same
    terminal, and what is printed there goes above the bar too."""
    if not terminal.is_terminal:
        yield lambda counts: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("tasks{task.fields[status]}"), TimeElapsedColumn(), _Eta())
    with Progress(*columns, console=terminal, redirect_stdout=redirect_stdout) as bar:
        def update(counts: TaskCounts) -> None:
            spent = counts.spend
            status = f", {counts.failed} failed" + (f", ${spent.get('usd', 0.0):.4f}" if spent is not None else "")
            if not bar.task_ids:  # the first call: what an earlier pass did is the starting point
                bar.add_task(what, total=counts.total, completed=counts.done, resumed=counts.done, status=status)
            bar.update(bar.task_ids[0], total=counts.total, completed=counts.done, status=status)

        yield update
