"""Blocks and operations, including sizes at and around every limit and bad input (MKV-BLK-*, MKV-OPS-*)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from memkv.blocks import BlockMeta
from memkv.checksum import payload_checksum
from memkv.conformance.requirements import SPEC_DIR
from memkv.conformance.support import Context, check, expect_code, fail, item_status, payload, put_ok, read
from memkv.errors import ErrorCode, MemkvError
from memkv.transport import PutItem, Transport

E = ErrorCode


def _absent(requirement: str, t: Transport, key: bytes, why: str) -> None:
    check(requirement, t.exists([key]) == [False], f"{why}: nothing is stored", "exists=False", t.exists([key]))


@pytest.mark.requirement("MKV-OPS-001", "MKV-BLK-001")
@pytest.mark.parametrize("size", [1, 15, 16, 17, 4095, 4096, 4097, 65535, 65536, 65537, 1024 * 1024 + 1])
def test_get_returns_exactly_the_bytes_put(memkv: Context, size: int) -> None:
    t = memkv.transport()
    key = memkv.key()
    data = payload(memkv.rng.randrange(2**32), size)
    put_ok(t, key, data, "MKV-BLK-001")
    got = read(t, key)
    check("MKV-OPS-001", got == data, f"get after put of {size} bytes", f"{size} bytes put",
          "absent" if got is None else f"{len(got)} bytes, first difference at "
          f"{next((i for i, (a, b) in enumerate(zip(got, data, strict=False)) if a != b), min(len(got), len(data)))}")


@pytest.mark.requirement("MKV-BLK-001", "MKV-OPS-001")
def test_block_of_exactly_max_block_size(memkv: Context) -> None:
    size = memkv.limits.max_block_size
    if size > 256 * 1024 * 1024:
        pytest.skip(f"declared max_block_size {size} is larger than this suite allocates (256 MiB)")
    t = memkv.transport()
    key = memkv.key()
    data = payload(7, size)
    put_ok(t, key, data, "MKV-BLK-001")
    got = read(t, key)
    check("MKV-OPS-001", got == data, "max-size block reads back exactly", size, None if got is None else len(got))
    t.delete([key])


@pytest.mark.requirement("MKV-BLK-002", "MKV-CAP-004", "MKV-ERR-002", "MKV-ERR-001")
@pytest.mark.parametrize("over", [1, 4096])
def test_oversized_block_is_refused(memkv: Context, over: int) -> None:
    t = memkv.transport()
    key = memkv.key()
    size = memkv.limits.max_block_size + over
    expect_code("MKV-BLK-002", f"put of max_block_size+{over} bytes", lambda: t.put([PutItem(key, bytes(size))]),
                [E.BLOCK_TOO_LARGE], f"t.put([PutItem(key, bytes({size}))])")
    _absent("MKV-BLK-002", t, key, "oversized put")


@pytest.mark.requirement("MKV-BLK-002", "MKV-ERR-002", "MKV-ERR-001")
def test_empty_block_is_refused(memkv: Context) -> None:
    t = memkv.transport()
    key = memkv.key()
    expect_code("MKV-BLK-002", "put of an empty payload", lambda: t.put([PutItem(key, b"")]),
                [E.INVALID_ARGUMENT], "t.put([PutItem(key, b'')])")
    _absent("MKV-BLK-002", t, key, "empty put")


FULL_META = BlockMeta(fingerprint=bytes(range(16)), parent=bytes(range(16, 32)), dtype="bfloat16",
                      token_count=2**32 - 1, layer_first=3, layer_last=65535, tp_rank=6, tp_size=8,
                      user=bytes(range(256)) * 4)


@pytest.mark.requirement("MKV-BLK-003")
@pytest.mark.parametrize("meta", [BlockMeta(), FULL_META, BlockMeta(dtype="fp8_e4m3", user=b"\x00")],
                         ids=["default", "full", "small"])
def test_metadata_is_returned_unchanged(memkv: Context, meta: BlockMeta) -> None:
    t = memkv.transport()
    key = memkv.key()
    meta = BlockMeta(**{**{f: getattr(meta, f) for f in BlockMeta.__slots__},  # type: ignore[attr-defined]
                        "user": meta.user[: memkv.limits.max_user_meta]})
    put_ok(t, key, payload(3, 100), "MKV-BLK-003", meta=meta)
    info = t.stat([key])[0]
    check("MKV-BLK-003", info is not None and info.meta == meta, "stat returns the metadata put", meta,
          None if info is None else info.meta)
    buf = bytearray(100)
    res = t.get_into([key], [buf])[0]
    check("MKV-BLK-003", res.ok and res.meta == meta, "get returns the metadata put", meta, res.meta)


@pytest.mark.requirement("MKV-BLK-004", "MKV-ERR-002", "MKV-ERR-001")
def test_metadata_over_its_bounds_is_refused(memkv: Context) -> None:
    t = memkv.transport()
    bad = {
        "user metadata one byte over max_user_meta": BlockMeta(user=bytes(memkv.limits.max_user_meta + 1)),
        "dtype over 16 bytes": BlockMeta(dtype="x" * 17),
        "layer_last below layer_first": BlockMeta(layer_first=5, layer_last=4),
        "tp_rank not below tp_size": BlockMeta(tp_rank=2, tp_size=2),
        "fingerprint of 15 bytes": BlockMeta(fingerprint=bytes(15)),
    }
    for what, meta in bad.items():
        key = memkv.key()
        expect_code("MKV-BLK-004", what, lambda key=key, meta=meta: t.put([PutItem(key, b"x", meta)]),  # type: ignore[misc]
                    [E.LIMIT_EXCEEDED, E.INVALID_ARGUMENT], f"t.put([PutItem(key, b'x', {meta!r})])")
        _absent("MKV-BLK-004", t, key, what)
    key = memkv.key()
    put_ok(t, key, b"x", "MKV-BLK-004", meta=BlockMeta(user=bytes(memkv.limits.max_user_meta)))


@pytest.mark.requirement("MKV-BLK-005", "MKV-ERR-002", "MKV-ERR-001")
@pytest.mark.parametrize("size", [1, 5000, 65536, 1024 * 1024 + 1])
def test_declared_checksum_is_verified(memkv: Context, size: int) -> None:
    t = memkv.transport()
    data = payload(5, size)
    good = payload_checksum(data)
    key = memkv.key()
    expect_code("MKV-BLK-005", "put with a wrong declared checksum",
                lambda: t.put([PutItem(key, data, checksum=good ^ 1)]), [E.CHECKSUM_MISMATCH],
                "t.put([PutItem(key, data, checksum=xxh3_64(data) ^ 1)])")
    _absent("MKV-BLK-005", t, key, "checksum mismatch")
    expect_code("MKV-BLK-005", "put with the right declared checksum",
                lambda: t.put([PutItem(key, data, checksum=good)]), [E.OK])
    info = t.stat([key])[0]
    check("MKV-BLK-005", info is not None and info.checksum == good, "stat reports the XXH3-64 of the payload",
          hex(good), None if info is None else hex(info.checksum))


def _edge_checksum_cases() -> list[dict[str, str]]:
    cases = json.loads((SPEC_DIR / "vectors" / "checksums.json").read_text(encoding="utf-8"))["cases"]
    return [case for case in cases if case["name"].startswith("8 bytes whose checksum is")]


@pytest.mark.requirement("MKV-BLK-005", "MKV-OPS-001")
@pytest.mark.parametrize("case", _edge_checksum_cases(), ids=lambda case: case["checksum_hex"])
def test_checksums_at_the_edges_of_64_bits(memkv: Context, case: dict[str, str]) -> None:
    """Payloads of spec/vectors/checksums.json whose XXH3-64 is 0, 2^63 - 1, 2^63 or 2^64 - 1: a
    store keeping checksums in a signed 64-bit field must still take and answer them unsigned."""
    t = memkv.transport()
    data, value = bytes.fromhex(case["data_hex"]), int(case["checksum"])
    key = memkv.key()
    expect_code("MKV-BLK-005", f"put of {case['name']} with that checksum declared",
                lambda: t.put([PutItem(key, data, checksum=value)]), [E.OK],
                f"t.put([PutItem(key, bytes.fromhex({case['data_hex']!r}), checksum={value})])")
    info = t.stat([key])[0]
    check("MKV-BLK-005", info is not None and info.checksum == value, f"stat of {case['name']}",
          hex(value), None if info is None else hex(info.checksum))
    check("MKV-OPS-001", read(t, key) == data, f"get of {case['name']}", data.hex(), "other bytes or absent")
    wrong = value ^ (1 << 63)
    other = memkv.key()
    expect_code("MKV-BLK-005", f"put of {case['name']} declaring {wrong:#x} (the sign bit flipped)",
                lambda: t.put([PutItem(other, data, checksum=wrong)]), [E.CHECKSUM_MISMATCH],
                f"t.put([PutItem(key, data, checksum={wrong})])")
    _absent("MKV-BLK-005", t, other, "checksum mismatch in the sign bit")


@pytest.mark.requirement("MKV-BLK-006")
@pytest.mark.parametrize("size", [20, 8192, 1024 * 1024 + 1])
def test_corrupted_block_is_never_returned(memkv: Context, size: int) -> None:
    t = memkv.transport()
    key = memkv.key()
    data = payload(6, size)
    put_ok(t, key, data, "MKV-BLK-006")
    if not memkv.target.corrupt_block(t.namespace, key):
        pytest.skip("the target offers no way to corrupt stored bytes (Target.corrupt_block)")
    buf = bytearray(size)
    code = _get_code(t, key, buf)
    check("MKV-BLK-006", code is not E.OK, "a block whose stored bytes were damaged is not returned",
          "CORRUPTED", "OK with " + ("the original bytes" if bytes(buf) == data else "damaged bytes"))
    check("MKV-BLK-006", code in (E.CORRUPTED, E.NOT_FOUND), "a damaged block is reported as CORRUPTED",
          "CORRUPTED", code.name)
    again = _get_code(t, key, bytearray(size))
    check("MKV-BLK-006", again is E.NOT_FOUND, "a block that failed verification is removed: a later read gets "
          "NOT_FOUND", "NOT_FOUND", again.name, f"put {size} bytes; damage them; get; get again")


def _get_code(t: Transport, key: bytes, buf: bytearray) -> ErrorCode:
    try:
        return t.get_into([key], [buf])[0].status
    except MemkvError as exc:
        return exc.code


@pytest.mark.requirement("MKV-BLK-007", "MKV-ERR-001")
def test_blocks_are_immutable(memkv: Context) -> None:
    t = memkv.transport()
    key = memkv.key()
    data = payload(8, 3000)
    put_ok(t, key, data, "MKV-BLK-007")
    expect_code("MKV-BLK-007", "re-put of identical bytes", lambda: t.put([PutItem(key, data)]), [E.OK])
    other = bytearray(data)
    other[1234] ^= 1
    expect_code("MKV-BLK-007", "put of different bytes under a stored key", lambda: t.put([PutItem(key, bytes(other))]),
                [E.KEY_CONFLICT], "t.put([PutItem(key, data_with_one_bit_flipped)])")
    expect_code("MKV-BLK-007", "put of longer bytes under a stored key", lambda: t.put([PutItem(key, data + b"!")]),
                [E.KEY_CONFLICT])
    check("MKV-BLK-007", read(t, key) == data, "the stored block is unchanged after refused re-puts", "original",
          "changed")


@pytest.mark.requirement("MKV-OPS-002")
def test_no_reader_sees_a_partial_block(memkv: Context) -> None:
    t = memkv.transport()
    size = min(memkv.limits.max_block_size, 8 * 1024 * 1024)
    blocks = [(memkv.key(), payload(100 + i, size)) for i in range(4)]
    seen: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for key, data in blocks:
                try:
                    got = read(t, key)
                except MemkvError:
                    continue
                if got is not None and got != data:
                    seen.append(f"{len(got)} bytes differing from the {len(data)} put")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for key, data in blocks:
            put_ok(t, key, data, "MKV-OPS-002")
    finally:
        stop.set()
        thread.join()
    check("MKV-OPS-002", not seen, "readers polling during puts see absent or the complete block",
          "absent or complete", seen[:3])


@pytest.mark.requirement("MKV-OPS-003")
def test_batch_results_are_per_item_and_in_order(memkv: Context) -> None:
    t = memkv.transport()
    keys = [memkv.key() for _ in range(5)]
    datas = [payload(200 + i, 100 + i) for i in range(5)]
    items = [PutItem(k, d) for k, d in zip(keys, datas, strict=False)]
    items[2] = PutItem(keys[2], datas[2], checksum=payload_checksum(datas[2]) ^ 1)
    items[3] = PutItem(b"short", datas[3])
    results = t.put(items)
    statuses = [r.status for r in results]
    check("MKV-OPS-003", len(results) == 5, "one put result per item", 5, len(results))
    want = [E.OK, E.OK, E.CHECKSUM_MISMATCH, E.INVALID_KEY, E.OK]
    check("MKV-OPS-003", statuses == want, "per-item put statuses in order", [s.name for s in want],
          [s.name for s in statuses])
    check("MKV-OPS-003", t.exists(keys) == [True, True, False, False, True], "only the good items are stored",
          [True, True, False, False, True], t.exists(keys))
    bufs = [bytearray(200) for _ in keys]
    got = t.get_into(keys, bufs)
    check("MKV-OPS-003", [g.status for g in got] == [E.OK, E.OK, E.NOT_FOUND, E.NOT_FOUND, E.OK]
          or [*[g.status for g in got][:3], got[4].status] == [E.OK, E.OK, E.NOT_FOUND, E.OK],
          "per-item get statuses in order", "OK OK NOT_FOUND NOT_FOUND|INVALID_KEY OK", [g.status.name for g in got])
    for i in (0, 1, 4):
        check("MKV-OPS-003", bytes(bufs[i][: got[i].length]) == datas[i], f"batch get item {i} bytes", "equal",
              "different")


@pytest.mark.requirement("MKV-OPS-004", "MKV-CAP-004", "MKV-ERR-002", "MKV-ERR-001")
def test_batch_over_max_batch_is_refused_whole(memkv: Context) -> None:
    t = memkv.transport()
    n = memkv.limits.max_batch
    if n > 4096:
        pytest.skip(f"declared max_batch {n} is larger than this suite sends (4096)")
    keys = [memkv.key() for _ in range(n + 1)]
    items = [PutItem(k, b"b") for k in keys]

    try:
        results = t.put(items)
        codes = {r.status for r in results}
        if codes != {E.LIMIT_EXCEEDED}:
            fail("MKV-OPS-004", f"put of max_batch+1 = {n + 1} items", "LIMIT_EXCEEDED for the whole request",
                 sorted(c.name for c in codes), f"t.put([{n + 1} items])")
    except MemkvError as exc:
        check("MKV-OPS-004", exc.code is E.LIMIT_EXCEEDED, f"put of {n + 1} items", "LIMIT_EXCEEDED", exc.code.name)
    check("MKV-OPS-004", not any(t.exists(keys[:n])), "a refused batch stores nothing", "no key stored",
          f"{sum(t.exists(keys[:n]))} stored")
    for name, call in (("get_into", lambda: t.get_into(keys, [bytearray(1) for _ in keys])),
                       ("exists", lambda: t.exists(keys)), ("delete", lambda: t.delete(keys))):
        try:
            res = call()
            statuses = {getattr(r, "status", None) for r in res}
            check("MKV-OPS-004", statuses == {E.LIMIT_EXCEEDED}, f"{name} of {n + 1} keys", "LIMIT_EXCEEDED",
                  "accepted")
        except MemkvError as exc:
            check("MKV-OPS-004", exc.code is E.LIMIT_EXCEEDED, f"{name} of {n + 1} keys", "LIMIT_EXCEEDED",
                  exc.code.name)
    results = t.put(items[:n])
    check("MKV-OPS-004", all(r.ok for r in results), f"a batch of exactly max_batch = {n} items is accepted",
          "all OK", {r.status.name for r in results})


@pytest.mark.requirement("MKV-OPS-005", "MKV-ERR-001")
def test_get_into_caller_buffers(memkv: Context) -> None:
    t = memkv.transport()
    key = memkv.key()
    data = payload(9, 4097)
    put_ok(t, key, data, "MKV-OPS-005")
    big = bytearray(8192)
    res = t.get_into([key], [big])[0]
    check("MKV-OPS-005", res.ok and res.length == 4097 and bytes(big[:4097]) == data,
          "a larger buffer gets the block and its length", "OK, 4097", f"{res.status.name}, {res.length}")
    exact = memoryview(bytearray(4097))
    res = t.get_into([key], [exact])[0]
    check("MKV-OPS-005", res.ok and bytes(exact) == data, "an exact-size buffer gets the block", "OK",
          res.status.name)
    expect_code("MKV-OPS-005", "get into a buffer one byte short", lambda: t.get_into([key], [bytearray(4096)]),
                [E.BUFFER_TOO_SMALL], "t.get_into([key], [bytearray(len(block) - 1)])")
    expect_code("MKV-OPS-005", "get of a missing key", lambda: t.get_into([memkv.key()], [bytearray(10)]),
                [E.NOT_FOUND])
    check("MKV-OPS-005", read(t, key) == data, "the block is unchanged after a short-buffer get", "unchanged",
          "changed")


@pytest.mark.requirement("MKV-OPS-006")
def test_lookup_longest_present_prefix(memkv: Context) -> None:
    t = memkv.transport()
    chain = [memkv.key() for _ in range(6)]
    for i in (0, 1, 2, 4, 5):
        put_ok(t, chain[i], payload(i, 64), "MKV-OPS-006")
    cases = [(chain, 3), (chain[:2], 2), (chain[3:], 0), (chain[4:], 2), ([], 0), ([memkv.key(), *chain], 0)]
    for keys, want in cases:
        got = t.lookup(keys).prefix_len
        check("MKV-OPS-006", got == want, f"lookup of a {len(keys)}-key chain", want, got)


@pytest.mark.requirement("MKV-OPS-007", "MKV-ERR-002", "MKV-ERR-001")
def test_lease_longer_than_max_lease_ms_is_refused(memkv: Context) -> None:
    t = memkv.transport()
    key = memkv.key()
    put_ok(t, key, b"lease", "MKV-OPS-007")
    limit = memkv.limits.max_lease_ms
    expect_code("MKV-OPS-007", f"lookup with lease_ms = max_lease_ms + 1 = {limit + 1}",
                lambda: t.lookup([key], lease_ms=limit + 1), [E.INVALID_ARGUMENT],
                f"t.lookup([key], lease_ms={limit + 1})")
    res = t.lookup([key], lease_ms=limit)
    check("MKV-OPS-007", res.prefix_len == 1 and res.lease_id is not None, "lease of exactly max_lease_ms",
          "prefix 1 with a lease", res)
    if res.lease_id is not None:
        t.release_lease(res.lease_id)


@pytest.mark.requirement("MKV-OPS-008", "MKV-ERR-001")
def test_releasing_unknown_or_expired_lease(memkv: Context) -> None:
    import time

    t = memkv.transport()
    key = memkv.key()
    put_ok(t, key, b"lease", "MKV-OPS-008")
    expect_code("MKV-OPS-008", "release of a lease id never issued", lambda: t.release_lease("no-such-lease"),
                [E.UNKNOWN_LEASE])
    res = t.lookup([key], lease_ms=60_000)
    check("MKV-OPS-007", res.lease_id is not None, "lookup with lease_ms > 0 issues a lease", "a lease id", None)
    lease_id = str(res.lease_id)
    t.release_lease(lease_id)
    expect_code("MKV-OPS-008", "second release of the same lease", lambda: t.release_lease(lease_id),
                [E.UNKNOWN_LEASE])
    short = t.lookup([key], lease_ms=200)
    check("MKV-OPS-007", short.lease_id is not None, "lookup with lease_ms > 0 issues a lease", "a lease id", None)
    short_id = str(short.lease_id)
    time.sleep(0.45)
    expect_code("MKV-OPS-008", "release of an expired lease", lambda: t.release_lease(short_id), [E.UNKNOWN_LEASE])


@pytest.mark.requirement("MKV-OPS-009", "MKV-ERR-001")
def test_delete(memkv: Context) -> None:
    t = memkv.transport()
    key, other = memkv.key(), memkv.key()
    put_ok(t, key, b"del", "MKV-OPS-009")
    put_ok(t, other, b"keep", "MKV-OPS-009")
    res = t.delete([key])[0]
    check("MKV-OPS-009", res.ok, "delete of a stored block", "OK", res.status.name)
    check("MKV-OPS-009", read(t, key) is None and t.exists([key]) == [False], "a deleted block is gone", "absent",
          "present")
    check("MKV-OPS-009", t.exists([other]) == [True], "delete removes only its key", "other block kept", "gone")
    expect_code("MKV-OPS-009", "delete of an absent block", lambda: t.delete([key]), [E.NOT_FOUND])


@pytest.mark.requirement("MKV-OPS-010")
def test_non_blocking_forms_match_blocking(memkv: Context) -> None:
    t = memkv.transport()
    keys = [memkv.key() for _ in range(3)]
    datas = [payload(300 + i, 1000 * (i + 1)) for i in range(3)]
    results = t.put_async([PutItem(k, d) for k, d in zip(keys, datas, strict=False)]).result(timeout=60)
    check("MKV-OPS-010", all(r.ok for r in results), "put_async stores", "OK", [r.status.name for r in results])
    conflict = t.put_async([PutItem(keys[0], b"different")]).result(timeout=60)[0]
    check("MKV-OPS-010", conflict.status is E.KEY_CONFLICT, "put_async reports per-item errors like put",
          "KEY_CONFLICT", conflict.status.name)
    bufs = [bytearray(len(d)) for d in datas]
    got = t.get_into_async(keys, bufs).result(timeout=60)
    check("MKV-OPS-010", all(g.ok for g in got) and [bytes(b) for b in bufs] == datas, "get_into_async bytes",
          "equal", [g.status.name for g in got])
    missing = t.get_into_async([memkv.key()], [bytearray(10)]).result(timeout=60)[0]
    check("MKV-OPS-010", missing.status is E.NOT_FOUND, "get_into_async of a missing key", "NOT_FOUND",
          missing.status.name)

    async def use_asyncio() -> tuple[list[object], list[bytes]]:
        key = keys[0]
        again = await t.aput([PutItem(key, datas[0])])
        buf = bytearray(len(datas[0]))
        await t.aget_into([key], [buf])
        return list(again), [bytes(buf)]

    again, read_back = asyncio.run(use_asyncio())
    check("MKV-OPS-010", all(getattr(r, "ok", False) for r in again) and read_back == [datas[0]],
          "aput/aget_into match put/get_into", "OK, equal bytes", again)


@pytest.mark.requirement("MKV-OPS-011")
@pytest.mark.parametrize("size", [777, 70_000])
def test_exists_and_stat(memkv: Context, size: int) -> None:
    t = memkv.transport()
    key, missing = memkv.key(), memkv.key()
    data = payload(11, size)
    meta = BlockMeta(dtype="fp16", token_count=16, user=b"u")
    put_ok(t, key, data, "MKV-OPS-011", meta=meta)
    check("MKV-OPS-011", t.exists([key, missing]) == [True, False], "exists", [True, False], t.exists([key, missing]))
    infos = t.stat([key, missing])
    info = infos[0]
    check("MKV-OPS-011", info is not None and infos[1] is None, "stat of present and absent", "info, None", infos)
    if info is None:
        return
    check("MKV-OPS-011", (info.key, info.length, info.checksum, info.meta) == (key, size, payload_checksum(data), meta),
          "stat reports key, length, checksum, metadata", (key.hex(), size, payload_checksum(data), meta),
          (info.key.hex(), info.length, info.checksum, info.meta))


@pytest.mark.requirement("MKV-KEY-001", "MKV-ERR-002", "MKV-ERR-001")
@pytest.mark.parametrize("size", [0, 1, 15, 17, 32])
def test_wrong_key_sizes_get_invalid_key(memkv: Context, size: int) -> None:
    t = memkv.transport()
    bad = bytes(range(size))
    good = memkv.key()
    put_ok(t, good, b"good", "MKV-KEY-001")
    before = t.stats().get("blocks")
    calls: dict[str, Callable[[], Any]] = {
        "put": lambda: t.put([PutItem(bad, b"x")]),
        "get_into": lambda: t.get_into([bad], [bytearray(8)]),
        "delete": lambda: t.delete([bad]),
        "exists": lambda: t.exists([bad]),
        "stat": lambda: t.stat([bad]),
        "lookup": lambda: t.lookup([good, bad]),
        "invalidate_keys": lambda: t.invalidate_keys([bad]),
    }
    for name, call in calls.items():
        if name in ("exists", "stat", "lookup", "invalidate_keys"):
            try:
                value = call()
            except MemkvError as exc:
                check("MKV-KEY-001", exc.code is E.INVALID_KEY, f"{name} with a {size}-byte key", "INVALID_KEY",
                      exc.code.name)
                continue
            except Exception as exc:
                fail("MKV-ERR-001", f"{name} with a {size}-byte key raised a non-spec exception", "INVALID_KEY",
                     f"{type(exc).__name__}: {exc}")
            fail("MKV-KEY-001", f"{name} with a {size}-byte key", "INVALID_KEY", f"accepted: {value!r}",
                 f"t.{name}([bytes({size})])")
        else:
            status = item_status(call)
            check("MKV-KEY-001", status is E.INVALID_KEY, f"{name} with a {size}-byte key", "INVALID_KEY",
                  status.name, f"t.{name}([bytes({size}), ...])")
    check("MKV-ERR-002", read(t, good) == b"good", "refused requests leave stored blocks unchanged", "unchanged",
          "changed")
    after = t.stats().get("blocks")
    check("MKV-ERR-002", before == after, "refused requests store nothing", before, after)
