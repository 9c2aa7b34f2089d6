"""Plugin settings: the manifest's schema, its defaults, and validated writes.

Shared by plugin calls (``ctx.settings.*``, behind ``settings.read`` /
``settings.write``) and by the host acting for the user
(``host.get_settings`` / ``host.set_setting``), so both obey the same rules.
"""

from __future__ import annotations

from typing import Any

from . import jsonvalue
from .errors import SettingsError
from .keys import KEY_RE, describe_key
from .schemas import SchemaEvaluationError, UnsafeSchemaError, compile_schema
from .store import Store

#: Largest single setting value, as compact JSON.
MAX_SETTING_BYTES = 64 * 1024
#: Largest settings document (all of a plugin's stored settings together).
#: Settings sit outside the storage quota, so they need a bound of their own.
MAX_SETTINGS_BYTES = 256 * 1024


class SettingsSchema:
    """A plugin's settings schema with its defaults, compiled once.

    A plugin whose manifest declares no ``settings`` has no settings at all:
    every name is refused, rather than everything being allowed.
    """

    def __init__(self, schema: dict[str, Any] | None) -> None:
        self.declared = schema is not None
        self.schema = schema if schema is not None else {"type": "object", "additionalProperties": False}
        # The manifest already refused unsafe schemas; compiling through the
        # same module keeps evaluation bounded (re2 patterns, no retrieval).
        try:
            self._compiled = compile_schema(self.schema)
        except UnsafeSchemaError as exc:
            raise SettingsError(f"settings schema refused: {exc}") from None
        properties = self.schema.get("properties") or {}
        self.defaults = {
            key: jsonvalue.copy(spec["default"])
            for key, spec in properties.items()
            if isinstance(spec, dict) and "default" in spec
        }
        self._known = set(properties)
        self._open = self.declared and self.schema.get("additionalProperties", True) is not False

    def knows(self, key: str) -> bool:
        return key in self._known or self._open

    def merged(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with stored values (fresh objects)."""
        return {**jsonvalue.copy(self.defaults), **stored}

    def first_error(self, document: dict[str, Any]) -> str | None:
        """The most relevant problem with ``document`` as ``$.path: message``."""
        try:
            return self._compiled.first_error(document)
        except (SchemaEvaluationError, UnsafeSchemaError) as exc:
            raise SettingsError(f"settings schema cannot be evaluated: {exc}") from None


def check_setting_name(plugin_id: str, schema: SettingsSchema, key: Any) -> str:
    """A setting name must be well formed and declared (unless the schema
    allows additional properties)."""
    if type(key) is not str or not KEY_RE.fullmatch(key):
        raise SettingsError(f"invalid setting name {describe_key(key)}")
    if not schema.declared:
        raise SettingsError(f"plugin '{plugin_id}' declares no settings")
    if not schema.knows(key):
        raise SettingsError(f"plugin '{plugin_id}' declares no setting '{key}'")
    return key


def read_settings(store: Store, plugin_id: str, schema: SettingsSchema) -> dict[str, Any]:
    """Defaults merged with what is stored."""
    return schema.merged(store.settings_get_all(plugin_id))


def write_setting(store: Store, plugin_id: str, schema: SettingsSchema, key: Any, value: Any) -> None:
    """Validate one setting against the whole settings schema and store it.

    Validation runs inside the store's write transaction, against the
    document as it will be, so concurrent writers cannot combine into an
    invalid document.
    """
    key = check_setting_name(plugin_id, schema, key)
    try:
        # The value sits one level inside the settings document, which is
        # itself checked (and read back) as one JSON value.
        text = jsonvalue.encode(value, path=f"$.{key}", max_depth=jsonvalue.MAX_DEPTH - 1,
                                max_bytes=MAX_SETTING_BYTES)
    except jsonvalue.JSONValueError as exc:
        raise SettingsError(f"setting '{key}' of plugin '{plugin_id}' refused: {exc}") from None

    def check(stored: dict[str, Any]) -> None:
        if jsonvalue.encoded_size(stored) > MAX_SETTINGS_BYTES:
            raise SettingsError(f"settings of plugin '{plugin_id}' would exceed {MAX_SETTINGS_BYTES} bytes")
        problem = schema.first_error(schema.merged(stored))
        if problem is not None:
            raise SettingsError(f"invalid value for setting '{key}' of plugin '{plugin_id}': {problem}")

    store.settings_set(plugin_id, key, jsonvalue.decode(text), check=check)
