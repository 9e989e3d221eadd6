"""The raw device path of `memkv bench`: a preallocated file beside the store, written and read
with os.pwritev/os.preadv, one call per block, from the bench's page-aligned buffers.

It opens the file the way the store opens its device (memkv.store.device.open_direct: O_DIRECT
where the filesystem takes it, buffered on tmpfs), so the two paths meet the same device in the
same mode.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from ..store.device import open_direct, preallocate


class RawFile:
    """A file of `size` bytes at `path` (created, must not exist), open for direct or buffered I/O."""

    def __init__(self, path: str, size: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            preallocate(fd, size)
        finally:
            os.close(fd)
        self.path = path
        self.fd, self.direct = open_direct(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))

    def describe(self) -> str:
        return ("os.pwritev/os.preadv on a preallocated file in the same directory"
                + (", O_DIRECT" if self.direct else ", buffered"))

    def write(self, buf: memoryview, offset: int) -> None:
        _all(os.pwritev, self.fd, buf, offset)

    def read(self, buf: memoryview, offset: int) -> None:
        _all(os.preadv, self.fd, buf, offset)

    def close(self) -> None:
        os.close(self.fd)


def _all(fn: Callable[[int, Sequence[memoryview], int], int], fd: int, buf: memoryview, offset: int) -> None:
    done = 0
    while done < len(buf):
        n = fn(fd, [buf[done:]], offset + done)
        if n <= 0:
            raise OSError(f"raw I/O moved no bytes at offset {offset + done}")
        done += n
