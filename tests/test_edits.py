import os
import time
from pathlib import Path

import pytest

from perfagent.edits.search_replace import (
    ApplyResult,
    Edit,
    EditFormatError,
    apply_edits,
    describe_failures,
    parse_edits,
)

FENCE = "```"


def block(search: str, replace: str, path: str | None = None) -> str:
    head = f"{path}\n" if path is not None else ""
    return f"{head}<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def make(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


# ---------------------------------------------------------------- parsing


def test_parse_plain_block():
    assert parse_edits(block("x = 1", "x = 2", "pkg/mod.py")) == [Edit("pkg/mod.py", "x = 1", "x = 2")]


def test_parse_keeps_multiline_text_and_indentation():
    reply = block("def f():\n    return 1", "def f():\n\n    return 2", "m.py")
    assert parse_edits(reply) == [Edit("m.py", "def f():\n    return 1", "def f():\n\n    return 2")]


def test_parse_fenced_block_with_path_before_fence_and_prose():
    reply = (
        "I'll speed up the loop.\n\n"
        f"src/a.py\n{FENCE}python\n{block('old', 'new')}{FENCE}\n\n"
        "That avoids the quadratic scan.\n"
    )
    assert parse_edits(reply) == [Edit("src/a.py", "old", "new")]


def test_parse_fenced_block_with_path_inside_fence():
    reply = f"{FENCE}python\nsrc/a.py\n{block('old', 'new')}{FENCE}\n"
    assert parse_edits(reply) == [Edit("src/a.py", "old", "new")]


def test_parse_multiple_files():
    reply = block("a", "A", "one.py") + "\nand then\n\n" + block("b", "B", "two/three.py")
    assert parse_edits(reply) == [Edit("one.py", "a", "A"), Edit("two/three.py", "b", "B")]


def test_parse_block_without_path_reuses_previous_path():
    reply = (
        f"a.py\n{FENCE}python\n{block('x', 'y')}{FENCE}\n\n"
        f"{FENCE}python\n{block('z', 'w')}{FENCE}\n"
        "Then the loop:\n" + block("p", "q")
    )
    assert parse_edits(reply) == [Edit("a.py", "x", "y"), Edit("a.py", "z", "w"), Edit("a.py", "p", "q")]


@pytest.mark.parametrize(
    "path_line",
    ["**pkg/mod.py**", "`pkg/mod.py`", "File: pkg/mod.py", "**File:** `pkg/mod.py`", "### pkg/mod.py",
     "pkg/mod.py:", "./pkg/mod.py", "pkg\\mod.py"],
)
def test_parse_decorated_paths(path_line):
    assert parse_edits(block("a", "b", path_line))[0].path == "pkg/mod.py"


@pytest.mark.parametrize("width", [5, 9])
def test_parse_tolerates_marker_width_and_trailing_spaces(width):
    reply = f"m.py\n{'<' * width} SEARCH  \nold\n{'=' * width} \nnew\n{'>' * width} REPLACE\t\n"
    assert parse_edits(reply) == [Edit("m.py", "old", "new")]


def test_parse_crlf_reply():
    assert parse_edits(block("a", "b", "m.py").replace("\n", "\r\n")) == [Edit("m.py", "a", "b")]


def test_parse_empty_search_means_new_file():
    assert parse_edits("new.py\n<<<<<<< SEARCH\n=======\nprint(1)\n>>>>>>> REPLACE\n") == [
        Edit("new.py", "", "print(1)")
    ]


@pytest.mark.parametrize(
    "reply, message",
    [
        ("m.py\n<<<<<<< SEARCH\nold\nnew\n>>>>>>> REPLACE\n", "no `=======`"),
        ("m.py\n<<<<<<< SEARCH\nold\n=======\nnew\n", "does not end with `>>>>>>> REPLACE`"),
        ("m.py\n<<<<<<< SEARCH\nold\n=======\nnew\n" + block("a", "b", "n.py"), "does not end with"),
        ("Here you go:\n<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n", "no file path"),
        ("m.py\n<<<<<<< SEARCH: old\n=======\nnew\n>>>>>>> REPLACE\n", "without a `<<<<<<< SEARCH`"),
    ],
)
def test_parse_malformed_blocks_raise(reply, message):
    with pytest.raises(EditFormatError, match=message) as info:
        parse_edits(reply)
    assert ">>>>>>> REPLACE" in str(info.value)  # the message shows the expected format


def test_parse_reply_without_edits():
    assert parse_edits("The code is already optimal.\n\n```python\nx = 1\n```\n---\nSummary\n=======\n") == []


