"""Shared fixtures: real stores, real plugin folders written into tmp_path."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from hostrt.store import Store


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
