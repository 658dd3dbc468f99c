"""An adjacency-list graph with integer edge weights."""
from __future__ import annotations

from typing import Hashable, Iterator

Node = Hashable


class Graph:
    """Directed or undirected; an undirected edge is stored in the adjacency lists of both ends."""

    def __init__(self, directed: bool = False):
        self.directed = directed
        self._adjacency: dict[Node, list[tuple[Node, int]]] = {}

    def add_node(self, node: Node) -> None:
        self._adjacency.setdefault(node, [])

    def add_edge(self, u: Node, v: Node, weight: int = 1) -> None:
        if weight < 0:
            raise ValueError("edge weights must not be negative")
        self.add_node(u)
        self.add_node(v)
        self._adjacency[u].append((v, weight))
        if not self.directed and u != v:
            self._adjacency[v].append((u, weight))

    def nodes(self) -> list[Node]:
        """The nodes in the order they were first added."""
        return list(self._adjacency)

    def neighbors(self, node: Node) -> list[tuple[Node, int]]:
        """(neighbor, weight) for each edge leaving `node`, in the order the edges were added."""
        return self._adjacency[node]

    def edges(self) -> Iterator[tuple[Node, Node, int]]:
        for u, targets in self._adjacency.items():
            for v, weight in targets:
                yield u, v, weight

    def __contains__(self, node: object) -> bool:
        return node in self._adjacency

    def __len__(self) -> int:
        return len(self._adjacency)
