"""One round of candidates, from the model's proposals to their verdicts: the reviewer's look, the static checks, the
tests that reach what each edits and the result check for every one; timing for the survivors only; the fastest
significant one (or two survivors' changes together) made minimal and committed on the branch."""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from perfagent.edits.hunks import combine
from perfagent.events import CandidateProposed, CheckDone, VerdictReached
from perfagent.localize.source import MODULE_LEVEL, SourceIndex, touched_functions
from perfagent.localize.testselect import Selection
from perfagent.loop.baseline import Baseline
from perfagent.loop.candidate import CandidateRecord, Change
from perfagent.loop.context import RunContext
from perfagent.loop.environment import write_files
from perfagent.localize.hotspots import Profile
from perfagent.loop.focus import Focus
from perfagent.loop.minimal import Minimiser
from perfagent.loop.propose import Proposal, Proposer
from perfagent.loop.review import ACCEPT, EDIT, REJECT, Candidate, Decision, unified_diff
from perfagent.loop.stops import Quit
from perfagent.loop import titles
from perfagent.loop.verdict import Checked, Judge, Verdict
from perfagent.measure.stats import SpeedStats
from perfagent.model.prompting import Attempt, Target
from perfagent import formats
from perfagent.reasons import BUILD_FAILED, EDIT_FAILED, NO_EDIT, NOT_RUN_BY_WORKLOAD, NOT_VALIDATED, \
    REVIEWER_REJECTED
from perfagent.sandbox.workspace import commit_files, head

SUBJECT_CHARS = 72  # git's convention for a commit's first line
_REVIEWS = {ACCEPT: "accepted", REJECT: "rejected", EDIT: "edited"}  # a person's decision, as recorded


@dataclass
class Entry:
    """A candidate during its round: its record, its change, and once it passed the checks, its worktree."""
    record: CandidateRecord
    change: Change | None = None
    tests: list[str] | None = None
    tree: Path | None = None
    checked: Checked | None = None
    targets: tuple[str, ...] = ()  # the functions whose calls its result check recorded
    prose: str = ""  # the model's sentence about its change ("" when it wrote none: the change names itself)


@dataclass
class _Round:
    """What a round's steps share: the tests guarding its hotspots, the run's list of candidates (each appended as
    soon as it exists), and the worktrees of its survivors, open until the round ends."""
    guard: Selection
    candidates: list[CandidateRecord]
    trees: ExitStack


def hot_functions(focus: Focus) -> tuple[str, ...]:
    """The Python functions the prompts focus on, as the call recorder names them (it traces Python frames only)."""
    return tuple(h.key for h in focus.profile.top(focus.top_k)
                 if h.qualname != MODULE_LEVEL and h.file.endswith(".py"))


