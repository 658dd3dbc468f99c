"""The Python interface: checks the arguments and hands the samples to the compiled loops as an array of doubles."""
from __future__ import annotations

import random
from array import array
from typing import Iterable

from nearby import _core


def _doubles(values: Iterable[float]) -> array:
    samples = array("d", values)
    if any(value != value for value in samples):
        raise ValueError("samples must not be NaN")
    return samples


def close_pairs(values: Iterable[float], radius: float) -> int:
    """How many pairs of samples (i < j) lie within `radius` of each other."""
    if radius < 0:
        raise ValueError("radius must not be negative")
    return _core.count_close_pairs(_doubles(values), float(radius))


def neighbour_counts(values: Iterable[float], radius: float) -> list[int]:
    """For each sample, how many other samples lie within `radius` of it."""
    if radius < 0:
        raise ValueError("radius must not be negative")
    samples = _doubles(values)
    counts = []
    for value in samples:
        counts.append(sum(1 for other in samples if abs(other - value) <= radius) - 1)
    return counts


def random_samples(n: int, seed: int, spread: float = 1000.0) -> list[float]:
    """`n` samples spread uniformly over [0, spread), reproducible by `seed`."""
    rng = random.Random(seed)
    return [rng.uniform(0.0, spread) for _ in range(n)]
