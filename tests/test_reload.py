"""The plugins-folder watcher, with the real watchdog observer on real files."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from hostrt.reload import FolderChange, PluginWatcher

from conftest import write_plugin

#: The longest a report may take to arrive after a write (inotify is fast;
#: this only bounds a broken watcher).
ARRIVES_WITHIN_S = 5.0


def run(coro):
    return asyncio.run(coro)


class Reports:
    """Collects what the watcher reports."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[list[FolderChange]] = asyncio.Queue()
        self.all: list[list[FolderChange]] = []

    async def __call__(self, changes: list[FolderChange]) -> None:
        self.all.append(changes)
        await self.queue.put(changes)

    async def next(self) -> list[FolderChange]:
        return await asyncio.wait_for(self.queue.get(), ARRIVES_WITHIN_S)

    async def quiet(self, watcher: PluginWatcher) -> None:
        """Nothing more is reported: a write to a marker folder is the next
        report, so everything before it has been reported already."""
        marker = watcher.plugins_dir / "zz-marker"
        marker.mkdir(exist_ok=True)
        (marker / "touch").write_text("x")
        while True:
            changes = await self.next()
            if any(c.folder == "zz-marker" for c in changes):
                rest = [c for c in changes if c.folder != "zz-marker"]
                if rest:
                    self.all[-1] = rest
                else:
                    self.all.pop()
                return


def test_an_edit_is_reported_once_per_burst(plugins_dir):
    write_plugin(plugins_dir, "hello", "def activate(ctx):\n    pass\n")

    async def main():
        reports = Reports()
        async with PluginWatcher(plugins_dir, reports, debounce_s=0.05) as watcher:
            main_file = plugins_dir / "hello" / "plugin.py"
            main_file.write_text("def activate(ctx):\n    ctx.log.info('v2')\n")
            assert await reports.next() == [FolderChange("hello", True)]
            # twenty rapid saves, as an editor's autosave makes them: few reports
            for n in range(20):
                main_file.write_text(f"def activate(ctx):\n    ctx.log.info('v{n}')\n")
                await asyncio.sleep(0.001)
            await reports.quiet(watcher)
            assert 1 <= len(reports.all) - 1 <= 3, reports.all
            assert all(changes == [FolderChange("hello", True)] for changes in reports.all)

    run(main())


def test_write_then_rename_saves_and_manifest_edits_are_reported(plugins_dir):
    write_plugin(plugins_dir, "hello", "def activate(ctx):\n    pass\n")

    async def main():
        reports = Reports()
        async with PluginWatcher(plugins_dir, reports, debounce_s=0.05):
            folder = plugins_dir / "hello"
            temp = folder / ".plugin.py.tmp"
            temp.write_text("def activate(ctx):\n    ctx.log.info('atomic')\n")
            os.replace(temp, folder / "plugin.py")
            assert await reports.next() == [FolderChange("hello", True)]
            manifest = folder / "plugin.json"
            manifest.write_text(manifest.read_text().replace('"1.0.0"', '"1.0.1"'))
            assert await reports.next() == [FolderChange("hello", True)]

    run(main())


def test_added_and_removed_folders_are_reported(plugins_dir):
    write_plugin(plugins_dir, "old", "def activate(ctx):\n    pass\n")

    async def main():
        reports = Reports()
        async with PluginWatcher(plugins_dir, reports, debounce_s=0.05):
            write_plugin(plugins_dir, "new", "def activate(ctx):\n    pass\n")
            assert await reports.next() == [FolderChange("new", True)]
            shutil.rmtree(plugins_dir / "old")
            assert await reports.next() == [FolderChange("old", False)]

    run(main())


def test_changes_in_several_folders_come_in_one_report(plugins_dir):
    for name in ("a-one", "b-two"):
        write_plugin(plugins_dir, name, "def activate(ctx):\n    pass\n")

    async def main():
        reports = Reports()
        async with PluginWatcher(plugins_dir, reports, debounce_s=0.2):
            for name in ("b-two", "a-one"):
                (plugins_dir / name / "plugin.py").write_text("def activate(ctx):\n    return None\n")
            assert await reports.next() == [FolderChange("a-one", True), FolderChange("b-two", True)]

    run(main())


def test_hidden_and_editor_files_are_ignored(plugins_dir):
    write_plugin(plugins_dir, "hello", "def activate(ctx):\n    pass\n")

    async def main():
        reports = Reports()
        async with PluginWatcher(plugins_dir, reports, debounce_s=0.05) as watcher:
            folder = plugins_dir / "hello"
            for name in (".plugin.py.swp", "plugin.py~", "notes.tmp", ".hidden"):
                (folder / name).write_text("x")
            (plugins_dir / ".git").mkdir()
            (plugins_dir / ".git" / "index").write_text("x")
            (folder / "__pycache__").mkdir()
            (folder / "__pycache__" / "x.pyc").write_text("x")
            await reports.quiet(watcher)
            assert reports.all == []

    run(main())


def test_a_failing_callback_does_not_stop_the_watcher(plugins_dir, caplog):
    write_plugin(plugins_dir, "hello", "def activate(ctx):\n    pass\n")

    async def main():
        seen: asyncio.Queue[list[FolderChange]] = asyncio.Queue()

        async def on_change(changes):
            await seen.put(changes)
            raise RuntimeError("callback bug")

        async with PluginWatcher(plugins_dir, on_change, debounce_s=0.02):
            for n in range(2):
                (plugins_dir / "hello" / "plugin.py").write_text(f"# {n}\ndef activate(ctx):\n    pass\n")
                assert await asyncio.wait_for(seen.get(), ARRIVES_WITHIN_S) == [FolderChange("hello", True)]
        assert caplog.text.count("handling changes in hello failed") == 2

    run(main())


def test_the_watcher_needs_an_existing_folder_and_stops_cleanly(tmp_path):
    async def main():
        async def ignore(changes):
            pass

        with pytest.raises(FileNotFoundError):
            PluginWatcher(tmp_path / "missing", ignore).start()
        with pytest.raises(ValueError):
            PluginWatcher(tmp_path, ignore, debounce_s=-1)
        watcher = PluginWatcher(tmp_path, ignore)
        watcher.start()
        watcher.start()  # idempotent
        await watcher.stop()
        await watcher.stop()

    run(main())


