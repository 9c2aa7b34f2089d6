"""Declared events and the bus that delivers them.

Every event has exactly one declarer: the host (:meth:`EventBus.declare`,
through ``Host.declare_event``) or one active plugin (its manifest's
``events``). Only the declarer may emit it, and each emitted payload is
checked against the declaration (:class:`~hostrt.payloads.PayloadSpec`)
before any subscriber sees it. A rejection raises
:class:`~hostrt.errors.PayloadError` to the publisher and is written to
the audit log.

Delivery (docs/events.md is the reference):

- Each subscribing plugin has an inbox and receives events one at a time,
  in the order they were published. One event reaches one plugin as one
  entry into plugin code that calls each of its matching handlers in the
  order they were registered (awaiting async JavaScript handlers), under
  the plugin's time limit.
- Different plugins handle an event concurrently: a slow plugin delays only
  itself. An inbox holds at most ``inbox_size`` events; past that the
  plugin misses events (logged, audited, and reported to the host).
- A handler that throws is reported (log, audit, the host's
  :class:`EventDelivery`); the plugin's other handlers and every other
  plugin still receive the event. A handler that runs past the time limit
  (or a JavaScript plugin's memory limit) fails its plugin, as any entry
  does.
- Events emitted while handling an event are one level deeper; past
  ``max_depth`` the emit is refused with EventDepthError.
- The host subscribes too (:meth:`EventBus.subscribe_host`): its handlers
  get an inbox of their own, in the same order.
- The subscribe grant is read again for every delivery, and a plugin's
  subscriptions and inbox go when it is deactivated.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import json
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

from . import callchain
from .capabilities import Capability, parse_capability, scope_matches
from .errors import (
    EventDepthError,
    EventError,
    HostrtError,
    LifecycleError,
    PayloadError,
    PluginError,
)
from .auditthrottle import AuditThrottle
from .grants import GrantManager
from .payloads import PayloadSpec
from .store import Store

_log = logging.getLogger("hostrt.events")

#: The host's name as an event's source (an id no plugin may take).
HOST = "host"
#: Rejections of one event for one reason are written to the audit log at
#: most once per this many seconds, with a count of those left out.
REJECTION_AUDIT_INTERVAL_S = 10.0


@dataclass(frozen=True)
class EventPolicy:
    """Limits of the bus (part of :class:`~hostrt.host.HostPolicy`)."""

    #: Events nested inside event handlers, the top-level emit counting 1.
    max_depth: int = 8
    #: Events one plugin may emit per second on average, and in one burst.
    rate_per_s: float = 100.0
    burst: int = 200
    #: Events waiting for one plugin; more are dropped for that plugin.
    inbox_size: int = 1000
    #: Event handlers one plugin may have subscribed at once.
    max_subscriptions: int = 1000


class EventSink(Protocol):
    """What the bus needs from an active plugin (its runtime's LoadedPlugin)."""

    async def deliver_event(self, handler_ids: list[int], payload_json: str, info: dict[str, Any]) -> list[PluginError]:
        """Call the handlers ``handler_ids`` in order with the payload (JSON
        text) and ``info`` (``{"name", "source"}``) as one entry; return the
        handlers' errors. Raise PluginError if the entry itself failed."""
        ...


@dataclass(frozen=True)
class EventDeclaration:
    """A declared event: its name, declarer (a plugin id or ``"host"``) and check."""

    name: str
    owner: str
    payload: PayloadSpec
    description: str | None = None

    @classmethod
    def build(cls, name: str, owner: str, schema: dict[str, Any] | None, max_payload_bytes: int,
              description: str | None = None) -> "EventDeclaration":
        """A declaration whose payload check is compiled from ``schema``."""
        return cls(name, owner, PayloadSpec(f"event '{name}'", schema, max_payload_bytes), description)


@dataclass(frozen=True)
class Event:
    """An event as a host handler receives it: a fresh copy of the payload."""

    name: str
    #: ``"host"`` or the id of the plugin that emitted it.
    source: str
    payload: Any


HostHandler = Callable[[Event], Union[None, Awaitable[None]]]


class HostSubscription:
    """What :meth:`EventBus.subscribe_host` returns; ``dispose()`` ends it."""

    def __init__(self, bus: "EventBus", handler_id: int) -> None:
        self._bus = bus
        self._handler_id = handler_id

    def dispose(self) -> None:
        self._bus.unsubscribe_host(self._handler_id)


class _HostSink:
    """Delivers events to the host's own handlers (trusted code: no timeout)."""

    def __init__(self, handlers: dict[int, HostHandler]) -> None:
        self._handlers = handlers

    async def deliver_event(self, handler_ids: list[int], payload_json: str, info: dict[str, Any]) -> list[PluginError]:
        errors: list[PluginError] = []
        for handler_id in handler_ids:
            handler = self._handlers.get(handler_id)
            if handler is None:
                continue
            try:
                result = handler(Event(info["name"], info["source"], json.loads(payload_json)))
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - reported like a plugin handler's error
                _log.exception("host handler for event '%s' failed", info["name"])
                errors.append(PluginError(HOST, f"host handler for event '{info['name']}' failed: "
                                          f"{type(exc).__name__}: {exc}"))
        return errors


@dataclass
class EventDelivery:
    """What became of one emitted event, as :meth:`Host.emit` reports it.

    Every plugin whose subscription matched appears in exactly one list.
    """

    name: str
    source: str
    #: Plugins whose handlers all ran without error.
    delivered: list[str] = field(default_factory=list)
    #: Plugins whose handlers (or the entry) failed, with the error
    #: (``"host"`` for the host's own handlers).
    failed: dict[str, PluginError] = field(default_factory=dict)
    #: Plugins that missed the event: their inbox was full.
    dropped: list[str] = field(default_factory=list)
    #: Plugins that were not called: deactivated, unsubscribed or their
    #: subscribe grant revoked before their turn.
    skipped: list[str] = field(default_factory=list)
    #: Plugins not waited for: they were waiting on the emitting code
    #: itself (a host method called by their handler), so waiting would
    #: deadlock. They receive the event once they are free; the report is
    #: a snapshot and does not change afterwards.
    pending: list[str] = field(default_factory=list)


@dataclass
class _Subscription:
    plugin_id: str
    pattern: str
    handler_id: int


class _Emission:
    """One accepted event on its way to the inboxes."""

    __slots__ = ("name", "source", "text", "depth", "waiting", "report", "waits")

    def __init__(self, name: str, source: str, text: str, depth: int, waiting: tuple[str, ...]) -> None:
        self.name = name
        self.source = source
        self.text = text
        self.depth = depth
        #: Plugins waiting on whoever emitted it (see hostrt.callchain).
        self.waiting = waiting
        self.report = EventDelivery(name, source)
        self.waits: dict[str, asyncio.Future[None]] = {}


class _Inbox:
    """The events waiting for one plugin, delivered one at a time by a task
    that exists only while there is something to deliver."""

    def __init__(self, plugin_id: str, sink: EventSink) -> None:
        self.plugin_id = plugin_id
        self.sink = sink
        self.queue: collections.deque[tuple[_Emission, list[int]]] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.closed = False


class EventBus:
    """Declarations, subscriptions and delivery for one host."""

    def __init__(self, store: Store, grants: GrantManager, policy: EventPolicy | None = None) -> None:
        self._store = store
        self._grants = grants
        self._rejections = AuditThrottle(store, REJECTION_AUDIT_INTERVAL_S)
        self.policy = policy or EventPolicy()
        self._declared: dict[str, EventDeclaration] = {}
        self._subscriptions: list[_Subscription] = []
        self._inboxes: dict[str, _Inbox] = {}
        self._host_handlers: dict[int, HostHandler] = {}
        self._next_host_handler = 1
        self._inboxes[HOST] = _Inbox(HOST, _HostSink(self._host_handlers))
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Events accepted on a plugin's thread and not yet routed on the loop.
        self._in_transit = 0
        # Subscriptions change on plugin threads and the loop alike.
        self._lock = threading.Lock()

    # -- declarations ----------------------------------------------------------

    def conflict(self, declarations: list[EventDeclaration]) -> str | None:
        """Why :meth:`declare` would refuse ``declarations`` (a name already
        declared by someone else), or None."""
        for declaration in declarations:
            existing = self._declared.get(declaration.name)
            if existing is not None and existing.owner != declaration.owner:
                owner = "the host" if existing.owner == HOST else f"plugin '{existing.owner}'"
                return f"event '{declaration.name}' is already declared by {owner}"
        return None

    def declare(self, declarations: list[EventDeclaration]) -> None:
        """Add declarations, all or none: EventError if a name is already
        declared by someone else."""
        with self._lock:
            refusal = self.conflict(declarations)
            if refusal is not None:
                raise EventError(refusal)
            for declaration in declarations:
                self._declared[declaration.name] = declaration

    def undeclare_owner(self, owner: str) -> None:
        """Remove every declaration of ``owner`` (a plugin being deactivated)."""
        with self._lock:
            self._declared = {n: d for n, d in self._declared.items() if d.owner != owner}

    def declaration(self, name: str) -> EventDeclaration | None:
        return self._declared.get(name)

    def declarations(self) -> list[EventDeclaration]:
        """Every declared event, by name."""
        return sorted(self._declared.values(), key=lambda d: d.name)

    # -- plugins -----------------------------------------------------------------

    def attach(self, plugin_id: str, sink: EventSink) -> None:
        """Give an activating plugin an inbox (called before its activate runs)."""
        with self._lock:
            self._inboxes[plugin_id] = _Inbox(plugin_id, sink)

    def detach(self, plugin_id: str) -> None:
        """Drop a plugin's subscriptions and inbox (its declarations stay
        until :meth:`undeclare_owner`, so its deactivate may still emit).
        Events it had not received yet are reported as skipped."""
        with self._lock:
            self._subscriptions = [s for s in self._subscriptions if s.plugin_id != plugin_id]
            inbox = self._inboxes.pop(plugin_id, None)
        self._rejections.flush(plugin_id)
        if inbox is not None:
            inbox.closed = True
            while inbox.queue:
                emission, _ = inbox.queue.popleft()
                self._finish(emission, plugin_id, skipped=True)

    def subscribe(self, plugin_id: str, pattern: str, handler_id: int) -> None:
        """Record that handler ``handler_id`` of ``plugin_id`` wants events
        matching ``pattern``. The caller (the plugin's gate) has checked the
        grant and the pattern's syntax."""
        with self._lock:
            if plugin_id not in self._inboxes:
                raise LifecycleError(f"plugin '{plugin_id}' is not active")
            mine = [s.handler_id for s in self._subscriptions if s.plugin_id == plugin_id]
            if handler_id in mine:
                raise HostrtError(f"handler {handler_id} is already subscribed")
            if len(mine) >= self.policy.max_subscriptions:
                raise HostrtError(f"plugin '{plugin_id}' has {len(mine)} event subscriptions, the most "
                                  "allowed; dispose some first")
            self._subscriptions.append(_Subscription(plugin_id, pattern, handler_id))

    def subscribe_host(self, pattern: str, handler: HostHandler) -> HostSubscription:
        """Call ``handler(event)`` (sync or async) for every event matching
        ``pattern``, plugins' events included. No grant is involved; the
        handler runs on the loop, in its own inbox (events in order)."""
        try:
            parse_capability("events.subscribe:" + pattern)
        except (ValueError, TypeError) as exc:
            raise HostrtError(f"invalid event pattern: {exc}") from None
        if not callable(handler):
            raise HostrtError("the handler must be callable")
        with self._lock:
            handler_id, self._next_host_handler = self._next_host_handler, self._next_host_handler + 1
            self._host_handlers[handler_id] = handler
            self._subscriptions.append(_Subscription(HOST, pattern, handler_id))
        return HostSubscription(self, handler_id)

    def unsubscribe_host(self, handler_id: int) -> None:
        """End one of the host's own subscriptions (idempotent)."""
        self.unsubscribe(HOST, handler_id)
        with self._lock:
            self._host_handlers.pop(handler_id, None)

    def unsubscribe(self, plugin_id: str, handler_id: int) -> bool:
        """Forget one handler; True if it was subscribed."""
        with self._lock:
            before = len(self._subscriptions)
            self._subscriptions = [
                s for s in self._subscriptions if not (s.plugin_id == plugin_id and s.handler_id == handler_id)
            ]
            return len(self._subscriptions) != before

    def subscriptions(self, plugin_id: str) -> list[tuple[str, int]]:
        """``(pattern, handler_id)`` of a plugin's subscriptions, in order."""
        return [(s.pattern, s.handler_id) for s in self._subscriptions if s.plugin_id == plugin_id]

    # -- publishing ------------------------------------------------------------

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop deliveries run on (the host's)."""
        self._loop = loop

    def publish(self, source: str, name: Any, payload: Any, *, plain: bool = False) -> _Emission:
        """Check an event and queue it for its subscribers; callable from
        any thread. ``source`` is the declarer emitting it (a plugin id or
        ``"host"``), already authorised by the caller.

        Raises EventError for an event ``source`` did not declare,
        EventDepthError past the maximum depth and PayloadError for an
        invalid payload (the last two are audited).
        """
        declaration = self._declared.get(name) if type(name) is str else None
        if declaration is None or declaration.owner != source:
            who = "the host" if source == HOST else f"plugin '{source}'"
            raise EventError(f"{who} does not declare an event named {_shown(name)}; only the declarer "
                             "of an event may emit it")
        cause = callchain.current()
        depth = cause.event_depth + 1
        if depth > self.policy.max_depth:
            self.audit_rejection(source, name, "E_EVENT_DEPTH", "$", f"depth {depth}")
            raise EventDepthError(
                f"event '{name}' emitted at depth {depth}: events emitted while handling events may nest "
                f"at most {self.policy.max_depth} deep (is there a loop between handlers?)"
            )
        try:
            text, _ = declaration.payload.check(payload, source, plain=plain)
        except PayloadError as exc:
            self.audit_rejection(source, name, exc.code, exc.json_path, exc.reason)
            raise
        # The host waits for its emit; a plugin's returns at once, so no
        # plugin waits on the delivery of a plugin's event.
        emission = _Emission(name, source, text, depth, cause.waiting if source == HOST else ())
        loop = self._require_loop()
        if _on_loop(loop):
            self._route(emission)
        else:
            with self._lock:
                self._in_transit += 1
            loop.call_soon_threadsafe(self._route_later, emission)
        return emission

    def _route_later(self, emission: _Emission) -> None:
        with self._lock:
            self._in_transit -= 1
        self._route(emission)

    def audit_rejection(self, source: str, name: Any, code: str, path: str, reason: str) -> None:
        """Write an ``event.rejected`` entry (throttled per event and code,
        with the count of those left out)."""
        shown = name if type(name) is str else f"(a {type(name).__name__})"
        self._rejections.audit(None if source == HOST else source, "event.rejected", f"{shown}\n{code}",
                               {"event": shown, "code": code, "path": path, "reason": reason[:500]})

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            raise LifecycleError("the host is not running: events cannot be delivered")
        return self._loop

    async def wait(self, emission: _Emission) -> EventDelivery:
        """Wait until ``emission`` reached every subscriber, except plugins
        waiting on the calling code (reported as ``pending``)."""
        waiting = set(callchain.current().waiting)
        futures = []
        for plugin_id, future in emission.waits.items():
            if plugin_id not in waiting:
                futures.append(future)
        if futures:
            await asyncio.gather(*futures)
        # A snapshot: plugins still at work on it are pending and nothing
        # else, however their delivery ends later.
        report = emission.report
        pending = [pid for pid, future in emission.waits.items() if not future.done()]
        return EventDelivery(
            report.name,
            report.source,
            delivered=[p for p in report.delivered if p not in pending],
            failed={p: e for p, e in report.failed.items() if p not in pending},
            dropped=list(report.dropped),
            skipped=[p for p in report.skipped if p not in pending],
            pending=pending,
        )

    # -- delivery ----------------------------------------------------------------

    def _route(self, emission: _Emission) -> None:
        """Loop thread: put the event into each subscriber's inbox, plugins
        in the order of their first matching subscription."""
        targets: dict[str, list[int]] = {}
        with self._lock:
            for sub in self._subscriptions:
                if scope_matches(sub.pattern, emission.name):
                    targets.setdefault(sub.plugin_id, []).append(sub.handler_id)
            inboxes = {pid: self._inboxes.get(pid) for pid in targets}
        loop = asyncio.get_running_loop()
        for plugin_id, handler_ids in targets.items():
            inbox = inboxes[plugin_id]
            emission.waits[plugin_id] = loop.create_future()
            if inbox is None or inbox.closed:
                self._finish(emission, plugin_id, skipped=True)
            elif len(inbox.queue) >= self.policy.inbox_size:
                _log.warning("plugin '%s' missed event '%s': %d events are waiting for it already",
                             plugin_id, emission.name, len(inbox.queue))
                self._store.audit(plugin_id, "event.dropped", {"event": emission.name, "source": emission.source})
                emission.report.dropped.append(plugin_id)
                emission.waits[plugin_id].set_result(None)
            else:
                inbox.queue.append((emission, handler_ids))
                if inbox.task is None:
                    inbox.task = self._start_drain(inbox)

    def _start_drain(self, inbox: _Inbox) -> "asyncio.Task[None]":
        # A context of its own: each delivery runs in its emission's cause,
        # never in that of whoever happened to find the inbox idle.
        return asyncio.get_running_loop().create_task(
            self._drain(inbox), name=f"hostrt-events-{inbox.plugin_id}", context=contextvars.Context())

    async def _drain(self, inbox: _Inbox) -> None:
        try:
            while inbox.queue and not inbox.closed:
                emission, handler_ids = inbox.queue.popleft()
                try:
                    await self._deliver(inbox, emission, handler_ids)
                except asyncio.CancelledError:  # the host is shutting down
                    self._finish(emission, inbox.plugin_id, skipped=True)
                    raise
                except Exception as exc:  # noqa: BLE001 - one broken delivery must not strand the rest
                    _log.exception("delivering event '%s' to '%s' failed", emission.name, inbox.plugin_id)
                    emission.report.failed.setdefault(inbox.plugin_id, PluginError(
                        inbox.plugin_id, f"internal error delivering event '{emission.name}': {type(exc).__name__}"))
                finally:
                    self._finish(emission, inbox.plugin_id)
        finally:
            inbox.task = None
            if inbox.queue and not inbox.closed:  # cancelled mid-way: never strand events
                inbox.task = self._start_drain(inbox)

    async def _deliver(self, inbox: _Inbox, emission: _Emission, handler_ids: list[int]) -> None:
        plugin_id = inbox.plugin_id
        with self._lock:
            live = {s.handler_id for s in self._subscriptions if s.plugin_id == plugin_id}
        handler_ids = [h for h in handler_ids if h in live]
        if not handler_ids or (plugin_id != HOST and not self._grants.is_allowed(
                plugin_id, Capability("events.subscribe", emission.name))):
            self._finish(emission, plugin_id, skipped=True)
            return
        info = {"name": emission.name, "source": emission.source}
        try:
            with callchain.entering(plugin_id, event_depth=emission.depth, waiting=emission.waiting):
                errors = await inbox.sink.deliver_event(handler_ids, emission.text, info)
        except PluginError as exc:
            errors = [exc]
        except Exception as exc:  # noqa: BLE001 - a runtime bug must not stop the inbox
            _log.exception("delivering event '%s' to plugin '%s' failed", emission.name, plugin_id)
            errors = [PluginError(plugin_id, f"internal error delivering event '{emission.name}': "
                                  f"{type(exc).__name__}")]
        if errors:
            first = errors[0]
            emission.report.failed[plugin_id] = first
            _log.warning("plugin '%s' failed handling event '%s': %s", plugin_id, emission.name, first)
            self._store.audit(plugin_id, "event.handler_failed",
                              {"event": emission.name, "source": emission.source, "errors": len(errors),
                               "error": first.to_dict()})
        else:
            emission.report.delivered.append(plugin_id)

    def _finish(self, emission: _Emission, plugin_id: str, *, skipped: bool = False) -> None:
        report = emission.report
        if skipped and not (plugin_id in report.delivered or plugin_id in report.failed
                            or plugin_id in report.skipped):
            report.skipped.append(plugin_id)
        future = emission.waits.get(plugin_id)
        if future is not None and not future.done():
            future.set_result(None)

    async def close(self, wait_s: float) -> None:
        """Wait up to ``wait_s`` for queued deliveries, then stop the rest
        (the host is shutting down; plugins are already detached)."""
        try:
            await asyncio.wait_for(self.idle(), wait_s)
        except asyncio.TimeoutError:
            _log.warning("events still queued after %.1f s at shutdown were dropped", wait_s)
        tasks = [inbox.task for inbox in self._inboxes.values() if inbox.task is not None]
        for inbox in self._inboxes.values():
            inbox.closed = True
            while inbox.queue:
                emission, _ = inbox.queue.popleft()
                self._finish(emission, inbox.plugin_id, skipped=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._rejections.flush(None)  # the host's own rejections still being counted

    async def idle(self) -> None:
        """Wait until no inbox has anything left to deliver (events emitted
        meanwhile included)."""
        while True:
            tasks = [inbox.task for inbox in list(self._inboxes.values()) if inbox.task is not None]
            if tasks:
                await asyncio.wait(tasks)  # (unlike gather, cancelling this wait leaves them running)
            elif self._in_transit:
                await asyncio.sleep(0)  # its routing is already scheduled on the loop
            else:
                return


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _shown(name: Any) -> str:
    if type(name) is str:
        return repr(name[:130])
    return f"of type {type(name).__name__}"


__all__ = [
    "Event",
    "EventBus",
    "EventDeclaration",
    "EventDelivery",
    "EventPolicy",
    "EventSink",
    "HOST",
    "HostHandler",
    "HostSubscription",
]
