"""Batch and evaluate end to end on the bundled example tasks, through the command line, with the local and the Ray
executor: scripted sessions per task, real git, real environments, real sandboxed test and timing runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.xdist_group("test_batch")  # one worker: its module fixture builds the tasks' environments


ROOT = Path(__file__).resolve().parent.parent
TASK_FILE = ROOT / "workloads" / "tasks.jsonl"
FAST = ["--sample-seconds", "0.05"]  # timing quality is not what these tests are about


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> list[str]:
    """Shared by the tests here, as by batch runs: environments are built once."""
    root = tmp_path_factory.mktemp("caches")
    return ["--repo-cache", str(root / "repos"), "--env-cache", str(root / "envs")]


def task_file(path: Path, ids: list[str]) -> Path:
    lines = [line for line in TASK_FILE.read_text().splitlines() if json.loads(line)["instance_id"] in ids]
    assert len(lines) == len(ids)
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "perfagent", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})
    return done


def leftovers(repo_cache: Path) -> tuple[list[str], list[str]]:
    """Extra worktrees and perfagent branches left in the cached repositories."""
    trees, branches = [], []
    for repo in Path(repo_cache).iterdir():
        if repo.name.startswith("."):
            continue
        listing = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
        trees += listing.splitlines()[1:]
        branches += subprocess.run(["git", "-C", str(repo), "branch", "--list", "perfagent/*"], capture_output=True,
                                   text=True).stdout.split()
    return trees, branches


@pytest.mark.ray
def test_gold_evaluation_reproduces_the_expert_speedup(tmp_path, caches):
    ids = ["perfagent-examples__inventory-3"]
    tasks = task_file(tmp_path / "tasks.jsonl", ids)
    done = cli("evaluate", str(tasks), "--gold", "--out", str(tmp_path / "gold"), "--pairs", "4", "--executor", "ray",
               *FAST, *caches)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "gold" / "report.json").read_text())
    assert report["gold"] and report["summary"]["scored"] == 1
    for row in report["tasks"]:
        assert row["applied"] and row["tests_passed"]
        assert row["expert"]["ci_low"] > 2 and row["speedup"]["ci_low"] > 2
        assert row["general"] is True, row  # the experts' gains hold on first calls and on a variant of setup()
        # the patch and the expert are the same code, timed in one rotation: their ratio is 1 up to noise (not "the
        # 95% interval contains 1.0", which fails 1 run in 20 by design). A ratio off by half: a patch that lost the
        # gain (both speedups are over 2); closer calls are the machine's (1.47 at load 8 on 2 cores)
        assert 0.5 < row["ratio"] < 2 and row["ratio_ci_low"] <= row["ratio"] <= row["ratio_ci_high"], row


MEMO = [("from __future__ import annotations\n", "from __future__ import annotations\n\n_SEEN = {}\n"),
        ('        raise ValueError("window must be positive")\n    totals = []\n',
         '        raise ValueError("window must be positive")\n    key = (tuple(daily_units), window)\n'
         '    if key in _SEEN:\n        return list(_SEEN[key])\n    totals = []\n'),
        ("        totals.append(total)\n    return totals\n",
         "        totals.append(total)\n    _SEEN[key] = totals\n    return list(totals)\n")]


def test_evaluate_flags_a_gain_that_holds_only_in_the_benchmarks_own_situation(tmp_path, caches):
    """A patch SWE-fficiency's harness scores as correct and faster: rolling_demand() keeps its results from call to
    call, keyed by the input, which setup() rebuilds equal before every call. Its gain is on later calls of a process
    only: evaluate times it on first calls and says the gain is not general."""
    import difflib

    source = (ROOT / "workloads" / "repos" / "inventory" / "inventory" / "forecast.py").read_text()
    memo = source
    for old, new in MEMO:
        assert old in memo
        memo = memo.replace(old, new, 1)
    patch = "".join(difflib.unified_diff(source.splitlines(True), memo.splitlines(True), "a/inventory/forecast.py",
                                         "b/inventory/forecast.py"))
    task = "perfagent-examples__inventory-3"
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(json.dumps({"instance_id": task, "model_patch": patch, "model_name_or_path": "memo"}) + "\n")
    done = cli("evaluate", str(task_file(tmp_path / "tasks.jsonl", [task])), "--predictions", str(predictions),
               "--out", str(tmp_path / "eval"), "--pairs", "6", *FAST, *caches)
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = json.loads((tmp_path / "eval" / "report.json").read_text())["tasks"]
    assert row["tests_passed"] and row["result_unchanged"] is not False, row
    assert row["first_calls"].startswith("its later calls in a process are far faster than its first"), row
    assert row["general"] is False and "gain only in the benchmark's own situation" in " ".join(done.stdout.split())


def test_bad_records_and_broken_patches_are_reported_without_stopping(tmp_path, caches):
    records = {json.loads(line)["instance_id"]: json.loads(line) for line in TASK_FILE.read_text().splitlines()}
    good, other = records["perfagent-examples__inventory-3"], records["perfagent-examples__graphkit-2"]
    customers = records["perfagent-examples__inventory-2"]
    bad_workload = {**good, "instance_id": "bad-workload", "workload": "def setup(:\n"}
    missing_repo = {**good, "instance_id": "missing-repo", "repo": "nobody/nothing"}
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join(json.dumps(r) for r in (good, bad_workload, missing_repo, other, customers)) +
                     "\nnot json\n")
    # valid, but wrong: tests fail, and a conftest.py that stops pytest collecting them must not hide it
    wrong = good["patch"].replace("total += daily_units[day] - daily_units[day - window]",
                                  "total += daily_units[day]")
    hide_tests = ("diff --git a/tests/conftest.py b/tests/conftest.py\nnew file mode 100644\n--- /dev/null\n"
                  "+++ b/tests/conftest.py\n@@ -0,0 +1 @@\n+collect_ignore_glob = ['test_*.py']\n")
    not_applying = other["patch"].replace("\n-    seen = []\n", "\n-    seen = [None]\n")  # a line not in the file
    # the expert's speedup, plus a cap on the counts that the tests' few orders per customer never reach and the
    # workload's 400 do
    truncating = customers["patch"].replace("[(customer, count) for", "[(customer, min(count, 300)) for")
    assert truncating != customers["patch"]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"instance_id": i, "model_patch": p, "model_name_or_path": "m"}) + "\n"
                                   for i, p in ((good["instance_id"], wrong + hide_tests),
                                                (other["instance_id"], not_applying),
                                                (customers["instance_id"], truncating), ("unknown-task", ""))))
    done = cli("evaluate", str(tasks), "--predictions", str(predictions), "--out", str(tmp_path / "ev"),
               "--pairs", "3", *FAST, *caches)  # what is checked here is not timing
    assert done.returncode == 0, done.stdout + done.stderr
    assert "line 2 (bad-workload): workload: Value error, is not valid Python" in done.stdout
    assert "line 6 (no instance_id): not JSON" in done.stdout
    assert "predictions for tasks not in the task file are ignored: unknown-task" in done.stdout
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    rows = {r["instance_id"]: r for r in report["tasks"]}
    assert "nobody/nothing is not in the repository cache" in rows["missing-repo"]["error"]
    assert rows["bad-workload"]["skipped"].startswith("workload: Value error, is not valid Python")
    assert rows[None]["line"] == 6 and rows[None]["skipped"].startswith("not JSON")  # listed, and counted:
    assert [report["summary"][k] for k in ("tasks", "scored", "errors", "skipped")] == [6, 3, 1, 2]
    wrong_row, other_row = rows[good["instance_id"]], rows[other["instance_id"]]
    assert wrong_row["applied"] and not wrong_row["tests_passed"]
    assert "tests/test_forecast.py::test_rolling_demand_matches_direct_sums" in wrong_row["tests_broken"]
    assert not other_row["applied"] and other_row["apply_method"] is None
    assert "neither `git apply --allow-empty -v` nor `patch --batch --forward --fuzz=5 -p1`" in other_row["apply_error"]
    assert wrong_row["apply_method"] == "git apply"
    changed_row = rows[customers["instance_id"]]  # its tests pass, its result does not: incorrect all the same
    assert changed_row["applied"] and changed_row["tests_passed"] and changed_row["result_unchanged"] is False
    assert "returning" in changed_row["result_change"]
    assert f"{customers['instance_id']}: not scored, result changed (speedup 1.0)" in done.stdout
    for row in (wrong_row, other_row, changed_row):  # scored as no speedup: ratio = 1 / expert speedup
        assert row["speedup"] is None and row["ratio"] == pytest.approx(1 / row["expert"]["speedup"])
    assert "result changed" in (tmp_path / "ev" / "report.html").read_text()


BUILD = """import py_compile, shutil, sys
py_compile.compile("src/work.txt", doraise=True)
shutil.copyfile("src/work.txt", "gen/built.py")
"""
SLOW = "def work(n):\n    total = 0\n    for i in range(n):\n        total += i\n    return total\n"
FAST_CODE = "def work(n):\n    return n * (n - 1) // 2\n"
SCRIPT = """import statistics, timeit
from gen.built import work


