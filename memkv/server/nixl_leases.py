"""Staging lent to clients for the client-driven NIXL put (spec/wire.md section 8.1).

A lease is a staging run bound to one connection, granted by NIXL_ALLOC and ended by
NIXL_COMMIT, by its connection closing or by its lease time passing (MKV-WIRE-034). The client
WRITEs the payload piece by piece, each WRITE carrying the notification
`memkv-lease:<lease id>:<piece>`; the lease's stream stores each piece as soon as it has
arrived (the device write overlaps the network), and the last piece waits for NIXL_COMMIT, so
nothing is visible before the client commits. A lease that ends without a commit cools for one
more lease time before its staging is lent again, so a late WRITE of a dead or stalled client
cannot land in another client's block. While any lease is open the agent's UCX worker is
progressed (a target must progress for WRITEs over UCX/TCP).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import heapq
import itertools
import threading
import time
from collections.abc import Callable

from ..blocks import BlockMeta
from ..buffers import address_of
from ..errors import ErrorCode, MemkvError, Unavailable
from ..nixl.support import ChunkPool, Pump
from ..transport import ItemResult
from ..wire import nixl_leases as lease_msg

MiB = 1024 * 1024
KiB = 1024
MIN_PIECE, MAX_PIECE, PIECES = 512 * KiB, 4 * MiB, 8
ALIGN = 64 * KiB
NOTIF_PREFIX = b"memkv-lease:"
_SLICE_S = 0.05  # how long one staging attempt waits before expired leases are reaped again
STORE, DISCARD = 1, 0


def piece_size(length: int) -> int:
    """Bytes per WRITE (and per notification): about 1/8 of the block, 512 KiB to 4 MiB, 64 KiB units."""
    return max(MIN_PIECE, min(MAX_PIECE, length // PIECES // ALIGN * ALIGN))


class _Ended(Unavailable):
    """The lease ended (discarded, expired, connection closed) before its stream finished."""


@dataclasses.dataclass(slots=True, eq=False)
class Lease:
    id: int
    conn: int
    peer: str
    key: bytes
    length: int
    checksum: int
    meta: BlockMeta
    offset: int
    size: int
    landing: memoryview
    buffers: list[memoryview]
    piece: int
    lease_s: float
    expires: float
    arrived: set[int] = dataclasses.field(default_factory=set)
    decision: int | None = None
    ended: bool = False
    stream: concurrent.futures.Future[ItemResult] | None = None

    @property
    def pieces(self) -> int:
        return max(1, -(-self.length // self.piece))


Storer = Callable[[Lease, Callable[[memoryview], None]], ItemResult]


class LeaseTable:
    def __init__(self, pool: ChunkPool, pump: Pump, frame_timeout_s: float) -> None:
        self.pool, self.pump, self.frame_timeout_s = pool, pump, frame_timeout_s
        self._open: dict[int, Lease] = {}
        self._receiving: dict[int, Lease] = {}  # leases whose pieces may still arrive (open or being finished)
        self._cooling: list[tuple[float, int, int]] = []  # (lend again at, offset, size)
        self.ids = itertools.count(1)  # lease and credit ids (MKV-WIRE-036: unique among both)
        self._cond = threading.Condition()
        self._closed = False
        self._reaper: threading.Thread | None = None
        self._streams = concurrent.futures.ThreadPoolExecutor(max(1, pool.count), "memkv-nixl-lease")

    def lease_time(self, length: int) -> float:
        """Frame timeout plus 1 s per MiB (MKV-WIRE-034, the allowance of MKV-WIRE-025)."""
        return self.frame_timeout_s + length / MiB

    # ---- granting and storing -------------------------------------------------------------------
    def grant(self, conn: int, peer: str, key: bytes, length: int, checksum: int, meta: BlockMeta,
              store: Storer | None = None, deadline: float | None = None) -> Lease:
        # store(lease, fill) puts the block; fill(view) waits for the bytes of `view` (the last ones
        # also for the commit) and copies them there from the landing region
        """Staging for one block, its stream started when `store` is given; Unavailable when no
        staging frees up by `deadline` (default: within the frame timeout)."""
        piece = piece_size(length)
        landing = -(-length // ALIGN) * ALIGN
        size = landing + 2 * piece  # the landing region, then two aligned pieces the stream stores from
        deadline = deadline if deadline is not None else time.monotonic() + self.frame_timeout_s
        while True:
            self.reap()
            try:
                offset, run = self.pool.acquire(size, min(_SLICE_S, max(0.0, deadline - time.monotonic())))
                break
            except Unavailable:
                if time.monotonic() >= deadline:
                    raise
        lease_s = self.lease_time(length)
        lease = Lease(next(self.ids), conn, peer, key, length, checksum, meta, offset, size, run[:length],
                      [run[landing : landing + piece], run[landing + piece : size]], piece, lease_s,
                      time.monotonic() + lease_s)
        with self._cond:
            self._open[lease.id] = lease
            self._receiving[lease.id] = lease
            self._start_reaper()
            self._cond.notify_all()
        self.pump.enter()
        if store is not None:
            lease.stream = self._streams.submit(self._run_stream, lease, store)
        return lease

    def _run_stream(self, lease: Lease, store: Storer) -> ItemResult:
        position = 0

        def fill(view: memoryview) -> None:
            nonlocal position
            end = position + len(view)
            self._wait_for(lease, (end - 1) // lease.piece, end == lease.length)
            source = lease.landing[position:end]
            if address_of(view) != address_of(source):
                ctypes.memmove(address_of(view), address_of(source), len(view))  # without the GIL
            position = end

        try:
            return store(lease, fill)
        except MemkvError as exc:
            return ItemResult(exc.code, exc.message)

    def _wait_for(self, lease: Lease, piece: int, last: bool) -> None:
        """Until pieces 0..piece have arrived (and, for the last bytes, the client committed)."""
        with self._cond:
            while True:
                if lease.ended or lease.decision == DISCARD:
                    raise _Ended("the NIXL lease ended before its commit")
                if all(k in lease.arrived for k in range(piece + 1)) and (not last or lease.decision == STORE):
                    return
                self._cond.wait()

    def arrived(self, notifs: dict[str, list[bytes]]) -> None:
        """Record `memkv-lease:<id>:<piece>` notifications (from the pump); others are ignored."""
        with self._cond:
            for peer, (lease_id, piece) in lease_msg.read_notifications(notifs, NOTIF_PREFIX, 2):
                lease = self._receiving.get(lease_id)
                if lease is not None and lease.peer == peer and 0 <= piece < lease.pieces:
                    lease.arrived.add(piece)
            self._cond.notify_all()

    # ---- ending leases ------------------------------------------------------------------------------
    def take(self, conn: int, lease_id: int) -> Lease | None:
        """The open lease `lease_id` of this connection, taken for finish() (None: unknown, foreign or
        expired)."""
        self.reap()
        with self._cond:
            lease = self._open.get(lease_id)
            if lease is None or lease.conn != conn:
                return None
            del self._open[lease_id]
        return lease  # the pump runs on until finish(): notifications of its last pieces may still be due

    def finish(self, lease: Lease, action: int) -> ItemResult:
        """Store (action STORE) or discard a taken lease; its staging is lent again afterwards."""
        try:
            if lease.stream is None:
                return ItemResult(ErrorCode.OK)
            with self._cond:
                lease.decision = action
                self._cond.notify_all()
            result = lease.stream.result()
            return result if action == STORE else ItemResult(ErrorCode.OK)
        finally:
            with self._cond:
                self._receiving.pop(lease.id, None)
            self.pump.leave()
            self.pool.release(lease.offset, lease.size)

    def drop_connection(self, conn: int) -> None:
        with self._cond:
            for lease in [lease for lease in self._open.values() if lease.conn == conn]:
                self._cool(lease)

    def open_count(self) -> int:
        with self._cond:
            return len(self._open)

    def reap(self) -> None:
        """End expired leases (they cool) and lend cooled staging again once its time has come."""
        now = time.monotonic()
        with self._cond:
            for lease in [lease for lease in self._open.values() if lease.expires <= now]:
                self._cool(lease)
            while self._cooling and self._cooling[0][0] <= now:
                _, offset, size = heapq.heappop(self._cooling)
                self.pool.release(offset, size)

    def hold_back(self, offset: int, size: int, delay: float) -> None:
        """Lend this staging run again only after `delay` seconds (an ended lease or credit)."""
        with self._cond:
            heapq.heappush(self._cooling, (time.monotonic() + delay, offset, size))
            self._start_reaper()
            self._cond.notify_all()

    def _cool(self, lease: Lease) -> None:
        """Under the lock: end a lease without commit; its staging waits one more lease time (and
        for its stream to stop reading it)."""
        del self._open[lease.id]
        self._receiving.pop(lease.id, None)
        lease.ended = True
        self.pump.leave()
        self._cond.notify_all()

        def cool(_: object = None) -> None:
            with self._cond:
                heapq.heappush(self._cooling, (time.monotonic() + lease.lease_s, lease.offset, lease.size))
                self._cond.notify_all()

        if lease.stream is None:
            heapq.heappush(self._cooling, (time.monotonic() + lease.lease_s, lease.offset, lease.size))
        else:
            lease.stream.add_done_callback(cool)

    # ---- the reaper ---------------------------------------------------------------------------------
    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap_loop, name="memkv-nixl-leases", daemon=True)
            self._reaper.start()

    def _next_event(self) -> float | None:
        times = [lease.expires for lease in self._open.values()] + [t for t, _, _ in self._cooling[:1]]
        return min(times) if times else None

    def _reap_loop(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                due = self._next_event()
                self._cond.wait(None if due is None else max(0.0, due - time.monotonic()) + 0.001)
                if self._closed:
                    return
            self.reap()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for lease in list(self._open.values()):
                self._cool(lease)
            self._cond.notify_all()
        self._streams.shutdown(wait=True)
        if self._reaper is not None:
            self._reaper.join(timeout=5)


__all__ = ["DISCARD", "NOTIF_PREFIX", "STORE", "Lease", "LeaseTable", "piece_size"]
