"""Methods the host application exposes to plugins (``ctx.host.call``).

The host registers a function with :meth:`HostMethods.expose`; a plugin
holding ``host.call:<name>`` calls it with JSON parameters. Parameters are
checked (plain JSON, size, the method's JSON Schema) before the function
runs; the result must be JSON within ``result_max_bytes``. What the plugin
sees of a failure is a code and a message: :class:`HostMethodError` passes
its own, anything else becomes a generic ``E_HOST_METHOD`` (the real error
is logged on ``hostrt.hostmethods``), so no host traceback, path or secret
reaches plugin code.

Paged methods (``max_page_size``) take ``limit`` and ``offset`` and answer
``{items, limit, offset, total, nextOffset}``; the host caps ``limit``.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from . import callchain
from .capabilities import is_valid_name
from .errors import HostMethodError, HostrtError, PayloadError
from .payloads import PayloadSpec, schema_refusal

_log = logging.getLogger("hostrt.hostmethods")

DEFAULT_MAX_PARAMS_BYTES = 65536
DEFAULT_RESULT_MAX_BYTES = 1024 * 1024
_MAX_OFFSET = 2**53 - 1


@dataclass(frozen=True)
class PageRequest:
    """The window a paged method is asked for: ``limit`` is already capped
    at the method's ``max_page_size``."""

    offset: int
    limit: int


@dataclass(frozen=True)
class Page:
    """What a paged method returns when it fetched only the window itself
    (a database query with LIMIT/OFFSET): the window's ``items`` and the
    ``total`` number of items. A paged method may instead return the whole
    list, and hostrt cuts the window out of it."""

    items: Sequence[Any]
    total: int


HostFunction = Callable[..., Union[Any, Awaitable[Any]]]


@dataclass(frozen=True)
class HostMethod:
    """One exposed method (see :meth:`HostMethods.expose`)."""

    name: str
    fn: HostFunction
    params: PayloadSpec
    result_max_bytes: int
    page_size: int | None
    max_page_size: int | None
    description: str | None


class HostMethods:
    """The methods one host exposes."""

    def __init__(self) -> None:
        self._methods: dict[str, HostMethod] = {}

    def expose(
        self,
        name: str,
        fn: HostFunction,
        *,
        params_schema: dict[str, Any] | None = None,
        max_params_bytes: int = DEFAULT_MAX_PARAMS_BYTES,
        result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES,
        page_size: int | None = None,
        max_page_size: int | None = None,
        description: str | None = None,
    ) -> HostMethod:
        """Expose ``fn`` (sync or async) as ``name``.

        ``fn(params)`` gets the validated parameters (a fresh copy; ``{}``
        when the plugin passed none) and returns JSON data. With
        ``max_page_size`` the method is paged: ``limit`` (default
        ``page_size`` or ``max_page_size``, capped at ``max_page_size``) and
        ``offset`` are taken out of the parameters and checked by hostrt,
        the rest is checked against ``params_schema``, and
        ``fn(params, page)`` gets a :class:`PageRequest`; it returns the
        whole list (hostrt takes the window) or a :class:`Page`.

        A sync ``fn`` runs on the event loop's thread: keep it short, or
        make it async. Raises HostrtError for a bad name, an invalid schema
        or a name already exposed.
        """
        if not is_valid_name(name):
            raise HostrtError(f"host method name {name!r} is not a valid name (dot-separated parts of "
                              "letters, digits, '_' and '-')")
        if name in self._methods:
            raise HostrtError(f"host method '{name}' is already exposed")
        if not callable(fn):
            raise HostrtError(f"host method '{name}': fn must be callable")
        refusal = schema_refusal(params_schema) if params_schema is not None else None
        if refusal is not None:
            raise HostrtError(f"host method '{name}': invalid params_schema: {refusal}")
        if max_page_size is not None and (type(max_page_size) is not int or max_page_size < 1):
            raise HostrtError(f"host method '{name}': max_page_size must be a positive integer")
        if page_size is not None and (max_page_size is None or type(page_size) is not int
                                      or not 1 <= page_size <= max_page_size):
            raise HostrtError(f"host method '{name}': page_size needs max_page_size and must lie in 1..max_page_size")
        for what, value in (("max_params_bytes", max_params_bytes), ("result_max_bytes", result_max_bytes)):
            if type(value) is not int or value < 1:
                raise HostrtError(f"host method '{name}': {what} must be a positive integer")
        method = HostMethod(
            name=name,
            fn=fn,
            params=PayloadSpec(f"parameters of host method '{name}'", params_schema, max_params_bytes),
            result_max_bytes=result_max_bytes,
            page_size=page_size,
            max_page_size=max_page_size,
            description=description,
        )
        self._methods[name] = method
        return method

    def withdraw(self, name: str) -> bool:
        """Stop exposing ``name``; True if it was exposed."""
        return self._methods.pop(name, None) is not None

    def get(self, name: str) -> HostMethod | None:
        return self._methods.get(name)

    def names(self) -> list[str]:
        return sorted(self._methods)

    async def call(self, caller: str, name: str, params: Any, *, plain: bool = False) -> str:
        """Run method ``name`` for plugin ``caller`` (already authorised)
        and return its result as compact JSON text.

        Raises HostMethodError (unknown method, the function failed),
        PayloadError (parameters or result refused) -- both safe to show to
        the plugin."""
        method = self._methods.get(name)
        if method is None:
            raise HostMethodError(f"the host has no method named '{name}'", code="E_NO_METHOD")
        if params is None:
            params = {}
        page: PageRequest | None = None
        if method.max_page_size is not None:
            params, page = _page_request(method, caller, params, plain)
        _, params = method.params.check(params, caller, plain=plain)
        with callchain.entering(caller):
            try:
                result = method.fn(params, page) if page is not None else method.fn(params)
                if inspect.isawaitable(result):
                    result = await result
            except HostMethodError:
                raise
            except Exception:  # a PayloadError of host code inside fn (its own emit) included
                _log.exception("host method '%s' failed (called by plugin '%s')", name, caller)
                raise HostMethodError(f"host method '{name}' failed") from None
        if page is not None:
            result = _page_result(method, result, page)
        return _result_text(method, result)


