"""JavaScript runtime overhead, against bare mini-racer doing the same work.

Run with ``python bench/bench_js_runtime.py`` (or ``make bench``). Each case
measures hostrt and a named baseline in the same process (the memory case in
fresh subprocesses), alternating which of the two runs first in every round
so that drift of the machine (frequency scaling, other load) hits both
alike. Each case prints the medians of both, their ratio and the target from
the issue, ``MISSED`` where the target is not met, and the 95th percentile
on the line below; a summary follows. Missing a target is reported, not
treated as a failure: the exit status is 0 unless something crashes.

The cases:

1. **Cold activation** of a trivial plugin
   (``module.exports = {activate(ctx) {}}``). Timed twice in the same run:
   *full lifecycle* -- ``JavaScriptRuntime().load()`` + ``activate()`` +
   ``deactivate()`` + ``close()`` -- against creating a bare mini-racer
   context, evaluating the same source and freeing the context; and
   *load + activate*, with deactivate/close (and, in the baseline, freeing
   the context) outside the timed part. The bare context has no
   ``module``, so its script starts with ``var module = {exports: {}};``
   and ends by calling ``activate({})`` (same eval). The first run of both,
   which pays for V8's one-time process initialisation, is discarded.
2. **ctx.storage.get round trip** from JavaScript: an exported
   ``async loop(n)`` awaiting ``ctx.storage.get("k")`` n times, called with
   ``call_export``; per call = total / n. Baseline: an async Python function
   exposed with ``wrap_py_function`` and awaited n times from one eval in a
   bare context (its JSON result parsed in JavaScript).
3. **Host-to-plugin call**: ``call_export("handle", payload)`` with a
   ~400-byte JSON object, timed call by call, back to back (so a call also
   waits for any follow-up work the previous one left in the isolate),
   against ``MiniRacer.call("handle", payload)`` on a bare context holding
   the same function (synchronous on the loop thread, so timed the same
   way).
4. **Resident memory per active plugin**: in a fresh process, RSS (from
   ``/proc/self/statm``) before and after loading and activating 100 trivial
   plugins, each in its own isolate, after a warm-up plugin; baseline: 100
   bare mini-racer contexts that evaluated the same source. The target here
   is absolute (MB per plugin), the ratio only informative.

After the timings, one extra pass counts the scripts hostrt hands to V8 per
operation (the host/isolate hand-off is the dominant fixed cost).

Plugins get a generous timeout here (``timeout_ms`` 60 s): the storage loop
is one entry doing thousands of host calls, and the default 1 s limit is
about what 2,000 round trips take on a small machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from py_mini_racer import MiniRacer, mini_racer  # noqa: E402

from bench.common import Row, alternate, fmt_mb, print_report, quiesce, request_payload  # noqa: E402
from hostrt.capabilities import Capability  # noqa: E402
from hostrt.context import ActivationContext  # noqa: E402
from hostrt.grants import GrantManager  # noqa: E402
from hostrt.loader import plugin_source  # noqa: E402
from hostrt.manifest import load_manifest  # noqa: E402
from hostrt.runtimes.base import PluginSource, RuntimeLimits  # noqa: E402
from hostrt.runtimes.js import JavaScriptRuntime, LoadedJavaScriptPlugin  # noqa: E402
from hostrt.runtimes.js_engine import Isolate  # noqa: E402
from hostrt.store import Store  # noqa: E402

#: Rounds of case 1 (one hostrt and one baseline activation each).
ACTIVATION_ROUNDS = 80
#: Rounds of case 2, and storage round trips per run.
STORAGE_ROUNDS = 15
STORAGE_CALLS = 2000
#: Rounds of case 3, and calls per side per round.
CALL_ROUNDS = 30
CALLS_PER_ROUND = 100
#: Plugins (contexts) per memory measurement, and processes per side.
MEMORY_PLUGINS = 100
MEMORY_RUNS = 3

BENCH_LIMITS = RuntimeLimits(timeout_ms=60_000)
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

TRIVIAL_SOURCE = "module.exports = {activate(ctx) {}};\n"

#: What a bare context runs for the same source: it has no CommonJS
#: ``module``, and the plugin's activate is called in the same eval.
BARE_PRELUDE = "var module = {exports: {}};\n"
BARE_EPILOGUE = "\n;module.exports.activate({});\n"

HANDLER = "function (req) { return {ok: true, id: req.id, count: req.items.length}; }"

LOOP_SOURCE = f"""
let ctx = null;
module.exports = {{
  activate(c) {{ ctx = c; }},
  async loop(n) {{ for (let i = 0; i < n; i++) await ctx.storage.get("k"); }},
  async read() {{ return await ctx.storage.get("k"); }},
  handle: {HANDLER},
}};
"""

STORED_VALUE = {"value": 42, "tags": ["a", "b"]}
STORED_JSON = json.dumps(STORED_VALUE, separators=(",", ":"))


# -- plugins as the loader builds them ---------------------------------------------------


def write_plugin(root: Path, plugin_id: str, source: str, capabilities: list[str]) -> PluginSource:
    """Write ``plugin.json`` + ``plugin.js`` and describe them the way the
    host does (manifest validated, ``main`` resolved inside the folder)."""
    folder = root / plugin_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugin.json").write_text(json.dumps({
        "schemaVersion": 1,
        "id": plugin_id,
        "name": plugin_id.title(),
        "version": "1.0.0",
        "runtime": "javascript",
        "main": "plugin.js",
        "capabilities": capabilities,
    }))
    (folder / "plugin.js").write_text(source)
    return plugin_source(folder, load_manifest(folder), BENCH_LIMITS)


class Gates:
    """A real SQLite store and grant manager; hands out real gates."""

    def __init__(self, root: Path) -> None:
        self.store = Store(root / "bench.db")
        self.grants = GrantManager(self.store, lambda plugin_id: [Capability("storage")])

    def grant(self, plugin_id: str) -> None:
        self.grants.grant(plugin_id, "storage")

    def gate(self, source: PluginSource) -> ActivationContext:
        return ActivationContext(plugin_id=source.plugin_id, plugin_version=source.version,
                                 store=self.store, grants=self.grants)

    def close(self) -> None:
        self.store.close()


# -- 1. cold activation --------------------------------------------------------------


async def activation_cases(root: Path, gates: Gates) -> list[Row]:
    source = write_plugin(root, "trivial", TRIVIAL_SOURCE, ["storage"])
    gates.grant(source.plugin_id)
    bare_script = BARE_PRELUDE + TRIVIAL_SOURCE + BARE_EPILOGUE
    host_full: list[float] = []
    host_active: list[float] = []
    base_full: list[float] = []
    base_active: list[float] = []

    async def hostrt() -> None:
        gate = gates.gate(source)
        start = time.perf_counter()
        plugin = await JavaScriptRuntime().load(source)
        try:
            await plugin.activate(gate)
            active = time.perf_counter()
            await plugin.deactivate()
        finally:
            await plugin.close()
        end = time.perf_counter()
        gate.close()
        host_active.append(active - start)
        host_full.append(end - start)

    async def bare() -> None:
        start = time.perf_counter()
        with mini_racer(asyncio.get_running_loop()) as mr:
            await mr.eval_cancelable(bare_script)
            active = time.perf_counter()
        end = time.perf_counter()
        base_active.append(active - start)
        base_full.append(end - start)

    await alternate(ACTIVATION_ROUNDS + 1, hostrt, bare)
    # The first run of each pays for V8's process-wide initialisation.
    for samples in (host_full, host_active, base_full, base_active):
        del samples[0]
    return [
        Row("activation (full)", "cold activation, load+activate+deactivate+close",
            "bare mini-racer, create+eval+free", base_full, host_full, 2.0),
        Row("activation (no close)", "cold activation, load+activate (close excluded)",
            "bare mini-racer, create+eval", base_active, host_active, 2.0),
    ]


# -- 2. ctx.storage.get round trip ------------------------------------------------------


async def storage_case(root: Path, gates: Gates) -> Row:
    source = write_plugin(root, "looper", LOOP_SOURCE, ["storage"])
    gates.grant(source.plugin_id)
    gate = gates.gate(source)
    gate.storage_set("k", STORED_VALUE)
    host: list[float] = []
    base: list[float] = []

    async def answer(*args: Any) -> str:
        return STORED_JSON

    plugin = await JavaScriptRuntime().load(source)
    try:
        await plugin.activate(gate)
        if await plugin.call_export("read") != STORED_VALUE:
            raise SystemExit("storage case: the plugin read something else than was stored")
        with mini_racer(asyncio.get_running_loop()) as mr:
            async with mr.wrap_py_function(answer) as js_answer:
                mr.eval("x => { globalThis.f = x; }")(js_answer)
                loop_script = (f"(async () => {{ let v; for (let i = 0; i < {STORAGE_CALLS}; i++) "
                               "v = JSON.parse(await f('k')); return JSON.stringify(v); })()")

                async def bare() -> None:
                    start = time.perf_counter()
                    promise = await mr.eval_cancelable(loop_script)
                    result = await promise
                    host_s = time.perf_counter() - start
                    if result != STORED_JSON:
                        raise SystemExit(f"storage case: the bare loop returned {result!r}")
                    base.append(host_s / STORAGE_CALLS)

                async def hostrt() -> None:
                    start = time.perf_counter()
                    await plugin.call_export("loop", STORAGE_CALLS)
                    host.append((time.perf_counter() - start) / STORAGE_CALLS)

                await bare()  # warm both up (JIT, page cache of the store)
                await hostrt()
                host.clear()
                base.clear()
                await alternate(STORAGE_ROUNDS, hostrt, bare)
        await plugin.deactivate()
    finally:
        await plugin.close()
        gate.close()
    return Row("storage.get", "ctx.storage.get round trip (per call)", "bare wrap_py_function round trip",
               base, host, 0.4)


# -- 3. host-to-plugin call ---------------------------------------------------------------


async def call_case(root: Path, gates: Gates) -> Row:
    source = write_plugin(root, "handler", LOOP_SOURCE, ["storage"])
    gates.grant(source.plugin_id)
    gate = gates.gate(source)
    payload = request_payload()
    expected = {"ok": True, "id": payload["id"], "count": len(payload["items"])}
    host: list[float] = []
    base: list[float] = []

    plugin = await JavaScriptRuntime().load(source)
    try:
        await plugin.activate(gate)
        with mini_racer(asyncio.get_running_loop()) as mr:
            mr.eval(f"var handle = {HANDLER};")
            if mr.call("handle", payload) != expected or await plugin.call_export("handle", payload) != expected:
                raise SystemExit("call case: a handler returned something unexpected")

            async def bare() -> None:
                call = mr.call
                clock = time.perf_counter
                for _ in range(CALLS_PER_ROUND):
                    start = clock()
                    call("handle", payload)
                    base.append(clock() - start)

            async def hostrt() -> None:
                call = plugin.call_export
                clock = time.perf_counter
                for _ in range(CALLS_PER_ROUND):
                    start = clock()
                    await call("handle", payload)
                    host.append(clock() - start)

            await bare()  # warm-up
            await hostrt()
            host.clear()
            base.clear()
            await alternate(CALL_ROUNDS, hostrt, bare)
        await plugin.deactivate()
    finally:
        await plugin.close()
        gate.close()
    return Row("call_export", "call_export with a ~400-byte JSON payload (per call)", "bare mr.call",
               base, host, 1.5)


# -- 4. resident memory (one fresh process per measurement) ----------------------------------


def resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE


async def memory_child(kind: str) -> dict[str, float]:
    """Runs in its own process: RSS growth per active plugin (``hostrt``) or
    per bare context (``bare``), everything closed before returning."""
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as bare_contexts:
        root = Path(tmp)
        gates = Gates(root)
        source = write_plugin(root, "trivial", TRIVIAL_SOURCE, ["storage"])
        gates.grant(source.plugin_id)
        plugins: list[LoadedJavaScriptPlugin] = []
        gate_list: list[ActivationContext] = []
        bare_script = BARE_PRELUDE + TRIVIAL_SOURCE + BARE_EPILOGUE

        async def one() -> None:
            if kind == "hostrt":
                gate = gates.gate(source)
                gate_list.append(gate)
                plugin = await JavaScriptRuntime().load(source)
                plugins.append(plugin)
                await plugin.activate(gate)
            else:
                mr: MiniRacer = bare_contexts.enter_context(mini_racer(loop))
                await mr.eval_cancelable(bare_script)

        try:
            await one()  # warm-up: V8's process-wide initialisation
            await quiesce()
            before = resident_bytes()
            for _ in range(MEMORY_PLUGINS):
                await one()
            await asyncio.sleep(0.1)
            gc.collect()
            after = resident_bytes()
        finally:
            for plugin in plugins:
                with contextlib.suppress(Exception):
                    await plugin.deactivate()
                await plugin.close()
            for gate in gate_list:
                gate.close()
            gates.close()
        # The bare contexts are freed here, by the ExitStack.
    return {"before_mb": before / 2**20, "after_mb": after / 2**20,
            "per_plugin_mb": (after - before) / 2**20 / MEMORY_PLUGINS}


def run_memory_child(kind: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--memory-child", kind],
        capture_output=True, text=True, timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement ({kind}) failed with status {done.returncode}:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_case() -> Row:
    host: list[float] = []
    base: list[float] = []
    for i in range(MEMORY_RUNS):
        for kind in (("hostrt", "bare") if i % 2 == 0 else ("bare", "hostrt")):
            (host if kind == "hostrt" else base).append(run_memory_child(kind)["per_plugin_mb"])
    return Row("memory", f"resident memory per active plugin ({MEMORY_PLUGINS} isolates)",
               "bare mini-racer context", base, host, 2.0, absolute=True, fmt=fmt_mb)


# -- diagnostics: scripts handed to V8 per operation ----------------------------------------------


async def eval_counts(root: Path, gates: Gates) -> list[str]:
    """Counts the scripts hostrt posts to V8 per operation (each one is a
    hand-off to the isolate's thread and back), by wrapping
    ``Isolate.post`` for the duration of this pass only."""
    counter = {"evals": 0}
    original = Isolate.post

    def counting(self: Isolate, code: str) -> Any:
        counter["evals"] += 1
        return original(self, code)

    source = write_plugin(root, "counted", LOOP_SOURCE, ["storage"])
    gates.grant(source.plugin_id)
    gate = gates.gate(source)
    gate.storage_set("k", STORED_VALUE)
    payload = request_payload()
    calls = 100

    async def count(work: Callable[[], Awaitable[Any]]) -> int:
        await quiesce()
        counter["evals"] = 0
        await work()
        await quiesce()  # include the trailing flush the operation caused
        return counter["evals"]

    Isolate.post = counting  # type: ignore[method-assign]
    plugin: LoadedJavaScriptPlugin | None = None
    try:
        async def load_and_activate() -> None:
            nonlocal plugin
            plugin = await JavaScriptRuntime().load(source)
            await plugin.activate(gate)

        activation = await count(load_and_activate)
        assert plugin is not None
        loaded = plugin

        async def handle_calls() -> None:
            for _ in range(calls):
                await loaded.call_export("handle", payload)

        storage = await count(lambda: loaded.call_export("loop", calls))
        handle = await count(handle_calls)
        await loaded.deactivate()
    finally:
        Isolate.post = original  # type: ignore[method-assign]
        if plugin is not None:
            await plugin.close()
        gate.close()
    return [
        f"    load + activate: {activation} scripts (bare baseline: 1)",
        f"    ctx.storage.get round trip: {(storage - 1) / calls:.2f} scripts per call "
        f"({storage} for one call_export doing {calls})",
        f"    call_export: {handle / calls:.2f} scripts per call (mr.call: 1 synchronous eval)",
    ]


# -- main -------------------------------------------------------------------------------


async def timed_cases() -> tuple[list[Row], list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        gates = Gates(root)
        try:
            rows = await activation_cases(root, gates)
            rows.append(await storage_case(root, gates))
            rows.append(await call_case(root, gates))
            counts = await eval_counts(root, gates)
        finally:
            gates.close()
    return rows, counts


def main() -> int:
    started = time.perf_counter()
    rows, counts = asyncio.run(timed_cases())
    rows.append(memory_case())
    print("scripts hostrt evaluates in V8 per operation:")
    for line in counts:
        print(line)
    print_report(rows, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        print(json.dumps(asyncio.run(memory_child(sys.argv[2]))))
        sys.exit(0)
    sys.exit(main())
