"""Tests for hostrt.store: real SQLite databases (in memory and in tmp_path
files), real threads and real processes; no mocks."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hostrt.store as store_module
from hostrt.errors import (
    QuotaExceededError,
    SettingsError,
    StorageError,
    StoreError,
)
from hostrt.store import MIGRATIONS, SCHEMA_VERSION, AuditEntry, Store

ROOT = Path(__file__).resolve().parents[1]
BIG = 10**9  # a quota that never bites


def _env() -> dict[str, str]:
    """Environment for child interpreters: make the checkout importable even
    when hostrt is not installed into the interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


def _run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
        check=False,
    )


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    path = ":memory:" if request.param == "memory" else tmp_path / "store.db"
    with Store(path) as s:
        yield s


def _snapshot(s: Store, plugin_id: str) -> dict[str, Any]:
    """Everything the store holds for one plugin."""
    keys = s.kv_keys(plugin_id)
    return {
        "kv": {k: s.kv_get(plugin_id, k) for k in keys},
        "usage": s.kv_usage(plugin_id),
        "settings": s.settings_get_all(plugin_id),
        "grants": s.list_grants(plugin_id),
        "audit": [
            (e.id, e.action, e.detail) for e in s.audit_log(plugin_id=plugin_id, limit=10**6)
        ],
    }


# --------------------------------------------------------------- round trips


def test_grants_round_trip_with_audit(store: Store) -> None:
    assert store.list_grants("p") == []
    assert not store.has_grant("p", "storage")

    assert store.add_grant("p", "storage") is True
    assert store.add_grant("p", "events.publish:greeting.*", actor="user:jane") is True
    assert store.add_grant("p", "storage") is False  # already there: no change
    assert store.list_grants("p") == ["events.publish:greeting.*", "storage"]
    assert store.has_grant("p", "storage")
    assert not store.has_grant("p", "events.publish:greeting.sent")  # exact lookup only
    assert store.list_grants("q") == []

    assert store.remove_grant("p", "storage", actor="user:jane") is True
    assert store.remove_grant("p", "storage") is False
    assert store.list_grants("p") == ["events.publish:greeting.*"]
    assert not store.has_grant("p", "storage")

    log = store.audit_log(plugin_id="p")
    assert [(e.action, e.detail) for e in log] == [
        ("revoke", {"capability": "storage", "actor": "user:jane"}),
        ("grant", {"capability": "events.publish:greeting.*", "actor": "user:jane"}),
        ("grant", {"capability": "storage", "actor": "host"}),
    ]
    assert store.audit_count(action="grant") == 2
    assert store.audit_count(action="revoke") == 1


def test_disabled_flag_round_trip(store: Store) -> None:
    assert store.disabled_plugins() == []
    assert not store.is_disabled("p")
    assert store.set_disabled("p", True, actor="user") is True
    assert store.set_disabled("p", True) is False  # already disabled
    assert store.set_disabled("a", True) is True
    assert store.disabled_plugins() == ["a", "p"]
    assert store.is_disabled("p") and not store.is_disabled("q")
    assert store.set_disabled("p", False) is True
    assert store.set_disabled("p", False) is False
    assert store.disabled_plugins() == ["a"]
    assert [(e.action, e.detail) for e in store.audit_log(plugin_id="p")] == [
        ("enable", {"actor": "host"}),
        ("disable", {"actor": "user"}),
    ]


def test_settings_round_trip(store: Store) -> None:
    assert store.settings_get_all("p") == {}
    values = {
        "name": "wörld ✓",
        "count": 3,
        "ratio": 0.5,
        "on": True,
        "nothing": None,
        "list": [1, "two", {"three": 3}],
        "nested": {"a": {"b": []}},
    }
    for key, value in values.items():
        store.settings_set("p", key, value)
    assert store.settings_get_all("p") == values
    assert store.settings_get_all("q") == {}

    store.settings_set("p", "count", 4)
    assert store.settings_get_all("p")["count"] == 4

    assert store.settings_delete("p", "count") is True
    assert store.settings_delete("p", "count") is False
    assert "count" not in store.settings_get_all("p")

    assert store.settings_clear("p") == len(values) - 1
    assert store.settings_get_all("p") == {}
    (entry,) = store.audit_log(action="settings.clear")
    assert entry.plugin_id == "p"
    assert entry.detail == {"keys": len(values) - 1, "actor": "host"}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object(), {1j: 2}])
