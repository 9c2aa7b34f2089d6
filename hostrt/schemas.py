"""JSON Schema for schemas written by plugin authors.

Plugins embed JSON Schemas in ``plugin.json`` (the settings schema, event
payload schemas, command parameter and result schemas), and the host
evaluates them in its own process. Anyone may write a plugin, so every
such schema is treated as hostile: written by someone who has read this
module and the ``jsonschema`` source. This module is the only place that
checks or evaluates one:

- :func:`schema_problems` says everything wrong with a schema, each problem
  with the JSON path of its location, without evaluating anything the
  schema could make expensive.
- :func:`compile_schema` turns a schema without problems into a
  :class:`CompiledSchema` whose :meth:`~CompiledSchema.first_error` and
  :meth:`~CompiledSchema.is_valid` evaluate it with bounded work.

Each rule closes a class of attack (the docstrings below say which):

=========================================  =====================================================
rule                                       attack it closes
=========================================  =====================================================
``$ref``/``$dynamicRef``/``$recursiveRef``  ``file://`` or ``http://`` references that make the
are ``#...`` fragments that resolve to a   host read its own files or call internal services
schema inside the document; no retrieval   (and show the content in error messages); dangling
ever happens                               references that fail at evaluation time
``$id`` only ``"#"``, ``$schema`` only     base-URI games that re-point references, and
draft 2020-12 and only at the root         ``$schema`` switching evaluation to a stock
                                           validator with none of these protections
regular expressions run on RE2             catastrophic backtracking (``^(a+)+$``) freezing the
                                           host, which Python's ``re`` does while holding the
                                           GIL; compile-time crashes (``OverflowError``,
                                           ``RecursionError``) escaping as non-validation errors
at most 64 KiB, 32 levels of JSON and      memory, time and recursion depth of every later
2000 subschemas                            step (the meta-schema check included)
no reference cycle that loops without      infinite recursion (``{"$ref": "#"}``) that surfaces
consuming input; at most 10,000            as ``RecursionError`` at evaluation time, and
subschemas applied to one value            exponential work through a chain of ``allOf``
                                           references
linear ``uniqueItems`` (also when checking  jsonschema's pairwise comparison of unhashable items
against the meta-schema)                   (quadratic: seconds for a few thousand objects)
``format`` is an annotation only           format checkers running plugin-chosen data through
                                           further parsers (Python ``re`` for ``regex``)
a budget of evaluation steps per call      anything else that is super-linear, e.g. ``anyOf``
                                           recursion that is exponential in the depth of the
                                           value, and huge error messages
=========================================  =====================================================

Regular expressions are RE2 syntax, which covers the ECMA-262 subset that
JSON Schemas use in practice (``\\uXXXX`` escapes are translated); look-around
and backreferences are not available and are reported as problems.
"""

from __future__ import annotations

import contextvars
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import jsonschema
import re2
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema import Draft202012Validator, ValidationError
from jsonschema._utils import find_evaluated_item_indexes_by_schema
from jsonschema.exceptions import best_match
from jsonschema_specifications import REGISTRY as _SPECIFICATIONS

from . import jsonvalue

__all__ = [
    "DRAFT_2020_12",
    "MAX_EVALUATION_STEPS",
    "MAX_MESSAGE_LENGTH",
    "MAX_PATTERN_LENGTH",
    "MAX_PATTERN_NESTING",
    "MAX_PATTERN_PROGRAM_SIZE",
    "MAX_REPETITION",
    "MAX_SCHEMA_BYTES",
    "MAX_SCHEMA_DEPTH",
    "MAX_SUBSCHEMAS",
    "MAX_SUBSCHEMAS_PER_VALUE",
    "CompiledSchema",
    "PatternError",
    "SchemaEvaluationError",
    "UnsafeSchemaError",
    "canonical_json",
    "compile_pattern",
    "compile_schema",
    "json_path",
    "schema_problem_locations",
    "schema_problems",
]

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
#: Largest schema, as UTF-8 bytes of compact JSON.
MAX_SCHEMA_BYTES = 64 * 1024
#: Deepest nesting of JSON inside a schema (each schema level nests one or
#: two JSON levels: ``properties`` → name → schema).
MAX_SCHEMA_DEPTH = 32
#: Longest ``pattern`` or ``patternProperties`` key, in characters.
MAX_PATTERN_LENGTH = 4096
#: Largest compiled RE2 program (``[\\p{L}\\p{N}]{1,20}`` is about 27,000).
#: The worst-case cost of a search is about text length × program size;
#: each search is charged that to the evaluation budget before it runs.
MAX_PATTERN_PROGRAM_SIZE = 30_000
#: Largest ``{n}``/``{n,m}`` repetition count (RE2's own limit).
MAX_REPETITION = 1000
#: Deepest nesting of groups in a regular expression.
MAX_PATTERN_NESTING = 100
#: Most subschemas (objects or booleans in schema positions) in one schema.
#: Checking a schema against the meta-schema costs roughly 0.2 ms each.
MAX_SUBSCHEMAS = 2000
#: Most subschemas that ``$ref``/``$dynamicRef``/``allOf``/``anyOf``/``oneOf``/
#: ``not``/``if``/``then``/``else``/``dependentSchemas`` may apply to a single
#: value (counting every path through the reference graph).
MAX_SUBSCHEMAS_PER_VALUE = 10_000
#: Default budget of one evaluation, in steps (a keyword applied to a value
#: is one step; regex searches, ``uniqueItems`` and long messages cost more).
MAX_EVALUATION_STEPS = 250_000
#: Error messages are cut to this many characters.
MAX_MESSAGE_LENGTH = 1000
#: Problems reported for one schema; the rest are summarised.
MAX_PROBLEMS = 50

