import pytest

from hostrt.capabilities import parse_capability
from hostrt.errors import CapabilityError, GrantError, PluginNotFoundError
from hostrt.grants import GrantManager


@pytest.fixture
def requests():
    return {
        "a": ["storage", "events.publish:greeting.*", "host.call:getSystems"],
        "b": ["storage"],
    }


@pytest.fixture
def grants(store, requests):
    def lookup(pid):
        if pid not in requests:
            return None
        return tuple(parse_capability(c) for c in requests[pid])

    return GrantManager(store, lookup)


def test_grant_list_revoke_round_trip(grants, store):
    assert grants.grant("a", "storage") is True
    assert grants.grant("a", "storage") is False
    assert grants.grant("a", "events.publish:greeting.sent") is True
    assert grants.list("a") == ["events.publish:greeting.sent", "storage"]
    assert grants.list("b") == []
    assert grants.revoke("a", "storage") is True
    assert grants.revoke("a", "storage") is False
    assert grants.list("a") == ["events.publish:greeting.sent"]
    actions = [(e.action, e.detail["capability"]) for e in store.audit_log(plugin_id="a")]
    assert actions == [
        ("revoke", "storage"),
        ("grant", "events.publish:greeting.sent"),
        ("grant", "storage"),
    ]


@pytest.mark.parametrize(
    "capability",
    ["settings.write", "events.publish:*", "events.publish:greet*", "host.call:getSecrets", "events.subscribe:greeting.sent"],
)
def test_grant_beyond_request_is_refused_and_not_stored(grants, capability):
    with pytest.raises(GrantError) as info:
        grants.grant("a", capability)
    assert info.value.code == "E_GRANT"
    assert capability in info.value.message and "'a'" in info.value.message
    assert grants.list("a") == []


def test_malformed_capability_is_a_grant_error(grants):
    with pytest.raises(GrantError, match="unknown capability"):
        grants.grant("a", "root")


def test_unknown_plugin(grants):
    with pytest.raises(PluginNotFoundError):
        grants.grant("nobody", "storage")


def test_check_allows_only_effective_grants_and_audits_denials(grants, store):
    grants.grant("a", "events.publish:greeting.*")
    grants.check("a", parse_capability("events.publish:greeting.sent"))
    with pytest.raises(CapabilityError) as info:
        grants.check("a", parse_capability("storage"))
    assert info.value.code == "E_CAPABILITY"
    assert info.value.plugin_id == "a" and info.value.capability == "storage"
    denied = store.audit_log(plugin_id="a", action="denied")
    assert [e.detail["capability"] for e in denied] == ["storage"]


def test_new_version_requesting_more_does_not_inherit(grants, requests):
    grants.grant("b", "storage")
    requests["b"] = ["storage", "settings.write"]  # version 2 asks for more
    assert grants.missing("b") == ["settings.write"]
    assert not grants.is_allowed("b", parse_capability("settings.write"))


def test_grant_outside_current_requests_is_ignored(grants, requests, store):
    grants.grant("a", "host.call:getSystems")
    requests["a"] = ["storage"]  # a new version no longer asks for host.call
    assert not grants.is_allowed("a", parse_capability("host.call:getSystems"))
    # the stored row stays (the host may roll back) but is not honoured
    assert store.has_grant("a", "host.call:getSystems")


def test_grant_requested_grants_exactly_the_manifest(grants, requests):
    assert sorted(grants.grant_requested("a")) == sorted(requests["a"])
    assert grants.missing("a") == []
    assert grants.grant_requested("a") == []


def test_repeated_denials_are_coalesced_in_the_audit_log(grants, store, monkeypatch):
    storage = parse_capability("storage")
    for _ in range(500):
        with pytest.raises(CapabilityError):
            grants.check("a", storage)
    assert store.audit_count(plugin_id="a", action="denied") == 1
    # a different capability is its own entry
    with pytest.raises(CapabilityError):
        grants.check("a", parse_capability("host.call:getSystems"))
    assert store.audit_count(plugin_id="a", action="denied") == 2
    # once the interval has passed the next denial is written with the count left out
    monkeypatch.setattr(grants._denials, "interval_s", 0.0)
    with pytest.raises(CapabilityError):
        grants.check("a", storage)
    latest = store.audit_log(plugin_id="a", action="denied", limit=1)[0]
    assert latest.detail == {"capability": "storage", "suppressed": 499}


def test_cached_decisions_follow_every_change_including_other_processes(tmp_path):
    from hostrt.store import Store

    path = tmp_path / "host.db"
    requested = (parse_capability("storage"),)
    mine, other = Store(path), Store(path)
    try:
        grants = GrantManager(mine, lambda pid: requested)
        needed = parse_capability("storage")
        assert not grants.is_allowed("p", needed)
        assert grants.is_allowed("p", needed) is False  # answered from the cache
        other.add_grant("p", "storage")                 # another connection commits
        assert grants.is_allowed("p", needed)
        assert grants.is_allowed("p", needed)
        other.remove_grant("p", "storage")
        with pytest.raises(CapabilityError):
            grants.check("p", needed)
        grants.grant("p", "storage")                    # this store's own write
        assert grants.is_allowed("p", needed)
        mine.remove_grant("p", "storage")
        assert not grants.is_allowed("p", needed)
    finally:
        mine.close()
        other.close()


def test_cached_decisions_follow_a_changed_manifest(store):
    current = {"p": (parse_capability("storage"),)}
    grants = GrantManager(store, lambda pid: current[pid])
    grants.grant("p", "storage")
    assert grants.is_allowed("p", parse_capability("storage"))
    current["p"] = (parse_capability("settings.read"),)  # the new version no longer asks for storage
    assert not grants.is_allowed("p", parse_capability("storage"))


def test_denials_still_being_counted_are_written_when_the_plugin_stops(grants, store):
    storage = parse_capability("storage")
    for _ in range(5):
        with pytest.raises(CapabilityError):
            grants.check("a", storage)
    assert store.audit_count(plugin_id="a", action="denied") == 1
    grants.flush_denials("a")
    entries = store.audit_log(plugin_id="a", action="denied")
    assert sum(1 + e.detail.get("suppressed", 0) for e in entries) == 5
    grants.flush_denials("a")  # nothing left to write
    assert store.audit_count(plugin_id="a", action="denied") == 2
