"""Where batch and evaluate get each task's code: one local clone or mirror per repository (the repository cache),
and a detached worktree of it per task at the task's base commit, its git submodules filled from the cache too (a
build often needs them: astropy's astropy_helpers, numpy's vendored meson). Nothing is ever cloned from the network.
Code runs in those worktrees, so git runs on them only through sandbox/gitsafe.py."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git

from perfagent.repos import examples
from perfagent.repos.diffs import DiffError, patched_files
from perfagent.record import file_lock
from perfagent.sandbox import gitsafe
from perfagent.sandbox.workspace import remove_stale

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
        worktree, common = folder / "repo", None
        lock = self.root / f".{source.name}.lock"
        try:
            with file_lock(lock):
                repo = git.Repo(source)
                remove_stale(repo)
                _drop_orphan_branches(source)
                common = Path(repo.common_dir).resolve()
                gitsafe.add_worktree(common, worktree, full)
            self._fill_submodules(worktree)
            yield worktree
        finally:
            with file_lock(lock):
                gitsafe.remove_worktrees([worktree])
                shutil.rmtree(folder, ignore_errors=True)
                if common is not None:  # a signal inside `git worktree add` leaves a record nothing else prunes
                    gitsafe.prune(common)

    def _fill_submodules(self, worktree: Path) -> None:
        """Put each submodule's files at its recorded commit into `worktree` (as `git submodule update` would, but
        from the cache's mirror of its repository and without a .git of its own: the task's git sees an unpopulated
        submodule and leaves its files alone). One whose repository or commit the cache lacks stays empty, and a build
        that needs it fails with its own error."""
        urls = _submodule_urls(worktree)
        for path, commit in gitsafe.submodules(worktree).items():
            repo = _github_name(urls.get(path, ""))
            try:
                mirror = self.locate(repo) if repo else None
            except RepoError:
                mirror = None
            if mirror is None or subprocess.run(["git", "-C", str(mirror), "cat-file", "-e", f"{commit}^{{commit}}"],
                                                capture_output=True).returncode:
                continue
            target = worktree / path
            inside = target.resolve().is_relative_to(worktree.resolve())  # no link on the way leads out
            if not inside or target.is_symlink() or target.exists() and not target.is_dir():
                continue
            target.mkdir(parents=True, exist_ok=True)
            archive = subprocess.Popen(["git", "-C", str(mirror), "archive", "--format=tar", commit],
                                       stdout=subprocess.PIPE)
            subprocess.run(["tar", "-x", "-C", str(target)], stdin=archive.stdout, check=True)
            archive.stdout.close()
            if archive.wait():
                raise RepoError(f"git archive of {repo} at {commit} failed in {mirror}")


def _submodule_urls(worktree: Path) -> dict[str, str]:
    """path -> URL of the submodules `worktree`'s .gitmodules declares."""
    listing = gitsafe.run(worktree, "config", "--file", ".gitmodules", "--get-regexp", r"^submodule\..*\.(path|url)$")
    fields: dict[str, dict[str, str]] = {}
    for line in listing.stdout.splitlines() if listing.returncode == 0 else []:
        key, _, value = line.partition(" ")
        name, _, field = key.removeprefix("submodule.").rpartition(".")
        fields.setdefault(name, {})[field] = value
    return {f["path"]: f["url"] for f in fields.values() if "path" in f and "url" in f}


def _github_name(url: str) -> str | None:
    """`owner/name` of a submodule's GitHub URL (https, ssh or git), the name the repository cache finds it by."""
    match = re.match(r"^(?:https?://|git://|ssh://git@|git@)github\.com[:/]([\w.-]+)/([\w.-]+?)(?:\.git)?/?$", url)
    return f"{match[1]}/{match[2]}" if match else None


def _drop_orphan_branches(source: Path) -> None:
    """Delete perfagent/* branches no worktree has checked out: a live run's branch always has its worktree, so these
    are left by killed batch tasks (the cache belongs to perfagent; a user's own repository is never swept)."""
    listing = _git("worktree", "list", "--porcelain", cwd=source)
    checked_out = {line.split(" ", 1)[1].removeprefix("refs/heads/") for line in listing.splitlines()
                   if line.startswith("branch ")}
    for branch in _git("for-each-ref", "--format=%(refname:short)", "refs/heads/perfagent/", cwd=source).split():
        if branch not in checked_out:
            _git("branch", "-D", branch, cwd=source)


GIT_APPLY = "git apply"
PATCH_FUZZ = "patch --fuzz"  # GNU patch, SWE-fficiency's fallback
_GIT_APPLY = ["git", "apply", "--allow-empty", "-v"]
# SWE-fficiency's fallback command, plus --forward: in --batch mode GNU patch otherwise un-applies a patch that looks
# reversed or already applied, and calls that success
_PATCH = ["patch", "--batch", "--forward", "--fuzz=5", "-p1", "-i"]
_LEFTOVERS = (".orig", ".rej")  # GNU patch's backups (after fuzz or offsets) and rejected hunks


