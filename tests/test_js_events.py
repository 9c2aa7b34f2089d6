"""Events, host methods and commands from JavaScript plugins: ``ctx.events``,
``ctx.host`` and ``ctx.commands`` in real V8 isolates, through the real
host and a real SQLite file. (The Python side of the same API is in
test_events.py and test_host_methods.py.)"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from hostrt import Host, PluginState, callchain
from hostrt.errors import (
    BudgetExceededError,
    CommandNotFoundError,
    EventError,
    HostMethodError,
    PayloadError,
    PluginError,
)
from hostrt.events import EventPolicy
from hostrt.hostmethods import Page

from conftest import RecordingGate, write_plugin
from test_events import GREETING, RECORDER as PY_RECORDER, rejections, running, stored
from test_host_methods import GREET_DECL
from test_js_runtime import active, write_js_plugin

#: Two handlers for PATTERN that append what they receive to "seen". Each
#: reads and writes storage with awaits in between: unless the second
#: handler starts only once the first one's promise settled, they lose
#: each other's entries.
RECORDER = """
module.exports = { activate(ctx) {
    const record = async (entry) => {
        const seen = await ctx.storage.get("seen", []);
        seen.push(entry);
        await ctx.storage.set("seen", seen);
    };
    ctx.subscriptions.push(ctx.events.on("PATTERN", (payload, info) => record(["first", payload, info.name, info.source])));
    ctx.subscriptions.push(ctx.events.on("PATTERN", (payload) => record(["second", payload])));
} };
"""


#: Command "send" emits the event named in its parameters and answers
#: "sent", or the error's class, code and message.
PUBLISHER = """
module.exports = { activate(ctx) {
    ctx.commands.register("send", async (params) => {
        try {
            const result = await ctx.events.emit(params.event, params.payload);
            return result === undefined ? "sent" : "resolved with a value";
        } catch (e) {
            return { name: e.name, code: e.code, message: e.message, capability: e instanceof CapabilityError,
                     hostrt: e instanceof HostrtError };
        }
    });
} };
"""
PUBLISHER_MANIFEST = {
    "capabilities": ["events.publish:greeting.*"],
    "events": [GREETING],
    "commands": [{"name": "send"}],
}

#: Command "call" calls the host method named in its parameters and answers
#: {result} or the error's code and message.
CALLER = """
module.exports = { activate(ctx) {
    ctx.commands.register("call", async (params) => {
        try {
            return { result: await ctx.host.call(params.method, params.params) };
        } catch (e) {
            return { name: e.name, code: e.code, message: e.message, capability: e instanceof CapabilityError };
        }
    });
} };
"""


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def js(plugins: Path, plugin_id: str, source: str, **manifest: Any) -> None:
    write_js_plugin(plugins, plugin_id, source, **manifest)


def recorder(plugins: Path, plugin_id: str, pattern: str, *, python: bool = False) -> None:
    capabilities = [f"events.subscribe:{pattern}", "storage"]
    if python:
        write_plugin(plugins, plugin_id, PY_RECORDER.replace("PATTERN", pattern), capabilities=capabilities)
    else:
        js(plugins, plugin_id, RECORDER.replace("PATTERN", pattern), capabilities=capabilities)


def seen_in_order(payloads: list[Any], source: str, name: str = "greeting.sent") -> list[Any]:
    expected: list[Any] = []
    for payload in payloads:
        expected += [["first", payload, name, source], ["second", payload]]
    return expected


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    return folder


# -- delivery --------------------------------------------------------------------------


def test_a_js_event_reaches_js_and_python_subscribers_in_order(plugins: Path, tmp_path: Path) -> None:
    js(plugins, "pub", PUBLISHER, **PUBLISHER_MANIFEST)
    recorder(plugins, "js-rec", "greeting.*")
    recorder(plugins, "py-rec", "greeting.sent", python=True)

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            await host.activate_all()
            payloads = [{"to": "w", "n": n} for n in range(3)]
            for payload in payloads:
                assert await host.invoke("pub", "send", {"event": "greeting.sent", "payload": payload}) == "sent"
            await host.events_idle()
            for plugin_id in ("js-rec", "py-rec"):
                assert stored(host, plugin_id, "seen") == seen_in_order(payloads, "pub")

    run(main())


def test_a_python_event_reaches_a_js_subscriber(plugins: Path, tmp_path: Path) -> None:
    publisher = """
def activate(ctx):
    def send(params):
        ctx.events.emit("greeting.sent", params)
        return "sent"
    ctx.commands.register("send", send)
