"""Connected components of undirected graphs."""
from __future__ import annotations

from .graph import Graph, Node


def connected_components(graph: Graph) -> list[list[Node]]:
    """The connected components of an undirected graph with sortable nodes: each a sorted list of its nodes, the
    components ordered by their smallest node."""
    seen = []
    components = []
    for start in sorted(graph.nodes()):
        if start in seen:
            continue
        component = []
        queue = [start]
        seen.append(start)
        while queue:
            node = queue.pop(0)
            component.append(node)
            for neighbor, _ in graph.neighbors(node):
                if neighbor not in seen:
                    seen.append(neighbor)
                    queue.append(neighbor)
        components.append(sorted(component))
    return components


def component_sizes(graph: Graph) -> list[int]:
    """The sizes of the connected components, largest first."""
    return sorted((len(c) for c in connected_components(graph)), reverse=True)
