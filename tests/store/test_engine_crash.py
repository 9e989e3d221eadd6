"""Real crashes: a writer process SIGKILLed mid-write, and on-disk damage found after a crash."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from helpers_crash import CAPACITY, KEEP, NS, block, block_key, block_size, child
from helpers_store import check_space

from memkv.errors import ErrorCode
from memkv.store.engine import StorageEngine


def kill_writer_after(directory: Path, start: int, acks: int, delay_s: float, env: dict[str, str]) -> int:
    """Run a writer; `delay_s` after it starts the put following its `acks`-th acknowledgement,
    SIGKILL it. Returns the last block whose put returned (it printed the acknowledgement)."""
    proc = child("writer", directory, str(start), env=env)
    assert proc.stdout is not None
    last = start - 1
    try:
        seen = 0
        while True:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer died on its own: {proc.stderr.read() if proc.stderr else ''}")
            if line.startswith("w "):
                if seen >= acks:
                    break
                continue
            last, seen = int(line), seen + 1
        time.sleep(delay_s)  # the put of block last + 1 is under way: mid-write, or just after
        proc.send_signal(signal.SIGKILL)
        for line in proc.stdout:  # acknowledgements already in the pipe returned before the kill too
            if not line.startswith("w "):
                last = int(line)
    finally:
        proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr, proc.stdin):
            if stream:
                stream.close()
    assert proc.returncode == -signal.SIGKILL
    return last


def verify_after_crash(directory: Path, start: int, last_ack: int, context: str, clear: bool = False) -> set[int]:
    """The writer of this round started at block `start` on an empty store and acknowledged `last_ack`."""
    engine = StorageEngine(str(directory), flush_interval_s=3600)
    try:
        check_space(engine)  # no leaked space: free runs and committed blocks tile the device
        present = {int.from_bytes(k, "big") for (ns, k) in engine.resident.blocks if ns == NS}
        assert present <= set(range(max(start, last_ack - KEEP + 1), last_ack + 2)), f"{context}: {sorted(present)}"
        must = set(range(max(start, last_ack - KEEP + 2), last_ack + 1))
        assert must <= present, f"{context}: acknowledged blocks lost: {sorted(must - present)}"
        for i in sorted(present):
            buf = bytearray(block_size(i))
            (res,) = engine.get_into(NS, [block_key(i)], [buf])
            assert res.status is ErrorCode.OK, f"{context}: block {i}: {res.status.name} {res.message}"
            assert res.length == len(buf) and bytes(buf) == block(i), f"{context}: block {i} has wrong bytes"
        used = engine.stats()["used_bytes"]
        assert used == sum(engine.allocator.rounded(block_size(i)) for i in present), context
        if clear:  # the next round's writer starts from an empty store
            engine.invalidate_namespace(NS)
            check_space(engine)
        return present
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-002", "MKV-DUR-003", "MKV-DUR-004", "MKV-OPS-002")
@pytest.mark.parametrize("direct", ["1", "0"], ids=["o_direct", "buffered"])
def test_writer_killed_mid_write_leaves_no_partial_block_and_no_leak(store_dir: Path, direct: str) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    env = {"MEMKV_DIRECT": direct}
    start = 0
    for round_no in range(3):
        acks = rng.randrange(1, 12)
        delay = rng.uniform(0, 0.003)
        last = kill_writer_after(store_dir, start, acks, delay, env)
        context = f"seed {seed} round {round_no} start {start} acks {acks} delay {delay:.4f} last {last}"
        verify_after_crash(store_dir, start, last, context, clear=True)
        start = last + 2  # never reuse a key whose fate is unknown
    assert (store_dir / "device.img").stat().st_size == CAPACITY


@pytest.mark.requirement("MKV-DUR-004", "MKV-BLK-006")
def test_damage_after_a_crash_is_reported_never_returned(store_dir: Path) -> None:
    last = kill_writer_after(store_dir, 0, 4, 0.0, {})
    engine = StorageEngine(str(store_dir), flush_interval_s=3600)
    with engine._lock:
        victim = max(i for (ns, k) in engine.resident.blocks for i in [int.from_bytes(k, "big")] if ns == NS)
        extents = list(engine.resident.blocks[(NS, block_key(victim))].row.extents)
    engine.close()
    assert victim in (last, last + 1)
    with (store_dir / "device.img").open("r+b") as f:  # a torn sector in the middle of the block
        f.seek(extents[0].offset + 8192)
        f.write(bytes(512))
    engine = StorageEngine(str(store_dir), flush_interval_s=3600)
    try:
        buf = bytearray(block_size(victim))
        (res,) = engine.get_into(NS, [block_key(victim)], [buf])
        assert res.status is ErrorCode.CORRUPTED
        assert engine.exists(NS, [block_key(victim)]) == [False]
        check_space(engine)
    finally:
        engine.close()
