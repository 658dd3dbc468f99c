"""Memory in the verdict: the harness's memory mode at every isolation level here, a candidate rejected for its peak
memory under objective time, and objective memory deciding on peaks with time as the limit. Real runs; only the model
is scripted."""
import json
import sys
from dataclasses import replace

import numpy as np
import pytest

from perfagent.loop.memory import NOT_SLOWER, SLOWER, time_not_worse
from perfagent.measure.stats import Timing
from perfagent.measure.workload import Workload, WorkloadRunner
from perfagent.sandbox import isolation
from perfagent.config import Settings
from tests.conftest import make_repo, scripted_session, search_replace
from tests.test_optimize import CORE, UNIQUE_BODY, invoke

MIB = 1 << 20
HERE = [level for level in isolation.LEVELS if isolation.available(level)]

KNOWN_ALLOCATION = """
import numpy as np


def setup():
    global size
    size = 8 << 20


def workload():
    block = bytearray(size)
    block[::4096] = b"\\1" * (size // 4096)  # every page touched, so RSS holds it too
    table = np.ones(1 << 19)  # 4 MiB through numpy's allocator, which reports to tracemalloc
    return len(block) + len(table)
"""


@pytest.mark.parametrize("level", HERE)
def test_memory_mode_measures_a_known_allocation(tmp_path, level):
    repo = make_repo(tmp_path / "r", {"wl.py": KNOWN_ALLOCATION})
    runner = WorkloadRunner(Workload.parse("wl.py", repo), sys.executable, tmp_path,
                            Settings().limits(timeout_s=60, isolation=isolation.choose(level)))
    memory = runner.memory(repo)
    assert 12 * MIB <= memory.peak <= 12 * MIB + 256 * 1024  # 8 MiB + 4 MiB, and a few small objects
    if level == "landlock":  # Landlock grants no writes under /proc: the RSS peak cannot be reset there
        assert memory.rss is None
    else:
        assert 11 * MIB <= memory.rss <= 20 * MIB
    assert not [e for e in runner.behaviour(repo) if e.kind == "write"], "resetting its own RSS peak is no write"


@pytest.mark.parametrize("slowdown, decision", [(1.0, NOT_SLOWER), (0.8, NOT_SLOWER), (1.25, SLOWER)])
def test_objective_memory_judges_time_by_non_inferiority(slowdown, decision):
    """Equal or better time passes the margin 1 / (1 + min-effect); 25% slower is beyond 1 / 1.1. The stats come back
    in the candidate's own terms (speedup = baseline / candidate time)."""
    rng = np.random.default_rng(7)

    def value(scale: float) -> Timing:
        wall = scale * float(np.exp(rng.normal(0, 0.02)))
        return Timing(wall, wall)

    rule = replace(Settings(min_effect=0.1, max_samples=20).sampling(), noise_floor=0.02)
    stats, _, cand = time_not_worse(lambda loops: value(1.0), lambda loops: value(slowdown), rule, lambda s: None, (1,))
    assert stats.decision == decision and stats.n_base <= 10
    assert stats.ci_low < 1 / slowdown < stats.ci_high
    assert np.median([c.wall for c in cand]) == pytest.approx(slowdown, rel=0.05)


# faster (a set), and a 40 MiB table kept in a module global from the first call on
HOARDING = search_replace(CORE, f"def unique_sorted(items):\n{UNIQUE_BODY}",
                          "_TABLE = []\n\n\ndef unique_sorted(items):\n    if not _TABLE:\n"
                          "        _TABLE.append(bytes(40 << 20))\n    return sorted(set(items))",
                          "Use a set, with a scratch table kept for later calls.")


