"""Host methods (``host.expose`` / ``ctx.host.call``) and commands
(``ctx.commands.register`` / ``host.invoke``) with real Python plugins
through the real host. (The JavaScript side is in test_js_events.py.)"""

from __future__ import annotations

import asyncio
import logging

import pytest

from hostrt import HostMethodError, Page, PayloadError, PluginError, PluginState
from hostrt.errors import CommandNotFoundError, HostrtError, LifecycleError

from conftest import write_plugin
from test_events import running, stored

#: Calls the host method named in the command's parameters and returns the
#: result, or the error's code and message.
CALLER = """
def activate(ctx):
    def call(params):
        try:
            return {"result": ctx.host.call(params["method"], params.get("params"))}
        except Exception as exc:
            return {"code": exc.code, "message": str(exc)}
    ctx.commands.register("call", call)
"""


def caller(plugins_dir, *methods: str) -> None:
    write_plugin(plugins_dir, "caller", CALLER, capabilities=[f"host.call:{m}" for m in methods],
                 commands=[{"name": "call"}])


def run(coro):
    return asyncio.run(coro)


async def call(host, method, params=None):
    return await host.invoke("caller", "call", {"method": method, "params": params})


# -- host methods ------------------------------------------------------------------


def test_sync_and_async_host_methods_with_checked_params(plugins_dir, tmp_path):
    caller(plugins_dir, "math.*")

    async def add(params):
        await asyncio.sleep(0)
        return params["a"] + params["b"]

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                      "required": ["a", "b"]}
            host.expose("math.add", add, params_schema=schema)
            host.expose("math.neg", lambda params: -params["x"])
            await host.activate_all()
            assert await call(host, "math.add", {"a": 2, "b": 3}) == {"result": 5}
            assert await call(host, "math.neg", {"x": 4}) == {"result": -4}
            answer = await call(host, "math.add", {"a": "2", "b": 3})
            assert answer["code"] == "E_PAYLOAD"
            assert "parameters of host method 'math.add' from plugin 'caller' rejected at $.a" in answer["message"]
            assert (await call(host, "math.mul", {}))["code"] == "E_NO_METHOD"

    run(main())


def test_a_host_method_needs_its_grant(plugins_dir, tmp_path):
    caller(plugins_dir, "open.*")
    calls = []

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.expose("secret.read", lambda params: calls.append(params) or "the secret")
            host.expose("open.read", lambda params: "public")
            await host.activate_all()
            answer = await call(host, "secret.read")
            assert answer["code"] == "E_CAPABILITY" and "host.call:secret.read" in answer["message"]
            assert calls == []
            assert await call(host, "open.read") == {"result": "public"}
            host.grants.revoke("caller", "host.call:open.*")
            assert (await call(host, "open.read"))["code"] == "E_CAPABILITY"

    run(main())


def test_host_errors_reach_the_plugin_clean(plugins_dir, tmp_path, caplog):
    caller(plugins_dir, "app.*")

    def not_found(params):
        raise HostMethodError("no system named 'x'", code="E_NO_SYSTEM")

    def broken(params):
        open("/etc/hostrt-secret-path-xyz")  # raises FileNotFoundError naming the path

    def host_error(params):
        raise LifecycleError("internal state at /srv/app/state.db")

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.expose("app.find", not_found)
            host.expose("app.broken", broken)
            host.expose("app.state", host_error)
            await host.activate_all()
            assert await call(host, "app.find") == {"code": "E_NO_SYSTEM", "message": "no system named 'x'"}
            with caplog.at_level(logging.ERROR, logger="hostrt.hostmethods"):
                for method in ("app.broken", "app.state"):
                    answer = await call(host, method)
                    assert answer == {"code": "E_HOST_METHOD", "message": f"host method '{method}' failed"}
            # the host's log has the real error
            assert "hostrt-secret-path-xyz" in caplog.text and "Traceback" in caplog.text

    run(main())


