"""A few lines of a plugin's source around the line an error points at."""

from __future__ import annotations

from pathlib import Path

from .errors import HostrtError, PluginError

#: Lines shown before and after the failing one.
CONTEXT_LINES = 2
#: Longer source lines are cut, so one minified line cannot flood a terminal.
MAX_LINE_CHARS = 160


def code_frame(plugins_dir: str | Path, error: HostrtError, *, context: int = CONTEXT_LINES) -> str | None:
    """The lines of the file ``error`` names (``error.file`` is relative to
    the plugins folder, as PluginError gives it) around ``error.line``, the
    failing one marked with ``>`` and, when the column is known, a caret.
    None when the error names no file and line, or the file cannot be read
    or lies outside the plugins folder."""
    if not isinstance(error, PluginError) or not error.file or not error.line or error.line < 1:
        return None
    root = Path(plugins_dir).resolve()
    path = (root / error.file).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    if error.line > len(lines):
        return None
    first, last = max(1, error.line - context), min(len(lines), error.line + context)
    width = len(str(last))
    out = []
    for number in range(first, last + 1):
        text = lines[number - 1].expandtabs(4)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " ..."
        marker = ">" if number == error.line else " "
        out.append(f"{marker} {number:>{width}} | {text}".rstrip())
        if number == error.line and error.column and error.column <= MAX_LINE_CHARS:
            out.append(f"  {'':>{width}} | {' ' * (error.column - 1)}^")
    return "\n".join(out)
