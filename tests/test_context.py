import logging

import pytest

from hostrt.capabilities import parse_capability
from hostrt.context import ActivationContext, ContextLimits
from hostrt.errors import CapabilityError, HostrtError, LifecycleError, QuotaExceededError, SettingsError, StorageError
from hostrt.grants import GrantManager

SETTINGS = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "world", "maxLength": 10},
        "count": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}
ALL = ["storage", "settings.read", "settings.write"]


@pytest.fixture
def requests():
    return {"alpha": list(ALL), "beta": list(ALL)}


@pytest.fixture
def grants(store, requests):
    return GrantManager(store, lambda pid: tuple(parse_capability(c) for c in requests.get(pid, [])))


def make_ctx(store, grants, pid, *, quota=1024 * 1024, grant=True):
    if grant:
        grants.grant_requested(pid)
    return ActivationContext(
        plugin_id=pid, plugin_version="1.0.0", store=store, grants=grants,
        settings_schema=SETTINGS, limits=ContextLimits(storage_quota_bytes=quota),
    )


@pytest.fixture
def alpha(store, grants):
    return make_ctx(store, grants, "alpha")


@pytest.fixture
def beta(store, grants):
    return make_ctx(store, grants, "beta")


def test_storage_round_trip_returns_fresh_copies(alpha):
    value = {"list": [1, 2, {"x": None}], "ok": True, "pi": 3.5, "s": "é"}
    alpha.storage_set("thing", value)
    got = alpha.storage_get("thing")
    assert got == value and got is not value
    got["list"].append(99)
    assert alpha.storage_get("thing") == value
    assert alpha.storage_get("missing") is None
    assert alpha.storage_get("missing", [1]) == [1]
    assert alpha.storage_keys() == ["thing"]
    assert alpha.storage_delete("thing") is True
    assert alpha.storage_delete("thing") is False


@pytest.mark.parametrize("key", ["", "%", "a\n", "../beta/x", "beta/x", "a b", "x" * 101, "é", "a\x00", None, 5, "a:b"])
def test_bad_storage_keys_are_refused(alpha, key):
    with pytest.raises(StorageError) as info:
        alpha.storage_set(key, 1)
    assert info.value.code == "E_STORAGE" and "invalid storage key" in info.value.message


def test_storage_is_isolated_between_plugins(alpha, beta, store):
    beta.storage_set("secret", "beta-secret")
    for key in ["secret", "beta.secret", "..", ".", "beta", "_"]:
        assert alpha.storage_get(key) is None
        assert alpha.storage_delete(key) is False
    alpha.storage_set("secret", "mine")
    assert beta.storage_get("secret") == "beta-secret"
    assert alpha.storage_keys() == ["secret"]
    assert "beta-secret" not in repr(alpha.storage_keys("se"))
    assert store.kv_get("beta", "secret") == '"beta-secret"'


@pytest.mark.parametrize(
    "value", [object(), {1: "int key"}, float("nan"), {"a": {1, 2}}, b"bytes", type("S", (str,), {})("sub")]
)
def test_non_json_values_are_refused(alpha, value):
    with pytest.raises(StorageError, match=r"refused: \$.*(is not a JSON|keys must be strings)"):
        alpha.storage_set("k", value)
    assert alpha.storage_keys() == []


def test_cyclic_and_deep_values_are_refused(alpha):
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(StorageError, match="contains itself"):
        alpha.storage_set("k", cyclic)
    deep: list = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(StorageError, match="deeper than"):
        alpha.storage_set("k", deep)


def test_quota(store, grants):
    ctx = make_ctx(store, grants, "alpha", quota=100)
    ctx.storage_set("a", "x" * 50)
    with pytest.raises(QuotaExceededError) as info:
        ctx.storage_set("b", "y" * 60)
    assert info.value.code == "E_QUOTA"
    assert ctx.storage_keys() == ["a"]
    assert ctx.storage_get("a") == "x" * 50


