"""Child-side runner for `setup()`/`workload()` workload files.

Runs inside the sandbox, in the target's own interpreter, so it uses the stdlib only and never imports perfagent.
It writes one JSON document to the output path; the parent never unpickles anything from here.

    python harness.py result    WORKLOAD OUT           # setup(); workload() -> normal form of its result
    python harness.py result-perturbed WORKLOAD OUT    # same with the file's optional perturbed_setup() instead
    python harness.py time      WORKLOAD OUT LOOPS     # LOOPS x (setup(); timed workload()) -> wall/cpu per call
    python harness.py calibrate WORKLOAD OUT SECONDS   # time single calls until SECONDS have passed
    python harness.py profile   WORKLOAD OUT SECONDS   # run workload() for SECONDS under an outside sampler (py-spy)
    python harness.py cprofile  WORKLOAD OUT SECONDS   # same, profiled in-process by cProfile (setup excluded)
    python harness.py memory    WORKLOAD OUT           # setup(); peak bytes of one workload() call (tracemalloc), then
                                                       # setup(); peak RSS growth of an untraced call (None if unknown)

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
import importlib.util  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402

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


def _normalize(obj):
    spec = importlib.util.spec_from_file_location("_perfagent_normal_form", os.path.join(_HERE, "normal_form.py"))
    normal_form = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(normal_form)
    return normal_form.normalize(obj)


def mode_result(setup, workload, _arg):
    setup()
    start = time.perf_counter()
    raised = None
    try:
        value = workload()
    except Exception as exc:  # a workload that raises has that exception as its result
        value, raised = exc, f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    return {"result": _normalize(value), "raised": raised, "seconds": seconds}


def _timed_call(setup, workload):
    setup()
    wall, cpu = time.perf_counter(), time.process_time()
    workload()
    return time.perf_counter() - wall, time.process_time() - cpu


def mode_time(setup, workload, loops):
    calls = [_timed_call(setup, workload) for _ in range(int(loops))]
    return {"wall": [c[0] for c in calls], "cpu": [c[1] for c in calls]}


def mode_calibrate(setup, workload, seconds):
    deadline = time.perf_counter() + float(seconds)
    calls = [_timed_call(setup, workload)]
    while time.perf_counter() < deadline and len(calls) < 1000:
        calls.append(_timed_call(setup, workload))
    return {"wall": [c[0] for c in calls], "cpu": [c[1] for c in calls]}


def perfagent_profiled_workload(workload, deadline):
    """Every workload sample of a profile sits below this frame; setup() never does."""
    calls = 0
    while calls == 0 or time.perf_counter() < deadline:
        workload()
        calls += 1
    return calls


def mode_profile(setup, workload, seconds):
    setup()
    start = time.perf_counter()
    calls = perfagent_profiled_workload(workload, start + float(seconds))
    return {"calls": calls, "seconds": time.perf_counter() - start}


def mode_cprofile(setup, workload, seconds):
    import cProfile
    import pstats

    setup()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    calls = profiler.runcall(perfagent_profiled_workload, workload, start + float(seconds))
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


def _rss_growth(workload):
    """How far one call lifts the process's RSS above where it started: its peak RSS growth in bytes, or None."""
    if not _reset_peak_rss():
        return None
    start = _status_bytes("VmRSS")
    workload()
    peak = _status_bytes("VmHWM")
    return None if start is None or peak is None else max(0, peak - start)


def mode_memory(setup, workload, _arg):
    """The first call is traced, so memory a call keeps for later ones (a cache in a module global) counts; the RSS
    call comes second, untraced, since tracemalloc's own bookkeeping would inflate it."""
    import gc
    import tracemalloc

    setup()
    gc.collect()  # the same collector state before every measured call: its peak does not depend on setup's garbage
    tracemalloc.start()
    try:
        workload()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    setup()
    gc.collect()
    return {"peak": peak, "rss": _rss_growth(workload)}


MODES = {"result": mode_result, "result-perturbed": mode_result, "time": mode_time, "calibrate": mode_calibrate,
         "profile": mode_profile, "cprofile": mode_cprofile, "memory": mode_memory}


def main(argv):
    mode, workload_path, out_path = argv[1], argv[2], argv[3]
    arg = argv[4] if len(argv) > 4 else None
    setup, workload = load_workload(workload_path, "perturbed_setup" if mode == "result-perturbed" else "setup")
    value = MODES[mode](setup, workload, arg)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(value, f)


if __name__ == "__main__":
    main(sys.argv)
