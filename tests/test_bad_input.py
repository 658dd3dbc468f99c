"""Bad input and faults, through the installed `perfagent` command as a user meets them: a clear error on stderr that
says what to fix, the exit code of its kind (docs/usage.md, exit codes), and the user's repository exactly as
it was."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, SMALL_LIB, git, make_repo, perfagent_branches, repo_state, scripted_session, \
    search_replace

PERFAGENT = str(Path(sys.executable).with_name("perfagent"))
USAGE, MODEL_FAILED, USER_CODE_FAILED = 2, 3, 4


def invoke(*args, env=None):
    """The installed command: (exit code, stdout and stderr)."""
    done = subprocess.run([PERFAGENT, *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    return done.returncode, done.stdout + done.stderr


def _run(repo, tmp_path, *extra, model=None, out="run", env=None):
    model = model or scripted_session(tmp_path / "s.json", ["no edit"])
    return invoke("optimize", repo, "--model", model, "--out", tmp_path / out, *extra, env=env)


def _assert_error(repo, before, code, output, *needles, exit_code=USAGE):
    assert code == exit_code, output
    assert "error:" in output and f'File "{ROOT}' not in output  # never perfagent's own frames
    flat = " ".join(output.split())
    for needle in needles:
        assert needle in flat, output
    assert repo_state(repo) == before
    assert perfagent_branches(repo) == []


def test_not_a_git_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    code, output = _run(tmp_path / "plain", tmp_path, "-w", "bench.py")
    assert code == 2 and "not a git repository: run `git init`" in " ".join(output.split())


def test_workload_without_setup_and_workload(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "bad.py": "def run():\n    pass\n"})
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "bad.py")
    _assert_error(repo, before, code, output, "must define top-level functions setup() and workload()",
                  "missing: setup(), workload()")


def test_missing_workload_file(small_repo, tmp_path):
    before = repo_state(small_repo)
    code, output = _run(small_repo, tmp_path, "-w", "nope.py")
    _assert_error(small_repo, before, code, output, "workload file nope.py not found")


def test_workload_that_fails_at_baseline(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "crash.py": "def setup():\n    pass\n\n\ndef workload():\n"
                                      "    raise SystemExit('boom: input file missing')\n"})
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "crash.py")
    _assert_error(repo, before, code, output, "the workload fails on the unmodified code",
                  "boom: input file missing", exit_code=USER_CODE_FAILED)


def test_workload_that_times_out_at_baseline(tmp_path):
    files = {**SMALL_LIB, "hang.py": "import time\n\n\ndef setup():\n    pass\n\n\ndef workload():\n"
                                      "    time.sleep(600)\n"}
    files["pyproject.toml"] += "timeout-s = 3\n"
    repo = make_repo(tmp_path / "r", files)
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "hang.py")
    _assert_error(repo, before, code, output, "the workload fails on the unmodified code", "timed out after 3 s",
                  exit_code=USER_CODE_FAILED)
    assert "timed out after 3 s\n" in output and "timed out after 3 s:" not in output  # nothing printed: no colon


def test_failing_baseline_tests(tmp_path):
    """A test the user named that fails on the unmodified code stops the run; one perfagent chose guards nothing:
    it is left out by its id (it runs first in the file that guards the hot function, so a candidate's run, which
    stops at the first failure, would otherwise check nothing after it), and the run goes on."""
    tests = textwrap.dedent(SMALL_LIB["tests/test_core.py"]).replace(
        "\n\ndef test_tokens", "\n\ndef test_broken():\n    assert unique_sorted([1]) == [2]\n\n\ndef test_tokens", 1)
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "tests/test_core.py": tests})
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "bench.py", "--tests", "tests/test_core.py")
    _assert_error(repo, before, code, output, "1 test fails on the unmodified code",
                  "tests/test_core.py::test_broken", "--allow-failing-tests", exit_code=USER_CODE_FAILED)
    good = search_replace("mylib/core.py", "    seen = []\n    for x in items:\n        if x not in seen:\n"
                          "            seen.append(x)\n    return sorted(seen)", "    return sorted(set(items))")
    code, output = _run(repo, tmp_path, "-w", "bench.py", model=scripted_session(tmp_path / "s2.json", [good]),
                        out="chosen")
    assert code == 0 and "error" not in output, output
    assert "1 test perfagent chose fails on the unmodified code and is left out: tests/test_core.py::test_broken" \
        in " ".join(output.split())
    [candidate] = json.loads((tmp_path / "chosen" / "summary.json").read_text())["candidates"]
    assert candidate["verdict"]["reason"] == "accepted", candidate["verdict"]["detail"]
    assert "tests/test_core.py::test_unique" in candidate["verdict"]["tests_run"]
    assert "tests/test_core.py::test_broken" not in candidate["verdict"]["tests_run"]


def test_missing_api_key_names_the_variable(small_repo, tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    before = repo_state(small_repo)
    code, output = _run(small_repo, tmp_path, "-w", "bench.py", model="anthropic/claude-3-5-sonnet-20240620")
    _assert_error(small_repo, before, code, output, "needs ANTHROPIC_API_KEY: set it in the environment",
                  "a local server given with --api-base needs no key")


def test_invalid_settings_in_pyproject(tmp_path):
    """A misspelt key is named as written, with its file and line and the setting it was probably meant to be."""
    files = {**SMALL_LIB}
    files["pyproject.toml"] += "max-iteration = 3\nmin_efect = 0.1\n"  # misspelt (lines 8 and 9)
    repo = make_repo(tmp_path / "r", files)
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "bench.py")
    _assert_error(repo, before, code, output, "invalid settings:",
                  f"unknown setting max-iteration ({repo}/pyproject.toml, line 8); did you mean max-iterations?",
                  f"unknown setting min_efect ({repo}/pyproject.toml, line 9); did you mean min-effect?")
    assert "Extra inputs" not in output


@pytest.mark.parametrize("extra, env, message", [
    (["--set", "min-effect"], {}, "--set min-effect: expected KEY=VALUE"),
    (["--set", "min-efect=0.1"], {}, "unknown setting min-efect (--set min-efect=0.1); did you mean min-effect?"),
    (["--set", "min-effect=a lot"], {}, 'invalid value "a lot" for min-effect (--set min-effect=a lot): expected a '
                                        'valid number'),
    (["--max-iterations", "0"], {}, "invalid value 0 for max-iterations (--max-iterations): expected greater than or "
                                    "equal to 1"),
    ([], {"PERFAGENT_MAX_SAMPLES": "2"}, 'invalid value "2" for max-samples (PERFAGENT_MAX_SAMPLES): expected greater '
                                         'than or equal to 5'),
    (["--set", "min-samples=12"], {"PERFAGENT_MAX_SAMPLES": "10"}, "min-samples must not exceed max-samples "
                                                                   "(min-samples from --set min-samples=12; max-samples "
                                                                   "from PERFAGENT_MAX_SAMPLES)"),
])
def test_invalid_settings_on_the_command_line_or_in_the_environment(small_repo, tmp_path, extra, env, message):
    before = repo_state(small_repo)
    code, output = _run(small_repo, tmp_path, "-w", "bench.py", *extra, env=env)
    _assert_error(small_repo, before, code, output, message)


def test_unknown_perfagent_variables_are_warned_about_and_ignored(small_repo, tmp_path):
    """On stderr, with the nearest setting; perfagent's internal variables (what its children get) are no settings
    and never warned about."""
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env.update(PERFAGENT_MIN_EFECT="0.1", PERFAGENT_BEHAVIOUR_LOG="/tmp/x", PERFAGENT_WRITABLE="/tmp")
    done = subprocess.run([PERFAGENT, "optimize", small_repo, "-w", "bench.py", "-m", "anthropic/claude-3-5-sonnet",
                           "--out", tmp_path / "run"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == USAGE and done.stdout == ""  # it went on to the next check, the missing key
    assert done.stderr.splitlines() == [
        "warning: PERFAGENT_MIN_EFECT is not a perfagent setting and is ignored; did you mean PERFAGENT_MIN_EFFECT?",
        "error: model 'anthropic/claude-3-5-sonnet' needs ANTHROPIC_API_KEY: set it in the environment (a local "
        "server given with --api-base needs no key)"]


@pytest.mark.parametrize("spec, message", [
    ("scripted:/nonexistent/session.json", "/nonexistent/session.json"),
])
def test_bad_scripted_session(small_repo, tmp_path, spec, message):
    code, output = _run(small_repo, tmp_path, "-w", "bench.py", model=spec)
    assert code == 2 and message in " ".join(output.split())


def test_missing_model(small_repo, tmp_path):
    code, output = invoke("optimize", small_repo, "-w", "bench.py", "--out", tmp_path / "run")
    assert code == 2 and f"no model given: pass --model, set PERFAGENT_MODEL or write model in [tool.perfagent] of " \
        f"{small_repo}/pyproject.toml" in " ".join(output.split())


def test_piped_output_is_not_hard_wrapped(tmp_path):
    """Output to a pipe or a log keeps each message on one line, however long, so it stays greppable."""
    missing = tmp_path / ("a-folder-name-long-enough-to-pass-eighty-columns-" * 3) / "missing"
    result = subprocess.run([str(Path(sys.executable).with_name("perfagent")), "report", str(missing)],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if str(missing) in line]
    assert len(lines) == 1 and "does not exist" in lines[0], result.stdout + result.stderr


def test_no_test_reaches_the_hot_functions(tmp_path):
    """A loud warning that correctness rests on the result alone; with require-tests = true, a stop."""
    files = {**SMALL_LIB, "tests/test_core.py": "def test_arithmetic():\n    assert 1 + 1 == 2\n"}
    repo = make_repo(tmp_path / "r", files)
    code, output = _run(repo, tmp_path, "-w", "bench.py")
    assert code == 1, output  # finished, nothing accepted
    flat = " ".join(output.split())
    assert "warning: no test reaches " in flat and "correctness rests on the workload's result alone" in flat
    before = repo_state(repo)  # the same commit: its baseline comes from the cache
    code, output = invoke("optimize", repo, "-w", "bench.py", "--set", "require-tests=true", "--model",
                          scripted_session(tmp_path / "s2.json", ["no edit"]), "--out", tmp_path / "run2")
    _assert_error(repo, before, code, output, "no test reaches", "(require-tests = true)",
                  "baseline workload measurements: from the cache", exit_code=USER_CODE_FAILED)


def test_named_test_file_that_does_not_exist(small_repo, tmp_path):
    before = repo_state(small_repo)
    code, output = _run(small_repo, tmp_path, "-w", "bench.py", "--tests", "tests/test_missing.py")
    _assert_error(small_repo, before, code, output, "pytest cannot run tests/test_missing.py",
                  "file or directory not found")
    assert "fail on the unmodified code" not in output


def test_named_tests_of_which_none_passes(tmp_path):
    """With --allow-failing-tests, named tests that all fail would leave candidates zero tests to pass."""
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "tests/test_broken.py": "def test_broken():\n    assert 1 == 2\n"})
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "bench.py", "--tests", "tests/test_broken.py", "--allow-failing-tests")
    _assert_error(repo, before, code, output, "none of the tests named with --tests passes on the unmodified code",
                  "(1 fail or are flaky): tests/test_broken.py")


def test_a_suite_pytest_cannot_collect_shows_pytests_own_error(tmp_path):
    repo = make_repo(tmp_path / "r", {**SMALL_LIB, "conftest.py": "import pytest\n\ndef broken(:\n"})
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "bench.py")
    _assert_error(repo, before, code, output, "pytest cannot run the test suite", "SyntaxError")
    assert "fail on the unmodified code" not in output


def test_batch_refuses_a_usd_budget_for_an_unpriced_model_before_any_task(tmp_path):
    code, output = invoke("batch", ROOT / "workloads" / "tasks.jsonl", "--model", "openai/my-local-model",
                          "--api-base", "http://127.0.0.1:9/v1", "--budget-usd", "5", "--out", tmp_path / "b")
    assert code == 2 and "litellm has no price for it" in " ".join(output.split())
    assert not (tmp_path / "b").exists()


# -- the model fails ------------------------------------------------------------------------------------------------
def test_a_model_that_never_answers_fails_fast_with_its_cause(small_repo, tmp_path):
    """One short request before the baseline: the run stops at once, says why (not "HTTP 500", as litellm reports a
    refused connection), exits 3, status "model failed". tests/test_llm.py names the other causes."""
    from tests.fake_openai import serve

    with serve([]) as closed:
        closed_base = closed.base_url  # once the block ends, nothing listens there
    before = repo_state(small_repo)
    code, output = _run(small_repo, tmp_path, "-w", "bench.py", "--api-base", closed_base, model="openai/local-model")
    _assert_error(small_repo, before, code, output, "connection refused: nothing listens at that address",
                  exit_code=MODEL_FAILED)
    assert "HTTP 500" not in output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "model failed" and summary["baseline"] is None  # no baseline work was done


def test_a_model_that_fails_during_the_run_ends_it_as_a_model_failure(warm_repo, tmp_path):
    from tests.fake_openai import serve

    with serve(["OK"]) as server:  # the check passes; then the server has nothing left and answers HTTP 400
        code, output = _run(warm_repo, tmp_path, "-w", "bench.py", "--api-base", server.base_url,
                            model="openai/local-model")
    assert code == MODEL_FAILED, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "model failed" and "HTTP 400" in summary["stop_reason"]
    assert summary["baseline"] is not None and perfagent_branches(warm_repo) == []


# -- runs, folders and repositories ---------------------------------------------------------------------------------
def test_a_bare_repository_needs_a_work_tree(small_repo, tmp_path):
    bare = tmp_path / "bare.git"
    git(small_repo, "clone", "-q", "--bare", str(small_repo), str(bare))
    code, output = _run(bare, tmp_path, "-w", "bench.py")
    assert code == USAGE and "is a bare repository, with no work tree: clone it" in " ".join(output.split()), output


def _crash_repo(tmp_path, name="r"):
    return make_repo(tmp_path / name, {**SMALL_LIB, "crash.py": "def setup():\n    pass\n\n\ndef workload():\n"
                                                             "    raise ValueError('bad input')\n"})


def test_an_out_folder_holding_another_run_is_refused(tmp_path):
    repo = _crash_repo(tmp_path)
    first, _ = _run(repo, tmp_path, "-w", "crash.py")
    assert first == USER_CODE_FAILED
    records = (tmp_path / "run" / "summary.json").read_text()
    code, output = _run(repo, tmp_path, "-w", "crash.py")
    assert code == USAGE and "already holds a run's records: pass another --out" in " ".join(output.split())
    assert (tmp_path / "run" / "summary.json").read_text() == records  # the first run's records are intact


def test_user_code_failures_show_the_users_traceback_only(tmp_path):
    """A workload that raises in calibration (its second call), and one over memory-mb: the user's frames and what
    to fix, exit 4, never perfagent's own frames."""
    files = {**SMALL_LIB,
             "later.py": "from mylib.core import tokens\ncalls = 0\n\n\ndef setup():\n    pass\n\n\n"
                         "def workload():\n    global calls\n    calls += 1\n"
                         "    return tokens(None) if calls > 1 else 1\n",
             "hungry.py": "def setup():\n    pass\n\n\ndef workload():\n    return len(bytearray(600 << 20))\n"}
    files["pyproject.toml"] += "memory-mb = 300\n"
    repo = make_repo(tmp_path / "r", files)
    before = repo_state(repo)
    code, output = _run(repo, tmp_path, "-w", "later.py")
    _assert_error(repo, before, code, output, "the workload (call 2 of", "in a process) raised",
                  'later.py", line 12, in workload', "mylib/core.py", "AttributeError",
                  "Fix the workload or the code it calls: it raised AttributeError", exit_code=USER_CODE_FAILED)
    assert "harness.py" not in output
    code, output = _run(repo, tmp_path, "-w", "hungry.py", out="run2")
    _assert_error(repo, before, code, output, "ran out of memory (limit 300 MB)", exit_code=USER_CODE_FAILED)
    assert "harness.py" not in output


