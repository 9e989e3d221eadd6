"""An io_uring call never hangs for good: a stalled device times out, and a signal handler's
exception ends a wait (native/uring.c, "Waits are never endless").

A read from an empty pipe is a request the kernel keeps in flight until someone writes: the
stand-in for a device that stopped answering.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from memkv.errors import InvalidArgument
from memkv.store import io_engines as native_io
from memkv.store.io_engines import UringEngine, select_engine

URING_OK, URING_WHY = native_io.uring_status()
pytestmark = pytest.mark.skipif(not URING_OK, reason=f"io_uring unavailable: {URING_WHY}")

# Far below the tests' own 300 s limit: a call that ignores the stall or the signal fails here.
LIMIT_S = 20.0


class Interrupted(Exception):
    pass


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


@pytest.fixture
def ring_waits_are_bounded() -> None:
    from memkv.store import _uring

    with _uring.Ring(1, 4096) as ring:
        if not ring.bounded_waits:
            pytest.skip("this kernel cannot bound an io_uring wait (IORING_FEAT_EXT_ARG, Linux 5.11+)")


@contextlib.contextmanager
def handling_sigusr1(raises: bool) -> Iterator[list[int]]:
    """SIGUSR1 handled while inside: the handler records it, and raises Interrupted if asked to."""
    seen: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        if raises:
            raise Interrupted("SIGUSR1")

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _later(delay_s: float, action: object) -> threading.Timer:
    timer = threading.Timer(delay_s, action)  # type: ignore[arg-type]
    timer.start()
    return timer


@pytest.mark.usefixtures("ring_waits_are_bounded")
def test_a_stalled_request_times_out_and_the_thread_gets_a_new_ring(pipe: tuple[int, int], tmp_path: Path) -> None:
    read_fd, write_fd = pipe
    engine = UringEngine(4, 64 * 1024, stall_timeout_s=1)
    try:
        stalled = bytearray(4096)
        ring = engine._ring()
        started = time.monotonic()
        with pytest.raises(TimeoutError) as raised:
            engine.pread_batch(read_fd, [0], [stalled])
        assert raised.value.errno == errno.ETIMEDOUT
        assert "stalled" in str(raised.value)
        assert 1.0 <= time.monotonic() - started < LIMIT_S
        # The ring was abandoned and its request cancelled, so none is stranded (its memory could
        # go back to Python), and bytes that arrive now are not read into the buffer.
        assert ring.closed and ring.stranded == 0
        os.write(write_fd, b"late" * 1024)
        time.sleep(0.2)
        assert stalled == bytearray(4096)
        # The thread's next call works on a fresh ring.
        fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            assert engine.pwrite_batch(fd, [0], [b"x" * 10_000]) == [10_000]
            back = bytearray(10_000)
            assert engine.pread_batch(fd, [0], [back]) == [10_000] and back == b"x" * 10_000
        finally:
            os.close(fd)
    finally:
        engine.close()


@pytest.mark.usefixtures("ring_waits_are_bounded")
def test_without_a_stall_timeout_a_slow_request_is_waited_for(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    engine = UringEngine(4, 64 * 1024, stall_timeout_s=0)
    try:
        timer = _later(1.5, lambda: os.write(write_fd, b"y" * 4096))
        out = bytearray(4096)
        assert engine.pread_batch(read_fd, [0], [out]) == [4096] and out == b"y" * 4096
        timer.join()
    finally:
        engine.close()


@pytest.mark.parametrize("delivered_to", ["the waiting thread", "another thread"])
def test_a_signal_handler_s_exception_ends_the_wait(pipe: tuple[int, int], delivered_to: str,
                                                    request: pytest.FixtureRequest) -> None:
    # Delivered to another thread, the signal does not interrupt the wait itself: the waiting
    # thread only sees it at the end of a wait slice, which needs bounded waits.
    if delivered_to == "another thread":
        request.getfixturevalue("ring_waits_are_bounded")
    read_fd, _ = pipe
    main = threading.get_ident()
    engine = UringEngine(4, 64 * 1024, stall_timeout_s=0)
    try:
        def send() -> None:
            signal.pthread_kill(main if delivered_to == "the waiting thread" else threading.get_ident(), signal.SIGUSR1)

        with handling_sigusr1(raises=True) as seen:
            timer = _later(0.3, send)
            started = time.monotonic()
            with pytest.raises(Interrupted):
                engine.pread_batch(read_fd, [0], [bytearray(4096)])
            assert time.monotonic() - started < LIMIT_S
            assert seen == [signal.SIGUSR1]
            timer.join()
    finally:
        engine.close()


def test_a_signal_whose_handler_returns_does_not_end_the_wait(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    main = threading.get_ident()
    engine = UringEngine(4, 64 * 1024, stall_timeout_s=0)
    try:
        with handling_sigusr1(raises=False) as seen:
            timers = [_later(0.2, lambda: signal.pthread_kill(main, signal.SIGUSR1)),
                      _later(0.8, lambda: os.write(write_fd, b"z" * 4096))]
            out = bytearray(4096)
            assert engine.pread_batch(read_fd, [0], [out]) == [4096] and out == b"z" * 4096
            assert seen == [signal.SIGUSR1]
            for timer in timers:
                timer.join()
    finally:
        engine.close()


def test_the_stall_timeout_comes_from_memkv_io_stall_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMKV_IO", "uring")
    with select_engine() as engine:
        assert isinstance(engine, UringEngine)
        assert engine.stall_timeout_s == native_io.DEFAULT_STALL_S == engine.describe()["stall_timeout_s"]
    monkeypatch.setenv("MEMKV_IO_STALL_S", "7")
    with select_engine() as engine:
        assert isinstance(engine, UringEngine) and engine.stall_timeout_s == 7
        assert engine._ring().stall_timeout == 7.0
    for bad in ("-1", str(native_io.MAX_STALL_S + 1)):
        monkeypatch.setenv("MEMKV_IO_STALL_S", bad)
        with pytest.raises(InvalidArgument, match="stall timeout"):
            select_engine()
    monkeypatch.setenv("MEMKV_IO_STALL_S", "soon")
    with pytest.raises(InvalidArgument, match="MEMKV_IO_STALL_S"):
        select_engine()
