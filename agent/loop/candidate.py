"""One candidate's state as the loop builds it, typed: its change, and its record, whose `as_dict` is its one
serialisation into summary.json."""
from __future__ import annotations

from dataclasses import dataclass, field

from perfagent.loop.verdict import Verdict
from perfagent.reasons import outcome


@dataclass
class Change:
    """The files a candidate changes, before and after."""
    before: dict[str, str]
    after: dict[str, str]


@dataclass
class CandidateRecord:
    n: int
    summary: str  # the model's one-line explanation
    files: list[str] = field(default_factory=list)  # the files it changes (or that unusable edits named)
    functions: list[str] = field(default_factory=list)  # the functions it changes (file:qualname)
    diff: str = ""
    model_diff: str | None = None  # the model's own diff, when a reviewer edited it before validation
    full_diff: str | None = None  # the accepted diff before minimal-patches took hunks back (diff: what was committed)
    dropped: list[dict] | None = None  # the hunk groups taken back, and why
    tests: list[str] | None = None  # the test files selected for it
    unguarded: list[str] | None = None  # edited functions no selected test reaches
    review: str | None = None  # a person's decision: accepted, rejected, edited, quit
    verdict: Verdict | None = None
    commit: str | None = None  # on the branch, when accepted
    verdict_at_s: float | None = None  # time to its verdict, from the run's start
    seconds: dict | None = None  # where its iteration's time went (wall, child processes, model, reviewer, perfagent)
    build_s: float | None = None  # its build command's seconds in its worktree (None: none ran, repos/builds.py)
    undone: bool = False  # accepted, then taken off the branch by the reviewer
    outrun_by: int | None = None  # accepted, but this candidate of its round gained more and was committed instead

    @property
    def accepted(self) -> bool:
        return self.verdict is not None and self.verdict.accepted

    @property
    def outcome(self) -> str:
        return outcome(self.verdict.reason if self.verdict else None, self.outrun_by, self.undone)

    def as_dict(self) -> dict:
        data = {"n": self.n, "summary": self.summary, "files": self.files, "functions": self.functions,
                "diff": self.diff, "commit": self.commit,
                "verdict": self.verdict.as_dict() if self.verdict else None, "verdict_at_s": self.verdict_at_s}
        optional = {"model_diff": self.model_diff, "full_diff": self.full_diff, "dropped": self.dropped,
                    "tests": self.tests, "unguarded": self.unguarded, "review": self.review, "seconds": self.seconds,
                    "build_s": self.build_s, "undone": self.undone or None, "outrun_by": self.outrun_by}
        return {**data, **{k: v for k, v in optional.items() if v is not None}}
