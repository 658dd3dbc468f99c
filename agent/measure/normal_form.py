"""Turn a workload's return value into a JSON-able "normal form" that the parent can compare.

This file runs inside the target's own interpreter, loaded by path, so it imports only the stdlib.
numpy and pandas values are recognised only when the workload has already imported those packages.

Shape of the normal form:
- plain JSON scalars stand for themselves: None, bool, str, ints within +-2**53 and finite floats;
- every other value is a tagged node ``{"$": tag, ...}``; containers keep their exact class in "class";
- untagged JSON objects are records of named fields (object attributes, array statistics) and
  untagged JSON lists are positional (ndarray values, dict [key, value] pairs, DataFrame columns).
Sets and dicts are sorted by the JSON text of their normalised elements, so iteration order never matters.
"""
import collections.abc
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import hashlib
import json
import math
import pathlib
import re
import sys
import types
import uuid

MAX_DEPTH = 100               # nested containers beyond this are cut off with a "too_deep" node
LARGE_ARRAY = 1_000_000       # arrays with more elements are summarised instead of listed
SAMPLE_SIZE = 1000            # evenly spaced elements kept from a summarised array
_SAFE_INT = 2**53             # larger ints lose precision in many JSON readers
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")

# Values best identified by their repr: their attributes are implementation details or absent.
_REPR_TYPES = (
    datetime.date, datetime.time, datetime.timedelta, datetime.tzinfo, pathlib.PurePath, uuid.UUID,
    range, re.Pattern, type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
    types.MethodType, functools.partial,
)


def normalize(obj) -> object:
    """Return JSON-serialisable data that identifies the value of `obj`."""
    return _Normalizer().visit(obj)


def dumps(obj) -> str:
    return json.dumps(normalize(obj), sort_keys=True, allow_nan=False)


def qualname(cls: type) -> str:
    module = getattr(cls, "__module__", None)
    return cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"


def _sort_key(node) -> str:
    return json.dumps(node, sort_keys=True)


def _int_text(n: int) -> str:
    try:
        return str(n)
    except ValueError:  # beyond sys.get_int_max_str_digits()
        return hex(n)


def _int(n: int):
    return n if -_SAFE_INT < n < _SAFE_INT else {"$": "int", "v": _int_text(n)}


def _float(x: float):
    return x if math.isfinite(x) else {"$": "float", "v": repr(x)}  # 'nan', 'inf' or '-inf'


def _safe_repr(obj) -> str:
    try:
        text = repr(obj)
    except Exception as exc:  # a broken __repr__ must not hide the rest of the result
        return f"<repr failed: {type(exc).__name__}>"
    return _ADDRESS.sub(" at 0x?", text)


def _safe_str(obj) -> str:
    try:
        return str(obj)
    except Exception:
        return _safe_repr(obj)


def _mangle(cls: type, name: str) -> str:
    if name.startswith("__") and not name.endswith("__"):
        return f"_{cls.__name__.lstrip('_')}{name}"
    return name


def _attributes(obj) -> dict | None:
    """Instance state from __slots__ and __dict__, or None if the object has neither."""
    attrs, has_state = {}, False
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            has_state = True
            name = _mangle(cls, name)
            try:
                attrs[name] = getattr(obj, name)
            except AttributeError:  # slot never assigned
                pass
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        has_state = True
        attrs.update((str(key), value) for key, value in state.items())
    return attrs if has_state else None


def _python_value(np, scalar):
    """The Python value of a numpy scalar; long doubles have no exact equivalent and become float/complex."""
    value = scalar.item()
    if isinstance(value, np.generic):
        value = complex(value) if np.iscomplexobj(value) else float(value)
    return value


def _fast_values(np, array) -> list | None:
    """Nested lists of normal forms for common dtypes without visiting every element, else None."""
    kind = array.dtype.kind
    small_ints = kind in "iu" and (array.size == 0 or -_SAFE_INT < array.min() and array.max() < _SAFE_INT)
    if kind in "bU" or small_ints:
        return array.tolist()
    if kind != "f" or array.dtype.itemsize > 8:  # long doubles convert to numpy scalars, not floats
        return None
    special = ~np.isfinite(array)
    if not special.any():
        return array.tolist()
    values = array.astype(object)
    values[special] = [_float(x) for x in array[special].tolist()]
    return values.tolist()


def _array_stats(np, array) -> dict:
    x = array.reshape(-1)
    if x.dtype.kind == "c":
        x = np.concatenate([x.real, x.imag])
    x = x.astype(np.float64)
    stats = {"nan": int(np.isnan(x).sum()), "posinf": int((x == np.inf).sum()), "neginf": int((x == -np.inf).sum())}
    finite = x[np.isfinite(x)]
    if finite.size:
        for name in ("min", "max", "mean", "std"):
            stats[name] = _float(float(getattr(finite, name)()))
    return stats


