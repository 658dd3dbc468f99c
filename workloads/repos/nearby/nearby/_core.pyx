"""The counting loops of nearby, compiled with Cython."""


def count_close_pairs(values, double radius):
    """How many pairs i < j of `values` (a buffer of doubles) have |values[i] - values[j]| <= radius."""
    n = len(values)
    count = 0
    for i in range(n):
        for j in range(i + 1, n):
            if abs(values[i] - values[j]) <= radius:
                count += 1
    return count
