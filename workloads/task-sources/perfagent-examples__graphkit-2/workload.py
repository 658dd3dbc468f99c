import timeit
import statistics

from graphkit import component_sizes, connected_components, random_graph

graph = None


def setup():
    """A fragmented network: 800 nodes and 520 random links."""
    global graph
    graph = random_graph(800, 520, seed=51)


def workload():
    """The clusters of the network and their sizes."""
    components = connected_components(graph)
    return {
        "count": len(components),
        "largest": max(components, key=len),
        "sizes": component_sizes(graph)[:20],
        "smallest_nodes": [component[0] for component in components],
    }


runtimes = timeit.repeat(workload, number=1, repeat=10, setup=setup)

print("Mean:", statistics.mean(runtimes))
print("Std Dev:", statistics.stdev(runtimes))
