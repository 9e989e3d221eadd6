"""The device's first 4 KiB: magic, format version and geometry (MKV-DUR-005)."""

from __future__ import annotations

import dataclasses
import struct
import time
import uuid
import zlib

from ..errors import Corrupted, InvalidArgument, UnsupportedVersion

MAGIC = b"MEMKVDEV"
FORMAT_VERSION = 1
SUPERBLOCK_SIZE = 4096
# The index keeps a copy of the header's first bytes under this name (`memkv fsck --repair`).
SUPERBLOCK_RECORD = "superblock"
SUPERBLOCK_RECORD_BYTES = 64

# magic 8s, version u16, flags u16, unit u32, size u64, data_offset u64, uuid 16s, created f64
_LAYOUT = struct.Struct("<8sHHIQQ16sd")
_CRC = struct.Struct("<I")


@dataclasses.dataclass(frozen=True, slots=True)
class Superblock:
    unit: int
    size: int
    data_offset: int
    store_id: bytes
    created: float
    version: int = FORMAT_VERSION

    @classmethod
    def new(cls, unit: int, size: int) -> Superblock:
        return cls(unit=unit, size=size, data_offset=max(unit, SUPERBLOCK_SIZE),
                   store_id=uuid.uuid4().bytes, created=time.time())

    def encode(self) -> bytes:
        body = _LAYOUT.pack(MAGIC, self.version, 0, self.unit, self.size, self.data_offset,
                            self.store_id, self.created)
        raw = body + _CRC.pack(zlib.crc32(body))
        return raw + bytes(SUPERBLOCK_SIZE - len(raw))

    @classmethod
    def decode(cls, raw: bytes) -> Superblock:
        if len(raw) < _LAYOUT.size + _CRC.size:
            raise Corrupted("superblock is truncated")
        magic, version, _flags, unit, size, data_offset, store_id, created = _LAYOUT.unpack_from(raw)
        if magic != MAGIC:
            raise InvalidArgument("device does not hold a memkv store (bad magic); to format it, destroying "
                                  "its contents, pass format_device (memkv serve --format-device)")
        if version > FORMAT_VERSION:
            raise UnsupportedVersion(
                f"store format version {version} is newer than this build's {FORMAT_VERSION}")
        (crc,) = _CRC.unpack_from(raw, _LAYOUT.size)
        if crc != zlib.crc32(raw[: _LAYOUT.size]):
            raise Corrupted("superblock checksum does not match")
        return cls(unit=unit, size=size, data_offset=data_offset, store_id=store_id,
                   created=created, version=version)
