"""hostrt.schemas: checking and evaluating JSON Schemas written by plugin authors.

Every schema here is written as an attacker would write it. Tests that
could hang if a protection were missing run the work in a daemon thread and
join it with a generous timeout, so a regression fails instead of freezing
the suite.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema._utils import equal as jsonschema_equal

from hostrt import schemas
from hostrt.schemas import (
    MAX_MESSAGE_LENGTH,
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    MAX_SUBSCHEMAS,
    MAX_SUBSCHEMAS_PER_VALUE,
    PatternError,
    SchemaEvaluationError,
    UnsafeSchemaError,
    canonical_json,
    compile_pattern,
    compile_schema,
    schema_problems,
)

from conftest import finishes

TIMEOUT = 20.0


def paths(schema: Any) -> dict[str, str]:
    return dict(schema_problems(schema))


def plain(schema: Any) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


# --- regular expressions ---------------------------------------------------------


CATASTROPHIC = ["^(a+)+$", "(a|aa)+$", "^(a|a?)+$", "(.*a){20}", "^(\\w+\\s?)*$"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_backtracking_patterns_evaluate_quickly(pattern: str) -> None:
    assert schema_problems({"type": "string", "pattern": pattern}) == []
    compiled = compile_schema({"type": "string", "pattern": pattern})
    evil = "a" * 5000 + "!"
    finishes(lambda: compiled.is_valid(evil))
    finishes(lambda: compiled.first_error(evil))


def test_catastrophic_patterns_on_property_names_evaluate_quickly() -> None:
    evil_key = "a" * 3000 + "!"
    for schema, valid in [
        ({"patternProperties": {"^(a+)+$": {"type": "integer"}}}, True),
        ({"patternProperties": {"^(a+)+$": True}, "additionalProperties": False}, False),
        ({"patternProperties": {"^(a+)+$": True}, "unevaluatedProperties": False}, False),
        ({"propertyNames": {"pattern": "^(a+)+$"}}, False),
    ]:
        compiled = compile_schema(schema)
        assert finishes(lambda: compiled.is_valid({evil_key: 1})) is valid
        assert (finishes(lambda: compiled.first_error({evil_key: 1})) is None) is valid


def test_pattern_semantics_match_search_not_match() -> None:
    compiled = compile_schema({"pattern": "b+"})
    assert compiled.is_valid("abbbc")
    assert not compiled.is_valid("ac")
    assert compiled.is_valid(5)  # only strings are checked
    anchored = compile_schema({"pattern": "^abc$"})
    assert anchored.is_valid("abc") and not anchored.is_valid("xabc")


def test_ecma_unicode_escapes_are_translated() -> None:
    compiled = compile_schema({"pattern": "^\\u0041\\u{1F600}$"})
    assert compiled.is_valid("A\U0001F600")
    assert not compiled.is_valid("B\U0001F600")


@pytest.mark.parametrize(
    "pattern, fragment",
    [
        ("a{4294967296}", "repetition count 4294967296 is larger than 1000"),
        ("a{2,99999999999999999999}", "larger than 1000"),
        ("a{1001}", "larger than 1000"),
        ("(" * 1200 + ")" * 1200, "nested more than"),
        ("(?=a)", "RE2"),
        ("(?<!a)b", "RE2"),
        ("(a)\\1", "RE2"),
        ("[", "RE2"),
        ("a{1000}{1000}", "RE2"),
        ("\\p{L}{1000}", "RE2"),
        ("[^]", "not supported"),
        ("x" * 5000, "longer than"),
        ("\ud800", "cannot be compiled"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_patterns_re2_cannot_or_may_not_run_are_problems(pattern: str, fragment: str) -> None:
    for schema, where in [
        ({"type": "object", "properties": {"x": {"type": "string", "pattern": pattern}}}, "$.properties.x.pattern"),
        ({"patternProperties": {pattern: {}}}, schemas.json_path(("patternProperties", pattern))),
    ]:
        found = finishes(lambda: paths(schema))
        assert where in found, found
        with pytest.raises(UnsafeSchemaError):
            compile_schema(schema)
    with pytest.raises(PatternError, match=fragment.replace("(", r"\(")):
        compile_pattern(pattern)


def test_huge_patterns_are_refused_before_compiling() -> None:
    with pytest.raises(PatternError, match="longer than"):
        finishes(lambda: compile_pattern("(" * 100_000 + ")" * 100_000))


def test_compile_pattern_refuses_non_strings_and_caches() -> None:
    with pytest.raises(PatternError):
        compile_pattern(5)
    assert compile_pattern("^a+$") is compile_pattern("^a+$")


def test_format_is_an_annotation_only() -> None:
    compiled = compile_schema({"type": "string", "format": "email"})
    assert compiled.is_valid("not an email")
    # the "regex" format would otherwise be compiled with Python's re
    regex = compile_schema({"format": "regex"})
    assert regex.is_valid("(" * 5000)
    assert regex.is_valid("a{4294967296}")


# --- references: never fetched, always local -------------------------------------------


NON_LOCAL = [
    "file:///etc/passwd",
    "http://127.0.0.1:9/x",
    "https://json-schema.org/draft/2020-12/schema",
    "other.json",
    "other.json#/$defs/a",
    "//127.0.0.1:9/x",
    "/etc/passwd",
    "urn:x:y",
    "",
]


@pytest.mark.parametrize("ref", NON_LOCAL)
@pytest.mark.parametrize("keyword", ["$ref", "$dynamicRef", "$recursiveRef"])
def test_non_local_references_are_refused(ref: str, keyword: str) -> None:
    schema = {"type": "object", "properties": {"a": {keyword: ref}}}
    found = paths(schema)
    assert f"$.properties.a.{keyword}" in found
    assert "only references inside this schema" in found[f"$.properties.a.{keyword}"]
    with pytest.raises(UnsafeSchemaError):
        compile_schema(schema)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    opened: list[Any] = []

    def record(*args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        raise AssertionError("a schema reference was fetched")

    monkeypatch.setattr(urllib.request, "urlopen", record)
    return opened


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_evaluation_never_retrieves_even_if_a_remote_ref_slipped_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[Any]
) -> None:
    """Defence in depth: even with the static check switched off, the
    registry has no retrieval. Opening a FIFO would block forever."""
    fifo = tmp_path / "schema.json"
    os.mkfifo(fifo)
    monkeypatch.setattr(schemas, "_problems_for_text", lambda text: ())
    schemas._compile_text.cache_clear()
    try:
        for ref in [fifo.as_uri(), "http://127.0.0.1:9/x", str(fifo)]:
            schema = {"type": "object", "properties": {"x": {"$ref": ref}}, "$comment": "SECRET-SCHEMA-TEXT"}
            compiled = compile_schema(schema)
            with pytest.raises(SchemaEvaluationError) as info:
                finishes(lambda: compiled.first_error({"x": 1}))
            assert "SECRET-SCHEMA-TEXT" not in str(info.value)
            assert str(tmp_path) not in str(info.value)
            with pytest.raises(SchemaEvaluationError):
                finishes(lambda: compiled.is_valid({"x": 1}))
    finally:
        schemas._compile_text.cache_clear()
    assert no_network == []


def test_a_host_file_ref_is_refused_and_its_content_never_shown(tmp_path: Path, no_network: list[Any]) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"const": "TOPSECRET"}))
    schema = {"type": "object", "properties": {"x": {"$ref": secret.as_uri(), "default": "guess"}}}
    problems = schema_problems(schema)
    assert problems and "TOPSECRET" not in repr(problems)
    assert no_network == []


@pytest.mark.parametrize(
    "schema, where, fragment",
    [
        ({"properties": {"x": {"$ref": "#/$defs/nowhere"}}}, "$.properties.x.$ref", "does not resolve"),
        ({"$defs": {"a": {}}, "$ref": "#/$defs/b"}, "$.$ref", "does not resolve"),
        ({"properties": {"x": {"$dynamicRef": "#nothing"}}}, "$.properties.x.$dynamicRef", "no $anchor"),
        ({"properties": {"x": {"$ref": "#nothing"}}}, "$.properties.x.$ref", "no $anchor"),
        ({"allOf": [{}], "$ref": "#/allOf/01"}, "$.$ref", "not an index"),
        ({"allOf": [{}], "$ref": "#/allOf/5"}, "$.$ref", "not an index"),
        ({"enum": ["a"], "$ref": "#/enum/0"}, "$.$ref", "does not point to a schema"),
        ({"properties": {"a": {}}, "$ref": "#/properties"}, "$.$ref", "does not point to a schema"),
        ({"const": {"x": {}}, "$ref": "#/const/x"}, "$.$ref", "does not point to a schema"),
        ({"$schema": "http://json-schema.org/draft-04/schema#"}, "$.$schema", "draft 2020-12"),
        ({"properties": {"a": {"$schema": schemas.DRAFT_2020_12}}}, "$.properties.a.$schema", "only allowed at the root"),
        ({"$id": "https://example.com/s.json"}, "$.$id", "$id may only be '#'"),
        ({"$id": "file:///etc/"}, "$.$id", "$id may only be '#'"),
        ({"properties": {"a": {"$id": "sub.json", "$defs": {}}}}, "$.properties.a.$id", "$id may only be '#'"),
        ({"$defs": {"a": {"$anchor": "x"}, "b": {"$dynamicAnchor": "x"}}}, "$.$defs.b.$dynamicAnchor", "also defined"),
    ],
    ids=lambda v: repr(v)[:50],
)
def test_reference_and_identifier_problems(schema: Any, where: str, fragment: str) -> None:
    found = paths(schema)
    assert where in found, found
    assert fragment in found[where]


def test_local_references_work_like_jsonschema() -> None:
    schema = {
        "$schema": schemas.DRAFT_2020_12,
        "$id": "#",
        "type": "object",
        "$defs": {
            "name": {"type": "string", "maxLength": 3},
            "a b/c~d": {"type": "integer"},
            "anchored": {"$anchor": "pos", "minimum": 0},
            "node": {"$dynamicAnchor": "node", "type": "object", "properties": {"kids": {"type": "array", "items": {"$dynamicRef": "#node"}}}},
        },
        "properties": {
            "n": {"$ref": "#/$defs/name"},
            "escaped": {"$ref": "#/$defs/a%20b~1c~0d"},
            "p": {"$ref": "#pos"},
            "tree": {"$ref": "#/$defs/node"},
            "self": {"$ref": "#"},
            "first": {"$ref": "#/properties/n"},
        },
    }
    assert schema_problems(schema) == []
    compiled = compile_schema(schema)
    reference = plain(schema)
    for instance in [
        {"n": "abc"}, {"n": "abcd"}, {"escaped": 1}, {"escaped": "1"}, {"p": -1}, {"p": 3},
        {"tree": {"kids": [{"kids": []}]}}, {"tree": {"kids": [5]}}, {"self": {"n": "toolong"}},
        {"first": "abcd"}, {"self": {"self": {"p": -2}}},
    ]:
        assert compiled.is_valid(instance) == reference.is_valid(instance), instance


# --- reference cycles and blow-ups -------------------------------------------------------


CYCLES = {
    "root-self": ({"$ref": "#"}, "$.$ref"),
    "allOf-self": ({"allOf": [{"$ref": "#"}]}, "$.allOf[0].$ref"),
    "defs-self": ({"type": "object", "$defs": {"a": {"$ref": "#/$defs/a"}}, "properties": {"x": {"$ref": "#/$defs/a"}}}, "$.$defs.a.$ref"),
    "two-step": ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"}, None),
    "not": ({"not": {"$ref": "#"}}, "$.not.$ref"),
    "if-then": ({"if": {"$ref": "#"}}, "$.if.$ref"),
    "dependentSchemas": ({"dependentSchemas": {"a": {"$ref": "#"}}}, '$.dependentSchemas.a.$ref'),
    "dynamic": ({"$dynamicAnchor": "m", "oneOf": [{"$dynamicRef": "#m"}]}, "$.oneOf[0].$dynamicRef"),
    "anchor": ({"$defs": {"a": {"$anchor": "loop", "allOf": [{"$ref": "#loop"}]}}}, "$.$defs.a.allOf[0].$ref"),
}


@pytest.mark.parametrize("kind", list(CYCLES))
def test_cycles_that_consume_no_input_are_problems(kind: str) -> None:
    schema, where = CYCLES[kind]
    found = finishes(lambda: paths(schema))
    cycle = {p: m for p, m in found.items() if "reference cycle" in m}
    assert cycle, found
    if where is not None:
        assert where in cycle
    with pytest.raises(UnsafeSchemaError):
        compile_schema(schema)


def test_plain_jsonschema_really_loops_on_these() -> None:
    # The attack is real: the stock validator recurses until RecursionError.
    with pytest.raises(RecursionError):
        plain({"allOf": [{"$ref": "#"}]}).is_valid(1)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"child": {"$ref": "#"}}},
        {"type": "array", "items": {"$ref": "#"}},
        {"$defs": {"a": {"properties": {"b": {"$ref": "#/$defs/b"}}}, "b": {"items": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"type": "string"}}, "allOf": [{"$ref": "#/$defs/a"}, {"$ref": "#/$defs/a"}]},
    ],
)
def test_recursion_that_consumes_input_is_fine(schema: Any) -> None:
    assert schema_problems(schema) == []
    compile_schema(schema)


def test_exponential_reference_dags_are_problems() -> None:
    defs = {f"a{i}": {"allOf": [{"$ref": f"#/$defs/a{i + 1}"}, {"$ref": f"#/$defs/a{i + 1}"}]} for i in range(30)}
    schema = {"$defs": {**defs, "a30": {"type": "integer"}}, "$ref": "#/$defs/a0"}
    found = finishes(lambda: paths(schema))
    assert any(f"more than {MAX_SUBSCHEMAS_PER_VALUE} subschemas" in m for m in found.values()), found


def test_exponential_recursion_through_the_value_stops_at_the_budget() -> None:
    # anyOf retries both branches at every level of the value: 2**depth work
    # without any cycle in the schema. The budget stops it.
    schema = {
        "$defs": {"n": {"anyOf": [{"type": "array", "items": {"$ref": "#/$defs/n"}}, {"type": "array", "items": {"$ref": "#/$defs/n"}}]}},
        "$ref": "#/$defs/n",
        "$comment": "SECRET-SCHEMA-TEXT",
    }
    assert schema_problems(schema) == []
    compiled = compile_schema(schema)
    value: Any = "leaf"
    for _ in range(40):
        value = [value]
    with pytest.raises(SchemaEvaluationError, match="evaluation steps") as info:
        finishes(lambda: compiled.first_error(value, max_steps=20_000))
    assert "SECRET-SCHEMA-TEXT" not in str(info.value)
    with pytest.raises(SchemaEvaluationError):
        finishes(lambda: compiled.is_valid(value, max_steps=20_000))
    # the same schema on a shallow value is fine
    assert compiled.first_error([["leaf"]]) is not None


def test_deep_values_become_schema_evaluation_errors() -> None:
    compiled = compile_schema({"type": "array", "items": {"$ref": "#"}, "$comment": "SECRET"})
    value: Any = []
    for _ in range(20_000):
        value = [value]
    with pytest.raises(SchemaEvaluationError) as info:
        finishes(lambda: compiled.is_valid(value, max_steps=None))
    assert "SECRET" not in str(info.value)


# --- size, depth, shape ---------------------------------------------------------------


def test_too_big_schemas_are_problems() -> None:
    schema = {"type": "object", "description": "x" * MAX_SCHEMA_BYTES}
    assert paths(schema) == {"$": f"the schema is larger than {MAX_SCHEMA_BYTES} bytes as JSON"}
    with pytest.raises(UnsafeSchemaError):
        compile_schema(schema)


def test_too_deep_schemas_are_problems() -> None:
    schema: Any = {}
    for _ in range(MAX_SCHEMA_DEPTH + 1):
        schema = {"not": schema}
    found = paths(schema)
    assert list(found.values()) == [f"nested deeper than {MAX_SCHEMA_DEPTH} levels"]


def test_too_many_subschemas_are_a_problem() -> None:
    schema = {"anyOf": [True] * (MAX_SUBSCHEMAS + 1)}
    assert "more than" in paths(schema)["$"]


@pytest.mark.parametrize(
    "schema",
    [5, "x", None, [], {"type": float("nan")}, {"const": float("inf")}, {"enum": ["\ud800"]}, {"\udc00": 1},
     {1: "int key"}, {"a": object()}],
    ids=repr,
)
def test_non_json_schemas_are_problems(schema: Any) -> None:
    assert schema_problems(schema)
    with pytest.raises(UnsafeSchemaError):
        compile_schema(schema)


def test_shared_subschemas_in_memory_are_not_an_amplifier() -> None:
    node: Any = {"type": "string"}
    for _ in range(30):
        node = {"allOf": [node, node]}  # 31 dicts in memory, 2**31 as JSON
    found = finishes(lambda: paths(node))
    assert found and "$" in "".join(found)


def test_meta_schema_violations_are_reported_with_paths() -> None:
    found = paths({"type": "objekt", "properties": {"n": {"minimum": "x", "required": "name"}}})
    assert "$.type" in found
    assert found["$.properties.n.minimum"] == "'x' is not of type 'number'"
    assert "$.properties.n.required" in found


def test_quadratic_meta_schema_checks_are_avoided() -> None:
    # jsonschema's uniqueItems compares unsortable items pairwise.
    found = finishes(lambda: paths({"required": [{}] * 20_000}), timeout=30)
    assert found


def test_problem_lists_are_capped() -> None:
    schema = {"properties": {f"p{i}": {"minimum": "x"} for i in range(200)}}
    found = schema_problems(schema)
    assert len(found) == schemas.MAX_PROBLEMS + 1
    assert "more problems" in found[-1][1]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
keywords = st.sampled_from([
    "type", "pattern", "patternProperties", "$ref", "$dynamicRef", "$anchor", "$dynamicAnchor", "$id", "$schema",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "properties", "items", "$defs", "uniqueItems",
    "required", "enum", "const", "minimum", "additionalProperties", "unevaluatedProperties", "dependentSchemas",
])
schema_like = st.recursive(
    st.booleans() | st.dictionaries(keywords, json_values, max_size=3),
    lambda children: st.dictionaries(keywords, children | st.lists(children, max_size=3) | json_values
                                     | st.dictionaries(st.text(max_size=4), children, max_size=3), max_size=4),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schema_like | json_values, instance=json_values)
def test_random_schemas_never_raise_anything_unexpected(schema: Any, instance: Any) -> None:
    problems = schema_problems(schema)
    assert all(isinstance(p, str) and isinstance(m, str) for p, m in problems)
    if problems:
        with pytest.raises(UnsafeSchemaError):
            compile_schema(schema)
        return
    compiled = compile_schema(schema)
    try:
        result = compiled.is_valid(instance)
        error = compiled.first_error(instance)
    except SchemaEvaluationError:
        return
    assert result == (error is None)


# --- uniqueItems ---------------------------------------------------------------


def test_unique_items_over_many_objects_is_fast() -> None:
    compiled = compile_schema({"type": "array", "uniqueItems": True})
    many = [{"a": i, "b": [i, str(i)]} for i in range(20_000)]
    assert finishes(lambda: compiled.is_valid(many), timeout=10)
    assert not finishes(lambda: compiled.is_valid([*many, {"b": [5, "5"], "a": 5}]), timeout=10)


@pytest.mark.parametrize(
    "items, unique",
    [
        ([1, 1.0], False),
        ([1, True], True),
        ([0, False], True),
        ([True, True], False),
        ([None, None], False),
        ([None, False], True),
        (["1", 1], True),
        ([{"a": 1, "b": 2}, {"b": 2, "a": 1}], False),
        ([{"a": 1}, {"a": 1.0}], False),
        ([{"a": 1}, {"a": True}], True),
        ([[1, 2], [1, 2]], False),
        ([[1, 2], [2, 1]], True),
        ([[1], [1.0]], False),
        ([[0], [False]], True),
        ([2**70, float(2**70)], False),
        ([2**53 + 1, float(2**53)], True),
        ([0.1, 0.1], False),
        ([0.1, 0.2], True),
        ([-0.0, 0], False),
        ([{}, []], True),
        (["a", "a"], False),
        ([{"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]}], False),
    ],
    ids=repr,
)
def test_unique_items_uses_json_schema_equality(items: list[Any], unique: bool) -> None:
    compiled = compile_schema({"uniqueItems": True})
    assert compiled.is_valid(items) is unique
    assert plain({"uniqueItems": True}).is_valid(items) is unique


@settings(max_examples=300, deadline=None)
@given(a=json_values, b=json_values)
def test_canonical_json_equality_is_json_schema_equality(a: Any, b: Any) -> None:
    assert (canonical_json(a) == canonical_json(b)) == jsonschema_equal(a, b)
    assert canonical_json(a) == canonical_json(json.loads(json.dumps(a)))


@settings(max_examples=200, deadline=None)
@given(items=st.lists(json_values, max_size=6))
def test_unique_items_agrees_with_jsonschema(items: list[Any]) -> None:
    items = items + items[:1]  # often a duplicate
    assert compile_schema({"uniqueItems": True}).is_valid(items) == plain({"uniqueItems": True}).is_valid(items)


def test_canonical_json_is_iterative() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    assert canonical_json(deep).startswith("[[[")


# --- ordinary schemas behave exactly like jsonschema --------------------------------


ORDINARY: list[tuple[dict[str, Any], list[Any]]] = [
    ({"type": "string", "minLength": 2, "maxLength": 4}, ["ab", "a", "abcde", 5, None]),
    ({"type": "integer", "minimum": 0, "exclusiveMaximum": 10, "multipleOf": 2}, [0, 4, 10, -2, 3, 1.0, 2.5, True]),
    ({"type": "number", "maximum": 1.5}, [1.5, 1.6, "1", False]),
    ({"type": ["string", "null"]}, ["x", None, 1]),
    ({"enum": [1, "a", None, [1]]}, [1, 1.0, True, "a", "b", [1], [1.0]]),
    ({"const": {"a": [1, 2]}}, [{"a": [1, 2]}, {"a": [2, 1]}, {"a": [1.0, 2.0]}]),
    ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"],
      "additionalProperties": False}, [{"a": "x"}, {"a": "x", "b": 1}, {"b": 1}, {"a": "x", "c": 1}, {"a": 1}, []]),
    ({"type": "object", "patternProperties": {"^x-": {"type": "integer"}, "^y": {"type": "string"}},
      "additionalProperties": {"type": "boolean"}}, [{"x-a": 1}, {"x-a": "1"}, {"yes": "s"}, {"z": True}, {"z": 1}]),
    ({"type": "object", "patternProperties": {"^x-": True}, "additionalProperties": False},
     [{"x-a": 1}, {"z": 1, "q": 2}, {}]),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3, "uniqueItems": True},
     [[1], [], [1, 2, 3, 4], [1, 1], [1, "a"], [1, True]]),
    ({"type": "array", "prefixItems": [{"type": "string"}], "items": False}, [["a"], ["a", 1], [1], []]),
    ({"type": "array", "contains": {"type": "string"}, "minContains": 2}, [["a", "b"], ["a", 1], [1]]),
    ({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 5}]}, ["x", 5, 4, None]),
    ({"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]}, [1, 3, 2.5, "x"]),
    ({"not": {"type": "null"}}, [None, 1]),
    ({"if": {"properties": {"k": {"const": "a"}}}, "then": {"required": ["a"]}, "else": {"required": ["b"]}},
     [{"k": "a", "a": 1}, {"k": "a"}, {"k": "b", "b": 1}, {"k": "b"}]),
    ({"dependentRequired": {"a": ["b"]}, "dependentSchemas": {"c": {"required": ["d"]}}},
     [{"a": 1, "b": 2}, {"a": 1}, {"c": 1}, {"c": 1, "d": 1}]),
    ({"propertyNames": {"pattern": "^[a-z]+$", "maxLength": 3}}, [{"abc": 1}, {"ABC": 1}, {"abcd": 1}]),
    ({"minProperties": 1, "maxProperties": 2}, [{}, {"a": 1}, {"a": 1, "b": 2, "c": 3}]),
    ({"type": "object", "properties": {"a": True}, "patternProperties": {"^p": True}, "unevaluatedProperties": False},
     [{"a": 1}, {"p1": 1}, {"q": 1}]),
    ({"allOf": [{"properties": {"a": True}}], "unevaluatedProperties": {"type": "integer"}},
     [{"a": "x", "b": 1}, {"b": "x"}]),
    ({"prefixItems": [True], "unevaluatedItems": False}, [[1], [1, 2], []]),
    ({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "object", "properties": {"b": {"maxLength": 1}}}}}},
     [{"a": [{"b": "xx"}]}, {"a": [{"b": "x"}]}]),
    ({"type": "string", "pattern": "^[a-z0-9._-]+@[a-z0-9.-]+\\.[a-z]{2,}$"}, ["a@b.cd", "A@b.cd", "a@b", ""]),
    ({"type": "string", "pattern": "\\d{3}-\\d{4}"}, ["call 555-1234", "5551234"]),
    (True, [1, None]),
    (False, [1, None]),
]


def _cases() -> list[tuple[Any, Any]]:
    return [(schema, instance) for schema, instances in ORDINARY for instance in instances]


@pytest.mark.parametrize("schema, instance", _cases(), ids=lambda v: json.dumps(v)[:40])
def test_ordinary_schemas_behave_like_jsonschema(schema: Any, instance: Any) -> None:
    assert schema_problems(schema) == []
    compiled = compile_schema(schema)
    reference = plain(schema)
    assert compiled.is_valid(instance) == reference.is_valid(instance)
    error = jsonschema.exceptions.best_match(reference.iter_errors(instance))
    expected = None if error is None else (tuple(error.absolute_path), error.message)
    assert compiled.first_problem(instance) == expected


def test_first_error_names_the_path() -> None:
    compiled = compile_schema({
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "object", "properties": {"b": {"maxLength": 1}}}},
                       "odd key": {"type": "integer"}},
    })
    assert compiled.first_error({"a": [{"b": "x"}]}) is None
    assert compiled.first_error({"a": [{"b": "x"}, {"b": "xy"}]}) == "$.a[1].b: 'xy' is too long"
    assert compiled.first_error({"odd key": "1"}) == "$[\"odd key\"]: '1' is not of type 'integer'"


def test_messages_are_cut() -> None:
    compiled = compile_schema({"type": "integer"})
    error = compiled.first_error("x" * 100_000)
    assert error is not None and len(error) < MAX_MESSAGE_LENGTH + 20


def test_at_evaluates_a_subschema_with_root_references() -> None:
    compiled = compile_schema({
        "$defs": {"short": {"type": "string", "maxLength": 2}},
        "type": "object",
        "properties": {"name": {"$ref": "#/$defs/short"}},
    })
    name = compiled.at("properties", "name")
    assert name.first_error("ab") is None
    assert name.first_error("abc") == "$: 'abc' is too long"
    with pytest.raises(KeyError):
        compiled.at("properties", "missing")


def test_compiled_schemas_are_cached_and_share_nothing_with_the_input() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    first = compile_schema(schema)
    assert compile_schema({"type": "object", "properties": {"a": {"type": "string"}}}) is first
    schema["properties"]["a"]["type"] = "integer"  # mutate after compiling
    assert first.is_valid({"a": "x"})
    assert first.schema == {"type": "object", "properties": {"a": {"type": "string"}}}


def test_schema_keyword_never_switches_to_the_stock_validator() -> None:
    # jsonschema would evaluate a schema naming its dialect with the stock
    # class (Python's re, pairwise uniqueItems) when a reference reaches it.
    schema = {"$schema": schemas.DRAFT_2020_12, "properties": {"child": {"$ref": "#"}}, "pattern": "^(a+)+$"}
    compiled = compile_schema(schema)
    finishes(lambda: compiled.is_valid({"child": "a" * 5000 + "!"}))


def test_many_distinct_evaluations_stay_within_budget_for_ordinary_values() -> None:
    compiled = compile_schema({
        "type": "array",
        "items": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string", "pattern": "^[a-z]+$"}},
                  "required": ["id", "name"]},
    })
    value = [{"id": i, "name": "abc"} for i in range(3000)]
    assert compiled.is_valid(value)
    assert compiled.first_error(value) is None
