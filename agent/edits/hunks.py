"""A change as hunks: taking some of them back (minimal patches) and putting two changes of the same files together
(two candidates of one round). Texts are whole files; hunks are difflib's non-equal runs of lines."""
from __future__ import annotations

import difflib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hunk:
    path: str
    start: int  # old lines [start, end) become `new`
    end: int
    new: tuple[str, ...]


def hunks(before: dict[str, str], after: dict[str, str]) -> list[Hunk]:
    found = []
    for path, text in after.items():
        old, new = before.get(path, "").splitlines(True), text.splitlines(True)
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
            if tag != "equal":
                found.append(Hunk(path, i1, i2, tuple(new[j1:j2])))
    return found


def with_hunks(before: dict[str, str], kept: list[Hunk], paths: list[str]) -> dict[str, str]:
    """The files `paths` as `before` with only the `kept` hunks applied (a file no hunk touches is as before)."""
    out = {}
    for path in paths:
        lines, at = before.get(path, "").splitlines(True), 0
        text = []
        for hunk in sorted((h for h in kept if h.path == path), key=lambda h: h.start):
            text += lines[at:hunk.start] + list(hunk.new)
            at = hunk.end
        out[path] = "".join(text + lines[at:])
    return out


def combine(before: dict[str, str], first: dict[str, str], second: dict[str, str]) -> dict[str, str] | None:
    """Both changes at once (git's three-way merge per file both change); None when they conflict."""
    merged = {**first, **{p: t for p, t in second.items() if p not in first}}
    for path in first.keys() & second.keys():
        with tempfile.TemporaryDirectory() as tmp:
            files = [Path(tmp) / name for name in ("first", "base", "second")]
            for file, text in zip(files, (first[path], before.get(path, ""), second[path])):
                file.write_text(text)
            result = subprocess.run(["git", "merge-file", "-p", *map(str, files)], capture_output=True, text=True)
        if result.returncode != 0:
            return None
        merged[path] = result.stdout
    return merged
