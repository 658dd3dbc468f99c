"""The parts batch and evaluate are built from: the repository cache, per-task environments, the shared budget,
task test selection, test-file resets, the aggregate score and the rows of invalid task records."""
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from perfagent.config import Settings
from perfagent.repos import examples
from perfagent.runs.envs import EnvError, Environments
from perfagent.runs.evaluate import EvalJob, _prepare, describe_row, run_evaluation
from perfagent.runs.outputs import EVALUATION, summarize
from perfagent.runs.executors import LocalExecutor
from perfagent.model.llm import BudgetExceeded, Reply, SharedBudget
from perfagent.record import append_jsonl, read_jsonl
from perfagent.report.render import write_report
from perfagent.repos.repositories import GIT_APPLY, PATCH_FUZZ, RepoCache, RepoError
from perfagent.repos.diffs import patched_files
from perfagent.runs.tasks import Task
from conftest import git, make_repo

WORKLOAD = "def setup():\n    pass\n\n\ndef workload():\n    return 1\n"


def task(**fields) -> Task:
    return Task(**{"instance_id": "t-1", "repo": "acme/lib", "base_commit": "0" * 40, "workload": WORKLOAD, **fields})


def test_repo_cache_finds_a_bare_mirror_and_checks_out_detached_worktrees(tmp_path):
    source = make_repo(tmp_path / "src", {"lib.py": "x = 1\n"})
    first = git(source, "rev-parse", "HEAD").strip()
    (source / "lib.py").write_text("x = 2\n")
    git(source, "commit", "-qam", "two")
    cache = tmp_path / "cache"
    subprocess.run(["git", "clone", "-q", "--mirror", str(source), str(cache / "acme+lib" / "repo")], check=True)
    repos = RepoCache(cache)
    with repos.checkout("acme/lib", first[:10]) as worktree:
        assert (worktree / "lib.py").read_text() == "x = 1\n"
        assert git(worktree, "rev-parse", "HEAD").strip() == first
        listing = git(cache / "acme+lib" / "repo", "worktree", "list")
        assert str(worktree) in listing
    assert not worktree.exists()
    assert git(cache / "acme+lib" / "repo", "worktree", "list").count("\n") == 1
    with pytest.raises(RepoError, match=r"commit 1234567 is not in .*git -C .* fetch"):
        with repos.checkout("acme/lib", "1234567"):
            pass


def test_a_checkout_holds_its_submodules_files_from_the_cache(tmp_path):
    """A submodule (astropy's astropy_helpers, which its setup.py imports) is filled from the cache's mirror of its
    repository at the recorded commit; the task's git sees an unpopulated submodule, so its status stays clean. One the
    cache lacks stays empty."""
    helpers = make_repo(tmp_path / "acme__helpers", {"helpers/__init__.py": "VERSION = 1\n"})
    recorded = git(helpers, "rev-parse", "HEAD").strip()
    (helpers / "helpers" / "__init__.py").write_text("VERSION = 2\n")
    git(helpers, "commit", "-qam", "later")
    source = make_repo(tmp_path / "acme__lib", {"lib.py": "x = 1\n", ".gitmodules":
                       '[submodule "helpers"]\n\tpath = ext/helpers\n\turl = https://github.com/acme/helpers.git\n'
                       '[submodule "other"]\n\tpath = other\n\turl = git@github.com:acme/absent.git\n'})
    git(source, "update-index", "--add", "--cacheinfo", f"160000,{recorded},ext/helpers")
    git(source, "update-index", "--add", "--cacheinfo", f"160000,{recorded},other")
    git(source, "commit", "-qm", "submodules")
    with RepoCache(tmp_path).checkout("acme/lib", "HEAD") as worktree:
        assert (worktree / "ext" / "helpers" / "helpers" / "__init__.py").read_text() == "VERSION = 1\n"
        assert not (worktree / "ext" / "helpers" / ".git").exists()
        assert not (worktree / "other").exists() or not any((worktree / "other").iterdir())
        assert git(worktree, "status", "--porcelain", "--untracked-files=all") == ""


def test_missing_repository_says_how_to_add_it(tmp_path):
    with pytest.raises(RepoError, match=r"acme/other is not in the repository cache .*git clone --mirror "
                                        r"https://github.com/acme/other .*acme__other.git"):
        RepoCache(tmp_path).locate("acme/other")


