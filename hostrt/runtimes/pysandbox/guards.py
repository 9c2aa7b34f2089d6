"""Run-time guards the compiled plugin code calls.

Attribute policy
----------------
Names starting with ``_`` and the names in :data:`FORBIDDEN_ATTRS` (frame,
code, traceback, generator and coroutine internals, plus ``mro``) are
refused: at compile time for literal ``obj.name`` (see :mod:`.policy`) and
at run time for ``getattr``/``hasattr`` with a computed name. Every other
literal attribute read compiles to a *native* attribute load: RestrictedPython's
stock ``safer_getattr`` only looks at the name, so once the compiler has
checked the name the native load is exactly as strict, and ~14x faster.

The exceptions are :data:`RUNTIME_CHECKED_ATTRS`: names whose *value* needs
a look, compiled to ``_getattr_(obj, 'name')``:

* ``format``/``format_map`` on ``str`` (and subclasses, and ``str`` itself,
  and through ``super()``) return the safe formatter of :mod:`.formatting`;
* methods that consume an iterable or allocate by argument in C
  (``list.extend``, ``set.union``, ``dict.update``, ``str.join``,
  ``str.ljust``, ``str.replace``, ``int.to_bytes``, ``re.Pattern.sub`` ...)
  come back wrapped so their arguments are bounded and the result size is
  predicted first (:data:`METHOD_GUARDS`);
* ``obj``, ``name``, ``path``, ``filename``, ``filename2`` on exception
  instances are refused unless the plugin set them itself: interpreter-set
  exception fields can carry foreign objects and host paths
  (``AttributeError.obj``, CVE-2024-47532; ``ImportError.path``).

Write policy
------------
``obj.x = v``, ``obj[k] = v`` and ``del`` go through ``_write_``: only
plugin-owned mutable containers (dict, list, set, bytearray and the
``collections`` types) and instances of plugin-defined classes may be
changed. Module proxies, the ``ctx`` facade, builtins, functions and
classes are refused.

Size guards
-----------
``_add_``, ``_mul_``, ``_pow_``, ``_lshift_``, ``_mod_``, ``_floordiv_`` and
the in-place forms predict the size of a result (length x count for
sequence repetition, bit length x exponent for ``**`` ...) or the cost of a
super-linear integer operation before doing it, against :mod:`.limits`.
The compiler only routes an operator here when it cannot prove the native
operation is safe (``x + 1`` or ``n * 2.0`` stay native), and even then an
inline type test keeps numbers on the native path.
"""

from __future__ import annotations

import math
import operator
import re
import types
import unicodedata
from collections import Counter, OrderedDict, defaultdict, deque
from typing import Any, Callable

from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from .budget import Budget
from .classes import PluginClassMeta, TypeProxy
from .formatting import Formatting
from .iteration import BOUNDED_TYPES, Iteration
from .limits import (
    CHARGE_THRESHOLD,
    MAX_BYTES,
    MAX_INT_BITS,
    MAX_INT_DIGITS,
    MAX_ITEMS,
    MAX_POWMOD_BITS,
    STRFTIME_EXPANSION,
    bytes_message,
    items_message,
)
from .refusals import SandboxLimitError, SandboxPolicyError
from .regex import check_search
from .walkguards import WalkGuards

# -- names ------------------------------------------------------------------

#: Attributes of these types that are not plainly harmless lead to frames,
#: code objects or tracebacks (and from there to every global of the host).
_INTERNAL_TYPES = (
    types.FrameType,
    types.CodeType,
    types.TracebackType,
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
)
_HARMLESS = frozenset({"send", "throw", "close", "clear", "replace", "aclose", "asend", "athrow"})


def _derive_forbidden() -> frozenset[str]:
    names: set[str] = set()
    for t in _INTERNAL_TYPES:
        names.update(n for n in dir(t) if not n.startswith("_"))
    # Attributes of newer Pythons that the running one may not have.
    names.update({"f_generator", "gi_suspended", "cr_suspended", "ag_suspended"})
    return frozenset((names - _HARMLESS) | INSPECT_ATTRIBUTES | {"mro"})


#: Refused everywhere, like underscore names (``type(x).mro()`` walks the
#: class hierarchy towards ``object.__subclasses__``).
FORBIDDEN_ATTRS: frozenset[str] = _derive_forbidden()

