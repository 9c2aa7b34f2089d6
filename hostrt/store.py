"""The host's persistent store: one SQLite file.

It holds, each keyed by plugin id:

* capability **grants** (the persisted decisions that the activation context
  checks on every call),
* plugin **settings** (JSON values),
* plugin **key/value storage** (JSON text, with a per-plugin byte quota),
* the **disabled** flag a user sets on a plugin (remembered across restarts),
* an **audit log** of security-relevant changes.

Concurrency model
-----------------
A :class:`Store` owns exactly one connection, opened with
``check_same_thread=False`` because the same store is used from the asyncio
loop thread and from plugin worker threads; a :class:`threading.RLock`
serialises every public method so the connection is never used by two threads
at once.

Several *processes* may open the same file (a host and its CLI, for example).
File databases therefore run in WAL mode, and every write runs inside an
explicit ``BEGIN IMMEDIATE`` transaction: the write lock is taken up front, so
a second writer waits in SQLite's busy handler instead of failing half-way
through a transaction when it tries to upgrade a read lock. Should SQLite
still report ``SQLITE_BUSY`` (busy timeout exhausted, WAL recovery in
progress), the whole transaction is retried a bounded number of times with a
short, jittered backoff.

Errors
------
Every :class:`sqlite3.Error` that escapes a public method is wrapped in
:class:`~hostrt.errors.StoreError` with the original as ``__cause__``. The
domain errors documented on each method (:class:`~hostrt.errors.QuotaExceededError`,
:class:`~hostrt.errors.SettingsError`, ...) pass through unchanged. Messages of
errors raised by per-plugin methods never contain the database path, because
the context layer may hand them on to plugin code.

The store does not judge what it stores: capability syntax, key syntax and
settings schemas are checked by the layers above. It does treat every plugin
id and key as opaque data -- only parameterised queries, and every per-plugin
query is scoped by ``plugin_id = ?`` -- so no key of any shape can reach
another plugin's rows.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hostrt.errors import QuotaExceededError, SettingsError, StorageError, StoreError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AuditEntry",
    "Migration",
    "Store",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: One schema step: an SQL script (statements separated by ``;``) or a
#: callable that receives the connection. Either runs inside the migration
#: transaction, so it must not COMMIT or ROLLBACK itself.
Migration = str | Callable[[sqlite3.Connection], None]

_MIGRATION_1 = """
CREATE TABLE grants (
    plugin_id  TEXT NOT NULL,
    capability TEXT NOT NULL,
    granted_at REAL NOT NULL,
    granted_by TEXT NOT NULL,
    PRIMARY KEY (plugin_id, capability)
) WITHOUT ROWID;

CREATE TABLE settings (
    plugin_id  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value_json TEXT NOT NULL,
    PRIMARY KEY (plugin_id, key)
) WITHOUT ROWID;

CREATE TABLE kv (
    plugin_id  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value_json TEXT NOT NULL,
    size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
    PRIMARY KEY (plugin_id, key)
) WITHOUT ROWID;

