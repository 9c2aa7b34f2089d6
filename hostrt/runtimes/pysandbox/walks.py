"""How much C code would visit walking a plugin's structure, measured first.

Comparing (``==``, ``<``, ``in``, sorting), hashing and converting to text
are single C calls that descend into every item of a list, tuple, dict or
set, and into theirs. No budget check runs inside them. Their cost is not
the structure's size in memory but its size *unfolded*: a part that appears
in two places is visited twice, so ``a = [a, a]`` repeated 64 times holds 65
objects and makes ``a == b`` visit 2**65 items, freezing the interpreter.

:class:`Walks` measures that unfolded size before such a call and refuses a
structure past :data:`~.limits.MAX_WALK_ITEMS` (a structure that contains
itself counts as too large). The measurement is built to stay close to the
C call's own cost:

* scalars and flat containers are answered at once;
* a structure without shared parts (a tree, the ordinary case) is measured
  breadth first with C-level helpers (``gc.get_referents`` over whole
  levels, ``map``/``compress`` to keep only nested containers), so no
  Python code runs per item. Sharing is noticed by reference counts (a
  container held only by its parent cannot be shared), and where those
  are higher, because an index or a variable also holds it, by identity;
* only when some container is reached twice does an exact count by
  depth-first search run, once per distinct container.

Text conversions get an estimate of the characters they would produce
(:meth:`Walks.text_size`), counted the same way, so ``repr`` of a shared
structure is refused before it allocates gigabytes.

A walk of C code is bounded by the smaller of the two operands of a
comparison, but the measurement checks every operand it is given: a
structure past the limit is refused in any comparison. See
docs/python-plugins.md ("Limits") for the list of operations checked.
"""

from __future__ import annotations

import functools
import gc
import threading
import types as types_
from collections import Counter, deque
from itertools import chain, compress, repeat
from operator import is_, not_
from sys import getrefcount
from typing import Any, Callable, Iterable

from .iteration import SandboxRange
from .limits import MAX_BYTES, MAX_WALK_DEPTH, MAX_WALK_ITEMS, SMALL_KEY_ITEMS, walk_message
from .refusals import SandboxLimitError

NoneType = type(None)

#: Types C code never descends into: comparing, hashing or printing one
#: costs at most its own size, which the other limits bound.
LEAF_TYPES = frozenset({int, float, complex, bool, str, bytes, bytearray, NoneType, range, type(...)})

#: Built-in types whose comparison, hash or text descends into their items
#: (exceptions, partials, static and class methods and bound methods print
#: what they hold).
CONTAINER_BASES: tuple[type, ...] = (
    list, tuple, dict, set, frozenset, deque, slice,
    type({}.keys()), type({}.values()), type({}.items()),
    BaseException, functools.partial, staticmethod, classmethod, types_.MethodType,
    types_.GenericAlias, SandboxRange,
)

#: Hashed containers: a lookup compares the key with every entry of equal
#: hash, and plugin code can make many entries share one hash (integers
#: hash to themselves modulo 2**61 - 1).
HASHED_BASES: tuple[type, ...] = (dict, set, frozenset, type({}.keys()), type({}.items()))


#: Dict views: their one referent is the dict they show.
_VIEW_TYPES = frozenset({type({}.keys()), type({}.values()), type({}.items())})

#: Items of a level are gathered into chunks of about this many, so a level
#: of many containers is never one huge list (a larger container's items
#: are one chunk of their own: a copy of its item pointers).
_CHUNK = 1 << 16

#: Containers with at most this many scalar items skip the walk entirely.
_SMALL = 64

#: Characters any other leaf (a float, a plugin object) adds to a text
#: conversion, about (ints are counted by their digits, strings and bytes
#: by length).
_LEAF_TEXT = 32


#: Exact built-in container types whose length and items are read directly
#: (never a plugin's ``__len__`` or ``__iter__``: a subclass may lie).
_FLAT_CANDIDATES = frozenset({list, tuple, set, frozenset, deque})

_EXACT_SIZED = frozenset({list, tuple, set, frozenset, deque, dict})

_TEXT_BASES = (str, bytes, bytearray, int)


