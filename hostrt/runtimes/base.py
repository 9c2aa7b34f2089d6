"""The contract between the host and a language runtime."""

from __future__ import annotations

import os
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, TypeVar

from ..errors import BudgetExceededError, PluginError

#: The largest main file a runtime will read (bundled JavaScript with its
#: dependencies is the big case).
MAX_SOURCE_BYTES = 16 * 1024 * 1024
#: The largest state a plugin's ``deactivate`` may hand to its next version,
#: in UTF-8 bytes of compact JSON (see :meth:`LoadedPlugin.deactivate`).
MAX_STATE_BYTES = 1024 * 1024

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
    #: The text of ``main`` as read once (see :meth:`snapshot`); when set,
    #: :meth:`read_text` returns it instead of reading the file again.
    text: str | None = field(default=None, repr=False, compare=False)

    def snapshot(self) -> "PluginSource":
        """This source with ``main``'s text read now and kept, so that the
        very version loaded can be loaded again later (hot reload restores a
        running version after the files on disk have changed)."""
        return self if self.text is not None else replace(self, text=self.read_text())

    def read_text(self) -> str:
        """Read ``main`` as UTF-8 (a leading byte-order mark is dropped),
        re-checking that what is opened is the regular file inside ``root``
        that was resolved. A :meth:`snapshot` returns its kept text.

        The folder belongs to the plugin author, who could swap ``main`` or a
        directory on its path for a symlink between resolution and reading;
        the file is opened without following a final symlink and the opened
        descriptor's real path is checked again.
        """
        if self.text is not None:
            return self.text

        def fail(why: str) -> PluginError:
            return PluginError(self.plugin_id, f"cannot load main file: {why}", file=self.display_file)

        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.main, flags)
        except OSError as exc:
            raise fail(exc.strerror or type(exc).__name__) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise fail("not a regular file")
            proc_link = f"/proc/self/fd/{fd}"
            real = Path(os.path.realpath(proc_link if os.path.exists(proc_link) else self.main))
            if not real.is_relative_to(self.root):
                raise fail("it no longer lies inside the plugin folder")
            if info.st_size > MAX_SOURCE_BYTES:
                raise fail(f"larger than {MAX_SOURCE_BYTES} bytes")
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read(MAX_SOURCE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_SOURCE_BYTES:
            raise fail(f"larger than {MAX_SOURCE_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise fail(f"not UTF-8 (byte {exc.start})") from None
        return text[1:] if text.startswith("\ufeff") else text


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
    async def deactivate(self) -> Any:
        """Call the plugin's ``deactivate(ctx)`` if it has one, then dispose
        everything in ``ctx.subscriptions`` (newest first), all in one entry
        under the budget, and return the plugin's state for its next version.

        The state is what ``deactivate`` returned (a JavaScript promise is
        awaited), checked as JSON when it returned and handed back as fresh
        plain JSON data that nothing in the plugin can reach. It is None
        when ``deactivate`` returned nothing (``None``, ``undefined``,
        ``null``), when the plugin has no ``deactivate`` and when the plugin
        is not active (a second call does nothing).

        The state is handed over only when the whole entry succeeded. If
        ``deactivate`` or a disposer fails, a PluginError is raised after
        every disposer has run (the first error, with a count when there
        were several) and there is no state. A returned value that is not
        JSON, or is larger than :data:`MAX_STATE_BYTES` as compact JSON,
        is refused the same way: every disposer still runs and the plugin
        is fully deactivated, then a PluginError naming the plugin and its
        file is raised (see :func:`state_refused`)."""

    @abstractmethod
    async def call_export(self, name: str, *args: Any) -> Any:
        """Call the plugin's exported function ``name`` (a module-level
        function in Python, ``module.exports[name]`` in JavaScript) with JSON
        arguments, as one entry under the plugin's time limit, awaiting a
        returned promise; return its result as fresh JSON data.

        Raises HostrtError for arguments that are not JSON and a PluginError
        subclass if the function is missing, fails, returns something that
        is not JSON or breaks a limit.
        """

    @abstractmethod
    async def deliver_event(self, handler_ids: list[int], payload_json: str, info: dict[str, Any]) -> list[PluginError]:
        """Deliver one event to the plugin's handlers ``handler_ids`` (ids
        the runtime gave them when the plugin subscribed), in that order,
        as one entry under the plugin's time limit. Each handler gets a
        fresh copy of the payload (``payload_json`` is its JSON text) and
        ``info`` (``{"name": ..., "source": ...}``); an async JavaScript
        handler is awaited before the next one starts.

        Returns the errors of the handlers that threw (the others still
        ran). Raises a PluginError subclass if the entry as a whole failed:
        a limit was broken (the plugin is then stopped and reported through
        :meth:`on_crash`, as for any entry after activation)."""

    @abstractmethod
    async def run_command(self, handler_id: int, name: str, params_json: str, max_result_bytes: int) -> Any:
        """Call command handler ``handler_id`` (registered for command
        ``name``) with the parameters (JSON text) as one entry under the
        plugin's time limit, awaiting a returned promise, and return the
        result as fresh JSON data. Raises a PluginError subclass naming the
        command, file and line if the handler throws, returns something
        that is not JSON or breaks a limit (a broken limit stops the
        plugin, as in :meth:`deliver_event`). A result larger than
        ``max_result_bytes`` of JSON may be refused with PayloadError before
        the host holds all of it (the registry checks the size in any
        case)."""

    def on_crash(self, callback: "Callable[[PluginError], None]") -> None:
        """Ask to be told, through ``callback(error)``, when the plugin fails
        on its own after activation (plugin code the runtime runs without
        the host asking, such as a timer, broke a limit). The runtime has
        already stopped the plugin's code when it calls back. Runtimes that
        never run plugin code unasked need not override this."""

    @abstractmethod
    async def close(self) -> None:
        """Free the plugin's thread/isolate. Idempotent; never raises."""


_Loaded = TypeVar("_Loaded", bound=LoadedPlugin)


async def load_or_close(plugin: _Loaded, loading: Awaitable[None]) -> _Loaded:
    """Await ``loading`` (the plugin's own load step) and return the plugin;
    if loading fails in any way, close the plugin first so nothing is left
    running, then re-raise."""
    try:
        await loading
    except BaseException:
        await plugin.close()
        raise
    return plugin


def reworded(error: PluginError, reason: str) -> PluginError:
    """``error`` with another reason: same type, plugin, place and traceback."""
    return type(error)(
        error.plugin_id,
        reason,
        file=error.file,
        line=error.line,
        column=error.column,
        plugin_traceback=error.plugin_traceback,
    )


def state_refused(source: PluginSource, detail: str | None, *, line: int | None = None,
                  column: int | None = None, plugin_traceback: str = "") -> PluginError:
    """The error for state ``deactivate`` returned that cannot be handed
    over: ``detail`` says why it is not JSON; None means it is larger than
    :data:`MAX_STATE_BYTES`."""
    reason = (f"deactivate returned more than {MAX_STATE_BYTES} bytes of state" if detail is None
              else f"deactivate returned state that is not JSON: {detail}")
    return PluginError(source.plugin_id, reason, file=source.display_file, line=line, column=column,
                       plugin_traceback=plugin_traceback)


def combined_error(plugin_id: str, errors: list[PluginError], doing: str) -> PluginError:
    """One error standing for several from the same step (every disposer
    runs even if some fail): the first, with the count when there were
    more. A timeout outranks ordinary errors: it says the plugin was
    stopped."""
    first = next((e for e in errors if isinstance(e, BudgetExceededError)), errors[0])
    if len(errors) == 1:
        return first
    return reworded(first, f"{len(errors)} errors during {doing}; first: {first.reason}")
