"""How perfagent words what it prints and writes: counts with their nouns, p-values as a person writes them, one name
for the timing noise, hotspots that read in rank order, titles derived from the change when the model wrote none,
commit messages that name what the commit holds, and failures of the user's code shown with repository-relative paths
and the hint that fits them. Runs are real (git, pytest, the sandbox); only the model is scripted."""
import ast
import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from perfagent.events import CheckDone, VerdictReached
from perfagent.localize.hotspots import Hotspot
from perfagent.loop.baseline import fix_for
from perfagent.loop.interactive import TerminalReviewer
from perfagent.loop.titles import explanation, title
from perfagent.loop.verdict import Verdict
from perfagent.measure.stats import measure_noise, sequential_stats
from perfagent.measure.workload import Workload, WorkloadFailed, WorkloadRunner
from perfagent.reasons import ACCEPTED, TESTS_FAILED
from perfagent import formats
from perfagent.sandbox import isolation
from perfagent.config import Settings
from tests.conftest import ROOT, SMALL_LIB, git, make_repo, scripted_session, search_replace
from tests.test_optimize import CORE, RENAMED, TOKENS, UNIQUE_BODY

SPEED = sequential_stats([1.0, 1.1, 0.9, 1.0, 1.05], [0.5, 0.52, 0.47, 0.5, 0.51], level=0.01,
                         min_effect=Settings().min_effect)


def test_counts_p_values_and_cut_titles_read_as_a_person_writes_them():
    assert [formats.plural(n, "call") for n in (0, 1, 6)] == ["0 calls", "1 call", "6 calls"]
    assert formats.plural(1, "test file") == "1 test file" and formats.plural(2, "patch", "patches") == "2 patches"
    assert [formats.p_value(p) for p in (6.5e-05, 0.001, 0.0412, 0.99, 1.0)] == \
        ["p < 0.001", "p = 0.001", "p = 0.041", "p = 0.99", "p = 1"]
    assert formats.p_value(2e-7, prefix=False) == "< 0.001"
    sentence = "Compute each document's shingle set once in near_duplicate_groups."
    for limit in range(20, len(sentence)):
        cut = formats.shorten(sentence, limit)
        assert len(cut) <= limit and cut.endswith("…") and sentence.startswith(cut[:-1])
        assert sentence[len(cut) - 1] == " ", f"cut mid-word: {cut!r}"
    assert formats.shorten(sentence, len(sentence)) == sentence
    # evaluate: a mean ratio well below 1 beside "100%" read as a contradiction: counts, and what they count
    reach = formats.expert_reach({"scored": 1, "harmonic_mean_ratio": 0.448, "at_or_above_expert": 1.0})
    assert reach == ("harmonic mean speedup ratio 0.45 (speedup / expert speedup); 1 of 1 scored patch not "
                     "significantly slower than the expert's (ratio interval reaching 1.0)")


def test_the_noise_has_one_name_and_a_comparison_labels_its_own_times():
    noise = measure_noise([1.0, 1.2, 0.9, 1.1, 1.0, 1.3], [1.1, 1.0, 1.0, 1.2, 0.9, 1.2], max_samples=40)
    text = noise.describe()
    assert text.startswith(f"timing noise {noise.pair_spread:.1%} (spread of back-to-back pairs of the unmodified "
                           f"code); smallest resolvable speedup about")
    assert "samples vary" not in text and "IQR" not in text
    described = SPEED.describe()
    assert described == (f"{SPEED.speedup:.2f}x [{SPEED.ci_low:.2f}, {SPEED.ci_high:.2f}], p < 0.001, 5 pairs; "
                         f"1.00 s → 500 ms (this comparison's values, median)")
    assert "baseline spread" not in described and "n=" not in described


def test_hotspots_read_in_rank_order():
    """The ranking weighs self time and time with callees: a function with 6% of its own ranks before one with 20%
    when its callees make it 43%, so the line says both."""
    def spot(name, own, cum):
        return Hotspot(f"m:{name}", "m.py", name, 1, 2, own, cum)
    line = formats.hotspots([spot("shingles", 0.34, 0.34), spot("near_duplicate_groups", 0.06, 0.43),
                             spot("document_frequencies", 0.20, 0.20)])
    assert line == ("1. shingles (self 34%), 2. near_duplicate_groups (self 6%, with callees 43%), "
                    "3. document_frequencies (self 20%)")


