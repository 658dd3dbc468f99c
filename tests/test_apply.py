"""Patches are applied as SWE-fficiency's harness applies them: `git apply`, else GNU `patch --fuzz=5`; real git
repositories and the real `patch` program."""
import os
import shutil
import subprocess

import pytest

from perfagent.repos.diffs import DiffError, FileDiff, patched_files, read_diff
from perfagent.repos.repositories import GIT_APPLY, PATCH_FUZZ, apply_patch
from conftest import git, make_repo

LIB = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n\n\nNAME = 'lib'\n"
FAST = "def total(xs):\n    return sum(xs)\n\n\nNAME = 'lib'\n"
CLEAN = ("diff --git a/lib.py b/lib.py\n--- a/lib.py\n+++ b/lib.py\n@@ -1,8 +1,5 @@\n def total(xs):\n"
         "-    s = 0\n-    for x in xs:\n-        s += x\n-    return s\n+    return sum(xs)\n \n \n NAME = 'lib'\n")
needs_patch = pytest.mark.skipif(shutil.which("patch") is None, reason="GNU patch is not installed")


def status(repo) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=all")


@pytest.mark.parametrize("patch", [CLEAN, CLEAN.rstrip("\n")], ids=["clean", "no-final-newline"])
def test_a_clean_patch_applies_with_git_apply(tmp_path, patch):
    """Also one whose only defect is a missing final newline (which `git apply` alone calls a corrupt patch)."""
    repo = make_repo(tmp_path / "r", {"lib.py": LIB})
    applied = apply_patch(repo, patch)
    assert (applied.method, applied.error, applied.ok) == (GIT_APPLY, "", True)
    assert (repo / "lib.py").read_text() == FAST
    assert status(repo) == " M lib.py\n"


@needs_patch
def test_a_model_written_diff_git_rejects_is_applied_by_patch_fuzz(tmp_path):
    """A hunk header counting more lines than the hunk has (8 and 5, for 7 and 4) and no final newline: `git apply`
    calls it corrupt; GNU patch applies it (with fuzz), as SWE-fficiency's fallback does."""
    repo = make_repo(tmp_path / "r", {"lib.py": LIB})
    model = CLEAN.removesuffix(" NAME = 'lib'\n").rstrip("\n")
    (tmp_path / "model.diff").write_text(model)
    refused = subprocess.run(["git", "apply", "--check", str(tmp_path / "model.diff")], cwd=repo, capture_output=True,
                             text=True)
    assert refused.returncode != 0 and "corrupt patch" in refused.stderr
    applied = apply_patch(repo, model)
    assert (applied.method, applied.error) == (PATCH_FUZZ, ""), applied
    assert "corrupt patch" in applied.log and "fuzz" in applied.log  # why git refused, how patch applied it
    assert (repo / "lib.py").read_text() == FAST
    assert status(repo) == " M lib.py\n"  # no lib.py.orig left by GNU patch


@needs_patch
def test_a_patch_neither_applies_is_refused_and_leaves_the_worktree_unchanged(tmp_path):
    """GNU patch applies the hunks it can (a new file in a new folder, a change to lib.py with a stale context line,
    which it backs up as lib.py.orig) and rejects the last (other.py.rej): all of it is undone, and those files
    removed."""
    repo = make_repo(tmp_path / "r", {"lib.py": LIB, "other.py": "a = 1\nb = 2\n"})
    patch = ("diff --git a/pkg/sub/new.py b/pkg/sub/new.py\nnew file mode 100644\n--- /dev/null\n"
             "+++ b/pkg/sub/new.py\n@@ -0,0 +1 @@\n+x = 1\n"
             + CLEAN.replace(" NAME = 'lib'", " NAME = 'LIB'")
             + "diff --git a/other.py b/other.py\n--- a/other.py\n+++ b/other.py\n"
             "@@ -1,2 +1,2 @@\n-a = 7\n+a = 8\n b = 2\n")  # other.py has a = 1
    applied = apply_patch(repo, patch)
    assert applied.method is None and not applied.ok
    assert applied.error.startswith("the patch does not apply: neither `git apply --allow-empty -v` nor "
                                    "`patch --batch --forward --fuzz=5 -p1` applies it"), applied.error
    assert "\ngit apply: error: " in applied.error and "error: patch failed: other.py:1" in applied.error
    assert "\npatch: " in applied.error and "FAILED" in applied.error
    assert status(repo) == ""  # lib.py restored, pkg/ gone, no other.py.rej nor lib.py.orig
    assert (repo / "lib.py").read_text() == LIB and not (repo / "pkg").exists()


