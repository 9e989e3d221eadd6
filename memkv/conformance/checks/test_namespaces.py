"""Namespaces isolate blocks, sessions and leases (MKV-NS-001..003)."""

from __future__ import annotations

import pytest

from memkv.conformance.support import Context, check, expect_code, fail, kept, payload, put_ok, read
from memkv.errors import ErrorCode, MemkvError
from memkv.transport import PutItem

E = ErrorCode


@pytest.mark.requirement("MKV-NS-001")
def test_blocks_are_invisible_in_other_namespaces(memkv: Context) -> None:
    a, b = memkv.transport(), memkv.transport()
    key = memkv.key()
    data = payload(1, 500)
    put_ok(a, key, data, "MKV-NS-001")
    check("MKV-NS-001", read(b, key) is None, "get in another namespace", "NOT_FOUND", "the block")
    check("MKV-NS-001", b.exists([key]) == [False], "exists in another namespace", False, True)
    check("MKV-NS-001", b.stat([key]) == [None], "stat in another namespace", None, b.stat([key]))
    check("MKV-NS-001", b.lookup([key]).prefix_len == 0, "lookup in another namespace", 0, b.lookup([key]).prefix_len)
    expect_code("MKV-NS-001", "delete in another namespace", lambda: b.delete([key]), [E.NOT_FOUND])
    check("MKV-NS-001", b.invalidate_keys([key]) == 0, "invalidate_keys in another namespace finds nothing", 0, "> 0")
    own = payload(2, 600)
    res = b.put([PutItem(key, own)])[0]
    check("MKV-NS-001", res.ok, "the same key with other bytes in another namespace is no conflict", "OK",
          res.status.name)
    got_a, got_b = read(a, key), read(b, key)
    check("MKV-NS-001", got_a is not None and got_b is not None and (got_a == data) == (got_b == own)
          and got_a != got_b, "each namespace reads its own block", "own bytes", "the other namespace's bytes")
    kept("MKV-NS-001", a, key, data, "namespace a keeps its block")


@pytest.mark.requirement("MKV-NS-002", "MKV-ERR-001")
def test_sessions_and_leases_belong_to_one_namespace(memkv: Context) -> None:
    a, b = memkv.transport(), memkv.transport()
    key = memkv.key()
    put_ok(a, key, b"ns", "MKV-NS-002")
    sid = a.open_session(3600.0, [key]).session_id
    expect_code("MKV-NS-002", "session_info from another namespace", lambda: b.session_info(sid), [E.UNKNOWN_SESSION])
    expect_code("MKV-NS-002", "close from another namespace", lambda: b.close_session(sid), [E.UNKNOWN_SESSION])
    lease = a.lookup([key], lease_ms=60_000).lease_id
    check("MKV-OPS-007", lease is not None, "lookup with lease_ms > 0 issues a lease", "a lease id", None)
    lease = str(lease)
    expect_code("MKV-NS-002", "release of a lease from another namespace", lambda: b.release_lease(lease),
                [E.UNKNOWN_LEASE])
    a.release_lease(lease)
    check("MKV-NS-002", a.session_info(sid).state.value == "open", "the session is untouched", "open", "changed")


@pytest.mark.requirement("MKV-NS-003", "MKV-ERR-001")
def test_namespace_names(memkv: Context) -> None:
    for bad in ("", "-a", ".a", "_a", "a" * 65, "a b", "a/b", "ä", "a\n"):
        try:
            transport = memkv.target.connect(bad)
        except MemkvError as exc:
            check("MKV-NS-003", exc.code is E.INVALID_ARGUMENT, f"namespace {bad!r}", "INVALID_ARGUMENT",
                  exc.code.name)
            continue
        except Exception as exc:
            fail("MKV-ERR-001", f"namespace {bad!r} raised a non-spec exception", "INVALID_ARGUMENT",
                 f"{type(exc).__name__}: {exc}")
        transport.close()
        fail("MKV-NS-003", f"namespace {bad!r} was accepted", "INVALID_ARGUMENT", "a transport",
             f"target.connect({bad!r})")
    for good in ("a", "A.b_c-1", "0" + "a" * 63):
        t = memkv.transport(good)
        t.invalidate_namespace()
        key = memkv.key()
        put_ok(t, key, b"ok", "MKV-NS-003")
        t.invalidate_namespace()
