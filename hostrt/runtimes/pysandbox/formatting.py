"""String formatting without attribute access and without huge results.

Python's formatting mini-languages reach past the attribute guard and can
allocate without limit:

* ``'{0.__class__.__init__.__globals__}'.format(x)``: ``str.format`` and
  ``str.format_map`` resolve ``.attr`` in fields with C-level ``getattr``
  (CVE-2023-41039; ``string.Formatter.get_field`` is the same hole,
  GHSA-hp3v-5vw7-fx9w). Here fields may index (``{0[key]}``, like plugin
  code's own subscripts) but never name an attribute.
* ``'{:>1000000000}'.format(1)``, ``f'{x:{w}}'``, ``format(x, '9999999999')``
  and ``'%*d' % (10**9, 1)``: a width is an allocation size. Widths and
  precisions are capped at :data:`~.limits.MAX_FORMAT_WIDTH`.
* ``('{0}' * 10**6).format(s)`` and ``'%s' * 1000 % ((s,) * 1000)``: the
  result size is predicted (or counted as it is built) and capped at
  :data:`~.limits.MAX_BYTES`.

The common case (a short format string with a handful of plain fields and
small str/int/float arguments) still runs in C after a cached analysis.
"""

from __future__ import annotations

import datetime as _dt
import re
from itertools import compress
from typing import Any

from _string import formatter_field_name_split, formatter_parser

from .budget import Budget
from .limits import (
    CHARGE_THRESHOLD,
    MAX_BYTES,
    MAX_FORMAT_SPEC,
    MAX_FORMAT_WIDTH,
    STRFTIME_EXPANSION,
    bytes_message,
)
from .refusals import SandboxLimitError, SandboxPolicyError
from .walks import Walks

_DIGITS = re.compile(r"\d+")
_NoneType = type(None)
_SMALL_PRIMITIVES = frozenset({int, float, bool, _NoneType})
#: Arguments up to this size keep the C fast path.
_FAST_ARG_CHARS = 4096
_FAST_FIELDS = 32
_CACHE_LIMIT = 1024
_CONVERSIONS = {"s": str, "r": repr, "a": ascii}
#: Outcome of the static analysis of a format string: the field references
#: in order ('' = automatic numbering, int = positional, str = keyword), or
#: None when only the checked slow path may run it.
_FORMAT_CACHE: dict[str, tuple[Any, ...] | None] = {}
_PERCENT_CACHE: dict[str, bool] = {}


def check_width_digits(spec: str) -> None:
    """Refuse a format specification with an over-long width or precision."""
    if len(spec) > MAX_FORMAT_SPEC:
        raise SandboxLimitError(
            f"format specification of {len(spec)} characters exceeds the plugin limit of {MAX_FORMAT_SPEC}"
        )
    for match in _DIGITS.finditer(spec):
        digits = match.group()
        if len(digits) > 7 or int(digits) > MAX_FORMAT_WIDTH:
            raise SandboxLimitError(
                f"format width or precision {int(digits)} exceeds the plugin limit of {MAX_FORMAT_WIDTH}"
            )


def spec_is_safe(spec: str) -> bool:
    """Static version of :func:`check_width_digits` for the compiler."""
    try:
        check_width_digits(spec)
    except SandboxLimitError:
        return False
    return True


def _scan_percent(fmt: str) -> list[tuple[Any, ...]]:
    """Split a ``%`` format string into literal and conversion tokens,
    following CPython's parser (including nested parentheses in keys)."""
    tokens: list[tuple[Any, ...]] = []
    i, n = 0, len(fmt)
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            tokens.append(("lit", fmt[i:]))
            break
        if j > i:
            tokens.append(("lit", fmt[i:j]))
        i = j + 1
        if i >= n:
            raise ValueError("incomplete format")
        key = None
        if fmt[i] == "(":
            depth, k = 1, i + 1
            while depth:
                if k >= n:
                    raise ValueError("incomplete format key")
                depth += (fmt[k] == "(") - (fmt[k] == ")")
                k += 1
            key = fmt[i + 1 : k - 1]
            i = k
        start = i
        while i < n and fmt[i] in "-+ #0":
            i += 1
        flags = fmt[start:i]
        width: Any = None
        if i < n and fmt[i] == "*":
            width, i = "*", i + 1
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > start:
                width = int(fmt[start:i]) if i - start <= 7 else MAX_FORMAT_WIDTH + 1
        prec: Any = None
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                prec, i = "*", i + 1
            else:
                start = i
                while i < n and fmt[i].isdigit():
                    i += 1
                prec = int(fmt[start:i]) if 0 < i - start <= 7 else (0 if i == start else MAX_FORMAT_WIDTH + 1)
        if i < n and fmt[i] in "hlL":
            i += 1
        if i >= n:
            raise ValueError("incomplete format")
        tokens.append(("conv", key, flags, width, prec, fmt[i]))
        i += 1
    return tokens


def _number_size(value: Any) -> int:
    if isinstance(value, int):
        return int.bit_length(value) // 3 + 3
    return 400  # a float: at most 309 integer digits plus sign, point, exponent


