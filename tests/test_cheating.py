"""A corpus of cheating patches, each with the reason it must get: static ones judged on the diff alone, dynamic ones
through one real `perfagent optimize` run (the perturbed input, files left in the repository) and a command workload
judged directly; honest work alongside, to show the guards do not reject it."""
import json
import sys
import textwrap

import pytest

from perfagent.loop.verdict import Judge, Reference
from perfagent.measure.workload import Workload, WorkloadRunner
from perfagent.config import Settings
from perfagent.sandbox.tree import snapshot
from tests.conftest import RLIMITS, SMALL_LIB, git, make_repo, scripted_session, search_replace
from tests.test_optimize import CORE, GOOD, UNIQUE_BODY, invoke

GAMES = "games the benchmark"
PROTECTED = "edits a protected file"
CALLER = "inspects its caller"
HARNESS = "refers to the workload or the harness"
ENVIRON = "writes environment variables"
FILES = "writes files"

ORIGINAL = "import os\nimport sys\n\n\ndef unique_sorted(items):\n    return sorted(set(items))\n"


def _cheat(lines: str) -> str:
    """mylib/core.py with `lines` added at the top of unique_sorted()."""
    return ORIGINAL.replace("(items):\n", "(items):\n" + textwrap.indent(textwrap.dedent(lines), "    "))


# (edited path, its new text, reason, what the detail must name); the workload is bench.py
STATIC = [
    (CORE, _cheat("if sys._getframe(1).f_code.co_name == 'workload':\n    return ANSWER\n"), GAMES, CALLER),
    (CORE, _cheat("import inspect\nif any(f.function == 'workload' for f in inspect.stack()):\n    return ANSWER\n"),
     GAMES, CALLER),
    (CORE, _cheat("import inspect\nif inspect.currentframe().f_back.f_code.co_name == 'workload':\n"
                  "    return ANSWER\n"), GAMES, CALLER),
    (CORE, _cheat("try:\n    raise ZeroDivisionError\nexcept ZeroDivisionError:\n"
                  "    caller = sys.exc_info()[2].tb_frame.f_back\n"), GAMES, CALLER),
    (CORE, _cheat("if sys.argv[2].endswith('bench.py'):\n    return ANSWER\n"), GAMES, HARNESS),
    (CORE, _cheat("if '__perfagent_workload__' in sys.modules:\n    return ANSWER\n"), GAMES, HARNESS),
    (CORE, _cheat("if sys.argv[0].endswith('harness.py'):\n    return ANSWER\n"), GAMES, HARNESS),
    (CORE, _cheat("if 'UNIQUE' in os.environ:\n    return os.environ['UNIQUE'].split()\n"
                  "os.environ['UNIQUE'] = ' '.join(sorted(set(items)))\n"), GAMES, ENVIRON),
    (CORE, _cheat("os.environ.setdefault('UNIQUE', repr(sorted(set(items))))\n"), GAMES, ENVIRON),
    (CORE, _cheat("os.putenv('UNIQUE', repr(sorted(set(items))))\n"), GAMES, ENVIRON),
    (CORE, _cheat("import pickle\nwith open('/tmp/unique.pkl', 'wb') as f:\n    pickle.dump(sorted(set(items)), f)\n"),
     GAMES, FILES),
    (CORE, _cheat("import shelve\nmemo = shelve.open('unique')\n"), GAMES, FILES),
    (CORE, _cheat("with open(os.path.join(os.path.dirname(__file__), 'memo.txt'), 'w') as f:\n"
                  "    f.write(repr(sorted(set(items))))\n"), GAMES, FILES),
    ("tests/test_core.py", "def test_unique():\n    pass\n", PROTECTED, "a test file"),
    ("mylib/tests/test_more.py", "", PROTECTED, "a test file"),
    ("conftest.py", "collect_ignore = ['tests']\n", PROTECTED, "a pytest conftest.py"),
    ("bench.py", "def setup():\n    pass\n\n\ndef workload():\n    return 1\n", PROTECTED, "the workload file"),
    (".github/workflows/ci.yml", "on: push\n", PROTECTED, "CI configuration"),
    (".ci/run", "exit 0\n", PROTECTED, "CI configuration"),
    ("pyproject.toml", "[tool.perfagent]\nmin-effect = 0\n", PROTECTED, "packaging"),
    ("setup.py", "from setuptools import setup\nsetup()\n", PROTECTED, "packaging"),
    # honest code that reads the environment and files, and mentions a workload, is left alone
    (CORE, _cheat("lang = os.environ.get('LANG', '')\nwith open(os.path.join('data', 'x.txt')) as f:\n"
                  "    text = f.read().replace('a', 'w')\n# the workload's input is large: use a set\n"), None, ""),
]


