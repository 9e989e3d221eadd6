"""memkv+nixl://: control over the wire protocol, block payloads over NIXL (UCX over TCP here).

The server runs in a subprocess, the client in this process, UCX_TLS=tcp in both: the set-up
CI uses. Skipped, with the reason, when the NIXL Python API is not importable. What is particular
to this client lives here (registered regions, numpy buffers, descriptors, transport selection,
staging); what every backend must do is checked by the conformance checks, which run against this
client as `memkv/conformance/checks/...[nixl]`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import memkv
from memkv.buffers import MemoryRegion, address_of, aligned_buffer
from memkv.checksum import payload_checksum
from memkv.errors import ErrorCode, MemkvError, Unsupported
from memkv.nixl.agent import availability
from memkv.nixl.support import ChunkPool
from memkv.server.nixl_service import metadata_agent_name
from memkv.server.testing import ServerProcess, write_keys_file
from memkv.transport import PutItem
from memkv.wire import messages as msg
from memkv.wire.opcodes import Opcode
from memkv.wire.records import AgentArgs, NixlHelloArgs

NIXL_OK, NIXL_REASON = availability()
pytestmark = pytest.mark.skipif(not NIXL_OK, reason=f"NIXL unavailable: {NIXL_REASON}")
MiB = 1024 * 1024
NS = "nixl-ns"


@pytest.fixture(scope="module")
def ucx_tcp() -> Iterator[None]:
    """UCX over TCP in this process and in the server subprocesses (set before any agent exists)."""
    old = os.environ.get("UCX_TLS")
    os.environ["UCX_TLS"] = "tcp"
    yield
    if old is None:
        os.environ.pop("UCX_TLS", None)
    else:
        os.environ["UCX_TLS"] = old


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    keys = tmp_path_factory.mktemp("nixl-keys") / "keys.yaml"
    return str(keys), write_keys_file(keys, {NS: [("w", "write"), ("r", "read")]})


def _server(tmp: Path, keys: str, nixl: str) -> ServerProcess:
    return ServerProcess(str(tmp / f"store-{nixl}"), keys, capacity="512MiB",
                         extra=["--admin-listen", "off", "--nixl", nixl, "--nixl-staging", "64MiB"])


@pytest.fixture(scope="module")
def server(ucx_tcp: None, creds: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    with _server(tmp_path_factory.mktemp("nixl-on"), creds[0], "on") as proc:
        yield proc


@pytest.fixture(scope="module")
def server_off(ucx_tcp: None, creds: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[ServerProcess]:
    with _server(tmp_path_factory.mktemp("nixl-off"), creds[0], "off") as proc:
        yield proc


def _url(proc: ServerProcess, **query: str) -> str:
    tail = "&".join(f"{k}={v}" for k, v in query.items())
    return f"memkv+nixl://{proc.host}:{proc.port}" + (f"?{tail}" if tail else "")


@pytest.fixture(scope="module")
def client(server: ServerProcess, creds: tuple[str, dict[str, str]]) -> Iterator[Any]:
    t = memkv.connect(_url(server, transport="nixl"), namespace=NS, key=creds[1]["w"])
    yield t
    t.close()


def _data(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def _key() -> bytes:
    return os.urandom(16)


# ---- data path ------------------------------------------------------------------------------------
def test_connects_over_nixl_with_the_tcp_profiles(client: Any, server: ServerProcess,
                                                  creds: tuple[str, dict[str, str]]) -> None:
    assert client.nixl_active and client.server_agent.startswith("memkv-server-")
    caps = client.capabilities()
    assert caps.backend == "nixl"
    tcp = memkv.connect(f"memkv+tcp://{server.host}:{server.port}", namespace=NS, key=creds[1]["w"])
    try:
        assert caps.profiles == tcp.capabilities().profiles
        assert caps.limits == tcp.capabilities().limits
    finally:
        tcp.close()


@pytest.mark.parametrize("size", [2 * MiB, 16 * MiB])
def test_numpy_round_trip(client: Any, size: int) -> None:
    data, key = _data(size, size), _key()
    assert client.put([PutItem(key, data)])[0].ok
    out = np.zeros(size, np.uint8)
    result = client.get_into([key], [out])[0]
    assert result.ok and result.length == size and result.checksum == payload_checksum(data)
    assert np.array_equal(out, data)


def test_memory_regions_registered_once_and_on_first_use(client: Any) -> None:
    size = 4 * MiB
    pool = aligned_buffer(4 * size)  # an engine's KV pool, registered once
    client.register(pool)
    data = _data(size, 7)
    pool[:size] = data.tobytes()
    key = _key()
    src = MemoryRegion(address_of(pool), size)
    assert client.put([PutItem(key, src)])[0].ok
    dst = MemoryRegion(address_of(pool) + 2 * size, size)
    assert client.get_into([key], [dst])[0].ok
    assert bytes(pool[2 * size : 3 * size]) == data.tobytes()
    loose = aligned_buffer(size)  # a region nobody registered: registered on first use
    assert client.get_into([key], [MemoryRegion(address_of(loose), size)])[0].ok
    assert bytes(loose) == data.tobytes()
    client.deregister(pool)


@pytest.mark.requirement("MKV-WIRE-021", "MKV-WIRE-024")
def test_client_verifies_what_arrived(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data, key = _data(2 * MiB, 4), _key()
    client.put_one(key, data)
    import memkv.backends.nixl as backend

    monkeypatch.setattr(backend, "payload_checksum", lambda view: 12345)
    result = client.get_into([key], [np.zeros(2 * MiB, np.uint8)])[0]
    assert result.status is ErrorCode.CORRUPTED


# ---- what the server refuses ---------------------------------------------------------------------
@pytest.mark.requirement("MKV-WIRE-024")
def test_server_refuses_descriptors_without_hello_or_registration(client: Any, server: ServerProcess,
                                                                  creds: tuple[str, dict[str, str]]) -> None:
    key = _key()
    client.put_one(key, _data(2 * MiB, 8))
    raw = memkv.connect(f"memkv+tcp://{server.host}:{server.port}", namespace=NS, key=creds[1]["w"])
    try:
        record = msg.pack_nixl_desc(key, 4096, 2 * MiB, 0, 0)
        with pytest.raises(MemkvError) as info:  # no NIXL_HELLO on this connection
            raw._call(Opcode.NIXL_GET, AgentArgs(client.agent_name), [])  # type: ignore[attr-defined]
        assert info.value.code is ErrorCode.INVALID_ARGUMENT
        future = raw._request(Opcode.NIXL_GET, AgentArgs(client.agent_name), record, 1)  # type: ignore[attr-defined]
        with pytest.raises(MemkvError) as info:
            raw.wait(future)  # type: ignore[attr-defined]
        assert info.value.code is ErrorCode.INVALID_ARGUMENT
    finally:
        raw.close()
    # the client's own connection: an address it never registered is refused per item
    unregistered = np.zeros(2 * MiB, np.uint8)
    conn = client.control.connection()
    client._hello_if_needed(conn)
    bad = msg.pack_nixl_desc(key, int(unregistered.ctypes.data) + 123, 2 * MiB, 0, 0)
    _, reader, _ = client.control.wait(conn.request(Opcode.NIXL_GET, AgentArgs(client.agent_name), bad, 1))
    result = reader.get_results(client.limits)[0]
    assert result.status is ErrorCode.INVALID_ARGUMENT and "registered" in result.message
    assert not unregistered.any()


@pytest.mark.requirement("MKV-WIRE-023")
def test_hello_must_carry_the_declared_agent(client: Any) -> None:
    blob = client._memory.metadata()[1]
    assert metadata_agent_name(blob) == client.agent_name
    conn = client.control.connection()
    with pytest.raises(MemkvError) as info:
        client.control.wait(conn.request(Opcode.NIXL_HELLO, NixlHelloArgs("memkv-client-impostor", 99),
                                  msg.pack_blob(blob), 1))
    assert info.value.code is ErrorCode.INVALID_ARGUMENT


# ---- transport selection -------------------------------------------------------------------------
@pytest.mark.requirement("MKV-WIRE-022")
def test_auto_falls_back_to_tcp_with_one_warning(server_off: ServerProcess, creds: tuple[str, dict[str, str]]
                                                 ) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = memkv.connect(_url(server_off), namespace=NS, key=creds[1]["w"])
    try:
        assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == [
            f"memkv+nixl: NIXL data path unavailable ({t.fallback_reason}); block payloads go over TCP"]
        assert not t.nixl_active and "--nixl off" in t.fallback_reason
        assert t.capabilities().backend == "tcp"
        data, key = _data(2 * MiB, 9), _key()
        assert t.put([PutItem(key, data)])[0].ok
        out = np.zeros(2 * MiB, np.uint8)
        assert t.get_into([key], [out])[0].ok and np.array_equal(out, data)
    finally:
        t.close()


def test_strict_mode_fails_clearly(server_off: ServerProcess, creds: tuple[str, dict[str, str]],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Unsupported, match=r"transport=nixl.*--nixl off"):
        memkv.connect(_url(server_off, transport="nixl"), namespace=NS, key=creds[1]["w"])
    monkeypatch.setenv("MEMKV_TRANSPORT", "nixl")
    with pytest.raises(Unsupported, match="transport=nixl"):
        memkv.connect(_url(server_off), namespace=NS, key=creds[1]["w"])


def test_strict_mode_without_nixl_on_the_client(server: ServerProcess, creds: tuple[str, dict[str, str]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import memkv.backends.nixl as backend

    def missing(name: str) -> None:
        raise Unsupported("NIXL is not importable (test); install it with `pip install --no-deps nixl-cu12 numpy`")

    monkeypatch.setattr(backend, "NixlAgent", missing)
    with pytest.raises(Unsupported, match="not importable"):
        memkv.connect(_url(server, transport="nixl"), namespace=NS, key=creds[1]["w"])
    with pytest.warns(RuntimeWarning, match="not importable"):
        t = memkv.connect(_url(server), namespace=NS, key=creds[1]["w"])
    t.close()


def test_bad_transport_option(server: ServerProcess, creds: tuple[str, dict[str, str]]) -> None:
    with pytest.raises(MemkvError, match="transport must be one of auto, nixl"):
        memkv.connect(_url(server, transport="carrier-pigeon"), namespace=NS, key=creds[1]["w"])


def test_whole_block_staging_without_streaming(ucx_tcp: None, creds: tuple[str, dict[str, str]],
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's path for an engine without streamed reads and writes (MEMKV_NIXL_STREAM=0)."""
    monkeypatch.setenv("MEMKV_NIXL_STREAM", "0")
    with _server(tmp_path, creds[0], "on") as proc:
        t = memkv.connect(_url(proc, transport="nixl"), namespace=NS, key=creds[1]["w"])
        try:
            blocks = {_key(): _data(size, size) for size in (2 * MiB, 5 * MiB, 16 * MiB)}
            assert all(r.ok for r in t.put([PutItem(k, v) for k, v in blocks.items()]))
            outs = [np.zeros(len(v), np.uint8) for v in blocks.values()]
            assert all(r.ok for r in t.get_into(list(blocks), outs))
            assert all(np.array_equal(o, v) for o, v in zip(outs, blocks.values(), strict=True))
            bad_sum = t.put([PutItem(_key(), _data(2 * MiB, 1), checksum=1)])[0]
            assert bad_sum.status is ErrorCode.CHECKSUM_MISMATCH
        finally:
            t.close()


