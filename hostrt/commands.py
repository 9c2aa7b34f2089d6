"""Commands: the host asks a plugin to do something and gets an answer.

A plugin declares its commands in the manifest (``commands``) and, while
active, registers one handler for each with ``ctx.commands.register``. The
host calls :meth:`CommandRegistry.invoke` (``Host.invoke``): parameters are
checked against the declaration before the handler runs, the handler runs
as one entry under the plugin's time limit, and its result is checked
against ``resultSchema`` and the size limit before the host sees it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

from . import callchain
from .errors import CommandNotFoundError, HostrtError, LifecycleError
from .manifest import CommandDecl
from .payloads import PayloadSpec


def command_subject(plugin_id: str, name: str) -> str:
    """How errors name a command."""
    return f"command '{name}' of plugin '{plugin_id}'"


def result_subject(plugin_id: str, name: str) -> str:
    """How a PayloadError names a command's result."""
    return f"result of {command_subject(plugin_id, name)}"


class CommandSink(Protocol):
    """What the registry needs from an active plugin (its LoadedPlugin)."""

    async def run_command(self, handler_id: int, name: str, params_json: str, max_result_bytes: int) -> Any:
        """Call handler ``handler_id`` with the parameters (JSON text) as
        one entry and return its result as fresh JSON data; raise
        PluginError (naming the command, file and line) if it fails."""
        ...


@dataclass(frozen=True)
class CommandInfo:
    """A command an active plugin offers, for host UIs (:meth:`Host.commands`)."""

    plugin_id: str
    name: str
    description: str | None
    params_schema: dict[str, Any]
    result_schema: dict[str, Any] | None


@dataclass
class _Declared:
    decl: CommandDecl
    params: PayloadSpec
    result: PayloadSpec
    handler_id: int | None = None


@dataclass
class _Plugin:
    sink: CommandSink
    commands: dict[str, _Declared]


class CommandRegistry:
    """Declared commands and registered handlers of the active plugins."""

    def __init__(self) -> None:
        self._plugins: dict[str, _Plugin] = {}
        self._lock = threading.Lock()  # handlers register from plugin threads

    def attach(self, plugin_id: str, declarations: list[CommandDecl], sink: CommandSink) -> None:
        """Make an activating plugin's declared commands registrable."""
        commands = {}
        for decl in declarations:
            commands[decl.name] = _Declared(
                decl,
                PayloadSpec(f"parameters of {command_subject(plugin_id, decl.name)}", decl.params_schema,
                            decl.max_payload_bytes),
                PayloadSpec(result_subject(plugin_id, decl.name), decl.result_schema, decl.max_payload_bytes),
            )
        with self._lock:
            self._plugins[plugin_id] = _Plugin(sink, commands)

    def detach(self, plugin_id: str) -> None:
        """Forget a plugin's commands (it is being deactivated)."""
        with self._lock:
            self._plugins.pop(plugin_id, None)

    def register(self, plugin_id: str, name: Any, handler_id: int) -> None:
        """Record the handler of a declared command."""
        with self._lock:
            plugin = self._plugins.get(plugin_id)
            if plugin is None:
                raise LifecycleError(f"plugin '{plugin_id}' is not active")
            declared = plugin.commands.get(name) if type(name) is str else None
            if declared is None:
                shown = repr(name[:130]) if type(name) is str else f"of type {type(name).__name__}"
                raise HostrtError(f"plugin '{plugin_id}' does not declare a command named {shown} in its "
                                  "manifest's \"commands\"")
            if declared.handler_id is not None:
                raise HostrtError(f"command '{name}' already has a handler; dispose it first")
            declared.handler_id = handler_id

    def unregister(self, plugin_id: str, handler_id: int) -> bool:
        """Forget a handler; True if it was registered."""
        with self._lock:
            plugin = self._plugins.get(plugin_id)
            for declared in plugin.commands.values() if plugin is not None else ():
                if declared.handler_id == handler_id:
                    declared.handler_id = None
                    return True
            return False

    def list(self) -> list[CommandInfo]:
        """Commands with a registered handler, by plugin id then name."""
        with self._lock:
            return [
                CommandInfo(pid, name, d.decl.description, dict(d.decl.params_schema),
                            dict(d.decl.result_schema) if d.decl.result_schema is not None else None)
                for pid, plugin in sorted(self._plugins.items())
                for name, d in sorted(plugin.commands.items())
                if d.handler_id is not None
            ]

    async def invoke(self, plugin_id: str, name: str, params: Any = None) -> Any:
        """Run a plugin's command and return its result (fresh JSON data).

        Raises CommandNotFoundError if the plugin is not active or has no
        handler for ``name``, PayloadError for refused parameters or
        result, LifecycleError if the plugin is waiting on the calling code
        (invoking it would deadlock), and PluginError if the handler fails.
        """
        with self._lock:
            plugin = self._plugins.get(plugin_id)
            declared = plugin.commands.get(name) if plugin is not None and type(name) is str else None
            handler_id = declared.handler_id if declared is not None else None
        if plugin is None or declared is None or handler_id is None:
            state = "is not active" if plugin is None else f"has no handler for command {name!r}"
            raise CommandNotFoundError(f"plugin '{plugin_id}' {state}")
        if plugin_id in callchain.current().waiting:
            raise LifecycleError(f"plugin '{plugin_id}' is waiting on this code; invoking its command "
                                 f"'{name}' now would deadlock")
        params_text, _ = declared.params.check({} if params is None else params, "host", plain=True)
        with callchain.entering(plugin_id):
            result = await plugin.sink.run_command(handler_id, name, params_text, declared.decl.max_payload_bytes)
        _, result = declared.result.check(result, plugin_id, plain=True)
        return result


__all__ = ["CommandInfo", "CommandRegistry", "CommandSink", "command_subject", "result_subject"]
