"""The compiled example (workloads/repos/nearby: a Cython extension whose counting loop works on Python objects)
through the loop's phases: its build is detected (setuptools' build_ext --inplace, no rebuild-cmd given), the branch
worktree is built once for the module, and candidates that edit the .pyx are rebuilt in their own worktree, tested
and timed like Python edits: the typed loop is accepted, a .pyx that does not compile is rejected with Cython's first
error, a Python-only candidate runs no build at all and one that edits setup.py is not even built. Real Cython, gcc,
git worktrees, pytest and sandboxed processes; only the model is scripted."""
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from perfagent.config import Settings
from perfagent.localize.hotspots import Profile
from perfagent.localize.source import SourceIndex, touched_functions
from perfagent.loop.baseline import BaselineError
from perfagent.loop.candidate import CandidateRecord, Change
from perfagent.loop.environment import Environment
from perfagent.loop.guards import protected_reason, suspicious_reason, unsafe_reason
from perfagent.loop.minimal import Minimiser
from perfagent.loop.trial import Trial
from perfagent.loop.verdict import Verdict
from perfagent.measure.stats import SpeedStats
from perfagent.reasons import ACCEPTED
from perfagent.repos import examples
from perfagent.repos.builds import COMMAND, MESON, NONE, SETUPTOOLS, Build, detect, first_error
from perfagent.sandbox.run import run_shell
from perfagent.sandbox.workspace import Workspaces, head, open_repo
from tests.conftest import RLIMITS, git, make_repo, search_replace
from tests.test_phases import stage

pytestmark = pytest.mark.xdist_group("compiled")  # one worker builds the example once

SOURCES = examples.SOURCES.parent / "task-sources" / "perfagent-examples__nearby-1"
PYX, PAIRS = "nearby/_core.pyx", "nearby/pairs.py"
EXTENSION = f"nearby/_core.cpython-{sys.version_info.major}{sys.version_info.minor}"  # its file name's start
# bubblewrap gives each child a /dev/shm of its own: under rlimits, a semaphore another process on the machine makes
# while a candidate runs is taken for one it left behind ('unsafe behaviour')
SETTINGS = {"sample_seconds": 0.05, "max_samples": 10, "profile_seconds": 0.5, "isolation": "bubblewrap"}
TYPED = (SOURCES / "expert.txt").read_text(encoding="utf-8")  # the task's expert patch, as a model writes it
BROKEN = search_replace(PYX, "    n = len(values)\n", "    cdef Py_ssize_t n = len(values\n", "Type the length.")
NOT_RUN = search_replace(PAIRS, "    counts = []\n", "    counts: list[int] = []\n", "Annotate the counts.")
SETUP = search_replace("setup.py", 'setup(ext_modules=cythonize([Extension("nearby._core", ["nearby/_core.pyx"])],',
                       'setup(ext_modules=cythonize([Extension("nearby._core", ["nearby/_core.pyx"], '
                       'extra_compile_args=["-O3"])],', "Compile with -O3.")


@pytest.fixture(scope="module")
def nearby(tmp_path_factory) -> tuple[Path, Path]:
    """(the example repository with its workload committed as bench.py, the module's baseline cache)."""
    root = tmp_path_factory.mktemp("compiled")
    repo = root / "nearby"
    examples.build("nearby", repo)
    (repo / "bench.py").write_text((SOURCES / "workload.py").read_text(encoding="utf-8"))
    git(repo, "add", "bench.py")
    git(repo, "commit", "-q", "-m", "the workload")
    return repo, root / "cache"


@pytest.fixture(scope="module")
def built(nearby, tmp_path_factory):
    """A run's stage on the example whose baseline is measured: its branch worktree built once, for the module; its
    model proposes the four candidates of the round below."""
    with stage(*nearby[:1], tmp_path_factory.mktemp("stage"), nearby[1], [TYPED, BROKEN, NOT_RUN, SETUP],
               candidates_per_round=4, **SETTINGS) as s:
        yield s, s.baseline()


def _extension(tree: Path) -> Path:
    [found] = [p for p in (tree / "nearby").iterdir() if p.name.startswith(EXTENSION.split("/")[1])]
    return found


