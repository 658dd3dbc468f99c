"""Parent side of behaviour judging: read what sandbox/monitor.py logged in a child, and find what a candidate did
that the unmodified code did not.

Events compare by kind and subject: the folder written, the program started, the host reached, the library loaded,
the signal sent, the credential looked up. A candidate is unsafe when it shows an event that no run of the unmodified
code showed and that the project's allow-list (`allow-behaviour`) does not cover. Two events come from outside the
monitor's own log: the most tasks the kernel counted alive at once in a run (tasks_at_once), which compares as a
number with the baseline's runs of the same program, and a monitor that was blinded (TAMPERED), which no allow-list
covers.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

from perfagent.sandbox.monitor import START

KINDS = ("write", "process", "network", "native", "signal", "secret")  # what allow-behaviour may name
MONITOR = "monitor"  # the kind of TAMPERED
_ORDER = (MONITOR, *KINDS)  # most serious first: with a blinded monitor, the rest of the log is not evidence
_TASKS = "tasks at once running "  # + the program: the subject of tasks_at_once


@dataclass(frozen=True)
class Event:
    kind: str  # one of KINDS, or MONITOR
    subject: str  # what it acted on, as it compares between runs
    detail: str = field(default="", compare=False)  # one instance, for the message
    count: int | None = None  # tasks_at_once: how many

    def describe(self) -> str:
        return _home_as_tilde(self.detail or f"{self.kind} {self.subject}")

    def as_dict(self) -> dict:
        return {"kind": self.kind, "subject": self.subject, "detail": self.detail, "count": self.count}


TAMPERED = Event(MONITOR, "tampered", "the behaviour monitor was blinded: the process perfagent started exited "
                 "normally, but its monitor did not report at exit (its hook, log or state was changed, or the process "
                 "left by os._exit)")


def tasks_at_once(program: str, count: int) -> Event:
    """The kernel's count of a run's tasks (processes and threads) alive at once, running `program`."""
    return Event("process", _TASKS + program, f"{count} {_TASKS}{program}", count)


def _home_as_tilde(text: str) -> str:
    home = str(Path.home())
    return text.replace(home + "/", "~/") if home != "/" else text


def read_log(path: Path, exited: bool = False) -> frozenset[Event]:
    """The events a child logged (lines cut short by a kill are skipped). A process that announced an exit report
    (sandbox/monitor.py) and did not make it is TAMPERED when the run `exited` normally (status 0, in time)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return frozenset()
    events, announced = set(), set()
    for line in lines:
        try:
            data = json.loads(line)
            event = Event(str(data["kind"]), str(data["subject"]), str(data.get("detail", "")))
        except (ValueError, KeyError, TypeError):
            continue
        if event.kind == START:
            announced.add(event.subject)
        else:
            events.add(event)
    reported = {e.subject for e in events if e.kind == "write" and e.subject in announced}
    if exited and announced - reported:
        events.add(TAMPERED)
    return frozenset(e for e in events if e.subject not in announced)


def from_records(records: Iterable[dict]) -> set[Event]:
    return {Event(r["kind"], r["subject"], r.get("detail", ""), r.get("count")) for r in records}


def check_allow_list(patterns: Iterable[str]) -> None:
    """Raise ValueError for an allow-list entry that names no kind of behaviour."""
    for pattern in patterns:
        if pattern.split(":", 1)[0] not in KINDS:
            raise ValueError(f"allow-behaviour entry {pattern!r}: use KIND or KIND:PATTERN with KIND one of "
                             f"{', '.join(KINDS)}")


def allow_hint(event: Event) -> str:
    """How a project allows `event` (for a rejection's message), or "" where nothing can."""
    if event.kind not in KINDS:
        return ""
    return f'allow it with allow-behaviour = ["{event.kind}{"" if event.count is not None else ":..."}"]'


def _allowed(event: Event, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        kind, _, subject = pattern.partition(":")
        if kind == event.kind and (not subject or fnmatch.fnmatch(_home_as_tilde(event.subject), subject)
                                   or fnmatch.fnmatch(event.subject, subject)):
            return True
    return False


def _more_tasks(candidate: Iterable[Event], baseline: Iterable[Event]) -> set[Event]:
    """The candidate's task counts above every count of the same program in the baseline's runs (a program the
    baseline never ran has nothing to compare with)."""
    most: dict[str, int] = {}
    for e in baseline:
        if e.count is not None:
            most[e.subject] = max(e.count, most.get(e.subject, e.count))
    highest: dict[str, Event] = {}
    for e in candidate:
        if e.count is not None and e.subject in most and e.count > most[e.subject]:
            if e.subject not in highest or e.count > highest[e.subject].count:
                highest[e.subject] = e
    return {replace(e, detail=f"started processes or threads the unmodified code never did (counted by the kernel: "
                              f"{e.count} at once against {most[e.subject]}, running {e.subject[len(_TASKS):]})")
            for e in highest.values()}


def new_behaviour(candidate: Iterable[Event], baseline: Iterable[Event], allowed: Iterable[str] = ()) -> list[Event]:
    """What the candidate did that the baseline never did and the allow-list does not cover, most serious first."""
    candidate, baseline = list(candidate), set(baseline)
    fresh = {e for e in candidate if e.count is None and e not in baseline} | _more_tasks(candidate, baseline)
    fresh = {e for e in fresh if not _allowed(e, allowed)}
    return sorted(fresh, key=lambda e: (_ORDER.index(e.kind) if e.kind in _ORDER else len(_ORDER), e.subject))
