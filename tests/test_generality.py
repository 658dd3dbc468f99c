"""Gains that hold beyond the benchmark's own situation (measure/generality.py): a gain that the first call after
setup() in a fresh process does not show comes from results kept from call to call, and is rejected unless allowed."""
import sys

import pytest

from perfagent.loop.verdict import Judge, Reference
from perfagent.measure.generality import CARRIED_PAIRS, carried_across_calls, undecided
from perfagent.measure.stats import Timing
from perfagent.measure.workload import Workload, WorkloadRunner
from perfagent.sandbox import isolation
from perfagent.config import Settings
from tests.conftest import make_repo
from tests.test_integrity import BENCH, WORK, _crunch

LAZY = WORK.replace("    def crunch(n):\n", "    _TABLE = []\n\n\n    def crunch(n):\n        if not _TABLE:  # built once "
                    "per process, by the unmodified code too\n            _TABLE.extend(i * i for i in range(100_000))"
                    "\n")
MEMO = _crunch('''
    memo = globals().setdefault("_memo", {})
    if n not in memo:  # setup() builds an equal input before every call: every call after the first is a lookup
        memo[n] = sum(i * i % 7 for i in range(n))
    return memo[n]
''')
HALVED = LAZY.replace("        total = 0\n        for i in range(n):\n            total += i * i % 7\n",
                      "        cycle = [i * i % 7 for i in range(7)]\n        total = n // 7 * sum(cycle) + "
                      "sum(cycle[:n % 7])\n")


def _judge(tmp_path, base_work: str, work: str, **settings):
    base = make_repo(tmp_path / "base", {"mylib/__init__.py": "", "mylib/work.py": base_work, "bench.py": BENCH})
    limits = Settings().limits(timeout_s=120, isolation=isolation.choose("auto"))
    runner = WorkloadRunner(Workload.parse("bench.py", base), sys.executable, tmp_path, limits)
    results, seconds = runner.results(base)
    runner.calibrate(base, 0.1)
    ref = Reference(base, set(), results, seconds, {}, set(), digests=runner.sequence(base))
    candidate = make_repo(tmp_path / "candidate", {"mylib/__init__.py": "", "mylib/work.py": work, "bench.py": BENCH})
    short = Settings(max_samples=8)
    return Judge(runner, sys.executable, tmp_path / "tests", short.sampling(), (10,), "bench.py", 60.0,
                 short.max_memory_growth, **settings).judge(candidate, ref, [])


def test_a_cache_across_calls_is_rejected(tmp_path):
    verdict = _judge(tmp_path, WORK, MEMO)
    assert verdict.reason == "gain comes from caching results across calls", verdict.detail
    assert "the first call after setup() in a fresh process" in verdict.detail


def test_a_cache_across_calls_is_accepted_when_allowed(tmp_path):
    verdict = _judge(tmp_path, WORK, MEMO, allow_cross_call_caching=True)
    assert verdict.reason == "accepted" and "carried across calls, as allowed" in verdict.detail, verdict.detail


def test_a_speedup_beside_a_one_time_cost_is_not_a_cache(tmp_path):
    """The unmodified code builds a table on its first call in a process; the candidate keeps that and makes the
    per-call work faster: first calls save what the others save, in seconds (not the same ratio)."""
    verdict = _judge(tmp_path, LAZY, HALVED)
    assert verdict.reason == "accepted", verdict.detail
    assert "carried" not in verdict.detail


def _value(wall: float, first: float) -> Timing:
    return Timing(wall, wall, first=first, calls=10)


@pytest.mark.parametrize("base, cand, carried", [
    ([_value(0.02, 0.02)] * 3, [_value(0.0001, 0.02)] * 3, True),  # every call after the first is a lookup
    ([_value(0.02, 0.03)] * 3, [_value(0.01, 0.02)] * 3, False),  # 10 ms saved on first and later calls alike
    ([_value(0.02, 0.02)] * 3, [_value(0.01, 0.01)] * 3, False),  # the same ratio
    ([_value(0.02, 0.02), _value(0.02, 0.02)], [_value(0.01, 0.02), _value(0.01, 0.01)], False),  # not significant
    ([Timing(0.02, 0.02, first=0.02)] * 3, [Timing(0.0001, 0.0001, first=0.02)] * 3, False),  # one-call values
])
def test_carried_across_calls_compares_the_seconds_first_calls_save(base, cand, carried):
    assert (carried_across_calls(base, cand) is not None) == carried


def test_first_calls_that_lean_towards_a_carried_gain_get_more_pairs():
    leaning = [_value(0.02, 0.025), _value(0.02, 0.015), _value(0.02, 0.024)], \
        [_value(0.005, 0.02), _value(0.005, 0.014), _value(0.005, 0.012)]
    assert carried_across_calls(*leaning) is None and undecided(*leaning)
    honest = [_value(0.02, 0.022)] * 3, [_value(0.01, 0.012)] * 3
    assert not undecided(*honest)  # honest code costs no more pairs
    base, cand = (leaning[0] * 3)[:CARRIED_PAIRS], (leaning[1] * 3)[:CARRIED_PAIRS]
    assert not undecided(base, cand)  # no more than CARRIED_PAIRS
