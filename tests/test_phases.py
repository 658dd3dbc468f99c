"""Each phase of perfagent optimize on its own, with small inputs: the baseline, the focus, the proposer, one round of
candidates (Trial), minimal patches and the final measurement, on a real repository, git worktrees, pytest and
sandboxed processes; only the model is scripted. The whole runs of tests/test_optimize.py show them sequenced.

The phases share one repository and one baseline cache per module: the first baseline measures the unmodified code
(about 15 s on a loaded machine), every later one takes it from the cache, as a second run on the same commit does."""
import secrets
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from perfagent.config import load_settings
from perfagent.events import Broadcast, Note, Progress
from perfagent.localize.hotspots import Profile
from perfagent.loop.baseline import Baseline, BaselinePhase
from perfagent.loop.candidate import CandidateRecord, Change
from perfagent.loop.context import RunContext
from perfagent.loop.environment import Environment
from perfagent.loop.final import final_measurement
from perfagent.loop.focus import Focus, FocusPhase
from perfagent.loop.minimal import Minimiser
from perfagent.loop.propose import Proposer
from perfagent.loop.review import AutoReviewer, ReviewDesk
from perfagent.loop.trial import Trial, hot_functions
from perfagent.measure.workload import OWN_INPUT, Workload
from perfagent.model.llm import Budget, Session, Trajectory, make_model
from perfagent.model.prompting import Target
from perfagent.repos.cache import BaselineCache
from perfagent.sandbox.workspace import Workspaces, commit_files, head, open_repo
from tests.conftest import SMALL_LIB, git, make_repo, scripted_session, search_replace
from tests.test_optimize import CORE, GOOD, RENAMED, TOKENS, UNIQUE_BODY, UNIQUE_ONLY, _body

pytestmark = pytest.mark.xdist_group("phases")  # one worker measures the shared baseline once

TESTS = ["tests/test_core.py"]
ALL_TESTS = {f"{TESTS[0]}::test_tokens", f"{TESTS[0]}::test_unique", f"{TESTS[0]}::test_count"}
HALF_FIX = _body("    half = len(items) // 2\n    seen = list(dict.fromkeys(items[:half]))\n    for x in items[half:]:\n"
                 "        if x not in seen:\n            seen.append(x)\n    return sorted(seen)",
                 "Deduplicate the first half with a dict.")
BROKEN = search_replace(CORE, TOKENS, "    return text.lower().split()", "Split on whitespace.")
NEVER_RUN = search_replace(CORE, TOKENS, RENAMED, "Clearer names.")  # bench.py never calls tokens()


@dataclass
class Stage:
    """What Optimizer.run sets up before its phases, on a branch of its own: the run's context, the events its
    observers got, the commit the branch starts at and the baseline cache."""
    ctx: RunContext
    branch: Path
    base: str
    cache: BaselineCache
    events: list

    def notes(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, Note)]

    def progress(self, key: str) -> list[int]:
        return [e.done for e in self.events if isinstance(e, Progress) and e.key == key]

    def baseline(self) -> Baseline:
        return BaselinePhase(self.ctx.settings, self.ctx.env, self.cache, self.ctx.notify).run(
            self.branch, self.base, self.ctx.workload, git(self.branch, "ls-files").splitlines())

    def focus(self, baseline: Baseline) -> Focus:
        return FocusPhase(self.ctx.settings, self.ctx.env, self.ctx.desk, self.ctx.notify).run(
            self.branch, baseline.runner, baseline.plan)


