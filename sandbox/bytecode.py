"""The bytecode of a worktree's Python files, compiled by perfagent itself before any child runs there.

Children never write bytecode (PYTHONDONTWRITEBYTECODE=1, see run.child_env), so no legitimate run writes under
`__pycache__` and any change there is a write by the code (a disk cache, say, which tree.py finds). Imports stay fast
because perfagent compiles the files first, with the target's interpreter, in the sandbox like every child. The pycs
are checked-hash ones (valid whatever the checkout's mtimes), so those of the run's branch worktree serve every
candidate's: a new worktree gets a copy of them (never a hard link, through which its code could write the branch's),
and only what is missing or stale there is compiled.
"""
from __future__ import annotations

import shutil
import stat
from pathlib import Path

from perfagent.sandbox.run import Limits, child_env, run
from perfagent.sandbox.tree import Snapshot

_SCRIPT = Path(__file__).with_name("compile_stale.py")


def compile_stale(worktree: Path, python: str, limits: Limits) -> None:
    """Compile the Python files of `worktree` whose bytecode is missing or stale. Isolated mode (-I): neither the
    worktree nor this script's folder is on its path. A failure only leaves imports slower, so it is not an error."""
    run([python, "-I", str(_SCRIPT)], cwd=worktree, env=child_env(), limits=limits)


def copy_caches(compiled: Snapshot, target: Path) -> None:
    """Copy into worktree `target` the bytecode of the worktree `compiled` was taken of, right after perfagent compiled
    it there: only the files still as they were then, so nothing code wrote there since (a pyc of its own, a link
    leading anywhere) reaches another worktree."""
    for path, was in compiled.entries.items():
        parts = path.split("/")
        if len(parts) < 2 or parts[-2] != "__pycache__" or not stat.S_ISREG(was[0]) or not compiled.unchanged(path):
            continue
        folder = target.joinpath(*parts[:-1])
        if folder.parent.is_dir() and not folder.parent.is_symlink():
            folder.mkdir(exist_ok=True)
            shutil.copyfile(compiled.root / path, folder / parts[-1])
