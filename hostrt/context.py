"""The language-neutral activation context: the gate every plugin call passes.

Runtimes build what plugin code sees (a Python facade, the JavaScript shim)
on top of one :class:`ActivationContext` per active plugin. The context is
the authority: it knows which plugin it serves from the host (never from
anything the plugin sends), checks the stored grant on every call, validates
every value as plain JSON and hands back fresh copies, so nothing a plugin
holds is shared with the host or another plugin.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from . import jsonvalue
from .capabilities import Capability
from .errors import HostrtError, LifecycleError, SettingsError, StorageError
from .grants import GrantManager
from .store import Store

# fullmatch, not match: "$" would accept a trailing newline.
STORAGE_KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
#: The longest log message kept; the rest is cut so one plugin cannot flood
#: the host's log handlers with a single call.
MAX_LOG_MESSAGE = 8192
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
    """The standard-library logger a plugin's output goes to."""
    return logging.getLogger(f"hostrt.plugins.{plugin_id}")


@dataclass(frozen=True)
class ContextLimits:
    """Per-plugin data limits applied by the context."""

    storage_quota_bytes: int = 1024 * 1024
    max_storage_keys_listed: int = 10000


class SettingsSchema:
    """A plugin's settings schema with its defaults, compiled once."""

    def __init__(self, schema: dict[str, Any] | None) -> None:
        self.schema = schema or {"type": "object"}
        self._validator = jsonschema.Draft202012Validator(self.schema)
        properties = self.schema.get("properties") or {}
        self.defaults = {
            key: jsonvalue.copy(spec["default"])
            for key, spec in properties.items()
            if isinstance(spec, dict) and "default" in spec
        }
        self._known = set(properties)
        self._open = self.schema.get("additionalProperties", True) is not False

    def knows(self, key: str) -> bool:
        return key in self._known or self._open

    def merged(self, stored: dict[str, Any]) -> dict[str, Any]:
        return {**jsonvalue.copy(self.defaults), **stored}

    def first_error(self, document: dict[str, Any]) -> str | None:
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(document))
        if error is None:
            return None
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        return f"${path}: {error.message}"


