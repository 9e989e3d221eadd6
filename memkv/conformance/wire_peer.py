"""A memkv wire peer written from spec/wire.md alone, for checks over a target's socket.

It deliberately does not import memkv.wire: a check that used the reference codec would certify
the codec against itself. Only the standard library and xxhash (the spec's checksum) are used.
Frames are built field by field (section 1), metadata as JSON plus item records (MKV-WIRE-006),
MACs and per-direction keys as MKV-WIRE-010 and MKV-WIRE-011 state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import socket
import struct
import time
from typing import Any

HEADER = struct.Struct("<4sBBBBQIHHQ32s")  # section 1: magic .. mac, 64 bytes
HEADER_SIZE = 64
MAGIC = b"MKVW"
RESPONSE = 0x01
# Section 2 of spec/wire.md.
OPCODES = {"HELLO": 0x01, "PUT": 0x02, "GET": 0x03, "STAT": 0x04, "EXISTS": 0x05, "LOOKUP": 0x06,
           "RELEASE_LEASE": 0x07, "DELETE": 0x08, "CHILDREN": 0x09, "SESSION_OPEN": 0x10, "SESSION_APPEND": 0x11,
           "SESSION_SUSPEND": 0x12, "SESSION_RESUME": 0x13, "SESSION_FORK": 0x14, "SESSION_CLOSE": 0x15,
           "SESSION_INFO": 0x16,
           "INVALIDATE_NAMESPACE": 0x24, "CAPABILITIES": 0x30, "STATS": 0x31, "PING": 0x32, "GOODBYE": 0x33,
           "NIXL_HELLO": 0x40, "ERROR": 0x7F}
# The error codes of spec/memkv-spec.md section 10.
CODES = {name: number for number, name in enumerate((
    "OK", "NOT_FOUND", "INVALID_KEY", "INVALID_ARGUMENT", "BLOCK_TOO_LARGE", "CHECKSUM_MISMATCH", "CAPACITY_EXCEEDED",
    "KEY_CONFLICT", "UNKNOWN_SESSION", "INVALID_SESSION_STATE", "SESSION_EXPIRED", "UNKNOWN_LEASE",
    "NAMESPACE_NOT_FOUND", "UNAUTHENTICATED", "PERMISSION_DENIED", "UNSUPPORTED_VERSION", "STORE_LOCKED",
    "BUFFER_TOO_SMALL", "LIMIT_EXCEEDED", "PROTOCOL_ERROR", "TIMEOUT", "UNAVAILABLE", "CORRUPTED", "UNSUPPORTED",
    "INTERNAL"))}
NAMES = {v: k for k, v in CODES.items()}
MAX_READ = 64 * 1024 * 1024  # this peer never accepts more than this from a target, before allocating
# Block metadata of spec/memkv-spec.md section 3 with every field at its default: version 1, flags 0,
# no tokens or layers, tp_rank 0 of tp_size 1, no dtype or user bytes, zero fingerprint and parent.
DEFAULT_BLOCK_META = struct.pack("<BBIHHHHBH16s16s", 1, 0, 0, 0, 0, 0, 1, 0, 0, bytes(16), bytes(16))


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def metadata(args: dict[str, Any], items: bytes = b"", count: int = 0) -> bytes:
    raw = json.dumps(args, separators=(",", ":")).encode("utf-8")
    return u32(len(raw)) + raw + u32(count) + items


def header(opcode: int, request_id: int, meta_len: int, payload_len: int = 0, *, flags: int = 0,
           status: int = 0, major: int = 1, minor: int = 1, reserved: int = 0, mac: bytes = bytes(32),
           magic: bytes = MAGIC) -> bytes:
    return HEADER.pack(magic, major, minor, opcode, flags, request_id, meta_len, status, reserved, payload_len, mac)


def sign(key: bytes | None, head: bytes, meta: bytes) -> bytes:
    """The header with its MAC over bytes 0..31 and the metadata (zeros without a key)."""
    if key is None:
        return head
    return head[:32] + hmac.digest(key, head[:32] + meta, hashlib.sha256)


def derive(secret: bytes, direction: bytes, client_nonce: bytes, server_nonce: bytes, namespace: str,
           key_id: str) -> bytes:
    material = b"|".join([b"memkv-wire-1", direction, client_nonce, server_nonce, namespace.encode("utf-8"),
                          key_id.encode("utf-8")])
    return hmac.digest(secret, material, hashlib.sha256)


def parse_secret(text: str) -> bytes:
    import base64

    return base64.b64decode(text[7:]) if text.startswith("base64:") else bytes.fromhex(text)


@dataclasses.dataclass
class Frame:
    head: bytes
    meta: bytes
    payload: bytes

    @property
    def fields(self) -> tuple[Any, ...]:
        return HEADER.unpack(self.head)

    @property
    def opcode(self) -> int:
        return int(self.fields[3])

    @property
    def status(self) -> int:
        return int(self.fields[7])

    @property
    def request_id(self) -> int:
        return int(self.fields[5])

    @property
    def args(self) -> dict[str, Any]:
        (size,) = struct.unpack_from("<I", self.meta)
        parsed = json.loads(self.meta[4 : 4 + size])
        return parsed if isinstance(parsed, dict) else {}

    @property
    def items(self) -> tuple[int, bytes]:
        (size,) = struct.unpack_from("<I", self.meta)
        (count,) = struct.unpack_from("<I", self.meta, 4 + size)
        return count, self.meta[8 + size:]

    @property
    def error(self) -> str:
        """The error's name ("" for a normal answer); an unknown code reads as its number."""
        if self.opcode != OPCODES["ERROR"]:
            return ""
        return NAMES.get(self.status, str(self.status))

    def verifies(self, key: bytes | None) -> bool:
        return key is None or hmac.compare_digest(sign(key, self.head, self.meta)[32:], self.head[32:])


