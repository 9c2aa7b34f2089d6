"""A blocking facade over :class:`~hostrt.host.Host` for non-async hosts.

The async host runs on a private event loop in a background thread, so
runtimes that need a running loop (the JavaScript one does) always have one,
and the calling thread simply waits for each result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .commands import CommandInfo
from .events import EventDelivery, HostHandler, HostSubscription
from .grants import GrantManager
from .host import Host, HostPolicy, LifecycleListener
from .hostmethods import HostFunction, HostMethod, HostMethods
from .lifecycle import PluginRecord, PluginState, ReloadResult
from .reload import HostWatch
from .runtimes.base import Runtime
from .store import Store

T = TypeVar("T")


class SyncHost:
    """The same API as :class:`Host`, with blocking methods.

    Use it as a context manager, or call :meth:`close`: the background loop
    thread ends only then.
    """

    def __init__(
        self,
        plugins_dir: str | Path,
        db_path: str | Path = ":memory:",
        *,
        policy: HostPolicy | None = None,
        runtimes: list[Runtime] | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostrt-loop", daemon=True)
        self._thread.start()

        async def build() -> Host:
            return Host(plugins_dir, db_path, policy=policy, runtimes=runtimes)

        self._host = self._run(build())
        self._watches: list[HostWatch] = []

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._thread.is_alive():
            coro.close()
            raise RuntimeError("this SyncHost is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def host(self) -> Host:
        """The underlying async host (use only from its loop)."""
        return self._host

    @property
    def plugins(self) -> Mapping[str, PluginRecord]:
        return self._host.plugins

    @property
    def invalid(self) -> Mapping[str, PluginRecord]:
        return self._host.invalid

    @property
    def grants(self) -> GrantManager:
        return self._host.grants

    @property
    def store(self) -> Store:
        return self._host.store

    @property
    def methods(self) -> HostMethods:
        """The exposed host methods (``withdraw``, ``names``)."""
        return self._host.methods

    def discover(self) -> Mapping[str, PluginRecord]:
        return self._run(self._host.discover())

    def activate(self, plugin_id: str) -> PluginRecord:
        return self._run(self._host.activate(plugin_id))

    def deactivate(self, plugin_id: str) -> PluginRecord:
        return self._run(self._host.deactivate(plugin_id))

    def activate_all(self) -> dict[str, PluginState]:
        return self._run(self._host.activate_all())

    def deactivate_all(self) -> None:
        self._run(self._host.deactivate_all())

    def disable(self, plugin_id: str) -> PluginRecord:
        return self._run(self._host.disable(plugin_id))

    def enable(self, plugin_id: str) -> PluginRecord:
        return self._run(self._host.enable(plugin_id))

    def get_settings(self, plugin_id: str) -> dict[str, Any]:
        return self._host.get_settings(plugin_id)

    def set_setting(self, plugin_id: str, key: str, value: Any) -> None:
        self._host.set_setting(plugin_id, key, value)

    def declare_event(self, name: str, **options: Any) -> None:
        self._host.declare_event(name, **options)

    def emit(self, name: str, payload: Any = None) -> EventDelivery:
        return self._run(self._host.emit(name, payload))

    def on(self, pattern: str, handler: HostHandler) -> HostSubscription:
        """Like :meth:`Host.on`; ``handler`` runs on the host's loop thread."""
        return self._host.on(pattern, handler)

    def events_idle(self) -> None:
        self._run(self._host.events_idle())

    def expose(self, name: str, fn: HostFunction, **options: Any) -> HostMethod:
        """Like :meth:`Host.expose`; ``fn`` runs on the host's loop thread,
        not the caller's."""
        return self._host.expose(name, fn, **options)

    def invoke(self, plugin_id: str, name: str, params: Any = None) -> Any:
        return self._run(self._host.invoke(plugin_id, name, params))

    def commands(self) -> list[CommandInfo]:
        return self._host.commands()

    def on_lifecycle(self, listener: LifecycleListener) -> Callable[[], None]:
        """See :meth:`Host.on_lifecycle`; the listener runs on the host's loop thread."""
        return self._host.on_lifecycle(listener)

    def reload(self, plugin_id: str, *, grant_requested: bool = False) -> ReloadResult:
        return self._run(self._host.reload(plugin_id, grant_requested=grant_requested))

    def sync_folders(self, folders: Iterable[str], **options: Any) -> list[ReloadResult]:
        return self._run(self._host.sync_folders(list(folders), **options))

    @contextmanager
    def watch(self, **options: Any) -> Iterator[None]:
        """Hot reload while the ``with`` block runs; options as for
        :meth:`Host.watch` (``on_reload`` is called on the host's loop thread)."""
        watch = self._host.watch(**options)
        self._run(watch.__aenter__())
        self._watches.append(watch)
        try:
            yield
        finally:
            if watch in self._watches:
                self._watches.remove(watch)
                self._run(watch.__aexit__(None, None, None))

    def close(self) -> None:
        """Stop watching, close the host and stop the background loop. Idempotent."""
        if not self._thread.is_alive():
            return
        try:
            while self._watches:
                self._run(self._watches.pop().__aexit__(None, None, None))
            self._run(self._host.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> "SyncHost":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
