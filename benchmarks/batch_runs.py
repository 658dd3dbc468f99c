"""What the benchmarks that drive `perfagent batch` share: running the installed command with a baseline cache of
their own, and reading a task's run record."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PERFAGENT = str(Path(sys.executable).with_name("perfagent"))


def perfagent(args: list[str], cache: Path, log: Path) -> None:
    """`perfagent ARGS`, its output to `log`; `cache` is its XDG_CACHE_HOME, so runs that share it reuse the
    baseline's tests, coverage and timing on the same commit."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    with open(log, "w") as out:
        subprocess.run([PERFAGENT, *args], env=env, stdout=out, stderr=subprocess.STDOUT, check=False)


def summary(run: Path, instance_id: str) -> dict:
    """The run record (summary.json) of one task of a batch's output folder; {} when it has none."""
    path = run / "tasks" / instance_id / "run" / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def first_verdict(record: dict) -> float | None:
    """Seconds from the run's start to its first candidate's verdict."""
    return (record.get("candidates") or [{}])[0].get("verdict_at_s")
