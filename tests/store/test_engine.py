"""The storage engine on its own: restart, refused requests change nothing, corruption, closing."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from helpers_store import Clock, KiB, MiB, check_space, extents_of, key, open_engine, payload, snapshot

from memkv.blocks import BlockMeta, Limits
from memkv.checksum import payload_checksum
from memkv.errors import (
    Corrupted,
    ErrorCode,
    InvalidArgument,
    InvalidKey,
    LimitExceeded,
    NotFound,
    Unavailable,
    UnknownSession,
)
from memkv.keys import model_fingerprint
from memkv.sessions import SessionState
from memkv.store.embedded import FileTransport
from memkv.store.engine import StorageEngine
from memkv.transport import PutItem

NS = "ns"


@pytest.mark.requirement("MKV-DUR-001", "MKV-BLK-003")
def test_clean_restart_keeps_blocks_metadata_sessions_and_pins(store_dir: Path) -> None:
    clock = Clock()
    engine = open_engine(store_dir, capacity=4 * MiB + 256 * KiB, clock=clock)
    fp = model_fingerprint("llama", dtype="bf16")
    metas = [BlockMeta(fingerprint=fp, parent=key(i - 1) if i else bytes(16), dtype="bf16", token_count=16 * i,
                       layer_first=1, layer_last=31, tp_rank=i % 2, tp_size=2, user=b"u" * i) for i in range(6)]
    sizes = [1, 4097, 256 * KiB, 300_000, 200_000, 7]
    items = [PutItem(key(i), payload(i, n), metas[i]) for i, n in enumerate(sizes)]
    assert all(r.ok for r in engine.put(NS, items))
    assert engine.put("other", [PutItem(key(0), payload(100, 10))])[0].ok
    open_s = engine.open_session(NS, 600, [key(0), key(1)], fingerprint=fp)
    suspended = engine.open_session(NS, 600, [key(2), key(3), key(2)])
    engine.suspend(NS, suspended.session_id, 900)
    before = snapshot(engine)
    engine.close()

    engine = open_engine(store_dir, clock=clock)
    try:
        assert snapshot(engine) == before
        for i, n in enumerate(sizes):
            buf = bytearray(n)
            (res,) = engine.get_into(NS, [key(i)], [buf])
            assert res.ok and res.meta == metas[i] and bytes(buf) == payload(i, n)
        assert engine.session_info(NS, open_s.session_id) == open_s
        info = engine.session_info(NS, suspended.session_id)
        assert info.state is SessionState.SUSPENDED and info.keys == (key(2), key(3), key(2))
        # the pins survived: a store full of other data evicts everything but the pinned blocks
        for i in range(10, 40):
            engine.put(NS, [PutItem(key(i), payload(i, 256 * KiB))])
        assert engine.exists(NS, [key(2), key(3)]) == [True, True]
        check_space(engine)
        # and resume still releases them (the pin count was rebuilt right)
        engine.resume(NS, suspended.session_id)
        assert engine.stats()["pinned_blocks"] == 0 and not engine.protection.pins
    finally:
        engine.close()


@pytest.mark.requirement("MKV-OPS-001")
def test_multi_extent_block_round_trips(store_dir: Path) -> None:
    engine = open_engine(store_dir, capacity=2 * MiB + 64 * KiB, unit=64 * KiB)
    try:
        fillers = [PutItem(key(i), payload(i, 64 * KiB)) for i in range(32)]
        for batch in range(0, 32, 8):
            assert all(r.ok for r in engine.put(NS, fillers[batch : batch + 8]))
        assert engine.stats()["free_bytes"] == 0
        for batch in range(0, 32, 8):
            engine.delete(NS, [key(i) for i in range(batch, batch + 8, 2)])  # 16 holes of one unit
        big = payload(99, 10 * 64 * KiB - 3)
        assert engine.put(NS, [PutItem(key(99), big)])[0].ok
        assert len(extents_of(engine, NS, key(99))) == 10
        buf = bytearray(len(big))
        assert engine.get_into(NS, [key(99)], [buf])[0].ok and bytes(buf) == big
        check_space(engine)
    finally:
        engine.close()


def _refused(engine: StorageEngine, call: object, code: ErrorCode) -> None:
    before = snapshot(engine)
    assert callable(call)
    try:
        result = call()
    except Exception as exc:
        assert getattr(exc, "code", None) is code, repr(exc)
    else:
        statuses = [r.status for r in result]
        assert statuses == [code] * len(statuses), statuses
    assert snapshot(engine) == before


@pytest.mark.requirement("MKV-ERR-002", "MKV-KEY-001", "MKV-BLK-002", "MKV-BLK-004", "MKV-BLK-005",
                         "MKV-BLK-007", "MKV-OPS-004", "MKV-OPS-005", "MKV-SES-002", "MKV-SES-003",
                         "MKV-CAP-003", "MKV-NS-003")
def test_refused_requests_change_nothing(store_dir: Path) -> None:
    limits = Limits(max_block_size=1 * MiB, max_batch=4, max_user_meta=16)
    engine = open_engine(store_dir, capacity=2 * MiB + 512 * KiB, limits=limits)
    try:
        assert all(r.ok for r in engine.put(NS, [PutItem(key(i), payload(i, 300 * KiB)) for i in range(3)]))
        sid = engine.open_session(NS, 60, [key(0)]).session_id
        good = payload(50, 1000)
        cases = {
            "short key": (lambda: engine.put(NS, [PutItem(b"k" * 15, good)]), ErrorCode.INVALID_KEY),
            "long key": (lambda: engine.put(NS, [PutItem(b"k" * 17, good)]), ErrorCode.INVALID_KEY),
            "key not bytes": (lambda: engine.put(NS, [PutItem("k" * 16, good)]), ErrorCode.INVALID_KEY),  # type: ignore[arg-type]
            "too large": (lambda: engine.put(NS, [PutItem(key(50), bytes(MiB + 1))]), ErrorCode.BLOCK_TOO_LARGE),
            "empty": (lambda: engine.put(NS, [PutItem(key(50), b"")]), ErrorCode.INVALID_ARGUMENT),
            "bad checksum": (lambda: engine.put(NS, [PutItem(key(50), good, checksum=payload_checksum(good) ^ 1)]),
                             ErrorCode.CHECKSUM_MISMATCH),
            "meta too big": (lambda: engine.put(NS, [PutItem(key(50), good, BlockMeta(user=b"x" * 17))]),
                             ErrorCode.LIMIT_EXCEEDED),
            "conflict": (lambda: engine.put(NS, [PutItem(key(0), good)]), ErrorCode.KEY_CONFLICT),
            "batch put": (lambda: engine.put(NS, [PutItem(key(60 + i), good) for i in range(5)]),
                          ErrorCode.LIMIT_EXCEEDED),
            "batch get": (lambda: engine.get_into(NS, [key(0)] * 5, [bytearray(MiB)] * 5), ErrorCode.LIMIT_EXCEEDED),
            "batch delete": (lambda: engine.delete(NS, [key(i) for i in range(5)]), ErrorCode.LIMIT_EXCEEDED),
            "batch invalidate": (lambda: engine.invalidate_keys(NS, [key(i) for i in range(5)]),
                                 ErrorCode.LIMIT_EXCEEDED),
            "batch lookup": (lambda: engine.lookup(NS, [key(i) for i in range(5)], 1000), ErrorCode.LIMIT_EXCEEDED),
            "short buffer": (lambda: engine.get_into(NS, [key(0)], [bytearray(300 * KiB - 1)]),
                             ErrorCode.BUFFER_TOO_SMALL),
            "missing": (lambda: engine.get_into(NS, [key(77)], [bytearray(10)]), ErrorCode.NOT_FOUND),
            "delete missing": (lambda: engine.delete(NS, [key(77)]), ErrorCode.NOT_FOUND),
            "store full": (lambda: engine.put(NS, [PutItem(key(51), bytes(MiB))]), ErrorCode.CAPACITY_EXCEEDED),
            "unknown session": (lambda: engine.append(NS, "nope", [key(1)]), ErrorCode.UNKNOWN_SESSION),
            "suspend unknown": (lambda: engine.suspend(NS, "nope", 10), ErrorCode.UNKNOWN_SESSION),
            "session elsewhere": (lambda: engine.resume("other", sid), ErrorCode.UNKNOWN_SESSION),
            "append missing key": (lambda: engine.append(NS, sid, [key(1), key(77)]), ErrorCode.NOT_FOUND),
            "append bad key": (lambda: engine.append(NS, sid, [b"x"]), ErrorCode.INVALID_KEY),
            "bad ttl": (lambda: engine.open_session(NS, 0), ErrorCode.INVALID_ARGUMENT),
            "bad pause": (lambda: engine.suspend(NS, sid, 31 * 24 * 3600), ErrorCode.INVALID_ARGUMENT),
            "bad namespace": (lambda: engine.put("bad/ns", [PutItem(key(50), good)]), ErrorCode.INVALID_ARGUMENT),
            "long lease": (lambda: engine.lookup(NS, [key(0)], limits.max_lease_ms + 1), ErrorCode.INVALID_ARGUMENT),
        }
        # make the store full of pinned data for "store full": lease everything
        lease = engine.lookup(NS, [key(0), key(1), key(2)], 60_000)
        assert lease.prefix_len == 3
        for name, (call, code) in cases.items():
            try:
                _refused(engine, call, code)
            except AssertionError as exc:
                raise AssertionError(f"case {name!r}: {exc}") from exc
        assert engine.stats()["errors"]  # the refusals were counted
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-OPS-003")
def test_one_bad_item_does_not_change_the_others(store_dir: Path) -> None:
    engine = open_engine(store_dir)
    try:
        results = engine.put(NS, [PutItem(key(1), b"a"), PutItem(b"short", b"b"), PutItem(key(2), b"")])
        assert [r.status for r in results] == [ErrorCode.OK, ErrorCode.INVALID_KEY, ErrorCode.INVALID_ARGUMENT]
        assert engine.exists(NS, [key(1), key(2)]) == [True, False]
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-BLK-006", "MKV-DUR-004")
@pytest.mark.parametrize("direct", ["1", "0"])
def test_corrupted_block_is_reported_and_removed(store_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                 direct: str) -> None:
    monkeypatch.setenv("MEMKV_DIRECT", direct)
    engine = open_engine(store_dir)
    sizes = {1: 300_000, 2: 5000, 3: 100}
    assert all(r.ok for r in engine.put(NS, [PutItem(key(i), payload(i, n)) for i, n in sizes.items()]))
    where = {i: extents_of(engine, NS, key(i)) for i in sizes}
    engine.close()

    image = store_dir / "device.img"
    with image.open("r+b") as f:
        for i, position in ((1, 299_999), (2, 0)):  # the last byte of block 1, the first of block 2
            f.seek(where[i][0].offset + position)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x40]))
        f.seek(where[3][0].offset + 100)  # past the end of block 3: padding, not payload
        f.write(b"\xff")

    engine = open_engine(store_dir)
    transport = FileTransport(engine, NS)
    try:
        used_before = engine.stats()["used_bytes"]
        (res,) = engine.get_into(NS, [key(1)], [bytearray(300_000)])
        assert res.status is ErrorCode.CORRUPTED and res.meta is None
        assert engine.exists(NS, [key(1)]) == [False]
        assert engine.stats()["used_bytes"] == used_before - 512 * KiB
        with pytest.raises(Corrupted):
            transport.get([key(2)])
        assert transport.get([key(2)]) == [None]
        assert transport.get([key(3)]) == [payload(3, 100)]
        assert engine.stats()["errors"].get("CORRUPTED") == 2
        check_space(engine)
    finally:
        transport.close()
    engine = open_engine(store_dir)
    try:
        assert engine.exists(NS, [key(1), key(2), key(3)]) == [False, False, True]
        check_space(engine)
    finally:
        engine.close()


def test_a_corrupt_read_does_not_remove_a_newer_block_under_the_same_key(store_dir: Path) -> None:
    engine = open_engine(store_dir, unit=64 * KiB)
    try:
        engine.put(NS, [PutItem(key(1), payload(1, 1000))])
        real_read = engine._read_into
        replaced = threading.Event()

        def read_then_replace(extents: list, dest: memoryview) -> int:  # type: ignore[type-arg]
            checksum = real_read(extents, dest)
            engine.invalidate_keys(NS, [key(1)])  # meanwhile the key got a new block ...
            assert engine.put(NS, [PutItem(key(1), payload(2, 2000))])[0].ok
            replaced.set()
            return checksum ^ 1  # ... and the read came back damaged

        engine._read_into = read_then_replace  # type: ignore[method-assign]
        (res,) = engine.get_into(NS, [key(1)], [bytearray(1000)])
        engine._read_into = real_read  # type: ignore[method-assign]
        assert replaced.is_set() and res.status is ErrorCode.CORRUPTED
        buf = bytearray(2000)
        assert engine.get_into(NS, [key(1)], [buf])[0].ok and bytes(buf) == payload(2, 2000)
        check_space(engine)
    finally:
        engine.close()


def test_close_waits_for_io_in_flight_and_refuses_new_work(store_dir: Path) -> None:
    engine = open_engine(store_dir)
    entered, release = threading.Event(), threading.Event()
    real_write = engine.device.write

    def slow_write(offset: int, data: memoryview) -> None:
        entered.set()
        assert release.wait(10)
        real_write(offset, data)

    engine.device.write = slow_write  # type: ignore[method-assign]
    results: list[object] = []
    writer = threading.Thread(target=lambda: results.extend(engine.put(NS, [PutItem(key(1), payload(1, 9000))])))
    writer.start()
    assert entered.wait(10)
    closer = threading.Thread(target=engine.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close did not wait for the write in flight"
    with pytest.raises(Unavailable):
        engine.stats()
    release.set()
    writer.join(10)
    closer.join(10)
    assert not closer.is_alive() and results and results[0].ok  # type: ignore[attr-defined]
    assert engine.device.fd == -1
    engine = open_engine(store_dir)
    try:
        assert engine.exists(NS, [key(1)]) == [True]
        engine.close()
        engine.close()  # idempotent
        with pytest.raises(Unavailable):
            engine.put(NS, [PutItem(key(2), b"x")])
        with pytest.raises(Unavailable):
            engine.flush()
    finally:
        engine.close()


def test_background_upkeep_survives_a_failing_round(store_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = open_engine(store_dir, flush_interval_s=0.01)
    calls = {"n": 0}
    real_sweep = engine._sweep

    def flaky_sweep() -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk hiccup")
        real_sweep()

    engine._sweep = flaky_sweep  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="memkv.store.engine"):
        deadline = threading.Event()
        for _ in range(500):
            if calls["n"] >= 3:
                break
            deadline.wait(0.01)
    try:
        assert calls["n"] >= 3, "the upkeep thread died after one failure"
        assert engine._flusher.is_alive()
        assert any("disk hiccup" in (r.exc_text or "") or "sweep failed" in r.getMessage() for r in caplog.records)
    finally:
        engine._sweep = real_sweep  # type: ignore[method-assign]
        engine.close()
    assert not engine._flusher.is_alive()


def test_flush_records_last_access_for_lru_after_restart(store_dir: Path) -> None:
    clock = Clock()
    engine = open_engine(store_dir, capacity=4 * MiB + 256 * KiB, clock=clock)
    engine.put(NS, [PutItem(key(i), payload(i, 256 * KiB)) for i in range(4)])
    clock.advance(10)
    engine.get_into(NS, [key(0)], [bytearray(256 * KiB)])
    engine.close()
    engine = open_engine(store_dir, clock=clock)
    try:
        order = [k for (_, k) in engine.resident.blocks]
        assert order == [key(1), key(2), key(3), key(0)]
    finally:
        engine.close()


def test_engine_errors_are_typed(store_dir: Path) -> None:
    engine = open_engine(store_dir)
    try:
        with pytest.raises(InvalidKey):
            engine.stat(NS, [b"x"])
        with pytest.raises(LimitExceeded):
            engine.stat(NS, [key(1)] * 1000)
        with pytest.raises(UnknownSession):
            engine.session_info(NS, "missing")
        with pytest.raises(InvalidArgument):
            engine.get_into(NS, [key(1)], [])
        assert engine.delete(NS, [key(1)])[0].status is ErrorCode.NOT_FOUND
        with pytest.raises(NotFound):
            engine.delete(NS, [key(1)])[0].raise_for_status()
    finally:
        engine.close()


def test_bad_geometry_is_refused_and_leaves_the_directory_reusable(store_dir: Path) -> None:
    with pytest.raises(InvalidArgument):
        StorageEngine(str(store_dir), capacity=MiB, unit=1000)
    with pytest.raises(InvalidArgument):
        StorageEngine(str(store_dir), capacity=4096, unit=4096)
    with pytest.raises(InvalidArgument):
        StorageEngine(str(store_dir), device_path=str(store_dir / "absent.img"))
    engine = open_engine(store_dir)
    engine.close()
