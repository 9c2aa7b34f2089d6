"""Events end to end: declared events, emit and subscribe, delivery
semantics, with real Python plugins, the real host and a real SQLite file.
(The JavaScript side of the same API is in test_js_events.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from hostrt import Host, HostPolicy, PluginState
from hostrt.errors import EventError, HostrtError, PayloadError
from hostrt.events import EventPolicy

from conftest import write_plugin

GREETING = {
    "name": "greeting.sent",
    "schema": {
        "type": "object",
        "properties": {"to": {"type": "string", "maxLength": 20}, "n": {"type": "integer"}},
        "required": ["to"],
        "additionalProperties": False,
    },
    "maxPayloadBytes": 200,
}

#: Stores every event matching PATTERN it receives, in order, under "seen".
RECORDER = """
def activate(ctx):
    def first(payload, event):
        seen = ctx.storage.get("seen", [])
        seen.append(["first", payload, event["name"], event["source"]])
        ctx.storage.set("seen", seen)
    def second(payload):
        seen = ctx.storage.get("seen", [])
        seen.append(["second", payload])
        ctx.storage.set("seen", seen)
    ctx.events.on("PATTERN", first)
    ctx.events.on("PATTERN", second)
"""

#: Emits the greeting named in a command's parameters; reports errors.
PUBLISHER = """
def activate(ctx):
    def send(params):
        try:
            ctx.events.emit(params["event"], params["payload"])
        except Exception as exc:
            return {"code": exc.code, "message": str(exc)}
        return "sent"
    ctx.commands.register("send", send)
"""
PUBLISHER_MANIFEST = {
    "capabilities": ["events.publish:greeting.*"],
    "events": [GREETING],
    "commands": [{"name": "send"}],
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@contextlib.asynccontextmanager
async def running(plugins_dir: Path, tmp_path: Path, *, grant: bool = True, events: EventPolicy | None = None,
                  **policy: Any):
    host = Host(plugins_dir, tmp_path / "host.db", policy=HostPolicy(events=events or EventPolicy(), **policy))
    await host.discover()
    if grant:
        for plugin_id in host.plugins:
            host.grants.grant_requested(plugin_id)
    try:
        yield host
    finally:
        await host.close()


def stored(host: Host, plugin_id: str, key: str) -> Any:
    text = host.store.kv_get(plugin_id, key)
    return None if text is None else json.loads(text)


def rejections(host: Host, plugin_id: str | None = None) -> int:
    """The rejections the audit log counts: each entry stands for itself and
    the identical ones it suppressed (written once the plugin stops)."""
    entries = host.store.audit_log(plugin_id=plugin_id, action="event.rejected", limit=100_000)
    return sum(1 + entry.detail.get("suppressed", 0) for entry in entries)


def recorder(plugins_dir: Path, plugin_id: str = "rec", pattern: str = "greeting.*") -> None:
    write_plugin(plugins_dir, plugin_id, RECORDER.replace("PATTERN", pattern),
                 capabilities=[f"events.subscribe:{pattern}", "storage"])


# -- delivery -----------------------------------------------------------------


def test_a_plugin_event_reaches_subscribers_in_order_with_its_source(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "pub", PUBLISHER, **PUBLISHER_MANIFEST)
    recorder(plugins_dir)

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            await host.activate_all()
            for n in range(3):
                assert await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "w", "n": n}}) == "sent"
            await host.events_idle()
            seen = stored(host, "rec", "seen")
            # each event: both handlers, in registration order; events in emit order
            expected = []
            for n in range(3):
                payload = {"to": "w", "n": n}
                expected += [["first", payload, "greeting.sent", "pub"], ["second", payload]]
            assert seen == expected

    run(main())


def test_host_event_with_delivery_report(plugins_dir, tmp_path):
    recorder(plugins_dir, "rec-a", "app.*")
    recorder(plugins_dir, "rec-b", "app.started")
    recorder(plugins_dir, "unrelated", "greeting.*")

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.started", schema={"type": "object", "required": ["version"]})
            await host.activate_all()
            report = await host.emit("app.started", {"version": "1.0"})
            assert sorted(report.delivered) == ["rec-a", "rec-b"]
            assert (report.failed, report.dropped, report.skipped, report.pending) == ({}, [], [], [])
            for plugin_id in ("rec-a", "rec-b"):
                assert stored(host, plugin_id, "seen") == [
                    ["first", {"version": "1.0"}, "app.started", "host"], ["second", {"version": "1.0"}]]
            assert stored(host, "unrelated", "seen") is None

    run(main())


def test_each_subscriber_gets_its_own_copy(plugins_dir, tmp_path):
    mutator = """
