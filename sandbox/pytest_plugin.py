"""pytest plugin loaded into the target's test runs (stdlib and pytest only).

Appends one JSON line per event to $PERFAGENT_TEST_REPORT as it happens, so a run that is killed (a timeout) still
tells which tests finished and which one was running: {"start": node id, "t": time}, {"test": node id, "outcome":
passed / failed / error / skipped, "seconds": duration}, and for a file that cannot be collected {"test": "<collect>
path", "outcome": "error", "detail": pytest's message}. Tests named in $PERFAGENT_DESELECT are left out, and the
tests of the last file named on the command line run last (a candidate's canary, sandbox/canary.py). Under
`coverage run` it also switches coverage's dynamic context
to the running test's node id, so each covered line knows which tests reached it.
"""
import json
import os
import time
from pathlib import Path

import pytest

_report = None


def _write(event):
    global _report
    path = os.environ.get("PERFAGENT_TEST_REPORT")
    if not path:
        return
    if _report is None:
        _report = open(path, "a", encoding="utf-8")
    _report.write(json.dumps(event) + "\n")
    _report.flush()


@pytest.hookimpl(trylast=True)  # after any plugin that shuffles the order
def pytest_collection_modifyitems(config, items):
    """Leave out the tests named in $PERFAGENT_DESELECT (one node id a line): tests that do not count, such as ones
    failing at baseline, must not stop a run that ends at the first failure. Then run the last file named on the
    command line last, its tests in their order: a canary's test that must fail ends the run even when a folder
    named before it holds it."""
    path = os.environ.get("PERFAGENT_DESELECT")
    if path:
        with open(path, encoding="utf-8") as f:
            unwanted = set(f.read().splitlines())
        kept = [item for item in items if item.nodeid not in unwanted]
        if len(kept) < len(items):
            config.hook.pytest_deselected(items=[item for item in items if item.nodeid in unwanted])
            items[:] = kept
    if config.args:
        last = Path(config.invocation_params.dir, config.args[-1].split("::", 1)[0])
        tail = [item for item in items if item.path == last]
        items[:] = [item for item in items if item.path != last] + sorted(tail, key=lambda i: i.location[1] or 0)


def pytest_runtest_logstart(nodeid, location):
    _write({"start": nodeid, "t": time.time()})


def pytest_runtest_setup(item):
    if os.environ.get("PERFAGENT_COVERAGE_CONTEXT"):
        import coverage

        cov = coverage.Coverage.current()
        if cov is not None:
            cov.switch_context(item.nodeid)


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        outcome = report.outcome if report.when == "call" or report.outcome == "skipped" else "error"
        _write({"test": report.nodeid, "outcome": outcome, "seconds": report.duration})


def pytest_collectreport(report):
    if report.failed:
        _write({"test": f"<collect> {report.nodeid}", "outcome": "error", "detail": report.longreprtext[-3000:]})