def test_a_faster_candidate_with_a_large_cache_uses_too_much_memory(warm_repo, tmp_path):
    args = ("optimize", warm_repo, "-w", "bench.py", "--max-iterations", "1")
    code, output = invoke(*args, "-m", scripted_session(tmp_path / "s.json", [HOARDING]), "--out", tmp_path / "strict")
    assert code == 1, output
    summary = json.loads((tmp_path / "strict" / "summary.json").read_text())
    base = summary["baseline"]["memory"]
    assert 0 < base["peak_bytes"] < 8 * MIB
    [candidate] = summary["candidates"]
    verdict = candidate["verdict"]
    assert verdict["reason"] == "uses too much memory" and verdict["speed"] is None  # never timed
    memory = verdict["memory"]
    assert memory["baseline_peak_bytes"] == base["peak_bytes"]
    assert memory["candidate_peak_bytes"] >= 40 * MIB and memory["growth"] > 5
    assert "max-memory-growth 1.5" in verdict["detail"] and "the baseline's" in verdict["detail"]
    assert all(isinstance(v, (int, float)) or v is None for v in memory.values())

    code, output = invoke(*args, "-m", scripted_session(tmp_path / "s2.json", [HOARDING]), "--out", tmp_path / "loose",
                          "--set", "max-memory-growth=1000")
    assert code == 0, output
    [candidate] = json.loads((tmp_path / "loose" / "summary.json").read_text())["candidates"]
    memory = candidate["verdict"]["memory"]
    assert candidate["verdict"]["reason"] == "accepted" and memory["growth"] > 5
    assert set(memory) == {"baseline_peak_bytes", "candidate_peak_bytes", "growth", "rss_baseline_bytes",
                           "rss_candidate_bytes"}


CHUNKS = "mylib/chunks.py"
CHUNKS_LIB = {
    "mylib/__init__.py": "",
    CHUNKS: """\
        def residue_total(n):
            values = [i % 7 for i in range(n)]
            return sum(values)
        """,
    "tests/test_chunks.py": """\
        from mylib.chunks import residue_total


        def test_residue_total():
            assert residue_total(10) == 0 + 1 + 2 + 3 + 4 + 5 + 6 + 0 + 1 + 2
        """,
    "bench.py": """\
        from mylib.chunks import residue_total


        def setup():
            pass


        def workload():
            return residue_total(1_000_000)
        """,
    "pyproject.toml": """\
        [tool.perfagent]
        profile-seconds = 0.5
        sample-seconds = 0.1
        max-samples = 20
        candidate-timeout-s = 8
        """,
}
BODY = "    values = [i % 7 for i in range(n)]\n    return sum(values)"
SAME_MEMORY = search_replace(CHUNKS, BODY, "    residues = [i % 7 for i in range(n)]\n    return sum(residues)",
                             "Rename the list.")
# half the list, and the other half's sum in closed form (whole weeks of 0..6, then a partial week): half the peak,
# and clearly not slower, so the time check cannot turn on the machine's noise
HALF_MEMORY = search_replace(CHUNKS, BODY, "    half = n // 2\n    values = [i % 7 for i in range(half)]\n"
                             "    weeks, rest = divmod(n, 7)\n    half_weeks, half_rest = divmod(half, 7)\n"
                             "    return (sum(values) + (weeks - half_weeks) * 21 + rest * (rest - 1) // 2\n"
                             "            - half_rest * (half_rest - 1) // 2)",
                             "Half the list; the other half's sum in closed form.")


def test_objective_memory_accepts_half_the_peak_when_time_is_not_worse(tmp_path):
    repo = make_repo(tmp_path / "chunks", CHUNKS_LIB)
    code, output = invoke("optimize", repo, "-w", "bench.py", "--objective", "memory", "--max-iterations", "2",
                          "--set", "min-effect=0.25", "-m",
                          scripted_session(tmp_path / "s.json", [SAME_MEMORY, HALF_MEMORY]), "--out", tmp_path / "run")
    assert code == 0, output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    same, half = summary["candidates"]
    assert same["verdict"]["reason"] == "no less memory" and same["verdict"]["speed"] is None, same["verdict"]
    assert 0.97 < same["verdict"]["memory"]["growth"] < 1.03
    verdict = half["verdict"]
    assert verdict["reason"] == "accepted", verdict
    memory = verdict["memory"]
    assert 0.4 < memory["growth"] < 0.6 and memory["growth_ci_high"] < 1 / 1.25 and memory["pairs"] >= 3
    assert memory["baseline_peak_bytes"] > 7 * MIB
    speed = verdict["speed"]  # time: not worse than 1 / (1 + min-effect), significantly
    assert speed["decision"] == "not slower" and speed["ci_low"] >= 1 / 1.25
    assert len(verdict["samples"]["memory_baseline"]) == memory["pairs"]
    assert "memory" in summary["settings"]["objective"]


def test_objective_memory_needs_a_workload_file(small_repo, tmp_path):
    code, output = invoke("optimize", small_repo, "-w", f"{sys.executable} -c 'print(1)'", "--objective", "memory",
                          "-m", scripted_session(tmp_path / "s.json", []), "--out", tmp_path / "run")
    assert code == 2 and "objective memory needs a workload file" in output, output
