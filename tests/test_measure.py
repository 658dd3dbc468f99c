"""The speed decision on synthetic samples with known answers, and the interleaved sampler."""
from dataclasses import replace

import numpy as np
import pytest

from sandbox.measure import FASTER, NOT_FASTER, UNDECIDED, Sampling, compare_speed, relative_spread, speed_stats


def _samples(median, rel_noise, n, seed):
    rng = np.random.default_rng(seed)
    return list(median * (1 + rel_noise * rng.standard_normal(n)))


def test_clear_speedup_is_accepted_with_interval_around_truth():
    base, cand = _samples(1.0, 0.02, 20, 1), _samples(0.5, 0.02, 20, 2)
    s = speed_stats(base, cand)
    assert s.decision == FASTER and s.p_value < 1e-6
    assert s.ci_low <= 2.0 <= s.ci_high and 1.9 < s.speedup < 2.1


def test_identical_code_is_not_accepted():
    accepted = sum(speed_stats(_samples(1.0, 0.03, 15, i), _samples(1.0, 0.03, 15, 1000 + i)).decision == FASTER
                   for i in range(50))
    assert accepted == 0


def test_slower_candidate_is_not_faster():
    s = speed_stats(_samples(1.0, 0.01, 15, 3), _samples(1.3, 0.01, 15, 4))
    assert s.decision == NOT_FASTER and s.speedup < 0.8 and s.p_value > 0.5


def test_real_but_tiny_gain_is_below_the_minimum_effect():
    """1% faster with 0.1% noise: significant, but below the 3% minimum effect -> rejected, not accepted."""
    s = speed_stats(_samples(1.0, 0.001, 20, 5), _samples(0.99, 0.001, 20, 6), min_effect=0.03)
    assert s.p_value < 0.01 and s.decision == NOT_FASTER


def test_noise_leaves_the_question_open():
    s = speed_stats(_samples(1.0, 0.3, 10, 7), _samples(0.9, 0.3, 10, 8))
    assert s.decision == UNDECIDED
    assert s.base_spread > 0.2


def test_relative_spread():
    assert relative_spread([1, 1, 1, 1]) == 0
    assert relative_spread([1, 2, 3, 4, 5]) == pytest.approx(2 / 3)


def test_sampler_interleaves_and_stops_early_when_clear():
    order = []

    def base():
        order.append("A")
        return 1.0 + 0.001 * len(order)

    def cand():
        order.append("B")
        return 0.5 + 0.001 * len(order)

    stats, b, c = compare_speed(base, cand, Sampling(min_samples=8, max_samples=30, warmup=1))
    assert stats.decision == FASTER and len(b) == len(c) == 8
    body = "".join(order[2:])  # after the warm-up pair
    assert body == "ABBA" * 4  # alternating order cancels linear drift


def test_sampler_collects_more_when_undecided_up_to_the_cap():
    rng = np.random.default_rng(0)
    stats, b, c = compare_speed(lambda: 1 + 0.3 * rng.standard_normal(), lambda: 0.97 + 0.3 * rng.standard_normal(),
                                Sampling(min_samples=6, max_samples=16, step=5))
    assert len(b) == len(c) == 16 and stats.decision == UNDECIDED


def test_pairing_cancels_phase_swings():
    """The machine alternates between a fast and a 1.6x slower phase lasting several samples; both members of a pair
    share the phase. A 10% speedup is resolved by the paired rule and drowned for the unpaired one."""
    rng = np.random.default_rng(11)
    phase = np.repeat(rng.choice([1.0, 1.6], size=8), 4)  # 32 pairs, phases of 4 pairs
    noise = lambda: 1 + 0.01 * rng.standard_normal(32)  # noqa: E731
    base, cand = phase * noise(), phase * noise() / 1.10
    paired = speed_stats(base, cand, test="paired")
    unpaired = speed_stats(base, cand, test="mannwhitney")
    assert paired.decision == FASTER and paired.ci_low <= 1.10 <= paired.ci_high
    assert unpaired.decision == UNDECIDED


def test_unknown_test_is_an_error():
    with pytest.raises(ValueError, match="paired"):
        speed_stats([1, 2, 3], [1, 2, 3], test="t-test")


def test_noise_estimate():
    from sandbox.measure import measure_noise

    rng = np.random.default_rng(3)
    phase = np.repeat(rng.choice([1.0, 1.6], size=10), 4)
    quiet = measure_noise(phase * (1 + 0.01 * rng.standard_normal(40)), phase * (1 + 0.01 * rng.standard_normal(40)),
                          max_samples=40)
    loud = measure_noise(1 + 0.2 * rng.standard_normal(40), 1 + 0.2 * rng.standard_normal(40), max_samples=40)
    assert quiet.sample_spread > 0.3, "phases make single samples vary a lot"
    assert quiet.pair_spread < 0.03 and quiet.resolvable < 1.02, "but pairs cancel them"
    assert loud.pair_spread > 0.15 and loud.resolvable > 1.1


SEQUENTIAL = Sampling(test="sequential", min_samples=5, max_samples=40, step=5, warmup=0)


def _pairs(speedup, rel_noise, seed, heavy=False):
    """Sample functions of a baseline and a candidate `speedup` times faster, each value with its own noise."""
    rng = np.random.default_rng(seed)
    draw = (lambda: rng.standard_t(3)) if heavy else rng.standard_normal
    return (lambda: 1.0 * np.exp(rel_noise * draw())), (lambda: np.exp(rel_noise * draw()) / speedup)


@pytest.mark.parametrize("speedup, decision", [(2.0, FASTER), (0.5, NOT_FASTER)])
def test_sequential_rule_decides_a_large_effect_at_the_first_look(speedup, decision):
    assert SEQUENTIAL.looks == 8
    for seed in range(20):
        stats, b, _ = compare_speed(*_pairs(speedup, 0.05, seed), SEQUENTIAL)
        assert stats.decision == decision and len(b) == 5, (seed, stats)


def test_sequential_rule_takes_more_pairs_for_a_small_effect():
    """10% faster with 5% noise per value: decided, but later than 2x; 4% (just over the 3% minimum) needs every
    look and stays open."""
    used = [len(compare_speed(*_pairs(1.10, 0.05, seed), SEQUENTIAL)[1]) for seed in range(20)]
    decided = [compare_speed(*_pairs(1.10, 0.05, seed), SEQUENTIAL)[0].decision for seed in range(20)]
    assert decided == [FASTER] * 20 and min(used) > 5
    stats, b, _ = compare_speed(*_pairs(1.04, 0.05, 0), SEQUENTIAL)
    assert len(b) == 40 and stats.decision == UNDECIDED


def test_sequential_rule_false_acceptance_under_the_null():
    """Identical code, 1000 fixed seeds, heavy-tailed noise (t with 3 degrees of freedom, the harder case for a t
    bound), and no minimum effect to hide behind: alpha = 1% spread over 8 looks bounds the rate by 1% (7 in 1000
    here; 4 with normal noise)."""
    rule = replace(SEQUENTIAL, min_effect=0.0)
    accepted = sum(compare_speed(*_pairs(1.0, 0.05, seed, True), rule)[0].decision == FASTER for seed in range(1000))
    assert accepted / 1000 <= 0.01
