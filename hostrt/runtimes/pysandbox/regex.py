"""Bounds on regular expressions, decided before the standard engine runs.

Python's ``re`` engine backtracks, in one C call that holds the GIL and
never returns to a budget check: ``re.match(r'(a+)+$', 'a' * 40 + 'b')``
runs for days, and even ``re.search(r'\\s+$', ' ' * 10**6 + 'x')`` takes
about an hour (every start position re-scans the run of spaces). Nothing
in the process can interrupt either: the host's event loop, its other
plugins and the runtime's own timeout wait for the call to finish.

So every regular expression a plugin runs is judged here first, from its
parsed form (``re._parser``, cached per pattern) and the subject's length:

* **Exponential backtracking is refused outright**, whatever the subject:
  a repeat whose body can match the same text in more than one way (a
  variable repeat inside a repeat, unless every iteration ends at a
  character the inner repeat cannot consume as in ``(\\d+\\.)+``; an
  alternation inside a repeat whose branches do not start with distinct
  literal characters; a back-reference inside a repeat).
* **Polynomial backtracking is bounded by the subject's length**: the
  worst case is estimated as (start positions tried) x (choices of every
  variable repeat or alternation that is not the pattern's last element,
  each at most ``len(subject) + 1``), and an operation estimated above
  :data:`MAX_REGEX_STEPS` is refused before it runs. A pattern anchored at
  the start (``^`` without MULTILINE, ``\\A``) and ``match``/``fullmatch``
  try one start position; a repeat ending the pattern never backtracks.

The estimate is conservative (it may refuse a search that would have been
fast on the actual text, never the reverse for the shapes above), and the
refusal says how to get under it: a shorter subject, or a pattern with
fewer open-ended repeats before its end.
"""

from __future__ import annotations

import functools
import re
from re import _constants as _sre  # type: ignore[attr-defined]
from re import _parser as _sre_parse  # type: ignore[attr-defined]
from typing import Any

from .refusals import SandboxLimitError

#: Most backtracking steps an estimate may reach (see the module
#: docstring). The engine does about 3 x 10^8 simple steps a second, so the
#: worst case this admits holds the interpreter for well under 0.2 s.
MAX_REGEX_STEPS = 50_000_000

_REPEATS = (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT)
_UNBOUNDED = _sre.MAXREPEAT
_ANCHORS = (_sre.AT_BEGINNING_STRING,)


class _Shape:
    """What the estimate needs to know about one pattern."""

    __slots__ = ("refusal", "choices", "anchored")

    def __init__(self) -> None:
        #: Why the pattern backtracks exponentially (None if it does not).
        self.refusal: str | None = None
        #: One entry per backtracking point: its number of choices, or None
        #: for "as many as the subject is long".
        self.choices: list[int | None] = []
        #: True if a search can only start at the beginning of the subject.
        self.anchored = False


# -- character classes ---------------------------------------------------------------


def _category_has(category: Any, ch: str, flags: int) -> bool | None:
    """Whether ``ch`` is in an ``\\d``/``\\w``/``\\s`` class (None: unknown)."""
    ascii_only = bool(flags & re.ASCII) or False
    name = str(category)
    negated = "_NOT_" in name
    if "DIGIT" in name:
        hit = ch.isdecimal() and (ch.isascii() or not ascii_only)
    elif "WORD" in name:
        hit = (ch.isalnum() or ch == "_") and (ch.isascii() or not ascii_only)
    elif "SPACE" in name:
        hit = ch.isspace() and (ch.isascii() or not ascii_only)
    else:
        return None
    return hit != negated


def _item_has(op: Any, av: Any, ch: str, flags: int) -> bool | None:
    """Whether the one-character item ``(op, av)`` can match ``ch``
    (None: unknown, which callers treat as "it can")."""
    fold = bool(flags & re.IGNORECASE)

    def same(code: int) -> bool:
        other = chr(code)
        return other == ch or (fold and other.lower() == ch.lower())

    if op is _sre.LITERAL:
        return same(av)
    if op is _sre.NOT_LITERAL:
        return not same(av)
    if op is _sre.ANY:
        return ch != "\n" or bool(flags & re.DOTALL)
    if op is _sre.IN:
        negate = False
        hit = False
        for sub_op, sub_av in av:
            if sub_op is _sre.NEGATE:
                negate = True
            elif sub_op is _sre.RANGE:
                lo, hi = sub_av
                hit = hit or lo <= ord(ch) <= hi or (fold and (
                    lo <= ord(ch.lower()) <= hi or lo <= ord(ch.upper()) <= hi))
            elif sub_op is _sre.CATEGORY:
                found = _category_has(sub_av, ch, flags)
                if found is None:
                    return None
                hit = hit or found
            elif sub_op is _sre.LITERAL:
                hit = hit or same(sub_av)
            else:
                return None
        return hit != negate
    return None


def _single_char(body: Any) -> tuple[Any, Any] | None:
    """The one-character item a repeat repeats (``a+``, ``[\\w-]+``), or None."""
    items = list(body)
    if len(items) == 1 and items[0][0] in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN):
        return items[0]
    return None


# -- the walk ------------------------------------------------------------------------------


def _delimited(body: Any, inner: tuple[Any, Any], flags: int) -> bool:
    """True if ``body`` (the body of an outer repeat) has a mandatory
    literal character at its top level that the one-character repeat
    ``inner`` cannot match: every iteration then ends at that character,
    so iterations cannot be split differently."""
    for op, av in body:
        if op is _sre.LITERAL and _item_has(inner[0], inner[1], chr(av), flags) is False:
            return True
    return False


