"""The public error hierarchy.

Every error hostrt raises on purpose is a :class:`HostrtError` with a stable
``code`` string that host applications (and plugins) can match on without
parsing messages. Codes never change once released; messages may.
"""

from __future__ import annotations

from dataclasses import dataclass
import re
from typing import Any

_CODE_RE = re.compile(r"E_[A-Z0-9_]{1,40}")


class HostrtError(Exception):
    """Root of every error hostrt raises on purpose."""

    code: str = "E_HOSTRT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description, for logs, CLIs and the JavaScript bridge."""
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class ManifestProblem:
    """One thing wrong with a manifest: where (a JSON path such as
    ``$.events[0].name``) and what."""

    json_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.json_path}: {self.message}"


class ManifestError(HostrtError):
    """plugin.json is missing, not JSON, or does not match the schema.

    ``file`` is the manifest's path and ``problems`` lists every problem
    found, each with its JSON path.
    """

    code = "E_MANIFEST"

    def __init__(self, file: str, problems: list[ManifestProblem]) -> None:
        self.file = file
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{file}: invalid manifest\n{lines}")

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "file": self.file,
            "problems": [{"path": p.json_path, "message": p.message} for p in self.problems],
        }


class CapabilityError(HostrtError):
    """A plugin called an API it holds no grant for (or the grant was revoked)."""

    code = "E_CAPABILITY"

    def __init__(self, plugin_id: str, capability: str, detail: str = "") -> None:
        self.plugin_id = plugin_id
        self.capability = capability
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"plugin '{plugin_id}' lacks capability '{capability}'{extra}"
        )


class GrantError(HostrtError):
    """A grant the host tried to make is not allowed (for example it exceeds
    what the manifest requests, or the capability string is malformed)."""

    code = "E_GRANT"


class StorageError(HostrtError):
    """A storage call was malformed: a bad key or a value that is not JSON."""

    code = "E_STORAGE"


class QuotaExceededError(StorageError):
    """A storage write would take the plugin over its quota."""

    code = "E_QUOTA"


class SettingsError(HostrtError):
    """A setting does not exist or its value does not match the settings schema."""

    code = "E_SETTINGS"


class StoreError(HostrtError):
    """The database could not be opened, migrated or written."""

    code = "E_STORE"


class PluginNotFoundError(HostrtError):
    """No discovered plugin has this id."""

    code = "E_NOT_FOUND"


class LifecycleError(HostrtError):
    """The requested lifecycle transition is not possible from the current state."""

    code = "E_STATE"


class DependencyError(HostrtError):
    """A required plugin is missing, has the wrong version, conflicts, or the
    ordering constraints form a cycle."""

    code = "E_DEPENDENCY"


class PluginError(HostrtError):
    """Plugin code failed: it raised, could not be compiled, or broke a limit.

    ``file``/``line``/``column`` point into the plugin's own source (never into
    hostrt), and ``plugin_traceback`` holds only the plugin's own frames.
    """

    code = "E_PLUGIN"

    def __init__(
        self,
        plugin_id: str,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        plugin_traceback: str = "",
    ) -> None:
        self.plugin_id = plugin_id
        self.file = file
        self.line = line
        self.column = column
        self.plugin_traceback = plugin_traceback
        where = ""
        if file:
            where = f" ({file}" + (f", line {line}" if line else "") + (
                f", column {column}" if column else ""
            ) + ")"
        super().__init__(f"plugin '{plugin_id}': {message}{where}")
        self.reason = message

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "plugin": self.plugin_id,
            "file": self.file,
            "line": self.line,
            "column": self.column,
        }


class PluginCompileError(PluginError):
    """The plugin's source is not valid Python/JavaScript, or uses a construct
    the sandbox forbids (detected before any plugin code runs)."""

    code = "E_COMPILE"


class BudgetExceededError(PluginError):
    """Plugin code ran past its wall-clock budget."""

    code = "E_TIMEOUT"


class ResourceLimitError(PluginError):
    """Plugin code tried to allocate past a limit (memory, sequence size,
    recursion depth) and was refused."""

    code = "E_LIMIT"


class SandboxViolationError(PluginError):
    """Plugin code tried something the sandbox forbids at run time (an
    underscore attribute, a module outside the allow-list, a write to an
    object it does not own)."""

    code = "E_FORBIDDEN"


class PayloadError(HostrtError):
    """A value crossing between plugins and the host (an event payload,
    command parameters or result, host method parameters) failed its JSON
    Schema, is larger than its limit, or is not plain JSON.

    ``subject`` says what was checked (``event 'greeting.sent'``), ``source``
    who sent it (a plugin id or ``"host"``), ``json_path`` where in the value
    the problem is (``$`` for the whole value) and ``reason`` what it is.
    """

    code = "E_PAYLOAD"

    def __init__(self, subject: str, source: str, json_path: str, reason: str) -> None:
        self.subject = subject
        self.source = source
        self.json_path = json_path
        self.reason = reason
        origin = "the host" if source == "host" else f"plugin '{source}'"
        super().__init__(f"{subject} from {origin} rejected at {json_path}: {reason}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "subject": self.subject, "source": self.source, "path": self.json_path}


class EventError(HostrtError):
    """An event that is not declared, declared twice, or emitted by someone
    who did not declare it."""

    code = "E_EVENT"


class EventDepthError(EventError):
    """An event emitted while handling an event, nested deeper than the
    host allows (a handler loop such as A emits x, B handles x and emits y,
    A handles y and emits x...)."""

    code = "E_EVENT_DEPTH"


class RateLimitError(HostrtError):
    """A plugin emitted events faster than its rate limit allows."""

    code = "E_RATE_LIMIT"


class CommandNotFoundError(HostrtError):
    """No active plugin offers the command asked for."""

    code = "E_NO_COMMAND"


class HostMethodError(HostrtError):
    """A host method failed. Host functions raise it to send the calling
    plugin a message and, optionally, a code of their own (``E_`` and
    capital letters, digits or ``_``); any other exception reaches the plugin
    only as ``E_HOST_METHOD`` with a generic message, so no host traceback,
    path or secret leaks into plugin code."""

    code = "E_HOST_METHOD"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            if type(code) is not str or not _CODE_RE.fullmatch(code):
                raise ValueError(f"error code {code!r} must look like E_SOMETHING")
            self.code = code


__all__ = [
    "BudgetExceededError",
    "CapabilityError",
    "CommandNotFoundError",
    "DependencyError",
    "EventDepthError",
    "EventError",
    "GrantError",
    "HostMethodError",
    "HostrtError",
    "LifecycleError",
    "ManifestError",
    "ManifestProblem",
    "PayloadError",
    "PluginCompileError",
    "PluginError",
    "PluginNotFoundError",
    "QuotaExceededError",
    "RateLimitError",
    "ResourceLimitError",
    "SandboxViolationError",
    "SettingsError",
    "StorageError",
    "StoreError",
]
