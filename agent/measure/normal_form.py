"""Turn a workload's return value into a JSON-able "normal form" that the parent can compare.

This file runs inside the target's own interpreter, loaded by path, so it imports only the stdlib.
numpy and pandas values are recognised only when the workload has already imported those packages.

Shape of the normal form:
- plain JSON scalars stand for themselves: None, bool, str, ints within +-2**53 and finite floats;
- every other value is a tagged node ``{"$": tag, ...}``; containers keep their exact class in "class";
- untagged JSON objects are records of named fields (object attributes, array statistics) and
  untagged JSON lists are positional (ndarray values, dict [key, value] pairs, DataFrame columns).
Sets and dicts are sorted by the JSON text of their normalised elements, so iteration order never matters.

The result comes from untrusted code, so a value is known by its real type, ``type(x)``, which it cannot fake
(``isinstance`` believes a ``__class__`` property), never by the names its class gives itself:
- a class name is the one its class claims only if that name leads back to the class (or the class is a C type,
  whose names Python code cannot change); any other name is shown as "unverified <name>", so no class can take
  the name of another, and only dict itself is named "dict";
- an instance of a subclass of a scalar type (int, float, str, complex, Decimal, a numpy scalar) is a
  ``{"$": "subclass", "class": ..., "value": ...}`` node whose value the base type's own code reads from it,
  whatever its methods claim; a subclass of a container is its own class, with what its iteration yields;
- object state is what the instance holds (its slots and its __dict__, read with the interpreter's own
  descriptors), never what the class's properties or __getattribute__ answer.
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
_UNVERIFIED = "unverified "   # prefix of a class name that does not lead back to its class

# A type's own fields, read past any metaclass that redefines them.
_MRO = type.__dict__["__mro__"].__get__
_NAMESPACE = type.__dict__["__dict__"].__get__
_FLAGS = type.__dict__["__flags__"].__get__
_MODULE = type.__dict__["__module__"].__get__
_QUALNAME = type.__dict__["__qualname__"].__get__
_C_TYPE = 1 << 8              # Py_TPFLAGS_IMMUTABLETYPE: a type made by C code, its names fixed; never a Python class
_ABSENT = object()

# Values best identified by their repr: their attributes are implementation details or absent.
_REPR_TYPES = (
    datetime.date, datetime.time, datetime.timedelta, datetime.tzinfo, pathlib.PurePath, uuid.UUID,
    range, re.Pattern, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
    types.MethodType, functools.partial,
)

# Scalar types whose subclasses show the value the base type's own code reads from them, as a plain instance.
_SCALAR_BASES = (
    (int, int.__index__),
    (float, float.__float__),
    (str, str.__str__),
    (complex, lambda z: complex(complex.real.__get__(z), complex.imag.__get__(z))),
    (decimal.Decimal, lambda d: decimal.Decimal(decimal.Decimal.__str__(d))),
)


def normalize(obj) -> object:
    """Return JSON-serialisable data that identifies the value of `obj`."""
    return _Normalizer().visit(obj)


def dumps(obj) -> str:
    return json.dumps(normalize(obj), sort_keys=True, allow_nan=False)


def _plain_str(text) -> str | None:
    return str.__str__(text) if issubclass(type(text), str) else None


def _class_name(cls: type) -> str:
    """`module.qualname` (bare for builtins), prefixed with _UNVERIFIED unless it is true of `cls`."""
    try:
        module = _plain_str(_MODULE(cls))
    except AttributeError:  # a class may delete its __module__
        module = None
    qualname = _plain_str(_QUALNAME(cls))
    name = qualname if module in (None, "builtins") else f"{module}.{qualname}"
    return name if _FLAGS(cls) & _C_TYPE or _importable_as(cls, module, qualname) else _UNVERIFIED + name


def _importable_as(cls: type, module: str | None, qualname: str) -> bool:
    """Whether `module.qualname` leads to `cls` (never in builtins, where no Python class lives)."""
    if module in (None, "builtins"):
        return False
    found = sys.modules.get(module)
    try:
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:  # a module's or a metaclass's __getattr__ may raise anything
        return False
    return found is cls


def _is_interpreter_descriptor(value) -> bool:
    return type(value) is types.GetSetDescriptorType or type(value) is types.MemberDescriptorType


def _layout(cls: type) -> tuple:
    """Where instances of `cls` hold state: the slots of its Python classes as (name, descriptor), and the
    first __dict__ entry of its MRO (the interpreter's descriptor, unless a class replaced it) or _ABSENT."""
    slots, instance_dict = {}, _ABSENT
    for base in _MRO(cls):
        namespace = _NAMESPACE(base)
        if not _FLAGS(base) & _C_TYPE:  # a C type's members are its implementation, not a value's state
            for name, value in namespace.items():
                if type(value) is types.MemberDescriptorType:
                    slots.setdefault(name, value)  # a slot declared again in a subclass shadows the base's
        if instance_dict is _ABSENT:
            instance_dict = namespace.get("__dict__", _ABSENT)
    return list(slots.items()), instance_dict


_sort_key = json.JSONEncoder(sort_keys=True).encode  # json.dumps(node, sort_keys=True), without a new encoder per call


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


def _python_value(np, scalar):
    """The Python value of a numpy scalar; long doubles have no exact equivalent and become float/complex."""
    value = np.generic.item(scalar)
    if issubclass(type(value), np.generic):
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


class _Normalizer:
    def __init__(self):
        self._active = {}  # id -> depth of each container on the path from the root to the current value
        self._names, self._layouts = {}, {}  # id(class) -> (class, its _class_name / _layout)

    def visit(self, obj):
        cls = type(obj)
        if obj is None or cls is bool or cls is str:
            return obj
        if cls is int:
            return _int(obj)
        if cls is float:
            return _float(obj)
        if issubclass(cls, enum.Enum):
            return {"$": "enum", "class": self._name(cls), "name": self.visit(obj.name), "value": self.visit(obj.value)}
        node = self._atom(obj, cls)
        return self._container(obj, cls) if node is None else node

    def _per_class(self, cache: dict, cls: type, compute):
        """compute(cls), once: keyed by id, as a metaclass may redefine __eq__ and __hash__; the class is kept
        in the entry so that its id stays its own."""
        entry = cache.get(id(cls))
        if entry is None:
            entry = cache[id(cls)] = (cls, compute(cls))
        return entry[1]

    def _name(self, cls: type) -> str:
        return self._per_class(self._names, cls, _class_name)

    def _subclass(self, cls: type, value) -> dict:
        return {"$": "subclass", "class": self._name(cls), "value": value}

    def _atom(self, obj, cls: type):
        """Normal form of a value that cannot contain other values, or None."""
        np = sys.modules.get("numpy")
        if np is not None and issubclass(cls, np.generic):
            dtype = str(np.generic.dtype.__get__(obj))
            node = {"$": "npscalar", "dtype": dtype, "v": self.visit(_python_value(np, obj))}
            return node if _FLAGS(cls) & _C_TYPE else self._subclass(cls, node)
        if cls is complex:
            return {"$": "complex", "real": _float(obj.real), "imag": _float(obj.imag)}
        if cls is decimal.Decimal:
            return {"$": "decimal", "v": str(obj)}
        if cls is fractions.Fraction:
            return {"$": "fraction", "v": f"{_int_text(obj.numerator)}/{_int_text(obj.denominator)}"}
        for base, plain in _SCALAR_BASES:
            if issubclass(cls, base):
                return self._subclass(cls, self.visit(plain(obj)))
        if issubclass(cls, (bytes, bytearray, memoryview)):
            base = bytes if issubclass(cls, bytes) else bytearray if issubclass(cls, bytearray) else memoryview
            return {"$": "bytes", "class": self._name(cls), "hex": base.hex(obj)}
        if issubclass(cls, type):  # a class: named as any class is, not by its own (meta)class's repr
            return {"$": "repr", "class": self._name(cls), "repr": f"<class '{self._name(obj)}'>"}
        if issubclass(cls, _REPR_TYPES):
            return {"$": "repr", "class": self._name(cls), "repr": _safe_repr(obj)}
        return None

    def _container(self, obj, cls: type):
        key = id(obj)
        if key in self._active:
            return {"$": "cycle", "depth": self._active[key]}
        if len(self._active) >= MAX_DEPTH:
            return {"$": "too_deep", "class": self._name(cls)}
        self._active[key] = len(self._active)
        try:
            return self._expand(obj, cls)
        finally:
            del self._active[key]

    def _expand(self, obj, cls: type):
        name = self._name(cls)
        np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
        if np is not None and issubclass(cls, np.ndarray):
            return self._ndarray(np, obj, name)
        if pd is not None and issubclass(cls, (pd.DataFrame, pd.Series)):
            return self._pandas(pd, obj, name)
        if issubclass(cls, BaseException):  # its message may come from any argument's code: the arguments go too
            args = [self.visit(arg) for arg in BaseException.args.__get__(obj)]
            return {"$": "exception", "class": name, "message": _safe_str(obj), "args": args}
        # a container by what it holds, read through its built-in base: a subclass's own __iter__ is its code, which
        # may do anything (astropy's HDUList reads the rest of a file when iterated, mid-way through a read)
        if issubclass(cls, tuple) and hasattr(cls, "_fields"):  # namedtuple
            return self._object(name, zip(cls._fields, tuple.__iter__(obj)))
        if issubclass(cls, (list, tuple, collections.deque)):  # a deque by its items: its repr runs theirs
            tag = "tuple" if issubclass(cls, tuple) else "list"
            base = tuple if tag == "tuple" else list if issubclass(cls, list) else collections.deque
            return {"$": tag, "class": name, "items": [self.visit(item) for item in base.__iter__(obj)]}
        if issubclass(cls, (set, frozenset)):
            tag = "frozenset" if issubclass(cls, frozenset) else "set"
            base = frozenset if tag == "frozenset" else set
            return {"$": tag, "class": name,
                    "items": sorted((self.visit(item) for item in base.__iter__(obj)), key=_sort_key)}
        if issubclass(cls, collections.abc.Mapping):
            return {"$": "dict", "class": name, "items": sorted(self._pairs(obj, cls), key=_sort_key)}
        state = self._state(obj, cls)
        if dataclasses.is_dataclass(cls):
            held = state or {}
            return self._object(name, ((f.name, held[f.name]) for f in dataclasses.fields(cls) if f.name in held))
        if state is not None:
            return self._object(name, state.items())
        return {"$": "repr", "class": name, "repr": _safe_repr(obj)}

    def _pairs(self, mapping, cls: type) -> list:
        """[key, value] normal forms: a dict's (or dict subclass's) own items; for other mappings, the keys iteration
        gives and their values."""
        items = dict.items(mapping) if issubclass(cls, dict) else [(key, mapping[key]) for key in list(mapping)]
        return [[self.visit(key), self.visit(value)] for key, value in items]

    def _state(self, obj, cls: type) -> dict | None:
        """What the instance holds in its slots and __dict__, or None if it has neither."""
        slots, instance_dict = self._per_class(self._layouts, cls, _layout)
        state = {}
        for name, slot in slots:
            try:
                state[name] = slot.__get__(obj, cls)
            except (AttributeError, TypeError):  # slot never assigned, or a descriptor copied from another class
                pass
        if instance_dict is _ABSENT:
            return state if slots else None
        if not _is_interpreter_descriptor(instance_dict):  # the class answers for __dict__ with its own code:
            state["__dict__"] = getattr(obj, "__dict__", None)  # shown under that name, unlike any plain state
            return state
        held = instance_dict.__get__(obj, cls)
        if type(held) is dict:
            state.update((str(key), value) for key, value in held.items())
        return state

    def _object(self, cls: str, attrs) -> dict:
        return {"$": "object", "class": cls, "attrs": {name: self.visit(value) for name, value in attrs}}

    def _ndarray(self, np, array, cls: str) -> dict:
        node = {"$": "ndarray", "class": cls, "dtype": str(array.dtype), "shape": list(array.shape)}
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
            return self.visit(_python_value(np, values) if issubclass(type(values), np.generic) else values)
        return [self._nested(np, value, ndim - 1) for value in values]

    def _pandas(self, pd, obj, cls: str) -> dict:
        frame = issubclass(type(obj), pd.DataFrame)
        node = {"$": "DataFrame" if frame else "Series", "class": cls, "index": self.visit(obj.index.to_numpy())}
        if frame:
            node.update(columns=self.visit(obj.columns.to_numpy()),
                        values=[self.visit(obj.iloc[:, i].to_numpy()) for i in range(obj.shape[1])])
        else:
            node.update(name=self.visit(obj.name), values=self.visit(obj.to_numpy()))
        return node
