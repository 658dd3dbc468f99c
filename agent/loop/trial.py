"""One candidate, from the model's proposal to its verdict: the reviewer's look, the static checks, the tests that reach
what it edits, validation in a scratch worktree, and a commit on the branch when it is accepted."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from perfagent.events import CandidateProposed, CheckDone, VerdictReached
from perfagent.localize.source import SourceIndex, touched_functions
from perfagent.localize.testselect import Selection
from perfagent.loop.baseline import Baseline
from perfagent.loop.candidate import CandidateRecord
from perfagent.loop.context import RunContext
from perfagent.loop.environment import write_files
from perfagent.loop.focus import Focus
from perfagent.loop.propose import Proposal, Proposer
from perfagent.loop.review import ACCEPT, EDIT, REJECT, Candidate, Decision, unified_diff
from perfagent.loop.stops import Quit
from perfagent.loop.verdict import Judge, Verdict
from perfagent.measure.stats import SpeedStats
from perfagent.model.prompting import Attempt, Target
from perfagent.reasons import BUILD_FAILED, EDIT_FAILED, NO_EDIT, NOT_VALIDATED, REVIEWER_REJECTED
from perfagent.sandbox.workspace import commit_files, head

_REVIEWS = {ACCEPT: "accepted", REJECT: "rejected", EDIT: "edited"}  # a person's decision, as recorded


@dataclass
class Change:
    """The files a candidate changes, before and after."""
    before: dict[str, str]
    after: dict[str, str]


class Trial:
    def __init__(self, ctx: RunContext, baseline: Baseline, judge: Judge, branch: Path):
        self.ctx, self.baseline, self.judge, self.branch = ctx, baseline, judge, branch
        self.proposer = Proposer(ctx.session, ctx.settings, ctx.notify)

    def run(self, n: int, focus: Focus, history: list[Attempt], candidates: list[CandidateRecord]) -> CandidateRecord:
        """Candidate n, appended to `candidates` as soon as it exists (a quit keeps it on record, unvalidated), and
        to `history` once it has a verdict."""
        target = Target(self.ctx.workload, self.baseline.reference.seconds, focus.profile, focus.top_k)
        proposal = self.proposer.propose(target, self.branch, history)
        candidate = CandidateRecord(n, proposal.summary, files=proposal.named)
        candidates.append(candidate)
        if proposal.applied is None:
            candidate.verdict = (Verdict(EDIT_FAILED, proposal.problem) if proposal.problem else
                                 Verdict(NO_EDIT, "the reply contains no edit"))
        else:
            candidate.verdict = self._consider(candidate, proposal, focus.guard)
        candidate.verdict_at_s = self.ctx.elapsed()
        self.ctx.notify(VerdictReached(n, candidate.as_dict()))
        verdict = candidate.verdict
        detail = verdict.detail if verdict.reason == REVIEWER_REJECTED else \
            verdict.detail.splitlines()[0][:300] if verdict.detail else ""
        summary = f"{candidate.summary} (edited by the reviewer)" if candidate.model_diff else candidate.summary
        history.append(Attempt(summary, candidate.files, verdict.reason, detail))
        return candidate

    def _consider(self, candidate: CandidateRecord, proposal: Proposal, guard: Selection) -> Verdict:
        change = Change({p: (self.branch / p).read_text() if (self.branch / p).exists() else ""
                         for p in proposal.applied.changed}, proposal.applied.changed)
        candidate.files, candidate.diff = sorted(change.after), unified_diff(change.before, change.after)
        if not self.ctx.desk.human:  # a person is shown the whole candidate instead
            self.ctx.notify(CandidateProposed(candidate.n, candidate.summary, candidate.files))
        decision = self._review(candidate, Candidate(candidate.n, candidate.summary, proposal.reply, change.before,
                                                     change.after, self.ctx.env.tmpdir(f"edit-{candidate.n}")))
        if decision.action == EDIT:
            change.after, candidate.model_diff = decision.changed, candidate.diff
            candidate.files, candidate.diff = sorted(change.after), unified_diff(change.before, change.after)
        touched = touched_functions(SourceIndex(self.branch), change.before, change.after)
        candidate.functions = [span.key for span in touched]
        if decision.action == REJECT:
            return Verdict(REVIEWER_REJECTED, decision.feedback)
        verdict = self.judge.static_checks(change.before, change.after)
        if verdict is None:
            tests = self.baseline.plan.for_candidate(self.branch, head(self.branch), touched, guard)
            candidate.tests, candidate.unguarded = tests.files, tests.unguarded
            if tests.unguarded:
                self.ctx.notify.note(f"  unguarded: no selected test reaches {', '.join(tests.unguarded)}")
            verdict = self._validate(candidate.n, tests.files, change.after)
            verdict.unguarded = tests.unguarded
        if verdict.accepted:
            self._commit(candidate, change.after, verdict)
        return verdict

    def _review(self, candidate: CandidateRecord, shown: Candidate) -> Decision:
        """The reviewer's decision before validation, recorded."""
        desk = self.ctx.desk
        try:
            decision = desk.ask(desk.reviewer.review, shown)
        except Quit:
            candidate.review = "quit"
            candidate.verdict = Verdict(NOT_VALIDATED, "the reviewer quit before validating it")
            raise
        fields = {EDIT: {"edited_diff": unified_diff(shown.before, decision.changed)},
                  REJECT: {"feedback": decision.feedback}}.get(decision.action, {})
        desk.decided(decision.action, candidate=shown.n, **fields)
        if desk.human:
            candidate.review = _REVIEWS[decision.action]
        return decision

    def _validate(self, n: int, tests: list[str], changed: dict[str, str]) -> Verdict:
        """Tests, result and speed in a scratch worktree at the branch head with the change written over it."""
        notify, max_pairs = self.ctx.notify, self.judge.sampling.max_samples

        def progress(step: str, stats: SpeedStats | None = None) -> None:
            notify(CheckDone(n, step))
            if stats is not None:
                notify.progress(f"timing-{n}", f"candidate {n}: timing", stats.n_base, max_pairs,
                                f"{stats.speedup:.2f}x")

        with self.ctx.desk.reviewer.validating(n, tests), self.ctx.env.scratch(head(self.branch), changed) as tree:
            failed = self.ctx.env.rebuild(tree)
            verdict = Verdict(BUILD_FAILED, failed) if failed else \
                self.judge.judge(tree, self.baseline.reference, tests, progress)
        pairs = verdict.speed.n_base if verdict.speed else 0
        notify.progress(f"timing-{n}", f"candidate {n}: timing", pairs, pairs, verdict.reason)  # ends its display
        return verdict

    def _commit(self, candidate: CandidateRecord, changed: dict[str, str], verdict: Verdict) -> None:
        write_files(self.branch, changed)
        self.ctx.env.rebuild(self.branch)  # it built in the scratch worktree
        note = "Edited by the reviewer before validation.\n\n" if candidate.model_diff else ""
        candidate.commit = commit_files(
            self.branch, sorted(changed), f"perfagent: {candidate.summary}\n\n{note}{verdict.detail}\n\n"
            f"Functions: {', '.join(candidate.functions)}\nRun {self.ctx.run_id}, candidate {candidate.n}.")
