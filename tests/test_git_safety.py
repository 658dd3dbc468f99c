"""Issue 23, route 1: a candidate cannot reach the user through perfagent's own git, and the files a run leaves in its
worktree are found by comparison, not by asking git or the run. Real git, real sandboxed runs; the attack code builds
its names at run time, as a real attacker would."""
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from perfagent.repos.repositories import apply_patch, diff
from perfagent.sandbox import gitsafe, isolation
from perfagent.sandbox.tree import snapshot
from perfagent.sandbox.workspace import Workspaces, commit_files, head, open_repo
from tests.conftest import RLIMITS, SMALL_LIB, git, levels_in_suite, make_repo, perfagent_branches, repo_state, \
    scripted_session
from tests.test_optimize import CORE, GOOD, UNIQUE_BODY, _body, invoke

HERE = [level for level in isolation.LEVELS if isolation.available(level)]
GAMES = "games the benchmark"
_HOOKS = ("pre-commit", "prepare-commit-msg", "commit-msg", "post-commit", "post-checkout", "reference-transaction",
          "post-index-change", "pre-auto-gc", "post-rewrite")


def hijack(markers: list[Path]) -> str:
    """Code that, run in a worktree (its working folder), points the worktree's `.git` at a git folder it makes under
    mylib/__pycache__, whose config runs a script from every place git takes a program from (fsmonitor, hooks,
    filter and diff drivers that a .gitattributes it writes selects). The script writes `markers`, outside the run,
    and puts the original pointer back, so nothing looks changed."""
    return textwrap.dedent(f"""
        import os, pathlib
        path = pathlib.Path
        put, mode = getattr(path, "write" + "_text"), getattr(path, "ch" + "mod")
        root = path(os.getcwd())
        pointer, fake = root / ".git", root / "mylib" / "__pycache__" / ".g"
        if pointer.read_text() != f"gitdir: {{fake}}\\n":
            for sub in ("objects", "refs", "hooks"):
                (fake / sub).mkdir(parents=True, exist_ok=True)
            put(fake / "pointer", pointer.read_text())
            put(fake / "HEAD", "ref: refs/heads/main\\n")
            script = fake / "run.sh"
            body = "#!/bin/sh\\n" + "".join(f"echo ran >> {{m}}\\n" for m in {[str(m) for m in markers]!r})
            body += f"cp {{fake / 'pointer'}} {{pointer}}\\n"
            for name in [script] + [fake / "hooks" / h for h in {list(_HOOKS)!r}]:
                put(name, body)
                mode(name, 0o755)
            put(fake / "config", f"[core]\\n\\trepositoryformatversion = 0\\n\\tbare = false\\n"
                f"\\tfsmonitor = {{script}}\\n\\thooksPath = {{fake / 'hooks'}}\\n"
                f"[filter \\"x\\"]\\n\\tclean = {{script}}\\n\\tsmudge = {{script}}\\n"
                f"[diff \\"x\\"]\\n\\tcommand = {{script}}\\n\\ttextconv = {{script}}\\n")
            put(root / ".gitattributes", "* filter=x diff=x\\n")
            put(pointer, f"gitdir: {{fake}}\\n")
    """)


def _markers(tmp_path: Path) -> list[Path]:
    """Where the script writes: outside any run (the test's folder, home, /var/tmp); the caller removes them."""
    name = f"gitroute-{uuid.uuid4().hex}"
    return [tmp_path / name, Path.home() / name, Path("/var/tmp") / name]


def _landed(markers: list[Path]) -> list[Path]:
    landed = [m for m in markers if m.exists()]
    for marker in landed:
        marker.unlink()
    return landed


