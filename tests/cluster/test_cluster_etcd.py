"""`memkv serve --shards N`, membership in etcd and `memkv+etcd://` clients, with real etcd and server
processes on 127.0.0.1 free ports (spec/cluster.md sections 5 and 6)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import memkv
from memkv.cluster.client import ClusterTransport
from memkv.cluster.etcd import EtcdRegistration, _client, shards_prefix
from memkv.cluster.placement import Shard
from memkv.server.cluster_testing import EtcdProcess, LocalCluster, PoolWriter
from memkv.transport import PutItem

MEMKV = [sys.executable, "-c", "import sys; from memkv.cli.main import main; sys.exit(main())"]
pytestmark = pytest.mark.skipif(not Path("/usr/bin/etcd").exists() and not os.environ.get("MEMKV_ETCD"),
                                reason="etcd is not installed (apt-get install etcd-server); .ci/run installs it")


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdProcess]:
    with EtcdProcess() as running:
        yield running


def _wait_for(predicate: object, seconds: float = 60.0) -> None:
    """Poll until `predicate()` holds; the generous limit is for a loaded machine (a met condition returns
    at once)."""
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)
    assert predicate(), "condition not reached in time"  # type: ignore[operator]


class ShardedServe:
    """`python -m memkv serve --shards N ...` in a subprocess; the cluster URL is read from its output."""

    def __init__(self, tmp: Path, shards: int, extra: list[str]) -> None:
        self.proc = subprocess.Popen(
            [*MEMKV, "serve", "--shards", str(shards), "--data", str(tmp / "data"),
             "--listen", "127.0.0.1:0", "--capacity", f"{64 * shards}MiB", "--unit", "64KiB", "--insecure-no-auth",
             *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.lines: list[str] = []
        for raw in self.proc.stdout:
            self.lines.append(raw.decode().strip())
            if "cluster memkv+tcp://" in self.lines[-1]:
                break
        self.url = self.lines[-1].split("cluster ", 1)[1]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@pytest.mark.requirement("MKV-CLU-030", "MKV-CLU-031", "MKV-CLU-040")
def test_sharded_server_registers_its_shards_and_clients_follow_etcd(tmp_path: Path, etcd: EtcdProcess) -> None:
    served = ShardedServe(tmp_path, 3, ["--etcd", etcd.endpoint, "--cluster", "node-a", "--admin-listen", "off"])
    try:
        ports = [int(m) for m in re.findall(r"127\.0\.0\.1:(\d+)", served.url)]
        assert len(set(ports)) == 3 and all((tmp_path / "data" / f"shard-{i}").is_dir() for i in range(3))
        registered = _client(etcd.endpoint).get_prefix(shards_prefix("node-a"))
        assert len(registered) == 3
        for value, meta in registered:
            doc = json.loads(value)
            assert doc["weight"] == 1 and doc["node"] and meta["lease"]  # under a lease
            assert bytes(meta["key"]).decode().endswith(doc["address"])  # id: the advertised address
        keys = [os.urandom(16) for _ in range(60)]
        with memkv.connect(f"memkv+etcd://{etcd.endpoint}/node-a/ns") as by_etcd, memkv.connect(served.url + "/ns") \
                as by_list:
            assert isinstance(by_etcd, ClusterTransport) and isinstance(by_list, ClusterTransport)
            assert by_etcd.shards == by_list.shards  # the same ids, so the same placement
            assert all(r.ok for r in by_etcd.put([PutItem(k, k * 4) for k in keys]))
            assert by_list.get(keys) == [k * 4 for k in keys]
            assert "cluster" in by_etcd.capabilities().profiles
            assert [r["state"] for r in by_etcd.shard_report()] == ["up"] * 3
        admin = subprocess.run([*MEMKV, "admin", "cluster",
                                f"memkv+etcd://{etcd.endpoint}/node-a", "--namespace", "ns"],
                               capture_output=True, text=True, timeout=60)
        assert admin.returncode == 0, admin.stderr
        assert "3 shards, 3 up" in admin.stdout and admin.stdout.count("127.0.0.1:") == 3
    finally:
        assert served.stop() == 0
    _wait_for(lambda: _client(etcd.endpoint).get_prefix(shards_prefix("node-a")) == [])  # revoked on stop


@pytest.mark.requirement("MKV-CLU-031", "MKV-CLU-003")
def test_clients_reroute_when_a_shard_leaves_and_comes_back(etcd: EtcdProcess) -> None:
    name = "reroute"
    with LocalCluster(3, extra=["--etcd", etcd.endpoint, "--cluster", name]) as cluster, \
            memkv.connect(f"memkv+etcd://{etcd.endpoint}/{name}/ns") as client:
        assert isinstance(client, ClusterTransport)
        assert sorted(s.shard_id for s in client.shards) == sorted(cluster.addresses)
        leaving = cluster.addresses[0]
        with PoolWriter(client) as writer:
            time.sleep(0.3)
            cluster.stop(0)  # SIGTERM: the shard revokes its lease and leaves the membership
            _wait_for(lambda: leaving not in [s.shard_id for s in client.shards])
            time.sleep(0.3)
            cluster.restart(0)
            _wait_for(lambda: leaving in [s.shard_id for s in client.shards])
            _wait_for(lambda: len(writer.acknowledged) >= 300)  # about 200 of them on the survivors
        survivors = [k for k in writer.acknowledged if client._placement.shard_of(k).shard_id != leaving]
        assert len(survivors) > 100
        for start in range(0, len(survivors), 200):  # no acknowledged write on a surviving shard is lost
            assert client.exists(survivors[start:start + 200]) == [True] * len(survivors[start:start + 200])


@pytest.mark.requirement("MKV-CLU-030")
def test_a_registration_outlives_its_ttl_while_kept_alive(etcd: EtcdProcess) -> None:
    shard = Shard("ttl-check", address="127.0.0.1:1")
    # refreshed every ttl_s / 3: only a refresh thread starved for the whole TTL (4 s) would lose it
    registration = EtcdRegistration(etcd.endpoint, "ttl", shard, node="n", ttl_s=4)
    try:
        time.sleep(5.0)
        assert len(_client(etcd.endpoint).get_prefix(shards_prefix("ttl"))) == 1
    finally:
        registration.close()
    assert _client(etcd.endpoint).get_prefix(shards_prefix("ttl")) == []
