"""The behaviour monitor (sandbox/monitor.py) in real sandboxed processes: it sees what code does whatever names it
used, at the strongest level here (where the sandbox also makes most of it fail), and it compares a candidate with
its baseline. What code in the child can hide from it (blinding it, starting a child it does not see, loading its
own start-up code) is tried at every level: the kernel's count and the monitor's exit report show it."""
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from perfagent.measure.workload import Workload, WorkloadRunner
from perfagent.sandbox import isolation
from perfagent.sandbox.behaviour import TAMPERED, Event, allow_hint, check_allow_list, new_behaviour, tasks_at_once
from perfagent.sandbox.cgroups import pids_root
from perfagent.config import Settings
from perfagent.sandbox.run import child_env, run
from perfagent.sandbox.testrun import run_pytest
from tests.conftest import SMALL_LIB, make_repo
from tests.test_sandbox import Listener

PY = sys.executable


STRONGEST = isolation.choose("auto")
HERE = [lv for lv in isolation.LEVELS if isolation.available(lv)]


def _run(code: str, workspace: Path, env: dict | None = None, level: isolation.Isolation = STRONGEST):
    return run([PY, "-c", textwrap.dedent(code)], cwd=workspace, env=env or child_env(),
               limits=Settings().limits(timeout_s=30, isolation=level))


def _logged(result) -> set[Event]:
    """What the monitor logged, without the kernel's count of tasks."""
    return {e for e in result.behaviour if e.count is None}


def _kinds(result) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for event in _logged(result):
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
    assert kinds["native"] == {"libc.so.6", "(the program itself)"}  # importing ctypes loads the latter
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
    assert _logged(result) == set()


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


def _marks(what: str) -> str:
    return f"import builtins\nbuiltins.LOADED = getattr(builtins, 'LOADED', []) + [{what!r}]\n"


@pytest.fixture(scope="module")
def own_python(tmp_path_factory) -> str:
    """A virtual environment's interpreter whose own site-packages holds a sitecustomize, a usercustomize (it sees the
    system's site-packages, so site runs usercustomize) and a .pth file that imports a module."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([PY, "-m", "venv", "--without-pip", "--system-site-packages", str(root)], check=True)
    site = next(root.glob("lib/python*/site-packages"))
    (site / "sitecustomize.py").write_text(_marks("own sitecustomize"))
    (site / "usercustomize.py").write_text(_marks("own usercustomize"))
    (site / "own.pth").write_text("import own_hook\n")
    (site / "own_hook.py").write_text(_marks("own .pth import"))
    return str(root / "bin" / "python")


@pytest.mark.parametrize("level", HERE)
def test_start_up_files_come_from_the_interpreter_not_the_worktree(level, own_python, tmp_path):
    """Files Python loads on its own at start-up, put in the worktree (on PYTHONPATH) by a candidate, never run: a
    sitecustomize or usercustomize, a .pth file, the module the interpreter's own .pth file imports, encodings. The
    interpreter's own start-up files run, and the worktree's modules import as before, in child processes too."""
    worktree = tmp_path / "wt"
    (worktree / "encodings").mkdir(parents=True)
    (worktree / "encodings" / "__init__.py").write_text(_marks("worktree encodings"))
    for name in ("sitecustomize", "usercustomize", "own_hook"):
        (worktree / f"{name}.py").write_text(_marks(f"worktree {name}"))
    (worktree / "extra.pth").write_text(_marks("worktree .pth").replace("\n", "; ", 1))
    (worktree / "mine.py").write_text("VALUE = 'worktree module'\n")
    show = "import builtins, mine; print(getattr(builtins, 'LOADED', []), mine.VALUE)"
    code = f"""
        import subprocess, sys
        {show}
        sys.stdout.flush()
        getattr(subprocess, "r" + "un")([sys.executable, "-c", {show!r}])
    """
    result = run([own_python, "-c", textwrap.dedent(code)], cwd=worktree, env=child_env({"PYTHONPATH": str(worktree)}),
                 limits=Settings().limits(timeout_s=30, isolation=isolation.choose(level)))
    assert result.ok, result.tail()
    expected = "['own .pth import', 'own sitecustomize', 'own usercustomize'] worktree module"
    assert result.stdout.splitlines() == [expected, expected], result.tail()


def test_task_counts_compare_as_numbers_between_runs_of_one_program():
    """A candidate's runs of a program that reach more tasks at once than any of the baseline's runs of it are new
    behaviour; fewer or as many are not, and runs of another program are not compared with them."""
    tests = [tasks_at_once("python -m pytest", n) for n in (1, 2)]
    harness = tasks_at_once("python harness.py", 1)
    assert new_behaviour([tests[1], tasks_at_once("python -m pytest", 1)], tests + [harness]) == []
    assert new_behaviour([tasks_at_once("python -m pytest", 0)], tests) == []
    assert new_behaviour([tasks_at_once("python -m coverage", 5)], tests) == []  # never run by the baseline
    more = new_behaviour([tasks_at_once("python harness.py", n) for n in (2, 3)] + [Event("network", "x")],
                         tests + [harness])
    assert [e.kind for e in more] == ["process", "network"]
    assert more[0].describe() == ("started processes or threads the unmodified code never did (counted by the kernel: "
                                  "3 at once against 1, running python harness.py)")
    assert new_behaviour(more[:1], [harness], ["process"]) == []
    assert new_behaviour(more[:1], [harness], ["process:git"]) == more[:1]
    assert new_behaviour([TAMPERED, Event("write", "/x")], [], ["write"]) == [TAMPERED]
    assert allow_hint(TAMPERED) == "" and allow_hint(more[0]) == 'allow it with allow-behaviour = ["process"]'
    assert allow_hint(Event("write", "/x")) == 'allow it with allow-behaviour = ["write:..."]'


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
        from perfagent.config import Settings
        from perfagent.sandbox.run import run
        os.register_at_fork(after_in_child=lambda: os.write(os.open({str(marker)!r}, os.O_CREAT | os.O_WRONLY), b"x"))
        result = run(["sh", "-c", "ulimit -v"], cwd=Path({str(tmp_path)!r}),
                     limits=Settings(isolation="rlimits").limits(memory_mb=300))
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


# Each way to blind the monitor from inside the child, then write outside (WRITE()), and what the parent sees: the
# write ("write"), or a monitor that did not report at exit ("monitor"). Each ends the process normally, as a
# candidate that wants its run to count must.
_FIND_THE_LOG = """
    o = __import__("o" + "s")
    for fd in o.listdir("/proc/self/fd"):
        try:
            if o.readlink("/proc/self/fd/" + fd).endswith("behaviour.jsonl"):
                LOG_FD = int(fd)
        except OSError:
            pass
