"""Parse file edits out of an LLM reply and apply them to a directory tree.

Two formats are understood: Aider-style SEARCH/REPLACE blocks and unified diffs.
Edits are applied all-or-nothing: files are written only when every edit applies.
"""

from __future__ import annotations

import difflib
import heapq
import re
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Callable

FORMAT_HINT = (
    "Write each edit as the file path alone on a line, followed by:\n"
    "<<<<<<< SEARCH\n"
    "<existing lines, copied exactly>\n"
    "=======\n"
    "<replacement lines>\n"
    ">>>>>>> REPLACE"
)

_HEAD = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_UPDATED = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
# "### File: x.py" -> "x.py" (bold/backticks/quotes are removed beforehand).
_PATH_LABEL = re.compile(r"^(?:#+\s*)?(?:(?:file(?:name)?|path)\s*:\s*)?", re.IGNORECASE)
# A bare path: no spaces, ends in a word character, and has a "." or "/" so prose like "Done" is not taken.
_PATH = re.compile(r"(?=.*[./\\])[\w\-./\\]*\w")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Edit:
    path: str
    search: str  # '' means: create a new file with `replace` as content
    replace: str


class EditFormatError(ValueError):
    """The reply contains malformed edit blocks; the message is meant for the model."""


@dataclass(frozen=True)
class ApplyFailure:
    edit: Edit
    reason: str
    closest: str | None = None  # for "not found": the most similar real lines of the file


@dataclass
class ApplyResult:
    changed: dict[str, str]  # relative posix path -> new full text (computed even when some edits failed)
    failures: list[ApplyFailure]
    applied: list[Edit] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


# ---------------------------------------------------------------- parsing


def parse_edits(text: str) -> list[Edit]:
    """Every edit in `text`, in order; [] if it has none. Raises EditFormatError on malformed blocks."""
    lines = text.replace("\r\n", "\n").split("\n")
    edits: list[Edit] = []
    last_path: str | None = None
    i = 0
    while i < len(lines):
        if _HEAD.match(lines[i]):
            path = _path_before(lines, i) or last_path
            if path is None:
                raise EditFormatError(f"The SEARCH block at line {i + 1} has no file path.\n{FORMAT_HINT}")
            search, replace, i = _read_block(lines, i, path)
            edits.append(Edit(path, search, replace))
            last_path = path
        elif _starts_diff(lines, i):
            diff_edits, i = _read_diff(lines, i)
            edits += diff_edits
        elif _UPDATED.match(lines[i]):
            raise EditFormatError(
                f"Line {i + 1} has `>>>>>>> REPLACE` without a `<<<<<<< SEARCH` before it.\n{FORMAT_HINT}"
            )
        else:
            i += 1
    return edits


def _normalise_path(path: str) -> str:
    return PurePosixPath(path.replace("\\", "/")).as_posix()


def _path_from_line(line: str) -> str | None:
    name = re.sub(r"[*`'\"]", "", line).strip()
    name = _PATH_LABEL.sub("", name, count=1).rstrip(":").strip()
    return _normalise_path(name) if _PATH.fullmatch(name) else None


def _path_before(lines: list[str], head: int) -> str | None:
    """The path on the nearest line above `head` that is neither blank nor a markdown fence."""
    for line in reversed(lines[:head]):
        if line.strip() and not _FENCE.match(line):
            return _path_from_line(line)
    return None


def _find_marker(lines: list[str], start: int, marker: re.Pattern, stops: tuple[re.Pattern, ...]) -> int | None:
    for j in range(start, len(lines)):
        if marker.match(lines[j]):
            return j
        if any(stop.match(lines[j]) for stop in stops):
            return None
    return None


def _read_block(lines: list[str], head: int, path: str) -> tuple[str, str, int]:
    """(search, replace, index after the block) for the block starting at `head`."""
    where = f"The SEARCH block for {path} at line {head + 1}"
    divider = _find_marker(lines, head + 1, _DIVIDER, (_HEAD, _UPDATED))
    if divider is None:
        raise EditFormatError(f"{where} has no `=======` line.\n{FORMAT_HINT}")
    end = _find_marker(lines, divider + 1, _UPDATED, (_HEAD, _DIVIDER))
    if end is None:
        raise EditFormatError(f"{where} does not end with `>>>>>>> REPLACE`.\n{FORMAT_HINT}")
    return "\n".join(lines[head + 1 : divider]), "\n".join(lines[divider + 1 : end]), end + 1


def _starts_diff(lines: list[str], i: int) -> bool:
    return lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")


def _diff_paths(old_header: str, new_header: str) -> tuple[str | None, str | None]:
    """Paths from `--- ` / `+++ ` headers; None stands for /dev/null. Strips git's a/ b/ prefixes."""
    old, new = (h.split("\t")[0].strip() for h in (old_header, new_header))
    old = None if old == "/dev/null" else old
    new = None if new == "/dev/null" else new
    if (old or "a/").startswith("a/") and (new or "b/").startswith("b/"):
        old, new = (p and p[2:] for p in (old, new))
    if not (old or new):
        raise EditFormatError("A diff header names no file.")
    return old and _normalise_path(old), new and _normalise_path(new)