def test_parse_unified_diff_in_fence_with_several_hunks():
    reply = (
        "Apply this:\n```diff\n"
        "diff --git a/pkg/m.py b/pkg/m.py\n"
        "--- a/pkg/m.py\n+++ b/pkg/m.py\n"
        "@@ -1,3 +1,3 @@\n def f(xs):\n-    return sorted(xs)[0]\n+    return min(xs)\n"
        "\n"  # blank context line whose leading space was dropped
        "@@ -40,2 +40,3 @@ def g():\n import os\n+import sys\n x = 1\n"
        "```\nDone.\n"
    )
    assert parse_edits(reply) == [
        Edit("pkg/m.py", "def f(xs):\n    return sorted(xs)[0]", "def f(xs):\n    return min(xs)"),
        Edit("pkg/m.py", "import os\nx = 1", "import os\nimport sys\nx = 1"),
    ]


def test_parse_bare_unified_diff_new_file_and_plain_paths():
    reply = (
        "--- /dev/null\n+++ b/pkg/new.py\n@@ -0,0 +1,2 @@\n+def h():\n+    return 3\n"
        "--- m.py\n+++ m.py\n@@ @@\n a\n-b\n+c\n\\ No newline at end of file\n"
    )
    assert parse_edits(reply) == [
        Edit("pkg/new.py", "", "def h():\n    return 3"),
        Edit("m.py", "a\nb", "a\nc"),
    ]


def test_parse_diff_hunk_without_context_raises():
    with pytest.raises(EditFormatError, match="unchanged lines"):
        parse_edits("--- a/m.py\n+++ b/m.py\n@@ -1 +1,2 @@\n+import sys\n")


def test_parse_diff_with_empty_hunk_has_no_edits():
    assert parse_edits("--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n\nThat is all.\n") == []


def test_parse_diff_deleting_file_raises():
    with pytest.raises(EditFormatError, match="deleting"):
        parse_edits("--- a/m.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x = 1\n")


# ---------------------------------------------------------------- applying


def test_apply_exact(tmp_path):
    make(tmp_path, {"pkg/m.py": "def f(xs):\n    return sorted(xs)[0]\n\nx = 1\n"})
    result = apply_edits(tmp_path, [Edit("pkg/m.py", "    return sorted(xs)[0]", "    return min(xs)")])
    assert result.ok and result.failures == []
    expected = "def f(xs):\n    return min(xs)\n\nx = 1\n"
    assert result.changed == {"pkg/m.py": expected}
    assert (tmp_path / "pkg/m.py").read_text() == expected


def test_apply_without_write_leaves_files_alone(tmp_path):
    make(tmp_path, {"m.py": "a\nb\n"})
    result = apply_edits(tmp_path, [Edit("m.py", "b", "c")], write=False)
    assert result.changed == {"m.py": "a\nc\n"}
    assert (tmp_path / "m.py").read_text() == "a\nb\n"


def test_apply_matches_whole_lines_only(tmp_path):
    make(tmp_path, {"m.py": "xx = 1\n"})
    result = apply_edits(tmp_path, [Edit("m.py", "x = 1", "x = 2")])
    assert result.failures[0].reason == "SEARCH text not found"


def test_apply_several_edits_to_one_file_in_order(tmp_path):
    make(tmp_path, {"m.py": "a = 1\nb = 2\nc = 3\n"})
    edits = [
        Edit("m.py", "a = 1", "a = 10"),
        Edit("m.py", "a = 10\nb = 2", "a = 10\nb = 20"),  # sees the first edit's result
        Edit("m.py", "c = 3", ""),
    ]
    result = apply_edits(tmp_path, edits)
    assert result.ok
    assert (tmp_path / "m.py").read_text() == "a = 10\nb = 20\n"
    assert result.applied == edits


def test_apply_keeps_missing_trailing_newline_and_crlf(tmp_path):
    (tmp_path / "plain.py").write_bytes(b"a\nb")
    (tmp_path / "dos.py").write_bytes(b"a\r\nb\r\n")
    result = apply_edits(tmp_path, [Edit("plain.py", "b", "c\nd"), Edit("dos.py", "a\nb", "c")])
    assert result.ok
    assert (tmp_path / "plain.py").read_bytes() == b"a\nc\nd"
    assert (tmp_path / "dos.py").read_bytes() == b"c\r\n"


def test_apply_reindents_replace_when_search_is_less_indented(tmp_path):
    make(tmp_path, {"m.py": "class C:\n    def f(self):\n        for x in y:\n            g(x)\n"})
    edit = Edit("m.py", "for x in y:\n    g(x)", "for x in y:\n\n    h(x)\nreturn 1")
    assert apply_edits(tmp_path, [edit]).ok
    assert (tmp_path / "m.py").read_text() == (
        "class C:\n    def f(self):\n        for x in y:\n\n            h(x)\n        return 1\n"
    )


