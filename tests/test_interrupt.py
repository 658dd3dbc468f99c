"""A run stopped by a signal mid-candidate kills its children, removes its worktrees and keeps its commits."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, deliver_sigint, git, perfagent_branches, scripted_session
from tests.test_optimize import GOOD, search_replace


def _processes_under(root_prefix: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if root_prefix in os.readlink(entry / "cwd"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for init to reap it."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _wait_for(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


# SIGTERM unwinds the same way (a KeyboardInterrupt subclass); tests/test_bad_input.py checks its exit code, 143, and
# that it leaves no branch behind
@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_signal_mid_run(warm_repo, tmp_path, sig):
    slow = search_replace("mylib/core.py", "    return [w for w in re.split(r\"\\W+\", text.lower()) if w]",
                          "    import time\n    time.sleep(300)\n    return []", "Sleep.")
    model = scripted_session(tmp_path / "s.json", [GOOD, slow])
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "perfagent", "optimize", str(warm_repo), "-w", "bench.py",
                             "-m", model, "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=deliver_sigint)
    try:
        _wait_for(lambda: (out / "summary.json").exists() and
                  len(json.loads((out / "summary.json").read_text())["candidates"]) == 1)
        run_id = json.loads((out / "summary.json").read_text())["run_id"]
        children = _wait_for(lambda: [pid for pid in _processes_under(f"perfagent-{run_id}-")  # the second
                                      if "/scratch-" in os.readlink(f"/proc/{pid}/cwd")])  # candidate's tests
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    assert "interrupted" in output
    time.sleep(0.3)
    assert not [pid for pid in children if _running(pid)], "child processes were killed"
    assert git(warm_repo, "worktree", "list").count("\n") == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert [(c["verdict"]["reason"], c["verdict"]["detail"]) for c in summary["candidates"]][1:] == \
        [("not validated", "the run stopped before its verdict (KeyboardInterrupt)")]
    report = (out / "report.html").read_text()  # rendered from what was recorded
    assert "The run was interrupted" in report and "Use a set to deduplicate." in report
    [branch] = perfagent_branches(warm_repo)
    assert git(warm_repo, "rev-list", "--count", f"main..{branch}").strip() == "1", "the accepted commit stays"
    assert git(warm_repo, "status", "--porcelain") == ""
