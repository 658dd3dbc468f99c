"""`perfagent optimize --interactive`: the terminal reviewer driven with scripted answers, and one real run driven by
keystrokes in an 80x24 tmux terminal (real git, pytest, py-spy, sandbox, $EDITOR; only the model is scripted)."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from perfagent.loop.interactive import TerminalReviewer, prose
from perfagent.localize.hotspots import Hotspot
from perfagent.loop.review import ACCEPT, CONTINUE, EDIT, LIMITS, REJECT, UNDO, Candidate, RunState
from perfagent.loop.stops import Quit
from tests.conftest import SMALL_LIB, git, make_repo, perfagent_branches, repo_state, scripted_session, search_replace

pytestmark = pytest.mark.xdist_group("test_interactive")  # one worker: the module fixture is a whole session

CORE = "mylib/core.py"
# two quadratic hotspots of about the same weight, so each fix is a large, reliably measured speedup
LIB = {
    "mylib/__init__.py": "",
    CORE: '''\
        def unique_sorted(items):
            seen = []
            for x in items:
                if x not in seen:
                    seen.append(x)
            return sorted(seen)


        def common(a, b):
            return [x for x in a if x in b]
        ''',
    "tests/test_core.py": '''\
        from mylib.core import common, unique_sorted


        def test_unique():
            assert unique_sorted([3, 1, 3, 2]) == [1, 2, 3]


        def test_common_keeps_order_and_duplicates():
            assert common([3, 1, 3, 2], [3, 2]) == [3, 3, 2]
        ''',
    "pyproject.toml": SMALL_LIB["pyproject.toml"],  # fast timing settings
    "bench.py": '''\
        from mylib.core import common, unique_sorted


        def setup():
            global words, wanted
            words = [f"w{i % 400}" for i in range(6000)]
            wanted = [f"w{i}" for i in range(0, 800, 2)]


        def workload():
            return unique_sorted(words), len(common(words, wanted))
        ''',
}
UNIQUE_BODY = "    seen = []\n    for x in items:\n        if x not in seen:\n            seen.append(x)\n    return sorted(seen)"
COMMON_BODY = "    return [x for x in a if x in b]"
MODEL_SET_PER_ITEM = "    return [x for x in a if x in set(b)]"  # the model's candidate 3: builds a set per item
HUMAN_HOISTED = "    wanted = set(b)\n    return [x for x in a if x in wanted]"  # what the person edits it into
RESPONSES = [
    search_replace(CORE, UNIQUE_BODY, "    return sorted(set(items))", "Use a set to deduplicate."),
    search_replace(CORE, COMMON_BODY, "    return sorted(set(a) & set(b))", "Intersect two sets."),
    search_replace(CORE, COMMON_BODY, MODEL_SET_PER_ITEM, "Look members up in a set."),
]
FEEDBACK = "keep the order and the duplicates of a"
EDITOR = f'''\
import pathlib, sys

for name in sys.argv[1:]:
    path = pathlib.Path(name)
    path.write_text(path.read_text().replace({MODEL_SET_PER_ITEM!r}, {HUMAN_HOISTED!r}))
'''


# -- the reviewer alone, with answers from a stream -------------------------------------------------------------------
def reviewer(answers: str, editor: str = "false") -> tuple[TerminalReviewer, io.StringIO]:
    screen = io.StringIO()
    console = Console(file=screen, width=80, force_terminal=False, color_system=None)
    return TerminalReviewer(console, stream=io.StringIO(answers), editor=editor), screen


def hotspot(name: str, share: float) -> Hotspot:
    return Hotspot(f"mylib.core:{name}", CORE, name, 1, 5, share, share)


def candidate(tmp_path, changed: str = MODEL_SET_PER_ITEM) -> Candidate:
    before = {CORE: f"def common(a, b):\n{COMMON_BODY}\n"}
    return Candidate(3, "Look members up in a set.", RESPONSES[2], before, {CORE: f"def common(a, b):\n{changed}\n"},
                     tmp_path / "edit")


def editor_script(tmp_path, body: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text(body)
    return f"{sys.executable} {script}"


def test_hotspots_are_picked_by_number_or_left_to_the_agent():
    spots = [hotspot("unique_sorted", 0.5), hotspot("common", 0.4), hotspot("helper", 0.1)]
    r, screen = reviewer("7\n3,1\n")
    assert r.choose_targets(spots) == [spots[2], spots[0]]
    assert "give numbers from 1 to 3" in screen.getvalue() and "unique_sorted" in screen.getvalue()
    assert reviewer("\n")[0].choose_targets(spots) is None
    with pytest.raises(Quit):
        reviewer("q\n")[0].choose_targets(spots)
    with pytest.raises(Quit):  # the input is gone (a closed terminal): stop, keeping what is done
        reviewer("")[0].choose_targets(spots)


def test_candidate_is_shown_and_accepted_or_rejected_with_feedback(tmp_path):
    r, screen = reviewer("x\na\n")
    assert r.review(candidate(tmp_path)).action == ACCEPT
    shown = screen.getvalue()
    assert "candidate 3: Look members up in a set." in shown and "Look members up in a set." in shown
    assert f"-{COMMON_BODY}" in shown and f"+{MODEL_SET_PER_ITEM}" in shown and "SEARCH" not in shown
    decision = reviewer(f"r\n{FEEDBACK}\n")[0].review(candidate(tmp_path))
    assert (decision.action, decision.feedback) == (REJECT, FEEDBACK)


def test_edit_in_the_editor(tmp_path):
    r, screen = reviewer("e\n", editor=editor_script(tmp_path, EDITOR))
    decision = r.review(candidate(tmp_path))
    assert decision.action == EDIT and decision.changed == {CORE: f"def common(a, b):\n{HUMAN_HOISTED}\n"}
    assert (tmp_path / "edit" / CORE).exists(), "the files are edited in the run's workspace"
    assert "+    wanted = set(b)" in screen.getvalue().split("your edited version")[1]
    # an editor that fails leaves the candidate as it was and asks again
    r, screen = reviewer("e\na\n", editor="sh -c 'exit 3'")
    assert r.review(candidate(tmp_path)).action == ACCEPT and "exited with status 3" in screen.getvalue()
    r, screen = reviewer("e\nr\n\n", editor="no-such-editor-here")
    assert r.review(candidate(tmp_path)).action == REJECT and "set EDITOR" in screen.getvalue()
    # an edit back to the original code is a rejection; one that changes nothing asks again
    restore = editor_script(tmp_path, EDITOR.replace(repr(HUMAN_HOISTED), repr(COMMON_BODY)))
    assert reviewer("e\n", editor=restore)[0].review(candidate(tmp_path)).action == REJECT
    r, screen = reviewer("e\na\n", editor="true")
    assert r.review(candidate(tmp_path)).action == ACCEPT and "nothing was changed" in screen.getvalue()


def test_between_candidates_undo_limits_and_quit():
    state = RunState(done=2, max_iterations=8, commits=[], spent_usd=0.01, budget_usd=None)
    r, screen = reviewer("u\nl\n1\n\nl\n5\n-2\nl\n5\n0.5\n")
    step = r.next_step(state)
    assert (step.action, step.max_iterations, step.budget_usd) == (LIMITS, 5, 0.5)
    text = screen.getvalue()
    assert "candidates 2 of 8" in text and "nothing to undo" in text and text.count("limits unchanged") == 2
    state.commits.append((1, "abc"))
    assert reviewer("u\n")[0].next_step(state).action == UNDO
    assert reviewer("\n")[0].next_step(state).action == CONTINUE
    with pytest.raises(Quit):
        reviewer("q\n")[0].next_step(state)


def test_explanation_without_the_edit_blocks():
    reply = ("Use a set.\n\nIt is O(1).\n\nmylib/core.py\n```python\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n"
             "```\n")
    assert prose(reply) == "Use a set.\nIt is O(1)."
    assert prose("\n".join(f"line {i}" for i in range(20))).endswith("(... 13 more lines)")


# -- the acceptance run: a person at an 80x24 terminal ----------------------------------------------------------------
class Terminal:
    """A detached tmux session of exactly 80x24 on its own server socket."""

    def __init__(self, name: str, command: str, cwd: Path, env: dict[str, str], status: Path):
        self.tmux, self.status = ["tmux", "-L", name, "-f", "/dev/null"], status  # status: the command's exit code
        subprocess.run([*self.tmux, "new-session", "-d", "-x", "80", "-y", "24", "-s", "review", "-c", str(cwd),
                        *[f"-e{k}={v}" for k, v in env.items()], command], check=True, env={**os.environ, **env})

    def screen(self, history: bool = True, colours: bool = False) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-J", "-t", "review", *(["-e"] if colours else []),
                               *(["-S", "-"] if history else [])], capture_output=True, text=True).stdout

    def size(self) -> str:
        return subprocess.run([*self.tmux, "display", "-p", "-t", "review", "#{pane_width}x#{pane_height}"],
                              capture_output=True, text=True).stdout.strip()

    def wait_for(self, text: str, times: int = 1, timeout: float = 240) -> str:
        """Wait until `text` has appeared `times` times in the terminal's history."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) >= times:
                return screen
            if self.status.exists():
                break
            time.sleep(0.3)
        raise AssertionError(f"{text!r} did not appear {times} time(s) before the run ended or {timeout} s passed; "
                             f"the terminal:\n"
                             f"{self.screen()}")

    def type(self, text: str) -> None:
        if text:
            subprocess.run([*self.tmux, "send-keys", "-t", "review", "-l", text], check=True)
        subprocess.run([*self.tmux, "send-keys", "-t", "review", "Enter"], check=True)

    def exit_status(self, timeout: float) -> tuple[str, str]:
        """The command's exit status once it has ended ("" if it has not within `timeout`), and the terminal's
        history."""
        deadline = time.monotonic() + timeout
        while not self._status() and time.monotonic() < deadline:
            time.sleep(0.2)
        return self._status(), self.screen()

    def _status(self) -> str:
        """The exit status the shell wrote, or "": the file exists a moment before `echo` has written to it."""
        return self.status.read_text().strip() if self.status.exists() else ""

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def needs_tmux() -> None:
    if not shutil.which("tmux"):
        if os.environ.get("CI"):
            pytest.fail("tmux is needed for the interactive tests (Debian package tmux)")
        pytest.skip("tmux is not installed")


