"""Helpers of the NIXL data path around the agent (memkv.nixl.agent): the progress pump, agent
metadata names, and the registered staging pool the server lends.

Nothing here imports NIXL itself.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from collections.abc import Callable

from ..errors import InvalidArgument, LimitExceeded, MemkvError, Unavailable
from .agent import NixlAgent

MiB = 1024 * 1024
DEFAULT_CHUNK = 2 * MiB
HUGEPAGE = 2 * MiB
_MAP_HUGETLB = getattr(mmap, "MAP_HUGETLB", 0x40000)


class Pump:
    """Progresses an agent's UCX worker: from a thread of its own while someone has work in flight
    (enter/leave), or in the calling thread while it waits for notifications (drive).

    One thread polls the agent at a time. A thread that drives polls it itself, so the bytes and
    notifications it waits for are taken in without a hand-off between threads, and the pump's own
    thread stands by instead of spinning beside it (on a host with few cores a second spinning
    thread takes the CPU that the copies need).
    """

    HAND_OVER_S = 0.001  # a waiting thread looks again at least this often
    # A driving thread yields the GIL this often. Not after every poll: a 2 MiB put took 10-20%
    # longer so (three alternating pairs); never would hold the process's other threads off for
    # Python's switch interval (5 ms) at a time.
    YIELD_S = 0.001

    def __init__(self, agent: NixlAgent, on_notifs: Callable[[dict[str, list[bytes]]], None] | None = None) -> None:
        self.agent = agent
        self.on_notifs = on_notifs  # gets the notifications each poll drains (else they are dropped)
        self._busy = 0
        self._closed = False
        self._cond = threading.Condition()
        self._polling = threading.Lock()  # held by the one thread that polls the agent
        self._thread: threading.Thread | None = None

    def enter(self) -> None:
        with self._cond:
            self._busy += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="memkv-nixl-pump", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def leave(self) -> None:
        with self._cond:
            self._busy -= 1

    def _poll(self) -> None:
        """One progress of the worker; hands what arrived to on_notifs and wakes the waiting threads."""
        try:
            notifs = self.agent.notifications()  # progresses the worker (no progress thread)
        except MemkvError:
            time.sleep(0.001)
            return
        if notifs:
            if self.on_notifs is not None:
                self.on_notifs(notifs)
            with self._cond:
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._busy > 0 or self._closed)
                if self._closed:
                    return
            while self._busy > 0 and not self._closed:
                if self._polling.acquire(timeout=self.HAND_OVER_S):  # else a driving thread polls
                    try:
                        self._poll()
                    finally:
                        self._polling.release()
                time.sleep(0)

    def drive(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Progress the agent in this thread until ready() (True) or the monotonic deadline passes
        (False). While another thread polls, wait for what it drains (ready() may become true by
        its notifications) and take over when it stops. Unavailable once the pump is closed (the
        agent is being torn down)."""
        while not ready():
            if self._closed:
                raise Unavailable("the NIXL agent is shutting down")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._polling.acquire(blocking=False):
                try:
                    yielded = time.monotonic()
                    while not ready():
                        now = time.monotonic()
                        if now > deadline:
                            return False
                        if self._closed:
                            raise Unavailable("the NIXL agent is shutting down")
                        self._poll()
                        if now - yielded > self.YIELD_S:
                            time.sleep(0)  # the process's other threads (connections) get the GIL
                            yielded = now
                    return True
                finally:
                    self._polling.release()
                    with self._cond:
                        self._cond.notify_all()  # a thread waiting below may poll next
            with self._cond:
                self._cond.wait(min(remaining, self.HAND_OVER_S))
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)


_MD_PREFIX = b"nixlSerDes|Agent"
_U64 = struct.Struct("<Q")


def metadata_agent_name(blob: bytes) -> str:
    """The agent name a NIXL metadata blob carries (it must match the declared name)."""
    start = len(_MD_PREFIX)
    if not blob.startswith(_MD_PREFIX) or len(blob) < start + _U64.size:
        raise InvalidArgument("NIXL metadata is not in the expected serialized form")
    (size,) = _U64.unpack_from(blob, start)
    begin = start + _U64.size
    if size > 128 or begin + size > len(blob):
        raise InvalidArgument("NIXL metadata names an agent of impossible length")
    try:
        return blob[begin : begin + size].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidArgument("NIXL metadata names a non-ASCII agent") from None


def allocate_pinned(size: int, hugepages: bool = True) -> tuple[mmap.mmap, bool]:
    """Anonymous page-aligned memory for staging; 2 MiB hugepages when the host has them free."""
    if size <= 0:
        raise InvalidArgument("staging size must be positive")
    if hugepages and size % HUGEPAGE == 0 and os.name == "posix":
        try:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_HUGETLB
            return mmap.mmap(-1, size, flags=flags), True
        except OSError:
            pass
    return mmap.mmap(-1, size), False


class ChunkPool:
    """A fixed region cut into chunks; contiguous runs of chunks are lent out, first fit.

    Bounded: a request larger than the region is LIMIT_EXCEEDED; one that cannot be served
    within `timeout` is UNAVAILABLE. Nothing is allocated per request.
    """

    def __init__(self, size: int, chunk: int = DEFAULT_CHUNK, hugepages: bool = True) -> None:
        if chunk <= 0 or size < chunk:
            raise InvalidArgument(f"pool of {size} bytes cannot hold a {chunk}-byte chunk")
        self.chunk = chunk
        self.count = size // chunk
        self.size = self.count * chunk
        self.memory, self.hugepages = allocate_pinned(self.size, hugepages)
        self.view = memoryview(self.memory)
        from ..buffers import address_of

        self.address = address_of(self.view)
        self._free = bytearray(b"\x01" * self.count)
        self._cond = threading.Condition()
        self.quarantined = 0

    def _find(self, need: int) -> int:
        run = 0
        for i in range(self.count):
            run = run + 1 if self._free[i] else 0
            if run == need:
                return i - need + 1
        return -1

    def acquire(self, nbytes: int, timeout: float) -> tuple[int, memoryview]:
        """(offset, view of nbytes) of a contiguous run of chunks."""
        need = max(1, -(-nbytes // self.chunk))
        if need > self.count:
            raise LimitExceeded(f"{nbytes} bytes exceed the NIXL staging pool of {self.size} bytes")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                start = self._find(need)
                if start >= 0:
                    self._free[start : start + need] = bytes(need)
                    offset = start * self.chunk
                    return offset, self.view[offset : offset + nbytes]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unavailable("NIXL staging memory is busy; retry later")
                self._cond.wait(remaining)

    def release(self, offset: int, nbytes: int) -> None:
        need = max(1, -(-nbytes // self.chunk))
        start = offset // self.chunk
        with self._cond:
            self._free[start : start + need] = b"\x01" * need
            self._cond.notify_all()

    def quarantine(self, offset: int, nbytes: int) -> None:
        """Never lend these chunks again (a transfer into them could not be cancelled)."""
        self.quarantined += max(1, -(-nbytes // self.chunk))

    def in_use(self) -> int:
        with self._cond:
            return (self.count - sum(self._free)) * self.chunk


__all__ = ["DEFAULT_CHUNK", "ChunkPool", "Pump", "allocate_pinned", "metadata_agent_name"]
