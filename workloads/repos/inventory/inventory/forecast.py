"""Demand figures for restocking, from daily unit sales (whole numbers of units)."""
from __future__ import annotations


def rolling_demand(daily_units: list[int], window: int) -> list[int]:
    """Units sold in each run of `window` consecutive days: element i covers days i .. i + window - 1.

    Empty when there are fewer than `window` days."""
    if window <= 0:
        raise ValueError("window must be positive")
    totals = []
    for start in range(len(daily_units) - window + 1):
        total = 0
        for units in daily_units[start:start + window]:
            total += units
        totals.append(total)
    return totals


def peak_window(daily_units: list[int], window: int) -> tuple[int, int] | None:
    """(first day, units) of the busiest run of `window` days (the earliest one on ties); None if there is none."""
    totals = rolling_demand(daily_units, window)
    if not totals:
        return None
    best = max(totals)
    return totals.index(best), best


def reorder_points(history: dict[str, list[int]], lead_days: int, safety_units: int = 0) -> dict[str, int]:
    """For each SKU, the stock level at which to reorder: the most it ever sold over `lead_days` days, plus a margin.

    SKUs with less than `lead_days` days of history get the total they sold plus the margin."""
    points = {}
    for sku, daily_units in sorted(history.items()):
        peak = peak_window(daily_units, lead_days)
        points[sku] = (peak[1] if peak else sum(daily_units)) + safety_units
    return points
