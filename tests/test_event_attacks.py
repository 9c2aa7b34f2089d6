"""Attacks on declared events, host methods and commands.

Every plugin here is hostile, real (JavaScript in its own V8 isolate, Python
in the sandbox), and run by a real :class:`Host` over a real SQLite file.
Its author has read ``hostrt/events.py``, ``context.py``, ``hostmethods.py``,
``commands.py``, ``callchain.py``, the JavaScript shim and the Python
facade. Each test checks both halves of the outcome:

* the attack was stopped, with the documented error where there is one;
* nothing leaked or changed: the victim plugin's rows and every grant are
  what they were, nothing the attacker saw carries a host secret, path or
  traceback (a canary is planted in a host method's exception), the victim
  still answers, and the host still activates a fresh plugin and delivers
  events to it.

An attack found to succeed stays here, marked ``xfail(strict=True)`` with
the hole as its reason, so that closing the hole turns it into an XPASS and
the marker has to go.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

from hostrt import Host, HostMethodError, HostPolicy, PluginState
from hostrt.errors import LifecycleError, PayloadError, PluginError
from hostrt.events import EventPolicy

from conftest import finishes, manifest_dict
from test_events import rejections

#: Stored by the victim; must never reach an attacker.
VICTIM_SECRET = "victim-secret-7f3a"
#: Put in host exceptions; must never reach plugin code.
CANARY = "host-canary-c0ffee"
#: Every wait in a test is bounded by this, so nothing can hang the suite.
WAIT_S = 15.0

ANY_OBJECT = {"type": "object"}


# ---------------------------------------------------------------------------
# the world every attack runs in


def run(main: Callable[[], Awaitable[Any]], timeout: float = 50.0) -> Any:
    """Run ``main()`` on a fresh loop in a thread; fail instead of hanging."""
    return finishes(lambda: asyncio.run(main()), timeout)


async def bounded(awaitable: Awaitable[Any], timeout: float = WAIT_S) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


def write_py(root: Path, plugin_id: str, source: str, **manifest: Any) -> None:
    folder = root / plugin_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugin.json").write_text(json.dumps(manifest_dict(plugin_id, **manifest)))
    (folder / "plugin.py").write_text(textwrap.dedent(source).lstrip("\n"))


def write_js(root: Path, plugin_id: str, source: str, **manifest: Any) -> None:
    folder = root / plugin_id
    folder.mkdir(parents=True, exist_ok=True)
    data = manifest_dict(plugin_id, runtime="javascript", main="plugin.js", **manifest)
    (folder / "plugin.json").write_text(json.dumps(data))
    (folder / "plugin.js").write_text(textwrap.dedent(source).lstrip("\n"))


#: The victim: it keeps a secret, declares an event and a command of its
#: own, and records what it hears on "app.*" and "victim.*".
VICTIM_PY = f"""
def activate(ctx):
    ctx.storage.set("secret", "{VICTIM_SECRET}")
    def heard(payload, event):
        seen = ctx.storage.get("heard", [])
        seen.append([event["name"], event["source"], payload])
        ctx.storage.set("heard", seen)
    ctx.events.on("app.*", heard)
    ctx.events.on("victim.*", heard)
    def whisper(params):
        return {{"secret": ctx.storage.get("secret")}}
    ctx.commands.register("victim.whisper", whisper)
    def announce(params):
        ctx.events.emit("victim.note", params)
        return "announced"
    ctx.commands.register("victim.announce", announce)
"""
VICTIM_MANIFEST = {
    "capabilities": ["storage", "events.subscribe:app.*", "events.subscribe:victim.*", "events.publish:victim.*"],
    "events": [{"name": "victim.note", "schema": ANY_OBJECT}],
    "commands": [{"name": "victim.whisper"}, {"name": "victim.announce"}],
}

#: A plugin that appears after an attack: it must activate and receive.
FRESH_PY = """
def activate(ctx):
    def got(payload):
        ctx.storage.set("got", payload)
    ctx.events.on("app.ping", got)
"""


class World:
    """A host with a victim, the attacker's plugins and a log of every
    event the host itself hears."""

    def __init__(self, root: Path, tmp_path: Path, *, events: EventPolicy | None = None,
                 victim: bool = True, **policy: Any) -> None:
        self.root = root
        self.victim = victim
        if victim:
            write_py(root, "victim", VICTIM_PY, **VICTIM_MANIFEST)
        self.host = Host(root, tmp_path / "host.db", policy=HostPolicy(events=events or EventPolicy(), **policy))
        self.heard: list[tuple[str, str, Any]] = []
        self.fresh_count = 0
        self._grants: dict[str, list[str]] = {}
        self._victim_rows: dict[str, Any] = {}

    async def __aenter__(self) -> "World":
        host = self.host
        await host.discover()
        for plugin_id in host.plugins:
            host.grants.grant_requested(plugin_id)
        for name in ("app.ping", "app.started"):
            host.declare_event(name, schema=ANY_OBJECT)
        host.on("*", lambda event: self.heard.append((event.name, event.source, event.payload)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await bounded(self.host.close(), 30)

    async def start(self, *plugin_ids: str) -> None:
        """Activate the victim and ``plugin_ids``, then take the snapshot
        that :meth:`assert_unharmed` compares against."""
        if self.victim:
            assert (await bounded(self.host.activate("victim"))).state is PluginState.ACTIVE
        for plugin_id in plugin_ids:
            await bounded(self.host.activate(plugin_id))
        await bounded(self.host.events_idle())
        self.snapshot()

    def snapshot(self) -> None:
        self._grants = {pid: self.host.grants.list(pid) for pid in self.host.plugins}
        self._victim_rows = self.rows("victim")

    def rows(self, plugin_id: str) -> dict[str, Any]:
        store = self.host.store
        return {key: json.loads(store.kv_get(plugin_id, key)) for key in store.kv_keys(plugin_id)}

    def stored(self, plugin_id: str, key: str) -> Any:
        text = self.host.store.kv_get(plugin_id, key)
        return None if text is None else json.loads(text)

    def state(self, plugin_id: str) -> PluginState:
        return self.host.plugins[plugin_id].state

    async def assert_unharmed(self, *, victim_heard: list[Any] | None = None) -> None:
        """The victim's rows and every grant are as they were, the victim
        still answers, and a fresh plugin activates and receives events."""
        host = self.host
        await bounded(host.events_idle())
        for plugin_id, grants in self._grants.items():
            assert host.grants.list(plugin_id) == grants, plugin_id
        if self.victim:
            rows = self.rows("victim")
            heard = rows.pop("heard", [])
            before = dict(self._victim_rows)
            before.pop("heard", None)
            assert rows == before
            if victim_heard is not None:
                assert heard == victim_heard
            assert self.state("victim") is PluginState.ACTIVE
            assert await bounded(host.invoke("victim", "victim.whisper", {})) == {"secret": VICTIM_SECRET}
        self.fresh_count += 1
        fresh = f"fresh-{self.fresh_count}"
        write_py(self.root, fresh, FRESH_PY, capabilities=["events.subscribe:app.ping", "storage"])
        await bounded(host.discover())
        host.grants.grant_requested(fresh)
        assert (await bounded(host.activate(fresh))).state is PluginState.ACTIVE
        report = await bounded(host.emit("app.ping", {"fresh": self.fresh_count}))
        assert fresh in report.delivered
        assert self.stored(fresh, "got") == {"fresh": self.fresh_count}


def strings_in(value: Any) -> list[str]:
    """Every string (keys included) inside a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings_in(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings_in(item)]
    return []


def assert_clean(seen: Any, *extra: str) -> None:
    """Nothing a plugin saw names a host secret, path, or Python internals."""
    text = "\n".join(strings_in(seen))
    for needle in (VICTIM_SECRET, CANARY, "Traceback", 'File "', "/hostrt/", *extra):
        assert needle not in text, (needle, text[:2000])


async def eventually(condition: Callable[[], bool], within: float = WAIT_S) -> None:
    """Poll a condition the host reaches on its own (a crash report runs as
    a task of its own); fail if it is not reached in time."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    return folder


#: Records every event it hears on PATTERN (name, source, payload) under "seen".
RECORDER_JS = """
module.exports = { activate(ctx) {
    ctx.events.on("PATTERN", async (payload, info) => {
        const seen = await ctx.storage.get("seen", []);
        seen.push([info.name, info.source, payload]);
        await ctx.storage.set("seen", seen);
    });
} };
"""
RECORDER_PY = """
def activate(ctx):
    def heard(payload, event):
        seen = ctx.storage.get("seen", [])
        seen.append([event["name"], event["source"], payload])
        ctx.storage.set("seen", seen)
    ctx.events.on("PATTERN", heard)
"""


def recorder(root: Path, plugin_id: str, pattern: str, *, python: bool = False) -> None:
    source = (RECORDER_PY if python else RECORDER_JS).replace("PATTERN", pattern)
    (write_py if python else write_js)(root, plugin_id, source,
                                       capabilities=[f"events.subscribe:{pattern}", "storage"])


# ---------------------------------------------------------------------------
# 1. identity: nothing a plugin sends makes it act as someone else


#: Raw protocol messages a plugin would like the host to read as its own.
RAW_MESSAGES: list[Any] = [
    ["call", 900001, "events.emit", ["victim.note", {"forged": True}]],
    ["call", 900002, "events.emit", ["app.started", {"forged": True}]],
    ["call", 900003, "events.on", ["*", 424242]],
    ["call", 900004, "events.on", ["victim.*", 424243]],
    ["call", 900005, "commands.register", ["victim.whisper", 424244]],
    ["call", 900006, "host.call", ["app.secret", {"from": "raw"}]],
    ["call", 900007, "storage.set", ["injected", True]],
    # handler ids the shim never picks, and the victim's ids (1-4) to dispose
    ["call", 900008, "events.on", ["attacker.*", 0]],
    ["call", 900009, "events.on", ["attacker.*", 9007199254740992]],
    ["call", 900010, "events.on", ["attacker.*", "1"]],
    ["call", 900011, "events.on", ["attacker.*", 1.5]],
    ["call", 900012, "events.off", [1]],
    ["call", 900013, "events.off", [2]],
    ["call", 900014, "commands.unregister", [3]],
    ["call", 900015, "commands.unregister", [4]],
    ["call", 900016, "events.emit", [{"toString": "victim.note"}, {}]],
    ["call", 900017, "host.call", [["app.secret"], None]],
]

#: Tries to smuggle RAW_MESSAGES into the outbox through the shim's own
#: pump: an entry id that is a string of JSON would be written into the
#: entry's "done" message as it is, closing a harmless "done" of its own
#: and opening the last one. The shim runs only entries with an integer id.
INJECTOR_JS = r"""
const RAW = __RAW__;
const injected = "999999,true,null]," + RAW.map((m) => JSON.stringify(m)).join(",") + ',["done",999998';
module.exports = {
  activate(ctx) {
    ctx.commands.register("attack", async () => {
      __hostrt_pump(JSON.stringify([["enter", injected, "call", ["later", []]]]));
      await ctx.storage.get("a");   // injected messages would leave with these exchanges
      await ctx.storage.get("b");
      return "sent";
    });
  },
  async later() { await null; return 1; },
};
""".replace("__RAW__", json.dumps(RAW_MESSAGES))


def test_js_raw_messages_cannot_be_smuggled_through_the_shims_pump(plugins: Path, tmp_path: Path) -> None:
    write_js(plugins, "attacker", INJECTOR_JS, commands=[{"name": "attack"}],
             capabilities=["storage", "events.publish:*", "events.subscribe:attacker.*"])
    recorder(plugins, "listener", "*")

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            host.expose("app.secret", lambda params: CANARY)
            await world.start("attacker", "listener")
            assert await bounded(host.invoke("attacker", "attack", {})) == "sent"
            await bounded(host.events_idle())
            assert world.rows("attacker") == {}  # not even the harmless storage write arrived
            assert world.heard == [] and host.bus.subscriptions("attacker") == []
            assert world.state("attacker") is PluginState.ACTIVE
            await world.assert_unharmed()

    run(main)


def test_js_raw_messages_act_only_as_the_sender(plugins: Path, tmp_path: Path) -> None:
    """Whatever a plugin's isolate sends (here: raw "call" messages handed
    to its channel as if the isolate had produced them, so the test does not
    depend on a way past the shim) is checked as that plugin's own: it can
    emit neither the victim's nor the host's event, cannot subscribe past
    its grant, cannot take the victim's command and cannot call a host
    method it lacks. The granted storage write shows the messages arrived."""
    write_js(plugins, "attacker", "module.exports = { activate() {} };",
             capabilities=["storage", "events.publish:*", "events.subscribe:attacker.*"])
    recorder(plugins, "listener", "*")

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            secret_calls: list[Any] = []
            host.expose("app.secret", lambda params: secret_calls.append(params) or CANARY)
            await world.start("attacker", "listener")
            channel = host.plugins["attacker"]._loaded._channel
            replies = channel._handle(json.dumps(RAW_MESSAGES))
            await bounded(channel.exchange(replies))
            await bounded(host.events_idle())
            assert world.rows("attacker") == {"injected": True}  # the raw messages did reach the host
            assert world.heard == [] and world.stored("listener", "seen") is None
            assert host.bus.subscriptions("attacker") == []
            assert sorted((c.plugin_id, c.name) for c in host.commands()) == [
                ("victim", "victim.announce"), ("victim", "victim.whisper")]
            assert secret_calls == []
            denied = {e.detail["capability"] for e in host.store.audit_log(plugin_id="attacker", action="denied")}
            # (a name that is not a string is checked as an empty one, and refused)
            assert denied == {"events.subscribe:*", "events.subscribe:victim.*", "host.call:app.secret",
                              "events.publish:", "host.call:"}
            assert world.state("attacker") is PluginState.ACTIVE
            assert len(host.bus.subscriptions("victim")) == 2  # its ids are its own
            assert (await bounded(host.emit("app.started", {"n": 1}))).failed == {}
            await world.assert_unharmed(victim_heard=[["app.started", "host", {"n": 1}]])

    run(main)


TAMPERER_JS = r"""
let C = null;
const out = [];
module.exports = {
  activate(ctx) {
    C = ctx;
    ctx.events.on("attacker.*", (payload, info) => { out[out.length] = ["own handler", info.name, info.source, payload]; });
    ctx.commands.register("attack", async () => {
      // Rewrite everything the shim could have used, then emit.
      const stringify = JSON.stringify;
      JSON.stringify = (v, ...rest) => stringify(v && typeof v === "object" ? { ...v, source: "host" } : v, ...rest);
      JSON.parse = () => ({ source: "host" });
      Reflect.apply = (f, self, args) => f.call(self, ...args);
      Function.prototype.call = function () { return "hijacked"; };
      Map.prototype.get = () => undefined;
      Map.prototype.set = function () { return this; };
      Array.prototype.push = function () { return 0; };
      String.prototype.slice = () => "host";
      Object.defineProperty(Object.prototype, "source", { get() { return "host"; }, set(v) {}, configurable: true });
      Object.defineProperty(Object.prototype, "plugin", { get() { return { id: "victim" }; }, configurable: true });
      try { C.plugin.id = "victim"; } catch (e) {}
      const results = [];
      for (const [name, payload] of [["attacker.note", { source: "host", name: "app.started", n: 1 }],
                                     ["victim.note", { n: 2 }], ["app.started", { n: 3 }]]) {
        try { await C.events.emit(name, payload); results[results.length] = "sent"; }
        catch (e) { results[results.length] = e.code; }
      }
      // A forged inbound event, fed to the shim's own pump: its handlers run,
      // in this isolate only.
      __hostrt_pump(stringify([["enter", 777777, "event",
        [[1], { forged: true }, { name: "app.started", source: "host" }]]]));
      results[results.length] = C.plugin.id;
      return results;
    });
    ctx.commands.register("heard", () => out);
  },
};
"""


def test_js_rewritten_shim_internals_change_neither_name_nor_source(plugins: Path, tmp_path: Path) -> None:
    """The attacker rewrites every global the shim might lean on and sends
    payload fields named "source" and "name": its event still arrives as
    its own, with the payload it sent, and it cannot emit anyone else's."""
    write_js(plugins, "attacker", TAMPERER_JS, commands=[{"name": "attack"}, {"name": "heard"}],
             events=[{"name": "attacker.note", "schema": ANY_OBJECT}],
             capabilities=["events.publish:*", "events.subscribe:attacker.*"])
    recorder(plugins, "js-listener", "*")
    recorder(plugins, "py-listener", "*", python=True)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            await world.start("attacker", "js-listener", "py-listener")
            results = await bounded(host.invoke("attacker", "attack", {}))
            assert results == ["sent", "E_EVENT", "E_EVENT", "attacker"]
            await bounded(host.events_idle())
            sent = {"source": "host", "name": "app.started", "n": 1}
            expected = [["attacker.note", "attacker", sent]]
            assert world.stored("js-listener", "seen") == expected
            assert world.stored("py-listener", "seen") == expected
            assert world.heard == [("attacker.note", "attacker", sent)]
            # its own handler heard its event as its own, and the forged one
            # (which never left the isolate) as forged
            heard = await bounded(host.invoke("attacker", "heard", {}))
            assert sorted(heard, key=json.dumps) == sorted([
                ["own handler", "attacker.note", "attacker", sent],
                ["own handler", "app.started", "host", {"forged": True}],
            ], key=json.dumps)
            rejected = host.store.audit_log(plugin_id="attacker", action="event.rejected")
            assert rejected == []  # refused as undeclared, before any payload check
            await world.assert_unharmed(victim_heard=[])

    run(main)


