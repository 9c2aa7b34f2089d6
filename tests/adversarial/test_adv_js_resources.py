"""Hostile JavaScript plugins against the host's time and memory limits.

Each attack is a real ``plugin.js`` run by the arena's host: it spins,
recurses, backtracks, fills its heap or the memory outside it, floods the
host with timers, log lines, events and host calls, or keeps its isolate
busy while the host stops it. Each test asserts how the plugin was stopped
(the error type and what it says, or the refusal the plugin caught) and
that it was stopped in time; the arena checks that the host and everyone
else carried on.
"""

from __future__ import annotations

import asyncio
import resource
import time

import pytest

from hostrt import BudgetExceededError, PluginState, ResourceLimitError
from hostrt.context import HOST_CALLS_IN_FLIGHT, LOG_RECORDS_BURST, LOG_RECORDS_PER_SECOND

from adversarial.arena import STEP_S
from adversarial.test_adv_javascript import SLACK_S, TIMEOUT_MS, attack_js, command, outcome, wait_state

TIMEOUT_S = TIMEOUT_MS / 1000
TIMED_OUT = "plugin code ran longer than its time limit of 400 ms and was stopped"
OUT_OF_HEAP = "plugin used more memory than its limit and was stopped"


# --------------------------------------------------------------------------
# 1. runaway code, wherever it runs

#: name -> (code, error kind, what the error says). Each runs inside
#: activate, or inside a timer or microtask activate leaves behind.
RUNAWAYS = {
    "loop": ("for (;;) {}", BudgetExceededError, TIMED_OUT),
    "loop-in-a-timer": ("setTimeout(() => { for (;;) {} }, 1);", BudgetExceededError, TIMED_OUT),
    "loop-in-an-interval": ("let n = 0; setInterval(() => { if (++n === 3) for (;;) {} }, 1);",
                            BudgetExceededError, TIMED_OUT),
    "loop-in-a-microtask": ("Promise.resolve().then(() => { for (;;) {} });", BudgetExceededError, TIMED_OUT),
    "endless-microtask-chain": ("const again = () => { Promise.resolve().then(again); }; again();",
                                BudgetExceededError, TIMED_OUT),
    "queue-microtask-spin": ("const spin = () => queueMicrotask(spin); spin();", BudgetExceededError, TIMED_OUT),
    "catastrophic-regex": ("/^(a+)+$/.test('a'.repeat(40) + 'b');", BudgetExceededError, TIMED_OUT),
    "recursion": ("const f = (n) => f(n + 1) + 1; f(0);", ResourceLimitError,
                  "RangeError: Maximum call stack size exceeded"),
    "heap-arrays": ("const keep = []; for (;;) keep.push(new Array(100000).fill(7));", ResourceLimitError, OUT_OF_HEAP),
    "heap-strings": ("const keep = []; for (let i = 0; ; i++) keep.push('x'.repeat(1 << 20) + i);",
                     ResourceLimitError, OUT_OF_HEAP),
    "heap-in-a-timer": ("setTimeout(() => { const keep = []; for (;;) keep.push(new Array(100000).fill(7)); }, 1);",
                        ResourceLimitError, OUT_OF_HEAP),
}

BEFORE_ACTIVATION = ("loop", "catastrophic-regex", "recursion", "heap-arrays", "heap-strings")


@pytest.mark.parametrize("code, kind, says", list(RUNAWAYS.values()), ids=list(RUNAWAYS))
def test_runaway_code_stops_its_plugin_in_time(arena, code, kind, says):
    # Filling a heap takes garbage collections: on a loaded machine they can
    # outlast a short time limit, which would stop the plugin first.
    timeout_ms = 3000 if kind is ResourceLimitError else TIMEOUT_MS

    async def attack(arena):
        started = time.monotonic()
        attempt = await attack_js(arena, "runaway", "exports.activate = (ctx) => { CODE };\n".replace("CODE", code),
                                  limits={"timeoutMs": timeout_ms, "memoryMb": 16})
        if attempt.state is PluginState.ACTIVE:  # the runaway part runs after activate returned
            await wait_state(arena, "runaway", PluginState.FAILED)
        error = arena.host.plugins["runaway"].error
        assert type(error) is kind and says in error.reason, error
        assert arena.host.plugins["runaway"].state is PluginState.FAILED
        # the isolate's load (a new isolate and the shim) comes on top of the limit
        assert time.monotonic() - started < timeout_ms / 1000 + SLACK_S + 0.5

    arena.run(attack)


