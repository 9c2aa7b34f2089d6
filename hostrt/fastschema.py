"""A fast validity check for the JSON Schemas of event payloads.

:class:`hostrt.schemas.CompiledSchema` evaluates a plugin's schema with
``jsonschema``, metered and with detailed errors; that costs hundreds of
microseconds for a small payload, which is too much for a value checked on
every event. :func:`compile_fast` turns the same schema into nested Python
closures that answer only "valid or not", in a few microseconds, with
exactly the answers of :meth:`CompiledSchema.is_valid
<hostrt.schemas.CompiledSchema.is_valid>`. Callers use it like this::

    fast = compile_fast(schema)          # once; None: use the metered path
    try:
        ok = fast.is_valid(value)
    except FallbackRequired:             # too much work: let the metered
        ok = compiled.is_valid(value)    # path decide (and report the error)

Only schemas that passed :func:`hostrt.schemas.schema_problems` may be
compiled here; :func:`compile_fast` relies on that check (references resolve,
no reference cycle applies subschemas to a value without consuming it,
patterns compile with RE2) and does not repeat it. It returns ``None`` for a
schema that uses anything outside the keywords below, and callers then use
:meth:`CompiledSchema.is_valid <hostrt.schemas.CompiledSchema.is_valid>`.

Supported keywords (draft 2020-12, with the semantics ``jsonschema`` gives
them as configured by :func:`hostrt.schemas.compile_schema`):

==========================  ====================================================
group                       keywords
==========================  ====================================================
any value                   ``type`` (a name or a list of names), ``enum``,
                            ``const``; boolean schemas ``true``/``false``
objects                     ``properties``, ``required``,
                            ``additionalProperties`` (boolean or schema),
                            ``patternProperties``, ``propertyNames``,
                            ``minProperties``, ``maxProperties``,
                            ``dependentRequired``, ``dependentSchemas``
arrays                      ``items`` (boolean or schema), ``prefixItems``,
                            ``minItems``, ``maxItems``, ``uniqueItems``,
                            ``contains`` with ``minContains``/``maxContains``
strings                     ``minLength``, ``maxLength`` (in code points),
                            ``pattern`` (RE2, unanchored search, through
                            :func:`hostrt.schemas.compile_pattern`)
numbers                     ``minimum``, ``maximum``, ``exclusiveMinimum``,
                            ``exclusiveMaximum``, ``multipleOf``
combinators                 ``allOf``, ``anyOf``, ``oneOf``, ``not``,
                            ``if``/``then``/``else``
references                  ``$ref`` to ``#`` and to JSON pointers in the same
                            schema (``#/$defs/name``, ``#/properties/a``, ...),
                            recursive ones included
ignored (annotations)       ``title``, ``description``, ``default``,
                            ``examples``, ``$comment``, ``format``,
                            ``deprecated``, ``readOnly``, ``writeOnly``,
                            ``$schema``, ``$id`` (only ``"#"``), ``$defs``,
                            ``definitions``, ``$anchor``, ``$dynamicAnchor``,
                            ``contentMediaType``, ``contentEncoding``,
                            ``contentSchema``
==========================  ====================================================

Anything else makes :func:`compile_fast` return ``None``:
``unevaluatedProperties``, ``unevaluatedItems``, ``$dynamicRef``, ``$ref`` to
an anchor (``#name``), and keywords ``jsonschema`` would ignore as unknown.
Keywords are only looked at in subschemas that can be reached from the root,
so an unused ``$defs`` entry does not matter.

The details that make the answers exact:

- ``integer`` accepts a float with an integral value (``1.0``); a boolean is
  never a number or an integer;
- ``enum``, ``const`` and ``uniqueItems`` compare JSON values: ``1`` equals
  ``1.0``, ``true`` is not ``1``, arrays and objects compare deeply and
  object member order does not matter (``uniqueItems`` follows
  :func:`hostrt.schemas.canonical_json`, as the metered path does);
- ``multipleOf`` runs ``jsonschema``'s own arithmetic (float division with a
  ``Fraction`` fallback for a float divisor, ``%`` otherwise);
- lengths count code points; patterns are searched, not anchored.

Values are plain JSON data as :func:`json.loads` returns it: ``dict`` with
``str`` keys, ``list``, ``str``, ``int``, ``float``, ``bool`` and ``None``,
compared by exact type. Anything else makes :meth:`FastValidator.is_valid`
raise :class:`FallbackRequired`.

Work is bounded the way the metered path bounds it, in the same steps:
before a subschema is applied to a value, the value's budget is charged
what the metered path charges for that subschema's keywords (one step per
keyword, more for long ``enum``/``required``/``properties`` values), and
each regular expression search is charged its text length times its
program size, as in :mod:`hostrt.schemas`. Past ``max_steps`` (by default
:data:`hostrt.schemas.MAX_EVALUATION_STEPS`) :meth:`FastValidator.is_valid`
stops and raises :class:`FallbackRequired`. The two counts are close but not
equal: this one stops at the first failure, where ``jsonschema`` evaluates
every keyword of a failed ``anyOf``/``oneOf`` branch and also charges error
messages, so it is usually lower, and it can be higher where the metered
path happens to meet a failing keyword first. So where the metered path
gives up on a value (budget, recursion, arithmetic) the fast path may still
answer, and the other way round it falls back. At the default budget the
fast path gives up after about a tenth of a second of work. Recursion is
bounded by the depth of the value (references recurse only while consuming
it, which :func:`~hostrt.schemas.schema_problems` guarantees); a value or
schema that recurses too deeply also ends in :class:`FallbackRequired`, as
does arithmetic the metered path cannot do either (``multipleOf`` of an
integer too large for a float).
"""

