"""Property tests of the boundary: whatever a plugin's author writes into
plugin.json, uses as a storage key or setting name, or sends as an event
payload, the host answers with a valid result or one of its documented
errors, and its store stays whole.

Storage, settings and events go through the real ``ctx`` of a real Python
plugin, one command invocation per example, on one host kept for the
module (a fresh host per example would cost most of the time budget).
Values that JSON parameters cannot carry (lone surrogates, NaN, sets,
huge integers, builtin subclasses) are described in JSON and built inside
the plugin, so they reach the gate as the plugin's own objects.

Examples are derandomized, so every run tries the same inputs and a
failure reproduces.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostrt import jsonvalue
from hostrt import EventPolicy, HostPolicy, Manifest, PluginState
from hostrt.errors import EventError, ManifestError, PayloadError
from hostrt.manifest import load_manifest, validate_manifest
from hostrt.sync import SyncHost

PROFILE = dict(deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

VALID = {"schemaVersion": 1, "id": "fuzzed", "name": "fuzzed", "version": "1.0.0", "runtime": "python",
         "capabilities": ["storage", "events.publish:fuzzed.*"],
         "events": [{"name": "fuzzed.note", "schema": {"type": "object"}, "maxPayloadBytes": 100}],
         "commands": [{"name": "run", "paramsSchema": {"type": "object"}}],
         "settings": {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}},
         "relationships": {"requires": [{"id": "other", "versionRange": "^1"}], "after": ["third"]},
         "limits": {"timeoutMs": 100, "memoryMb": 8}, "load": {"priority": "high"}, "engines": {"hostrt": "*"}}
FIELDS = [*VALID, "description", "author", "main", "apiVersion", "$schema"]

json_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
               | st.text(max_size=12) | st.sampled_from(["", "1.0.0", "storage", "plugin.py", "../x.py", "host",
                                                        "victim", "C:\\x.py", "a.b", "*", "\u202e", "object"]))
json_docs = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), children, max_size=5),
    max_leaves=20,
)


def assert_only_manifest_errors(load: Any, file: str) -> None:
    """``load()`` gives a Manifest or a ManifestError naming ``file`` whose
    every problem has a JSON path; nothing else may come out."""
    try:
        result = load()
    except ManifestError as exc:
        assert exc.file == file and exc.problems
        for problem in exc.problems:
            assert problem.json_path.startswith("$") and problem.message
        return
    assert isinstance(result, Manifest)


@settings(max_examples=250, **PROFILE)
@given(data=json_docs)
def test_random_json_documents_validate_or_raise_manifest_errors(data):
    assert_only_manifest_errors(lambda: validate_manifest(data, "fuzz/plugin.json"), "fuzz/plugin.json")


def _set_at(doc: Any, path: list[Any], value: Any) -> Any:
    """``doc`` with the value at ``path`` (indices taken modulo, keys as
    given) replaced by ``value``, or deleted when ``value`` is ``...``."""
    if not path or not isinstance(doc, (dict, list)) or not doc:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, list):
        index = head % len(doc) if isinstance(head, int) else 0
        copy = list(doc)
        copy[index] = _set_at(copy[index], rest, value)
        return copy
    key = head if isinstance(head, str) and head in doc else sorted(doc)[hash(str(head)) % len(doc)]
    copy = dict(doc)
    if value is ... and not rest:
        del copy[key]
    else:
        copy[key] = _set_at(copy[key], rest, value)
    return copy


@settings(max_examples=250, **PROFILE)
@given(mutations=st.lists(st.tuples(st.lists(st.integers(0, 9) | st.sampled_from(FIELDS), min_size=1, max_size=4),
                                    json_docs | st.just(...)), min_size=1, max_size=3))
def test_mutations_of_a_valid_manifest_validate_or_raise_manifest_errors(mutations):
    doc: Any = VALID
    for path, value in mutations:
        doc = _set_at(doc, path, value)
    assert_only_manifest_errors(lambda: validate_manifest(doc, "fuzz/plugin.json"), "fuzz/plugin.json")


@settings(max_examples=200, **PROFILE)
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 4), st.binary(max_size=6)),
                      min_size=1, max_size=4))
def test_byte_edits_of_a_valid_plugin_json_load_or_raise_manifest_errors(tmp_path, edits):
    raw = bytearray(json.dumps(VALID).encode())
    for at, cut, insert in edits:
        at %= len(raw) + 1
        raw[at:at + cut] = insert
    folder = tmp_path / "fuzzed"
    folder.mkdir(exist_ok=True)
    (folder / "plugin.json").write_bytes(bytes(raw))
    assert_only_manifest_errors(lambda: load_manifest(folder), str(folder / "plugin.json"))


# -- one host for the storage, settings and event properties ----------------------------------------

FUZZER_PY = r'''
import math

class S(str):
    pass

class D(dict):
    pass

class I(int):
    pass

def build(desc):
    """A JSON description of a value, built into the value itself."""
    if type(desc) is list:
        return [build(x) for x in desc]
    if type(desc) is not dict:
        return desc
    kind = desc.get("$")
    if kind is None:
        return {k: build(v) for k, v in desc.items()}
    arg = desc.get("v")
    if kind == "text":
        return "".join(chr(c) for c in arg)
    if kind == "long":
        return "x" * arg
    if kind == "nan":
        return math.nan
    if kind == "inf":
        return -math.inf
    if kind == "set":
        return set(arg)
    if kind == "tuple":
        return tuple(build(arg))
    if kind == "bytes":
        return bytes(arg)
    if kind == "big":
        return 10 ** arg
    if kind == "int key":
        return {arg: 1}
    if kind == "str subclass":
        return S(arg)
    if kind == "dict subclass":
        return D(a=arg)
    if kind == "int subclass":
        return I(arg)
    if kind == "deep":
        value = []
        for _ in range(arg):
            value = [value]
        return value
    return desc

OPS = {
    "set": lambda ctx, key, value: ctx.storage.set(key, value),
    "get": lambda ctx, key, value: ctx.storage.get(key, value),
    "delete": lambda ctx, key, value: ctx.storage.delete(key),
    "keys": lambda ctx, key, value: ctx.storage.keys(key),
    "setting.set": lambda ctx, key, value: ctx.settings.set(key, value),
    "setting.get": lambda ctx, key, value: ctx.settings.get(key),
    "emit": lambda ctx, key, value: ctx.events.emit("fuzzer.note", value),
}

def activate(ctx):
    def run(params):
        key = build(params["key"])
        value = build(params["value"])
        try:
            return {"ok": OPS[params["op"]](ctx, key, value)}
        except Exception as exc:
            return {"error": getattr(exc, "code", "not a host error"), "message": str(exc)[:300]}
    ctx.commands.register("run", run)
'''
LISTENER_PY = '''
def activate(ctx):
    ctx.events.on("fuzzer.*", lambda payload: ctx.storage.set("last", payload))
'''
SECRET_ROWS = {"secret": '"victim secret"', "a_": '"a_"', "%": '"%"'}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fuzz")
    plugins = root / "plugins"

    def write(plugin_id: str, source: str, **manifest: Any) -> None:
        (plugins / plugin_id).mkdir(parents=True)
        (plugins / plugin_id / "plugin.py").write_text(textwrap.dedent(source))
        (plugins / plugin_id / "plugin.json").write_text(json.dumps({
            "schemaVersion": 1, "id": plugin_id, "name": plugin_id, "version": "1.0.0", "runtime": "python",
            **manifest}))

    write("fuzzer", FUZZER_PY, capabilities=["storage", "settings.read", "settings.write", "events.publish:fuzzer.*"],
          commands=[{"name": "run", "maxPayloadBytes": 2 * 1024 * 1024}],
          events=[{"name": "fuzzer.note", "maxPayloadBytes": 4096}],
          settings={"type": "object", "properties": {"fixed": {"type": "integer", "default": 1}},
                    "additionalProperties": True})
    write("listener", LISTENER_PY, capabilities=["storage", "events.subscribe:fuzzer.*"])
    write("victim", "def activate(ctx):\n    pass\n", capabilities=["storage", "settings.read"],
          settings={"type": "object", "additionalProperties": True})
    db = root / "host.db"
    # no emit rate limit: each example must be delivered or refused for what it is
    policy = HostPolicy(events=EventPolicy(rate_per_s=1e9, burst=10**9))
    with SyncHost(plugins, db, policy=policy) as host:
        host.discover()
        for plugin_id in ("victim", "fuzzer", "listener"):
            host.grants.grant_requested(plugin_id)
        for key, value in SECRET_ROWS.items():
            host.store.kv_set("victim", key, value, quota_bytes=1 << 20)
        host.set_setting("victim", "token", "victim token")
        for plugin_id in ("victim", "fuzzer", "listener"):
            assert host.activate(plugin_id).state is PluginState.ACTIVE
        heard: list[Any] = []
        host.on("fuzzer.*", lambda event: heard.append(event.payload))
        host.declare_event("fuzzer.host", max_payload_bytes=4096)
        yield host, db, heard
        assert_store_whole(host, db)


def assert_store_whole(host: SyncHost, db: Path) -> None:
    """The database passes SQLite's own check, the victim's rows and
    settings are as planted, and every plugin's usage row is the real sum
    of its values' sizes."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        usage = dict(conn.execute("SELECT plugin_id, bytes FROM kv_usage WHERE bytes != 0").fetchall())
        real = dict(conn.execute("SELECT plugin_id, SUM(size_bytes) FROM kv GROUP BY plugin_id").fetchall())
        victim = dict(conn.execute("SELECT key, value_json FROM kv WHERE plugin_id = 'victim'").fetchall())
    finally:
        conn.close()
    assert usage == real
    assert victim == SECRET_ROWS
    assert host.store.settings_get_all("victim") == {"token": "victim token"}


