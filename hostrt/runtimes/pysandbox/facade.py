"""The ``ctx`` object Python plugin code receives.

Same names as the JavaScript API::

    ctx.plugin.id / ctx.plugin.version
    ctx.previous_state
    ctx.log.debug/info/warn/warning/error(message, fields=None)
    ctx.storage.get(key, default=None) / set(key, value) / delete(key) / keys(prefix="")
    ctx.settings.get(key) / all() / set(key, value)
    ctx.events.on(pattern, handler) -> Disposable / emit(name, payload)
    ctx.host.call(method, params=None) -> result
    ctx.commands.register(name, handler) -> Disposable
    ctx.subscriptions.append(disposable)

Each facade object holds the gate (:class:`hostrt.context.ActivationContext`)
in an underscore slot plugin code cannot name, cannot be constructed by
plugin code (the constructor wants a host-only token), cannot be written to,
and exposes nothing but the methods above. The gate does all checking:
grants, JSON validation, fresh copies. The facade only adapts calls and
cleans up errors on the way back:

* a :class:`~hostrt.errors.HostrtError` from the gate is re-raised into plugin
  code with its traceback and chained exceptions cleared (``from None``), so
  no host frame or host exception object is reachable from it;
* any other exception from host code becomes a bare
  ``HostrtError("internal host error")``; the real one is logged host-side
  on logger ``hostrt.runtime.python``.
"""

from __future__ import annotations

import json
import logging
import threading
import types
from typing import Any, Callable

from ...errors import HostrtError
from .refusals import SandboxPolicyError
from .walks import Walks

_log = logging.getLogger("hostrt.runtime.python")
_TOKEN = object()


class Facade:
    """Base of the ctx objects: sealed, slot-only, host-constructed."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise SandboxPolicyError(f"plugins cannot modify '{type(self).__name__}' objects")

    def __delattr__(self, name: str) -> None:
        raise SandboxPolicyError(f"plugins cannot modify '{type(self).__name__}' objects")

    def __reduce__(self) -> Any:
        raise TypeError(f"cannot pickle '{type(self).__name__}' objects")

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @staticmethod
    def _check_token(token: object) -> None:
        if token is not _TOKEN:
            raise TypeError("cannot create ctx objects")


def gate_caller(plugin_id: str, check_budget: Callable[[], Any]) -> Callable[..., Any]:
    """Return ``call(method, *args)`` that runs a gate method and cleans
    its errors for plugin code.

    The budget is checked before every call: plugin code that got past its
    deadline inside one long C operation must not then act through ``ctx``.
    """

    def call(method: Callable[..., Any], *args: Any) -> Any:
        check_budget()
        try:
            return method(*args)
        except HostrtError as exc:
            exc.__context__ = None
            exc.__cause__ = None
            raise exc.with_traceback(None) from None
        except Exception:
            _log.exception("host error during a ctx call from plugin '%s'", plugin_id)
            raise HostrtError("internal host error") from None

    return call


class PluginInfo(Facade):
    """``ctx.plugin``: the plugin's id and version (read-only)."""

    __slots__ = ("_id", "_version")

    def __init__(self, token: object, plugin_id: str, version: str) -> None:
        self._check_token(token)
        self._set(_id=plugin_id, _version=version)

    @property
    def id(self) -> str:
        return self._id

    @property
    def version(self) -> str:
        return self._version

    def __repr__(self) -> str:
        return f"<plugin {self._id} {self._version}>"


class Log(Facade):
    """``ctx.log``: always allowed; messages go to ``hostrt.plugins.<id>``."""

    __slots__ = ("_gate", "_call")

    def __init__(self, token: object, gate: Any, call: Callable[..., Any]) -> None:
        self._check_token(token)
        self._set(_gate=gate, _call=call)

    def _log(self, level: str, message: Any, fields: Any) -> None:
        # str() of a plugin object runs plugin code: here, inside the entry
        # and its budget, not later in a host log handler.
        if type(message) is not str:
            Walks().check_text(message, "log message")
        text = message if type(message) is str else str(message)
        self._call(self._gate.log, level, text, fields)

    def debug(self, message: Any, fields: Any = None) -> None:
        self._log("debug", message, fields)

    def info(self, message: Any, fields: Any = None) -> None:
        self._log("info", message, fields)

    def warn(self, message: Any, fields: Any = None) -> None:
        self._log("warn", message, fields)

    def warning(self, message: Any, fields: Any = None) -> None:
        self._log("warn", message, fields)

    def error(self, message: Any, fields: Any = None) -> None:
        self._log("error", message, fields)

    def __repr__(self) -> str:
        return "<ctx.log>"


