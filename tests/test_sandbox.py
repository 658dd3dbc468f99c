"""Hostile code is contained: each case runs for real inside the sandbox, bounded (a few hundred processes at most,
small memory and file limits), and the test checks that nothing outside the workspace changed."""
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from sandbox import isolation
from sandbox.run import Limits, child_env, run
from tests.conftest import git, make_repo

PY = sys.executable
needs_bwrap = pytest.mark.skipif(not isolation.available("bubblewrap"), reason="bubblewrap is not installed")


@pytest.fixture
def bwrap():
    previous = isolation.current().level
    yield isolation.configure("bubblewrap")
    isolation.configure(previous)


def _sandboxed(code: str, workspace: Path, **limits) -> "RunResult":  # noqa: F821
    return run([PY, "-c", textwrap.dedent(code)], cwd=workspace, env=child_env(),
               limits=Limits(**{"timeout_s": 20, **limits}))


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                state = (entry / "status").read_text()
                if "State:\tZ" not in state:
                    found.append(int(entry.name))
        except OSError:
            pass
    return found


def test_levels_are_detected_and_described():
    assert isolation.available("rlimits")
    level = isolation.configure("auto")
    assert level.level in isolation.LEVELS and level.level in level.describe()
    with pytest.raises(isolation.IsolationError, match="unknown isolation level"):
        isolation.configure("docker")


@needs_bwrap
def test_fork_bomb_is_capped_and_cleaned_up(bwrap, tmp_path):
    marker = f"forkbomb-{uuid.uuid4().hex}"  # in the code, so on every process's command line
    code = f"""
        import os, time
        # {marker}
        children = 0
        for _ in range(10000):
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
            except OSError:
                break
        print("forked", children, flush=True)
        time.sleep(60)
    """
    result = _sandboxed(code, tmp_path, timeout_s=10, processes=64)
    assert result.timed_out
    forked = int(result.stdout.split()[1])
    assert 10 <= forked < 64, result.stdout
    time.sleep(0.3)
    assert _processes_with(marker) == []


@needs_bwrap
def test_endless_allocation_file_and_sleep(bwrap, tmp_path):
    memory = _sandboxed("x = []\nwhile True: x.append(bytearray(50 << 20))", tmp_path, memory_mb=512)
    assert "out of memory" in memory.failure()
    big = _sandboxed("f = open('big', 'wb')\nwhile True: f.write(b'x' * (1 << 20))", tmp_path, file_mb=16)
    assert "file size limit" in big.failure() and (tmp_path / "big").stat().st_size <= 16 << 20
    sleeper = _sandboxed("import time\ntime.sleep(600)", tmp_path, timeout_s=2)
    assert sleeper.timed_out


