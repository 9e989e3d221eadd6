"""The blocks the store holds: committed blocks, the reservations of puts in flight, the extent
allocator both come from, and the bytes each namespace holds (stored and reserved, MKV-NS-010).

Extents are freed exactly once: by removal when no reader holds them, else by the last reader.
Not thread-safe on its own: StorageEngine calls it under its lock.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Iterable

from .allocator import Extent, ExtentAllocator
from .index import BlockRow
from .superblock import Superblock

BlockId = tuple[str, bytes]


@dataclasses.dataclass(slots=True)
class LiveBlock:
    """A committed block while the engine holds it: its row plus readers still using its extents."""

    row: BlockRow
    readers: int = 0
    removed: bool = False


@dataclasses.dataclass(slots=True)
class Reservation:
    """Extents reserved for a put in flight; `done` wakes puts of the same key waiting on it."""

    extents: list[Extent]
    length: int = 0  # payload bytes charged to the namespace until settled
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


class ResidentBlocks:
    def __init__(self, superblock: Superblock, rows: Iterable[BlockRow]) -> None:
        self.blocks: collections.OrderedDict[BlockId, LiveBlock] = collections.OrderedDict()
        self.reserved: dict[BlockId, Reservation] = {}
        self.namespace_bytes: collections.Counter[str] = collections.Counter()
        self.touched: dict[BlockId, float] = {}  # last access times the index does not have yet
        used: list[Extent] = []
        for row in rows:
            self.blocks[(row.namespace, row.key)] = LiveBlock(row)
            self.namespace_bytes[row.namespace] += row.length
            used.extend(row.extents)
        self.allocator = ExtentAllocator(superblock.data_offset, superblock.size, superblock.unit, used)

    def get(self, block_id: BlockId) -> LiveBlock | None:
        return self.blocks.get(block_id)

    def __contains__(self, block_id: BlockId) -> bool:
        return block_id in self.blocks

    def length(self, block_id: BlockId) -> int:
        return self.blocks[block_id].row.length

    def being_read(self, block_id: BlockId) -> bool:
        return self.blocks[block_id].readers > 0

    def reserve(self, block_id: BlockId, extents: list[Extent], length: int) -> Reservation:
        self.namespace_bytes[block_id[0]] += length
        reservation = Reservation(extents, length)
        self.reserved[block_id] = reservation
        return reservation

    def commit(self, block_id: BlockId, row: BlockRow) -> None:
        """The reserved extents now hold `row`'s committed block."""
        self.blocks[block_id] = LiveBlock(row)

    def unreserve(self, block_id: BlockId, committed: bool) -> Reservation:
        """End a reservation; the extents of one that was not committed go back to the allocator."""
        reservation = self.reserved.pop(block_id)
        if not committed:
            self.allocator.free(reservation.extents)
            self.namespace_bytes[block_id[0]] -= reservation.length
        return reservation

    def remove(self, block_id: BlockId) -> None:
        """Drop a block whose row left the index; its extents are freed once no reader holds them."""
        live = self.blocks.pop(block_id)
        self.touched.pop(block_id, None)
        self.namespace_bytes[block_id[0]] -= live.row.length
        live.removed = True
        if live.readers == 0:
            self.allocator.free(live.row.extents)

    def open_reader(self, block_id: BlockId, live: LiveBlock, now: float) -> None:
        live.readers += 1
        self.touched[block_id] = now

    def take_touched(self) -> dict[BlockId, float]:
        touched, self.touched = self.touched, {}
        return touched

    def close_reader(self, live: LiveBlock) -> None:
        live.readers -= 1
        if live.removed and live.readers == 0:
            self.allocator.free(live.row.extents)

    def per_namespace(self) -> dict[str, dict[str, int]]:
        by_namespace: dict[str, dict[str, int]] = {}
        for (namespace, _), live in self.blocks.items():
            entry = by_namespace.setdefault(namespace, {"blocks": 0, "bytes": 0})
            entry["blocks"] += 1
            entry["bytes"] += live.row.length
        return by_namespace
