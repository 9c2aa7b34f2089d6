"""Attacks on the host-side boundary, written as a hostile plugin author would.

Every plugin, plugin.json and plugin folder here is assumed to be written by
someone who has read hostrt's source. The attacks go through the layers that
do not depend on a language sandbox: the ``ActivationContext`` gate (called
exactly as a runtime calls it), the grant logic, the JSON value rule, the
store, the manifest loader with ``resolve_main``/``plugin_source``, and
``Host.discover``.

Each test checks two things: the attack is refused with the documented error
class and code, and nothing leaked or changed (other plugins' storage,
settings and grants are byte-for-byte what they were, nothing was written
outside the attacker's own rows, messages carry no host paths).

An attack that is found to succeed is added here marked
``xfail(strict=True)`` with the hole as its reason, so it turns into a
failure (XPASS) the moment the hole is closed and the marker can go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sqlite3
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import hostrt
from hostrt import jsonvalue
from hostrt.capabilities import Capability, allows, covers, is_valid_name, parse_capability
from hostrt.context import MAX_LOG_MESSAGE, ActivationContext, ContextLimits
from hostrt.errors import (
    CapabilityError,
    GrantError,
    HostrtError,
    LifecycleError,
    ManifestError,
    QuotaExceededError,
    SettingsError,
    StorageError,
)
from hostrt.grants import GrantManager
from hostrt.host import Host
from hostrt.lifecycle import PluginState
from hostrt.loader import plugin_source
from hostrt.manifest import MAX_MANIFEST_BYTES, load_manifest, resolve_main
from hostrt.runtimes.base import RuntimeLimits
from hostrt.store import Store

from conftest import cyclic_values

HOSTRT_DIR = str(Path(hostrt.__file__).resolve().parent)

STORAGE = Capability("storage")
SETTINGS_READ = Capability("settings.read")
SETTINGS_WRITE = Capability("settings.write")

FULL = [
    "storage",
    "settings.read",
    "settings.write",
    "events.publish:greeting.*",
    "host.call:getSystems",
]

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "default": "world", "maxLength": 10},
        "count": {"type": "integer", "minimum": 0},
        "flag": {"type": "boolean", "default": False},
    },
    "additionalProperties": False,
}

VICTIM_SECRET = "victim-secret-7f3a"


# --------------------------------------------------------------------------
# the world every attack runs in


def _dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table except the audit log, through a connection
    of its own (so nothing the Store caches can hide a change)."""
    columns = {
        "grants": "plugin_id, capability, granted_by",
        "settings": "plugin_id, key, value_json",
        "kv": "plugin_id, key, value_json, size_bytes",
        "disabled_plugins": "plugin_id, disabled_by",
    }
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT {c} FROM {t} ORDER BY {c}").fetchall() for t, c in columns.items()}
    finally:
        conn.close()


def _rows_not_of(dump: dict[str, list[tuple[Any, ...]]], plugin_id: str) -> dict[str, list[tuple[Any, ...]]]:
    return {t: [r for r in rows if r[0] != plugin_id] for t, rows in dump.items()}


@dataclass
class World:
    tmp: Path
    db: Path
    store: Store
    requests: dict[str, list[str]]
    grants: GrantManager
    victim: ActivationContext
    attacker: ActivationContext

    def ctx(self, plugin_id: str, *, schema: Any = SCHEMA, quota: int = 1024 * 1024) -> ActivationContext:
        return ActivationContext(
            plugin_id=plugin_id,
            plugin_version="1.0.0",
            store=self.store,
            grants=self.grants,
            settings_schema=schema,
            limits=ContextLimits(storage_quota_bytes=quota),
        )

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        return _dump(self.db)

    def revoke_all(self, plugin_id: str) -> None:
        for text in self.grants.list(plugin_id):
            self.store.remove_grant(plugin_id, text)

    def others(self, plugin_id: str = "attacker") -> dict[str, list[tuple[Any, ...]]]:
        return _rows_not_of(self.dump(), plugin_id)

    def assert_clean(self, err: BaseException) -> None:
        """No host path, no traceback and no other plugin's data in an
        error a plugin would see."""
        text = f"{err} {getattr(err, 'message', '')} {err!r}"
        assert str(self.tmp) not in text
        assert HOSTRT_DIR not in text
        assert "Traceback" not in text
        assert VICTIM_SECRET not in text


@pytest.fixture
def world(tmp_path: Path):
    db = tmp_path / "host.db"
    store = Store(db)
    requests = {"attacker": list(FULL), "victim": list(FULL), "victim.evil": list(FULL)}

    def lookup(pid: str):
        if pid not in requests:
            return None
        return tuple(parse_capability(c) for c in requests[pid])

    grants = GrantManager(store, lookup)
    grants.grant_requested("victim", actor="user")
    grants.grant_requested("attacker", actor="user")
    w = World(tmp_path, db, store, requests, grants, None, None)  # type: ignore[arg-type]
    w.victim = w.ctx("victim")
    w.attacker = w.ctx("attacker")
    w.victim.storage_set("secret", {"token": VICTIM_SECRET})
    w.victim.storage_set("a", 1)
    w.victim.settings_set("name", "vic")
    yield w
    store.close()


# --------------------------------------------------------------------------
# hostile objects that record whether host code ever touched them

CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()
    yield
    CALLS.clear()


def _spy(base: type, names: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in names:
        def method(self, *args, __name=name, **kwargs):
            CALLS.append(__name)
            return getattr(base, __name)(self, *args, **kwargs)
        body[name] = method
    return body


SpyStr = type("SpyStr", (str,), _spy(str, ["__eq__", "__hash__", "__str__", "__repr__", "__iter__", "__len__", "encode", "__format__"]))
SpyInt = type("SpyInt", (int,), _spy(int, ["__eq__", "__hash__", "__str__", "__repr__", "__index__", "__int__", "__format__"]))
SpyFloat = type("SpyFloat", (float,), _spy(float, ["__eq__", "__hash__", "__str__", "__repr__", "__float__"]))
SpyDict = type("SpyDict", (dict,), _spy(dict, ["__iter__", "keys", "items", "values", "__getitem__", "__len__", "__eq__", "__contains__"]))
SpyList = type("SpyList", (list,), _spy(list, ["__iter__", "__len__", "__getitem__", "__eq__"]))
SpyTuple = type("SpyTuple", (tuple,), _spy(tuple, ["__iter__", "__len__", "__getitem__", "__eq__", "__hash__"]))


def hostile_values() -> list[Any]:
    return [
        SpyStr("x"),
        SpyInt(7),
        SpyFloat(1.5),
        SpyDict(a=1),
        SpyList([1, 2]),
        SpyTuple((1, 2)),
        {"ok": SpyList([1])},
        [1, {"deep": SpyStr("x")}],
        {SpyStr("key"): 1},
        object(),
        b"bytes",
        bytearray(b"x"),
        {1, 2},
        frozenset(),
        1 + 2j,
        range(3),
        type,
        print,
        Path("/etc/passwd"),
        float("nan"),
        float("inf"),
        float("-inf"),
        {"n": [float("nan")]},
        {1: "int key"},
        {None: 1},
        {(1, 2): 1},
        {True: 1},
    ]


# ==========================================================================
# 1. storage: another plugin's rows through any key or prefix shape

HOSTILE_KEYS = [
    "../victim/secret",
    "victim/secret",
    "victim:secret",
    "victim\\secret",
    "victim\x00secret",
    "secret\x00",
    "secret\n",
    "secret\r\n",
    "\nsecret",
    " secret",
    "secret ",
    "secret\t",
    "\u0455ecret",  # Cyrillic dze, looks like 's'
    "\uff53ecret",  # fullwidth s
    "secret\u200b",  # zero-width space
    "s\u0301ecret",  # combining accent
    "SECRET\u212a",  # Kelvin sign: casefolds to 'k'
    "\u0661",  # Arabic-Indic digit one
    "x" * 101,
    "x" * 100_000,
    "",
    "%",
    "_",
    "*",
    "secret%",
    "sec_et",  # '_' is a LIKE wildcard; must only ever be literal
    "'; DROP TABLE kv; --",
    "secret' OR '1'='1",
    "\ud800",
    None,
    5,
    5.0,
    True,
    b"secret",
    ["secret"],
    ("secret",),
    {"key": "secret"},
    SpyStr("secret"),
]


#: Keys in HOSTILE_KEYS that are well formed: they may only ever reach the
#: attacker's own rows (``_`` is a LIKE wildcard, so it must stay literal).
LEGAL_KEYS = {"_", "sec_et"}


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=repr)
@pytest.mark.parametrize("op", ["get", "set", "delete", "keys"])
def test_hostile_storage_keys_are_refused_and_touch_nothing(world, key, op):
    before = world.dump()
    call = {
        "get": lambda: world.attacker.storage_get(key),
        "set": lambda: world.attacker.storage_set(key, "pwned"),
        "delete": lambda: world.attacker.storage_delete(key),
        "keys": lambda: world.attacker.storage_keys(key),
    }[op]
    legal = type(key) is str and (key in LEGAL_KEYS or (op == "keys" and key == ""))
    if not legal:
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.code == "E_STORAGE"
        world.assert_clean(info.value)
        assert world.dump() == before
        return
    result = call()
    if op == "set":
        assert world.others() == _rows_not_of(before, "attacker")
        assert world.attacker.storage_get(key) == "pwned"
        assert world.victim.storage_get(key) is None
    else:
        assert result in (None, False, [])
        assert world.dump() == before
    assert world.victim.storage_get("secret") == {"token": VICTIM_SECRET}


