"""Where batch and evaluate get each task's code: one local clone or mirror per repository (the repository cache),
and a detached worktree of it per task at the task's base commit. Nothing is ever cloned from the network."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import git

from agent import examples
from agent.record import file_lock
from sandbox.workspace import remove_stale

_PREFIX = "perfagent-task-"  # worktree folders; remove_stale() in sandbox.workspace clears dead runs' ones
_OWNER = "owner.pid"


class RepoError(RuntimeError):
    pass


def _git(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise RepoError(f"git {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


class RepoCache:
    """A folder of git clones or mirrors, found by name: `owner__name`, `owner__name.git`, `owner+name/repo`
    (the layout `fetch` makes), `owner/name` or `name`. Bundled example repositories are built into it on first use."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            raise RepoError(f"the repository cache {self.root} is not a folder")

    def _candidates(self, repo: str) -> list[Path]:
        owner, name = repo.split("/", 1)
        r = self.root
        return [r / f"{owner}__{name}", r / f"{owner}__{name}.git", r / f"{owner}+{name}" / "repo",
                r / f"{owner}+{name}", r / owner / name, r / owner / f"{name}.git", r / name, r / f"{name}.git"]

    def locate(self, repo: str) -> Path:
        for path in self._candidates(repo):
            if path.is_dir() and subprocess.run(["git", "-C", str(path), "rev-parse", "--git-dir"],
                                                capture_output=True).returncode == 0:
                return path
        owner, name = repo.split("/", 1)
        if owner == examples.OWNER and name in examples.names():
            dest = self.root / f"{owner}__{name}"
            with file_lock(self.root / f".{owner}__{name}.lock"):
                if not dest.exists():
                    examples.build(name, dest)
            return dest
        raise RepoError(f"{repo} is not in the repository cache {self.root}; clone it there once, e.g. "
                        f"`git clone --mirror https://github.com/{repo} {self.root / (owner + '__' + name + '.git')}`")

    @contextmanager
    def checkout(self, repo: str, commit: str):
        """A detached worktree of `repo` at `commit`, removed afterwards (also a killed run's, on the next use)."""
        source = self.locate(repo)
        try:
            full = _git("rev-parse", "--verify", f"{commit}^{{commit}}", cwd=source).strip()
        except RepoError:
            raise RepoError(f"commit {commit} is not in {source}: fetch it there (`git -C {source} fetch`)") from None
        folder = Path(tempfile.mkdtemp(prefix=_PREFIX))
        (folder / _OWNER).write_text(str(os.getpid()))
        worktree = folder / "repo"
        lock = self.root / f".{source.name}.lock"
        try:
            with file_lock(lock):
                remove_stale(git.Repo(source))
                _drop_orphan_branches(source)
                _git("worktree", "add", "--detach", str(worktree), full, cwd=source)
            yield worktree
        finally:
            with file_lock(lock):
                subprocess.run(["git", "-C", str(source), "worktree", "remove", "--force", str(worktree)],
                               capture_output=True)
                subprocess.run(["git", "-C", str(source), "worktree", "prune"], capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)


def _drop_orphan_branches(source: Path) -> None:
    """Delete perfagent/* branches no worktree has checked out: a live run's branch always has its worktree, so these
    are left by killed batch tasks (the cache belongs to perfagent; a user's own repository is never swept)."""
    listing = _git("worktree", "list", "--porcelain", cwd=source)
    checked_out = {line.split(" ", 1)[1].removeprefix("refs/heads/") for line in listing.splitlines()
                   if line.startswith("branch ")}
    for branch in _git("for-each-ref", "--format=%(refname:short)", "refs/heads/perfagent/", cwd=source).split():
        if branch not in checked_out:
            _git("branch", "-D", branch, cwd=source)


def apply_patch(worktree: Path, patch: str) -> str | None:
    """Apply a unified diff with `git apply`; None when it applied, else why not."""
    if not patch.strip():
        return "the patch is empty"
    result = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=worktree, input=patch, text=True,
                            capture_output=True)
    return None if result.returncode == 0 else (result.stderr.strip() or "git apply failed")


def diff(worktree: Path, base: str, head: str) -> str:
    return _git("diff", "--no-color", "--no-ext-diff", base, head, cwd=worktree)
