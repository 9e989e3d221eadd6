"""Which blocks to evict, and in what order (MKV-CAP-006..009, MKV-NS-010).

Blocks leave in chain order (a chain's tail before the block it is chained after, least recently
used chains first). Victims are chosen on a copy of the allocator first, so a put that cannot
fit evicts nothing (MKV-CAP-003), even when free space is too fragmented for the extent limit.
Pinned, leased and blocks being read are never chosen. Not thread-safe on its own.
"""

from __future__ import annotations

from ..errors import CapacityExceeded
from ..eviction import ChainOrder
from ..keys import ROOT_PARENT
from .index import BlockRow
from .protection import PinsAndLeases
from .resident import BlockId, ResidentBlocks


def parent_of(row: BlockRow) -> BlockId | None:
    """The block `row` is chained after (MKV-CAP-006), None for the head of a chain."""
    parent = row.meta.parent
    return None if parent == ROOT_PARENT or parent == row.key else (row.namespace, parent)


class EvictionPlanner:
    def __init__(self, resident: ResidentBlocks, protection: PinsAndLeases) -> None:
        self.resident, self.protection = resident, protection
        self.order: ChainOrder[BlockId] = ChainOrder()
        for block_id, live in resident.blocks.items():
            self.order.add(block_id, parent_of(live.row))

    def add(self, block_id: BlockId, row: BlockRow) -> None:
        self.order.add(block_id, parent_of(row))

    def use(self, block_id: BlockId) -> None:
        self.order.use(block_id)

    def discard(self, block_id: BlockId) -> None:
        self.order.discard(block_id)

    def _kept(self, block_id: BlockId) -> bool:
        return self.protection.protects(block_id) or self.resident.being_read(block_id)

    def victims_for_space(self, size: int) -> list[BlockId]:
        """The fewest blocks in eviction order whose removal lets `size` bytes be allocated."""
        allocator = self.resident.allocator
        need = allocator.rounded(size)
        trial = allocator.copy()
        victims: list[BlockId] = []
        for block_id in self.order.candidates(self._kept):
            trial.free(self.resident.blocks[block_id].row.extents)
            victims.append(block_id)
            if trial.free_bytes >= need and trial.allocate(size) is not None:
                return victims
        raise CapacityExceeded(
            f"block of {size} bytes does not fit: {allocator.free_bytes} bytes free, "
            f"{trial.free_bytes - allocator.free_bytes} evictable; pinned, leased and "
            f"blocks being read are never evicted")

    def victims_in_namespace(self, namespace: str, excess: float, quota_bytes: int | None) -> list[BlockId]:
        """The namespace's own blocks, in eviction order, that free `excess` bytes of its quota."""
        victims: list[BlockId] = []
        for block_id in self.order.candidates(self._kept):
            if excess <= 0:
                break
            if block_id[0] != namespace:
                continue
            victims.append(block_id)
            excess -= self.resident.length(block_id)
        if excess > 0:
            raise CapacityExceeded(f"namespace {namespace} is at its byte quota ({quota_bytes}) "
                                   f"and cannot evict enough of its own unpinned, unleased blocks")
        return victims
