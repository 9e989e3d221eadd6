"""Core requirements in more than one shape: sizes around piece boundaries, batch shapes with mixed
outcomes, histories (read, delete, read again), timings (expired leases) and the cases the
example-based checks never reached. Sizes and batch shapes are Hypothesis properties (drawn from
the run's seed, shrunk to a minimal shape when one fails); other positions are drawn from the
run's seed."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import strategies as st

from memkv.blocks import BlockMeta
from memkv.checksum import payload_checksum
from memkv.conformance.properties import block_sizes, prove
from memkv.conformance.support import Context, check, expect_code, payload, put_ok, read
from memkv.errors import ErrorCode, MemkvError
from memkv.transport import PutItem, Transport

E = ErrorCode
KiB = 1024
MiB = 1024 * KiB
SMALL = 2 * MiB
BLOCK = 64 * KiB
SENTINEL = 0xA5


@pytest.mark.requirement("MKV-OPS-005")
def test_bytes_beyond_the_block_are_left_alone(memkv: Context) -> None:
    t = memkv.transport()

    def left_alone(size: int, slack: int) -> None:
        key = memkv.key()
        data = payload(memkv.rng.randrange(2**32), size)
        put_ok(t, key, data, "MKV-OPS-005")
        buf = bytearray([SENTINEL]) * (size + slack)
        res = t.get_into([key], [buf])[0]
        check("MKV-OPS-005", res.ok and bytes(buf[:size]) == data, f"get of {size} bytes into a larger buffer",
              "OK", res.status.name)
        changed = [size + i for i, b in enumerate(buf[size:]) if b != SENTINEL]
        check("MKV-OPS-005", not changed, f"bytes of the caller's buffer beyond the {size}-byte block are untouched",
              "unchanged", f"{len(changed)} changed, first at offset {changed[0] if changed else None}",
              f"put {size} bytes; get_into a buffer of {size + slack} bytes filled with 0xA5")
        t.delete([key])

    prove(memkv, left_alone, size=block_sizes(MiB + 4 * KiB), slack=st.integers(1, 8 * KiB))


@pytest.mark.requirement("MKV-OPS-005")
def test_missing_key_inside_a_batch_get(memkv: Context) -> None:
    t = memkv.transport()
    present = [memkv.key() for _ in range(2)]
    for i, key in enumerate(present):
        put_ok(t, key, payload(i, 300), "MKV-OPS-005")
    keys = [present[0], memkv.key(), present[1]]
    got = t.get_into(keys, [bytearray(400) for _ in keys])
    check("MKV-OPS-005", [g.status for g in got] == [E.OK, E.NOT_FOUND, E.OK], "a missing key in a batch get",
          "OK NOT_FOUND OK", " ".join(g.status.name for g in got), "get_into([present, missing, present])")


@pytest.mark.requirement("MKV-OPS-001", "MKV-BLK-001")
def test_sizes_around_piece_boundaries(memkv: Context) -> None:
    """Every size from 1 byte to max_block_size (up to 16 MiB), near piece boundaries half the time."""
    t = memkv.transport()

    def round_trip(size: int) -> None:
        key = memkv.key()
        data = payload(memkv.rng.randrange(2**32), size)
        put_ok(t, key, data, "MKV-BLK-001")
        got = read(t, key)
        t.delete([key])
        check("MKV-OPS-001", got == data, f"get after put of {size} bytes", f"{size} bytes put",
              "absent" if got is None else f"{len(got)} bytes, other content" if len(got) == size else len(got),
              f"put then get one block of {size} bytes")

    prove(memkv, round_trip, size=block_sizes(min(memkv.limits.max_block_size, 16 * MiB)))


PUT_OUTCOMES = {"new": E.OK, "same": E.OK, "conflict": E.KEY_CONFLICT, "checksum": E.CHECKSUM_MISMATCH}


@pytest.mark.requirement("MKV-OPS-003")
def test_batch_shapes_with_mixed_outcomes(memkv: Context) -> None:
    """Puts of 1..max_batch items, each new, an identical re-put, a conflicting re-put or a wrong
    checksum, in any order; statuses per item and in order, the good items stored."""
    t = memkv.transport()
    stored = memkv.key()
    stored_data = payload(1, 100)
    put_ok(t, stored, stored_data, "MKV-OPS-003")

    def mixed_put(kinds: list[str]) -> None:
        items, keys = [], []
        for i, kind in enumerate(kinds):
            key = stored if kind in ("same", "conflict") else memkv.key()
            data = stored_data if kind == "same" else payload(1000 + i, 200 + i)
            checksum = payload_checksum(data) ^ 1 if kind == "checksum" else None
            items.append(PutItem(key, data, checksum=checksum))
            keys.append(key)
        want = [PUT_OUTCOMES[kind] for kind in kinds]
        results = t.put(items)
        check("MKV-OPS-003", [r.status for r in results] == want,
              f"per-item statuses of a {len(kinds)}-item put, in order", [s.name for s in want],
              [r.status.name for r in results], f"put batch {kinds}")
        new = [k for k, kind in zip(keys, kinds, strict=True) if kind == "new"]
        present = t.exists(new) if new else []
        check("MKV-OPS-003", all(present), "the good items of a mixed batch are stored", len(new), sum(present),
              f"put batch {kinds}")
        refused = [k for k, kind in zip(keys, kinds, strict=True) if kind == "checksum"]
        stored_refused = sum(t.exists(refused)) if refused else 0
        check("MKV-OPS-003", not stored_refused, "the refused items of a mixed batch are not stored", 0,
              stored_refused, f"put batch {kinds}")

    kinds = st.lists(st.sampled_from(sorted(PUT_OUTCOMES)), min_size=1, max_size=memkv.limits.max_batch)
    prove(memkv, mixed_put, kinds=kinds)


@pytest.mark.requirement("MKV-OPS-003", "MKV-OPS-005", "MKV-OPS-001")
def test_batch_get_shapes_with_missing_keys(memkv: Context) -> None:
    """Gets of 1..max_batch keys, each stored or missing, in any order: statuses and bytes per item."""
    t = memkv.transport()

    def mixed_get(present: list[bool]) -> None:
        keys = [memkv.key() for _ in present]
        blocks = {k: payload(memkv.rng.randrange(2**32), 64 + i) for i, (k, p) in enumerate(zip(keys, present,
                                                                                                 strict=True)) if p}
        if blocks:
            results = t.put([PutItem(k, d) for k, d in blocks.items()])
            check("MKV-OPS-003", all(r.ok for r in results), "put of new blocks", "OK",
                  [r.status.name for r in results])
        buffers = [bytearray(64 + len(keys)) for _ in keys]
        got = t.get_into(keys, buffers)
        shape = f"get_into of keys present (P) or missing (-): {''.join('P' if p else '-' for p in present)}"
        check("MKV-OPS-003", len(got) == len(keys), f"one result per key of a {len(keys)}-key get", len(keys),
              len(got), shape)
        for i, (key, result) in enumerate(zip(keys, got, strict=True)):
            if key not in blocks:
                check("MKV-OPS-005", result.status is E.NOT_FOUND, f"item {i} of the batch: a missing key",
                      "NOT_FOUND", result.status.name, shape)
                continue
            check("MKV-OPS-001", result.ok and bytes(buffers[i][: result.length]) == blocks[key],
                  f"item {i} of the batch: a stored key", f"OK, the {len(blocks[key])} bytes put",
                  f"{result.status.name}, {result.length} bytes", shape)
        if blocks:
            t.delete(list(blocks))

    prove(memkv, mixed_get, present=st.lists(st.booleans(), min_size=1, max_size=memkv.limits.max_batch))


@pytest.mark.requirement("MKV-OPS-004", "MKV-ERR-002", "MKV-ERR-001")
@pytest.mark.parametrize("operation", ["lookup", "stat"])
def test_lookup_and_stat_batch_limits(memkv: Context, operation: str) -> None:
    t = memkv.transport()
    n = memkv.limits.max_batch
    if n > 4096:
        pytest.skip(f"declared max_batch {n} is larger than this suite sends (4096)")
    keys = [memkv.key() for _ in range(n + 1)]
    put_ok(t, keys[0], b"first", "MKV-OPS-004")
    call = (lambda ks: t.lookup(ks)) if operation == "lookup" else (lambda ks: t.stat(ks))
    try:
        answer = call(keys)
    except MemkvError as exc:
        check("MKV-OPS-004", exc.code is E.LIMIT_EXCEEDED, f"{operation} of max_batch+1 = {n + 1} keys",
              "LIMIT_EXCEEDED", exc.code.name)
    else:
        check("MKV-OPS-004", False, f"{operation} of max_batch+1 = {n + 1} keys", "LIMIT_EXCEEDED",
              f"answered: {str(answer)[:80]}", f"t.{operation}([{n + 1} keys])")
    call(keys[:n])


@pytest.mark.requirement("MKV-OPS-010")
def test_non_blocking_forms_with_short_buffers_and_conflicts(memkv: Context) -> None:
    t = memkv.transport()
    keys = [memkv.key() for _ in range(3)]
    datas = [payload(40 + i, 5000) for i in range(3)]
    put_ok(t, keys[0], datas[0], "MKV-OPS-010")
    short = bytearray(4999)
    got = t.get_into_async([keys[0]], [short]).result(timeout=60)[0]
    check("MKV-OPS-010", got.status is E.BUFFER_TOO_SMALL, "get_into_async into a buffer one byte short",
          "BUFFER_TOO_SMALL (as get_into)", f"{got.status.name} length {got.length}")
    results = t.put_async([PutItem(keys[1], datas[1]), PutItem(keys[0], datas[2]), PutItem(keys[2], datas[2])]
                          ).result(timeout=60)
    check("MKV-OPS-010", [r.status for r in results] == [E.OK, E.KEY_CONFLICT, E.OK],
          "put_async of three items with a conflict in the middle", "OK KEY_CONFLICT OK",
          " ".join(r.status.name for r in results))


@pytest.mark.requirement("MKV-OPS-006")
def test_lookup_over_chain_lengths(memkv: Context) -> None:
    t = memkv.transport()
    length = min(memkv.limits.max_batch, 48)
    chain = [memkv.key() for _ in range(length)]
    for i, key in enumerate(chain):
        put_ok(t, key, payload(i, 64), "MKV-OPS-006")
    for n in sorted({1, 8, 9, memkv.rng.randint(2, length), length}):
        got = t.lookup(chain[:n]).prefix_len
        check("MKV-OPS-006", got == n, f"lookup of a fully present {n}-key chain", n, got)
    gap = memkv.rng.randint(9, length - 1)
    t.delete([chain[gap]])
    got = t.lookup(chain).prefix_len
    check("MKV-OPS-006", got == gap, f"lookup of a {length}-key chain missing key {gap}", gap, got)


@pytest.mark.requirement("MKV-OPS-009")
def test_read_delete_read_again(memkv: Context) -> None:
    t = memkv.transport()
    key, other = memkv.key(), memkv.key()
    data = payload(50, 2000)
    put_ok(t, key, data, "MKV-OPS-009")
    check("MKV-OPS-009", read(t, key) == data, "the block reads back", "the bytes put", "other")
    res = t.delete([key])[0]
    check("MKV-OPS-009", res.ok, "delete of a block just read", "OK", res.status.name)
    check("MKV-OPS-009", read(t, key) is None, "a deleted block is NOT_FOUND even if it was read before",
          "NOT_FOUND", "the block's bytes", "put; get; delete; get")
    put_ok(t, other, b"keep", "MKV-OPS-009")
    results = t.delete([other, key])
    check("MKV-OPS-009", [r.status for r in results] == [E.OK, E.NOT_FOUND], "a batch delete with an absent key",
          "OK NOT_FOUND", " ".join(r.status.name for r in results), "delete([present, absent])")


@pytest.mark.requirement("MKV-INV-001")
def test_invalidate_many_keys_and_cached_lookups(memkv: Context) -> None:
    t = memkv.transport()
    keys = [memkv.key() for _ in range(24)]
    for i, k in enumerate(keys):
        put_ok(t, k, payload(i, 100), "MKV-INV-001")
    check("MKV-INV-001", t.lookup(keys).prefix_len == 24, "lookup before invalidation", 24, t.lookup(keys).prefix_len)
    doomed = keys[3:20]
    count = t.invalidate_keys(doomed)
    present = t.exists(doomed)
    check("MKV-INV-001", not any(present), f"invalidate_keys of {len(doomed)} keys removes them all", 0,
          sum(present), f"invalidate_keys([{len(doomed)} keys])")
    check("MKV-INV-001", count == len(doomed), "invalidate_keys counts what it removed", len(doomed), count)
    check("MKV-INV-001", t.lookup(keys).prefix_len == 3, "lookup of the chain stops at the first invalidated key",
          3, t.lookup(keys).prefix_len, "lookup(chain); invalidate_keys(chain[3:20]); lookup(chain)")


@pytest.mark.requirement("MKV-INV-002")
def test_invalidate_prefix_of_a_deep_chain(memkv: Context) -> None:
    t = memkv.transport()
    depth = 10
    chain = [memkv.key() for _ in range(depth)]
    branch = memkv.key()
    for i, key in enumerate(chain):
        put_ok(t, key, payload(i, 80), "MKV-INV-002", meta=BlockMeta(parent=chain[i - 1]) if i else BlockMeta())
    put_ok(t, branch, payload(99, 80), "MKV-INV-002", meta=BlockMeta(parent=chain[6]))
    count = t.invalidate_prefix(chain[1])
    left = [i for i, p in enumerate(t.exists(chain)) if p]
    check("MKV-INV-002", left == [0] and t.exists([branch]) == [False], "invalidate_prefix removes every "
          f"descendant of a {depth}-deep chain", "only the root left", f"left at depths {left}",
          f"put a {depth}-block chain and a branch at depth 7; invalidate_prefix(chain[1])")
    check("MKV-INV-002", count == depth, "invalidate_prefix counts every removed block", depth, count)


@pytest.mark.requirement("MKV-INV-004")
def test_invalidate_model_with_fingerprints_differing_in_one_byte(memkv: Context) -> None:
    t = memkv.transport()
    base = bytes(memkv.rng.randbytes(16))
    position = memkv.rng.choice((0, 7, 15))
    other = bytearray(base)
    other[position] ^= 0x80
    mine, theirs = [memkv.key() for _ in range(3)], [memkv.key() for _ in range(3)]
    for i, k in enumerate(mine):
        put_ok(t, k, payload(i, 90), "MKV-INV-004", meta=BlockMeta(fingerprint=base))
    for i, k in enumerate(theirs):
        put_ok(t, k, payload(10 + i, 90), "MKV-INV-004", meta=BlockMeta(fingerprint=bytes(other)))
    t.invalidate_model(base)
    check("MKV-INV-004", not any(t.exists(mine)) and all(t.exists(theirs)),
          f"invalidate_model removes its model only (the other differs in byte {position})",
          "3 removed, 3 kept", f"{3 - sum(t.exists(mine))} removed, {sum(t.exists(theirs))} kept")


@pytest.mark.requirement("MKV-INV-005")
def test_invalidate_a_namespace_of_many_blocks(memkv: Context) -> None:
    t = memkv.transport()
    keys = [memkv.key() for _ in range(100)]
    for start in range(0, 100, 25):
        results = t.put([PutItem(k, payload(start + i, 64)) for i, k in enumerate(keys[start:start + 25])])
        check("MKV-INV-005", all(r.ok for r in results), "puts of 100 blocks", "OK", "refused")
    count = t.invalidate_namespace()
    left = sum(t.exists(keys))
    check("MKV-INV-005", left == 0 and count == 100, "invalidate_namespace removes all 100 blocks",
          "100 removed", f"count {count}, {left} left", "put 100 blocks; invalidate_namespace")


@pytest.mark.requirement("MKV-NS-001")
@pytest.mark.parametrize("pair", [("a.b", "a-b"), ("Ab", "ab"), ("x_1", "x-1")], ids=["dot-dash", "case", "underscore"])
def test_namespaces_with_similar_names(memkv: Context, pair: tuple[str, str]) -> None:
    tag = memkv.namespace("n").replace("-", "")[-12:]
    a, b = (memkv.transport(f"{name}{tag}") for name in pair)
    key = memkv.key()
    put_ok(a, key, payload(1, 100), "MKV-NS-001")
    check("MKV-NS-001", b.exists([key]) == [False] and read(b, key) is None,
          f"a block of namespace {pair[0]}... is invisible in {pair[1]}...", "absent", "present",
          f"put in namespace {pair[0]}{tag}; get in {pair[1]}{tag}")


@pytest.mark.requirement("MKV-NS-001")
def test_multi_key_stat_across_namespaces(memkv: Context) -> None:
    a, b = memkv.transport(), memkv.transport()
    mine, theirs = memkv.key(), memkv.key()
    put_ok(a, mine, payload(1, 100), "MKV-NS-001")
    put_ok(b, theirs, payload(2, 100), "MKV-NS-001")
    infos = a.stat([mine, theirs, memkv.key()])
    check("MKV-NS-001", infos[0] is not None and infos[1] is None and infos[2] is None,
          "a multi-key stat sees only its own namespace", "[info, None, None]",
          ["info" if i else None for i in infos], "stat([own key, other namespace's key, absent key])")
    check("MKV-NS-001", a.exists([mine, theirs]) == [True, False], "a multi-key exists sees only its own namespace",
          [True, False], a.exists([mine, theirs]))


def _filled(small: Context, t: Transport, count: int, base: int = 0) -> list[bytes]:
    keys = [small.key() for _ in range(count)]
    for i, key in enumerate(keys):
        put_ok(t, key, payload(base + i, BLOCK), "MKV-CAP-002")
    return keys


@pytest.mark.requirement("MKV-CAP-001", "MKV-OPS-001")
def test_declared_capacity_is_really_held(memkv: Context) -> None:
    small, t = memkv.empty_small(SMALL)
    declared = small.caps.capacity_bytes
    if declared is None:
        pytest.skip("the target declares no capacity_bytes")
    keys = _filled(small, t, declared // BLOCK)
    present = sum(t.exists(keys))
    check("MKV-CAP-001", present == len(keys), f"the declared capacity of {declared} bytes holds "
          f"{len(keys)} blocks of {BLOCK} bytes without eviction", len(keys), present,
          f"fill a target declaring {declared} bytes with {BLOCK}-byte blocks")
    freed = [k for i, k in enumerate(keys) if i % 3 != 2]
    kept = keys[2::3]
    t.delete(freed)
    big = [small.key() for _ in range(len(freed) // 3 - 1)]
    for i, key in enumerate(big):
        put_ok(t, key, payload(700 + i, 3 * BLOCK), "MKV-CAP-001")
    check("MKV-CAP-001", all(t.exists(kept)) and all(t.exists(big)), "blocks larger than any free hole fill the "
          "fragmented free space without eviction", f"{len(kept)} + {len(big)} present",
          f"{sum(t.exists(kept))} + {sum(t.exists(big))} present",
          f"fill with {BLOCK}-byte blocks; delete two of every three; put {len(big)} blocks of {3 * BLOCK} bytes")
    for i, key in enumerate(big):  # a block stored across several holes reads back whole
        check("MKV-OPS-001", read(t, key) == payload(700 + i, 3 * BLOCK), "get of a block put into fragmented free "
              "space returns exactly its bytes", "the bytes put", "other bytes", "the above; get each large block")
    for order in ("put", "reverse"):  # freed in either order, the free space joins up again
        if order == "reverse":
            keys = _filled(small, t, declared // BLOCK - 1)
            t.delete(keys[::-1])
        else:
            t.invalidate_namespace()
        whole = small.key()
        size = min(declared - BLOCK, small.limits.max_block_size)
        data = payload(800, size)
        put_ok(t, whole, data, "MKV-CAP-001")
        check("MKV-CAP-001", read(t, whole) == data, "after emptying it, the target holds one block of its whole "
              "declared capacity but one unit", True, False,
              f"the above; {'fill, delete in reverse order' if order == 'reverse' else 'invalidate_namespace'}; "
              f"put and get {size} bytes")
        t.delete([whole])


@pytest.mark.requirement("MKV-CAP-002")
def test_multi_item_put_larger_than_the_target(memkv: Context) -> None:
    small, t = memkv.empty_small(SMALL)
    _filled(small, t, SMALL // BLOCK // 2)
    keys = [small.key() for _ in range(SMALL // BLOCK * 3 // 2)]
    results = t.put([PutItem(k, payload(500 + i, BLOCK)) for i, k in enumerate(keys)])
    check("MKV-CAP-002", all(r.ok for r in results), f"a {len(keys)}-item put of 1.5x capacity evicts to fit each item",
          "all OK", sorted({r.status.name for r in results}), f"put [{len(keys)} x {BLOCK} bytes] into {SMALL} bytes")
    check("MKV-CAP-002", t.exists(keys[-1:]) == [True], "the last item of the batch is stored", True, False)


@pytest.mark.requirement("MKV-CAP-002")
def test_expired_lease_no_longer_protects(memkv: Context) -> None:
    small, t = memkv.empty_small(SMALL)
    keys = _filled(small, t, SMALL // BLOCK - 2)
    lease = t.lookup(keys, lease_ms=200)
    check("MKV-CAP-002", lease.lease_id is not None, "a short lease over the store", "a lease", None)
    time.sleep(0.5)
    expect_code("MKV-CAP-002", "a put needing the space of blocks whose lease expired",
                lambda: t.put([PutItem(small.key(), payload(9, SMALL // 2))]), [E.OK],
                f"fill {SMALL} bytes; lookup(lease_ms=200); wait 0.5 s; put {SMALL // 2} bytes")


@pytest.mark.requirement("MKV-OPS-007")
def test_lease_over_a_partly_present_chain_protects_its_prefix(memkv: Context) -> None:
    small, t = memkv.empty_small(SMALL)
    chain = _filled(small, t, 6)
    lease = t.lookup([*chain, small.key(), small.key()], lease_ms=60_000)
    check("MKV-OPS-007", lease.prefix_len == 6 and lease.lease_id is not None, "lease over a partly present chain",
          "prefix 6 with a lease", lease)
    _filled(small, t, SMALL // BLOCK * 2, base=100)
    lost = [i for i, present in enumerate(t.exists(chain)) if not present]
    check("MKV-OPS-007", not lost, "the present prefix of a partly present chain stays leased under pressure",
          "all 6 kept", f"lost {lost}", "put 6 blocks; lookup(6 present + 2 absent keys, lease); put 2x capacity")
    if lease.lease_id is not None:
        t.release_lease(lease.lease_id)


@pytest.mark.requirement("MKV-CAP-003")
def test_refused_put_keeps_unleased_blocks(memkv: Context) -> None:
    small, t = memkv.empty_small(SMALL)
    leased = _filled(small, t, SMALL // BLOCK // 2)
    lease = t.lookup(leased, lease_ms=60_000)
    free = _filled(small, t, SMALL // BLOCK // 4, base=100)
    expect_code("MKV-CAP-003", "a put larger than everything unleased", lambda: t.put(
        [PutItem(small.key(), payload(7, SMALL * 3 // 4))]), [E.CAPACITY_EXCEEDED])
    check("MKV-CAP-003", all(t.exists(free)), "a refused put evicts nothing, not even unleased blocks",
          len(free), sum(t.exists(free)), "lease half the store, fill a quarter unleased, put 3/4 of the store")
    if lease.lease_id is not None:
        t.release_lease(lease.lease_id)


FRAGMENTED = 16 * MiB + 2 * BLOCK


@pytest.mark.requirement("MKV-CAP-001", "MKV-OPS-001")
def test_free_space_joins_up_after_removals_of_mixed_sizes_in_any_order(memkv: Context) -> None:
    """Blocks of one to three units removed in a shuffled order: whichever neighbour is freed first,
    the free space joins up and the target holds one block of its whole declared capacity again."""
    small, t = memkv.empty_small(FRAGMENTED)
    declared = small.caps.capacity_bytes
    if declared is None:
        pytest.skip("the target declares no capacity_bytes")
    keys: list[bytes] = []
    used = 0
    while used + 4 * BLOCK <= declared:  # fills without eviction
        size = small.rng.choice((1, 2, 3)) * BLOCK
        keys.append(small.key())
        put_ok(t, keys[-1], payload(900 + len(keys), size), "MKV-CAP-001")
        used += size
    small.rng.shuffle(keys)
    for start in range(0, len(keys), small.limits.max_batch):
        t.delete(keys[start : start + small.limits.max_batch])
    whole = small.key()
    size = min(declared - BLOCK, small.limits.max_block_size)
    data = payload(950, size)
    repro = (f"put {len(keys)} blocks of 1-3 x {BLOCK} bytes (seed {small.seed}); delete them in a shuffled order; "
             f"put {size} bytes")
    put_ok(t, whole, data, "MKV-CAP-001")  # it fits: the capacity is whole again
    check("MKV-OPS-001", read(t, whole) == data, "get of a block of the whole declared capacity but one unit, put "
          "after removals of mixed sizes in any order, returns exactly its bytes", True, False, repro)
    t.delete([whole])


@pytest.mark.requirement("MKV-CAP-001", "MKV-CAP-002")
def test_a_block_fits_the_few_large_holes_among_many_small_ones(memkv: Context) -> None:
    """Free space of 20 one-unit holes and 3 holes of 6 units: a block of 17 units fits the large
    holes, so it is stored without evicting anything (it fits in free space, MKV-CAP-002), however many
    small holes lie before them."""
    small, t = memkv.empty_small(FRAGMENTED)
    declared = small.caps.capacity_bytes
    if declared is None:
        pytest.skip("the target declares no capacity_bytes")
    keys = _filled(small, t, declared // BLOCK - 1, base=1100)
    batch = small.limits.max_batch
    present = sum(sum(t.exists(keys[i : i + batch])) for i in range(0, len(keys), batch))
    check("MKV-CAP-001", present == len(keys), f"the declared capacity of {declared} bytes holds {len(keys)} blocks "
          f"of {BLOCK} bytes without eviction", len(keys), present, f"fill a target declaring {declared} bytes")
    small_holes = keys[1:40:2]  # 20 holes of one unit, kept blocks between them
    large_holes = [k for start in (60, 80, 100) for k in keys[start : start + 6]]  # 3 holes of 6 units
    t.delete(small_holes + large_holes)
    removed = set(small_holes + large_holes)
    kept = [k for k in keys if k not in removed]
    size = 17 * BLOCK
    data = payload(1199, size)
    repro = (f"fill {declared} bytes with {BLOCK}-byte blocks; delete every other of the first 40 and three runs of "
             f"6; put {size} bytes")
    key = small.key()
    put_ok(t, key, data, "MKV-CAP-002")
    lost = [k for k, there in zip(kept, t.exists(kept), strict=True) if not there]
    check("MKV-CAP-002", not lost, "a block that fits the free space is stored without evicting", "nothing evicted",
          f"{len(lost)} blocks evicted", repro)
    check("MKV-OPS-001", read(t, key) == data, "get of a block put across holes returns exactly its bytes",
          "the bytes put", "other bytes", repro)


MANY_HOLES = 300  # more free holes than CPython keeps small ints for (-5..256): an `is` for `<` then shows


@pytest.mark.requirement("MKV-CAP-001", "MKV-OPS-009", "MKV-ERR-001")
def test_free_space_in_hundreds_of_holes_is_all_usable(memkv: Context) -> None:
    """A target full to its declared capacity, then every other block deleted (the first included):
    hundreds of one-unit holes. Deleting the last block, past every hole, works, and the holes and
    its space take as many blocks again without evicting any kept one."""
    small, t = memkv.empty_small(2 * MANY_HOLES * BLOCK)
    declared = small.caps.capacity_bytes
    if declared is None:
        pytest.skip("the target declares no capacity_bytes")
    batch = small.limits.max_batch
    keys = _filled(small, t, declared // BLOCK, base=1400)
    check("MKV-CAP-001", _present(t, keys, batch) == len(keys), f"the declared capacity of {declared} bytes "
          f"holds {len(keys)} blocks of {BLOCK} bytes without eviction", len(keys), _present(t, keys, batch))
    holes, kept, last = keys[:-1:2], keys[1:-1:2], keys[-1]
    repro = (f"fill {declared} bytes with {len(keys)} blocks of {BLOCK} bytes; delete every other but the last "
             f"({len(holes)} holes) in batches of {batch}; delete the last block; put {len(holes) + 1} blocks of "
             f"{BLOCK} bytes")
    for start in range(0, len(holes), batch):
        expect_code("MKV-OPS-009", f"delete of every other block, from block {2 * start} on",
                    lambda start=start: t.delete(holes[start : start + batch]), [E.OK], repro)  # type: ignore[misc]
    expect_code("MKV-OPS-009", f"delete of the last block put, with {len(holes)} holes before it",
                lambda: t.delete([last]), [E.OK], repro)
    refill = _filled(small, t, len(holes) + 1, base=1700)
    present = _present(t, kept + refill, batch)
    check("MKV-CAP-001", present == len(kept + refill), "the space of deleted blocks, in hundreds of holes, holds "
          "as many blocks again without eviction", len(kept + refill), present, repro)


def _present(t: Transport, keys: list[bytes], batch: int) -> int:
    return sum(sum(t.exists(keys[start : start + batch])) for start in range(0, len(keys), batch))


@pytest.mark.requirement("MKV-CAP-001", "MKV-OPS-001")
def test_space_of_a_block_deleted_while_read_is_free_again(memkv: Context) -> None:
    """A block deleted while gets of it are in progress stays readable to them, and its space is
    free once they end: afterwards the target holds one block of its whole declared capacity.
    One reader (a second one would hide a count that frees too early), several rounds, so that some
    delete lands while its get is in progress."""
    small, t = memkv.empty_small(FRAGMENTED)
    declared = small.caps.capacity_bytes
    if declared is None:
        pytest.skip("the target declares no capacity_bytes")
    size = min(declared // 2, small.limits.max_block_size)
    repro = f"{DELETE_ROUNDS} x (put {size} bytes; a thread gets it in a loop; delete it meanwhile); put " \
            f"{declared - BLOCK} bytes"
    for round_ in range(DELETE_ROUNDS):
        key, data = small.key(), payload(1300 + round_, size)
        put_ok(t, key, data, "MKV-CAP-001")
        answers: list[bytes | None] = []
        stop = threading.Event()
        reader = threading.Thread(target=_read_while, args=(t, key, stop, answers), daemon=True)
        reader.start()
        deadline = time.monotonic() + 10
        while not answers and time.monotonic() < deadline:
            time.sleep(0.001)
        t.delete([key])
        stop.set()
        reader.join(60)
        wrong = [a for a in answers if a is not None and a != data]
        check("MKV-OPS-001", not wrong, "gets racing a delete return the block's bytes or NOT_FOUND",
              "bytes or NOT_FOUND", f"{len(wrong)} gets returned other bytes", repro)
    whole = small.key()
    put_ok(t, whole, payload(1399, min(declared - BLOCK, small.limits.max_block_size)), "MKV-CAP-001")
    t.delete([whole])


DELETE_ROUNDS = 8


def _read_while(t: Transport, key: bytes, stop: threading.Event, answers: list[bytes | None]) -> None:
    while not stop.is_set():
        try:
            answers.append(read(t, key))
        except MemkvError:
            continue
