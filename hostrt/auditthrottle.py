"""Audit entries a plugin can cause at will, written at a bounded rate.

A refused call is worth an audit entry, but a plugin that repeats one in a
loop must not grow the audit log without bound. :class:`AuditThrottle`
writes the first entry for a (plugin, action, key) and then at most one per
interval, each carrying how many identical ones it stands for
(``suppressed``); :meth:`AuditThrottle.flush` writes what is still being
counted when a plugin stops. So every entry stands for 1 + ``suppressed``
refusals, and the log counts every one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from .store import Store

#: Distinct (plugin, action, key) triples remembered; past that the memory
#: starts afresh (which at worst writes a few more entries).
MAX_TRACKED = 10000

_Key = tuple[str | None, str, str]


class AuditThrottle:
    def __init__(self, store: Store, interval_s: float) -> None:
        self._store = store
        self.interval_s = interval_s
        #: key -> (when the last entry was written, refusals counted since, its detail)
        self._seen: dict[_Key, tuple[float, int, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def audit(self, plugin_id: str | None, action: str, key: str, detail: dict[str, Any]) -> None:
        """Write ``detail`` under ``action``, unless an entry for the same
        ``key`` was written less than the interval ago: then count it, and
        the next entry written says how many were suppressed."""
        seen_key, now = (plugin_id, action, key), time.monotonic()
        with self._lock:
            last, suppressed, _ = self._seen.get(seen_key, (None, 0, detail))
            if last is not None and now - last < self.interval_s:
                self._seen[seen_key] = (last, suppressed + 1, detail)
                return
            if len(self._seen) >= MAX_TRACKED:
                self._seen.clear()
            self._seen[seen_key] = (now, 0, detail)
        if suppressed:
            detail = {**detail, "suppressed": suppressed}
        self._store.audit(plugin_id, action, detail)

    def flush(self, plugin_id: str | None) -> None:
        """Write the refusals of ``plugin_id`` still being counted (each as
        its latest detail with ``suppressed``) and forget them."""
        with self._lock:
            mine = [(key, entry) for key, entry in self._seen.items() if key[0] == plugin_id]
            for key, _ in mine:
                del self._seen[key]
        for (_, action, _), (_, suppressed, detail) in mine:
            # The latest refusal stands for itself and the others counted,
            # as every entry does.
            if suppressed == 1:
                self._store.audit(plugin_id, action, detail)
            elif suppressed > 1:
                self._store.audit(plugin_id, action, {**detail, "suppressed": suppressed - 1})