#: Exception fields the interpreter fills with foreign objects or host paths.
EXCEPTION_FIELDS = frozenset({"obj", "name", "path", "filename", "filename2"})

def attr_refusal(name: str) -> str | None:
    """Why plugin code may not use attribute ``name`` (None if it may).

    Also applied to the NFKC form, which is what the parser would make of
    the same characters in an identifier (``ｍｒｏ`` is ``mro``)."""
    for candidate in (name, unicodedata.normalize("NFKC", name)):
        if candidate.startswith("_"):
            return f'"{name}" is an invalid attribute name because it starts with "_"'
        if candidate in FORBIDDEN_ATTRS:
            return f'"{name}" is a restricted name that plugins may not access (it leads to interpreter internals)'
    return None


# -- method guards --------------------------------------------------------------

_C_METHOD_TYPES = frozenset(
    {
        types.BuiltinFunctionType,
        types.MethodDescriptorType,
        types.ClassMethodDescriptorType,
        type(re.compile("").sub),  # "builtin_method" (METH_METHOD), e.g. re.Pattern.sub
    }
)
_UNBOUND_TYPES = frozenset({types.MethodDescriptorType})

#: Sanitizer: (self object, positional args, keyword args) -> (args, kwargs).
Sanitizer = Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]]


def char_len(x: Any) -> int:
    """Length of a str/bytes-like by its C size (never a plugin __len__)."""
    if isinstance(x, str):
        return str.__len__(x)
    return len(memoryview(x))


_SEQ_TYPES = (str, bytes, bytearray, list, tuple, deque)
_TEXT_TYPES = (str, bytes, bytearray)
_MUTABLE_SEQ = (list, bytearray, deque)
_LEN_BY_TYPE: dict[type, Callable[[Any], int]] = {
    str: str.__len__,
    bytes: bytes.__len__,
    bytearray: bytearray.__len__,
    list: list.__len__,
    tuple: tuple.__len__,
    deque: deque.__len__,
}


def _seq_len(x: Any) -> int:
    for base, length in _LEN_BY_TYPE.items():
        if isinstance(x, base):
            return length(x)
    return len(x)


def _seq_limit(x: Any) -> int:
    return MAX_BYTES if isinstance(x, _TEXT_TYPES) else MAX_ITEMS


def _check_size(n: int, x: Any) -> None:
    limit = _seq_limit(x)
    if n > limit:
        if limit == MAX_BYTES:
            raise SandboxLimitError(bytes_message(n))
        raise SandboxLimitError(items_message(n))


def _approve_size(n: int, x: Any, charge: Callable[[int], None]) -> None:
    """Refuse a sequence result of ``n`` items/bytes past the limit for ``x``'s
    kind; account large approved ones to the budget."""
    _check_size(n, x)
    if n >= CHARGE_THRESHOLD:
        charge(n)


def _approve_text(n: int, what: str, charge: Callable[[int], None]) -> None:
    """Refuse a text result of ``n`` characters past MAX_BYTES; account large
    approved ones to the budget."""
    if n > MAX_BYTES:
        raise SandboxLimitError(bytes_message(n, what=what))
    if n >= CHARGE_THRESHOLD:
        charge(n)


def _check_bits(bits: int, what: str = "integer") -> None:
    if bits > MAX_INT_BITS:
        digits = int(bits * 0.30103) + 1
        raise SandboxLimitError(
            f"{what} of about {digits} digits exceeds the plugin limit of {MAX_INT_DIGITS} digits"
        )


def _bits(x: Any) -> int:
    return int.bit_length(x)


