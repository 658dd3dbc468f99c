"""pytest plugin loaded into the target's test runs (stdlib and pytest only).

Writes {node id: outcome} to $PERFAGENT_TEST_REPORT, exact ids included, and, under `coverage run`, switches coverage's
dynamic context to the running test's node id, so each covered line knows which tests reached it.
"""
import json
import os

_outcomes = {}
_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def _record(nodeid, outcome):
    if _RANK[outcome] >= _RANK.get(_outcomes.get(nodeid), -1):
        _outcomes[nodeid] = outcome


def pytest_runtest_setup(item):
    if os.environ.get("PERFAGENT_COVERAGE_CONTEXT"):
        import coverage

        cov = coverage.Coverage.current()
        if cov is not None:
            cov.switch_context(item.nodeid)


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        outcome = report.outcome if report.when == "call" or report.outcome == "skipped" else "error"
        _record(report.nodeid, outcome)


def pytest_collectreport(report):
    if report.failed:
        _record(f"<collect> {report.nodeid}", "error")


def pytest_sessionfinish(session):
    path = os.environ.get("PERFAGENT_TEST_REPORT")
    if path:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(_outcomes, f)
        os.replace(path + ".tmp", path)