#: Plugin values the host asks the isolate to encode, whose reading never
#: ends: a command's result, a thrown error's stack, the state deactivate
#: hands over. The host reads only the text the shim makes of them, so the
#: reading runs in the isolate, under the plugin's clock.
ENDLESS_READS = {
    "command-result-getter": ("result", "return { get plugin() { for (;;) {} } };"),
    "command-then-getter": ("result", "return { get then() { for (;;) {} } };"),
    "error-stack-getter": ("result", "const e = new Error('x'); Object.defineProperty(e, 'stack', "
                           "{ get() { for (;;) {} } }); throw e;"),
    "proxy-result": ("result", "return new Proxy({}, { ownKeys() { for (;;) {} } });"),
    "deactivate-state-getter": ("state", "return null;"),
}


@pytest.mark.parametrize("where, body", list(ENDLESS_READS.values()), ids=list(ENDLESS_READS))
def test_values_whose_reading_never_ends_are_stopped_in_the_isolate(arena, where, body):
    async def attack(arena):
        source = ("module.exports = {\n"
                  "  activate(ctx) { ctx.commands.register('reads.run', () => { BODY }); },\n"
                  "  deactivate() { return { get state() { for (;;) {} } }; },\n"
                  "};\n").replace("BODY", body)
        attempt = await attack_js(arena, "reads", source, **command("reads.run"))
        assert attempt.state is PluginState.ACTIVE, attempt.error
        started = time.monotonic()
        if where == "result":
            error = await outcome(arena.host.invoke("reads", "reads.run"))
        else:
            error = (await asyncio.wait_for(arena.host.deactivate("reads"), STEP_S)).error
        assert isinstance(error, BudgetExceededError) and TIMED_OUT in error.reason, error
        assert time.monotonic() - started < TIMEOUT_S + SLACK_S
        if where == "result":
            await wait_state(arena, "reads", PluginState.FAILED)
        else:  # deactivated all the same
            assert arena.host.plugins["reads"].state is PluginState.INACTIVE

    arena.run(attack)


# --------------------------------------------------------------------------
# 2. memory outside the V8 heap

MIB = 1024 * 1024
OUTSIDE_HEAP = {
    "array-buffer": "new ArrayBuffer(64 * MiB)",
    "many-buffers": "(() => { for (;;) KEEP.push(new ArrayBuffer(MiB)); })()",
    "typed-array": "new Float64Array(8 * MiB)",
    "typed-array-from-a-lying-array-like": "new Uint8Array({ get length() { return 64 * MiB; } })",
    "data-view": "new DataView(new ArrayBuffer(64 * MiB))",
    "resizable-maximum": "new ArrayBuffer(1, { maxByteLength: 2 ** 32 })",
    "resize": "(() => { const b = new ArrayBuffer(1, { maxByteLength: 8 * MiB }); KEEP.push(b);"
              " for (;;) KEEP.push(new ArrayBuffer(MiB)); })()",
    "transfer": "(() => { const b = new ArrayBuffer(MiB); KEEP.push(b); return b.transfer(64 * MiB); })()",
    "slices": "(() => { const b = new ArrayBuffer(8 * MiB); KEEP.push(b); for (;;) KEEP.push(b.slice(0)); })()",
    # Half a gigabyte of text, built lazily: refused before V8 flattens and
    # decodes it (which once grew the host by more than a gigabyte).
    "from-base64": "Uint8Array.fromBase64('AAAA'.repeat(2 ** 27 - 8))",
    "from-hex": "Uint8Array.fromHex('00'.repeat(2 ** 27))",
    "typed-from-iterable": "Uint8Array.from({ length: 64 * MiB }, () => 1)",
}

