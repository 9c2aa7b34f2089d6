"""Plugin lifecycle states and the record the host keeps for each plugin."""

from __future__ import annotations

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
