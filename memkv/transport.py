"""THE interface every memkv backend implements (spec section "Operations", MKV-OPS-*).

Batch operations return one result per item, in order; whole-request failures (a batch over
the limit, a closed transport, bad credentials) raise a `MemkvError`. Single-item helpers
raise the typed error of a failed item. Payloads are any buffer or a `MemoryRegion`
descriptor, so zero-copy transports (NIXL) take caller memory as it is.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

from .blocks import BlockMeta, Limits
from .buffers import BufferLike
from .errors import ErrorCode, error_for
from .sessions import SessionInfo

SPEC_VERSION = "1.2"

_POOL_LOCK = threading.Lock()
DEFAULT_META = BlockMeta()

PROFILES = ("core", "sessions", "durable", "shared", "secure", "admin", "wire", "nixl", "cluster")


@dataclasses.dataclass(frozen=True, slots=True)
class PutItem:
    key: bytes
    payload: BufferLike
    meta: BlockMeta = DEFAULT_META
    checksum: int | None = None
    """XXH3-64 of the payload computed by the writer; None lets the client library compute it."""


@dataclasses.dataclass(frozen=True, slots=True)
class ItemResult:
    status: ErrorCode = ErrorCode.OK
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is ErrorCode.OK

    def raise_for_status(self) -> None:
        if not self.ok:
            raise error_for(self.status, self.message)


@dataclasses.dataclass(frozen=True, slots=True)
class GetResult(ItemResult):
    length: int = 0
    checksum: int = 0
    meta: BlockMeta | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class BlockInfo:
    key: bytes
    length: int
    checksum: int
    meta: BlockMeta


@dataclasses.dataclass(frozen=True, slots=True)
class LookupResult:
    """Longest present prefix of a key chain, and the lease protecting it (MKV-OPS-006)."""

    prefix_len: int
    lease_id: str | None = None
    lease_expires_at: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ResumeResult:
    """The longest still-valid prefix of a resumed session (MKV-SES-005)."""

    session: SessionInfo
    valid_keys: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Capabilities:
    """What a target claims: spec profiles, limits, and its own description (MKV-CAP-001)."""

    backend: str
    profiles: frozenset[str]
    limits: Limits
    spec_version: str = SPEC_VERSION
    capacity_bytes: int | None = None
    flush_window_s: float | None = None  # longest time between completed flushes (MKV-OPS-016)
    shard_group: tuple[str, ...] = ()  # every shard of the server's group, itself included (MKV-CLU-060)

    def to_dict(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "backend": self.backend,
            "profiles": sorted(self.profiles),
            "limits": self.limits.to_dict(),
            "spec_version": self.spec_version,
            "capacity_bytes": self.capacity_bytes,
            "flush_window_s": self.flush_window_s,
        }
        if self.shard_group:  # optional since 1.2: a lone server's answer stays the bytes of 1.1
            answer["shard_group"] = list(self.shard_group)
        return answer


class Transport(abc.ABC):
    """A connection to one namespace of a memkv target."""

    namespace: str

    # ---- blocks -----------------------------------------------------------------------------
    @abc.abstractmethod
    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        """Store blocks. Each is visible only once fully written and verified (MKV-OPS-002)."""

    def put_chain(self, fingerprint: bytes, chain: Sequence[bytes], payloads: Sequence[BufferLike], start: int = 0,
                  meta: BlockMeta = DEFAULT_META) -> list[ItemResult]:
        """Store chain[start:] (payloads[i] is the block of chain[start + i]) with fingerprint and parent set
        from the chain, so that invalidation by model and by prefix finds every block."""
        from .chains import chain_items

        return self.put(chain_items(fingerprint, chain, payloads, start, meta))

    @abc.abstractmethod
    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        """Read blocks into caller buffers (one per key, at least the block's length)."""

    @abc.abstractmethod
    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        """Length, checksum and metadata of blocks; None where absent."""

    @abc.abstractmethod
    def exists(self, keys: Sequence[bytes]) -> list[bool]: ...

    @abc.abstractmethod
    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        """Longest present prefix of `keys`; with lease_ms > 0 it is protected from eviction."""

    @abc.abstractmethod
    def release_lease(self, lease_id: str) -> None: ...

    @abc.abstractmethod
    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]: ...

    # ---- sessions ---------------------------------------------------------------------------
    @abc.abstractmethod
    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo: ...

    @abc.abstractmethod
    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo: ...

    @abc.abstractmethod
    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        """Pin the session's blocks for a pause of at most pause_ttl_s (MKV-SES-004)."""

    @abc.abstractmethod
    def resume(self, session_id: str) -> ResumeResult: ...

    @abc.abstractmethod
    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo: ...

    @abc.abstractmethod
    def close_session(self, session_id: str) -> SessionInfo: ...

    @abc.abstractmethod
    def session_info(self, session_id: str) -> SessionInfo: ...

    # ---- invalidation -----------------------------------------------------------------------
    @abc.abstractmethod
    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        """Remove these blocks; returns how many existed (MKV-INV-001)."""

    @abc.abstractmethod
    def invalidate_prefix(self, key: bytes) -> int:
        """Remove the block `key` and every block chained after it (MKV-INV-002)."""

    @abc.abstractmethod
    def invalidate_session(self, session_id: str) -> int: ...

    @abc.abstractmethod
    def invalidate_model(self, fingerprint: bytes) -> int: ...

    @abc.abstractmethod
    def invalidate_namespace(self) -> int: ...

    # ---- target -----------------------------------------------------------------------------
    @abc.abstractmethod
    def capabilities(self) -> Capabilities: ...

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]: ...

    _closed = False

    def close(self) -> None:
        """Close once: wait for the non-blocking operations in flight, then `_close()`."""
        with _POOL_LOCK:
            if self._closed:
                return
            self._closed = True
        try:
            self._shutdown_executor()
        finally:
            self._close()

    @abc.abstractmethod
    def _close(self) -> None:
        """Release what the transport holds (connections, an engine, an inner transport); called once,
        after the operations in flight finished. Operations after close() raise Unavailable."""

    # ---- conveniences built on the primitives (shared by every backend) ----------------------
    def get(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Read blocks into fresh bytes; None where absent. Costs a stat round and an allocation."""
        infos = self.stat(keys)
        present = [(k, i) for k, i in zip(keys, infos, strict=True) if i is not None]
        buffers = [bytearray(i.length) for _, i in present]
        results = self.get_into([k for k, _ in present], buffers)
        by_key: dict[bytes, bytes | None] = {}
        for (key, _), buf, res in zip(present, buffers, results, strict=True):
            if res.status is ErrorCode.NOT_FOUND:
                by_key[key] = None
                continue
            res.raise_for_status()
            by_key[key] = bytes(memoryview(buf)[: res.length])
        return [by_key.get(k) for k in keys]

    def put_one(self, key: bytes, payload: BufferLike, meta: BlockMeta = DEFAULT_META) -> None:
        self.put([PutItem(key, payload, meta)])[0].raise_for_status()

    def get_one(self, key: bytes) -> bytes:
        value = self.get([key])[0]
        if value is None:
            raise error_for(ErrorCode.NOT_FOUND, f"no block {key.hex()}")
        return value

    # Non-blocking forms: engines overlap I/O with compute (MKV-OPS-010).
    _pool: concurrent.futures.ThreadPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with _POOL_LOCK:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="memkv-io")
            return self._pool

    def put_async(self, items: Sequence[PutItem]) -> concurrent.futures.Future[list[ItemResult]]:
        return self._executor().submit(self.put, list(items))

    def get_into_async(
        self, keys: Sequence[bytes], buffers: Sequence[BufferLike]
    ) -> concurrent.futures.Future[list[GetResult]]:
        return self._executor().submit(self.get_into, list(keys), list(buffers))

    async def aput(self, items: Sequence[PutItem]) -> list[ItemResult]:
        return await asyncio.wrap_future(self.put_async(items))

    async def aget_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        return await asyncio.wrap_future(self.get_into_async(keys, buffers))

    def _shutdown_executor(self) -> None:
        with _POOL_LOCK:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raise_first_error(results: Sequence[ItemResult]) -> None:
    for result in results:
        result.raise_for_status()


__all__ = [
    "BlockInfo", "Capabilities", "GetResult", "ItemResult", "LookupResult",
    "PROFILES", "PutItem", "ResumeResult", "SPEC_VERSION", "Transport", "raise_first_error",
]
