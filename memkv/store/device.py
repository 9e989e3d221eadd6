"""The block device under the store: a preallocated file or a real block device.

Opened with O_DIRECT where the filesystem supports it (ext4, xfs, raw NVMe) and buffered
where it does not (tmpfs). With O_DIRECT, caller memory that is page-aligned goes straight
to the device; anything else passes through a per-thread aligned bounce buffer.

This is the one place where an OSError of a read, write or fdatasync becomes a spec error
(DeviceFailure, UNAVAILABLE): the engine above sees only spec errors.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..buffers import PAGE, address_of, aligned_buffer
from ..errors import CapacityExceeded, InvalidArgument, Unavailable
from ..units import format_size
from .io_engines import IOEngine, select_engine
from .storage_errors import describe

ALIGN = 4096
T = TypeVar("T")
BOUNCE_SIZE = 4 * 1024 * 1024


def _round_up(value: int, align: int = ALIGN) -> int:
    return (value + align - 1) // align * align


# Filesystems whose files live in memory: the store never opens these with O_DIRECT (MEMKV_DIRECT).
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "hugetlbfs"})


def mount_of(path: str, mounts: str = "/proc/self/mounts") -> tuple[str, str] | None:
    """(mount point, filesystem type) of the mount holding `path`, from a mounts table; None when unknown."""
    best: tuple[str, str] | None = None
    try:
        with open(mounts, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and (best is None or len(mount) >= len(best[0])):
            best = (mount, fields[2])
    return best


def in_memory_fs(path: str) -> bool:
    """Whether `path` lies on a memory filesystem (MEMORY_FILESYSTEMS; False when unknown)."""
    mount = mount_of(os.path.realpath(path))
    return mount is not None and mount[1] in MEMORY_FILESYSTEMS


def open_direct(path: str, flags: int) -> tuple[int, bool]:
    """Open with O_DIRECT when the filesystem accepts it and an aligned read works.

    Never on a memory filesystem (tmpfs, ramfs, hugetlbfs): there the page cache is the storage,
    O_DIRECT only adds a copy, and a buffered device can be memory-mapped (Device.mapping).
    """
    direct_flag = getattr(os, "O_DIRECT", 0)
    if direct_flag and os.environ.get("MEMKV_DIRECT", "1") != "0" and not in_memory_fs(path):
        try:
            fd = os.open(path, flags | direct_flag)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
        else:
            probe = aligned_buffer(ALIGN)
            try:
                os.preadv(fd, [probe], 0)
                return fd, True
            except OSError:
                os.close(fd)
            finally:
                probe.release()
    return os.open(path, flags), False


class DeviceFailure(Unavailable):
    """A read, write or fdatasync of the device failed; `detail` names the OSError."""

    def __init__(self, doing: str, exc: OSError) -> None:
        self.detail = describe(exc)
        super().__init__(f"{doing} failed, nothing was changed: {self.detail}")


class Device:
    """Positional, aligned I/O on one file or block device."""

    def __init__(
        self, path: str, size: int | None = None, create: bool = False, io: str | None = None
    ) -> None:
        self.path = path
        exists = os.path.exists(path)
        if not exists and not create:
            raise InvalidArgument(f"device {path} does not exist")
        self.is_block_device = exists and stat.S_ISBLK(os.stat(path).st_mode)
        if not exists:
            if size is None or size <= 0:
                raise InvalidArgument("a new device file needs a positive size")
            create_device_file(path, size)
        self.fd, self.direct = open_direct(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        self.size = os.lseek(self.fd, 0, os.SEEK_END)
        self._local = threading.local()
        self.engine: IOEngine = select_engine(io)  # io: uring | threads | auto; None reads MEMKV_IO
        self._map: mmap.mmap | None = None
        self._map_lock = threading.Lock()

    # ---- memory mapping (buffered devices only) ---------------------------------------------
    def mapping(self) -> memoryview | None:
        """The whole device as writable shared memory, or None with O_DIRECT (or MEMKV_MMAP=0).

        On a buffered device (tmpfs, or MEMKV_DIRECT=0) a streamed put receives straight into
        the page cache and a streamed get sends straight from it, with no copy through a buffer;
        fdatasync (sync) writes mapped changes back like pwrite ones.
        """
        mapped = self._map
        if mapped is not None:  # once mapped, the checks below have passed
            return memoryview(mapped)
        if self.direct or os.environ.get("MEMKV_MMAP", "1") == "0" or self.size <= 0:
            return None
        if not self.is_block_device and os.fstat(self.fd).st_blocks * 512 < self.size:
            # A sparse file: a store into a hole of a full filesystem would be SIGBUS through a
            # mapping, where pwrite answers ENOSPC (UNAVAILABLE, MKV-ERR-010). Never map it.
            return None
        with self._map_lock:
            if self._map is None:
                self._map = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            return memoryview(self._map)

    # ---- bounce buffers ---------------------------------------------------------------------
    def _bounce(self) -> memoryview:
        buf: memoryview | None = getattr(self._local, "bounce", None)
        if buf is None:
            buf = aligned_buffer(BOUNCE_SIZE)
            self._local.bounce = buf
        return buf

    def _can_go_direct(self, view: memoryview) -> bool:
        return not self.direct or (len(view) > 0 and address_of(view) % PAGE == 0)

    # ---- I/O --------------------------------------------------------------------------------
    def write(self, offset: int, data: memoryview) -> None:
        """Write `data` at an aligned `offset`; the device tail past len(data) may be padded."""
        self._check_range(offset, _round_up(len(data)))
        try:
            self._write(offset, data)
        except OSError as exc:
            raise DeviceFailure("device I/O", exc) from None

    def writes_overlap(self, pieces: Sequence[tuple[int, memoryview]]) -> bool:
        """Whether write_during runs its callable while these pieces are written, in the calling
        thread: an engine that can (io_uring) and pieces that need no bounce buffer."""
        return self.engine.overlaps_writes and all(self._goes_whole(view) for _, view in pieces)

    def write_during(self, pieces: Sequence[tuple[int, memoryview]], during: Callable[[], T]) -> T:
        """Write each (aligned offset, data) piece, as `write` does, and return `during()`, run
        while the device writes where `writes_overlap`, after the writes otherwise."""
        for offset, data in pieces:
            self._check_range(offset, _round_up(len(data)))
        try:
            if self.writes_overlap(pieces):
                return self.engine.pwrite_during(self.fd, [offset for offset, _ in pieces],
                                                 [data for _, data in pieces], during)
            for offset, data in pieces:
                self._write(offset, data)
        except OSError as exc:
            raise DeviceFailure("device I/O", exc) from None
        return during()

    def _goes_whole(self, view: memoryview) -> bool:
        """Whether `view` is written as it is, without a bounce buffer."""
        return not self.direct or (len(view) % ALIGN == 0 and self._can_go_direct(view))

    def _write(self, offset: int, data: memoryview) -> None:
        if not self.direct:
            self._pwrite_all(offset, data)
            return
        whole = len(data) - len(data) % ALIGN
        if whole and self._can_go_direct(data):
            self._pwrite_all(offset, data[:whole])
            done = whole
        else:
            done = 0
        bounce = self._bounce()
        while done < len(data):
            chunk = min(BOUNCE_SIZE, len(data) - done)
            bounce[:chunk] = data[done : done + chunk]
            padded = _round_up(chunk)
            if padded > chunk:
                bounce[chunk:padded] = bytes(padded - chunk)
            self._pwrite_all(offset + done, bounce[:padded])
            done += chunk

    def read_into(self, offset: int, dest: memoryview) -> None:
        """Fill `dest` from the device at an aligned `offset`."""
        self._check_range(offset, _round_up(len(dest)))
        try:
            self._read_into(offset, dest)
        except OSError as exc:
            raise DeviceFailure("device I/O", exc) from None

    def _read_into(self, offset: int, dest: memoryview) -> None:
        if not self.direct:
            self._pread_all(offset, dest)
            return
        whole = len(dest) - len(dest) % ALIGN
        if whole and self._can_go_direct(dest):
            self._pread_all(offset, dest[:whole])
            done = whole
        else:
            done = 0
        bounce = self._bounce()
        while done < len(dest):
            chunk = min(BOUNCE_SIZE, len(dest) - done)
            self._pread_all(offset + done, bounce[: _round_up(chunk)])
            dest[done : done + chunk] = bounce[:chunk]
            done += chunk

    def _pwrite_all(self, offset: int, data: memoryview) -> None:
        self.engine.pwrite(self.fd, offset, data)  # whole buffer, or OSError

    def _pread_all(self, offset: int, dest: memoryview) -> None:
        got = self.engine.pread_into(self.fd, offset, dest)
        if got != len(dest):
            raise Unavailable(f"device {self.path} returned no bytes at offset {offset + got}")

    def _check_range(self, offset: int, length: int) -> None:
        if offset % ALIGN or offset < 0 or offset + length > self.size:
            raise InvalidArgument(f"I/O at {offset}+{length} is unaligned or beyond device size {self.size}")

    def sync(self) -> None:
        """fdatasync; a failure leaves durability unknown (the engine then stops taking writes)."""
        try:
            self._fdatasync()
        except OSError as exc:
            raise DeviceFailure(f"fdatasync of device {self.path}", exc) from None

    def _fdatasync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view is still alive somewhere; the mapping goes with it
                pass
            self._map = None
        self.engine.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def create_device_file(path: str, size: int) -> None:
    """Create and preallocate a device file, or leave nothing behind (MKV-CAP-030)."""
    folder = os.path.dirname(os.path.abspath(path))
    if size > _free_bytes(folder):
        raise _does_not_fit(size, folder)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        preallocate(fd, size)
    except BaseException as exc:
        os.close(fd)
        os.unlink(path)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # another writer took the space meanwhile
            raise _does_not_fit(size, folder) from None
        raise
    os.close(fd)


def _free_bytes(folder: str) -> int:
    vfs = os.statvfs(folder)
    return vfs.f_bavail * vfs.f_frsize


def _does_not_fit(size: int, folder: str) -> CapacityExceeded:
    free = _free_bytes(folder)
    return CapacityExceeded(f"capacity {format_size(size)} ({size} bytes) does not fit in the {format_size(free)} "
                            f"({free} bytes) free on {folder}; choose a smaller capacity")


def preallocate(fd: int, size: int) -> None:
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(fd, size)
