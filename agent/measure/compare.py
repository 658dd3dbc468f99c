"""Compare the normal forms (see normal_form.py) of a baseline's and a candidate's workload results.

Everything is exact except floating-point numbers, which match within math.isclose-style tolerance;
NaN matches NaN and infinities match only themselves (they are tagged strings in the normal form).
A value of a subclass is never equal to a value of its base: a subclass of a scalar type is a "subclass" node, never
a plain JSON scalar, and containers of different classes differ in their "class".
The input is parsed JSON from an untrusted child: anything malformed compares unequal, never raises.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

ROOT = "result"
RENDER_LIMIT = 120  # characters of each value shown in a detail
_SCALARS = (str, int, float, bool, type(None))
_MALFORMED = (AttributeError, IndexError, KeyError, TypeError, ValueError, RecursionError)


@dataclass(frozen=True)
class Comparison:
    equal: bool
    detail: str  # '' when equal; else the first difference with its path


def compare_results(expected, actual, *, rel_tol: float = 1e-9, abs_tol: float = 1e-12) -> Comparison:
    try:
        detail = _Comparer(rel_tol, abs_tol).diff(expected, actual, ROOT)
    except _MALFORMED as exc:
        detail = f"{ROOT}: malformed normal form ({type(exc).__name__}: {exc})"
    return Comparison(equal=detail is None, detail=detail or "")


def _uniform(dtype: str) -> bool:
    """Whether an array's values all have the same JSON types (no object fields)."""
    return "O" not in dtype and "object" not in dtype


def _meta(value) -> str:
    """An array's class, dtype or shape as numpy shows it."""
    return str(tuple(value) if isinstance(value, list) else value)


def _mismatch(path: str, expected, actual) -> str:
    return f"{path}: {render(expected)} != {render(actual)}"


