"""PythonRuntime through its public API: load, activate, call, deactivate, close.

Plugins are real files compiled by the real sandbox, activated against the
real ``ActivationContext`` over a real SQLite store (``RecordingGate`` in
conftest records the log calls and ``dispose_all`` for the tests to see).
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import hostrt
from hostrt.capabilities import Capability
from hostrt.context import ActivationContext
from hostrt.errors import (
    BudgetExceededError,
    LifecycleError,
    PluginCompileError,
    PluginError,
)
from hostrt.grants import GrantManager
from hostrt.runtimes.base import PluginSource, RuntimeLimits
from hostrt.runtimes.python import LoadedPythonPlugin, PythonRuntime
from hostrt.runtimes.pysandbox.limits import MAX_WALK_DEPTH
from hostrt.store import Store

from conftest import RecordingGate

HOSTRT_DIR = str(Path(hostrt.__file__).resolve().parent)


def make_source(root: Path, source: str, *, plugin_id: str = "demo", timeout_ms: int = 1000) -> PluginSource:
    folder = root / plugin_id
    folder.mkdir(parents=True, exist_ok=True)
    main = folder / "plugin.py"
    main.write_text(textwrap.dedent(source).lstrip("\n"))
    return PluginSource(
        plugin_id, "2.1.0", folder.resolve(), main.resolve(), f"{plugin_id}/plugin.py",
        RuntimeLimits(timeout_ms=timeout_ms),
    )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def plugin_threads(plugin_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"hostrt-py-{plugin_id}") and t.is_alive()]


def assert_clean_traceback(error: PluginError, root: Path) -> None:
    text = error.message + "\n" + error.plugin_traceback
    assert str(root) not in text
    assert HOSTRT_DIR not in text and "site-packages" not in text and "concurrent" not in text
    for line in error.plugin_traceback.splitlines():
        if line.startswith("  File "):
            assert line.startswith('  File "demo/plugin.py"'), line


# ---------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------

LIFECYCLE = """
class Closer:
    def __init__(self, ctx, name):
        self.ctx = ctx
        self.name = name

    def dispose(self):
        self.ctx.storage.set("order", self.ctx.storage.get("order", []) + [self.name])


def activate(ctx):
    ctx.storage.set("who", [ctx.plugin.id, ctx.plugin.version])
    ctx.log.info("activated", {"n": 1})
    ctx.log.warning(12345)
    for name in ("first", "second", "third"):
        ctx.subscriptions.append(Closer(ctx, name))


def deactivate(ctx):
    ctx.storage.set("order", ["deactivate"])