def test_the_build_is_detected_from_what_the_repository_declares(nearby, tmp_path):
    repo = nearby[0]
    assert detect(repo, sys.executable) == Build(SETUPTOOLS, "python setup.py build_ext --inplace")
    assert detect(repo, sys.executable, "make inplace") == Build(COMMAND, "make inplace")  # rebuild-cmd wins
    plain = make_repo(tmp_path / "plain", {"setup.py": "from setuptools import setup\nsetup(name='plain')\n",
                                           "plain.py": "x = 1\n"})
    assert detect(plain, sys.executable) == Build(NONE, None)
    assert detect(tmp_path, sys.executable) == Build(NONE, None)  # no setup.py at all
    # astropy 3: setup.py calls astropy_helpers' setup(), which finds each subpackage's extensions itself
    helpers = make_repo(tmp_path / "helpers", {"setup.py": "from astropy_helpers.setup_helpers import setup\nsetup()\n",
                                               "pkg/setup_package.py": "def get_extensions():\n    return []\n",
                                               "pkg/src/fast.c": "int f(void) { return 1; }\n"})
    assert detect(helpers, sys.executable) == Build(SETUPTOOLS, "python setup.py build_ext --inplace")
    # a Python file runs from the worktree as it is; anything else the build may read
    build = detect(repo, sys.executable)
    assert not build.needed([PAIRS, "nearby/__pycache__/pairs.cpython-311.pyc", "docs/changes.rst", "README.md"])
    assert build.needed([PYX]) and build.needed(["nearby/_core.pxd"]) and build.needed(None)
    assert not Build(NONE, None).needed([PYX])


def test_unmodified_code_that_does_not_build_stops_the_run_before_anything_runs(tmp_path):
    """The baseline builds first: a build that fails there is a clear error, its compiler's first error first, and no
    test or workload has run."""
    repo = make_repo(tmp_path / "broken", {
        "setup.py": "from setuptools import Extension, setup\n"
                    "setup(ext_modules=[Extension('tiny._c', ['tiny/_c.c'])])\n",
        "tiny/__init__.py": "", "tiny/_c.c": "int f(void) { return 1 }\n",
        "bench.py": "def setup():\n    pass\n\n\ndef workload():\n    return 1\n",
        "tests/test_tiny.py": "def test_tiny():\n    pass\n"})
    with stage(repo, tmp_path, tmp_path / "cache") as s:
        with pytest.raises(BaselineError, match=r"^the unmodified code does not build: tiny/_c\.c:1:\d+: error: "
                                                r"expected .;. before .}. token\n`python setup.py build_ext --inplace` "
                                                r"exited with status 1:"):
            s.baseline()
        assert s.notes() == [] and s.ctx.env.limits.usage.processes == 1  # the build alone


def test_a_meson_python_repository_runs_but_its_compiled_sources_are_not_built_without_rebuild_cmd(tmp_path):
    """meson-python's build folder names its source folder by absolute path, so no worktree's build serves another:
    the unmodified code runs as its environment built it, a Python edit needs nothing, and an edit to a C source is
    refused, never judged on the old binary."""
    repo = make_repo(tmp_path / "mesonic", {
        "pyproject.toml": '[build-system]\nrequires = ["meson-python"]\nbuild-backend = "mesonpy"\n',
        "meson.build": "project('mesonic', 'c')\n", "mesonic/__init__.py": "", "mesonic/_fast.c": "int f(void);\n"})
    workspaces = Workspaces(open_repo(repo), "meson")
    env = Environment(sys.executable, RLIMITS.limits(timeout_s=60), workspaces)
    try:
        branch = workspaces.branch("perfagent/meson", "HEAD")
        assert env.rebuild(branch) is None and env.build == Build(MESON, None)
        with env.scratch(head(branch), {"mesonic/__init__.py": "X = 1\n"}) as tree:
            assert env.rebuild(tree) is None
        with env.scratch(head(branch), {"mesonic/_fast.c": "int f(void) { return 2; }\n"}) as tree:
            assert env.rebuild(tree) == ("mesonic/_fast.c: perfagent cannot build this repository's extensions in a "
                                         "worktree (meson-python): give rebuild-cmd")
    finally:
        workspaces.close()


# a package with one C extension module that does nothing, built by its setup.py
TINY = {"setup.py": "from setuptools import Extension, setup\n"
                    "setup(ext_modules=[Extension('tiny._c', ['tiny/_c.c'])])\n",
        "tiny/__init__.py": "", ".gitignore": "build/\n*.so\n__pycache__/\n",
        "tiny/_c.c": '#include <Python.h>\n'
                     'static struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "_c", NULL, -1, NULL};\n'
                     "PyMODINIT_FUNC PyInit__c(void) { return PyModule_Create(&m); }\n"}


