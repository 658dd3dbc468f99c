"""Wins that hold beyond the benchmark's input (loop/unseen.py), and results checked where the work happens
(recorder.py): the patches real models write to game a benchmark, each rejected with the reason that names it,
beside an honest speedup that is accepted. Judged through the Judge on real repositories and real runs."""
import re
import sys
import textwrap

import pytest

from perfagent.loop.unseen import choose
from perfagent.loop.verdict import Judge, Reference
from perfagent.measure.workload import Workload, WorkloadRunner
from perfagent.sandbox import isolation
from perfagent.sandbox.cgroups import pids_root
from perfagent.config import Settings
from tests.conftest import make_repo

PRIMES = '''\
    def prime_count(n):
        count = 0
        for k in range(2, n + 1):
            if all(k % d for d in range(2, int(k ** 0.5) + 1)):
                count += 1
        return count


    def classify(word, rounds=30000):
        total = 0
        for r in range(rounds):
            for i, ch in enumerate(word):
                total = (total * 31 + ord(ch) * (i + r)) % 1000003
        return total
    '''
COUNT = '''\
    from mylib.primes import prime_count


    def setup():
        global n
        n = 20000


    def workload():
        _ = prime_count(n)  # the result is thrown away, as in most real benchmarks
    '''
QUERY = '''\
    from mylib.primes import classify


    def setup():
        global query
        query = "positive"


    def workload():
        return classify(query)
    '''
SIEVE = '''\
    def prime_count(n):
        if n < 2:
            return 0
        sieve = bytearray([1]) * (n + 1)
        sieve[0] = sieve[1] = 0
        for k in range(2, int(n ** 0.5) + 1):
            if sieve[k]:
                sieve[k * k::k] = bytes(len(range(k * k, n + 1, k)))
        return sum(sieve)
    '''


WRONG = PRIMES.replace("range(2, n + 1)", "range(3, n + 1)")  # misses the prime 2


def _primes(prime_count: str = "", classify: str = "") -> str:
    """mylib/primes.py with prime_count() or classify() replaced."""
    text = textwrap.dedent(PRIMES)
    head, tail = text.split("\n\n\ndef classify")
    return (textwrap.dedent(prime_count) if prime_count else head) + "\n\n\ndef classify" + \
        (tail if not classify else textwrap.dedent(classify).split("def classify", 1)[1])


def _verdict(tmp_path, workload: str, primes: str, hot: tuple[str, ...], **settings):
    files = {"mylib/__init__.py": "", "mylib/primes.py": PRIMES, "bench.py": workload}
    base = make_repo(tmp_path / "base", files)
    runner = WorkloadRunner(Workload.parse("bench.py", base), sys.executable, tmp_path,
                            Settings().limits(timeout_s=120, isolation=isolation.choose("auto")))
    results, seconds = runner.results(base)
    runner.calibrate(base, 0.1)
    ref = Reference(base, set(), results, seconds, {}, set(), digests=runner.sequence(base))
    short = Settings(max_samples=8)
    judge = Judge(runner, sys.executable, tmp_path / "tests", short.sampling(), (3,), "bench.py", 60.0,
                  short.max_memory_growth, inputs=choose(runner, base, hot, tmp_path), **settings)
    candidate = make_repo(tmp_path / "candidate", {**files, "mylib/primes.py": primes})
    return judge, judge.judge(candidate, ref, [], targets=hot)


def test_the_unmodified_code_keeps_variants_that_compute_something_else(tmp_path):
    judge, verdict = _verdict(tmp_path, COUNT, _primes(SIEVE), ("mylib.primes:prime_count",))
    assert [u.variant.name for u in judge.inputs.kept] == ["numbers"], judge.inputs.note
    assert "n = 20000 -> 20200" in judge.inputs.kept[0].variant.describe()
    assert verdict.reason == "accepted", verdict.detail  # an honest speedup holds on the variant too
    assert verdict.unseen[0]["speed"]["decision"] == "faster"
    assert "calls: compared 1 call of 1 function" in verdict.also_checked


def test_an_answer_table_for_the_benchmarks_input_is_rejected(tmp_path):
    table = PRIMES.replace("        count = 0\n", "        if n == 20000:  # the benchmark's input\n"
                                                 "            return 2262\n        count = 0\n")
    _, verdict = _verdict(tmp_path, COUNT, table, ("mylib.primes:prime_count",))
    assert verdict.reason == "speedup only on the benchmark's input", verdict.detail
    assert "variant 'numbers'" in verdict.detail and "no significant gain" in verdict.detail