unicode_codes = st.integers(0, 0x10FFFF)
key_codes = st.one_of(
    st.lists(unicode_codes, max_size=12),
    st.lists(st.sampled_from([0, 0xD800, 0xDFFF, ord("%"), ord("_"), ord("/"), ord("."), ord(":"), ord("'"),
                              ord("a"), ord("\\"), 0xFF21]), max_size=8),
    st.integers(95, 130).map(lambda n: [ord("k")] * n),
    st.sampled_from(["secret", "victim/secret", "../victim", "victim:secret", "a_", "%", "_", "", "k"])
    .map(lambda s: [ord(c) for c in s]),
)
keys = key_codes.map(lambda codes: {"$": "text", "v": codes})
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6).filter(lambda k: k != "$"),
                                                                      children, max_size=4),
    max_leaves=15,
)
hostile_values = st.one_of(
    st.fixed_dictionaries({"$": st.sampled_from(["nan", "inf"])}),
    st.fixed_dictionaries({"$": st.just("text"), "v": st.lists(st.sampled_from([0, 0xD800, 0xDBFF, 0xDC00, 97]),
                                                                 max_size=5)}),
    st.fixed_dictionaries({"$": st.just("set"), "v": st.lists(st.integers(), max_size=3)}),
    st.fixed_dictionaries({"$": st.just("tuple"), "v": st.lists(st.integers(), max_size=3)}),
    st.fixed_dictionaries({"$": st.just("bytes"), "v": st.lists(st.integers(0, 255), max_size=3)}),
    st.fixed_dictionaries({"$": st.just("big"), "v": st.integers(4290, 4400)}),
    st.fixed_dictionaries({"$": st.just("int key"), "v": st.integers()}),
    st.fixed_dictionaries({"$": st.sampled_from(["str subclass", "dict subclass"]), "v": st.text(max_size=4)}),
    st.fixed_dictionaries({"$": st.just("int subclass"), "v": st.integers()}),
    st.fixed_dictionaries({"$": st.just("deep"), "v": st.integers(60, 70)}),
    st.fixed_dictionaries({"$": st.just("long"), "v": st.integers(1000, 1 << 21)}),
)
values = json_values | hostile_values | st.lists(hostile_values, min_size=1, max_size=2).map(lambda v: {"in": v})