OUTSIDE_HEAP_JS = r"""
const MiB = 1024 * 1024;
const KEEP = [];
exports.activate = async (ctx) => {
  let outcome;
  try { const made = ALLOCATION; outcome = ["allocated", made.byteLength]; }
  catch (e) { outcome = [e.name, e.message]; }
  KEEP.length = 0;
  await ctx.storage.set("outcome", outcome);
};
"""


@pytest.mark.parametrize("allocation", list(OUTSIDE_HEAP.values()), ids=list(OUTSIDE_HEAP))
def test_array_buffer_memory_is_charged_against_the_memory_limit(arena, allocation):
    async def attack(arena):
        attempt = await attack_js(arena, "buffers", OUTSIDE_HEAP_JS.replace("ALLOCATION", allocation))
        assert attempt.state is PluginState.ACTIVE, attempt.error
        kind, message = attempt.loot["outcome"]
        assert kind == "RangeError", (kind, message)
        assert "more bytes of ArrayBuffer memory would pass this plugin's limit of 16777216 bytes" in message, message

    arena.run(attack)


# --------------------------------------------------------------------------
# 2b. whole strings copied in one step

#: A 16 MiB plugin's longest string for the builtins that copy a whole
#: string in one C++ call (memoryMb / 8 characters).
MAX_CHARS = 16 * MIB // 8
#: A string far past it, built as a rope for almost nothing; flattening and
#: copying it once grew the host by up to 1.4 GB.
HUGE_CHARS = 2 ** 28

#: name -> (the builtin as the refusal names it, a call on the string S).
WHOLE_STRING = {
    "normalize": ("String.prototype.normalize()", "S.normalize('NFKC')"),
    "to-upper-case": ("String.prototype.toUpperCase()", "S.toUpperCase()"),
    "to-lower-case": ("String.prototype.toLowerCase()", "S.toLowerCase()"),
    "to-locale-upper-case": ("String.prototype.toLocaleUpperCase()", "S.toLocaleUpperCase('tr')"),
    "to-locale-lower-case": ("String.prototype.toLocaleLowerCase()", "S.toLocaleLowerCase('tr')"),
    "is-well-formed": ("String.prototype.isWellFormed()", "S.isWellFormed()"),
    "to-well-formed": ("String.prototype.toWellFormed()", "S.toWellFormed()"),
    "locale-compare": ("String.prototype.localeCompare()", "'a'.localeCompare({ toString: () => S })"),
    "encode-uri-component": ("encodeURIComponent()", "encodeURIComponent(S)"),
    "encode-uri": ("encodeURI()", "encodeURI(S)"),
    "decode-uri-component": ("decodeURIComponent()", "decodeURIComponent(S)"),
    "decode-uri": ("decodeURI()", "decodeURI(S)"),
    "escape": ("escape()", "escape(S)"),
    "unescape": ("unescape()", "unescape(S)"),
    "segmenter": ("Intl.Segmenter.prototype.segment()", "new Intl.Segmenter('en', { granularity: 'word' }).segment(S)"),
    "collator": ("Intl.Collator.prototype.compare()", "['a'].map(() => new Intl.Collator('de').compare('a', S))"),
    "number-format": ("Intl.NumberFormat.prototype.format()", "new Intl.NumberFormat('en').format({ valueOf: () => S })"),
    "number-format-parts": ("Intl.NumberFormat.prototype.formatToParts()", "new Intl.NumberFormat('en').formatToParts(S)"),
    "number-format-range": ("Intl.NumberFormat.prototype.formatRange()", "new Intl.NumberFormat('en').formatRange(1, S)"),
    "json-stringify": ("JSON.stringify()", "JSON.stringify({ data: [1, { text: S }] })"),
    "json-stringify-replacer": ("JSON.stringify()", "JSON.stringify({ data: 1 }, (key, value) => key ? S : value)"),
    "json-parse": ("JSON.parse()", "JSON.parse(S)"),
    "array-join": ("Array.prototype.join()", "[S].join()"),
    "array-to-string": ("Array.prototype.join()", "`${[S]}`"),
}