def _page_request(method: HostMethod, caller: str, params: Any, plain: bool) -> tuple[Any, PageRequest]:
    """Take ``limit`` and ``offset`` out of a paged method's parameters."""
    subject = method.params.subject
    if type(params) is not dict:
        raise PayloadError(subject, caller, "$", "a paged method takes an object of parameters")
    params = dict(params)
    assert method.max_page_size is not None
    limit = params.pop("limit", method.page_size or method.max_page_size)
    offset = params.pop("offset", 0)
    if type(limit) is not int or limit < 1:
        raise PayloadError(subject, caller, "$.limit", "must be a positive integer")
    if type(offset) is not int or not 0 <= offset <= _MAX_OFFSET:
        raise PayloadError(subject, caller, "$.offset", "must be an integer from 0")
    return params, PageRequest(offset=offset, limit=min(limit, method.max_page_size))


def _page_result(method: HostMethod, result: Any, page: PageRequest) -> dict[str, Any]:
    if isinstance(result, Page):
        items, total = list(result.items), result.total
        if len(items) > page.limit:
            _log.warning("host method '%s' returned %d items for a page of %d; the rest were cut",
                         method.name, len(items), page.limit)
            items = items[:page.limit]
    elif isinstance(result, (list, tuple)):
        total = len(result)
        items = list(result[page.offset:page.offset + page.limit])
    else:
        _log.error("paged host method '%s' returned %s, not a list or Page", method.name, type(result).__name__)
        raise HostMethodError(f"host method '{method.name}' failed")
    if type(total) is not int or total < 0:
        _log.error("paged host method '%s' returned a bad total %r", method.name, total)
        raise HostMethodError(f"host method '{method.name}' failed")
    end = page.offset + len(items)
    return {
        "items": items,
        "limit": page.limit,
        "offset": page.offset,
        "total": total,
        "nextOffset": end if end < total else None,
    }


def _result_text(method: HostMethod, result: Any) -> str:
    try:
        text = json.dumps(result, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        _log.error("host method '%s' returned a value that is not JSON: %s", method.name, exc)
        raise HostMethodError(f"host method '{method.name}' returned a value that is not JSON") from None
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > method.result_max_bytes:
        _log.warning("host method '%s' returned %d bytes, over its limit of %d", method.name, size,
                     method.result_max_bytes)
        raise PayloadError(f"result of host method '{method.name}'", "host", "$",
                           f"{size} bytes of JSON; the limit is {method.result_max_bytes}")
    return text


__all__ = ["HostMethod", "HostMethods", "Page", "PageRequest"]
