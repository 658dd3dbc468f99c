"""A canary in a candidate's test run: the outcomes come from the candidate's own process, where any code it loads can
rewrite them, so each run also holds two tests whose outcomes are known, one that must pass and one that must fail.
They are written as a real-looking test file (a random name, random values) beside the selected tests, run last (the
plugin puts the last argument's tests last, in their order: the run stops at the first failure) and removed right
after. A run that reports either the wrong way, or leaves them out when nothing stopped it, was tampered with."""
from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

_SUBJECTS = ["values", "ranges", "bounds", "ordering", "defaults", "totals", "offsets", "limits", "pairs", "counts",
             "merge", "window", "spacing", "rounding", "padding"]
_VERBS = ["check", "keep", "handle", "compute", "preserve", "combine", "split", "accept", "match", "track"]
_TEXT = '''\
def {passing}():
    {subject} = [{a}, {b}, {c}]
    assert sum({subject}) == {total}


def {failing}():
    {subject} = [{a}, {b}, {c}]
    assert max({subject}) - min({subject}) == {wrong}
'''


@dataclass(frozen=True)
class Canary:
    path: Path  # the test file, in the worktree
    must_pass: str  # its tests' names (test_...)
    must_fail: str

    def nodeids(self, outcomes: dict[str, str]) -> dict[str, str]:
        """{test name: node id} of the canary's tests among `outcomes`' node ids."""
        return {nodeid.rsplit("::", 1)[-1]: nodeid for nodeid in outcomes
                if PurePosixPath(nodeid.split("::", 1)[0]).name == self.path.name and "::" in nodeid}

    def tampered(self, outcomes: dict[str, str], stopped: bool) -> str | None:
        """How the run misreported the canary (`outcomes` includes its tests), or None; `stopped`: the run ended
        early (a failure, a timeout), so the canary, run last, may not have run."""
        found = {name: outcomes[nodeid] for name, nodeid in self.nodeids(outcomes).items()}
        name = self.path.name
        if found.get(self.must_fail, "failed") not in ("failed", "error"):
            return (f"the test run reported {found[self.must_fail]} a test that must fail ({self.must_fail} in "
                    f"{name}, written by perfagent beside the selected tests)")
        if found.get(self.must_pass, "passed") != "passed":
            return (f"the test run reported {found[self.must_pass]} a test that must pass ({self.must_pass} in "
                    f"{name}, written by perfagent beside the selected tests)")
        missing = [test for test in (self.must_pass, self.must_fail) if test not in found]
        if missing and not stopped:
            return (f"the test run left out {' and '.join(missing)} of {name}, written by perfagent beside the "
                    f"selected tests, though no test failed before them")
        return None


def _folder(worktree: Path, target: str) -> Path:
    """The folder of a test target (a file, a node id or a folder)."""
    path = worktree / target.split("::", 1)[0]
    return path if path.is_dir() else path.parent


@contextmanager
def planted(worktree: Path, targets: list[str]) -> Iterator[Canary]:
    """A canary test file beside the first target's tests while the block runs; gone afterwards, whatever happened
    (test runs write no bytecode: PYTHONDONTWRITEBYTECODE)."""
    rng = random.SystemRandom()
    folder = _folder(worktree, targets[0])
    taken = {p.name for p in folder.iterdir()} | {PurePosixPath(t.split("::", 1)[0]).name for t in targets}
    taken |= {p.name for t in targets if (worktree / t).is_dir() for p in (worktree / t).rglob("*.py")}
    while True:  # a name no test module of the run has: pytest imports folders without __init__.py by name
        name = f"test_{rng.choice(_SUBJECTS)}_{rng.choice(_SUBJECTS)}.py"
        passing, failing = (f"test_{rng.choice(_VERBS)}_{subject}" for subject in rng.sample(_SUBJECTS, 2))
        if name not in taken:
            break
    a, b, c = (rng.randint(2, 99) for _ in range(3))
    canary = Canary(folder / name, passing, failing)
    canary.path.write_text(_TEXT.format(passing=passing, failing=failing, subject=rng.choice(_SUBJECTS), a=a, b=b,
                                        c=c, total=a + b + c, wrong=max(a, b, c) - min(a, b, c) + rng.randint(1, 9)),
                           encoding="utf-8")
    try:
        yield canary
    finally:
        canary.path.unlink(missing_ok=True)
