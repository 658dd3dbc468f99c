"""What a run reports as it goes, as data. The loop and its phases send events to observers; each observer formats
them for its medium: the terminal (rich colours and progress bars), the interactive reviewer, a batch task's log file
(plain lines), plain progress lines where the output is not a terminal (report/live.py). `text()` is the plain line an
event reads as, or None for events that only drive progress displays."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, TextIO, Union

from perfagent.reasons import ACCEPTED, outcome


def duration(seconds: float) -> str:
    """How long something took or will take, as progress lines say it: `45 s`, `3 min 20 s`."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


@dataclass(frozen=True)
class Note:
    """A line of narration; a warning is something the user may want to act on."""
    message: str
    warning: bool = False

    def text(self) -> str:
        return f"warning: {self.message}" if self.warning and not self.message.startswith("warning") else self.message


@dataclass(frozen=True)
class Progress:
    """A long step's progress: `done` of `total` units (None: not known), with a short status (e.g. the speedup so
    far). The step with one `key` is one progress display; done == total ends it."""
    key: str
    description: str
    done: int
    total: int | None
    status: str = ""

    def text(self) -> None:
        return None

    def line(self) -> str:
        """The step's state as a plain progress line, e.g. `baseline tests under coverage 2/3 (tests/test_x.py)`."""
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        return f"{self.description} {count}" + (f" ({self.status})" if self.status else "")

    @property
    def finished(self) -> bool:
        return self.total is not None and self.done >= self.total


@dataclass(frozen=True)
class CandidateProposed:
    n: int
    summary: str
    files: list[str] = field(default_factory=list)

    def text(self) -> str:
        return f"  candidate {self.n}: {self.summary} [{', '.join(self.files)}]"


@dataclass(frozen=True)
class CheckDone:
    """One of candidate n's checks has its outcome (tests, result, timing)."""
    n: int
    step: str

    def text(self) -> str:
        return f"  {self.step}"


@dataclass(frozen=True)
class VerdictReached:
    """Candidate n is decided; `candidate` is its record as written to summary.json."""
    n: int
    candidate: dict

    @property
    def outcome(self) -> str:
        return outcome(self.candidate["verdict"]["reason"], self.candidate.get("outrun_by"))

    @property
    def accepted(self) -> bool:
        return self.outcome == ACCEPTED

    def text(self) -> str:
        verdict = self.candidate["verdict"]
        first = verdict["detail"].splitlines()[0] if verdict["detail"] else ""
        by = self.candidate.get("outrun_by")
        return f"  {self.outcome}" + (f" (candidate {by} gained more): " if by else ": ") + first


Event = Union[Note, Progress, CandidateProposed, CheckDone, VerdictReached]
Observer = Callable[[Event], None]


class Broadcast:
    """Send each event to every observer, in order."""

    def __init__(self, *observers: Observer):
        self.observers = [o for o in observers if o is not None]

    def __call__(self, event: Event) -> None:
        for observer in self.observers:
            observer(event)

    def note(self, message: str, warning: bool = False) -> None:
        self(Note(message, warning))

    def progress(self, key: str, description: str, done: int, total: int | None, status: str = "") -> None:
        self(Progress(key, description, done, total, status))


class LogObserver:
    """Plain lines into a text file (a batch task's log.txt): narration and verdicts, no progress displays."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def __call__(self, event: Event) -> None:
        line = event.text()
        if line is not None and not isinstance(event, CheckDone):
            self.stream.write(line + "\n")
            self.stream.flush()
