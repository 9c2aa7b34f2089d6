"""The builtins a plugin gets.

Only a safe subset of Python's builtins exists for plugin code. Missing on
purpose (with the attack each closes): ``open``, ``input``, ``breakpoint``
(I/O and debugger), ``exec``, ``eval``, ``compile`` (new unchecked code),
``globals``, ``locals``, ``vars``, ``dir`` (namespace and object
introspection), ``memoryview`` (raw buffers), ``setattr``/``delattr``
(writes around ``_write_``), ``id`` (memory addresses), ``help``, ``exit``,
``quit``, ``aiter``/``anext``; ``__import__`` and ``__build_class__`` exist
only for the ``import`` and ``class`` statements (plugin code cannot name
them).

Builtins that consume a plugin-supplied iterable in C iterate it through
the tick stream (and, when they materialise it, through the capped stream):
``list``, ``tuple``, ``set``, ``frozenset``, ``dict``, ``bytes``,
``bytearray``, ``sorted``, ``sum``, ``min``, ``max``, ``all``, ``any``,
``enumerate``, ``zip``, ``map``, ``filter``, ``iter``, ``reversed``. So a
single C-level call such as ``''.join(map(str, range(10**12)))`` still hits
the budget. Builtins that allocate by argument (``bytes(n)``, ``pow``,
``round``, ``format``) check the size first.

The container types are :class:`~.classes.TypeProxy` objects: they behave
like the types for ``isinstance``, ``type(x) is list``, subclassing and
public attributes, but construction is guarded. ``type(x)`` returns the
proxy for those types and refuses the three-argument form (dynamic class
creation around the compiler's checks).
"""

from __future__ import annotations

import builtins as _py
import datetime as _dt
from collections import Counter, OrderedDict, defaultdict, deque
from typing import Any, Callable

from ...context import MAX_LOG_MESSAGE, plugin_logger, printable
from ...errors import (
    CapabilityError,
    EventDepthError,
    EventError,
    HostMethodError,
    HostrtError,
    PayloadError,
    QuotaExceededError,
    RateLimitError,
    SettingsError,
    StorageError,
)
from .classes import PluginClassMeta, TypeProxy
from .guards import Guards
from .iteration import Iteration
from .limits import MAX_BYTES, MAX_CLASSINFO, MAX_TZNAME, bytes_message
from .refusals import SandboxLimitError, SandboxPolicyError

SAFE_EXCEPTIONS = (
    ArithmeticError, AssertionError, AttributeError, BaseException, BlockingIOError,
    BrokenPipeError, BufferError, BytesWarning, ChildProcessError, ConnectionAbortedError,
    ConnectionError, ConnectionRefusedError, ConnectionResetError, DeprecationWarning,
    EOFError, EnvironmentError, Exception, FileExistsError, FileNotFoundError,
    FloatingPointError, FutureWarning, GeneratorExit, IOError, ImportError, ImportWarning,
    IndentationError, IndexError, InterruptedError, IsADirectoryError, KeyError,
    KeyboardInterrupt, LookupError, MemoryError, ModuleNotFoundError, NameError,
    NotADirectoryError, NotImplementedError, OSError, OverflowError,
    PendingDeprecationWarning, PermissionError, ProcessLookupError, RecursionError,
    ReferenceError, ResourceWarning, RuntimeError, RuntimeWarning, StopIteration,
    SyntaxError, SyntaxWarning, SystemError, SystemExit, TabError, TimeoutError, TypeError,
    UnboundLocalError, UnicodeDecodeError, UnicodeEncodeError, UnicodeError,
    UnicodeTranslateError, UnicodeWarning, UserWarning, ValueError, Warning,
    ZeroDivisionError,
)

#: hostrt errors plugin code may catch by name (``except CapabilityError``).
HOST_ERRORS = (
    HostrtError, CapabilityError, StorageError, QuotaExceededError, SettingsError,
    PayloadError, EventError, EventDepthError, RateLimitError, HostMethodError,
)