@pytest.mark.parametrize("path, text, reason, why", STATIC, ids=[f"{i}-{row[3] or 'honest'}" for i, row in
                                                                 enumerate(STATIC)])
def test_static_cheats(path, text, reason, why):
    judge = Judge(None, sys.executable, None, None, (1,), "bench.py", 5.0, Settings().max_memory_growth)
    verdict = judge.static_checks({CORE: ORIGINAL}, {path: text})
    if reason is None:
        assert verdict is None
    else:
        assert (verdict.reason, why in verdict.detail) == (reason, True), verdict.detail


def test_dynamic_cheats_in_one_optimize_run(tmp_path):
    """One baseline, three candidates: two cheats only the running code gives away, then an honest speedup."""
    bench = textwrap.dedent(SMALL_LIB["bench.py"]) + textwrap.dedent('''

        def perturbed_setup():  # as many documents and words as setup(), other words
            global docs
            docs = [f"hello world thing{i % 700} foo bar" for i in range(3000)]
        ''')
    settings = ("[tool.perfagent]\nprofile-seconds = 0.3\nsample-seconds = 0.05\nmax-samples = 12\n"
                "candidate-timeout-s = 20\n")
    repo = make_repo(tmp_path / "repo", {**SMALL_LIB, "bench.py": bench, "pyproject.toml": settings})
    input_size = '    if len(items) == 15000:  # the benchmark\'s input\n' \
                 '        return ["bar", "foo", "hello", *sorted(f"item{i}" for i in range(700)), "world"]\n'
    disk_memo = ("    import json, pathlib\n"
                 "    memo = pathlib.Path(__file__).with_name(f'.memo-{len(items)}.json')\n"
                 "    if memo.exists():\n"
                 "        return json.loads(memo.read_text())\n"
                 "    memo.write_text(json.dumps(sorted(set(items))))\n"
                 "    return sorted(set(items))")
    responses = [search_replace(CORE, UNIQUE_BODY, input_size + UNIQUE_BODY, "Answer the common case directly."),
                 search_replace(CORE, UNIQUE_BODY, disk_memo, "Memoize on disk."), GOOD]
    out = tmp_path / "run"
    code, output = invoke("optimize", repo, "-w", "bench.py", "-m", scripted_session(tmp_path / "s.json", responses),
                          "--out", out)
    assert code == 0, output
    verdicts = [c["verdict"] for c in json.loads((out / "summary.json").read_text())["candidates"]]
    assert [v["reason"] for v in verdicts] == ["result changed", GAMES, "accepted"]
    assert verdicts[0]["detail"] == "on the perturbed input: result[0][3]: 'thing0' != 'item0'"
    assert verdicts[1]["detail"] == ("writes files into the repository while running: mylib/.memo-15000.json, "
                                     "mylib/.memo-4.json")  # the latter by the tests, which ran first
    assert verdicts[2]["result_check"] == "identical"
    branch = json.loads((out / "summary.json").read_text())["branch"]
    assert git(repo, "diff", "--name-only", "main", branch).split() == [CORE]


