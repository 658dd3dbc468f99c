"""How numbers and counts read in everything perfagent prints or writes (the console, commit messages, report.html,
pull_request.md): a speedup with its interval, a p-value, a time per call, a share, a count with its noun, the timing
noise, a comparison. Pure Python on plain values and records, so the CLI and the reports use it without loading the
loop.

A timing value is measured against the reference of its own comparison (ABBA, at the machine's speed of that moment,
with values of that comparison's length), so absolute times from two comparisons differ even for the same code: the
ratio is what a decision rests on and leads everywhere, and an absolute time is only ever shown beside its own
comparison, labelled as such (`medians`)."""
from __future__ import annotations

OWN_VALUES = "this comparison's values, median"  # the label of every absolute time a comparison measured
NOISE = "timing noise"  # the one name of the A/A spread of back-to-back pairs (stats.Noise.pair_spread)


def plural(n: int, word: str, many: str | None = None) -> str:
    """`n` with its noun: `1 call`, `3 calls`, `2 patches` (with `many`)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def interval(speed: dict | None, missing: str = "") -> str:
    """A comparison's speedup with its 95% interval, e.g. `2.89x [2.20, 3.79]`."""
    return f"{speed['speedup']:.2f}x [{speed['ci_low']:.2f}, {speed['ci_high']:.2f}]" if speed else missing


def p_value(p: float | None, prefix: bool = True) -> str:
    """As a reader quotes it: `p < 0.001`, `p = 0.04`, `p = 1` (`< 0.001`, `0.04` without the prefix)."""
    if p is None:
        return ""
    if p < 0.001:
        return "p < 0.001" if prefix else "< 0.001"
    return f"p = {p:.2g}" if prefix else f"{p:.2g}"


def seconds(value, missing: str = "") -> str:
    """A time per call, to three digits: `0.5 ms`, `233 ms`, `1.50 s`, `12.3 s`."""
    if not isinstance(value, (int, float)):
        return missing
    if value < 0.9995:  # below what rounds to 1000 ms
        return f"{value * 1000:.3g} ms"
    return f"{value:.3g} s" if value >= 10 else f"{value:.2f} s"


def share(value, missing: str = "") -> str:
    return missing if value is None else f"{value:.1%}"


def medians(speed: dict) -> str:
    """The absolute times of one comparison, labelled as its own: `233 ms → 135 ms (this comparison's values,
    median)`."""
    return f"{seconds(speed['base_median'])} → {seconds(speed['cand_median'])} ({OWN_VALUES})"


def comparison(speed: dict) -> str:
    """One comparison, ratio first: `1.67x [1.37, 2.04], p < 0.001, 10 pairs; 233 ms → 135 ms (this comparison's
    values, median)`."""
    return f"{interval(speed)}, {p_value(speed['p_value'])}, {plural(speed['n_base'], 'pair')}; {medians(speed)}"


def noise(record: dict) -> str:
    """The baseline's A/A noise (stats.Noise as a record), under its one name."""
    return (f"{NOISE} {record['pair_spread']:.1%} (spread of back-to-back pairs of the unmodified code); smallest "
            f"resolvable speedup about {record['resolvable'] - 1:.1%}")


def calls_per_value(ladder: tuple[int, ...]) -> str:
    """What a timing value is made of, for a ladder of loop counts (stats.value_ladder)."""
    lengths = " or ".join(f"{plural(loops, 'call')}{f' ({kind})' if len(ladder) > 1 else ''}"
                          for loops, kind in zip(ladder, ("short", "long")))
    return f"each timing value is the lower quartile of {lengths} in a fresh process"


def hotspots(ranked) -> str:
    """Hotspots (localize.hotspots.Hotspot) in their rank order, each with its share of the time in itself and, where
    its callees add to it, with them: the ranking weighs both, so `6%` may rightly come before `20%`."""
    def one(h) -> str:
        own = f"self {h.self_share:.0%}"
        return f"{h.qualname} ({own}, with callees {h.cum_share:.0%})" if round(h.cum_share, 2) > round(
            h.self_share, 2) else f"{h.qualname} ({own})"
    return ", ".join(f"{i}. {one(h)}" for i, h in enumerate(ranked, 1))


def shorten(text: str, limit: int) -> str:
    """`text` within `limit` characters, cut at a word boundary with an ellipsis (no limit: 0)."""
    if not limit or len(text) <= limit:
        return text
    cut = text[:limit - 1]  # room for the ellipsis
    if not text[limit - 1].isspace() and " " in cut[limit // 2:]:  # mid-word: back to the word's start
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + "…"


def expert_reach(summary: dict) -> str:
    """An evaluation's aggregate (runs.outputs.summarize) in words: the harmonic mean of the speedup ratios, and how
    many scored patches the expert's speedup does not significantly beat (a ratio interval reaching 1.0) as a count,
    since a mean well below 1 and "100%" side by side read as a contradiction without it."""
    scored, mean, reached = summary["scored"], summary["harmonic_mean_ratio"], summary["at_or_above_expert"]
    mean_text = "n/a" if mean is None else f"{mean:.2f}"
    patches = plural(scored, "scored patch", "scored patches")
    reach = "" if reached is None else (f"; {round(reached * scored)} of {patches} not significantly slower than "
                                        f"the expert's (ratio interval reaching 1.0)")
    return f"harmonic mean speedup ratio {mean_text} (speedup / expert speedup){reach}"
