"""Git on worktrees whose files sandboxed code may have written: the one way perfagent runs git on them.

A candidate's code runs in a worktree and can rewrite the worktree's `.git` pointer file (`gitdir: ...`) to point at
a folder of its own, whose config makes git run programs (core.fsmonitor, hooks, core.hooksPath). Any git command
that finds its repository through that pointer would run them as the user, outside the sandbox. So no command here
lets git discover anything: each pins --git-dir to the worktree's administrative folder (<common git dir>/worktrees/
<name>), recorded when perfagent created the worktree and never read back from its `.git` file, and --work-tree to
the worktree. What the sandbox can still reach, and why it runs nothing:
- config: every file git reads (system, global, the repository's, the administrative folder's) is outside the
  worktree; the worktree's own `.git` (a file, or a folder the code made) is never read;
- hooks are the repository's own, and off all the same (perfagent's commits never ran them);
- core.fsmonitor is off, so no monitor configured for the repository starts on a candidate's files;
- a `.gitattributes` in the worktree can name a filter or diff driver, but only one the user's own config defines;
- a `.git` in a subfolder (where a submodule would be) is read only by commands that recurse into submodules: off.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

_SAFE = ("-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null", "-c", "submodule.recurse=false")

_lock = threading.Lock()
_admin: dict[str, Path] = {}  # worktree (absolute path) -> its administrative folder


class GitError(RuntimeError):
    pass


def _key(tree: Path) -> str:
    return os.path.abspath(tree)


def _run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
         errors: str = "surrogateescape") -> subprocess.CompletedProcess:
    return subprocess.run(["git", *_SAFE, *args], cwd=cwd, env={**os.environ, **env} if env else None,
                          capture_output=True, encoding="utf-8", errors=errors)


def _checked(result: subprocess.CompletedProcess) -> str:
    if result.returncode:
        command = " ".join(a for a in result.args[1 + len(_SAFE):] if not a.startswith(("--git-dir=", "--work-tree=")))
        raise GitError(f"git {command} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def add_worktree(common: Path, path: Path, commit: str, branch: str | None = None) -> None:
    """`git worktree add` of the repository whose common git folder is `common`: at `path`, detached at `commit`, or
    on a new `branch` starting there. Records the worktree's administrative folder before any code runs in it."""
    start = ["-b", branch] if branch else ["--detach"]
    _checked(_run([f"--git-dir={common}", "worktree", "add", "--quiet", *start, str(path), commit]))
    pointer = os.path.realpath(Path(path) / ".git")
    for admin in (Path(common) / "worktrees").iterdir():  # named after the folder, with a number when that is taken
        try:
            if os.path.realpath((admin / "gitdir").read_text().strip()) == pointer:
                with _lock:
                    _admin[_key(path)] = admin
                return
        except OSError:
            continue
    raise GitError(f"git made no administrative folder for the worktree {path}")


def admin_folder(tree: Path) -> Path:
    """The git folder of `tree`: the administrative folder recorded when perfagent made it, or, for a repository
    perfagent did not make, its own `.git` folder (a real folder: a pointer file or a link is never followed)."""
    with _lock:
        admin = _admin.get(_key(tree))
    if admin is not None:
        return admin
    own = Path(tree) / ".git"
    if own.is_dir() and not own.is_symlink():
        return own
    raise GitError(f"{tree} is not a worktree perfagent made, nor a repository's top folder")


def run(tree: Path, *args: str, env: dict[str, str] | None = None,
        errors: str = "surrogateescape") -> subprocess.CompletedProcess:
    """`git args` on `tree`, pinned to its git folder (see admin_folder), in `tree`; its outcome, whatever it is
    (`errors`: how undecodable output is read)."""
    return _run([f"--git-dir={admin_folder(tree)}", f"--work-tree={tree}", *args], cwd=tree, env=env, errors=errors)


def git(tree: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`git args` on `tree` as run() runs it: its output, or a GitError."""
    return _checked(run(tree, *args, env=env))


def submodules(tree: Path) -> dict[str, str]:
    """The submodules `tree`'s index records (its checked-out commit's, in a fresh worktree): path -> commit."""
    return gitlinks(git(tree, "ls-files", "-z", "--stage"))


def gitlinks(stage: str) -> dict[str, str]:
    """path -> commit of the submodules in `git ls-files -z --stage` output."""
    return {entry.split("\t", 1)[1]: entry.split()[1] for entry in stage.split("\0") if entry.startswith("160000 ")}


def remove_worktrees(trees: list[Path]) -> None:
    """Delete worktrees perfagent made, then git's records of them (`worktree prune`): git never looks inside them,
    where `worktree remove` would read their `.git` pointers."""
    with _lock:
        admins = [admin for admin in (_admin.pop(_key(tree), None) for tree in trees) if admin is not None]
    for tree in trees:
        shutil.rmtree(tree, ignore_errors=True)
    for common in dict.fromkeys(admin.parent.parent for admin in admins):
        prune(common)


def prune(common: Path) -> None:
    """Drop git's records of the worktrees of `common` whose folders are gone."""
    _run([f"--git-dir={common}", "worktree", "prune"])
