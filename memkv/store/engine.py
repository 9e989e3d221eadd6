"""StorageEngine: one store directory, a facade that holds the lock and composes the parts.

The parts own their state; none of them takes a lock (see README.md in this folder):
- ResidentBlocks (resident.py): committed blocks, reservations of puts in flight, the allocator;
- PinsAndLeases (protection.py): what sessions pin and lookups lease;
- EvictionPlanner (eviction_plan.py): the eviction order and the choice of victims;
- NamespaceQuotas (namespace_quotas.py): the operator's quotas against what is stored;
- StoredSessions (stored_sessions.py): session rows in the index and their pins;
- StoreHealth (health.py): whether writes are still taken (MKV-DUR-009).

Thread-safe. Metadata changes happen under one lock; payload I/O happens outside it.
Write path (two-phase, MKV-OPS-002), one for put and the streamed put: verify a declared
checksum when the bytes are at hand -> reserve extents (may evict) -> fill them (write_path.py)
-> commit the index row, or free the extents. Read pipeline (read_path.py), one for get and
the streamed get: pin the block against reuse -> read pieces ahead -> verify the checksum.
`close` waits for payload I/O in flight before it closes the device, so no thread ever writes
through a closed (and possibly reused) descriptor.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ..blocks import BlockMeta, Limits, MiB
from ..buffers import BufferLike, readable_view, writable_view
from ..checksum import payload_hasher
from ..children import ChildPage, page_of
from ..errors import (
    BufferTooSmall,
    CapacityExceeded,
    Corrupted,
    InvalidArgument,
    LimitExceeded,
    MemkvError,
    NotFound,
    Unavailable,
    UnknownLease,
)
from ..keys import NO_FINGERPRINT, ROOT_PARENT, check_fingerprint, check_key
from ..namespaces import check_namespace
from ..sessions import SessionInfo, check_session_id
from ..transport import BlockInfo, GetResult, ItemResult, LookupResult, PutItem, ResumeResult
from .allocator import Extent, ExtentAllocator
from .counters import EngineCounters
from .device import Device, DeviceFailure
from .eviction_plan import EvictionPlanner
from .health import StoreHealth
from .index import BlockRow, Index
from .lock import StoreLock
from .namespace_quotas import NamespaceQuotas
from .open_checks import DamagedStore, open_index
from .opening import bind_index, make_private_dirs, open_device
from .protection import PinsAndLeases
from .quotas import Quota
from .read_path import READ_PIECE, BlockRead, emit_mapped, piece_plan, read_pieces
from .resident import BlockId, LiveBlock, Reservation, ResidentBlocks
from .storage_errors import describe, unavailable
from .stored_sessions import EXPIRED_SESSION_RETENTION_S, StoredSessions, info
from .ttl import MAX_TTL_S, check_fork, check_ttl
from .write_path import (
    OVERLAP_MIN_BYTES,
    CommitBatch,
    PayloadSource,
    StreamedPayload,
    WholePayload,
    check_declared,
    reput,
    stream_piece_size,
)

DEFAULT_UNIT = 1 * MiB
DEFAULT_LIMITS = Limits()
DEFAULT_CAPACITY = 1024 * MiB

T = TypeVar("T")

log = logging.getLogger(__name__)


class StorageEngine:
    """One store directory (index, lock, and the device file unless a device path is given)."""

    def __init__(
        self,
        directory: str,
        capacity: int = DEFAULT_CAPACITY,
        device_path: str | None = None,
        unit: int = DEFAULT_UNIT,
        limits: Limits = DEFAULT_LIMITS,
        flush_interval_s: float = 1.0,
        format_device: bool = False,
        clock: Callable[[], float] = time.time,
        io: str | None = None,
    ) -> None:
        self.directory = os.path.abspath(directory)
        make_private_dirs(self.directory)
        self.limits = limits
        self.clock = clock
        self.flush_interval_s = flush_interval_s  # the flush window capabilities declare (MKV-OPS-016)
        self._lock = threading.RLock()
        self._io_done = threading.Condition(self._lock)
        self._io_active = 0
        self._closing = False
        self._store_lock = StoreLock(os.path.join(self.directory, "lock"))
        self.health = StoreHealth(self.directory)
        device: Device | None = None
        index: Index | None = None
        try:
            index = open_index(os.path.join(self.directory, "index.sqlite"), self.directory)
            device, self.superblock, formatted = open_device(self.directory, device_path, capacity, unit,
                                                             format_device, io, index)
            bind_index(self.directory, index, self.superblock, formatted, device.path)
            self.resident = ResidentBlocks(self.superblock, index.all_blocks())
            self.protection = PinsAndLeases()
            self._planner = EvictionPlanner(self.resident, self.protection)
            self._quotas = NamespaceQuotas(self.resident, self.protection)
            self._sessions = StoredSessions(index, self.protection, self.resident, self._quotas, self.health,
                                            limits, clock)
        except BaseException as exc:
            if index is not None:
                index.close()
            if device is not None:
                device.close()
            self._store_lock.release()
            if isinstance(exc, sqlite3.DatabaseError):
                raise DamagedStore(f"index {os.path.join(self.directory, 'index.sqlite')} cannot be read ({exc}); "
                                   f"nothing was modified. Inspect it with `memkv fsck {self.directory}`") from None
            raise
        self.device, self.index = device, index
        self.counters = EngineCounters()
        self._io_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="memkv-dev")
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, args=(flush_interval_s,),
                                         name="memkv-flush", daemon=True)
        self._flusher.start()

    @property
    def failure(self) -> str | None:
        """Why the store stopped taking writes after a storage failure, or None."""
        return self.health.failure

    @property
    def allocator(self) -> ExtentAllocator:
        return self.resident.allocator

    @property
    def quotas(self) -> dict[str, Quota]:
        """Per-namespace quotas, set by the operator (MKV-NS-010)."""
        return self._quotas.quotas

    @quotas.setter
    def quotas(self, quotas: dict[str, Quota]) -> None:
        self._quotas.quotas = quotas

    # ---- the lock, I/O in flight and per-item errors -----------------------------------------
    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """The engine lock, refusing new work once close has begun."""
        with self._lock:
            if self._closing:
                raise Unavailable("store is closed")
            try:
                yield
            except sqlite3.Error as exc:
                raise self.health.index_failed(exc) from None

    def _check_open(self) -> None:
        if self._closing:
            raise Unavailable("store is closed")

    def _io_finished(self) -> None:
        """Caller holds the lock."""
        self._io_active -= 1
        if self._io_active == 0:
            self._io_done.notify_all()

    def _count_error(self, error: MemkvError) -> None:
        with self._lock:
            self.counters.errors[error.code.name] += 1

    def _per_item(self, fn: Callable[[], T], wrap: Callable[[MemkvError], T]) -> T:
        """Run one item of a batch; its error becomes its result, not the batch's (MKV-OPS-003)."""
        try:
            return fn()
        except MemkvError as exc:
            error = exc
        except sqlite3.Error as exc:
            error = self.health.index_failed(exc)
        self._count_error(error)
        return wrap(error)

    # ---- removal and eviction (caller holds the lock) ----------------------------------------
    def _commit_removal(self, block_ids: Sequence[BlockId], also: Callable[[], None] | None = None) -> None:
        """Delete the rows (and run `also` in the same transaction); only once that commits are the
        blocks dropped from memory and their extents freed (MKV-DUR-008)."""
        if not block_ids and also is None:
            return
        self.health.check_writable()
        try:
            # Durable before the extents can be reused: a power cut must not bring back a
            # removed block over another block's bytes (MKV-DUR-002, found by powercut.py).
            with self.index.durable(), self.index.atomic():
                for block_id in block_ids:
                    self.index.delete_block(*block_id)
                if also is not None:
                    also()
        except sqlite3.Error as exc:
            raise self.health.index_failed(exc) from None
        for block_id in block_ids:
            self._planner.discard(block_id)
            self.resident.remove(block_id)

    def _remove_many(self, block_ids: Iterable[BlockId], also: Callable[[], None] | None = None) -> int:
        present = [block_id for block_id in dict.fromkeys(block_ids) if block_id in self.resident]
        self._commit_removal(present, also)
        self.counters.invalidations += len(present)
        return len(present)

    def _evict(self, victims: Sequence[BlockId]) -> None:
        self._commit_removal(victims)
        self.counters.evictions += len(victims)

    def _allocate(self, size: int) -> list[Extent]:
        """Reserve extents, evicting unprotected blocks in chain order when needed (MKV-CAP-006..009)."""
        extents = self.allocator.allocate(size)
        if extents is not None:
            return extents
        now = self.clock()
        self.protection.expire_leases(now)
        self._sessions.expire_pinned(now)
        self._evict(self._planner.victims_for_space(size))
        extents = self.allocator.allocate(size)
        if extents is None:  # pragma: no cover - the trial allocator said it fits
            raise CapacityExceeded(f"block of {size} bytes does not fit after eviction")
        return extents

    def _fit_quota(self, namespace: str, length: int) -> None:
        """Make `length` more bytes fit the namespace's byte quota by evicting its own unprotected
        blocks (MKV-CAP-006); evicts nothing and raises CAPACITY_EXCEEDED when it cannot (MKV-NS-010)."""
        excess = length - self._quotas.room(namespace)
        if excess > 0:
            self._evict(self._planner.victims_in_namespace(namespace, excess, self._quotas.byte_quota(namespace)))

    # ---- the write path: reserve, fill, commit -----------------------------------------------
    def _reserve(self, block_id: BlockId, length: int, evict: bool,
                 batch: CommitBatch | None = None) -> LiveBlock | Reservation | None:
        """Phase one: the stored block under this key, or fresh extents reserved for it.

        A put of the same key already in flight is waited for, then looked at again. Without
        `evict`, None when the block does not fit in free space (nothing is reserved). Items of
        `batch` (earlier items of the same call, filled, not committed) are committed first when
        this item would wait for another put or evict: no put waits while holding reservations, and
        eviction may choose them as it would have chosen them one by one.
        """
        while True:
            with self._guard():
                self.health.check_writable()
                live = self.resident.get(block_id)
                pending = self.resident.reserved.get(block_id)
                if live is not None:
                    return live
                if pending is None:
                    if evict:
                        extents: list[Extent] | None = None
                        if batch:
                            fits = self._quotas.room(block_id[0]) >= length
                            extents = self.allocator.allocate(length) if fits else None
                            if extents is None:
                                self._settle_batch(batch)
                        if extents is None:
                            self._fit_quota(block_id[0], length)
                            extents = self._allocate(length)
                    else:
                        fits_quota = self._quotas.room(block_id[0]) >= length
                        extents = self.allocator.allocate(length) if fits_quota else None
                    if extents is None:
                        return None
                    self._io_active += 1
                    return self.resident.reserve(block_id, extents, length)
            if batch:
                self._settle_batch(batch)
            pending.done.wait()

    def _settle(self, block_id: BlockId, reservation: Reservation, row: BlockRow | None) -> None:
        """Phase three: commit `row` (the block becomes visible), or, without one, free the extents."""
        committed = False
        try:
            if row is not None:
                with self._lock:
                    self.health.check_writable()
                    try:
                        self.index.insert_block(row)
                    except sqlite3.Error as exc:
                        raise self.health.index_failed(exc) from None
                    self.resident.commit(block_id, row)
                    self._planner.add(block_id, row)
                    committed = True
                    self.counters.puts += 1
                    self.counters.bytes_written += row.length
        finally:
            with self._lock:
                self.resident.unreserve(block_id, committed)
                self._io_finished()
            reservation.done.set()

    def _settle_batch(self, batch: CommitBatch) -> None:
        """Commit the rows of `batch` in one index transaction, then show the blocks; when that fails,
        free their extents and make the error each item's result (MKV-DUR-008). Empties `batch`."""
        staged, batch.staged = batch.staged, []
        committed = False
        try:
            with self._lock:
                self.health.check_writable()
                try:
                    with self.index.atomic():
                        for item in staged:
                            self.index.insert_block(item.row)
                except sqlite3.Error as exc:
                    raise self.health.index_failed(exc) from None
                for item in staged:
                    self.resident.commit(item.block_id, item.row)
                    self._planner.add(item.block_id, item.row)
                    self.counters.puts += 1
                    self.counters.bytes_written += item.row.length
                committed = True
        except MemkvError as exc:
            for item in staged:
                self._count_error(exc)
                batch.results[item.position] = ItemResult(exc.code, exc.message)
        finally:
            with self._lock:
                for item in staged:
                    self.resident.unreserve(item.block_id, committed)
                    self._io_finished()
            for item in staged:
                item.reservation.done.set()

    def _put(self, namespace: str, key: bytes, meta: BlockMeta, source: PayloadSource, declared: int | None,
             evict: bool, count_fill_errors: bool = False, batch: CommitBatch | None = None) -> ItemResult:
        """The one write path. A declared checksum known before reserving is verified first, since
        reserving may evict (MKV-ERR-002); a source that fits only by evicting is staged whole first."""
        block_id = (namespace, key)
        known = source.checksum_before_reserve()
        if known is not None:
            check_declared(known, declared)
        reserved = self._reserve(block_id, source.length, evict, batch)
        if reserved is None:
            assert isinstance(source, StreamedPayload)  # only a streamed put reserves without evicting
            return self._put(namespace, key, meta, source.staged(declared), declared, evict=True, batch=batch)
        if isinstance(reserved, LiveBlock):
            return reput(key, reserved.row, source.length, source.consume(), declared)
        row = None
        try:
            checksum = source.fill(self.device, self._io_pool, reserved.extents)
            check_declared(checksum, declared)
            row = BlockRow(namespace, key, source.length, checksum, meta, reserved.extents, self.clock())
        except MemkvError as exc:
            if count_fill_errors:
                self._count_error(exc)
            raise
        finally:
            if row is None or batch is None:
                self._settle(block_id, reserved, row)
            else:
                batch.stage(block_id, reserved, row)
        return ItemResult()

    def put(self, namespace: str, items: Sequence[PutItem]) -> list[ItemResult]:
        """Store the items; the index rows of the items of one call are committed together, in one
        transaction after the last item is written, before this returns (MKV-DUR-007)."""
        self._check_open()
        check_namespace(namespace)
        self.limits.check_batch(len(items))
        results: list[ItemResult] = []
        batch = CommitBatch(results) if len(items) > 1 else None
        try:
            for item in items:
                results.append(self._per_item(lambda item=item: self._put_item(namespace, item, batch),  # type: ignore[misc]
                                              lambda exc: ItemResult(exc.code, exc.message)))
        finally:
            if batch:
                self._settle_batch(batch)
        return results

    def _put_item(self, namespace: str, item: PutItem, batch: CommitBatch | None = None) -> ItemResult:
        key = check_key(item.key)
        payload = readable_view(item.payload)
        self.limits.check_payload_size(len(payload))
        item.meta.validate(self.limits)
        return self._put(namespace, key, item.meta, WholePayload(payload, item.checksum), item.checksum, evict=True,
                         batch=batch)

    def put_stream(self, namespace: str, key: bytes, length: int, fill: Callable[[memoryview], None],
                   buffers: Sequence[memoryview], meta: BlockMeta | None = None,
                   checksum: int | None = None, use_mapping: bool = True,
                   batch: CommitBatch | None = None) -> ItemResult:
        """Store one block whose bytes arrive piece by piece: the two-phase put of `put`, streamed.

        Extents are reserved from free space first; then, for each piece, `fill(view)` must fill
        `view` completely (e.g. recv_into from a socket) and the piece is written to the device
        while the next one is filled; pieces rotate through `buffers` (at least two page-aligned
        buffers; the smallest sets the piece size; none when `streams_mapped`). On a buffered
        device `fill` gets views of the mapped device instead, so the bytes land in the page
        cache without a copy, unless `use_mapping` is false (a caller whose pieces must be its
        own memory, e.g. memory registered with NIXL). A block that fits only by evicting is received whole first and
        verified before anything is evicted (MKV-ERR-002). Nothing is visible before the whole
        payload matches `checksum` and the index row is committed; on any failure the extents
        are freed.

        Raises the item's MemkvError (CHECKSUM_MISMATCH, KEY_CONFLICT, CAPACITY_EXCEEDED, device
        failure as UNAVAILABLE, ...) instead of returning it, and lets an exception of `fill`
        through unchanged. When it raises, `fill` may have consumed only part of the payload:
        the caller discards the rest of its input.

        With `batch` (the items of one request; its `results` are the caller's list, this item's
        result appended next), the index row waits in `batch` and `commit_batch` commits all of
        them in one transaction: the caller must call it before it answers, also on failure.
        """
        self._check_open()
        check_namespace(namespace)
        key = check_key(key)
        meta = BlockMeta() if meta is None else meta
        self.limits.check_payload_size(length)
        meta.validate(self.limits)
        source = StreamedPayload(length, fill, buffers, use_mapping)
        return self._put(namespace, key, meta, source, checksum, evict=False, count_fill_errors=True, batch=batch)

    def commit_batch(self, batch: CommitBatch) -> None:
        """Commit the rows `put_stream` left in `batch` (a failure becomes each item's result)."""
        if batch:
            self._settle_batch(batch)

    @property
    def streams_mapped(self) -> bool:
        """Whether put_stream and read_stream (with use_mapping) move the bytes through the mapped
        device, so that the piece buffers a caller passes are not used."""
        return self.device.mapping() is not None

    # ---- the read pipeline: pin, read ahead, verify ------------------------------------------
    def open_read(self, namespace: str, key: bytes, capacity: int | None = None) -> BlockRead:
        """Pin a committed block for `read_stream`: it is neither freed nor reused until `close_read`.

        Raises NotFound, or BufferTooSmall when the block is longer than `capacity`, as get_into.
        """
        self._check_open()
        check_namespace(namespace)
        key = check_key(key)
        block_id = (namespace, key)
        with self._guard():
            self.counters.gets += 1
            live = self.resident.get(block_id)
            if live is None:
                self.counters.misses += 1
                raise NotFound(f"no block {key.hex()} in namespace {namespace}")
            if capacity is not None and capacity < live.row.length:
                raise BufferTooSmall(f"block is {live.row.length} bytes, buffer {capacity}")
            self.counters.hits += 1
            self.resident.open_reader(block_id, live, self.clock())
            self._io_active += 1
            self._planner.use(block_id)
        return BlockRead(namespace, key, live)

    def close_read(self, block: BlockRead) -> None:
        """Unpin a block of `open_read` (once; later calls do nothing)."""
        with self._lock:
            if block.closed:
                return
            block.closed = True
            self.resident.close_reader(block.live)
            self._io_finished()

    def _verified(self, block: BlockRead, checksum: int) -> None:
        """Count a read whose bytes hashed to `checksum`; remove the block when that is wrong."""
        if checksum == block.live.row.checksum:
            with self._lock:
                self.counters.bytes_read += block.live.row.length
            return
        with self._lock:
            # Remove this block only: the key may already hold a newer one.
            if self.resident.get((block.namespace, block.key)) is block.live:
                try:
                    self._commit_removal([(block.namespace, block.key)])
                except Unavailable as exc:
                    log.error("block %s in namespace %s failed checksum verification and stays listed: %s",
                              block.key.hex(), block.namespace, exc.message)
                    raise Corrupted(f"block {block.key.hex()} failed checksum verification") from None
        log.error("block %s in namespace %s failed checksum verification; removed",
                  block.key.hex(), block.namespace)
        raise Corrupted(f"block {block.key.hex()} failed checksum verification and was removed")

    def _read_into(self, extents: Sequence[Extent], dest: memoryview) -> int:
        """Read a block into `dest` and hash it; a large block's piece is hashed while the next is read."""
        plan = piece_plan(extents, len(dest), READ_PIECE)
        starts = [0, *itertools.accumulate(size for _, size in plan)]
        hasher = payload_hasher()
        pool = None if len(dest) < OVERLAP_MIN_BYTES else self._io_pool
        read_pieces(self.device, pool, plan, lambda k, size: dest[starts[k] : starts[k] + size], 1, hasher.update)
        return int(hasher.intdigest())

    def get_into(self, namespace: str, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        self._check_open()
        check_namespace(namespace)
        self.limits.check_batch(len(keys))
        if len(keys) != len(buffers):
            raise InvalidArgument(f"{len(keys)} keys but {len(buffers)} buffers")
        pairs = zip(keys, buffers, strict=True)
        return [self._per_item(lambda k=k, b=b: self._get_one(namespace, k, b),  # type: ignore[misc]
                               lambda exc: GetResult(exc.code, exc.message)) for k, b in pairs]

    def _get_one(self, namespace: str, key: bytes, buffer: BufferLike) -> GetResult:
        dest = writable_view(buffer)
        block = self.open_read(namespace, key, len(dest))
        try:
            row = block.live.row
            self._verified(block, self._read_into(row.extents, dest[: row.length]))
        finally:
            self.close_read(block)
        return block.result()

    def read_stream(self, block: BlockRead, buffers: Sequence[memoryview], emit: Callable[[memoryview], None],
                    use_mapping: bool = True) -> None:
        """Read a pinned block piece by piece and hand each piece to `emit` while the next ones are read.

        Pieces rotate through `buffers` (at least two, or none when `streams_mapped`;
        len(buffers) - 1 reads run ahead of `emit`). A piece's view is valid only during its
        `emit` call. On a buffered device the pieces are views of the mapped device instead (no
        copy, no reads ahead) unless `use_mapping` is false. The bytes are hashed as they pass;
        when the whole block fails its checksum the block is removed and Corrupted is raised
        after every piece was emitted (a streaming receiver detects it by the checksum it was
        given). A device failure raises Unavailable part-way.
        """
        if block.closed:
            raise InvalidArgument("this block read is closed")
        row = block.live.row
        plan = piece_plan(row.extents, row.length, stream_piece_size(buffers))
        hasher = payload_hasher()
        mapped = self.device.mapping() if use_mapping else None
        if mapped is None and not buffers:
            raise InvalidArgument("a streamed get from a device that is not mapped needs piece buffers")
        if mapped is not None:
            emit_mapped(self._io_pool, hasher, [mapped[offset : offset + size] for offset, size in plan], emit)
        else:
            def consume(view: memoryview) -> None:
                hasher.update(view)
                emit(view)

            read_pieces(self.device, self._io_pool, plan, lambda k, size: buffers[k % len(buffers)][:size],
                        len(buffers) - 1, consume)
        try:
            self._verified(block, int(hasher.intdigest()))
        except Corrupted:
            self._count_error(Corrupted())
            raise

    # ---- what is stored, leases and invalidation ---------------------------------------------
    def stat(self, namespace: str, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        check_namespace(namespace)
        self.limits.check_batch(len(keys))
        checked = [check_key(k) for k in keys]
        with self._guard():
            lives = [self.resident.get((namespace, k)) for k in checked]
            return [None if live is None else BlockInfo(k, live.row.length, live.row.checksum, live.row.meta)
                    for k, live in zip(checked, lives, strict=True)]

    def exists(self, namespace: str, keys: Sequence[bytes]) -> list[bool]:
        return [info is not None for info in self.stat(namespace, keys)]

    def lookup(self, namespace: str, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        check_namespace(namespace)
        self.limits.check_batch(len(keys))
        checked = [check_key(k) for k in keys]
        if not isinstance(lease_ms, int) or not 0 <= lease_ms <= self.limits.max_lease_ms:
            raise InvalidArgument(f"lease_ms must be in 0..{self.limits.max_lease_ms}")
        with self._guard():
            prefix = 0
            for key in checked:
                if (namespace, key) not in self.resident:
                    break
                prefix += 1
            if lease_ms == 0 or prefix == 0:
                return LookupResult(prefix)
            self.protection.expire_leases(self.clock())
            self._quotas.check_count(namespace, "leases", len(self.protection.leases_in(namespace)))
            expires_at = self.clock() + lease_ms / 1000.0
            lease_id = self.protection.add_lease(namespace, checked[:prefix], expires_at)
            return LookupResult(prefix, lease_id, expires_at)

    def release_lease(self, namespace: str, lease_id: str) -> None:
        with self._guard():
            self.protection.expire_leases(self.clock())
            lease = self.protection.leases.get(lease_id)
            if lease is None or lease.namespace != namespace:
                raise UnknownLease(f"lease {lease_id!r} does not exist or has expired")
            self.protection.drop_lease(lease_id)

    def delete(self, namespace: str, keys: Sequence[bytes]) -> list[ItemResult]:
        self._check_open()
        check_namespace(namespace)
        self.limits.check_batch(len(keys))

        def delete_one(key: bytes) -> ItemResult:
            block_id = (namespace, check_key(key))
            with self._guard():
                if not self._remove_many([block_id]):
                    raise NotFound(f"no block {key.hex()} in namespace {namespace}")
            return ItemResult()

        return [self._per_item(lambda k=k: delete_one(k), lambda exc: ItemResult(exc.code, exc.message))  # type: ignore[misc]
                for k in keys]

    def invalidate_keys(self, namespace: str, keys: Sequence[bytes]) -> int:
        check_namespace(namespace)
        self.limits.check_batch(len(keys))
        checked = [check_key(k) for k in keys]
        with self._guard():
            return self._remove_many((namespace, k) for k in checked)

    def children(self, namespace: str, parents: Sequence[bytes], after: bytes | None, limit: int) -> ChildPage:
        """A page of the stored keys whose parent is one of `parents` (MKV-WIRE-044); changes nothing."""
        check_namespace(namespace)
        self.limits.check_batch(len(parents))
        checked = [k for k in (check_key(k) for k in parents) if k != ROOT_PARENT]  # the root has no children
        start = None if after is None else check_key(after)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument("a page holds at least one key")
        if not checked:
            return ChildPage(())
        with self._guard():
            return page_of(self.index.children(namespace, checked, start, limit + 1), limit)

    def invalidate_prefix(self, namespace: str, key: bytes) -> int:
        check_namespace(namespace)
        key = check_key(key)
        with self._guard():
            return self._remove_many((namespace, k) for k in self.index.descendants(namespace, key))

    def invalidate_session(self, namespace: str, session_id: str) -> int:
        with self._guard():
            row = self._sessions.load(namespace, session_id)
            return self._remove_many((namespace, k) for k in row.keys)

    def invalidate_model(self, namespace: str, fingerprint: bytes) -> int:
        check_namespace(namespace)
        fingerprint = check_fingerprint(fingerprint)
        with self._guard():
            keys = self.index.keys_where(namespace, "fingerprint", fingerprint)
            return self._remove_many((namespace, k) for k in keys)

    def invalidate_namespace(self, namespace: str) -> int:
        check_namespace(namespace)
        with self._guard():
            sessions = self.index.sessions(namespace)
            removed = self._remove_many([(namespace, k) for k in self.index.keys_where(namespace)],
                                        also=lambda: self.index.delete_namespace_sessions(namespace))
            self._sessions.unpin_namespace(sessions)  # committed: now memory follows (MKV-DUR-008)
            for lease_id in self.protection.leases_in(namespace):
                self.protection.drop_lease(lease_id)
            return removed

    # ---- sessions (MKV-SES-*): arguments are checked before the lock -------------------------
    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the engine lock across several calls, so that a check and an operation are one step."""
        with self._guard():
            yield

    def open_session(self, namespace: str, ttl_s: float, keys: Sequence[bytes] = (),
                     fingerprint: bytes = NO_FINGERPRINT, session_id: str | None = None,
                     foreign: bool = False) -> SessionInfo:
        """`session_id`: the client's (MKV-WIRE-052); `foreign`: keys other shards store (MKV-WIRE-053)."""
        ttl = check_ttl(ttl_s)
        fingerprint = check_fingerprint(fingerprint)
        check_namespace(namespace)
        chosen = None if session_id is None else check_session_id(session_id)
        if len(keys) > self.limits.max_session_blocks:
            raise LimitExceeded(f"a session holds at most {self.limits.max_session_blocks} blocks")
        with self._guard():
            return self._sessions.open(namespace, ttl, keys, fingerprint, chosen, foreign)

    def append(self, namespace: str, session_id: str, keys: Sequence[bytes], foreign: bool = False) -> SessionInfo:
        keys = [check_key(k) for k in keys]  # the form of the arguments before the session (MKV-NS-009)
        with self._guard():
            return self._sessions.append(namespace, session_id, keys, foreign)

    def suspend(self, namespace: str, session_id: str, pause_ttl_s: float) -> SessionInfo:
        pause = check_ttl(pause_ttl_s, "pause_ttl_s")
        with self._guard():
            return self._sessions.suspend(namespace, session_id, pause)

    def resume(self, namespace: str, session_id: str, prefix_len: int | None = None) -> ResumeResult:
        """`prefix_len`: the valid prefix the client found on other shards (MKV-WIRE-054)."""
        check_fork(prefix_len, None)  # the same rule: a non-negative integer, before the session
        with self._guard():
            resumed = self._sessions.resume(namespace, session_id, prefix_len)
            return ResumeResult(resumed, resumed.keys)

    def fork(self, namespace: str, session_id: str, prefix_len: int | None = None,
             ttl_s: float | None = None, new_session_id: str | None = None) -> SessionInfo:
        ttl = check_fork(prefix_len, ttl_s)
        chosen = None if new_session_id is None else check_session_id(new_session_id)
        with self._guard():
            return self._sessions.fork(namespace, session_id, prefix_len, ttl, chosen)

    def close_session(self, namespace: str, session_id: str) -> SessionInfo:
        with self._guard():
            return self._sessions.close(namespace, session_id)

    def session_info(self, namespace: str, session_id: str) -> SessionInfo:
        with self._guard():
            return info(self._sessions.load(namespace, session_id))

    def sessions(self, namespace: str | None = None) -> list[SessionInfo]:
        with self._guard():
            return [info(row) for row in self.index.sessions(namespace)]

    # ---- upkeep: sweep, flush, stats, close --------------------------------------------------
    def sweep(self) -> None:
        """Expire sessions and leases whose time ran out; drop old expired session records."""
        with self._guard():
            self._sweep()

    def _sweep(self) -> None:
        now = self.clock()
        with self._lock:
            self.protection.expire_leases(now)
            if self.health.failure is None:
                self._sessions.sweep(now)

    def flush(self) -> None:
        """Make every committed block durable: payload synced, then the index (MKV-DUR-002)."""
        with self._guard():
            self._io_active += 1
        try:
            self._flush()
        finally:
            with self._lock:
                self._io_finished()

    def _flush(self) -> None:
        """Access times, payloads, then the index. A failure stops writes (MKV-DUR-009): never retried."""
        if self.health.failure is not None:
            return
        with self._lock:
            touched = self.resident.take_touched()
            if touched:
                try:
                    with self.index.atomic():
                        self.index.touch((t, ns, k) for (ns, k), t in touched.items())
                except sqlite3.Error as exc:
                    raise self.health.index_failed(exc, "recording access times") from None
        try:
            self.device.sync()
        except DeviceFailure as exc:
            self.health.fail_stop(f"fdatasync of device {self.device.path}: {exc.detail}")
            raise Unavailable(f"flush failed, nothing was changed: {exc.detail}") from None
        with self._lock:
            try:
                self.index.checkpoint()
            except sqlite3.Error as exc:
                self.health.fail_stop(f"checkpoint of index {self.index.path}: {describe(exc)}")
                raise unavailable(exc, "flush") from None

    def _flush_loop(self, interval: float) -> None:
        while not self._closed.wait(interval):
            for step in (self.sweep, self.flush):
                try:
                    step()
                except Unavailable as exc:
                    if self._closing:
                        return
                    # A full index disk is retried next round; after a fail-stop flush does nothing.
                    log.error("memkv background %s failed: %s", step.__name__, exc.message)
                except Exception:  # upkeep must not die; the next round retries
                    log.exception("memkv background %s failed; retrying in %.1f s", step.__name__, interval)

    def stats(self) -> dict[str, Any]:
        with self._guard():
            sessions = collections.Counter(row.state.value for row in self.index.sessions())
            c = self.counters
            return {
                "capacity_bytes": self.allocator.total_bytes,
                "used_bytes": self.allocator.total_bytes - self.allocator.free_bytes,
                "free_bytes": self.allocator.free_bytes,
                "blocks": len(self.resident.blocks),
                "pinned_blocks": sum(1 for block_id in self.protection.pins if block_id in self.resident),
                "leases": len(self.protection.leases),
                "sessions": dict(sessions),
                "namespaces": self.resident.per_namespace(),
                "puts": c.puts, "gets": c.gets, "hits": c.hits, "misses": c.misses,
                "evictions": c.evictions, "invalidations": c.invalidations,
                "bytes_written": c.bytes_written, "bytes_read": c.bytes_read,
                "errors": dict(c.errors),
                "direct_io": self.device.direct,
            }

    def close(self) -> None:
        """Refuse new work, wait for payload I/O in flight, flush, and release the store."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            while self._io_active:
                self._io_done.wait()
        self._closed.set()
        if self._flusher is not threading.current_thread():
            self._flusher.join()
        self._io_pool.shutdown(wait=True)
        try:
            self._sweep()
            self._flush()
        finally:
            self.index.close()
            self.device.close()
            self._store_lock.release()


__all__ = ["EXPIRED_SESSION_RETENTION_S", "MAX_TTL_S", "BlockRead", "CommitBatch", "StorageEngine", "check_ttl"]
