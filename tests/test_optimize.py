"""perfagent optimize end to end on real repositories: real git, pytest, py-spy and sandboxed processes; only the
model is scripted."""
import json
import subprocess
import sys
import textwrap
from io import StringIO

import pytest
from rich.console import Console
from typer.testing import CliRunner

from perfagent.cli import app
from perfagent.config import Settings, load_settings
from perfagent.events import Broadcast, CheckDone, LogObserver, Progress, VerdictReached
from perfagent.loop.optimizer import Optimizer
from perfagent.report.live import TerminalObserver
from tests.conftest import (SMALL_LIB, git, make_repo, perfagent_branches, read_summary, repo_state, scripted_session,
                            search_replace)
from tests.fake_openai import count_words, serve

CORE = "mylib/core.py"
UNIQUE_BODY = "    seen = []\n    for x in items:\n        if x not in seen:\n            seen.append(x)\n    return sorted(seen)"
GOOD = search_replace(CORE, UNIQUE_BODY, "    return sorted(set(items))", "Use a set to deduplicate.")


def _body(replacement: str, prose: str) -> str:
    return search_replace(CORE, UNIQUE_BODY, replacement, prose)


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def test_every_kind_of_bad_candidate_is_rejected_and_the_good_one_kept(warm_repo, tmp_path):
    missing_file = search_replace("mylib/nope.py", "x = 1", "x = 2", "Edit a file that does not exist.")
    responses = [
        missing_file, missing_file, missing_file,  # first try + two corrections that still fail
        "I think the code is already optimal.",
        *["Broken block.\n\nmylib/core.py\n<<<<<<< SEARCH\nimport re\n"] * 3,  # malformed, corrections too
        search_replace("tests/test_core.py", "def test_unique():", "def test_unique_disabled():", "Skip a test."),
        search_replace(CORE, '    return [w for w in re.split(r"\\W+", text.lower()) if w]',
                       "    return text.lower().split()", "Split on whitespace."),
        _body("    unique = set(items)\n    return sorted(unique) if len(items) < 100 else list(unique)",
              "Skip sorting large inputs."),
        _body("    while True:\n        pass", "Spin."),
        _body("    hog = bytearray(1 << 40)\n    return sorted(set(items))", "Preallocate."),
        _body("    seen = []\n    for x in items:\n        if x not in list(seen):\n            seen.append(x)\n"
              "    return sorted(seen)", "Copy for safety."),
        _body("    import sys\n    caller = sys._getframe(1)\n    return sorted(set(items))", "Peek at caller."),
        GOOD,
    ]
    (warm_repo / "mylib" / "core.py").write_text("# uncommitted user edit\n")  # must survive untouched
    before = repo_state(warm_repo)
    out = tmp_path / "run"
    code, output = invoke("optimize", warm_repo, "-w", "bench.py", "-m",
                          scripted_session(tmp_path / "s.json", responses), "--out", out)
    assert code == 0, output
    assert "uncommitted changes" in output
    summary = json.loads((out / "summary.json").read_text())
    reasons = [c["verdict"]["reason"] for c in summary["candidates"]]
    assert reasons == ["edit did not apply", "no edit", "edit did not apply", "edits a protected file",
                       "tests failed", "result changed", "tests failed", "tests failed", "not faster",
                       "games the benchmark", "accepted"]
    details = [c["verdict"]["detail"] for c in summary["candidates"]]
    # an edit that never applied keeps the files it named and why, in full
    assert summary["candidates"][0]["files"] == ["mylib/nope.py"] and "mylib/nope.py" in details[0]
    assert "test_tokens" in details[4] and "the run stops at the first failure" in details[4]
    assert summary["candidates"][4]["verdict"]["speed"] is None  # a test-breaking candidate is never timed
    assert "timed out" in details[6] and "MemoryError" in details[7]
    assert details[5].startswith("result[0]")
    assert summary["candidates"][8]["verdict"]["speed"]["speedup"] < 1.0
    good = summary["candidates"][-1]
    assert good["functions"] == ["mylib.core:unique_sorted"] and good["verdict"]["speed"]["speedup"] > 1.2
    assert good["verdict"]["speed"]["p_value"] < 0.01
    samples = good["verdict"]["samples"]  # wall and CPU time per call, pair by pair
    assert len(samples["baseline"]) == len(samples["candidate_cpu"]) == good["verdict"]["speed"]["n_base"] >= 3
    assert samples["cpu_speedup"] > 1.2
    noise = summary["baseline"]["noise"]
    assert noise["pairs"] == 10 and noise["resolvable"] > 1.0 and noise["sample_spread"] >= 0

    # the user's checkout is as it was; the new branch has exactly the accepted commit
    assert repo_state(warm_repo)["files"] == before["files"]
    assert repo_state(warm_repo)["status"] == before["status"]
    [branch] = perfagent_branches(warm_repo)
    assert branch == summary["branch"]
    assert git(warm_repo, "rev-list", "--count", f"main..{branch}").strip() == "1"
    assert git(warm_repo, "diff", "--name-only", "main", branch).split() == [CORE]
    assert "perfagent: Use a set to deduplicate." in git(warm_repo, "log", "-1", "--format=%B", branch)
    assert git(warm_repo, "worktree", "list").count("\n") == 1, "worktrees are cleaned up"

    # the committed code passes the tests, checked out fresh
    check = tmp_path / "check"
    git(warm_repo, "worktree", "add", "-q", str(check), branch)
    assert subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=check).returncode == 0
    git(warm_repo, "worktree", "remove", "--force", str(check))

    # the run directory: summary, trajectory of every exchange, profiles before and after
    assert summary["status"] == "finished" and summary["final"]["speed"]["speedup"] > 1.0
    assert summary["llm"]["calls"] == len(responses)
    trajectory = json.loads((out / "trajectory.json").read_text())
    assert [r["purpose"] for r in trajectory][:3] == ["optimize", "fix edit", "fix edit"]
    assert "does not exist" in trajectory[1]["messages"][-1]["content"]
    assert (out / "profile-before.json").exists() and (out / "profile-after.json").exists()
    assert (out / "profile-before.raw").exists()