def test_revoke_bites_on_the_next_call(alpha, grants, store):
    alpha.storage_set("k", 1)
    grants.revoke("alpha", "storage")
    with pytest.raises(CapabilityError) as info:
        alpha.storage_get("k")
    assert info.value.code == "E_CAPABILITY" and "storage" in info.value.message
    assert store.audit_count(plugin_id="alpha", action="denied") == 1
    grants.grant("alpha", "storage")
    assert alpha.storage_get("k") == 1


def test_calls_without_any_grant_are_refused(store, grants):
    ctx = make_ctx(store, grants, "alpha", grant=False)
    for call in (lambda: ctx.storage_get("k"), lambda: ctx.settings_all(), lambda: ctx.settings_set("name", "x")):
        with pytest.raises(CapabilityError):
            call()
    assert store.kv_keys("alpha") == [] and store.settings_get_all("alpha") == {}


def test_settings_defaults_validation_and_isolation(alpha, beta):
    assert alpha.settings_all() == {"name": "world"}
    assert alpha.settings_get("name") == "world"
    assert alpha.settings_get("count") is None
    alpha.settings_set("name", "alice")
    alpha.settings_set("count", 3)
    assert alpha.settings_all() == {"name": "alice", "count": 3}
    assert beta.settings_all() == {"name": "world"}
    with pytest.raises(SettingsError, match=r"\$\.name: .*too long"):
        alpha.settings_set("name", "x" * 11)
    with pytest.raises(SettingsError, match="count"):
        alpha.settings_set("count", -1)
    with pytest.raises(SettingsError, match="declares no setting 'other'"):
        alpha.settings_set("other", 1)
    with pytest.raises(SettingsError, match="invalid setting name"):
        alpha.settings_get("../beta/name")
    assert alpha.settings_all() == {"name": "alice", "count": 3}


def test_settings_read_and_write_are_separate_grants(store, grants, requests):
    requests["alpha"] = ["settings.read"]
    ctx = make_ctx(store, grants, "alpha")
    assert ctx.settings_get("name") == "world"
    with pytest.raises(CapabilityError, match="settings.write"):
        ctx.settings_set("name", "x")


def test_log_goes_through_standard_logging(alpha, caplog):
    caplog.set_level(logging.DEBUG, logger="hostrt.plugins.alpha")
    alpha.log("info", "hello", {"n": 1})
    alpha.log("warn", "careful")
    alpha.log("debug", "x" * 10000)
    records = [r for r in caplog.records if r.name == "hostrt.plugins.alpha"]
    assert [(r.levelno, r.getMessage()[:7]) for r in records] == [
        (logging.INFO, "hello"), (logging.WARNING, "careful"), (logging.DEBUG, "xxxxxxx")]
    assert records[0].plugin_fields == {"n": 1} and records[0].plugin_id == "alpha"
    assert "characters cut" in records[2].getMessage() and len(records[2].getMessage()) < 8300


def test_closed_context_refuses_everything(alpha):
    disposed = []
    alpha.add_disposer(lambda: disposed.append(1))
    alpha.add_disposer(lambda: disposed.append(2))
    alpha.close()
    assert disposed == [2, 1]
    with pytest.raises(LifecycleError):
        alpha.storage_get("k")
    with pytest.raises(LifecycleError):
        alpha.log("info", "late")


def test_one_failing_disposer_does_not_stop_the_rest(alpha):
    ran = []

    def boom():
        raise RuntimeError("boom")

    alpha.add_disposer(lambda: ran.append("first"))
    alpha.add_disposer(boom)
    alpha.dispose_all()
    assert ran == ["first"]


def test_log_escapes_forged_lines_and_control_characters(alpha, caplog):
    caplog.set_level(logging.DEBUG, logger="hostrt.plugins.alpha")
    alpha.log("info", "ok\n2026-01-01 CRITICAL host: fake\r\x1b[2J\u202edesrever\u2028x")
    (record,) = [r for r in caplog.records if r.name == "hostrt.plugins.alpha"]
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert "\u202e" not in message and "\u2028" not in message
    assert "\\n2026-01-01 CRITICAL host: fake" in message and "\\x1b[2J" in message


