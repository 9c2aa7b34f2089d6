"""Turning what the JavaScript side reports into :class:`PluginError`\\ s.

Plugin errors arrive as plain strings the shim read inside the isolate
(``name``, ``message``, ``stack``), or as mini-racer's summary of a script
that failed to parse or threw at the top level. Either way the host only
parses text: it finds the first stack frame in the plugin's own file for
``line``/``column`` and keeps the JS stack as ``plugin_traceback``.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import PluginCompileError, PluginError

#: Longest stack kept on an error.
MAX_STACK_CHARS = 16384


def _location(display_file: str, text: str) -> tuple[int | None, int | None]:
    match = re.search(re.escape(display_file) + r":(\d+):(\d+)", text)
    if match is None:
        return None, None
    return int(match.group(1)), int(match.group(2))


def _clean(value: Any, limit: int = 4096) -> str:
    text = value if type(value) is str else ""
    return text if len(text) <= limit else text[:limit] + "... [cut]"


def from_info(
    plugin_id: str,
    display_file: str,
    info: Any,
    *,
    doing: str = "",
    kind: type[PluginError] = PluginError,
) -> PluginError:
    """A PluginError from the shim's description of a thrown value:
    ``{"name", "message", "stack", "code", "thrown"}`` (all strings)."""
    if type(info) is not dict:
        return kind(plugin_id, f"{doing}failed with an unreadable error", file=display_file)
    name = _clean(info.get("name")) or "Error"
    message = _clean(info.get("message"))
    stack = _clean(info.get("stack"), MAX_STACK_CHARS)
    line, column = _location(display_file, stack)
    summary = f"{name}: {message}" if message else name
    return kind(
        plugin_id,
        f"{doing}{summary}",
        file=display_file,
        line=line,
        column=column,
        plugin_traceback=stack or summary,
    )


def is_stack_overflow(info: Any) -> bool:
    """Whether the shim's error description is V8's stack overflow (the
    recursion limit, reported like Python's as a resource limit)."""
    return (type(info) is dict and info.get("name") == "RangeError"
            and info.get("message") == "Maximum call stack size exceeded")


_SUMMARY = re.compile(r"^(?P<file>.*?):(?P<line>\d+): (?P<message>[^\n]*)")


def from_script_error(plugin_id: str, display_file: str, text: str, *, parse: bool,
                      line_offset: int = 0) -> PluginError:
    """A PluginError from mini-racer's summary of a failed script.

    The summary reads ``file:line: Message`` then the offending source line
    and a caret under the column, then (for a throw) the JS stack.
    ``line_offset`` lines the host put before the plugin's source are
    subtracted.
    """
    lines = text.split("\n")
    match = _SUMMARY.match(lines[0]) if lines else None
    line = column = None
    message = lines[0] if lines else "script failed"
    # A script that fails to compile has no name yet: V8 calls it <anonymous>.
    if match is not None and match.group("file") in (display_file, "<anonymous>"):
        line = max(int(match.group("line")) - line_offset, 1)
        message = match.group("message")
        if len(lines) > 2 and lines[2].strip() == "^":
            column = lines[2].index("^") + 1
    stack = text.split("\n\n", 1)[1].strip() if "\n\n" in text else ""
    if not parse and stack:
        stack_line, stack_column = _location(display_file, stack)
        line = stack_line or line
        column = stack_column or column
    kind = PluginCompileError if parse else PluginError
    return kind(
        plugin_id,
        _clean(message),
        file=display_file,
        line=line,
        column=column,
        plugin_traceback=_clean(stack or text, MAX_STACK_CHARS),
    )


__all__ = ["MAX_STACK_CHARS", "from_info", "from_script_error", "is_stack_overflow"]
