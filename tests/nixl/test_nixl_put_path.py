"""The client-driven NIXL put: NIXL_SERVER_AGENT, NIXL_ALLOC, client WRITE, NIXL_COMMIT (spec/wire.md 8.1).

A server subprocess with `--nixl on` and a memkv+nixl client here, UCX over TCP in both. The
lease table is also tested on its own (expiry, cooling, a dropped connection) with a real
staging pool and short times.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import memkv
from memkv.blocks import BlockMeta
from memkv.checksum import payload_checksum
from memkv.errors import ErrorCode, Unavailable
from memkv.memory_kind import MemoryKind
from memkv.nixl.agent import availability
from memkv.nixl.support import ChunkPool, metadata_agent_name
from memkv.server.nixl_leases import Lease, LeaseTable
from memkv.server.nixl_service import ucx_has_rdma
from memkv.server.testing import ServerProcess, write_keys_file
from memkv.transport import ItemResult, PutItem
from memkv.wire import messages as msg
from memkv.wire import nixl_leases as lease_msg
from memkv.wire.opcodes import Opcode

NIXL_OK, NIXL_REASON = availability()
needs_nixl = pytest.mark.skipif(not NIXL_OK, reason=f"NIXL unavailable: {NIXL_REASON}")
MiB = 1024 * 1024
NS = "put-path"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    if not NIXL_OK:
        pytest.skip(NIXL_REASON)
    tmp = tmp_path_factory.mktemp("put-path")
    creds = write_keys_file(tmp / "keys.yaml", {NS: [("w", "write")]})
    old = os.environ.get("UCX_TLS")
    os.environ["UCX_TLS"] = "tcp"
    try:
        with ServerProcess(str(tmp / "store"), str(tmp / "keys.yaml"), capacity="256MiB",
                           extra=["--admin-listen", "off", "--nixl", "on", "--nixl-staging", "32MiB"]) as proc:
            yield proc, creds["w"]
    finally:
        if old is None:
            os.environ.pop("UCX_TLS", None)
        else:
            os.environ["UCX_TLS"] = old


def _connect(server: tuple[ServerProcess, str], put_path: str = "auto") -> Any:
    proc, key = server
    return memkv.connect(f"memkv+nixl://{proc.host}:{proc.port}?transport=nixl&put_path={put_path}",
                         namespace=NS, key=key)


@pytest.fixture(scope="module")
def client(server: tuple[ServerProcess, str]) -> Iterator[Any]:
    t = _connect(server)
    yield t
    t.close()


def _data(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def _alloc(t: Any, items: list[tuple[bytes, int, int]]) -> list[tuple[Any, lease_msg.Grant | None]]:
    records = [msg.pack_put_item(key, length, checksum, BlockMeta().encode()) for key, length, checksum in items]
    _, reader, _ = t.control.wait(t._nixl_request(Opcode.NIXL_ALLOC, records, pump_needed=False))
    answers = lease_msg.read_alloc_answer(reader)
    reader.finish()
    return answers


def _commit(t: Any, leases: list[tuple[int, int]]) -> list[Any]:
    records = [lease_msg.pack_commit_item(lease, action) for lease, action in leases]
    _, reader, _ = t.control.wait(t._nixl_request(Opcode.NIXL_COMMIT, records, pump_needed=False))
    results = reader.results()
    reader.finish()
    return results


def _write(t: Any, data: np.ndarray, grant: lease_msg.Grant) -> None:
    """WRITE a payload into its grant piece by piece, each with its notification (spec 8.1)."""
    t.register(data)
    for k, start in enumerate(range(0, data.nbytes, grant.piece)):
        size = min(grant.piece, data.nbytes - start)
        posted = t.agent.post("WRITE", [(int(data.ctypes.data) + start, size, 0)], MemoryKind.DRAM,
                              [(grant.address + start, size, 0)], MemoryKind.DRAM, t.load_server_agent(),
                              lease_msg.notification(grant.lease, k))
        try:
            t.agent.wait(posted, time.monotonic() + 30)
        finally:
            t.agent.release(posted)


# ---- through the transport ---------------------------------------------------------------------
@needs_nixl
@pytest.mark.requirement("MKV-WIRE-032", "MKV-WIRE-033", "MKV-WIRE-035")
@pytest.mark.parametrize("size", [2 * MiB, 16 * MiB])
def test_auto_picks_the_write_path_over_tcp_and_round_trips(client: Any, size: int) -> None:
    assert client.server_put_path == "write" and client.chosen_put_path() == "write"
    data, key = _data(size, size), os.urandom(16)
    assert client.put([PutItem(key, data, BlockMeta(user=b"m"))])[0].ok
    out = np.zeros(size, np.uint8)
    result = client.get_into([key], [out])[0]
    assert result.ok and result.checksum == payload_checksum(data) and np.array_equal(out, data)
    assert result.meta.user == b"m"


@needs_nixl
@pytest.mark.requirement("MKV-WIRE-035")
def test_read_path_still_works_when_chosen(server: tuple[ServerProcess, str]) -> None:
    t = _connect(server, "read")
    try:
        assert t.chosen_put_path() == "read"
        data, key = _data(MiB, 3), os.urandom(16)
        assert t.put([PutItem(key, data)])[0].ok and t.exists([key]) == [True]
    finally:
        t.close()


@needs_nixl
@pytest.mark.requirement("MKV-WIRE-032")
def test_a_batch_mixes_granted_and_refused_items(client: Any) -> None:
    good, key = _data(MiB, 4), os.urandom(16)
    results = client.put([PutItem(key, good), PutItem(b"short", good), PutItem(os.urandom(16), _data(65 * MiB, 0))])
    assert results[0].ok
    assert results[1].status is ErrorCode.INVALID_KEY and results[2].status is ErrorCode.BLOCK_TOO_LARGE


@needs_nixl
@pytest.mark.requirement("MKV-WIRE-032")
def test_a_batch_larger_than_the_staging_goes_in_rounds(client: Any) -> None:
    # 32 MiB of staging in 2 MiB chunks: 48 leases at once would not fit; rounds of a quarter do
    keys = [os.urandom(16) for _ in range(48)]
    datas = [os.urandom(64 * 1024) for _ in keys]
    results = client.put([PutItem(k, d) for k, d in zip(keys, datas, strict=True)])
    assert all(r.ok for r in results), [r.message for r in results if not r.ok][:3]
    out = [bytearray(64 * 1024) for _ in keys]
    assert all(r.ok for r in client.get_into(keys, out)) and out == [bytearray(d) for d in datas]


@needs_nixl
@pytest.mark.requirement("MKV-WIRE-033")
def test_concurrent_puts_commit_on_the_connection_that_allocated(client: Any) -> None:
    keys = [os.urandom(16) for _ in range(12)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # the transport pools several connections
        results = list(pool.map(lambda k: client.put([PutItem(k, _data(MiB, k[0]))])[0], keys))
    assert all(r.ok for r in results), [r.message for r in results if not r.ok][:3]


# ---- the frames ----------------------------------------------------------------------------------
@needs_nixl
@pytest.mark.requirement("MKV-WIRE-031")
def test_server_agent_metadata_names_the_server_agent(client: Any) -> None:
    _, reader, _ = client.control.wait(client._nixl_request(Opcode.NIXL_SERVER_AGENT, [], pump_needed=False))
    blob = msg.read_blob(reader)
    assert reader.arg("agent", str) == client.server_agent == metadata_agent_name(blob)


@needs_nixl
@pytest.mark.requirement("MKV-WIRE-032")
def test_alloc_item_errors(client: Any) -> None:
    answers = _alloc(client, [(os.urandom(16), 0, 0), (os.urandom(16), 65 * MiB, 0), (os.urandom(16), 40 * MiB, 0)])
    assert [r.status for r, _ in answers] == [ErrorCode.INVALID_ARGUMENT, ErrorCode.BLOCK_TOO_LARGE,
                                              ErrorCode.LIMIT_EXCEEDED]
    assert all(grant is None for _, grant in answers)


@needs_nixl
@pytest.mark.requirement("MKV-WIRE-032", "MKV-WIRE-033")
def test_grant_write_commit_then_the_lease_is_gone(client: Any) -> None:
    data, key = _data(MiB, 5), os.urandom(16)
    [(result, grant)] = _alloc(client, [(key, data.nbytes, payload_checksum(data))])
    assert result.ok and grant is not None and grant.lease != 0 and grant.lease_ms >= 1000
    _write(client, data, grant)
    assert _commit(client, [(grant.lease, lease_msg.STORE)])[0].ok
    assert client.exists([key]) == [True]
    again = _commit(client, [(grant.lease, lease_msg.STORE)])[0]
    assert again.status is ErrorCode.UNKNOWN_LEASE


@needs_nixl
@pytest.mark.requirement("MKV-WIRE-033")
def test_wrong_bytes_are_a_checksum_mismatch_and_nothing_is_stored(client: Any) -> None:
    data, key = _data(MiB, 6), os.urandom(16)
    [(_, grant)] = _alloc(client, [(key, data.nbytes, payload_checksum(data) ^ 1)])
    assert grant is not None
    _write(client, data, grant)
    assert _commit(client, [(grant.lease, lease_msg.STORE)])[0].status is ErrorCode.CHECKSUM_MISMATCH
    assert client.exists([key]) == [False]


@needs_nixl
@pytest.mark.requirement("MKV-WIRE-033")
def test_discard_unknown_foreign_and_bad_action(client: Any, server: tuple[ServerProcess, str]) -> None:
    key = os.urandom(16)
    [(_, kept)], [(_, bad)] = _alloc(client, [(key, MiB, 0)]), _alloc(client, [(os.urandom(16), MiB, 0)])
    assert kept is not None and bad is not None
    other = _connect(server)
    try:  # another connection (and agent) cannot commit this connection's lease
        assert _commit(other, [(kept.lease, lease_msg.STORE)])[0].status is ErrorCode.UNKNOWN_LEASE
    finally:
        other.close()
    results = _commit(client, [(kept.lease, lease_msg.DISCARD), (bad.lease, 7), (999_999, lease_msg.STORE)])
    assert [r.status for r in results] == [ErrorCode.OK, ErrorCode.INVALID_ARGUMENT, ErrorCode.UNKNOWN_LEASE]
    assert client.exists([key]) == [False]
    assert _commit(client, [(bad.lease, lease_msg.STORE)])[0].status is ErrorCode.UNKNOWN_LEASE  # ended


def test_ucx_has_rdma_rule() -> None:
    assert not ucx_has_rdma(None, False) and ucx_has_rdma(None, True)
    assert not ucx_has_rdma("tcp", True) and not ucx_has_rdma("tcp,shm", True)
    assert ucx_has_rdma("rc,tcp", True) and ucx_has_rdma("all", True) and ucx_has_rdma("^tcp", True)
    assert ucx_has_rdma("rc_mlx5,dc_mlx5", True)


# ---- the lease table (MKV-WIRE-034) --------------------------------------------------------------
class _CountingPump:
    def __init__(self) -> None:
        self.busy = 0

    def enter(self) -> None:
        self.busy += 1

    def leave(self) -> None:
        self.busy -= 1


def _table(frame_timeout: float) -> tuple[LeaseTable, ChunkPool, _CountingPump]:
    pool = ChunkPool(8 * MiB, MiB, hugepages=False)
    pump = _CountingPump()
    return LeaseTable(pool, pump, frame_timeout), pool, pump  # type: ignore[arg-type]


def _grant(table: LeaseTable, conn: int, length: int, store: Any = None) -> Lease:
    return table.grant(conn, "peer", os.urandom(16), length, 0, BlockMeta(), store)


@pytest.mark.requirement("MKV-WIRE-034")
def test_an_expired_lease_ends_and_its_staging_cools_before_reuse() -> None:
    table, pool, pump = _table(0.2)
    lease = _grant(table, 1, MiB)
    assert table.lease_time(MiB) == pytest.approx(1.2) and pump.busy == 1
    lease.expires = time.monotonic()  # its lease time has passed
    table.reap()
    assert table.take(1, lease.id) is None and pump.busy == 0
    assert pool.in_use() == lease.size  # cooling: not lent again yet
    table._cooling[0] = (time.monotonic(), lease.offset, lease.size)  # one more lease time has passed
    table.reap()
    assert pool.in_use() == 0
    table.close()


@pytest.mark.requirement("MKV-WIRE-034")
def test_the_reaper_ends_leases_nobody_asks_about() -> None:
    table, pool, pump = _table(0.05)
    _grant(table, 1, 1024)  # lease time 0.05 s + 1 ms, then as long again cooling
    deadline = time.monotonic() + 10
    while pool.in_use() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pool.in_use() == 0 and pump.busy == 0 and table.open_count() == 0
    table.close()


@pytest.mark.requirement("MKV-WIRE-034")
def test_a_closed_connection_drops_its_leases_only() -> None:
    table, pool, pump = _table(5.0)
    mine, theirs = _grant(table, 1, MiB), _grant(table, 2, MiB)
    table.drop_connection(1)
    assert table.take(1, mine.id) is None and pump.busy == 1 and pool.in_use() == mine.size + theirs.size
    taken = table.take(2, theirs.id)
    assert taken is not None and table.finish(taken, lease_msg.DISCARD).ok and pump.busy == 0
    assert pool.in_use() == mine.size  # the dropped lease still cools
    table.close()


def test_no_staging_in_time_is_unavailable() -> None:
    table, _, _ = _table(0.1)
    _grant(table, 1, 6 * MiB)
    with pytest.raises(Unavailable):
        _grant(table, 1, MiB)
    table.close()


def _wait_for_count(stored: list[bytes], count: int) -> None:
    """Until the storing thread has stored `count` chunks (however busy the machine), then a little
    longer, so that one chunk too many would be seen."""
    deadline = time.monotonic() + 60
    while len(stored) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)


@pytest.mark.requirement("MKV-WIRE-033", "MKV-WIRE-034")
def test_pieces_are_stored_as_they_arrive_and_the_last_waits_for_the_commit() -> None:
    table, _, _ = _table(5.0)
    payload = os.urandom(2 * MiB)
    stored: list[bytes] = []

    def store(lease: Lease, fill: Any) -> Any:
        out = bytearray()
        for start in range(0, lease.length, 256 * 1024):
            view = lease.buffers[0][: min(256 * 1024, lease.length - start)]
            fill(view)
            out += view
            stored.append(bytes(view))
        return ItemResult()

    lease = _grant(table, 1, len(payload), store)
    assert lease.piece == 512 * 1024 and lease.pieces == 4
    lease.landing[:] = payload
    table.arrived({"peer": [lease_msg.notification(lease.id, 0), lease_msg.notification(lease.id, 1)],
                   "intruder": [lease_msg.notification(lease.id, 2)], "other": [b"unrelated"]})
    _wait_for_count(stored, 4)
    assert len(stored) == 4  # pieces 0 and 1 stored; piece 2 came from another agent
    table.arrived({"peer": [lease_msg.notification(lease.id, 2), lease_msg.notification(lease.id, 3)]})
    _wait_for_count(stored, 7)
    assert len(stored) == 7 and lease.stream is not None and not lease.stream.done()  # the last bytes wait
    taken = table.take(1, lease.id)
    assert taken is lease and table.finish(lease, lease_msg.STORE).ok
    assert b"".join(stored) == payload
    table.close()


@pytest.mark.requirement("MKV-WIRE-033")
def test_a_discarded_stream_stores_nothing() -> None:
    table, pool, _ = _table(5.0)
    reached_end: list[bool] = []

    def store(lease: Lease, fill: Any) -> Any:
        fill(lease.landing)
        reached_end.append(True)
        return ItemResult()

    lease = _grant(table, 1, MiB, store)
    table.arrived({"peer": [lease_msg.notification(lease.id, k) for k in range(lease.pieces)]})
    taken = table.take(1, lease.id)
    assert taken is not None and table.finish(taken, lease_msg.DISCARD).ok
    assert reached_end == [] and pool.in_use() == 0
    table.close()
