"""Invalidation by keys, prefix, session, model and namespace (MKV-INV-001..006, MKV-INV-008)."""

from __future__ import annotations

import pytest

from memkv.blocks import BlockMeta
from memkv.conformance.support import Context, check, expect_code, kept, payload, put_ok, read
from memkv.errors import ErrorCode
from memkv.transport import Transport

E = ErrorCode


def _gone(req: str, t: Transport, key: bytes, why: str) -> None:
    got = read(t, key)
    check(req, got is None, f"{why}: get is NOT_FOUND", "NOT_FOUND", "the block's bytes" if got else got)
    check(req, t.exists([key]) == [False], f"{why}: exists is false", False, True)
    check(req, t.lookup([key]).prefix_len == 0, f"{why}: lookup stops there", 0, t.lookup([key]).prefix_len)


@pytest.mark.requirement("MKV-INV-001")
def test_invalidate_keys(memkv: Context) -> None:
    t = memkv.transport()
    keys = [memkv.key() for _ in range(4)]
    for i, k in enumerate(keys):
        put_ok(t, k, payload(i, 300), "MKV-INV-001")
    count = t.invalidate_keys([keys[1], keys[2], memkv.key()])
    check("MKV-INV-001", count == 2, "invalidate_keys returns how many existed", 2, count)
    for k in keys[1:3]:
        _gone("MKV-INV-001", t, k, "after invalidate_keys")
    check("MKV-INV-001", t.lookup(keys).prefix_len == 1, "lookup of the chain stops at the first invalidated block",
          1, t.lookup(keys).prefix_len)
    kept("MKV-INV-001", t, keys[3], payload(3, 300), "other blocks stay")


@pytest.mark.requirement("MKV-INV-002")
def test_invalidate_prefix_removes_descendants(memkv: Context) -> None:
    t = memkv.transport()
    # a tree: r -> a -> b -> c, and a -> d (branch), r -> e (sibling branch)
    names = "rabcde"
    keys = {n: memkv.key() for n in names}
    parent = {"r": None, "a": "r", "b": "a", "c": "b", "d": "a", "e": "r"}
    for i, n in enumerate(names):
        p = parent[n]
        meta = BlockMeta(parent=keys[p]) if p else BlockMeta()
        put_ok(t, keys[n], payload(i, 200), "MKV-INV-002", meta=meta)
    count = t.invalidate_prefix(keys["a"])
    check("MKV-INV-002", count == 4, "invalidate_prefix(a) counts a, b, c, d", 4, count)
    for n in "abcd":
        _gone("MKV-INV-002", t, keys[n], f"block {n} chained after the invalidated prefix")
    for n in "re":
        check("MKV-INV-002", read(t, keys[n]) is not None, f"block {n} (ancestor or sibling) is kept", "kept", "gone")


@pytest.mark.requirement("MKV-INV-008")
def test_invalidate_prefix_of_a_key_that_is_not_stored(memkv: Context) -> None:
    t = memkv.transport()
    # r -> a -> b -> c; r is deleted first, then invalidated as a prefix
    keys = {n: memkv.key() for n in "rabc"}
    parent = {"r": None, "a": "r", "b": "a", "c": "b"}
    for i, n in enumerate("rabc"):
        p = parent[n]
        put_ok(t, keys[n], payload(i, 150), "MKV-INV-008", meta=BlockMeta(parent=keys[p]) if p else BlockMeta())
    count = t.invalidate_prefix(bytes(16))
    check("MKV-INV-008", count == 0 and t.exists([keys["r"]]) == [True], "the root (16 zero bytes) is no block's "
          "parent: invalidating it as a prefix leaves first blocks alone", "0, r kept", count)
    check("MKV-INV-008", t.delete([keys["r"]])[0].ok, "the prefix block is deleted first", "OK", "refused")
    count = t.invalidate_prefix(keys["r"])
    check("MKV-INV-008", count == 3, "invalidate_prefix of a deleted key removes and counts what is chained "
          "after it", 3, count)
    for n in "abc":
        _gone("MKV-INV-008", t, keys[n], f"block {n} chained after a prefix that was not stored")
    never = memkv.key()
    count = t.invalidate_prefix(never)
    check("MKV-INV-008", count == 0, "invalidate_prefix of a key never put, with nothing after it, removes "
          "nothing", 0, count)


