"""PutObject bodies: stated size, aws-chunked decoding and payload checks (MKV-S3-030..032)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from awscrt import checksums

from .errors import S3Error

UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CHUNK_HEADER = re.compile(rb"([0-9a-fA-F]{1,16})(;[^\r\n]*)?")
# Raw aws-chunked bytes accepted: twice the payload plus this covers any sane chunking (chunk
# headers and the trailer are small) and still bounds memory.
MAX_TRAILER_BYTES = 8192


def _crc(update: Callable[[Any], int], width: int) -> Callable[[bytes | bytearray], bytes]:
    return lambda data: update(data).to_bytes(width, "big")


_TRAILER_DIGESTS: dict[str, Callable[[bytes | bytearray], bytes]] = {
    "x-amz-checksum-crc32": _crc(zlib.crc32, 4),
    "x-amz-checksum-crc32c": _crc(checksums.crc32c, 4),
    "x-amz-checksum-crc64nvme": _crc(checksums.crc64nvme, 8),
    "x-amz-checksum-sha1": lambda data: hashlib.sha1(data).digest(),
    "x-amz-checksum-sha256": lambda data: hashlib.sha256(data).digest(),
}


def incomplete(message: str) -> S3Error:
    return S3Error(400, "IncompleteBody", message)


def stated_size(headers: Mapping[str, str], max_size: int) -> tuple[int, int]:
    """(payload bytes, most raw body bytes to accept), checked before any body is read (MKV-S3-030)."""
    streaming = headers.get("x-amz-content-sha256") == STREAMING_TRAILER
    text = headers.get("x-amz-decoded-content-length") if streaming else headers.get("content-length")
    if text is None:
        raise S3Error(411, "MissingContentLength", "the body size must be stated (Content-Length, or "
                                                   "x-amz-decoded-content-length for aws-chunked)")
    if not text.isdigit() or len(text) > 20:
        raise S3Error(400, "InvalidArgument", "the stated body size is not a decimal number")
    size = int(text)
    if size == 0:
        raise S3Error(400, "InvalidArgument", "an object holds at least one byte")
    if size > max_size:
        raise S3Error(400, "EntityTooLarge", f"an object holds at most {max_size} bytes")
    return size, (2 * size + MAX_TRAILER_BYTES if streaming else size)


def check_payload_hash(headers: Mapping[str, str], content_encoding: str) -> None:
    """Refuse payload-hash forms this endpoint does not take, before the body is read (MKV-S3-031)."""
    value = headers.get("x-amz-content-sha256", UNSIGNED)
    if value == STREAMING_TRAILER:
        if "aws-chunked" not in content_encoding:
            raise S3Error(400, "InvalidRequest", f"{STREAMING_TRAILER} needs Content-Encoding: aws-chunked")
        return
    if value != UNSIGNED and not _SHA256_HEX.fullmatch(value):
        raise S3Error(501, "NotImplemented", f"x-amz-content-sha256 {value[:64]!r} is not supported; use a "
                                             "SHA-256, UNSIGNED-PAYLOAD or STREAMING-UNSIGNED-PAYLOAD-TRAILER")


def decoded_payload(headers: Mapping[str, str], body: bytes | bytearray, size: int) -> bytes | bytearray:
    """The object's bytes, every check of MKV-S3-031 and MKV-S3-032 passed."""
    value = headers.get("x-amz-content-sha256", UNSIGNED)
    payload = _decode_aws_chunked(body, size, headers.get("x-amz-trailer")) if value == STREAMING_TRAILER else body
    if len(payload) != size:
        raise incomplete(f"the body holds {len(payload)} bytes, not the {size} stated")
    if _SHA256_HEX.fullmatch(value) and not hmac.compare_digest(hashlib.sha256(payload).hexdigest(), value):
        raise S3Error(400, "XAmzContentSHA256Mismatch", "the body's SHA-256 is not x-amz-content-sha256")
    for name, digest in _TRAILER_DIGESTS.items():
        stated = headers.get(name)
        if stated is not None and not hmac.compare_digest(_b64(stated, name), digest(payload)):
            raise S3Error(400, "BadDigest", f"the body's {name[len('x-amz-checksum-'):]} is not {name}")
    md5 = headers.get("content-md5")
    if md5 is not None and not hmac.compare_digest(_b64(md5, "Content-MD5"), hashlib.md5(payload).digest()):
        raise S3Error(400, "BadDigest", "the body's MD5 is not Content-MD5")
    return payload


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise S3Error(400, "InvalidDigest", f"{what} is not base64") from None


def _decode_aws_chunked(body: bytes | bytearray, size: int, trailer_name: str | None) -> bytearray:
    out = bytearray(size)
    view = memoryview(body)
    pos = filled = 0
    while True:
        end = body.find(b"\r\n", pos, pos + 4096)
        header = _CHUNK_HEADER.fullmatch(body, pos, end) if end >= 0 else None
        if header is None:
            raise incomplete("an aws-chunked chunk header is malformed or missing")
        length = int(header.group(1), 16)
        if length > size - filled:
            raise incomplete("aws-chunked chunks hold more than x-amz-decoded-content-length")
        pos = end + 2
        if length == 0:
            break
        if body[pos + length : pos + length + 2] != b"\r\n":
            raise incomplete("an aws-chunked chunk is shorter than its header says")
        out[filled : filled + length] = view[pos : pos + length]
        filled += length
        pos += length + 2
    if filled != size:
        raise incomplete(f"the aws-chunked body holds {filled} bytes, not the {size} stated")
    _check_trailers(bytes(body[pos:]), out, trailer_name)
    return out


def _check_trailers(tail: bytes, payload: bytes | bytearray, announced: str | None) -> None:
    if not (tail == b"\r\n" or tail.endswith(b"\r\n\r\n")):
        raise incomplete("the aws-chunked trailer does not end with an empty line")
    seen: dict[str, str] = {}
    for line in tail.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise incomplete("an aws-chunked trailer line is not name:value")
        seen[name.strip().lower()] = value.strip()
    wanted = [announced.strip().lower()] if announced else []
    for name in wanted + [n for n in seen if n.startswith("x-amz-checksum-") and n not in wanted]:
        digest = _TRAILER_DIGESTS.get(name)
        if digest is None:
            raise S3Error(400, "InvalidRequest", f"checksum trailer {name!r} is not supported")
        if name not in seen:
            raise incomplete(f"the announced trailer {name} is missing")
        if not hmac.compare_digest(_b64(seen[name], name), digest(payload)):
            raise S3Error(400, "BadDigest", f"the body's {name[len('x-amz-checksum-'):]} is not its trailer")