def _atom(obj):
    """Normal form of a value that cannot contain other values, or None."""
    if isinstance(obj, int):  # subclasses of int, float and str count as their plain value
        return _int(int(obj))
    if isinstance(obj, float):
        return _float(float(obj))
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, complex):
        return {"$": "complex", "real": _float(obj.real), "imag": _float(obj.imag)}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$": "bytes", "class": qualname(type(obj)), "hex": bytes(obj).hex()}
    if isinstance(obj, decimal.Decimal):
        return {"$": "decimal", "v": str(obj)}
    if isinstance(obj, fractions.Fraction):
        return {"$": "fraction", "v": f"{_int_text(obj.numerator)}/{_int_text(obj.denominator)}"}
    if isinstance(obj, BaseException):
        return {"$": "exception", "class": qualname(type(obj)), "message": _safe_str(obj)}
    if isinstance(obj, _REPR_TYPES):
        return {"$": "repr", "class": qualname(type(obj)), "repr": _safe_repr(obj)}
    return None


class _Normalizer:
    def __init__(self):
        self._active = {}  # id -> depth of each container on the path from the root to the current value

    def visit(self, obj):
        if obj is None or type(obj) in (bool, str):
            return obj
        if type(obj) is int:
            return _int(obj)
        if type(obj) is float:
            return _float(obj)
        if isinstance(obj, enum.Enum):
            return {"$": "enum", "class": qualname(type(obj)), "name": obj.name, "value": self.visit(obj.value)}
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.generic):
            return {"$": "npscalar", "dtype": str(obj.dtype), "v": self.visit(_python_value(np, obj))}
        node = _atom(obj)
        return self._container(obj) if node is None else node

    def _container(self, obj):
        key = id(obj)
        if key in self._active:
            return {"$": "cycle", "depth": self._active[key]}
        if len(self._active) >= MAX_DEPTH:
            return {"$": "too_deep", "class": qualname(type(obj))}
        self._active[key] = len(self._active)
        try:
            return self._expand(obj)
        finally:
            del self._active[key]

    def _expand(self, obj):
        cls = qualname(type(obj))
        np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
        if np is not None and isinstance(obj, np.ndarray):
            return self._ndarray(np, obj)
        if pd is not None and isinstance(obj, (pd.DataFrame, pd.Series)):
            return self._pandas(pd, obj)
        if isinstance(obj, tuple) and hasattr(type(obj), "_fields"):  # namedtuple
            return self._object(cls, zip(obj._fields, obj))
        if isinstance(obj, (list, tuple)):
            tag = "tuple" if isinstance(obj, tuple) else "list"
            return {"$": tag, "class": cls, "items": [self.visit(item) for item in obj]}
        if isinstance(obj, (set, frozenset)):
            tag = "frozenset" if isinstance(obj, frozenset) else "set"
            return {"$": tag, "class": cls, "items": sorted((self.visit(item) for item in obj), key=_sort_key)}
        if isinstance(obj, collections.abc.Mapping):
            pairs = [[self.visit(k), self.visit(v)] for k, v in obj.items()]
            return {"$": "dict", "class": cls, "items": sorted(pairs, key=_sort_key)}
        if dataclasses.is_dataclass(obj):
            return self._object(cls, ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)))
        attrs = _attributes(obj)
        if attrs is not None:
            return self._object(cls, attrs.items())
        return {"$": "repr", "class": cls, "repr": _safe_repr(obj)}

    def _object(self, cls: str, attrs) -> dict:
        return {"$": "object", "class": cls, "attrs": {name: self.visit(value) for name, value in attrs}}

    def _ndarray(self, np, array) -> dict:
        node = {"$": "ndarray", "class": qualname(type(array)), "dtype": str(array.dtype), "shape": list(array.shape)}
        if array.size <= LARGE_ARRAY or array.dtype.hasobject:  # object arrays have no stable bytes to hash
            node["values"] = self._array_values(np, array)
            return node
        flat = array.reshape(-1)
        index = np.linspace(0, flat.size - 1, SAMPLE_SIZE).astype(np.intp)
        node.update(
            sha256=hashlib.sha256(array.tobytes()).hexdigest(),
            exact=array.dtype.kind not in "fc",  # inexact arrays may differ by rounding: compared by stats
            sample={"index": index.tolist(), "values": self._array_values(np, flat[index])},
        )
        if array.dtype.kind in "biufc":
            node["stats"] = _array_stats(np, array)
        return node

    def _array_values(self, np, array):
        values = _fast_values(np, array)
        return self._nested(np, array.tolist(), array.ndim) if values is None else values

    def _nested(self, np, values, ndim: int):
        if ndim == 0:
            return self.visit(_python_value(np, values) if isinstance(values, np.generic) else values)
        return [self._nested(np, value, ndim - 1) for value in values]

    def _pandas(self, pd, obj) -> dict:
        node = {"$": "DataFrame" if isinstance(obj, pd.DataFrame) else "Series",
                "class": qualname(type(obj)), "index": self.visit(obj.index.to_numpy())}
        if isinstance(obj, pd.Series):
            node.update(name=self.visit(obj.name), values=self.visit(obj.to_numpy()))
        else:
            node.update(columns=self.visit(obj.columns.to_numpy()),
                        values=[self.visit(obj.iloc[:, i].to_numpy()) for i in range(obj.shape[1])])
        return node
