"""A large put is hashed while it is written: in the calling thread while io_uring writes, or by a
pool thread while the caller writes; either way the block stored is the block put."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from helpers_store import MiB, key, open_engine, payload

from memkv.buffers import aligned_buffer
from memkv.checksum import payload_checksum
from memkv.errors import ErrorCode
from memkv.store.io_engines import uring_status
from memkv.transport import PutItem

NS = "ns"


@pytest.mark.requirement("MKV-OPS-002", "MKV-BLK-005")
@pytest.mark.parametrize("io", ["uring", "threads"])
@pytest.mark.parametrize("shape", ["aligned", "unaligned"])
def test_a_large_put_is_hashed_while_written_and_stored_exactly(tmp_path: Path, io: str, shape: str) -> None:
    if io == "uring" and not uring_status()[0]:
        pytest.skip("io_uring unavailable")
    engine = open_engine(tmp_path / "store", io=io)
    overlapped: list[bool] = []
    real = engine.device.writes_overlap

    def recording(pieces: list[tuple[int, memoryview]]) -> bool:
        overlapped.append(real(pieces))
        return overlapped[-1]

    engine.device.writes_overlap = recording  # type: ignore[method-assign]
    try:
        data = payload(3, 2 * MiB + (0 if shape == "aligned" else 4097))
        if shape == "aligned":
            src = aligned_buffer(len(data))
            src[:] = data
        else:
            src = memoryview(bytearray(b"\0" + data))[1:]
        (res,) = engine.put(NS, [PutItem(key(1), src)])
        assert res.ok
        # io_uring with whole pages hashes in this thread; anything else on a pool thread
        straight = shape == "aligned" or not engine.device.direct
        assert overlapped and set(overlapped) == {io == "uring" and straight}
        (info,) = engine.stat(NS, [key(1)])
        assert info is not None and info.checksum == payload_checksum(data)
        out = aligned_buffer(len(data) + 4096)
        (got,) = engine.get_into(NS, [key(1)], [out])
        assert got.ok and bytes(out[: len(data)]) == data
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-003", "MKV-ERR-010")
def test_a_write_that_fails_while_hashing_frees_its_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not uring_status()[0]:
        pytest.skip("io_uring unavailable")
    engine = open_engine(tmp_path / "store", io="uring")
    try:
        free = engine.allocator.free_bytes
        src = aligned_buffer(2 * MiB)
        src[:] = payload(4, 2 * MiB)
        assert engine.device.writes_overlap([(engine.superblock.data_offset, src)])

        def failing(*args: object) -> None:
            raise OSError(errno.EIO, "injected")

        monkeypatch.setattr(engine.device.engine, "pwrite_during", failing)
        (res,) = engine.put(NS, [PutItem(key(1), src)])
        assert res.status is ErrorCode.UNAVAILABLE and "injected" in res.message
        assert engine.stat(NS, [key(1)]) == [None] and engine.allocator.free_bytes == free
    finally:
        engine.close()
