"""The language-neutral activation context: the gate every plugin call passes.

Runtimes build what plugin code sees (a Python facade, the JavaScript shim)
on top of one :class:`ActivationContext` per active plugin. The context is
the authority: it knows which plugin it serves from the host (never from
anything the plugin sends), checks the stored grant on every call, validates
every value as plain JSON and hands back fresh copies, so nothing a plugin
holds is shared with the host or another plugin.

Never hand the context object itself to plugin code: its host-side methods
(:meth:`close`, :meth:`dispose_all`) are for the runtime.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import jsonvalue
from .capabilities import Capability, parse_capability
from .errors import (
    HostMethodError,
    HostrtError,
    LifecycleError,
    QuotaExceededError,
    RateLimitError,
    StorageError,
)
from .grants import GrantManager
from .keys import KEY_RE, describe_key
from .ratelimit import TokenBucket
from .runtimes.base import MAX_STATE_BYTES
from .settings import SettingsSchema, check_setting_name, read_settings, write_setting
from .store import Store

if TYPE_CHECKING:
    from .commands import CommandRegistry
    from .events import EventBus
    from .hostmethods import HostMethods

#: The longest log message kept; the rest is cut so one plugin cannot flood
#: the host's log handlers with a single call.
MAX_LOG_MESSAGE = 8192
#: The largest structured ``fields`` object on one log call, as compact JSON.
MAX_LOG_FIELDS_BYTES = 8192
#: Log records a plugin may write per second on average, and in one burst;
#: past that, records are dropped and counted, so one chatty (or hostile)
#: plugin cannot flood the host's log handlers.
LOG_RECORDS_PER_SECOND = 200
LOG_RECORDS_BURST = 1000
#: Host method calls of one plugin running at once; more wait their turn,
#: so a plugin firing thousands of calls without awaiting them cannot make
#: the host run thousands of host functions concurrently.
HOST_CALLS_IN_FLIGHT = 8
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}

STORAGE = Capability("storage")
SETTINGS_READ = Capability("settings.read")
SETTINGS_WRITE = Capability("settings.write")


def plugin_logger(plugin_id: str) -> logging.Logger:
    """The standard-library logger a plugin's output goes to:
    ``hostrt.plugins.<id>`` with dots in the id written as ``_``.

    Plugin ids may contain dots but never ``_``, so the mapping is one to
    one, and no plugin's logger is a child of another's (``victim.evil``
    would otherwise log through every handler attached to ``victim``).
    """
    return logging.getLogger("hostrt.plugins." + plugin_id.replace(".", "_"))


def printable(text: str) -> str:
    """``text`` with every unprintable character escaped (``\\n``, ``\\x1b``,
    ``\\u202e``...), so a plugin cannot forge log lines, move the cursor of
    a terminal or reverse the text a reader sees."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def write_plugin_log(plugin_id: str, level: str, message: str, fields: dict[str, Any] | None = None) -> None:
    """Validate and write one plugin log record (see
    :meth:`ActivationContext.log`). Runtimes also use it for output a plugin
    makes before it has a context (``console.log`` at the top level)."""
    if type(level) is not str or level not in LOG_LEVELS:
        raise HostrtError("log level must be one of 'debug', 'info', 'warn', 'error'")
    if type(message) is not str:
        raise HostrtError(f"log message must be a string, not {type(message).__name__}")
    if len(message) > MAX_LOG_MESSAGE:
        message = message[:MAX_LOG_MESSAGE] + f"... [{len(message) - MAX_LOG_MESSAGE} characters cut]"
    extra: dict[str, Any] = {"plugin_id": plugin_id}
    if fields is not None:
        if type(fields) is not dict:
            raise HostrtError(f"log fields must be an object, not {type(fields).__name__}")
        text = _encode(fields, "log fields", HostrtError, MAX_LOG_FIELDS_BYTES, path="fields")
        extra["plugin_fields"] = jsonvalue.decode(text)
    plugin_logger(plugin_id).log(LOG_LEVELS[level], "%s", printable(message), extra=extra)


@dataclass(frozen=True)
class HostServices:
    """The host's event bus, methods and commands, as a context reaches them."""

    bus: "EventBus"
    methods: "HostMethods"
    commands: "CommandRegistry"
    loop: asyncio.AbstractEventLoop


