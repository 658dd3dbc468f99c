"""Where the next candidates should work: the workload profiled on the branch's code, the hotspots the prompts focus
on (the reviewer's pick, else the top ones), and the tests that guard them."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from perfagent.config import Settings
from perfagent.events import Broadcast
from perfagent.localize.hotspots import Hotspot, Profile, ProfileOptions, profile_workload
from perfagent.localize.source import MODULE_LEVEL, FunctionSpan
from perfagent.localize.testselect import Selection, TestPlan
from perfagent.loop.baseline import BaselineError
from perfagent.loop.environment import Environment
from perfagent.loop.review import ReviewDesk
from perfagent.measure.workload import WorkloadRunner
from perfagent import formats
from perfagent.sandbox.workspace import head


@dataclass
class Focus:
    measured: Profile  # as profiled
    profile: Profile  # as the prompts present it: the chosen hotspots first
    top_k: int  # how many of its hotspots the prompts focus on
    guard: Selection  # the tests guarding those hotspots
    commit: str  # the code it was taken on


def profile(env: Environment, worktree: Path, runner: WorkloadRunner, settings: Settings) -> Profile:
    return profile_workload(worktree, runner.workload, python=env.python, tmp=env.tmpdir("profile"),
                            limits=runner.limits,  # every function sampled: which code the workload never runs
                            options=ProfileOptions(seconds=settings.profile_seconds, limit=None))


class FocusPhase:
    def __init__(self, settings: Settings, env: Environment, desk: ReviewDesk, notify: Broadcast):
        self.settings, self.env, self.desk, self.notify = settings, env, desk, notify

    def run(self, worktree: Path, runner: WorkloadRunner, plan: TestPlan) -> Focus:
        found = profile(self.env, worktree, runner, self.settings)
        top = found.top(self.settings.top_k)
        self.notify.note(f"hotspots, best first: {formats.hotspots(top)}")
        shown, top_k = self._targets(found)
        guard = self._guard(plan, worktree, shown.top(top_k))
        return Focus(found, shown, top_k, guard, head(worktree))

    def _targets(self, found: Profile) -> tuple[Profile, int]:
        """The reviewer's pick of hotspots first, else the agent's top ones."""
        functions = [h for h in found.hotspots if h.qualname != MODULE_LEVEL]
        chosen = self.desk.ask(self.desk.reviewer.choose_targets, functions) if functions else None
        if not chosen:
            self.desk.decided("targets", chosen_by="agent",
                              targets=[h.key for h in functions[:self.settings.top_k]])
            return found, self.settings.top_k
        self.desk.decided("targets", chosen_by="reviewer", targets=[h.key for h in chosen])
        return replace(found, hotspots=chosen + [h for h in found.hotspots if h not in chosen]), len(chosen)

    def _guard(self, plan: TestPlan, worktree: Path, hotspots: list[Hotspot]) -> Selection:
        """The tests guarding the hotspots; a loud warning (or a stop, with require-tests) when none reaches them."""
        spans = [FunctionSpan(h.file, h.qualname, h.start, h.end) for h in hotspots if h.qualname != MODULE_LEVEL]
        if plan.selecting:  # a large suite: the tests run when a candidate edits these functions
            guard = plan.preview(spans)
        else:
            guard = plan.guard(worktree, head(worktree), spans)
            self.notify.note(f"tests guarding them: {', '.join(guard.files) or 'none'}")
        if spans and len(guard.unguarded) == len(spans):
            message = (f"no test reaches {', '.join(s.qualname for s in spans)}: correctness rests on the workload's "
                       f"result alone; name tests with --tests")
            if self.settings.require_tests:
                raise BaselineError(message + " (require-tests = true)")
            self.notify.note(message, warning=True)
        return guard
