"""Where the functions of a repository's Cython and C/C++ sources are: (qualified name, first line, last line).

Read from the text alone, without a compiler, so any checkout can be indexed (perfagent.localize.source wraps these
in FunctionSpans next to its Python index):
- Cython (.pyx, .pxd, .pxi): `def`, `cpdef` and `cdef` functions with a body, named like Python names them
  (`Class.method`, `outer.<locals>.inner`; a `cdef class` is a class), their span from the decorators to the last
  line of the indented body;
- C and C++ (and numpy's templates, `loops.c.src`, as the C they expand to): function definitions at file level
  (`extern "C"` and namespace blocks are transparent), from the line their declaration starts (the return type) to
  their closing brace; C++ methods defined outside their class keep their `Class::` prefix. Structs, enums and
  initializers are not functions.
"""
from __future__ import annotations

import bisect
import re
from pathlib import PurePosixPath

CYTHON_SUFFIXES = (".pyx", ".pxd", ".pxi")
C_SUFFIXES = (".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx")
SUFFIXES = CYTHON_SUFFIXES + C_SUFFIXES


def suffix(path: str) -> str:
    """A source file's language suffix: a template's (`x.c.src`) is the one of the file it expands to."""
    name = PurePosixPath(path)
    return PurePosixPath(name.stem).suffix if name.suffix == ".src" else name.suffix

_CLASS = re.compile(r"(?:cdef\s+(?:public\s+|api\s+|final\s+|readonly\s+)*)?class\s+(\w+)")
_FUNCTION_START = re.compile(r"(?:async\s+def|def|cpdef|cdef)\b")
_NOT_FUNCTIONS = re.compile(r"cdef\s+(?:extern|struct|union|enum|class|packed|ctypedef|fused)\b|ctypedef\b")
_CALLABLE = re.compile(r"(\w+)\s*\(")
# what may follow a Cython signature's closing parenthesis before its colon
_QUALIFIERS = re.compile(r"\s*(?:(?:->\s*[\w.\[\]:, ]+?|nogil|noexcept|with\s+gil|const"
                         r"|except\s*[?*+]?\s*[-\w.]*)\s*)*:")


def _logical_lines(text: str) -> list[tuple[int, int, str]]:
    """(first line, indentation, text with continuation lines joined and comments cut) of each statement start;
    lines inside brackets, triple-quoted strings or after a backslash continue the statement they are in."""
    statements, depth, quote, current = [], 0, None, None
    for number, line in enumerate(text.splitlines(), 1):
        if current is None:
            stripped = line.lstrip()
            if not stripped or stripped.startswith("#"):
                continue
            current = [number, len(line.expandtabs(8)) - len(stripped.expandtabs(8)), ""]
        i, code = 0, []
        while i < len(line):
            char = line[i]
            if quote:
                if line.startswith(quote, i):
                    quote, i = None, i + len(quote) - 1
                elif char == "\\":
                    i += 1
            elif char == "#":
                break
            elif line.startswith(('"""', "'''"), i):
                quote, i = line[i:i + 3], i + 2
            elif char in "\"'":
                quote = char
            elif char in "([{":
                depth += 1
            elif char in ")]}":
                depth = max(0, depth - 1)
            code.append(char)
            i += 1
        if quote in ("'", '"'):  # a one-line string left open: Python would reject it, end it here
            quote = None
        current[2] += "".join(code).rstrip()
        if depth or quote or current[2].endswith("\\"):
            current[2] = current[2].rstrip("\\") + " "
            continue
        statements.append((current[0], current[1], current[2].strip()))
        current = None
    if current is not None:
        statements.append((current[0], current[1], current[2].strip()))
    return statements


def _function_name(statement: str) -> str | None:
    """The name a Cython function definition statement defines, or None for anything else."""
    if not _FUNCTION_START.match(statement) or _NOT_FUNCTIONS.match(statement):
        return None
    for match in _CALLABLE.finditer(statement):
        depth, end = 0, None
        for i in range(match.end() - 1, len(statement)):
            depth += {"(": 1, ")": -1}.get(statement[i], 0)
            if depth == 0:
                end = i + 1
                break
        if end is not None and _QUALIFIERS.match(statement, end):
            return match.group(1)
    return None