WHOLE_STRING_JS = r"""
// A rope of n digits, as cheap to make however long it is.
const sized = (n) => { let s = "1"; while (s.length * 2 <= n) s += s; return s + "1".repeat(n - s.length); };
const attempt = (S) => {
  try { const made = CALL; return ["done", typeof made]; }
  catch (e) { return [e.name, e.message]; }
};
exports.activate = async (ctx) => {
  const outcome = {};
  for (const [name, n] of [["huge", HUGE], ["over", MAX + 1], ["under", MAX]]) outcome[name] = attempt(sized(n));
  await ctx.storage.set("outcome", outcome);
};
"""


@pytest.mark.parametrize("what, call", list(WHOLE_STRING.values()), ids=list(WHOLE_STRING))
def test_whole_string_builtins_refuse_strings_past_the_memory_limit_up_front(arena, what, call):
    async def attack(arena):
        source = (WHOLE_STRING_JS.replace("CALL", call).replace("HUGE", str(HUGE_CHARS))
                  .replace("MAX", str(MAX_CHARS)))
        grown_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        attempt = await attack_js(arena, "strings", source, limits={"timeoutMs": 3000, "memoryMb": 16})
        # The process's peak (KiB) did not take the copy: refused before V8 started.
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - grown_before < 256 * 1024
        assert attempt.state is PluginState.ACTIVE, attempt.error
        outcome = attempt.loot["outcome"]
        for size, n in (("huge", HUGE_CHARS), ("over", MAX_CHARS + 1)):
            assert outcome[size] == [
                "RangeError",
                f"{what}: a string of {n} characters is longer than this plugin's memory limit allows ({MAX_CHARS})",
            ], (size, outcome[size])
        assert outcome["under"][0] == "done", outcome["under"]

    arena.run(attack)


def test_json_stringify_refuses_strings_past_the_memory_limit_in_all(arena):
    async def attack(arena):
        source = r"""
exports.activate = async (ctx) => {
  const part = "y".repeat(1024 * 1024);
  const refused = (f) => { try { f(); return null; } catch (e) { return [e.name, e.message]; } };
  await ctx.storage.set("outcome", {
    inAll: refused(() => JSON.stringify({ a: part, b: [part, part] })),
    boxed: refused(() => JSON.stringify([new String(part + part + part)])),
    fine: JSON.stringify({ a: part.slice(0, 10), b: [1, 2] }),
  });
};
"""
        attempt = await attack_js(arena, "json", source)
        assert attempt.state is PluginState.ACTIVE, attempt.error
        outcome = attempt.loot["outcome"]
        assert outcome["inAll"] == [
            "RangeError", f"JSON.stringify(): strings of {3 * MIB} characters in all are longer than this plugin's "
                          f"memory limit allows ({MAX_CHARS})"]
        assert outcome["boxed"] == [
            "RangeError", f"JSON.stringify(): a string of {3 * MIB} characters is longer than this plugin's "
                          f"memory limit allows ({MAX_CHARS})"]
        assert outcome["fine"] == '{"a":"yyyyyyyyyy","b":[1,2]}'

    arena.run(attack)


