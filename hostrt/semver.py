"""Semantic versions and npm-style version ranges, without dependencies.

:class:`Version` follows SemVer 2.0.0 strictly (no leading ``v``, no leading
zeros, no missing parts). :class:`VersionRange` understands the range syntax
plugin authors already know from npm:

==================  ===========================================
``1.2.3``           exactly 1.2.3 (``=1.2.3`` is the same)
``>=1.2 <2``        comparators joined by spaces (AND)
``^1.2.3``          compatible: ``>=1.2.3 <2.0.0``; ``^0.2.3`` is ``>=0.2.3 <0.3.0``
``~1.2.3``          patch updates: ``>=1.2.3 <1.3.0``
``1.x``, ``1.2.*``  any version with that prefix; ``*`` is any version
``1.2 - 2.3``       inclusive hyphen range: ``>=1.2.0 <2.4.0``
``a || b``          either range (OR)
==================  ===========================================

Missing parts count as zero in lower bounds (``>=0.1`` is ``>=0.1.0``) and as
wildcards elsewhere (``<=1.2`` is ``<1.3.0``).

A prerelease such as ``2.0.0-rc.1`` only satisfies a range if one comparator
in the same AND-set names a prerelease of the same ``MAJOR.MINOR.PATCH``
(npm's rule): asking for ``^1.0`` should never pull in someone's unfinished
2.0, while ``>=2.0.0-rc.1`` explicitly opts into that release's candidates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering
from typing import Literal

__all__ = ["Comparator", "Version", "VersionRange"]

# No \d: it matches non-ASCII digits, which SemVer does not allow.
_NUM = r"0|[1-9][0-9]*"
_PRE_ID = r"0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*"
_BUILD_ID = r"[0-9A-Za-z-]+"
_PRE = rf"(?:{_PRE_ID})(?:\.(?:{_PRE_ID}))*"
_BUILD = rf"{_BUILD_ID}(?:\.{_BUILD_ID})*"
_VERSION_RE = re.compile(
    rf"(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_PRE}))?(?:\+(?P<build>{_BUILD}))?"
)
# A version whose parts may be missing or wildcards; prerelease and build
# are only allowed after three parts.
_XNUM = rf"{_NUM}|[xX*]"
_PARTIAL_RE = re.compile(
    rf"(?P<major>{_XNUM})(?:\.(?P<minor>{_XNUM})(?:\.(?P<patch>{_XNUM})"
    rf"(?:-(?P<pre>{_PRE}))?(?:\+(?P<build>{_BUILD}))?)?)?"
)
_OPERATOR_RE = re.compile(r"(<=|>=|<|>|=|\^|~)?(.*)", re.S)

MAX_LENGTH = 256

Operator = Literal["<", "<=", "=", ">=", ">"]


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    """A SemVer 2.0.0 version.

    Comparison follows SemVer precedence: build metadata is ignored, so
    ``1.0.0+a == 1.0.0+b``; a prerelease sorts before its release, and
    prerelease identifiers compare numerically when both are numeric,
    otherwise as ASCII strings, with numeric before alphanumeric.
    """

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``MAJOR.MINOR.PATCH[-prerelease][+build]``.

        Raises :class:`ValueError` for anything else (``1.0``, ``v1.0.0``,
        ``01.0.0``, surrounding whitespace).
        """
        if not isinstance(text, str):
            raise ValueError(f"a version must be a string, not {type(text).__name__}")
        match = _VERSION_RE.fullmatch(text) if len(text) <= MAX_LENGTH else None
        if match is None:
            raise ValueError(f"{text!r} is not a semantic version (MAJOR.MINOR.PATCH)")
        return cls(
            int(match["major"]),
            int(match["minor"]),
            int(match["patch"]),
            _split_prerelease(match["pre"]),
            tuple(match["build"].split(".")) if match["build"] else (),
        )

    @property
    def release(self) -> tuple[int, int, int]:
        """``(major, minor, patch)`` without prerelease or build."""
        return (self.major, self.minor, self.patch)

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def _key(self) -> tuple[object, ...]:
        if not self.prerelease:
            # A release sorts after every prerelease of the same numbers.
            return (*self.release, 1, ())
        ids = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.prerelease)
        return (*self.release, 0, ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = ".".join(map(str, self.release))
        if self.prerelease:
            text += "-" + ".".join(map(str, self.prerelease))
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def _split_prerelease(text: str | None) -> tuple[int | str, ...]:
    if not text:
        return ()
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


@dataclass(frozen=True)
class Comparator:
    """One primitive condition such as ``>=1.2.0``."""

    operator: Operator
    version: Version

    def test(self, version: Version) -> bool:
        """Does ``version`` satisfy this comparator (ignoring the prerelease rule)?"""
        op = self.operator
        if op == "=":
            return version == self.version
        if op == ">=":
            return version >= self.version
        if op == ">":
            return version > self.version
        if op == "<=":
            return version <= self.version
        return version < self.version

    def __str__(self) -> str:
        return f"{self.operator}{self.version}"


# A partial version: None stands for a missing or wildcard part.
@dataclass(frozen=True)
class _Partial:
    major: int | None
    minor: int | None
    patch: int | None
    prerelease: tuple[int | str, ...] = ()

    @property
    def is_full(self) -> bool:
        return self.patch is not None

    def floor(self) -> Version:
        """The lowest version with this prefix (missing parts are 0)."""
        return Version(self.major or 0, self.minor or 0, self.patch or 0, self.prerelease)

    def next_after(self) -> Version:
        """The first version past this prefix, as ``X.Y.Z-0`` so that no
        prerelease of it is included. Only for partials with a wildcard."""
        assert self.major is not None and self.patch is None
        if self.minor is None:
            return _lowest(self.major + 1, 0, 0)
        return _lowest(self.major, self.minor + 1, 0)


def _lowest(major: int, minor: int, patch: int) -> Version:
    """The lowest possible version with these numbers (its ``-0`` prerelease)."""
    return Version(major, minor, patch, (0,))


def _parse_partial(text: str) -> _Partial:
    match = _PARTIAL_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a version")
    parts = [match[name] for name in ("major", "minor", "patch")]
    numbers: list[int | None] = []
    for part in parts:
        if part is None or part in ("x", "X", "*"):
            numbers.append(None)
        elif numbers and numbers[-1] is None:
            raise ValueError(f"in {text!r} a number follows a wildcard")
        else:
            numbers.append(int(part))
    if match["pre"] and None in numbers:
        raise ValueError(f"in {text!r} a prerelease needs a full MAJOR.MINOR.PATCH")
    return _Partial(numbers[0], numbers[1], numbers[2], _split_prerelease(match["pre"]))


_ANY: tuple[Comparator, ...] = ()
# Matches nothing: every version is >= 0.0.0-0.
_NONE: tuple[Comparator, ...] = (Comparator("<", _lowest(0, 0, 0)),)


def _desugar(operator: str, p: _Partial) -> tuple[Comparator, ...]:
    """Turn one range token into primitive comparators (npm's semantics)."""
    if p.major is None:
        # *, >=*, <=*, ^*, ~* are "any"; >* and <* can match nothing.
        return _NONE if operator in ("<", ">") else _ANY
    if operator == "^":
        return _caret(p)
    if operator == "~":
        return _tilde(p)
    if p.is_full:
        return (Comparator(operator or "=", p.floor()),)  # type: ignore[arg-type]
    # Partial versions below: p.patch is missing.
    if operator in ("", "="):
        return (Comparator(">=", p.floor()), Comparator("<", p.next_after()))
    if operator == ">":
        # >1 is >=2.0.0; like npm, it does not start at 2.0.0-0.
        return (Comparator(">=", _release(p.next_after())),)
    if operator == "<=":
        return (Comparator("<", p.next_after()),)
    if operator == "<":
        return (Comparator("<", _lowest(*p.floor().release)),)
    return (Comparator(">=", p.floor()),)


def _release(v: Version) -> Version:
    return Version(v.major, v.minor, v.patch)


def _caret(p: _Partial) -> tuple[Comparator, ...]:
    """``^`` allows changes that do not modify the left-most non-zero part."""
    assert p.major is not None
    low = Comparator(">=", p.floor())
    if p.minor is None:
        upper = _lowest(p.major + 1, 0, 0)
    elif p.patch is None:
        upper = _lowest(p.major + 1, 0, 0) if p.major else _lowest(0, p.minor + 1, 0)
    elif p.major:
        upper = _lowest(p.major + 1, 0, 0)
    elif p.minor:
        upper = _lowest(0, p.minor + 1, 0)
    else:
        upper = _lowest(0, 0, p.patch + 1)
    return (low, Comparator("<", upper))


def _tilde(p: _Partial) -> tuple[Comparator, ...]:
    """``~`` allows patch changes when a minor is given, else minor changes."""
    assert p.major is not None
    if p.minor is None:
        upper = _lowest(p.major + 1, 0, 0)
    else:
        upper = _lowest(p.major, p.minor + 1, 0)
    return (Comparator(">=", p.floor()), Comparator("<", upper))


def _hyphen(low: _Partial, high: _Partial) -> tuple[Comparator, ...]:
    result: list[Comparator] = []
    if low.major is not None:
        result.append(Comparator(">=", low.floor()))
    if high.major is not None:
        if high.is_full:
            result.append(Comparator("<=", high.floor()))
        else:
            result.append(Comparator("<", high.next_after()))
    return tuple(result)


# "> = 1.2" is not allowed, but ">= 1.2" is (npm accepts it).
_OPERATOR_SPACE_RE = re.compile(r"(<=|>=|<|>|=|\^|~)\s+")


def _parse_set(text: str) -> tuple[Comparator, ...]:
    tokens = _OPERATOR_SPACE_RE.sub(r"\1", text).split()
    if not tokens:
        raise ValueError("empty alternative")
    if "-" in tokens:
        if len(tokens) != 3 or tokens[1] != "-":
            raise ValueError(f"a hyphen range is 'LOW - HIGH', got {text.strip()!r}")
        return _hyphen(_parse_partial(tokens[0]), _parse_partial(tokens[2]))
    comparators: list[Comparator] = []
    for token in tokens:
        match = _OPERATOR_RE.fullmatch(token)
        assert match is not None  # the pattern matches any string
        operator, rest = match.group(1) or "", match.group(2)
        try:
            comparators.extend(_desugar(operator, _parse_partial(rest)))
        except ValueError as exc:
            raise ValueError(f"bad comparator {token!r}: {exc}") from None
    return tuple(comparators)


@dataclass(frozen=True)
class VersionRange:
    """A set of versions written in npm range syntax.

    ``sets`` holds the OR-ed alternatives, each a tuple of AND-ed
    :class:`Comparator`; an empty tuple means "any version".
    """

    text: str
    sets: tuple[tuple[Comparator, ...], ...] = field(compare=False)

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        """Parse a range such as ``^1.2``, ``>=1.0 <2 || 3.x`` or ``1 - 2.3``.

        Raises :class:`ValueError` naming what is wrong.
        """
        if not isinstance(text, str):
            raise ValueError(f"a version range must be a string, not {type(text).__name__}")
        if len(text) > MAX_LENGTH:
            raise ValueError(f"version range is longer than {MAX_LENGTH} characters")
        if not text.strip():
            raise ValueError("version range is empty (use '*' for any version)")
        try:
            sets = tuple(_parse_set(alternative) for alternative in text.split("||"))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid version range: {exc}") from None
        return cls(text, sets)

    def contains(self, version: Version | str, *, include_prerelease: bool = False) -> bool:
        """Is ``version`` in this range?

        With ``include_prerelease`` a prerelease is judged by the comparators
        alone, as if it were a release; hosts use this for their own version
        so that a development build still satisfies ``>=0.1``.
        """
        if isinstance(version, str):
            version = Version.parse(version)
        return any(_set_contains(s, version, include_prerelease) for s in self.sets)

    def __contains__(self, version: Version | str) -> bool:
        return self.contains(version)

    def __str__(self) -> str:
        return self.text


def _set_contains(comparators: tuple[Comparator, ...], version: Version, include_prerelease: bool) -> bool:
    if not all(c.test(version) for c in comparators):
        return False
    if not version.prerelease or include_prerelease:
        return True
    # npm's rule: some comparator must opt into prereleases of this release.
    # The "-0" upper bounds produced by desugaring never satisfy this for a
    # version that passes them, because X.Y.Z-0 is the lowest X.Y.Z prerelease.
    return any(
        c.version.prerelease and c.version.release == version.release for c in comparators
    )