class Storage(Facade):
    """``ctx.storage``: the plugin's own key/value storage (grant ``storage``)."""

    __slots__ = ("_gate", "_call")

    def __init__(self, token: object, gate: Any, call: Callable[..., Any]) -> None:
        self._check_token(token)
        self._set(_gate=gate, _call=call)

    def get(self, key: Any, default: Any = None) -> Any:
        return self._call(self._gate.storage_get, key, default)

    def set(self, key: Any, value: Any) -> None:
        self._call(self._gate.storage_set, key, value)

    def delete(self, key: Any) -> bool:
        return self._call(self._gate.storage_delete, key)

    def keys(self, prefix: Any = "") -> list[str]:
        return self._call(self._gate.storage_keys, prefix)

    def __repr__(self) -> str:
        return "<ctx.storage>"


class Settings(Facade):
    """``ctx.settings``: the plugin's settings (``settings.read``/``settings.write``)."""

    __slots__ = ("_gate", "_call")

    def __init__(self, token: object, gate: Any, call: Callable[..., Any]) -> None:
        self._check_token(token)
        self._set(_gate=gate, _call=call)

    def get(self, key: Any) -> Any:
        return self._call(self._gate.settings_get, key)

    def all(self) -> dict[str, Any]:
        return self._call(self._gate.settings_all)

    def set(self, key: Any, value: Any) -> None:
        self._call(self._gate.settings_set, key, value)

    def __repr__(self) -> str:
        return "<ctx.settings>"


class HandlerTable:
    """Host side: the plugin functions registered as event and command
    handlers, by the id the host knows them by. Never reachable from plugin
    code (it lives in underscore slots)."""

    def __init__(self) -> None:
        self._handlers: dict[int, tuple[Callable[..., Any], bool]] = {}
        self._next = 1
        self._lock = threading.Lock()

    def add(self, fn: Callable[..., Any]) -> int:
        with self._lock:
            handler_id, self._next = self._next, self._next + 1
            self._handlers[handler_id] = (fn, _takes_two(fn))
        return handler_id

    def remove(self, handler_id: int) -> None:
        with self._lock:
            self._handlers.pop(handler_id, None)

    def get(self, handler_id: int) -> tuple[Callable[..., Any], bool] | None:
        """The handler and whether it takes the event info as a second argument."""
        return self._handlers.get(handler_id)

    def clear(self) -> None:
        with self._lock:
            self._handlers.clear()


def _takes_two(fn: Any) -> bool:
    """Does ``fn`` accept two positional arguments? (Handlers may take the
    payload alone, or the payload and the event's name and source.) Read
    from the code object, so no plugin code runs."""
    drop = 0
    if type(fn) is types.MethodType:
        fn, drop = fn.__func__, 1
    if type(fn) is not types.FunctionType:
        return False
    code = fn.__code__
    return bool(code.co_flags & 0x04) or code.co_argcount - drop >= 2


class Disposable(Facade):
    """What ``ctx.events.on`` and ``ctx.commands.register`` return:
    ``dispose()`` undoes the registration (idempotent)."""

    __slots__ = ("_undo",)

    def __init__(self, token: object, undo: Callable[[], None]) -> None:
        self._check_token(token)
        self._set(_undo=[undo])

    def dispose(self) -> None:
        if self._undo:
            self._undo.pop()()

    def __repr__(self) -> str:
        return "<Disposable>"


def _registration(handlers: HandlerTable, call: Callable[..., Any], register: Callable[..., Any],
                  unregister: Callable[..., Any], name: Any, handler: Any) -> Disposable:
    """Register ``handler`` through the gate and return its Disposable."""
    if not callable(handler):
        raise TypeError("the handler must be a function")
    handler_id = handlers.add(handler)
    try:
        call(register, name, handler_id)
    except BaseException:
        handlers.remove(handler_id)
        raise

    def undo() -> None:
        handlers.remove(handler_id)
        call(unregister, handler_id)

    return Disposable(_TOKEN, undo)


class Events(Facade):
    """``ctx.events``: emit declared events (``events.publish:<name>``) and
    subscribe to events (``events.subscribe:<pattern>``)."""

    __slots__ = ("_gate", "_call", "_handlers")

    def __init__(self, token: object, gate: Any, call: Callable[..., Any], handlers: HandlerTable) -> None:
        self._check_token(token)
        self._set(_gate=gate, _call=call, _handlers=handlers)

    def emit(self, name: Any, payload: Any = None) -> None:
        self._call(self._gate.events_emit, name, payload)

    def on(self, pattern: Any, handler: Any) -> Disposable:
        gate = self._gate
        return _registration(self._handlers, self._call, gate.events_subscribe, gate.events_unsubscribe,
                             pattern, handler)

    def __repr__(self) -> str:
        return "<ctx.events>"


