"""Storage faults: memory never ahead of the index, fail-stop, spec errors (MKV-DUR-008/009, MKV-ERR-010).

The faults come from memkv/store/faultinject.py, which sits under the real I/O engine and the
real SQLite connection and fails the Nth operation of a kind.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from helpers_store import KiB, check_space, key, open_engine, payload

from memkv.errors import ErrorCode, Unavailable
from memkv.store.engine import StorageEngine
from memkv.store.fault_sweep import sweep
from memkv.store.faultinject import FaultPlan, interpose
from memkv.store.io_engines import uring_status
from memkv.transport import PutItem

SIZE = 300 * KiB
ENGINES = ["threads", pytest.param("uring", marks=pytest.mark.skipif(
    not uring_status()[0], reason="io_uring is not available here"))]


def _fail_next(plan: FaultPlan, kind: str, fault: str, after: int = 1) -> None:
    """Arm `plan` to fail the `after`-th next operation of `kind`."""
    plan.kind, plan.fault, plan.at, plan.fired = kind, fault, plan.counts[kind] + after, False


def _faulty(directory: Path, **options: object) -> tuple[StorageEngine, FaultPlan]:
    """An engine whose storage goes through a fault plan that fails nothing until armed."""
    engine = open_engine(directory, **options)
    plan = FaultPlan()
    interpose(engine, plan)
    return engine, plan


def _code(outcome: object) -> object:
    """The error code of an item result or of a raised spec error."""
    return getattr(outcome, "status", getattr(outcome, "code", None))


def _put(engine: StorageEngine, *ids: int) -> None:
    results = engine.put("ns", [PutItem(key(i), payload(i, SIZE)) for i in ids])
    assert all(r.ok for r in results), results


def _reads_back(engine: StorageEngine, i: int) -> bool:
    dest = bytearray(SIZE)
    result = engine.get_into("ns", [key(i)], [dest])[0]
    return result.ok and bytes(dest) == payload(i, SIZE)


REMOVALS = {
    "delete": lambda e: e.delete("ns", [key(1)])[0],
    "invalidate": lambda e: e.invalidate_keys("ns", [key(1)]),
    "invalidate-namespace": lambda e: e.invalidate_namespace("ns"),
}


@pytest.mark.requirement("MKV-DUR-008", "MKV-ERR-010", "MKV-ERR-002")
@pytest.mark.parametrize("fault", ["sqlite-full", "sqlite-ioerr"])
@pytest.mark.parametrize("path", sorted(REMOVALS))
def test_a_removal_whose_commit_fails_changes_nothing(store_dir: Path, path: str, fault: str) -> None:
    """The index's COMMIT fails: the block stays, its extents are not reused, it survives a restart."""
    engine, plan = _faulty(store_dir)
    _put(engine, 1, 2)
    _fail_next(plan, "index", fault, after=2)  # DELETE, then the COMMIT that fails
    try:
        outcome = REMOVALS[path](engine)
    except Exception as exc:
        outcome = exc
    assert plan.fired
    assert _code(outcome) is ErrorCode.UNAVAILABLE, outcome
    assert engine.exists("ns", [key(1), key(2)]) == [True, True]
    check_space(engine)
    if fault == "sqlite-full":  # a full index disk is transient: writes go on, elsewhere
        _put(engine, 3)
        assert _reads_back(engine, 3)
    engine.close()
    engine = open_engine(store_dir)
    try:
        assert _reads_back(engine, 1) and _reads_back(engine, 2)
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-008", "MKV-ERR-010")
def test_an_eviction_whose_commit_fails_evicts_nothing(store_dir: Path) -> None:
    engine, plan = _faulty(store_dir, capacity=2 * 1024 * KiB, unit=64 * KiB)
    stored = []
    for i in range(100):
        if engine.stats()["free_bytes"] < SIZE:
            break
        _put(engine, i)
        stored.append(i)
    _fail_next(plan, "index", "sqlite-full", after=2)
    result = engine.put("ns", [PutItem(key(500), payload(500, SIZE))])[0]
    assert plan.fired and result.status is ErrorCode.UNAVAILABLE
    assert all(engine.exists("ns", [key(i) for i in stored]))
    check_space(engine)
    engine.close()
    engine = open_engine(store_dir, capacity=2 * 1024 * KiB, unit=64 * KiB)
    try:
        assert all(_reads_back(engine, i) for i in stored)
        assert engine.exists("ns", [key(500)]) == [False]
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-008")
def test_a_session_change_whose_commit_fails_moves_no_pin(store_dir: Path) -> None:
    engine, plan = _faulty(store_dir)
    try:
        _put(engine, 1)
        info = engine.open_session("ns", 60.0, [key(1)])
        _fail_next(plan, "index", "sqlite-full")
        with pytest.raises(Unavailable):
            engine.suspend("ns", info.session_id, 60.0)
        assert engine.session_info("ns", info.session_id).state == info.state
        assert not engine.protection.pins
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-009")
def test_a_failed_fdatasync_stops_writes_for_good(store_dir: Path) -> None:
    engine, plan = _faulty(store_dir)
    try:
        _put(engine, 1)
        _fail_next(plan, "sync", "eio")
        with pytest.raises(Unavailable):
            engine.flush()
        assert engine.failure is not None and "fdatasync" in engine.failure
        refused = engine.put("ns", [PutItem(key(2), payload(2, SIZE))])[0]
        assert refused.status is ErrorCode.UNAVAILABLE and "fdatasync" in refused.message
        assert engine.delete("ns", [key(1)])[0].status is ErrorCode.UNAVAILABLE
        assert _reads_back(engine, 1), "reads of committed blocks go on"
        syncs = plan.counts["sync"]
        engine.flush()  # never retried: a second fsync could lie
        assert plan.counts["sync"] == syncs and engine.failure is not None
    finally:
        engine.close()
    engine = open_engine(store_dir)  # a restart clears it
    try:
        assert engine.failure is None and _reads_back(engine, 1)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-ERR-010")
