"""Where a run's code runs: the target's interpreter, the sandbox's limits (with its isolation and the count of
child processes), the run's worktrees and temporary folders, and the project's rebuild command. The loop builds one
and hands it to each phase, so no phase reaches for a global."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from perfagent.sandbox.run import Limits, run_shell
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

    def tmpdir(self, name: str) -> Path:
        return self.workspaces.tmpdir(name)

    def rebuild(self, worktree: Path) -> str | None:
        """Run the rebuild command in `worktree`; None when it worked (or there is none), else its output."""
        return run_shell(self.rebuild_cmd, worktree, self.python, self.limits) if self.rebuild_cmd else None

    @contextmanager
    def scratch(self, commit: str, changed: dict[str, str] | None = None) -> Iterator[Path]:
        """A throw-away worktree at `commit` with `changed` written over it, removed afterwards."""
        path = self.workspaces.scratch(commit)
        try:
            write_files(path, changed or {})
            yield path
        finally:
            self.workspaces.discard(path)
