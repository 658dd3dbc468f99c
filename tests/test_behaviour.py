"""The behaviour monitor (sandbox/monitor.py) in real sandboxed processes: it sees what code does whatever names it
used, at the strongest level here (where the sandbox also makes most of it fail), and it compares a candidate with
its baseline."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from perfagent.sandbox import isolation
from perfagent.sandbox.behaviour import Event, check_allow_list, new_behaviour
from perfagent.sandbox.run import Limits, child_env, run
from tests.test_sandbox import Listener

PY = sys.executable


STRONGEST = isolation.choose("auto")


def _run(code: str, workspace: Path, env: dict | None = None, level: isolation.Isolation = STRONGEST):
    return run([PY, "-c", textwrap.dedent(code)], cwd=workspace, env=env or child_env(),
               limits=Limits(timeout_s=30, isolation=level))


def _kinds(result) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for event in result.behaviour:
        kinds.setdefault(event.kind, set()).add(event.subject)
    return kinds


def test_what_hidden_code_does_is_seen(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    listener = Listener()
    code = f"""
        imp = __import__
        env = getattr(imp("o" + "s"), "env" + "iron")
        env.get("OPENAI" + "_API_KEY")
        for attempt in [
            lambda: getattr(imp("built" + "ins"), "op" + "en")({str(outside / "note")!r}, "w").write("x"),
            lambda: getattr(imp("sub" + "process"), "r" + "un")(["true"]),
            lambda: getattr(imp("so" + "cket"), "create_connection")(("127.0.0.1", {listener.port}), 1),
            lambda: getattr(imp("ct" + "ypes"), "CDLL")("libc.so.6"),
            lambda: getattr(imp("o" + "s"), "ki" + "ll")({os.getpid()}, 0),
            lambda: getattr(imp("o" + "s"), "re" + "move")({str(outside / "gone")!r}),
        ]:
            try:
                attempt()
            except Exception:
                pass
    """
    try:
        result = _run(code, workspace)
    finally:
        listener.close()
    assert result.ok, result.tail()
    kinds = _kinds(result)
    assert kinds["write"] == {str(outside)}
    assert kinds["process"] == {"true"}
    assert "connect 127.0.0.1" in kinds["network"]
    assert kinds["native"] == {"libc.so.6"}
    assert kinds["signal"] == {"signal 0"}
    assert kinds["secret"] == {"OPENAI_API_KEY"}
    described = {e.describe() for e in result.behaviour}
    assert f"opened for writing {outside / 'note'}" in described and f"deleted {outside / 'gone'}" not in described
    # one event per kind and subject: the deletion in the same folder adds nothing new


def test_ordinary_work_is_not_an_event(tmp_path):
    """Writing in the workspace and the temporary folder, importing (bytecode caches), copying the environment
    for a child Python, reading ordinary files: none of it is logged."""
    code = """
        import json, os, subprocess, sys, tempfile
        open("out.txt", "w").write("x")
        with tempfile.NamedTemporaryFile("w", delete=False) as f:
            f.write("y")
        os.makedirs("pkg/sub", exist_ok=True)
        open("pkg/__init__.py", "w").close()
        open("pkg/sub/__init__.py", "w").write("VALUE = 1")
        sys.path.insert(0, os.getcwd())
        import pkg.sub
        env = dict(os.environ)
        print(open("/etc/hostname").read() != "", len(env) > 0)
    """
    result = _run(code, tmp_path)
    assert result.ok, result.tail()
    assert result.behaviour == frozenset()


def test_child_pythons_are_watched_and_the_log_is_off_limits(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    workspace = tmp_path / "ws"
    workspace.mkdir()
    code = f"""
        import os, subprocess, sys
        log = os.environ["PERFAGENT_BEHAVIOUR_LOG"]
        for attempt in [lambda: open(log, "w"), lambda: open(log).read(), lambda: os.remove(log)]:
            try:
                attempt()
                print("touched")
            except PermissionError:
                print("refused")
        subprocess.run([sys.executable, "-c", "open({str(outside / 'from-child')!r}, 'w')"])
    """
    result = _run(code, workspace)
    assert result.stdout.split() == ["refused"] * 3, result.tail()
    assert str(outside) in _kinds(result)["write"]  # written by the grandchild


def test_the_projects_own_sitecustomize_still_runs(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import builtins\nbuiltins.PROJECT_SITE = 'loaded'\n")
    result = _run("print(PROJECT_SITE)", tmp_path, child_env({"PYTHONPATH": str(site)}))
    assert result.stdout.strip() == "loaded", result.tail()


def test_new_behaviour_is_what_the_baseline_never_did():
    baseline = {Event("process", "git", "started git status"), Event("write", "/root/.cache/x", "")}
    candidate = {Event("process", "git", "started git log"), Event("write", "/root/.cache/x", "another file"),
                 Event("network", "connect 10.0.0.1", "connect 10.0.0.1:80"), Event("write", "/tmp", "opened /tmp/x")}
    assert [e.subject for e in new_behaviour(candidate, baseline)] == ["/tmp", "connect 10.0.0.1"]
    assert [e.subject for e in new_behaviour(candidate, baseline, ["network"])] == ["/tmp"]
    assert new_behaviour(candidate, baseline, ["network:connect 10.*", "write:/tmp"]) == []
    assert new_behaviour(candidate, baseline, ["network:connect 192.*"])[-1].kind == "network"
    check_allow_list(["process:git", "write:~/.cache/*"])
    with pytest.raises(ValueError, match="allow-behaviour entry 'files'"):
        check_allow_list(["files"])


def test_children_start_with_no_python_code_between_fork_and_exec(tmp_path):
    """Limits and cgroup membership are set by sandbox/launch.py after exec, not in preexec_fn (which Python
    documents as unsafe with threads): Python code run between fork and exec, such as an at-fork hook, never runs."""
    marker = tmp_path / "forked-child-ran-python"
    script = f"""
        import os
        from pathlib import Path
        from perfagent.sandbox.run import Limits, run
        os.register_at_fork(after_in_child=lambda: os.write(os.open({str(marker)!r}, os.O_CREAT | os.O_WRONLY), b"x"))
        result = run(["sh", "-c", "ulimit -v"], cwd=Path({str(tmp_path)!r}), limits=Limits(memory_mb=300))
        print(result.stdout.strip())
    """
    out = subprocess.run([PY, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == str(300 << 10), out.stderr  # the limit is set all the same
    assert not marker.exists()


@pytest.mark.parametrize("level", [lv for lv in isolation.LEVELS if isolation.available(lv)])
def test_a_write_through_a_folder_handle_is_seen(tmp_path, level):
    """os.open(name, dir_fd=...) writes by a bare name: the handle on the folder outside is what gives it away. The
    folder is outside /tmp, so that it is visible at every level (bubblewrap gives the child a /tmp of its own)."""
    outside, workspace = Path(tempfile.mkdtemp(prefix="perfagent-test-", dir="/var/tmp")), tmp_path / "ws"
    workspace.mkdir()
    code = f"""
        o = __import__("o" + "s")
        try:
            folder = o.open({str(outside)!r}, o.O_RDONLY)
            o.close(o.open("memo", o.O_WRONLY | o.O_CREAT, dir_fd=folder))
        except OSError:
            pass
        o.close(o.open(".", o.O_RDONLY))  # a handle on the workspace is ordinary
    """
    try:
        result = _run(code, workspace, level=isolation.choose(level))
    finally:
        shutil.rmtree(outside)
    assert result.ok, result.tail()
    assert _kinds(result) == {"write": {str(outside.resolve())}}, result.behaviour
