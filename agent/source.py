"""Where the functions of a repository's source files are: qualified names and line spans, read with libcst."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

MODULE_LEVEL = "<module>"


@dataclass(frozen=True)
class FunctionSpan:
    file: str  # repository-relative posix path
    qualname: str  # Class.method, outer.inner; "<module>" for top-level code
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
        self.scope.append(node.name.value)
        if isinstance(node, cst.FunctionDef):
            pos = self.get_metadata(PositionProvider, node)
            start = min([pos.start.line] + [self.get_metadata(PositionProvider, d).start.line
                                            for d in node.decorators])
            self.spans.append(FunctionSpan(self.file, ".".join(self.scope), start, pos.end.line))

    def visit_ClassDef(self, node):
        self._enter(node)

    def leave_ClassDef(self, node):
        self.scope.pop()

    def visit_FunctionDef(self, node):
        self._enter(node)

    def leave_FunctionDef(self, node):
        self.scope.pop()


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

    def function_at(self, file: str, line: int) -> FunctionSpan:
        """The innermost function around `line`; comprehensions and lambdas fold into it by construction."""
        best = None
        for span in self.functions(file):
            if span.start <= line <= span.end and (best is None or span.start >= best.start):
                best = span
        return best or FunctionSpan(file, MODULE_LEVEL, 1, max(1, line))

    def lines(self, file: str, start: int, end: int) -> list[str]:
        try:
            text = (self.root / file).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return text[start - 1:end]
