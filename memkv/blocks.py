"""Blocks: metadata, limits and their canonical binary encoding (spec section "Blocks").

Pure: no I/O. The encoding of `BlockMeta` is shared by the on-disk index and the wire.
"""

from __future__ import annotations

import dataclasses
import struct

from .errors import BlockTooLarge, InvalidArgument, LimitExceeded, UnsupportedVersion
from .keys import KEY_SIZE, NO_FINGERPRINT, ROOT_PARENT, check_fingerprint, check_key

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

MAX_DTYPE_LEN = 16
MAX_USER_META = 1024
META_VERSION = 1

# version u8, flags u8, token_count u32, layer_first u16, layer_last u16, tp_rank u16,
# tp_size u16, dtype_len u8, user_len u16, fingerprint 16s, parent 16s
_META_HEADER = struct.Struct("<BBIHHHHBH16s16s")


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Bounds a target enforces before allocating anything (MKV-BLK-002, MKV-CAP-004)."""

    key_size: int = KEY_SIZE
    min_block_size: int = 1
    max_block_size: int = 64 * MiB
    max_batch: int = 256
    max_user_meta: int = MAX_USER_META
    max_lease_ms: int = 600_000
    max_session_blocks: int = 1_000_000

    def check_payload_size(self, size: int) -> None:
        if size < self.min_block_size:
            raise InvalidArgument(f"payload of {size} bytes is below the minimum {self.min_block_size}")
        if size > self.max_block_size:
            raise BlockTooLarge(f"payload of {size} bytes exceeds the maximum {self.max_block_size}")

    def check_batch(self, count: int) -> None:
        if count > self.max_batch:
            raise LimitExceeded(f"batch of {count} items exceeds the maximum {self.max_batch}")

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class BlockMeta:
    """What a block says about itself (MKV-BLK-003). All fields are optional but bounded."""

    fingerprint: bytes = NO_FINGERPRINT
    parent: bytes = ROOT_PARENT
    dtype: str = ""
    token_count: int = 0
    layer_first: int = 0
    layer_last: int = 0
    tp_rank: int = 0
    tp_size: int = 1
    user: bytes = b""

    def validate(self, limits: Limits = Limits()) -> None:
        check_fingerprint(self.fingerprint)
        check_key(self.parent)
        if len(self.dtype.encode("utf-8")) > MAX_DTYPE_LEN:
            raise InvalidArgument(f"dtype is longer than {MAX_DTYPE_LEN} bytes")
        if len(self.user) > limits.max_user_meta:
            raise LimitExceeded(f"user metadata exceeds {limits.max_user_meta} bytes")
        if not 0 <= self.token_count < 2**32:
            raise InvalidArgument("token_count must fit in 32 bits")
        for name in ("layer_first", "layer_last", "tp_rank", "tp_size"):
            if not 0 <= getattr(self, name) < 2**16:
                raise InvalidArgument(f"{name} must fit in 16 bits")
        if self.layer_last < self.layer_first:
            raise InvalidArgument("layer_last is below layer_first")
        if self.tp_size < 1 or self.tp_rank >= self.tp_size:
            raise InvalidArgument("tp_rank must be below tp_size, and tp_size at least 1")

    def encode(self) -> bytes:
        dtype = self.dtype.encode("utf-8")
        header = _META_HEADER.pack(
            META_VERSION, 0, self.token_count, self.layer_first, self.layer_last,
            self.tp_rank, self.tp_size, len(dtype), len(self.user), self.fingerprint, self.parent,
        )
        return header + dtype + self.user

    @classmethod
    def decode(cls, raw: bytes, limits: Limits = Limits()) -> BlockMeta:
        if len(raw) < _META_HEADER.size:
            raise InvalidArgument("block metadata is truncated")
        (version, _flags, tokens, first, last, rank, size, dtype_len, user_len,
         fingerprint, parent) = _META_HEADER.unpack_from(raw)
        if version > META_VERSION:
            raise UnsupportedVersion(f"block metadata version {version} is newer than {META_VERSION}")
        if version != META_VERSION:
            raise InvalidArgument(f"block metadata version {version} is not {META_VERSION}")
        if dtype_len > MAX_DTYPE_LEN or user_len > limits.max_user_meta:
            raise LimitExceeded("block metadata field exceeds its bound")
        if len(raw) != _META_HEADER.size + dtype_len + user_len:
            raise InvalidArgument("block metadata length does not match its header")
        body = raw[_META_HEADER.size :]
        try:
            dtype = body[:dtype_len].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgument("block metadata dtype is not UTF-8") from exc
        meta = cls(
            fingerprint=bytes(fingerprint), parent=bytes(parent),
            dtype=dtype, token_count=tokens, layer_first=first,
            layer_last=last, tp_rank=rank, tp_size=size, user=bytes(body[dtype_len:]),
        )
        meta.validate(limits)
        return meta