def _wait_for(predicate, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_sigterm_exits_143_and_a_killed_runs_traces_go_with_the_next_run(warm_repo, tmp_path):
    session = scripted_session(tmp_path / "s.json", ["no edit"] * 5)
    runs = []
    for out in ("term", "kill"):
        process = subprocess.Popen([PERFAGENT, "optimize", warm_repo, "-w", "bench.py", "--model", session, "--out",
                                    tmp_path / out], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait_for(lambda: perfagent_branches(warm_repo) and (tmp_path / out / "summary.json").exists()
                  and list(Path("/tmp").glob(f"perfagent-tmp-{process.pid}-*")))
        runs.append((process, perfagent_branches(warm_repo)[0]))
        if out == "term":
            process.send_signal(signal.SIGTERM)
            assert process.wait(60) == 143, process.stdout.read()
            assert perfagent_branches(warm_repo) == []  # it cleaned up after itself
        else:
            process.kill()
            process.wait(60)
    killed, branch = runs[1]
    assert perfagent_branches(warm_repo) == [branch]  # SIGKILL: nothing could clean up
    leftovers = list(Path("/tmp").glob(f"perfagent-tmp-{killed.pid}-*"))
    assert leftovers and json.loads((tmp_path / "kill" / "summary.json").read_text())["status"] == "running"
    code, _ = _run(_crash_repo(tmp_path, "other"), tmp_path, "-w", "crash.py", out="unrelated")  # another repository
    assert code == USER_CODE_FAILED and not any(p.exists() for p in leftovers)  # dead processes' temp folders go
    code, _ = _run(warm_repo, tmp_path, "-w", "bench.py", "--max-iterations", "1", out="next")
    assert code == 1
    assert perfagent_branches(warm_repo) == []  # the killed run's branch had no commit of its own
    assert json.loads((tmp_path / "kill" / "summary.json").read_text())["status"] == "killed"
    assert "perfagent-" not in git(warm_repo, "worktree", "list")


def test_a_batch_task_that_fails_outside_the_model_is_retried_on_resume(tmp_path):
    """A repository missing from the cache: no prediction is written, the task counts as failed, and a resumed
    batch tries it again (and counts it again) instead of taking it as done."""
    record = json.loads((ROOT / "workloads" / "tasks.jsonl").read_text().splitlines()[0])
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(json.dumps({**record, "instance_id": "missing-repo", "repo": "nobody/nothing"}) + "\n")
    out = tmp_path / "out"
    for attempt in (1, 2):
        code, output = invoke("batch", tasks, "--model", "oracle", "--out", out, "--repo-cache", tmp_path / "repos",
                              "--env-cache", tmp_path / "envs")
        assert code == 1 and "resuming" not in output and "missing-repo: failed" in output, output
        results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert len(results) == attempt and results[-1]["status"] == "failed"
        assert "nobody/nothing is not in the repository cache" in results[-1]["error"]
        assert not (out / "predictions.jsonl").exists() or "missing-repo" not in (out / "predictions.jsonl").read_text()


def test_uncommitted_settings_are_read_as_on_disk(small_repo, tmp_path):
    """Code is taken from HEAD, settings from pyproject.toml as it is on disk (docs/how-it-works.md, "Isolation")."""
    with open(small_repo / "pyproject.toml", "a") as pyproject:
        pyproject.write("max-iteration = 3\n")  # uncommitted, and misspelt
    code, output = _run(small_repo, tmp_path, "-w", "bench.py")
    assert code == USAGE and f"unknown setting max-iteration ({small_repo}/pyproject.toml, line 8); did you mean " \
        "max-iterations?" in " ".join(output.split())


@pytest.mark.foreign_records
@pytest.mark.parametrize("damaged", ["{damaged", "[]"])
def test_report_on_a_damaged_summary_is_an_error(tmp_path, damaged):
    (tmp_path / "summary.json").write_text(damaged)
    code, output = invoke("report", tmp_path)
    assert code == USAGE and "summary.json is damaged" in output and "Traceback" not in output


def test_an_unexpected_exception_is_reported_as_perfagents_bug(capsys):
    """Exit 70 with the traceback and a request to report it; known failures map to their own codes."""
    import typer

    from perfagent.cli import INTERNAL, _fail_for
    from perfagent.model.llm import ModelConfigError, ModelError

    for exc, code in [(KeyError("summary"), INTERNAL), (ModelError("down"), MODEL_FAILED),
                      (ModelConfigError("no key"), USAGE)]:
        with pytest.raises(typer.Exit) as exit_:
            try:
                raise exc
            except Exception as raised:
                _fail_for(raised)
        assert exit_.value.exit_code == code
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'summary'" in err and "Please report it" in err


def test_sigterm_and_sighup_exit_128_plus_their_number():
    from perfagent.cli import Terminated, _interrupted

    exits = [_interrupted(KeyboardInterrupt()), _interrupted(Terminated(signal.SIGTERM)),
             _interrupted(Terminated(signal.SIGHUP))]
    assert exits == [130, 143, 129]


# -- batch, evaluate and profile ------------------------------------------------------------------------------------
def apart(*args):
    """The installed command: (exit code, stdout, stderr), kept apart."""
    done = subprocess.run([PERFAGENT, *map(str, args)], capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr


def test_bad_batch_and_evaluate_input_is_one_error_on_stderr(tmp_path):
    """Exit 2 before any worker starts: nothing on stdout, no output folder, and on stderr one message that names
    the problem (a task file's own problems by line)."""
    tasks = ROOT / "workloads" / "tasks.jsonl"
    predictions = tmp_path / "predictions.jsonl"  # a mix-up: the predictions given as the task file
    predictions.write_text(json.dumps({"instance_id": "t-1", "model_patch": ""}) + "\n")
    compressed = tmp_path / "tasks.jsonl.gz"
    compressed.write_bytes(b"\x1f\x8b\x08\x00\xff")
    out = tmp_path / "out"
    for args, message in [
        (["batch", tmp_path / "missing.jsonl", "--model", "oracle"], f"task file {tmp_path}/missing.jsonl not found"),
        (["batch", predictions, "--model", "oracle"], f"no valid task in {predictions}: line 1 (t-1): repo: Field "
                                                      "required"),
        (["evaluate", compressed, "--gold"], f"cannot read the task file {compressed}"),
        (["batch", tasks, "--model", "oracle", "--set", "min-effect"], "--set min-effect: expected KEY=VALUE"),
        (["batch", tasks, "--model", "oracle", "--set", "max-samples=2"], 'invalid value "2" for max-samples (--set '
                                                                          'max-samples=2): expected greater than or '
                                                                          'equal to 5'),
        (["evaluate", tasks, "--predictions", tmp_path / "none.jsonl"], f"predictions file {tmp_path}/none.jsonl "
                                                                        "not found"),
        (["evaluate", tasks, "--predictions", compressed], f"cannot read the predictions file {compressed}"),
    ]:
        code, stdout, stderr = apart(*args, "--out", out)
        assert (code, stdout) == (USAGE, ""), stdout + stderr
        assert stderr.startswith("error: ") and message in " ".join(stderr.split()), stderr
    assert not out.exists()


def test_profile_exits_2_for_bad_input_and_4_for_failing_user_code(tmp_path):
    repo = _crash_repo(tmp_path)
    code, stdout, stderr = apart("profile", repo, "-w", "nope.py")
    assert (code, stdout) == (USAGE, "") and "workload file nope.py not found" in stderr, stdout + stderr
    code, stdout, stderr = apart("profile", repo, "-w", "crash.py", "--seconds", "1")
    assert (code, stdout) == (USER_CODE_FAILED, ""), stdout + stderr
    assert "ValueError: bad input" in stderr and "Traceback" in stderr


def test_sigterm_stops_a_batch_with_143_and_its_worker_cleans_up(tmp_path):
    """The batch's own exit code (not 130): SIGTERM reaches the parent while its worker sets up the task."""
    from tests.test_batch import leftovers

    line = (ROOT / "workloads" / "tasks.jsonl").read_text().splitlines()[0]
    tasks, out, repos = tmp_path / "tasks.jsonl", tmp_path / "out", tmp_path / "repos"
    tasks.write_text(line + "\n")
    process = subprocess.Popen([PERFAGENT, "batch", tasks, "--model", "oracle", "--out", out, "--repo-cache", repos,
                                "--env-cache", tmp_path / "envs"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        _wait_for(lambda: (out / "tasks" / json.loads(line)["instance_id"] / "log.txt").exists())
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 143, stdout + stderr
    assert f"interrupted: finished tasks are kept in {out}" in stdout and "Traceback" not in stdout + stderr
    if repos.exists():  # the worker may have been stopped before it built the example repository
        assert leftovers(repos) == ([], [])
