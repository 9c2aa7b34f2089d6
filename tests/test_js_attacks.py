"""Attacks on the JavaScript runtime, written as a hostile plugin author would.

Every plugin here is real JavaScript, loaded by a real :class:`Host` into its
own V8 isolate over a real SQLite file, and written by someone who has read
``js_api/bootstrap.js``, ``js_channel.py`` and ``js_engine.py``. The shim in
the isolate is a convenience the attacker may rewrite at will; what has to
hold is on the host side:

* a plugin is known by the isolate it runs in, so nothing it sends makes it
  act as another plugin, and every call is checked against the stored grant
  at the moment it is made;
* whatever it does to its own isolate (rewritten intrinsics, calls to the
  raw pump, hostile values, runaway code, memory bombs) ends in a refused
  call or in this plugin failing within its time limit -- never in the host
  failing, stalling or growing without bound;
* nothing it can read back names a host path, carries a Python traceback or
  a Python exception class.

So every test checks both halves: the attack was stopped, and nothing leaked
or changed -- the victim plugin's rows and every grant are what they were,
the attacker has no rows beyond what its grants allow, the victim keeps
answering, and a fresh plugin can still be activated.

An attack found to succeed stays here marked ``xfail(strict=True)`` with the
hole as its reason, so that closing the hole turns it into a failure (XPASS)
and the marker has to go.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import sqlite3
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import hostrt
from hostrt import Host, PluginState
from hostrt.context import ActivationContext
from hostrt.errors import BudgetExceededError, HostrtError, PluginError
from hostrt.host import HostPolicy
from hostrt.runtimes.js import LoadedJavaScriptPlugin
from hostrt.runtimes.js_channel import RawJSON

from conftest import finishes

HOSTRT_DIR = str(Path(hostrt.__file__).resolve().parent)

VICTIM_SECRET = "victim-secret-5e1d"
VICTIM_NAME = "victoria"
ALL = ["storage", "settings.read", "settings.write"]
SETTINGS = {
    "type": "object",
    "properties": {"name": {"type": "string", "default": "world", "maxLength": 20}},
    "additionalProperties": False,
}

MIB = 1024 * 1024
#: The attacker's limits. The time limit is short because many tests wait
#: for it to run out; 16 MiB keeps memory attacks cheap.
TIMEOUT_MS = 400
TIMEOUT_S = TIMEOUT_MS / 1000
MEMORY_MB = 16
#: How late after its time limit a plugin may be reported failed.
SLACK_S = 0.1
#: Loading a plugin (a new isolate and the shim) comes on top of its time
#: limit when the attack runs at the top level of plugin.js.
LOAD_S = 0.3
#: Longest the host's event loop may go without running a ready task while
#: a plugin misbehaves. Generous because two cores are shared with V8's own
#: threads (garbage collection of a bombed heap) and the rest of the suite;
#: the failures this guards against stall the loop for seconds.
LOOP_GAP_S = 0.25
#: Growth of the host process that counts as bounded for a 16 MiB plugin.
RSS_BOUND = 512 * MIB
#: What the shim says when an ArrayBuffer allocation would pass the limit.
OVER_LIMIT = re.compile(
    r"^(new \w+\(\)|\w+\(\)): \d+ more bytes of ArrayBuffer memory would pass this plugin's limit of "
    + str(MEMORY_MB * MIB) + r" bytes \(\d+ in use\)$"
)

VICTIM_JS = """
let C = null;
module.exports = {
  activate(ctx) { C = ctx; },
  async check() {
    return {
      secret: await C.storage.get("secret"),
      name: await C.settings.get("name"),
      keys: await C.storage.keys(),
    };
  },
};
"""

FRESH_JS = """
let C = null;
module.exports = {
  activate(ctx) { C = ctx; },
  async ping(value) { await C.storage.set("ping", value); return await C.storage.get("ping"); },
};
"""


# --------------------------------------------------------------------------
# the world every attack runs in


def run(coro: Any, timeout: float = 60.0) -> Any:
    """Run ``coro`` on a fresh loop in a thread; fail instead of hanging."""
    return finishes(lambda: asyncio.run(coro), timeout)


def write_js(root: Path, plugin_id: str, source: str, *, limits: dict[str, int] | None = None) -> None:
    folder = root / plugin_id
    folder.mkdir(parents=True)
    manifest: dict[str, Any] = {
        "schemaVersion": 1,
        "id": plugin_id,
        "name": plugin_id.title(),
        "version": "1.0.0",
        "main": "plugin.js",
        "capabilities": ALL,
        "settings": SETTINGS,
    }
    if limits:
        manifest["limits"] = limits
    (folder / "plugin.json").write_text(json.dumps(manifest))
    (folder / "plugin.js").write_text(textwrap.dedent(source).lstrip("\n"))


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row that matters, through a connection of its own (nothing the
    host's Store caches can hide a change)."""
    columns = {
        "grants": "plugin_id, capability",
        "settings": "plugin_id, key, value_json",
        "kv": "plugin_id, key, value_json, size_bytes",
        "disabled_plugins": "plugin_id",
    }
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT {c} FROM {t} ORDER BY {c}").fetchall() for t, c in columns.items()}
    finally:
        conn.close()


@dataclass
class HostCall:
    """One host call as the host saw and answered it."""

    plugin: str
    op: str
    args: Any
    ok: bool
    result: Any  # the value handed back, or {"code", "message"} of the refusal


@dataclass
class Spy:
    calls: list[HostCall] = field(default_factory=list)
    activating: dict[str, float] = field(default_factory=dict)

    def of(self, plugin_id: str) -> list[HostCall]:
        return [c for c in self.calls if c.plugin == plugin_id]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    """Records, host side, every call a JavaScript plugin gets answered and
    when each plugin's activate entry starts. Nothing is changed: the real
    dispatch and activate run."""
    record = Spy()
    dispatch = LoadedJavaScriptPlugin.dispatch
    activate = LoadedJavaScriptPlugin.activate

    def spying_dispatch(self: LoadedJavaScriptPlugin, op: str, args: list[Any]) -> Any:
        plugin = self.source.plugin_id
        try:
            value = dispatch(self, op, args)
        except HostrtError as exc:
            record.calls.append(HostCall(plugin, op, copy.deepcopy(args), False,
                                         {"code": exc.code, "message": exc.message}))
            raise
        except Exception as exc:
            record.calls.append(HostCall(plugin, op, copy.deepcopy(args), False,
                                         {"code": "internal", "message": type(exc).__name__}))
            raise
        # storage.get answers with the stored JSON text as it is.
        answer = json.loads(value.text) if isinstance(value, RawJSON) else copy.deepcopy(value)
        record.calls.append(HostCall(plugin, op, copy.deepcopy(args), True, answer))
        return value

    async def timed_activate(self: LoadedJavaScriptPlugin, ctx: ActivationContext) -> None:
        record.activating[self.source.plugin_id] = time.monotonic()
        await activate(self, ctx)

    monkeypatch.setattr(LoadedJavaScriptPlugin, "dispatch", spying_dispatch)
    monkeypatch.setattr(LoadedJavaScriptPlugin, "activate", timed_activate)
    return record


class Arena:
    """A host over a real SQLite file with three JavaScript plugins: the
    victim (active, holding a secret and a setting), the attacker (granted
    ``grants``, activated by the test) and a fresh plugin (activated at the
    end to show the host still works)."""

    def __init__(self, tmp_path: Path, attacker_js: str, *, grants: tuple[str, ...] = (),
                 limits: dict[str, int] | None = None) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "host.db"
        plugins = tmp_path / "plugins"
        plugins.mkdir()
        write_js(plugins, "victim", VICTIM_JS)
        write_js(plugins, "fresh", FRESH_JS)
        write_js(plugins, "attacker", attacker_js,
                 limits={"timeoutMs": TIMEOUT_MS, "memoryMb": MEMORY_MB, **(limits or {})})
        self.grants = grants
        self.host = Host(plugins, self.db, policy=HostPolicy(require_all_grants=False))
        self.before: dict[str, list[tuple[Any, ...]]] = {}

    async def __aenter__(self) -> "Arena":
        host = self.host
        await host.discover()
        host.grants.grant_requested("victim")
        host.grants.grant_requested("fresh")
        for capability in self.grants:
            host.grants.grant("attacker", capability)
        host.store.kv_set("victim", "secret", json.dumps({"token": VICTIM_SECRET}), quota_bytes=1 << 20)
        host.set_setting("victim", "name", VICTIM_NAME)
        assert (await host.activate("victim")).state is PluginState.ACTIVE
        await self.victim_works()
        self.before = dump(self.db)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.wait_for(self.host.close(), 30)

    # -- plugins ------------------------------------------------------------

    @property
    def attacker(self) -> Any:
        return self.host.plugins["attacker"]

    def loaded(self, plugin_id: str = "attacker") -> LoadedJavaScriptPlugin:
        plugin = self.host.plugins[plugin_id]._loaded
        assert plugin is not None, f"{plugin_id} is {self.host.plugins[plugin_id].state}"
        return plugin

    async def activate(self) -> Any:
        record = await self.host.activate("attacker")
        return record

    async def call(self, name: str, *args: Any) -> Any:
        return await self.loaded().call_export(name, *args)

    async def outcome(self, name: str, *args: Any) -> Any:
        """The export's result, or the PluginError the host got instead."""
        try:
            return await self.call(name, *args)
        except PluginError as exc:
            return exc

    async def victim_works(self) -> None:
        result = await self.loaded("victim").call_export("check")
        assert result == {"secret": {"token": VICTIM_SECRET}, "name": VICTIM_NAME, "keys": ["secret"]}

    async def victim_keeps_working(self, until: "asyncio.Future[Any]") -> int:
        """Ask the victim again and again until ``until`` is done."""
        rounds = 0
        while True:
            await self.victim_works()
            rounds += 1
            if until.done():
                return rounds
            await asyncio.sleep(0.005)

    async def fresh_works(self) -> None:
        record = await self.host.activate("fresh")
        assert record.state is PluginState.ACTIVE, record.error
        assert await self.loaded("fresh").call_export("ping", [1, "two"]) == [1, "two"]

    async def wait_failed(self, within: float) -> float:
        """Poll until the attacker is failed; return when that was seen."""
        record = self.attacker
        deadline = time.monotonic() + within
        while record.state is not PluginState.FAILED:
            assert time.monotonic() < deadline, f"attacker still {record.state} after {within:.2f} s"
            await asyncio.sleep(0.005)
        return time.monotonic()

    # -- what changed -------------------------------------------------------

    def rows(self, plugin_id: str) -> dict[str, list[tuple[Any, ...]]]:
        return {t: [r for r in rows if r[0] == plugin_id] for t, rows in dump(self.db).items()}

    def assert_untouched(self) -> None:
        """The victim's rows and every grant are what they were."""
        now = dump(self.db)
        assert now["grants"] == self.before["grants"]
        for table in ("settings", "kv", "disabled_plugins"):
            assert [r for r in now[table] if r[0] == "victim"] == [r for r in self.before[table] if r[0] == "victim"]
        assert self.rows("attacker")["disabled_plugins"] == []

    def assert_attacker_has_no_rows(self) -> None:
        rows = self.rows("attacker")
        assert rows["kv"] == [] and rows["settings"] == [], rows

    async def assert_others_unharmed(self, *, no_attacker_rows: bool = True, fresh: bool = True) -> None:
        """What every attack must leave as it was: the victim's rows and
        every grant (and, with ``no_attacker_rows``, the attacker has no
        rows), the victim answering and, with ``fresh``, a fresh plugin
        activating."""
        self.assert_untouched()
        if no_attacker_rows:
            self.assert_attacker_has_no_rows()
        await self.victim_works()
        if fresh:
            await self.fresh_works()


