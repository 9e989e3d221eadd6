"""A catalogue of realistic, conditional defects, each breaking exactly one requirement.

Every defect is a small `Wrapper` around the correct file backend that misbehaves only in some
shape: at some sizes, batch shapes, histories or timings, the way real bugs do. `CATALOGUE`
maps a defect's name to its wrapper and the requirement it breaks; the suite must report that
requirement as failed (tests/conformance/test_conformance_defects.py). Reach one as the target
`memkv.conformance.faulty:defect?name=NAME`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from memkv.blocks import BlockMeta, Limits
from memkv.buffers import BufferLike, readable_view, writable_view
from memkv.checksum import payload_checksum
from memkv.errors import ErrorCode, MemkvError, NotFound, UnknownLease, UnknownSession
from memkv.sessions import SessionInfo, SessionState
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

from .faulty import FaultyTarget, Wrapper

E = ErrorCode
PIECE = 64 * 1024
HOUR = 3600.0


@dataclasses.dataclass(frozen=True)
class Defect:
    wrapper: type[Wrapper]
    requirement: str
    namespace_map: Callable[[str], str] | None = None
    also: tuple[str, ...] = ()
    """Requirements the same defect also breaks, in the shapes where it shows (may fail too)."""


CATALOGUE: dict[str, Defect] = {}


def breaks(requirement: str, *also: str, namespace_map: Callable[[str], str] | None = None
           ) -> Callable[[type[Wrapper]], type[Wrapper]]:
    """Register a wrapper under its snake_case name as a defect breaking `requirement` (and `also`)."""

    def register(cls: type[Wrapper]) -> type[Wrapper]:
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
        CATALOGUE[name] = Defect(cls, requirement, namespace_map, also)
        return cls

    return register


def _key(k: bytes) -> bytes:
    return bytes(k)


class Recording(Wrapper):
    """Remembers the keys it stored, in order, with their metadata (for defects that need history)."""

    def __init__(self, inner: Transport, target: FaultyTarget | None = None) -> None:
        super().__init__(inner, target)
        self.stored: dict[bytes, BlockMeta] = {}

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results = self.inner.put(items)
        for item, result in zip(items, results, strict=False):
            if result.ok:
                self.stored.setdefault(_key(item.key), item.meta)
        return results


class SessionIds(Wrapper):
    """Hands out its own session ids over the inner ones (defects in id handling and hidden sessions)."""

    def __init__(self, inner: Transport, target: FaultyTarget | None = None) -> None:
        super().__init__(inner, target)
        self.ids: dict[str, str] = {}

    def inner_id(self, sid: str) -> str:
        return self.ids.get(sid, sid)

    def outer(self, info: SessionInfo, sid: str) -> SessionInfo:
        return dataclasses.replace(info, session_id=sid)

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        return self.outer(self.inner.append(self.inner_id(session_id), keys), session_id)

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        return self.outer(self.inner.suspend(self.inner_id(session_id), pause_ttl_s), session_id)

    def resume(self, session_id: str) -> ResumeResult:
        res = self.inner.resume(self.inner_id(session_id))
        return ResumeResult(self.outer(res.session, session_id), res.valid_keys)

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        return self.inner.fork(self.inner_id(session_id), prefix_len, ttl_s)

    def close_session(self, session_id: str) -> SessionInfo:
        return self.outer(self.inner.close_session(self.inner_id(session_id)), session_id)

    def session_info(self, session_id: str) -> SessionInfo:
        return self.outer(self.inner.session_info(self.inner_id(session_id)), session_id)

    def invalidate_session(self, session_id: str) -> int:
        return self.inner.invalidate_session(self.inner_id(session_id))


# ---- blocks and reads ------------------------------------------------------------------------


@breaks("MKV-OPS-001")
class FlipsByteOfLargeBlocks(Wrapper):
    """Blocks over 4 KiB come back with one byte flipped at the 4 KiB page boundary."""

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        results = self.inner.get_into(keys, buffers)
        for result, buffer in zip(results, buffers, strict=False):
            if result.ok and result.length > 4096:
                writable_view(buffer)[4096] ^= 0x01
        return results


@breaks("MKV-OPS-001")
class LosesUnalignedTail(Wrapper):
    """The last byte of a block whose length is not a multiple of 4 KiB is dropped (length - 1)."""

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        results = self.inner.get_into(keys, buffers)
        return [dataclasses.replace(r, length=r.length - 1) if r.ok and r.length > 4096 and r.length % 4096 else r
                for r in results]


@breaks("MKV-OPS-005")
class ZeroesBufferTail(Wrapper):
    """Clears the caller's buffer beyond the block's length (MKV-OPS-005 leaves those bytes alone)."""

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        results = self.inner.get_into(keys, buffers)
        for result, buffer in zip(results, buffers, strict=False):
            view = writable_view(buffer)
            if result.ok and len(view) > result.length:
                view[result.length:] = bytes(len(view) - result.length)
        return results


@breaks("MKV-OPS-005")
class MissingInBatchAsEmpty(Wrapper):
    """In a batch get of two or more keys, a missing key is answered OK with length 0."""

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        results = self.inner.get_into(keys, buffers)
        if len(keys) < 2:
            return results
        return [GetResult() if r.status is E.NOT_FOUND else r for r in results]


@breaks("MKV-BLK-002")
class AcceptsOversized(Wrapper):
    """Declares 16 MiB blocks but accepts anything the engine takes."""

    def capabilities(self) -> Capabilities:
        caps = self.inner.capabilities()
        limits = Limits(**{**caps.limits.to_dict(), "max_block_size": 16 * 1024 * 1024})
        return dataclasses.replace(caps, limits=limits)


@breaks("MKV-BLK-002")
class AcceptsEmptyPayload(Wrapper):
    """An empty payload is answered OK (and silently not stored)."""

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results = self.inner.put(items)
        return [ItemResult() if len(readable_view(i.payload)) == 0 else r for i, r in zip(items, results, strict=False)]


class CutsUserMeta(Wrapper):
    """Returns user metadata cut to `limit()` bytes (None: unchanged): a base for metadata defects."""

    def limit(self) -> int | None:
        raise NotImplementedError

    def cut(self, meta: BlockMeta) -> BlockMeta:
        limit = self.limit()
        return meta if limit is None or len(meta.user) <= limit else dataclasses.replace(meta, user=meta.user[:limit])

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        return [None if i is None else dataclasses.replace(i, meta=self.cut(i.meta)) for i in self.inner.stat(keys)]

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        return [dataclasses.replace(r, meta=None if r.meta is None else self.cut(r.meta))
                for r in self.inner.get_into(keys, buffers)]


@breaks("MKV-BLK-003")
class TruncatesLongUserMeta(CutsUserMeta):
    """User metadata longer than 256 bytes is returned cut to 256 bytes."""

    def limit(self) -> int | None:
        return 256


@breaks("MKV-BLK-005")
class SkipsChecksumOfLargeBlocks(Wrapper):
    """The declared checksum of a payload of 64 KiB or more is not verified (a fast path)."""

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        return self.inner.put([dataclasses.replace(i, checksum=None) if len(readable_view(i.payload)) >= PIECE else i
                               for i in items])


@breaks("MKV-ERR-002")
class EvictsBeforeChecksum(Recording):
    """Makes room (evicting its oldest blocks) before it verifies the declared checksum."""

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        for item in items:
            data = readable_view(item.payload)
            if item.checksum is not None and item.checksum != payload_checksum(data):
                victims = list(self.stored)[: max(1, len(data) // PIECE)]
                self.inner.invalidate_keys(victims)
        return super().put(items)


@breaks("MKV-BLK-007")
class OverwritesSameLength(Wrapper):
    """A re-put of different bytes of the same length is answered OK (the stored block is kept)."""

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results = self.inner.put(items)
        out = []
        for item, result in zip(items, results, strict=False):
            info = self.inner.stat([item.key])[0] if result.status is E.KEY_CONFLICT else None
            same = info is not None and info.length == len(readable_view(item.payload))
            out.append(ItemResult() if same else result)
        return out


@breaks("MKV-OPS-011")
class StatChecksumOfFirstPiece(Wrapper):
    """stat reports the checksum of the first 64 KiB only, for blocks longer than that."""

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        infos = self.inner.stat(keys)
        out: list[BlockInfo | None] = []
        for key, info in zip(keys, infos, strict=False):
            if info is not None and info.length > PIECE:
                buf = bytearray(info.length)
                self.inner.get_into([key], [buf])
                info = dataclasses.replace(info, checksum=payload_checksum(bytes(buf[:PIECE])))
            out.append(info)
        return out


# ---- batches ---------------------------------------------------------------------------------


@breaks("MKV-OPS-003")
class ConflictAbortsRestOfBatch(Wrapper):
    """In a multi-item put, every item after a KEY_CONFLICT is refused with KEY_CONFLICT too."""

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results: list[ItemResult] = []
        for item in items:
            if results and any(r.status is E.KEY_CONFLICT for r in results):
                results.append(ItemResult(E.KEY_CONFLICT, "batch aborted"))
            else:
                results.extend(self.inner.put([item]))
        return results


@breaks("MKV-OPS-003")
class ReordersMixedBatches(Wrapper):
    """A put batch of four or more items with mixed outcomes returns its results successes first."""

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results = self.inner.put(items)
        if len(results) >= 4 and len({r.status for r in results}) > 1:
            return sorted(results, key=lambda r: not r.ok)
        return results


@breaks("MKV-OPS-004")
class StoresHeadOfOversizedBatch(Wrapper):
    """A put of more than max_batch items stores the first max_batch, then answers LIMIT_EXCEEDED."""

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        n = self.inner.capabilities().limits.max_batch
        if len(items) > n:
            self.inner.put(items[:n])
        return self.inner.put(items)


@breaks("MKV-OPS-004")
class LookupOfAnyLength(Wrapper):
    """lookup answers chains longer than max_batch (it looks at the first max_batch keys)."""

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        return self.inner.lookup(keys[: self.inner.capabilities().limits.max_batch], lease_ms)


@breaks("MKV-OPS-004")
class StatOfAnyLength(Wrapper):
    """stat answers batches longer than max_batch, in chunks."""

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        n = self.inner.capabilities().limits.max_batch
        return [info for i in range(0, len(keys), n) for info in self.inner.stat(keys[i:i + n])]


@breaks("MKV-CAP-002")
class RefusesBatchLargerThanFree(Recording):
    """A multi-item put larger than the free space is refused whole instead of evicting to fit."""

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        free = int(self.inner.stats().get("free_bytes", 0))
        total = sum(len(readable_view(i.payload)) for i in items)
        if len(items) > 1 and total > free:
            return [ItemResult(E.CAPACITY_EXCEEDED, "batch does not fit") for _ in items]
        return super().put(items)


# ---- non-blocking forms ----------------------------------------------------------------------


def _done(value: object) -> concurrent.futures.Future[object]:
    future: concurrent.futures.Future[object] = concurrent.futures.Future()
    future.set_result(value)
    return future


@breaks("MKV-OPS-010")
class AsyncGetTruncatesIntoShortBuffers(Wrapper):
    """get_into_async fills a short buffer with the head of the block and answers OK."""

    def get_into_async(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]
                       ) -> concurrent.futures.Future[list[GetResult]]:
        out = []
        for key, buffer in zip(keys, buffers, strict=False):
            view = writable_view(buffer)
            info = self.inner.stat([key])[0]
            if info is None or info.length <= len(view):
                out.extend(self.inner.get_into([key], [buffer]))
                continue
            scratch = bytearray(info.length)
            res = self.inner.get_into([key], [scratch])[0]
            view[:] = scratch[: len(view)]
            out.append(dataclasses.replace(res, length=len(view)))
        return _done(out)  # type: ignore[return-value]


@breaks("MKV-OPS-010")
class AsyncPutHidesConflicts(Wrapper):
    """put_async of two or more items reports a KEY_CONFLICT as OK."""

    def put_async(self, items: Sequence[PutItem]) -> concurrent.futures.Future[list[ItemResult]]:
        results = self.inner.put(items)
        if len(items) > 1:
            results = [ItemResult() if r.status is E.KEY_CONFLICT else r for r in results]
        return _done(results)  # type: ignore[return-value]


# ---- lookup and leases -----------------------------------------------------------------------


@breaks("MKV-OPS-006")
class LookupCountsPresentKeys(Wrapper):
    """lookup answers the number of present keys, not the length of the present prefix."""

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        res = self.inner.lookup(keys, lease_ms)
        return dataclasses.replace(res, prefix_len=sum(self.inner.exists(keys)) if keys else 0)


@breaks("MKV-OPS-006")
class LookupStopsAtEight(Wrapper):
    """lookup looks at most 8 keys deep (a fixed-size scratch array)."""

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        res = self.inner.lookup(keys, lease_ms)
        return dataclasses.replace(res, prefix_len=min(res.prefix_len, 8))


@breaks("MKV-OPS-007")
class NoLeaseOnPartialChain(Wrapper):
    """A lease over a chain that is only partly present is issued but protects nothing."""

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        res = self.inner.lookup(keys, lease_ms)
        if res.lease_id is not None and res.prefix_len < len(keys):
            self.inner.release_lease(res.lease_id)
            self.__dict__.setdefault("fakes", {})[res.lease_id] = time.time() + lease_ms / 1000
        return res

    def release_lease(self, lease_id: str) -> None:
        fakes: dict[str, float] = self.__dict__.get("fakes", {})
        if lease_id not in fakes:
            self.inner.release_lease(lease_id)
        elif fakes.pop(lease_id) <= time.time():
            raise UnknownLease("lease expired")  # a fake lease still expires like a real one


@breaks("MKV-CAP-002")
class ExpiredLeasesStillProtect(Wrapper):
    """Every lease is taken for max_lease_ms inside, whatever lease_ms asked: expired leases protect."""

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        if lease_ms <= 0:
            return self.inner.lookup(keys, lease_ms)
        res = self.inner.lookup(keys, self.inner.capabilities().limits.max_lease_ms)
        return dataclasses.replace(res, lease_expires_at=time.time() + lease_ms / 1000.0)


@breaks("MKV-OPS-008")
class ReleaseIsIdempotent(Wrapper):
    """Releasing a lease it has issued before always succeeds, even released or expired."""

    issued: frozenset[str | None] = frozenset()

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        res = self.inner.lookup(keys, lease_ms)
        self.issued = self.issued | {res.lease_id}
        return res

    def release_lease(self, lease_id: str) -> None:
        try:
            self.inner.release_lease(lease_id)
        except UnknownLease:
            if lease_id not in self.issued:
                raise


# ---- delete and invalidation -----------------------------------------------------------------


@breaks("MKV-OPS-009")
class DeleteOfAbsentOkInBatch(Wrapper):
    """A delete batch of two or more keys answers OK for absent keys."""

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        results = self.inner.delete(keys)
        return [ItemResult() if len(keys) > 1 and r.status is E.NOT_FOUND else r for r in results]


@breaks("MKV-OPS-009")
class ReadCacheOutlivesDelete(Wrapper):
    """Blocks read once are cached; every invalidation clears the cache and an eviction drops its
    entry (the store tells the cache), delete forgets to."""

    def __init__(self, inner: Transport, target: FaultyTarget | None = None) -> None:
        super().__init__(inner, target)
        self.read: dict[bytes, bytes] = {}
        self.deleted: set[bytes] = set()

    @property
    def cache(self) -> dict[bytes, bytes]:
        """What the cache serves: blocks read once, then deleted."""
        return {k: v for k, v in self.read.items() if k in self.deleted}

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results = self.inner.put(items)
        self.deleted -= {_key(i.key) for i, r in zip(items, results, strict=False) if r.ok}
        return results

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        results = self.inner.delete(keys)
        self.deleted |= {_key(k) for k, r in zip(keys, results, strict=False) if r.ok}
        return results

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        results = self.inner.get_into(keys, buffers)
        out = []
        for key, buffer, res in zip(keys, buffers, results, strict=False):
            view = writable_view(buffer)
            cached = self.cache.get(_key(key))
            if res.ok:
                self.read[_key(key)] = bytes(view[: res.length])
            elif res.status is E.NOT_FOUND and cached is not None and len(cached) <= len(view):
                view[: len(cached)] = cached
                res = GetResult(length=len(cached), checksum=payload_checksum(cached), meta=BlockMeta())
            out.append(res)
        return out

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        infos = self.inner.stat(keys)
        return [BlockInfo(_key(k), len(self.cache[_key(k)]), payload_checksum(self.cache[_key(k)]), BlockMeta())
                if info is None and _key(k) in self.cache else info for k, info in zip(keys, infos, strict=False)]

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        return [info is not None for info in self.stat(keys)]

    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        self.read.clear()
        return self.inner.invalidate_keys(keys)

    def invalidate_prefix(self, key: bytes) -> int:
        self.read.clear()
        return self.inner.invalidate_prefix(key)

    def invalidate_model(self, fingerprint: bytes) -> int:
        self.read.clear()
        return self.inner.invalidate_model(fingerprint)

    def invalidate_session(self, session_id: str) -> int:
        self.read.clear()
        return self.inner.invalidate_session(session_id)

    def invalidate_namespace(self) -> int:
        self.read.clear()
        return self.inner.invalidate_namespace()


@breaks("MKV-INV-001")
class InvalidatesFirstEightKeys(Wrapper):
    """invalidate_keys removes at most 8 keys of its batch."""

    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        removed = self.inner.invalidate_keys(keys[:8])
        return removed + sum(self.inner.exists(keys[8:])) if len(keys) > 8 else removed


@breaks("MKV-INV-001")
class StaleLookupCache(Wrapper):
    """Full-chain lookup answers are cached for a second; invalidate_keys does not clear the cache."""

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        cache: dict[tuple[bytes, ...], float] = self.__dict__.setdefault("cache", {})
        chain = tuple(_key(k) for k in keys)
        if lease_ms == 0 and time.monotonic() - cache.get(chain, -10.0) < 1.0:
            return LookupResult(len(chain))
        res = self.inner.lookup(keys, lease_ms)
        if chain and res.prefix_len == len(chain):
            cache[chain] = time.monotonic()
        return res


@breaks("MKV-INV-002")
class PrefixInvalidationThreeDeep(Recording):
    """invalidate_prefix follows the chain at most three links deep."""

    def invalidate_prefix(self, key: bytes) -> int:
        doomed, frontier = {_key(key)}, {_key(key)}
        for _ in range(3):
            frontier = {k for k, meta in self.stored.items() if meta.parent in frontier}
            doomed |= frontier
        return self.inner.invalidate_keys(sorted(doomed))


@breaks("MKV-INV-003")
class SessionInvalidationForgetsAppends(Wrapper):
    """invalidate_session removes the keys the session was opened with, not those appended later."""

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo:
        info = self.inner.open_session(ttl_s, keys, fingerprint)
        self.__dict__.setdefault("opened", {})[info.session_id] = list(keys)
        return info

    def invalidate_session(self, session_id: str) -> int:
        self.inner.session_info(session_id)
        return self.inner.invalidate_keys(self.__dict__.get("opened", {}).get(session_id, []))


@breaks("MKV-INV-004")
class ModelMatchedByFirstByte(Recording):
    """invalidate_model compares only the first byte of the fingerprint."""

    def invalidate_model(self, fingerprint: bytes) -> int:
        removed = self.inner.invalidate_model(fingerprint)
        similar = [k for k, meta in self.stored.items() if meta.fingerprint[:1] == fingerprint[:1]]
        return removed + self.inner.invalidate_keys(similar) if similar else removed


@breaks("MKV-INV-005")
class NamespaceInvalidationPages64(Recording):
    """invalidate_namespace removes one page of 64 blocks when there are more than 64 (sessions too)."""

    def invalidate_namespace(self) -> int:
        present = [k for k in self.stored if self.inner.exists([k])[0]]
        if len(present) <= 64:
            return self.inner.invalidate_namespace()
        return self.inner.invalidate_keys(present[:64])


# ---- namespaces ------------------------------------------------------------------------------


@breaks("MKV-NS-001", namespace_map=lambda ns: ns.replace(".", "-"))
class DotAndDashNamespacesCollide(Wrapper):
    """Namespace names are normalised: '.' and '-' map to the same namespace."""


@breaks("MKV-NS-001", namespace_map=str.lower)
class CaseInsensitiveNamespaces(Wrapper):
    """Namespace names are compared case-insensitively."""


@breaks("MKV-NS-001")
class MultiKeyStatSearchesEverywhere(Wrapper):
    """A stat of two or more keys falls back to the other namespaces for keys absent here."""

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        infos = self.inner.stat(keys)
        if len(keys) < 2 or self.target is None:
            return infos
        others = [w.inner for w in self.target.wrappers.values() if w is not self]
        out: list[BlockInfo | None] = []
        for key, info in zip(keys, infos, strict=False):
            for other in others if info is None else []:
                with contextlib.suppress(MemkvError):
                    info = info or other.stat([key])[0]
            out.append(info)
        return out


@breaks("MKV-NS-002")
class SessionInfoSearchesEverywhere(Wrapper):
    """session_info of an id unknown here answers from the namespace that has it."""

    def session_info(self, session_id: str) -> SessionInfo:
        try:
            return self.inner.session_info(session_id)
        except UnknownSession:
            for other in [] if self.target is None else list(self.target.wrappers.values()):
                try:
                    return other.inner.session_info(session_id)
                except MemkvError:
                    continue
            raise


# ---- capacity --------------------------------------------------------------------------------


@breaks("MKV-CAP-001")
class OverstatesCapacity(Wrapper):
    """Declares a quarter more capacity than it holds."""

    def capabilities(self) -> Capabilities:
        caps = self.inner.capabilities()
        return dataclasses.replace(caps, capacity_bytes=None if caps.capacity_bytes is None
                                   else caps.capacity_bytes * 5 // 4)


@breaks("MKV-CAP-003")
class RefusedPutStillEvicts(Recording):
    """A put refused with CAPACITY_EXCEEDED has already evicted the unleased blocks it planned to use."""

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        res = self.inner.lookup(keys, lease_ms)
        if res.lease_id is not None:
            self.__dict__.setdefault("leased", set()).update(_key(k) for k in keys[: res.prefix_len])
        return res

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results = super().put(items)
        if any(r.status is E.CAPACITY_EXCEEDED for r in results):
            leased = self.__dict__.get("leased", set())
            self.inner.invalidate_keys([k for k in self.stored if k not in leased][:64])
        return results


@breaks("MKV-CAP-003")
class PinnedRefusalWrongCode(Wrapper):
    """A put refused because suspended sessions pin the space is answered LIMIT_EXCEEDED."""

    suspended = False

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        self.suspended = True
        return self.inner.suspend(session_id, pause_ttl_s)

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        results = self.inner.put(items)
        if not self.suspended:
            return results
        return [ItemResult(E.LIMIT_EXCEEDED, r.message) if r.status is E.CAPACITY_EXCEEDED else r for r in results]


# ---- sessions --------------------------------------------------------------------------------


class EvictsItsOwnWay(Wrapper):
    """When a put does not fit in the free space, removes `victims()` first: a base for pin-breaking defects."""

    def victims(self) -> list[bytes]:
        raise NotImplementedError

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        need = sum(len(readable_view(i.payload)) for i in items)
        if need > int(self.inner.stats().get("free_bytes", need)):
            victims = self.victims()
            if victims:
                self.inner.invalidate_keys(victims)
        return super().put(items)


@breaks("MKV-SES-004", "MKV-CAP-003")
class EvictsPinned(EvictsItsOwnWay, Recording):
    """Under pressure it evicts its oldest blocks, pinned or not."""

    def victims(self) -> list[bytes]:
        return [k for k in self.stored if self.inner.exists([k])[0]][:2]


@breaks("MKV-SES-004")
class AppendedBlocksUnpinned(EvictsItsOwnWay):
    """Blocks added to a chain by append are not pinned when the session is suspended."""

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        self.__dict__.setdefault("appended", []).extend(_key(k) for k in keys)
        return self.inner.append(session_id, keys)

    def victims(self) -> list[bytes]:
        appended: list[bytes] = self.__dict__.get("appended", [])
        return [k for k in appended if self.inner.exists([k])[0]][:2]


@breaks("MKV-SES-004")
class LeaseReleaseDropsPin(EvictsItsOwnWay):
    """Lease and pin share one protection flag: releasing a lease unprotects pinned blocks too."""

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        res = self.inner.lookup(keys, lease_ms)
        if res.lease_id is not None:
            self.__dict__.setdefault("leases", {})[res.lease_id] = [_key(k) for k in keys[: res.prefix_len]]
        return res

    def release_lease(self, lease_id: str) -> None:
        self.inner.release_lease(lease_id)
        self.__dict__.setdefault("unprotected", []).extend(self.__dict__.get("leases", {}).pop(lease_id, []))

    def victims(self) -> list[bytes]:
        unprotected: list[bytes] = self.__dict__.get("unprotected", [])
        return [k for k in unprotected if self.inner.exists([k])[0]][:2]


@breaks("MKV-SES-002")
class ReusesClosedSessionIds(SessionIds):
    """A session id is handed out again once its session is closed."""

    def close_session(self, session_id: str) -> SessionInfo:
        info = super().close_session(session_id)
        self.__dict__.setdefault("free", []).append(session_id)
        return info

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo:
        info = self.inner.open_session(ttl_s, keys, fingerprint)
        free: list[str] = self.__dict__.get("free", [])
        if not free:
            return info
        sid = free.pop(0)
        self.ids[sid] = info.session_id
        return self.outer(info, sid)


@breaks("MKV-SES-003")
class AppendKeepsStoredPrefix(Wrapper):
    """An append of several keys with a missing one keeps the stored keys before it, then says NOT_FOUND."""

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        try:
            return self.inner.append(session_id, keys)
        except NotFound:
            present = self.inner.exists(keys)
            head = list(keys[: present.index(False)])
            if head:
                self.inner.append(session_id, head)
            raise


@breaks("MKV-SES-005")
class ResumeIgnoresDeletes(Wrapper):
    """resume finds blocks removed by delete (not by invalidation) still valid."""

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        self.__dict__.setdefault("deleted", set()).update(_key(k) for k in keys)
        return self.inner.delete(keys)

    def resume(self, session_id: str) -> ResumeResult:
        before = self.inner.session_info(session_id).keys
        res = self.inner.resume(session_id)
        deleted = self.__dict__.get("deleted", set())
        if len(res.valid_keys) < len(before) and before[len(res.valid_keys)] in deleted:
            return ResumeResult(dataclasses.replace(res.session, keys=before), tuple(before))
        return res


@breaks("MKV-SES-006")
class ForkOfGrownSessionTakesAll(Wrapper):
    """fork of an open session that was grown by append ignores n and shares the whole chain."""

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        self.__dict__.setdefault("grown", set()).add(session_id)
        return self.inner.append(session_id, keys)

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        if session_id in self.__dict__.get("grown", set()):
            prefix_len = None
        return self.inner.fork(session_id, prefix_len, ttl_s)


@breaks("MKV-SES-006")
class ForkIgnoresTtl(Wrapper):
    """fork gives the new session its source's TTL, whatever ttl_s asked."""

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        if ttl_s is not None:
            self.inner.fork(session_id, prefix_len, ttl_s)  # validated, then dropped
        return self.inner.fork(session_id, prefix_len, None)