#: Every builtin guarded above, on ordinary strings, with what V8 answers.
ORDINARY_STRINGS_JS = r"""
exports.activate = async (ctx) => {
  const collator = new Intl.Collator("en");
  const numbers = new Intl.NumberFormat("en");
  const results = {
    normalize: ["e\u0301".normalize(), "\u00e9".normalize("NFD").length],
    upper: "straße".toUpperCase(), lower: "ÀB".toLowerCase(),
    localeUpper: "i".toLocaleUpperCase("tr"), localeLower: "I".toLocaleLowerCase("tr"),
    wellFormed: ["a\uD800".isWellFormed(), "a\uD800".toWellFormed()],
    localeCompare: ["a".localeCompare("b"), "b".localeCompare("a", "en"), { toString: () => "a" }.toString().localeCompare("a")],
    uri: [encodeURIComponent("a b/é"), encodeURI("http://x/a b?q=é"), decodeURIComponent("%C3%A9%2F"), decodeURI("a%20b%2F")],
    escape: [escape("a b+é"), unescape("%41%u00e9")],
    segments: Array.from(new Intl.Segmenter("en", { granularity: "word" }).segment("hi there"), (s) => s.segment),
    collator: [collator.compare("a", "b"), ["b", "c", "a"].sort(collator.compare), collator.compare === collator.compare],
    numbers: [numbers.format(1234.5), numbers.format("1234.5"), numbers.format(12n), numbers.format(new Date(5)),
              numbers.formatToParts(1000).map((p) => p.type), numbers.formatRange(1, "2")],
    json: [JSON.stringify({ a: [1, "x"], b: null }), JSON.stringify({ a: 1, b: 2 }, ["a"]),
           JSON.stringify({ a: 1 }, (k, v) => (typeof v === "number" ? v + 1 : v)), JSON.stringify(new Date(0)),
           JSON.stringify([new String("q")], null, 1), JSON.parse('{"a":[1,"x"]}', (k, v) => (k === "0" ? 2 : v))],
    join: [[1, 2, 3].join("-"), [1, null, "a", undefined].join(), String([1, [2, 3]]), Array.prototype.join.call({ length: 2, 0: "a", 1: "b" }, "+")],
    lengths: [String.prototype.normalize.length, String.prototype.localeCompare.length, String.prototype.split.length,
              encodeURIComponent.length, JSON.stringify.length, JSON.parse.length, Array.prototype.join.length,
              Intl.Segmenter.prototype.segment.length, collator.compare.length, numbers.format.length],
    names: [String.prototype.toUpperCase.name, decodeURI.name, JSON.stringify.name, Array.prototype.join.name,
            Object.getOwnPropertyDescriptor(Intl.Collator.prototype, "compare").get.name, collator.compare.name],
    enumerable: ["normalize", "localeCompare"].some((k) => Object.keys(String.prototype).includes(k)) ||
                Object.keys(globalThis).includes("escape") || Object.keys(JSON).length,
    applied: [Reflect.apply(String.prototype.toUpperCase, "ab", []), String.prototype.normalize.call("x"),
              encodeURIComponent.apply(null, ["a b"])],
    constructible: [() => new String.prototype.normalize(), () => new encodeURIComponent(), () => new JSON.stringify()]
      .map((f) => { try { f(); return true; } catch (e) { return e.name; } }),
  };
  await ctx.storage.set("results", results);
};
"""


def test_guarded_string_builtins_work_as_before_on_ordinary_strings(arena):
    async def attack(arena):
        attempt = await attack_js(arena, "ordinary", ORDINARY_STRINGS_JS)
        assert attempt.state is PluginState.ACTIVE, attempt.error
        assert attempt.loot["results"] == {
            "normalize": ["\u00e9", 2],
            "upper": "STRASSE", "lower": "àb",
            "localeUpper": "\u0130", "localeLower": "\u0131",
            "wellFormed": [False, "a\ufffd"],
            "localeCompare": [-1, 1, 0],
            "uri": ["a%20b%2F%C3%A9", "http://x/a%20b?q=%C3%A9", "\u00e9/", "a b%2F"],
            "escape": ["a%20b+%E9", "A\u00e9"],
            "segments": ["hi", " ", "there"],
            "collator": [-1, ["a", "b", "c"], True],
            "numbers": ["1,234.5", "1,234.5", "12", "5", ["integer", "group", "integer"], "1–2"],
            "json": ['{"a":[1,"x"],"b":null}', '{"a":1}', '{"a":2}', '"1970-01-01T00:00:00.000Z"', '[\n "q"\n]',
                     {"a": [2, "x"]}],
            "join": ["1-2-3", "1,,a,", "1,2,3", "a+b"],
            "lengths": [0, 1, 2, 1, 3, 2, 1, 1, 2, 1],
            "names": ["toUpperCase", "decodeURI", "stringify", "join", "get compare", ""],
            "enumerable": 0,
            "applied": ["AB", "x", "a%20b"],
            "constructible": ["TypeError", "TypeError", "TypeError"],
        }

    arena.run(attack)


