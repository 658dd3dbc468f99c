"""Environments for repositories with compiled extensions: the build requirements pinned for a commit's era, one
environment per (repository, commit, interpreter) whose build products reach every worktree of that commit, and a
task whose repository does not build recorded as skipped with the build's first error."""
import subprocess
import sys

import git as gitpython

from perfagent.loop.environment import Environment
from perfagent.reasons import SKIPPED
from perfagent.runs.batch import BatchJob, solve
from perfagent.runs.envs import Environments, first_error
from perfagent.runs.pins import build_requires, era_pins, setup_command
from perfagent.runs.tasks import Task
from perfagent.sandbox.workspace import Workspaces
from conftest import RLIMITS, git, make_repo

WORKLOAD = "def setup():\n    pass\n\n\ndef workload():\n    return 1\n"
SETUP_PY = """\
from setuptools import Extension, setup
setup(name="cext", version="0.1", packages=["cext"], ext_modules=[Extension("cext._core", ["cext/_core.c"])])
"""
CORE_C = """\
#include <Python.h>
static PyObject *answer(PyObject *self, PyObject *args) { return PyLong_FromLong(42); }
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_core", "", -1, methods};
PyMODINIT_FUNC PyInit__core(void) { return PyModule_Create(&module); }
"""
BUILD = "python setup.py build_ext --inplace"


def test_era_pins_raise_exact_pins_that_predate_python_311_and_cap_open_ones_at_the_commits_series():
    # astropy 4.2 (2020): Cython 0.29.14 and oldest-supported-numpy predate Python 3.11; open ends get 2020's series
    old = ["setuptools", "setuptools_scm", "wheel", "cython==0.29.14", "oldest-supported-numpy", "extension-helpers"]
    assert era_pins(old, "2020-10-15") == ["setuptools<60", "setuptools-scm", "wheel", "cython<3,>=0.29.32",
                                           "numpy<1.24,>=1.23.2", "extension-helpers<1"]
    # astropy 6.1 (2024): its own bounds stand; numpy 2 did not exist yet
    new = ["setuptools", "cython>=3.0.0,<3.1.0", "numpy>=1.25", "extension-helpers==1.*"]
    assert era_pins(new, "2024-03-18") == ["setuptools<72", "cython<3.1.0,>=3.0.0", "numpy<2,>=1.25",
                                           "extension-helpers==1.*", "wheel"]
    # numpy 1.24 (2022): an exact setuptools of its numpy.distutils kept; a marker for another machine dropped
    numpy = ["packaging==20.5; platform_machine=='arm64'", "setuptools==59.2.0", "wheel==0.37.0", "Cython>=0.29.30,<3.0"]
    assert era_pins(numpy, "2022-07-07") == ["setuptools==59.2.0", "wheel==0.37.0", "cython<3.0,>=0.29.30"]
    # astropy 6.2.dev (July 2024): numpy 2.0 then, not the numpy 2.4 perfagent's own packages hold (no np.in1d)
    assert era_pins(["numpy>=2.0.0rc1"], "2024-07-11") == ["numpy<2.1,>=2.0.0rc1"]
    # astropy 6.1 (April 2024) asked for numpy 2.0's pre-release: capped at the series after it, not below it
    assert era_pins(["numpy>=2.0.0rc1"], "2024-04-17") == ["numpy<2.1,>=2.0.0rc1"]
    # a declared bound looser than the era's (astropy 7.0.dev, Aug. 2024) does not let numpy 2.2 in; a tighter one stands
    assert era_pins(["numpy>=2.0.0,<3"], "2024-08-09") == ["numpy<2.1,<3,>=2.0.0"]
    assert era_pins(["numpy>=2.0.0,<2.0.2"], "2024-08-09") == ["numpy<2.0.2,>=2.0.0"]
    # meson-python (2024-11): no setuptools, so no wheel
    assert era_pins(["meson-python>=0.15.0", "Cython>=3.0.6"], "2024-11-24") == ["meson-python>=0.15.0",
                                                                                 "cython<3.1,>=3.0.6"]


