"""JSON values at the host boundary.

Everything a plugin hands the host (storage values, settings, log fields,
later event payloads) passes through :func:`encode`, which accepts only
plain JSON data of the exact built-in types. That closes a whole class of
attacks at once: no subclass with overridden ``__eq__``/``__hash__``/``__str__``,
no object with a getter, no shared mutable value can reach host code, because
the host only ever keeps the compact JSON text and hands back fresh copies.

The check itself is written for hostile input:

- It is iterative, so no nesting makes it raise ``RecursionError``.
- It counts every node it visits, shared references included, and stops
  after ``max_nodes``: a value built from shared parts (``a = [a, a]``
  forty times over is 41 lists in memory but 2**41 nodes as JSON) is refused
  after a bounded amount of work instead of costing exponential time.
- It computes the exact size of the compact JSON text as it goes, so a
  caller passing ``max_bytes`` refuses an oversized value before
  :func:`json.dumps` allocates it (``[big_string] * 1000`` is small in the
  plugin's memory but not as text).
- It never calls a method of an object it was given: types are compared by
  identity (``type(x) is str``), containers are read through the built-in
  ``dict``/``list`` code, and messages name only built-in types (never the
  ``repr()`` of an unknown object, whose ``__repr__`` would be plugin code).
- Error paths are built only when an error is raised, and long keys are cut,
  so a value with long keys cannot make the host allocate a path per node.
"""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Iterator
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_NODES",
    "JSONValueError",
    "check",
    "copy",
    "decode",
    "encode",
    "encoded_size",
    "format_path",
    "size_bytes",
]

#: Nesting deeper than this is refused (deep recursion in the host's own
#: encoder would otherwise be a denial-of-service lever).
MAX_DEPTH = 64
#: Values with more nodes than this (every array item, object member and
#: scalar counts, once per reference) are refused by default.
MAX_NODES = 1_000_000
#: Integers with more decimal digits than this are refused: Python refuses to
#: print them by default (``sys.get_int_max_str_digits``), and printing one is
#: quadratic in its length.
MAX_INT_DIGITS = 4300
# An integer of more bits than this is at least 2**14285 > 10**4300, so it
# is refused without being converted to text at all.
_MAX_INT_BITS = 14285
#: Keys longer than this are cut in error paths.
_MAX_PATH_KEY = 64
_IDENTIFIER_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_END = object()

Loc = tuple[int | str, ...]


class JSONValueError(ValueError):
    """A value is not plain JSON; the message names the path of the offender.

    ``loc`` is that path as a tuple of keys and indices relative to the value
    checked, and ``reason`` the message without the path.
    """

    def __init__(self, message: str, *, loc: Loc = (), reason: str = "") -> None:
        super().__init__(message)
        self.loc = loc
        self.reason = reason or message


class JSONTooLargeError(JSONValueError):
    """The value is plain JSON but its text would exceed ``max_bytes``."""


def format_path(prefix: str, loc: Loc) -> str:
    """``("a", 0, "b c")`` under ``"$"`` → ``$.a[0]["b c"]``.

    Keys that are not identifiers are quoted with JSON escapes (so a key
    cannot put a line break or a control character into a message), and keys
    longer than 64 characters are cut.
    """
    parts = [prefix]
    for part in loc:
        if type(part) is int:
            parts.append(f"[{part}]")
        elif len(part) <= _MAX_PATH_KEY and _IDENTIFIER_RE.fullmatch(part):
            parts.append(f".{part}")
        elif len(part) <= _MAX_PATH_KEY:
            parts.append(f"[{json.dumps(part)}]")
        else:
            parts.append(f"[{json.dumps(part[:_MAX_PATH_KEY])[:-1]}...\"]")
    return "".join(parts)


