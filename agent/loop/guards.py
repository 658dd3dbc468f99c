"""Checks against benchmark gaming on a candidate's edits, before anything runs: files it may not touch, code that
games a benchmark or is unsafe to keep. (The files its runs leave behind are found by sandbox/tree.py.)"""
from __future__ import annotations

import fnmatch
import re
import sys
from pathlib import PurePosixPath

from perfagent.localize.testselect import is_conftest, is_test_file

# (glob, why): files whose change would let a candidate pass by moving the goalposts, besides test files (is_test_file)
PROTECTED = [
    ("pytest.ini", "test configuration"), ("tox.ini", "test configuration"), ("noxfile.py", "test configuration"),
    (".github/*", "CI configuration"), (".ci/*", "CI configuration"), (".gitlab-ci.yml", "CI configuration"),
    ("setup.py", "packaging"), ("setup.cfg", "packaging"), ("pyproject.toml", "packaging"),
    ("requirements*.txt", "packaging"), ("MANIFEST.in", "packaging"),
    # on the path, a distribution's entry points name pytest plugins that pytest loads on its own (pytest11)
    ("*.dist-info/*", "package metadata that names plugins"), ("*.egg-info/*", "package metadata that names plugins"),
]

# (glob on the file's name, why): files that say how compiled code is built, in whatever folder (meson.build and
# nested setup.py files declare a folder's extensions): a changed build could compile other code than the sources show
BUILD_FILES = [
    ("setup.py", "build configuration"), ("meson.build", "build configuration"),
    ("meson_options.txt", "build configuration"), ("meson.options", "build configuration"),
    ("CMakeLists.txt", "build configuration"), ("*.cmake", "build configuration"), ("Makefile", "build configuration"),
    ("GNUmakefile", "build configuration"), ("pyproject.toml", "build configuration"),
]

# (glob on the file's name, why): files Python runs on its own at start-up, in whatever folder is on its path, before
# any code perfagent could check; conftest.py, pytest's own, is a test file (is_test_file)
LOADED_AT_STARTUP = [
    ("sitecustomize.py", "a file Python runs at start-up (sitecustomize)"),
    ("usercustomize.py", "a file Python runs at start-up (usercustomize)"),
    ("*.pth", "a path configuration file Python runs at start-up (.pth)"),
]

# modules a top-level file or folder of the repository would shadow: the worktree leads sys.path in every run, so a
# `pytest.py` or `json.py` there would be what `python -m pytest` or the harness imports
SHADOWED = frozenset(sys.stdlib_module_names) | {"pytest", "_pytest", "pluggy", "coverage", "py"}

REFERS_TO_HARNESS = "refers to the workload or the harness"
_CALL_ARGS = r"(?:[^()]|\((?:[^()]|\([^()]*\))*\))*"  # a call's arguments, up to two levels of nested parentheses
_C_CALL = r"(?<![.\w])(?<!def )"  # a function called by its bare name, as C calls the C library's

# code patterns in added lines that reach what a speedup never needs: the test run's own machinery, modules by a name
# built at run time (getattr(__import__("ti" + "me"), ...), the way every cheat hides), other objects through the
# garbage collector, the interpreter's table of modules and its builtins. Cheap, not a boundary: the test run's canary
# (sandbox/canary.py) and the sandbox hold without them.
RIGGING = [
    (re.compile(r"\bpytest_plugins\b|PYTEST_ADDOPTS|PYTEST_PLUGINS|"
                r"['\"]-p['\"]\s*,\s*['\"](?!-)|['\"](?:[^'\"\n]*\s)?-p\s+[\w.]+"),  # "-p", "name" or "-p name"
     "names a pytest plugin (pytest_plugins, PYTEST_ADDOPTS, -p)"),
    (re.compile(r"\b_pytest\b|\bpytest_\w+|\bhookimpl\b|\bpluggy\b"), "reaches into pytest's internals or hooks"),
    (re.compile(r"\b__import__\b|\bimport_module\(\s*(?![rbu]?(['\"])[\w.]*\1\s*[,)])"),
     "imports a module by a name built at run time"),
    (re.compile(r"\bget_(objects|referrers|referents)\b"), "reaches other objects through the garbage collector"),
    (re.compile(r"\bsys\.modules\b(\s*\[[^]\n]*\])?(\s*\.\s*\w+)*\s*=(?!=)|\bsys\.modules\.(update|setdefault|pop|"
                r"popitem|clear)\b|\bdel\s+sys\.modules\b|\bsetattr\(\s*sys\.modules\b"), "edits sys.modules"),
    (re.compile(r"\bimport\s+builtins\b|\bfrom\s+builtins\s+import\b|\bbuiltins\s*\.|\b__builtins__\b"),
     "reaches the builtins (builtins, __builtins__)"),
]