def test_apply_reindents_replace_when_search_is_more_indented(tmp_path):
    make(tmp_path, {"m.py": "def f():\n    return 1\n"})
    edit = Edit("m.py", "        def f():\n            return 1", "        def f():\n            return 2")
    assert apply_edits(tmp_path, [edit]).ok
    assert (tmp_path / "m.py").read_text() == "def f():\n    return 2\n"


def test_apply_rejects_non_uniform_indentation_drift(tmp_path):
    make(tmp_path, {"m.py": "def f():\n    return 1\n"})
    result = apply_edits(tmp_path, [Edit("m.py", "def f():\nreturn 1", "pass")])
    assert result.failures[0].reason == "SEARCH text not found"


def test_apply_tolerates_spurious_blank_lines_and_trailing_spaces(tmp_path):
    make(tmp_path, {"m.py": "a = 1   \nb = 2\nc = 3\n"})
    edit = Edit("m.py", "\na = 1\nb = 2\n", "\na = 1\nb = 20\n")
    result = apply_edits(tmp_path, [edit])
    assert result.ok, result.failures
    assert (tmp_path / "m.py").read_text() == "a = 1\nb = 20\nc = 3\n"


def test_apply_ambiguous_match_fails(tmp_path):
    make(tmp_path, {"m.py": "def f():\n    return 0\n\ndef g():\n    return 0\n"})
    result = apply_edits(tmp_path, [Edit("m.py", "    return 0", "    return 1")])
    assert not result.ok
    assert result.failures[0].reason.startswith("SEARCH text matches 2 places")
    assert (tmp_path / "m.py").read_text() == "def f():\n    return 0\n\ndef g():\n    return 0\n"


def test_apply_not_found_reports_closest_lines(tmp_path):
    lines = [f"v{i} = compute({i})" for i in range(50)]
    lines[30:32] = ["def total(items):", "    return sum(item.price for item in items)"]
    make(tmp_path, {"m.py": "\n".join(lines) + "\n"})
    edit = Edit("m.py", "def total(items):\n    return sum(i.price for i in items)", "pass")
    [failure] = apply_edits(tmp_path, [edit]).failures
    assert failure.reason == "SEARCH text not found"
    assert failure.closest == "def total(items):\n    return sum(item.price for item in items)"


def test_apply_missing_file_fails(tmp_path):
    [failure] = apply_edits(tmp_path, [Edit("nope.py", "a", "b")]).failures
    assert failure.reason == "file does not exist" and failure.closest is None


@pytest.mark.parametrize("path", ["../outside.py", "pkg/../../outside.py", "/etc/hosts", "C:\\x.py"])
def test_apply_rejects_paths_outside_root(tmp_path, path):
    root = make(tmp_path / "repo", {"pkg/m.py": "x\n"})
    [failure] = apply_edits(root, [Edit(path, "", "evil")]).failures
    assert "absolute" in failure.reason or "escapes" in failure.reason
    assert not (tmp_path / "outside.py").exists()


def test_apply_allows_dotdot_that_stays_inside(tmp_path):
    make(tmp_path, {"pkg/m.py": "x\n"})
    assert apply_edits(tmp_path, [Edit("pkg/../pkg/m.py", "x", "y")]).changed == {"pkg/m.py": "y\n"}


def test_apply_rejects_symlinks_leading_outside(tmp_path):
    outside = make(tmp_path / "outside", {"secret.py": "x = 1\n"})
    root = make(tmp_path / "repo", {"m.py": "x\n"})
    os.symlink(outside, root / "linkdir")
    os.symlink(outside / "secret.py", root / "link.py")
    edits = [
        Edit("linkdir/secret.py", "x = 1", "x = 2"),
        Edit("link.py", "x = 1", "x = 2"),
        Edit("linkdir/new.py", "", "y"),
    ]
    result = apply_edits(root, edits)
    assert [f.reason for f in result.failures] == ["path escapes the repository"] * 3
    assert (outside / "secret.py").read_text() == "x = 1\n"
    assert not (outside / "new.py").exists()


def test_apply_rejects_git_dir_and_directories(tmp_path):
    make(tmp_path, {".git/config": "", "pkg/m.py": ""})
    result = apply_edits(tmp_path, [Edit(".git/hooks/pre-commit", "", "rm -rf /"), Edit("pkg", "a", "b")])
    assert [f.reason for f in result.failures] == ["path is inside .git", "path is a directory"]


