"""JSON values at the host boundary.

Everything a plugin hands the host (storage values, settings, log fields,
later event payloads) passes through :func:`encode`, which accepts only
plain JSON data of the exact built-in types. That closes a whole class of
attacks at once: no subclass with overridden ``__eq__``/``__hash__``/``__str__``,
no object with a getter, no shared mutable value can reach host code, because
the host only ever keeps the compact JSON text and hands back fresh copies.
"""

from __future__ import annotations

import json
import math
from typing import Any

#: Nesting deeper than this is refused (deep recursion in the host's own
#: encoder would otherwise be a denial-of-service lever).
MAX_DEPTH = 64


class JSONValueError(ValueError):
    """A value is not plain JSON; the message names the path of the offender."""


def _check(value: Any, path: str, depth: int, max_depth: int, seen: set[int]) -> None:
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is int:
        return
    if kind is float:
        if not math.isfinite(value):
            raise JSONValueError(f"{path}: {value!r} is not a JSON number")
        return
    if depth >= max_depth:
        raise JSONValueError(f"{path}: nested deeper than {max_depth} levels")
    if kind is list or kind is tuple:
        if id(value) in seen:
            raise JSONValueError(f"{path}: value contains itself")
        seen.add(id(value))
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1, max_depth, seen)
        seen.discard(id(value))
        return
    if kind is dict:
        if id(value) in seen:
            raise JSONValueError(f"{path}: value contains itself")
        seen.add(id(value))
        for key, item in value.items():
            if type(key) is not str:
                raise JSONValueError(f"{path}: object keys must be strings, not {type(key).__name__}")
            _check(item, f"{path}.{key}", depth + 1, max_depth, seen)
        seen.discard(id(value))
        return
    raise JSONValueError(f"{path}: {kind.__name__} is not a JSON value")


def check(value: Any, *, path: str = "$", max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`JSONValueError` unless ``value`` is plain JSON data."""
    _check(value, path, 0, max_depth, set())


def encode(value: Any, *, path: str = "$", max_depth: int = MAX_DEPTH) -> str:
    """Validate ``value`` and return its compact JSON text (UTF-8 safe)."""
    check(value, path=path, max_depth=max_depth)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode(text: str) -> Any:
    """Parse JSON text produced by :func:`encode` into fresh objects."""
    return json.loads(text)


def copy(value: Any, *, path: str = "$") -> Any:
    """A validated deep copy that shares nothing with ``value``."""
    return decode(encode(value, path=path))


def size_bytes(text: str) -> int:
    """Size of JSON text as the limits count it: UTF-8 bytes."""
    return len(text.encode("utf-8"))
