"""What does not change between runs on the same code: baseline test outcomes, the coverage map, and the workload's
baseline measurements. Each entry is a JSON file under `~/.cache/perfagent/baseline`, named by a digest of everything
it depends on (commit, interpreter and its installed packages, test file or workload, the CPUs it may use), so a
changed input is a miss, never a stale hit. Batch runs keep their repositories and environments in the same folder."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


def default_root() -> Path:
    """perfagent's cache folder: $XDG_CACHE_HOME/perfagent, by default ~/.cache/perfagent."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "perfagent"


_PROBE = ("import sys, importlib.metadata as m; print(sys.version); print(sys.prefix); "
          "print('\\n'.join(sorted(f'{d.metadata[\"Name\"]}=={d.version}'.lower() for d in m.distributions())))")


class InterpreterError(RuntimeError):
    """The target's interpreter does not run, or lacks what perfagent needs in it."""


@dataclass(frozen=True)
class Interpreter:
    python: str
    fingerprint: str  # digest of its version, prefix and installed packages
    packages: frozenset[str]  # installed distribution names, lower case

    def require(self, *names: str, why: str) -> None:
        missing = [n for n in names if n not in self.packages]
        if missing:
            raise InterpreterError(f"{self.python} has no {', '.join(missing)}, which {why}: install it with "
                                   f"`{self.python} -m pip install {' '.join(missing)}`")


@lru_cache(maxsize=None)
def interpreter(python: str) -> Interpreter:
    """Ask the target's interpreter (the user's own, not candidate code) what it is and holds."""
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InterpreterError(f"cannot run the interpreter {python}: {exc}") from None
    if out.returncode:
        raise InterpreterError(f"the interpreter {python} fails: {out.stderr.strip()[-500:]}")
    packages = frozenset(line.split("==", 1)[0] for line in out.stdout.splitlines()[2:])
    return Interpreter(python, hashlib.sha256(out.stdout.encode()).hexdigest()[:16], packages)


FORMAT = 3  # raised when entries change shape (2: the runs' behaviour; 3: result digests), so older entries miss


class BaselineCache:
    """get/put JSON values by key parts; `root=None` (--no-cache) keeps nothing."""

    def __init__(self, root: Path | None):
        self.root = Path(root).expanduser() / "baseline" if root else None
        self.hits = 0

    @staticmethod
    def _key(parts: tuple) -> list:
        """An entry's key: `parts`, and how many CPUs this process may use. What a run does depends on them: thread
        pools (OpenBLAS's, OpenMP's) size themselves to them, and the behaviour monitor counts threads, so a baseline
        measured in a batch worker pinned to one core is no reference for a run on two."""
        return json.loads(json.dumps([len(os.sched_getaffinity(0)), *parts]))

    def _path(self, key: list) -> Path:
        digest = hashlib.sha256(json.dumps([FORMAT, key], sort_keys=True).encode()).hexdigest()[:32]
        return self.root / f"{digest}.json"

    def get(self, *parts) -> dict | None:
        if self.root is None:
            return None
        key = self._key(parts)
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if entry.get("key") != key:  # a digest collision or a foreign file
            return None
        self.hits += 1
        return entry["value"]

    def put(self, value: dict, *parts) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        key = self._key(parts)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"key": key, "value": value}, f)
        os.replace(tmp, self._path(key))  # readers see the old entry or the new one, never half of one