@pytest.mark.parametrize("io", ENGINES)
def test_a_device_read_error_is_unavailable_and_keeps_the_block(store_dir: Path, io: str) -> None:
    engine, plan = _faulty(store_dir, io=io)
    try:
        _put(engine, 1)
        _fail_next(plan, "read", "eio")
        result = engine.get_into("ns", [key(1)], [bytearray(SIZE)])[0]
        assert plan.fired and result.status is ErrorCode.UNAVAILABLE
        assert engine.exists("ns", [key(1)]) == [True] and _reads_back(engine, 1)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-ERR-010", "MKV-ERR-002")
@pytest.mark.parametrize("fault", ["eio", "enospc", "short"])
@pytest.mark.parametrize("io", ENGINES)
def test_a_failed_payload_write_is_unavailable_and_frees_its_space(store_dir: Path, io: str, fault: str) -> None:
    engine, plan = _faulty(store_dir, io=io)
    try:
        _fail_next(plan, "write", fault)
        result = engine.put("ns", [PutItem(key(1), payload(1, SIZE))])[0]
        assert plan.fired and result.status is ErrorCode.UNAVAILABLE
        assert engine.stats()["used_bytes"] == 0 and engine.exists("ns", [key(1)]) == [False]
        check_space(engine)
        _put(engine, 1)
        assert _reads_back(engine, 1)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-008", "MKV-DUR-009", "MKV-ERR-010", "MKV-DUR-001")
@pytest.mark.parametrize("io", ENGINES)
def test_fault_sweep_over_every_operation(io: str, tmp_path: Path) -> None:
    """Every fault at every device write, read, fdatasync and index change of the scenario."""
    report = sweep(io, scratch=str(tmp_path))
    assert report.counts["write"] >= 10 and report.counts["index"] >= 20, report.counts
    assert report.runs >= sum(report.counts.values()) and report.faults_fired >= report.runs * 3 // 4
    assert report.failed_steps > 0
    assert report.violations == []
    assert (report.lost, report.resurrected, report.corrupt) == (0, 0, 0)


