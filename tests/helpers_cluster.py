"""Helpers shared by the cluster tests: random keys placed on the shards a test chooses."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable

from memkv.cluster.placement import Placement


def placed_keys(placement: Placement, layout: Iterable[int]) -> list[bytes]:
    """Random keys, the i-th held by shard `placement.shards[layout[i]]`: a test whose assertions need
    keys on particular shards (every shard reached, one shard with none before a cut) must not
    depend on where random keys happen to fall (a CI run failed on a 0.3% draw)."""
    keys = []
    for index in layout:
        key = os.urandom(16)
        while placement.shard_index(key) != index:
            key = os.urandom(16)
        keys.append(key)
    return keys


def mixed_layout(count: int, shards: int, seed: int) -> list[int]:
    """A fixed irregular layout (runs on one shard, jumps between shards) with every shard given at
    least count // (2 * shards) keys, the same in every run."""
    rng = random.Random(seed)
    layout = [rng.randrange(shards) for _ in range(count)]
    assert all(layout.count(s) >= count // (2 * shards) for s in range(shards)), "choose another seed"
    return layout


__all__ = ["mixed_layout", "placed_keys"]
