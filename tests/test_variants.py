"""Inputs the candidate has not seen (issue 24, point 2): variants of a workload file's setup() that build an input of
the same kind and about the same size with other values, on the ten real SWE-fficiency sympy workloads, on small
hand-written ones, and in a real run where an answer table for the benchmark's input no longer applies."""
import ast
import json
import sys
import textwrap
from pathlib import Path

import pytest

from perfagent.measure.variants import NO_NEW_LITERALS, make_variants
from perfagent.measure.workload import Workload, WorkloadRunner
from tests.conftest import RLIMITS, make_repo

SHARED = Path("/work/shared/swefficiency")
SYMPY = SHARED / "sympy-dev.jsonl"


def _sympy_workloads() -> dict[str, str]:
    return {task["instance_id"]: task["workload"] for task in map(json.loads, SYMPY.read_text().splitlines())}


def _setup(tree: ast.Module) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "setup")


def _inputs(tree: ast.Module) -> list[ast.stmt]:
    """setup() and the module-level assignments to names it mentions, or their values mention: all a variant may
    change."""
    inputs = [_setup(tree)]
    while True:
        names = {n.id for s in inputs for n in ast.walk(s) if isinstance(n, ast.Name)}
        more = [s for s in tree.body if isinstance(s, ast.Assign) and s not in inputs and
                any(isinstance(t, ast.Name) and t.id in names for t in s.targets)]
        if not more:
            return inputs
        inputs += more


def _assert_only_inputs_differ(original: str, variant: str) -> None:
    """The variant parses; its lines are the original's but inside setup() and the module-level assignments setup()
    reads; every other top-level statement (workload() first) is the same code; and the inputs did change."""
    before, after = ast.parse(original), ast.parse(variant)
    old_lines, new_lines = original.splitlines(), variant.splitlines()
    assert len(old_lines) == len(new_lines), "line numbers survive"
    allowed = {line for s in _inputs(before) for line in range(s.lineno, s.end_lineno + 1)}
    changed = {i + 1 for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b}
    assert changed and changed <= allowed, sorted(changed - allowed)
    kept = [(ast.dump(a), ast.dump(b)) for a, b in zip(before.body, after.body, strict=True)
            if a not in _inputs(before)]
    assert all(a == b for a, b in kept)
    assert [ast.dump(s) for s in _inputs(before)] != [ast.dump(s) for s in _inputs(after)]


# Per task, the variants made and the description of the one that the table's name picks out.
SYMPY_EXPECTED = {
    "sympy__sympy-19270": (["seeds", "numbers", "strings", "every literal"], "seeds",
                           "setup(): random.seed(42) -> 43"),
    "sympy__sympy-26367": (["numbers", "strings", "every literal"], "numbers",
                           "setup(): N_SPEEDS = 15 -> 16, N_VECTORS = 10 -> 11"),
    "sympy__sympy-21455": ([], None, None),  # its one literal names an attribute: hasattr(f, '_cacheit_cache')
    "sympy__sympy-15736": (["numbers"], "numbers", "setup(): rows = 100 -> 101, cols = 100 -> 101"),
    "sympy__sympy-17916": (["seeds", "numbers", "every literal"], "numbers",
                           "setup(): random.seed(42) -> 43, N_PAIRS = 1000 -> 1010, MIN_PRIME = 10**9 -> "
                           "10**9 + 10000000, MAX_PRIME = 10**10 -> 10**10 + 100000000"),
    "sympy__sympy-20228": (["numbers", "strings", "every literal"], "strings",
                           "setup(): symbols(f'c0:{N_complex_symbols}') -> f'd0:{N_complex_symbols}', "
                           "symbols(f'r0:{N_real_symbols}', real=True): f'r0:{N_real_symbols}' -> "
                           "f's0:{N_real_symbols}'"),
    "sympy__sympy-21501": (["seeds", "numbers"], "numbers",
                           "setup(): random.seed(42) -> 43, matrix_size = 100 -> 101, "
                           "random.randint(-100, 100): -100 -> -101, random.randint(-100, 100): 100 -> 101"),
    "sympy__sympy-21954": (["seeds", "numbers"], "numbers",
                           "setup(): random.seed(42) -> 43, num_elements = 10000 -> 10100, "
                           "random.randint(1, 10**9): 10**9 -> 10**9 + 10000000 (2x)"),
    "sympy__sympy-24313": None,  # not valid Python: `a[-1:j::-1]` in the workload's own copy of necklaces()
    "sympy__sympy-26710": (["numbers"], "numbers", "setup(): N_primepi = 10**8 -> 10**8 + 1000000"),
}


