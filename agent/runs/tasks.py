"""Task files for batch runs: JSON lines in SWE-fficiency's format, validated record by record. GSO's `gt_diff`
(the expert patch) and `install_commands` (the setup) are read too; its problem scripts define `experiment()`
rather than `workload()` and must be converted.

A bad record is reported with its line and id and left out; it never stops the others.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

from perfagent.measure.workload import workload_functions
from perfagent.repos.diffs import patched_files


class Task(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    instance_id: str = Field(min_length=1)
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="owner/name")
    base_commit: str = Field(pattern=r"^[0-9a-f]{7,40}$")
    workload: str = Field(description="Python source defining setup() and workload()")
    patch: str = Field("", validation_alias=AliasChoices("patch", "gt_diff"), description="the expert patch")
    test_patch: str = ""
    pass_to_pass: list[str] = Field(default_factory=list, alias="PASS_TO_PASS")
    covering_tests: list[str] = Field(default_factory=list)
    test_cmd: str | None = None
    rebuild_cmd: str | None = None
    setup_cmd: str | None = Field(None, validation_alias=AliasChoices("setup_cmd", "install_commands"))
    gold_speedup: float | None = Field(None, description="the expert speedup the benchmark reported")

    @field_validator("pass_to_pass", "covering_tests", mode="before")
    @classmethod
    def _json_list(cls, value):
        """SWE-bench style files store lists as JSON text."""
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("setup_cmd", mode="before")
    @classmethod
    def _command_list(cls, value):
        """GSO lists its install commands."""
        return " && ".join(value) if isinstance(value, list) else value

    @field_validator("workload")
    @classmethod
    def _defines_setup_and_workload(cls, source: str) -> str:
        workload_functions(source)  # a WorkloadError is a ValueError: pydantic reports its message
        return source

    @property
    def tests(self) -> list[str]:
        """The tests that guard this task: PASS_TO_PASS when given, else the covering test files."""
        return self.pass_to_pass or self.covering_tests

    def test_targets(self, worktree: Path) -> list[str]:
        """What pytest runs for this task in `worktree`: its tests, else the nearest `tests/` folder above each file
        the expert patch edits (as SWE-fficiency falls back to a package's tests when no test module covers it)."""
        if self.tests:
            return self.tests
        folders: dict[str, None] = {}
        for path in patched_files(self.patch):
            for parent in Path(path).parents:
                if (worktree / parent / "tests").is_dir():
                    folders[(parent / "tests").as_posix()] = None
                    break
        return list(folders)


@dataclass(frozen=True)
class BadRecord:
    line: int
    instance_id: str | None
    problem: str

    def __str__(self) -> str:
        return f"line {self.line} ({self.instance_id or 'no instance_id'}): {self.problem}"


def load_tasks(path: Path) -> tuple[list[Task], list[BadRecord]]:
    tasks: list[Task] = []
    bad: list[BadRecord] = []
    seen: set[str] = set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(BadRecord(number, None, f"not JSON: {exc.msg}"))
            continue
        instance_id = record.get("instance_id") if isinstance(record, dict) else None
        try:
            task = Task.model_validate(record)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'record'}: {e['msg']}" for e in exc.errors())
            bad.append(BadRecord(number, instance_id, problems))
            continue
        if task.instance_id in seen:
            bad.append(BadRecord(number, task.instance_id, "duplicate instance_id"))
            continue
        seen.add(task.instance_id)
        tasks.append(task)
    return tasks, bad
