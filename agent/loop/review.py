"""The reviewer hooks of the optimize loop: who picks the hotspots, looks at each candidate before it is validated,
and decides between candidates. `AutoReviewer` (the default) decides nothing, so a run without a person goes on
exactly as the agent plans it; interactive.py puts a person in these places."""
from __future__ import annotations

import difflib
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from perfagent.events import Event
from perfagent.localize.hotspots import Hotspot
from perfagent.model.llm import Trajectory

ACCEPT, REJECT, EDIT = "accept", "reject", "edit"  # candidate decisions; "accept" means: validate it
CONTINUE, UNDO, LIMITS = "continue", "undo", "limits"  # between candidates


def unified_diff(before: dict[str, str], after: dict[str, str]) -> str:
    """One unified diff over the files of `after` (a missing `before` entry is a new file)."""
    return "".join("".join(difflib.unified_diff(before.get(p, "").splitlines(True), after[p].splitlines(True),
                                                f"a/{p}", f"b/{p}")) for p in sorted(after))


@dataclass
class Candidate:
    """A candidate as the reviewer sees it, before validation."""
    n: int
    summary: str
    reply: str  # the model's whole answer (its explanation and the edit blocks)
    before: dict[str, str]  # the files it changes, as they are on the branch
    changed: dict[str, str]  # the same files with the candidate's edits
    workdir: Path  # an empty folder for editing the candidate

    @property
    def diff(self) -> str:
        return unified_diff(self.before, self.changed)


@dataclass
class Decision:
    action: str  # ACCEPT, REJECT or EDIT
    feedback: str = ""  # REJECT: the reviewer's words for the model
    changed: dict[str, str] = field(default_factory=dict)  # EDIT: the edited files (only those that differ)


@dataclass
class Step:
    """What to do between candidates; LIMITS carries the new limits."""
    action: str
    max_iterations: int | None = None
    budget_usd: float | None = None


@dataclass
class RunState:
    """What the reviewer is shown between candidates."""
    done: int  # candidates so far
    max_iterations: int
    commits: list[tuple[int, str]]  # (candidate, commit sha) kept on the branch, oldest first
    spent_usd: float
    budget_usd: float | None


class AutoReviewer:
    """No person: the agent's own choice of hotspots, every candidate validated, no stop between candidates."""
    human = False

    def choose_targets(self, hotspots: list[Hotspot]) -> list[Hotspot] | None:
        return None  # the agent's choice

    def review(self, candidate: Candidate) -> Decision:
        return Decision(ACCEPT)

    def validating(self, n: int, tests: list[str]):
        """A context around candidate n's validation (its checks arrive as events, at observe)."""
        return nullcontext()

    def observe(self, event: Event) -> None:
        """What happens in the run, as it happens (an interactive reviewer shows checks and verdicts)."""

    def next_step(self, state: RunState) -> Step:
        return Step(CONTINUE)

    def undone(self, n: int, commit: str) -> None:
        pass


class ReviewDesk:
    """The loop's side of the reviewer: hook calls timed (a person's time is kept apart from perfagent's own), and a
    person's decisions recorded in the trajectory (the automatic reviewer's are not decisions)."""

    def __init__(self, reviewer, trajectory: Trajectory):
        self.reviewer, self.trajectory, self.seconds = reviewer, trajectory, 0.0

    @property
    def human(self) -> bool:
        return self.reviewer.human

    def ask(self, hook: Callable, *args):
        start = time.perf_counter()
        try:
            return hook(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def decided(self, action: str, **fields) -> None:
        if self.reviewer.human:
            self.trajectory.record(kind="human", action=action, **fields)