@contextmanager
def stage(repo: Path, tmp: Path, cache: Path, responses: list[str] = (), **given):
    """A run's context on a new branch of `repo`, as Optimizer.run builds it (its worktrees removed afterwards): the
    model replays `responses`, the settings are the repository's with `given` over them."""
    settings = load_settings(repo, {"workload": "bench.py", "model": scripted_session(tmp / "script.json",
                                                                                      list(responses)),
                                    "isolation": "rlimits", **given})
    session = Session(make_model(settings.model), Budget(), Trajectory(tmp / "trajectory.json"))
    run_id, events = secrets.token_hex(4), []
    workspaces = Workspaces(open_repo(repo), run_id)
    try:
        env = Environment(settings.python, settings.limits(), workspaces, settings.rebuild_cmd)
        ctx = RunContext(run_id, settings, Workload.parse(settings.workload, repo), env,
                         ReviewDesk(AutoReviewer(), session.trajectory), Broadcast(events.append), session)
        base = git(repo, "rev-parse", "HEAD").strip()
        yield Stage(ctx, workspaces.branch(f"perfagent/{run_id}", base), base, BaselineCache(cache), events)
    finally:
        workspaces.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> tuple[Path, Path]:
    """(a repository whose workload is unique_sorted() alone, the module's baseline cache)."""
    root = tmp_path_factory.mktemp("phases")
    return make_repo(root / "repo", UNIQUE_ONLY), root / "cache"


@pytest.fixture(scope="module")
def first(shared, tmp_path_factory) -> tuple[Baseline, Stage]:
    """The first baseline of the shared repository, measured on an empty cache, and the stage it was measured in
    (closed: its events and cache remain)."""
    repo, cache = shared
    with stage(repo, tmp_path_factory.mktemp("first"), cache) as measured:
        return measured.baseline(), measured


@pytest.fixture
def run(shared, first, tmp_path):
    """A new stage on the shared repository, whose baseline comes from the cache; `responses` as stage's."""
    @contextmanager
    def make(responses: list[str] = (), **given):
        with stage(shared[0], tmp_path, shared[1], responses, **given) as made:
            yield made
    return make


def _change(text: str, *replacements: tuple[str, str]) -> str:
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    return text


def test_this_module_runs_on_one_worker(request):
    """The module's baseline is measured once only when --dist loadgroup keeps its tests together (pytest 9.2 with
    pytest-xdist 3.8 silently did not: every grouped module's whole run ran on both workers)."""
    if request.config.getoption("loadgroup", False):  # set on xdist workers under --dist loadgroup only
        assert request.node.nodeid.endswith("@phases"), request.node.nodeid


# -- the baseline ------------------------------------------------------------------------------------------------------
def test_the_baseline_measures_the_unmodified_code_and_a_second_run_takes_it_from_the_cache(first, run):
    baseline, measured = first
    plan, ref = baseline.plan, baseline.reference
    assert list(plan.files) == TESTS and plan.passing == ALL_TESTS and not plan.flaky
    assert ref.passing_tests == ALL_TESTS and set(ref.test_seconds) == set(TESTS) and ref.worktree == measured.branch
    assert ref.results[OWN_INPUT]["items"][:2] == ["item0", "item1"] and len(ref.results[OWN_INPUT]["items"]) == 1500
    assert ref.seconds == baseline.measured["seconds"] > 0 and ref.memory == baseline.measured["memory"]
    # the A/A noise floor: ten pairs of the unmodified code against itself, the floor of every later decision
    noise = baseline.measured["noise"]
    assert measured.progress("noise") == list(range(1, 11)) and noise["pairs"] == 10
    assert baseline.sampling.noise_floor == noise["pair_spread"]
    assert baseline.sampling.max_samples == measured.ctx.settings.max_samples == 20  # the repository's settings
    assert baseline.ladder[-1] == baseline.measured["loops"]
    assert any(n.startswith("baseline: timing noise ") for n in measured.notes())
    # the candidates' judge: the baseline's protocol, its limit scaled to the baseline's time, never under the floor
    judge = baseline.judge(measured.ctx.settings, measured.ctx.env, measured.ctx.workload)
    assert judge.sampling == baseline.sampling and judge.ladder == baseline.ladder
    assert judge.runner.limits.timeout_s == max(8, 10 * ref.seconds * baseline.measured["loops"])
    with run() as again:
        cached = again.baseline()
        assert again.cache.hits == 2  # the test plan and the workload's measurements
        assert again.progress("noise") == [] and not any(n.startswith("baseline: timing noise ")
                                                          for n in again.notes())
    assert cached.measured["noise"] == noise and cached.sampling == baseline.sampling
    assert cached.reference.results == ref.results and cached.reference.digests == ref.digests
    assert cached.reference.worktree == again.branch  # the new run's own worktree