# --------------------------------------------------------------------------
# 3. flooding the host

TIMER_FLOOD_JS = r"""
let fired = 0;
exports.activate = async (ctx) => {
  let refused = null;
  try { for (let i = 0; i < 5000; i++) setInterval(() => { fired += 1; }, 0); }
  catch (e) { refused = [e.name, e.message]; }
  await ctx.storage.set("refused", refused);
  ctx.commands.register("flood.fired", () => fired);
};
"""


def test_a_thousand_zero_intervals_are_the_most_and_do_not_hold_the_host(arena):
    async def attack(arena):
        attempt = await attack_js(arena, "flood", TIMER_FLOOD_JS, **command("flood.fired"))
        assert attempt.state is PluginState.ACTIVE, attempt.error
        assert attempt.loot["refused"] == ["RangeError", "more than 1000 timers are pending"]
        # The host's loop keeps its pace while a thousand intervals fire.
        gaps = []
        last = time.monotonic()
        for _ in range(40):
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
        assert max(gaps) < 0.25, max(gaps)
        fired = await outcome(arena.host.invoke("flood", "flood.fired"))
        assert fired >= 1000  # each interval fired at least once (every 4 ms at most)
        record = await asyncio.wait_for(arena.host.deactivate("flood"), STEP_S)
        assert record.state is PluginState.INACTIVE and record.error is None

    arena.run(attack)


def test_log_floods_are_cut_to_the_burst(arena):
    async def attack(arena):
        started = time.monotonic()
        attempt = await attack_js(arena, "chatty", """
            exports.activate = (ctx) => {
              for (let i = 0; i < 20000; i++) { console.log("line " + i); ctx.log.error("HOSTRT_ARENA_SECRET " + i); }
            };
        """)
        assert attempt.state is PluginState.ACTIVE, attempt.error
        # One burst, and what the rate refilled while the plugin ran; the
        # rest were dropped, and said to be.
        refilled = LOG_RECORDS_PER_SECOND * (time.monotonic() - started)
        assert LOG_RECORDS_BURST <= len(attempt.logs) <= LOG_RECORDS_BURST + refilled + 2, len(attempt.logs)
        assert any(line.endswith("log records dropped: the plugin logged faster than 200 per second")
                   for line in attempt.logs)

    arena.run(attack)


def test_event_floods_are_refused_past_the_rate_limit(arena):
    async def attack(arena):
        attempt = await attack_js(arena, "shouter", """
            exports.activate = async (ctx) => {
              const sent = [];
              for (let i = 0; i < 2000; i++) sent.push(ctx.events.emit("shouter.noise", { i }));
              const settled = await Promise.allSettled(sent);
              const codes = {};
              for (const s of settled) {
                const key = s.status === "fulfilled" ? "ok" : s.reason.code;
                codes[key] = (codes[key] || 0) + 1;
              }
              await ctx.storage.set("codes", codes);
            };
        """, capabilities=["storage", "events.publish:shouter.noise"], events=[{"name": "shouter.noise"}])
        assert attempt.state is PluginState.ACTIVE, attempt.error
        codes = attempt.loot["codes"]
        burst = arena.host.bus.policy.burst
        assert set(codes) == {"ok", "E_RATE_LIMIT"} and burst <= codes["ok"] < burst + 50, codes
        assert len([e for e in arena.heard if e[0] == "shouter.noise"]) == codes["ok"]

    arena.run(attack)


