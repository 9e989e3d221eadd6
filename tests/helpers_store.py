"""Helpers shared by the storage-engine tests: keys, payloads, a settable clock, invariants."""

from __future__ import annotations

import random
from typing import Any

from memkv.store.allocator import Extent
from memkv.store.engine import StorageEngine

KiB = 1024
MiB = 1024 * KiB


def key(i: int) -> bytes:
    return i.to_bytes(16, "big")


def payload(i: int, size: int, variant: int = 0) -> bytes:
    """Deterministic bytes for block `i`: any two blocks (or variants) differ everywhere."""
    return random.Random(i * 7919 + variant).randbytes(size)


class Clock:
    """An injected clock the tests move by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def open_engine(directory: Any, **options: Any) -> StorageEngine:
    options.setdefault("capacity", 16 * MiB)
    options.setdefault("unit", 256 * KiB)
    options.setdefault("flush_interval_s", 3600.0)
    return StorageEngine(str(directory), **options)


def snapshot(engine: StorageEngine) -> dict[str, Any]:
    """Everything stored (not the counters): to show that a refused request changed nothing."""
    stats = engine.stats()
    with engine._lock:
        blocks = {block_id: (live.row.length, live.row.checksum, live.row.meta, tuple(live.row.extents))
                  for block_id, live in engine.resident.blocks.items()}
        sessions = {(row.namespace, row.session_id): (row.state, row.keys, row.expires_at)
                    for row in engine.index.sessions()}
        pins = dict(engine.protection.pins)
    kept = ("used_bytes", "free_bytes", "blocks", "pinned_blocks", "leases", "sessions", "namespaces")
    return {"stats": {k: stats[k] for k in kept}, "blocks": blocks, "sessions": sessions, "pins": pins}


def check_space(engine: StorageEngine) -> None:
    """Free runs and committed blocks tile the data area exactly: nothing leaked, nothing shared."""
    with engine._lock:
        alloc = engine.allocator
        assert not engine.resident.reserved, "a put is still in flight"
        pieces: list[tuple[int, int, str]] = [(r.offset, r.length, "free") for r in alloc.runs()]
        for (ns, k), live in engine.resident.blocks.items():
            assert not live.removed
            assert sum(e.length for e in live.row.extents) == alloc.rounded(live.row.length)
            pieces.extend((e.offset, e.length, f"{ns}/{k.hex()}") for e in live.row.extents)
        used = sum(alloc.rounded(live.row.length) for live in engine.resident.blocks.values())
        assert alloc.free_bytes == sum(r.length for r in alloc.runs())
        assert alloc.free_bytes + used == alloc.total_bytes, "space leaked or double counted"
    cursor = alloc.start
    for offset, length, owner in sorted(pieces):
        assert offset == cursor, f"{owner} at {offset} overlaps or leaves a hole at {cursor}"
        cursor = offset + length
    assert cursor == alloc.end


def extents_of(engine: StorageEngine, namespace: str, k: bytes) -> list[Extent]:
    with engine._lock:
        return list(engine.resident.blocks[(namespace, k)].row.extents)