@breaks("MKV-SES-007")
class CloseOfSuspendedKeepsPins(SessionIds):
    """Closing a suspended session leaves its pins behind (a hidden suspended copy holds them)."""

    def close_session(self, session_id: str) -> SessionInfo:
        inner = self.inner_id(session_id)
        if self.inner.session_info(inner).state is SessionState.SUSPENDED:
            ghost = self.inner.fork(inner).session_id
            self.inner.suspend(ghost, HOUR)
        return super().close_session(session_id)


@breaks("MKV-SES-008")
class ShortPauseKeepsPins(Wrapper):
    """A pause TTL under 5 s expires the session but not its pins (a hidden copy holds them)."""

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        info = self.inner.suspend(session_id, pause_ttl_s)
        if pause_ttl_s < 5:
            ghost = self.inner.fork(session_id).session_id
            self.inner.suspend(ghost, HOUR)
        return info


@breaks("MKV-SES-008")
class ResumedSessionsNeverExpire(SessionIds):
    """After a resume the session lives on under a 30-day TTL."""

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo:
        return self.inner.open_session(ttl_s, keys, fingerprint)

    def resume(self, session_id: str) -> ResumeResult:
        res = super().resume(session_id)
        long_lived = self.inner.fork(self.inner_id(session_id), None, 30 * 24 * HOUR)
        self.inner.close_session(self.inner_id(session_id))
        self.ids[session_id] = long_lived.session_id
        return res


