"""The bundled example, optimized with its recorded session: the acceptance scenario of the README's first command.
A whole run of seven candidates (over a minute, and its small gains and losses are decided on timing), so it runs
with -m end_to_end; the suite tests its parts (tests/test_optimize.py, test_report.py, test_integrity.py)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import EXAMPLE, git, perfagent_branches
from tests.test_optimize import invoke


@pytest.mark.end_to_end
def test_bundled_example_keeps_the_speedups_and_rejects_the_rest(example_repo, tmp_path, without_bubblewrap):
    """As a pip user without bubblewrap runs it: the landlock level, profiled by py-spy, with flame graphs."""
    out = tmp_path / "run"
    code, output = invoke("optimize", example_repo, "-w", "workload.py", "-m",
                          f"scripted:{EXAMPLE.parent / 'textstats.session.json'}", "--out", out)
    assert code == 0, output
    assert json.loads((out / "profile-before.json").read_text())["profiler"] == "py-spy"
    assert (out / "report.html").read_text().count('<svg class="flamegraph"') >= 2  # before and after
    assert "baseline timing noise " in output and "baseline: timing noise " in output  # at the start and the end
    summary = json.loads((out / "summary.json").read_text())
    assert summary["isolation"].startswith("landlock")
    for c in summary["candidates"]:
        if c["verdict"]["reason"] == "accepted":  # each kept patch: speedup, interval and p-value, in the table too
            speed = c["verdict"]["speed"]
            assert speed["ci_low"] > 1.03 and speed["p_value"] < 0.01
            assert f"{speed['speedup']:.2f}x [{speed['ci_low']:.2f}, {speed['ci_high']:.2f}]" in output
    verdicts = [(c["verdict"]["reason"], c["files"]) for c in summary["candidates"]]
    assert [v[0] for v in verdicts] == ["accepted", "accepted", "edits a protected file", "tests failed",
                                        "result changed", "not faster", "accepted"]
    assert "tests/test_tokenize.py" in verdicts[2][1]
    assert "tests/test_tokenize.py is a test file" in summary["candidates"][2]["verdict"]["detail"]
    assert summary["candidates"][5]["verdict"]["speed"]["ci_high"] < 1.0
    # the last one renames a loop variable besides its real change: minimal patches take the rename back, and keep
    # the removal of the import the change made unused
    last = summary["candidates"][6]
    assert [d["group"] for d in last["dropped"]] == ["textstats.tokenize:tokenize"]
    assert "for piece in" in last["full_diff"] and "for piece in" not in last["diff"] and "-import re" in last["diff"]
    # the misquoted SEARCH was sent back and corrected within the second candidate
    trajectory = json.loads((out / "trajectory.json").read_text())
    assert [r["purpose"] for r in trajectory].count("fix edit") == 1

    branch = summary["branch"]
    assert perfagent_branches(example_repo) == [branch]
    log = git(example_repo, "log", "--format=%s", f"main..{branch}").splitlines()
    assert len(log) == 3 and all(s.startswith("perfagent: ") for s in log)
    final = summary["final"]["speed"]
    assert final["decision"] == "faster" and final["ci_low"] > 1.5
    memory = summary["final"]["memory"]  # the branch's peak memory per call, against the original's
    assert memory["baseline_peak_bytes"] == summary["baseline"]["memory"]["peak_bytes"] > 0
    assert memory["candidate_peak_bytes"] > 0

    check = tmp_path / "check"
    git(example_repo, "worktree", "add", "-q", str(check), branch)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=check,
                           capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout

