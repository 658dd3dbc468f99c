"""The speed decision on synthetic samples with known answers, and the interleaved sampler."""
from dataclasses import replace

import numpy as np
import pytest

from perfagent.config import Settings
from perfagent.measure.stats import (FASTER, NOT_FASTER, UNDECIDED, compare_rotation, compare_speed,
                                     relative_spread, sequential_level, sequential_stats, speed_stats, value_ladder)

DEFAULTS = Settings()
RULE = {"alpha": DEFAULTS.alpha, "min_effect": DEFAULTS.min_effect}  # the paired rule's settings, as optimize's


def _samples(median, rel_noise, n, seed):
    rng = np.random.default_rng(seed)
    return list(median * (1 + rel_noise * rng.standard_normal(n)))


def test_clear_speedup_is_accepted_with_interval_around_truth():
    base, cand = _samples(1.0, 0.02, 20, 1), _samples(0.5, 0.02, 20, 2)
    s = speed_stats(base, cand, **RULE)
    assert s.decision == FASTER and s.p_value < 1e-6
    assert s.ci_low <= 2.0 <= s.ci_high and 1.9 < s.speedup < 2.1


def test_identical_code_is_not_accepted():
    accepted = sum(speed_stats(_samples(1.0, 0.03, 15, i), _samples(1.0, 0.03, 15, 1000 + i), **RULE).decision == FASTER
                   for i in range(50))
    assert accepted == 0


def test_slower_candidate_is_not_faster():
    s = speed_stats(_samples(1.0, 0.01, 15, 3), _samples(1.3, 0.01, 15, 4), **RULE)
    assert s.decision == NOT_FASTER and s.speedup < 0.8 and s.p_value > 0.5


def test_real_but_tiny_gain_is_below_the_minimum_effect():
    """1% faster with 0.1% noise: significant, but below the 3% minimum effect -> rejected, not accepted."""
    s = speed_stats(_samples(1.0, 0.001, 20, 5), _samples(0.99, 0.001, 20, 6), alpha=DEFAULTS.alpha, min_effect=0.03)
    assert s.p_value < 0.01 and s.decision == NOT_FASTER


def test_noise_leaves_the_question_open():
    s = speed_stats(_samples(1.0, 0.3, 10, 7), _samples(0.9, 0.3, 10, 8), **RULE)
    assert s.decision == UNDECIDED
    assert s.base_spread > 0.2


def test_relative_spread():
    assert relative_spread([1, 1, 1, 1]) == 0
    assert relative_spread([1, 2, 3, 4, 5]) == pytest.approx(2 / 3)


def test_sampler_interleaves_and_stops_early_when_clear():
    order = []

    def base(loops):
        order.append("A")
        return 1.0 + 0.001 * len(order)

    def cand(loops):
        order.append("B")
        return 0.5 + 0.001 * len(order)

    stats, b, c = compare_speed(base, cand, Settings(decision_rule="paired", min_samples=8, max_samples=30).sampling())
    assert stats.decision == FASTER and len(b) == len(c) == 8
    body = "".join(order[2:])  # after the warm-up pair
    assert body == "ABBA" * 4  # alternating order cancels linear drift


def test_sampler_collects_more_when_undecided_up_to_the_cap():
    rng = np.random.default_rng(0)
    stats, b, c = compare_speed(lambda _: 1 + 0.3 * rng.standard_normal(),
                                lambda _: 0.97 + 0.3 * rng.standard_normal(),
                                replace(DEFAULTS.sampling(), test="paired", min_samples=6, max_samples=16, step=5))
    assert len(b) == len(c) == 16 and stats.decision == UNDECIDED


def test_pairing_cancels_phase_swings():
    """The machine alternates between a fast and a 1.6x slower phase lasting several samples; both members of a pair
    share the phase. A 10% speedup is resolved by the paired rule and drowned for the unpaired one."""
    rng = np.random.default_rng(11)
    phase = np.repeat(rng.choice([1.0, 1.6], size=8), 4)  # 32 pairs, phases of 4 pairs
    noise = lambda: 1 + 0.01 * rng.standard_normal(32)  # noqa: E731
    base, cand = phase * noise(), phase * noise() / 1.10
    paired = speed_stats(base, cand, test="paired", **RULE)
    unpaired = speed_stats(base, cand, test="mannwhitney", **RULE)
    assert paired.decision == FASTER and paired.ci_low <= 1.10 <= paired.ci_high
    assert unpaired.decision == UNDECIDED


def test_unknown_test_is_an_error():
    with pytest.raises(ValueError, match="paired"):
        speed_stats([1, 2, 3], [1, 2, 3], test="t-test", **RULE)


def test_noise_estimate():
    from perfagent.measure.stats import measure_noise

    rng = np.random.default_rng(3)
    phase = np.repeat(rng.choice([1.0, 1.6], size=10), 4)
    quiet = measure_noise(phase * (1 + 0.01 * rng.standard_normal(40)), phase * (1 + 0.01 * rng.standard_normal(40)),
                          max_samples=40)
    loud = measure_noise(1 + 0.2 * rng.standard_normal(40), 1 + 0.2 * rng.standard_normal(40), max_samples=40)
    assert quiet.sample_spread > 0.3, "phases make single samples vary a lot"
    assert quiet.pair_spread < 0.03 and quiet.resolvable < 1.02, "but pairs cancel them"
    assert loud.pair_spread > 0.15 and loud.resolvable > 1.1