"""
_MONITOR = """
    MONITOR = [x for x in getattr(__import__("g" + "c"), "get_objects")() if hasattr(x, "log_path")][0]
"""
BLINDING = {
    "re-entrancy flag set through gc": ("write", """
        for x in getattr(__import__("g" + "c"), "get_objects")():
            if hasattr(x, "ins" + "ide"):
                setattr(getattr(x, "ins" + "ide"), "hand" + "ling", True)
        WRITE()
    """),
    "the flag set in a thread of its own": ("write", """
        threading = __import__("thre" + "ading")
        def blind_then_write():
            for x in getattr(__import__("g" + "c"), "get_objects")():
                if hasattr(x, "ins" + "ide"):
                    setattr(getattr(x, "ins" + "ide"), "hand" + "ling", True)
            WRITE()
        worker = threading.Thread(target=blind_then_write)
        worker.start()
        worker.join()  # the write in the worker only, where the flag is set
    """),
    "handlers emptied": ("monitor", """
        for x in getattr(__import__("g" + "c"), "get_objects")():
            if isinstance(x, dict) and "open" in x and "os.remove" in x:
                x.clear()
        WRITE()
    """),
    "log closed": ("monitor", _FIND_THE_LOG + """
    o.close(LOG_FD)
    WRITE()
    """),
    "log dup2-ed over": ("monitor", _FIND_THE_LOG + """
    getattr(o, "du" + "p2")(o.open("/dev/null", o.O_WRONLY), LOG_FD)
    WRITE()
    """),
    "os.write replaced": ("write", """
        setattr(__import__("o" + "s"), "wr" + "ite", lambda fd, data: len(data))
        WRITE()
    """),
    "an audit hook of its own that raises": ("write", """
        def veto(event, args):
            if event == "open" and "perfagent" not in str(args[0]):
                raise RuntimeError("vetoed")
        getattr(__import__("s" + "ys"), "addaudit" + "hook")(veto)
        WRITE()
    """),
    "the event marked as already logged": ("monitor", _MONITOR + """
    MONITOR.seen.add(("write", OUTSIDE))
    WRITE()
    """),
    "every path made a root": ("monitor", _MONITOR + """
    MONITOR.roots = ("/",)
    WRITE()
    """),
    "a forked child reports for it": ("monitor", _FIND_THE_LOG + """
    if o.fork() == 0:
        __import__("sys").exit(0)  # at-exit handlers run in the child
    o.wait()
    o.close(LOG_FD)
    WRITE()
    """),
}


@pytest.mark.parametrize("move", BLINDING)
@pytest.mark.parametrize("level", HERE)
def test_a_blinded_monitor_is_caught(level, move, tmp_path):
    """The write outside after the move is logged, or the monitor's missing exit report gives the move away."""
    outside = Path(tempfile.mkdtemp(prefix="perfagent-test-", dir="/var/tmp")).resolve()  # visible at every level
    workspace = tmp_path / "ws"
    workspace.mkdir()
    expected, blind = BLINDING[move]
    code = textwrap.dedent(f"""
        OUTSIDE = {str(outside)!r}
        def WRITE():
            try:
                getattr(__import__("built" + "ins"), "op" + "en")(OUTSIDE + "/memo", "w").write("x")
            except Exception:
                pass
    """) + textwrap.dedent(blind)
    try:
        result = _run(code, workspace, level=isolation.choose(level))
    finally:
        shutil.rmtree(outside)
    assert result.ok, result.tail()
    kinds = _kinds(result)
    if expected == "write":
        assert kinds.get("write") == {str(outside)} and "monitor" not in kinds, result.behaviour
    else:
        assert TAMPERED in result.behaviour, result.behaviour


