"""report.html: one self-contained page (inline SVG and CSS, no scripts, nothing fetched) for an optimize run, a batch
or an evaluation, rendered from the files they leave in their output folder; also the run's profiles as speedscope
JSON (`profile-*.speedscope.json`, next to py-spy's raw stacks) and its pull request description (`pull_request.md`)."""
from __future__ import annotations

import json
from pathlib import Path

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from perfagent.runs.outputs import BATCH_RESULTS, EVALUATION, EVALUATION_REPORT, LEDGER, row_key, row_label, \
    summarize
from perfagent.report.flamegraph import REPOSITORY, STDLIB, SWATCHES, THIRD_PARTY, WORKLOAD, PathMapper, frame_tree, \
    flame_svg, load_profile, speedscope
from perfagent.report.plots import BASELINE, CANDIDATE, interval_plot, strip_plot
from perfagent.report.pull_request import PULL_REQUEST, TOP, markdown
from perfagent.report.templating import environment
from perfagent import formats
from perfagent.record import read_jsonl, write_json
from perfagent.summary import Candidate, RecordError, Samples, Summary

REPORT = "report.html"
_env = environment(autoescape=True)
_formatter = HtmlFormatter(style="friendly", cssclass="diff")


class ReportError(ValueError):
    pass


def _read(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is damaged ({exc}): it is not the JSON perfagent wrote") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} is damaged (a JSON {type(data).__name__}, not an object): it is not what perfagent "
                          f"wrote")
    return data


_env.filters.update(ms=formats.seconds, interval=formats.interval, pct=formats.share, p_value=formats.p_value,
                    plural=formats.plural, comparison=formats.comparison, medians=formats.medians,
                    noise=formats.noise, expert_reach=formats.expert_reach)


def _diff(text: str | None) -> Markup:
    return Markup(highlight(text, DiffLexer(), _formatter)) if text else Markup("")


# -- an optimize run ------------------------------------------------------------------------------------------------
def _profiles(run: Path, summary: Summary) -> dict[str, dict]:
    """Every profile of the run: its ranking, a speedscope file written next to its raw stacks, and for the profiles
    before and after a flame graph."""
    rankings = {p.name.removesuffix(".json"): _read(p) for p in sorted(run.glob("profile-*.json"))
                if not p.name.endswith(".speedscope.json")}
    known = sorted({h["file"] for r in rankings.values() for h in r["hotspots"]})
    workload = summary.workload_file
    out = {}
    for name, ranking in rankings.items():
        entry = {"ranking": ranking, "svg": None}
        raw = run / f"{name}.raw"
        if raw.is_file():
            stacks = load_profile(raw, PathMapper(summary.repo, known, workload))
            write_json(run / f"{name}.speedscope.json", speedscope(stacks, f"{summary.run_id} {name}"))
            if name in ("profile-before", "profile-after"):
                entry["svg"] = Markup(flame_svg(frame_tree(stacks), title=f"flame graph {name}"))
            entry["speedscope"] = f"{name}.speedscope.json"
        out[name] = entry
    return out


def _hotspot_rows(before: dict | None, after: dict | None, time_before: float | None,
                  time_after: float | None, limit: int = 12) -> list[dict]:
    """The top functions before (and those that became top after), their shares before and after, and the time per
    call they account for (share x workload time)."""
    if not before:
        return []
    old = {h["key"]: h for h in before["hotspots"]}
    new = {h["key"]: h for h in (after or {}).get("hotspots", [])}
    keys = [h["key"] for h in before["hotspots"][:limit]]
    keys += [k for k in list(new)[:5] if k not in keys]
    rows = []
    for key in keys:
        b, a = old.get(key), new.get(key)
        h = b or a
        row = {"function": h["qualname"], "where": f"{h['file']}:{h['start']}-{h['end']}",
               "self_before": b and b["self_share"], "cum_before": b and b["cum_share"],
               "self_after": (a["self_share"] if a else 0.0) if after else None,
               "cum_after": (a["cum_share"] if a else 0.0) if after else None}
        row["ms_before"] = row["cum_before"] * time_before if time_before and b else None
        row["ms_after"] = row["cum_after"] * time_after if time_after and after else None
        if row["ms_before"] and row["ms_after"] is not None:
            row["change"] = row["ms_after"] / row["ms_before"] - 1
        rows.append(row)
    return rows


def _samples_svg(samples: Samples | None, candidate: str, width: int = 620) -> Markup | None:
    if not samples or not samples.baseline:
        return None
    return Markup(strip_plot([("baseline", samples.baseline, BASELINE), (candidate, samples.candidate, CANDIDATE)],
                             label=f"timing samples: baseline vs {candidate}", width=width))


def _candidate_plot(c: Candidate) -> Markup:
    return (c.verdict and _samples_svg(c.verdict.samples, f"candidate {c.n}", 500)) or Markup("")


_env.filters.update(diff_html=_diff, samples_plot=_candidate_plot)


def _summary(path: Path) -> Summary | None:
    """A run's record, refused when it is of another format or does not fit the model."""
    data = _read(path)
    try:
        return None if data is None else Summary.read(data, path)
    except RecordError as exc:
        raise ReportError(str(exc)) from None