# Built-in types that may be named in messages. Types are compared by
# identity: hashing or comparing a class could run its metaclass's code.
_JSON_BASES: tuple[tuple[type, str], ...] = (
    (str, "str"),
    (int, "int"),
    (float, "float"),
    (dict, "dict"),
    (list, "list"),
    (tuple, "tuple"),
)
_OTHER_BUILTINS: tuple[type, ...] = (
    bytes,
    bytearray,
    memoryview,
    set,
    frozenset,
    complex,
    range,
    slice,
    type,
    object,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.ModuleType,
    types.GeneratorType,
)


_EXACT_NAMED: tuple[type, ...] = (str, int, float, bool, type(None), dict, list, tuple, *_OTHER_BUILTINS)


def _describe_type(kind: type) -> str:
    """A name for ``kind`` that runs no code of it: built-in types by name,
    subclasses of built-in types as such, anything else anonymously."""
    for builtin in _EXACT_NAMED:
        if kind is builtin:
            return builtin.__name__
    # issubclass against a built-in class uses the C-level MRO only.
    for base, name in _JSON_BASES:
        if issubclass(kind, base):
            return f"a subclass of {name}"
    for builtin in _OTHER_BUILTINS:
        if builtin is not object and issubclass(kind, builtin):
            return f"a subclass of {builtin.__name__}"
    return "an object of a non-JSON type"


def _string_size(text: str) -> int:
    """UTF-8 bytes of ``text`` as ``json.dumps(..., ensure_ascii=False)``
    writes it, quotes included. Raises ``UnicodeEncodeError`` for lone
    surrogates, which no UTF-8 text can carry."""
    return len(encode_basestring(text).encode("utf-8"))


def _surrogate_reason(text: str, what: str) -> str:
    index = next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)
    return f"{what} contains a lone surrogate (U+{ord(text[index]):04X} at index {index}), which is not Unicode text"


def _int_size(value: int) -> int | None:
    """Characters of ``value`` in JSON, or ``None`` if it has too many digits."""
    if value.bit_length() > _MAX_INT_BITS:
        return None
    try:
        text = int.__repr__(value)
    except ValueError:  # the interpreter's own digit limit is lower
        return None
    if len(text) - (value < 0) > MAX_INT_DIGITS:
        return None
    return len(text)


def _check(
    value: Any, path: str, max_depth: int, max_nodes: int | None, max_bytes: int | None
) -> int:
    """Walk ``value`` and return the UTF-8 size of its compact JSON text.

    Raises :class:`JSONValueError` at the first problem. Positional
    arguments only, and one call per check (tests count the calls).
    """
    # One frame per open container: [items iterator, current key, id, is dict].
    frames: list[list[Any]] = []
    active: set[int] = set()  # ids of the containers being walked (cycles)
    sizes: dict[int, int] = {}  # sizes of large strings and ints seen, by id
    nodes = 0
    size = 0

    def fail(reason: str, *key: str) -> JSONValueError:
        loc = tuple(frame[1] for frame in frames if frame[1] is not None) + key
        return JSONValueError(f"{format_path(path, loc)}: {reason}", loc=loc, reason=reason)

    item = value
    while True:
        nodes += 1
        if max_nodes is not None and nodes > max_nodes:
            raise fail(f"value has more than {max_nodes} nodes (shared references count once per use)")
        kind = type(item)
        if item is None:
            size += 4
        elif kind is bool:
            size += 4 if item else 5
        elif kind is str:
            cached = sizes.get(id(item)) if len(item) > 32 else None
            if cached is None:
                try:
                    cached = _string_size(item)
                except UnicodeEncodeError:
                    raise fail(_surrogate_reason(item, "string")) from None
                if len(item) > 32:
                    sizes[id(item)] = cached
            size += cached
        elif kind is int:
            cached = sizes.get(id(item)) if item.bit_length() > 64 else None
            if cached is None:
                cached = _int_size(item)
                if cached is None:
                    raise fail(f"integer has more than {MAX_INT_DIGITS} digits")
                if item.bit_length() > 64:
                    sizes[id(item)] = cached
            size += cached
        elif kind is float:
            if not math.isfinite(item):
                raise fail(f"{float.__repr__(item)} is not a JSON number")
            size += len(float.__repr__(item))
        elif kind is list or kind is tuple or kind is dict:
            if len(frames) >= max_depth:
                raise fail(f"nested deeper than {max_depth} levels")
            ident = id(item)
            if ident in active:
                raise fail("value contains itself")
            active.add(ident)
            count = len(item)
            size += 2 + (count - 1 if count else 0)
            items: Iterator[Any] = iter(dict.items(item)) if kind is dict else enumerate(item)
            frames.append([items, None, ident, kind is dict])
        else:
            raise fail(f"{_describe_type(kind)} is not a JSON value")
        if max_bytes is not None and size > max_bytes:
            raise JSONTooLargeError(
                f"{path}: value is larger than {max_bytes} bytes as JSON",
                reason=f"value is larger than {max_bytes} bytes as JSON",
            )
        # Move to the next value: the next item of the innermost open container.
        while frames:
            frame = frames[-1]
            entry = next(frame[0], _END)
            if entry is _END:
                active.discard(frame[2])
                frames.pop()
                continue
            key, item = entry
            frame[1] = None  # until the key is known to be a string
            if frame[3]:
                if type(key) is not str:
                    raise fail(f"object keys must be strings, not {_describe_type(type(key))}")
                try:
                    size += _string_size(key) + 1  # the key and its ':'
                except UnicodeEncodeError:
                    raise fail(_surrogate_reason(key, "object key"), key) from None
            frame[1] = key
            break
        else:
            return size


