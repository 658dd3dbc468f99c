"""Where the functions of a repository's source files are: qualified names and line spans, read with libcst.

Qualified names follow Python's own `__qualname__` (PEP 3155): `Class.method`, and `outer.<locals>.inner` for a
function defined inside another one, so a name means the same here, in tracebacks and in the code the model reads.
Comprehensions, generator expressions and lambdas get no span of their own: they fold into their enclosing function.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

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
        module = cst.parse_module(path.read_bytes())
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


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")


def edited_spans(index: SourceIndex, patch: str) -> list[FunctionSpan]:
    """The functions, as they are in `index`'s checkout (the patch's old side), whose lines a unified diff changes.

    A removed or replaced line belongs to the function around it; lines only added belong to the function that
    encloses both neighbours of the insertion point, else to the module. Edits outside every function (imports,
    constants, class attributes, new top-level functions) come back as the file's `<module>` span. Files the patch
    creates have no old side and are left out."""
    spans: dict[str, FunctionSpan] = {}
    file, old, replacing = None, 0, False
    lines = patch.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):  # a file header
            name = line[4:].split("\t")[0].strip()
            file = None if name == "/dev/null" else name[2:] if name[:2] in ("a/", "b/") else name
            continue
        if line.startswith("+++ ") and i > 0 and lines[i - 1].startswith("--- ") or file is None:
            continue
        hunk = _HUNK.match(line)
        if hunk:
            replacing = False
            old = int(hunk.group(1)) + (hunk.group(2) == "0")  # an empty old side (-10,0) inserts after its line
            continue
        if line.startswith("-"):
            span, replacing = index.function_at(file, old), True
            old += 1
        elif line.startswith("+"):
            if replacing:  # these lines replace the removed ones just above, already counted
                continue
            span = next((s for s in _innermost_first(index.functions(file)) if s.start < old <= s.end),
                        FunctionSpan(file, MODULE_LEVEL, 1, max(1, old)))  # inserted between old - 1 and old
        else:
            old += 0 if line.startswith("\\") else 1
            replacing = replacing and line.startswith("\\")
            continue
        spans.setdefault(span.key, span)
    return list(spans.values())


def _innermost_first(spans: tuple[FunctionSpan, ...]) -> list[FunctionSpan]:
    return sorted(spans, key=lambda s: -s.start)
