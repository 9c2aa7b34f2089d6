"""Host-side grant decisions: the one place that says yes or no.

A capability is usable only when all of these hold at the moment of the call:

1. the plugin's *current* manifest requests something that covers it, and
2. a grant stored in the database covers it, and
3. that grant is itself covered by the current manifest's requests.

Rule 3 is what keeps a new plugin version from inheriting more than it asked
for: a stored grant outside what the running version requests is ignored.
Grants are read from the store on every check, so a revoke made by any
process sharing the database bites on the plugin's next call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .capabilities import Capability, allows, covered_by_any, parse_capability
from .errors import CapabilityError, GrantError, PluginNotFoundError
from .auditthrottle import AuditThrottle
from .store import Store

#: Returns the parsed capabilities a plugin's current manifest requests, or
#: None if no such plugin is known.
RequestsLookup = Callable[[str], Sequence[Capability] | None]

#: Repeated denials of one capability to one plugin are written to the audit
#: log at most once per this many seconds (with a count of those left out),
#: so a plugin looping on a refused call cannot grow the database without end.
DENIAL_AUDIT_INTERVAL_S = 10.0
_MAX_TRACKED_DENIALS = 10000


class GrantManager:
    """``host.grants``: grant, revoke, list and check capabilities."""

    def __init__(self, store: Store, requests: RequestsLookup, *, pending: RequestsLookup | None = None) -> None:
        self._store = store
        self._requests = requests
        self._pending = pending
        self._denials = AuditThrottle(store, DENIAL_AUDIT_INTERVAL_S)
        self._effective: dict[str, tuple[tuple[int, int], Sequence[Capability], tuple[Capability, ...]]] = {}

    def _requested(self, plugin_id: str) -> Sequence[Capability]:
        requested = self._requests(plugin_id)
        if requested is None:
            raise PluginNotFoundError(f"no plugin with id '{plugin_id}' has been discovered")
        return requested

    @staticmethod
    def _parse(capability: str) -> Capability:
        try:
            return parse_capability(capability)
        except ValueError as exc:
            raise GrantError(f"invalid capability '{capability}': {exc}") from None

    def grant(self, plugin_id: str, capability: str, *, actor: str = "host") -> bool:
        """Persist a grant. Returns False if it was already granted.

        Raises :class:`GrantError` if the capability is malformed or goes
        beyond what the plugin's manifest requests (the running version's,
        or a newer version's on disk that waits for its grants).
        """
        cap = self._parse(capability)
        requested = self._requested(plugin_id)
        pending = self._pending(plugin_id) if self._pending is not None else None
        if not covered_by_any(requested, cap) and not (pending and covered_by_any(pending, cap)):
            asked = ", ".join(str(r) for r in requested) or "nothing"
            raise GrantError(
                f"cannot grant '{cap}' to plugin '{plugin_id}': its manifest requests {asked}"
            )
        return self._store.add_grant(plugin_id, str(cap), actor=actor)

    def grant_requested(self, plugin_id: str, *, actor: str = "host",
                        requests: Sequence[Capability] | None = None) -> list[str]:
        """Grant everything the manifest requests (or ``requests``: what a
        new version of the plugin requests); returns what was newly granted."""
        asked = self._requested(plugin_id) if requests is None else requests
        return [str(c) for c in asked if self._store.add_grant(plugin_id, str(c), actor=actor)]

    def revoke(self, plugin_id: str, capability: str, *, actor: str = "host") -> bool:
        """Remove a grant; takes effect on the plugin's next call. Returns
        False if there was no such grant. Works for unknown plugins too, so
        stale grants can always be cleaned up."""
        cap = self._parse(capability)
        return self._store.remove_grant(plugin_id, str(cap), actor=actor)

    def list(self, plugin_id: str) -> list[str]:
        """The stored grants of a plugin, sorted."""
        return self._store.list_grants(plugin_id)

    def effective(self, plugin_id: str) -> list[Capability]:
        """Stored grants that the current manifest still requests.

        Derived afresh whenever the store's grants (in this or any other
        process) or the plugin's requests may have changed; otherwise the
        last answer is reused, so a call costs one cheap version query
        instead of reading and parsing every grant row.
        """
        requested = self._requests(plugin_id) or ()
        version = self._store.grants_version()
        cached = self._effective.get(plugin_id)
        if cached is not None and cached[0] == version and cached[1] is requested:
            return list(cached[2])
        effective = self._derive(plugin_id, requested)
        if len(self._effective) >= _MAX_TRACKED_DENIALS:
            self._effective.clear()
        self._effective[plugin_id] = (version, requested, tuple(effective))
        return effective

    def _derive(self, plugin_id: str, requested: Sequence[Capability]) -> list[Capability]:
        effective = []
        for text in self._store.list_grants(plugin_id):
            try:
                cap = parse_capability(text)
            except ValueError:
                continue  # written by a newer/older version with other syntax: never honoured
            if covered_by_any(requested, cap):
                effective.append(cap)
        return effective

    def missing(self, plugin_id: str, *, requests: Sequence[Capability] | None = None) -> list[str]:
        """Requested capabilities that no effective grant covers; with
        ``requests``, those of what a new version of the plugin requests."""
        if requests is None:
            requests = self._requested(plugin_id)
            effective = self.effective(plugin_id)
        else:
            effective = self._derive(plugin_id, requests)
        return [str(r) for r in requests if not covered_by_any(effective, r)]

    def is_allowed(self, plugin_id: str, needed: Capability) -> bool:
        """Would a call needing ``needed`` be allowed right now?"""
        return any(allows(g, needed) for g in self.effective(plugin_id))

    def check(self, plugin_id: str, needed: Capability) -> None:
        """Raise :class:`CapabilityError` (and write the denial to the audit
        log) unless ``plugin_id`` may use ``needed`` right now."""
        if self.is_allowed(plugin_id, needed):
            return
        self._audit_denial(plugin_id, str(needed))
        raise CapabilityError(plugin_id, str(needed))

    def flush_denials(self, plugin_id: str) -> None:
        """Write the denials of ``plugin_id`` still being counted (the host
        calls it when the plugin stops)."""
        self._denials.flush(plugin_id)

    def _audit_denial(self, plugin_id: str, capability: str) -> None:
        self._denials.audit(plugin_id, "denied", capability, {"capability": capability})
