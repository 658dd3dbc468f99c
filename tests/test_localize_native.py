"""Native-aware localization: a repository's Cython and C functions ranked by the time inside them (real Cython builds,
real py-spy --native runs), and the sources their frames map to."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from perfagent.localize import native
from perfagent.localize.compiled import c_functions, cython_functions
from perfagent.localize.hotspots import ProfileOptions, parse_frame, profile_workload, tally_pyspy
from perfagent.localize.source import SourceIndex, touched_functions
from perfagent.measure.workload import Workload
from perfagent.model.prompting import Target, optimize_messages
from perfagent.report import flamegraph
from tests.conftest import RLIMITS, git, make_repo

pytestmark = pytest.mark.xdist_group("localize_native")  # one worker builds the extension once

CORE = '''\
"""The slow part, compiled."""


def slow_loop(n):
    total = 0
    for i in range(n):
        total += i % 7
    return total


cdef class Counter:
    cdef long seen

    def count(self, n):
        cdef long i
        for i in range(n):
            self.seen += i % 3
        return self.seen
'''
EXTENSION = {
    "pkg/__init__.py": "",
    "pkg/_core.pyx": CORE,
    "pkg/api.py": '''\
        from pkg._core import Counter, slow_loop


        def run(n):
            return slow_loop(n)


        def count(n):
            return Counter().count(n)
        ''',
    "setup.py": '''\
        from Cython.Build import cythonize
        from setuptools import setup

        setup(ext_modules=cythonize("pkg/_core.pyx"))
        ''',
    "bench.py": '''\
        from pkg.api import count, run


        def setup():
            pass


        def workload():
            return run(300_000) + count(3_000_000)
        ''',
}
SLOW_LOOP = (4, 8)  # its span in pkg/_core.pyx; the loop is lines 6-7
PURE = {
    "pkg/__init__.py": "",
    "pkg/mod.py": "def squares(n):\n    return sum([i * i for i in range(n)])\n",
    "bench.py": "from pkg.mod import squares\n\n\ndef setup():\n    pass\n\n\ndef workload():\n"
                "    return squares(200_000)\n",
}


@pytest.fixture(scope="module")
def extension(tmp_path_factory) -> Path:
    """A repository with a Cython extension built in place, as setuptools builds it (Python's CFLAGS: -g)."""
    repo = make_repo(tmp_path_factory.mktemp("native") / "repo", EXTENSION)
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=repo, check=True, capture_output=True)
    return repo


def _profile(repo: Path, tmp: Path, **options):
    workload = Workload.parse("bench.py", repo)
    return profile_workload(repo, workload, python=sys.executable, tmp=tmp, limits=RLIMITS.limits(timeout_s=120),
                            options=ProfileOptions(seconds=1.0, **options))


@pytest.fixture(scope="module")
def native_profile(extension, tmp_path_factory):
    return _profile(extension, tmp_path_factory.mktemp("profile"))


def test_time_inside_the_pyx_ranks_its_function_first(native_profile):
    assert native_profile.native and native_profile.profiler == "py-spy", native_profile.note
    top = native_profile.hotspots[0]
    assert (top.key, top.file, top.qualname, (top.start, top.end)) == (
        "pkg/_core.pyx:slow_loop", "pkg/_core.pyx", "slow_loop", SLOW_LOOP)
    assert top.self_share > 0.5 and top.lines[0][0] in (6, 7), top.lines  # its hottest line is in the loop
    assert [name for name, _ in top.callers] == ["pkg.api:run"]
    run = next(h for h in native_profile.hotspots if h.qualname == "run")
    assert run.self_share < 0.05 and run.callees[0][0] == "pkg/_core.pyx:slow_loop"  # the caller only calls it
    counter = next(h for h in native_profile.hotspots if h.file == "pkg/_core.pyx" and h.qualname != "slow_loop")
    assert counter.qualname == "Counter.count" and all(14 <= line <= 18 for line, _ in counter.lines)
    frames = [f for row in Path(native_profile.raw_path).read_text().splitlines() for f in row.split(";")]
    assert any("__Pyx" in f for f in frames)  # Cython's helpers were sampled, and counted for their caller
    assert not any("__Pyx" in h.qualname or h.qualname == "<module>" for h in native_profile.hotspots)


def test_without_native_frames_the_python_caller_ranks_first(extension, tmp_path):
    profile = _profile(extension, tmp_path, native=False)
    assert not profile.native
    assert profile.hotspots[0].key == "pkg.api:run" and profile.hotspots[0].self_share > 0.5
    assert not any(h.file.endswith(".pyx") for h in profile.hotspots)


