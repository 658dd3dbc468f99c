"""Seeded random graphs for examples, tests and benchmarks."""
from __future__ import annotations

import random

from .graph import Graph


def random_graph(n: int, m: int, seed: int = 0, max_weight: int = 1) -> Graph:
    """An undirected graph on nodes 0..n-1 with `m` random edges of weight 1..max_weight (self-loops possible)."""
    rng = random.Random(seed)
    graph = Graph()
    for node in rng.sample(range(n), n):  # nodes in a random order, as real data has them
        graph.add_node(node)
    for _ in range(m):
        graph.add_edge(rng.randrange(n), rng.randrange(n), rng.randint(1, max_weight))
    return graph


def random_dag(n: int, m: int, seed: int = 0) -> Graph:
    """A directed acyclic graph on nodes 0..n-1 with `m` random edges, each from a lower to a higher position of a
    random permutation of the nodes (so the node numbers do not give a topological order)."""
    rng = random.Random(seed)
    rank = rng.sample(range(n), n)
    graph = Graph(directed=True)
    for node in range(n):
        graph.add_node(node)
    for _ in range(m):
        a, b = rng.sample(range(n), 2)
        if a > b:
            a, b = b, a
        graph.add_edge(rank[a], rank[b])
    return graph
