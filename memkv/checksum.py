"""Payload checksum (MKV-BLK-005): XXH3-64, seed 0, over the payload bytes, as an unsigned int."""

from __future__ import annotations

import xxhash
from typing_extensions import Buffer


def payload_checksum(payload: Buffer) -> int:
    return xxhash.xxh3_64_intdigest(payload, seed=0)


def payload_hasher() -> xxhash.xxh3_64:
    """Streaming form of payload_checksum: update() piece by piece, then intdigest()."""
    return xxhash.xxh3_64(seed=0)