def _pairs(speedup, rel_noise, seed, heavy=False, seen=None, averaging=False):
    """Sample functions of a baseline and a candidate `speedup` times faster, each value with its own noise; `seen`
    collects the loop counts asked for. With `averaging`, a value of more loops is quieter (noise / sqrt(loops / 10)),
    as values of more calls are."""
    rng = np.random.default_rng(seed)
    draw = (lambda: rng.standard_t(3)) if heavy else rng.standard_normal

    def sample(factor):
        def take(loops):
            if seen is not None:
                seen.append(loops)
            scale = (10 / loops) ** 0.5 if averaging else 1.0
            return factor * np.exp(rel_noise * scale * draw())
        return take
    return sample(1.0), sample(1 / speedup)


LADDER = (10, 100)  # short and long values


@pytest.mark.parametrize("speedup, decision", [(2.0, FASTER), (0.5, NOT_FASTER)])
def test_sequential_rule_decides_a_large_effect_early_on_short_values(speedup, decision):
    """2x faster or slower with 5% noise per value: decided within 5 pairs of short values."""
    for seed in range(20):
        seen = []
        stats, b, _ = compare_speed(*_pairs(speedup, 0.05, seed, seen=seen), DEFAULTS.sampling(), ladder=LADDER)
        assert stats.decision == decision and len(b) <= 5 and set(seen) == {10}, (seed, stats)


def test_sequential_rule_lengthens_values_and_takes_more_pairs_for_a_small_effect():
    """10% faster, with 15% noise per short value and a third of that per long one: the short values' 8 pairs
    leave it open, the long ones decide it; 4% (just over the 3% minimum) takes every long look and stays open."""
    for seed in range(20):
        seen = []
        stats, b, _ = compare_speed(*_pairs(1.10, 0.15, seed, seen=seen, averaging=True), DEFAULTS.sampling(),
                                    ladder=LADDER)
        assert stats.decision == FASTER and seen[:16] == [10] * 16 and set(seen[16:]) == {100}, seed
    stats, b, _ = compare_speed(*_pairs(1.04, 0.15, 0, averaging=True), DEFAULTS.sampling(), ladder=LADDER)
    assert len(b) == 40 and stats.decision == UNDECIDED


def test_one_value_length_merges_the_looks():
    """When short and long values are the same loop count, one stage looks at 3, 5, 10, ... pairs."""
    assert value_ladder(1, 1.0, 0.1) == (1,) and value_ladder(200, 1.0, 0.1) == (20, 200)
    assert DEFAULTS.sampling().stages(1)[0].looks == (3, 5, 8, 10, 15, 20, 25, 30, 35, 40)
    seen = []
    stats, b, _ = compare_speed(*_pairs(2.0, 0.01, 0, seen=seen), DEFAULTS.sampling(), ladder=(1,))
    assert stats.decision == FASTER and len(b) == 3 and set(seen) == {1}


@pytest.mark.parametrize("ladder", [LADDER, (1,)])
def test_sequential_rule_false_acceptance_under_the_null(ladder):
    """Identical code, 2000 fixed seeds, heavy-tailed noise (t with 3 degrees of freedom) and no minimum effect to hide
    behind: all looks together accept about alpha = 1% (19 and 20 of 2000 here; 24 and 21 with Gaussian noise, for
    which the level is exact). The bound allows the binomial spread of 2000 trials (a true 1% gives at most 29 in
    97.5% of sets of seeds); unadjusted looks at level alpha accept 91 of 2000."""
    rule = Settings(min_effect=0.0).sampling()
    accepted = sum(compare_speed(*_pairs(1.0, 0.05, seed, True), rule, ladder=ladder)[0].decision == FASTER
                   for seed in range(2000))
    assert accepted <= 29


def _pool(rel_noise, n, seed):
    """The log speedups of `n` pairs of another comparison of the same noise (its gain does not matter)."""
    base, cand = _pairs(3.0, rel_noise, seed + 10_000)
    return tuple(float(np.log(base(1) / cand(1))) for _ in range(n))


def test_pooling_another_comparisons_spread_keeps_false_acceptance_at_alpha():
    """The speed check on a variant of the input pools the spread of the decision's own pairs (8 here): identical
    code on 2000 fixed seeds of Gaussian noise is accepted about alpha = 1% of the time (17 of 2000 here), the same
    bound as the rule alone; the pooled degrees of freedom go into the level."""
    rule = Settings(min_effect=0.0).sampling()
    accepted = sum(compare_speed(*_pairs(1.0, 0.05, seed), replace(rule, pool=_pool(0.05, 8, seed)),
                                 ladder=(1,))[0].decision == FASTER for seed in range(2000))
    assert accepted <= 29


