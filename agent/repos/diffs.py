"""Unified diffs, as git and GNU diff write them, read with unidiff: the files a diff touches, and the old lines each
file's hunks change.

Names are read as `git apply` and `patch -p1` read them, which is how perfagent applies every patch: the first
component (git's a/ and b/) is dropped, and /dev/null means no file. Edits in a model's reply have their own, more
forgiving reader in perfagent.edits.search_replace (it takes a name without a/ and b/ as written, and ignores @@
line numbers).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from unidiff import Hunk, PatchSet, UnidiffParseError

Change = tuple[int, int]  # old lines [start, end), 0-based like difflib's opcodes; start == end: an insertion there


class DiffError(ValueError):
    """Text that is not a unified diff, even with its hunks' line counts corrected."""


@dataclass(frozen=True)
class FileDiff:
    old: str | None  # the file's name before; None: the diff creates it
    new: str | None  # its name after; None: the diff deletes it
    changes: tuple[Change, ...]  # each run of removed and added lines, as the old lines it replaces


def read_diff(patch: str) -> list[FileDiff]:
    """Every file in a unified diff. A diff whose hunk headers miscount their lines (a model's, which GNU patch
    applies all the same) is read with the counts corrected; DiffError when even that is not a diff."""
    try:
        files = PatchSet(patch)
    except UnidiffParseError:
        try:
            files = PatchSet(_recounted(patch))
        except UnidiffParseError as exc:
            raise DiffError(f"not a unified diff: {str(exc).strip()}") from None
    return [FileDiff(_name(f.source_file), _name(f.target_file), tuple(c for hunk in f for c in _changes(hunk)))
            for f in files]


def patched_files(patch: str) -> list[str]:
    """Every file a diff touches, once each in order: a renamed file by both names, a created or deleted one by its
    one name."""
    return list(dict.fromkeys(name for f in read_diff(patch) for name in (f.old, f.new) if name))


def _name(header: str) -> str | None:
    name = header.strip().strip('"')
    if name in ("", "/dev/null"):
        return None
    return name.split("/", 1)[1] if "/" in name else name


def _changes(hunk: Hunk) -> list[Change]:
    """Each run of removed and added lines between context lines, as the old lines it replaces."""
    changes, start = [], None
    at = hunk.source_start - 1 if hunk.source_length else hunk.source_start  # the next old line; -10,0 inserts after 10
    for line in hunk:
        if line.is_context:
            if start is not None:
                changes.append((start, at))
                start = None
            at += 1
        elif line.is_removed or line.is_added:
            start = at if start is None else start
            at += line.is_removed
    return changes if start is None else changes + [(start, at)]


_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$")


def _recounted(patch: str) -> str:
    """`patch` with each hunk header counting the lines that follow it, up to the first line that is neither a hunk
    line nor a blank one, or that starts a file header. Blank lines ending a hunk are taken as separators."""
    lines = patch.split("\n")
    for i, line in enumerate(lines):
        header = _HUNK.match(line)
        if not header:
            continue
        end = i + 1
        while end < len(lines) and _hunk_line(lines, end):
            end += 1
        while end > i + 1 and lines[end - 1] in ("", "\r"):
            end -= 1
        body = [line[:1] for line in lines[i + 1:end]]
        old, new = (sum(kind in (side, " ", "", "\r") for kind in body) for side in "-+")
        lines[i] = f"@@ -{header[1]},{old} +{header[2]},{new} @@{header[3]}"
    return "\n".join(lines)


def _hunk_line(lines: list[str], i: int) -> bool:
    line = lines[i]
    starts_file = line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")
    return (line[:1] in (" ", "+", "-", "\\") or line in ("", "\r")) and not starts_file
