"""The host: discovery, lifecycle and dependency order.

:class:`Host` is asyncio-native: every lifecycle method is a coroutine and
plugin code never runs on the event loop's thread. :class:`SyncHost` wraps
it for applications that are not async.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import callchain
from .capabilities import Capability, is_valid_name, parse_capability
from .commands import CommandInfo, CommandRegistry
from .context import ActivationContext, ContextLimits, HostServices
from .events import HOST, EventBus, EventDeclaration, EventDelivery, EventPolicy, HostHandler, HostSubscription
from .hostmethods import (
    DEFAULT_MAX_PARAMS_BYTES,
    DEFAULT_RESULT_MAX_BYTES,
    HostFunction,
    HostMethod,
    HostMethods,
)
from .payloads import schema_refusal
from .settings import SettingsSchema, read_settings, write_setting
from .errors import (
    CapabilityError,
    DependencyError,
    EventError,
    HostrtError,
    LifecycleError,
    ManifestError,
    ManifestProblem,
    PluginError,
    PluginNotFoundError,
)
from .grants import GrantManager
from .lifecycle import ACTIVATABLE, RUNNING, PluginRecord, PluginState
from .loader import plugin_source
from .manifest import DEFAULT_MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES, Manifest, load_manifest
from .ordering import activation_order, conflicts_between, requirement_problems
from .reload import HostWatch
from .runtimes.base import LoadedPlugin, Runtime, RuntimeLimits
from .store import Store
from .swap import HotSwap

log = logging.getLogger("hostrt.host")

#: How long closing waits for events still queued for the host's handlers.
CLOSE_EVENTS_WAIT_S = 5.0

#: Hears about lifecycle changes: ``listener(record, error)``.
LifecycleListener = Callable[[PluginRecord, "HostrtError | None"], None]


@dataclass(frozen=True)
class HostPolicy:
    """Limits the host applies whatever a manifest asks for.

    A manifest's ``limits`` are requests: the effective value is the request
    (or the default) capped at the maximum.
    """

    default_timeout_ms: int = 1000
    max_timeout_ms: int = 5000
    default_memory_mb: int = 64
    max_memory_mb: int = 256
    storage_quota_bytes: int = 1024 * 1024
    #: When True a plugin is activated only once every capability it requests
    #: has been granted; otherwise it is ``blocked`` with the missing list.
    #: When False it activates and each ungranted call is refused instead.
    require_all_grants: bool = True
    #: Event delivery limits: nesting depth, per-plugin emit rate, inbox size.
    events: EventPolicy = EventPolicy()

    def limits_for(self, manifest: Manifest) -> RuntimeLimits:
        asked = manifest.limits
        timeout = asked.timeout_ms if asked.timeout_ms is not None else self.default_timeout_ms
        memory = asked.memory_mb if asked.memory_mb is not None else self.default_memory_mb
        return RuntimeLimits(
            timeout_ms=min(timeout, self.max_timeout_ms),
            memory_mb=min(memory, self.max_memory_mb),
        )


def default_runtimes() -> list[Runtime]:
    """The runtimes a host gets when it names none."""
    from .runtimes.js import JavaScriptRuntime
    from .runtimes.python import PythonRuntime

    return [PythonRuntime(), JavaScriptRuntime()]


class Host(HotSwap):
    """Discovers, validates, activates and deactivates the plugins in one folder.

    ``db_path`` is the SQLite file holding grants, settings, plugin storage
    and the audit log (``":memory:"`` for a throw-away host).
    """

    def __init__(
        self,
        plugins_dir: str | Path,
        db_path: str | Path = ":memory:",
        *,
        policy: HostPolicy | None = None,
        runtimes: Sequence[Runtime] | None = None,
    ) -> None:
        self.plugins_dir = Path(plugins_dir)
        self.policy = policy or HostPolicy()
        self.store = Store(db_path)
        self._records: dict[str, PluginRecord] = {}
        self._invalid: dict[str, PluginRecord] = {}
        self._runtimes = {r.name: r for r in (runtimes if runtimes is not None else default_runtimes())}
        self._requests_cache: dict[str, tuple[Capability, ...]] = {}
        # What a new version on disk requests while it waits for grants
        # (hot reload keeps the running version meanwhile).
        self._pending: dict[str, tuple[Capability, ...]] = {}
        self.grants = GrantManager(self.store, self._requested_capabilities, pending=self._pending.get)
        self.bus = EventBus(self.store, self.grants, self.policy.events)
        self.methods = HostMethods()
        self._commands = CommandRegistry()
        self._lock = asyncio.Lock()
        self._closed = False
        # Set when close() begins: from then on no plugin is started.
        self._stopping = False
        # The watches entered on this host; close() ends them.
        self._watches: set[HostWatch] = set()
        self._lifecycle_listeners: list[LifecycleListener] = []
        # Replaced versions being freed in the background.
        self._closing: set[asyncio.Task[None]] = set()

    # -- read-only views ----------------------------------------------------

    @property
    def plugins(self) -> Mapping[str, PluginRecord]:
        """Plugins with a valid manifest, by id."""
        return MappingProxyType(self._records)

    @property
    def invalid(self) -> Mapping[str, PluginRecord]:
        """Plugin folders whose manifest is invalid, by folder name (their id
        cannot be trusted). ``record.error`` is the :class:`ManifestError`."""
        return MappingProxyType(self._invalid)

    def _record(self, plugin_id: str) -> PluginRecord:
        try:
            return self._records[plugin_id]
        except KeyError:
            invalid = self._invalid.get(plugin_id)
            if invalid is not None:
                raise LifecycleError(f"plugin folder '{plugin_id}' is invalid: {invalid.error}") from None
            raise PluginNotFoundError(f"no plugin with id '{plugin_id}' has been discovered") from None

    def _manifests(self, *, active: bool = False) -> dict[str, Manifest]:
        """The manifests of the plugins known (``active``: running), by id."""
        return {pid: r.manifest for pid, r in self._records.items()
                if r.manifest is not None and (not active or r.state is PluginState.ACTIVE)}

    def _conflicting(self, plugin_id: str, manifest: Manifest) -> str | None:
        """The id of an active plugin (other than ``plugin_id``) that
        ``manifest`` conflicts with, either way round; None if none does."""
        for other_id, other in self._manifests(active=True).items():
            if other_id != plugin_id and conflicts_between(manifest, other):
                return other_id
        return None

    def _requested_capabilities(self, plugin_id: str) -> tuple[Capability, ...] | None:
        record = self._records.get(plugin_id)
        if record is None or record.manifest is None:
            return None
        cached = self._requests_cache.get(plugin_id)
        if cached is None:
            cached = tuple(parse_capability(c) for c in record.manifest.capabilities)
            self._requests_cache[plugin_id] = cached
        return cached

    # -- discovery ----------------------------------------------------------

    async def discover(self) -> Mapping[str, PluginRecord]:
        """Scan the plugins folder: every sub-folder with a ``plugin.json``
        is validated. Active plugins keep running the version they loaded;
        others pick up their current manifest. Returns :attr:`plugins`."""
        async with self._lock:
            self._discover()
        return self.plugins

    def _discover(self) -> None:
        if not self.plugins_dir.is_dir():
            raise HostrtError(f"plugins folder '{self.plugins_dir}' does not exist")
        disabled = set(self.store.disabled_plugins())
        found: dict[str, PluginRecord] = {}
        invalid: dict[str, PluginRecord] = {}
        for folder in sorted(self.plugins_dir.iterdir()):
            record = self._read_folder(folder, disabled)
            if record is not None:
                (found if record.manifest is not None else invalid)[folder.name] = record
        # A running plugin keeps the version it loaded, even if its folder
        # changed or went away, until it is deactivated or reloaded.
        for pid, current in self._records.items():
            if current.state in RUNNING:
                found[pid] = current
                invalid.pop(pid, None)
        self._records = found
        self._invalid = invalid
        self._requests_cache.clear()
        # Only a running plugin has a new version waiting for grants.
        for pid in [pid for pid in self._pending if pid not in found or found[pid].state not in RUNNING]:
            del self._pending[pid]
        for pid, record in found.items():
            log.debug("discovered %s %s (%s)", pid, record.version, record.state)

    def _read_folder(self, folder: Path, disabled: set[str]) -> PluginRecord | None:
        """A fresh record for one folder as it is on disk now: valid, or
        invalid with its ManifestError; None if it is no plugin folder."""
        manifest_file = folder / "plugin.json"
        try:
            if folder.name.startswith(".") or not folder.is_dir() or not manifest_file.exists():
                return None
            manifest = load_manifest(folder)
        except ManifestError as exc:
            return PluginRecord(folder, None, exc)
        except Exception as exc:  # an unreadable folder must not stop discovery of the rest
            problem = ManifestProblem("$", f"cannot be read ({type(exc).__name__})")
            return PluginRecord(folder, None, ManifestError(str(manifest_file), [problem]))
        if manifest.id != folder.name:
            # Folder names are unique, so this makes ids unique: no copy of
            # a plugin can claim its id (and with it its grants, storage
            # and settings), even while the real manifest is broken.
            problem = ManifestProblem(
                "$.id", f"id '{manifest.id}' must equal the plugin's folder name '{folder.name}'"
            )
            return PluginRecord(folder, None, ManifestError(str(manifest_file), [problem]))
        record = PluginRecord(folder, manifest, None)
        if manifest.id in disabled:
            record._state = PluginState.DISABLED
        return record

    # -- lifecycle ----------------------------------------------------------

    async def activate(self, plugin_id: str) -> PluginRecord:
        """Activate a plugin (and, first, the plugins it requires).

        Problems with the plugin itself end in its state (``blocked`` or
        ``failed`` with :attr:`PluginRecord.error`), not in an exception, so
        one plugin never stops the others; unknown ids, invalid manifests and
        disabled plugins raise.
        """
        async with self._lock:
            self._check_open()
            await self._activate(plugin_id, chain=())
        return self._record(plugin_id)

    async def _activate(self, plugin_id: str, chain: tuple[str, ...]) -> None:
        record = self._record(plugin_id)
        if record.state is PluginState.ACTIVE:
            return
        if record.state is PluginState.DISABLED:
            raise LifecycleError(f"plugin '{plugin_id}' is disabled; enable it first")
        if record.state not in ACTIVATABLE:
            raise LifecycleError(f"plugin '{plugin_id}' cannot be activated while {record.state}")
        manifest = record.manifest
        assert manifest is not None
        problems = requirement_problems(manifest, self._manifests())
        if problems:
            return self._set(record, PluginState.BLOCKED, DependencyError(f"plugin '{plugin_id}' {'; '.join(problems)}"))
        for req in manifest.relationships.requires:
            if req.id in chain or req.id == plugin_id:
                cycle = " -> ".join([*chain, plugin_id, req.id])
                return self._set(record, PluginState.BLOCKED, DependencyError(
                    f"plugin '{plugin_id}' is on a dependency cycle: {cycle}"))
            dep = self._records[req.id]
            if dep.state is not PluginState.ACTIVE and dep.state in ACTIVATABLE:
                await self._activate(req.id, (*chain, plugin_id))
            if dep.state is not PluginState.ACTIVE:
                reason = f" ({dep.error.message})" if dep.error is not None else ""
                return self._set(record, PluginState.BLOCKED, DependencyError(
                    f"plugin '{plugin_id}' requires '{req.id}', which is {dep.state}{reason}"))
        conflicting = self._conflicting(plugin_id, manifest)
        if conflicting is not None:
            return self._set(record, PluginState.BLOCKED, DependencyError(
                f"plugin '{plugin_id}' conflicts with active plugin '{conflicting}'"))
        if self.policy.require_all_grants:
            missing = self.grants.missing(plugin_id)
            if missing:
                return self._set(record, PluginState.BLOCKED, CapabilityError(
                    plugin_id, ", ".join(missing), "requested but not granted"))
        await self._start(record, manifest)

    async def _start(self, record: PluginRecord, manifest: Manifest, previous_state: Any = None) -> None:
        runtime = self._runtimes.get(manifest.runtime_name)
        if runtime is None:
            return self._set(record, PluginState.FAILED, PluginError(
                record.id, f"this host has no '{manifest.runtime_name}' runtime"))
        try:
            # Declared first: an event name someone else declares blocks the
            # plugin before any of its code runs.
            self.bus.declare(self._event_declarations(manifest))
        except EventError as exc:
            return self._set(record, PluginState.BLOCKED, EventError(f"plugin '{record.id}': {exc.message}"))
        self._set(record, PluginState.LOADING, None)
        try:
            loaded = await self._load(record.folder, manifest, runtime)
        except Exception as exc:
            self._release(manifest.id, None)
            return self._set(record, PluginState.FAILED, self._as_error(record.id, exc, "starting"))
        error = await self._launch(record, manifest, loaded, previous_state)
        if error is not None:
            self._set(record, PluginState.FAILED, error)

    async def _load(self, folder: Path, manifest: Manifest, runtime: Runtime) -> LoadedPlugin:
        """Compile one version and run its top level; nothing of it is
        active yet. The text loaded is kept (``loaded.source``) so that this
        exact version can be loaded again even after its files changed."""
        source = plugin_source(folder, manifest, self.policy.limits_for(manifest))
        return await runtime.load(await asyncio.to_thread(source.snapshot))

    async def _launch(self, record: PluginRecord, manifest: Manifest, loaded: LoadedPlugin,
                      previous_state: Any) -> HostrtError | None:
        """Activate a loaded version: declare its events, give it a context
        (with the state its predecessor handed over), put it on the bus and
        the command list and call its ``activate``. On success the record
        holds it and is ``active``; on failure everything is undone, the
        version closed and the error returned."""
        context: ActivationContext | None = None
        try:
            self.bus.declare(self._event_declarations(manifest))
            context = ActivationContext(
                plugin_id=manifest.id,
                plugin_version=manifest.version,
                store=self.store,
                grants=self.grants,
                settings_schema=manifest.settings,
                limits=ContextLimits(storage_quota_bytes=self.policy.storage_quota_bytes),
                services=self._services(),
                previous_state=previous_state,
            )
            self.bus.attach(manifest.id, loaded)
            self._commands.attach(manifest.id, manifest.commands, loaded)
            with callchain.entering(manifest.id):
                await loaded.activate(context)
        except Exception as exc:
            self._release(manifest.id, context)
            await loaded.close()
            return self._as_error(record.id, exc, "starting")
        record._loaded, record._context = loaded, context
        self._set(record, PluginState.ACTIVE, None)
        loaded.on_crash(lambda error: self._on_crash(record, loaded, error))
        return None

    @staticmethod
    def _as_error(plugin_id: str, exc: Exception, doing: str) -> HostrtError:
        """A plugin's failure as it is reported: its own error, or, for a bug
        in the host (not the plugin's doing), a generic PluginError, logged
        with its traceback; either way only this plugin is affected."""
        if isinstance(exc, HostrtError):
            return exc
        log.error("unexpected error %s plugin %s", doing, plugin_id, exc_info=exc)
        return PluginError(plugin_id, f"internal error while {doing}: {type(exc).__name__}")

    def _services(self) -> HostServices:
        loop = asyncio.get_running_loop()
        self.bus.bind_loop(loop)
        return HostServices(bus=self.bus, methods=self.methods, commands=self._commands, loop=loop)

    def _event_declarations(self, manifest: Manifest) -> list[EventDeclaration]:
        return [
            EventDeclaration.build(decl.name, manifest.id, decl.payload_schema, decl.max_payload_bytes, decl.description)
            for decl in manifest.events
        ]

    def _release(self, plugin_id: str, context: ActivationContext | None) -> None:
        """Take a stopping plugin off the bus and the command list and close
        its context: from here on nothing reaches it and it reaches nothing."""
        self.bus.detach(plugin_id)
        self.bus.undeclare_owner(plugin_id)
        self._commands.detach(plugin_id)
        self.grants.flush_denials(plugin_id)
        if context is not None:
            context.close()

    def _on_crash(self, record: PluginRecord, loaded: LoadedPlugin, error: PluginError) -> None:
        """A runtime reports that an active plugin failed between entries."""
        asyncio.get_running_loop().create_task(self._crashed(record, loaded, error))

    async def _crashed(self, record: PluginRecord, loaded: LoadedPlugin, error: PluginError) -> None:
        async with self._lock:
            if record._loaded is not loaded or record.state is not PluginState.ACTIVE:
                return  # already deactivated or replaced
            context = record._context
            record._loaded = record._context = None
            self._release(record.id, context)
            await loaded.close()
            self._set(record, PluginState.FAILED, error)
            # As when a reload leaves it failed: nothing runs on top of a
            # failed plugin; its dependents start again when it does.
            await self._block_dependents(record.id, "is failed")

    def on_lifecycle(self, listener: LifecycleListener) -> Callable[[], None]:
        """Call ``listener(record, error)`` after every lifecycle change of
        any plugin (the record already holds the new state; ``error`` is
        why it failed or was blocked, else None). Returns a function that
        removes the listener. A failing listener is logged and ignored."""
        self._lifecycle_listeners.append(listener)
        return lambda: self._lifecycle_listeners.remove(listener) if listener in self._lifecycle_listeners else None

    def _set(self, record: PluginRecord, state: PluginState, error: HostrtError | None) -> None:
        record._state = state
        if error is not None or state in (PluginState.ACTIVE, PluginState.LOADING):
            record._error = error
        if state is not PluginState.LOADING:
            detail: dict[str, Any] = {"state": state.value, "version": record.version}
            if error is not None:
                detail["error"] = error.to_dict()
            self.store.audit(record.id, "lifecycle", detail)
        if error is not None:
            log.warning("plugin %s is %s: %s", record.id, state.value, error)
        else:
            log.info("plugin %s is %s", record.id, state.value)
        for listener in list(self._lifecycle_listeners):
            try:
                listener(record, error)
            except Exception:  # noqa: BLE001 - an observer must not change the outcome
                log.exception("lifecycle listener failed for plugin %s", record.id)

    async def deactivate(self, plugin_id: str) -> PluginRecord:
        """Deactivate a plugin, after the active plugins that require it.

        The plugin's ``deactivate`` runs, then everything in its
        subscriptions is disposed and its context closed. An error in plugin
        code is kept on the record; the plugin ends ``inactive`` either way.
        """
        async with self._lock:
            await self._deactivate(plugin_id)
        return self._record(plugin_id)

    async def _deactivate(self, plugin_id: str) -> None:
        record = self._record(plugin_id)
        if record.state is not PluginState.ACTIVE:
            return
        for other in self._dependents(plugin_id):
            await self._deactivate(other.id)
        _, error = await self._stop(record)
        self._set(record, PluginState.INACTIVE, error)

    def _dependents(self, plugin_id: str) -> list[PluginRecord]:
        """The active plugins that require ``plugin_id``."""
        return [
            other for other in self._records.values()
            if other.state is PluginState.ACTIVE and other.manifest is not None
            and any(r.id == plugin_id for r in other.manifest.relationships.requires)
        ]

    async def _stop(self, record: PluginRecord, *, close_later: bool = False) -> tuple[Any, HostrtError | None]:
        """Run an active plugin's ``deactivate``, take it off the bus and the
        command list, close its context and free its runtime (``close_later``:
        in the background, so that a reload's new version need not wait for
        the old one's memory to be freed). Returns the state its
        ``deactivate`` handed over (None if none or if it failed) and its
        error; the caller sets the record's next state."""
        self._set(record, PluginState.DEACTIVATING, None)
        plugin_id = record.id
        loaded, context = record._loaded, record._context
        record._loaded = record._context = None
        state: Any = None
        error: HostrtError | None = None
        # No events or commands reach a deactivating plugin; it may still
        # emit its own events from deactivate.
        self.bus.detach(plugin_id)
        self._commands.detach(plugin_id)
        try:
            if loaded is not None:
                with callchain.entering(plugin_id):
                    state = await loaded.deactivate()
        except Exception as exc:
            error = self._as_error(plugin_id, exc, "deactivating")
        finally:
            self._release(plugin_id, context)
            if loaded is not None and close_later:
                closing = asyncio.get_running_loop().create_task(loaded.close())
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            elif loaded is not None:
                await loaded.close()
        return state, error

    async def activate_all(self) -> dict[str, PluginState]:
        """Activate every valid, enabled plugin in dependency order and
        return each plugin's resulting state. Cycles and missing
        dependencies block the plugins involved, by name; the rest go on."""
        async with self._lock:
            self._check_open()
            candidates = {
                pid: r.manifest
                for pid, r in self._records.items()
                if r.manifest is not None and r.state is not PluginState.DISABLED
            }
            result = activation_order(candidates)
            for pid, error in result.blocked.items():
                if self._records[pid].state is not PluginState.ACTIVE:
                    self._set(self._records[pid], PluginState.BLOCKED, error)
            for pid in result.order:
                if self._records[pid].state in ACTIVATABLE:
                    await self._activate(pid, chain=())
            return {pid: r.state for pid, r in self._records.items()}

    async def deactivate_all(self) -> None:
        """Deactivate every active plugin, dependents first."""
        async with self._lock:
            active = self._manifests(active=True)
            order = activation_order(active).order
            leftovers = [pid for pid in active if pid not in order]
            for pid in [*reversed(order), *leftovers]:
                await self._deactivate(pid)

    async def disable(self, plugin_id: str) -> PluginRecord:
        """Deactivate and disable a plugin; remembered across restarts."""
        async with self._lock:
            await self._deactivate(plugin_id)
            record = self._record(plugin_id)
            self.store.set_disabled(plugin_id, True)
            self._set(record, PluginState.DISABLED, None)
        return record

    async def enable(self, plugin_id: str) -> PluginRecord:
        """Clear the disabled flag; the plugin can then be activated."""
        async with self._lock:
            record = self._record(plugin_id)
            self.store.set_disabled(plugin_id, False)
            if record.state is PluginState.DISABLED:
                self._set(record, PluginState.INACTIVE, None)
        return record

    # -- events, host methods and commands ----------------------------------

    def declare_event(
        self,
        name: str,
        *,
        schema: dict[str, Any] | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        description: str | None = None,
    ) -> None:
        """Declare an event the host emits (``app.started``...). Plugins
        subscribe to it with ``events.subscribe:<name>``; only the host can
        emit it. Raises HostrtError for a bad name or schema and EventError
        if the name is already declared (by the host or an active plugin).
        """
        if not is_valid_name(name):
            raise EventError(f"event name {name!r} is not a valid name (dot-separated parts of letters, "
                             "digits, '_' and '-')")
        refusal = schema_refusal(schema) if schema is not None else None
        if refusal is not None:
            raise EventError(f"event '{name}': invalid schema: {refusal}")
        if type(max_payload_bytes) is not int or not 1 <= max_payload_bytes <= MAX_PAYLOAD_BYTES:
            raise EventError(f"event '{name}': max_payload_bytes must be 1..{MAX_PAYLOAD_BYTES}")
        existing = self.bus.declaration(name)
        if existing is not None and existing.owner == HOST:
            raise EventError(f"event '{name}' is already declared by the host")
        self.bus.declare([EventDeclaration.build(name, HOST, schema, max_payload_bytes, description)])

    async def emit(self, name: str, payload: Any = None) -> EventDelivery:
        """Emit a host-declared event and wait until every subscriber has
        handled it; return what became of it (delivered, failed, dropped...).

        The payload is checked first: PayloadError (naming the event, the
        JSON path and the problem) if it fails its schema or size, EventError
        if the host did not declare ``name``. Handler errors never raise
        here: they are in the returned :class:`EventDelivery`. Called from a
        host method while a plugin's handler waits on it, the emit does not
        wait for that plugin (see ``EventDelivery.pending``).
        """
        self.bus.bind_loop(asyncio.get_running_loop())
        emission = self.bus.publish(HOST, name, payload, plain=True)
        return await self.bus.wait(emission)

    def on(self, pattern: str, handler: HostHandler) -> HostSubscription:
        """Subscribe the host itself to events matching ``pattern`` (``*``
        matches any run of characters), plugins' events included:
        ``handler(event)`` (sync or async) gets an :class:`~hostrt.events.Event`
        with ``name``, ``source`` and a fresh copy of the ``payload``. Host
        handlers run on the loop, one event at a time in emit order; an
        exception is logged and reported like a plugin handler's.
        ``dispose()`` on the result ends the subscription."""
        return self.bus.subscribe_host(pattern, handler)

    async def events_idle(self) -> None:
        """Wait until every event emitted so far (and every event emitted by
        their handlers) has been delivered."""
        await self.bus.idle()

    def expose(
        self,
        name: str,
        fn: HostFunction,
        *,
        params_schema: dict[str, Any] | None = None,
        result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
        max_params_bytes: int = DEFAULT_MAX_PARAMS_BYTES,
        page_size: int | None = None,
        max_page_size: int | None = None,
        description: str | None = None,
    ) -> HostMethod:
        """Expose ``fn`` to plugins holding ``host.call:<name>``; see
        :meth:`hostrt.hostmethods.HostMethods.expose` for the parameters."""
        return self.methods.expose(name, fn, params_schema=params_schema, result_max_bytes=result_max_bytes,
                                   max_params_bytes=max_params_bytes, page_size=page_size,
                                   max_page_size=max_page_size, description=description)

    async def invoke(self, plugin_id: str, name: str, params: Any = None) -> Any:
        """Run command ``name`` of an active plugin and return its result.

        Parameters and result are checked against the command's declaration
        (PayloadError); the handler runs under the plugin's time limit.
        Raises CommandNotFoundError if the plugin is not active or has not
        registered the command, and PluginError (naming plugin, command,
        file and line) if the handler fails.
        """
        return await self._commands.invoke(plugin_id, name, params)

    def commands(self) -> list[CommandInfo]:
        """The commands active plugins offer right now, for host UIs."""
        return self._commands.list()

    # -- settings (host side: no capability needed) ---------------------------

    def get_settings(self, plugin_id: str) -> dict[str, Any]:
        """A plugin's settings: schema defaults merged with stored values."""
        manifest = self._record(plugin_id).manifest
        assert manifest is not None
        return read_settings(self.store, plugin_id, SettingsSchema(manifest.settings))

    def set_setting(self, plugin_id: str, key: str, value: Any) -> None:
        """Change a plugin setting on the user's behalf, validated against
        the plugin's settings schema."""
        manifest = self._record(plugin_id).manifest
        assert manifest is not None
        write_setting(self.store, plugin_id, SettingsSchema(manifest.settings), key, value)

    # -- shutdown -----------------------------------------------------------

    async def close(self) -> None:
        """Deactivate everything, let the host's own event handlers finish
        (at most :data:`CLOSE_EVENTS_WAIT_S`), release the runtimes and
        close the store."""
        if self._closed:
            return
        self._stopping = True
        for watch in list(self._watches):
            await watch.stop()
        await self.deactivate_all()
        await asyncio.gather(*self._closing)
        await self.bus.close(CLOSE_EVENTS_WAIT_S)
        for runtime in self._runtimes.values():
            await runtime.close()
        self.store.close()
        self._closed = True

    def _check_open(self) -> None:
        """Refuse to start plugins once :meth:`close` has begun (called
        holding the lock, so a call that waited for it behind close is
        refused too): they would run on in runtimes about to be closed."""
        if self._stopping:
            raise LifecycleError("the host is closed")

    async def __aenter__(self) -> "Host":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