def test_a_reply_without_prose_is_titled_by_its_change():
    block = "primes/core.py\n```python\n<<<<<<< SEARCH\n    for d in range(2, n):\n=======\n" \
            "    for d in range(2, int(n ** 0.5) + 1):\n>>>>>>> REPLACE\n```\n"
    diff = "--- a/primes/core.py\n+++ b/primes/core.py\n@@ -1 +1 @@\n-    x = []\n+    x = set()\n"
    for reply in (block, diff, "```diff\n" + diff + "```\n", "    for d in range(2, n):\n        pass\n"):
        assert explanation(reply) == "", reply
    assert explanation("**Use `heapq.nlargest`** for the top keywords. It is O(n log k).\n\n" + block) == \
        "Use `heapq.nlargest` for the top keywords."
    assert title("", ["primes.core:is_prime", "primes.core:<module>"], ["primes/core.py"]) == \
        "Speed up primes.core.is_prime"
    assert title("", ["a.b:f", "a.b:g", "a.c:h", "a.c:K.m"], []) == "Speed up a.b.f, a.b.g and 2 more functions"
    assert title("", ["primes.core:<module>"], ["primes/core.py"]) == "Change module-level code of primes.core"
    assert title("Use a sieve.", ["primes.core:is_prime"], []) == "Use a sieve."


def _functions_of(repo: Path, commit: str) -> list[str]:
    """What the commit's own diff changes, read independently of perfagent: the old lines each hunk removes, mapped
    to the function or method around them in the parent's file (module:qualname)."""
    old_lines: dict[str, set[int]] = {}
    for line in git(repo, "diff", "-U0", f"{commit}^", commit).splitlines():
        if line.startswith("--- a/"):
            file = line.removeprefix("--- a/")
        elif line.startswith("@@ "):
            start, _, count = re.match(r"@@ -(\d+)(,(\d+))?", line).groups()
            old_lines.setdefault(file, set()).update(range(int(start), int(start) + int(count or 1)))
    found = set()
    for file, lines in old_lines.items():
        module = file.removesuffix(".py").replace("/", ".")
        for node in ast.walk(ast.parse(git(repo, "show", f"{commit}^:{file}"))):
            for child in getattr(node, "body", []):
                if isinstance(child, ast.FunctionDef) and any(child.lineno <= n <= child.end_lineno for n in lines):
                    owner = f"{node.name}." if isinstance(node, ast.ClassDef) else ""
                    found.add(f"{module}:{owner}{child.name}")
    return sorted(found)


def test_commit_messages_name_what_the_commit_holds(warm_repo, tmp_path):
    """A reply of code alone, with a rename in another function that minimal patches take back: the commit's subject
    is derived from the functions of its own diff, its Functions line lists exactly those, and so do the record and
    the pull request. The run's narration counts with nouns and says what its times are."""
    reply = search_replace(CORE, UNIQUE_BODY, "    return sorted(set(items))", "") + "\n" + \
        search_replace(CORE, TOKENS, RENAMED, "")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "perfagent", "optimize", str(warm_repo), "-w", "bench.py", "-m",
                           scripted_session(tmp_path / "s.json", [reply]), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    [candidate] = json.loads((out / "summary.json").read_text())["candidates"]
    assert [d["group"] for d in candidate["dropped"]] == ["mylib.core:tokens"]
    commit = candidate["commit"]
    real = _functions_of(warm_repo, commit)
    assert real == ["mylib.core:unique_sorted"] and candidate["functions"] == real
    subject, _, body = git(warm_repo, "log", "-1", "--format=%B", commit).partition("\n\n")
    assert subject == "perfagent: Speed up mylib.core.unique_sorted"
    assert f"\nFunctions: {', '.join(real)}\n" in body
    assert candidate["summary"] == "Speed up mylib.core.unique_sorted"
    text = (out / "pull_request.md").read_text()
    assert text.startswith("# perf: Speed up mylib.core.unique_sorted (")
    assert "- **Functions changed:** `mylib.core:unique_sorted`\n" in text
    for report in (text, (out / "report.html").read_text()):  # both diffs, and what was taken back
        assert "word for word" in report and "minimal patches took back" in report
    [row] = [line for line in done.stdout.splitlines() if line.startswith("│")]
    quoted = formats.p_value(candidate["verdict"]["speed"]["p_value"], prefix=False)
    assert f"│ {quoted} │" in row and "e-0" not in row, row  # p as the narration quotes it (the table read 9e-04)
    narration = [line for line in done.stdout.splitlines() if not line.startswith(("│", "┃", "┏", "┡", "└"))]
    assert not [line for line in narration if "(s)" in line], narration
    assert any(line.startswith("baseline: one workload() call took ") for line in narration), narration


