import collections
import dataclasses
import decimal
import enum
import fractions
import itertools
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from perfagent.measure import normal_form
from perfagent.measure.compare import compare_results
from perfagent.measure.normal_form import dumps, normalize

NORMAL_FORM_FILE = Path(normal_form.__file__)


def roundtrip(obj):
    """What the parent receives from the child: the normal form after a trip through JSON text."""
    return json.loads(dumps(obj))


def compare(expected, actual, **tolerance):
    return compare_results(roundtrip(expected), roundtrip(actual), **tolerance)


def assert_same(expected, actual, **tolerance):
    result = compare(expected, actual, **tolerance)
    assert result.equal, result.detail
    assert result.detail == ""


def assert_differs(expected, actual, detail: str, **tolerance):
    result = compare(expected, actual, **tolerance)
    assert not result.equal
    assert result.detail == detail


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Slotted:
    __slots__ = ("a", "__hidden")

    def __init__(self, a, hidden):
        self.a = a
        self.__hidden = hidden


class Plain:
    def __init__(self, **attrs):
        self.__dict__.update(attrs)


Pair = collections.namedtuple("Pair", "left right")


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


SCALARS = [
    None, True, 0, -7, 2**53, -(2**100), 0.1, -0.0, 1e308, math.nan, math.inf, -math.inf, 1 + 2j,
    complex(math.nan, math.inf), "", "héllo\n", b"\x00\xff", bytearray(b"ab"), decimal.Decimal("1.10"),
    fractions.Fraction(-3, 4),
]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_round_trip_equal(value):
    assert_same(value, value)


def test_normal_form_is_strict_json():
    text = dumps([math.nan, math.inf, 2**80, {1: set()}])
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == normalize([math.nan, math.inf, 2**80, {1: set()}])


def test_big_ints_are_exact():
    assert_differs(2**100, 2**100 + 1, f"result: {2**100} != {2**100 + 1}")
    assert_differs(2**53 - 1, 2**53, f"result: {2**53 - 1} != {2**53}")


def test_int_float_and_bool_are_different_types():
    assert_differs(1, 1.0, "result: 1 != 1.0")
    assert_differs(True, 1, "result: True != 1")
    assert_differs([0], [False], "result[0]: 0 != False")


def test_float_tolerance_boundary():
    assert_same(1.0, 1.0 + 5e-10)
    assert_differs(1.0, 1.0 + 2e-9, "result: 1.0 != 1.000000002")
    assert_same(0.0, 5e-13)
    assert_differs(0.0, 5e-12, "result: 0.0 != 5e-12")
    assert_same(1.0, 1.01, rel_tol=0.02)
    assert_same(-0.0, 0.0)


def test_nan_and_infinities():
    assert_same([math.nan, math.inf, -math.inf], [math.nan, math.inf, -math.inf])
    assert_differs(math.inf, -math.inf, "result: inf != -inf")
    assert_differs(math.nan, 1.0, "result: nan != 1.0")
    assert_differs(1e308, math.inf, "result: 1e+308 != inf")


def test_complex_tolerance():
    assert_same(1 + 2j, complex(1, 2 + 1e-12))
    assert_differs(1 + 2j, 1 + 2.1j, "result: (1+2j) != (1+2.1j)")


def test_strings_bytes_decimal_fraction_are_exact():
    assert_differs("abc", "abd", "result: 'abc' != 'abd'")
    assert_differs(b"ab", b"ac", "result: b'ab' != b'ac'")
    assert_differs(b"ab", bytearray(b"ab"), "result: b'ab' != bytearray(b'ab')")
    assert_differs(decimal.Decimal("1.1"), decimal.Decimal("1.10"), "result: Decimal('1.1') != Decimal('1.10')")
    assert_differs(fractions.Fraction(1, 3), fractions.Fraction(1, 4), "result: Fraction('1/3') != Fraction('1/4')")


def test_nested_path_points_at_first_difference():
    expected = {"totals": [0.1, 0.2, 0.3, 0.5], "name": "x"}
    assert_differs(expected, {**expected, "totals": [0.1, 0.2, 0.3, 0.75]}, "result['totals'][3]: 0.5 != 0.75")


