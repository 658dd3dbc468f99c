"""What a candidate is called (its summary, its commit's subject, the pull request's title): the first sentence of the
model's prose, or, when its reply has none (code only, or an oracle's replayed patch), a title derived from the
change itself: the functions it edits."""
from __future__ import annotations

import keyword
import re

from perfagent.localize.source import MODULE_LEVEL
from perfagent import formats

SUMMARY_CHARS = 200  # a sentence longer than this is cut (at a word) in the record; subjects are cut shorter
_BLOCK = re.compile(r"^\s*<{5,9} ?SEARCH\s*$.*?^\s*>{5,9} ?REPLACE\s*$|^\s*(```|~~~).*?^\s*(```|~~~)\s*$", re.M | re.S)
_FENCE = re.compile(r"\s*(```|~~~|<{5,9} ?SEARCH|={5,9}\s*$|>{5,9} ?REPLACE)")  # what an unclosed block leaves
_FILE = re.compile(r"\s*[#*`'\"]*\s*[\w./-]+\.\w+[*`'\":]*\s*")  # a file name alone on a line, above an edit
_DIFF = re.compile(r"(diff --git |--- |\+\+\+ |@@ |index [0-9a-f]+\.\.)")  # an unfenced unified diff starts


def prose_lines(reply: str) -> list[str]:
    """The model's own words: its reply without edit blocks, code fences, diffs and the file names above them."""
    lines, in_diff = [], False
    for line in _BLOCK.sub("", reply).splitlines():
        in_diff = bool(_DIFF.match(line)) or (in_diff and line[:1] in (" ", "+", "-", "\\"))
        if not (in_diff or not line.strip() or _FENCE.match(line) or _FILE.fullmatch(line)):
            lines.append(line)
    return lines


def _is_code(line: str) -> bool:
    """A line of Python rather than a sentence: it compiles (alone, or as a block's header) and reads as code."""
    looks = re.search(r"[()\[\]{}=:]", line) or keyword.iskeyword(line.split()[0])
    for text in (line, f"{line}\n        pass"):
        try:
            compile(f"def _():\n    {text}\n", "<reply>", "exec")
        except (SyntaxError, ValueError):
            continue
        return bool(looks)
    return False


def explanation(reply: str) -> str:
    """The first sentence of prose in a model reply ("" when it has none: only code)."""
    for line in prose_lines(reply):
        line = line.replace("**", "").strip().strip("#*-").strip()  # markdown: headings, bullets, bold
        if line and not _is_code(line):
            sentence = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0]
            return formats.shorten(sentence.rstrip(":"), SUMMARY_CHARS)
    return ""


def derived(functions: list[str], files: list[str]) -> str:
    """A title from the change: the functions it edits ("module:qualname", as touched_functions keys them; a file
    that is not Python is keyed by its path, "path:qualname"), else its files."""
    def name(key: str) -> str:
        module, _, qualname = key.partition(":")
        return f"{qualname} in {module}" if module in files else f"{module}.{qualname}"

    named = [name(key) for key in functions if not key.endswith(f":{MODULE_LEVEL}")]
    if named:
        return f"Speed up {_listed(named, 'function')}"
    modules = [key.split(":")[0] for key in functions]
    if modules:
        return f"Change module-level code of {_listed(modules, 'module')}"
    return f"Change {_listed(files, 'file')}" if files else "(no explanation)"


def title(prose: str, functions: list[str], files: list[str]) -> str:
    """The model's sentence, or the change's own title when the model gave none."""
    return prose or derived(functions, files)


def _listed(names: list[str], noun: str) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return f"{names[0]}, {names[1]} and {formats.plural(len(names) - 2, 'more ' + noun)}"
