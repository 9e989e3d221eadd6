"""Eviction keeps prefixes usable (MKV-CAP-006, MKV-CAP-007, MKV-CAP-008) on a small instance of the target.

Each check fills the target one block at a time and looks at the blocks it cares about after
every put, so it does not depend on the target's exact capacity or overhead.
"""

from __future__ import annotations

import pytest

from memkv.blocks import BlockMeta
from memkv.conformance.support import Context, check, payload, put_ok, read
from memkv.transport import PutItem, Transport

KiB = 1024
MiB = 1024 * KiB
CAPACITY = 2 * MiB
BLOCK = 64 * KiB
FILL_LIMIT = CAPACITY // BLOCK * 2


def _put_chain(t: Transport, keys: list[bytes], seed: int, requirement: str) -> None:
    parent: bytes | None = None
    for i, key in enumerate(keys):
        meta = BlockMeta() if parent is None else BlockMeta(parent=parent)
        res = t.put([PutItem(key, payload(seed + i, BLOCK), meta)])[0]
        check(requirement, res.ok, f"put of chain block {i}", "OK", res.status.name)
        parent = key


def _fill_until(small: Context, t: Transport, watched: list[bytes], requirement: str) -> list[bool]:
    """Put fresh unchained blocks until one of `watched` is gone; the presence of `watched` then."""
    for i in range(FILL_LIMIT):
        put_ok(t, small.key(), payload(10_000 + i, BLOCK), requirement)
        present = t.exists(watched)
        if not all(present):
            return present
    pytest.fail(f"{FILL_LIMIT} puts of {BLOCK} bytes into a {CAPACITY}-byte target evicted none of the watched blocks")


@pytest.mark.requirement("MKV-CAP-006")
def test_in_order_reload_then_pressure_keeps_a_prefix(memkv: Context) -> None:
    small = memkv.small(CAPACITY)
    t = small.transport()
    t.invalidate_namespace()
    chain = [small.key() for _ in range(8)]
    _put_chain(t, chain, 0, "MKV-CAP-006")
    for key in chain:  # an engine reloads the prefix, head first
        read(t, key)
    present = _fill_until(small, t, chain, "MKV-CAP-006")
    check("MKV-CAP-006", present[-1] is False and present[0] is True,
          "the first block of a chain to be evicted is its tail", "tail evicted, head kept",
          f"present {present}", "put an 8-block chain, get it in order, put unchained blocks until one is evicted")
    stored = sum(present)
    check("MKV-CAP-006", t.lookup(chain).prefix_len == stored, "every stored block of the chain is reachable",
          stored, t.lookup(chain).prefix_len)


@pytest.mark.requirement("MKV-CAP-007")
def test_probes_do_not_count_as_uses(memkv: Context) -> None:
    small = memkv.small(CAPACITY)
    t = small.transport()
    t.invalidate_namespace()
    old, new = small.key(), small.key()
    put_ok(t, old, payload(1, BLOCK), "MKV-CAP-007")
    put_ok(t, new, payload(2, BLOCK), "MKV-CAP-007")
    t.exists([old])
    t.stat([old])
    t.lookup([old])
    lease = t.lookup([old], lease_ms=60_000)
    if lease.lease_id is not None:
        t.release_lease(lease.lease_id)
    put_ok(t, old, payload(1, BLOCK), "MKV-CAP-007")  # a re-put of identical bytes
    present = _fill_until(small, t, [old, new], "MKV-CAP-007")
    check("MKV-CAP-007", present == [False, True], "exists, stat, lookup, a lease and a re-put are not uses",
          "the older block evicted first", f"present [old, new] = {present}",
          "put A then B; probe A with exists, stat, lookup (with a lease) and a re-put; fill until one goes")


@pytest.mark.requirement("MKV-CAP-008")
def test_cut_chain_is_evicted_first(memkv: Context) -> None:
    small = memkv.small(CAPACITY)
    t = small.transport()
    t.invalidate_namespace()
    older = small.key()
    put_ok(t, older, payload(1, BLOCK), "MKV-CAP-008")
    chain = [small.key() for _ in range(3)]
    _put_chain(t, chain, 10, "MKV-CAP-008")
    t.delete([chain[0]])
    present = _fill_until(small, t, [older, chain[1], chain[2]], "MKV-CAP-008")
    check("MKV-CAP-008", present == [True, True, False], "a cut chain goes before complete ones, tail first",
          "[older, cut head, cut tail] = [True, True, False]", str(present),
          "put A, then a 3-block chain; delete the chain's head; fill until one of A and the rest goes")