PUBLISHER_PY = """
def activate(ctx):
    def send(params):
        try:
            ctx.events.emit(params["name"], params["payload"])
            return "sent"
        except Exception as exc:
            return exc.code
    ctx.commands.register("send", send)
"""


def test_payload_fields_named_source_and_name_never_change_what_subscribers_are_told(
        plugins: Path, tmp_path: Path) -> None:
    """A Python publisher sends "source"/"name" fields, and subscribers that
    overwrite the event info they were given: every handler of every
    plugin is told the true name and source."""
    write_py(plugins, "attacker", PUBLISHER_PY, commands=[{"name": "send"}],
             events=[{"name": "attacker.note", "schema": ANY_OBJECT}], capabilities=["events.publish:attacker.*"])
    overwriter_js = """
    module.exports = { activate(ctx) {
        ctx.events.on("attacker.*", (payload, info) => { info.name = "app.started"; info.source = "host";
                                                         payload.source = "changed"; });
        ctx.events.on("attacker.*", (payload, info) => ctx.storage.set("second", [info.name, info.source, payload]));
    } };
    """
    overwriter_py = """
def activate(ctx):
    def first(payload, event):
        event["name"] = "app.started"
        event["source"] = "host"
        payload["source"] = "changed"
    def second(payload, event):
        ctx.storage.set("second", [event["name"], event["source"], payload])
    ctx.events.on("attacker.*", first)
    ctx.events.on("attacker.*", second)
"""
    write_js(plugins, "js-overwriter", overwriter_js, capabilities=["events.subscribe:attacker.*", "storage"])
    write_py(plugins, "py-overwriter", overwriter_py, capabilities=["events.subscribe:attacker.*", "storage"])
    recorder(plugins, "js-listener", "attacker.*")

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            await world.start("attacker", "js-overwriter", "py-overwriter", "js-listener")
            payload = {"source": "host", "name": "app.started", "event": {"source": "victim"}}
            assert await bounded(host.invoke("attacker", "send", {"name": "attacker.note", "payload": payload})) == "sent"
            await bounded(host.events_idle())
            truth = ["attacker.note", "attacker", payload]
            assert world.stored("js-overwriter", "second") == truth
            assert world.stored("py-overwriter", "second") == truth
            assert world.stored("js-listener", "seen") == [truth]
            assert world.heard == [tuple(truth)]
            await world.assert_unharmed(victim_heard=[])

    run(main)


SUBSCRIBER_JS = """
module.exports = { activate(ctx) {
    ctx.commands.register("try", async (params) => {
        const outcomes = [];
        for (const pattern of params.patterns) {
            try {
                await ctx.events.on(pattern, async (payload, info) => {
                    const got = await ctx.storage.get("got", []);
                    got.push([pattern, info.name]);
                    await ctx.storage.set("got", got);
                }).registered;
                outcomes.push("ok");
            } catch (e) { outcomes.push(e.code || e.name); }
        }
        return outcomes;
    });
} };
"""
SUBSCRIBER_PY = """
class Sly(str):
    def __eq__(self, other):
        return True
    def __hash__(self):
        return hash("attacker.x")

def activate(ctx):
    def try_(params):
        outcomes = []
        patterns = params["patterns"] + [Sly("victim.*"), 5, None]
        for pattern in patterns:
            def handler(payload, event, pattern=pattern):
                got = ctx.storage.get("got", [])
                got.append([str(pattern), event["name"]])
                ctx.storage.set("got", got)
            try:
                ctx.events.on(pattern, handler)
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(getattr(exc, "code", "refused"))
        return outcomes
    ctx.commands.register("try", try_)
"""
PATTERNS = {
    "*": "E_CAPABILITY",
    "victim.*": "E_CAPABILITY",
    "victim.note": "E_CAPABILITY",
    "*.note": "E_CAPABILITY",
    "attacker": "E_CAPABILITY",
    "attacker*": "E_CAPABILITY",
    "app.started": "E_CAPABILITY",
    "attacker.*:victim.*": "E_HOSTRT",
    "attacker.\\n*": "E_HOSTRT",
    "attacker..*": "E_HOSTRT",
    "": "E_HOSTRT",
    "attacker." + "x" * 200: "E_HOSTRT",
    "attacker.*": "ok",
    "attacker.x.*": "ok",
}


@pytest.mark.parametrize("language", ["js", "py"])
def test_subscriptions_past_the_grant_are_refused_and_hear_nothing(plugins: Path, tmp_path: Path,
                                                                   language: str) -> None:
    """Wider patterns, lookalikes, malformed and non-string patterns (and,
    from Python, a str subclass claiming to equal anything) are refused;
    only the covered subscriptions stand, and they hear only what they cover."""
    if language == "js":
        write_js(plugins, "attacker", SUBSCRIBER_JS, commands=[{"name": "try"}],
                 capabilities=["events.subscribe:attacker.*", "storage"])
    else:
        write_py(plugins, "attacker", SUBSCRIBER_PY.replace("try_", "attempt"), commands=[{"name": "try"}],
                 capabilities=["events.subscribe:attacker.*", "storage"])

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            await world.start("attacker")
            outcomes = await bounded(host.invoke("attacker", "try", {"patterns": list(PATTERNS)}))
            expected = list(PATTERNS.values()) + (["E_HOSTRT", "E_HOSTRT", "E_HOSTRT"] if language == "py" else [])
            assert outcomes == expected
            assert [p for p, _ in host.bus.subscriptions("attacker")] == ["attacker.*", "attacker.x.*"]
            assert await bounded(host.invoke("victim", "victim.announce", {"n": 1})) == "announced"
            await bounded(host.emit("app.started", {"n": 2}))
            await bounded(host.events_idle())
            assert world.stored("attacker", "got") is None
            await world.assert_unharmed(victim_heard=[["victim.note", "victim", {"n": 1}],
                                                      ["app.started", "host", {"n": 2}]])

    run(main)


COMMANDEER_JS = """
module.exports = { activate(ctx) {
    ctx.commands.register("try", async () => {
        const outcomes = [];
        for (const name of ["victim.announce", "victim.whisper", "victim.whisper", "attack.missing", "try"]) {
            try {
                await ctx.commands.register(name, () => ({ secret: "stolen" })).registered;
                outcomes.push("ok");
            } catch (e) { outcomes.push(e.code || e.name); }
        }
        return outcomes;
    });
} };
"""
COMMANDEER_PY = """
class Sly(str):
    def __eq__(self, other):
        return True
    def __hash__(self):
        return hash("victim.announce")

def activate(ctx):
    def attempt(params):
        outcomes = []
        for name in ["victim.announce", "victim.whisper", "victim.whisper", "attack.missing", "try",
                     Sly("victim.announce"), 7]:
            try:
                ctx.commands.register(name, lambda params: {"secret": "stolen"})
                outcomes.append("ok")
            except Exception as exc:
                outcomes.append(getattr(exc, "code", "refused"))
        return outcomes
    ctx.commands.register("try", attempt)
"""


@pytest.mark.parametrize("language", ["js", "py"])
def test_a_plugin_cannot_take_over_another_plugins_command(plugins: Path, tmp_path: Path, language: str) -> None:
    """A command name is the plugin's own: the attacker may declare one of
    the same name for itself, but the victim's stays the victim's, and
    undeclared, duplicate and disguised names are refused."""
    manifest = {"commands": [{"name": "try"}, {"name": "victim.whisper"}]}
    if language == "js":
        write_js(plugins, "attacker", COMMANDEER_JS, **manifest)
    else:
        write_py(plugins, "attacker", COMMANDEER_PY, **manifest)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            await world.start("attacker")
            outcomes = await bounded(host.invoke("attacker", "try", {}))
            expected = ["E_HOSTRT", "ok", "E_HOSTRT", "E_HOSTRT", "E_HOSTRT"]
            assert outcomes == expected + (["E_HOSTRT", "E_HOSTRT"] if language == "py" else [])
            assert sorted((c.plugin_id, c.name) for c in host.commands()) == [
                ("attacker", "try"), ("attacker", "victim.whisper"),
                ("victim", "victim.announce"), ("victim", "victim.whisper")]
            assert await bounded(host.invoke("attacker", "victim.whisper", {})) == {"secret": "stolen"}
            await world.assert_unharmed()

    run(main)


REACHER_PY = """
import functools

def activate(ctx):
    def attempt(params):
        disposable = ctx.events.on("attacker.*", lambda payload: None)
        try:
            ctx.host.call("app.nothing")
        except Exception as exc:
            refusal = exc
        attempts = [
            lambda: getattr(ctx.events, "_gate"),
            lambda: getattr(ctx.events, "_" + "handlers"),
            lambda: getattr(ctx.host, "_gate"),
            lambda: getattr(ctx.log, "_call"),
            lambda: getattr(ctx, "_events"),
            lambda: getattr(ctx.events.emit, "__self__"),
            lambda: getattr(ctx.events.on, "__func__"),
            lambda: getattr(ctx, "__dict__"),
            lambda: getattr(ctx.events, "__slots__"),
            lambda: getattr(disposable, "_undo"),
            lambda: getattr(disposable.dispose, "__closure__"),
            lambda: getattr(refusal, "__traceback__"),
            lambda: getattr(refusal, "__context__"),
            lambda: getattr(object, "__getattribute__")(ctx, "_events"),
            lambda: getattr(type(ctx.events), "mro")(),
            lambda: type(ctx.events)(None, None, None, None),
            lambda: "{0._gate}".format(ctx.events),
            lambda: "{0.emit.__self__}".format(ctx.events),
            lambda: "{0.events._handlers}".format(ctx),
            lambda: "{x._gate}".format_map({"x": ctx.host}),
            lambda: ctx.events["_gate"],
            lambda: super(type(ctx.events), ctx.events).emit,
            lambda: vars(ctx),
            lambda: dir(ctx),
            lambda: setattr(ctx, "events", None),
            lambda: functools.partial(ctx.events.emit, "victim.note")({"via": "partial"}),
            lambda: ctx.events.emit("app.started", {"forged": True}),
        ]
        outcomes = []
        for attack in attempts:
            try:
                value = attack()
                outcomes.append("LEAKED " + repr(value)[:100])
            except Exception as exc:
                outcomes.append("refused")
        return outcomes
    ctx.commands.register("try", attempt)
"""