# -- git pinned to the administrative folder ------------------------------------------------------------------------
def test_perfagents_git_runs_nothing_a_worktree_planted(tmp_path):
    """Every git call perfagent makes on a worktree (status-like, add and commit, head, diff, apply, removal) runs
    nothing from a hijacked worktree, and still works on the real repository; git that finds the repository through
    the pointer, as perfagent's did, runs the script (the probe works)."""
    repo = make_repo(tmp_path / "user", SMALL_LIB)
    markers = _markers(tmp_path)
    ws = Workspaces(open_repo(repo), "t")
    try:
        branch, scratch = ws.branch("perfagent/t", "HEAD"), ws.scratch("HEAD")
        subprocess.run([sys.executable, "-c", hijack(markers)], cwd=scratch, check=True)
        subprocess.run(["git", "status", "--porcelain"], cwd=scratch, capture_output=True)
        assert _landed(markers) == markers, "the planted script runs under git that discovers its repository"
        for tree in (branch, scratch):
            subprocess.run([sys.executable, "-c", hijack(markers)], cwd=tree, check=True)
        for tree in (branch, scratch):
            assert (tree / ".git").read_text() == f"gitdir: {tree}/mylib/__pycache__/.g\n"
        (branch / CORE).write_text((branch / CORE).read_text().replace(UNIQUE_BODY, "    return sorted(set(items))"))
        sha = commit_files(branch, [CORE], "perfagent: change")
        assert head(branch) == sha and head(scratch) == git(repo, "rev-parse", "main").strip()
        assert "mylib/__pycache__/" in gitsafe.git(scratch, "status", "--porcelain", "--untracked-files=all")
        assert "sorted(set(items))" in diff(branch, "HEAD~1", "HEAD")
        assert apply_patch(scratch, diff(branch, "HEAD~1", "HEAD")).ok
        ws.discard(scratch)
        assert not scratch.exists()
    finally:
        ws.close()
        landed = _landed(markers)
    assert landed == []
    assert git(repo, "show", "--name-only", "--format=", "perfagent/t").split() == [CORE], "committed in the real one"
    assert git(repo, "worktree", "list").count("\n") == 1
    assert git(repo, "fsck", "--no-progress") == ""


def test_git_refuses_a_folder_it_did_not_make_through_a_pointer(tmp_path):
    """A worktree perfagent did not make is never reached through its `.git` file: the helper refuses it."""
    repo = make_repo(tmp_path / "user", {"a.py": "x = 1\n"})
    git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "other"))
    with pytest.raises(gitsafe.GitError, match="not a worktree perfagent made"):
        gitsafe.git(tmp_path / "other", "status")
    assert gitsafe.git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")  # a repository's own folder


@pytest.mark.parametrize("level", levels_in_suite(HERE, weakest=True))
def test_a_candidate_cannot_run_code_through_perfagents_git(level, warm_repo, tmp_path):
    """The route of issue 23, end to end: a real speedup whose code, when its tests and workload run, points the
    worktree's `.git` at a folder whose config and hooks run a script. No script runs, at any level; the changed
    pointer is a file the run wrote, so the candidate is rejected; the honest one is committed."""
    markers = _markers(tmp_path)
    body = textwrap.indent(hijack(markers).strip(), "        ")
    hostile = _body(f"    try:\n{body}\n    except Exception:\n        pass\n    return sorted(set(items))",
                    "Deduplicate with a set.")
    before = repo_state(warm_repo)
    out = tmp_path / "run"
    try:
        code, output = invoke("optimize", warm_repo, "-w", "bench.py", "--isolation", level, "-m",
                              scripted_session(tmp_path / "s.json", [hostile, GOOD]), "--out", out)
    finally:
        landed = _landed(markers)
    assert landed == [], output
    assert code == 0, output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["isolation"].startswith(level)
    verdicts = [c["verdict"] for c in summary["candidates"]]
    assert [v["reason"] for v in verdicts] == [GAMES, "accepted"], verdicts
    assert verdicts[0]["detail"].startswith("writes files into the repository while running: .git, .gitattributes, "
                                            "mylib/__pycache__/.g"), verdicts[0]["detail"]
    after = repo_state(warm_repo)
    assert after["files"] == before["files"] and after["index"] == before["index"]
    assert git(warm_repo, "fsck", "--no-progress") == ""
    assert len(perfagent_branches(warm_repo)) == 1


