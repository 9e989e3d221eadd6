"""The client side of the standing NIXL credits (spec/wire.md section 8.1, MKV-WIRE-036..039).

Each control connection keeps the staging credits the server granted it and reuses them put
after put: a put batch posts its NIXL WRITEs into free credits and sends one NIXL_STORE right
behind them, so no allocation round trip precedes it. Credits are asked for (NIXL_CREDIT) only
when no free one is large enough, within a budget of a quarter of the server's staging per
connection; a batch that needs more goes in rounds, and free credits too small for what is
asked are ended (NIXL_COMMIT) to make room. An item refused a credit because the connection's
credits are all busy (concurrent puts on one connection), that is larger than a connection may
hold, or that finds no free staging is put by NIXL_ALLOC and NIXL_COMMIT (which waits for staging).
A credit the server ended (idle time, MKV-WIRE-038) is answered UNKNOWN_LEASE; its item is
retried once with a new credit.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ..errors import ErrorCode, Internal, MemkvError, ProtocolError
from ..memory_kind import MemoryKind
from ..transport import ItemResult, PutItem
from ..wire import messages as msg
from ..wire import nixl_leases as lease_msg
from ..wire.opcodes import Opcode
from .nixl_write import ClientDrivenPut

if TYPE_CHECKING:
    from .nixl import NixlTransport, _Slot
    from .tcp import TcpConnection

T = TypeVar("T")

@dataclasses.dataclass(slots=True, eq=False)
class _Credit:
    grant: lease_msg.Grant
    size: int
    use: int = 0
    busy: bool = False


class CreditBook:
    """The credits each control connection of one transport holds; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: weakref.WeakKeyDictionary[TcpConnection, list[_Credit]] = weakref.WeakKeyDictionary()

    def take(self, conn: TcpConnection, length: int) -> _Credit | None:
        """The smallest free credit of `conn` that holds `length` bytes, marked busy."""
        with self._lock:
            fits = [c for c in self._held.get(conn, []) if not c.busy and c.size >= length]
            if not fits:
                return None
            credit = min(fits, key=lambda c: c.size)
            credit.busy = True
            return credit

    def held_bytes(self, conn: TcpConnection, chunk: int) -> int:
        with self._lock:
            return sum(-(-c.size // chunk) * chunk for c in self._held.get(conn, []))

    def add(self, conn: TcpConnection, credit: _Credit) -> None:
        with self._lock:
            self._held.setdefault(conn, []).append(credit)

    def give_back(self, credit: _Credit) -> None:
        with self._lock:
            credit.busy = False

    def forget(self, conn: TcpConnection, credit: _Credit) -> None:
        with self._lock:
            held = self._held.get(conn, [])
            if credit in held:
                held.remove(credit)

    def take_free(self, conn: TcpConnection) -> list[_Credit]:
        """Remove and return every free credit of `conn` (to be ended)."""
        with self._lock:
            held = self._held.get(conn, [])
            free = [c for c in held if not c.busy]
            self._held[conn] = [c for c in held if c.busy]
            return free


@dataclasses.dataclass(slots=True, eq=False)
class _Job:
    index: int        # the item's position in the batch
    position: int     # its position in the prepared lists
    credit: _Credit | None = None
    error: str | None = None
    retried: bool = False


class CreditPut:
    """One put batch by WRITEs into standing credits and NIXL_STORE; `run()` gives the per-item results."""

    def __init__(self, transport: NixlTransport, book: CreditBook, items: list[PutItem]) -> None:
        self.transport, self.book, self.items = transport, book, items
        self.results: list[ItemResult | None] = [None] * len(items)
        self.slots: list[_Slot] = []
        self.records: list[tuple[bytes, int, bytes]] = []  # key, checksum, meta per prepared item
        self.conn = transport.control.connection()  # credits belong to the connection they were granted on
        self.by_lease: list[int] = []  # items that found no credit within the connection's bound
        chunk = max(1, transport.server_chunk)
        self.chunk, self.budget = chunk, max(chunk, transport.server_staging // 4 // chunk * chunk)

    def run(self) -> list[ItemResult]:
        try:
            pending = self._prepare()
            if pending:
                server = self.transport.load_server_agent()
                while pending:
                    pending = self._round(server, pending)
        finally:
            for slot in self.slots:
                slot.done()
        if self.by_lease:  # NIXL_ALLOC and NIXL_COMMIT, which take staging from the whole pool
            leased = ClientDrivenPut(self.transport, [self.items[i] for i in self.by_lease]).run()
            for i, result in zip(self.by_lease, leased, strict=True):
                self.results[i] = result
        return [r if r is not None else ItemResult(ErrorCode.INTERNAL, Internal("no result").message)
                for r in self.results]

    def _prepare(self) -> list[_Job]:
        jobs = []
        for i, key, slot, checksum, meta in self.transport._put_slots(self.items, self.results):
            jobs.append(_Job(i, len(self.slots)))
            self.slots.append(slot)
            self.records.append((key, checksum, meta))
        return jobs

    # ---- one round: credits, WRITEs, NIXL_STORE ---------------------------------------------------
    def _round(self, server: str, pending: list[_Job]) -> list[_Job]:
        """Store what the held and newly granted credits allow; the jobs left for the next round."""
        now: list[_Job] = []
        later: list[_Job] = []
        wanted: list[_Job] = []
        planned = self.book.held_bytes(self.conn, self.chunk)
        for job in pending:
            length = self.slots[job.position].length
            job.credit = self.book.take(self.conn, length)
            if job.credit is not None:
                now.append(job)
                continue
            cost = -(-length // self.chunk) * self.chunk
            if planned + cost > self.budget and (now or wanted):
                later.append(job)
                continue
            if planned + cost > self.budget:
                planned -= self._end(self.book.take_free(self.conn))
            wanted.append(job)
            planned += cost
        try:
            now += self._grant(wanted)
        except BaseException:
            for job in now:  # taken above; nobody else would give them back
                if job.credit is not None:
                    self.book.give_back(job.credit)
            raise
        if not now:
            return later
        self._store(server, now)
        return later + [job for job in now if self._retry(job)]

    def _grant(self, wanted: list[_Job]) -> list[_Job]:
        """Ask for a credit per job (NIXL_CREDIT); the jobs that got one."""
        if not wanted:
            return []
        sizes = [-(-self.slots[job.position].length // self.chunk) * self.chunk for job in wanted]
        answers = self._request(Opcode.NIXL_CREDIT, [lease_msg.pack_credit_item(s) for s in sizes],
                                lease_msg.read_alloc_answer)
        granted = []
        for job, size, (result, grant) in zip(wanted, sizes, answers, strict=True):
            if grant is None and result.status in (ErrorCode.LIMIT_EXCEEDED, ErrorCode.UNAVAILABLE):
                self.by_lease.append(job.index)  # credits are all in use, staging is busy, or it is too large
                continue
            if grant is None:
                self.results[job.index] = result
                continue
            job.credit = _Credit(grant, size, busy=True)
            self.book.add(self.conn, job.credit)
            granted.append(job)
        return granted

    def _store(self, server: str, jobs: list[_Job]) -> None:
        """Send NIXL_STORE (the server starts receiving), post the WRITEs behind it, wait for both."""
        try:
            records = []
            for job in jobs:
                key, checksum, meta = self.records[job.position]
                assert job.credit is not None
                job.credit.use += 1
                records.append(lease_msg.pack_store_item(job.credit.grant.lease, job.credit.use, key,
                                                         self.slots[job.position].length, checksum, meta))
            request = self.transport._nixl_request(Opcode.NIXL_STORE, records, pump_needed=False, conn=self.conn)
            failed = [job for job in jobs if not self._write(server, job, request.done)]
            if failed:  # the server would wait its lease time for WRITEs that will not come: end them
                self._end([job.credit for job in failed if job.credit is not None])
            _, reader, _ = self.transport.control.wait(request)
            answers = reader.results()
            reader.finish()
            if len(answers) != len(jobs):
                raise ProtocolError("NIXL_STORE answer has a different number of items than the request")
            for job, result in zip(jobs, answers, strict=True):
                if job.error is None:
                    self.results[job.index] = result
        finally:
            for job in jobs:
                if job.credit is not None:
                    self.book.give_back(job.credit)

    def _write(self, server: str, job: _Job, answered: Callable[[], bool]) -> bool:
        """WRITE one job's payload into its credit, piece after piece (each piece's notification
        reaches the server before the next piece's bytes, so it stores while the rest arrives).
        Stops early once the NIXL_STORE is answered: an answer before the last piece is a refusal
        (an ended credit), and the server no longer progresses WRITEs into it."""
        credit, slot, agent = job.credit, self.slots[job.position], self.transport.agent
        assert credit is not None
        grant = credit.grant
        deadline = time.monotonic() + grant.lease_ms / 1000
        try:
            remote_kind = MemoryKind.of(grant.mem_kind)
            for k, start in enumerate(range(0, slot.length, grant.piece)):
                size = min(grant.piece, slot.length - start)
                transfer = agent.post("WRITE", [(slot.address + start, size, slot.device_id)], slot.kind,
                                      [(grant.address + start, size, grant.device_id)], remote_kind, server,
                                      lease_msg.credit_notification(grant.lease, credit.use, k))
                try:
                    done = agent.wait(transfer, deadline, stop=answered)
                finally:
                    released = agent.release(transfer)
                if not done:
                    return True  # the answer says what became of the item
                if not released:
                    raise Internal("the NIXL WRITE could not be released")
        except MemkvError as exc:
            job.error = exc.message
            self.results[job.index] = ItemResult(ErrorCode.UNAVAILABLE,
                                                 f"NIXL write to the server failed: {exc.message}")
        return job.error is None

    def _retry(self, job: _Job) -> bool:
        """Whether a job goes again: once, when its credit had ended on the server (UNKNOWN_LEASE)."""
        result = self.results[job.index]
        if result is None or result.status is not ErrorCode.UNKNOWN_LEASE or job.retried:
            return False
        assert job.credit is not None
        self.book.forget(self.conn, job.credit)
        job.credit, job.retried = None, True
        self.results[job.index] = None
        return True

    def _end(self, credits: list[_Credit]) -> int:
        """End credits on the server (NIXL_COMMIT discard); the staging bytes they held."""
        for credit in credits:
            self.book.forget(self.conn, credit)
        if credits:
            self._request(Opcode.NIXL_COMMIT, [lease_msg.pack_commit_item(c.grant.lease, lease_msg.DISCARD)
                                               for c in credits], lambda reader: reader.results())
        return sum(-(-c.size // self.chunk) * self.chunk for c in credits)

    def _request(self, opcode: Opcode, records: list[bytes], read: Callable[[msg.MetaReader], list[T]]) -> list[T]:
        request = self.transport._nixl_request(opcode, records, pump_needed=False, conn=self.conn)
        _, reader, _ = self.transport.control.wait(request)
        answers = read(reader)
        reader.finish()
        if len(answers) != len(records):
            raise ProtocolError(f"{opcode.name} answer has a different number of items than the request")
        return answers


__all__ = ["CreditBook", "CreditPut"]