def test_sequences_compare_type_and_length():
    assert_differs([1, 2], (1, 2), "result: [1, 2] != (1, 2)")
    assert_differs([1, 2], [1, 2, 3], "result: length 2 != 3: [1, 2] != [1, 2, 3]")
    assert_differs((1,), [1], "result: (1,) != [1]")
    assert_same(collections.deque([1]), collections.deque([1]))


def test_dict_insertion_order_is_irrelevant_and_keys_may_be_tuples():
    assert_same({(1, 2): "a", (0, 5): "b", "k": None}, {"k": None, (0, 5): "b", (1, 2): "a"})
    assert_differs({(1, 2): "a"}, {(1, 2): "b"}, "result[(1, 2)]: 'a' != 'b'")
    assert_differs({(1, 2): "a", 3: "c"}, {3: "c"}, "result: missing key (1, 2)")
    assert_differs({3: "c"}, {3: "c", (1, 2): "a"}, "result: unexpected key (1, 2)")
    assert_differs({1: "a"}, {1.0: "a"}, "result: missing key 1")


def test_dict_subclass_is_a_different_type():
    result = compare({"a": 1}, collections.OrderedDict(a=1))
    assert not result.equal
    assert result.detail.startswith("result: type dict != collections.OrderedDict")


def test_a_containers_own_iteration_code_never_runs():
    """Containers are read through their built-in base: a subclass's __iter__ or __getitem__ is its code, which may
    change what the program does next (astropy's HDUList reads the rest of its file when iterated)."""
    ran = []

    class Lazy(list):
        def __iter__(self):
            ran.append("__iter__")
            return super().__iter__()

    class Keyed(dict):
        def __iter__(self):
            ran.append("keys")
            return super().__iter__()

        def __getitem__(self, key):
            ran.append("__getitem__")
            return super().__getitem__(key)

    class Tagged(set):
        def __iter__(self):
            ran.append("set")
            return super().__iter__()

    for value in (Lazy([1, 2]), Keyed(a=1), Tagged({3}), Pair(Lazy([1]), 2)):
        assert normalize(value) == normalize(value)
    assert ran == []
    assert normalize(Lazy([1, 2]))["items"] == normalize([1, 2])["items"]
    assert normalize(Keyed(a=1))["items"] == normalize({"a": 1})["items"]


def test_set_order_is_irrelevant():
    first, second = set(), set()
    for value in (8, 16):
        first.add(value)
    for value in (16, 8):
        second.add(value)
    assert list(first) != list(second)  # same elements, different iteration order
    assert dumps(first) == dumps(second)
    assert_same({"b", "a", (1, "x")}, {(1, "x"), "a", "b"})


def test_set_difference_shows_both_sets():
    assert_differs({1, 2, 3}, {1, 2, 4}, "result: {1, 2, 3} != {1, 2, 4}")
    assert_differs({1}, {1, 2}, "result: {1} != {1, 2}")
    assert_differs(frozenset({1}), {1}, "result: frozenset({1}) != {1}")
    assert_same({1.0, 2.0}, {1.0 + 1e-12, 2.0})


def test_dataclass_field_change():
    qualname = f"{__name__}.Point"
    assert_same(Point(1, 2.0), Point(1, 2.0))
    assert_differs([Point(1, 2.0)], [Point(1, 2.5)], "result[0].y: 2.0 != 2.5")
    assert_differs(Point(1, 2.0), (1, 2.0), f"result: {qualname}(x=1, y=2.0) != (1, 2.0)")


def test_namedtuple_fields_and_type():
    assert_differs(Pair(1, [2]), Pair(1, [3]), "result.right[0]: 2 != 3")
    result = compare(Pair(1, 2), (1, 2))
    assert not result.equal and result.detail.startswith("result: ")


def test_slots_and_dict_objects():
    assert_same(Slotted(1, "h"), Slotted(1, "h"))
    assert_differs(Slotted(1, "h"), Slotted(1, "g"), "result._Slotted__hidden: 'h' != 'g'")
    assert_differs(Plain(a=1), Plain(a=1, b=2), "result: unexpected field 'b' = 2")
    assert_differs(Plain(a={"k": 1}), Plain(a={"k": 2}), "result.a['k']: 1 != 2")