CREATE TABLE disabled_plugins (
    plugin_id   TEXT NOT NULL PRIMARY KEY,
    disabled_at REAL NOT NULL,
    disabled_by TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          REAL NOT NULL,
    plugin_id   TEXT,
    action      TEXT NOT NULL,
    detail_json TEXT NOT NULL
);
CREATE INDEX audit_log_by_plugin ON audit_log (plugin_id, id);
CREATE INDEX audit_log_by_action ON audit_log (action, id);
"""

#: The ordered schema history. Entry ``i`` takes the schema from version
#: ``i`` to ``i + 1``. Only ever append: a released entry must never change,
#: because databases in the field have already applied it.
def _migration_2(conn: sqlite3.Connection) -> None:
    """Keep each plugin's storage usage in a table of its own, maintained by
    triggers, so the quota check of a write is one lookup instead of a sum
    over every key the plugin has (a plugin with many keys made each write
    cost the host milliseconds)."""
    conn.execute(
        "CREATE TABLE kv_usage ("
        " plugin_id TEXT PRIMARY KEY,"
        " bytes INTEGER NOT NULL CHECK (bytes >= 0)"
        ") WITHOUT ROWID"
    )
    conn.execute("INSERT INTO kv_usage (plugin_id, bytes) SELECT plugin_id, SUM(size_bytes) FROM kv GROUP BY plugin_id")
    conn.execute(
        "CREATE TRIGGER kv_usage_after_insert AFTER INSERT ON kv BEGIN"
        " INSERT INTO kv_usage (plugin_id, bytes) VALUES (NEW.plugin_id, NEW.size_bytes)"
        " ON CONFLICT (plugin_id) DO UPDATE SET bytes = bytes + excluded.bytes;"
        " END"
    )
    conn.execute(
        "CREATE TRIGGER kv_usage_after_update AFTER UPDATE ON kv BEGIN"
        " UPDATE kv_usage SET bytes = bytes - OLD.size_bytes WHERE plugin_id = OLD.plugin_id;"
        " INSERT INTO kv_usage (plugin_id, bytes) VALUES (NEW.plugin_id, NEW.size_bytes)"
        " ON CONFLICT (plugin_id) DO UPDATE SET bytes = bytes + excluded.bytes;"
        " END"
    )
    conn.execute(
        "CREATE TRIGGER kv_usage_after_delete AFTER DELETE ON kv BEGIN"
        " UPDATE kv_usage SET bytes = bytes - OLD.size_bytes WHERE plugin_id = OLD.plugin_id;"
        " END"
    )


MIGRATIONS: list[Migration] = [_MIGRATION_1, _migration_2]

#: The schema version this code creates and understands.
SCHEMA_VERSION: int = len(MIGRATIONS)

# Compact, deterministic JSON: the byte size of stored text is what quotas
# and payload limits are measured in, so it must not depend on formatting.
_JSON_OPTIONS: dict[str, Any] = {
    "separators": (",", ":"),
    "ensure_ascii": False,
    "allow_nan": False,
}

_SQLITE_BUSY = 5  # primary result code; extended codes keep it in the low byte
_MAX_BUSY_RETRIES = 8
_BACKOFF_FIRST_S = 0.01
_BACKOFF_MAX_S = 0.25

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit log.

    ``ts`` is seconds since the epoch (:func:`time.time`); ``plugin_id`` is
    ``None`` for host-wide events; ``detail`` is the parsed JSON detail
    (``{}`` when none was given).
    """

    id: int
    ts: float
    plugin_id: str | None
    action: str
    detail: dict[str, Any] = field(default_factory=dict)


