import timeit
import statistics

from graphkit import random_graph, shortest_distances

graph = None


def setup():
    """A sparse road network: 750 junctions, 1,700 roads with travel times of 1-20 minutes."""
    global graph
    graph = random_graph(750, 1700, seed=41, max_weight=20)


def workload():
    """Travel times from one depot to every junction it reaches."""
    distances = shortest_distances(graph, 0)
    return {
        "reached": len(distances),
        "total": sum(distances.values()),
        "farthest": max(distances.values()),
        "distances": distances,
    }


runtimes = timeit.repeat(workload, number=1, repeat=10, setup=setup)

print("Mean:", statistics.mean(runtimes))
print("Std Dev:", statistics.stdev(runtimes))