def test_enums():
    assert_same(Color.RED, Color.RED)
    assert_differs(Color.RED, Color.BLUE, f"result: {__name__}.Color.RED != {__name__}.Color.BLUE")
    assert_differs(Level.LOW, 1, f"result: {__name__}.Level.LOW != 1")


def test_exceptions_compare_type_and_message():
    assert_same(ValueError("bad input"), ValueError("bad input"))
    assert_differs(ValueError("bad"), ValueError("worse"), "result: ValueError('bad') != ValueError('worse')")
    assert_differs(ValueError("bad"), TypeError("bad"), "result: ValueError('bad') != TypeError('bad')")


def test_other_objects_fall_back_to_repr_without_addresses():
    assert_same(object(), object())
    assert_differs(itertools.count(3), itertools.count(4), "result: count(3) != count(4)")
    assert normalize(len) == {"$": "repr", "class": "builtin_function_or_method", "repr": "<built-in function len>"}


def test_cycles_are_back_references():
    looped = [1]
    looped.append(looped)
    assert normalize(looped)["items"][1] == {"$": "cycle", "depth": 0}
    again = [1]
    again.append(again)
    assert_same(looped, again)
    assert_differs(looped, [1, [1]], "result[1]: <cycle to depth 0> != [1]")

    node = Plain(name="n")
    node.me = {"self": node}
    assert roundtrip(node)["attrs"]["me"]["items"][0][1] == {"$": "cycle", "depth": 0}

    error = ValueError()
    error.args = (error,)
    assert roundtrip(error)["args"] == [{"$": "cycle", "depth": 0}]


def test_shared_references_are_not_cycles():
    shared = [1]
    assert_same([shared, shared], [[1], [1]])


def test_depth_is_capped():
    deep = []
    for _ in range(5 * normal_form.MAX_DEPTH):
        deep = [deep]
    text = dumps(deep)
    assert '"too_deep"' in text
    assert_same(deep, deep)


# numpy


def test_numpy_arrays_equal():
    array = np.arange(12, dtype=np.int64).reshape(3, 4)
    assert_same(array, array.copy())
    assert_same(np.array(["a", "bc"]), np.array(["a", "bc"]))
    assert_same(np.array([1 + 2j, 3j]), np.array([1 + 2j, 3j]))


def test_numpy_dtype_mismatch():
    assert_differs(np.arange(3, dtype=np.int32), np.arange(3, dtype=np.int64), "result: dtype int32 != int64")
    assert_differs(np.zeros(2), np.zeros(2, dtype=np.float32), "result: dtype float64 != float32")


def test_numpy_shape_mismatch():
    assert_differs(np.zeros((2, 3)), np.zeros((3, 2)), "result: shape (2, 3) != (3, 2)")


def test_numpy_values_tolerance():
    base = np.linspace(0.0, 1.0, 12).reshape(3, 4)
    assert_same(base, base * (1 + 1e-12))
    changed = base.copy()
    changed[1, 2] += 1e-3
    assert_differs(base, changed, f"result[1][2]: {base[1, 2].item()!r} != {changed[1, 2].item()!r}")


def test_numpy_nan_positions():
    assert_same(np.array([1.0, np.nan, np.inf]), np.array([1.0, np.nan, np.inf]))
    assert_differs(np.array([1.0, np.nan]), np.array([np.nan, 1.0]), "result[0]: 1.0 != nan")


def test_numpy_big_ints_in_arrays_are_exact():
    assert_differs(np.array([2**62], dtype=np.int64), np.array([2**62 + 1], dtype=np.int64),
                   f"result[0]: {2**62} != {2**62 + 1}")


def test_numpy_scalars_carry_dtype():
    assert_same(np.float64(0.5), np.float64(0.5))
    assert_differs(np.float64(0.5), np.float32(0.5), "result: float64(0.5) != float32(0.5)")
    assert_differs(np.float64(0.5), 0.5, "result: float64(0.5) != 0.5")
    assert_differs(np.int64(3), np.int64(4), "result: int64(3) != int64(4)")