@breaks("MKV-SES-008")
class ExpiredSessionsFork(Wrapper):
    """fork copies the source's chain into a new session without looking at the source's state: an
    expired session can still be forked (only the state machines' expiry walks reach it)."""

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        try:
            return self.inner.fork(session_id, prefix_len, ttl_s)
        except MemkvError as exc:
            if exc.code is not E.SESSION_EXPIRED:
                raise
            source = self.inner.session_info(session_id)
            keys = source.keys if prefix_len is None else source.keys[:prefix_len]
            return self.inner.open_session(source.ttl_s if ttl_s is None else ttl_s, keys, source.fingerprint)


@breaks("MKV-SES-009")
class ClampsLongTtl(Wrapper):
    """A TTL over 30 days (up to 31) is silently clamped to 30 days instead of refused."""

    @staticmethod
    def clamp(ttl: float) -> float:
        limit = 30 * 24 * HOUR
        return limit if limit < ttl <= limit + 24 * HOUR else ttl

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo:
        return self.inner.open_session(self.clamp(ttl_s), keys, fingerprint)


# ---- durability ------------------------------------------------------------------------------


@breaks("MKV-DUR-001")
class RestartCutsLongUserMeta(CutsUserMeta):
    """After a restart, user metadata longer than 64 bytes comes back cut (a short on-disk field)."""

    def limit(self) -> int | None:
        return 64 if self.target is not None and self.target.generation > 0 else None


