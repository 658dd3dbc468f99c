"""The command line as a newcomer meets it, through the installed `perfagent` command: help that shows what was
written, answers before anything heavy loads, settings read alike by every command, runs recorded beside the
repository, and perfagent's branches listed and deleted."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SMALL_LIB, git, make_repo, perfagent_branches, scripted_session

PERFAGENT = str(Path(sys.executable).with_name("perfagent"))
COMMANDS = ["optimize", "profile", "demo", "branches", "batch", "evaluate", "report"]
HEAVY = ("litellm", "numpy", "scipy", "git", "libcst")  # seconds to import on a busy machine
CORE = "mylib/core.py"
UNIQUE_BODY = "    seen = []\n    for x in items:\n        if x not in seen:\n            seen.append(x)\n    return sorted(seen)"


def run(*args, env=None, cwd=None, program=(PERFAGENT,)):
    done = subprocess.run([*program, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, **(env or {})})
    return done.returncode, done.stdout, done.stderr


def _help(*command, columns=80):
    code, out, err = run(*command, "--help", env={"COLUMNS": str(columns)})
    assert code == 0 and err == "", err
    return out


def _flat(text: str) -> str:
    """Help text as one line: wrapped lines joined, a word wrapped at its hyphen made whole."""
    return " ".join(re.sub(r"-\n\s*", "-", text).split())


# -- point 3: help text ---------------------------------------------------------------------------------------------
def _description(text: str) -> list[str]:
    """The lines of a command's description: the paragraph after its usage line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Usage:")) + 2
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    return lines[start:end]


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_help_shows_what_was_written_wrapped_to_the_terminal(command):
    text = _help(*command)
    assert "<bool>" not in text  # a flag takes no value
    assert re.search(r"^Usage: perfagent[ a-z]* \[OPTIONS\]", text, re.M) and "{" not in text.splitlines()[0]
    assert _help(*command) == run(*command, "-h", env={"COLUMNS": "80"})[1]
    # sentences wrapped where the terminal ends, not where the source's lines did: no line of the description could
    # have taken the next line's first word
    lines = _description(text)
    width = max(map(len, lines))
    for line, after in zip(lines, lines[1:]):
        assert len(line) + 1 + len(after.split()[0]) > width, "\n".join(lines)


def test_usage_lines_name_their_arguments():
    for command, usage in [("optimize", "REPO"), ("profile", "REPO"), ("branches", "[REPO]"), ("batch", "TASKS"),
                           ("evaluate", "TASKS"), ("report", "FOLDER")]:
        assert _help(command).splitlines()[0] == f"Usage: perfagent {command} [OPTIONS] {usage}"


def test_help_keeps_brackets_and_shows_defaults_as_every_command_does():
    text = _flat(_help("optimize", columns=200))
    assert "with KEY as in [tool.perfagent] (e.g. --set min-effect=0.05; repeatable)" in text
    # optimize's options default to the settings (None on the command line), and show the settings' defaults as
    # typer shows demo's and batch's own
    for option, default in [("--max-iterations", "8"), ("--isolation", "auto"), ("--objective", "time")]:
        assert re.search(rf"{option} \S+ [^[]*\[default: {default}\]", text), option
    for command in ("demo", "batch"):
        assert "--max-iterations <int> " in _help(command) and "[default: 8]" in _help(command, columns=200)
    profile = _flat(_help("profile", columns=200))
    assert "--seconds <float> how long the workload is sampled for the profile [default: 3.0]" in profile


def test_version_short_and_long():
    from importlib.metadata import version

    assert run("-V") == run("--version") == (0, f"perfagent {version('perfagent')}\n", "")


# -- point 9: nothing heavy before it is needed ---------------------------------------------------------------------
def _imported(*args, env=None):
    """(exit code, output, the modules imported) of `python -X importtime -m perfagent ARGS`."""
    code, out, err = run("-X", "importtime", "-m", "perfagent", *args, env=env, program=(sys.executable,))
    modules = {line.split("|")[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    return code, out + "".join(line + "\n" for line in err.splitlines() if not line.startswith("import time:")), \
        modules


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["optimize", "--help"], ["profile", "-h"]])
def test_version_and_help_import_nothing_heavy(args):
    code, output, modules = _imported(*args)
    assert code == 0 and "perfagent" in output
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_a_command_that_stops_at_its_input_loads_no_statistics_or_model_library(small_repo, tmp_path):
    """scipy.stats (a second or more to import) is loaded by the decisions that use it, litellm by the first model
    call: a missing file is said without either."""
    for args, message in [(["optimize", small_repo, "-w", "nope.py", "-m", "scripted:s.json", "--out", tmp_path / "r"],
                           "workload file nope.py not found"),
                          (["report", tmp_path / "none"], "does not exist"),
                          (["batch", tmp_path / "none.jsonl", "-m", "oracle", "--out", tmp_path / "b"], "not found")]:
        code, output, modules = _imported(*args)
        assert code == 2 and message in output, output
        assert not [m for m in modules if m.startswith(("scipy.stats", "litellm"))], args


