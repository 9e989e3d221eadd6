"""The store evicts in chain order (MKV-CAP-006..008) and counts only puts and reads as uses."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_store import KiB, key, open_engine, payload

from memkv.blocks import BlockMeta
from memkv.store.engine import StorageEngine
from memkv.transport import PutItem

NS = "ns"
UNIT = 64 * KiB


def small_store(store_dir: Path, units: int) -> StorageEngine:
    return open_engine(store_dir, capacity=(units + 1) * UNIT, unit=UNIT)


def put_chain(engine: StorageEngine, ids: list[int], parent: int | None = None) -> None:
    """Store blocks `ids`, each chained after the one before (the first after `parent`)."""
    for i in ids:
        meta = BlockMeta() if parent is None else BlockMeta(parent=key(parent))
        assert engine.put(NS, [PutItem(key(i), payload(i, UNIT - 7), meta)])[0].ok
        parent = i


def present(engine: StorageEngine, ids: list[int]) -> list[int]:
    return [i for i, there in zip(ids, engine.exists(NS, [key(i) for i in ids]), strict=True) if there]


@pytest.mark.requirement("MKV-CAP-006")
def test_in_order_reload_keeps_the_prefix_reachable(store_dir: Path) -> None:
    """The defect of issue 15: a 6-block chain reloaded in order lost its head under plain LRU."""
    engine = small_store(store_dir, 7)
    try:
        chain = [1, 2, 3, 4, 5, 6]
        put_chain(engine, chain)
        put_chain(engine, [50])
        engine.get_into(NS, [key(i) for i in chain], [bytearray(UNIT) for _ in chain])  # reload in order
        put_chain(engine, [51, 52])  # two evictions needed: 50, then the chain's tail
        assert present(engine, chain) == [1, 2, 3, 4, 5]
        assert engine.lookup(NS, [key(i) for i in chain]).prefix_len == 5
        assert engine.stats()["evictions"] == 2
    finally:
        engine.close()


@pytest.mark.requirement("MKV-CAP-006")
def test_tail_goes_first_and_a_leased_tail_keeps_its_chain(store_dir: Path) -> None:
    engine = small_store(store_dir, 6)
    try:
        put_chain(engine, [1, 2, 3])
        put_chain(engine, [10, 11, 12])
        engine.get_into(NS, [key(1)], [bytearray(UNIT)])  # a use of the head of chain 1..3
        lease = engine.lookup(NS, [key(10), key(11), key(12)], lease_ms=60_000)
        assert lease.prefix_len == 3
        put_chain(engine, [20, 21])
        # 10..12 are leased; 1..3 go tail first although 2 and 3 were never read after 1.
        assert present(engine, [1, 2, 3, 10, 11, 12]) == [1, 10, 11, 12]
        engine.release_lease(NS, str(lease.lease_id))
    finally:
        engine.close()


@pytest.mark.requirement("MKV-CAP-007")
def test_probes_are_not_uses(store_dir: Path) -> None:
    engine = small_store(store_dir, 3)
    try:
        put_chain(engine, [1])
        put_chain(engine, [2])
        put_chain(engine, [3])
        engine.exists(NS, [key(1)])
        engine.stat(NS, [key(1)])
        engine.lookup(NS, [key(1)])
        lease = engine.lookup(NS, [key(1)], lease_ms=60_000)
        engine.release_lease(NS, str(lease.lease_id))
        assert engine.put(NS, [PutItem(key(1), payload(1, UNIT - 7))])[0].ok  # re-put: identical bytes
        put_chain(engine, [4])
        assert present(engine, [1, 2, 3, 4]) == [2, 3, 4], "only a read or a storing put is a use"
        engine.get_into(NS, [key(2)], [bytearray(UNIT)])
        put_chain(engine, [5])
        assert present(engine, [2, 3, 4, 5]) == [2, 4, 5], "a read is a use"
    finally:
        engine.close()


@pytest.mark.requirement("MKV-CAP-008")
def test_cut_chain_goes_before_complete_ones(store_dir: Path) -> None:
    engine = small_store(store_dir, 5)
    try:
        put_chain(engine, [1, 2, 3])
        put_chain(engine, [10, 11])
        engine.delete(NS, [key(1)])  # 2 and 3 can no longer be reached by a lookup
        engine.get_into(NS, [key(2), key(3)], [bytearray(UNIT), bytearray(UNIT)])  # reads do not rescue them
        put_chain(engine, [20, 21, 22])
        assert present(engine, [2, 3, 10, 11, 20, 21, 22]) == [10, 11, 20, 21, 22]
    finally:
        engine.close()


@pytest.mark.requirement("MKV-CAP-006")
def test_order_survives_a_restart(store_dir: Path) -> None:
    engine = small_store(store_dir, 4)
    put_chain(engine, [1, 2, 3])
    engine.close()
    engine = small_store(store_dir, 4)
    try:
        put_chain(engine, [10, 11])
        assert present(engine, [1, 2, 3, 10, 11]) == [1, 2, 10, 11]  # rebuilt from the index: tail first
        assert engine.lookup(NS, [key(1), key(2), key(3)]).prefix_len == 2
    finally:
        engine.close()
