"""The storage engine's state and its shared machinery (see engine.py for the whole picture).

Opening and closing a store, the lock and I/O accounting, pins and leases, removal and
eviction, the two phases of a put (reserve, settle), pinned reads and their verification,
session state changes, and upkeep (sweep, flush, stats). The operations built on these live
in engine.py (blocks, invalidation), session_ops.py and stream_ops.py.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ..blocks import Limits, MiB
from ..buffers import aligned_buffer
from ..errors import (
    BufferTooSmall,
    CapacityExceeded,
    ChecksumMismatch,
    Corrupted,
    InvalidArgument,
    KeyConflict,
    LimitExceeded,
    MemkvError,
    NotFound,
    Unavailable,
)
from ..eviction import ChainOrder
from ..keys import ROOT_PARENT, check_key
from ..namespaces import check_namespace
from ..sessions import PINNING_STATES, SessionEvent, SessionInfo, SessionState, next_state
from ..transport import GetResult, ItemResult
from .allocator import Extent, ExtentAllocator
from .device import Device
from .index import BlockRow, Index, SessionRow
from .lock import StoreLock
from .open_checks import DamagedStore, check_device_length, open_index, refuse_zeroed_header
from .quotas import Quota
from .storage_errors import describe, is_fatal, unavailable
from .superblock import MAGIC, SUPERBLOCK_SIZE, Superblock

DEFAULT_UNIT = 1 * MiB
SUPERBLOCK_RECORD = "superblock"
SUPERBLOCK_RECORD_BYTES = 64
DEFAULT_LIMITS = Limits()
DEFAULT_CAPACITY = 1024 * MiB
MAX_TTL_S = 30 * 24 * 3600.0
EXPIRED_SESSION_RETENTION_S = 3600.0

# Payloads at least this large are hashed while the device write runs in another thread.
OVERLAP_MIN_BYTES = 1 * MiB
READ_PIECE = 4 * MiB
# Device offsets and piece sizes of a streamed put or get are multiples of this (O_DIRECT).
STREAM_ALIGN = 4096

BlockId = tuple[str, bytes]
SessionId = tuple[str, str]
T = TypeVar("T")

log = logging.getLogger(__name__)


def _reput(key: bytes, row: BlockRow, length: int, checksum: int, declared: int | None) -> ItemResult:
    """A put of a stored key: identical bytes succeed and change nothing (MKV-BLK-007)."""
    _check_declared(checksum, declared)
    if row.checksum == checksum and row.length == length:
        return ItemResult()
    raise KeyConflict(f"key {key.hex()} holds different bytes; blocks are immutable")


def _parent_of(row: BlockRow) -> BlockId | None:
    """The block `row` is chained after (MKV-CAP-006), None for the head of a chain."""
    parent = row.meta.parent
    return None if parent == ROOT_PARENT or parent == row.key else (row.namespace, parent)


def _check_declared(checksum: int, declared: int | None) -> None:
    if declared is not None and declared != checksum:
        raise ChecksumMismatch(f"payload checksum {checksum:#x} != declared {declared:#x}")


def check_ttl(ttl_s: float, what: str = "ttl_s") -> float:
    if not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidArgument(f"{what} must be in (0, {MAX_TTL_S}] seconds")
    return float(ttl_s)


def make_private_dirs(path: str) -> None:
    """Create `path` and its missing parents readable by their owner only (MKV-SEC-004)."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue


@dataclasses.dataclass(slots=True)
class _Live:
    """A committed block while the engine holds it: its row plus readers still using its extents."""

    row: BlockRow
    readers: int = 0
    removed: bool = False


@dataclasses.dataclass(slots=True)
class _Reservation:
    """Extents reserved for a put in flight; `done` wakes puts of the same key waiting on it."""

    extents: list[Extent]
    length: int = 0  # payload bytes charged to the namespace's quota until settled
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


@dataclasses.dataclass(slots=True)
class BlockRead:
    """A block pinned by StorageEngine.open_read for read_stream, until close_read."""

    namespace: str
    key: bytes
    live: _Live
    closed: bool = False

    def result(self) -> GetResult:
        row = self.live.row
        return GetResult(length=row.length, checksum=row.checksum, meta=row.meta)


@dataclasses.dataclass(slots=True)
class _Lease:
    namespace: str
    keys: tuple[bytes, ...]
    expires_at: float


@dataclasses.dataclass(slots=True)
class _Counters:
    puts: int = 0
    gets: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    invalidations: int = 0
    bytes_written: int = 0
    bytes_read: int = 0
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


