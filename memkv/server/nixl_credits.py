"""Standing staging credits of the client-driven NIXL put (spec/wire.md section 8.1, MKV-WIRE-036..039).

A credit is a staging region lent to one connection until it closes, a NIXL_COMMIT names the
credit, or the credit stays unused for its idle time. The client WRITEs a payload into it, piece
by piece, each WRITE carrying `memkv-credit:<id>:<use>:<piece>`, and names it in NIXL_STORE with
the key, checksum and metadata; no allocation round trip precedes a put. The thread that stores
a credit progresses the NIXL agent itself while it waits for a piece (Pump.drive), then copies the
piece out of the credit into memory that is not NIXL-registered (the store's mapping, or buffers of
this process on a device without one), and the engine hashes and writes that copy: the bytes
verified are the bytes stored, whatever the client writes into its credit meanwhile
(MKV-WIRE-039). An ended credit's staging is held back one lease time before it is lent again
(the lease table's cooling).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import threading
import time
from collections.abc import Callable

from ..buffers import address_of, aligned_buffer
from ..errors import InvalidArgument, LimitExceeded, MemkvError, Timeout, Unavailable, UnknownLease
from ..nixl.support import ChunkPool, Pump
from ..transport import ItemResult
from ..wire import nixl_leases as lease_msg
from .nixl_leases import ALIGN, LeaseTable, MiB

NOTIF_PREFIX = b"memkv-credit:"
MIN_PIECE, MAX_PIECE, PIECES = 4 * MiB, 8 * MiB, 4
STORE_PIECE = 1 * MiB  # the engine's piece: a copy, hash and device write each, two in flight


def credit_piece(size: int) -> int:
    """Bytes per WRITE (and notification): a quarter of the credit, 4 to 8 MiB, in 64 KiB units.
    Each piece costs the client a completion round trip before the next is posted; fewer, larger
    pieces leave more of the store to do after the last one lands. A block of up to 4 MiB is one
    WRITE (it measured faster at 2 MiB than two pieces: 3.3-3.6 against 4.3 ms per put)."""
    return max(MIN_PIECE, min(MAX_PIECE, size // PIECES // ALIGN * ALIGN))


@dataclasses.dataclass(slots=True, eq=False)
class Credit:
    id: int
    conn: int
    peer: str
    size: int
    piece: int
    offset: int
    region: memoryview
    buffers: list[memoryview]  # this process's own memory, never registered with NIXL (no store mapping)
    idle_s: float
    expires: float
    use: int = 0
    busy: bool = False
    ended: bool = False
    arrived: set[tuple[int, int]] = dataclasses.field(default_factory=set)  # (use, piece)

    @property
    def pieces(self) -> int:
        return max(1, -(-self.size // self.piece))


Store = Callable[[Credit, int, Callable[[memoryview], None]], ItemResult]
"""store(credit, length, fill) puts the block; fill(view) waits for the bytes of `view` and copies them there."""


class CreditTable:
    def __init__(self, pool: ChunkPool, pump: Pump, leases: LeaseTable, per_connection: int, total: int) -> None:
        self.pool, self.pump, self.leases = pool, pump, leases
        self.per_connection = per_connection  # staging bytes one connection may hold in credits
        self.total = total  # and all connections together (the rest is for gets and leases)
        self._credits: dict[int, Credit] = {}
        self._cond = threading.Condition()  # the reaper waits on it (stores wait by driving the pump)
        self._closed = False
        self._stores = concurrent.futures.ThreadPoolExecutor(max(1, pool.count), "memkv-nixl-credit")
        self._reaper = threading.Thread(target=self._reap_loop, name="memkv-nixl-credits", daemon=True)
        self._reaper.start()

    # ---- granting ---------------------------------------------------------------------------------
    def grant(self, conn: int, peer: str, size: int) -> Credit:
        """A credit of `size` bytes for this connection; LimitExceeded past the per-connection or the
        total bound, Unavailable at once when no staging is free (the client then leases instead)."""
        chunks = self._chunks
        with self._cond:
            held = sum(chunks(c.size) for c in self._credits.values() if c.conn == conn)
            everyone = sum(chunks(c.size) for c in self._credits.values())
        if held + chunks(size) > self.per_connection:
            raise LimitExceeded(f"a connection holds at most {self.per_connection} bytes of NIXL credits "
                                f"({held} held); end some with NIXL_COMMIT")
        if everyone + chunks(size) > self.total:
            raise LimitExceeded(f"NIXL credits hold {everyone} of at most {self.total} staging bytes")
        offset, region = self.pool.acquire(size, 0.0)
        idle_s = self.leases.lease_time(size)
        store_piece = min(STORE_PIECE, -(-size // ALIGN) * ALIGN)
        credit = Credit(next(self.leases.ids), conn, peer, size, credit_piece(size), offset, region,
                        [aligned_buffer(store_piece), aligned_buffer(store_piece)], idle_s,
                        time.monotonic() + idle_s)
        with self._cond:
            self._credits[credit.id] = credit
            self._cond.notify_all()
        return credit

    def _chunks(self, size: int) -> int:
        """Staging bytes a credit of `size` bytes takes (whole chunks)."""
        return -(-size // self.pool.chunk) * self.pool.chunk

    # ---- storing ----------------------------------------------------------------------------------
    def begin(self, conn: int, credit_id: int, use: int, length: int) -> Credit:
        """Mark a credit busy for the store of use `use`: UnknownLease for a credit this connection
        does not hold, InvalidArgument for a busy credit, a wrong use or a length above its size."""
        with self._cond:
            self._reap(time.monotonic())
            credit = self._credits.get(credit_id)
            if credit is None or credit.conn != conn:
                raise UnknownLease(f"no NIXL credit {credit_id} on this connection (never granted, ended or idle "
                                   "too long); ask for a new one")
            if credit.busy:
                raise InvalidArgument(f"NIXL credit {credit_id} is in an unanswered NIXL_STORE")
            if use != credit.use + 1:
                raise InvalidArgument(f"NIXL credit {credit_id} expects use {credit.use + 1}, not {use}")
            if length > credit.size:
                raise InvalidArgument(f"{length} bytes do not fit NIXL credit {credit_id} of {credit.size} bytes")
            credit.use, credit.busy = use, True
            credit.arrived = {(u, k) for u, k in credit.arrived if u == use}
        return credit

    def submit(self, job: Callable[[], ItemResult]) -> concurrent.futures.Future[ItemResult]:
        """A run() in a thread of its own: the items of one NIXL_STORE are stored side by side."""
        return self._stores.submit(job)

    def run(self, credit: Credit, length: int, store: Store) -> ItemResult:
        """Store use `credit.use` of a begun credit; the credit is free again afterwards."""
        deadline = time.monotonic() + self.leases.lease_time(length)
        position = 0

        def fill(view: memoryview) -> None:
            nonlocal position
            end = position + len(view)
            self._wait_for(credit, (end - 1) // credit.piece, deadline)
            ctypes.memmove(address_of(view), address_of(credit.region) + position, len(view))  # without the GIL
            position = end

        try:
            return store(credit, length, fill)
        except MemkvError as exc:
            return ItemResult(exc.code, exc.message)
        finally:
            with self._cond:
                credit.busy = False
                credit.expires = time.monotonic() + credit.idle_s
                if credit.ended:
                    self.leases.hold_back(credit.offset, credit.size, credit.idle_s)

    def _wait_for(self, credit: Credit, piece: int, deadline: float) -> None:
        """Until pieces 0..piece of the credit's current use have arrived. This thread progresses the
        agent meanwhile (the WRITEs into the credit complete only while the server progresses):
        the notification it waits for is taken in here, with no hand-off from another thread."""
        def ready() -> bool:
            with self._cond:
                if credit.ended:
                    raise Unavailable("the NIXL credit ended before its store finished")
                return all((credit.use, k) in credit.arrived for k in range(piece + 1))

        if not self.pump.drive(ready, deadline):
            raise Timeout(f"the WRITEs of NIXL credit {credit.id} use {credit.use} did not all arrive in time")

    def arrived(self, notifs: dict[str, list[bytes]]) -> None:
        """Record `memkv-credit:<id>:<use>:<piece>` notifications (from the pump); others are ignored.
        A credit keeps those of its current use and the next one (a client may WRITE before its
        NIXL_STORE is read), so what it keeps is bounded."""
        with self._cond:
            for peer, (credit_id, use, piece) in lease_msg.read_notifications(notifs, NOTIF_PREFIX, 3):
                credit = self._credits.get(credit_id)
                if (credit is not None and credit.peer == peer and 0 <= piece < credit.pieces
                        and credit.use <= use <= credit.use + 1):
                    credit.arrived.add((use, piece))

    # ---- ending -----------------------------------------------------------------------------------
    def end(self, conn: int, credit_id: int) -> bool:
        """End a credit of this connection (NIXL_COMMIT naming it); False when it holds none such."""
        with self._cond:
            credit = self._credits.get(credit_id)
            if credit is None or credit.conn != conn:
                return False
            self._end(credit)
            return True

    def drop_connection(self, conn: int) -> None:
        with self._cond:
            for credit in [c for c in self._credits.values() if c.conn == conn]:
                self._end(credit)

    def held(self, conn: int) -> int:
        with self._cond:
            return sum(1 for c in self._credits.values() if c.conn == conn)

    def _end(self, credit: Credit) -> None:
        """Under the lock: the credit is gone; its staging cools once no store reads it."""
        del self._credits[credit.id]
        credit.ended = True
        if not credit.busy:
            self.leases.hold_back(credit.offset, credit.size, credit.idle_s)
        self._cond.notify_all()

    def _reap(self, now: float) -> None:
        for credit in [c for c in self._credits.values() if not c.busy and c.expires <= now]:
            self._end(credit)

    def _reap_loop(self) -> None:
        with self._cond:
            while not self._closed:
                # a busy credit expires no sooner than one idle time after its store ends, so the
                # reaper need not be woken when a store ends (it would be, put after put)
                now = time.monotonic()
                due = [c.expires if not c.busy else now + c.idle_s for c in self._credits.values()]
                self._cond.wait(None if not due else max(0.0, min(due) - now) + 0.001)
                self._reap(time.monotonic())

    def close(self) -> None:
        with self._cond:
            self._closed = True
            while self._credits:
                self._end(next(iter(self._credits.values())))  # wakes any store waiting for pieces
            self._cond.notify_all()  # and the reaper
        self._stores.shutdown(wait=True)
        self._reaper.join(timeout=5)


__all__ = ["NOTIF_PREFIX", "Credit", "CreditTable", "credit_piece"]
