"""Staging lent to clients for the client-driven NIXL put (spec/wire.md section 8.1).

A lease is a staging run bound to one connection, granted by NIXL_ALLOC and ended by
NIXL_COMMIT, by its connection closing or by its lease time passing (MKV-WIRE-034). A lease
that ends without a commit cools for one more lease time before its staging is lent again, so a
late WRITE of a dead or stalled client cannot land in another client's block. While any lease is
open the agent's UCX worker is progressed (a target must progress for WRITEs over UCX/TCP).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import threading
import time

from ..blocks import BlockMeta
from ..errors import Unavailable
from ..nixl_support import ChunkPool, Pump

MiB = 1024 * 1024
_SLICE_S = 0.05  # how long one staging attempt waits before expired leases are reaped again


@dataclasses.dataclass(slots=True)
class Lease:
    id: int
    conn: int
    key: bytes
    length: int
    checksum: int
    meta: BlockMeta
    offset: int
    view: memoryview
    lease_s: float
    expires: float


class LeaseTable:
    def __init__(self, pool: ChunkPool, pump: Pump, frame_timeout_s: float) -> None:
        self.pool, self.pump, self.frame_timeout_s = pool, pump, frame_timeout_s
        self._open: dict[int, Lease] = {}
        self._cooling: list[tuple[float, int, int]] = []  # (lend again at, offset, length)
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._closed = False
        self._reaper: threading.Thread | None = None

    def lease_time(self, length: int) -> float:
        """Frame timeout plus 1 s per MiB (MKV-WIRE-034, the allowance of MKV-WIRE-025)."""
        return self.frame_timeout_s + length / MiB

    def grant(self, conn: int, key: bytes, length: int, checksum: int, meta: BlockMeta) -> Lease:
        """Staging for one block, or Unavailable when none frees up within the frame timeout."""
        deadline = time.monotonic() + self.frame_timeout_s
        while True:
            self.reap()
            try:
                offset, view = self.pool.acquire(length, min(_SLICE_S, max(0.0, deadline - time.monotonic())))
                break
            except Unavailable:
                if time.monotonic() >= deadline:
                    raise
        lease_s = self.lease_time(length)
        lease = Lease(next(self._ids), conn, key, length, checksum, meta, offset, view, lease_s,
                      time.monotonic() + lease_s)
        with self._cond:
            self._open[lease.id] = lease
            self._start_reaper()
            self._cond.notify_all()
        self.pump.enter()
        return lease

    def take(self, conn: int, lease_id: int) -> Lease | None:
        """The open lease `lease_id` of this connection, now ended (None: unknown, foreign or expired)."""
        self.reap()
        with self._cond:
            lease = self._open.get(lease_id)
            if lease is None or lease.conn != conn:
                return None
            del self._open[lease_id]
        self.pump.leave()
        return lease

    def release(self, lease: Lease) -> None:
        """Give a taken lease's staging back at once (it was committed or discarded)."""
        self.pool.release(lease.offset, lease.length)

    def drop_connection(self, conn: int) -> None:
        with self._cond:
            dropped = [lease for lease in self._open.values() if lease.conn == conn]
            for lease in dropped:
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
                _, offset, length = heapq.heappop(self._cooling)
                self.pool.release(offset, length)

    def _cool(self, lease: Lease) -> None:
        """Under the lock: end a lease without commit; its staging waits one more lease time."""
        del self._open[lease.id]
        heapq.heappush(self._cooling, (time.monotonic() + lease.lease_s, lease.offset, lease.length))
        self.pump.leave()
        self._cond.notify_all()

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
        if self._reaper is not None:
            self._reaper.join(timeout=5)


__all__ = ["Lease", "LeaseTable"]