def test_a_python_plugin_cannot_reach_the_gate_or_its_handler_table(plugins: Path, tmp_path: Path) -> None:
    """Every way a plugin author might try to get from a ctx object (or a
    Disposable, a bound method, a refusal) to the host-side gate or handler
    table is refused, and the plugin still acts as itself only."""
    write_py(plugins, "attacker", REACHER_PY, commands=[{"name": "try"}],
             capabilities=["events.subscribe:attacker.*", "events.publish:*"])

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            await world.start("attacker")
            outcomes = await bounded(host.invoke("attacker", "try", {}))
            assert [o for o in outcomes if o != "refused"] == []
            await bounded(host.events_idle())
            assert world.heard == []
            await world.assert_unharmed(victim_heard=[])

    run(main)


# ---------------------------------------------------------------------------
# 2. values: what crosses is plain JSON, read once, and copied for everyone


#: Checks, on every event, that nothing it received polluted its prototypes
#: (even after the usual ways a handler copies a payload), and stores what
#: it got.
PROTO_CHECKER_JS = """
module.exports = { activate(ctx) {
    ctx.events.on("*.note", async (payload, info) => {
        const clean = () => ({}).polluted === undefined && Object.prototype.polluted === undefined
            && [].polluted === undefined && typeof Object.prototype.source === "undefined";
        const report = {
            cleanOnArrival: clean(),
            plainPrototype: Object.getPrototypeOf(payload) === Object.prototype,
            ownProto: Object.prototype.hasOwnProperty.call(payload, "__proto__"),
            ownConstructor: Object.prototype.hasOwnProperty.call(payload, "constructor"),
            keys: Object.keys(payload),
            nestedPlain: Object.getPrototypeOf(payload.list[0]) === Object.prototype,
            source: info.source,
        };
        const spread = { ...payload };
        const parsed = JSON.parse(JSON.stringify(payload));
        const merged = Object.assign({}, payload);
        report.cleanAfterCopies = clean() && ({}).constructor === Object;
        const got = await ctx.storage.get("got", []);
        got.push([report, payload]);
        await ctx.storage.set("got", got);
    });
} };
"""
PROTO_PUBLISHER_JS = """
module.exports = { activate(ctx) {
    ctx.commands.register("send", async (params) => {
        // JSON.parse makes "__proto__" an own key, as the host's JSON does
        await ctx.events.emit("js-pub.note", JSON.parse(params.text));
        return "sent";
    });
} };
"""
PROTO_PAYLOAD = {
    "__proto__": {"polluted": "yes", "source": "host"},
    "constructor": {"prototype": {"polluted": "yes"}},
    "list": [{"__proto__": {"polluted": "yes"}, "toString": "not a function", "hasOwnProperty": 1}],
}


def test_proto_and_constructor_keys_arrive_as_plain_data_and_pollute_nothing(plugins: Path, tmp_path: Path) -> None:
    """Payloads with "__proto__", "constructor" and shadowing keys, from a
    Python publisher, a JavaScript publisher and the host, reach JavaScript
    subscribers as own data properties: no prototype changes, in the
    subscriber or anywhere else, and the payload round-trips unchanged."""
    write_py(plugins, "py-pub", PUBLISHER_PY, commands=[{"name": "send"}],
             events=[{"name": "py-pub.note", "schema": ANY_OBJECT}], capabilities=["events.publish:py-pub.*"])
    write_js(plugins, "js-pub", PROTO_PUBLISHER_JS, commands=[{"name": "send"}],
             events=[{"name": "js-pub.note", "schema": ANY_OBJECT}], capabilities=["events.publish:js-pub.*"])
    write_js(plugins, "checker", PROTO_CHECKER_JS, capabilities=["events.subscribe:*.note", "storage"])
    recorder(plugins, "py-listener", "*.note", python=True)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            host.declare_event("app.note", schema=ANY_OBJECT)
            await world.start("py-pub", "js-pub", "checker", "py-listener")
            assert await bounded(host.invoke("py-pub", "send", {"name": "py-pub.note", "payload": PROTO_PAYLOAD})) == "sent"
            assert await bounded(host.invoke("js-pub", "send", {"text": json.dumps(PROTO_PAYLOAD)})) == "sent"
            report = await bounded(host.emit("app.note", PROTO_PAYLOAD))
            assert sorted(report.delivered) == ["checker", "host", "py-listener", "victim"]
            await bounded(host.events_idle())
            got = world.stored("checker", "got")
            assert [payload for _, payload in got] == [PROTO_PAYLOAD] * 3
            for (report, _), source in zip(got, ["py-pub", "js-pub", "host"]):
                assert report == {
                    "cleanOnArrival": True, "plainPrototype": True, "ownProto": True, "ownConstructor": True,
                    "keys": ["__proto__", "constructor", "list"], "nestedPlain": True, "source": source,
                    "cleanAfterCopies": True,
                }
            assert [entry[2] for entry in world.stored("py-listener", "seen")] == [PROTO_PAYLOAD] * 3
            await world.assert_unharmed(victim_heard=[["app.note", "host", PROTO_PAYLOAD]])

    run(main)


#: Values a hostile JavaScript plugin sends: name -> (expression, what the
#: host receives, or None if the value must be refused in the isolate).
JS_VALUES: dict[str, tuple[str, Any]] = {
    "own toJSON": ("({ a: 1, toJSON() { return { source: 'host' }; } })", None),
    "inherited toJSON": ("(Object.prototype.toJSON = () => ({ source: 'host' }), { a: 2 })", {"a": 2}),
    "getter read once": ("({ get v() { reads += 1; return reads; } })", {"v": 1}),
    "proxy": ("new Proxy({}, { ownKeys: () => ['a', 'b'], getOwnPropertyDescriptor: () => "
              "({ value: 0, enumerable: true, configurable: true }), get: (t, k) => (k === 'a' ? 'A' : [k]) })",
              {"a": "A", "b": ["b"]}),
    "proxy that throws": ("new Proxy({}, { ownKeys() { throw new Error('trap'); } })", None),
    "proxy with a huge length": ("new Proxy([], { get: (t, k) => (k === 'length' ? 1e9 : 0) })", None),
    "cycle": ("(() => { const a = { b: {} }; a.b.a = a; return a; })()", None),
    "date": ("({ when: new Date(0) })", None),
    "map": ("({ m: new Map([[1, 2]]) })", None),
    "bigint": ("({ n: 10n })", None),
    "NaN": ("({ n: NaN })", None),
    "undefined in an array": ("[1, undefined]", None),
    "hole in an array": ("[1, , 3]", None),
    "function": ("({ f() {} })", None),
    "class instance": ("new (class Point { constructor() { this.x = 1; } })()", None),
    "symbol key and hidden property": ("Object.defineProperty({ [Symbol('s')]: 1, a: 3 }, 'hidden', "
                                       "{ value: 1, enumerable: false })", {"a": 3}),
    "null prototype": ("Object.assign(Object.create(null), { a: 4 })", {"a": 4}),
    "array with extra properties": ("Object.assign([5, 6], { extra: 7 })", [5, 6]),
    "undefined property": ("({ a: 8, b: undefined })", {"a": 8}),
}

JS_VALUE_SENDER = """
let reads = 0;
const make = (name) => {
    switch (name) {
CASES
    }
};
let C = null;
module.exports = { activate(ctx) {
    C = ctx;
    ctx.commands.register("send", async (params) => {
        let value;
        try { value = make(params.name); } catch (e) { return "cannot build: " + e.message; }
        try {
            if (params.where === "emit") await C.events.emit("attacker.note", { v: value });
            else if (params.where === "host.call") await C.host.call("app.record", { v: value });
            else return value;
            return "sent";
        } catch (e) {
            // the host's refusals carry a code; the isolate's own do not
            return e instanceof HostrtError ? e.code : "refused in the isolate (" + e.name + ")";
        } finally {
            delete Object.prototype.toJSON;
        }
    });
} };
"""


def js_value_sender() -> str:
    cases = "\n".join(f"        case {json.dumps(name)}: return {expr};" for name, (expr, _) in JS_VALUES.items())
    return JS_VALUE_SENDER.replace("CASES", cases)


@pytest.mark.parametrize("where", ["emit", "host.call", "result"])
def test_js_values_that_are_not_plain_json_never_reach_the_host(plugins: Path, tmp_path: Path, where: str) -> None:
    """toJSON, getters, Proxies, cycles and every other non-JSON value, as an
    event payload, as host method parameters and as a command result: each
    is refused in the isolate or read once into plain data, and what the
    subscribers, the host method or the host receive is exactly that data."""
    write_js(plugins, "attacker", js_value_sender(), commands=[{"name": "send"}],
             events=[{"name": "attacker.note", "schema": ANY_OBJECT}],
             capabilities=["events.publish:attacker.*", "host.call:app.record"])
    recorder(plugins, "js-listener", "attacker.*")
    recorder(plugins, "py-listener", "attacker.*", python=True)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            recorded: list[Any] = []
            host.expose("app.record", lambda params: recorded.append(params))
            await world.start("attacker", "js-listener", "py-listener")
            delivered: list[Any] = []
            for name, (_, expected) in JS_VALUES.items():
                params = {"name": name, "where": where}
                if where == "result":
                    if expected is None:
                        with pytest.raises(PluginError) as caught:
                            await bounded(host.invoke("attacker", "send", params))
                        assert "command 'send' failed: " in caught.value.reason
                        assert caught.value.reason.split(": ")[1] in ("TypeError", "RangeError", "Error"), caught.value
                    else:
                        assert await bounded(host.invoke("attacker", "send", params)) == expected, name
                    continue
                outcome = await bounded(host.invoke("attacker", "send", params))
                if expected is None:
                    assert outcome.startswith("refused in the isolate"), (name, outcome)
                else:
                    assert outcome == "sent", (name, outcome)
                    delivered.append({"v": expected})
            await bounded(host.events_idle())
            if where == "emit":
                for listener in ("js-listener", "py-listener"):
                    assert [entry[2] for entry in world.stored(listener, "seen") or []] == delivered
            elif where == "host.call":
                assert recorded == delivered
            assert world.state("attacker") is PluginState.ACTIVE
            await world.assert_unharmed(victim_heard=[])

    run(main)


PY_TRICKS = """
CALLED = []

class D(dict):
    def __getitem__(self, key):
        CALLED.append("D.__getitem__")
        return "forged"
    def __iter__(self):
        CALLED.append("D.__iter__")
        return iter(["forged"])
    def __len__(self):
        CALLED.append("D.__len__")
        return 1

class S(str):
    def __str__(self):
        CALLED.append("S.__str__")
        return "forged"
    def __repr__(self):
        CALLED.append("S.__repr__")
        return "forged"
    def __eq__(self, other):
        CALLED.append("S.__eq__")
        return True
    def __hash__(self):
        CALLED.append("S.__hash__")
        return 0

class L(list):
    def __iter__(self):
        CALLED.append("L.__iter__")
        return iter(["forged"])
    def __len__(self):
        CALLED.append("L.__len__")
        return 1

class I(int):
    def __repr__(self):
        CALLED.append("I.__repr__")
        return "1"

class T(tuple):
    def __iter__(self):
        CALLED.append("T.__iter__")
        return iter(["forged"])

class Trick:
    def __eq__(self, other):
        CALLED.append("Trick.__eq__")
        return True
    def __hash__(self):
        CALLED.append("Trick.__hash__")
        return 0
    def __str__(self):
        CALLED.append("Trick.__str__")
        return "{}"
    def __repr__(self):
        CALLED.append("Trick.__repr__")
        return "{}"
    def __len__(self):
        CALLED.append("Trick.__len__")
        return 0
    def __iter__(self):
        CALLED.append("Trick.__iter__")
        return iter([])

def make(name):
    if name == "dict subclass":
        return D(a=1)
    if name == "str subclass":
        return S("plain")
    if name == "str subclass key":
        return {S("a"): 1}
    if name == "list subclass":
        return L([1])
    if name == "int subclass":
        return I(1)
    if name == "object with dunders":
        return Trick()
    if name == "nested deep inside":
        return {"a": [[{"b": D()}]]}
    if name == "tuple subclass":
        return T((1, 2))
    if name == "set":
        return {1, 2}
    if name == "bytes":
        return b"x"
    if name == "nan":
        return float("nan")
    if name == "infinity":
        return float("-inf")
    if name == "int key":
        return {1: "x"}
    if name == "huge int":
        return 10 ** 5000

def activate(ctx):
    def send(params):
        value = make(params["name"])
        CALLED.clear()  # building it (a dict hashes its keys) is the plugin's own business
        where = params["where"]
        try:
            if where == "emit":
                ctx.events.emit("attacker.note", {"v": value})
            elif where == "emit name":
                ctx.events.emit(S("attacker.note"), {"v": 1})
            elif where == "host.call":
                ctx.host.call("app.record", {"v": value})
            elif where == "host.call name":
                ctx.host.call(S("app.record"), {"v": 1})
            else:
                return value
            outcome = "sent"
        except Exception as exc:
            outcome = getattr(exc, "code", "refused")
        return {"outcome": outcome, "called": CALLED}
    ctx.commands.register("send", send)
    ctx.commands.register("called", lambda params: CALLED)
"""
PY_TRICK_NAMES = ["dict subclass", "str subclass", "str subclass key", "list subclass", "int subclass",
                  "object with dunders", "nested deep inside", "tuple subclass", "set", "bytes", "nan", "infinity",
                  "int key", "huge int"]