def test_a_killed_runs_worktree_and_branch_are_removed_by_the_next_checkout(tmp_path):
    source = make_repo(tmp_path / "acme__lib", {"lib.py": "x = 1\n"})
    repos = RepoCache(tmp_path)
    head = git(source, "rev-parse", "HEAD").strip()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    git(source, "branch", "perfagent/killed-run")  # a killed task's branch: no worktree has it any more
    live = tmp_path / "live"
    git(source, "worktree", "add", "-q", "-b", "perfagent/live-run", str(live))
    with repos.checkout("acme/lib", head) as worktree:
        (worktree.parent / "owner.pid").write_text(dead)  # as if its process had been killed
        with repos.checkout("acme/lib", head) as second:
            assert not worktree.exists() and second.exists()
    assert git(source, "branch", "--list", "perfagent/*").split() == ["+", "perfagent/live-run"]


def test_bundled_examples_are_built_into_the_cache_with_fixed_commits(tmp_path):
    records = [json.loads(line) for line in (examples.SOURCES.parent / "tasks.jsonl").read_text().splitlines()]
    repos = RepoCache(tmp_path)
    for record in records:
        path = repos.locate(record["repo"])
        assert git(path, "rev-parse", "HEAD").strip() == record["base_commit"]


def test_environments_are_shared_by_setup_and_see_pytest(tmp_path):
    envs = Environments(tmp_path / "envs")
    a = task(setup_cmd="echo built >> built.txt")
    b = task(instance_id="t-2", base_commit="1" * 40, setup_cmd="echo built >> built.txt")
    assert envs.key(a) == envs.key(b)  # same setup command: one environment
    assert envs.key(task()) != envs.key(task(base_commit="1" * 40))  # default setup installs the repository
    worktree = tmp_path / "wt"
    worktree.mkdir()
    python = envs.python_for(a, worktree)
    assert envs.python_for(b, worktree) == python
    assert (worktree / "built.txt").read_text() == "built\n"  # ran once, in the worktree
    probe = subprocess.run([python, "-c", "import sys, pytest, coverage; print(sys.prefix)"], capture_output=True,
                           text=True)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == str(Path(python).parent.parent)


def test_a_failing_setup_command_is_reported_with_its_log_and_retried_next_time(tmp_path):
    envs = Environments(tmp_path / "envs")
    broken = task(setup_cmd="echo 'no such package: frobnicate' >&2; exit 3")
    with pytest.raises(EnvError, match=r"(?s)exit code 3 .*no such package: frobnicate"):
        envs.python_for(broken, tmp_path)
    assert not (envs.root / envs.key(broken) / "perfagent-ready").exists()


def _charge(ledger: str, times: int) -> None:
    budget = SharedBudget(ledger=Path(ledger))
    for _ in range(times):
        budget.charge(Reply("x", 1, 1, cost_usd=0.01, model="m", seconds=0.0))


def test_shared_budget_counts_every_process_and_stops_all_at_the_limit(tmp_path):
    ledger = tmp_path / "spend.json"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_charge, args=(str(ledger), 25)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    spent = json.loads(ledger.read_text())
    assert spent["calls"] == 100 and spent["usd"] == pytest.approx(1.0)
    SharedBudget(ledger=ledger, total_calls=101).check()
    with pytest.raises(BudgetExceeded, match="batch call budget used up: 100 of 100"):
        SharedBudget(ledger=ledger, total_calls=100).check()
    with pytest.raises(BudgetExceeded, match="batch cost budget"):
        SharedBudget(ledger=ledger, total_usd=0.5).check()


def test_task_tests_fall_back_to_the_tests_folder_nearest_the_expert_edit(tmp_path):
    (tmp_path / "pkg" / "sub" / "tests").mkdir(parents=True)
    (tmp_path / "pkg" / "tests").mkdir()
    patch = ("diff --git a/pkg/sub/deep/mod.py b/pkg/sub/deep/mod.py\n--- a/pkg/sub/deep/mod.py\n"
             "+++ b/pkg/sub/deep/mod.py\n@@ -1 +1 @@\n-a\n+b\n"
             "diff --git a/pkg/new.py b/pkg/new.py\n--- /dev/null\n+++ b/pkg/new.py\n@@ -0,0 +1 @@\n+c\n")
    assert patched_files(patch) == ["pkg/sub/deep/mod.py", "pkg/new.py"]
    assert task(patch=patch).test_targets(tmp_path) == ["pkg/sub/tests", "pkg/tests"]
    assert task(patch=patch, covering_tests=["pkg/tests/test_x.py"]).test_targets(tmp_path) == ["pkg/tests/test_x.py"]
    assert task(patch=patch, PASS_TO_PASS='["pkg/tests/test_x.py::t"]').test_targets(tmp_path) == [
        "pkg/tests/test_x.py::t"]