def _read_hunks(lines: list[str], i: int) -> tuple[list[list[str]], int]:
    """Hunk bodies from line i up to the next file header or non-diff line. @@ numbers are ignored."""
    hunks: list[list[str]] = []
    while i < len(lines) and not _starts_diff(lines, i):
        line = lines[i]
        if line.startswith("@@"):
            hunks.append([])
        elif line == "" or line[0] in " +-":
            if not hunks:  # tolerate a missing @@ line
                hunks.append([])
            hunks[-1].append(line)
        elif not line.startswith("\\"):  # "\ No newline at end of file" is skipped
            break
        i += 1
    for hunk in hunks:  # bare empty lines at a hunk's end usually separate it from prose
        while hunk and hunk[-1] == "":
            hunk.pop()
    return hunks, i


def _read_diff(lines: list[str], i: int) -> tuple[list[Edit], int]:
    old, new = _diff_paths(lines[i][4:], lines[i + 1][4:])
    hunks, end = _read_hunks(lines, i + 2)
    if new is None:
        raise EditFormatError(f"The diff deletes {old}; deleting files is not supported.")
    if old is None:
        added = [line[1:] for hunk in hunks for line in hunk if line.startswith("+")]
        return [Edit(new, "", "\n".join(added))], end
    edits = []
    for number, hunk in enumerate(hunks, 1):
        search = [line[1:] for line in hunk if line[:1] in ("", " ", "-")]
        replace = [line[1:] for line in hunk if line[:1] in ("", " ", "+")]
        if not search and replace:
            raise EditFormatError(
                f"Hunk {number} of the diff for {new} only adds lines; include a few unchanged lines around it."
            )
        if search != replace:
            edits.append(Edit(new, "\n".join(search), "\n".join(replace)))
    return edits, end


# ---------------------------------------------------------------- applying


class _Failed(Exception):
    def __init__(self, reason: str, closest: str | None = None):
        super().__init__(reason)
        self.reason, self.closest = reason, closest


def _split(text: str) -> tuple[list[str], bool]:
    """Lines of `text` and whether it ends with a newline."""
    lines = text.split("\n")
    ends_with_newline = lines[-1] == ""
    if ends_with_newline:
        lines.pop()
    return lines, ends_with_newline


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _same(line: str) -> str:
    return line


def _exact(window: list[str], needle: list[str]) -> Callable[[str], str] | None:
    return _same if window == needle else None


def _loose(window: list[str], needle: list[str]) -> Callable[[str], str] | None:
    """Match ignoring trailing whitespace and a uniform indentation offset; returns the re-indenter."""
    indents = []  # (real, searched) indentation of each non-blank line
    for real, searched in zip(window, needle):
        if real.strip() != searched.strip():
            return None
        if real.strip():
            indents.append((_indent(real), _indent(searched)))
    if not indents:
        return _same
    real0, searched0 = indents[0]
    if real0.endswith(searched0):  # the file is indented deeper than the SEARCH text
        extra = real0[: len(real0) - len(searched0)]
        if all(real == extra + searched for real, searched in indents):
            return lambda line: extra + line if line.strip() else line
    if searched0.endswith(real0):  # the SEARCH text is indented deeper than the file
        extra = searched0[: len(searched0) - len(real0)]
        if all(searched == extra + real for real, searched in indents):
            return lambda line: line[len(extra) :] if line.startswith(extra) else line.lstrip()
    return None


def _strip_blank_ends(needle: list[str], new: list[str]) -> tuple[list[str], list[str]]:
    """Drop blank lines at both ends of SEARCH, and the matching blank lines of REPLACE."""
    start = 0
    while start < len(needle) and not needle[start].strip():
        start += 1
    end = len(needle)
    while end > start and not needle[end - 1].strip():
        end -= 1
    lead = 0
    while lead < min(start, len(new)) and not new[lead].strip():
        lead += 1
    trail = 0
    while trail < min(len(needle) - end, len(new) - lead) and not new[len(new) - 1 - trail].strip():
        trail += 1
    return needle[start:end], new[lead : len(new) - trail]


def _closest(lines: list[str], needle: list[str], candidates: int = 20) -> str | None:
    """The window of real lines most similar to `needle`.

    Comparing every window with difflib is too slow on big files, so only the windows sharing
    the most words with `needle` are compared.
    """
    if not lines:
        return None
    size = max(1, len(needle))
    words = set(_WORD.findall("\n".join(needle)))
    shared = [0, *accumulate(len(words.intersection(_WORD.findall(line))) for line in lines)]
    starts = range(max(1, len(lines) - size + 1))
    top = heapq.nlargest(candidates, starts, key=lambda start: shared[min(start + size, len(lines))] - shared[start])
    matcher = difflib.SequenceMatcher(b="\n".join(needle))

    def similarity(start: int) -> float:
        matcher.set_seq1("\n".join(lines[start : start + size]))
        return matcher.ratio()

    best = max(sorted(top), key=similarity)
    return "\n".join(lines[best : best + size])


