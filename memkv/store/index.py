"""The index of committed blocks and of sessions, in SQLite (WAL mode).

A block row exists only after its payload is on the device and verified: the row is the
commit (MKV-OPS-002). Extents are packed as little-endian (offset u64, length u64) pairs.
Callers serialise access (the engine's lock); SQLite gives atomic, crash-safe commits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import struct
from collections.abc import Iterable, Iterator, Sequence

from ..blocks import BlockMeta
from ..errors import UnsupportedVersion
from ..keys import ROOT_PARENT
from ..sessions import SessionState
from .allocator import Extent

INDEX_VERSION = 1
# Block rows inserted since the last checkpoint after which an insert checkpoints itself, so the
# WAL stays bounded (a few MiB) however long the flush interval is.
CHECKPOINT_AFTER_INSERTS = 4096

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    namespace TEXT NOT NULL, key BLOB NOT NULL, length INTEGER NOT NULL,
    checksum INTEGER NOT NULL, meta BLOB NOT NULL, fingerprint BLOB NOT NULL,
    parent BLOB NOT NULL, extents BLOB NOT NULL, last_access REAL NOT NULL,
    PRIMARY KEY (namespace, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_by_model ON blocks (namespace, fingerprint);
CREATE INDEX IF NOT EXISTS blocks_by_parent ON blocks (namespace, parent);
CREATE TABLE IF NOT EXISTS sessions (
    namespace TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, keys BLOB NOT NULL,
    ttl REAL NOT NULL, expires_at REAL NOT NULL, parent_id TEXT, fingerprint BLOB NOT NULL,
    PRIMARY KEY (namespace, id)) WITHOUT ROWID;
"""

_EXTENT = struct.Struct("<QQ")


def pack_extents(extents: Sequence[Extent]) -> bytes:
    return b"".join(_EXTENT.pack(e.offset, e.length) for e in extents)


def unpack_extents(raw: bytes) -> list[Extent]:
    return [Extent(o, n) for o, n in _EXTENT.iter_unpack(raw)]


def pack_keys(keys: Iterable[bytes]) -> bytes:
    return b"".join(keys)


def unpack_keys(raw: bytes) -> tuple[bytes, ...]:
    return tuple(raw[i : i + 16] for i in range(0, len(raw), 16))


@dataclasses.dataclass(slots=True)
class BlockRow:
    namespace: str
    key: bytes
    length: int
    checksum: int
    meta: BlockMeta
    extents: list[Extent]
    last_access: float


@dataclasses.dataclass(slots=True)
class SessionRow:
    namespace: str
    session_id: str
    state: SessionState
    keys: tuple[bytes, ...]
    ttl: float
    expires_at: float
    parent_id: str | None
    fingerprint: bytes


_BLOCK_COLUMNS = "namespace, key, length, checksum, meta, extents, last_access"
_SESSION_COLUMNS = "namespace, id, state, keys, ttl, expires_at, parent_id, fingerprint"


def _block(row: tuple) -> BlockRow:  # type: ignore[type-arg]
    ns, key, length, checksum, meta, extents, last_access = row
    return BlockRow(ns, bytes(key), length, checksum & 0xFFFFFFFFFFFFFFFF,
                    BlockMeta.decode(bytes(meta)), unpack_extents(bytes(extents)), last_access)


def _session(row: tuple) -> SessionRow:  # type: ignore[type-arg]
    ns, sid, state, keys, ttl, expires_at, parent_id, fingerprint = row
    return SessionRow(ns, sid, SessionState(state), unpack_keys(bytes(keys)), ttl, expires_at,
                      parent_id, bytes(fingerprint))


def _signed(checksum: int) -> int:
    """SQLite integers are signed 64-bit; store the unsigned checksum's two's complement."""
    return checksum - (1 << 64) if checksum >= 1 << 63 else checksum