def test_the_users_traceback_points_into_the_repository(tmp_path):
    """setup() fails inside the library: the traceback shows the user's files as the repository has them, never the
    temporary worktree, and the hint is to fix the code (with the exception), not to raise a limit."""
    files = {**SMALL_LIB, "crash.py": "from mylib.core import tokens\n\n\ndef setup():\n    tokens(None)\n\n\n"
                                      "def workload():\n    return 1\n"}
    repo = make_repo(tmp_path / "r", files)
    done = subprocess.run([sys.executable, "-m", "perfagent", "optimize", str(repo), "-w", "crash.py", "-m",
                           scripted_session(tmp_path / "s.json", ["no edit"]), "--out", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 4, done.stdout + done.stderr
    error = done.stderr
    assert 'File "crash.py", line 5, in setup' in error and 'File "mylib/core.py", line 5, in tokens' in error, error
    assert "perfagent-" not in error and str(tmp_path) not in error, error
    assert "Fix the workload or the code it calls: it raised AttributeError: 'NoneType' object has no attribute " \
           "'lower'" in " ".join(error.split()), error
    assert "timeout-s" not in error and "memory-mb" not in error


@pytest.mark.parametrize("body, limits, hint, not_hint", [
    ("    import time\n    time.sleep(60)\n", {"timeout_s": 2}, "Raise timeout-s", "memory-mb"),
    ("    return len(bytearray(600 << 20))\n", {"memory_mb": 300}, "Raise memory-mb", "timeout-s"),
])
def test_the_hint_fits_the_limit_the_workload_hit(tmp_path, body, limits, hint, not_hint):
    repo = make_repo(tmp_path / "r", {"bench.py": f"def setup():\n    pass\n\n\ndef workload():\n{body}"})
    runner = WorkloadRunner(Workload.parse("bench.py", repo), sys.executable, tmp_path,
                            Settings().limits(**limits, isolation=isolation.choose("auto")))
    with pytest.raises(WorkloadFailed) as failed:
        runner.results(repo)
    assert fix_for(failed.value).startswith(hint) and not_hint not in fix_for(failed.value)


def _verdict(reason: str, failed: list[str] = ()) -> dict:
    tests = ["tests/test_core.py::test_unique", "tests/test_core.py::test_tokens"]
    verdict = Verdict(reason, SPEED.describe(), tests, list(failed), "identical" if not failed else "",
                      SPEED if not failed else None)
    return {"n": 3, "summary": "Use a set.", "verdict": verdict.as_dict()}


def test_the_interactive_reviewer_prints_each_check_once():
    """Each check's outcome is printed as it is measured; the verdict then adds what is new (the speedup, a failure),
    not the tests and the result again."""
    screen = StringIO()
    reviewer = TerminalReviewer(Console(file=screen, width=80, color_system=None))
    for event in (CheckDone(3, "tests: 2 of 2 pass"), CheckDone(3, "result: identical"),
                  VerdictReached(3, _verdict(ACCEPTED))):
        reviewer.observe(event)
    shown = screen.getvalue()
    assert shown.count("tests: 2 of 2 pass") == 1 and shown.count("result: identical") == 1, shown
    assert f"  speedup {formats.interval(SPEED.as_dict())} (95% CI), p < 0.001, 5 pairs" in shown
    reviewer.observe(VerdictReached(4, _verdict(TESTS_FAILED, ["tests/test_core.py::test_tokens"])))
    assert "tests: 1 of 2 pass (failing: tests/test_core.py::test_tokens)" in screen.getvalue()
