"""Placement test vectors (spec/vectors/placement.json, MKV-CLU-004).

`python tools/gen_vectors.py` regenerates the file with the other vectors; a test checks
that the file and these cases agree and recomputes the scores with raw xxhash calls.
"""

from __future__ import annotations

from typing import Any

from ..keys import key_from_sequence_hash
from .placement import Placement, Shard, key_hash, point_hash, score

VECTOR_FINGERPRINT = bytes(16)
MEMBERSHIPS: list[tuple[str, list[tuple[str, int]]]] = [
    ("one shard", [("solo", 1)]),
    ("three equal shards", [("shard-a", 1), ("shard-b", 1), ("shard-c", 1)]),
    ("static list of addresses", [("10.0.0.1:9900", 1), ("10.0.0.2:9900", 1), ("10.0.0.3:9900", 1),
                                  ("10.0.0.4:9900", 1)]),
    ("weighted", [("big", 4), ("small", 1), ("medium", 2)]),
    ("three equal shards, shard-b left", [("shard-a", 1), ("shard-c", 1)]),
]


def _keys() -> list[bytes]:
    keys = [bytes(16), bytes([0xFF]) * 16, bytes(range(16))]
    keys += [key_from_sequence_hash(VECTOR_FINGERPRINT, i) for i in range(13)]
    return keys


def placement_vectors() -> dict[str, Any]:
    cases: list[dict[str, Any]] = []
    for name, members in MEMBERSHIPS:
        placement = Placement(Shard(shard_id, weight=weight) for shard_id, weight in members)
        keys = _keys()
        cases.append({
            "name": name,
            "shards": [{"id": shard_id, "weight": weight} for shard_id, weight in members],
            "points": [{"id": s, "index": i, "hash": str(point_hash(s, i))}
                       for s, w in members for i in range(w)],
            "keys": [{"key": key.hex(), "key_hash": str(key_hash(key)), "shard": placement.shard_of(key).shard_id,
                      "best_score": str(max(score(key, s, i) for s, w in members for i in range(w)))}
                     for key in keys],
        })
    return {"spec_version": "1.2", "generator": "tools/gen_vectors.py",
            "format": "spec/vectors/README.md#placementjson", "memberships": cases}
