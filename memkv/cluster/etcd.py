"""Membership in etcd (spec/cluster.md section 5): shards register under a lease, clients watch.

Talks to etcd's v3 JSON gateway through etcd3gw. A shard's key is
`/memkv/clusters/<cluster>/shards/<shard id>`, its value a JSON object with address, weight and
node, attached to a lease that a background thread keeps alive (MKV-CLU-030). A client reads the
prefix, watches it, and re-reads it on every event (MKV-CLU-031).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import threading
from typing import Any

from ..errors import InvalidArgument, Unavailable
from .membership import Membership
from .placement import Shard

log = logging.getLogger("memkv.cluster.etcd")
MAX_TTL_S = 30
DEFAULT_TTL_S = 10
CLUSTER_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_MEMBER_VALUE = 4096
MAX_WATCH_LINE = 1 << 20


def shards_prefix(cluster: str) -> str:
    if not CLUSTER_NAME_RE.match(cluster):
        raise InvalidArgument(f"cluster name {cluster!r} is not 1..64 characters of [A-Za-z0-9_.-]")
    return f"/memkv/clusters/{cluster}/shards/"


def _client(endpoint: str) -> Any:
    from etcd3gw.client import Etcd3Client

    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument(f"etcd endpoint {endpoint!r} is not host:port")
    return Etcd3Client(host=host.strip("[]"), port=int(port), timeout=5)


def _etcd_errors() -> tuple[type[BaseException], ...]:
    from etcd3gw.exceptions import Etcd3Exception  # the client turns HTTP and socket errors into these

    return (Etcd3Exception, OSError)


def parse_member(shard_id: str, value: bytes) -> tuple[Shard, str] | None:
    """(shard, node) from a registration value; None for a value that is not one (ignored, MKV-CLU-031)."""
    if len(value) > MAX_MEMBER_VALUE:
        return None
    try:
        doc = json.loads(value)
        shard = Shard(shard_id, address=str(doc["address"]), weight=doc.get("weight", 1))
        return shard, str(doc.get("node", ""))
    except (ValueError, KeyError, TypeError, InvalidArgument):
        return None


class EtcdMembership(Membership):
    """The shards registered under a cluster's prefix, followed by a watch."""

    def __init__(self, client: Any, cluster: str) -> None:
        super().__init__()
        self._client = client
        self.cluster = cluster
        self._prefix = shards_prefix(cluster)
        self._stream: Any = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def follow(cls, endpoint: str, cluster: str) -> EtcdMembership:
        membership = cls(_client(endpoint), cluster)
        try:
            membership.reload()
        except _etcd_errors() as exc:
            raise Unavailable(f"etcd at {endpoint} cannot be read: {exc}") from None
        if not membership.shards():
            raise Unavailable(f"no shard is registered in etcd at {endpoint} for cluster {cluster!r}")
        membership.start_watch()
        return membership

    def reload(self) -> None:
        shards: list[Shard] = []
        nodes: dict[str, str] = {}
        for value, meta in self._client.get_prefix(self._prefix):
            shard_id = bytes(meta["key"]).decode("utf-8", "replace")[len(self._prefix):]
            member = parse_member(shard_id, bytes(value))
            if member is not None:
                shards.append(member[0])
                nodes[shard_id] = member[1]
        self._publish(shards, nodes)

    def start_watch(self) -> None:
        """Follow the prefix from a daemon thread (etcd3gw's own watcher runs on threads that keep an
        interpreter from exiting until the watch is cancelled)."""
        start, end = self._prefix.encode(), _range_end(self._prefix.encode())
        request = {"create_request": {"key": base64.b64encode(start).decode(),
                                      "range_end": base64.b64encode(end).decode()}}
        self._stream = self._client.session.post(self._client.get_url("/watch"), json=request, stream=True,
                                                 timeout=(5, None))
        self._thread = threading.Thread(target=self._follow, name="memkv-etcd-watch", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for line in self._stream.iter_lines(chunk_size=4096):
                if self._stopped.is_set():
                    return
                if not line or len(line) > MAX_WATCH_LINE or b'"events"' not in line:
                    continue  # the created answer and progress notes carry no change
                try:
                    self.reload()
                except _etcd_errors() as exc:  # keep the last membership; the next event reloads
                    log.warning("etcd membership of %s not reloaded: %s", self.cluster, exc)
        except Exception as exc:  # the stream ended (etcd stopped, or close())
            if not self._stopped.is_set():
                log.warning("etcd watch of %s ended: %s; the membership no longer follows changes", self.cluster, exc)

    def close(self) -> None:
        self._stopped.set()
        if self._stream is None:
            return
        try:  # wake the reader first: closing the response under it would wait for its lock
            with socket.socket(fileno=os.dup(self._stream.raw.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass  # already closed by etcd
        if self._thread is not None:
            self._thread.join(5)
        self._stream.close()


def _range_end(prefix: bytes) -> bytes:
    """The end of etcd's key range of every key that starts with `prefix`."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class EtcdRegistration:
    """One shard's key under a lease of `ttl_s`, refreshed every third of it until `close`."""

    def __init__(self, endpoint: str, cluster: str, shard: Shard, node: str, ttl_s: int = DEFAULT_TTL_S) -> None:
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise InvalidArgument(f"etcd lease TTL {ttl_s} s is not in 1..{MAX_TTL_S}")
        self._client = _client(endpoint)
        self.key = shards_prefix(cluster) + shard.shard_id
        self.value = json.dumps({"address": shard.address, "weight": shard.weight, "node": node})
        self.ttl_s = ttl_s
        self._stopped = threading.Event()
        try:
            self._lease = self._register()
        except _etcd_errors() as exc:
            raise Unavailable(f"cannot register shard {shard.shard_id} in etcd at {endpoint}: {exc}") from None
        self._thread = threading.Thread(target=self._keep_alive, name="memkv-etcd-lease", daemon=True)
        self._thread.start()

    def _register(self) -> Any:
        lease = self._client.lease(self.ttl_s)
        self._client.put(self.key, self.value, lease=lease)
        return lease

    def _keep_alive(self) -> None:
        while not self._stopped.wait(self.ttl_s / 3):
            try:
                if self._lease.refresh() <= 0:  # expired while etcd was away: register again
                    self._lease = self._register()
            except _etcd_errors() as exc:
                log.warning("etcd lease of %s not refreshed: %s", self.key, exc)

    def close(self) -> None:
        """Leave the cluster now (the lease is revoked, so clients see the shard go at once)."""
        self._stopped.set()
        self._thread.join()
        try:
            self._lease.revoke()
        except _etcd_errors() as exc:
            log.warning("etcd lease of %s not revoked (it expires by itself): %s", self.key, exc)


__all__ = ["EtcdMembership", "EtcdRegistration", "parse_member", "shards_prefix"]
