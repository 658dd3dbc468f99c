"""sandbox.run: timeouts, group kills, limits and environment scrubbing on real processes."""
import os
import signal
import subprocess
import sys
import textwrap
import time


from perfagent.sandbox.run import child_env, run
from tests.conftest import RLIMITS, deliver_sigint

PY = sys.executable


# These tests check process-group handling by host pids, so they run without namespaces (RLIMITS).


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_ok_and_output(tmp_path):
    result = run([PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], cwd=tmp_path,
                 limits=RLIMITS.limits())
    assert result.ok and result.stdout == "out\n" and result.stderr == "err\n"


def test_nonzero_exit_reports_status(tmp_path):
    result = run([PY, "-c", "raise SystemExit(3)"], cwd=tmp_path, limits=RLIMITS.limits())
    assert not result.ok and result.failure() == "exited with status 3"


def test_timeout_kills_the_whole_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = textwrap.dedent(f"""
        import subprocess, time
        p = subprocess.Popen(["sleep", "300"])
        open({str(pidfile)!r}, "w").write(str(p.pid))
        time.sleep(300)
    """)
    start = time.monotonic()
    result = run([PY, "-c", script], cwd=tmp_path, limits=RLIMITS.limits(timeout_s=2))
    assert result.timed_out and "timed out" in result.failure()
    assert time.monotonic() - start < 20
    grandchild = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(grandchild)


def test_lingering_background_process_is_killed_after_normal_exit(tmp_path):
    pidfile = tmp_path / "bg.pid"
    script = f"import subprocess; p = subprocess.Popen(['sleep', '300']); open({str(pidfile)!r}, 'w').write(str(p.pid))"
    assert run([PY, "-c", script], cwd=tmp_path, limits=RLIMITS.limits()).ok
    time.sleep(0.2)
    assert not _alive(int(pidfile.read_text()))


def test_memory_limit(tmp_path):
    result = run([PY, "-c", "x = bytearray(2 << 30)"], cwd=tmp_path, limits=RLIMITS.limits(memory_mb=512))
    assert not result.ok and "out of memory" in result.failure()


def test_file_size_limit(tmp_path):
    script = "f = open('big', 'wb')\nfor _ in range(64): f.write(b'x' * (1 << 20))"
    result = run([PY, "-c", script], cwd=tmp_path, limits=RLIMITS.limits(file_mb=8))
    assert not result.ok and "file size limit" in result.failure(), result.failure()
    assert (tmp_path / "big").stat().st_size <= 8 << 20


def test_cpu_limit(tmp_path):
    result = run([PY, "-c", "while True: pass"], cwd=tmp_path, limits=RLIMITS.limits(timeout_s=30, cpu_s=1))
    assert not result.ok and "CPU time limit" in result.failure()


def test_secrets_do_not_reach_children(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-secret")
    monkeypatch.setenv("HARMLESS", "yes")
    env = child_env()
    assert "OPENAI_API_KEY" not in env and "GITHUB_TOKEN" not in env and env["HARMLESS"] == "yes"
    result = run([PY, "-c", "import os; print(sorted(os.environ))"], cwd=tmp_path, limits=RLIMITS.limits())
    assert "OPENAI_API_KEY" not in result.stdout and "HARMLESS" in result.stdout


def test_ctrl_c_kills_the_child_group(tmp_path):
    """A KeyboardInterrupt while waiting kills the child's whole group before propagating."""
    pidfile = tmp_path / "child.pid"
    driver = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from pathlib import Path
        from perfagent.config import Settings
        from perfagent.sandbox.run import run
        script = "import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
        try:
            run([sys.executable, "-c", script], cwd=Path({str(tmp_path)!r}),
                limits=Settings(isolation="rlimits").limits())
        except KeyboardInterrupt:
            print("interrupted")
    """)
    proc = subprocess.Popen([PY, "-c", driver], stdout=subprocess.PIPE, text=True, preexec_fn=deliver_sigint)
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert "interrupted" in out
    time.sleep(0.2)
    assert not _alive(int(pidfile.read_text()))