STORAGE_ERRORS = {"E_STORAGE", "E_QUOTA", "E_CAPABILITY"}
SETTINGS_ERRORS = {"E_SETTINGS", "E_CAPABILITY"}
EVENT_ERRORS = {"E_PAYLOAD", "E_EVENT", "E_CAPABILITY"}


def run(host: SyncHost, op: str, key: Any, value: Any) -> dict[str, Any]:
    return host.invoke("fuzzer", "run", {"op": op, "key": key, "value": value})


def stored(host: SyncHost) -> dict[str, str]:
    return {key: host.store.kv_get("fuzzer", key) or "" for key in host.store.kv_keys("fuzzer")}


@settings(max_examples=300, **PROFILE)
@given(calls=st.lists(st.tuples(st.sampled_from(["set", "get", "delete", "keys"]), keys, values),
                      min_size=1, max_size=4))
def test_storage_keys_and_values_give_a_result_or_a_storage_error(world, calls):
    host, db, _ = world
    host.store.kv_clear("fuzzer")  # each example starts from nothing, so it replays the same
    for op, key, value in calls:
        check_storage_call(host, op, key, value)


def check_storage_call(host: SyncHost, op: str, key: Any, value: Any) -> None:
    before = stored(host)
    answer = run(host, op, key, value)
    codes = key["v"]
    text = "".join(chr(c) for c in codes)
    if "error" in answer:
        assert answer["error"] in STORAGE_ERRORS, answer
        assert stored(host) == before  # a refused call changes nothing
        return
    # accepted: only well-formed keys (or the empty prefix) were
    valid_key = 0 < len(codes) <= 100 and all(c < 128 and (chr(c).isalnum() or chr(c) in "_.-") for c in codes)
    assert valid_key or (op == "keys" and codes == []), (op, text)
    after = stored(host)
    if op == "set":
        assert json.loads(after[text]) == built(value)
        assert {k: v for k, v in after.items() if k != text} == {k: v for k, v in before.items() if k != text}
        return
    if op == "delete":
        assert answer["ok"] is (text in before) and text not in after
        return
    assert after == before
    if op == "keys":
        assert answer["ok"] == sorted(k for k in before if k.startswith(text))
    else:
        assert answer["ok"] == (json.loads(before[text]) if text in before else built(value))


