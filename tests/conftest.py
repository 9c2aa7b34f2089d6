"""Shared fixtures: real stores, real plugin folders written into tmp_path."""

from __future__ import annotations

import copy
import json
import logging
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from hostrt.capabilities import Capability
from hostrt.context import ActivationContext
from hostrt.grants import GrantManager
from hostrt.store import Store


class LogCapture(logging.Handler):
    """Keeps every record logged to the logger it is added to."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def store():
    s = Store(":memory:")
    yield s
    s.close()


def manifest_dict(plugin_id: str, **overrides: Any) -> dict[str, Any]:
    """A valid manifest for a Python plugin, with overrides."""
    data: dict[str, Any] = {
        "schemaVersion": 1,
        "id": plugin_id,
        "name": plugin_id.title(),
        "version": "1.0.0",
        "runtime": "python",
        "capabilities": [],
    }
    data.update(overrides)
    return data


def write_plugin(root: Path, plugin_id: str, source: str, *, folder: str | None = None, **manifest: Any) -> Path:
    """Write ``<root>/<folder>/plugin.json`` and ``plugin.py``."""
    path = root / (folder or plugin_id)
    path.mkdir(parents=True, exist_ok=True)
    (path / "plugin.json").write_text(json.dumps(manifest_dict(plugin_id, **manifest)))
    (path / "plugin.py").write_text(textwrap.dedent(source))
    return path


@pytest.fixture
def plugins_dir(tmp_path: Path) -> Path:
    d = tmp_path / "plugins"
    d.mkdir()
    return d


def finishes(work: Any, timeout: float = 20.0) -> Any:
    """Run ``work`` in a thread; fail (instead of hanging) if it does not
    return in time. Returns its result or re-raises its exception."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


ALL_CAPABILITIES = (Capability("storage"), Capability("settings.read"), Capability("settings.write"))


class RecordingGate(ActivationContext):
    """The real gate over a real SQLite store (``:memory:`` unless one is
    shared), holding every capability, and recording what runtime tests look
    at: log calls, ``dispose_all`` calls, and an optional failure injected
    into ``storage_get`` (and ``storage_get_json``) to stand for a host-side bug."""

    def __init__(self, plugin_id: str = "probe", store: Store | None = None, *, version: str = "1.0.0",
                 secret: str | None = None, previous_state: Any = None) -> None:
        store = store if store is not None else Store(":memory:")
        grants = GrantManager(store, lambda pid: ALL_CAPABILITIES)
        for capability in ALL_CAPABILITIES:
            store.add_grant(plugin_id, str(capability))
        super().__init__(
            plugin_id=plugin_id, plugin_version=version, store=store, grants=grants,
            settings_schema={"type": "object", "properties": {"name": {"type": "string", "default": "world"}}},
            previous_state=previous_state,
        )
        self._secret = secret  # where an escape through ctx would look
        self.logs: list[tuple[str, str, Any]] = []
        self.events: list[str] = []
        self.fail_with: BaseException | None = None

    @property
    def dispose_all_calls(self) -> int:
        return self.events.count("dispose_all")

    @property
    def data(self) -> dict[str, Any]:
        """Everything the plugin stored, read straight from the store."""
        return {key: json.loads(self._store.kv_get(self.plugin_id, key)) for key in self._store.kv_keys(self.plugin_id)}

    def log(self, level: str, message: str, fields: dict[str, Any] | None = None) -> None:
        super().log(level, message, fields)
        self.logs.append((level, message, copy.deepcopy(fields)))

    def storage_get_json(self, key: str, default: Any = None) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        return super().storage_get_json(key, default)

    def dispose_all(self) -> None:
        self.events.append("dispose_all")
        super().dispose_all()


def cyclic_values() -> list[tuple[Any, str]]:
    """Values that contain themselves, each with the JSON path of the first
    repeat: a list, a dict, a cycle through two containers, a nested one."""
    a: list[Any] = []
    a.append(a)
    d: dict[str, Any] = {}
    d["self"] = d
    inner: dict[str, Any] = {}
    outer = {"x": [inner]}
    inner["back"] = outer
    return [(a, "$[0]"), (d, "$.self"), (outer, "$.x[0].back"), ([[[a]]], "$[0][0][0][0]")]


@pytest.fixture
def arena(tmp_path: Path) -> Any:
    """A host with canaries planted, for hostile plugins (tests/adversarial/arena.py)."""
    from adversarial.arena import Arena

    return Arena(tmp_path)