# code patterns in added lines that let code notice it is being benchmarked, or carry results across processes
SUSPICIOUS = [
    (re.compile(r"sys\._getframe|inspect\.(currentframe|stack|getouterframes)|\bf_back\b"),
     "inspects its caller (sys._getframe / inspect.stack)"),
    (re.compile(r"\b(workload|harness)\.py\b|__perfagent|perfagent_|PERFAGENT"), REFERS_TO_HARNESS),
    (re.compile(r"os\.environ\[[^]]+\]\s*=|os\.environ\.(setdefault|update)|os\.putenv"),
     "writes environment variables (results carried between processes)"),
    (re.compile(r"\bpickle\.dump|\bshelve\.open|\bmarshal\.dump|"
                r"\b(?:f|fd)?open\(" + _CALL_ARGS + r"['\"]([wax]|r[bt]?\+)[bt+]*['\"]"),  # "w" and other write modes
     "writes files (results cached on disk between processes)"),
    *RIGGING,
]


# code patterns in added lines that are dangerous outside the sandbox: the branch is merged into real code later
UNSAFE = [
    (re.compile(r"\bos\.(kill|killpg|fork|forkpty|system|popen|exec\w*|spawn\w*)\b|\bsignal\.pthread_kill\b"),
     "starts or kills processes"),
    (re.compile(r"\bsubprocess\b|\bctypes\b"), "runs external programs or native calls"),
    (re.compile(r"\bshutil\.rmtree\b|\bos\.(remove|unlink|rmdir|removedirs)\b|\.unlink\(|\.rmdir\("),
     "deletes files"),
    (re.compile(r"\bsocket\b|\burllib\b|\bhttp\.client\b|\brequests\.|\bhttpx\b|\bftplib\b"),
     "opens network connections"),
]

# what UNSAFE and SUSPICIOUS find in Python, as C, C++ and Cython code does it: the C library's functions called by
# their bare names (not a method such as platform.system(), not a `def`); only in files that are not Python, where
# `remove(x)` is no list method
NATIVE = [
    (re.compile(_C_CALL + r"(?:system|popen|fork|vfork|posix_spawnp?|exec[lv]p?e?|kill|dlopen)\s*\("),
     "starts or kills processes, or loads native code"),
    (re.compile(_C_CALL + r"(?:remove|unlink|rmdir)\s*\("), "deletes files"),
    (re.compile(_C_CALL + r"(?:setenv|putenv)\s*\("),
     "writes environment variables (results carried between processes)"),
]


def unsafe_reason(added_code: str, path: str = "") -> str | None:
    """Why code a candidate adds (to the file `path`) is unsafe to keep, or None. A speedup needs none of these."""
    native = NATIVE if path and not path.endswith(".py") else []
    return next((why for pattern, why in UNSAFE + native if pattern.search(added_code)), None)


def protected_reason(path: str, workload_path: str | None, allowed: list[str] = (),
                     submodules: tuple[str, ...] = ()) -> str | None:
    """Why `path` may not be edited, or None when it may (`submodules`: the repository's submodule paths)."""
    if workload_path and PurePosixPath(path) == PurePosixPath(workload_path):
        return "the workload file"
    owner = next((s for s in submodules if PurePosixPath(s) in PurePosixPath(path).parents), None)
    if owner:
        return f"inside the submodule {owner} (another repository's files, which no commit here can hold)"
    if any(fnmatch.fnmatch(path, pattern) for pattern in allowed):
        return None
    if is_test_file(path):
        return "a pytest conftest.py" if is_conftest(path) else "a test file"
    parts = PurePosixPath(path).parts
    # a top-level module or regular package (a folder without __init__.py is a namespace package, which any module
    # found later on sys.path beats)
    shadowing = len(parts) == 1 and path.endswith(".py") or len(parts) == 2 and parts[1] == "__init__.py"
    if shadowing and parts[0].removesuffix(".py") in SHADOWED:
        return f"a top-level module that would shadow Python's or pytest's own `{parts[0].removesuffix('.py')}`"
    name = parts[-1]
    return next((why for pattern, why in PROTECTED if fnmatch.fnmatch(path, pattern)), None) or \
        next((why for pattern, why in BUILD_FILES + LOADED_AT_STARTUP if fnmatch.fnmatch(name, pattern)), None)


def suspicious_reason(added_code: str, workload_name: str | None = None) -> str | None:
    """Why code a candidate adds looks like benchmark gaming, or None; `workload_name`: the workload file's name."""
    if workload_name and re.search(rf"\b{re.escape(workload_name)}\b", added_code):
        return REFERS_TO_HARNESS
    return next((why for pattern, why in SUSPICIOUS if pattern.search(added_code)), None)

