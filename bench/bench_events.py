"""Event delivery through the real host, against named baselines.

Run with ``python bench/bench_events.py`` (or ``make bench``). Every case
measures hostrt and its baseline in the same process, alternating which
runs first in each round; medians, ratio, target and p95 are printed as in
the other benchmarks, and a missed target is reported, not an error.

The payload is the ~400-byte object of :func:`bench.common.request_payload`,
declared with :data:`bench.common.REQUEST_SCHEMA` (so validation is on:
every emit checks size and schema before delivery). Each subscriber's
handler does the same trivial work: count the payload's items.

1. **host.emit to 10 Python subscribers** (``await host.emit(...)``, which
   returns once all ten handled the event) against **pluggy** calling 10
   hook implementations with the same payload. Target: at most 3x.
   A third line times the floor under the first: handing a call to each of
   10 plugin threads and back (``run_in_executor`` on one-thread
   executors, what hostrt does per Python plugin) without hostrt.
2. **host.emit to 10 JavaScript subscribers** against **bare mini-racer**:
   ``MiniRacer.call`` of the same handler with the same payload on 10 bare
   contexts, one after the other. No target in the issue; the ratio is
   printed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pluggy  # noqa: E402
from py_mini_racer import MiniRacer  # noqa: E402

from bench.common import REQUEST_SCHEMA, Row, alternate, print_report, request_payload  # noqa: E402
from hostrt import Host, HostPolicy  # noqa: E402

SUBSCRIBERS = 10
#: Rounds per case, and emits per side in each round.
ROUNDS = 20
PER_ROUND = 25

PY_SUBSCRIBER = """
count = [0]

def activate(ctx):
    def on_request(payload):
        count[0] += len(payload["items"])
    ctx.events.on("bench.request", on_request)
"""

JS_HANDLER = "function (payload) { count += payload.items.length; return count; }"
JS_SUBSCRIBER = f"""
let count = 0;
module.exports = {{
  activate(ctx) {{ ctx.events.on("bench.request", {JS_HANDLER}); }},
}};
"""


def write_subscribers(root: Path, runtime: str) -> None:
    for i in range(SUBSCRIBERS):
        folder = root / f"sub-{i:02d}"
        folder.mkdir(parents=True)
        main = "plugin.py" if runtime == "python" else "plugin.js"
        (folder / "plugin.json").write_text(json.dumps({
            "schemaVersion": 1, "id": folder.name, "name": folder.name, "version": "1.0.0",
            "runtime": runtime, "main": main, "capabilities": ["events.subscribe:bench.*"],
        }))
        (folder / main).write_text(PY_SUBSCRIBER if runtime == "python" else JS_SUBSCRIBER)


async def started_host(root: Path, runtime: str) -> Host:
    plugins = root / runtime
    write_subscribers(plugins, runtime)
    host = Host(plugins, root / f"{runtime}.db", policy=HostPolicy())
    host.declare_event("bench.request", schema=REQUEST_SCHEMA, max_payload_bytes=4096)
    await host.discover()
    for plugin_id in host.plugins:
        host.grants.grant_requested(plugin_id)
    states = await host.activate_all()
    assert all(state.value == "active" for state in states.values()), states
    return host


async def timed(samples: list[float], work: Any) -> None:
    for _ in range(PER_ROUND):
        start = time.perf_counter()
        await work()
        samples.append(time.perf_counter() - start)


def pluggy_manager() -> pluggy.PluginManager:
    spec = pluggy.HookspecMarker("bench")
    impl = pluggy.HookimplMarker("bench")

    class Spec:
        @spec
        def on_request(self, payload: dict[str, Any]) -> None: ...

    manager = pluggy.PluginManager("bench")
    manager.add_hookspecs(Spec)
    for i in range(SUBSCRIBERS):
        class Subscriber:
            count = 0

            @impl
            def on_request(self, payload: dict[str, Any]) -> None:
                self.count += len(payload["items"])

        manager.register(Subscriber(), name=f"sub-{i}")
    return manager


async def python_cases(root: Path) -> list[Row]:
    payload = request_payload()
    host = await started_host(root, "python")
    manager = pluggy_manager()
    workers = [ThreadPoolExecutor(max_workers=1) for _ in range(SUBSCRIBERS)]
    loop = asyncio.get_running_loop()
    host_samples: list[float] = []
    pluggy_samples: list[float] = []
    hop_samples: list[float] = []

    async def emit() -> None:
        report = await host.emit("bench.request", payload)
        assert len(report.delivered) == SUBSCRIBERS, report

    async def hooks() -> None:
        manager.hook.on_request(payload=payload)

    async def hops() -> None:
        await asyncio.gather(*(loop.run_in_executor(w, len, payload) for w in workers))

    try:
        await timed([], emit)  # warm-up: first compilations, first thread starts
        await alternate(ROUNDS, lambda: timed(host_samples, emit), lambda: timed(pluggy_samples, hooks))
        await alternate(ROUNDS, lambda: timed([], emit), lambda: timed(hop_samples, hops))
    finally:
        await host.close()
        for worker in workers:
            worker.shutdown()
    return [
        Row("python-emit", f"host.emit to {SUBSCRIBERS} Python subscribers", f"pluggy, {SUBSCRIBERS} hooks",
            pluggy_samples, host_samples, 3.0),
        Row("python-floor", f"host.emit to {SUBSCRIBERS} Python subscribers",
            f"bare hand-off to {SUBSCRIBERS} plugin threads and back", hop_samples, host_samples, None),
    ]


async def javascript_case(root: Path) -> Row:
    payload = request_payload()
    host = await started_host(root, "javascript")
    contexts = []
    for _ in range(SUBSCRIBERS):
        context = MiniRacer()
        context.eval(f"var count = 0; var handle = {JS_HANDLER};")
        contexts.append(context)
    host_samples: list[float] = []
    bare_samples: list[float] = []

    async def emit() -> None:
        report = await host.emit("bench.request", payload)
        assert len(report.delivered) == SUBSCRIBERS, report

    async def bare() -> None:
        for context in contexts:
            context.call("handle", payload)

    try:
        await timed([], emit)
        await alternate(ROUNDS, lambda: timed(host_samples, emit), lambda: timed(bare_samples, bare))
    finally:
        await host.close()
        for context in contexts:
            context.close()
    return Row("js-emit", f"host.emit to {SUBSCRIBERS} JavaScript subscribers",
               f"bare mini-racer, MiniRacer.call on {SUBSCRIBERS} contexts", bare_samples, host_samples, None)


async def all_cases() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = await python_cases(root)
        rows.append(await javascript_case(root))
    return rows


def main() -> int:
    started = time.perf_counter()
    rows = asyncio.run(all_cases())
    print_report(rows, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