class ActivationContext:
    """The gate for one active plugin version.

    Every method is synchronous, checks the plugin's stored grants at the
    moment of the call, and raises :class:`~hostrt.errors.HostrtError`
    subclasses whose messages carry no host paths. After :meth:`close` every
    call fails with :class:`~hostrt.errors.LifecycleError`, so a plugin that
    kept a reference to its context cannot act once deactivated.
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
    ) -> None:
        self._id = plugin_id
        self._version = plugin_version
        self._store = store
        self._grants = grants
        self._settings = SettingsSchema(settings_schema)
        self._limits = limits or ContextLimits()
        self._logger = plugin_logger(plugin_id)
        self._disposers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._closed = False

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

    def plugin_info(self) -> dict[str, str]:
        """``ctx.plugin``: ``{"id": ..., "version": ...}``."""
        return {"id": self._id, "version": self._version}

    def _enter(self, needed: Capability | None) -> None:
        if self._closed:
            raise LifecycleError(f"plugin '{self._id}' is not active; its context is closed")
        if needed is not None:
            self._grants.check(self._id, needed)

    # -- logging (always allowed) -------------------------------------------

    def log(self, level: str, message: str, fields: dict[str, Any] | None = None) -> None:
        """Write to logger ``hostrt.plugins.<id>``. Logging needs no grant."""
        self._enter(None)
        if level not in LOG_LEVELS:
            raise HostrtError(f"unknown log level '{level}' (use debug, info, warn or error)")
        if type(message) is not str:
            raise HostrtError("log message must be a string")
        if len(message) > MAX_LOG_MESSAGE:
            message = message[:MAX_LOG_MESSAGE] + f"... [{len(message) - MAX_LOG_MESSAGE} characters cut]"
        extra: dict[str, Any] = {"plugin_id": self._id}
        if fields is not None:
            try:
                extra["plugin_fields"] = jsonvalue.copy(fields, path="fields")
            except jsonvalue.JSONValueError as exc:
                raise HostrtError(f"log fields are not JSON: {exc}") from None
        self._logger.log(LOG_LEVELS[level], "%s", message, extra=extra)

    # -- storage ------------------------------------------------------------

    def _check_key(self, key: Any) -> str:
        if type(key) is not str or not STORAGE_KEY_RE.fullmatch(key):
            raise StorageError(
                f"invalid storage key {key!r:.120}: keys are 1-100 characters of "
                "letters, digits, '_', '.' and '-'"
            )
        return key

    def storage_get(self, key: str, default: Any = None) -> Any:
        self._enter(STORAGE)
        text = self._store.kv_get(self._id, self._check_key(key))
        if text is None:
            return self._json_copy(default, "default", StorageError)
        return jsonvalue.decode(text)

    def storage_set(self, key: str, value: Any) -> None:
        self._enter(STORAGE)
        key = self._check_key(key)
        text = self._json_text(value, f"storage value for '{key}'", StorageError)
        self._store.kv_set(self._id, key, text, quota_bytes=self._limits.storage_quota_bytes)

    def storage_delete(self, key: str) -> bool:
        self._enter(STORAGE)
        return self._store.kv_delete(self._id, self._check_key(key))

    def storage_keys(self, prefix: str = "") -> list[str]:
        self._enter(STORAGE)
        if type(prefix) is not str or (prefix and not STORAGE_KEY_RE.fullmatch(prefix)):
            raise StorageError(f"invalid storage key prefix {prefix!r:.120}")
        return self._store.kv_keys(self._id, prefix, limit=self._limits.max_storage_keys_listed)

    # -- settings -----------------------------------------------------------

    def settings_get(self, key: str) -> Any:
        self._enter(SETTINGS_READ)
        key = check_setting_name(self._id, self._settings, key)
        return self.settings_all_unchecked().get(key)

    def settings_all(self) -> dict[str, Any]:
        self._enter(SETTINGS_READ)
        return self.settings_all_unchecked()

    def settings_all_unchecked(self) -> dict[str, Any]:
        """Defaults merged with stored values, no grant check (host side)."""
        return self._settings.merged(self._store.settings_get_all(self._id))

    def settings_set(self, key: str, value: Any) -> None:
        self._enter(SETTINGS_WRITE)
        write_setting(self._store, self._id, self._settings, key, value)

    # -- subscriptions ------------------------------------------------------

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
        self.dispose_all()
        self._closed = True

    # -- helpers ------------------------------------------------------------

    @staticmethod
    def _json_text(value: Any, what: str, error: type[HostrtError]) -> str:
        try:
            return jsonvalue.encode(value)
        except jsonvalue.JSONValueError as exc:
            raise error(f"{what} is not JSON: {exc}") from None

    @classmethod
    def _json_copy(cls, value: Any, what: str, error: type[HostrtError]) -> Any:
        return jsonvalue.decode(cls._json_text(value, what, error))


def check_setting_name(plugin_id: str, schema: SettingsSchema, key: Any) -> str:
    """A setting name must be well formed and declared (unless the schema
    allows additional properties)."""
    if type(key) is not str or not STORAGE_KEY_RE.fullmatch(key):
        raise SettingsError(f"invalid setting name {key!r:.120}")
    if not schema.knows(key):
        raise SettingsError(f"plugin '{plugin_id}' declares no setting '{key}'")
    return key


def write_setting(store: Store, plugin_id: str, schema: SettingsSchema, key: str, value: Any) -> None:
    """Validate one setting against the whole settings schema and store it.

    Shared by plugin writes (behind ``settings.write``) and host writes.
    """
    check_setting_name(plugin_id, schema, key)
    try:
        text = jsonvalue.encode(value, path=f"$.{key}")
    except jsonvalue.JSONValueError as exc:
        raise SettingsError(f"setting '{key}' of plugin '{plugin_id}' is not JSON: {exc}") from None
    candidate = schema.merged(store.settings_get_all(plugin_id))
    candidate[key] = jsonvalue.decode(text)
    problem = schema.first_error(candidate)
    if problem is not None:
        raise SettingsError(f"invalid value for setting '{key}' of plugin '{plugin_id}': {problem}")
    store.settings_set(plugin_id, key, candidate[key])
