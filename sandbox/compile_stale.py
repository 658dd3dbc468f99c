"""Run by the target's interpreter in a worktree, in the sandbox (see sandbox/bytecode.py): compile every Python file
under the current folder whose checked-hash bytecode is missing or stale. The standard library only: the target's
interpreter need not have perfagent."""
import importlib.util
import os
import py_compile
from concurrent.futures import ProcessPoolExecutor

_CHECKED_HASH = (0b11).to_bytes(4, "little")  # a pyc's flags: hash-based, checked against the source (PEP 552)
_MANY = 64  # files worth starting a process per core for


def sources(root: str):
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".py") and not os.path.islink(path):
                yield path


def stale(path: str) -> bool:
    """No bytecode for `path`, or bytecode of another interpreter, kind or source."""
    try:
        with open(path, "rb") as f:
            source = f.read()
        with open(importlib.util.cache_from_source(path), "rb") as f:
            header = f.read(16)
    except OSError:
        return True
    return header != importlib.util.MAGIC_NUMBER + _CHECKED_HASH + importlib.util.source_hash(source)


def build(path: str) -> None:
    py_compile.compile(path, doraise=False, quiet=2, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)


def main() -> None:
    todo = [path for path in sources(os.getcwd()) if stale(path)]
    cores = len(os.sched_getaffinity(0))
    if len(todo) < _MANY or cores < 2:
        for path in todo:
            build(path)
        return
    with ProcessPoolExecutor(cores) as pool:
        for _ in pool.map(build, todo, chunksize=16):
            pass


if __name__ == "__main__":
    main()