class Ticker:
    """Measures the longest time the event loop went without getting to a
    task that was ready to run."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.max_gap = 0.0
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last - self.interval)
            self.ticks += 1
            last = now

    async def __aenter__(self) -> "Ticker":
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[1]) * _PAGE


def _hwm() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            match = re.search(r"VmHWM:\s+(\d+) kB", handle.read())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


class PeakRss:
    """The peak growth of this process's resident memory while the block
    runs: the kernel's high-water mark (reset on entry, where allowed) and a
    sampling thread, whichever saw more."""

    def __enter__(self) -> "PeakRss":
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")  # resets VmHWM to the current RSS
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self.start = _rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        hwm = _hwm() if self._hwm_reset else None
        self.peak = max(self.peak, _rss(), hwm or 0)

    @property
    def growth(self) -> int:
        return self.peak - self.start


async def cpu_seconds(during: float) -> float:
    """CPU time this process used (all threads) over ``during`` seconds."""
    before = os.times()
    await asyncio.sleep(during)
    after = os.times()
    return (after.user - before.user) + (after.system - before.system)


async def assert_nothing_left_running(ticker: Ticker) -> None:
    """The host's event loop kept its pace while the plugin misbehaved, and
    none of the plugin's code runs any more."""
    assert ticker.max_gap < LOOP_GAP_S
    assert await cpu_seconds(0.2) < 0.1


PYTHON_NAMES = (
    "Traceback", 'File "', '.py"', ".py'", "KeyError", "ValueError", "OSError", "RuntimeError",
    "AttributeError", "IndexError", "RecursionError", "UnicodeEncodeError", "JSONValueError",
    "OperationalError", "sqlite3", "NoneType", "pydantic", "site-packages", "/work",
)


def assert_no_host_details(text: str, tmp_path: Path) -> None:
    assert str(tmp_path) not in text
    assert HOSTRT_DIR not in text
    for name in PYTHON_NAMES:
        assert name not in text, f"{name!r} in {text!r}"


# --------------------------------------------------------------------------
# 1. rewritten intrinsics: the plugin breaks only itself

# Everything the attacker tries after rewriting its intrinsics: every host
# call, with keys that name the other plugin or walk out of its own space,
# and the other plugin's id wherever an identity could hide.
PROBE_JS = r"""
const OTHER = "victim";
const KEYS = ["secret", "../victim", "../victim/secret", "victim/secret", "victim:secret",
              "victim\u0000secret", "victim.secret", "%2e%2e%2fvictim", "..", "", "name"];
let C = null;
let hook = null;
async function attempt(fn) { try { await fn(); } catch (_) {} }
async function probe(ctx) {
  for (let i = 0; i < KEYS.length; i++) {
    const key = KEYS[i];
    await attempt(() => ctx.storage.get(key, OTHER));
    await attempt(() => ctx.storage.set(key, { plugin: OTHER, value: "pwned" }));
    await attempt(() => ctx.storage.delete(key));
    await attempt(() => ctx.storage.keys(key));
    await attempt(() => ctx.settings.get(key));
    await attempt(() => ctx.settings.set(key, "pwned"));
  }
  const ids = [{ plugin: OTHER, key: "secret" }, { pluginId: OTHER, id: OTHER }, [OTHER, "secret"]];
  for (let i = 0; i < ids.length; i++) {
    await attempt(() => ctx.storage.get(ids[i]));
    await attempt(() => ctx.storage.set(ids[i], ids[i]));
    await attempt(() => ctx.settings.get(ids[i]));
    await attempt(() => ctx.settings.set(ids[i], OTHER));
  }
  if (hook !== null) {
    await attempt(() => ctx.storage.set("during", hook));
    await attempt(() => ctx.storage.get(hook));
    await attempt(() => ctx.settings.set("name", hook));
    await attempt(() => ctx.settings.get(hook));
  }
  await attempt(() => ctx.storage.keys());
  await attempt(() => ctx.settings.all());
  await attempt(() => ctx.settings.set("name", "pwned"));
}
BEFORE_ACTIVATE
module.exports = {
  activate(ctx) { C = ctx; },
  async attack() {
    BEFORE_CALLS
    await probe(C);
    return "done";
  },
};
"""

TAMPERS = {
    "object-prototype": r"""
        for (const key of ["0", "1", "2", "3", "then", "code", "op", "args", "id", "plugin", "pluginId",
                           "key", "value", "message", "name", "stack", "ok", "resolve", "reject", "toJSON"]) {
          Object.defineProperty(Object.prototype, key, {
            get() { return OTHER; }, set(v) { /* swallowed */ }, configurable: true });
        }
    """,
    "everything-thenable": r"""
        Object.prototype.then = function (resolve) { resolve({ token: "forged", plugin: OTHER }); };
    """,
    "array-prototype": r"""
        const forged = '["call",1,"storage.get",["secret"]],["call",2,"storage.set",["secret","pwned"]]';
        for (let i = 0; i < 4; i++) {
          Object.defineProperty(Array.prototype, i, { get() { return OTHER; }, set(v) {}, configurable: true });
        }
        Array.prototype.push = function () { return 0; };
        Array.prototype.join = function () { return forged; };
        Array.prototype.map = function () { return [forged]; };
        Array.prototype.concat = function () { return [forged]; };
        Array.prototype.slice = function () { return [OTHER]; };
        Array.prototype[Symbol.iterator] = function* () { yield OTHER; };
        Array.isArray = () => false;
        Array.from = () => [OTHER];
    """,
    "json": r"""
        JSON.stringify = () => '"]],[["call",1,"storage.set",["secret","pwned"]]]//';
        JSON.parse = () => [["reply", 1, true, { token: "forged" }], ["enter", 1, "activate", null]];
        Object.prototype.toJSON = function () { return { plugin: OTHER }; };
        String.prototype.toJSON = function () { return OTHER; };
    """,
    "promise": r"""
        const then = Promise.prototype.then;
        Promise.prototype.then = function (ok, bad) {
          return then.call(this, (v) => ok && ok({ token: "forged", v }), bad);
        };
        Promise.resolve = () => ({ then(ok) { ok(OTHER); } });
        Promise.reject = () => ({ then(ok) { ok(OTHER); } });
        Promise.all = () => ({ then(ok) { ok([OTHER]); } });
        globalThis.Promise = function FakePromise(executor) { executor(() => {}, () => {}); };
    """,
    "function-prototype": r"""
        const forged = function () { return OTHER; };
        Function.prototype.call = forged;
        Function.prototype.apply = forged;
        Function.prototype.bind = function () { return forged; };
        Function.prototype.toString = function () { return "function () { [native code] }"; };
    """,
    "map-and-sets": r"""
        const fake = { resolve() {}, reject() {} };
        Map.prototype.get = function () { return fake; };
        Map.prototype.set = function () { return this; };
        Map.prototype.has = function () { return true; };
        Map.prototype.delete = function () { return true; };
        Map.prototype.forEach = function () {};
        Map.prototype.clear = function () {};
        Object.defineProperty(Map.prototype, "size", { get() { return 0; }, configurable: true });
        Set.prototype.has = function () { return true; };
        WeakSet.prototype.has = function () { return true; };
        WeakMap.prototype.get = function () { return fake; };
    """,
    "reflect-and-object": r"""
        const define = Object.defineProperty;
        Reflect.apply = function () { return OTHER; };
        Reflect.construct = function () { return {}; };
        Reflect.get = function () { return OTHER; };
        Reflect.ownKeys = function () { return ["plugin"]; };
        Object.keys = function () { return ["plugin", "id"]; };
        Object.getPrototypeOf = function () { return Object.prototype; };
        Object.freeze = function (o) { return o; };
        Object.create = function () { return { plugin: OTHER }; };
        Object.assign = function (o) { return o; };
        define(Object, "defineProperty", { value: function (o) { return o; } });
    """,
    "string-number-symbol": r"""
        String.prototype.slice = function () { return OTHER; };
        String.prototype.split = function () { return [OTHER]; };
        String.prototype.includes = function () { return false; };
        String.prototype.replace = function () { return OTHER; };
        String.prototype.toString = function () { return OTHER; };
        String.prototype.valueOf = function () { return OTHER; };
        String.prototype[Symbol.iterator] = function* () { yield OTHER; };
        Number.prototype.toString = function () { return OTHER; };
        Number.isFinite = function () { return true; };
        Symbol.prototype.toString = function () { return OTHER; };
        globalThis.String = function () { return OTHER; };
    """,
    "errors": r"""
        Error.prepareStackTrace = function () { return OTHER; };
        Error.captureStackTrace = function () {};
        Object.defineProperty(Error.prototype, "message", { get() { return OTHER; }, set(v) {}, configurable: true });
        Object.defineProperty(Error.prototype, "code", { get() { return "E_OK"; }, set(v) {}, configurable: true });
        globalThis.Error = globalThis.TypeError = globalThis.RangeError = function () { return { code: "E_OK" }; };
        globalThis.HostrtError = globalThis.CapabilityError = function () { return { code: "E_OK" }; };
    """,
    "global-object": r"""
        const proto = Object.getPrototypeOf(globalThis);
        Object.setPrototypeOf(globalThis, new Proxy(proto, {
          get(target, key, receiver) { return key === "__hostrt_pump" ? () => "[]" : Reflect.get(target, key, receiver); },
          has() { return true; },
        }));
        globalThis.module = null;
        globalThis.setTimeout = globalThis.setInterval = function () { return 0; };
        Object.freeze(Object.prototype);
        Object.freeze(Array.prototype);
        Object.freeze(globalThis);
    """,
    "while-encoding": r"""
        hook = {
          get plugin() {
            JSON.stringify = () => '"victim"';
            Object.defineProperty(Object.prototype, "0", { get() { return OTHER; }, configurable: true });
            Array.prototype.join = () => '["call",1,"storage.set",["secret","pwned"]]';
            return OTHER;
          },
          key: "secret",
          nested: { get deep() { Map.prototype.get = () => ({ resolve() {}, reject() {} }); return [OTHER]; } },
        };
    """,
}

#: Rewrites after which the plugin's own shim can no longer encode a call
#: (index setters on the prototypes swallow its bookkeeping): the plugin
#: broke itself before anything reached the host.
SHIM_BREAKING = {"object-prototype", "array-prototype"}

