"""Extent allocator: free space as sorted, coalesced runs of allocation units.

A block gets one extent when a run fits it (best fit), else a few of the largest runs.
The allocator keeps no state on disk: on open it is rebuilt from the committed blocks, so
space reserved by a writer that died before commit is free again (MKV-DUR-003).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable

MAX_EXTENTS_PER_BLOCK = 16


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Extent:
    offset: int
    length: int


class ExtentAllocator:
    def __init__(self, start: int, end: int, unit: int, used: Iterable[Extent] = ()) -> None:
        if start % unit or end <= start:
            raise ValueError("allocator range must be unit-aligned and non-empty")
        self.unit = unit
        self.start = start
        self.end = end - (end - start) % unit
        self._offsets: list[int] = []
        self._lengths: list[int] = []
        self.free_bytes = 0
        cursor = start
        for extent in sorted(used):
            if extent.offset > cursor:
                self._insert(cursor, extent.offset - cursor)
            cursor = max(cursor, extent.offset + extent.length)
        if cursor < self.end:
            self._insert(cursor, self.end - cursor)

    def copy(self) -> ExtentAllocator:
        """An independent allocator in the same state (to plan evictions without acting)."""
        twin = object.__new__(ExtentAllocator)
        twin.unit, twin.start, twin.end = self.unit, self.start, self.end
        twin._offsets, twin._lengths = list(self._offsets), list(self._lengths)
        twin.free_bytes = self.free_bytes
        return twin

    def runs(self) -> list[Extent]:
        """The free runs, sorted and coalesced."""
        return [Extent(o, n) for o, n in zip(self._offsets, self._lengths, strict=True)]

    @property
    def total_bytes(self) -> int:
        return self.end - self.start

    def rounded(self, size: int) -> int:
        return max(self.unit, (size + self.unit - 1) // self.unit * self.unit)

    def allocate(self, size: int) -> list[Extent] | None:
        """Reserve `size` bytes (rounded up to units), or None when it cannot fit."""
        need = self.rounded(size)
        if need > self.free_bytes:
            return None
        best = -1
        for i, length in enumerate(self._lengths):
            if length >= need and (best < 0 or length < self._lengths[best]):
                best = i
                if length == need:
                    break
        if best >= 0:
            return [self._take(best, need)]
        order = sorted(range(len(self._lengths)), key=lambda i: -self._lengths[i])
        chosen, total = [], 0
        for i in order[:MAX_EXTENTS_PER_BLOCK]:
            chosen.append(i)
            total += self._lengths[i]
            if total >= need:
                break
        if total < need:
            return None
        extents, remaining = [], need
        for i in chosen:
            take = min(self._lengths[i], remaining)
            extents.append(Extent(self._offsets[i], take))
            remaining -= take
        for extent in extents:
            self._remove_range(extent)
        return extents

    def _take(self, index: int, need: int) -> Extent:
        offset = self._offsets[index]
        extent = Extent(offset, need)
        self._remove_range(extent)
        return extent

    def _remove_range(self, extent: Extent) -> None:
        i = bisect.bisect_right(self._offsets, extent.offset) - 1
        offset, length = self._offsets[i], self._lengths[i]
        assert offset <= extent.offset and extent.offset + extent.length <= offset + length
        del self._offsets[i], self._lengths[i]
        self.free_bytes -= length
        if extent.offset > offset:
            self._insert(offset, extent.offset - offset)
        tail = offset + length - (extent.offset + extent.length)
        if tail:
            self._insert(extent.offset + extent.length, tail)

    def free(self, extents: Iterable[Extent]) -> None:
        """Return extents; freeing space that is already free raises ValueError, changing nothing."""
        extents = list(extents)
        for extent in extents:
            if (extent.length <= 0 or extent.offset < self.start or extent.offset + extent.length > self.end
                    or extent.offset % self.unit or extent.length % self.unit):
                raise ValueError(f"extent {extent} is not a unit-aligned range of this allocator")
        previous_end = self.start
        for extent in sorted(extents):
            if extent.offset < previous_end:
                raise ValueError(f"double free of extent at {extent.offset}")
            previous_end = extent.offset + extent.length
            self._check_free(extent.offset, extent.length)
        for extent in extents:
            self._insert(extent.offset, extent.length)

    def _check_free(self, offset: int, length: int) -> None:
        i = bisect.bisect_left(self._offsets, offset)
        if i > 0 and self._offsets[i - 1] + self._lengths[i - 1] > offset:
            raise ValueError(f"double free of extent at {offset}")
        if i < len(self._offsets) and offset + length > self._offsets[i]:
            raise ValueError(f"double free of extent at {offset}")

    def _insert(self, offset: int, length: int) -> None:
        i = bisect.bisect_left(self._offsets, offset)
        if i > 0 and self._offsets[i - 1] + self._lengths[i - 1] > offset:
            raise ValueError(f"double free of extent at {offset}")
        if i < len(self._offsets) and offset + length > self._offsets[i]:
            raise ValueError(f"double free of extent at {offset}")
        self.free_bytes += length
        if i < len(self._offsets) and offset + length == self._offsets[i]:
            length += self._lengths[i]
            del self._offsets[i], self._lengths[i]
        if i > 0 and self._offsets[i - 1] + self._lengths[i - 1] == offset:
            self._lengths[i - 1] += length
            return
        self._offsets.insert(i, offset)
        self._lengths.insert(i, length)