def _replace_once(text: str, search: str, replace: str) -> str:
    """Replace the single place where `search` matches, trying stricter matches first."""
    lines, ends_with_newline = _split(text)
    needle, new = _split(search)[0], _split(replace)[0]
    variants = [(needle, new)]
    trimmed = _strip_blank_ends(needle, new)
    if trimmed[0] and trimmed[0] != needle:
        variants.append(trimmed)
    for needle_lines, new_lines in variants:
        size = len(needle_lines)
        for matcher in (_exact, _loose):
            hits = []
            for start in range(len(lines) - size + 1):
                reindent = matcher(lines[start : start + size], needle_lines)
                if reindent is not None:
                    hits.append((start, reindent))
            if len(hits) > 1:
                raise _Failed(f"SEARCH text matches {len(hits)} places; add context lines to make it unique")
            if hits:
                start, reindent = hits[0]
                lines[start : start + size] = [reindent(line) for line in new_lines]
                return "\n".join(lines) + ("\n" if ends_with_newline and lines else "")
    raise _Failed("SEARCH text not found", _closest(lines, variants[-1][0]))


class _Tree:
    """The current text of every file the edits touch, read lazily from disk."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.original: dict[str, str | None] = {}  # None: the file does not exist
        self.current: dict[str, str | None] = {}
        self.newline: dict[str, str] = {}

    def relative(self, path: str) -> str:
        posix = path.replace("\\", "/")
        if PurePosixPath(posix).is_absolute() or PureWindowsPath(path).drive:
            raise _Failed("path is absolute; use a path relative to the repository root")
        try:
            target = (self.root / posix).resolve()
        except (OSError, RuntimeError):  # symlink loops
            raise _Failed("path cannot be resolved") from None
        if not target.is_relative_to(self.root):
            raise _Failed("path escapes the repository")
        rel = target.relative_to(self.root)
        if ".git" in rel.parts:
            raise _Failed("path is inside .git")
        if target.is_dir():
            raise _Failed("path is a directory")
        return rel.as_posix()

    def text(self, rel: str) -> str | None:
        if rel not in self.current:
            self.original[rel] = self.current[rel] = self._read(rel)
        return self.current[rel]

    def _read(self, rel: str) -> str | None:
        path = self.root / rel
        if not path.is_file():
            return None
        try:
            raw = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise _Failed("file is not UTF-8 text") from None
        self.newline[rel] = "\r\n" if "\r\n" in raw else "\n"
        return raw.replace("\r\n", "\n")

    def apply(self, edit: Edit) -> None:
        rel = self.relative(edit.path)
        text = self.text(rel)
        if not edit.search:
            if text is not None:
                raise _Failed("file already exists; an empty SEARCH only creates new files")
            self.current[rel] = edit.replace if edit.replace.endswith("\n") or not edit.replace else edit.replace + "\n"
        elif text is None:
            raise _Failed("file does not exist")
        else:
            self.current[rel] = _replace_once(text, edit.search, edit.replace)

    def changed(self) -> dict[str, str]:
        return {
            rel: text.replace("\n", self.newline.get(rel, "\n"))
            for rel, text in self.current.items()
            if text is not None and text != self.original[rel]
        }

    def write(self, changed: dict[str, str]) -> None:
        for rel, text in changed.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))


def apply_edits(root: Path, edits: list[Edit], *, write: bool = True) -> ApplyResult:
    """Apply `edits` in order under `root`; write the files only if all apply and `write` is set."""
    tree = _Tree(Path(root))
    result = ApplyResult(changed={}, failures=[])
    for edit in edits:
        try:
            tree.apply(edit)
        except _Failed as failed:
            result.failures.append(ApplyFailure(edit, failed.reason, failed.closest))
        else:
            result.applied.append(edit)
    result.changed = tree.changed()
    if write and result.ok:
        tree.write(result.changed)
    return result


def _label(edit: Edit) -> str:
    if not edit.search:
        return f"{edit.path} (new file)"
    first = edit.search.strip().split("\n")[0]
    return f"{edit.path} (SEARCH starting {first!r})"


def describe_failures(result: ApplyResult) -> str:
    """A short report for the model: which edits applied and why the others failed."""
    parts = []
    if result.applied:
        parts.append("These edits applied cleanly:\n" + "\n".join(f"- {_label(e)}" for e in result.applied))
    for failure in result.failures:
        text = f"FAILED: {_label(failure.edit)}: {failure.reason}."
        if failure.closest is not None:
            text += f"\nThe closest real lines in {failure.edit.path} are:\n```\n{failure.closest}\n```"
        parts.append(text)
    if result.failures:
        parts.append(
            f"No file was changed because {len(result.failures)} edit(s) failed. "
            "SEARCH text must copy the file's current lines exactly and match exactly one place."
        )
    return "\n\n".join(parts)
