"""Run one untrusted process: scrubbed environment, resource limits, wall-clock timeout, whole-group kill, and a log
of what it did.

Every child gets its own session (process group) and its own temporary folder (TMPDIR), removed afterwards. On
timeout, on Ctrl-C, or when perfagent exits, the whole group is killed, so no grandchild outlives the run. Python
children log their behaviour (sandbox/monitor.py); the result carries it, with what the kernel counted for the child
and all its descendants (sandbox/cgroups.py): the most tasks alive at once, as behaviour, and the CPU seconds.
"""
from __future__ import annotations

import atexit
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from perfagent.sandbox import scratch
from perfagent.sandbox.behaviour import Event, read_log, tasks_at_once
from perfagent.sandbox.cgroups import ChildCgroups
from perfagent.sandbox.isolation import PROTECTS, SHM, Isolation, launcher
from perfagent.sandbox.marks import MarkChannel
from perfagent.sandbox.monitor import REPORT_EXIT, SECRET

_STARTUP = Path(__file__).resolve().with_name("startup")  # its sitecustomize starts the monitor
_OUTPUT_LIMIT = 1 << 20  # keep at most the last 1 MiB of stdout / stderr
DRAIN_INTERVAL_S = 0.05  # how often the marks of a running child are read (sandbox/marks.py holds thousands)
_live_groups: set[int] = set()


@dataclass
class Usage:
    """Child processes run so far and their wall-clock seconds: the measure of perfagent's own overhead."""
    processes: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Limits:
    """How a child runs: its resource bounds, its confinement, and where its processes and seconds are counted.
    Limits derived with dataclasses.replace share the isolation and the counter of the run that made them. The
    fields that are settings have their defaults in perfagent.config.Settings, which builds these (Settings.limits)."""
    timeout_s: float
    memory_mb: int | None  # address space (RLIMIT_AS)
    processes: int  # processes and threads alive at once (pids cgroup, else RLIMIT_NPROC)
    isolation: Isolation  # the sandbox level (isolation.choose)
    file_mb: int | None = 1024  # largest file the process may write (RLIMIT_FSIZE)
    cpu_s: int | None = None  # CPU seconds (RLIMIT_CPU); defaults to twice the timeout
    usage: Usage = field(default_factory=Usage, compare=False)

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """The rlimits sandbox/launch.py sets in the child."""
        cpu = self.cpu_s or int(self.timeout_s * 2) + 1
        limits = {"RLIMIT_CPU": (cpu, cpu + 1), "RLIMIT_CORE": (0, 0)}  # SIGXCPU first, SIGKILL a second later
        if self.memory_mb:
            limits["RLIMIT_AS"] = (self.memory_mb << 20,) * 2
        if self.file_mb:
            limits["RLIMIT_FSIZE"] = (self.file_mb << 20,) * 2
        return limits


@dataclass(frozen=True)
class RunResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool
    limits: Limits
    behaviour: frozenset[Event] = frozenset()  # what its Python processes did that a user might not want, and the
    # most tasks the kernel counted alive at once (sandbox/behaviour.py tasks_at_once)
    cpu_s: float | None = None  # user + system CPU seconds of the child and its descendants, as the kernel counted
    # them; None where it cannot tell (no writable cgroup, and wait4 does not reach the descendants)

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
    """The parent's environment without secrets, with deterministic hashing and no bytecode written (perfagent
    compiles a worktree's files itself, see bytecode.py: any write under __pycache__ is the code's), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not SECRET.search(k)}
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
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


def _ends_in_time(proc: subprocess.Popen, timeout_s: float, marks: MarkChannel | None) -> bool:
    """Wait for the child, reading its marks meanwhile; False when `timeout_s` passed first. A pidfd wakes us the
    moment it exits, where Popen.wait polls with sleeps of up to 50 ms (a 60 ms child would cost 113 ms)."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux 5.3+
        try:
            proc.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # marks are read on a timer, not as they come: a parent woken by every mark would take the CPU from the
            # child in the middle of the calls it marks (measured: 0.1-0.8 ms per call on a loaded machine)
            ready = select.select([fd], [], [], min(left, DRAIN_INTERVAL_S) if marks else left)[0]
            if marks:
                marks.drain()
            if ready:
                return True
    finally:
        os.close(fd)