#: Builtins handed over unchanged: they neither consume iterables in C nor
#: allocate by argument, nor reach anything but their arguments.
PLAIN_BUILTINS = (
    "abs", "bin", "bool", "callable", "chr", "classmethod", "complex", "float",
    "hex", "int", "len", "next", "object", "oct", "ord", "property",
    "slice", "staticmethod", "super",
)

_SAFE_BASE_FLAG = "_hostrt_safe_base"


def _mark_safe(cls: type, name: str, module: str) -> type:
    setattr(cls, _SAFE_BASE_FLAG, True)
    cls.__name__ = cls.__qualname__ = name
    cls.__module__ = module
    return cls


class PluginTypes:
    """The guarded container types of one plugin: constructors, safe base
    classes for subclassing, and the ``type()`` aliases."""

    def __init__(self, iteration: Iteration, guards: Guards) -> None:
        bounded = iteration.bounded
        getiter = iteration.getiter
        mapping_arg = guards.mapping_arg
        walk_guards = guards.walk_guards
        collection = walk_guards.collection
        check_text = walk_guards.walks.check_text

        def hashed(items: Any) -> Any:
            """An iterable about to be hashed item by item, materialised
            through the capped stream and measured."""
            return collection(bounded(items), "hashing")

        def one_arg(name: str, args: tuple[Any, ...]) -> Any:
            if len(args) > 1:
                raise TypeError(f"{name} expected at most 1 argument, got {len(args)}")
            return args[0] if args else ()

        def bytes_source(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
            if not args:
                return args, kwargs
            source = args[0]
            if isinstance(source, int):
                n = int(source)
                if n > MAX_BYTES:
                    raise SandboxLimitError(bytes_message(n, what=name))
                return args, kwargs
            if isinstance(source, (str, bytes, bytearray)):
                return args, kwargs
            return (bounded(source),) + args[1:], kwargs

        def dict_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
            if len(args) > 1:
                raise TypeError(f"dict expected at most 1 argument, got {len(args)}")
            return (mapping_arg(args[0]),) if args else ()

        # -- constructors -------------------------------------------------------

        def new_list(*args: Any) -> list[Any]:
            return list(bounded(one_arg("list", args)))

        def new_tuple(*args: Any) -> tuple[Any, ...]:
            return tuple(bounded(one_arg("tuple", args)))

        def new_set(*args: Any) -> set[Any]:
            return set(hashed(one_arg("set", args)))

        def new_frozenset(*args: Any) -> frozenset[Any]:
            return frozenset(hashed(one_arg("frozenset", args)))

        def new_dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
            return dict(*dict_args(args), **kwargs)

        def new_bytes(*args: Any, **kwargs: Any) -> bytes:
            args, kwargs = bytes_source("bytes", args, kwargs)
            return bytes(*args, **kwargs)

        def new_bytearray(*args: Any, **kwargs: Any) -> bytearray:
            args, kwargs = bytes_source("bytearray", args, kwargs)
            return bytearray(*args, **kwargs)

        def new_deque(iterable: Any = (), maxlen: Any = None) -> deque[Any]:
            return deque(bounded(iterable), maxlen)

        def counter_source(source: Any) -> Any:
            if source is None:
                return None
            if hasattr(source, "keys") and hasattr(source, "items"):
                return TickingDict(mapping_arg(source))
            return hashed(source)

        class TickingDict(dict):
            """A dict whose items() iterates through the tick stream, so the
            pure-Python loop in Counter.update stays interruptible."""

            def items(self) -> Any:  # type: ignore[override]
                return getiter(dict.items(self))

        def new_counter(*args: Any, **kwargs: Any) -> Counter[Any]:
            counter: Counter[Any] = Counter()
            Counter.update(counter, counter_source(one_arg("Counter", args) if args else None), **kwargs)
            return counter

        def new_ordereddict(*args: Any, **kwargs: Any) -> OrderedDict[Any, Any]:
            return OrderedDict(*dict_args(args), **kwargs)

        def new_defaultdict(default_factory: Any = None, *args: Any, **kwargs: Any) -> defaultdict[Any, Any]:
            return defaultdict(default_factory, *dict_args(args), **kwargs)

        def new_str(*args: Any, **kwargs: Any) -> str:
            if len(args) == 1 and not kwargs:
                check_text(args[0], "str()")
            return str(*args, **kwargs)

        def new_timezone(offset: Any, name: Any = None) -> _dt.timezone:
            if name is None:
                return _dt.timezone(offset)
            if isinstance(name, str) and len(name) > MAX_TZNAME:
                raise SandboxLimitError(f"timezone name of {len(name)} characters exceeds the plugin limit of {MAX_TZNAME}")
            return _dt.timezone(offset, name)

        # -- safe bases (what `class X(list)` really derives from) ----------------

        class SafeList(list):  # type: ignore[type-arg]
            __slots__ = ()

            def __init__(self, *args: Any) -> None:
                list.__init__(self, bounded(one_arg("list", args)))

        class SafeTuple(tuple):  # type: ignore[type-arg]
            __slots__ = ()

            def __new__(cls, *args: Any) -> Any:
                return tuple.__new__(cls, bounded(one_arg("tuple", args)))

        class SafeSet(set):  # type: ignore[type-arg]
            __slots__ = ()

            def __init__(self, *args: Any) -> None:
                set.__init__(self, hashed(one_arg("set", args)))

        class SafeFrozenset(frozenset):  # type: ignore[type-arg]
            __slots__ = ()

            def __new__(cls, *args: Any) -> Any:
                return frozenset.__new__(cls, hashed(one_arg("frozenset", args)))

        class SafeDict(dict):  # type: ignore[type-arg]
            __slots__ = ()

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                dict.__init__(self, *dict_args(args), **kwargs)

        class SafeBytes(bytes):
            __slots__ = ()

            def __new__(cls, *args: Any, **kwargs: Any) -> Any:
                args, kwargs = bytes_source("bytes", args, kwargs)
                return bytes.__new__(cls, *args, **kwargs)

        class SafeBytearray(bytearray):
            __slots__ = ()

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                args, kwargs = bytes_source("bytearray", args, kwargs)
                bytearray.__init__(self, *args, **kwargs)

        class SafeDeque(deque):  # type: ignore[type-arg]
            __slots__ = ()

            def __init__(self, iterable: Any = (), maxlen: Any = None) -> None:
                deque.__init__(self, bounded(iterable), maxlen)

        class SafeCounter(Counter):  # type: ignore[type-arg]
            __slots__ = ()

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                Counter.__init__(self)
                self.update(*args, **kwargs)

            def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
                Counter.update(self, counter_source(one_arg("update", args) if args else None), **kwargs)

            def subtract(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
                Counter.subtract(self, counter_source(one_arg("subtract", args) if args else None), **kwargs)

        class SafeOrderedDict(OrderedDict):  # type: ignore[type-arg]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                OrderedDict.__init__(self, *dict_args(args), **kwargs)

        class SafeDefaultdict(defaultdict):  # type: ignore[type-arg]
            __slots__ = ()

            def __init__(self, default_factory: Any = None, *args: Any, **kwargs: Any) -> None:
                defaultdict.__init__(self, default_factory, *dict_args(args), **kwargs)

        for cls, name, module in (
            (SafeList, "list", "builtins"),
            (SafeTuple, "tuple", "builtins"),
            (SafeSet, "set", "builtins"),
            (SafeFrozenset, "frozenset", "builtins"),
            (SafeDict, "dict", "builtins"),
            (SafeBytes, "bytes", "builtins"),
            (SafeBytearray, "bytearray", "builtins"),
            (SafeDeque, "deque", "collections"),
            (SafeCounter, "Counter", "collections"),
            (SafeOrderedDict, "OrderedDict", "collections"),
            (SafeDefaultdict, "defaultdict", "collections"),
        ):
            _mark_safe(cls, name, module)

        make = TypeProxy._make
        self.list = make(list, new_list, SafeList)
        self.tuple = make(tuple, new_tuple, SafeTuple)
        self.set = make(set, new_set, SafeSet)
        self.frozenset = make(frozenset, new_frozenset, SafeFrozenset)
        self.dict = make(dict, new_dict, SafeDict)
        self.bytes = make(bytes, new_bytes, SafeBytes)
        self.bytearray = make(bytearray, new_bytearray, SafeBytearray)
        self.deque = make(deque, new_deque, SafeDeque)
        self.Counter = make(Counter, new_counter, SafeCounter)
        self.OrderedDict = make(OrderedDict, new_ordereddict, SafeOrderedDict)
        self.defaultdict = make(defaultdict, new_defaultdict, SafeDefaultdict)
        self.timezone = make(_dt.timezone, new_timezone, None)
        # str(x) of a container is a text conversion C code runs in one
        # call; subclassing str is harmless (the real str is the base).
        self.str = make(str, new_str, str)

        aliases: dict[type, Any] = {
            list: self.list, tuple: self.tuple, set: self.set, frozenset: self.frozenset,
            dict: self.dict, bytes: self.bytes, bytearray: self.bytearray, deque: self.deque,
            Counter: self.Counter, OrderedDict: self.OrderedDict, defaultdict: self.defaultdict,
            _dt.timezone: self.timezone,
            str: self.str,
            # the sandbox's own range class is what plugin code calls range
            iteration.range_type: iteration.range_type,
        }

        def new_type(*args: Any) -> Any:
            if len(args) != 1:
                raise SandboxPolicyError("type() with three arguments is not allowed in plugins; use a class statement")
            t = type(args[0])
            alias = aliases.get(t)
            if alias is not None:
                return alias
            # Never hand out a real metaclass (PluginClassMeta, EnumType,
            # ABCMeta ...): calling one creates classes around the compiler.
            if issubclass(t, type):
                return aliases[type]
            # Only types plugin code could name anyway come back real; any
            # other class (iterator types, GenericAlias, host classes) would
            # be a constructor or attribute path nobody reviewed.
            if t in _PLAIN_TYPES or type(t) is PluginClassMeta or issubclass(t, BaseException):
                return t
            opaque = aliases.get(t)
            if opaque is None:
                opaque = aliases[t] = make(t, None)
            return opaque

        self.type = make(type, new_type, None, lambda obj: isinstance(obj, type) or type(obj) is TypeProxy)
        aliases[type] = self.type
        aliases[PluginClassMeta] = self.type
        aliases[TypeProxy] = self.type  # type(list) is type, as in Python
        self.aliases = aliases
        self.safe_bases = frozenset(
            {SafeList, SafeTuple, SafeSet, SafeFrozenset, SafeDict, SafeBytes, SafeBytearray,
             SafeDeque, SafeCounter, SafeOrderedDict, SafeDefaultdict}
        )
        self.counter_source = counter_source


#: Types ``type()`` returns as themselves: plain values plugin code already
#: has constructors for.
_PLAIN_TYPES = frozenset({int, float, complex, bool, str, type(None), slice})


def is_safe_base(cls: type) -> bool:
    """True for the host's guarded base classes (see PluginTypes)."""
    return bool(cls.__dict__.get(_SAFE_BASE_FLAG))


def build_builtins(
    *,
    plugin_id: str,
    iteration: Iteration,
    guards: Guards,
    types: PluginTypes,
    format_value: Callable[..., Any],
    importer: Callable[..., Any],
) -> dict[str, Any]:
    """The ``__builtins__`` dict of one plugin."""
    getiter = iteration.getiter
    bounded = iteration.bounded
    unwrap = iteration.unwrap
    logger = plugin_logger(plugin_id)
    numbers = (int, float, complex)

    def all_(iterable: Any) -> bool:
        return all(getiter(iterable))

    def any_(iterable: Any) -> bool:
        return any(getiter(iterable))

    def sum_(iterable: Any, /, start: Any = 0) -> Any:
        if isinstance(start, numbers):
            return sum(getiter(iterable), start)
        # Anything else is concatenation, which C would do unchecked.
        total = start
        add = guards.add
        for item in getiter(iterable):
            total = add(total, item)
        return total

    walk_guards = guards.walk_guards
    collection = walk_guards.collection
    keyed = walk_guards.keyed
    walks = walk_guards.walks

    def compared(args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> tuple[Any, dict[str, Any]]:
        """min/max arguments: the items (or their keys) are compared, one
        at a time as the counted iteration yields them."""
        if kwargs.get("key") is not None:
            kwargs = dict(kwargs, key=keyed(kwargs["key"], what + " key"))
            return (getiter(args[0]) if len(args) == 1 else args), kwargs
        if len(args) == 1:
            return map(walk_guards.running(what), getiter(args[0])), kwargs
        return collection(args, what), kwargs

    def min_(*args: Any, **kwargs: Any) -> Any:
        if not args:
            return min(**kwargs)
        items, kwargs = compared(args, kwargs, "min()")
        return min(items, **kwargs)

    def max_(*args: Any, **kwargs: Any) -> Any:
        if not args:
            return max(**kwargs)
        items, kwargs = compared(args, kwargs, "max()")
        return max(items, **kwargs)

    def sorted_(iterable: Any, /, *, key: Any = None, reverse: bool = False) -> list[Any]:
        items = bounded(iterable)
        if key is not None:
            return sorted(items, key=keyed(key, "sort key"), reverse=reverse)
        return sorted(collection(items, "sort"), reverse=reverse)

    def escaped_text(obj: Any, plain: Callable[[], bool], what: str) -> None:
        # A character that is escaped becomes up to 10 (\U0001f600).
        if isinstance(obj, str) and str.__len__(obj) * 10 > MAX_BYTES and not (plain() and str.isprintable(obj)):
            raise SandboxLimitError(bytes_message(str.__len__(obj) * 10, what=what))

    def repr_(obj: Any, /) -> str:
        if type(obj) not in walks.text_leaf_types:
            walks.check_text(obj, "repr()")
        else:
            escaped_text(obj, lambda: True, "repr() text")
        return repr(obj)

    def ascii_(obj: Any, /) -> str:
        if type(obj) not in walks.text_leaf_types:
            walks.check_text(obj, "ascii()", escapes="ascii")
        else:
            escaped_text(obj, lambda: str.isascii(obj), "ascii() text")
        return ascii(obj)

    def hash_(obj: Any, /) -> int:
        return hash(walk_guards.key(obj))

    def enumerate_(iterable: Any, start: int = 0) -> Any:
        return enumerate(getiter(iterable), start)

    def zip_(*iterables: Any, strict: bool = False) -> Any:
        return zip(*[getiter(it) for it in iterables], strict=strict)

    def map_(function: Any, *iterables: Any) -> Any:
        if not iterables:
            raise TypeError("map() must have at least two arguments.")
        return map(function, *[getiter(it) for it in iterables])

    def filter_(function: Any, iterable: Any) -> Any:
        return filter(function, getiter(iterable))

    def iter_(obj: Any, *sentinel: Any) -> Any:
        if sentinel:
            # every value the callable returns is compared with the sentinel
            return getiter(iter(obj, *map(walk_guards.operand, sentinel)))
        return getiter(obj)

    def reversed_(seq: Any) -> Any:
        return getiter(reversed(unwrap(seq)))

    def classinfo_(classinfo: Any, what: str) -> Any:
        # A tuple of classes may nest tuples, each visited (with a Python
        # __instancecheck__ for the type stand-ins) once per place.
        if type(classinfo) is tuple and walks.size(classinfo) > MAX_CLASSINFO:
            raise SandboxLimitError(
                f"{what} with a class tuple that unfolds to more than {MAX_CLASSINFO} entries "
                f"exceeds the plugin limit of {MAX_CLASSINFO}"
            )
        return classinfo

    def isinstance_(obj: Any, classinfo: Any, /) -> bool:
        return isinstance(obj, classinfo_(classinfo, "isinstance()"))

    def issubclass_(cls: Any, classinfo: Any) -> bool:
        if type(cls) is TypeProxy:
            cls = cls._real
        return issubclass(cls, classinfo_(classinfo, "issubclass()"))

    def format_(value: Any, format_spec: Any = "") -> Any:
        return format_value(value, format_spec)

    def print_(*args: Any, sep: Any = " ", end: Any = "\n", file: Any = None, flush: bool = False) -> None:
        if file is not None:
            raise TypeError("print(file=...) is not supported in plugins; output goes to the plugin's log")
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        if type(sep) is not str or type(end) is not str:
            raise TypeError("sep and end must be strings")
        parts: list[str] = []
        size = 0
        for index, arg in enumerate(getiter(args)):
            walks.check_text(arg, "print()")
            text = arg if type(arg) is str else str(arg)
            if index:
                parts.append(sep)
                size += len(sep)
            parts.append(text)
            size += len(text)
            if size > MAX_LOG_MESSAGE:
                break
        message = ("".join(parts) + end).rstrip("\n")
        if len(message) > MAX_LOG_MESSAGE:
            message = message[:MAX_LOG_MESSAGE] + "... [characters cut]"
        # Same treatment as ctx.log: escaped, so print cannot forge log lines.
        logger.info("%s", printable(message), extra={"plugin_id": plugin_id})

    table: dict[str, Any] = {name: getattr(_py, name) for name in PLAIN_BUILTINS}
    table.update({exc.__name__: exc for exc in SAFE_EXCEPTIONS})
    table.update({exc.__name__: exc for exc in HOST_ERRORS})
    table.update(
        {
            "None": None,
            "True": True,
            "False": False,
            "Ellipsis": Ellipsis,
            "NotImplemented": NotImplemented,
            "__build_class__": _py.__build_class__,
            "__import__": importer,
            "all": all_,
            "any": any_,
            "sum": sum_,
            "min": min_,
            "max": max_,
            "sorted": sorted_,
            "repr": repr_,
            "ascii": ascii_,
            "hash": hash_,
            "str": types.str,
            "enumerate": enumerate_,
            "zip": zip_,
            "map": map_,
            "filter": filter_,
            "iter": iter_,
            "reversed": reversed_,
            "getattr": guards.checked_getattr,
            "hasattr": guards.checked_hasattr,
            "issubclass": issubclass_,
            "isinstance": isinstance_,
            "format": format_,
            "pow": guards.checked_pow,
            "divmod": guards.checked_divmod,
            "round": guards.checked_round,
            "print": print_,
            "range": iteration.range_type,
            "type": types.type,
            "list": types.list,
            "tuple": types.tuple,
            "set": types.set,
            "frozenset": types.frozenset,
            "dict": types.dict,
            "bytes": types.bytes,
            "bytearray": types.bytearray,
        }
    )
    # Plain functions from this module show their plugin-facing names.
    for name in ("all", "any", "sum", "min", "max", "sorted", "enumerate", "zip", "map",
                 "filter", "iter", "reversed", "issubclass", "isinstance", "format", "print", "repr", "ascii",
                 "hash"):
        table[name].__name__ = table[name].__qualname__ = name
    return table

