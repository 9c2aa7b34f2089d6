"""Attacks on the host boundary: what a plugin hands the host, what it gets
back, who it claims to be, and what it throws at the code calling it.

The host only ever keeps plain JSON of exact built-in types, as text, and
hands out fresh copies (hostrt/jsonvalue.py, hostrt/payloads.py); the
plugin's identity comes from the host, never from the plugin
(hostrt/context.py). Each test shows one way around that failing, and how.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostrt import PluginState
from hostrt.errors import EventError, PayloadError, PluginCompileError, PluginError

ANY = {"type": "object"}

# -- values with overloaded behaviour --------------------------------------------------------

TRICKS_PY = """
import json

CALLED = []

class Trick:
    def __init__(self, name):
        self.name = name
    def __eq__(self, other):
        CALLED.append("eq"); return True
    def __ne__(self, other):
        CALLED.append("ne"); return False
    def __hash__(self):
        CALLED.append("hash"); return 1
    def __str__(self):
        CALLED.append("str"); return "victim"
    def __repr__(self):
        CALLED.append("repr"); return "'victim'"
    def __len__(self):
        CALLED.append("len"); return 1
    def __iter__(self):
        CALLED.append("iter"); return iter(["victim"])
    def __bool__(self):
        CALLED.append("bool"); return True
    def __getitem__(self, key):
        CALLED.append("getitem"); return "victim"
    def __call__(self, *args):
        CALLED.append("call"); return "victim"

class D(dict):
    def __getitem__(self, key):
        CALLED.append("D.getitem"); return "victim"
    def __iter__(self):
        CALLED.append("D.iter"); return iter(["victim"])
    def __len__(self):
        CALLED.append("D.len"); return 1

class L(list):
    def __iter__(self):
        CALLED.append("L.iter"); return iter(["victim"])
    def __len__(self):
        CALLED.append("L.len"); return 1

class S(str):
    def __eq__(self, other):
        CALLED.append("S.eq"); return True
    def __hash__(self):
        CALLED.append("S.hash"); return hash("secret")
    def __str__(self):
        CALLED.append("S.str"); return "victim"
    def __len__(self):
        CALLED.append("S.len"); return 1

class I(int):
    def __str__(self):
        CALLED.append("I.str"); return "1"
    def __eq__(self, other):
        CALLED.append("I.eq"); return True
    def __hash__(self):
        CALLED.append("I.hash"); return 1

def make(kind):
    if kind == "trick":
        return Trick("t")
    if kind == "dict subclass":
        return D(secret=1)
    if kind == "list subclass":
        return L([1])
    if kind == "str subclass":
        return S("secret")
    if kind == "int subclass":
        return I(1)
    if kind == "str subclass key":
        return {S("secret"): 1}
    if kind == "nested trick":
        return {"a": [1, {"b": Trick("t")}]}
    if kind == "function":
        return make
    if kind == "generator":
        return (x for x in [1])

SITES = {
    "storage.set value": lambda ctx, v: ctx.storage.set("k", v),
    "storage.set key": lambda ctx, v: ctx.storage.set(v, 1),
    "storage.get key": lambda ctx, v: ctx.storage.get(v),
    "storage.get default": lambda ctx, v: ctx.storage.get("missing", v),
    "storage.delete key": lambda ctx, v: ctx.storage.delete(v),
    "storage.keys prefix": lambda ctx, v: ctx.storage.keys(v),
    "settings.set value": lambda ctx, v: ctx.settings.set("own", v),
    "settings.set key": lambda ctx, v: ctx.settings.set(v, "x"),
    "settings.get key": lambda ctx, v: ctx.settings.get(v),
    "emit payload": lambda ctx, v: ctx.events.emit("attacker.note", {"v": v}),
    "emit name": lambda ctx, v: ctx.events.emit(v, {}),
    "on pattern": lambda ctx, v: ctx.events.on(v, lambda p: None),
    "host.call params": lambda ctx, v: ctx.host.call("app.record", {"v": v}),
    "host.call name": lambda ctx, v: ctx.host.call(v, {}),
    "register name": lambda ctx, v: ctx.commands.register(v, lambda p: None),
    "log fields": lambda ctx, v: ctx.log.info("x", {"v": v}),
}