def test_build_requires_reads_the_build_system_or_falls_back_to_setuptools():
    assert build_requires({"pyproject.toml": '[build-system]\nrequires = ["meson-python", "cython"]\n'
                                             'build-backend = "mesonpy"\n'}) == (["meson-python", "cython"], "mesonpy")
    assert build_requires({}) == (["setuptools", "wheel"], None)
    # astropy 3.2 (2019): no build-system; setup.cfg's setup_requires and Cython for its .pyx (setuptools would fetch
    # the first from the network mid-build; a checkout has no generated C without the second)
    setup_cfg = "[metadata]\nname = astropy\n\n[options]\nsetup_requires = numpy>=1.13\ninstall_requires = numpy\n"
    assert build_requires({"setup.cfg": setup_cfg}, cython=True) == \
        (["setuptools", "wheel", "numpy>=1.13", "cython"], None)
    listed = "[options]\nsetup_requires =\n    numpy>=1.13\n    Cython>=0.29\n"
    assert build_requires({"setup.cfg": listed}, cython=True)[0] == ["setuptools", "wheel", "numpy>=1.13",
                                                                     "Cython>=0.29"]
    # astropy 3.1 (2018) names its setup_requires in setup.py's code: a setup.py that names numpy builds against it
    setup_py = ("min_numpy_version = 'numpy>=' + astropy.__minimum_numpy_version__\n"
                "setup_requires = [min_numpy_version]\n")
    assert build_requires({"setup.py": setup_py}, cython=True)[0] == ["setuptools", "wheel", "numpy", "cython"]
    assert build_requires({"setup.py": "setup(name='pure')\n"})[0] == ["setuptools", "wheel"]
    declared = '[build-system]\nrequires = ["setuptools"]\n'  # a declared build-system is taken as it is
    assert build_requires({"pyproject.toml": declared, "setup.cfg": setup_cfg, "setup.py": setup_py}, cython=True) == \
        (["setuptools"], None)
    assert era_pins(build_requires({"setup.cfg": setup_cfg}, cython=True)[0], "2019-04-19") == \
        ["setuptools<60", "wheel", "numpy<1.24,>=1.13", "cython<3,>=0.29.32"]
    # its tests use nose-style setup methods, which pytest 7.2 warns about (an error under its filterwarnings)
    assert setup_command({"setup.cfg": setup_cfg}, "2019-04-19", cython=True).endswith(" 'pytest<7.2'")
    assert "pytest" not in setup_command({"pyproject.toml": declared}, "2024-03-18")


def task(**fields) -> Task:
    return Task(**{"instance_id": "c-1", "repo": "acme/cext", "base_commit": "0" * 40, "workload": WORKLOAD,
                   "setup_cmd": BUILD, **fields})


def test_a_compiled_environment_is_keyed_by_commit_and_interpreter(tmp_path):
    envs = Environments(tmp_path / "envs")
    assert envs.key(task()) == envs.key(task(base_commit="1" * 40))  # a pure setup command is shared ...
    assert envs.key(task(), compiled=True) != envs.key(task(base_commit="1" * 40), compiled=True)  # ... a build not
    other = Environments(tmp_path / "envs", interpreter=("/opt/python3.12/bin/python3", "3.12.1"))
    assert other.key(task(), compiled=True) != envs.key(task(), compiled=True)


def _clone(source, path):
    subprocess.run(["git", "clone", "-q", str(source), str(path)], check=True)
    return path


