"""report.html and speedscope export from a real `perfagent optimize` run (real git, pytest, py-spy and sandboxed
timing; only the model is scripted), checked as rendered by headless Chromium."""
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfagent.cli import app
from perfagent.report.flamegraph import PathMapper, flame_svg, frame_tree, read_stacks
from perfagent.formats import OWN_VALUES, p_value
from perfagent.record import RunRecord
from perfagent.report.render import pull_request, write_report
from perfagent.report.templating import environment
from perfagent.summary import FORMAT_VERSION, RecordError, Summary
from tests.browser import assert_shown, open_page, screenshot
from tests.conftest import SMALL_LIB, make_repo, read_summary, scripted_session, search_replace
from tests.test_optimize import CORE, GOOD

pytestmark = pytest.mark.xdist_group("test_report")  # one worker: its module fixture is a whole optimize run


ROOT = Path(__file__).resolve().parent.parent
SPLIT = search_replace(CORE, '    return [w for w in re.split(r"\\W+", text.lower()) if w]',
                       "    return text.lower().split()", "Split on whitespace.")


@pytest.fixture(scope="module")
def run(tmp_path_factory, shared_cache) -> tuple[Path, str]:
    """One optimize run: a rejected candidate (tests fail), then an accepted one (its baseline shared as warm_repo's
    is)."""
    tmp = tmp_path_factory.mktemp("report")
    repo = make_repo(tmp / "small", SMALL_LIB, fixed=True)
    out = tmp / "run"
    done = subprocess.run([sys.executable, "-m", "perfagent", "optimize", str(repo), "-w", "bench.py", "-m",
                           scripted_session(tmp / "s.json", [SPLIT, GOOD]), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200", "XDG_CACHE_HOME": str(shared_cache)})
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


def test_optimize_writes_a_self_contained_report(run):
    out, stdout = run
    assert f"report: {out / 'report.html'}" in stdout
    html = (out / "report.html").read_text()
    summary = read_summary(out)
    assert [c["verdict"]["reason"] for c in summary["candidates"]] == ["tests failed", "accepted"]
    speed = summary["final"]["speed"]
    assert f"{speed['speedup']:.2f}x" in html and f"[{speed['ci_low']:.2f}, {speed['ci_high']:.2f}]" in html
    assert "Use a set to deduplicate." in html and "Split on whitespace." in html
    assert "test_tokens" in html, "the rejection's detail"
    for absent in ("<script", "<link", "src=", "@import", "url("):  # nothing to fetch, nothing to run
        assert absent not in html, absent
    assert len(html) < 200_000
    # before/after hotspot rows: unique_sorted was the top function and lost most of its share
    row = html[html.index('<td class="mono">unique_sorted</td>'):].split("</tr>")[0]
    assert "mylib/core.py:17-22" in row and int(re.findall(r"([+-]\d+)%</td>", row)[-1]) < -50


def test_speedscope_export(run):
    out, _ = run
    for raw in sorted(out.glob("profile-*.raw")):
        exported = json.loads(raw.with_suffix(".speedscope.json").read_text())
        assert exported["$schema"] == "https://www.speedscope.app/file-format-schema.json"
        frames = exported["shared"]["frames"]
        [profile] = exported["profiles"]
        assert profile["type"] == "sampled" and len(profile["samples"]) == len(profile["weights"])
        below_harness = sum(int(line.rpartition(" ")[2]) for line in raw.read_text().splitlines()
                            if ";perfagent_profiled_workload (" in line)
        assert sum(profile["weights"]) == below_harness == profile["endValue"] > 0
        assert all(0 <= i < len(frames) for stack in profile["samples"] for i in stack)
        # samples in the harness's loop between workload() calls have an empty stack (speedscope's root)
        assert all(frames[stack[0]]["name"] == "workload" for stack in profile["samples"] if stack)
        assert all(set(f) == {"name", "file", "line"} for f in frames)
        files = {f["file"] for f in frames}
        assert "mylib/core.py" in files and "bench.py" in files, "repository files are repository-relative"
        assert not any("perfagent-" in f or "harness.py" in f for f in files), files


def test_report_command_rerenders_and_rejects_other_folders(run, tmp_path):
    out, _ = run
    (out / "report.html").unlink()
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").stat().st_size > 10_000
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a perfagent output folder: expected summary.json" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_optimize_writes_a_pull_request(run):
    """pull_request.md holds the evidence a reviewer needs, each figure as summary.json has it."""
    out, stdout = run
    assert f"pull request: {out / 'pull_request.md'}" in stdout
    text = (out / "pull_request.md").read_text()
    summary = read_summary(out)
    final = summary["final"]["speed"]
    assert text.startswith(f"# perf: Use a set to deduplicate ({final['speedup']:.2f}x faster)\n")
    assert f"(95% CI {final['ci_low']:.2f}x to {final['ci_high']:.2f}x, {p_value(final['p_value'])})" in text
    assert f"| **branch** | all of the above, against `{summary['base_commit'][:12]}` | **{interval(final)}** |" in text
    _, kept = summary["candidates"]
    speed = kept["verdict"]["speed"]
    commit = kept["commit"][:10]
    assert f"| `{commit}` | Use a set to deduplicate. | {interval(speed)} | {p_value(speed['p_value'], False)} |" in text
    assert f"- **Speedup (against the commit before it):** {interval(speed)}, {p_value(speed['p_value'])}" in text
    assert "- **Functions changed:** `mylib.core:unique_sorted`" in text
    assert "```diff\n--- a/mylib/core.py\n" in text and "\n+    return sorted(set(items))\n```" in text
    before, after = ({h["qualname"]: h for h in json.loads((out / f"profile-{name}.json").read_text())["hotspots"]}
                     .get("unique_sorted", {"self_share": 0.0, "cum_share": 0.0}) for name in ("before", "after"))
    row = text[text.index("| `unique_sorted` | `mylib/core.py:17-22` |"):].split("\n")[0]
    assert row.endswith(f"| {before['self_share']:.1%} | {after['self_share']:.1%} | {before['cum_share']:.1%} | "
                        f"{after['cum_share']:.1%} |"), row
    assert "| 1 | Split on whitespace. | tests failed | 1 test failed (the run stops at the first failure): " \
           "tests/test_core.py::test_tokens |" in text
    assert "- **Decision rule:** `sequential`, alpha = 0.01, min-effect = 0.03:" in text
    assert f"- **Isolation:** {summary['isolation']}." in text
    assert f"git diff {summary['base_commit'][:12]} {summary['final_commit'][:12]} > /tmp/perfagent.patch" in text
    assert "perfagent optimize . --workload bench.py --model oracle:/tmp/perfagent.patch --max-iterations 1" in text
    llm = summary["llm"]
    assert f"{llm['calls']} model calls to `{summary['model']}`, {llm['prompt_tokens']} + " \
           f"{llm['completion_tokens']} tokens, $0.0000; wall time {summary['elapsed_s']:.1f} s" in text


def test_times_stand_beside_their_own_comparison(run):
    """Ratios lead; an absolute time appears only beside the comparison that measured it, labelled as its values'
    median (two comparisons time the same code at different speeds of the machine); the headline's times are the
    final measurement's; the noise has one name and p-values read as a person writes them."""
    out, stdout = run
    summary = read_summary(out)
    final, (_, kept) = summary["final"]["speed"], summary["candidates"]
    text = (out / "pull_request.md").read_text()
    timed = [line for line in text.splitlines() if re.search(r"\d ms\b", line)]
    assert timed and all(OWN_VALUES in line for line in timed), timed
    headline = text.split("\n\n")[1]
    assert f"{final['base_median'] * 1000:.3g} ms → {final['cand_median'] * 1000:.3g} ms ({OWN_VALUES})" in headline
    speed = kept["verdict"]["speed"]
    mine = f"{speed['base_median'] * 1000:.3g} ms → {speed['cand_median'] * 1000:.3g} ms ({OWN_VALUES})"
    assert f"{speed['n_base']} pairs; {mine}" in text and "each is given only beside its own comparison" in text
    html = unescape(re.sub(r"<[^>]+>", "", (out / "report.html").read_text()))
    assert f"original vs final branch, {final['n_base']} pairs ({OWN_VALUES})" in html
    assert f"{speed['n_base']} pairs against the code before it: {mine}" in html
    narration = "\n".join(line for line in stdout.splitlines() if line.startswith(("  ", "baseline", "hotspots")))
    for page in (text, html, narration):  # the console's summary table is the CLI's own
        assert not re.search(r"\d(\.\d+)?e[-+]\d", page), "p-values as a person writes them"
        assert "samples vary" not in page and "baseline spread" not in page and "timing noise" in page
    # the console: the baseline's one call said to be a first look; the verdicts carry their own comparison
    assert re.search(r"baseline: one workload\(\) call took [\d.]+ ms \(a first look, not a timing value\); each "
                     r"timing value is the lower quartile of \d+ calls? (\(short\) or \d+ calls \(long\) )?in a fresh "
                     r"process", stdout), stdout
    assert f"  accepted: {interval(speed)}, {p_value(speed['p_value'])}, {speed['n_base']} pairs; {mine}" in stdout
    assert "  tests failed: 1 test failed (the run stops at the first failure)" in stdout
    assert re.search(r"hotspots, best first: 1\. unique_sorted \(self \d+%\), 2\. ", stdout), stdout


def interval(speed: dict) -> str:
    return f"{speed['speedup']:.2f}x [{speed['ci_low']:.2f}, {speed['ci_high']:.2f}]"


def test_report_prints_the_pull_request_as_markdown(run, tmp_path):
    out, _ = run
    result = CliRunner().invoke(app, ["report", str(out), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (out / "pull_request.md").read_text()
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "results.jsonl").write_text("")
    for folder, error in ((tmp_path / "batch", "is the output folder of a batch: the markdown pull request is for a "
                                              "run directory"),
                          (tmp_path, "is not a perfagent output folder"), (tmp_path / "missing", "does not exist")):
        result = CliRunner().invoke(app, ["report", str(folder), "--format", "markdown"])
        assert result.exit_code == 2 and result.stdout == "", result.output
        assert error in " ".join(result.stderr.split()), result.stderr
    result = CliRunner().invoke(app, ["report", str(out), "--format", "pdf"])
    assert result.exit_code == 2 and "pdf" in result.stderr


def test_a_batch_report_writes_each_task_pull_request(run, tmp_path):
    """Rendering a batch's report writes each task's report.html and pull_request.md where its run record is."""
    out, _ = run
    batch, task_run = tmp_path / "batch", tmp_path / "batch" / "tasks" / "t-1" / "run"
    shutil.copytree(out, task_run, ignore=shutil.ignore_patterns("report.html", "pull_request.md"))
    (batch / "results.jsonl").write_text(json.dumps({"instance_id": "t-1", "status": "finished", "accepted": 1}))
    write_report(batch)
    assert (task_run / "report.html").is_file()
    assert (task_run / "pull_request.md").read_text() == (out / "pull_request.md").read_text()


# a run's record as RunRecord starts it: what a run cut short before its baseline leaves
HEADER = {"format_version": FORMAT_VERSION, "status": "interrupted", "run_id": "r1", "repo": "/r", "branch": None,
          "base_commit": "b" * 40, "workload": "bench.py", "workload_file": None, "model": "scripted:s.json",
          "settings": {}, "isolation": "none", "machine": {"cpu": "a CPU", "cores": 2, "load_at_start": 0.5,
                                                           "python": "3.11.9", "platform": "Linux"},
          "baseline": None, "candidates": [], "final": None, "llm": None}


@pytest.mark.foreign_records
@pytest.mark.parametrize("version", [None, FORMAT_VERSION + 1])
def test_a_record_of_another_format_is_refused_with_what_to_do(tmp_path, version):
    record = {"status": "finished", "run_id": "r1", "candidates": [], "final": None, "llm": None, "baseline": None}
    (tmp_path / "summary.json").write_text(json.dumps({**record, "format_version": version}))
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and not (tmp_path / "report.html").exists(), result.output
    said = " ".join(result.output.split())
    assert f"this perfagent reads format_version {FORMAT_VERSION}" in said and "run it again" in said, said


@pytest.mark.foreign_records
@pytest.mark.parametrize("change, named", [
    ({"run_id": None}, "run_id: field required"),  # None: left out
    ({"stop_reson": "done"}, "stop_reson: extra inputs are not permitted"),
    ({"candidates": [{"n": 1, "summary": "x", "verdict": {"reason": "accepted", "sped": None}}]},
     "candidates.0.verdict.sped: extra inputs are not permitted"),
    ({"machine": {**HEADER["machine"], "cores": "two"}}, "machine.cores: input should be a valid integer"),
])
def test_a_record_that_does_not_fit_the_model_is_refused_naming_the_field(tmp_path, change, named):
    record = {k: v for k, v in {**HEADER, **change}.items() if v is not None or k not in change}
    (tmp_path / "summary.json").write_text(json.dumps(record))
    for args in (["report", str(tmp_path)], ["report", str(tmp_path), "--format", "markdown"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and not (tmp_path / "report.html").exists(), result.output
        said = " ".join(result.output.split())
        assert f"is not a run record of format_version {FORMAT_VERSION}: {named}" in said, said


def test_the_record_is_validated_as_it_is_written(tmp_path):
    """A writer's misspelt field fails the write at once; the record on disk stays the last one that fit."""
    header = {k: v for k, v in HEADER.items() if k in ("run_id", "repo", "branch", "base_commit", "workload",
                                                       "workload_file", "model", "settings", "isolation")}
    record = RunRecord(tmp_path, **header)
    record.update(stop_reason="done")
    with pytest.raises(RecordError, match="stop_reson: extra inputs are not permitted"):
        record.update(stop_reson="done")
    written = read_summary(tmp_path)
    assert written["stop_reason"] == "done" and "stop_reson" not in written
    assert written["machine"]["load_max"] >= written["machine"]["load_at_start"]


def test_templates_read_the_record_strictly():
    """A template's misspelt field of the record raises, where Jinja would render an empty string."""
    summary = Summary.read(HEADER, "summary.json")
    template = environment(autoescape=False).from_string
    assert template("{{ s.status }} {{ s.machine.cores }} {{ s.final.speed }}").render(s=summary) == "interrupted 2 "
    with pytest.raises(AttributeError, match="stop_reson"):
        template("{{ s.stop_reson }}").render(s=summary)
    with pytest.raises(AttributeError, match="core"):
        template("{{ s.machine.core }}").render(s=summary)


def test_a_run_records_its_format_and_machine(run):
    summary = read_summary(run[0])
    assert summary["format_version"] == FORMAT_VERSION
    machine = summary["machine"]
    assert machine["cores"] == os.cpu_count() and machine["python"] == platform.python_version()
    assert machine["cpu"] and 0 <= machine["load_at_start"] <= machine["load_max"]
    assert summary["isolation"] and summary["baseline"]["noise"]["pair_spread"] >= 0


def test_pull_request_of_an_interrupted_run(tmp_path):
    """A run cut short before its baseline has no pull request (nothing is on its branch), and writing its report
    writes none; one with a commit but no final measurement renders, with a candidate never timed and text that
    markdown would misread."""
    (tmp_path / "summary.json").write_text(json.dumps(HEADER))
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--format", "markdown"])
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert f"the run in {tmp_path} kept no commit: it has no pull request to describe" in " ".join(
        result.stderr.split())
    assert CliRunner().invoke(app, ["report", str(tmp_path)]).exit_code == 0
    assert (tmp_path / "report.html").exists() and not (tmp_path / "pull_request.md").exists()
    fence = "```"
    kept = {"n": 2, "summary": "Cache the <module> table", "commit": "c0ffee" * 7, "functions": ["m:f"],
            "diff": f"--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n {fence}\n+x\n",
            "verdict": {"reason": "accepted", "speed": None, "memory": {"peak_mib": 1.25, "growth": None}}}
    untimed = {"n": 1, "summary": "a | b", "verdict": {"reason": "tests failed", "detail": "\n\nE  a|b <x>\nmore"}}
    partial = {**HEADER, "workload_file": "/r/bench.py", "error": "Terminated", "candidates": [untimed, kept],
               "settings": {"tests": ["tests/t.py"], "python": "/r/.venv/bin/python"}}
    (tmp_path / "summary.json").write_text(json.dumps(partial))
    text = pull_request(tmp_path)
    assert text.startswith("# perf: Cache the &lt;module> table (the run was interrupted: no measurement of the branch "
                           "as a whole)\n")
    assert "the branch was not measured as a whole against its base" in text
    assert "- **Speedup:** not timed\n" in text and "- **Memory:** peak_mib: 1.25, growth: None\n" in text
    assert "\n````diff\n--- a/README.md\n" in text and "\n+x\n````\n" in text, "a fence longer than the diff's"
    assert "| 1 | a \\| b | tests failed | E  a\\|b &lt;x> |" in text
    assert "perfagent optimize . --workload bench.py --model oracle:/tmp/perfagent.patch --max-iterations 1 \\\n" \
           "    --tests tests/t.py \\\n    --python .venv/bin/python\n" in text
    assert f"git diff bbbbbbbbbbbb {'c0ffee' * 2} > /tmp/perfagent.patch" in text


def test_report_in_headless_chromium(run, tmp_path):
    out, _ = run
    with open_page(out / "report.html") as (page, errors, requests):
        assert_shown(page, ".card.headline", count=5)
        assert_shown(page, "svg.flamegraph", count=2, min_width=800, min_height=60)
        assert page.locator("svg.flamegraph g.frame.repository").count() >= 6
        assert page.locator("svg.flamegraph g.frame.stdlib").count() >= 1
        assert "unique_sorted" in page.locator("svg.flamegraph").first.text_content()
        assert_shown(page, "svg.samples-plot", count=2, min_width=400, min_height=60)  # final and the accepted one
        assert page.locator(".accepted-patch svg.samples-plot circle.sample").count() == 2 * read_summary(out)["candidates"][1]["verdict"]["speed"]["n_base"]
        assert_shown(page, ".accepted-patch .diff", count=1, min_height=60)
        assert "return sorted(set(items))" in page.locator(".accepted-patch .diff").inner_text()
        assert_shown(page, "#hotspots table tr", min_height=15)
        rejected = page.locator("details.rejected")
        assert rejected.count() == 1 and not rejected.locator("pre.detail").is_visible()  # collapsed
        rejected.locator("summary").click()
        assert_shown(page, "details.rejected pre.detail", count=1)
        assert_shown(page, "details.rejected .diff", count=1)
        screenshot(page, tmp_path / "report-run.png")
    assert errors == []
    assert requests == [(out / "report.html").resolve().as_uri()]
    assert (tmp_path / "report-run.png").stat().st_size > 50_000


RAW = """\
<module> (/h/harness.py:9);main (/h/harness.py:5);setup (/repo/bench.py:3) 50
<module> (/h/harness.py:9);perfagent_profiled_workload (/h/harness.py:7);workload (/repo/bench.py:8);\
f (/tmp/perfagent-x/branch/pkg/m.py:4);sorted (/usr/lib/python3.11/functools.py:10) 600
<module> (/h/harness.py:9);perfagent_profiled_workload (/h/harness.py:7);workload (/repo/bench.py:8);\
f (/tmp/perfagent-x/branch/pkg/m.py:5) 396
<module> (/h/harness.py:9);perfagent_profiled_workload (/h/harness.py:7);workload (/repo/bench.py:8);\
tiny (/venv/lib/python3.11/site-packages/dep/x.py:1) 4
"""


def test_flame_graph_keeps_the_workload_and_prunes_slivers():
    stacks = read_stacks(RAW, PathMapper("/repo", ["pkg/m.py"]))
    assert sum(count for _, count in stacks) == 1000, "setup() is left out"
    root = frame_tree(stacks)
    [workload] = root.children.values()
    f = workload.children[("f", "pkg/m.py")]
    assert (f.count, f.kind, dict(f.lines)) == (996, "repository", {4: 600, 5: 396})
    assert workload.children[("tiny", "/venv/lib/python3.11/site-packages/dep/x.py")].kind == "third-party"
    assert f.children[("sorted", "/usr/lib/python3.11/functools.py")].kind == "stdlib"
    svg = flame_svg(root)
    assert svg.count("<g class=\"frame") == 4 and "tiny" not in svg, "0.4% is below the 0.5% cut"
    assert "<title>f (pkg/m.py:4, 5)\n996 samples, 99.6%</title>" in svg


def test_flame_graph_of_deep_recursion_is_cut():
    deep = "perfagent_profiled_workload (/h.py:1);" + ";".join(f"fib (/repo/m.py:{i % 3 + 1})" for i in range(900))
    stacks = read_stacks(f"{deep} 10\n", PathMapper("/repo", []))
    assert len(stacks[0][0]) == 900 and stacks[0][0][0].file == "m.py"
    assert flame_svg(frame_tree(stacks), max_depth=100).count("<g class=\"frame") == 101


def test_reports_render_from_the_records_alone():
    """Rendering reads what a run, batch or evaluation wrote, through perfagent.runs.outputs: it never loads the
    optimize loop, the model layer (litellm) or git, so a report renders wherever the records are."""
    probe = ("import sys, perfagent.report.pull_request, perfagent.report.render; print(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('git', 'litellm') or m.split('.')[:2] in (['perfagent', 'loop'], "
             "['perfagent', 'model'])))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    from perfagent.repos.repositories import PATCH_FUZZ
    from perfagent.runs import outputs

    assert outputs.PATCH_FUZZ == PATCH_FUZZ  # the value rows record, kept in outputs without importing git
