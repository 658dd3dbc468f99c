"""The bundled example repositories of batch mode (workloads/repos/<name>), built as git repositories whose commit
ids never change, so the bundled task file can name them as base commits."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from perfagent import workloads

OWNER = "perfagent-examples"  # the `repo` field of bundled tasks is "perfagent-examples/<name>"
SOURCES = Path(workloads.__file__).parent / "repos"
_IDENTITY = {"GIT_AUTHOR_NAME": "perfagent examples", "GIT_AUTHOR_EMAIL": "examples@perfagent.invalid",
             "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000", "GIT_COMMITTER_NAME": "perfagent examples",
             "GIT_COMMITTER_EMAIL": "examples@perfagent.invalid", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000"}


def names() -> list[str]:
    return sorted(p.name for p in SOURCES.iterdir() if p.is_dir()) if SOURCES.is_dir() else []


def build(name: str, dest: Path) -> str:
    """Create the git repository of example `name` at `dest` (which must not exist); returns its commit id."""
    source = SOURCES / name
    if not source.is_dir():
        raise FileNotFoundError(f"no bundled example repository {name!r} (have: {', '.join(names())})")
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    for path in [dest, *dest.rglob("*")]:  # fixed modes: the commit id must not depend on the checkout's umask
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {**os.environ, **_IDENTITY}
    git = ["git", "-C", str(dest), "-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null",
           "-c", "core.autocrlf=false"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True, env=env)
    subprocess.run([*git, "add", "-A"], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", f"{name}: example repository"], check=True, env=env)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, env=env, capture_output=True,
                          text=True).stdout.strip()
