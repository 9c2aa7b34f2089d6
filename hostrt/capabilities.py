"""Capability names, scopes and matching.

A capability is ``name`` or ``name:scope``. Scopes are dotted names in which
``*`` matches any run of characters (dots included). Only ``*`` is special:
there is no ``?`` or ``[...]``, so a scope can always be read literally.

Three relations matter:

* :func:`allows` -- does a granted capability permit a concrete request
  (``events.publish:greeting.*`` allows ``events.publish:greeting.sent``)?
* :func:`covers` -- is one pattern entirely inside another
  (``greeting.sent`` and ``greeting.*`` are inside ``greeting.*``; ``*`` is
  not)? A grant must be covered by something the manifest requests.
* :func:`parse_capability` -- the syntax check used by the manifest and the
  grant API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

#: Capabilities that take no scope.
UNSCOPED: frozenset[str] = frozenset(
    {"storage", "settings.read", "settings.write"}
)
#: Capabilities that require a scope.
SCOPED: frozenset[str] = frozenset(
    {"events.publish", "events.subscribe", "host.call"}
)
KNOWN: frozenset[str] = UNSCOPED | SCOPED

#: A concrete name (event, host method) as it appears in a request.
NAME_PATTERN = r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*"
#: A scope pattern: the same characters plus ``*``.
_SCOPE_RE = re.compile(r"[A-Za-z0-9_*-]+(?:\.[A-Za-z0-9_*-]+)*")
_NAME_RE = re.compile(NAME_PATTERN)
MAX_SCOPE_LENGTH = 128


@dataclass(frozen=True, order=True)
class Capability:
    """A parsed capability: ``name`` plus an optional ``scope`` pattern."""

    name: str
    scope: str | None = None

    def __str__(self) -> str:
        return self.name if self.scope is None else f"{self.name}:{self.scope}"


def parse_capability(text: str) -> Capability:
    """Parse and validate ``name`` or ``name:scope``.

    Results are cached: grants are re-read and re-parsed on every checked call.

    Raises :class:`ValueError` with a message that says what is wrong; the
    manifest and grant layers wrap it in their own error types.
    """
    # Exact str only: a subclass could lie through partition() or __eq__
    # (and must not reach the cache, which hashes and compares its argument).
    if type(text) is not str:
        raise ValueError(f"capability must be a string, not {type(text).__name__}")
    return _parse(text)


@lru_cache(maxsize=4096)
def _parse(text: str) -> Capability:
    name, sep, scope = text.partition(":")
    if name not in KNOWN:
        known = ", ".join(sorted(KNOWN))
        raise ValueError(f"unknown capability '{name}' (known: {known})")
    if name in UNSCOPED:
        if sep:
            raise ValueError(f"capability '{name}' takes no scope")
        return Capability(name)
    if not sep or not scope:
        raise ValueError(
            f"capability '{name}' needs a scope, for example '{name}:example.*'"
        )
    if len(scope) > MAX_SCOPE_LENGTH:
        raise ValueError(f"scope of '{name}' is longer than {MAX_SCOPE_LENGTH} characters")
    if not _SCOPE_RE.fullmatch(scope):
        raise ValueError(
            f"scope '{scope}' of '{name}' may use only letters, digits, '_', '-', "
            "'*' and single dots between parts"
        )
    return Capability(name, scope)


def is_valid_name(name: str) -> bool:
    """True for a concrete event/method name (no wildcards)."""
    return type(name) is str and len(name) <= MAX_SCOPE_LENGTH and bool(_NAME_RE.fullmatch(name))


@lru_cache(maxsize=4096)
def _scope_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def scope_matches(pattern: str, value: str) -> bool:
    """Does the glob ``pattern`` match ``value`` (``*`` matches anything)?

    When ``value`` itself contains ``*`` this answers "is every expansion of
    value matched by pattern", because a literal character in ``pattern``
    can never match a ``*`` in ``value``; only a wildcard can absorb it.
    """
    return bool(_scope_regex(pattern).fullmatch(value))


def _well_formed(cap: Capability) -> bool:
    if cap.scope is None:
        return cap.name in UNSCOPED
    return cap.name in SCOPED and len(cap.scope) <= MAX_SCOPE_LENGTH and bool(_SCOPE_RE.fullmatch(cap.scope))


def allows(granted: Capability, requested: Capability) -> bool:
    """Does holding ``granted`` permit the concrete or pattern ``requested``?

    Both sides are checked for syntax here, not only by callers: a request
    built from an unchecked name (with a newline, NUL or a non-ASCII digit)
    is never allowed, whatever the grant.
    """
    if granted.name != requested.name or not (_well_formed(granted) and _well_formed(requested)):
        return False
    if granted.scope is None or requested.scope is None:
        return granted.scope is None and requested.scope is None
    return scope_matches(granted.scope, requested.scope)


def covers(outer: Capability, inner: Capability) -> bool:
    """Is everything ``inner`` allows also allowed by ``outer``?"""
    return allows(outer, inner)


def covered_by_any(candidates: list[Capability] | tuple[Capability, ...], cap: Capability) -> bool:
    """Is ``cap`` inside at least one of ``candidates``?"""
    return any(covers(c, cap) for c in candidates)
