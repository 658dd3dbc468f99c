"""py-spy raw stacks -> a frame tree -> an inline SVG flame graph, and the same stacks as speedscope JSON.

Only what runs below the harness's `perfagent_profiled_workload` frame is kept (as in localize/hotspots.py), so setup()
and interpreter start-up are left out; a profile without that frame (a shell-command workload) is kept whole.
Files under the repository (or the worktree it was profiled in) are shown repository-relative.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from pathlib import Path, PurePosixPath

from perfagent.localize import hotspots as localize

REPOSITORY, WORKLOAD, STDLIB, THIRD_PARTY = "repository", "workload", "stdlib", "third-party"
_STDLIB = re.compile(r"/lib/python3\.\d+/|^<frozen |^<built-in")
SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
SWATCHES = {REPOSITORY: "hsl(28, 84%, 62%)", WORKLOAD: "hsl(265, 45%, 80%)", STDLIB: "hsl(215, 28%, 74%)",
            THIRD_PARTY: "hsl(155, 36%, 66%)"}  # a typical colour of each kind, for legends


@dataclass(frozen=True)
class Frame:
    name: str
    file: str  # repository-relative for the repository's files
    line: int
    kind: str


class PathMapper:
    """Makes frame files repository-relative. The roots are the repository and every folder that holds one of the
    profile's known repository files (the temporary worktree a run profiled in). The workload file (which batch
    tasks keep outside the repository) is a kind of its own."""

    def __init__(self, repo: str | None, known_files: list[str], workload: str | None = None):
        self.roots = {str(repo).rstrip("/")} if repo else set()
        self.known = [f"/{f}" for f in known_files if f]
        self.workload = workload

    def learn(self, files: set[str]) -> None:
        for path in files:
            for suffix in self.known:
                if path.endswith(suffix):
                    self.roots.add(path[: -len(suffix)])

    def classify(self, path: str) -> tuple[str, str]:
        """(shown file, kind)"""
        for root in sorted(self.roots, key=len, reverse=True):
            if root and path.startswith(root + "/"):
                return path[len(root) + 1:], WORKLOAD if path == self.workload else REPOSITORY
        if path == self.workload:
            return PurePosixPath(path).name, WORKLOAD
        parts = PurePosixPath(path).parts
        if "site-packages" in parts or "dist-packages" in parts:
            return path, THIRD_PARTY
        return path, STDLIB if _STDLIB.search(path) else THIRD_PARTY


def read_stacks(raw: str, mapper: PathMapper) -> list[tuple[list[Frame], int]]:
    """(frames from the outermost workload frame to the leaf, sample count) per line of py-spy's raw output; a command
    workload, which has no harness frame, is kept whole."""
    parsed = localize.read_stacks(raw, below_harness=localize.WORKLOAD_FRAME in raw)
    mapper.learn({file for frames, _ in parsed for _, file, _ in frames})
    return [([Frame(func, *_placed(mapper, file, line)) for func, file, line in frames], count)
            for frames, count in parsed]


def _placed(mapper: PathMapper, file: str, line: int) -> tuple[str, int, str]:
    shown, kind = mapper.classify(file)
    return shown, line, kind


@dataclass
class Node:
    name: str
    file: str
    kind: str
    count: int = 0
    lines: Counter = field(default_factory=Counter)
    children: dict[tuple[str, str], "Node"] = field(default_factory=dict)


def frame_tree(stacks: list[tuple[list[Frame], int]]) -> Node:
    """One node per function (name and file) and call path; lines of a function are merged into its node."""
    root = Node("all samples", "", "root")
    for frames, count in stacks:
        root.count += count
        node = root
        for frame in frames:
            node = node.children.setdefault((frame.name, frame.file), Node(frame.name, frame.file, frame.kind))
            node.count += count
            node.lines[frame.line] += count
    return root


def _colour(node: Node) -> str:
    h = int(hashlib.md5(f"{node.name}{node.file}".encode()).hexdigest()[:4], 16)
    if node.kind == REPOSITORY:
        return f"hsl({14 + h % 28}, {78 + h % 12}%, {58 + h % 10}%)"
    if node.kind == WORKLOAD:
        return SWATCHES[WORKLOAD]
    if node.kind == STDLIB:
        return f"hsl({205 + h % 20}, {22 + h % 15}%, {70 + h % 10}%)"
    if node.kind == THIRD_PARTY:
        return f"hsl({140 + h % 30}, {30 + h % 15}%, {62 + h % 10}%)"
    return "hsl(0, 0%, 82%)"


def flame_svg(root: Node, *, width: int = 1200, row: int = 18, min_share: float = 0.005, max_depth: int = 100,
              title: str = "") -> str:
    """An icicle-style flame graph (callers above callees); frames narrower than `min_share` of all samples, or deeper
    than `max_depth` calls (deep recursion), are left out. Every box has a <title> with its function, file, lines and
    share."""
    if not root.count:
        return '<p class="muted">no samples below the workload frame</p>'
    boxes: list[str] = []
    char = 6.6  # px per character at the 11px monospace font
    depth = 0

    def draw(node: Node, x: float, level: int) -> None:
        nonlocal depth
        w = width * node.count / root.count
        depth = max(depth, level)
        share = node.count / root.count
        lines = ", ".join(str(n) for n, _ in node.lines.most_common(5) if n)  # 0: a native frame without debug info
        where = f"{node.file}:{lines}" if node.file and lines else node.file
        tip = f"{node.name} ({where})" if where else node.name
        label = node.name if node.kind != "root" else f"all samples ({root.count})"
        fits = int((w - 6) / char)
        text = label if len(label) <= fits else (label[: fits - 1] + "…" if fits >= 3 else "")
        y = level * row
        boxes.append(
            f'<g class="frame {node.kind}"><title>{escape(tip)}\n{node.count} samples, {share:.1%}</title>'
            f'<rect x="{x:.2f}" y="{y}" width="{max(w - 0.6, 0.5):.2f}" height="{row - 1}" rx="2" '
            f'fill="{_colour(node)}"/>'
            + (f'<text x="{x + 3:.2f}" y="{y + row - 5}">{escape(text)}</text>' if text else "") + "</g>")
        for child in sorted(node.children.values(), key=lambda c: -c.count):
            if child.count / root.count >= min_share and level < max_depth:
                draw(child, x, level + 1)
                x += width * child.count / root.count

    draw(root, 0.0, 0)
    height = (depth + 1) * row
    return (f'<svg class="flamegraph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="100%" preserveAspectRatio="xMinYMin meet" font-family="ui-monospace, Menlo, Consolas, monospace" '
            f'font-size="11" role="img" aria-label="{escape(title or "flame graph")}">{"".join(boxes)}</svg>')


def speedscope(stacks: list[tuple[list[Frame], int]], name: str) -> dict:
    """A speedscope file (one "sampled" profile, weights = py-spy sample counts) for https://www.speedscope.app."""
    index: dict[tuple[str, str, int], int] = {}
    samples, weights = [], []
    for frames, count in stacks:
        samples.append([index.setdefault((f.name, f.file, f.line), len(index)) for f in frames])
        weights.append(count)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "exporter": "perfagent",
        "name": name,
        "activeProfileIndex": 0,
        "shared": {"frames": [{"name": n, "file": f, "line": line} for n, f, line in index]},
        "profiles": [{"type": "sampled", "name": name, "unit": "none", "startValue": 0, "endValue": sum(weights),
                      "samples": samples, "weights": weights}],
    }


def load_profile(raw_path: Path, mapper: PathMapper) -> list[tuple[list[Frame], int]]:
    return read_stacks(Path(raw_path).read_text(encoding="utf-8", errors="replace"), mapper)
