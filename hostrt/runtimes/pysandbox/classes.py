"""Classes as plugin code sees them.

* :class:`PluginClassMeta` is the metaclass of every class a plugin defines
  (the policy adds ``metaclass=__metaclass__`` to each ``class`` statement).
  It re-checks at run time what the compiler checks (only allow-listed
  special methods, no class keywords) and refuses host-internal bases and
  metaclasses. Being a plugin class is what makes an object writable by
  plugin code (see ``_write_`` in :mod:`.guards`).
* :class:`TypeProxy` stands in for builtin container types (``list``,
  ``dict``, ``bytes``, ``collections.Counter`` ...) whose constructors would
  otherwise consume an iterable, or allocate, in one unchecked C call. A
  proxy calls a guarded constructor, answers ``isinstance``/``issubclass``
  like the real type, forwards public attributes (``dict.fromkeys``,
  ``bytes.fromhex``) and, as a base class, substitutes a *safe base*: a
  host subclass whose constructor is guarded the same way, so ``class
  L(list): pass; L(range(10**9))`` is still checked.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Callable

from .refusals import SandboxPolicyError
from .walks import counted_text

#: Special methods a plugin class may define. Each is only ever called by
#: the interpreter on the plugin's own objects and runs plugin code, which
#: ticks like any other function. Deliberately absent: ``__getattr__``,
#: ``__getattribute__``, ``__setattr__``, ``__delattr__`` (would see and
#: alter every attribute access), ``__exit__`` (can swallow the budget
#: interrupt), ``__del__`` (runs at garbage collection, outside any budget),
#: ``__init_subclass__``, ``__class_getitem__``, ``__set_name__``,
#: ``__mro_entries__`` (hooks into class creation), ``__reduce__*``,
#: ``__getstate__``/``__setstate__`` (serialisation hooks), ``__format__``
#: (unchecked format specs), ``__index__``, ``__int__``, ``__float__``,
#: ``__length_hint__`` (would let a plugin object lie about a size *after*
#: a guard has checked it), ``__new__``, descriptors (``__get__`` ...).
ALLOWED_DUNDER_METHODS = frozenset(
    {
        "__init__",
        "__repr__",
        "__str__",
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__hash__",
        "__bool__",
        "__len__",
        "__iter__",
        "__next__",
        "__reversed__",
        "__contains__",
        "__getitem__",
        "__setitem__",
        "__delitem__",
        "__call__",
        "__add__",
        "__radd__",
        "__sub__",
        "__rsub__",
        "__mul__",
        "__rmul__",
        "__truediv__",
        "__rtruediv__",
        "__floordiv__",
        "__rfloordiv__",
        "__mod__",
        "__rmod__",
        "__neg__",
        "__pos__",
        "__abs__",
    }
)

#: Names the compiler itself puts into a class namespace.
CLASS_NAMESPACE_KEYS = frozenset(
    {"__module__", "__qualname__", "__doc__", "__classcell__", "__annotations__", "__orig_bases__"}
)

_HOST_PACKAGE = "hostrt."


def is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


class PluginClassMeta(type):
    """Metaclass of every class defined by plugin code."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> type:
        if kwargs:
            raise SandboxPolicyError("class keyword arguments are not supported in plugins")
        for key in namespace:
            if type(key) is not str:
                raise SandboxPolicyError("class attribute names must be strings")
            if key.startswith("_") and key not in CLASS_NAMESPACE_KEYS and key not in ALLOWED_DUNDER_METHODS:
                raise SandboxPolicyError(f"class attribute '{key}' is not allowed in plugin classes")
        for base in bases:
            check_base(base)
        for text_method in ("__repr__", "__str__"):
            if callable(namespace.get(text_method)):
                namespace[text_method] = counted_text(namespace[text_method])
        return super().__new__(mcs, name, bases, namespace)


def check_base(base: Any) -> None:
    """Refuse metaclasses and host-internal classes as plugin base classes."""
    if not isinstance(base, type):
        return  # type.__new__ raises the usual TypeError
    if issubclass(base, type):
        raise SandboxPolicyError("plugins cannot define metaclasses")
    if type(base) is PluginClassMeta or base.__dict__.get("_hostrt_safe_base"):
        return
    module = getattr(base, "__module__", "") or ""
    if module.startswith(_HOST_PACKAGE) and not module.startswith("hostrt.errors"):
        raise SandboxPolicyError(f"plugins cannot subclass '{base.__name__}'")


_TOKEN = object()


class TypeProxy:
    """A builtin type as plugin code sees it (see the module docstring)."""

    __slots__ = ("_real", "_factory", "_base", "_check")

    def __init__(
        self,
        token: object,
        real: type,
        factory: Callable[..., Any] | None,
        base: type | None,
        check: Callable[[Any], bool] | None = None,
    ) -> None:
        if token is not _TOKEN:
            raise TypeError("cannot create this object")
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_factory", factory)
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_check", check)

    @classmethod
    def _make(
        cls,
        real: type,
        factory: Callable[..., Any] | None,
        base: type | None = None,
        check: Callable[[Any], bool] | None = None,
    ) -> "TypeProxy":
        """Host-side constructor (plugin code cannot supply the token).

        With ``factory=None`` the proxy is *opaque*: it answers isinstance
        and issubclass, prints its name, and does nothing else (no calls, no
        attributes)."""
        return cls(_TOKEN, real, factory, base, check)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._factory is None:
            raise SandboxPolicyError(f"plugins cannot create '{self._real.__name__}' objects through type()")
        return self._factory(*args, **kwargs)

    def __instancecheck__(self, obj: Any) -> bool:
        if self._check is not None:
            return self._check(obj)
        return isinstance(obj, self._real)

    def __subclasscheck__(self, cls: Any) -> bool:
        if type(cls) is TypeProxy:
            cls = cls._real
        return issubclass(cls, self._real)

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        if self._base is None:
            raise SandboxPolicyError(f"plugins cannot subclass '{self._real.__name__}'")
        return (self._base,)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the proxy itself lacks; plugin code can only
        # ask for public names (the compiler and getattr() see to that), but
        # check again: this is a path into a real type object.
        if (self._factory is None or name.startswith("_")
                or unicodedata.normalize("NFKC", name).startswith("_")):
            raise AttributeError(f"type '{self._real.__name__}' has no attribute '{name}' for plugins")
        try:
            return getattr(self._real, name)
        except AttributeError:
            # A fresh error: the interpreter's would carry the real type as .obj.
            raise AttributeError(f"type '{self._real.__name__}' has no attribute '{name}'") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise SandboxPolicyError(f"cannot modify the builtin type '{self._real.__name__}'")

    def __delattr__(self, name: str) -> None:
        raise SandboxPolicyError(f"cannot modify the builtin type '{self._real.__name__}'")

    def __repr__(self) -> str:
        return f"<class '{self._real.__name__}'>"

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle a sandbox type")
