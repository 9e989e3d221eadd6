"""Session operations of the storage engine: open, append, suspend, resume, fork, close (MKV-SES-*).

The lifecycle itself is the pure table of memkv/sessions.py; here it meets the index and pins.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ..errors import (
    InvalidArgument,
    LimitExceeded,
    NotFound,
    UnknownSession,
)
from ..keys import NO_FINGERPRINT, check_fingerprint, check_key
from ..namespaces import check_namespace
from ..sessions import SessionEvent, SessionInfo, SessionState, next_state
from ..transport import ResumeResult
from .core import (
    EngineCore,
    check_ttl,
)
from .index import SessionRow


class SessionOps(EngineCore):
    def _load_session(self, namespace: str, session_id: str) -> SessionRow:
        """The session, moved to EXPIRED first when its TTL ran out (caller holds the lock)."""
        check_namespace(namespace)
        if not isinstance(session_id, str):
            raise UnknownSession("session id must be a string")
        row = self.index.session(namespace, session_id)
        if row is None:
            raise UnknownSession(f"no session {session_id!r} in namespace {namespace}")
        if row.state not in (SessionState.EXPIRED, SessionState.CLOSED) and self.clock() >= row.expires_at:
            return self._expire_session(row)
        return row

    def _check_present(self, namespace: str, keys: Sequence[bytes]) -> tuple[bytes, ...]:
        checked = tuple(check_key(k) for k in keys)
        missing = [k.hex() for k in checked if not self._present(namespace, k)]
        if missing:
            raise NotFound(f"{len(missing)} keys are not stored, first {missing[0]}")
        return checked

    def open_session(self, namespace: str, ttl_s: float, keys: Sequence[bytes] = (),
                     fingerprint: bytes = NO_FINGERPRINT) -> SessionInfo:
        ttl = check_ttl(ttl_s)
        fingerprint = check_fingerprint(fingerprint)
        check_namespace(namespace)
        if len(keys) > self.limits.max_session_blocks:
            raise LimitExceeded(f"a session holds at most {self.limits.max_session_blocks} blocks")
        with self._guard():
            self._check_session_quota(namespace)
            row = SessionRow(namespace, uuid.uuid4().hex, SessionState.OPEN,
                             self._check_present(namespace, keys), ttl, self.clock() + ttl, None, fingerprint)
            self._commit_session(None, row)
            return self._info(row)

    def append(self, namespace: str, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        keys = [check_key(k) for k in keys]  # the form of the arguments before the session (MKV-NS-009)
        with self._guard():
            row = self._load_session(namespace, session_id)
            next_state(row.state, SessionEvent.APPEND)
            added = self._check_present(namespace, keys)
            if len(row.keys) + len(added) > self.limits.max_session_blocks:
                raise LimitExceeded(f"a session holds at most {self.limits.max_session_blocks} blocks")
            new = self._transition(row, SessionEvent.APPEND)
            new.keys += added
            new.expires_at = self.clock() + row.ttl
            self._commit_session(row, new)
            return self._info(new)

    def suspend(self, namespace: str, session_id: str, pause_ttl_s: float) -> SessionInfo:
        pause = check_ttl(pause_ttl_s, "pause_ttl_s")
        with self._guard():
            row = self._load_session(namespace, session_id)
            new = self._transition(row, SessionEvent.SUSPEND)
            self._check_pinned_quota(namespace, row.keys)
            new.expires_at = self.clock() + pause
            self._commit_session(row, new)
            return self._info(new)

    def resume(self, namespace: str, session_id: str) -> ResumeResult:
        with self._guard():
            row = self._load_session(namespace, session_id)
            new = self._transition(row, SessionEvent.RESUME)
            valid = 0
            while valid < len(new.keys) and self._present(namespace, new.keys[valid]):
                valid += 1
            new.keys = new.keys[:valid]
            new.expires_at = self.clock() + new.ttl
            self._commit_session(row, new)
            info = self._info(new)
            return ResumeResult(info, info.keys)

    def fork(self, namespace: str, session_id: str, prefix_len: int | None = None,
             ttl_s: float | None = None) -> SessionInfo:
        if prefix_len is not None and (isinstance(prefix_len, bool) or not isinstance(prefix_len, int)
                                       or prefix_len < 0):
            raise InvalidArgument("prefix_len must be a non-negative integer")  # before the session (MKV-NS-009)
        ttl_checked = None if ttl_s is None else check_ttl(ttl_s)
        with self._guard():
            parent = self._load_session(namespace, session_id)
            next_state(parent.state, SessionEvent.FORK)
            count = len(parent.keys) if prefix_len is None else prefix_len
            if not isinstance(count, int) or not 0 <= count <= len(parent.keys):
                raise InvalidArgument(f"prefix_len must be in 0..{len(parent.keys)}")
            ttl = parent.ttl if ttl_checked is None else ttl_checked
            self._check_session_quota(namespace)
            child = SessionRow(namespace, uuid.uuid4().hex, SessionState.OPEN, parent.keys[:count],
                               ttl, self.clock() + ttl, parent.session_id, parent.fingerprint)
            self._commit_session(None, child)
            return self._info(child)

    def close_session(self, namespace: str, session_id: str) -> SessionInfo:
        with self._guard():
            row = self._load_session(namespace, session_id)
            closed = self._transition(row, SessionEvent.CLOSE)
            self._commit_session(row, None)
            return self._info(closed)

    def session_info(self, namespace: str, session_id: str) -> SessionInfo:
        with self._guard():
            return self._info(self._load_session(namespace, session_id))

    def _check_session_quota(self, namespace: str) -> None:
        if self.quotas.get(namespace) is not None:
            live = sum(1 for row in self.index.sessions(namespace) if row.state in (SessionState.OPEN,
                                                                                  SessionState.SUSPENDED))
            self._check_count_quota(namespace, "sessions", live)

    def sessions(self, namespace: str | None = None) -> list[SessionInfo]:
        with self._guard():
            return [self._info(row) for row in self.index.sessions(namespace)]
