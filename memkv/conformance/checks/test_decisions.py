"""What spec 1.1 decided that 1.0 left open, checked on any target (MKV-OPS-013..019, MKV-SES-010/011,
MKV-VER-001)."""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from memkv.conformance.requirements import declared_version, spec_version
from memkv.conformance.support import Context, check, expect_code, fail, payload, put_ok
from memkv.errors import ErrorCode, MemkvError
from memkv.transport import PutItem

E = ErrorCode
OPAQUE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
HOUR = 3600.0
# Leeway between the suite's clock and the target's, for the instants a target reports.
CLOCK_SLACK_S = 120.0


@pytest.mark.requirement("MKV-OPS-013", "MKV-OPS-014")
def test_lease_ids_and_instants(memkv: Context) -> None:
    t = memkv.transport()
    key = memkv.key()
    put_ok(t, key, payload(1, 1000), "MKV-OPS-013")
    ids = set()
    for _ in range(3):
        before = time.time()
        result = t.lookup([key], lease_ms=60_000)
        lease_id = result.lease_id or ""
        check("MKV-OPS-013", OPAQUE_ID.fullmatch(lease_id) is not None, "a lease id is 1-64 characters of "
              "[A-Za-z0-9_-]", OPAQUE_ID.pattern, result.lease_id)
        ids.add(lease_id)
        expires = result.lease_expires_at or 0.0
        check("MKV-OPS-014", abs(expires - (before + 60.0)) < CLOCK_SLACK_S, "lease_expires_at is Unix seconds "
              "on the target's clock (now + lease_ms)", f"about {before + 60.0:.0f}", expires)
        t.release_lease(lease_id)
    check("MKV-OPS-013", len(ids) == 3, "lease ids are never reused", "3 distinct ids", sorted(ids))


@pytest.mark.requirement("MKV-OPS-015")
def test_duplicate_keys_in_one_batch(memkv: Context) -> None:
    t = memkv.transport()
    key = memkv.key()
    data = payload(2, 4096)
    results = t.put([PutItem(key, data), PutItem(key, data), PutItem(key, payload(3, 4096))])
    check("MKV-OPS-015", [r.status for r in results] == [E.OK, E.OK, E.KEY_CONFLICT],
          "put of one key three times: stored, identical re-put, conflicting re-put",
          "OK, OK, KEY_CONFLICT", [r.status.name for r in results])
    buffers = [bytearray(4096), bytearray(4096)]
    got = t.get_into([key, key], buffers)
    check("MKV-OPS-015", all(r.ok for r in got) and buffers[0] == data == buffers[1],
          "get of one key twice: both get the block", "OK, OK", [r.status.name for r in got])
    check("MKV-OPS-015", t.exists([key, key]) == [True, True], "exists of one key twice", [True, True],
          t.exists([key, key]))
    deleted = [r.status for r in t.delete([key, key])]
    check("MKV-OPS-015", deleted == [E.OK, E.NOT_FOUND], "delete of one key twice: removed, then NOT_FOUND",
          "OK, NOT_FOUND", [s.name for s in deleted])


@pytest.mark.requirement("MKV-OPS-016")
def test_flush_window_is_declared(memkv: Context) -> None:
    window = memkv.caps.flush_window_s
    if "durable" in memkv.claimed:
        check("MKV-OPS-016", isinstance(window, int | float) and window > 0,
              "a durable target declares its flush window in seconds", "> 0", window)
    else:
        check("MKV-OPS-016", window is None or window > 0, "flush window: seconds or null", "null or > 0", window)


