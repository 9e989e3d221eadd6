"""Sessions through their whole lifecycle (MKV-SES-*), against the spec's transition table."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from memkv.conformance.support import Context, check, expect_code, kept, outcome, payload, put_ok
from memkv.conformance.timing import scaled
from memkv.errors import ErrorCode
from memkv.sessions import TRANSITIONS, SessionEvent, SessionState
from memkv.transport import PutItem, Transport

E = ErrorCode
S = SessionState
HOUR = 3600.0
MAX_TTL = 30 * 24 * 3600.0


def _stored(memkv: Context, t: Transport, n: int, size: int = 256) -> list[bytes]:
    keys = [memkv.key() for _ in range(n)]
    for i, key in enumerate(keys):
        put_ok(t, key, payload(memkv.rng.randrange(2**32) + i, size), "MKV-SES-003")
    return keys


def _in_state(t: Transport, keys: list[bytes], state: SessionState) -> str:
    sid = t.open_session(HOUR, keys[:1]).session_id
    if state is S.SUSPENDED:
        t.suspend(sid, HOUR)
    elif state is S.CLOSED:
        t.close_session(sid)
    return sid


_OPS: dict[SessionEvent, Callable[[Transport, str, list[bytes]], Any]] = {
    SessionEvent.APPEND: lambda t, sid, keys: t.append(sid, keys[1:2]),
    SessionEvent.SUSPEND: lambda t, sid, keys: t.suspend(sid, HOUR),
    SessionEvent.RESUME: lambda t, sid, keys: t.resume(sid),
    SessionEvent.FORK: lambda t, sid, keys: t.fork(sid, 1),
    SessionEvent.CLOSE: lambda t, sid, keys: t.close_session(sid),
}


@pytest.mark.requirement("MKV-SES-001", "MKV-SES-007", "MKV-ERR-001")
@pytest.mark.parametrize("state", [S.OPEN, S.SUSPENDED, S.CLOSED], ids=lambda s: s.value)
@pytest.mark.parametrize("event", list(_OPS), ids=lambda e: e.value)
def test_state_machine_transitions(memkv: Context, state: SessionState, event: SessionEvent) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 2)
    sid = _in_state(t, keys, state)
    code, _ = outcome(lambda: _OPS[event](t, sid, keys))
    repro = f"open; {'suspend; ' if state is S.SUSPENDED else ''}{'close; ' if state is S.CLOSED else ''}{event.value}"
    if state is S.CLOSED:
        check("MKV-SES-007", code is E.UNKNOWN_SESSION, f"{event.value} on a closed session", "UNKNOWN_SESSION",
              code.name, repro)
        return
    allowed = (state, event) in TRANSITIONS
    want = E.OK if allowed else E.INVALID_SESSION_STATE
    check("MKV-SES-001", code is want, f"{event.value} on a {state.value} session", want.name, code.name, repro)
    if allowed and event is not SessionEvent.CLOSE:
        after = t.session_info(sid).state
        check("MKV-SES-001", after is TRANSITIONS[(state, event)], f"state after {event.value}",
              TRANSITIONS[(state, event)].value, after.value, repro)


@pytest.mark.requirement("MKV-SES-002", "MKV-ERR-001")
def test_open_gives_unique_ids_and_unknown_ids_are_refused(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 2)
    ids = [t.open_session(HOUR).session_id for _ in range(20)]
    check("MKV-SES-002", len(set(ids)) == 20, "20 opens give 20 distinct ids", 20, len(set(ids)))
    info = t.session_info(ids[0])
    check("MKV-SES-002", info.state is S.OPEN and info.keys == (), "a new session is open and empty",
          "open, ()", f"{info.state.value}, {info.keys}")
    for event, op in _OPS.items():
        expect_code("MKV-SES-002", f"{event.value} of an unknown session id", lambda op=op: op(t, "no-such-session",  # type: ignore[misc]
                    keys), [E.UNKNOWN_SESSION])
    expect_code("MKV-SES-002", "session_info of an unknown id", lambda: t.session_info("nope"), [E.UNKNOWN_SESSION])
    expect_code("MKV-SES-002", "invalidate_session of an unknown id", lambda: t.invalidate_session("nope"),
                [E.UNKNOWN_SESSION])


@pytest.mark.requirement("MKV-SES-003", "MKV-ERR-002")
def test_append_extends_accepts_only_stored_keys_and_refreshes_ttl(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 4)
    started = time.monotonic()
    info = t.open_session(HOUR, keys[:1])
    time.sleep(0.05)
    after = t.append(info.session_id, keys[1:3])
    elapsed = time.monotonic() - started
    check("MKV-SES-003", after.keys == tuple(keys[:3]), "append extends the chain", 3, len(after.keys))
    check("MKV-SES-003", after.expires_at > info.expires_at, "append refreshes the TTL", f"> {info.expires_at}",
          after.expires_at)
    # refreshed to the same TTL from the append: the expiry moves by the time between open and append
    check("MKV-SES-003", after.expires_at - info.expires_at <= elapsed + scaled(1.0), "append refreshes the TTL "
          "to the session's TTL counted from the append", f"expires_at later by at most {elapsed:.2f} s",
          f"later by {after.expires_at - info.expires_at:.2f} s", "open_session(3600 s); wait 0.05 s; append")
    missing = memkv.key()
    expect_code("MKV-SES-003", "append of a key that is not stored",
                lambda: t.append(info.session_id, [keys[3], missing]), [E.NOT_FOUND])
    now = t.session_info(info.session_id)
    check("MKV-SES-003", now.keys == tuple(keys[:3]), "a refused append leaves the session unchanged",
          3, len(now.keys))


@pytest.mark.requirement("MKV-SES-004")
def test_suspended_session_blocks_are_pinned(memkv: Context) -> None:
    small = memkv.small(2 * 1024 * 1024)
    t = small.transport()
    unit = 64 * 1024
    pinned = [small.key() for _ in range(24)]
    datas = {k: payload(i, unit) for i, k in enumerate(pinned)}
    for k in pinned:
        put_ok(t, k, datas[k], "MKV-SES-004")
    sid = t.open_session(HOUR, pinned).session_id
    t.suspend(sid, HOUR)
    for i in range(64):
        t.put([PutItem(small.key(), payload(1000 + i, unit))])
    t.put([PutItem(small.key(), payload(5000, 1024 * 1024 + unit))])
    lost = [k.hex() for k in pinned if not t.exists([k])[0]]
    check("MKV-SES-004", not lost, "blocks of a suspended session survive pressure of 2x capacity",
          "all 24 pinned blocks present", f"{len(lost)} lost", "put 24 blocks of 64 KiB into a 2 MiB target; "
          "open+suspend a session on them; "
          "put 64 blocks of the same size and one of 1 MiB")
    for k in pinned:
        kept("MKV-SES-004", t, k, datas[k], "a pinned block")
    t.resume(sid)
    t.close_session(sid)


@pytest.mark.requirement("MKV-SES-005", "MKV-INV-006", "MKV-SES-004")
def test_resume_returns_longest_valid_prefix_and_truncates(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 5)
    started = time.monotonic()
    opened = t.open_session(HOUR, keys)
    sid = opened.session_id
    suspended = t.suspend(sid, HOUR / 2)
    t.invalidate_keys([keys[2]])
    res = t.resume(sid)
    check("MKV-SES-005", res.valid_keys == tuple(keys[:2]), "resume returns the prefix before the invalidated block",
          2, len(res.valid_keys))
    info = t.session_info(sid)
    elapsed = time.monotonic() - started + scaled(1.0)
    check("MKV-SES-005", info.keys == tuple(keys[:2]) and info.state is S.OPEN, "resume truncates the chain",
          "2 keys, open", f"{len(info.keys)} keys, {info.state.value}")
    # expiries are the target's instants: their differences are durations the suite can bound
    repro = "open_session(3600 s); suspend(1800 s); resume"
    check("MKV-SES-004", abs(suspended.expires_at - opened.expires_at + HOUR / 2) <= elapsed, "suspend sets the "
          "expiry to now plus the pause TTL", f"{HOUR / 2:.0f} s before the open's expiry, within {elapsed:.2f} s",
          f"{opened.expires_at - suspended.expires_at:.2f} s before", repro)
    check("MKV-SES-005", abs(info.expires_at - opened.expires_at) <= elapsed, "resume sets the expiry to now plus "
          "the TTL", f"the open's expiry within {elapsed:.2f} s", f"{info.expires_at - opened.expires_at:.2f} s off",
          repro)


@pytest.mark.requirement("MKV-SES-006")
def test_fork_is_independent(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 5)
    parent = t.open_session(HOUR, keys[:4])
    child = t.fork(parent.session_id, 2)
    check("MKV-SES-006", child.session_id != parent.session_id and child.state is S.OPEN,
          "fork gives a new open session", "new id, open", child)
    check("MKV-SES-006", child.keys == tuple(keys[:2]), "child shares the first n keys", 2, len(child.keys))
    t.append(child.session_id, [keys[4]])
    t.close_session(child.session_id)
    now = t.session_info(parent.session_id)
    check("MKV-SES-006", now.keys == tuple(keys[:4]) and now.state is S.OPEN,
          "the parent is unchanged by fork and by the child's life", "4 keys, open",
          f"{len(now.keys)} keys, {now.state.value}")
    t.suspend(parent.session_id, HOUR)
    sub = t.fork(parent.session_id)
    check("MKV-SES-006", sub.keys == tuple(keys[:4]) and sub.state is S.OPEN, "fork of a suspended session",
          "4 keys, open", f"{len(sub.keys)}, {sub.state.value}")
    check("MKV-SES-006", t.session_info(parent.session_id).state is S.SUSPENDED, "the parent stays suspended",
          "suspended", t.session_info(parent.session_id).state.value)


@pytest.mark.requirement("MKV-SES-007")
def test_close_releases_pins(memkv: Context) -> None:
    small = memkv.small(2 * 1024 * 1024)
    t = small.transport()
    unit = 64 * 1024
    pinned = [small.key() for _ in range(20)]
    for i, k in enumerate(pinned):
        put_ok(t, k, payload(i, unit), "MKV-SES-007")
    sid = t.open_session(HOUR, pinned).session_id
    t.suspend(sid, HOUR)
    t.close_session(sid)
    expect_code("MKV-SES-007", "session_info after close", lambda: t.session_info(sid), [E.UNKNOWN_SESSION])
    big = small.key()
    expect_code("MKV-SES-007", "a put needing the closed session's space", lambda: t.put([PutItem(big, payload(
        9, 1024 * 1024 + unit))]), [E.OK], "pin 20 x 64 KiB of a 2 MiB store; close; put 1 MiB + 64 KiB")


@pytest.mark.requirement("MKV-SES-008")
def test_expiry(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 2)
    a = t.open_session(0.3, keys).session_id
    b = t.open_session(HOUR, keys).session_id
    t.suspend(b, 0.3)
    time.sleep(0.6)
    for sid, what in ((a, "open session past its TTL"), (b, "suspended session past its pause TTL")):
        expect_code("MKV-SES-008", f"append on an {what}", lambda sid=sid: t.append(sid, keys[:1]),  # type: ignore[misc]
                    [E.SESSION_EXPIRED])
        expect_code("MKV-SES-008", f"resume of an {what}", lambda sid=sid: t.resume(sid),  # type: ignore[misc]
                    [E.SESSION_EXPIRED])


@pytest.mark.requirement("MKV-SES-008")
def test_expiry_releases_pins(memkv: Context) -> None:
    small = memkv.small(2 * 1024 * 1024)
    t = small.transport()
    unit = 64 * 1024
    pinned = [small.key() for _ in range(20)]
    for i, k in enumerate(pinned):
        put_ok(t, k, payload(i, unit), "MKV-SES-008")
    sid = t.open_session(HOUR, pinned).session_id
    t.suspend(sid, 0.3)
    time.sleep(0.6)
    expect_code("MKV-SES-008", "a put needing the expired session's space",
                lambda: t.put([PutItem(small.key(), payload(9, 1024 * 1024 + unit))]), [E.OK],
                "pin 20 x 64 KiB of a 2 MiB store with pause TTL 0.3 s; wait 0.6 s; put 1 MiB + 64 KiB")


@pytest.mark.requirement("MKV-SES-009", "MKV-ERR-001")
def test_ttl_bounds(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 1)
    for ttl in (0, -1.0, MAX_TTL + 1, float("inf"), float("nan")):
        expect_code("MKV-SES-009", f"open with ttl {ttl}", lambda ttl=ttl: t.open_session(ttl), [E.INVALID_ARGUMENT])  # type: ignore[misc]
    sid = t.open_session(MAX_TTL, keys).session_id
    for ttl in (0, MAX_TTL + 1):
        expect_code("MKV-SES-009", f"suspend with pause ttl {ttl}", lambda ttl=ttl: t.suspend(sid, ttl),  # type: ignore[misc]
                    [E.INVALID_ARGUMENT])
        expect_code("MKV-SES-009", f"fork with ttl {ttl}", lambda ttl=ttl: t.fork(sid, None, ttl),  # type: ignore[misc]
                    [E.INVALID_ARGUMENT])
    check("MKV-SES-009", t.session_info(sid).state is S.OPEN, "refused TTLs leave the session open", "open",
          t.session_info(sid).state.value)
    t.suspend(sid, MAX_TTL)
