"""The records the other modules work on, and a deterministic generator of sample data."""
from __future__ import annotations

import random
from dataclasses import dataclass

CATEGORIES = ("books", "garden", "kitchen", "music", "office", "outdoor", "tools", "toys")


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    price_cents: int
    category: str


@dataclass(frozen=True)
class OrderLine:
    sku: str
    quantity: int


@dataclass(frozen=True)
class Order:
    order_id: int
    customer: str
    lines: tuple[OrderLine, ...]


def generate_items(n: int, seed: int = 0) -> list[Item]:
    """`n` items with distinct SKUs, in a random order."""
    rng = random.Random(seed)
    skus = [f"SKU-{number:06d}" for number in rng.sample(range(1_000_000), n)]
    return [Item(sku, f"item {i}", rng.randrange(99, 20_000), rng.choice(CATEGORIES)) for i, sku in enumerate(skus)]


def generate_orders(items: list[Item], n: int, customers: int, seed: int = 0) -> list[Order]:
    """`n` orders of 1-5 lines each, placed by `customers` different customers."""
    rng = random.Random(seed)
    names = [f"customer-{i:05d}" for i in range(customers)]
    return [Order(order_id, rng.choice(names),
                  tuple(OrderLine(rng.choice(items).sku, rng.randint(1, 9)) for _ in range(rng.randint(1, 5))))
            for order_id in range(1, n + 1)]