def test_host_method_results_must_be_json_within_the_limit(plugins_dir, tmp_path):
    caller(plugins_dir, "app.*")

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.expose("app.big", lambda params: "x" * 200, result_max_bytes=100)
            host.expose("app.odd", lambda params: {"when": object()})
            await host.activate_all()
            answer = await call(host, "app.big")
            assert answer["code"] == "E_PAYLOAD" and "the limit is 100" in answer["message"]
            assert await call(host, "app.odd") == {
                "code": "E_HOST_METHOD", "message": "host method 'app.odd' returned a value that is not JSON"}

    run(main())


def test_paged_methods_cap_the_limit(plugins_dir, tmp_path):
    caller(plugins_dir, "notes.*")
    notes = [f"note {i}" for i in range(7)]
    asked = []

    def window(params, page):
        asked.append((params, page))
        return Page(items=notes[page.offset:page.offset + page.limit], total=len(notes))

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.expose("notes.list", lambda params, page: notes, page_size=2, max_page_size=3,
                        params_schema={"type": "object", "properties": {"tag": {"type": "string"}},
                                       "additionalProperties": False})
            host.expose("notes.window", window, max_page_size=5)
            await host.activate_all()
            assert await call(host, "notes.list") == {"result": {
                "items": ["note 0", "note 1"], "limit": 2, "offset": 0, "total": 7, "nextOffset": 2}}
            assert await call(host, "notes.list", {"limit": 1000, "offset": 5, "tag": "x"}) == {"result": {
                "items": ["note 5", "note 6"], "limit": 3, "offset": 5, "total": 7, "nextOffset": None}}
            assert (await call(host, "notes.list", {"offset": 100}))["result"]["items"] == []
            for bad, path in (({"limit": 0}, "$.limit"), ({"limit": "3"}, "$.limit"), ({"offset": -1}, "$.offset"),
                              ({"offset": True}, "$.offset"), ({"other": 1}, "$")):
                answer = await call(host, "notes.list", bad)
                assert answer["code"] == "E_PAYLOAD" and f"rejected at {path}:" in answer["message"], (bad, answer)
            assert (await call(host, "notes.list", [1]))["code"] == "E_PAYLOAD"
            page = (await call(host, "notes.window", {"limit": 50, "offset": 4}))["result"]
            assert page == {"items": ["note 4", "note 5", "note 6"], "limit": 5, "offset": 4, "total": 7,
                            "nextOffset": None}
            assert asked[-1][1].limit == 5 and asked[-1][0] == {}

    run(main())


def test_expose_checks_its_arguments(plugins_dir, tmp_path):
    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.expose("app.ok", lambda params: 1)
            with pytest.raises(HostrtError, match="already exposed"):
                host.expose("app.ok", lambda params: 2)
            with pytest.raises(HostrtError, match="not a valid name"):
                host.expose("app ok", lambda params: 2)
            with pytest.raises(HostrtError, match=r"invalid params_schema: \$.type"):
                host.expose("app.bad", lambda params: 2, params_schema={"type": 5})
            with pytest.raises(HostrtError, match="page_size"):
                host.expose("app.page", lambda params, page: [], page_size=5)
            assert host.methods.names() == ["app.ok"]

    run(main())


def test_a_host_method_can_emit_an_event_its_caller_handles_without_deadlock(plugins_dir, tmp_path):
    source = """
def activate(ctx):
    def on_changed(payload):
        ctx.storage.set("changed", payload)
    ctx.events.on("app.changed", on_changed)
    def touch(params):
        return ctx.host.call("app.touch", {})
    ctx.commands.register("touch", touch)
"""
    write_plugin(plugins_dir, "toucher", source, commands=[{"name": "touch"}],
                 capabilities=["host.call:app.touch", "events.subscribe:app.changed", "storage"])
    reports = []

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.changed")

            async def touch(params):
                # the caller is waiting on this method: emit must not wait for it
                reports.append(await host.emit("app.changed", {"by": "touch"}))
                return "touched"

            host.expose("app.touch", touch)
            await host.activate_all()
            assert await host.invoke("toucher", "touch", {}) == "touched"
            assert reports[0].pending == ["toucher"]
            await host.events_idle()
            assert stored(host, "toucher", "changed") == {"by": "touch"}
            # the report is a snapshot: still only pending after the delivery
            assert reports[0].pending == ["toucher"] and reports[0].delivered == []

    run(main())