def check(
    value: Any,
    *,
    path: str = "$",
    max_depth: int = MAX_DEPTH,
    max_bytes: int | None = None,
    max_nodes: int | None = MAX_NODES,
) -> None:
    """Raise :class:`JSONValueError` unless ``value`` is plain JSON data.

    Plain JSON data is ``None``, ``bool``, ``str`` (without lone surrogates),
    ``int`` (at most :data:`MAX_INT_DIGITS` digits), finite ``float``, and
    ``list``/``tuple``/``dict`` (with ``str`` keys) of plain JSON data, all of
    exactly these types, nested at most ``max_depth`` levels, without
    cycles, with at most ``max_nodes`` nodes (each use of a shared value
    counts) and, if ``max_bytes`` is given, at most that many UTF-8 bytes of
    compact JSON text.
    """
    _check(value, path, max_depth, max_nodes, max_bytes)


def encoded_size(
    value: Any,
    *,
    path: str = "$",
    max_depth: int = MAX_DEPTH,
    max_bytes: int | None = None,
    max_nodes: int | None = MAX_NODES,
) -> int:
    """Check ``value`` like :func:`check` and return the UTF-8 size of its
    compact JSON text, without building that text."""
    return _check(value, path, max_depth, max_nodes, max_bytes)


def encode(
    value: Any,
    *,
    path: str = "$",
    max_depth: int = MAX_DEPTH,
    max_bytes: int | None = None,
    max_nodes: int | None = MAX_NODES,
) -> str:
    """Validate ``value`` and return its compact JSON text (UTF-8 safe).

    With ``max_bytes``, a value whose text would be larger is refused before
    the text is built.
    """
    _check(value, path, max_depth, max_nodes, max_bytes)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode(text: str) -> Any:
    """Parse JSON text produced by :func:`encode` into fresh objects."""
    return json.loads(text)


def copy(
    value: Any,
    *,
    path: str = "$",
    max_depth: int = MAX_DEPTH,
    max_bytes: int | None = None,
    max_nodes: int | None = MAX_NODES,
) -> Any:
    """A validated deep copy that shares nothing with ``value``."""
    return decode(encode(value, path=path, max_depth=max_depth, max_bytes=max_bytes, max_nodes=max_nodes))


def size_bytes(text: str) -> int:
    """Size of JSON text as the limits count it: UTF-8 bytes."""
    return len(text.encode("utf-8"))