def activate(ctx):
    def attempt(params):
        value = make(params["kind"])
        del CALLED[:]  # building it is the plugin's own business
        try:
            got = SITES[params["site"]](ctx, value)
            ctx.storage.set("got", json.dumps(got))  # whatever an accepted trick brought back
            outcome = "accepted"
        except Exception as exc:
            outcome = getattr(exc, "code", "refused by the sandbox")
        return {"outcome": outcome, "called": list(CALLED)}

    def result(params):
        value = make(params["kind"])
        del CALLED[:]
        return value

    ctx.commands.register("attempt", attempt)
    ctx.commands.register("result", result)
    ctx.commands.register("called", lambda params: list(CALLED))
"""
KINDS = ["trick", "dict subclass", "list subclass", "str subclass", "int subclass", "str subclass key",
         "nested trick", "function", "generator"]
#: Where each site refuses a value that is not plain JSON of exact types.
SITE_CODES = {
    "storage.set value": "E_STORAGE", "storage.set key": "E_STORAGE", "storage.get key": "E_STORAGE",
    "storage.get default": "E_STORAGE", "storage.delete key": "E_STORAGE", "storage.keys prefix": "E_STORAGE",
    "settings.set value": "E_SETTINGS", "settings.set key": "E_SETTINGS", "settings.get key": "E_SETTINGS",
    "emit payload": "E_PAYLOAD", "emit name": "E_CAPABILITY", "on pattern": "E_HOSTRT",
    "host.call params": "E_PAYLOAD", "host.call name": "E_CAPABILITY", "register name": "E_HOSTRT",
    "log fields": "E_HOSTRT",
}
TRICKS_MANIFEST = dict(
    capabilities=["storage", "settings.read", "settings.write", "events.publish:attacker.*",
                  "events.subscribe:*", "host.call:app.record"],
    events=[{"name": "attacker.note", "schema": ANY}],
    commands=[{"name": "attempt"}, {"name": "result"}, {"name": "called"}],
    settings={"type": "object", "properties": {"own": {"type": "string", "default": "mine"}},
              "additionalProperties": {"type": "string"}},
)


@pytest.mark.parametrize("site", list(SITE_CODES))
def test_overloaded_objects_and_builtin_subclasses_are_refused_without_running_them(arena, site):
    """__eq__/__hash__/__str__/__repr__/__len__/__iter__/__bool__ tricks and
    dict/list/str/int subclasses, at every place a plugin hands the host a
    value or a name: each is refused with the site's error code, and not
    one of their methods ran (in the host, or anywhere after the call)."""
    recorded: list[Any] = []

    async def attack(arena):
        arena.host.expose("app.record", recorded.append)
        attempt = await arena.attack("attacker", TRICKS_PY, **TRICKS_MANIFEST)
        assert attempt.state is PluginState.ACTIVE, attempt.error
        for kind in KINDS:
            answer = await arena.host.invoke("attacker", "attempt", {"kind": kind, "site": site})
            assert answer == {"outcome": SITE_CODES[site], "called": []}, (kind, answer)
        assert await arena.host.invoke("attacker", "called") == []
        assert recorded == [] and arena.heard == []
        assert arena.host.store.kv_keys("attacker") == []
        assert arena.host.store.settings_get_all("attacker") == {}

    arena.run(attack)


def test_overloaded_command_results_are_refused_without_running_them(arena):
    async def attack(arena):
        attempt = await arena.attack("attacker", TRICKS_PY, **TRICKS_MANIFEST)
        assert attempt.state is PluginState.ACTIVE, attempt.error
        for kind in KINDS:
            with pytest.raises(PluginError) as caught:
                await arena.host.invoke("attacker", "result", {"kind": kind})
            assert "not JSON" in caught.value.message, (kind, caught.value)
            assert "victim" not in caught.value.message
            assert await arena.host.invoke("attacker", "called") == [], kind

    arena.run(attack)


@pytest.mark.parametrize("method", ["__index__", "__getattr__", "__del__", "__format__", "__reduce__",
                                    "__init_subclass__", "__class_getitem__", "__exit__"])
def test_hooks_that_would_run_inside_host_code_cannot_be_defined(arena, method):
    # __index__ could lie about a size after a guard checked it, __del__ runs
    # at garbage collection outside any budget, __format__ inside the host's
    # formatting, __exit__ could swallow the budget's interrupt.
    source = f"""