@breaks("MKV-DUR-001")
class RestartForgetsAppends(SessionIds):
    """After a restart, a session's chain is the one it was opened with (appends were not persisted)."""

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = bytes(16)) -> SessionInfo:
        info = self.inner.open_session(ttl_s, keys, fingerprint)
        if self.target is not None:
            self.target.notes.setdefault("opened", {})[info.session_id] = len(keys)
        return info

    def session_info(self, session_id: str) -> SessionInfo:
        info = super().session_info(session_id)
        opened = {} if self.target is None else self.target.notes.get("opened", {})
        if self.target is not None and self.target.generation > 0 and session_id in opened:
            info = dataclasses.replace(info, keys=info.keys[: opened[session_id]])
        return info


@breaks("MKV-DUR-003")
class CrashLeaksSpace(Wrapper):
    """The space a killed writer process held is never given back when the store reopens (15% of
    the capacity stays reserved)."""

    @classmethod
    def opened_elsewhere(cls, target: FaultyTarget) -> None:
        (Path(target.inner.directory) / f"writer-{os.getpid()}").touch()

    @classmethod
    def started(cls, target: FaultyTarget) -> None:
        for marker in Path(target.inner.directory).glob("writer-*"):
            try:
                os.kill(int(marker.name.removeprefix("writer-")), 0)
                continue
            except ProcessLookupError:
                marker.unlink()
            leak = target.inner.connect("memkv-faulty-leak")
            capacity = leak.capabilities().capacity_bytes or 0
            keys = [os.urandom(16) for _ in cls.leaked_blocks(capacity)]
            leak.put([PutItem(k, bytes(size)) for k, size in zip(keys, cls.leaked_blocks(capacity), strict=True)])
            leak.lookup(keys, leak.capabilities().limits.max_lease_ms)

    @classmethod
    def leaked_blocks(cls, capacity: int) -> list[int]:
        """Sizes of the reservations that stay held (leased blocks of a hidden namespace stand in)."""
        return [1024 * 1024] * (capacity * 15 // 100 // (1024 * 1024))


@breaks("MKV-DUR-003")
class CrashLeaksOneUnit(CrashLeaksSpace):
    """The crashed writer's journal page of one allocation unit (64 KiB) is never given back at
    reopen: a leak smaller than any block the checks put."""

    @classmethod
    def leaked_blocks(cls, capacity: int) -> list[int]:
        return [PIECE]


__all__ = ["CATALOGUE", "Defect", "breaks"]
