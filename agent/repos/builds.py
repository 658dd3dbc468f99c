"""How a repository builds its compiled extensions, so that a user need not write rebuild-cmd, and so that a worktree
is rebuilt only for what changed.

    detect(repo, python, explicit)  -> Build: the build system and the shell command that builds the extensions in
                                       place (None when there is nothing to build); an explicit command wins
    Build.needed(changed)           -> whether changes to these paths need the command (a .py file runs as it is)
    first_error(output, worktree)   -> a failed build's first compiler or Cython error, its path relative to the
                                       worktree (the headline of the "build failed" verdict)
    inherit(built, target)          -> a worktree of the same code takes a built one's products, with file times
                                       that make the build tool rebuild only what changes there afterwards

The command runs in the worktree, in the sandbox (it may write only there), with the target's interpreter first on
PATH. Systems:
- setuptools (a setup.py that declares extensions: ext_modules, Extension, cythonize; or any setup.py in a repository
  with C, C++ or Cython sources, as astropy 3's declares them elsewhere): `python setup.py build_ext --inplace`,
  which regenerates a Cython file's C only when the .pyx is newer than it and recompiles an extension only when one
  of its sources is newer than the built module;
- meson-python (pyproject.toml's build-backend "mesonpy"): recognised, but no command is run (its build lives in a
  folder that names its source folder by absolute path, so one built for a worktree serves no other, and its
  editable install imports from that folder whatever the path says): a change to compiled sources cannot be built
  in a worktree, and the loop rejects it as such unless rebuild-cmd is given;
- other backends (CMake, a plain Makefile): nothing is guessed: give rebuild-cmd.
A compiler cache: when the interpreter's folder holds a `ccache` executable and its environment (the folder above)
a `ccache/` cache folder, the command compiles through it, reading the cache only (the sandbox lets a rebuild
write in its worktree alone); batch environments warm that folder when they build a task's repository.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable

from perfagent.sandbox import gitsafe
from perfagent.sandbox.tree import Snapshot, snapshot

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

SETUPTOOLS, MESON, COMMAND, NONE = "setuptools", "meson-python", "rebuild-cmd", "none"
SETUPTOOLS_COMMAND = "python setup.py build_ext --inplace"
# a setup.py that builds compiled code names one of these
_DECLARES_EXTENSIONS = re.compile(r"\b(ext_modules|Extension|cythonize)\b")
_EXTENSION_SOURCES = ("*.pyx", "*.c", "*.cc", "*.cpp", "*.cxx")  # what an extension compiles
_EXTENSION_BUILD_FILES = ("setup.py", "meson.build")
# an error as compilers (gcc, clang: "file:line:col: error: ...", also "fatal error") and Cython ("file.pyx:line:col:
# message", its warnings start with "warning:") print it
_ERROR = re.compile(r"^(?P<file>[^\s:][^:\n]*):(?P<line>\d+):(?:(?P<col>\d+):)? (?P<say>.+)$", re.M)
# changes that never need a build: Python source runs from the worktree as it is, its bytecode perfagent compiles,
# and prose (a changelog entry, a docstring page) is no input of compiled code
_NO_BUILD = (".py", ".pyi", ".rst", ".md")
_CYTHON = (".pyx", ".pxd", ".pxi")
_BURST = 40  # lines between two errors of one compile (a compiler's notes and code excerpts, Cython's context)


@dataclass(frozen=True)
class Build:
    """How a repository's extensions are built: `system` (SETUPTOOLS, MESON, COMMAND for an explicit rebuild-cmd,
    NONE) and the shell command that builds them in a worktree, None when there is nothing to build (NONE) or no
    command perfagent can run (MESON)."""
    system: str
    command: str | None

    def needed(self, changed: Iterable[str] | None) -> bool:
        """Whether changes to the repository-relative paths `changed` (None: not known) need the command."""
        if self.command is None:
            return False
        return changed is None or any(not _needs_no_build(path) for path in changed)


def _needs_no_build(path: str) -> bool:
    return path.endswith(_NO_BUILD) or "__pycache__" in PurePosixPath(path).parts


def builds_extensions(worktree: Path) -> bool:
    """Whether the repository at `worktree` (a worktree perfagent made, or a repository's top folder) has extensions
    to compile: C, C++ or Cython sources that git tracks, and a build file."""
    if not any((Path(worktree) / name).exists() for name in _EXTENSION_BUILD_FILES):
        return False
    return bool(gitsafe.git(worktree, "ls-files", "--", *_EXTENSION_SOURCES).strip())


def detect(repo: Path, python: str, explicit: str | None = None) -> Build:
    """The build of the repository checked out at `repo`, for the interpreter `python`: `explicit` (rebuild-cmd)
    when given, else what its files declare. A setup.py builds with setuptools when it declares extensions, or when
    the repository has sources to compile (astropy 3's setup.py leaves its extensions to each subpackage's
    setup_package.py, through astropy_helpers); meson-python's backend is recognised without a command."""
    if explicit:
        return Build(COMMAND, explicit)
    if _backend(Path(repo)) == "mesonpy":
        return Build(MESON, None)
    setup = Path(repo) / "setup.py"
    try:
        declares = setup.is_file() and bool(_DECLARES_EXTENSIONS.search(setup.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        declares = False
    if declares or setup.is_file() and builds_extensions(repo):
        return Build(SETUPTOOLS, compiler_cache(python) + SETUPTOOLS_COMMAND)
    return Build(NONE, None)


def _backend(repo: Path) -> str | None:
    """The build backend pyproject.toml names, if any."""
    try:
        return tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["build-backend"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return None


def first_error(output: str, worktree: Path) -> str | None:
    """The first error of the compile that failed a build, from its `output`, as "file:line:col: message", the file
    relative to `worktree`; None when it names none. A compiler's line counts when it says "error", Cython's when it
    names a Cython file. A build stops at the compile that failed, so that is the last burst of errors (each less than
    _BURST lines after the one before): errors earlier in the output were tolerated, as numpy's probes of the
    compiler's CPU features fail on purpose."""
    roots = tuple(f"{root}/" for root in dict.fromkeys([str(worktree), str(Path(worktree).resolve())]))
    errors = [found for found in _ERROR.finditer(output)
              if found["say"].startswith(("error: ", "fatal error: ")) or found["file"].endswith(_CYTHON)]
    if not errors:
        return None
    first = len(errors) - 1
    while first and output.count("\n", errors[first - 1].end(), errors[first].start()) < _BURST:
        first -= 1
    found = errors[first]
    file = found["file"]
    for root in roots:
        file = file.removeprefix(root)
    return f"{file}:{found['line']}:{found['col'] + ':' if found['col'] else ''} {found['say'].strip()}"


def compiler_cache(python: str) -> str:
    """The environment assignments that make a build compile through the interpreter's environment's ccache, read
    only ("" when it has none)."""
    ccache, cache = Path(python).parent / "ccache", Path(python).parent.parent / "ccache"
    if not (os.access(ccache, os.X_OK) and cache.is_dir()):
        return ""
    settings = {"CC": f"{ccache} gcc", "CXX": f"{ccache} g++", "CCACHE_DIR": str(cache), "CCACHE_READONLY": "1",
                "CCACHE_NOSTATS": "1"}
    return "".join(f"{name}={shlex.quote(value)} " for name, value in settings.items())


def inherit(built: Snapshot, target: Path, sources: set[str] | None = None) -> bool:
    """Give the worktree `target` what `built` (a snapshot of another worktree of the same code, taken right after its
    build) holds beyond its sources: its build products, copied with their times over whatever `target` has at their
    paths, and its sources' times, so that the build tool finds everything up to date until a file changes in
    `target`. `sources`: the files git tracks in `target`; by default those of a fresh checkout, i.e. every file
    there. Only files still as they were at the snapshot are taken, never one the code wrote since; bytecode is left to
    sandbox/bytecode.py. True when every source is the same in both and every product was taken: then `target` is
    built as far as `built` was."""
    checkout = snapshot(target)
    sources = {path for path in checkout.entries if path != ".git"} if sources is None else sources
    same = all(path in built.entries for path in sources)
    for path, was in built.entries.items():
        parts = path.split("/")
        if not stat.S_ISREG(was[0]) or parts[0] == ".git" or "__pycache__" in parts:
            continue
        source, copy, there = built.root / path, target / path, checkout.entries.get(path)
        if not built.unchanged(path):
            same = False  # written since the build: neither taken nor vouched for
        elif path not in sources:
            same = _replace(source, copy, there, target) and same
        elif there is not None and stat.S_ISREG(there[0]) and there[2] == was[2] and \
                copy.read_bytes() == source.read_bytes():
            os.utime(copy, ns=(was[3], was[3]))
        else:
            same = False
    return same


def _replace(source: Path, copy: Path, there: tuple | None, root: Path) -> bool:
    """Copy the product `source` to `copy` (with its times), in place of the file or link there (never through a
    link); False when a folder is in the way."""
    if there is not None and stat.S_ISDIR(there[0]) or not _real_folders(root, copy.relative_to(root).parts[:-1]):
        return False
    if there is not None:
        copy.unlink()
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, copy)
    return True


def _real_folders(root: Path, parts: tuple[str, ...]) -> bool:
    """Whether no folder on the way from `root` down `parts` is a link (which could lead out of the worktree)."""
    folder = root
    for part in parts:
        folder = folder / part
        if folder.is_symlink() or folder.exists() and not folder.is_dir():
            return False
    return True