# RE2 work (text bytes × program size) that counts as one evaluation step.
_REGEX_WORK_PER_STEP = 2000
# Characters of error message that count as one evaluation step.
_MESSAGE_CHARS_PER_STEP = 1000
# Budget for checking a schema against the meta-schema.
_META_STEPS = 250_000

Loc = tuple[int | str, ...]


class SchemaEvaluationError(ValueError):
    """A schema could not be evaluated against a value: it needed more than
    its budget of steps, recursed too deeply, or failed in a way other than
    reporting a validation error. The message never includes the schema."""


class UnsafeSchemaError(ValueError):
    """:func:`compile_schema` was given a schema that has problems.

    ``problems`` lists them as :func:`schema_problems` does.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        first = f"{problems[0][0]}: {problems[0][1]}" if problems else "invalid schema"
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(f"invalid JSON Schema: {first}{more}")
        self.problems = problems


class PatternError(ValueError):
    """A regular expression that RE2 cannot run (or may not run here)."""


_IDENTIFIER_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def json_path(loc: Sequence[int | str], root: str = "$") -> str:
    """``('events', 0, 'schema')`` → ``$.events[0].schema``.

    Keys that are not identifiers use bracket notation with JSON escapes:
    ``$.settings["a b"]``, so no key can put a line break into a message.
    """
    parts = [root]
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _IDENTIFIER_RE.fullmatch(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part)}]")
    return "".join(parts)


def _cut(text: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """``text`` shortened to about ``limit`` characters by cutting out its
    middle: messages quote the value first and say what is wrong last."""
    if len(text) <= limit:
        return text
    tail = limit // 3
    return f"{text[: limit - tail]} ... {text[-tail:]}"


# --- regular expressions -------------------------------------------------------


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.never_capture = True  # captures cost memory per group per thread
    options.log_errors = False
    options.max_mem = 2 << 20  # program and DFA cache, per expression
    return options


_RE2_OPTIONS = _re2_options()
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_HEX_BRACED = re.compile(r"\{([0-9A-Fa-f]{1,6})\}")
_QUANTIFIER = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")


@dataclass(frozen=True)
class _Pattern:
    regexp: Any
    cost: int  # program size: the worst-case work per byte of text searched

    def search(self, text: str) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        _spend(1 + len(data) * self.cost // _REGEX_WORK_PER_STEP)
        return self.regexp.search(data) is not None


def _translate(pattern: str) -> str:
    """ECMA-262 spellings RE2 lacks → RE2, and repetition counts checked.

    RE2 reads ``a{4294967296}`` as the literal text ``a{4294967296}`` rather
    than refusing it, so counts are checked here, where ECMA-262 would read
    them as a (huge) repetition.
    """
    out: list[str] = []
    i, n, in_class, depth = 0, len(pattern), False, 0
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            if pattern[i + 1] == "u":
                if m := _HEX4.match(pattern, i + 2):
                    out.append(f"\\x{{{m.group()}}}")
                    i = m.end()
                    continue
                if m := _HEX_BRACED.match(pattern, i + 2):
                    out.append(f"\\x{{{m.group(1)}}}")
                    i = m.end()
                    continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            if pattern.startswith(("[]", "[^]"), i):
                raise PatternError("'[]' and '[^]' are not supported (write '[\\s\\S]' for any character)")
            in_class = True
        elif c == "(":
            depth += 1
            if depth > MAX_PATTERN_NESTING:
                raise PatternError(f"groups are nested more than {MAX_PATTERN_NESTING} levels deep")
        elif c == ")":
            depth = max(depth - 1, 0)
        elif c == "{" and (m := _QUANTIFIER.match(pattern, i)):
            for count in m.groups():
                if count and (len(count) > 5 or int(count) > MAX_REPETITION):
                    raise PatternError(f"repetition count {count[:12]} is larger than {MAX_REPETITION}")
        out.append(c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=512)
def _compile_cached(pattern: str) -> _Pattern:
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"longer than {MAX_PATTERN_LENGTH} characters")
    translated = _translate(pattern)
    try:
        regexp = re2.compile(translated, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise PatternError(f"not a regular expression RE2 supports: {_cut(str(detail), 120)}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. UnicodeEncodeError for lone surrogates
        raise PatternError(f"cannot be compiled ({type(exc).__name__})") from None
    size = regexp.programsize
    if size > MAX_PATTERN_PROGRAM_SIZE:
        raise PatternError(f"compiles to {size} instructions, more than {MAX_PATTERN_PROGRAM_SIZE}")
    return _Pattern(regexp, max(size, 1))


def compile_pattern(pattern: Any) -> _Pattern:
    """Compile a ``pattern`` (or ``patternProperties`` key) for RE2, once.

    Closes catastrophic backtracking: RE2 runs in time linear in the text
    (the cost per byte is bounded by :data:`MAX_PATTERN_PROGRAM_SIZE`).
    Raises :class:`PatternError`, and nothing else,
    for anything RE2 cannot or may not run.
    """
    if type(pattern) is not str:
        raise PatternError("a regular expression must be a string")
    try:
        return _compile_cached(pattern)
    except PatternError:
        raise
    except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError...
        raise PatternError(f"cannot be compiled ({type(exc).__name__})") from None


# --- canonical JSON for equality ---------------------------------------------


def canonical_json(value: Any) -> str:
    """Text that is equal for two values exactly when JSON Schema considers
    them equal: ``1`` and ``1.0`` are one number, ``true`` is not ``1``,
    object member order does not matter.

    Iterative (no recursion limit) and linear in the size of ``value`` apart
    from sorting object keys. Used for ``uniqueItems`` in linear time.
    Raises ``TypeError`` for anything but plain JSON data.
    """
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is _Literal:
            out.append(item.text)
        elif item is None:
            out.append("n")
        elif item is True:
            out.append("t")
        elif item is False:
            out.append("f")
        elif kind is str:
            _spend(len(item) // 256)  # the copy made here costs memory
            out.append(json.dumps(item))
        elif kind is int:
            out.append(f"i{item:x}")  # hex: no digit limit, linear
        elif kind is float:
            # An integral float is the integer it equals; others by exact value.
            out.append(f"i{int(item):x}" if item.is_integer() else f"d{item.hex()}")
        elif kind is list or kind is tuple:
            stack.append(_Literal("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Literal(","))
            out.append("[")
        elif kind is dict:
            keys = sorted(item)
            stack.append(_Literal("}"))
            for index in range(len(keys) - 1, -1, -1):
                key = keys[index]
                stack.append(item[key])
                stack.append(_Literal(("," if index else "") + json.dumps(key) + ":"))
            out.append("{")
        else:
            raise TypeError("not a JSON value")
        _spend_light()
    return "".join(out)


class _Literal:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


# --- evaluation budget ------------------------------------------------------


class _BudgetExceeded(Exception):
    pass


class _Budget:
    __slots__ = ("remaining", "light")

    def __init__(self, steps: int) -> None:
        self.remaining = steps
        self.light = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("hostrt_schema_budget", default=None)


def _spend(steps: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.remaining -= steps
        if budget.remaining < 0:
            raise _BudgetExceeded


def _spend_light() -> None:
    """One node of canonical JSON: a tenth of a step."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.light += 1
        if budget.light >= 10:
            budget.light = 0
            _spend(1)