def test_the_exit_report_is_required_of_a_normal_exit_only(tmp_path):
    """A Python process that exits normally reports; one that fails need not; one that leaves by os._exit(0), which
    skips every at-exit handler, is reported as tampering."""
    finishes = _run("print('done')", tmp_path)
    fails = _run("raise SystemExit(3)", tmp_path)
    skips = _run("getattr(__import__('o' + 's'), '_ex' + 'it')(0)", tmp_path)
    assert finishes.ok and _logged(finishes) == _logged(fails) == set()
    assert skips.ok and _logged(skips) == {TAMPERED}


@pytest.mark.parametrize("level", HERE)
def test_children_the_monitor_cannot_see_are_counted_by_the_kernel(level, tmp_path):
    """A Python child started with no audit event and without site (so without the monitor), and a shell started
    from C: the kernel counts both, and loading the program's own C functions is native code."""
    unwatched = """
        import os, sys
        spawn = getattr(__import__("multiprocessing.util", fromlist=["x"]), "spawnv" + "_passfds")
        pid = spawn(os.fsencode(sys.executable), [sys.executable, "-I", "-S", "-c", "pass"], ())
        getattr(os, "wait" + "pid")(pid, 0)
    """
    native = """getattr(getattr(__import__("ct" + "ypes"), "CDLL")(None), "sys" + "tem")(b"true")"""
    plain, spawned, shelled = (_run(code, tmp_path, level=isolation.choose(level)) for code in ("", unwatched, native))
    assert plain.ok and spawned.ok and shelled.ok, spawned.tail() + shelled.tail()
    assert _logged(spawned) == set()
    assert "(the program itself)" in _kinds(shelled)["native"]
    counted = [new_behaviour(run.behaviour, plain.behaviour, ["native"]) for run in (spawned, shelled)]
    if pids_root() is None:  # RLIMIT_NPROC caps the count, and nothing counts it
        assert counted == [[], []]
        return
    assert [[e.describe() for e in events] for events in counted] == [[
        "started processes or threads the unmodified code never did (counted by the kernel: 2 at once against 1, "
        "running python)"]] * 2


@pytest.mark.parametrize("level", HERE)
def test_the_unmodified_codes_runs_compare_equal_to_themselves(level, tmp_path):
    """A workload run and a test run under coverage, each twice on the same code: the same behaviour, the same count
    of tasks, so an honest candidate is never rejected for its task count."""
    repo = make_repo(tmp_path / "repo", SMALL_LIB)
    limits = Settings().limits(timeout_s=60, isolation=isolation.choose(level))
    workloads, tests = [], []
    for attempt in range(2):
        runner = WorkloadRunner(Workload.parse("bench.py", repo), PY, tmp_path, limits)
        runner.result(repo)
        workloads.append(runner.behaviour(repo))
        cov = tmp_path / f"cov{attempt}" / "coverage.db"
        cov.parent.mkdir()
        suite = run_pytest(repo, [], python=PY, tmp=tmp_path / f"t{attempt}", limits=limits, coverage_file=cov)
        assert suite.process.ok, suite.process.tail()
        tests.append(set(suite.process.behaviour))
    for first, second in (workloads, tests):
        assert new_behaviour(first, second) == new_behaviour(second, first) == [], (first, second)
        assert first == second
        assert [e.count for e in first if e.count is not None] == ([1] if pids_root() else [])


THREADS = """\
import threading


def test_threads():
    ready = threading.Barrier({n} + 1)
    workers = [threading.Thread(target=ready.wait) for _ in range({n})]
    for worker in workers:
        worker.start()
    ready.wait()
    for worker in workers:
        worker.join()
"""


