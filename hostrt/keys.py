"""Names plugins choose for their storage keys and settings."""

from __future__ import annotations

import re
from typing import Any

#: Storage keys and setting names. Checked with ``fullmatch``: ``$`` would
#: let a trailing newline through.
KEY_RE = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def describe_key(key: Any) -> str:
    """Name a rejected key in an error message without running plugin code.

    ``repr()`` of a plugin's object would call its ``__repr__`` inside the
    host; only an exact ``str`` is quoted (cut short), anything else is
    named by its built-in type.
    """
    if type(key) is str:
        return repr(key[:120]) + ("..." if len(key) > 120 else "")
    return f"of type {type(key).__name__}"