def built(desc: Any) -> Any:
    """What the plugin builds from ``desc`` (see ``build`` in FUZZER_PY),
    for the descriptions that give plain JSON; the others must never be
    accepted, so comparing with the description itself fails for them."""
    if isinstance(desc, list):
        return [built(x) for x in desc]
    if not isinstance(desc, dict):
        return desc
    kind = desc.get("$")
    if kind is None:
        return {k: built(v) for k, v in desc.items()}
    if kind == "text":
        return "".join(chr(c) for c in desc["v"])
    if kind == "big":
        return 10 ** desc["v"]
    if kind == "long":
        return "x" * desc["v"]
    if kind == "tuple":  # exact tuples are JSON arrays at the boundary
        return built(desc["v"])
    if kind == "deep":
        value: list[Any] = []
        for _ in range(desc["v"]):
            value = [value]
        return value
    return desc


@settings(max_examples=300, **PROFILE)
@given(op=st.sampled_from(["setting.set", "setting.get"]), key=keys, value=values)
def test_setting_names_and_values_give_a_result_or_a_settings_error(world, op, key, value):
    host, db, _ = world
    host.store.settings_clear("fuzzer")  # each example starts from nothing, so it replays the same
    before = host.store.settings_get_all("fuzzer")
    answer = run(host, op, key, value)
    if "error" in answer:
        assert answer["error"] in SETTINGS_ERRORS, answer
        assert host.store.settings_get_all("fuzzer") == before
        return
    text = "".join(chr(c) for c in key["v"])
    assert 0 < len(text) <= 100 and text.isascii()
    if op == "setting.set":
        assert host.store.settings_get_all("fuzzer") == {**before, text: built(value)}


@settings(max_examples=300, **PROFILE)
@given(value=values)
def test_payloads_are_refused_or_delivered_as_exact_copies(world, value):
    host, db, heard = world
    heard.clear()
    host.store.kv_delete("listener", "last")
    answer = run(host, "emit", {"$": "text", "v": []}, value)
    host.events_idle()
    if "error" in answer:
        assert answer["error"] in EVENT_ERRORS, answer
        assert heard == [] and host.store.kv_get("listener", "last") is None
        return
    assert heard == [built(value)]
    assert json.loads(host.store.kv_get("listener", "last")) == built(value)


class _HostStr(str):
    pass


#: The host's own non-JSON objects, for the descriptions ``built`` keeps.
#: Not ``{1: ...}``: the host's data is serialised by ``json.dumps``,
#: which writes a non-string key as a string (the host's own choice).
HOST_OBJECTS = {
    "nan": lambda v: float("nan"), "inf": lambda v: float("-inf"), "set": lambda v: set(v),
    "bytes": lambda v: bytes(v), "str subclass": lambda v: _HostStr(v),
    "dict subclass": lambda v: type("D", (dict,), {})(a=v), "int subclass": lambda v: type("I", (int,), {})(v),
}


def host_built(desc: Any) -> Any:
    """``built`` with the hostile descriptions made into real objects."""
    if isinstance(desc, dict) and desc.get("$") in HOST_OBJECTS:
        return HOST_OBJECTS[desc["$"]](desc.get("v"))
    if isinstance(desc, dict) and "$" not in desc:
        return {k: host_built(v) for k, v in desc.items()}
    if isinstance(desc, list):
        return [host_built(x) for x in desc]
    return built(desc)


@settings(max_examples=200, **PROFILE)
@given(value=values)
def test_the_hosts_payloads_are_refused_or_delivered_as_exact_copies(world, value):
    host, db, heard = world
    heard.clear()
    host.store.kv_delete("listener", "last")
    if "int key" in json.dumps(value):
        return
    payload = host_built(value)
    try:
        delivery = host.emit("fuzzer.host", payload)
    except (PayloadError, EventError):
        host.events_idle()
        assert heard == [] and host.store.kv_get("listener", "last") is None
        return
    assert sorted(delivery.delivered) == ["host", "listener"] and not delivery.failed
    # equal by value (the host's own subclasses of str, int and dict are
    # JSON to it), and received as plain data of exact types
    assert heard == [payload]
    jsonvalue.check(heard[0])
    assert json.loads(host.store.kv_get("listener", "last")) == payload


def test_the_store_is_whole_after_the_fuzzing(world):
    # after the properties above (pytest runs a module's tests in order)
    host, db, _ = world
    assert_store_whole(host, db)
