import pytest

from graphkit import Graph, eccentricity, random_graph, shortest_distances


def reference_distances(graph, source):
    """Bellman-Ford: slow but obviously right."""
    distance = {source: 0}
    for _ in range(len(graph)):
        for u, v, w in graph.edges():
            if u in distance and (v not in distance or distance[u] + w < distance[v]):
                distance[v] = distance[u] + w
    return distance


def test_shortest_distances_prefers_lighter_detours():
    g = Graph()
    g.add_edge("a", "b", 10)
    g.add_edge("a", "c", 2)
    g.add_edge("c", "b", 3)
    g.add_edge("b", "d", 1)
    g.add_node("lonely")
    assert shortest_distances(g, "a") == {"a": 0, "b": 5, "c": 2, "d": 6}


def test_directed_graphs_follow_edge_direction():
    g = Graph(directed=True)
    g.add_edge(1, 2, 4)
    g.add_edge(3, 1, 1)
    assert shortest_distances(g, 1) == {1: 0, 2: 4}
    assert shortest_distances(g, 3) == {3: 0, 1: 1, 2: 5}


def test_unknown_source_raises_key_error():
    with pytest.raises(KeyError):
        shortest_distances(Graph(), "x")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shortest_distances_match_bellman_ford(seed):
    g = random_graph(60, 90, seed=seed, max_weight=9)
    source = g.nodes()[0]
    assert shortest_distances(g, source) == reference_distances(g, source)


def test_eccentricity():
    g = Graph()
    g.add_edge(0, 1, 2)
    g.add_edge(1, 2, 2)
    g.add_edge(0, 3, 1)
    assert eccentricity(g, 0) == 4
    assert eccentricity(g, 2) == 5
