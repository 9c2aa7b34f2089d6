"""Hot reload: from saving a plugin's file to its new version being active.

Run with ``python bench/bench_reload.py`` (or ``make bench``). Three cases
run in the same process, interleaved round by round (the order rotates
every round, so drift of the machine hits all three alike); every sample
starts just before a whole file is written the way an editor saves it
(open, write, close) and samples never overlap: each waits for the
previous one's result, then a short fixed settle outside the timed span.

1. **Raw watchdog** (the baseline): a bare ``watchdog`` ``Observer``
   watching a temporary folder recursively; a sample ends when the
   handler's first event for the written path has reached the asyncio loop
   through ``call_soon_threadsafe`` (hostrt's watcher reports on the loop
   the same way). Like hostrt's handler it skips ``opened`` and
   ``closed_no_write`` events, which a save also produces and which change
   nothing.
2. **hostrt, Python plugin**: a real ``Host`` with one Python plugin whose
   ``version`` command answers its tag and how many reloads its state
   lived through (handed over by ``deactivate``). Inside
   ``host.watch(debounce_s=0.05, on_reload=...)`` a new ``plugin.py`` with
   a new tag is written; a sample ends when ``on_reload`` receives the
   ``RELOADED`` result for the plugin, i.e. when the new version is active.
   Outside the timed span, ``host.invoke`` checks that the new tag answers
   and that the state came along.
3. **hostrt, JavaScript plugin**: the same with ``plugin.js``.

Target, for each hostrt case: median save-to-active at most the raw
watchdog median + the debounce (0.05 s) + 30 ms. Each row also prints its
difference from the raw median and the median time hostrt itself reports
for the reload (``ReloadResult.seconds``: reading the folder, loading and
compiling the new version, the swap), so the latency splits into watchdog
delivery, debounce, reload and the rest (the debounce timer's wake-up,
bookkeeping, the audit record). A missed target is reported, not an error.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from watchdog.events import FileSystemEvent, FileSystemEventHandler  # noqa: E402
from watchdog.observers import Observer  # noqa: E402

from bench.common import Row, p95, print_report, quiesce  # noqa: E402
from bench.units import fmt_time  # noqa: E402
from hostrt import Host, HostPolicy, ReloadOutcome, ReloadResult  # noqa: E402

#: Samples per case (after WARMUP discarded ones).
SAMPLES = 60
WARMUP = 3
DEBOUNCE_S = 0.05
#: What the target allows beyond watchdog delivery and the debounce.
ALLOWANCE_S = 0.030
#: Pause after each sample, outside the timed span, for stray events.
SETTLE_S = 0.02
#: A sample that takes longer than this is an error, not a slow sample.
SAMPLE_TIMEOUT_S = 10.0

SOURCES = {
    "python": """
STATE = {{"reloads": 0}}

def activate(ctx):
    previous = ctx.previous_state
    if previous is not None:
        STATE["reloads"] = previous["reloads"] + 1
    def version(params):
        return {{"tag": "{tag}", "reloads": STATE["reloads"]}}
    ctx.commands.register("version", version)

def deactivate(ctx):
    return {{"reloads": STATE["reloads"]}}
""",
    "javascript": """
let reloads = 0;
exports.activate = (ctx) => {{
  if (ctx.previousState !== undefined) reloads = ctx.previousState.reloads + 1;
  ctx.subscriptions.push(ctx.commands.register("version", () => ({{ tag: "{tag}", reloads }})));
}};
exports.deactivate = () => ({{ reloads }});
""",
}
MAIN = {"python": "plugin.py", "javascript": "plugin.js"}
PLUGIN_ID = {"python": "reload-py", "javascript": "reload-js"}


def source(runtime: str, tag: str) -> str:
    return textwrap.dedent(SOURCES[runtime]).format(tag=tag).lstrip("\n")


def save(path: Path, text: str) -> None:
    """Write the whole file, as an editor saves it."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_plugin(plugins: Path, runtime: str) -> Path:
    folder = plugins / PLUGIN_ID[runtime]
    folder.mkdir(parents=True)
    (folder / "plugin.json").write_text(json.dumps({
        "schemaVersion": 1, "id": folder.name, "name": folder.name, "version": "1.0.0",
        "runtime": runtime, "main": MAIN[runtime], "capabilities": [], "commands": [{"name": "version"}],
    }))
    save(folder / MAIN[runtime], source(runtime, "v0"))
    return folder / MAIN[runtime]


