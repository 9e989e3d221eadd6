"""The device I/O engines: io_uring (memkv.store._uring) and the thread pool move the same bytes."""

from __future__ import annotations

import errno
import mmap
import os
import random
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from memkv.errors import InvalidArgument, Unsupported
from memkv.store import io_engines as native_io
from memkv.store.io_engines import IOEngine, ThreadEngine, UringEngine, compare_engines, format_rows, select_engine

URING_OK, URING_WHY = native_io.uring_status()
needs_uring = pytest.mark.skipif(not URING_OK, reason=f"io_uring unavailable: {URING_WHY}")

ALIGN = 4096
FILE_SIZE = 8 * 1024 * 1024
# small chunks and a shallow queue so that a few hundred KiB already exercise the queueing
CHUNK = 64 * 1024
DEPTH = 4


def _engines() -> list[str]:
    return ["uring", "threads"] if URING_OK else ["threads"]


def _make(name: str) -> IOEngine:
    return UringEngine(DEPTH, CHUNK) if name == "uring" else ThreadEngine(DEPTH, CHUNK)


@pytest.fixture(params=["uring", "threads"])
def engine(request: pytest.FixtureRequest) -> Iterator[IOEngine]:
    if request.param == "uring" and not URING_OK:
        pytest.skip(f"io_uring unavailable: {URING_WHY}")
    eng = _make(request.param)
    yield eng
    eng.close()


