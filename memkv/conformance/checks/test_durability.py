"""Durability across clean restarts and crashes of a restartable target (MKV-DUR-*)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from memkv.blocks import BlockMeta
from memkv.conformance.support import Context, check, expect_code, fail, kept, payload, put_ok, read
from memkv.conformance.timing import scaled
from memkv.conformance.worker import crash_key, crash_size
from memkv.errors import ErrorCode, MemkvError
from memkv.sessions import SessionState
from memkv.transport import PutItem, Transport

E = ErrorCode
MiB = 1024 * 1024
HOUR = 3600.0
ROUNDS = 4  # clean closes racing reads in test_clean_close_during_reads_completes_and_keeps_blocks
CLOSE_WAIT_S = 20.0  # a clean close waits for reads of 16 MiB: far less than this


def _restartable(memkv: Context, capacity: int) -> Context:
    small = memkv.small(capacity)
    if not small.target.restartable:
        pytest.skip("the target cannot be restarted by the suite (Target.restartable)")
    return small


def _child(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "memkv.conformance.worker", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.requirement("MKV-DUR-001")
def test_clean_restart_keeps_blocks_sessions_and_pins(memkv: Context) -> None:
    small = _restartable(memkv, 4 * MiB)
    ns = small.namespace()
    t = small.transport(ns)
    blocks = {small.key(): (payload(i, 64 * 1024), BlockMeta(dtype="bf16", token_count=i, user=bytes([i]) * 9))
              for i in range(24)}
    for key, (data, meta) in blocks.items():
        put_ok(t, key, data, "MKV-DUR-001", meta=meta)
    keys = list(blocks)
    suspended = t.open_session(HOUR, keys[:20]).session_id
    t.suspend(suspended, HOUR)
    opened = t.open_session(HOUR, keys[20:]).session_id
    small.target.stop()
    small.target.start()
    t = small.transport(ns)
    for key, (data, meta) in blocks.items():
        kept("MKV-DUR-001", t, key, data, "a committed block after a clean restart")
        info = t.stat([key])[0]
        check("MKV-DUR-001", info is not None and info.meta == meta, "metadata after restart", meta,
              None if info is None else info.meta)
    for sid, state, n in ((suspended, SessionState.SUSPENDED, 20), (opened, SessionState.OPEN, 4)):
        try:
            sinfo = t.session_info(sid)
        except MemkvError as exc:
            fail("MKV-DUR-001", "a session after a clean restart", state.value, exc.code.name)
            raise
        check("MKV-DUR-001", sinfo.state is state and len(sinfo.keys) == n, "session state and chain after restart",
              (state.value, n), (sinfo.state.value, len(sinfo.keys)))
    for i in range(120):
        t.put([PutItem(small.key(), payload(10_000 + i, 64 * 1024))])
    lost = [k for k in keys[:20] if not t.exists([k])[0]]
    check("MKV-DUR-001", not lost, "pins of a suspended session hold after a restart", "20 pinned blocks kept",
          f"{len(lost)} evicted", "put 24 blocks; suspend a session on 20; restart; put 2x capacity")


def _crash_run(memkv: Context, kill_after: int) -> tuple[Context, str, int, set[int], set[int], int]:
    small = _restartable(memkv, 24 * MiB)
    ns = small.namespace()
    seed = small.rng.randrange(1, 10_000)
    small.close_transports()
    small.target.stop()
    flush_after = 8
    proc = _child("writer", "--target", small.target.spec, "--namespace", ns, "--seed", str(seed),
                  "--count", "40", "--flush-after", str(flush_after))
    invoked: set[int] = set()
    returned: set[int] = set()
    flushed = -1
    deadline = time.time() + 60
    assert proc.stdout is not None
    try:
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            if event.get("event") == "invoke":
                invoked.add(event["i"])
            elif event.get("event") == "ok":
                returned.add(event["i"])
            elif event.get("event") == "flushed":
                flushed = event["n"]
            if len(returned) >= flush_after + kill_after and event.get("event") == "invoke":
                time.sleep(small.rng.random() * 0.01)
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=scaled(30))
    if flushed < 0:
        pytest.fail(f"the writer did not reach its flush: {err[-2000:]}")
    small.target.start()
    return small, ns, seed, invoked, returned, flushed


@pytest.mark.requirement("MKV-DUR-002", "MKV-DUR-007", "MKV-DUR-004")
def test_crash_keeps_flushed_and_returned_blocks(memkv: Context) -> None:
    small, ns, seed, invoked, returned, flushed = _crash_run(memkv, kill_after=3)
    t = small.transport(ns)
    for i in sorted(invoked):
        key, data = crash_key(seed, i), payload(seed * 1000 + i, crash_size(i, 8))
        got = read(t, key)
        if i < flushed:
            check("MKV-DUR-002", got is not None, f"block {i}, committed before the last completed flush, after a "
                  "crash", "present", "absent", "writer: 8 puts, flush, more puts; SIGKILL; reopen")
        if i in returned:
            check("MKV-DUR-007", got is not None, f"block {i}, whose put returned, after the writer was killed",
                  "present", "absent", "writer: puts; SIGKILL after some returned; reopen")
        check("MKV-DUR-004", got is None or got == data, f"block {i} after a crash is complete and verified",
              "absent or the exact bytes", "other bytes")


@pytest.mark.requirement("MKV-DUR-003", "MKV-DUR-004")
def test_writer_killed_mid_write_leaves_no_partial_block_or_leaked_space(memkv: Context) -> None:
    small, ns, seed, invoked, returned, _ = _crash_run(memkv, kill_after=1)
    t = small.transport(ns)
    for i in sorted(invoked - returned):
        got = read(t, crash_key(seed, i))
        check("MKV-DUR-003", got is None or got == payload(seed * 1000 + i, crash_size(i, 8)),
              f"block {i}, being written at the kill, is absent or complete", "absent or exact", "partial bytes")
    t.invalidate_namespace()
    capacity = small.caps.capacity_bytes or 24 * MiB
    fill = [small.key() for _ in range(capacity // MiB)]  # the declared capacity holds them (MKV-CAP-001)
    for i, key in enumerate(fill):
        expect_code("MKV-DUR-003", f"fill put {i} after the crash", lambda key=key, i=i: t.put(  # type: ignore[misc]
            [PutItem(key, payload(i, MiB))]), [E.OK])
    present = t.exists(fill)
    check("MKV-DUR-003", all(present), "after a crash mid-write and invalidating everything, the whole declared "
          "capacity fits without eviction (no leaked space)", len(fill), sum(present),
          f"writer killed mid-put; reopen; invalidate_namespace; put {len(fill)} blocks of 1 MiB")


@pytest.mark.requirement("MKV-DUR-005")
def test_newer_format_version_is_refused(memkv: Context) -> None:
    small = _restartable(memkv, 2 * MiB)
    small.close_transports()
    small.target.stop()
    if not small.target.bump_format_version():
        small.target.start()
        pytest.skip("the target offers no way to write a newer on-disk version (Target.bump_format_version)")
    try:
        small.target.start()
        small.target.connect(small.namespace())
    except MemkvError as exc:
        check("MKV-DUR-005", exc.code is E.UNSUPPORTED_VERSION, "opening a store with a newer format version",
              "UNSUPPORTED_VERSION", exc.code.name)
        return
    fail("MKV-DUR-005", "opening a store with a newer format version", "UNSUPPORTED_VERSION", "opened")


@pytest.mark.requirement("MKV-DUR-006")
def test_second_process_is_refused_with_store_locked(memkv: Context) -> None:
    small = _restartable(memkv, 2 * MiB)
    if not small.target.exclusive:
        pytest.skip("the target is not an exclusively opened store (Target.exclusive)")
    small.transport()
    proc = _child("open", "--target", small.target.spec)
    out, err = proc.communicate(timeout=scaled(60))
    try:
        answer = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        fail("MKV-DUR-006", "a second process opening the store", "STORE_LOCKED", f"no answer: {err[-500:]}")
    check("MKV-DUR-006", answer["code"] == "STORE_LOCKED", "a second process opening a store in use",
          "STORE_LOCKED", answer["code"], f"python -m memkv.conformance.worker open --target '{small.target.spec}'")
    check("MKV-DUR-006", str(os.getpid()) in answer["message"], "STORE_LOCKED names the holder",
          f"a message naming pid {os.getpid()}", answer["message"])


@pytest.mark.requirement("MKV-DUR-001")
def test_restart_keeps_large_metadata_and_appended_chains(memkv: Context) -> None:
    small = _restartable(memkv, 4 * MiB)
    ns = small.namespace()
    t = small.transport(ns)
    limit = small.limits.max_user_meta
    sizes = (65, min(limit, 300), limit)
    blocks = {small.key(): BlockMeta(dtype="fp8_e4m3", token_count=i + 1, fingerprint=bytes([i + 1]) * 16,
                                     user=(bytes(range(256)) * (size // 256 + 1))[:size])
              for i, size in enumerate(sizes)}
    for i, (key, meta) in enumerate(blocks.items()):
        put_ok(t, key, payload(i, 5000), "MKV-DUR-001", meta=meta)
    keys = list(blocks)
    sid = t.open_session(HOUR, keys[:1]).session_id
    t.append(sid, keys[1:])
    t.suspend(sid, HOUR)
    small.close_transports()
    small.target.stop()
    small.target.start()
    t = small.transport(ns)
    for key, meta in blocks.items():
        info = t.stat([key])[0]
        check("MKV-DUR-001", info is not None and info.meta == meta, f"metadata with {len(meta.user)} user bytes "
              "after a clean restart", f"{len(meta.user)} user bytes",
              None if info is None else f"{len(info.meta.user)} user bytes" if info.meta else None)
    sinfo = t.session_info(sid)
    check("MKV-DUR-001", sinfo.keys == tuple(keys) and sinfo.state is SessionState.SUSPENDED,
          "a suspended session grown by append keeps its whole chain after a restart", (3, "suspended"),
          (len(sinfo.keys), sinfo.state.value), "open with 1 key; append 2; suspend; restart")


@pytest.mark.requirement("MKV-DUR-003")
def test_free_space_between_kept_blocks_is_free_after_a_restart(memkv: Context) -> None:
    """The allocator is rebuilt from the committed blocks at reopen: the holes between them are free,
    the first one (before the first kept block) included. The target is filled to its declared
    capacity (MKV-CAP-001), so no spare space hides a hole lost at reopen."""
    small = _restartable(memkv, 4 * MiB)
    ns = small.namespace()
    t = small.transport(ns)
    t.invalidate_namespace()
    unit = 64 * 1024
    declared = small.caps.capacity_bytes or 4 * MiB
    blocks = {small.key(): payload(5000 + i, unit) for i in range(declared // unit)}
    for key, data in blocks.items():
        put_ok(t, key, data, "MKV-DUR-003")
    keys = list(blocks)
    check("MKV-CAP-001", all(t.exists(keys)), f"the declared capacity of {declared} bytes holds {len(keys)} blocks "
          f"of {unit} bytes without eviction", len(keys), sum(t.exists(keys)))
    holes, kept = keys[::2], keys[1::2]
    t.delete(holes)
    small.target.stop()
    small.target.start()
    t = small.transport(ns)
    refill = [small.key() for _ in holes]
    for i, key in enumerate(refill):
        put_ok(t, key, payload(6000 + i, unit), "MKV-DUR-003")
    lost = [k for k, there in zip(kept + refill, t.exists(kept + refill), strict=True) if not there]
    check("MKV-DUR-003", not lost, "blocks put into the holes left before a restart evict nothing",
          f"{len(kept)} kept + {len(refill)} new blocks present", f"{len(lost)} evicted",
          f"fill a {declared}-byte target with {unit}-byte blocks; delete every other, the first included; "
          "restart; put as many again")


def _read_until_closed(t: Transport, key: bytes, data: bytes, reads: list[int], wrong: dict[str, str]) -> None:
    """get `key` until the transport closes; what is neither its bytes nor an error code goes into `wrong`."""
    while True:
        try:
            got = read(t, key)
        except MemkvError:
            return  # the transport is closed: an error code is a valid answer
        except Exception as exc:
            wrong.setdefault("MKV-ERR-001", f"{type(exc).__name__}: {exc}")
            return
        reads[0] += 1
        if got != data:
            wrong.setdefault("MKV-OPS-001", "other bytes" if got is not None else "NOT_FOUND")
            return


@pytest.mark.requirement("MKV-DUR-001", "MKV-OPS-001", "MKV-ERR-001")
def test_clean_close_during_reads_completes_and_keeps_blocks(memkv: Context) -> None:
    """A clean close waits for the reads in progress instead of hanging or tearing them: the close
    returns, every get answers the block's bytes or an error code, and the blocks are there after
    the reopen. Several rounds, so that some close lands while a read is in progress."""
    small = _restartable(memkv, 96 * MiB)
    ns = small.namespace()
    t = small.transport(ns)
    size = min(16 * MiB, small.limits.max_block_size)
    blocks = {small.key(): payload(7000 + i, size) for i in range(4)}
    for key, data in blocks.items():
        put_ok(t, key, data, "MKV-DUR-001")
    repro = f"{2 * len(blocks)} threads get {size}-byte blocks in a loop; stop() the target while they read"
    for _round in range(ROUNDS):
        wrong: dict[str, str] = {}
        reads = [0]
        readers = [threading.Thread(target=_read_until_closed, args=(t, key, data, reads, wrong), daemon=True)
                   for key, data in [*blocks.items()] * 2]
        for thread in readers:
            thread.start()
        deadline = time.monotonic() + scaled(10)
        while reads[0] < len(readers) and time.monotonic() < deadline:
            time.sleep(0.001)
        closer = threading.Thread(target=small.target.stop, daemon=True)
        closer.start()
        closer.join(scaled(CLOSE_WAIT_S))
        check("MKV-DUR-001", not closer.is_alive(), "a clean close while gets are in progress completes",
              "stop() returns", f"stop() still running after {scaled(CLOSE_WAIT_S):.0f} s", repro)
        for thread in readers:
            thread.join(scaled(30))
        for requirement, answer in wrong.items():
            fail(requirement, "a get racing a clean close answers the block's bytes or an error code",
                 "the bytes put or an error code", answer, repro)
        small.target.start()
        t = small.transport(ns)
    for key, data in blocks.items():
        kept("MKV-DUR-001", t, key, data, "a block read while the target closed, after the reopen", repro)
