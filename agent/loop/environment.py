"""Where a run's code runs: the target's interpreter, the sandbox's limits (with its isolation and the count of
child processes), the run's worktrees and temporary folders, and the project's build (repos/builds.py: rebuild-cmd,
or the command its files declare). The loop builds one and hands it to each phase, so no phase reaches for a
global."""
from __future__ import annotations

import stat
import time
from contextlib import contextmanager
from importlib.machinery import EXTENSION_SUFFIXES
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from perfagent.localize import compiled
from perfagent.repos.builds import MESON, Build, detect, first_error, inherit
from perfagent.sandbox import gitsafe
from perfagent.sandbox.bytecode import compile_stale, copy_caches
from perfagent.sandbox.run import Limits, run_shell
from perfagent.sandbox.tree import Snapshot, snapshot
from perfagent.sandbox.workspace import Workspaces


def write_files(worktree: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (worktree / path).parent.mkdir(parents=True, exist_ok=True)
        (worktree / path).write_text(text)


@dataclass
class Environment:
    python: str
    limits: Limits
    workspaces: Workspaces
    rebuild_cmd: str | None = None  # compiled extensions: the user's command, run after a change that needs it
    ready: dict[Path, Snapshot] = field(default_factory=dict)  # worktree -> its files when rebuild() last made it ready
    # (or scratch() made it as the branch worktree was then)
    build: Build | None = None  # detected at the first rebuild: the unmodified code's (build files are protected)
    build_seconds: dict[Path, float | None] = field(default_factory=dict)  # worktree -> its last rebuild's build
    # command time, None when no command ran (nothing to build, or only Python files changed since its last build)

    def tmpdir(self, name: str) -> Path:
        return self.workspaces.tmpdir(name)

    def rebuild(self, worktree: Path) -> str | None:
        """Make `worktree` ready to run after a change to its code: the build command when a file it builds changed
        since its last build (any file but Python source), then the bytecode of its Python files
        (sandbox/bytecode.py); None when it worked, else the build's first error (repos/builds.py first_error) and
        the command's output."""
        self.build = self.build or detect(worktree, self.python, self.rebuild_cmd)
        changed = self._changed_files(worktree)
        self.build_seconds[worktree] = None
        unbuilt = sorted(path for path in changed or () if compiled.suffix(path) in compiled.SUFFIXES)
        if self.build.system == MESON and unbuilt:
            return (f"{unbuilt[0]}: perfagent cannot build this repository's extensions in a worktree "
                    f"({self.build.system}): give rebuild-cmd")
        if self.build.needed(changed):
            start = time.perf_counter()
            failed = run_shell(self.build.command, worktree, self.python, self.limits,
                               lambda output: first_error(output, worktree))
            self.build_seconds[worktree] = time.perf_counter() - start
            if failed:
                self.ready.pop(worktree, None)  # what the failed build left is no state to build on
                return failed
        compile_stale(worktree, self.python, self.limits)
        self.ready[worktree] = snapshot(worktree)
        return None

    def adopt(self, worktree: Path) -> None:
        """When the repository builds extensions, start the fresh `worktree` as the user's checkout is built: the
        build products git ignores there, and its files' times (builds.inherit), so that the first rebuild builds only
        what differs instead of everything. Files git does not ignore are not taken: uncommitted work is not the run's
        code. A checkout that does not look built (_up_to_date) is not vouched for: the first rebuild runs the build."""
        self.build = self.build or detect(worktree, self.python, self.rebuild_cmd)
        if self.build.command is None:
            return
        repo = self.workspaces.repo
        tracked = set(repo.git.ls_files("-z").split("\0"))
        ignored = set(repo.git.ls_files("-z", "--others", "--ignored", "--exclude-standard").split("\0"))
        built = snapshot(Path(repo.working_tree_dir))
        # a submodule's files are the checkout's code too (a build may need them: astropy_helpers), not its git folder
        nested = tuple(f"{path}/" for path in gitsafe.gitlinks(repo.git.ls_files("-z", "--stage")))
        kept = {p: e for p, e in built.entries.items() if p in tracked or p in ignored or stat.S_ISDIR(e[0])
                or p.startswith(nested) and ".git" not in p.split("/")}
        if inherit(Snapshot(built.root, kept), worktree) and _up_to_date(kept, tracked, ignored):
            self.ready[worktree] = snapshot(worktree)

    def take_build(self, built: Path, worktree: Path) -> None:
        """`worktree` (the branch, a candidate's change just written there), whose sources are now those of the
        worktree `built` (the candidate's), takes its build products and times (builds.inherit over the files git
        tracks there) instead of building them again; the next rebuild() then builds nothing, or what still differs."""
        if built in self.ready and self.build is not None and self.build.command is not None:
            tracked = set(gitsafe.git(worktree, "ls-files", "-z").split("\0")) - {""}
            if inherit(self.ready[built], worktree, tracked):
                self.ready[worktree] = snapshot(worktree)

    def written(self, worktree: Path) -> set[str]:
        """Paths created, changed or deleted in `worktree` since rebuild() last made it ready."""
        return self.ready[worktree].changes(snapshot(worktree))

    def _changed_files(self, worktree: Path) -> set[str] | None:
        """The files (not folders) changed in `worktree` since it was last ready; None when it never was."""
        if worktree not in self.ready:
            return None
        now = snapshot(worktree)
        return {path for path in self.ready[worktree].changes(now)
                if not stat.S_ISDIR((now.entries.get(path) or self.ready[worktree].entries[path])[0])}

    @contextmanager
    def scratch(self, commit: str, changed: dict[str, str] | None = None) -> Iterator[Path]:
        """A throw-away worktree at `commit` with `changed` written over it, removed afterwards. It starts as the
        branch worktree was when last ready: its bytecode and build products, and its files' times, so that rebuild()
        compiles and builds only what differs (repos/builds.py inherit)."""
        path = self.workspaces.scratch(commit)
        try:
            built = self.ready.get(self.workspaces.branch_tree)
            if built is not None:
                copy_caches(built, path)
                if inherit(built, path):
                    self.ready[path] = snapshot(path)
            write_files(path, changed or {})
            yield path
        finally:
            self.ready.pop(path, None)
            self.build_seconds.pop(path, None)
            self.workspaces.discard(path)


def _up_to_date(entries: dict[str, tuple], tracked: set[str], ignored: set[str]) -> bool:
    """Whether a checkout (its snapshot `entries`) looks built: it has extension modules (bytecode and caches are no
    build), and none of its compiled sources changed after the newest of them (a .pyx edited and never built)."""
    modules = [e[3] for p, e in entries.items() if p in ignored and p.endswith(tuple(EXTENSION_SUFFIXES))]
    sources = [e[3] for p, e in entries.items() if p in tracked and compiled.suffix(p) in compiled.SUFFIXES]
    return bool(modules) and all(mtime <= max(modules) for mtime in sources)
