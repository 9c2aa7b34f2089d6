"""Hostile JavaScript plugins against the isolate's boundary.

Each attack is a real ``plugin.js`` run by the arena's host (see
``arena.py``): it tries to reach the host's objects, another plugin or the
canaries -- by scanning its globals, walking constructor chains and stack
frames, importing, forging the shim's protocol, rewriting the intrinsics
the shim relies on, and handing the host values that lie, loop or throw --
and keeps what it got in its own storage. The arena proves it got nothing;
each test also asserts *how* the attack was stopped.

The shim (``js_api/bootstrap.js``) is a convenience, not the boundary: a
plugin that breaks it breaks only itself. The boundary is that the host
reads nothing from the isolate but the JSON text the pump returns, knows a
plugin by its isolate, and checks every call against its grants.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

import hostrt
from hostrt import BudgetExceededError, PluginCompileError, PluginError, PluginState
from hostrt.errors import HostrtError

from adversarial.arena import STEP_S, Arena, Attempt

HOSTRT_DIR = str(Path(hostrt.__file__).resolve().parent)

#: A short time limit: several attacks wait for it to run out.
TIMEOUT_MS = 400
LIMITS = {"timeoutMs": TIMEOUT_MS, "memoryMb": 16}
#: How long after its time limit a stopped entry may be reported (generous:
#: two cores shared with V8's own threads and other test runs).
SLACK_S = 2.0


# --------------------------------------------------------------------------
# helpers shared with test_adv_js_resources.py


async def attack_js(arena: Arena, plugin_id: str, source: str, *, capabilities: list[str] | None = None,
                    **manifest: Any) -> Attempt:
    """Run ``source`` as JavaScript plugin ``plugin_id`` with the short
    limits, holding ``storage`` (to keep its loot) unless told otherwise."""
    manifest.setdefault("limits", LIMITS)
    return await arena.attack(plugin_id, source, language="javascript",
                              capabilities=["storage"] if capabilities is None else capabilities, **manifest)


async def outcome(work: Any) -> Any:
    """What awaiting ``work`` (a host call into a plugin) ended with: its
    result, or the HostrtError it raised. Bounded by the arena's step time."""
    try:
        return await asyncio.wait_for(work, STEP_S)
    except HostrtError as exc:
        return exc


def loot_of(arena: Arena, plugin_id: str) -> dict[str, Any]:
    """The plugin's storage now, decoded."""
    store = arena.host.store
    return {key: json.loads(store.kv_get(plugin_id, key) or "null") for key in store.kv_keys(plugin_id)}


def assert_no_host_paths(text: str, arena: Arena) -> None:
    """Nothing the plugin could read names where the host lives."""
    assert str(arena.root) not in text
    assert HOSTRT_DIR not in text
    for marker in ("Traceback", '.py"', "site-packages", "/home/", "/usr/", "/tmp/"):
        assert marker not in text, f"{marker!r} in {text[:500]!r}"


def command(name: str) -> dict[str, Any]:
    return {"commands": [{"name": name}]}


async def wait_state(arena: Arena, plugin_id: str, state: PluginState, within_s: float = STEP_S) -> float:
    """Wait until the host records ``state`` for the plugin (a failure after
    activation is recorded when the runtime reports it); return when."""
    deadline = time.monotonic() + within_s
    while arena.host.plugins[plugin_id].state is not state:
        assert time.monotonic() < deadline, f"{plugin_id} is {arena.host.plugins[plugin_id].state}, not {state}"
        await asyncio.sleep(0.005)
    return time.monotonic()


# --------------------------------------------------------------------------
# 1. reaching the host: globals, constructor chains, stack frames, modules

#: Every global a plugin may see: the language's own and the shim's.
ALLOWED_GLOBALS = {
    "Object", "Function", "Array", "Number", "parseFloat", "parseInt", "Infinity", "NaN", "undefined",
    "Boolean", "String", "Symbol", "Date", "Promise", "RegExp", "Error", "AggregateError", "EvalError",
    "RangeError", "ReferenceError", "SyntaxError", "TypeError", "URIError", "globalThis", "JSON", "Math",
    "Intl", "ArrayBuffer", "Uint8Array", "Int8Array", "Uint16Array", "Int16Array", "Uint32Array",
    "Int32Array", "BigUint64Array", "BigInt64Array", "Uint8ClampedArray", "Float32Array", "Float64Array",
    "Float16Array", "DataView", "Map", "BigInt", "Set", "Iterator", "WeakMap", "WeakSet", "Proxy", "Reflect",
    "WeakRef", "decodeURI", "decodeURIComponent", "encodeURI", "encodeURIComponent", "escape", "unescape",
    "eval", "isFinite", "isNaN", "console", "Temporal", "SuppressedError", "DisposableStack",
    "AsyncDisposableStack", "__timer_manager", "setTimeout", "clearTimeout", "setInterval", "clearInterval",
    "queueMicrotask", "module", "exports", "require", "HostrtError", "CapabilityError", "__hostrt_pump",
}

