"""The bundled batch-mode tasks (workloads/tasks.jsonl) fit their example repositories, expert patches, sources
(workloads/task-sources) and scripted sessions (workloads/sessions). No timing is measured here."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from perfagent.repos import examples
from perfagent.edits.search_replace import apply_edits, parse_edits
from perfagent.loop.guards import protected_reason
from perfagent.measure.workload import Workload, WorkloadRunner
from perfagent.runs.tasks import load_tasks
from tests.conftest import RLIMITS

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "workloads"
TASK_FILE = WORKLOADS / "tasks.jsonl"
TASKS, BAD = load_tasks(TASK_FILE)
RECORDS = {r["instance_id"]: r for r in map(json.loads, TASK_FILE.read_text(encoding="utf-8").splitlines())}
BY_ID = {task.instance_id: task for task in TASKS}


def _make_tasks():
    spec = importlib.util.spec_from_file_location("perfagent_make_tasks", ROOT / "benchmarks" / "make_tasks.py")
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ beside the script
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


make_tasks = _make_tasks()


def example_name(task) -> str:
    owner, name = task.repo.split("/")
    assert owner == examples.OWNER
    return name


def run(cmd: list[str], repo: Path) -> subprocess.CompletedProcess:
    """`cmd` in `repo` with the repository importable, no bytecode written and no pytest plugins of this
    environment loaded (the example repositories need none, and they make startup slow)."""
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           **make_tasks.GIT_ENV}
    return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def pytest_passes(repo: Path, tests: list[str]) -> None:
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], repo)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{len(tests)} passed" in done.stdout


def workload_result(repo: Path, workload: Path, tmp: Path):
    tmp.mkdir()
    runner = WorkloadRunner(Workload.parse(str(workload), repo), sys.executable, tmp, RLIMITS.limits(timeout_s=120))
    return runner.result(repo)[0]


@pytest.fixture(scope="module")
def base_repos(tmp_path_factory):
    """Each example repository used by a task, built once with its extensions (read-only for the tests): name ->
    (path, commit)."""
    root = tmp_path_factory.mktemp("examples")
    built = {name: (root / name, examples.build(name, root / name)) for name in sorted(set(map(example_name, TASKS)))}
    for path, _ in built.values():
        make_tasks.build(path)
    return built


def test_task_file_is_valid():
    assert BAD == []
    assert len(TASKS) >= 5
    names = [example_name(task) for task in TASKS]
    assert set(names) <= set(examples.names())
    assert any(names.count(name) >= 2 for name in names), "at least two tasks share a repository"
    for task in TASKS:
        record = RECORDS[task.instance_id]
        assert task.patch and task.test_patch == "" and task.setup_cmd is None
        assert record["gold_speedup"] >= 2 and record["pre_edit_runtime"] > 0
        assert record["edited_files"] == re.findall(r"^diff --git a/(\S+) b/", task.patch, re.M)
        assert all(f.split("::")[0] in record["edited_files"] for f in record["edited_functions"])
        assert task.pass_to_pass and all(t.split("::")[0] in task.covering_tests for t in task.pass_to_pass)


def test_base_commits_are_reproducible(base_repos):
    for task in TASKS:
        assert base_repos[example_name(task)][1] == task.base_commit, task.instance_id


@pytest.mark.parametrize("instance_id", list(BY_ID))
def test_expert_patch(instance_id, base_repos, tmp_path):
    """The patch applies, is what the task's sources produce, keeps PASS_TO_PASS passing and the result unchanged."""
    task = BY_ID[instance_id]
    base = base_repos[example_name(task)][0]
    patched = tmp_path / "patched"
    examples.build(example_name(task), patched)
    (tmp_path / "expert.patch").write_text(task.patch, encoding="utf-8")
    for args in (["--check"], []):
        done = run(["git", "apply", *args, str(tmp_path / "expert.patch")], patched)
        assert done.returncode == 0, done.stderr
    make_tasks.build(patched)

    regenerated = tmp_path / "regenerated"
    examples.build(example_name(task), regenerated)
    assert make_tasks.expert_patch(instance_id, regenerated) == task.patch, "tasks.jsonl is stale: run make_tasks.py"
    source = make_tasks.SOURCES / instance_id / "workload.py"
    assert source.read_text(encoding="utf-8") == task.workload, "tasks.jsonl is stale: run make_tasks.py"

    pytest_passes(base, task.pass_to_pass)
    pytest_passes(patched, task.pass_to_pass)
    workload = tmp_path / "workload.py"
    workload.write_text(task.workload, encoding="utf-8")
    assert workload_result(base, workload, tmp_path / "before") == workload_result(patched, workload, tmp_path / "after")


@pytest.mark.parametrize("instance_id", list(BY_ID))
def test_session_edits_match_base_code(instance_id, base_repos):
    data = json.loads((WORKLOADS / "sessions" / f"{instance_id}.json").read_text(encoding="utf-8"))
    assert data["label"] and 2 <= len(data["responses"]) <= 3
    base = base_repos[example_name(BY_ID[instance_id])][0]
    changed = []  # the files each reply with edits changes
    for number, reply in enumerate(data["responses"], 1):
        edits = parse_edits(reply)
        if edits:
            result = apply_edits(base, edits, write=False)
            assert result.ok, f"reply {number}: {[(f.edit.path, f.reason) for f in result.failures]}"
            changed.append(set(result.changed))
    # some reply optimises the code the expert patch edits, and touches no test or packaging file
    edited = set(RECORDS[instance_id]["edited_files"])
    assert any(files & edited and not any(protected_reason(f, None) for f in files) for files in changed)
