"""The cluster client against real `memkv serve` processes on 127.0.0.1 (spec/cluster.md sections 3-4):
batches split per shard, chain lookup, invalidation, sessions on their home shard, a shard killed
mid-load, a shard that comes back, and churn that loses no acknowledged write on the survivors."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

import memkv
from memkv.chains import chain_items
from memkv.cluster.client import ClusterTransport
from memkv.cluster.placement import Placement, Shard
from memkv.errors import ErrorCode, LimitExceeded, Unavailable, UnknownLease, UnknownSession
from memkv.keys import block_key
from memkv.server.cluster_testing import LocalCluster, PoolWriter, pool_payload
from memkv.transport import PutItem, Transport

FP = bytes(range(16))
OTHER_FP = bytes(range(1, 17))


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(3) as running:
        yield running


def _client(cluster: LocalCluster, namespace: str) -> ClusterTransport:
    transport = memkv.connect(cluster.url(namespace))
    assert isinstance(transport, ClusterTransport)
    return transport


def _direct(cluster: LocalCluster, index: int, namespace: str) -> Transport:
    return memkv.connect(f"memkv+tcp://{cluster.addresses[index]}/{namespace}")


def _payload(key: bytes, size: int = 4096) -> bytes:
    return (key * (size // 16 + 1))[:size]


def _chain(count: int, salt: int = 0) -> list[bytes]:
    keys, parent = [], bytes(16)
    for i in range(count):
        parent = block_key(FP, parent, [salt, i])
        keys.append(parent)
    return keys


@pytest.mark.requirement("MKV-CLU-010", "MKV-CLU-040", "MKV-CLU-002")
def test_batches_go_to_the_placed_shard_and_come_back_in_order(cluster: LocalCluster) -> None:
    keys = [os.urandom(16) for _ in range(90)]
    with _client(cluster, "split") as client:
        assert [s.shard_id for s in client.shards] == sorted(cluster.addresses)
        assert all(r.ok for r in client.put([PutItem(k, _payload(k)) for k in keys]))
        assert client.get(keys) == [_payload(k) for k in keys]
        assert client.exists([*keys, os.urandom(16)]) == [True] * 90 + [False]
        infos = client.stat(keys[:5])
        assert [i.length if i else None for i in infos] == [4096] * 5
    placement = Placement(Shard(a, address=a) for a in cluster.addresses)
    for index, address in enumerate(cluster.addresses):
        with _direct(cluster, index, "split") as shard:
            mine = [k for k in keys if placement.shard_of(k).shard_id == address]
            assert mine and shard.exists(mine) == [True] * len(mine)
            others = [k for k in keys if k not in mine]
            assert shard.exists(others) == [False] * len(others)


@pytest.mark.requirement("MKV-CLU-010")
def test_an_oversized_batch_is_refused_before_anything_is_sent(cluster: LocalCluster) -> None:
    with _client(cluster, "oversized") as client:
        limit = client.capabilities().limits.max_batch
        keys = [os.urandom(16) for _ in range(limit + 1)]
        with pytest.raises(LimitExceeded):
            client.put([PutItem(k, b"x") for k in keys])
        assert client.stats()["blocks"] == 0


@pytest.mark.requirement("MKV-CLU-011")
def test_chain_lookup_stops_at_the_first_missing_key_on_any_shard(cluster: LocalCluster) -> None:
    chain = _chain(24)
    with _client(cluster, "lookup") as client:
        assert all(r.ok for r in client.put(chain_items(FP, chain, [_payload(k) for k in chain])))
        assert client.lookup(chain).prefix_len == 24
        client.delete([chain[17]])
        found = client.lookup(chain, lease_ms=5000)
        assert found.prefix_len == 17 and found.lease_id is not None
        client.release_lease(found.lease_id)
        with pytest.raises(UnknownLease):
            client.release_lease(found.lease_id)
        client.delete([chain[0]])
        assert client.lookup(chain, lease_ms=5000) == memkv.transport.LookupResult(0)


@pytest.mark.requirement("MKV-CLU-012", "MKV-CLU-013")
def test_invalidation_reaches_every_shard_and_sums(cluster: LocalCluster) -> None:
    chain = _chain(30, salt=1)
    other = [os.urandom(16) for _ in range(9)]
    with _client(cluster, "invalidate") as client:
        client.put(chain_items(FP, chain, [_payload(k) for k in chain]))
        client.put([PutItem(k, b"other") for k in other])
        assert client.invalidate_model(FP) == 30
        assert client.exists(chain) == [False] * 30 and client.exists(other) == [True] * 9
        assert client.invalidate_namespace() == 9
        client.put([PutItem(k, b"again") for k in other])
        assert client.invalidate_prefix(other[0]) == 1 and client.exists(other).count(True) == 8
        assert client.invalidate_keys(other[1:4]) == 3


@pytest.mark.requirement("MKV-CLU-014")
def test_a_session_lives_on_the_home_shard_of_its_first_key(cluster: LocalCluster) -> None:
    with _client(cluster, "sessions") as client:
        key = os.urandom(16)
        client.put_one(key, b"session block")
        info = client.open_session(60.0, [key])
        home = client._placement.shard_of(key)
        from memkv.cluster.session_ids import home_tag

        assert info.session_id.startswith(home_tag(home.shard_id) + "-") and len(info.session_id) <= 64
        assert client.session_info(info.session_id).keys == (key,)
        suspended = client.suspend(info.session_id, 30.0)
        assert suspended.pinned
        resumed = client.resume(info.session_id)
        assert resumed.valid_keys == (key,) and resumed.session.session_id == info.session_id
        child = client.fork(info.session_id)
        assert child.parent_id == info.session_id
        assert client.invalidate_session(info.session_id) == 1
        client.close_session(info.session_id)
        for bad in ("nosuchsession", "00000000-abc"):
            with pytest.raises(UnknownSession):
                client.session_info(bad)


@pytest.mark.requirement("MKV-CLU-015")
def test_capabilities_and_stats_of_the_cluster(cluster: LocalCluster) -> None:
    with _client(cluster, "caps") as client:
        caps = client.capabilities()
        one = _direct(cluster, 0, "caps")
        single = one.capabilities()
        one.close()
        assert caps.backend == "cluster" and "cluster" in caps.profiles
        assert caps.profiles == (single.profiles & {"core", "durable", "shared", "sessions"}) | {"cluster"}
        assert caps.capacity_bytes == 3 * (single.capacity_bytes or 0)
        client.put([PutItem(os.urandom(16), b"abc") for _ in range(12)])
        stats = client.stats()
        assert stats["blocks"] == 12 and stats["bytes"] == 36 and stats["namespace"] == "caps"
        assert stats["unreachable_shards"] == [] and stats["shards"] == 3
        report = client.shard_report()
        assert sum(r["blocks"] for r in report) == 12 and {r["state"] for r in report} == {"up"}


def _load(client: Transport, keys: list[bytes], stop: threading.Event, outcomes: dict[str, int],
          wrong: list[bytes]) -> None:
    while not stop.is_set():
        buffers = [bytearray(4096) for _ in keys]
        for key, buf, result in zip(keys, buffers, client.get_into(keys, buffers), strict=True):
            outcomes[result.status.name] = outcomes.get(result.status.name, 0) + 1
            if result.ok and bytes(buf[: result.length]) != _payload(key):
                wrong.append(key)


@pytest.mark.requirement("MKV-CLU-020", "MKV-CLU-021", "MKV-CLU-003", "MKV-CLU-041")
def test_a_killed_shard_gives_misses_and_comes_back_with_its_blocks() -> None:
    with LocalCluster(3) as cluster, _client(cluster, "kill") as client:
        keys = [os.urandom(16) for _ in range(60)]
        assert all(r.ok for r in client.put([PutItem(k, _payload(k)) for k in keys]))
        chain = _chain(40, salt=7)  # another model than FP: invalidate_model(FP) below leaves it alone
        assert all(r.ok for r in client.put(chain_items(OTHER_FP, chain, [_payload(k, 512) for k in chain])))
        victim = cluster.addresses[1]
        on_victim = [k for k in keys if client._placement.shard_of(k).shard_id == victim]
        survivors = [k for k in keys if k not in on_victim]
        time.sleep(1.5)  # one flush interval: the victim's index holds its blocks on disk
        stop, outcomes, wrong = threading.Event(), {}, []  # type: ignore[var-annotated]
        loader = threading.Thread(target=_load, args=(client, keys, stop, outcomes, wrong))
        loader.start()
        time.sleep(0.5)
        cluster.kill(1)  # mid-load
        deadline = time.monotonic() + 60  # until the load has met the dead shard (a busy machine is slow)
        while not outcomes.get("UNAVAILABLE") and loader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        loader.join()
        assert wrong == [] and set(outcomes) <= {"OK", "UNAVAILABLE"} and outcomes.get("UNAVAILABLE", 0) > 0
        results = client.get_into(keys, [bytearray(4096) for _ in keys])
        status = {k: r.status for k, r in zip(keys, results, strict=True)}
        assert all(status[k] is ErrorCode.OK for k in survivors)
        assert all(status[k] is ErrorCode.UNAVAILABLE for k in on_victim)
        assert client.exists(keys) == [k in survivors for k in keys]
        assert client.lookup(keys).prefix_len == keys.index(on_victim[0])
        fresh = [PutItem(os.urandom(16), b"while away") for _ in range(30)]
        put = client.put(fresh)  # nothing moves to a survivor: the victim's items fail alone
        for item, result in zip(fresh, put, strict=True):
            placed_on_victim = client._placement.shard_of(item.key).shard_id == victim
            assert result.status is (ErrorCode.UNAVAILABLE if placed_on_victim else ErrorCode.OK)
        chain_on_victim = [client._placement.shard_of(k).shard_id == victim for k in chain]
        assert any(chain_on_victim[1:])
        with pytest.raises(Unavailable, match=victim):  # the walk cannot cross the victim (MKV-CLU-041)
            client.invalidate_prefix(chain[0])
        assert client.exists(chain) == [False] + [not away for away in chain_on_victim[1:]]  # only the prefix went
        with pytest.raises(Unavailable):
            client.invalidate_model(FP)
        assert client.stats()["unreachable_shards"] == [victim]
        cluster.restart(1)
        deadline = time.monotonic() + 10
        while client.exists(on_victim[:1]) != [True] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get(on_victim) == [_payload(k) for k in on_victim]  # served again, nothing moved
        assert client.stats()["unreachable_shards"] == []
        assert client.invalidate_prefix(chain[0]) == 39 + chain_on_victim[0]  # the repeat completes it
        assert client.exists(chain) == [False] * 40


@pytest.mark.requirement("MKV-CLU-020", "MKV-CLU-021")
def test_churn_loses_no_acknowledged_write_on_surviving_shards() -> None:
    with LocalCluster(3) as cluster, _client(cluster, "churn") as client:
        with PoolWriter(client) as writer:
            for _ in range(2):
                time.sleep(0.4)
                cluster.kill(2)
                time.sleep(0.4)
                cluster.restart(2)
            time.sleep(0.4)
        churned = cluster.addresses[2]
        on_survivors = [k for k in writer.acknowledged if client._placement.shard_of(k).shard_id != churned]
        assert writer.refused and on_survivors
        assert all(client._placement.shard_of(k).shard_id == churned for k in writer.refused)
        for start in range(0, len(on_survivors), 200):
            part = on_survivors[start:start + 200]
            assert client.get(part) == [pool_payload(k) for k in part]