def activate(ctx):
    def handler(payload):
        payload["to"] = "changed"
        payload["extra"] = 1
    ctx.events.on("greeting.sent", handler)
"""
    write_plugin(plugins_dir, "a-mutator", mutator, capabilities=["events.subscribe:greeting.*"])
    write_plugin(plugins_dir, "pub", PUBLISHER, **PUBLISHER_MANIFEST)
    recorder(plugins_dir, "z-rec")

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            await host.activate_all()
            await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "w"}})
            await host.events_idle()
            assert stored(host, "z-rec", "seen")[0][1] == {"to": "w"}

    run(main())


def test_a_failing_handler_is_reported_and_the_rest_still_receive(plugins_dir, tmp_path):
    failing = """
def activate(ctx):
    def broken(payload):
        raise ValueError("cannot handle " + payload["to"])
    def fine(payload):
        ctx.storage.set("fine", payload)
    ctx.events.on("app.started", broken)
    ctx.events.on("app.started", fine)
"""
    write_plugin(plugins_dir, "failing", failing, capabilities=["events.subscribe:app.*", "storage"])
    recorder(plugins_dir, "rec", "app.*")

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.started")
            await host.activate_all()
            report = await host.emit("app.started", {"to": "x"})
            assert report.delivered == ["rec"]
            error = report.failed["failing"]
            assert error.plugin_id == "failing"
            assert error.file == "failing/plugin.py" and error.line == 4
            assert "handler of event 'app.started'" in error.message and "cannot handle x" in error.message
            assert stored(host, "failing", "fine") == {"to": "x"}  # its next handler still ran
            assert stored(host, "rec", "seen")[0][1] == {"to": "x"}
            assert host.plugins["failing"].state is PluginState.ACTIVE
            entry = host.store.audit_log(plugin_id="failing", action="event.handler_failed")[0]
            assert entry.detail["event"] == "app.started"

    run(main())


def test_a_handler_that_runs_past_its_time_fails_only_its_plugin(plugins_dir, tmp_path):
    spinner = """
def activate(ctx):
    def spin(payload):
        while True:
            pass
    ctx.events.on("app.started", spin)
