"""Caller memory: Python buffers and raw (address, length) descriptors, and aligned allocation.

Transports accept either form so that a NIXL-registered region, a numpy array, a torch
tensor's storage or a bytearray all reach the data path without a copy.
"""

from __future__ import annotations

import ctypes
import dataclasses
import mmap

from typing_extensions import Buffer

from .errors import InvalidArgument

PAGE = mmap.PAGESIZE


@dataclasses.dataclass(frozen=True, slots=True)
class MemoryRegion:
    """A region of this process's memory given by address and length (a NIXL-style descriptor).

    The caller guarantees the region stays valid until the operation using it completes.
    `device_id` is 0 for host DRAM; other values name an accelerator for transports that can
    reach it.
    """

    address: int
    length: int
    device_id: int = 0

    def view(self) -> memoryview:
        if self.device_id != 0:
            raise InvalidArgument("only host memory (device_id 0) can be viewed from Python")
        if self.address <= 0 or self.length < 0:
            raise InvalidArgument("memory region needs a positive address and non-negative length")
        array = (ctypes.c_char * self.length).from_address(self.address)
        return memoryview(array).cast("B")


BufferLike = Buffer | MemoryRegion


def readable_view(buffer: BufferLike) -> memoryview:
    """A flat byte view of `buffer`; no copy."""
    if isinstance(buffer, MemoryRegion):
        return buffer.view()
    try:
        view = memoryview(buffer)
    except TypeError as exc:
        raise InvalidArgument(f"payload must be a buffer or MemoryRegion, got {type(buffer).__name__}") from exc
    if not view.contiguous:
        raise InvalidArgument("payload buffer must be contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def writable_view(buffer: BufferLike) -> memoryview:
    """A flat, writable byte view of `buffer`; no copy."""
    view = readable_view(buffer)
    if view.readonly:
        raise InvalidArgument("destination buffer is read-only")
    return view


def address_of(view: memoryview) -> int:
    """Address of the first byte of a buffer (for alignment checks and descriptors)."""
    if view.readonly:
        # ctypes refuses read-only buffers; numpy reads the pointer without copying.
        import numpy as np

        return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def aligned_buffer(size: int) -> memoryview:
    """Zeroed, page-aligned, writable memory (anonymous mmap): O_DIRECT and NIXL friendly."""
    if size <= 0:
        raise InvalidArgument("buffer size must be positive")
    return memoryview(mmap.mmap(-1, size))


def advance(views: list[memoryview], sent: int) -> None:
    """Drop `sent` bytes from the front of `views` in place (after a partial sendmsg)."""
    while sent and views:
        if sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        else:
            views[0] = views[0][sent:]
            sent = 0
