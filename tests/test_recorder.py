"""The call recorder (agent/measure/recorder.py) in real child processes, and the parent's comparison of two runs'
records (agent/measure/calls.py).

Each child is an isolated interpreter (-I -S: no site-packages, so no perfagent) that loads the recorder and
normal_form.py by path, as the harness does, starts recording, runs `workload.run()` from the test's own small
modules, stops, and prints the records.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from perfagent.measure import HARNESS
from perfagent.measure.calls import compare_calls

MEASURE = HARNESS.parent
CHILD = textwrap.dedent("""
    import importlib.util, json, os, sys
    sys.path.insert(0, os.getcwd())

    def load(name):
        spec = importlib.util.spec_from_file_location("_perfagent_" + name, os.path.join(sys.argv[1], name + ".py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    recorder = load("recorder").Recorder(load("normal_form"), **json.loads(sys.argv[3]))
    import workload
    recorder.start(json.loads(sys.argv[2]))
    seen = workload.run()
    recorder.stop()
    print(json.dumps({"records": recorder.records(), "seen": seen}))
""")

CORE = """
    import functools

    def square(x):
        return x * x

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    class Counter:
        def __init__(self, start):
            self.start = start

        def count(self, items):
            return self.start + len(items)

        @staticmethod
        def double(x):
            return 2 * x

        @classmethod
        def make(cls, start):
            return cls(start)

        @property
        def doubled(self):
            return self.start * 2

    def outer(a):
        def inner(b):
            return a + b
        return inner(1) + inner(2)

    @functools.lru_cache(maxsize=None)
    def cached(x):
        return x + 1

    def logged(function):  # a decorator that does not use functools.wraps
        def wrapper(*args):
            return function(*args)
        return wrapper

    @logged
    def negate(x):
        return -x
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def record(folder: Path, targets: list[str], **bounds) -> dict:
    """The records of one `workload.run()` in `folder`, and what run() returned (as "seen")."""
    argv = [sys.executable, "-I", "-S", "-c", CHILD, str(MEASURE), json.dumps(targets), json.dumps(bounds)]
    child = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout)


def calls(records: dict, target: str) -> list[tuple]:
    """(arguments, result) of each recorded call of `target`, in the order the calls started."""
    return [(call.get("argv"), call["result"]) for call in records[target]]


def raised(name: str) -> dict:
    return {"raised": {"$": "repr", "class": "type", "repr": f"<class '{name}'>"}}


def test_functions_methods_and_nested_functions_are_recorded_with_their_arguments_and_results(tmp_path):
    write(tmp_path, {"mylib/__init__.py": "", "mylib/core.py": CORE, "workload.py": """
        from mylib import core

        def run():
            core.square(3)
            counter = core.Counter.make(5)
            counter.count([1, 2])
            core.Counter.double(4)
            counter.doubled
            core.outer(10)
            core.cached(1)
            core.cached(1)  # served by lru_cache: the body does not run
            core.negate(7)
    """})
    names = ["square", "Counter.make", "Counter.count", "Counter.double", "Counter.doubled", "outer.<locals>.inner",
             "cached", "negate"]
    records = record(tmp_path, [f"mylib.core:{name}" for name in names])["records"]
    counter = {"$": "object", "class": "mylib.core.Counter", "attrs": {"start": 5}}
    assert calls(records, "mylib.core:square") == [([3], {"returned": 9})]
    assert calls(records, "mylib.core:Counter.make") == [
        ([{"$": "repr", "class": "type", "repr": "<class 'mylib.core.Counter'>"}, 5], {"returned": counter})]
    assert calls(records, "mylib.core:Counter.count") == [
        ([counter, {"$": "list", "class": "list", "items": [1, 2]}], {"returned": 7})]
    assert calls(records, "mylib.core:Counter.double") == [([4], {"returned": 8})]
    assert calls(records, "mylib.core:Counter.doubled") == [([counter], {"returned": 10})]
    # a nested function's closure variables are part of its arguments
    assert calls(records, "mylib.core:outer.<locals>.inner") == [([1, 10], {"returned": 11}),
                                                                  ([2, 10], {"returned": 12})]
    assert calls(records, "mylib.core:cached") == [([1], {"returned": 2})]
    assert calls(records, "mylib.core:negate") == [([7], {"returned": -7})]
    assert records["_missing"] == [] and records["_skipped"] == {} and records["_unhooked"] is False


def test_each_call_of_a_recursion_is_recorded_in_the_order_it_started(tmp_path):
    write(tmp_path, {"mylib/__init__.py": "", "mylib/core.py": CORE, "workload.py": """
        from mylib import core

        def run():
            core.fib(4)
    """})
    records = record(tmp_path, ["mylib.core:fib"])["records"]
    order = [(4, 3), (3, 2), (2, 1), (1, 1), (0, 0), (1, 1), (2, 1), (1, 1), (0, 0)]  # (n, fib(n)) as the calls start
    assert calls(records, "mylib.core:fib") == [([n], {"returned": fib}) for n, fib in order]


def test_a_generator_records_what_it_yielded_and_how_it_ended(tmp_path):
    write(tmp_path, {"gens.py": """
        def tens(n):
            for i in range(n):
                yield [i * 10]
            return "done"

        def broken():
            yield 1
            raise ValueError("no more")
    """, "workload.py": """
        import gens

        def run():
            list(gens.tens(3))
            stopped = gens.tens(5)
            first = next(stopped)
            first.append("changed by the consumer")  # recorded as it was yielded
            next(stopped)
            stopped.close()
            for pair in zip(gens.tens(2), gens.tens(2)):  # two suspended at once
                pass
            try:
                list(gens.broken())
            except ValueError:
                pass
            thrown = gens.tens(3)
            next(thrown)
            try:
                thrown.throw(KeyError("k"))  # raised at its yield: it ends there
            except KeyError:
                pass
    """})
    records = record(tmp_path, ["gens:tens", "gens:broken"])["records"]

    def tens(*values):
        return [{"$": "list", "class": "list", "items": [value]} for value in values]

    assert calls(records, "gens:tens") == [
        ([3], {"yielded": tens(0, 10, 20), "returned": "done"}),
        ([5], {"yielded": tens(0, 10)}),  # closed by its consumer: no end
        ([2], {"yielded": tens(0, 10), "returned": "done"}),
        ([2], {"yielded": tens(0, 10)}),  # zip stopped asking it: still suspended when recording stopped
        ([3], {"yielded": tens(0), **raised("KeyError")}),
    ]
    assert calls(records, "gens:broken") == [([], {"yielded": [1], **raised("ValueError")})]


def test_a_coroutine_records_how_it_finished(tmp_path):
    write(tmp_path, {"tasks.py": """
        import asyncio

        async def slow_double(x):
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return 2 * x
    """, "workload.py": """
        import asyncio
        import tasks

        async def both():
            return await asyncio.gather(tasks.slow_double(1), tasks.slow_double(2))

        def run():
            asyncio.run(both())
    """})
    records = record(tmp_path, ["tasks:slow_double"])["records"]
    assert calls(records, "tasks:slow_double") == [([1], {"returned": 2}), ([2], {"returned": 4})]


def test_a_call_that_raises_is_told_apart_from_one_that_returns_none(tmp_path):
    write(tmp_path, {"errors.py": """
        def fails(key):
            return {}[key]

        def recovers(key):
            try:
                {}[key]
            except KeyError:
                pass
    """, "workload.py": """
        import errors

        def run():
            errors.recovers("k")
            try:
                errors.fails("k")
            except KeyError:
                pass
    """})
    records = record(tmp_path, ["errors:fails", "errors:recovers"])["records"]
    assert calls(records, "errors:recovers") == [(["k"], {"returned": None})]
    assert calls(records, "errors:fails") == [(["k"], raised("KeyError"))]


def test_calls_made_by_c_code_and_by_threads_are_recorded(tmp_path):
    write(tmp_path, {"mylib/__init__.py": "", "mylib/core.py": CORE, "workload.py": """
        import threading
        from mylib import core

        def run():
            sorted([3, 1, 2], key=core.square)
            list(map(core.Counter.double, [5]))
            thread = threading.Thread(target=core.fib, args=(1,))
            thread.start()
            thread.join()
    """})
    records = record(tmp_path, ["mylib.core:square", "mylib.core:Counter.double", "mylib.core:fib"])["records"]
    assert calls(records, "mylib.core:square") == [([3], {"returned": 9}), ([1], {"returned": 1}),
                                                   ([2], {"returned": 4})]
    assert calls(records, "mylib.core:Counter.double") == [([5], {"returned": 10})]
    assert calls(records, "mylib.core:fib") == [([1], {"returned": 1})]


def test_arguments_are_taken_at_the_call_before_the_body_changes_them(tmp_path):
    write(tmp_path, {"lists.py": """
        def grow(items):
            items.append(99)
            return len(items)

        def size(items):
            return len(items)
    """, "workload.py": """
        import lists

        def run():
            lists.grow([1, 2])
            lists.size([1, 2])
    """})
    records = record(tmp_path, ["lists:grow", "lists:size"])["records"]
    one_two = {"$": "list", "class": "list", "items": [1, 2]}
    assert calls(records, "lists:grow") == [([one_two], {"returned": 3})]
    assert records["lists:grow"][0]["args"] == records["lists:size"][0]["args"]


def test_budgets_bound_the_calls_their_arguments_and_their_results(tmp_path):
    write(tmp_path, {"sized.py": """
        def ident(x):
            return x

        def first(items):
            return items[0]

        def text(n):
            return "x" * n
    """, "workload.py": """
        import sys
        import sized

        def run():
            for i in range(10):
                sized.ident(i)
            big = list(range(50_000))  # more values than a call's arguments may have
            for _ in range(10):
                sized.first(big)
            sized.text(10)
            sized.text(1000)  # a longer result than max_bytes
            sized.text(1)
            sized.text(2)
            return sys.gettrace() is None  # every budget spent: the hook is gone
    """})
    seen = record(tmp_path, ["sized:ident", "sized:first", "sized:text"], max_calls=4, max_bytes=100)
    records = seen["records"]
    assert calls(records, "sized:ident") == [([i], {"returned": i}) for i in range(4)]
    assert records["sized:first"] == [] and records["_skipped"] == {"sized:first": 3}  # given up after 3 of 4
    assert calls(records, "sized:text")[0] == ([10], {"returned": "x" * 10})
    assert set(calls(records, "sized:text")[1][1]) == {"digest"}
    assert seen["seen"] is True


def test_targets_are_found_by_their_file_and_unknown_ones_are_listed_missing(tmp_path):
    counted = "import builtins\nbuiltins.imports = getattr(builtins, 'imports', 0) + 1\n" + textwrap.dedent(CORE)
    write(tmp_path, {"src/mylib/__init__.py": "def top(x):\n    return x\n", "src/mylib/core.py": counted,
                     "workload.py": """
        import builtins, sys
        sys.path.insert(0, "src")
        from mylib import core, top

        def run():
            core.square(2)
            top(1)
            return builtins.imports
    """})
    targets = ["src.mylib.core:square", "src.mylib.__init__:top", "src.mylib.core:absent", "src.mylib.core:Nope.f",
               "src.nomodule:f", "src.mylib.core:outer.<locals>.absent"]
    seen = record(tmp_path, targets)
    records = seen["records"]
    assert seen["seen"] == 1  # found as the workload imported it (mylib.core), not imported again as src.mylib.core
    assert calls(records, "src.mylib.core:square") == [([2], {"returned": 4})]
    assert calls(records, "src.mylib.__init__:top") == [([1], {"returned": 1})]
    assert records["_missing"] == targets[2:]


ATTACK = """
    import mylib.core

    def run():
        mylib.core.square(2)
        getattr(__import__("s" + "ys"), "set" + "trace")(None)  # recording stops: the rest goes unseen
        mylib.core.square(3)
"""


def test_code_that_removes_the_hook_is_noticed_and_fails_the_comparison(tmp_path):
    honest, attack = tmp_path / "honest", tmp_path / "attack"
    for folder, run in ((honest, "import mylib.core\ndef run():\n    mylib.core.square(2)\n    mylib.core.square(3)\n"),
                        (attack, ATTACK)):
        write(folder, {"mylib/__init__.py": "", "mylib/core.py": CORE, "workload.py": run})
    expected, actual = (record(folder, ["mylib.core:square"])["records"] for folder in (honest, attack))
    assert actual["_unhooked"] is True and calls(actual, "mylib.core:square") == [([2], {"returned": 4})]
    comparison = compare_calls(expected, actual)
    assert not comparison.equal and "removed the call recorder's hook" in comparison.detail


# The parent's comparison, on records of real runs of an unmodified module and a candidate's edit of it.

UNMODIFIED = """
    def primes_below(n):
        return [p for p in range(2, n) if is_prime(p)]

    def is_prime(p):
        return all(p % d for d in range(2, int(p ** 0.5) + 1))

    def mean(values):
        return sum(values) / len(values)
"""
WORKLOAD = """
    from calc import primes_below, mean

    def run():
        _ = primes_below(30)  # the workload's result is None
        _ = mean([0.1] * 10)
"""
TARGETS = ["calc:primes_below", "calc:is_prime", "calc:mean"]


def records_of(folder: Path, calc: str, workload: str = WORKLOAD) -> dict:
    write(folder, {"calc.py": calc, "workload.py": workload})
    return record(folder, TARGETS)["records"]


@pytest.fixture(scope="module")
def unmodified(tmp_path_factory):
    return records_of(tmp_path_factory.mktemp("unmodified"), UNMODIFIED)


def test_the_unmodified_code_matches_itself_and_the_calls_compared_are_counted(unmodified, tmp_path):
    comparison = compare_calls(unmodified, records_of(tmp_path, UNMODIFIED))
    assert comparison.equal and comparison.detail == ""
    assert (comparison.calls, comparison.functions) == (1 + 28 + 1, 3)
    assert comparison.summary() == "compared 30 calls of 3 functions"


def test_a_wrong_result_for_equal_arguments_names_the_function_the_call_and_the_difference(unmodified, tmp_path):
    wrong = UNMODIFIED.replace("return all(p % d", "return p == 9 or all(p % d")  # calls 9 a prime
    comparison = compare_calls(unmodified, records_of(tmp_path, wrong))
    assert not comparison.equal
    assert comparison.detail.startswith("calc:is_prime(9) returned True, the unmodified code False")
    assert comparison.calls == 9 - 2 + 1  # primes_below(30) differs too, but is_prime(9) comes first


def test_a_nested_difference_says_where_it_is(unmodified, tmp_path):
    last_wrong = UNMODIFIED.replace("if is_prime(p)]", "if is_prime(p)][:-1] + [31]")
    comparison = compare_calls(unmodified, records_of(tmp_path, last_wrong))
    assert comparison.detail == ("calc:primes_below(30) returned [2, 3, 5, 7, 11, 13, 17, 19, 23, 31], the unmodified "
                                 "code [2, 3, 5, 7, 11, 13, 17, 19, 23, 29] (first difference at "
                                 "result.returned[9]: 29 != 31)")


def test_a_name_bound_to_a_function_defined_under_another_name_is_still_held_to_its_results(unmodified, tmp_path):
    aliased = textwrap.dedent(UNMODIFIED) + textwrap.dedent("""
        def _quick_is_prime(p):
            return p in (2, 3, 5, 7, 9, 11, 13, 17, 19, 23, 29)

        is_prime = _quick_is_prime
    """)
    comparison = compare_calls(unmodified, records_of(tmp_path, aliased))
    assert comparison.detail.startswith("calc:is_prime(9) returned True, the unmodified code False")


def test_a_candidate_that_calls_less_often_is_held_only_to_the_calls_it_makes(unmodified, tmp_path):
    sieve = UNMODIFIED.replace("if is_prime(p)", "if p in (2, 3) or p % 2 and p % 3 and is_prime(p)")
    comparison = compare_calls(unmodified, records_of(tmp_path, sieve))
    assert comparison.equal
    assert comparison.calls == 1 + len([5, 7, 11, 13, 17, 19, 23, 25, 29]) + 1


def test_calls_made_with_other_arguments_are_not_compared(unmodified, tmp_path):
    bounded = UNMODIFIED.replace("if is_prime(p)", "if is_prime(p, int(p ** 0.5))").replace(
        "def is_prime(p):\n        return all(p % d for d in range(2, int(p ** 0.5) + 1))",
        "def is_prime(p, root):\n        return p == 9 or all(p % d for d in range(2, root + 1))")
    comparison = compare_calls(unmodified, records_of(tmp_path, bounded))
    assert not comparison.equal and comparison.detail.startswith("calc:primes_below(30) returned [2, 3, 5, 7, 9,")
    # mean(), then primes_below(30); no call of is_prime has the unmodified code's arguments
    assert (comparison.calls, comparison.functions) == (2, 2)


def test_float_results_match_within_tolerance(unmodified, tmp_path):
    fsum = UNMODIFIED.replace("return sum(values)", "return __import__('math').fsum(values)")
    assert sum([0.1] * 10) / 10 != __import__("math").fsum([0.1] * 10) / 10
    assert compare_calls(unmodified, records_of(tmp_path / "fsum", fsum)).equal
    skewed = UNMODIFIED.replace("/ len(values)", "/ (len(values) + 1e-6)")
    comparison = compare_calls(unmodified, records_of(tmp_path / "skewed", skewed))
    assert not comparison.equal and comparison.detail.startswith("calc:mean([0.1, 0.1,")


def generator_records(*results) -> dict:
    return {"gen:g": [{"args": "a", "argv": [], "result": result} for result in results], "_missing": [],
            "_skipped": {}, "_unhooked": False}


def test_a_generator_either_run_left_before_its_end_is_held_to_the_yields_both_saw():
    finished = generator_records({"yielded": [1, 2, 3], "returned": None})
    assert compare_calls(finished, generator_records({"yielded": [1, 2]})).equal
    assert compare_calls(generator_records({"yielded": [1]}), finished).equal
    comparison = compare_calls(finished, generator_records({"yielded": [1, 5]}))
    assert not comparison.equal
    assert comparison.detail.startswith("gen:g() yielded [1, 5] (not run to its end), the unmodified code [1, 2, 3] "
                                        "then returned None")
    assert not compare_calls(finished, generator_records({"yielded": [1, 2, 3], "returned": 4})).equal
    assert not compare_calls(finished, generator_records({"yielded": [1, 2, 3], **raised("KeyError")})).equal


def test_one_of_several_results_for_equal_arguments_will_do():
    expected = generator_records({"returned": 1}, {"returned": 2})
    assert compare_calls(expected, generator_records({"returned": 2})).equal
    comparison = compare_calls(expected, generator_records(raised("KeyError")))
    assert comparison.detail == "gen:g() raised <class 'KeyError'>, the unmodified code returned 1"


@pytest.mark.parametrize("actual", [{}, {"_unhooked": False, "gen:g": [{"result": {}}]}, {"_unhooked": False,
                                    "gen:g": [{"args": "a", "result": []}]}, {"_unhooked": False, "gen:g": 5}])
def test_malformed_records_compare_unequal_and_never_raise(actual):
    comparison = compare_calls(generator_records({"returned": 1}), actual)
    assert not comparison.equal and comparison.detail.startswith("malformed call records")