def test_prefix_listing_never_crosses_plugins(world):
    world.attacker.storage_set("s", 1)
    # prefixes that would be wildcards in LIKE, or bracket the victim's keys
    for prefix in ["", "s", "se", "secret", "a", ".", "-", "_", "A", "z"]:
        listed = world.attacker.storage_keys(prefix)
        assert set(listed) <= {"s"}
    assert world.victim.storage_keys() == ["a", "secret"]


def test_ids_sharing_a_prefix_share_nothing(world):
    """'victim.evil' (a valid id) starts with 'victim.': nothing keyed by id
    may treat one as inside the other."""
    world.grants.grant_requested("victim.evil")
    evil = world.ctx("victim.evil")
    before = world.dump()
    assert evil.storage_keys() == []
    assert evil.storage_get("secret") is None
    assert evil.settings_all() == {"name": "world", "flag": False}
    evil.storage_set("secret", "mine")
    evil.settings_set("name", "evil")
    assert world.victim.storage_get("secret") == {"token": VICTIM_SECRET}
    assert world.victim.settings_get("name") == "vic"
    world.grants.revoke("victim", "storage")
    assert evil.storage_get("secret") == "mine"  # its own grant, its own rows
    with pytest.raises(CapabilityError):
        world.victim.storage_get("secret")
    after = world.dump()
    for table in ("kv", "settings"):
        assert [r for r in after[table] if r[0] != "victim.evil"] == [r for r in before[table] if r[0] != "victim.evil"]
    assert [r for r in after["grants"] if r[0] == "victim.evil"] == [r for r in before["grants"] if r[0] == "victim.evil"]


def test_store_treats_every_plugin_id_and_key_as_opaque(world):
    """Even below the gate, no key shape reaches another plugin's rows."""
    before = _rows_not_of(world.dump(), "attacker")
    s = world.store
    for key in ["../victim/secret", "victim", "%", "_", "secret", "' OR 1=1 --", "\x00", "a" * 5000]:
        s.kv_set("attacker", key, '"x"', quota_bytes=10**9)
        assert s.kv_get("attacker", key) == '"x"'
    assert s.kv_get("victim", "secret") == json.dumps({"token": VICTIM_SECRET}, separators=(",", ":"))
    assert s.kv_keys("attacker", "secre") == ["secret"]
    assert s.kv_keys("attacker", "victim") == ["victim"]
    # literal prefixes: '%' and '_' are not wildcards
    assert s.kv_keys("attacker", "%") == ["%"]
    assert s.kv_keys("attacker", "_") == ["_"]
    assert s.kv_delete("attacker", "a" * 5000) is True
    for pid in ["victim\x00", "victim ", "VICTIM", "victim%", "victi_", "%"]:
        assert s.kv_get(pid, "secret") is None
        assert s.kv_keys(pid) == []
        assert s.kv_delete(pid, "secret") is False
    assert _rows_not_of(world.dump(), "attacker") == before


# ==========================================================================
# 2. settings: another plugin's settings, schema bypass, type confusion


@pytest.mark.parametrize("key", HOSTILE_KEYS + ["undeclared", "__proto__", "constructor"], ids=repr)
@pytest.mark.parametrize("op", ["get", "set"])
def test_hostile_setting_names_are_refused(world, key, op):
    before = world.dump()
    with pytest.raises(SettingsError) as info:
        if op == "get":
            world.attacker.settings_get(key)
        else:
            world.attacker.settings_set(key, "pwned")
    assert info.value.code == "E_SETTINGS"
    world.assert_clean(info.value)
    assert world.dump() == before


@pytest.mark.parametrize(
    "key, value",
    [
        ("count", True),  # bool is not an integer
        ("count", False),
        ("count", "1"),
        ("count", 1.5),
        ("count", None),
        ("count", -1),
        ("count", [1]),
        ("count", {"$numberInt": "1"}),
        ("count", float("nan")),
        ("count", float("inf")),
        ("name", 1),
        ("name", None),
        ("name", ["vic"]),
        ("name", "x" * 11),
        ("name", SpyStr("ok")),
        ("flag", 0),
        ("flag", 1),
        ("flag", "true"),
        ("count", SpyInt(1)),
        ("flag", SpyInt(1)),
    ],
    ids=repr,
)
def test_settings_type_confusion_is_refused(world, key, value):
    CALLS.clear()
    before = world.dump()
    with pytest.raises(SettingsError) as info:
        world.attacker.settings_set(key, value)
    assert info.value.code == "E_SETTINGS"
    world.assert_clean(info.value)
    assert world.dump() == before
    assert CALLS == []


def test_settings_defaults_and_results_are_fresh_copies(world):
    got = world.attacker.settings_all()
    assert got == {"name": "world", "flag": False}
    got["name"] = "mutated"
    got["count"] = -5
    assert world.attacker.settings_all() == {"name": "world", "flag": False}
    world.attacker.settings_set("count", 3)
    got = world.attacker.settings_all()
    got["count"] = -1
    assert world.attacker.settings_get("count") == 3
    # the victim's settings are its own
    assert world.victim.settings_all() == {"name": "vic", "flag": False}


def test_settings_values_are_copied_not_shared(world):
    schema = {"type": "object", "properties": {"list": {"type": "array", "maxItems": 2}}}
    ctx = world.ctx("attacker", schema=schema)
    value = [1, 2]
    ctx.settings_set("list", value)
    value.extend([3, 4, 5])  # mutated after passing the check
    assert ctx.settings_get("list") == [1, 2]
    assert world.store.settings_get_all("attacker")["list"] == [1, 2]


def test_settings_read_and_write_are_separate_and_revocable(world):
    before = world.others()
    world.grants.revoke("attacker", "settings.write", actor="user")
    with pytest.raises(CapabilityError) as info:
        world.attacker.settings_set("name", "x")
    assert info.value.code == "E_CAPABILITY" and info.value.plugin_id == "attacker"
    world.assert_clean(info.value)
    assert world.attacker.settings_get("name") == "world"
    world.grants.revoke("attacker", "settings.read", actor="user")
    for call in (lambda: world.attacker.settings_get("name"), world.attacker.settings_all):
        with pytest.raises(CapabilityError):
            call()
    assert world.others() == before
    assert world.store.settings_get_all("attacker") == {}


@pytest.mark.parametrize("value", ["\ud800", ["ok", "\udfff"], {"\udc00": 1}], ids=repr)
def test_settings_with_lone_surrogates_are_refused_as_settings_errors(world, value):
    schema = {"type": "object", "properties": {"blob": {}}}
    ctx = world.ctx("attacker", schema=schema)
    before = world.dump()
    with pytest.raises(SettingsError):
        ctx.settings_set("blob", value)
    assert world.dump() == before


def test_storage_with_lone_surrogates_is_refused(world):
    before = world.dump()
    for value in ["\ud800", ["\udfff"], {"\udc00": 1}]:
        with pytest.raises(StorageError) as info:
            world.attacker.storage_set("k", value)
        world.assert_clean(info.value)
    assert world.dump() == before


def test_plugin_without_declared_settings_cannot_write_any(world):
    ctx = world.ctx("attacker", schema=None)
    before = world.dump()
    with pytest.raises(SettingsError):
        ctx.settings_set("anything", {"free": "storage"})
    assert world.dump() == before


def test_settings_cannot_be_used_to_bypass_the_storage_quota(world):
    schema = {"type": "object", "properties": {"blob": {"type": "string"}}}
    ctx = world.ctx("attacker", schema=schema, quota=64 * 1024)
    before = world.dump()
    with pytest.raises(HostrtError):
        ctx.settings_set("blob", "x" * (4 * 1024 * 1024))
    assert world.dump() == before


def test_settings_ref_cannot_read_host_files(world):
    secret = world.tmp / "outside" / "host-secret.json"
    secret.parent.mkdir()
    secret.write_text(json.dumps({"const": "TOPSECRET-host-file"}))
    schema = {"type": "object", "properties": {"x": {"$ref": secret.as_uri()}}}
    try:
        ctx = world.ctx("attacker", schema=schema)
    except HostrtError:
        return  # refused up front: fine
    before = world.dump()
    with pytest.raises(HostrtError) as info:
        ctx.settings_set("x", "guess")
    assert "TOPSECRET" not in str(info.value)
    assert str(world.tmp) not in str(info.value)
    assert world.dump() == before