@dataclass(frozen=True)
class Applied:
    """How a patch applied: `method` is GIT_APPLY, PATCH_FUZZ, or None when it did not apply (then `error` says
    why, naming each attempt); `log` keeps what the attempts printed when the fallback was needed."""
    method: str | None
    error: str = ""
    log: str = ""

    @property
    def ok(self) -> bool:
        return self.method is not None


def apply_patch(worktree: Path, patch: str) -> Applied:
    """Apply a unified diff to `worktree` as SWE-fficiency's harness does: `git apply --allow-empty -v`, and when
    that fails `patch --batch --fuzz=5 -p1` (model-written diffs often have wrong hunk line counts or stale context
    lines). The patch file is given a final newline first. GNU patch's .orig/.rej files are removed, and a patch it
    applies only in part is undone, so the worktree holds either the whole patch or none of it (a patch whose file
    names cannot be read, which could not be undone, is not given to GNU patch)."""
    if not patch.strip():
        return Applied(None, "the patch is empty")
    text = patch if patch.endswith("\n") else patch + "\n"
    with tempfile.TemporaryDirectory(prefix="perfagent-patch-") as tmp:
        file = Path(tmp) / "patch.diff"
        file.write_bytes(text.encode("utf-8", "surrogateescape"))
        first = gitsafe.run(worktree, *_GIT_APPLY[1:], str(file), errors="replace")
        if first.returncode == 0:
            return Applied(GIT_APPLY)
        git_said = _output(first, "git apply")
        if shutil.which(_PATCH[0]) is None:
            return Applied(None, f"the patch does not apply: `{' '.join(_GIT_APPLY)}` failed, and the fallback, "
                                 f"`{' '.join(_PATCH[:-1])}`, cannot run: the `patch` program (GNU patch) is not "
                                 f"installed\ngit apply: {git_said}")
        try:
            names = _names(worktree, text)
        except DiffError as exc:  # without its file names, a partly applied patch could not be undone
            return Applied(None, f"the patch does not apply: `{' '.join(_GIT_APPLY)}` failed, and the fallback, "
                                 f"`{' '.join(_PATCH[:-1])}`, is not tried: {exc}\ngit apply: {git_said}")
        before = {name: _state(worktree / name) for name in names}
        leftovers = {name + suffix for name in names for suffix in _LEFTOVERS} - names
        existed = {name for name in leftovers if (worktree / name).exists()}
        second = subprocess.run([*_PATCH, str(file)], cwd=worktree, capture_output=True, text=True,
                                errors="replace")
        for name in leftovers - existed:
            (worktree / name).unlink(missing_ok=True)
        patch_said = _output(second, "patch")
        if second.returncode == 0:
            return Applied(PATCH_FUZZ, log=f"git apply: {git_said}\npatch: {patch_said}")
        for name, state in before.items():  # undo the hunks it did apply
            _restore(worktree, name, state)
    return Applied(None, f"the patch does not apply: neither `{' '.join(_GIT_APPLY)}` nor "
                         f"`{' '.join(_PATCH[:-1])}` applies it\ngit apply: {git_said}\npatch: {patch_said}")


def _output(result: subprocess.CompletedProcess, program: str) -> str:
    lines = [line for line in (result.stderr + result.stdout).splitlines()
             if not line.startswith(("Checking patch ", "Applied patch "))]  # -v's progress lines
    return "\n".join(lines).strip() or f"{program} exited with status {result.returncode}"


def _names(worktree: Path, text: str) -> set[str]:
    """Every file a `-p1` patch may create, change, rename or delete in `worktree` (names outside the worktree are
    left out, as GNU patch refuses them). DiffError when `text` cannot be read as a unified diff."""
    root = worktree.resolve()
    names = set()
    for name in patched_files(text):
        path = (root / name).resolve()
        if path != root and root in path.parents and ".git" not in path.relative_to(root).parts:
            names.add(path.relative_to(root).as_posix())
    return names


def _state(path: Path) -> tuple[bytes, int] | None:
    return (path.read_bytes(), path.stat().st_mode) if path.is_file() and not path.is_symlink() else None


def _restore(worktree: Path, name: str, state: tuple[bytes, int] | None) -> None:
    path = worktree / name
    if _state(path) == state or path.is_symlink() or path.is_dir():
        return
    if state is None:
        path.unlink(missing_ok=True)
        for parent in path.parents:  # folders patch made for a new file
            if parent == worktree or any(parent.iterdir()):
                break
            parent.rmdir()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(state[0])
    os.chmod(path, state[1] & 0o7777)


def diff(worktree: Path, base: str, head: str) -> str:
    return gitsafe.git(worktree, "diff", "--no-color", "--no-ext-diff", "--no-textconv", base, head)
