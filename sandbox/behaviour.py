"""Parent side of behaviour judging: read what sandbox/monitor.py logged in a child, and find what a candidate did
that the unmodified code did not.

Events compare by kind and subject: the folder written, the program started, the host reached, the library loaded,
the signal sent, the credential looked up. A candidate is unsafe when it shows an event that no run of the unmodified
code showed and that the project's allow-list (`allow-behaviour`) does not cover.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

KINDS = ("write", "process", "network", "native", "signal", "secret")


@dataclass(frozen=True)
class Event:
    kind: str  # one of KINDS
    subject: str  # what it acted on, as it compares between runs
    detail: str = field(default="", compare=False)  # one instance, for the message

    def describe(self) -> str:
        return _home_as_tilde(self.detail or f"{self.kind} {self.subject}")

    def as_dict(self) -> dict:
        return {"kind": self.kind, "subject": self.subject, "detail": self.detail}


def _home_as_tilde(text: str) -> str:
    home = str(Path.home())
    return text.replace(home + "/", "~/") if home != "/" else text


def read_log(path: Path) -> frozenset[Event]:
    """The events a child logged (lines cut short by a kill are skipped)."""
    events = set()
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return frozenset()
    for line in lines:
        try:
            data = json.loads(line)
            events.add(Event(str(data["kind"]), str(data["subject"]), str(data.get("detail", ""))))
        except (ValueError, KeyError, TypeError):
            continue
    return frozenset(events)


def from_records(records: Iterable[dict]) -> set[Event]:
    return {Event(r["kind"], r["subject"], r.get("detail", "")) for r in records}


def check_allow_list(patterns: Iterable[str]) -> None:
    """Raise ValueError for an allow-list entry that names no kind of behaviour."""
    for pattern in patterns:
        if pattern.split(":", 1)[0] not in KINDS:
            raise ValueError(f"allow-behaviour entry {pattern!r}: use KIND or KIND:PATTERN with KIND one of "
                             f"{', '.join(KINDS)}")


def _allowed(event: Event, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        kind, _, subject = pattern.partition(":")
        if kind == event.kind and (not subject or fnmatch.fnmatch(_home_as_tilde(event.subject), subject)
                                   or fnmatch.fnmatch(event.subject, subject)):
            return True
    return False


def new_behaviour(candidate: Iterable[Event], baseline: Iterable[Event], allowed: Iterable[str] = ()) -> list[Event]:
    """What the candidate did that the baseline never did and the allow-list does not cover, most serious first."""
    seen = set(baseline)
    fresh = {e for e in candidate if e not in seen and not _allowed(e, allowed)}
    return sorted(fresh, key=lambda e: (KINDS.index(e.kind) if e.kind in KINDS else len(KINDS), e.subject))
