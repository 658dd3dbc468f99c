import pytest

from graphkit import Graph, random_dag, topological_order


def test_smallest_ready_node_comes_first():
    g = Graph(directed=True)
    for u, v in [(5, 2), (5, 0), (4, 0), (4, 1), (2, 3), (3, 1)]:
        g.add_edge(u, v)
    assert topological_order(g) == [4, 5, 0, 2, 3, 1]


def test_isolated_nodes_and_parallel_edges():
    g = Graph(directed=True)
    g.add_edge(3, 1)
    g.add_edge(3, 1)
    g.add_node(2)
    assert topological_order(g) == [2, 3, 1]


def test_cycle_raises_value_error():
    g = Graph(directed=True)
    g.add_edge(1, 2)
    g.add_edge(2, 3)
    g.add_edge(3, 2)
    with pytest.raises(ValueError):
        topological_order(g)


def test_random_dag_order_is_topological_and_smallest_first():
    g = random_dag(80, 200, seed=6)
    order = topological_order(g)
    assert sorted(order) == list(range(80))
    position = {node: i for i, node in enumerate(order)}
    assert all(position[u] < position[v] for u, v, _ in g.edges())
    # greedy check: at every step the node taken is the smallest one without pending predecessors
    predecessors = {n: {u for u, v, _ in g.edges() if v == n} for n in range(80)}
    done = set()
    for node in order:
        assert node == min(n for n in range(80) if n not in done and predecessors[n] <= done)
        done.add(node)
