"""Numeric limits of the Python plugin sandbox, in one place.

Every guard that refuses an operation for its size reads its limit from
here, so the documentation (docs/python-plugins.md) and the code cannot
drift apart. They are per-object (or per-call) limits, not a total memory
budget: see the docs for what they do and do not bound.
"""

from __future__ import annotations

import math

#: Most items a list, tuple, set, dict, deque or other container built by a
#: checked operation may hold (also the most items a comprehension loop or a
#: materialising call such as ``list()`` may pull from an iterable).
MAX_ITEMS = 16 * 1024 * 1024

#: Most items C code may visit in one comparison, hash, membership test,
#: sort or text conversion of a plugin's structure, counting every shared
#: part once per place it appears (``a = [a, a]`` doubles it). Those walks
#: are single C calls no budget check can interrupt, and a structure with
#: shared parts can make them visit 2**64 items while holding a few dozen
#: objects; a structure that contains itself counts as too large.
MAX_WALK_ITEMS = 2 * MAX_ITEMS

#: Deepest nesting such a walk may descend: measuring costs Python work per
#: level, and comparisons and ``repr`` fail far sooner on their own
#: (RecursionError), so only hashing a tuple chain could use more.
MAX_WALK_DEPTH = 10_000

#: Keys this small may be looked up anywhere: building a container where
#: many entries share a hash costs the builder quadratic time (each new
#: entry is compared with the earlier ones), so the budget keeps such
#: containers small enough that a small key's lookup stays cheap. A larger
#: key is checked against the container's size.
SMALL_KEY_ITEMS = 1024

#: Most entries (nested tuples unfolded) a class tuple given to
#: ``isinstance()`` or ``issubclass()`` may have.
MAX_CLASSINFO = 4096

#: Most bytes in one ``bytes``/``bytearray`` and most characters in one
#: ``str`` produced by a checked operation.
MAX_BYTES = 64 * 1024 * 1024

#: Most decimal digits of an integer produced (or consumed by a
#: super-linear operation such as ``*``, ``//`` and ``%``).
MAX_INT_DIGITS = 100_000
MAX_INT_BITS = math.ceil(MAX_INT_DIGITS * math.log2(10))

#: Largest width or precision accepted in a format specification
#: (``format()``, ``str.format``, f-strings and ``%`` formatting).
MAX_FORMAT_WIDTH = 100_000
#: Longest format specification (the part after ``:``).
MAX_FORMAT_SPEC = 1000

#: Three-argument ``pow()``: largest modulus and exponent, in bits. Modular
#: exponentiation runs in one uninterruptible C call whose time grows with
#: both (RSA-8192-sized values take well under a second).
MAX_POWMOD_BITS = 16_384

#: ``math.factorial`` argument cap (25000! has about 99,000 digits).
MAX_FACTORIAL = 25_000

#: ``itertools`` combinatorics: longest output tuple and most input pools;
#: ``itertools.tee``: most copies.
MAX_COMBINATORIC_R = 10_000
MAX_PRODUCT_POOLS = 1024
MAX_TEE = 1024

#: ``random.sample`` largest sample (it runs as an uninterruptible loop in
#: the standard library).
MAX_SAMPLE = 1_000_000

#: Longest regular expression pattern (parsing one runs in the standard
#: library, outside the budget checks).
MAX_REGEX_PATTERN = 10_000

#: Longest text accepted by the ``textwrap`` functions (pure-Python
#: standard-library code that the budget cannot interrupt).
MAX_TEXTWRAP_INPUT = 1_000_000

#: ``json.dumps``: largest ``indent`` and longest separators.
MAX_JSON_INDENT = 64

#: Longest ``datetime.timezone`` name (``%Z`` in ``strftime`` expands to it).
MAX_TZNAME = 100
#: Upper bound on how many characters one ``strftime`` directive produces,
#: used to predict the output size from the format's length.
STRFTIME_EXPANSION = 128

#: Longest plugin source accepted, in characters (the host reads at most
#: 16 MiB of any main file; Python sources get a tighter limit because the
#: compiler runs on the host before any budget applies).
MAX_SOURCE_CHARS = 1024 * 1024

#: Longest the host spends compiling one plugin.py. Compiling is host work
#: (RestrictedPython's transformer is pure Python): about 2 µs per character
#: for ordinary code, but up to ten times that for source crafted to be slow,
#: so it gets a limit of its own rather than the plugin's entry budget.
COMPILE_TIMEOUT_S = 10.0

#: Longest exception message copied into a PluginError.
MAX_ERROR_MESSAGE = 2000

#: Budget ticks between two reads of the monotonic clock. Every loop
#: iteration, function call and while-loop pass is one tick; the clock is
#: read (about 150 ns of Python) once per chunk, so the steady cost per tick
#: stays at C speed.
TICK_CHUNK = 256

#: Checked operations that approve a large result charge its size to the
#: budget; after this many bytes the clock is read at once instead of
#: waiting for the next chunk boundary.
CHARGE_CHECK_BYTES = 8 * 1024 * 1024
#: Results smaller than this are not charged (keeps small operations cheap).
CHARGE_THRESHOLD = 64 * 1024


def items_message(count: int, limit: int = MAX_ITEMS, what: str = "sequence") -> str:
    """The refusal message for a container that would be too long."""
    return f"{what} of {count} items exceeds the plugin limit of {limit}"


def walk_message(what: str, limit: int = MAX_WALK_ITEMS) -> str:
    """The refusal message for a structure too large (unfolded) to walk."""
    return (
        f"{what} of a structure that unfolds to more than {limit} items (every shared or "
        f"self-containing part counts once per place it appears) or nests more than "
        f"{MAX_WALK_DEPTH} levels deep exceeds the plugin limit of {limit}"
    )


def bytes_message(count: int, limit: int = MAX_BYTES, what: str = "result") -> str:
    """The refusal message for a string or bytes object that would be too long."""
    return f"{what} of {count} characters exceeds the plugin limit of {limit}"

#: Virtual stack size of each plugin worker thread. Some CPython C code
#: recurses without a recursion check (hashing a tuple nested millions deep,
#: nested iterator chains) and overflows the C stack, killing the whole
#: process. Plugin code can build such a structure at a few million levels
#: per second, so the stack is sized for the longest budget the host allows
#: (5 s at the default policy: about 20 million levels needs about 2 GiB).
#: Only pages actually touched use memory; the rest is address space.
PLUGIN_THREAD_STACK_BYTES = 4 * 1024 * 1024 * 1024