SLOW_SCHEMAS = {
    # catastrophic backtracking in the plugin's own regex; re holds the GIL
    "pattern": ({"type": "string", "pattern": "^(a+)+$"}, "a" * 26 + "b"),
    # jsonschema compares unhashable items pairwise: 1500 small objects, ~1M deep comparisons
    "uniqueItems": ({"type": "array", "uniqueItems": True}, [{"a": i} for i in range(1500)]),
}


@pytest.mark.parametrize("kind", list(SLOW_SCHEMAS))
def test_settings_validation_is_bounded_in_time(world, kind):
    prop, value = SLOW_SCHEMAS[kind]
    schema = {"type": "object", "properties": {"x": prop}}
    before = world.dump()
    started = time.perf_counter()
    try:
        ctx = world.ctx("attacker", schema=schema)
        ctx.settings_set("x", value)
    except HostrtError:
        pass
    assert time.perf_counter() - started < 0.25
    if kind == "pattern":
        assert world.dump() == before


UNEVALUABLE_SCHEMAS = {
    "self-ref": {"type": "object", "$defs": {"a": {"$ref": "#/$defs/a"}}, "properties": {"x": {"$ref": "#/$defs/a"}}},
    "dangling-ref": {"type": "object", "properties": {"x": {"$ref": "#/$defs/nowhere"}}},
    "dynamic-ref": {"type": "object", "properties": {"x": {"$dynamicRef": "#nothing"}}},
}


@pytest.mark.parametrize("kind", list(UNEVALUABLE_SCHEMAS))
def test_settings_schemas_that_cannot_be_evaluated_fail_cleanly(world, tmp_path, kind):
    schema = UNEVALUABLE_SCHEMAS[kind]
    folder = make_plugin(tmp_path / "plugins", "evil", manifest(settings=schema))
    try:
        load_manifest(folder)
    except ManifestError:
        return  # refused up front: fine
    before = world.dump()
    with pytest.raises(SettingsError) as info:
        world.ctx("attacker", schema=schema).settings_set("x", 1)
    world.assert_clean(info.value)
    assert world.dump() == before


# ==========================================================================
# 3. the JSON value rule: hostile values crossing into the host


@pytest.mark.parametrize("value", hostile_values(), ids=lambda v: type(v).__name__)
def test_hostile_values_are_refused_without_running_their_code(world, value):
    CALLS.clear()
    before = world.dump()
    with pytest.raises(StorageError) as info:
        world.attacker.storage_set("k", value)
    assert info.value.code == "E_STORAGE"
    with pytest.raises(StorageError):
        world.attacker.storage_get("missing", value)  # as a default, too
    with pytest.raises(HostrtError):
        world.attacker.log("info", "m", {"f": value})
    ctx = world.ctx("attacker", schema={"type": "object", "properties": {"v": {}}})
    with pytest.raises(SettingsError):
        ctx.settings_set("v", value)
    world.assert_clean(info.value)
    assert CALLS == [], f"host code called the plugin's overrides: {CALLS}"
    assert world.dump() == before


def test_bool_and_int_keep_their_types(world):
    world.attacker.storage_set("b", True)
    world.attacker.storage_set("i", 1)
    world.attacker.storage_set("z", 0)
    world.attacker.storage_set("f", False)
    world.attacker.storage_set("big", 2**64)
    world.attacker.storage_set("neg0", -0.0)
    assert type(world.attacker.storage_get("b")) is bool
    assert type(world.attacker.storage_get("i")) is int
    assert world.attacker.storage_get("f") is False and world.attacker.storage_get("z") == 0
    assert type(world.attacker.storage_get("z")) is int
    assert world.attacker.storage_get("big") == 2**64
    assert math.copysign(1, world.attacker.storage_get("neg0")) == -1


@pytest.mark.parametrize("site", ["storage_set", "storage_default", "settings_set", "log_fields"])
def test_huge_ints_are_refused_with_the_documented_error(world, site):
    huge = 10**5000
    before = world.dump()
    ctx = world.ctx("attacker", schema={"type": "object", "properties": {"n": {"type": "integer"}}})
    call = {
        "storage_set": lambda: ctx.storage_set("k", huge),
        "storage_default": lambda: ctx.storage_get("missing", huge),
        "settings_set": lambda: ctx.settings_set("n", huge),
        "log_fields": lambda: ctx.log("info", "m", {"n": huge}),
    }[site]
    with pytest.raises(HostrtError):
        call()
    assert world.dump() == before


def test_cyclic_values_are_refused(world):
    before = world.dump()
    for value, _path in cyclic_values():
        with pytest.raises(StorageError, match="contains itself"):
            world.attacker.storage_set("k", value)
    assert world.dump() == before


@pytest.mark.parametrize("depth", [65, 1000, 200_000])
def test_deep_values_are_refused_without_recursion_errors(world, depth):
    before = world.dump()
    lst: Any = 1
    dct: Any = 1
    for _ in range(depth):
        lst = [lst]
        dct = {"k": dct}
    for value in (lst, dct):
        with pytest.raises(StorageError, match="deeper than"):
            world.attacker.storage_set("k", value)
        with pytest.raises(HostrtError):
            world.attacker.log("info", "m", {"v": value})
    assert world.dump() == before


def test_values_mutated_after_storing_do_not_change_the_store(world):
    value = {"list": [1, 2], "nested": {"a": "b"}}
    world.attacker.storage_set("k", value)
    value["list"].append(3)
    value["nested"]["a"] = "changed"
    value["new"] = True
    assert world.attacker.storage_get("k") == {"list": [1, 2], "nested": {"a": "b"}}
    got = world.attacker.storage_get("k")
    got["list"].append(99)
    assert world.attacker.storage_get("k") == {"list": [1, 2], "nested": {"a": "b"}}
    default = {"d": [1]}
    got = world.attacker.storage_get("missing", default)
    got["d"].append(2)
    assert default == {"d": [1]}