# -- files a run writes, found by comparison ------------------------------------------------------------------------
def test_a_change_behind_a_restored_mtime_is_seen(tmp_path):
    (tmp_path / "data.txt").write_text("abc")
    before = snapshot(tmp_path)
    mtime = os.stat(tmp_path / "data.txt").st_mtime_ns
    (tmp_path / "data.txt").write_text("xyz")  # same size
    os.utime(tmp_path / "data.txt", ns=(mtime, mtime))
    assert os.stat(tmp_path / "data.txt").st_mtime_ns == mtime
    assert before.changes(snapshot(tmp_path)) == {"data.txt"}


def test_new_bytecode_and_dot_files_are_seen(tmp_path):
    (tmp_path / "mylib" / "__pycache__").mkdir(parents=True)
    before = snapshot(tmp_path)
    (tmp_path / "mylib" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cached")
    (tmp_path / ".memo").write_text("{}")
    assert before.changes(snapshot(tmp_path)) == {"mylib/__pycache__/x.cpython-311.pyc", ".memo"}


def test_a_git_pointer_rewritten_and_put_back_is_seen(tmp_path):
    repo = make_repo(tmp_path / "user", {"a.py": "x = 1\n"})
    ws = Workspaces(open_repo(repo), "t")
    try:
        tree = ws.scratch("HEAD")
        before, pointer = snapshot(tree), (tree / ".git").read_text()
        (tree / ".git").write_text(f"gitdir: {tree}/elsewhere\n")
        (tree / ".git").write_text(pointer)
        assert before.changes(snapshot(tree)) == {".git"}
    finally:
        ws.close()


def test_reading_is_not_a_change(tmp_path):
    """Reading every file, listing every folder, and a file briefly added to a folder and removed (as another check
    may do) change nothing: a folder counts by its entries."""
    repo = make_repo(tmp_path / "user", SMALL_LIB)
    (repo / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("1")
    before = snapshot(repo)
    for path in repo.rglob("*"):
        if path.is_file():
            path.read_bytes()
    (repo / "mylib" / "probe").write_text("")
    (repo / "mylib" / "probe").unlink()
    (tmp_path / "outside").write_text("2")  # what a link leads to is not the worktree's
    assert before.changes(snapshot(repo)) == set()
    (repo / "link").unlink()
    (repo / "link").symlink_to(tmp_path / "outside")
    assert before.changes(snapshot(repo)) == {"link"}


def test_restore_puts_the_allowed_paths_back(tmp_path):
    (tmp_path / "log.txt").write_text("kept")
    before = snapshot(tmp_path, keep={"log.txt"})
    (tmp_path / "log.txt").write_text("state for the next process")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cache").write_text("more state")
    changed = before.changes(snapshot(tmp_path))
    assert changed == {"log.txt", "out", "out/cache"}
    before.restore(changed)
    assert (tmp_path / "log.txt").read_text() == "kept" and not (tmp_path / "out").exists()


def test_restore_never_follows_a_link_out_of_the_worktree(tmp_path):
    """perfagent works on a worktree outside the sandbox: a link the code made there is never followed to delete an
    allowed file below it."""
    outside, tree = tmp_path / "outside", tmp_path / "tree"
    for folder in (outside, tree / "out"):
        folder.mkdir(parents=True)
    (outside / "cache.txt").write_text("the user's")
    before = snapshot(tree)
    (tree / "out").rmdir()
    (tree / "out").symlink_to(outside)
    before.restore({"out/cache.txt"})
    assert (outside / "cache.txt").read_text() == "the user's"


def test_only_the_bytecode_perfagent_compiled_is_copied(tmp_path):
    """A candidate's worktree gets the branch's pycs as perfagent compiled them: not one that code in the branch
    wrote since, nor what a link it made leads to (a hidden credential folder, say)."""
    from perfagent.sandbox.bytecode import copy_caches

    outside, branch, fresh = tmp_path / "outside", tmp_path / "branch", tmp_path / "fresh"
    for folder in (outside, branch / "pkg" / "__pycache__", branch / "other" / "__pycache__", fresh / "pkg",
                   fresh / "other"):
        folder.mkdir(parents=True)
    for name in ("a.pyc", "b.pyc"):
        (branch / "pkg" / "__pycache__" / name).write_bytes(b"compiled")
    (outside / "id_rsa").write_text("secret")
    compiled = snapshot(branch)
    (branch / "pkg" / "__pycache__" / "b.pyc").write_bytes(b"the code's")
    (branch / "pkg" / "__pycache__" / "c.pyc").write_bytes(b"the code's")
    (branch / "other" / "__pycache__").rmdir()
    (branch / "other" / "__pycache__").symlink_to(outside)
    copy_caches(compiled, fresh)
    assert sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file()) == ["pkg/__pycache__/a.pyc"]


def test_children_write_no_bytecode_and_candidates_start_from_a_copy_of_the_branchs(tmp_path):
    """perfagent compiles a worktree's files itself (checked-hash pycs); a child importing them writes nothing; a
    candidate's worktree gets a copy of the branch's bytecode (not a link) and only its changed module compiled."""
    from importlib.util import MAGIC_NUMBER, cache_from_source, source_hash

    from perfagent.loop.environment import Environment
    from perfagent.sandbox.run import child_env, run

    repo = make_repo(tmp_path / "user", SMALL_LIB)
    ws = Workspaces(open_repo(repo), "t")
    env = Environment(sys.executable, RLIMITS.limits(timeout_s=120), ws)
    pyc = Path(cache_from_source(CORE))
    init = Path(cache_from_source("mylib/__init__.py"))
    try:
        branch = ws.branch("perfagent/t", "HEAD")
        assert env.rebuild(branch) is None
        checked_hash = b"\3\0\0\0"  # a pyc's flags (PEP 552)
        header = MAGIC_NUMBER + checked_hash + source_hash((branch / CORE).read_bytes())
        assert (branch / pyc).read_bytes()[:16] == header
        before = snapshot(branch)
        child = run([sys.executable, "-c", "import mylib.core, tests.test_core"], cwd=branch,
                    env=child_env({"PYTHONPATH": str(branch)}), limits=env.limits)
        assert child.ok, child.tail()
        assert before.changes(snapshot(branch)) == set()
        changed = (branch / CORE).read_text().replace(UNIQUE_BODY, "    return sorted(set(items))")
        with env.scratch(head(branch), {CORE: changed}) as tree:
            copied = os.stat(tree / init)
            assert (tree / init).read_bytes() == (branch / init).read_bytes()
            assert copied.st_ino != os.stat(branch / init).st_ino and copied.st_nlink == 1
            assert env.rebuild(tree) is None
            assert os.stat(tree / init).st_ino == copied.st_ino, "an up-to-date pyc is not compiled again"
            assert (tree / pyc).read_bytes()[8:16] == source_hash(changed.encode())
    finally:
        ws.close()


def test_a_disk_cache_in_pycache_is_rejected(warm_repo, tmp_path):
    """Results stored by input digest in the package's __pycache__ and read back by later processes: no legitimate
    run writes bytecode any more, so this is a write by the code like any other."""
    cache = ("    import hashlib, json, pathlib\n"
             "    key = hashlib.sha256(repr(items).encode()).hexdigest()[:16]\n"
             "    stored = pathlib.Path(__file__).with_name('__pycache__') / f'summary-{key}.pyc'\n"
             "    if stored.exists():\n"
             "        return json.loads(stored.read_text())\n"
             "    stored.parent.mkdir(exist_ok=True)\n"
             "    getattr(stored, 'write' + '_text')(json.dumps(sorted(set(items))))\n"
             "    return sorted(set(items))")
    out = tmp_path / "run"
    code, output = invoke("optimize", warm_repo, "-w", "bench.py", "-m",
                          scripted_session(tmp_path / "s.json", [_body(cache, "Cache results."), GOOD]), "--out", out)
    assert code == 0, output
    verdicts = [c["verdict"] for c in json.loads((out / "summary.json").read_text())["candidates"]]
    assert [v["reason"] for v in verdicts] == [GAMES, "accepted"], verdicts
    assert verdicts[0]["detail"].startswith("writes files into the repository while running: mylib/__pycache__/"
                                            "summary-"), verdicts[0]["detail"]
