"""Rebuild a task file of real SWE-fficiency tasks on dask (`dask/dask`) from two git mirrors.

    python benchmarks/make_real_tasks.py SWEFFICIENCY PROJECT_MIRROR OUT.jsonl [--ids ID ...] [--all]

SWEFFICIENCY is the benchmark's repository (`swefficiency/swefficiency`: a bare mirror, a clone, or the folder of a
checkout); PROJECT_MIRROR is a bare mirror (or clone) of `dask/dask`. Nothing is downloaded and nothing of either
repository is copied except what a task record holds (the expert patch's text and the workload's text).

From the benchmark's repository (its newest commit on HEAD):
- `predictions/workload_generation/workload_generation.jsonl`: the LLM-written workload per instance, which its
  authors published (not the workloads the gold figures were measured with: measured speedups differ);
- `eval_reports/eval_report_gold.csv`: `gold_speedup` and `pre_edit_runtime` per instance.
From the project's history: the instance id carries the PR number; the commit on HEAD whose subject ends with
`(#N)` (dask squash-merges its PRs), or a `Merge pull request #N` commit, is the PR's merge. `base_commit` is its
first parent; `patch` is `git diff base merge` over non-test files and `test_patch` over test files, as the
benchmark splits them. `edited_functions` maps the patch's hunks to the functions they edit at the base commit
(perfagent's own `perfagent.localize.source.edited_spans`); `covering_tests` are the test modules named after each edited module
in the nearest `tests/` folder at the base commit (e.g. `dask/array/core.py` -> `dask/array/tests/test_array_core.py`).

`setup_cmd` installs the dependencies (never the repository itself: perfagent runs the task's code from its
worktree) with pins under which that era's dask imports and runs on Python 3.11, chosen by the base commit's date.
Each pin set was checked by running the workloads of the tasks that use it (see the report of issue 12).

By default only the curated instances below are written: the ones whose workload imports dask, exercises the code
the expert patch changes, runs at its base commit on Python 3.11, and is made faster by the expert patch. `--all`
writes every dask instance that has a published workload (for re-checking the ones left out).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Callable


from perfagent.localize import testselect
from perfagent.localize.source import SourceIndex, edited_spans

REPO = "dask/dask"
WORKLOADS = "predictions/workload_generation/workload_generation.jsonl"
GOLD = "eval_reports/eval_report_gold.csv"

# Instances written by default, with the expert speedup measured here on their workloads (median of 5+5 fresh
# processes, base and patched alternating; see the report of issue 12): 5553 2.4x, 5884 1.08x (small but in every
# process), 6186 84x, 6491 5.2x, 7023 9.7x, 10356 1.7x, 10922 2.1x, 11625 22.6x.
# Left out (as published, at their base commits, on Python 3.11):
# - dask__dask-5501, -5890, -5891, -6293, -7172: the workload defines its own copy of the function the PR edits and
#   times that copy, so no change to the repository can make it faster;
# - dask__dask-6669, -7104: setup() calls `da.random.random(..., dtype=...)`, which dask then did not accept
#   (TypeError: random_sample() got an unexpected keyword argument 'dtype');
# - dask__dask-7403: the 43 KB workload embeds a copy of the patched dask/highlevelgraph.py and imports `dask.dot`,
#   which raises RuntimeError (not the ImportError it catches) without graphviz;
# - dask__dask-5940 (0.94x): the workload builds `a @ b` and reads `.dask`, which never materializes the graph that
#   the patched make_blockwise_graph builds;
# - dask__dask-5933 (1.03x) and dask__dask-10428 (0.91x, a 31 s workload): the expert patch does not make the
#   workload measurably faster.
CURATED = [
    "dask__dask-5553",
    "dask__dask-5884",
    "dask__dask-6186",
    "dask__dask-6491",
    "dask__dask-7023",
    "dask__dask-10356",
    "dask__dask-10922",
    "dask__dask-11625",
]

_NEW = ("python -m pip install 'numpy<2' 'pandas<2.3' 'pyarrow<16' click cloudpickle fsspec packaging partd pyyaml "
        "toolz importlib_metadata pytest pytest-cov pytest-rerunfailures")
# (base commits before this date, the setup). Python 3.11 needs numpy >= 1.23.2 and pandas >= 1.5.
SETUPS = [
    # dask 2.x / 2020.x-2021.x: they use np.float / np.bool (gone in numpy 1.24) and pandas.util.testing (gone in
    # pandas 2). Their pytest settings turn every warning raised from dask's modules into an error, and on Python
    # 3.11 with pandas 1.5 importing dask raises DeprecationWarnings (distutils) and FutureWarnings (pandas), so most
    # test modules fail to import. The .pth file makes pytest in this environment ignore those two categories, as
    # SWE-fficiency runs dask's tests (`-W ignore::DeprecationWarning`); the workloads are not affected. scipy is
    # pinned too: perfagent's environments see its own packages after their own, and its scipy warns (UserWarning,
    # an error in dask's tests) when it meets this numpy.
    ("2022-01-01", "python -m pip install 'numpy<1.24' 'scipy<1.10' 'pandas<1.6' toolz partd cloudpickle fsspec pyyaml "
                   "'pytest<8' "
                   "&& echo 'import os; os.environ.setdefault(\"PYTEST_ADDOPTS\", \"-W ignore::DeprecationWarning "
                   "-W ignore::FutureWarning\")' > \"$(python -c 'import sysconfig; print(sysconfig.get_paths()"
                   "[\"purelib\"])')/zz_pytest_warnings.pth\""),
    # dask 2022.x-2023.x: pandas 2.0 as then supported; pyarrow for `string[pyarrow]`; pytest-cov for its addopts.
    ("2024-01-01", "python -m pip install 'numpy<2' 'pandas<2.1' 'pyarrow<13' click cloudpickle fsspec packaging "
                   "partd pyyaml toolz importlib_metadata 'pytest<8' pytest-cov pytest-rerunfailures"),
    # dask 2024.x: numpy 1.26 (numpy 2.0 came out in June 2024), pandas 2.2.
    # From dask 2024.3.0 (2024-03-12) to 2024.12.x, dask.dataframe imports only with the dask-expr release made for
    # that dask release (dask-expr pins it). From #11606 (2024-12-20, after 2024.12.1) until dask 2025.1.0 took
    # dask-expr in, no released dask-expr fits (1.1.21 imports dask.dataframe.core._Frame, which #11606 removed), so
    # dask.dataframe does not import there (dask__dask-11625: 7 of the 500 tests of test_array_core.py fail on it,
    # at the base and after any patch). Not pinned: dask.array works without it.
    # dask 2025.1.0 on carries dask-expr itself (not checked: no task here has such a base).
    ("9999-12-31", _NEW),
]


def is_test_file(path: str) -> bool:
    """Test code, as SWE-bench-style benchmarks split an expert change into `patch` and `test_patch`: perfagent's
    rule, and also files in a `testing` folder."""
    return testselect.is_test_file(path) or "testing" in PurePosixPath(path).parent.parts


class Git:
    def __init__(self, path: Path):
        self.path = Path(path)

    def __call__(self, *args: str) -> str:
        return subprocess.run(["git", "--git-dir", str(self._git_dir()), *args], check=True, capture_output=True,
                              text=True).stdout

    def _git_dir(self) -> Path:
        return self.path / ".git" if (self.path / ".git").exists() else self.path

    def show(self, commit: str, path: str) -> str:
        return self("show", f"{commit}:{path}")

    def exists(self, commit: str, path: str) -> bool:
        try:
            self("cat-file", "-e", f"{commit}:{path}")
            return True
        except subprocess.CalledProcessError:
            return False


def read_benchmark(source: Path) -> tuple[dict[str, str], dict[str, dict]]:
    """Workload text per instance and the gold report's row per instance."""
    def text(rel: str) -> str:
        if (source / rel).is_file():  # a checkout
            return (source / rel).read_text(encoding="utf-8")
        return Git(source).show("HEAD", rel)
    workloads = {}
    for line in text(WORKLOADS).splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("workload"):
                workloads[row["instance_id"]] = row["workload"]
    gold = {row["instance_id"]: row for row in csv.DictReader(io.StringIO(text(GOLD)))}
    return workloads, gold