def test_shared_references_do_not_cost_exponential_host_work(world, monkeypatch):
    calls = 0
    real = jsonvalue._check

    class Runaway(Exception):
        pass

    def counting(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > 200_000:
            raise Runaway(f"host walked {calls} nodes for a value of 41 objects")
        return real(*args)

    monkeypatch.setattr(jsonvalue, "_check", counting)
    value: Any = [1]
    for _ in range(40):
        value = [value, value]
    before = world.dump()
    with pytest.raises(StorageError):
        world.attacker.storage_set("k", value)
    assert world.dump() == before


def _amplify_breadth() -> Any:
    blob = "x" * 10_000
    return [blob] * 1_000  # 10 KB of plugin memory, 10 MB of JSON


def _amplify_keys() -> Any:
    key = "k" * 20_000
    value: Any = 1
    for _ in range(60):
        value = {key: value}  # each error path repeats every key above it
    return value


@pytest.mark.parametrize("build", [_amplify_breadth, _amplify_keys], ids=["shared-strings", "long-keys"])
def test_host_memory_is_bounded_by_the_quota_not_by_shared_references(world, build):
    ctx = world.ctx("attacker", quota=64 * 1024)
    value = build()
    before = world.dump()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(StorageError):
            ctx.storage_set("k", value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert world.dump() == before
    assert peak < 4 * 1024 * 1024, f"host peaked at {peak} bytes for a 64 KiB quota"


# ==========================================================================
# 4. quota: edges and races


def test_quota_counts_keys_and_utf8_bytes_and_leaves_nothing_on_failure(world):
    ctx = world.ctx("attacker", quota=100)
    ctx.storage_set("k", "\u00e9" * 40)  # 1 + 82 bytes
    assert world.store.kv_usage("attacker") == 83
    with pytest.raises(QuotaExceededError) as info:
        ctx.storage_set("k2", "\u00e9" * 8)  # 2 + 18 bytes: 103 > 100
    assert info.value.code == "E_QUOTA"
    world.assert_clean(info.value)
    assert ctx.storage_keys() == ["k"]
    # a replacement may land exactly on the quota, not one byte beyond
    ctx.storage_set("k", "x" * 96)  # 1 + 98 + ... = 99
    with pytest.raises(QuotaExceededError):
        ctx.storage_set("k", "x" * 98)  # 1 + 100 = 101
    assert ctx.storage_get("k") == "x" * 96
    ctx.storage_set("k", "x" * 97)  # exactly 100
    assert world.store.kv_usage("attacker") == 100
    # many tiny keys cost their names
    ctx.storage_delete("k")
    written = 0
    with pytest.raises(QuotaExceededError):
        for i in range(1000):
            ctx.storage_set(f"key{i:04d}", 0)
            written += 1
    assert world.store.kv_usage("attacker") <= 100 and written == 12
    assert world.victim.storage_get("secret") == {"token": VICTIM_SECRET}


def test_quota_zero_refuses_every_write(world):
    ctx = world.ctx("attacker", quota=0)
    with pytest.raises(QuotaExceededError):
        ctx.storage_set("k", None)
    assert world.store.kv_keys("attacker") == []


def test_concurrent_writers_cannot_overshoot_the_quota_together(world):
    quota = 2000
    # one connection shared by threads, plus a second connection to the same
    # file (another process sharing the database)
    second = Store(world.db)
    second_grants = GrantManager(second, lambda pid: tuple(parse_capability(c) for c in FULL))
    contexts = [
        world.ctx("attacker", quota=quota),
        ActivationContext(plugin_id="attacker", plugin_version="1.0.0", store=second,
                          grants=second_grants, limits=ContextLimits(storage_quota_bytes=quota)),
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        ctx = contexts[n % 2]
        barrier.wait()
        for i in range(40):
            try:
                ctx.storage_set(f"w{n}-{i}", "y" * 90)
            except QuotaExceededError:
                pass
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    second.close()
    assert errors == []
    assert world.store.kv_usage("attacker") <= quota
    assert world.store.kv_usage("attacker") > quota - 200  # it did fill up
    assert world.victim.storage_get("secret") == {"token": VICTIM_SECRET}


# ==========================================================================
# 5. identity: nothing a plugin passes changes whom the gate acts for


def test_nothing_passed_in_changes_which_plugin_the_gate_acts_as(world, caplog):
    before = world.others()
    info = world.attacker.plugin_info()
    info["id"] = "victim"
    assert world.attacker.plugin_info() == {"id": "attacker", "version": "1.0.0"}
    assert world.attacker.plugin_id == "attacker"
    forged = {"plugin_id": "victim", "pluginId": "victim", "id": "victim", "__plugin__": "victim"}
    world.attacker.storage_set("secret", forged)
    world.attacker.storage_set("victim", forged)
    world.attacker.storage_set("victim.secret", forged)
    caplog.set_level(logging.DEBUG)
    world.attacker.log("info", "plugin_id=victim", forged)
    world.attacker.log("error", "hello", {"plugin_id": "victim", "name": "hostrt.plugins.victim", "levelno": 0})
    records = [r for r in caplog.records if getattr(r, "plugin_id", None) is not None]
    assert records and all(r.plugin_id == "attacker" for r in records)
    assert all(r.name == "hostrt.plugins.attacker" for r in records)
    assert records[1].levelno == logging.ERROR
    assert world.victim.storage_get("secret") == {"token": VICTIM_SECRET}
    assert world.others() == before


def test_a_context_for_an_unknown_plugin_can_do_nothing(world):
    before = world.dump()
    ghost = world.ctx("ghost-plugin")
    for call in (
        lambda: ghost.storage_get("secret"),
        lambda: ghost.storage_set("secret", 1),
        lambda: ghost.storage_keys(),
        lambda: ghost.settings_all(),
        lambda: ghost.settings_set("name", "x"),
    ):
        with pytest.raises(CapabilityError) as info:
            call()
        assert info.value.plugin_id == "ghost-plugin"
        world.assert_clean(info.value)
    assert world.dump() == before
    # stale grant rows for a plugin that is no longer installed are not honoured
    world.store.add_grant("ghost-plugin", "storage")
    with pytest.raises(CapabilityError):
        ghost.storage_get("secret")


def test_a_closed_context_stays_closed_even_after_regranting(world):
    world.attacker.close()
    world.grants.grant_requested("attacker")
    before = world.dump()
    for call in (
        lambda: world.attacker.storage_get("k"),
        lambda: world.attacker.storage_set("k", 1),
        lambda: world.attacker.settings_set("name", "x"),
        lambda: world.attacker.log("info", "late"),
        lambda: world.attacker.add_disposer(lambda: None),
    ):
        with pytest.raises(LifecycleError) as info:
            call()
        assert info.value.code == "E_STATE"
    assert world.dump() == before


def test_revocation_from_another_connection_bites_on_the_next_call(world):
    world.attacker.storage_set("k", 1)
    cli = Store(world.db)  # e.g. `hostrt revoke` in another process
    try:
        cli.remove_grant("attacker", "storage", actor="cli")
    finally:
        cli.close()
    with pytest.raises(CapabilityError):
        world.attacker.storage_get("k")
    with pytest.raises(CapabilityError):
        world.attacker.storage_set("k", 2)
    assert world.store.kv_get("attacker", "k") == "1"


@pytest.mark.parametrize("kind", ["repr-raises", "deep-list"])
@pytest.mark.parametrize("op", ["storage_get", "storage_set", "storage_delete", "storage_keys", "settings_get", "settings_set"])
def test_refusing_a_bad_key_never_runs_plugin_code_or_crashes(world, kind, op):
    class Evil(str):
        def __repr__(self):
            CALLS.append("__repr__")
            raise RuntimeError("plugin code ran inside the host")

    if kind == "repr-raises":
        key: Any = Evil("name")
    else:
        key = []
        for _ in range(200_000):
            key = [key]
    before = world.dump()
    call = {
        "storage_get": lambda: world.attacker.storage_get(key),
        "storage_set": lambda: world.attacker.storage_set(key, 1),
        "storage_delete": lambda: world.attacker.storage_delete(key),
        "storage_keys": lambda: world.attacker.storage_keys(key),
        "settings_get": lambda: world.attacker.settings_get(key),
        "settings_set": lambda: world.attacker.settings_set(key, "x"),
    }[op]
    with pytest.raises((StorageError, SettingsError)):
        call()
    assert CALLS == []
    assert world.dump() == before


# ==========================================================================
# 6. capabilities and grants: scope tricks, patterns, versions


GRANT_TRICKS = [
    "events.publish:*",
    "events.publish:**",
    "events.publish:greet*",
    "events.publish:greeting*",
    "events.publish:*.*",
    "events.publish:*greeting.*",
    "events.publish:*.greeting.*",
    "events.publish:GREETING.*",
    "events.publish:Greeting.*",
    "events.publish:greeting.*\n",
    "events.publish:greeting.*\r",
    "events.publish:greeting.* ",
    " events.publish:greeting.*",
    "events.publish: greeting.*",
    "events.publish:greeting.*\x00",
    "events.publish:greeting.*:x",
    "events.publish:greeting:*",
    "events.publish:greeting.\u0661",
    "events.publish:\uff47reeting.*",
    "events.publish:greeting.*\u200b",
    "events.publish:greeting..*",
    "events.publish:greeting.?",
    "events.publish:greeting.[a-z]",
    "events.publish:greeting.(.*)",
    "events.publish:greeting.+",
    "events.publish:greeting\\.*",
    "events.publish:.*",
    "events.subscribe:greeting.*",
    "events.publish",
    "events.publish:",
    "Events.publish:greeting.*",
    "events.publish\n:greeting.*",
    "host.call:*",
    "host.call:getSystems*",
    "host.call:getSystem*",
    "host.call:*Systems",
    "host.call:getsystems",
    "host.call:getSystems.*",
    "host.call:getSystems\n",
    "storage:*",
    "storage\n",
    "storage ",
    "STORAGE",
    "settings.*",
    "settings",
    "settings.read:x",
    "*",
    "",
    "network",
    "fs.read:*",
]


@pytest.mark.parametrize("capability", GRANT_TRICKS, ids=repr)
def test_grants_beyond_the_request_are_refused(world, capability):
    world.requests["attacker"] = ["events.publish:greeting.*", "host.call:getSystems"]
    before = world.dump()
    audits = world.store.audit_count(action="grant")
    with pytest.raises(GrantError) as info:
        world.grants.grant("attacker", capability)
    assert info.value.code == "E_GRANT"
    assert world.dump() == before
    assert world.store.audit_count(action="grant") == audits


@pytest.mark.parametrize(
    "narrower",
    ["events.publish:greeting.sent", "events.publish:greeting.x*", "events.publish:greeting.*.b", "events.publish:greeting.**"],
)
def test_grants_inside_the_request_are_fine_and_still_bounded(world, narrower):
    world.requests["attacker"] = ["events.publish:greeting.*"]
    world.revoke_all("attacker")
    assert world.grants.grant("attacker", narrower) is True
    assert world.grants.is_allowed("attacker", parse_capability("events.publish:greeting.x")) is covers(
        parse_capability(narrower), parse_capability("events.publish:greeting.x"))
    for outside in ("events.publish:greetings", "events.publish:greeting", "events.publish:other.greeting.x",
                    "events.publish:xgreeting.a", "events.subscribe:greeting.sent"):
        assert not world.grants.is_allowed("attacker", parse_capability(outside))


def test_stored_grants_outside_the_request_are_never_honoured(world):
    """Rows written by a tampered CLI, an older hostrt or a previous version."""
    world.requests["attacker"] = ["events.publish:greeting.*"]
    world.revoke_all("attacker")
    for text in ["events.publish:*", "events.publish:greet*", "storage", "host.call:*",
                 "storage\n", "events.publish:greeting.*\n", "STORAGE", "events.publish:greeting.*:x",
                 "events.publish:", "settings.write", "nonsense", "events.publish:greeting.[a]"]:
        world.store.add_grant("attacker", text, actor="tampered")
    for needed in ["events.publish:anything", "events.publish:greetings", "host.call:getSystems"]:
        assert not world.grants.is_allowed("attacker", parse_capability(needed))
    for cap in (STORAGE, SETTINGS_READ, SETTINGS_WRITE):
        assert not world.grants.is_allowed("attacker", cap)
    assert [str(c) for c in world.grants.effective("attacker")] == []
    with pytest.raises(CapabilityError):
        world.attacker.storage_get("k")


def test_pattern_requests_need_a_grant_covering_every_expansion(world):
    world.requests["attacker"] = ["events.subscribe:*"]
    world.revoke_all("attacker")
    world.grants.grant("attacker", "events.subscribe:greeting.*")
    assert world.grants.is_allowed("attacker", parse_capability("events.subscribe:greeting.sent"))
    for pattern in ["events.subscribe:*", "events.subscribe:greeting*", "events.subscribe:*.sent",
                    "events.subscribe:greeting.*.*x*", "events.subscribe:*greeting.a"]:
        cap = parse_capability(pattern)
        expected = pattern in ("events.subscribe:greeting.*.*x*",)
        assert world.grants.is_allowed("attacker", cap) is expected, pattern
    assert world.grants.missing("attacker") == ["events.subscribe:*"]


@pytest.mark.parametrize(
    "outer, inner",
    [
        ("a.*", "*"),
        ("a.*", "a*"),
        ("*.a", "*a"),
        ("a*b", "a*"),
        ("*a*", "*"),
        ("a.*.b", "a.*"),
        ("*.*", "*"),
        ("a*a", "a"),
        ("ab*", "a*b"),
    ],
)
def test_covers_never_claims_a_wider_pattern_is_inside(outer, inner):
    assert not covers(Capability("host.call", outer), Capability("host.call", inner))


@pytest.mark.parametrize(
    "scope",
    ["a\n", "a\r", "a\x00", "a b", "a:b", "a/b", "a\\b", "\u0661", "\uff41", "a\u200b", "\u212a",
     "a..b", ".a", "a.", "a?", "[a]", "a+", "(a)", "a|b", "^a", "a$", "a{2}", "%", "", "*" * 129],
    ids=repr,
)
def test_scope_syntax_is_strict(scope):
    for name in ("events.publish", "events.subscribe", "host.call"):
        with pytest.raises(ValueError):
            parse_capability(f"{name}:{scope}")
    assert not is_valid_name(scope)


def test_scope_regex_metacharacters_are_literal():
    cap = parse_capability
    assert not allows(cap("host.call:a.b"), cap("host.call:aXb"))
    assert not allows(cap("host.call:a-b"), cap("host.call:a_b"))
    assert not allows(cap("host.call:a.*"), cap("host.call:a"))
    assert not allows(cap("host.call:get"), cap("host.call:Get"))
    assert allows(cap("host.call:*"), cap("host.call:a.b.c"))


@pytest.mark.parametrize("scope", ["greeting.x\nINJECTED", "greeting.\x00", "greeting.\u00e9", "greeting.a b", "greeting.a/../b"], ids=repr)
def test_allows_refuses_requests_that_are_not_valid_scopes(world, scope):
    world.requests["attacker"] = ["events.publish:greeting.*"]
    world.revoke_all("attacker")
    world.grants.grant("attacker", "events.publish:greeting.*")
    assert not allows(parse_capability("events.publish:greeting.*"), Capability("events.publish", scope))
    assert not world.grants.is_allowed("attacker", Capability("events.publish", scope))


def test_capability_parsing_only_trusts_exact_strings():
    class Lying(str):
        def partition(self, sep):
            return ("storage", "", "")

    text = Lying("host.call:*")
    try:
        parsed = parse_capability(text)
    except ValueError:
        return
    assert str(parsed) == str.__str__(text)


def test_new_versions_do_not_inherit_grants(world):
    world.requests["attacker"] = ["storage", "events.publish:greeting.sent", "host.call:getSystems"]
    world.grants.revoke("attacker", "settings.read")
    world.grants.revoke("attacker", "settings.write")
    world.grants.revoke("attacker", "events.publish:greeting.*")
    world.grants.grant("attacker", "events.publish:greeting.sent")
    # version 2 asks for more, and for broader patterns
    world.requests["attacker"] = ["storage", "settings.write", "events.publish:*", "host.call:*"]
    v2 = world.ctx("attacker")
    before = world.dump()
    with pytest.raises(CapabilityError) as info:
        v2.settings_set("name", "x")
    assert info.value.capability == "settings.write"
    assert not world.grants.is_allowed("attacker", parse_capability("events.publish:other"))
    assert not world.grants.is_allowed("attacker", parse_capability("host.call:getSecrets"))
    assert world.grants.is_allowed("attacker", parse_capability("events.publish:greeting.sent"))
    assert world.grants.is_allowed("attacker", parse_capability("host.call:getSystems"))
    assert sorted(world.grants.missing("attacker")) == ["events.publish:*", "host.call:*", "settings.write"]
    # version 3 narrows: the stored grant is kept, but the wider use stops
    world.requests["attacker"] = ["events.publish:greeting.x"]
    assert not world.grants.is_allowed("attacker", parse_capability("events.publish:greeting.sent"))
    with pytest.raises(CapabilityError):
        v2.storage_get("k")
    assert world.dump() == before


def test_denials_and_grant_changes_are_audited_against_the_right_plugin(world):
    world.grants.revoke("attacker", "storage", actor="user")
    for _ in range(3):
        with pytest.raises(CapabilityError):
            world.attacker.storage_get("secret")
    with pytest.raises(GrantError):
        world.grants.grant("attacker", "events.publish:*", actor="evil")
    assert world.grants.grant("attacker", "storage", actor="admin") is True
    log = world.store.audit_log(plugin_id="attacker", limit=10)
    # repeated denials of one capability are coalesced into one entry
    assert [(e.action, e.detail.get("capability"), e.detail.get("actor")) for e in log[:3]] == [
        ("grant", "storage", "admin"),
        ("denied", "storage", None),
        ("revoke", "storage", "user"),
    ]
    assert all(e.plugin_id == "attacker" for e in log)
    assert world.store.audit_count(plugin_id="victim", action="denied") == 0
    assert world.store.audit_count(action="grant", plugin_id="attacker") == len(FULL) + 1
    # the refused grant left no row and no "grant" entry naming the bad actor
    assert all(e.detail.get("actor") != "evil" for e in world.store.audit_log(limit=1000))


# ==========================================================================
# 7. logging


@pytest.fixture
def captured():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    root = logging.getLogger("hostrt.plugins")
    old = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield records
    root.removeHandler(handler)
    root.setLevel(old)


@pytest.mark.parametrize(
    "message", [None, 5, b"bytes", ["m"], {"m": 1}, SpyStr("m")], ids=lambda v: type(v).__name__
)
def test_log_messages_must_be_plain_strings(world, captured, message):
    with pytest.raises(HostrtError) as info:
        world.attacker.log("info", message)
    world.assert_clean(info.value)
    assert captured == []
    assert CALLS == []


def test_log_messages_are_not_format_strings_and_are_cut(world, captured):
    world.attacker.log("info", "%s %(asctime)s %d {0} {plugin_id}")
    world.attacker.log("info", "y" * 1_000_000)
    assert captured[0].getMessage() == "%s %(asctime)s %d {0} {plugin_id}"
    assert len(captured[1].getMessage()) < MAX_LOG_MESSAGE + 100
    assert all(r.plugin_id == "attacker" for r in captured)


@pytest.mark.parametrize(
    "message",
    [
        "ok\n2024-01-01 ERROR hostrt.host plugin victim granted everything",
        "ok\rERROR forged",
        "ok\u2028ERROR forged",
        "ok\x1b[2J\x1b[31mERROR forged",
        "ok\x00hidden",
        "ok\ud800",
    ],
    ids=["LF", "CR", "LINE-SEPARATOR", "ANSI", "NUL", "surrogate"],
)
def test_log_lines_cannot_be_forged(world, captured, message):
    world.attacker.log("info", message)
    assert len(captured) == 1
    text = logging.Formatter("%(levelname)s %(name)s %(message)s").format(captured[0])
    assert len(text.splitlines()) == 1
    assert all(c == "\t" or c.isprintable() or c == " " for c in text)
    text.encode("utf-8")


def test_log_fields_cannot_flood_the_host(world, captured):
    try:
        world.attacker.log("info", "m", {"blob": "y" * 2_000_000, "list": list(range(100_000))})
    except HostrtError:
        return
    assert len(json.dumps(captured[0].plugin_fields)) <= 64 * 1024


@pytest.mark.parametrize("kind", ["list", "dict", "lying-str"])
def test_log_levels_must_be_plain_strings(world, captured, kind):
    class Lying(str):
        def __eq__(self, other):
            CALLS.append("__eq__")
            return True

        def __hash__(self):
            CALLS.append("__hash__")
            return hash("info")

    level = {"list": ["info"], "dict": {"info": 1}, "lying-str": Lying("nonsense")}[kind]
    with pytest.raises(HostrtError):
        world.attacker.log(level, "m")
    assert captured == [] and CALLS == []


@pytest.mark.parametrize("fields", [[1, 2], "s", 5, True], ids=repr)
def test_log_fields_must_be_an_object(world, captured, fields):
    with pytest.raises(HostrtError):
        world.attacker.log("info", "m", fields)
    assert captured == []


def test_a_plugin_cannot_log_into_another_plugins_logger(world):
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    victim_logger = logging.getLogger("hostrt.plugins.victim")
    handler = Keep(logging.DEBUG)
    victim_logger.addHandler(handler)
    victim_logger.setLevel(logging.DEBUG)
    try:
        world.ctx("victim.evil").log("error", "victim: license revoked, enter your password")
    finally:
        victim_logger.removeHandler(handler)
        victim_logger.setLevel(logging.NOTSET)
    assert seen == []


# ==========================================================================
# 8. the manifest loader


def manifest(plugin_id: str = "evil-plugin", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schemaVersion": 1,
        "id": plugin_id,
        "name": "Evil",
        "version": "1.0.0",
        "runtime": "python",
        "capabilities": ["storage"],
    }
    data.update(overrides)
    return data


def make_plugin(root: Path, folder: str, data: dict[str, Any] | None = None, *, raw: str | bytes | None = None,
                source: bool = True) -> Path:
    path = root / folder
    path.mkdir(parents=True, exist_ok=True)
    if raw is None:
        raw = json.dumps(data if data is not None else manifest())
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    (path / "plugin.json").write_bytes(raw)
    if source:
        (path / "plugin.py").write_text("def activate(ctx):\n    pass\n")
    return path


def problems(err: ManifestError) -> dict[str, str]:
    """Messages by JSON path (several problems at one path are joined)."""
    found: dict[str, str] = {}
    for p in err.problems:
        found[p.json_path] = f"{found[p.json_path]}\n{p.message}" if p.json_path in found else p.message
    return found


MAIN_TRICKS = [
    "../victim/plugin.py",
    "lib/../../victim/plugin.py",
    "lib/../plugin.py",
    "..",
    "/etc/evil.py",
    "//server/share/evil.py",
    "C:/evil.py",
    "C:evil.py",
    "c:\\evil.py",
    "\\\\server\\share\\evil.py",
    "\\\\?\\C:\\evil.py",
    "lib\\evil.py",
    "plugin.py:stream.py",
    "plugin.py\x00.py",
    "plugin\x00.py",
    "plugin.py\n",
    "plugin\n.py",
    "plugin.py\r.py",
    "./plugin.py",
    "lib/./plugin.py",
    "lib//plugin.py",
    "lib/",
    "",
    "x" * 600 + ".py",
    "plugin.pyc",
    "plugin.py.txt",
    "plugin.PY",
    "plugin.json",
    "plugin.sh",
]


@pytest.mark.parametrize("main", MAIN_TRICKS, ids=repr)
def test_main_syntax_tricks_are_refused(tmp_path, main):
    folder = make_plugin(tmp_path, "evil", manifest(main=main, runtime=None))
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert info.value.code == "E_MANIFEST"
    assert "$.main" in problems(info.value)


@pytest.fixture
def neighbourhood(tmp_path: Path):
    """plugins/victim, plugins/evil and plugins/evil-x (a sibling sharing
    the attacker's name prefix), plus a file outside the plugins folder."""
    plugins = tmp_path / "plugins"
    victim = make_plugin(plugins, "victim", manifest("victim"))
    (victim / "secret.py").write_text(f"SECRET = {VICTIM_SECRET!r}\n")
    evil = make_plugin(plugins, "evil", manifest("evil-plugin"))
    sibling = make_plugin(plugins, "evil-x", manifest("evil-x"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "host.py").write_text("HOST = 1\n")
    (outside / "plugin.json").write_text(json.dumps(manifest("evil-plugin")))
    return plugins, victim, evil, sibling, outside


def _set_main(folder: Path, main: str) -> None:
    (folder / "plugin.json").write_text(json.dumps(manifest("evil-plugin", main=main, runtime=None)))


@pytest.mark.parametrize(
    "layout",
    ["link-to-victim-file", "link-dir-to-victim", "link-to-prefix-sibling", "link-outside",
     "link-dir-outside", "absolute-link", "fifo", "directory", "loop", "missing", "dangling",
     "link-dir-to-root"],
)
def test_main_cannot_escape_the_plugin_folder_on_disk(neighbourhood, layout):
    plugins, victim, evil, sibling, outside = neighbourhood
    if layout == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    if layout == "link-to-victim-file":
        (evil / "main.py").symlink_to(Path("..") / "victim" / "secret.py")
        main = "main.py"
    elif layout == "link-dir-to-victim":
        (evil / "lib").symlink_to(victim, target_is_directory=True)
        main = "lib/secret.py"
    elif layout == "link-to-prefix-sibling":
        (sibling / "x.py").write_text("X = 1\n")
        (evil / "main.py").symlink_to(Path("..") / "evil-x" / "x.py")
        main = "main.py"
    elif layout == "link-outside":
        (evil / "main.py").symlink_to(Path("..") / ".." / "outside" / "host.py")
        main = "main.py"
    elif layout == "link-dir-outside":
        (evil / "lib").symlink_to(outside, target_is_directory=True)
        main = "lib/host.py"
    elif layout == "absolute-link":
        (evil / "main.py").symlink_to(outside / "host.py")
        main = "main.py"
    elif layout == "fifo":
        os.mkfifo(evil / "main.py")
        main = "main.py"
    elif layout == "directory":
        (evil / "main.py").mkdir()
        main = "main.py"
    elif layout == "loop":
        (evil / "main.py").symlink_to("main.py")
        main = "main.py"
    elif layout == "missing":
        main = "nothing.py"
    elif layout == "dangling":
        (evil / "main.py").symlink_to("nothing-here.py")
        main = "main.py"
    else:
        (evil / "lib").symlink_to("/", target_is_directory=True)
        main = "lib/etc/evil.py"
    _set_main(evil, main)
    m = load_manifest(evil)
    with pytest.raises(ManifestError) as info:
        resolve_main(evil, m)
    assert info.value.code == "E_MANIFEST"
    message = problems(info.value)["$.main"]
    # the problem itself never says where the link led
    for leaked in (str(outside), str(victim), str(sibling), VICTIM_SECRET):
        assert leaked not in message
    with pytest.raises(ManifestError):
        plugin_source(evil, m, RuntimeLimits())


def test_main_links_inside_the_folder_and_folder_links_are_fine(neighbourhood, tmp_path):
    plugins, victim, evil, sibling, outside = neighbourhood
    (evil / "src").mkdir()
    (evil / "src" / "real.py").write_text("def activate(ctx): pass\n")
    (evil / "alias").symlink_to("src", target_is_directory=True)
    _set_main(evil, "alias/real.py")
    m = load_manifest(evil)
    assert resolve_main(evil, m) == (evil / "src" / "real.py").resolve()
    linked = tmp_path / "linked-evil"
    linked.symlink_to(evil, target_is_directory=True)
    source = plugin_source(linked, m, RuntimeLimits())
    assert source.main == (evil / "src" / "real.py").resolve()
    assert source.display_file == "linked-evil/src/real.py"
    assert str(tmp_path) not in source.display_file


def test_plugin_source_errors_carry_no_host_path(neighbourhood, tmp_path):
    plugins, victim, evil, sibling, outside = neighbourhood
    (evil / "main.py").symlink_to(outside / "host.py")
    _set_main(evil, "main.py")
    m = load_manifest(evil)
    with pytest.raises(ManifestError) as info:
        plugin_source(evil, m, RuntimeLimits())
    # host-facing: the manifest's own path may appear, where the link points may not
    assert str(outside) not in str(info.value)
    assert str(outside) not in json.dumps(info.value.to_dict())
    assert [p.json_path for p in info.value.problems] == ["$.main"]


@pytest.mark.parametrize("layout", ["link-outside", "link-to-victim", "link-to-prefix-sibling", "directory", "fifo", "loop"])
def test_plugin_json_cannot_be_taken_from_elsewhere(neighbourhood, layout):
    plugins, victim, evil, sibling, outside = neighbourhood
    if layout == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    target = evil / "plugin.json"
    target.unlink()
    if layout == "link-outside":
        target.symlink_to(outside / "plugin.json")
    elif layout == "link-to-victim":
        target.symlink_to(Path("..") / "victim" / "plugin.json")
    elif layout == "link-to-prefix-sibling":
        target.symlink_to(Path("..") / "evil-x" / "plugin.json")
    elif layout == "directory":
        target.mkdir()
    elif layout == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("plugin.json")
    result: list[BaseException] = []

    def load() -> None:
        try:
            load_manifest(evil)
        except BaseException as exc:  # noqa: BLE001
            result.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "loading plugin.json hung"
    assert len(result) == 1 and isinstance(result[0], ManifestError)
    assert "$" in problems(result[0])
    for leaked in (str(outside), str(victim), str(sibling)):
        assert leaked not in problems(result[0])["$"]


def test_plugin_json_linked_inside_its_own_folder_is_fine(tmp_path):
    folder = make_plugin(tmp_path, "p", manifest("linked-plugin"))
    (folder / "real.json").write_text((folder / "plugin.json").read_text())
    (folder / "plugin.json").unlink()
    (folder / "plugin.json").symlink_to("real.json")
    assert load_manifest(folder).id == "linked-plugin"


@pytest.mark.parametrize(
    "raw, where",
    [
        ('{"schemaVersion": 1, "id": "evil-plugin", "id": "victim", "name": "E", "version": "1.0.0", "runtime": "python"}', "$.id"),
        ('{"schemaVersion": 1, "id": "evil-plugin", "name": "E", "version": "1.0.0", "runtime": "python",'
         ' "capabilities": [], "capabilities": ["storage", "host.call:*"]}', "$.capabilities"),
        ('{"schemaVersion": 1, "id": "evil-plugin", "name": "E", "version": "1.0.0", "runtime": "python",'
         ' "settings": {"type": "object", "additionalProperties": false, "additionalProperties": true}}',
         "$.settings.additionalProperties"),
        ('{"schemaVersion": 1, "id": "evil-plugin", "name": "E", "version": "1.0.0", "runtime": "python", "main": "a.py", "main": "../x.py"}', "$.main"),
    ],
)
def test_duplicate_keys_never_resolve_silently(tmp_path, raw, where):
    folder = make_plugin(tmp_path, "evil", raw=raw)
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert where in problems(info.value)
    assert "duplicate key" in problems(info.value)[where]


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000],
    ids=["arrays", "objects"],
)
def test_deeply_nested_manifests_are_refused(tmp_path, raw):
    folder = make_plugin(tmp_path, "evil", raw=raw)
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert info.value.code == "E_MANIFEST"


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_just_past_the_limit_is_refused(tmp_path):
    data = manifest(settings={"type": "object", "properties": {"x": {"default": _nest(70)}}})
    folder = make_plugin(tmp_path, "evil", data)
    with pytest.raises(ManifestError, match="nested more than"):
        load_manifest(folder)


@pytest.mark.parametrize(
    "raw",
    [
        b" " * (MAX_MANIFEST_BYTES + 1),
        json.dumps(manifest(description="x" * 900)).encode() + b" " * MAX_MANIFEST_BYTES,
        b"\xff\xfe" + json.dumps(manifest()).encode("utf-16-le"),
        json.dumps(manifest()).encode("utf-16"),
        b'{"schemaVersion": 1, "id": "evil-plugin", "name": "\xff", "version": "1.0.0", "runtime": "python"}',
        b"",
        b"null",
        b"[]",
        b'"plugin"',
        b"// comment\n{}",
        b'{"schemaVersion": 1,}',
        json.dumps(manifest()).encode() + b" {}",
    ],
    ids=["too-big-blank", "too-big-padded", "utf16-bom", "utf16", "bad-utf8", "empty", "null", "array",
         "string", "comment", "trailing-comma", "two-documents"],
)
def test_malformed_manifest_files_are_refused(tmp_path, raw):
    folder = make_plugin(tmp_path, "evil", raw=raw)
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert info.value.code == "E_MANIFEST"


def test_a_manifest_exactly_at_the_size_limit_is_read(tmp_path):
    text = json.dumps(manifest("big-plugin"))
    raw = text.encode() + b" " * (MAX_MANIFEST_BYTES - len(text.encode()))
    assert len(raw) == MAX_MANIFEST_BYTES
    folder = make_plugin(tmp_path, "big", raw=raw)
    assert load_manifest(folder).id == "big-plugin"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_are_refused(tmp_path, constant):
    raw = json.dumps(manifest(settings={"type": "object", "properties": {"x": {"type": "number", "default": 0}}}))
    raw = raw.replace('"default": 0', f'"default": {constant}')
    folder = make_plugin(tmp_path, "evil", raw=raw)
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(folder)


@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_overflowing_numbers_are_refused_like_infinity(tmp_path, literal):
    raw = json.dumps(manifest(settings={"type": "object", "properties": {"x": {"type": "number", "default": 0}}}))
    raw = raw.replace('"default": 0', f'"default": {literal}')
    folder = make_plugin(tmp_path, "evil", raw=raw)
    with pytest.raises(ManifestError):
        load_manifest(folder)


def test_manifest_validation_reads_no_host_files(tmp_path):
    secret = tmp_path / "host-secret.json"
    secret.write_text(json.dumps({"const": "TOPSECRET-host-file"}))
    settings = {"type": "object", "properties": {"x": {"$ref": secret.as_uri(), "default": "guess"}}}
    folder = make_plugin(tmp_path, "evil", manifest(settings=settings))
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert "TOPSECRET" not in str(info.value)


def test_manifest_patterns_cannot_freeze_discovery(tmp_path):
    settings = {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$", "default": "a" * 26 + "b"}}}
    folder = make_plugin(tmp_path, "evil", manifest(settings=settings))
    started = time.perf_counter()
    with pytest.raises(ManifestError):
        load_manifest(folder)
    assert time.perf_counter() - started < 0.25


LOOKALIKE_IDS = [
    "Victim", "VICTIM", "v\u0456ctim", "\uff56ictim", "victim\u200b", "victim\n", "victim\r", "victim ",
    " victim", "victim.", ".victim", "-victim", "victim-", "vi..ctim", "vi.-ctim", "vi-.ctim", "victim/x",
    "victim\\x", "victim:x", "victim\x00", "victim_x", "../victim", "vi", "v", "", "a" * 129, "victim\u0301",
    "v\u0131ctim", "victim@1", "victim*", "%", "victim%", "victim\t",
]


@pytest.mark.parametrize("bad_id", LOOKALIKE_IDS, ids=repr)
def test_lookalike_and_separator_ids_are_refused(tmp_path, bad_id):
    folder = make_plugin(tmp_path, "evil", manifest(bad_id))
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert "$.id" in problems(info.value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("schemaVersion", True), ("schemaVersion", 1.0), ("schemaVersion", "1"), ("apiVersion", True),
        ("limits", {"timeoutMs": True}), ("limits", {"timeoutMs": 1e9}), ("limits", {"timeoutMs": 10**30}),
        ("limits", {"memoryMb": -1}), ("capabilities", "storage"), ("capabilities", ["storage", "storage"]),
        ("capabilities", [["storage"]]), ("version", "9" * 5000 + ".0.0"), ("version", "1.0.0\n"),
        ("name", "ok\nGranted: everything"), ("author", "me\r\nroot"), ("runtime", "Python"),
        ("runtime", "shell"), ("grants", ["storage"]), ("granted", True), ("__proto__", {}),
    ],
    ids=repr,
)
def test_type_confusion_and_unknown_fields_in_manifests(tmp_path, field, value):
    folder = make_plugin(tmp_path, "evil", manifest(**{field: value}))
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    assert info.value.code == "E_MANIFEST"
    assert any(p.startswith(f"$.{field}") or p.startswith(f'$["{field}"]') for p in problems(info.value))


def test_manifest_errors_quote_hostile_text_instead_of_printing_it(tmp_path):
    data = manifest()
    data["evil\nFORGED: $.id: ok"] = 1
    data["name"] = "Evil\nFORGED"
    folder = make_plugin(tmp_path, "evil", data)
    with pytest.raises(ManifestError) as info:
        load_manifest(folder)
    lines = str(info.value).splitlines()
    assert not any(line.lstrip().startswith("FORGED") for line in lines)


@pytest.mark.parametrize("text", ["Evil\u2028Verified by host", "Evil\u2029x", "Evil\u202egnp.exe"], ids=["LS", "PS", "RLO"])
def test_names_are_single_line_for_every_kind_of_line_break(tmp_path, text):
    folder = make_plugin(tmp_path, "evil", manifest(name=text))
    with pytest.raises(ManifestError):
        load_manifest(folder)


# ==========================================================================
# 9. discovery


def discover(plugins: Path, db: Path | str = ":memory:", before: Any = None) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """Run Host.discover and return (plugins, invalid, result of ``before(host)``)."""

    async def main() -> tuple[dict[str, Any], dict[str, Any], Any]:
        host = Host(plugins, db, runtimes=[])
        try:
            await host.discover()
            extra = before(host) if before is not None else None
            return dict(host.plugins), dict(host.invalid), extra
        finally:
            await host.close()

    return asyncio.run(main())


def test_a_folder_claiming_another_plugins_id_is_invalid_and_inherits_nothing(tmp_path):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "victim", manifest("victim", capabilities=["storage", "settings.write"]))
    make_plugin(plugins, "aaa-copy", manifest("victim", capabilities=["storage", "settings.write", "host.call:*"]))
    db = tmp_path / "host.db"
    with Store(db) as s:
        s.add_grant("victim", "storage", actor="user")
    before = _dump(db)

    def probe(host: Host) -> dict[str, Any]:
        out: dict[str, Any] = {"allowed": host.grants.is_allowed("victim", STORAGE)}
        # the copy's wider request never becomes the victim's
        with pytest.raises(GrantError):
            host.grants.grant("victim", "host.call:*")
        return out

    found, invalid, extra = discover(plugins, db, probe)
    assert list(found) == ["victim"] and found["victim"].folder.name == "victim"
    assert set(invalid) == {"aaa-copy"}
    assert invalid["aaa-copy"].state is PluginState.INVALID and invalid["aaa-copy"].error.code == "E_MANIFEST"
    assert "folder name" in invalid["aaa-copy"].error.message
    assert extra["allowed"] is True
    assert _dump(db) == before


def test_a_copy_cannot_take_over_an_id_while_the_real_manifest_is_broken(tmp_path):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "victim", manifest("victim", unknownField=1))  # e.g. mid-edit, or needs a newer host
    make_plugin(plugins, "aaa-copy", manifest("victim"))
    db = tmp_path / "host.db"
    with Store(db) as s:
        s.add_grant("victim", "storage", actor="user")
    found, invalid, allowed = discover(plugins, db, lambda h: h.grants.is_allowed("victim", STORAGE))
    assert "victim" not in found or found["victim"].folder.name == "victim"
    assert allowed is False


