"""The transport interface on top of Redis, the way a team would use Redis as a KV-cache tier.

Blocks are Redis strings under `<namespace>:<key>`: SET NX to store, GET/STRLEN/EXISTS to read,
DEL to delete, SCAN+DEL to drop a namespace, `maxmemory-policy allkeys-lru` for eviction. That
is all: no per-block metadata, no checksum verification, no leases, no prefix or model index, no
sessions. It claims the profiles such a deployment would claim (core, shared) and the conformance
report shows where Redis-as-a-cache falls short of the spec and why.

Target spec: `memkv.conformance.adapters.redis_adapter:target` starts a private redis-server on
127.0.0.1 and a free port; `...:target?host=H&port=P` uses a running server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any, cast

import redis

from memkv.blocks import BlockMeta, Limits
from memkv.buffers import BufferLike, readable_view, writable_view
from memkv.checksum import payload_checksum
from memkv.errors import (
    BufferTooSmall,
    InvalidArgument,
    InvalidKey,
    KeyConflict,
    MemkvError,
    NotFound,
    Unavailable,
    UnknownLease,
    Unsupported,
)
from memkv.keys import KEY_SIZE
from memkv.namespaces import check_namespace
from memkv.server.testing import free_port
from memkv.sessions import SessionInfo
from memkv.transport import (
    BlockInfo,
    Capabilities,
    GetResult,
    ItemResult,
    LookupResult,
    PutItem,
    ResumeResult,
    Transport,
)

from ..target import Target

MiB = 1024 * 1024
LIMITS = Limits(max_block_size=64 * MiB, max_batch=256)


def _key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview) or len(bytes(key)) != KEY_SIZE:
        raise InvalidKey(f"key must be {KEY_SIZE} bytes")
    return bytes(key)


class RedisTransport(Transport):
    def __init__(self, client: redis.Redis, namespace: str, capacity: int | None) -> None:
        self.client = client
        self.namespace = check_namespace(namespace)
        self.capacity = capacity
        self.prefix = namespace.encode() + b":"

    def _k(self, key: bytes) -> bytes:
        return self.prefix + _key(key)

    def _item(self, fn: Any) -> Any:
        try:
            return fn()
        except MemkvError as exc:
            return ItemResult(exc.code, exc.message)
        except redis.RedisError as exc:
            return ItemResult(Unavailable.code, str(exc))

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        def one(item: PutItem) -> ItemResult:
            rkey = self._k(item.key)
            data = bytes(readable_view(item.payload))
            if not data:
                raise InvalidArgument("empty payload")
            if self.client.set(rkey, data, nx=True):
                return ItemResult()
            if self.client.get(rkey) == data:
                return ItemResult()
            raise KeyConflict("key holds other bytes")

        return [self._item(lambda item=item: one(item)) for item in items]

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        def one(key: bytes, buffer: BufferLike) -> GetResult:
            data = cast(bytes | None, self.client.get(self._k(key)))
            if data is None:
                raise NotFound("no such block")
            dest = writable_view(buffer)
            if len(dest) < len(data):
                raise BufferTooSmall(f"block is {len(data)} bytes")
            dest[: len(data)] = data
            return GetResult(length=len(data), checksum=payload_checksum(data), meta=BlockMeta())

        results: list[GetResult] = []
        for key, buffer in zip(keys, buffers, strict=False):
            try:
                results.append(one(key, buffer))
            except MemkvError as exc:
                results.append(GetResult(exc.code, exc.message))
        return results

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        values = cast(list[bytes | None], self.client.mget([self._k(k) for k in keys]) if keys else [])
        return [None if v is None else BlockInfo(bytes(k), len(v), payload_checksum(v), BlockMeta())
                for k, v in zip(keys, values, strict=False)]

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(self._k(key))
        return [bool(n) for n in pipe.execute()]

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        prefix = 0
        for there in self.exists(keys):
            if not there:
                break
            prefix += 1
        return LookupResult(prefix)  # Redis has no way to protect keys from allkeys-lru eviction

    def release_lease(self, lease_id: str) -> None:
        raise UnknownLease("this adapter issues no leases")

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        def one(key: bytes) -> ItemResult:
            if not self.client.delete(self._k(key)):
                raise NotFound("no such block")
            return ItemResult()

        return [self._item(lambda key=key: one(key)) for key in keys]

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo:
        raise Unsupported("sessions are not implemented on Redis")

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        raise Unsupported("sessions are not implemented on Redis")

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        raise Unsupported("sessions are not implemented on Redis")

    def resume(self, session_id: str) -> ResumeResult:
        raise Unsupported("sessions are not implemented on Redis")

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        raise Unsupported("sessions are not implemented on Redis")

    def close_session(self, session_id: str) -> SessionInfo:
        raise Unsupported("sessions are not implemented on Redis")

    def session_info(self, session_id: str) -> SessionInfo:
        raise Unsupported("sessions are not implemented on Redis")

    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        rkeys = [self._k(k) for k in keys]
        return int(self.client.delete(*rkeys)) if rkeys else 0

    def invalidate_prefix(self, key: bytes) -> int:
        raise Unsupported("Redis keeps no parent links: prefix invalidation is not possible")

    def invalidate_session(self, session_id: str) -> int:
        raise Unsupported("sessions are not implemented on Redis")

    def invalidate_model(self, fingerprint: bytes) -> int:
        raise Unsupported("Redis keeps no model index")

    def invalidate_namespace(self) -> int:
        count = 0
        for rkey in self.client.scan_iter(match=self.prefix + b"*", count=1000):
            count += int(self.client.delete(rkey))
        return count

    def capabilities(self) -> Capabilities:
        return Capabilities("redis", frozenset({"core", "shared"}), LIMITS, capacity_bytes=self.capacity)

    def stats(self) -> dict[str, Any]:
        info = self.client.info("memory")
        return {"used_memory": info.get("used_memory"), "maxmemory": info.get("maxmemory")}

    def _close(self) -> None:
        """Nothing to release beyond the executor, which the base class stops."""


class RedisTarget(Target):
    """A redis-server: started privately by the suite (and stopped at the end), or a running one."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, maxmemory: int = 256 * MiB) -> None:
        self.host = host
        self.process: subprocess.Popen[bytes] | None = None
        self.directory: str | None = None
        self._small: list[RedisTarget] = []
        if port is None:
            port = self._start_server(maxmemory)
        self.port = port
        self.client = redis.Redis(host=host, port=port)
        configured = cast(dict[str, str], self.client.config_get("maxmemory"))
        self.maxmemory: int | None = int(configured.get("maxmemory", "0")) or None
        if self.process is not None:
            # the declared capacity is for blocks: add what the empty server already uses
            overhead = int(cast(dict[str, Any], self.client.info("memory")).get("used_memory", 0))
            self.client.config_set("maxmemory", str(maxmemory + overhead))
            self.maxmemory = maxmemory
        self.spec = f"memkv.conformance.adapters.redis_adapter:target?host={host}&port={port}"

    def _start_server(self, maxmemory: int) -> int:
        server = shutil.which("redis-server")
        if server is None:
            raise Unavailable("redis-server is not installed")
        self.directory = tempfile.mkdtemp(prefix="memkv-redis-")
        port = free_port()
        self.process = subprocess.Popen(
            [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", self.directory, "--maxmemory", str(maxmemory), "--maxmemory-policy", "allkeys-lru",
             "--proto-max-bulk-len", str(512 * MiB)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(200):
            with contextlib.suppress(redis.RedisError):
                if probe.ping():
                    return port
            time.sleep(0.02)
        raise Unavailable("redis-server did not start")

    def connect(self, namespace: str) -> Transport:
        return RedisTransport(self.client, namespace, self.maxmemory)

    def describe(self) -> dict[str, Any]:
        version = self.client.info("server").get("redis_version", "?")
        return {"spec": self.spec, "kind": f"Redis {version} via memkv.conformance.adapters.redis_adapter "
                f"(SET NX/GET/EXISTS/DEL, allkeys-lru)"}

    def make_small(self, capacity: int) -> Target:
        small = RedisTarget(maxmemory=capacity)
        self._small.append(small)
        return small

    def corrupt_block(self, namespace: str, key: bytes) -> bool:
        rkey = namespace.encode() + b":" + bytes(key)
        first = cast(bytes, self.client.getrange(rkey, 0, 0))
        if not first:
            return False
        self.client.setrange(rkey, 0, bytes([first[0] ^ 0xFF]))
        return True

    def close(self) -> None:
        for small in self._small:
            small.close()
        self.client.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def target(host: str = "127.0.0.1", port: str | None = None) -> Target:
    return RedisTarget(host, int(port) if port else None)


def redis_available() -> bool:
    return shutil.which("redis-server") is not None and os.name == "posix"


__all__ = ["RedisTarget", "RedisTransport", "redis_available", "target"]
