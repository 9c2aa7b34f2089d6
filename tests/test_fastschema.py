"""hostrt.fastschema: the fast validity check gives exactly the answers of
the metered ``jsonschema`` evaluation in hostrt.schemas.

Every keyword case is checked against both: :func:`check` asserts that
``compile_fast(s).is_valid(x)`` and ``compile_schema(s).is_valid(x)``
agree before the test looks at the answer. Hypothesis then compares the
two on generated schemas and values. The rest is about bounded work: a
schema and value that need too much of it make the fast path give up
(``FallbackRequired``) early, so that the metered path decides.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from hostrt import fastschema
from hostrt.fastschema import (
    IGNORED_KEYWORDS,
    SUPPORTED_KEYWORDS,
    FallbackRequired,
    FastValidator,
    compile_fast,
)
from hostrt.schemas import (
    MAX_EVALUATION_STEPS,
    SchemaEvaluationError,
    compile_schema,
    schema_problems,
)

from conftest import finishes


def fast(schema: Any) -> FastValidator:
    assert schema_problems(schema) == []
    validator = compile_fast(schema)
    assert validator is not None, "expected the schema to be supported"
    return validator


def check(schema: Any, instance: Any) -> bool:
    """Both answers, asserted equal; the answer."""
    expected = compile_schema(schema).is_valid(instance)
    got = fast(schema).is_valid(instance)
    assert got is expected, (schema, instance, got, expected)
    return got


def assert_cases(schema: Any, valid: list[Any], invalid: list[Any]) -> None:
    for instance in valid:
        assert check(schema, instance) is True, instance
    for instance in invalid:
        assert check(schema, instance) is False, instance


# --- every keyword, valid and invalid ---------------------------------------------

KEYWORD_CASES: list[tuple[str, Any, list[Any], list[Any]]] = [
    ("type string", {"type": "string"}, ["", "a", "😀"], [1, None, True, [], {}]),
    ("type integer", {"type": "integer"}, [0, -3, 1.0, -0.0, 10**30, 1e300], [1.5, True, False, "1", None]),
    ("type number", {"type": "number"}, [0, 1.5, -2, 10**30], [True, "1", None, []]),
    ("type boolean", {"type": "boolean"}, [True, False], [0, 1, None, "true"]),
    ("type null", {"type": "null"}, [None], [0, False, "", []]),
    ("type array", {"type": "array"}, [[], [1]], [{}, "[]", None]),
    ("type object", {"type": "object"}, [{}, {"a": 1}], [[], "{}", None]),
    ("type list", {"type": ["string", "null"]}, ["x", None], [0, False, []]),
    ("type integer+number", {"type": ["integer", "number"]}, [1, 1.5], [True]),
    ("type integer+boolean", {"type": ["integer", "boolean"]}, [1, 2.0, True], [2.5, None]),
    ("enum", {"enum": ["a", 1, None, [1, 2], {"k": "v"}]},
     ["a", 1, 1.0, None, [1, 2], [1.0, 2], {"k": "v"}], ["b", True, 2, [2, 1], {"k": "w"}, {}, [1, 2, 3]]),
    ("enum true vs 1", {"enum": [True]}, [True], [1, 1.0]),
    ("enum 1 vs true", {"enum": [1, 0]}, [1, 0, 1.0, -0.0], [True, False]),
    ("enum nested bool", {"enum": [[1, {"a": 0}]]}, [[1.0, {"a": 0.0}]], [[True, {"a": 0}], [1, {"a": False}]]),
    ("const", {"const": {"a": [1, "x"], "b": None}},
     [{"b": None, "a": [1.0, "x"]}], [{"a": [1, "x"]}, {"a": [True, "x"], "b": None}, {"a": [1, "x"], "b": False}]),
    ("const false", {"const": False}, [False], [0, 0.0, None, []]),
    ("const 0", {"const": 0}, [0, 0.0, -0.0], [False, None, ""]),
    ("const big int", {"const": 2**53 + 1}, [2**53 + 1], [2**53, float(2**53), 2.0**53 + 2]),
    ("const float", {"const": 0.1}, [0.1], [0.1 + 2**-56, 0.10000000000000002]),
    ("properties", {"properties": {"a": {"type": "integer"}, "b": {"type": "string"}}},
     [{}, {"a": 1}, {"a": 1, "b": "x", "c": None}, [], "x"], [{"a": "1"}, {"b": 2}, {"a": 1, "b": None}]),
    ("required", {"required": ["a", "b"]}, [{"a": 1, "b": 2}, {"a": 1, "b": None, "c": 3}, [], 1], [{}, {"a": 1}]),
    ("additionalProperties false", {"properties": {"a": {}}, "additionalProperties": False},
     [{}, {"a": 1}, "x"], [{"b": 1}, {"a": 1, "b": 2}]),
    ("additionalProperties schema", {"properties": {"a": {}}, "additionalProperties": {"type": "integer"}},
     [{"a": "x", "b": 1, "c": 2.0}], [{"b": "x"}, {"a": 1, "b": 1.5}]),
    ("additionalProperties true", {"properties": {"a": {"type": "string"}}, "additionalProperties": True},
     [{"a": "x", "b": 1}], [{"a": 1, "b": 1}]),
    ("patternProperties", {"patternProperties": {"^x-": {"type": "string"}, "[0-9]": {"minLength": 2}}},
     [{"x-a": "s", "b": 1}, {"x-1": "ab"}, {"a1": 5}], [{"x-a": 1}, {"x-1": "a"}, {"b2": "a"}]),
    ("patternProperties + additionalProperties",
     {"properties": {"id": {}}, "patternProperties": {"^x-": {}}, "additionalProperties": False},
     [{"id": 1, "x-y": 2}, {"x-": None}], [{"y": 1}, {"id": 1, "X-y": 2}]),
    ("patternProperties + additionalProperties schema",
     {"properties": {"id": {"type": "integer"}}, "patternProperties": {"d$": {"type": "integer"}},
      "additionalProperties": {"type": "string"}},
     [{"id": 1, "word": 2, "other": "s"}, {"idd": 3}], [{"other": 1}, {"word": "x"}, {"id": "x"}]),
    ("property in both properties and patternProperties",
     {"properties": {"ab": {"type": "integer"}}, "patternProperties": {"^a": {"minimum": 10}}},
     [{"ab": 11}, {"ac": 12}, {"ab": 10.0}], [{"ab": 5}, {"ab": 12.5}, {"ac": 3}]),
    ("propertyNames", {"propertyNames": {"maxLength": 2, "pattern": "^[a-z]+$"}},
     [{}, {"ab": 1}, {"a": 1, "z": 2}, "abc"], [{"abc": 1}, {"A": 1}, {"": 1}]),
    ("propertyNames false", {"propertyNames": False}, [{}], [{"a": 1}]),
    ("minProperties", {"minProperties": 2}, [{"a": 1, "b": 2}, [], "x"], [{}, {"a": 1}]),
    ("maxProperties", {"maxProperties": 1}, [{}, {"a": 1}], [{"a": 1, "b": 2}]),
    ("dependentRequired", {"dependentRequired": {"card": ["billing", "name"], "x": []}},
     [{}, {"name": 1}, {"card": 1, "billing": 2, "name": 3}, {"x": 1}], [{"card": 1}, {"card": 1, "billing": 2}]),
    ("dependentSchemas", {"dependentSchemas": {"card": {"required": ["billing"]}, "a": False}},
     [{}, {"card": 1, "billing": 2}, {"b": 1}], [{"card": 1}, {"a": 1}]),
    ("items", {"items": {"type": "integer"}}, [[], [1, 2.0], {}, "x"], [[1, "2"], [True], [1.5]]),
    ("items false", {"items": False}, [[]], [[1]]),
    ("prefixItems", {"prefixItems": [{"type": "string"}, {"type": "integer"}]},
     [[], ["a"], ["a", 1], ["a", 1, None, {}]], [[1], ["a", "b"]]),
    ("prefixItems + items false", {"prefixItems": [{}, {}], "items": False},
     [[], [1], [1, 2]], [[1, 2, 3]]),
    ("prefixItems + items schema", {"prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
     [["a"], ["a", 1, 2]], [["a", "b"], [1, 1]]),
    ("minItems", {"minItems": 2}, [[1, 2], {}, "x"], [[], [1]]),
    ("maxItems", {"maxItems": 1}, [[], [1]], [[1, 2]]),
    ("uniqueItems", {"uniqueItems": True},
     [[], [1, True], [0, False], [1, "1"], [[1], [True]], [{"a": 1}, {"a": True}], [1, 1.5], [None, False, 0, ""]],
     [[1, 1.0], [-0.0, 0], ["a", "a"], [[1, 2], [1.0, 2]], [{"a": 1, "b": 2}, {"b": 2, "a": 1.0}], [None, None],
      [True, True], [{"a": [1, {"b": 2}]}, {"a": [1.0, {"b": 2.0}]}], [2**60, 2**60]]),
    ("uniqueItems false", {"uniqueItems": False}, [[1, 1]], []),
    ("contains", {"contains": {"type": "string"}}, [["a"], [1, "a"], {}, "x"], [[], [1, 2]]),
    ("minContains", {"contains": {"type": "integer"}, "minContains": 2},
     [[1, 2], [1, "a", 2, 3]], [[1], ["a", 1, "b"], []]),
    ("maxContains", {"contains": {"type": "integer"}, "maxContains": 1}, [[1], [1, "a"]], [[], [1, 2], ["a"]]),
    ("minContains 0", {"contains": {"type": "integer"}, "minContains": 0}, [[], ["a"], [1, 2]], []),
    ("minContains 0 + maxContains", {"contains": {"type": "integer"}, "minContains": 0, "maxContains": 1},
     [[], ["a"], [1]], [[1, 2]]),
    ("min/maxContains without contains", {"minContains": 3, "maxContains": 0}, [[], [1, 2]], []),
    ("minLength", {"minLength": 2}, ["ab", "😀😀", 5, None], ["", "a", "😀"]),
    ("maxLength astral", {"maxLength": 2}, ["", "ab", "😀😀", "e\u0301"], ["abc", "😀😀😀"]),
    ("pattern", {"pattern": "^[a-z]+$"}, ["abc", 1, None], ["", "abc1", "ABC"]),
    ("pattern unanchored", {"pattern": "b"}, ["abc", "b"], ["ac", ""]),
    ("pattern unicode escape", {"pattern": "^\\u00e9+$"}, ["é", "éé"], ["e", "É"]),
    ("pattern astral class", {"pattern": "^.$"}, ["😀", "a"], ["😀😀", ""]),
    ("pattern RE2 classes", {"pattern": "^\\p{Lu}\\w*$"}, ["Ab_1", "É"], ["ab", "_"]),
    ("pattern lone surrogate", {"pattern": "a"}, ["\ud800a"], ["\ud800"]),
    ("minimum", {"minimum": 1.5}, [1.5, 2, 10**30, "x", True], [1, 1.49, -(10**30)]),
    ("maximum", {"maximum": 3}, [3, 3.0, -1, "x"], [3.0000001, 4, 10**30]),
    ("exclusiveMinimum", {"exclusiveMinimum": 0}, [1e-300, 1], [0, -0.0, -1]),
    ("exclusiveMaximum", {"exclusiveMaximum": 2**53}, [2**53 - 1], [2**53, float(2**53)]),
    ("min and max", {"minimum": -1, "maximum": 1}, [-1, 0, 1, 0.5], [-2, 1.5]),
    ("big int bounds", {"minimum": 2**64, "maximum": 2**64 + 1}, [2**64, 2**64 + 1, float(2**64)], [2**64 + 2, 2**64 - 1]),
    ("multipleOf int", {"multipleOf": 3}, [0, 9, -3, 3.0, 10**30 * 3, True, "x"], [1, 3.5, 10**30 + 1]),
    # jsonschema divides in floats: 0.07 / 0.01 is 7.000000000000001, so
    # 0.07 is not a multiple of 0.01 there, and must not be here either.
    ("multipleOf float", {"multipleOf": 0.01}, [1.1, 0.3, 0.7, 1.23, 0, 3], [0.07, 19.99, 0.29, 0.001, 0.015]),
    ("multipleOf 0.1", {"multipleOf": 0.1}, [1.1, 0.5, 0.2, 1], [0.3, 0.7, 0.35, 0.25]),
    ("multipleOf float on big values", {"multipleOf": 0.5}, [1e300, 10**20, 2.5, 10**20 + 0.25], [0.75, 1.25]),
    # The quotient overflows to infinity: jsonschema then divides exactly,
    # as fractions of the binary values.
    ("multipleOf tiny", {"multipleOf": 1e-300}, [2.5, 1.0, 0.75], [1e300, 10**20]),
    ("multipleOf 2.0", {"multipleOf": 2.0}, [4, 4.0, 10**17 + 2], [3, 4.5]),
    ("multipleOf negative zero", {"multipleOf": 5}, [-0.0, 0.0, -5], [-0.1]),
    ("allOf", {"allOf": [{"type": "integer"}, {"minimum": 2}]}, [2, 3.0], [1, 2.5, "x"]),
    ("anyOf", {"anyOf": [{"type": "string"}, {"minimum": 2}]}, ["a", 2, None], [1, 1.5]),
    ("oneOf", {"oneOf": [{"type": "integer"}, {"minimum": 2}]}, [1, 2.5, "x"], [2, 3.0, 1.5]),
    ("oneOf none", {"oneOf": [{"type": "string"}, {"type": "null"}]}, ["x", None], [1]),
    ("oneOf three", {"oneOf": [True, False, {"type": "string"}]}, [1], ["x"]),
    ("not", {"not": {"type": "string"}}, [1, None], ["x"]),
    ("not false", {"not": False}, [1], []),
    ("not true", {"not": True}, [], [1, None]),
    ("if then else", {"if": {"type": "integer"}, "then": {"minimum": 10}, "else": {"type": "string"}},
     [10, 11.0, "x"], [9, 9.0, None, 10.5]),
    ("if then", {"if": {"required": ["a"]}, "then": {"required": ["b"]}}, [{}, {"a": 1, "b": 1}, {"b": 1}], [{"a": 1}]),
    ("if else", {"if": {"required": ["a"]}, "else": {"required": ["b"]}}, [{"a": 1}, {"b": 1}], [{}]),
    ("if alone", {"if": False}, [1, None], []),
    ("then/else without if", {"then": False, "else": False}, [1], []),
    ("boolean true", True, [1, None, [], {}], []),
    ("boolean false", False, [], [1, None, [], {}]),
    ("boolean subschemas",
     {"properties": {"a": True, "b": False}, "items": True, "anyOf": [False, {"type": "object"}]},
     [{"a": 1}, {}], [{"b": 1}, [1]]),
    ("empty schema", {}, [1, None, [{}]], []),
    ("annotations", {"title": "t", "description": "d", "default": 1, "examples": [1], "$comment": "c",
                     "format": "email", "deprecated": True, "readOnly": True, "writeOnly": False,
                     "contentMediaType": "text/plain", "contentEncoding": "base64", "type": "string"},
     ["not an email"], [1]),
]


@pytest.mark.parametrize("schema,valid,invalid", [case[1:] for case in KEYWORD_CASES],
                         ids=[case[0] for case in KEYWORD_CASES])
def test_keyword(schema: Any, valid: list[Any], invalid: list[Any]) -> None:
    assert_cases(schema, valid, invalid)


def test_every_supported_keyword_has_a_case() -> None:
    used: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            used.update(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for case in KEYWORD_CASES:
        walk(case[1])
    walk(REF_SCHEMA)
    assert SUPPORTED_KEYWORDS <= used


# --- references ------------------------------------------------------------------------

REF_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "#",
    "$defs": {
        "node": {
            "type": "object",
            "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            "required": ["value"],
            "additionalProperties": False,
        },
        "a/b": {"const": "slash"},
        "t~d": {"const": "tilde"},
        "sp ace": {"const": "space"},
    },
    "properties": {
        "tree": {"$ref": "#/$defs/node"},
        "slash": {"$ref": "#/$defs/a~1b"},
        "tilde": {"$ref": "#/$defs/t~0d"},
        "space": {"$ref": "#/$defs/sp%20ace"},
        "same": {"$ref": "#/properties/slash"},
        "first": {"$ref": "#/prefixItems/0"},
        "self": {"$ref": "#"},
        "chained": {"$ref": "#/properties/same", "minLength": 5},
    },
    "prefixItems": [{"type": "integer"}],
}


def test_refs() -> None:
    tree = {"value": 1, "children": [{"value": 2, "children": []}, {"value": 3, "children": [{"value": 4}]}]}
    assert_cases(
        REF_SCHEMA,
        [{}, {"tree": tree}, {"slash": "slash", "tilde": "tilde", "space": "space", "same": "slash"},
         {"first": 1}, {"self": {"self": {"tree": {"value": 0}}}}, {"chained": "slash"}, [5]],
        [{"tree": {"value": 1, "children": [{"value": "x"}]}}, {"tree": {"children": []}},
         {"tree": {"value": 1, "extra": 1}}, {"slash": "x"}, {"tilde": "x"}, {"space": "x"}, {"same": "x"},
         {"first": "1"}, {"self": {"self": {"tree": {}}}}, {"self": ["x"]}, {"chained": "slas"}, ["5"]],
    )


def test_recursive_tree_deep() -> None:
    schema = {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}, "maxItems": 2}}, "$ref": "#/$defs/n"}
    value: Any = []
    for _ in range(60):
        value = [value, []]
    assert check(schema, value) is True
    bad: Any = [1]
    for _ in range(60):
        bad = [[], bad]
    assert check(schema, bad) is False


def test_ref_with_siblings_and_alias_chains() -> None:
    schema = {
        "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/c", "title": "x"}, "c": {"type": "string"}},
        "$ref": "#/$defs/a",
        "maxLength": 3,
    }
    assert_cases(schema, ["abc"], ["abcd", 1])
    assert_cases({"$defs": {"f": False}, "properties": {"a": {"$ref": "#/$defs/f"}}}, [{}], [{"a": 1}])


def test_unused_defs_are_not_compiled() -> None:
    schema = {"$defs": {"unused": {"unevaluatedProperties": False}}, "type": "string"}
    assert_cases(schema, ["x"], [1])


# --- unsupported schemas ------------------------------------------------------------------


@pytest.mark.parametrize("schema", [
    {"unevaluatedProperties": False},
    {"unevaluatedItems": False},
    {"properties": {"a": {"unevaluatedProperties": False}}},
    {"$defs": {"m": {"$dynamicAnchor": "meta", "type": "string"}}, "properties": {"a": {"$dynamicRef": "#meta"}}},
    {"$defs": {"x": {"$anchor": "here", "type": "string"}}, "$ref": "#here"},
    {"dependencies": {"a": ["b"]}},
    {"x-vendor": 1},
    {"$recursiveRef": "#"},
    {"$defs": {"x": {"unevaluatedItems": False}}, "items": {"$ref": "#/$defs/x"}},
])
def test_unsupported_keywords(schema: Any) -> None:
    assert schema_problems(schema) == []
    assert compile_fast(schema) is None
    compile_schema(schema)  # the metered path takes it


def test_patterns_without_the_raw_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    # Other google-re2 versions: the wrapper's own search, same answers.
    monkeypatch.setattr(fastschema, "_raw_match", lambda regexp: None)
    schema = {"properties": {"fallback-search": {"pattern": "^[a-z]+\\d?$"}}, "patternProperties": {"^x": {}},
              "additionalProperties": False}
    assert_cases(schema, [{"fallback-search": "abc1"}, {"xy": 1}, {"fallback-search": 1}],
                 [{"fallback-search": "abc12"}, {"fallback-search": "\ud800"}, {"y": 1}])


def test_not_json() -> None:
    assert compile_fast({"enum": [object()]}) is None
    assert compile_fast({"const": float("nan")}) is None


def test_ignored_keywords_do_not_stop_compiling() -> None:
    values = {
        "title": "t", "description": "d", "default": 1, "examples": [1], "$comment": "c", "format": "uri",
        "deprecated": True, "readOnly": True, "writeOnly": True, "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "#", "$defs": {"x": {"type": "string"}}, "definitions": {"y": {}}, "$anchor": "here",
        "$dynamicAnchor": "there", "contentMediaType": "application/json", "contentEncoding": "base64",
        "contentSchema": {"type": "object"},
    }
    assert set(values) == IGNORED_KEYWORDS
    for keyword, value in values.items():
        assert_cases({keyword: value, "type": "integer"}, [1], ["1"])
    assert_cases({**values, "maximum": 3}, [3], [4])


def test_values_that_are_not_json_fall_back() -> None:
    validator = fast({"type": "array"})
    with pytest.raises(FallbackRequired):
        validator.is_valid((1, 2))
    with pytest.raises(FallbackRequired):
        fast({"items": {"type": "integer"}}).is_valid([1, object()])


def test_arithmetic_the_metered_path_cannot_do_falls_back() -> None:
    schema = {"multipleOf": 0.5}
    with pytest.raises(SchemaEvaluationError):
        compile_schema(schema).is_valid(10**400)
    with pytest.raises(FallbackRequired):
        fast(schema).is_valid(10**400)


def test_nan_and_infinity_as_jsonschema_treats_them() -> None:
    for schema in ({"minimum": 0}, {"maximum": 0}, {"exclusiveMinimum": 0}, {"enum": [1, 2.5]},
                   {"type": "integer"}, {"multipleOf": 2}, {"uniqueItems": True}, {"const": 1}):
        for value in (math.inf, -math.inf, math.nan, [math.nan, math.nan], [math.nan], [math.inf, math.inf]):
            try:
                expected = compile_schema(schema).is_valid(value)
            except SchemaEvaluationError:
                expected = None
            try:
                got = fast(schema).is_valid(value)
            except FallbackRequired:
                got = None
            assert got == expected, (schema, value)


# --- bounded work -------------------------------------------------------------------------


def test_wide_allof_on_many_items_falls_back() -> None:
    schema = {"items": {"allOf": [{"minimum": 0}] * 1000}}
    validator = fast(schema)
    items = list(range(30_000))
    with pytest.raises(FallbackRequired):
        finishes(lambda: validator.is_valid(items))
    assert validator.is_valid(items[:100]) is True
    assert validator.is_valid([1, 2, -1]) is False


def test_deep_allof_chain_on_many_items_falls_back() -> None:
    count = 900
    defs = {f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}]} for i in range(count)}
    defs[f"d{count}"] = {"minimum": 0}
    schema = {"$defs": defs, "items": {"$ref": "#/$defs/d0"}}
    validator = fast(schema)
    with pytest.raises(FallbackRequired):
        finishes(lambda: validator.is_valid(list(range(30_000))))


def test_exponential_anyof_through_recursive_refs_falls_back() -> None:
    schema = {
        "$defs": {
            "t": {
                "anyOf": [
                    {"items": {"$ref": "#/$defs/t"}, "contains": {"type": "string"}},
                    {"items": {"$ref": "#/$defs/t"}},
                ]
            }
        },
        "$ref": "#/$defs/t",
    }
    validator = fast(schema)
    value: Any = []
    for _ in range(40):
        value = [value]
    with pytest.raises(FallbackRequired):
        finishes(lambda: validator.is_valid(value))
    # The metered path gives up too (on a smaller budget, to keep this quick).
    with pytest.raises(SchemaEvaluationError):
        finishes(lambda: compile_schema(schema).is_valid(value, max_steps=20_000))
    shallow: Any = []
    for _ in range(6):
        shallow = [shallow]
    assert check(schema, shallow) is True


# Cheap to check, but charged what the metered path charges: 1 + 4000 // 16
# steps per application, so 30,000 applications exceed the budget.
HEAVY = {
    "number": {"enum": list(range(4000))},  # valid for small integers
    "object": {"dependentRequired": {str(i): [] for i in range(4000)}},  # valid for {"a7": 1}
    "name": {"enum": [f"a{i}" for i in range(4000)]},  # valid for "a7"
}
HEAVY_NUMBER = {"$ref": "#/$defs/number"}


@pytest.mark.parametrize("items", [
    HEAVY_NUMBER,
    {"allOf": [HEAVY_NUMBER]},
    {"anyOf": [HEAVY_NUMBER]},
    {"oneOf": [HEAVY_NUMBER]},
    {"not": {"not": HEAVY_NUMBER}},
    {"if": HEAVY_NUMBER, "then": True},
    {"if": True, "then": HEAVY_NUMBER},
    {"if": False, "else": HEAVY_NUMBER},
    {"$ref": "#/$defs/number", "minimum": 0},
    {"type": "object", "dependentSchemas": {"a7": {"$ref": "#/$defs/object"}}},
    {"type": "object", "properties": {"a7": HEAVY_NUMBER}},
    {"type": "object", "additionalProperties": HEAVY_NUMBER},
    {"type": "object", "patternProperties": {"^a": HEAVY_NUMBER}},
    {"type": "object", "propertyNames": {"$ref": "#/$defs/name"}},
], ids=["$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref+sibling",
        "dependentSchemas", "properties", "additionalProperties", "patternProperties", "propertyNames"])
def test_every_applicator_charges_what_it_applies(items: Any) -> None:
    text = json.dumps(items)
    schema = {"$defs": {name: heavy for name, heavy in HEAVY.items() if f"#/$defs/{name}" in text}, "items": items}
    validator = fast(schema)
    value = [{"a7": i % 100} if items.get("type") == "object" else i % 100 for i in range(30_000)]
    assert validator.is_valid(value[:20]) is True
    with pytest.raises(FallbackRequired):
        finishes(lambda: validator.is_valid(value))


def test_many_pattern_searches_fall_back() -> None:
    # Each search costs the text length times the program size (about
    # 27,000 here), as on the metered path.
    schema = {"additionalProperties": {"pattern": "[\\p{L}\\p{N}]{1,20}"}}
    value = {f"k{i}": "x" * 2000 for i in range(300)}
    with pytest.raises(FallbackRequired):
        finishes(lambda: fast(schema).is_valid(value))
    with pytest.raises(SchemaEvaluationError):
        compile_schema(schema).is_valid(value)
    assert fast(schema).is_valid(value, max_steps=None) is True
    assert fast(schema).is_valid({"k": "x" * 2000}) is True


def test_unique_items_of_many_objects_is_linear() -> None:
    items = [{"id": i, "tags": [i, str(i)]} for i in range(20_000)]
    validator = fast({"uniqueItems": True})
    assert finishes(lambda: validator.is_valid(items)) is True
    assert finishes(lambda: validator.is_valid(items + [{"tags": [0, "0"], "id": 0.0}])) is False


def test_budget_is_per_call_and_configurable() -> None:
    schema = {"items": {"allOf": [{"minimum": 0}] * 10}}
    validator = fast(schema)
    value = list(range(1000))  # about 11 steps per item
    assert validator.is_valid(value) is True
    with pytest.raises(FallbackRequired):
        validator.is_valid(value, max_steps=5_000)
    assert validator.is_valid(value, max_steps=20_000) is True
    assert validator.is_valid(value) is True  # nothing carried over from the failed call


@pytest.mark.parametrize("additional", [False, True])
def test_steps_are_counted_as_the_metered_path_counts_them(additional: bool) -> None:
    # properties 1 + additionalProperties 1 at the root, enum of 160 values
    # 1 + 160 // 16 = 11, type 1: 14 steps on both paths, whether the
    # object is charged member by member or all at once and refunded.
    schema = {"properties": {"a": {"enum": list(range(160))}, "b": {"type": "string"}},
              "additionalProperties": additional}
    value = {"a": 1, "b": "x"}
    validator = fast(schema)
    compiled = compile_schema(schema)
    for max_steps in (14, 15, 24, 25, 1000):
        assert validator.is_valid(value, max_steps=max_steps) is True
        assert compiled.is_valid(value, max_steps=max_steps) is True
    for max_steps in (0, 2, 12, 13):
        with pytest.raises(FallbackRequired):
            validator.is_valid(value, max_steps=max_steps)
        with pytest.raises(SchemaEvaluationError):
            compiled.is_valid(value, max_steps=max_steps)
    if additional:
        wide = {**value, **{f"k{i}": i for i in range(10)}}  # looked up by property
        assert validator.is_valid(wide, max_steps=14) is True
        with pytest.raises(FallbackRequired):
            validator.is_valid(wide, max_steps=13)


def test_one_validator_in_many_threads() -> None:
    validator = fast({"items": {"type": "object", "properties": {"n": {"allOf": [{"minimum": 0}] * 3}}}})
    small = [{"n": i} for i in range(10)]
    large = [{"n": i} for i in range(200_000)]
    results: list[Any] = []

    def work(value: Any) -> None:
        for _ in range(50):
            try:
                results.append(validator.is_valid(value))
            except FallbackRequired:
                results.append("fallback")

    threads = [threading.Thread(target=work, args=(value,)) for value in (small, large[:2000], small, large)]
    for thread in threads[:3]:
        thread.start()
    threads[3].start()
    for thread in threads:
        thread.join()
    assert results.count("fallback") == 50  # only the large value, every time
    assert results.count(True) == 150


def test_cycles_are_refused_even_unchecked() -> None:
    # schema_problems refuses these; compile_fast does not loop on them.
    for schema in ({"$ref": "#"}, {"allOf": [{"$ref": "#"}]}, {"$defs": {"a": {"$ref": "#/$defs/b"},
                                                                          "b": {"not": {"$ref": "#/$defs/a"}}},
                                                               "$ref": "#/$defs/a"}):
        assert schema_problems(schema) != []
        assert compile_fast(schema) is None


def test_event_shaped_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^evt_[0-9A-Z]{4}$"},
            "kind": {"enum": ["created", "deleted"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 10},
            "items": {"type": "array", "maxItems": 3, "items": {
                "type": "object", "properties": {"name": {"type": "string", "maxLength": 3}, "ok": {"type": "boolean"}},
                "required": ["name"], "additionalProperties": False}},
        },
        "required": ["id", "kind"],
        "additionalProperties": False,
    }
    good = {"id": "evt_AB12", "kind": "created", "count": 3, "items": [{"name": "a"}, {"name": "abc", "ok": True}]}
    assert_cases(schema, [good, {"id": "evt_0000", "kind": "deleted"}, {**good, "count": 10.0}], [
        {**good, "id": "evt_ab12"}, {**good, "kind": "updated"}, {**good, "count": 11}, {**good, "count": True},
        {**good, "items": [{"name": "abcd"}]}, {**good, "items": [{"ok": True}]}, {**good, "items": [{"name": "a", "x": 1}]},
        {**good, "items": [{"name": "a"}] * 4}, {**good, "extra": 1}, {"kind": "created"}, [good],
    ])


def test_large_object_with_open_properties_is_checked_by_property() -> None:
    schema = {"properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}
    value = {f"k{i}": i for i in range(100_000)}
    assert check(schema, value) is True
    value["b"] = 1
    assert check(schema, value) is False


def test_deep_reference_chain_falls_back_on_recursion() -> None:
    # A chain of in-place references deeper than Python's recursion limit
    # allows; the metered path cannot evaluate it either.
    count = 1000
    defs: dict[str, Any] = {str(i): {"$ref": f"#/$defs/{i + 1}", "minimum": 0} for i in range(count)}
    defs[str(count)] = {"minimum": 0}
    schema = {"$defs": defs, "$ref": "#/$defs/0"}
    validator = fast(schema)
    with pytest.raises(FallbackRequired):
        validator.is_valid(1)
    with pytest.raises(SchemaEvaluationError):
        compile_schema(schema).is_valid(1)


def test_reference_only_chains_cost_nothing_at_run_time() -> None:
    # Subschemas that are only a $ref share the table of their target, so
    # even a chain the metered path cannot follow is answered.
    count = 1000
    defs: dict[str, Any] = {str(i): {"$ref": f"#/$defs/{i + 1}"} for i in range(count)}
    defs[str(count)] = {"minimum": 0}
    schema = {"$defs": defs, "items": {"$ref": "#/$defs/0"}}
    validator = fast(schema)
    assert validator.is_valid([1, 2]) is True
    assert validator.is_valid([1, -2]) is False


def test_compile_is_cached() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert compile_fast(schema) is compile_fast(json.loads(json.dumps(schema)))
    assert compile_fast({"multipleOf": 3}) is not compile_fast({"multipleOf": 3.0})
    assert fast({"multipleOf": 3}).is_valid(10**17 + 1) is False
    assert check({"multipleOf": 3.0}, 10**17 + 1) is True  # jsonschema divides in floats


def test_default_budget_is_the_metered_one() -> None:
    assert FastValidator.is_valid.__kwdefaults__["max_steps"] == MAX_EVALUATION_STEPS


# --- differential testing against the metered path -------------------------------------------

KEYS = ["a", "b", "c", "x-1", "é", "😀"]
PATTERNS = ["^a", "b", "^[a-c]+$", "[0-9]", "^x-", "😀", "^.$", "\\p{L}", "^$"]
NUMBERS = [0, 1, -1, 2, 3, 7, 10, -0.0, 0.5, 1.0, 1.5, 2.5, 0.1, 0.3, 0.07, 0.30000000000000004, 1e-5,
           2**53, 2**53 + 1, 10**20, 1e300, -1e300, 1.7976931348623157e308]
BOUNDS = [0, 1, 2, -1, 0.5, 2.5, 1.0, 2**53, 1e300]
DIVISORS = [1, 2, 3, 7, 0.5, 0.1, 0.01, 1.5, 2.0, 1e-5, 1e-300]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(NUMBERS),
    st.integers(-5, 5),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.text(alphabet="abcx-19é😀", max_size=5),
    st.sampled_from(KEYS),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=10,
)
counts = st.integers(0, 4) | st.just(2.0)
type_names = st.sampled_from(["string", "integer", "number", "boolean", "null", "array", "object"])


def keyword_strategies(children: st.SearchStrategy[Any], refs: bool) -> dict[str, st.SearchStrategy[Any]]:
    small_children = st.lists(children, min_size=1, max_size=3)
    strategies = {
        "type": type_names | st.lists(type_names, min_size=1, max_size=3, unique=True),
        "enum": st.lists(json_values, min_size=1, max_size=4),
        "const": json_values,
        "properties": st.dictionaries(st.sampled_from(KEYS), children, max_size=3),
        "required": st.lists(st.sampled_from(KEYS), max_size=3, unique=True),
        "additionalProperties": children,
        "patternProperties": st.dictionaries(st.sampled_from(PATTERNS), children, max_size=2),
        "propertyNames": children,
        "minProperties": counts,
        "maxProperties": counts,
        "dependentRequired": st.dictionaries(
            st.sampled_from(KEYS), st.lists(st.sampled_from(KEYS), max_size=2, unique=True), max_size=2),
        "dependentSchemas": st.dictionaries(st.sampled_from(KEYS), children, max_size=2),
        "items": children,
        "prefixItems": small_children,
        "minItems": counts,
        "maxItems": counts,
        "uniqueItems": st.booleans(),
        "contains": children,
        "minContains": counts,
        "maxContains": counts,
        "minLength": counts,
        "maxLength": counts,
        "pattern": st.sampled_from(PATTERNS),
        "minimum": st.sampled_from(BOUNDS),
        "maximum": st.sampled_from(BOUNDS),
        "exclusiveMinimum": st.sampled_from(BOUNDS),
        "exclusiveMaximum": st.sampled_from(BOUNDS),
        "multipleOf": st.sampled_from(DIVISORS),
        "allOf": small_children,
        "anyOf": small_children,
        "oneOf": small_children,
        "not": children,
        "if": children,
        "then": children,
        "else": children,
        "title": st.just("annotation"),
        "format": st.sampled_from(["email", "date-time", "regex"]),
    }
    if refs:
        strategies["$ref"] = st.sampled_from(["#", "#/$defs/a", "#/$defs/b", "#/$defs/a/items"])
    return strategies


def schema_nodes(refs: bool) -> st.SearchStrategy[Any]:
    leaf_keywords = ["type", "enum", "const", "required", "minLength", "maxLength", "pattern", "minimum",
                     "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
                     "uniqueItems", "minProperties", "maxProperties"]
    leaf_strategies = keyword_strategies(st.just(True), refs)

    def node(children: st.SearchStrategy[Any], names: list[str], strategies: dict[str, Any]) -> Any:
        return st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True).flatmap(
            lambda chosen: st.fixed_dictionaries({name: strategies[name] for name in chosen}))

    leaves = st.booleans() | node(st.just(True), leaf_keywords, leaf_strategies)

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        strategies = keyword_strategies(children, refs)
        return node(children, sorted(strategies), strategies)

    return st.recursive(leaves, extend, max_leaves=6)


SCHEMA_NODES = schema_nodes(refs=True)


@st.composite
def whole_schemas(draw: Any) -> Any:
    """A schema with two $defs that references may point to."""
    root = draw(SCHEMA_NODES)
    if not isinstance(root, dict):
        root = {"allOf": [root]}
    root = dict(root)
    root["$defs"] = {"a": {"items": draw(SCHEMA_NODES)}, "b": draw(SCHEMA_NODES)}
    return root


@st.composite
def shaped(draw: Any, schema: Any, depth: int = 0) -> Any:
    """A value built to look like what ``schema`` describes (often valid,
    often just barely not), or any JSON value."""
    if depth > 3 or not isinstance(schema, dict) or draw(st.integers(0, 5)) == 0:
        return draw(json_values)
    for keyword in ("allOf", "anyOf", "oneOf"):
        if keyword in schema and draw(st.booleans()):
            return draw(shaped(draw(st.sampled_from(schema[keyword])), depth + 1))
    if "enum" in schema and draw(st.booleans()):
        return draw(st.sampled_from(schema["enum"]))
    if "const" in schema and draw(st.booleans()):
        return schema["const"]
    types = schema.get("type", draw(type_names))
    kind = types if isinstance(types, str) else draw(st.sampled_from(types))
    if kind == "object" or any(k in schema for k in ("properties", "required", "patternProperties")):
        value = {}
        names = list(schema.get("properties", {})) + list(schema.get("required", [])) + KEYS
        for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
            sub = schema.get("properties", {}).get(name, schema.get("additionalProperties", {}))
            value[name] = draw(shaped(sub, depth + 1))
        return value
    if kind == "array" or any(k in schema for k in ("items", "prefixItems", "contains")):
        value = [draw(shaped(sub, depth + 1)) for sub in schema.get("prefixItems", [])]
        value += draw(st.lists(shaped(schema.get("items", schema.get("contains", {})), depth + 1), max_size=3))
        return value
    if kind in ("integer", "number"):
        return draw(st.sampled_from(NUMBERS + BOUNDS) | st.integers(-3, 12))
    if kind == "string":
        return draw(st.text(alphabet="abcx-19é😀", max_size=5) | st.sampled_from(KEYS))
    return draw(scalars)


def compare(schema: Any, values: list[Any]) -> None:
    validator = compile_fast(schema)
    assert validator is not None, schema
    compiled = compile_schema(schema)
    for value in values:
        expected = compiled.is_valid(value)
        assert validator.is_valid(value) is expected, (schema, value, expected)
        event("valid" if expected else "invalid")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.data())
def test_differential_generated_schemas(data: Any) -> None:
    schema = data.draw(whole_schemas())
    assume(schema_problems(schema) == [])
    values = [data.draw(shaped(schema)) for _ in range(6)] + [data.draw(json_values) for _ in range(2)]
    compare(schema, values)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=4), json_values)
def test_differential_equality(values: list[Any], value: Any) -> None:
    """enum, const and uniqueItems: the equality of JSON values."""
    compare({"enum": values or [None]}, [value, *values])
    compare({"const": value}, values)
    compare({"uniqueItems": True}, [values, values + [value], [value, *values]])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(DIVISORS + [b for b in BOUNDS if b > 0]), st.one_of(st.sampled_from(NUMBERS),
                                                         st.floats(-1e12, 1e12, allow_nan=False),
                                                         st.integers(-(10**30), 10**30)))
def test_differential_numbers(divisor: Any, value: Any) -> None:
    compare({"multipleOf": divisor}, [value, -value])
    compare({"minimum": divisor, "exclusiveMaximum": divisor * 4}, [value])
