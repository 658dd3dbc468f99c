from graphkit import Graph, component_sizes, connected_components, random_graph


def test_components_sorted_and_ordered_by_smallest_node():
    g = Graph()
    for u, v in [(5, 3), (3, 9), (1, 7), (8, 8)]:
        g.add_edge(u, v)
    g.add_node(0)
    assert connected_components(g) == [[0], [1, 7], [3, 5, 9], [8]]


def test_component_sizes_largest_first():
    g = Graph()
    for u, v in [(1, 2), (2, 3), (4, 5)]:
        g.add_edge(u, v)
    g.add_node(6)
    assert component_sizes(g) == [3, 2, 1]


def test_empty_graph():
    assert connected_components(Graph()) == []


def test_components_partition_a_random_graph():
    g = random_graph(200, 150, seed=4)
    components = connected_components(g)
    assert sorted(n for c in components for n in c) == list(range(200))
    assert [c[0] for c in components] == sorted(c[0] for c in components)
    assert all(c == sorted(c) for c in components)
    where = {n: i for i, c in enumerate(components) for n in c}
    assert all(where[u] == where[v] for u, v, _ in g.edges())