def _deterministic(alternatives: list[Any], flags: int) -> bool:
    """True if every alternative starts with a literal character, all
    different: at any position at most one alternative can go on."""
    seen: set[str] = set()
    for alternative in alternatives:
        items = list(alternative)
        if not items or items[0][0] is not _sre.LITERAL:
            return False
        ch = chr(items[0][1])
        key = ch.lower() if flags & re.IGNORECASE else ch
        if key in seen:
            return False
        seen.add(key)
    return True


def _ambiguity(body: Any, flags: int) -> str | None:
    """Why an outer repeat of ``body`` could split the same text into
    iterations in more than one way (None if it cannot)."""
    for op, av in body:
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            lo, hi, inner = av
            if lo != hi:
                single = _single_char(inner)
                if single is None or not _delimited(body, single, flags):
                    return "a repeat inside a repeat"
            reason = _ambiguity(inner, flags)
            if reason:
                return reason
        elif op is _sre.BRANCH:
            if not _deterministic(av[1], flags):
                return "an alternation inside a repeat whose branches can start with the same character"
            for alternative in av[1]:
                reason = _ambiguity(alternative, flags)
                if reason:
                    return reason
        elif op in (_sre.GROUPREF, _sre.GROUPREF_EXISTS):
            return "a back-reference inside a repeat"
        elif op is _sre.SUBPATTERN:
            reason = _ambiguity(av[-1], flags)
            if reason:
                return reason
    return None


def _walk(seq: Any, shape: _Shape, flags: int, tail: bool) -> None:
    items = list(seq)
    last = len(items) - 1
    for index, (op, av) in enumerate(items):
        at_tail = tail and index == last
        if op in _REPEATS:
            lo, hi, body = av
            if hi > 1 and shape.refusal is None:
                reason = _ambiguity(body, flags)
                if reason:
                    shape.refusal = f"{reason} can backtrack exponentially"
            if lo != hi and not at_tail:
                shape.choices.append(None if hi == _UNBOUNDED else hi - lo + 1)
            _walk(body, shape, flags, False)
        elif op is _sre.BRANCH:
            if not at_tail:
                shape.choices.append(len(av[1]))
            for alternative in av[1]:
                _walk(alternative, shape, flags, at_tail)
        elif op is _sre.SUBPATTERN:
            _walk(av[-1], shape, flags, at_tail)
        elif op is _sre.ATOMIC_GROUP:
            _walk(av, shape, flags, at_tail)
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            _walk(av[1], shape, flags, False)
        elif op is _sre.GROUPREF_EXISTS:
            _walk(av[1], shape, flags, at_tail)
            if av[2] is not None:
                _walk(av[2], shape, flags, at_tail)


@functools.lru_cache(maxsize=512)
def _shape(pattern: str | bytes, flags: int) -> _Shape | None:
    """The shape of a pattern, or None if it does not parse (the engine
    then raises its own ``re.error``)."""
    try:
        parsed = _sre_parse.parse(pattern, flags)
    except Exception:  # noqa: BLE001 - re reports the error itself
        return None
    flags = parsed.state.flags
    shape = _Shape()
    _walk(parsed, shape, flags, True)
    first = list(parsed)[:1]
    if first and first[0][0] is _sre.AT:
        where = first[0][1]
        shape.anchored = where in _ANCHORS or (where is _sre.AT_BEGINNING and not flags & re.MULTILINE)
    return shape


def check_pattern(pattern: Any, flags: Any = 0) -> None:
    """Refuse a pattern that can backtrack exponentially (SandboxLimitError)."""
    _judged(pattern, flags)


def check_search(pattern: Any, flags: Any, subject: Any, *, scans: bool) -> None:
    """Refuse running ``pattern`` over ``subject`` when the worst case is
    above MAX_REGEX_STEPS (and any exponential pattern). ``scans`` is False
    for ``match``/``fullmatch``, which try one start position."""
    shape, text = _judged(pattern, flags)
    if shape is None or not isinstance(subject, (str, bytes, bytearray)):
        return
    n = len(subject) + 1
    steps = n if scans and not shape.anchored else 1
    for choices in shape.choices:
        steps *= n if choices is None else min(n, choices)
        if steps > MAX_REGEX_STEPS:
            raise SandboxLimitError(
                f"regular expression {_shown(text)} over a subject of {len(subject)} characters could "
                f"backtrack for more than the plugin limit of {MAX_REGEX_STEPS} steps; search a shorter "
                "text, anchor the pattern, or use fewer open-ended repeats before its end"
            )


def _judged(pattern: Any, flags: Any) -> tuple[_Shape | None, Any]:
    """The pattern's shape (None if it is not a pattern the engine will
    accept) and text; raises for an exponential one."""
    if isinstance(pattern, re.Pattern):
        text, flags = pattern.pattern, pattern.flags
    else:
        text = pattern
        if not isinstance(flags, int):
            flags = 0
    if not isinstance(text, (str, bytes)):
        return None, text
    shape = _shape(text, flags)
    if shape is not None and shape.refusal is not None:
        raise SandboxLimitError(
            f"regular expression {_shown(text)} is refused in plugins: {shape.refusal}; "
            "rewrite it so each part of the text can be matched only one way"
        )
    return shape, text


def _shown(text: str | bytes) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."
