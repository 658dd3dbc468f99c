"""Where a run's code runs: the target's interpreter, the sandbox's limits (with its isolation and the count of
child processes), the run's worktrees and temporary folders, and the project's rebuild command. The loop builds one
and hands it to each phase, so no phase reaches for a global."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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
    rebuild_cmd: str | None = None  # compiled extensions: run after every change to the code
    ready: dict[Path, Snapshot] = field(default_factory=dict)  # worktree -> its files when rebuild() last made it ready

    def tmpdir(self, name: str) -> Path:
        return self.workspaces.tmpdir(name)

    def rebuild(self, worktree: Path) -> str | None:
        """Make `worktree` ready to run after a change to its code: the rebuild command, then the bytecode of its
        Python files (sandbox/bytecode.py); None when it worked, else the rebuild command's output."""
        failed = run_shell(self.rebuild_cmd, worktree, self.python, self.limits) if self.rebuild_cmd else None
        if failed:
            return failed
        compile_stale(worktree, self.python, self.limits)
        self.ready[worktree] = snapshot(worktree)
        return None

    def written(self, worktree: Path) -> set[str]:
        """Paths created, changed or deleted in `worktree` since rebuild() last made it ready."""
        return self.ready[worktree].changes(snapshot(worktree))

    @contextmanager
    def scratch(self, commit: str, changed: dict[str, str] | None = None) -> Iterator[Path]:
        """A throw-away worktree at `commit` with `changed` written over it, removed afterwards. It starts with a copy
        of the branch worktree's bytecode, so that rebuild() compiles only what differs."""
        path = self.workspaces.scratch(commit)
        try:
            if self.workspaces.branch_tree in self.ready:
                copy_caches(self.ready[self.workspaces.branch_tree], path)
            write_files(path, changed or {})
            yield path
        finally:
            self.ready.pop(path, None)
            self.workspaces.discard(path)
