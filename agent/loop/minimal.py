"""Minimal patches: models add changes that do nothing for speed (reformatting, renames, a helper nobody calls). Before
an accepted candidate is committed, its hunks are taken back one group at a time (a function's hunks together, since
they may depend on each other; each module-level hunk alone; pure deletions stay, as the cleanup of code the change
made dead; a file that is not Python is one group), and a version without a group is kept when it still
passes every check and its gain (speedup, or memory with objective memory) is not significantly lower: its
interval reaches the full candidate's. A group without which the tests fail, in a file whose lines no test runs (by
coverage, while a test runs: module-level code that runs at import does not count), changes the tests' outcome by
other means than the code they test: the whole candidate is rejected."""
from __future__ import annotations

from dataclasses import dataclass, replace

from perfagent.edits.hunks import Hunk, hunks, with_hunks
from perfagent.localize.source import MODULE_LEVEL, SourceIndex, touched_functions
from perfagent.loop.candidate import CandidateRecord, Change
from perfagent.loop.context import RunContext
from perfagent.loop.review import unified_diff
from perfagent.loop.verdict import Judge, Reference, Verdict
from perfagent.reasons import BUILD_FAILED, TESTS_FAILED, TESTS_TAMPERED
from perfagent.sandbox.testrun import coverage_by_line, run_pytest
from perfagent.sandbox.workspace import head


@dataclass
class _Group:
    key: str  # the function its hunks change (file:qualname), or the file and line of a module-level hunk
    hunks: list[Hunk]


def _interval(gain: tuple[float, float, float]) -> str:
    return f"{gain[0]:.2f}x [{gain[1]:.2f}, {gain[2]:.2f}]"


class Minimiser:
    def __init__(self, ctx: RunContext, judge: Judge, reference: Reference):
        self.ctx, self.judge, self.reference = ctx, judge, reference

    def minimise(self, candidate: CandidateRecord, change: Change, verdict: Verdict, tests: list[str],
                 targets: tuple[str, ...] = ()) -> tuple[Change, Verdict]:
        """(the smallest change that holds, its verdict); what was dropped and why goes into the candidate's record.
        `tests` and `targets` (functions whose calls are compared) are those the full candidate was judged with."""
        groups, deletions = self._groups(change.before, change.after)
        if not self.ctx.settings.minimal_patches or len(groups) < 2:
            return change, verdict
        kept, dropped = list(groups), []
        full, exercised = change, None  # the files of the full change that its tests run, measured when first needed
        for group in groups:
            others = [h for g in kept if g is not group for h in g.hunks]
            if not others:  # never take back every change
                continue
            rest = deletions + others
            after = with_hunks(change.before, rest, sorted(change.after))
            smaller = self._judge(change.before, after, tests, targets, self.judge.gain(verdict)[1])
            if smaller.accepted and self.judge.gain(smaller)[2] >= self.judge.gain(verdict)[1]:  # intervals overlap
                kept.remove(group)
                dropped.append({"group": group.key, "why": f"not needed: every check passes without it, "
                                f"{_interval(self.judge.gain(smaller))} against the full candidate's "
                                f"{_interval(self.judge.gain(verdict))}"})
                change, verdict = replace(change, after=after), smaller
                continue
            if smaller.reason == TESTS_FAILED and group.hunks[0].path.endswith(".py"):  # coverage sees Python only
                exercised = self._exercised(full, tests) if exercised is None else exercised
                if group.hunks[0].path not in exercised:
                    self.ctx.notify.note(f"  minimal patch: the tests need {group.key} and never run it")
                    return full, Verdict(TESTS_TAMPERED, (
                        f"the tests fail without {group.key} ({smaller.detail.splitlines()[0]}), yet no test runs a "
                        f"line of {group.hunks[0].path}: it changes their outcome by other means than the code they "
                        f"test"), verdict.tests_run, smaller.tests_failed)
            without = f"without it {_interval(self.judge.gain(smaller))}" if smaller.speed else smaller.reason
            self.ctx.notify.note(f"  minimal patch: {group.key} is needed ({without})")
        if dropped:
            candidate.full_diff, candidate.dropped = candidate.diff, dropped
            candidate.diff = unified_diff(change.before, change.after)
            self.ctx.notify.note(f"  minimal patch: dropped {', '.join(d['group'] for d in dropped)}")
        return change, verdict

    def _groups(self, before: dict[str, str], after: dict[str, str]) -> tuple[list[_Group], list[Hunk]]:
        """The groups of hunks that may be taken back, and the pure deletions, which always stay (the cleanup of code
        the change made dead, such as an import no longer used). A file that is not Python (Cython, C) is one group:
        taken back whole or kept whole, each try costing a build."""
        index, groups, deletions = SourceIndex(self.reference.worktree), {}, []
        for hunk in hunks(before, after):
            if not hunk.path.endswith(".py"):
                groups.setdefault(hunk.path, _Group(hunk.path, [])).hunks.append(hunk)
                continue
            if not hunk.new:
                deletions.append(hunk)
                continue
            alone = with_hunks(before, [hunk], [hunk.path])
            spans = touched_functions(index, {hunk.path: before.get(hunk.path, "")}, alone)
            functions = [s.key for s in spans if s.qualname != MODULE_LEVEL]
            key = functions[0] if len(functions) == 1 else f"{hunk.path}:{hunk.start + 1}"
            groups.setdefault(key, _Group(key, [])).hunks.append(hunk)
        return list(groups.values()), deletions

    def _exercised(self, change: Change, tests: list[str]) -> set[str]:
        """The files of `change` that its tests run a line of while a test runs; all of them when that cannot be
        measured (no evidence against any)."""
        measure = sorted(path for path in change.after if path.endswith(".py"))
        if not measure or not tests:
            return set()
        with self.ctx.env.scratch(head(self.reference.worktree), change.after) as tree:
            if self.ctx.env.rebuild(tree):
                return set(change.after)
            tmp = self.judge.tmp / f"{tree.name}-coverage"
            tmp.mkdir(parents=True, exist_ok=True)
            coverage_file = tmp / "coverage.db"
            run = run_pytest(tree, tests, python=self.judge.python, tmp=tmp, coverage_file=coverage_file,
                             limits=self.judge.test_limits(self.reference, tests), measure=measure)
            if run.cut_short() or not coverage_file.exists():
                return set(change.after)
            return {path for path, lines in coverage_by_line(coverage_file, tree.resolve()).items() if lines}

    def _judge(self, before: dict[str, str], after: dict[str, str], tests: list[str],
               targets: tuple[str, ...], full_low: float) -> Verdict:
        """Every check on a smaller version, in a scratch worktree at the branch head. Its timing stops as soon as
        its interval ends under `full_low`, the full candidate's lower bound, which it must reach to replace it."""
        static = self.judge.static_checks(before, after)
        if static is not None:
            return static
        judge = self.judge if self.judge.objective == "memory" else \
            replace(self.judge, sampling=replace(self.judge.sampling, below=full_low))
        with self.ctx.env.scratch(head(self.reference.worktree), after) as tree:
            failed = self.ctx.env.rebuild(tree)
            return Verdict(BUILD_FAILED, failed) if failed else \
                judge.judge(tree, self.reference, tests, targets=targets)
