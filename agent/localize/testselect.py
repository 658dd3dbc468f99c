"""Which tests guard which functions, found at the scale of the change, not of the suite.

A small suite (at most `whole-suite-files` test files) runs whole under coverage, once, within `timeout-s`. In a larger
one, or a small one too slow for that, nothing runs up front. For each function in question, the test files likely
to reach it are found from their text, ranked by evidence:
    named after the function's module (test_<module>.py)     8  (in the module's folder, or outside its package;
                                                                for core.py or __init__.py, test_<package>.py too)
    imports the module                                       4
    mentions the function's name (or its class's)            2
    in the tests/ folder of the module's own package         1
then by how close the test file's folder is to the module's. For the hotspots this is only shown; when a candidate
edits a function, its best `files-per-function` run under coverage of that function's source file (the rest of the
code runs untraced), one process per file within `test-file-timeout-s`, and coverage says which tests reach it.
Every test file that ran is run once more without coverage: a test whose outcome differs between the two runs is
flaky and never decides a verdict. Outcomes, coverage and durations are cached by commit and interpreter.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from perfagent import formats
from perfagent.events import Note, Observer, Progress
from perfagent.repos.cache import BaselineCache, interpreter
from perfagent.localize import compiled
from perfagent.localize.source import MODULE_LEVEL, FunctionSpan, SourceIndex
from perfagent.sandbox.behaviour import Event, from_records
from perfagent.sandbox.run import Limits
from perfagent.sandbox.testrun import PYTEST_ITSELF, SuiteRun, coverage_by_line, run_pytest, test_file_of

WHOLE_SUITE = "(whole suite)"
SCORES = {"named after the module": 8, "imports the module": 4, "mentions": 2, "in the package's tests": 1}


def _fail(tests: list) -> str:
    return "fails" if len(tests) == 1 else "fail"


class TestSelectionError(RuntimeError):
    """The baseline tests cannot serve: not collectable, failing, or cut short."""
    __test__ = False  # not a pytest test class


class FailingTests(TestSelectionError):
    """Tests fail on the unmodified code: the user's code, not the command line, needs fixing."""


def is_test_module(path: str) -> bool:
    """pytest's default rule for the files it collects."""
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def is_conftest(path: str) -> bool:
    return PurePosixPath(path).name == "conftest.py"


def is_test_file(path: str) -> bool:
    """Test code and data, as a pytest user means them: the modules pytest collects, conftest.py files, files named
    test_*, and anything in a folder named tests, test or test_* (helpers, fixtures). Candidates may not edit these,
    evaluation resets them, and profiles do not count them as the repository's code."""
    name, folders = PurePosixPath(path).name, PurePosixPath(path).parent.parts
    return (is_test_module(name) or is_conftest(name) or name.startswith("test_")
            or any(folder in ("tests", "test") or folder.startswith("test_") for folder in folders))


def _module_name(path: str) -> str:
    parts = list(PurePosixPath(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(test_file: str, dots: str, rest: str) -> str:
    """A relative import's module as an absolute name."""
    package = list(PurePosixPath(test_file).parent.parts)
    base = package[:len(package) - (len(dots) - 1)] if len(dots) > 1 else package
    return ".".join(base + ([rest] if rest else []))


_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)|import[ \t]+([^\n]+))",
                     re.MULTILINE)


@dataclass
class _TestFile:
    path: str
    text: str
    imports: set[str] = field(default_factory=set)  # modules it imports, and module.name for `from module import name`

    @classmethod
    def read(cls, worktree: Path, path: str) -> "_TestFile":
        text = (worktree / path).read_text(encoding="utf-8", errors="replace")
        imports: set[str] = set()
        for dots, module, names, plain in _IMPORT.findall(text):
            if plain:
                imports |= {part.split(" as ")[0].strip() for part in plain.split(",")}
                continue
            module = _resolve(path, dots, module) if dots else module
            imports.add(module)
            names = names.strip("()").replace("\n", " ").split(",")
            imports |= {f"{module}.{n.split(' as ')[0].strip()}" for n in names if n.strip()}
        return cls(path, text, imports)


