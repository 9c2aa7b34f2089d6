"""Python plugin sandbox overhead, against plain Python running the same source.

Run with ``python bench/bench_python_sandbox.py`` (or ``make bench``). Each
case runs the same source text twice: compiled and executed by plain
``compile``/``exec`` with the real builtins (the baseline), and loaded as a
plugin through ``PythonRuntime`` and run as a budgeted entry (hostrt). The
table shows the median of several runs of each and their ratio against the
target from the issue (``-`` where the issue sets none). No timing is
asserted anywhere in the test suite; this script is where overhead is
watched.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.units import fmt_time  # noqa: E402
from hostrt.capabilities import Capability  # noqa: E402
from hostrt.context import ActivationContext  # noqa: E402
from hostrt.grants import GrantManager  # noqa: E402
from hostrt.runtimes.base import PluginSource, RuntimeLimits  # noqa: E402
from hostrt.runtimes.python import PythonRuntime  # noqa: E402
from hostrt.store import Store  # noqa: E402

REPEATS = 7

INPLACE_ADD = """
def work():
    total = 0
    for i in range(1000000):
        total += i
    return total
"""

ATTRIBUTE_READS = """
class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm1(self):
        return abs(self.x) + abs(self.y)


class Box:
    def __init__(self, low, high):
        self.low = low
        self.high = high


def work():
    boxes = [Box(Point(i, -i), Point(i + 3, i + 5)) for i in range(1000)]
    total = 0
    for _ in range(60):
        for box in boxes:
            low = box.low
            high = box.high
            total += high.x - low.x
            total += high.y - low.y
            total += low.norm1()
    return total
"""

BUILD_CONTAINERS = """
def work():
    d = {}
    items = []
    for i in range(200000):
        d[i] = i * 2
        items.append(str(i))
    squares = [x * 3 for x in range(200000)]
    index = {k: v for k, v in d.items() if k % 3 == 0}
    return len(d), len(items), len(squares), len(index)
"""

# Every comparison, key and sort here is measured by the walk guards
# (hostrt/runtimes/pysandbox/walks.py) before C runs it.
COMPARE_AND_LOOK_UP = """
def work():
    records = [(i % 97, str(i), (i, i + 1)) for i in range(20000)]
    index = {}
    for key, name, pair in records:
        index[key, name] = pair
    hits = 0
    for key, name, pair in records:
        if index[key, name] == pair:
            hits += 1
        if index.get((key, name)) != pair or (key, name) not in index:
            hits -= 1
    ordered = sorted(records)
    seen = set(pair for _, _, pair in records)
    return hits, ordered[0], ordered[-1], len(seen)
"""

TRIVIAL_PLUGIN = """
def activate(ctx):
    ctx.log.info("hello")
"""

STORAGE_READS = """
def work(ctx):
    storage = ctx.storage
    for _ in range(2000):
        storage.get("answer")
"""


class QuietLog:
    """Stands in for ctx.log / the gate's log in baselines."""

    def info(self, *args: Any) -> None:
        pass


def median_time(fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEATS):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def median_time_async(fn: Callable[[], Awaitable[Any]]) -> float:
    times = []
    for _ in range(REPEATS):
        gc.collect()
        start = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "plain"}
    exec(compile(source, "plain.py", "exec"), namespace)
    return namespace


def write_plugin(root: Path, plugin_id: str, source: str, timeout_ms: int = 60000) -> PluginSource:
    folder = root / plugin_id
    folder.mkdir(parents=True, exist_ok=True)
    main = folder / "plugin.py"
    main.write_text("def activate(ctx):\n    pass\n" + textwrap.dedent(source))
    return PluginSource(
        plugin_id, "1.0.0", folder.resolve(), main.resolve(), f"{plugin_id}/plugin.py",
        RuntimeLimits(timeout_ms=timeout_ms),
    )


class Row:
    def __init__(self, case: str, baseline: str, base_s: float, host_s: float, target: float | None) -> None:
        self.case, self.baseline, self.base_s, self.host_s, self.target = case, baseline, base_s, host_s, target

    @property
    def ratio(self) -> float:
        return self.host_s / self.base_s

    def status(self) -> str:
        if self.target is None:
            return "INFO"
        return "OK" if self.ratio <= self.target else "OVER"


