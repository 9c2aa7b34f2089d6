"""The import allow-list and the module proxies plugins get.

``import x`` in plugin code calls :class:`Importer`, which accepts only the
modules in :data:`ALLOWED_MODULES` and returns a *proxy*: a read-only object
built for that plugin holding exactly the documented public names of the
module, nothing else. A real module object is never handed out, so there
is no ``json.codecs``, ``re.enum``, ``re.sre_compile``, ``datetime.sys`` or
``random._os`` to walk to, and ``json.dumps = evil`` cannot change what
another plugin (or the host) sees. Functions that would consume an
iterable, allocate by argument or run long in one call are replaced by
guarded versions; the rest are the standard library's own functions.

Each plugin gets its own instances (its own ``random`` generator state in
particular); the proxy classes are shared.
"""

from __future__ import annotations

import _strptime
import base64
import bisect
import datetime
import functools
import hashlib
import heapq
import hmac
import itertools
import json
import math
import random
import re
import string
import textwrap
import time
import uuid
from typing import Any, Callable

from .budget import Budget
from .guards import Guards, char_len, check_split_items, sub_replacement
from .iteration import Iteration
from .limits import (
    MAX_BYTES,
    MAX_COMBINATORIC_R,
    MAX_FACTORIAL,
    MAX_INT_BITS,
    MAX_INT_DIGITS,
    MAX_ITEMS,
    MAX_JSON_INDENT,
    MAX_PRODUCT_POOLS,
    MAX_REGEX_PATTERN,
    MAX_SAMPLE,
    MAX_TEE,
    MAX_TEXTWRAP_INPUT,
    bytes_message,
    items_message,
)
from .refusals import SandboxImportError, SandboxLimitError, SandboxPolicyError
from .regex import check_search

#: Modules plugins may import. See docs/python-plugins.md for what each
#: exposes and why the rest of the standard library is out.
ALLOWED_MODULES = (
    "base64", "bisect", "collections", "datetime", "functools", "hashlib", "heapq", "hmac",
    "itertools", "json", "math", "random", "re", "string", "textwrap", "time", "uuid",
)

_MATH_PLAIN = (
    "acos acosh asin asinh atan atan2 atanh ceil copysign cos cosh degrees erf erfc exp "
    "expm1 fabs floor fmod frexp gamma hypot isclose isfinite isinf isnan ldexp lgamma log "
    "log10 log1p log2 modf nextafter pow radians remainder sin sinh sqrt tan tanh trunc ulp "
    "e inf nan pi tau cbrt exp2"
).split()
_HASHES = (
    "md5 sha1 sha224 sha256 sha384 sha512 sha3_224 sha3_256 sha3_384 sha3_512 blake2b blake2s"
).split()
_RANDOM_PLAIN = (
    "random uniform randint randrange gauss normalvariate triangular expovariate "
    "betavariate gammavariate lognormvariate vonmisesvariate paretovariate weibullvariate seed"
).split()
_RE_FLAGS = "A ASCII I IGNORECASE M MULTILINE S DOTALL X VERBOSE U UNICODE NOFLAG".split()
_STRING_CONSTANTS = (
    "ascii_letters ascii_lowercase ascii_uppercase digits hexdigits octdigits punctuation "
    "printable whitespace"
).split()


#: textwrap options: (type, lowest, highest, description). For strings the
#: bounds apply to their length.
_TEXTWRAP_OPTIONS: dict[str, tuple[type, int, int, str]] = {
    "tabsize": (int, 0, 64, "an int from 0 to 64"),
    "max_lines": (int, 1, 100_000, "an int from 1 to 100000"),
    "initial_indent": (str, 0, 1000, "a string of at most 1000 characters"),
    "subsequent_indent": (str, 0, 1000, "a string of at most 1000 characters"),
    "placeholder": (str, 0, 1000, "a string of at most 1000 characters"),
    "expand_tabs": (bool, 0, 0, "a bool"),
    "replace_whitespace": (bool, 0, 0, "a bool"),
    "fix_sentence_endings": (bool, 0, 0, "a bool"),
    "break_long_words": (bool, 0, 0, "a bool"),
    "drop_whitespace": (bool, 0, 0, "a bool"),
    "break_on_hyphens": (bool, 0, 0, "a bool"),
}


