"""perfagent's branches in a user's repository (perfagent/RUN_ID, one per run that kept a change): listed with their
runs, deleted on request. Plain git on the repository itself, never through a worktree; only branches under
perfagent/ are ever deleted, and never one that is checked out (the repository's own, a worktree's, a running
perfagent's)."""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from perfagent.record import runs_folder
from perfagent.summary import Summary

PREFIX = "perfagent/"


class BranchError(ValueError):
    """A branch that cannot be deleted as asked (not perfagent's, not there, checked out)."""


@dataclass(frozen=True)
class RunBranch:
    name: str  # perfagent/RUN_ID
    date: str  # of its last commit, as git prints it (YYYY-MM-DD HH:MM:SS +ZZZZ)
    commits: int  # commits that no other branch holds
    checked_out: str | None  # the worktree it is checked out in, if any
    summary: Summary | None = field(hash=False, compare=False)  # its run's record, when the run went to the
    # repository's runs folder (and is of this perfagent's format)

    @property
    def run_id(self) -> str:
        return self.name.removeprefix(PREFIX)

    @property
    def speedup(self) -> str:
        """The run's overall result, in words."""
        if self.summary is None:
            return "run records not in the repository's runs folder"
        if not self.summary.final:
            return f"no final timing (run {self.summary.status})"
        speed = self.summary.final.speed
        return f"{speed.speedup:.2f}x (95% CI {speed.ci_low:.2f}-{speed.ci_high:.2f})"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode:
        raise BranchError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _checked_out(repo: Path) -> dict[str, str]:
    """Branch -> the worktree it is checked out in (the repository's own folder among them)."""
    where, tree = {}, None
    for line in _git(repo, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            tree = line.removeprefix("worktree ")
        elif line.startswith("branch refs/heads/"):
            where[line.removeprefix("branch refs/heads/")] = tree
    return where


def _summary(repo: Path, run_id: str) -> Summary | None:
    path = runs_folder(repo) / run_id / "summary.json"
    try:
        return Summary.read(json.loads(path.read_text(encoding="utf-8")), path)
    except (OSError, ValueError):  # none, damaged, or another format's
        return None


def run_branches(repo: Path) -> list[RunBranch]:
    """perfagent's branches in `repo` (its top folder), oldest first."""
    checked_out = _checked_out(repo)
    branches = []
    refs = _git(repo, "for-each-ref", "--sort=committerdate", "--format=%(refname:short)%09%(committerdate:iso)",
                f"refs/heads/{PREFIX}")
    for line in refs.splitlines():
        name, date = line.split("\t")
        commits = _git(repo, "rev-list", "--count", name, "--not", f"--exclude={PREFIX}*", "--branches")
        branches.append(RunBranch(name, date, int(commits), checked_out.get(name),
                                  _summary(repo, name.removeprefix(PREFIX))))
    return branches


def chosen(branches: list[RunBranch], ids: list[str]) -> list[RunBranch]:
    """The branches named by run ids (or whole names, perfagent/RUN_ID); a name that is not one of perfagent's
    branches, or one that is checked out, is refused before anything is deleted."""
    by_name = {b.name: b for b in branches}
    picked = []
    for run in ids:
        name = run if run.startswith(PREFIX) else PREFIX + run
        if name not in by_name:
            known = ", ".join(b.run_id for b in branches) or "none"
            raise BranchError(f"{run} is not one of perfagent's branches here (perfagent's runs: {known})")
        if by_name[name].checked_out:
            raise BranchError(f"{name} is checked out at {by_name[name].checked_out}: switch that worktree to another "
                              f"branch first (or, if a perfagent run is using it, let it finish)")
        picked.append(by_name[name])
    return list(dict.fromkeys(picked))


def delete(repo: Path, branches: list[RunBranch]) -> None:
    """Delete perfagent's branches that no worktree has checked out (a run's record stays in its run directory)."""
    for branch in branches:
        if not branch.name.startswith(PREFIX) or branch.checked_out:  # chosen() refuses these; never delete them
            raise BranchError(f"{branch.name} is not a perfagent branch that can be deleted")
        _git(repo, "branch", "-D", "--", branch.name)
