"""The contract between the host and a language runtime."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..context import ActivationContext


@dataclass(frozen=True)
class RuntimeLimits:
    """Effective limits for one plugin: what the manifest asked for, capped by
    the host's policy."""

    timeout_ms: int = 1000
    memory_mb: int = 64


@dataclass(frozen=True)
class PluginSource:
    """Everything a runtime needs to load one plugin version.

    ``main`` is already resolved and known to lie inside ``root``.
    ``display_file`` is how errors name the file (relative to the plugins
    folder, e.g. ``hello-py/plugin.py``) so that messages shown to plugin code
    never carry host paths.
    """

    plugin_id: str
    version: str
    root: Path
    main: Path
    display_file: str
    limits: RuntimeLimits


class Runtime(ABC):
    """Loads plugin sources of one language. One instance serves a host."""

    #: The manifest's ``runtime`` value this class handles.
    name: ClassVar[str]

    @abstractmethod
    async def load(self, source: PluginSource) -> "LoadedPlugin":
        """Compile the plugin and run its top level under its budget.

        Raises :class:`hostrt.errors.PluginCompileError` for source the
        sandbox refuses and :class:`hostrt.errors.PluginError` (or a subclass)
        if the top level fails; in both cases nothing is left running.
        """

    @abstractmethod
    def check(self, source: PluginSource) -> None:
        """Compile the plugin without running any of its code.

        Raises :class:`hostrt.errors.PluginCompileError` with file, line and
        column for source the runtime (or its sandbox policy) refuses. Used by
        ``hostrt check`` and by hot reload before touching a running version.
        """

    async def close(self) -> None:
        """Release anything shared between this runtime's plugins."""


class LoadedPlugin(ABC):
    """A compiled, loaded plugin version. Not yet active."""

    source: PluginSource

    @abstractmethod
    async def activate(self, ctx: "ActivationContext") -> None:
        """Call the plugin's ``activate(ctx)`` under its budget.

        Raises :class:`hostrt.errors.PluginError` (or a subclass) naming the
        plugin's file and line if the plugin fails or breaks a limit.
        """

    @abstractmethod
    async def deactivate(self) -> None:
        """Call the plugin's ``deactivate(ctx)`` if it has one, then dispose
        everything in ``ctx.subscriptions`` (newest first), all in one entry
        under the budget. Errors are raised after every disposer has run."""

    @abstractmethod
    async def close(self) -> None:
        """Free the plugin's thread/isolate. Idempotent; never raises."""