@pytest.mark.requirement("MKV-OPS-017")
def test_malformed_keys_per_item_or_whole_request(memkv: Context) -> None:
    t = memkv.transport()
    key = memkv.key()
    put_ok(t, key, payload(4, 100), "MKV-OPS-017")
    bad = b"short"
    results = t.put([PutItem(bad, payload(5, 100)), PutItem(memkv.key(), payload(6, 100))])
    check("MKV-OPS-017", [r.status for r in results] == [E.INVALID_KEY, E.OK], "put: the malformed key fails "
          "only its item", "INVALID_KEY, OK", [r.status.name for r in results])
    got = t.get_into([bad, key], [bytearray(100), bytearray(100)])
    check("MKV-OPS-017", [r.status for r in got] == [E.INVALID_KEY, E.OK], "get: the malformed key fails only "
          "its item", "INVALID_KEY, OK", [r.status.name for r in got])
    for what, fn in (("stat", lambda: t.stat([bad, key])), ("exists", lambda: t.exists([bad, key])),
                     ("lookup", lambda: t.lookup([key, bad])), ("invalidate_keys", lambda: t.invalidate_keys([bad]))):
        expect_code("MKV-OPS-017", f"{what} with a malformed key is refused whole", fn, [E.INVALID_KEY])
    check("MKV-OPS-017", t.exists([key]) == [True], "nothing was done by the refused requests", "present",
          "absent")
    deleted = t.delete([bad, key])
    check("MKV-OPS-017", [r.status for r in deleted] == [E.INVALID_KEY, E.OK], "delete: the malformed key fails "
          "only its item", "INVALID_KEY, OK", [r.status.name for r in deleted])


@pytest.mark.requirement("MKV-OPS-018")
def test_leases_do_not_survive_a_restart(memkv: Context) -> None:
    small = memkv.small(4 * 1024 * 1024)
    if not small.target.restartable:
        pytest.skip("the target cannot be restarted by the suite (Target.restartable)")
    ns = small.namespace()
    t = small.transport(ns)
    key = small.key()
    put_ok(t, key, payload(7, 1000), "MKV-OPS-018")
    lease = t.lookup([key], lease_ms=600_000).lease_id
    small.target.stop()
    small.target.start()
    t = small.transport(ns)
    expect_code("MKV-OPS-018", "release of a lease taken before the restart", lambda: t.release_lease(str(lease)),
                [E.UNKNOWN_LEASE])


@pytest.mark.requirement("MKV-OPS-019")
def test_stats_schema_is_namespace_scoped(memkv: Context) -> None:
    mine, other = memkv.namespace("st"), memkv.namespace("st")
    t, u = memkv.transport(mine), memkv.transport(other)
    put_ok(t, memkv.key(), payload(8, 3000), "MKV-OPS-019")
    put_ok(u, memkv.key(), payload(9, 5000), "MKV-OPS-019")
    stats = t.stats()
    fields = {"namespace": str, "blocks": int, "bytes": int, "sessions": dict, "capacity_bytes": int,
              "used_bytes": int, "free_bytes": int}
    wrong = {name: type(stats.get(name)).__name__ for name, kind in fields.items()
             if not isinstance(stats.get(name), kind) or isinstance(stats.get(name), bool)}
    check("MKV-OPS-019", not wrong, "stats has the fields of the STATS answer of spec/operations.yaml",
          {n: k.__name__ for n, k in fields.items()}, wrong)
    check("MKV-OPS-019", stats.get("namespace") == mine and stats.get("blocks") == 1 and stats.get("bytes") == 3000,
          "stats counts the caller's namespace", f"{mine}: 1 block, 3000 bytes",
          {k: stats.get(k) for k in ("namespace", "blocks", "bytes")})
    check("MKV-OPS-019", other not in repr(stats), "stats names no other namespace", f"no {other}", repr(stats)[:300])


STATS_COUNTS = ("blocks", "bytes", "capacity_bytes", "used_bytes", "free_bytes")


