"""Bucket and object names to namespaces and keys (spec/s3.md section 2, MKV-S3-002, MKV-S3-010)."""

from __future__ import annotations

import re

from ...errors import InvalidArgument
from ...keys import NO_FINGERPRINT, key_from_sequence_hash
from ...namespaces import is_namespace

_SEQUENCE_HASH_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_RAW_KEY_RE = re.compile(r"[0-9a-f]{32}")
_U64_LIMIT = 2**64


def object_key(name: str) -> bytes:
    """The key an object name stands for: a decimal 64-bit sequence hash, or the key as 32 hex digits."""
    if _SEQUENCE_HASH_RE.fullmatch(name):
        value = int(name)
        if value < _U64_LIMIT:
            return key_from_sequence_hash(NO_FINGERPRINT, value)
    elif _RAW_KEY_RE.fullmatch(name):
        return bytes.fromhex(name)
    raise InvalidArgument("an object name is a decimal 64-bit sequence hash (no leading zeros) or a key "
                          "as 32 lower-case hex digits")


def sequence_hash_name(sequence_hash: int) -> str:
    """The object name of a block named by a 64-bit sequence hash (what NIXL's OBJ backend sends)."""
    if not 0 <= sequence_hash < _U64_LIMIT:
        raise InvalidArgument("sequence hash must be an unsigned 64-bit integer")
    return str(sequence_hash)


def is_bucket_name(name: str) -> bool:
    """A bucket is a namespace: its name follows the namespace rule (MKV-S3-002, MKV-NS-003)."""
    return is_namespace(name)
