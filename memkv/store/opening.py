"""Opening a store's files: its owner-only directory, the device with its superblock, and the
index bound to that device (MKV-DUR-005, MKV-DUR-010). What does not match is refused, never
repaired (open_checks.py)."""

from __future__ import annotations

import logging
import os

from ..buffers import aligned_buffer
from ..errors import InvalidArgument, MemkvError
from .device import Device
from .index import Index
from .open_checks import DamagedStore, check_device_length, refuse_zeroed_header
from .superblock import MAGIC, SUPERBLOCK_RECORD, SUPERBLOCK_RECORD_BYTES, SUPERBLOCK_SIZE, Superblock

log = logging.getLogger(__name__)


def make_private_dirs(path: str) -> None:
    """Create `path` and its missing parents readable by their owner only (MKV-SEC-004)."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue


def open_device(directory: str, device_path: str | None, capacity: int, unit: int, format_device: bool,
                io: str | None, index: Index) -> tuple[Device, Superblock, bool]:
    """The device, its superblock, and whether it was formatted just now."""
    if unit % 4096 or unit <= 0:
        raise InvalidArgument("allocation unit must be a positive multiple of 4096")
    path = device_path or os.path.join(directory, "device.img")
    is_new_file = not os.path.exists(path)
    if is_new_file and capacity < 2 * unit + SUPERBLOCK_SIZE:
        raise InvalidArgument(f"capacity {capacity} is too small for allocation unit {unit}")
    device = Device(path, size=capacity, create=device_path is None, io=io)
    header = aligned_buffer(SUPERBLOCK_SIZE)
    try:
        check_device_length(device.path, device.size, SUPERBLOCK_SIZE, directory)
        device.read_into(0, header)
        indexed = index.block_count()
        # An all-zero header on our own device file with an empty index: a process died
        # between creating the file and writing its superblock. Nothing was ever stored there.
        # With blocks in the index the header was destroyed: refuse (MKV-DUR-010).
        zeroed = header == bytes(SUPERBLOCK_SIZE)
        never_formatted = device_path is None and zeroed and indexed == 0
        # format_device formats only a device that holds no memkv store: a restart with the
        # same setting keeps the blocks; reformatting a store is a deliberate wipe (dd).
        unformatted = bytes(header[: len(MAGIC)]) != MAGIC
        if is_new_file or never_formatted or (format_device and unformatted):
            superblock = Superblock.new(unit, device.size)
            header[:] = superblock.encode()
            device.write(0, header)
            device.sync()
            return device, superblock, True
        if zeroed:
            refuse_zeroed_header(device.path, indexed, directory)
        try:
            superblock = Superblock.decode(bytes(header))
        except MemkvError as exc:
            raise type(exc)(f"device {device.path}: {exc.message}; nothing was modified; "
                            f"inspect it with `memkv fsck {directory}`") from None
        check_device_length(device.path, device.size, superblock.size, directory)
        return device, superblock, False
    except BaseException:
        device.close()
        raise


def bind_index(directory: str, index: Index, superblock: Superblock, formatted: bool, device_path: str) -> None:
    """Tie the index to this device. An index of another store that lists blocks is refused
    (MKV-DUR-010) unless the device was just formatted on purpose, which forgets them."""
    store_id = superblock.store_id.hex()
    bound = index.get_meta("store_id")
    if bound == store_id:
        if index.get_meta(SUPERBLOCK_RECORD) is None:
            index.set_meta(SUPERBLOCK_RECORD, superblock.encode()[:SUPERBLOCK_RECORD_BYTES].hex())
        return
    if bound is not None:
        count = index.block_count()
        if count and not formatted:
            raise DamagedStore(
                f"index {index.path} lists {count} blocks of store {bound} but device {device_path} "
                f"holds store {store_id}; nothing was modified. Inspect with `memkv fsck "
                f"{directory}`; to keep the device's store, move the index away")
        if count:
            log.warning("device %s was formatted: forgetting the %d blocks index %s listed",
                        device_path, count, index.path)
        index.clear_blocks()
    elif not formatted:
        log.warning("device %s holds a memkv store, but the data directory %s has no index for it: "
                    "blocks stored there before are not reachable (reuse the --data directory it was "
                    "created with to keep them)", device_path, os.path.dirname(index.path))
    index.set_meta("store_id", store_id)
    # A copy of the header, from which `memkv fsck --repair` can rewrite a zeroed one.
    index.set_meta(SUPERBLOCK_RECORD, superblock.encode()[:SUPERBLOCK_RECORD_BYTES].hex())
