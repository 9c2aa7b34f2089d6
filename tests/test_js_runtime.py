"""JavaScriptRuntime through its public API, against the real V8 isolate.

Plugins are real files in real isolates, activated against the real
``ActivationContext`` over a real SQLite store (``RecordingGate`` from
conftest records log calls and ``dispose_all``). Attacks on the boundary
live in test_js_attacks.py; this file covers what an author relies on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from py_mini_racer._context import context_count

from hostrt import Host, PluginState
from hostrt.cli import main as cli_main
from hostrt.errors import (
    BudgetExceededError,
    HostrtError,
    LifecycleError,
    PluginCompileError,
    PluginError,
    ResourceLimitError,
)
from hostrt.runtimes.base import PluginSource, RuntimeLimits
from hostrt.runtimes.js import JavaScriptRuntime, LoadedJavaScriptPlugin
from hostrt.runtimes.js_engine import EngineOutOfMemory, Isolate

from conftest import RecordingGate, manifest_dict


def make_source(root: Path, source: str, *, plugin_id: str = "demo", timeout_ms: int = 1000,
                memory_mb: int = 64) -> PluginSource:
    folder = root / plugin_id
    folder.mkdir(parents=True, exist_ok=True)
    main = folder / "plugin.js"
    main.write_text(textwrap.dedent(source).lstrip("\n"))
    return PluginSource(
        plugin_id, "2.1.0", folder.resolve(), main.resolve(), f"{plugin_id}/plugin.js",
        RuntimeLimits(timeout_ms=timeout_ms, memory_mb=memory_mb),
    )


@contextlib.asynccontextmanager
async def loaded(root: Path, source: str, **kwargs: Any) -> AsyncIterator[LoadedJavaScriptPlugin]:
    plugin = await JavaScriptRuntime().load(make_source(root, source, **kwargs))
    try:
        yield plugin
    finally:
        await plugin.close()


@contextlib.asynccontextmanager
async def active(root: Path, source: str, gate: RecordingGate | None = None,
                 **kwargs: Any) -> AsyncIterator[tuple[LoadedJavaScriptPlugin, RecordingGate]]:
    gate = gate or RecordingGate(kwargs.get("plugin_id", "demo"))
    async with loaded(root, source, **kwargs) as plugin:
        await plugin.activate(gate)
        yield plugin, gate


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def load_error(root: Path, source: str, **kwargs: Any) -> PluginError:
    with pytest.raises(PluginError) as info:
        async with active(root, source, **kwargs):
            pass
    return info.value


# -- module shape -----------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "module.exports = { activate(ctx) { ctx.log.info('up ' + ctx.plugin.id + ' ' + ctx.plugin.version) } };",
    "exports.activate = function (ctx) { ctx.log.info('up ' + ctx.plugin.id + ' ' + ctx.plugin.version) };",
    "module.exports.activate = async (ctx) => { await null; ctx.log.info('up ' + ctx.plugin.id + ' ' + ctx.plugin.version) };",
    "var module = module; module.exports = { activate: (ctx) => ctx.log.info('up demo 2.1.0') };",
])
def test_commonjs_shapes_activate(tmp_path: Path, source: str) -> None:
    async def go() -> list[Any]:
        async with active(tmp_path, source) as (_plugin, gate):
            return gate.logs
    assert run(go()) == [("info", "up demo 2.1.0", None)]


def test_async_activate_is_awaited_before_activate_returns(tmp_path: Path) -> None:
    source = """
        module.exports = { async activate(ctx) {
            const n = await ctx.storage.get("n", 41);
            await ctx.storage.set("n", n + 1);
            await ctx.storage.set("keys", await ctx.storage.keys());
        } };
    """
    async def go() -> dict[str, Any]:
        async with active(tmp_path, source) as (_plugin, gate):
            return gate.data
    assert run(go()) == {"n": 42, "keys": ["n"]}


@pytest.mark.parametrize("source, expected", [
    ("module.exports = {};", "does not export a function activate(ctx)"),
    ("module.exports = { activate: 5 };", "does not export a function activate(ctx)"),
    ("module.exports = null;", "does not export a function activate(ctx)"),
    ("module.exports = { activate() {}, deactivate: 'no' };", "exports deactivate, but it is not a function"),
])
def test_bad_module_shapes_are_named(tmp_path: Path, source: str, expected: str) -> None:
    error = run(load_error(tmp_path, source))
    assert expected in error.message
    assert error.file == "demo/plugin.js"


def test_require_is_refused_with_bundling_advice(tmp_path: Path) -> None:
    error = run(load_error(tmp_path, "const fs = require('fs');\nmodule.exports = { activate() {} };"))
    assert "require(\"fs\") is not available" in error.message
    assert "bundle" in error.message
    assert (error.line, error.column) == (1, 12)


def test_isolate_has_no_host_facilities(tmp_path: Path) -> None:
    source = """
        module.exports = { activate(ctx) {}, probe() {
            return [typeof fetch, typeof process, typeof WebAssembly, typeof SharedArrayBuffer,
                    typeof Atomics, typeof FinalizationRegistry, typeof XMLHttpRequest, typeof importScripts];
        } };
    """
    async def go() -> Any:
        async with active(tmp_path, source) as (plugin, _gate):
            return await plugin.call_export("probe")
    assert run(go()) == ["undefined"] * 8


# -- console and logging --------------------------------------------------------------


def test_console_is_routed_to_the_plugin_logger(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = """
        console.log("top level", 1, {a: [1, 2]});
        module.exports = { activate(ctx) {
            console.debug("d"); console.info("i"); console.warn("w"); console.error(new TypeError("e"));
            ctx.log.warn("with fields", {n: 1});
        } };
    """
    caplog.set_level(logging.DEBUG, logger="hostrt.plugins")

    async def go() -> list[Any]:
        async with active(tmp_path, source) as (_plugin, gate):
            return gate.logs
    gate_logs = run(go())
    records = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("hostrt.plugins")]
    assert records[0] == ("hostrt.plugins.demo", "INFO", 'top level 1 {"a":[1,2]}')
    assert records[1:4] == [("hostrt.plugins.demo", "DEBUG", "d"), ("hostrt.plugins.demo", "INFO", "i"),
                            ("hostrt.plugins.demo", "WARNING", "w")]
    assert records[4][1] == "ERROR" and records[4][2] == "TypeError: e\\n    at Object.activate (demo/plugin.js:3:77)"
    assert gate_logs[-1] == ("warn", "with fields", {"n": 1})


# -- errors ---------------------------------------------------------------------------------


def test_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    error = run(load_error(tmp_path, "module.exports = {\n  activate(ctx) { nope( }\n};\n"))
    assert isinstance(error, PluginCompileError)
    assert (error.file, error.line, error.column) == ("demo/plugin.js", 2, 25)
    assert error.code == "E_COMPILE"
    assert "SyntaxError" in error.message


def test_throw_in_activate_reports_file_line_column_and_js_stack(tmp_path: Path) -> None:
    source = """
        function helper() {
          throw new RangeError("no luck");
        }
        module.exports = { activate(ctx) { helper(); } };
    """
    error = run(load_error(tmp_path, source))
    assert type(error) is PluginError
    assert error.message == "plugin 'demo': activate: RangeError: no luck (demo/plugin.js, line 2, column 9)"
    assert (error.line, error.column) == (2, 9)
    assert error.plugin_traceback.splitlines()[:3] == [
        "RangeError: no luck", "    at helper (demo/plugin.js:2:9)", "    at Object.activate (demo/plugin.js:4:36)"]


def test_top_level_throw_is_reported_with_its_line(tmp_path: Path) -> None:
    error = run(load_error(tmp_path, "const x = 1;\nnull.boom;\n"))
    assert (error.file, error.line) == ("demo/plugin.js", 2)
    assert "TypeError" in error.message


@pytest.mark.parametrize("thrown, expected", [
    ("42", "Uncaught number: 42"),
    ("null", "Uncaught null: null"),
    ("'text'", "Uncaught string: text"),
    ("{name: 'Custom', message: 'shaped'}", "Custom: shaped"),
    ("Object.assign(new Error('coded'), {code: 'E_MINE'})", "Error: coded"),
])
def test_non_error_throws_are_described(tmp_path: Path, thrown: str, expected: str) -> None:
    error = run(load_error(tmp_path, f"module.exports = {{ activate() {{ throw {thrown}; }} }};"))
    assert error.reason == f"activate: {expected}"


def test_rejection_from_async_activate_is_reported(tmp_path: Path) -> None:
    source = "module.exports = { async activate(ctx) { await ctx.storage.get('k'); throw new Error('late'); } };"
    error = run(load_error(tmp_path, source))
    assert error.reason == "activate: Error: late"
    assert error.line == 1


def test_refused_call_rejects_with_capability_error_and_clean_message(tmp_path: Path) -> None:
    source = """
        module.exports = { activate(ctx) {}, async probe() {
            try { await globalThis.ctx.storage.get("k"); return "no error"; }
            catch (e) { return [e instanceof CapabilityError, e instanceof HostrtError, e instanceof Error,
                                e.name, e.code, e.message]; }
        } };
        module.exports.activate = (ctx) => { globalThis.ctx = ctx; };
    """
    gate = RecordingGate("demo")
    gate._store.remove_grant("demo", "storage")

    async def go() -> Any:
        async with active(tmp_path, source, gate) as (plugin, _gate):
            return await plugin.call_export("probe")
    result = run(go())
    assert result[:5] == [True, True, True, "CapabilityError", "E_CAPABILITY"]
    assert result[5] == "plugin 'demo' lacks capability 'storage'"


def test_host_bug_reaches_js_as_internal_error_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = """
        let saved;
        module.exports = { activate(ctx) { saved = ctx; }, async probe() {
            try { await saved.storage.get("k"); } catch (e) { return [e.code, e.message, String(e.stack)]; }
        } };
    """
    gate = RecordingGate("demo")
    gate.fail_with = KeyError(f"secret at {tmp_path}")

    async def go() -> Any:
        async with active(tmp_path, source, gate) as (plugin, _gate):
            return await plugin.call_export("probe")
    code, message, stack = run(go())
    assert (code, message) == ("E_HOSTRT", "internal host error")
    for text in (message, stack):
        assert "secret" not in text and str(tmp_path) not in text and "Traceback" not in text
    assert any("KeyError" in (r.exc_text or "") for r in caplog.records)


# -- boundary data --------------------------------------------------------------------------


@pytest.mark.parametrize("expr, message", [
    ("(() => { const a = {}; a.self = a; return a; })()", "argument is not JSON: it contains a cycle at $[1].self"),
    ("{f() {}}", "argument is not JSON: a function at $[1].f"),
    ("[1, NaN]", "argument is not JSON: NaN at $[1][1]"),
    ("10n", "argument is not JSON: a BigInt at $[1]"),
    ("new Map()", "argument is not JSON: an object that is not a plain object or array at $[1]"),
    ("[undefined]", "argument is not JSON: undefined at $[1][0]"),
    ("(() => { let v = 0; for (let i = 0; i < 100; i++) v = [v]; return v; })()",
     "argument is nested more than 64 levels deep at $[1]"),
    ("'x'.repeat(3 * 1024 * 1024)", "argument is too large"),
])
def test_values_that_are_not_json_are_refused_in_the_caller(tmp_path: Path, expr: str, message: str) -> None:
    source = f"""
        let saved;
        module.exports = {{ activate(ctx) {{ saved = ctx; }}, probe() {{
            try {{ saved.storage.set("k", {expr}); return "accepted"; }}
            catch (e) {{ return [e.name, e.message]; }}
        }} }};
    """
    async def go() -> tuple[Any, dict[str, Any]]:
        async with active(tmp_path, source) as (plugin, gate):
            return await plugin.call_export("probe"), gate.data
    (name, text), data = run(go())
    assert name in ("TypeError", "RangeError")
    assert text.startswith(message)
    assert data == {}


def test_call_export_round_trips_json_and_refuses_non_json(tmp_path: Path) -> None:
    source = """
        module.exports = { activate() {},
            echo(x, y) { return {x, y, ["__proto__"]: 1}; },
            async later(x) { await null; return x * 2; },
            bad() { return {when: new Date(0)}; },
        };
    """
    async def go() -> list[Any]:
        async with active(tmp_path, source) as (plugin, _gate):
            out = [await plugin.call_export("echo", {"a": [1, "é", None]}, "s"),
                   await plugin.call_export("later", 21)]
            for name, args in (("bad", ()), ("missing", ()), ("echo", (float("nan"),))):
                try:
                    await plugin.call_export(name, *args)
                except HostrtError as exc:
                    out.append((type(exc).__name__, exc.message))
            return out
    echo, later, bad, missing, nan = run(go())
    assert echo == {"x": {"a": [1, "é", None]}, "y": "s", "__proto__": 1}
    assert later == 42
    assert bad[0] == "PluginError" and "result is not JSON" in bad[1] and "$.when" in bad[1]
    assert missing[0] == "PluginError" and "does not export a function missing()" in missing[1]
    assert nan[0] == "HostrtError" and "arguments for echo() refused" in nan[1]


# -- timers -----------------------------------------------------------------------------------


def test_timers_fire_under_the_host_clock_and_stop_on_deactivate(tmp_path: Path) -> None:
    source = """
        let ctx, ticks = 0, interval;
        module.exports = {
            activate(c) {
                ctx = c;
                setTimeout((a, b) => ctx.log.info("once " + a + b), 5, "x", "y");
                const cancelled = setTimeout(() => ctx.log.info("never"), 5);
                clearTimeout(cancelled);
                interval = setInterval(() => { ticks++; if (ticks === 3) ctx.log.info("three ticks"); }, 1);
                setTimeout(() => ctx.log.info("after deactivate"), 400);
            },
            ticks() { return ticks; },
            stop() { clearInterval(interval); },
        };
    """
    async def go() -> tuple[list[Any], int, int]:
        async with active(tmp_path, source) as (plugin, gate):
            deadline = time.monotonic() + 5
            while len(gate.logs) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await plugin.call_export("stop")
            stopped_at = await plugin.call_export("ticks")
            await asyncio.sleep(0.05)
            still = await plugin.call_export("ticks")
            await plugin.deactivate()
            await asyncio.sleep(0.5)
            return gate.logs, stopped_at, still
    logs, stopped_at, still = run(go())
    assert sorted(m for _, m, _ in logs) == ["once xy", "three ticks"]
    assert stopped_at == still >= 3


def test_error_in_a_timer_is_logged_and_the_plugin_keeps_running(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    source = """
        let fired = 0;
        module.exports = { activate() { setTimeout(() => { fired++; throw new Error("tick failed"); }, 1); },
                           fired() { return fired; } };
    """
    async def go() -> int:
        async with active(tmp_path, source) as (plugin, _gate):
            deadline = time.monotonic() + 5
            while not any("tick failed" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return await plugin.call_export("fired")
    assert run(go()) == 1
    logged = [r for r in caplog.records if r.name == "hostrt.plugins.demo"]
    assert logged and logged[0].levelname == "ERROR" and "Error: tick failed" in logged[0].getMessage()


# -- lifecycle ----------------------------------------------------------------------------------


def test_deactivate_runs_plugin_then_disposers_newest_first_then_gate(tmp_path: Path) -> None:
    source = """
        module.exports = {
            activate(ctx) {
                for (const name of ["a", "b", "c"]) {
                    ctx.subscriptions.push({ dispose: async () => { await null; ctx.log.info("dispose " + name); } });
                }
            },
            deactivate(ctx) { ctx.log.info("deactivate"); },
        };
    """
    async def go() -> tuple[list[str], list[str]]:
        async with active(tmp_path, source) as (plugin, gate):
            await plugin.deactivate()
            return [m for _, m, _ in gate.logs], gate.events
    messages, events = run(go())
    assert messages == ["deactivate", "dispose c", "dispose b", "dispose a"]
    assert events == ["dispose_all"]


def test_every_disposer_runs_even_when_some_fail(tmp_path: Path) -> None:
    source = """
        module.exports = {
            activate(ctx) {
                ctx.subscriptions.push({ dispose() { ctx.log.info("first ran"); } });
                ctx.subscriptions.push({ dispose() { throw new Error("second broke"); } });
                ctx.subscriptions.push(42);
            },
            deactivate() { throw new Error("deactivate broke"); },
        };
    """
    async def go() -> tuple[PluginError, list[str]]:
        async with active(tmp_path, source) as (plugin, gate):
            with pytest.raises(PluginError) as info:
                await plugin.deactivate()
            return info.value, [m for _, m, _ in gate.logs]
    error, messages = run(go())
    assert messages == ["first ran"]
    assert error.reason.startswith("3 errors during deactivate; first: deactivate: Error: deactivate broke")


def test_activate_twice_and_calls_after_close_are_refused(tmp_path: Path) -> None:
    async def go() -> None:
        async with active(tmp_path, "module.exports = { activate() {}, f() { return 1; } };") as (plugin, gate):
            with pytest.raises(LifecycleError):
                await plugin.activate(gate)
            await plugin.close()
            with pytest.raises(LifecycleError):
                await plugin.call_export("f")
    run(go())


def test_close_frees_the_isolate(tmp_path: Path) -> None:
    async def go() -> tuple[int, int, int]:
        before = context_count()
        async with active(tmp_path, "module.exports = { activate() {} };") as (plugin, _gate):
            during = context_count()
        return before, during, context_count()
    before, during, after = run(go())
    assert during == before + 1
    assert after == before


# -- limits ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    "while (true) {}",
    "Promise.resolve().then(() => { for (;;) {} });",
    "return new Promise(() => {});",
    "return { then() {} };",
    "(async () => { await null; for (;;) {} })();",
])
def test_runaway_activate_fails_within_timeout_plus_100ms(tmp_path: Path, body: str) -> None:
    async def go() -> tuple[PluginError, float]:
        start = time.monotonic()
        with pytest.raises(PluginError) as info:
            async with active(tmp_path, f"module.exports = {{ activate() {{ {body} }} }};", timeout_ms=200):
                pass
        return info.value, time.monotonic() - start
    error, elapsed = run(go())
    assert isinstance(error, BudgetExceededError), error
    assert elapsed < 0.2 + 0.1 + 0.05  # load of a tiny plugin is a few ms
    assert error.file == "demo/plugin.js"


def test_spin_after_activate_returned_fails_the_plugin_and_tells_the_host(tmp_path: Path) -> None:
    source = "module.exports = { activate() { setTimeout(() => { for (;;) {} }, 20); }, f() { return 1; } };"

    async def go() -> tuple[PluginError, float]:
        crashed: asyncio.Future[PluginError] = asyncio.get_running_loop().create_future()
        async with active(tmp_path, source, timeout_ms=200) as (plugin, _gate):
            plugin.on_crash(crashed.set_result)
            start = time.monotonic()
            error = await asyncio.wait_for(crashed, 5)
            elapsed = time.monotonic() - start
            with pytest.raises(BudgetExceededError):
                await plugin.call_export("f")
            return error, elapsed
    error, elapsed = run(go())
    assert isinstance(error, BudgetExceededError)
    assert elapsed < 0.02 + 0.2 + 0.1


def test_heap_limit_fails_the_plugin_and_the_loop_stays_responsive(tmp_path: Path) -> None:
    source = """module.exports = { activate() { const keep = [];
        for (;;) keep.push(new Array(100000).fill("x" + keep.length)); } };"""

    async def go() -> tuple[PluginError, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1
        task = asyncio.create_task(ticker())
        try:
            with pytest.raises(PluginError) as info:
                async with active(tmp_path, source, timeout_ms=5000, memory_mb=16):
                    pass
        finally:
            task.cancel()
        return info.value, ticks
    error, ticks = run(go())
    assert isinstance(error, ResourceLimitError)
    assert "heap limit" in error.message
    assert ticks > 5  # the host loop kept running while V8 filled its heap


def test_array_buffer_memory_counts_against_the_memory_limit(tmp_path: Path) -> None:
    source = """
        const keep = [];
        module.exports = { activate() {}, grab(mb) {
            try { keep.push(new Uint8Array(mb * 1024 * 1024)); return "ok"; }
            catch (e) { return e.name + ": " + e.message; }
        } };
    """
    async def go() -> list[Any]:
        async with active(tmp_path, source, memory_mb=16) as (plugin, _gate):
            return [await plugin.call_export("grab", n) for n in (8, 4, 8)]
    assert run(go())[:2] == ["ok", "ok"]
    assert run(go())[2].startswith("RangeError: new Uint8Array(): 8388608 more bytes of ArrayBuffer memory "
                                   "would pass this plugin's limit of 16777216 bytes")


def test_engine_backstop_stops_memory_the_shim_does_not_see() -> None:
    # A bare isolate has no shim: this is what the host-side check catches
    # if plugin code ever got around the shim's accounting.
    async def go() -> float:
        isolate = Isolate.create(16 * 1024 * 1024)
        start = time.monotonic()
        try:
            with pytest.raises(EngineOutOfMemory):
                await isolate.eval("const keep = []; for (;;) { const a = new Uint8Array(32 * 1024 * 1024);"
                                   " a.fill(1); keep.push(a); }", 20)
            return time.monotonic() - start
        finally:
            await isolate.close()
    assert run(go()) < 10


def test_one_runaway_plugin_does_not_disturb_another(tmp_path: Path) -> None:
    good_src = "let n = 0; module.exports = { activate() {}, bump() { return ++n; } };"
    bad_src = "module.exports = { activate() {}, spin() { for (;;) {} } };"

    async def go() -> list[Any]:
        async with active(tmp_path, good_src, plugin_id="good") as (good, _g1):
            async with active(tmp_path, bad_src, plugin_id="bad", timeout_ms=300) as (bad, _g2):
                spin = asyncio.create_task(bad.call_export("spin"))
                results = [await good.call_export("bump") for _ in range(5)]
                with pytest.raises(BudgetExceededError):
                    await spin
                results.append(await good.call_export("bump"))
                return results
    assert run(go()) == [1, 2, 3, 4, 5, 6]


# -- check (hostrt check, hot reload) ---------------------------------------------------------


@pytest.mark.parametrize("source, line, column", [
    ("module.exports = {\n  activate(ctx) { nope( }\n};\n", 2, 25),
    ("const a = 1;\nconst a = 2;\n", 2, 7),
    ("x = `never closed", 1, None),
])
def test_check_reports_syntax_errors_without_running_anything(tmp_path: Path, source: str, line: int,
                                                              column: int | None) -> None:
    with pytest.raises(PluginCompileError) as info:
        JavaScriptRuntime().check(make_source(tmp_path, source))
    assert (info.value.file, info.value.line) == ("demo/plugin.js", line)
    if column is not None:
        assert info.value.column == column


def test_check_runs_no_plugin_code(tmp_path: Path) -> None:
    # Valid code whose top level would throw, or spin forever, if it ran.
    JavaScriptRuntime().check(make_source(tmp_path, "throw new Error('ran');"))
    JavaScriptRuntime().check(make_source(tmp_path, "for (;;) {}\nmodule.exports = {};"))


def test_check_works_inside_a_running_loop(tmp_path: Path) -> None:
    async def go() -> None:
        with pytest.raises(PluginCompileError):
            JavaScriptRuntime().check(make_source(tmp_path, "let = ;"))
    run(go())


# -- through the host ------------------------------------------------------------------------------


def write_js_plugin(root: Path, plugin_id: str, source: str, **manifest: Any) -> Path:
    folder = root / plugin_id
    folder.mkdir(parents=True, exist_ok=True)
    data = manifest_dict(plugin_id, runtime="javascript", main="plugin.js", **manifest)
    (folder / "plugin.json").write_text(json.dumps(data))
    (folder / "plugin.js").write_text(textwrap.dedent(source))
    return folder


def test_host_marks_a_plugin_failed_when_it_runs_away_after_activation(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    write_js_plugin(plugins, "runaway", "module.exports = { activate() { setTimeout(() => { for (;;) {} }, 10); } };",
                    limits={"timeoutMs": 200})
    write_js_plugin(plugins, "steady", "module.exports = { activate(ctx) { return ctx.storage.set('up', true); } };",
                    capabilities=["storage"])

    async def go() -> tuple[Any, ...]:
        async with Host(plugins, db_path=tmp_path / "host.db") as host:
            await host.discover()
            host.grants.grant("steady", "storage")
            await host.activate_all()
            runaway = host.plugins["runaway"]
            deadline = time.monotonic() + 5
            while runaway.state is PluginState.ACTIVE and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            audit = host.store.audit_log(plugin_id="runaway", action="lifecycle")
            steady = host.plugins["steady"]
            return (runaway.state, runaway.error, audit[0].detail, steady.state,
                    host.store.kv_get("steady", "up"), runaway._context, runaway._loaded)
    state, error, detail, steady_state, stored, context, loaded_plugin = run(go())
    assert state is PluginState.FAILED
    assert isinstance(error, BudgetExceededError) and error.code == "E_TIMEOUT"
    assert detail["state"] == "failed" and detail["error"]["code"] == "E_TIMEOUT"
    assert steady_state is PluginState.ACTIVE and stored == "true"
    assert context is None and loaded_plugin is None


def test_cli_check_reports_javascript_syntax_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_js_plugin(tmp_path, "broken", "module.exports = {\n  activate() { return ) }\n};\n")
    assert cli_main(["check", str(folder)]) == 1
    out = capsys.readouterr()
    assert "broken/plugin.js" in out.out + out.err and "line 2" in out.out + out.err


def test_queue_microtask_runs_callbacks_and_reports_their_errors(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    source = """
        const order = [];
        module.exports = { activate() {
            queueMicrotask(() => order.push("micro"));
            queueMicrotask(() => { throw new Error("micro broke"); });
            order.push("sync");
        }, order() { return order; } };
    """
    async def go() -> Any:
        async with active(tmp_path, source) as (plugin, _gate):
            return await plugin.call_export("order")
    assert run(go()) == ["sync", "micro"]
    logged = [r.getMessage() for r in caplog.records if r.name == "hostrt.plugins.demo"]
    assert logged == ["uncaught error in a microtask callback: Error: micro broke"]


# -- arrays V8 would build in one step -------------------------------------------------------------

ONE_STEP_ARRAYS = {
    "fill": "new Array(2 ** 31 - 1).fill(0)",
    "array-from-array-like": "Array.from({length: 2 ** 31})",
    "to-reversed": "new Array(2 ** 31 - 1).toReversed()",
    "fill-on-array-like": "Array.prototype.fill.call({length: 2 ** 31}, 0)",
    "typed-from-array-like": "new Float64Array({length: 2 ** 31})",
}


def test_arrays_v8_would_build_in_one_step_are_refused_and_the_host_survives(tmp_path: Path) -> None:
    # Each of these makes V8 abort the whole process with a fatal
    # out-of-memory error if it runs: the shim must refuse it up front. Run
    # in a child process, so a regression shows up as a failed test rather
    # than a dead test run.
    checks = "\n".join(
        f"  try {{ {expr}; out.push('ran'); }} catch (e) {{ out.push(e.name); }}" for expr in ONE_STEP_ARRAYS.values()
    )
    source = f"module.exports = {{ activate() {{}}, probe() {{\n  const out = [];\n{checks}\n  return out;\n}} }};\n"
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import RecordingGate
        from test_js_runtime import active
        from pathlib import Path

        async def main():
            async with active(Path({str(tmp_path)!r}), {source!r}, timeout_ms=5000, memory_mb=64) as (plugin, _):
                print(json.dumps(await plugin.call_export("probe")))
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["RangeError"] * len(ONE_STEP_ARRAYS)


def test_a_result_whose_then_cannot_be_read_fails_at_once(tmp_path: Path) -> None:
    source = """
        module.exports = { activate() {}, odd() {
            const p = Proxy.revocable({}, {}); p.revoke(); return p.proxy;
        }, getter() { return { get then() { throw new Error("no then for you"); } }; } };
    """
    async def go() -> list[tuple[str, float]]:
        out = []
        async with active(tmp_path, source, timeout_ms=2000) as (plugin, _gate):
            for name in ("odd", "getter"):
                start = time.monotonic()
                with pytest.raises(PluginError) as info:
                    await plugin.call_export(name)
                out.append((info.value.reason, time.monotonic() - start))
        return out
    (revoked, t1), (getter, t2) = run(go())
    assert revoked.startswith("odd(): TypeError") and t1 < 0.5
    assert getter == "getter(): Error: no then for you" and t2 < 0.5


def test_a_forged_has_instance_does_not_hide_buffers_from_the_accounting(tmp_path: Path) -> None:
    source = """
        const keep = [];
        module.exports = { activate() {}, grab() {
            for (const C of [ArrayBuffer, Uint8Array, Object.getPrototypeOf(Uint8Array)]) {
                Object.defineProperty(C, Symbol.hasInstance, { value: () => false });
            }
            const buf = new ArrayBuffer(4 * 1024 * 1024);
            try { for (let i = 0; i < 20; i++) keep.push(buf.slice(0)); return "kept " + keep.length; }
            catch (e) { return e.name + " after " + keep.length; }
        } };
    """
    async def go() -> Any:
        async with active(tmp_path, source, memory_mb=16) as (plugin, _gate):
            return await plugin.call_export("grab")
    assert run(go()) == "RangeError after 3"  # 4 MiB + 3 copies of it fill 16 MiB


def test_array_from_reads_a_source_once(tmp_path: Path) -> None:
    # Symbol.iterator answers a function to the first read and nothing to
    # the next, with a huge length behind it: V8 must never see the second.
    source = """
        module.exports = { activate() {}, probe() {
            let reads = 0;
            const sneaky = { get [Symbol.iterator]() { reads++; return reads === 1 ? function* () { yield 1; } : undefined; },
                             length: 2 ** 31 };
            return [Array.from(sneaky), Array.from(new Set([1, 2]), (x) => x * 2), Array.from({length: 2, 0: "a", 1: "b"})];
        } };
    """
    async def go() -> Any:
        async with active(tmp_path, source) as (plugin, _gate):
            return await plugin.call_export("probe")
    assert run(go()) == [[1], [2, 4], ["a", "b"]]
