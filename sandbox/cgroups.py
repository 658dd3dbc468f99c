"""The kernel's account of one sandboxed child and all its descendants, which nothing in the child can fake: a pids
cgroup caps how many tasks (processes and threads) are alive at once and records the most there were (pids.peak), and
a CPU accounting cgroup sums their CPU time (v1 cpuacct.usage, v2 cpu.stat). Each child gets its own, made here and
joined by sandbox/launch.py in the fresh process before anything else runs, so every descendant is inside, whatever
started it and whether or not it is Python.

Where the cgroup file system is not writable there is no count and no sum: the process cap falls back to RLIMIT_NPROC
(which the kernel does not apply to root), and CPU time to what wait4() reports (sandbox/run.py).
"""
from __future__ import annotations

import itertools
import os
import signal
import sys
import time
from functools import lru_cache
from pathlib import Path

_counter = itertools.count()


def _own_cgroups() -> dict[str, str]:
    """{controllers ("pids", "cpu,cpuacct", "" for v2): this process's cgroup path} from /proc/self/cgroup."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        own[controllers] = path.lstrip("/")
    return own


@lru_cache(maxsize=None)
def _writable(controller: str, v1_file: str, v2_file: str) -> Path | None:
    """A cgroup below our own in which we may make children that have `v1_file` (in the v1 hierarchy holding
    `controller`) or `v2_file` (v2), or None."""
    own = _own_cgroups()
    candidates = [(Path("/sys/fs/cgroup") / key / path, v1_file) for key, path in own.items()
                  if controller in key.split(",")]
    if "" in own:
        candidates += [(Path("/sys/fs/cgroup") / own[""], v2_file), (Path("/sys/fs/cgroup/unified") / own[""], v2_file)]
    for base, file in candidates:
        probe = base / f"perfagent-probe-{os.getpid()}"
        try:
            probe.mkdir()
        except OSError:
            continue
        ok = (probe / file).exists()
        probe.rmdir()
        if ok:
            _remove_stale(base)
            return base
    return None


def _remove_stale(base: Path) -> None:
    """Remove the empty cgroups of perfagent processes that were killed before they could (perfagent-PID-N)."""
    for folder in base.glob("perfagent-*-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not Path("/proc", pid).exists():
            try:
                folder.rmdir()
            except OSError:  # something still runs inside
                pass


def pids_root() -> Path | None:
    return _writable("pids", "pids.max", "pids.max")


def cpu_root() -> Path | None:
    return _writable("cpuacct", "cpuacct.usage", "cpu.stat")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # pids.peak came with Linux 6.x
        return None


class ChildCgroups:
    """The cgroups of one child: cap its tasks, then (after close) tell how many were alive at once and the CPU
    seconds they used."""

    def __init__(self, max_processes: int):
        name = f"perfagent-{os.getpid()}-{next(_counter)}"
        pids, cpu = pids_root(), cpu_root()
        self.pids = pids / name if pids else None
        self.cpu = cpu / name if cpu else None  # the same folder as pids on v2
        self.folders = list(dict.fromkeys(f for f in (self.pids, self.cpu) if f))
        self.max_processes = max_processes
        self.peak: int | None = None  # most tasks alive at once, once closed
        self.cpu_s: float | None = None  # user + system CPU seconds of all of them, once closed
        for folder in self.folders:
            folder.mkdir()
        if self.pids:
            (self.pids / "pids.max").write_text(str(max_processes))

    def steps(self) -> dict:
        """What sandbox/launch.py does in the child: join the cgroups, or fall back to RLIMIT_NPROC."""
        steps = {"cgroup": tuple(map(str, self.folders))} if self.folders else {}
        if not self.pids and os.geteuid() != 0:
            steps["nproc"] = self.max_processes
        return steps

    def close(self) -> None:
        """Kill whatever is still inside (daemons that left the process group too), read the counts, remove."""
        if not self.folders:
            return
        procs = self.folders[0] / "cgroup.procs"
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
        peak = _read(self.pids / "pids.peak") if self.pids else None
        self.peak = int(peak) if peak else None
        self.cpu_s = self._cpu_seconds()
        for folder in self.folders:
            try:
                folder.rmdir()
            except OSError as exc:
                print(f"perfagent: could not remove {folder}: {exc}", file=sys.stderr)

    def _cpu_seconds(self) -> float | None:
        if not self.cpu:
            return None
        usage = _read(self.cpu / "cpuacct.usage")
        if usage is not None:
            return int(usage) / 1e9
        stat = dict(line.split() for line in (_read(self.cpu / "cpu.stat") or "").splitlines() if line.strip())
        return int(stat["usage_usec"]) / 1e6 if "usage_usec" in stat else None
