"""The per-plugin wall-clock budget and its C-speed tick stream.

Plugin code is rewritten (see :mod:`.policy`) so that every loop iteration,
every function call and every pass of a ``while`` loop pulls one item from
the plugin's *tick stream*. The stream is built only from C iterators:

* ``TICK_CHUNK - 1`` ticks come from iterating a constant tuple of ``True``
  (the steady state: a few nanoseconds per tick, no Python frame), then
* one tick comes from ``map(operator.eq, check_iter, (True,))`` where
  ``check_iter`` is ``iter(budget.check, None)``: pulling it calls
  :meth:`Budget.check`, which reads the monotonic clock and raises
  :class:`BudgetInterrupt` once the deadline has passed.

Two CPython details make this sticky and robust:

* ``chain`` keeps its *active* iterator when that iterator raises anything
  other than ``StopIteration``, and ``iter(callable, sentinel)`` keeps its
  callable in the same case. The check therefore sits in the active
  position: after it raises, every later pull calls it again (and raises
  again) instead of the stream silently ending. A ``RecursionError`` raised
  while calling the check behaves the same way, and the next pull retries.
* The stream's *source* (what makes each chunk's check iterator) must never
  raise: a chain whose source raises drops it and ends for good, and every
  later tick of the plugin would raise ``StopIteration`` (its loops would
  silently run zero times). So the check iterators are made by calling
  ``map``, whose vectorcall has no recursion check, never by calling
  ``zip`` or an ``itertools`` type, which at the recursion limit raise
  ``RecursionError`` there.
* The check runs in the thread that pulls. Plugin code may only run in its
  own worker thread during an entry; if anything runs it elsewhere (a
  generator finalised by the garbage collector in the host's thread), the
  check raises there too.

Between clock reads, a plugin can run at most ``TICK_CHUNK`` ticks. Checked
operations that approve large results also call :meth:`Budget.charge`, which
reads the clock early, so a loop of big allocations cannot run far past the
deadline either. What the budget cannot interrupt is a single long-running C
call; the runtime's outer timeout handles that (see ``runtimes/python.py``).
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from itertools import chain, repeat
from operator import eq
from typing import Iterator

from .limits import CHARGE_CHECK_BYTES, TICK_CHUNK
from .refusals import BudgetInterrupt

_CLOSED = 0
_RUNNING = 1
_EXCEEDED = 2

_monotonic = time.monotonic
_get_ident = threading.get_ident


#: Walks smaller than this many items are not charged.
_WALK_CHARGE_THRESHOLD = 4096
#: A walked item costs about as much time as copying this many bytes, so
#: walks are charged in the same currency as large results.
_BYTES_PER_WALKED_ITEM = 16


class Budget:
    """Wall-clock budget of one plugin, shared by all its entries.

    :meth:`start` opens an entry with a fresh deadline, :meth:`stop` closes
    it and reports whether the budget was exceeded. Outside an entry every
    check fails, so plugin code that something runs between entries (or in
    the wrong thread) is interrupted at its next check.
    """

    def __init__(self) -> None:
        self._state = _CLOSED
        self._deadline = 0.0
        self._owner = -1
        self._charged = 0
        self._poisoned = False
        self.timeout_s = 0.0
        check_iter = iter(self.check, None)
        # One chunk = map(eq, check_iter, (True,)) then TICK_CHUNK - 1 Trues.
        # The inner map pulls check_iter first, so a failed check is retried
        # on the next pull (see the module docstring); it also calls the
        # check once more when it finishes, which is harmless. eq(True, True)
        # keeps the item truthy.
        checks = map(map, repeat(eq), repeat(check_iter), repeat((True,)))
        chunks = zip(checks, repeat((True,) * (TICK_CHUNK - 1)))
        #: The endless tick stream. Items are truthy (``True`` or a tuple).
        self.stream: Iterator[object] = chain.from_iterable(chain.from_iterable(chunks))
        #: One tick, as plugin code calls it: a C method-wrapper, ~5 ns.
        self.tick = self.stream.__next__

    # -- entries ------------------------------------------------------------

    def start(self, timeout_s: float) -> None:
        """Open an entry in the calling thread with ``timeout_s`` to run."""
        self.timeout_s = timeout_s
        self._owner = _get_ident()
        self._charged = 0
        self._deadline = _monotonic() + timeout_s
        self._state = _EXCEEDED if self._poisoned else _RUNNING

    def stop(self) -> bool:
        """Close the entry; return True if the budget was exceeded in it
        (noticed by a check, or simply past the deadline now)."""
        exceeded = self._state == _EXCEEDED or _monotonic() > self._deadline
        if not self._poisoned:
            self._state = _CLOSED
        return exceeded

    @contextmanager
    def grace(self, seconds: float) -> Iterator[None]:
        """Give the running entry at least ``seconds`` more for the duration
        of the block (used to format an error with plugin ``__str__`` code
        after the entry failed), then put the deadline back: graces never
        add up, however many errors an entry formats."""
        saved = self._deadline
        if self._state == _RUNNING:
            self._deadline = max(self._deadline, _monotonic() + seconds)
        try:
            yield
        finally:
            self._deadline = saved

    def poison(self) -> None:
        """Mark the budget exceeded for good (the plugin is being stopped)."""
        self._poisoned = True
        self._state = _EXCEEDED

    @property
    def exceeded(self) -> bool:
        """True once a check has noticed the deadline (or after poisoning)."""
        return self._state == _EXCEEDED

    @property
    def overdue(self) -> bool:
        """True if the budget is exceeded or the entry's deadline has passed
        (whether or not a check has noticed yet)."""
        return self._state == _EXCEEDED or _monotonic() > self._deadline

    def remaining(self) -> float:
        """Seconds left in the running entry (0 outside one)."""
        if self._state != _RUNNING:
            return 0.0
        return max(0.0, self._deadline - _monotonic())

    @property
    def running(self) -> bool:
        return self._state == _RUNNING

    # -- checks ---------------------------------------------------------------

    def check(self) -> bool:
        """Return True if plugin code may go on; raise BudgetInterrupt if not.

        Called once per tick chunk by the stream, at the start of every
        ``except`` and ``finally`` block in plugin code, and by guards.
        """
        if self._state == _RUNNING and _get_ident() == self._owner:
            if _monotonic() <= self._deadline:
                return True
            self._state = _EXCEEDED
        raise BudgetInterrupt()

    def charge_walk(self, items: int) -> None:
        """Account for a walk over ``items`` items a guard is about to
        allow (several walks in a row each under the limit must still
        reach a clock read before their sum outlasts the budget)."""
        if items >= _WALK_CHARGE_THRESHOLD:
            self.charge(items * _BYTES_PER_WALKED_ITEM)

    def charge(self, nbytes: int) -> None:
        """Account for a large result a guard is about to allow; read the
        clock early once enough has been charged."""
        self._charged += nbytes
        if self._charged >= CHARGE_CHECK_BYTES:
            self._charged = 0
            self.check()
