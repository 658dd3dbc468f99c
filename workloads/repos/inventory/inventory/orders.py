"""Order totals and customer statistics."""
from __future__ import annotations

from .catalog import Catalog
from .models import Order


def order_total(catalog: Catalog, order: Order) -> int:
    """What `order` costs in cents; KeyError when it names an unknown SKU."""
    return sum(catalog.price_of(line.sku) * line.quantity for line in order.lines)


def order_totals(catalog: Catalog, orders: list[Order]) -> dict[int, int]:
    """The total of every order, by order id."""
    return {order.order_id: order_total(catalog, order) for order in orders}


def revenue_by_category(catalog: Catalog, orders: list[Order]) -> dict[str, int]:
    """Revenue in cents per item category, categories in sorted order."""
    revenue: dict[str, int] = {}
    for order in orders:
        for line in order.lines:
            item = catalog.get(line.sku)
            if item is None:
                raise KeyError(line.sku)
            revenue[item.category] = revenue.get(item.category, 0) + item.price_cents * line.quantity
    return dict(sorted(revenue.items()))


def unique_customers(orders: list[Order]) -> list[str]:
    """Every customer who placed an order, in the order of their first order."""
    customers: list[str] = []
    for order in orders:
        if order.customer not in customers:
            customers.append(order.customer)
    return customers


def repeat_customers(orders: list[Order]) -> list[tuple[str, int]]:
    """(customer, number of orders) for the customers with more than one order, in the order of their first order."""
    result = []
    for customer in unique_customers(orders):
        count = sum(1 for order in orders if order.customer == customer)
        if count > 1:
            result.append((customer, count))
    return result
