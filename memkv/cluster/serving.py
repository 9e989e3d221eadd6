"""What `memkv serve` does for clusters: register the shard in etcd while it serves (MKV-CLU-030)."""

from __future__ import annotations

import socket
from typing import Protocol

from .etcd import EtcdRegistration
from .placement import Shard

WILDCARDS = ("", "0.0.0.0", "::", "[::]")


class ClusterSettings(Protocol):
    etcd: str | None
    cluster: str
    shard_id: str | None
    advertise: str | None


def advertised_address(settings: ClusterSettings, bound: tuple[str, int]) -> str:
    host = settings.advertise or (socket.gethostname() if bound[0] in WILDCARDS else bound[0])
    return f"{host}:{bound[1]}"


def announce(settings: ClusterSettings, bound: tuple[str, int]) -> EtcdRegistration | None:
    """Register this server as a shard when an etcd endpoint is set; None otherwise."""
    if not settings.etcd:
        return None
    address = advertised_address(settings, bound)
    shard = Shard(settings.shard_id or address, address=address)
    return EtcdRegistration(settings.etcd, settings.cluster, shard, node=socket.gethostname())


__all__ = ["advertised_address", "announce"]
