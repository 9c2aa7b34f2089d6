"""Turning what went wrong in plugin code into a :class:`hostrt.errors.PluginError`.

* Only frames whose code was compiled from the plugin's own file (code
  filename == the plugin's display path) appear in ``plugin_traceback``;
  guard, runtime and standard-library frames are left out, and source lines
  come from the plugin's own text (never from ``linecache``, which would
  look the display path up on the host's disk).
* ``line``/``column`` are those of the innermost plugin frame (column from
  the code object's position table, 1-based).
* The message is ``"<ExceptionType>: <message>"``. Computing it may run
  plugin code (``__str__``), so this runs in the plugin's worker thread,
  inside its budget, and falls back to a placeholder if that fails.
  Anything that looks like a host path is replaced with ``<host>``.
"""

from __future__ import annotations

import os
import site
import sys
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import TracebackType

from ...errors import (
    BudgetExceededError,
    PluginError,
    ResourceLimitError,
    SandboxViolationError,
)
from ...context import printable
from .limits import MAX_BYTES, MAX_ERROR_MESSAGE
from .refusals import BudgetInterrupt, SandboxImportError, SandboxLimitError, SandboxPolicyError
from .walks import Walks


@dataclass(frozen=True)
class FrameInfo:
    line: int | None
    column: int | None
    function: str


def _host_prefixes(extra: list[str]) -> list[str]:
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.getcwd(), str(Path.home())]
    candidates += extra
    try:
        candidates += site.getsitepackages()
    except AttributeError:  # pragma: no cover - virtualenv without site.getsitepackages
        pass
    candidates.append(str(Path(__file__).resolve().parents[3]))
    cleaned = {c.rstrip(os.sep) for c in candidates if c and len(c) > 1}
    return sorted(cleaned, key=len, reverse=True)


class Reporter:
    """Builds PluginErrors for one plugin."""

    def __init__(self, plugin_id: str, filename: str, source: str, host_paths: list[str]) -> None:
        self.plugin_id = plugin_id
        self.filename = filename
        self._lines = source.splitlines()
        self._prefixes = _host_prefixes(host_paths)

    def redact(self, text: str) -> str:
        for prefix in self._prefixes:
            if prefix in text:
                text = text.replace(prefix, "<host>")
        return text

    def frames(self, tb: TracebackType | None) -> list[FrameInfo]:
        found: list[FrameInfo] = []
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename == self.filename:
                line, column = tb.tb_lineno, None
                index = tb.tb_lasti // 2
                position = next(islice(code.co_positions(), index, index + 1), None)
                if position is not None:
                    if position[0] is not None:
                        line = position[0]
                    if position[2] is not None:
                        column = position[2] + 1
                found.append(FrameInfo(line, column, code.co_name))
            tb = tb.tb_next
        return found

    def _source_line(self, line: int | None) -> str:
        if line is None or not 1 <= line <= len(self._lines):
            return ""
        return self._lines[line - 1].strip()

    def format_traceback(self, frames: list[FrameInfo], last_line: str) -> str:
        out = ["Traceback (most recent call last):"]
        for frame in frames:
            out.append(f'  File "{self.filename}", line {frame.line}, in {frame.function}')
            text = self._source_line(frame.line)
            if text:
                out.append(f"    {text}")
        out.append(last_line)
        return "\n".join(out)

    def message_of(self, exc: BaseException) -> str:
        """``str(exc)``, which may run plugin code; never raises."""
        try:
            # The built-in str() of an exception is the text of its args,
            # which may be a structure with shared parts: measured first.
            # (which also gives the plugin __repr__/__str__ methods inside
            # their text allowance for the conversion)
            Walks().check_text(exc.args, "exception message")
            text = str(exc)
        except SandboxLimitError:
            return f"<exception message of more than {MAX_BYTES} characters>"
        except BaseException:  # noqa: BLE001 - plugin __str__ may raise anything, even the interrupt
            return "<exception str() failed>"
        if type(text) is not str:
            return "<exception str() failed>"
        if len(text) > MAX_ERROR_MESSAGE:
            text = text[:MAX_ERROR_MESSAGE] + "..."
        # The message ends up in host logs and UIs: no forged lines, no
        # terminal escapes, no bidi tricks (as for ctx.log and print).
        return self.redact(printable(text))

    def describe(self, exc: BaseException, *, over_budget: bool, timeout_ms: int) -> PluginError:
        """The PluginError for ``exc`` raised out of an entry."""
        frames = self.frames(exc.__traceback__)
        kind: type[PluginError] = PluginError
        if over_budget or isinstance(exc, BudgetInterrupt):
            kind = BudgetExceededError
            message = f"plugin exceeded its time budget of {timeout_ms} ms"
            last = f"BudgetExceeded: {message}"
        else:
            name = type(exc).__name__
            detail = self.message_of(exc)
            if isinstance(exc, SandboxLimitError):
                kind, message = ResourceLimitError, detail
            elif isinstance(exc, RecursionError):
                kind, message = ResourceLimitError, "maximum recursion depth exceeded"
            elif isinstance(exc, MemoryError):
                kind, message = ResourceLimitError, "out of memory" + (f": {detail}" if detail else "")
            elif isinstance(exc, (SandboxPolicyError, SandboxImportError)):
                kind, message = SandboxViolationError, detail
            elif isinstance(exc, (SystemExit, KeyboardInterrupt, GeneratorExit)):
                message = f"{name} raised by plugin code" + (f": {detail}" if detail else "")
            else:
                message = f"{name}: {detail}" if detail else name
            last = f"{name}: {detail}" if detail else name
        innermost = frames[-1] if frames else None
        return kind(
            self.plugin_id,
            message,
            file=self.filename,
            line=innermost.line if innermost else None,
            column=innermost.column if innermost else None,
            plugin_traceback=self.format_traceback(frames, last),
        )

    def timeout(self, timeout_ms: int, detail: str = "") -> BudgetExceededError:
        message = f"plugin exceeded its time budget of {timeout_ms} ms" + (f" ({detail})" if detail else "")
        return BudgetExceededError(self.plugin_id, message, file=self.filename)

    def problem(self, kind: type[PluginError], message: str, line: int | None = None, column: int | None = None) -> PluginError:
        return kind(self.plugin_id, self.redact(message), file=self.filename, line=line, column=column)

