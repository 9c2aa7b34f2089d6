"""Counted iteration: every way plugin code iterates goes through here.

``for`` loops and comprehensions are rewritten to ``_getiter_(x)``, which
returns ``itertools.compress(x, tick_stream)``: a C iterator that pulls one
tick per item, so the per-item overhead stays at C speed and nothing is
pulled ahead. Builtins and guards that consume a plugin-supplied iterable in
C (``list()``, ``sorted()``, ``str.join``, ``set.update`` ...) first turn it
into a bounded container with :meth:`Iteration.bounded`, which iterates
through a *capped* stream: ticks plus a hard stop after
:data:`~.limits.MAX_ITEMS` items.

The sandbox's ``range`` (:func:`make_range_type`) wraps the real one so
that even C code given a plugin's range (``x in r``, ``r.count(x)``,
``set().isdisjoint(r)``) iterates it through the tick stream: a real
``range(10**12)`` would let ``1.5 in r`` run for hours in one C call.
"""

from __future__ import annotations

import builtins
import operator
from collections import deque
from itertools import chain, compress, islice
from typing import Any, Callable, Iterable, Iterator

from .budget import Budget
from .limits import MAX_ITEMS, items_message
from .refusals import SandboxLimitError

_real_range = builtins.range

#: Containers whose size is already bounded (they exist) and whose iteration
#: in C runs no plugin code: materialising consumers may use them directly.
BOUNDED_TYPES = frozenset(
    {
        list,
        tuple,
        dict,
        set,
        frozenset,
        str,
        bytes,
        bytearray,
        deque,
        type({}.keys()),
        type({}.values()),
        type({}.items()),
    }
)


def _too_many() -> None:
    raise SandboxLimitError(
        f"sequence of more than {MAX_ITEMS} items exceeds the plugin limit of {MAX_ITEMS}"
    )


#: Appended after MAX_ITEMS selectors: the next pull raises. A callable
#: iterator keeps raising on every pull, so it can be shared.
_LIMIT = iter(_too_many, None)


def range_len(r: range) -> int:
    """Length of a real range, without ``len()``'s OverflowError past
    ``sys.maxsize``."""
    try:
        return len(r)
    except OverflowError:
        if r.step > 0:
            return max(0, (r.stop - r.start + r.step - 1) // r.step)
        return max(0, (r.start - r.stop - r.step - 1) // (-r.step))


class SandboxRange:
    """Base of the per-plugin ``range`` classes (see :func:`make_range_type`)."""

    __slots__ = ("_r",)


def make_range_type(stream: Iterator[object]) -> type:
    """Build the ``range`` a plugin sees: the real range's behaviour, but
    every iteration (also by C code) pulls from the plugin's tick stream."""

    def ticking(it: Iterable[Any]) -> Iterator[Any]:
        return compress(it, stream)

    class range(SandboxRange):  # noqa: N801 - plugin code sees it as ``range``
        """range(stop) / range(start, stop[, step]), as the builtin."""

        __slots__ = ()

        def __new__(cls, *args: Any) -> "range":
            self = object.__new__(cls)
            object.__setattr__(self, "_r", _real_range(*args))
            return self

        def __init_subclass__(cls, **kwargs: Any) -> None:
            raise TypeError("type 'range' is not an acceptable base type")

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError(f"'range' object attribute '{name}' is read-only")

        def __delattr__(self, name: str) -> None:
            raise AttributeError(f"'range' object attribute '{name}' is read-only")

        @property
        def start(self) -> int:
            return self._r.start

        @property
        def stop(self) -> int:
            return self._r.stop

        @property
        def step(self) -> int:
            return self._r.step

        def __len__(self) -> int:
            return len(self._r)

        def __bool__(self) -> bool:
            return bool(self._r)

        def __getitem__(self, index: Any) -> Any:
            value = self._r[index]
            if type(value) is _real_range:
                wrapped = object.__new__(range)
                object.__setattr__(wrapped, "_r", value)
                return wrapped
            return value

        def __iter__(self) -> Iterator[int]:
            return ticking(self._r)

        def __reversed__(self) -> Iterator[int]:
            return ticking(reversed(self._r))

        def __contains__(self, value: Any) -> bool:
            # Exact ints are O(1) in the real range; anything else (1.5, an
            # int subclass, a plugin object with __eq__) is a linear search,
            # which must tick.
            if type(value) is int or type(value) is bool:
                return value in self._r
            return value in ticking(self._r)

        def count(self, value: Any) -> int:
            if type(value) is int or type(value) is bool:
                return self._r.count(value)
            return operator.countOf(ticking(self._r), value)

        def index(self, value: Any) -> int:
            if type(value) is int or type(value) is bool:
                return self._r.index(value)
            try:
                return operator.indexOf(ticking(self._r), value)
            except ValueError:
                # not the value's repr: it may be any structure
                raise ValueError(f"{type(value).__name__} value is not in range") from None

        def __eq__(self, other: Any) -> Any:
            if isinstance(other, SandboxRange):
                return self._r == other._r
            return NotImplemented

        def __hash__(self) -> int:
            return hash(self._r)

        def __repr__(self) -> str:
            return repr(self._r)

    range.__module__ = "builtins"
    range.__qualname__ = "range"
    return range


class Iteration:
    """The counted-iteration helpers of one plugin (closures over its stream).

    Attributes are plain functions so that calling them from plugin code is
    a single fast call.
    """

    def __init__(self, budget: Budget) -> None:
        stream = budget.stream
        range_type = make_range_type(stream)
        self.range_type = range_type

        def getiter(ob: Any) -> Iterator[Any]:
            """``for x in ob`` / generator expressions: one tick per item."""
            if type(ob) is range_type:
                return compress(ob._r, stream)
            return compress(ob, stream)

        def getiter_cap(ob: Any) -> Iterator[Any]:
            """List/set/dict comprehensions and ``*`` unpacking: ticks, and
            at most MAX_ITEMS items."""
            if type(ob) is range_type:
                n = range_len(ob._r)
                if n > MAX_ITEMS:
                    raise SandboxLimitError(items_message(n))
                return compress(ob._r, stream)
            return compress(ob, chain(islice(stream, MAX_ITEMS), _LIMIT))

        def bounded(ob: Any) -> Any:
            """``ob`` itself if it is an existing builtin container, else its
            items in a list built through the capped stream."""
            t = type(ob)
            if t in BOUNDED_TYPES:
                # Exact builtin types: len() is C and cannot lie. A 64 MiB
                # string exists legitimately but is too many items for a list.
                n = len(ob)
                if n > MAX_ITEMS:
                    raise SandboxLimitError(items_message(n))
                return ob
            if t is range_type:
                ob = ob._r
                t = _real_range
            if t is _real_range:
                n = range_len(ob)
                if n > MAX_ITEMS:
                    raise SandboxLimitError(items_message(n))
                return ob
            return list(compress(ob, chain(islice(stream, MAX_ITEMS), _LIMIT)))

        def unwrap(ob: Any) -> Any:
            """The real range behind a sandbox range (for host-side code that
            needs a true sequence), anything else unchanged."""
            return ob._r if type(ob) is range_type else ob

        self.getiter: Callable[[Any], Iterator[Any]] = getiter
        self.getiter_cap: Callable[[Any], Iterator[Any]] = getiter_cap
        self.bounded: Callable[[Any], Any] = bounded
        self.unwrap: Callable[[Any], Any] = unwrap
        #: Alias used by builtins that wrap a lazy iterator's output.
        self.ticking = getiter