@pytest.mark.parametrize(
    "level, message, fields, fragment",
    [
        (["info"], "m", None, "log level"),
        ("INFO", "m", None, "log level"),
        ("info", 5, None, "must be a string"),
        ("info", "m", ["not", "an", "object"], "must be an object"),
        ("info", "m", {"big": "x" * 9000}, "larger than 8192 bytes"),
        ("info", "m", {"bad": object()}, "is not a JSON value"),
    ],
)
def test_log_refuses_malformed_calls(alpha, level, message, fields, fragment):
    with pytest.raises(HostrtError, match=fragment):
        alpha.log(level, message, fields)


def test_dotted_ids_get_loggers_that_are_not_children_of_others():
    from hostrt.context import plugin_logger

    assert plugin_logger("victim").name == "hostrt.plugins.victim"
    assert plugin_logger("victim.evil").name == "hostrt.plugins.victim_evil"
    assert not plugin_logger("victim.evil").name.startswith(plugin_logger("victim").name + ".")


def test_error_messages_never_run_plugin_code(alpha):
    calls = []

    class Key(str):
        def __repr__(self):
            calls.append("repr")
            return "x"

    class Other:
        def __repr__(self):
            calls.append("repr")
            raise RuntimeError("should not run")

    for key in (Key("a/b"), Other(), ["nested"]):
        with pytest.raises(StorageError, match="invalid storage key"):
            alpha.storage_set(key, 1)
        with pytest.raises(SettingsError, match="invalid setting name"):
            alpha.settings_set(key, 1)
    assert calls == []


def test_plugin_without_declared_settings_has_none(store, grants):
    grants.grant_requested("alpha")
    ctx = ActivationContext(plugin_id="alpha", plugin_version="1.0.0", store=store, grants=grants,
                            settings_schema=None)
    assert ctx.settings_all() == {}
    with pytest.raises(SettingsError, match="declares no settings"):
        ctx.settings_set("anything", 1)
    assert store.settings_get_all("alpha") == {}


def test_settings_sizes_are_bounded(store, grants):
    grants.grant_requested("alpha")
    schema = {"type": "object", "additionalProperties": {"type": "string"}}
    ctx = ActivationContext(plugin_id="alpha", plugin_version="1.0.0", store=store, grants=grants,
                            settings_schema=schema)
    with pytest.raises(SettingsError, match="larger than"):
        ctx.settings_set("one", "x" * 70000)
    for i in range(4):
        ctx.settings_set(f"k{i}", "y" * 60000)
    with pytest.raises(SettingsError, match="would exceed"):
        ctx.settings_set("k9", "y" * 60000)
    assert sorted(store.settings_get_all("alpha")) == ["k0", "k1", "k2", "k3"]


def test_a_plugin_that_logs_too_fast_has_records_dropped_and_counted(store, caplog):
    import logging as _logging

    from conftest import RecordingGate
    from hostrt import context as context_module

    caplog.set_level(_logging.INFO, logger="hostrt.plugins")
    gate = RecordingGate("chatty", store)
    for i in range(context_module.LOG_RECORDS_BURST + 500):
        gate.log("info", f"line {i}")
    written = [r.getMessage() for r in caplog.records if r.name == "hostrt.plugins.chatty"]
    # The burst gets through; the rest (beyond what refilled meanwhile) is dropped.
    assert context_module.LOG_RECORDS_BURST <= len(written) < context_module.LOG_RECORDS_BURST + 100
    assert written[:3] == ["line 0", "line 1", "line 2"]
    gate._log_budget._tokens = 5.0  # time passes
    gate.log("info", "after a pause")
    tail = [r.getMessage() for r in caplog.records if r.name == "hostrt.plugins.chatty"][-2:]
    assert tail[0].endswith("log records dropped: the plugin logged faster than "
                            f"{context_module.LOG_RECORDS_PER_SECOND} per second")
    assert tail[1] == "after a pause"