class _Comparer:
    def __init__(self, rel_tol: float, abs_tol: float):
        self.rel_tol, self.abs_tol = rel_tol, abs_tol

    def diff(self, e, a, path: str) -> str | None:
        """The first difference between two normal forms, or None if they match."""
        if type(e) is not type(a):  # also tells 1 from 1.0 and True from 1
            return _mismatch(path, e, a)
        if isinstance(e, float):
            return None if math.isclose(e, a, rel_tol=self.rel_tol, abs_tol=self.abs_tol) else _mismatch(path, e, a)
        if isinstance(e, list):
            return self._items(e, a, path)
        if isinstance(e, dict):
            if "$" not in e and "$" not in a:
                return self._fields(e, a, path)
            if e.get("$") != a.get("$"):
                return _mismatch(path, e, a)
            return _HANDLERS.get(e["$"], _Comparer._leaf)(self, e, a, path)
        return None if e == a else _mismatch(path, e, a)

    def _items(self, e: list, a: list, path: str) -> str | None:
        if len(e) != len(a):
            return f"{path}: length {len(e)} != {len(a)}: {render(e)} != {render(a)}"
        for i, (x, y) in enumerate(zip(e, a)):
            if type(x) is type(y) and type(x) in _SCALARS and x == y:
                continue  # fast path for long arrays
            detail = self.diff(x, y, f"{path}[{i}]")
            if detail:
                return detail
        return None

    def _fields(self, e: dict, a: dict, path: str) -> str | None:
        for name in sorted(e.keys() | a.keys()):
            if name not in a:
                return f"{path}: missing field {name!r} (expected {render(e[name])})"
            if name not in e:
                return f"{path}: unexpected field {name!r} = {render(a[name])}"
            detail = self.diff(e[name], a[name], f"{path}.{name}")
            if detail:
                return detail
        return None

    def _leaf(self, e: dict, a: dict, path: str) -> str | None:
        """Values such as complex numbers or exceptions: compared whole, reported whole."""
        return _mismatch(path, e, a) if self._fields(e, a, path) else None

    @staticmethod
    def _class(e: dict, a: dict, path: str) -> str | None:
        if e.get("class") != a.get("class"):
            return f"{path}: type {e.get('class')} != {a.get('class')}: {render(e)} != {render(a)}"
        return None

    def _sequence(self, e: dict, a: dict, path: str) -> str | None:
        return self._class(e, a, path) or self._items(e["items"], a["items"], path)

    def _subclass(self, e: dict, a: dict, path: str) -> str | None:
        return self._class(e, a, path) or self.diff(e["value"], a["value"], path)

    def _set(self, e: dict, a: dict, path: str) -> str | None:
        return self._class(e, a, path) or (_mismatch(path, e, a) if self._items(e["items"], a["items"], path) else None)

    def _dict(self, e: dict, a: dict, path: str) -> str | None:
        detail = self._class(e, a, path)
        if detail:
            return detail
        e_keys, a_keys = ([json.dumps(k, sort_keys=True) for k, _ in node["items"]] for node in (e, a))
        if e_keys != a_keys:
            a_set, e_set = set(a_keys), set(e_keys)
            missing = [k for (k, _), text in zip(e["items"], e_keys) if text not in a_set]
            if missing:
                return f"{path}: missing key {render(missing[0])}"
            extra = [k for (k, _), text in zip(a["items"], a_keys) if text not in e_set]
            return f"{path}: unexpected key {render(extra[0])}" if extra else _mismatch(path, e, a)
        for (key, x), (_, y) in zip(e["items"], a["items"]):
            detail = self.diff(x, y, f"{path}[{render(key, 40)}]")
            if detail:
                return detail
        return None

    def _record(self, e: dict, a: dict, path: str) -> str | None:
        """Objects, DataFrames, Series: the class, then each field as `path.name`."""
        if "attrs" in e:
            return self._class(e, a, path) or self._fields(e["attrs"], a["attrs"], path)
        rest_e, rest_a = ({k: v for k, v in node.items() if k not in ("$", "class")} for node in (e, a))
        return self._class(e, a, path) or self._fields(rest_e, rest_a, path)

    def _ndarray(self, e: dict, a: dict, path: str) -> str | None:
        for name in ("class", "dtype", "shape"):
            if e.get(name) != a.get(name):
                return f"{path}: {name} {_meta(e.get(name))} != {_meta(a.get(name))}"
        if "values" in e or "values" in a:
            if _uniform(e["dtype"]) and e["values"] == a["values"]:
                return None  # fast path: == cannot confuse 1 with 1.0 when every element has the same type
            return self.diff(e["values"], a["values"], path)
        return self._large_array(e, a, path)

    def _large_array(self, e: dict, a: dict, path: str) -> str | None:
        """Summarised arrays: equal bytes, or (for float/complex) matching sample and statistics."""
        if e["sha256"] == a["sha256"]:
            return None
        if e["sample"]["index"] != a["sample"]["index"]:
            return _mismatch(path, e, a)
        for i, x, y in zip(e["sample"]["index"], e["sample"]["values"], a["sample"]["values"]):
            detail = self.diff(x, y, f"{path}.flat[{i}]")
            if detail:
                return detail
        if e["exact"] or a["exact"]:
            return f"{path}: contents differ (sha256 {e['sha256'][:12]} != {a['sha256'][:12]})"
        return self.diff(e["stats"], a["stats"], f"{path}.stats")


_HANDLERS = {
    "list": _Comparer._sequence, "tuple": _Comparer._sequence,
    "set": _Comparer._set, "frozenset": _Comparer._set,
    "dict": _Comparer._dict,
    "object": _Comparer._record, "DataFrame": _Comparer._record, "Series": _Comparer._record,
    "ndarray": _Comparer._ndarray,
    "subclass": _Comparer._subclass,
}


