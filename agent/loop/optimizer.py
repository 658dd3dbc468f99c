"""The optimization loop: baseline -> (profile -> prompt -> candidate -> verdict -> commit) x N -> final measurement."""
from __future__ import annotations

import difflib
import re
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import git
from rich.markup import escape

from perfagent.config import ConfigError, Settings
from perfagent.edits.search_replace import EditFormatError, apply_edits, describe_failures, parse_edits
from perfagent.loop.guards import repository_changes
from perfagent.repos.cache import BaselineCache, interpreter
from perfagent.model.llm import Budget, BudgetExceeded, LiteLLMModel, ModelConfigError, ModelError, ScriptExhausted, Session, \
    Trajectory, make_model
from perfagent.localize.hotspots import Hotspot, Profile, profile_workload
from perfagent.model.prompting import Attempt, fix_edit_message, optimize_messages
from perfagent.record import RunRecord
from perfagent.loop.review import ACCEPT, CONTINUE, EDIT, LIMITS, REJECT, UNDO, AutoReviewer, Candidate, Decision, Quit, \
    RunState, unified_diff
from perfagent.localize.source import MODULE_LEVEL, FunctionSpan, SourceIndex
from perfagent.localize.testselect import PlanSettings, Selection, TestPlan
from perfagent.loop.verdict import ACCEPTED, Judge, Reference, Verdict, candidate_limits, compare_inputs
from perfagent.measure.workload import Workload, WorkloadFailed, WorkloadRunner
from perfagent.measure.stats import Sampling, compare_speed, measure_noise, samples_record, value_ladder, walls
from perfagent.sandbox import isolation
from perfagent.sandbox.behaviour import from_records
from perfagent.sandbox.run import USAGE, Limits, run_shell
from perfagent.sandbox.workspace import Workspaces, commit_files, head, open_repo

EDIT_FAILED = "edit did not apply"
NO_EDIT = "no edit"
BUILD_FAILED = "build failed"
REVIEWER_REJECTED = "rejected by the reviewer"
NOT_VALIDATED = "not validated (quit)"
QUIT = "quit by the reviewer"


NOISE_PAIRS = 10  # A/A pairs of the unmodified code at baseline, for the noise estimate
FINAL_PAIRS = 10  # at most, for the branch's final measurement: its interval, not a decision, is what it is for
MODEL_FAILURE_STATUS = "model failed"  # a run's status when it ended because the model could not answer


class BaselineError(RuntimeError):
    """The unmodified code does not pass its tests or run its workload: nothing can be judged against it."""


def explanation(reply: str) -> str:
    """The first sentence of prose in a model reply, as a one-line summary of the candidate."""
    for line in reply.splitlines():
        line = line.strip().strip("#*").strip()
        if line and not line.startswith(("```", "<<<<<<<")) and not line.endswith(".py"):
            sentence = re.split(r"(?<=[.!?:])\s", line, maxsplit=1)[0]
            return sentence if len(sentence) <= 90 else sentence[:89] + "…"
    return "(no explanation)"


def touched_functions(index: SourceIndex, before: dict[str, str], after: dict[str, str]) -> list[FunctionSpan]:
    """The functions (as they were before) whose lines an edit changes."""
    spans = {}
    for path, text in after.items():
        old = before.get(path, "").splitlines()
        matcher = difflib.SequenceMatcher(None, old, text.splitlines(), autojunk=False)
        for tag, i1, i2, _, _ in matcher.get_opcodes():
            if tag != "equal":
                for line in range(i1 + 1, max(i1, i2 - 1) + 2):
                    span = index.function_at(path, line)
                    spans.setdefault(span.key, span)
    return list(spans.values())


