import random

import pytest

from inventory import peak_window, reorder_points, rolling_demand


@pytest.mark.parametrize("window, expected", [
    (1, [3, 1, 4, 1, 5]),
    (2, [4, 5, 5, 6]),
    (3, [8, 6, 10]),
    (5, [14]),
    (6, []),
])
def test_rolling_demand(window, expected):
    assert rolling_demand([3, 1, 4, 1, 5], window) == expected


def test_rolling_demand_rejects_non_positive_window():
    with pytest.raises(ValueError):
        rolling_demand([1, 2], 0)


def test_rolling_demand_empty_history():
    assert rolling_demand([], 3) == []


def test_rolling_demand_matches_direct_sums():
    rng = random.Random(3)
    units = [rng.randrange(50) for _ in range(400)]
    for window in (1, 7, 30, 400):
        assert rolling_demand(units, window) == [sum(units[i:i + window]) for i in range(len(units) - window + 1)]


def test_peak_window_earliest_on_ties():
    assert peak_window([1, 5, 0, 5, 1], 2) == (0, 6)
    assert peak_window([1, 2, 9, 0, 9], 1) == (2, 9)
    assert peak_window([1, 2], 3) is None


def test_reorder_points():
    history = {"B": [1, 1, 8, 1], "A": [2, 2, 2], "C": [4]}
    assert reorder_points(history, 2, safety_units=1) == {"A": 5, "B": 10, "C": 5}
    assert list(reorder_points(history, 2)) == ["A", "B", "C"]