def test_symlinked_copies_of_a_plugin_folder_cannot_shadow_it(tmp_path):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "victim", manifest("victim"))
    (plugins / "aaa").symlink_to(plugins / "victim", target_is_directory=True)
    found, invalid, _ = discover(plugins)
    # the link's folder name is not the id, so only the real folder counts
    assert list(found) == ["victim"] and found["victim"].folder.name == "victim"
    assert set(invalid) == {"aaa"} and "folder name" in invalid["aaa"].error.message


def test_plugin_json_borrowed_from_another_folder_is_refused(tmp_path):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "victim", manifest("victim"))
    make_plugin(plugins, "victim-evil", manifest("victim-evil"))
    (plugins / "victim-evil" / "plugin.json").unlink()
    (plugins / "victim-evil" / "plugin.json").symlink_to(Path("..") / "victim" / "plugin.json")
    found, invalid, _ = discover(plugins)
    assert list(found) == ["victim"] and found["victim"].folder.name == "victim"
    assert list(invalid) == ["victim-evil"]
    assert "outside the plugin folder" in invalid["victim-evil"].error.message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_dot_folders_files_and_broken_entries_cannot_disturb_discovery(tmp_path):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "victim", manifest("victim"))
    make_plugin(plugins, ".victim", manifest("victim"))  # hidden copy: ignored, so no clash
    make_plugin(plugins, ".hidden", manifest("hidden-plugin"))
    (plugins / "plugin.json").write_text(json.dumps(manifest("root-plugin")))
    (plugins / "zzz-file").write_text(json.dumps(manifest("file-plugin")))
    (plugins / "dangling").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    (plugins / "loop").symlink_to("loop")
    (plugins / ".dotlink").symlink_to(plugins / "victim", target_is_directory=True)
    fifo_dir = plugins / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "plugin.json")
    dir_dir = plugins / "dir"
    (dir_dir / "plugin.json").mkdir(parents=True)
    os.mkfifo(plugins / "pipe")
    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(discover(plugins)), daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "discovery hung"
    found, invalid, _ = done[0]
    assert list(found) == ["victim"] and found["victim"].folder.name == "victim"
    assert set(invalid) == {"fifo", "dir"}
    assert "not a regular file" in invalid["fifo"].error.message