def test_a_branch_from_a_checkout_never_built_is_built_before_anything_runs(tmp_path):
    """The run's branch worktree takes the user's build products (Environment.adopt): a checkout that has none was
    never built, so nothing is vouched for and the first rebuild builds."""
    repo = make_repo(tmp_path / "tiny", TINY)
    (repo / "tiny" / "__pycache__").mkdir()
    (repo / "tiny" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")  # ignored, and no build product
    workspaces = Workspaces(open_repo(repo), "tiny")
    env = Environment(sys.executable, RLIMITS.limits(timeout_s=120), workspaces)
    try:
        branch = workspaces.branch("perfagent/tiny", "HEAD")
        env.adopt(branch)
        assert env.rebuild(branch) is None and env.build_seconds[branch] is not None
        assert list((branch / "tiny").glob("_c.*.so"))
    finally:
        workspaces.close()


def test_a_branch_from_a_checkout_built_before_its_last_source_change_is_built_again(tmp_path):
    """A checkout built after its last change is taken as built (the first rebuild builds nothing); one whose C source
    changed after its module was built (edited and never rebuilt) is not: the first rebuild builds it."""
    repo = make_repo(tmp_path / "tiny", TINY)
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=repo, check=True,
                   capture_output=True)
    [built] = (repo / "tiny").glob("_c.*.so")
    for stale in (False, True):
        if stale:  # the source saved again after the build, unchanged: git sees no change, the build tool does
            later = built.stat().st_mtime + 60
            os.utime(repo / "tiny" / "_c.c", (later, later))
        workspaces = Workspaces(open_repo(repo), "tiny")
        env = Environment(sys.executable, RLIMITS.limits(timeout_s=120), workspaces)
        try:
            branch = workspaces.branch(f"perfagent/tiny-{stale}", "HEAD")
            env.adopt(branch)
            assert env.rebuild(branch) is None
            assert (env.build_seconds[branch] is not None) == stale, stale
        finally:
            workspaces.close()


def test_a_branch_takes_the_checkouts_submodule_files_its_build_needs(tmp_path):
    """A setup.py that imports its build helpers from a submodule (astropy's astropy_helpers): the branch worktree,
    which git leaves without submodule files, takes them from the user's checkout (not the submodule's .git), and the
    first rebuild builds there."""
    helpers = make_repo(tmp_path / "helpers", {"build_helpers.py": "SOURCES = ['tiny/_c.c']\n"})
    repo = make_repo(tmp_path / "tiny", {**TINY, "setup.py": "import sys\nsys.path.insert(0, 'vendor')\n"
                     "from build_helpers import SOURCES\nfrom setuptools import Extension, setup\n"
                     "setup(ext_modules=[Extension('tiny._c', SOURCES)])\n"})
    git(repo, "submodule", "add", "-q", str(helpers), "vendor", env={"GIT_ALLOW_PROTOCOL": "file"})
    git(repo, "commit", "-qm", "build helpers")
    workspaces = Workspaces(open_repo(repo), "tiny")
    env = Environment(sys.executable, RLIMITS.limits(timeout_s=120), workspaces)
    try:
        branch = workspaces.branch("perfagent/tiny", "HEAD")
        env.adopt(branch)
        assert (branch / "vendor" / "build_helpers.py").read_text() == "SOURCES = ['tiny/_c.c']\n"
        assert not (branch / "vendor" / ".git").exists()
        assert env.rebuild(branch) is None
        assert list((branch / "tiny").glob("_c.*.so"))
    finally:
        workspaces.close()


def test_a_build_uses_the_environments_compiler_cache_read_only(tmp_path):
    """A batch environment with ccache next to its interpreter and a warmed cache folder: the command compiles
    through it (CC, CXX) and never writes the cache (the sandbox would refuse it anyway)."""
    setup = make_repo(tmp_path / "ext", {"setup.py": "from setuptools import Extension, setup\n"
                                                     "setup(ext_modules=[Extension('m', ['m.c'])])\n", "m.c": ""})
    bin_ = tmp_path / "env" / "bin"
    bin_.mkdir(parents=True)
    python = bin_ / "python"
    assert detect(setup, str(python)).command == "python setup.py build_ext --inplace"
    (bin_ / "ccache").write_text("#!/bin/sh\n")
    (bin_ / "ccache").chmod(0o755)
    (tmp_path / "env" / "ccache").mkdir()
    command = detect(setup, str(python)).command
    assert command.startswith(f"CC='{bin_}/ccache gcc' CXX='{bin_}/ccache g++' CCACHE_DIR={tmp_path}/env/ccache "
                              f"CCACHE_READONLY=1 ")
    assert command.endswith(" python setup.py build_ext --inplace")