class Commands(Facade):
    """``ctx.commands``: answer commands the manifest declares."""

    __slots__ = ("_gate", "_call", "_handlers")

    def __init__(self, token: object, gate: Any, call: Callable[..., Any], handlers: HandlerTable) -> None:
        self._check_token(token)
        self._set(_gate=gate, _call=call, _handlers=handlers)

    def register(self, name: Any, handler: Any) -> Disposable:
        gate = self._gate
        return _registration(self._handlers, self._call, gate.commands_register, gate.commands_unregister,
                             name, handler)

    def __repr__(self) -> str:
        return "<ctx.commands>"


class HostApi(Facade):
    """``ctx.host``: methods the host application exposes (``host.call:<name>``)."""

    __slots__ = ("_gate", "_call", "_remaining")

    def __init__(self, token: object, gate: Any, call: Callable[..., Any], remaining: Callable[[], float]) -> None:
        self._check_token(token)
        self._set(_gate=gate, _call=call, _remaining=remaining)

    def call(self, method: Any, params: Any = None) -> Any:
        # The host answers on its own loop; the plugin waits at most for
        # what is left of its entry's time.
        return json.loads(self._call(self._gate.host_call_blocking, method, params, self._remaining()))

    def __repr__(self) -> str:
        return "<ctx.host>"


class Subscriptions(Facade):
    """``ctx.subscriptions``: disposables the runtime disposes, newest first,
    when the plugin is deactivated."""

    __slots__ = ("_items",)

    def __init__(self, token: object) -> None:
        self._check_token(token)
        self._set(_items=[])

    def append(self, disposable: Any) -> None:
        dispose = getattr(disposable, "dispose", None)
        if not callable(dispose):
            raise TypeError("ctx.subscriptions.append() expects an object with a dispose() method")
        self._items.append(disposable)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<ctx.subscriptions ({len(self._items)})>"


class Context(Facade):
    """``ctx`` itself."""

    __slots__ = ("_plugin", "_log", "_storage", "_settings", "_events", "_host", "_commands", "_subscriptions",
                 "_previous")

    def __init__(self, token: object, gate: Any, check_budget: Callable[[], Any],
                 remaining: Callable[[], float], handlers: HandlerTable) -> None:
        self._check_token(token)
        call = gate_caller(gate.plugin_id, check_budget)
        self._set(
            _plugin=PluginInfo(_TOKEN, gate.plugin_id, gate.plugin_version),
            _log=Log(_TOKEN, gate, call),
            _storage=Storage(_TOKEN, gate, call),
            _settings=Settings(_TOKEN, gate, call),
            _events=Events(_TOKEN, gate, call, handlers),
            _host=HostApi(_TOKEN, gate, call, remaining),
            _commands=Commands(_TOKEN, gate, call, handlers),
            _subscriptions=Subscriptions(_TOKEN),
            # [JSON text] until plugin code first reads it, then [None, value]
            _previous=[gate.previous_state_json],
        )

    @property
    def plugin(self) -> PluginInfo:
        return self._plugin

    @property
    def previous_state(self) -> Any:
        """What the plugin's previous version returned from ``deactivate``
        (hot reload), as plain JSON data of this activation's own (made from
        the host's JSON text on first read, in the plugin's thread, and the
        same object on every read after); None when there is none."""
        previous = self._previous
        if len(previous) == 1:
            text = previous[0]
            previous[:] = [None, None if text is None else json.loads(text)]  # the text is no longer needed
        return previous[1]

    @property
    def log(self) -> Log:
        return self._log

    @property
    def storage(self) -> Storage:
        return self._storage

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def events(self) -> Events:
        return self._events

    @property
    def host(self) -> HostApi:
        return self._host

    @property
    def commands(self) -> Commands:
        return self._commands

    @property
    def subscriptions(self) -> Subscriptions:
        return self._subscriptions

    def __repr__(self) -> str:
        return f"<ctx of plugin {self._plugin.id}>"


def build_context(gate: Any, check_budget: Callable[[], Any], remaining: Callable[[], float],
                  handlers: HandlerTable) -> Context:
    """Build the facade for one activation around ``gate``; every call
    through it first runs ``check_budget`` (the plugin's budget check);
    ``remaining()`` is the time left in the running entry (a host call waits
    no longer); handlers registered through it go into ``handlers``."""
    return Context(_TOKEN, gate, check_budget, remaining, handlers)


def subscriptions_of(ctx: Context) -> list[Any]:
    """The disposables a plugin registered (host side)."""
    return list(object.__getattribute__(ctx, "_subscriptions")._items)


def release_subscriptions(ctx: Context) -> None:
    """Drop the facade's references to the plugin's disposables. Called on
    the plugin's own thread, so that whatever freeing them sets off (deep
    structures are freed recursively in C) uses that thread's large stack,
    not the host's."""
    object.__getattribute__(ctx, "_subscriptions")._items.clear()