@pytest.mark.parametrize("where", ["emit", "host.call", "result", "names"])
def test_python_values_with_dunder_tricks_are_refused_without_running_them(plugins: Path, tmp_path: Path,
                                                                        where: str) -> None:
    """dict/str/list/int subclasses, objects with __eq__/__hash__/__str__,
    and other values that are not plain JSON, as a payload, as host method
    parameters (checked on the host's loop), as a command result, and as
    the names of events and methods: all refused, and none of their
    methods ever ran (in the plugin or, worse, in the host)."""
    write_py(plugins, "attacker", PY_TRICKS, commands=[{"name": "send"}, {"name": "called"}],
             events=[{"name": "attacker.note", "schema": ANY_OBJECT}],
             capabilities=["events.publish:attacker.*", "host.call:app.record"])
    recorder(plugins, "js-listener", "attacker.*")

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            recorded: list[Any] = []
            host.expose("app.record", lambda params: recorded.append(params))
            await world.start("attacker", "js-listener")
            if where == "names":
                for call in ("emit name", "host.call name"):
                    answer = await bounded(host.invoke("attacker", "send", {"name": "set", "where": call}))
                    assert answer == {"outcome": "E_CAPABILITY", "called": []}
            for name in PY_TRICK_NAMES if where != "names" else []:
                params = {"name": name, "where": where}
                if where == "result":
                    with pytest.raises(PluginError) as caught:
                        await bounded(host.invoke("attacker", "send", params))
                    assert "not JSON" in caught.value.reason, (name, caught.value)
                    assert "forged" not in caught.value.message
                else:
                    answer = await bounded(host.invoke("attacker", "send", params))
                    assert answer == {"outcome": "E_PAYLOAD", "called": []}, name
            assert await bounded(host.invoke("attacker", "called", {})) == []
            await bounded(host.events_idle())
            assert recorded == [] and world.stored("js-listener", "seen") is None
            assert world.heard == []
            await world.assert_unharmed(victim_heard=[])

    run(main)


SURROGATE_JS = r"""
module.exports = { activate(ctx) {
    ctx.commands.register("send", async (params) => {
        const lone = "\ud800";
        let attempts = {
            "payload value": () => ctx.events.emit("attacker.note", { v: "a" + lone }),
            "payload key": () => ctx.events.emit("attacker.note", { ["k" + lone]: 1 }),
            "host.call params": () => ctx.host.call("app.record", { v: lone + "b" }),
            "pattern": () => ctx.events.on("attacker." + lone, () => {}).registered,
            "command name": () => ctx.commands.register("send" + lone, () => {}).registered,
        };
        if (params.names) {
            attempts = { "event name": () => ctx.events.emit("attacker.note" + lone, {}),
                         "host.call name": () => ctx.host.call("app.record" + lone, {}) };
        }
        const out = {};
        for (const [name, attempt] of Object.entries(attempts)) {
            try { await attempt(); out[name] = "sent"; } catch (e) { out[name] = e.code || e.name; }
        }
        return out;
    });
    ctx.commands.register("result", () => ({ v: "\udc00" }));
} };
"""
SURROGATE_PY = r"""
def activate(ctx):
    def send(params):
        lone = "\ud800"
        attempts = {
            "payload value": lambda: ctx.events.emit("attacker.note", {"v": "a" + lone}),
            "payload key": lambda: ctx.events.emit("attacker.note", {"k" + lone: 1}),
            "host.call params": lambda: ctx.host.call("app.record", {"v": lone + "b"}),
            "pattern": lambda: ctx.events.on("attacker." + lone, lambda p: None),
            "command name": lambda: ctx.commands.register("send" + lone, lambda p: None),
        }
        if params.get("names"):
            attempts = {"event name": lambda: ctx.events.emit("attacker.note" + lone, {}),
                        "host.call name": lambda: ctx.host.call("app.record" + lone, {})}
        out = {}
        for name, attempt in attempts.items():
            try:
                attempt()
                out[name] = "sent"
            except Exception as exc:
                out[name] = getattr(exc, "code", "refused")
        return out
    ctx.commands.register("send", send)
    ctx.commands.register("result", lambda params: {"v": "\udc00"})
"""


@pytest.mark.parametrize("language", ["js", "py"])
def test_lone_surrogates_are_refused_everywhere(plugins: Path, tmp_path: Path, language: str) -> None:
    """A lone surrogate is not Unicode text: in a payload value or key, in
    host method parameters, in a command result, in an event, method or
    command name and in a pattern it is refused, and nothing reaches a
    subscriber, the host method or the host. (In names, see the next test.)"""
    surrogate_attacker(plugins, language)
    recorder(plugins, "listener", "attacker.*", python=True)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            recorded: list[Any] = []
            host.expose("app.record", lambda params: recorded.append(params))
            await world.start("attacker", "listener")
            out = await bounded(host.invoke("attacker", "send", {}))
            assert out == {"payload value": "E_PAYLOAD", "payload key": "E_PAYLOAD", "host.call params": "E_PAYLOAD",
                           "pattern": "E_HOSTRT", "command name": "E_HOSTRT"}
            with pytest.raises((PayloadError, PluginError)):
                await bounded(host.invoke("attacker", "result", {}))
            await bounded(host.events_idle())
            assert recorded == [] and world.stored("listener", "seen") is None and world.heard == []
            assert host.bus.subscriptions("attacker") == []
            await world.assert_unharmed(victim_heard=[])

    run(main)


def surrogate_attacker(plugins: Path, language: str) -> None:
    manifest = dict(commands=[{"name": "send"}, {"name": "result"}],
                    events=[{"name": "attacker.note", "schema": ANY_OBJECT}],
                    capabilities=["events.publish:attacker.*", "events.subscribe:attacker.*", "host.call:app.*"])
    if language == "js":
        write_js(plugins, "attacker", SURROGATE_JS, **manifest)
    else:
        write_py(plugins, "attacker", SURROGATE_PY, **manifest)


@pytest.mark.parametrize("language", ["js", "py"])
def test_a_lone_surrogate_in_a_name_is_an_audited_capability_refusal(plugins: Path, tmp_path: Path,
                                                                     language: str) -> None:
    surrogate_attacker(plugins, language)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            recorded: list[Any] = []
            host.expose("app.record", lambda params: recorded.append(params))
            await world.start("attacker")
            out = await bounded(host.invoke("attacker", "send", {"names": True}))
            denied = host.store.audit_count(plugin_id="attacker", action="denied")
            await bounded(host.events_idle())
            assert recorded == [] and world.heard == []
            await world.assert_unharmed(victim_heard=[])
            assert out == {"event name": "E_CAPABILITY", "host.call name": "E_CAPABILITY"}
            assert denied == 2

    run(main)


def test_a_handler_error_with_a_lone_surrogate_cannot_hang_the_hosts_emit(plugins: Path, tmp_path: Path) -> None:
    write_js(plugins, "attacker", r"""
        module.exports = { activate(ctx) {
            ctx.events.on("app.ping", () => { throw new Error("bad \ud800 text"); });
        } };
    """, capabilities=["events.subscribe:app.ping"])

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            await world.start("attacker")
            try:
                report = await asyncio.wait_for(host.emit("app.ping", {"n": 1}), 2.0)
            except asyncio.TimeoutError:
                report = None
            assert report is not None, "host.emit never returned"
            assert "attacker" in report.failed
            assert host.store.audit_count(plugin_id="attacker", action="event.handler_failed") == 1
            await world.assert_unharmed(victim_heard=[["app.ping", "host", {"n": 1}]])

    run(main)


def test_an_activation_error_with_a_lone_surrogate_does_not_stop_the_other_plugins(plugins: Path,
                                                                                  tmp_path: Path) -> None:
    write_js(plugins, "attacker", r"""module.exports = { activate() { throw new Error("bad \ud800"); } };""")

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            states = await bounded(world.host.activate_all())
            assert states["attacker"] is PluginState.FAILED
            assert states["victim"] is PluginState.ACTIVE

    run(main)


#: Emits a payload of a chosen size or nesting depth and says what happened.
EDGE_JS = r"""
const nest = (depth) => { let v = []; for (let i = 1; i < depth; i++) v = [v]; return v; };
module.exports = { activate(ctx) {
    ctx.commands.register("emit", async (p) => {
        const payload = p.depth ? nest(p.depth) : { s: p.unit.repeat(p.n) };
        try { await ctx.events.emit(ctx.plugin.id + "." + p.event, payload); return "sent"; }
        catch (e) { return e instanceof HostrtError ? e.code : "refused in the isolate"; }
    });
} };
"""
EDGE_PY = """
def nest(depth):
    value = []
    for i in range(1, depth):
        value = [value]
    return value

def activate(ctx):
    def emit(p):
        payload = nest(p["depth"]) if p.get("depth") else {"s": p["unit"] * p["n"]}
        try:
            ctx.events.emit(ctx.plugin.id + "." + p["event"], payload)
            return "sent"
        except Exception as exc:
            return exc.code
    ctx.commands.register("emit", emit)
"""
#: Records the name, source, UTF-8 size and depth of what it hears.
MEASURER_JS = """
const depthOf = (v) => (Array.isArray(v) ? 1 + (v.length ? depthOf(v[0]) : 0) : 0);
const utf8 = (text) => {
    let n = 0;
    for (const ch of text) { const c = ch.codePointAt(0); n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }
    return n;
};
module.exports = { activate(ctx) {
    ctx.events.on("*", async (payload, info) => {
        const got = await ctx.storage.get("got", []);
        got.push([info.name, utf8(JSON.stringify(payload)), depthOf(payload)]);
        await ctx.storage.set("got", got);
    });
} };
"""
MEASURER_PY = """
import json

def depth_of(value):
    depth = 0
    while type(value) is list:
        depth += 1
        value = value[0] if value else None
    return depth

def activate(ctx):
    def heard(payload, event):
        got = ctx.storage.get("got", [])
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
        got.append([event["name"], len(text.encode("utf-8")), depth_of(payload)])
        ctx.storage.set("got", got)
    ctx.events.on("*", heard)
"""
MIB = 1024 * 1024


def test_payloads_at_and_past_the_size_and_depth_limits(plugins: Path, tmp_path: Path) -> None:
    """The size limit counts UTF-8 bytes of compact JSON exactly (one, two and
    four byte characters), nesting stops at 64 levels, and the largest
    payload allowed (2 MiB) crosses from Python to JavaScript: what is
    within the limits arrives whole, what is past them arrives nowhere."""
    events = [{"name": "note", "maxPayloadBytes": 1000}, {"name": "big", "maxPayloadBytes": 2 * MIB},
              {"name": "deep"}]
    for plugin_id, write, source in (("js-pub", write_js, EDGE_JS), ("py-pub", write_py, EDGE_PY)):
        write(plugins, plugin_id, source, commands=[{"name": "emit"}], capabilities=[f"events.publish:{plugin_id}.*"],
              events=[{**e, "name": f"{plugin_id}.{e['name']}"} for e in events])
    write_js(plugins, "js-measurer", MEASURER_JS, capabilities=["events.subscribe:*", "storage"])
    write_py(plugins, "py-measurer", MEASURER_PY, capabilities=["events.subscribe:*", "storage"])

    async def main() -> None:
        async with World(plugins, tmp_path, victim=False) as world:
            host = world.host
            await world.start("js-pub", "py-pub", "js-measurer", "py-measurer")
            expected: list[list[Any]] = []

            async def emit(plugin_id: str, outcome: str, **params: Any) -> None:
                assert await bounded(host.invoke(plugin_id, "emit", params)) == outcome, (plugin_id, params)

            for plugin_id in ("js-pub", "py-pub"):
                past = "refused in the isolate" if plugin_id == "js-pub" else "E_PAYLOAD"
                # '{"s":""}' is 8 bytes: 992 one-byte, 496 two-byte or 248 four-byte characters fill 1000
                for unit, n in (("x", 992), ("é", 496), ("\U0001F600", 248)):
                    await emit(plugin_id, "sent", event="note", unit=unit, n=n)
                    expected.append([f"{plugin_id}.note", 1000, 0])
                    await emit(plugin_id, "E_PAYLOAD", event="note", unit=unit, n=n + 1)
                # nesting: the same 64 levels from either language
                deepest = 64
                await emit(plugin_id, "sent", event="deep", depth=deepest)
                expected.append([f"{plugin_id}.deep", 2 * deepest, deepest])
                await emit(plugin_id, past, event="deep", depth=65)
                await emit(plugin_id, past, event="deep", depth=1000)
                # the largest payload, from either language
                n = 2 * MIB - 8
                await emit(plugin_id, "sent", event="big", unit="x", n=n)
                expected.append([f"{plugin_id}.big", n + 8, 0])
                await emit(plugin_id, past, event="big", unit="x", n=2 * MIB - 7)
            host.declare_event("app.deep")
            deep: list[Any] = []
            for _ in range(63):
                deep = [deep]
            await bounded(host.emit("app.deep", deep))
            expected.append(["app.deep", 128, 64])
            with pytest.raises(PayloadError, match="nested deeper than 64 levels"):
                await bounded(host.emit("app.deep", [deep]))
            await bounded(host.events_idle())
            assert world.stored("js-measurer", "got") == expected
            assert world.stored("py-measurer", "got") == expected
            await world.assert_unharmed()

    run(main)