TARGETS, REVIEW, MENU = "hotspots to work on", "[a]ccept (validate)", "[c]ontinue"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """One interactive run: pick unique_sorted, accept candidate 1; let the agent pick, reject candidate 2 with
    feedback; edit candidate 3 (the person's version is validated and committed); undo it; change the limits; quit."""
    needs_tmux()
    tmp = tmp_path_factory.mktemp("interactive")
    repo = make_repo(tmp / "lib", LIB)
    before = repo_state(repo)
    model = scripted_session(tmp / "session.json", RESPONSES)
    out, status = tmp / "run", tmp / "status"
    command = (f"{sys.executable} -m perfagent optimize {repo} -w bench.py -m {model} --out {out} --interactive; "
               f"echo $? > {status}; sleep 600")
    env = {"EDITOR": editor_script(tmp, EDITOR), "LANG": "C.UTF-8", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    term = Terminal(f"perfagent-test-{os.getpid()}", command, tmp, env, status)
    try:
        assert term.size() == "80x24"
        screen = term.wait_for(TARGETS)
        [number] = re.findall(r"^\W*(\d+)\W+unique_sorted\W", screen, re.M)  # its row in the table
        term.type(number)
        term.wait_for(REVIEW)
        term.type("a")
        term.wait_for(MENU)
        term.type("c")
        term.wait_for(TARGETS, 2)
        term.type("")  # the agent's choice
        term.wait_for(REVIEW, 2)
        term.type("r")
        term.wait_for("feedback for the model")
        term.type(FEEDBACK)
        term.wait_for(MENU, 2)
        term.type("c")
        term.wait_for(REVIEW, 3)
        term.type("e")
        term.wait_for(MENU, 3)
        last_screen = term.screen(history=False, colours=True)
        term.type("u")
        term.wait_for("undid candidate 3")
        term.wait_for(MENU, 4)
        term.type("l")
        term.wait_for("max iterations")
        term.type("10")
        term.wait_for("budget in USD")
        term.type("0.5")
        term.wait_for(MENU, 5)
        term.type("q")
        code, transcript = term.exit_status(240)
    finally:
        term.close()
    assert code == "0", transcript
    return {"repo": repo, "before": before, "out": out, "transcript": transcript, "last_screen": last_screen,
            "summary": json.loads((out / "summary.json").read_text()),
            "trajectory": json.loads((out / "trajectory.json").read_text())}


def test_the_branch_keeps_exactly_the_kept_decisions(session):
    repo, summary = session["repo"], session["summary"]
    candidates = summary["candidates"]
    assert [(c["review"], c["verdict"]["reason"], c.get("undone", False)) for c in candidates] == [
        ("accepted", "accepted", False), ("rejected", "rejected by the reviewer", False),
        ("edited", "accepted", True)], session["transcript"]
    assert candidates[1]["verdict"]["detail"] == FEEDBACK and candidates[1]["commit"] is None
    [branch] = perfagent_branches(repo)
    assert branch == summary["branch"] and summary["stop_reason"] == "quit by the reviewer"
    assert git(repo, "rev-list", "main.." + branch).split() == [candidates[0]["commit"]]
    assert "+    return sorted(set(items))" in git(repo, "diff", "main", branch)
    # candidate 3 was committed with the person's version, not the model's, then taken off the branch
    edited = git(repo, "show", candidates[2]["commit"])
    assert "Edited by the reviewer" in edited and "+    wanted = set(b)" in edited and "in set(b)]" not in edited
    assert "in set(b)]" in candidates[2]["model_diff"] and "wanted = set(b)" in candidates[2]["diff"]
    assert subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", candidates[2]["commit"],
                           branch]).returncode == 1
    assert summary["final_commit"] == candidates[0]["commit"] and summary["accepted"] == 1
    assert summary["final"]["accepted"] == 1
    assert (summary["settings"]["max_iterations"], summary["settings"]["budget_usd"]) == (10, 0.5)
    # the user's repository is untouched apart from the new branch
    after, before = repo_state(repo), session["before"]
    assert {k: v for k, v in after.items() if k != "branches"} == {k: v for k, v in before.items() if k != "branches"}
    assert after["branches"] == before["branches"] + git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
                                                         f"refs/heads/{branch}")
    assert git(repo, "worktree", "list").count("\n") == 1


