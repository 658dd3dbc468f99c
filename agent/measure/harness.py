"""Child-side runner for `setup()`/`workload()` workload files.

Runs inside the sandbox, in the target's own interpreter, so it uses the stdlib only and never imports perfagent.
Every run is started the same way, `python harness.py WORKLOAD`, with the same environment: what a run is for comes
as one JSON datagram on file descriptor 3 (sandbox/marks.py), read before the workload file is loaded, so no run
looks different from another to the workload's code:

    {"mode": "calls", "input": "setup", "loops": N}        # N x (setup(); timed workload(); digest of its result)
    {"mode": "calls", "input": "setup", "seconds": S}      # the same, until S seconds have passed (calibration)
    {"mode": "calls", "input": "perturbed_setup", "loops": 1}  # the file's optional second input
    {"mode": "calls", ..., "record": ["pkg.mod:f", ...]}   # the first call's calls to those functions recorded
    {"mode": "profile" | "cprofile", "seconds": S}         # workload() for S seconds under a sampler / cProfile
    {"mode": "memory"}                                     # peak bytes of one call (tracemalloc), then peak RSS growth

Every mode that calls workload() for a verdict ("calls", "memory") digests each call's result, so a result is
checked whatever run it comes from; a result run may also record the arguments and results of the calls to the
functions that do the work (recorder.py), which a workload that returns None leaves unchecked otherwise. Around each timed call the harness sends the marks "S<i>" and "E<i>" on the same
descriptor; the kernel stamps them, and the parent times the call from those stamps (its own clock, not this
process's). The harness's own clock figures go along in the output as a cross-check only. It writes one JSON
document to the output path it was given; the parent never unpickles anything from here.

A workload file may end with SWE-fficiency's top-level `timeit.repeat(...)` loop and prints; those statements (and the
ones using what they bind) are dropped, so only the definitions run.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.getcwd()) == _HERE:
    del sys.path[0]  # this folder must not shadow the target's modules (e.g. a `tests` or `run` module)
sys.path.insert(0, os.getcwd())

import ast  # noqa: E402
import fcntl  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import types  # noqa: E402

MARK_FD = 3  # sandbox/marks.py
_write = os.write  # bound before any workload code runs, which may replace os.write
_OUTQ = 0x5411  # SIOCOUTQ (TIOCOUTQ): bytes of this process's marks the parent has not read yet
_room = 0  # unread bytes beyond which a call waits: half the buffer, set at start

_TIMING_NAMES = {"timeit"}


def _names_loaded(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.value.id for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }


def _names_bound(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def strip_timing_loop(tree):
    """Drop top-level statements that use `timeit` or anything such a statement bound."""
    dropped = set(_TIMING_NAMES)
    kept = []
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kept.append(stmt)
        elif _names_loaded(stmt) & dropped:
            dropped |= _names_bound(stmt)
        else:
            kept.append(stmt)
    tree.body = kept
    return tree


def load_workload(path, setup_name="setup"):
    """The workload file's `setup_name` and `workload` functions."""
    path = os.path.abspath(path)
    with open(path, encoding="utf-8") as f:
        tree = strip_timing_loop(ast.parse(f.read(), filename=path))
    module = types.ModuleType("__perfagent_workload__")
    module.__file__ = path
    sys.modules[module.__name__] = module
    exec(compile(tree, path, "exec"), module.__dict__)
    for name in (setup_name, "workload"):
        if not callable(module.__dict__.get(name)):
            raise SystemExit(f"{path} does not define a `{name}()` function")
    return module.__dict__[setup_name], module.workload


