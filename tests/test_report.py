"""report.html and speedscope export from a real `perfagent optimize` run (real git, pytest, py-spy and sandboxed
timing; only the model is scripted), checked as rendered by headless Chromium."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfagent.cli import app
from perfagent.report.flamegraph import PathMapper, flame_svg, frame_tree, read_stacks
from tests.browser import assert_shown, open_page, screenshot
from tests.conftest import SMALL_LIB, make_repo, scripted_session, search_replace
from tests.test_optimize import CORE, GOOD

ROOT = Path(__file__).resolve().parent.parent
SPLIT = search_replace(CORE, '    return [w for w in re.split(r"\\W+", text.lower()) if w]',
                       "    return text.lower().split()", "Split on whitespace.")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    """One optimize run: a rejected candidate (tests fail), then an accepted one."""
    tmp = tmp_path_factory.mktemp("report")
    repo = make_repo(tmp / "small", SMALL_LIB)
    out = tmp / "run"
    done = subprocess.run([sys.executable, "-m", "perfagent", "optimize", str(repo), "-w", "bench.py", "-m",
                           scripted_session(tmp / "s.json", [SPLIT, GOOD]), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


def test_optimize_writes_a_self_contained_report(run):
    out, stdout = run
    assert f"report: {out / 'report.html'}" in stdout
    html = (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
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


def test_report_in_headless_chromium(run, tmp_path):
    out, _ = run
    with open_page(out / "report.html") as (page, errors, requests):
        assert_shown(page, ".card.headline", count=5)
        assert_shown(page, "svg.flamegraph", count=2, min_width=800, min_height=60)
        assert page.locator("svg.flamegraph g.frame.repository").count() >= 6
        assert page.locator("svg.flamegraph g.frame.stdlib").count() >= 1
        assert "unique_sorted" in page.locator("svg.flamegraph").first.text_content()
        assert_shown(page, "svg.samples-plot", count=2, min_width=400, min_height=60)  # final and the accepted one
        assert page.locator(".accepted-patch svg.samples-plot circle.sample").count() == 2 * json.loads(
            (out / "summary.json").read_text())["candidates"][1]["verdict"]["speed"]["n_base"]
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
    probe = ("import sys, perfagent.report.render; print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('git', 'litellm') or m.split('.')[:2] in (['perfagent', 'loop'], ['perfagent', 'model'])))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
    from perfagent.repos.repositories import PATCH_FUZZ
    from perfagent.runs import outputs

    assert outputs.PATCH_FUZZ == PATCH_FUZZ  # the value rows record, kept in outputs without importing git