GLOBAL_SCAN_JS = r"""
const SECRET = "HOSTRT_ARENA_SECRET";
const tryIt = (fn) => { try { const v = fn(); return v === undefined ? "undefined" : String(v); }
                        catch (e) { return "threw " + (e && e.name) + ": " + (e && e.message); } };
exports.activate = async (ctx) => {
  const probes = {
    process: () => typeof process,
    env: () => process.env[SECRET],
    functionThis: () => Function("return typeof process + ' ' + typeof require")(),
    indirectEval: () => (0, eval)("typeof process"),
    constructorChain: () => ({}).constructor.constructor("return process")().env[SECRET],
    asyncConstructor: () => typeof Object.getPrototypeOf(async () => {}).constructor("return process"),
    generatorChain: () => Object.getPrototypeOf(function* () {}).constructor("return typeof process")().next().value,
    requireFs: () => require("fs").readFileSync("/etc/passwd"),
    requireChild: () => require("child_process"),
    moduleRequire: () => module.require && module.require("fs"),
    callerChain: () => { function f() { return f.caller && f.caller.caller; } return typeof f(); },
    timerManager: () => typeof globalThis.__timer_manager,
    pumpDescriptor: () => { const d = Object.getOwnPropertyDescriptor(globalThis, "__hostrt_pump");
                            return d.writable + "," + d.configurable; },
    pumpReplaced: () => { const was = globalThis.__hostrt_pump; globalThis.__hostrt_pump = () => "[]";
                          delete globalThis.__hostrt_pump; return globalThis.__hostrt_pump === was ? "kept" : "replaced"; },
  };
  const results = {};
  for (const name of Object.keys(probes)) results[name] = tryIt(probes[name]);
  // Everything reachable from the global object, two levels down, by name.
  const seen = new Set();
  const names = [];
  const walk = (obj, path, depth) => {
    if (obj === null || (typeof obj !== "object" && typeof obj !== "function") || seen.has(obj)) return;
    seen.add(obj);
    for (const key of Reflect.ownKeys(obj)) {
      if (typeof key !== "string") continue;
      if (depth === 0) names.push(key);
      let v;
      try { v = obj[key]; } catch (_) { continue; }
      if (depth < 2) walk(v, path + "." + key, depth + 1);
      if (typeof v === "string" && v.includes("canary")) results["found:" + path + "." + key] = v;
    }
  };
  walk(globalThis, "globalThis", 0);
  await ctx.storage.set("results", results);
  await ctx.storage.set("globals", names);
};
"""


def test_a_scan_of_everything_global_finds_no_host_object(arena):
    async def attack(arena):
        attempt = await attack_js(arena, "scanner", GLOBAL_SCAN_JS)
        assert attempt.state is PluginState.ACTIVE, attempt.error
        results = attempt.loot["results"]
        assert set(attempt.loot["globals"]) <= ALLOWED_GLOBALS, set(attempt.loot["globals"]) - ALLOWED_GLOBALS
        assert results["process"] == "undefined"
        for probe in ("env", "constructorChain"):
            assert results[probe] == "threw ReferenceError: process is not defined", results[probe]
        assert results["functionThis"] == "undefined function"  # require is the stub
        assert results["indirectEval"] == "undefined"
        assert results["requireFs"].startswith('threw Error: require("fs") is not available in hostrt plugins')
        assert results["timerManager"] == "undefined"
        assert results["pumpDescriptor"] == "false,false"
        assert results["pumpReplaced"] == "kept"
        assert not [key for key in results if key.startswith("found:")], results

    arena.run(attack)


STACK_JS = r"""
exports.activate = async (ctx) => {
  const frames = [];
  Error.stackTraceLimit = Infinity;
  Error.prepareStackTrace = (error, sites) => {
    for (const site of sites) {
      let self, fn;
      try { self = site.getThis(); } catch (_) {}
      try { fn = site.getFunction(); } catch (_) {}
      frames.push({
        file: String(site.getScriptNameOrSourceURL()),
        name: String(site.getFunctionName()),
        self: self === undefined ? "undefined" : self === globalThis ? "global" : typeof self,
        fn: fn === undefined ? "undefined" : String(fn).slice(0, 60),
      });
    }
    return "rewritten";
  };
  new Error("look").stack;
  // A stack captured onto an object of ours, from inside a host call's continuation.
  await ctx.storage.get("secret");
  const holder = {};
  Error.captureStackTrace(holder);
  holder.stack;
  await ctx.storage.set("frames", frames);
  Error.prepareStackTrace = undefined;
  throw new Error("failing on purpose, to read the host's report of it");
};
"""


