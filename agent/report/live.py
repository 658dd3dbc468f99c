"""The view of work in progress: a run's events as rich lines, progress bars with ETA for its long steps (baseline
tests, timing noise, each timing comparison), and the bar over a batch's or an evaluation's tasks, where the output
is a terminal. Anywhere else (a pipe, a log, CI) bars cannot be drawn, and plain progress lines on stderr say what is
running instead (ProgressLines), as pytest and uv do there: stdout keeps only the run's own output."""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from rich.text import Text

from perfagent import events
from perfagent.runs.runner import TaskCounts

HEARTBEAT_S = 30.0  # in a pipe, a long step says what is running at most this often


@dataclass
class _Stream:
    """What one run (or one task of a batch) is doing: its open steps (since when), its latest event and when a line
    about it was last said."""
    said_at: float
    latest_at: float
    latest: events.Event | None = None
    opened: dict[str, float] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)  # a progress step's key -> its description shown last

    def latest_line(self) -> str:
        return self.latest.line() if isinstance(self.latest, events.Progress) else self.latest.text().strip()


class ProgressLines:
    """Plain progress lines for output that is not a terminal. A line when a long step (events.Progress) starts or
    moves to its next stage; while a step is open and nothing else is said, one line every `every` seconds naming
    what is running and for how long ("baseline tests under coverage 2/3 (tests/test_x.py), 45 s"). Open steps are
    progress steps, a candidate from its proposal to its verdict, and a batch task until `end`. Events come from
    one run (stream "") or from the tasks of a batch, one stream each, whose lines start with the task's id.
    `narrate`: also print the narration (notes, candidates, verdicts), which a run's own console prints otherwise.
    `clock` and `beat` are there for tests: a heartbeat thread calls `beat` each second once `start`ed."""

    def __init__(self, write: Callable[[str], None], narrate: bool = False, every: float = HEARTBEAT_S,
                 clock: Callable[[], float] = time.monotonic):
        self.write, self.narrate, self.every, self.clock = write, narrate, every, clock
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: events.Event, stream: str = "") -> None:
        with self._lock:
            now = self.clock()
            s = self._streams.get(stream)
            if s is None:
                s = self._streams[stream] = _Stream(said_at=now, latest_at=now)
                if stream:
                    s.opened["task"] = now  # a task is under way until it ends
            if isinstance(event, events.Progress):
                self._progress(s, stream, event, now)
            elif not isinstance(event, events.CheckDone) and event.text() is not None:
                if isinstance(event, events.CandidateProposed):
                    s.opened[f"candidate {event.n}"] = now
                elif isinstance(event, events.VerdictReached):
                    s.opened.pop(f"candidate {event.n}", None)
                s.latest, s.latest_at, s.said_at = event, now, now  # said here, or by the run's console
                if self.narrate:
                    self._say(stream, event.text().strip())

    def _progress(self, s: _Stream, stream: str, event: events.Progress, now: float) -> None:
        s.latest, s.latest_at = event, now
        if event.finished:
            s.opened.pop(event.key, None)
            s.stages.pop(event.key, None)
            return
        s.opened.setdefault(event.key, now)
        if s.stages.get(event.key) != event.description:  # a new step, or its next stage: said at once
            s.stages[event.key] = event.description
            self._say(stream, event.line())
            s.said_at = now
        elif now - s.said_at >= self.every:
            self._say(stream, f"{event.line()}, {events.duration(now - s.opened[event.key])}")
            s.said_at = now

    def beat(self) -> None:
        """Say what each stream with an open step is doing, where nothing was said for `every` seconds."""
        with self._lock:
            now = self.clock()
            for name, s in self._streams.items():
                if not s.opened or now - s.said_at < self.every:
                    continue
                if isinstance(s.latest, events.Progress) and s.latest.key in s.opened:
                    self._say(name, f"{s.latest.line()}, {events.duration(now - s.opened[s.latest.key])}")
                else:
                    since = f": {s.latest_line()}" if s.latest is not None else " it started"
                    self._say(name, f"still working, {events.duration(now - s.latest_at)} since{since}")
                s.said_at = now

    def end(self, stream: str) -> None:
        """The task of `stream` is over (its result is said elsewhere)."""
        with self._lock:
            self._streams.pop(stream, None)

    def _say(self, stream: str, line: str) -> None:
        self.write(f"  {stream}: {line}" if stream else line)

    def start(self) -> ProgressLines:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beats, name="progress-lines", daemon=True)
            self._thread.start()
        return self

    def _beats(self) -> None:
        while not self._stop.wait(1.0):
            self.beat()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class TerminalObserver:
    """A run's events on `console` (stdout). `interactive`: a person reviews in this terminal, and the reviewer shows
    candidates, checks and verdicts itself (with its own spinner, so no progress bars here). Where `console` is not a
    terminal, progress goes to stderr as plain lines (ProgressLines)."""

    def __init__(self, console: Console, interactive: bool = False):
        self.console, self.interactive = console, interactive
        self._bars: Progress | None = None
        self._tasks: dict[str, int] = {}
        self._lines = None if console.is_terminal else ProgressLines(_to_stderr)

    def __call__(self, event: events.Event) -> None:
        if self._lines is not None:
            self._lines.start()(event)
        if isinstance(event, events.Progress):
            if self.console.is_terminal and not self.interactive:
                self._progress(event)
        elif isinstance(event, events.Note):
            self.console.print(f"[yellow]{escape(event.text())}[/]" if event.warning else escape(event.text()))
        elif isinstance(event, events.CandidateProposed) and not self.interactive:
            self.console.print(escape(event.text()))
        elif isinstance(event, events.VerdictReached) and not self.interactive:
            said, _, rest = event.text().strip().partition(":")
            self.console.print(f"  [{'green' if event.accepted else 'red'}]{escape(said)}[/]:{escape(rest)}")

    def close(self) -> None:
        """End a progress display that an interruption left open."""
        if self._bars is not None:
            self._bars.stop()
            self._bars, self._tasks = None, {}
        if self._lines is not None:
            self._lines.close()

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
    pipe, a log, CI): no bar; what the running tasks report goes there as plain lines, one stream per task
    (ProgressLines), and each finished task's line on stdout is the count. `redirect_stdout`: stdout is the same
    terminal, and what is printed there goes above the bar too."""
    if not terminal.is_terminal:
        lines = ProgressLines(lambda line: terminal.out(line, highlight=False), narrate=True).start()

        def report(counts: TaskCounts) -> None:
            if counts.latest is None:
                return
            task, event = counts.latest
            if event is None:
                lines.end(task)
            else:
                lines(event, task)
        try:
            yield report
        finally:
            lines.close()
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
