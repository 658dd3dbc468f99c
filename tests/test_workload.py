"""Workload specs and running them in fresh sandboxed processes: python files (SWE-fficiency style) and commands."""
import sys

import pytest

from perfagent.config import ConfigError, assignments, load_settings
from perfagent.localize.hotspots import ProfileOptions, profile_workload
from perfagent.measure.workload import (OWN_INPUT, PERTURBED_INPUT, Workload, WorkloadError, WorkloadFailed,
                                        WorkloadRunner)
from tests.conftest import RLIMITS, SMALL_LIB, make_repo

SWEFFICIENCY_STYLE = r'''
import timeit
import statistics
from mylib.core import unique_sorted

data = None


def setup():
    global data
    data = list(range(300)) * 3


def workload():
    with open("calls.log", "a") as log:
        log.write("call\n")
    return unique_sorted(data)[:5]


runtimes = timeit.repeat(workload, number=1, repeat=25, setup=setup)
print("Mean:", statistics.mean(runtimes))
print("Std Dev:", statistics.stdev(runtimes))
'''


def _runner(workload, tmp_path, **limits):
    return WorkloadRunner(workload, sys.executable, tmp_path, RLIMITS.limits(**{"timeout_s": 60, **limits}))


def test_swefficiency_workload_runs_without_its_timing_loop(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "wl.py": SWEFFICIENCY_STYLE})
    workload = Workload.parse("wl.py", repo)
    assert workload.kind == "python" and workload.repo_relative == "wl.py"
    runner = _runner(workload, tmp_path)
    result, seconds = runner.result(repo)
    assert result["items"] == [0, 1, 2, 3, 4] and seconds > 0
    assert (repo / "calls.log").read_text() == "call\n", "the top-level timeit loop is not run"
    loops = runner.calibrate(repo, 0.05)
    assert 1 <= loops <= 1000
    timing = runner.sample(repo, loops)
    assert 0 < timing.wall < 1 and 0 <= timing.cpu < 1  # CPU clocks here tick coarsely: a short call can read 0


CACHED = """
CACHE = {}


def setup():
    pass  # does not reset CACHE: only a process's first call does the work


def workload():
    if "total" not in CACHE:
        CACHE["total"] = sum(i * i for i in range(SIZE))
    return CACHE["total"]
"""


def test_calibration_times_only_first_calls_when_later_calls_hit_a_cache(tmp_path):
    repo = make_repo(tmp_path / "r", {"cached.py": "SIZE = 1_000_000\n" + CACHED,
                                      "plain.py": "SIZE = 20_000\n" + CACHED.replace("if", "if True or")})
    cached = _runner(Workload.parse("cached.py", repo), tmp_path)
    assert cached.calibrate(repo, 0.2) == 1
    first, later = cached.cold_start
    assert first > 3 * later and first > 0.005
    plain = _runner(Workload.parse("plain.py", repo), tmp_path)
    assert plain.calibrate(repo, 0.2) > 1 and plain.cold_start is None


def test_a_first_call_slowed_once_is_not_taken_for_a_cache(tmp_path):
    """A first call 20x slower than the rest in one process only (the machine preempted it, here: a sleep the first
    process alone takes) is not a cold start: a second process does not show it, so the calls are timed as usual."""
    once = ("import os, time\nSIZE = 20_000\n\n\ndef setup():\n    global slow\n"
            "    slow = not os.path.exists('slowed-once')\n    open('slowed-once', 'a').close()\n\n\n"
            "def workload():\n    global slow\n    if slow:\n        time.sleep(0.05)\n        slow = False\n"
            "    return sum(i * i for i in range(SIZE))\n")
    repo = make_repo(tmp_path / "r", {"once.py": once})
    runner = _runner(Workload.parse("once.py", repo), tmp_path)
    assert runner.calibrate(repo, 0.2) > 1 and runner.cold_start is None
    assert (repo / "slowed-once").exists()  # the first process did take the slow first call


def test_workload_outside_the_repository(tmp_path):
    repo = make_repo(tmp_path / "r", SMALL_LIB)
    (tmp_path / "outside.py").write_text(SWEFFICIENCY_STYLE)
    workload = Workload.parse(str(tmp_path / "outside.py"), repo)
    assert workload.repo_relative is None
    assert _runner(workload, tmp_path).result(repo)[0]["items"] == [0, 1, 2, 3, 4]


def test_workload_exception_is_its_result(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "wl.py": "def setup():\n    pass\n\n\ndef workload():\n"
                                      "    raise ValueError('bad input')\n"})
    result, _ = _runner(Workload.parse("wl.py", repo), tmp_path).result(repo)
    assert result["$"] == "exception" and "ValueError" in str(result) and "bad input" in str(result)


