"""Benchmark: what py-spy's native frames cost, on one repository's workload.

    python benchmarks/native_profile.py REPO WORKLOAD.py [--calls 20] [--repeat 3] [--seconds 2]

Two measures, each repeated with the modes interleaved (the machine's load drifts):
- the workload's own time per call (its setup() excluded) run plainly, under `py-spy record` and under `py-spy
  record --native`, at the rate perfagent samples (200 Hz): native stacks pause the process to unwind it, which
  slows what is being profiled; with py-spy's samples and lost samples ("errors");
- profile_workload with and without native frames (ProfileOptions.native), as `perfagent profile` runs it: its wall
  time, samples, and the top hotspot it names.
The extensions must be built in REPO (e.g. `python setup.py build_ext --inplace`).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perfagent.config import Settings
from perfagent.localize.hotspots import ProfileOptions, profile_workload
from perfagent.measure.workload import Workload

DRIVER = """
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("workload", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.setup()
start = time.perf_counter()
for _ in range(int(sys.argv[2])):
    module.workload()
print(json.dumps({"per_call": (time.perf_counter() - start) / int(sys.argv[2])}))
"""
MODES = {"plain": [], "py-spy": ["record", "--rate", "200", "-f", "raw"],
         "py-spy --native": ["record", "--rate", "200", "-f", "raw", "--native"]}


def per_call(repo: Path, workload: Path, calls: int, mode: str, tmp: Path) -> tuple[float, str]:
    """The workload's seconds per call in `mode`, and py-spy's sample count line."""
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    argv = [sys.executable, str(driver), str(workload), str(calls)]
    if MODES[mode]:
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        argv = [pyspy, *MODES[mode], "-o", str(tmp / "stacks.raw"), "--", *argv]
    done = subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=True,
                          env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    samples = re.search(r"Samples: \d+ Errors: \d+", done.stdout + done.stderr)
    result = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{"))  # py-spy talks too
    return json.loads(result)["per_call"], samples.group() if samples else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("workload", type=Path)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    repo, workload = args.repo.resolve(), args.workload.resolve()
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for mode in MODES:
                seconds, samples = per_call(repo, workload, args.calls, mode, Path(tmp))
                times[mode].append(seconds)
                print(f"  {mode:16} {seconds * 1000:9.2f} ms per call  {samples}")
        plain = statistics.median(times["plain"])
        print(f"\n{'workload run':16} {'ms per call (median)':>20} {'slower than plain':>18}")
        for mode, values in times.items():
            print(f"{mode:16} {statistics.median(values) * 1000:20.2f} {statistics.median(values) / plain - 1:18.1%}")
        print(f"\n{'profile_workload':16} {'wall s':>7} {'samples':>8}  top hotspot")
        limits = Settings(isolation="rlimits").limits(timeout_s=600)
        spec = Workload.parse(str(workload), repo)
        for _ in range(args.repeat):
            for native in (False, True):
                start = time.perf_counter()
                profile = profile_workload(repo, spec, python=sys.executable, tmp=Path(tmp), limits=limits,
                                           options=ProfileOptions(seconds=args.seconds, native=native))
                top = profile.hotspots[0] if profile.hotspots else None
                print(f"{'native' if profile.native else 'python only':16} {time.perf_counter() - start:7.2f} "
                      f"{profile.samples:8}  {top and f'{top.key} (self {top.self_share:.0%})'}")


if __name__ == "__main__":
    main()