from __future__ import annotations

import json
from fractions import Fraction
from functools import lru_cache
from itertools import islice
from typing import Any, Callable
from urllib.parse import unquote

import re2
from jsonschema import Draft202012Validator

from . import schemas

__all__ = [
    "IGNORED_KEYWORDS",
    "SUPPORTED_KEYWORDS",
    "FallbackRequired",
    "FastValidator",
    "compile_fast",
]

#: Keywords that :func:`compile_fast` evaluates.
SUPPORTED_KEYWORDS = frozenset({
    "type", "enum", "const",
    "properties", "required", "additionalProperties", "patternProperties", "propertyNames",
    "minProperties", "maxProperties", "dependentRequired", "dependentSchemas",
    "items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains", "minContains", "maxContains",
    "minLength", "maxLength", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "$ref",
})
#: Keywords that do not change whether a value is valid (annotations, and
#: containers of subschemas that are only reached through ``$ref``).
IGNORED_KEYWORDS = frozenset({
    "title", "description", "default", "examples", "$comment", "format", "deprecated", "readOnly",
    "writeOnly", "$schema", "$id", "$defs", "definitions", "$anchor", "$dynamicAnchor",
    "contentMediaType", "contentEncoding", "contentSchema",
})
_KNOWN = SUPPORTED_KEYWORDS | IGNORED_KEYWORDS
# Keywords the metered path charges a step for (each one that has a function
# in the validator class, format included).
_CHARGED = frozenset(Draft202012Validator.VALIDATORS)
# Regular expression work (text bytes x program size) per step, as in schemas.
_REGEX_WORK_PER_STEP = 2000

_NoneType = type(None)
_JSON_TYPES = (str, int, float, bool, _NoneType, list, dict)
_TYPE_NAMES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (_NoneType,),
    "array": (list,),
    "object": (dict,),
}
_INF = float("inf")


class FallbackRequired(Exception):
    """:meth:`FastValidator.is_valid` could not decide within its limits
    (work budget, recursion, arithmetic, a value that is not plain JSON):
    evaluate the value with :meth:`hostrt.schemas.CompiledSchema.is_valid`,
    which decides or reports the error."""


class _Exhausted(Exception):
    """The work budget of one :meth:`FastValidator.is_valid` call ran out."""


class _Unsupported(Exception):
    """The schema uses something this module does not compile."""


Check = Callable[[Any, list], bool]
Table = dict  # type -> Check, one entry per JSON type


def _true(x: Any, st: list) -> bool:
    return True


def _false(x: Any, st: list) -> bool:
    return False


def _integral(x: float, st: list) -> bool:
    return x.is_integer()


_TRUE_TABLE: Table = dict.fromkeys(_JSON_TYPES, _true)
_FALSE_TABLE: Table = dict.fromkeys(_JSON_TYPES, _false)


def _charge(st: list, steps: int) -> None:
    remaining = st[0] - steps
    st[0] = remaining
    if remaining < 0:
        raise _Exhausted


# --- JSON equality ---------------------------------------------------------------

_TRUE_KEY = object()
_FALSE_KEY = object()
_NAN_KEY = object()


