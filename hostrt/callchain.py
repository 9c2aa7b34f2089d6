"""What led to the code that is running now: which plugins are waiting on
it and how deeply events are nested.

A :class:`Cause` travels in a context variable: the host sets it around
every entry into a plugin it starts (an event delivery, a command), asyncio
carries it into the tasks and callbacks that entry starts (a JavaScript
plugin's host calls and timers), and the Python runtime carries it into the
plugin's thread. Two things read it:

- the event bus, to give an event emitted while handling another the next
  depth (and refuse it past the host's maximum), and
- host calls that would wait on a plugin already waiting on them (a host
  method that emits an event its caller handles, or invokes a command of
  its caller): they do not wait, so the pair cannot deadlock.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Cause:
    #: Plugins, outermost first, whose entries are waiting on this code.
    waiting: tuple[str, ...] = ()
    #: Depth of the event being handled (0 outside any event handler).
    event_depth: int = 0


ROOT = Cause()
_CAUSE: contextvars.ContextVar[Cause] = contextvars.ContextVar("hostrt_cause", default=ROOT)


def current() -> Cause:
    """The cause of the running code (:data:`ROOT` for the host's own)."""
    return _CAUSE.get()


@contextmanager
def entering(plugin_id: str, *, event_depth: int | None = None,
             waiting: tuple[str, ...] | None = None) -> Iterator[Cause]:
    """Mark the code inside as an entry into ``plugin_id`` (handling an
    event of ``event_depth``, if given) caused by the current code, or by
    code that ``waiting`` plugins wait on (an event's emitter)."""
    outer = _CAUSE.get()
    before = outer.waiting if waiting is None else waiting
    cause = Cause(before + (plugin_id,), outer.event_depth if event_depth is None else event_depth)
    token = _CAUSE.set(cause)
    try:
        yield cause
    finally:
        _CAUSE.reset(token)
