"""Plugin settings: the manifest's schema, its defaults, and validated writes.

Shared by plugin calls (``ctx.settings.*``, behind ``settings.read`` /
``settings.write``) and by the host acting for the user
(``host.get_settings`` / ``host.set_setting``), so both obey the same rules.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from . import jsonvalue
from .errors import SettingsError
from .keys import KEY_RE, describe_key
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
        self._validator = jsonschema.Draft202012Validator(self.schema)
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
        error = jsonschema.exceptions.best_match(self._validator.iter_errors(document))
        if error is None:
            return None
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        return f"${path}: {error.message}"


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
        text = jsonvalue.encode(value, path=f"$.{key}")
    except jsonvalue.JSONValueError as exc:
        raise SettingsError(f"setting '{key}' of plugin '{plugin_id}' is not JSON: {exc}") from None
    if jsonvalue.size_bytes(text) > MAX_SETTING_BYTES:
        raise SettingsError(f"setting '{key}' of plugin '{plugin_id}' is larger than {MAX_SETTING_BYTES} bytes")

    def check(stored: dict[str, Any]) -> None:
        if jsonvalue.size_bytes(jsonvalue.encode(stored)) > MAX_SETTINGS_BYTES:
            raise SettingsError(f"settings of plugin '{plugin_id}' would exceed {MAX_SETTINGS_BYTES} bytes")
        problem = schema.first_error(schema.merged(stored))
        if problem is not None:
            raise SettingsError(f"invalid value for setting '{key}' of plugin '{plugin_id}': {problem}")

    store.settings_set(plugin_id, key, jsonvalue.decode(text), check=check)