def cython_functions(text: str) -> list[tuple[str, int, int]]:
    """(qualname, first line, last line) of each Cython function with a body, in the order they start."""
    statements, lines = _logical_lines(text), text.splitlines()
    spans, scope = [], []  # scope: (indentation, name, is it a function) of the definitions around a statement
    for i, (line, indent, statement) in enumerate(statements):
        while scope and scope[-1][0] >= indent:
            scope.pop()
        name = _function_name(statement)
        klass = None if name else _CLASS.match(statement)
        if not name and not (klass and statement.endswith(":")):
            continue
        if name:
            parts = [part for _, outer, is_function in scope
                     for part in ([outer, "<locals>"] if is_function else [outer])]
            start = line
            for previous in reversed(statements[:i]):  # its decorators
                if previous[1] != indent or not previous[2].startswith("@"):
                    break
                start = previous[0]
            spans.append((".".join(parts + [name]), start, _body_end(statements, i, lines)))
        scope.append((indent, name or klass.group(1), bool(name)))
    return spans


def _body_end(statements: list[tuple[int, int, str]], i: int, lines: list[str]) -> int:
    """The last line of the block that statement i opens: the line before the next statement indented as much or
    less, less the blank and comment lines in between."""
    line, indent, _ = statements[i]
    following = next((s[0] for s in statements[i + 1:] if s[1] <= indent), len(lines) + 1)
    end = following - 1
    while end > line and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return end


_C_TOKEN = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|^[ \t]*#(?:\\\n|[^\n])*|[{};]',
                      re.DOTALL | re.MULTILINE)
_C_SPACE = re.compile(r"(?:\s|/\*.*?\*/|//[^\n]*)+", re.DOTALL)  # white space and comments
_C_TRANSPARENT = re.compile(r'(?:extern\s*"C(?:\+\+)?"|namespace(?:\s+[\w:]+)?)\s*$')
# a definition's name: C++ may qualify it (`Sorter<T>::sort`), numpy's templates spell it with @names@ (`@TYPE@_add`)
_C_SIGNATURE = re.compile(r"((?:[A-Za-z_~@][\w~@]*(?:<[^<>(){};]*>)?::)*[A-Za-z_~@][\w~@]*)\s*\((?:[^()]|\([^()]*\))*\)"
                          r"(?:\s*(?:const|noexcept|override|final|volatile|&&?|->[^;{]*))*\s*$")
_C_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "defined", "do", "else"}


def _c_function_name(head: str) -> str | None:
    """The function a declaration followed by `{` defines, or None (a struct, an enum, an initializer...)."""
    head = _C_SPACE.sub(" ", head)
    match = _C_SIGNATURE.search(head)
    if not match or "=" in head[:match.start()] or match.group(1).rpartition("::")[2] in _C_KEYWORDS:
        return None
    return match.group(1)


def c_functions(text: str) -> list[tuple[str, int, int]]:
    """(name, first line, last line) of each C/C++ function defined at file level, in the order they start."""
    spans, newlines = [], [i for i, char in enumerate(text) if char == "\n"]
    depth = transparent = 0  # braces open; of which extern "C" and namespace blocks
    declaration, opened = 0, None  # where the current file-level declaration starts; the function being read
    for token in _C_TOKEN.finditer(text):
        kind, at_file_level = token.group(), depth == transparent
        if kind not in ("{", "}", ";"):  # a comment, a string or a preprocessor line
            if at_file_level and kind.lstrip().startswith("#"):
                declaration = token.end()
        elif kind == "{":
            head = text[declaration:token.start()]
            if at_file_level and _C_TRANSPARENT.search(_C_SPACE.sub(" ", head)):
                transparent, declaration = transparent + 1, token.end()
            elif at_file_level and (name := _c_function_name(head)):
                space = _C_SPACE.match(text, declaration)
                opened = (name, bisect.bisect_left(newlines, space.end() if space else declaration) + 1)
            depth += 1
        elif kind == "}":
            depth = max(0, depth - 1)
            transparent = min(transparent, depth)
            if depth == transparent:
                if opened:
                    spans.append((*opened, bisect.bisect_left(newlines, token.start()) + 1))
                    opened = None
                declaration = token.end()
        elif at_file_level:
            declaration = token.end()
    return spans


def functions(suffix: str, text: str) -> list[tuple[str, int, int]]:
    """The functions of a Cython or C/C++ source (one of SUFFIXES)."""
    return cython_functions(text) if suffix in CYTHON_SUFFIXES else c_functions(text)