def test_bench_compares_with_raw_nixl(ucx_tcp: None, tmp_path: Path) -> None:
    from memkv.bench.common import BenchConfig
    from memkv.bench.runner import format_report, run_bench

    report = run_bench(BenchConfig(backend="nixl", sizes=(2 * MiB,), count=2, rounds=1, directory=str(tmp_path)))
    assert {(r["size"], r["op"]) for r in report["results"]} == {(2 * MiB, "put"), (2 * MiB, "get")}
    assert all(r["memkv"]["gb_per_s"] > 0 and r["raw"]["gb_per_s"] > 0 for r in report["results"])
    for row in report["results"]:  # CPU of this process and of the server / the raw peer (memkv.bench.cpu)
        for path in ("memkv", "raw"):
            cpu = row[path]["cpu_s_per_gib"]
            assert cpu["client"] > 0 and cpu["server"] > 0
            assert cpu["total"] == pytest.approx(cpu["client"] + cpu["server"])
    text = format_report(report)
    assert "NIXL agent to agent" in text and "CPU seconds per GiB moved" in text


def test_bench_floor_adds_the_specs_checks_to_the_raw_transfer(ucx_tcp: None, tmp_path: Path) -> None:
    """--compare floor: a third path whose peer answers the XXH3 of what it copied out of its
    registered memory (put) or of its block (get); the bench checks it against its own hash of
    the same bytes, so a floor that hashed the wrong length or stale bytes fails the run."""
    from memkv.bench.common import BenchConfig
    from memkv.bench.runner import format_report, run_bench

    sizes = (256 * 1024, 2 * MiB)  # the peer's buffer is the largest: the smaller must hash only its length
    report = run_bench(BenchConfig(backend="nixl", sizes=sizes, count=2, rounds=2, directory=str(tmp_path),
                                   compare=("floor",)))
    rows = {(r["size"], r["op"], r["path"]): r for r in report["results"]}
    assert set(rows) == {(s, op, path) for s in sizes for op in ("put", "get") for path in ("memkv", "floor")}
    for (_, _, path), row in rows.items():
        assert row["memkv"]["ops"] == 4 and row["memkv"]["gb_per_s"] > 0
        assert row["peer"] is (path == "floor")  # the target is judged on memkv alone
        assert row["memkv"]["cpu_s_per_gib"]["server"] > 0  # the raw peer's CPU is counted
    assert "client XXH3" in report["floor"]
    assert re.search(r"put .* floor", format_report(report))