HOSTILE_SCHEMA_MANIFESTS = {
    # re.compile raises OverflowError, not re.error, inside the meta-schema's format check
    "settings-overflow": {"settings": {"type": "object", "properties": {"x": {"type": "string", "pattern": "a{4294967296}"}}}},
    # ... and RecursionError for deeply nested groups (the JSON itself is shallow)
    "events-recursion": {"events": [{"name": "a.b", "schema": {"type": "string", "pattern": "(" * 1200 + ")" * 1200}}]},
}


@pytest.mark.parametrize("kind", list(HOSTILE_SCHEMA_MANIFESTS))
def test_one_hostile_manifest_cannot_stop_discovery_of_the_others(tmp_path, kind):
    plugins = tmp_path / "plugins"
    make_plugin(plugins, "good-plugin", manifest("good-plugin"))
    make_plugin(plugins, "evil-plugin", manifest("evil-plugin", **HOSTILE_SCHEMA_MANIFESTS[kind]))
    found, invalid, _ = discover(plugins)
    assert list(found) == ["good-plugin"]
    assert list(invalid) == ["evil-plugin"] and invalid["evil-plugin"].error.code == "E_MANIFEST"


def test_a_symlinked_plugins_folder_still_confines_main(tmp_path):
    real = tmp_path / "real-plugins"
    make_plugin(real, "good-plugin", manifest("good-plugin"))
    evil = make_plugin(real, "evil-plugin", manifest("evil-plugin", main="main.py", runtime=None))
    (evil / "main.py").symlink_to(real / "good-plugin" / "plugin.py")
    link = tmp_path / "plugins"
    link.symlink_to(real, target_is_directory=True)
    found, invalid, _ = discover(link)
    assert set(found) == {"good-plugin", "evil-plugin"}
    with pytest.raises(ManifestError):
        plugin_source(found["evil-plugin"].folder, found["evil-plugin"].manifest, RuntimeLimits())
    source = plugin_source(found["good-plugin"].folder, found["good-plugin"].manifest, RuntimeLimits())
    assert source.main == (real / "good-plugin" / "plugin.py").resolve()