# name -> (the attacker's grants, when it rewrites its intrinsics)
SCENARIOS = {
    "storage-ungranted": (("settings.read", "settings.write"), "before-calls"),
    "settings-write-ungranted": (("storage", "settings.read"), "before-calls"),
    "storage-ungranted-from-the-top-level": (("settings.read", "settings.write"), "before-activate"),
}


def check_answers(calls: list[HostCall], grants: tuple[str, ...]) -> None:
    """Every call the attacker got answered stayed inside its grants and its
    own rows."""
    needs = {"storage.get": "storage", "storage.set": "storage", "storage.delete": "storage",
             "storage.keys": "storage", "settings.get": "settings.read", "settings.all": "settings.read",
             "settings.set": "settings.write"}
    for call in calls:
        if needs[call.op] not in grants:
            assert not call.ok and call.result["code"] == "E_CAPABILITY", call
        if call.ok and call.op == "settings.get":
            assert call.result in ("world", "pwned"), call
        if call.ok and call.op == "settings.all":
            assert call.result in ({"name": "world"}, {"name": "pwned"}), call
        if call.ok and call.op == "storage.get" and call.args[0] == "secret":
            assert call.result in (None, "victim"), call  # its own (missing) key: the default
    answered = json.dumps([c.result for c in calls])
    assert VICTIM_SECRET not in answered and VICTIM_NAME not in answered


@pytest.mark.parametrize("grants, when", list(SCENARIOS.values()), ids=list(SCENARIOS))
@pytest.mark.parametrize("tamper_id", list(TAMPERS))
def test_rewritten_intrinsics_neither_skip_grants_nor_reach_another_plugin(
        tmp_path: Path, spy: Spy, tamper_id: str, grants: tuple[str, ...], when: str) -> None:
    """Whatever the plugin rewrote, before its activation or just before its
    calls, each call it still gets to the host is checked against its own
    grants and answered from its own rows; the victim answers throughout."""
    tamper = textwrap.dedent(TAMPERS[tamper_id]).strip()
    source = (PROBE_JS.replace("BEFORE_ACTIVATE", tamper if when == "before-activate" else "")
              .replace("BEFORE_CALLS", tamper if when == "before-calls" else ""))

    async def main() -> None:
        async with Arena(tmp_path, source, grants=grants) as arena:
            record = await arena.activate()
            if record.state is PluginState.ACTIVE:
                attack = asyncio.ensure_future(arena.outcome("attack"))
                rounds = await arena.victim_keeps_working(attack)
                await attack
                assert rounds >= 1
            else:  # it broke its own module object or shim before activate ran
                assert when == "before-activate" and record.state is PluginState.FAILED, record.error
            calls = spy.of("attacker")
            if tamper_id not in SHIM_BREAKING and record.error is None:
                assert calls, "the attack never reached the host"
            check_answers(calls, grants)
            arena.assert_untouched()
            rows = arena.rows("attacker")
            if "storage" not in grants:
                assert rows["kv"] == []
            else:
                assert all(VICTIM_SECRET not in r[2] for r in rows["kv"])
            if "settings.write" not in grants:
                assert rows["settings"] == []
            else:
                assert rows["settings"] in ([], [("attacker", "name", '"pwned"')])
            await arena.victim_works()
            await arena.fresh_works()

    run(main())