class Store:
    """Grants, settings, plugin storage and audit log in one SQLite database.

    ``path`` is a file path or ``":memory:"`` (the default; a private
    database that disappears on :meth:`close`). Pending schema migrations are
    applied on open. ``busy_timeout_ms`` is how long SQLite waits for another
    connection's lock before reporting the database busy (after which the
    store retries a few times before giving up with :class:`StoreError`).

    Thread-safe; usable as a context manager (closes on exit).

    Raises :class:`StoreError` if the file cannot be opened, is not a SQLite
    database, cannot be migrated, or has a schema newer than this code.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        busy_timeout_ms: int = 5000,
    ) -> None:
        if busy_timeout_ms < 0:
            raise ValueError("busy_timeout_ms must be >= 0")
        self._path = os.fspath(path)
        # "" is SQLite's private temporary database: no other process can see
        # it, so like ":memory:" it gains nothing from WAL.
        self._is_file = self._path not in (":memory:", "")
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = threading.RLock()
        self._grant_writes = 0
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = sqlite3.connect(
                self._path,
                timeout=busy_timeout_ms / 1000.0,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
            )
            self._retry_busy(self._configure, "open")
            self._retry_busy(self._migrate, "migrate")
        except BaseException as exc:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open store {self._path!r}: {exc}") from exc
            raise

    # ------------------------------------------------------------------ life

    @property
    def path(self) -> str:
        """The database path as given (``":memory:"`` for in-memory stores)."""
        return self._path

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._conn is None

    def close(self) -> None:
        """Close the connection. Safe to call more than once."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Store {self._path!r} {state}>"

    # ---------------------------------------------------------------- grants

    def add_grant(self, plugin_id: str, capability: str, *, actor: str = "host") -> bool:
        """Grant ``capability`` to ``plugin_id``; ``actor`` says who decided.

        Returns True if the grant is new, False if it already existed (in
        which case nothing changes and nothing is audited). A new grant is
        audited (action ``"grant"``) in the same transaction.
        """

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT INTO grants (plugin_id, capability, granted_at, granted_by)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (plugin_id, capability) DO NOTHING",
                (plugin_id, capability, time.time(), actor),
            )
            if cur.rowcount != 1:
                return False
            self._grant_writes += 1
            _insert_audit(
                conn, plugin_id, "grant", {"capability": capability, "actor": actor}
            )
            return True

        return self._write(tx, "add_grant")

    def remove_grant(self, plugin_id: str, capability: str, *, actor: str = "host") -> bool:
        """Revoke ``capability`` from ``plugin_id``.

        Returns True if a grant was removed, False if there was none. A
        removal is audited (action ``"revoke"``) in the same transaction.
        """

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM grants WHERE plugin_id = ? AND capability = ?",
                (plugin_id, capability),
            )
            if cur.rowcount != 1:
                return False
            self._grant_writes += 1
            _insert_audit(
                conn, plugin_id, "revoke", {"capability": capability, "actor": actor}
            )
            return True

        return self._write(tx, "remove_grant")

    def grants_version(self) -> tuple[int, int]:
        """A value that changes whenever any grant may have changed: this
        store's own grant writes, counted, plus SQLite's ``data_version``,
        which changes when another connection (another process) commits.
        Lets callers cache what they derive from grants without ever
        serving a revoked one."""
        version = self._read(lambda conn: conn.execute("PRAGMA data_version").fetchone()[0], "grants_version")
        return (self._grant_writes, int(version))

    def list_grants(self, plugin_id: str) -> list[str]:
        """The capabilities granted to ``plugin_id``, sorted."""
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT capability FROM grants WHERE plugin_id = ? ORDER BY capability",
                (plugin_id,),
            ).fetchall(),
            "list_grants",
        )
        return [r[0] for r in rows]

    def has_grant(self, plugin_id: str, capability: str) -> bool:
        """True if exactly this capability string is granted to ``plugin_id``.

        This is an exact lookup; scope matching (globs) is the capability
        layer's job.
        """
        row = self._read(
            lambda conn: conn.execute(
                "SELECT 1 FROM grants WHERE plugin_id = ? AND capability = ?",
                (plugin_id, capability),
            ).fetchone(),
            "has_grant",
        )
        return row is not None

    # -------------------------------------------------------------- disabled

    def set_disabled(self, plugin_id: str, disabled: bool, *, actor: str = "host") -> bool:
        """Set or clear the persisted "disabled by the user" flag.

        Returns True if the flag changed. A change is audited (action
        ``"disable"`` or ``"enable"``, detail ``{"actor": actor}``) in the same
        transaction.
        """

        def tx(conn: sqlite3.Connection) -> bool:
            if disabled:
                cur = conn.execute(
                    "INSERT INTO disabled_plugins (plugin_id, disabled_at, disabled_by)"
                    " VALUES (?, ?, ?) ON CONFLICT (plugin_id) DO NOTHING",
                    (plugin_id, time.time(), actor),
                )
            else:
                cur = conn.execute(
                    "DELETE FROM disabled_plugins WHERE plugin_id = ?", (plugin_id,)
                )
            if cur.rowcount != 1:
                return False
            _insert_audit(conn, plugin_id, "disable" if disabled else "enable", {"actor": actor})
            return True

        return self._write(tx, "set_disabled")

    def is_disabled(self, plugin_id: str) -> bool:
        """True if the plugin is flagged disabled."""
        row = self._read(
            lambda conn: conn.execute(
                "SELECT 1 FROM disabled_plugins WHERE plugin_id = ?", (plugin_id,)
            ).fetchone(),
            "is_disabled",
        )
        return row is not None

    def disabled_plugins(self) -> list[str]:
        """The ids of all plugins flagged disabled, sorted."""
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT plugin_id FROM disabled_plugins ORDER BY plugin_id"
            ).fetchall(),
            "disabled_plugins",
        )
        return [r[0] for r in rows]

    # -------------------------------------------------------------- settings

    def settings_get_all(self, plugin_id: str) -> dict[str, Any]:
        """The settings stored for ``plugin_id``, parsed from JSON.

        Only stored values are returned; defaults from the manifest's settings
        schema are the settings layer's business.
        """
        rows = self._read(
            lambda conn: conn.execute(
                "SELECT key, value_json FROM settings WHERE plugin_id = ? ORDER BY key",
                (plugin_id,),
            ).fetchall(),
            "settings_get_all",
        )
        return {key: _parse_json(text, "settings_get_all") for key, text in rows}

    def settings_set(
        self,
        plugin_id: str,
        key: str,
        value: Any,
        *,
        check: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """Store ``value`` (anything JSON can represent) for setting ``key``.

        ``check``, if given, is called inside the write transaction with every
        stored setting of the plugin as it will be after this write, and may
        raise to abort it. Validating there, not before, means two writers
        cannot each pass validation and together store a document that
        breaks a rule spanning several keys.

        Raises :class:`SettingsError` if ``value`` is not JSON-serialisable
        (including NaN and infinities, which JSON cannot represent).
        """
        try:
            text = json.dumps(value, **_JSON_OPTIONS)
        except (TypeError, ValueError) as exc:
            raise SettingsError(
                f"value for setting {key!r} of plugin {plugin_id!r} is not JSON: {exc}"
            ) from exc

        def tx(conn: sqlite3.Connection) -> None:
            if check is not None:
                rows = conn.execute(
                    "SELECT key, value_json FROM settings WHERE plugin_id = ?", (plugin_id,)
                ).fetchall()
                document = {k: _parse_json(t, "settings_set") for k, t in rows}
                document[key] = json.loads(text)
                check(document)
            conn.execute(
                "INSERT INTO settings (plugin_id, key, value_json) VALUES (?, ?, ?)"
                " ON CONFLICT (plugin_id, key) DO UPDATE SET value_json = excluded.value_json",
                (plugin_id, key, text),
            )

        self._write(tx, "settings_set")

    def settings_delete(self, plugin_id: str, key: str) -> bool:
        """Remove a stored setting. Returns True if there was one."""

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM settings WHERE plugin_id = ? AND key = ?", (plugin_id, key)
            )
            return cur.rowcount == 1

        return self._write(tx, "settings_delete")

    def settings_clear(self, plugin_id: str, *, actor: str = "host") -> int:
        """Remove every stored setting of ``plugin_id`` (used on uninstall).

        Returns how many were removed. Always audited (action
        ``"settings.clear"``, detail ``{"keys": n, "actor": actor}``), even
        when there was nothing to remove, because the uninstall itself is
        worth recording.
        """

        def tx(conn: sqlite3.Connection) -> int:
            cur = conn.execute("DELETE FROM settings WHERE plugin_id = ?", (plugin_id,))
            _insert_audit(
                conn, plugin_id, "settings.clear", {"keys": cur.rowcount, "actor": actor}
            )
            return cur.rowcount

        return self._write(tx, "settings_clear")

    # ------------------------------------------------------- key/value store

    def kv_get(self, plugin_id: str, key: str) -> str | None:
        """The stored JSON text for ``key``, or None. Callers parse it."""
        row = self._read(
            lambda conn: conn.execute(
                "SELECT value_json FROM kv WHERE plugin_id = ? AND key = ?",
                (plugin_id, key),
            ).fetchone(),
            "kv_get",
        )
        return None if row is None else row[0]

    def kv_set(self, plugin_id: str, key: str, value_json: str, *, quota_bytes: int) -> None:
        """Store ``value_json`` (already-serialised JSON text) under ``key``.

        An entry's size is the UTF-8 byte length of ``key`` plus that of
        ``value_json``. The write is refused with
        :class:`QuotaExceededError` -- and nothing changes -- if the plugin's
        total usage *after* the write (the replaced entry, if any, no longer
        counting) would exceed ``quota_bytes``. A write that lands exactly on
        the quota is allowed. The check and the write happen in one
        transaction, so concurrent writers cannot jointly overshoot.

        The store does not parse ``value_json``; the context layer produces
        it. Raises :class:`StorageError` if the key or value cannot be
        encoded as UTF-8 (lone surrogates).
        """
        if not isinstance(value_json, str):
            raise TypeError(f"value_json must be str, not {type(value_json).__name__}")
        if quota_bytes < 0:
            raise ValueError("quota_bytes must be >= 0")
        size = _utf8_len(key, "key") + _utf8_len(value_json, "value")

        def tx(conn: sqlite3.Connection) -> None:
            total = _usage(conn, plugin_id)
            row = conn.execute(
                "SELECT size_bytes FROM kv WHERE plugin_id = ? AND key = ?", (plugin_id, key)
            ).fetchone()
            replaced = row[0] if row is not None else 0
            in_use = total - replaced  # everything that stays after the write
            if in_use + size > quota_bytes:
                note = " (excluding the value being replaced)" if replaced else ""
                err = QuotaExceededError(
                    f"storage quota exceeded for plugin {plugin_id!r}: write needs "
                    f"{size} bytes, quota is {quota_bytes} bytes, {in_use} in use{note}"
                )
                err.plugin_id = plugin_id  # type: ignore[attr-defined]
                err.needed_bytes = size  # type: ignore[attr-defined]
                err.quota_bytes = quota_bytes  # type: ignore[attr-defined]
                err.in_use_bytes = in_use  # type: ignore[attr-defined]
                raise err
            conn.execute(
                "INSERT INTO kv (plugin_id, key, value_json, size_bytes) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (plugin_id, key) DO UPDATE"
                " SET value_json = excluded.value_json, size_bytes = excluded.size_bytes",
                (plugin_id, key, value_json, size),
            )

        self._write(tx, "kv_set")

    def kv_delete(self, plugin_id: str, key: str) -> bool:
        """Remove ``key``. Returns True if it existed."""

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM kv WHERE plugin_id = ? AND key = ?", (plugin_id, key))
            return cur.rowcount == 1

        return self._write(tx, "kv_delete")

    def kv_keys(self, plugin_id: str, prefix: str = "", *, limit: int = 10000) -> list[str]:
        """The plugin's keys that start with ``prefix``, sorted, at most ``limit``.

        ``prefix`` is matched literally (``%`` and ``_`` are ordinary
        characters). Sorting is by code point, which is the same as Python's
        ``sorted()`` on these strings.
        """
        if limit < 0:
            raise ValueError("limit must be >= 0")
        # A half-open range on the primary key rather than LIKE: LIKE would
        # treat % and _ as wildcards (and is case-insensitive for ASCII),
        # while the range is literal and uses the index.
        upper = _prefix_upper_bound(prefix)
        if upper is None:
            sql = (
                "SELECT key FROM kv WHERE plugin_id = ? AND key >= ?"
                " ORDER BY key LIMIT ?"
            )
            params: tuple[Any, ...] = (plugin_id, prefix, limit)
        else:
            sql = (
                "SELECT key FROM kv WHERE plugin_id = ? AND key >= ? AND key < ?"
                " ORDER BY key LIMIT ?"
            )
            params = (plugin_id, prefix, upper, limit)
        rows = self._read(lambda conn: conn.execute(sql, params).fetchall(), "kv_keys")
        return [r[0] for r in rows]

    def kv_usage(self, plugin_id: str) -> int:
        """Bytes the plugin's storage uses (the sum of its entries' sizes,
        kept up to date by triggers)."""
        return self._read(lambda conn: _usage(conn, plugin_id), "kv_usage")

    def kv_clear(self, plugin_id: str, *, actor: str = "host") -> int:
        """Remove every storage entry of ``plugin_id`` (used on uninstall).

        Returns how many were removed. Always audited (action
        ``"storage.clear"``, detail ``{"keys": n, "bytes": b, "actor": actor}``).
        """

        def tx(conn: sqlite3.Connection) -> int:
            (freed,) = conn.execute(
                "SELECT COALESCE(SUM(size_bytes), 0) FROM kv WHERE plugin_id = ?",
                (plugin_id,),
            ).fetchone()
            cur = conn.execute("DELETE FROM kv WHERE plugin_id = ?", (plugin_id,))
            _insert_audit(
                conn,
                plugin_id,
                "storage.clear",
                {"keys": cur.rowcount, "bytes": freed, "actor": actor},
            )
            return cur.rowcount

        return self._write(tx, "kv_clear")

    # ------------------------------------------------------------- audit log

    def audit(
        self, plugin_id: str | None, action: str, detail: dict[str, Any] | None = None
    ) -> None:
        """Append an entry to the audit log.

        ``plugin_id`` is None for host-wide events. ``detail`` must be a dict;
        values JSON cannot represent are recorded as their ``str()`` so that
        an odd value never costs the audit entry.
        """
        if detail is not None and not isinstance(detail, dict):
            raise TypeError(f"detail must be a dict or None, not {type(detail).__name__}")
        self._write(lambda conn: _insert_audit(conn, plugin_id, action, detail), "audit")

    def audit_log(
        self,
        *,
        plugin_id: str | None = None,
        action: str | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Audit entries, newest first, optionally filtered.

        ``plugin_id=None`` / ``action=None`` mean "any". "Newest" is by
        insertion order (``id``), not by ``ts``, so a wall clock stepping
        backwards cannot reorder the log.
        """
        if limit < 0:
            raise ValueError("limit must be >= 0")
        where, params = _audit_filter(plugin_id, action)
        sql = (
            "SELECT id, ts, plugin_id, action, detail_json FROM audit_log"
            f"{where} ORDER BY id DESC LIMIT ?"
        )
        rows = self._read(lambda conn: conn.execute(sql, (*params, limit)).fetchall(), "audit_log")
        return [
            AuditEntry(
                id=row[0],
                ts=row[1],
                plugin_id=row[2],
                action=row[3],
                detail=_parse_json(row[4], "audit_log"),
            )
            for row in rows
        ]

    def audit_count(self, *, plugin_id: str | None = None, action: str | None = None) -> int:
        """How many audit entries match the filter (None means "any")."""
        where, params = _audit_filter(plugin_id, action)
        row = self._read(
            lambda conn: conn.execute(f"SELECT COUNT(*) FROM audit_log{where}", params).fetchone(),
            "audit_count",
        )
        return int(row[0])

    # -------------------------------------------------------------- plumbing

    def _configure(self) -> None:
        conn = self._require_open()
        if self._is_file:
            (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if str(mode).lower() != "wal":
                # Some filesystems (network mounts) cannot do WAL. The store is
                # still correct in rollback-journal mode, just less concurrent.
                _log.warning(
                    "store %r: WAL journal mode unavailable, using %r", self._path, mode
                )
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")

    def _migrate(self) -> None:
        conn = self._require_open()
        migrations = list(MIGRATIONS)  # read at call time: tests may extend it
        latest = len(migrations)
        # Cheap unlocked check first, so that opening an up-to-date database
        # does not take the write lock.
        current = _schema_version(conn)
        _check_not_newer(current, latest)
        if current == latest:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            # Re-read under the write lock: another process opening the same
            # fresh file may have migrated it while we waited.
            current = _schema_version(conn)
            _check_not_newer(current, latest)
            for version in range(current + 1, latest + 1):
                step = migrations[version - 1]
                if callable(step):
                    step(conn)
                else:
                    for statement in _split_sql(step):
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )
            conn.execute("COMMIT")
        except BaseException:
            _rollback_quietly(conn)
            raise

    def _require_open(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise StoreError("the store is closed")
        return conn

    def _retry_busy(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn``, retrying a bounded number of times on SQLITE_BUSY.

        ``fn`` must be safe to re-run from the start (a whole transaction, or
        a read). Other errors propagate unchanged.
        """
        attempt = 0
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt >= _MAX_BUSY_RETRIES:
                    raise
                delay = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * (2**attempt))
                # Jitter so that two processes that collided do not retry in
                # lock-step and collide again.
                time.sleep(delay * random.uniform(0.5, 1.5))
                attempt += 1
                _log.debug("store busy during %s, retry %d", what, attempt)

    def _run(self, fn: Callable[[sqlite3.Connection], T], what: str, *, write: bool) -> T:
        with self._lock:
            conn = self._require_open()

            def attempt() -> T:
                if not write:
                    return fn(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback_quietly(conn)
                    raise
                return result

            try:
                return self._retry_busy(attempt, what)
            except sqlite3.Error as exc:
                # No path in the message: it may be shown to plugin code.
                if _is_busy(exc):
                    raise StoreError(
                        f"store {what} failed: database stayed busy after "
                        f"{_MAX_BUSY_RETRIES} retries ({exc})"
                    ) from exc
                raise StoreError(f"store {what} failed: {exc}") from exc

    def _read(self, fn: Callable[[sqlite3.Connection], T], what: str) -> T:
        return self._run(fn, what, write=False)

    def _write(self, fn: Callable[[sqlite3.Connection], T], what: str) -> T:
        return self._run(fn, what, write=True)


# ------------------------------------------------------------------ helpers


def _usage(conn: sqlite3.Connection, plugin_id: str) -> int:
    row = conn.execute("SELECT bytes FROM kv_usage WHERE plugin_id = ?", (plugin_id,)).fetchone()
    return int(row[0]) if row is not None else 0


def _insert_audit(
    conn: sqlite3.Connection,
    plugin_id: str | None,
    action: str,
    detail: dict[str, Any] | None,
) -> None:
    """Append an audit row on ``conn`` inside the caller's transaction."""
    text = json.dumps(
        # ASCII: details quote plugin-chosen text (names, error messages),
        # and a lone surrogate in it must not cost the audit entry (SQLite
        # cannot store one as UTF-8).
        detail or {}, separators=(",", ":"), ensure_ascii=True, default=str
    )
    conn.execute(
        "INSERT INTO audit_log (ts, plugin_id, action, detail_json) VALUES (?, ?, ?, ?)",
        (time.time(), plugin_id, action, text),
    )


def _audit_filter(plugin_id: str | None, action: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if plugin_id is not None:
        clauses.append("plugin_id = ?")
        params.append(plugin_id)
    if action is not None:
        clauses.append("action = ?")
        params.append(action)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return where, tuple(params)


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StoreError(f"store {what} failed: stored JSON is corrupt: {exc}") from exc


def _utf8_len(text: str, what: str) -> int:
    if not isinstance(text, str):
        raise TypeError(f"storage {what} must be str, not {type(text).__name__}")
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise StorageError(f"storage {what} is not valid Unicode text: {exc.reason}") from exc


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix``.

    SQLite compares TEXT with the BINARY collation, i.e. by UTF-8 bytes, and
    UTF-8 byte order equals code point order -- the order Python uses for
    ``str``. So "bump the last code point by one" gives the exclusive upper
    bound, dropping trailing U+10FFFF (which cannot be bumped) and skipping
    the surrogate block (not encodable, so never stored). None means no upper
    bound (empty prefix, or nothing but U+10FFFF).
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last == _MAX_CODE_POINT:
            continue
        nxt = last + 1
        if nxt in _SURROGATES:
            nxt = _SURROGATES.stop
        return "".join(chars) + chr(nxt)
    return None


def _split_sql(script: str) -> list[str]:
    """Split an SQL script into statements.

    Not ``executescript()``: that COMMITs any open transaction first, which
    would break running migrations atomically. ``sqlite3.complete_statement``
    knows about quotes, comments and trigger bodies, so a ``;`` inside one of
    them does not split.
    """
    statements: list[str] = []
    start = 0
    idx = script.find(";")
    while idx != -1:
        candidate = script[start : idx + 1]
        if sqlite3.complete_statement(candidate):
            if candidate.strip(" \t\r\n;"):
                statements.append(candidate.strip())
            start = idx + 1
        idx = script.find(";", idx + 1)
    rest = script[start:].strip()
    if rest:
        statements.append(rest)
    return statements


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(version)


def _check_not_newer(current: int, latest: int) -> None:
    if current > latest:
        raise StoreError(
            f"database schema version {current} is newer than this version of "
            f"hostrt supports (schema version {latest}); upgrade hostrt to open it"
        )


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (e.g. on SQLITE_FULL or
    # an interrupted statement); a second ROLLBACK would raise and hide the
    # original error.
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) == _SQLITE_BUSY
    return "database is locked" in str(exc)
