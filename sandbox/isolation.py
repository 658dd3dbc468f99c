"""How strongly untrusted processes are shut in, from strongest to weakest:

- "bubblewrap": `bwrap` with every namespace unshared (no network, own PID namespace), the whole file system
  read-only, a private /tmp, credentials in the home folder hidden, and only the workspace and declared output
  folders writable;
- "landlock": user, network, mount and PID namespaces (`unshare`), then Landlock: the file system may be written only
  in the workspace, the declared output folders and the child's own temporary folder, credentials in the home folder
  cannot be read, and no signal reaches a process outside; needs no package and no root;
- "unshare": the same namespaces without Landlock (no network; the file system is not protected);
- "rlimits": resource limits and a process group only.

The three namespace levels give the child a /dev/shm of its own (bubblewrap's --dev; for the others, a fresh tmpfs
that sandbox/launch.py mounts inside the mount namespace), so nothing left there reaches the host or a later run; at
"rlimits" /dev/shm is the host's. Independently, the child's cgroups (sandbox/cgroups.py) cap and count its processes
and sum their CPU time. Every child starts through sandbox/launch.py, which sets all of this up inside the fresh
process before exec.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from perfagent.sandbox import scratch
from perfagent.sandbox.cgroups import pids_root
from perfagent.sandbox.monitor import CREDENTIAL_FILES  # credentials in the home folder

LEVELS = ("bubblewrap", "landlock", "unshare", "rlimits")
# what each level protects, beyond the limits every level sets; tests/test_sandbox.py tries each claim at each level
FILES, NETWORK, PROCESSES, CREDENTIALS, SHM = "files", "network", "processes", "credentials", "/dev/shm"
PROTECTS = {"bubblewrap": (FILES, NETWORK, PROCESSES, CREDENTIALS, SHM),
            "landlock": (FILES, NETWORK, PROCESSES, CREDENTIALS, SHM),
            "unshare": (NETWORK, PROCESSES, SHM),
            "rlimits": ()}
# tasks of the wrapping alive beside the program: unshare's parent; bwrap's parent and its init in the PID namespace
_WRAPPER_TASKS = {"bubblewrap": 2, "landlock": 1, "unshare": 1, "rlimits": 0}
_PERFAGENT_SOURCE = Path(__file__).resolve().parent.parent
_LAUNCH = Path(__file__).resolve().with_name("launch.py")
# user, network, mount and PID namespaces; /proc remounted for the new PID namespace (py-spy finds its child there)
_UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--mount-proc", "--fork", "--kill-child"]
# launch.py's step, inside unshare's mount namespace (a machine without /dev/shm has none to share)
_PRIVATE_SHM = {"tmpfs": "/dev/shm"} if os.path.isdir("/dev/shm") else {}


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
        limit = "processes capped and counted by a pids cgroup" if pids_root() else (
            "processes capped by RLIMIT_NPROC, NOT counted" if os.geteuid() != 0 else
            "NO process cap or count (root, no writable cgroup)")
        what = {"bubblewrap": "no network, read-only file system except the workspace, private /tmp and /dev/shm, "
                              "credentials hidden",
                "landlock": "no network, own PID namespace, writes only in the workspace (Landlock), private "
                            "/dev/shm, credentials hidden",
                "unshare": "no network, own PID namespace, private /dev/shm; the file system is NOT protected",
                "rlimits": "resource limits only: network and file system are NOT protected"}[self.level]
        return f"{self.level} ({what}; {limit})"

    def wrap(self, argv: list[str], cwd: Path, writable: list[Path], readable: list[Path] = ()) -> list[str]:
        if self.level == "bubblewrap":
            return self._bwrap(argv, cwd, writable, readable)
        if self.level == "landlock":
            import landlockpy  # a Linux-only dependency, needed here only

            rules = {"read": _readable_roots(), "write": [str(p) for p in [cwd, *writable, *_DEVICES]],
                     "site": str(Path(landlockpy.__file__).parents[1])}
            return [*_UNSHARE, "--", *launcher({**_PRIVATE_SHM, "landlock": rules}), *argv]
        if self.level == "unshare":
            return [*_UNSHARE, "--", *launcher(_PRIVATE_SHM), *argv]
        return argv

    @property
    def wrapper_tasks(self) -> int:
        """Tasks the level itself keeps alive in the child's cgroup, beside the program's own."""
        return _WRAPPER_TASKS[self.level]

    @property
    def rusage_covers_descendants(self) -> bool:
        """Whether wait4() on the child reports the CPU time of the descendants it waited for: not under bubblewrap,
        whose processes in between do not pass their children's time on."""
        return self.level != "bubblewrap"

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


# shm: multiprocessing's locks (a private tmpfs by then)
_DEVICES = [Path("/dev/null"), Path("/dev/zero"), Path("/dev/full"), Path("/dev/shm")]


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