class Peer:
    """One connection to a target's wire address; every read is bounded by a deadline."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0, minor: int = 1) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self.minor = minor  # the wire minor version this peer speaks (MKV-WIRE-005)
        self.tx: bytes | None = None
        self.rx: bytes | None = None
        self.request_id = 0
        self.hello_answer: Frame | None = None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _exact(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            piece = self.sock.recv(min(left, 1 << 20))
            if not piece:
                raise ConnectionError("the target closed the connection")
            chunks.append(piece)
            left -= len(piece)
        return b"".join(chunks)

    def read(self) -> Frame:
        head = self._exact(HEADER_SIZE)
        fields = HEADER.unpack(head)
        meta_len, payload_len = fields[6], fields[9]
        if meta_len > MAX_READ or payload_len > MAX_READ:
            raise ConnectionError(f"the target announced {meta_len} + {payload_len} bytes")
        return Frame(head, self._exact(meta_len), self._exact(payload_len))

    def closed(self, wait: float = 5.0) -> bool:
        """True when the target closed the connection (nothing more arrives)."""
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, TimeoutError):
            return True
        except OSError:
            return True

    def hello_frame(self, namespace: str, key_id: str | None, secret: bytes | None, *,
                    nonce: bytes | None = None, timestamp_ms: int | None = None, **extra: Any) -> tuple[bytes, bytes]:
        nonce = nonce or os.urandom(16)
        args = {"namespace": namespace, "key_id": key_id, "client_nonce": nonce.hex(),
                "timestamp_ms": int(time.time() * 1000) if timestamp_ms is None else timestamp_ms, **extra}
        meta = metadata(args)
        return sign(secret, header(OPCODES["HELLO"], 0, len(meta), minor=self.minor), meta) + meta, nonce

    def hello(self, namespace: str, credential: str | None, **extra: Any) -> Frame:
        """Send HELLO; on success derive both keys and check that the answer verifies with s2c."""
        key_id, secret = (None, None)
        if credential is not None:
            key_id, _, text = credential.partition(":")
            secret = parse_secret(text)
        frame, nonce = self.hello_frame(namespace, key_id, secret, **extra)
        self.send(frame)
        answer = self.read()
        self.hello_answer = answer
        if answer.opcode == OPCODES["HELLO"] and secret is not None and key_id is not None:
            server_nonce = bytes.fromhex(answer.args["server_nonce"])
            self.tx = derive(secret, b"c2s", nonce, server_nonce, namespace, key_id)
            self.rx = derive(secret, b"s2c", nonce, server_nonce, namespace, key_id)
            if not answer.verifies(self.rx):
                raise ConnectionError("the HELLO answer does not verify with the server-to-client key")
        return answer

    def frame(self, opcode: str | int, args: dict[str, Any] | None = None, items: bytes = b"", count: int = 0,
              payload: bytes = b"", request_id: int | None = None, key: bytes | bool | None = True) -> bytes:
        """A signed request (key=True: this connection's c2s key; None/False: unsigned)."""
        if request_id is None:
            self.request_id += 1
            request_id = self.request_id
        code = OPCODES[opcode] if isinstance(opcode, str) else opcode
        meta = metadata(args or {}, items, count)
        signing = self.tx if key is True else (key or None)
        return sign(signing, header(code, request_id, len(meta), len(payload), minor=self.minor), meta) + meta + payload

    def call(self, opcode: str | int, args: dict[str, Any] | None = None, items: bytes = b"", count: int = 0,
             payload: bytes = b"") -> Frame:
        self.send(self.frame(opcode, args, items, count, payload))
        answer = self.read()
        if not answer.verifies(self.rx):
            raise ConnectionError("an answer does not verify with the server-to-client key")
        return answer
