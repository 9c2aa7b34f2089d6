"""The arena hostile plugins are run in.

Every attack in tests/adversarial/ is a real plugin run through a real
:class:`~hostrt.Host` on a real SQLite file, in an arena with canaries
planted where a plugin must never reach:

- an environment variable of the host process,
- a file outside the plugins folder,
- another plugin's storage and settings (the ``victim``, active throughout).

``arena.run(attack)`` starts the host, runs ``attack(arena)`` and then
checks, whatever the attack asserted itself, that the attack was contained:
no canary appears anywhere a plugin can put data (its storage and settings,
the audit log, log records, errors, events), nothing was written outside
the plugin's own storage (other plugins' rows and grants, the files around
the host), the victim still runs, and the host can still activate fresh
Python and JavaScript plugins.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostrt import Host, HostPolicy, HostrtError, PluginState
from hostrt.errors import PluginError

from conftest import LogCapture

#: How long one step (activating an attack, a command, a delivery) may take
#: before the attack counts as having hung the host.
STEP_S = 30.0

#: The environment variable holding the environment canary.
SECRET_ENV = "HOSTRT_ARENA_SECRET"

VICTIM_PY = """
def activate(ctx):
    ctx.commands.register("victim.ping", lambda params: "pong")
"""


@dataclass
class Attempt:
    """What became of one attack plugin after activation."""

    plugin_id: str
    state: PluginState
    error: HostrtError | None
    #: The plugin's storage afterwards (what it managed to keep), decoded.
    loot: dict[str, Any] = field(default_factory=dict)
    #: The messages the plugin logged.
    logs: list[str] = field(default_factory=list)

    def failed_with(self, kind: type[HostrtError], text: str = "") -> bool:
        """The plugin did not get to run: it failed (or was blocked) with an
        error of ``kind`` whose message contains ``text``."""
        return (
            self.state in (PluginState.FAILED, PluginState.BLOCKED)
            and isinstance(self.error, kind)
            and text in self.error.message
        )


class _Capture(LogCapture):
    """Every record hostrt logs, and all of it as text."""

    def text(self) -> str:
        parts = []
        for record in self.records:
            parts.append(record.getMessage())
            parts.append(json.dumps(getattr(record, "plugin_fields", None)))
            if record.exc_info:
                parts.append(logging.Formatter().formatException(record.exc_info))
        return "\n".join(parts)


class Arena:
    """A host with canaries, for one test. Use :meth:`run`."""

    def __init__(self, tmp_path: Path, *, policy: HostPolicy | None = None) -> None:
        self.root = tmp_path
        self.plugins = tmp_path / "plugins"
        self.plugins.mkdir()
        token = secrets.token_hex(8)
        self.canaries = {
            "env": f"canary-env-{token}",
            "file": f"canary-file-{token}",
            "storage": f"canary-storage-{token}",
            "setting": f"canary-setting-{token}",
        }
        os.environ[SECRET_ENV] = self.canaries["env"]
        self.secret_file = tmp_path / "outside" / "secret.txt"
        self.secret_file.parent.mkdir()
        self.secret_file.write_text(self.canaries["file"] + "\n")
        self.db = tmp_path / "host.db"
        self.policy = policy
        self.host: Host | None = None
        self.heard: list[Any] = []
        self.attempts: list[Attempt] = []
        self._written: dict[Path, bytes] = {}
        self._files: dict[Path, tuple[int, int]] = {}
        self._victim: tuple[dict[str, Any], dict[str, Any], list[str]] | None = None
        self._capture = _Capture()
        self._fresh = 0
        self.write("victim", VICTIM_PY, capabilities=["storage", "settings.read"], commands=[{"name": "victim.ping"}],
                   settings={"type": "object", "properties": {"token": {"type": "string", "default": ""}}})

    # -- writing plugins ---------------------------------------------------------

    def write(self, plugin_id: str, source: str, *, language: str = "python", folder: str | None = None,
              **manifest: Any) -> Path:
        """Write a plugin (``plugin.json`` and its main file) into the plugins folder."""
        data: dict[str, Any] = {"schemaVersion": 1, "id": plugin_id, "name": plugin_id, "version": "1.0.0",
                                "runtime": language, "capabilities": []}
        if language == "javascript":
            data["main"] = "plugin.js"
        data.update(manifest)
        main = "plugin.js" if language == "javascript" else "plugin.py"
        return self.write_files(folder or plugin_id, {
            "plugin.json": json.dumps(data),
            main: textwrap.dedent(source).lstrip("\n"),
        })

    def write_files(self, folder: str, files: dict[str, str | bytes]) -> Path:
        """Write arbitrary files into plugin folder ``folder`` (malformed
        plugins: bad JSON, odd names); the containment check knows them."""
        path = self.plugins / folder
        path.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode() if isinstance(content, str) else content
            target.write_bytes(data)
            self._written[target] = data
        return path

    def forget(self, path: Path) -> None:
        """Check ``path`` (written by the test before the run) like any file
        around the host, by size and time, instead of by the content the
        arena wrote: for files the test then replaced itself (a link, a huge
        file not worth keeping in memory)."""
        self._written.pop(path, None)

    # -- running -------------------------------------------------------------------

    def run(self, attack: Callable[["Arena"], Awaitable[None]]) -> None:
        """Start the host, run ``attack(arena)``, check containment, close."""
        asyncio.run(self._run(attack))

    async def _run(self, attack: Callable[["Arena"], Awaitable[None]]) -> None:
        hostrt_log = logging.getLogger("hostrt")
        hostrt_log.addHandler(self._capture)
        level = hostrt_log.level
        hostrt_log.setLevel(logging.DEBUG)
        try:
            await self._start()
            await attack(self)
            await self.assert_contained()
        finally:
            if self.host is not None:
                await asyncio.wait_for(self.host.close(), STEP_S)
            hostrt_log.removeHandler(self._capture)
            hostrt_log.setLevel(level)
            os.environ.pop(SECRET_ENV, None)

    async def _start(self) -> None:
        host = self.host = Host(self.plugins, self.db, policy=self.policy)
        await host.discover()
        host.grants.grant_requested("victim")
        host.store.kv_set("victim", "secret", json.dumps(self.canaries["storage"]), quota_bytes=1 << 20)
        host.set_setting("victim", "token", self.canaries["setting"])
        assert (await asyncio.wait_for(host.activate("victim"), STEP_S)).state is PluginState.ACTIVE
        host.on("*", lambda event: self.heard.append([event.name, event.source, event.payload]))
        self._victim = (self.rows("victim"), host.store.settings_get_all("victim"), host.grants.list("victim"))
        self._files = self._tree()

    async def attack(self, plugin_id: str, source: str, *, language: str = "python", grant: bool = True,
                     **manifest: Any) -> Attempt:
        """Write attack plugin ``plugin_id``, grant what it requests (unless
        ``grant`` is False), activate it, let the events it caused be
        delivered, and report what became of it."""
        self.write(plugin_id, source, language=language, **manifest)
        return await self.activate(plugin_id, grant=grant)

    async def activate(self, plugin_id: str, *, grant: bool = True) -> Attempt:
        """Discover and activate a plugin already written (see :meth:`write`)."""
        host = self._host()
        await host.discover()
        if plugin_id not in host.plugins:
            error = host.invalid[plugin_id].error if plugin_id in host.invalid else None
            attempt = Attempt(plugin_id, PluginState.INVALID, error)
            self.attempts.append(attempt)
            return attempt
        if grant:
            host.grants.grant_requested(plugin_id)
        record = await asyncio.wait_for(host.activate(plugin_id), STEP_S)
        await asyncio.wait_for(host.events_idle(), STEP_S)
        attempt = Attempt(plugin_id, record.state, record.error, self.rows(plugin_id), self.logs_of(plugin_id))
        self.attempts.append(attempt)
        return attempt

    def logs_of(self, plugin_id: str) -> list[str]:
        return [r.getMessage() for r in self._capture.records if getattr(r, "plugin_id", None) == plugin_id]

    def _host(self) -> Host:
        assert self.host is not None, "the arena is not running: use arena.run(attack)"
        return self.host

    def rows(self, plugin_id: str) -> dict[str, Any]:
        """A plugin's storage, decoded."""
        store = self._host().store
        return {key: json.loads(store.kv_get(plugin_id, key) or "null") for key in store.kv_keys(plugin_id)}

    def _tree(self) -> dict[Path, tuple[int, int]]:
        """Every file around the host (not the database, which changes)."""
        found = {}
        for dirpath, _dirnames, filenames in os.walk(self.root):
            for name in filenames:
                path = Path(dirpath) / name
                if path.name.startswith("host.db"):
                    continue
                try:
                    info = path.lstat()
                except OSError:
                    continue
                found[path] = (info.st_size, info.st_mtime_ns)
        return found

    # -- the containment check -------------------------------------------------------

    def reachable_text(self) -> str:
        """Everything a plugin can make the host keep or show: every
        plugin's storage and settings except the victim's, the audit log,
        log records, plugin errors and events."""
        host = self._host()
        store = host.store
        parts = [self._capture.text(), json.dumps(self.heard, default=repr)]
        for plugin_id in {*host.plugins, *host.invalid, *(a.plugin_id for a in self.attempts)} - {"victim"}:
            parts.append(json.dumps(self.rows(plugin_id)))
            parts.append(json.dumps(store.settings_get_all(plugin_id)))
        for entry in store.audit_log(limit=100000):
            parts.append(json.dumps(entry.detail))
        for record in [*host.plugins.values(), *host.invalid.values()]:
            error = record.error
            if error is not None:
                parts.append(error.message)
                if isinstance(error, PluginError):
                    parts.append(error.plugin_traceback or "")
        for attempt in self.attempts:
            if attempt.error is not None:
                parts.append(str(attempt.error))
        return "\n".join(parts)

    async def assert_contained(self) -> None:
        """The attack leaked nothing, changed nothing it does not own, and
        the host still works."""
        host = self._host()
        await asyncio.wait_for(host.events_idle(), STEP_S)
        text = self.reachable_text()
        for where, canary in self.canaries.items():
            assert canary not in text, f"the {where} canary leaked"
        # the victim: untouched and still running
        assert self._victim is not None
        rows, settings, grants = self._victim
        assert self.rows("victim") == rows
        assert host.store.settings_get_all("victim") == settings
        assert host.grants.list("victim") == grants
        assert host.plugins["victim"].state is PluginState.ACTIVE
        assert await asyncio.wait_for(host.invoke("victim", "victim.ping"), STEP_S) == "pong"
        # no file around the host written, changed or removed, but for the
        # plugins the test itself wrote
        now = self._tree()
        for path, stat in now.items():
            if path in self._written:
                assert path.read_bytes() == self._written[path], f"{path} was changed"
            else:
                assert self._files.get(path) == stat, f"{path} was written"
        for path in self._files:
            assert path in now, f"{path} was removed"
        # a fresh plugin of each language still activates and works
        for language in ("python", "javascript"):
            await self._fresh_plugin_works(language)

    async def _fresh_plugin_works(self, language: str) -> None:
        self._fresh += 1
        plugin_id = f"fresh-{language[:2]}-{self._fresh}"
        source = ('def activate(ctx):\n    ctx.storage.set("ok", ctx.plugin.id)\n' if language == "python" else
                  'exports.activate = async (ctx) => { await ctx.storage.set("ok", ctx.plugin.id); };\n')
        self.write(plugin_id, source, language=language, capabilities=["storage"])
        host = self._host()
        await host.discover()
        host.grants.grant_requested(plugin_id)
        record = await asyncio.wait_for(host.activate(plugin_id), STEP_S)
        assert record.state is PluginState.ACTIVE, record.error
        assert self.rows(plugin_id) == {"ok": plugin_id}
