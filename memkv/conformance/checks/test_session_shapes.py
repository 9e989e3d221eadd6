"""Session requirements in more than one shape: chains grown by append, forks of open sessions and
their TTL, every removal method before a resume, a lease and a pin on one block, expiry after a
resume, ids after close, and the error code of a put refused because of pins."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from memkv.conformance.support import Context, check, expect_code, payload, put_ok
from memkv.conformance.timing import scaled
from memkv.errors import ErrorCode
from memkv.sessions import SessionState
from memkv.transport import PutItem, Transport

E = ErrorCode
S = SessionState
HOUR = 3600.0
KiB = 1024
MiB = 1024 * KiB
SMALL = 2 * MiB
BLOCK = 64 * KiB


def _stored(ctx: Context, t: Transport, n: int, size: int = 256, requirement: str = "MKV-SES-003") -> list[bytes]:
    keys = [ctx.key() for _ in range(n)]
    for i, key in enumerate(keys):
        put_ok(t, key, payload(ctx.rng.randrange(2**32) + i, size), requirement)
    return keys


def _pressure(small: Context, t: Transport) -> None:
    for i in range(SMALL // BLOCK * 2):
        t.put([PutItem(small.key(), payload(9000 + i, BLOCK))])


def _lost_under_pressure(small: Context, t: Transport, keys: list[bytes]) -> list[int]:
    _pressure(small, t)
    return [i for i, present in enumerate(t.exists(keys)) if not present]


@pytest.mark.requirement("MKV-SES-004")
def test_pins_cover_a_chain_grown_by_append(memkv: Context) -> None:
    small, t = memkv.empty_small(SMALL)
    keys = _stored(small, t, 20, BLOCK, "MKV-SES-004")
    sid = t.open_session(HOUR, keys[:4]).session_id
    for start in range(4, 20, 8):
        t.append(sid, keys[start:start + 8])
    t.suspend(sid, HOUR)
    lost = _lost_under_pressure(small, t, keys)
    check("MKV-SES-004", not lost, "every block of a suspended chain grown by append stays pinned", "all 20 kept",
          f"lost chain positions {lost}", "open with 4 keys; append 16; suspend; put 2x capacity")


@pytest.mark.requirement("MKV-SES-004", "MKV-OPS-007")
def test_lease_and_pin_on_the_same_blocks(memkv: Context) -> None:
    small, t = memkv.empty_small(SMALL)
    keys = _stored(small, t, 12, BLOCK, "MKV-SES-004")
    sid = t.open_session(HOUR, keys).session_id
    t.suspend(sid, HOUR)
    lease = t.lookup(keys, lease_ms=60_000)
    check("MKV-OPS-007", lease.lease_id is not None and lease.prefix_len == 12, "a lease over pinned blocks",
          "prefix 12 with a lease", lease)
    t.release_lease(str(lease.lease_id))
    lost = _lost_under_pressure(small, t, keys)
    check("MKV-SES-004", not lost, "releasing a lease leaves the pin of the same blocks in force", "all 12 kept",
          f"lost {lost}", "suspend a session on 12 blocks; lease them; release the lease; put 2x capacity")


@pytest.mark.requirement("MKV-CAP-003", "MKV-SES-004")
def test_put_refused_because_of_pins_gets_capacity_exceeded(memkv: Context) -> None:
    small, t = memkv.empty_small(SMALL)
    keys = _stored(small, t, SMALL // BLOCK - 4, BLOCK, "MKV-CAP-003")
    sid = t.open_session(HOUR, keys).session_id
    t.suspend(sid, HOUR)
    big = small.key()
    expect_code("MKV-CAP-003", "a put that fits only by evicting pinned blocks",
                lambda: t.put([PutItem(big, payload(5, SMALL // 2))]), [E.CAPACITY_EXCEEDED],
                f"pin ~90% of a {SMALL}-byte target in a suspended session; put {SMALL // 2} bytes")
    check("MKV-CAP-003", all(t.exists(keys)), "the refused put evicted nothing", len(keys), sum(t.exists(keys)))
    t.close_session(sid)


@pytest.mark.requirement("MKV-SES-002")
def test_ids_are_never_reused_after_close(memkv: Context) -> None:
    t = memkv.transport()
    closed = []
    for _ in range(8):
        sid = t.open_session(HOUR).session_id
        t.close_session(sid)
        closed.append(sid)
    fresh = [t.open_session(HOUR).session_id for _ in range(8)]
    reused = sorted(set(closed) & set(fresh))
    check("MKV-SES-002", not reused, "open never hands out the id of a closed session", "new ids",
          f"reused {reused[:3]}", "open and close 8 sessions; open 8 more")
    for sid in closed[:2]:
        expect_code("MKV-SES-002", "a closed session's id stays unknown", lambda sid=sid: t.session_info(sid),  # type: ignore[misc]
                    [E.UNKNOWN_SESSION])


_REMOVALS: dict[str, Callable[[Transport, bytes], object]] = {
    "delete": lambda t, key: t.delete([key]),
    "invalidate_keys": lambda t, key: t.invalidate_keys([key]),
    "invalidate_prefix": lambda t, key: t.invalidate_prefix(key),
}


@pytest.mark.requirement("MKV-SES-005")
@pytest.mark.parametrize("removal", sorted(_REMOVALS))
def test_resume_after_each_removal_method(memkv: Context, removal: str) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 6, requirement="MKV-SES-005")
    cut = memkv.rng.randint(1, 5)
    sid = t.open_session(HOUR, keys).session_id
    t.suspend(sid, HOUR)
    _REMOVALS[removal](t, keys[cut])
    res = t.resume(sid)
    check("MKV-SES-005", res.valid_keys == tuple(keys[:cut]), f"resume after {removal} of chain position {cut}",
          cut, len(res.valid_keys), f"open 6 keys; suspend; {removal}(keys[{cut}]); resume")
    info = t.session_info(sid)
    check("MKV-SES-005", info.keys == tuple(keys[:cut]), "resume truncates the chain", cut, len(info.keys))


@pytest.mark.requirement("MKV-SES-006")
def test_fork_of_an_open_session_grown_by_append(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 6, requirement="MKV-SES-006")
    parent = t.open_session(HOUR, keys[:2]).session_id
    t.append(parent, keys[2:6])
    n = memkv.rng.randint(1, 5)
    child = t.fork(parent, n)
    check("MKV-SES-006", child.keys == tuple(keys[:n]) and child.state is S.OPEN,
          f"fork(n={n}) of an open session grown by append shares the first {n} keys", n, len(child.keys))
    check("MKV-SES-006", t.session_info(parent).keys == tuple(keys), "the parent keeps its chain", 6,
          len(t.session_info(parent).keys))


@pytest.mark.requirement("MKV-SES-006", "MKV-SES-008")
def test_fork_gets_its_own_ttl(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 2, requirement="MKV-SES-006")
    parent = t.open_session(HOUR, keys).session_id
    child = t.fork(parent, None, 0.3).session_id
    time.sleep(0.6)
    expect_code("MKV-SES-006", "append to a fork with ttl_s=0.3 after 0.6 s", lambda: t.append(child, keys[:1]),
                [E.SESSION_EXPIRED], "open (1 h); fork(ttl_s=0.3); wait 0.6 s; append(fork)")
    check("MKV-SES-006", t.session_info(parent).state is S.OPEN, "the parent lives on", "open", "changed")


@pytest.mark.requirement("MKV-SES-008")
def test_expiry_after_a_resume(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 2, requirement="MKV-SES-008")
    ttl = round(scaled(0.4), 3)  # the suspend must come within the TTL, also on a busy machine
    sid = t.open_session(ttl, keys).session_id
    t.suspend(sid, HOUR)
    t.resume(sid)
    time.sleep(2 * ttl)
    expect_code("MKV-SES-008", "append to a resumed session past its TTL", lambda: t.append(sid, keys[:1]),
                [E.SESSION_EXPIRED], f"open(ttl {ttl} s); suspend(1 h); resume; wait {2 * ttl} s; append")


@pytest.mark.requirement("MKV-SES-003", "MKV-INV-003")
def test_invalidate_session_covers_appended_keys(memkv: Context) -> None:
    t = memkv.transport()
    keys = _stored(memkv, t, 5, requirement="MKV-INV-003")
    sid = t.open_session(HOUR, keys[:2]).session_id
    t.append(sid, keys[2:4])
    count = t.invalidate_session(sid)
    check("MKV-INV-003", not any(t.exists(keys[:4])) and count == 4,
          "invalidate_session removes the blocks appended to the chain too", "4 removed",
          f"count {count}, {sum(t.exists(keys[:4]))} left", "open with 2 keys; append 2; invalidate_session")
    check("MKV-INV-003", t.exists([keys[4]]) == [True], "blocks outside the session stay", True, False)


@pytest.mark.requirement("MKV-INV-005")
def test_pins_of_an_invalidated_namespace_are_gone(memkv: Context) -> None:
    """Invalidating a namespace removes its suspended sessions, and their pins with them: the same
    keys put again are evictable like any block."""
    small, t = memkv.empty_small(SMALL)
    keys = _stored(small, t, SMALL // BLOCK // 2, BLOCK, "MKV-INV-005")
    sid = t.open_session(HOUR, keys).session_id
    t.suspend(sid, HOUR)
    t.invalidate_namespace()
    for i, key in enumerate(keys):
        put_ok(t, key, payload(3000 + i, BLOCK), "MKV-INV-005")
    size = SMALL * 3 // 4
    expect_code("MKV-INV-005", f"a put of {size} bytes needing the space of blocks a removed session had pinned",
                lambda: t.put([PutItem(small.key(), payload(4000, size))]), [E.OK],
                f"put {len(keys)} blocks; open and suspend a session on them; invalidate_namespace; put the same "
                f"keys again; put {size} bytes into a {SMALL}-byte target")


EXPIRED_RECORD_WAIT_S = 3.5  # more than three sweep intervals of the reference targets (1 s each)


@pytest.mark.requirement("MKV-SES-008")
def test_an_expired_session_still_answers_session_expired_after_sweeps(memkv: Context) -> None:
    """SESSION_EXPIRED for at least 3600 s after the expiry: the background sweeps that notice the
    expiry and later drop old records must keep a just-expired session's record."""
    t = memkv.transport()
    keys = _stored(memkv, t, 1, requirement="MKV-SES-008")
    sid = t.open_session(0.2, keys).session_id
    time.sleep(EXPIRED_RECORD_WAIT_S)
    repro = f"open_session(ttl_s=0.2); wait {EXPIRED_RECORD_WAIT_S} s; append; session_info"
    expect_code("MKV-SES-008", f"append {EXPIRED_RECORD_WAIT_S} s after the session expired",
                lambda: t.append(sid, keys), [ErrorCode.SESSION_EXPIRED])
    state = t.session_info(sid).state
    check("MKV-SES-008", state is SessionState.EXPIRED, "a query of an expired session reports the state expired",
          "expired", state.value, repro)