def test_numpy_object_arrays_keep_element_types():
    assert_differs(np.array([1, "a"], dtype=object), np.array([1.0, "a"], dtype=object), "result[0]: 1 != 1.0")
    looped = np.empty(1, dtype=object)
    looped[0] = looped
    assert roundtrip(looped)["values"] == [{"$": "cycle", "depth": 0}]


def test_large_arrays_are_summarised():
    rng = np.random.default_rng(0)
    floats = rng.random(normal_form.LARGE_ARRAY + 1)
    node = roundtrip(floats)
    assert "values" not in node and len(node["sha256"]) == 64 and node["stats"]["nan"] == 0
    assert_same(floats, floats * (1 + 1e-13))  # bytes differ, values within tolerance
    sampled = floats.copy()
    sampled[node["sample"]["index"][1]] = 2.0
    assert compare(floats, sampled).detail.startswith(f"result.flat[{node['sample']['index'][1]}]: ")
    off_sample = floats.copy()
    off_sample[1] = 5.0
    assert compare(floats, off_sample).detail.startswith("result.stats.max: ")

    ints = np.arange(normal_form.LARGE_ARRAY + 1)
    changed = ints.copy()
    changed[1] = -1
    assert compare(ints, changed).detail.startswith("result: contents differ (sha256 ")


# robustness and details


def test_long_values_are_truncated_in_detail():
    result = compare(list(range(1000)), list(range(999)) + [-1])
    assert result.detail.startswith("result[999]: 999 != -1")
    result = compare("x" * 10_000, "y" * 10_000)
    assert not result.equal and len(result.detail) < 300


def test_malformed_input_is_unequal_not_an_error():
    result = compare_results({"$": "list", "class": "list"}, {"$": "list", "class": "list"})
    assert not result.equal and "malformed" in result.detail
    not_items = {"$": "dict", "class": "dict", "items": 3}
    assert not compare_results(not_items, dict(not_items)).equal


# results that pose as another value: the candidate's class may claim any name and override any method


def posing_as(base, claimed=None, **namespace):
    """A class derived from `base` that names itself as `claimed` (default: `base`), its names built at run time."""
    claimed = claimed or base
    cls = type("Posing", (base,), namespace)
    setattr(cls, "__mod" + "ule__", getattr(claimed, "__mod" + "ule__"))
    setattr(cls, "__qual" + "name__", getattr(claimed, "__qual" + "name__"))
    return cls


def lying(value, *dunders):
    """Methods named `dunders` that answer as `value` would, whatever the instance holds."""
    return {name: (lambda self, *args, _name=name: getattr(value, _name)(*args)) for name in dunders}


def test_lazy_dict_posing_as_dict_is_not_that_dict():
    asked = []

    def compute(self):
        asked.append(1)  # the expensive work, done only when the result is inspected
        return {"a": 1, "b": 2}

    lazy = posing_as(dict, __iter__=lambda self: iter(compute(self)),
                     __getitem__=lambda self, key: compute(self)[key], __len__=lambda self: len(compute(self)),
                     keys=lambda self: compute(self).keys(), items=lambda self: compute(self).items(),
                     values=lambda self: compute(self).values())()
    assert dict.__len__(lazy) == 0 and not asked
    result = compare({"a": 1, "b": 2}, lazy)
    assert not result.equal
    assert result.detail == ("result: type dict != unverified dict: "
                             "{'a': 1, 'b': 2} != unverified dict({})")  # what it holds, not what its code claims
    assert not asked  # and the comparison never ran that code


SCALAR_LIES = {  # base: (value it holds, value it claims, the methods that claim it)
    int: (0, 42, ("__int__", "__index__", "__float__", "__repr__", "__str__", "__eq__", "__hash__", "__format__")),
    float: (0.0, 0.5, ("__float__", "__repr__", "__str__", "__eq__", "__hash__", "__format__", "__int__")),
    str: ("", "done", ("__str__", "__repr__", "__eq__", "__hash__", "__format__", "__len__", "__iter__")),
    bytes: (b"", b"done", ("__bytes__", "__repr__", "__eq__", "__hash__", "__len__", "__iter__", "hex")),
}


