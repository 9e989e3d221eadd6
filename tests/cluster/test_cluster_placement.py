"""Rendezvous placement (spec/cluster.md section 2): vectors, an independent recomputation, and the
placement simulation of docs/scale.md (balance at 3..512 shards, keys moved when a shard leaves)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xxhash

from memkv.cluster.membership import static_membership
from memkv.cluster.placement import Placement, Shard
from memkv.cluster.vectors import placement_vectors
from memkv.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads((ROOT / "spec" / "vectors" / "placement.json").read_text(encoding="utf-8"))
SIMULATED_KEYS = 1_000_000
M64 = (1 << 64) - 1


def _raw_score(key: bytes, shard_id: str, index: int) -> int:
    """The spec's layout rebuilt with struct and xxhash only, so that the check is not circular."""
    x = xxhash.xxh3_64_intdigest(key) ^ xxhash.xxh3_64_intdigest(b"MKV1-HRW" + shard_id.encode("utf-8")
                                                                    + struct.pack("<I", index))
    x ^= x >> 33
    x = (x * 0xC2B2AE3D27D4EB4F) & M64
    x ^= x >> 29
    x = (x * 0x165667B19E3779F9) & M64
    return x ^ (x >> 32)


def _raw_shard(key: bytes, members: list[dict[str, Any]]) -> str:
    points = [(_raw_score(key, m["id"], i), m["id"].encode(), i) for m in members for i in range(m["weight"])]
    best = max(s for s, _, _ in points)
    return min((sid, i) for s, sid, i in points if s == best)[0].decode()


@pytest.mark.requirement("MKV-CLU-004")
def test_vector_file_is_what_the_generator_writes() -> None:
    assert json.loads(json.dumps(placement_vectors())) == VECTORS


@pytest.mark.requirement("MKV-CLU-002", "MKV-CLU-004")
@pytest.mark.parametrize("case", VECTORS["memberships"], ids=lambda c: c["name"])
def test_every_vector_places_as_stated(case: dict[str, Any]) -> None:
    placement = Placement(Shard(m["id"], weight=m["weight"]) for m in case["shards"])
    for point in case["points"]:
        raw = xxhash.xxh3_64_intdigest(b"MKV1-HRW" + point["id"].encode() + struct.pack("<I", point["index"]))
        assert str(raw) == point["hash"]
    for item in case["keys"]:
        key = bytes.fromhex(item["key"])
        assert placement.shard_of(key).shard_id == item["shard"] == _raw_shard(key, case["shards"])
        assert str(xxhash.xxh3_64_intdigest(key)) == item["key_hash"]
        assert str(max(_raw_score(key, m["id"], i) for m in case["shards"] for i in range(m["weight"]))) \
            == item["best_score"]


@pytest.mark.requirement("MKV-CLU-003")
def test_vectors_show_only_the_leaving_shards_keys_move() -> None:
    by_name = {c["name"]: c for c in VECTORS["memberships"]}
    before = {k["key"]: k["shard"] for k in by_name["three equal shards"]["keys"]}
    after = {k["key"]: k["shard"] for k in by_name["three equal shards, shard-b left"]["keys"]}
    assert any(s == "shard-b" for s in before.values())
    assert all(after[k] == s for k, s in before.items() if s != "shard-b")


@pytest.mark.requirement("MKV-CLU-001")
def test_bad_memberships_are_refused() -> None:
    for bad in ("", "has space", "x" * 129, "slash/no"):
        with pytest.raises(InvalidArgument):
            Shard(bad)
    for weight in (0, 65, 1.5, True):
        with pytest.raises(InvalidArgument):
            Shard("a", weight=weight)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        Placement([Shard("a"), Shard("a")])
    with pytest.raises(InvalidArgument):
        static_membership(["h:1", "h:1"])
    assert [s.shard_id for s in static_membership(["h1:9900", "h2:9900"]).shards()] == ["h1:9900", "h2:9900"]


def _key_hashes(count: int, seed: int) -> np.ndarray:
    """XXH3-64 of `count` distinct 16-byte keys: uniform 64-bit values are what keys hash to."""
    keys = np.random.default_rng(seed).integers(0, 2**63, size=(count, 2), dtype=np.int64).view(np.uint8)
    return np.fromiter((xxhash.xxh3_64_intdigest(k.tobytes()) for k in keys), dtype=np.uint64, count=count)


@pytest.fixture(scope="module")
def million_keys() -> np.ndarray:
    return _key_hashes(SIMULATED_KEYS, seed=14)


def test_fast_path_agrees_with_the_normative_one() -> None:
    placement = Placement(Shard(f"node{i // 4}:{9900 + i % 4}", weight=1 + i % 3) for i in range(12))
    keys = [bytes([i % 256, i // 256]) * 8 for i in range(3000)]
    hashes = np.array([xxhash.xxh3_64_intdigest(k) for k in keys], dtype=np.uint64)
    assert placement.shard_indexes(hashes).tolist() == [placement.shard_index(k) for k in keys]


@pytest.mark.requirement("MKV-CLU-002")
@pytest.mark.parametrize("count", [3, 8, 64, 512])
def test_load_balance_of_a_million_keys(count: int, million_keys: np.ndarray) -> None:
    """max/mean blocks per shard <= 1.10 (docs/scale.md); every shard gets keys."""
    placement = Placement(Shard(f"shard-{i:03d}") for i in range(count))
    per_shard = np.bincount(placement.shard_indexes(million_keys), minlength=count)
    assert per_shard.sum() == SIMULATED_KEYS and per_shard.min() > 0
    assert per_shard.max() / per_shard.mean() <= 1.10


@pytest.mark.requirement("MKV-CLU-002")
def test_weights_give_proportional_shares(million_keys: np.ndarray) -> None:
    weights = [1, 2, 4, 1]
    placement = Placement(Shard(f"w{i}", weight=w) for i, w in enumerate(weights))
    shares = np.bincount(placement.shard_indexes(million_keys), minlength=4) / SIMULATED_KEYS
    expected = np.array(weights) / sum(weights)
    assert np.abs(shares - expected).max() < 0.01


@pytest.mark.requirement("MKV-CLU-003")
@pytest.mark.parametrize("count", [3, 16, 128])
def test_one_leaving_shard_moves_its_own_keys_only(count: int, million_keys: np.ndarray) -> None:
    shards = [Shard(f"shard-{i:03d}") for i in range(count)]
    keys = million_keys[: SIMULATED_KEYS // 4]
    before = np.array([s.shard_id for s in Placement(shards).shards])[Placement(shards).shard_indexes(keys)]
    gone = shards[count // 2].shard_id
    rest = Placement(s for s in shards if s.shard_id != gone)
    after = np.array([s.shard_id for s in rest.shards])[rest.shard_indexes(keys)]
    moved = before != after
    assert (before[moved] == gone).all()  # none of the others
    assert moved.sum() == (before == gone).sum()
    assert abs(moved.mean() - 1 / count) < 0.25 / count  # about 1/N
