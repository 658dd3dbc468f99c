"""One Python environment per task setup, built once and shared by every task that declares the same setup.

An environment is a venv made by the interpreter running perfagent. It sees perfagent's own packages after its own
(a .pth file), so pytest and coverage, which perfagent's test runs need, are always there, while what the setup
command installs takes precedence. The setup command runs in the task's worktree with the venv activated:
- a task's `setup_cmd` when it has one (then tasks with the same command share the environment);
- by default `pip install -e '.[test,tests,testing]'` (the repository with its dependencies and test extras;
  shared by the tasks of one repository at one base commit). The task's own code always comes from its worktree (PYTHONPATH), not from here.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from perfagent.record import file_lock
from perfagent.runs.tasks import Task

DEFAULT_SETUP = "python -m pip install --quiet -e '.[test,tests,testing]'"  # pip skips extras a project lacks
_READY = "perfagent-ready"


class EnvError(RuntimeError):
    pass


class Environments:
    def __init__(self, root: Path, timeout_s: float = 1800):
        self.root = Path(root).expanduser().resolve()
        self.timeout_s = timeout_s

    def key(self, task: Task) -> str:
        setup = task.setup_cmd or DEFAULT_SETUP
        identity = {"setup": setup, "python": sys.version, "executable": sys.executable}
        if not task.setup_cmd:
            identity.update(repo=task.repo, commit=task.base_commit)
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def python_for(self, task: Task, worktree: Path) -> str:
        """The interpreter of the task's environment, building the environment when it does not exist yet."""
        folder = self.root / self.key(task)
        python = folder / "bin" / "python"
        with file_lock(self.root / f".{folder.name}.lock"):
            if not (folder / _READY).exists():
                shutil.rmtree(folder, ignore_errors=True)  # a build that died half-way
                self._build(folder, task.setup_cmd or DEFAULT_SETUP, worktree)
        return str(python)

    def _build(self, folder: Path, setup: str, worktree: Path) -> None:
        venv.EnvBuilder(with_pip=True, symlinks=True).create(folder)
        site = Path(subprocess.run([str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig."
                                    "get_paths()['purelib'])"], capture_output=True, text=True, check=True)
                    .stdout.strip())
        (site / "zz_perfagent_base.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        env = {**os.environ, "VIRTUAL_ENV": str(folder), "PATH": f"{folder / 'bin'}:{os.environ.get('PATH', '')}",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.pop("PYTHONHOME", None)
        log = folder / "setup.log"
        try:
            with open(log, "w") as out:
                result = subprocess.run(setup, shell=True, cwd=worktree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise EnvError(f"the setup command `{setup}` took more than {self.timeout_s:.0f} s (log: {log})") from None
        if result.returncode:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise EnvError(f"the setup command `{setup}` failed with exit code {result.returncode} "
                           f"(log: {log}):\n{tail}")
        (folder / _READY).write_text(setup + "\n")