def test_stack_frames_show_neither_host_paths_nor_the_shims_functions(arena):
    async def attack(arena):
        attempt = await attack_js(arena, "frames", STACK_JS)
        assert attempt.failed_with(PluginError, "failing on purpose")
        frames = attempt.loot["frames"]
        files = {frame["file"] for frame in frames}
        assert files <= {"frames/plugin.js", "hostrt/bootstrap.js", "<anonymous>"}, files
        shim = [frame for frame in frames if frame["file"] != "frames/plugin.js"]
        assert shim and all(frame["self"] == "undefined" and frame["fn"] == "undefined" for frame in shim), shim
        # The host's own report names the plugin's file and line, nothing of the host's.
        assert attempt.error.file == "frames/plugin.js" and attempt.error.line == 26
        assert_no_host_paths(attempt.error.plugin_traceback + json.dumps(frames), arena)

    arena.run(attack)


IMPORT_JS = r"""
exports.activate = async (ctx) => {
  const specifiers = ["fs", "node:fs", "./plugin.js", "../victim/plugin.py", "/etc/passwd",
                      "file://" + SECRET_FILE, SECRET_FILE, "data:text/javascript,export default 1",
                      "https://example.com/x.js"];
  const results = {};
  for (const s of specifiers) {
    try { await import(s); results[s] = "imported"; } catch (e) { results[s] = String(e); }
  }
  try { await new Function("s", "return import(s)")("fs"); results.viaFunction = "imported"; }
  catch (e) { results.viaFunction = String(e); }
  try { await eval("import('fs')"); results.viaEval = "imported"; } catch (e) { results.viaEval = String(e); }
  await ctx.storage.set("imports", results);
};
"""


def test_modules_cannot_be_imported_from_anywhere(arena):
    async def attack(arena):
        source = IMPORT_JS.replace("SECRET_FILE", json.dumps(str(arena.secret_file)))
        attempt = await attack_js(arena, "importer", source)
        assert attempt.state is PluginState.ACTIVE, attempt.error
        results = attempt.loot["imports"]
        assert len(results) == 11
        assert set(results.values()) == {"Error: Not supported"}, results

    arena.run(attack)


def test_static_import_and_import_meta_do_not_compile(arena):
    async def attack(arena):
        for plugin_id, source in (("static-import", 'import("fs");\nimport fs from "fs";\nexports.activate = () => {};\n'),
                                  ("import-meta", "exports.activate = () => import.meta.url;\n")):
            attempt = await attack_js(arena, plugin_id, source)
            assert attempt.failed_with(PluginCompileError, "outside a module"), attempt.error

    arena.run(attack)


FACILITIES_JS = r"""
exports.activate = async (ctx) => {
  const found = {};
  for (const name of ["WebAssembly", "SharedArrayBuffer", "Atomics", "FinalizationRegistry", "structuredClone",
                      "fetch", "XMLHttpRequest", "Buffer", "process", "Deno", "Bun", "d8", "os", "print", "read",
                      "readbuffer", "load", "quit", "Realm", "ShadowRealm", "gc"]) {
    found[name] = typeof globalThis[name];
  }
  // Ways back to a removed constructor through objects that remain.
  const tries = {
    sabFromMemory: () => new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer.constructor,
    growableShared: () => new ArrayBuffer(8, { maxByteLength: 16 }).constructor.name,
    registryFromWeakRef: () => Object.getPrototypeOf(WeakRef).name,
    atomicsFromTag: () => Object.prototype.toString.call(Reflect.getPrototypeOf(Math)),
  };
  for (const name of Object.keys(tries)) {
    try { found[name] = String(tries[name]()); } catch (e) { found[name] = e.name + ": " + e.message; }
  }
  await ctx.storage.set("found", found);
};
"""


def test_engine_facilities_outside_the_hosts_limits_are_gone(arena):
    async def attack(arena):
        attempt = await attack_js(arena, "facilities", FACILITIES_JS)
        found = attempt.loot["found"]
        assert attempt.state is PluginState.ACTIVE, attempt.error
        absent = {name: kind for name, kind in found.items() if kind == "undefined"}
        assert len(absent) == 21, found
        assert found["sabFromMemory"] == "ReferenceError: WebAssembly is not defined"
        assert found["growableShared"] == "ArrayBuffer"  # resizable, not shared: charged at its maximum

    arena.run(attack)


