"""Render the jinja2 templates in prompts/ into chat messages: hotspot code and profile in, edits out."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from agent.localize import Hotspot, Profile
from agent.source import MODULE_LEVEL, SourceIndex
from agent.workload import Workload

PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(PROMPTS), undefined=jinja2.StrictUndefined,
                          keep_trailing_newline=True, trim_blocks=False)
_env.globals["pct"] = lambda share: f"{share:.1%}"
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
    truncated: bool


def render(name: str, **values) -> str:
    return _env.get_template(name).render(**values).strip() + "\n"


def _focus(index: SourceIndex, h: Hotspot, budget: int) -> Focus:
    lines = index.lines(h.file, h.start, h.end) if h.qualname != MODULE_LEVEL else []
    code, truncated = "\n".join(lines), False
    if len(code) > budget:
        # keep the hottest lines' neighbourhood: cut from the end, but never before the hottest line
        hottest = max((line for line, _ in h.lines[:3]), default=h.start) - h.start
        keep = max(hottest + 5, 1)
        while keep < len(lines) and len("\n".join(lines[:keep + 1])) <= budget:
            keep += 1
        code, truncated = "\n".join(lines[:keep]), True
    hot = [(line, share, (index.lines(h.file, line, line) or [""])[0]) for line, share in h.lines[:5]]
    return Focus(h, code, hot, truncated)


def _module_header(index: SourceIndex, file: str, limit: int = 40) -> str:
    """The module's imports and constants above its first definition: what names the code can use."""
    first_def = min((s.start for s in index.functions(file)), default=limit + 1)
    return "\n".join(index.lines(file, 1, min(first_def - 1, limit))).strip()


def optimize_messages(*, workload: Workload, seconds: float, profile: Profile, index: SourceIndex,
                      attempts: list[Attempt], top_k: int, prompt_chars: int) -> list[dict]:
    focus_spots = [h for h in profile.hotspots if h.qualname != MODULE_LEVEL][:top_k]
    per_function = prompt_chars // max(1, len(focus_spots))
    focus = [_focus(index, h, per_function) for h in focus_spots]
    files = list(dict.fromkeys(h.file for h in focus_spots))
    headers = [(f, _module_header(index, f)) for f in files]
    source = workload.path.read_text(encoding="utf-8")[:_WORKLOAD_CHARS] if workload.kind == "python" else ""
    user = render("optimize.j2", workload=workload, workload_name=workload.repo_relative or workload.path,
                  workload_source=source.strip(), seconds=seconds, profile=profile,
                  table=profile.hotspots[:10], focus=focus, context_files=[h for h in headers if h[1]],
                  attempts=attempts)
    return [{"role": "system", "content": render("system.j2")}, {"role": "user", "content": user}]


def fix_edit_message(problem: str, details: str) -> dict:
    return {"role": "user", "content": render("fix_edit.j2", problem=problem, details=details)}