def _reap(proc: subprocess.Popen) -> float | None:
    """Wait for the (killed) child; the CPU seconds wait4 reports for it and the descendants it waited for."""
    if proc.returncode is not None:  # Popen.wait reaped it, where there is no pidfd
        return None
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def _program(argv: list[str]) -> str:
    """What a run runs, as runs of the same kind share it: the program and its module or script (python -m pytest,
    python harness.py), without the arguments that vary."""
    name = Path(argv[0]).name
    if len(argv) > 2 and argv[1] == "-m":
        return f"{name} -m {argv[2]}"
    return f"{name} {Path(argv[1]).name}" if len(argv) > 1 and not argv[1].startswith("-") else name


def _sandbox_env(env: dict[str, str], private: Path, writable: list[Path]) -> dict[str, str]:
    """The child's environment: its temporary folder, the monitor's log and roots, the request that the first Python
    process report its exit (monitor.py), and the caller's PYTHONPATH held back until perfagent's start-up has run
    (startup/sitecustomize.py puts it on sys.path then): Python's own start-up (encodings, the imports of .pth
    files, sitecustomize, usercustomize) never reads a folder the caller named, such as the candidate's worktree."""
    env = dict(env)
    env.update(TMPDIR=str(private / "tmp"), PERFAGENT_BEHAVIOUR_LOG=str(private / "behaviour.jsonl"),
               PERFAGENT_WRITABLE=os.pathsep.join(str(p) for p in writable),
               PERFAGENT_PYTHONPATH=env.get("PYTHONPATH", ""), PYTHONPATH=str(_STARTUP), **{REPORT_EXIT: "1"})
    return env


def _shared_memory() -> dict[str, tuple[int, int]]:
    """What the host's /dev/shm holds: name -> (owner, ctime)."""
    try:
        with os.scandir("/dev/shm") as entries:
            return {e.name: (e.stat(follow_symlinks=False).st_uid, e.stat(follow_symlinks=False).st_ctime_ns)
                    for e in entries}
    except OSError:
        return {}


def _processes() -> set[str]:
    return {entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()}


def _held_by(processes: set[str]) -> set[str]:
    """The /dev/shm entries these processes hold open or mapped."""
    held = set()
    for pid in processes:
        proc = Path("/proc", pid)
        try:
            held.update(line.split(None, 5)[-1] for line in (proc / "maps").read_text().splitlines()
                        if "/dev/shm/" in line)
            fds = list((proc / "fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                held.add(os.readlink(fd))
            except OSError:  # closed since it was listed
                continue
    return {path.removeprefix("/dev/shm/").removesuffix(" (deleted)") for path in held if path.startswith("/dev/shm/")}


def _left_in_shared_memory(before: dict[str, tuple[int, int]], since_ns: int, elders: set[str]) -> set[Event]:
    """Files a child left in the host's /dev/shm, found by comparison where the sandbox does not make it private
    (rlimits): entries of ours that are new since the child started, except those a process older than the child
    (`elders`, alive when it started: never one of its descendants) still holds, which on a shared machine are a
    browser's buffers or another run's semaphores. They could carry results to the next run."""
    left = [name for name, (uid, ctime) in _shared_memory().items()
            if name not in before and uid == os.geteuid() and ctime >= since_ns]
    if left:
        held = _held_by(elders & _processes())
        left = [name for name in left if name not in held]
    return {Event("write", "/dev/shm", f"left /dev/shm/{name} behind (found by comparison)") for name in left[:1]}


def _read_tail(f) -> str:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - _OUTPUT_LIMIT))
    return f.read().decode("utf-8", "replace")


