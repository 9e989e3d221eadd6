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
import re
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
    MemkvError,
    NotFound,
    Unavailable,
)
from ..keys import check_key
from ..sessions import PINNING_STATES, SessionEvent, SessionInfo, SessionState, next_state
from ..transport import GetResult, ItemResult
from .allocator import Extent, ExtentAllocator
from .device import Device
from .index import BlockRow, Index, SessionRow
from .lock import StoreLock
from .superblock import MAGIC, SUPERBLOCK_SIZE, Superblock

DEFAULT_UNIT = 1 * MiB
DEFAULT_LIMITS = Limits()
DEFAULT_CAPACITY = 1024 * MiB
MAX_TTL_S = 30 * 24 * 3600.0
EXPIRED_SESSION_RETENTION_S = 3600.0
NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

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


def _check_declared(checksum: int, declared: int | None) -> None:
    if declared is not None and declared != checksum:
        raise ChecksumMismatch(f"payload checksum {checksum:#x} != declared {declared:#x}")


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not NAMESPACE_PATTERN.fullmatch(namespace):
        raise InvalidArgument(f"namespace {namespace!r} must match {NAMESPACE_PATTERN.pattern}")
    return namespace


def check_ttl(ttl_s: float, what: str = "ttl_s") -> float:
    if not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidArgument(f"{what} must be in (0, {MAX_TTL_S}] seconds")
    return float(ttl_s)


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
        os.makedirs(self.directory, exist_ok=True)
        self.limits = limits
        self.clock = clock
        self._lock = threading.RLock()
        self._io_done = threading.Condition(self._lock)
        self._io_active = 0
        self._closing = False
        self._store_lock = StoreLock(os.path.join(self.directory, "lock"))
        device: Device | None = None
        index: Index | None = None
        try:
            device, self.superblock = self._open_device(device_path, capacity, unit, format_device, io)
            index = Index(os.path.join(self.directory, "index.sqlite"))
            self._bind_index(index, self.superblock)
            self._blocks: collections.OrderedDict[BlockId, _Live] = collections.OrderedDict()
            used: list[Extent] = []
            for row in index.all_blocks():
                self._blocks[(row.namespace, row.key)] = _Live(row)
                used.extend(row.extents)
            sb = self.superblock
            self.allocator = ExtentAllocator(sb.data_offset, sb.size, sb.unit, used)
            sessions = index.sessions()
        except BaseException:
            if index is not None:
                index.close()
            if device is not None:
                device.close()
            self._store_lock.release()
            raise
        self.device, self.index = device, index
        self._inflight: dict[BlockId, threading.Event] = {}
        self._pins: collections.Counter[BlockId] = collections.Counter()
        self._pinned_until: dict[SessionId, float] = {}
        self._leased: collections.Counter[BlockId] = collections.Counter()
        self._leases: dict[str, _Lease] = {}
        self._touched: dict[BlockId, float] = {}
        self.counters = _Counters()
        for session in sessions:
            if session.state in PINNING_STATES:
                self._pin(session, +1)
        self._io_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="memkv-dev")
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, args=(flush_interval_s,),
                                         name="memkv-flush", daemon=True)
        self._flusher.start()

    def _open_device(self, device_path: str | None, capacity: int, unit: int,
                     format_device: bool, io: str | None) -> tuple[Device, Superblock]:
        if unit % 4096 or unit <= 0:
            raise InvalidArgument("allocation unit must be a positive multiple of 4096")
        path = device_path or os.path.join(self.directory, "device.img")
        is_new_file = not os.path.exists(path)
        if is_new_file and capacity < 2 * unit + SUPERBLOCK_SIZE:
            raise InvalidArgument(f"capacity {capacity} is too small for allocation unit {unit}")
        device = Device(path, size=capacity, create=device_path is None, io=io)
        header = aligned_buffer(SUPERBLOCK_SIZE)
        try:
            device.read_into(0, header)
            # An all-zero header on our own device file: a process died between creating
            # the file and writing its superblock. Nothing was ever stored there.
            never_formatted = device_path is None and header == bytes(SUPERBLOCK_SIZE)
            # format_device formats only a device that holds no memkv store: a restart with the
            # same setting keeps the blocks; reformatting a store is a deliberate wipe (dd).
            unformatted = bytes(header[: len(MAGIC)]) != MAGIC
            if is_new_file or never_formatted or (format_device and unformatted):
                superblock = Superblock.new(unit, device.size)
                header[:] = superblock.encode()
                device.write(0, header)
                device.sync()
            else:
                superblock = Superblock.decode(bytes(header))
            return device, superblock
        except BaseException:
            device.close()
            raise

    @staticmethod
    def _bind_index(index: Index, superblock: Superblock) -> None:
        """Tie the index to this device; an index left from another device lists no blocks."""
        store_id = superblock.store_id.hex()
        bound = index.get_meta("store_id")
        if bound == store_id:
            return
        if bound is not None:
            log.warning("index %s belongs to device %s, not %s: forgetting its blocks",
                        index.path, bound, store_id)
            index.clear_blocks()
        index.set_meta("store_id", store_id)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """The engine lock, refusing new work once close has begun."""
        with self._lock:
            if self._closing:
                raise Unavailable("store is closed")
            yield

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
        except OSError as exc:
            error = Unavailable(f"device I/O failed: {exc}")
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

    def _remove(self, block_id: BlockId) -> bool:
        live = self._blocks.pop(block_id, None)
        if live is None:
            return False
        self.index.delete_block(*block_id)
        self._touched.pop(block_id, None)
        live.removed = True
        if live.readers == 0:
            self.allocator.free(live.row.extents)
        return True

    def _remove_many(self, block_ids: Iterable[BlockId]) -> int:
        with self.index.atomic():
            removed = sum(1 for block_id in list(block_ids) if self._remove(block_id))
        self.counters.invalidations += removed
        return removed

    def _allocate(self, size: int) -> list[Extent]:
        """Reserve extents, evicting least recently used unprotected blocks when needed.

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
        for block_id, live in self._blocks.items():
            if self._protected(block_id) or live.readers:
                continue
            trial.free(live.row.extents)
            victims.append(block_id)
            if trial.free_bytes >= need and trial.allocate(size) is not None:
                break
        else:
            raise CapacityExceeded(
                f"block of {size} bytes does not fit: {self.allocator.free_bytes} bytes free, "
                f"{trial.free_bytes - self.allocator.free_bytes} evictable; pinned, leased and "
                f"blocks being read are never evicted")
        with self.index.atomic():
            for victim in victims:
                self._remove(victim)
        self.counters.evictions += len(victims)
        extents = self.allocator.allocate(size)
        if extents is None:  # pragma: no cover - the trial allocator said it fits
            raise CapacityExceeded(f"block of {size} bytes does not fit after eviction")
        return extents

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
                live = self._blocks.get(block_id)
                pending = self._inflight.get(block_id)
                if live is not None:
                    return live
                if pending is None:
                    extents = self._allocate(length) if evict else self.allocator.allocate(length)
                    if extents is None:
                        return None
                    reservation = _Reservation(extents)
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
                    self.index.insert_block(row)
                    self._blocks[block_id] = _Live(row)
                    committed = True
                    self.counters.puts += 1
                    self.counters.bytes_written += row.length
        finally:
            with self._lock:
                if not committed:
                    self.allocator.free(reservation.extents)
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
                self._remove((block.namespace, block.key))
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
            self._blocks.move_to_end(block_id)
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
                self._transition(row, SessionEvent.EXPIRE)
                self.index.save_session(row)
            else:
                self._pinned_until[(namespace, session_id)] = row.expires_at

    def _expire_leases(self, now: float) -> None:
        for lease_id in [i for i, lease in self._leases.items() if lease.expires_at <= now]:
            self._drop_lease(lease_id)

    def _info(self, row: SessionRow) -> SessionInfo:
        return SessionInfo(row.session_id, row.state, row.keys, row.ttl, row.expires_at,
                           row.parent_id, row.fingerprint)

    def _transition(self, row: SessionRow, event: SessionEvent) -> None:
        new_state = next_state(row.state, event)
        was_pinning, now_pinning = row.state in PINNING_STATES, new_state in PINNING_STATES
        if was_pinning and not now_pinning:
            self._pin(row, -1)
        row.state = new_state
        if now_pinning and not was_pinning:
            self._pin(row, +1)

    def sweep(self) -> None:
        """Expire sessions and leases whose time ran out; drop old expired session records."""
        with self._guard():
            self._sweep()

    def _sweep(self) -> None:
        now = self.clock()
        with self._lock:
            self._expire_leases(now)
            for row in self.index.sessions():
                if row.state is SessionState.EXPIRED:
                    if now >= row.expires_at + EXPIRED_SESSION_RETENTION_S:
                        self.index.delete_session(row.namespace, row.session_id)
                elif now >= row.expires_at:
                    self._transition(row, SessionEvent.EXPIRE)
                    self.index.save_session(row)

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
        with self._lock:
            touched, self._touched = self._touched, {}
            if touched:
                with self.index.atomic():
                    self.index.touch((t, ns, k) for (ns, k), t in touched.items())
        self.device.sync()
        with self._lock:
            self.index.checkpoint()

    def _flush_loop(self, interval: float) -> None:
        while not self._closed.wait(interval):
            for step in (self.sweep, self.flush):
                try:
                    step()
                except Unavailable:
                    return  # closing
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

