"""Close pairs in one-dimensional samples; the counting is in the Cython extension nearby._core."""
from nearby.pairs import close_pairs, neighbour_counts, random_samples

__all__ = ["close_pairs", "neighbour_counts", "random_samples"]
