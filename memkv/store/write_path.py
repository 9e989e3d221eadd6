"""The fill phase of a put: a payload source writes its bytes into reserved extents and hashes them.

A put has one path (StorageEngine._put): reserve extents -> fill them from a source -> commit
the index row (or free the extents). The sources differ only in where the bytes come from: one
buffer (put), or pieces arriving from a caller's `fill` (a server's streamed put).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from collections.abc import Callable, Sequence

from ..blocks import MiB
from ..checksum import payload_checksum, payload_hasher
from ..errors import ChecksumMismatch, InvalidArgument, KeyConflict
from ..transport import ItemResult
from .allocator import Extent
from .device import Device
from .index import BlockRow
from .read_path import piece_plan
from .resident import Reservation

# Payloads at least this large are hashed while the device write runs in another thread.
OVERLAP_MIN_BYTES = 1 * MiB
# Device offsets and piece sizes of a streamed put or get are multiples of this (O_DIRECT).
STREAM_ALIGN = 4096
# Piece size of a streamed put or get through the mapped device (no piece buffers).
MAPPED_PIECE = 1 * MiB


def check_declared(checksum: int, declared: int | None) -> None:
    if declared is not None and declared != checksum:
        raise ChecksumMismatch(f"payload checksum {checksum:#x} != declared {declared:#x}")


def reput(key: bytes, row: BlockRow, length: int, checksum: int, declared: int | None) -> ItemResult:
    """A put of a stored key: identical bytes succeed and change nothing (MKV-BLK-007)."""
    check_declared(checksum, declared)
    if row.checksum == checksum and row.length == length:
        return ItemResult()
    raise KeyConflict(f"key {key.hex()} holds different bytes; blocks are immutable")


def stream_piece_size(buffers: Sequence[memoryview]) -> int:
    """The piece size of a streamed put or get through `buffers`; none at all: the device is mapped
    and the pieces are views of it (the caller learns that from StorageEngine.streams_mapped)."""
    if not buffers:
        return MAPPED_PIECE
    if len(buffers) < 2:
        raise InvalidArgument("a streamed put or get needs at least two piece buffers")
    piece = min(len(b) for b in buffers) // STREAM_ALIGN * STREAM_ALIGN
    if piece <= 0:
        raise InvalidArgument(f"piece buffers must hold at least {STREAM_ALIGN} bytes")
    return piece


def extent_pieces(extents: Sequence[Extent], payload: memoryview) -> list[tuple[int, memoryview]]:
    """(device offset, part of `payload`) for each extent, in order."""
    pieces, pos = [], 0
    for extent in extents:
        piece = payload[pos : pos + extent.length]
        pieces.append((extent.offset, piece))
        pos += len(piece)
    return pieces


def write_extents(device: Device, extents: Sequence[Extent], payload: memoryview) -> None:
    for offset, piece in extent_pieces(extents, payload):
        device.write(offset, piece)


class WholePayload:
    """A payload in one buffer. With a declared checksum it is hashed before anything is reserved,
    since reserving may evict (MKV-ERR-002)."""

    def __init__(self, payload: memoryview, declared: int | None) -> None:
        self.payload, self.length = payload, len(payload)
        self.known = None if declared is None else payload_checksum(payload)

    def checksum_before_reserve(self) -> int | None:
        return self.known

    def consume(self) -> int:
        """The checksum of a payload that is not written (the key already holds a block)."""
        return payload_checksum(self.payload) if self.known is None else self.known

    def fill(self, device: Device, pool: concurrent.futures.Executor, extents: Sequence[Extent]) -> int:
        """Write the payload; hash it meanwhile when large.

        Where the device can (io_uring, no bounce buffer), this thread hashes while the writes it
        submitted are in flight: no hand-off to another thread. Otherwise a pool thread hashes
        while this one writes: the hash holds the GIL and the write releases it, so the thread
        that hashes must be the one that does not write, or the write waits for the hash.
        """
        if self.known is not None:
            write_extents(device, extents, self.payload)
            return self.known
        if self.length < OVERLAP_MIN_BYTES:
            write_extents(device, extents, self.payload)
            return payload_checksum(self.payload)
        pieces = extent_pieces(extents, self.payload)
        if device.writes_overlap(pieces):
            return device.write_during(pieces, lambda: payload_checksum(self.payload))
        hashing = pool.submit(payload_checksum, self.payload)
        try:
            write_extents(device, extents, self.payload)
        finally:
            concurrent.futures.wait([hashing])  # no hash outlives the put that owns the payload
        return hashing.result()


class StreamedPayload:
    """A payload whose pieces `fill(view)` delivers in order (e.g. recv_into from a socket).

    Pieces rotate through `buffers` and each is written while the next is filled; on a buffered
    device the pieces are views of the mapped device instead (no copy), unless `use_mapping` is
    false (a caller whose pieces must be its own memory, e.g. memory registered with NIXL).
    """

    def __init__(self, length: int, fill: Callable[[memoryview], None], buffers: Sequence[memoryview],
                 use_mapping: bool) -> None:
        self.length, self._fill, self.buffers, self.use_mapping = length, fill, buffers, use_mapping
        self.piece = stream_piece_size(buffers)

    def checksum_before_reserve(self) -> None:
        return None

    def _scratch_pieces(self) -> collections.abc.Iterator[memoryview]:
        scratch = self.buffers[0][: self.piece] if self.buffers else memoryview(bytearray(self.piece))
        for start in range(0, self.length, self.piece):
            view = scratch[: min(self.piece, self.length - start)]
            self._fill(view)
            yield view

    def consume(self) -> int:
        hasher = payload_hasher()
        for view in self._scratch_pieces():
            hasher.update(view)
        return int(hasher.intdigest())

    def staged(self, declared: int | None) -> WholePayload:
        """Receive the whole payload first (at most max_block_size, checked by the caller), so it is
        verified before anything is evicted (MKV-ERR-002); `fill` still gets the caller's buffer."""
        staged = memoryview(bytearray(self.length))
        pos = 0
        for view in self._scratch_pieces():
            staged[pos : pos + len(view)] = view
            pos += len(view)
        return WholePayload(staged, declared)

    def fill(self, device: Device, pool: concurrent.futures.Executor, extents: Sequence[Extent]) -> int:
        hasher = payload_hasher()
        writes: collections.deque[concurrent.futures.Future[None]] = collections.deque()
        mapped = device.mapping() if self.use_mapping else None
        if mapped is None and not self.buffers:
            raise InvalidArgument("a streamed put to a device that is not mapped needs piece buffers")
        try:
            for k, (offset, size) in enumerate(piece_plan(extents, self.length, self.piece)):
                if mapped is not None:  # buffered device: receive straight into the page cache
                    view = mapped[offset : offset + size]
                    self._fill(view)
                    hasher.update(view)
                    continue
                if len(writes) == len(self.buffers):
                    writes.popleft().result()  # the write that last used this buffer
                view = self.buffers[k % len(self.buffers)][:size]
                self._fill(view)
                if self.length < OVERLAP_MIN_BYTES:
                    device.write(offset, view)
                else:
                    writes.append(pool.submit(device.write, offset, view))
                hasher.update(view)
            while writes:
                writes.popleft().result()
        finally:
            if writes:  # only after a failure: no write may outlive the put that owns its buffer
                concurrent.futures.wait(writes)
        return int(hasher.intdigest())


PayloadSource = WholePayload | StreamedPayload


@dataclasses.dataclass(slots=True)
class StagedRow:
    """An item of a put call whose payload is written and verified; its row waits for the commit."""

    position: int
    block_id: tuple[str, bytes]
    reservation: Reservation
    row: BlockRow


@dataclasses.dataclass(slots=True)
class CommitBatch:
    """The items of one put call whose index rows are committed in one transaction
    (StorageEngine._settle_batch), and the call's results, where a failed commit is recorded."""

    results: list[ItemResult]
    staged: list[StagedRow] = dataclasses.field(default_factory=list)

    def stage(self, block_id: tuple[str, bytes], reservation: Reservation, row: BlockRow) -> None:
        self.staged.append(StagedRow(len(self.results), block_id, reservation, row))

    def __bool__(self) -> bool:
        return bool(self.staged)
