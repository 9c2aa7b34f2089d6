"""Plugin lifecycle states and the record the host keeps for each plugin."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import HostrtError

if TYPE_CHECKING:
    from .context import ActivationContext
    from .manifest import Manifest
    from .runtimes.base import LoadedPlugin


class PluginState(str, Enum):
    """Where a plugin is in its life.

    ``discovered -> validated | invalid -> loading -> active -> deactivating
    -> inactive``, plus ``blocked`` (a grant or dependency is missing),
    ``failed`` (load or plugin code failed; :attr:`PluginRecord.error` says
    why) and ``disabled`` (turned off by the user; remembered in the store).
    """

    DISCOVERED = "discovered"
    VALIDATED = "validated"
    INVALID = "invalid"
    LOADING = "loading"
    ACTIVE = "active"
    DEACTIVATING = "deactivating"
    INACTIVE = "inactive"
    BLOCKED = "blocked"
    FAILED = "failed"
    DISABLED = "disabled"

    def __str__(self) -> str:
        return self.value


#: States from which :meth:`Host.activate` may start a plugin.
ACTIVATABLE = frozenset(
    {PluginState.VALIDATED, PluginState.INACTIVE, PluginState.BLOCKED, PluginState.FAILED}
)
#: States in which the plugin has code loaded.
RUNNING = frozenset({PluginState.LOADING, PluginState.ACTIVE, PluginState.DEACTIVATING})


class PluginRecord:
    """What the host knows about one plugin folder. Read-only to callers."""

    def __init__(self, folder: Path, manifest: "Manifest | None", error: HostrtError | None) -> None:
        self._folder = folder
        self._manifest = manifest
        self._state = PluginState.VALIDATED if manifest is not None else PluginState.INVALID
        self._error = error
        self._loaded: LoadedPlugin | None = None
        self._context: ActivationContext | None = None

    @property
    def id(self) -> str:
        """The manifest id, or the folder name when the manifest is invalid."""
        return self._manifest.id if self._manifest is not None else self._folder.name

    @property
    def version(self) -> str | None:
        return self._manifest.version if self._manifest is not None else None

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def manifest(self) -> "Manifest | None":
        return self._manifest

    @property
    def state(self) -> PluginState:
        return self._state

    @property
    def error(self) -> HostrtError | None:
        """Why the plugin is invalid, blocked or failed (kept until it next
        activates successfully)."""
        return self._error

    def __repr__(self) -> str:
        return f"<PluginRecord {self.id} {self.version or ''} {self._state.value}>"


class ReloadOutcome(str, Enum):
    """What bringing one plugin folder up to date with the disk did."""

    #: The new version replaced the running one.
    RELOADED = "reloaded"
    #: The new version was refused before the running one was touched (bad
    #: manifest, code that does not compile or whose top level fails, a
    #: capability or dependency it lacks); the running version goes on.
    KEPT = "kept"
    #: The new version failed to activate; the previous version (the exact
    #: text it was loaded from) was started again and runs.
    RESTORED = "restored"
    #: The plugin was not running and now is (a new folder, or a fixed one).
    STARTED = "started"
    #: The plugin is not running afterwards and ``error`` says why: it could
    #: not start, or neither the new nor the previous version could.
    FAILED = "failed"
    #: The manifest was read again; the plugin was stopped on purpose
    #: (inactive, disabled, or never activated) and stays stopped.
    UPDATED = "updated"
    #: The folder is gone; the plugin was deactivated if it was running.
    REMOVED = "removed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ReloadResult:
    """What :meth:`Host.reload` or a watched change did to one plugin."""

    plugin_id: str
    outcome: ReloadOutcome
    #: The plugin's state afterwards.
    state: PluginState
    #: The version the record describes afterwards: the new one, the one
    #: restored, or (when neither could start) the previous one; for a
    #: plugin that was not running, the one on disk.
    version: str | None
    #: The version that was running before, if one was.
    previous_version: str | None = None
    #: Why the new version was refused or the plugin does not run.
    error: HostrtError | None = None
    #: Capabilities granted on the way (only when the caller asked for the
    #: requested ones to be granted, as ``hostrt dev --grant-requested`` does).
    granted: tuple[str, ...] = ()
    #: Wall time from starting the reload to its end (the new version active).
    seconds: float = 0.0

    def __str__(self) -> str:
        text = f"{self.plugin_id}: {self.outcome}"
        if self.version:
            text += f" ({self.version})"
        if self.error is not None:
            text += f": {self.error.message}"
        return text