# -- the focus ---------------------------------------------------------------------------------------------------------
def test_the_focus_is_the_profiles_hot_functions_and_the_tests_that_reach_them(run):
    with run(profile_seconds=0.5) as s:
        focus = s.focus(s.baseline())
        assert focus.commit == head(s.branch) == s.base
    assert focus.measured.hotspots[0].key == "mylib.core:unique_sorted" and focus.profile == focus.measured
    assert focus.top_k == 3 and hot_functions(focus) == ("mylib.core:unique_sorted",)
    assert (focus.guard.files, focus.guard.unguarded) == (TESTS, [])
    assert "tests guarding them: tests/test_core.py" in s.notes()
    assert any(n.startswith("hotspots, best first: ") and "unique_sorted" in n for n in s.notes())


# -- the proposer ------------------------------------------------------------------------------------------------------
def test_the_proposer_sends_unusable_edits_back_and_asks_for_several_candidates_at_once(shared, tmp_path):
    missing = search_replace("mylib/nope.py", "x = 1", "x = 2", "Edit a file that does not exist.")
    malformed = "Broken block.\n\nmylib/core.py\n<<<<<<< SEARCH\nimport re\n"
    responses = [missing, missing, missing, malformed, malformed, GOOD, "I think the code is already optimal.",
                 GOOD, HALF_FIX]
    with stage(*shared[:1], tmp_path, shared[1], responses) as s:  # no baseline: the proposer needs none
        proposer = Proposer(s.ctx.session, s.ctx.settings, s.ctx.notify)
        target = Target(s.ctx.workload, 0.1, Profile("cProfile", 0, 0.0, []), 3)
        [unapplied] = proposer.propose(target, s.branch, [])
        [corrected] = proposer.propose(target, s.branch, [])
        [no_edit] = proposer.propose(target, s.branch, [])
        two = proposer.propose(target, s.branch, [], 2)
        trajectory = s.ctx.session.trajectory.records
        original = (s.branch / CORE).read_text()
    assert unapplied.applied is None and unapplied.named == ["mylib/nope.py"]
    assert unapplied.problem.startswith("some edits do not apply (after 2 corrections): ") and \
        "mylib/nope.py" in unapplied.problem
    assert [r["purpose"] for r in trajectory[:6]] == ["optimize", "fix edit", "fix edit", "optimize", "fix edit",
                                                      "fix edit"]
    assert "does not exist" in trajectory[1]["messages"][-1]["content"]
    assert "malformed" in trajectory[4]["messages"][-1]["content"]
    # a correction that applies is the proposal; the branch is not touched (edits are applied in memory)
    assert corrected.problem is None and corrected.summary == "Use a set to deduplicate."
    assert "return sorted(set(items))" in corrected.applied.changed[CORE] and "sorted(set(" not in original
    assert (no_edit.applied, no_edit.problem) == (None, None)
    assert len(trajectory) == 9 and [r["purpose"] for r in trajectory[-2:]] == ["optimize", "optimize"]
    assert [p.summary for p in two] == ["Use a set to deduplicate.", "Deduplicate the first half with a dict."]
    assert "dict.fromkeys" in two[1].applied.changed[CORE]