class ModuleProxy:
    """Base of the read-only module objects plugins import."""

    __slots__ = ("_module_name",)

    def __new__(cls, *args: Any, **kwargs: Any) -> "ModuleProxy":
        raise TypeError("cannot create module objects")

    def __getattr__(self, name: str) -> Any:
        # Only called for missing names. IMPORT_FROM asks for __name__ to
        # word its ImportError; everything else is simply not there.
        module = object.__getattribute__(self, "_module_name")
        if name == "__name__":
            return module
        raise AttributeError(f"module '{module}' has no attribute '{name}' in the plugin sandbox")

    def __setattr__(self, name: str, value: Any) -> None:
        raise SandboxPolicyError(f"plugins cannot modify module '{self._module_name}'")

    def __delattr__(self, name: str) -> None:
        raise SandboxPolicyError(f"plugins cannot modify module '{self._module_name}'")

    def __repr__(self) -> str:
        return f"<module '{self._module_name}' (plugin sandbox)>"

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle a module")


_PROXY_CLASSES: dict[tuple[str, tuple[str, ...]], type] = {}


def make_module(name: str, attrs: dict[str, Any]) -> ModuleProxy:
    """A read-only proxy named ``name`` exposing exactly ``attrs``."""
    key = (name, tuple(sorted(attrs)))
    cls = _PROXY_CLASSES.get(key)
    if cls is None:
        cls = type("module", (ModuleProxy,), {"__slots__": key[1], "__module__": "builtins"})
        _PROXY_CLASSES[key] = cls
    proxy = object.__new__(cls)
    object.__setattr__(proxy, "_module_name", name)
    for attr, value in attrs.items():
        object.__setattr__(proxy, attr, value)
    return proxy


_REAL_NUMBERS = frozenset({int, float, bool})


def _limit(message: str) -> SandboxLimitError:
    return SandboxLimitError(message)