# --- the validator class ------------------------------------------------------


def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not compile_pattern(patrn).search(instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        compiled = compile_pattern(pattern)
        for key, value in instance.items():
            if compiled.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional(instance: dict[str, Any], schema: dict[str, Any]) -> Iterator[str]:
    properties = schema.get("properties", {})
    patterns = [compile_pattern(p) for p in schema.get("patternProperties", {})]
    for key in instance:
        if key not in properties and not any(p.search(key) for p in patterns):
            yield key


def _additional_properties(validator: Any, aP: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # jsonschema's own version joins the patterns and runs Python's re.
    if not validator.is_type(instance, "object"):
        return
    extras = set(_additional(instance, schema))
    if validator.is_type(aP, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], aP, path=extra)
    elif not aP and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            extra_text = ", ".join(repr(extra) for extra in sorted(extras, key=str))
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(f"Additional properties are not allowed ({extra_text} {verb} unexpected)")


def _evaluated_keys(validator: Any, instance: dict[str, Any], schema: Any) -> set[str]:
    """jsonschema's ``find_evaluated_property_keys_by_schema`` with RE2 and a set."""
    if validator.is_type(schema, "boolean"):
        return set()
    keys: set[str] = set()
    for keyword in ("$ref", "$dynamicRef"):
        ref = schema.get(keyword)
        if ref is not None:
            resolved = validator._resolver.lookup(ref)
            keys |= _evaluated_keys(
                validator.evolve(schema=resolved.contents, _resolver=resolved.resolver),
                instance,
                resolved.contents,
            )
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        keys |= properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        if (subschema := schema.get(keyword)) is None:
            continue
        keys.update(key for key, value in instance.items() if next(validator.descend(value, subschema), None) is None)
    if "patternProperties" in schema:
        patterns = [compile_pattern(p) for p in schema["patternProperties"]]
        keys.update(key for key in instance if any(p.search(key) for p in patterns))
    if "dependentSchemas" in schema:
        for key, subschema in schema["dependentSchemas"].items():
            if key in instance:
                keys |= _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if next(validator.descend(instance, subschema), None) is None:
                keys |= _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys |= _evaluated_keys(validator, instance, schema["if"])
            if "then" in schema:
                keys |= _evaluated_keys(validator, instance, schema["then"])
        elif "else" in schema:
            keys |= _evaluated_keys(validator, instance, schema["else"])
    return keys


def _unevaluated_properties(validator: Any, uP: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    unevaluated = [
        key
        for key in instance
        if key not in evaluated
        and next(validator.descend(instance[key], uP, path=key, schema_path=key), None) is not None
    ]
    if unevaluated:
        extras = ", ".join(repr(each) for each in sorted(unevaluated, key=str))
        verb = "was" if len(unevaluated) == 1 else "were"
        if uP is False:
            yield ValidationError(f"Unevaluated properties are not allowed ({extras} {verb} unexpected)")
        else:
            yield ValidationError(
                "Unevaluated properties are not valid under the given schema "
                f"({extras} {verb} unevaluated and invalid)"
            )


def _unevaluated_items(validator: Any, uI: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    # jsonschema's version tests membership in a list: quadratic.
    if not validator.is_type(instance, "array"):
        return
    evaluated = set(find_evaluated_item_indexes_by_schema(validator, instance, schema))
    unevaluated = [item for index, item in enumerate(instance) if index not in evaluated]
    if unevaluated:
        extras = ", ".join(repr(each) for each in unevaluated)
        verb = "was" if len(unevaluated) == 1 else "were"
        yield ValidationError(f"Unevaluated items are not allowed ({extras} {verb} unexpected)")


def _unique_items(validator: Any, uI: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """Linear ``uniqueItems``: each item's canonical JSON goes into a set.

    jsonschema compares unhashable items pairwise, which is quadratic: a few
    thousand small objects keep the host busy for seconds.
    """
    if not uI or not validator.is_type(instance, "array"):
        return
    seen: set[str] = set()
    for item in instance:
        text = canonical_json(item)
        if text in seen:
            yield ValidationError(f"{instance!r} has non-unique elements")
            return
        seen.add(text)


def _format(validator: Any, format: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``format`` is an annotation only: no format checker runs plugin data
    through further parsers (the ``regex`` format would use Python's re)."""
    return iter(())


def _metered(function: Any) -> Any:
    """Charge every keyword evaluation, and the length of every error
    message it produces, to the evaluation budget; cut long messages."""

    def keyword(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
        # Keywords such as properties, required and enum loop over their value.
        _spend(1 + len(value) // 16 if type(value) is list or type(value) is dict else 1)
        for error in function(validator, value, instance, schema) or ():
            message = error.message
            _spend(1 + len(message) // _MESSAGE_CHARS_PER_STEP)
            if len(message) > MAX_MESSAGE_LENGTH:
                error.message = _cut(message)
            yield error

    keyword.__name__ = getattr(function, "__name__", "keyword")
    return keyword


_OVERRIDES = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "unevaluatedProperties": _unevaluated_properties,
    "unevaluatedItems": _unevaluated_items,
    "uniqueItems": _unique_items,
    "format": _format,
}

_Validator = jsonschema.validators.extend(
    Draft202012Validator,
    validators={
        name: _metered(function)
        for name, function in {**Draft202012Validator.VALIDATORS, **_OVERRIDES}.items()
    },
)


def _no_retrieval(uri: str) -> referencing.Resource[Any]:
    """Every reference that is not inside the schema is refused: nothing is
    ever read from a file or fetched from the network."""
    raise referencing.exceptions.NoSuchResource(ref=uri)


def _meta_validator() -> Any:
    # The draft 2020-12 meta-schemas, minus "$schema", so that checking a
    # plugin's schema also runs on the metered class (linear uniqueItems on
    # "required": [{}, {}, ...], a budget) rather than on the stock one.
    resources = []
    for uri in _SPECIFICATIONS:
        if uri.startswith("https://json-schema.org/draft/2020-12/"):
            contents = json.loads(json.dumps(_SPECIFICATIONS.contents(uri)))
            contents.pop("$schema", None)
            resources.append((uri, referencing.jsonschema.DRAFT202012.create_resource(contents)))
    # Crawled, so that its anchors ("#meta") replace those of the stock copies.
    registry = referencing.Registry(retrieve=_no_retrieval).with_resources(resources).crawl()
    root = json.loads(json.dumps(Draft202012Validator.META_SCHEMA))
    root.pop("$schema", None)
    return _Validator(root, registry=registry)


_META = _meta_validator()


# --- static checks -----------------------------------------------------------

_SUBSCHEMA = ("additionalProperties", "propertyNames", "items", "contains", "if", "then", "else", "not",
              "unevaluatedItems", "unevaluatedProperties", "contentSchema")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("$defs", "definitions", "properties", "patternProperties", "dependentSchemas", "dependencies")
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
_ANCHOR_RE = re.compile(r"[A-Za-z_][-A-Za-z0-9._]*")
_INDEX_RE = re.compile(r"0|[1-9][0-9]{0,8}")


def _loc_key(loc: Loc) -> tuple[int, tuple[str, ...]]:
    """Sort order of locations: shallower first, then by their parts."""
    return (len(loc), tuple(map(str, loc)))


def _positions(schema: Any) -> dict[Loc, Any]:
    """Every location in ``schema`` that holds a subschema (an object or a
    boolean where the meta-schema expects a schema), by JSON path."""
    found: dict[Loc, Any] = {}
    stack: list[tuple[Loc, Any]] = [((), schema)]
    while stack:
        loc, node = stack.pop()
        if not isinstance(node, (dict, bool)):
            continue
        found[loc] = node
        if not isinstance(node, dict):
            continue
        for keyword in _SUBSCHEMA:
            if keyword in node:
                stack.append(((*loc, keyword), node[keyword]))
        for keyword in _SUBSCHEMA_LISTS:
            if isinstance(node.get(keyword), list):
                stack += [((*loc, keyword, i), sub) for i, sub in enumerate(node[keyword])]
        for keyword in _SUBSCHEMA_MAPS:
            if isinstance(node.get(keyword), dict):
                stack += [((*loc, keyword, k), sub) for k, sub in node[keyword].items()]
    return found


def _pointer(loc: Sequence[int | str]) -> str:
    """``("$defs", "a/b")`` → ``#/$defs/a~1b``."""
    return "#" + "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc)


def _resolve(ref: str, schema: Any, anchors: dict[str, Loc]) -> Loc | str:
    """The location ``ref`` points to, or why it points nowhere.

    Mirrors ``referencing``: the fragment is percent-decoded, then split
    into JSON pointer segments; ``~1`` and ``~0`` are unescaped in object
    keys; array indexes must be canonical (``01`` and ``+1`` are refused
    here rather than guessed at).
    """
    fragment = ref[1:]
    if not fragment:
        return ()
    if not fragment.startswith("/"):
        return anchors.get(fragment, f"there is no $anchor or $dynamicAnchor named {fragment!r}")
    node = schema
    loc: list[int | str] = []
    for segment in unquote(fragment[1:]).split("/"):
        if isinstance(node, list):
            if not _INDEX_RE.fullmatch(segment) or int(segment) >= len(node):
                return f"{segment!r} is not an index of the array at {_pointer(loc)}"
            node = node[int(segment)]
            loc.append(int(segment))
        elif isinstance(node, dict):
            key = segment.replace("~1", "/").replace("~0", "~")
            if key not in node:
                return f"{_pointer(loc)} has no member {key!r}"
            node = node[key]
            loc.append(key)
        else:
            return f"{_pointer(loc)} is not an object or array"
    return tuple(loc)


def _static_problems(schema: Any) -> list[tuple[Loc, str]]:
    """Problems the meta-schema cannot see: references, identifiers,
    regular expressions, and reference cycles."""
    problems: list[tuple[Loc, str]] = []
    positions = _positions(schema)
    anchors: dict[str, Loc] = {}
    refs: list[tuple[Loc, str, str]] = []  # (location of the schema, keyword, ref)
    for loc in sorted(positions, key=_loc_key):
        node = positions[loc]
        if not isinstance(node, dict):
            continue
        if "$schema" in node:
            if loc:
                problems.append(((*loc, "$schema"), "$schema is only allowed at the root of the schema"))
            elif node["$schema"] not in (DRAFT_2020_12, DRAFT_2020_12 + "#"):
                problems.append((("$schema",), f"only draft 2020-12 ({DRAFT_2020_12!r}) is supported"))
        if "$id" in node and node["$id"] not in ("", "#"):
            problems.append((
                (*loc, "$id"),
                "$id may only be '#': a plugin's schema is one document, and other identifiers "
                "would change what its references point to",
            ))
        for keyword in ("$anchor", "$dynamicAnchor"):
            name = node.get(keyword)
            if keyword not in node:
                continue
            if not isinstance(name, str) or not _ANCHOR_RE.fullmatch(name):
                problems.append(((*loc, keyword), f"{keyword} must be a plain name (letters, digits, '-', '.', '_')"))
            elif name in anchors and anchors[name] != loc:
                problems.append(((*loc, keyword), f"anchor {name!r} is also defined at {_pointer(anchors[name])}"))
            else:
                anchors[name] = loc
        for keyword in _REF_KEYWORDS:
            if keyword in node:
                ref = node[keyword]
                if not isinstance(ref, str) or not ref.startswith("#"):
                    problems.append((
                        (*loc, keyword),
                        "only references inside this schema ('#/$defs/name', '#name') are allowed; "
                        "nothing is ever read from a file or the network",
                    ))
                else:
                    refs.append((loc, keyword, ref))
        if "pattern" in node and isinstance(node["pattern"], str):
            try:
                compile_pattern(node["pattern"])
            except PatternError as exc:
                problems.append(((*loc, "pattern"), f"invalid regular expression: {exc}"))
        if isinstance(node.get("patternProperties"), dict):
            for key in node["patternProperties"]:
                try:
                    compile_pattern(key)
                except PatternError as exc:
                    problems.append(((*loc, "patternProperties", key), f"invalid regular expression: {exc}"))

    # Reference targets, and the graph of subschemas applied to the same value.
    edges: dict[Loc, list[tuple[Loc, Loc]]] = {}  # from → [(to, location of the edge's keyword)]
    for loc, node in positions.items():
        out = edges.setdefault(loc, [])
        if not isinstance(node, dict):
            continue
        children: list[Loc] = []
        for keyword in ("allOf", "anyOf", "oneOf"):
            if isinstance(node.get(keyword), list):
                children += [(*loc, keyword, i) for i in range(len(node[keyword]))]
        children += [(*loc, keyword) for keyword in ("not", "if", "then", "else") if keyword in node]
        if isinstance(node.get("dependentSchemas"), dict):
            children += [(*loc, "dependentSchemas", key) for key in node["dependentSchemas"]]
        out += [(child, child) for child in children if child in positions]
    for loc, keyword, ref in refs:
        target = _resolve(ref, schema, anchors)
        if isinstance(target, str):
            problems.append(((*loc, keyword), f"reference {_cut(ref, 100)!r} does not resolve: {target}"))
        elif target not in positions:
            problems.append(((*loc, keyword), f"reference {_cut(ref, 100)!r} does not point to a schema"))
        elif keyword != "$recursiveRef":  # not evaluated in draft 2020-12
            edges[loc].append((target, (*loc, keyword)))
    problems += _cycle_problems(edges, positions)
    return problems


def _cycle_problems(edges: dict[Loc, list[tuple[Loc, Loc]]], positions: dict[Loc, Any]) -> list[tuple[Loc, str]]:
    """Cycles of subschemas applied to the same value (``{"$ref": "#"}``,
    ``{"allOf": [{"$ref": "#"}]}``): evaluating one never ends, because no
    step consumes any of the value. Then the number of subschemas each
    location applies to a single value, through every path."""
    problems: list[tuple[Loc, str]] = []
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {loc: WHITE for loc in positions}
    count: dict[Loc, int] = {}
    cyclic = False
    for start in sorted(positions, key=_loc_key):
        if colour[start] != WHITE:
            continue
        stack: list[tuple[Loc, int]] = [(start, 0)]
        colour[start] = GREY
        while stack:
            loc, index = stack[-1]
            out = edges.get(loc, [])
            if index < len(out):
                stack[-1] = (loc, index + 1)
                target, via = out[index]
                if colour[target] == GREY:
                    cyclic = True
                    problems.append((
                        via,
                        "reference cycle: this applies a schema to the same value it is already "
                        "evaluating, without consuming any of it, so evaluation would never end",
                    ))
                elif colour[target] == WHITE:
                    colour[target] = GREY
                    stack.append((target, 0))
            else:
                stack.pop()
                colour[loc] = BLACK
                if not cyclic:
                    total = 1
                    for target, _ in out:
                        total += count.get(target, 0)
                    count[loc] = min(total, MAX_SUBSCHEMAS_PER_VALUE + 1)
    if cyclic:
        return problems
    heavy = [loc for loc, total in count.items() if total > MAX_SUBSCHEMAS_PER_VALUE]
    if heavy:
        loc = min(heavy, key=_loc_key)
        problems.append((
            loc,
            f"applies more than {MAX_SUBSCHEMAS_PER_VALUE} subschemas to a single value "
            "(through $ref, allOf, anyOf, oneOf, not, if/then/else, dependentSchemas)",
        ))
    return problems


def _sort_key(problem: tuple[Loc, str]) -> tuple[Any, ...]:
    return (*_loc_key(problem[0]), problem[1])


@lru_cache(maxsize=256)
def _problems_for_text(text: str) -> tuple[tuple[Loc, str], ...]:
    schema = json.loads(text)
    if not isinstance(schema, (dict, bool)):
        return (((), "a schema must be an object or a boolean"),)
    count = len(_positions(schema))
    if count > MAX_SUBSCHEMAS:
        return (((), f"the schema has {count} subschemas, more than {MAX_SUBSCHEMAS}"),)
    found: set[tuple[Loc, str]] = set()
    token = _BUDGET.set(_Budget(_META_STEPS))
    try:
        for error in _META.iter_errors(schema):
            found.add((tuple(error.absolute_path), _cut(error.message, 300)))
            if len(found) > 10 * MAX_PROBLEMS:
                break
    except _BudgetExceeded:
        found.add(((), "too expensive to check against the meta-schema"))
    finally:
        _BUDGET.reset(token)
    found.update(_static_problems(schema))
    problems = sorted(found, key=_sort_key)
    if len(problems) > MAX_PROBLEMS:
        rest = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], ((), f"... and {rest} more problems")]
    return tuple(problems)


def _schema_text(schema: Any) -> str | tuple[Loc, str]:
    """The schema as compact JSON text (the cache key; member order is kept,
    since it decides which of several errors is reported), or why it cannot
    be one."""
    try:
        jsonvalue.check(schema, max_depth=MAX_SCHEMA_DEPTH, max_bytes=MAX_SCHEMA_BYTES, max_nodes=MAX_SCHEMA_BYTES)
    except jsonvalue.JSONValueError as exc:
        reason = exc.reason
        if "larger than" in reason:
            reason = f"the schema is larger than {MAX_SCHEMA_BYTES} bytes as JSON"
        elif "deeper than" in reason:
            reason = f"nested deeper than {MAX_SCHEMA_DEPTH} levels"
        return (exc.loc, reason)
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


def schema_problem_locations(schema: Any) -> list[tuple[Loc, str]]:
    """Like :func:`schema_problems`, with each location as a tuple of keys
    and indexes (``("properties", "name", "pattern")``)."""
    try:
        text = _schema_text(schema)
        if isinstance(text, tuple):
            return [text]
        return list(_problems_for_text(text))
    except Exception as exc:  # noqa: BLE001 - this function reports, it never raises
        return [((), f"the schema cannot be checked ({type(exc).__name__})")]


def schema_problems(schema: Any) -> list[tuple[str, str]]:
    """Everything wrong with a plugin-supplied JSON Schema, as
    ``(JSON path relative to the schema, message)`` pairs; empty if the
    schema may be compiled and evaluated. Never raises.

    Checked, each closing the attacks named in the module docstring:

    - plain JSON of at most :data:`MAX_SCHEMA_BYTES` bytes and
      :data:`MAX_SCHEMA_DEPTH` levels (checked first; nothing else is
      checked for a schema that fails this);
    - the draft 2020-12 meta-schema (without format assertions);
    - ``$ref``, ``$dynamicRef`` and ``$recursiveRef`` are fragments
      (``#``, ``#/json/pointer``, ``#anchor``) that resolve to a subschema
      of this document;
    - ``$schema`` only at the root and only draft 2020-12; ``$id`` only
      ``'#'``; ``$anchor``/``$dynamicAnchor`` plain, unique names;
    - every ``pattern`` and ``patternProperties`` key compiles with RE2,
      within :data:`MAX_PATTERN_LENGTH` and :data:`MAX_PATTERN_PROGRAM_SIZE`,
      with repetition counts up to :data:`MAX_REPETITION`;
    - no cycle of references and in-place applicators (``allOf``, ``anyOf``,
      ``oneOf``, ``not``, ``if``/``then``/``else``, ``dependentSchemas``)
      that never consumes input, and at most
      :data:`MAX_SUBSCHEMAS_PER_VALUE` subschemas applied to one value.
    """
    return [(json_path(loc), message) for loc, message in schema_problem_locations(schema)]


# --- compiled schemas -----------------------------------------------------------


class CompiledSchema:
    """A checked schema, ready to evaluate values with bounded work.

    Get one from :func:`compile_schema`. Evaluation never fetches anything,
    runs regular expressions on RE2, and stops after ``max_steps``
    evaluation steps; anything that is not a validation result becomes
    :class:`SchemaEvaluationError`.
    """

    __slots__ = ("_schema", "_validator")

    def __init__(self, schema: Any, validator: Any) -> None:
        self._schema = schema
        self._validator = validator

    @property
    def schema(self) -> Any:
        """A fresh copy of the (sub)schema this evaluates."""
        return json.loads(json.dumps(self._schema))

    def at(self, *loc: int | str) -> CompiledSchema:
        """The subschema at ``loc`` (e.g. ``("properties", "name")``),
        evaluated with references resolving in the whole schema."""
        node = self._schema
        for part in loc:
            node = node[part]
        if not isinstance(node, (dict, bool)):
            raise KeyError(json_path(loc))
        return CompiledSchema(node, self._validator.evolve(schema=node))

    def _run(self, instance: Any, max_steps: int | None, evaluate: Any) -> Any:
        token = _BUDGET.set(_Budget(max_steps) if max_steps is not None else None)
        try:
            return evaluate(self._validator.iter_errors(instance))
        except _BudgetExceeded:
            raise SchemaEvaluationError(
                f"the schema needs more than {max_steps} evaluation steps for this value"
            ) from None
        except RecursionError:
            raise SchemaEvaluationError("the schema nests too deeply for this value") from None
        except PatternError as exc:
            raise SchemaEvaluationError(f"a regular expression in the schema cannot be used: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - never echo the schema or a traceback
            unresolvable = referencing.exceptions.Unresolvable
            if isinstance(exc, unresolvable) or isinstance(exc.__cause__, unresolvable):
                raise SchemaEvaluationError("a reference in the schema does not resolve") from None
            raise SchemaEvaluationError(f"the schema cannot be evaluated ({type(exc).__name__})") from None
        finally:
            _BUDGET.reset(token)

    def is_valid(self, instance: Any, *, max_steps: int | None = MAX_EVALUATION_STEPS) -> bool:
        """Whether ``instance`` is valid (stops at the first error)."""
        return self._run(instance, max_steps, lambda errors: next(errors, None) is None)

    def first_problem(
        self, instance: Any, *, max_steps: int | None = MAX_EVALUATION_STEPS
    ) -> tuple[Loc, str] | None:
        """The most relevant error as ``(path in the instance, message)``."""
        error = self._run(instance, max_steps, best_match)
        if error is None:
            return None
        return tuple(error.absolute_path), _cut(error.message)

    def first_error(self, instance: Any, *, max_steps: int | None = MAX_EVALUATION_STEPS) -> str | None:
        """The most relevant error as ``"$.a[0].b: 'x' is too long"``, or
        ``None`` if ``instance`` is valid."""
        problem = self.first_problem(instance, max_steps=max_steps)
        if problem is None:
            return None
        return f"{jsonvalue.format_path('$', problem[0])}: {problem[1]}"


@lru_cache(maxsize=256)
def _compile_text(text: str) -> CompiledSchema:
    problems = _problems_for_text(text)
    if problems:
        raise UnsafeSchemaError([(json_path(loc), message) for loc, message in problems])
    evaluated = json.loads(text)  # a fresh copy, shared with no caller
    for node in _positions(evaluated).values():
        if isinstance(node, dict):
            # jsonschema evaluates a schema that names its dialect with its
            # stock validator class, without the protections here; and only
            # "$id": "#" gets this far, which means nothing.
            node.pop("$schema", None)
            node.pop("$id", None)
    registry: referencing.Registry[Any] = referencing.Registry(retrieve=_no_retrieval)
    return CompiledSchema(evaluated, _Validator(evaluated, registry=registry))


def compile_schema(schema: Any) -> CompiledSchema:
    """Compile a plugin-supplied schema for evaluation (cached by content).

    Call it after :func:`schema_problems` returned nothing; a schema with
    problems raises :class:`UnsafeSchemaError` here too. The compiled
    schema shares no objects with ``schema``.
    """
    text = _schema_text(schema)
    if isinstance(text, tuple):
        raise UnsafeSchemaError([(json_path(text[0]), text[1])])
    return _compile_text(text)