"""


def test_load_activate_deactivate_close(tmp_path):
    gate = RecordingGate("demo", version="2.1.0")

    async def main() -> LoadedPythonPlugin:
        runtime = PythonRuntime()
        assert runtime.name == "python"
        loaded = await runtime.load(make_source(tmp_path, LIFECYCLE))
        await loaded.activate(gate)
        assert gate.data["who"] == ["demo", "2.1.0"]
        assert ("info", "activated", {"n": 1}) in gate.logs
        assert ("warn", "12345", None) in gate.logs
        await loaded.deactivate()
        await loaded.close()
        await loaded.close()  # idempotent
        await runtime.close()
        return loaded

    loaded = run(main())
    # deactivate(ctx) first, then the subscriptions newest first, then the gate.
    assert gate.data["order"] == ["deactivate", "third", "second", "first"]
    assert gate.events == ["dispose_all"]
    with pytest.raises(LifecycleError):
        run(loaded.call(print))


def test_each_plugin_runs_in_its_own_named_worker_thread(tmp_path):
    async def main() -> tuple[str, str]:
        loaded = await PythonRuntime().load(make_source(tmp_path, "def activate(ctx):\n    pass\n"))
        try:
            name = await loaded.call(lambda: threading.current_thread().name)
            return name, threading.current_thread().name
        finally:
            await loaded.close()

    worker, loop_thread = run(main())
    assert worker.startswith("hostrt-py-demo") and worker != loop_thread


def test_call_runs_plugin_callables_as_budgeted_entries(tmp_path):
    source = """
    def activate(ctx):
        pass

    def handler(payload):
        return {"echo": payload, "len": len(payload)}

    def spin(_unused=None):
        while True:
            pass
    """
    source = source.replace("_unused=None", "unused=None")

    async def main() -> tuple[Any, BaseException, Any]:
        loaded = await PythonRuntime().load(make_source(tmp_path, source, timeout_ms=150))
        try:
            namespace = loaded._sandbox.globals
            first = await loaded.call(namespace["handler"], "hi")
            with pytest.raises(BudgetExceededError) as excinfo:
                await loaded.call(namespace["spin"])
            # A later entry gets a fresh budget.
            again = await loaded.call(namespace["handler"], "again")
            return first, excinfo.value, again
        finally:
            await loaded.close()

    first, error, again = run(main())
    assert first == {"echo": "hi", "len": 2}
    assert error.code == "E_TIMEOUT" and error.file == "demo/plugin.py" and error.line in (8, 9)
    assert again == {"echo": "again", "len": 5}


def test_activate_twice_is_a_lifecycle_error(tmp_path):
    async def main() -> None:
        loaded = await PythonRuntime().load(make_source(tmp_path, "def activate(ctx):\n    pass\n"))
        try:
            await loaded.activate(RecordingGate("demo", version="2.1.0"))
            with pytest.raises(LifecycleError):
                await loaded.activate(RecordingGate("demo", version="2.1.0"))
        finally:
            await loaded.close()

    run(main())


def test_check_compiles_without_running(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hostrt.plugins")
    runtime = PythonRuntime()
    runtime.check(make_source(tmp_path, "print('top level ran')\ndef activate(ctx):\n    pass\n"))
    assert not [r for r in caplog.records if r.name.startswith("hostrt.plugins")]
    with pytest.raises(PluginCompileError) as excinfo:
        runtime.check(make_source(tmp_path, "def activate(ctx):\n    return ctx.__class__\n"))
    assert excinfo.value.line == 2 and excinfo.value.column == 16


# ---------------------------------------------------------------------------
# errors: file, line, column, plugin-only tracebacks
# ---------------------------------------------------------------------------


def test_exception_in_activate_names_the_plugin_file_and_line(tmp_path):
    source = """
    def helper(values):
        return values["missing"]


    def activate(ctx):
        data = {}
        helper(data)
    """

    error = run(activate_error(make_source(tmp_path, source)))
    assert type(error) is PluginError and error.code == "E_PLUGIN"
    assert error.file == "demo/plugin.py" and error.line == 2 and error.column == 12
    assert error.reason == "KeyError: 'missing'"
    assert error.plugin_traceback.splitlines() == [
        "Traceback (most recent call last):",
        '  File "demo/plugin.py", line 7, in activate',
        "    helper(data)",
        '  File "demo/plugin.py", line 2, in helper',
        '    return values["missing"]',
        "KeyError: 'missing'",
    ]
    assert_clean_traceback(error, tmp_path)


def test_value_error_message_format(tmp_path):
    error = run(activate_error(make_source(tmp_path, "def activate(ctx):\n    raise ValueError('boom')\n")))
    assert error.reason == "ValueError: boom" and error.line == 2
    assert "ValueError: boom" in error.message and "demo/plugin.py, line 2" in error.message
    assert_clean_traceback(error, tmp_path)


def test_error_in_the_top_level_fails_the_load(tmp_path):
    source = "import json\n\nCONFIG = json.loads('{broken')\n\ndef activate(ctx):\n    pass\n"
    with pytest.raises(PluginError) as excinfo:
        run(PythonRuntime().load(make_source(tmp_path, source)))
    error = excinfo.value
    assert error.line == 3 and error.file == "demo/plugin.py"
    assert error.reason.startswith("JSONDecodeError: Expecting property name")
    assert_clean_traceback(error, tmp_path)
    time.sleep(0.05)
    assert plugin_threads("demo") == []  # nothing left running


def test_missing_or_non_callable_activate(tmp_path):
    with pytest.raises(PluginError) as excinfo:
        run(PythonRuntime().load(make_source(tmp_path, "def deactivate(ctx):\n    pass\n")))
    assert "demo/plugin.py does not define a callable activate(ctx)" in excinfo.value.message
    assert excinfo.value.file == "demo/plugin.py"
    with pytest.raises(PluginError) as excinfo:
        run(PythonRuntime().load(make_source(tmp_path, "activate = 42\n")))
    assert "does not define a callable activate(ctx)" in excinfo.value.message


def test_syntax_error_has_line_and_column(tmp_path):
    source = "def activate(ctx):\n    x = (1,\n    return x\n"
    with pytest.raises(PluginCompileError) as excinfo:
        run(PythonRuntime().load(make_source(tmp_path, source)))
    error = excinfo.value
    assert error.code == "E_COMPILE" and error.file == "demo/plugin.py"
    assert error.line == 2 and error.column == 9
    assert "SyntaxError" in error.reason
    assert str(tmp_path) not in error.message


def test_policy_errors_have_line_and_column(tmp_path):
    with pytest.raises(PluginCompileError) as excinfo:
        run(PythonRuntime().load(make_source(tmp_path, "def activate(ctx):\n    pass\n\nasync def later():\n    pass\n")))
    assert excinfo.value.line == 4 and excinfo.value.column == 1
    assert "async functions are not supported" in excinfo.value.reason
    with pytest.raises(PluginCompileError) as excinfo:
        run(PythonRuntime().load(make_source(tmp_path, "def activate(ctx):\n    x = [1]\n    y = x.__len__()\n")))
    assert excinfo.value.line == 3 and excinfo.value.column == 11


def test_compile_errors_for_non_utf8_source(tmp_path):
    source = make_source(tmp_path, "def activate(ctx):\n    pass\n")
    source.main.write_bytes(b"x = '\xff\xfe'\n")
    with pytest.raises(PluginError) as excinfo:
        run(PythonRuntime().load(source))
    assert "UTF-8" in excinfo.value.message and str(tmp_path) not in excinfo.value.message


# ---------------------------------------------------------------------------
# deactivate and disposers
# ---------------------------------------------------------------------------

FAILING_DISPOSERS = """
class Step:
    def __init__(self, ctx, name, fail=False):
        self.ctx = ctx
        self.name = name
        self.fail = fail

    def dispose(self):
        self.ctx.storage.set("order", self.ctx.storage.get("order", []) + [self.name])
        if self.fail:
            raise RuntimeError("dispose of " + self.name + " failed")


