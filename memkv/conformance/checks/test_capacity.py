"""Capacity and eviction on a small instance of the target (MKV-CAP-002, MKV-CAP-003, MKV-OPS-007)."""

from __future__ import annotations

import pytest

from memkv.checksum import payload_checksum
from memkv.conformance.support import Context, check, expect_code, payload, put_ok, read
from memkv.errors import ErrorCode
from memkv.transport import PutItem

E = ErrorCode
KiB = 1024
MiB = 1024 * KiB
CAPACITY = 2 * MiB
BLOCK = 64 * KiB


@pytest.mark.requirement("MKV-CAP-002")
def test_full_target_evicts_least_recently_used_first(memkv: Context) -> None:
    small = memkv.small(CAPACITY)
    t = small.transport()
    keys = [small.key() for _ in range(CAPACITY // BLOCK * 2)]
    order: list[bytes] = []
    for i, key in enumerate(keys):
        res = t.put([PutItem(key, payload(i, BLOCK))])[0]
        check("MKV-CAP-002", res.ok, f"put {i} into a full target evicts to fit", "OK", res.status.name,
              f"put {len(keys)} blocks of {BLOCK} bytes into a {CAPACITY}-byte target")
        order.append(key)
        if i == CAPACITY // BLOCK // 2:
            # touch the first quarter: they become most recently used
            for k in order[: len(order) // 2]:
                read(t, k)
                order.remove(k)
                order.append(k)
    present = t.exists(order)
    check("MKV-CAP-002", not all(present), "a target at twice its capacity evicted something", "some evicted",
          "all present")
    check("MKV-CAP-002", present[-1], "the most recent block survives", True, False)
    first_kept = present.index(True)
    holes = [i for i in range(first_kept, len(order)) if not present[i]]
    check("MKV-CAP-002", not holes, "evicted blocks are the least recently used ones (an LRU prefix)",
          f"evicted = the {first_kept} least recently used",
          f"also evicted more recent blocks at LRU ranks {holes[:8]}",
          "put 2x capacity of 64 KiB blocks, reading the first half again midway")
    for i, k in enumerate(order):
        if present[i]:
            got = read(t, k)
            check("MKV-CAP-002", got is not None and len(got) == BLOCK, "a surviving block is intact", BLOCK,
                  None if got is None else len(got))


@pytest.mark.requirement("MKV-CAP-003", "MKV-OPS-007")
def test_put_that_would_evict_leased_blocks_is_refused(memkv: Context) -> None:
    small = memkv.small(CAPACITY)
    t = small.transport()
    t.invalidate_namespace()
    keys = [small.key() for _ in range(CAPACITY // BLOCK - 4)]
    for i, key in enumerate(keys):
        put_ok(t, key, payload(i, BLOCK), "MKV-CAP-003")
    lease = t.lookup(keys, lease_ms=60_000)
    check("MKV-OPS-007", lease.prefix_len == len(keys) and lease.lease_id is not None, "lease over every block",
          len(keys), lease.prefix_len)
    big = small.key()
    expect_code("MKV-CAP-003", "a put that fits only by evicting leased blocks",
                lambda: t.put([PutItem(big, payload(99, CAPACITY // 2))]), [E.CAPACITY_EXCEEDED],
                f"fill a {CAPACITY}-byte target to ~90% with leased blocks; put {CAPACITY // 2} bytes")
    present = t.exists(keys)
    check("MKV-CAP-003", all(present), "a refused put evicts nothing", len(keys), sum(present))
    check("MKV-CAP-003", t.exists([big]) == [False], "the refused block is not stored", False, True)
    t.release_lease(str(lease.lease_id))
    expect_code("MKV-CAP-003", "the same put once the lease is released",
                lambda: t.put([PutItem(big, payload(99, CAPACITY // 2))]), [E.OK])


@pytest.mark.requirement("MKV-OPS-007")
def test_leased_blocks_are_not_evicted(memkv: Context) -> None:
    small = memkv.small(CAPACITY)
    t = small.transport()
    t.invalidate_namespace()
    leased = [small.key() for _ in range(6)]
    for i, key in enumerate(leased):
        put_ok(t, key, payload(i, BLOCK), "MKV-OPS-007")
    lease = t.lookup(leased, lease_ms=60_000)
    check("MKV-OPS-007", lease.prefix_len == 6, "lease covers the chain", 6, lease.prefix_len)
    for i in range(CAPACITY // BLOCK * 2):
        t.put([PutItem(small.key(), payload(100 + i, BLOCK))])
    lost = [i for i, k in enumerate(leased) if not t.exists([k])[0]]
    check("MKV-OPS-007", not lost, "blocks under a live lease survive pressure of 2x capacity", "all 6 kept",
          f"lost {lost}", "put 6 blocks; lookup(lease_ms=60000); put 2x capacity of other blocks")
    if lease.lease_id is not None:
        t.release_lease(lease.lease_id)


@pytest.mark.requirement("MKV-ERR-002", "MKV-BLK-005")
@pytest.mark.parametrize("size", [BLOCK, CAPACITY // 2])
def test_refused_checksum_evicts_nothing_from_a_full_target(memkv: Context, size: int) -> None:
    """A put that would have to evict to fit, refused for its declared checksum, changes nothing."""
    small = memkv.small(CAPACITY)
    t = small.transport()
    t.invalidate_namespace()
    keys = [small.key() for _ in range(CAPACITY // BLOCK)]
    for i, key in enumerate(keys):
        put_ok(t, key, payload(i, BLOCK), "MKV-ERR-002")
    kept = [k for k, present in zip(keys, t.exists(keys), strict=True) if present]
    data = payload(77, size)
    bad = small.key()
    expect_code("MKV-BLK-005", f"put of {size} bytes with a wrong declared checksum into a full target",
                lambda: t.put([PutItem(bad, data, checksum=payload_checksum(data) ^ 1)]), [E.CHECKSUM_MISMATCH])
    still = sum(t.exists(kept))
    check("MKV-ERR-002", still == len(kept), "a put refused for its checksum evicts nothing", f"{len(kept)} kept",
          f"{len(kept) - still} evicted",
          f"fill a {CAPACITY}-byte target with {BLOCK}-byte blocks; put {size} bytes, checksum=xxh3(data)^1")