class Guards:
    """All run-time guards of one plugin, as plain functions (closures)."""

    def __init__(self, budget: Budget, iteration: Iteration, formatting: Formatting, walk_guards: WalkGuards) -> None:
        self.budget = budget
        self.iteration = iteration
        self.formatting = formatting
        self.walk_guards = walk_guards
        collection = walk_guards.collection
        bounded = iteration.bounded
        charge = budget.charge
        self._method_guards = self._build_method_guards()
        method_guards = self._method_guards
        py_guards = self._build_python_guards()
        c_types = _C_METHOD_TYPES
        unbound_types = _UNBOUND_TYPES
        formatter = formatting

        # -- attributes ------------------------------------------------------

        def guard_value(obj: Any, name: str, value: Any) -> Any:
            tv = type(value)
            if tv in c_types:
                candidates = method_guards.get(name)
                if candidates is not None:
                    unbound = tv in unbound_types
                    owner = value.__objclass__ if unbound else value.__self__
                    for base, sanitize in candidates:
                        if unbound:
                            applies = isinstance(owner, type) and issubclass(owner, base)
                        else:
                            applies = isinstance(owner, base) or (isinstance(owner, type) and issubclass(owner, base))
                        if applies:
                            return _wrap_method(value, unbound, sanitize, formatter)
            elif tv is types.MethodType or tv is types.FunctionType:
                func = value.__func__ if tv is types.MethodType else value
                wrap = py_guards.get(func)
                if wrap is not None:
                    return wrap(value, tv is types.FunctionType)
            if name in EXCEPTION_FIELDS and isinstance(obj, BaseException):
                own = getattr(obj, "__dict__", None)
                if not own or name not in own:
                    raise SandboxPolicyError(
                        f"the '{name}' field of exceptions is not accessible to plugins"
                    )
            return value

        def read(obj: Any, name: str) -> Any:
            # A type stand-in answers exactly what its literal attribute
            # loads answer (TypeProxy.__getattr__): an opaque one nothing, so
            # getattr(type(x), name) is no way around the stand-in to the
            # real class (an iterator type's unticked constructors, a host
            # class's functions). The value is then judged as the real
            # type's attribute.
            if type(obj) is TypeProxy:
                return guard_value(obj._real, name, getattr(obj, name))
            return guard_value(obj, name, getattr(obj, name))

        def _getattr_(obj: Any, name: str) -> Any:
            """Attribute read for the names in RUNTIME_CHECKED_ATTRS."""
            return read(obj, name)

        def checked_getattr(obj: Any, name: Any, *default: Any) -> Any:
            """The ``getattr`` builtin plugins get."""
            if len(default) > 1:
                raise TypeError(f"getattr expected at most 3 arguments, got {2 + len(default)}")
            if type(name) is not str:
                raise TypeError("attribute name must be a string")
            reason = attr_refusal(name)
            if reason is not None:
                raise SandboxPolicyError(reason)
            try:
                return read(obj, name)
            except AttributeError:
                if default:
                    return default[0]
                raise

        def checked_hasattr(obj: Any, name: Any) -> bool:
            """The ``hasattr`` builtin plugins get."""
            try:
                checked_getattr(obj, name)
            except AttributeError:
                return False
            return True

        self.getattr = _getattr_
        self.checked_getattr = checked_getattr
        self.checked_hasattr = checked_hasattr

        # -- writes ------------------------------------------------------------

        writable = frozenset({dict, list, set, bytearray, deque, Counter, OrderedDict, defaultdict})
        self.writable_types = writable

        def _write_(ob: Any) -> Any:
            t = type(ob)
            if t in writable or type(t) is PluginClassMeta:
                return ob
            what = ob._real.__name__ if t is TypeProxy else t.__name__
            raise SandboxPolicyError(f"plugins cannot modify '{what}' objects")

        self.write = _write_

        # -- arithmetic ----------------------------------------------------------

        small = 1 << 1024

        def check_repeat(seq: Any, count: Any) -> None:
            if isinstance(seq, _SEQ_TYPES) and isinstance(count, int):
                _approve_size(_seq_len(seq) * max(0, int(count)), seq, charge)

        def _mul_(a: Any, b: Any) -> Any:
            ta = type(a)
            tb = type(b)
            if ta is float or tb is float:
                return a * b
            if ta is int and tb is int and -small < a < small and -small < b < small:
                return a * b
            if isinstance(a, int) and isinstance(b, int):
                _check_bits(_bits(a) + _bits(b), "product")
                return a * b
            check_repeat(a, b)
            check_repeat(b, a)
            return a * b

        def check_concat(a: Any, b: Any) -> None:
            if isinstance(a, _SEQ_TYPES) and isinstance(b, _SEQ_TYPES):
                _approve_size(_seq_len(a) + _seq_len(b), a, charge)

        def _add_(a: Any, b: Any) -> Any:
            ta = type(a)
            if ta is int or ta is float:
                return a + b
            check_concat(a, b)
            return a + b

        def check_pow(a: Any, b: Any) -> None:
            if isinstance(a, int) and isinstance(b, int) and b > 0:
                bits = _bits(a)
                if bits > 1:
                    estimate = b * (math.log2(abs(a)) if bits < 1000 else bits)
                    _check_bits(int(estimate), "power")

        def _pow_(a: Any, b: Any) -> Any:
            check_pow(a, b)
            return a ** b

        def _lshift_(a: Any, b: Any) -> Any:
            if isinstance(a, int) and isinstance(b, int) and a and b > 0:
                _check_bits(_bits(a) + b, "shifted integer")
            return a << b

        def check_division(a: Any, b: Any) -> None:
            # Long division is quadratic: refuse when both operands are huge.
            if isinstance(a, int) and isinstance(b, int):
                ab, bb = _bits(a), _bits(b)
                if ab > 64 and bb > 64 and ab * bb > MAX_INT_BITS * MAX_INT_BITS:
                    raise SandboxLimitError(
                        f"division of a {ab}-bit by a {bb}-bit integer exceeds the plugin limit"
                    )

        def _floordiv_(a: Any, b: Any) -> Any:
            check_division(a, b)
            return a // b

        def _mod_(a: Any, b: Any) -> Any:
            if isinstance(a, _TEXT_TYPES):
                return formatter.percent(a, b)
            check_division(a, b)
            return a % b

        def _iadd_(a: Any, b: Any) -> Any:
            ta = type(a)
            if ta is int or ta is float:
                return a + b
            if isinstance(a, _MUTABLE_SEQ):
                # list += any iterable extends in C. Anything but an exact
                # builtin container is materialised through the capped stream
                # first (a list subclass may report one size and iterate
                # another), so the size checked is the size added.
                if type(b) not in BOUNDED_TYPES:
                    b = bounded(b)
                _approve_size(_seq_len(a) + len(b), a, charge)
                return operator.iadd(a, b)
            check_concat(a, b)
            return operator.iadd(a, b)

        def _imul_(a: Any, b: Any) -> Any:
            ta = type(a)
            if ta is float or type(b) is float:
                return a * b
            if isinstance(a, int) and isinstance(b, int):
                _check_bits(_bits(a) + _bits(b), "product")
                return a * b
            check_repeat(a, b)
            check_repeat(b, a)
            return operator.imul(a, b)

        def _ipow_(a: Any, b: Any) -> Any:
            check_pow(a, b)
            return operator.ipow(a, b)

        def _ilshift_(a: Any, b: Any) -> Any:
            return _lshift_(a, b)

        def _imod_(a: Any, b: Any) -> Any:
            return _mod_(a, b)

        def _ifloordiv_(a: Any, b: Any) -> Any:
            check_division(a, b)
            return operator.ifloordiv(a, b)

        def _ior_(a: Any, b: Any) -> Any:
            if isinstance(a, dict) and not isinstance(a, Counter):
                b = mapping_arg(b)
                return operator.ior(a, b)
            # sets, and Counter (whose |= compares the counts)
            return walk_guards.ior(a, b)

        def slice_items(target: Any, items: Any) -> Any:
            """The value of ``target[a:b] = items``: at most a container's
            worth, counted as the target's items (a bytearray takes bytes,
            anything else one item each)."""
            if type(items) not in BOUNDED_TYPES:
                items = bounded(items)
            n = len(items)
            limit = MAX_BYTES if isinstance(target, bytearray) else MAX_ITEMS
            if target is not None and not isinstance(target, (str, bytes)):
                try:
                    n += len(target)
                except TypeError:
                    pass
            if n > limit:
                raise SandboxLimitError(items_message(n, limit) if limit == MAX_ITEMS else bytes_message(n, limit))
            return items

        self.slice_items = slice_items

        def mapping_arg(arg: Any) -> Any:
            """A dict.update()-style argument with its size bounded and its
            keys checked for hashing (an exact dict's keys keep the hashes
            they were stored with, checked when they went in)."""
            if isinstance(arg, dict) and type(arg).__iter__ is dict.__iter__:
                # its keys keep their stored hashes; only equal hashes compare
                return collection(arg, "merge")
            if hasattr(arg, "keys"):
                keys = collection(bounded(arg.keys()), "hashing")
                return {k: arg[k] for k in iteration.getiter(keys)}
            pairs = bounded(arg)
            keys = [p[0] for p in iteration.getiter(pairs) if isinstance(p, (tuple, list)) and len(p) == 2]
            return walk_guards.entries(pairs, keys)

        self.mapping_arg = mapping_arg

        def checked_pow(base: Any, exp: Any, mod: Any = None) -> Any:
            """The ``pow`` builtin plugins get."""
            if mod is None:
                return _pow_(base, exp)
            if isinstance(base, int) and isinstance(exp, int) and isinstance(mod, int):
                if _bits(mod) > MAX_POWMOD_BITS or _bits(exp) > MAX_POWMOD_BITS:
                    raise SandboxLimitError(
                        f"pow() with a modulus or exponent over {MAX_POWMOD_BITS} bits exceeds the plugin limit"
                    )
                check_division(base, mod)
            return pow(base, exp, mod)

        def checked_divmod(a: Any, b: Any) -> Any:
            check_division(a, b)
            return divmod(a, b)

        def checked_round(number: Any, ndigits: Any = None) -> Any:
            if ndigits is None:
                return round(number)
            if isinstance(number, int) and isinstance(ndigits, int) and ndigits < 0:
                if -ndigits > MAX_INT_DIGITS:
                    return 0 if _bits(number) * 0.30103 < -ndigits - 1 else round(number, ndigits)
                _check_bits(_bits(number), "rounded integer")
            return round(number, ndigits)

        for fn in (
            _mul_, _add_, _pow_, _lshift_, _floordiv_, _mod_, _iadd_, _imul_, _ipow_,
            _ilshift_, _imod_, _ifloordiv_, _ior_,
        ):
            setattr(self, fn.__name__.strip("_"), fn)
        self.checked_pow = checked_pow
        self.checked_divmod = checked_divmod
        self.checked_round = checked_round
        for fn, public in (
            (checked_getattr, "getattr"), (checked_hasattr, "hasattr"), (checked_pow, "pow"),
            (checked_divmod, "divmod"), (checked_round, "round"),
        ):
            fn.__name__ = fn.__qualname__ = public

    # -- the method registry ---------------------------------------------------

    def _build_method_guards(self) -> dict[str, list[tuple[type, Sanitizer]]]:
        """name -> [(owning builtin type, sanitizer)] for C methods that
        consume iterables or allocate by argument.

        Matching is by name plus an isinstance check of the bound object
        (``__self__``) or the defining class (``__objclass__``), never by
        ``__qualname__``: a bound builtin method reports the qualname of the
        *runtime* type (``class S(str)`` makes ``S('').format`` claim to be
        ``S.format``), so qualnames can be dodged by subclassing.
        """
        budget = self.budget
        bounded = self.iteration.bounded
        charge = budget.charge

        walk_guards = self.walk_guards
        collection = walk_guards.collection

        def all_iterables(_self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            # set methods: every item is hashed
            return tuple(collection(bounded(a), "hashing") for a in args), kwargs

        def hashed_iterable(_self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                args = (collection(bounded(args[0]), "hashing"),) + args[1:]
            return args, kwargs

        def first_iterable(_self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                args = (bounded(args[0]),) + args[1:]
            return args, kwargs

        def first_mapping(_self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                args = (self.mapping_arg(args[0]),) + args[1:]
            return args, kwargs

        def join(sep: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if len(args) != 1 or kwargs:
                return args, kwargs
            items = bounded(args[0])
            if not isinstance(items, (list, tuple)):
                items = list(items)
            try:
                total = sum(map(char_len, items)) + char_len(sep) * max(0, len(items) - 1)
            except TypeError:
                return (items,), kwargs  # the real join raises the TypeError
            _approve_text(total, "joined string", charge)
            return (items,), kwargs

        def width(s: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args and isinstance(args[0], int) and isinstance(s, _TEXT_TYPES):
                _approve_text(int(args[0]), "padded string", charge)
            return args, kwargs

        def expandtabs(s: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            tabsize = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(tabsize, int) and isinstance(s, _TEXT_TYPES):
                tab = "\t" if isinstance(s, str) else b"\t"
                n = char_len(s) + s.count(tab) * max(0, int(tabsize))
                if n > MAX_BYTES:
                    raise SandboxLimitError(bytes_message(n, what="expanded string"))
            return args, kwargs

        def replace(s: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if len(args) >= 2 and isinstance(s, _TEXT_TYPES):
                old, new = args[0], args[1]
                count = args[2] if len(args) > 2 else kwargs.get("count", -1)
                try:
                    old_len, new_len = char_len(old), char_len(new)
                    hits = (char_len(s) + 1) if old_len == 0 else s.count(old)
                except TypeError:
                    return args, kwargs
                if isinstance(count, int) and count >= 0:
                    hits = min(hits, count)
                _approve_text(char_len(s) + hits * (new_len - old_len), "replaced string", charge)
            return args, kwargs

        def translate(s: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not isinstance(s, str) or not args:
                return args, kwargs
            table = args[0]
            if not isinstance(table, dict):
                raise SandboxPolicyError("str.translate() in plugins needs a dict table (see str.maketrans)")
            longest = 1
            for ch in self.iteration.getiter(set(s)):
                value = table.get(ord(ch))
                if isinstance(value, str):
                    longest = max(longest, str.__len__(value))
            n = str.__len__(s) * longest
            if n > MAX_BYTES:
                raise SandboxLimitError(bytes_message(n, what="translated string"))
            return args, kwargs

        def hex_(data: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            # two digits per byte, plus a separator between groups
            sep = args[0] if args else kwargs.get("sep")
            n = char_len(data) * (3 if sep is not None else 2)
            if n > MAX_BYTES:
                raise SandboxLimitError(bytes_message(n, what="hex string"))
            return args, kwargs

        def to_bytes(_n: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            length = args[0] if args else kwargs.get("length", 1)
            if isinstance(length, int) and length > MAX_BYTES:
                raise SandboxLimitError(bytes_message(length, what="bytes"))
            return args, kwargs

        def strftime(_d: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            fmt = args[0] if args else kwargs.get("format", "")
            if isinstance(fmt, str) and len(fmt) * STRFTIME_EXPANSION > MAX_BYTES:
                raise SandboxLimitError(bytes_message(len(fmt) * STRFTIME_EXPANSION, what="formatted date"))
            return args, kwargs

        def pattern_sub(pattern: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            args = list(args)
            string = args[1] if len(args) > 1 else kwargs.get("string")
            check_search(pattern, 0, string, scans=True)
            if args:
                args[0] = sub_replacement(pattern.pattern, args[0], string, charge)
            elif "repl" in kwargs:
                kwargs = dict(kwargs, repl=sub_replacement(pattern.pattern, kwargs["repl"], string, charge))
            return tuple(args), kwargs

        def split(s: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            # One item per separator: only a source longer than MAX_ITEMS can
            # produce too many, unless maxsplit bounds the count.
            if isinstance(s, _TEXT_TYPES) and char_len(s) > MAX_ITEMS:
                maxsplit = args[1] if len(args) > 1 else kwargs.get("maxsplit", -1)
                if not (isinstance(maxsplit, int) and 0 <= maxsplit < MAX_ITEMS):
                    raise SandboxLimitError(items_message(char_len(s), what="split of a string"))
            return args, kwargs

        def pattern_split(pattern: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            string = args[0] if args else kwargs.get("string")
            if isinstance(string, (str, bytes)) and char_len(string) > MAX_ITEMS:
                raise SandboxLimitError(items_message(char_len(string), what="regular expression search of a string"))
            if isinstance(pattern, re.Pattern) and pattern.groups:
                check_split_items(pattern, string)
            check_search(pattern, 0, string, scans=True)
            return args, kwargs

        def pattern_run(pattern: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            string = args[0] if args else kwargs.get("string")
            check_search(pattern, 0, string, scans=True)
            return args, kwargs

        def pattern_match(pattern: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            string = args[0] if args else kwargs.get("string")
            check_search(pattern, 0, string, scans=False)
            return args, kwargs

        def expand(match: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            template = args[0] if args else kwargs.get("template")
            if isinstance(template, (str, bytes)) and isinstance(match.string, (str, bytes)):
                refs = template.count("\\" if isinstance(template, str) else b"\\")
                n = len(template) + refs * len(match.string)
                if n > MAX_BYTES:
                    raise SandboxLimitError(bytes_message(n, what="expanded template"))
            return args, kwargs

        guards: dict[str, list[tuple[type, Sanitizer]]] = {}

        def add(names: str, base: type, sanitizer: Sanitizer) -> None:
            for name in names.split():
                guards.setdefault(name, []).append((base, sanitizer))

        add("extend", list, first_iterable)
        add("extend", bytearray, first_iterable)
        add("extend extendleft", deque, first_iterable)
        set_methods = (
            "update union intersection difference symmetric_difference intersection_update "
            "difference_update symmetric_difference_update issubset issuperset isdisjoint"
        )
        add(set_methods, set, all_iterables)
        add("union intersection difference symmetric_difference issubset issuperset isdisjoint", frozenset, all_iterables)
        add("isdisjoint", type({}.keys()), all_iterables)
        add("isdisjoint", type({}.items()), all_iterables)
        add("update", dict, first_mapping)
        add("fromkeys", dict, hashed_iterable)
        add("get setdefault pop", dict, walk_guards.key_args)
        add("add discard remove", set, walk_guards.key_args)
        add("move_to_end", OrderedDict, walk_guards.key_args)
        add("index count remove", list, walk_guards.scan_args)
        add("index count", tuple, walk_guards.scan_args)
        add("index count remove", deque, walk_guards.scan_args)
        add("sort", list, walk_guards.sort_args)
        for t in _TEXT_TYPES:
            add("startswith endswith", t, walk_guards.prefix_args)
        add("upper lower casefold title capitalize swapcase", str, case_args)
        add("join", str, join)
        add("join", bytes, join)
        add("join", bytearray, join)
        for t in _TEXT_TYPES:
            add("ljust rjust center zfill", t, width)
            add("expandtabs", t, expandtabs)
            add("replace", t, replace)
            add("split rsplit splitlines", t, split)
        add("translate", str, translate)
        add("to_bytes", int, to_bytes)
        add("hex", bytes, hex_)
        add("hex", bytearray, hex_)
        import datetime as _dt

        add("strftime", _dt.date, strftime)
        add("strftime", _dt.time, strftime)
        add("sub subn", re.Pattern, pattern_sub)
        add("findall split", re.Pattern, pattern_split)
        add("search finditer scanner", re.Pattern, pattern_run)
        add("match fullmatch", re.Pattern, pattern_match)
        add("expand", re.Match, expand)
        # format/format_map are handled by _wrap_method (they need more than
        # argument checks); registering them routes str methods there.
        add("format format_map", str, _FORMAT_MARKER)
        return guards

    def _build_python_guards(self) -> dict[Any, Callable[[Any, bool], Any]]:
        """Guards for methods implemented in Python (collections.Counter),
        matched by function identity."""
        bounded = self.iteration.bounded
        getiter = self.iteration.getiter
        mapping_arg_holder = self

        def counter_update(method: Any, unbound: bool) -> Any:
            def update(*args: Any, **kwargs: Any) -> Any:
                if unbound:
                    if not args:
                        return method()
                    owner, args = args[0], args[1:]
                    return method(owner, *_counter_args(args), **kwargs)
                return method(*_counter_args(args), **kwargs)

            return update

        def _counter_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
            if not args or args[0] is None:
                return args
            source = args[0]
            if hasattr(source, "items") and hasattr(source, "keys"):
                return (mapping_arg_holder.mapping_arg(source),) + args[1:]
            return (collection(bounded(source), "hashing"),) + args[1:]

        collection = self.walk_guards.collection

        def counter_most_common(method: Any, unbound: bool) -> Any:
            def most_common(*args: Any, **kwargs: Any) -> Any:
                owner = args[0] if unbound and args else getattr(method, "__self__", None)
                collection(owner, "sort")
                return method(*args, **kwargs)

            return most_common

        def counter_elements(method: Any, unbound: bool) -> Any:
            def elements(*args: Any, **kwargs: Any) -> Any:
                return getiter(method(*args, **kwargs))

            return elements

        return {
            Counter.update: counter_update,
            Counter.subtract: counter_update,
            Counter.elements: counter_elements,
            Counter.most_common: counter_most_common,
        }


def _FORMAT_MARKER(_self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:  # noqa: N802
    raise AssertionError("format methods are wrapped by _wrap_method")


def _wrap_method(
    method: Any, unbound: bool, sanitize: Sanitizer, formatting: Formatting
) -> Callable[..., Any]:
    """A stand-in for the C method ``method`` that sanitizes its arguments
    first (and, for str.format/format_map, runs the safe formatter)."""
    if sanitize is _FORMAT_MARKER:
        return _format_method(method, unbound, formatting)
    if unbound:

        def guarded_unbound(*args: Any, **kwargs: Any) -> Any:
            if not args:
                return method()
            owner = args[0]
            rest, kwargs = sanitize(owner, args[1:], kwargs)
            return method(owner, *rest, **kwargs)

        return guarded_unbound
    owner = method.__self__

    def guarded(*args: Any, **kwargs: Any) -> Any:
        args, kwargs = sanitize(owner, args, kwargs)
        return method(*args, **kwargs)

    return guarded


def _format_method(method: Any, unbound: bool, formatting: Formatting) -> Callable[..., Any]:
    """``str.format``/``str.format_map`` (bound or unbound) through the
    plugin's safe formatter."""
    name = method.__name__
    if unbound:

        def unbound_format(*args: Any, **kwargs: Any) -> str:
            if not args or not isinstance(args[0], str):
                return method(*args, **kwargs)  # raises the usual TypeError
            if name == "format_map":
                if len(args) != 2 or kwargs:
                    return method(*args, **kwargs)
                return formatting.str_format_map(args[0], args[1])
            return formatting.str_format(args[0], args[1:], kwargs)

        return unbound_format
    owner = method.__self__

    def bound_format(*args: Any, **kwargs: Any) -> str:
        if name == "format_map":
            if len(args) != 1 or kwargs:
                return method(*args, **kwargs)
            return formatting.str_format_map(owner, args[0])
        return formatting.str_format(owner, args, kwargs)

    return bound_format


def case_text(s: Any) -> Any:
    """The receiver of ``s.upper()`` and the other case mappings: a string
    outside ASCII may map to up to three times its length."""
    if isinstance(s, str):
        n = str.__len__(s)
        if n * 3 > MAX_BYTES and not str.isascii(s):
            raise SandboxLimitError(bytes_message(n * 3, what="case-mapped string"))
    return s


def case_args(s: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    case_text(s)
    return args, kwargs


def check_split_items(pattern: Any, string: Any, flags: Any = 0) -> None:
    """Refuse a ``re.split`` whose list could pass the item limit: one
    item per piece, plus one per capturing group at every match."""
    if not isinstance(string, (str, bytes)):
        return
    try:
        groups = pattern.groups if isinstance(pattern, re.Pattern) else re.compile(pattern, flags).groups
    except (TypeError, re.error):
        return  # the real split raises
    n = (char_len(string) + 1) * (groups + 1)
    if n > MAX_ITEMS:
        raise SandboxLimitError(items_message(n, what="split of a string"))


def sub_replacement(pattern: Any, repl: Any, string: Any, charge: Callable[[int], None]) -> Any:
    """Check a ``re.sub`` replacement before the substitution runs in C.

    A template's expansion is bounded: there are at most ``len(string) + 1``
    matches, each adds the template's literal text, and group references add
    at most ``len(string)`` per reference in total because matches do not
    overlap -- unless the pattern captures inside a positive lookaround,
    where each match's groups may span the rest of the string. A callable
    replacement is plugin code; its results are charged to the budget.
    """
    if isinstance(repl, (str, bytes)):
        if isinstance(string, (str, bytes)):
            backslash = "\\" if isinstance(repl, str) else b"\\"
            refs = repl.count(backslash)
            n = char_len(string)
            matches = n + 1
            text = pattern if isinstance(pattern, (str, bytes)) else ""
            marks = ("(?=", "(?<=") if isinstance(text, str) else (b"(?=", b"(?<=")
            if refs and any(m in text for m in marks):
                total = n + matches * (char_len(repl) + refs * n)
            else:
                total = n + matches * char_len(repl) + refs * n
            if total > MAX_BYTES:
                raise SandboxLimitError(bytes_message(total, what="substituted string"))
            if total >= CHARGE_THRESHOLD:
                charge(total)
        return repl
    if callable(repl):
        # The result is at most the string plus everything the callable
        # returned, which C code joins in one call: count as it goes.
        total = char_len(string) if isinstance(string, (str, bytes)) else 0

        def replacement(match: Any) -> Any:
            nonlocal total
            result = repl(match)
            if isinstance(result, (str, bytes)):
                size = char_len(result)
                total += size
                if total > MAX_BYTES:
                    raise SandboxLimitError(bytes_message(total, what="substituted string"))
                if size >= CHARGE_THRESHOLD:
                    charge(size)
            return result

        return replacement
    return repl
