"""How strongly untrusted processes are shut in, from strongest to weakest:

- "bubblewrap": `bwrap` with every namespace unshared (no network, own PID namespace), the whole file system
  read-only, a private /tmp, credentials in the home folder hidden, and only the workspace and declared output
  folders writable;
- "landlock": user, network, mount and PID namespaces (`unshare`), then Landlock: the file system may be written only
  in the workspace, the declared output folders and the child's own temporary folder, credentials in the home folder
  cannot be read, and no signal reaches a process outside; needs no package and no root;
- "unshare": the same namespaces without Landlock (no network; the file system is not protected);
- "rlimits": resource limits and a process group only.

Independently, a pids cgroup (v2, or v1's pids hierarchy) caps the number of processes when the cgroup file system is
writable; otherwise RLIMIT_NPROC does, except for root, whom the kernel exempts from it. Every child starts through
sandbox/launch.py, which sets all of this up inside the fresh process before exec.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from perfagent.sandbox import scratch
from perfagent.sandbox.monitor import CREDENTIAL_FILES  # credentials in the home folder

LEVELS = ("bubblewrap", "landlock", "unshare", "rlimits")
# what each level protects, beyond the limits every level sets; tests/test_sandbox.py tries each claim at each level
FILES, NETWORK, PROCESSES, CREDENTIALS = "files", "network", "processes", "credentials"
PROTECTS = {"bubblewrap": (FILES, NETWORK, PROCESSES, CREDENTIALS),
            "landlock": (FILES, NETWORK, PROCESSES, CREDENTIALS),
            "unshare": (NETWORK, PROCESSES),
            "rlimits": ()}
_PERFAGENT_SOURCE = Path(__file__).resolve().parent.parent
_LAUNCH = Path(__file__).resolve().with_name("launch.py")
# user, network, mount and PID namespaces; /proc remounted for the new PID namespace (py-spy finds its child there)
_UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--mount-proc", "--fork", "--kill-child"]
_counter = itertools.count()


class IsolationError(RuntimeError):
    pass


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@lru_cache(maxsize=None)
def available(level: str) -> bool:
    if level == "bubblewrap":
        return bool(shutil.which("bwrap")) and _works(
            ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc", "true"])
    if level == "unshare":
        return bool(shutil.which("unshare")) and _works([*_UNSHARE, "true"])
    if level == "landlock":
        return available("unshare") and _works(Isolation("landlock").wrap(["true"], Path.cwd(), []))
    return level == "rlimits"


def launcher(steps: dict[str, object]) -> list[str]:
    """The argv prefix that applies `steps` (see sandbox/launch.py) to a fresh process, then execs what follows."""
    args = [f"{name}={':'.join(map(str, v)) if isinstance(v, tuple) else json.dumps(v) if isinstance(v, dict) else v}"
            for name, v in steps.items()]
    return [sys.executable, "-I", "-S", str(_LAUNCH), *args, "--"]


@lru_cache(maxsize=None)
def _empty_file() -> Path:
    """An empty file to mount over credential files (a device node would not open on the nodev mounts)."""
    path = scratch.folder() / "empty"
    path.touch(0o444)
    return path




@dataclass(frozen=True)
class Isolation:
    level: str

    def describe(self) -> str:
        limit = "processes capped by a pids cgroup" if cgroup_root() else (
            "processes capped by RLIMIT_NPROC" if os.geteuid() != 0 else "NO process cap (root, no writable cgroup)")
        what = {"bubblewrap": "no network, read-only file system except the workspace, private /tmp, "
                              "credentials hidden",
                "landlock": "no network, own PID namespace, writes only in the workspace (Landlock), "
                            "credentials hidden",
                "unshare": "no network, own PID namespace; the file system is NOT protected",
                "rlimits": "resource limits only: network and file system are NOT protected"}[self.level]
        return f"{self.level} ({what}; {limit})"

    def wrap(self, argv: list[str], cwd: Path, writable: list[Path], readable: list[Path] = ()) -> list[str]:
        if self.level == "bubblewrap":
            return self._bwrap(argv, cwd, writable, readable)
        if self.level == "landlock":
            import landlockpy  # a Linux-only dependency, needed here only

            rules = {"read": _readable_roots(), "write": [str(p) for p in [cwd, *writable, *_DEVICES]],
                     "site": str(Path(landlockpy.__file__).parents[1])}
            return [*_UNSHARE, "--", *launcher({"landlock": rules}), *argv]
        if self.level == "unshare":
            return [*_UNSHARE, "--", *argv]
        return argv

    @staticmethod
    def _bwrap(argv: list[str], cwd: Path, writable: list[Path], readable: list[Path]) -> list[str]:
        args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-all", "--hostname", "sandbox",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for secret in (Path.home() / name for name in CREDENTIAL_FILES):
            if secret.is_dir():
                args += ["--tmpfs", str(secret)]
            elif secret.exists():
                args += ["--ro-bind", str(_empty_file()), str(secret)]
        for path in dict.fromkeys(p.resolve() for p in [*readable, *_programs_in_tmp(argv)]):
            args += ["--ro-bind", str(path), str(path)]
        for path in dict.fromkeys(p.resolve() for p in [cwd, *writable]):
            args += ["--bind", str(path), str(path)]
        return [*args, "--chdir", str(Path(cwd).resolve()), "--", *argv]


_DEVICES = [Path("/dev/null"), Path("/dev/zero"), Path("/dev/full"), Path("/dev/shm")]  # shm: multiprocessing's locks


def _readable_roots() -> list[str]:
    """Everything but the credentials in the home folder: Landlock only grants, so each folder on the way to a
    credential is replaced by its other entries. Symbolic links get no rule of their own (one would grant its
    target): what they lead to is readable under the target's own rule."""
    hidden = {path.resolve() for path in (Path.home() / name for name in CREDENTIAL_FILES) if os.path.lexists(path)}
    roots: list[str] = []

    def grant(folder: Path) -> None:
        if not any(h.is_relative_to(folder) for h in hidden):
            roots.append(str(folder))
            return
        try:
            entries = list(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry not in hidden and not entry.is_symlink():
                grant(entry)

    grant(Path("/"))
    return roots


def _programs_in_tmp(argv: list[str]) -> list[Path]:
    """What the sandbox's private /tmp would hide but the child needs: perfagent itself, its interpreter, and the
    programs (and their virtual environments) named on the command line, when they live under /tmp."""
    tmp = Path("/tmp")
    paths = [Path(sys.prefix), Path(sys.base_prefix), _PERFAGENT_SOURCE]
    for arg in argv:
        program = Path(arg)
        if program.is_absolute() and program.exists():
            folder = program.parent
            paths.append(folder.parent if folder.name == "bin" else folder)  # a virtual environment's root
    return [p for p in paths if p.resolve().is_relative_to(tmp) and p.exists()]


def choose(requested: str = "auto") -> Isolation:
    """The isolation level runs get (through their Limits); "auto" takes the strongest one that works here."""
    if requested == "auto":
        return Isolation(next(level for level in LEVELS if available(level)))
    if requested not in LEVELS:
        raise IsolationError(f"unknown isolation level {requested!r}: use auto, {', '.join(LEVELS)}")
    if not available(requested):
        hint = " (install the bubblewrap package)" if requested == "bubblewrap" else ""
        raise IsolationError(f"isolation level {requested!r} does not work on this machine{hint}")
    return Isolation(requested)


# -- process count ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def cgroup_root() -> Path | None:
    """A writable pids cgroup below our own (v2, or the v1 pids hierarchy), or None."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path
    candidates = []
    if "pids" in own:
        candidates.append(Path("/sys/fs/cgroup/pids") / own["pids"].lstrip("/"))
    if "" in own:
        candidates += [Path("/sys/fs/cgroup") / own[""].lstrip("/"), Path("/sys/fs/cgroup/unified") / own[""].lstrip("/")]
    for base in candidates:
        probe = base / f"perfagent-probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        ok = (probe / "pids.max").exists()
        probe.rmdir()
        if ok:
            return base
    return None


class ProcessCap:
    """A pids cgroup for one child and all its descendants: caps their number, and finds them all to kill."""

    def __init__(self, max_processes: int):
        root = cgroup_root()
        self.path = root / f"perfagent-{os.getpid()}-{next(_counter)}" if root else None
        self.max_processes = max_processes
        if self.path:
            self.path.mkdir()
            (self.path / "pids.max").write_text(str(max_processes))

    def steps(self) -> dict:
        """What sandbox/launch.py does in the child: join the cgroup, or fall back to RLIMIT_NPROC."""
        if self.path:
            return {"cgroup": str(self.path)}
        return {"nproc": self.max_processes} if os.geteuid() != 0 else {}

    def close(self) -> None:
        """Kill whatever is still in the cgroup (daemons that left the process group too) and remove it."""
        if not self.path:
            return
        procs = self.path / "cgroup.procs"
        for _ in range(100):
            pids = [int(p) for p in procs.read_text().split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        try:
            self.path.rmdir()
        except OSError as exc:
            print(f"perfagent: could not remove {self.path}: {exc}", file=sys.stderr)
