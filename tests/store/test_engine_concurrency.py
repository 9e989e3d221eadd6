"""Threads racing on the same keys: no torn or mixed block, no corrupted allocator (MKV-OPS-012)."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from helpers_store import KiB, check_space, key, open_engine, payload

from memkv.checksum import payload_checksum
from memkv.errors import ErrorCode
from memkv.transport import PutItem

NS = "ns"
UNIT = 64 * KiB
KEYS = 8
VARIANTS = 2
SIZES = {(i, v): 40 * KiB + random.Random(i * 10 + v).randrange(300 * KiB)
         for i in range(KEYS) for v in range(VARIANTS)}
DATA = {iv: payload(iv[0], n, iv[1]) for iv, n in SIZES.items()}
CHECKSUMS = {payload_checksum(d): iv for iv, d in DATA.items()}
ALLOWED = {
    "put": {ErrorCode.OK, ErrorCode.KEY_CONFLICT, ErrorCode.CAPACITY_EXCEEDED},
    "get": {ErrorCode.OK, ErrorCode.NOT_FOUND},
}


@pytest.mark.requirement("MKV-OPS-012", "MKV-OPS-002", "MKV-INV-007", "MKV-CAP-002")
@pytest.mark.parametrize("direct", ["1", "0"], ids=["o_direct", "buffered"])
def test_racing_put_get_invalidate_on_the_same_keys(store_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                     direct: str) -> None:
    monkeypatch.setenv("MEMKV_DIRECT", direct)
    # room for about half of the blocks: puts keep evicting what readers are reading
    engine = open_engine(store_dir, capacity=26 * UNIT, unit=UNIT, flush_interval_s=0.01)
    stop = time.monotonic() + 0.6
    failures: list[str] = []
    seen: Counter[str] = Counter()
    seen_lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        buf = bytearray(400 * KiB)
        local: Counter[str] = Counter()
        try:
            while time.monotonic() < stop:
                i = rng.randrange(KEYS)
                op = rng.random()
                if op < 0.4:
                    v = rng.randrange(VARIANTS)
                    (res,) = engine.put(NS, [PutItem(key(i), DATA[(i, v)])])
                    if res.status not in ALLOWED["put"]:
                        failures.append(f"put {i}/{v}: {res.status.name} {res.message}")
                    local[f"put {res.status.name}"] += 1
                elif op < 0.85:
                    (got,) = engine.get_into(NS, [key(i)], [buf])
                    local[f"get {got.status.name}"] += 1
                    if got.status not in ALLOWED["get"]:
                        failures.append(f"get {i}: {got.status.name} {got.message}")
                    elif got.ok:
                        iv = CHECKSUMS.get(got.checksum)
                        if iv is None or iv[0] != i or got.length != SIZES[iv]:
                            failures.append(f"get {i}: metadata of another block {iv}")
                        elif bytes(buf[: got.length]) != DATA[iv]:
                            failures.append(f"get {i}: torn or mixed bytes")
                elif op < 0.95:
                    engine.invalidate_keys(NS, [key(i)])
                    local["invalidate"] += 1
                else:
                    lease = engine.lookup(NS, [key(i), key((i + 1) % KEYS)], lease_ms=rng.randrange(0, 20))
                    if lease.lease_id and rng.random() < 0.5:
                        try:
                            engine.release_lease(NS, lease.lease_id)
                        except Exception as exc:  # it may have expired already
                            if getattr(exc, "code", None) is not ErrorCode.UNKNOWN_LEASE:
                                raise
                    local["lookup"] += 1
        except Exception as exc:  # reported below
            failures.append(f"worker {seed} crashed: {exc!r}")
        with seen_lock:
            seen.update(local)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not failures, failures[:5]
        assert seen["get OK"] > 10 and seen["put OK"] > 10 and seen["invalidate"] > 0, seen
        with engine._lock:
            engine.protection.expire_leases(float("inf"))
        check_space(engine)
        assert not any(live.readers for live in engine.resident.blocks.values())
        for (_, k), live in list(engine.resident.blocks.items()):
            buf = bytearray(live.row.length)
            assert engine.get_into(NS, [k], [buf])[0].ok
            assert payload_checksum(buf) == live.row.checksum
    finally:
        for t in threads:
            t.join(30)
        engine.close()
    engine = open_engine(store_dir)
    try:
        check_space(engine)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-OPS-012", "MKV-BLK-007")
def test_concurrent_puts_of_one_key_write_once(store_dir: Path) -> None:
    engine = open_engine(store_dir, capacity=40 * UNIT, unit=UNIT)
    barrier = threading.Barrier(6)
    results: list[ErrorCode] = []

    def put(v: int) -> None:
        barrier.wait()
        results.append(engine.put(NS, [PutItem(key(0), DATA[(0, v)])])[0].status)

    try:
        threads = [threading.Thread(target=put, args=(n % 2,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        counts = Counter(results)
        assert counts[ErrorCode.OK] + counts[ErrorCode.KEY_CONFLICT] == 6
        assert counts[ErrorCode.OK] == 3 and counts[ErrorCode.KEY_CONFLICT] == 3  # one variant won
        assert engine.stats()["puts"] == 1 and engine.stats()["blocks"] == 1
        check_space(engine)
    finally:
        engine.close()