class Sneaky(int):
    def {method}(self, *args):
        return 10 ** 9

def activate(ctx):
    ctx.storage.set("ran", True)
"""

    async def attack(arena):
        attempt = await arena.attack("sneaky", source, capabilities=["storage"])
        assert attempt.failed_with(PluginCompileError, method), attempt.error
        assert attempt.loot == {}

    arena.run(attack)


# -- mutable values shared with the host ---------------------------------------------------------

SHARING_PY = """
def activate(ctx):
    seen = {}
    value = {"items": [1], "nested": {"n": 1}}
    ctx.storage.set("kept", value)
    value["items"].append("mutated after set")
    value["nested"]["n"] = "mutated after set"
    got = ctx.storage.get("kept")
    got["items"].append("mutated what get returned")
    seen["storage"] = [ctx.storage.get("kept"), ctx.storage.get("kept") is ctx.storage.get("kept")]

    default = ["d"]
    missing = ctx.storage.get("missing", default)
    missing.append("mutated the default copy")
    seen["default"] = [default, ctx.storage.get("missing", default)]

    setting = ["s"]
    ctx.settings.set("list", setting)
    setting.append("mutated after set")
    everything = ctx.settings.all()
    everything["list"].append("mutated all()")
    everything["obj"]["k"] = "mutated all()"
    ctx.settings.get("obj")["k"] = "mutated get()"
    seen["settings"] = ctx.settings.all()

    info = ctx.plugin
    seen["plugin"] = [info.id]
    try:
        info.id = "victim"
        seen["plugin"].append("renamed")
    except Exception as exc:
        seen["plugin"].append("refused")
    seen["plugin"].append(ctx.plugin.id)

    payload = {"items": [1]}
    ctx.events.emit("sharer.note", payload)
    payload["items"].append("mutated after emit")
    ctx.storage.set("seen", seen)

    def run(params):
        params["items"].append("mutated by the plugin")
        reply = ctx.host.call("app.shared", {"ask": 1})
        reply["items"].append("mutated by the plugin")
        return {"params": params, "second": ctx.host.call("app.shared", {"ask": 2})}
    ctx.commands.register("run", run)
"""


def test_values_the_plugin_holds_are_never_the_hosts(arena):
    """Mutating after set, mutating what get or all returned, mutating an
    emitted payload, the host's command parameters or a host method's
    result: nothing the plugin holds is the object the host keeps."""
    shared = {"items": ["host"]}
    params = {"items": ["host"]}
    heard_payloads: list[Any] = []

    async def attack(arena):
        arena.host.expose("app.shared", lambda p: shared)
        arena.host.on("sharer.*", lambda event: heard_payloads.append(event.payload))
        attempt = await arena.attack(
            "sharer", SHARING_PY,
            capabilities=["storage", "settings.read", "settings.write", "events.publish:sharer.*",
                          "host.call:app.shared"],
            events=[{"name": "sharer.note", "schema": ANY}], commands=[{"name": "run"}],
            settings={"type": "object", "properties": {
                "list": {"type": "array", "default": []},
                "obj": {"type": "object", "default": {"k": "default"}}}})
        assert attempt.state is PluginState.ACTIVE, attempt.error
        seen = attempt.loot["seen"]
        assert seen["storage"] == [{"items": [1], "nested": {"n": 1}}, False]
        assert seen["default"] == [["d"], ["d"]]
        assert seen["settings"] == {"list": ["s"], "obj": {"k": "default"}}
        assert seen["plugin"] == ["sharer", "refused", "sharer"]
        assert heard_payloads == [{"items": [1]}]
        assert attempt.loot["kept"] == {"items": [1], "nested": {"n": 1}}
        answer = await arena.host.invoke("sharer", "run", params)
        assert answer == {"params": {"items": ["host", "mutated by the plugin"]}, "second": {"items": ["host"]}}
        assert params == {"items": ["host"]} and shared == {"items": ["host"]}
        assert arena.host.get_settings("sharer") == {"list": ["s"], "obj": {"k": "default"}}

    arena.run(attack)


PUBLISHER_PY = """
def activate(ctx):
    ctx.commands.register("send", lambda params: ctx.events.emit("pub.note", params))