# --------------------------------------------------------------------------
# 2. forging the shim's protocol

FORGER_JS = r"""
let C = null;
const record = {};
const pump = (messages) => globalThis.__hostrt_pump(JSON.stringify(messages));
module.exports = {
  activate(ctx) {
    C = ctx;
    ctx.commands.register("forger.run", async () => {
      // A reply forged for our own pending call: the outbox it steals holds
      // the real call, so the host never answers it, and we fool ourselves.
      const asked = C.storage.get("secret");
      record.stolenOutbox = pump([["reply", 1000, true, "forged"]]).length > 2;
      for (let id = 1; id < 40; id++) pump([["reply", id, true, SECRET_GUESS]]);
      record.ownCallSaw = await Promise.race([asked, new Promise((r) => setTimeout(() => r("unanswered"), 50))]);
      // Entries the host never sent: activate again, commands and handlers
      // by guessed ids, a timer, odd ids; their "done" messages name entries
      // the host is not waiting for (or its own, which we may answer anyway).
      pump([["enter", 1, "activate", { plugin: "victim" }], ["enter", -1, "activate", null],
            ["enter", 2 ** 60, "command", [998, "victim.ping", null]], ["enter", 7, "nope", null],
            ["enter", 8, "event", [[1, 2, 3], { secret: "?" }, { name: "victim.secret", source: "victim" }]],
            ["enter", 9, "command", [999, "victim.ping", { plugin: "victim" }]], ["enter", 10, "timer", [1]]]);
      record.afterForgery = await C.storage.get("secret", "default");
      return record;
    });
  },
};
"""


def test_forged_pump_messages_fool_only_the_forger(arena):
    async def attack(arena):
        source = FORGER_JS.replace("SECRET_GUESS", json.dumps({"plugin": "victim", "key": "secret"}))
        attempt = await attack_js(arena, "forger", source, **command("forger.run"))
        assert attempt.state is PluginState.ACTIVE, attempt.error
        seen = await outcome(arena.host.invoke("forger", "forger.run"))
        assert seen["stolenOutbox"] is True
        # The forged replies settled the forger's own call; the host answered
        # the next one from the forger's own (empty) storage.
        assert seen["ownCallSaw"] in ("forged", "unanswered", {"plugin": "victim", "key": "secret"})
        assert seen["afterForgery"] == "default"
        assert arena.host.plugins["forger"].state is PluginState.ACTIVE

    arena.run(attack)


@pytest.mark.parametrize("declaration", [
    "let __hostrt_pump = () => '[]';",
    "class __hostrt_pump {}",
    "function __hostrt_pump() { return '[]'; }",
])
def test_plugin_source_cannot_declare_its_own_pump(arena, declaration):
    async def attack(arena):
        attempt = await attack_js(arena, "pump-taker", declaration + "\nexports.activate = () => {};\n")
        assert attempt.failed_with(PluginError, "__hostrt_pump"), attempt.error
        assert attempt.loot == {}

    arena.run(attack)


#: Rewrites of what the shim is built from, made before the plugin's calls.
TAMPERS = {
    "json": r"""
        JSON.stringify = () => '"]],[["call",1,"storage.get",["victim/secret"]]]//';
        JSON.parse = () => [["reply", 1, true, { token: "forged" }]];
    """,
    "promise": r"""
        const realThen = Promise.prototype.then;
        Promise.prototype.then = function (ok, bad) { return realThen.call(this, (v) => ok && ok(v), bad); };
        Promise.resolve = () => ({ then(ok) { ok("victim"); } });
        globalThis.Promise = function FakePromise(executor) { executor(() => {}, () => {}); };
    """,
    "reflect-object": r"""
        Reflect.apply = () => "victim";
        Reflect.ownKeys = () => ["plugin"];
        Object.keys = () => ["plugin", "id"];
        Object.getPrototypeOf = () => Object.prototype;
        Object.freeze = (o) => o;
    """,
    "object-prototype": r"""
        Object.prototype.plugin = "victim";
        Object.prototype.pluginId = "victim";
        Object.prototype.__plugin = "victim";
        Object.defineProperty(Object.prototype, "op", { get() { return "storage.get"; }, configurable: true });
        Object.defineProperty(Object.prototype, "code", { get() { return "E_OK"; }, configurable: true });
        Object.prototype.toJSON = function () { return { plugin: "victim", key: "secret" }; };
    """,
    "array-prototype": r"""
        Array.prototype.join = () => '["call",1,"storage.get",["secret"]]';
        Array.prototype.push = function () { return 0; };
        Array.prototype.map = () => ["victim"];
        Array.isArray = () => false;
    """,
    "function-prototype": r"""
        const forged = function () { return "victim"; };
        Function.prototype.call = forged;
        Function.prototype.apply = forged;
        Function.prototype.bind = function () { return forged; };
    """,
}