"""
    write_plugin(plugins_dir, "spinner", spinner, capabilities=["events.subscribe:app.*"], limits={"timeoutMs": 100})
    recorder(plugins_dir, "rec", "app.*")

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.started")
            await host.activate_all()
            report = await host.emit("app.started", {})
            assert report.delivered == ["rec"]
            assert report.failed["spinner"].code == "E_TIMEOUT"
            await asyncio.sleep(0)  # the crash report runs as its own task
            async with host._lock:
                pass
            assert host.plugins["spinner"].state is PluginState.FAILED
            assert host.bus.subscriptions("spinner") == []
            # the host carries on
            report = await host.emit("app.started", {"again": True})
            assert report.delivered == ["rec"] and report.failed == {}

    run(main())


# -- rejections -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "path", "reason"),
    [
        ({"to": 5}, "$.to", "is not of type 'string'"),
        ({"to": "x" * 21}, "$.to", "is too long"),
        ({"n": 1}, "$", "'to' is a required property"),
        ({"to": "w", "extra": 1}, "$", "Additional properties are not allowed"),
        ({"to": "w", "n": 1.5}, "$.n", "is not of type 'integer'"),
    ],
)
def test_an_invalid_payload_is_rejected_before_any_subscriber(plugins_dir, tmp_path, payload, path, reason):
    write_plugin(plugins_dir, "pub", PUBLISHER, **PUBLISHER_MANIFEST)
    recorder(plugins_dir)

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            await host.activate_all()
            answer = await host.invoke("pub", "send", {"event": "greeting.sent", "payload": payload})
            assert answer["code"] == "E_PAYLOAD"
            assert "event 'greeting.sent' from plugin 'pub'" in answer["message"]
            assert f"rejected at {path}: " in answer["message"] and reason in answer["message"]
            await host.events_idle()
            assert stored(host, "rec", "seen") is None
            entry = host.store.audit_log(plugin_id="pub", action="event.rejected")[0]
            assert entry.detail["event"] == "greeting.sent" and entry.detail["path"] == path

    run(main())


def test_an_oversized_payload_is_rejected_by_its_utf8_size(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "pub", PUBLISHER, **{**PUBLISHER_MANIFEST, "events": [{
        "name": "greeting.sent", "maxPayloadBytes": 30}]})
    recorder(plugins_dir)

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            await host.activate_all()
            # 8 characters of 3 bytes each: '{"to":"' + 24 bytes + '"}' = 33 bytes > 30, 17 characters
            answer = await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "€" * 8}})
            assert answer["code"] == "E_PAYLOAD" and "the limit is 30 bytes" in answer["message"]
            assert await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "€" * 7}}) == "sent"
            await host.events_idle()
            assert [item[1] for item in stored(host, "rec", "seen")] == [{"to": "€" * 7}] * 2

    run(main())


def test_host_emit_rejections_raise_to_the_host(plugins_dir, tmp_path):
    recorder(plugins_dir, "rec", "app.*")

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.started", schema={"type": "object", "properties": {"v": {"type": "string"}}},
                               max_payload_bytes=50)
            await host.activate_all()
            with pytest.raises(PayloadError) as caught:
                await host.emit("app.started", {"v": 1})
            assert caught.value.json_path == "$.v" and caught.value.source == "host"
            assert "event 'app.started' from the host rejected at $.v" in str(caught.value)
            with pytest.raises(PayloadError, match="the limit is 50 bytes"):
                await host.emit("app.started", {"v": "x" * 100})
            with pytest.raises(PayloadError, match="not plain JSON"):
                await host.emit("app.started", {"v": float("nan")})
            with pytest.raises(EventError, match="does not declare an event named 'app.stopped'"):
                await host.emit("app.stopped", {})
            await host.events_idle()
            assert stored(host, "rec", "seen") is None
            # one entry per event and code; repeats within the interval are
            # counted into the next entry rather than written each
            [entry] = host.store.audit_log(action="event.rejected")
            assert (entry.detail["event"], entry.detail["code"], entry.detail["path"]) == ("app.started", "E_PAYLOAD", "$.v")

    run(main())


def test_only_the_declarer_may_emit_an_event(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "pub", PUBLISHER, capabilities=["events.publish:*"], commands=[{"name": "send"}],
                 events=[GREETING])
    recorder(plugins_dir, "rec", "*")

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.started")
            await host.activate_all()
            for name in ("app.started", "greeting.other", "nothing"):
                answer = await host.invoke("pub", "send", {"event": name, "payload": {}})
                assert answer["code"] == "E_EVENT", answer
                assert "only the declarer of an event may emit it" in answer["message"]
            # nor can the host emit a plugin's event
            with pytest.raises(EventError):
                await host.emit("greeting.sent", {"to": "x"})
            await host.events_idle()
            assert stored(host, "rec", "seen") is None

    run(main())


def test_emit_and_subscribe_need_their_grants_and_revocation_bites(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "pub", PUBLISHER, **PUBLISHER_MANIFEST)
    narrow = """
def activate(ctx):
    try:
        ctx.events.on("greeting.*", lambda p: None)
    except Exception as exc:
        ctx.storage.set("wide", exc.code)
    def handler(payload):
        ctx.storage.set("got", payload)
    ctx.events.on("greeting.sent", handler)
"""
    write_plugin(plugins_dir, "narrow", narrow, capabilities=["events.subscribe:greeting.*", "storage"])

    async def main():
        async with running(plugins_dir, tmp_path, grant=False, require_all_grants=False) as host:
            host.grants.grant("narrow", "events.subscribe:greeting.sent")
            host.grants.grant("narrow", "storage")
            await host.activate_all()
            assert stored(host, "narrow", "wide") == "E_CAPABILITY"
            answer = await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "a"}})
            assert answer["code"] == "E_CAPABILITY"
            host.grants.grant("pub", "events.publish:greeting.*")
            assert await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "b"}}) == "sent"
            await host.events_idle()
            assert stored(host, "narrow", "got") == {"to": "b"}
            host.grants.revoke("narrow", "events.subscribe:greeting.sent")
            await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "c"}})
            await host.events_idle()
            assert stored(host, "narrow", "got") == {"to": "b"}

    run(main())


# -- limits ---------------------------------------------------------------------------


def test_handlers_that_emit_back_and_forth_stop_at_the_maximum_depth(plugins_dir, tmp_path):
    def ping_pong(hear: list[str], say: str) -> str:
        subscribe = "\n".join(f"    ctx.events.on({name!r}, handler)" for name in hear)
        return f"""
