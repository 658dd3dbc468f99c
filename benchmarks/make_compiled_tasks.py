"""Build a task file of real SWE-fficiency tasks on repositories with compiled extensions (numpy, astropy, and scipy
when its mirror is at hand) from git mirrors, as make_real_tasks.py does for dask.

    python benchmarks/make_compiled_tasks.py SWEFFICIENCY MIRRORS OUT.jsonl [--ids ID ...] [--all]

SWEFFICIENCY is the benchmark's repository (`swefficiency/swefficiency`); MIRRORS is a repository cache folder
holding bare mirrors as `owner+name/repo` (perfagent's `--repo-cache`). Per instance: the PR's merge commit on the
project's HEAD (`Merge pull request #N`), its first parent as `base_commit`, the diff split into `patch` (non-test
files) and `test_patch`, the edited files and functions, the covering test modules, the published workload and
the gold speedup: make_real_tasks.py's functions, so both files mean the same. What differs is the environment:
`setup_cmd` is perfagent.runs.pins.setup_command for the base commit's build files and day (its build
requirements pinned for that era on Python 3.11, then `pip install --no-build-isolation -e .`), with what a
repository needs besides (numpy: SVML off, since its vendored SVML is a git submodule the mirror does not hold;
its test requirements). perfagent builds it once per (repository, commit, interpreter); see agent/runs/envs.py.

By default only the curated instances below are written: the ones whose base commit builds here on Python 3.11
(checked by building each one's environment with perfagent, see LEFT_OUT for the others and the build's error).
`--all` writes every instance of these repositories that has a published workload.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from make_real_tasks import Git, read_benchmark, task_record

from perfagent.runs.pins import BUILD_FILES, setup_command


@dataclass(frozen=True)
class Project:
    setup_before: str = ""  # shell words before the pinned setup (environment variables its build reads)
    setup_after: str = ""  # a command after it
    rebuild_cmd: str | None = None  # when the build needs what perfagent's detected rebuild would not pass


# numpy 1.22-1.25 (setuptools): SVML is a submodule (absent from a mirror) that NPY_DISABLE_SVML=1 leaves out, in
# the environment's build and in every rebuild; numpy has no test extra, so its test requirements come after (a
# hypothesis of 2022: numpy's conftest.py calls HealthCheck.all(), deprecated later, and warnings are errors there).
_NUMPY_SVML = "NPY_DISABLE_SVML=1"
PROJECTS = {
    "numpy/numpy": Project(setup_before=f"export {_NUMPY_SVML} &&",
                           setup_after="python -m pip install --quiet 'hypothesis<6.50' 'pytest<8'",
                           rebuild_cmd=f"{_NUMPY_SVML} python setup.py build_ext --inplace -j 2"),
    "astropy/astropy": Project(),
    "scipy/scipy": Project(),
}

# Instances whose base commit built here (Python 3.11, 2 cores, perfagent's environments; cold build seconds): astropy
# 3.1-3.2 (2018-2019, through the astropy_helpers submodule) 140-200 s, astropy 5.1-5.2 (2022) 82-173 s, astropy
# 6.0-7.0 (2024) 88-457 s (the first on an empty compiler cache), numpy 1.24.dev (2022) 1851 s.
CURATED = [
    "astropy__astropy-7924",
    "astropy__astropy-8349",
    "astropy__astropy-8494",
    "astropy__astropy-8502",
    "astropy__astropy-12699",
    "astropy__astropy-13471",
    "astropy__astropy-13898",
    "astropy__astropy-15900",
    "astropy__astropy-16088",
    "astropy__astropy-16096",
    "astropy__astropy-16222",
    "astropy__astropy-16243",
    "astropy__astropy-16295",
    "astropy__astropy-16670",
    "astropy__astropy-16673",
    "astropy__astropy-16742",
    "astropy__astropy-16813",
    "astropy__astropy-17043",
    "numpy__numpy-21832",
]
# Instances tried and left out, with the build's own first error. numpy from 1.26 (meson-python) keeps its build
# backend, its meson and x86-simd-sort, highway, pocketfft in git submodules: perfagent fills them from the repository
# cache when it holds their mirrors (numpy/meson, ...; these runs had none), and even then cannot build a meson-python
# repository per worktree yet (repos/builds.py).
LEFT_OUT = {
    "numpy__numpy-24610": "ModuleNotFoundError: No module named 'mesonpy' (backend-path vendored-meson/meson-python)",
    "numpy__numpy-27830": 'meson-python: error: Could not find the specified meson: "vendored-meson/meson/meson.py"',
    # numpy 1.22.dev (2021) predates Python 3.11, whose Py_SIZE() is no longer an lvalue
    "numpy__numpy-19599": "numpy/core/src/multiarray/arraytypes.c.src:65:26: error: lvalue required as left operand "
                          "of assignment",
    # astropy 3.1.dev (May 2018) predates Python 3.10, which removed the collections module's ABC aliases
    "astropy__astropy-7422": "AttributeError: module 'collections' has no attribute 'MutableSequence'",
    # astropy 4.2.dev (2020) pins jinja2==2.10.3, which imports markupsafe's soft_unicode (gone in markupsafe 2.1)
    "astropy__astropy-10814": "ImportError: cannot import name 'soft_unicode' from 'markupsafe'",
}


def setup_for(git: Git, base: str, project: Project) -> str:
    files = {name: git.show(base, name) for name in BUILD_FILES if git.exists(base, name)}
    day = git("show", "-s", "--format=%cs", base).strip()
    cython = any(name.endswith(".pyx") for name in git("ls-tree", "-r", "--name-only", base).splitlines())
    parts = [project.setup_before, setup_command(files, day, cython)]
    return " ".join(p for p in parts if p) + (f" && {project.setup_after}" if project.setup_after else "")


def build(instance_id: str, repo: str, workload: str, gold: dict | None, git: Git) -> dict:
    project = PROJECTS[repo]
    record = task_record(instance_id, repo, workload, gold, git, lambda base: setup_for(git, base, project),
                         lambda path: path.endswith(".py"))
    if project.rebuild_cmd:
        record["rebuild_cmd"] = project.rebuild_cmd
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("swefficiency", type=Path, help="swefficiency/swefficiency: mirror, clone or checkout")
    parser.add_argument("mirrors", type=Path, help="a repository cache: owner+name/repo bare mirrors")
    parser.add_argument("out", type=Path, help="the task file to write (JSON lines)")
    parser.add_argument("--ids", nargs="+", help="instance ids to write (default: the curated list)")
    parser.add_argument("--all", action="store_true", help="every instance of these repositories with a workload")
    args = parser.parse_args(argv)

    workloads, gold = read_benchmark(args.swefficiency)
    repos = {repo.replace("/", "__") + "-": repo for repo in PROJECTS
             if (args.mirrors / repo.replace("/", "+") / "repo").is_dir()}
    if args.all:
        ids = sorted((i for i in workloads if i.startswith(tuple(repos))), key=lambda i: int(i.rsplit("-", 1)[1]))
    else:
        ids = args.ids or CURATED
    records, failed = [], 0
    for instance_id in ids:
        repo = next((r for prefix, r in repos.items() if instance_id.startswith(prefix)), None)
        if repo is None or instance_id not in workloads:
            print(f"{instance_id}: {'no mirror of its repository' if repo is None else 'no published workload'}, "
                  f"left out", file=sys.stderr)
            failed += 1
            continue
        try:
            git = Git(args.mirrors / repo.replace("/", "+") / "repo")
            records.append(build(instance_id, repo, workloads[instance_id], gold.get(instance_id), git))
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