class LatencyRow(Row):
    """A hostrt latency against the raw watchdog latency: the target is the
    raw median plus a fixed allowance (debounce + ALLOWANCE_S)."""

    def __init__(self, key: str, case: str, baseline: str, base: list[float], host: list[float],
                 reported: list[float]) -> None:
        super().__init__(key, case, baseline, base, host, statistics.median(base) + DEBOUNCE_S + ALLOWANCE_S,
                         absolute=True)
        self.reported = reported

    def target_text(self) -> str:
        return (f"<= raw median + debounce {DEBOUNCE_S * 1000:g} ms + {ALLOWANCE_S * 1000:g} ms "
                f"= {self.fmt(self.target or 0.0)}")

    def lines(self) -> list[str]:
        line = (f"{self.case}: hostrt median {self.fmt(self.host_median)}, "
                f"baseline ({self.baseline}) median {self.fmt(self.base_median)}, "
                f"difference +{self.fmt(self.host_median - self.base_median)} (target {self.target_text()})")
        if not self.met:
            line += " MISSED"
        reload_s = statistics.median(self.reported)
        rest = self.host_median - self.base_median - DEBOUNCE_S - reload_s
        return [
            line,
            f"    p95: hostrt {self.fmt(p95(self.host))}, baseline {self.fmt(p95(self.base))}; "
            f"{len(self.host)} hostrt / {len(self.base)} baseline samples",
            f"    split of the median: watchdog delivery {self.fmt(self.base_median)} (raw median) "
            f"+ debounce {self.fmt(DEBOUNCE_S)} + reload {self.fmt(reload_s)} "
            f"(ReloadResult.seconds median, p95 {self.fmt(p95(self.reported))}) + rest {self.fmt(rest)}",
        ]


class _RawHandler(FileSystemEventHandler):
    def __init__(self, loop: asyncio.AbstractEventLoop, on_loop: Callable[[str], None]) -> None:
        self._loop, self._on_loop = loop, on_loop

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write") or event.is_directory:
            return
        self._loop.call_soon_threadsafe(self._on_loop, os.fsdecode(event.src_path))


class RawWatch:
    """A bare watchdog observer on ``root``; :meth:`sample` times one save."""

    def __init__(self, root: Path) -> None:
        self.target = root / "raw" / "plugin.py"
        self.target.parent.mkdir(parents=True)
        save(self.target, source("python", "v0"))
        self._path = str(self.target)
        self._waiting: asyncio.Future[float] | None = None
        self._observer = Observer()
        self._count = 0

    def start(self) -> None:
        handler = _RawHandler(asyncio.get_running_loop(), self._arrived)
        self._observer.schedule(handler, str(self.target.parent.parent), recursive=True)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(5.0)

    def _arrived(self, path: str) -> None:
        if path == self._path and self._waiting is not None and not self._waiting.done():
            self._waiting.set_result(time.perf_counter())

    async def sample(self, samples: list[float]) -> None:
        self._count += 1
        text = source("python", f"v{self._count}")
        self._waiting = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        save(self.target, text)
        arrived = await asyncio.wait_for(self._waiting, SAMPLE_TIMEOUT_S)
        samples.append(arrived - start)
        self._waiting = None
        await asyncio.sleep(SETTLE_S)


