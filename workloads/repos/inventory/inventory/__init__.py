"""inventory: a small stock keeper (catalog, orders, demand forecasts)."""
from .catalog import Catalog
from .forecast import peak_window, reorder_points, rolling_demand
from .models import Item, Order, OrderLine, generate_items, generate_orders
from .orders import order_total, order_totals, repeat_customers, revenue_by_category, unique_customers

__version__ = "0.2.0"
__all__ = [
    "Catalog",
    "peak_window", "reorder_points", "rolling_demand",
    "Item", "Order", "OrderLine", "generate_items", "generate_orders",
    "order_total", "order_totals", "repeat_customers", "revenue_by_category", "unique_customers",
]
