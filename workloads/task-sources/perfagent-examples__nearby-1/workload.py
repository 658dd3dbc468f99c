import timeit
import statistics

from nearby import close_pairs, random_samples

samples = None


def setup():
    """400 readings spread over [0, 1000)."""
    global samples
    samples = random_samples(400, seed=3)


def workload():
    """How many pairs of readings lie within 1 and within 20 of each other: every pair compared, twice."""
    return {"within 1": close_pairs(samples, 1.0), "within 20": close_pairs(samples, 20.0)}


runtimes = timeit.repeat(workload, number=1, repeat=10, setup=setup)

print("Mean:", statistics.mean(runtimes))
print("Std Dev:", statistics.stdev(runtimes))