def find_merge(git: Git, number: int) -> str:
    """The commit on HEAD that merged PR `number` (a squash commit `... (#N)` or a `Merge pull request #N`)."""
    log = git("log", "HEAD", "--format=%H %P%x09%s", "-E", f"--grep=(\\(#{number}\\)|Merge pull request #{number}\\b)")
    for line in log.splitlines():
        shas, subject = line.split("\t", 1)
        if re.search(rf"\(#{number}\)\s*$|^Merge pull request #{number}\b", subject):
            return shas.split()[0]
    raise LookupError(f"no commit on HEAD merges PR #{number}")


def split_diff(git: Git, base: str, merge: str) -> tuple[str, str, list[str]]:
    names = [n for n in git("diff", "--name-only", base, merge).splitlines() if n]
    code = [n for n in names if not is_test_file(n)]
    tests = [n for n in names if is_test_file(n)]
    patch = git("diff", base, merge, "--", *code) if code else ""
    test_patch = git("diff", base, merge, "--", *tests) if tests else ""
    return patch, test_patch, code


def edited_functions(git: Git, base: str, patch: str, files: list[str]) -> list[str]:
    """`file::qualname` of each function the patch edits, read from the base versions of the edited files."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in files:
            if git.exists(base, name):
                target = Path(tmp, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(git.show(base, name), encoding="utf-8")
        return [f"{s.file}::{s.qualname}" for s in edited_spans(SourceIndex(Path(tmp)), patch)]


def covering_tests(git: Git, base: str, files: list[str]) -> list[str]:
    """Test modules named after each edited module in the nearest `tests/` folder above it, at `base`."""
    found: dict[str, None] = {}
    for name in files:
        path = PurePosixPath(name)
        if path.suffix != ".py":
            continue
        stem, package = path.stem, path.parent.name
        for folder in path.parents:
            tests = folder / "tests"
            if folder == PurePosixPath(".") or not git.exists(base, tests.as_posix()):
                continue
            names = [f"test_{stem}.py", f"test_{package}_{stem}.py", f"test_{stem}_{package}.py"]
            if stem in ("core", "__init__"):
                names.append(f"test_{package}.py")
            for candidate in names:
                if git.exists(base, (tests / candidate).as_posix()):
                    found[(tests / candidate).as_posix()] = None
            break
    return list(found)


def setup_for(git: Git, base: str) -> str:
    day = git("show", "-s", "--format=%cs", base).strip()
    return next(cmd for until, cmd in SETUPS if day < until)


def task_record(instance_id: str, repo: str, workload: str, gold: dict | None, git: Git,
                setup: Callable[[str], str], parsed: Callable[[str], bool] = lambda path: True) -> dict:
    """One task record: the PR's base commit and diffs from the project's history, the benchmark's workload and
    figures; `setup(base)` is the setup command for the base commit, `parsed(path)` says which edited files the
    edited functions are read from."""
    number = int(instance_id.rsplit("-", 1)[1])
    merge = find_merge(git, number)
    base = git("rev-parse", f"{merge}^1").strip()
    patch, test_patch, files = split_diff(git, base, merge)
    tests = covering_tests(git, base, files)
    read = [f for f in files if parsed(f)]
    record = {
        "instance_id": instance_id,
        "repo": repo,
        "base_commit": base,
        "patch": patch,
        "test_patch": test_patch,
        "workload": workload,
        "edited_files": files,
        "edited_functions": edited_functions(git, base, patch, read) if read else [],
        "covering_test_files": tests,
        "covering_tests": tests,
        "setup_cmd": setup(base),
    }
    if gold:
        for key, column in (("gold_speedup", "gold_speedup_ratio"), ("pre_edit_runtime", "pre_edit_runtime")):
            if gold.get(column):
                record[key] = float(gold[column])
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("swefficiency", type=Path, help="swefficiency/swefficiency: mirror, clone or checkout")
    parser.add_argument("project", type=Path, help="dask/dask: bare mirror or clone")
    parser.add_argument("out", type=Path, help="the task file to write (JSON lines)")
    parser.add_argument("--ids", nargs="+", help="instance ids to write (default: the curated list)")
    parser.add_argument("--all", action="store_true", help="every dask instance with a published workload")
    args = parser.parse_args(argv)

    workloads, gold = read_benchmark(args.swefficiency)
    prefix = REPO.replace("/", "__") + "-"
    if args.all:
        ids = sorted((i for i in workloads if i.startswith(prefix)), key=lambda i: int(i.rsplit("-", 1)[1]))
    else:
        ids = args.ids or CURATED
    git = Git(args.project)
    records, failed = [], 0
    for instance_id in ids:
        if instance_id not in workloads:
            print(f"{instance_id}: no published workload, left out", file=sys.stderr)
            failed += 1
            continue
        try:
            records.append(task_record(instance_id, REPO, workloads[instance_id], gold.get(instance_id), git,
                                       lambda base: setup_for(git, base)))
        except (LookupError, subprocess.CalledProcessError) as exc:
            print(f"{instance_id}: {exc}, left out", file=sys.stderr)
            failed += 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    print(f"wrote {len(records)} tasks to {args.out}" + (f" ({failed} left out)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