@needs_patch
def test_an_applied_patch_is_not_undone_by_applying_it_again(tmp_path):
    """`patch --batch` alone takes a patch that looks reversed as meant in reverse; with --forward it is refused."""
    repo = make_repo(tmp_path / "r", {"lib.py": LIB})
    assert apply_patch(repo, CLEAN).method == GIT_APPLY
    again = apply_patch(repo, CLEAN)
    assert again.method is None and "previously applied" in again.error
    assert (repo / "lib.py").read_text() == FAST and status(repo) == " M lib.py\n"


def test_without_the_patch_program_the_error_says_so(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "r", {"lib.py": LIB})
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("git"), bin_dir / "git")
    monkeypatch.setenv("PATH", str(bin_dir))  # a machine with git and no `patch`
    applied = apply_patch(repo, CLEAN.replace("@@ -1,8 +1,5 @@", "@@ -1,9 +1,6 @@"))
    assert applied.method is None
    assert "the `patch` program (GNU patch) is not installed" in applied.error and "corrupt patch" in applied.error
    assert status(repo) == ""


def test_an_empty_patch_does_not_apply(tmp_path):
    repo = make_repo(tmp_path / "r", {"lib.py": LIB})
    assert apply_patch(repo, " \n").error == "the patch is empty"


def test_a_git_diff_is_read_as_git_apply_reads_it(tmp_path):
    """A deleted, a changed, a renamed, an added, and a renamed and changed file: names without git's a/ and b/,
    None for /dev/null; each run of changed lines as the old lines [start, end) it replaces."""
    moved = "".join(f"v = {i}\n" for i in range(1, 11))
    repo = make_repo(tmp_path / "r", {"lib.py": LIB, "old.py": "a = 1\n", "moved.py": moved, "gone.py": "x = 1\n"})
    (repo / "lib.py").write_text(FAST)
    (repo / "pkg").mkdir()
    git(repo, "mv", "old.py", "new.py")
    git(repo, "mv", "moved.py", "pkg/moved.py")
    (repo / "pkg" / "moved.py").write_text(moved.replace("v = 5\n", "v = 50\n"))
    git(repo, "rm", "-q", "gone.py")
    (repo / "pkg" / "added.py").write_text("z = 3\n")
    git(repo, "add", "-A")
    diff = git(repo, "diff", "--cached", "-M")
    assert read_diff(diff) == [FileDiff("gone.py", None, ((0, 1),)), FileDiff("lib.py", "lib.py", ((1, 5),)),
                               FileDiff("old.py", "new.py", ()), FileDiff(None, "pkg/added.py", ((0, 0),)),
                               FileDiff("moved.py", "pkg/moved.py", ((4, 5),))]
    assert patched_files(diff) == ["gone.py", "lib.py", "old.py", "new.py", "pkg/added.py", "moved.py",
                                   "pkg/moved.py"]


def test_names_lose_their_first_component_as_with_patch_p1():
    """Whatever the prefixes (here GNU diff's folders, with timestamps); an insertion (-2,0: after line 2) and a
    replacement in one hunk."""
    traditional = ("--- old/pkg/mod.py\t2024-01-01 10:00:00\n+++ new/pkg/mod.py\t2024-01-01 10:00:01\n"
                   "@@ -2,0 +3,2 @@\n+a\n+b\n@@ -4,4 +6,3 @@\n c\n-d\n-e\n+f\n g\n")
    assert read_diff(traditional) == [FileDiff("pkg/mod.py", "pkg/mod.py", ((2, 2), (4, 6)))]
    assert patched_files("--- lib.py\n+++ lib.py\n@@ -1 +1 @@\n-a\n+b\n") == ["lib.py"]


def test_a_model_written_diff_is_read_with_its_hunks_recounted():
    """Hunk headers that miscount their lines (8 and 5 for 7 and 4), which GNU patch applies anyway; text that is not
    a diff at all is a DiffError."""
    model = CLEAN.removesuffix(" NAME = 'lib'\n").rstrip("\n") + "\n\nThis makes total() faster.\n"
    assert read_diff(model) == read_diff(CLEAN) == [FileDiff("lib.py", "lib.py", ((1, 5),))]
    assert read_diff("No diff here.\n") == []
    for broken in ("+++ b/lib.py\n@@ -1 +1 @@\n-a\n+b\n", CLEAN[CLEAN.index("@@"):]):  # no file header
        with pytest.raises(DiffError, match="not a unified diff"):
            read_diff(broken)


@needs_patch
def test_a_patch_whose_files_cannot_be_read_is_not_given_to_gnu_patch(tmp_path):
    """Had GNU patch applied part of it, that part could not be undone without the names of the files it touches."""
    repo = make_repo(tmp_path / "r", {"lib.py": LIB})
    applied = apply_patch(repo, CLEAN[CLEAN.index("@@"):])  # a hunk without its file header
    assert applied.method is None and "`patch --batch --forward --fuzz=5 -p1`, is not tried: not a unified diff: " \
        "Unexpected hunk found: @@ -1,8 +1,5 @@\ngit apply: " in applied.error, applied.error
    assert status(repo) == ""