def test_nothing_written_when_one_edit_fails(tmp_path):
    make(tmp_path, {"a.py": "a = 1\n", "b.py": "b = 1\n"})
    edits = [Edit("a.py", "a = 1", "a = 2"), Edit("new.py", "", "n = 1"), Edit("b.py", "nope", "b = 2")]
    result = apply_edits(tmp_path, edits)
    assert not result.ok
    assert result.applied == edits[:2] and [f.edit for f in result.failures] == edits[2:]
    assert (tmp_path / "a.py").read_text() == "a = 1\n"
    assert not (tmp_path / "new.py").exists()


def test_new_file_creation_in_new_directory(tmp_path):
    edits = [Edit("pkg/sub/fast.py", "", "def f():\n    return 1"), Edit("pkg/sub/fast.py", "return 1", "return 2")]
    result = apply_edits(tmp_path, edits)
    assert result.ok
    assert (tmp_path / "pkg/sub/fast.py").read_text() == "def f():\n    return 2\n"


def test_empty_search_on_existing_file_fails(tmp_path):
    make(tmp_path, {"m.py": "x = 1\n"})
    [failure] = apply_edits(tmp_path, [Edit("m.py", "", "y = 2")]).failures
    assert "already exists" in failure.reason
    assert (tmp_path / "m.py").read_text() == "x = 1\n"


def test_parse_then_apply_unified_diff(tmp_path):
    make(tmp_path, {"m.py": "import os\n\n\ndef f(xs):\n    return sorted(xs)[0]\n"})
    reply = (
        "```diff\n--- a/m.py\n+++ b/m.py\n@@ -10,2 +10,2 @@\n"  # wrong line numbers are ignored
        " def f(xs):\n-    return sorted(xs)[0]\n+    return min(xs)\n```\n"
        "```diff\n--- /dev/null\n+++ b/util.py\n@@ -0,0 +1 @@\n+K = 3\n```\n"
    )
    assert apply_edits(tmp_path, parse_edits(reply)).ok
    assert (tmp_path / "m.py").read_text() == "import os\n\n\ndef f(xs):\n    return min(xs)\n"
    assert (tmp_path / "util.py").read_text() == "K = 3\n"


def test_closest_search_is_fast_on_large_files(tmp_path):
    make(tmp_path, {"big.py": "".join(f"value_{i} = function_{i}(argument_{i}) + {i}\n" for i in range(5000))})
    edit = Edit("big.py", "\n".join(f"totally_different_{i} = other()" for i in range(20)), "pass")
    start = time.perf_counter()
    [failure] = apply_edits(tmp_path, [edit]).failures
    assert failure.closest is not None and time.perf_counter() - start < 5


# ---------------------------------------------------------------- describing


def test_describe_failures_lists_applied_and_failed_edits(tmp_path):
    make(tmp_path, {"m.py": "def total(items):\n    return sum(item.price for item in items)\n"})
    result = apply_edits(tmp_path, [
        Edit("m.py", "def total(items):", "def total(items: list):"),
        Edit("m.py", "    return sum(i.price for i in items)", "    return 0"),
        Edit("gone.py", "x", "y"),
    ])
    text = describe_failures(result)
    assert "applied cleanly:\n- m.py (SEARCH starting 'def total(items):')" in text
    assert "FAILED: m.py (SEARCH starting 'return sum(i.price for i in items)'): SEARCH text not found." in text
    assert "    return sum(item.price for item in items)" in text
    assert "FAILED: gone.py (SEARCH starting 'x'): file does not exist." in text
    assert "No file was changed because 2 edit(s) failed" in text


def test_describe_failures_when_all_applied():
    result = ApplyResult(changed={"a.py": "x\n"}, failures=[], applied=[Edit("a.py", "", "x")])
    assert describe_failures(result) == "These edits applied cleanly:\n- a.py (new file)"


def test_hunks_taken_back_and_changes_put_together():
    from perfagent.edits.hunks import combine, hunks, with_hunks

    before = {"m.py": "def a():\n    return 1\n\n\ndef b():\n    return 2\n"}
    first = {"m.py": before["m.py"].replace("return 1", "return 10")}
    second = {"m.py": before["m.py"].replace("return 2", "return 20"), "n.py": "x = 1\n"}
    both = combine(before, first, second)
    assert both == {"m.py": "def a():\n    return 10\n\n\ndef b():\n    return 20\n", "n.py": "x = 1\n"}
    assert combine(before, first, {"m.py": before["m.py"].replace("return 1", "return 11")}) is None  # a conflict
    found = hunks(before, both)
    assert [(h.path, h.start) for h in found] == [("m.py", 1), ("m.py", 5), ("n.py", 0)]
    assert with_hunks(before, found[:1], ["m.py", "n.py"]) == {"m.py": first["m.py"], "n.py": ""}