# -- commands ------------------------------------------------------------------------

GREETER = """
def activate(ctx):
    def greet(params):
        if params.get("fail"):
            raise ValueError("cannot greet " + params["who"])
        if params.get("spin"):
            while True:
                pass
        if params.get("wrong"):
            return 42
        if params.get("odd"):
            return {"x": object()}
        return "hello " + params["who"]
    ctx.commands.register("greet", greet)
"""
GREET_DECL = {
    "name": "greet",
    "description": "Say hello",
    "paramsSchema": {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]},
    "resultSchema": {"type": "string"},
    "maxPayloadBytes": 100,
}


def test_invoke_a_command_with_checked_params_and_result(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "greeter", GREETER, commands=[GREET_DECL], limits={"timeoutMs": 200})

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            await host.activate_all()
            assert await host.invoke("greeter", "greet", {"who": "Ann"}) == "hello Ann"
            [info] = host.commands()
            assert (info.plugin_id, info.name, info.description) == ("greeter", "greet", "Say hello")
            assert info.params_schema == GREET_DECL["paramsSchema"] and info.result_schema == {"type": "string"}
            with pytest.raises(PayloadError) as caught:
                await host.invoke("greeter", "greet", {"who": 1})
            assert caught.value.json_path == "$.who" and caught.value.source == "host"
            with pytest.raises(PayloadError, match="the limit is 100"):
                await host.invoke("greeter", "greet", {"who": "x" * 200})
            with pytest.raises(PayloadError) as caught:
                await host.invoke("greeter", "greet", {"who": "x", "wrong": True})
            assert "result of command 'greet' of plugin 'greeter' from plugin 'greeter'" in str(caught.value)
            with pytest.raises(PluginError) as caught:
                await host.invoke("greeter", "greet", {"who": "Bo", "fail": True})
            error = caught.value
            assert error.plugin_id == "greeter" and error.file == "greeter/plugin.py" and error.line == 5
            assert "command 'greet' failed" in error.message and "cannot greet Bo" in error.message
            with pytest.raises(PluginError, match="not JSON"):
                await host.invoke("greeter", "greet", {"who": "x", "odd": True})
            assert host.plugins["greeter"].state is PluginState.ACTIVE
            with pytest.raises(CommandNotFoundError):
                await host.invoke("greeter", "wave", {})
            with pytest.raises(CommandNotFoundError):
                await host.invoke("nobody", "greet", {})

    run(main())


def test_a_command_that_runs_too_long_fails_its_plugin(plugins_dir, tmp_path):
    write_plugin(plugins_dir, "greeter", GREETER, commands=[GREET_DECL], limits={"timeoutMs": 100})

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            await host.activate_all()
            with pytest.raises(PluginError) as caught:
                await host.invoke("greeter", "greet", {"who": "x", "spin": True})
            assert caught.value.code == "E_TIMEOUT"
            assert "command 'greet' failed" in caught.value.message
            await asyncio.sleep(0)
            async with host._lock:
                pass
            assert host.plugins["greeter"].state is PluginState.FAILED
            assert host.commands() == []
            with pytest.raises(CommandNotFoundError, match="not active"):
                await host.invoke("greeter", "greet", {"who": "x"})

    run(main())