def test_host_call_floods_run_at_most_eight_at_once(arena):
    async def attack(arena):
        running = 0
        most = 0
        release = asyncio.Event()

        async def slow(params):
            nonlocal running, most
            running += 1
            most = max(most, running)
            try:
                await release.wait()
            finally:
                running -= 1
            return params["i"]

        arena.host.expose("slow", slow)
        attempt = await attack_js(arena, "caller", """
            let C = null;
            exports.activate = (ctx) => {
              C = ctx;
              ctx.commands.register("caller.flood", async () => {
                const calls = [];
                for (let i = 0; i < 100; i++) calls.push(C.host.call("slow", { i }));
                return (await Promise.all(calls)).length;
              });
            };
        """, capabilities=["host.call:slow"], **command("caller.flood"), limits={"timeoutMs": 5000, "memoryMb": 16})
        assert attempt.state is PluginState.ACTIVE, attempt.error
        flood = asyncio.ensure_future(arena.host.invoke("caller", "caller.flood"))
        deadline = time.monotonic() + STEP_S
        while running < HOST_CALLS_IN_FLIGHT:
            assert time.monotonic() < deadline and not flood.done()
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # room for a ninth, were the limit not kept
        assert most == HOST_CALLS_IN_FLIGHT
        release.set()
        assert await asyncio.wait_for(flood, STEP_S) == 100
        assert most == HOST_CALLS_IN_FLIGHT

    arena.run(attack)


QUEUE_FLOOD_JS = r"""
exports.activate = async (ctx) => {
  const refusals = {};
  const calls = [];
  try { for (let i = 0; i < 20000; i++) calls.push(ctx.storage.get("k" + i)); }
  catch (e) { refusals.pending = [e.name, e.message, calls.length]; }
  await Promise.all(calls);
  const big = "x".repeat(1024 * 1024);
  const writes = [];
  try { for (let i = 0; i < 20; i++) writes.push(ctx.storage.set("big" + i, big)); }
  catch (e) { refusals.outbox = [e.name, e.message.slice(0, 60), writes.length]; }
  await Promise.allSettled(writes);
  for (let i = 0; i < 20; i++) await ctx.storage.delete("big" + i);
  await ctx.storage.set("refusals", refusals);
};
"""


def test_unawaited_call_floods_are_refused_in_the_isolate(arena):
    async def attack(arena):
        # time enough for the host to answer ten thousand calls
        attempt = await attack_js(arena, "queuer", QUEUE_FLOOD_JS, limits={"timeoutMs": 5000, "memoryMb": 16})
        assert attempt.state is PluginState.ACTIVE, attempt.error
        refusals = attempt.loot["refusals"]
        assert refusals["pending"] == ["RangeError", "more than 10000 host calls are pending; await some first", 10000]
        name, message, queued = refusals["outbox"]
        assert name == "RangeError" and message.startswith("too much data sent to the host at once") and queued < 20

    arena.run(attack)


# --------------------------------------------------------------------------
# 4. busy while the host stops it

BUSY_JS = r"""
module.exports = {
  activate(ctx) {
    ctx.commands.register("busy.spin", () => { for (;;) {} });
    setInterval(() => { const end = Date.now() + 300; while (Date.now() < end) {} }, 1);
  },
  deactivate() { for (;;) {} },
};
"""


@pytest.mark.parametrize("stop", ["deactivate", "disable"])
def test_a_plugin_busy_while_the_host_stops_it_is_stopped_in_time(arena, stop):
    async def attack(arena):
        attempt = await attack_js(arena, "busy", BUSY_JS, **command("busy.spin"), limits={"timeoutMs": 1000, "memoryMb": 16})
        assert attempt.state is PluginState.ACTIVE, attempt.error
        spinning = asyncio.ensure_future(arena.host.invoke("busy", "busy.spin"))
        await asyncio.sleep(0.05)  # the command is under way
        started = time.monotonic()
        stopping = arena.host.deactivate("busy") if stop == "deactivate" else arena.host.disable("busy")
        record = await asyncio.wait_for(stopping, STEP_S)
        # the spinning command has the isolate until its own limit, then
        # deactivate's endless loop gets one of its own
        assert time.monotonic() - started < 2 * 1.0 + SLACK_S
        assert record.state in (PluginState.INACTIVE, PluginState.FAILED, PluginState.DISABLED), record
        failed = await outcome(spinning)
        assert isinstance(failed, BudgetExceededError), failed

    arena.run(attack)
