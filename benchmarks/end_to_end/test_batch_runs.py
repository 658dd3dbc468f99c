"""Batch then evaluate, and a killed batch resumed, end to end through the command line on the bundled example tasks:
slow whole runs (minutes), kept out of the suite (run with `python -m pytest -m end_to_end tests benchmarks/end_to_end`). The suite tests
the phases: tests/test_batch.py (evaluate, its generality checks, bad records, Ray), tests/test_batch_parts.py,
tests/test_bad_input.py (a batch retried on resume, stopped by SIGTERM)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scipy import stats

from perfagent.record import read_jsonl
from tests.browser import assert_shown, open_page, screenshot as save_screenshot
from tests.test_batch import FAST, ROOT, cli, leftovers, task_file
from tests.test_batch import caches  # noqa: F401 (the fixture of the tests here)

SESSIONS = ROOT / "workloads" / "sessions"
BATCH_FAST = [*FAST, "--set", "profile-seconds=1"]
EXECUTORS = ["local", pytest.param("ray", marks=pytest.mark.ray)]
pytestmark = pytest.mark.end_to_end


def marked_processes(mark: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if f"PERFAGENT_TEST_MARK={mark}\0".encode() in (proc / "environ").read_bytes():
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
        except OSError:
            continue
    return found


def test_batch_writes_predictions_that_evaluate_scores(tmp_path, caches):
    """Batch then evaluate, through the local executor; the Ray executor runs the kill test and the gold evaluation."""
    ids = ["perfagent-examples__inventory-2", "perfagent-examples__graphkit-3"]
    tasks = task_file(tmp_path / "tasks.jsonl", ids)
    out = tmp_path / "batch"
    done = cli("batch", str(tasks), "--model", f"scripted:{SESSIONS}", "--out", str(out), "--workers", "2",
               *BATCH_FAST, *caches)
    assert done.returncode == 0, done.stdout + done.stderr
    # not on a terminal: no progress bar, a line per finished task
    assert "ETA" not in done.stderr and sum(f"/2] {i}: finished" in done.stdout for i in ids) == 2

    predictions = read_jsonl(out / "predictions.jsonl")
    assert sorted(p["instance_id"] for p in predictions) == sorted(ids)
    for p in predictions:
        assert set(p) == {"instance_id", "model_patch", "model_name_or_path"}
        assert p["model_patch"].startswith("diff --git") and p["model_name_or_path"] == f"scripted:{SESSIONS}"
    results = {r["instance_id"]: r for r in read_jsonl(out / "results.jsonl")}
    for task_id in ids:
        # each session has one rejected and one correct reply: exactly one commit made it into the patch
        assert results[task_id]["status"] == "finished" and results[task_id]["accepted"] == 1
        trajectory = json.loads((out / "tasks" / task_id / "run" / "trajectory.json").read_text())
        assert [r["purpose"] for r in trajectory if "reply" in r] == ["optimize", "optimize"]
    repo_cache = Path(caches[1])
    assert leftovers(repo_cache) == ([], [])

    html = (out / "report.html").read_text()
    for task_id in ids:  # each task's own report, linked from the batch's
        assert f'href="tasks/{task_id}/run/report.html"' in html
        assert "Accepted patches" in (out / "tasks" / task_id / "run" / "report.html").read_text()

    evaluation = out / "evaluation"  # where batch tells users to put it, so the batch report shows it too
    done = cli("evaluate", str(tasks), "--predictions", str(out / "predictions.jsonl"), "--out", str(evaluation),
               "--pairs", "8", *FAST, *caches)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((evaluation / "report.json").read_text())
    rows = {r["instance_id"]: r for r in report["tasks"]}
    for task_id in ids:
        row = rows[task_id]
        assert row["applied"] and row["tests_passed"] and row["result_unchanged"], row
        assert row["speedup"]["ci_low"] > 1.5 and row["expert"]["ci_low"] > 1.5
        assert row["ratio"] == pytest.approx(row["speedup"]["speedup"] / row["expert"]["speedup"])
    assert report["summary"]["harmonic_mean_ratio"] == pytest.approx(stats.hmean([r["ratio"] for r in rows.values()]))
    assert "harmonic mean speedup ratio" in done.stdout
    assert leftovers(repo_cache) == ([], [])
    assert_reports_show_the_evaluation(out, evaluation, report)


def assert_reports_show_the_evaluation(out: Path, evaluation: Path, report: dict) -> None:
    hmean = f"harmonic mean {report['summary']['harmonic_mean_ratio']:.2f}"
    assert hmean in (evaluation / "report.html").read_text()
    done = cli("report", str(out))  # re-rendered: now with the evaluation
    assert done.returncode == 0, done.stdout + done.stderr
    with open_page(out / "report.html") as (page, errors, requests):
        assert_shown(page, "svg.interval-plot", count=2, min_width=400, min_height=60)  # speedups, ratios
        assert page.locator("svg.interval-plot circle.point").count() == 4
        assert hmean in page.locator("svg.interval-plot").nth(1).text_content()
        assert_shown(page, "table.evaluation tr", count=3, min_height=15)
        save_screenshot(page, out.parent / "report-batch.png")
    assert errors == [] and requests == [(out / "report.html").resolve().as_uri()]


@pytest.mark.parametrize("executor", EXECUTORS)
def test_killed_batch_resumes_and_does_every_task_once(tmp_path, caches, executor):
    ids = ["perfagent-examples__inventory-1", "perfagent-examples__graphkit-2"]
    tasks = task_file(tmp_path / "tasks.jsonl", ids)
    out = tmp_path / "batch"
    args = [sys.executable, "-m", "perfagent", "batch", str(tasks), "--model", f"scripted:{SESSIONS}", "--out",
            str(out), "--executor", executor, "--max-iterations", "1", *BATCH_FAST, *caches]
    mark = {**os.environ, "PERFAGENT_TEST_MARK": str(tmp_path)}  # inherited by every process the batch starts
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=mark)
    deadline = time.monotonic() + 600
    while len(read_jsonl(out / "predictions.jsonl")) < 1 and first.poll() is None:
        assert time.monotonic() < deadline, "no task finished in time"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)  # no chance to clean up: the rerun must cope
    first.wait(60)
    killed_done = len(read_jsonl(out / "predictions.jsonl"))
    assert 1 <= killed_done < len(ids)

    second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900, env=mark)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"resuming: {killed_done} of {len(ids)} tasks already done" in second.stdout
    predictions = [p["instance_id"] for p in read_jsonl(out / "predictions.jsonl")]
    assert sorted(predictions) == sorted(ids)  # each exactly once
    deadline = time.monotonic() + 60
    while marked_processes(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert marked_processes(str(tmp_path)) == []  # the killed batch's workers died with it
    assert leftovers(Path(caches[1])) == ([], [])
