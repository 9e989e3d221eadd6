"""A memkv cluster as a conformance target: `memkv serve` processes on 127.0.0.1, one per shard, reached
as one transport through `memkv+tcp://H1:P1,H2:P2,...` or, with `etcd=1`, through the membership the
shards register in a real etcd (`memkv+etcd://ETCD/CLUSTER`, spec/cluster.md section 5).

    memkv conformance --target 'memkv.conformance.targets.cluster:local?shards=3' --certify

Options: shards (3), capacity of each shard (128MiB), unit (64KiB), etcd (0; 1 starts an etcd on
127.0.0.1 that the shards register in and every client follows). The small-capacity instances of
the eviction checks are one-shard clusters reached by address: eviction is a property of each
shard, and a one-shard cluster still goes through the cluster client.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from typing import Any

from memkv.cluster.client import ClusterTransport
from memkv.cluster.placement import Placement, Shard
from memkv.server.cluster_testing import EtcdProcess, LocalCluster
from memkv.transport import Transport

from ..target import Target
from .server import ServerTarget

KiB = 1024


class ClusterTarget(Target):
    """A cluster reached by its `memkv+tcp://` list; `cluster` when this target started it (it stops it)."""

    def __init__(self, addresses: list[str], cluster: LocalCluster | None = None, membership: str = "",
                 etcd: EtcdProcess | None = None) -> None:
        self.addresses = addresses
        self.cluster = cluster
        self.etcd = etcd
        self.url = f"memkv+etcd://{membership}" if membership else "memkv+tcp://" + ",".join(addresses)
        # what the suite's worker processes load: the same running shards, not a cluster of their own
        self.spec = "memkv.conformance.targets.cluster:attach?" + urllib.parse.urlencode(
            {"addresses": ",".join(addresses), "membership": membership})
        self._small: list[ClusterTarget] = []

    @classmethod
    def started(cls, shards: int, capacity: str, unit: str, etcd: bool = False) -> ClusterTarget:
        if not etcd:
            cluster = LocalCluster(shards, capacity=capacity, unit=unit)
            return cls(cluster.addresses, cluster)
        server = EtcdProcess()
        name = "conformance"
        try:
            cluster = LocalCluster(shards, capacity=capacity, unit=unit,
                                   extra=["--etcd", server.endpoint, "--cluster", name])
        except BaseException:
            server.close()
            raise
        target = cls(cluster.addresses, cluster, f"{server.endpoint}/{name}", server)
        try:
            target._wait_for_registrations()
        except BaseException:
            target.close()
            raise
        return target

    def _wait_for_registrations(self, timeout: float = 30.0) -> None:
        """Until a client that follows etcd sees every shard (each registers once it listens)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.connect("probe") as probe:
                assert isinstance(probe, ClusterTransport)
                seen = sorted(shard.address for shard in probe.shards)
            if seen == sorted(self.addresses):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd lists shards {seen}, the cluster runs {sorted(self.addresses)}")
            time.sleep(0.2)

    def connect(self, namespace: str) -> Transport:
        import memkv

        return memkv.connect(self.url, namespace=namespace)

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "kind": f"memkv cluster of {len(self.addresses)} shards",
                "shards": self.addresses, "url": self.url}

    def corrupt_block(self, namespace: str, key: bytes) -> bool:
        """Damage the block on the shard that holds it, through that shard's own data directory."""
        if self.cluster is None:
            return False
        placement = Placement(Shard(a, address=a) for a in self.addresses)
        address = placement.shard_of(bytes(key)).shard_id
        index = self.addresses.index(address)
        host, port = address.rsplit(":", 1)
        shard = ServerTarget(host, int(port), data_dir=str(self.cluster.directory / f"shard-{index}"))
        try:
            return shard.corrupt_block(namespace, key)
        finally:
            shard.close()

    def make_small(self, capacity: int) -> Target:
        small = ClusterTarget.started(1, capacity=str(capacity + 64 * KiB), unit=str(64 * KiB))
        self._small.append(small)
        return small

    def close(self) -> None:
        for small in self._small:
            with contextlib.suppress(Exception):
                small.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.etcd is not None:
            self.etcd.close()


def local(shards: str = "3", capacity: str = "128MiB", unit: str = "64KiB", etcd: str = "0") -> ClusterTarget:
    """Start `shards` servers (and, with etcd=1, their etcd) on 127.0.0.1 and stop them when the run ends."""
    return ClusterTarget.started(int(shards), capacity, unit, etcd=etcd not in ("", "0", "false", "no"))


def attach(addresses: str, membership: str = "") -> ClusterTarget:
    """Shards already running (`host:port,host:port`), e.g. those of `memkv serve --shards N`; with
    `membership` (ETCD_HOST:PORT/CLUSTER) clients reach them through etcd."""
    return ClusterTarget([a for a in addresses.split(",") if a], membership=membership)


__all__ = ["ClusterTarget", "attach", "local"]
