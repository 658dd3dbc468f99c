"""Small inline SVG plots for the HTML reports: timing-sample strip plots and interval plots of speedups."""
from __future__ import annotations

import math
import statistics
from html import escape

BASELINE, CANDIDATE = "#8a94a6", "#e4572e"
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _svg(width: int, height: int, body: list[str], label: str, css: str) -> str:
    return (f'<svg class="{css}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" {_FONT} role="img" aria-label="{escape(label)}">{"".join(body)}</svg>')


def strip_plot(groups: list[tuple[str, list[float], str]], *, label: str = "timing samples", width: int = 620) -> str:
    """One row of dots per group (values in seconds, drawn in ms) with its median marked; x axis from 0."""
    left, right, row, top = 96, 24, 34, 8
    values = [v * 1000 for _, vs, _ in groups for v in vs]
    if not values:
        return ""
    high = max(values) * 1.08 or 1.0
    ticks = _nice_ticks(0.0, high)
    high = max(high, ticks[-1])
    x = lambda v: left + (width - left - right) * v / high  # noqa: E731
    axis_y = top + row * len(groups) + 4
    body = [f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#555"/>']
    for t in ticks:
        body.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{axis_y + 4}" stroke="#e3e6ea"/>'
                    f'<text x="{x(t):.1f}" y="{axis_y + 16}" text-anchor="middle" fill="#444">{t:g}</text>')
    body.append(f'<text x="{width - right}" y="{axis_y + 30}" text-anchor="end" fill="#444">ms per call</text>')
    for i, (name, vs, colour) in enumerate(groups):
        mid = top + row * i + row / 2
        body.append(f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end" fill="#222">{escape(name)}</text>')
        for k, v in enumerate(vs):
            jitter = ((k * 7) % 5 - 2) * 3
            body.append(f'<circle class="sample" cx="{x(v * 1000):.1f}" cy="{mid + jitter:.1f}" r="3.5" '
                        f'fill="{colour}" fill-opacity="0.65"><title>{escape(name)}: {v * 1000:.2f} ms</title>'
                        f'</circle>')
        median = statistics.median(vs)
        mx = x(median * 1000)
        body.append(f'<line x1="{mx:.1f}" y1="{mid - 12:.1f}" x2="{mx:.1f}" y2="{mid + 12:.1f}" stroke="#111" '
                    f'stroke-width="2"><title>median {median * 1000:.2f} ms</title></line>')
    return _svg(width, axis_y + 36, body, label, "samples-plot")


def interval_plot(rows: list[tuple[str, float, float | None, float | None]], *, references: list[tuple[float, str]],
                  axis: str, label: str) -> str:
    """Points with interval whiskers on a log axis, one row each (label, value, low, high), and labelled vertical
    reference lines (e.g. 1.0 and the harmonic mean)."""
    rows = [r for r in rows if r[1] and r[1] > 0]
    if not rows:
        return ""
    width, left, right, row, top = 860, 230, 30, 24, 10 + 14 * len(references)
    spots = [v for _, value, low, high in rows for v in (value, low, high) if v and v > 0] + [r for r, _ in references]
    lo, hi = math.log10(min(spots) / 1.25), math.log10(max(spots) * 1.25)
    x = lambda v: left + (width - left - right) * (math.log10(v) - lo) / (hi - lo)  # noqa: E731
    bottom = top + row * len(rows)
    body = [f'<line x1="{left}" y1="{bottom}" x2="{width - right}" y2="{bottom}" stroke="#555"/>']
    candidates = [m * 10 ** e for e in range(-3, 5) for m in (1, 2, 5)]
    for t in (t for t in candidates if lo <= math.log10(t) <= hi):
        body.append(f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{bottom + 4}" stroke="#e3e6ea"/>'
                    f'<text x="{x(t):.1f}" y="{bottom + 16}" text-anchor="middle" fill="#444">{t:g}</text>')
    for i, (value, name) in enumerate(references):  # labels one above the other, so close lines stay readable
        label_y = top - 4 - 14 * i
        body.append(f'<line x1="{x(value):.1f}" y1="{label_y + 2}" x2="{x(value):.1f}" y2="{bottom}" '
                    f'stroke="#1b6ac9" stroke-dasharray="4 3"/><text x="{x(value) + 3:.1f}" y="{label_y}" '
                    f'fill="#1b6ac9">{escape(name)}</text>')
    for i, (name, value, low, high) in enumerate(rows):
        mid = top + row * i + row / 2
        short = name if len(name) <= 34 else name[:33] + "…"
        body.append(f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end" fill="#222">{escape(short)}'
                    f'<title>{escape(name)}</title></text>')
        if low and high:
            body.append(f'<line x1="{x(low):.1f}" y1="{mid:.1f}" x2="{x(high):.1f}" y2="{mid:.1f}" stroke="#333" '
                        f'stroke-width="1.5"/>')
        interval = f" [{low:.2f}, {high:.2f}]" if low and high else ""
        body.append(f'<circle class="point" cx="{x(value):.1f}" cy="{mid:.1f}" r="4.5" fill="{CANDIDATE}">'
                    f'<title>{escape(name)}: {value:.2f}{interval}</title></circle>')
    body.append(f'<text x="{width - right}" y="{bottom + 30}" text-anchor="end" fill="#444">{escape(axis)} '
                f'(log scale)</text>')
    return _svg(width, bottom + 36, body, label, "interval-plot")
