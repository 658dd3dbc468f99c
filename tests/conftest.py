import json
import os
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from perfagent.config import Settings
from perfagent.sandbox import isolation
from perfagent.summary import Summary

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "workloads" / "textstats"
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
# the settings of tests whose children need no confinement beyond rlimits (RLIMITS.limits(timeout_s=60)): faster than
# the strongest level, and process ids are the host's
RLIMITS = Settings(isolation="rlimits")


@pytest.fixture(autouse=True, scope="session")
def session_cache(tmp_path_factory):
    """Module fixtures' runs never read or fill the user's perfagent cache (baseline tests, coverage, timing)."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def own_cache(session_cache, tmp_path, monkeypatch):
    """Each test starts with an empty perfagent cache of its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def pytest_configure(config):
    config.addinivalue_line("markers", "foreign_records: the test writes summary.json files that are not run records "
                                       "of this perfagent's format on purpose (checks_records leaves them be)")


def read_summary(folder: Path) -> dict:
    """A run's summary.json, as on disk, after it validated against the record's model."""
    path = Path(folder) / "summary.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    Summary.read(data, path)
    return data


@pytest.fixture(autouse=True)
def checks_records(request, tmp_path):
    """Every summary.json a test leaves in its tmp_path (a run's --out, a repository's .perfagent/runs) validates
    against the record's model."""
    yield
    if request.node.get_closest_marker("foreign_records") is None:
        for path in tmp_path.rglob("summary.json"):
            read_summary(path.parent)


def levels_in_suite(levels: list[str], keep: int = 1, weakest: bool = False) -> list:
    """Parameters for one whole run per sandbox level: the first `keep` levels (and with `weakest`, the last) run in
    the suite, the others only with `-m end_to_end` (a whole run at every level costs minutes; the phase tests cover
    each level)."""
    suite = set(levels[:keep]) | ({levels[-1]} if weakest and levels else set())
    return [level if level in suite else pytest.param(level, marks=pytest.mark.end_to_end) for level in levels]


def deliver_sigint() -> None:
    """preexec_fn for children whose Ctrl-C handling is tested: a suite started as a background job inherits an
    ignored SIGINT, and a child would inherit that too."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def git(repo: Path, *args: str, env: dict | None = None) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **env} if env else None).stdout


def make_repo(path: Path, files: dict[str, str], fixed: bool = False) -> Path:
    """A real git repository at `path` with `files` committed on branch main. `fixed`: the commit's dates are fixed,
    so equal files give the same commit wherever the repository is made (see warm_repo)."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(textwrap.dedent(text))
    git(path, "init", "-q", "-b", "main")
    git(path, "add", ".")
    date = "2026-01-01T00:00:00+00:00"
    git(path, "commit", "-q", "-m", "initial", env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if fixed
        else None)
    return path


def repo_state(repo: Path) -> dict:
    """Everything perfagent must leave alone in a user's repository."""
    return {
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "head": git(repo, "rev-parse", "HEAD"),
        "branches": git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"),
        "stash": git(repo, "stash", "list"),
        "index": git(repo, "ls-files", "--stage"),
        "files": {p.relative_to(repo).as_posix(): p.read_bytes() for p in sorted(repo.rglob("*"))
                  if p.is_file() and ".git" not in p.parts},
    }


def perfagent_branches(repo: Path) -> list[str]:
    return [b for b in git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads").split() if
            b.startswith("perfagent/")]


# A tiny library with two clear hotspots (quadratic membership test, per-call regex split) and its tests.
SMALL_LIB = {
    "mylib/__init__.py": "",
    "mylib/core.py": '''\
        import re


        def tokens(text):
            return [w for w in re.split(r"\\W+", text.lower()) if w]


        class Counter:
            def count(self, docs):
                out = {}
                for d in docs:
                    for t in tokens(d):
                        out[t] = out.get(t, 0) + 1
                return out


        def unique_sorted(items):
            seen = []
            for x in items:
                if x not in seen:
                    seen.append(x)
            return sorted(seen)
        ''',
    "tests/test_core.py": '''\
        from mylib.core import Counter, tokens, unique_sorted


        def test_tokens():
            assert tokens("Hello, World") == ["hello", "world"]


        def test_unique():
            assert unique_sorted([3, 1, 3, 2]) == [1, 2, 3]


        def test_count():
            assert Counter().count(["a b a"]) == {"a": 2, "b": 1}
        ''',
    "pyproject.toml": '''\
        [tool.perfagent]
        profile-seconds = 0.5
        sample-seconds = 0.05
        max-samples = 20
        candidate-timeout-s = 8
        patience = 20
        max-iterations = 20
        ''',
    "bench.py": '''\
        from mylib.core import Counter, unique_sorted


        def setup():
            global docs
            docs = [f"hello world item{i % 700} foo bar" for i in range(3000)]


        def workload():
            counts = Counter().count(docs)
            return unique_sorted([w for d in docs for w in d.split()]), counts["foo"]
        ''',
}


@pytest.fixture
def small_repo(tmp_path) -> Path:
    return make_repo(tmp_path / "small", SMALL_LIB)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture
def warm_repo(tmp_path, shared_cache, monkeypatch) -> Path:
    """small_repo at one fixed commit, with a perfagent cache shared by the tests on this worker that ask for it: the
    first run measures the baseline (tests, coverage, timing: seconds), later runs take it from the cache, as a
    user's second run on a commit does. For tests whose subject comes after the baseline (small_repo's runs measure
    theirs afresh)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_cache))
    return make_repo(tmp_path / "small", SMALL_LIB, fixed=True)


@pytest.fixture
def example_repo(tmp_path) -> Path:
    """The bundled textstats example as a fresh git repository; its timing values last 0.3 s instead of the default
    1 s, which keeps the suite short (benchmarks/measurement.py measures the default's power)."""
    target = tmp_path / "textstats"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(target / "pyproject.toml", "a") as pyproject:
        pyproject.write("\n[tool.perfagent]\nsample-seconds = 0.3\n")
    return make_repo(target, {})


def scripted_session(path: Path, responses: list[str]) -> str:
    import json

    path.write_text(json.dumps({"label": "test responses", "responses": responses}))
    return f"scripted:{path}"


def search_replace(file: str, search: str, replace: str, prose: str = "A change.") -> str:
    return f"{prose}\n\n{file}\n<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


@pytest.fixture
def without_bubblewrap(tmp_path, monkeypatch, request):
    """As on a machine without bubblewrap: `bwrap` hidden from PATH, so "auto" finds the next level; restored after."""
    monkeypatch.setenv("PATH", path_without("bwrap", tmp_path / "bin"))
    isolation.available.cache_clear()
    yield
    monkeypatch.undo()
    isolation.available.cache_clear()


def path_without(program: str, tmp: Path) -> str:
    """$PATH with `program` hidden: each folder holding it is replaced by a folder of links to its other entries."""
    folders = []
    for i, folder in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if not (Path(folder) / program).exists():
            folders.append(folder)
            continue
        shadow = tmp / f"path-{i}"
        shadow.mkdir(parents=True)
        for entry in Path(folder).iterdir():
            if entry.name != program:
                (shadow / entry.name).symlink_to(entry)
        folders.append(str(shadow))
    return os.pathsep.join(folders)