def render(node, limit: int = RENDER_LIMIT) -> str:
    """A Python-like rendering of a normal form, cut to about `limit` characters."""
    text = _render(node, limit)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(nodes, limit: int, show=None) -> str:
    """Render items one by one, stopping once `limit` characters are filled."""
    parts, size = [], 0
    for node in nodes:
        if size > limit:
            parts.append("...")
            break
        parts.append(show(node) if show else _render(node, limit - size))
        size += len(parts[-1]) + 2
    return ", ".join(parts)


def _as_float(node) -> float:
    return node if isinstance(node, float) else float(node["v"])


def _short_class(node: dict, default: str) -> str:
    return "" if node.get("class") == default else str(node.get("class"))


def _render(node, limit: int) -> str:
    if isinstance(node, str):
        return repr(node[: limit + 1])
    if isinstance(node, list):
        return f"[{_join(node, limit)}]"
    if not isinstance(node, dict):
        return repr(node)
    tag = node.get("$")
    if tag is None:
        return "{" + _join(node.items(), limit, lambda kv: f"{kv[0]!r}: {_render(kv[1], limit)}") + "}"
    render_tag = _RENDERERS.get(tag)
    return render_tag(node, limit) if render_tag else json.dumps(node, sort_keys=True)[: limit + 1]


def _render_container(node: dict, limit: int) -> str:
    tag, items = node["$"], node["items"]
    if tag == "dict":
        body = "{" + _join(items, limit, lambda kv: f"{_render(kv[0], limit)}: {_render(kv[1], limit)}") + "}"
    elif tag == "list":
        body = f"[{_join(items, limit)}]"
    elif tag == "tuple":
        body = f"({_join(items, limit)}{',' if len(items) == 1 else ''})"
    else:
        body = "{" + _join(items, limit) + "}" if items else ""
        if tag == "frozenset":
            body = f"frozenset({body})"
        elif not items:
            body = "set()"
    cls = _short_class(node, tag)
    return f"{cls}({body})" if cls else body


def _render_bytes(node: dict, limit: int) -> str:
    text = repr(bytes.fromhex(node["hex"][: 2 * limit]))
    cls = _short_class(node, "bytes")
    return f"{cls}({text})" if cls else text


def _render_array(node: dict, limit: int) -> str:
    if "values" in node:
        body = _render(node["values"], limit)
    else:
        body = f"<{'x'.join(map(str, node['shape']))} elements, sha256 {node['sha256'][:12]}...>"
    cls = _short_class(node, "numpy.ndarray")
    return f"{cls or 'array'}({body}, dtype={node['dtype']})"


def _render_record(node: dict, limit: int) -> str:
    fields = node["attrs"] if "attrs" in node else {k: v for k, v in node.items() if k not in ("$", "class")}
    return f"{node['class']}({_join(fields.items(), limit, lambda kv: f'{kv[0]}={_render(kv[1], limit)}')})"


_RENDERERS = {
    "int": lambda n, limit: n["v"],
    "float": lambda n, limit: n["v"],
    "complex": lambda n, limit: repr(complex(_as_float(n["real"]), _as_float(n["imag"]))),
    "bytes": _render_bytes,
    "decimal": lambda n, limit: f"Decimal({n['v']!r})",
    "fraction": lambda n, limit: f"Fraction({n['v']!r})",
    "list": _render_container, "tuple": _render_container, "dict": _render_container,
    "set": _render_container, "frozenset": _render_container,
    "object": _render_record, "DataFrame": _render_record, "Series": _render_record,
    "enum": lambda n, limit: f"{n['class']}.{n['name']}",
    "exception": lambda n, limit: f"{n['class']}({n['message'][: limit + 1]!r})",
    "ndarray": _render_array,
    "npscalar": lambda n, limit: f"{n['dtype']}({_render(n['v'], limit)})",
    "subclass": lambda n, limit: f"{n['class']}({_render(n['value'], limit)})",
    "repr": lambda n, limit: n["repr"][: limit + 1],
    "cycle": lambda n, limit: f"<cycle to depth {n['depth']}>",
    "too_deep": lambda n, limit: f"<{n['class']} nested too deep>",
}