def setup():
    pass

def workload():
    return work(300000)

runtimes = timeit.repeat(workload, number=1, repeat=5, setup=setup)
print("Mean:", statistics.mean(runtimes))
print("Std Dev:", statistics.stdev(runtimes))
"""


def test_script_mode_with_rebuild_and_test_commands(tmp_path):
    """A task whose code must be built (rebuild_cmd) and tested by a command (test_cmd), timed by running its script
    as written and reading its 'Mean:' line, as SWE-fficiency's harness does."""
    from conftest import git, make_repo

    repo = make_repo(tmp_path / "cache" / "acme__gen", {"build.py": BUILD, "src/work.txt": SLOW, "gen/__init__.py": ""})
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "src" / "work.txt").write_text(FAST_CODE)
    expert = git(repo, "diff")
    (repo / "src" / "work.txt").write_text("def work(n:\n")
    broken = git(repo, "diff")
    git(repo, "checkout", "-q", "--", ".")
    task = {"repo": "acme/gen", "base_commit": base, "workload": SCRIPT, "patch": expert, "setup_cmd": "true",
            "rebuild_cmd": "python build.py",
            "test_cmd": "python -c 'from gen.built import work; assert work(10) == 45'"}
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({**task, "instance_id": "good"}) + "\n" + json.dumps({**task, "instance_id": "bad"}))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(json.dumps({"instance_id": "good", "model_patch": expert}) + "\n"
                           + json.dumps({"instance_id": "bad", "model_patch": broken}) + "\n")
    done = cli("evaluate", str(tasks), "--predictions", str(predictions), "--out", str(tmp_path / "ev"), "--mode",
               "script", "--repo-cache", str(tmp_path / "cache"), "--env-cache", str(tmp_path / "envs"))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["instance_id"]: r for r in json.loads((tmp_path / "ev" / "report.json").read_text())["tasks"]}
    good, bad = rows["good"], rows["bad"]
    assert good["applied"] and good["tests_passed"] and good["tests"] == task["test_cmd"], good
    assert good["speedup"]["pairs"] == 3 and good["speedup"]["speedup"] > 5 and good["expert"]["speedup"] > 5
    assert not bad["applied"] and bad["apply_error"].startswith("rebuild failed: `python build.py`"), bad
    assert bad["ratio"] == pytest.approx(1 / bad["expert"]["speedup"])

