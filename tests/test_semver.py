"""Semantic versions and npm-style ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostrt.semver import Version, VersionRange


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0", (0, 0, 0, (), ())),
        ("1.2.3", (1, 2, 3, (), ())),
        ("10.20.30", (10, 20, 30, (), ())),
        ("1.0.0-alpha", (1, 0, 0, ("alpha",), ())),
        ("1.0.0-alpha.1", (1, 0, 0, ("alpha", 1), ())),
        ("1.0.0-0.3.7", (1, 0, 0, (0, 3, 7), ())),
        ("1.0.0-x.7.z.92", (1, 0, 0, ("x", 7, "z", 92), ())),
        ("1.0.0-x-y-z.--", (1, 0, 0, ("x-y-z", "--"), ())),
        ("1.0.0-0a", (1, 0, 0, ("0a",), ())),
        ("1.0.0+20130313144700", (1, 0, 0, (), ("20130313144700",))),
        ("1.0.0-beta+exp.sha.5114f85", (1, 0, 0, ("beta",), ("exp", "sha", "5114f85"))),
        ("1.0.0+001", (1, 0, 0, (), ("001",))),
    ],
)
def test_parse_valid(text: str, expected: tuple[object, ...]) -> None:
    v = Version.parse(text)
    assert (v.major, v.minor, v.patch, v.prerelease, v.build) == expected
    assert str(v) == text


@pytest.mark.parametrize(
    "text",
    [
        "", "1", "1.2", "1.2.3.4", "v1.2.3", "=1.2.3", " 1.2.3", "1.2.3 ", "1.2.3\n",
        "01.2.3", "1.02.3", "1.2.03", "1.2.3-01", "1.2.3-", "1.2.3+", "1.2.3-a..b",
        "1.2.3-a_b", "1.2.3+a+b", "-1.2.3", "1.2.x", "a.b.c", "1.2.3-é", "١.2.3",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(ValueError, match="is not a semantic version"):
        Version.parse(text)


def test_parse_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        Version.parse(1)  # type: ignore[arg-type]


def test_precedence_follows_the_spec_example() -> None:
    ordered = [
        "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
        "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1",
        "1.1.0", "2.0.0-0", "2.0.0", "10.0.0",
    ]
    versions = [Version.parse(t) for t in ordered]
    assert sorted(reversed(versions)) == versions
    for low, high in zip(versions, versions[1:]):
        assert low < high and high > low and low != high


def test_numeric_identifiers_compare_numerically_and_before_alphanumerics() -> None:
    assert Version.parse("1.0.0-2") < Version.parse("1.0.0-10")
    assert Version.parse("1.0.0-10") < Version.parse("1.0.0-1a")
    assert Version.parse("1.0.0-alpha.10") > Version.parse("1.0.0-alpha.9")


def test_build_metadata_is_ignored_for_precedence() -> None:
    a, b = Version.parse("1.0.0+a"), Version.parse("1.0.0+b")
    assert a == b and hash(a) == hash(b)
    assert not a < b and not b < a
    assert str(a) == "1.0.0+a"


versions = st.builds(
    lambda m, n, p, pre: f"{m}.{n}.{p}" + (f"-{pre}" if pre else ""),
    st.integers(0, 50), st.integers(0, 50), st.integers(0, 50),
    st.sampled_from(["", "0", "1", "alpha", "alpha.1", "beta.2", "rc.10"]),
)


@given(versions, versions)
def test_ordering_is_total_and_consistent(a_text: str, b_text: str) -> None:
    a, b = Version.parse(a_text), Version.parse(b_text)
    assert (a < b) + (a == b) + (a > b) == 1
    assert (a == b) == (a_text == b_text)
    if a.release != b.release:
        assert (a < b) == (a.release < b.release)


@pytest.mark.parametrize(
    ("range_text", "inside", "outside"),
    [
        ("1.2.3", ["1.2.3", "1.2.3+build"], ["1.2.4", "1.2.2", "1.2.3-rc.1"]),
        ("=1.2.3", ["1.2.3"], ["1.2.4"]),
        (">=1.2.3", ["1.2.3", "1.3.0", "99.0.0"], ["1.2.2", "2.0.0-rc.1"]),
        (">1.2.3", ["1.2.4"], ["1.2.3"]),
        ("<1.2.3", ["1.2.2", "0.0.0"], ["1.2.3", "1.2.3-rc.1"]),
        ("<=1.2.3", ["1.2.3"], ["1.2.4"]),
        # partial versions
        (">=0.1", ["0.1.0", "0.2.0", "1.0.0"], ["0.0.9"]),
        (">1", ["2.0.0"], ["1.9.9"]),
        (">1.2", ["1.3.0"], ["1.2.9"]),
        ("<1.2", ["1.1.9"], ["1.2.0"]),
        ("<=1.2", ["1.2.9"], ["1.3.0"]),
        ("1.2", ["1.2.0", "1.2.9"], ["1.3.0", "1.1.9"]),
        # caret
        ("^1.2.3", ["1.2.3", "1.9.9"], ["1.2.2", "2.0.0", "2.0.0-0"]),
        ("^1.2", ["1.2.0", "1.99.0"], ["1.1.9", "2.0.0"]),
        ("^1", ["1.0.0", "1.9.9"], ["2.0.0", "0.9.9"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("^0.2", ["0.2.0", "0.2.9"], ["0.3.0"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2"]),
        ("^0.0", ["0.0.0", "0.0.9"], ["0.1.0"]),
        ("^0", ["0.0.0", "0.9.9"], ["1.0.0"]),
        ("^0.x", ["0.5.0"], ["1.0.0"]),
        ("^1.2.3-beta.2", ["1.2.3-beta.2", "1.2.3-beta.10", "1.2.3", "1.5.0"],
         ["1.2.3-beta.1", "1.2.4-beta.3", "2.0.0"]),
        # tilde
        ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
        ("~1.2", ["1.2.0", "1.2.9"], ["1.3.0"]),
        ("~1", ["1.0.0", "1.9.9"], ["2.0.0"]),
        ("~0.2.3", ["0.2.3", "0.2.9"], ["0.3.0"]),
        ("~0", ["0.0.0", "0.9.0"], ["1.0.0"]),
        # x-ranges
        ("1.x", ["1.0.0", "1.9.9"], ["2.0.0", "0.9.9", "2.0.0-rc.1"]),
        ("1.2.*", ["1.2.0", "1.2.99"], ["1.3.0"]),
        ("1.X", ["1.5.0"], ["2.0.0"]),
        ("*", ["0.0.0", "99.99.99"], ["1.0.0-rc.1"]),
        ("x", ["1.0.0"], []),
        (">=*", ["1.0.0"], []),
        (">*", [], ["0.0.0", "1.0.0"]),
        # AND, OR, hyphen
        (">=1.2.3 <2", ["1.2.3", "1.99.0"], ["2.0.0", "1.2.2"]),
        (">= 1.2.3  < 2", ["1.5.0"], ["2.0.0"]),
        ("1.x || >=3.1 <3.2 || 5.0.0", ["1.5.0", "3.1.5", "5.0.0"], ["2.0.0", "3.2.0", "5.0.1"]),
        ("1.2 - 2.3", ["1.2.0", "2.3.9"], ["1.1.9", "2.4.0"]),
        ("1.2.3 - 2.3.4", ["1.2.3", "2.3.4"], ["2.3.5", "1.2.2"]),
        ("1 - 2", ["1.0.0", "2.9.9"], ["3.0.0"]),
        ("* - 2", ["0.0.0", "2.9.9"], ["3.0.0"]),
        # prereleases only where a comparator of the same release opts in
        (">=1.2.3-rc.1 <1.3", ["1.2.3-rc.1", "1.2.3-rc.2", "1.2.5"], ["1.2.4-rc.1", "1.2.3-beta"]),
        (">1.2.3-alpha.3", ["1.2.3-alpha.7", "3.4.5"], ["3.4.5-alpha.9"]),
    ],
)
def test_range_contains(range_text: str, inside: list[str], outside: list[str]) -> None:
    r = VersionRange.parse(range_text)
    for v in inside:
        assert r.contains(v), f"{v} should be in {range_text}"
        assert Version.parse(v) in r
    for v in outside:
        assert not r.contains(v), f"{v} should not be in {range_text}"


def test_include_prerelease_judges_by_comparators_alone() -> None:
    r = VersionRange.parse(">=0.1")
    assert not r.contains("0.2.0-dev.1")
    assert r.contains("0.2.0-dev.1", include_prerelease=True)
    # "^1.2" still ends before any 2.0.0 prerelease.
    assert not VersionRange.parse("^1.2").contains("2.0.0-alpha", include_prerelease=True)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("1.x ||", "empty alternative"),
        ("|| 1.x", "empty alternative"),
        ("^^1", "bad comparator"),
        (">=foo", "bad comparator"),
        ("~>1.2", "bad comparator"),
        ("v1.2.3", "bad comparator"),
        ("1.x.3", "follows a wildcard"),
        ("1.2-beta", "bad comparator"),
        ("1.x-beta", "bad comparator"),
        ("1.2.3 -", "hyphen range"),
        ("1 - 2 - 3", "hyphen range"),
        (">=1 - 2", "not a version"),
        ("01.2.3", "bad comparator"),
        ("1.2.3|2.0.0", "bad comparator"),
        ("1" * 300, "longer than"),
    ],
)
def test_range_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        VersionRange.parse(text)


def test_range_keeps_its_text() -> None:
    r = VersionRange.parse("^1.2 || 3.x")
    assert str(r) == "^1.2 || 3.x"
    assert r == VersionRange.parse("^1.2 || 3.x")
    assert "1.5.0" in r and "2.0.0" not in r
    with pytest.raises(ValueError, match="not a semantic version"):
        r.contains("1.5")
