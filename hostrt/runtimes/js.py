"""The JavaScript runtime: ``plugin.js`` in its own V8 isolate (mini-racer).

Each loaded plugin gets one isolate with a hard heap limit. The bootstrap
shim (``js_api/bootstrap.js``) runs first and builds ``ctx``; then the
plugin's source runs as a script (CommonJS shape: ``module.exports``). The
host talks to the isolate only through :class:`~.js_channel.Channel`: one
JSON message each way per exchange, every eval under the plugin's
wall-clock timeout.

The host side is the authority. Each host call is checked by the plugin's
:class:`~hostrt.context.ActivationContext` (grants read at the moment of
the call); the plugin is known by the isolate the call came from, never by
anything the isolate says.

Event and command handlers live in the shim, under ids it gives them; the
host's event bus and command registry know only the ids, and hand them
back with an event to deliver (:meth:`LoadedJavaScriptPlugin.deliver_event`)
or a command to run (:meth:`LoadedJavaScriptPlugin.run_command`), each one
entry under the plugin's time limit.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any, Callable

from .. import jsonvalue
from ..context import ActivationContext, write_plugin_log
from ..errors import HostrtError, LifecycleError, PluginError, ResourceLimitError
from . import js_errors
from .base import (
    MAX_STATE_BYTES,
    LoadedPlugin,
    PluginSource,
    Runtime,
    combined_error,
    load_or_close,
    reworded,
    state_refused,
)
from .js_channel import Channel, ChannelLimits, EntryFailed, RawJSON, pump_code
from .js_engine import EngineScriptError, Isolate, run_syntax_check

_log = logging.getLogger("hostrt.runtime.js")

#: Time allowed for compiling, on top of the plugin's own timeout, per MiB
#: of source (big bundles take a while to parse).
COMPILE_ALLOWANCE_S_PER_MIB = 0.5


def bootstrap_source() -> str:
    """The shim's source, as shipped in ``hostrt.js_api``."""
    return resources.files("hostrt.js_api").joinpath("bootstrap.js").read_text(encoding="utf-8")


_BOOTSTRAP: str | None = None


def _bootstrap_for(source: PluginSource, limits: ChannelLimits) -> str:
    global _BOOTSTRAP
    if _BOOTSTRAP is None:
        _BOOTSTRAP = bootstrap_source()
    return (
        _BOOTSTRAP.replace("__PLUGIN_ID__", json.dumps(source.plugin_id))
        .replace("__PLUGIN_VERSION__", json.dumps(source.version))
        .replace("__LIMITS__", json.dumps(limits.for_shim(source.limits.memory_mb * 1024 * 1024)))
        + "\n" + pump_code([])
        + "\n//# sourceURL=hostrt/bootstrap.js\n"
    )


class JavaScriptRuntime(Runtime):
    """Loads ``plugin.js`` files into isolated V8 contexts."""

    name = "javascript"

    def __init__(self, *, limits: ChannelLimits | None = None) -> None:
        self.limits = limits or ChannelLimits()

    def check(self, source: PluginSource) -> None:
        """Compile ``plugin.js`` with V8 without running any of it; raise
        PluginCompileError with the line and column of a syntax error.

        The source is compiled as the body of a function that is never
        called, in a throwaway isolate; the wrapper's first line is
        subtracted from what V8 reports.
        """
        text = source.read_text()
        check_syntax(source.plugin_id, source.display_file, text)

    async def load(self, source: PluginSource) -> "LoadedJavaScriptPlugin":
        """Create the plugin's isolate, run the shim and the plugin's top
        level under its timeout. Raises PluginCompileError for a syntax
        error and PluginError if the top level throws or breaks a limit;
        nothing is left running in either case."""
        plugin = LoadedJavaScriptPlugin(source, self.limits)
        return await load_or_close(plugin, plugin._load())