MUTATING_PUBLISHER_JS = """
module.exports = { activate(ctx) {
    ctx.commands.register("send", async () => {
        const payload = { items: [1, 2], nested: { v: "original" } };
        const accepted = ctx.events.emit("js-pub.note", payload);    // not awaited yet
        payload.items.push("changed before the answer");
        payload.nested.v = "changed";
        await accepted;
        payload.items.length = 0;
        delete payload.nested;
        return "sent";
    });
} };
"""
MUTATING_PUBLISHER_PY = """
def activate(ctx):
    def send(params):
        payload = {"items": [1, 2], "nested": {"v": "original"}}
        ctx.events.emit("py-pub.note", payload)
        payload["items"].append("changed after emit")
        payload["nested"]["v"] = "changed"
        payload.clear()
        return "sent"
    ctx.commands.register("send", send)
"""
#: Two handlers: the first wrecks its copy, the second records what it got.
WRECKER_JS = """
module.exports = { activate(ctx) {
    ctx.events.on("*.note", (payload, info) => {
        payload.items.push("wrecked"); payload.nested.v = "wrecked"; delete payload.items; info.source = "wrecked";
    });
    ctx.events.on("*.note", async (payload, info) => {
        const got = await ctx.storage.get("got", []);
        got.push([info.source, payload]);
        await ctx.storage.set("got", got);
    });
} };
"""
WRECKER_PY = """
def activate(ctx):
    def wreck(payload, event):
        payload["items"].append("wrecked")
        payload["nested"]["v"] = "wrecked"
        payload.pop("items")
        event["source"] = "wrecked"
    def record(payload, event):
        got = ctx.storage.get("got", [])
        got.append([event["source"], payload])
        ctx.storage.set("got", got)
    ctx.events.on("*.note", wreck)
    ctx.events.on("*.note", record)
"""


def test_publishers_and_subscribers_mutating_their_values_affect_no_one_else(plugins: Path, tmp_path: Path) -> None:
    """A publisher that changes its payload right after emit (before and
    after the emit settles) and subscribers that wreck their copy: every
    handler of every plugin, and the host, gets the payload as emitted."""
    write_js(plugins, "js-pub", MUTATING_PUBLISHER_JS, commands=[{"name": "send"}],
             events=[{"name": "js-pub.note", "schema": ANY_OBJECT}], capabilities=["events.publish:js-pub.*"])
    write_py(plugins, "py-pub", MUTATING_PUBLISHER_PY, commands=[{"name": "send"}],
             events=[{"name": "py-pub.note", "schema": ANY_OBJECT}], capabilities=["events.publish:py-pub.*"])
    for plugin_id, write, source in (("a-js-wrecker", write_js, WRECKER_JS), ("b-py-wrecker", write_py, WRECKER_PY)):
        write(plugins, plugin_id, source, capabilities=["events.subscribe:*.note", "storage"])
    recorder(plugins, "c-listener", "*.note")

    async def main() -> None:
        async with World(plugins, tmp_path, victim=False) as world:
            host = world.host
            await world.start("js-pub", "py-pub", "a-js-wrecker", "b-py-wrecker", "c-listener")
            for publisher in ("js-pub", "py-pub"):
                assert await bounded(host.invoke(publisher, "send", {})) == "sent"
            await bounded(host.events_idle())
            original = {"items": [1, 2], "nested": {"v": "original"}}
            for wrecker in ("a-js-wrecker", "b-py-wrecker"):
                assert world.stored(wrecker, "got") == [["js-pub", original], ["py-pub", original]]
            assert world.stored("c-listener", "seen") == [
                ["js-pub.note", "js-pub", original], ["py-pub.note", "py-pub", original]]
            assert world.heard == [("js-pub.note", "js-pub", original), ("py-pub.note", "py-pub", original)]
            await world.assert_unharmed()

    run(main)


# ---------------------------------------------------------------------------
# 3. re-entrancy: loops end at the depth limit, cycles end at once


#: Handlers that answer their own event with the next one, each in its own way.
SELF_LOOPS = {
    "js-await": "await ctx.events.emit('loop.tick', next); ",
    "js-then": "Promise.resolve().then(() => ctx.events.emit('loop.tick', next)).catch(stop); return;",
    "js-microtask": "queueMicrotask(() => ctx.events.emit('loop.tick', next).catch(stop)); return;",
    "js-timer": "setTimeout(() => ctx.events.emit('loop.tick', next).catch(stop), 0); return;",
    "js-host-call-first": "await ctx.host.call('app.echo', {}); await ctx.events.emit('loop.tick', next); ",
}
SELF_LOOP_JS = """
module.exports = { activate(ctx) {
    const stop = (e) => ctx.storage.set("stopped", [e.code, e.message]);
    ctx.events.on("loop.tick", async (payload) => {
        const next = { n: payload.n + 1 };
        try { BODY } catch (e) { await stop(e); }
    });
    ctx.commands.register("start", () => ctx.events.emit("loop.tick", { n: 0 }));
} };
"""
SELF_LOOP_PY = """
def activate(ctx):
    def tick(payload):
        try:
            ctx.host.call("app.echo", {})
            ctx.events.emit("loop.tick", {"n": payload["n"] + 1})
        except Exception as exc:
            ctx.storage.set("stopped", [exc.code, str(exc)])
    ctx.events.on("loop.tick", tick)
    ctx.commands.register("start", lambda params: ctx.events.emit("loop.tick", {"n": 0}))
"""
LOOP_MANIFEST = dict(events=[{"name": "loop.tick", "schema": ANY_OBJECT}], commands=[{"name": "start"}],
                     capabilities=["events.publish:loop.tick", "events.subscribe:loop.tick", "storage",
                                   "host.call:app.*"])


@pytest.mark.parametrize("loop", [*SELF_LOOPS, "py"])
def test_a_handler_emitting_its_own_event_forever_stops_at_the_depth_limit(plugins: Path, tmp_path: Path,
                                                                           loop: str) -> None:
    """Awaited, through a promise, a microtask, a timer or after a host call
    (JavaScript), or straight (Python): an event re-emitted by its own
    handler is one level deeper each time and is refused past max_depth,
    with an audit entry; the plugin stays active and the host carries on."""
    if loop == "py":
        write_py(plugins, "looper", SELF_LOOP_PY, **LOOP_MANIFEST)
    else:
        write_js(plugins, "looper", SELF_LOOP_JS.replace("BODY", SELF_LOOPS[loop]), **LOOP_MANIFEST)

    async def main() -> None:
        async with World(plugins, tmp_path, events=EventPolicy(max_depth=6)) as world:
            host = world.host
            host.expose("app.echo", lambda params: params)
            await world.start("looper")
            await bounded(host.invoke("looper", "start", {}))
            await bounded(host.events_idle())
            await eventually(lambda: world.stored("looper", "stopped") is not None)
            code, message = world.stored("looper", "stopped")
            assert code == "E_EVENT_DEPTH" and "emitted at depth 7" in message
            # the command's emit is depth 1; handlers of n = 0..5 emit depths 2..7
            assert [payload["n"] for name, source, payload in world.heard] == list(range(6))
            [rejected] = host.store.audit_log(plugin_id="looper", action="event.rejected")
            assert rejected.detail["code"] == "E_EVENT_DEPTH"
            assert world.state("looper") is PluginState.ACTIVE
            await world.assert_unharmed(victim_heard=[])

    run(main)


def test_a_timer_started_in_a_handler_keeps_its_depth_when_the_loop_runs_late(plugins: Path,
                                                                              tmp_path: Path) -> None:
    source = """
    module.exports = { activate(ctx) {
        setInterval(() => {}, 4);          // an unrelated timer, started at depth 0
        ctx.events.on("loop.tick", (payload) => {
            setTimeout(() => ctx.events.emit("loop.tick", { n: payload.n + 1 })
                .catch((e) => ctx.storage.set("stopped", [e.code, payload.n])), 6);
            return ctx.host.call("app.slow");
        });
        ctx.commands.register("start", () => ctx.events.emit("loop.tick", { n: 0 }));
    } };
    """
    write_js(plugins, "looper", source, **LOOP_MANIFEST)

    async def main() -> None:
        async with World(plugins, tmp_path, events=EventPolicy(max_depth=4)) as world:
            host = world.host
            host.expose("app.slow", lambda params: time.sleep(0.03))
            await world.start("looper")
            await bounded(host.invoke("looper", "start", {}))
            await eventually(lambda: world.stored("looper", "stopped") is not None or len(world.heard) > 12)
            heard = [payload["n"] for _, _, payload in world.heard]
            await bounded(host.deactivate("looper"))
            assert heard == [0, 1, 2, 3] and world.stored("looper", "stopped") == ["E_EVENT_DEPTH", 3]

    run(main)


PING_PONG_JS = """
module.exports = { activate(ctx) {
    ctx.events.on("*", async (payload, info) => {
        if (info.name !== "app.serve" && info.name !== "py-pong.ball") return;
        await ctx.host.call("app.echo", payload);             // answer from a later exchange
        try { await ctx.events.emit("js-ping.ball", { n: payload.n + 1 }); }
        catch (e) { await ctx.storage.set("stopped", [e.code, payload.n]); }
    });
} };
"""
PING_PONG_PY = """
def activate(ctx):
    def ball(payload):
        try:
            ctx.events.emit("py-pong.ball", {"n": payload["n"] + 1})
        except Exception as exc:
            ctx.storage.set("stopped", [exc.code, payload["n"]])
    ctx.events.on("js-ping.ball", ball)
"""


def test_ping_pong_between_a_js_and_a_python_plugin_stops_at_the_depth_limit(plugins: Path, tmp_path: Path) -> None:
    write_js(plugins, "js-ping", PING_PONG_JS, events=[{"name": "js-ping.ball", "schema": ANY_OBJECT}],
             capabilities=["events.publish:js-ping.*", "events.subscribe:*", "storage", "host.call:app.echo"])
    write_py(plugins, "py-pong", PING_PONG_PY, events=[{"name": "py-pong.ball", "schema": ANY_OBJECT}],
             capabilities=["events.publish:py-pong.*", "events.subscribe:js-ping.*", "storage"])

    async def main() -> None:
        async with World(plugins, tmp_path, events=EventPolicy(max_depth=7)) as world:
            host = world.host
            host.declare_event("app.serve", schema=ANY_OBJECT)
            host.expose("app.echo", lambda params: params)
            await world.start("js-ping", "py-pong")
            for serve in (0, 100):  # depth belongs to a chain: the rally can be served again
                assert "js-ping" in (await bounded(host.emit("app.serve", {"n": serve}))).delivered
                await bounded(host.events_idle())
                # serve (1), ping n+1 (2), pong n+2 (3) ... ping n+5 (6), pong n+6 (7): ping's answer is refused
                assert world.stored("js-ping", "stopped") == ["E_EVENT_DEPTH", serve + 6]
                assert world.stored("py-pong", "stopped") is None
            balls = [(name, payload["n"]) for name, _, payload in world.heard if name != "app.serve"]
            assert len(balls) == 12
            assert world.state("js-ping") is PluginState.ACTIVE and world.state("py-pong") is PluginState.ACTIVE
            await world.assert_unharmed(victim_heard=[["app.serve", "host", {"n": 0}], ["app.serve", "host", {"n": 100}]])

    run(main)


CALLBACK_PY = """
def activate(ctx):
    def call(params):
        try:
            return {"result": ctx.host.call(params["method"], {})}
        except Exception as exc:
            return {"code": exc.code, "message": str(exc)}
    ctx.commands.register("call", call)
    def heard(payload):
        ctx.storage.set("heard", payload)
    ctx.events.on("app.changed", heard)
"""
CALLBACK_JS = """
module.exports = { activate(ctx) {
    ctx.commands.register("call", async (params) => {
        try { return { result: await ctx.host.call(params.method, {}) }; }
        catch (e) { return { code: e.code, message: e.message }; }
    });
    ctx.events.on("app.changed", (payload) => ctx.storage.set("heard", payload));
} };
"""


@pytest.mark.parametrize("language", ["py", "js"])
def test_a_host_method_calling_its_waiting_caller_back_ends_at_once(plugins: Path, tmp_path: Path,
                                                                    language: str) -> None:
    """A command handler whose host method invokes that same command fails
    at once with LifecycleError (seen by the plugin as a plain
    E_HOST_METHOD), and one whose host method emits an event it handles
    gets it later, listed as pending: no deadlock, no timeout."""
    write = write_py if language == "py" else write_js
    write(plugins, "caller", CALLBACK_PY if language == "py" else CALLBACK_JS, commands=[{"name": "call"}],
          capabilities=["host.call:app.*", "events.subscribe:app.changed", "storage"], limits={"timeoutMs": 4000})

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            host.declare_event("app.changed", schema=ANY_OBJECT)
            errors: list[str] = []

            async def again(params: Any) -> Any:
                try:
                    return await host.invoke("caller", "call", {"method": "app.again"})
                except LifecycleError as exc:
                    errors.append(exc.message)
                    raise

            async def notify(params: Any) -> Any:
                report = await host.emit("app.changed", {"by": "notify"})
                return {"pending": report.pending, "delivered": sorted(report.delivered)}

            host.expose("app.again", again)
            host.expose("app.notify", notify)
            await world.start("caller")
            started = time.monotonic()
            answer = await bounded(host.invoke("caller", "call", {"method": "app.again"}))
            assert answer == {"code": "E_HOST_METHOD", "message": "host method 'app.again' failed"}
            assert len(errors) == 1 and "would deadlock" in errors[0]
            answer = await bounded(host.invoke("caller", "call", {"method": "app.notify"}))
            if language == "py":  # its thread is busy with the command: it hears the event afterwards
                assert answer == {"result": {"pending": ["caller"], "delivered": ["host", "victim"]}}
            else:  # an isolate takes the event while its command waits: pending or delivered, never both
                assert answer["result"] in ({"pending": ["caller"], "delivered": ["host", "victim"]},
                                            {"pending": [], "delivered": ["caller", "host", "victim"]})
            assert time.monotonic() - started < 2.0  # nowhere near the 4 s time limit
            await bounded(host.events_idle())
            assert world.stored("caller", "heard") == {"by": "notify"}
            assert world.state("caller") is PluginState.ACTIVE
            await world.assert_unharmed(victim_heard=[["app.changed", "host", {"by": "notify"}]])

    run(main)


