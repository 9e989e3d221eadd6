"""Frame test vectors (spec/vectors/frames.json): valid frames and each way a frame is refused.

`python tools/gen_vectors.py` regenerates the file with the other vectors; a test checks
that the file and these cases agree and that `decode_frame` gives the stated outcome.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

from ..blocks import BlockMeta
from ..checksum import payload_checksum
from ..errors import ErrorCode
from . import messages as msg
from .frames import (
    FLAG_RESPONSE,
    HEADER_SIZE,
    VERSION_MAJOR,
    VERSION_MINOR,
    Header,
    WireLimits,
    decode_frame,
    encode_frame,
)
from .op_vectors import operation_vectors
from .opcodes import Opcode

SECRET = bytes(range(32))
KEY_A = bytes.fromhex("00112233445566778899aabbccddeeff")
KEY_B = bytes.fromhex("ffeeddccbbaa99887766554433221100")
VECTOR_LIMITS = WireLimits(max_meta=4096, max_payload=1 << 20, max_items=8)


def _frames() -> list[dict[str, Any]]:
    payload = b"memkv block payload \x00\x01\x02"
    put_meta = msg.encode_meta({}, msg.pack_put_item(KEY_A, len(payload), payload_checksum(payload),
                                                      BlockMeta(dtype="bf16", token_count=16).encode()), 1)
    put = encode_frame(Header(Opcode.PUT, 7), put_meta, payload, SECRET)
    get_meta = msg.encode_meta({}, msg.pack_get_item(KEY_A, 4096) + msg.pack_get_item(KEY_B, 4096), 2)
    get = encode_frame(Header(Opcode.GET, 8), get_meta, b"", SECRET)
    hello_meta = msg.encode_meta({"namespace": "team-a", "key_id": "a-writer", "client_nonce": "00" * 16,
                                  "timestamp_ms": 1767225600000, "client": "memkv-py/0.1.0"})
    hello = encode_frame(Header(Opcode.HELLO, 0), hello_meta, b"", SECRET)
    err_meta = msg.encode_meta(msg.error_args(ErrorCode.PROTOCOL_ERROR, "unknown opcode 0x6e"))
    error = encode_frame(Header(Opcode.ERROR, 9, flags=FLAG_RESPONSE, status=19), err_meta, b"", SECRET)
    ping_unsigned = encode_frame(Header(Opcode.PING, 3), msg.encode_meta({}), b"", None)

    def patch(frame: bytes, offset: int, raw: bytes) -> bytes:
        return frame[:offset] + raw + frame[offset + len(raw):]

    return [
        {"name": "hello", "frame": hello, "signed": True, "expect": "OK"},
        {"name": "put-one-block", "frame": put, "signed": True, "expect": "OK"},
        {"name": "get-two-keys", "frame": get, "signed": True, "expect": "OK"},
        {"name": "error-response", "frame": error, "signed": True, "expect": "OK"},
        {"name": "ping-unauthenticated-mode", "frame": ping_unsigned, "signed": False, "expect": "OK"},
        {"name": "truncated-header", "frame": put[:HEADER_SIZE - 1], "signed": True, "expect": "PROTOCOL_ERROR"},
        {"name": "truncated-meta", "frame": get[:-3], "signed": True, "expect": "PROTOCOL_ERROR"},
        {"name": "truncated-payload", "frame": put[:-1], "signed": True, "expect": "PROTOCOL_ERROR"},
        {"name": "trailing-bytes", "frame": get + b"\x00", "signed": True, "expect": "PROTOCOL_ERROR"},
        {"name": "bad-magic", "frame": patch(get, 0, b"XKVW"), "signed": True, "expect": "PROTOCOL_ERROR"},
        {"name": "newer-major-version", "frame": patch(get, 4, bytes([VERSION_MAJOR + 1])), "signed": True,
         "expect": "UNSUPPORTED_VERSION"},
        {"name": "unknown-opcode", "frame": patch(get, 6, b"\x6e"), "signed": True, "expect": "PROTOCOL_ERROR"},
        {"name": "unknown-flag", "frame": patch(get, 7, b"\x80"), "signed": True, "expect": "PROTOCOL_ERROR"},
        {"name": "reserved-not-zero", "frame": patch(get, 22, b"\x01\x00"), "signed": True,
         "expect": "PROTOCOL_ERROR"},
        {"name": "oversized-meta", "frame": patch(get, 16, struct.pack("<I", 4097)), "signed": True,
         "expect": "LIMIT_EXCEEDED"},
        {"name": "oversized-payload", "frame": patch(put, 24, struct.pack("<Q", (1 << 20) + 1)), "signed": True,
         "expect": "LIMIT_EXCEEDED"},
        {"name": "payload-on-get-request", "frame": patch(get, 24, struct.pack("<Q", 1)) + b"x", "signed": True,
         "expect": "PROTOCOL_ERROR"},
        {"name": "bad-signature", "frame": patch(put, HEADER_SIZE - 1, bytes([put[HEADER_SIZE - 1] ^ 1])),
         "signed": True, "expect": "UNAUTHENTICATED"},
        {"name": "tampered-meta", "frame": patch(put, HEADER_SIZE + 30, b"\xff"), "signed": True,
         "expect": "UNAUTHENTICATED"},
        {"name": "tampered-request-id", "frame": patch(put, 8, struct.pack("<Q", 8)), "signed": True,
         "expect": "UNAUTHENTICATED"},
        {"name": "unsigned-frame-on-signed-connection", "frame": ping_unsigned, "signed": True,
         "expect": "UNAUTHENTICATED"},
    ]


def build_vectors() -> dict[str, Any]:
    vectors = []
    for entry in _frames():
        frame: bytes = entry["frame"]
        item: dict[str, Any] = {"name": entry["name"], "secret": "vector" if entry["signed"] else None,
                                "frame_hex": frame.hex(), "expect": entry["expect"]}
        if entry["expect"] == "OK":
            decoded = decode_frame(frame, SECRET if entry["signed"] else None, VECTOR_LIMITS)
            header = dataclasses.asdict(decoded.header)
            header["opcode"] = decoded.header.opcode.name
            header["mac"] = decoded.header.mac.hex()
            item["header"] = header
            item["args"] = msg.MetaReader(decoded.meta, VECTOR_LIMITS.max_items).args
            item["meta_hex"] = decoded.meta.hex()
            item["payload_hex"] = decoded.payload.hex()
        vectors.append(item)
    return {
        "description": "memkv wire frame vectors (spec/wire.md). 'vectors': decode each frame with the 'vector' "
                       "secret (when secret is not null) under the limits given; 'expect' is OK or the error "
                       "code. 'handshake': the key derivation of MKV-WIRE-011 from the 'vector' secret. "
                       "'operations': a request and an answer frame per opcode, signed as 'signed_with' says.",
        "wire_version": f"{VERSION_MAJOR}.{VERSION_MINOR}",
        "secrets": {"vector": SECRET.hex()},
        "limits": VECTOR_LIMITS.to_dict(),
        "vectors": vectors,
        **operation_vectors(SECRET),
    }
