"""Eviction: least recently used first; never pinned, leased or in-use blocks; all or nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from helpers_store import Clock, KiB, check_space, key, open_engine, payload, snapshot

from memkv.errors import ErrorCode
from memkv.store.allocator import MAX_EXTENTS_PER_BLOCK
from memkv.store.engine import StorageEngine
from memkv.transport import PutItem

NS = "ns"
UNIT = 64 * KiB


def small_store(store_dir: Path, units: int, **options: object) -> StorageEngine:
    """A store whose data area holds exactly `units` allocation units."""
    return open_engine(store_dir, capacity=(units + 1) * UNIT, unit=UNIT, **options)


def put(engine: StorageEngine, i: int, units: int = 1, ns: str = NS) -> ErrorCode:
    return engine.put(ns, [PutItem(key(i), payload(i, units * UNIT - 7))])[0].status


def present(engine: StorageEngine, ids: range | list[int], ns: str = NS) -> list[int]:
    return [i for i, there in zip(ids, engine.exists(ns, [key(i) for i in ids]), strict=True) if there]


@pytest.mark.requirement("MKV-CAP-002")
def test_least_recently_used_goes_first(store_dir: Path) -> None:
    engine = small_store(store_dir, 4)
    try:
        for i in range(4):
            assert put(engine, i) is ErrorCode.OK
        engine.get_into(NS, [key(0)], [bytearray(UNIT)])  # 0 becomes the most recent
        assert put(engine, 4) is ErrorCode.OK
        assert present(engine, range(5)) == [0, 2, 3, 4]
        assert put(engine, 5, units=2) is ErrorCode.OK  # needs two: evicts 2 then 3
        assert present(engine, range(6)) == [0, 4, 5]
        assert engine.stats()["evictions"] == 3
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-CAP-002", "MKV-NS-004")
def test_eviction_crosses_namespaces(store_dir: Path) -> None:
    engine = small_store(store_dir, 2)
    try:
        assert put(engine, 0, ns="a") is ErrorCode.OK
        assert put(engine, 1, ns="b") is ErrorCode.OK
        assert put(engine, 2, ns="b") is ErrorCode.OK
        assert present(engine, [0], ns="a") == [] and present(engine, [1, 2], ns="b") == [1, 2]
    finally:
        engine.close()


@pytest.mark.requirement("MKV-CAP-002", "MKV-CAP-003", "MKV-SES-004", "MKV-ERR-002")
def test_suspended_session_blocks_are_never_evicted(store_dir: Path) -> None:
    engine = small_store(store_dir, 4)
    try:
        for i in range(4):
            put(engine, i)
        sid = engine.open_session(NS, 60, [key(1), key(2)]).session_id
        engine.suspend(NS, sid, 60)
        assert put(engine, 10, units=2) is ErrorCode.OK  # evicts 0 and 3, not the pinned 1, 2
        assert present(engine, range(4)) == [1, 2] and present(engine, [10]) == [10]
        # 2 units evictable, 3 needed: refused, and block 10 is still there
        before = snapshot(engine)
        assert put(engine, 12, units=3) is ErrorCode.CAPACITY_EXCEEDED
        assert snapshot(engine) == before, "a put that could not fit evicted something"
        engine.resume(NS, sid)
        assert put(engine, 12, units=3) is ErrorCode.OK
        assert present(engine, [1, 2, 10, 12]) == [12]  # LRU order: 1, 2, then 10
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-OPS-007", "MKV-CAP-003")
def test_leased_blocks_are_never_evicted_until_release_or_expiry(store_dir: Path) -> None:
    clock = Clock()
    engine = small_store(store_dir, 3, clock=clock)
    try:
        for i in range(3):
            put(engine, i)
        lease = engine.lookup(NS, [key(0), key(1), key(9)], lease_ms=5000)
        assert lease.prefix_len == 2 and lease.lease_id
        assert put(engine, 3) is ErrorCode.OK
        assert present(engine, range(4)) == [0, 1, 3]
        before = snapshot(engine)
        assert put(engine, 4, units=2) is ErrorCode.CAPACITY_EXCEEDED
        assert snapshot(engine) == before
        engine.release_lease(NS, lease.lease_id)
        assert put(engine, 4, units=2) is ErrorCode.OK
        # a lease that ran out protects nothing
        lease = engine.lookup(NS, [key(4)], lease_ms=1000)
        assert put(engine, 5, units=2) is ErrorCode.CAPACITY_EXCEEDED
        clock.advance(1.001)
        assert put(engine, 5, units=2) is ErrorCode.OK
        assert present(engine, [4]) == []
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-CAP-003", "MKV-ERR-002")
def test_fragmented_space_that_cannot_fit_evicts_nothing(store_dir: Path) -> None:
    """Enough evictable bytes, but only as single units between pinned blocks: beyond the extent limit."""
    n = MAX_EXTENTS_PER_BLOCK + 2
    engine = small_store(store_dir, 2 * n)
    try:
        for i in range(2 * n):
            assert put(engine, i) is ErrorCode.OK
        sid = engine.open_session(NS, 60, [key(i) for i in range(1, 2 * n, 2)]).session_id
        engine.suspend(NS, sid, 60)
        before = snapshot(engine)
        assert put(engine, 100, units=MAX_EXTENTS_PER_BLOCK + 1) is ErrorCode.CAPACITY_EXCEEDED
        assert snapshot(engine) == before, "the refused put evicted blocks"
        assert put(engine, 100, units=MAX_EXTENTS_PER_BLOCK) is ErrorCode.OK
        assert present(engine, range(0, 2 * n, 2)) == [2 * MAX_EXTENTS_PER_BLOCK, 2 * MAX_EXTENTS_PER_BLOCK + 2]
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-OPS-012", "MKV-CAP-003")
def test_a_block_being_read_is_neither_evicted_nor_reused(store_dir: Path) -> None:
    engine = small_store(store_dir, 2)
    reading, release = threading.Event(), threading.Event()
    real_read = engine._read_into

    def slow_read(extents: list, dest: memoryview) -> int:  # type: ignore[type-arg]
        real_read(extents, dest)
        reading.set()
        assert release.wait(10)
        return real_read(extents, dest)  # read again after the others acted: the extents must be intact

    try:
        put(engine, 0, units=2)
        engine._read_into = slow_read  # type: ignore[method-assign]
        out = bytearray(2 * UNIT)
        results: list[object] = []
        reader = threading.Thread(target=lambda: results.extend(engine.get_into(NS, [key(0)], [out])))
        reader.start()
        assert reading.wait(10)
        engine._read_into = real_read  # type: ignore[method-assign]
        before = snapshot(engine)
        assert put(engine, 1) is ErrorCode.CAPACITY_EXCEEDED  # the only block is in use
        assert snapshot(engine) == before
        assert engine.invalidate_keys(NS, [key(0)]) == 1  # gone for everyone else at once ...
        assert engine.exists(NS, [key(0)]) == [False]
        assert engine.stats()["free_bytes"] == 0  # ... but its extents stay held by the reader
        assert put(engine, 1) is ErrorCode.CAPACITY_EXCEEDED
        release.set()
        reader.join(10)
        assert results and results[0].ok  # type: ignore[attr-defined]
        assert bytes(out[: 2 * UNIT - 7]) == payload(0, 2 * UNIT - 7)
        assert engine.stats()["free_bytes"] == 2 * UNIT
        assert put(engine, 1) is ErrorCode.OK
        check_space(engine)
    finally:
        release.set()
        engine._read_into = real_read  # type: ignore[method-assign]
        engine.close()


@pytest.mark.requirement("MKV-CAP-002", "MKV-DUR-003")
def test_space_accounting_under_churn(store_dir: Path) -> None:
    engine = small_store(store_dir, 40)
    try:
        for i in range(200):
            assert put(engine, i, units=1 + i % 5) is ErrorCode.OK
            if i % 7 == 0:
                engine.delete(NS, [key(i)])
            if i % 11 == 0:
                engine.invalidate_keys(NS, [key(abs(i - 3)), key(abs(i - 4))])
        check_space(engine)
        assert engine.stats()["used_bytes"] == sum(
            engine.allocator.rounded(live.row.length) for live in engine.resident.blocks.values())
    finally:
        engine.close()
