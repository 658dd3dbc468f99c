import timeit
import statistics

from inventory import Catalog, generate_items, generate_orders, order_totals, revenue_by_category

catalog = None
orders = None


def setup():
    """A catalog of 400 products and 900 orders of 1-5 lines each."""
    global catalog, orders
    items = generate_items(400, seed=11)
    catalog = Catalog(items)
    orders = generate_orders(items, 900, customers=600, seed=12)


def workload():
    """Price every order, then total the revenue per category: one catalog lookup per order line, twice."""
    totals = order_totals(catalog, orders)
    return {
        "orders": len(totals),
        "revenue": sum(totals.values()),
        "largest": max(totals.items(), key=lambda pair: (pair[1], pair[0])),
        "by_category": revenue_by_category(catalog, orders),
    }


runtimes = timeit.repeat(workload, number=1, repeat=10, setup=setup)

print("Mean:", statistics.mean(runtimes))
print("Std Dev:", statistics.stdev(runtimes))