def test_py_spy_without_native_support_falls_back_and_says_so(extension, tmp_path, monkeypatch):
    """py-spy built without native unwinding (on platforms other than x86-64 and ARM Linux or Windows, as its build.rs
    decides) refuses --native with this message and status 1: here a script in its place does what such a build
    does. The profile is taken again without it, the Python caller ranks first, and the note says why."""
    real = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    refusal = "Collecting stack traces from native extensions (`--native`) is not supported on your platform."
    stub = tmp_path / "bin" / "py-spy"
    stub.parent.mkdir()
    stub.write_text(textwrap.dedent(f'''\
        #!/bin/sh
        for arg in "$@"; do
            if [ "$arg" = --native ]; then
                echo '{refusal}' >&2
                exit 1
            fi
        done
        exec {real} "$@"
        '''))
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}:{Path(sys.executable).parent}:/usr/bin:/bin")
    profile = _profile(extension, tmp_path)
    assert profile.profiler == "py-spy" and not profile.native
    assert "--native" in profile.note and "not supported on your platform" in profile.note
    assert "without native frames" in profile.note
    assert profile.hotspots[0].key == "pkg.api:run"


def test_a_pure_python_repository_is_profiled_without_native_frames(tmp_path):
    repo = make_repo(tmp_path / "repo", PURE)
    assert not native.has_extensions(repo)
    profile = _profile(repo, tmp_path)
    assert profile.profiler == "py-spy" and not profile.native and not profile.note
    frames = [parse_frame(f) for row in Path(profile.raw_path).read_text().splitlines()
              for f in row.rpartition(" ")[0].split(";") if f]
    assert frames and all(line > 0 and not file.endswith((".so", ".6")) for _, file, line in frames)
    assert profile.hotspots[0].key == "pkg.mod:squares"


def test_which_checkouts_have_extensions_of_their_own(extension, tmp_path):
    assert native.has_extensions(extension)
    module = next((extension / "pkg").glob("_core.*.so"))
    binary_only = make_repo(tmp_path / "binary", PURE)  # a prebuilt module without its sources
    shutil.copy(module, binary_only / "pkg")
    assert not native.has_extensions(binary_only)
    installed = make_repo(tmp_path / "installed", {**PURE, "venv/lib/site-packages/x/x.c": "int x(void) { return 0; }"})
    shutil.copy(module, installed / "venv/lib/site-packages/x")  # an environment inside the checkout
    assert not native.has_extensions(installed)


def _stacks(repo: Path, *leaves: str) -> str:
    """py-spy raw output: one stack per leaf chain, each below the harness frame and the Python caller, 10 samples."""
    top = f"perfagent_profiled_workload ({repo}/harness.py:1);workload ({repo}/bench.py:9);run ({repo}/pkg/api.py:5)"
    return "".join(f"{top};{leaf} 10\n" for leaf in leaves)


def _ranked(repo: Path, raw: str) -> dict[str, tuple[int, list[int]]]:
    """Each hotspot's self time in stacks of _stacks, and its lines by share."""
    spots = tally_pyspy(raw, SourceIndex(repo), Workload.parse("bench.py", repo)).hotspots()
    stacks = raw.count("\n")
    return {h.key: (round(h.self_share * stacks), [line for line, _ in h.lines]) for h in spots}


def test_native_frames_map_to_their_sources(extension, tmp_path):
    """Frames as py-spy --native prints them (see perfagent.localize.native): each lands in the function it runs in,
    or counts for its caller."""
    so = next((extension / "pkg").glob("_core.*.so"))
    other = tmp_path / "other-worktree"  # the same files in another checkout
    header = os.path.relpath(Path(sysconfig.get_paths()["include"]) / "object.h", extension)  # ../../.. to Python's
    assert _ranked(extension, _stacks(
        extension,
        f"slow_loop ({extension}/pkg/_core.pyx:4);_core_slow_loop ({extension}/pkg/_core.pyx:7)",  # debug info
        "_core_slow_loop (pkg/_core.pyx:6)",  # py-spy resolved the .pyx relative to the working folder
        f"_core_slow_loop ({other}/pkg/_core.pyx:7)",
        f"_core_slow_loop ({extension}/pkg/_core.pyx:7);__Pyx_PyLong_RemainderObjC ({extension}/pkg/_core.pyx:1)",
        f"Counter_count ({so})",  # no debug info: by name, in the module's own .pyx
        f"__pyx_gb_3pkg_5_core_7Counter_2generator ({extension}/pkg/_core.pyx:17)",  # generated, but the code's own
        f"0x7f0d0d7bf130 ({so})",  # not even a symbol: its caller's
        f"__Pyx__PyNumber_Add_object_object ({extension}/cython_utility:1387)",  # Cython's helper
        "PyNumber_Add (/usr/lib/libpython3.11.so.1.0)",
        f"_core_slow_loop ({extension}/pkg/_core.pyx:7);Py_DECREF ({header}:538)",  # relative to the build folder
    )) == {
        "pkg/_core.pyx:slow_loop": (5, [7, 6]),
        "pkg.api:run": (3, [5]),
        "pkg/_core.pyx:Counter.count": (2, [17]),
    }


