"""Topological order of directed acyclic graphs."""
from __future__ import annotations

from .graph import Graph, Node


def topological_order(graph: Graph) -> list[Node]:
    """The nodes of a directed acyclic graph with sortable nodes, each before all nodes its edges lead to; of the
    nodes that could come next, the smallest always does (so the order is unique). ValueError on a cycle."""
    remaining = set(graph.nodes())
    order = []
    while remaining:
        blocked = {v for u in remaining for v, _ in graph.neighbors(u)}
        ready = [node for node in remaining if node not in blocked]
        if not ready:
            raise ValueError("the graph has a cycle")
        node = min(ready)
        order.append(node)
        remaining.remove(node)
    return order
