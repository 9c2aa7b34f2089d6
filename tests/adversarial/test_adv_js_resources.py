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