def _open_direct(path: Path, size: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.ftruncate(fd, size)
    os.close(fd)
    try:
        fd = os.open(path, os.O_RDWR | os.O_DIRECT)
        probe = mmap.mmap(-1, ALIGN)
        os.preadv(fd, [probe], 0)
        probe.close()
    except OSError:
        pytest.skip(f"O_DIRECT not supported under {path.parent}")
    return fd


def _aligned(data: bytes) -> mmap.mmap:
    buf = mmap.mmap(-1, max(len(data), 1))
    buf[: len(data)] = data
    return buf


def _random_plan(rng: random.Random, n: int, aligned: bool) -> list[tuple[int, bytes]]:
    """Non-overlapping (offset, payload) pairs inside FILE_SIZE."""
    plan: list[tuple[int, bytes]] = []
    cursor = 0
    for _ in range(n):
        gap = rng.randrange(0, 8) * ALIGN if aligned else rng.randrange(0, 20000)
        size = rng.randrange(1, 80) * ALIGN if aligned else rng.randrange(1, 300000)
        offset = cursor + gap
        if offset + size > FILE_SIZE:
            break
        plan.append((offset, rng.randbytes(size)))
        cursor = offset + size + (-(offset + size) % ALIGN if aligned else 0)
    return plan


def test_engines_write_identical_files_with_o_direct(tmp_path: Path) -> None:
    rng = random.Random(1234)
    plan = _random_plan(rng, 40, aligned=True)
    assert sum(len(p) for _, p in plan) > 4 * CHUNK
    images = {}
    for name in _engines():
        path = tmp_path / f"{name}.img"
        fd = _open_direct(path, FILE_SIZE)
        with _make(name) as eng:
            for offset, payload in plan:
                buf = _aligned(payload)
                assert eng.pwrite(fd, offset, memoryview(buf)[: len(payload)]) == len(payload)
                buf.close()
        os.close(fd)
        images[name] = path.read_bytes()
    expected = bytearray(FILE_SIZE)
    for offset, payload in plan:
        expected[offset : offset + len(payload)] = payload
    for name, image in images.items():
        assert image == bytes(expected), name


def test_engines_read_identically_with_o_direct(tmp_path: Path) -> None:
    rng = random.Random(99)
    content = rng.randbytes(FILE_SIZE)
    path = tmp_path / "src.img"
    path.write_bytes(content)
    fd = _open_direct(path, FILE_SIZE)
    plan = _random_plan(rng, 40, aligned=True)
    try:
        for name in _engines():
            with _make(name) as eng:
                for offset, payload in plan:
                    dest = mmap.mmap(-1, len(payload))
                    assert eng.pread_into(fd, offset, dest) == len(payload)
                    assert dest[:] == content[offset : offset + len(payload)], (name, offset, len(payload))
                    dest.close()
    finally:
        os.close(fd)


def test_batches_and_cross_engine_roundtrip_on_tmpfs() -> None:
    """tmpfs has no O_DIRECT: unaligned sizes, offsets and plain bytearrays must work too."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    rng = random.Random(7)
    plan = _random_plan(rng, 30, aligned=False)
    path = f"/dev/shm/memkv-test-{os.getpid()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, FILE_SIZE)
        names = _engines()
        for writer in names:
            for reader in names:
                os.ftruncate(fd, 0)
                os.ftruncate(fd, FILE_SIZE)
                with _make(writer) as w, _make(reader) as r:
                    counts = w.pwrite_batch(fd, [o for o, _ in plan], [p for _, p in plan])
                    assert counts == [len(p) for _, p in plan]
                    dests = [bytearray(len(p)) for _, p in plan]
                    assert r.pread_batch(fd, [o for o, _ in plan], dests) == [len(p) for _, p in plan]
                    assert dests == [bytearray(p) for _, p in plan], (writer, reader)
    finally:
        os.close(fd)
        os.unlink(path)


def test_read_past_end_of_file_returns_the_prefix(engine: IOEngine, tmp_path: Path) -> None:
    path = tmp_path / "short.img"
    path.write_bytes(b"x" * (5 * ALIGN))
    fd = os.open(path, os.O_RDONLY)
    try:
        dest = bytearray(10 * CHUNK)
        assert engine.pread_into(fd, 2 * ALIGN, dest) == 3 * ALIGN
        assert dest[: 3 * ALIGN] == b"x" * (3 * ALIGN)
        assert engine.pread_into(fd, 100 * ALIGN, bytearray(ALIGN)) == 0
    finally:
        os.close(fd)


def test_errors_carry_errno(engine: IOEngine, tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(OSError) as info:
        engine.pwrite(fd, 0, b"abc")
    assert info.value.errno == errno.EBADF
    # O_DIRECT with a misaligned memory address: EINVAL from the kernel
    dfd = _open_direct(tmp_path / "d.img", 1 << 20)
    try:
        backing = mmap.mmap(-1, 3 * ALIGN)
        misaligned = memoryview(backing)[1 : 1 + ALIGN]
        with pytest.raises(OSError) as info:
            engine.pwrite(dfd, 0, misaligned)
        assert info.value.errno == errno.EINVAL
        del info  # its traceback holds frames that hold views of `backing`
    finally:
        os.close(dfd)


def test_read_into_read_only_buffer_is_refused(engine: IOEngine, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * ALIGN)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises((InvalidArgument, BufferError, TypeError)):
            engine.pread_into(fd, 0, b"\0" * ALIGN)
    finally:
        os.close(fd)


@needs_uring
def test_registered_buffers_are_used_and_correct(tmp_path: Path) -> None:
    fd = _open_direct(tmp_path / "fixed.img", FILE_SIZE)
    pool = mmap.mmap(-1, 16 * CHUNK)
    rng = random.Random(5)
    pool[:] = rng.randbytes(len(pool))
    eng = UringEngine(DEPTH, CHUNK)
    try:
        assert eng.register_buffers([pool]) is True
        assert eng.describe()["registered_buffers"] == 1
        view = memoryview(pool)
        # inside the registered region (WRITE_FIXED), and a plain buffer alongside (WRITE)
        other = _aligned(rng.randbytes(3 * CHUNK))
        src = view[ALIGN : ALIGN + 7 * CHUNK]
        assert eng.pwrite_batch(fd, [0, 1 << 20], [src, other]) == [7 * CHUNK, 3 * CHUNK]
        expected = bytes(src)
        src.release()
        back = view[8 * CHUNK : 15 * CHUNK]
        assert eng.pread_into(fd, 0, back) == 7 * CHUNK  # READ_FIXED into the region's second half
        assert bytes(back) == expected
        plain = mmap.mmap(-1, 3 * CHUNK)
        assert eng.pread_into(fd, 1 << 20, plain) == 3 * CHUNK
        assert plain[:] == other[:]
        back.release()
        view.release()
        eng.unregister_buffers()
    finally:
        eng.close()
        os.close(fd)
    pool.close()  # no export left behind after unregister + close


@needs_uring
def test_uring_engine_from_many_threads(tmp_path: Path) -> None:
    fd = _open_direct(tmp_path / "mt.img", FILE_SIZE)
    eng = UringEngine(DEPTH, CHUNK)
    region = FILE_SIZE // 8
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            data = _aligned(bytes([i + 1]) * region)
            for _ in range(3):
                eng.pwrite(fd, i * region, data)
                dest = mmap.mmap(-1, region)
                assert eng.pread_into(fd, i * region, dest) == region
                assert dest[:] == data[:]
                dest.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    eng.close()
    os.close(fd)
    assert not errors


@needs_uring
def test_ring_validates_and_closes() -> None:
    from memkv.store import _uring

    with pytest.raises(ValueError):
        _uring.Ring(0)
    with pytest.raises(ValueError):
        _uring.Ring(4, 1000)
    with _uring.Ring(4, CHUNK) as ring:
        assert ring.depth == 4 and ring.chunk_size == CHUNK and not ring.closed
        with pytest.raises(ValueError):
            ring.read(0, [0, 1], [bytearray(1)])
    assert ring.closed
    with pytest.raises(ValueError):
        ring.read(0, [0], [bytearray(1)])


def test_select_engine_honors_memkv_io(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMKV_IO", "threads")
    with select_engine() as eng:
        assert isinstance(eng, ThreadEngine)
    monkeypatch.setenv("MEMKV_IO", "bogus")
    with pytest.raises(InvalidArgument):
        select_engine()
    monkeypatch.setenv("MEMKV_IO", "threads")
    monkeypatch.setenv("MEMKV_IO_DEPTH", "3")
    monkeypatch.setenv("MEMKV_IO_CHUNK_KIB", "128")
    with select_engine() as eng:
        assert (eng.depth, eng.chunk_size) == (3, 128 * 1024)
    if URING_OK:
        monkeypatch.setenv("MEMKV_IO", "uring")
        with select_engine() as eng:
            assert isinstance(eng, UringEngine)
        monkeypatch.delenv("MEMKV_IO")
        with select_engine() as eng:
            assert isinstance(eng, UringEngine)  # auto prefers io_uring


def test_falls_back_to_threads_without_the_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "memkv.store._uring", None)  # makes `from . import _uring` fail
    monkeypatch.delattr(sys.modules["memkv.store"], "_uring", raising=False)
    ok, why = native_io.uring_status()
    assert not ok and "not built" in why
    monkeypatch.delenv("MEMKV_IO", raising=False)
    with select_engine() as eng:
        assert isinstance(eng, ThreadEngine)
    monkeypatch.setenv("MEMKV_IO", "uring")
    with pytest.raises(Unsupported):
        select_engine()


def test_falls_back_when_kernel_refuses_io_uring(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        @staticmethod
        def probe() -> tuple[bool, int]:
            return False, errno.EPERM

    monkeypatch.setattr(native_io, "_load_uring", lambda: Refusing)
    ok, why = native_io.uring_status()
    assert not ok and "seccomp" in why
    monkeypatch.delenv("MEMKV_IO", raising=False)
    with select_engine() as eng:
        assert isinstance(eng, ThreadEngine)


def test_compare_engines_reports_every_path(tmp_path: Path) -> None:
    rows = compare_engines(
        str(tmp_path / "bench.img"), sizes=(256 * 1024,), count=2, depth=2, chunk_size=CHUNK, repeat=1
    )
    assert len(rows) == 1
    expected = {"threads", "raw_qd1", "raw_qd2"} | ({"uring", "uring_fixed"} if URING_OK else set())
    assert set(rows[0].write) == expected and set(rows[0].read) == expected
    assert all(v > 0 for v in [*rows[0].write.values(), *rows[0].read.values()])
    assert "uring/raw_best" in format_rows(rows)
    assert not (tmp_path / "bench.img").exists()


@needs_uring
def test_rings_of_finished_threads_are_released(tmp_path: Path) -> None:
    eng = UringEngine(DEPTH, CHUNK)
    path = tmp_path / "t"
    path.write_bytes(b"z" * ALIGN)
    fd = os.open(path, os.O_RDONLY)

    def work() -> None:
        assert eng.pread_into(fd, 0, bytearray(ALIGN)) == ALIGN

    for _ in range(5):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    import gc

    gc.collect()
    assert len(eng._rings) <= 2  # the constructing thread's ring, maybe one not yet collected
    eng.close()
    os.close(fd)


def _written(path: Path, plan: list[tuple[int, bytes]]) -> bool:
    with open(path, "rb") as f:  # buffered: sees what the O_DIRECT writes put on the device
        return all(os.pread(f.fileno(), len(data), offset) == data for offset, data in plan)


def test_pwrite_during_writes_every_buffer_and_calls_once(engine: IOEngine, tmp_path: Path) -> None:
    fd = _open_direct(tmp_path / "during.img", FILE_SIZE)
    # more bytes than the queue holds (DEPTH x CHUNK): the rest is queued after `during` ran
    plan = [(i * 96 * ALIGN, random.Random(i).randbytes(96 * ALIGN)) for i in range(6)]
    buffers = [_aligned(data) for _, data in plan]
    calls: list[int] = []
    try:
        got = engine.pwrite_during(fd, [offset for offset, _ in plan], buffers, lambda: calls.append(1) or "hashed")
        assert got == "hashed" and calls == [1]
        assert _written(tmp_path / "during.img", plan)
    finally:
        os.close(fd)


def test_pwrite_during_raises_the_callables_error_once_the_writes_are_done(engine: IOEngine, tmp_path: Path) -> None:
    fd = _open_direct(tmp_path / "during.img", FILE_SIZE)
    plan = [(0, random.Random(7).randbytes(40 * ALIGN))]

    def fails() -> None:
        raise KeyError("during failed")

    try:
        with pytest.raises(KeyError, match="during failed"):
            engine.pwrite_during(fd, [0], [_aligned(plan[0][1])], fails)
        assert _written(tmp_path / "during.img", plan)  # no write outlives the call, even when `during` fails
    finally:
        os.close(fd)


def test_pwrite_during_calls_even_with_nothing_to_write_and_reports_errno(engine: IOEngine, tmp_path: Path) -> None:
    assert engine.pwrite_during(0, [], [], lambda: 5) == 5
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(OSError) as info:
        engine.pwrite_during(fd, [0], [b"abc"], lambda: None)
    assert info.value.errno == errno.EBADF


@needs_uring
def test_only_the_uring_engine_overlaps_writes() -> None:
    assert UringEngine.overlaps_writes and not ThreadEngine.overlaps_writes


@needs_uring
def test_an_old_extension_writes_without_overlap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = native_io._load_uring()
    assert real is not None

    class OldRing:  # the extension as built before Ring.write_during existed
        def __init__(self, depth: int, chunk_size: int) -> None:
            self._ring = real.Ring(depth, chunk_size)
            self.closed = False

        def write(self, fd: int, offsets: list[int], buffers: list[mmap.mmap]) -> list[int]:
            return self._ring.write(fd, offsets, buffers)

        def close(self) -> None:
            self._ring.close()
            self.closed = True

    monkeypatch.setattr(native_io, "_load_uring", lambda: SimpleNamespace(Ring=OldRing, probe=real.probe))
    eng = UringEngine(DEPTH, CHUNK)
    fd = _open_direct(tmp_path / "old.img", FILE_SIZE)
    plan = [(0, random.Random(9).randbytes(40 * ALIGN))]
    try:
        assert not eng.overlaps_writes
        assert eng.pwrite_during(fd, [0], [_aligned(plan[0][1])], lambda: "after") == "after"
        assert _written(tmp_path / "old.img", plan)
    finally:
        os.close(fd)
        eng.close()