TAMPER_PROBE_JS = r"""
exports.activate = async (ctx) => {
  const results = Object.create(null);
  const note = async (name, work) => {
    try { results[name] = ["ok", await work()]; } catch (e) { results[name] = ["refused", e && e.code]; }
  };
  TAMPER
  await note("getSecret", () => ctx.storage.get("secret"));
  await note("getVictimPath", () => ctx.storage.get("../victim/secret"));
  await note("setAsVictim", () => ctx.storage.set("mine", { plugin: "victim", key: "secret" }));
  await note("keys", () => ctx.storage.keys(""));
  await note("token", () => ctx.settings.get("token"));
  await note("victimCommand", () => ctx.commands.register("victim.ping", () => "pwned").registered);
  await note("save", () => ctx.storage.set("results", results));
};
"""


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_rewritten_intrinsics_reach_nothing_but_the_plugins_own_data(arena, tamper):
    async def attack(arena):
        source = TAMPER_PROBE_JS.replace("TAMPER", TAMPERS[tamper])
        attempt = await attack_js(arena, f"tamper-{tamper}", source)
        # Its last call saved what the others got (a rewritten Promise then
        # breaks the plugin's own await of it: it broke only itself).
        results = attempt.loot["results"]
        assert results["setAsVictim"] == ["ok", None] and loot_of(arena, f"tamper-{tamper}")["mine"] == {
            "plugin": "victim", "key": "secret"}  # its own row, holding what it sent
        assert results["getSecret"] == ["ok", None]  # its own storage has no key "secret"
        assert results["getVictimPath"] == ["refused", "E_STORAGE"]
        assert results["token"] == ["refused", "E_CAPABILITY"]
        assert results["victimCommand"] == ["refused", "E_HOSTRT"]
        assert arena.host.commands() and {c.plugin_id for c in arena.host.commands()} == {"victim"}

    arena.run(attack)


# --------------------------------------------------------------------------
# 3. values that lie, loop or throw as they cross

LIAR_JS = r"""
let reads = 0;
// A value that answers differently each time it is read: whatever the host
// keeps must be one reading, taken in the isolate.
const liar = () => ({ get plugin() { reads += 1; return reads === 1 ? "liar" : "victim"; }, key: "secret" });
const proxy = () => new Proxy({ plugin: "liar" }, {
  get(target, key) { reads += 1; return "read " + reads; },
  ownKeys() { return ["plugin", "__proto__"]; },
  getOwnPropertyDescriptor(target, key) { return { value: "victim", enumerable: true, configurable: true }; },
  getPrototypeOf() { return Object.prototype; },
});
let C = null;
module.exports = {
  activate(ctx) {
    C = ctx;
    ctx.commands.register("liar.result", () => proxy());
    ctx.events.on("liar.*", () => {});
    return (async () => {
      if (ctx.previousState !== undefined) await ctx.storage.set("handedOver", ctx.previousState);
      await ctx.storage.set("getter", liar());
      await ctx.storage.set("proxy", proxy());
      await ctx.events.emit("liar.said", proxy());
      await ctx.storage.set("reads", reads);
    })();
  },
  deactivate() { return proxy(); },
};
"""


def test_getters_and_proxies_cross_as_one_plain_reading(arena):
    async def attack(arena):
        attempt = await attack_js(arena, "liar", LIAR_JS, capabilities=[
            "storage", "events.publish:liar.said", "events.subscribe:liar.*"],
            events=[{"name": "liar.said"}], **command("liar.result"))
        assert attempt.state is PluginState.ACTIVE, attempt.error
        loot = attempt.loot
        assert loot["getter"] == {"plugin": "liar", "key": "secret"}
        # A Proxy is read through its traps once, in the isolate: the host
        # got plain data, "__proto__" included as an ordinary key.
        assert loot["proxy"] == {"plugin": "read 2", "__proto__": "read 3"}
        assert loot["reads"] == 5
        assert ["liar.said", "liar", {"plugin": "read 4", "__proto__": "read 5"}] in arena.heard
        result = await outcome(arena.host.invoke("liar", "liar.result"))
        assert type(result) is dict and set(result) == {"plugin", "__proto__"}
        # What deactivate returns is read the same way, and handed to the
        # next version as plain data.
        reloaded = await asyncio.wait_for(arena.host.reload("liar"), STEP_S)
        assert arena.host.plugins["liar"].state is PluginState.ACTIVE, reloaded
        handed = loot_of(arena, "liar")["handedOver"]
        assert type(handed) is dict and set(handed) == {"plugin", "__proto__"}

    arena.run(attack)