class Walks:
    """The walk measurements of one plugin's sandbox.

    Holds which types count as containers: the built-in ones and every
    subclass of them met so far (plugin classes deriving from ``list`` or
    ``dict`` compare like their base), so the per-item type test stays a
    C-level set lookup.
    """

    def __init__(self, limit: int = MAX_WALK_ITEMS, text_limit: int = MAX_BYTES,
                 check_time: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.text_limit = text_limit
        #: Called every few thousand containers of an exact count (Python
        #: work, about 4 us a container, that no budget tick reaches): the
        #: budget's clock check, inside a plugin's entry.
        self._check_time = check_time
        self._containers: set[type] = set(CONTAINER_BASES)
        self._leaves: set[type] = set(LEAF_TYPES)
        #: The live set of types known to be leaves, for the compiler's
        #: inline fast paths (``type(x) in _LEAF_``); it grows as types are
        #: classified.
        self.leaf_types = self._leaves
        #: The leaves whose text needs no look: not those with a
        #: ``__repr__``/``__str__`` written in Python (a plugin class's),
        #: whose text is plugin code's to make (see :func:`counted_text`).
        self.text_leaf_types: set[type] = set(LEAF_TYPES)
        #: container type -> the length function of its built-in base.
        self._lengths: dict[type, Any] = {}
        #: Levels of containers the last full measurement went through.
        self._last_depth = 0

    # -- classification ---------------------------------------------------------

    def _learn(self, types: Iterable[type]) -> None:
        for t in types:
            if t not in self._containers and t not in self._leaves:
                if issubclass(t, CONTAINER_BASES):
                    self._containers.add(t)
                    continue
                self._leaves.add(t)
                if not any(type(getattr(t, name, None)) is types_.FunctionType for name in ("__repr__", "__str__")):
                    self.text_leaf_types.add(t)

    def _nested(self, items: list[Any], kinds: set[type] | None = None) -> list[Any]:
        """The containers among ``items`` (whose types are ``kinds``), in order."""
        if kinds is None:
            kinds = set(map(type, items))
        if kinds.isdisjoint(self._containers):
            if kinds <= self._leaves:
                return []
            self._learn(kinds)
            if kinds.isdisjoint(self._containers):
                return []
        return list(compress(items, map(self._containers.__contains__, map(type, items))))

    def _item_count(self, container: Any) -> int:
        """How many referents ``gc.get_referents`` returns for ``container``,
        about, read through its built-in base (dicts give keys and values)."""
        t = type(container)
        length = self._lengths.get(t)
        if length is None:
            if t is slice or t in _VIEW_TYPES:
                length = _constant(3 if t is slice else 1)
            else:
                base = next(b for b in t.__mro__ if b in CONTAINER_BASES)
                if base is dict:
                    length = lambda c, n=dict.__len__: 2 * n(c)  # noqa: E731
                elif hasattr(base, "__len__"):
                    length = base.__len__
                else:  # exceptions, partials, methods: a few references
                    length = _referent_count
            self._lengths[t] = length
        return length(container)

    # -- measuring ----------------------------------------------------------------

    def is_flat(self, obj: Any) -> bool:
        """True when walking ``obj`` is trivially bounded: a scalar or other
        leaf, or a small built-in container of leaves."""
        t = type(obj)
        if t in self._leaves:
            return True
        if t not in self._containers:
            self._learn((t,))
            if t not in self._containers:
                return True
        if t in _FLAT_CANDIDATES:
            return len(obj) <= _SMALL and self._leaves.issuperset(map(type, obj))
        if t is dict:
            return (len(obj) <= _SMALL and self._leaves.issuperset(map(type, obj))
                    and self._leaves.issuperset(map(type, obj.values())))
        return False

    def size(self, obj: Any) -> int:
        """Items C code visits walking ``obj`` fully, counting each shared
        part once per place; ``limit + 1`` as soon as it is known to be
        more than the limit (or ``obj`` contains itself)."""
        return self.size_and_depth(obj)[0]

    def size_and_depth(self, obj: Any) -> tuple[int, int]:
        """:meth:`size`, and how many levels of containers ``obj`` nests
        (0 for a scalar)."""
        t = type(obj)
        if t not in self._leaves and t not in self._containers:
            self._learn((t,))
        if t in self._leaves:
            return (1 if t in SHORT_TYPES else _cost([obj], {t})), 0
        if self.is_flat(obj):
            return 1 + len(obj) * (2 if t is dict else 1), 1
        n = self._measure(obj, None, self.limit)
        return n, self._last_depth

    def text_size(self, obj: Any, escapes: str = "repr") -> int:
        """An upper estimate of the characters ``repr(obj)`` produces from
        the built-in containers and scalars in it (a plugin object inside
        counts a few characters: its own ``__repr__`` is plugin code, judged
        when it runs); ``text_limit + 1`` once known to be past the limit."""
        if type(obj) in self._leaves:
            return TEXT_KINDS[escapes]([obj])
        return self._measure(obj, TEXT_KINDS[escapes], self.text_limit)

    def check(self, obj: Any, what: str) -> Any:
        """``obj`` if C code may walk it; refuses it otherwise."""
        if self.size(obj) > self.limit:
            raise SandboxLimitError(walk_message(what, self.limit))
        return obj

    def check_text(self, obj: Any, what: str, escapes: str = "repr") -> Any:
        """``obj`` if its text (as ``repr``, ``ascii`` or ``json.dumps``
        writes strings, by ``escapes``) fits the text limit; refuses it
        otherwise. What is left of the limit becomes the allowance for the
        text that plugin ``__repr__``/``__str__`` methods inside produce."""
        t = type(obj)
        if t in self.text_leaf_types and escapes == "repr":
            return obj
        if t in self._leaves and not issubclass(t, _TEXT_BASES):
            # one object whose text is plugin code's: all of it is allowed
            _text_state.left = self.text_limit
            return obj
        n = self._measure(obj, TEXT_KINDS[escapes], self.text_limit)
        if n > self.text_limit:
            raise SandboxLimitError(
                f"{what} of more than {self.text_limit} characters exceeds the plugin limit of {self.text_limit}"
            )
        _text_state.left = self.text_limit - n
        return obj

    def check_key(self, key: Any, container: Any, what: str = "lookup") -> int:
        """Refuses hashing ``key`` into (or looking it up in) ``container``
        when the comparisons with equal-hash entries could walk too far;
        ``container=None`` when it is not known (a comprehension being
        built), which allows only small keys. Returns the key's size."""
        if type(key) in self._leaves:
            return 1
        n = self.size(key)
        if n > self.limit:
            raise SandboxLimitError(walk_message(what, self.limit))
        if n > SMALL_KEY_ITEMS:
            if container is None:
                raise SandboxLimitError(
                    f"{what} of a key that unfolds to {n} items where the container is not known (a "
                    f"comprehension or unpacking) exceeds the plugin limit of {SMALL_KEY_ITEMS}; build it with a loop"
                )
            if isinstance(container, HASHED_BASES):
                entries = _entries(container)
                if n * entries > self.limit:
                    raise SandboxLimitError(
                        f"{what} of a key that unfolds to {n} items in a container of {entries} entries "
                        f"(each entry of equal hash is compared with it) exceeds the plugin limit of "
                        f"{self.limit} items compared"
                    )
        return n

    def check_collisions(self, keys: Any, size: int, what: str) -> None:
        """Refuses hashing ``keys`` (or a hashed container's keys) in bulk
        when entries of equal hash could make it compare too much: each
        key is compared with every other of its hash, so the cost is about
        the largest number of structured keys sharing one hash times
        ``size``. For two containers at once (``a == b``, ``a |= b``),
        checking each is enough: the cost is at most the smaller of the two
        crossed products, which is at most the larger of the two checked."""
        if size <= SMALL_KEY_ITEMS:
            return
        factor = self.collision_factor(keys)
        if factor > 1 and factor * size > self.limit:
            raise SandboxLimitError(
                f"{what} of {factor} structured keys sharing one hash, in a structure of {size} items "
                f"(each such key is compared with the others), exceeds the plugin limit of {self.limit} "
                f"items compared"
            )

    def collision_factor(self, keys: Any) -> int:
        """The most keys among ``keys`` (or a hashed container's keys)
        that are containers and share one hash; 1 for unhashable keys (the
        operation itself refuses them)."""
        keys = _keys_of(keys)
        nested = list(compress(keys, map(not_, map(self._leaves.__contains__, map(type, keys)))))
        # integers collide by design (they hash modulo 2**61 - 1), and big
        # ones compare digit by digit: those count as structured too
        nested += [k for k in _of_type(keys, int) if k.bit_length() > _BIG_INT_BITS]
        if len(nested) < 2:
            return 1
        try:
            counts = Counter(map(hash, nested))
        except TypeError:
            return 1
        return max(counts.values())

    def check_member(self, item: Any, container: Any, what: str = "membership test") -> None:
        """Refuses ``item in container`` (and ``index``/``count``/``remove``)
        when it could walk too far: ``item`` is compared with each entry of
        a sequence, or hashed and compared with the equal-hash entries of a
        set or dict, each comparison bounded by ``item``'s size."""
        t = type(item)
        if t in self._leaves:
            # a long string or big integer costs its length per comparison
            if t in SHORT_TYPES or isinstance(container, HASHED_BASES):
                return
            n = _cost([item], {t})
            if n <= 1:
                return
        elif isinstance(container, HASHED_BASES):
            self.check_key(item, container, what)
            return
        else:
            n = self.size(item)
        if n > self.limit:
            raise SandboxLimitError(walk_message(what, self.limit))
        try:
            if type(container) in _VIEW_TYPES:
                scans = len(container)  # a view is scanned entry by entry
            else:
                scans = self._item_count(container) if type(container) in self._containers else 0
        except TypeError:
            return
        if scans * n > self.limit:
            self.check(container, what)

    # -- the two walks ------------------------------------------------------------

    def _measure(self, obj: Any, leaf_text: Any, cap: int) -> int:
        """Breadth first, a whole level at a time; falls back to
        :meth:`_exact` once some container is reached twice.

        With ``leaf_text`` set, counts estimated characters (the leaves'
        text plus a few characters per item) instead of items.
        """
        t = type(obj)
        if t not in self._containers:
            self._learn((t,))
            if t not in self._containers:
                return _cost([obj], {t}) if leaf_text is None else leaf_text([obj])
        total = 1
        level = [obj]
        walked: list[list[Any]] = []
        seen: set[int] | None = None
        depth = 0
        while level:
            depth += 1
            if depth > MAX_WALK_DEPTH:
                return cap + 1
            following: list[Any] = []
            if leaf_text is not None:
                total += self._key_text(level, leaf_text)
            for items in self._level_items(level):
                if self._check_time is not None:
                    self._check_time()
                kinds = set(map(type, items))
                total += _count(items, kinds, leaf_text)
                if total > cap:
                    return cap + 1
                nested = self._nested(items, kinds)
                if nested:
                    # A container held by nothing but its one parent (and
                    # this walk's own lists) is not shared. Otherwise it may
                    # also be held from outside (an index, a variable):
                    # compare identities with everything walked so far, and
                    # count exactly only if it is shared inside.
                    if seen is None and max(map(getrefcount, nested)) > _UNSHARED:
                        seen = {id(obj)}
                        seen.update(map(id, chain.from_iterable(walked)))
                        seen.update(map(id, following))
                    if seen is not None:
                        before = len(seen)
                        seen.update(map(id, nested))
                        if len(seen) - before < len(nested):
                            return self._exact(obj, leaf_text, cap)
                    following.extend(nested)
            walked.append(following)
            level = following
        self._last_depth = depth
        return total

    def _key_text(self, level: list[Any], leaf_text: Any) -> int:
        """The text of the dicts' keys in ``level``: a dict whose keys are
        all strings reports only its values to ``gc.get_referents`` (string
        keys cannot hold anything), but prints its keys."""
        total = 0
        for container in level:
            if isinstance(container, dict):
                total += leaf_text(list(dict.keys(container)))
        return total

    def _level_items(self, level: list[Any]) -> Iterable[list[Any]]:
        """The items of the containers in ``level``, gathered into chunks of
        about :data:`_CHUNK` (a larger container is its own chunk)."""
        if set(map(type, level)) <= _EXACT_SIZED and sum(map(len, level)) <= _CHUNK * 16:
            # The common case, counted in C: built-in containers whose
            # items (a dict's keys and values) make one modest list.
            yield gc.get_referents(*level)
            return
        batch: list[Any] = []
        batched = 0
        for container in level:
            n = self._item_count(container)
            if n > _CHUNK:
                yield gc.get_referents(container)
                continue
            batch.append(container)
            batched += n
            if batched >= _CHUNK:
                yield gc.get_referents(*batch)
                batch, batched = [], 0
        if batch:
            yield gc.get_referents(*batch)

    def _exact(self, obj: Any, leaf_text: Any, cap: int) -> int:
        """Depth first over distinct containers, each measured once and its
        measure added once per place it appears."""
        done: dict[int, int] = {}
        on_path: set[int] = set()
        stack: list[tuple[Any, list[Any] | None, int]] = [(obj, None, 0)]
        visited = 0
        deepest = 0

        def visit() -> None:
            nonlocal visited
            visited += 1
            if self._check_time is not None and not visited % _EXACT_CHECK_EVERY:
                self._check_time()

        while stack:
            node, nested, own = stack.pop()
            key = id(node)
            if nested is None:
                if key in done:
                    continue
                visit()
                items = gc.get_referents(node)
                kinds = set(map(type, items))
                own = _count(items, kinds, leaf_text)
                if leaf_text is not None:
                    own += self._key_text([node], leaf_text)
                nested = self._nested(items, kinds)
                on_path.add(key)
                if len(on_path) > MAX_WALK_DEPTH:
                    return cap + 1
                deepest = max(deepest, len(on_path))
                stack.append((node, nested, own))
                for child in nested:
                    child_key = id(child)
                    if child_key in on_path:
                        return cap + 1  # contains itself: unfolds without end
                    if child_key not in done:
                        stack.append((child, None, 0))
                        visit()
                continue
            total = own + sum(done[id(child)] for child in nested)
            if total > cap:
                return cap + 1
            done[key] = total
            on_path.discard(key)
        self._last_depth = deepest
        return 1 + done[id(obj)]


def _calibrate() -> int:
    """The reference count :meth:`Walks._measure` sees on a container held
    by exactly one parent: the parent, the level's item list, the nested
    list and the count's own argument. Measured rather than assumed, so
    that an interpreter holding references differently only makes the walk
    take the exact path more often."""
    probe = [[0]]
    items = gc.get_referents(probe)
    nested = list(compress(items, map(is_, map(type, items), repeat(list))))
    return max(map(getrefcount, nested))


_UNSHARED = _calibrate()

_text_state = threading.local()


def counted_text(method: Any) -> Any:
    """``method`` (a plugin class's ``__repr__`` or ``__str__``) with the
    length of each result taken from the allowance of the text conversion
    running it. C code converting a list that holds one plugin object a
    million times calls it a million times, and each call may return the
    same large string at no cost to the plugin; the estimate counted it a
    few characters. Conversions inside the method have their own
    allowance; the caller's is restored when it returns."""

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        saved = getattr(_text_state, "left", MAX_BYTES)
        try:
            result = method(self, *args, **kwargs)
        finally:
            _text_state.left = saved
        if isinstance(result, str):
            left = saved - str.__len__(result)  # the text, not a subclass's __len__
            if left < 0:
                _text_state.left = 0
                raise SandboxLimitError(
                    f"text of more than {MAX_BYTES} characters from {type(self).__name__}."
                    f"{method.__name__}() exceeds the plugin limit of {MAX_BYTES}"
                )
            _text_state.left = left
        return result

    counted.__name__ = counted.__qualname__ = method.__name__
    return counted


def _keys_of(x: Any) -> list[Any]:
    """The keys a hashed container holds, read through its built-in base;
    anything else as a list of its items."""
    if isinstance(x, dict):
        return list(dict.keys(x))
    if isinstance(x, set):
        return list(set.__iter__(x))
    if isinstance(x, frozenset):
        return list(frozenset.__iter__(x))
    if isinstance(x, (type({}.keys()), type({}.items()))):
        return list(x.mapping)
    return x if type(x) is list else list(x)


def _entries(container: Any) -> int:
    """Entries of a hashed container, through its built-in base's length
    (a subclass's ``__len__`` may lie)."""
    for base in (dict, set, frozenset):
        if isinstance(container, base):
            return base.__len__(container)
    return len(container)  # a dict view: not subclassable


def _referent_count(container: Any) -> int:
    return len(gc.get_referents(container))


def _constant(n: int) -> Any:
    return lambda _container: n


#: Characters of a string (or bytes) C code compares in the time of one
#: item visit, about: long strings held in many places (``[s] * 10**7``
#: compared with an equal copy) cost by their length.
_CHARS_PER_ITEM = 64

#: Containers counted exactly between two clock checks.
_EXACT_CHECK_EVERY = 1024
#: Bits of an integer compared in the time of one item visit, about.
_BITS_PER_ITEM = 64
#: Integers longer than this compare slowly enough to count as structure
#: when many of them share a hash.
_BIG_INT_BITS = 4096

#: Leaf types whose comparison costs one visit whatever the value.
SHORT_TYPES = frozenset({float, complex, bool, NoneType, type(...)})


def _of_type(items: list[Any], t: type) -> list[Any]:
    """The items of exactly type ``t``, picked in C."""
    return list(compress(items, map(is_, map(type, items), repeat(t))))


def _text_length(t: type) -> Any:
    """The length function of the built-in text type ``t`` derives from
    (a subclass's own ``__len__`` may lie)."""
    return str.__len__ if issubclass(t, str) else bytes.__len__ if issubclass(t, bytes) else bytearray.__len__


def _count(items: list[Any], kinds: set[type], leaf_text: Any) -> int:
    """What one chunk of a walk adds: its cost in item visits, or with
    ``leaf_text`` its estimated characters (a few per item, plus the
    leaves' text)."""
    return _cost(items, kinds) if leaf_text is None else 4 * len(items) + leaf_text(items)


def _cost(items: list[Any], kinds: set[type]) -> int:
    """What walking ``items`` costs, in item visits: one each, and long
    strings and big integers by their length (comparing them is a loop of
    its own)."""
    n = len(items)
    for t in kinds:
        if t in SHORT_TYPES or issubclass(t, CONTAINER_BASES):
            continue
        # Beyond the one visit each already counted: short strings and
        # word-sized integers add nothing.
        of_type = _of_type(items, t)
        if issubclass(t, (str, bytes, bytearray)):
            n += max(0, sum(map(_text_length(t), of_type)) // _CHARS_PER_ITEM - len(of_type))
        elif issubclass(t, int):
            n += max(0, sum(map(int.bit_length, of_type)) // _BITS_PER_ITEM - len(of_type))
    return n


def _repr_escapes(strings: list[str]) -> int:
    """Characters ``repr`` adds escaping: up to 9 more for each character
    of a string that is not all printable."""
    return 9 * sum(map(str.__len__, compress(strings, map(not_, map(str.isprintable, strings)))))


def _plain(strings: list[str]) -> list[bool]:
    return [a and b for a, b in zip(map(str.isascii, strings), map(str.isprintable, strings))]


def _ascii_escapes(strings: list[str]) -> int:
    """``ascii`` also escapes every character outside ASCII."""
    return 9 * sum(map(str.__len__, compress(strings, map(not_, _plain(strings)))))


def _json_escapes(strings: list[str]) -> int:
    """``json.dumps`` writes a character outside printable ASCII as up to
    12 (a surrogate pair of \\u escapes), and escapes quotes and
    backslashes."""
    plain = _plain(strings)
    total = 11 * sum(map(str.__len__, compress(strings, map(not_, plain))))
    kept = list(compress(strings, plain))
    return total + sum(map(str.count, kept, repeat('"'))) + sum(map(str.count, kept, repeat("\\")))


def _text_counter(escapes: Any) -> Any:
    """The leaf measure of a text conversion whose strings are escaped by
    ``escapes``."""

    def leaf_text(items: list[Any]) -> int:
        """Most characters the scalars among ``items`` print as, about:
        strings and bytes by length (and escapes), integers and ranges by
        their digits, anything else a fixed few (containers are counted
        by the caller, per item)."""
        counts = Counter(map(type, items))
        total = 0
        for t, n in counts.items():
            if issubclass(t, CONTAINER_BASES):
                continue
            of_type = _of_type(items, t)
            if issubclass(t, str):
                total += sum(map(str.__len__, of_type)) + escapes(of_type)
            elif issubclass(t, (bytes, bytearray)):
                total += 4 * sum(map(_text_length(t), of_type))
            elif issubclass(t, int):
                total += sum(map(int.bit_length, of_type)) * 10 // 33 + n
            elif t is range:
                total += sum(_range_bits(r) for r in of_type) * 10 // 33 + 24 * n
            elif t is not NoneType:
                total += _LEAF_TEXT * n
        return total

    return leaf_text


def _range_bits(r: range) -> int:
    return r.start.bit_length() + r.stop.bit_length() + r.step.bit_length()


_leaf_text = _text_counter(_repr_escapes)
_ascii_text = _text_counter(_ascii_escapes)
_json_text = _text_counter(_json_escapes)

#: check_text's ``escapes`` argument -> the leaf measure.
TEXT_KINDS = {"repr": _leaf_text, "ascii": _ascii_text, "json": _json_text}