@pytest.mark.parametrize("base", SCALAR_LIES, ids=lambda base: base.__name__)
def test_scalar_subclass_posing_as_its_base_shows_what_it_holds(base):
    held, claimed, dunders = SCALAR_LIES[base]
    liar = posing_as(base, **lying(claimed, *dunders))
    assert not compare(claimed, liar(held)).equal
    assert not compare(claimed, liar(claimed)).equal  # even holding the right value it is another type
    assert not compare(liar(held), liar(claimed)).equal  # its value is read by the base type's own code
    assert compare(liar(claimed), liar(claimed)).equal


def test_scalar_subclass_detail_names_its_class():
    assert_differs(42, posing_as(int, **lying(42, "__int__", "__index__"))(0), "result: 42 != unverified int(0)")


class Meters(float):
    pass


def test_honest_scalar_subclass_compares_by_value_within_tolerance():
    assert_same(Meters(1.0), Meters(1.0 + 1e-12))
    assert_differs(Meters(1.0), Meters(2.0), "result: 1.0 != 2.0")
    assert_differs(1.0, Meters(1.0), f"result: 1.0 != {__name__}.Meters(1.0)")


def test_a_subclass_node_never_equals_a_plain_value():
    node = {"$": "subclass", "class": "int", "value": 5}  # a name normalize never gives a subclass
    assert not compare_results(5, node).equal and not compare_results(node, 5).equal
    malformed = {"$": "subclass", "class": "int"}
    result = compare_results(malformed, malformed)
    assert not result.equal and "malformed" in result.detail


def test_numpy_scalar_subclass_posing_as_numpy_scalar():
    liar = posing_as(np.float64, item=lambda self: 0.5, __float__=lambda self: 0.5, __repr__=lambda self: "0.5")
    assert not compare(np.float64(0.5), liar(0.25)).equal
    assert not compare(liar(0.5), liar(0.25)).equal


@pytest.mark.parametrize("base", [list, tuple, set, frozenset], ids=lambda base: base.__name__)
def test_container_subclass_whose_iteration_lies_is_another_type(base):
    claimed = base([1, 2, 3])
    liar = posing_as(base, __iter__=lambda self: iter(claimed), __len__=lambda self: 3,
                     __eq__=lambda self, other: claimed == other, __hash__=lambda self: hash(claimed))()
    assert base.__len__(liar) == 0  # it holds nothing
    result = compare(claimed, liar)
    assert not result.equal
    assert result.detail.startswith(f"result: type {base.__name__} != unverified {base.__name__}")


def test_object_whose_class_property_claims_dict_is_not_a_dict():
    items = {"a": 1}
    claims = posing_as(object, dict, __class__=property(lambda self: dict), __iter__=lambda self: iter(items),
                       __getitem__=lambda self, key: items[key], __len__=lambda self: len(items),
                       keys=lambda self: items.keys(), items=lambda self: items.items(),
                       __init__=lambda self, held: setattr(self, "held", held))
    assert isinstance(claims(1), dict)  # isinstance believes __class__
    assert not compare(items, claims(1)).equal
    assert not compare(claims(1), claims(2)).equal  # known by what it holds, not by the items it claims


def test_metaclass_that_claims_equality_with_str_does_not_make_a_str():
    meta = type("Meta", (type,), {"__eq__": lambda cls, other: True, "__hash__": type.__hash__})
    posing = meta("Posing", (str,), {"__str__": lambda self: "done"})
    assert posing in (bool, str)
    assert not compare("done", posing("done")).equal


def test_mapping_that_is_not_a_dict_posing_as_dict():
    items = {"a": 1}
    mapping = posing_as(collections.abc.Mapping, dict, __iter__=lambda self: iter(items),
                        __getitem__=lambda self, key: items[key], __len__=lambda self: len(items))()
    assert not compare(items, mapping).equal


def test_arguments_that_pose_as_an_exception_message():
    poser = posing_as(object, str, __str__=lambda self: "bad input", __repr__=lambda self: "'bad input'")
    assert not compare(ValueError("bad input"), ValueError(poser())).equal
    assert not compare(collections.deque(["bad input"]), collections.deque([poser()])).equal


class Record:
    def __init__(self, total):
        self.total = total


