"""The read pipeline: a pinned block's pieces read from the device, in order, a few ahead of the
one being consumed (hashed, and for a streamed get also sent).

A get reads a block into the caller's buffer; a server's streamed get reads it through rotating
piece buffers. Both go through `read_pieces`; the block is pinned by StorageEngine.open_read
until close_read, so its extents are neither freed nor reused meanwhile.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ..transport import GetResult
from .allocator import Extent
from .device import Device
from .resident import LiveBlock

READ_PIECE = 4 * 1024 * 1024


@dataclasses.dataclass(slots=True)
class BlockRead:
    """A block pinned by StorageEngine.open_read for read_stream, until close_read."""

    namespace: str
    key: bytes
    live: LiveBlock
    closed: bool = False

    def result(self) -> GetResult:
        row = self.live.row
        return GetResult(length=row.length, checksum=row.checksum, meta=row.meta)


def piece_plan(extents: Sequence[Extent], length: int, piece: int) -> list[tuple[int, int]]:
    """(device offset, bytes) pieces of at most `piece` bytes covering `length` bytes of `extents`."""
    plan, pos = [], 0
    for extent in extents:
        end = min(pos + extent.length, length)
        for start in range(pos, end, piece):
            plan.append((extent.offset + start - pos, min(piece, end - start)))
        pos = end
    return plan


def read_pieces(device: Device, pool: concurrent.futures.Executor | None, plan: Sequence[tuple[int, int]],
                view_for: Callable[[int, int], memoryview], ahead: int,
                consume: Callable[[memoryview], None]) -> None:
    """Read piece k of `plan` into `view_for(k, size)` and hand it to `consume`, in order.

    With a pool, `ahead` reads run in other threads while a piece is consumed (piece k + ahead
    goes into the view of piece k - 1, already consumed); without one, everything runs here.
    """
    if pool is None:
        for k, (offset, size) in enumerate(plan):
            view = view_for(k, size)
            device.read_into(offset, view)
            consume(view)
        return
    queue: collections.deque[tuple[concurrent.futures.Future[None], memoryview]] = collections.deque()

    def submit(k: int) -> None:
        offset, size = plan[k]
        view = view_for(k, size)
        queue.append((pool.submit(device.read_into, offset, view), view))

    try:
        submitted = 0
        while submitted < min(ahead, len(plan)):
            submit(submitted)
            submitted += 1
        while queue:
            reading, view = queue.popleft()
            reading.result()
            if submitted < len(plan):
                submit(submitted)
                submitted += 1
            consume(view)
    finally:
        concurrent.futures.wait([reading for reading, _ in queue])


# Below this many bytes a mapped block is hashed in the emitting thread, piece by piece after it
# is emitted: the hand-off to a hashing thread and back costs more than the hash saves.
HASH_BESIDE_MIN_BYTES = 8 * 1024 * 1024


def emit_mapped(pool: concurrent.futures.Executor, hasher: Any, pieces: Sequence[memoryview],
                emit: Callable[[memoryview], None]) -> None:
    """Emit straight from the page cache while another thread hashes the same pages (both release
    the GIL); the pinned block keeps the pages in place. A small block is hashed inline."""
    if sum(len(view) for view in pieces) < HASH_BESIDE_MIN_BYTES:
        for view in pieces:
            emit(view)
            hasher.update(view)
        return
    hashing = pool.submit(_hash_pieces, hasher, pieces)
    try:
        for view in pieces:
            emit(view)
    finally:
        hashing.result()


def _hash_pieces(hasher: Any, pieces: Sequence[memoryview]) -> None:
    for view in pieces:
        hasher.update(view)