def caller_p(method: str) -> str:
    """Plugin P: command "go" calls host method ``method`` and answers its
    result or error; command "poke" answers at once."""
    return f"""
def activate(ctx):
    def go(params):
        try:
            return {{"result": ctx.host.call("{method}", {{}})}}
        except Exception as exc:
            return {{"code": exc.code, "message": str(exc)}}
    ctx.commands.register("go", go)
    ctx.commands.register("poke", lambda params: "poked")
"""


CYCLE_Q_PY = """
def activate(ctx):
    def relay(params):
        try:
            return {"result": ctx.host.call("app.to-p", {})}
        except Exception as exc:
            return {"code": exc.code, "message": str(exc)}
    ctx.commands.register("relay", relay)
"""
CYCLE_Q_JS = """
module.exports = { activate(ctx) {
    ctx.commands.register("relay", async () => {
        try { return { result: await ctx.host.call("app.to-p", {}) }; }
        catch (e) { return { code: e.code, message: e.message }; }
    });
} };
"""


@pytest.mark.parametrize("q_language", ["py", "js"])
def test_a_cycle_across_two_plugins_through_host_methods_ends_at_once(plugins: Path, tmp_path: Path,
                                                                      q_language: str) -> None:
    """P's command calls a host method that invokes Q, whose command calls a
    host method that invokes P back: P is waiting on that chain, so the
    second invoke fails at once and the whole chain unwinds."""
    write_py(plugins, "p-plugin", caller_p("app.to-q"), commands=[{"name": "go"}, {"name": "poke"}],
             capabilities=["host.call:app.*"], limits={"timeoutMs": 4000})
    (write_py if q_language == "py" else write_js)(
        plugins, "q-plugin", CYCLE_Q_PY if q_language == "py" else CYCLE_Q_JS, commands=[{"name": "relay"}],
        capabilities=["host.call:app.*"], limits={"timeoutMs": 4000})

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            refused: list[str] = []

            async def to_q(params: Any) -> Any:
                return await host.invoke("q-plugin", "relay", {})

            async def to_p(params: Any) -> Any:
                try:
                    return await host.invoke("p-plugin", "poke", {})
                except LifecycleError as exc:
                    refused.append(exc.message)
                    raise HostMethodError("p is busy", code="E_BUSY") from None

            host.expose("app.to-q", to_q)
            host.expose("app.to-p", to_p)
            await world.start("p-plugin", "q-plugin")
            started = time.monotonic()
            answer = await bounded(host.invoke("p-plugin", "go", {}))
            assert answer == {"result": {"code": "E_BUSY", "message": "p is busy"}}
            assert len(refused) == 1 and "'p-plugin' is waiting on this code" in refused[0]
            assert time.monotonic() - started < 2.0
            assert await bounded(host.invoke("p-plugin", "poke", {})) == "poked"
            await world.assert_unharmed()

    run(main)


CHAIN_Q = """
def activate(ctx):
    def work(payload):
        try:
            out = {"result": ctx.host.call(payload["method"], {})}
        except Exception as exc:
            out = {"code": exc.code, "message": str(exc)}
        seen = ctx.storage.get("seen", [])
        seen.append([payload["method"], out])
        ctx.storage.set("seen", seen)
    ctx.events.on("app.work", work)
"""


@pytest.mark.parametrize("busy", [False, True], ids=["idle-inbox", "busy-inbox"])
def test_a_cycle_through_an_event_is_detected_whatever_the_subscribers_inbox_holds(
        plugins: Path, tmp_path: Path, busy: bool) -> None:
    """P's command calls a host method that emits an event; Q's handler calls
    a host method that invokes P back. P waits on that event, so the invoke
    must fail at once -- also when Q was still busy with an earlier event
    when P's arrived."""
    write_py(plugins, "p-plugin", caller_p("app.announce"), commands=[{"name": "go"}, {"name": "poke"}],
             capabilities=["host.call:app.*"], limits={"timeoutMs": 3000})
    write_py(plugins, "q-plugin", CHAIN_Q, capabilities=["host.call:app.*", "events.subscribe:app.work", "storage"],
             limits={"timeoutMs": 1000})

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            host.declare_event("app.work", schema=ANY_OBJECT)
            entered, release, announced = asyncio.Event(), asyncio.Event(), asyncio.Event()

            async def hold(params: Any) -> str:
                entered.set()
                await release.wait()
                return "held"

            async def announce(params: Any) -> Any:
                announced.set()
                report = await host.emit("app.work", {"method": "app.back"})
                return {"delivered": sorted(report.delivered), "failed": sorted(report.failed)}

            async def back(params: Any) -> Any:
                try:
                    return await host.invoke("p-plugin", "poke", {})
                except LifecycleError:
                    raise HostMethodError("p waits on this", code="E_CYCLE") from None

            for name, fn in (("app.hold", hold), ("app.announce", announce), ("app.back", back)):
                host.expose(name, fn)
            await world.start("p-plugin", "q-plugin")
            first = None
            if busy:  # Q is still handling a host event when P's event is queued for it
                first = asyncio.ensure_future(host.emit("app.work", {"method": "app.hold"}))
                await bounded(entered.wait())
            go = asyncio.ensure_future(host.invoke("p-plugin", "go", {}))
            await bounded(announced.wait())
            release.set()
            answer = await bounded(go)
            if first is not None:
                await bounded(first)
            await bounded(host.events_idle())
            seen = world.stored("q-plugin", "seen")
            assert seen[-1] == ["app.back", {"code": "E_CYCLE", "message": "p waits on this"}]
            assert answer == {"result": {"delivered": ["host", "q-plugin", "victim"], "failed": []}}
            assert world.state("q-plugin") is PluginState.ACTIVE  # not stopped by its time limit
            await world.assert_unharmed()

    run(main)


# ---------------------------------------------------------------------------
# 4. exhaustion: floods are bounded and hurt only the flooder (or its victim)


FLOOD_JS = """
module.exports = { activate(ctx) {
    ctx.commands.register("flood", async (params) => {
        const results = await Promise.allSettled(
            Array.from({ length: params.times }, (_, i) => ctx.events.emit("flood.note", { i })));
        const codes = {};
        for (const r of results) {
            const key = r.status === "fulfilled" ? "sent" : r.reason.code;
            codes[key] = (codes[key] || 0) + 1;
        }
        return codes;
    });
} };
"""
FLOOD_PY = """
def activate(ctx):
    def flood(params):
        codes = {}
        for i in range(params["times"]):
            try:
                ctx.events.emit("flood.note", {"i": i})
                key = "sent"
            except Exception as exc:
                key = exc.code
            codes[key] = codes.get(key, 0) + 1
        return codes
    ctx.commands.register("flood", flood)
"""


@pytest.mark.parametrize("language", ["js", "py"])
def test_an_emit_flood_is_cut_by_the_rate_limit(plugins: Path, tmp_path: Path, language: str) -> None:
    """Hundreds of emits at once (un-awaited from JavaScript, a tight loop
    from Python): the burst goes through, the rest is refused with
    RateLimitError and audited, subscribers get exactly what was accepted."""
    manifest = dict(commands=[{"name": "flood"}], events=[{"name": "flood.note", "schema": ANY_OBJECT}],
                    capabilities=["events.publish:flood.*"])
    (write_js if language == "js" else write_py)(plugins, "flooder", FLOOD_JS if language == "js" else FLOOD_PY,
                                                 **manifest)
    recorder(plugins, "listener", "flood.*", python=True)

    async def main() -> None:
        async with World(plugins, tmp_path, events=EventPolicy(rate_per_s=1, burst=20)) as world:
            host = world.host
            await world.start("flooder", "listener")
            codes = await bounded(host.invoke("flooder", "flood", {"times": 300}))
            # the burst, and whatever one per second refilled while the flood ran
            assert 20 <= codes["sent"] < 25 and codes["sent"] + codes["E_RATE_LIMIT"] == 300
            await bounded(host.events_idle())
            assert [entry[2]["i"] for entry in world.stored("listener", "seen")] == list(range(codes["sent"]))
            assert world.state("flooder") is PluginState.ACTIVE
            await world.assert_unharmed(victim_heard=[])
            # the audit log counts every refusal, repeats folded into one entry with a count
            assert host.store.audit_count(plugin_id="flooder", action="event.rejected") <= 2
            await bounded(host.deactivate("flooder"))
            assert rejections(host, "flooder") == codes["E_RATE_LIMIT"]

    run(main)


def test_filling_a_slow_plugins_inbox_drops_events_for_that_plugin_only(plugins: Path, tmp_path: Path) -> None:
    """A publisher floods while one subscriber is stuck in a host call: that
    subscriber's inbox fills and it alone misses events (logged, audited
    against it, reported); the publisher is not refused anything and a
    fast subscriber receives every event."""
    write_js(plugins, "flooder", FLOOD_JS, commands=[{"name": "flood"}],
             events=[{"name": "flood.note", "schema": ANY_OBJECT}], capabilities=["events.publish:flood.*"])
    slow = """
    module.exports = { activate(ctx) {
        ctx.events.on("flood.note", async (payload) => {
            await ctx.host.call("app.hold");
            const got = await ctx.storage.get("got", []);
            got.push(payload.i);
            await ctx.storage.set("got", got);
        });
    } };
    """
    write_js(plugins, "slow", slow, capabilities=["events.subscribe:flood.*", "host.call:app.hold", "storage"],
             limits={"timeoutMs": 5000})
    recorder(plugins, "fast", "flood.*", python=True)

    async def main() -> None:
        async with World(plugins, tmp_path, events=EventPolicy(inbox_size=8, rate_per_s=1000, burst=1000)) as world:
            host = world.host
            entered, release = asyncio.Event(), asyncio.Event()

            async def hold(params: Any) -> None:
                entered.set()
                await release.wait()

            host.expose("app.hold", hold)
            await world.start("flooder", "slow", "fast")
            assert await bounded(host.invoke("flooder", "flood", {"times": 1})) == {"sent": 1}
            await bounded(entered.wait())  # "slow" is stuck on event 0 from here on
            for flood in range(6):  # rounds no larger than an inbox, so that only the stuck plugin drops
                assert await bounded(host.invoke("flooder", "flood", {"times": 8})) == {"sent": 8}
                await eventually(lambda: len(world.stored("fast", "seen") or []) == 1 + 8 * (flood + 1))
            release.set()
            await bounded(host.events_idle())
            assert world.stored("slow", "got") == [0, *range(8)]  # the one in hand and the first eight queued
            assert [entry[2]["i"] for entry in world.stored("fast", "seen")] == [0] + list(range(8)) * 6
            assert host.store.audit_count(plugin_id="slow", action="event.dropped") == 40
            assert host.store.audit_count(action="event.dropped") == 40
            assert host.store.audit_count(plugin_id="flooder", action="event.rejected") == 0
            assert all(world.state(p) is PluginState.ACTIVE for p in ("flooder", "slow", "fast"))
            await world.assert_unharmed(victim_heard=[])

    run(main)


def test_thousands_of_unawaited_host_calls_run_at_most_eight_at_a_time(plugins: Path, tmp_path: Path) -> None:
    """3000 host calls fired without awaiting: the host function never runs
    more than eight at once for the plugin, every call is answered with
    its own result, and the host serves others meanwhile."""
    source = """
    module.exports = { activate(ctx) {
        ctx.commands.register("fire", async (params) => {
            const calls = Array.from({ length: params.n }, (_, i) => ctx.host.call("app.work", { i }));
            const answers = await Promise.all(calls);
            return answers.every((a, i) => a.i === i);
        });
    } };
    """
    write_js(plugins, "flooder", source, commands=[{"name": "fire"}], capabilities=["host.call:app.work"],
             limits={"timeoutMs": 5000})

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            load = {"now": 0, "most": 0, "total": 0}

            async def work(params: Any) -> Any:
                load["now"] += 1
                load["total"] += 1
                load["most"] = max(load["most"], load["now"])
                try:
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                finally:
                    load["now"] -= 1
                return params

            host.expose("app.work", work)
            await world.start("flooder")
            fire = asyncio.ensure_future(host.invoke("flooder", "fire", {"n": 3000}))
            await eventually(lambda: load["total"] > 100)
            started = time.monotonic()
            assert "victim" in (await bounded(host.emit("app.ping", {"during": "flood"}))).delivered
            assert time.monotonic() - started < 1.0
            assert await bounded(fire) is True
            assert load == {"now": 0, "most": 8, "total": 3000}
            await world.assert_unharmed(victim_heard=[["app.ping", "host", {"during": "flood"}]])

    run(main)