def test_the_trajectory_records_every_decision_in_order(session):
    trajectory = session["trajectory"]
    steps = [f"{r['kind']}:{r['action']}" if r.get("kind") == "human" else f"model:{r['purpose']}"
             for r in trajectory]
    assert steps == ["human:targets", "model:optimize", "human:accept", "human:continue",
                     "human:targets", "model:optimize", "human:reject", "human:continue",
                     "model:optimize", "human:edit", "human:undo", "human:limits", "human:quit"], steps
    human = [r for r in trajectory if r.get("kind") == "human"]
    assert (human[0]["chosen_by"], human[0]["targets"]) == ("reviewer", ["mylib.core:unique_sorted"])
    assert human[3]["chosen_by"] == "agent"
    assert [r.get("candidate") for r in human] == [None, 1, 1, None, 2, 2, 3, 3, None, None]
    assert human[4]["feedback"] == FEEDBACK
    assert "+    wanted = set(b)" in human[6]["edited_diff"] and "in set(b)]" not in human[6]["edited_diff"]
    assert human[7]["commit"] == session["summary"]["candidates"][2]["commit"]
    assert (human[8]["max_iterations"], human[8]["budget_usd"]) == (10, 0.5)
    # the prompts: candidate 1's focuses on the person's pick; candidate 3's carries the feedback on candidate 2
    prompts = [r["messages"][-1]["content"] for r in trajectory if r.get("purpose") == "optimize"]
    assert "### `unique_sorted`" in prompts[0] and "### `common`" not in prompts[0]
    assert FEEDBACK not in prompts[1] and f"**rejected by the reviewer**: {FEEDBACK}" in prompts[2]