class Trial:
    def __init__(self, ctx: RunContext, baseline: Baseline, judge: Judge, branch: Path):
        self.ctx, self.baseline, self.judge, self.branch = ctx, baseline, judge, branch
        self.proposer = Proposer(ctx.session, ctx.settings, ctx.notify)
        self.reference = baseline.reference  # a new value each time a candidate's edit selects more tests (_check)
        self.hot: tuple[str, ...] = ()  # the functions the round's prompts focus on (hot_functions)
        self.sampled: Profile | None = None  # the round's profile: which functions the workload runs

    def run(self, first: int, focus: Focus, history: list[Attempt],
            candidates: list[CandidateRecord]) -> list[CandidateRecord]:
        """The round's candidates, numbered from `first`, each appended to `candidates` as soon as it exists (a quit
        keeps it on record, unvalidated) and to `history` once it has a verdict."""
        target = Target(self.ctx.workload, self.reference.seconds, focus.profile, focus.top_k)
        self.hot = hot_functions(focus) if self.ctx.settings.generality_checks else ()
        self.sampled = focus.measured
        wanted = min(self.ctx.settings.candidates_per_round, self.ctx.settings.max_iterations - first + 1)
        proposals = self.proposer.propose(target, self.branch, history, max(1, wanted))
        entries, combined = [], []
        try:
            with ExitStack() as trees:
                this = _Round(focus.guard, candidates, trees)
                for i, proposal in enumerate(proposals):
                    entries.append(self._checked(first + i, proposal, this))
                survivors = [e for e in entries if e.checked is not None]
                self._time(survivors)
                combined = self._keep(survivors, this)
        except BaseException as exc:  # the record keeps every candidate with a verdict, also when the run stops
            said = (str(exc).splitlines() or [""])[0][:200]
            why = "the reviewer quit first" if isinstance(exc, Quit) else \
                f"the run stopped before its verdict ({type(exc).__name__}{': ' + said if said else ''})"
            for record in candidates:  # the round's, also one whose checks were under way
                record.verdict = record.verdict or Verdict(NOT_VALIDATED, why)
            raise
        return [self._decided(entry.record, history) for entry in entries + combined]

    def _decided(self, candidate: CandidateRecord, history: list[Attempt]) -> CandidateRecord:
        candidate.verdict_at_s = self.ctx.elapsed()
        self.ctx.notify(VerdictReached(candidate.n, candidate.as_dict()))
        verdict = candidate.verdict
        detail = verdict.detail if verdict.reason == REVIEWER_REJECTED else \
            verdict.detail.splitlines()[0][:300] if verdict.detail else ""
        if candidate.outrun_by is not None:
            detail = f"{detail}; candidate {candidate.outrun_by} gained more"
        summary = f"{candidate.summary} (edited by the reviewer)" if candidate.model_diff else candidate.summary
        history.append(Attempt(summary, candidate.files, candidate.outcome, detail))
        return candidate

    # -- the cheap checks ---------------------------------------------------------------------------------------------
    def _checked(self, n: int, proposal: Proposal, this: _Round) -> Entry:
        """Candidate n through every check but the timing; a survivor keeps its worktree open in the round's."""
        entry = Entry(CandidateRecord(n, titles.title(proposal.summary, [], proposal.named), files=proposal.named),
                      prose=proposal.summary)
        this.candidates.append(entry.record)
        if proposal.applied is None:
            entry.record.verdict = (Verdict(EDIT_FAILED, proposal.problem) if proposal.problem else
                                    Verdict(NO_EDIT, "the reply contains no edit"))
            return entry
        entry.change = Change({p: (self.branch / p).read_text() if (self.branch / p).exists() else ""
                               for p in proposal.applied.changed}, proposal.applied.changed)
        self._show(entry)
        decision = self._review(entry.record, Candidate(n, entry.record.summary, proposal.reply, entry.change.before,
                                                        entry.change.after, self.ctx.env.tmpdir(f"edit-{n}")))
        if decision.action == EDIT:
            entry.change.after, entry.record.model_diff = decision.changed, entry.record.diff
            self._show(entry, quiet=True)
        if decision.action == REJECT:
            entry.record.verdict = Verdict(REVIEWER_REJECTED, decision.feedback)
            return entry
        self._check(entry, this)
        return entry

    def _show(self, entry: Entry, quiet: bool = False) -> None:
        """The candidate's files, diff and functions from its change, and its title (titles.py)."""
        candidate, change = entry.record, entry.change
        candidate.files, candidate.diff = sorted(change.after), unified_diff(change.before, change.after)
        self._touched(entry)
        candidate.summary = titles.title(entry.prose, candidate.functions, candidate.files)
        if not quiet and not self.ctx.desk.human:  # a person is shown the whole candidate instead
            self.ctx.notify(CandidateProposed(candidate.n, candidate.summary, candidate.files))

    def _touched(self, entry: Entry) -> list:
        touched = touched_functions(SourceIndex(self.branch), entry.change.before, entry.change.after)
        entry.record.functions = [span.key for span in touched]
        return touched

    def _check(self, entry: Entry, this: _Round) -> None:
        touched, record = self._touched(entry), entry.record
        record.verdict = self.judge.static_checks(entry.change.before, entry.change.after)
        if record.verdict is not None:
            return
        tests = self.baseline.plan.for_candidate(self.branch, head(self.branch), touched, this.guard)
        self.reference = self.reference.with_tests(*self.baseline.plan.seen())  # what those baseline runs found
        record.tests, record.unguarded, entry.tests = tests.files, tests.unguarded, tests.files
        if tests.unguarded:
            self.ctx.notify.note(f"  unguarded: no selected test reaches {', '.join(tests.unguarded)}")
        tree = this.trees.enter_context(self.ctx.env.scratch(head(self.branch), entry.change.after))
        failed = self.ctx.env.rebuild(tree)
        record.build_s = self.ctx.env.build_seconds.get(tree)
        if record.build_s is not None:
            self.ctx.notify.note(f"  candidate {record.n}: {'build failed' if failed else 'built'} in "
                                 f"{formats.seconds(record.build_s)}")
        entry.targets = self._targets(touched) if self.ctx.settings.generality_checks and not failed else ()
        with self.ctx.desk.reviewer.validating(record.n, tests.files):
            checked = Verdict(BUILD_FAILED, failed) if failed else \
                self.judge.check(tree, self.reference, tests.files, self._progress(record.n), entry.targets)
        called = {target for target, calls in self.judge.runner.recorded.get(tree.resolve(), {}).items() if calls}
        if isinstance(checked, Verdict):
            record.verdict = checked
        elif self._never_run(touched, called):
            record.verdict = Verdict(NOT_RUN_BY_WORKLOAD, self._never_run(touched, called), checked.tests_run,
                                     result_check=checked.result_check)
        else:
            entry.tree, entry.checked = tree, checked

    def _targets(self, touched: list) -> tuple[str, ...]:
        """The functions whose calls its result check records: those it edits and the round's hot ones, Python's only
        (the recorder traces Python frames: a Cython or C function's calls are checked through its Python callers
        and the workload's result, and the run says so)."""
        edited = [s for s in touched if s.qualname != MODULE_LEVEL]
        compiled = [s.key for s in edited if not s.file.endswith(".py")]
        if compiled:
            self.ctx.notify.note(f"  calls to {', '.join(compiled)} are not recorded (compiled code): its Python "
                                 f"callers' calls and the workload's result check it")
        return tuple(dict.fromkeys([*(s.key for s in edited if s.file.endswith(".py")), *self.hot]))

    def _never_run(self, touched: list, called: set[str]) -> str | None:
        """Why timing the candidate would be wasted, or None: every function it edits is one the workload never ran
        in the last profile (no sample) nor in the candidate's result run (`called`: the recorded functions it called),
        so no change there can make it faster. A short function runs between a profile's samples (ply calls a grammar
        rule per reduction), and the recorder sees every call. A module-level edit (an import, a table built at
        import) could matter elsewhere, and a compiled function (Cython, C) may run unnamed: a profile of Python frames
        never names one, a native profile not one the compiler inlined. Those are timed."""
        ran = {h.key for h in self.sampled.hotspots} | called
        if not touched or any(s.qualname == MODULE_LEVEL or s.key in ran or not s.file.endswith(".py")
                              for s in touched):
            return None
        return (f"the workload never runs {', '.join(s.qualname for s in touched)} (no sample in {self.sampled.samples}"
                f" of the last profile, {self.sampled.seconds:.0f} s with {self.sampled.profiler}): not timed")

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

    # -- timing and the choice ------------------------------------------------------------------------------------
    def _progress(self, n: int):
        notify, max_pairs = self.ctx.notify, self.judge.sampling.max_samples

        def progress(step: str, stats: SpeedStats | None = None) -> None:
            notify(CheckDone(n, step))
            if stats is not None:
                notify.progress(f"timing-{n}", f"candidate {n}: timing", stats.n_base, max_pairs,
                                f"{stats.speedup:.2f}x")
        return progress

    def _time(self, entries: list[Entry]) -> None:
        """The speed decisions of the round's survivors, timed together in one rotation against the baseline."""
        if not entries:
            return
        with self.ctx.desk.reviewer.validating(entries[0].record.n, entries[0].tests):
            verdicts = self.judge.time_round(self.reference, [(e.tree, e.checked) for e in entries],
                                             [self._progress(e.record.n) for e in entries])
        for entry, verdict in zip(entries, verdicts):
            n, pairs = entry.record.n, verdict.speed.n_base if verdict.speed else 0
            self.ctx.notify.progress(f"timing-{n}", f"candidate {n}: timing", pairs, pairs, verdict.reason)  # its end
            entry.record.verdict = verdict

    def _keep(self, survivors: list[Entry], this: _Round) -> list[Entry]:
        """Commit the round's fastest significant candidate (or two survivors' changes together, when faster still),
        or the next fastest when minimal patches find that it rigs the tests; the others that were significantly
        faster are outrun by it (their records say so; their verdicts stand). Returns the candidate made of two, if
        one was tried."""
        def gain(entry: Entry) -> float:
            return -self.judge.gain(entry.record.verdict)[0]

        accepted = sorted((e for e in survivors if e.record.accepted), key=gain)
        together = self._together(accepted[0], accepted[1], this) if len(accepted) >= 2 else None
        if together is not None and together.record.accepted:
            accepted = sorted(accepted + [together], key=gain)
        for i, best in enumerate(accepted):
            change, verdict = Minimiser(self.ctx, self.judge, self.reference).minimise(
                best.record, best.change, best.record.verdict, best.tests, best.targets)
            best.record.verdict = verdict  # the verdict of what would be committed: the minimal change's
            if verdict.accepted:  # the minimal step may find that a hunk rigs the tests: then the next best
                for other in accepted[i + 1:]:
                    other.record.outrun_by = best.record.n
                self._commit(best, change, verdict)
                break
        return [together] if together is not None else []

    def _together(self, first: Entry, second: Entry, this: _Round) -> Entry | None:
        """The two fastest survivors' changes as one more candidate, checked and timed, when they edit different
        functions and merge cleanly within max-iterations; None when not tried."""
        if set(first.record.functions) & set(second.record.functions):
            return None
        before = {**second.change.before, **first.change.before}
        merged = combine(before, first.change.after, second.change.after)
        if merged is None:
            return None
        n = max(c.n for c in this.candidates) + 1
        if n > self.ctx.settings.max_iterations:  # the combination is a candidate too
            return None
        low, high = sorted((first.record, second.record), key=lambda record: record.n)
        prose = f"candidates {low.n} and {high.n} together: {low.summary} + {high.summary}"
        entry = Entry(CandidateRecord(n, prose), Change(before, merged), prose=prose)
        this.candidates.append(entry.record)
        self._show(entry)
        self._check(entry, this)
        self._time([entry] if entry.checked is not None else [])
        return entry

    def _commit(self, entry: Entry, change: Change, verdict: Verdict) -> None:
        """Commit the candidate's (minimal) change; its record and message name what the commit holds: the functions
        of its own diff, and a title derived from them when the model gave none."""
        candidate = entry.record
        changed = {p: t for p, t in change.after.items() if t != change.before.get(p)}
        candidate.functions = [s.key for s in touched_functions(SourceIndex(self.branch), change.before, changed)]
        candidate.summary = titles.title(entry.prose, candidate.functions, sorted(changed))
        write_files(self.branch, changed)
        if entry.tree is not None and change.after == entry.change.after:  # what its worktree built: taken
            self.ctx.env.take_build(entry.tree, self.branch)
        self.ctx.env.rebuild(self.branch)
        message = commit_message(candidate, verdict, self.ctx.run_id)
        candidate.commit = commit_files(self.branch, sorted(changed), message)


def commit_message(candidate: CandidateRecord, verdict: Verdict, run_id: str) -> str:
    """A subject within SUBJECT_CHARS, cut at a word (the whole title then opens the body), the verdict's figures,
    the functions the commit changes and where it comes from."""
    full = f"perfagent: {candidate.summary}"
    subject = formats.shorten(full, SUBJECT_CHARS)
    whole = f"{candidate.summary}\n\n" if subject != full else ""
    note = "Edited by the reviewer before validation.\n\n" if candidate.model_diff else ""
    return (f"{subject}\n\n{whole}{note}{verdict.detail}\n\nFunctions: {', '.join(candidate.functions)}\n"
            f"Run {run_id}, candidate {candidate.n}.")
