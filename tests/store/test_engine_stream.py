"""StorageEngine.put_stream / open_read / read_stream: the streamed data path a server uses.

Each test runs on an O_DIRECT-capable device (or buffered fallback) and on a buffered,
memory-mapped device (MEMKV_DIRECT=0), since the two take different code paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers_store import KiB, MiB, check_space, key, open_engine, payload

from memkv.blocks import BlockMeta
from memkv.buffers import aligned_buffer
from memkv.checksum import payload_checksum
from memkv.errors import (
    BufferTooSmall,
    ChecksumMismatch,
    Corrupted,
    ErrorCode,
    InvalidArgument,
    KeyConflict,
    NotFound,
)
from memkv.store.engine import StorageEngine
from memkv.store.read_path import HASH_BESIDE_MIN_BYTES
from memkv.transport import PutItem


@pytest.fixture(params=["direct", "mapped"])
def engine(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[StorageEngine]:
    if request.param == "mapped":
        monkeypatch.setenv("MEMKV_DIRECT", "0")
    eng = open_engine(tmp_path / "store")
    if request.param == "mapped":
        assert eng.device.mapping() is not None
    yield eng
    eng.close()


def buffers(piece: int = 64 * KiB) -> list[memoryview]:
    return [aligned_buffer(piece) for _ in range(3)]


def feeder(data: bytes) -> tuple[Callable[[memoryview], None], list[int]]:
    pos = [0]

    def fill(view: memoryview) -> None:
        view[:] = data[pos[0] : pos[0] + len(view)]
        pos[0] += len(view)

    return fill, pos


def read_all(engine: StorageEngine, k: bytes) -> bytes:
    block = engine.open_read("ns", k)
    out = bytearray()
    try:
        engine.read_stream(block, buffers(), lambda v: out.extend(v))
    finally:
        engine.close_read(block)
    return bytes(out)


# the last size is hashed beside the sending (another thread) on a mapped device, the others inline
@pytest.mark.parametrize("size", [4 * KiB, 100_000, 1 * MiB + 12345, HASH_BESIDE_MIN_BYTES])
def test_put_stream_then_get_and_read_stream(engine: StorageEngine, size: int) -> None:
    data = payload(1, size)
    fill, pos = feeder(data)
    meta = BlockMeta(token_count=7)
    assert engine.put_stream("ns", key(1), size, fill, buffers(), meta, payload_checksum(data)).ok
    assert pos[0] == size
    dest = bytearray(size)
    result = engine.get_into("ns", [key(1)], [dest])[0]
    assert result.ok and bytes(dest) == data and result.meta.token_count == 7
    assert read_all(engine, key(1)) == data
    check_space(engine)


def test_checksum_mismatch_stores_nothing_and_frees_space(engine: StorageEngine) -> None:
    free = engine.stats()["free_bytes"]
    data = payload(2, 300 * KiB)
    fill, _ = feeder(data)
    with pytest.raises(ChecksumMismatch):
        engine.put_stream("ns", key(2), len(data), fill, buffers(), checksum=payload_checksum(data) ^ 1)
    assert engine.stat("ns", [key(2)]) == [None]
    assert engine.stats()["free_bytes"] == free
    check_space(engine)


def test_fill_failure_passes_through_and_frees_space(engine: StorageEngine) -> None:
    free = engine.stats()["free_bytes"]
    calls = [0]

    def fill(view: memoryview) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise ConnectionError("peer went away")
        view[:] = bytes(len(view))

    with pytest.raises(ConnectionError):
        engine.put_stream("ns", key(3), 1 * MiB, fill, buffers())
    assert engine.stat("ns", [key(3)]) == [None]
    assert engine.stats()["free_bytes"] == free
    check_space(engine)
    # the key is usable afterwards
    data = payload(3, 1 * MiB)
    assert engine.put_stream("ns", key(3), len(data), feeder(data)[0], buffers()).ok


def test_reput_same_bytes_ok_different_bytes_conflict(engine: StorageEngine) -> None:
    data = payload(4, 200 * KiB)
    assert engine.put_stream("ns", key(4), len(data), feeder(data)[0], buffers()).ok
    fill, pos = feeder(data)
    assert engine.put_stream("ns", key(4), len(data), fill, buffers()).ok
    assert pos[0] == len(data)  # the payload was consumed
    other = payload(4, 200 * KiB, variant=1)
    with pytest.raises(KeyConflict):
        engine.put_stream("ns", key(4), len(other), feeder(other)[0], buffers())
    assert read_all(engine, key(4)) == data


def test_open_read_errors_and_pin(engine: StorageEngine) -> None:
    with pytest.raises(NotFound):
        engine.open_read("ns", key(5))
    data = payload(5, 256 * KiB)
    engine.put_stream("ns", key(5), len(data), feeder(data)[0], buffers())
    with pytest.raises(BufferTooSmall):
        engine.open_read("ns", key(5), capacity=len(data) - 1)
    block = engine.open_read("ns", key(5), capacity=len(data))
    assert block.result().length == len(data)
    # invalidated while pinned: the extents stay reserved until the read is closed
    free = engine.stats()["free_bytes"]
    assert engine.invalidate_keys("ns", [key(5)]) == 1
    assert engine.stats()["free_bytes"] == free
    out = bytearray()
    engine.read_stream(block, buffers(), out.extend)
    assert bytes(out) == data
    engine.close_read(block)
    engine.close_read(block)  # idempotent
    check_space(engine)


def test_corrupted_block_is_streamed_then_removed(engine: StorageEngine) -> None:
    data = payload(6, 512 * KiB)
    engine.put_stream("ns", key(6), len(data), feeder(data)[0], buffers())
    extent = engine.resident.blocks[("ns", key(6))].row.extents[0]
    fd = os.open(engine.device.path, os.O_RDWR)
    try:
        os.pwrite(fd, b"\xff" * 16, extent.offset + 1000)
    finally:
        os.close(fd)
    block = engine.open_read("ns", key(6))
    out = bytearray()
    with pytest.raises(Corrupted):
        engine.read_stream(block, buffers(), out.extend)
    engine.close_read(block)
    assert len(out) == len(data)  # every byte was emitted before the verdict
    assert engine.stat("ns", [key(6)]) == [None]
    assert engine.get_into("ns", [key(6)], [bytearray(len(data))])[0].status is ErrorCode.NOT_FOUND
    check_space(engine)


@pytest.mark.requirement("MKV-ERR-002")
def test_streamed_put_refused_for_its_checksum_evicts_nothing_from_a_full_store(engine: StorageEngine) -> None:
    """A streamed put that fits only by evicting is received whole and verified before eviction."""
    stored = [key(i) for i in range(16 * MiB // (256 * KiB) - 1)]
    for i, k in enumerate(stored):
        engine.put("ns", [PutItem(k, payload(i, 256 * KiB))])[0].raise_for_status()
    before = engine.exists("ns", stored)
    data = payload(99, 4 * MiB)
    fill, _ = feeder(data)
    with pytest.raises(ChecksumMismatch):
        engine.put_stream("ns", key(999), len(data), fill, buffers(), checksum=payload_checksum(data) ^ 1)
    assert engine.exists("ns", stored) == before and all(before)
    fill, _ = feeder(data)
    engine.put_stream("ns", key(999), len(data), fill, buffers(), checksum=payload_checksum(data))
    assert read_all(engine, key(999)) == data


def test_a_mapped_device_streams_without_piece_buffers(engine: StorageEngine) -> None:
    """A server passes no piece buffers when `streams_mapped`: puts (also one that must evict, which
    is staged whole first) and gets go through the mapping; an unmapped device refuses that."""
    data = payload(5, 1 * MiB + 4096)
    fill, pos = feeder(data)
    if not engine.streams_mapped:
        with pytest.raises(InvalidArgument, match="needs piece buffers"):
            engine.put_stream("ns", key(5), len(data), fill, [], checksum=payload_checksum(data))
        assert not engine.exists("ns", [key(5)])[0]
        check_space(engine)
        return
    assert engine.put_stream("ns", key(5), len(data), fill, [], checksum=payload_checksum(data)).ok
    assert pos[0] == len(data)
    block = engine.open_read("ns", key(5))
    out = bytearray()
    try:
        engine.read_stream(block, [], out.extend)
    finally:
        engine.close_read(block)
    assert bytes(out) == data
    while engine.stats()["free_bytes"] >= 4 * MiB:  # fill the store, so the next put must evict
        i = engine.stats()["blocks"] + 100
        engine.put("ns", [PutItem(key(i), payload(i, 1 * MiB))])[0].raise_for_status()
    big = payload(6, 4 * MiB)
    fill, _ = feeder(big)
    assert engine.put_stream("ns", key(6), len(big), fill, [], checksum=payload_checksum(big)).ok
    assert read_all(engine, key(6)) == big
    check_space(engine)
