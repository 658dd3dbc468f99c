"""Render the jinja2 templates in prompts/ into chat messages: hotspot code and profile in, edits out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jinja2

from perfagent import prompts  # the templates folder (prompts/)
from perfagent.model.llm import count_tokens
from perfagent.localize.hotspots import Hotspot, Profile
from perfagent.localize.source import MODULE_LEVEL, SourceIndex
from perfagent.measure.workload import Workload

PROMPTS = Path(prompts.__file__).parent
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(PROMPTS), undefined=jinja2.StrictUndefined,
                          keep_trailing_newline=True, trim_blocks=False)
_env.globals["pct"] = lambda share: f"{share:.1%}"
# the language of a source file's code fence: the model reads and edits Cython and C like Python
_LANGUAGES = {".pyx": "cython", ".pxd": "cython", ".pxi": "cython", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
              ".cxx": "cpp", ".hh": "cpp", ".hpp": "cpp", ".hxx": "cpp"}
_env.globals["language"] = lambda file: _LANGUAGES.get(PurePosixPath(file).suffix, "python")
_WORKLOAD_CHARS = 8000  # a workload file longer than this is cut in the prompt


@dataclass(frozen=True)
class Attempt:
    """An earlier candidate as the model is told about it."""
    summary: str
    files: list[str]
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Focus:
    hotspot: Hotspot
    code: str
    hot_lines: list[tuple[int, float, str]]
    shown: tuple[int, int]  # the lines of the function in `code` (all of them unless it was shortened)

    @property
    def truncated(self) -> bool:
        return self.shown != (self.hotspot.start, self.hotspot.end)


def render(name: str, **values) -> str:
    return _env.get_template(name).render(**values).strip() + "\n"


def _focus(index: SourceIndex, h: Hotspot, budget: int) -> Focus:
    """The function's code, or when it is longer than `budget` characters the longest run of its lines around its
    hottest line that fits (at least that line)."""
    lines = index.lines(h.file, h.start, h.end)
    hot = [(line, share, (index.lines(h.file, line, line) or [""])[0]) for line, share in h.lines[:5]]
    lo, hi = 0, len(lines)
    if lines and len("\n".join(lines)) > budget:
        lo = hi = min(max((h.lines[0][0] if h.lines else h.start) - h.start, 0), len(lines) - 1)
        size = len(lines[lo]) if lines else 0
        while True:  # grow below, then above, while it fits
            step = next((i for i in (hi + 1, lo - 1) if 0 <= i < len(lines) and not lo <= i <= hi
                         and size + len(lines[i]) + 1 <= budget), None)
            if step is None:
                break
            size += len(lines[step]) + 1
            lo, hi = min(lo, step), max(hi, step)
        hi += 1
    return Focus(h, "\n".join(lines[lo:hi]), hot, (h.start + lo, h.start + hi - 1))


def _module_header(index: SourceIndex, file: str, limit: int = 40) -> str:
    """The module's imports and constants above its first definition: what names the code can use."""
    first_def = min((s.start for s in index.functions(file)), default=limit + 1)
    return "\n".join(index.lines(file, 1, min(first_def - 1, limit))).strip()


@dataclass(frozen=True)
class Target:
    """What a prompt asks about: the workload, one call's time at baseline, the profile, and how many of its
    hotspots (from the top) the change should work on."""
    workload: Workload
    seconds: float
    profile: Profile
    top_k: int


def optimize_messages(target: Target, index: SourceIndex, attempts: list[Attempt], *, prompt_tokens: int,
                      model: str) -> list[dict]:
    """The system and user messages asking for one change, within `prompt_tokens` tokens: the code of the top
    functions is shortened to fit; when even that is not enough, only the last 3 attempts and the first 2000
    characters of the workload are kept."""
    workload, seconds, profile, top_k = target.workload, target.seconds, target.profile, target.top_k
    focus_spots = [h for h in profile.hotspots if h.qualname != MODULE_LEVEL][:top_k]
    files = list(dict.fromkeys(h.file for h in focus_spots))
    headers = [(f, header) for f in files if (header := _module_header(index, f))]
    source = workload.path.read_text(encoding="utf-8")[:_WORKLOAD_CHARS] if workload.kind == "python" else ""
    system = {"role": "system", "content": render("system.j2")}

    def messages(code_chars: int, attempts: list[Attempt], source: str) -> list[dict]:
        per_function = code_chars // max(1, len(focus_spots))
        user = render("optimize.j2", workload=workload, workload_name=workload.repo_relative or workload.path,
                      workload_source=source.strip(), seconds=seconds, profile=profile,
                      table=profile.hotspots[:10], focus=[_focus(index, h, per_function) for h in focus_spots],
                      context_files=headers, attempts=attempts)
        return [system, {"role": "user", "content": user}]

    code_chars = 4 * prompt_tokens  # about 3-4 characters per token of Python code
    for _ in range(6):
        result = messages(code_chars, attempts, source)
        tokens = count_tokens(model, result)
        if tokens <= prompt_tokens or code_chars == 0:
            break
        chars_per_token = sum(len(m["content"]) for m in result) / tokens
        code_chars = max(0, int(code_chars - 1.1 * (tokens - prompt_tokens) * chars_per_token))
    if tokens > prompt_tokens:
        result = messages(0, attempts[-3:], source[:2000])
    return result


def fix_edit_message(problem: str, details: str) -> dict:
    return {"role": "user", "content": render("fix_edit.j2", problem=problem, details=details)}
