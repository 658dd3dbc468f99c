import timeit
import statistics
import random

from inventory import reorder_points, rolling_demand

history = None


def setup():
    """A year of daily unit sales for 80 products."""
    global history
    rng = random.Random(31)
    history = {f"SKU-{i:04d}": [rng.randrange(40) if rng.random() < 0.8 else 0 for _ in range(365)]
               for i in range(80)}


def workload():
    """Reorder points for a four-week lead time, and the weekly demand curve of one product."""
    points = reorder_points(history, lead_days=28, safety_units=10)
    weekly = rolling_demand(history["SKU-0007"], 7)
    return {"reorder_points": points, "weekly_demand": weekly}


runtimes = timeit.repeat(workload, number=1, repeat=10, setup=setup)

print("Mean:", statistics.mean(runtimes))
print("Std Dev:", statistics.stdev(runtimes))