def test_bench_batch_moves_each_call_s_blocks_in_one_request_and_one_transfer(ucx_tcp: None, tmp_path: Path) -> None:
    """--batch 2: memkv puts and gets two blocks per request, raw and floor move them in one NIXL
    transfer of two descriptors; the floor's peer hashes each block of the call at its own offset
    (the two blocks differ), and the bench checks every hash, so a peer that hashed one block for
    both, or the wrong offsets, fails the run; a memkv get of a block the batched put did not
    store fails it too."""
    from memkv.bench.common import BenchConfig
    from memkv.bench.runner import format_report, run_bench

    sizes = (256 * 1024, 2 * MiB)
    report = run_bench(BenchConfig(backend="nixl", sizes=sizes, count=4, rounds=2, batch=2, directory=str(tmp_path),
                                   compare=("floor",)))
    assert report["batch"] == 2
    rows = {(r["size"], r["op"], r["path"]): r for r in report["results"]}
    assert set(rows) == {(s, op, path) for s in sizes for op in ("put", "get") for path in ("memkv", "floor")}
    for row in rows.values():
        assert row["memkv"]["ops"] == 4 and row["raw"]["ops"] == 4  # 2 calls of 2 blocks per round, 2 rounds
        assert row["memkv"]["gb_per_s"] > 0
    assert "in calls of 2 (latencies per call)" in format_report(report)


