"""Checking values that cross between plugins and the host.

Event payloads, command parameters and results, and host method parameters
all pass the same check before anyone else sees them: plain JSON, at most
``max_bytes`` UTF-8 bytes of compact JSON, valid against the declared JSON
Schema. :class:`PayloadSpec` is that check for one declaration, compiled
once; a failure is a :class:`~hostrt.errors.PayloadError` naming what was
checked, who sent it and the JSON path of the problem.

Schemas come from plugin manifests and so were already vetted by
:func:`hostrt.schemas.schema_problems`. The hot path runs the compiled
fast validator of :mod:`hostrt.fastschema` when the schema only uses the
keywords it supports; the metered ``jsonschema`` evaluation of
:mod:`hostrt.schemas` remains the authority for everything else and
produces the detailed error of an invalid value.
"""

from __future__ import annotations

import json
from typing import Any

from . import jsonvalue
from .errors import PayloadError
from .fastschema import FallbackRequired, compile_fast
from .schemas import CompiledSchema, SchemaEvaluationError, compile_schema, schema_problems


def schema_refusal(schema: Any) -> str | None:
    """For a schema the host passes in code (an event, a host method's
    parameters): None if it may be used, else its first problems, each with
    its JSON path, as one line."""
    problems = schema_problems(schema)
    if not problems:
        return None
    return "; ".join(f"{path}: {message}" for path, message in problems[:5])


class PayloadSpec:
    """The check for one declared kind of value (see the module docstring).

    ``schema`` of None or ``{}`` accepts any JSON value; ``subject`` names
    the kind in errors, e.g. ``"event 'greeting.sent'"``.
    """

    __slots__ = ("subject", "schema", "max_bytes", "_compiled", "_fast", "_any")

    def __init__(self, subject: str, schema: dict[str, Any] | bool | None, max_bytes: int) -> None:
        self.subject = subject
        self.schema = schema
        self.max_bytes = max_bytes
        self._any = schema is None or schema is True or schema == {}
        self._compiled: CompiledSchema | None = None if self._any else compile_schema(schema)
        self._fast = None if self._any else compile_fast(schema)

    def check(self, value: Any, source: str, *, plain: bool = False) -> tuple[str, Any]:
        """Check ``value`` sent by ``source`` (a plugin id or ``"host"``) and
        return ``(compact JSON text, a fresh copy of the value)``.

        ``plain=True`` says the value is known to be plain JSON data (parsed
        from JSON text, or the host's own data): it is then serialised by
        ``json`` in C instead of walked type by type, as plugin objects are.
        """
        if plain:
            try:
                text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                raise self._error(source, "$", f"not plain JSON ({exc})") from None
            try:
                size = len(text) if text.isascii() else len(text.encode("utf-8"))
            except UnicodeEncodeError:
                raise self._error(source, "$", "a string holds a lone surrogate (not Unicode text)") from None
            if size > self.max_bytes:
                raise self._too_large(source, size)
            if text.count("[") + text.count("{") > jsonvalue.MAX_DEPTH:
                # Only a value with that many brackets can be too deep: walk
                # it then (the same depth rule as every other plugin value).
                try:
                    jsonvalue.check(json.loads(text))
                except jsonvalue.JSONValueError as exc:
                    raise self._error(source, jsonvalue.format_path("$", exc.loc), exc.reason) from None
        else:
            try:
                text = jsonvalue.encode(value, max_bytes=self.max_bytes)
            except jsonvalue.JSONTooLargeError:
                raise self._too_large(source, None) from None
            except jsonvalue.JSONValueError as exc:
                raise self._error(source, jsonvalue.format_path("$", exc.loc), exc.reason) from None
        copy = json.loads(text)
        if not self._any:
            self._validate(copy, source)
        return text, copy

    def _validate(self, value: Any, source: str) -> None:
        fast = self._fast
        if fast is not None:
            try:
                if fast.is_valid(value):
                    return
            except FallbackRequired:
                pass  # more work than the fast path takes on: the metered path decides
        compiled = self._compiled
        assert compiled is not None
        try:
            problem = compiled.first_problem(value)
        except SchemaEvaluationError as exc:
            raise self._error(source, "$", str(exc)) from None
        if problem is not None:
            raise self._error(source, jsonvalue.format_path("$", problem[0]), problem[1])

    def _too_large(self, source: str, size: int | None) -> PayloadError:
        what = f"{size} bytes" if size is not None else "larger than that"
        return self._error(source, "$", f"the limit is {self.max_bytes} bytes of JSON; this value is {what}")

    def _error(self, source: str, path: str, reason: str) -> PayloadError:
        return PayloadError(self.subject, source, path, reason)
