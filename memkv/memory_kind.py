"""Where a region of memory lives: the memory-kind byte of NIXL descriptors (spec/wire.md section 8).

The one spelling of the kinds: the wire carries the value, NIXL takes the name ("DRAM", "VRAM").
"""

from __future__ import annotations

import enum

from .errors import InvalidArgument


class MemoryKind(enum.IntEnum):
    DRAM = 0  # host memory
    VRAM = 1  # accelerator memory (the descriptor's device id names the device)

    @classmethod
    def of(cls, value: int) -> MemoryKind:
        """The kind a descriptor's byte names; InvalidArgument for an unknown one."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidArgument(f"unknown NIXL memory kind {value}") from None


__all__ = ["MemoryKind"]