def _load(name):
    """A module of this folder (normal_form, recorder), by path: perfagent is not importable here."""
    spec = importlib.util.spec_from_file_location(f"_perfagent_{name}", os.path.join(_HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unread_bytes():
    return struct.unpack("i", fcntl.ioctl(MARK_FD, _OUTQ, b"\0" * 4))[0]


def _buffer_bytes():
    sock = socket.socket(fileno=os.dup(MARK_FD))
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    finally:
        sock.close()


def _room_for_marks():
    """Wait, outside the timed call, until the parent has read enough marks that the call's end mark cannot block
    (a blocked send would be stamped late and stretch the call)."""
    while _unread_bytes() > _room:
        time.sleep(0.002)


class Calls:
    """The workload's calls in one run: each timed between its marks, each result digested; with `record` targets,
    the first call's calls to those functions recorded (recorder.py)."""

    def __init__(self, setup, workload, record=()):
        self.setup, self.workload = setup, workload
        self.normal_form = _load("normal_form")
        self.recorder = _load("recorder").Recorder(self.normal_form) if record else None
        self.record = record
        self.first = None  # the normal form of the first call's result
        self.calls = []  # per call: [wall seconds, CPU seconds] by this process's clocks, and the result's digest
        self.raised = []  # the calls that raised, and the first one's traceback
        self.traceback = None

    def call(self):
        self.setup()
        _room_for_marks()
        i = len(self.calls)
        start, end = b"S%d" % i, b"E%d" % i  # made before the call: nothing but the marks' writes lies outside
        if self.recorder and i == 0:
            self.recorder.start(self.record)
        _write(MARK_FD, start)
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            value = self.workload()
        except MemoryError:  # the sandbox's memory limit, not the code's result: the run fails, as a crash would
            raise
        except Exception as exc:  # a workload that raises has that exception as its result
            value = exc
            self.raised.append(i)
            self.traceback = self.traceback or traceback.format_exc()
        wall = time.perf_counter() - wall
        _write(MARK_FD, end)
        cpu = time.process_time() - cpu
        if self.recorder and i == 0:
            self.recorder.stop()
        form = self.normal_form.normalize(value)
        digest = hashlib.sha256(json.dumps(form, sort_keys=True).encode()).hexdigest()
        if self.first is None:
            self.first = form
        self.calls.append([wall, cpu, digest])

    def output(self):
        records = self.recorder.records() if self.recorder else None
        return {"result": self.first, "calls": self.calls, "raised": self.raised, "traceback": self.traceback,
                "records": records}


CALIBRATION_CALLS = 3  # at least: a first call and two later ones, the least that shows a cold start (a cache that
# setup() does not reset, WorkloadRunner.calibrate) when setup() and the first call take all the seconds asked for


def mode_calls(setup, workload, order):
    calls = Calls(setup, workload, order.get("record") or ())
    if order.get("seconds") is None:
        for _ in range(int(order["loops"])):
            calls.call()
        return calls.output()
    deadline = time.perf_counter() + float(order["seconds"])
    calls.call()
    while (time.perf_counter() < deadline or len(calls.calls) < CALIBRATION_CALLS) and len(calls.calls) < 1000:
        calls.call()
    return calls.output()


def perfagent_profiled_workload(workload, deadline):
    """Every workload sample of a profile sits below this frame; setup() never does."""
    calls = 0
    while calls == 0 or time.perf_counter() < deadline:
        workload()
        calls += 1
    return calls


def mode_profile(setup, workload, order):
    setup()
    start = time.perf_counter()
    calls = perfagent_profiled_workload(workload, start + float(order["seconds"]))
    return {"calls": calls, "seconds": time.perf_counter() - start}


def mode_cprofile(setup, workload, order):
    import cProfile
    import pstats

    setup()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    calls = profiler.runcall(perfagent_profiled_workload, workload, start + float(order["seconds"]))
    stats = pstats.Stats(profiler).stats
    functions = [
        {"file": f, "line": line, "name": name, "ncalls": nc, "tottime": tt, "cumtime": ct,
         "callers": [[cf, cl, cn, ctt, cct] for (cf, cl, cn), (_pc, _nc, ctt, cct) in callers.items()]}
        for (f, line, name), (_pc, nc, tt, ct, callers) in stats.items()
    ]
    return {"calls": calls, "seconds": time.perf_counter() - start, "functions": functions}


def _status_bytes(key):
    """A figure of /proc/self/status (given in kB) in bytes, or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _reset_peak_rss():
    """Set the kernel's high-water mark of this process's RSS (VmHWM) to its current RSS; False where that is not
    allowed (Landlock grants no writes under /proc)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def mode_memory(setup, workload, _order):
    """Two calls after setup(): the first traced by tracemalloc, so memory a call keeps for later ones (a cache in a
    module global) counts; the second untraced (tracemalloc's own bookkeeping would inflate RSS) for the growth of
    the process's peak RSS. The collector is in the same state before each. Both results are digested."""
    import gc
    import tracemalloc

    peaks, rss = [], []

    def collected():
        setup()
        gc.collect()

    def traced():
        tracemalloc.start()
        try:
            return workload()
        finally:
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    def untraced():
        start = _status_bytes("VmRSS") if _reset_peak_rss() else None
        try:
            return workload()
        finally:
            peak = _status_bytes("VmHWM")
            rss.append(None if start is None or peak is None else max(0, peak - start))

    calls = Calls(collected, traced)
    calls.call()
    calls.workload = untraced
    calls.call()
    return {**calls.output(), "peak": peaks[0], "rss": rss[0]}


MODES = {"calls": mode_calls, "profile": mode_profile, "cprofile": mode_cprofile, "memory": mode_memory}


def main(argv):
    order = json.loads(os.read(MARK_FD, 1 << 16))  # before the workload file runs: its code never sees it
    global _room
    _room = _buffer_bytes() // 2
    _write(MARK_FD, b"H")
    setup, workload = load_workload(argv[1], order.get("input", "setup"))
    value = MODES[order["mode"]](setup, workload, order)
    with open(order["out"], "w", encoding="utf-8") as f:
        json.dump(value, f)
    _write(MARK_FD, b"X")


if __name__ == "__main__":
    main(sys.argv)
