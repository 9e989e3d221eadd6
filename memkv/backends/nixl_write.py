"""The client side of the client-driven NIXL put (spec/wire.md section 8.1).

NIXL_ALLOC lends server staging for each block; this client NIXL-WRITEs each payload from its
registered memory into its grant (all posted before any is waited for), then NIXL_COMMIT stores
the written ones and discards those whose WRITE failed. Over UCX/TCP a WRITE streams at the
speed of the socket, where a server-driven READ costs a request per fragment.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import ErrorCode, Internal, MemkvError, ProtocolError
from ..memory_kind import MemoryKind
from ..nixl.agent import Transfer
from ..transport import ItemResult, PutItem
from ..wire import messages as msg
from ..wire import nixl_leases as lease_msg
from ..wire.opcodes import Opcode

if TYPE_CHECKING:
    from .nixl import NixlTransport, _Slot


class ClientDrivenPut:
    """One put batch by NIXL_ALLOC, WRITE, NIXL_COMMIT; `run()` gives the per-item results."""

    def __init__(self, transport: NixlTransport, items: list[PutItem]) -> None:
        self.transport = transport
        self.items = items
        self.results: list[ItemResult | None] = [None] * len(items)
        self.slots: list[_Slot] = []
        self.sent: list[int] = []
        self.records: list[bytes] = []
        self.conn = transport.control.connection()  # leases belong to the connection that allocated them

    def run(self) -> list[ItemResult]:
        try:
            self._prepare()
            if self.records:
                server = self.transport.load_server_agent()
                for round_ in self._rounds():
                    grants = self._allocate(round_)
                    self._commit(self._write(server, round_, grants))
        finally:
            for slot in self.slots:
                slot.done()
        return [r if r is not None else ItemResult(ErrorCode.INTERNAL, Internal("no result").message)
                for r in self.results]

    def _prepare(self) -> None:
        for i, key, slot, checksum, meta in self.transport._put_slots(self.items, self.results):
            self.slots.append(slot)
            self.sent.append(i)
            self.records.append(msg.pack_put_item(key, slot.length, checksum, meta))

    def _rounds(self) -> list[list[int]]:
        """Positions in `sent`, in rounds that need at most a quarter of the server's staging each
        (a lease takes its block rounded up to the staging chunk, plus about a chunk to store from),
        so one batch never waits for staging that only its own later commits would free."""
        chunk = max(1, self.transport.server_chunk)
        budget = max(chunk, self.transport.server_staging // 4)
        rounds: list[list[int]] = [[]]
        used = 0
        for position, slot in enumerate(self.slots):
            cost = (-(-slot.length // chunk) + 1) * chunk
            if rounds[-1] and used + cost > budget:
                rounds.append([])
                used = 0
            rounds[-1].append(position)
            used += cost
        return rounds

    def _allocate(self, round_: list[int]) -> list[lease_msg.Grant | None]:
        request = self.transport._nixl_request(Opcode.NIXL_ALLOC, [self.records[p] for p in round_],
                                               pump_needed=False, conn=self.conn)
        _, reader, _ = self.transport.control.wait(request)
        answers = lease_msg.read_alloc_answer(reader)
        reader.finish()
        if len(answers) != len(round_):
            raise ProtocolError("NIXL_ALLOC answer has a different number of items than the request")
        grants: list[lease_msg.Grant | None] = []
        for position, (result, grant) in zip(round_, answers, strict=True):
            if not result.ok:
                self.results[self.sent[position]] = result
            grants.append(grant)
        return grants

    def _write(self, server: str, round_: list[int], grants: list[lease_msg.Grant | None]
               ) -> list[tuple[int, int, int]]:
        """Post every WRITE, then wait for each: (item index, lease id, action) per grant."""
        agent = self.transport.agent
        posted: list[tuple[int, lease_msg.Grant, list[Transfer], str | None]] = []
        for position, grant in zip(round_, grants, strict=True):
            i, slot = self.sent[position], self.slots[position]
            if grant is None:
                continue
            transfers: list[Transfer] = []
            error: str | None = None
            try:
                remote_kind = MemoryKind.of(grant.mem_kind)
                for k, start in enumerate(range(0, slot.length, grant.piece)):
                    size = min(grant.piece, slot.length - start)
                    transfers.append(agent.post("WRITE", [(slot.address + start, size, slot.device_id)], slot.kind,
                                                [(grant.address + start, size, grant.device_id)], remote_kind,
                                                server, lease_msg.notification(grant.lease, k)))
            except MemkvError as exc:
                error = exc.message
            posted.append((i, grant, transfers, error))
        decided = []
        for i, grant, transfers, error in posted:
            deadline = time.monotonic() + grant.lease_ms / 1000
            for transfer in transfers:
                try:
                    if error is None:
                        agent.wait(transfer, deadline)
                except MemkvError as exc:
                    error = exc.message
                finally:
                    if not agent.release(transfer) and error is None:
                        error = "the NIXL WRITE could not be released"
            if error is not None:
                self.results[i] = ItemResult(ErrorCode.UNAVAILABLE, f"NIXL write to the server failed: {error}")
            decided.append((i, grant.lease, lease_msg.DISCARD if error else lease_msg.STORE))
        return decided

    def _commit(self, decided: list[tuple[int, int, int]]) -> None:
        if not decided:
            return
        records = [lease_msg.pack_commit_item(lease, action) for _, lease, action in decided]
        request = self.transport._nixl_request(Opcode.NIXL_COMMIT, records, pump_needed=False, conn=self.conn)
        _, reader, _ = self.transport.control.wait(request)
        answers = reader.results()
        reader.finish()
        if len(answers) != len(decided):
            raise ProtocolError("NIXL_COMMIT answer has a different number of items than the request")
        for (i, _, action), result in zip(decided, answers, strict=True):
            if action == lease_msg.STORE:
                self.results[i] = result


__all__ = ["ClientDrivenPut"]
