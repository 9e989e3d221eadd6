"""Who the shards of a cluster are: a static list, or a source that changes (etcd) and tells subscribers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from ..errors import InvalidArgument
from .placement import Shard

Listener = Callable[[Sequence[Shard]], None]


class Membership:
    """The current members; subclasses call `_publish` when they change (MKV-CLU-031)."""

    def __init__(self, shards: Sequence[Shard] = (), nodes: dict[str, str] | None = None) -> None:
        self._shards: tuple[Shard, ...] = tuple(shards)
        self._nodes = dict(nodes or {})
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def shards(self) -> tuple[Shard, ...]:
        with self._lock:
            return self._shards

    def node_of(self, shard: Shard) -> str:
        with self._lock:
            return self._nodes.get(shard.shard_id, shard.address.rsplit(":", 1)[0])

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _publish(self, shards: Sequence[Shard], nodes: dict[str, str]) -> None:
        with self._lock:
            self._shards, self._nodes = tuple(shards), dict(nodes)
            listeners = list(self._listeners)
        for listener in listeners:
            listener(self._shards)

    def close(self) -> None:
        """Stop following changes (a static list has nothing to stop)."""


def static_membership(addresses: Sequence[str]) -> Membership:
    """`host:port` addresses, each its own shard id, weight 1 (MKV-CLU-040)."""
    shards = [Shard(address, address=address) for address in addresses]
    if len({s.shard_id for s in shards}) != len(shards):
        raise InvalidArgument(f"an address is listed twice in {', '.join(addresses)}")
    return Membership(shards)


__all__ = ["Listener", "Membership", "static_membership"]