# ---- staging pool ----------------------------------------------------------------------------------
@pytest.mark.requirement("MKV-WIRE-025")
def test_chunk_pool_is_bounded() -> None:
    pool = ChunkPool(8 * MiB, 2 * MiB, hugepages=False)
    a, view = pool.acquire(3 * MiB, 1)
    assert len(view) == 3 * MiB and a == 0
    b, _ = pool.acquire(4 * MiB, 1)
    assert b == 4 * MiB
    with pytest.raises(MemkvError) as info:
        pool.acquire(2 * MiB, 0.05)
    assert info.value.code is ErrorCode.UNAVAILABLE
    with pytest.raises(MemkvError) as info:
        pool.acquire(9 * MiB, 0.05)
    assert info.value.code is ErrorCode.LIMIT_EXCEEDED
    pool.release(a, 3 * MiB)
    assert pool.acquire(4 * MiB, 1)[0] == 0


def test_round_trip_on_a_buffered_device(ucx_tcp: None, creds: tuple[str, dict[str, str]], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A store opened without O_DIRECT (tmpfs, MEMKV_DIRECT=0) is memory-mapped for TCP streaming;
    NIXL must still move bytes through its registered staging, never through that mapping."""
    monkeypatch.setenv("MEMKV_DIRECT", "0")
    with _server(tmp_path, creds[0], "on") as proc:
        t = memkv.connect(_url(proc, transport="nixl"), namespace=NS, key=creds[1]["w"])
        try:
            data, key = _data(3 * MiB, 7), _key()
            assert t.put([PutItem(key, data)])[0].ok
            out = np.zeros(3 * MiB, dtype=np.uint8)
            result = t.get_into([key], [out])[0]
            assert result.ok and result.length == 3 * MiB
            assert np.array_equal(out, data)
        finally:
            t.close()


# ---- a cluster over memkv+nixl:// (spec/cluster.md; issue 14 item 3) -----------------------------
@pytest.mark.requirement("MKV-CLU-010", "MKV-CLU-013", "MKV-CLU-050")
def test_a_cluster_of_nixl_shards(server: ServerProcess, creds: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    from memkv.backends.nixl import NixlTransport
    from memkv.chains import chain_items
    from memkv.cluster.client import ClusterTransport
    from memkv.keys import block_key

    with _server(tmp_path, creds[0], "on") as second:
        addresses = [f"{p.host}:{p.port}" for p in (server, second)]
        with memkv.connect(f"memkv+nixl://{','.join(addresses)}/{NS}?transport=nixl", key=creds[1]["w"]) as cluster:
            assert isinstance(cluster, ClusterTransport) and cluster.namespace == NS
            fp = bytes(range(16))
            chain, parent = [], bytes(16)
            for i in range(24):
                parent = block_key(fp, parent, [i])
                chain.append(parent)
            homes = [cluster._placement.shard_of(k).shard_id for k in chain]
            assert set(homes) == set(addresses)  # the chain lies on both shards
            blocks = [_data(256 * 1024, i) for i in range(len(chain))]
            assert all(r.ok for r in cluster.put(chain_items(fp, chain, blocks)))
            outs = [np.zeros(256 * 1024, np.uint8) for _ in chain]
            assert all(r.ok for r in cluster.get_into(chain, outs))
            assert all(np.array_equal(o, b) for o, b in zip(outs, blocks, strict=True))
            for address in addresses:  # each shard was reached over NIXL and holds exactly its keys
                shard = cluster._links[address].transport()
                assert isinstance(shard, NixlTransport) and shard.nixl_active
                assert shard.exists(chain) == [home == address for home in homes]
            session = cluster.open_session(60.0, chain, fingerprint=fp)  # parts through each control path
            assert cluster.suspend(session.session_id, 60.0).keys == tuple(chain)
            assert cluster.resume(session.session_id).valid_keys == tuple(chain)
            cluster.close_session(session.session_id)
            assert cluster.invalidate_prefix(chain[0]) == len(chain)  # CHILDREN through each control path
            assert cluster.exists(chain) == [False] * len(chain)