def test_a_missing_key_is_said_before_litellm_loads(small_repo, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "perfagent", "optimize", str(small_repo), "-w",
                           "bench.py", "-m", "anthropic/claude-3-5-sonnet-20240620", "--out", str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=600)
    modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert done.returncode == 2 and "needs ANTHROPIC_API_KEY: set it in the environment" in done.stderr
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))
    assert not (tmp_path / "run").exists() and perfagent_branches(small_repo) == []


def test_the_key_table_agrees_with_litellm():
    """Each provider the early check knows needs exactly its variable, by litellm's own check, and nothing once it
    is set."""
    from perfagent.model.keys import KEYS, missing_key
    from perfagent.model.llm import _litellm

    litellm = _litellm()
    saved = {variable: os.environ.pop(variable) for variable in KEYS.values() if variable in os.environ}
    try:
        for provider, variable in KEYS.items():
            model = f"{provider}/some-model"
            assert litellm.validate_environment(model=model)["missing_keys"] == [variable], provider
            assert missing_key(model, None) == variable
            os.environ[variable] = "k"
            assert litellm.validate_environment(model=model)["missing_keys"] == [] and missing_key(model, None) is None
            del os.environ[variable]
    finally:
        os.environ.update(saved)
    assert missing_key("openai/m", "http://127.0.0.1:8000/v1", {}) is None  # a local server may need no key
    assert missing_key("scripted:/a/b.json", None, {}) is None and missing_key("gpt-4o", None, {}) is None


# -- point 3: profile reads the settings as optimize does ------------------------------------------------------------
HUNGRY = "def setup():\n    pass\n\n\ndef workload():\n    return len(bytearray(600 << 20))\n"


def test_profile_reads_workload_and_limits_from_the_settings(tmp_path):
    files = {**SMALL_LIB, "hungry.py": HUNGRY}
    files["pyproject.toml"] += 'workload = "bench.py"\nisolation = "no-such-level"\n'
    repo = make_repo(tmp_path / "r", files)
    code, out, err = run("profile", repo)  # the workload from [tool.perfagent]; its isolation too
    assert (code, out) == (2, "") and "unknown isolation level 'no-such-level'" in err, err
    code, out, err = run("profile", repo, "--isolation", "auto", "--json", "--raw", tmp_path / "stacks.raw",
                         env={"PERFAGENT_PROFILE_SECONDS": "0.5"})
    assert code == 0, err
    profile = json.loads(out)
    assert profile["hotspots"] and profile["raw_path"] == str(tmp_path / "stacks.raw")
    assert (tmp_path / "stacks.raw").stat().st_size > 0  # py-spy's stacks, kept where --raw said
    code, out, err = run("profile", repo, "--isolation", "auto", "--json", "--seconds", "0.5")
    assert code == 0 and json.loads(out)["raw_path"] is None  # never a path to a file already deleted
    # memory-mb from the environment, the workload from the command line
    code, out, err = run("profile", repo, "-w", "hungry.py", "--set", "isolation=auto",
                         env={"PERFAGENT_MEMORY_MB": "300"})
    assert code == 4 and "ran out of memory (limit 300 MB)" in " ".join(err.split()), err


def test_evaluate_reads_the_settings_as_optimize_does(tmp_path):
    """evaluate's timing and sandbox settings come from PERFAGENT_* variables and its flags, checked before any task
    starts (issue 27: it once had defaults of its own)."""
    tasks = ROOT / "workloads" / "tasks.jsonl"
    code, out, err = run("evaluate", tasks, "--gold", "--out", tmp_path / "ev", env={"PERFAGENT_ALPHA": "2"})
    assert code == 2 and "invalid value \"2\" for alpha (PERFAGENT_ALPHA)" in err, err
    code, out, err = run("evaluate", tasks, "--gold", "--out", tmp_path / "ev", "--sample-seconds", "0")
    assert code == 2 and "for sample-seconds (--sample-seconds)" in err and not (tmp_path / "ev").exists(), err


# -- point 6: where runs go; point 11: perfagent's branches ----------------------------------------------------------
def _expert_patch(repo: Path, tmp_path: Path) -> Path:
    core = repo / CORE
    core.write_text(core.read_text().replace(UNIQUE_BODY, "    return sorted(set(items))"))
    patch = tmp_path / "expert.patch"
    patch.write_text(git(repo, "diff"))
    git(repo, "checkout", "-q", "--", CORE)
    return patch


