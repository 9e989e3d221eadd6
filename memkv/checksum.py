"""Payload checksum (MKV-BLK-005): XXH3-64, seed 0, over the payload bytes, as an unsigned int."""

from __future__ import annotations

from typing_extensions import Buffer

import xxhash


def payload_checksum(payload: Buffer) -> int:
    return xxhash.xxh3_64_intdigest(payload, seed=0)
