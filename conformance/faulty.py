"""Deliberately faulty targets: small wrappers around the correct file backend.

The suite's own tests run the conformance suite against each and assert that the RIGHT
requirement fails. Each is a `module:factory` target, e.g. `conformance.faulty:flip_byte_on_get`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memkv.blocks import Limits
from memkv.buffers import BufferLike, writable_view
from memkv.errors import ErrorCode
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

from .target import FileTarget, Target


class Wrapper(Transport):
    """Forwards everything to a correct transport; subclasses override one behaviour."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.namespace = inner.namespace

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        return self.inner.put(items)

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        return self.inner.get_into(keys, buffers)

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        return self.inner.stat(keys)

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        return self.inner.exists(keys)

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        return self.inner.lookup(keys, lease_ms)

    def release_lease(self, lease_id: str) -> None:
        self.inner.release_lease(lease_id)

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        return self.inner.delete(keys)

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo:
        return self.inner.open_session(ttl_s, keys, fingerprint)

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        return self.inner.append(session_id, keys)

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        return self.inner.suspend(session_id, pause_ttl_s)

    def resume(self, session_id: str) -> ResumeResult:
        return self.inner.resume(session_id)

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        return self.inner.fork(session_id, prefix_len, ttl_s)

    def close_session(self, session_id: str) -> SessionInfo:
        return self.inner.close_session(session_id)

    def session_info(self, session_id: str) -> SessionInfo:
        return self.inner.session_info(session_id)

    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        return self.inner.invalidate_keys(keys)

    def invalidate_prefix(self, key: bytes) -> int:
        return self.inner.invalidate_prefix(key)

    def invalidate_session(self, session_id: str) -> int:
        return self.inner.invalidate_session(session_id)

    def invalidate_model(self, fingerprint: bytes) -> int:
        return self.inner.invalidate_model(fingerprint)

    def invalidate_namespace(self) -> int:
        return self.inner.invalidate_namespace()

    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def close(self) -> None:
        self.inner.close()


class FlipByteOnGet(Wrapper):
    """Returns the block with its first byte flipped (expected failure: MKV-OPS-001)."""

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        results = self.inner.get_into(keys, buffers)
        for result, buffer in zip(results, buffers, strict=False):
            if result.ok and result.length:
                view = writable_view(buffer)
                view[0] ^= 0x01
        return results


class ZombieAfterInvalidate(Wrapper):
    """Keeps a cache of what it stored and keeps serving invalidated keys from it (MKV-INV-001)."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.cache: dict[bytes, bytes] = {}
        self.zombies: set[bytes] = set()

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results = self.inner.put(items)
        for item, result in zip(items, results, strict=False):
            if result.ok:
                self.cache[bytes(item.key)] = bytes(memoryview(item.payload))  # type: ignore[arg-type]
                self.zombies.discard(bytes(item.key))
        return results

    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        count = self.inner.invalidate_keys(keys)
        self.zombies.update(bytes(k) for k in keys if bytes(k) in self.cache)
        return count

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        results = self.inner.get_into(keys, buffers)
        out: list[GetResult] = []
        for key, buffer, result in zip(keys, buffers, results, strict=False):
            if result.status is ErrorCode.NOT_FOUND and bytes(key) in self.zombies:
                data = self.cache[bytes(key)]
                writable_view(buffer)[: len(data)] = data
                out.append(GetResult(length=len(data)))
            else:
                out.append(result)
        return out

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        from memkv.blocks import BlockMeta
        from memkv.checksum import payload_checksum

        infos = self.inner.stat(keys)
        return [BlockInfo(bytes(k), len(self.cache[bytes(k)]), payload_checksum(self.cache[bytes(k)]), BlockMeta())
                if info is None and bytes(k) in self.zombies else info for k, info in zip(keys, infos, strict=False)]

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        return [info is not None for info in self.stat(keys)]


class EvictsPinned(Wrapper):
    """On CAPACITY_EXCEEDED, deletes its oldest blocks, pinned or not, and retries (MKV-SES-004)."""

    def __init__(self, inner: Transport) -> None:
        super().__init__(inner)
        self.order: list[bytes] = []

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results = list(self.inner.put(items))
        for i, (item, result) in enumerate(zip(items, results, strict=False)):
            while results[i].status is ErrorCode.CAPACITY_EXCEEDED and self.order:
                victim = self.order.pop(0)
                self.inner.invalidate_keys([victim])
                results[i] = self.inner.put([item])[0]
            if results[i].ok:
                self.order.append(bytes(item.key))
            del result
        return results


class AcceptsOversized(Wrapper):
    """Declares 16 MiB blocks but accepts anything the engine takes (MKV-BLK-002)."""

    def capabilities(self) -> Capabilities:
        caps = self.inner.capabilities()
        limits = Limits(**{**caps.limits.to_dict(), "max_block_size": 16 * 1024 * 1024})
        return Capabilities(caps.backend, caps.profiles, limits, caps.spec_version, caps.capacity_bytes)


class FaultyTarget(Target):
    """A file target whose transports are wrapped in `wrapper`."""

    restartable = True
    exclusive = True

    def __init__(self, wrapper: type[Wrapper], inner: FileTarget | None = None, shared_namespace: bool = False) -> None:
        self.inner = inner or FileTarget.temporary()
        self.wrapper = wrapper
        self.shared_namespace = shared_namespace
        self.spec = f"conformance.faulty:{wrapper.__name__}"

    def connect(self, namespace: str) -> Transport:
        from memkv.store.engine import check_namespace

        check_namespace(namespace)
        wrapped = self.wrapper(self.inner.connect("shared" if self.shared_namespace else namespace))
        wrapped.namespace = namespace
        return wrapped

    def make_small(self, capacity: int) -> Target:
        return FaultyTarget(self.wrapper, self.inner.make_small(capacity), self.shared_namespace)  # type: ignore[arg-type]

    def corrupt_block(self, namespace: str, key: bytes) -> bool:
        return self.inner.corrupt_block("shared" if self.shared_namespace else namespace, key)

    def stop(self) -> None:
        self.inner.stop()

    def start(self) -> None:
        self.inner.start()

    def close(self) -> None:
        self.inner.close()


def flip_byte_on_get() -> Target:
    return FaultyTarget(FlipByteOnGet)


def zombie_after_invalidate() -> Target:
    return FaultyTarget(ZombieAfterInvalidate)


def evicts_pinned() -> Target:
    return FaultyTarget(EvictsPinned)


def accepts_oversized() -> Target:
    return FaultyTarget(AcceptsOversized)


def leaks_namespaces() -> Target:
    """Every namespace lands in one engine namespace (MKV-NS-001)."""
    return FaultyTarget(Wrapper, shared_namespace=True)


DEFECTS = {
    "flip_byte_on_get": "MKV-OPS-001",
    "zombie_after_invalidate": "MKV-INV-001",
    "evicts_pinned": "MKV-SES-004",
    "accepts_oversized": "MKV-BLK-002",
    "leaks_namespaces": "MKV-NS-001",
}

__all__ = ["DEFECTS", "FaultyTarget", "Wrapper", "accepts_oversized", "evicts_pinned", "flip_byte_on_get",
           "leaks_namespaces", "zombie_after_invalidate"]