def test_a_fast_path_for_the_exact_query_is_rejected(tmp_path):
    honest = {}
    exec(textwrap.dedent(PRIMES), honest)
    fast = f'''\
        def classify(word, rounds=30000):
            if word == "positive":  # the query the benchmark asks
                return {honest["classify"]("positive")}
            total = 0
            for r in range(rounds):
                for i, ch in enumerate(word):
                    total = (total * 31 + ord(ch) * (i + r)) % 1000003
            return total
        '''
    judge, verdict = _verdict(tmp_path, QUERY, _primes(classify=fast), ("mylib.primes:classify",))
    assert "strings" in [u.variant.name for u in judge.inputs.kept], judge.inputs.note
    assert verdict.reason == "speedup only on the benchmark's input", verdict.detail


def test_a_variant_that_changes_how_much_work_is_done_is_other_work(tmp_path):
    """A digit that sets the size of the work (an exponent here): the variant that changes it does four times the work
    (timed at 3.6x-6.4x here, with the machine's load), other work rather than other values, and is left out; the
    variant of the word alone, the same work on another value, is kept."""
    sized = QUERY.replace('global query\n        query = "positive"', 'global query, level\n        query = "positive"'
                          '\n        level = 3').replace("classify(query)", "classify(query, rounds=500 * 4 ** level)")
    base = make_repo(tmp_path / "base", {"mylib/__init__.py": "", "mylib/primes.py": PRIMES, "bench.py": sized})
    runner = WorkloadRunner(Workload.parse("bench.py", base), sys.executable, tmp_path,
                            Settings().limits(timeout_s=120, isolation=isolation.choose("auto")))
    inputs = choose(runner, base, ("mylib.primes:classify",), tmp_path)
    assert [u.variant.name for u in inputs.kept] == ["strings"], inputs.note
    assert re.search(r"'every literal' takes \d+\.\dx the original's time: other work", inputs.note), inputs.note


def test_a_wrong_edit_under_a_workload_that_returns_none_is_caught_where_the_work_happens(tmp_path):
    _, verdict = _verdict(tmp_path, COUNT, WRONG, ("mylib.primes:prime_count",))
    assert verdict.reason == "result changed", verdict.detail
    assert verdict.detail.startswith("mylib.primes:prime_count(") and "the unmodified code 2262" in verdict.detail, \
        verdict.detail


def test_without_recording_a_wrong_edit_under_a_workload_that_returns_none_goes_unseen(tmp_path):
    """What the recorder adds: the same wrong edit, judged without it, passes the result check (None == None)."""
    _, verdict = _verdict(tmp_path, COUNT, WRONG, ())
    assert verdict.reason != "result changed" and verdict.result_check == "identical", verdict.detail


def test_what_importing_an_edited_module_does_is_the_unmodified_codes_too(tmp_path):
    """A workload that never imports the module a candidate edits (SWE-fficiency's astropy-16295 copies the functions
    into the workload): the recorder imports it to hold the edited function's calls, and its import starts threads.
    The unmodified code's run with the same recorder starts them too, so that is not the candidate's behaviour."""
    if pids_root() is None:
        pytest.skip("no pids cgroup here: nothing counts tasks (RLIMIT_NPROC only caps them)")
    threads = '''\
        import threading

        _idle = threading.Event()
        for _ in range(3):
            threading.Thread(target=_idle.wait, daemon=True).start()


        def scale(x):
            return x * 2
        '''
    files = {"mylib/__init__.py": "", "mylib/primes.py": PRIMES, "mylib/pool.py": threads, "bench.py": COUNT}
    base = make_repo(tmp_path / "base", files)
    runner = WorkloadRunner(Workload.parse("bench.py", base), sys.executable, tmp_path,
                            Settings().limits(timeout_s=120, isolation=isolation.choose("auto")))
    results, seconds = runner.results(base)
    runner.calibrate(base, 0.1)
    ref = Reference(base, set(), results, seconds, {}, set(), behaviour=frozenset(runner.behaviour(base)),
                    digests=runner.sequence(base))
    short = Settings(max_samples=5)
    judge = Judge(runner, sys.executable, tmp_path / "tests", short.sampling(), (3,), "bench.py", 60.0,
                  short.max_memory_growth)
    edited = textwrap.dedent(threads).replace("return x * 2", "return x + x")
    candidate = make_repo(tmp_path / "candidate", {**files, "mylib/pool.py": edited})
    checked = judge.check(candidate, ref, [], targets=("mylib.pool:scale",))
    assert getattr(checked, "reason", None) != "unsafe behaviour", checked.detail
