"""An io_uring call never hangs for good: a stalled device times out, a signal handler's
exception ends a wait, and close() from another thread ends a call (native/uring.c, "Waits are
never endless").

A read from an empty pipe, or a write into a full one, is a request the kernel keeps in flight
until the other end moves: the stand-in for a device that stopped answering.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from memkv.errors import InvalidArgument
from memkv.store import io_engines as native_io
from memkv.store.io_engines import UringEngine, select_engine

URING_OK, URING_WHY = native_io.uring_status()
pytestmark = pytest.mark.skipif(not URING_OK, reason=f"io_uring unavailable: {URING_WHY}")

# Far below the tests' own 300 s limit: a call that ignores the stall or the signal fails here.
LIMIT_S = 20.0
# A wait slice longer than LIMIT_S: a call that ends within LIMIT_S was not ended by a slice.
ONE_LONG_WAIT_S = 60.0


class Interrupted(Exception):
    pass


def ring(**options: float) -> Any:
    from memkv.store import _uring

    return _uring.Ring(4, 64 * 1024, **options)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


@pytest.fixture
def full_pipe(pipe: tuple[int, int]) -> tuple[int, int]:
    """A pipe whose buffer is full: a write into it waits for a reader."""
    read_fd, write_fd = pipe
    os.set_blocking(write_fd, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_fd, bytes(65536))
    os.set_blocking(write_fd, True)
    return read_fd, write_fd


@pytest.fixture
def bounded_waits() -> None:
    with ring() as probe:
        if not probe.bounded_waits:
            pytest.skip("this kernel cannot bound an io_uring wait (IORING_FEAT_EXT_ARG, Linux 5.11+)")


@contextlib.contextmanager
def handling_sigusr1(raises: bool) -> Iterator[list[float]]:
    """SIGUSR1 handled while inside: the handler records when it ran, and raises Interrupted if asked to."""
    ran: list[float] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        ran.append(time.monotonic())
        if raises:
            raise Interrupted("SIGUSR1")

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield ran
    finally:
        signal.signal(signal.SIGUSR1, previous)


@contextlib.contextmanager
def later(delay_s: float, action: Callable[[], object]) -> Iterator[None]:
    timer = threading.Timer(delay_s, action)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()


def signal_main_thread() -> Callable[[], None]:
    main = threading.get_ident()
    return lambda: signal.pthread_kill(main, signal.SIGUSR1)


@pytest.mark.usefixtures("bounded_waits")
def test_a_stalled_read_times_out_and_the_thread_gets_a_new_ring(pipe: tuple[int, int], tmp_path: Path) -> None:
    read_fd, write_fd = pipe
    engine = UringEngine(4, 64 * 1024, stall_timeout_s=1)
    try:
        stalled = bytearray(4096)
        first = engine._ring()
        started = time.monotonic()
        with pytest.raises(TimeoutError) as raised:
            engine.pread_batch(read_fd, [0], [stalled])
        assert raised.value.errno == errno.ETIMEDOUT
        assert "stalled" in str(raised.value)
        assert 1.0 <= time.monotonic() - started < LIMIT_S
        # The ring was abandoned and its request cancelled, so none is stranded (its memory could
        # go back to Python), and bytes that arrive now are not read into the buffer.
        assert first.closed and first.stranded == 0
        os.write(write_fd, b"late" * 1024)
        time.sleep(0.2)
        assert stalled == bytearray(4096)
        # The thread's next call works on a fresh ring.
        fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            assert engine.pwrite_batch(fd, [0], [b"x" * 10_000]) == [10_000]
            back = bytearray(10_000)
            assert engine.pread_batch(fd, [0], [back]) == [10_000] and back == b"x" * 10_000
            assert engine._ring() is not first
        finally:
            os.close(fd)
    finally:
        engine.close()


@pytest.mark.usefixtures("bounded_waits")
def test_a_stalled_write_during_times_out_after_calling_during_once(full_pipe: tuple[int, int]) -> None:
    _, write_fd = full_pipe
    calls: list[int] = []
    stalled = ring(stall_timeout=1.0)
    with pytest.raises(TimeoutError):
        stalled.write_during(write_fd, [0], [b"w" * 4096], lambda: calls.append(1))
    assert calls == [1] and stalled.closed and stalled.stranded == 0


@pytest.mark.usefixtures("bounded_waits")
def test_a_stalled_read_into_a_registered_buffer_times_out(pipe: tuple[int, int]) -> None:
    read_fd, _ = pipe
    fixed = bytearray(4096)
    stalled = ring(stall_timeout=1.0)
    stalled.register_buffers([fixed])
    assert stalled.registered == 1
    with pytest.raises(TimeoutError):
        stalled.read(read_fd, [0], [fixed])
    assert stalled.closed and stalled.stranded == 0 and stalled.registered == 0


@pytest.mark.usefixtures("bounded_waits")
def test_without_a_stall_timeout_a_slow_request_is_waited_for(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    engine = UringEngine(4, 64 * 1024, stall_timeout_s=0)
    try:
        out = bytearray(4096)
        with later(1.5, lambda: os.write(write_fd, b"y" * 4096)):
            assert engine.pread_batch(read_fd, [0], [out]) == [4096] and out == b"y" * 4096
    finally:
        engine.close()


def test_a_signal_interrupting_the_first_wait_ends_the_call(pipe: tuple[int, int]) -> None:
    # One wait longer than the limit: only the signal's interruption of the very wait that also
    # submitted the request can end the call in time.
    read_fd, _ = pipe
    with ring(wait_slice=ONE_LONG_WAIT_S) as waiting, handling_sigusr1(raises=True) as ran, \
            later(0.3, signal_main_thread()):
        started = time.monotonic()
        with pytest.raises(Interrupted):
            waiting.read(read_fd, [0], [bytearray(4096)])
        assert time.monotonic() - started < LIMIT_S
        assert len(ran) == 1 and waiting.closed and waiting.stranded == 0


@pytest.mark.usefixtures("bounded_waits")
def test_a_signal_delivered_to_another_thread_ends_the_wait_at_the_end_of_a_slice(pipe: tuple[int, int]) -> None:
    # The signal does not interrupt the wait; the waiting (main) thread runs the handler when its
    # slice runs out.
    read_fd, _ = pipe
    with ring() as waiting, handling_sigusr1(raises=True) as ran, \
            later(0.3, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)):
        started = time.monotonic()
        with pytest.raises(Interrupted):
            waiting.read(read_fd, [0], [bytearray(4096)])
        assert time.monotonic() - started < LIMIT_S
        assert len(ran) == 1


def test_a_signal_whose_handler_returns_runs_during_the_wait_and_does_not_end_it(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    written: list[float] = []

    def write() -> None:
        written.append(time.monotonic())
        os.write(write_fd, b"z" * 4096)

    out = bytearray(4096)
    with ring(wait_slice=ONE_LONG_WAIT_S) as waiting, handling_sigusr1(raises=False) as ran, \
            later(0.2, signal_main_thread()), later(2.0, write):
        assert waiting.read(read_fd, [0], [out]) == [4096] and out == b"z" * 4096
    assert len(ran) == 1 and len(written) == 1
    assert ran[0] < written[0], "the handler ran only after the call returned, not during its wait"


@pytest.mark.usefixtures("bounded_waits")
def test_close_from_another_thread_ends_a_call_in_progress(pipe: tuple[int, int]) -> None:
    read_fd, _ = pipe
    waiting = ring()
    with later(0.3, waiting.close):
        started = time.monotonic()
        with pytest.raises(OSError) as raised:
            waiting.read(read_fd, [0], [bytearray(4096)])
        assert raised.value.errno == errno.ECANCELED
        assert time.monotonic() - started < LIMIT_S
    assert waiting.closed and waiting.stranded == 0


def test_a_close_waiting_for_another_thread_s_call_can_be_interrupted(tmp_path: Path) -> None:
    busy = ring()
    fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT, 0o600)
    inside, release = threading.Event(), threading.Event()

    def during() -> None:  # holds the ring (its lock) until released
        inside.set()
        release.wait(LIMIT_S)

    writer = threading.Thread(target=busy.write_during, args=(fd, [0], [b"d" * 4096], during))
    writer.start()
    try:
        assert inside.wait(LIMIT_S)
        with handling_sigusr1(raises=True), later(0.3, signal_main_thread()):
            started = time.monotonic()
            with pytest.raises(Interrupted):
                busy.close()
            assert time.monotonic() - started < LIMIT_S
        assert not busy.closed
    finally:
        release.set()
        writer.join()
        os.close(fd)
    busy.close()
    assert busy.closed


def test_a_ring_used_again_from_its_own_call_is_refused_not_deadlocked(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "data", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with ring() as busy:
            with pytest.raises(RuntimeError, match="busy with a call of this thread"):
                busy.write_during(fd, [0], [b"r" * 4096], lambda: busy.read(fd, [0], [bytearray(4096)]))
            assert busy.read(fd, [0], [bytearray(4096)]) == [4096]  # the write went through
    finally:
        os.close(fd)


def test_the_stall_timeout_comes_from_memkv_io_stall_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMKV_IO", "uring")
    monkeypatch.delenv("MEMKV_IO_STALL_S", raising=False)
    with select_engine() as engine:
        assert isinstance(engine, UringEngine)
        assert engine.stall_timeout_s == native_io.DEFAULT_STALL_S
        assert engine.describe()["stall_timeout_s"] == (native_io.DEFAULT_STALL_S if engine.bounded_waits else None)
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
