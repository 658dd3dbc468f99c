"""The bytecode of a worktree's Python files, compiled by perfagent itself before any child runs there.

Children never write bytecode (PYTHONDONTWRITEBYTECODE=1, see run.child_env), so no legitimate run writes under
`__pycache__` and any change there is a write by the code (a disk cache, say, which tree.py finds). Imports stay fast
because perfagent compiles the files first, with the target's interpreter, in the sandbox like every child. The pycs
are checked-hash ones (valid whatever the checkout's mtimes), so those of the run's branch worktree serve every
candidate's: a new worktree gets a copy of them (never a hard link, through which its code could write the branch's),
and only what is missing or stale there is compiled.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from perfagent.sandbox.run import Limits, child_env, run

_SCRIPT = Path(__file__).with_name("compile_stale.py")


def compile_stale(worktree: Path, python: str, limits: Limits) -> None:
    """Compile the Python files of `worktree` whose bytecode is missing or stale. Isolated mode (-I): neither the
    worktree nor this script's folder is on its path. A failure only leaves imports slower, so it is not an error."""
    run([python, "-I", str(_SCRIPT)], cwd=worktree, env=child_env(), limits=limits)


def copy_caches(source: Path, target: Path) -> None:
    """Copy each `__pycache__` folder of worktree `source` into worktree `target`, where its package's folder is.
    Links are copied as links, never followed: code that ran in `source` could have made one lead anywhere."""
    for folder, dirs, _ in os.walk(source):
        if "__pycache__" not in dirs:
            continue
        dirs.remove("__pycache__")
        into = target / Path(folder).relative_to(source)
        if not os.path.islink(os.path.join(folder, "__pycache__")) and into.is_dir() and not into.is_symlink():
            shutil.copytree(Path(folder) / "__pycache__", into / "__pycache__", symlinks=True, dirs_exist_ok=True,
                            copy_function=shutil.copyfile)