@dataclass(frozen=True)
class ContextLimits:
    """Per-plugin data limits applied by the context."""

    storage_quota_bytes: int = 1024 * 1024
    max_storage_keys_listed: int = 10000


class ActivationContext:
    """The gate for one active plugin version.

    Every method is synchronous, checks the plugin's stored grants at the
    moment of the call, and raises :class:`~hostrt.errors.HostrtError`
    subclasses whose messages carry no host paths and never run plugin code.
    After :meth:`close` every call fails with
    :class:`~hostrt.errors.LifecycleError`, so a plugin that kept a reference
    to its context cannot act once deactivated.

    ``previous_state`` is the JSON data the plugin's previous version
    returned from its ``deactivate`` (see
    :meth:`hostrt.runtimes.base.LoadedPlugin.deactivate`), for the host to
    hand over on a reload; None (the default) means there is none. It is
    checked here (plain JSON, at most
    :data:`~hostrt.runtimes.base.MAX_STATE_BYTES`; HostrtError otherwise)
    and kept only as text.
    """

    def __init__(
        self,
        *,
        plugin_id: str,
        plugin_version: str,
        store: Store,
        grants: GrantManager,
        settings_schema: dict[str, Any] | None = None,
        limits: ContextLimits | None = None,
        services: HostServices | None = None,
        previous_state: Any = None,
    ) -> None:
        self._id = plugin_id
        self._version = plugin_version
        self._store = store
        self._grants = grants
        self._settings = SettingsSchema(settings_schema)
        self._limits = limits or ContextLimits()
        self._disposers: list[Callable[[], None]] = []
        self._log_budget = TokenBucket(LOG_RECORDS_PER_SECOND, LOG_RECORDS_BURST)
        self._services = services
        self._emit_budget = (
            TokenBucket(services.bus.policy.rate_per_s, services.bus.policy.burst) if services is not None else None
        )
        self._host_call_slots: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self._closed = False
        # Only the text is kept: each runtime hands the plugin a copy made
        # from it, and nothing the host later does to its own value shows.
        self._previous_state_json = (
            None if previous_state is None
            else _encode(previous_state, "previous state", HostrtError, MAX_STATE_BYTES)
        )

    # -- identity -----------------------------------------------------------

    @property
    def plugin_id(self) -> str:
        return self._id

    @property
    def plugin_version(self) -> str:
        return self._version

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def previous_state_json(self) -> str | None:
        """The state the plugin's previous version returned from its
        ``deactivate`` (the ``previous_state`` this context was created
        with), as compact JSON text; None when there is none. Runtimes hand
        the plugin a fresh copy of it as ``ctx.previousState`` (JavaScript)
        or ``ctx.previous_state`` (Python)."""
        return self._previous_state_json

    def plugin_info(self) -> dict[str, str]:
        """``ctx.plugin``: ``{"id": ..., "version": ...}`` (a fresh dict)."""
        return {"id": self._id, "version": self._version}

    def _enter(self, needed: Capability | None) -> None:
        if self._closed:
            raise LifecycleError(f"plugin '{self._id}' is not active; its context is closed")
        if needed is not None:
            self._grants.check(self._id, needed)

    # -- logging (always allowed) -------------------------------------------

    def log(self, level: str, message: str, fields: dict[str, Any] | None = None) -> None:
        """Write to the plugin's logger (see :func:`plugin_logger`).

        Logging needs no grant. Unprintable characters are escaped, the
        message is cut at :data:`MAX_LOG_MESSAGE` characters, and ``fields``
        (a JSON object of at most :data:`MAX_LOG_FIELDS_BYTES`) reaches
        handlers as ``record.plugin_fields``.
        """
        self._enter(None)
        if not self._log_budget.take():
            return
        dropped = self._log_budget.take_refused()
        if dropped:
            write_plugin_log(self._id, "warn", f"{dropped} log records dropped: the plugin logged faster than "
                             f"{LOG_RECORDS_PER_SECOND} per second")
        write_plugin_log(self._id, level, message, fields)

    # -- storage ------------------------------------------------------------

    def _check_key(self, key: Any) -> str:
        if type(key) is not str or not KEY_RE.fullmatch(key):
            raise StorageError(
                f"invalid storage key {describe_key(key)}: keys are 1-100 characters of "
                "letters, digits, '_', '.' and '-'"
            )
        return key

    def storage_get(self, key: str, default: Any = None) -> Any:
        return jsonvalue.decode(self.storage_get_json(key, default))

    def storage_get_json(self, key: str, default: Any = None) -> str:
        """:meth:`storage_get` as JSON text, for runtimes that hand the value
        on as text (no decoding and encoding again on the way through)."""
        self._enter(STORAGE)
        text = self._store.kv_get(self._id, self._check_key(key))
        if text is None:
            return _encode(default, "default value", StorageError, self._limits.storage_quota_bytes)
        return text

    def storage_set(self, key: str, value: Any) -> None:
        self._enter(STORAGE)
        key = self._check_key(key)
        quota = self._limits.storage_quota_bytes
        try:
            text = jsonvalue.encode(value, max_bytes=quota)
        except jsonvalue.JSONTooLargeError:
            raise QuotaExceededError(
                f"storage quota exceeded for plugin '{self._id}': the value for '{key}' alone "
                f"is larger than the quota of {quota} bytes"
            ) from None
        except jsonvalue.JSONValueError as exc:
            raise StorageError(f"storage value for '{key}' refused: {exc}") from None
        self._store.kv_set(self._id, key, text, quota_bytes=quota)

    def storage_delete(self, key: str) -> bool:
        self._enter(STORAGE)
        return self._store.kv_delete(self._id, self._check_key(key))

    def storage_keys(self, prefix: str = "") -> list[str]:
        self._enter(STORAGE)
        if type(prefix) is not str or (prefix and not KEY_RE.fullmatch(prefix)):
            raise StorageError(f"invalid storage key prefix {describe_key(prefix)}")
        return self._store.kv_keys(self._id, prefix, limit=self._limits.max_storage_keys_listed)

    # -- settings -----------------------------------------------------------

    def settings_get(self, key: str) -> Any:
        self._enter(SETTINGS_READ)
        key = check_setting_name(self._id, self._settings, key)
        return read_settings(self._store, self._id, self._settings).get(key)

    def settings_all(self) -> dict[str, Any]:
        self._enter(SETTINGS_READ)
        return read_settings(self._store, self._id, self._settings)

    def settings_set(self, key: str, value: Any) -> None:
        self._enter(SETTINGS_WRITE)
        write_setting(self._store, self._id, self._settings, key, value)

    # -- events -------------------------------------------------------------

    def _host(self) -> HostServices:
        if self._services is None:
            raise LifecycleError(f"plugin '{self._id}' runs without a host: events, host methods and "
                                 "commands are not available")
        return self._services

    def events_emit(self, name: str, payload: Any, *, plain: bool = False) -> None:
        """``ctx.events.emit``: check and queue an event this plugin declares.

        Needs ``events.publish:<name>``; refused past the plugin's rate limit
        (RateLimitError), for an undeclared event (EventError), past the
        nesting limit (EventDepthError) and for an invalid payload
        (PayloadError). Returns once the event is queued: handlers run
        later, each plugin in its own entry. ``plain`` says ``payload`` was
        parsed from JSON text (the JavaScript bridge), so it need not be
        walked as plugin objects are.
        """
        services = self._host()
        self._enter(Capability("events.publish", name if type(name) is str else ""))
        assert self._emit_budget is not None
        if not self._emit_budget.take():
            policy = services.bus.policy
            services.bus.audit_rejection(self._id, name, RateLimitError.code, "$", "rate limit")
            raise RateLimitError(
                f"plugin '{self._id}' emits events faster than its limit of {policy.rate_per_s:g} per second "
                f"(bursts of {policy.burst}); event '{name}' was not sent"
            )
        services.bus.publish(self._id, name, payload, plain=plain)

    def events_subscribe(self, pattern: str, handler_id: int) -> None:
        """``ctx.events.on``: route events matching ``pattern`` (``*``
        matches any run of characters) to the runtime's handler
        ``handler_id``. Needs ``events.subscribe`` covering the pattern;
        the grant for each event is read again when it is delivered."""
        services = self._host()
        _check_handler_id(handler_id)
        if type(pattern) is not str:
            raise HostrtError(f"event pattern must be a string, not {type(pattern).__name__}")
        try:
            needed = parse_capability("events.subscribe:" + pattern)
        except ValueError as exc:
            raise HostrtError(f"invalid event pattern: {exc}") from None
        self._enter(needed)
        # No disposer: deactivation drops all of a plugin's subscriptions
        # at once (EventBus.detach).
        services.bus.subscribe(self._id, pattern, handler_id)

    def events_unsubscribe(self, handler_id: int) -> bool:
        """Dispose one subscription (the plugin's ``Disposable.dispose``)."""
        if self._services is None or self._closed:
            return False
        return self._services.bus.unsubscribe(self._id, handler_id)

    # -- host methods ---------------------------------------------------------

    async def host_call(self, name: str, params: Any = None, *, plain: bool = False) -> str:
        """``ctx.host.call``: run a host method (needs ``host.call:<name>``)
        and return its result as JSON text. Errors are HostMethodError or
        PayloadError, safe to show to the plugin."""
        services = self._host()
        needed = Capability("host.call", name if type(name) is str else "")
        self._enter(needed)
        if self._host_call_slots is None:
            self._host_call_slots = asyncio.Semaphore(HOST_CALLS_IN_FLIGHT)
        async with self._host_call_slots:
            self._enter(needed)  # the plugin may have stopped, or lost the grant, while this call waited
            return await services.methods.call(self._id, name, params, plain=plain)

    def host_call_blocking(self, name: str, params: Any, timeout_s: float) -> str:
        """:meth:`host_call` from a plugin's own thread (the Python
        runtime): runs on the host's loop and waits at most ``timeout_s``."""
        services = self._host()
        self._enter(Capability("host.call", name if type(name) is str else ""))
        # The task inherits this thread's context: the call chain of the
        # entry that is running (see hostrt.callchain).
        future = asyncio.run_coroutine_threadsafe(
            services.methods.call(self._id, name, params), services.loop
        )
        try:
            return future.result(max(timeout_s, 0.0))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise HostMethodError(f"host method '{name}' did not answer within the plugin's time limit",
                                  code="E_TIMEOUT") from None

    # -- commands -------------------------------------------------------------

    def commands_register(self, name: str, handler_id: int) -> None:
        """``ctx.commands.register``: make the runtime's handler
        ``handler_id`` answer the declared command ``name``."""
        services = self._host()
        self._enter(None)
        _check_handler_id(handler_id)
        services.commands.register(self._id, name, handler_id)

    def commands_unregister(self, handler_id: int) -> bool:
        """Dispose one command handler."""
        if self._services is None or self._closed:
            return False
        return self._services.commands.unregister(self._id, handler_id)

    # -- subscriptions (host side) --------------------------------------------

    def add_disposer(self, dispose: Callable[[], None]) -> None:
        """Register host-side clean-up (an event handler, a command) that
        :meth:`dispose_all` runs when the plugin is deactivated."""
        self._enter(None)
        with self._lock:
            self._disposers.append(dispose)

    def dispose_all(self) -> None:
        """Run every registered disposer, newest first, even if some fail."""
        with self._lock:
            disposers, self._disposers = self._disposers[::-1], []
        for dispose in disposers:
            try:
                dispose()
            except Exception:  # one broken disposer must not keep others registered
                logging.getLogger("hostrt.context").exception(
                    "disposer of plugin '%s' failed", self._id
                )

    def close(self) -> None:
        """Dispose everything and refuse every later call."""
        self._closed = True
        self.dispose_all()


def _check_handler_id(handler_id: Any) -> None:
    """Handler ids come from the runtime (the JavaScript shim picks them), so
    they are checked like any plugin value: small positive integers only."""
    if type(handler_id) is not int or not 0 < handler_id < 2**53:
        raise HostrtError("a handler id must be a positive integer")


def _encode(value: Any, what: str, error: type[HostrtError], max_bytes: int, *, path: str = "$") -> str:
    """Plain-JSON text of ``value``, refused with ``error`` if it is not
    JSON or larger than ``max_bytes`` (checked before any text is built)."""
    try:
        return jsonvalue.encode(value, path=path, max_bytes=max_bytes)
    except jsonvalue.JSONValueError as exc:
        raise error(f"{what} refused: {exc}") from None
