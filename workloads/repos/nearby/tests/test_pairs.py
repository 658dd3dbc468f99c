import pytest

from nearby import close_pairs, neighbour_counts, random_samples


def brute_force(values, radius):
    return sum(1 for i in range(len(values)) for j in range(i + 1, len(values)) if abs(values[i] - values[j]) <= radius)


def test_no_pairs_in_fewer_than_two_samples():
    assert close_pairs([], 1.0) == 0
    assert close_pairs([3.0], 1.0) == 0


def test_the_radius_is_inclusive():
    assert close_pairs([0.0, 1.0, 2.5], 1.0) == 1
    assert close_pairs([0.0, 1.0, 2.0], 1.0) == 2


def test_equal_samples_are_close_at_radius_zero():
    assert close_pairs([5.0, 5.0, 5.0, 6.0], 0.0) == 3


def test_negative_values_and_any_order():
    assert close_pairs([-3.0, 4.0, -2.5, 3.75], 0.5) == 2


def test_matches_brute_force_on_random_samples():
    values = random_samples(300, seed=5)
    for radius in (0.0, 1.5, 40.0, 2000.0):
        assert close_pairs(values, radius) == brute_force(values, radius)


def test_large_counts_do_not_overflow():
    assert close_pairs([1.0] * 3000, 0.0) == 3000 * 2999 // 2


def test_bad_arguments():
    with pytest.raises(ValueError):
        close_pairs([1.0, 2.0], -1.0)
    with pytest.raises(ValueError):
        close_pairs([1.0, float("nan")], 1.0)


def test_neighbour_counts_sum_to_twice_the_pairs():
    values = random_samples(200, seed=8)
    counts = neighbour_counts(values, 10.0)
    assert sum(counts) == 2 * close_pairs(values, 10.0)
    assert neighbour_counts([0.0, 0.5, 3.0], 1.0) == [1, 1, 0]
