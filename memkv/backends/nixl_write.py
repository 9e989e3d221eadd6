"""The client side of the client-driven NIXL put (spec/wire.md section 8.1).

NIXL_ALLOC lends server staging for each block; this client NIXL-WRITEs each payload from its
registered memory into its grant (all posted before any is waited for), then NIXL_COMMIT stores
the written ones and discards those whose WRITE failed. Over UCX/TCP a WRITE streams at the
speed of the socket, where a server-driven READ costs a request per fragment.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, Internal, MemkvError, ProtocolError
from ..nixl_support import describe_error, mem_type, release_handle, transfer, wait_transfer
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

    def run(self) -> list[ItemResult]:
        try:
            records = self._prepare()
            if records:
                server = self.transport.load_server_agent()
                grants = self._allocate(records)
                self._commit(self._write(server, grants))
        finally:
            for slot in self.slots:
                slot.done()
        return [r if r is not None else ItemResult(ErrorCode.INTERNAL, Internal("no result").message)
                for r in self.results]

    def _prepare(self) -> list[bytes]:
        records = []
        for i, item in enumerate(self.items):
            try:
                key, slot, checksum, meta = self.transport._put_slot(item)
            except MemkvError as exc:
                self.results[i] = ItemResult(exc.code, exc.message)
                continue
            self.slots.append(slot)
            self.sent.append(i)
            records.append(msg.pack_put_item(key, slot.length, checksum, meta))
        return records

    def _allocate(self, records: list[bytes]) -> list[lease_msg.Grant | None]:
        _, reader, _ = self.transport._wait(self.transport._nixl_request(Opcode.NIXL_ALLOC, records, pump_needed=False))
        answers = lease_msg.read_alloc_answer(reader)
        reader.finish()
        if len(answers) != len(self.sent):
            raise ProtocolError("NIXL_ALLOC answer has a different number of items than the request")
        grants: list[lease_msg.Grant | None] = []
        for i, (result, grant) in zip(self.sent, answers, strict=True):
            if not result.ok:
                self.results[i] = result
            grants.append(grant)
        return grants

    def _write(self, server: str, grants: list[lease_msg.Grant | None]) -> list[tuple[int, int, int]]:
        """Post every WRITE, then wait for each: (item index, lease id, action) per grant."""
        agent = self.transport._agent
        posted: list[tuple[int, lease_msg.Grant, list[Any], str | None]] = []
        for i, slot, grant in zip(self.sent, self.slots, grants, strict=True):
            if grant is None:
                continue
            handles: list[Any] = []
            error: str | None = None
            try:
                for k, start in enumerate(range(0, slot.length, grant.piece)):
                    size = min(grant.piece, slot.length - start)
                    handles.append(transfer(agent, "WRITE", [(slot.address + start, size, slot.device_id)],
                                            mem_type(slot.kind), [(grant.address + start, size, grant.device_id)],
                                            mem_type(grant.mem_kind), server, lease_msg.notification(grant.lease, k)))
            except Exception as exc:
                error = describe_error(exc)
            posted.append((i, grant, handles, error))
        decided = []
        for i, grant, handles, error in posted:
            deadline = time.monotonic() + grant.lease_ms / 1000
            for handle in handles:
                try:
                    if error is None:
                        wait_transfer(agent, handle, deadline)
                except MemkvError as exc:
                    error = exc.message
                finally:
                    if not release_handle(agent, handle) and error is None:
                        error = "the NIXL WRITE could not be released"
            if error is not None:
                self.results[i] = ItemResult(ErrorCode.UNAVAILABLE, f"NIXL write to the server failed: {error}")
            decided.append((i, grant.lease, lease_msg.DISCARD if error else lease_msg.STORE))
        return decided

    def _commit(self, decided: list[tuple[int, int, int]]) -> None:
        if not decided:
            return
        records = [lease_msg.pack_commit_item(lease, action) for _, lease, action in decided]
        request = self.transport._nixl_request(Opcode.NIXL_COMMIT, records, pump_needed=False)
        _, reader, _ = self.transport._wait(request)
        answers = reader.results()
        reader.finish()
        if len(answers) != len(decided):
            raise ProtocolError("NIXL_COMMIT answer has a different number of items than the request")
        for (i, _, action), result in zip(decided, answers, strict=True):
            if action == lease_msg.STORE:
                self.results[i] = result


__all__ = ["ClientDrivenPut"]