def test_evaluation_resets_the_test_files_a_patch_touches(tmp_path):
    repo = make_repo(tmp_path / "r", {"lib.py": "x = 1\n", "tests/test_lib.py": "def test_x():\n    assert True\n"})
    patch = ("diff --git a/lib.py b/lib.py\n--- a/lib.py\n+++ b/lib.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
             "diff --git a/tests/test_lib.py b/tests/test_lib.py\n--- a/tests/test_lib.py\n+++ b/tests/test_lib.py\n"
             "@@ -1,2 +1,2 @@\n def test_x():\n-    assert True\n+    assert 1\n"
             "diff --git a/tests/conftest.py b/tests/conftest.py\nnew file mode 100644\n--- /dev/null\n"
             "+++ b/tests/conftest.py\n@@ -0,0 +1 @@\n+collect_ignore = ['test_lib.py']\n")
    applied, problem, how = _prepare(repo, patch, task())
    assert (applied, problem, how.method) == (True, "", GIT_APPLY)
    assert (repo / "lib.py").read_text() == "x = 2\n"
    assert (repo / "tests" / "test_lib.py").read_text() == "def test_x():\n    assert True\n"
    assert not (repo / "tests" / "conftest.py").exists()
    applied, problem, how = _prepare(repo, patch, task())  # now it no longer applies, and is not undone either
    assert not applied and how.method is None and "patch does not apply" in problem
    assert (repo / "lib.py").read_text() == "x = 2\n" and not (repo / "tests" / "conftest.py").exists()


def test_evaluation_puts_back_a_test_file_a_patch_renames_away(tmp_path):
    """A rename without changes has no ---/+++ lines: its names come from git's header."""
    repo = make_repo(tmp_path / "r", {"lib.py": "x = 1\n", "tests/test_lib.py": "def test_x():\n    assert True\n"})
    patch = ("diff --git a/tests/test_lib.py b/tests/lib_checks.txt\nsimilarity index 100%\n"
             "rename from tests/test_lib.py\nrename to tests/lib_checks.txt\n")
    applied, problem, how = _prepare(repo, patch, task())
    assert (applied, problem, how.method) == (True, "", GIT_APPLY)
    assert (repo / "tests" / "test_lib.py").is_file() and not (repo / "tests" / "lib_checks.txt").exists()


def test_summary_is_the_harmonic_mean_of_ratios():
    rows = [{"ratio": 2.0, "ratio_ci_high": 2.5, "applied": True, "tests_passed": True},
            {"ratio": 0.5, "ratio_ci_high": 0.7, "applied": True, "tests_passed": True},
            {"ratio": 0.25, "applied": False, "tests_passed": False},
            {"ratio": None, "error": "x", "applied": False, "tests_passed": False}]
    summary = summarize(rows)
    assert summary["harmonic_mean_ratio"] == pytest.approx(stats.hmean([2.0, 0.5, 0.25]))
    assert (summary["scored"], summary["errors"], summary["skipped"], summary["applied"]) == (3, 1, 0, 2)
    assert summary["at_or_above_expert"] == pytest.approx(1 / 3)


SPEED = {"speedup": 3.0, "ci_low": 2.5, "ci_high": 3.5, "p_value": 0.001, "pairs": 8, "ratios": [3.0] * 8}


