import pytest

from inventory import (Catalog, Item, Order, OrderLine, generate_items, generate_orders, order_total, order_totals,
                       repeat_customers, revenue_by_category, unique_customers)

CATALOG = Catalog([Item("A", "apple", 100, "kitchen"), Item("B", "book", 250, "books"),
                   Item("C", "chair", 1000, "office")])


def order(order_id, customer, *lines):
    return Order(order_id, customer, tuple(OrderLine(sku, qty) for sku, qty in lines))


def test_order_total():
    assert order_total(CATALOG, order(1, "x", ("A", 3), ("C", 1))) == 1300
    assert order_total(CATALOG, order(2, "x")) == 0


def test_order_total_unknown_sku():
    with pytest.raises(KeyError):
        order_total(CATALOG, order(1, "x", ("Q", 1)))


def test_order_totals_by_id():
    orders = [order(7, "x", ("B", 2)), order(3, "y", ("A", 1), ("B", 1))]
    assert order_totals(CATALOG, orders) == {7: 500, 3: 350}


def test_revenue_by_category_sorted():
    orders = [order(1, "x", ("C", 2), ("A", 1)), order(2, "y", ("A", 4))]
    result = revenue_by_category(CATALOG, orders)
    assert result == {"kitchen": 500, "office": 2000}
    assert list(result) == ["kitchen", "office"]


def test_unique_customers_in_order_of_first_order():
    orders = [order(i, name) for i, name in enumerate(["bo", "al", "bo", "cy", "al", "di"])]
    assert unique_customers(orders) == ["bo", "al", "cy", "di"]
    assert unique_customers([]) == []


def test_repeat_customers_counts_orders():
    orders = [order(i, name) for i, name in enumerate(["bo", "al", "bo", "cy", "al", "bo", "di"])]
    assert repeat_customers(orders) == [("bo", 3), ("al", 2)]
    assert repeat_customers(orders[:2]) == []


def test_customer_statistics_on_generated_orders():
    orders = generate_orders(generate_items(50, seed=1), 400, customers=120, seed=2)
    customers = unique_customers(orders)
    assert sorted(customers) == sorted({o.customer for o in orders})
    first_seen = {}
    for o in orders:
        first_seen.setdefault(o.customer, o.order_id)
    assert customers == sorted(first_seen, key=first_seen.get)
    counts = {c: sum(o.customer == c for o in orders) for c in customers}
    assert repeat_customers(orders) == [(c, n) for c, n in counts.items() if n > 1]
