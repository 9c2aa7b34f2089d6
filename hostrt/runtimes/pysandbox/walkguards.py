"""The guards in front of every C call that walks a plugin's structure.

Each one measures its operands with :class:`~.walks.Walks` and refuses a
structure C code would walk too far (shared parts counted once per place),
then lets the native operation run. Plugin code reaches them three ways:

* the compiler's rewrites (:mod:`.policy`): comparisons and ``in``, item
  keys (``d[k]``), dict and set displays and comprehensions, f-string
  fields, the set operators ``| & ^ -``, and the first arguments of the
  key methods (``d.get(k)``, ``s.add(x)``...) where they are called;
* method guards (:mod:`.guards`): the same methods fetched any other way,
  and the scanning ones (``index``, ``count``, ``remove``, ``sort``);
* the builtins and module functions that compare or hash in bulk
  (``sorted``, ``min``, ``max``, ``set()``, ``dict()``, ``hash``, ``repr``,
  ``heapq``, ``bisect``, ``itertools.groupby``, ``json.dumps``...).

Scalars take a fast path (one type test) almost everywhere, so ordinary
arithmetic and string comparisons stay at native speed; only before ``in``,
where a long string or big integer searched among many entries costs its
length each time, do strings and integers get a short check.
"""

from __future__ import annotations

import operator
from typing import Any, Callable

from .classes import TypeProxy
from .limits import walk_message
from .refusals import SandboxLimitError
from .walks import HASHED_BASES, SHORT_TYPES, Walks

_NUMBERS = frozenset({int, float, bool, complex})
#: Strings and integers this small compare in about one step.
_SHORT_TEXT = 4096
_SHORT_INT = 1 << 4096


def _compares_quickly(x: Any, t: type) -> bool:
    """``x`` (of type ``t``) compares in about one step: a float, bool or
    None, or a short exact string or integer. A long string or big integer
    searched among many entries costs its length each time."""
    return t in SHORT_TYPES or (t is str and len(x) <= _SHORT_TEXT) or (t is int and -_SHORT_INT < x < _SHORT_INT)

#: What a method is fetched from when it is called unbound.
_CLASSES = (type, TypeProxy)


