"""perfagent's own git worktrees of the user's repository.

The user's working tree, index, stash and branches are never touched: the run's branch is created by
`git worktree add -b`, candidates get detached scratch worktrees, and everything lives under one temporary folder that
is removed on close. A run killed with SIGKILL leaves that folder behind; the next run on the repository removes it.
Code runs in these worktrees, so git runs on them only through sandbox/gitsafe.py.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import git

from perfagent.sandbox import gitsafe
from perfagent.sandbox.scratch import alive

_PREFIX = "perfagent-"
_OWNER = "owner.pid"
_BRANCH = "branch.start"  # the run's branch and the commit it started at
_RECORD = "record.path"  # the run's summary.json


class WorkspaceError(RuntimeError):
    pass


def open_repo(path: Path) -> git.Repo:
    """The git repository at `path` (its top level), or a WorkspaceError saying what is wrong."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise WorkspaceError(f"{path} is not a directory")
    try:
        repo = git.Repo(path, search_parent_directories=True)
    except git.InvalidGitRepositoryError:
        raise WorkspaceError(f"{path} is not a git repository: run `git init` and commit your code first") from None
    if repo.bare:
        raise WorkspaceError(f"{path} is a bare repository, with no work tree: clone it (git clone {path} work) and "
                             f"point perfagent at the clone")
    top = Path(repo.working_tree_dir).resolve()
    if top != path:
        raise WorkspaceError(f"{path} is inside the git repository {top}: pass the repository's top folder")
    if not repo.head.is_valid():
        raise WorkspaceError(f"{path} has no commits yet: commit your code first")
    return repo


def remove_stale(repo: git.Repo) -> list[Path]:
    """Remove what perfagent runs that died without cleaning up left in `repo`: their worktrees, and their branches
    when no commit was made on them. Returns the summary.json files of those runs."""
    records = []
    def worktree(*args: str) -> str:  # by --git-dir: also right for a bare mirror
        return repo.git.execute(["git", f"--git-dir={repo.git_dir}", "worktree", *args])

    branches = []
    for line in worktree("list", "--porcelain").splitlines():
        if not line.startswith("worktree "):
            continue
        root = Path(line.split(" ", 1)[1]).parent
        owner = root / _OWNER
        if not root.name.startswith(_PREFIX) or (owner.exists() and alive(int(owner.read_text() or 0))):
            continue
        if (root / _BRANCH).exists():
            branches.append((root / _BRANCH).read_text().split())
        if (root / _RECORD).exists():
            records.append(Path((root / _RECORD).read_text()))
        shutil.rmtree(root, ignore_errors=True)
    worktree("prune")
    for name, start in dict.fromkeys(map(tuple, branches)):
        if name in repo.heads and repo.heads[name].commit.hexsha == start:
            repo.git.branch("-D", name)
    return records


class Workspaces:
    """All worktrees of one run, under one temporary folder."""

    def __init__(self, repo: git.Repo, run_id: str, record: Path | None = None):
        self.repo = repo
        self.stale_records = remove_stale(repo)
        self.root = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{run_id}-"))
        (self.root / _OWNER).write_text(str(os.getpid()))
        if record:
            (self.root / _RECORD).write_text(str(Path(record).resolve()))
        self._common = Path(repo.common_dir).resolve()
        self._trees: list[Path] = []  # the worktrees not yet discarded
        self.branch_tree: Path | None = None
        self._count = 0

    def branch(self, name: str, start: str) -> Path:
        """A worktree on a new branch `name` starting at commit `start`."""
        if name in self.repo.heads:
            raise WorkspaceError(f"branch {name} already exists")
        path = self.root / "branch"
        (self.root / _BRANCH).write_text(f"{name} {start}")
        gitsafe.add_worktree(self._common, path, start, branch=name)
        self._trees.append(path)
        self.branch_tree = path
        return path

    def scratch(self, commit: str) -> Path:
        """A fresh detached worktree at `commit` (one per candidate)."""
        self._count += 1
        path = self.root / f"scratch-{self._count}"
        gitsafe.add_worktree(self._common, path, commit)
        self._trees.append(path)
        return path

    def tmpdir(self, name: str) -> Path:
        path = self.root / "tmp" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def discard(self, path: Path) -> None:
        self._trees.remove(path)
        gitsafe.remove_worktrees([path])

    def close(self) -> None:
        gitsafe.remove_worktrees(self._trees)
        self._trees = []
        for child in self.root.iterdir():  # the owner file last: a run killed half-way is still seen as stale
            if child.name != _OWNER:
                shutil.rmtree(child, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)
        gitsafe.prune(self._common)  # also a worktree that a signal cut off between `git worktree add` and its record


def commit_files(worktree: Path, paths: list[str], message: str) -> str:
    """Commit exactly `paths` in `worktree` (nothing else the runs left behind) and return the new commit's sha."""
    gitsafe.git(worktree, "add", "--all", "--", *paths)
    gitsafe.git(worktree, "commit", "--quiet", "--no-verify", "-m", message, "--", *paths,
                env={"GIT_AUTHOR_NAME": "perfagent", "GIT_AUTHOR_EMAIL": "perfagent@localhost",
                     "GIT_COMMITTER_NAME": "perfagent", "GIT_COMMITTER_EMAIL": "perfagent@localhost"})
    return head(worktree)


def head(worktree: Path) -> str:
    return gitsafe.git(worktree, "rev-parse", "--verify", "HEAD").strip()
