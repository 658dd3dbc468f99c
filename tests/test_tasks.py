"""Task files: SWE-fficiency records are validated one by one; bad ones are reported by line and id."""
import json
from pathlib import Path

import pytest

from perfagent.runs.tasks import load_tasks

WORKLOAD = "import timeit\n\ndef setup():\n    pass\n\ndef workload():\n    return 1\n\ntimeit.repeat(workload)\n"
GOOD = {"instance_id": "lib__lib-1", "repo": "owner/lib", "base_commit": "a" * 40, "workload": WORKLOAD,
        "patch": "diff --git a/x b/x\n", "PASS_TO_PASS": '["tests/test_x.py::test_a"]', "extra_field": 3}


def test_records_are_validated_one_by_one(tmp_path):
    records = [
        GOOD,
        {**GOOD, "instance_id": "lib__lib-2", "PASS_TO_PASS": [], "covering_tests": ["tests/test_y.py"]},
        {**GOOD, "instance_id": "lib__lib-3", "workload": "def workload():\n    pass\n"},
        {**GOOD, "instance_id": "lib__lib-4", "base_commit": "not-a-sha"},
        {k: v for k, v in GOOD.items() if k != "repo"} | {"instance_id": "lib__lib-5"},
        GOOD,
    ]
    lines = [json.dumps(r) for r in records]
    lines.insert(3, "{not json")
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n\n")
    tasks, bad = load_tasks(path)
    assert [t.instance_id for t in tasks] == ["lib__lib-1", "lib__lib-2"]
    assert tasks[0].tests == ["tests/test_x.py::test_a"] and tasks[1].tests == ["tests/test_y.py"]
    assert [(b.line, b.instance_id) for b in bad] == [(3, "lib__lib-3"), (4, None), (5, "lib__lib-4"),
                                                      (6, "lib__lib-5"), (7, "lib__lib-1")]
    assert "missing: setup()" in bad[0].problem and "not JSON" in bad[1].problem
    assert "base_commit" in bad[2].problem and "repo: Field required" in bad[3].problem
    assert str(bad[4]) == "line 7 (lib__lib-1): duplicate instance_id"


def test_the_shared_sympy_tasks():
    shared = Path(__file__).resolve().parents[2] / "shared" / "swefficiency" / "sympy-dev.jsonl"
    if not shared.exists():
        pytest.skip("shared/ is not beside the project")
    tasks, bad = load_tasks(shared)
    assert len(tasks) == 9 and all(t.repo == "sympy/sympy" and t.patch for t in tasks)
    # one published workload really is broken: `a[-1:j::-1]` is not Python
    assert [(b.instance_id, "invalid syntax" in b.problem) for b in bad] == [("sympy__sympy-24313", True)]