@needs_bwrap
def test_no_network_even_to_loopback_outside(bwrap, tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: _accept(server, accepted))
    thread.start()
    code = f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("connected")
        except OSError as exc:
            print("refused", exc)
    """
    result = _sandboxed(code, tmp_path)
    thread.join()
    server.close()
    assert "refused" in result.stdout and accepted == []


def _accept(server, accepted):
    try:
        accepted.append(server.accept())
    except OSError:
        pass


@needs_bwrap
def test_writes_outside_the_workspace_do_not_land(bwrap, tmp_path):
    name = f"perfagent-escape-{uuid.uuid4().hex}"
    outside = tmp_path / "outside"
    outside.mkdir()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    code = f"""
        from pathlib import Path
        for target in [Path.home() / {name!r}, Path("/tmp") / {name!r}, Path({str(outside)!r}) / "x",
                       Path("/usr/local") / {name!r}]:
            try:
                target.write_text("escaped")
                print("wrote", target)
            except OSError as exc:
                print("blocked", target, exc.strerror)
        Path("inside.txt").write_text("ok")
    """
    result = _sandboxed(code, workspace)
    assert result.ok, result.tail()
    assert not (Path.home() / name).exists() and not (Path("/tmp") / name).exists()
    assert not (outside / "x").exists() and not (Path("/usr/local") / name).exists()
    assert (workspace / "inside.txt").read_text() == "ok"


@needs_bwrap
def test_cannot_delete_the_users_git_or_kill_its_parent(bwrap, tmp_path):
    repo = make_repo(tmp_path / "user", {"a.py": "x = 1\n"})
    worktree = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "--detach", str(worktree))
    code = """
        import os, shutil, signal
        gitdir = open(".git").read().split(":", 1)[1].strip()
        user_git = gitdir.split("/.git/")[0] + "/.git"
        shutil.rmtree(user_git, ignore_errors=True)
        print("visible pids", sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:5])
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(-1, signal.SIGKILL)
    """
    result = _sandboxed(code, worktree)
    assert not result.ok
    assert str(os.getpid()) not in result.stdout.split("visible pids")[-1].split("]")[0].split(", ")
    assert git(repo, "log", "--oneline").strip().endswith("initial")
    assert git(repo, "fsck", "--no-progress") == ""


@pytest.mark.skipif(not isolation.available("unshare"), reason="unshare cannot create namespaces here")
def test_unshare_level_has_no_network(tmp_path):
    previous = isolation.current().level
    isolation.configure("unshare")
    try:
        result = _sandboxed("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=2)\n"
                            "except OSError as exc:\n    print(exc.errno)", tmp_path)
    finally:
        isolation.configure(previous)
    assert result.ok and result.stdout.strip() in {"101", "111"}  # network unreachable / refused, own namespace


@needs_bwrap
def test_hostile_candidates_in_a_real_run(small_repo, tmp_path):
    """The run goes on past each hostile candidate, rejects it with a reason, and ends with the honest one."""
    import json

    from tests.conftest import perfagent_branches, repo_state, scripted_session
    from tests.test_optimize import GOOD, _body, invoke

    # spelled so that the static guards do not see them: the sandbox itself must contain them
    hostile = [
        _body("    import os\n    for _ in range(100000):\n        try:\n            getattr(os, 'fo' + 'rk')()\n"
              "        except OSError:\n            break\n    return sorted(set(items))", "Parallelize."),
        _body("    import shutil\n    gitdir = open('.git').read().split(':', 1)[1].strip()\n"
              "    getattr(shutil, 'rm' + 'tree')(gitdir.split('/.git/')[0] + '/.git')\n    return sorted(set(items))",
              "Clean up."),
        _body("    import os\n    getattr(os, 'ki' + 'll')(-1, 9)\n    return sorted(set(items))", "Stop early."),
        _body("    from pathlib import Path\n    (Path.home() / 'perfagent-memo').write_text(repr(items))\n"
              "    return sorted(set(items))", "Memoize in home."),
        _body("    import socket\n    socket.create_connection(('127.0.0.1', 9))\n    return sorted(set(items))",
              "Ask a server."),
    ]
    before = repo_state(small_repo)
    out = tmp_path / "run"
    code, output = invoke("optimize", small_repo, "-w", "bench.py", "-m",
                          scripted_session(tmp_path / "s.json", [*hostile, GOOD]), "--out", out)
    assert code == 0, output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["isolation"].startswith("bubblewrap")
    assert [c["verdict"]["reason"] for c in summary["candidates"]] == ["tests failed"] * 4 + ["unsafe code",
                                                                                            "accepted"]
    assert "Read-only file system" in summary["candidates"][3]["verdict"]["detail"]
    assert not (Path.home() / "perfagent-memo").exists()
    detail = summary["candidates"][1]["verdict"]["detail"]  # the user's .git is read-only or not even visible
    assert "Read-only file system" in detail or "No such file or directory" in detail
    after = repo_state(small_repo)
    assert after["files"] == before["files"] and after["index"] == before["index"]
    assert git(small_repo, "fsck", "--no-progress") == ""
    assert len(perfagent_branches(small_repo)) == 1


@needs_bwrap
def test_credentials_in_home_are_hidden(bwrap, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    (home / ".netrc").write_text("machine x password hunter2")
    (home / "notes.txt").write_text("not a secret")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MY_SERVICE_TOKEN", "t0ken")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    code = f"""
        import os
        from pathlib import Path
        home = Path({str(home)!r})
        print(sorted(os.listdir(home / ".ssh")), repr((home / ".netrc").read_text()), (home / "notes.txt").read_text(),
              os.environ.get("MY_SERVICE_TOKEN"))
    """
    result = run([PY, "-c", textwrap.dedent(code)], cwd=workspace, env=child_env(), limits=Limits(timeout_s=20),
                 readable=[home / "notes.txt"])
    assert result.stdout.split() == ["[]", "''", "not", "a", "secret", "None"], result.tail()