def test_command_workload(tmp_path):
    repo = make_repo(tmp_path / "r", SMALL_LIB)
    command = f"{sys.executable} -c 'from mylib.core import unique_sorted; print(unique_sorted([3, 1, 3]))'"
    workload = Workload.parse(command, repo)
    assert workload.kind == "command" and Workload.parse("python tool.py --n 3", repo).kind == "command"
    runner = _runner(workload, tmp_path)
    assert runner.result(repo)[0] == "[1, 3]\n"
    assert runner.calibrate(repo, 0.1) == 1 and runner.sample(repo, 1).wall > 0
    failing = _runner(Workload.parse("exit 3", repo), tmp_path)
    with pytest.raises(WorkloadFailed, match="exited with status 3"):
        failing.result(repo)


def test_command_workload_is_profiled_with_pyspy(tmp_path):
    """Inside the sandbox too: py-spy gives up when it looks at a shell that is still starting the interpreter."""
    repo = make_repo(tmp_path / "r", SMALL_LIB)
    command = (f"{sys.executable} -c 'from mylib.core import unique_sorted; "
               f"[unique_sorted(list(range(400)) * 3) for _ in range(600)]'")
    profile = profile_workload(repo, Workload.parse(command, repo), python=sys.executable, tmp=tmp_path,
                               limits=RLIMITS.limits(timeout_s=120), options=ProfileOptions(seconds=1))
    assert profile.profiler == "py-spy" and profile.hotspots[0].qualname == "unique_sorted"


def test_workload_timeout(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "wl.py": "import time\n\n\ndef setup():\n    pass\n\n\n"
                                      "def workload():\n    time.sleep(60)\n"})
    with pytest.raises(WorkloadFailed, match="timed out after 2 s"):
        _runner(Workload.parse("wl.py", repo), tmp_path, timeout_s=2).result(repo)


@pytest.mark.parametrize("source, message", [
    ("def workload():\n    pass\n", "missing: setup()"),
    ("def setup(:\n", "not valid Python"),
])
def test_invalid_workload_files(tmp_path, source, message):
    (tmp_path / "wl.py").write_text(source)
    with pytest.raises(WorkloadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Workload.parse("wl.py", tmp_path)


def test_settings_from_pyproject_with_flags_winning(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.perfagent]\nworkload = "bench.py"\nmodel = "openai/x"\n'
                                             "max-iterations = 3\nmin-effect = 0.05\n")
    settings = load_settings(tmp_path, {"model": "scripted:s.json", "tests": [], "budget_usd": None})
    assert (settings.workload, settings.model, settings.max_iterations, settings.min_effect) == \
        ("bench.py", "scripted:s.json", 3, 0.05)
    with pytest.raises(ConfigError, match="no workload given: pass --workload"):
        load_settings(tmp_path / "missing", {"model": "x"})
    (tmp_path / "pyproject.toml").write_text("[tool.perfagent\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path, {})


PERTURBABLE = """
def setup():
    pass


def perturbed_setup():
    raise RuntimeError("the perturbed input ran")


def workload():
    return 42
"""


def test_a_result_that_differs_on_the_own_input_ends_the_result_runs(tmp_path):
    """The perturbed input runs only when the own input's result matches: here it would fail, so it did not run."""
    repo = make_repo(tmp_path / "r", {"wl.py": PERTURBABLE})
    runner = _runner(Workload.parse("wl.py", repo), tmp_path)
    own, _ = runner.result(repo)
    results, _ = runner.results(repo, {OWN_INPUT: 41, PERTURBED_INPUT: 41})
    assert list(results) == [OWN_INPUT]
    with pytest.raises(WorkloadFailed, match="the perturbed input ran"):
        runner.results(repo, {OWN_INPUT: own, PERTURBED_INPUT: own})


def test_sample_settings_are_checked_together(tmp_path):
    base = {"workload": "w.py", "model": "m"}
    with pytest.raises(ConfigError, match="min-samples must not exceed max-samples"):
        load_settings(tmp_path, {**base, "min_samples": 12, "max_samples": 10})
    with pytest.raises(ConfigError, match="decision-rule paired needs min-samples >= 8"):
        load_settings(tmp_path, {**base, "decision_rule": "paired"})
    assert load_settings(tmp_path, {**base, "decision_rule": "paired", "min_samples": 10}).min_samples == 10


def test_settings_from_the_environment_between_pyproject_and_the_command_line(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.perfagent]\nworkload = "bench.py"\nmodel = "m"\n'
                                             "min-effect = 0.05\nmax-iterations = 3\n")
    environ = {"PERFAGENT_MIN_EFFECT": "0.07", "PERFAGENT_MAX_ITERATIONS": "4", "PERFAGENT_TESTS": "a.py, b.py",
               "PERFAGENT_SCREENSHOT_DIR": "/elsewhere"}  # a variable that names no setting is not one
    settings = load_settings(tmp_path, {"max_iterations": 9, **assignments(["allow-behaviour=process:git,network"])},
                             environ)
    assert (settings.min_effect, settings.max_iterations, settings.tests) == (0.07, 9, ["a.py", "b.py"])
    assert settings.allow_behaviour == ["process:git", "network"]
    with pytest.raises(ConfigError, match=r"invalid value \"a lot\" for min-effect \(PERFAGENT_MIN_EFFECT\)"):
        load_settings(tmp_path, {}, {"PERFAGENT_MIN_EFFECT": "a lot"})
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        assignments(["min-effect"])