def test_a_run_is_recorded_in_the_repository_and_its_branch_listed_and_deleted(warm_repo, tmp_path):
    """Started from another folder with no --out: the run directory is REPO/.perfagent/runs/RUN_ID, said at the start
    and at the end, invisible to git; `perfagent branches` lists the run's branch with its speedup, then deletes
    it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    patch = _expert_patch(warm_repo, tmp_path)
    code, out, err = run("optimize", warm_repo, "-w", "bench.py", "-m", f"oracle:{patch}", cwd=elsewhere)
    assert code == 0, out + err
    [branch] = perfagent_branches(warm_repo)
    folder = warm_repo / ".perfagent" / "runs" / branch.removeprefix("perfagent/")
    lines = out.splitlines()
    said = [i for i, line in enumerate(lines) if line == f"run directory: {folder}"]
    assert len(said) == 2 and said[0] < 5 and said[1] > len(lines) - 5, out
    summary = json.loads((folder / "summary.json").read_text())
    assert list(elsewhere.iterdir()) == []
    assert git(warm_repo, "status", "--porcelain", "--untracked-files=all") == ""

    code, out, err = run("branches", cwd=warm_repo)
    speed = summary["final"]["speed"]
    assert code == 0 and err == "", err
    row = next(line for line in out.splitlines() if branch in line)
    assert f"{speed['speedup']:.2f}x (95% CI {speed['ci_low']:.2f}-{speed['ci_high']:.2f})" in row
    assert re.search(rf"{branch}\s+\d{{4}}-\d\d-\d\d \d\d:\d\d\s+1\s", row), row
    code, out, err = run("branches", warm_repo, "--delete", branch.removeprefix("perfagent/"))
    assert code == 0 and f"deleted {branch}" in out and perfagent_branches(warm_repo) == []
    assert (folder / "summary.json").exists()  # the record stays
    code, out, err = run("branches", warm_repo)
    assert code == 0 and f"no perfagent branches in {warm_repo}" in out


def _branch(repo: Path, name: str, change: str) -> None:
    git(repo, "checkout", "-q", "-b", name, "main")
    (repo / "notes.txt").write_text(change)
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", change)
    git(repo, "checkout", "-q", "main")


def test_branches_deletes_only_perfagents_own_and_never_a_checked_out_one(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    for name in ("perfagent/20260101-000000-aaaa", "perfagent/20260102-000000-bbbb", "perfagent/20260103-000000-cccc",
                 "feature"):
        _branch(repo, name, name)
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "perfagent/20260102-000000-bbbb")
    code, out, err = run("branches", repo)
    assert code == 0 and out.count("perfagent/2026") == 3 and "feature" not in out
    assert f"checked out at {tmp_path / 'wt'}" in out and "run records not in the repository's runs folder" in out
    for refused, message in [("feature", "feature is not one of perfagent's branches here"),
                             ("main", "main is not one of perfagent's branches here"),
                             ("20260102-000000-bbbb", f"is checked out at {tmp_path / 'wt'}")]:
        code, out, err = run("branches", repo, "--delete", "20260101-000000-aaaa", "--delete", refused)
        assert (code, out) == (2, "") and message in err, err
    assert len(perfagent_branches(repo)) == 3  # a refused request deletes nothing
    code, out, err = run("branches", repo, "-d", "perfagent/20260101-000000-aaaa")
    assert code == 0 and perfagent_branches(repo) == ["perfagent/20260102-000000-bbbb",
                                                      "perfagent/20260103-000000-cccc"]
    git(repo, "checkout", "-q", "perfagent/20260103-000000-cccc")  # the user's own checkout of one
    code, out, err = run("branches", repo, "--all")
    assert code == 0 and "kept perfagent/20260102-000000-bbbb: checked out at" in out, out + err
    assert "kept perfagent/20260103-000000-cccc: checked out at" in out
    assert perfagent_branches(repo) == ["perfagent/20260102-000000-bbbb", "perfagent/20260103-000000-cccc"]
    assert "feature" in git(repo, "branch", "--list", "feature")


def test_a_run_that_keeps_nothing_leaves_no_branch_and_no_pull_request_and_says_where_it_went(warm_repo, tmp_path):
    code, out, err = run("optimize", warm_repo, "-w", "bench.py", "-m",
                         scripted_session(tmp_path / "s.json", ["no edit"]), "--max-iterations", "1", cwd=tmp_path)
    assert code == 1, out + err
    [folder] = (warm_repo / ".perfagent" / "runs").iterdir()
    assert out.count(f"run directory: {folder}") == 2 and not (tmp_path / "perfagent-runs").exists()
    assert perfagent_branches(warm_repo) == []
    assert git(warm_repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (folder / "report.html").exists() and not (folder / "pull_request.md").exists(), out
    assert "pull request:" not in out
    code, out, err = run("report", folder, "--format", "markdown")
    assert (code, out) == (2, "") and f"the run in {folder} kept no commit: it has no pull request" in err, err




def test_demo_again_names_what_to_remove(tmp_path):
    (tmp_path / "perfagent-demo").mkdir()
    code, out, err = run("demo", cwd=tmp_path)
    assert (code, out) == (2, "")
    assert "perfagent-demo already exists (the example repository of an earlier demo, its runs in " \
           "perfagent-demo/.perfagent/runs): remove it, or pass --target" in err