def _key(x: Any, st: list) -> Any:
    """A hashable value that is equal for two JSON values exactly when JSON
    Schema considers them equal (``1 == 1.0``, ``true != 1``, objects
    regardless of member order, every NaN equal to every other as in
    :func:`hostrt.schemas.canonical_json`). Containers are charged to the
    budget by size."""
    t = type(x)
    if t is str or t is int or x is None:
        return x
    if t is bool:
        return _TRUE_KEY if x else _FALSE_KEY
    if t is float:
        return _NAN_KEY if x != x else x  # an integral float hashes and compares as its int
    if t is list:
        _charge(st, 1 + len(x) // 10)
        return tuple([_key(item, st) for item in x])
    if t is dict:
        _charge(st, 1 + len(x) // 10)
        return frozenset([(name, _key(value, st)) for name, value in x.items()])
    raise TypeError("not a JSON value")


#: Sets of item types whose Python equality is JSON equality (no bool next
#: to a number, since true == 1; no float, since NaN != NaN).
_PLAIN_KINDS = (frozenset({str, int, _NoneType}), frozenset({str, bool, _NoneType}))


def _unique(x: list, st: list) -> bool:
    kinds = set(map(type, x))
    if kinds <= _PLAIN_KINDS[0] or kinds <= _PLAIN_KINDS[1]:
        return len(set(x)) == len(x)
    seen: set[Any] = set()
    for item in x:
        key = _key(item, st)
        if key in seen:
            return False
        seen.add(key)
    return True


# --- regular expressions ---------------------------------------------------------


def _searcher(pattern: Any) -> Callable[[str, list], bool]:
    """An unanchored RE2 search for ``pattern``, through the same compiled
    expression as :func:`hostrt.schemas.compile_pattern`, charged as there."""
    try:
        compiled = schemas.compile_pattern(pattern)
    except schemas.PatternError:
        raise _Unsupported from None
    cost = compiled.cost
    regexp = compiled.regexp
    search = regexp.search
    match = _raw_match(regexp)

    if match is not None:
        anchor, no_match, raw = match

        def search_raw(text: str, st: list) -> bool:
            try:
                data = text.encode()
            except UnicodeEncodeError:  # lone surrogates, as schemas encodes them
                data = text.encode("utf-8", "surrogatepass")
            size = len(data)
            remaining = st[0] - 1 - size * cost // _REGEX_WORK_PER_STEP
            st[0] = remaining
            if remaining < 0:
                raise _Exhausted
            return raw(anchor, data, 0, size)[0] != no_match

        return search_raw

    def search_wrapped(text: str, st: list) -> bool:
        data = text.encode("utf-8", "surrogatepass")
        _charge(st, 1 + len(data) * cost // _REGEX_WORK_PER_STEP)
        return search(data) is not None

    return search_wrapped


def _raw_match(regexp: Any) -> tuple[Any, Any, Any] | None:
    """The binding call under ``regexp.search``, if this version of
    google-re2 has it and it agrees with ``search``; else None. (``search``
    runs it through a generator and builds a match object, which more than
    doubles the cost of searching a short string.)"""
    try:
        anchor = re2._Anchor.UNANCHORED
        no_match = re2._NULL_SPAN
        raw = regexp._regexp.Match
        for probe in (b"", b"a", b"\xc3\xa9 0"):
            if (raw(anchor, probe, 0, len(probe))[0] != no_match) != (regexp.search(probe) is not None):
                return None
    except Exception:  # noqa: BLE001 - a different binding: use search
        return None
    return anchor, no_match, raw


# --- the compiler ------------------------------------------------------------------


def _count_bounds(node: dict, low_key: str, high_key: str) -> tuple[Any, Any]:
    """A ``min*``/``max*`` pair of counts (``_INF`` for no maximum)."""
    low = node.get(low_key, 0)
    high = node.get(high_key, _INF)
    if not (_is_count(low) and (high is _INF or _is_count(high))):
        raise _Unsupported
    return low, high


def _is_count(value: Any) -> bool:
    """A non-negative integer as the meta-schema accepts it (``2.0`` too)."""
    return (type(value) is int or (type(value) is float and value.is_integer())) and value >= 0


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _cost(node: dict) -> int:
    """What the metered path charges for applying ``node``'s own keywords."""
    total = 0
    for keyword, value in node.items():
        if keyword in _CHARGED:
            total += 1 + len(value) // 16 if type(value) is list or type(value) is dict else 1
    return total


def _chain(checks: list[Check]) -> Check:
    """One check that passes when every one of ``checks`` does, in order."""
    if not checks:
        return _true
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks

        def both(x: Any, st: list) -> bool:
            return first(x, st) and second(x, st)

        return both
    if len(checks) == 3:
        first, second, third = checks

        def three(x: Any, st: list) -> bool:
            return first(x, st) and second(x, st) and third(x, st)

        return three
    frozen = tuple(checks)

    def every(x: Any, st: list) -> bool:
        for check in frozen:
            if not check(x, st):
                return False
        return True

    return every


class _Compiler:
    """Compiles the subschemas reachable from ``root`` in three passes:
    find them (resolving references), refuse cycles of subschemas applied
    in place, then build for each a table of checks by JSON type, and what
    applying it to a value is charged."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.nodes: dict[int, dict] = {}  # id -> every reachable object subschema
        self.tables: dict[int, Table] = {}
        self.in_place: dict[int, list[Any]] = {}  # id -> subschemas applied to the same value
        self.refs: dict[int, Any] = {}  # id -> the target of its $ref
        self.entries: dict[int, int] = {}  # id -> steps charged per application

    # pass 1 ----------------------------------------------------------------------

    def discover(self) -> None:
        stack = [self.root]
        while stack:
            node = stack.pop()
            if type(node) is bool:
                continue
            if type(node) is not dict:
                raise _Unsupported
            if id(node) in self.nodes:
                continue
            self.nodes[id(node)] = node
            self.tables[id(node)] = {}
            children, in_place = self._children(node)
            self.in_place[id(node)] = in_place
            stack += children
            stack += in_place

    def _children(self, node: dict) -> tuple[list[Any], list[Any]]:
        """(subschemas applied to parts of the value, subschemas applied to
        the value itself) of ``node``; checks its keywords on the way."""
        for keyword in node:
            if keyword not in _KNOWN:
                raise _Unsupported
        if node.get("$id", "#") not in ("", "#"):
            raise _Unsupported
        children: list[Any] = []
        in_place: list[Any] = []
        for keyword in ("additionalProperties", "propertyNames", "items", "contains"):
            if keyword in node:
                children.append(node[keyword])
        for keyword in ("properties", "patternProperties"):
            if keyword in node:
                if type(node[keyword]) is not dict:
                    raise _Unsupported
                children += node[keyword].values()
        if "prefixItems" in node:
            if type(node["prefixItems"]) is not list:
                raise _Unsupported
            children += node["prefixItems"]
        for keyword in ("allOf", "anyOf", "oneOf"):
            if keyword in node:
                if type(node[keyword]) is not list or not node[keyword]:
                    raise _Unsupported
                in_place += node[keyword]
        if "not" in node:
            in_place.append(node["not"])
        if "if" in node:
            in_place += [node[keyword] for keyword in ("if", "then", "else") if keyword in node]
        if "dependentSchemas" in node:
            if type(node["dependentSchemas"]) is not dict:
                raise _Unsupported
            in_place += node["dependentSchemas"].values()
        if "$ref" in node:
            target = self._resolve(node["$ref"])
            self.refs[id(node)] = target
            in_place.append(target)
        return children, in_place

    def _resolve(self, ref: Any) -> Any:
        """The subschema a ``$ref`` points to, as ``referencing`` finds it:
        the fragment percent-decoded, split at ``/``, ``~1``/``~0``
        unescaped in object keys."""
        if type(ref) is not str or not ref.startswith("#"):
            raise _Unsupported
        fragment = ref[1:]
        node = self.root
        if fragment:
            if not fragment.startswith("/"):
                raise _Unsupported  # an anchor
            for segment in unquote(fragment[1:]).split("/"):
                if type(node) is list:
                    if not (segment.isascii() and segment.isdigit()) or (segment != "0" and segment[0] == "0"):
                        raise _Unsupported
                    index = int(segment)
                    if index >= len(node):
                        raise _Unsupported
                    node = node[index]
                elif type(node) is dict:
                    segment = segment.replace("~1", "/").replace("~0", "~")
                    if segment not in node:
                        raise _Unsupported
                    node = node[segment]
                else:
                    raise _Unsupported
        if type(node) is not dict and type(node) is not bool:
            raise _Unsupported
        return node

    # pass 2 ----------------------------------------------------------------------

    def check_cycles(self) -> None:
        """Refuse a cycle of subschemas applied to the same value (which
        :func:`hostrt.schemas.schema_problems` refuses too), by an iterative
        depth-first walk: a chain of references may be longer than Python's
        recursion limit."""
        done: set[int] = set()
        active: set[int] = set()
        for start in self.nodes.values():
            if id(start) in done:
                continue
            stack: list[tuple[dict, int]] = [(start, 0)]
            active.add(id(start))
            while stack:
                node, index = stack[-1]
                out = self.in_place[id(node)]
                if index < len(out):
                    stack[-1] = (node, index + 1)
                    child = out[index]
                    if type(child) is not dict or id(child) in done:
                        continue
                    if id(child) in active:
                        raise _Unsupported
                    active.add(id(child))
                    stack.append((child, 0))
                else:
                    stack.pop()
                    active.discard(id(node))
                    done.add(id(node))

    def entry(self, node: Any) -> int:
        """Steps charged for applying ``node`` to a value (its own keywords,
        and those of the references it is an alias for)."""
        return self.entries[id(node)] if type(node) is dict else 0

    def table(self, node: Any) -> Table:
        if node is True:
            return _TRUE_TABLE
        if node is False:
            return _FALSE_TABLE
        return self.tables[id(node)]

    # pass 3 ----------------------------------------------------------------------

    def build(self) -> None:
        # A subschema that is only a $ref (and annotations) shares the table
        # of what it points to: references cost nothing at run time.
        for node in self.nodes.values():
            target = node
            steps = _cost(node)
            seen: set[int] = set()
            while id(target) in self.refs and self._only_ref(target):
                if id(target) in seen:
                    raise _Unsupported
                seen.add(id(target))
                target = self.refs[id(target)]
                if type(target) is not dict:
                    break
                steps += _cost(target)
            self.entries[id(node)] = steps
            if target is not node:
                self.tables[id(node)] = self.table(target)
        for node in self.nodes.values():
            if id(node) in self.refs and self._only_ref(node):
                continue
            self.tables[id(node)].update(self._node_table(node))

    @staticmethod
    def _only_ref(node: dict) -> bool:
        return all(keyword == "$ref" or keyword in IGNORED_KEYWORDS for keyword in node)

    def _node_table(self, node: dict) -> Table:
        allowed: set[type] = set(_JSON_TYPES)
        integral_floats = False
        if "type" in node:
            names = node["type"]
            if type(names) is str:
                names = [names]
            if type(names) is not list or not names:
                raise _Unsupported
            allowed = set()
            for name in names:
                if name not in _TYPE_NAMES:
                    raise _Unsupported
                allowed.update(_TYPE_NAMES[name])
            if "integer" in names and "number" not in names:
                integral_floats = True
                allowed.add(float)
        equal = self._equality(node)
        number = self._number(node)
        specific = {
            str: self._string(node),
            int: number,
            float: number,
            list: self._array(node),
            dict: self._object(node),
        }
        shared = self._combinators(node)
        table: Table = {}
        for kind in _JSON_TYPES:
            if kind not in allowed or equal.get(kind, _true) is _false:
                table[kind] = _false
                continue
            checks: list[Check] = []
            if kind is float and integral_floats:
                checks.append(_integral)
            if kind in equal:
                checks.append(equal[kind])
            if specific.get(kind) is not None:
                checks.append(specific[kind])
            checks += shared
            table[kind] = _chain(checks)
        return table

    # enum and const -----------------------------------------------------------------

    def _equality(self, node: dict) -> dict[type, Check]:
        """Checks by type for ``enum`` and ``const`` (``_false`` where no
        value of that type can be equal)."""
        lists: list[list[Any]] = []
        if "enum" in node:
            if type(node["enum"]) is not list:
                raise _Unsupported
            lists.append(node["enum"])
        if "const" in node:
            lists.append([node["const"]])
        by_type: dict[type, list[Check]] = {}
        for values in lists:
            for kind, check in self._one_of_values(values).items():
                by_type.setdefault(kind, []).append(check)
        return {kind: _chain(checks) for kind, checks in by_type.items()}

    def _one_of_values(self, values: list[Any]) -> dict[type, Check]:
        budget = [1 << 62]
        strings = frozenset(value for value in values if type(value) is str)
        numbers = frozenset(value for value in values if type(value) is int or type(value) is float)
        booleans = frozenset(value for value in values if type(value) is bool)
        arrays = frozenset(_key(value, budget) for value in values if type(value) is list)
        objects = frozenset(_key(value, budget) for value in values if type(value) is dict)
        array_sizes = frozenset(len(value) for value in values if type(value) is list)
        object_sizes = frozenset(len(value) for value in values if type(value) is dict)
        has_null = any(value is None for value in values)
        for value in values:
            if type(value) not in _JSON_TYPES:
                raise _Unsupported

        def in_strings(x: str, st: list) -> bool:
            return x in strings

        def in_numbers(x: int | float, st: list) -> bool:
            return x in numbers  # int and float compare and hash by value; NaN equals nothing

        def in_booleans(x: bool, st: list) -> bool:
            return x in booleans

        def in_arrays(x: list, st: list) -> bool:
            return len(x) in array_sizes and _key(x, st) in arrays

        def in_objects(x: dict, st: list) -> bool:
            return len(x) in object_sizes and _key(x, st) in objects

        return {
            str: in_strings if strings else _false,
            int: in_numbers if numbers else _false,
            float: in_numbers if numbers else _false,
            bool: in_booleans if booleans else _false,
            _NoneType: _true if has_null else _false,
            list: in_arrays if arrays else _false,
            dict: in_objects if objects else _false,
        }

    # strings ------------------------------------------------------------------------

    def _string(self, node: dict) -> Check | None:
        low, high = _count_bounds(node, "minLength", "maxLength")
        if "pattern" not in node:
            if "minLength" not in node and "maxLength" not in node:
                return None
            if "minLength" not in node:
                return lambda x, st: len(x) <= high
            if "maxLength" not in node:
                return lambda x, st: len(x) >= low
            return lambda x, st: low <= len(x) <= high
        search = _searcher(node["pattern"])
        if "minLength" not in node and "maxLength" not in node:
            return search

        def string(x: str, st: list) -> bool:
            return low <= len(x) <= high and search(x, st)

        return string

    # numbers ------------------------------------------------------------------------

    def _number(self, node: dict) -> Check | None:
        bounds = [node.get(keyword) for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")]
        for value in bounds:
            if value is not None and not _is_number(value):
                raise _Unsupported
        low, high, above, below = bounds
        checks: list[Check] = []
        # Written as jsonschema does ("invalid if x < minimum"), so that NaN
        # passes every bound as it does there.
        if low is not None and high is not None:
            checks.append(lambda x, st: not (x < low or x > high))
        elif low is not None:
            checks.append(lambda x, st: not x < low)
        elif high is not None:
            checks.append(lambda x, st: not x > high)
        if above is not None:
            checks.append(lambda x, st: not x <= above)
        if below is not None:
            checks.append(lambda x, st: not x >= below)
        if "multipleOf" in node:  # last: the only one that can raise
            checks.append(self._multiple_of(node["multipleOf"]))
        return _chain(checks) if checks else None

    @staticmethod
    def _multiple_of(divisor: Any) -> Check:
        if not _is_number(divisor) or not divisor > 0:
            raise _Unsupported
        if type(divisor) is float:

            def multiple_of_float(x: int | float, st: list) -> bool:
                # jsonschema's arithmetic, exceptions included (OverflowError
                # from x / divisor for a huge int x; ValueError for NaN).
                quotient = x / divisor
                try:
                    failed = int(quotient) != quotient
                except OverflowError:
                    failed = (Fraction(x) / Fraction(divisor)).denominator != 1
                return not failed

            return multiple_of_float

        def multiple_of_int(x: int | float, st: list) -> bool:
            return not x % divisor

        return multiple_of_int

    # arrays -------------------------------------------------------------------------

    def _array(self, node: dict) -> Check | None:
        low, high = _count_bounds(node, "minItems", "maxItems")
        prefix = node.get("prefixItems", [])
        prefix_tables = tuple(self.table(each) for each in prefix)
        prefix_count = len(prefix_tables)
        # Steps for applying the first n prefixItems.
        prefix_steps = [0]
        for each in prefix:
            prefix_steps.append(prefix_steps[-1] + self.entry(each))
        items = node.get("items")
        no_more_items = items is False
        items_table = None if items is None or items is True or items is False else self.table(items)
        items_steps = self.entry(items)
        contains = node.get("contains")
        contains_table = None if contains is None else self.table(contains)
        contains_steps = self.entry(contains)
        min_contains = node.get("minContains", 1)
        max_contains = node.get("maxContains")
        if not _is_count(min_contains) or (max_contains is not None and not _is_count(max_contains)):
            raise _Unsupported
        unique = node.get("uniqueItems", False)
        if type(unique) is not bool:
            raise _Unsupported
        if "contains" not in node:
            contains_table = None
        sized = "minItems" in node or "maxItems" in node
        if not (sized or prefix_count or no_more_items or items_table is not None
                or contains_table is not None or unique):
            return None

        if (items_table is not None and not sized and not prefix_count and contains_table is None
                and not unique):
            # The common case: every item against one schema.
            def each_item(x: list, st: list) -> bool:
                remaining = st[0] - len(x) * items_steps
                st[0] = remaining
                if remaining < 0:
                    raise _Exhausted
                for item in x:
                    if not items_table[type(item)](item, st):
                        return False
                return True

            return each_item

        def array(x: list, st: list) -> bool:
            n = len(x)
            if n < low or n > high:
                return False
            if no_more_items and n > prefix_count:
                return False
            steps = prefix_steps[min(n, prefix_count)]
            if items_table is not None and n > prefix_count:
                steps += (n - prefix_count) * items_steps
            if contains_table is not None:
                steps += n * contains_steps
            if unique:
                steps += n // 10
            remaining = st[0] - steps
            st[0] = remaining
            if remaining < 0:
                raise _Exhausted
            if prefix_count:
                for item, table in zip(x, prefix_tables):
                    if not table[type(item)](item, st):
                        return False
            if items_table is not None and n > prefix_count:
                for item in (islice(x, prefix_count, None) if prefix_count else x):
                    if not items_table[type(item)](item, st):
                        return False
            if contains_table is not None:
                matches = 0
                if max_contains is None:
                    # Without maxContains, counting can stop at minContains.
                    if min_contains:
                        for item in x:
                            if contains_table[type(item)](item, st):
                                matches += 1
                                if matches >= min_contains:
                                    break
                else:
                    for item in x:
                        if contains_table[type(item)](item, st):
                            matches += 1
                            if matches > max_contains:
                                return False
                if matches < min_contains:
                    return False
            if unique and n > 1 and not _unique(x, st):
                return False
            return True

        return array

    # objects ------------------------------------------------------------------------

    def _object(self, node: dict) -> Check | None:
        low, high = _count_bounds(node, "minProperties", "maxProperties")
        required = node.get("required")
        if required is not None:
            if type(required) is not list or any(type(name) is not str for name in required):
                raise _Unsupported
            required = frozenset(required) or None
        dependent_required = []
        for name, names in node.get("dependentRequired", {}).items():
            if type(names) is not list or any(type(each) is not str for each in names):
                raise _Unsupported
            if names:
                dependent_required.append((name, frozenset(names)))
        dependent_schemas = [(name, self.table(schema), self.entry(schema))
                             for name, schema in node.get("dependentSchemas", {}).items()]
        properties = {name: (self.table(schema), self.entry(schema))
                      for name, schema in node.get("properties", {}).items()}
        patterns = [(_searcher(pattern), self.table(schema), self.entry(schema))
                    for pattern, schema in node.get("patternProperties", {}).items()]
        additional = node.get("additionalProperties", True)
        if type(additional) is not bool and type(additional) is not dict:
            raise _Unsupported
        names = node.get("propertyNames", True)
        if type(names) is not bool and type(names) is not dict:
            raise _Unsupported
        sized = "minProperties" in node or "maxProperties" in node
        members = bool(properties or patterns or additional is not True or names is not True)
        if not (sized or required or dependent_required or dependent_schemas or members):
            return None

        if not sized and not dependent_required and not dependent_schemas:
            if members:
                # required is checked in the same call as the members.
                return self._members(properties, patterns, additional, names, required)

            def required_only(x: dict, st: list) -> bool:
                return x.keys() >= required

            return required_only

        members_check = self._members(properties, patterns, additional, names, None) if members else None

        def obj(x: dict, st: list) -> bool:
            n = len(x)
            if n < low or n > high:
                return False
            if required is not None and not x.keys() >= required:
                return False
            for name, names in dependent_required:
                if name in x and not x.keys() >= names:
                    return False
            if members_check is not None and not members_check(x, st):
                return False
            for name, table, steps in dependent_schemas:
                if name in x:
                    _charge(st, steps)
                    if not table[dict](x, st):
                        return False
            return True

        return obj

    def _members(self, properties: dict[str, tuple[Table, int]], patterns: list[tuple[Any, Table, int]],
                 additional: Any, names: Any, required: frozenset[str] | None) -> Check:
        """``properties``, ``patternProperties``, ``additionalProperties`` and
        ``propertyNames``: one pass over the members of the value, after
        ``required`` (if given)."""
        get = properties.get
        closed = additional is False
        extra_table = self.table(additional) if type(additional) is dict else None
        extra_steps = self.entry(additional)
        names_table = None if names is True else self.table(names)
        names_steps = self.entry(names)
        patterns_t = tuple(patterns)

        def members(x: dict, st: list) -> bool:
            if required is not None and not x.keys() >= required:
                return False
            # Every subschema is charged before it is applied.
            for name, value in x.items():
                if names_table is not None:
                    _charge(st, names_steps)
                    if not names_table[type(name)](name, st):
                        return False
                entry = get(name)
                if entry is not None:
                    table, steps = entry
                    _charge(st, steps)
                    if not table[type(value)](value, st):
                        return False
                matched = False
                for search, table, steps in patterns_t:
                    if search(name, st):
                        matched = True
                        _charge(st, steps)
                        if not table[type(value)](value, st):
                            return False
                if entry is None and not matched:
                    if closed:
                        return False
                    if extra_table is not None:
                        _charge(st, extra_steps)
                        if not extra_table[type(value)](value, st):
                            return False
            return True

        if patterns or names is not True or extra_table is not None:
            return members

        # The common case: only properties, closed or open. Charge every
        # member at the heaviest cost first, when the budget allows it, and
        # give back the difference: one budget update per object instead of
        # one per member. (Charging first keeps the budget that nested
        # values see from being too generous.)
        heaviest = max((steps for _, steps in properties.values()), default=0)
        declared = tuple((name, table, steps) for name, (table, steps) in properties.items())
        count = len(declared)
        missing = object()

        def by_member(x: dict, st: list) -> bool:
            if required is not None and not x.keys() >= required:
                return False
            bound = len(x) * heaviest
            before = st[0]
            if bound > before:
                return members(x, st)
            st[0] = before - bound
            spent = 0
            valid = True
            for name, value in x.items():
                entry = get(name)
                if entry is None:
                    if closed:
                        valid = False
                        break
                    continue
                table, steps = entry
                spent += steps
                if not table[type(value)](value, st):
                    valid = False
                    break
            st[0] += bound - spent
            return valid

        def by_property(x: dict, st: list) -> bool:
            if len(x) <= count:
                return by_member(x, st)
            if required is not None and not x.keys() >= required:
                return False
            # More members than declared properties (and others allowed):
            # look the properties up instead.
            bound = count * heaviest
            before = st[0]
            if bound > before:
                return members(x, st)
            st[0] = before - bound
            spent = 0
            valid = True
            for name, table, steps in declared:
                value = x.get(name, missing)
                if value is missing:
                    continue
                spent += steps
                if not table[type(value)](value, st):
                    valid = False
                    break
            st[0] += bound - spent
            return valid

        return by_member if closed else by_property

    # in-place applicators --------------------------------------------------------------

    def _combinators(self, node: dict) -> list[Check]:
        """Checks of any type: allOf, anyOf, oneOf, not, if, and a $ref next
        to other keywords. Each subschema is charged as it is applied."""
        checks: list[Check] = []
        if "$ref" in node:
            target = self.table(self.refs[id(node)])
            target_steps = self.entry(self.refs[id(node)])

            def ref(x: Any, st: list) -> bool:
                _charge(st, target_steps)
                return target[type(x)](x, st)

            checks.append(ref)
        if "allOf" in node:
            all_of = tuple((self.table(each), self.entry(each)) for each in node["allOf"])

            def every(x: Any, st: list) -> bool:
                kind = type(x)
                for table, steps in all_of:
                    _charge(st, steps)
                    if not table[kind](x, st):
                        return False
                return True

            checks.append(every)
        if "anyOf" in node:
            any_of = tuple((self.table(each), self.entry(each)) for each in node["anyOf"])

            def some(x: Any, st: list) -> bool:
                kind = type(x)
                for table, steps in any_of:
                    _charge(st, steps)
                    if table[kind](x, st):
                        return True
                return False

            checks.append(some)
        if "oneOf" in node:
            one_of = tuple((self.table(each), self.entry(each)) for each in node["oneOf"])

            def exactly_one(x: Any, st: list) -> bool:
                kind = type(x)
                found = False
                for table, steps in one_of:
                    _charge(st, steps)
                    if table[kind](x, st):
                        if found:
                            return False
                        found = True
                return found

            checks.append(exactly_one)
        if "not" in node:
            negated = self.table(node["not"])
            negated_steps = self.entry(node["not"])

            def not_(x: Any, st: list) -> bool:
                _charge(st, negated_steps)
                return not negated[type(x)](x, st)

            checks.append(not_)
        if "if" in node and ("then" in node or "else" in node):
            condition = self.table(node["if"])
            condition_steps = self.entry(node["if"])
            then = self.table(node["then"]) if "then" in node else None
            then_steps = self.entry(node.get("then"))
            otherwise = self.table(node["else"]) if "else" in node else None
            otherwise_steps = self.entry(node.get("else"))

            def if_then_else(x: Any, st: list) -> bool:
                kind = type(x)
                _charge(st, condition_steps)
                if condition[kind](x, st):
                    if then is None:
                        return True
                    _charge(st, then_steps)
                    return then[kind](x, st)
                if otherwise is None:
                    return True
                _charge(st, otherwise_steps)
                return otherwise[kind](x, st)

            checks.append(if_then_else)
        return checks


# --- public API ----------------------------------------------------------------------


class FastValidator:
    """A compiled schema that says whether a value is valid, fast.

    Get one from :func:`compile_fast`. It keeps no state between calls, so
    one instance may serve several threads at once.
    """

    __slots__ = ("_table", "_steps")

    def __init__(self, table: Table, steps: int) -> None:
        self._table = table
        self._steps = steps

    def is_valid(self, instance: Any, *, max_steps: int | None = schemas.MAX_EVALUATION_STEPS) -> bool:
        """Whether ``instance`` (plain JSON data) is valid against the schema.

        Raises :class:`FallbackRequired` instead of answering when the value
        needs more than ``max_steps`` steps (``None``: no limit), recurses
        too deeply, is not plain JSON data, or makes the arithmetic of a
        keyword fail; :meth:`hostrt.schemas.CompiledSchema.is_valid` then
        decides or reports the error.
        """
        st = [(max_steps if max_steps is not None else 1 << 62) - self._steps]
        try:
            if st[0] < 0:
                raise _Exhausted
            return self._table[type(instance)](instance, st)
        except _Exhausted:
            raise FallbackRequired(f"the value needs more than {max_steps} evaluation steps") from None
        except RecursionError:
            raise FallbackRequired("the schema nests too deeply for this value") from None
        except KeyError:
            raise FallbackRequired("the value is not plain JSON data") from None
        except Exception as exc:  # noqa: BLE001 - e.g. OverflowError in multipleOf: the metered path reports it
            raise FallbackRequired(f"the value cannot be evaluated here ({type(exc).__name__})") from None


@lru_cache(maxsize=64)
def _compile_text(text: str) -> FastValidator | None:
    root = json.loads(text)  # a private copy: the checks keep parts of it
    compiler = _Compiler(root)
    try:
        compiler.discover()
        compiler.check_cycles()
        compiler.build()
    except _Unsupported:
        return None
    except Exception:  # noqa: BLE001 - a schema schema_problems would refuse; the metered path reports it
        return None
    return FastValidator(compiler.table(root), compiler.entry(root))


def compile_fast(schema: Any) -> FastValidator | None:
    """Compile ``schema`` for :meth:`FastValidator.is_valid`, or return
    ``None`` when it uses a keyword this module does not support (see the
    module docstring); the caller then uses
    :meth:`hostrt.schemas.CompiledSchema.is_valid`.

    ``schema`` must already have passed
    :func:`hostrt.schemas.schema_problems` (the loader checks every schema
    in a manifest): what that check guarantees is not checked again here.
    Results are cached by the schema's JSON text with sorted keys (``1``
    and ``1.0`` stay apart: ``multipleOf`` treats them differently), but a
    lookup still serialises the schema, so keep the validator.
    """
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    return _compile_text(text)
