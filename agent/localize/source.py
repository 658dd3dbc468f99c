"""Where the functions of a repository's source files are: qualified names and line spans, read with libcst (Cython
and C/C++ sources: with perfagent.localize.compiled, by their suffix).

Qualified names follow Python's own `__qualname__` (PEP 3155): `Class.method`, and `outer.<locals>.inner` for a
function defined inside another one, so a name means the same here, in tracebacks and in the code the model reads.
Comprehensions, generator expressions and lambdas get no span of their own: they fold into their enclosing function.
"""
from __future__ import annotations

import difflib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from perfagent.localize import compiled
from perfagent.repos.diffs import Change, read_diff

MODULE_LEVEL = "<module>"


@dataclass(frozen=True)
class FunctionSpan:
    file: str  # repository-relative posix path
    qualname: str  # Class.method, outer.<locals>.inner; "<module>" for top-level code (class bodies included)
    start: int  # first line (decorators included)
    end: int  # last line

    @property
    def key(self) -> str:
        module = self.file[:-3].replace("/", ".") if self.file.endswith(".py") else self.file
        return f"{module}:{self.qualname}"


class _Collector(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, file: str):
        self.file, self.scope, self.spans = file, [], []

    def _enter(self, node) -> None:
        if self.scope and self.scope[-1][1]:  # inside a function: Python's `<locals>` marker
            self.scope.append(("<locals>", False))
        self.scope.append((node.name.value, isinstance(node, cst.FunctionDef)))
        if isinstance(node, cst.FunctionDef):
            pos = self.get_metadata(PositionProvider, node)
            start = min([pos.start.line] + [self.get_metadata(PositionProvider, d).start.line
                                            for d in node.decorators])
            self.spans.append(FunctionSpan(self.file, ".".join(name for name, _ in self.scope), start, pos.end.line))

    def _leave(self) -> None:
        self.scope.pop()
        if self.scope and self.scope[-1][0] == "<locals>":
            self.scope.pop()

    def visit_ClassDef(self, node):
        self._enter(node)

    def leave_ClassDef(self, node):
        self._leave()

    def visit_FunctionDef(self, node):
        self._enter(node)

    def leave_FunctionDef(self, node):
        self._leave()


@lru_cache(maxsize=4096)
def _functions(path: Path, file: str, mtime_ns: int) -> tuple[FunctionSpan, ...]:
    try:
        source = path.read_bytes()
        if compiled.suffix(file) in compiled.SUFFIXES:
            found = compiled.functions(compiled.suffix(file), source.decode("utf-8", errors="replace"))
            return tuple(FunctionSpan(file, name, start, end) for name, start, end in found)
        module = cst.parse_module(source)
    except (cst.ParserSyntaxError, OSError, UnicodeDecodeError):
        return ()
    collector = _Collector(file)
    MetadataWrapper(module).visit(collector)
    return tuple(collector.spans)


class SourceIndex:
    """Maps (file, line) in a repository checkout to the innermost enclosing function."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    def relative(self, filename: str) -> str | None:
        """Repository-relative path of an absolute file name, or None when it is outside the repository."""
        path = Path(filename)
        if not path.is_absolute() or not path.is_relative_to(self.root):
            return None
        return path.relative_to(self.root).as_posix()

    def functions(self, file: str) -> tuple[FunctionSpan, ...]:
        path = self.root / file
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return ()
        return _functions(path, file, mtime)

    def function_at(self, file: str, line: int, name: str | None = None) -> FunctionSpan:
        """The innermost function around `line`; comprehensions and lambdas fold into it by construction. With the
        `name` of the running function (a profiler's frame), the innermost one of that name: a nested function's
        `def` line runs in the frame of the function around it."""
        around = sorted((s for s in self.functions(file) if s.start <= line <= s.end), key=lambda s: -s.start)
        named = [s for s in around if name and name in (s.qualname, s.qualname.rsplit(".", 1)[-1])]
        return (named or around or [FunctionSpan(file, MODULE_LEVEL, 1, max(1, line))])[0]

    def lines(self, file: str, start: int, end: int) -> list[str]:
        try:
            text = (self.root / file).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return text[start - 1:end]


def touched_functions(index: SourceIndex, before: dict[str, str], after: dict[str, str]) -> list[FunctionSpan]:
    """The functions, as they are in `index`'s checkout (the old side), whose lines a change touches: each file of
    `after` against its text in `before`, compared line by line with difflib (see _touched for the rule)."""
    return _touched(index, ((path, _compare(before.get(path, ""), text)) for path, text in after.items()))


def edited_spans(index: SourceIndex, patch: str) -> list[FunctionSpan]:
    """touched_functions for a unified diff, read with perfagent.repos.diffs: its hunks are the comparison."""
    return _touched(index, ((f.old, f.changes) for f in read_diff(patch) if f.old))


def _compare(old: str, new: str) -> tuple[Change, ...]:
    """The old lines each difference between two texts replaces. Lines end at line feeds only, as git counts them
    (str.splitlines would also end one at a form feed, which Python does not)."""
    old_lines, new_lines = (io.StringIO(text, newline="\n").readlines() for text in (old, new))
    matcher = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    return tuple((i1, i2) for tag, i1, i2, _, _ in matcher.get_opcodes() if tag != "equal")


def _touched(index: SourceIndex, changes: Iterable[tuple[str, Iterable[Change]]]) -> list[FunctionSpan]:
    """The one rule for the functions a change touches. A removed or replaced line belongs to the function around it;
    lines only inserted belong to the innermost function around both neighbours of the insertion point, else to the
    module. So edits outside every function (imports, constants, class attributes, new top-level functions, a
    decorator added above a `def`) come back as the file's `<module>` span. A file not in the checkout (one the change
    creates) has no old lines, so nothing of it is touched."""
    spans: dict[str, FunctionSpan] = {}
    for file, ranges in changes:
        if not (index.root / file).is_file():
            continue
        for start, end in ranges:
            removed = [index.function_at(file, line) for line in range(start + 1, end + 1)]
            for span in removed or [_around_insertion(index, file, start)]:
                spans.setdefault(span.key, span)
    return list(spans.values())


def _around_insertion(index: SourceIndex, file: str, line: int) -> FunctionSpan:
    """The innermost function holding both `line` and the next one, between which lines are inserted."""
    inside = [s for s in index.functions(file) if s.start <= line < s.end]
    return max(inside, key=lambda s: s.start, default=FunctionSpan(file, MODULE_LEVEL, 1, max(1, line + 1)))
