"""Checks on a candidate's edits before anything runs: files it may not touch, code that games a benchmark."""
from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

# (glob, why): files whose change would let a candidate pass by moving the goalposts
PROTECTED = [
    ("tests/*", "a test file"), ("*/tests/*", "a test file"), ("test/*", "a test file"), ("*/test/*", "a test file"),
    ("test_*.py", "a test file"), ("*/test_*.py", "a test file"), ("*_test.py", "a test file"),
    ("conftest.py", "a pytest conftest.py"), ("*/conftest.py", "a pytest conftest.py"),
    ("pytest.ini", "test configuration"), ("tox.ini", "test configuration"), ("noxfile.py", "test configuration"),
    (".github/*", "CI configuration"), (".ci/*", "CI configuration"), (".gitlab-ci.yml", "CI configuration"),
    ("setup.py", "packaging"), ("setup.cfg", "packaging"), ("pyproject.toml", "packaging"),
    ("requirements*.txt", "packaging"), ("MANIFEST.in", "packaging"),
]

# code patterns in added lines that let code notice it is being benchmarked, or carry results across processes
SUSPICIOUS = [
    (re.compile(r"sys\._getframe|inspect\.(currentframe|stack|getouterframes)|\bf_back\b"),
     "inspects its caller (sys._getframe / inspect.stack)"),
    (re.compile(r"\bworkload\.py\b|__perfagent|perfagent_|PERFAGENT"), "refers to the workload or the harness"),
    (re.compile(r"os\.environ\[[^]]+\]\s*=|os\.environ\.(setdefault|update)|os\.putenv"),
     "writes environment variables (results carried between processes)"),
    (re.compile(r"\bpickle\.dump|\bshelve\.open|\bmarshal\.dump|open\([^)]*['\"][wa]b?\+?['\"]"),
     "writes files (results cached on disk between processes)"),
]


def protected_reason(path: str, workload_path: str | None, allowed: list[str] = ()) -> str | None:
    """Why `path` may not be edited, or None when it may."""
    if workload_path and PurePosixPath(path) == PurePosixPath(workload_path):
        return "the workload file"
    if any(fnmatch.fnmatch(path, pattern) for pattern in allowed):
        return None
    return next((why for pattern, why in PROTECTED if fnmatch.fnmatch(path, pattern)), None)


def suspicious_reason(added_code: str) -> str | None:
    return next((why for pattern, why in SUSPICIOUS if pattern.search(added_code)), None)