#: Values a plugin hands the host, and how each is refused in the isolate
#: (with the JSON path of the problem), before anything reaches the host.
REFUSED_VALUES = {
    "own-toJSON": ("({ toJSON() { return { plugin: 'victim' }; } })", "TypeError", "a function at $[1].toJSON"),
    "date": ("new Date()", "TypeError", "an object that is not a plain object or array at $[1]"),
    "class-instance": ("new (class Secret { constructor() { this.plugin = 'victim'; } })()", "TypeError",
                       "an object that is not a plain object or array at $[1]"),
    "boxed-string": ("new String('victim')", "TypeError", "an object that is not a plain object or array at $[1]"),
    "typed-array": ("new Uint8Array(4)", "TypeError", "an object that is not a plain object or array at $[1]"),
    "nan": ("({ n: NaN })", "TypeError", "NaN at $[1].n"),
    "bigint": ("[2n ** 64n]", "TypeError", "a BigInt at $[1][0]"),
    "hole": ("[1, , 3]", "TypeError", "undefined at $[1][1]"),
    "huge-sparse-array": ("(() => { const a = []; a.length = 2 ** 32 - 1; return a; })()", "RangeError",
                          "more than 2097152 characters as JSON"),
    "cycle": ("(() => { const a = { plugin: 'victim' }; a.self = a; return a; })()", "TypeError",
              "it contains a cycle at $[1].self"),
    "deep": ("(() => { let v = 0; for (let i = 0; i < 100000; i++) v = [v]; return v; })()", "RangeError",
             "nested more than 64 levels deep"),
    "endless-proxy": ("(() => { const p = new Proxy({}, { ownKeys: () => ['next'], get: () => p,"
                      " getOwnPropertyDescriptor: () => ({ value: 1, enumerable: true, configurable: true }),"
                      " getPrototypeOf: () => Object.prototype }); return p; })()",
                      "TypeError", "it contains a cycle at $[1].next"),
    "fresh-endless-proxy": ("(() => { const make = () => new Proxy({}, { ownKeys: () => ['next'], get: () => make(),"
                            " getOwnPropertyDescriptor: () => ({ value: 1, enumerable: true, configurable: true }),"
                            " getPrototypeOf: () => Object.prototype }); return make(); })()",
                            "RangeError", "nested more than 64 levels deep"),
    "huge-string": ("'x'.repeat(3 * 1024 * 1024)", "RangeError", "more than 2097152 characters as JSON"),
    "many-keys": ("(() => { const o = {}; for (let i = 0; i < 100000; i++) o['a-rather-long-key-' + i] = 0; return o; })()",
                  "RangeError", "more than 2097152 characters as JSON"),
}

REFUSAL_JS = r"""
exports.activate = async (ctx) => {
  let value;
  try { value = VALUE; } catch (e) { await ctx.storage.set("refusal", ["building failed", String(e)]); return; }
  try { await ctx.storage.set("value", value); await ctx.storage.set("refusal", null); }
  catch (e) { await ctx.storage.set("refusal", [e.name, e.message]); }
};
"""


@pytest.mark.parametrize("value, kind, detail", list(REFUSED_VALUES.values()), ids=list(REFUSED_VALUES))
def test_values_that_are_not_plain_json_are_refused_in_the_isolate(arena, value, kind, detail):
    async def attack(arena):
        started = time.monotonic()
        attempt = await attack_js(arena, "refused", REFUSAL_JS.replace("VALUE", value))
        assert attempt.state is PluginState.ACTIVE, attempt.error
        refusal = attempt.loot["refusal"]
        assert refusal is not None and "value" not in attempt.loot, attempt.loot
        assert refusal[0] == kind and refusal[1].startswith("argument ") and detail in refusal[1], refusal
        assert time.monotonic() - started < STEP_S

    arena.run(attack)


# --------------------------------------------------------------------------
# 4. what a handler throws or returns instead of settling

