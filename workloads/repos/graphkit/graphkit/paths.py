"""Shortest paths with non-negative integer weights."""
from __future__ import annotations

from .graph import Graph, Node


def shortest_distances(graph: Graph, source: Node) -> dict[Node, int]:
    """The length of a shortest path from `source` to every node reachable from it (Dijkstra's algorithm)."""
    if source not in graph:
        raise KeyError(source)
    distance = {source: 0}
    finished = set()
    while True:
        # the closest node whose distance is not final yet
        current = None
        for node, d in distance.items():
            if node not in finished and (current is None or d < distance[current]):
                current = node
        if current is None:
            return distance
        finished.add(current)
        for neighbor, weight in graph.neighbors(current):
            candidate = distance[current] + weight
            if neighbor not in distance or candidate < distance[neighbor]:
                distance[neighbor] = candidate


def eccentricity(graph: Graph, source: Node) -> int:
    """The largest shortest-path distance from `source` to a node it reaches."""
    return max(shortest_distances(graph, source).values())