def test_generated_and_hand_written_c_frames(extension, tmp_path):
    """A Cython-generated C file py-spy could not map goes to its .pyx through Cython's comments; hand-written C goes to
    its function by line, or by name from a module without debug info (gcc's clone suffix dropped)."""
    generated = (extension / "pkg" / "_core.c").read_text().splitlines()
    in_loop = next(i for i, text in enumerate(generated, 1) if text.strip().startswith('/* "pkg/_core.pyx":7'))
    repo = tmp_path / "repo"
    shutil.copytree(extension, repo)
    (repo / "pkg" / "fast.c").write_text(FAST_C)
    (repo / "pkg" / "_fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (repo / "pkg" / "loops.c.src").write_text(LOOPS_C_SRC)
    outside = tmp_path / "venv" / "twice.pxd"  # an installed package's .pxd, which Cython names from where it ran
    outside.parent.mkdir()
    outside.write_text("cdef inline int twice(int x):\n    return 2 * x\n")
    inlined = len(generated) + 1
    with open(repo / "pkg" / "_core.c", "a") as c:
        c.write(f'/* "{os.path.relpath(outside, repo)}":2\n */\nstatic int twice(int x) {{ return 2 * x; }}\n')
    assert _ranked(repo, _stacks(
        repo,
        f"_core_slow_loop ({repo}/pkg/_core.c:{in_loop + 3})",
        f"fast_sum ({repo}/pkg/fast.c:12)",
        f"fast_sum.constprop.0 ({repo}/pkg/_fast.cpython-311-x86_64-linux-gnu.so)",
        f"fast_sum ({repo}/build/temp.linux-x86_64-cpython-311/pkg/generated.c:3)",  # a build product
        f"DOUBLE_add ({repo}/pkg/loops.c.src:7)",  # numpy's templates: the build's #line directives name them
        f"twice ({repo}/pkg/_core.c:{inlined + 2})",  # not the checkout's code: its caller's
    )) == {
        "pkg/_core.pyx:slow_loop": (1, [7]),
        "pkg/fast.c:fast_sum": (2, [12]),
        "pkg/loops.c.src:@TYPE@_add": (1, [7]),
        "pkg.api:run": (2, [5]),
    }


def test_native_glue_above_python_code_is_left_out(extension, tmp_path):
    """C code that calls back into the repository's Python code (numpy's __array_function__ dispatch, which ranked
    first on numpy__numpy-21832 above the expert's linspace) is left out above it, as a Python-only profile leaves it
    out: the Python function stays the entry point; native frames below it count, and the C function counts where
    it does the work itself."""
    repo = tmp_path / "repo"
    shutil.copytree(extension, repo)
    (repo / "pkg" / "fast.c").write_text(FAST_C)
    top = (f"perfagent_profiled_workload ({repo}/harness.py:1);workload ({repo}/bench.py:9);"
           f"fast_sum ({repo}/pkg/fast.c:12)")
    raw = (f"{top};run ({repo}/pkg/api.py:5);_core_slow_loop ({repo}/pkg/_core.pyx:7) 10\n"
           f"{top} 10\n")
    spots = {h.key: h for h in tally_pyspy(raw, SourceIndex(repo), Workload.parse("bench.py", repo)).hotspots()}
    run, loop, glue = spots["pkg.api:run"], spots["pkg/_core.pyx:slow_loop"], spots["pkg/fast.c:fast_sum"]
    assert (run.depth, run.cum_share, run.callers) == (0, 0.5, [("<workload>", 0.5)])
    assert (loop.depth, loop.self_share, loop.callers) == (1, 0.5, [("pkg.api:run", 0.5)])
    assert (glue.self_share, glue.cum_share, glue.callees) == (0.5, 0.5, [])


FAST_C = '''\
#include <Python.h>
/* { not code } */
static const char *NAMES[] = {"a", "b"};

struct pair { int a; int b; };

static double
fast_sum(const double *values, Py_ssize_t n)
{
    double total = 0;  /* "}" */
    for (Py_ssize_t i = 0; i < n; i++) {
        total += values[i];
    }
    return total;
}

#ifdef __cplusplus
extern "C" {
#endif
int helper(int x) { if (x) { return 1; } return 0; }
#ifdef __cplusplus
}
#endif
'''


LOOPS_C_SRC = '''\
/**begin repeat
 * #TYPE = FLOAT, DOUBLE#
 */
static void
@TYPE@_add(char **args)
{
    args[0] = args[1];
}
/**end repeat**/
'''


def test_c_function_spans():
    assert c_functions(FAST_C) == [("fast_sum", 7, 15), ("helper", 20, 20)]
    cpp = 'namespace npy {\ntemplate <typename T>\nvoid Sorter<T>::sort(T *a) const\n{\n    a[0] = T{};\n}\n}\n'
    assert c_functions(cpp) == [("Sorter<T>::sort", 2, 6)]


def test_cython_function_spans():
    source = textwrap.dedent('''\
        cdef extern from "math.h":
            double sqrt(double x) nogil

        ctypedef double (*unary)(double)


        @cython.boundscheck(False)
        cpdef double norm(double[:] values,
                          double scale=1.0) except? -1:
            """A docstring
        that is dedented."""
            cdef double total = 0  # cdef variable, not a function
            return sqrt(total) * scale


        cdef inline (int, double) pair(int a) nogil:
            return a, 1.0


        class Plain:
            def method(self):
                def inner():
                    return 1
                return inner()

            # a comment after the method
        ''')
    assert cython_functions(source) == [
        ("norm", 7, 13), ("pair", 16, 17), ("Plain.method", 21, 24), ("Plain.method.<locals>.inner", 22, 23)]
    assert cython_functions(CORE) == [("slow_loop", *SLOW_LOOP), ("Counter.count", 14, 18)]


def test_a_pyx_edit_touches_its_cython_function(extension):
    """The candidate's edited functions are Cython functions too, named as the native profile names them."""
    edited = CORE.replace("    total = 0\n    for i in range(n):", "    cdef long total = 0, i\n    for i in range(n):")
    touched = touched_functions(SourceIndex(extension), {"pkg/_core.pyx": CORE}, {"pkg/_core.pyx": edited})
    assert [s.key for s in touched] == ["pkg/_core.pyx:slow_loop"]


def test_the_prompt_shows_the_cython_code(extension, native_profile):
    target = Target(Workload.parse("bench.py", extension), 0.05, native_profile, top_k=1)
    user = optimize_messages(target, SourceIndex(extension), [], prompt_tokens=20000, model="scripted:x")[1]["content"]
    assert "with the repository's compiled (Cython, C) functions" in user
    assert "### `slow_loop` in pkg/_core.pyx" in user
    assert "```cython\ndef slow_loop(n):\n    total = 0\n    for i in range(n):" in user
    hot = native_profile.hotspots[0].lines[0][0]
    assert f"- line {hot} (" in user and CORE.splitlines()[hot - 1].strip() in user
    assert 'Top of pkg/_core.pyx:\n```cython\n"""The slow part, compiled."""' in user


def test_perfagent_profile_builds_the_extensions_and_names_the_pyx_function(extension):
    """The command profiles the committed code: a fresh worktree, whose extension (an untracked build product) is
    built as optimize builds it before the workload runs (here unoptimized, CFLAGS=-O0: half the compile time)."""
    done = subprocess.run([str(Path(sys.executable).with_name("perfagent")), "profile", str(extension), "-w",
                           "bench.py", "--json", "--seconds", "1", "--set", "isolation=rlimits"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CFLAGS": "-O0"})
    assert done.returncode == 0, done.stderr
    profile = json.loads(done.stdout)
    assert profile["native"] and profile["hotspots"][0]["key"] == "pkg/_core.pyx:slow_loop"
    assert 6 <= profile["hotspots"][0]["lines"][0][0] <= 7


def test_perfagent_profile_starts_from_the_checkouts_own_build(extension, tmp_path):
    """A checkout built in place whose products git ignores: the profile's worktree takes them (and their times), so
    nothing is compiled again; here no compiler would work (CC=false)."""
    repo = tmp_path / "built"
    shutil.copytree(extension, repo)
    (repo / ".gitignore").write_text("build/\npkg/_core.c\npkg/*.so\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore the build")
    done = subprocess.run([str(Path(sys.executable).with_name("perfagent")), "profile", str(repo), "-w", "bench.py",
                           "--json", "--seconds", "0.5", "--set", "isolation=rlimits"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CC": "false"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hotspots"][0]["key"] == "pkg/_core.pyx:slow_loop"


def test_the_flame_graph_shows_native_frames_without_a_line_zero(extension):
    so = next((extension / "pkg").glob("_core.*.so"))
    raw = _stacks(extension, f"slow_loop ({extension}/pkg/_core.pyx:4);_core_slow_loop ({extension}/pkg/_core.pyx:7)",
                  f"Counter_count ({so})")
    mapper = flamegraph.PathMapper(str(extension), ["pkg/_core.pyx", "pkg/api.py"])
    svg = flamegraph.flame_svg(flamegraph.frame_tree(flamegraph.read_stacks(raw, mapper)))
    assert '<g class="frame repository"><title>_core_slow_loop (pkg/_core.pyx:7)' in svg
    assert f"<title>Counter_count (pkg/{so.name})\n" in svg  # no debug information: no line, not line 0