# -- one round of candidates -------------------------------------------------------------------------------------------
def test_a_round_times_only_its_survivors_and_commits_the_fastest(run):
    """Five candidates at once: a half fix (about 2x), the set (50x and more), one that breaks the tests, one that
    edits a function the workload never runs and one that edits a test. Only the first two are timed; the set is
    committed and the half fix's record says it was outrun, its verdict as the judge made it."""
    protected = search_replace(TESTS[0], "def test_unique():", "def test_unique_disabled():", "Skip a test.")
    responses = [HALF_FIX, GOOD, BROKEN, NEVER_RUN, protected]
    with run(responses, candidates_per_round=5, profile_seconds=0.5) as s:
        baseline = s.baseline()
        focus = s.focus(baseline)
        judge = baseline.judge(s.ctx.settings, s.ctx.env, s.ctx.workload)
        history, candidates = [], []
        decided = Trial(s.ctx, baseline, judge, s.branch).run(1, focus, history, candidates)
        log = git(s.branch, "log", "--format=%H %s", f"{s.base}..HEAD").splitlines()
        committed = git(s.branch, "show", "HEAD")
        final, _ = final_measurement(s.ctx, baseline, s.branch, s.base, [decided[1]])
        timed = {key for key in ("timing-1", "timing-2", "timing-3", "timing-4", "timing-5") if s.progress(key)}
    assert decided == candidates and [c.n for c in decided] == [1, 2, 3, 4, 5]
    verdicts = [c.verdict for c in decided]
    assert [v.reason for v in verdicts] == ["accepted", "accepted", "tests failed", "not run by the workload",
                                            "edits a protected file"]
    assert [c.outrun_by for c in decided] == [2, None, None, None, None]
    assert [c.outcome for c in decided][:2] == ["outrun in its round", "accepted"]
    assert verdicts[1].speed.speedup > verdicts[0].speed.speedup > 1
    assert timed == {"timing-1", "timing-2"} and [v.speed for v in verdicts[2:]] == [None] * 3
    assert "test_tokens" in verdicts[2].detail and verdicts[2].tests_failed
    assert verdicts[3].detail.startswith("the workload never runs tokens (no sample in ")
    assert verdicts[3].result_check == "identical"
    # the set alone is on the branch, committed with the verdict's figures
    assert [line.split(" ", 1)[1] for line in log] == ["perfagent: Use a set to deduplicate."]
    assert decided[1].commit == log[0].split()[0] and [c.commit for c in decided if c.commit] == [decided[1].commit]
    assert "+    return sorted(set(items))" in committed and "Functions: mylib.core:unique_sorted" in committed
    # what the model is told of each: its outcome, and who outran it
    assert [a.reason for a in history] == [c.outcome for c in decided]
    assert history[0].detail.endswith("; candidate 2 gained more")
    # one candidate on the original is the whole branch: its comparison is the final measurement, not timed again
    assert final["from_candidate"] == 2 and final["speed"] == verdicts[1].speed.as_dict()


# -- minimal patches ---------------------------------------------------------------------------------------------------
def test_minimal_patches_take_back_a_hunk_that_is_not_needed_and_keep_one_that_is(run):
    """The set, and a helper nobody calls added after it (hunks apart: the function's last line is left as it was):
    without the set the candidate is not faster (needed); without the helper every check passes as fast (taken
    back). The candidate's record keeps both diffs."""
    loop, helper = (UNIQUE_BODY.rsplit("\n", 1)[0], "    seen = set(items)"), "\n\ndef _unused(items):\n    return list(items)\n"
    with run() as s:
        baseline = s.baseline()
        judge = baseline.judge(s.ctx.settings, s.ctx.env, s.ctx.workload)
        judge.sampling = replace(judge.sampling, max_samples=5)  # "needed" when five pairs do not show the gain
        before = {CORE: (s.branch / CORE).read_text()}
        change = Change(before, {CORE: _change(before[CORE], loop) + helper})
        with s.ctx.env.scratch(s.base, change.after) as tree:
            s.ctx.env.rebuild(tree)
            full = judge.judge(tree, baseline.reference, TESTS)
        assert full.accepted, full
        record = CandidateRecord(1, "Use a set.", diff="the full diff")
        smaller, verdict = Minimiser(s.ctx, judge, baseline.reference).minimise(record, change, full, TESTS)
    assert verdict.accepted and smaller.after[CORE] == _change(before[CORE], loop)
    assert [d["group"] for d in record.dropped] == ["mylib/core.py:23"]  # the helper's first line
    assert record.dropped[0]["why"].startswith("not needed: every check passes without it, ")
    assert record.full_diff == "the full diff" and "_unused" not in record.diff and "seen = set(items)" in record.diff
    assert any(n.startswith("  minimal patch: mylib.core:unique_sorted is needed (") for n in s.notes())


