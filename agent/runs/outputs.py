"""What batch and evaluate leave in their output folders: the files' names, and pure helpers on evaluation rows.

Light on purpose: report rendering reads these folders through this module alone, without the optimize loop, the
model layer or git (tests/test_report.py checks that nothing imports them).
"""
from __future__ import annotations

import statistics

import numpy as np

# perfagent batch --out
PREDICTIONS = "predictions.jsonl"  # SWE-fficiency's format; a task is done once its line is here
BATCH_RESULTS = "results.jsonl"  # one row per finished task: status, accepted patches, speedup, spend, error
LEDGER = "spend.json"  # model calls and cost of the whole batch (the shared budget's ledger)
BAD_RECORDS = "bad_records.json"  # task-file records that failed validation
# perfagent evaluate --out
EVALUATION = "evaluation.jsonl"  # one row per evaluated task and per skipped task-file record
EVALUATION_REPORT = "report.json"  # the rows in task-file order, and their summary

# a row's apply_method when only GNU patch applied it: the value of perfagent.repos.repositories.PATCH_FUZZ, not
# imported from there because that module loads git (tests/test_report.py checks that the two agree)
PATCH_FUZZ = "patch --fuzz"


def summarize(rows: list[dict]) -> dict:
    """SWE-fficiency's aggregate: the harmonic mean of speedup ratios over tasks. Tasks that ended in an error and
    task-file records skipped as invalid have no ratio: they are left out of the mean, and counted."""
    scored = [r for r in rows if r.get("ratio")]
    skipped = [r for r in rows if r.get("skipped")]
    applied = [r for r in rows if r.get("applied")]
    ratios = np.array([r["ratio"] for r in scored])
    reaches = [r for r in scored if (r.get("ratio_ci_high") or r["ratio"]) >= 1.0]
    return {"tasks": len(rows), "scored": len(scored), "errors": len(rows) - len(scored) - len(skipped),
            "skipped": len(skipped), "applied": len(applied),
            "applied_by_fallback": sum(r.get("apply_method") == PATCH_FUZZ for r in applied),
            "tests_passed": sum(bool(r.get("tests_passed")) for r in rows),
            "harmonic_mean_ratio": float(statistics.harmonic_mean(ratios)) if len(ratios) else None,
            "at_or_above_expert": len(reaches) / len(scored) if scored else None,
            # scored as correct, as SWE-fficiency scores them, with a gain that does not hold beyond the benchmark's
            # own situation (first calls in a process, a variant of setup())
            "not_general": sum(r.get("general") is False for r in scored)}


def row_label(row: dict) -> str:
    """A row's name in tables: its instance_id, or for a skipped record without one its line in the task file."""
    return row.get("instance_id") or f"line {row.get('line')}"


def row_key(row: dict) -> tuple:
    """Tells rows apart: a skipped record by its line (its id may be missing, or a duplicate of a valid task's)."""
    return ("skipped", row.get("line")) if row.get("skipped") else ("task", row["instance_id"])