class ModuleFactory:
    """Builds the proxies for one plugin."""

    def __init__(self, budget: Budget, iteration: Iteration, guards: Guards, types: Any) -> None:
        self.budget = budget
        self.iteration = iteration
        self.guards = guards
        self.types = types

    def build(self, name: str) -> ModuleProxy:
        return make_module(name, getattr(self, "_" + name)())

    # -- math -----------------------------------------------------------------

    def _math(self) -> dict[str, Any]:
        getiter = self.iteration.getiter
        bounded = self.iteration.bounded
        mul = self.guards.mul
        attrs = {n: getattr(math, n) for n in _MATH_PLAIN if hasattr(math, n)}

        def factorial(n: Any) -> int:
            if isinstance(n, int) and n > MAX_FACTORIAL:
                raise _limit(f"factorial({n}) exceeds the plugin limit of factorial({MAX_FACTORIAL})")
            return math.factorial(n)

        def result_bits(n: int, k: int) -> float:
            return k * math.log2(max(n, 2))

        def comb(n: Any, k: Any) -> int:
            if isinstance(n, int) and isinstance(k, int) and n > 0 and 0 <= k <= n:
                if int.bit_length(n) > MAX_INT_BITS or result_bits(n, min(k, n - k)) > MAX_INT_BITS:
                    raise _limit(f"comb() result exceeds the plugin limit of {MAX_INT_DIGITS} digits")
            return math.comb(n, k)

        def perm(n: Any, k: Any = None) -> int:
            kk = n if k is None else k
            if isinstance(n, int) and isinstance(kk, int) and n > 0 and 0 <= kk <= n:
                if int.bit_length(n) > MAX_INT_BITS or result_bits(n, kk) > MAX_INT_BITS:
                    raise _limit(f"perm() result exceeds the plugin limit of {MAX_INT_DIGITS} digits")
            return math.perm(n, k)

        def check_ints(args: tuple[Any, ...], what: str) -> None:
            for a in args:
                if isinstance(a, int) and int.bit_length(a) > MAX_INT_BITS:
                    raise _limit(f"{what}() argument exceeds the plugin limit of {MAX_INT_DIGITS} digits")

        def gcd(*integers: Any) -> int:
            check_ints(integers, "gcd")
            return math.gcd(*integers)

        def lcm(*integers: Any) -> int:
            check_ints(integers, "lcm")
            result = 1
            for value in getiter(integers):
                if isinstance(value, int) and value:
                    g = math.gcd(result, value)
                    bits = int.bit_length(result) + int.bit_length(value) - int.bit_length(g)
                    if bits > MAX_INT_BITS + 1:
                        raise _limit(f"lcm() result exceeds the plugin limit of {MAX_INT_DIGITS} digits")
                result = math.lcm(result, value)
            return result

        def isqrt(n: Any) -> int:
            check_ints((n,), "isqrt")
            return math.isqrt(n)

        def prod(iterable: Any, /, *, start: Any = 1) -> Any:
            total = start
            for item in getiter(iterable):
                total = mul(total, item)
            return total

        def fsum(iterable: Any) -> float:
            return math.fsum(getiter(iterable))

        def dist(p: Any, q: Any) -> float:
            return math.dist(tuple(bounded(p)), tuple(bounded(q)))

        attrs.update(factorial=factorial, comb=comb, perm=perm, gcd=gcd, lcm=lcm, isqrt=isqrt,
                     prod=prod, fsum=fsum, dist=dist)
        return attrs

    # -- json -----------------------------------------------------------------

    def _json(self) -> dict[str, Any]:
        def dumps(
            obj: Any,
            *,
            skipkeys: bool = False,
            ensure_ascii: bool = True,
            check_circular: bool = True,
            allow_nan: bool = True,
            indent: Any = None,
            separators: Any = None,
            default: Any = None,
            sort_keys: bool = False,
        ) -> str:
            if isinstance(indent, int) and indent > MAX_JSON_INDENT:
                raise _limit(f"json indent {indent} exceeds the plugin limit of {MAX_JSON_INDENT}")
            if isinstance(indent, str):
                indent = str.__str__(indent)  # the text itself, not a subclass's say
                if len(indent) > MAX_JSON_INDENT:
                    raise _limit(f"json indent of {len(indent)} characters exceeds the plugin limit of {MAX_JSON_INDENT}")
            walk_guards = self.guards.walk_guards
            walks = walk_guards.walks
            if default is not None:
                default = walk_guards.texted(default, "json.dumps()")
            per_item = 0  # what separators and indentation add to every item
            if separators is not None:
                item_sep, key_sep = (str.__str__(sep) if isinstance(sep, str) else sep for sep in separators)
                if not (type(item_sep) is str and type(key_sep) is str):
                    raise TypeError("json separators must be strings")
                if len(item_sep) > MAX_JSON_INDENT or len(key_sep) > MAX_JSON_INDENT:
                    raise _limit(f"json separators longer than {MAX_JSON_INDENT} characters exceed the plugin limit")
                separators = (item_sep, key_sep)
                per_item += len(item_sep) + len(key_sep)
            text = walks.text_size(obj, "json")
            if text <= MAX_BYTES and (per_item or indent is not None):
                # every item gets the separators, and with indent a new line
                # indented to its depth: text the item estimate leaves out
                items, depth = walks.size_and_depth(obj)
                if indent is not None:
                    width = len(indent) if isinstance(indent, str) else int(indent)
                    per_item += 1 + width * (1 + depth)
                text += items * per_item
            if text > MAX_BYTES:
                raise _limit(f"json.dumps() text of more than {MAX_BYTES} characters exceeds the plugin limit of {MAX_BYTES}")
            return json.dumps(
                obj, skipkeys=skipkeys, ensure_ascii=ensure_ascii, check_circular=check_circular,
                allow_nan=allow_nan, indent=indent, separators=separators, default=default,
                sort_keys=sort_keys,
            )

        def loads(
            s: Any,
            *,
            object_hook: Any = None,
            parse_float: Any = None,
            parse_int: Any = None,
            parse_constant: Any = None,
            object_pairs_hook: Any = None,
        ) -> Any:
            if isinstance(s, (str, bytes, bytearray)):
                # each value but the first follows a comma (or opens a
                # container): a bound on any one list's or object's items
                commas = s.count("," if isinstance(s, str) else b",")
                if commas >= MAX_ITEMS:
                    raise _limit(items_message(commas + 1, what="json array or object"))
            return json.loads(
                s, object_hook=object_hook, parse_float=parse_float, parse_int=parse_int,
                parse_constant=parse_constant, object_pairs_hook=object_pairs_hook,
            )

        return {"dumps": dumps, "loads": loads, "JSONDecodeError": json.JSONDecodeError}

    # -- re ---------------------------------------------------------------------

    def _re(self) -> dict[str, Any]:
        charge = self.budget.charge

        def check(pattern: Any, flags: Any = 0, string: Any = None, scans: bool = True) -> None:
            text = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
            if isinstance(text, (str, bytes)) and len(text) > MAX_REGEX_PATTERN:
                raise _limit(f"regular expression of {len(text)} characters exceeds the plugin limit of {MAX_REGEX_PATTERN}")
            if isinstance(flags, int) and flags & re.DEBUG:
                raise SandboxPolicyError("re.DEBUG is not available to plugins")
            check_search(pattern, flags, string, scans=scans)  # backtracking bounds (see .regex)

        def escape(pattern: Any) -> Any:
            # at most one backslash per character
            if isinstance(pattern, (str, bytes)) and 2 * char_len(pattern) > MAX_BYTES:
                raise _limit(bytes_message(2 * char_len(pattern), what="escaped pattern"))
            return re.escape(pattern)

        def pattern_text(pattern: Any) -> Any:
            return pattern.pattern if isinstance(pattern, re.Pattern) else pattern

        def compile(pattern: Any, flags: Any = 0) -> re.Pattern[Any]:  # noqa: A001 - module API name
            check(pattern, flags)
            return re.compile(pattern, flags)

        def simple(fn: Callable[..., Any], listing: bool = False) -> Callable[..., Any]:
            def call(pattern: Any, string: Any, *args: Any, **kwargs: Any) -> Any:
                check(pattern, kwargs.get("flags", args[-1] if args else 0), string, fn not in (re.match, re.fullmatch))
                if listing and isinstance(string, (str, bytes)) and char_len(string) > MAX_ITEMS:
                    raise _limit(items_message(char_len(string), what="regular expression search of a string"))
                if fn is re.split:
                    check_split_items(pattern, string, kwargs.get("flags", args[-1] if len(args) > 1 else 0))
                return fn(pattern, string, *args, **kwargs)

            call.__name__ = call.__qualname__ = fn.__name__
            return call

        def substitute(fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(pattern: Any, repl: Any, string: Any, *args: Any, **kwargs: Any) -> Any:
                check(pattern, kwargs.get("flags", args[1] if len(args) > 1 else 0), string)
                repl = sub_replacement(pattern_text(pattern), repl, string, charge)
                return fn(pattern, repl, string, *args, **kwargs)

            call.__name__ = call.__qualname__ = fn.__name__
            return call

        attrs: dict[str, Any] = {
            "compile": compile,
            "search": simple(re.search),
            "match": simple(re.match),
            "fullmatch": simple(re.fullmatch),
            "split": simple(re.split, listing=True),
            "findall": simple(re.findall, listing=True),
            "finditer": simple(re.finditer),
            "sub": substitute(re.sub),
            "subn": substitute(re.subn),
            "escape": escape,
            "error": re.error,
            "Pattern": re.Pattern,
            "Match": re.Match,
        }
        attrs.update({flag: getattr(re, flag) for flag in _RE_FLAGS if hasattr(re, flag)})
        return attrs

    # -- datetime and time ------------------------------------------------------

    def _datetime(self) -> dict[str, Any]:
        attrs = {
            "date": datetime.date,
            "datetime": datetime.datetime,
            "time": datetime.time,
            "timedelta": datetime.timedelta,
            "timezone": self.types.timezone,
            "MINYEAR": datetime.MINYEAR,
            "MAXYEAR": datetime.MAXYEAR,
        }
        if hasattr(datetime, "UTC"):
            attrs["UTC"] = datetime.UTC
        return attrs

    def _time(self) -> dict[str, Any]:
        return {"time": time.time, "monotonic": time.monotonic, "perf_counter": time.perf_counter}

    # -- random -------------------------------------------------------------------

    def _random(self) -> dict[str, Any]:
        generator = random.Random()
        budget = self.budget
        iteration = self.iteration
        write = self.guards.write
        attrs = {name: getattr(generator, name) for name in _RANDOM_PLAIN}

        def numbers(values: Any, name: str) -> Any:
            # The standard library adds these up with + (itertools.accumulate):
            # only numbers, or a list of lists would be concatenated in C.
            values = iteration.bounded(values)
            if not set(map(type, values)) <= _REAL_NUMBERS:
                raise TypeError(f"random: {name} must be numbers")
            return values

        def choice(seq: Any) -> Any:
            return generator.choice(iteration.unwrap(seq))

        def choices(population: Any, weights: Any = None, *, cum_weights: Any = None, k: int = 1) -> list[Any]:
            if isinstance(k, int) and k > MAX_ITEMS:
                raise _limit(items_message(k))
            population = iteration.unwrap(population)
            if weights is not None and cum_weights is None:
                cum_weights = list(itertools.accumulate(numbers(weights, "weights")))
            elif cum_weights is not None:
                cum_weights = numbers(cum_weights, "cum_weights")
            out: list[Any] = []
            remaining = k
            while remaining > 0:  # chunks: random.choices is an uninterruptible loop
                n = min(remaining, 65536)
                out += generator.choices(population, cum_weights=cum_weights, k=n)
                remaining -= n
                budget.check()
            return out

        def shuffle(x: Any) -> None:
            write(x)
            randbelow = generator._randbelow  # the same algorithm as random.shuffle
            for i in reversed(range(1, len(x))):
                if not i & 4095:
                    budget.check()
                j = randbelow(i + 1)
                x[i], x[j] = x[j], x[i]

        def sample(population: Any, k: Any, *, counts: Any = None) -> list[Any]:
            if isinstance(k, int) and k > MAX_SAMPLE:
                raise _limit(items_message(k, MAX_SAMPLE, "sample"))
            if counts is not None:
                counts = numbers(counts, "counts")
            return generator.sample(iteration.unwrap(population), k, counts=counts)

        def getrandbits(k: Any) -> int:
            if isinstance(k, int) and k > MAX_INT_BITS:
                raise _limit(f"getrandbits({k}) exceeds the plugin limit of {MAX_INT_BITS} bits")
            return generator.getrandbits(k)

        def randbytes(n: Any) -> bytes:
            if isinstance(n, int) and n > MAX_BYTES:
                raise _limit(bytes_message(n, what="bytes"))
            return generator.randbytes(n)

        attrs.update(choice=choice, choices=choices, shuffle=shuffle, sample=sample,
                     getrandbits=getrandbits, randbytes=randbytes)
        return attrs

    # -- text and encodings -----------------------------------------------------------

    def _string(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {name: getattr(string, name) for name in _STRING_CONSTANTS}
        attrs["capwords"] = string.capwords
        return attrs

    def _textwrap(self) -> dict[str, Any]:
        def check(text: Any, extra: int = 0, options: dict[str, Any] | None = None) -> None:
            if isinstance(text, str) and len(text) > MAX_TEXTWRAP_INPUT:
                raise _limit(f"text of {len(text)} characters exceeds the textwrap limit of {MAX_TEXTWRAP_INPUT}")
            longest = 0
            for key in ("initial_indent", "subsequent_indent", "placeholder"):
                value = (options or {}).get(key)
                if isinstance(value, str):
                    longest = max(longest, len(value))
            if isinstance(text, str) and (len(text) + 1) * (1 + longest + extra) > MAX_BYTES:
                raise _limit(bytes_message((len(text) + 1) * (1 + longest + extra), what="wrapped text"))

        def options(kwargs: dict[str, Any]) -> dict[str, Any]:
            # textwrap takes sizes from its options (tabsize multiplies the
            # text, width and max_lines steer its loops): accept only known
            # options, of exact types, within bounds.
            for key, value in kwargs.items():
                kind = _TEXTWRAP_OPTIONS.get(key)
                if kind is None:
                    raise TypeError(f"textwrap: unexpected option '{key}'")
                if type(value) is not kind[0] or (kind[0] is not bool and not kind[1] <= (
                        len(value) if kind[0] is str else value) <= kind[2]):
                    raise _limit(f"textwrap: option '{key}' must be {kind[3]}")
            return kwargs

        def wrap(text: Any, width: int = 70, **kwargs: Any) -> list[str]:
            check(text, options=options(kwargs))
            return textwrap.wrap(text, width, **kwargs)

        def fill(text: Any, width: int = 70, **kwargs: Any) -> str:
            check(text, options=options(kwargs))
            return textwrap.fill(text, width, **kwargs)

        def shorten(text: Any, width: int, **kwargs: Any) -> str:
            check(text, options=options(kwargs))
            return textwrap.shorten(text, width, **kwargs)

        def dedent(text: Any) -> str:
            check(text)
            return textwrap.dedent(text)

        def indent(text: Any, prefix: Any, predicate: Any = None) -> str:
            check(text)
            if isinstance(text, str) and isinstance(prefix, str):
                n = len(text) + (text.count("\n") + 1) * len(prefix)
                if n > MAX_BYTES:
                    raise _limit(bytes_message(n, what="indented text"))
            return textwrap.indent(text, prefix, predicate)

        return {"wrap": wrap, "fill": fill, "shorten": shorten, "dedent": dedent, "indent": indent}

    def _base64(self) -> dict[str, Any]:
        names = (
            "b64encode b64decode urlsafe_b64encode urlsafe_b64decode standard_b64encode "
            "standard_b64decode b16encode b16decode"
        ).split()
        return {name: getattr(base64, name) for name in names}

    def _hashlib(self) -> dict[str, Any]:
        return {name: getattr(hashlib, name) for name in _HASHES}

    def _hmac(self) -> dict[str, Any]:
        constructors = {getattr(hashlib, name): name for name in _HASHES}

        def digestmod_name(digestmod: Any) -> str:
            # hmac takes block_size from digestmod and pads the key to it: a
            # plugin object there would choose the size. Only the hash names
            # and the hashlib constructors plugins can reach are accepted.
            if type(digestmod) is str and digestmod in _HASHES:
                return digestmod
            name = constructors.get(digestmod) if callable(digestmod) else None
            if name is None:
                raise TypeError(f"hmac: digestmod must be one of {', '.join(sorted(_HASHES))}")
            return name

        def new(key: Any, msg: Any = None, digestmod: Any = "") -> Any:
            return hmac.new(key, msg, digestmod_name(digestmod))

        def digest(key: Any, msg: Any, digest: Any) -> bytes:
            return hmac.digest(key, msg, digestmod_name(digest))

        return {"new": new, "compare_digest": hmac.compare_digest, "digest": digest}

    def _uuid(self) -> dict[str, Any]:
        names = "UUID uuid3 uuid4 uuid5 NAMESPACE_DNS NAMESPACE_URL NAMESPACE_OID NAMESPACE_X500".split()
        return {name: getattr(uuid, name) for name in names}

    # -- algorithms and iteration -------------------------------------------------------

    def _bisect(self) -> dict[str, Any]:
        unwrap = self.iteration.unwrap

        def reader(fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(a: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
                return fn(unwrap(a), x, *args, **kwargs)

            call.__name__ = call.__qualname__ = fn.__name__
            return call

        walk_guards = self.guards.walk_guards

        def searcher(fn: Callable[..., Any], unwrapped: bool) -> Callable[..., Any]:
            # Every comparison is between x (or key(x)) and an item's key:
            # bounded by x's size, or by each key result's.
            def call(a: Any, x: Any, *args: Any, key: Any = None, **kwargs: Any) -> Any:
                if key is None:
                    walk_guards.operand(x)
                else:
                    key = walk_guards.keyed(key, "bisect key")
                    if unwrapped:
                        walk_guards.operand(x)
                return fn(unwrap(a) if unwrapped else a, x, *args, key=key, **kwargs)

            call.__name__ = call.__qualname__ = fn.__name__
            return call

        attrs = {name: searcher(getattr(bisect, name), True) for name in ("bisect", "bisect_left", "bisect_right")}
        attrs.update({name: searcher(getattr(bisect, name), False) for name in ("insort", "insort_left", "insort_right")})
        return attrs

    def _heapq(self) -> dict[str, Any]:
        getiter = self.iteration.getiter
        bounded = self.iteration.bounded

        walk_guards = self.guards.walk_guards
        operand = walk_guards.operand
        collection = walk_guards.collection

        def ranked(iterable: Any, key: Any) -> tuple[Any, Any]:
            items = bounded(iterable)
            if key is None:
                return collection(items, "heap"), None
            return items, walk_guards.keyed(key, "heap key")

        def nlargest(n: Any, iterable: Any, key: Any = None) -> list[Any]:
            return heapq.nlargest(n, *ranked(iterable, key))

        def nsmallest(n: Any, iterable: Any, key: Any = None) -> list[Any]:
            return heapq.nsmallest(n, *ranked(iterable, key))

        def merge(*iterables: Any, key: Any = None, reverse: bool = False) -> Any:
            if key is None:
                checked = walk_guards.running("merge")
                sources = [map(checked, getiter(it)) for it in iterables]
            else:
                sources = [getiter(it) for it in iterables]
                key = walk_guards.keyed(key, "merge key")
            return getiter(heapq.merge(*sources, key=key, reverse=reverse))

        def heappush(heap: Any, item: Any) -> None:
            # The new item is compared with its ancestors only.
            heapq.heappush(heap, operand(item))

        def heapify(heap: Any) -> None:
            heapq.heapify(collection(heap, "heap"))

        attrs = {"heappush": heappush, "heapify": heapify}
        attrs.update(walk_guards.heap_functions())
        attrs.update(nlargest=nlargest, nsmallest=nsmallest, merge=merge)
        return attrs

    def _itertools(self) -> dict[str, Any]:
        getiter = self.iteration.getiter
        bounded = self.iteration.bounded
        add = self.guards.add

        def accumulate(iterable: Any, func: Any = None, *, initial: Any = None) -> Any:
            # The default function is addition, which C would run unchecked
            # on strings and lists.
            return itertools.accumulate(getiter(iterable), add if func is None else func, initial=initial)

        def pools(args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            return [tuple(bounded(a)) for a in args]

        def check_r(r: Any, n: int) -> None:
            size = n if r is None else r
            if isinstance(size, int) and size > MAX_COMBINATORIC_R:
                raise _limit(items_message(size, MAX_COMBINATORIC_R, "combination"))

        def product(*iterables: Any, repeat: int = 1) -> Any:
            if isinstance(repeat, int) and len(iterables) * repeat > MAX_PRODUCT_POOLS:
                raise _limit(items_message(len(iterables) * repeat, MAX_PRODUCT_POOLS, "product"))
            return getiter(itertools.product(*pools(iterables), repeat=repeat))

        def permutations(iterable: Any, r: Any = None) -> Any:
            pool = tuple(bounded(iterable))
            check_r(r, len(pool))
            return getiter(itertools.permutations(pool, r))

        def combinations(iterable: Any, r: Any) -> Any:
            pool = tuple(bounded(iterable))
            check_r(r, len(pool))
            return getiter(itertools.combinations(pool, r))

        def combinations_with_replacement(iterable: Any, r: Any) -> Any:
            pool = tuple(bounded(iterable))
            check_r(r, len(pool))
            return getiter(itertools.combinations_with_replacement(pool, r))

        def tee(iterable: Any, n: int = 2) -> tuple[Any, ...]:
            if isinstance(n, int) and n > MAX_TEE:
                raise _limit(items_message(n, MAX_TEE, "tee"))
            return itertools.tee(getiter(iterable), n)

        def lazy(fn: Callable[..., Any], positions: tuple[int, ...]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                args = tuple(getiter(a) if i in positions else a for i, a in enumerate(args))
                return fn(*args, **kwargs)

            call.__name__ = call.__qualname__ = fn.__name__
            return call

        walk_guards = self.guards.walk_guards

        def groupby(iterable: Any, key: Any = None) -> Any:
            # Consecutive keys are compared for equality.
            return itertools.groupby(getiter(iterable), walk_guards.keyed(key, "groupby key"))

        class Chain:
            """itertools.chain with from_iterable, both counted."""

            __slots__ = ()

            def __call__(self, *iterables: Any) -> Any:
                return itertools.chain(*[getiter(it) for it in iterables])

            def from_iterable(self, iterables: Any) -> Any:
                return itertools.chain.from_iterable(map(getiter, getiter(iterables)))

            def __repr__(self) -> str:
                return "<class 'itertools.chain'>"

        def zip_longest(*iterables: Any, fillvalue: Any = None) -> Any:
            return itertools.zip_longest(*[getiter(it) for it in iterables], fillvalue=fillvalue)

        return {
            "accumulate": accumulate,
            "chain": Chain(),
            "compress": lazy(itertools.compress, (0, 1)),
            "dropwhile": lazy(itertools.dropwhile, (1,)),
            "filterfalse": lazy(itertools.filterfalse, (1,)),
            "groupby": groupby,
            "islice": lazy(itertools.islice, (0,)),
            "pairwise": lazy(itertools.pairwise, (0,)),
            "starmap": lazy(itertools.starmap, (1,)),
            "takewhile": lazy(itertools.takewhile, (1,)),
            "tee": tee,
            "zip_longest": zip_longest,
            "product": product,
            "permutations": permutations,
            "combinations": combinations,
            "combinations_with_replacement": combinations_with_replacement,
        }

    def _collections(self) -> dict[str, Any]:
        t = self.types
        return {"Counter": t.Counter, "defaultdict": t.defaultdict, "OrderedDict": t.OrderedDict, "deque": t.deque}

    def _functools(self) -> dict[str, Any]:
        getiter = self.iteration.getiter

        def reduce(function: Any, iterable: Any, *initial: Any) -> Any:
            return functools.reduce(function, getiter(iterable), *initial)

        return {"reduce": reduce, "partial": functools.partial}

    def ___future__(self) -> dict[str, Any]:
        # Only so that "from __future__ import annotations" works.
        return {"annotations": True}


#: Modules that C functions of allowed modules import lazily, by name, through
#: the running code's ``__import__``: handed to them as the real module.
_C_LAZY_IMPORTS = {"_strptime": _strptime}


class Importer:
    """The ``__import__`` of one plugin: allow-listed names only, one proxy
    per module per plugin."""

    def __init__(self, factory: ModuleFactory) -> None:
        self._factory = factory
        self._cache: dict[str, ModuleProxy] = {}

    def __call__(self, name: Any, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level:
            raise SandboxImportError("relative imports are not supported in plugins")
        if type(name) is str and name in _C_LAZY_IMPORTS:
            # Asked by C code running for the plugin (datetime.strptime imports
            # _strptime through the current builtins); plugin code itself can
            # neither name __import__ nor import an underscore name.
            return _C_LAZY_IMPORTS[name]
        if type(name) is not str or (name not in ALLOWED_MODULES and name != "__future__"):
            raise SandboxImportError(
                f"import of '{name}' is not allowed in plugins (allowed: {', '.join(ALLOWED_MODULES)})",
                name=None,
            )
        proxy = self._cache.get(name)
        if proxy is None:
            proxy = self._factory.build(name)
            self._cache[name] = proxy
        return proxy