def test_a_build_runs_with_the_targets_interpreter_even_from_an_environment_under_tmp(tmp_path):
    """bubblewrap gives each child a private /tmp: a batch environment there (--env-cache under /tmp) stays visible
    to the build command, which runs its python, not the next one on PATH."""
    venv.create(tmp_path / "env", with_pip=False)
    (tmp_path / "tree").mkdir()
    python = tmp_path / "env" / "bin" / "python"
    assert run_shell("python -c 'import sys; print(sys.prefix)' > prefix.txt", tmp_path / "tree", str(python),
                     Settings(isolation="bubblewrap").limits(timeout_s=60)) is None
    assert (tmp_path / "tree" / "prefix.txt").read_text().strip() == str(tmp_path / "env")


def test_the_first_error_of_a_build_names_its_file_relative_to_the_worktree():
    tree = Path("/tmp/perfagent-x/scratch-2")
    gcc = (f"gcc -c nearby/_fast.c -o build/temp/nearby/_fast.o\n{tree}/nearby/_fast.c: In function 'f':\n"
           f"{tree}/nearby/_fast.c:12:5: error: expected ';' before '}}' token\n"
           f"{tree}/nearby/_fast.c:14:1: error: 'x' undeclared\nerror: command '/usr/bin/gcc' failed\n")
    assert first_error(gcc, tree) == "nearby/_fast.c:12:5: error: expected ';' before '}' token"
    cython = ("Compiling nearby/_core.pyx because it changed.\nwarning: nearby/_core.pyx:3:4: Unused entry 'k'\n"
              "nearby/_core.pyx:9:40: Expected ')', found 'NEWLINE'\nTraceback (most recent call last):\n")
    assert first_error(cython, tree) == "nearby/_core.pyx:9:40: Expected ')', found 'NEWLINE'"
    header = "In file included from m.c:1:\nm.h:2:10: fatal error: nope.h: No such file or directory\n"
    assert first_error(header, tree) == "m.h:2:10: fatal error: nope.h: No such file or directory"
    assert first_error("setup.py:3: SyntaxWarning: invalid escape sequence\nerror: no compiler", tree) is None
    # numpy 1.22 on Python 3.11: a probe of the compiler's AVX-512 support fails on purpose long before the compile
    # that failed the build
    probe = ("CCompilerOpt.feature_test[1461] : testing feature 'AVX512_KNL'\nIn file included from immintrin.h:51,\n"
             "/usr/lib/gcc/x86_64-linux-gnu/12/include/avx512erintrin.h:55:20: error: '__W' is used uninitialized\n")
    failed = ("numpy/core/src/multiarray/arraytypes.c.src:65:26: error: lvalue required as left operand of assignment\n"
              "   65 |     Py_SIZE(v) = n;\n"
              "numpy/core/src/multiarray/arraytypes.c.src:70:3: error: lvalue required as left operand of assignment\n"
              'error: Command "gcc -c build/src.linux-x86_64-3.11/numpy/core/src/multiarray/arraytypes.c" failed\n')
    assert first_error(probe + "building 'numpy.core._multiarray_umath' extension\n" * 60 + failed, tree) == \
        "numpy/core/src/multiarray/arraytypes.c.src:65:26: error: lvalue required as left operand of assignment"