# -- the final measurement ---------------------------------------------------------------------------------------------
def test_the_final_measurement_times_the_branch_against_the_original(run):
    """Two commits on the branch: the final code is timed against the original in pairs, at most ten."""
    with run(profile_seconds=0.5) as s:
        baseline = s.baseline()
        core = s.branch / CORE
        core.write_text(_change(core.read_text(), (UNIQUE_BODY, "    return sorted(set(items))")))
        first_commit = commit_files(s.branch, [CORE], "the set")
        core.write_text(_change(core.read_text(), (TOKENS, RENAMED)))
        second_commit = commit_files(s.branch, [CORE], "a rename")
        kept = [CandidateRecord(1, "the set", commit=first_commit), CandidateRecord(2, "a rename",
                                                                                   commit=second_commit)]
        final, after = final_measurement(s.ctx, baseline, s.branch, s.base, kept)
    speed = final["speed"]
    assert final["accepted"] == 2 and "from_candidate" not in final
    assert speed["speedup"] > 5 and speed["ci_low"] > 1 and 3 <= speed["n_base"] <= 10
    assert len(final["samples"]["baseline"]) == len(final["samples"]["candidate"]) == speed["n_base"]
    assert final["memory"]["baseline_peak_bytes"] == baseline.reference.memory["peak_bytes"]
    assert "measuring the final code against the original" in s.notes()
    assert s.progress("final")[-1] == speed["n_base"]
    assert after.samples > 0 and all(h.key != "mylib.core:tokens" for h in after.hotspots)


def test_a_function_the_profile_missed_but_the_workload_calls_is_timed(tmp_path):
    """A function too short for a profile's samples (called once per workload call, beside the quadratic
    unique_sorted): the recorder sees the candidate's run call it, so a candidate that edits it is timed, not 'not run
    by the workload' (ply calls a grammar rule's function per reduction, astropy-16813's expert edits them)."""
    core = textwrap.dedent(SMALL_LIB[CORE]) + "\n\ndef describe(items):\n    return str(len(items)) + ' items'\n"
    bench = textwrap.dedent(UNIQUE_ONLY["bench.py"]).replace("from mylib.core import unique_sorted",
                                                             "from mylib.core import describe, unique_sorted")
    bench = bench.replace("    return unique_sorted(items)", "    return unique_sorted(items), describe(items)")
    repo = make_repo(tmp_path / "repo", {**UNIQUE_ONLY, CORE: core, "bench.py": bench})
    edit = search_replace(CORE, "    return str(len(items)) + ' items'", "    return f'{len(items)} items'",
                          "Format with an f-string.")
    with stage(repo, tmp_path, tmp_path / "cache", [edit], profile_seconds=0.5, max_samples=5) as s:
        baseline = s.baseline()
        focus = s.focus(baseline)
        assert "mylib.core:describe" not in {h.key for h in focus.measured.hotspots}, "the profile sampled it"
        judge = baseline.judge(s.ctx.settings, s.ctx.env, s.ctx.workload)
        [decided] = Trial(s.ctx, baseline, judge, s.branch).run(1, focus, [], [])
    assert decided.verdict.reason != "not run by the workload", decided.verdict.detail
    assert decided.verdict.speed is not None  # timed