def _names(span: FunctionSpan) -> list[str]:
    """The names a test would use for this function: its own, and its class's for a method (dunders by class only)."""
    parts = [p for p in span.qualname.split(".") if p != "<locals>"]
    own = parts[-1]
    names = [] if own.startswith("__") or len(own) < 4 else [own]
    return names + parts[-2:-1]


def _own_or_outside(test_file: str, source: str) -> bool:
    """A test file named after a module speaks for it inside the module's own folder (pkg/sub/tests/test_m.py for
    pkg/sub/m.py), or from outside its package (tests/test_m.py); not from a sibling package's tests, where the
    same name means another module (pkg/other/tests/test_m.py)."""
    test_dir, source_dir = PurePosixPath(test_file).parent, PurePosixPath(source).parent
    return test_dir.is_relative_to(source_dir) or test_dir.parts[:1] != source_dir.parts[:1]


def _after_package(test_file: str, source: str) -> bool:
    """A package's core or __init__ module is tested under the package's name, beside it: astropy's
    coordinates/tests/test_angles.py for coordinates/angles/core.py."""
    test, module = PurePosixPath(test_file), PurePosixPath(source)
    return module.stem in ("core", "__init__") and test.name == f"test_{module.parent.name}.py" and \
        test.parent.is_relative_to(module.parent.parent)


def _records(*runs: SuiteRun) -> list[dict]:
    """The runs' behaviour, as the cache keeps it."""
    return [e.as_dict() for e in set().union(*(r.process.behaviour for r in runs))]


def _label(span: FunctionSpan) -> str:
    return f"{span.file} (module level)" if span.qualname == MODULE_LEVEL else span.qualname


def _closeness(test_file: str, source: str) -> int:
    a, b = PurePosixPath(test_file).parent.parts, PurePosixPath(source).parent.parts
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


class StaticIndex:
    """The repository's test modules, read once, and the evidence that one of them exercises a function."""

    def __init__(self, worktree: Path, files: list[str]):
        self.worktree, self.files = worktree, [f for f in files if is_test_module(f)]
        self._read: dict[str, _TestFile] = {}

    def _file(self, path: str) -> _TestFile:
        if path not in self._read:
            self._read[path] = _TestFile.read(self.worktree, path)
        return self._read[path]

    def evidence(self, test_file: str, span: FunctionSpan) -> list[str]:
        module = _module_name(span.file)
        stem = module.rsplit(".", 1)[-1]
        found = []
        if PurePosixPath(test_file).name in (f"test_{stem}.py", f"{stem}_test.py") and \
                _own_or_outside(test_file, span.file) or _after_package(test_file, span.file):
            found.append("named after the module")
        t = self._file(test_file)
        if module in t.imports or any(i.startswith(module + ".") for i in t.imports):
            found.append("imports the module")
        names = [n for n in _names(span) if re.search(rf"\b{re.escape(n)}\b", t.text)]
        if names:
            found.append(f"mentions {names[0]}")
        package_tests = PurePosixPath(span.file).parent / "tests"
        if PurePosixPath(test_file).parent == package_tests:
            found.append("in the package's tests")
        return found

    def candidates(self, span: FunctionSpan, limit: int) -> list[tuple[str, str]]:
        """The best `limit` test files for `span` with any evidence: (file, why), best first; of equal evidence, the
        smaller file first (a cheaper guard for a first verdict: sympy's test_pickling.py, 223 s under coverage,
        stood for a function beside files of seconds), then the closer."""
        ranked = []
        for test_file in self.files:
            if test_file == span.file:
                continue
            found = self.evidence(test_file, span)
            if found:
                score = sum(SCORES[e.split(" ")[0] if e.startswith("mentions") else e] for e in found)
                size = len(self._file(test_file).text) // 20_000  # in steps, so that closeness still counts
                ranked.append((-score, size, -_closeness(test_file, span.file), test_file, ", ".join(found)))
        return [(f, why) for *_, f, why in sorted(ranked)[:limit]]


