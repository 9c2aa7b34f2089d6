"""Watching a plugins folder for changes (the first half of hot reload).

:class:`PluginWatcher` runs a real ``watchdog`` observer on the plugins
folder and reports, on the host's event loop, which plugin folders changed:
code or manifest edited, a folder added, a folder removed. Editors save in
bursts (write, rename, touch, several writes), so changes are debounced: the
folders touched are collected until nothing has happened for ``debounce_s``
and then reported together, once.

What a change means for the running plugin (load the new version beside
the old one, swap, hand state over) is the host's job; the watcher only
says which folders to look at.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .lifecycle import ReloadResult

if TYPE_CHECKING:
    from .host import Host

_log = logging.getLogger("hostrt.reload")

#: How long a folder must be quiet before its changes are reported.
DEFAULT_DEBOUNCE_S = 0.05

#: File names editors and tools write beside the real file and that never
#: change a plugin: swap and backup files, and other hidden files.
_IGNORED_SUFFIXES = ("~", ".swp", ".swx", ".swo", ".tmp", ".pyc")


@dataclass(frozen=True)
class FolderChange:
    """One plugin folder whose contents changed (``present`` False: it is gone)."""

    folder: str
    present: bool


ChangeCallback = Callable[[list[FolderChange]], Awaitable[None]]


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(_IGNORED_SUFFIXES) or name == "__pycache__"


class PluginWatcher:
    """Reports changed plugin folders under ``plugins_dir`` to ``on_change``
    (a coroutine function, called on the loop the watcher was started on,
    one call at a time, in the order the bursts ended)."""

    def __init__(self, plugins_dir: str | Path, on_change: ChangeCallback, *,
                 debounce_s: float = DEFAULT_DEBOUNCE_S) -> None:
        if debounce_s < 0:
            raise ValueError("debounce_s must be >= 0")
        self.plugins_dir = Path(plugins_dir).resolve()
        self.debounce_s = debounce_s
        self._on_change = on_change
        self._observer: Observer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._reporting: asyncio.Task[None] | None = None
        self._queue: list[list[FolderChange]] = []

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Start the observer (call from the event loop that gets the reports)."""
        if self._observer is not None:
            return
        if not self.plugins_dir.is_dir():
            raise FileNotFoundError(f"plugins folder '{self.plugins_dir}' does not exist")
        self._loop = asyncio.get_running_loop()
        observer = Observer()
        observer.schedule(_Handler(self), str(self.plugins_dir), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    async def stop(self) -> None:
        """Stop the observer; changes not yet reported are dropped, a report
        under way is finished."""
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            await asyncio.get_running_loop().run_in_executor(None, observer.join, 5.0)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()
        self._queue.clear()
        # Stopped from within a report (a callback closing the host), that
        # report ends by itself: waiting for it would wait forever.
        if self._reporting is not None and self._reporting is not asyncio.current_task():
            await asyncio.gather(self._reporting, return_exceptions=True)

    async def __aenter__(self) -> "PluginWatcher":
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- events ------------------------------------------------------------------

    def _touched(self, path: str) -> None:
        """Observer thread: ``path`` changed."""
        # Not resolved: a plugin folder may be a symlink (to anywhere), and
        # the change is to the link inside the plugins folder, not to
        # where it leads. The observer reports paths under the resolved
        # folder it was given.
        try:
            relative = Path(os.path.abspath(path)).relative_to(self.plugins_dir)
        except ValueError:
            return
        parts = relative.parts
        if not parts or any(_ignored(part) for part in parts):
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._note, parts[0])

    def _note(self, folder: str) -> None:
        """Loop: remember the folder and restart the quiet period."""
        if self._observer is None:
            return
        self._pending.add(folder)
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_later(self.debounce_s, self._burst_over)

    def _burst_over(self) -> None:
        self._timer = None
        folders, self._pending = sorted(self._pending), set()
        if not folders:
            return
        self._queue.append([FolderChange(f, (self.plugins_dir / f).is_dir()) for f in folders])
        if self._reporting is None:
            assert self._loop is not None
            self._reporting = self._loop.create_task(self._report())

    async def _report(self) -> None:
        try:
            while self._queue:
                changes = self._queue.pop(0)
                try:
                    await self._on_change(changes)
                except Exception:  # noqa: BLE001 - one failed report must not stop the watcher
                    _log.exception("handling changes in %s failed", ", ".join(c.folder for c in changes))
        finally:
            self._reporting = None


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: PluginWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reading a file changes nothing
        if event.is_directory and event.event_type == "modified":
            return  # an entry was added or removed: that entry's own event says which
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self._watcher._touched(os.fsdecode(path))


#: Hears about each plugin a watched change affected: ``on_reload(result)``,
#: a plain function or a coroutine function.
ReloadCallback = Callable[[ReloadResult], "Awaitable[None] | None"]


class HostWatch:
    """Hot reload for a host while entered; made by :meth:`Host.watch`.

    Every debounced burst of changes goes to :meth:`Host.sync_folders`
    (one burst at a time, in order), and each result to ``on_reload``. A
    failing callback is logged; the watch goes on.
    """

    def __init__(self, host: "Host", *, debounce_s: float, on_reload: ReloadCallback | None,
                 start_new: bool, grant_requested: bool) -> None:
        self._host = host
        self._on_reload = on_reload
        self._start_new = start_new
        self._grant_requested = grant_requested
        self._watcher = PluginWatcher(host.plugins_dir, self._changed, debounce_s=debounce_s)

    async def _changed(self, changes: list[FolderChange]) -> None:
        results = await self._host.sync_folders(
            [c.folder for c in changes], start_new=self._start_new, grant_requested=self._grant_requested)
        if self._on_reload is None:
            return
        for result in results:
            try:
                outcome = self._on_reload(result)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:  # noqa: BLE001 - the host's callback must not stop reloading
                _log.exception("on_reload callback failed for %s", result.plugin_id)

    async def __aenter__(self) -> "HostWatch":
        self._host._check_open()
        self._watcher.start()
        self._host._watches.add(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop watching (:meth:`Host.close` does it too). Idempotent."""
        self._host._watches.discard(self)
        await self._watcher.stop()


__all__ = ["DEFAULT_DEBOUNCE_S", "FolderChange", "HostWatch", "PluginWatcher", "ReloadCallback"]