def test_only_declared_commands_register_once_and_dispose(plugins_dir, tmp_path):
    source = """
def activate(ctx):
    errors = []
    for name in ("undeclared", 5):
        try:
            ctx.commands.register(name, lambda p: 1)
        except Exception as exc:
            errors.append(exc.code)
    first = ctx.commands.register("greet", lambda p: "first")
    try:
        ctx.commands.register("greet", lambda p: "second")
    except Exception as exc:
        errors.append(exc.code)
    ctx.storage.set("errors", errors)
    def swap(params):
        first.dispose()
        ctx.commands.register("greet", lambda p: "replaced")
        return "ok"
    ctx.commands.register("swap", swap)
"""
    write_plugin(plugins_dir, "cmds", source, capabilities=["storage"],
                 commands=[{"name": "greet"}, {"name": "swap"}, {"name": "never"}])

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            await host.activate_all()
            assert stored(host, "cmds", "errors") == ["E_HOSTRT", "E_HOSTRT", "E_HOSTRT"]
            assert [c.name for c in host.commands()] == ["greet", "swap"]
            assert await host.invoke("cmds", "greet") == "first"
            assert await host.invoke("cmds", "swap") == "ok"
            assert await host.invoke("cmds", "greet") == "replaced"
            with pytest.raises(CommandNotFoundError, match="no handler for command 'never'"):
                await host.invoke("cmds", "never")
            await host.deactivate("cmds")
            assert host.commands() == []

    run(main())


def test_a_host_method_cannot_invoke_its_waiting_caller(plugins_dir, tmp_path):
    source = """
def activate(ctx):
    ctx.commands.register("outer", lambda p: ctx.host.call("app.back", {}))
    ctx.commands.register("inner", lambda p: "inner")
"""
    write_plugin(plugins_dir, "loop", source, capabilities=["host.call:app.back"],
                 commands=[{"name": "outer"}, {"name": "inner"}])
    seen = []

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            async def back(params):
                try:
                    return await host.invoke("loop", "inner")
                except LifecycleError as exc:
                    seen.append(str(exc))
                    return "refused"

            host.expose("app.back", back)
            await host.activate_all()
            assert await host.invoke("loop", "outer") == "refused"
            assert "would deadlock" in seen[0]
            assert await host.invoke("loop", "inner") == "inner"

    run(main())


def test_python_handlers_may_take_the_event_info_or_not(plugins_dir, tmp_path):
    source = """
class Recorder:
    def __init__(self, ctx):
        self.ctx = ctx
    def on_event(self, payload, event):
        self.ctx.storage.set("method", [payload, event])

def activate(ctx):
    def star(*args):
        ctx.storage.set("star", list(args))
    ctx.events.on("app.tick", star)
    ctx.events.on("app.tick", Recorder(ctx).on_event)
    ctx.events.on("app.tick", lambda payload: ctx.storage.set("lambda", payload))
"""
    write_plugin(plugins_dir, "kinds", source, capabilities=["storage", "events.subscribe:app.tick"])

    async def main():
        async with running(plugins_dir, tmp_path) as host:
            host.declare_event("app.tick")
            await host.activate_all()
            report = await host.emit("app.tick", {"n": 1})
            assert report.delivered == ["kinds"], report
            info = {"name": "app.tick", "source": "host"}
            assert stored(host, "kinds", "star") == [{"n": 1}, info]
            assert stored(host, "kinds", "method") == [{"n": 1}, info]
            assert stored(host, "kinds", "lambda") == {"n": 1}

    run(main())





def test_the_blocking_host_offers_the_same_calls(plugins_dir, tmp_path):
    from hostrt import SyncHost

    write_plugin(plugins_dir, "greeter", GREETER, commands=[GREET_DECL], capabilities=["events.subscribe:app.*"])
    with SyncHost(plugins_dir, tmp_path / "sync.db") as host:
        host.declare_event("app.started")
        host.expose("app.version", lambda params: "1.0")
        host.discover()
        host.grants.grant_requested("greeter")
        host.activate_all()
        assert host.invoke("greeter", "greet", {"who": "Sync"}) == "hello Sync"
        assert [c.name for c in host.commands()] == ["greet"]
        assert host.emit("app.started", {}).delivered == []
        host.events_idle()
        assert host.methods.names() == ["app.version"]
        assert host.store.audit_count(plugin_id="greeter", action="lifecycle") == 1