@pytest.mark.requirement("MKV-DUR-009", "MKV-ADM-001")
def test_the_server_reports_a_fail_stop_on_health_and_refuses_writes(tmp_path: Path) -> None:
    import json
    import urllib.error
    import urllib.request

    import memkv
    from memkv.server.testing import in_process_server

    srv = in_process_server(str(tmp_path / "data"), None, insecure_no_auth=True, admin_listen="127.0.0.1:0",
                            unit="64KiB")
    try:
        plan = FaultPlan()
        interpose(srv.engine, plan)
        client = memkv.connect(f"memkv+tcp://{srv.address[0]}:{srv.address[1]}", namespace="ns")
        try:
            assert client.put([PutItem(key(1), payload(1, SIZE))])[0].ok
            _fail_next(plan, "sync", "eio")
            with pytest.raises(Unavailable):
                srv.engine.flush()
            refused = client.put([PutItem(key(2), payload(2, SIZE))])[0]
            assert refused.status is ErrorCode.UNAVAILABLE and "fdatasync" in refused.message
            assert client.get([key(1)]) == [payload(1, SIZE)], "the connection and reads go on"
        finally:
            client.close()
        host, port = srv.admin_address or ("", 0)
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://{host}:{port}/v1/health", timeout=5)
        assert answer.value.code == 503
        body = json.loads(answer.value.read())
        assert body["status"] == "unhealthy" and "fdatasync" in body["checks"]["storage"]
    finally:
        srv.shutdown()


@pytest.mark.requirement("MKV-ERR-010")
def test_a_sparse_device_on_tmpfs_is_never_memory_mapped(tmp_path: Path) -> None:
    """A hole written through a mapping on a full tmpfs is SIGBUS; through pwrite it is ENOSPC."""
    import os
    import uuid

    sparse = Path("/dev/shm") / f"memkv-sparse-{uuid.uuid4().hex}.img"
    with sparse.open("wb") as handle:
        handle.truncate(16 * 1024 * 1024)
    try:
        engine = open_engine(tmp_path / "store", device_path=str(sparse), format_device=True)
        try:
            assert not engine.device.direct, "tmpfs is buffered"
            assert engine.device.mapping() is None
            _put(engine, 1)
            assert _reads_back(engine, 1)
        finally:
            engine.close()
        fd = os.open(sparse, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, 16 * 1024 * 1024)
        finally:
            os.close(fd)
        engine = open_engine(tmp_path / "store", device_path=str(sparse))
        try:
            assert engine.device.mapping() is not None, "a fully allocated tmpfs device is still mapped"
        finally:
            engine.close()
    finally:
        sparse.unlink()


@pytest.mark.requirement("MKV-DUR-002", "MKV-DUR-009")
def test_the_background_flush_survives_a_full_index_disk(store_dir: Path) -> None:
    """A transient SQLITE_FULL in the flusher's round must not end the flusher (only closing does)."""
    engine, plan = _faulty(store_dir)
    flusher = threading.Thread(target=engine._flush_loop, args=(0.05,))  # the engine's own one sleeps an hour
    try:
        _put(engine, 1)
        assert _reads_back(engine, 1)  # a read records an access time: the next flush writes it first
        _fail_next(plan, "index", "sqlite-full")
        syncs = plan.counts["sync"]
        flusher.start()
        deadline = time.monotonic() + 10
        while plan.counts["sync"] <= syncs + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert plan.fired and plan.counts["sync"] > syncs + 1, "the flusher stopped after a transient error"
        assert engine.failure is None
    finally:
        engine.close()
        flusher.join()


@pytest.mark.requirement("MKV-ERR-010")
def test_a_device_read_error_in_a_streamed_get_is_unavailable_not_corrupted(tmp_path: Path) -> None:
    """The server's get streams from the device; a read error part-way used to be padded with
    zeros, so the client reported CORRUPTED for a block that was kept and reads fine later."""
    import memkv
    from memkv.server.testing import in_process_server

    srv = in_process_server(str(tmp_path / "data"), None, insecure_no_auth=True, admin_listen="off", unit="64KiB")
    try:
        big = payload(7, 6 * 1024 * KiB)
        plan = FaultPlan()
        interpose(srv.engine, plan)
        client = memkv.connect(f"memkv+tcp://{srv.address[0]}:{srv.address[1]}", namespace="ns", timeout=10)
        try:
            assert client.put([PutItem(key(7), big)])[0].ok
            _fail_next(plan, "read", "eio", after=2)  # the second piece: the answer has started
            with pytest.raises(Unavailable):
                client.get_into([key(7)], [bytearray(len(big))])
            assert plan.fired
            assert client.get([key(7)]) == [big], "the block is kept and the client reconnects"
        finally:
            client.close()
    finally:
        srv.shutdown()
