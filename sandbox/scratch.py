"""perfagent's own temporary folder, one per process: the sandbox's children keep their private folders in it, and it
is removed at exit. A process killed outright (SIGKILL) cannot remove it; the next perfagent process removes the
folders of processes that are gone."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

_PREFIX = "perfagent-tmp-"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_dead() -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*"):
        pid = path.name[len(_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


@lru_cache(maxsize=None)
def folder() -> Path:
    """This process's folder (created on first use, after removing the dead ones')."""
    _remove_dead()
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
    atexit.register(shutil.rmtree, path, True)
    return path