"""
MUTATOR_PY = """
def activate(ctx):
    def on_note(payload, event):
        ctx.storage.set("got", [payload, event])
        payload["items"].append("mutated by a subscriber")
        payload["source"] = "victim"
        event["source"] = "victim"
    ctx.events.on("pub.*", on_note)
"""
LISTENER_JS = """
exports.activate = (ctx) => {
    ctx.events.on("pub.*", async (payload, event) => {
        await ctx.storage.set("got", [payload, event]);
    });
};
"""


def test_a_subscriber_mutating_its_payload_changes_no_one_elses(arena):
    heard_payloads: list[Any] = []

    async def attack(arena):
        arena.host.on("pub.*", lambda event: heard_payloads.append([event.payload, event.source]))
        # the mutator subscribes first, so it runs before the others would
        # see a payload it shared with them
        mutator = await arena.attack("mutator", MUTATOR_PY, capabilities=["storage", "events.subscribe:pub.*"])
        listener = await arena.attack("listener", LISTENER_JS, language="javascript",
                                      capabilities=["storage", "events.subscribe:pub.*"])
        publisher = await arena.attack("pub", PUBLISHER_PY, capabilities=["events.publish:pub.*"],
                                       events=[{"name": "pub.note", "schema": ANY}], commands=[{"name": "send"}])
        assert {mutator.state, listener.state, publisher.state} == {PluginState.ACTIVE}
        sent = {"items": [1], "source": "pub"}
        await arena.host.invoke("pub", "send", sent)
        await arena.host.events_idle()
        expected = [{"items": [1], "source": "pub"}, {"name": "pub.note", "source": "pub"}]
        assert arena.host.store.kv_get("mutator", "got") == json.dumps(expected, separators=(",", ":"))
        assert json.loads(arena.host.store.kv_get("listener", "got")) == expected
        assert heard_payloads == [[{"items": [1], "source": "pub"}, "pub"]]
        assert sent == {"items": [1], "source": "pub"}
        # and the host's own emit: its payload object is not handed out
        payload = {"items": ["host"]}
        arena.host.declare_event("app.note")
        await arena.host.emit("app.note", payload)
        assert payload == {"items": ["host"]}

    arena.run(attack)


# -- forged identity ------------------------------------------------------------------------------

IMPOSTOR_PY = """
def attempt(out, name, fn):
    try:
        fn()
        out[name] = "accepted"
    except Exception as exc:
        out[name] = getattr(exc, "code", "refused by the sandbox")

def activate(ctx):
    out = {}
    attempt(out, "emit the host's event", lambda: ctx.events.emit("app.started", {}))
    attempt(out, "emit as host", lambda: ctx.events.emit("host.note", {"source": "host"}))
    attempt(out, "register victim.ping", lambda: ctx.commands.register("victim.ping", lambda p: "forged"))
    attempt(out, "rename ctx.plugin", lambda: setattr(ctx.plugin, "id", "victim"))
    attempt(out, "build a ctx", lambda: type(ctx.storage)(None, None, None))
    attempt(out, "log as victim", lambda: ctx.log.info("from the impostor", {"plugin_id": "victim"}))
    attempt(out, "read victim storage", lambda: out.update(victim=ctx.storage.get("victim/secret")))
    attempt(out, "own note", lambda: ctx.events.emit("impostor.note", {"source": "host", "name": "app.started"}))
    ctx.storage.set("outcomes", out)