def activate(ctx):
    ctx.subscriptions.append(Step(ctx, "a"))
    ctx.subscriptions.append(Step(ctx, "b", fail=True))
    ctx.subscriptions.append(Step(ctx, "c"))
"""


async def activate_error(source: PluginSource, gate: ActivationContext | None = None) -> PluginError:
    """Load ``source`` and return the PluginError its activation raises."""
    loaded = await PythonRuntime().load(source)
    try:
        with pytest.raises(PluginError) as excinfo:
            await loaded.activate(gate if gate is not None else RecordingGate("demo", version="2.1.0"))
        return excinfo.value
    finally:
        await loaded.close()


async def deactivate_error(source: PluginSource, gate: ActivationContext) -> PluginError:
    """Load and activate ``source``, then return the PluginError its
    deactivation raises."""
    loaded = await PythonRuntime().load(source)
    try:
        await loaded.activate(gate)
        with pytest.raises(PluginError) as excinfo:
            await loaded.deactivate()
        return excinfo.value
    finally:
        await loaded.close()


def test_disposers_run_newest_first_even_when_one_fails(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="hostrt.runtime.python")
    gate = RecordingGate("demo", version="2.1.0")

    error = run(deactivate_error(make_source(tmp_path, FAILING_DISPOSERS), gate))
    assert gate.data["order"] == ["c", "b", "a"]
    assert gate.events == ["dispose_all"]
    assert error.reason == "RuntimeError: dispose of b failed" and error.line == 10
    assert any("dispose of b failed" in r.getMessage() for r in caplog.records)


def test_several_deactivate_failures_are_counted(tmp_path):
    source = FAILING_DISPOSERS.replace('Step(ctx, "c")', 'Step(ctx, "c", fail=True)') + (
        "\n\ndef deactivate(ctx):\n    raise ValueError('deactivate failed')\n"
    )
    gate = RecordingGate("demo", version="2.1.0")

    error = run(deactivate_error(make_source(tmp_path, source), gate))
    assert "3 errors during deactivate; first: ValueError: deactivate failed" in error.message
    assert gate.data["order"] == ["c", "b", "a"] and gate.events == ["dispose_all"]


def test_subscriptions_only_take_disposables(tmp_path):
    source = "def activate(ctx):\n    ctx.subscriptions.append(42)\n"

    assert "expects an object with a dispose() method" in run(activate_error(make_source(tmp_path, source))).message


def test_deactivate_without_activate_does_nothing(tmp_path):
    async def main() -> None:
        loaded = await PythonRuntime().load(make_source(tmp_path, "def activate(ctx):\n    pass\n"))
        await loaded.deactivate()
        await loaded.close()

    run(main())


# ---------------------------------------------------------------------------
# containment, print, gate errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where, source",
    [
        ("top level", "raise SystemExit(2)\n"),
        ("activate", "def activate(ctx):\n    raise SystemExit(2)\n"),
        ("deactivate", "def activate(ctx):\n    pass\n\ndef deactivate(ctx):\n    raise SystemExit(2)\n"),
        ("disposer", "class D:\n    def dispose(self):\n        raise KeyboardInterrupt\n\ndef activate(ctx):\n    ctx.subscriptions.append(D())\n"),
    ],
)
def test_system_exit_is_contained(tmp_path, where, source):
    async def main() -> PluginError:
        runtime = PythonRuntime()
        try:
            loaded = await runtime.load(make_source(tmp_path, source))
        except PluginError as exc:
            return exc
        try:
            await loaded.activate(RecordingGate("demo", version="2.1.0"))
            await loaded.deactivate()
        except PluginError as exc:
            return exc
        finally:
            await loaded.close()
        raise AssertionError("nothing was raised")

    error = run(main())
    assert type(error) is PluginError
    assert "raised by plugin code" in error.message and error.file == "demo/plugin.py"


def test_print_goes_to_the_plugin_logger(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="hostrt.plugins")
    source = """
    print("loading", 1)

    class Shout:
        def __str__(self):
            return "LOUD"

    def activate(ctx):
        print("a", "b", sep=":", end="!")
        print(Shout())
    """

    async def main() -> None:
        loaded = await PythonRuntime().load(make_source(tmp_path, source))
        await loaded.activate(RecordingGate("demo", version="2.1.0"))
        await loaded.close()

    run(main())
    messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("hostrt.plugins.demo", "INFO", "loading 1") in messages
    assert ("hostrt.plugins.demo", "INFO", "a:b!") in messages
    assert ("hostrt.plugins.demo", "INFO", "LOUD") in messages


def test_print_to_a_file_is_refused(tmp_path):
    source = "def activate(ctx):\n    print('x', file=ctx)\n"
    assert "print(file=...) is not supported" in run(activate_error(make_source(tmp_path, source))).message


def test_unexpected_host_errors_reach_plugins_as_internal_host_error(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="hostrt.runtime.python")
    gate = RecordingGate("demo", version="2.1.0")
    gate.fail_with = OSError(f"disk trouble at {tmp_path}/secret.db")
    source = """
    def activate(ctx):
        try:
            ctx.storage.get("k")
        except HostrtError as exc:
            ctx.storage.set("seen", [str(exc), exc.code])
    """

    async def main() -> None:
        loaded = await PythonRuntime().load(make_source(tmp_path, source))
        await loaded.activate(gate)
        await loaded.close()

    run(main())
    assert gate.data["seen"] == ["internal host error", "E_HOSTRT"]
    assert any("disk trouble" in (r.exc_text or "") + r.getMessage() for r in caplog.records)


def test_real_gate_capability_errors_reach_plugin_code_cleanly(tmp_path):
    store = Store(":memory:")
    grants = GrantManager(store, lambda plugin_id: [Capability("storage")])
    gate = ActivationContext(plugin_id="demo", plugin_version="2.1.0", store=store, grants=grants)
    source = """
    def activate(ctx):
        try:
            ctx.storage.set("x", 1)
        except CapabilityError as exc:
            ctx.log.warn("refused: " + str(exc), {"code": exc.code})
        ctx.storage.get("x")
    """

    try:
        error = run(activate_error(make_source(tmp_path, source), gate))
    finally:
        store.close()
    assert error.reason == "CapabilityError: plugin 'demo' lacks capability 'storage'"
    assert error.line == 6
    assert_clean_traceback(error, tmp_path)


# ---------------------------------------------------------------------------
# the host-side authority and the last line of defence
# ---------------------------------------------------------------------------


def test_host_judges_the_deadline_even_when_plugin_code_returns(tmp_path):
    # One C call (counting through ten million items, ~0.25 s) runs past
    # the 50 ms budget but returns before the grace period ends: no tick
    # notices, the host does.
    source = """
    def activate(ctx):
        ([0] * 10**7).count(0.5)
        ctx.storage.set("returned", True)
    """

    async def main() -> PluginError:
        loaded = await PythonRuntime(grace_s=5.0).load(make_source(tmp_path, source, timeout_ms=50))
        try:
            with pytest.raises(BudgetExceededError) as excinfo:
                await loaded.activate(RecordingGate("demo", version="2.1.0"))
            return excinfo.value
        finally:
            await loaded.close()

    error = run(main())
    assert error.code == "E_TIMEOUT" and "50 ms" in error.message


def test_a_thread_stuck_outside_plugin_code_poisons_the_plugin(tmp_path):
    # The plugin's thread blocks in a call no budget check can interrupt
    # (here a host call waiting on a lock, as a busy database would). The
    # awaiting side gives up after timeout + grace, the loop stays
    # responsive, and the plugin is stopped for good.
    release = threading.Event()
    gate = RecordingGate("demo", version="2.1.0")

    def blocked_get(key: str, default: Any = None) -> Any:
        release.wait(10)
        return default

    gate.storage_get = blocked_get  # type: ignore[method-assign]
    source = """
    def activate(ctx):
        ctx.storage.get("k")
    """

    async def main() -> tuple[BudgetExceededError, float, int, BudgetExceededError]:
        loaded = await PythonRuntime(grace_s=0.2).load(make_source(tmp_path, source, timeout_ms=100))
        ticks = 0

        async def heartbeat() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(heartbeat())
        start = time.monotonic()
        try:
            with pytest.raises(BudgetExceededError) as first:
                await loaded.activate(gate)
            elapsed = time.monotonic() - start
            assert loaded.poisoned
            start = time.monotonic()
            with pytest.raises(BudgetExceededError) as later:
                await loaded.call(print)
            assert time.monotonic() - start < 0.05  # fails at once
            return first.value, elapsed, ticks, later.value
        finally:
            beat.cancel()
            release.set()
            await loaded.close()

    first, elapsed, ticks, later = run(main())
    assert "stuck in a call the sandbox cannot interrupt" in first.message
    assert 0.3 <= elapsed < 1.0
    assert ticks >= 10  # the event loop kept running
    assert "plugin is stopped" in later.message


def test_load_runs_the_top_level_under_the_budget(tmp_path):
    with pytest.raises(BudgetExceededError) as excinfo:
        run(PythonRuntime().load(make_source(tmp_path, "while True:\n    pass\n", timeout_ms=100)))
    assert excinfo.value.line in (1, 2)
    time.sleep(0.05)
    assert plugin_threads("demo") == []


def test_deep_c_recursion_does_not_crash_the_host(tmp_path):
    """Some C code recurses with no recursion check: pulling from a chain of
    iterators a million deep, hashing a tuple nested a million deep. On a
    default thread stack that kills the process (SIGSEGV). Plugin threads
    get a stack large enough for what a budget can build; hashing such a
    tuple is refused before C runs (it nests past MAX_WALK_DEPTH)."""
    import subprocess
    import sys
    import textwrap

    plugin = tmp_path / "plugins" / "deep-tuple"
    plugin.mkdir(parents=True)
    (plugin / "plugin.json").write_text(
        '{"schemaVersion": 1, "id": "deep-tuple", "name": "d", "version": "1.0.0", '
        '"runtime": "python", "limits": {"timeoutMs": 4000}}'
    )
    (plugin / "plugin.py").write_text(textwrap.dedent("""
        def activate(ctx):
            t = ()
            for i in range(1000000):
                t = (t,)
            try:
                hash(t)
            except MemoryError as exc:
                ctx.log.info("hash refused: " + str(exc))
            it = iter([5])
            for i in range(500000):
                it = map(abs, it)
            ctx.log.info("chain " + str(next(it)))
    """))
    host_script = textwrap.dedent(f"""
        import asyncio, logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from hostrt import Host, HostPolicy
        async def main():
            async with Host({str(tmp_path / "plugins")!r}) as host:
                await host.discover()
                record = await host.activate("deep-tuple")
                print("STATE", record.state.value, record.error)
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", host_script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"host died with {out.returncode}: {out.stderr[-2000:]}"
    assert f"nests more than {MAX_WALK_DEPTH} levels deep" in out.stdout
    assert "chain 5" in out.stdout
    assert "STATE active" in out.stdout
