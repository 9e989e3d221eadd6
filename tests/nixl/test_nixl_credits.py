"""Standing NIXL credits: NIXL_CREDIT, client WRITEs, NIXL_STORE (spec/wire.md 8.1, MKV-WIRE-036..039).

Frames against a `memkv serve --nixl on` subprocess over UCX/TCP, then the server's credit table
on its own with a real staging pool, short times and a real storage engine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import memkv
from memkv.blocks import BlockMeta
from memkv.buffers import address_of
from memkv.checksum import payload_checksum
from memkv.errors import ErrorCode, LimitExceeded, Unavailable, UnknownLease
from memkv.memory_kind import MemoryKind
from memkv.nixl.agent import availability
from memkv.nixl.support import ChunkPool, Pump
from memkv.server.nixl_credits import Credit, CreditTable, credit_piece
from memkv.server.nixl_leases import LeaseTable
from memkv.server.testing import ServerProcess, write_keys_file
from memkv.store.engine import StorageEngine
from memkv.transport import ItemResult, PutItem
from memkv.wire import nixl_leases as lease_msg
from memkv.wire.opcodes import Opcode

NIXL_OK, NIXL_REASON = availability()
MiB = 1024 * 1024
NS = "credits"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch
           ) -> Iterator[tuple[ServerProcess, str]]:
    if not NIXL_OK:
        pytest.skip(NIXL_REASON)
    tmp = tmp_path_factory.mktemp("credits")
    key = write_keys_file(tmp / "keys.yaml", {NS: [("w", "write")]})["w"]
    monkeypatch_module.setenv("UCX_TLS", "tcp")
    with ServerProcess(str(tmp / "store"), str(tmp / "keys.yaml"), capacity="256MiB",
                       extra=["--admin-listen", "off", "--nixl", "on", "--nixl-staging", "32MiB"]) as proc:
        yield proc, key


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _open(served: tuple[ServerProcess, str]) -> Any:
    proc, key = served
    return memkv.connect(f"memkv+nixl://{proc.host}:{proc.port}?transport=nixl&pool_size=1", namespace=NS, key=key)


@pytest.fixture
def client(served: tuple[ServerProcess, str]) -> Iterator[Any]:
    t = _open(served)
    yield t
    t.close()


def _send(t: Any, opcode: Opcode, records: list[bytes]) -> Any:
    return t._nixl_request(opcode, records, pump_needed=False, conn=t.control.connection())


def _answers(t: Any, opcode: Opcode, request: Any) -> Any:
    _, reader, _ = t.control.wait(request)
    answers = lease_msg.read_alloc_answer(reader) if opcode is Opcode.NIXL_CREDIT else reader.results()
    reader.finish()
    return answers


def _call(t: Any, opcode: Opcode, records: list[bytes]) -> Any:
    return _answers(t, opcode, _send(t, opcode, records))


def _credit(t: Any, size: int) -> lease_msg.Grant:
    [(result, grant)] = _call(t, Opcode.NIXL_CREDIT, [lease_msg.pack_credit_item(size)])
    assert result.ok and grant is not None, result.message
    return grant


def _write(t: Any, data: np.ndarray, grant: lease_msg.Grant, use: int) -> None:
    t.register(data)
    for k, start in enumerate(range(0, data.nbytes, grant.piece)):
        size = min(grant.piece, data.nbytes - start)
        posted = t.agent.post("WRITE", [(int(data.ctypes.data) + start, size, 0)], MemoryKind.DRAM,
                              [(grant.address + start, size, 0)], MemoryKind.DRAM, t.load_server_agent(),
                              lease_msg.credit_notification(grant.lease, use, k))
        try:
            t.agent.wait(posted, time.monotonic() + 30)
        finally:
            t.agent.release(posted)


def _store(t: Any, credit: int, use: int, key: bytes, data: np.ndarray, checksum: int | None = None,
           write: lease_msg.Grant | None = None) -> Any:
    """NIXL_STORE of `data`; with `write`, the data is WRITTEN into that credit after the frame is sent
    (the server progresses the WRITEs only while the store runs)."""
    checksum = payload_checksum(data) if checksum is None else checksum
    t.load_server_agent()  # before the store: one connection answers its frames in order
    request = _send(t, Opcode.NIXL_STORE, [lease_msg.pack_store_item(credit, use, key, data.nbytes, checksum,
                                                                     BlockMeta().encode())])
    if write is not None:
        _write(t, data, write, use)
    return _answers(t, Opcode.NIXL_STORE, request)[0]


def _data(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


# ---- frames ----------------------------------------------------------------------------------------
@pytest.mark.requirement("MKV-WIRE-036")
def test_credit_grants_and_item_errors(client: Any) -> None:
    sizes = (2 * MiB, 0, 65 * MiB, 20 * MiB)
    answers = _call(client, Opcode.NIXL_CREDIT, [lease_msg.pack_credit_item(s) for s in sizes])
    (ok, grant), *refused = answers
    assert ok.ok and grant is not None and grant.lease != 0 and grant.piece == credit_piece(2 * MiB)
    assert grant.lease_ms >= 2000 and grant.address > 0
    # 32 MiB of staging: a connection holds at most half of it in credits
    assert [r.status for r, _ in refused] == [ErrorCode.INVALID_ARGUMENT, ErrorCode.BLOCK_TOO_LARGE,
                                              ErrorCode.LIMIT_EXCEEDED]
    assert all(g is None for _, g in refused)


@pytest.mark.requirement("MKV-WIRE-037")
def test_one_credit_stores_block_after_block(client: Any) -> None:
    grant = _credit(client, 2 * MiB)
    for use, size in enumerate((2 * MiB, MiB + 5, 2 * MiB), start=1):
        data, key = _data(size, use), os.urandom(16)
        assert _store(client, grant.lease, use, key, data, write=grant).ok
        out = np.zeros(size, np.uint8)
        assert client.get_into([key], [out])[0].ok and np.array_equal(out, data)


@pytest.mark.requirement("MKV-WIRE-037")
def test_store_item_errors_leave_the_credit_held(client: Any, served: tuple[ServerProcess, str]) -> None:
    grant, data, key = _credit(client, MiB), _data(MiB, 9), os.urandom(16)
    assert _store(client, 999_999, 1, key, data).status is ErrorCode.UNKNOWN_LEASE
    assert _store(client, grant.lease, 2, key, data).status is ErrorCode.INVALID_ARGUMENT  # use must be 1
    assert _store(client, grant.lease, 1, key, _data(MiB + 1, 1)).status is ErrorCode.INVALID_ARGUMENT  # too long
    other = _open(served)
    try:  # another connection cannot store through this connection's credit
        assert _store(other, grant.lease, 1, key, data).status is ErrorCode.UNKNOWN_LEASE
    finally:
        other.close()
    wrong = _store(client, grant.lease, 1, key, data, payload_checksum(data) ^ 1, write=grant)
    assert wrong.status is ErrorCode.CHECKSUM_MISMATCH and client.exists([key]) == [False]
    assert _store(client, grant.lease, 2, key, data, write=grant).ok  # still held: the next use stores
    assert client.exists([key]) == [True]


@pytest.mark.requirement("MKV-WIRE-038")
def test_commit_ends_a_credit_and_the_client_takes_a_new_one(client: Any) -> None:
    data, key = _data(MiB, 3), os.urandom(16)
    assert client.put([PutItem(key, data)])[0].ok  # the transport now holds a credit on its connection
    [held] = client._credits._held[client.control.connection()]
    assert held.use == 1
    assert _call(client, Opcode.NIXL_COMMIT, [lease_msg.pack_commit_item(held.grant.lease, lease_msg.STORE)])[0].ok
    assert _store(client, held.grant.lease, 2, key, data).status is ErrorCode.UNKNOWN_LEASE  # ended
    again = os.urandom(16)
    assert client.put([PutItem(again, data)])[0].ok  # UNKNOWN_LEASE, then a new credit: retried once
    [renewed] = client._credits._held[client.control.connection()]
    assert renewed.grant.lease != held.grant.lease and client.exists([again]) == [True]


@pytest.mark.requirement("MKV-WIRE-045")
def test_a_server_that_answers_1_1_gets_no_credits_and_puts_still_work(served: tuple[ServerProcess, str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    older = _open(served)
    try:
        assert older.chosen_put_path() == "write"
        older.control.connection().wire.minor = 1  # as after a HELLO answered by a 1.1 server
        sent: list[Opcode] = []
        request = older._nixl_request

        def counted(opcode: Opcode, *args: Any, **kwargs: Any) -> Any:
            sent.append(opcode)
            return request(opcode, *args, **kwargs)

        monkeypatch.setattr(older, "_nixl_request", counted)
        data, key = _data(MiB, 4), os.urandom(16)
        assert older.put([PutItem(key, data)])[0].ok
        assert Opcode.NIXL_ALLOC in sent and Opcode.NIXL_CREDIT not in sent and Opcode.NIXL_STORE not in sent
        out = np.zeros(MiB, np.uint8)
        assert older.get_into([key], [out])[0].ok and np.array_equal(out, data)
    finally:
        older.close()


# ---- the credit table --------------------------------------------------------------------------------
class _QuietAgent:
    """An agent nothing arrives at (the tests hand notifications to CreditTable.arrived); it notes
    which threads progressed it."""

    def __init__(self) -> None:
        self.pollers: set[int] = set()

    def notifications(self) -> dict[str, list[bytes]]:
        self.pollers.add(threading.get_ident())
        time.sleep(0.0001)
        return {}


@pytest.fixture
def table() -> Iterator[tuple[CreditTable, ChunkPool, Pump]]:
    pool, pump = ChunkPool(8 * MiB, MiB, hugepages=False), Pump(_QuietAgent())  # type: ignore[arg-type]
    leases = LeaseTable(pool, pump, 0.2)
    credits = CreditTable(pool, pump, leases, 4 * MiB, 6 * MiB)
    yield credits, pool, pump
    credits.close()
    leases.close()
    pump.close()


def _arrive(credits: CreditTable, credit: Credit, use: int, pieces: range, peer: str = "peer") -> None:
    credits.arrived({peer: [lease_msg.credit_notification(credit.id, use, k) for k in pieces]})


@pytest.mark.requirement("MKV-WIRE-036")
def test_a_connection_holds_a_bounded_amount_of_credits(table: Any) -> None:
    credits, pool, _ = table
    credits.grant(1, "peer", 3 * MiB)
    with pytest.raises(LimitExceeded):
        credits.grant(1, "peer", 2 * MiB)
    credits.grant(2, "peer", 2 * MiB)  # the bound is per connection
    assert pool.in_use() == 5 * MiB and credits.held(1) == 1
    with pytest.raises(LimitExceeded):  # and all credits together keep staging for gets and leases
        credits.grant(3, "peer", 2 * MiB)
    pool.acquire(3 * MiB, 1.0)  # a get's staging: the pool is full
    with pytest.raises(Unavailable):  # no free staging: answered at once, the client leases instead
        credits.grant(3, "peer", MiB)


@pytest.mark.requirement("MKV-WIRE-038")
def test_close_commit_and_idle_time_end_credits_and_their_staging_cools(table: Any) -> None:
    credits, pool, _ = table
    closed, committed, idle = (credits.grant(conn, "peer", MiB) for conn in (1, 2, 3))
    credits.drop_connection(1)
    assert credits.end(2, committed.id) and not credits.end(3, committed.id)
    idle.expires = time.monotonic()
    with pytest.raises(UnknownLease):
        credits.begin(3, idle.id, 1, MiB)
    for credit in (closed, committed):
        with pytest.raises(UnknownLease):
            credits.begin(credit.conn, credit.id, 1, MiB)
    assert pool.in_use() == 3 * MiB  # ended, but cooling one lease time (0.2 s + 1 s per MiB)
    deadline = time.monotonic() + 10
    while pool.in_use() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.in_use() == 0


@pytest.mark.requirement("MKV-WIRE-038")
def test_the_reaper_ends_idle_credits_nobody_names(table: Any) -> None:
    credits, _, _ = table
    credits.grant(1, "peer", 1024)  # idle time 0.2 s + 1 ms
    deadline = time.monotonic() + 10
    while credits.held(1) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert credits.held(1) == 0


@pytest.mark.requirement("MKV-WIRE-037", "MKV-WIRE-039")
@pytest.mark.parametrize("mapped", [False, True], ids=["buffers", "store-mapping"])
def test_pieces_are_copied_out_of_the_credit_before_they_are_stored(table: Any, tmp_path: Path, mapped: bool) -> None:
    credits, pool, _ = table
    if mapped and not os.path.isdir("/dev/shm"):
        pytest.skip("no tmpfs at /dev/shm for a store the engine maps")
    where = tempfile.mkdtemp(dir="/dev/shm") if mapped else str(tmp_path)
    engine = StorageEngine(os.path.join(where, "store"), capacity=64 * MiB)
    try:
        assert engine.streams_mapped == mapped  # tmpfs is buffered (mapped); the test's disk is not here
        credit = credits.grant(1, "peer", 4 * MiB)
        credit.piece = MiB  # four notifications, the store copying each piece as it lands
        assert credit.pieces == 4
        payload = os.urandom(4 * MiB)
        credit.region[:] = payload
        begun = credits.begin(1, credit.id, 1, len(payload))
        pool_range = range(pool.address, pool.address + pool.size)
        assert all(address_of(b) not in pool_range for b in begun.buffers)  # memory no client can write
        seen: list[int] = []

        def store(credit: Credit, length: int, fill: Any) -> ItemResult:
            def fill_then_overwrite(view: memoryview) -> None:
                fill(view)
                seen.append(address_of(view))
                start = (len(seen) - 1) * len(view)
                credit.region[start : start + len(view)] = bytes(len(view))  # the client writes again
            return engine.put_stream("ns", key, length, fill_then_overwrite, credit.buffers, BlockMeta(),
                                     payload_checksum(payload), use_mapping=mapped)

        key = os.urandom(16)
        running = credits.submit(lambda: credits.run(begun, len(payload), store))
        _arrive(credits, credit, 1, range(2), peer="intruder")  # another agent's notifications count for nothing
        _arrive(credits, credit, 1, range(4))
        result = running.result(timeout=30)
        assert result.ok, result.message  # hashed and stored the copies, not the rewritten credit
        assert len(seen) == 4 and not any(address in pool_range for address in seen)
        in_buffers = [any(address_of(b) <= address < address_of(b) + MiB for b in credit.buffers) for address in seen]
        assert in_buffers == [not mapped] * 4  # straight into the store's mapping where it has one
        out = bytearray(len(payload))
        assert engine.get_into("ns", [key], [out])[0].ok and bytes(out) == payload
        assert not credit.busy and credits.held(1) == 1
    finally:
        engine.close()
        if mapped:
            shutil.rmtree(where, ignore_errors=True)


@pytest.mark.requirement("MKV-WIRE-037")
def test_the_storing_thread_progresses_the_agent_while_it_waits(table: Any) -> None:
    credits, _, pump = table
    credit = credits.grant(1, "peer", MiB)
    threads: list[int] = []

    def store(credit: Credit, length: int, fill: Any) -> ItemResult:
        threads.append(threading.get_ident())
        fill(memoryview(bytearray(length)))
        return ItemResult()

    running = credits.submit(lambda: credits.run(credits.begin(1, credit.id, 1, MiB), MiB, store))
    deadline = time.monotonic() + 10
    while not pump.agent.pollers and time.monotonic() < deadline:
        time.sleep(0.005)
    _arrive(credits, credit, 1, range(1))
    assert running.result(timeout=30).ok
    assert pump.agent.pollers == set(threads)  # no hand-off to the pump's own thread


@pytest.mark.requirement("MKV-WIRE-037")
def test_a_store_waits_for_its_own_use_and_times_out_without_it(table: Any) -> None:
    credits, _, _ = table
    credit = credits.grant(1, "peer", MiB)
    _arrive(credits, credit, 1, range(1))  # a WRITE may arrive before its NIXL_STORE
    calls: list[bytes] = []

    def store(credit: Credit, length: int, fill: Any) -> ItemResult:
        view = memoryview(bytearray(length))
        fill(view)
        calls.append(bytes(view))
        return ItemResult()

    credit.region[:4] = b"abcd"
    assert credits.run(credits.begin(1, credit.id, 1, 4), 4, store).ok and calls == [b"abcd"]
    _arrive(credits, credit, 1, range(1))  # a stale notification of use 1 does not serve use 2
    result = credits.run(credits.begin(1, credit.id, 2, 4), 4, store)  # lease time 0.2 s
    assert result.status is ErrorCode.TIMEOUT and len(calls) == 1


@pytest.mark.requirement("MKV-WIRE-038")
def test_a_store_whose_connection_closes_fails_and_its_staging_cools_after_it(table: Any) -> None:
    credits, pool, _ = table
    credit = credits.grant(1, "peer", MiB)
    stored: list[bool] = []

    def store(credit: Credit, length: int, fill: Any) -> ItemResult:
        fill(memoryview(bytearray(length)))
        stored.append(True)
        return ItemResult()

    running = credits.submit(lambda: credits.run(credits.begin(1, credit.id, 1, MiB), MiB, store))
    credits.drop_connection(1)  # while the store waits for its WRITEs
    result = running.result(timeout=30)
    assert result.status is ErrorCode.UNAVAILABLE and stored == []
    assert pool.in_use() == MiB  # held back one lease time after the store let go of it
