"""The product catalog: items looked up by SKU."""
from __future__ import annotations

from typing import Iterable, Iterator

from .models import Item


class Catalog:
    """Items by SKU. The first item added for a SKU wins; later items with the same SKU are ignored."""

    def __init__(self, items: Iterable[Item] = ()):
        self._items: list[Item] = []
        for item in items:
            self.add(item)

    def add(self, item: Item) -> bool:
        """Add `item`; False (and the catalog unchanged) when its SKU is already present."""
        if self.get(item.sku) is not None:
            return False
        self._items.append(item)
        return True

    def get(self, sku: str) -> Item | None:
        """The item with this SKU, or None."""
        for item in self._items:
            if item.sku == sku:
                return item
        return None

    def price_of(self, sku: str) -> int:
        """The price of the item with this SKU in cents; KeyError for an unknown SKU."""
        item = self.get(sku)
        if item is None:
            raise KeyError(sku)
        return item.price_cents

    def in_category(self, category: str) -> list[Item]:
        """The items of one category, in the order they were added."""
        return [item for item in self._items if item.category == category]

    def __contains__(self, sku: object) -> bool:
        return isinstance(sku, str) and self.get(sku) is not None

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