"""
    write_plugin(plugins, "py-pub", publisher, **PUBLISHER_MANIFEST)
    recorder(plugins, "js-rec", "greeting.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            await host.activate_all()
            assert await host.invoke("py-pub", "send", {"to": "js", "n": 1}) == "sent"
            await host.events_idle()
            assert stored(host, "js-rec", "seen") == seen_in_order([{"to": "js", "n": 1}], "py-pub")

    run(main())


def test_a_host_event_reaches_js_handlers_with_name_and_source(plugins: Path, tmp_path: Path) -> None:
    recorder(plugins, "rec-a", "app.*")
    recorder(plugins, "rec-b", "app.started")
    recorder(plugins, "unrelated", "greeting.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.started", schema={"type": "object", "required": ["version"]})
            await host.activate_all()
            report = await host.emit("app.started", {"version": "1.0"})
            assert sorted(report.delivered) == ["rec-a", "rec-b"]
            assert (report.failed, report.dropped, report.skipped, report.pending) == ({}, [], [], [])
            for plugin_id in ("rec-a", "rec-b"):
                assert stored(host, plugin_id, "seen") == seen_in_order([{"version": "1.0"}], "host", "app.started")
            assert stored(host, "unrelated", "seen") is None

    run(main())


def test_async_handlers_run_one_after_another_each_with_its_own_copy(plugins: Path, tmp_path: Path) -> None:
    source = """
    module.exports = { activate(ctx) {
        const order = [];
        ctx.events.on("app.tick", async (payload, info) => {
            order.push("slow:start");
            await ctx.host.call("app.slow");            // answered in a later exchange
            payload.items.push("mutated");              // a copy: the next handler does not see this
            info.name = "changed";
            order.push("slow:end");
        });
        ctx.events.on("app.tick", (payload, info) => {
            order.push("fast");
            return ctx.storage.set("got", { order, payload, info });
        });
    } };
    """
    js(plugins, "ordered", source, capabilities=["events.subscribe:app.tick", "host.call:app.slow", "storage"])

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.tick")

            async def slow(params: Any) -> str:
                await asyncio.sleep(0.05)
                return "ok"

            host.expose("app.slow", slow)
            await host.activate_all()
            report = await host.emit("app.tick", {"items": [1]})
            assert report.delivered == ["ordered"]
            assert stored(host, "ordered", "got") == {
                "order": ["slow:start", "slow:end", "fast"],
                "payload": {"items": [1]},
                "info": {"name": "app.tick", "source": "host"},
            }

    run(main())


def test_a_throwing_handler_is_reported_and_everyone_else_still_receives(plugins: Path, tmp_path: Path) -> None:
    failing = """
    module.exports = { activate(ctx) {
        ctx.events.on("app.started", (payload) => {
            throw new RangeError("cannot handle " + payload.to);
        });
        ctx.events.on("app.started", async (payload) => {
            await null;
            throw new TypeError("async too");
        });
        ctx.events.on("app.started", (payload) => ctx.storage.set("fine", payload));
    } };
    """
    js(plugins, "failing", failing, capabilities=["events.subscribe:app.*", "storage"])
    recorder(plugins, "rec", "app.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.started")
            await host.activate_all()
            report = await host.emit("app.started", {"to": "x"})
            assert report.delivered == ["rec"]
            error = report.failed["failing"]
            assert type(error) is PluginError and error.plugin_id == "failing"
            assert (error.file, error.line) == ("failing/plugin.js", 4)  # the source starts with a blank line
            assert error.reason == "handler of event 'app.started': RangeError: cannot handle x"
            assert "at failing/plugin.js:4" in (error.plugin_traceback or "")
            assert stored(host, "failing", "fine") == {"to": "x"}  # its last handler still ran
            assert stored(host, "rec", "seen") == seen_in_order([{"to": "x"}], "host", "app.started")
            assert host.plugins["failing"].state is PluginState.ACTIVE
            [entry] = host.store.audit_log(plugin_id="failing", action="event.handler_failed")
            assert entry.detail["event"] == "app.started" and entry.detail["errors"] == 2
            # and it keeps receiving
            await host.emit("app.started", {"to": "y"})
            assert stored(host, "failing", "fine") == {"to": "y"}

    run(main())


def test_every_handler_error_is_counted_and_the_last_handler_still_runs(plugins: Path, tmp_path: Path) -> None:
    source = """
    module.exports = { activate(ctx) {
        for (let i = 0; i < 12; i++) {
            ctx.events.on("app.started", () => { throw new Error("handler " + i + " " + "x".repeat(20000)); });
        }
        // a promise-like whose `then` cannot be read is that handler's error, not a stuck entry
        ctx.events.on("app.started", () => ({ get then() { throw new TypeError("no then for you"); } }));
        ctx.events.on("app.started", () => ctx.storage.set("last", true));
    } };
    """
    js(plugins, "many", source, capabilities=["events.subscribe:app.*", "storage"], limits={"timeoutMs": 2000})

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.started")
            await host.activate_all()
            started = time.monotonic()
            report = await host.emit("app.started", {})
            assert time.monotonic() - started < 1
            error = report.failed["many"]
            assert error.reason.startswith("handler of event 'app.started': Error: handler 0 xxx")
            [entry] = host.store.audit_log(plugin_id="many", action="event.handler_failed")
            assert entry.detail["errors"] == 13
            assert stored(host, "many", "last") is True
            assert host.plugins["many"].state is PluginState.ACTIVE

    run(main())


def test_a_handler_may_emit_an_event_it_handles_itself(plugins: Path, tmp_path: Path) -> None:
    source = """
    module.exports = { activate(ctx) {
        ctx.events.on("loop.tick", async (payload) => {
            const log = await ctx.storage.get("log", []);
            log.push("start " + payload.n);
            if (payload.n < 3) await ctx.events.emit("loop.tick", { n: payload.n + 1 });  // queued for later
            log.push("end " + payload.n);
            await ctx.storage.set("log", log);
        });
        ctx.commands.register("start", () => ctx.events.emit("loop.tick", { n: 0 }));
    } };
    """
    js(plugins, "looper", source, events=[{"name": "loop.tick"}], commands=[{"name": "start"}],
       capabilities=["events.publish:loop.tick", "events.subscribe:loop.tick", "storage"])

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            await host.activate_all()
            assert await host.invoke("looper", "start") is None
            await host.events_idle()
            assert stored(host, "looper", "log") == [f"{edge} {n}" for n in range(4) for edge in ("start", "end")]

    run(main())


@pytest.mark.parametrize("body", [
    "for (;;) {}",
    "return new Promise(() => {});",
    "return Promise.resolve().then(() => { for (;;) {} });",
], ids=["spins", "never-settles", "spins-in-a-microtask"])
def test_a_handler_that_does_not_finish_fails_only_its_plugin(plugins: Path, tmp_path: Path, body: str) -> None:
    stuck = "module.exports = { activate(ctx) { ctx.events.on('app.started', (payload) => { BODY }); } };"
    js(plugins, "stuck", stuck.replace("BODY", body), capabilities=["events.subscribe:app.*"],
       limits={"timeoutMs": 100})
    recorder(plugins, "rec", "app.*")
    recorder(plugins, "late", "app.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.started")
            await host.activate("stuck")
            await host.activate("rec")
            report = await host.emit("app.started", {"n": 1})
            assert report.delivered == ["rec"]
            error = report.failed["stuck"]
            assert isinstance(error, BudgetExceededError) and error.code == "E_TIMEOUT"
            assert error.reason.startswith("handler of event 'app.started': ")
            record = host.plugins["stuck"]
            await eventually(lambda: record.state is PluginState.FAILED)
            assert record.error is not None and record.error.code == "E_TIMEOUT"
            assert host.bus.subscriptions("stuck") == []
            # the host and the other plugins carry on, and a fresh plugin still activates
            assert (await host.activate("late")).state is PluginState.ACTIVE
            report = await host.emit("app.started", {"n": 2})
            assert sorted(report.delivered) == ["late", "rec"] and report.failed == {}
            assert stored(host, "rec", "seen") == seen_in_order([{"n": 1}, {"n": 2}], "host", "app.started")

    run(main())


def test_an_invalid_payload_is_refused_to_the_js_publisher_before_any_subscriber(plugins: Path,
                                                                                 tmp_path: Path) -> None:
    js(plugins, "pub", PUBLISHER, **PUBLISHER_MANIFEST)
    recorder(plugins, "rec", "greeting.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            await host.activate_all()
            bad_type = await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "w", "n": "2"}})
            assert bad_type["code"] == "E_PAYLOAD" and bad_type["hostrt"] and not bad_type["capability"]
            message = bad_type["message"]
            assert "event 'greeting.sent' from plugin 'pub' rejected at $.n" in message
            too_big = await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "x", "pad": "y" * 300}})
            assert too_big["code"] == "E_PAYLOAD" and "the limit is 200 bytes" in too_big["message"]
            missing = await host.invoke("pub", "send", {"event": "greeting.sent"})  # no payload: null
            assert missing["code"] == "E_PAYLOAD" and "rejected at $" in missing["message"]
            await host.events_idle()
            assert stored(host, "rec", "seen") is None
            await host.deactivate("pub")  # what was still being counted is written
            rejected = host.store.audit_log(plugin_id="pub", action="event.rejected")
            assert rejections(host, "pub") == 3 and rejected[-1].detail["path"] == "$.n"
            assert {e.detail["event"] for e in rejected} == {"greeting.sent"}
            assert {e.detail["code"] for e in rejected} == {"E_PAYLOAD"}

    run(main())


def test_an_oversized_payload_is_measured_in_utf8_bytes(plugins: Path, tmp_path: Path) -> None:
    js(plugins, "pub", PUBLISHER, **PUBLISHER_MANIFEST)

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            await host.activate_all()
            # 120 characters of JSON, but 220 bytes of UTF-8
            answer = await host.invoke("pub", "send", {"event": "greeting.sent",
                                                       "payload": {"to": "x", "pad": "é" * 100}})
            assert answer["code"] == "E_PAYLOAD" and "the limit is 200 bytes" in answer["message"]
            with pytest.raises(PayloadError) as caught:  # the same rule for the host's own events
                host.declare_event("app.note", max_payload_bytes=10)
                await host.emit("app.note", "x" * 20)
            assert (caught.value.source, caught.value.json_path) == ("host", "$")

    run(main())


def test_undeclared_ungranted_and_uncovered_events_are_refused(plugins: Path, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    js(plugins, "pub", PUBLISHER, **PUBLISHER_MANIFEST)
    listener = """
    module.exports = { async activate(ctx) {
        const wide = ctx.events.on("*", () => ctx.storage.set("wide", true));
        try { await wide.registered; } catch (e) {
            await ctx.storage.set("refused", [e.name, e.code, e instanceof CapabilityError, e.message]);
        }
        ctx.events.on("other.*", () => ctx.storage.set("other", true));   // refused: logged
        ctx.subscriptions.push(ctx.events.on("greeting.sent", () => ctx.storage.set("narrow", true)));
        ctx.commands.register("check", async () => {
            const errors = [];
            for (const [pattern, handler] of [[42, () => {}], ["greeting.*", "not a function"]]) {
                try { ctx.events.on(pattern, handler); } catch (e) { errors.push(e.name + ": " + e.message); }
            }
            return errors;
        });
    } };
    """
    js(plugins, "listener", listener, capabilities=["events.subscribe:greeting.*", "storage"],
       commands=[{"name": "check"}])

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("other.thing")
            await host.activate_all()
            assert host.plugins["listener"].state is PluginState.ACTIVE
            name, code, capability, message = stored(host, "listener", "refused")
            assert (name, code, capability) == ("CapabilityError", "E_CAPABILITY", True)
            assert "plugin 'listener' lacks capability 'events.subscribe:*'" in message
            # only the covered subscription stands; the refused handlers are gone
            assert [pattern for pattern, _ in host.bus.subscriptions("listener")] == ["greeting.sent"]
            assert await host.invoke("listener", "check") == [
                "TypeError: ctx.events.on(): the pattern must be a string",
                "TypeError: ctx.events.on(): the handler must be a function",
            ]
            undeclared = await host.invoke("pub", "send", {"event": "greeting.nope", "payload": {"to": "x"}})
            assert undeclared["code"] == "E_EVENT" and "does not declare an event named 'greeting.nope'" in undeclared["message"]
            not_mine = await host.invoke("pub", "send", {"event": "other.thing", "payload": {}})
            assert not_mine["capability"] and not_mine["code"] == "E_CAPABILITY"
            assert await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "x"}}) == "sent"
            host.grants.revoke("pub", "events.publish:greeting.*")
            revoked = await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "x"}})
            assert revoked["capability"] and "lacks capability 'events.publish:greeting.sent'" in revoked["message"]
            await host.events_idle()
            assert (stored(host, "listener", "narrow"), stored(host, "listener", "wide"),
                    stored(host, "listener", "other")) == (True, None, None)
            with pytest.raises(EventError):
                await host.emit("greeting.sent", {"to": "x"})  # the host may not emit a plugin's event

    run(main())
    refusals = [r.getMessage() for r in caplog.records if "was refused" in r.getMessage()]
    assert any("ctx.events.on() was refused: CapabilityError: plugin 'listener' lacks capability "
               "'events.subscribe:other.*'" in m for m in refusals), refusals
    assert not any("events.subscribe:*'" in m for m in refusals)  # that refusal was awaited, not logged


def test_subscriptions_past_the_limit_are_refused_and_leave_nothing(plugins: Path, tmp_path: Path) -> None:
    source = """
    module.exports = { async activate(ctx) {
        const outcomes = [];
        for (let i = 0; i < 5; i++) {
            const registration = ctx.events.on("app.*", () => ctx.storage.set("got" + i, true));
            try { await registration.registered; outcomes.push("ok"); } catch (e) { outcomes.push(e.code); }
        }
        await ctx.storage.set("outcomes", outcomes);
    } };
    """
    js(plugins, "greedy", source, capabilities=["events.subscribe:app.*", "storage"])

    async def main() -> None:
        async with running(plugins, tmp_path, events=EventPolicy(max_subscriptions=3)) as host:
            host.declare_event("app.started")
            await host.activate_all()
            assert stored(host, "greedy", "outcomes") == ["ok", "ok", "ok", "E_HOSTRT", "E_HOSTRT"]
            assert [h for _, h in host.bus.subscriptions("greedy")] == [1, 2, 3]
            await host.emit("app.started", {})
            assert [stored(host, "greedy", f"got{i}") for i in range(5)] == [True, True, True, None, None]

    run(main())


def test_revoking_the_subscribe_grant_stops_deliveries_at_once(plugins: Path, tmp_path: Path) -> None:
    recorder(plugins, "rec", "app.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.started")
            await host.activate_all()
            assert (await host.emit("app.started", {"n": 1})).delivered == ["rec"]
            host.grants.revoke("rec", "events.subscribe:app.*")
            report = await host.emit("app.started", {"n": 2})
            assert report.skipped == ["rec"] and report.delivered == []
            assert stored(host, "rec", "seen") == seen_in_order([{"n": 1}], "host", "app.started")

    run(main())


def test_disposed_and_deactivated_handlers_receive_nothing_and_leave_nothing(plugins: Path, tmp_path: Path) -> None:
    source = """
    let sub = null;
    module.exports = { activate(ctx) {
        sub = ctx.events.on("app.*", (payload) => ctx.storage.set("last", payload));
        ctx.subscriptions.push(sub);
        ctx.commands.register("stop", async () => {
            const first = sub.dispose();
            const second = sub.dispose();          // idempotent
            return [(await first) === undefined, (await second) === undefined, first instanceof Promise];
        });
    } };
    """
    js(plugins, "rec", source, capabilities=["events.subscribe:app.*", "storage"], commands=[{"name": "stop"}])
    recorder(plugins, "other", "app.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.started")
            await host.activate_all()
            await host.emit("app.started", {"n": 1})
            assert stored(host, "rec", "last") == {"n": 1}
            assert await host.invoke("rec", "stop") == [True, True, True]
            assert host.bus.subscriptions("rec") == []
            report = await host.emit("app.started", {"n": 2})
            assert report.delivered == ["other"] and stored(host, "rec", "last") == {"n": 1}
            # deactivation: the disposer of the already disposed handler is harmless; nothing stays
            assert len(host.bus.subscriptions("other")) == 2
            assert (await host.deactivate("other")).error is None
            assert host.bus.subscriptions("other") == []
            report = await host.emit("app.started", {"n": 3})
            assert report.delivered == [] and report.skipped == []
            assert stored(host, "other", "seen") == seen_in_order([{"n": 1}, {"n": 2}], "host", "app.started")
            # activated again, it has exactly the handlers of its new activation
            await host.activate("other")
            assert len(host.bus.subscriptions("other")) == 2
            assert (await host.emit("app.started", {"n": 4})).delivered == ["other"]

    run(main())


def test_handlers_that_emit_back_and_forth_stop_at_the_maximum_depth(plugins: Path, tmp_path: Path) -> None:
    def ping_pong(hear: list[str], say: str, *, via_host: bool) -> str:
        subscribe = "\n".join(f"ctx.events.on({name!r}, handler);" for name in hear)
        wait = 'await ctx.host.call("app.echo", {});' if via_host else ""
        return """
        module.exports = { activate(ctx) {
            const handler = async (payload) => {
                WAIT
                try {
                    await ctx.events.emit("SAY", { n: payload.n + 1 });
                } catch (e) {
                    await ctx.storage.set("stopped", [e.code, payload.n]);
                }
            };
            SUBSCRIBE
        } };
        """.replace("WAIT", wait).replace("SAY", say).replace("SUBSCRIBE", subscribe)

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    # ping answers the host's serve and pong's ball; pong waits for a host
    # method before it answers, so its emit is made from a later exchange
    js(plugins, "ping", ping_pong(["app.serve", "pong.ball"], "ping.ball", via_host=False),
       events=[{"name": "ping.ball", "schema": schema}],
       capabilities=["events.publish:ping.ball", "events.subscribe:*", "storage"])
    js(plugins, "pong", ping_pong(["ping.ball"], "pong.ball", via_host=True),
       events=[{"name": "pong.ball", "schema": schema}],
       capabilities=["events.publish:pong.ball", "events.subscribe:ping.ball", "host.call:app.echo", "storage"])

    async def main() -> None:
        async with running(plugins, tmp_path, events=EventPolicy(max_depth=5)) as host:
            host.declare_event("app.serve", schema=schema)

            async def echo(params: Any) -> Any:
                await asyncio.sleep(0)
                return params

            host.expose("app.echo", echo)
            await host.activate_all()
            report = await host.emit("app.serve", {"n": 0})  # depth 1
            assert report.delivered == ["ping"]
            await host.events_idle()
            # ping.ball n=1 (depth 2), pong.ball n=2 (3), ping.ball n=3 (4), pong.ball n=4 (5):
            # ping's emit while handling that one would be depth 6
            assert stored(host, "ping", "stopped") == ["E_EVENT_DEPTH", 4]
            assert stored(host, "pong", "stopped") is None
            [rejected] = host.store.audit_log(plugin_id="ping", action="event.rejected")
            assert rejected.detail["code"] == "E_EVENT_DEPTH"
            # depth is per chain: the rally can be served again
            await host.emit("app.serve", {"n": 10})
            await host.events_idle()
            assert stored(host, "ping", "stopped") == ["E_EVENT_DEPTH", 14]
            assert all(r.state is PluginState.ACTIVE for r in host.plugins.values())

    run(main())


def test_emitting_faster_than_the_rate_limit_is_refused_in_js(plugins: Path, tmp_path: Path) -> None:
    flood = """
    module.exports = { activate(ctx) {
        ctx.commands.register("flood", async (params) => {
            let sent = 0;
            for (let i = 0; i < params.times; i++) {
                try {
                    await ctx.events.emit("greeting.sent", { to: "x" });
                } catch (e) {
                    return { sent, code: e.code, message: e.message };
                }
                sent++;
            }
            return { sent };
        });
        // without awaiting: every emit is checked, the refused ones reject
        ctx.commands.register("burst", async (params) => {
            const results = await Promise.allSettled(
                Array.from({ length: params.times }, () => ctx.events.emit("greeting.sent", { to: "y" })));
            return results.map((r) => r.status === "fulfilled" ? "ok" : r.reason.code);
        });
    } };
    """
    js(plugins, "pub", flood, capabilities=["events.publish:greeting.*"], events=[GREETING],
       commands=[{"name": "flood"}, {"name": "burst"}])
    recorder(plugins, "rec", "greeting.*")

    async def main() -> None:
        async with running(plugins, tmp_path, events=EventPolicy(rate_per_s=1, burst=20)) as host:
            await host.activate_all()
            answer = await host.invoke("pub", "flood", {"times": 100})
            assert answer["sent"] == 20 and answer["code"] == "E_RATE_LIMIT"
            assert "faster than its limit of 1 per second (bursts of 20)" in answer["message"]
            burst = await host.invoke("pub", "burst", {"times": 30})
            assert burst.count("E_RATE_LIMIT") >= 29 and set(burst) <= {"ok", "E_RATE_LIMIT"}
            await host.events_idle()
            assert len(stored(host, "rec", "seen")) == 2 * (20 + burst.count("ok"))
            refused = 1 + burst.count("E_RATE_LIMIT")
            await host.deactivate("pub")  # what was still being counted is written
            assert rejections(host, "pub") == refused
            rejected = host.store.audit_log(plugin_id="pub", action="event.rejected", limit=1000)
            assert {e.detail["code"] for e in rejected} == {"E_RATE_LIMIT"}

    run(main())


# -- host methods ---------------------------------------------------------------------------


def caller(plugins: Path, *methods: str, **manifest: Any) -> None:
    js(plugins, "caller", CALLER, capabilities=[f"host.call:{m}" for m in methods],
       commands=[{"name": "call"}], **manifest)


async def call(host: Host, method: str, params: Any = None) -> Any:
    return await host.invoke("caller", "call", {"method": method, "params": params})


def test_host_methods_sync_async_and_their_params_check(plugins: Path, tmp_path: Path) -> None:
    caller(plugins, "app.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.expose("app.add", lambda p: p["a"] + p["b"], params_schema={
                "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"]})

            async def later(params: Any) -> Any:
                await asyncio.sleep(0.01)
                return {"echo": params, "list": [1, "two", None, True, {"x": 1.5}]}

            host.expose("app.later", later)
            await host.activate_all()
            assert await call(host, "app.add", {"a": 2, "b": 3}) == {"result": 5}
            assert await call(host, "app.later", {"é": "\u2028"}) == {
                "result": {"echo": {"é": "\u2028"}, "list": [1, "two", None, True, {"x": 1.5}]}}
            assert await call(host, "app.later") == {"result": {"echo": {}, "list": [1, "two", None, True, {"x": 1.5}]}}
            refused = await call(host, "app.add", {"a": 2, "b": "3"})
            assert refused["code"] == "E_PAYLOAD"
            assert "parameters of host method 'app.add' from plugin 'caller' rejected at $.b" in refused["message"]
            unknown = await call(host, "app.nope")
            assert unknown["code"] == "E_NO_METHOD"
            ungranted = await call(host, "other.thing")
            assert ungranted["capability"] and "lacks capability 'host.call:other.thing'" in ungranted["message"]

    run(main())


def test_host_method_errors_reach_js_clean(plugins: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caller(plugins, "app.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            def refuse(params: Any) -> Any:
                raise HostMethodError("no such system", code="E_NO_SYSTEM")

            async def crash(params: Any) -> Any:
                await asyncio.sleep(0)
                raise RuntimeError(f"secret at {tmp_path}/config.ini")

            host.expose("app.refuse", refuse)
            host.expose("app.crash", crash)
            host.expose("app.odd", lambda p: {1, 2})
            await host.activate_all()
            assert await call(host, "app.refuse") == {
                "name": "HostrtError", "code": "E_NO_SYSTEM", "message": "no such system", "capability": False}
            crashed = await call(host, "app.crash")
            assert crashed == {"name": "HostrtError", "code": "E_HOST_METHOD",
                               "message": "host method 'app.crash' failed", "capability": False}
            odd = await call(host, "app.odd")
            assert odd["code"] == "E_HOST_METHOD" and "not JSON" in odd["message"]
            assert host.plugins["caller"].state is PluginState.ACTIVE

    with caplog.at_level(logging.ERROR, logger="hostrt"):
        run(main())
    logged = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "secret at" in logged  # the host's log has it; the plugin did not get it


def test_paged_host_methods_and_the_result_size_limit(plugins: Path, tmp_path: Path) -> None:
    caller(plugins, "app.*")

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.expose("app.systems", lambda p, page: [f"s{i}" for i in range(12)], max_page_size=5)
            host.expose("app.window", lambda p, page: Page(list(range(page.offset, page.offset + page.limit)), 100),
                        page_size=2, max_page_size=3)
            host.expose("app.big", lambda p: "x" * 200, result_max_bytes=100)
            await host.activate_all()
            assert await call(host, "app.systems", {"limit": 100, "offset": 10}) == {"result": {
                "items": ["s10", "s11"], "limit": 5, "offset": 10, "total": 12, "nextOffset": None}}
            assert await call(host, "app.systems") == {"result": {
                "items": ["s0", "s1", "s2", "s3", "s4"], "limit": 5, "offset": 0, "total": 12, "nextOffset": 5}}
            assert await call(host, "app.window", {"offset": 7}) == {"result": {
                "items": [7, 8], "limit": 2, "offset": 7, "total": 100, "nextOffset": 9}}
            bad = await call(host, "app.systems", {"limit": 0})
            assert bad["code"] == "E_PAYLOAD" and "$.limit" in bad["message"]
            big = await call(host, "app.big")
            assert big["code"] == "E_PAYLOAD" and "result of host method 'app.big'" in big["message"]

    run(main())


def test_many_concurrent_host_calls_are_all_answered(plugins: Path, tmp_path: Path) -> None:
    source = """
    module.exports = { activate(ctx) {
        ctx.commands.register("fan", async (params) => {
            const answers = await Promise.all(Array.from({ length: params.n },
                (_, i) => i % 2 ? ctx.host.call("app.echo", { i }) : ctx.storage.get("k", i)));
            return answers.every((a, i) => (i % 2 ? a.i : a) === i);
        });
    } };
    """
    js(plugins, "fan", source, capabilities=["host.call:app.echo", "storage"], commands=[{"name": "fan"}],
       limits={"timeoutMs": 5000})

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            async def echo(params: Any) -> Any:
                if params["i"] % 3 == 0:
                    await asyncio.sleep(0)
                return params

            host.expose("app.echo", echo)
            await host.activate_all()
            assert await host.invoke("fan", "fan", {"n": 3000}) is True

    run(main())


def test_a_pending_host_call_is_cancelled_when_its_plugin_fails(plugins: Path, tmp_path: Path) -> None:
    source = """
    module.exports = { activate(ctx) {
        ctx.commands.register("hang", () => ctx.host.call("app.hang"));
    } };
    """
    js(plugins, "hanger", source, capabilities=["host.call:app.hang"], commands=[{"name": "hang"}],
       limits={"timeoutMs": 100})
    outcome: list[str] = []

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            async def hang(params: Any) -> Any:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    outcome.append("cancelled")
                    raise

            host.expose("app.hang", hang)
            await host.activate_all()
            with pytest.raises(BudgetExceededError) as caught:
                await host.invoke("hanger", "hang")
            assert caught.value.reason.startswith("command 'hang' failed: command did not finish")
            record = host.plugins["hanger"]
            await eventually(lambda: record.state is PluginState.FAILED)
            await eventually(lambda: outcome == ["cancelled"])

    run(main())


def test_a_host_method_can_emit_an_event_its_js_caller_handles_without_deadlock(plugins: Path,
                                                                                tmp_path: Path) -> None:
    source = """
    module.exports = { activate(ctx) {
        ctx.events.on("app.changed", (payload) => ctx.storage.set("changed", payload));
        ctx.commands.register("touch", () => ctx.host.call("app.touch", {}));
    } };
    """
    js(plugins, "toucher", source, commands=[{"name": "touch"}],
       capabilities=["host.call:app.touch", "events.subscribe:app.changed", "storage"])
    recorder(plugins, "bystander", "app.changed")
    reports: list[Any] = []

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.changed")

            async def touch(params: Any) -> str:
                # the caller waits on this method: emit must not wait for it
                report = await host.emit("app.changed", {"by": "touch"})
                reports.append((list(report.pending), list(report.delivered)))
                return "touched"

            host.expose("app.touch", touch)
            await host.activate_all()
            assert await asyncio.wait_for(host.invoke("toucher", "touch"), 5) == "touched"
            # toucher was not waited for; a JavaScript plugin handles an event
            # while its command waits, so it may have received it already:
            # then it is reported as delivered, else as pending, never both
            [(pending, delivered)] = reports
            assert "bystander" in delivered
            assert (pending, "toucher" in delivered) in ((["toucher"], False), ([], True))
            await host.events_idle()
            assert stored(host, "toucher", "changed") == {"by": "touch"}

    run(main())


def test_a_host_method_can_invoke_a_command_of_another_js_plugin(plugins: Path, tmp_path: Path) -> None:
    relay = """
    module.exports = { activate(ctx) {
        ctx.events.on("app.relay", async (payload) => {
            const doubled = await ctx.host.call("app.double", payload);
            await ctx.storage.set("doubled", doubled);
        });
        ctx.commands.register("back", () => ctx.host.call("app.back", {}));
        ctx.commands.register("self", () => "self");
    } };
    """
    doubler = """
    module.exports = { activate(ctx) {
        ctx.commands.register("double", async (params) => { await null; return params.n * 2; });
    } };
    """
    js(plugins, "relay", relay, commands=[{"name": "back"}, {"name": "self"}],
       capabilities=["host.call:app.*", "events.subscribe:app.relay", "storage"])
    js(plugins, "doubler", doubler, commands=[{"name": "double"}])

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.relay")

            async def double(params: Any) -> Any:
                return await host.invoke("doubler", "double", params)

            async def back(params: Any) -> Any:
                try:
                    return await host.invoke("relay", "self")
                except HostMethodError:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported to the plugin as a code
                    raise HostMethodError(type(exc).__name__, code="E_REFUSED") from None

            host.expose("app.double", double)
            host.expose("app.back", back)
            await host.activate_all()
            report = await host.emit("app.relay", {"n": 21})
            assert report.delivered == ["relay"]
            assert stored(host, "relay", "doubled") == 42
            # its own command, while it waits on the host method: refused, not a deadlock
            with pytest.raises(PluginError, match="command .back. failed: HostrtError: LifecycleError"):
                await asyncio.wait_for(host.invoke("relay", "back"), 5)

    run(main())


def test_an_event_is_delivered_while_a_command_of_the_same_plugin_runs(plugins: Path, tmp_path: Path) -> None:
    source = """
    module.exports = { activate(ctx) {
        ctx.events.on("app.ping", (payload) => ctx.storage.set("pinged", payload));
        ctx.commands.register("slow", async () => {
            const answer = await ctx.host.call("app.wait");
            return [answer, await ctx.storage.get("pinged")];
        });
    } };
    """
    js(plugins, "busy", source, commands=[{"name": "slow"}], limits={"timeoutMs": 3000},
       capabilities=["host.call:app.wait", "events.subscribe:app.ping", "storage"])

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.declare_event("app.ping")
            entered = asyncio.Event()
            release = asyncio.Event()

            async def wait(params: Any) -> str:
                entered.set()
                await release.wait()
                return "released"

            host.expose("app.wait", wait)
            await host.activate_all()
            command = asyncio.ensure_future(host.invoke("busy", "slow"))
            await asyncio.wait_for(entered.wait(), 5)
            report = await asyncio.wait_for(host.emit("app.ping", {"n": 1}), 5)
            assert report.delivered == ["busy"]
            release.set()
            assert await asyncio.wait_for(command, 5) == ["released", {"n": 1}]

    run(main())


# -- commands -----------------------------------------------------------------------------------

GREETER = """
module.exports = { activate(ctx) {
    ctx.commands.register("greet", (params) => {
        if (params.fail) {
            throw new Error("cannot greet " + params.who);
        }
        if (params.spin) for (;;) {}
        if (params.hang) return new Promise(() => {});
        if (params.wrong) return 42;
        if (params.odd) return { when: new Date(0) };
        if (params.later) return ctx.host.call("app.name", {}).then((name) => "hello " + name);
        return "hello " + params.who;
    });
} };
"""


def test_invoke_a_js_command_with_checked_params_and_result(plugins: Path, tmp_path: Path) -> None:
    js(plugins, "greeter", GREETER, commands=[GREET_DECL], capabilities=["host.call:app.name"],
       limits={"timeoutMs": 500})

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            host.expose("app.name", lambda p: "from the host")
            await host.activate_all()
            assert await host.invoke("greeter", "greet", {"who": "Ann"}) == "hello Ann"
            assert await host.invoke("greeter", "greet", {"who": "x", "later": True}) == "hello from the host"
            [info] = host.commands()
            assert (info.plugin_id, info.name, info.description) == ("greeter", "greet", "Say hello")
            assert info.params_schema == GREET_DECL["paramsSchema"] and info.result_schema == {"type": "string"}
            with pytest.raises(PayloadError) as caught:
                await host.invoke("greeter", "greet", {"who": 1})
            assert caught.value.json_path == "$.who" and caught.value.source == "host"
            with pytest.raises(PayloadError) as caught:
                await host.invoke("greeter", "greet", {"who": "x", "wrong": True})
            assert "result of command 'greet' of plugin 'greeter' from plugin 'greeter'" in str(caught.value)
            with pytest.raises(PluginError) as caught:
                await host.invoke("greeter", "greet", {"who": "Bo", "fail": True})
            error = caught.value
            assert type(error) is PluginError and error.plugin_id == "greeter"
            assert (error.file, error.line) == ("greeter/plugin.js", 5)
            assert error.reason == "command 'greet' failed: Error: cannot greet Bo"
            with pytest.raises(PluginError) as caught:
                await host.invoke("greeter", "greet", {"who": "x", "odd": True})
            assert caught.value.reason.startswith("command 'greet' failed: TypeError: result is not JSON")
            assert "$.when" in caught.value.reason
            assert host.plugins["greeter"].state is PluginState.ACTIVE
            with pytest.raises(CommandNotFoundError):
                await host.invoke("greeter", "wave", {})

    run(main())


@pytest.mark.parametrize("flag", ["spin", "hang"])
def test_a_js_command_that_does_not_finish_fails_its_plugin(plugins: Path, tmp_path: Path, flag: str) -> None:
    js(plugins, "greeter", GREETER, commands=[GREET_DECL], capabilities=["host.call:app.name"],
       limits={"timeoutMs": 100})

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            await host.activate_all()
            with pytest.raises(BudgetExceededError) as caught:
                await host.invoke("greeter", "greet", {"who": "x", flag: True})
            assert caught.value.code == "E_TIMEOUT" and caught.value.reason.startswith("command 'greet' failed: ")
            record = host.plugins["greeter"]
            await eventually(lambda: record.state is PluginState.FAILED)
            assert host.commands() == []
            with pytest.raises(CommandNotFoundError, match="not active"):
                await host.invoke("greeter", "greet", {"who": "x"})
            assert (await host.activate("greeter")).state is PluginState.ACTIVE  # a fresh isolate
            assert await host.invoke("greeter", "greet", {"who": "again"}) == "hello again"

    run(main())


def test_only_declared_commands_register_once_and_dispose(plugins: Path, tmp_path: Path) -> None:
    source = """
    module.exports = { async activate(ctx) {
        const codes = [];
        for (const [name, handler] of [["undeclared", () => 1], ["greet", () => "first"], ["greet", () => "second"]]) {
            const registration = ctx.commands.register(name, handler);
            try { await registration.registered; codes.push("ok"); } catch (e) { codes.push(e.code); }
            if (name === "greet" && codes[codes.length - 1] === "ok") globalThis.first = registration;
        }
        try { ctx.commands.register(5, () => 1); } catch (e) { codes.push(e.name); }
        await ctx.storage.set("codes", codes);
        ctx.commands.register("swap", async () => {
            await globalThis.first.dispose();
            await ctx.commands.register("greet", async () => "replaced").registered;
            return "ok";
        });
        ctx.subscriptions.push(ctx.commands.register("async", async (params) => { await null; return params; }));
    } };
    """
    js(plugins, "cmds", source, capabilities=["storage"],
       commands=[{"name": "greet"}, {"name": "swap"}, {"name": "never"}, {"name": "async"}])

    async def main() -> None:
        async with running(plugins, tmp_path) as host:
            await host.activate_all()
            assert stored(host, "cmds", "codes") == ["E_HOSTRT", "ok", "E_HOSTRT", "TypeError"]
            assert [c.name for c in host.commands()] == ["async", "greet", "swap"]
            assert await host.invoke("cmds", "greet") == "first"
            assert await host.invoke("cmds", "async", {"p": [1]}) == {"p": [1]}
            assert await host.invoke("cmds", "swap") == "ok"
            assert await host.invoke("cmds", "greet") == "replaced"
            with pytest.raises(CommandNotFoundError, match="no handler for command 'never'"):
                await host.invoke("cmds", "never")
            assert (await host.deactivate("cmds")).error is None
            assert host.commands() == []

    run(main())


def test_calls_on_a_kept_ctx_after_deactivation_are_refused(tmp_path: Path) -> None:
    source = """
        let kept = null;
        let sub = null;
        module.exports = {
            activate(ctx) { kept = ctx; sub = ctx.events.on("app.*", () => {}); },
            async probe() {
                const out = [];
                for (const attempt of [() => kept.events.emit("app.x", {}), () => kept.host.call("app.y"),
                                       () => kept.events.on("app.*", () => {}).registered,
                                       () => kept.commands.register("c", () => {}).registered]) {
                    try { await attempt(); out.push("ran"); } catch (e) { out.push(e.code); }
                }
                out.push((await sub.dispose()) === undefined);
                return out;
            },
        };
    """

    async def main() -> Any:
        # The gate of a runtime test has no host behind it: registering is
        # refused by the gate, and after deactivation by the shim itself.
        async with active(tmp_path, source) as (plugin, _gate):
            await plugin.deactivate()
            return await plugin.call_export("probe")

    assert run(main()) == ["E_STATE", "E_STATE", "E_STATE", "E_STATE", True]


# -- causes ------------------------------------------------------------------------------------


def test_host_calls_see_the_cause_of_the_entry_that_made_them_when_entries_overlap(tmp_path: Path) -> None:
    """Entries into one isolate overlap (events, commands, timers); every
    host call, synchronous or not, and every timer runs in the context of
    the entry whose code made it, so event depth and waiting plugins are
    right (here the depth stands for the entry)."""
    source = """
        let ctx = null;
        module.exports = {
            activate(c) { ctx = c; },
            async chain(tag, n) {
                let x = 0;
                for (let j = 0; j < 200000; j++) x += j;   // a pump that takes a while: entries overlap
                ctx.storage.get(tag + "-sync");            // a call from the entry's synchronous part,
                await null;                                // and more from its microtasks
                for (let i = 0; i < n; i++) {
                    await ctx.storage.get(tag + "-" + i);
                    await ctx.host.call(tag + "-host" + i);
                }
                setTimeout(() => ctx.storage.get(tag + "-timer"), 0);
                return tag;
            },
        };
    """

    class Gate(RecordingGate):
        def __init__(self) -> None:
            super().__init__("demo")
            self.seen: list[tuple[str, int]] = []

        def storage_get_json(self, key: str, default: Any = None) -> str:
            self.seen.append((key, callchain.current().event_depth))
            return super().storage_get_json(key, default)

        async def host_call(self, name: str, params: Any = None, *, plain: bool = False) -> str:
            await asyncio.sleep(0)
            self.seen.append((name, callchain.current().event_depth))
            return "null"

    async def main() -> list[tuple[str, int]]:
        gate = Gate()
        async with active(tmp_path, source, gate=gate) as (plugin, _):
            async def entry(depth: int) -> str:
                with callchain.entering("demo", event_depth=depth):
                    return await plugin.call_export("chain", f"d{depth}", 3)

            for _round in range(8):
                assert await asyncio.gather(*(entry(d) for d in range(1, 6))) == [f"d{d}" for d in range(1, 6)]
            await eventually(lambda: sum(key.endswith("-timer") for key, _ in gate.seen) == 40)
        return gate.seen

    seen = run(main())
    assert len(seen) == 8 * 5 * (1 + 3 + 3 + 1)
    wrong = [(key, depth) for key, depth in seen if int(key[1]) != depth]
    assert wrong == []