def test_grant_checks_follow_revokes_whatever_the_plugin_rewrote(tmp_path: Path, spy: Spy) -> None:
    """The plugin fakes success for its own calls in every way the shim
    allows; the host still checks the stored grant on each call, including
    after a revoke made through another database connection."""
    source = """
        let C = null;
        module.exports = {
          activate(ctx) {
            C = ctx;
            Map.prototype.get = () => ({ resolve() {}, reject() {} });
            Object.defineProperty(Object.prototype, "code", { get() { return "E_OK"; }, set(v) {}, configurable: true });
          },
          async write(n) { try { await C.storage.set("n", n); return "sent"; } catch (e) { return String(e.message); } },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source, grants=("storage",)) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            await arena.outcome("write", 1)
            assert arena.rows("attacker")["kv"] == [("attacker", "n", "1", 2)]

            arena.host.grants.revoke("attacker", "storage")
            await arena.outcome("write", 2)
            assert arena.rows("attacker")["kv"] == [("attacker", "n", "1", 2)]

            arena.host.grants.grant("attacker", "storage")
            await arena.outcome("write", 3)
            assert arena.rows("attacker")["kv"] == [("attacker", "n", "3", 2)]

            other = sqlite3.connect(arena.db)  # another process, as far as the host can tell
            with other:
                other.execute("DELETE FROM grants WHERE plugin_id = 'attacker'")
            other.close()
            await arena.outcome("write", 4)
            assert arena.rows("attacker")["kv"] == [("attacker", "n", "3", 2)]

            writes = [(c.args[1], c.ok, c.result if not c.ok else None) for c in spy.of("attacker")]
            refused = {"code": "E_CAPABILITY", "message": "plugin 'attacker' lacks capability 'storage'"}
            assert writes == [(1, True, None), (2, False, refused), (3, True, None), (4, False, refused)]
            await arena.victim_works()

    run(main())


# --------------------------------------------------------------------------
# 2. the raw pump and the messages behind it

FORGED_OUTBOX = """'[["call",1,"storage.set",["forged",1]],["call",2,"storage.get",["secret"]]]'"""

POKE_JS = """
let C = null;
module.exports = {
  activate(ctx) { C = ctx; },
  async poke() { try { await C.storage.set("poked", 1); return "written"; } catch (e) { return e.code; } },
};
"""

# name -> (source put before POKE_JS, source put after it, resulting state).
# The load script is plugin.js followed by `\n;__hostrt_pump("[]")`: what
# ends plugin.js can try to take that call over.
PUMP_TAKEOVERS = {
    "let": ("let __hostrt_pump = () => FORGED;", "", "failed"),
    "const": ("const __hostrt_pump = () => FORGED;", "", "failed"),
    "class": ("class __hostrt_pump {}", "", "failed"),
    "function": ("function __hostrt_pump() { return FORGED; }", "", "failed"),
    "var": ("var __hostrt_pump = () => FORGED;", "", "active"),
    "assignment": ("__hostrt_pump = () => FORGED;", "", "active"),
    "trailing-with": ("", "with ({ __hostrt_pump: () => FORGED })", "active"),
    "trailing-if": ("", "if (false)", "active"),
    "trailing-label": ("", "pump:", "active"),
    "trailing-html-comment": ("", "<!--", "active"),
    "trailing-block-comment": ("", FORGED_OUTBOX + "; /*", "failed"),
    "trailing-template": ("", "`", "failed"),
}


@pytest.mark.parametrize("before, after, expected", list(PUMP_TAKEOVERS.values()), ids=list(PUMP_TAKEOVERS))
def test_plugin_source_cannot_take_the_place_of_the_pump(tmp_path: Path, spy: Spy, before: str, after: str,
                                                          expected: str) -> None:
    """The host calls ``__hostrt_pump`` by name, and the load script appends
    that call to plugin.js: a plugin that declares its own pump, or ends its
    source so as to swallow the appended call, fails to load or changes
    nothing."""
    source = before.replace("FORGED", FORGED_OUTBOX) + "\n" + POKE_JS + after.replace("FORGED", FORGED_OUTBOX)

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            record = await arena.activate()
            assert record.state.value == expected, record.error
            if expected == "failed":
                assert record.error.code in ("E_COMPILE", "E_PLUGIN")
                assert record.error.message.startswith("plugin 'attacker': SyntaxError: ")
                assert_no_host_details(record.error.message, tmp_path)
            else:
                assert await arena.call("poke") == "E_CAPABILITY"
            assert [(c.op, c.args, c.ok) for c in spy.of("attacker")] == (
                [] if expected == "failed" else [("storage.set", ["poked", 1], False)])
            await arena.assert_others_unharmed()

    run(main())


def test_pump_cannot_be_replaced_at_run_time(tmp_path: Path, spy: Spy) -> None:
    source = POKE_JS + """
        const out = (f) => { try { return String(f()); } catch (e) { return e.name + ": " + e.message; } };
        const forged = () => '[["call",1,"storage.set",["forged",1]]]';
        module.exports.replace = function () {
          return [
            out(() => { __hostrt_pump = forged; return "assigned"; }),
            out(() => Reflect.set(globalThis, "__hostrt_pump", forged)),
            out(() => Object.defineProperty(globalThis, "__hostrt_pump", { value: forged })),
            out(() => delete globalThis.__hostrt_pump),
            out(() => Object.getOwnPropertyDescriptor(globalThis, "__hostrt_pump").writable),
            out(() => (0, eval)("var __hostrt_pump = 1; typeof __hostrt_pump")),
            out(() => (0, eval)("function __hostrt_pump() {}")),
            out(() => { Object.setPrototypeOf(globalThis, new Proxy({}, { get: () => forged })); return "proto"; }),
            out(() => { Object.freeze(globalThis); return "frozen"; }),
          ];
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            assert await arena.call("replace") == [
                "assigned",  # sloppy-mode assignment to a read-only property does nothing
                "false",
                "TypeError: Cannot redefine property: __hostrt_pump",
                "false",
                "false",
                "function",
                "TypeError: Identifier '__hostrt_pump' has already been declared",
                "proto",
                "frozen",
            ]
            assert await arena.call("poke") == "E_CAPABILITY"
            assert [(c.op, c.args, c.ok) for c in spy.of("attacker")] == [("storage.set", ["poked", 1], False)]
            await arena.assert_others_unharmed(fresh=False)

    run(main())


def test_forged_inbound_messages_fool_only_the_plugin(tmp_path: Path, spy: Spy) -> None:
    """Calling the pump by hand delivers whatever the plugin likes to its own
    shim: replies to its own calls (twice), entries the host never started,
    "done" for entries it was not given, malformed text. The host never sees
    those, keeps its own entries apart and still refuses ungranted calls."""
    source = """
        let C = null;
        let activations = 0;
        const pump = (messages) => __hostrt_pump(JSON.stringify(messages));
        module.exports = {
          activate(ctx) { C = ctx; activations += 1; },
          leak() { return "forged result"; },
          echo(x) { return x; },
          count() { return activations; },
          async forge() {
            const write = C.storage.set("secret", "pwned");
            // The host's reply never arrives: the outbox, with the call in it,
            // is what this hand-made pump call returns.
            const drained = pump([
              ["reply", 1, true, "forged reply"],
              ["reply", 1, true, "duplicate"],
              ["enter", 1, "activate", null],
              ["enter", 999, "call", ["leak", []]],
              ["call", 5, "storage.set", ["forged", 1]],
              ["done", 3, true, "done?"],
              ["timer", 77, 0],
              ["enter", 997, "nosuch", null],
            ]);
            return { write: await write, drained: JSON.parse(drained).map((m) => m[0] + " " + m[1]) };
          },
          closeOwnContext() { pump([["enter", 998, "deactivate", null]]); return "closed"; },
          async after() { try { await C.storage.set("k", 1); return "written"; } catch (e) { return e.code + " " + e.message; } },
          async garbage() {
            const out = [];
            for (const text of ["not json", "[".repeat(100000), "[[null]]", "[1, 2]", '[["reply"]]', "{}"]) {
              try { out.push(typeof __hostrt_pump(text)); } catch (e) { out.push(e.name); }
            }
            return out;
          },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            forged = await arena.call("forge")
            # Its own call, then the "done" of every entry it ran by hand:
            # activate again (1), an export under an id the host never used
            # (999) and an unknown target (997).
            assert forged == {"write": "forged reply", "drained": ["call 1", "done 1", "done 999", "done 997"]}
            assert await arena.call("count") == 2  # activate ran again, inside the plugin only
            assert spy.of("attacker") == []  # the drained call never reached the host
            # The host's own entries still line up, and it still checks grants.
            assert await arena.call("echo", {"n": 41}) == {"n": 41}
            assert await arena.call("after") == "E_CAPABILITY plugin 'attacker' lacks capability 'storage'"
            assert await arena.call("garbage") == ["SyntaxError", "SyntaxError", "string", "string", "string", "string"]
            # A forged deactivate closes the plugin's own ctx, in the plugin;
            # its "done" goes to the host, which started no such entry.
            assert await arena.call("closeOwnContext") == "closed"
            assert await arena.call("after") == "E_STATE plugin 'attacker' is not active"
            assert [(c.op, c.args, c.ok) for c in spy.of("attacker")] == [("storage.set", ["k", 1], False)]
            assert arena.attacker.state is PluginState.ACTIVE
            await arena.assert_others_unharmed(fresh=False)
            record = await arena.host.deactivate("attacker")
            assert record.state is PluginState.INACTIVE
            await arena.fresh_works()

    run(main())


def test_pump_fed_a_huge_length_stops_only_the_plugin_in_time(tmp_path: Path) -> None:
    """``__hostrt_pump('{"length": 1e9}')`` makes the plugin's own shim loop
    a billion times: the plugin is stopped within its time limit."""
    source = """
        module.exports = { activate() {}, run() { return __hostrt_pump('{"length": 1e9}'); } };
    """

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            async with Ticker() as ticker:
                started = time.monotonic()
                outcome = await arena.outcome("run")
                failed_at = await arena.wait_failed(TIMEOUT_S + SLACK_S)
            assert isinstance(outcome, PluginError)
            assert failed_at - started < TIMEOUT_S + SLACK_S
            assert arena.attacker.error.code in ("E_TIMEOUT", "E_LIMIT")
            assert ticker.max_gap < LOOP_GAP_S
            await arena.assert_others_unharmed(no_attacker_rows=False)

    run(main())


def test_timers_with_absurd_delays_and_too_many_timers(tmp_path: Path, spy: Spy,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Whatever delay a timer asks for, the host clamps it; the plugin cannot
    hold more than 1000 timers; none fires after deactivation."""

    def ticking() -> int:
        return sum(r.getMessage() == "still ticking" for r in caplog.records)

    source = """
        let C = null;
        let fired = 0;
        const tick = () => { fired += 1; };
        module.exports = {
          activate(ctx) { C = ctx; },
          arm() {
            const out = [];
            setInterval(() => C.log.info("still ticking"), 1);
            for (const delay of [1e308, Infinity, -Infinity, -1, NaN, 2 ** 53, "soon", "1e400", null, undefined, { valueOf() { return 5; } }]) {
              try { out.push(typeof setTimeout(tick, delay)); } catch (e) { out.push(e.name + ": " + e.message); }
            }
            for (const bad of [() => setTimeout(tick, 1n), () => setTimeout("tick()", 0), () => setTimeout(tick, { valueOf() { throw new Error("no"); } })]) {
              try { bad(); out.push("accepted"); } catch (e) { out.push(e.name + ": " + e.message); }
            }
            let armed = 0;
            try { for (let i = 0; i < 2000; i++) { setInterval(tick, 2147483647 + i); armed += 1; } }
            catch (e) { out.push(armed + " then " + e.name + ": " + e.message); }
            return out;
          },
          fired() { return fired; },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            async with Ticker() as ticker:
                armed = await arena.call("arm")
                # NaN, -1, -Infinity, "soon", null, undefined: now; 5 ms; the rest far away
                deadline = time.monotonic() + 2
                while await arena.call("fired") < 7:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.01)
            assert armed == ["number"] * 11 + [
                "TypeError: Cannot convert a BigInt value to a number",
                "TypeError: timer callback must be a function",
                "Error: no",
                "988 then RangeError: more than 1000 timers are pending",
            ]
            assert ticker.max_gap < LOOP_GAP_S
            assert await arena.call("fired") == 7
            record = await arena.host.deactivate("attacker")
            assert record.state is PluginState.INACTIVE and record.error is None
            ticks = ticking()
            assert ticks > 0
            await asyncio.sleep(0.05)  # a window in which a leftover 1 ms interval would fire
            assert ticking() == ticks
            assert spy.of("attacker") == []
            await arena.assert_others_unharmed()

    with caplog.at_level(logging.INFO, logger="hostrt.plugins.attacker"):
        run(main())


def test_zero_delay_intervals_keep_the_host_responsive(tmp_path: Path) -> None:
    """A thousand ``setInterval(f, 0)``: the plugin gets as many turns as it
    likes, but the loop, the victim and deactivation are not held up for
    long."""
    source = """
        let n = 0;
        module.exports = {
          activate() { for (let i = 0; i < 1000; i++) setInterval(() => { n += 1; }, 0); },
          count() { return n; },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            async with Ticker() as ticker:
                assert (await arena.activate()).state is PluginState.ACTIVE
                deadline = time.monotonic() + 5
                while await arena.call("count") < 3000:
                    assert time.monotonic() < deadline
                    await arena.victim_works()
            # Stalls of 0.05-0.35 s are still seen here: the loop's thread
            # comes back late from calls that release the GIL (the brief wait
            # for a script's result, posting a script) while other threads
            # hand over thousands of results a second. What must never happen
            # is the loop standing still for a second or more.
            assert ticker.max_gap < 1.0
            started = time.monotonic()
            record = await arena.host.deactivate("attacker")
            assert record.state is PluginState.INACTIVE
            assert time.monotonic() - started < TIMEOUT_S + SLACK_S
            assert await cpu_seconds(0.2) < 0.1  # nothing keeps running
            await arena.victim_works()
            await arena.fresh_works()

    run(main())


def test_oversized_and_excessive_messages_are_refused_in_the_plugin(tmp_path: Path, spy: Spy,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Huge values, too many pending calls, an outbox past its limit, huge log
    lines and log fields: each is refused with a clear error, in the plugin
    or by the host, and the plugin keeps working."""
    source = r"""
        let C = null;
        const grab = (f) => { try { f(); return "accepted"; } catch (e) { return e.name + ": " + e.message; } };
        module.exports = {
          activate(ctx) { C = ctx; },
          async flood() {
            const out = [];
            out.push(grab(() => C.storage.set("k", "x".repeat(3 * 1024 * 1024))));
            out.push(grab(() => C.log.info("big", { blob: "y".repeat(3 * 1024 * 1024) })));
            const pending = [];
            out.push(grab(() => { for (let i = 0; i < 20000; i++) pending.push(C.storage.get("k" + i).catch((e) => e.code)); }));
            out.push(pending.length);
            const codes = await Promise.all(pending);
            out.push(codes.every((c) => c === "E_CAPABILITY"));
            out.push(grab(() => { for (let i = 0; i < 2000; i++) console.log("z".repeat(16000), i); }));
            return out;
          },
          async logs() {
            C.log.warn("w".repeat(1024 * 1024));
            C.log.info("fields", { big: "f".repeat(100 * 1024) });
            C.log.error("\u001b[2J\r\nforged line", { "\u202e": 1 });
            return "logged";
          },
          async still() { try { await C.storage.get("k"); } catch (e) { return e.code; } },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source, limits={"memoryMb": 64, "timeoutMs": 2000}) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            # (How long the host's loop stands still while it answers a batch
            # of calls is test_a_batch_of_host_calls_does_not_block_the_event_loop.)
            flood = await arena.call("flood")
            assert await arena.call("logs") == "logged"
            assert flood[:2] == [
                "RangeError: argument is too large: more than 2097152 characters as JSON (at $[1])",
                "RangeError: log fields is too large: more than 2097152 characters as JSON (at $.blob)",
            ]
            assert flood[2] == "RangeError: more than 10000 host calls are pending; await some first"
            assert flood[3:5] == [10000, True]
            assert re.fullmatch(r"RangeError: too much data sent to the host at once \(more than 8388608 "
                                r"characters queued\); await host calls before making more", flood[5])
            assert await arena.call("still") == "E_CAPABILITY"
            assert arena.attacker.state is PluginState.ACTIVE
            calls = spy.of("attacker")
            assert len(calls) == 10001 and not any(c.ok for c in calls)
            await arena.assert_others_unharmed()

    with caplog.at_level(logging.DEBUG, logger="hostrt"):
        run(main())
    lines = [r.getMessage() for r in caplog.records if r.name == "hostrt.plugins.attacker"]
    assert any(line.startswith("www") and line.endswith("characters cut]") for line in lines)
    assert any("forged line" in line for line in lines)
    assert all(len(line) <= 8192 + 64 for line in lines)
    assert not any("\n" in line or "\x1b" in line or "\u202e" in line for line in lines)


# --------------------------------------------------------------------------
# 3. values crossing the boundary

# name -> (JavaScript making the value, what storage.set does with it)
VALUES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "cycle": ("(() => { const a = { x: [1] }; a.x.push(a); return a; })()",
              ("throws", "TypeError", "argument is not JSON: it contains a cycle at $[1].x[1]")),
    "function": ("({ f() {} })", ("throws", "TypeError", "argument is not JSON: a function at $[1].f")),
    "bigint": ("({ n: 1n })", ("throws", "TypeError", "argument is not JSON: a BigInt at $[1].n")),
    "nan": ("[NaN]", ("throws", "TypeError", "argument is not JSON: NaN at $[1][0]")),
    "infinity": ("({ x: { y: -Infinity } })", ("throws", "TypeError", "argument is not JSON: -Infinity at $[1].x.y")),
    "symbol": ("({ s: Symbol('x') })", ("throws", "TypeError", "argument is not JSON: a Symbol at $[1].s")),
    "class-instance": ("new (class Point { constructor() { this.x = 1; } })()",
                       ("throws", "TypeError", "argument is not JSON: an object that is not a plain object or array at $[1]")),
    "map": ("({ m: new Map([[1, 2]]) })",
            ("throws", "TypeError", "argument is not JSON: an object that is not a plain object or array at $[1].m")),
    "date": ("[new Date(0)]",
             ("throws", "TypeError", "argument is not JSON: an object that is not a plain object or array at $[1][0]")),
    "typed-array": ("({ bytes: new Uint8Array(4) })",
                    ("throws", "TypeError", "argument is not JSON: an object that is not a plain object or array at $[1].bytes")),
    "promise": ("({ p: Promise.resolve(1) })",
                ("throws", "TypeError", "argument is not JSON: an object that is not a plain object or array at $[1].p")),
    "undefined-item": ("[undefined]", ("throws", "TypeError", "argument is not JSON: undefined at $[1][0]")),
    "hole": ("[1, , 3]", ("throws", "TypeError", "argument is not JSON: undefined at $[1][1]")),
    "tojson": ("({ toJSON() { return 'x'; } })", ("throws", "TypeError", "argument is not JSON: a function at $[1].toJSON")),
    "nested-1000-arrays": ("(() => { let v = 1; for (let i = 0; i < 1000; i++) v = [v]; return v; })()",
                           ("throws", "RangeError", "argument is nested more than 64 levels deep at $[1]" + "[0]" * 64)),
    "nested-1000-objects": ("(() => { let v = 1; for (let i = 0; i < 1000; i++) v = { a: v }; return v; })()",
                            ("throws", "RangeError", "argument is nested more than 64 levels deep at $[1]" + ".a" * 64)),
    "over-size": ("'x'.repeat(3 * 1024 * 1024)",
                  ("throws", "RangeError", "argument is too large: more than 2097152 characters as JSON (at $[1])")),
    "sparse-billion": ("(() => { const a = []; a.length = 1e9; return a; })()",
                       ("throws", "RangeError", "argument is too large: more than 2097152 characters as JSON (at $[1])")),
    "throwing-getter": ("({ get x() { throw new Error('boom from a getter'); } })", ("throws", "Error", "boom from a getter")),
    "revoked-proxy": ("(() => { const r = Proxy.revocable({}, {}); r.revoke(); return r.proxy; })()",
                      ("throws", "TypeError", "Cannot perform 'IsArray' on a proxy that has been revoked")),
    "lone-surrogate": ("({ s: '\\ud800' })",
                       ("rejects", "E_STORAGE", "storage value for 'k' refused: $.s: string contains a lone surrogate "
                        "(U+D800 at index 0), which is not Unicode text")),
    # Accepted: what crosses is the text the shim wrote, read once.
    "proxy-with-every-trap": ("""new Proxy({}, {
        getPrototypeOf: () => Object.prototype, ownKeys: () => ["a", "b"], has: () => true,
        getOwnPropertyDescriptor: () => ({ value: 0, enumerable: true, configurable: true }),
        get: (t, k) => (k === "a" ? 1 : "two"), set: () => true, defineProperty: () => true,
        deleteProperty: () => true, isExtensible: () => true, preventExtensions: () => false,
        setPrototypeOf: () => true, apply: () => 1, construct: () => ({}) })""", ("stored", {"a": 1, "b": "two"})),
    "proxy-array-lying-length": ("new Proxy([], { get: (t, k) => (k === 'length' ? 3 : 7) })", ("stored", [7, 7, 7])),
    "null-prototype": ("Object.assign(Object.create(null), { a: 1 })", ("stored", {"a": 1})),
    "proto-key": ("JSON.parse('{\"__proto__\": {\"polluted\": true}}')", ("stored", {"__proto__": {"polluted": True}})),
    "symbol-key": ("({ [Symbol('k')]: 1, a: 1 })", ("stored", {"a": 1})),
}


def test_values_that_are_not_plain_json_are_refused_with_their_path(tmp_path: Path, spy: Spy) -> None:
    """Each value goes to ``ctx.storage.set`` and comes back as an export's
    result: refused in the plugin with the JSON path of the first problem (or
    by the host, for text that is not Unicode), or stored as the plain JSON
    the shim wrote. The host never holds a plugin object."""
    cases = ",\n".join(f"  {json.dumps(name)}: () => {expr}" for name, (expr, _) in VALUES.items())
    source = """
        let C = null;
        const CASES = {
        %s
        };
        module.exports = {
          activate(ctx) { C = ctx; },
          async send(name) {
            const value = CASES[name]();
            let pending;
            try { pending = C.storage.set("k", value); } catch (e) { return ["throws", e.name, e.message]; }
            try { await pending; } catch (e) { return ["rejects", e.code, e.message]; }
            const back = await C.storage.get("k");
            await C.storage.delete("k");
            return ["stored", back, ({}).polluted === undefined];
          },
          give(name) { return CASES[name](); },
        };
    """ % cases

    async def main() -> None:
        async with Arena(tmp_path, source, grants=("storage",), limits={"memoryMb": 64}) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            sent: dict[str, Any] = {}
            given: dict[str, Any] = {}
            async with Ticker() as ticker:
                for name, (_, expected) in VALUES.items():
                    sent[name] = tuple(await arena.call("send", name))
                    if name != "revoked-proxy":
                        given[name] = await arena.outcome("give", name)
                # Last, as it may stop the plugin: a revoked proxy as a
                # result is refused, or (its `then` cannot even be read) the
                # call runs out of time -- either way only this plugin.
                given["revoked-proxy"] = await arena.outcome("give", "revoked-proxy")
            assert ticker.max_gap < LOOP_GAP_S
            assert sent == {name: expected + ((True,) if expected[0] == "stored" else ())
                            for name, (_, expected) in VALUES.items()}
            for name, (_, expected) in VALUES.items():
                if expected[0] == "stored":
                    assert given[name] == expected[1], name
                elif expected[0] == "throws" and name != "revoked-proxy":
                    assert isinstance(given[name], PluginError), name
                    # (an argument and a result get the same limits: 64 levels each)
                    message = expected[2].replace("argument", "result").replace("$[1]", "$")
                    assert given[name].reason == f"give(): {expected[1]}: {message}", name
            revoked = given["revoked-proxy"]
            assert isinstance(revoked, PluginError)
            assert "revoked" in revoked.reason or isinstance(revoked, BudgetExceededError)
            sets = [c for c in spy.of("attacker") if c.op == "storage.set"]
            assert sorted(c.args[0] for c in sets) == ["k"] * 6  # the five stored values and the surrogate
            arena.assert_untouched()
            assert arena.rows("attacker")["kv"] == []
            await arena.victim_works()
            await arena.fresh_works()

    run(main())


RUNAWAY_VALUES = {
    "spinning-getter": "C.storage.set('k', { get x() { for (;;); } })",
    "proxy-trap-spin": "C.storage.set('k', new Proxy({}, { ownKeys() { for (;;); } }))",
    "spinning-tostring-in-log": "C.log.info({ toString() { for (;;); } })",
    "spinning-getter-result": "({ get x() { for (;;); } })",
}


@pytest.mark.parametrize("expr", list(RUNAWAY_VALUES.values()), ids=list(RUNAWAY_VALUES))
def test_values_that_run_forever_fail_only_their_plugin_in_time(tmp_path: Path, expr: str) -> None:
    source = """
        let C = null;
        module.exports = { activate(ctx) { C = ctx; }, send() { return %s; } };
    """ % expr

    async def main() -> None:
        async with Arena(tmp_path, source, grants=("storage",)) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            async with Ticker() as ticker:
                started = time.monotonic()
                with pytest.raises(BudgetExceededError):
                    await arena.call("send")
                assert time.monotonic() - started < TIMEOUT_S + SLACK_S
                await arena.wait_failed(SLACK_S)
            assert arena.attacker.error.code == "E_TIMEOUT"
            await assert_nothing_left_running(ticker)
            await arena.assert_others_unharmed()

    run(main())


# --------------------------------------------------------------------------
# 4. nothing about the host reaches JavaScript

ERRORS_JS = r"""
let C = null;
const seen = (e) => ({ name: e.name, message: e.message, code: e.code === undefined ? null : e.code,
                       stack: String(e.stack), hostrt: e instanceof HostrtError });
const grab = async (f) => { try { await f(); return "no error"; } catch (e) { return seen(e); } };
module.exports = {
  activate(ctx) { C = ctx; },
  async errors() {
    return {
      ungranted: await grab(() => C.storage.set("k", 1)),
      storageKey: await grab(() => C.storage.get("../victim/secret")),
      storagePrefix: await grab(() => C.storage.keys("/etc")),
      settingName: await grab(() => C.settings.get("../victim")),
      undeclared: await grab(() => C.settings.get("victim")),
      settingType: await grab(() => C.settings.set("name", 5)),
      settingLong: await grab(() => C.settings.set("name", "x".repeat(30))),
      nameType: await grab(() => C.settings.get(5)),
      require: await grab(() => require("fs")),
    };
  },
  async internal() { return await grab(() => C.settings.get("name")); },
  async store() { return await grab(() => C.settings.set("name", "abc")); },
  async quota() { return await grab(() => C.settings.set("name", "ok")); },
  async frames() {
    const files = new Set();
    const functions = [];
    Error.prepareStackTrace = (error, sites) => {
      for (const site of sites) {
        files.add(String(site.getScriptNameOrSourceURL()));
        files.add(String(site.getFileName()));
        const fn = site.getFunction();
        if (fn !== undefined) functions.push(String(site.getFunctionName()));
        if (site.getThis() !== undefined && site.getThis() !== globalThis) functions.push("this of " + site.getFunctionName());
      }
      return "";
    };
    new Error("probe").stack;
    try { await C.storage.set("k", 1); } catch (e) { e.stack; }
    Error.prepareStackTrace = undefined;
    return { files: [...files].sort(), functions };
  },
};
"""

FRAME = re.compile(r"    at (?:[\w.<>\[\] ]+ \()?(attacker/plugin\.js|hostrt/bootstrap\.js|<anonymous>):\d+:\d+\)?")


def check_seen(seen: dict[str, Any], name: str, code: str | None, message: str, tmp_path: Path) -> None:
    assert {k: seen[k] for k in ("name", "code", "message")} == {"name": name, "code": code, "message": message}
    first, *frames = seen["stack"].split("\n")
    assert first == f"{name}: {message}"
    for frame in frames:
        assert FRAME.fullmatch(frame), frame
    assert_no_host_details(json.dumps(seen), tmp_path)


def test_refusals_seen_by_javascript_carry_no_host_details(tmp_path: Path) -> None:
    async def main() -> None:
        async with Arena(tmp_path, ERRORS_JS, grants=("settings.read", "settings.write")) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            seen = await arena.call("errors")
            expected = {
                "ungranted": ("CapabilityError", "E_CAPABILITY", "plugin 'attacker' lacks capability 'storage'"),
                "storageKey": ("CapabilityError", "E_CAPABILITY", "plugin 'attacker' lacks capability 'storage'"),
                "storagePrefix": ("CapabilityError", "E_CAPABILITY", "plugin 'attacker' lacks capability 'storage'"),
                "settingName": ("HostrtError", "E_SETTINGS", "invalid setting name '../victim'"),
                "undeclared": ("HostrtError", "E_SETTINGS", "plugin 'attacker' declares no setting 'victim'"),
                "settingType": ("HostrtError", "E_SETTINGS",
                                "invalid value for setting 'name' of plugin 'attacker': $.name: 5 is not of type 'string'"),
                "settingLong": ("HostrtError", "E_SETTINGS",
                                "invalid value for setting 'name' of plugin 'attacker': $.name: "
                                "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' is too long"),
                "nameType": ("HostrtError", "E_SETTINGS", "invalid setting name of type int"),
                "require": ("Error", None, 'require("fs") is not available in hostrt plugins: '
                                           "bundle dependencies into plugin.js"),
            }
            assert set(seen) == set(expected)
            for key, (name, code, message) in expected.items():
                check_seen(seen[key], name, code, message, tmp_path)
                assert seen[key]["hostrt"] is (code is not None)

            arena.host.grants.grant("attacker", "storage")
            arena.before = dump(arena.db)
            seen = await arena.call("errors")
            check_seen(seen["storageKey"], "HostrtError", "E_STORAGE",
                       "invalid storage key '../victim/secret': keys are 1-100 characters of letters, digits, "
                       "'_', '.' and '-'", tmp_path)
            check_seen(seen["storagePrefix"], "HostrtError", "E_STORAGE", "invalid storage key prefix '/etc'", tmp_path)

            frames = await arena.call("frames")
            assert set(frames["files"]) <= {"attacker/plugin.js", "hostrt/bootstrap.js", "<anonymous>", "undefined", "null"}
            # Only the plugin's own (sloppy-mode) functions are handed over.
            assert set(frames["functions"]) <= {"frames", "this of frames"}
            await arena.assert_others_unharmed(no_attacker_rows=False, fresh=False)

    run(main())


def test_host_failures_reach_javascript_as_codes_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A bug in host code and a failing database: the plugin learns the
    documented code and a message without paths, tracebacks or Python
    names; the details go to the host's log."""

    def broken(self: ActivationContext, key: str) -> Any:
        raise KeyError(f'Traceback (most recent call last):\n  File "{tmp_path}/hostrt/x.py", line 1')

    async def main() -> None:
        async with Arena(tmp_path, ERRORS_JS, grants=ALL) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            with monkeypatch.context() as patch:
                patch.setattr(ActivationContext, "settings_get", broken)
                seen = await arena.call("internal")
            check_seen(seen, "HostrtError", "E_HOSTRT", "internal host error", tmp_path)

            conn = arena.host.store._conn  # the host's own connection turns read-only
            conn.execute("PRAGMA query_only = ON")
            try:
                seen = await arena.call("store")
            finally:
                conn.execute("PRAGMA query_only = OFF")
            check_seen(seen, "HostrtError", "E_STORE", "store settings_set failed: attempt to write a readonly database",
                       tmp_path)

            assert arena.rows("attacker")["settings"] == []
            await arena.victim_works()

    with caplog.at_level(logging.ERROR, logger="hostrt"):
        run(main())
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)


# --------------------------------------------------------------------------
# 5. memory and time

# Every way to ask for ArrayBuffer memory past the 16 MiB limit in one go.
ALLOCATIONS = {
    "array-buffer": "new ArrayBuffer(64 * MiB)",
    "typed-array": "new Float64Array(2 ** 24)",
    "constructor-property": "new (new Uint8Array(1).constructor)(64 * MiB)",
    "buffer-constructor-property": "new (new ArrayBuffer(1).constructor)(64 * MiB)",
    "reflect-construct": "Reflect.construct(Uint8Array, [64 * MiB], class Other {})",
    "subclass": "new (class Big extends Uint8Array {})(64 * MiB)",
    "species-slice": """new (class S extends Uint8Array {
        static get [Symbol.species]() { return Uint8Array; } })(12 * MiB).slice()""",
    "species-to-a-wider-type": """new (class S extends Uint8Array {
        static get [Symbol.species]() { return Float64Array; } })(4 * MiB).map((v) => v)""",
    "lying-bytes-per-element": """new (class X extends Float64Array {
        get BYTES_PER_ELEMENT() { return 0; } })(1.5 * MiB).map((v) => v)""",
    "subarray-then-slice": "new Uint8Array(12 * MiB).subarray(1).slice()",
    "map": "new Uint8Array(12 * MiB).map((v) => v)",
    "to-reversed": "new Uint8Array(12 * MiB).toReversed()",
    "from-array-like": "Float64Array.from({ length: 2 ** 26 })",
    "array-like-length": "new Uint8Array({ length: 2 ** 31 })",
    "typed-array-source": "new Float64Array(new Uint8Array(12 * MiB))",
    "resizable-resize": "new ArrayBuffer(1, { maxByteLength: 2 ** 32 }).resize(2 ** 31)",
    "transfer": "new ArrayBuffer(8).transfer(2 ** 31)",
    "buffer-slice": "new ArrayBuffer(12 * MiB).slice(0)",
    "many-small": "(() => { for (;;) KEEP.push(new Uint8Array(MiB)); })()",
}


@pytest.mark.parametrize("expr", list(ALLOCATIONS.values()), ids=list(ALLOCATIONS))
def test_array_buffer_memory_past_the_limit_is_refused(tmp_path: Path, expr: str) -> None:
    source = """
        const MiB = 1024 * 1024;
        const KEEP = [];
        module.exports = {
          activate() {},
          alloc() {
            try { const made = %s; return ["allocated", made.byteLength]; }
            catch (e) { return [e.name, e.message]; }
          },
          kept() { return KEEP.length; },
        };
    """ % expr

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            with PeakRss() as peak:
                async with Ticker() as ticker:
                    kind, message = await arena.call("alloc")
            assert kind == "RangeError" and OVER_LIMIT.match(message), (kind, message)
            assert await arena.call("kept") in (0, MEMORY_MB)  # whole MiBs up to the limit, then refused
            assert arena.attacker.state is PluginState.ACTIVE
            assert peak.growth < RSS_BOUND, peak.growth
            assert ticker.max_gap < LOOP_GAP_S
            await arena.assert_others_unharmed()

    run(main())


#: Calls that copy a whole string in one step, on a rope S of 2**28
#: characters (free to build; copying it once grew the host by up to
#: 1.4 GB), each with the builtin its refusal names.
WHOLE_STRING_CALLS = [
    ("S.normalize()", "String.prototype.normalize()"),
    ("S.toLocaleUpperCase()", "String.prototype.toLocaleUpperCase()"),
    ("'a'.localeCompare({ toString() { return S; } })", "String.prototype.localeCompare()"),
    ("encodeURIComponent(S)", "encodeURIComponent()"),
    ("unescape(S)", "unescape()"),
    ("new Intl.Segmenter().segment(S)", "Intl.Segmenter.prototype.segment()"),
    ("collator.compare(S, 'a')", "Intl.Collator.prototype.compare()"),
    ("numbers.format(S)", "Intl.NumberFormat.prototype.format()"),
    ("numbers.format({ [Symbol.toPrimitive]() { return S; } })", "Intl.NumberFormat.prototype.format()"),
    ("JSON.stringify([{ a: S }])", "JSON.stringify()"),
    ("JSON.stringify({}, () => S)", "JSON.stringify()"),
    ("JSON.parse(S)", "JSON.parse()"),
    ("[S].join('')", "Array.prototype.join()"),
]


def test_whole_string_copies_are_refused_before_the_host_grows_whatever_the_plugin_rewrote(tmp_path: Path) -> None:
    source = """
        const collator = new Intl.Collator();
        const numbers = new Intl.NumberFormat();
        // What the checks use, rewritten before they run.
        globalThis.String = function () { return ""; };
        Reflect.apply = function () { return "rewritten"; };
        Object.getOwnPropertyDescriptor = function () { return undefined; };
        Object.hasOwn = Object.keys = Array.isArray = function () { return false; };
        Object.getPrototypeOf = function () { return null; };
        WeakMap.prototype.get = function () { return function () { return "rewritten"; }; };
        Date.prototype[Symbol.toPrimitive] = function () { return 1; };
        globalThis.RangeError = function () { return {}; };
        module.exports = {
          activate() {},
          copy() {
            let S = "x";
            while (S.length < 2 ** 28) S += S;
            return [%s].map((call) => {
              try { call(); return ["copied"]; } catch (e) { return [e.constructor.name, e.message]; }
            });
          },
        };
    """ % ", ".join(f"() => {call}" for call, _what in WHOLE_STRING_CALLS)

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            with PeakRss() as peak:
                outcomes = await arena.call("copy")
            allowed = MEMORY_MB * MIB // 8
            assert outcomes == [
                ["RangeError", f"{what}: a string of {2 ** 28} characters is longer than this plugin's memory "
                               f"limit allows ({allowed})"]
                for _call, what in WHOLE_STRING_CALLS
            ]
            assert arena.attacker.state is PluginState.ACTIVE
            # Not one of the copies was made: 2**28 characters are 256 MiB.
            assert peak.growth < 128 * MIB, peak.growth
            await arena.assert_others_unharmed()

    run(main())


# name -> (code, how it ends): "limit" stops the plugin (E_LIMIT); otherwise
# V8 throws that error in the plugin's own code.
HEAP_BOMBS = {
    "arrays": ("const keep = []; for (;;) keep.push(new Array(100000).fill(7));", "limit"),
    "strings": ("const keep = []; for (let i = 0; ; i++) keep.push('x'.repeat(1 << 20) + i);", "limit"),
    "objects": ("const keep = new Map(); for (let i = 0; ; i++) keep.set(i, { i, s: String(i) });", "limit"),
    "flat-strings": ("const keep = []; for (let i = 0; ; i++) { const s = ('x' + i).repeat(2 ** 24); s.indexOf('y'); keep.push(s); }",
                     "limit"),
    "string-doubling": ("let s = 'ab'; for (;;) s += s;", "RangeError: Invalid string length"),
    "recursion": ("const f = (n) => f(n + 1) + 1; return f(0);", "RangeError: Maximum call stack size exceeded"),
}


@pytest.mark.parametrize("where", ["top-level", "activate", "export", "timer"])
@pytest.mark.parametrize("bomb, ending", list(HEAP_BOMBS.values()), ids=list(HEAP_BOMBS))
def test_heap_bombs_stop_only_their_plugin(tmp_path: Path, bomb: str, ending: str, where: str) -> None:
    """The heap limit stops the plugin; V8's own string and stack limits
    throw in the plugin's code. Either way in time, with the host's memory
    bounded and everyone else unaffected."""
    body = f"(() => {{ {bomb} }})();"
    source = {
        "top-level": f"{body}\nmodule.exports = {{ activate() {{}} }};",
        "activate": f"module.exports = {{ activate() {{ {body} }} }};",
        "export": f"module.exports = {{ activate() {{}}, run() {{ {body} }} }};",
        "timer": f"""let caught = null;
            module.exports = {{ activate() {{}}, caught() {{ return caught; }},
              run() {{ setTimeout(() => {{ try {{ {body} }} catch (e) {{ caught = e.name + ": " + e.message; }} }}, 1); }} }};""",
    }[where]

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            record = arena.attacker
            with PeakRss() as peak:
                async with Ticker() as ticker:
                    started = time.monotonic()
                    await arena.activate()
                    error: Any = record.error
                    if where in ("export", "timer"):
                        assert record.state is PluginState.ACTIVE
                        started = time.monotonic()
                        error = await arena.outcome("run")
                    if where == "timer":
                        deadline = started + TIMEOUT_S + SLACK_S
                        while (error := await arena.outcome("caught")) is None:
                            assert time.monotonic() < deadline
                            await asyncio.sleep(0.005)
                        if isinstance(error, PluginError):
                            await arena.wait_failed(SLACK_S)
                            error = record.error
                    allowed = TIMEOUT_S + SLACK_S + (LOAD_S if where in ("top-level", "activate") else 0)
                    assert time.monotonic() - started < allowed
            if ending == "limit":
                await arena.wait_failed(SLACK_S)
                assert error.code == "E_LIMIT", error
            elif where == "timer":
                assert error == ending and record.state is PluginState.ACTIVE
            else:
                assert isinstance(error, PluginError) and ending in error.reason, error
            assert_no_host_details(str(error), tmp_path)
            assert peak.growth < RSS_BOUND, peak.growth
            assert ticker.max_gap < LOOP_GAP_S
            await arena.assert_others_unharmed()

    run(main())


def test_engine_facilities_outside_the_host_clock_are_absent(tmp_path: Path) -> None:
    """No WebAssembly, shared memory, Atomics or FinalizationRegistry by any
    route, and mini-racer's own Atomics-based timer class cannot be revived."""
    source = """
        const NAMES = ["WebAssembly", "SharedArrayBuffer", "Atomics", "FinalizationRegistry"];
        module.exports = {
          activate() {},
          probe() {
            const out = {};
            for (const name of NAMES) {
              out[name] = [typeof globalThis[name], Function("return typeof " + name)(), (0, eval)("typeof " + name),
                           Reflect.ownKeys(globalThis).includes(name)];
            }
            let revived;
            try { new __TimerManager().setTimeout(() => {}, 0); revived = "started"; }
            catch (e) { revived = e.name + ": " + e.message; }
            out.timerManager = [typeof __timer_manager, revived];
            return out;
          },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            seen = await arena.call("probe")
            for name in ("WebAssembly", "SharedArrayBuffer", "Atomics", "FinalizationRegistry"):
                assert seen[name] == ["undefined", "undefined", "undefined", False], name
            assert seen["timerManager"][0] == "undefined"
            assert seen["timerManager"][1] in ("ReferenceError: SharedArrayBuffer is not defined",
                                               "ReferenceError: __TimerManager is not defined")

    run(main())


# Code that never finishes, at each place plugin code runs. Each stops the
# plugin, E_TIMEOUT, within its time limit plus SLACK_S of when it started.
RUNAWAY_ACTIVATE = {
    "loop": "for (;;);",
    "microtask-spin-after-return": "Promise.resolve().then(function spin() { for (;;); });",
    "endless-microtask-chain": "const again = () => { Promise.resolve().then(again); }; again();",
    "endless-queue-microtask": "const again = () => queueMicrotask(again); again();",
    "async-spin-after-await": "(async () => { await null; for (;;); })();",
    "promise-never-settles": "return new Promise(() => {});",
    "thenable-never-settles": "return { then() {} };",
    "spinning-then-getter": "return { get then() { for (;;); } };",
    "thenable-spins": "return { then(resolve) { for (;;); } };",
    "throw-with-spinning-message": "throw { get message() { for (;;); } };",
    "throw-with-spinning-stack": "const e = new Error('x'); Object.defineProperty(e, 'stack', { get() { for (;;); } }); throw e;",
    "throw-with-spinning-tostring": "throw { toString() { for (;;); } };",
    "reject-with-spinning-name": "return Promise.reject({ get name() { for (;;); } });",
}


@pytest.mark.parametrize("body", list(RUNAWAY_ACTIVATE.values()), ids=list(RUNAWAY_ACTIVATE))
def test_runaway_activate_stops_only_the_plugin_in_time(tmp_path: Path, spy: Spy, body: str) -> None:
    source = f"module.exports = {{ activate(ctx) {{ {body} }} }};"

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            async with Ticker() as ticker:
                record = await arena.activate()
                ended = time.monotonic()
            assert record.state is PluginState.FAILED
            assert ended - spy.activating["attacker"] < TIMEOUT_S + SLACK_S
            assert record.error.code == "E_TIMEOUT", record.error
            assert record.error.file == "attacker/plugin.js"
            await assert_nothing_left_running(ticker)
            await arena.assert_others_unharmed()

    run(main())


RUNAWAY_TOP_LEVEL = {
    "loop": "for (;;);",
    "microtask-spin": "Promise.resolve().then(() => { for (;;); });",
    "throw-with-spinning-tostring": "throw { toString() { for (;;); } };",
    "prepare-stack-trace-spins": "Error.prepareStackTrace = () => { for (;;); }; throw new Error('x');",
}


@pytest.mark.parametrize("code", list(RUNAWAY_TOP_LEVEL.values()), ids=list(RUNAWAY_TOP_LEVEL))
def test_runaway_top_level_stops_only_the_plugin_in_time(tmp_path: Path, code: str) -> None:
    source = f"module.exports = {{ activate() {{}} }};\n{code}\n"

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            async with Ticker() as ticker:
                started = time.monotonic()
                record = await arena.activate()
                elapsed = time.monotonic() - started
            assert record.state is PluginState.FAILED
            assert elapsed < TIMEOUT_S + SLACK_S + LOAD_S
            assert record.error.code == "E_TIMEOUT", record.error
            await assert_nothing_left_running(ticker)
            await arena.assert_others_unharmed(no_attacker_rows=False)

    run(main())


async def runaway_export_times_out(arena: Arena, export: str, returned: str, delay: float = 0.0) -> Ticker:
    """Activate the attacker and call ``export``, which returns ``returned``
    (or runs out of time itself) and leaves code that never finishes, due
    ``delay`` seconds later: the host marks the attacker failed, E_TIMEOUT,
    within its time limit of that. The ticker ran throughout."""
    assert (await arena.activate()).state is PluginState.ACTIVE
    async with Ticker() as ticker:
        started = time.monotonic()
        outcome = await arena.outcome(export)
        assert outcome == returned or isinstance(outcome, BudgetExceededError), outcome
        failed_at = await arena.wait_failed(delay + TIMEOUT_S + SLACK_S + 0.5)
    assert failed_at - started < delay + TIMEOUT_S + SLACK_S
    assert arena.attacker.error.code == "E_TIMEOUT", arena.attacker.error
    return ticker


RUNAWAY_LATER = {
    "timeout-spin": ("setTimeout(() => { for (;;); }, 10);", 0.01),
    "interval-spin-on-third-run": ("let n = 0; setInterval(() => { if (++n === 3) for (;;); }, 5);", 0.015),
    "timer-microtask-spin": ("setTimeout(() => { Promise.resolve().then(() => { for (;;); }); }, 10);", 0.01),
    "timer-thenable-spin": ("setTimeout(() => ({ then() { for (;;); } }), 10);", 0.01),
    "timer-throws-spinning-error": ("setTimeout(() => { throw { get message() { for (;;); } }; }, 10);", 0.01),
    "host-reply-then-spin": ("C.settings.get('name').then(() => { for (;;); }, () => { for (;;); });", 0.0),
}


@pytest.mark.parametrize("code, delay", list(RUNAWAY_LATER.values()), ids=list(RUNAWAY_LATER))
def test_runaway_code_after_activation_stops_only_the_plugin_in_time(tmp_path: Path, code: str,
                                                                     delay: float) -> None:
    """Nobody waits for a timer or a late microtask; the host still stops the
    plugin in time and marks it failed."""
    source = f"let C = null;\nmodule.exports = {{ activate(ctx) {{ C = ctx; }}, arm() {{ {code} return 'armed'; }} }};"

    async def main() -> None:
        async with Arena(tmp_path, source, grants=("settings.read",)) as arena:
            ticker = await runaway_export_times_out(arena, "arm", "armed", delay)
            await assert_nothing_left_running(ticker)
            await arena.assert_others_unharmed()

    run(main())


RUNAWAY_EXPORTS = {
    "loop": "for (;;);",
    "never-settles": "return new Promise(() => {});",
    "thenable-never-settles": "return { then() {} };",
    "endless-await-chain": "return (async () => { for (;;) await null; })();",
    "value-then-microtask-spin": "Promise.resolve().then(() => { for (;;); }); return 'returned';",
}


@pytest.mark.parametrize("body", list(RUNAWAY_EXPORTS.values()), ids=list(RUNAWAY_EXPORTS))
def test_runaway_export_stops_only_the_plugin_in_time(tmp_path: Path, body: str) -> None:
    source = f"module.exports = {{ activate() {{}}, run() {{ {body} }} }};"

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            ticker = await runaway_export_times_out(arena, "run", "returned")
            await assert_nothing_left_running(ticker)
            await arena.assert_others_unharmed(no_attacker_rows=False)

    run(main())


RUNAWAY_DEACTIVATE = {
    "loop": "activate() {}, deactivate() { for (;;); }",
    "never-settles": "activate() {}, deactivate() { return new Promise(() => {}); }",
    "disposer-spins": "activate(ctx) { ctx.subscriptions.push({ dispose() { for (;;); } }); }",
    "disposer-never-settles": "activate(ctx) { ctx.subscriptions.push({ dispose() { return { then() {} }; } }); }",
    "subscription-proxy-spins": "activate(ctx) { ctx.subscriptions.push(new Proxy({}, { get() { for (;;); } })); }",
    "billions-of-subscriptions": "activate(ctx) { ctx.subscriptions.length = 2 ** 32 - 1; }",
}


@pytest.mark.parametrize("exports", list(RUNAWAY_DEACTIVATE.values()), ids=list(RUNAWAY_DEACTIVATE))
def test_runaway_deactivate_still_unloads_the_plugin_in_time(tmp_path: Path, exports: str) -> None:
    source = "module.exports = { %s };" % exports

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            async with Ticker() as ticker:
                started = time.monotonic()
                record = await arena.host.deactivate("attacker")
                elapsed = time.monotonic() - started
            assert record.state is PluginState.INACTIVE
            assert record.error is not None and record.error.code in ("E_TIMEOUT", "E_LIMIT"), record.error
            assert elapsed < TIMEOUT_S + SLACK_S
            await assert_nothing_left_running(ticker)
            await arena.assert_others_unharmed(no_attacker_rows=False)

    run(main())


NON_ERROR_THROWS = {
    "number": ("throw 42;", "activate: Uncaught number: 42"),
    "null": ("throw null;", "activate: Uncaught null: null"),
    "undefined": ("throw undefined;", "activate: Uncaught undefined: undefined"),
    "symbol": ("throw Symbol('s');", "activate: Uncaught symbol: Symbol(s)"),
    "bigint": ("throw 10n;", "activate: Uncaught bigint: 10"),
    "throwing-message": ("throw { get message() { throw new Error('inner'); } };", "activate: Error: (unreadable message)"),
    "throwing-everything": ("""throw new Proxy({}, { get() { throw 1; }, getPrototypeOf() { throw 1; },
                                                    has() { throw 1; } });""", None),
    "rejected-null": ("return Promise.reject(null);", "activate: Uncaught null: null"),
}


@pytest.mark.parametrize("body, reason", list(NON_ERROR_THROWS.values()), ids=list(NON_ERROR_THROWS))
def test_odd_throws_fail_activation_at_once_with_a_description(tmp_path: Path, spy: Spy, body: str,
                                                                reason: str | None) -> None:
    source = f"module.exports = {{ activate() {{ {body} }} }};"

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            record = await arena.activate()
            ended = time.monotonic()
            assert record.state is PluginState.FAILED
            assert ended - spy.activating["attacker"] < SLACK_S
            assert record.error.code == "E_PLUGIN"
            if reason is not None:
                assert record.error.reason == reason
            assert_no_host_details(str(record.error), tmp_path)
            await arena.assert_others_unharmed(no_attacker_rows=False)

    run(main())


# --------------------------------------------------------------------------
# holes: attacks that succeeded against an earlier runtime (now regression
# tests) and one that still does (xfail, strict)

#: What the engine's memory backstop lets the process grow by while one
#: script of a plugin runs: twice its memory limit, plus overhead and slack.
def backstop_allowance(memory_mb: int) -> int:
    return 2 * memory_mb * MIB + 4 * MIB + 64 * MIB


def test_resize_with_a_lying_length_cannot_keep_memory_past_the_limit(tmp_path: Path) -> None:
    """``buffer.resize({ valueOf })`` answering 0 to the shim's charge and
    256 MiB to V8, on a buffer whose maxByteLength is 4 GiB, then filled in
    16 MiB steps from timers (each script too short for the RSS backstop):
    once, a 16 MiB plugin kept 256 MiB and the host grew with it."""
    source = """
        let buffer = null, filled = 0;
        module.exports = {
          activate() {
            let reads = 0;
            buffer = new ArrayBuffer(0, { maxByteLength: 2 ** 32 });
            buffer.resize({ valueOf() { return reads++ === 0 ? 0 : 256 * 1024 * 1024; } });
            const step = () => {
              if (filled >= buffer.byteLength) return;
              new Uint8Array(buffer, filled, 16 * 1024 * 1024).fill(1);
              filled += 16 * 1024 * 1024;
              setTimeout(step, 1);
            };
            setTimeout(step, 1);
          },
          progress() { return [filled, buffer.byteLength]; },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            with PeakRss() as peak:
                record = await arena.activate()
                deadline = time.monotonic() + 10
                while record.state is PluginState.ACTIVE:
                    filled, held = await arena.call("progress")
                    if filled >= held:
                        break
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)
            assert record.state is PluginState.FAILED or held <= MEMORY_MB * MIB, f"holds {held >> 20} MiB"
            assert peak.growth < backstop_allowance(MEMORY_MB), f"host grew by {peak.growth >> 20} MiB"

    run(main())


TRANSIENT_ALLOCATIONS = {
    "length-read-twice": """
        let reads = 0;
        new Float64Array({ get length() { return reads++ === 0 ? 0 : 2 ** 26; }, get 0() { reached = true; throw new Error("stop"); } });
    """,
    "array-buffer-has-instance": """
        Object.defineProperty(ArrayBuffer, Symbol.hasInstance, { value: () => true });
        new Float64Array({ length: 2 ** 26, get 0() { reached = true; throw new Error("stop"); } });
    """,
}


@pytest.mark.parametrize("code", list(TRANSIENT_ALLOCATIONS.values()), ids=list(TRANSIENT_ALLOCATIONS))
def test_typed_array_memory_is_charged_before_it_is_allocated(tmp_path: Path, code: str) -> None:
    """An array-like whose length getter answers 0 to the shim and 2**26 to
    V8, or a Symbol.hasInstance on ArrayBuffer that makes anything pass for
    a buffer: once, V8 allocated 512 MiB for a 16 MiB plugin before the
    shim refused it afterwards. The index getter sees whether V8 got as far
    as filling the new array."""
    source = """
        module.exports = {
          activate() {},
          attack() { let reached = false; try { %s } catch (e) {} return reached; },
        };
    """ % code

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            allocated = await arena.call("attack")
            await arena.victim_works()
            assert allocated is False, "a 512 MiB buffer was allocated for a 16 MiB plugin"

    run(main())


def test_typed_array_from_typed_array_is_charged_before_it_is_allocated(tmp_path: Path) -> None:
    """``new Float64Array(uint8Array)`` needs eight times its source: once,
    V8 allocated and filled 248 MiB for a 32 MiB plugin before the shim
    refused it afterwards."""
    source = """
        module.exports = {
          activate() {},
          attack() {
            const source = new Uint8Array(31 * 1024 * 1024);
            try { new Float64Array(source); return "allocated"; } catch (e) { return e.message; }
          },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source, limits={"memoryMb": 32}) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            with PeakRss() as peak:
                outcome = await arena.outcome("attack")
            # Refused by the shim's check afterwards, or stopped by the RSS
            # backstop once the process had already grown past its allowance.
            assert isinstance(outcome, PluginError) or outcome.startswith("new Float64Array(): ")
            await arena.victim_works()
            assert peak.growth < backstop_allowance(32), f"host grew by {peak.growth >> 20} MiB"

    run(main())


@pytest.mark.xfail(strict=True, reason=(
    "the heap limit is only checked after a garbage collection: one large allocation (flattening a "
    "64 MiB string) passes a 16 MiB limit and the plugin keeps it until the next GC, under the RSS "
    "backstop's 100 MiB allowance"))
def test_one_large_allocation_does_not_pass_the_heap_limit(tmp_path: Path) -> None:
    source = """
        let keep = null;
        module.exports = {
          activate() {},
          attack() { keep = "x".repeat(2 ** 26); return keep.indexOf("y"); },
          held() { return keep.length; },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            outcome = await arena.outcome("attack")
            held = await arena.outcome("held")
            await arena.victim_works()
            assert isinstance(outcome, PluginError) or isinstance(held, PluginError), f"holds {held} characters"

    run(main())


MICROTASK_OOM = {
    "activate": ("activate() { again(0); }, run() {}", False),
    "export": ("activate() {}, run() { again(0); return 'returned'; }", True),
    "timer": ("activate() {}, run() { setTimeout(() => again(0), 1); return 'armed'; }", True),
}


@pytest.mark.parametrize("exports, call", list(MICROTASK_OOM.values()), ids=list(MICROTASK_OOM))
def test_heap_exhausted_by_microtasks_marks_the_plugin_failed(tmp_path: Path, exports: str, call: bool) -> None:
    """A promise chain that fills the heap from the microtasks an entry
    leaves behind: once, mini-racer stopped them and the host never noticed,
    so the plugin stayed "active" with a dead isolate."""
    source = """
        const again = (v) => Promise.resolve([v, new Array(64)]).then(again);
        module.exports = { %s };
    """ % exports

    async def main() -> None:
        async with Arena(tmp_path, source) as arena:
            started = time.monotonic()
            await arena.activate()
            if call and arena.attacker.state is PluginState.ACTIVE:
                started = time.monotonic()
                await arena.outcome("run")
            await arena.victim_works()
            failed_at = await arena.wait_failed(TIMEOUT_S + SLACK_S + (LOAD_S if not call else 0))
            assert failed_at - started < TIMEOUT_S + SLACK_S + (LOAD_S if not call else 0)
            assert arena.attacker.error.code == "E_LIMIT"

    run(main())


@pytest.fixture
def dispatched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The op of every host call the attacker got answered (only counted:
    nothing is copied, so measurements of memory stay honest)."""
    ops: list[str] = []
    dispatch = LoadedJavaScriptPlugin.dispatch

    def counting_dispatch(self: LoadedJavaScriptPlugin, op: str, args: list[Any]) -> Any:
        if self.source.plugin_id == "attacker":
            ops.append(op)
        return dispatch(self, op, args)

    monkeypatch.setattr(LoadedJavaScriptPlugin, "dispatch", counting_dispatch)
    return ops


def test_a_batch_of_host_calls_does_not_block_the_event_loop(tmp_path: Path, dispatched: list[str]) -> None:
    """A thousand storage writes in one exchange, from a timer (which has no
    deadline), by a plugin holding 20000 small keys: once, the host answered
    them all in one go on its event loop, each write summing the plugin's
    whole table for the quota check, and the loop stood still for seconds."""
    source = """
        let C = null;
        module.exports = {
          activate(ctx) { C = ctx; },
          flood() {
            setTimeout(() => { for (let i = 0; i < 1000; i++) C.storage.set("new-" + i, i); }, 1);
            return "armed";
          },
        };
    """

    async def main() -> None:
        arena = Arena(tmp_path, source, grants=("storage",))
        conn = sqlite3.connect(arena.db)  # keys the plugin wrote on earlier runs
        with conn:
            conn.executemany("INSERT INTO kv (plugin_id, key, value_json, size_bytes) VALUES ('attacker', ?, '0', ?)",
                             [(f"pre-{i:05d}", 10) for i in range(20000)])
        conn.close()
        async with arena:
            assert (await arena.activate()).state is PluginState.ACTIVE
            async with Ticker() as ticker:
                assert await arena.call("flood") == "armed"
                deadline = time.monotonic() + 20
                while len(dispatched) < 1000:  # every write was answered
                    assert time.monotonic() < deadline and arena.attacker.state is PluginState.ACTIVE
                    await asyncio.sleep(0.01)
            assert len(arena.rows("attacker")["kv"]) == 21000
            await arena.assert_others_unharmed(no_attacker_rows=False, fresh=False)
            assert ticker.max_gap < 0.25, f"the host's event loop stood still for {ticker.max_gap:.2f} s"

    run(main())


def test_replies_to_host_calls_do_not_grow_the_host_without_bound(tmp_path: Path, dispatched: list[str]) -> None:
    """A hundred reads of a 1 MB value in one exchange: once, the host built
    every answer, then one JSON text and one script holding them all, and
    grew by ~0.4 GiB for a 16 MiB plugin (10000 reads would have needed tens
    of GiB)."""
    source = """
        let C = null;
        module.exports = {
          activate(ctx) { C = ctx; },
          async amplify() {
            const reads = [];
            for (let i = 0; i < 100; i++) reads.push(C.storage.get("big").then((v) => v.length, (e) => e.code));
            return (await Promise.all(reads)).length;
          },
        };
    """

    async def main() -> None:
        async with Arena(tmp_path, source, grants=("storage",)) as arena:
            arena.host.store.kv_set("attacker", "big", json.dumps("b" * (1_000_000 - 20)), quota_bytes=1 << 20)
            assert (await arena.activate()).state is PluginState.ACTIVE
            with PeakRss() as peak:
                async with Ticker() as ticker:
                    result = await arena.outcome("amplify")
            # Answers go out a few megabytes at a time, so the plugin's own
            # heap fills first: it is stopped at its limit, or it got every
            # answer; either way the host did not hold them all at once.
            answered = dispatched.count("storage.get")
            assert (answered == 100 and result == 100) or (
                isinstance(result, PluginError) and result.code == "E_LIMIT"), (answered, result)
            await arena.victim_works()
            assert peak.growth < 256 * MIB, f"host grew by {peak.growth >> 20} MiB"
            assert ticker.max_gap < 0.5, f"the host's event loop stood still for {ticker.max_gap:.2f} s"

    run(main())
