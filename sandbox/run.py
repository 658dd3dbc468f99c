"""Run one untrusted process: scrubbed environment, resource limits, wall-clock timeout, whole-group kill.

Every child gets its own session (process group). On timeout, on Ctrl-C, or when perfagent exits, the whole group is
killed, so no grandchild outlives the run.
"""
from __future__ import annotations

import atexit
import os
import re
import resource
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.isolation import ProcessCap, current

_SECRET = re.compile(r"(_API_KEY|_TOKEN|_SECRET|_PASSWORD|^AWS_|^AZURE_|^GOOGLE_APPLICATION_CREDENTIALS$)", re.I)
_OUTPUT_LIMIT = 1 << 20  # keep at most the last 1 MiB of stdout / stderr
_live_groups: set[int] = set()


@dataclass
class Usage:
    """Child processes run so far and their wall-clock seconds: the measure of perfagent's own overhead."""
    processes: int = 0
    seconds: float = 0.0


USAGE = Usage()


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 600.0
    memory_mb: int | None = 4096  # address space (RLIMIT_AS)
    file_mb: int | None = 1024  # largest file the process may write (RLIMIT_FSIZE)
    cpu_s: int | None = None  # CPU seconds (RLIMIT_CPU); defaults to twice the timeout
    processes: int = 256  # processes and threads alive at once (pids cgroup, else RLIMIT_NPROC)

    def apply(self) -> None:
        """Set the rlimits; runs in the child between fork and exec."""
        cpu = self.cpu_s or int(self.timeout_s * 2) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL a second later
        if self.memory_mb:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_mb << 20,) * 2)
        if self.file_mb:
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_mb << 20,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass(frozen=True)
class RunResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    limits: Limits = field(default_factory=Limits)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def failure(self) -> str:
        """One line saying how the process ended, for rejection reasons and error messages."""
        if self.timed_out:
            return f"timed out after {self.limits.timeout_s:.0f} s"
        if self.returncode < 0:
            name = signal.Signals(-self.returncode).name
            hint = {"SIGXCPU": " (CPU time limit)", "SIGXFSZ": " (file size limit)"}.get(name, "")
            return f"killed by {name}{hint}"
        if "MemoryError" in self.stderr[-4000:]:
            return f"ran out of memory (limit {self.limits.memory_mb} MB)"
        if "File too large" in self.stderr[-4000:]:
            return f"exceeded the file size limit ({self.limits.file_mb} MB)"
        return f"exited with status {self.returncode}"

    def tail(self, lines: int = 25) -> str:
        text = (self.stdout.rstrip() + "\n" + self.stderr.rstrip()).strip()
        return "\n".join(text.splitlines()[-lines:])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without secrets, with deterministic hashing, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not _SECRET.search(k)}
    env["PYTHONHASHSEED"] = "0"
    env.update(extra or {})
    return env


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_all() -> None:
    """Kill every process group still running; called at exit and from signal handlers."""
    for pgid in list(_live_groups):
        _kill_group(pgid)
        _live_groups.discard(pgid)


atexit.register(kill_all)


def _read_tail(f) -> str:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - _OUTPUT_LIMIT))
    return f.read().decode("utf-8", "replace")


def run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, limits: Limits = Limits(),
        writable: tuple[Path, ...] | list[Path] = (), readable: tuple[Path, ...] | list[Path] = ()) -> RunResult:
    """Run argv to completion (or timeout) in its own process group; never raises for the child's failures.
    `cwd` and `writable` are the only places the child may write to (besides a private temporary folder);
    `readable` are files it must see even where the sandbox hides their folder (/tmp, home)."""
    cap = ProcessCap(limits.processes)

    def in_child() -> None:
        limits.apply()
        cap.enter()

    wrapped = current().wrap([str(a) for a in argv], Path(cwd), list(map(Path, writable)), list(map(Path, readable)))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(wrapped, cwd=cwd, env=env if env is not None else child_env(),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                                    preexec_fn=in_child)
        except BaseException:
            cap.close()
            raise
        _live_groups.add(proc.pid)
        timed_out = False
        try:
            proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # also on KeyboardInterrupt: the group, and anything that left it, dies with us
            _kill_group(proc.pid)
            proc.wait()
            _live_groups.discard(proc.pid)
            cap.close()
        seconds = time.perf_counter() - start
        USAGE.processes += 1
        USAGE.seconds += seconds
        return RunResult(list(map(str, argv)), proc.returncode, _read_tail(out), _read_tail(err), seconds,
                         timed_out, limits)


def run_shell(command: str, worktree: Path, python: str, limits: Limits) -> str | None:
    """Run a project's own shell command (a rebuild, a test command) in the sandbox, in `worktree`, with the target's
    interpreter first on PATH; None when it succeeds, else what went wrong."""
    path = f"{Path(python).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    result = run(["/bin/sh", "-c", command], cwd=worktree, env=child_env({"PYTHONPATH": str(worktree), "PATH": path}),
                 limits=limits, writable=[worktree])
    return None if result.ok else f"`{command}` {result.failure()}:\n{result.tail()}"