def _counts_below_zero(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures of a STATS answer that break their `>= 0` bound (spec/operations.yaml)."""
    return {name: stats.get(name) for name in STATS_COUNTS
            if not isinstance(stats.get(name), int) or stats[name] < 0}


@pytest.mark.requirement("MKV-OPS-019")
def test_stats_figures_keep_their_bounds_on_an_empty_target(memkv: Context) -> None:
    """The STATS figures are >= 0 in every state, including the one where an off-by-one shows: an
    empty target (nothing stored yet, and again once everything stored was removed)."""
    wrong = _counts_below_zero(memkv.transport().stats())
    check("MKV-OPS-019", not wrong, "stats figures are >= 0", ">= 0 each", wrong, "stats")
    small, t = memkv.empty_small(2 * 1024 * 1024)
    key = small.key()
    repro = "a fresh small target: stats; put 100000 bytes; stats; delete it; stats"

    def bounds_kept(state: str) -> None:
        wrong = _counts_below_zero(t.stats())
        check("MKV-OPS-019", not wrong, f"stats figures are >= 0 {state}", ">= 0 each", wrong, repro)

    bounds_kept("on a fresh, empty target")
    put_ok(t, key, payload(10, 100_000), "MKV-OPS-019")
    bounds_kept("after a put")
    t.delete([key])
    bounds_kept("once the target is empty again")


@pytest.mark.requirement("MKV-SES-010")
def test_session_ids_are_short_opaque_names(memkv: Context) -> None:
    if "sessions" not in memkv.claimed:
        pytest.skip("sessions not claimed")
    t = memkv.transport()
    info = t.open_session(HOUR)
    fork = t.fork(info.session_id)
    for sid in (info.session_id, fork.session_id):
        check("MKV-SES-010", OPAQUE_ID.fullmatch(sid) is not None, "a session id is 1-64 characters of "
              "[A-Za-z0-9_-]", OPAQUE_ID.pattern, sid)
    expect_code("MKV-SES-010", "an id of 65 characters", lambda: t.session_info("a" * 65),
                [E.INVALID_ARGUMENT, E.UNKNOWN_SESSION])


def _race(*calls: Callable[[], object]) -> list[ErrorCode]:
    """Run the calls at the same moment in threads; the outcome of each (OK or its error code)."""
    outcomes: list[ErrorCode] = []
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            call()
            outcomes.append(E.OK)
        except MemkvError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.mark.requirement("MKV-SES-011")
def test_concurrent_transitions_of_one_session(memkv: Context) -> None:
    if "sessions" not in memkv.claimed:
        pytest.skip("sessions not claimed")
    ns = memkv.namespace("race")
    t, u = memkv.transport(ns), memkv.transport(ns)
    key = memkv.key()
    put_ok(t, key, payload(10, 100), "MKV-SES-011")
    for round_ in range(5):
        sid = t.open_session(HOUR, [key]).session_id
        t.suspend(sid, HOUR)
        outcomes = _race(functools.partial(t.resume, sid), functools.partial(u.resume, sid))
        check("MKV-SES-011", sorted(outcomes) == sorted([E.OK, E.INVALID_SESSION_STATE]),
              f"two concurrent resumes (round {round_}): exactly one succeeds", "OK and INVALID_SESSION_STATE",
              [c.name for c in outcomes])
        t.close_session(sid)
    sid = t.open_session(HOUR).session_id
    appended: list[ErrorCode] = []

    def append() -> None:
        for _ in range(50):
            try:
                u.append(sid, [key])
                appended.append(E.OK)
            except MemkvError as exc:
                appended.append(exc.code)
                return

    thread = threading.Thread(target=append)
    thread.start()
    closed = t.close_session(sid)
    thread.join(60)
    oks = appended.count(E.OK)
    check("MKV-SES-011", set(appended) <= {E.OK, E.UNKNOWN_SESSION} and len(closed.keys) == oks,
          "appends racing a close complete before it (their keys are in the closed chain) or get UNKNOWN_SESSION",
          f"{oks} keys in the closed chain", f"{len(closed.keys)} keys; outcomes {sorted({c.name for c in appended})}")


@pytest.mark.requirement("MKV-NS-009")
def test_the_form_of_arguments_is_checked_before_existence(memkv: Context) -> None:
    t = memkv.transport()
    expect_code("MKV-NS-009", "lookup with a malformed key in an empty namespace", lambda: t.lookup([b"bad"]),
                [E.INVALID_KEY])
    if "sessions" in memkv.claimed:
        expect_code("MKV-NS-009", "append of a malformed key to a session that does not exist",
                    lambda: t.append("memkv-cf-no-such-session", [b"bad"]), [E.INVALID_KEY])
        expect_code("MKV-NS-009", "fork of a session that does not exist with prefix_len -1",
                    lambda: t.fork("memkv-cf-no-such-session", -1), [E.INVALID_ARGUMENT])


@pytest.mark.requirement("MKV-VER-001")
def test_declared_spec_version_has_major_and_minor(memkv: Context) -> None:
    declared = memkv.caps.spec_version
    if not re.fullmatch(r"\d+\.\d+", declared):
        fail("MKV-VER-001", "spec_version is '<major>.<minor>'", "e.g. 1.1", declared)
    check("MKV-VER-001", declared_version(declared) is not None, "the declared version is one this suite "
          "certifies (same major, minor up to its own)", f"1.0 .. {spec_version()}", declared)
