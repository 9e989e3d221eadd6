"""`memkv.connect` for clusters: `memkv+tcp://h1:p1,h2:p2/ns` (static) and `memkv+etcd://host:port/cluster/ns`."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from ..addresses import split_address
from ..errors import InvalidArgument
from ..transport import Transport
from .client import ClusterTransport
from .membership import Membership, static_membership
from .placement import Shard

DATA_SCHEMES = ("memkv+tcp", "memkv+nixl")


def is_cluster_url(parsed: urllib.parse.SplitResult) -> bool:
    return parsed.scheme == "memkv+etcd" or (parsed.scheme in DATA_SCHEMES and "," in parsed.netloc)


def shard_opener(scheme: str, options: dict[str, Any]) -> Callable[[Shard, str], Transport]:
    """How to reach one shard: the data-path client of `scheme` with the URL's options."""

    def open_shard(shard: Shard, namespace: str) -> Transport:
        host, port = split_address(shard.address)
        if scheme == "memkv+nixl":
            from ..backends.nixl import open_nixl

            return open_nixl(host, port, namespace, dict(options))
        from ..backends.tcp import open_tcp

        return open_tcp(host, port, namespace, dict(options))

    return open_shard


def _static(addresses: list[str]) -> Membership:
    """The static membership of a list of `host:port` (MKV-CLU-040), each checked first."""
    for address in addresses:
        split_address(address)
    return static_membership(addresses)


def _cluster(membership: Membership, namespace: str, scheme: str, options: dict[str, Any]) -> Transport:
    """One transport over `membership`'s shards; the membership is closed if that fails."""
    try:
        return ClusterTransport(membership, namespace, shard_opener(scheme, options), owns_membership=True)
    except BaseException:
        membership.close()
        raise


def over_group(single: Transport, scheme: str, namespace: str, options: dict[str, Any]) -> Transport:
    """`single` itself, or, when its server names a group of two or more shards, a cluster over the
    group (MKV-CLU-061): keys stored through one shard alone would not be where the group places them."""
    group = list(getattr(single, "shard_group", ()))
    if len(group) < 2:
        return single
    single.close()
    return _cluster(_static(group), namespace, scheme, options)


def connect_cluster(url: str, parsed: urllib.parse.SplitResult, namespace: str, options: dict[str, Any]) -> Transport:
    """`options`: the client options of every shard (key, pool_size, timeout, connect_timeout)."""
    path = urllib.parse.unquote(parsed.path).strip("/")
    membership: Membership
    if parsed.scheme == "memkv+etcd":
        from .etcd import EtcdMembership

        cluster, _, path_namespace = path.partition("/")
        if not cluster:
            raise InvalidArgument(f"{url!r}: memkv+etcd:// needs a cluster name: memkv+etcd://HOST:PORT/CLUSTER/NAMESPACE")
        scheme = str(options.pop("data_scheme", "memkv+tcp"))
        if scheme not in DATA_SCHEMES:
            raise InvalidArgument(f"data_scheme must be one of {DATA_SCHEMES}")
        membership = EtcdMembership.follow(parsed.netloc or "127.0.0.1:2379", cluster)
    else:
        scheme, path_namespace = parsed.scheme, path
        membership = _static([a.strip() for a in parsed.netloc.split(",") if a.strip()])
    if path_namespace and namespace == "default":
        namespace = path_namespace
    return _cluster(membership, namespace, scheme, options)


__all__ = ["connect_cluster", "is_cluster_url", "over_group", "shard_opener", "split_address"]