def activate(ctx):
    def handler(payload):
        try:
            ctx.events.emit("{say}", {{"n": payload["n"] + 1}})
        except Exception as exc:
            ctx.storage.set("stopped", [exc.code, payload["n"]])
{subscribe}
"""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    write_plugin(plugins_dir, "ping", ping_pong(["app.serve", "pong.ball"], "ping.ball"),
                 events=[{"name": "ping.ball", "schema": schema}],
                 capabilities=["events.publish:ping.ball", "events.subscribe:*", "storage"])
    write_plugin(plugins_dir, "pong", ping_pong(["ping.ball"], "pong.ball"),
                 events=[{"name": "pong.ball", "schema": schema}],
                 capabilities=["events.publish:pong.ball", "events.subscribe:ping.ball", "storage"])

    async def main():
        async with running(plugins_dir, tmp_path, events=EventPolicy(max_depth=5)) as host:
            host.declare_event("app.serve", schema=schema)
            await host.activate_all()
            report = await host.emit("app.serve", {"n": 0})  # depth 1
            assert report.delivered == ["ping"]
            await host.events_idle()
            # ping.ball n=1 (depth 2), pong.ball n=2 (3), ping.ball n=3 (4), pong.ball n=4 (5): ping's
            # emit while handling that one would be depth 6
            assert stored(host, "ping", "stopped") == ["E_EVENT_DEPTH", 4]
            assert stored(host, "pong", "stopped") is None
            assert host.store.audit_count(plugin_id="ping", action="event.rejected") == 1
            # the rally can be served again: depth is per chain, not a global count
            await host.emit("app.serve", {"n": 10})
            await host.events_idle()
            assert stored(host, "ping", "stopped") == ["E_EVENT_DEPTH", 14]
            assert all(r.state is PluginState.ACTIVE for r in host.plugins.values())

    run(main())


def test_emitting_faster_than_the_rate_limit_is_refused_to_the_publisher(plugins_dir, tmp_path):
    flood = """
def activate(ctx):
    def flood(params):
        sent = 0
        for i in range(params["times"]):
            try:
                ctx.events.emit("greeting.sent", {"to": "x"})
            except Exception as exc:
                return {"sent": sent, "code": exc.code, "message": str(exc)}
            sent += 1
        return {"sent": sent}
    ctx.commands.register("flood", flood)
"""
    write_plugin(plugins_dir, "pub", flood, capabilities=["events.publish:greeting.*"], events=[GREETING],
                 commands=[{"name": "flood"}])
    recorder(plugins_dir)

    async def main():
        async with running(plugins_dir, tmp_path, events=EventPolicy(rate_per_s=1, burst=20)) as host:
            await host.activate_all()
            answer = await host.invoke("pub", "flood", {"times": 100})
            assert answer["sent"] == 20 and answer["code"] == "E_RATE_LIMIT"
            assert "faster than its limit of 1 per second (bursts of 20)" in answer["message"]
            await host.events_idle()
            assert len(stored(host, "rec", "seen")) == 40  # 20 events, two handlers each
            rejected = host.store.audit_log(plugin_id="pub", action="event.rejected")
            assert [e.detail["code"] for e in rejected] == ["E_RATE_LIMIT"]
            await host.deactivate("pub")  # what was still being counted is written
            assert rejections(host, "pub") == 1

    run(main())


def test_a_full_inbox_drops_events_for_that_plugin_only(plugins_dir, tmp_path):
    recorder(plugins_dir, "rec", "app.*")

    async def main():
        async with running(plugins_dir, tmp_path, events=EventPolicy(inbox_size=2)) as host:
            host.declare_event("app.tick")
            await host.activate_all()
            # queued in one go: the inbox holds two, the rest are dropped
            reports = await asyncio.gather(*(host.emit("app.tick", {"n": n}) for n in range(5)))
            assert [r.delivered for r in reports] == [["rec"], ["rec"], [], [], []]
            assert [r.dropped for r in reports] == [[], [], ["rec"], ["rec"], ["rec"]]
            assert [item[1]["n"] for item in stored(host, "rec", "seen")] == [0, 0, 1, 1]
            assert host.store.audit_count(plugin_id="rec", action="event.dropped") == 3

    run(main())


def test_after_deactivation_a_plugin_receives_nothing(plugins_dir, tmp_path):
    recorder(plugins_dir, "rec", "app.*")

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.tick")
            await host.activate("rec")
            assert len(host.bus.subscriptions("rec")) == 2
            await host.emit("app.tick", {"n": 1})
            await host.deactivate("rec")
            assert host.bus.subscriptions("rec") == []
            report = await host.emit("app.tick", {"n": 2})
            assert report.delivered == [] and report.skipped == []
            # activating again registers afresh, without duplicates
            await host.activate("rec")
            assert len(host.bus.subscriptions("rec")) == 2
            await host.emit("app.tick", {"n": 3})
            assert [item[1]["n"] for item in stored(host, "rec", "seen")] == [1, 1, 3, 3]

    run(main())


def test_a_disposed_handler_receives_nothing(plugins_dir, tmp_path):
    source = """