def test_build_files_are_protected_and_native_code_is_guarded_like_python():
    for path in ("setup.py", "pyproject.toml", "meson.build", "numpy/_core/meson.build", "meson_options.txt",
                 "meson.options", "CMakeLists.txt", "cmake/FindBLAS.cmake", "Makefile", "numpy/core/setup.py"):
        assert protected_reason(path, None), path
    for path in ("nearby/_core.pyx", "nearby/_core.pxd", "src/fast.c", "src/fast.h", "src/fast.cpp"):
        assert protected_reason(path, None) is None, path
    # a submodule's files are another repository's: a commit of the run cannot hold them
    assert protected_reason("astropy_helpers/astropy_helpers/setup_helpers.py", None, [], ("astropy_helpers",)) == \
        "inside the submodule astropy_helpers (another repository's files, which no commit here can hold)"
    assert protected_reason("astropy_helpers_extra.py", None, [], ("astropy_helpers",)) is None
    # what a speedup never needs, as C and Cython write it
    for code in ('system("rm -rf x");', "pid_t pid = fork();", 'execvp(argv[0], argv);', "unlink(path);",
                 'void* lib = dlopen("libc.so.6", RTLD_NOW);'):
        assert unsafe_reason(code, "src/fast.c"), code
    assert suspicious_reason('FILE* f = fopen("/tmp/cache", "w");')
    assert unsafe_reason('setenv("CACHED", "1", 1);', "nearby/_core.pyx")
    # in Python these names are methods or the code's own functions
    for code in ("name = platform.system()", "items.remove(x)", "def kill(self):\n    pass", "remove(x)"):
        assert unsafe_reason(code, "nearby/pairs.py") is None, code


def test_a_scratch_worktree_starts_built_and_rebuilds_only_what_changed(built):
    """The branch worktree was built (a full build: Cython, then gcc); a candidate's worktree starts with its build
    products and file times: a Python-only change runs no build command, a change to another file runs it and it
    finds everything up to date (the extension is the inherited file, not compiled again)."""
    s, _ = built
    env, branch = s.ctx.env, s.branch
    assert env.build.system == SETUPTOOLS and env.build_seconds[branch] > 0  # the baseline built it, in full
    module = _extension(branch)
    pairs = (branch / PAIRS).read_text().replace("counts = []", "counts: list[int] = []")
    with env.scratch(s.base, {PAIRS: pairs}) as tree:
        assert env.rebuild(tree) is None and env.build_seconds[tree] is None  # no build command ran
        assert _extension(tree).read_bytes() == module.read_bytes()
    with env.scratch(s.base, {"MANIFEST.in": "include nearby/*.pyx\n"}) as tree:  # neither Python nor prose
        inherited = os.stat(_extension(tree))
        assert env.rebuild(tree) is None and env.build_seconds[tree] is not None  # the command ran...
        assert os.stat(_extension(tree)).st_mtime_ns == inherited.st_mtime_ns  # ...and compiled nothing
        assert os.stat(tree / "nearby/_core.c").st_mtime_ns == os.stat(branch / "nearby/_core.c").st_mtime_ns


def test_a_round_rebuilds_each_candidate_and_judges_its_build(built):
    """Four candidates at once: the typed loop in the .pyx (50x), a .pyx that does not compile, a Python-only edit of
    a function the workload never runs, and -O3 in setup.py. Only the typed loop is timed; it is committed, and the
    branch takes its build."""
    s, baseline = built
    focus = s.focus(baseline)
    judge = baseline.judge(s.ctx.settings, s.ctx.env, s.ctx.workload)
    decided = Trial(s.ctx, baseline, judge, s.branch).run(1, focus, [], [])
    typed, broken, python_only, setup = decided
    assert [c.verdict.reason for c in decided] == ["accepted", "build failed", "not run by the workload",
                                                    "edits a protected file"], [c.verdict.detail for c in decided]
    assert typed.verdict.speed.speedup > 10 and typed.files == [PYX] and typed.commit
    assert typed.tests == ["tests/test_pairs.py"] and "tests/test_pairs.py::test_large_counts_do_not_overflow" in \
        typed.verdict.tests_run
    assert broken.verdict.detail.splitlines()[0] == "nearby/_core.pyx:7:4: Expected ')', found 'count'"
    assert broken.verdict.speed is None and not broken.verdict.tests_run
    # build seconds, apart from tests and timing: none for a Python-only change, nor for one never built
    assert typed.build_s > 0 and broken.build_s > 0 and python_only.build_s is None and setup.build_s is None
    assert typed.as_dict()["build_s"] == typed.build_s and "build_s" not in python_only.as_dict()
    assert setup.verdict.detail == "setup.py is packaging"
    assert any(n.startswith("  candidate 1: built in ") for n in s.notes())
    assert any(n.startswith("  candidate 2: build failed in ") for n in s.notes())
    assert "  calls to nearby/_core.pyx:count_close_pairs are not recorded (compiled code): its Python callers' " \
        "calls and the workload's result check it" in s.notes()  # the call recorder traces Python frames only
    # the branch holds the committed .pyx and took its build from the candidate's worktree: it built nothing
    assert "cdef double* v = values.data.as_doubles" in (s.branch / PYX).read_text()
    assert s.ctx.env.build_seconds[s.branch] is None
    probe = subprocess.run([sys.executable, "-c", "from nearby import _core; _core.count_close_pairs([1.0], 1.0)"],
                           cwd=s.branch, env={**os.environ, "PYTHONPATH": str(s.branch)}, capture_output=True,
                           text=True)
    assert "TypeError: Argument 'values' has incorrect type" in probe.stderr, probe.stderr  # the typed loop's