class LoadedJavaScriptPlugin(LoadedPlugin):
    """One plugin version in its own isolate."""

    def __init__(self, source: PluginSource, limits: ChannelLimits) -> None:
        self.source = source
        self._limits = limits
        self._timeout_s = source.limits.timeout_ms / 1000
        self._channel: Channel | None = None
        self._gate: ActivationContext | None = None
        self._on_crash: Callable[[PluginError], None] | None = None
        self._active = False
        self._closed = False
        self._ops = _operations()

    # -- loading -----------------------------------------------------------------

    async def _load(self) -> None:
        source = self.source
        text = source.read_text()
        isolate = Isolate.create(source.limits.memory_mb * 1024 * 1024)
        self._channel = Channel(
            isolate,
            self,
            plugin_id=source.plugin_id,
            display_file=source.display_file,
            timeout_s=self._timeout_s,
            limits=self._limits,
        )
        # The plugin's source runs as a script of its own, unwrapped, so V8's
        # line and column numbers are the author's own; the trailing pump
        # returns what its top level queued (console output). The shim and
        # the source are posted together: one hand-off to the isolate.
        script = text + "\n;" + pump_code([]) + "\n//# sourceURL=" + source.display_file + "\n"
        allowance = COMPILE_ALLOWANCE_S_PER_MIB * len(text) / (1024 * 1024)
        try:
            await self._channel.run_scripts([
                (_bootstrap_for(source, self._limits), max(self._timeout_s, 2.0)),
                (script, self._timeout_s + allowance),
            ])
        except EngineScriptError as exc:
            if exc.index == 0:
                raise  # the shim itself failed: a host bug, reported as such
            error = js_errors.from_script_error(source.plugin_id, source.display_file, exc.text, parse=exc.parse)
            await self._collect_output()
            raise error from None

    async def _collect_output(self) -> None:
        """Deliver what the plugin logged before it failed; best effort."""
        channel = self._channel
        if channel is not None and channel.failure is None:
            try:
                await channel.exchange([])
            except Exception:  # noqa: BLE001 - the original error matters more
                pass

    # -- lifecycle ----------------------------------------------------------------------

    async def activate(self, ctx: ActivationContext) -> None:
        """Call ``activate(ctx)`` and wait (under the timeout) for the
        promise it returns, if any. The gate's previous state, if any,
        travels with the entry and is ``ctx.previousState`` in the plugin."""
        if self._closed:
            raise LifecycleError(f"plugin '{self.source.plugin_id}' is closed")
        if self._gate is not None:
            raise LifecycleError(f"plugin '{self.source.plugin_id}' is already active")
        self._gate = ctx
        state = ctx.previous_state_json
        await self._entry("activate", "activate", "null" if state is None else state)
        self._active = True

    async def deactivate(self) -> Any:
        """Call ``deactivate(ctx)`` if exported, then dispose
        ``ctx.subscriptions`` newest first, all under one timeout; then the
        gate's host-side registrations. Every disposer runs; the first error
        is raised afterwards.

        Returns the state ``deactivate`` returned (awaited), as fresh JSON
        data decoded from the text the shim encoded when it was returned,
        or None; see :meth:`LoadedPlugin.deactivate`."""
        if self._gate is None:
            return None
        gate = self._gate
        errors: list[PluginError] = []
        state: Any = None
        try:
            state = await self._entry("deactivate", "deactivate")
        except _ManyErrors as many:
            refusal = many.info.get("state")
            if refusal is not None:  # refused when deactivate returned, before any disposer ran
                errors.append(self._state_refusal(refusal))
            errors.extend(many.errors)
        except PluginError as exc:
            errors.append(exc)
        finally:
            self._active = False
            try:
                gate.dispose_all()
            except Exception as exc:  # noqa: BLE001 - host code: report, keep going
                errors.append(PluginError(self.source.plugin_id, f"host clean-up failed: {exc}"))
            self._gate = None
        if errors:
            raise combined_error(self.source.plugin_id, errors, "deactivate")
        if state is not None:
            # Plain data parsed from the JSON text the shim encoded (and so
            # checked): what is left is the size in UTF-8 bytes (the shim
            # counted characters), measured on text json builds in C.
            try:
                size = jsonvalue.size_bytes(json.dumps(state, separators=(",", ":"), ensure_ascii=False))
            except UnicodeEncodeError:
                raise state_refused(self.source, "a string holds a lone surrogate, which is not Unicode text") from None
            if size > MAX_STATE_BYTES:
                raise state_refused(self.source, None)
        return state

    def _state_refusal(self, refusal: Any) -> PluginError:
        """The error for state the shim refused to encode: ``{"kind":
        "size"}``, ``{"kind": "value", "detail": ...}`` (not JSON), or
        ``{"kind": "threw", "error": ...}`` (plugin code threw while it was
        read, e.g. a getter)."""
        kind = refusal.get("kind") if type(refusal) is dict else None
        if kind == "size":
            return state_refused(self.source, None)
        if kind == "value" and type(refusal.get("detail")) is str:
            return state_refused(self.source, refusal["detail"])
        if kind == "threw":
            error = self._describe(refusal.get("error"), "")
            return state_refused(self.source, f"reading it threw {error.reason}", line=error.line,
                                 column=error.column, plugin_traceback=error.plugin_traceback)
        return state_refused(self.source, "(the isolate's report of it is unreadable)")

    async def call_export(self, name: str, *args: Any) -> Any:
        """Call ``module.exports[name](...args)`` as one entry under the
        plugin's timeout (awaiting a returned promise) and return its result
        as fresh JSON data.

        ``args`` must be JSON values (refused with HostrtError otherwise).
        Raises a PluginError subclass if the function is missing, throws,
        returns something that is not JSON, or breaks a limit.
        """
        if type(name) is not str:
            raise HostrtError("export name must be a string")
        args_json = host_json([name, list(args)], f"arguments for {name}()", self._limits.max_value_chars)
        # The result returns as soon as it is known; microtasks the call
        # left behind are checked in the background (a spin there fails the
        # plugin, as a runaway timer does).
        return await self._entry("call", f"{name}()", args_json, drain=False)

    async def deliver_event(self, handler_ids: list[int], payload_json: str, info: dict[str, Any]) -> list[PluginError]:
        """Call the plugin's handlers ``handler_ids`` in order as one entry
        (awaiting each one's promise before the next starts), each with its
        own copy of the payload and ``{name, source}``. Returns the errors
        of the handlers that failed; raises PluginError if the entry did (a
        broken limit, which also stops the plugin)."""
        doing = f"handler of event '{info.get('name')}'"
        args_json = ("[" + json.dumps(handler_ids) + "," + payload_json + ","
                     + host_json(info, "event information", self._limits.max_value_chars) + "]")
        # The payload is spliced in as the host's bus checked and encoded it.
        result = await self._handler_entry("event", doing, args_json)
        if type(result) is not dict or type(result.get("errors")) is not list:
            return []
        return [self._describe(info, f"{doing}: ") for info in result["errors"]]

    async def run_command(self, handler_id: int, name: str, params_json: str, max_result_bytes: int) -> Any:
        """Call the handler registered as ``handler_id`` for command
        ``name`` with the parameters (JSON text) as one entry, awaiting a
        returned promise; return its result as fresh JSON data. Raises
        PluginError ("command 'name' failed: ...", with file and line) if
        the handler throws, returns something that is not JSON or breaks a
        limit (which also stops the plugin). The result's size is bounded
        by the bridge's value limit; the registry checks
        ``max_result_bytes``."""
        args_json = "[" + json.dumps(handler_id) + "," + json.dumps(name) + "," + params_json + "]"
        return await self._handler_entry("command", f"command '{name}' failed", args_json)

    async def _handler_entry(self, target: str, doing: str, args_json: str) -> Any:
        """An entry into event or command handlers: a result returns as soon
        as it is known (as for call_export); every error names what was
        being done."""
        channel = self._channel
        if channel is None or self._gate is None:
            raise PluginError(self.source.plugin_id, f"{doing}: the plugin is not active",
                              file=self.source.display_file)
        try:
            return await channel.enter(target, args_json, settle_timeout_s=self._timeout_s, drain=False)
        except EntryFailed as failed:
            raise self._describe(failed.info, f"{doing}: ") from None
        except PluginError as exc:  # the channel failed: a broken limit, the plugin stopped
            raise reworded(exc, f"{doing}: {exc.reason}") from None

    async def _entry(self, target: str, doing: str, args_json: str = "null", *, drain: bool = True) -> Any:
        channel = self._channel
        if channel is None:
            raise LifecycleError(f"plugin '{self.source.plugin_id}' is not loaded")
        try:
            return await channel.enter(target, args_json, settle_timeout_s=self._timeout_s, drain=drain)
        except EntryFailed as failed:
            info = failed.info
            if type(info) is dict and type(info.get("errors")) is list:
                raise _ManyErrors([self._describe(i, f"{doing}: ") for i in info["errors"]], info) from None
            raise self._describe(info, f"{doing}: ") from None

    def _describe(self, info: Any, doing: str) -> PluginError:
        kind = ResourceLimitError if js_errors.is_stack_overflow(info) else PluginError
        return js_errors.from_info(self.source.plugin_id, self.source.display_file, info, doing=doing, kind=kind)

    def on_crash(self, callback: Callable[[PluginError], None]) -> None:
        """``callback(error)`` runs if the plugin fails on its own after
        activation (a timer that ran past its limit, a promise that never
        settled, a heap limit hit between entries)."""
        self._on_crash = callback

    async def close(self) -> None:
        """Free the isolate (terminating anything still running). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._gate = None
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                await channel.close()
            except Exception:  # noqa: BLE001 - close never raises
                _log.exception("closing plugin '%s' failed", self.source.plugin_id)

    # -- ChannelHost ---------------------------------------------------------------------

    def dispatch(self, op: str, args: list[Any]) -> Any:
        handler = self._ops.get(op)
        if handler is None:
            raise HostrtError(f"unknown host operation '{op}'")
        gate = self._gate
        if gate is None:
            raise LifecycleError(f"plugin '{self.source.plugin_id}' is not active")
        return handler(gate, args)

    def log(self, level: str, message: str, fields: Any) -> None:
        if self._gate is not None and not self._gate.closed:
            self._gate.log(level, message, fields)
        else:
            write_plugin_log(self.source.plugin_id, level, message, fields)

    def uncaught(self, where: str, info: Any) -> None:
        if where in _REGISTRATIONS:
            # A registration the host refused, whose promise nobody watched.
            error = self._describe(info, f"{where}() was refused: ")
        else:
            error = self._describe(info, f"uncaught error in a {where} callback: ")
        _log.warning("%s", error)
        write_plugin_log(self.source.plugin_id, "error", error.reason)

    def failed(self, error: PluginError) -> None:
        _log.error("%s", error)
        if self._active and self._on_crash is not None:
            self._active = False
            self._on_crash(error)


#: What the shim reports as a refused registration (see ``uncaught``).
_REGISTRATIONS = frozenset({"ctx.events.on", "ctx.commands.register"})


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON")


def host_json(value: Any, what: str, max_chars: int) -> str:
    """Compact JSON text of a value the host sends into a plugin.

    The host's own values are trusted to be data, so this is json.dumps in
    C rather than the byte-exact walk plugin values get; it still refuses
    what is not JSON (NaN, cycles, other types) and what is too large.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse)
    except (TypeError, ValueError, RecursionError) as exc:
        raise HostrtError(f"{what} refused: {exc}") from None
    if len(text) > max_chars:
        raise HostrtError(f"{what} refused: larger than {max_chars} characters as JSON")
    return text


