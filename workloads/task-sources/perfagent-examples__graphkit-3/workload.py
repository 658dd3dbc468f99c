import timeit
import statistics

from graphkit import random_dag, topological_order

graph = None


def setup():
    """A build graph: 300 targets and 3,000 dependencies between them."""
    global graph
    graph = random_dag(300, 3000, seed=61)


def workload():
    """The build order of all targets, and the length of the longest dependency chain."""
    order = topological_order(graph)
    depth = dict.fromkeys(order, 1)
    for node in order:
        for target, _ in graph.neighbors(node):
            depth[target] = max(depth[target], depth[node] + 1)
    return {"targets": len(order), "order": order, "critical_path": max(depth.values())}


runtimes = timeit.repeat(workload, number=1, repeat=10, setup=setup)

print("Mean:", statistics.mean(runtimes))
print("Std Dev:", statistics.stdev(runtimes))