def test_a_compiled_function_is_never_taken_for_one_the_workload_does_not_run(built):
    """A profile without the function in it: a Python function is 'not run by the workload'; a Cython one may run
    unnamed (a profile of Python frames never names it, a native one not once the compiler inlined it): timed."""
    s, baseline = built
    trial = Trial(s.ctx, baseline, baseline.judge(s.ctx.settings, s.ctx.env, s.ctx.workload), s.branch)
    trial.sampled = Profile("py-spy", 100, 1.0, [])
    index, pyx, pairs = SourceIndex(s.branch), (s.branch / PYX).read_text(), (s.branch / PAIRS).read_text()
    compiled = touched_functions(index, {PYX: pyx}, {PYX: pyx.replace("count += 1", "count = count + 1")})
    python = touched_functions(index, {PAIRS: pairs}, {PAIRS: pairs.replace("counts = []", "counts = list()")})
    assert [span.key for span in compiled] == ["nearby/_core.pyx:count_close_pairs"]
    assert trial._never_run(compiled, set()) is None
    assert trial._never_run(python, set()).startswith("the workload never runs neighbour_counts")
    assert trial._never_run(python, {"nearby.pairs:neighbour_counts"}) is None  # its result run called it


def test_a_compiled_function_is_guarded_by_the_tests_of_its_packages_python_code(built):
    """Coverage sees no line of a .pyx run: the tests that guard its functions are those that run the Python code of
    its folder (nearby/), as a candidate's own tests, never none."""
    s, baseline = built
    pyx = (s.branch / PYX).read_text()
    [span] = touched_functions(SourceIndex(s.branch), {PYX: pyx}, {PYX: pyx.replace("count += 1", "count = count + 1")})
    selection = baseline.plan.guard(s.branch, s.base, [span])
    assert (selection.files, selection.unguarded) == (["tests/test_pairs.py"], [])


def test_minimal_patches_keep_a_compiled_file_whole_and_never_call_it_unexercised(built):
    """The extension's function renamed (two hunks of the .pyx) and its Python caller following it: without either
    file the tests fail. Coverage sees no line of the .pyx run, yet the .pyx is needed, not a rigged test: both
    stay, the .pyx as one group."""
    s, baseline = built
    judge = baseline.judge(s.ctx.settings, s.ctx.env, s.ctx.workload)
    pyx, pairs = (s.branch / PYX).read_text(), (s.branch / PAIRS).read_text()
    before = {PYX: pyx, PAIRS: pairs}
    after = {PYX: pyx.replace("compiled with Cython", "compiled with Cython (one loop)")
             .replace("def count_close_pairs(", "def count_pairs_within("),
             PAIRS: pairs.replace("_core.count_close_pairs(", "_core.count_pairs_within(")}
    # the full candidate's figures matter only to a smaller version that passes its tests: none does here
    accepted = Verdict(ACCEPTED, "40x faster", speed=SpeedStats(40.0, 20.0, 80.0, 0.95, 1e-4, 5, 5, 0.04, 0.001, 0.05,
                                                               "faster"))
    change, verdict = Minimiser(s.ctx, judge, baseline.reference).minimise(
        CandidateRecord(1, "Rename the loop."), Change(before, after), accepted, ["tests/test_pairs.py"])
    assert verdict is accepted and change.after == after
    notes = [n for n in s.notes() if "minimal patch" in n]
    assert notes[-2:] == ["  minimal patch: nearby/_core.pyx is needed (tests failed)",
                          "  minimal patch: nearby.pairs:close_pairs is needed (tests failed)"]