def check_syntax(plugin_id: str, display_file: str, text: str) -> None:
    """Raise PluginCompileError if ``text`` is not valid JavaScript.

    Uses a throwaway isolate on mini-racer's own loop thread, so it works
    from synchronous code and from inside a running event loop alike.
    """
    wrapped = "(function () {\n" + text + "\n});"
    try:
        run_syntax_check(wrapped)
    except EngineScriptError as exc:
        error = js_errors.from_script_error(plugin_id, display_file, exc.text, parse=True, line_offset=1)
        last_line = text.count("\n") + 1
        if error.line is not None and error.line > last_line:  # "unexpected end" inside the wrapper's tail
            error = type(error)(plugin_id, error.reason, file=display_file, line=last_line,
                                plugin_traceback=error.plugin_traceback)
        raise error from None


class _ManyErrors(Exception):
    def __init__(self, errors: list[PluginError], info: dict[str, Any]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors
        self.info = info


def _args(args: list[Any], low: int, high: int, op: str) -> list[Any]:
    if not low <= len(args) <= high:
        raise HostrtError(f"{op} takes {low}-{high} arguments, got {len(args)}")
    return args


async def _host_call(gate: ActivationContext, method: Any, params: Any) -> RawJSON:
    # Values parsed from the plugin's JSON text are plain data.
    return RawJSON(await gate.host_call(method, params, plain=True))


def _operations() -> dict[str, Callable[[ActivationContext, list[Any]], Any]]:
    """Host calls the shim may make, each mapped onto the gate. The gate
    checks grants and validates values; this only fixes the arity. An
    operation that returns an awaitable is answered when it completes (see
    :class:`~.js_channel.Channel`)."""
    return {
        "storage.get": lambda g, a: RawJSON(g.storage_get_json(*_args(a, 1, 2, "storage.get"))),
        "storage.set": lambda g, a: g.storage_set(*_args(a, 2, 2, "storage.set")),
        "storage.delete": lambda g, a: g.storage_delete(*_args(a, 1, 1, "storage.delete")),
        "storage.keys": lambda g, a: g.storage_keys(*_args(a, 0, 1, "storage.keys")),
        "settings.get": lambda g, a: g.settings_get(*_args(a, 1, 1, "settings.get")),
        "settings.all": lambda g, a: g.settings_all(*_args(a, 0, 0, "settings.all")),
        "settings.set": lambda g, a: g.settings_set(*_args(a, 2, 2, "settings.set")),
        "events.emit": lambda g, a: g.events_emit(*_args(a, 2, 2, "events.emit"), plain=True),
        # (the gate checks handler ids as it checks every plugin value)
        "events.on": lambda g, a: g.events_subscribe(*_args(a, 2, 2, "events.on")),
        "events.off": lambda g, a: g.events_unsubscribe(*_args(a, 1, 1, "events.off")),
        "commands.register": lambda g, a: g.commands_register(*_args(a, 2, 2, "commands.register")),
        "commands.unregister": lambda g, a: g.commands_unregister(*_args(a, 1, 1, "commands.unregister")),
        "host.call": lambda g, a: _host_call(g, *_args(a, 2, 2, "host.call")),
    }


__all__ = ["JavaScriptRuntime", "LoadedJavaScriptPlugin", "bootstrap_source"]
