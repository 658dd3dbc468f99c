"""pull_request.md: a run's record as the description of a pull request, in the manner of a careful human performance
PR: what got faster and by how much, the profile before and after, one section per commit with its diff, how it was
validated, how to reproduce the measurement, and what the run cost. Records in, markdown out: render.py reads the
run directory and writes the file."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from perfagent.reasons import FINISHED
from perfagent.report.templating import environment
from perfagent.summary import Candidate, Speed, Summary
from perfagent import formats

PULL_REQUEST = "pull_request.md"
TOP = 5  # functions of each profile shown
TITLE_CHARS = 72  # a title longer than this names its first change and counts the rest
PATCH = "/tmp/perfagent.patch"  # where the reproduction steps put the branch's diff (outside the repository)
RULES = {  # what each decision rule demands of a candidate (docs/how-it-works.md, "Speed decision")
    "sequential": "a one-sided t-test on the per-pair log speedups rejects \"no difference\" at a level that keeps the "
                  "false acceptance of identical code below alpha over all looks",
    "paired": "a Wilcoxon signed-rank test rejects \"no difference\" at alpha",
}
_env = environment(autoescape=False, keep_trailing_newline=True)


def _line(value) -> str:
    return next((part.strip() for part in str(value or "").splitlines() if part.strip()), "")


def _text(value, limit: int = 0) -> str:
    """One line of free text (a model's summary, a rejection's detail) safe in a table cell: GitHub would take `|` for
    a cell border and `<module>` for an HTML tag."""
    return formats.shorten(_line(value), limit).replace("|", "\\|").replace("<", "&lt;")


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "not recorded"
    minutes, rest = divmod(round(seconds), 60)
    return f"{seconds:.1f} s" if seconds < 120 else f"{minutes} min {rest} s"


def _fence(text) -> str:
    """A code fence longer than any run of backticks inside `text` (a diff of a markdown file may hold one)."""
    return "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", str(text or ""))), default=0))


def _pairs(record: dict) -> str:
    """Any dict (a verdict's "memory", say) as `key: value` items, whatever its keys."""
    return ", ".join(f"{key}: {f'{value:.4g}' if isinstance(value, float) else value}" for key, value in record.items())


_env.filters.update(text=_text, interval=lambda speed: formats.interval(speed, "not timed"),
                    comparison=lambda speed: formats.comparison(speed) if speed else "not timed",
                    duration=_duration, fence=_fence, pairs=_pairs, pct=lambda value: formats.share(value, "-"),
                    p=lambda speed: formats.p_value(speed["p_value"], prefix=False) if speed else "",
                    p_value=formats.p_value, plural=formats.plural, noise=formats.noise, medians=formats.medians)


def _title(kept: list[Candidate], speed: Speed | None, summary: Summary) -> str:
    parts = [_line(c.summary).rstrip(".") for c in kept]
    what = formats.shorten("; ".join(parts), TITLE_CHARS)
    if len(parts) > 1 and what.endswith("…"):
        more = f" and {formats.plural(len(parts) - 1, 'more change')}"
        what = formats.shorten(parts[0], TITLE_CHARS - len(more)) + more
    what = _text(what)
    objective = summary.settings.get("objective") or "time"
    if speed:  # under another objective than time, the branch's speedup may well be near 1
        gain = "faster" if objective == "time" else f"speed, objective {objective}"
        return f"perf: {what} ({speed.speedup:.2f}x {gain})"
    return f"perf: {what} (the run was {summary.status}: no measurement of the branch as a whole)"


def _workload(summary: Summary) -> str:
    """The workload as a reader types it: its file relative to the repository, or the command."""
    file, repo = summary.workload_file, summary.repo
    if file:
        return Path(file).relative_to(repo).as_posix() if Path(file).is_relative_to(repo) else file
    return summary.settings.get("workload") or summary.workload


def _reproduce(summary: Summary, kept: list[Candidate], workload: str) -> list[str]:
    """Shell lines that validate the branch's whole change again as one candidate (`oracle:PATCH` replays it as the
    model's one reply), with this run's tests and decision settings."""
    base = summary.base_commit
    tip, repo, settings = summary.final_commit or kept[-1].commit, summary.repo, summary.settings
    command = [shlex.join(["perfagent", "optimize", ".", "--workload", workload, "--model", f"oracle:{PATCH}",
                           "--max-iterations", "1"])]
    command += [shlex.join(["--tests", test]) for test in settings.get("tests") or []]
    python = settings.get("python")
    if python and Path(python).is_relative_to(repo):  # the project's own venv: the same path for a reviewer
        command.append(shlex.join(["--python", Path(python).relative_to(repo).as_posix()]))
    rule = [f"--set {key.replace('_', '-')}={settings[key]}" for key in ("decision_rule", "alpha", "min_effect")
            if settings.get(key) is not None]
    command += [" ".join(rule)] if rule else []
    return [f"git diff {base[:12]} {tip[:12]} > {PATCH}",
            f"git checkout {base[:12]}   # perfagent works from HEAD: the base of this pull request",
            " \\\n    ".join(command),
            "git checkout -   # back to where you were"]


def _note(summary: Summary, speed: Speed | None) -> str:
    """How a run that did not finish ended, and what its record therefore lacks."""
    status = summary.status
    if status == FINISHED:
        return ""
    why = summary.error or summary.stop_reason
    note = f"This run ended as `{status}`" + (f" ({_text(why, 200).rstrip(':')})" if why else "")
    return note + (": the branch was not measured as a whole against its base." if not speed else ".")


def markdown(summary: Summary, before: dict | None, after: dict | None, hotspots: list[dict]) -> str:
    """pull_request.md for a run that kept a commit (render.proposes): `summary` is its record, `before` and `after`
    its profiles (None when not recorded), `hotspots` the rows of the functions on top before and after (render's
    hotspot rows)."""
    kept, final = summary.kept, summary.final
    speed = final.speed if final else None
    workload = _workload(summary)
    settings = summary.settings
    return _env.get_template("pull_request.md.j2").render(
        s=summary, title=_title(kept, speed, summary), note=_note(summary, speed), workload=workload,
        kept=kept, rejected=[c for c in summary.candidates if not c.kept], speed=speed, final=final,
        before=before, after=after, hotspots=hotspots, settings=settings, rule=RULES.get(settings.get("decision_rule")),
        baseline=summary.baseline, tests=summary.tests, tests_run=summary.tests_run or [], llm=summary.llm,
        reproduce=_reproduce(summary, kept, workload))
