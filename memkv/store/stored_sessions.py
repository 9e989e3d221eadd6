"""Sessions (MKV-SES-*): their rows in the index and the pins those rows hold.

The lifecycle itself is the pure table of memkv/sessions.py; here it meets the index and the
pins. A change is written to the index first; only once it is committed do the pins follow
(MKV-DUR-008). Arguments arrive checked; every method runs under StorageEngine's lock.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from collections.abc import Callable, Sequence

from ..blocks import Limits
from ..errors import InvalidArgument, LimitExceeded, NotFound, UnknownSession
from ..keys import check_key
from ..namespaces import check_namespace
from ..sessions import PINNING_STATES, SessionEvent, SessionInfo, SessionState, next_state
from .health import StoreHealth
from .index import Index, SessionRow
from .namespace_quotas import NamespaceQuotas
from .protection import PinsAndLeases
from .resident import ResidentBlocks

EXPIRED_SESSION_RETENTION_S = 3600.0


def info(row: SessionRow) -> SessionInfo:
    return SessionInfo(row.session_id, row.state, row.keys, row.ttl, row.expires_at, row.parent_id, row.fingerprint)


def transition(row: SessionRow, event: SessionEvent) -> SessionRow:
    """A copy of `row` after `event`; the caller commits it."""
    return dataclasses.replace(row, state=next_state(row.state, event))


class StoredSessions:
    def __init__(self, index: Index, protection: PinsAndLeases, resident: ResidentBlocks,
                 quotas: NamespaceQuotas, health: StoreHealth, limits: Limits, clock: Callable[[], float]) -> None:
        self.index, self.protection, self.resident = index, protection, resident
        self.quotas, self.health, self.limits, self.clock = quotas, health, limits, clock
        for row in index.sessions():
            if row.state in PINNING_STATES:
                protection.pin(row, +1)

    def load(self, namespace: str, session_id: str) -> SessionRow:
        """The session, moved to EXPIRED first when its TTL ran out."""
        check_namespace(namespace)
        if not isinstance(session_id, str):
            raise UnknownSession("session id must be a string")
        row = self.index.session(namespace, session_id)
        if row is None:
            raise UnknownSession(f"no session {session_id!r} in namespace {namespace}")
        if row.state not in (SessionState.EXPIRED, SessionState.CLOSED) and self.clock() >= row.expires_at:
            return self._expire(row)
        return row

    def commit(self, old: SessionRow | None, new: SessionRow | None) -> None:
        """Write a change (new None: deletion) to the index; once committed, the pins follow."""
        self.health.check_writable()
        try:
            if new is not None:
                self.index.save_session(new)
            elif old is not None:
                self.index.delete_session(old.namespace, old.session_id)
        except sqlite3.Error as exc:
            raise self.health.index_failed(exc) from None
        if old is not None and old.state in PINNING_STATES:
            self.protection.pin(old, -1)
        if new is not None and new.state in PINNING_STATES:
            self.protection.pin(new, +1)

    def _expire(self, row: SessionRow) -> SessionRow:
        expired = transition(row, SessionEvent.EXPIRE)
        self.commit(row, expired)
        return expired

    def expire_pinned(self, now: float) -> None:
        """Expire suspended sessions whose pause ran out, releasing their pins (MKV-SES-008)."""
        for namespace, session_id in self.protection.sessions_due(now):
            row = self.index.session(namespace, session_id)
            if row is None or row.state not in PINNING_STATES:
                self.protection.pinned_until.pop((namespace, session_id), None)
                continue
            if now >= row.expires_at:
                self._expire(row)
            else:
                self.protection.pinned_until[(namespace, session_id)] = row.expires_at

    def sweep(self, now: float) -> None:
        """Expire sessions whose time ran out; drop old expired session records."""
        for row in self.index.sessions():
            if row.state is SessionState.EXPIRED:
                if now >= row.expires_at + EXPIRED_SESSION_RETENTION_S:
                    self.commit(row, None)
            elif now >= row.expires_at:
                self._expire(row)

    def _stored(self, namespace: str, keys: Sequence[bytes], foreign: bool = False) -> tuple[bytes, ...]:
        """The keys, each stored here unless `foreign` (other shards hold them, MKV-WIRE-053)."""
        checked = tuple(check_key(k) for k in keys)
        if foreign:
            return checked
        missing = [k.hex() for k in checked if (namespace, k) not in self.resident]
        if missing:
            raise NotFound(f"{len(missing)} keys are not stored, first {missing[0]}")
        return checked

    def _check_live_quota(self, namespace: str) -> None:
        if self.quotas.has_quota(namespace):
            live = sum(1 for row in self.index.sessions(namespace)
                       if row.state in (SessionState.OPEN, SessionState.SUSPENDED))
            self.quotas.check_count(namespace, "sessions", live)

    def _new_id(self, namespace: str, chosen: str | None) -> str:
        """A fresh id, or the client's unless the namespace holds it in any state (MKV-WIRE-052)."""
        if chosen is None:
            return uuid.uuid4().hex
        if self.index.session(namespace, chosen) is not None:
            raise InvalidArgument(f"the namespace already holds a session {chosen!r}")
        return chosen

    def open(self, namespace: str, ttl: float, keys: Sequence[bytes], fingerprint: bytes,
             session_id: str | None = None, foreign: bool = False) -> SessionInfo:
        self._check_live_quota(namespace)
        row = SessionRow(namespace, self._new_id(namespace, session_id), SessionState.OPEN,
                         self._stored(namespace, keys, foreign), ttl, self.clock() + ttl, None, fingerprint)
        self.commit(None, row)
        return info(row)

    def append(self, namespace: str, session_id: str, keys: Sequence[bytes], foreign: bool = False) -> SessionInfo:
        row = self.load(namespace, session_id)
        next_state(row.state, SessionEvent.APPEND)
        added = self._stored(namespace, keys, foreign)
        if len(row.keys) + len(added) > self.limits.max_session_blocks:
            raise LimitExceeded(f"a session holds at most {self.limits.max_session_blocks} blocks")
        new = transition(row, SessionEvent.APPEND)
        new.keys += added
        new.expires_at = self.clock() + row.ttl
        self.commit(row, new)
        return info(new)

    def suspend(self, namespace: str, session_id: str, pause: float) -> SessionInfo:
        row = self.load(namespace, session_id)
        new = transition(row, SessionEvent.SUSPEND)
        self.quotas.check_pinned(namespace, row.keys)
        new.expires_at = self.clock() + pause
        self.commit(row, new)
        return info(new)

    def resume(self, namespace: str, session_id: str, prefix_len: int | None = None) -> SessionInfo:
        """Cut to the stored prefix (MKV-SES-005), or to the `prefix_len` the client found (MKV-WIRE-054)."""
        row = self.load(namespace, session_id)
        new = transition(row, SessionEvent.RESUME)
        if prefix_len is not None:
            if prefix_len > len(new.keys):
                raise InvalidArgument(f"prefix_len must be in 0..{len(new.keys)}")
            valid = prefix_len
        else:
            valid = 0
            while valid < len(new.keys) and (namespace, new.keys[valid]) in self.resident:
                valid += 1
        new.keys = new.keys[:valid]
        new.expires_at = self.clock() + new.ttl
        self.commit(row, new)
        return info(new)

    def fork(self, namespace: str, session_id: str, prefix_len: int | None, ttl: float | None,
             new_session_id: str | None = None) -> SessionInfo:
        parent = self.load(namespace, session_id)
        next_state(parent.state, SessionEvent.FORK)
        count = len(parent.keys) if prefix_len is None else prefix_len
        if not isinstance(count, int) or not 0 <= count <= len(parent.keys):
            raise InvalidArgument(f"prefix_len must be in 0..{len(parent.keys)}")
        child_ttl = parent.ttl if ttl is None else ttl
        self._check_live_quota(namespace)
        child = SessionRow(namespace, self._new_id(namespace, new_session_id), SessionState.OPEN, parent.keys[:count],
                           child_ttl,
                           self.clock() + child_ttl, parent.session_id, parent.fingerprint)
        self.commit(None, child)
        return info(child)

    def close(self, namespace: str, session_id: str) -> SessionInfo:
        row = self.load(namespace, session_id)
        closed = transition(row, SessionEvent.CLOSE)
        self.commit(row, None)
        return info(closed)

    def unpin_namespace(self, rows: Sequence[SessionRow]) -> None:
        """The namespace's session rows were deleted (committed): release their pins."""
        for row in rows:
            if row.state in PINNING_STATES:
                self.protection.pin(row, -1)