FORGED_NAMES = {  # an honest value, and a cheap stand-in whose class claims the honest value's class name
    "object": (Plain(a=1), lambda: posing_as(object, Plain, __dict__=property(lambda self: {"a": 1}))()),
    "enum": (Color.RED, lambda: enum.Enum("Col" + "or", {"RED": 1}, module=__name__, qualname="Col" + "or").RED),
    "namedtuple": (Pair(1, 2), lambda: posing_as(tuple, Pair, _fields=("left", "right"))((1, 2))),
    "exception": (ValueError("bad"), lambda: posing_as(Exception, ValueError)("bad")),
    "OrderedDict": (collections.OrderedDict(a=1), lambda: posing_as(dict, collections.OrderedDict)(a=1)),
    "class object": (Record, lambda: posing_as(object, Record)),
}


@pytest.mark.parametrize("kind", FORGED_NAMES)
def test_a_class_claiming_another_class_name_is_not_that_class(kind):
    honest, make_forgery = FORGED_NAMES[kind]
    assert not compare(honest, make_forgery()).equal


def test_honest_classes_that_cannot_be_imported_by_name_still_compare_by_value():
    local = type("Local", (), {})
    first, second, third = local(), local(), local()
    first.v, second.v, third.v = 1, 1, 2
    assert_same(first, second)
    assert_differs(first, third, "result.v: 1 != 2")
    assert roundtrip(first)["class"] == f"unverified {__name__}.Local"


@pytest.fixture
def importable_record(monkeypatch):
    """Makes a class importable as this module's `Record`, as the baseline's and then the candidate's code would."""
    def install(**namespace):
        cls = type("Record", (), {"__module__": __name__, "__init__": Record.__init__, **namespace})
        monkeypatch.setattr(sys.modules[__name__], "Record", cls)
        return cls
    return install


HIDING = {  # a class body that shows {"total": 42} however the instance's state was left
    "__dict__ property": lambda shown: {"__di" + "ct__": property(lambda self: shown)},
    "__getattribute__": lambda shown: {"__getattri" + "bute__": lambda self, name: (
        shown if name == "__dict__" else object.__getattribute__(self, name))},
}


@pytest.mark.parametrize("trick", HIDING)
def test_state_is_read_past_a_class_that_hides_it(importable_record, trick):
    expected = roundtrip(importable_record()(42))
    hiding = importable_record(**HIDING[trick]({"total": 42}))(0)
    assert hiding.__dict__ == {"total": 42}
    assert not compare_results(expected, roundtrip(hiding)).equal


def test_a_slot_replaced_by_a_property_is_not_state(importable_record):
    expected = roundtrip(importable_record(__slots__=("total",))(42))
    replaced = importable_record(__slots__=("total",))
    setattr(replaced, "to" + "tal", property(lambda self: 42))  # the slot's descriptor is gone from the class
    assert not compare_results(expected, roundtrip(replaced.__new__(replaced))).equal


# the child side runs without perfagent


CHILD = textwrap.dedent("""
    import importlib.abc, importlib.util, sys

    class StdlibOnly(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] not in sys.stdlib_module_names:
                raise ImportError(f"not stdlib: {name}")

    sys.meta_path.insert(0, StdlibOnly())
    spec = importlib.util.spec_from_file_location("child_normal_form", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    words = {f"w{i}" for i in range(50)}
    value = {(1, 2): words, "big": 2**80, "nan": float("nan"), "raw": b"\\x01", "error": KeyError("k")}
    print(module.dumps(value))
""")


def test_normal_form_is_standalone_in_an_isolated_interpreter():
    value = {(1, 2): {f"w{i}" for i in range(50)}, "big": 2**80, "nan": math.nan, "raw": b"\x01",
             "error": KeyError("k")}
    child = subprocess.run([sys.executable, "-I", "-c", CHILD, str(NORMAL_FORM_FILE)],
                           capture_output=True, text=True, timeout=60, cwd="/")
    assert child.returncode == 0, child.stderr
    # the child has its own string hash seed, so its set iteration order differs from ours
    assert child.stdout.strip() == dumps(value)
    assert compare_results(json.loads(child.stdout), roundtrip(value)).equal
