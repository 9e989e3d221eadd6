"""The session lifecycle as a transition table (spec section "Sessions", MKV-SES-*).

Pure: no clock, no storage. `spec/sessions.yaml` states the same table; a test keeps them equal.
"""

from __future__ import annotations

import dataclasses
import enum
import re

from .errors import InvalidArgument, InvalidSessionState, SessionExpired


class SessionState(enum.StrEnum):
    OPEN = "open"
    SUSPENDED = "suspended"
    CLOSED = "closed"
    EXPIRED = "expired"


class SessionEvent(enum.StrEnum):
    APPEND = "append"
    SUSPEND = "suspend"
    RESUME = "resume"
    FORK = "fork"
    CLOSE = "close"
    EXPIRE = "expire"


S, E = SessionState, SessionEvent

# (state, event) -> next state. A pair that is absent is refused.
TRANSITIONS: dict[tuple[SessionState, SessionEvent], SessionState] = {
    (S.OPEN, E.APPEND): S.OPEN,
    (S.OPEN, E.SUSPEND): S.SUSPENDED,
    (S.OPEN, E.FORK): S.OPEN,
    (S.OPEN, E.CLOSE): S.CLOSED,
    (S.OPEN, E.EXPIRE): S.EXPIRED,
    (S.SUSPENDED, E.RESUME): S.OPEN,
    (S.SUSPENDED, E.FORK): S.SUSPENDED,
    (S.SUSPENDED, E.CLOSE): S.CLOSED,
    (S.SUSPENDED, E.EXPIRE): S.EXPIRED,
}

# States whose blocks are pinned: never evicted while the session stays in them (MKV-SES-004).
PINNING_STATES = frozenset({S.SUSPENDED})
TERMINAL_STATES = frozenset({S.CLOSED, S.EXPIRED})


SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TTL_S = 30 * 24 * 3600.0


def check_ttl(ttl_s: float, what: str = "ttl_s") -> float:
    """A TTL or pause TTL in (0, 30 days] (MKV-SES-009)."""
    if not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidArgument(f"{what} must be in (0, {MAX_TTL_S}] seconds")
    return float(ttl_s)


def check_fork(prefix_len: int | None, ttl_s: float | None) -> float | None:
    """A fork's arguments, checked before its session is looked at (MKV-NS-009); its TTL or None."""
    if prefix_len is not None and (isinstance(prefix_len, bool) or not isinstance(prefix_len, int)
                                   or prefix_len < 0):
        raise InvalidArgument("prefix_len must be a non-negative integer")
    return None if ttl_s is None else check_ttl(ttl_s)


def check_session_id(session_id: object) -> str:
    """A session id a client chose (MKV-SES-010, MKV-WIRE-052); INVALID_ARGUMENT for another form."""
    if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
        raise InvalidArgument("a session id is 1 to 64 characters of [A-Za-z0-9_-]")
    return session_id


def next_state(state: SessionState, event: SessionEvent) -> SessionState:
    """The state after `event`, or the spec's error for a refused transition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        if state is S.EXPIRED:
            raise SessionExpired(f"session expired; cannot {event.value}") from None
        raise InvalidSessionState(f"cannot {event.value} a session that is {state.value}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session as seen by clients."""

    session_id: str
    state: SessionState
    keys: tuple[bytes, ...]
    ttl_s: float
    expires_at: float
    parent_id: str | None = None
    fingerprint: bytes = bytes(16)

    @property
    def pinned(self) -> bool:
        return self.state in PINNING_STATES
