"""``host.watch()``: the real watchdog observer on real files drives hot
reload of real plugins in both languages."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from hostrt import PluginCompileError, PluginState, ReloadOutcome, ReloadResult

from test_hot_reload import LANGUAGES, MAIN, SYNTAX_ERROR, host_with, version, write

#: The longest a reload may take to be reported after a write (it is a
#: matter of milliseconds; this only bounds a broken watcher).
ARRIVES_WITHIN_S = 10.0


def run(coro):
    return asyncio.run(coro)


class Results:
    """Collects what the watch reports, in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ReloadResult] = asyncio.Queue()
        self.all: list[ReloadResult] = []

    async def __call__(self, result: ReloadResult) -> None:
        self.all.append(result)
        await self.queue.put(result)

    async def next(self, plugin_id: str) -> ReloadResult:
        """The next result for ``plugin_id`` (results for others are kept in ``all``)."""
        while True:
            result = await asyncio.wait_for(self.queue.get(), ARRIVES_WITHIN_S)
            if result.plugin_id == plugin_id:
                return result

    async def settled(self, plugins: Path) -> None:
        """Everything written so far has been handled: a new plugin folder
        is the next result, and bursts are handled in order."""
        write(plugins, "zz-marker", "python", "marker")
        result = await self.next("zz-marker")
        assert result.outcome is ReloadOutcome.STARTED, result


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_save_reloads_a_typo_keeps_the_old_version_and_a_fix_recovers(language, plugins_dir, tmp_path):
    write(plugins_dir, "probe", language, "v1")

    async def main():
        results = Results()
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            async with host.watch(debounce_s=0.05, on_reload=results):
                write(plugins_dir, "probe", language, "v2")
                result = await results.next("probe")
                assert result.outcome is ReloadOutcome.RELOADED, result
                assert await version(host) == {"tag": "v2", "reloads": 1}

                source, line = SYNTAX_ERROR[language]
                (plugins_dir / "probe" / MAIN[language]).write_text(source)
                result = await results.next("probe")
                assert result.outcome is ReloadOutcome.KEPT and isinstance(result.error, PluginCompileError)
                assert (result.error.file, result.error.line) == (f"probe/{MAIN[language]}", line)
                assert await version(host) == {"tag": "v2", "reloads": 1}

                write(plugins_dir, "probe", language, "v3")
                result = await results.next("probe")
                assert result.outcome is ReloadOutcome.RELOADED, result
                assert await version(host) == {"tag": "v3", "reloads": 2}

    run(main())


@pytest.mark.parametrize("language", LANGUAGES)
def test_twenty_rapid_saves_end_with_the_last_one_active_after_few_reloads(language, plugins_dir, tmp_path):
    write(plugins_dir, "probe", language, "v0")

    async def main():
        results = Results()
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            async with host.watch(debounce_s=0.05, on_reload=results):
                for n in range(1, 21):
                    write(plugins_dir, "probe", language, f"v{n}")
                    await asyncio.sleep(0.002)  # an editor's autosave pace, not a wait for anything
                await results.settled(plugins_dir)
                reloads = [r for r in results.all if r.plugin_id == "probe"]
                assert 1 <= len(reloads) <= 3, reloads
                assert all(r.outcome is ReloadOutcome.RELOADED for r in reloads)
                assert await version(host) == {"tag": "v20", "reloads": len(reloads)}

    run(main())


def test_removing_a_folder_deactivates_it_and_adding_one_activates_it(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1", capabilities=["storage"])

    async def main():
        results = Results()
        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            async with host.watch(debounce_s=0.05, on_reload=results):
                shutil.rmtree(plugins_dir / "probe")
                result = await results.next("probe")
                assert result.outcome is ReloadOutcome.REMOVED
                assert "probe" not in host.plugins
                assert not any(c.plugin_id == "probe" for c in host.commands())

                write(plugins_dir, "fresh-js", "javascript", "j1")
                result = await results.next("fresh-js")
                assert result.outcome is ReloadOutcome.STARTED, result
                assert host.plugins["fresh-js"].state is PluginState.ACTIVE
                assert await version(host, "fresh-js") == {"tag": "j1", "reloads": 0}

    run(main())


def test_a_failing_callback_does_not_stop_the_watch(plugins_dir, tmp_path):
    write(plugins_dir, "probe", "python", "v1")

    async def main():
        results = Results()
        calls = []

        def flaky(result: ReloadResult) -> None:
            calls.append(result.plugin_id)
            if len(calls) == 1:
                raise RuntimeError("the host's callback is broken")
            results.queue.put_nowait(result)

        async with await host_with(plugins_dir, tmp_path / "host.db") as host:
            async with host.watch(debounce_s=0.05, on_reload=flaky):
                write(plugins_dir, "probe", "python", "v2")
                await asyncio.wait_for(_until(lambda: calls == ["probe"]), ARRIVES_WITHIN_S)
                write(plugins_dir, "probe", "python", "v3")
                result = await results.next("probe")
                assert result.outcome is ReloadOutcome.RELOADED
                assert await version(host) == {"tag": "v3", "reloads": 2}

    run(main())


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_sync_host_watches_and_reloads(plugins_dir, tmp_path):
    import queue

    from hostrt import SyncHost

    write(plugins_dir, "probe", "javascript", "v1")
    results: queue.Queue[ReloadResult] = queue.Queue()
    with SyncHost(plugins_dir, tmp_path / "host.db") as host:
        host.discover()
        host.activate_all()
        assert host.invoke("probe", "version") == {"tag": "v1", "reloads": 0}
        with host.watch(debounce_s=0.05, on_reload=results.put):
            write(plugins_dir, "probe", "javascript", "v2")
            result = results.get(timeout=ARRIVES_WITHIN_S)
            assert result.outcome is ReloadOutcome.RELOADED
            assert host.invoke("probe", "version") == {"tag": "v2", "reloads": 1}
        assert host.reload("probe").outcome is ReloadOutcome.RELOADED
        assert host.invoke("probe", "version") == {"tag": "v2", "reloads": 2}