async def code_case(root: Path, runtime: PythonRuntime, case: str, source: str, target: float | None) -> Row:
    work = plain(source)["work"]
    base = median_time(work)
    loaded = await runtime.load(write_plugin(root, case.split()[0].lower().replace("+=", "add"), source))
    try:
        plugin_work = loaded._sandbox.globals["work"]  # the plugin's own function
        if await loaded.call(plugin_work) != work():
            raise SystemExit(f"{case}: the sandboxed result differs from plain Python")
        host = await median_time_async(lambda: loaded.call(plugin_work))
    finally:
        await loaded.close()
    return Row(case, "plain exec", base, host, target)


async def activation_case(root: Path, runtime: PythonRuntime) -> Row:
    class Gate:
        plugin_id = "trivial"
        plugin_version = "1.0.0"
        previous_state_json = None  # a first activation, not a reload

        def log(self, level: str, message: str, fields: Any = None) -> None:
            pass

        def dispose_all(self) -> None:
            pass

    class Ctx:
        log = QuietLog()

    def baseline() -> None:
        namespace = plain(TRIVIAL_PLUGIN)
        namespace["activate"](Ctx())

    source = write_plugin(root, "trivial", "")
    source.main.write_text(TRIVIAL_PLUGIN)
    closers: list[Any] = []

    async def hostrt_activate() -> None:
        loaded = await runtime.load(source)
        await loaded.activate(Gate())
        closers.append(loaded)

    base = median_time(baseline)
    host = await median_time_async(hostrt_activate)
    for loaded in closers:
        await loaded.close()
    return Row("load + activate trivial plugin", "plain exec", base, host, None)


async def storage_cases(root: Path, runtime: PythonRuntime) -> list[Row]:
    db = root / "bench.db"
    store = Store(db)
    grants = GrantManager(store, lambda plugin_id: [Capability("storage")])
    grants.grant("reader", "storage")
    gate = ActivationContext(plugin_id="reader", plugin_version="1.0.0", store=store, grants=grants)
    gate.storage_set("answer", {"value": 42, "tags": ["a", "b"]})
    calls = 2000

    plain_dict = {"answer": {"value": 42, "tags": ["a", "b"]}}

    def dict_reads() -> None:
        get = plain_dict.get
        for _ in range(calls):
            get("answer")

    conn = sqlite3.connect(db)

    def sqlite_reads() -> None:
        execute = conn.execute
        for _ in range(calls):
            execute("SELECT value_json FROM kv WHERE plugin_id = ? AND key = ?", ("reader", "answer")).fetchone()

    def gate_reads() -> None:
        get = gate.storage_get
        for _ in range(calls):
            get("answer")

    per_dict = median_time(dict_reads) / calls
    per_sqlite = median_time(sqlite_reads) / calls
    per_gate = median_time(gate_reads) / calls
    conn.close()
    loaded = await runtime.load(write_plugin(root, "reader", STORAGE_READS))
    try:
        await loaded.activate(gate)
        work = loaded._sandbox.globals["work"]
        facade = loaded._ctx
        host = await median_time_async(lambda: loaded.call(work, facade)) / calls
    finally:
        await loaded.close()
        store.close()
    return [
        Row("ctx.storage.get (per call)", "dict lookup", per_dict, host, None),
        Row("ctx.storage.get (per call)", "SQLite SELECT", per_sqlite, host, None),
        Row("ctx.storage.get (per call)", "gate, host-side", per_gate, host, None),
    ]


async def main() -> int:
    runtime = PythonRuntime()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = [
            await code_case(root, runtime, "+= loop (1,000,000)", INPLACE_ADD, 3.0),
            await code_case(root, runtime, "attribute reads", ATTRIBUTE_READS, 3.0),
            await code_case(root, runtime, "list/dict building", BUILD_CONTAINERS, 3.0),
            await code_case(root, runtime, "comparisons, keys, sorting", COMPARE_AND_LOOK_UP, None),
            await activation_case(root, runtime),
            *await storage_cases(root, runtime),
        ]
    header = f"{'case':34} {'baseline':14} {'baseline med':>13} {'hostrt med':>13} {'ratio':>8} {'target':>7}  status"
    print(header)
    print("-" * len(header))
    for row in rows:
        target = "-" if row.target is None else f"<={row.target:g}x"
        print(
            f"{row.case:34} {row.baseline:14} {fmt_time(row.base_s):>13} {fmt_time(row.host_s):>13} "
            f"{row.ratio:7.2f}x {target:>7}  {row.status()}"
        )
    return 1 if any(row.status() == "OVER" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