@dataclass(frozen=True)
class PlanSettings:
    """A TestPlan's settings, built by Settings.plan_settings (their defaults' home)."""
    explicit: list[str]  # --tests: run exactly these, no selection
    whole_suite_files: int  # a suite this small runs whole under coverage
    files_per_function: int
    file_timeout_s: float  # one test file's baseline run (under coverage: slower)
    allow_failing: bool


@dataclass
class Selection:
    files: list[str]  # what a candidate runs, the files reaching the functions it edits first
    unguarded: list[str]  # function keys that no selected test reaches (preview: that no test file names)
    likely: list[str] = field(default_factory=list)  # preview: files that run when a candidate needs them


class TestPlan:
    """The tests that guard the code, learned as the run needs them: which tests pass at baseline (twice), which
    are flaky, which tests reach which function, and how long the selected files take."""
    __test__ = False  # not a pytest test class

    def __init__(self, settings: PlanSettings, *, python: str, tmp: Path, limits: Limits, cache: BaselineCache,
                 notify: Observer):
        self.settings, self.python, self.tmp, self.limits, self.cache, self.notify = \
            settings, python, tmp, limits, cache, notify
        self.passing: set[str] = set()
        self.flaky: set[str] = set()
        self.excluded: set[str] = set()  # flaky, or failing at baseline (allowed): never run for a candidate
        self.reached: dict[str, set[str]] = {}  # function key -> node ids of tests that run it
        self.files: dict[str, float] = {}  # test file (or node id for --tests) run at baseline -> seconds
        self.why: dict[str, str] = {}  # test file -> why it was selected
        self._considered: set[str] = set()  # function keys whose candidates have been run
        self._covered: set[tuple[str, str]] = set()  # (test file, source file) measured under coverage
        self._plain: dict[str, dict[str, str]] = {}  # test file -> outcomes of its plain baseline run
        self._static: StaticIndex | None = None
        self.whole_suite = False
        self.behaviour: set[Event] = set()  # what the baseline's runs did (sandbox/behaviour.py)

    def _say(self, message: str, warning: bool = False) -> None:
        self.notify(Note(message, warning))

    # -- what the loop asks ----------------------------------------------------------------------------------------
    def start(self, worktree: Path, commit: str, all_files: list[str]) -> None:
        """The baseline runs that do not depend on any function: --tests, or a small suite whole."""
        py = interpreter(self.python)
        py.require("pytest", why="runs the target's tests")
        if self.settings.explicit:
            self._baseline(worktree, commit, list(self.settings.explicit), coverage=False)
            if not self.passing:  # every candidate would pass zero tests: never a silent state
                raise TestSelectionError(
                    f"none of the tests named with --tests passes on the unmodified code twice ("
                    f"{len(self.excluded)} fail or are flaky): {', '.join(self.settings.explicit)}; name tests "
                    f"that pass")
            return
        py.require("coverage", why="maps the target's tests to the functions they run")
        test_files = [f for f in all_files if is_test_module(f)]
        if len(test_files) <= self.settings.whole_suite_files:
            self._say(f"{formats.plural(len(test_files), 'test file')}: running the whole suite under coverage, then "
                      "once more")
            self.whole_suite = self._baseline(worktree, commit, [], coverage=True)
        if not self.whole_suite:  # a large suite, or a small one too slow to run whole
            self._static = StaticIndex(worktree, all_files)
            self._say(f"{len(test_files)} test files: each function's likeliest test files run when a candidate "
                     f"edits it")

    def guard(self, worktree: Path, commit: str, spans: list[FunctionSpan]) -> Selection:
        """The tests that guard `spans` (running new candidates under coverage first when needed)."""
        if self.settings.explicit:
            return Selection(list(self.settings.explicit), [])
        # data and docs files have no tests to reach them; compiled code no coverage to say which (_reaching)
        spans = [s for s in spans if s.file.endswith(".py") or compiled.suffix(s.file) in compiled.SUFFIXES]
        if self._static is not None:
            self._select(worktree, commit, [s for s in spans if s.file.endswith(".py") and
                                            s.key not in self._considered])
        chosen: dict[str, int] = {}
        unguarded = []
        for span in spans:
            guarding = [n for n in self._reaching(span) if n in self.passing]
            for nodeid in guarding:
                chosen[test_file_of(nodeid)] = chosen.get(test_file_of(nodeid), 0) + 1
            if not guarding:
                unguarded.append(span.key)
        return Selection(sorted(chosen, key=lambda f: (-chosen[f], f)), unguarded)

    def _reaching(self, span: FunctionSpan) -> set[str]:
        """The tests that run a function; for module-level code (run at import, before any test starts), the tests
        that run any function of its module; for compiled code (Cython, C), which coverage does not see, the tests
        that run the Python code of its folder, or of the nearest folder above it that has some."""
        if not span.file.endswith(".py"):
            for folder in PurePosixPath(span.file).parents:
                package = "" if folder.name == "" else folder.as_posix().replace("/", ".") + "."
                found = self._prefixed(package)
                if found or not package:
                    return found
        if span.qualname != MODULE_LEVEL:
            return self.reached.get(span.key, set())
        return self._prefixed(span.key.split(":", 1)[0] + ":")

    def _prefixed(self, prefix: str) -> set[str]:
        """The tests that run any function whose key starts with `prefix`."""
        return set().union(*(nodeids for key, nodeids in self.reached.items() if key.startswith(prefix)))

    def for_candidate(self, worktree: Path, commit: str, touched: list[FunctionSpan],
                      focus: Selection) -> Selection:
        """A candidate's tests: those reaching the functions it edits first (it stops at the first failure), then
        those guarding the hotspots it was asked about."""
        own = self.guard(worktree, commit, touched)
        return Selection(list(dict.fromkeys(own.files + focus.files)), own.unguarded)

    def seen(self) -> tuple[set[str], dict[str, float], set[str], set[Event]]:
        """What the baseline's test runs found so far, for a Reference (Reference.with_tests): the stable passes,
        each file's seconds, the tests left out, and what the runs did."""
        return self.passing, self.files, self.excluded, self.behaviour

    @property
    def selecting(self) -> bool:
        """A large suite: test files are found per function, and run when a candidate edits that function."""
        return self._static is not None

    def preview(self, spans: list[FunctionSpan]) -> Selection:
        """The likeliest test files for `spans`, printed with the evidence, without running anything."""
        files: dict[str, None] = {}
        unguarded = []
        for span in spans:
            picks = self._static.candidates(span, self.settings.files_per_function)
            self._say(f"tests for {_label(span)}: " + ("; ".join(f"{f} ({why})" for f, why in picks) or
                                                       "no test file names, imports or mentions it"))
            files.update(dict.fromkeys(f for f, _ in picks))
            if not picks:
                unguarded.append(span.key)
        return Selection([], unguarded, list(files))

    # -- baseline runs ---------------------------------------------------------------------------------------------
    def _select(self, worktree: Path, commit: str, spans: list[FunctionSpan]) -> None:
        """Run the likeliest test files for `spans` under coverage of the spans' source files, one process per
        file, then once more together without coverage."""
        needed: dict[str, set[str]] = {}  # test file -> source files it must still be measured on
        for span in spans:
            self._considered.add(span.key)
            picks = self._static.candidates(span, self.settings.files_per_function)
            for file, why in picks:
                if (file, span.file) not in self._covered:
                    needed.setdefault(file, set()).add(span.file)
                    self.why.setdefault(file, why)
            if any(f in needed for f, _ in picks):
                self._say(f"running the tests for {_label(span)} under coverage: {', '.join(f for f, _ in picks)}")
        fp = interpreter(self.python).fingerprint
        measured: dict[str, dict] = {}
        for done, (file, sources) in enumerate(needed.items()):
            self.notify(Progress("coverage", "baseline tests under coverage", done, len(needed), file))
            key = ("coverage", commit, fp, file, sorted(sources))
            entry = self.cache.get(*key)
            if entry is None:
                entry = self._coverage_run(worktree, file, sorted(sources))
                if entry is None:
                    continue
                self.cache.put(entry, *key)
            self._covered |= {(file, source) for source in sources}
            measured[file] = entry
        self.notify(Progress("coverage", "baseline tests under coverage", len(needed), len(needed)))
        self._plain_runs(worktree, commit, [f for f in measured if f not in self._plain])
        for file, entry in measured.items():
            self._fold(entry["outcomes"], self._plain.get(file, {}), entry["reached"])  # no plain run: all flaky
            self.behaviour |= from_records(entry["behaviour"])

    def _coverage_run(self, worktree: Path, file: str, sources: list[str]) -> dict | None:
        started = time.perf_counter()
        tmp = self.tmp / "baseline-tests"
        coverage_file = tmp / "coverage.db"
        coverage_file.parent.mkdir(parents=True, exist_ok=True)
        coverage_file.unlink(missing_ok=True)
        limits = self._limits(1)
        run = run_pytest(worktree, [file], python=self.python, tmp=tmp, limits=limits, coverage_file=coverage_file,
                         measure=sources)
        if not self._usable(run, [file], limits):
            return None
        self._say(f"  {file}: {len(run.outcomes)} tests under coverage in {time.perf_counter() - started:.0f} s")
        return {"outcomes": run.outcomes, "reached": self._reached(worktree, coverage_file),
                "behaviour": _records(run)}

    def _plain_runs(self, worktree: Path, commit: str, files: list[str]) -> None:
        """The second baseline run of `files`, in one process (cached per file), into `_plain` and `files`."""
        fp = interpreter(self.python).fingerprint
        out, todo = {}, []
        for file in files:
            entry = self.cache.get("plain", commit, fp, file)
            if entry is None:
                todo.append(file)
            else:
                out[file], self.files[file] = entry["outcomes"], entry["seconds"]
                self.behaviour |= from_records(entry["behaviour"])
        if todo:
            limits = self._limits(len(todo))
            run = run_pytest(worktree, todo, python=self.python, tmp=self.tmp / "baseline-tests", limits=limits)
            if not self._usable(run, todo, limits):
                todo = []
            for file in todo:
                entry = {"outcomes": {t: o for t, o in run.outcomes.items() if test_file_of(t) == file},
                         "seconds": run.seconds_by_file.get(file, 0.0), "behaviour": _records(run)}
                self.behaviour |= from_records(entry["behaviour"])
                self.cache.put(entry, "plain", commit, fp, file)
                out[file], self.files[file] = entry["outcomes"], entry["seconds"]
        self._plain.update(out)

    def _baseline(self, worktree: Path, commit: str, targets: list[str], *, coverage: bool) -> bool:
        """Run `targets` (the whole suite when empty) twice, the first time under coverage when asked, or take both
        runs from the cache; False when the whole suite did not finish in time."""
        key = ("tests", commit, interpreter(self.python).fingerprint, targets or WHOLE_SUITE, coverage)
        entry = self.cache.get(*key)
        if entry is None:
            entry = self._run_twice(worktree, targets, coverage)
            if entry is None:
                return False
            self.cache.put(entry, *key)
        self.files.update(entry["seconds"])
        self._fold(entry["first"], entry["second"], entry["reached"])
        self.behaviour |= from_records(entry["behaviour"])
        return True

    def _fold(self, first: dict[str, str], second: dict[str, str], reached: dict[str, list[str]]) -> None:
        """Two baseline runs' outcomes and a coverage map into the plan: stable passes guard, outcomes that differ
        are flaky, stable failures stop the run unless allowed."""
        self.flaky |= {t for t in first.keys() | second.keys() if first.get(t) != second.get(t)}
        failing = sorted(t for t in first if first[t] in ("failed", "error") and second.get(t) == first[t])
        if failing and self.settings.explicit and not self.settings.allow_failing:
            raise FailingTests(
                f"{formats.plural(len(failing), 'test')} {_fail(failing)} on the unmodified code: "
                f"{', '.join(failing[:10])}\n"
                f"Fix them, choose passing tests with --tests, or pass --allow-failing-tests to leave them out.")
        if failing and not self.settings.explicit:  # a test perfagent chose that fails guards nothing
            self._say(f"{formats.plural(len(failing), 'test')} perfagent chose {_fail(failing)} on the unmodified "
                      f"code and {'is' if len(failing) == 1 else 'are'} left out: "
                      f"{', '.join(failing[:5])}{' ...' if len(failing) > 5 else ''}", warning=True)
        self.passing |= {t for t, outcome in first.items() if outcome == "passed" and second.get(t) == "passed"}
        self.excluded |= self.flaky | set(failing)
        for key, nodeids in reached.items():
            self.reached.setdefault(key, set()).update(nodeids)

    def _limits(self, files: int) -> Limits:
        """The whole suite gets timeout-s; a selection, test-file-timeout-s per file."""
        return replace(self.limits, timeout_s=self.settings.file_timeout_s * files if files else self.limits.timeout_s)

    def _reached(self, worktree: Path, coverage_file: Path) -> dict[str, list[str]]:
        """{function key: node ids of the tests that ran it} from a coverage file."""
        index = SourceIndex(worktree)
        reached: dict[str, set[str]] = {}
        for source, lines in coverage_by_line(coverage_file, worktree.resolve()).items():
            if is_test_file(source):  # test code is not what tests guard
                continue
            for line, nodeids in lines.items():
                reached.setdefault(index.function_at(source, line).key, set()).update(nodeids)
        return {k: sorted(v) for k, v in reached.items()}

    def _run_twice(self, worktree: Path, targets: list[str], coverage: bool) -> dict | None:
        tmp = self.tmp / "baseline-tests"
        coverage_file = tmp / "coverage.db" if coverage else None
        if coverage_file:
            coverage_file.parent.mkdir(parents=True, exist_ok=True)
            coverage_file.unlink(missing_ok=True)
        limits = self._limits(len(targets))
        try:
            self.notify(Progress("baseline", "baseline tests: run 1 of 2", 0, 2))
            first = run_pytest(worktree, targets, python=self.python, tmp=tmp, limits=limits,
                               coverage_file=coverage_file)
            if not self._usable(first, targets, limits):
                return None
            self.notify(Progress("baseline", "baseline tests: run 2 of 2", 1, 2, f"{len(first.outcomes)} tests"))
            second = run_pytest(worktree, targets, python=self.python, tmp=tmp, limits=limits)
        finally:
            self.notify(Progress("baseline", "baseline tests", 2, 2))
        if not self._usable(second, targets, limits):
            return None
        seconds = {target: second.process.seconds / len(targets) for target in targets} if targets else \
            dict(second.seconds_by_file)
        return {"first": first.outcomes, "second": second.outcomes, "seconds": seconds,
                "reached": self._reached(worktree, coverage_file) if coverage_file else {},
                "behaviour": _records(first, second)}

    def _usable(self, run: SuiteRun, targets: list[str], limits: Limits) -> bool:
        """False for a selected file that cannot serve (left out, with a warning) or a whole suite too slow to run
        whole; raises when the user's own choice, or the whole suite, cannot be collected or run."""
        what = ", ".join(targets) if targets else "the test suite"
        problem = None
        cut = run.cut_short()
        if cut and not targets:  # a small suite that is slow all the same: choose per function instead
            self._say(f"the baseline run of {what} {cut}; choosing test files per function instead (raise "
                      f"timeout-s, now {limits.timeout_s:.0f} s, to run it whole)", warning=True)
            return False
        if cut:
            setting = "timeout-s" if self.settings.explicit else "test-file-timeout-s"
            problem = (f"the baseline run of {what} {cut}; raise {setting} (now {limits.timeout_s:.0f} s)"
                       + ("" if self.settings.explicit else ", or name the tests to run with --tests"))
        elif PYTEST_ITSELF in run.outcomes:
            problem = f"pytest cannot run {what}:\n{run.process.tail(15)}"
        elif run.problems and not run.passing():
            problem = f"pytest cannot collect {what}:\n" + "\n".join(run.problems.values())[-3000:]
        elif targets and not run.outcomes:
            problem = f"pytest found no tests in {what}"
        if problem is None:
            return True
        if self.settings.explicit or not targets:  # the user's own choice, or the whole suite
            raise TestSelectionError(problem)
        self._say(f"{problem.splitlines()[0]}: left out", warning=True)
        return False