def test_a_new_manifest_version_inherits_no_new_grants(tmp_path):
    plugins = tmp_path / "plugins"
    folder = make_plugin(plugins, "up-plugin", manifest("up-plugin", capabilities=["storage", "events.publish:greeting.sent"]))
    db = tmp_path / "host.db"

    async def main() -> None:
        host = Host(plugins, db, runtimes=[])
        try:
            await host.discover()
            host.grants.grant_requested("up-plugin", actor="user")
            (folder / "plugin.json").write_text(json.dumps(manifest(
                "up-plugin", version="2.0.0",
                capabilities=["storage", "settings.write", "events.publish:*", "host.call:*"])))
            await host.discover()
            assert host.plugins["up-plugin"].version == "2.0.0"
            assert sorted(host.grants.missing("up-plugin")) == ["events.publish:*", "host.call:*", "settings.write"]
            assert not host.grants.is_allowed("up-plugin", parse_capability("events.publish:anything"))
            assert not host.grants.is_allowed("up-plugin", SETTINGS_WRITE)
            ctx = ActivationContext(plugin_id="up-plugin", plugin_version="2.0.0", store=host.store,
                                    grants=host.grants, settings_schema=None)
            with pytest.raises(CapabilityError):
                ctx.settings_set("x", 1)
            assert host.store.settings_get_all("up-plugin") == {}
            assert host.store.audit_count(plugin_id="up-plugin", action="denied") == 1
            # version 3 drops storage: the row stays for a rollback, the use stops
            (folder / "plugin.json").write_text(json.dumps(manifest("up-plugin", version="3.0.0", capabilities=[])))
            await host.discover()
            assert host.store.has_grant("up-plugin", "storage")
            with pytest.raises(CapabilityError):
                ctx.storage_get("k")
        finally:
            await host.close()

    asyncio.run(main())
