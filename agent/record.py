"""The run directory: summary.json rewritten after every step, so a crash loses nothing already decided."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


class RunRecord:
    def __init__(self, out: Path, **header):
        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.summary = {"status": "running", **header, "baseline": None, "candidates": [], "final": None,
                        "llm": None}
        self.save()

    @property
    def trajectory_path(self) -> Path:
        return self.dir / "trajectory.json"

    def save(self) -> None:
        write_json(self.dir / "summary.json", self.summary)

    def update(self, **fields) -> None:
        self.summary.update(fields)
        self.save()

    def add_candidate(self, entry: dict) -> None:
        self.summary["candidates"].append(entry)
        self.save()

    def save_profile(self, name: str, profile) -> None:
        """Keep a profile's ranking (JSON) and py-spy's raw stacks for reports."""
        write_json(self.dir / f"{name}.json", profile.as_dict())
        if profile.raw_path and Path(profile.raw_path).exists():
            shutil.copyfile(profile.raw_path, self.dir / f"{name}.raw")