def run_context(run: Path) -> dict:
    summary = _summary(run / "summary.json")
    profiles = _profiles(run, summary)
    final, baseline = summary.final, summary.baseline
    speed = final.speed if final else None
    time_before = speed.base_median if speed else baseline.workload_seconds if baseline else None
    time_after = speed.cand_median if speed else None
    before, after = profiles.get("profile-before"), profiles.get("profile-after")
    return {
        "kind": "run", "s": summary, "speed": speed, "baseline": baseline, "time_before": time_before,
        "time_after": time_after, "llm": summary.llm, "candidates": summary.candidates,
        "tests_run": summary.tests_run or [], "before": before, "after": after,
        "others": [n for n in profiles if n not in ("profile-before", "profile-after")],
        "speedscope": [p["speedscope"] for p in profiles.values() if p.get("speedscope")],
        "hotspots": _hotspot_rows(before and before["ranking"], after and after["ranking"], time_before,
                                  time_after),
        "final_plot": _samples_svg(final.samples if final else None, "final"),
        "legend": [(SWATCHES[kind], text) for kind, text in (
            (REPOSITORY, "the repository's code"), (WORKLOAD, "the workload"), (STDLIB, "standard library"),
            (THIRD_PARTY, "installed packages, other"))],
    }


# -- batch and evaluate ---------------------------------------------------------------------------------------------
def evaluation_context(folder: Path) -> dict | None:
    rows = read_jsonl(folder / EVALUATION)
    if not rows:
        return None
    report = _read(folder / EVALUATION_REPORT) or {}
    rows = list({row_key(r): r for r in rows}.values())  # the last line of each task (or skipped record) counts
    order = [row_key(r) for r in report.get("tasks", [])]
    rows = sorted(rows, key=lambda r: order.index(row_key(r)) if row_key(r) in order else len(order))
    summary = summarize(rows)
    plot_rows = [(row_label(r), r["ratio"], r.get("ratio_ci_low"), r.get("ratio_ci_high")) for r in rows
                 if r.get("ratio")]
    references = [(1.0, "expert")]
    if summary["harmonic_mean_ratio"]:
        references.append((summary["harmonic_mean_ratio"], f"harmonic mean {summary['harmonic_mean_ratio']:.2f}"))
    return {"rows": rows, "summary": summary, "gold": report.get("gold"), "mode": report.get("mode"),
            "plot": Markup(interval_plot(plot_rows, references=references, axis="speedup ratio = speedup / expert",
                                         label="speedup ratios"))}


def batch_context(out: Path) -> dict:
    rows = []
    for result in read_jsonl(out / BATCH_RESULTS):
        run = out / "tasks" / result["instance_id"] / "run"
        summary = _summary(run / "summary.json")
        link = None
        if summary:
            report = run / REPORT
            if not report.exists() or report.stat().st_mtime < (run / "summary.json").stat().st_mtime:
                write_report(run)  # tasks' reports are written once, not on every render of the batch's
            link = report.relative_to(out).as_posix()
        rows.append({**result, "speed": summary.final.speed if summary and summary.final else None, "link": link,
                     "cost": ((result.get("llm") or {}).get("cost_usd"))})
    plot_rows = [(r["instance_id"], r["speed"]["speedup"], r["speed"]["ci_low"], r["speed"]["ci_high"])
                 for r in rows if r["speed"]]
    evaluations = [(p.parent.name, evaluation_context(p.parent)) for p in sorted(out.glob(f"*/{EVALUATION}"))]
    return {"kind": "batch", "rows": rows, "spend": _read(out / LEDGER) or {},
            "plot": Markup(interval_plot(plot_rows, references=[(1.0, "no change")],
                                         axis="speedup of the task's branch", label="speedups")),
            "evaluations": [(name, ev) for name, ev in evaluations if ev]}


# -- entry point ----------------------------------------------------------------------------------------------------
def _kind(folder: Path) -> str:
    """What `folder` holds: "run", "evaluation" or "batch"."""
    if not folder.is_dir():
        raise ReportError(f"{folder} does not exist or is not a folder")
    if (folder / "summary.json").is_file():
        return "run"
    if (folder / EVALUATION).is_file():
        return "evaluation"
    if (folder / BATCH_RESULTS).is_file():
        return "batch"
    raise ReportError(f"{folder} is not a perfagent output folder: expected summary.json (perfagent optimize "
                      f"--out), {BATCH_RESULTS} (perfagent batch --out) or {EVALUATION} (perfagent evaluate --out)")


def _write(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def pull_request(run: Path) -> str:
    """A run directory's pull request description (pull_request.md), from its records alone."""
    run = Path(run)
    kind = _kind(run)
    if kind != "run":
        raise ReportError(f"{run} is the output folder of {'an' if kind == 'evaluation' else 'a'} {kind}: the "
                          f"markdown pull request is for a run directory (perfagent optimize --out, or a batch "
                          f"task's tasks/<id>/run)")
    summary = _summary(run / "summary.json")
    if not proposes(summary):
        raise ReportError(f"the run in {run} kept no commit: it has no pull request to describe (its report.html "
                          f"says what was tried)")
    before, after = _read(run / "profile-before.json"), _read(run / "profile-after.json")
    return markdown(summary, before, after, _hotspot_rows(before, after, None, None, limit=TOP))


def proposes(summary: Summary) -> bool:
    """A run has a pull request to describe when a commit of its is on its branch."""
    return bool(summary.kept)


def write_report(folder: Path) -> Path:
    """Render `folder`/report.html from an optimize run directory (also its pull_request.md), a batch output or an
    evaluation output."""
    folder = Path(folder)
    kind = _kind(folder)
    if kind == "run":
        context = run_context(folder)
    elif kind == "batch":
        context = batch_context(folder)
    else:
        context = {"kind": "evaluation", "ev": evaluation_context(folder)}
    html = _env.get_template("report.html.j2").render(**context, title=folder.resolve().name,
                                                      folder=str(folder.resolve()),
                                                      diff_css=Markup(_formatter.get_style_defs(".diff")))
    path = _write(folder / REPORT, html)
    if kind == "run" and proposes(context["s"]):
        _write(folder / PULL_REQUEST, pull_request(folder))
    return path