class Formatting:
    """The formatting guards of one plugin."""

    def __init__(self, budget: Budget, walks: Walks) -> None:
        self._budget = budget
        self._stream = budget.stream
        self._leaves = walks.text_leaf_types
        self._check_text = walks.check_text

    def _text(self, value: Any) -> Any:
        """``value``, refused first if its text would be too large (a
        structure with shared parts prints each part once per place)."""
        if type(value) not in self._leaves:
            self._check_text(value, "formatted value")
        return value

    # -- format() and f-strings --------------------------------------------

    def check_spec(self, value: Any, spec: Any) -> None:
        """Refuse a spec whose width/precision or strftime output is too big."""
        if type(spec) is not str:
            return  # format() itself raises TypeError
        check_width_digits(spec)
        if isinstance(value, (_dt.date, _dt.time)) and len(spec) * STRFTIME_EXPANSION > MAX_BYTES:
            raise SandboxLimitError(bytes_message(len(spec) * STRFTIME_EXPANSION, what="formatted date"))

    def format_value(self, value: Any, spec: Any = "", conversion: int = -1) -> Any:
        """``format(value, spec)`` after the checks; also the target of
        f-string fields whose spec is not a safe constant (``f'{x:{w}}'``)."""
        self._text(value)
        if conversion == 115:
            value = str(value)
        elif conversion == 114:
            value = repr(value)
        elif conversion == 97:
            value = ascii(value)
        self.check_spec(value, spec)
        out = format(value, spec)
        if len(out) >= CHARGE_THRESHOLD:
            self._budget.charge(len(out))
        return out

    # -- str.format / str.format_map ----------------------------------------

    def str_format(self, fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """``fmt.format(*args, **kwargs)`` without attribute fields."""
        if type(fmt) is str and len(fmt) <= 1000:
            fields = _FORMAT_CACHE.get(fmt, 0)
            if fields == 0:
                fields = _analyse(fmt)
                if len(_FORMAT_CACHE) >= _CACHE_LIMIT:
                    _FORMAT_CACHE.clear()
                _FORMAT_CACHE[fmt] = fields
            if fields is not None and _fast_args_ok(fields, args, kwargs):
                return str.format(fmt, *args, **kwargs)
        return self._render(str(fmt), args, kwargs, None, 2, [None, 0])

    def str_format_map(self, fmt: str, mapping: Any) -> str:
        """``fmt.format_map(mapping)`` without attribute fields."""
        return self._render(str(fmt), (), {}, mapping, 2, [None, 0])

    def _render(
        self,
        fmt: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        mapping: Any,
        depth: int,
        auto: list[Any],
    ) -> str:
        if depth < 0:
            raise ValueError("Max string recursion exceeded")
        parts: list[str] = []
        total = 0
        # Iterate through the tick stream: a format string may hold millions
        # of fields, and this loop is host code the budget must still stop.
        for literal, field, spec, conv in compress(formatter_parser(fmt), self._stream):
            if literal:
                parts.append(literal)
                total += len(literal)
            if field is None:
                continue
            first, rest = formatter_field_name_split(field)
            if first == "":
                if auto[0] is False:
                    raise ValueError(
                        "cannot switch from manual field specification to automatic field numbering"
                    )
                auto[0] = True
                first = auto[1]
                auto[1] += 1
            elif isinstance(first, int):
                if auto[0] is True:
                    raise ValueError(
                        "cannot switch from automatic field numbering to manual field specification"
                    )
                auto[0] = False
            if mapping is not None:
                if isinstance(first, int):
                    raise ValueError("Format string contains positional fields")
                obj = mapping[first]
            elif isinstance(first, int):
                if first >= len(args):
                    raise IndexError(f"Replacement index {first} out of range for positional args tuple")
                obj = args[first]
            else:
                obj = kwargs[first]
            for is_attr, key in rest:
                if is_attr:
                    raise SandboxPolicyError(
                        f"attribute access in format fields is not allowed in plugins ('{{{field}}}')"
                    )
                obj = obj[key]
            if conv:
                if conv not in _CONVERSIONS:
                    raise ValueError(f"Unknown conversion specifier {conv}")
                obj = _CONVERSIONS[conv](self._text(obj))
            if spec and "{" in spec:
                spec = self._render(spec, args, kwargs, mapping, depth - 1, auto)
            piece = self.format_value(obj, spec or "")
            total += len(piece)
            if total > MAX_BYTES:
                raise SandboxLimitError(bytes_message(total, what="formatted string"))
            parts.append(piece)
        if total >= CHARGE_THRESHOLD:
            self._budget.charge(total)
        return "".join(parts)

    # -- % formatting --------------------------------------------------------

    def percent(self, fmt: Any, values: Any) -> Any:
        """``fmt % values`` for a str/bytes/bytearray ``fmt``.

        Widths, precisions and ``*`` arguments are resolved and checked;
        ``%s``/``%r``/``%a`` arguments are converted here so their size is
        known; the rewritten format then runs natively.
        """
        is_text = isinstance(fmt, str)
        if is_text and type(fmt) is str and len(fmt) <= 1000:
            ok = _PERCENT_CACHE.get(fmt)
            if ok is None:
                try:
                    tokens = _scan_percent(fmt)
                    ok = len(tokens) <= 2 * _FAST_FIELDS and all(
                        t[0] == "lit"
                        or (t[3] != "*" and t[4] != "*" and (t[3] or 0) <= MAX_FORMAT_WIDTH and (t[4] or 0) <= MAX_FORMAT_WIDTH)
                        for t in tokens
                    )
                except ValueError:
                    ok = False
                if len(_PERCENT_CACHE) >= _CACHE_LIMIT:
                    _PERCENT_CACHE.clear()
                _PERCENT_CACHE[fmt] = ok
            if ok and _fast_percent_values(values):
                return fmt % values
        text = fmt if is_text else bytes(fmt).decode("latin-1")
        tokens = _scan_percent(text)
        if isinstance(values, tuple):
            positional: tuple[Any, ...] = values
            mapping = None
        else:
            positional = (values,)
            mapping = values if hasattr(values, "__getitem__") and not isinstance(values, (str, bytes, bytearray)) else None
        uses_keys = any(t[0] == "conv" and t[1] is not None for t in tokens)
        if uses_keys and mapping is None:
            raise TypeError("format requires a mapping")
        parts: list[str] = []
        new_args: list[Any] = []
        total = 0
        index = 0

        def next_arg() -> Any:
            nonlocal index
            if index >= len(positional):
                raise TypeError("not enough arguments for format string")
            value = positional[index]
            index += 1
            return value

        for token in tokens:
            if token[0] == "lit":
                parts.append(token[1].replace("%", "%%"))
                total += len(token[1])
                continue
            _, key, flags, width, prec, conv = token
            if conv == "%":
                parts.append("%%")
                total += 1
                continue
            if width == "*":
                width = next_arg()
                if not isinstance(width, int):
                    raise TypeError("* wants int")
                width = abs(int(width))
            if prec == "*":
                prec = next_arg()
                if not isinstance(prec, int):
                    raise TypeError("* wants int")
                prec = max(0, int(prec))
            for number in (width, prec):
                if number is not None and number > MAX_FORMAT_WIDTH:
                    raise SandboxLimitError(
                        f"format width or precision {number} exceeds the plugin limit of {MAX_FORMAT_WIDTH}"
                    )
            if key is not None:
                value = mapping[key if is_text else key.encode("latin-1")]
            else:
                value = next_arg() if not uses_keys else mapping
            if conv in "sra":
                self._text(value)
                if is_text:
                    value = _CONVERSIONS[conv](value)
                elif conv in "ra":
                    value = ascii(value).encode("ascii")
                size = len(value) if isinstance(value, (str, bytes, bytearray)) else 64
                if prec is not None:
                    size = min(size, prec)
                conv = "s"
            elif conv == "c":
                size = 4
            else:
                size = _number_size(value) + (prec or 0)
            total += max(size, width or 0)
            if total > MAX_BYTES:
                raise SandboxLimitError(bytes_message(total, what="formatted string"))
            spec = "%" + flags + (str(width) if width is not None else "")
            spec += ("." + str(prec)) if prec is not None else ""
            parts.append(spec + conv)
            new_args.append(value)
        if mapping is None and index < len(positional):
            raise TypeError(
                "not all arguments converted during " + ("string" if is_text else "bytes") + " formatting"
            )
        if total >= CHARGE_THRESHOLD:
            self._budget.charge(total)
        rebuilt = "".join(parts)
        if is_text:
            return rebuilt % tuple(new_args)
        result = rebuilt.encode("latin-1") % tuple(new_args)
        return bytearray(result) if isinstance(fmt, bytearray) else result


def _analyse(fmt: str) -> tuple[Any, ...] | None:
    """Field references of a format string eligible for the C fast path."""
    fields: list[Any] = []
    try:
        for _literal, field, spec, conv in formatter_parser(fmt):
            if field is None:
                continue
            if spec and ("{" in spec or not spec_is_safe(spec)):
                return None
            first, rest = formatter_field_name_split(field)
            if any(True for _ in rest):
                return None
            fields.append(first)
            if len(fields) > _FAST_FIELDS:
                return None
    except ValueError:
        return None  # let the slow path raise the proper error
    return tuple(fields)


def _fast_args_ok(fields: tuple[Any, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    auto = 0
    for ref in fields:
        if ref == "":
            if auto >= len(args):
                return False
            value = args[auto]
            auto += 1
        elif type(ref) is int:
            if ref >= len(args):
                return False
            value = args[ref]
        elif ref in kwargs:
            value = kwargs[ref]
        else:
            return False
        if not _small(value):
            return False
    return True


def _small(value: Any) -> bool:
    """A value the fast formatting path may render without size checks."""
    t = type(value)
    if t is str:
        return len(value) <= _FAST_ARG_CHARS
    return t in _SMALL_PRIMITIVES and not (t is int and int.bit_length(value) > 4096)


def _fast_percent_values(values: Any) -> bool:
    items = values if type(values) is tuple else (values,)
    if len(items) > _FAST_FIELDS:
        return False
    return all(_small(value) for value in items)