class WalkGuards:
    """The walk guards of one plugin's sandbox, as plain functions."""

    def __init__(self, walks: Walks, charge: Callable[[int], None]) -> None:
        self.walks = walks
        leaves = walks.leaf_types
        size = walks.size
        limit = walks.limit
        check_collisions = walks.check_collisions
        check_key = walks.check_key
        check_text = walks.check_text
        check_member = walks.check_member
        text_leaves = walks.text_leaf_types
        self.leaf_types = leaves
        #: Leaves compared in one step whatever the value (for the
        #: compiler's inline test before ``in``).
        self.short_types = SHORT_TYPES

        def check(x: Any, what: str) -> Any:
            """``x`` measured, refused past the limit, and its walk charged
            to the budget; a hashed container (or a collection about to be
            hashed) also for keys sharing a hash."""
            n = size(x)
            if n > limit:
                raise SandboxLimitError(walk_message(what, limit))
            if isinstance(x, HASHED_BASES) or what == "hashing":
                check_collisions(x, n, what)
            charge(n)
            return x

        def operand(x: Any) -> Any:
            """An operand of ``==``, ``<``... (and of a chained comparison)."""
            if type(x) in leaves:
                return x
            return check(x, "comparison")

        def key(x: Any) -> Any:
            """A value about to be hashed: a dict key or set item."""
            if type(x) in leaves:
                return x
            return check(x, "hashing")

        def key_in(container: Any, x: Any) -> Any:
            """A key looked up in (or stored into) ``container``:
            ``d[k]``, ``d.get(k)``, ``s.add(x)``, ``super().get(k)``. Called
            as ``dict.get(d, k)``, the "container" is the class and ``x``
            the dict: the key is then the next argument (:func:`key_arg`);
            a class subscripted (``L[x]``) makes an alias, hashing nothing."""
            if type(x) in leaves or isinstance(container, _CLASSES):
                return x
            if type(container) is super:
                container = container.__self__
            charge(check_key(x, container))
            return x

        def key_arg(container: Any, owner: Any, x: Any) -> Any:
            """The second argument of ``container.get(...)``-style calls:
            the key itself when the method was called on a dict or set
            class with the container (``owner``) first."""
            if type(x) in leaves or not isinstance(container, _CLASSES):
                return x
            real = container._real if type(container) is TypeProxy else container
            if isinstance(real, type) and issubclass(real, HASHED_BASES):
                charge(check_key(x, owner if isinstance(owner, HASHED_BASES) else None))
            return x

        def unplaced_key(x: Any) -> Any:
            """A key going into a container being built out of sight (a
            comprehension, ``{*items}``): only small keys."""
            if type(x) in leaves:
                return x
            charge(check_key(x, None))
            return x

        def contains(item: Any, container: Any) -> bool:
            """``item in container``."""
            if not _compares_quickly(item, type(item)):
                check_member(item, container)
            return item in container

        def text(x: Any) -> Any:
            """A value about to be converted to text (f-string fields)."""
            if type(x) in text_leaves:
                return x
            return check_text(x, "text")

        def set_operands(a: Any, b: Any, what: str) -> None:
            if type(a) not in leaves:
                check(a, what)
            if type(b) not in leaves:
                check(b, what)

        def set_operator(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any], Any]:
            """``a <op> b`` for the set operators (and their in-place
            forms): numbers at once, anything else measured first."""

            def guarded(a: Any, b: Any) -> Any:
                if type(a) not in _NUMBERS or type(b) not in _NUMBERS:
                    set_operands(a, b, symbol)
                return op(a, b)

            guarded.__name__ = guarded.__qualname__ = op.__name__
            return guarded

        def sub(a: Any, b: Any) -> Any:
            # A number on the left subtracts, or refuses a set or view on
            # the right before hashing anything.
            if type(a) in _NUMBERS:
                return a - b
            set_operands(a, b, "'-'")
            return a - b

        def keys(iterable: Any) -> Any:
            """``{*iterable}``: every item is hashed."""
            return map(unplaced_key, iterable)

        def running(what: str) -> Callable[[Any], Any]:
            """A checker for the items one C call compares one after
            another (``max``, ``groupby``, ``heapq.merge``, sort keys):
            their sizes add up to one total, refused past the limit."""
            total = 0

            def checked(x: Any) -> Any:
                nonlocal total
                if _compares_quickly(x, type(x)):
                    return x
                n = size(x)
                total += n
                if total > limit:
                    raise SandboxLimitError(walk_message(what, limit))
                charge(n)
                return x

            return checked

        def keyed(func: Any, what: str) -> Callable[[Any], Any]:
            """``func`` (a ``key=`` function, or None for the items
            themselves) with every result checked before C compares it."""
            check_result = running(what)
            if func is None:
                return check_result

            def checked_key(item: Any) -> Any:
                return check_result(func(item))

            return checked_key

        def entries(pairs: Any, keys: list[Any]) -> Any:
            """Key-value pairs about to become a dict's entries: measured
            whole, and checked for keys sharing a hash (the pairs are not
            hashed, their first items are)."""
            n = size(pairs)
            if n > limit:
                raise SandboxLimitError(walk_message("hashing", limit))
            check_collisions(keys, n, "hashing")
            charge(n)
            return pairs

        def collection(items: Any, what: str) -> Any:
            """A materialised collection whose items C code is about to
            compare or hash with each other (sorting, ``set()``...)."""
            if type(items) in leaves:
                return items
            return check(items, what)

        self.operand = operand
        self.key = key
        self.key_in = key_in
        self.key_arg = key_arg
        self.unplaced_key = unplaced_key
        self.contains = contains
        self.text = text
        self.bitor = set_operator(operator.or_, "'|'")
        self.bitand = set_operator(operator.and_, "'&'")
        self.bitxor = set_operator(operator.xor, "'^'")
        self.sub = sub
        self.ior = set_operator(operator.ior, "'|='")
        self.iand = set_operator(operator.iand, "'&='")
        self.ixor = set_operator(operator.ixor, "'^='")
        self.isub = set_operator(operator.isub, "'-='")
        self.keys = keys
        self.keyed = keyed
        self.running = running
        self.collection = collection
        self.entries = entries

        def texted(func: Any, what: str) -> Callable[[Any], Any]:
            """``func`` (json's ``default=``) with every result checked
            before C converts it to text."""

            def checked_text(value: Any) -> Any:
                return check_text(func(value), what, escapes="json")

            return checked_text

        self.texted = texted

        is_flat = walks.is_flat

        def less(a: Any, b: Any) -> bool:
            """``a < b`` for the heap functions: flat items (numbers, short
            tuples of scalars) at once, anything else measured first."""
            if not (is_flat(a) and is_flat(b)):
                check(a, "heap")
                check(b, "heap")
            return a < b

        self.less = less

        # -- method sanitizers (see guards.Guards._build_method_guards) ----------

        def key_args(owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            """``d.get(k)``, ``s.add(x)``... fetched other than at a call:
            the first argument is hashed into ``owner``."""
            if args:
                key_in(owner, args[0])
            return args, kwargs

        def scan_args(seq: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            """``index``/``count``/``remove`` of a list, tuple or deque:
            the argument is compared with the items."""
            if args:
                check_member(args[0], seq, "search")
            return args, kwargs

        def sort_args(seq: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            """``list.sort``: the items (or their keys) are compared."""
            if "key" in kwargs and kwargs["key"] is not None:
                kwargs = dict(kwargs, key=keyed(kwargs["key"], "sort key"))
            else:
                collection(seq, "sort")
            return args, kwargs

        def prefix_args(_self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            """``startswith``/``endswith``: a tuple of prefixes is compared
            one by one."""
            if args:
                operand(args[0])
            return args, kwargs

        self.key_args = key_args
        self.prefix_args = prefix_args
        self.heap_functions = lambda: _heap_functions(less)
        self.scan_args = scan_args
        self.sort_args = sort_args


def _heap_functions(less: Callable[[Any, Any], bool]) -> dict[str, Callable[..., Any]]:
    """``heappop``, ``heapreplace`` and ``heappushpop`` with every comparison
    through ``less``: they compare items already in the heap with each other,
    which the plugin may have put there any way it liked. The algorithm is
    the standard library's own (heapq.py), one comparison per step, so the
    cost stays O(log n) comparisons."""

    def siftdown(heap: list[Any], startpos: int, pos: int) -> None:
        newitem = heap[pos]
        while pos > startpos:
            parentpos = (pos - 1) >> 1
            parent = heap[parentpos]
            if less(newitem, parent):
                heap[pos] = parent
                pos = parentpos
                continue
            break
        heap[pos] = newitem

    def siftup(heap: list[Any], pos: int) -> None:
        endpos = len(heap)
        startpos = pos
        newitem = heap[pos]
        childpos = 2 * pos + 1
        while childpos < endpos:
            rightpos = childpos + 1
            if rightpos < endpos and not less(heap[childpos], heap[rightpos]):
                childpos = rightpos
            heap[pos] = heap[childpos]
            pos = childpos
            childpos = 2 * pos + 1
        heap[pos] = newitem
        siftdown(heap, startpos, pos)

    def checked_list(heap: Any, name: str) -> list[Any]:
        if not isinstance(heap, list):
            raise TypeError(f"{name}() argument 1 must be list, not {type(heap).__name__}")
        return heap

    def heappop(heap: Any) -> Any:
        heap = checked_list(heap, "heappop")
        lastelt = heap.pop()
        if heap:
            returnitem = heap[0]
            heap[0] = lastelt
            siftup(heap, 0)
            return returnitem
        return lastelt

    def heapreplace(heap: Any, item: Any) -> Any:
        heap = checked_list(heap, "heapreplace")
        returnitem = heap[0]
        heap[0] = item
        siftup(heap, 0)
        return returnitem

    def heappushpop(heap: Any, item: Any) -> Any:
        heap = checked_list(heap, "heappushpop")
        if heap and less(heap[0], item):
            item, heap[0] = heap[0], item
            siftup(heap, 0)
        return item

    return {"heappop": heappop, "heapreplace": heapreplace, "heappushpop": heappushpop}