"""


def test_a_plugin_cannot_act_as_another_plugin_or_as_the_host(arena):
    heard: list[Any] = []

    async def attack(arena):
        arena.host.declare_event("app.started")
        arena.host.on("*", lambda event: heard.append([event.name, event.source, event.payload]))
        attempt = await arena.attack(
            "impostor", IMPOSTOR_PY,
            capabilities=["storage", "events.publish:*"],
            events=[{"name": "impostor.note", "schema": ANY}],
            commands=[{"name": "impostor.run"}])
        assert attempt.state is PluginState.ACTIVE, attempt.error
        assert attempt.loot["outcomes"] == {
            "emit the host's event": "E_EVENT",
            "emit as host": "E_EVENT",
            "register victim.ping": "E_HOSTRT",
            "rename ctx.plugin": "refused by the sandbox",
            "build a ctx": "refused by the sandbox",
            "log as victim": "accepted",
            "read victim storage": "E_STORAGE",
            "own note": "accepted",
        }
        # what it did do is named after it, whatever it put in the data
        assert heard == [["impostor.note", "impostor", {"source": "host", "name": "app.started"}]]
        assert arena.logs_of("impostor") == ["from the impostor"]
        assert "from the impostor" not in arena.logs_of("victim")
        assert arena.host.commands() and all(c.plugin_id == "victim" for c in arena.host.commands())

    arena.run(attack)


@pytest.mark.parametrize("claim", ["host event", "victim command"])
def test_a_manifest_declaring_what_another_owns_is_blocked_or_namespaced(arena, claim):
    source = 'def activate(ctx):\n    ctx.commands.register("victim.ping", lambda p: "forged")\n'

    async def attack(arena):
        arena.host.declare_event("app.started")
        if claim == "host event":
            attempt = await arena.attack("claimer", source, capabilities=["events.publish:app.started"],
                                         events=[{"name": "app.started"}])
            assert attempt.state is PluginState.BLOCKED and isinstance(attempt.error, EventError)
            assert "app.started" in attempt.error.message
        else:
            # a command of the same name is the claimer's own: the host
            # names the plugin it invokes, so the victim's stays the victim's
            attempt = await arena.attack("claimer", source, commands=[{"name": "victim.ping"}])
            assert attempt.state is PluginState.ACTIVE
            assert await arena.host.invoke("claimer", "victim.ping") == "forged"
            assert await arena.host.invoke("victim", "victim.ping") == "pong"

    arena.run(attack)


# -- what plugin callbacks throw at the host --------------------------------------------------------

EXITS_PY = """
class Quiet(SystemExit):
    pass

class LoudStr(Exception):
    def __str__(self):
        raise SystemExit("from __str__")

class Exits:
    def dispose(self):
        raise KeyboardInterrupt("from dispose")

def activate(ctx):
    ctx.commands.register("exit", lambda params: exec_exit(params["kind"]))
    ctx.events.on("app.tick", lambda payload: exec_exit(payload["kind"]))
    ctx.subscriptions.append(Exits())
    ctx.storage.set("activated", True)

def exec_exit(kind):
    if kind == "SystemExit":
        raise SystemExit(0)
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt()
    if kind == "GeneratorExit":
        raise GeneratorExit()
    if kind == "subclass":
        raise Quiet(3)
    if kind == "str":
        raise LoudStr()
    return "stayed"

def deactivate(ctx):
    raise SystemExit("from deactivate")
"""
EXIT_KINDS = ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "subclass", "str"]


def test_systemexit_and_keyboardinterrupt_through_every_callback_stop_only_the_call(arena):
    async def attack(arena):
        arena.host.declare_event("app.tick")
        attempt = await arena.attack("exiter", EXITS_PY, capabilities=["storage", "events.subscribe:app.tick"],
                                     commands=[{"name": "exit"}])
        assert attempt.state is PluginState.ACTIVE, attempt.error
        for kind in EXIT_KINDS:
            with pytest.raises(PluginError) as caught:
                await arena.host.invoke("exiter", "exit", {"kind": kind})
            expected = {"subclass": "Quiet raised by plugin code", "str": "LoudStr"}.get(kind, f"{kind} raised")
            assert expected in caught.value.message, (kind, caught.value)
            assert caught.value.file == "exiter/plugin.py"
            delivery = await arena.host.emit("app.tick", {"kind": kind})
            assert list(delivery.failed) == ["exiter"] and delivery.failed["exiter"].code == "E_PLUGIN", kind
            assert expected in delivery.failed["exiter"].message
            assert arena.host.plugins["exiter"].state is PluginState.ACTIVE
        assert await arena.host.invoke("exiter", "exit", {"kind": "none"}) == "stayed"
        # deactivate and a disposer raising them: the plugin still ends inactive
        record = await arena.host.deactivate("exiter")
        assert record.state is PluginState.INACTIVE

    arena.run(attack)


HOSTILE_RESULTS_PY = """
import math