class ReloadProbe:
    """Saves new versions of one plugin under a watched host and times each
    until ``on_reload`` reports it ``RELOADED``."""

    def __init__(self, host: Host, runtime: str, main: Path) -> None:
        self.host, self.runtime, self.main = host, runtime, main
        self.plugin_id = PLUGIN_ID[runtime]
        self._count = 0
        self._waiting: asyncio.Future[tuple[float, ReloadResult]] | None = None
        #: Results for this plugin that arrived when no save was waiting
        #: (a save reported twice would show here).
        self.unexpected: list[ReloadResult] = []

    def on_reload(self, result: ReloadResult) -> None:
        now = time.perf_counter()
        if result.plugin_id != self.plugin_id:
            return
        if self._waiting is None or self._waiting.done():
            self.unexpected.append(result)
        else:
            self._waiting.set_result((now, result))

    async def sample(self, samples: list[float], reported: list[float]) -> None:
        self._count += 1
        tag = f"v{self._count}"
        text = source(self.runtime, tag)
        self._waiting = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        save(self.main, text)
        try:
            ended, result = await asyncio.wait_for(self._waiting, SAMPLE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RuntimeError(f"{self.plugin_id}: no reload reported {SAMPLE_TIMEOUT_S:g} s after saving {tag}")
        self._waiting = None
        if result.outcome is not ReloadOutcome.RELOADED:
            raise RuntimeError(f"{self.plugin_id}: saving {tag} gave {result}")
        samples.append(ended - start)
        reported.append(result.seconds)
        answer = await self.host.invoke(self.plugin_id, "version")
        if answer != {"tag": tag, "reloads": self._count}:
            raise RuntimeError(f"{self.plugin_id}: after saving {tag} the plugin answers {answer}")
        await asyncio.sleep(SETTLE_S)


async def started_host(root: Path) -> tuple[Host, dict[str, Path]]:
    plugins = root / "plugins"
    mains = {runtime: write_plugin(plugins, runtime) for runtime in MAIN}
    host = Host(plugins, root / "host.db", policy=HostPolicy())
    await host.discover()
    states = await host.activate_all()
    assert all(state.value == "active" for state in states.values()), states
    return host, mains


async def rotate(rounds: int, sides: list[Callable[[], Awaitable[None]]]) -> None:
    """Run every side ``rounds`` times, starting each round one side later."""
    for i in range(rounds):
        for k in range(len(sides)):
            await quiesce()
            await sides[(i + k) % len(sides)]()


async def all_cases() -> list[Row]:
    raw_samples: list[float] = []
    host_samples: dict[str, list[float]] = {runtime: [] for runtime in MAIN}
    reported: dict[str, list[float]] = {runtime: [] for runtime in MAIN}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = RawWatch(root)
        host, mains = await started_host(root)
        probes = {runtime: ReloadProbe(host, runtime, main) for runtime, main in mains.items()}

        def on_reload(result: ReloadResult) -> None:
            for probe in probes.values():
                probe.on_reload(result)

        raw.start()
        try:
            async with host.watch(debounce_s=DEBOUNCE_S, on_reload=on_reload):
                py, js = probes["python"], probes["javascript"]
                # Warm-up: first events, first compilations, first isolate.
                await rotate(WARMUP, [lambda: raw.sample([]), lambda: py.sample([], []),
                                      lambda: js.sample([], [])])
                await rotate(SAMPLES, [
                    lambda: raw.sample(raw_samples),
                    lambda: py.sample(host_samples["python"], reported["python"]),
                    lambda: js.sample(host_samples["javascript"], reported["javascript"]),
                ])
                await asyncio.sleep(SETTLE_S)
        finally:
            raw.stop()
            await host.close()
    for probe in probes.values():
        if probe.unexpected:
            print(f"note: {probe.plugin_id} had {len(probe.unexpected)} reload(s) no save was waiting for: "
                  + "; ".join(str(r) for r in probe.unexpected[:3]))
    baseline = "raw watchdog, write to loop callback"
    return [
        LatencyRow("reload-py", "save to active, Python plugin", baseline, raw_samples,
                   host_samples["python"], reported["python"]),
        LatencyRow("reload-js", "save to active, JavaScript plugin", baseline, raw_samples,
                   host_samples["javascript"], reported["javascript"]),
    ]


def main() -> int:
    started = time.perf_counter()
    rows = asyncio.run(all_cases())
    print(f"raw watchdog: median {fmt_time(statistics.median(rows[0].base))}, p95 {fmt_time(p95(rows[0].base))} "
          f"({len(rows[0].base)} samples); debounce {fmt_time(DEBOUNCE_S)}")
    print_report(rows, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())

