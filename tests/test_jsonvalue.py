"""hostrt.jsonvalue: the plain-JSON rule at the host boundary, against
values built by someone who has read its source."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostrt import jsonvalue
from hostrt.jsonvalue import MAX_INT_DIGITS, JSONValueError, check, copy, encode, encoded_size

from conftest import cyclic_values, finishes


def reference(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8), children, max_size=5),
    max_leaves=30,
)


# --- valid values: unchanged behaviour -------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_encode_is_compact_json_and_size_is_exact(value: Any) -> None:
    text = encode(value)
    assert text == reference(value)
    assert encoded_size(value) == len(text.encode("utf-8")) == jsonvalue.size_bytes(text)
    assert copy(value) == value
    check(value, max_bytes=len(text.encode("utf-8")))
    if text.encode("utf-8"):
        with pytest.raises(JSONValueError, match="larger than"):
            check(value, max_bytes=len(text.encode("utf-8")) - 1)


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -1, 2**64, -(10 ** (MAX_INT_DIGITS - 1)), 1.5, -0.0, 1e308, "", "\u00e9\U0001F600",
     "\x00\x1f\"\\\n\u2028\x7f", [], {}, (1, "a"), {"a": [1, {"b": None}]}, "x" * 100, {"k" * 100: "v" * 100}],
    ids=repr,
)
def test_plain_values_pass_and_keep_their_types(value: Any) -> None:
    assert encode(value) == reference(value)
    assert encoded_size(value) == len(reference(value).encode("utf-8"))
    copied = copy(value)
    assert copied == (list(value) if type(value) is tuple else value)
    assert type(copy(True)) is bool and type(copy(1)) is int and type(copy(1.0)) is float
    assert math.copysign(1, copy(-0.0)) == -1


def test_shared_values_are_allowed_and_copies_share_nothing() -> None:
    shared = {"a": [1, 2]}
    value = [shared, shared, {"again": shared}]
    assert encode(value) == reference(value)
    copied = copy(value)
    copied[0]["a"].append(3)
    assert copied[1]["a"] == [1, 2] and shared == {"a": [1, 2]}


# --- shared references, sizes -----------------------------------------------------------


def test_a_dag_that_doubles_forty_times_is_refused_quickly() -> None:
    value: Any = []
    for _ in range(41):
        value = [value, value]
    with pytest.raises(JSONValueError, match="more than 1000000 nodes"):
        finishes(lambda: check(value))
    with pytest.raises(JSONValueError, match="nodes"):
        finishes(lambda: encode(value))


def test_max_nodes_counts_every_reference() -> None:
    leaf = [1, 2, 3]
    value = [leaf] * 10  # 10 lists + 30 numbers + the outer list
    check(value, max_nodes=41)
    with pytest.raises(JSONValueError, match="more than 40 nodes"):
        check(value, max_nodes=40)
    check(value, max_nodes=None)


def test_max_bytes_refuses_before_the_text_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    dumped: list[Any] = []
    real = json.dumps
    monkeypatch.setattr(jsonvalue.json, "dumps", lambda *a, **k: dumped.append(a) or real(*a, **k))
    blob = "x" * 10_000
    value = [blob] * 1000  # 10 KB in memory, 10 MB of text
    with pytest.raises(JSONValueError, match="larger than 65536 bytes"):
        encode(value, max_bytes=65536)
    with pytest.raises(JSONValueError):
        copy(value, max_bytes=65536)
    assert dumped == []
    assert encode(["ok"], max_bytes=6) == '["ok"]'
    with pytest.raises(JSONValueError):
        encode(["ok"], max_bytes=5)


def test_sizes_count_utf8_bytes_and_escapes() -> None:
    for text in ["\u00e9", "\U0001F600", "\n", "\x01", '"', "\\", "\u2028", "\x7f"]:
        assert encoded_size(text) == len(reference(text).encode("utf-8"))
        assert encoded_size({text: text}) == len(reference({text: text}).encode("utf-8"))


# --- numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [10**5000, -(10**5000), 10**MAX_INT_DIGITS, 2**100_000, [1, {"n": 10**4400}]], ids=lambda v: "huge")
def test_huge_ints_are_refused(value: Any) -> None:
    with pytest.raises(JSONValueError, match=f"more than {MAX_INT_DIGITS} digits"):
        finishes(lambda: encode(value))


def test_the_digit_limit_is_exact() -> None:
    assert encode(10**MAX_INT_DIGITS - 1) == "9" * MAX_INT_DIGITS
    assert encode(-(10**MAX_INT_DIGITS - 1)) == "-" + "9" * MAX_INT_DIGITS


def test_a_lower_interpreter_digit_limit_is_a_json_value_error() -> None:
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(1000)
    try:
        with pytest.raises(JSONValueError, match="digits"):
            encode(10**2000)
    finally:
        sys.set_int_max_str_digits(old)


def test_shared_huge_ints_are_converted_once() -> None:
    big = 10**4000
    value = [big] * 100_000
    assert finishes(lambda: encoded_size(value)) == 2 + 99_999 + 100_000 * 4001


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), [1, {"x": float("nan")}]], ids=repr)
def test_non_finite_numbers_are_refused(value: Any) -> None:
    with pytest.raises(JSONValueError, match="not a JSON number"):
        encode(value)


# --- strings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, path",
    [("\ud800", "$"), (["ok", "\udfff"], "$[1]"), ({"a": {"b": "x\udc00y"}}, "$.a.b"),
     ({"\udc00": 1}, '$["\\udc00"]'), ({"a": {"k\ud800": 1}}, '$.a["k\\ud800"]')],
    ids=repr,
)
def test_lone_surrogates_are_refused_in_strings_and_keys(value: Any, path: str) -> None:
    with pytest.raises(JSONValueError, match="lone surrogate") as info:
        encode(value)
    assert str(info.value).startswith(f"{path}: ")
    str(info.value).encode("utf-8")  # the message itself is printable


def test_paired_surrogates_in_astral_characters_are_fine() -> None:
    assert encode("\U0001F600") == '"\U0001F600"'


# --- types ---------------------------------------------------------------------------


class S(str):
    pass


class I(int):  # noqa: E742
    pass


class F(float):
    pass


class D(dict):
    pass


class L(list):
    pass


class T(tuple):
    pass


@pytest.mark.parametrize(
    "value, fragment",
    [(S("x"), "a subclass of str"), (I(1), "a subclass of int"), (F(1.0), "a subclass of float"),
     (D(a=1), "a subclass of dict"), (L([1]), "a subclass of list"), (T((1,)), "a subclass of tuple"),
     (b"x", "bytes"), (bytearray(b"x"), "bytearray"), ({1, 2}, "set"), (frozenset(), "frozenset"),
     (1 + 2j, "complex"), (range(3), "range"), (object(), "object"), (print, "builtin_function_or_method"),
     (len, "builtin_function_or_method"), (lambda: 1, "function"), (type, "type")],
    ids=lambda v: type(v).__name__,
)
def test_non_exact_types_are_refused_by_built_in_name(value: Any, fragment: str) -> None:
    with pytest.raises(JSONValueError) as info:
        encode({"v": [value]})
    assert str(info.value) == f"$.v[0]: {fragment} is not a JSON value"


@pytest.mark.parametrize(
    "key, name", [(1, "int"), (True, "bool"), (None, "NoneType"), ((1, 2), "tuple"), (S("k"), "a subclass of str"), (1.5, "float")],
    ids=repr,
)
def test_object_keys_must_be_exact_strings(key: Any, name: str) -> None:
    with pytest.raises(JSONValueError) as info:
        encode({"outer": {"fine": 1, key: 2}})
    assert str(info.value) == f"$.outer: object keys must be strings, not {name}"


def test_bool_is_not_confused_with_int() -> None:
    assert encode([True, 1, False, 0]) == "[true,1,false,0]"
    assert [type(v) for v in copy([True, 1, False, 0])] == [bool, int, bool, int]


# --- hostile objects: no method is ever called ---------------------------------------------


CALLS: list[str] = []


def _recording(base: type, names: list[str]) -> type:
    body: dict[str, Any] = {}
    for name in names:
        def method(self: Any, *args: Any, __name: str = name, **kwargs: Any) -> Any:
            CALLS.append(__name)
            return getattr(base, __name)(self, *args, **kwargs)
        body[name] = method
    return type(f"Recording{base.__name__}", (base,), body)


class Meta(type):
    """A metaclass whose class attributes run code when read, compared or hashed."""

    @property
    def __name__(cls) -> str:  # type: ignore[override]
        CALLS.append("meta.__name__")
        return "forged\nname"

    @property
    def __mro__(cls) -> tuple[type, ...]:  # type: ignore[override]
        CALLS.append("meta.__mro__")
        return (object,)

    def __eq__(cls, other: Any) -> bool:
        CALLS.append("meta.__eq__")
        return True

    def __hash__(cls) -> int:
        CALLS.append("meta.__hash__")
        return 0

    def __repr__(cls) -> str:
        CALLS.append("meta.__repr__")
        return "forged"


class Sneaky(metaclass=Meta):
    @property  # type: ignore[misc]
    def __class__(self) -> type:
        CALLS.append("__class__")
        return str

    def __repr__(self) -> str:
        CALLS.append("__repr__")
        return "forged"

    def __str__(self) -> str:
        CALLS.append("__str__")
        return "forged"

    def __eq__(self, other: Any) -> bool:
        CALLS.append("__eq__")
        return True

    def __hash__(self) -> int:
        CALLS.append("__hash__")
        return 0

    def __len__(self) -> int:
        CALLS.append("__len__")
        return 0

    def __iter__(self) -> Any:
        CALLS.append("__iter__")
        return iter(())


class SneakyStr(str, metaclass=Meta):
    pass


HOSTILE = [
    _recording(str, ["__eq__", "__hash__", "__str__", "__repr__", "__iter__", "__len__", "encode", "__format__"])("x"),
    _recording(int, ["__eq__", "__hash__", "__str__", "__repr__", "__index__", "__int__", "__format__", "bit_length"])(7),
    _recording(float, ["__eq__", "__hash__", "__str__", "__repr__", "__float__", "is_integer"])(1.5),
    _recording(dict, ["__iter__", "keys", "items", "values", "__getitem__", "__len__", "__eq__", "__contains__"])(a=1),
    _recording(list, ["__iter__", "__len__", "__getitem__", "__eq__"])([1, 2]),
    _recording(tuple, ["__iter__", "__len__", "__getitem__", "__eq__", "__hash__"])((1, 2)),
    Sneaky(),
    SneakyStr("x"),
]


def _hostile_cases() -> list[Any]:
    cases = []
    for hostile in HOSTILE:
        name = type.__dict__["__name__"].__get__(type(hostile))
        cases.append(pytest.param(hostile, hostile, id=f"{name}-value"))
        cases.append(pytest.param(hostile, {"a": [1, {"b": hostile}]}, id=f"{name}-nested"))
        try:
            keyed = {"ok": 1}
            dict.__setitem__(keyed, hostile, 1)  # hashing it here records a call; cleared below
        except TypeError:
            continue  # unhashable: cannot be a key
        cases.append(pytest.param(hostile, keyed, id=f"{name}-key"))
    return cases


@pytest.mark.parametrize("hostile, value", _hostile_cases())
def test_no_method_of_a_hostile_object_is_ever_called(hostile: Any, value: Any) -> None:
    CALLS.clear()
    with pytest.raises(JSONValueError) as info:
        encode(value)
    message = str(info.value)
    for call in (check, lambda v: copy(v, max_bytes=10)):
        with pytest.raises(JSONValueError):
            call(value)
    assert CALLS == [], f"host code ran the value's own code: {CALLS}"
    assert "forged" not in message and "\n" not in message


# --- cycles, depth, paths ---------------------------------------------------------------


def test_cycles_are_refused() -> None:
    for value, path in cyclic_values():
        with pytest.raises(JSONValueError, match="contains itself") as info:
            encode(value)
        assert str(info.value).startswith(path + ":")


@pytest.mark.parametrize("depth", [65, 1000, 200_000])
def test_depth_is_limited_without_recursion(depth: int) -> None:
    lst: Any = 1
    dct: Any = 1
    for _ in range(depth):
        lst = [lst]
        dct = {"k": dct}
    for value in (lst, dct):
        with pytest.raises(JSONValueError, match="deeper than 64 levels"):
            encode(value)
    check(lst, max_depth=depth + 1)


def test_sixty_four_levels_are_fine() -> None:
    value: Any = 1
    for _ in range(64):
        value = [value]
    assert encode(value) == "[" * 64 + "1" + "]" * 64


def test_error_paths_quote_keys_and_cut_long_ones() -> None:
    with pytest.raises(JSONValueError) as info:
        encode({"line\nbreak": {"k" * 1000: [None, float("nan")]}})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith('$["line\\nbreak"]["' + "k" * 64 + '..."][1]: ')
    assert len(message) < 200


def test_error_paths_are_built_only_when_refusing() -> None:
    # 60 levels of 20,000-character keys: a path per node would be 1.2 MB each.
    key = "k" * 20_000
    value: Any = 1
    for _ in range(60):
        value = {key: value}
    assert encoded_size(value) == len(reference(value).encode("utf-8"))
    with pytest.raises(JSONValueError) as info:
        encode(value, max_bytes=64 * 1024)
    assert len(str(info.value)) < 200


def test_custom_path_prefix_and_structured_location() -> None:
    with pytest.raises(JSONValueError) as info:
        encode({"a": [0, b"x"]}, path="fields")
    assert str(info.value) == "fields.a[1]: bytes is not a JSON value"
    assert info.value.loc == ("a", 1)
    assert info.value.reason == "bytes is not a JSON value"