def test_revoking_host_call_stops_the_calls_still_waiting_for_a_slot(plugins: Path, tmp_path: Path) -> None:
    source = """
    module.exports = { activate(ctx) {
        ctx.commands.register("fire", async (params) => {
            const results = await Promise.allSettled(
                Array.from({ length: params.n }, (_, i) => ctx.host.call("app.work", { i })));
            const codes = {};
            for (const r of results) {
                const key = r.status === "fulfilled" ? "ok" : r.reason.code;
                codes[key] = (codes[key] || 0) + 1;
            }
            return codes;
        });
    } };
    """
    write_js(plugins, "caller", source, commands=[{"name": "fire"}], capabilities=["host.call:app.work"],
             limits={"timeoutMs": 5000})

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            load = {"now": 0, "after": 0}
            gate = asyncio.Event()
            revoked = False

            async def work(params: Any) -> Any:
                load["now"] += 1
                load["after"] += revoked
                try:
                    await gate.wait()
                finally:
                    load["now"] -= 1
                return params

            host.expose("app.work", work)
            await world.start("caller")
            fire = asyncio.ensure_future(host.invoke("caller", "fire", {"n": 200}))
            await eventually(lambda: load["now"] == 8)  # eight running, 192 waiting for a slot
            host.grants.revoke("caller", "host.call:app.work")
            revoked = True
            gate.set()
            codes = await bounded(fire)
            assert load["after"] == 0, f"{load['after']} calls ran after the revoke"
            assert codes == {"ok": 8, "E_CAPABILITY": 192}

    run(main)


CHURN_JS = """
let heard = 0;
module.exports = { activate(ctx) {
    ctx.commands.register("churn", async (params) => {
        const handler = () => { heard += 1; };
        for (let i = 0; i < params.n; i++) ctx.events.on("app.ping", handler).dispose();   // never awaited
        for (let i = 0; i < params.n / 4; i++) {
            const sub = ctx.events.on("app.ping", handler);
            await sub.registered;
            await sub.dispose();
            const cmd = ctx.commands.register("spare", () => "spare");
            await cmd.registered;
            await cmd.dispose();
        }
        await ctx.events.on("app.ping", handler).registered;   // the one that stays
        await ctx.commands.register("spare", () => "kept").registered;
        return "done";
    });
    ctx.commands.register("heard", () => heard);
} };
"""
CHURN_PY = """
HEARD = []

def activate(ctx):
    def handler(payload):
        HEARD.append(payload)
    def churn(params):
        for i in range(params["n"]):
            ctx.events.on("app.ping", handler).dispose()
            if i % 4 == 0:
                ctx.commands.register("spare", lambda p: "spare").dispose()
        ctx.events.on("app.ping", handler)
        ctx.commands.register("spare", lambda p: "kept")
        return "done"
    ctx.commands.register("churn", churn)
    ctx.commands.register("heard", lambda params: len(HEARD))
"""


@pytest.mark.parametrize("language", ["js", "py"])
def test_subscribe_and_dispose_churn_leaves_nothing_behind(plugins: Path, tmp_path: Path, language: str) -> None:
    """Thousands of subscriptions and command registrations made and disposed
    (from JavaScript also without awaiting anything): the bus and the
    command list hold only what stands at the end, well under a limit of
    ten subscriptions, and an event reaches the one remaining handler once."""
    manifest = dict(commands=[{"name": "churn"}, {"name": "heard"}, {"name": "spare"}],
                    capabilities=["events.subscribe:app.ping"], limits={"timeoutMs": 5000})
    (write_js if language == "js" else write_py)(plugins, "churner", CHURN_JS if language == "js" else CHURN_PY,
                                                 **manifest)

    async def main() -> None:
        async with World(plugins, tmp_path, events=EventPolicy(max_subscriptions=10)) as world:
            host = world.host
            await world.start("churner")
            assert await bounded(host.invoke("churner", "churn", {"n": 2000})) == "done"
            assert len(host.bus.subscriptions("churner")) == 1
            assert len(host.bus.subscriptions("victim")) == 2
            assert [c.name for c in host.commands() if c.plugin_id == "churner"] == ["churn", "heard", "spare"]
            assert await bounded(host.invoke("churner", "spare", {})) == "kept"
            assert (await bounded(host.emit("app.ping", {"n": 1}))).failed == {}
            assert await bounded(host.invoke("churner", "heard", {})) == 1
            await world.assert_unharmed(victim_heard=[["app.ping", "host", {"n": 1}]])

    run(main)


STUCK = {
    "js-handler-spins": ("js", "ctx.events.on('app.ping', () => { for (;;) {} });"),
    "js-handler-never-settles": ("js", "ctx.events.on('app.ping', () => new Promise(() => {}));"),
    "js-handler-spins-later": ("js", "ctx.events.on('app.ping', async () => { await ctx.host.call('app.echo'); "
                                     "for (;;) {} });"),
    "js-command-never-settles": ("js", "ctx.commands.register('stuck', () => new Promise(() => {}));"),
    "py-handler-spins": ("py", "ctx.events.on('app.ping', spin)"),
    "py-command-spins": ("py", "ctx.commands.register('stuck', spin)"),
}


@pytest.mark.parametrize("case", list(STUCK))
def test_handlers_that_never_finish_fail_only_their_plugin(plugins: Path, tmp_path: Path, case: str) -> None:
    """An event or command handler that spins or never settles is stopped at
    its time limit: the plugin is failed and unplugged from the bus and
    the command list, and everyone else carries on."""
    language, line = STUCK[case]
    manifest = dict(commands=[{"name": "stuck"}], capabilities=["events.subscribe:app.ping", "host.call:app.echo"],
                    limits={"timeoutMs": 150})
    if language == "js":
        write_js(plugins, "stuck", f"module.exports = {{ activate(ctx) {{ {line} }} }};", **manifest)
    else:
        write_py(plugins, "stuck", f"def spin(payload):\n    while True:\n        pass\n\n"
                                   f"def activate(ctx):\n    {line}\n", **manifest)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            host.expose("app.echo", lambda params: params)
            await world.start("stuck")
            started = time.monotonic()
            if "command" in case:
                with pytest.raises(PluginError) as caught:
                    await bounded(host.invoke("stuck", "stuck", {}))
                error = caught.value
            else:
                report = await bounded(host.emit("app.ping", {"n": 1}))
                assert "victim" in report.delivered
                error = report.failed["stuck"]
            assert error.code == "E_TIMEOUT"
            assert time.monotonic() - started < 3.0
            await eventually(lambda: world.state("stuck") is PluginState.FAILED)
            assert host.bus.subscriptions("stuck") == []
            assert [c for c in host.commands() if c.plugin_id == "stuck"] == []
            heard = [["app.ping", "host", {"n": 1}]] if "command" not in case else []
            await world.assert_unharmed(victim_heard=heard)

    run(main)


HUGE_RESULTS_JS = """
module.exports = { activate(ctx) {
    ctx.commands.register("big", (params) => {
        const chunk = "x".repeat(params.chunk);
        return params.shared ? new Array(params.count).fill(chunk) : chunk;
    });
} };
"""
HUGE_RESULTS_PY = """
def activate(ctx):
    def big(params):
        chunk = "x" * params["chunk"]
        return [chunk] * params["count"] if params["shared"] else chunk
    ctx.commands.register("big", big)
"""


@pytest.mark.parametrize("language", ["js", "py"])
def test_command_results_past_their_limit_are_refused(plugins: Path, tmp_path: Path, language: str) -> None:
    """Results over the declared maxPayloadBytes are refused with PayloadError
    (JavaScript refuses anything past 2 Mi characters in the isolate, even
    a small array that repeats one big string), quickly, and the plugin
    keeps answering."""
    (write_js if language == "js" else write_py)(
        plugins, "bloater", HUGE_RESULTS_JS if language == "js" else HUGE_RESULTS_PY,
        commands=[{"name": "big", "maxPayloadBytes": 65536}], limits={"timeoutMs": 3000})

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            await world.start("bloater")
            assert await bounded(host.invoke("bloater", "big", {"chunk": 65534, "shared": False})) == "x" * 65534
            with pytest.raises(PayloadError, match="the limit is 65536 bytes"):
                await bounded(host.invoke("bloater", "big", {"chunk": 65535, "shared": False}))
            with pytest.raises(PayloadError):
                await bounded(host.invoke("bloater", "big", {"chunk": 1000, "shared": True, "count": 100}))
            if language == "js":
                for params in ({"chunk": 3 * MIB, "shared": False}, {"chunk": MIB, "shared": True, "count": 1000}):
                    started = time.monotonic()
                    with pytest.raises(PluginError, match="RangeError: result is too large"):
                        await bounded(host.invoke("bloater", "big", params))
                    assert time.monotonic() - started < 1.0
            assert world.state("bloater") is PluginState.ACTIVE
            assert await bounded(host.invoke("bloater", "big", {"chunk": 3, "shared": True, "count": 2})) == ["xxx"] * 2
            await world.assert_unharmed()

    run(main)


def test_a_python_command_result_is_refused_before_the_host_builds_its_json(plugins: Path, tmp_path: Path) -> None:
    write_py(plugins, "bloater", HUGE_RESULTS_PY, commands=[{"name": "big", "maxPayloadBytes": 65536}],
             limits={"timeoutMs": 3000})

    async def main() -> None:
        async with World(plugins, tmp_path, victim=False) as world:
            host = world.host
            await world.start("bloater")
            tracemalloc.start()
            try:
                with pytest.raises(PayloadError):
                    await bounded(host.invoke("bloater", "big", {"chunk": MIB, "shared": True, "count": 64}))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak < 16 * MIB, f"{peak / MIB:.0f} MiB allocated to refuse a 64 KiB result"

    run(main)


# ---------------------------------------------------------------------------
# 5. lifecycle: a plugin that is going or gone acts on nothing, hears nothing


KEEPER_JS = """
let C = null;
const tryAll = async (tag) => {
    const out = {};
    for (const [what, attempt] of [
        ["emit", () => C.events.emit("keeper.note", { tag })],
        ["host.call", () => C.host.call("app.record", { tag })],
        ["events.on", () => C.events.on("app.*", () => C.host.call("app.record", { tag: "handler" })).registered],
        ["commands.register", () => C.commands.register("late", () => "late").registered],
    ]) {
        try { await attempt(); out[what] = "ok"; } catch (e) { out[what] = e.code; }
    }
    return out;
};
module.exports = {
    activate(ctx) { C = ctx; },
    deactivate() {
        // work that outlives deactivate: a timer, and a loop of host calls
        setTimeout(() => tryAll("timer"), 0);
        (async () => { for (;;) { await C.host.call("app.record", { tag: "loop" }); } })().catch(() => {});
        return tryAll("during").then((out) => C.storage.set("during", out));
    },
};
"""
KEEPER_PY = """
def try_all(ctx, tag):
    out = {}
    attempts = [
        ("emit", lambda: ctx.events.emit("keeper.note", {"tag": tag})),
        ("host.call", lambda: ctx.host.call("app.record", {"tag": tag})),
        ("events.on", lambda: ctx.events.on("app.*", lambda p: ctx.host.call("app.record", {"tag": "handler"}))),
        ("commands.register", lambda: ctx.commands.register("late", lambda p: "late")),
    ]
    for what, attempt in attempts:
        try:
            attempt()
            out[what] = "ok"
        except Exception as exc:
            out[what] = exc.code
    return out

def activate(ctx):
    def hold(params):
        ctx.host.call("app.hold")      # returns once the host is deactivating this plugin
        return try_all(ctx, "in flight")
    ctx.commands.register("hold", hold)

def deactivate(ctx):
    ctx.storage.set("during", try_all(ctx, "during"))
"""


@pytest.mark.parametrize("language", ["js", "py"])
def test_a_kept_ctx_acts_on_nothing_once_its_plugin_is_going(plugins: Path, tmp_path: Path, language: str) -> None:
    """While it is being deactivated a plugin may still emit its own events
    and call host methods (documented), but can no longer subscribe or
    register commands; once it is inactive, nothing it set going (timers,
    loops of host calls, a command still in flight) reaches the host."""
    manifest = dict(commands=[{"name": "hold"}, {"name": "late"}],
                    events=[{"name": "keeper.note", "schema": ANY_OBJECT}], limits={"timeoutMs": 3000},
                    capabilities=["events.publish:keeper.*", "events.subscribe:app.*", "host.call:app.*", "storage"])
    (write_js if language == "js" else write_py)(plugins, "keeper", KEEPER_JS if language == "js" else KEEPER_PY,
                                                 **manifest)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            records: list[tuple[str, PluginState]] = []
            entered, release = asyncio.Event(), asyncio.Event()
            host.expose("app.record", lambda params: records.append((params["tag"], world.state("keeper"))))

            async def hold(params: Any) -> None:
                entered.set()
                await release.wait()

            host.expose("app.hold", hold)
            await world.start("keeper")
            in_flight = None
            if language == "py":
                in_flight = asyncio.ensure_future(host.invoke("keeper", "hold", {}))
                await bounded(entered.wait())
            going = asyncio.ensure_future(host.deactivate("keeper"))
            await eventually(lambda: world.state("keeper") is not PluginState.ACTIVE)
            release.set()
            record = await bounded(going)
            assert record.state is PluginState.INACTIVE and record.error is None
            # (whether it may still emit its own events is the next test's business)
            refused = {"host.call": "ok", "events.on": "E_STATE", "commands.register": "E_STATE"}
            during = world.stored("keeper", "during")
            outcomes = [during] + ([await bounded(in_flight)] if in_flight is not None else [])
            for outcome in outcomes:
                assert {k: v for k, v in outcome.items() if k != "emit"} == refused
                assert outcome["emit"] in ("ok", "E_EVENT")
            done = len(records)
            await bounded(host.emit("app.ping", {"after": True}))
            await bounded(host.events_idle())
            assert len(records) == done  # nothing more once it is inactive
            assert all(state is PluginState.DEACTIVATING for _, state in records), records
            assert "handler" not in {tag for tag, _ in records}
            emitted = [payload["tag"] for name, source, payload in world.heard if name == "keeper.note"]
            # what deactivate (and, in JavaScript, a timer it set, which may fire while deactivate
            # awaits) emitted while the plugin was still deactivating; nothing after
            expected = {tag for tag, outcome in zip(["during", "in flight"], outcomes) if outcome["emit"] == "ok"}
            assert expected <= set(emitted) <= expected | {"timer"} and len(emitted) == len(set(emitted))
            assert host.bus.subscriptions("keeper") == [] and [c for c in host.commands() if c.plugin_id == "keeper"] == []
            assert (await bounded(host.activate("keeper"))).state is PluginState.ACTIVE  # afresh, with nothing left over
            assert host.bus.subscriptions("keeper") == []
            await world.assert_unharmed(victim_heard=[["app.ping", "host", {"after": True}]])

    run(main)