def test_the_terminal_shows_the_candidate_and_its_measured_verdict(session):
    transcript = session["transcript"]
    assert "candidate 1: Use a set to deduplicate." in transcript and "+    return sorted(set(items))" in transcript
    assert "your edited version" in transcript
    # the 24 lines a person sees after candidate 3 was validated, the diff in colour
    coloured = session["last_screen"]
    assert re.search(r"\x1b\[[0-9;]*m\+    wanted = set\(b\)", coloured), coloured
    last = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
    # each check's outcome as it was measured, then the verdict
    # (the result line goes on with the calls compared and the unseen inputs, wrapped at the terminal's width)
    assert re.search(r"  tests: 2 of 2 pass\n  result: identical[^\n]*\n([^ \n][^\n]*\n)?  memory: peak [^\n]+\n(  timing: "
                     r"\d+\.\d\dx \[\d+\.\d\d, \d+\.\d\d\] after \d+ pairs, p [<=] [\d.]+: (faster|undecided)\n)+"
                     r"candidate 3: accepted\n", last), last
    # the verdict adds what is new: the speedup, not the tests and the result again
    assert re.search(r"candidate 3: accepted\n  speedup \d+\.\d\dx \[\d+\.\d\d, \d+\.\d\d\] \(95% CI\), p [<=] "
                     r"[\d.]+, \d+ pairs", last), last
    assert all(len(line) <= 80 for line in transcript.splitlines())


def test_ctrl_c_in_the_terminal_cleans_up(tmp_path):
    """Ctrl-C at a terminal signals the whole foreground process group (the sandboxed children and GitPython's own
    git processes too), not just perfagent: the run still removes its worktrees and its branch without commits."""
    needs_tmux()
    repo = make_repo(tmp_path / "lib", LIB)
    before = repo_state(repo)
    out, status = tmp_path / "run", tmp_path / "status"
    command = (f"{sys.executable} -m perfagent optimize {repo} -w bench.py -m "
               f"{scripted_session(tmp_path / 's.json', RESPONSES)} --out {out} --interactive; echo $? > {status}; "
               f"sleep 600")
    term = Terminal(f"perfagent-test-{os.getpid()}-c", command, tmp_path, {"LANG": "C.UTF-8"}, status)
    try:
        term.wait_for("baseline: finding the tests")
        subprocess.run([*term.tmux, "send-keys", "-t", "review", "C-c"], check=True)
        code, transcript = term.exit_status(60)
    finally:
        term.close()
    assert code == "130", transcript
    assert "interrupted: worktrees removed" in transcript
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert repo_state(repo) == before and git(repo, "worktree", "list").count("\n") == 1
