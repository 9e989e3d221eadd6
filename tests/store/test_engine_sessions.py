"""Sessions inside the engine: expiry on an injected clock, pin counting, invalidation while paused."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_store import Clock, KiB, check_space, key, open_engine, payload, snapshot

from memkv.errors import ErrorCode, InvalidSessionState, SessionExpired, UnknownLease, UnknownSession
from memkv.sessions import SessionState
from memkv.store.engine import EXPIRED_SESSION_RETENTION_S, StorageEngine
from memkv.transport import PutItem

NS = "ns"
UNIT = 64 * KiB


def store(store_dir: Path, clock: Clock, units: int = 6) -> StorageEngine:
    engine = open_engine(store_dir, capacity=(units + 1) * UNIT, unit=UNIT, clock=clock)
    for i in range(4):
        engine.put(NS, [PutItem(key(i), payload(i, UNIT))])
    return engine


def fill(engine: StorageEngine, first: int, count: int) -> list[ErrorCode]:
    return [engine.put(NS, [PutItem(key(i), payload(i, UNIT))])[0].status for i in range(first, first + count)]


@pytest.mark.requirement("MKV-SES-008", "MKV-SES-003")
def test_ttl_expiry_on_the_injected_clock(store_dir: Path) -> None:
    clock = Clock()
    engine = store(store_dir, clock)
    try:
        sid = engine.open_session(NS, 10, [key(0)]).session_id
        clock.advance(9)
        info = engine.append(NS, sid, [key(1)])  # refreshes the TTL
        assert info.expires_at == clock.now + 10
        clock.advance(9.5)
        assert engine.session_info(NS, sid).state is SessionState.OPEN
        clock.advance(0.5)
        assert engine.session_info(NS, sid).state is SessionState.EXPIRED
        for op in (lambda: engine.append(NS, sid, [key(2)]), lambda: engine.suspend(NS, sid, 5),
                   lambda: engine.fork(NS, sid)):
            with pytest.raises(SessionExpired):
                op()
        # expired records are kept for a while, then swept away
        clock.advance(EXPIRED_SESSION_RETENTION_S + 1)
        engine.sweep()
        with pytest.raises(UnknownSession):
            engine.session_info(NS, sid)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-SES-004", "MKV-SES-008", "MKV-CAP-002")
def test_pause_expiry_releases_the_pins_even_without_a_sweep(store_dir: Path) -> None:
    clock = Clock()
    engine = store(store_dir, clock, units=4)
    try:
        sid = engine.open_session(NS, 600, [key(0), key(1), key(2), key(3)]).session_id
        engine.suspend(NS, sid, 5)
        before = snapshot(engine)
        assert fill(engine, 10, 1) == [ErrorCode.CAPACITY_EXCEEDED]
        assert snapshot(engine) == before
        clock.advance(5)
        assert fill(engine, 10, 1) == [ErrorCode.OK]  # the pause ran out: pins released, LRU evicted
        assert engine.exists(NS, [key(0)]) == [False]
        assert engine.session_info(NS, sid).state is SessionState.EXPIRED
        assert not engine.protection.pins and not engine.protection.pinned_until
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-SES-004", "MKV-SES-005", "MKV-SES-007")
def test_pin_counting_with_repeated_keys_and_overlapping_sessions(store_dir: Path) -> None:
    clock = Clock()
    engine = store(store_dir, clock)
    try:
        a = engine.open_session(NS, 600, [key(0), key(1), key(0), key(0)]).session_id
        b = engine.open_session(NS, 600, [key(1), key(2)]).session_id
        engine.suspend(NS, a, 60)
        engine.suspend(NS, b, 60)
        assert engine.protection.pins[(NS, key(0))] == 3 and engine.protection.pins[(NS, key(1))] == 2
        assert engine.stats()["pinned_blocks"] == 3
        child = engine.fork(NS, a, 2)  # a fork of a paused session is open: it pins nothing
        assert child.state is SessionState.OPEN
        assert engine.stats()["pinned_blocks"] == 3
        resumed = engine.resume(NS, a)
        assert resumed.valid_keys == (key(0), key(1), key(0), key(0))
        assert dict(engine.protection.pins) == {(NS, key(1)): 1, (NS, key(2)): 1}
        engine.close_session(NS, b)
        assert not engine.protection.pins
        with pytest.raises(UnknownSession):
            engine.resume(NS, b)
        with pytest.raises(InvalidSessionState):
            engine.resume(NS, a)  # open, not suspended
        # suspend, invalidate a pinned block (invalidation overrides pins), then resume
        engine.suspend(NS, a, 60)
        assert engine.invalidate_keys(NS, [key(1)]) == 1
        resumed = engine.resume(NS, a)
        assert resumed.valid_keys == (key(0),)
        assert not engine.protection.pins
        # a new block under the invalidated key is not pinned by anything left over
        assert fill(engine, 1, 1) == [ErrorCode.OK]
        assert engine.stats()["pinned_blocks"] == 0
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-INV-005", "MKV-INV-006", "MKV-NS-002", "MKV-SES-004")
def test_invalidate_namespace_while_a_session_is_suspended(store_dir: Path) -> None:
    clock = Clock()
    engine = store(store_dir, clock, units=8)
    try:
        engine.put("other", [PutItem(key(0), payload(50, UNIT)), PutItem(key(1), payload(51, UNIT))])
        mine = engine.open_session(NS, 600, [key(0), key(1)]).session_id
        engine.suspend(NS, mine, 60)
        theirs = engine.open_session("other", 600, [key(0), key(1)]).session_id
        engine.suspend("other", theirs, 60)
        lease = engine.lookup(NS, [key(2)], 10_000)
        assert engine.stats()["pinned_blocks"] == 4
        assert engine.invalidate_namespace(NS) == 4
        assert set(engine.protection.pins) == {("other", key(0)), ("other", key(1))}
        assert engine.stats()["pinned_blocks"] == 2 and engine.stats()["leases"] == 0
        with pytest.raises(UnknownSession):
            engine.session_info(NS, mine)
        with pytest.raises(UnknownLease):  # the lease went with the namespace
            engine.release_lease(NS, lease.lease_id or "")
        assert engine.session_info("other", theirs).state is SessionState.SUSPENDED
        # the other namespace's pins still hold against a full store
        assert fill(engine, 10, 8) == [ErrorCode.OK] * 8
        assert engine.exists("other", [key(0), key(1)]) == [True, True]
        too_big = engine.put(NS, [PutItem(key(20), payload(20, 7 * UNIT))])[0]
        assert too_big.status is ErrorCode.CAPACITY_EXCEEDED
        assert engine.put(NS, [PutItem(key(20), payload(20, 6 * UNIT))])[0].ok
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-001", "MKV-SES-008")
def test_a_pause_that_ran_out_while_the_store_was_closed(store_dir: Path) -> None:
    clock = Clock()
    engine = store(store_dir, clock, units=4)
    sid = engine.open_session(NS, 600, [key(0), key(1)]).session_id
    engine.suspend(NS, sid, 30)
    engine.close()
    engine = open_engine(store_dir, clock=clock)
    try:
        assert engine.stats()["pinned_blocks"] == 2
        clock.advance(31)
        assert fill(engine, 10, 4) == [ErrorCode.OK] * 4
        assert engine.session_info(NS, sid).state is SessionState.EXPIRED
    finally:
        engine.close()


@pytest.mark.requirement("MKV-SES-009")
def test_suspend_refused_leaves_the_session_as_it_was(store_dir: Path) -> None:
    clock = Clock()
    engine = store(store_dir, clock)
    try:
        sid = engine.open_session(NS, 100, [key(0)]).session_id
        engine.suspend(NS, sid, 10)
        before = snapshot(engine)
        with pytest.raises(InvalidSessionState):
            engine.suspend(NS, sid, 50)  # already suspended: the pause deadline must not move
        assert snapshot(engine) == before
        assert engine.session_info(NS, sid).expires_at == clock.now + 10
    finally:
        engine.close()