@pytest.mark.requirement("MKV-INV-003")
def test_invalidate_session(memkv: Context) -> None:
    t = memkv.transport()
    keys = [memkv.key() for _ in range(4)]
    for i, k in enumerate(keys):
        put_ok(t, k, payload(i, 100), "MKV-INV-003")
    sid = t.open_session(3600.0, keys[:3]).session_id
    count = t.invalidate_session(sid)
    check("MKV-INV-003", count == 3, "invalidate_session returns the blocks removed", 3, count)
    for k in keys[:3]:
        _gone("MKV-INV-003", t, k, "block of an invalidated session")
    check("MKV-INV-003", read(t, keys[3]) is not None, "blocks outside the session stay", "kept", "gone")
    info = t.session_info(sid)
    check("MKV-INV-003", info.state.value == "open", "the session stays", "open", info.state.value)


@pytest.mark.requirement("MKV-INV-004")
def test_invalidate_model(memkv: Context) -> None:
    t = memkv.transport()
    other_ns = memkv.transport()
    fa, fb = bytes([0xA] * 16), bytes([0xB] * 16)
    a = [memkv.key() for _ in range(3)]
    b = [memkv.key() for _ in range(2)]
    for i, k in enumerate(a):
        put_ok(t, k, payload(i, 100), "MKV-INV-004", meta=BlockMeta(fingerprint=fa))
    for i, k in enumerate(b):
        put_ok(t, k, payload(10 + i, 100), "MKV-INV-004", meta=BlockMeta(fingerprint=fb))
    put_ok(other_ns, a[0], payload(0, 100), "MKV-INV-004", meta=BlockMeta(fingerprint=fa))
    count = t.invalidate_model(fa)
    check("MKV-INV-004", count == 3, "invalidate_model counts the model's blocks", 3, count)
    for k in a:
        _gone("MKV-INV-004", t, k, "block of the invalidated model")
    for k in b:
        check("MKV-INV-004", read(t, k) is not None, "blocks of other models stay", "kept", "gone")
    kept("MKV-INV-004", other_ns, a[0], payload(0, 100), "the same model in another namespace stays")


@pytest.mark.requirement("MKV-INV-005", "MKV-ERR-001")
def test_invalidate_namespace(memkv: Context) -> None:
    t = memkv.transport()
    other = memkv.transport()
    keys = [memkv.key() for _ in range(3)]
    for i, k in enumerate(keys):
        put_ok(t, k, payload(i, 100), "MKV-INV-005")
        put_ok(other, k, payload(i, 100), "MKV-INV-005")
    lease = t.lookup(keys, lease_ms=60_000)
    sessions = "sessions" in memkv.claimed
    sid = t.open_session(3600.0, keys).session_id if sessions else ""
    count = t.invalidate_namespace()
    check("MKV-INV-005", count == 3, "invalidate_namespace counts the namespace's blocks", 3, count)
    for k in keys:
        _gone("MKV-INV-005", t, k, "block of the invalidated namespace")
        kept("MKV-INV-005", other, k, payload(keys.index(k), 100), "other namespaces keep their blocks")
    if lease.lease_id is not None:
        lease_id = lease.lease_id
        expect_code("MKV-INV-005", "release of a lease of the invalidated namespace",
                    lambda: t.release_lease(lease_id), [E.UNKNOWN_LEASE])
    if sessions:
        expect_code("MKV-INV-005", "a session of the invalidated namespace", lambda: t.session_info(sid),
                    [E.UNKNOWN_SESSION])


@pytest.mark.requirement("MKV-INV-006")
def test_invalidation_overrides_leases(memkv: Context) -> None:
    t = memkv.transport()
    keys = [memkv.key() for _ in range(3)]
    for i, k in enumerate(keys):
        put_ok(t, k, payload(i, 100), "MKV-INV-006")
    lease = t.lookup(keys, lease_ms=60_000)
    check("MKV-INV-006", lease.prefix_len == 3, "lookup with lease", 3, lease.prefix_len)
    t.invalidate_keys([keys[1]])
    _gone("MKV-INV-006", t, keys[1], "a leased block after invalidate_keys")
    t.invalidate_prefix(keys[2])
    _gone("MKV-INV-006", t, keys[2], "a leased block after invalidate_prefix")
