"""The optimization loop: baseline -> (focus -> trial -> verdict -> commit) x N -> final measurement. Each phase is its
own module; this one sets a run up, sequences the phases, and keeps the record."""
from __future__ import annotations

import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from perfagent.config import ConfigError, Settings
from perfagent.events import Broadcast, Observer
from perfagent.localize.testselect import TestPlan
from perfagent.loop.baseline import Baseline, BaselinePhase
from perfagent.loop.candidate import CandidateRecord
from perfagent.loop.context import RunContext
from perfagent.loop.environment import Environment
from perfagent.loop.final import final_measurement
from perfagent.loop.focus import Focus, FocusPhase
from perfagent.loop.review import CONTINUE, LIMITS, UNDO, AutoReviewer, ReviewDesk, RunState
from perfagent.loop.stops import IterationLimit, OutOfPatience, Quit, Stop, stop_for
from perfagent.loop.trial import Trial, hot_functions
from perfagent.loop.unseen import choose
from perfagent.measure.workload import OWN_INPUT, Workload
from perfagent.model.llm import Budget, BudgetExceeded, LiteLLMModel, ModelConfigError, ModelError, ScriptExhausted, \
    Session, Trajectory, make_model
from perfagent.model.prompting import Attempt
from perfagent.reasons import FAILED, INTERRUPTED, MODEL_FAILED, UNDONE
from perfagent.record import RunRecord
from perfagent.repos.cache import BaselineCache
from perfagent.sandbox import gitsafe
from perfagent.sandbox.workspace import Workspaces, head, open_repo
from perfagent.summary import Summary


def tests_record(plan: TestPlan) -> dict:
    return {"files": plan.files, "why": plan.why, "passing": len(plan.passing), "flaky": sorted(plan.flaky),
            "whole_suite": plan.whole_suite}


class Optimizer:
    def __init__(self, repo_path: Path, settings: Settings, out: Path | None = None, observer: Observer | None = None,
                 budget: Budget | None = None, reviewer=None):
        self.settings = settings
        self.reviewer = reviewer or AutoReviewer()  # see review.py; interactive.py for a person
        self.notify = Broadcast(observer, self.reviewer.observe)
        self.budget = budget or Budget(max_usd=settings.budget_usd, max_calls=settings.max_calls,
                                       max_tokens=settings.max_tokens)
        self.cache = BaselineCache(settings.cache_dir if settings.cache else None)
        self.repo = open_repo(repo_path)
        self.repo_path = Path(self.repo.working_tree_dir)
        self.workload = Workload.parse(settings.workload, self.repo_path)
        self.model = make_model(settings.model, api_base=settings.api_base, prices=settings.prices)
        if isinstance(self.model, LiteLLMModel):
            self.model.check_environment()
            if self.budget.max_usd or getattr(self.budget, "total_usd", None):
                self.model.require_price()
        self.run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        self.branch = f"perfagent/{self.run_id}"
        self.out = Path(out or Path.cwd() / "perfagent-runs" / self.run_id)
        if (self.out / "summary.json").exists():  # two runs' records in one folder would mix their counts
            raise ConfigError(f"{self.out} already holds a run's records: pass another --out, or remove the folder")
        self.limits = settings.limits()

    def run(self) -> Summary:
        s, base_commit = self.settings, self.repo.head.commit.hexsha
        if self.repo.is_dirty(untracked_files=True):
            self.notify.note(f"the repository has uncommitted changes: they are ignored; working from HEAD "
                             f"{base_commit[:10]} (settings in pyproject.toml are read as they are on disk)", True)
        self.record = RunRecord(self.out, run_id=self.run_id, repo=str(self.repo_path), branch=self.branch,
                                base_commit=base_commit, workload=self.workload.describe(),
                                workload_file=str(self.workload.path) if self.workload.kind == "python" else None,
                                model=s.model, settings=s.model_dump(), isolation=self.limits.isolation.describe())
        session = Session(self.model, self.budget, Trajectory(self.record.trajectory_path))
        ws = Workspaces(self.repo, self.run_id, self.record.dir / "summary.json")
        for summary in ws.stale_records:
            RunRecord.mark_killed(summary)
        env = Environment(s.python, self.limits, ws, s.rebuild_cmd)
        ctx = RunContext(self.run_id, s, self.workload, env, ReviewDesk(self.reviewer, session.trajectory),
                         self.notify, session)
        try:
            return self._run(ctx, base_commit)
        except BaseException as exc:
            status = (INTERRUPTED if isinstance(exc, KeyboardInterrupt) else MODEL_FAILED
                      if isinstance(exc, ModelError) and not isinstance(exc, ModelConfigError) else FAILED)
            self.record.update(status=status, error=f"{type(exc).__name__}: {exc}", llm=llm_record(session))
            raise
        finally:
            ws.close()
            self._drop_branch_if_empty(base_commit)

    def _run(self, ctx: RunContext, base_commit: str) -> Summary:
        self._check_model(ctx)
        branch = ctx.env.workspaces.branch(self.branch, base_commit)
        ctx.env.adopt(branch)
        ctx.notify.note(f"working on branch {self.branch} (run {self.run_id})")
        baseline = BaselinePhase(ctx.settings, ctx.env, self.cache, ctx.notify).run(
            branch, base_commit, self.workload, self.repo.git.ls_files().splitlines())
        self.record.update(baseline=baseline.record(self.cache.hits))
        iterations = Iterations(ctx, baseline, branch, self.record)
        stop = iterations.run()
        ctx.notify.note(f"stopping: {stop.reason}")
        final = None
        if iterations.kept:
            final, after = final_measurement(ctx, baseline, branch, base_commit, iterations.kept)
            self.record.save_profile("profile-after", after)
        self.record.update(status=stop.status, stop_reason=stop.reason, final=final, accepted=len(iterations.kept),
                           elapsed_s=ctx.elapsed(), final_commit=head(branch), llm=llm_record(ctx.session),
                           tests=tests_record(baseline.plan), tests_run=sorted(baseline.plan.passing))
        return self.record.summary

    def _check_model(self, ctx: RunContext) -> None:
        """One cheap request first: a dead server costs seconds, not a baseline."""
        if isinstance(self.model, LiteLLMModel):
            s = ctx.settings
            ctx.notify.note(f"checking the model {s.model}{' at ' + s.api_base if s.api_base else ''}")
            ctx.session.ask([{"role": "user", "content": "Reply with the word OK."}], purpose="check")

    def _drop_branch_if_empty(self, base_commit: str) -> None:
        """A branch without accepted commits is not left behind. Asked of a fresh git process: Ctrl-C in a terminal
        also kills GitPython's long-lived `git cat-file` (it is in the same process group)."""
        if self.branch in self.repo.heads and self.repo.git.rev_parse(self.branch) == base_commit:
            self.repo.delete_head(self.branch, force=True)
            self.record.update(branch=None)


