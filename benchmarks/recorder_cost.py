"""Benchmark: what recording calls (agent/measure/recorder.py) adds to one workload() call of a result run.

    python benchmarks/recorder_cost.py [--rounds 5]

Each case is a workload of small Python calls, timed with recording off and on, alternating, best of `--rounds`:
1. spent: 1e5 calls to the one target and 1e6 to other functions; the target's budget is spent early and the hook
   removed (the brief's reference case).
2. kept: 50 calls to the target (its budget is never spent, so the hook stays for the whole call) and 1e6 to other
   functions: the cost of the hook itself on every Python call.
3. big self: 1e5 calls to a method of an object of about 2,800 values: the cost of digesting large arguments
   (bounded by the recorder's node allowance: the target is given up after a few calls too large to record).
4. library: difflib comparing two versions of a source file (pure Python, many C calls), recording the one call
   to SequenceMatcher.ratio, so the hook stays throughout: the cost of the hook on ordinary library code.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import textwrap
import time
from pathlib import Path

MEASURE = Path(__file__).resolve().parent.parent / "agent" / "measure"
MODULE = '''
class Big:
    def __init__(self):
        self.table = {i: [i, str(i)] for i in range(700)}

    def lookup(self, i):
        return self.table[i % 700][0]


def target(x):
    return x + 1


def other(x):
    return x * 2


def spent():
    s = 0
    for i in range(100_000):
        s += target(i)
        for j in range(10):
            s += other(j)
    return s


def kept():
    s = 0
    for i in range(1_000_000):
        s += other(i)
        if i % 20_000 == 0:
            s += target(i)
    return s


def big_self():
    big, s = Big(), 0
    for i in range(100_000):
        s += big.lookup(i)
    return s


def library():
    import difflib
    text = open(difflib.__file__).read().splitlines()
    changed = [line.replace("e", "E") if i % 7 == 0 else line for i, line in enumerate(text)]
    diff = list(difflib.unified_diff(text, changed))
    return len(diff), difflib.SequenceMatcher(None, text[:300], changed[:300]).ratio()
'''
CASES = {"spent": "bench_module:target", "kept": "bench_module:target", "big_self": "bench_module:Big.lookup",
         "library": "difflib:SequenceMatcher.ratio"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_perfagent_{name}", MEASURE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timed(function, recorder_module=None, normal_form=None, target=None) -> float:
    recorder = None
    if recorder_module is not None:
        recorder = recorder_module.Recorder(normal_form)
        recorder.start([target])
    start = time.perf_counter()
    function()
    seconds = time.perf_counter() - start
    if recorder is not None:
        recorder.stop()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    normal_form, recorder_module = _load("normal_form"), _load("recorder")
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "bench_module.py").write_text(textwrap.dedent(MODULE))
        sys.path.insert(0, folder)
        import bench_module
        print(f"{'case':<10} {'off (s)':>9} {'on (s)':>9} {'ratio':>7}")
        for case, target in CASES.items():
            function, off, on = getattr(bench_module, case), [], []
            for _ in range(args.rounds):
                off.append(_timed(function))
                on.append(_timed(function, recorder_module, normal_form, target))
            print(f"{case:<10} {min(off):>9.3f} {min(on):>9.3f} {min(on) / min(off):>6.2f}x")


if __name__ == "__main__":
    main()