HELD_SUBSCRIBER_JS = """
module.exports = { activate(ctx) {
    ctx.events.on("app.tick", async (payload) => {
        await ctx.host.call("app.record", payload);
        if (payload.hold) await ctx.host.call("app.hold");
    });
} };
"""
HELD_SUBSCRIBER_PY = """
def activate(ctx):
    def tick(payload):
        ctx.host.call("app.record", payload)
        if payload.get("hold"):
            ctx.host.call("app.hold")
    ctx.events.on("app.tick", tick)
"""


async def held_delivery(world: World) -> tuple[list[Any], asyncio.Event, list[asyncio.Future[Any]]]:
    """Emit four events to "sub", whose handler is stuck on the first: the
    other three wait in its inbox."""
    host = world.host
    host.declare_event("app.tick", schema=ANY_OBJECT)
    received: list[Any] = []
    entered, release = asyncio.Event(), asyncio.Event()

    async def hold(params: Any) -> None:
        entered.set()
        await release.wait()

    host.expose("app.record", lambda params: received.append(params["n"]))
    host.expose("app.hold", hold)
    await world.start("sub")
    emits = [asyncio.ensure_future(host.emit("app.tick", {"n": 1, "hold": True}))]
    await bounded(entered.wait())
    emits += [asyncio.ensure_future(host.emit("app.tick", {"n": n})) for n in (2, 3, 4)]
    await eventually(lambda: len(host.bus._inboxes["sub"].queue) == 3)  # routed into the inbox
    return received, release, emits


def held_subscriber(plugins: Path, language: str, *capabilities: str) -> None:
    (write_js if language == "js" else write_py)(
        plugins, "sub", HELD_SUBSCRIBER_JS if language == "js" else HELD_SUBSCRIBER_PY,
        capabilities=["events.subscribe:app.tick", "host.call:app.*", *capabilities], limits={"timeoutMs": 400})


@pytest.mark.parametrize("language", ["js", "py"])
def test_events_queued_for_a_plugin_deactivated_before_delivery_are_skipped(plugins: Path, tmp_path: Path,
                                                                            language: str) -> None:
    held_subscriber(plugins, language)

    async def main() -> None:
        async with World(plugins, tmp_path, victim=False) as world:
            host = world.host
            received, release, emits = await held_delivery(world)
            going = asyncio.ensure_future(host.deactivate("sub"))
            await eventually(lambda: world.state("sub") is not PluginState.ACTIVE)
            release.set()
            assert (await bounded(going)).state is PluginState.INACTIVE
            reports = await bounded(asyncio.gather(*emits))
            assert "sub" in reports[0].delivered or "sub" in reports[0].failed
            assert [r.skipped for r in reports[1:]] == [["sub"]] * 3
            assert all("sub" not in r.delivered and "sub" not in r.failed for r in reports[1:])
            report = await bounded(host.emit("app.tick", {"n": 5}))
            assert "sub" not in report.delivered + report.skipped + list(report.failed) + report.pending
            assert received == [1]
            await world.assert_unharmed()

    run(main)


@pytest.mark.parametrize("language", ["js", "py"])
def test_revoking_events_subscribe_skips_the_events_already_queued(plugins: Path, tmp_path: Path,
                                                                   language: str) -> None:
    held_subscriber(plugins, language)

    async def main() -> None:
        async with World(plugins, tmp_path, victim=False) as world:
            host = world.host
            received, release, emits = await held_delivery(world)
            host.grants.revoke("sub", "events.subscribe:app.tick")
            release.set()
            reports = await bounded(asyncio.gather(*emits))
            assert "sub" in reports[0].delivered  # it was under way already
            assert [r.skipped for r in reports[1:]] == [["sub"]] * 3
            assert received == [1]
            assert world.state("sub") is PluginState.ACTIVE
            host.grants.grant("sub", "events.subscribe:app.tick")
            assert "sub" in (await bounded(host.emit("app.tick", {"n": 5}))).delivered
            assert received == [1, 5]
            await world.assert_unharmed()

    run(main)


# ---------------------------------------------------------------------------
# 6. what plugins see of host failures: codes and messages, nothing else


CALLER_JS = """
module.exports = { activate(ctx) {
    ctx.commands.register("call", async (params) => {
        try { return { result: await ctx.host.call(params.method, params.params) }; }
        catch (e) { return { code: e.code, message: e.message, name: e.name, stack: String(e.stack) }; }
    });
} };
"""
CALLER_PY = """
def activate(ctx):
    def call(params):
        try:
            return {"result": ctx.host.call(params["method"], params.get("params"))}
        except Exception as exc:
            return {"code": exc.code, "message": str(exc), "args": [str(a) for a in exc.args]}
    ctx.commands.register("call", call)
"""


def caller(plugins: Path, language: str, *methods: str) -> None:
    (write_js if language == "js" else write_py)(
        plugins, "caller", CALLER_JS if language == "js" else CALLER_PY, commands=[{"name": "call"}],
        capabilities=[f"host.call:{m}" for m in methods] or ["host.call:app.*"])


@pytest.mark.parametrize("language", ["js", "py"])
def test_host_method_failures_reach_plugins_as_codes_only(plugins: Path, tmp_path: Path, language: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Host functions that raise with a canary in the message (plain
    exceptions and hostrt's own errors raised by host code, nested
    invokes that fail), return something that is not JSON or too large:
    the plugin gets a code and a generic message; the host's log gets the
    canary and the traceback."""
    caller(plugins, language)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            from hostrt.errors import StorageError

            def plain(params: Any) -> Any:
                raise RuntimeError(f"{CANARY} at {tmp_path}/secrets.ini")

            async def keyed(params: Any) -> Any:
                await asyncio.sleep(0)
                return {"k": 1}[CANARY]

            def hostrt_error(params: Any) -> Any:
                raise StorageError(f"{CANARY}: database at {tmp_path}")

            async def lifecycle(params: Any) -> Any:
                raise LifecycleError(CANARY)

            async def nested(params: Any) -> Any:
                return await host.invoke("victim", "victim.missing", {"why": CANARY})

            async def timeout(params: Any) -> Any:
                await asyncio.wait_for(asyncio.Event().wait(), 0.001)

            host.expose("app.plain", plain)
            host.expose("app.keyed", keyed)
            host.expose("app.hostrt", hostrt_error)
            host.expose("app.lifecycle", lifecycle)
            host.expose("app.nested", nested)
            host.expose("app.timeout", timeout)
            host.expose("app.odd", lambda params: {CANARY: {1, 2}})
            host.expose("app.large", lambda params: CANARY * 100, result_max_bytes=100)
            host.expose("app.paged", lambda params, page: {"not": CANARY}, max_page_size=5)
            await world.start("caller")
            answers = {}
            for method in ("plain", "keyed", "hostrt", "lifecycle", "nested", "timeout", "odd", "large", "paged"):
                answers[method] = await bounded(host.invoke("caller", "call", {"method": f"app.{method}"}))
            for method in ("plain", "keyed", "hostrt", "lifecycle", "nested", "timeout", "paged"):
                answer = answers[method]
                assert (answer["code"], answer["message"]) == ("E_HOST_METHOD", f"host method 'app.{method}' failed")
            assert answers["odd"]["code"] == "E_HOST_METHOD" and "not JSON" in answers["odd"]["message"]
            assert answers["large"]["code"] == "E_PAYLOAD"
            assert_clean(answers, str(tmp_path), "RuntimeError", "KeyError", "StorageError", "LifecycleError",
                         "CommandNotFoundError", "TimeoutError")
            assert world.state("caller") is PluginState.ACTIVE
            await world.assert_unharmed()

    run(main)
    logged = "\n".join(r.getMessage() + repr(r.exc_info) for r in caplog.records if r.name == "hostrt.hostmethods")
    assert CANARY in logged  # the host's developers see it; the plugin did not


@pytest.mark.parametrize("language", ["js", "py"])
def test_payload_errors_of_host_code_inside_a_method_do_not_reach_the_plugin(plugins: Path, tmp_path: Path,
                                                                             language: str) -> None:
    caller(plugins, language)

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            host.declare_event("app.ledger", schema={"type": "object", "properties": {"n": {"type": "integer"}}})

            async def audited(params: Any) -> Any:
                await host.emit("app.ledger", {"n": CANARY})  # a host bug: the audit record does not fit
                return "done"

            host.expose("app.audited", audited)
            await world.start("caller")
            answer = await bounded(host.invoke("caller", "call", {"method": "app.audited"}))
            assert (answer["code"], answer["message"]) == ("E_HOST_METHOD", "host method 'app.audited' failed")
            assert_clean(answer, "app.ledger")

    run(main)


@pytest.mark.parametrize("language", ["js", "py"])
def test_a_plugin_may_still_emit_its_own_events_from_deactivate(plugins: Path, tmp_path: Path,
                                                                language: str) -> None:
    source = {
        "js": """
            module.exports = { activate() {}, async deactivate(ctx) {
                try { await ctx.events.emit("keeper.note", { tag: "bye" }); await ctx.storage.set("bye", "sent"); }
                catch (e) { await ctx.storage.set("bye", e.code); }
            } };
        """,
        "py": """
def activate(ctx):
    pass

def deactivate(ctx):
    try:
        ctx.events.emit("keeper.note", {"tag": "bye"})
        ctx.storage.set("bye", "sent")
    except Exception as exc:
        ctx.storage.set("bye", exc.code)
""",
    }[language]
    (write_js if language == "js" else write_py)(plugins, "keeper", source, capabilities=[
        "events.publish:keeper.*", "storage"], events=[{"name": "keeper.note", "schema": ANY_OBJECT}])

    async def main() -> None:
        async with World(plugins, tmp_path, victim=False) as world:
            await world.start("keeper")
            assert (await bounded(world.host.deactivate("keeper"))).error is None
            await bounded(world.host.events_idle())
            assert world.stored("keeper", "bye") == "sent"
            assert world.heard == [("keeper.note", "keeper", {"tag": "bye"})]

    run(main)


PAGING = [
    ({"limit": 10**9}, {"limit": 5, "offset": 0}),
    ({"limit": 3, "offset": 98}, {"limit": 3, "offset": 98}),
    (None, {"limit": 2, "offset": 0}),
    ({"limit": 0}, "E_PAYLOAD"),
    ({"limit": -1}, "E_PAYLOAD"),
    ({"limit": True}, "E_PAYLOAD"),
    ({"limit": 2.5}, "E_PAYLOAD"),
    ({"limit": "5"}, "E_PAYLOAD"),
    ({"limit": None}, "E_PAYLOAD"),
    ({"offset": -1}, "E_PAYLOAD"),
    ({"offset": 2**60}, "E_PAYLOAD"),
    ({"offset": 1e308}, "E_PAYLOAD"),
    ([1, 2], "E_PAYLOAD"),
    ("all of it", "E_PAYLOAD"),
]


@pytest.mark.parametrize("language", ["js", "py"])
def test_paging_parameters_cannot_make_a_host_method_fetch_past_its_cap(plugins: Path, tmp_path: Path,
                                                                        language: str) -> None:
    """Huge, negative, fractional, boolean, textual and missing limits and
    offsets, and parameters that are not an object: the host function only
    ever runs with a window inside its cap, and is not called at all for
    refused parameters."""
    caller(plugins, language, "app.docs")

    async def main() -> None:
        async with World(plugins, tmp_path) as world:
            host = world.host
            windows: list[tuple[int, int]] = []

            def docs(params: Any, page: Any) -> Any:
                windows.append((page.offset, page.limit))
                return [f"doc{i}" for i in range(100)]

            host.expose("app.docs", docs, page_size=2, max_page_size=5)
            await world.start("caller")
            for params, expected in PAGING:
                answer = await bounded(host.invoke("caller", "call", {"method": "app.docs", "params": params}))
                if isinstance(expected, str):
                    assert answer["code"] == expected, (params, answer)
                else:
                    page = answer["result"]
                    assert (page["limit"], page["offset"]) == (expected["limit"], expected["offset"]), params
                    assert len(page["items"]) == min(expected["limit"], 100 - expected["offset"])
            assert windows == [(0, 5), (98, 3), (0, 2)]
            await world.assert_unharmed()

    run(main)