@pytest.mark.skipif(not SYMPY.exists(), reason="the sympy workloads are not on this machine")
def test_variants_of_the_sympy_workloads_change_only_their_inputs():
    workloads = _sympy_workloads()
    assert set(workloads) == set(SYMPY_EXPECTED)
    for task, source in workloads.items():
        if SYMPY_EXPECTED[task] is None:
            with pytest.raises(SyntaxError):  # the caller never gets this far: Workload.parse refuses the file
                make_variants(source)
            continue
        made = make_variants(source)
        names, picked, description = SYMPY_EXPECTED[task]
        assert [v.name for v in made.variants] == names, task
        assert (made.note == NO_NEW_LITERALS) == (not names), task
        for variant in made.variants:
            _assert_only_inputs_differ(source, variant.source)
            assert variant.changes and all(change.text in variant.describe() for change in variant.changes)
        if picked:
            assert next(v for v in made.variants if v.name == picked).describe() == description, task
        assert make_variants(source) == made, "the same source gives the same variants"


def _variant(source: str, name: str) -> str:
    return next(v.source for v in make_variants(textwrap.dedent(source)).variants if v.name == name)


def _setup_line(source: str, name: str, needle: str) -> str:
    """The line of the variant `name` of `source` that stands where `needle`'s line stands in it."""
    lines = textwrap.dedent(source).splitlines()
    return _variant(source, name).splitlines()[next(i for i, line in enumerate(lines) if needle in line)]


SEEDED = '''\
    import random
    from mylib import make, Random

    SEED = 42
    UNUSED = 42


    def setup():
        global data, rng, other
        random.seed(7)
        rng = np.random.default_rng(seed=3)
        other = make(random_state=0), Random(11)
        random.seed(SEED)
        data = [random.randint(1, 1000) for _ in range(3000)]


    def workload():
        return sorted(data)[:100]
'''


def test_seeds_change_alone_in_the_first_variant_and_in_every_other():
    made = make_variants(textwrap.dedent(SEEDED))
    assert [v.name for v in made.variants] == ["seeds", "numbers"]  # no single digit, no string to change
    seeds = made.variants[0]
    assert seeds.describe() == ("setup(): random.seed(7) -> 8, seed=3 -> 4, random_state=0 -> 1, Random(11) -> 12; "
                                "module level: SEED = 42 -> 43")
    assert "range(3000)" in seeds.source and "UNUSED = 42" in seeds.source  # not a seed; not read by setup()
    for variant in made.variants:
        assert "random.seed(8)" in variant.source and "SEED = 43" in variant.source
        _assert_only_inputs_differ(textwrap.dedent(SEEDED), variant.source)
    assert _setup_line(SEEDED, "numbers", "data =") == \
        "    data = [random.randint(1, 1010) for _ in range(3030)]"


SIZES = '''\
    BASE = 1_000_000
    LIMIT = BASE * 2
    STEP = 0.5


    def setup(size=3000, *, scale=2.5e-3):
        global data, big, mask, flag
        data = [i % 700 for i in range(size)] + [0] * 5 + [1, -1, -100]
        big = x * 10**8 + LIMIT  # about 1%: 10**8 + 1000000
        mask, flag, nothing = 0xFF, True, None
        return data[3]


    def workload(limit=4000):
        return sum(data[:1000]) * 10**8 + limit
'''


def test_numbers_move_about_one_percent_and_single_digits_only_in_the_broadest_variant():
    numbers, every = _variant(SIZES, "numbers"), _variant(SIZES, "every literal")
    assert _setup_line(SIZES, "numbers", "def setup") == "def setup(size=3030, *, scale=0.00252):"
    assert _setup_line(SIZES, "numbers", "[0] * 5") == \
        "    data = [i % 707 for i in range(size)] + [0] * 5 + [1, -1, -101]"
    assert _setup_line(SIZES, "every literal", "[0] * 5") == \
        "    data = [i % 707 for i in range(size)] + [0] * 6 + [1, -1, -101]"
    assert _setup_line(SIZES, "numbers", "big =") == \
        "    big = x * (10**8 + 1000000) + LIMIT  # about 1%: 10**8 + 1000000"
    assert _setup_line(SIZES, "numbers", "mask, flag, nothing") == "    mask, flag, nothing = 0x101, True, None"
    assert _setup_line(SIZES, "numbers", "return data[3]") == "    return data[3]"
    assert _setup_line(SIZES, "every literal", "return data[3]") == "    return data[4]"
    assert "BASE = 1_010_000" in numbers and "LIMIT = BASE * 2\n" in numbers and "LIMIT = BASE * 3" in every
    assert "STEP = 0.5" in every, "setup() does not read it"
    assert "def workload(limit=4000):\n    return sum(data[:1000]) * 10**8 + limit" in every
    for variant in (numbers, every):
        _assert_only_inputs_differ(textwrap.dedent(SIZES), variant)


