"""Run records on disk: summary.json rewritten after every step, JSON-lines logs appended line by line, so a crash
loses nothing already decided."""
from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
from contextlib import contextmanager
from pathlib import Path

from perfagent.summary import FORMAT_VERSION, Summary

# A repository's runs go to REPO/.perfagent/runs/RUN_ID unless --out says otherwise: beside the code they are about,
# wherever the command was started, and found there again (`perfagent branches` reads them). The .perfagent folder
# ignores itself, as .pytest_cache does, so git never shows it and the user's .gitignore and .git/info/exclude stay
# untouched.
OWN_FOLDER = ".perfagent"
RUNS = "runs"


def runs_folder(repo: Path) -> Path:
    """Where a repository's runs go by default."""
    return Path(repo) / OWN_FOLDER / RUNS


def new_run_directory(repo: Path, run_id: str) -> Path:
    """The default run directory of run `run_id` on `repo` (not yet made), in a .perfagent folder that git ignores."""
    own = Path(repo) / OWN_FOLDER
    own.mkdir(exist_ok=True)
    ignore = own / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# perfagent's run records (perfagent optimize): never committed\n*\n", encoding="utf-8")
    return runs_folder(repo) / run_id


@contextmanager
def file_lock(path: Path):
    """An exclusive lock across processes (batch workers share caches, a budget ledger and output files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and force it to disk: a line once written survives a crash."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file; a last line cut short by a crash is ignored."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def machine() -> dict:
    """What the run's numbers were measured on, as pyperf records it: timing ratios travel, absolute times need it."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                  if line.startswith("model name")), platform.processor() or None)
    return {"cpu": model, "cores": os.cpu_count(), "load_at_start": _load(),
            "python": platform.python_version(), "platform": platform.platform()}


def _load() -> float:
    """The 1-minute load average: how busy the machine was while the numbers were taken."""
    return round(os.getloadavg()[0], 2)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


class RunRecord:
    """A run's summary.json, written through its model (perfagent.summary) on every change: a field the model does
    not know, or a wrong type, fails the run at once rather than leave a record no reader can trust."""

    @staticmethod
    def mark_killed(summary: Path) -> None:
        """A run that died without a word (SIGKILL, power loss) still says "running": say "killed" instead."""
        try:
            record = Summary.read(json.loads(summary.read_text(encoding="utf-8")), summary)
        except (OSError, ValueError):  # unreadable, or another format's: left as it is
            return
        if record.status == "running":
            write_json(summary, {**record.dump(), "status": "killed"})

    def __init__(self, out: Path, **header):
        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fields = {"format_version": FORMAT_VERSION, "status": "running", **header, "machine": machine(),
                        "baseline": None, "candidates": [], "final": None, "llm": None}
        self.save()

    @property
    def trajectory_path(self) -> Path:
        return self.dir / "trajectory.json"

    def save(self) -> None:
        """Validate and write the record; the machine's load as seen now counts towards the run's highest."""
        machine_now = self._fields["machine"]
        machine_now["load_max"] = max(machine_now.get("load_max", machine_now["load_at_start"]), _load())
        self.summary = Summary.written(self._fields, self.dir / "summary.json")
        write_json(self.dir / "summary.json", self.summary.dump())

    def update(self, **fields) -> None:
        self._fields.update(fields)
        self.save()

    def save_profile(self, name: str, profile) -> None:
        """Keep a profile's ranking (JSON) and py-spy's raw stacks for reports."""
        write_json(self.dir / f"{name}.json", profile.as_dict())
        if profile.raw_path and Path(profile.raw_path).exists():
            shutil.copyfile(profile.raw_path, self.dir / f"{name}.raw")
