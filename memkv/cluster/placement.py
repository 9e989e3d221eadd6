"""Rendezvous (highest-random-weight) placement of keys on shards (spec/cluster.md, MKV-CLU-001..006).

Every client in every language places a key on the same shard: the score of a (key, shard point)
pair is a fixed integer function of XXH3-64 values, so no floating point and no per-process seed
enters. A shard of weight w has w points; the key goes to the shard holding its highest-scoring
point, so a shard's share of the keys is its weight over the total weight, and a shard that
leaves takes only its own keys with it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence

import numpy as np
import xxhash

from ..errors import InvalidArgument

POINT_TAG = b"MKV1-HRW"
MAX_WEIGHT = 64
MASK64 = (1 << 64) - 1
# the two multipliers of XXH64's final avalanche (xxHash 0.8), used as a fixed 64-bit mixer
MIX_1 = 0xC2B2AE3D27D4EB4F
MIX_2 = 0x165667B19E3779F9
SHARD_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


def check_shard_id(shard_id: str) -> str:
    if not isinstance(shard_id, str) or not SHARD_ID_RE.match(shard_id):
        raise InvalidArgument(f"shard id {shard_id!r} is not 1..128 characters of [A-Za-z0-9_.:-]")
    return shard_id


@dataclasses.dataclass(frozen=True, slots=True)
class Shard:
    """One member of a cluster: a stable id, where it listens, and its weight (MKV-CLU-001)."""

    shard_id: str
    address: str = ""
    weight: int = 1

    def __post_init__(self) -> None:
        check_shard_id(self.shard_id)
        if not isinstance(self.weight, int) or isinstance(self.weight, bool) or not 1 <= self.weight <= MAX_WEIGHT:
            raise InvalidArgument(f"shard {self.shard_id}: weight {self.weight!r} is not an integer in 1..{MAX_WEIGHT}")


def key_hash(key: bytes) -> int:
    return xxhash.xxh3_64_intdigest(key)


def point_hash(shard_id: str, index: int) -> int:
    """XXH3-64("MKV1-HRW" || UTF-8(shard id) || u32le(index)): the hash of one point of a shard."""
    return xxhash.xxh3_64_intdigest(POINT_TAG + shard_id.encode() + index.to_bytes(4, "little"))


def mix(value: int) -> int:
    value ^= value >> 33
    value = (value * MIX_1) & MASK64
    value ^= value >> 29
    value = (value * MIX_2) & MASK64
    return value ^ (value >> 32)


def score(key: bytes, shard_id: str, index: int) -> int:
    return mix(key_hash(key) ^ point_hash(shard_id, index))


class Placement:
    """The shard of every key over a fixed set of shards; ties go to the smaller shard id (bytes)."""

    def __init__(self, shards: Iterable[Shard]) -> None:
        self.shards: tuple[Shard, ...] = tuple(sorted(shards, key=lambda s: s.shard_id.encode()))
        ids = [s.shard_id for s in self.shards]
        if len(set(ids)) != len(ids):
            raise InvalidArgument(f"shard ids are not unique: {ids}")
        if not self.shards:
            raise InvalidArgument("a cluster needs at least one shard")
        owners = [i for i, s in enumerate(self.shards) for _ in range(s.weight)]
        self._point_owner = np.array(owners, dtype=np.int64)
        self._points = np.array([point_hash(s.shard_id, p) for s in self.shards for p in range(s.weight)],
                                dtype=np.uint64)

    def shard_index(self, key: bytes) -> int:
        """Index into `shards` of the shard that holds `key`."""
        hk = key_hash(key)
        best, best_score = 0, -1
        for number, point in enumerate(self._points.tolist()):
            value = mix(hk ^ point)
            if value > best_score:  # strictly greater: the first (smallest id) point wins a tie
                best, best_score = number, value
        return int(self._point_owner[best])

    def shard_of(self, key: bytes) -> Shard:
        return self.shards[self.shard_index(key)]

    def shard_indexes(self, key_hashes: np.ndarray, chunk: int = 1 << 14) -> np.ndarray:
        """The shard index of many keys at once, given their XXH3-64 values (the simulation's fast path)."""
        out = np.empty(len(key_hashes), dtype=np.int64)
        with np.errstate(over="ignore"):
            for start in range(0, len(key_hashes), chunk):
                part = key_hashes[start:start + chunk].astype(np.uint64)[:, None] ^ self._points[None, :]
                part ^= part >> np.uint64(33)
                part *= np.uint64(MIX_1)
                part ^= part >> np.uint64(29)
                part *= np.uint64(MIX_2)
                part ^= part >> np.uint64(32)
                out[start:start + chunk] = self._point_owner[np.argmax(part, axis=1)]
        return out

    def split(self, keys: Sequence[bytes]) -> dict[int, list[int]]:
        """Positions of `keys` grouped by shard index, each group in item order."""
        groups: dict[int, list[int]] = {}
        for position, key in enumerate(keys):
            groups.setdefault(self.shard_index(key), []).append(position)
        return groups


__all__ = ["MAX_WEIGHT", "Placement", "Shard", "check_shard_id", "key_hash", "mix", "point_hash", "score"]
