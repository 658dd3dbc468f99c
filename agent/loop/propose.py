"""Ask the model for one change to the focused hotspots; edits that do not apply go back to it with the reason and the
closest real lines, up to `edit-retries` times."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from perfagent.config import Settings
from perfagent.edits.search_replace import ApplyResult, EditFormatError, apply_edits, describe_failures, parse_edits
from perfagent.events import Broadcast
from perfagent.localize.source import SourceIndex
from perfagent.loop.titles import explanation
from perfagent.model.llm import OracleModel, Session
from perfagent.model.prompting import Attempt, Target, fix_edit_message, optimize_messages
from perfagent.formats import plural


@dataclass
class Proposal:
    """The model's answer: the edits applied in memory (None: none usable), or why not."""
    reply: str
    applied: ApplyResult | None = None
    problem: str | None = None  # unusable edits after every correction; None with no `applied`: no edit at all
    named: list[str] = field(default_factory=list)  # the files the last unusable edits named
    prose: bool = True  # the reply's words are the model's own, about this change

    @property
    def summary(self) -> str:
        """The model's sentence about its change ("" when it wrote none: the change then names itself)."""
        return explanation(self.reply) if self.prose else ""


class Proposer:
    def __init__(self, session: Session, settings: Settings, notify: Broadcast):
        self.session, self.settings, self.notify = session, settings, notify
        self.edit_retries = settings.edit_retries

    def propose(self, target: Target, worktree: Path, attempts: list[Attempt], n: int = 1) -> list[Proposal]:
        """n different candidates for the same hotspots (one request for all of them)."""
        messages = optimize_messages(target, SourceIndex(worktree), attempts, prompt_tokens=self.settings.prompt_tokens,
                                     model=self.settings.model)
        replies = self.session.ask_many(messages, n, purpose="optimize")
        # an oracle replays a known patch under a fixed label ("The expert's patch."), which says nothing of the change
        prose = not isinstance(self.session.model, OracleModel)
        return [replace(self._usable(messages, reply.text, worktree), prose=prose) for reply in replies]

    def _usable(self, messages: list[dict], reply: str, worktree: Path) -> Proposal:
        """The reply's edits applied in memory, sending unusable ones back up to `edit-retries` times."""
        for attempt in range(self.edit_retries + 1):
            named: list[str] = []
            try:
                edits = parse_edits(reply)
            except EditFormatError as exc:
                problem, details = "the edit blocks are malformed", str(exc)
            else:
                if not edits:
                    return Proposal(reply)
                applied = apply_edits(worktree, edits, write=False)
                if applied.ok:
                    return Proposal(reply, applied)
                problem, details = "some edits do not apply", describe_failures(applied)
                named = sorted({e.path for e in edits})
            if attempt == self.edit_retries:
                return Proposal(reply, None, f"{problem} (after {plural(attempt, 'correction')}): {details}", named)
            self.notify.note(f"  edit not usable ({problem}); asking the model to correct it")
            messages = messages + [{"role": "assistant", "content": reply}, fix_edit_message(problem, details)]
            reply = self.session.ask(messages, purpose="fix edit").text
        raise AssertionError("unreachable")