class Index:
    def __init__(self, path: str) -> None:
        self.path = path
        self._inserts = 0
        # Created owner-only before SQLite opens it: its -wal and -shm files copy this mode (MKV-SEC-004).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            # One engine owns a store (its lock file, memkv/store/lock.py) and opens its index
            # once: holding SQLite's file locks for the connection's life instead of taking and
            # dropping them (fcntl) around every transaction takes ~6 syscalls off each put's
            # commit, and, set before WAL mode, keeps the WAL index in memory (no -shm file).
            # A crash still leaves the WAL, which the next open replays (MKV-DUR-007).
            self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints (each one fsyncs) belong to the engine's flush, not to the put that happens
            # to fill the WAL: an insert or a transaction checkpoints only past CHECKPOINT_AFTER_INSERTS.
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            # Refuse a newer index before touching its schema (MKV-DUR-005).
            has_meta = self.db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            version = self.get_meta("version") if has_meta else None
            if version is not None and int(version) > INDEX_VERSION:
                raise UnsupportedVersion(f"index version {version} is newer than this build's {INDEX_VERSION}")
            self.db.executescript(_SCHEMA)
            if version is None:
                self.set_meta("version", str(INDEX_VERSION))
        except BaseException:
            self.db.close()
            raise

    # ---- meta -------------------------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    def block_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM blocks").fetchone()[0])

    def clear_blocks(self) -> None:
        self.db.execute("DELETE FROM blocks")

    # ---- blocks -----------------------------------------------------------------------------
    def insert_block(self, row: BlockRow) -> None:
        if not self.db.in_transaction:
            self._checkpoint_if_due()
        self._inserts += 1
        self.db.execute(
            "INSERT INTO blocks VALUES (?,?,?,?,?,?,?,?,?)",
            (row.namespace, row.key, row.length, _signed(row.checksum), row.meta.encode(),
             row.meta.fingerprint, row.meta.parent, pack_extents(row.extents), row.last_access))

    def block(self, namespace: str, key: bytes) -> BlockRow | None:
        found = self.db.execute(f"SELECT {_BLOCK_COLUMNS} FROM blocks WHERE namespace=? AND key=?",
                                (namespace, key)).fetchone()
        return _block(found) if found else None

    def all_blocks(self) -> Iterator[BlockRow]:
        for found in self.db.execute(f"SELECT {_BLOCK_COLUMNS} FROM blocks ORDER BY last_access"):
            yield _block(found)

    def delete_block(self, namespace: str, key: bytes) -> None:
        self.db.execute("DELETE FROM blocks WHERE namespace=? AND key=?", (namespace, key))

    def keys_where(self, namespace: str, column: str | None = None, value: bytes | None = None) -> list[bytes]:
        if column is None:
            rows = self.db.execute("SELECT key FROM blocks WHERE namespace=?", (namespace,))
        else:
            assert column in ("fingerprint", "parent")
            rows = self.db.execute(f"SELECT key FROM blocks WHERE namespace=? AND {column}=?",
                                   (namespace, value))
        return [bytes(r[0]) for r in rows]

    def descendants(self, namespace: str, key: bytes) -> list[bytes]:
        """`key` and every block chained after it (by parent links), stored or not; the root (zero key)
        is no block's parent (MKV-INV-008)."""
        rows = self.db.execute(
            """WITH RECURSIVE chain(k) AS (
                   SELECT :key
                   UNION SELECT b.key FROM blocks b JOIN chain c ON b.parent = c.k
                   WHERE b.namespace=:ns AND c.k != :root)
               SELECT k FROM chain""", {"ns": namespace, "key": key, "root": ROOT_PARENT})
        return [bytes(r[0]) for r in rows]

    def children(self, namespace: str, parents: Sequence[bytes], after: bytes | None, limit: int) -> list[bytes]:
        """Up to `limit` keys whose parent is one of `parents`, ascending, greater than `after` (MKV-WIRE-044)."""
        marks = ",".join("?" * len(parents))
        rows = self.db.execute(
            f"SELECT DISTINCT key FROM blocks WHERE namespace=? AND parent IN ({marks}) AND key > ? "
            "ORDER BY key LIMIT ?", (namespace, *parents, after or b"", limit))
        return [bytes(r[0]) for r in rows]

    def touch(self, items: Iterable[tuple[float, str, bytes]]) -> None:
        self.db.executemany("UPDATE blocks SET last_access=? WHERE namespace=? AND key=?", list(items))

    # ---- sessions ---------------------------------------------------------------------------
    def save_session(self, row: SessionRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO sessions VALUES (?,?,?,?,?,?,?,?)",
            (row.namespace, row.session_id, row.state.value, pack_keys(row.keys), row.ttl,
             row.expires_at, row.parent_id, row.fingerprint))

    def session(self, namespace: str, session_id: str) -> SessionRow | None:
        found = self.db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE namespace=? AND id=?",
                                (namespace, session_id)).fetchone()
        return _session(found) if found else None

    def sessions(self, namespace: str | None = None) -> list[SessionRow]:
        if namespace is None:
            rows = self.db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions")
        else:
            rows = self.db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE namespace=?", (namespace,))
        return [_session(r) for r in rows]

    def delete_session(self, namespace: str, session_id: str) -> None:
        self.db.execute("DELETE FROM sessions WHERE namespace=? AND id=?", (namespace, session_id))

    def delete_namespace_sessions(self, namespace: str) -> None:
        self.db.execute("DELETE FROM sessions WHERE namespace=?", (namespace,))

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Group statements into one atomic commit; any failure, the COMMIT's included, rolls back."""
        self._checkpoint_if_due()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite may already have rolled back (SQLITE_FULL, IOERR)
                self.db.execute("ROLLBACK")
            raise

    @contextlib.contextmanager
    def durable(self) -> Iterator[None]:
        """Commits inside are synced to stable storage before they return (WAL fsync)."""
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            self.db.execute("PRAGMA synchronous=NORMAL")

    def checkpoint(self) -> None:
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._inserts = 0

    def _checkpoint_if_due(self) -> None:
        if self._inserts >= CHECKPOINT_AFTER_INSERTS:
            self.checkpoint()

    def close(self) -> None:
        self.db.close()