def test_litellm_path_against_a_local_openai_compatible_server(warm_repo, tmp_path):
    with serve(["OK", GOOD]) as server:  # the first reply answers the check before the baseline
        code, output = invoke("optimize", warm_repo, "-w", "bench.py", "-m", "openai/test-model",
                              "--api-base", server.base_url, "--max-iterations", "1", "--out", tmp_path / "run")
        prompt = server.requests[1].body["messages"]
    assert code == 0, output
    user = prompt[-1]["content"]
    assert "unique_sorted" in user and "if x not in seen:" in user and "SEARCH" in prompt[0]["content"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [c["verdict"]["reason"] for c in summary["candidates"]] == ["accepted"]
    assert summary["stop_reason"] == "iteration limit reached"  # --max-iterations 1, not the server's last reply
    assert summary["llm"]["calls"] == 2 and summary["llm"]["prompt_tokens"] > 0
    assert [(r["candidates"], r["calls"]) for r in summary["rounds"]] == [([1], 1)]  # the check is before any round
    assert perfagent_branches(warm_repo) == [summary["branch"]]


def test_budget_is_a_hard_limit(small_repo, tmp_path):
    with serve(["OK", GOOD]) as server:
        code, output = invoke("optimize", small_repo, "-w", "bench.py", "-m", "openai/gpt-4o-mini",
                              "--api-base", server.base_url, "--budget-usd", "0.0000001", "--out", tmp_path / "run")
        requests = len(server.requests)
    assert code == 1, output  # finished, nothing accepted
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # the check before the baseline is a call like any other: it spent the budget, and nothing more was asked
    assert requests == 1 and summary["llm"]["calls"] == 1 and summary["llm"]["cost_usd"] > 0.0000001
    assert summary["stop_reason"].startswith("budget spent")
    assert summary["candidates"] == []
    assert perfagent_branches(small_repo) == [], "no accepted commit, no branch"


def test_guards_on_the_diff_alone():
    """Protected files, benchmark gaming and syntax errors are caught before anything runs."""
    from perfagent.loop.verdict import Judge

    judge = Judge(None, sys.executable, None, None, (1,), "bench/workload.py", 5.0, Settings().max_memory_growth,
                  ["docs/conftest.py"])
    before = {"pkg/m.py": "def f():\n    return 1\n"}
    cases = {
        "tests/test_m.py": ("edits a protected file", "a test file"),
        "pkg/tests/helpers.py": ("edits a protected file", "a test file"),
        "conftest.py": ("edits a protected file", "conftest"),
        "bench/workload.py": ("edits a protected file", "the workload file"),
        ".github/workflows/ci.yml": ("edits a protected file", "CI configuration"),
        "pyproject.toml": ("edits a protected file", "packaging"),
    }
    for path, (reason, why) in cases.items():
        verdict = judge.static_checks({}, {path: "x = 1\n"})
        assert (verdict.reason, why in verdict.detail) == (reason, True), path
    assert judge.static_checks({}, {"docs/conftest.py": "x = 1\n"}) is None, "allowed by the user"
    code_cases = {
        "import sys\ndef f():\n    if sys._getframe(1).f_code.co_name == 'workload':\n        return 1\n":
            ("games the benchmark", "caller"),
        "import inspect\ndef f():\n    return len(inspect.stack())\n": ("games the benchmark", "caller"),
        "import os\ndef f():\n    os.environ['CACHE'] = '1'\n    return 1\n": ("games the benchmark", "environment"),
        "import pickle\ndef f():\n    pickle.dump(1, open('/tmp/c', 'wb'))\n    return 1\n":
            ("games the benchmark", "files"),
        "import os\ndef f():\n    os.kill(os.getppid(), 9)\n": ("unsafe code", "processes"),
        "import os\ndef f():\n    if os.fork() == 0:\n        return 1\n": ("unsafe code", "processes"),
        "import subprocess\ndef f():\n    return subprocess.check_output(['ls'])\n": ("unsafe code", "programs"),
        "import shutil\ndef f():\n    shutil.rmtree('.git')\n": ("unsafe code", "deletes files"),
        "import socket\ndef f():\n    socket.create_connection(('example.org', 80))\n": ("unsafe code", "network"),
    }
    for text, (reason, why) in code_cases.items():
        verdict = judge.static_checks(before, {"pkg/m.py": text})
        assert verdict.reason == reason and why in verdict.detail, text
    verdict = judge.static_checks(before, {"pkg/m.py": "def f(:\n"})
    assert verdict.reason == "syntax error" and verdict.detail.startswith("pkg/m.py:1")
    assert judge.static_checks(before, {"pkg/m.py": "def f():\n    return 2\n"}) is None


def test_oracle_patch_is_accepted_and_its_events_reach_every_observer(small_repo, tmp_path):
    """`oracle:PATCH` replays a known unified diff as the model's reply. (A second run on the same commit takes the
    baseline from the cache: tests/test_phases.py, at the baseline phase.)"""
    git(small_repo, "checkout", "-q", "-b", "expert")
    core = small_repo / CORE
    core.write_text(core.read_text().replace(UNIQUE_BODY, "    return sorted(set(items))"))
    patch = tmp_path / "expert.patch"
    patch.write_text(git(small_repo, "diff"))
    git(small_repo, "checkout", "-q", "--", CORE)
    git(small_repo, "checkout", "-q", "main")
    # in-process: its events as an observer gets them, on a terminal and in a batch log
    events, screen, log = [], StringIO(), StringIO()
    observers = Broadcast(events.append, TerminalObserver(Console(file=screen, force_terminal=True, width=120)),
                          LogObserver(log))
    settings = load_settings(small_repo, {"workload": "bench.py", "model": f"oracle:{patch}"})
    Optimizer(small_repo, settings, tmp_path / "run0", observers).run()
    first, first_output = read_summary(tmp_path / "run0"), log.getvalue()
    [candidate] = first["candidates"]
    assert candidate["verdict"]["reason"] == "accepted" and candidate["functions"] == ["mylib.core:unique_sorted"]
    assert candidate["tests"] == ["tests/test_core.py"] and candidate["unguarded"] == []
    assert "the oracle has replayed its patch" in first["stop_reason"]
    assert git(small_repo, "diff", "main", first["branch"]) == patch.read_text()
    assert first["baseline"]["cache_hits"] == 0
    # one commit on the original is the whole branch: its own comparison is the final measurement, not timed again
    assert first["final"]["from_candidate"] == 1
    assert first["final"]["speed"] == first["candidates"][0]["verdict"]["speed"]
    assert "\nmeasuring the final code" not in first_output and "\nbaseline: timing noise " in first_output
    # events: progress of the noise pairs and of the timing looks, each check as it is done, one verdict
    noise = [e.done for e in events if isinstance(e, Progress) and e.key == "noise"]
    timing = [e for e in events if isinstance(e, Progress) and e.key == "timing-1"]
    assert noise == list(range(1, 11)) and timing[-1].finished and timing[-1].done == first["final"]["speed"]["n_base"]
    assert [e.done for e in timing] == sorted(e.done for e in timing)
    steps = [e.step.split(":")[0] for e in events if isinstance(e, CheckDone)]
    assert steps[:2] == ["tests", "result"] and steps[-1] == "timing"
    assert [e.accepted for e in events if isinstance(e, VerdictReached)] == [True]
    # the terminal draws progress bars; the log has plain lines, without markup
    assert "candidate 1: timing" in screen.getvalue() and "baseline: timing noise" in screen.getvalue()
    assert "  candidate 1: " in first_output and "  accepted: " in first_output and "[/" not in first_output


def test_a_usd_budget_needs_a_price_and_per_token_prices_make_it_hold(small_repo, tmp_path):
    """A model litellm has no price for (a local server's) gets no USD budget without prices; with per-million-token
    prices the budget is charged exactly and stops the run. Call and token limits need no price."""
    with serve(["Nothing to change here.", GOOD]) as server:
        args = ["optimize", small_repo, "-w", "bench.py", "-m", "openai/my-local-model", "--api-base", server.base_url]
        code, output = invoke(*args, "--budget-usd", "1", "--out", tmp_path / "unpriced")
        assert code == 2 and server.requests == []
        assert "litellm has no price for it" in " ".join(output.split()) and "--price-input-per-mtok" in output
        code, output = invoke(*args, "--budget-usd", "0.000001", "--price-input-per-mtok", "3",
                              "--price-output-per-mtok", "15", "--out", tmp_path / "priced")
        assert code == 1, output
        [request] = server.requests  # the check before the baseline, which spent the budget
    summary = json.loads((tmp_path / "priced" / "summary.json").read_text())
    tokens_in, tokens_out = summary["llm"]["prompt_tokens"], summary["llm"]["completion_tokens"]
    assert (tokens_in, tokens_out) == (count_words(request.body["messages"]), 4)  # the fake server counts words
    assert summary["llm"]["cost_usd"] == pytest.approx((tokens_in * 3 + tokens_out * 15) / 1e6)
    assert summary["stop_reason"].startswith("budget spent (cost budget used up")
    with serve(["Nothing to change here.", GOOD]) as server:
        code, output = invoke(*args[:-1], server.base_url, "--max-tokens", "5", "--out", tmp_path / "tokens")
        assert code == 1, output
        assert len(server.requests) == 1  # the check before the baseline used 9 tokens: nothing more was asked
    summary = json.loads((tmp_path / "tokens" / "summary.json").read_text())
    assert summary["stop_reason"].startswith("budget spent (token budget used up")


TOKENS = '    return [w for w in re.split(r"\\W+", text.lower()) if w]'
RENAMED = '    return [word for word in re.split(r"\\W+", text.lower()) if word]'


@pytest.mark.end_to_end  # test_phases.py: minimal patches; test_wording.py: the commit and reports
def test_an_irrelevant_hunk_is_taken_back_before_the_commit(small_repo, tmp_path):
    """The model's change comes with a rename elsewhere that does nothing for speed: the commit holds only the
    change that does."""
    reply = GOOD + "\n" + search_replace(CORE, TOKENS, RENAMED, "")
    out = tmp_path / "run"
    code, output = invoke("optimize", small_repo, "-w", "bench.py", "-m", scripted_session(tmp_path / "s.json", [reply]),
                          "--out", out)
    assert code == 0, output
    [candidate] = json.loads((out / "summary.json").read_text())["candidates"]
    assert candidate["verdict"]["reason"] == "accepted"
    assert [d["group"] for d in candidate["dropped"]] == ["mylib.core:tokens"]
    assert "word for word" in candidate["full_diff"] and "word for word" not in candidate["diff"]
    committed = git(small_repo, "diff", "main", candidate["commit"])
    assert "return sorted(set(items))" in committed and "word for word" not in committed
    for report in ("pull_request.md", "report.html"):  # both diffs, and what was taken back
        text = (out / report).read_text()
        assert "word for word" in text and "mylib.core:tokens" in text and "minimal patches took back" in text


# a workload of unique_sorted() alone, whose quadratic scan is all its time: a half fix of it is twice as fast, the
# set 50x and more, so which candidate is fastest never turns on the machine's noise
UNIQUE_ONLY = {**SMALL_LIB, "bench.py": """\
    from mylib.core import unique_sorted


    def setup():
        global items
        items = [f"item{i % 1500}" for i in range(6000)]


    def workload():
        return unique_sorted(items)
    """}


@pytest.mark.end_to_end  # test_phases.py: a round (Trial.run)
def test_several_candidates_per_round_keep_the_fastest_and_time_only_survivors(tmp_path):
    small_repo = make_repo(tmp_path / "small", UNIQUE_ONLY)
    # a half fix: the first half deduplicated with a dict, the second still scanned
    half_fix = ("    half = len(items) // 2\n    seen = list(dict.fromkeys(items[:half]))\n    for x in items[half:]:\n"
                "        if x not in seen:\n            seen.append(x)\n    return sorted(seen)")
    slower = UNIQUE_BODY.replace("if x not in seen:", "if x not in list(seen):")
    responses = [_body(half_fix, "Deduplicate the first half with a dict."), GOOD,
                 _body(slower, "Copy for safety."),
                 search_replace(CORE, TOKENS, "    return text.lower().split()", "Split on whitespace.")]
    out = tmp_path / "run"
    code, output = invoke("optimize", small_repo, "-w", "bench.py", "-m", scripted_session(tmp_path / "s.json", responses),
                          "--set", "candidates-per-round=3", "--out", out)
    assert code == 0, output
    summary = json.loads((out / "summary.json").read_text())
    verdicts = {c["n"]: c["verdict"] for c in summary["candidates"]}
    # the verdicts as the judge made them; that candidate 2 outran 1 is the round's choice, in 1's record
    assert [verdicts[n]["reason"] for n in (1, 2, 3, 4)] == ["accepted", "accepted", "not faster", "tests failed"]
    assert [c.get("outrun_by") for c in summary["candidates"]] == [2, None, None, None]
    assert verdicts[2]["speed"]["speedup"] > verdicts[1]["speed"]["speedup"]
    assert verdicts[4]["speed"] is None and verdicts[4]["samples"] is None  # the broken one was never timed
    [branch_commit] = [c["commit"] for c in summary["candidates"] if c["commit"]]
    assert "return sorted(set(items))" in git(small_repo, "show", branch_commit)
    # what each round cost: its candidates, wall time, model calls and spend
    assert [r["candidates"] for r in summary["rounds"]] == [[1, 2, 3], [4]]
    assert all(r["calls"] == len(r["candidates"]) and r["seconds"]["wall"] > 0 for r in summary["rounds"])


TWO_HOT = {
    "twohot/__init__.py": "",
    "twohot/work.py": '''\
        def distinct(items):
            seen = []
            for x in items:
                if x not in seen:
                    seen.append(x)
            return len(seen)


        def overlap(a, b):
            return sum(1 for x in a if x in b)
        ''',
    "tests/test_work.py": '''\
        from twohot.work import distinct, overlap


        def test_distinct():
            assert distinct([1, 2, 1, 3]) == 3


        def test_overlap():
            assert overlap([1, 2, 3], [2, 3, 4]) == 2
        ''',
    "pyproject.toml": '''\
        [tool.perfagent]
        profile-seconds = 0.5
        sample-seconds = 0.05
        candidate-timeout-s = 8
        ''',
    "bench.py": '''\
        from twohot.work import distinct, overlap


        def setup():
            global items, a, b
            items = [i % 600 for i in range(6000)]
            a, b = list(range(0, 3000)), list(range(1500, 2000))  # the two functions take about equal time


        def workload():
            return distinct(items), overlap(a, b)
        ''',
}


def test_two_survivors_that_edit_different_functions_are_tried_together(tmp_path):
    """Each candidate speeds up one of two hot functions: together they are faster than either, and the combination
    is what gets committed."""
    repo = make_repo(tmp_path / "twohot", TWO_HOT)
    work = "twohot/work.py"
    distinct = "    seen = []\n    for x in items:\n        if x not in seen:\n            seen.append(x)\n    return len(seen)"
    responses = [search_replace(work, distinct, "    return len(set(items))", "Count distinct with a set."),
                 search_replace(work, "    return sum(1 for x in a if x in b)",
                                "    wanted = set(b)\n    return sum(1 for x in a if x in wanted)", "Look up in a set.")]
    out = tmp_path / "run"
    code, output = invoke("optimize", repo, "-w", "bench.py", "-m", scripted_session(tmp_path / "s.json", responses),
                          "--set", "candidates-per-round=2", "--max-iterations", "3", "--out", out)
    assert code == 0, output
    candidates = {c["n"]: c for c in json.loads((out / "summary.json").read_text())["candidates"]}
    assert [candidates[n]["verdict"]["reason"] for n in (1, 2, 3)] == ["accepted"] * 3
    assert [candidates[n].get("outrun_by") for n in (1, 2, 3)] == [3, 3, None]
    assert candidates[3]["summary"].startswith("candidates 1 and 2 together")
    assert sorted(candidates[3]["functions"]) == ["twohot.work:distinct", "twohot.work:overlap"]
    committed = git(repo, "show", candidates[3]["commit"])
    assert "len(set(items))" in committed and "wanted = set(b)" in committed
    assert json.loads((out / "summary.json").read_text())["stop_reason"] == "iteration limit reached"  # 3 candidates


@pytest.mark.end_to_end  # test_phases.py: a round (Trial.run)
def test_a_candidate_that_edits_only_code_the_workload_never_runs_is_not_timed(tmp_path):
    """The profile knows which functions the workload runs: a candidate that edits none of them cannot make it faster,
    so after its tests and result check it is not timed (no 40 + 40 pairs ending 'too noisy')."""
    files = {**SMALL_LIB}
    files["mylib/core.py"] = textwrap.dedent(SMALL_LIB["mylib/core.py"]) + \
        "\n\ndef shout(text):\n    return text.upper() + '!'\n"
    repo = make_repo(tmp_path / "r", files)
    response = search_replace(CORE, "    return text.upper() + '!'", "    return f\"{text.upper()}!\"", "Use an f-string.")
    out = tmp_path / "run"
    code, output = invoke("optimize", repo, "-w", "bench.py", "-m", scripted_session(tmp_path / "s.json", [response]),
                          "--out", out)
    assert code == 1, output
    [candidate] = json.loads((out / "summary.json").read_text())["candidates"]
    verdict = candidate["verdict"]
    assert verdict["reason"] == "not run by the workload", verdict
    assert verdict["detail"].startswith("the workload never runs shout (no sample in ") and verdict["speed"] is None
    assert verdict["result_check"] == "identical"