def test_a_pooled_spread_decides_a_clear_gain_at_the_first_look():
    """A 2x gain under 15% noise per value: alone, three pairs' own spread (2 degrees of freedom) seldom decides it
    (15 of 200 sets of seeds here); with the 8 pairs of the decision pooled in, the first look (3 pairs) does in
    180 of 200."""
    rule = Settings(min_effect=0.0).sampling()

    def pairs_taken(seed, pool):
        return len(compare_speed(*_pairs(2.0, 0.15, seed), replace(rule, pool=pool), ladder=(1,))[1])
    alone = [pairs_taken(seed, ()) for seed in range(200)]
    pooled = [pairs_taken(seed, _pool(0.15, 8, seed)) for seed in range(200)]
    assert sum(n == 3 for n in alone) <= 30 and sum(n == 3 for n in pooled) >= 170



def test_a_version_that_must_reach_another_interval_stops_once_it_cannot():
    """Minimal patches keep a smaller version only when its interval reaches the full candidate's (loop/minimal.py).
    A 1.25x version against a full 50x [40, 60], 15% noise per value: on the rule alone it takes 10 to 40 pairs to
    be decided faster (the 1.25x needs them); with `below` at 40 it is "not faster" at the first look, 3 pairs, on
    every seed; a version as fast as the full one never stops there."""
    rule = DEFAULTS.sampling()
    alone = [compare_speed(*_pairs(1.25, 0.15, seed), rule, ladder=(1,)) for seed in range(50)]
    below = [compare_speed(*_pairs(1.25, 0.15, seed), replace(rule, below=40.0), ladder=(1,)) for seed in range(50)]
    assert all(len(b) >= 5 for _, b, _ in alone) and sum(s.decision == FASTER for s, _, _ in alone) >= 40
    assert all(s.decision == NOT_FASTER and len(b) == 3 for s, b, _ in below)
    same = [compare_speed(*_pairs(50.0, 0.15, seed), replace(rule, below=40.0), ladder=(1,))[0] for seed in range(50)]
    assert sum(s.decision == FASTER for s in same) >= 45

def test_sequential_level_spends_alpha_over_the_looks():
    """The nominal level per look lies between Bonferroni's alpha / looks and alpha, and shrinks with more looks."""
    one, two, eight = (sequential_level(looks, 0.01) for looks in [(5,), (5, 10), tuple(range(5, 45, 5))])
    assert one == pytest.approx(0.01, rel=0.05)
    assert 0.005 < two < one and 0.01 / 8 < eight < two


def test_a_few_pairs_that_happen_to_agree_are_not_taken_for_a_quiet_machine():
    """Three pairs from one cluster of identical code's pairs (+5%, nearly equal): the t-test alone accepts them;
    with the baseline's A/A spread as the floor of the spread, the rule keeps looking."""
    base, cand = [1.050, 1.051, 1.049], [1.0, 1.0, 1.0]
    assert sequential_stats(base, cand, level=0.0016, min_effect=DEFAULTS.min_effect).decision == FASTER
    floored = sequential_stats(base, cand, level=0.0016, min_effect=DEFAULTS.min_effect, noise_floor=0.025)
    assert floored.decision == UNDECIDED and floored.ci_low < 1.0 < 1.05 < floored.ci_high


def test_several_candidates_are_timed_in_one_rotation_each_decided_on_its_own():
    """A 2x candidate is decided early and leaves the rotation; an identical one stays until the last look; the
    order of each round rotates, so no side always comes first."""
    rng, order = np.random.default_rng(0), []

    def sampler(name, factor):
        def take(loops):
            order.append(name)
            return factor * np.exp(0.05 * rng.standard_normal())
        return take

    results = compare_rotation(sampler("base", 1.0), [sampler("fast", 0.5), sampler("same", 1.0)],
                               Settings(max_samples=10).sampling(), ladder=(1,))
    (fast, fast_base, _), (same, same_base, _) = results
    assert fast.decision == FASTER and fast.n_base <= 5 and same.decision != FASTER and same.n_base == 10
    assert fast_base == same_base[:len(fast_base)]  # the same baseline values, round by round
    firsts = [order[i] for i in range(0, 9, 3)]  # the first three rounds, three values each
    assert firsts == ["base", "fast", "same"]
    # one candidate: compare_speed's ABBA order exactly
    order.clear()
    compare_rotation(sampler("base", 1.0), [sampler("cand", 0.5)], DEFAULTS.sampling(), ladder=(1,))
    assert order[:4] == ["base", "cand", "cand", "base"]


def test_a_loaded_machine_is_said_from_the_load_or_the_noise_of_long_values():
    from perfagent.measure.load import loaded_note

    assert loaded_note(0.03, load=0.4, cores=2) is None  # quiet: a second's values vary 3%
    busy = loaded_note(None, load=4.0, cores=2)
    assert busy.startswith("the machine is loaded (load 4.0 on 2 cores)") and "too noisy" in busy
    noisy = loaded_note(0.25, load=0.4, cores=2)  # other work that the load average has not caught up with
    assert "timing noise 25%, about 3% on a quiet machine" in noisy