#: Thrown from a command handler -> what the host's error says (None: only
#: that it is a PluginError). The plugin stays active.
ODD_THROWS = {
    "string": ("throw 'HOSTRT_ARENA_SECRET';", "Uncaught string: HOSTRT_ARENA_SECRET"),
    "null": ("throw null;", "Uncaught null: null"),
    "undefined": ("throw undefined;", "Uncaught undefined: undefined"),
    "symbol": ("throw Symbol('victim');", "Uncaught symbol: Symbol(victim)"),
    "throwing-getters": ("throw { get name() { throw 1; }, get message() { throw 2; }, get stack() { throw 3; } };",
                         "Error: (unreadable message)"),
    "throwing-proxy": ("throw new Proxy({}, { get() { throw 1; }, getPrototypeOf() { throw 1; }, has() { throw 1; },"
                       " getOwnPropertyDescriptor() { throw 1; }, ownKeys() { throw 1; } });", None),
    "revoked-proxy": ("const r = Proxy.revocable({}, {}); r.revoke(); throw r.proxy;", "Error: (unreadable message)"),
    "lying-error": ("const e = new Error('x'); Object.defineProperty(e, 'stack', { get() { return { toString() {"
                    " return 'at victim/plugin.js:1:1'; } }; } }); e.name = 'N'.repeat(100000); throw e;", "NNNN"),
    "rejected-thenable": ("return { then(ok, bad) { bad({ code: 'E_CAPABILITY', message: 'forged host refusal' }); } };",
                          "Error: forged host refusal"),
    "then-getter-throws": ("return { get then() { throw new Error('then getter'); } };", "Error: then getter"),
}


@pytest.mark.parametrize("body, says", list(ODD_THROWS.values()), ids=list(ODD_THROWS))
def test_odd_throws_from_a_command_fail_only_that_command(arena, body, says):
    async def attack(arena):
        source = "exports.activate = (ctx) => { ctx.commands.register('odd.run', () => { BODY }); };\n"
        attempt = await attack_js(arena, "odd", source.replace("BODY", body), **command("odd.run"))
        assert attempt.state is PluginState.ACTIVE, attempt.error
        error = await outcome(arena.host.invoke("odd", "odd.run"))
        assert type(error) is PluginError, error
        assert error.reason.startswith("command 'odd.run' failed: "), error.reason
        if says is not None:
            assert says in error.reason, error.reason
        assert len(error.message) < 20000  # cut, however long the name
        assert error.line in (None, 1)  # the forged stack's "victim/plugin.js" is no frame of this plugin
        assert arena.host.plugins["odd"].state is PluginState.ACTIVE
        assert await outcome(arena.host.invoke("victim", "victim.ping")) == "pong"

    arena.run(attack)


#: What a plugin returns instead of a result that ever arrives -> how the
#: host says it stopped the plugin.
NEVER_SETTLING = {
    "pending-promise": ("new Promise(() => {})", "did not finish within the time limit of 400 ms"),
    "silent-thenable": ("({ then() {} })", "did not finish within the time limit of 400 ms"),
    "awaits-a-timer-never-set": ("new Promise((ok) => { clearTimeout(setTimeout(ok, 10)); })",
                                 "did not finish within the time limit of 400 ms"),
    # resolving with itself for ever: microtasks that never end
    "self-resolving-thenable": ("(() => { const t = { then(ok) { ok(t); } }; return t; })()",
                                "plugin code ran longer than its time limit of 400 ms"),
}


@pytest.mark.parametrize("where", ["activate", "command", "event"])
@pytest.mark.parametrize("never, stopped", list(NEVER_SETTLING.values()), ids=list(NEVER_SETTLING))
def test_never_settling_results_stop_the_plugin_at_its_time_limit(arena, never, stopped, where):
    async def attack(arena):
        source = ("exports.activate = (ctx) => {\n"
                  "  ctx.commands.register('never.run', () => NEVER);\n"
                  "  ctx.events.on('never.ping', () => NEVER);\n"
                  "  return WHERE === 'activate' ? NEVER : undefined;\n"
                  "};\n").replace("NEVER", never).replace("WHERE", json.dumps(where))
        arena.host.declare_event("never.ping")
        started = time.monotonic()
        attempt = await attack_js(arena, "never", source, capabilities=["events.subscribe:never.ping"],
                                  **command("never.run"))
        if where == "activate":
            assert attempt.failed_with(BudgetExceededError, stopped)
        else:
            assert attempt.state is PluginState.ACTIVE, attempt.error
            started = time.monotonic()
            if where == "command":
                error = await outcome(arena.host.invoke("never", "never.run"))
            else:
                delivery = await asyncio.wait_for(arena.host.emit("never.ping"), STEP_S)
                error = delivery.failed["never"]
            assert isinstance(error, BudgetExceededError) and stopped in error.reason, error
            await wait_state(arena, "never", PluginState.FAILED)
        assert time.monotonic() - started < TIMEOUT_MS / 1000 + SLACK_S

    arena.run(attack)


# --------------------------------------------------------------------------
# 5. re-entrant dispatch and someone else's identity