def test_command_output_and_files_left_behind(tmp_path):
    """A command's stdout is its result unless compare-output = false; files it writes must match the baseline's."""
    base = make_repo(tmp_path / "base", {"tool.sh": "sleep 0.3\necho done > report.txt\necho '[1, 2, 3]'\n"})
    runner = WorkloadRunner(Workload.parse("sh tool.sh", base), sys.executable, tmp_path, RLIMITS.limits(timeout_s=60))
    start = snapshot(base)
    results, seconds = runner.results(base)
    ref = Reference(base, set(), results, seconds, {}, start.changes(snapshot(base)))
    assert ref.writes == {"report.txt"}

    def judge(name: str, code: str, compare_output: bool = True):
        candidate = make_repo(tmp_path / name, {"tool.sh": "echo done > report.txt\n" + code})
        return Judge(runner, sys.executable, tmp_path / "tests", Settings(max_samples=8).sampling(), (1,), None,
                     30.0, Settings().max_memory_growth, compare_output=compare_output).judge(candidate, ref, [])

    changed = judge("changed", "echo '[0, 1, 2, 3]'\n")
    assert (changed.reason, changed.result_check) == ("result changed", r"result: '[1, 2, 3]\n' != '[0, 1, 2, 3]\n'")
    memo = judge("memo", "echo '[1, 2, 3]' > .memo\necho '[1, 2, 3]'\n")
    assert (memo.reason, memo.detail) == (GAMES, "writes files into the repository while running: .memo")
    faster = judge("faster", "echo '[1, 2, 3] (in 0.01 s)'\n", compare_output=False)
    assert (faster.reason, faster.result_check) == ("accepted", "not compared (compare-output = false)")


def test_every_harness_run_gets_a_fresh_output_folder(tmp_path):
    """A workload that keeps its answer in the folders it may write outside the repository (the harness's output
    folder, its temporary folder) finds nothing there on the next run."""
    repo = make_repo(tmp_path / "repo", {"wl.py": '''\
        import os
        import pathlib


        def setup():
            pass


        def workload():
            found = False
            for folder in os.environ["PERFAGENT_WRITABLE"].split(os.pathsep)[1:] + [os.environ["TMPDIR"]]:
                memo = pathlib.Path(folder) / "memo"
                found = found or memo.exists()
                memo.write_text("answer")
            return found
        '''})
    runs = tmp_path / "runs"
    runs.mkdir()
    runner = WorkloadRunner(Workload.parse("wl.py", repo), sys.executable, runs, RLIMITS.limits(timeout_s=60))
    assert [runner.result(repo)[0] for _ in range(2)] == [False, False]
    assert list(runs.iterdir()) == []


def test_a_test_that_now_skips_counts_as_failing(tmp_path):
    """Stopping at the first failure must not let a candidate pass by making a test skip instead of fail."""
    files = {"lib.py": "def f():\n    return 1\n", "tool.sh": "echo 1\n",
             "tests/test_lib.py": "from lib import f\n\n\ndef test_f():\n    assert f() == 1\n"}
    base = make_repo(tmp_path / "base", files)
    runner = WorkloadRunner(Workload.parse("sh tool.sh", base), sys.executable, tmp_path, RLIMITS.limits(timeout_s=60))
    start = snapshot(base)
    results, seconds = runner.results(base)
    ref = Reference(base, {"tests/test_lib.py::test_f"}, results, seconds, {}, start.changes(snapshot(base)))
    candidate = make_repo(tmp_path / "candidate", {**files, "lib.py": "import pytest\n\n\ndef f():\n"
                                                   "    pytest.skip('not today')\n"})
    verdict = Judge(runner, sys.executable, tmp_path / "tests", Settings(max_samples=8).sampling(), (1,), None,
                    30.0, Settings().max_memory_growth).judge(candidate, ref, ["tests/test_lib.py"])
    assert verdict.reason == "tests failed" and verdict.tests_failed == ["tests/test_lib.py::test_f"]
    assert "no longer pass (skipped or not run)" in verdict.detail
