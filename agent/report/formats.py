"""How numbers read in every report: a speedup with its interval, a time per call, a share."""
from __future__ import annotations


def interval(speed: dict | None, missing: str = "") -> str:
    """A comparison's speedup with its 95% interval, e.g. `2.89x [2.20, 3.79]`."""
    return f"{speed['speedup']:.2f}x [{speed['ci_low']:.2f}, {speed['ci_high']:.2f}]" if speed else missing


def seconds(value, missing: str = "") -> str:
    """A time per call: milliseconds below 10 s."""
    if not isinstance(value, (int, float)):
        return missing
    return f"{value * 1000:.3g} ms" if value < 10 else f"{value:.1f} s"


def share(value, missing: str = "") -> str:
    return missing if value is None else f"{value:.1%}"
