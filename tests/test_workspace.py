"""perfagent's worktrees: opening repositories, isolation from the user's checkout, cleanup after kills."""
import os
import subprocess
import sys
import textwrap

import pytest

from perfagent.sandbox.workspace import Workspaces, WorkspaceError, commit_files, open_repo
from tests.conftest import git, make_repo, repo_state


def test_open_repo_errors(tmp_path):
    with pytest.raises(WorkspaceError, match="not a git repository"):
        open_repo(tmp_path)
    with pytest.raises(WorkspaceError, match="not a directory"):
        open_repo(tmp_path / "missing")
    git(tmp_path, "init", "-q")
    with pytest.raises(WorkspaceError, match="no commits"):
        open_repo(tmp_path)
    repo = make_repo(tmp_path / "r", {"pkg/a.py": "x = 1\n"})
    with pytest.raises(WorkspaceError, match="pass the repository's top folder"):
        open_repo(repo / "pkg")


def test_worktrees_leave_the_users_checkout_alone(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n", "b.py": "y = 2\n"})
    (repo / "a.py").write_text("x = 'uncommitted'\n")  # unstaged change
    (repo / "b.py").write_text("y = 'staged'\n")
    git(repo, "add", "b.py")
    (repo / "new.py").write_text("untracked\n")
    before = repo_state(repo)
    ws = Workspaces(open_repo(repo), "t1")
    branch = ws.branch("perfagent/t1", "HEAD")
    assert (branch / "a.py").read_text() == "x = 1\n", "works from HEAD, not from the dirty tree"
    assert not (branch / "new.py").exists()
    (branch / "a.py").write_text("x = 2\n")
    (branch / "calls.log").write_text("left behind by a run\n")
    sha = commit_files(branch, ["a.py"], "perfagent: change")
    assert git(branch, "show", "--name-only", "--format=", sha).split() == ["a.py"], "only the candidate's files"
    scratch = ws.scratch(sha)
    assert (scratch / "a.py").read_text() == "x = 2\n"
    ws.discard(scratch)
    ws.close()
    assert not ws.root.exists()
    after = repo_state(repo)
    assert {k: v for k, v in after.items() if k != "branches"} == {k: v for k, v in before.items() if k != "branches"}
    assert after["branches"] == before["branches"] + f"refs/heads/perfagent/t1 {sha}\n"
    assert git(repo, "log", "-1", "--format=%an %s", "perfagent/t1").strip() == "perfagent perfagent: change"
    assert git(repo, "worktree", "list").count("\n") == 1


def test_existing_branch_is_refused(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    git(repo, "branch", "perfagent/x")
    ws = Workspaces(open_repo(repo), "x")
    try:
        with pytest.raises(WorkspaceError, match="already exists"):
            ws.branch("perfagent/x", "HEAD")
    finally:
        ws.close()


def test_worktrees_of_a_killed_run_are_removed_by_the_next(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from perfagent.sandbox.workspace import Workspaces, open_repo
        ws = Workspaces(open_repo({str(repo)!r}), "killed")
        ws.scratch("HEAD")
        print(ws.root, flush=True)
        time.sleep(300)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    root = proc.stdout.readline().strip()
    proc.kill()
    proc.wait()
    assert os.path.isdir(root) and root in git(repo, "worktree", "list")
    ws = Workspaces(open_repo(repo), "next")  # the next run cleans up
    ws.close()
    assert not os.path.exists(root)
    assert git(repo, "worktree", "list").count("\n") == 1


def test_live_runs_worktrees_are_kept(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    first = Workspaces(open_repo(repo), "one")
    scratch = first.scratch("HEAD")
    second = Workspaces(open_repo(repo), "two")
    assert scratch.exists()
    second.close()
    first.close()
