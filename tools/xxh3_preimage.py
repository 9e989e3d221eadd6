"""Eight-byte payloads whose XXH3-64 (seed 0) is a chosen value, for the checksum vectors at the
edges of 64 bits (0, 2^63 - 1, 2^63, 2^64 - 1).

For inputs of 4 to 8 bytes XXH3-64 is `rrmxmx(input64 ^ bitflip, length)`, where input64 joins
the first and last four bytes (little-endian; the first four are the high half) and bitflip comes
from the default secret. Every step of rrmxmx is a bijection on 64-bit words, so it can be run
backwards; bitflip is recovered from one hash, and each preimage is checked against xxhash.
"""

from __future__ import annotations

import struct

import xxhash

_MASK = (1 << 64) - 1
_MULTIPLIER = 0x9FB21C651E98DF25
_INVERSE = pow(_MULTIPLIER, -1, 1 << 64)
_LENGTH = 8


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _mix(h: int) -> int:
    # GF(2)-linear and 1 + x^24 + x^49 is a unit of GF(2)[x]/(x^64 + 1), whose units have order
    # dividing 64: applying it 63 more times undoes it.
    return h ^ _rotl(h, 49) ^ _rotl(h, 24)


def _rrmxmx_inverse(y: int) -> int:
    h = y ^ (y >> 28) ^ (y >> 56)
    h = (h * _INVERSE) & _MASK
    h ^= (h >> 35) + _LENGTH  # the top 34 bits are untouched by the forward step
    h = (h * _INVERSE) & _MASK
    for _ in range(63):
        h = _mix(h)
    return h


def _payload(input64: int) -> bytes:
    return struct.pack("<II", input64 >> 32, input64 & 0xFFFFFFFF)


def preimage(checksum: int) -> bytes:
    """Eight bytes whose XXH3-64 (seed 0) is `checksum`."""
    if not 0 <= checksum <= _MASK:
        raise ValueError(f"{checksum} is not an unsigned 64-bit integer")
    bitflip = _rrmxmx_inverse(xxhash.xxh3_64_intdigest(_payload(0)))
    data = _payload(_rrmxmx_inverse(checksum) ^ bitflip)
    got = xxhash.xxh3_64_intdigest(data)
    if got != checksum:
        raise AssertionError(f"XXH3-64 preimage of {checksum:#x} hashes to {got:#x}: xxhash changed its algorithm?")
    return data


__all__ = ["preimage"]
