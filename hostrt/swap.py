"""Bringing running plugins up to date with their folders (hot reload).

:class:`HotSwap` is the part of :class:`~hostrt.host.Host` that turns a
changed plugin folder into a new running version: the new version is
checked and loaded beside the running one, and only then swapped in; a
refused or failing new version leaves the previous one running (or starts
it again from the text it was loaded from). The watcher that notices
changes is :mod:`hostrt.reload`; the lifecycle steps used here (load,
launch, stop, block dependents) are the host's own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .capabilities import Capability, parse_capability
from .errors import CapabilityError, DependencyError, EventError, HostrtError, PluginError
from .lifecycle import PluginRecord, PluginState, ReloadOutcome, ReloadResult
from .manifest import Manifest
from .ordering import activation_order, requirement_problems
from .reload import DEFAULT_DEBOUNCE_S, HostWatch, ReloadCallback

log = logging.getLogger("hostrt.host")

#: States of a plugin that was meant to run but could not: a change to its
#: folder tries again.
_RETRIED = frozenset({PluginState.FAILED, PluginState.BLOCKED, PluginState.INVALID})


def _requirements_first(fresh: Mapping[str, PluginRecord | None]) -> list[str]:
    """The folder names of one burst of changes, each after the folders of
    the burst its new manifest requires (by name otherwise, and on a
    cycle): a plugin and a dependent saved together must not be judged
    against the version of the plugin that is being replaced."""
    order: list[str] = []

    def visit(name: str, path: frozenset[str]) -> None:
        if name in order or name in path:
            return
        record = fresh[name]
        if record is not None and record.manifest is not None:
            for req in record.manifest.relationships.requires:
                if req.id in fresh:  # folder name and id are the same
                    visit(req.id, path | {name})
        order.append(name)

    for name in sorted(fresh):
        visit(name, frozenset())
    return order


class HotSwap:
    """Hot reload for :class:`~hostrt.host.Host` (which inherits it): the
    public ``reload``, ``sync_folders`` and ``watch``, and the swap."""

    #: The folders of the burst being synced that are still to come.
    _in_burst: frozenset[str] = frozenset()

    async def reload(self, plugin_id: str, *, grant_requested: bool = False) -> ReloadResult:
        """Bring one plugin up to date with its folder on disk.

        A running plugin is swapped atomically: the new version is loaded
        and compiled beside the running one, and only then is the old one
        deactivated and the new one activated, receiving what the old one's
        ``deactivate`` returned as its previous state. If anything about the
        new version fails, the old one runs on (``kept``) or is started
        again from the text it was loaded from (``restored``), and the
        result's ``error`` names the file and line. A plugin that failed or
        was blocked is started; one stopped on purpose only has its manifest
        read again. ``grant_requested`` first grants everything the new
        manifest requests (for development hosts; the grants are listed in
        the result). Raises PluginNotFoundError for an unknown id.
        """
        async with self._lock:
            self._check_open()
            if plugin_id not in self._records and plugin_id not in self._invalid:
                self._record(plugin_id)  # raises
            results = await self._sync([plugin_id], start_new=False, grant_requested=grant_requested)
        return next(r for r in results if r.plugin_id == plugin_id)

    async def sync_folders(self, folders: Iterable[str], *, start_new: bool = True,
                           grant_requested: bool = False) -> list[ReloadResult]:
        """Bring the named plugin folders (names inside the plugins folder)
        up to date with the disk, as :meth:`reload` does for each: running
        versions are swapped, removed folders deactivated and forgotten, new
        folders started (when ``start_new``), failed or blocked ones tried
        again. Plugins blocked only because a plugin they require was not
        running are tried again once it is. Returns one result per plugin
        affected; the watcher of :meth:`watch` calls this."""
        async with self._lock:
            self._check_open()
            return await self._sync(folders, start_new=start_new, grant_requested=grant_requested)

    def watch(self, *, debounce_s: float = DEFAULT_DEBOUNCE_S, on_reload: ReloadCallback | None = None,
              start_new: bool = True, grant_requested: bool = False) -> HostWatch:
        """Hot reload while the returned object is entered
        (``async with host.watch(): ...``): a watchdog observer on the
        plugins folder feeds every burst of changes (debounced by
        ``debounce_s``) to :meth:`sync_folders`; ``on_reload(result)`` (sync
        or async) hears about each :class:`ReloadResult`."""
        return HostWatch(self, debounce_s=debounce_s, on_reload=on_reload, start_new=start_new,
                         grant_requested=grant_requested)

    async def _sync(self, folders: Iterable[str], *, start_new: bool, grant_requested: bool) -> list[ReloadResult]:
        if not self.plugins_dir.is_dir():
            raise HostrtError(f"plugins folder '{self.plugins_dir}' does not exist")
        disabled = set(self.store.disabled_plugins())
        # Only direct sub-folders are plugin folders.
        names = {name for name in folders if name and not name.startswith(".") and Path(name).name == name}
        fresh = {name: self._read_folder(self.plugins_dir / name, disabled) for name in names}
        results: list[ReloadResult] = []
        order = _requirements_first(fresh)
        try:
            for i, name in enumerate(order):
                # A dependent still to come in this burst is judged against
                # the new version of what it requires when its turn comes,
                # rather than stopped now (which would lose its state).
                self._in_burst = frozenset(order[i + 1:])
                result = await self._sync_folder(name, fresh[name], start_new, grant_requested)
                if result is not None:
                    results.append(result)
        finally:
            self._in_burst = frozenset()
        # Those whose new version was refused may still not accept it.
        for name in order:
            record = self._records.get(name)
            if record is not None and record.state is PluginState.ACTIVE:
                await self._block_dependents(name, None)
        results.extend(await self._retry_blocked())
        for result in results:
            self._report(result)
        return results

    async def _sync_folder(self, name: str, fresh: PluginRecord | None, start_new: bool,
                           grant_requested: bool) -> ReloadResult | None:
        """Bring the plugin of folder ``name`` to ``fresh``, the folder as
        read from disk (None: no plugin folder any more)."""
        started = time.perf_counter()
        record = self._records.get(name) or self._invalid.get(name)
        if fresh is None:
            if record is None:
                return None
            if record.state is PluginState.ACTIVE:
                await self._block_dependents(name, "was removed")
                await self._deactivate(name)
            self._records.pop(name, None)
            self._invalid.pop(name, None)
            self._requests_cache.pop(name, None)
            self._pending.pop(name, None)
            return self._result(record, ReloadOutcome.REMOVED, started, previous_version=record.version)
        if record is not None and record.state is PluginState.ACTIVE:
            return await self._swap(record, fresh, started, grant_requested)
        was = record.state if record is not None else None
        self._pending.pop(name, None)
        self._requests_cache.pop(name, None)
        if fresh.manifest is None:
            self._records.pop(name, None)
            self._invalid[name] = fresh
            return self._result(fresh, ReloadOutcome.FAILED, started, error=fresh.error)
        self._invalid.pop(name, None)
        self._records[name] = fresh
        if not ((was is None and start_new) or was in _RETRIED):
            return self._result(fresh, ReloadOutcome.UPDATED, started)
        granted = tuple(self.grants.grant_requested(name, actor="dev")) if grant_requested else ()
        await self._activate(name, chain=())
        outcome = ReloadOutcome.STARTED if fresh.state is PluginState.ACTIVE else ReloadOutcome.FAILED
        return self._result(fresh, outcome, started, error=fresh.error if outcome is ReloadOutcome.FAILED else None,
                            granted=granted)

    async def _swap(self, record: PluginRecord, fresh: PluginRecord, started: float,
                    grant_requested: bool) -> ReloadResult:
        """Replace a running version with the one on disk, or keep it."""
        pid, old_manifest, old_version = record.id, record.manifest, record.version
        assert old_manifest is not None
        new = fresh.manifest

        def kept(error: HostrtError | None, granted: tuple[str, ...] = ()) -> ReloadResult:
            return self._result(record, ReloadOutcome.KEPT, started, previous_version=old_version,
                                error=error, granted=granted)

        # Whatever version waited for grants is replaced by this one: what
        # it requested may no longer be granted unless this one requests it.
        self._pending.pop(pid, None)
        if new is None:
            return kept(fresh.error)
        requested = tuple(parse_capability(c) for c in new.capabilities)
        granted = tuple(self.grants.grant_requested(pid, actor="dev", requests=requested)) if grant_requested else ()
        refusal = self._refusal(pid, new, requested)
        if refusal is not None:
            if self.grants.missing(pid, requests=requested):
                # Granting is checked against what a plugin requests; while
                # this version waits (for its grants, or for a dependency
                # as well), what it requests may be granted.
                self._pending[pid] = requested
            return kept(refusal, granted)
        try:
            loaded = await self._load(fresh.folder, new, self._runtimes[new.runtime_name])
        except Exception as exc:
            return kept(self._as_error(pid, exc, "loading the new version"), granted)
        old_loaded = record._loaded
        assert old_loaded is not None
        state, stop_error = await self._stop(record, close_later=True)
        if stop_error is not None:
            log.warning("plugin %s: the previous version's deactivate failed: %s", pid, stop_error)
        self._adopt(record, new)
        self._set(record, PluginState.LOADING, None)
        error = await self._launch(record, new, loaded, state)
        if error is None:
            await self._block_dependents(pid, None)
            return self._result(record, ReloadOutcome.RELOADED, started, previous_version=old_version,
                                granted=granted)
        # The new version failed to start: run the old one again, from the
        # very text it was loaded from (the files on disk are the new ones),
        # handing it the state it handed over.
        self._adopt(record, old_manifest)
        try:
            again = await self._runtimes[old_manifest.runtime_name].load(old_loaded.source)
        except Exception as exc:
            restore_error: HostrtError | None = self._as_error(pid, exc, "restoring the previous version")
        else:
            restore_error = await self._launch(record, old_manifest, again, state)
        if restore_error is None:
            return self._result(record, ReloadOutcome.RESTORED, started, previous_version=old_version,
                                error=error, granted=granted)
        self._set(record, PluginState.FAILED, error)
        log.warning("plugin %s: the previous version could not be started again either: %s", pid, restore_error)
        await self._block_dependents(pid, "is failed")
        return self._result(record, ReloadOutcome.FAILED, started, previous_version=old_version, error=error,
                            granted=granted)

    def _adopt(self, record: PluginRecord, manifest: Manifest) -> None:
        """Make ``manifest`` the one the record (and grant checks) go by."""
        record._manifest = manifest
        self._requests_cache.pop(record.id, None)

    def _refusal(self, pid: str, new: Manifest, requested: tuple[Capability, ...]) -> HostrtError | None:
        """Why a new version of running plugin ``pid`` cannot replace it,
        checked before any of the new code runs; None when it can."""
        version = new.version
        if new.runtime_name not in self._runtimes:
            return PluginError(pid, f"version {version}: this host has no '{new.runtime_name}' runtime")
        problems = requirement_problems(new, {**self._manifests(), pid: new})
        for req in new.relationships.requires:
            dep = self._records.get(req.id)
            if dep is not None and dep.state is not PluginState.ACTIVE and req.id != pid:
                problems.append(f"requires '{req.id}', which is {dep.state}")
        if problems:
            return DependencyError(f"plugin '{pid}' version {version} {'; '.join(problems)}")
        # The running plugins must stay orderable: a version closing a cycle
        # would be refused by activate, and stopping the plugins on it
        # would never end (each waits for the other's dependents).
        cycle = activation_order({**self._manifests(active=True), pid: new}).blocked.get(pid)
        if cycle is not None:
            return DependencyError(f"plugin '{pid}' version {version} {cycle.message.removeprefix(f'plugin {pid!r} ')}")
        conflicting = self._conflicting(pid, new)
        if conflicting is not None:
            return DependencyError(f"plugin '{pid}' version {version} conflicts with active plugin '{conflicting}'")
        taken = self.bus.conflict(self._event_declarations(new))
        if taken is not None:
            return EventError(f"plugin '{pid}' version {version}: {taken}")
        if self.policy.require_all_grants:
            missing = self.grants.missing(pid, requests=requested)
            if missing:
                return CapabilityError(pid, ", ".join(missing), f"requested by version {version} but not granted")
        return None

    async def _block_dependents(self, pid: str, why: str | None) -> None:
        """Stop the active plugins requiring ``pid`` and mark them blocked:
        all of them (``pid`` ``why``: "was removed", "is failed"), or, when
        ``why`` is None, those whose version range the running ``pid`` no
        longer satisfies."""
        available = self._manifests()
        for other in self._dependents(pid):
            assert other.manifest is not None
            if other.state is not PluginState.ACTIVE:
                continue  # blocked already, as a dependent of an earlier one
            if why is not None:
                reason = f"requires '{pid}', which {why}"
            elif other.id in self._in_burst:
                continue
            else:
                problems = [p for p in requirement_problems(other.manifest, available) if f"'{pid}'" in p]
                if not problems:
                    continue
                reason = "; ".join(problems)
            # Its own dependents are blocked too (not merely deactivated),
            # so that they start again with it.
            await self._block_dependents(other.id, "is blocked")
            await self._deactivate(other.id)
            self._set(other, PluginState.BLOCKED, DependencyError(f"plugin '{other.id}' {reason}"))

    async def _retry_blocked(self) -> list[ReloadResult]:
        """Start the plugins blocked by a dependency that now runs, and
        then those blocked by them, until no more start."""
        results: list[ReloadResult] = []
        while True:
            running = self._manifests(active=True)
            startable = [record for record in self._records.values() if self._unblocked(record, running)]
            for record in startable:
                started = time.perf_counter()
                await self._activate(record.id, chain=())
                if record.state is PluginState.ACTIVE:
                    results.append(self._result(record, ReloadOutcome.STARTED, started))
            if not any(record.state is PluginState.ACTIVE for record in startable):
                return results

    def _unblocked(self, record: PluginRecord, running: Mapping[str, Manifest]) -> bool:
        """Is ``record`` blocked by a dependency, every plugin it requires
        running now (``running``: the manifests of the active plugins), in a
        version it accepts? (One it does not accept would
        only be blocked again, with a lifecycle change for every save of
        any plugin.)"""
        manifest = record.manifest
        if record.state is not PluginState.BLOCKED or not isinstance(record.error, DependencyError) \
                or manifest is None or not manifest.relationships.requires:
            return False
        return all(r.id in running for r in manifest.relationships.requires) \
            and not requirement_problems(manifest, running)

    def _result(self, record: PluginRecord, outcome: ReloadOutcome, started: float, *,
                previous_version: str | None = None, error: HostrtError | None = None,
                granted: tuple[str, ...] = ()) -> ReloadResult:
        return ReloadResult(plugin_id=record.id, outcome=outcome, state=record.state, version=record.version,
                            previous_version=previous_version, error=error, granted=granted,
                            seconds=time.perf_counter() - started)

    def _report(self, result: ReloadResult) -> None:
        detail: dict[str, Any] = {"outcome": result.outcome.value, "version": result.version,
                                  "previous": result.previous_version, "ms": round(result.seconds * 1000, 1)}
        if result.error is not None:
            detail["error"] = result.error.to_dict()
        if result.granted:
            detail["granted"] = list(result.granted)
        self.store.audit(result.plugin_id, "reload", detail)
        if result.error is not None:
            log.warning("reload %s", result)
        else:
            log.info("reload %s in %.1f ms", result, result.seconds * 1000)