class EngineCore:
    """State of one open store directory (index, lock, and the device file unless a device path is given)."""

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
        device: Device | None = None
        index: Index | None = None
        # Set when a write may not have reached stable storage; from then on writes are refused.
        self.failure: str | None = None
        try:
            index = open_index(os.path.join(self.directory, "index.sqlite"), self.directory)
            device, self.superblock, formatted = self._open_device(device_path, capacity, unit, format_device,
                                                                   io, index)
            self._bind_index(index, self.superblock, formatted, device.path)
            self._blocks: collections.OrderedDict[BlockId, _Live] = collections.OrderedDict()
            self._order: ChainOrder[BlockId] = ChainOrder()
            used: list[Extent] = []
            for row in index.all_blocks():
                self._blocks[(row.namespace, row.key)] = _Live(row)
                self._order.add((row.namespace, row.key), _parent_of(row))
                used.extend(row.extents)
            sb = self.superblock
            self.allocator = ExtentAllocator(sb.data_offset, sb.size, sb.unit, used)
            sessions = index.sessions()
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
        self._inflight: dict[BlockId, threading.Event] = {}
        self._pins: collections.Counter[BlockId] = collections.Counter()
        self._pinned_until: dict[SessionId, float] = {}
        self._leased: collections.Counter[BlockId] = collections.Counter()
        self._leases: dict[str, _Lease] = {}
        self._touched: dict[BlockId, float] = {}
        self.quotas: dict[str, Quota] = {}  # set by the operator (MKV-NS-010)
        self._ns_bytes: collections.Counter[str] = collections.Counter()  # stored and reserved, per namespace
        for (namespace, _), live in self._blocks.items():
            self._ns_bytes[namespace] += live.row.length
        self.counters = _Counters()
        for session in sessions:
            if session.state in PINNING_STATES:
                self._pin(session, +1)
        self._io_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="memkv-dev")
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, args=(flush_interval_s,),
                                         name="memkv-flush", daemon=True)
        self._flusher.start()

    def _open_device(self, device_path: str | None, capacity: int, unit: int, format_device: bool,
                     io: str | None, index: Index) -> tuple[Device, Superblock, bool]:
        if unit % 4096 or unit <= 0:
            raise InvalidArgument("allocation unit must be a positive multiple of 4096")
        path = device_path or os.path.join(self.directory, "device.img")
        is_new_file = not os.path.exists(path)
        if is_new_file and capacity < 2 * unit + SUPERBLOCK_SIZE:
            raise InvalidArgument(f"capacity {capacity} is too small for allocation unit {unit}")
        device = Device(path, size=capacity, create=device_path is None, io=io)
        header = aligned_buffer(SUPERBLOCK_SIZE)
        try:
            check_device_length(device.path, device.size, SUPERBLOCK_SIZE, self.directory)
            device.read_into(0, header)
            indexed = index.block_count()
            # An all-zero header on our own device file with an empty index: a process died
            # between creating the file and writing its superblock. Nothing was ever stored there.
            # With blocks in the index the header was destroyed: refuse (MKV-DUR-010).
            zeroed = header == bytes(SUPERBLOCK_SIZE)
            never_formatted = device_path is None and zeroed and indexed == 0
            # format_device formats only a device that holds no memkv store: a restart with the
            # same setting keeps the blocks; reformatting a store is a deliberate wipe (dd).
            unformatted = bytes(header[: len(MAGIC)]) != MAGIC
            if is_new_file or never_formatted or (format_device and unformatted):
                superblock = Superblock.new(unit, device.size)
                header[:] = superblock.encode()
                device.write(0, header)
                device.sync()
                return device, superblock, True
            if zeroed:
                refuse_zeroed_header(device.path, indexed, self.directory)
            try:
                superblock = Superblock.decode(bytes(header))
            except MemkvError as exc:
                raise type(exc)(f"device {device.path}: {exc.message}; nothing was modified; "
                                f"inspect it with `memkv fsck {self.directory}`") from None
            check_device_length(device.path, device.size, superblock.size, self.directory)
            return device, superblock, False
        except BaseException:
            device.close()
            raise

    def _bind_index(self, index: Index, superblock: Superblock, formatted: bool, device_path: str) -> None:
        """Tie the index to this device. An index of another store that lists blocks is refused
        (MKV-DUR-010) unless the device was just formatted on purpose, which forgets them."""
        store_id = superblock.store_id.hex()
        bound = index.get_meta("store_id")
        if bound == store_id:
            if index.get_meta(SUPERBLOCK_RECORD) is None:
                index.set_meta(SUPERBLOCK_RECORD, superblock.encode()[:SUPERBLOCK_RECORD_BYTES].hex())
            return
        if bound is not None:
            count = index.block_count()
            if count and not formatted:
                raise DamagedStore(
                    f"index {index.path} lists {count} blocks of store {bound} but device {device_path} "
                    f"holds store {store_id}; nothing was modified. Inspect with `memkv fsck "
                    f"{self.directory}`; to keep the device's store, move the index away")
            if count:
                log.warning("device %s was formatted: forgetting the %d blocks index %s listed",
                            device_path, count, index.path)
            index.clear_blocks()
        elif not formatted:
            log.warning("device %s holds a memkv store, but the data directory %s has no index for it: "
                        "blocks stored there before are not reachable (reuse the --data directory it was "
                        "created with to keep them)", device_path, os.path.dirname(index.path))
        index.set_meta("store_id", store_id)
        # A copy of the header, from which `memkv fsck --repair` can rewrite a zeroed one.
        index.set_meta(SUPERBLOCK_RECORD, superblock.encode()[:SUPERBLOCK_RECORD_BYTES].hex())

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """The engine lock, refusing new work once close has begun."""
        with self._lock:
            if self._closing:
                raise Unavailable("store is closed")
            try:
                yield
            except sqlite3.Error as exc:
                raise self._storage_failed(exc, "index update") from None

    def _storage_failed(self, exc: BaseException, doing: str) -> Unavailable:
        """The spec error for a storage failure; one that leaves durability unknown stops writes."""
        if is_fatal(exc):
            self._fail_stop(f"{doing}: {describe(exc)}")
        return unavailable(exc, doing)

    def _fail_stop(self, reason: str) -> None:
        """Stop taking writes for good (MKV-DUR-009): a retried fsync can report success for
        pages the kernel already dropped, so only a restart (and its checks) clears this."""
        with self._lock:
            if self.failure is None:
                self.failure = reason
                log.critical("memkv store %s stops taking writes: %s; restart it once the storage "
                             "is repaired", self.directory, reason)

    def _check_writable(self) -> None:
        if self.failure is not None:
            raise Unavailable(f"store stopped taking writes after a storage failure ({self.failure}); "
                              f"reads still work; restart once the storage is repaired")

    def _io_finished(self) -> None:
        """Caller holds the lock."""
        self._io_active -= 1
        if self._io_active == 0:
            self._io_done.notify_all()

    def _per_item(self, fn: Callable[[], T], wrap: Callable[[MemkvError], T]) -> T:
        """Run one item of a batch; its error becomes its result, not the batch's (MKV-OPS-003)."""
        try:
            return fn()
        except MemkvError as exc:
            error = exc
        except (OSError, sqlite3.Error) as exc:
            error = self._storage_failed(exc, "device I/O" if isinstance(exc, OSError) else "index update")
        with self._lock:
            self.counters.errors[error.code.name] += 1
        return wrap(error)

    def _present(self, namespace: str, key: bytes) -> bool:
        return (namespace, key) in self._blocks

    def _pin(self, session: SessionRow, delta: int) -> None:
        """Count one pin per occurrence of a key in the chain; unpinning uses the same chain."""
        if delta > 0:
            self._pinned_until[(session.namespace, session.session_id)] = session.expires_at
        else:
            self._pinned_until.pop((session.namespace, session.session_id), None)
        for key in session.keys:
            block_id = (session.namespace, key)
            self._pins[block_id] += delta
            if self._pins[block_id] <= 0:
                del self._pins[block_id]

    def _protected(self, block_id: BlockId) -> bool:
        return block_id in self._pins or block_id in self._leased

    def _unevictable(self, block_id: BlockId) -> bool:
        return self._protected(block_id) or self._blocks[block_id].readers > 0

    def _commit_removal(self, block_ids: Sequence[BlockId], also: Callable[[], None] | None = None) -> None:
        """Delete the rows (and run `also` in the same transaction); only once that commits are the
        blocks dropped from memory and their extents freed (MKV-DUR-008). Caller holds the lock."""
        if not block_ids and also is None:
            return
        self._check_writable()
        try:
            # Durable before the extents can be reused: a power cut must not bring back a
            # removed block over another block's bytes (MKV-DUR-002, found by powercut.py).
            with self.index.durable(), self.index.atomic():
                for block_id in block_ids:
                    self.index.delete_block(*block_id)
                if also is not None:
                    also()
        except sqlite3.Error as exc:
            raise self._storage_failed(exc, "index update") from None
        for block_id in block_ids:
            live = self._blocks.pop(block_id)
            self._order.discard(block_id)
            self._touched.pop(block_id, None)
            self._ns_bytes[block_id[0]] -= live.row.length
            live.removed = True
            if live.readers == 0:
                self.allocator.free(live.row.extents)

    def _remove_many(self, block_ids: Iterable[BlockId], also: Callable[[], None] | None = None) -> int:
        present = [block_id for block_id in dict.fromkeys(block_ids) if block_id in self._blocks]
        self._commit_removal(present, also)
        self.counters.invalidations += len(present)
        return len(present)

    def _allocate(self, size: int) -> list[Extent]:
        """Reserve extents, evicting unprotected blocks in chain order when needed (MKV-CAP-006..009).

        The victims are chosen on a copy of the allocator; only when the block then fits are
        they removed, so a put that cannot fit evicts nothing (MKV-CAP-003), even when free
        space is too fragmented for the extent limit.
        """
        extents = self.allocator.allocate(size)
        if extents is not None:
            return extents
        now = self.clock()
        self._expire_leases(now)
        self._expire_pinned_sessions(now)
        need = self.allocator.rounded(size)
        trial = self.allocator.copy()
        victims: list[BlockId] = []
        for block_id in self._order.candidates(self._unevictable):
            trial.free(self._blocks[block_id].row.extents)
            victims.append(block_id)
            if trial.free_bytes >= need and trial.allocate(size) is not None:
                break
        else:
            raise CapacityExceeded(
                f"block of {size} bytes does not fit: {self.allocator.free_bytes} bytes free, "
                f"{trial.free_bytes - self.allocator.free_bytes} evictable; pinned, leased and "
                f"blocks being read are never evicted")
        self._commit_removal(victims)
        self.counters.evictions += len(victims)
        extents = self.allocator.allocate(size)
        if extents is None:  # pragma: no cover - the trial allocator said it fits
            raise CapacityExceeded(f"block of {size} bytes does not fit after eviction")
        return extents

    def _quota_room(self, namespace: str) -> float:
        """Bytes the namespace may still store without evicting (MKV-NS-010); inf without a byte quota."""
        quota = self.quotas.get(namespace)
        if quota is None or quota.bytes is None:
            return float("inf")
        return quota.bytes - self._ns_bytes[namespace]

    def _fit_quota(self, namespace: str, length: int) -> None:
        """Make `length` more bytes fit the namespace's byte quota by evicting its own unprotected
        blocks in eviction order (MKV-CAP-006); evicts nothing and raises CAPACITY_EXCEEDED when it
        cannot (MKV-NS-010)."""
        excess = length - self._quota_room(namespace)
        if excess <= 0:
            return
        victims: list[BlockId] = []
        for block_id in self._order.candidates(self._unevictable):
            if excess <= 0:
                break
            if block_id[0] != namespace:
                continue
            victims.append(block_id)
            excess -= self._blocks[block_id].row.length
        if excess > 0:
            raise CapacityExceeded(f"namespace {namespace} is at its byte quota ({self.quotas[namespace].bytes}) "
                                   f"and cannot evict enough of its own unpinned, unleased blocks")
        self._commit_removal(victims)
        self.counters.evictions += len(victims)

    def _check_count_quota(self, namespace: str, field: str, live: int) -> None:
        """LIMIT_EXCEEDED when one more session or lease would pass the namespace's quota (MKV-NS-010)."""
        quota = self.quotas.get(namespace)
        limit = None if quota is None else getattr(quota, field)
        if limit is not None and live + 1 > limit:
            raise LimitExceeded(f"namespace {namespace} holds its quota of {limit} {field}")

    def _check_pinned_quota(self, namespace: str, keys: Sequence[bytes]) -> None:
        """CAPACITY_EXCEEDED when pinning `keys` would pass the namespace's pinned-bytes quota (MKV-NS-010)."""
        quota = self.quotas.get(namespace)
        if quota is None or quota.pinned_bytes is None:
            return
        pinned = {block_id for block_id in self._pins if block_id[0] == namespace}
        adding = {(namespace, key) for key in keys} - pinned
        total = sum(self._blocks[b].row.length for b in pinned | adding if b in self._blocks)
        if total > quota.pinned_bytes:
            raise CapacityExceeded(f"namespace {namespace} would pin {total} bytes; its quota is "
                                   f"{quota.pinned_bytes}")

    def _check_open(self) -> None:
        if self._closing:
            raise Unavailable("store is closed")

    def _reserve(self, block_id: BlockId, length: int, evict: bool = True) -> _Live | _Reservation | None:
        """Phase one of a put: the stored block under this key, or fresh extents reserved for it.

        A put of the same key already in flight is waited for, then looked at again. Without
        `evict`, None when the block does not fit in free space (nothing is reserved).
        """
        while True:
            with self._guard():
                self._check_writable()
                live = self._blocks.get(block_id)
                pending = self._inflight.get(block_id)
                if live is not None:
                    return live
                if pending is None:
                    if evict:
                        self._fit_quota(block_id[0], length)
                        extents: list[Extent] | None = self._allocate(length)
                    else:
                        fits_quota = self._quota_room(block_id[0]) >= length
                        extents = self.allocator.allocate(length) if fits_quota else None
                    if extents is None:
                        return None
                    self._ns_bytes[block_id[0]] += length
                    reservation = _Reservation(extents, length)
                    self._inflight[block_id] = reservation.done
                    self._io_active += 1
                    return reservation
            pending.wait()

    def _settle(self, block_id: BlockId, reservation: _Reservation, row: BlockRow | None) -> None:
        """Phase two: commit `row` (the block becomes visible), or, without one, free the extents."""
        committed = False
        try:
            if row is not None:
                with self._lock:
                    self._check_writable()
                    try:
                        self.index.insert_block(row)
                    except sqlite3.Error as exc:
                        raise self._storage_failed(exc, "index update") from None
                    self._blocks[block_id] = _Live(row)
                    self._order.add(block_id, _parent_of(row))
                    committed = True
                    self.counters.puts += 1
                    self.counters.bytes_written += row.length
        finally:
            with self._lock:
                if not committed:
                    self.allocator.free(reservation.extents)
                    self._ns_bytes[block_id[0]] -= reservation.length
                del self._inflight[block_id]
                self._io_finished()
            reservation.done.set()

    def _verified(self, block: BlockRead, checksum: int) -> None:
        """Count a read whose bytes hashed to `checksum`; remove the block when that is wrong."""
        if checksum == block.live.row.checksum:
            with self._lock:
                self.counters.bytes_read += block.live.row.length
            return
        with self._lock:
            # Remove this block only: the key may already hold a newer one.
            if self._blocks.get((block.namespace, block.key)) is block.live:
                try:
                    self._commit_removal([(block.namespace, block.key)])
                except Unavailable as exc:
                    log.error("block %s in namespace %s failed checksum verification and stays listed: %s",
                              block.key.hex(), block.namespace, exc.message)
                    raise Corrupted(f"block {block.key.hex()} failed checksum verification") from None
        log.error("block %s in namespace %s failed checksum verification; removed",
                  block.key.hex(), block.namespace)
        raise Corrupted(f"block {block.key.hex()} failed checksum verification and was removed")

    @staticmethod
    def _piece_plan(extents: Sequence[Extent], length: int, piece: int) -> list[tuple[int, int]]:
        """(device offset, bytes) pieces of at most `piece` bytes covering `length` bytes of `extents`."""
        plan, pos = [], 0
        for extent in extents:
            end = min(pos + extent.length, length)
            for start in range(pos, end, piece):
                plan.append((extent.offset + start - pos, min(piece, end - start)))
            pos = end
        return plan

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
            live = self._blocks.get(block_id)
            if live is None:
                self.counters.misses += 1
                raise NotFound(f"no block {key.hex()} in namespace {namespace}")
            if capacity is not None and capacity < live.row.length:
                raise BufferTooSmall(f"block is {live.row.length} bytes, buffer {capacity}")
            self.counters.hits += 1
            live.readers += 1
            self._io_active += 1
            self._order.use(block_id)
            self._touched[block_id] = self.clock()
        return BlockRead(namespace, key, live)

    def close_read(self, block: BlockRead) -> None:
        """Unpin a block of `open_read` (once; later calls do nothing)."""
        with self._lock:
            if block.closed:
                return
            block.closed = True
            live = block.live
            live.readers -= 1
            if live.removed and live.readers == 0:
                self.allocator.free(live.row.extents)
            self._io_finished()

    def _drop_lease(self, lease_id: str) -> None:
        lease = self._leases.pop(lease_id)
        for key in lease.keys:
            block_id = (lease.namespace, key)
            self._leased[block_id] -= 1
            if self._leased[block_id] <= 0:
                del self._leased[block_id]

    def _expire_pinned_sessions(self, now: float) -> None:
        """Expire suspended sessions whose pause ran out, releasing their pins (MKV-SES-008)."""
        for namespace, session_id in [s for s, until in self._pinned_until.items() if until <= now]:
            row = self.index.session(namespace, session_id)
            if row is None or row.state not in PINNING_STATES:
                self._pinned_until.pop((namespace, session_id), None)
                continue
            if now >= row.expires_at:
                self._expire_session(row)
            else:
                self._pinned_until[(namespace, session_id)] = row.expires_at

    def _expire_leases(self, now: float) -> None:
        for lease_id in [i for i, lease in self._leases.items() if lease.expires_at <= now]:
            self._drop_lease(lease_id)

    def _info(self, row: SessionRow) -> SessionInfo:
        return SessionInfo(row.session_id, row.state, row.keys, row.ttl, row.expires_at,
                           row.parent_id, row.fingerprint)

    def _commit_session(self, old: SessionRow | None, new: SessionRow | None) -> None:
        """Write a session change (new None: deletion) to the index first; only once it is committed
        do the pins follow (MKV-DUR-008). Caller holds the lock."""
        self._check_writable()
        try:
            if new is not None:
                self.index.save_session(new)
            elif old is not None:
                self.index.delete_session(old.namespace, old.session_id)
        except sqlite3.Error as exc:
            raise self._storage_failed(exc, "index update") from None
        if old is not None and old.state in PINNING_STATES:
            self._pin(old, -1)
        if new is not None and new.state in PINNING_STATES:
            self._pin(new, +1)

    @staticmethod
    def _transition(row: SessionRow, event: SessionEvent) -> SessionRow:
        """A copy of `row` after `event`; the caller commits it with _commit_session."""
        return dataclasses.replace(row, state=next_state(row.state, event))

    def _expire_session(self, row: SessionRow) -> SessionRow:
        expired = self._transition(row, SessionEvent.EXPIRE)
        self._commit_session(row, expired)
        return expired

    def sweep(self) -> None:
        """Expire sessions and leases whose time ran out; drop old expired session records."""
        with self._guard():
            self._sweep()

    def _sweep(self) -> None:
        now = self.clock()
        with self._lock:
            self._expire_leases(now)
            if self.failure is not None:
                return
            for row in self.index.sessions():
                if row.state is SessionState.EXPIRED:
                    if now >= row.expires_at + EXPIRED_SESSION_RETENTION_S:
                        self._commit_session(row, None)
                elif now >= row.expires_at:
                    self._expire_session(row)

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
        """Payloads first, then the index. A failure stops writes (MKV-DUR-009): never retried."""
        if self.failure is not None:
            return
        with self._lock:
            touched, self._touched = self._touched, {}
            if touched:
                try:
                    with self.index.atomic():
                        self.index.touch((t, ns, k) for (ns, k), t in touched.items())
                except sqlite3.Error as exc:
                    raise self._storage_failed(exc, "recording access times") from None
        try:
            self.device.sync()
        except OSError as exc:
            self._fail_stop(f"fdatasync of device {self.device.path}: {describe(exc)}")
            raise unavailable(exc, "flush") from None
        with self._lock:
            try:
                self.index.checkpoint()
            except sqlite3.Error as exc:
                self._fail_stop(f"checkpoint of index {self.index.path}: {describe(exc)}")
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
            by_namespace: dict[str, dict[str, int]] = {}
            for (ns, _), live in self._blocks.items():
                entry = by_namespace.setdefault(ns, {"blocks": 0, "bytes": 0})
                entry["blocks"] += 1
                entry["bytes"] += live.row.length
            sessions = collections.Counter(row.state.value for row in self.index.sessions())
            c = self.counters
            return {
                "capacity_bytes": self.allocator.total_bytes,
                "used_bytes": self.allocator.total_bytes - self.allocator.free_bytes,
                "free_bytes": self.allocator.free_bytes,
                "blocks": len(self._blocks),
                "pinned_blocks": sum(1 for block_id in self._pins if block_id in self._blocks),
                "leases": len(self._leases),
                "sessions": dict(sessions),
                "namespaces": by_namespace,
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