def test_a_compiled_repository_is_built_once_and_its_products_reach_each_worktree_newer_than_the_sources(tmp_path):
    source = make_repo(tmp_path / "src", {"setup.py": SETUP_PY, "cext/__init__.py": "", "cext/_core.c": CORE_C})
    counter = tmp_path / "builds.txt"
    built = task(setup_cmd=f"{BUILD} && echo built >> {counter}")
    envs = Environments(tmp_path / "envs")
    first = envs.python_for(built, _clone(source, tmp_path / "a"))
    fresh = _clone(source, tmp_path / "b")
    assert not list((fresh / "cext").glob("_core*.so"))
    assert envs.python_for(built, fresh) == first
    assert counter.read_text() == "built\n"  # built once, in the first worktree
    module = next((fresh / "cext").glob("_core*.so"))
    assert module.stat().st_mtime > (fresh / "cext" / "_core.c").stat().st_mtime
    probe = subprocess.run([first, "-c", "import cext._core as c; print(c.answer(), c.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, env={"PYTHONPATH": str(fresh)})
    assert probe.stdout.split() == ["42", str(module)], probe.stderr
    # the worktree's products are up to date: setuptools compiles nothing
    again = subprocess.run([first, "setup.py", "build_ext", "--inplace"], cwd=fresh, capture_output=True, text=True)
    assert again.returncode == 0 and "_core.c" not in again.stdout, again.stdout


def test_a_task_whose_repository_does_not_build_is_skipped_with_the_builds_first_error(tmp_path):
    broken = CORE_C.replace("return PyLong_FromLong(42);", "return PyLong_FromLong(42)")
    source = make_repo(tmp_path / "src", {"setup.py": SETUP_PY, "cext/__init__.py": "", "cext/_core.c": broken})
    mirror = tmp_path / "repos" / "acme+cext" / "repo"
    subprocess.run(["git", "clone", "-q", "--mirror", str(source), str(mirror)], check=True)
    job = BatchJob(model="oracle", out=tmp_path / "out", repo_cache=tmp_path / "repos", env_cache=tmp_path / "envs")
    record = task(base_commit=git(source, "rev-parse", "HEAD").strip())
    row = solve(record.model_dump(mode="json", by_alias=True), job.model_dump(mode="json"))
    assert row["status"] == SKIPPED
    assert row["error"].startswith("cext/_core.c:2:"), row["error"]  # the compiler's own line, inside the repository
    assert "error: expected" in row["error"]
    assert "skipped: the repository does not build here" in (job.out / "tasks" / "c-1" / "log.txt").read_text()


def test_the_first_error_of_a_build_log_is_the_cause_not_pips_summary():
    log = ("Building editable for astropy (pyproject.toml): started\n"
           "  /tmp/wt/astropy/wcs/src/a.c:12:5: error: lvalue required as left operand of assignment\n"
           "  /tmp/wt/astropy/wcs/src/b.c:3:1: error: unknown type name 'x'\n"
           "  error: command '/usr/bin/gcc' failed with exit code 1\n"
           "  error: subprocess-exited-with-error\n")
    assert first_error(log, "/tmp/wt") == "astropy/wcs/src/a.c:12:5: error: lvalue required as left operand of " \
                                          "assignment"
    cython = ("Error compiling Cython file:\n------\n...\n    cdef int x = y\n------\n\n"
              "astropy/io/fits/_utils.pyx:10:17: undeclared name not builtin: y\n")
    assert first_error(cython, "/tmp/wt") == "astropy/io/fits/_utils.pyx:10:17: undeclared name not builtin: y"
    assert first_error("error: subprocess-exited-with-error\nRuntimeError: Missing `SVML` submodule!\n", "/wt") == \
        "RuntimeError: Missing `SVML` submodule!"
    backend = ("ERROR: Exception:\nTraceback (most recent call last):\npip._vendor.pyproject_hooks._impl."
               "BackendUnavailable: Traceback (most recent call last):\nModuleNotFoundError: No module named 'mesonpy'\n")
    assert first_error(backend, "/wt") == "ModuleNotFoundError: No module named 'mesonpy'"
    resolver = ("ERROR: pip's dependency resolver does not currently take into account all the packages that are "
                "installed.\n      ImportError: cannot import name 'soft_unicode' from 'markupsafe'\n")
    assert first_error(resolver, "/wt") == "ImportError: cannot import name 'soft_unicode' from 'markupsafe'"
    meson = ("  error: subprocess-exited-with-error\n  ╰─> [2 lines of output]\n      meson-python: error: Could not "
             "find the specified meson: \"vendored-meson/meson/meson.py\"\nerror: metadata-generation-failed\n"
             "hint: See above for details.\n")
    assert first_error(meson, "/wt") == 'meson-python: error: Could not find the specified meson: ' \
                                        '"vendored-meson/meson/meson.py"'



def test_the_runs_branch_worktree_starts_as_the_users_checkout_is_built(tmp_path):
    """The batch worktree (or a user's checkout) holds the build's products: the run's branch worktree takes the ones
    git ignores, so its first rebuild builds nothing; an untracked file git does not ignore stays behind."""
    source = make_repo(tmp_path / "src", {"setup.py": SETUP_PY, "cext/__init__.py": "", "cext/_core.c": CORE_C,
                                          ".gitignore": "build/\n*.so\n"})
    subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=source, check=True,
                   capture_output=True)
    (source / "notes.py").write_text("uncommitted = True\n")
    env = Environment(sys.executable, RLIMITS.limits(timeout_s=120), Workspaces(gitpython.Repo(source), "adopt"))
    try:
        branch = env.workspaces.branch("perfagent/adopt", git(source, "rev-parse", "HEAD").strip())
        env.adopt(branch)
        assert [m.name for m in (branch / "cext").glob("_core*.so")] == [m.name for m in
                                                                        (source / "cext").glob("_core*.so")]
        assert not (branch / "notes.py").exists()
        assert env.rebuild(branch) is None
        assert env.build.command and env.build_seconds[branch] is None  # a build system, and nothing to build
    finally:
        env.workspaces.close()