def llm_record(session: Session) -> dict:
    b, records = session.budget, session.trajectory.records
    return {"calls": b.calls, "cost_usd": None if b.cost_unknown else round(b.spent_usd, 6),
            "prompt_tokens": sum(r.get("prompt_tokens") or 0 for r in records),
            "completion_tokens": sum(r.get("completion_tokens") or 0 for r in records)}


class _Meter(NamedTuple):
    """Counters read at a round's start, to tell what the round cost."""
    wall: float
    child: float  # child processes' seconds
    exchanges: int  # model exchanges in the trajectory
    reviewer: float  # seconds a person took
    usd: float


class Iterations:
    """The candidates of one run, one per iteration, until a Stop: the typed state the record is written from."""

    def __init__(self, ctx: RunContext, baseline: Baseline, branch: Path, record: RunRecord):
        self.ctx, self.baseline, self.branch, self.record = ctx, baseline, branch, record
        self.trial = Trial(ctx, baseline, baseline.judge(ctx.settings, ctx.env, ctx.workload), branch)
        self.candidates: list[CandidateRecord] = []
        self.kept: list[CandidateRecord] = []  # whose commits are on the branch, oldest first
        self.history: list[Attempt] = []  # what the model is told about earlier candidates
        self.focus: Focus | None = None
        self.rejected_in_row = 0
        self.rounds: list[dict] = []  # per round: its candidates, wall time split, model cost and calls

    def run(self) -> Stop:
        n = 1  # the next candidate's number
        try:
            while True:
                if n > self.ctx.settings.max_iterations:  # the reviewer may change the limit
                    raise IterationLimit()
                n += self._round(n)
                self._between(n - 1)
        except Quit as stop:
            self.ctx.desk.decided("quit")
            return stop
        except Stop as stop:
            return stop

    def _save(self) -> None:
        self.record.update(candidates=[c.as_dict() for c in self.candidates], rounds=self.rounds,
                           llm=llm_record(self.ctx.session))

    def _round(self, first: int) -> int:
        """One round of candidates (one, or candidates-per-round), numbered from `first`; how many there were."""
        start = self._meter()
        try:
            if self.focus is None or self.focus.commit != head(self.branch):
                self.ctx.notify.note(f"profiling ({f'after {len(self.kept)} accepted' if self.kept else 'baseline'})")
                self.focus = FocusPhase(self.ctx.settings, self.ctx.env, self.ctx.desk, self.ctx.notify).run(
                    self.branch, self.baseline.runner, self.baseline.plan)
                self.record.save_profile(f"profile-{len(self.kept)}" if self.kept else "profile-before",
                                         self.focus.measured)
                self.record.update(tests=tests_record(self.baseline.plan))
                if not self.kept and first == 1 and self.ctx.settings.generality_checks:
                    self._choose_inputs()
            decided = self.trial.run(first, self.focus, self.history, self.candidates)
        except (ScriptExhausted, BudgetExceeded, ModelError) as exc:
            raise stop_for(exc) from exc
        finally:
            self._save()
        cost = self._cost_since(start)
        for candidate in decided:
            candidate.seconds = {k: v / len(decided) for k, v in cost["seconds"].items()}  # the round's time, shared
        self.rounds.append({"candidates": [c.n for c in decided], **cost})
        self._save()
        self.kept += [c for c in decided if c.commit]
        self.rejected_in_row = 0 if any(c.commit for c in decided) else self.rejected_in_row + len(decided)
        if self.rejected_in_row >= self.ctx.settings.patience:
            raise OutOfPatience(self.ctx.settings.patience)
        return len(decided)

    def _choose_inputs(self) -> None:
        """Once, on the unmodified code after its first profile: the variants of setup() (loop/unseen.py) every
        candidate's results are held to, and an accepted candidate's speedup; and what checks the results where the
        workload's own result checks nothing."""
        judge, ref, notify = self.trial.judge, self.baseline.reference, self.ctx.notify
        hot = hot_functions(self.focus)
        judge.inputs = choose(judge.runner, ref.worktree, hot, self.ctx.env.tmpdir("variants"))
        if judge.inputs.note:
            notify.note(judge.inputs.note, warning=not judge.inputs.kept)
        if self.ctx.workload.kind == "python" and ref.results.get(OWN_INPUT) is None:
            notify.note(f"the workload returns None, which checks nothing: correctness rests on the tests and on the "
                        f"results of each candidate's calls to {', '.join(hot) or 'the hot functions'} and to the "
                        f"functions it edits, held to the unmodified code's" +
                        (" on the benchmark's input and on its variants" if judge.inputs.kept else ""), warning=True)
        self.record.update(inputs={"kept": [{"variant": u.variant.name, "changes": u.variant.describe()}
                                            for u in judge.inputs.kept], "note": judge.inputs.note})

    def _meter(self) -> _Meter:
        ctx = self.ctx
        return _Meter(time.perf_counter(), ctx.env.limits.usage.seconds, len(ctx.session.trajectory.records),
                      ctx.desk.seconds, ctx.session.budget.spent_usd)

    def _cost_since(self, start: _Meter) -> dict:
        """What a round cost: where its time went (child processes, the model, the reviewer (a person), perfagent
        itself: the rest), its model calls and spend."""
        now, exchanges = self._meter(), self.ctx.session.trajectory.records[start.exchanges:]
        wall, child, review = now.wall - start.wall, now.child - start.child, now.reviewer - start.reviewer
        model = sum(r.get("seconds") or 0 for r in exchanges)
        return {"seconds": {"wall": wall, "child_processes": child, "model": model, "reviewer": review,
                            "perfagent": max(0.0, wall - child - model - review)},
                "cost_usd": now.usd - start.usd, "calls": sum(1 for r in exchanges if "reply" in r)}

    def _between(self, n: int) -> None:
        """The reviewer's steps after candidate n (undo, new limits) until they continue."""
        desk, budget, settings = self.ctx.desk, self.ctx.session.budget, self.ctx.settings
        while True:
            step = desk.ask(desk.reviewer.next_step, RunState(n, settings.max_iterations,
                                                              [(c.n, c.commit) for c in self.kept],
                                                              budget.spent_usd, budget.max_usd))
            if step.action == CONTINUE:
                desk.decided(CONTINUE, candidate=n)
                return
            if step.action == UNDO:
                undone = self.kept.pop()
                self._undo(undone)
                desk.decided(UNDO, candidate=undone.n, commit=undone.commit)
            elif step.action == LIMITS:
                settings.max_iterations, budget.max_usd = step.max_iterations, step.budget_usd
                self.record.update(settings={**self.record.summary.settings, "max_iterations": step.max_iterations,
                                             "budget_usd": step.budget_usd})
                desk.decided(LIMITS, max_iterations=step.max_iterations, budget_usd=step.budget_usd)

    def _undo(self, candidate: CandidateRecord) -> None:
        """Take the candidate's commit, the branch's last, off the branch (never anything older than this run)."""
        if head(self.branch) != candidate.commit:
            raise RuntimeError(f"the branch head {head(self.branch)[:10]} is not candidate {candidate.n}'s commit "
                               f"{candidate.commit[:10]}")
        gitsafe.git(self.branch, "reset", "--hard", "--quiet", f"{candidate.commit}~1")
        self.ctx.env.rebuild(self.branch)
        candidate.undone = True
        self._save()
        self.history[candidate.n - 1] = replace(self.history[candidate.n - 1],
                                                reason=UNDONE)
        self.ctx.desk.reviewer.undone(candidate.n, candidate.commit)
