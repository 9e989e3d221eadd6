"""Frame header, limits and signing of the memkv wire protocol (spec/wire.md, MKV-WIRE-*).

Pure: no sockets. A frame is a fixed 64-byte header, `meta_len` bytes of metadata and
`payload_len` bytes of bulk payload. The MAC is HMAC-SHA256 over the first 32 header bytes
and the metadata; the metadata carries each payload item's XXH3-64 checksum, which the
receiver verifies, so the payload is covered without hashing it twice (MKV-WIRE-010).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct

from ..errors import LimitExceeded, ProtocolError, Unauthenticated, UnsupportedVersion
from .opcodes import PAYLOAD_REQUESTS, PAYLOAD_RESPONSES, Opcode

MAGIC = b"MKVW"
VERSION_MAJOR = 1
VERSION_MINOR = 2
HEADER_SIZE = 64
SIGNED_HEADER_SIZE = 32
MAC_SIZE = 32
NO_MAC = bytes(MAC_SIZE)

FLAG_RESPONSE = 0x01
KNOWN_FLAGS = FLAG_RESPONSE

# magic, major, minor, opcode, flags, request_id, meta_len, status, reserved, payload_len, mac
_HEADER = struct.Struct("<4sBBBBQIHHQ32s")
assert _HEADER.size == HEADER_SIZE

_OPCODES = {int(op): op for op in Opcode}

MiB = 1024 * 1024
PRE_AUTH_MAX_META = 4096
DEFAULT_MAX_META = 16 * MiB + 64 * 1024
DEFAULT_MAX_PAYLOAD = 256 * MiB


@dataclasses.dataclass(frozen=True, slots=True)
class WireLimits:
    """Bounds checked on every header before anything is allocated (MKV-WIRE-007)."""

    max_meta: int = DEFAULT_MAX_META
    max_payload: int = DEFAULT_MAX_PAYLOAD
    max_items: int = 256

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


PRE_AUTH_LIMITS = WireLimits(max_meta=PRE_AUTH_MAX_META, max_payload=0, max_items=0)


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    opcode: Opcode
    request_id: int
    meta_len: int = 0
    payload_len: int = 0
    flags: int = 0
    status: int = 0
    mac: bytes = NO_MAC
    major: int = VERSION_MAJOR
    minor: int = VERSION_MINOR

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    def pack(self) -> bytes:
        return _HEADER.pack(MAGIC, self.major, self.minor, int(self.opcode), self.flags, self.request_id,
                            self.meta_len, self.status, 0, self.payload_len, self.mac)

    def signed_part(self) -> bytes:
        return self.pack()[:SIGNED_HEADER_SIZE]


def parse_header(raw: bytes | bytearray | memoryview, limits: WireLimits = WireLimits()) -> Header:
    """Decode and check a header; every bound is checked here, before any allocation.

    Raises ProtocolError (malformed), UnsupportedVersion (other major) or LimitExceeded.
    """
    if len(raw) != HEADER_SIZE:
        raise ProtocolError(f"frame header is {len(raw)} bytes, not {HEADER_SIZE}")
    magic, major, minor, opcode, flags, request_id, meta_len, status, reserved, payload_len, mac = (
        _HEADER.unpack(raw))
    if magic != MAGIC:
        raise ProtocolError(f"bad frame magic {bytes(magic)!r}")
    if major != VERSION_MAJOR:
        raise UnsupportedVersion(
            f"wire protocol {major}.{minor} is not supported; this build speaks {VERSION_MAJOR}.{VERSION_MINOR}")
    op = _OPCODES.get(opcode)
    if op is None:
        raise ProtocolError(f"unknown opcode {opcode:#04x}")
    if flags & ~KNOWN_FLAGS:
        raise ProtocolError(f"unknown flag bits {flags:#04x}")
    if reserved:
        raise ProtocolError("reserved header field is not zero")
    if meta_len > limits.max_meta:
        raise LimitExceeded(f"frame metadata of {meta_len} bytes exceeds the limit {limits.max_meta}")
    if payload_len:
        allowed = PAYLOAD_RESPONSES if flags & FLAG_RESPONSE else PAYLOAD_REQUESTS
        if op not in allowed:
            raise ProtocolError(f"{op.name} frames carry no payload")
        if payload_len > limits.max_payload:
            raise LimitExceeded(f"frame payload of {payload_len} bytes exceeds the limit {limits.max_payload}")
    return Header(op, request_id, meta_len, payload_len, flags, status, bytes(mac), major, minor)


# ---- signing (MKV-WIRE-010..012) ------------------------------------------------------------

def compute_mac(key: bytes, header: Header, meta: bytes | bytearray | memoryview) -> bytes:
    return hmac.digest(key, header.signed_part() + bytes(meta), hashlib.sha256)


def sign(key: bytes | None, header: Header, meta: bytes | bytearray | memoryview) -> Header:
    """The header with its MAC set; with no key (unauthenticated mode) the MAC stays zero."""
    if key is None:
        return header
    return Header(header.opcode, header.request_id, header.meta_len, header.payload_len, header.flags,
                  header.status, compute_mac(key, header, meta), header.major, header.minor)


def verify(key: bytes | None, header: Header, meta: bytes | bytearray | memoryview) -> None:
    if key is None:
        return
    if not hmac.compare_digest(compute_mac(key, header, meta), header.mac):
        raise Unauthenticated("frame signature does not verify")


CLIENT_TO_SERVER = b"c2s"
SERVER_TO_CLIENT = b"s2c"


def connection_key(secret: bytes, direction: bytes, client_nonce: bytes, server_nonce: bytes,
                   namespace: str, key_id: str) -> bytes:
    """Per-connection, per-direction signing key derived at HELLO (MKV-WIRE-011)."""
    material = b"|".join([b"memkv-wire-1", direction, client_nonce, server_nonce,
                          namespace.encode("utf-8"), key_id.encode("utf-8")])
    return hmac.digest(secret, material, hashlib.sha256)


# ---- whole frames (used by tests, vectors and small control messages) ------------------------

def encode_frame(header: Header, meta: bytes = b"", payload: bytes = b"", key: bytes | None = None) -> bytes:
    header = dataclasses.replace(header, meta_len=len(meta), payload_len=len(payload))
    return sign(key, header, meta).pack() + meta + payload


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    header: Header
    meta: bytes
    payload: bytes


def decode_frame(data: bytes, key: bytes | None = None, limits: WireLimits = WireLimits()) -> Frame:
    """Decode one complete frame held in memory, checking bounds, length and signature."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"frame is truncated: {len(data)} bytes, header needs {HEADER_SIZE}")
    header = parse_header(data[:HEADER_SIZE], limits)
    end_meta = HEADER_SIZE + header.meta_len
    end = end_meta + header.payload_len
    if len(data) < end:
        raise ProtocolError(f"frame is truncated: {len(data)} bytes of {end}")
    if len(data) > end:
        raise ProtocolError(f"{len(data) - end} bytes follow the frame")
    meta = data[HEADER_SIZE:end_meta]
    verify(key, header, meta)
    return Frame(header, meta, data[end_meta:end])