class Optimizer:
    def __init__(self, repo_path: Path, settings: Settings, out: Path | None = None,
                 say: Callable[[str], None] = print, budget: Budget | None = None, reviewer=None):
        self.settings, self.say = settings, say
        self.reviewer = reviewer or AutoReviewer()  # see review.py; interactive.py for a person
        self._review_seconds = 0.0
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
        self.isolation = isolation.configure(settings.isolation)
        self.limits = Limits(timeout_s=settings.timeout_s, memory_mb=settings.memory_mb,
                             processes=settings.max_processes)
        self.sampling = Sampling(test=settings.decision_rule, min_samples=settings.min_samples,
                                 max_samples=settings.max_samples, alpha=settings.alpha, min_effect=settings.min_effect,
                                 warmup=0 if settings.decision_rule == "sequential" else 1)

    # -- baseline ---------------------------------------------------------------------------------------------
    def _test_plan(self, worktree: Path, commit: str, tmp: Path) -> TestPlan:
        s = self.settings
        plan = TestPlan(PlanSettings(s.tests, s.whole_suite_files, s.files_per_function, s.test_file_timeout_s,
                                     s.allow_failing_tests),
                        python=s.python, tmp=tmp, limits=self.limits, cache=self.cache, say=self.say)
        self.say("baseline: " + ("running the named tests twice" if s.tests else
                                 "finding the tests that guard the code"))
        plan.start(worktree, commit, self.repo.git.ls_files().splitlines())
        if plan.flaky:
            self.say(f"[yellow]{len(plan.flaky)} flaky test(s) ignored for verdicts: "
                     f"{escape(', '.join(sorted(plan.flaky)[:5]))}[/]")
        return plan

    @staticmethod
    def _tests_record(plan: TestPlan) -> dict:
        return {"files": plan.files, "why": plan.why, "passing": len(plan.passing), "flaky": sorted(plan.flaky),
                "whole_suite": plan.whole_suite}

    def _guard(self, plan: TestPlan, worktree: Path, hotspots: list[Hotspot]) -> Selection:
        """The tests guarding the hotspots the prompts focus on; a loud warning (or a stop, with require-tests)
        when none reaches them."""
        spans = [FunctionSpan(h.file, h.qualname, h.start, h.end) for h in hotspots if h.qualname != MODULE_LEVEL]
        if plan.selecting:  # a large suite: the tests run when a candidate edits these functions
            guard = plan.preview(spans)
        else:
            guard = plan.guard(worktree, head(worktree), spans)
            self.say(escape(f"tests guarding them: {', '.join(guard.files) or 'none'}"))
        if spans and len(guard.unguarded) == len(spans):
            message = (f"no test reaches {', '.join(s.qualname for s in spans)}: correctness rests on the workload's "
                       f"result alone; name tests with --tests")
            if self.settings.require_tests:
                raise BaselineError(message + " (require-tests = true)")
            self.say(f"[bold yellow]warning: {escape(message)}[/]")
        return guard

    def _baseline_workload(self, runner: WorkloadRunner, worktree: Path, commit: str,
                           compare_output: bool) -> dict:
        """The workload's result, time, loop count and A/A noise on the unmodified code, from the cache when this
        commit, interpreter and workload were measured before."""
        s = self.settings
        key = ("workload", commit, interpreter(s.python).fingerprint, self.workload.digest(), s.sample_seconds,
               NOISE_PAIRS, s.max_samples, self.isolation.level)
        cached = self.cache.get(*key)
        if cached:
            self.say("baseline workload measurements: from the cache")
            runner.cold_start = tuple(cached["cold_start"]) if cached["cold_start"] else None
            return cached
        try:
            results, seconds = runner.results(worktree)
            again, _ = runner.results(worktree)
            same = compare_inputs(results, again)
            if compare_output and not same.equal:
                raise BaselineError("the workload's result differs between two runs of the unmodified code "
                                    f"({same.detail}); make it deterministic (seed random generators)")
            loops = runner.calibrate(worktree, s.sample_seconds)
            noise = self._noise(runner, worktree, loops)
        except WorkloadFailed as exc:
            raise BaselineError(f"the workload fails on the unmodified code: {exc}\nFix the workload, or raise "
                                f"timeout-s or memory-mb if it needs more time or memory") from None
        measured = {"results": results, "seconds": seconds, "loops": loops, "cold_start": runner.cold_start,
                    "noise": noise.as_dict(), "behaviour": [e.as_dict() for e in runner.behaviour(worktree)]}
        self.cache.put(measured, *key)
        return measured

    # -- one candidate ----------------------------------------------------------------------------------------
    def _ask_for_edits(self, session: Session, messages: list[dict], worktree: Path):
        """Ask, and send unusable edits back with the reason and the closest real lines.
        Returns (reply, apply result or None, problem, the files the last unusable edits named): no result and no
        problem means the reply had no edit."""
        reply = session.ask(messages, purpose="optimize")
        for attempt in range(self.settings.edit_retries + 1):
            named: list[str] = []
            try:
                edits = parse_edits(reply.text)
            except EditFormatError as exc:
                problem, details = "the edit blocks are malformed", str(exc)
            else:
                if not edits:
                    return reply, None, None, []
                applied = apply_edits(worktree, edits, write=False)
                if applied.ok:
                    return reply, applied, None, []
                problem, details = "some edits do not apply", describe_failures(applied)
                named = sorted({e.path for e in edits})
            if attempt == self.settings.edit_retries:
                return reply, None, f"{problem} (after {attempt} correction(s)): {details}", named
            self.say(escape(f"  edit not usable ({problem}); asking the model to correct it"))
            messages = messages + [{"role": "assistant", "content": reply.text}, fix_edit_message(problem, details)]
            reply = session.ask(messages, purpose="fix edit")
        raise AssertionError("unreachable")

    def _candidate(self, n: int, session, judge: Judge, ref: Reference, focus: tuple[Profile, int, Selection],
                   plan: TestPlan, attempts: list[Attempt], ws: Workspaces, branch_wt: Path) -> Verdict:
        index = SourceIndex(branch_wt)
        profile, top_k, guard = focus
        messages = optimize_messages(workload=self.workload, seconds=ref.seconds, profile=profile, index=index,
                                     attempts=attempts, top_k=top_k, prompt_tokens=self.settings.prompt_tokens,
                                     model=self.settings.model)
        reply, applied, problem, named = self._ask_for_edits(session, messages, branch_wt)
        summary = explanation(reply.text)
        entry = {"n": n, "summary": summary, "files": named, "functions": [], "diff": "", "commit": None}
        edited = False
        if applied is None:
            verdict = Verdict(EDIT_FAILED, problem) if problem else Verdict(NO_EDIT, "the reply contains no edit")
        else:
            before = {p: (branch_wt / p).read_text() if (branch_wt / p).exists() else "" for p in applied.changed}
            changed = applied.changed
            entry["files"], entry["diff"] = sorted(changed), unified_diff(before, changed)
            if not self.reviewer.human:  # a person is shown the whole candidate instead
                self.say(escape(f"  candidate {n}: {summary} [{', '.join(entry['files'])}]"))
            decision = self._review(session, Candidate(n, summary, reply.text, before, changed,
                                                       ws.tmpdir(f"edit-{n}")), entry)
            if decision.action == EDIT:
                edited, changed = True, decision.changed
                entry["model_diff"] = entry["diff"]
                entry["files"], entry["diff"] = sorted(changed), unified_diff(before, changed)
            touched = touched_functions(index, before, changed)
            entry["functions"] = [span.key for span in touched]
            verdict = Verdict(REVIEWER_REJECTED, decision.feedback) if decision.action == REJECT else \
                judge.static_checks(before, changed)
            if verdict is None:
                tests = plan.for_candidate(branch_wt, head(branch_wt), touched, guard)
                entry["tests"], entry["unguarded"] = tests.files, tests.unguarded
                if tests.unguarded:
                    self.say(escape(f"  unguarded: no selected test reaches {', '.join(tests.unguarded)}"))
                with self.reviewer.validating(n, tests.files) as progress:
                    verdict = self._validate(judge, ref, tests.files, changed, ws, progress)
                verdict.unguarded = tests.unguarded
            if verdict.accepted:
                for path, text in changed.items():
                    (branch_wt / path).parent.mkdir(parents=True, exist_ok=True)
                    (branch_wt / path).write_text(text)
                self._rebuild(branch_wt)  # it built in the scratch worktree
                note = "Edited by the reviewer before validation.\n\n" if edited else ""
                entry["commit"] = commit_files(branch_wt, sorted(changed), f"perfagent: {summary}\n\n{note}"
                                               f"{verdict.detail}\n\nFunctions: {', '.join(entry['functions'])}\n"
                                               f"Run {self.run_id}, candidate {n}.")
        entry["verdict"] = verdict.as_dict()
        entry["verdict_at_s"] = time.perf_counter() - self._started  # time to a verdict, from the run's start
        self.record.add_candidate(entry)
        self.reviewer.show_verdict(entry)
        detail = verdict.detail if verdict.reason == REVIEWER_REJECTED else \
            verdict.detail.splitlines()[0][:300] if verdict.detail else ""
        attempts.append(Attempt(f"{summary} (edited by the reviewer)" if edited else summary, entry["files"],
                                verdict.reason, detail))
        if not self.reviewer.human:  # the reviewer showed the verdict
            colour = "green" if verdict.accepted else "red"
            self.say(f"  [{colour}]{verdict.reason}[/]: "
                     f"{escape(verdict.detail.splitlines()[0] if verdict.detail else '')}")
        return verdict

    def _review(self, session: Session, candidate: Candidate, entry: dict) -> Decision:
        """The reviewer's decision on a candidate before validation, recorded; a quit keeps the candidate on record,
        unvalidated."""
        try:
            decision = self._timed(self.reviewer.review, candidate)
        except Quit:
            entry["review"] = "quit"
            entry["verdict"] = Verdict(NOT_VALIDATED, "the reviewer quit before validating it").as_dict()
            self.record.add_candidate(entry)
            raise
        if decision.action == EDIT:
            self._decided(session, EDIT, candidate=candidate.n, edited_diff=unified_diff(candidate.before,
                                                                                        decision.changed))
        elif decision.action == REJECT:
            self._decided(session, REJECT, candidate=candidate.n, feedback=decision.feedback)
        else:
            self._decided(session, ACCEPT, candidate=candidate.n)
        if self.reviewer.human:
            entry["review"] = {ACCEPT: "accepted", REJECT: "rejected", EDIT: "edited"}[decision.action]
        return decision

    def _timed(self, hook, *args):
        """Call a reviewer hook; the time a person takes is kept apart from perfagent's own."""
        start = time.perf_counter()
        try:
            return hook(*args)
        finally:
            self._review_seconds += time.perf_counter() - start

    def _decided(self, session: Session, action: str, **fields) -> None:
        """Record a person's decision in the trajectory (the automatic reviewer's are not decisions)."""
        if self.reviewer.human:
            session.trajectory.record(kind="human", action=action, **fields)

    def _rebuild(self, worktree: Path) -> str | None:
        """Run the rebuild command (compiled extensions) in `worktree`; None when it worked, else its output."""
        if not self.settings.rebuild_cmd:
            return None
        return run_shell(self.settings.rebuild_cmd, worktree, self.settings.python, self.limits)

    def _validate(self, judge: Judge, ref: Reference, tests: list[str], changed: dict[str, str],
                  ws: Workspaces, progress: Callable[[str], None]) -> Verdict:
        scratch = ws.scratch(head(ref.worktree))
        try:
            for path, text in changed.items():
                (scratch / path).parent.mkdir(parents=True, exist_ok=True)
                (scratch / path).write_text(text)
            failed = self._rebuild(scratch)
            if failed:
                return Verdict(BUILD_FAILED, failed)
            return judge.judge(scratch, ref, tests, progress)
        finally:
            ws.discard(scratch)

    # -- the run ----------------------------------------------------------------------------------------------
    def run(self) -> dict:
        s = self.settings
        base_commit = self.repo.head.commit.hexsha
        if self.repo.is_dirty(untracked_files=True):
            self.say(f"[yellow]the repository has uncommitted changes: they are ignored; working from HEAD "
                     f"{base_commit[:10]} (settings in pyproject.toml are read as they are on disk)[/]")
        self._started = time.perf_counter()
        self.record = RunRecord(self.out, run_id=self.run_id, repo=str(self.repo_path), branch=self.branch,
                                base_commit=base_commit, workload=self.workload.describe(),
                                workload_file=str(self.workload.path) if self.workload.kind == "python" else None,
                                model=s.model, settings=s.model_dump(), isolation=self.isolation.describe())
        session = Session(self.model, self.budget, Trajectory(self.record.trajectory_path))
        ws = Workspaces(self.repo, self.run_id, self.record.dir / "summary.json")
        for summary in ws.stale_records:
            RunRecord.mark_killed(summary)
        try:
            return self._run(session, ws, base_commit)
        except BaseException as exc:
            status = ("interrupted" if isinstance(exc, KeyboardInterrupt) else MODEL_FAILURE_STATUS
                      if isinstance(exc, ModelError) and not isinstance(exc, ModelConfigError) else "failed")
            self.record.update(status=status, error=f"{type(exc).__name__}: {exc}", llm=self._llm(session))
            raise
        finally:
            ws.close()
            self._drop_branch_if_empty(base_commit)

    def _drop_branch_if_empty(self, base_commit: str) -> None:
        """A branch without accepted commits is not left behind. Asked of a fresh git process: Ctrl-C in a terminal
        also kills GitPython's long-lived `git cat-file` (it is in the same process group)."""
        if self.branch in self.repo.heads and self.repo.git.rev_parse(self.branch) == base_commit:
            self.repo.delete_head(self.branch, force=True)
            self.record.update(branch=None)

    def _record_iteration_time(self, start: float, child_start: float, exchanges: list[dict],
                               review_start: float) -> None:
        """Where an iteration's time went: child processes, the model, the reviewer (a person), and perfagent itself
        (the rest)."""
        wall, child = time.perf_counter() - start, USAGE.seconds - child_start
        model = sum(r.get("seconds") or 0 for r in exchanges)
        review = self._review_seconds - review_start
        self.record.summary["candidates"][-1]["seconds"] = {
            "wall": wall, "child_processes": child, "model": model, "reviewer": review,
            "perfagent": max(0.0, wall - child - model - review)}
        self.record.save()

    def _llm(self, session: Session) -> dict:
        b = session.budget
        records = session.trajectory.records
        return {"calls": b.calls, "cost_usd": None if b.cost_unknown else round(b.spent_usd, 6),
                "prompt_tokens": sum(r.get("prompt_tokens") or 0 for r in records),
                "completion_tokens": sum(r.get("completion_tokens") or 0 for r in records)}

    def _run(self, session: Session, ws: Workspaces, base_commit: str) -> dict:
        s = self.settings
        if isinstance(self.model, LiteLLMModel):  # one cheap request first: a dead server costs seconds, not a baseline
            self.say(f"checking the model {s.model}{' at ' + s.api_base if s.api_base else ''}")
            session.ask([{"role": "user", "content": "Reply with the word OK."}], purpose="check")
        branch_wt = ws.branch(self.branch, base_commit)
        tmp = ws.tmpdir("baseline")
        self.say(f"working on branch [bold]{self.branch}[/] (run {self.run_id})")
        failed = self._rebuild(branch_wt)
        if failed:
            raise BaselineError(f"the rebuild command fails on the unmodified code: {failed}")
        self.say(f"sandbox: {self.isolation.describe()}")
        plan = self._test_plan(branch_wt, base_commit, tmp)
        runner = WorkloadRunner(self.workload, s.python, tmp, self.limits)
        compare_output = s.compare_output or self.workload.kind != "command"
        baseline = self._baseline_workload(runner, branch_wt, base_commit, compare_output)
        loops, seconds = baseline["loops"], baseline["seconds"]
        if runner.cold_start:
            first, later = runner.cold_start
            self.say(f"[yellow]workload() takes {first * 1000:.1f} ms on its first call in a process and "
                     f"{later * 1000:.1f} ms on later ones (a cache setup() does not reset?): timing only the first "
                     f"call of each process[/]")
        ladder = value_ladder(loops, s.sample_seconds, s.short_sample_seconds)
        self.sampling = replace(self.sampling, noise_floor=baseline["noise"]["pair_spread"])
        self.say(f"baseline: workload {seconds * 1000:.1f} ms, {' or '.join(map(str, ladder))} call(s) per timing "
                 f"value")
        plan.behaviour |= from_records(baseline["behaviour"])  # one set, growing with the tests the run selects
        ref = Reference(branch_wt, plan.passing, baseline["results"], seconds, plan.files,
                        set(repository_changes(branch_wt)), plan.excluded, plan.behaviour)
        self.record.update(baseline={"workload_seconds": seconds, "loops": loops, "noise": baseline["noise"],
                                     "cold_start": runner.cold_start, "cache_hits": self.cache.hits})
        judge = Judge(WorkloadRunner(self.workload, s.python, ws.tmpdir("candidates"),
                                     candidate_limits(self.limits, seconds * loops, s.candidate_timeout_s)),
                      s.python, ws.tmpdir("tests"), self.sampling, ladder, self.workload.repo_relative,
                      s.candidate_timeout_s, s.allow_edits, compare_output, s.allow_behaviour)
        attempts: list[Attempt] = []
        commits: list[tuple[int, str]] = []  # (candidate, commit) on the branch, oldest first
        rejected_in_row, stop, status = 0, "iteration limit reached", "finished"
        focus = profiled = None  # the profile as the prompts present it; the commit it was taken at
        n = 0
        while n < s.max_iterations:  # the reviewer may change the limit
            n += 1
            start, child_start, exchanges, review_start = (time.perf_counter(), USAGE.seconds,
                                                           len(session.trajectory.records), self._review_seconds)
            try:
                if profiled != head(branch_wt):
                    self.say(f"profiling ({'after ' + str(len(commits)) + ' accepted' if commits else 'baseline'})")
                    profile = profile_workload(branch_wt, self.workload, python=s.python, tmp=ws.tmpdir("profile"),
                                               seconds=s.profile_seconds, limits=runner.limits)
                    profiled = head(branch_wt)
                    self.record.save_profile(f"profile-{len(commits)}" if commits else "profile-before", profile)
                    top = profile.top(s.top_k)
                    self.say(escape("hotspots: " + ", ".join(f"{h.qualname} {h.self_share:.0%}" for h in top)))
                    focus = self._targets(session, profile)
                    focus += (self._guard(plan, branch_wt, focus[0].top(focus[1])),)
                    self.record.update(tests=self._tests_record(plan))
                verdict = self._candidate(n, session, judge, ref, focus, plan, attempts, ws, branch_wt)
            except Quit:
                self._decided(session, "quit")
                stop = QUIT
                break
            except ScriptExhausted as exc:
                stop = f"the model has no more replies ({exc})"
                break
            except BudgetExceeded as exc:
                stop = f"budget spent ({exc})"
                break
            except ModelError as exc:
                stop, status = f"model error: {exc}", MODEL_FAILURE_STATUS
                break
            finally:
                self.record.update(llm=self._llm(session))
            self._record_iteration_time(start, child_start, session.trajectory.records[exchanges:], review_start)
            if verdict.accepted:
                commits.append((n, self.record.summary["candidates"][-1]["commit"]))
                rejected_in_row = 0
            else:
                rejected_in_row += 1
                if rejected_in_row >= s.patience:
                    stop = f"{s.patience} candidates in a row were rejected"
                    break
            try:
                self._between(session, n, commits, attempts, branch_wt)
            except Quit:
                self._decided(session, "quit")
                stop = QUIT
                break
        self.say(escape(f"stopping: {stop}"))
        final = self._final(ws, branch_wt, base_commit, runner, ladder, commits) if commits else None
        self.record.update(status=status, stop_reason=stop, final=final, accepted=len(commits),
                           elapsed_s=time.perf_counter() - self._started,
                           final_commit=head(branch_wt), llm=self._llm(session), tests=self._tests_record(plan),
                           tests_run=sorted(plan.passing))
        return self.record.summary

    # -- the reviewer's choices -------------------------------------------------------------------------------
    def _targets(self, session: Session, profile: Profile) -> tuple[Profile, int]:
        """The profile as the prompts present it and how many of its hotspots they focus on: the reviewer's pick
        first, else the agent's top ones."""
        functions = [h for h in profile.hotspots if h.qualname != MODULE_LEVEL]
        chosen = self._timed(self.reviewer.choose_targets, functions) if functions else None
        if not chosen:
            self._decided(session, "targets", chosen_by="agent",
                          targets=[h.key for h in functions[:self.settings.top_k]])
            return profile, self.settings.top_k
        self._decided(session, "targets", chosen_by="reviewer", targets=[h.key for h in chosen])
        return replace(profile, hotspots=chosen + [h for h in profile.hotspots if h not in chosen]), len(chosen)

    def _between(self, session: Session, n: int, commits: list[tuple[int, str]], attempts: list[Attempt],
                 branch_wt: Path) -> None:
        """The reviewer's steps after candidate n (undo, new limits) until they continue."""
        while True:
            step = self._timed(self.reviewer.next_step, RunState(n, self.settings.max_iterations, list(commits),
                                                                 self.budget.spent_usd, self.budget.max_usd))
            if step.action == CONTINUE:
                self._decided(session, CONTINUE, candidate=n)
                return
            if step.action == UNDO:
                undone, commit = commits.pop()
                self._undo(branch_wt, undone, commit, attempts)
                self._decided(session, UNDO, candidate=undone, commit=commit)
            elif step.action == LIMITS:
                self.settings.max_iterations, self.budget.max_usd = step.max_iterations, step.budget_usd
                self.record.summary["settings"].update(max_iterations=step.max_iterations,
                                                       budget_usd=step.budget_usd)
                self.record.save()
                self._decided(session, LIMITS, max_iterations=step.max_iterations, budget_usd=step.budget_usd)

    def _undo(self, branch_wt: Path, n: int, commit: str, attempts: list[Attempt]) -> None:
        """Take candidate n's commit, the branch's last, off the branch (never anything older than this run)."""
        if head(branch_wt) != commit:
            raise RuntimeError(f"the branch head {head(branch_wt)[:10]} is not candidate {n}'s commit {commit[:10]}")
        git.Repo(branch_wt).git.reset("--hard", "--quiet", f"{commit}~1")
        self._rebuild(branch_wt)
        entry = next(c for c in self.record.summary["candidates"] if c["n"] == n)
        entry["undone"] = True
        self.record.save()
        attempts[n - 1] = replace(attempts[n - 1], reason="accepted, then undone by the reviewer")
        self.reviewer.undone(n, commit)

    def _noise(self, runner: WorkloadRunner, worktree: Path, loops: int):
        """Time the unmodified code against itself in back-to-back pairs: how small a gain can be resolved here."""
        pairs = [(runner.sample(worktree, loops), runner.sample(worktree, loops)) for _ in range(NOISE_PAIRS)]
        noise = measure_noise(walls(p[0] for p in pairs), walls(p[1] for p in pairs), self.settings.max_samples)
        self.say(f"timing noise: {noise.describe()}")
        if noise.resolvable > 1 + self.settings.min_effect:
            self.say(f"[yellow]this machine is too noisy to resolve the minimum effect of "
                     f"{self.settings.min_effect:.0%} reliably: expect 'too noisy' verdicts for small gains[/]")
        return noise

    def _final(self, ws: Workspaces, branch_wt: Path, base_commit: str, runner: WorkloadRunner, ladder: tuple[int, ...],
               commits: list[tuple[int, str]]) -> dict:
        """The branch against the original: profiled, and timed unless one commit on the original is the whole
        branch, whose own comparison already timed exactly that (same code on both sides)."""
        profile = profile_workload(branch_wt, self.workload, python=self.settings.python, tmp=ws.tmpdir("profile"),
                                   seconds=self.settings.profile_seconds, limits=runner.limits)
        self.record.save_profile("profile-after", profile)
        [(n, commit)] = commits if len(commits) == 1 else [(None, None)]
        if commit == head(branch_wt) and self.repo.commit(commit).parents[0].hexsha == base_commit:
            verdict = next(c["verdict"] for c in self.record.summary["candidates"] if c["n"] == n)
            self.say(f"the final code is candidate {n} on the original: its comparison is the final measurement")
            return {"speed": verdict["speed"], "samples": verdict["samples"], "accepted": 1, "from_candidate": n}
        self.say("measuring the final code against the original")
        original = ws.scratch(base_commit)
        try:
            self._rebuild(original)
            speed, base, final = compare_speed(lambda loops: runner.sample(original, loops),
                                               lambda loops: runner.sample(branch_wt, loops),
                                               replace(self.sampling, min_effect=0.0, max_samples=FINAL_PAIRS),
                                               ladder=ladder)
        finally:
            ws.discard(original)
        return {"speed": speed.as_dict(), "samples": samples_record(base, final), "accepted": len(commits)}