STRINGS = '''\
    import importlib


    def setup():
        """Builds 123 names."""
        global names, x
        names = ["hello", 'q1', "ab\\n", r"raw\\d", "--", "123", 'Z9', "naïve"]  # é
        text = """first
    last"""
        x = Symbol('x'), Symbol('y'), dynamicsymbols('q1, q2, q3')
        hasattr(x, 'attr'), getattr(x, "attr", None), open("data.txt"), importlib.import_module("json")
        lookup = {"key": 1}["key"], b"bytes", "é".encode("utf-8"), frame(dtype="float64", mode="r")


    def workload():
        return len(names), 'hello'
'''


def test_strings_keep_their_length_and_classes_and_names_of_code_stay():
    strings = _variant(STRINGS, "strings")
    assert _setup_line(STRINGS, "strings", "names =") == \
        '    names = ["hellp", \'r1\', "ac\\n", r"raw\\e", "--", "124", \'A9\', "naïvf"]  # é'
    assert _setup_line(STRINGS, "strings", "last") == 'lasu"""'
    assert _setup_line(STRINGS, "strings", "Symbol(") == \
        "    x = Symbol('y'), Symbol('z'), dynamicsymbols('q1, q2, r3')"
    for needle in ('"""Builds', "hasattr", "lookup ="):
        assert _setup_line(STRINGS, "strings", needle) == textwrap.dedent(STRINGS).splitlines()[
            next(i for i, line in enumerate(textwrap.dedent(STRINGS).splitlines()) if needle in line)]
    assert "return len(names), 'hello'" in strings
    _assert_only_inputs_differ(textwrap.dedent(STRINGS), strings)
    assert [v.name for v in make_variants(textwrap.dedent(STRINGS)).variants] == ["strings"]


FSTRINGS = '''\
    def setup():
        global items, labels
        items = [f"item{i % 700}" for i in range(1000)]
        labels = [f"v{x:.3f}" for x in (0.25, 0.5)], f"{1.5:>{10}}", open(f"data{i}.txt")


    def workload():
        return items
'''


def test_f_strings_change_their_text_and_their_literals_but_not_their_format():
    assert _setup_line(FSTRINGS, "numbers", "items =") == "    items = [f'item{i % 707}' for i in range(1010)]"
    assert _setup_line(FSTRINGS, "strings", "items =") == "    items = [f'iten{i % 700}' for i in range(1000)]"
    assert _setup_line(FSTRINGS, "every literal", "items =") == \
        "    items = [f'iten{i % 707}' for i in range(1010)]"
    assert _setup_line(FSTRINGS, "strings", "labels =") == \
        "    labels = [f'w{x:.3f}' for x in (0.25, 0.5)], f\"{1.5:>{10}}\", open(f\"data{i}.txt\")"
    assert _setup_line(FSTRINGS, "numbers", "labels =") == \
        "    labels = [f\"v{x:.3f}\" for x in (0.253, 0.51)], f'{1.52:>{10}}', open(f\"data{i}.txt\")"


NESTED = '''\
    def setup():
        global m
        m = Matrix(rows(10**3), cols=f(g(250), h=[2, 3000]), seed=Random(5))


    def workload():
        return m
'''


def test_literals_in_nested_calls_are_found_and_described_in_their_call():
    made = make_variants(textwrap.dedent(NESTED))
    assert [v.name for v in made.variants] == ["seeds", "numbers", "every literal"]
    assert made.variants[1].describe() == ("setup(): rows(10**3) -> 10**3 + 10, g(250) -> 252, 3000 -> 3030, "
                                           "Random(5) -> 6")
    assert made.variants[2].source.splitlines()[2] == \
        "    m = Matrix(rows(10**3 + 10), cols=f(g(252), h=[3, 3030]), seed=Random(6))"


def test_a_literal_assigned_to_an_item_or_attribute_is_described_by_its_target():
    """astropy__astropy-16096's setup() assigns literals to array items; describing them crashed its batch task."""
    made = make_variants("def setup():\n    global data\n    data = [0.0] * 4\n    data[0] = 1.5\n    data[1] = 250\n"
                         "\n\ndef workload():\n    return sum(data)\n")
    assert "data[1] = 250 -> 252" in made.variants[-1].describe()


@pytest.mark.parametrize("setup", [
    "def setup():\n    global data\n    data = make()\n",
    'def setup():\n    """Docstring 123."""\n    global data\n    data = [0, 1, -1, True, None, x[\'k\']]\n',
    "N = 0\n\ndef setup(n=1):\n    global data\n    data = list(range(N, n))\n",
])
def test_a_setup_without_a_literal_to_change_gets_no_variants(setup):
    made = make_variants(setup + "\n\ndef workload():\n    return data[:5000]\n")
    assert made.variants == () and made.note == NO_NEW_LITERALS


