"""``hostrt dev``: a host for plugin authors, with hot reload.

It activates every plugin in the folder, then watches it: each save reloads
the plugin it belongs to. Lifecycle changes, plugin log lines, reload times
and errors (with a frame of the failing code) go to the terminal. Ctrl-C
deactivates everything and exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .codeframe import code_frame
from .context import printable
from .errors import HostrtError, PluginError
from .host import Host
from .lifecycle import PluginRecord, PluginState, ReloadOutcome, ReloadResult
from .reload import DEFAULT_DEBOUNCE_S

#: Shown before anything else when the author asks for automatic grants.
GRANT_WARNING = """\
!!! --grant-requested: every capability a plugin's manifest requests is
!!! GRANTED WITHOUT ASKING, now and on every reload, and stored in {db}.
!!! Use it only with plugins you wrote or trust, and never with a host
!!! database that real users' plugins depend on."""


class DevConsole:
    """Writes what happens in a dev host to a terminal, one event a line."""

    def __init__(self, plugins_dir: Path, out: TextIO) -> None:
        self._plugins_dir = plugins_dir
        self._out = out
        # Python plugins log from their own threads.
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        """Print ``text``, each line stamped. Plugins choose much of what is
        printed (messages, stacks, their source), so every line is printed
        with its control characters escaped: no cursor moves, colours or
        carriage returns reach the terminal."""
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            # Split at newlines only: every other line break (form feeds,
            # U+2028...) is escaped by printable, so a line of a plugin's
            # source stays one line.
            for line in text.split("\n"):
                self._out.write(f"[{stamp}] {printable(line)}\n")
            self._out.flush()

    def error(self, error: HostrtError, indent: str = "    ") -> None:
        """The error's message, a frame of the code it points at, and the
        plugin's own traceback."""
        # Every line is indented, so text a plugin put in its error cannot
        # pass for a line of the console's own.
        first, *rest = error.message.splitlines() or [""]
        lines = [f"{indent}error [{error.code}]: {first}", *(indent + line for line in rest)]
        frame = code_frame(self._plugins_dir, error)
        if frame is not None:
            lines.append(f"{indent}{error.file}:{error.line}" + (f":{error.column}" if error.column else ""))
            lines.extend(indent + line for line in frame.split("\n"))
        if isinstance(error, PluginError) and error.plugin_traceback and "\n" in error.plugin_traceback.strip():
            lines.extend(indent + line for line in error.plugin_traceback.rstrip().splitlines())
        self.say("\n".join(lines))

    def granted(self, plugin_id: str, capabilities: Sequence[str]) -> None:
        """Say, loudly, what ``--grant-requested`` granted."""
        for capability in capabilities:
            self.say(f"!!! granted {capability} to {plugin_id} (--grant-requested)")

    # -- what the host reports ---------------------------------------------------

    def lifecycle(self, record: PluginRecord, error: HostrtError | None) -> None:
        if record.state is PluginState.LOADING:
            return
        self.say(f"{record.id} {record.version or ''} {record.state}".replace("  ", " "))
        if error is not None:
            self.error(error)

    def reloaded(self, result: ReloadResult) -> None:
        ms = f"{result.seconds * 1000:.1f} ms"
        outcome = result.outcome
        if outcome is ReloadOutcome.RELOADED:
            change = (f"{result.previous_version} -> {result.version}"
                      if result.previous_version != result.version else f"{result.version}")
            self.say(f"{result.plugin_id} reloaded {change} in {ms}")
        elif outcome is ReloadOutcome.KEPT:
            self.say(f"{result.plugin_id}: the new version was refused; {result.previous_version} keeps running")
        elif outcome is ReloadOutcome.RESTORED:
            self.say(f"{result.plugin_id}: the new version failed to activate; {result.previous_version} "
                     f"was started again ({ms})")
        elif outcome is ReloadOutcome.STARTED:
            self.say(f"{result.plugin_id} started in {ms}")
        elif outcome is ReloadOutcome.REMOVED:
            self.say(f"{result.plugin_id} removed")
        elif outcome is ReloadOutcome.FAILED and result.state is PluginState.INVALID:
            self.say(f"{result.plugin_id}: invalid manifest")
        self.granted(result.plugin_id, result.granted)
        # Other failures were shown as the lifecycle change they caused.
        if result.error is not None and (outcome in (ReloadOutcome.KEPT, ReloadOutcome.RESTORED)
                                         or result.state is PluginState.INVALID):
            self.error(result.error)


class _PluginLogLines(logging.Handler):
    """Plugin log records (``ctx.log``, ``console``) as console lines."""

    def __init__(self, console: DevConsole) -> None:
        super().__init__(logging.DEBUG)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        plugin = getattr(record, "plugin_id", None) or record.name.removeprefix("hostrt.plugins.")
        try:
            self._console.say(f"{plugin} {record.levelname.lower()}: {printable(record.getMessage())}")
        except Exception:  # noqa: BLE001 - logging must never raise into the plugin's call
            self.handleError(record)


async def run_dev(plugins_dir: Path, db: str, *, grant_requested: bool = False,
                  debounce_s: float = DEFAULT_DEBOUNCE_S, out: TextIO | None = None,
                  stop: asyncio.Event | None = None) -> int:
    """Run a dev host on ``plugins_dir`` until ``stop`` is set (by default:
    until SIGINT or SIGTERM), then deactivate everything. Returns the exit
    status."""
    console = DevConsole(plugins_dir, out or sys.stdout)
    if not plugins_dir.is_dir():
        console.say(f"error: plugins folder '{plugins_dir}' does not exist")
        return 1
    stop = stop or _stop_on_signals()
    plugin_logs = logging.getLogger("hostrt.plugins")
    handler = _PluginLogLines(console)
    plugin_logs.addHandler(handler)
    previous_level = plugin_logs.level
    plugin_logs.setLevel(logging.DEBUG)
    host = Host(plugins_dir, db)
    host.on_lifecycle(console.lifecycle)
    try:
        if grant_requested:
            console.say(GRANT_WARNING.format(db=db))
        await host.discover()
        for name, record in sorted(host.invalid.items()):
            console.say(f"{name}: invalid manifest")
            if record.error is not None:
                console.error(record.error)
        for pid in sorted(host.plugins):
            if grant_requested:
                console.granted(pid, host.grants.grant_requested(pid, actor="dev"))
                continue
            missing = host.grants.missing(pid)
            if missing:
                console.say(f"{pid} requests {', '.join(missing)}, not granted: grant with "
                            f"`hostrt grant {plugins_dir} {pid} --all --db {db}` or run with --grant-requested")
        await host.activate_all()
        active = sum(1 for r in host.plugins.values() if r.state is PluginState.ACTIVE)
        async with host.watch(debounce_s=debounce_s, on_reload=console.reloaded, grant_requested=grant_requested):
            console.say(f"watching {plugins_dir} ({active} of {len(host.plugins)} plugins active); "
                        "save a file to reload it, Ctrl-C to stop")
            await stop.wait()
        console.say("stopping: deactivating every plugin")
    finally:
        await host.close()
        plugin_logs.removeHandler(handler)
        plugin_logs.setLevel(previous_level)
    console.say("stopped")
    return 0


def _stop_on_signals() -> asyncio.Event:
    """An event set by the first SIGINT (Ctrl-C) or SIGTERM; a second one
    interrupts as usual, for a shutdown that hangs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def stopping() -> None:
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping)
    return stop