def cyclic():
    a = []
    a.append(a)
    return a

def deep():
    value = []
    for _ in range(100):
        value = [value]
    return value

RESULTS = {
    "nan": lambda: math.nan,
    "set": lambda: {1, 2},
    "bytes": lambda: b"victim",
    "tuple key": lambda: {(1, 2): 3},
    "int key": lambda: {1: "x"},
    "cycle": cyclic,
    "deep": deep,
    "huge int": lambda: 10 ** 5000,
    "ctx": lambda: CTX[0],
    "storage facade": lambda: CTX[0].storage,
    "exception": lambda: ValueError("victim"),
    "too large": lambda: "x" * 2000,
}
CTX = []

def activate(ctx):
    CTX.append(ctx)
    ctx.commands.register("result", lambda params: RESULTS[params["kind"]]())

def deactivate(ctx):
    return ctx.storage
"""


def test_hostile_command_results_and_deactivate_state_are_refused(arena):
    async def attack(arena):
        attempt = await arena.attack("returner", HOSTILE_RESULTS_PY, capabilities=["storage"],
                                     commands=[{"name": "result", "maxPayloadBytes": 1000}])
        assert attempt.state is PluginState.ACTIVE, attempt.error
        for kind in ["nan", "set", "bytes", "tuple key", "int key", "cycle", "deep", "huge int", "ctx",
                     "storage facade", "exception"]:
            with pytest.raises(PluginError) as caught:
                await arena.host.invoke("returner", "result", {"kind": kind})
            assert "not JSON" in caught.value.message, (kind, caught.value)
        with pytest.raises((PluginError, PayloadError)) as too_large:
            await arena.host.invoke("returner", "result", {"kind": "too large"})
        assert "1000 bytes" in too_large.value.message
        assert arena.host.plugins["returner"].state is PluginState.ACTIVE
        record = await arena.host.deactivate("returner")
        assert record.state is PluginState.INACTIVE
        assert isinstance(record.error, PluginError) and "not JSON" in record.error.message

    arena.run(attack)


HOST_METHOD_CALLER_PY = """
def activate(ctx):
    out = {}
    for name, params in [("app.bad", {}), ("app.secret", {}), ("app.record", {"f": len}),
                         ("app.record", [ctx])]:
        try:
            out[name + " " + str(len(out))] = ctx.host.call(name, params)
        except Exception as exc:
            out[name + " " + str(len(out))] = [getattr(exc, "code", "refused"), str(exc)]
    ctx.storage.set("out", out)
"""


def test_host_method_failures_and_non_json_results_reach_the_plugin_as_codes_only(arena):
    recorded: list[Any] = []

    async def attack(arena):
        arena.host.expose("app.bad", lambda params: {"when": object()})  # the host's own bug
        arena.host.expose("app.secret", lambda params: 1 / 0)
        arena.host.expose("app.record", recorded.append)
        attempt = await arena.attack("caller", HOST_METHOD_CALLER_PY,
                                     capabilities=["storage", "host.call:app.*"])
        out = attempt.loot["out"]
        assert [v[0] for v in out.values()] == ["E_HOST_METHOD", "E_HOST_METHOD", "E_PAYLOAD", "E_PAYLOAD"]
        text = json.dumps(out)
        assert "ZeroDivisionError" not in text and "object at 0x" not in text
        assert recorded == []

    arena.run(attack)
