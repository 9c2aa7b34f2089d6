"""A few lines of a plugin's source around the line an error points at."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import HostrtError, PluginError

#: Lines shown before and after the failing one.
CONTEXT_LINES = 2
#: Longer source lines are cut, so one minified line cannot flood a terminal.
MAX_LINE_CHARS = 160
#: Where each language starts a new line when it numbers them. (str.splitlines
#: also breaks at form feeds, \x1c-\x1e and \x85, which would put the mark
#: on the wrong line of a file holding one.)
_PYTHON_LINES = re.compile(r"\r\n|\r|\n")
_JAVASCRIPT_LINES = re.compile(r"\r\n|[\r\n\u2028\u2029]")
#: Tabs are shown as this many spaces.
TAB_SIZE = 4


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
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = (_PYTHON_LINES if path.suffix == ".py" else _JAVASCRIPT_LINES).split(text)
    if lines[-1] == "":
        lines.pop()  # what follows the last line break is no line
    if error.line > len(lines):
        return None
    first, last = max(1, error.line - context), min(len(lines), error.line + context)
    width = len(str(last))
    out = []
    for number in range(first, last + 1):
        line = lines[number - 1]
        text = line.expandtabs(TAB_SIZE)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " ..."
        marker = ">" if number == error.line else " "
        out.append(f"{marker} {number:>{width}} | {text}".rstrip())
        # The column counts characters; the caret goes where the character
        # is shown, past expanded tabs.
        caret = len(line[:error.column - 1].expandtabs(TAB_SIZE)) if error.column else None
        if number == error.line and caret is not None and caret < MAX_LINE_CHARS:
            out.append(f"  {'':>{width}} | {' ' * caret}^")
    return "\n".join(out)