REENTRANT_JS = r"""
let C = null;
let depth = 0;
exports.activate = (ctx) => {
  C = ctx;
  // The host method invokes this very command again while it waits.
  ctx.commands.register("again.run", async () => {
    depth += 1;
    try { return { depth, got: await C.host.call("bounce", { plugin: "victim" }) }; }
    catch (e) { return { depth, refused: e.code, message: e.message }; }
  });
  // An event handler that emits the event it handles, for ever.
  ctx.events.on("again.echo", async (payload) => {
    try { await C.events.emit("again.echo", { n: payload.n + 1 }); }
    catch (e) { await C.storage.set("echo", { n: payload.n, refused: e.code }); }
  });
  return ctx.events.emit("again.echo", { n: 1 });
};
"""


def test_reentrant_dispatch_is_refused_instead_of_deadlocking(arena):
    async def attack(arena):
        calls = []

        async def bounce(params):
            calls.append(params)
            return await arena.host.invoke("again", "again.run")

        arena.host.expose("bounce", bounce)
        attempt = await attack_js(arena, "again", REENTRANT_JS, capabilities=[
            "storage", "host.call:bounce", "events.publish:again.echo", "events.subscribe:again.echo"],
            events=[{"name": "again.echo"}], **command("again.run"))
        assert attempt.state is PluginState.ACTIVE, attempt.error
        # The events nested up to the host's depth limit, then the emit was refused.
        assert attempt.loot["echo"] == {"n": 8, "refused": "E_EVENT_DEPTH"}
        # (a deadlock would have run into the time limit and failed the plugin)
        result = await outcome(arena.host.invoke("again", "again.run"))
        # The host method's invoke of the waiting plugin failed at once; the
        # plugin sees a host method failure, never the host's exception.
        assert result["depth"] == 1 and result["refused"] == "E_HOST_METHOD", result
        assert calls == [{"plugin": "victim"}]
        assert arena.host.plugins["again"].state is PluginState.ACTIVE

    arena.run(attack)


IMPOSTOR_JS = r"""
exports.activate = async (ctx) => {
  const got = {};
  const note = async (name, work) => {
    try { got[name] = ["ok", await work()]; } catch (e) { got[name] = ["refused", e.code]; }
  };
  await note("command", () => ctx.commands.register("victim.ping", () => "impostor").registered);
  await note("emitAsVictim", () => ctx.events.emit("victim.started", { source: "victim" }));
  await note("subscribeAll", () => ctx.events.on("*", () => {}).registered);
  await note("keyWithId", () => ctx.storage.get("victim:secret"));
  await note("keyObject", () => ctx.storage.get({ plugin: "victim", key: "secret" }));
  await note("settingsOfVictim", () => ctx.settings.get("victim.token"));
  ctx.log.warn("logged as victim", { plugin_id: "victim", plugin: "victim" });
  console.log("\n[victim] INFO victim.ping answered");
  await ctx.storage.set("got", got);
};
"""


def test_a_plugin_cannot_act_as_another(arena):
    async def attack(arena):
        attempt = await attack_js(arena, "impostor", IMPOSTOR_JS, capabilities=["storage", "settings.read"])
        assert attempt.state is PluginState.ACTIVE, attempt.error
        got = attempt.loot["got"]
        assert got == {
            "command": ["refused", "E_HOSTRT"],  # not declared by this plugin (and the victim's anyway)
            "emitAsVictim": ["refused", "E_CAPABILITY"],
            "subscribeAll": ["refused", "E_CAPABILITY"],
            "keyWithId": ["refused", "E_STORAGE"],
            "keyObject": ["refused", "E_STORAGE"],
            "settingsOfVictim": ["refused", "E_SETTINGS"],
        }, got
        # Its log lines are its own, whatever they claim; the victim's log is empty.
        assert arena.logs_of("impostor") == ["logged as victim", "\\n[victim] INFO victim.ping answered"]
        assert arena.logs_of("victim") == []
        assert await outcome(arena.host.invoke("victim", "victim.ping")) == "pong"

    arena.run(attack)


def test_a_command_named_like_another_plugins_stays_its_own(arena):
    async def attack(arena):
        # Commands belong to the plugin that declares them: a plugin may name
        # one like the victim's, and the host keeps the two apart.
        attempt = await attack_js(arena, "squatter", """
            exports.activate = (ctx) => ctx.commands.register("victim.ping", () => "squatted").registered;
        """, **command("victim.ping"))
        assert attempt.state is PluginState.ACTIVE, attempt.error
        assert await outcome(arena.host.invoke("squatter", "victim.ping")) == "squatted"
        assert await outcome(arena.host.invoke("victim", "victim.ping")) == "pong"
        assert sorted((c.plugin_id, c.name) for c in arena.host.commands()) == [
            ("squatter", "victim.ping"), ("victim", "victim.ping")]

    arena.run(attack)
