import pytest

from inventory import Catalog, Item, generate_items


def item(sku, price=100, category="books"):
    return Item(sku, f"name of {sku}", price, category)


def test_get_finds_items_by_sku():
    catalog = Catalog([item("A"), item("B", 250), item("C")])
    assert catalog.get("B") == item("B", 250)
    assert catalog.get("Z") is None


def test_first_item_for_a_sku_wins():
    catalog = Catalog([item("A", 100), item("B"), item("A", 999)])
    assert catalog.get("A").price_cents == 100
    assert len(catalog) == 2
    assert catalog.add(item("B", 5)) is False
    assert catalog.add(item("D", 5)) is True
    assert catalog.price_of("B") == 100
    assert catalog.price_of("D") == 5


def test_iteration_keeps_insertion_order():
    catalog = Catalog([item("C"), item("A"), item("B"), item("A")])
    assert [i.sku for i in catalog] == ["C", "A", "B"]


def test_price_of_unknown_sku_raises_key_error():
    with pytest.raises(KeyError):
        Catalog([item("A")]).price_of("B")


def test_contains():
    catalog = Catalog([item("A")])
    assert "A" in catalog
    assert "B" not in catalog
    assert 42 not in catalog


def test_in_category():
    catalog = Catalog([item("A", category="toys"), item("B"), item("C", category="toys")])
    assert [i.sku for i in catalog.in_category("toys")] == ["A", "C"]
    assert catalog.in_category("music") == []


def test_lookups_on_generated_items():
    items = generate_items(300, seed=5)
    catalog = Catalog(items + items[:10])
    assert len(catalog) == 300
    assert all(catalog.get(i.sku) is i for i in items)
    assert catalog.get("SKU-nope") is None