def test_a_file_with_its_own_perturbed_setup_gets_no_variants():
    source = textwrap.dedent('''\
        def setup():
            global data
            data = list(range(3000))


        def perturbed_setup():
            global data
            data = list(range(2999, -1, -1))


        def workload():
            return sorted(data)
    ''')
    made = make_variants(source)
    assert made.variants == () and "perturbed_setup()" in made.note


def test_line_endings_of_the_file_survive():
    source = "def setup():\r\n    global n  # é\r\n    n = 'é' + str(10**5)\r\n\r\n\r\ndef workload():\r\n    return n\r\n"
    variant = make_variants(source).variants[0]
    assert variant.source == source.replace("str(10**5)", "str(10**5 + 1000)")


# A real run: the package counts primes; its cheating version answers from a table for the benchmark's input and its
# neighbours (as the model patch for sympy-26710 does), and computes otherwise. Every call that computes is recorded,
# so the test counts, rather than times, whether the table applied.
PRIMES = '''\
    COMPUTED = []


    def primepi(n):
        COMPUTED.append(n)
        sieve = bytearray([1]) * (n + 1)
        sieve[:2] = b"\\0\\0"
        for i in range(2, int(n ** 0.5) + 1):
            if sieve[i]:
                sieve[i * i::i] = bytes(len(range(i * i, n + 1, i)))
        return sum(sieve)
'''
CHEAT = PRIMES.replace("    def primepi(n):", '''\
    ANSWERS = {10**5 - 1: 9592, 10**5: 9592, 10**5 + 1: 9592}


    def primepi(n):
        if n in ANSWERS:
            return ANSWERS[n]''')
BENCH = '''\
    from primes import count

    n = None


    def setup():
        global n
        n = 10**5


    def workload():
        return f"pi={count.primepi(n)} computed={count.COMPUTED}"
'''


def _result(tmp_path: Path, name: str, files: dict[str, str]) -> object:
    """The workload's result (bench.py) on a repository of `files`, from a real sandboxed run."""
    repo = make_repo(tmp_path / name, files)
    runner = WorkloadRunner(Workload.parse("bench.py", repo), sys.executable, tmp_path, RLIMITS.limits(timeout_s=60))
    return runner.result(repo)[0]


def test_a_variant_runs_with_other_values_and_the_answer_table_no_longer_applies(tmp_path):
    made = make_variants(textwrap.dedent(BENCH))
    assert [v.name for v in made.variants] == ["numbers"]
    assert made.variants[0].describe() == "setup(): n = 10**5 -> 10**5 + 1000"
    variant = made.variants[0].source

    def result(name, code, bench):
        return _result(tmp_path, name, {"primes/__init__.py": "", "primes/count.py": code, "bench.py": bench})

    assert result("honest", PRIMES, BENCH) == "pi=9592 computed=[100000]"
    assert result("cheat", CHEAT, BENCH) == "pi=9592 computed=[]", "the table answers the benchmark"
    honest = result("honest-variant", PRIMES, variant)
    assert honest == "pi=9673 computed=[101000]", "another input: another result"
    assert result("cheat-variant", CHEAT, variant) == honest, "the cheat computes: same result"


# A cheat keyed on the input's size: the seeds variant keeps the size, so the stale answer shows as a wrong result.
TOTALS = '''\
    def total(values):
        return sum(v * v for v in values)
'''
SIZE_CHEAT = '''\
    def total(values):
        if len(values) == 3000:
            return 998909886
        return sum(v * v for v in values)
'''
SEEDED_BENCH = '''\
    import random

    from stats import totals


    def setup():
        global values
        random.seed(42)
        values = [random.randint(1, 1000) for _ in range(3000)]


    def workload():
        return totals.total(values)
'''


def test_a_seeds_variant_keeps_the_size_and_shows_a_size_keyed_answer_as_wrong(tmp_path):
    seeds = _variant(SEEDED_BENCH, "seeds")

    def result(name, code, bench):
        return _result(tmp_path, name, {"stats/__init__.py": "", "stats/totals.py": code, "bench.py": bench})

    original = result("honest", TOTALS, SEEDED_BENCH)
    assert result("cheat", SIZE_CHEAT, SEEDED_BENCH) == original == 998909886
    honest = result("honest-seeds", TOTALS, seeds)
    assert honest != original
    assert result("cheat-seeds", SIZE_CHEAT, seeds) == original != honest, "the table's stale answer"