def test_settings_set_rejects_non_json(store: Store, bad: Any) -> None:
    store.settings_set("p", "k", "before")
    with pytest.raises(SettingsError):
        store.settings_set("p", "k", bad)
    assert store.settings_get_all("p") == {"k": "before"}


def test_settings_are_stored_compact_and_unescaped(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as s:
        s.settings_set("p", "k", {"a": [1, 2], "é": "✓"})
    raw = sqlite3.connect(path)
    try:
        (text,) = raw.execute("SELECT value_json FROM settings").fetchone()
    finally:
        raw.close()
    assert text == '{"a":[1,2],"é":"✓"}'


def test_kv_round_trip(store: Store) -> None:
    assert store.kv_get("p", "a") is None
    assert store.kv_keys("p") == []
    assert store.kv_usage("p") == 0

    store.kv_set("p", "b", '{"x":1}', quota_bytes=BIG)
    store.kv_set("p", "a", "[1,2,3]", quota_bytes=BIG)
    store.kv_set("p", "a.child", '"é"', quota_bytes=BIG)
    assert store.kv_get("p", "a") == "[1,2,3]"
    assert store.kv_get("p", "a.child") == '"é"'
    assert store.kv_keys("p") == ["a", "a.child", "b"]
    assert store.kv_keys("p", "a") == ["a", "a.child"]
    assert store.kv_keys("p", "a.") == ["a.child"]
    assert store.kv_keys("p", "zzz") == []
    assert store.kv_keys("p", limit=2) == ["a", "a.child"]
    assert store.kv_keys("p", limit=0) == []
    # usage = UTF-8 bytes of key + value; "é" is two bytes
    assert store.kv_usage("p") == (1 + 7) + (1 + 7) + (7 + 4)

    store.kv_set("p", "a", "1", quota_bytes=BIG)  # replace
    assert store.kv_get("p", "a") == "1"
    assert store.kv_usage("p") == (1 + 7) + (1 + 1) + (7 + 4)

    assert store.kv_delete("p", "a") is True
    assert store.kv_delete("p", "a") is False
    assert store.kv_get("p", "a") is None
    assert store.kv_keys("p") == ["a.child", "b"]

    assert store.kv_clear("p") == 2
    assert store.kv_keys("p") == []
    assert store.kv_usage("p") == 0
    (entry,) = store.audit_log(action="storage.clear")
    assert entry.plugin_id == "p"
    assert entry.detail == {"keys": 2, "bytes": (1 + 7) + (7 + 4), "actor": "host"}


def test_kv_argument_checks(store: Store) -> None:
    with pytest.raises(TypeError):
        store.kv_set("p", "k", {"not": "text"}, quota_bytes=BIG)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.kv_set("p", "k", "1", quota_bytes=-1)
    with pytest.raises(ValueError):
        store.kv_keys("p", limit=-1)
    with pytest.raises(StorageError):
        store.kv_set("p", "bad\ud800", "1", quota_bytes=BIG)  # lone surrogate
    assert store.kv_keys("p") == []


def test_audit_round_trip(store: Store) -> None:
    assert store.audit_log() == []
    assert store.audit_count() == 0
    before = time.time()
    store.audit(None, "host.start")
    store.audit("p", "custom", {"n": 1, "path": Path("/x")})
    store.audit("q", "custom", {"n": 2})
    store.audit("p", "other", {})
    after = time.time()

    log = store.audit_log()
    assert [e.action for e in log] == ["other", "custom", "custom", "host.start"]
    assert [e.id for e in log] == sorted((e.id for e in log), reverse=True)
    assert all(before <= e.ts <= after for e in log)
    assert log[-1].plugin_id is None and log[-1].detail == {}
    # a value JSON cannot represent is kept as its str(), not dropped
    assert log[2].detail == {"n": 1, "path": str(Path("/x"))}

    assert [e.detail["n"] for e in store.audit_log(action="custom")] == [2, 1]
    assert [e.action for e in store.audit_log(plugin_id="p")] == ["other", "custom"]
    assert [e.detail for e in store.audit_log(plugin_id="p", action="custom")] == [
        {"n": 1, "path": str(Path("/x"))}
    ]
    assert len(store.audit_log(limit=2)) == 2
    assert store.audit_log(limit=2)[0].action == "other"
    assert store.audit_log(limit=0) == []
    assert store.audit_count() == 4
    assert store.audit_count(plugin_id="p") == 2
    assert store.audit_count(action="custom") == 2
    assert store.audit_count(plugin_id="q", action="custom") == 1
    assert store.audit_count(plugin_id="nobody") == 0

    entry = log[0]
    assert isinstance(entry, AuditEntry)
    with pytest.raises(FrozenInstanceError):
        entry.action = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        store.audit("p", "bad", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.audit_log(limit=-1)


# ------------------------------------------------------------ life and files


def test_close_is_idempotent_and_context_manager_closes(tmp_path: Path) -> None:
    s = Store(tmp_path / "c.db")
    assert not s.closed
    s.close()
    s.close()
    assert s.closed
    with pytest.raises(StoreError, match="closed"):
        s.kv_get("p", "k")
    with Store(tmp_path / "c.db") as s2:
        assert s2.kv_get("p", "k") is None
    assert s2.closed


def _fill(s: Store) -> None:
    s.set_disabled("p", True)
    s.add_grant("p", "storage", actor="user")
    s.add_grant("p", "settings.read")
    s.settings_set("p", "name", "world")
    s.settings_set("p", "n", [1, 2])
    s.kv_set("p", "a", '{"deep":[1,{"x":"ü"}]}', quota_bytes=BIG)
    s.kv_set("p", "b", "2", quota_bytes=BIG)
    s.audit("p", "note", {"why": "restart test"})


_EXPECTED = {
    "grants": ["settings.read", "storage"],
    "settings": {"n": [1, 2], "name": "world"},
    "kv": {"a": '{"deep":[1,{"x":"ü"}]}', "b": "2"},
    "disabled": ["p"],
    "usage": len("a") + len('{"deep":[1,{"x":"ü"}]}'.encode()) + len("b") + len("2"),
    "audit": [
        ("note", {"why": "restart test"}),
        ("grant", {"capability": "settings.read", "actor": "host"}),
        ("grant", {"capability": "storage", "actor": "user"}),
        ("disable", {"actor": "host"}),
    ],
}


def _dump(s: Store) -> dict[str, Any]:
    return {
        "grants": s.list_grants("p"),
        "settings": s.settings_get_all("p"),
        "kv": {k: s.kv_get("p", k) for k in s.kv_keys("p")},
        "usage": s.kv_usage("p"),
        "disabled": s.disabled_plugins(),
        "audit": [(e.action, e.detail) for e in s.audit_log(plugin_id="p")],
    }


def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with Store(path) as s:
        _fill(s)
        assert _dump(s) == _EXPECTED
    with Store(str(path)) as s:
        assert _dump(s) == _EXPECTED


@pytest.mark.slow
def test_restart_across_real_processes(tmp_path: Path) -> None:
    path = tmp_path / "proc.db"
    writer = _run_python(
        """
        import sys
        from hostrt.store import Store
        sys.path.insert(0, sys.argv[2])
        from test_store import _fill
        with Store(sys.argv[1]) as s:
            _fill(s)
        """,
        str(path),
        str(Path(__file__).parent),
    )
    assert writer.returncode == 0, writer.stderr
    reader = _run_python(
        """
        import json, sys
        from hostrt.store import Store
        sys.path.insert(0, sys.argv[2])
        from test_store import _dump
        with Store(sys.argv[1]) as s:
            print(json.dumps(_dump(s)))
        """,
        str(path),
        str(Path(__file__).parent),
    )
    assert reader.returncode == 0, reader.stderr
    got = json.loads(reader.stdout)
    got["audit"] = [tuple(x) for x in got["audit"]]
    assert got == _EXPECTED


def test_file_database_uses_wal_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    with Store(path, busy_timeout_ms=1234) as s:
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
        assert conn.isolation_level is None
    # WAL is a property of the file: a fresh, unrelated connection sees it.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def _versions(path: Path) -> list[tuple[int, float]]:
    raw = sqlite3.connect(path)
    try:
        return raw.execute(
            "SELECT version, applied_at FROM schema_version ORDER BY version"
        ).fetchall()
    finally:
        raw.close()


def test_schema_version_recorded_and_migrations_not_rerun(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    with Store(path):
        pass
    first = _versions(path)
    assert [v for v, _ in first] == list(range(1, SCHEMA_VERSION + 1))
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1
    # Migration 1 uses plain CREATE TABLE: re-running it would fail, so a
    # clean reopen plus unchanged applied_at stamps shows it did not run.
    for _ in range(3):
        with Store(path) as s:
            s.kv_set("p", "k", "1", quota_bytes=BIG)
    assert _versions(path) == first


def test_pending_migration_applied_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.db"
    with Store(path) as s:
        s.kv_set("p", "k", "1", quota_bytes=BIG)

    calls: list[int] = []

    def add_table(conn: sqlite3.Connection) -> None:
        calls.append(1)
        conn.execute("CREATE TABLE extra (x INTEGER)")

    fill_table = "INSERT INTO extra VALUES (7); INSERT INTO extra VALUES (8);"
    monkeypatch.setattr(store_module, "MIGRATIONS", [*MIGRATIONS, add_table, fill_table])
    with Store(path) as s:
        assert s.kv_get("p", "k") == "1"  # old data kept
    with Store(path):
        pass
    assert calls == [1]
    assert [v for v, _ in _versions(path)] == list(range(1, SCHEMA_VERSION + 3))
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT x FROM extra ORDER BY x").fetchall() == [(7,), (8,)]
    finally:
        raw.close()


def test_failed_migration_is_rolled_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.db"
    with Store(path):
        pass
    monkeypatch.setattr(
        store_module,
        "MIGRATIONS",
        [*MIGRATIONS, "CREATE TABLE half (x); INSERT INTO no_such_table VALUES (1);"],
    )
    with pytest.raises(StoreError) as info:
        Store(path)
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert [v for v, _ in _versions(path)] == list(range(1, SCHEMA_VERSION + 1))
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    finally:
        raw.close()


def test_future_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with Store(path):
        pass
    future = SCHEMA_VERSION + 41
    raw = sqlite3.connect(path)
    try:
        with raw:
            raw.execute("INSERT INTO schema_version VALUES (?, 0)", (future,))
    finally:
        raw.close()
    with pytest.raises(StoreError) as info:
        Store(path)
    message = str(info.value)
    assert str(future) in message and str(SCHEMA_VERSION) in message
    assert "newer" in message
    assert info.value.code == "E_STORE"
    assert max(v for v, _ in _versions(path)) == future  # untouched


def test_open_errors_are_store_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        Store(tmp_path / "no" / "such" / "dir.db")
    assert isinstance(info.value.__cause__, sqlite3.Error)

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a sqlite database\n" * 200)
    with pytest.raises(StoreError) as info:
        Store(junk)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


def test_sqlite_errors_from_methods_are_wrapped(store: Store) -> None:
    with pytest.raises(StoreError) as info:
        store.kv_get("p", ["unbindable"])  # type: ignore[arg-type]
    assert isinstance(info.value.__cause__, sqlite3.Error)


# --------------------------------------------------------------------- quota


def test_quota_exact_boundary(store: Store) -> None:
    # "k" + '"abc"' = 1 + 5 = 6 bytes
    store.kv_set("p", "k", '"abc"', quota_bytes=6)
    assert store.kv_usage("p") == 6
    with pytest.raises(QuotaExceededError) as info:
        store.kv_set("p", "k2", "1", quota_bytes=8)  # would be 6 + 3 = 9
    store.kv_set("p", "k2", "1", quota_bytes=9)  # lands exactly on the quota
    assert store.kv_usage("p") == 9
    assert info.value.code == "E_QUOTA"
    assert isinstance(info.value, StorageError)
    message = str(info.value)
    assert "storage quota exceeded for plugin 'p'" in message
    assert "write needs 3 bytes" in message
    assert "quota is 8 bytes" in message
    assert "6 in use" in message


def test_quota_counts_utf8_bytes(store: Store) -> None:
    value = json.dumps("€é", ensure_ascii=False)  # '"€é"' = 1 + 3 + 2 + 1 = 7 bytes
    key = "ключ"  # 8 bytes
    store.kv_set("p", key, value, quota_bytes=15)
    assert store.kv_usage("p") == 15
    with pytest.raises(QuotaExceededError):
        store.kv_set("p", key, value, quota_bytes=14)


def test_quota_replacement_counts_the_difference(store: Store) -> None:
    store.kv_set("p", "a", '"1234567890"', quota_bytes=BIG)  # 1 + 12 = 13
    store.kv_set("p", "b", '"xy"', quota_bytes=BIG)  # 1 + 4 = 5
    assert store.kv_usage("p") == 18
    # growing "a" by 5 bytes needs 23 in total: not 18 + 18
    store.kv_set("p", "a", '"123456789012345"', quota_bytes=23)
    assert store.kv_usage("p") == 23
    # shrinking fits a quota that the old total would not
    store.kv_set("p", "a", "1", quota_bytes=7)
    assert store.kv_usage("p") == 7
    # one byte over, replacing the same key, fails and keeps the old value
    with pytest.raises(QuotaExceededError) as info:
        store.kv_set("p", "a", "12", quota_bytes=7)
    assert "write needs 3 bytes" in str(info.value)
    assert "5 in use" in str(info.value)
    assert store.kv_get("p", "a") == "1"
    assert store.kv_usage("p") == 7


def test_quota_failure_leaves_data_unchanged(store: Store) -> None:
    store.kv_set("p", "keep", '{"v":1}', quota_bytes=100)
    store.kv_set("other", "big", '"' + "x" * 500 + '"', quota_bytes=BIG)
    before = _snapshot(store, "p"), _snapshot(store, "other")
    with pytest.raises(QuotaExceededError):
        store.kv_set("p", "keep", '"' + "y" * 200 + '"', quota_bytes=100)
    with pytest.raises(QuotaExceededError):
        store.kv_set("p", "new", '"' + "y" * 200 + '"', quota_bytes=100)
    assert (_snapshot(store, "p"), _snapshot(store, "other")) == before
    # other plugins' usage does not count against this one
    store.kv_set("p", "new", '"' + "y" * 80 + '"', quota_bytes=100)


# ----------------------------------------------------------------- isolation

WEIRD_KEYS = [
    "../other/x",
    "other",
    "other/x",
    "x",
    "%",
    "_",
    "a%",
    "a_",
    "%%",
    "*",
    "' OR '1'='1",
    "x'); DELETE FROM kv; --",
    "",
    " ",
    "\x00",
    "a\x00b",
    "\U0010ffff",
    "k\u00e9",
    "A",
]


def test_weird_keys_never_reach_another_plugin(store: Store) -> None:
    theirs = {"x": "1", "ab": "2", "a%b": "3", "secret": '"s"', "%": "4", "A": "5"}
    for key, value in theirs.items():
        store.kv_set("other", key, value, quota_bytes=BIG)
    store.settings_set("other", "x", "theirs")
    store.settings_set("other", "%", "theirs too")
    store.add_grant("other", "storage")
    before = _snapshot(store, "other")

    for i, key in enumerate(WEIRD_KEYS):
        assert store.kv_get("mine", key) is None
        store.kv_set("mine", key, str(i), quota_bytes=BIG)
        assert store.kv_get("mine", key) == str(i)
        store.settings_set("mine", key, i)
        store.add_grant("mine", key)
    assert store.kv_keys("mine") == sorted(WEIRD_KEYS)
    assert store.settings_get_all("mine") == {k: i for i, k in enumerate(WEIRD_KEYS)}
    assert store.list_grants("mine") == sorted(WEIRD_KEYS)
    assert _snapshot(store, "other") == before

    for prefix in ["%", "_", "a%", "a_", "%%", "", "o", "../", "other", "x", "'", "\x00", "a", "A"]:
        got = store.kv_keys("mine", prefix)
        assert got == sorted(k for k in WEIRD_KEYS if k.startswith(prefix)), prefix
    # literal, case-sensitive prefixes: no LIKE semantics
    assert store.kv_keys("mine", "%") == ["%", "%%"]
    assert store.kv_keys("mine", "_") == ["_"]
    assert store.kv_keys("mine", "a") == ["a\x00b", "a%", "a_"]  # by code point
    assert store.kv_keys("mine", "A") == ["A"]

    for key in WEIRD_KEYS:
        assert store.kv_delete("mine", key) is True
        assert store.settings_delete("mine", key) is True
        assert store.remove_grant("mine", key) is True
    assert store.kv_keys("mine") == []
    assert store.kv_clear("mine") == 0
    assert store.settings_clear("mine") == 0
    assert _snapshot(store, "other") == before


@pytest.mark.parametrize("plugin_id", ["%", "_", "o%", "other%", "oth_r", "", "*", "' OR 1=1 --"])
def test_wildcard_like_plugin_ids_are_literal(store: Store, plugin_id: str) -> None:
    store.kv_set("other", "x", "1", quota_bytes=BIG)
    store.settings_set("other", "x", 1)
    store.add_grant("other", "storage")
    before = _snapshot(store, "other")

    assert store.kv_get(plugin_id, "x") is None
    assert store.kv_keys(plugin_id) == []
    assert store.kv_usage(plugin_id) == 0
    assert store.settings_get_all(plugin_id) == {}
    assert store.list_grants(plugin_id) == []
    assert not store.has_grant(plugin_id, "storage")
    assert store.kv_delete(plugin_id, "x") is False
    assert store.settings_delete(plugin_id, "x") is False
    assert store.remove_grant(plugin_id, "storage") is False
    store.kv_set(plugin_id, "x", "2", quota_bytes=3)  # "x" + "2" = 2 bytes of 3
    assert store.kv_clear(plugin_id) == 1
    assert store.settings_clear(plugin_id) == 0
    assert _snapshot(store, "other") == before


_KEY_CHARS = st.sampled_from(
    # includes the code points either side of the surrogate block and the
    # highest one, where the prefix upper bound has to skip or give up
    ["a", "b", "A", "%", "_", "\x00", "é", "\ud7ff", "\ue000", "\uffff", "\U00010000",
     "\U0010ffff"]
)


@settings(max_examples=150, deadline=None, database=None)
@given(
    keys=st.sets(st.text(_KEY_CHARS, max_size=4), max_size=12),
    prefix=st.text(_KEY_CHARS, max_size=3),
)
def test_prefix_query_matches_startswith(keys: set[str], prefix: str) -> None:
    with Store() as s:
        for key in keys:
            s.kv_set("p", key, "0", quota_bytes=BIG)
            s.kv_set("q", prefix + key, "0", quota_bytes=BIG)
        assert s.kv_keys("p", prefix) == sorted(k for k in keys if k.startswith(prefix))
        assert s.kv_keys("p") == sorted(keys)


# ---------------------------------------------------------------- concurrency


def test_threads_share_one_store(tmp_path: Path) -> None:
    threads_n, per_thread = 8, 60
    entry = len("t0-000") + len('"x"')  # 9 bytes per shared entry
    shared_capacity = 200  # fewer than the 8 * 60 attempts
    errors: list[BaseException] = []
    accepted = [0] * threads_n
    start = threading.Barrier(threads_n)

    with Store(tmp_path / "threads.db") as s:

        def work(n: int) -> None:
            try:
                start.wait()
                name = f"t{n}"
                for i in range(per_thread):
                    s.kv_set(name, f"k{i:03d}", json.dumps([n, i]), quota_bytes=BIG)
                    assert s.kv_get(name, f"k{i:03d}") == json.dumps([n, i])
                    try:
                        s.kv_set("shared", f"{name}-{i:03d}", '"x"',
                                 quota_bytes=entry * shared_capacity)
                        accepted[n] += 1
                    except QuotaExceededError:
                        pass
                    if i % 5 == 0:
                        assert s.add_grant(name, f"cap{i:03d}")
                    s.audit(name, "tick", {"i": i})
                    s.has_grant(name, "cap000")
                    s.audit_log(plugin_id=name, limit=3)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert errors == []

        for n in range(threads_n):
            name = f"t{n}"
            assert s.kv_keys(name) == [f"k{i:03d}" for i in range(per_thread)]
            assert s.list_grants(name) == [f"cap{i:03d}" for i in range(0, per_thread, 5)]
            assert s.audit_count(plugin_id=name, action="tick") == per_thread
            assert s.audit_count(plugin_id=name, action="grant") == per_thread // 5
        assert sum(accepted) == shared_capacity
        assert len(s.kv_keys("shared")) == shared_capacity
        assert s.kv_usage("shared") == entry * shared_capacity
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


_WORKER = """
import json, sys, time
from pathlib import Path
from hostrt.store import Store
from hostrt.errors import QuotaExceededError

db, name, ready, go = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
quota = int(sys.argv[5])
ready.touch()
deadline = time.monotonic() + 30
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("never got the go signal")
    time.sleep(0.001)

accepted = 0
# Opened only after the go signal: both processes race to create and
# migrate the same fresh file.
with Store(db) as s:
    for i in range(300):
        s.kv_set(name, f"k{i:04d}", json.dumps({"i": i, "by": name}), quota_bytes=10**9)
        try:
            s.kv_set("shared", f"{name}-{i:04d}", '"x"', quota_bytes=quota)
            accepted += 1
        except QuotaExceededError:
            pass
        if i % 6 == 0:
            assert s.add_grant(name, f"cap.{i:04d}", actor=name)
        s.audit(name, "tick", {"i": i})
        # A short pause between rounds, as real callers have. Without it the
        # process holding the lock re-takes it at once while the other sleeps
        # in SQLite's busy handler, and the two run one after the other
        # instead of interleaving.
        time.sleep(0.0005)
print(json.dumps({"accepted": accepted}))
"""


@pytest.mark.slow
def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"  # deliberately not created beforehand
    go = tmp_path / "go"
    entry = len("w0-0000") + len('"x"')  # 10 bytes per shared entry
    capacity = 400  # fewer than the 2 * 300 attempts
    names = ["w0", "w1"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(db), name, str(tmp_path / f"ready-{name}"),
             str(go), str(entry * capacity)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for name in names
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready-{n}").exists() for n in names):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.005)
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert err == ""
    accepted = [json.loads(out)["accepted"] for out, _ in outputs]

    with Store(db) as s:
        conn = s._conn
        assert conn is not None
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for name in names:
            keys = s.kv_keys(name)
            assert keys == [f"k{i:04d}" for i in range(300)]
            for i in (0, 123, 299):
                assert json.loads(s.kv_get(name, f"k{i:04d}") or "null") == {"i": i, "by": name}
            assert s.list_grants(name) == [f"cap.{i:04d}" for i in range(0, 300, 6)]
            assert s.audit_count(plugin_id=name, action="tick") == 300
            assert s.audit_count(plugin_id=name, action="grant") == 50
            grants_log = s.audit_log(plugin_id=name, action="grant")
            assert {e.detail["actor"] for e in grants_log} == {name}
        assert s.audit_count() == 2 * (300 + 50)
        # the quota check and the write share one transaction: the two
        # processes together filled the shared quota exactly, never beyond
        assert sum(accepted) == capacity
        assert len(s.kv_keys("shared")) == capacity
        assert s.kv_usage("shared") == entry * capacity
        # the writes really did interleave (typically hundreds of hand-overs)
        owners = [e.plugin_id for e in reversed(s.audit_log(limit=10**6))]
        hand_overs = sum(1 for a, b in zip(owners, owners[1:]) if a != b)
        assert hand_overs >= 10, hand_overs
    assert [v for v, _ in _versions(db)] == list(range(1, SCHEMA_VERSION + 1))


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("BEGIN IMMEDIATE")
    return raw


def test_busy_database_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    with Store(path, busy_timeout_ms=100) as s:
        raw = _hold_write_lock(path)
        releaser = threading.Timer(0.3, lambda: raw.execute("COMMIT"))
        releaser.start()
        try:
            s.kv_set("p", "k", "1", quota_bytes=BIG)  # waits out the lock
        finally:
            releaser.join()
            raw.close()
        assert s.kv_get("p", "k") == "1"


def test_busy_database_gives_up_with_store_error(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    with Store(path, busy_timeout_ms=20) as s:
        raw = _hold_write_lock(path)
        try:
            started = time.monotonic()
            with pytest.raises(StoreError) as info:
                s.kv_set("p", "k", "1", quota_bytes=BIG)
            elapsed = time.monotonic() - started
        finally:
            raw.execute("ROLLBACK")
            raw.close()
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert "busy" in str(info.value)
        assert str(path) not in str(info.value)
        assert elapsed < 10
        # the store is still usable afterwards
        s.kv_set("p", "k", "1", quota_bytes=BIG)
        assert s.kv_get("p", "k") == "1"


def test_storage_usage_follows_every_write_including_other_connections(tmp_path):
    import sqlite3 as _sqlite3

    path = tmp_path / "usage.db"
    with Store(path) as store:
        store.kv_set("p", "a", '"xx"', quota_bytes=1000)
        store.kv_set("p", "b", "1", quota_bytes=1000)
        assert store.kv_usage("p") == (1 + 4) + (1 + 1)
        store.kv_set("p", "a", '"xxxxxx"', quota_bytes=1000)  # replaced, not added
        assert store.kv_usage("p") == (1 + 8) + (1 + 1)
        store.kv_delete("p", "b")
        assert store.kv_usage("p") == 9
        other = _sqlite3.connect(path)
        with other:
            other.execute("INSERT INTO kv (plugin_id, key, value_json, size_bytes) VALUES ('p', 'c', '0', 2)")
        other.close()
        assert store.kv_usage("p") == 11
        assert store.kv_usage("q") == 0


def test_migration_to_usage_table_counts_existing_storage(tmp_path):
    import sqlite3 as _sqlite3

    from hostrt import store as store_module

    path = tmp_path / "old.db"
    first_only = store_module.MIGRATIONS[:1]
    original = list(store_module.MIGRATIONS)
    store_module.MIGRATIONS[:] = first_only
    try:
        Store(path).close()  # a database as the first release left it
    finally:
        store_module.MIGRATIONS[:] = original
    conn = _sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO kv (plugin_id, key, value_json, size_bytes) VALUES ('p', ?, ?, ?)",
                         [("a", '"xx"', 5), ("b", "1", 2)])
    conn.close()
    with Store(path) as new:
        assert new.kv_usage("p") == 7
        new.kv_set("p", "c", "2", quota_bytes=1000)
        assert new.kv_usage("p") == 9
    conn = _sqlite3.connect(path)
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == len(original)
    conn.close()
