import timeit
import statistics

from inventory import generate_items, generate_orders, repeat_customers, unique_customers

orders = None


def setup():
    """A year of wholesale orders: 12,000 orders from 30 business customers."""
    global orders
    orders = generate_orders(generate_items(60, seed=21), 12000, customers=30, seed=22)


def workload():
    """Customer statistics: who ordered, and who came back and how often."""
    customers = unique_customers(orders)
    returning = repeat_customers(orders)
    return {
        "customers": len(customers),
        "first_ten": customers[:10],
        "returning": returning,
        "orders_by_returning": sum(count for _, count in returning),
    }


runtimes = timeit.repeat(workload, number=1, repeat=10, setup=setup)

print("Mean:", statistics.mean(runtimes))
print("Std Dev:", statistics.stdev(runtimes))