def test_a_task_count_the_unmodified_codes_tests_reach_again_is_not_evidence(tmp_path):
    """How many threads overlap in a test run depends on the machine's load, and the baseline ran the tests otherwise
    (per file, then together), so its recorded count can be lower than its own code reaches: the unmodified code
    runs the candidate's test command again, and a count it reaches too rejects nothing. A thread more than it ever
    reaches is still unsafe (the unwatched child)."""
    from dataclasses import replace

    from perfagent.loop.verdict import Judge, Reference

    if pids_root() is None:
        pytest.skip("no pids cgroup here: nothing counts tasks (RLIMIT_NPROC only caps them)")
    repo = make_repo(tmp_path / "repo", {**SMALL_LIB, "tests/test_threads.py": THREADS.format(n=3)})
    limits = Settings().limits(timeout_s=60)
    baseline = run_pytest(repo, ["tests/test_threads.py"], python=PY, tmp=tmp_path / "b", limits=limits)
    [counted] = [e for e in baseline.process.behaviour if e.count is not None]
    unlucky = {replace(counted, count=counted.count - 2)}  # a baseline whose threads happened not to overlap
    runner = WorkloadRunner(Workload.parse("bench.py", repo), PY, tmp_path / "w", limits)
    judge = Judge(runner, PY, tmp_path / "j", None, (1,), "bench.py", 5.0, Settings().max_memory_growth)
    ref = Reference(repo, frozenset({"tests/test_threads.py::test_threads"}), {}, 1.0,
                    {"tests/test_threads.py": 1.0}, frozenset(), behaviour=frozenset(unlucky))
    same = make_repo(tmp_path / "same", {**SMALL_LIB, "tests/test_threads.py": THREADS.format(n=3)})
    assert judge._tests(same, ref, ["tests/test_threads.py"])[1] is None
    one_more = make_repo(tmp_path / "more", {**SMALL_LIB, "tests/test_threads.py": THREADS.format(n=4)})
    verdict = judge._tests(one_more, ref, ["tests/test_threads.py"])[1]
    assert verdict is not None and verdict.reason == "unsafe behaviour"
    assert f"{counted.count + 1} at once against {counted.count}, running" in verdict.detail


ORDER_DEPENDENT = {
    "mylib/__init__.py": "",
    "bench.py": "from mylib.clock import double\n\n\ndef setup():\n    pass\n\n\ndef workload():\n    return double(2)\n",
    "mylib/clock.py": """\
        _warned = []


        def leap_seconds():
            if not _warned:  # the first caller in a process meets the expired table's warning, as an error
                _warned.append(1)
                raise RuntimeError("leap-second file is expired")
            return 37


        def double(x):
            return 2 * x
        """,
    "tests/test_clock.py": """\
        from mylib.clock import double, leap_seconds


        def test_first_caller():
            assert leap_seconds() == 37


        def test_second_caller():
            assert leap_seconds() == 37


        def test_double():
            assert double(2) == 4
        """,
}


def test_a_test_that_fails_the_unmodified_code_under_the_same_command_rejects_nothing(tmp_path):
    """A repository's tests can depend on their order (astropy 5.1's expired leap-second warning fails whichever test
    first needs the table): the baseline's first caller fails and is left out, so in a candidate's run the next one
    fails. The unmodified code fails it too under that very command: it guards nothing there, is left out, and the
    tests run again. A test the candidate breaks still rejects it."""
    from perfagent.loop.verdict import Judge, Reference

    repo = make_repo(tmp_path / "repo", ORDER_DEPENDENT)
    limits = Settings().limits(timeout_s=60)
    runner = WorkloadRunner(Workload.parse("bench.py", repo), PY, tmp_path / "w", limits)
    judge = Judge(runner, PY, tmp_path / "j", None, (1,), "bench.py", 5.0, Settings().max_memory_growth)
    tests = "tests/test_clock.py"
    ref = Reference(repo, frozenset({f"{tests}::test_second_caller", f"{tests}::test_double"}), {}, 1.0,
                    {tests: 1.0}, frozenset(), excluded_tests=frozenset({f"{tests}::test_first_caller"}))
    same = make_repo(tmp_path / "same", ORDER_DEPENDENT)
    checked, verdict = judge._tests(same, ref, [tests])
    assert verdict is None, verdict.detail
    assert checked == [f"{tests}::test_double"]
    broken = make_repo(tmp_path / "broken", {**ORDER_DEPENDENT, "mylib/clock.py": textwrap.dedent(
        ORDER_DEPENDENT["mylib/clock.py"]).replace("return 2 * x", "return 3 * x")})
    verdict = judge._tests(broken, ref, [tests])[1]
    assert verdict is not None and verdict.reason == "tests failed" and verdict.tests_failed == [f"{tests}::test_double"]