# size: what to run, where and within which limits, then keyword-only sandbox options, each with a default
def run(argv: list[str], *, cwd: Path, limits: Limits, env: dict[str, str] | None = None,
        writable: tuple[Path, ...] | list[Path] = (), readable: tuple[Path, ...] | list[Path] = (),
        marks: MarkChannel | None = None) -> RunResult:
    """Run argv to completion (or timeout) in its own process group; never raises for the child's failures.
    `cwd` and `writable` are the only places the child may write to (besides a private temporary folder);
    `readable` are files it must see even where the sandbox hides their folder (/tmp, home); with `marks`, the
    child finds its end of that channel on file descriptor 3 and the marks it sends are read into it."""
    argv = [str(a) for a in argv]
    cgroups = ChildCgroups(limits.processes)
    private = Path(tempfile.mkdtemp(prefix="child-", dir=scratch.folder()))
    (private / "tmp").mkdir()
    writable = [Path(cwd), *map(Path, writable), private]
    env = _sandbox_env(env if env is not None else child_env(), private, writable)
    wrapped = limits.isolation.wrap(argv, Path(cwd), writable[1:], list(map(Path, readable)))
    steps = {**limits.rlimits(), **cgroups.steps(), **({"markfd": marks.child_fd} if marks else {})}
    shared = _shared_memory() if SHM not in PROTECTS[limits.isolation.level] else None
    elders = _processes() if shared is not None else set()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start, start_ns = time.perf_counter(), time.time_ns()
        try:
            proc = subprocess.Popen([*launcher(steps), *wrapped], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True,
                                    pass_fds=(marks.child_fd,) if marks else ())
        except BaseException:
            cgroups.close()
            shutil.rmtree(private, ignore_errors=True)
            raise
        _live_groups.add(proc.pid)
        if marks:
            marks.started()
        timed_out = False
        try:
            timed_out = not _ends_in_time(proc, limits.timeout_s, marks)
        finally:  # also on KeyboardInterrupt: the group, and anything that left it, dies with us
            _kill_group(proc.pid)
            waited_cpu_s = _reap(proc)
            _live_groups.discard(proc.pid)
            cgroups.close()
            if marks:
                marks.drain()
            behaviour = read_log(private / "behaviour.jsonl", exited=proc.returncode == 0 and not timed_out)
            shutil.rmtree(private, ignore_errors=True)
        seconds = time.perf_counter() - start
        limits.usage.processes += 1
        limits.usage.seconds += seconds
        if cgroups.peak is not None:
            behaviour |= {tasks_at_once(_program(argv), cgroups.peak - limits.isolation.wrapper_tasks)}
        if shared is not None:
            behaviour |= _left_in_shared_memory(shared, start_ns, elders)
        cpu_s = cgroups.cpu_s if cgroups.cpu_s is not None else (
            waited_cpu_s if limits.isolation.rusage_covers_descendants else None)
        return RunResult(argv, proc.returncode, _read_tail(out), _read_tail(err), seconds,
                         timed_out, limits, behaviour, cpu_s)


def run_shell(command: str, worktree: Path, python: str, limits: Limits,
              headline: Callable[[str], str | None] = lambda output: None) -> str | None:
    """Run a project's own shell command (a rebuild, a test command) in the sandbox, in `worktree`, with the target's
    interpreter first on PATH; None when it succeeds, else what went wrong: `headline` of its whole output (such as
    a build's first error, which a long output's tail has lost), when it finds one, then how it ended and its tail."""
    path = f"{Path(python).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    # named, the interpreter's environment stays visible where the sandbox hides its folder (a venv under /tmp)
    result = run(["/bin/sh", "-c", command], cwd=worktree, env=child_env({"PYTHONPATH": str(worktree), "PATH": path}),
                 limits=limits, writable=[worktree], readable=[Path(python).parent.parent])
    if result.ok:
        return None
    said, first = f"`{command}` {result.failure()}:\n{result.tail()}", headline(f"{result.stdout}\n{result.stderr}")
    return f"{first}\n{said}" if first else said