def activate(ctx):
    state = {}
    def handler(payload):
        ctx.storage.set("got", payload)
        state["sub"].dispose()
        state["sub"].dispose()  # idempotent
    state["sub"] = ctx.events.on("app.tick", handler)
"""
    write_plugin(plugins_dir, "once", source, capabilities=["events.subscribe:app.tick", "storage"])

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.tick")
            await host.activate_all()
            assert (await host.emit("app.tick", {"n": 1})).delivered == ["once"]
            assert (await host.emit("app.tick", {"n": 2})).delivered == []
            assert stored(host, "once", "got") == {"n": 1}
            assert host.bus.subscriptions("once") == []

    run(main())


def test_an_event_name_has_one_declarer(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "first", "def activate(ctx):\n    pass\n", events=[GREETING])
    write_plugin(plugins_dir, "second", "def activate(ctx):\n    pass\n", events=[GREETING])
    write_plugin(plugins_dir, "takes-host-name", "def activate(ctx):\n    pass\n",
                 events=[{"name": "app.started"}])

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.started")
            with pytest.raises(EventError, match="already declared by the host"):
                host.declare_event("app.started")
            states = await host.activate_all()
            assert states["first"] is PluginState.ACTIVE
            assert states["second"] is PluginState.BLOCKED
            assert "event 'greeting.sent' is already declared by plugin 'first'" in host.plugins["second"].error.message
            assert states["takes-host-name"] is PluginState.BLOCKED
            assert "already declared by the host" in host.plugins["takes-host-name"].error.message
            with pytest.raises(EventError, match="already declared by plugin 'first'"):
                host.declare_event("greeting.sent")
            # once the declarer is gone the name is free again
            await host.deactivate("first")
            assert (await host.activate("second")).state is PluginState.ACTIVE

    run(main())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "bad name"}, "not a valid name"),
        ({"name": "ok", "schema": {"type": "nope"}}, r"invalid schema: \$.type"),
        ({"name": "ok", "schema": {"$ref": "file:///etc/passwd"}}, r"invalid schema: \$.\$ref"),
        ({"name": "ok", "max_payload_bytes": 0}, "max_payload_bytes"),
    ],
)
def test_declare_event_checks_its_arguments(plugins_dir, tmp_path, kwargs, match):
    async def main():
        async with running(plugins_dir, tmp_path) as host:
            name = kwargs.pop("name")
            with pytest.raises(EventError, match=match):
                host.declare_event(name, **kwargs)
            assert host.bus.declarations() == []

    run(main())


def test_the_host_subscribes_to_plugin_events_in_order(plugins_dir, tmp_path, caplog):
    write_plugin(plugins_dir, "pub", PUBLISHER, **PUBLISHER_MANIFEST)

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.echo")
            seen = []

            async def record(event):
                await asyncio.sleep(0)
                seen.append((event.name, event.source, event.payload))

            def broken(event):
                raise RuntimeError("host handler bug")

            subscription = host.on("greeting.*", record)
            host.on("greeting.sent", broken)
            # a host handler that emits an event it handles itself: no deadlock
            reports = []

            async def echo(event):
                if event.name == "greeting.sent":
                    reports.append(await host.emit("app.echo", {"of": event.payload["to"]}))
                else:
                    seen.append(("echo", event.payload))

            host.on("*", echo)
            await host.activate_all()
            for to in ("a", "b"):
                await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": to}})
                await host.events_idle()
            assert seen == [("greeting.sent", "pub", {"to": "a"}), ("echo", {"of": "a"}),
                            ("greeting.sent", "pub", {"to": "b"}), ("echo", {"of": "b"})]
            assert [r.pending for r in reports] == [["host"], ["host"]]
            assert "host handler bug" in caplog.text
            subscription.dispose()
            report = await host.emit("app.echo", {"of": "host"})
            assert report.delivered == ["host"]
            await host.invoke("pub", "send", {"event": "greeting.sent", "payload": {"to": "c"}})
            await host.events_idle()
            assert ("greeting.sent", "pub", {"to": "c"}) not in seen

    run(main())


def test_a_plugin_cannot_take_the_hosts_name(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "host", PUBLISHER, **PUBLISHER_MANIFEST)

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            assert "host" not in host.plugins
            assert "is reserved" in str(host.invalid["host"].error)

    run(main())


@pytest.mark.parametrize(
    ("payload", "path", "reason"),
    [
        ({"v": "\ud800"}, "$", "lone surrogate"),
        (json.loads("[" * 70 + "]" * 70), "$" + "[0]" * 64, "64 levels"),
        ({"v": float("inf")}, "$", "not plain JSON"),
        ({"v": {1, 2}}, "$", "not plain JSON"),
    ],
)
def test_values_parsed_from_json_text_get_the_same_checks(payload, path, reason):
    """Values from JavaScript (parsed from the bridge's JSON text) and from
    the host skip the type-by-type walk; the rules still hold."""
    from hostrt.payloads import PayloadSpec

    spec = PayloadSpec("event 'x'", None, 10_000)
    with pytest.raises(PayloadError) as caught:
        spec.check(payload, "a-plugin", plain=True)
    assert caught.value.json_path.startswith(path[:30]) and reason in caught.value.reason
    # and the Python plugin path (walked) refuses them too
    with pytest.raises(PayloadError):
        spec.check(payload, "a-plugin")


def test_handler_ids_from_a_runtime_are_checked(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "sub", "def activate(ctx):\n    pass\n", capabilities=["events.subscribe:app.*"],
                 commands=[{"name": "run"}])

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            await host.activate_all()
            gate = host.plugins["sub"]._context
            for bad in ("x" * 1000, -1, 0, 2**60, 1.5, True, [1]):
                with pytest.raises(HostrtError, match="handler id"):
                    gate.events_subscribe("app.*", bad)
                with pytest.raises(HostrtError, match="handler id"):
                    gate.commands_register("run", bad)
            assert host.bus.subscriptions("sub") == [] and host.commands() == []

    run(main())


def test_closing_the_host_does_not_wait_forever_for_its_own_handlers(plugins_dir, tmp_path, monkeypatch):
    import hostrt.host as host_module

    monkeypatch.setattr(host_module, "CLOSE_EVENTS_WAIT_S", 0.05)

    async def main():
        host = Host(plugins_dir, tmp_path / "host.db")
        host.declare_event("app.tick")
        never = asyncio.Event()
        calls = []

        async def stuck(event):
            calls.append(event.payload)
            await never.wait()

        host.on("app.tick", stuck)
        emits = [asyncio.ensure_future(host.emit("app.tick", {"n": n})) for n in range(3)]
        await asyncio.sleep(0)
        await asyncio.wait_for(host.close(), 5)
        reports = await asyncio.wait_for(asyncio.gather(*emits), 5)
        assert calls == [{"n": 0}]
        # the one under way was stopped, the two queued behind it never started: all skipped
        assert [r.skipped for r in reports] == [["host"]] * 3
        assert all(r.delivered == [] and r.failed == {} for r in reports)

    run(main())


def test_python_plugins_catch_the_event_errors_by_name(plugins_dir, tmp_path):
    source = """
def activate(ctx):
    def send(params):
        caught = []
        for name, payload in (("greeting.sent", {"to": 5}), ("app.other", {}), ("greeting.sent", {"to": "x"})):
            try:
                ctx.events.emit(name, payload)
                caught.append("sent")
            except PayloadError as exc:
                caught.append(["PayloadError", exc.code, isinstance(exc, HostrtError)])
            except CapabilityError as exc:
                caught.append(["CapabilityError", exc.code])
            except (EventError, EventDepthError, RateLimitError) as exc:
                caught.append(["other", exc.code])
        try:
            ctx.host.call("app.nothing")
        except CapabilityError:
            caught.append("no grant")
        except HostMethodError:
            caught.append("wrong")
        return caught
    ctx.commands.register("send", send)
"""
    write_plugin(plugins_dir, "pub", source, **PUBLISHER_MANIFEST)

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            await host.activate_all()
            assert await host.invoke("pub", "send") == [
                ["PayloadError", "E_PAYLOAD", True], ["CapabilityError", "E_CAPABILITY"], "sent", "no grant"]

    run(main())
