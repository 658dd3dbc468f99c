import pytest

from graphkit import Graph, random_dag, random_graph


def test_undirected_edges_go_both_ways():
    g = Graph()
    g.add_edge("a", "b", 3)
    g.add_edge("b", "c")
    assert g.neighbors("a") == [("b", 3)]
    assert g.neighbors("b") == [("a", 3), ("c", 1)]
    assert g.nodes() == ["a", "b", "c"]
    assert len(g) == 3 and "c" in g and "d" not in g


def test_directed_edges_go_one_way():
    g = Graph(directed=True)
    g.add_edge(1, 2)
    assert g.neighbors(1) == [(2, 1)]
    assert g.neighbors(2) == []
    assert list(g.edges()) == [(1, 2, 1)]


def test_negative_weights_are_rejected():
    with pytest.raises(ValueError):
        Graph().add_edge(1, 2, -1)


def test_generators_are_deterministic():
    assert list(random_graph(30, 40, seed=1).edges()) == list(random_graph(30, 40, seed=1).edges())
    dag = random_dag(30, 60, seed=2)
    assert len(dag) == 30 and dag.directed
