import pytest

from hostrt.capabilities import Capability, allows, covers, is_valid_name, parse_capability


@pytest.mark.parametrize(
    "text, expected",
    [
        ("storage", Capability("storage")),
        ("settings.read", Capability("settings.read")),
        ("settings.write", Capability("settings.write")),
        ("events.publish:greeting.*", Capability("events.publish", "greeting.*")),
        ("events.subscribe:app.started", Capability("events.subscribe", "app.started")),
        ("host.call:getSystems", Capability("host.call", "getSystems")),
        ("events.subscribe:*", Capability("events.subscribe", "*")),
    ],
)
def test_parse_valid(text, expected):
    assert parse_capability(text) == expected
    assert str(parse_capability(text)) == text


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("network", "unknown capability 'network'"),
        ("storage:x", "takes no scope"),
        ("events.publish", "needs a scope"),
        ("events.publish:", "needs a scope"),
        ("host.call:a b", "may use only"),
        ("host.call:a..b", "may use only"),
        ("host.call:.a", "may use only"),
        ("host.call:a?", "may use only"),
        ("host.call:[ab]", "may use only"),
        ("host.call:" + "a" * 129, "longer than 128"),
        ("Storage", "unknown capability"),
    ],
)
def test_parse_invalid(text, fragment):
    with pytest.raises(ValueError) as info:
        parse_capability(text)
    assert fragment in str(info.value)


def test_parse_rejects_non_strings():
    with pytest.raises(ValueError, match="must be a string"):
        parse_capability(7)  # type: ignore[arg-type]


def cap(text):
    return parse_capability(text)


@pytest.mark.parametrize(
    "granted, requested, ok",
    [
        ("storage", "storage", True),
        ("settings.read", "settings.write", False),
        ("events.publish:greeting.*", "events.publish:greeting.sent", True),
        ("events.publish:greeting.*", "events.publish:greeting.a.b", True),
        ("events.publish:greeting.*", "events.publish:greetings", False),
        ("events.publish:greeting.*", "events.subscribe:greeting.sent", False),
        ("events.publish:greeting.sent", "events.publish:greeting.sent2", False),
        ("events.publish:*", "events.publish:anything.at.all", True),
        ("host.call:get*", "host.call:getSystems", True),
        ("host.call:getSystems", "host.call:getsystems", False),
    ],
)
def test_allows(granted, requested, ok):
    assert allows(cap(granted), cap(requested)) is ok


@pytest.mark.parametrize(
    "outer, inner, ok",
    [
        ("events.publish:greeting.*", "events.publish:greeting.*", True),
        ("events.publish:greeting.*", "events.publish:greeting.sent", True),
        ("events.publish:greeting.*", "events.publish:greeting.x*", True),
        ("events.publish:greeting.*", "events.publish:*", False),
        ("events.publish:greeting.*", "events.publish:greet*", False),
        ("events.publish:*.sent", "events.publish:a*", False),
        ("events.publish:*", "events.publish:a.*.b", True),
    ],
)
def test_covers_is_sound_for_patterns(outer, inner, ok):
    assert covers(cap(outer), cap(inner)) is ok


def test_regex_metacharacters_in_scopes_are_literal():
    # '.' must not act as "any character" when matching.
    assert not allows(cap("host.call:a.b"), cap("host.call:aXb"))


def test_is_valid_name():
    assert is_valid_name("greeting.sent")
    assert not is_valid_name("greeting.*")
    assert not is_valid_name("a..b")
    assert not is_valid_name("")


@pytest.mark.parametrize("text", ["storage\n", "host.call:a\n", "events.publish:a.*\n"])
def test_trailing_newline_is_not_accepted(text):
    with pytest.raises(ValueError):
        parse_capability(text)


def test_scope_match_is_anchored_at_both_ends():
    assert not allows(cap("host.call:get"), cap("host.call:getX"))
    assert not allows(cap("host.call:get"), cap("host.call:xget"))


@pytest.mark.parametrize("scope", ["greeting.x\n", "greeting.\x00", "greeting.٣", "greeting.a b", "greeting."])
def test_malformed_requests_are_never_allowed(scope):
    assert not allows(cap("events.publish:greeting.*"), Capability("events.publish", scope))
    assert not allows(cap("events.publish:*"), Capability("events.publish", scope))


def test_str_subclasses_are_refused():
    class Sneaky(str):
        def partition(self, sep):
            return ("storage", "", "")

    with pytest.raises(ValueError, match="must be a string"):
        parse_capability(Sneaky("host.call:x"))
    assert not is_valid_name(Sneaky("abc"))