def test_invalid_task_records_are_rows_that_are_counted_once(tmp_path):
    """Records that are not valid tasks are rows of evaluation.jsonl and report.json with their reason, counted by
    the summary and shown by the reports; a resumed evaluate does not repeat them, and a changed task file replaces
    them. (The one valid task was evaluated by an earlier run, so nothing is timed here.)"""
    good = {"instance_id": "t-1", "repo": "acme/lib", "base_commit": "0" * 40, "workload": WORKLOAD, "patch": "x"}
    no_repo = {k: v for k, v in good.items() if k != "repo"} | {"instance_id": "no-repo"}
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join([json.dumps(good), json.dumps({**good, "instance_id": "bad", "workload": "def setup(:"}),
                                json.dumps(no_repo), "not json", json.dumps(good)]) + "\n")
    out = tmp_path / "ev"
    out.mkdir()
    evaluated = {"instance_id": "t-1", "predicted": True, "applied": True, "apply_error": "", "tests_passed": True,
                 "apply_method": PATCH_FUZZ, "apply_log": "git apply: error: corrupt patch at line 9",
                 "speedup": SPEED, "expert": SPEED, "ratio": 1.0, "ratio_ci_low": 0.9, "ratio_ci_high": 1.1}
    append_jsonl(out / EVALUATION, evaluated)
    job = EvalJob(out=out, repo_cache=tmp_path / "repos", env_cache=tmp_path / "envs", mode="harness", pairs=3,
                  timeout_s=60, settings=Settings())
    said = []
    for _ in range(2):  # the second run resumes: nothing to do, nothing added
        report = run_evaluation(tasks, {"t-1": "x", "bad": "x"}, job, LocalExecutor(1), say=said.append)
    rows = read_jsonl(out / EVALUATION)
    skipped = [(r["instance_id"], r["line"], r["skipped"].split(":")[0], r["ratio"], r["predicted"])
               for r in rows if r.get("skipped")]
    assert skipped == [("bad", 2, "workload", None, True), ("no-repo", 3, "repo", None, False),
                       (None, 4, "not JSON", None, False), ("t-1", 5, "duplicate instance_id", None, True)]
    assert len(rows) == 5
    assert "is not valid Python" in rows[1]["skipped"] and "Field required" in rows[2]["skipped"]
    assert report == json.loads((out / "report.json").read_text())
    assert [r.get("skipped", "")[:9] for r in report["tasks"]] == ["", "workload:", "repo: Fie", "not JSON:",
                                                                   "duplicate"]
    summary = report["summary"]
    assert (summary["tasks"], summary["scored"], summary["errors"], summary["skipped"]) == (5, 1, 0, 4)
    assert (summary["applied"], summary["applied_by_fallback"], summary["harmonic_mean_ratio"]) == (1, 1, 1.0)
    assert not any("ignored" in line for line in said)  # "bad" has a prediction: its task is skipped, not unknown

    assert describe_row(rows[1]).startswith("bad (line 2): skipped, not a valid task: workload: ")
    assert describe_row(rows[3]).startswith("line 4: skipped, not a valid task: not JSON")
    assert "applied=True (by patch --fuzz)" in describe_row(evaluated)
    html = write_report(out).read_text()
    assert "1 of 5 tasks scored (0 errors, 4 skipped as not valid tasks)" in html
    assert "1 only by the fallback" in html and "applied by patch --fuzz" in html
    assert html.count("skipped, not a valid task: ") == 4 and "line 4" in html
    from rich.console import Console
    from perfagent.cli import _evaluation_table
    console = Console(record=True, width=200)
    console.print(_evaluation_table(report))
    table = console.export_text()
    assert "4 task-file records skipped as not valid tasks" in table and "by patch --fuzz" in table
    assert table.count("skipped") >= 5 and "line 4" in table

    tasks.write_text(json.dumps(good) + "\nnot json\n")  # bad records removed from the task file
    report = run_evaluation(tasks, {"t-1": "x"}, job, LocalExecutor(1), say=said.append)
    assert [(r["instance_id"], r.get("line")) for r in read_jsonl(out / EVALUATION)] == [("t-1", None), (None, 2)]
    assert (report["summary"]["tasks"], report["summary"]["skipped"]) == (2, 1)
    assert "1 of 2 tasks scored (0 errors, 1 skipped" in write_report(out).read_text()


def test_the_progress_bar_counts_tasks_on_a_terminal_only():
    """batch and evaluate draw one bar over their tasks on a terminal's stderr, fed by the runner's counts; the
    tasks an earlier pass finished are where it starts. Anywhere else it draws nothing (the lines are the progress)."""
    import io
    import re

    from rich.console import Console

    from perfagent.report.live import task_bar
    from perfagent.runs.runner import TaskCounts

    terminal = Console(file=io.StringIO(), force_terminal=True, color_system=None, width=120)
    counts = TaskCounts(total=3, workers=2, done=1, spend={"calls": 4, "usd": 0.25})  # one done by an earlier pass
    with task_bar(terminal, "batch") as progress:
        progress(counts)
        counts.done, counts.failed = 2, 1
        progress(counts)
    shown = terminal.file.getvalue()
    assert re.search(r"batch .*2/3 tasks, 1 failed, \$0\.2500 .*ETA 0:00:0\d", shown), shown
    piped = Console(file=io.StringIO())
    with task_bar(piped, "evaluate") as progress:
        progress(counts)
    assert piped.file.getvalue() == ""
