"""The server side of memkv+nixl://: a NIXL agent, a registered DRAM staging pool, transfers.

Control frames (NIXL_HELLO, NIXL_GET, NIXL_PUT) arrive on a normal, signed wire connection;
bulk bytes never cross that socket (spec/wire.md section 8). The server drives every transfer:

- NIXL_HELLO loads the client agent's metadata (bytes, never pickle) after checking that the
  name inside it is the declared one, binds that agent to the connection and its key, and
  optionally proves the data path with a small probe WRITE into a client region.
- NIXL_GET reads each block from the device into a staging run (the engine verifies its
  checksum), then NIXL-WRITEs it into the client's declared region. The write of block i
  overlaps the device read of block i+1.
- NIXL_PUT NIXL-READs each payload from the client's declared region into staging, then the
  engine verifies the declared checksum, writes the device and commits. The read of block i+1
  overlaps the device write of block i.

The server only touches the remote regions a signed frame declared, for at most their declared
lengths, on the agent that connection loaded; NIXL itself refuses regions the client has not
registered. Staging is a fixed pool (hugepages when available): an item that cannot get staging
in time gets UNAVAILABLE, one larger than the pool LIMIT_EXCEEDED; nothing grows per request.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..blocks import BlockMeta, Limits
from ..buffers import address_of
from ..errors import (
    BlockTooLarge,
    ErrorCode,
    InvalidArgument,
    MemkvError,
    PermissionDenied,
    ProtocolError,
    Unavailable,
    Unsupported,
)
from ..keys import check_key
from ..memory_kind import MemoryKind
from ..nixl.agent import NixlAgent, Operation, Registration, Transfer
from ..nixl.libraries import rdma_devices
from ..nixl.support import ChunkPool, Pump, metadata_agent_name
from ..transport import GetResult, ItemResult, PutItem
from ..wire import messages as msg
from ..wire import nixl_leases as lease_msg
from ..wire import records as rec
from ..wire.frames import Header
from ..wire.opcodes import Opcode
from .nixl_credits import Credit, CreditTable
from .nixl_leases import Lease, LeaseTable

if TYPE_CHECKING:
    from ..store.engine import StorageEngine
    from .connection import Connection
    from .service import MemkvServer

log = logging.getLogger("memkv.server.nixl")

MODES = ("auto", "on", "off")
AGENT_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_PROBE = 4096
PIPELINE_DEPTH = 2
STREAM_PIECES = 4          # staging pieces per streamed block: device and network overlap within a block
MIN_PIECE = 2 * 1024 * 1024  # up to this, a block moves in one transfer: over UCX/TCP each piece costs
# a completion round trip with the client (a 2 MiB get: 1.7 ms in one piece, 2.2 ms in four)
MIN_RATE = 1024 * 1024  # bytes/s a transfer must sustain, as for wire payloads

Response = tuple[dict[str, Any], bytes, int, list[memoryview]]
Handler = Callable[[Header, msg.MetaReader], Response]


def check_put_item(length: int, meta: BlockMeta | MemkvError, limits: Limits) -> BlockMeta:
    """The item errors a NIXL put or allocation shares (empty, too large, undecodable metadata);
    the metadata when there is none."""
    if length == 0:
        raise InvalidArgument("payload is empty")
    if length > limits.max_block_size:
        raise BlockTooLarge(f"payload of {length} bytes exceeds the maximum {limits.max_block_size}")
    if isinstance(meta, MemkvError):
        raise meta
    return meta


@dataclasses.dataclass(slots=True)
class _Peer:
    name: str
    namespace: str
    key_id: str | None
    epoch: int
    conns: set[int]


@dataclasses.dataclass(slots=True)
class _InFlight:
    index: int
    transfer: Transfer
    offset: int
    length: int
    deadline: float
    result: GetResult | None = None
    item: PutItem | None = None


class NixlService:
    """One NIXL agent and staging pool for the whole server; per-connection peer bindings."""

    def __init__(self, server: MemkvServer, staging_bytes: int, chunk: int, hugepages: bool = True) -> None:
        self.server = server
        self.name = f"memkv-server-{uuid.uuid4().hex[:16]}"
        self.agent = NixlAgent(self.name)
        self.pool = ChunkPool(staging_bytes, chunk, hugepages)
        try:
            self._registration: Registration = self.agent.register(self.pool.address, self.pool.size)
        except MemkvError as exc:
            raise Unsupported(f"cannot register the NIXL staging pool: {exc.message}") from None
        self._peers: dict[str, _Peer] = {}
        self._by_conn: dict[int, str] = {}
        self._lock = threading.Lock()
        self.pump = Pump(self.agent, self._arrived)
        self.leases = LeaseTable(self.pool, self.pump, server.config.frame_timeout_s)
        self.credits = CreditTable(self.pool, self.pump, self.leases, self.pool.size // 2, self.pool.size // 2)
        self.put_path = "read" if ucx_has_rdma(os.environ.get("UCX_TLS"), bool(rdma_devices())) else "write"
        log.info("NIXL agent %s up: staging %d MiB in %d KiB chunks%s", self.name, self.pool.size >> 20,
                 self.pool.chunk >> 10, " on hugepages" if self.pool.hugepages else "")

    # ---- peers ------------------------------------------------------------------------------
    def hello(self, conn: Connection, header: Header, reader: msg.MetaReader) -> Response:
        args = rec.decode(reader, rec.NixlHelloArgs)
        name, epoch = args.agent, args.epoch
        if not AGENT_NAME.match(name) or name == self.name:
            raise InvalidArgument("NIXL agent name must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        if reader.count != 1:
            raise ProtocolError("NIXL_HELLO carries exactly one metadata item")
        blob = msg.read_blob(reader)
        reader.finish()
        if metadata_agent_name(blob) != name:
            raise InvalidArgument("NIXL metadata names another agent than the one declared")
        key = id(conn)
        with self._lock:
            bound = self._by_conn.get(key)
            if bound is not None and bound != name:
                raise InvalidArgument(f"this connection is bound to NIXL agent {bound}")
            peer = self._peers.get(name)
            if peer is not None and (peer.namespace, peer.key_id) != (conn.namespace, conn.key_id):
                raise PermissionDenied("that NIXL agent belongs to another key")
            if peer is None or epoch > peer.epoch:
                if self.agent.add_peer(blob) != name:
                    raise InvalidArgument("NIXL loaded another agent than the one declared")
                if peer is None:
                    peer = self._peers[name] = _Peer(name, conn.namespace, conn.key_id, epoch, set())
                peer.epoch = epoch
            peer.conns.add(key)
            self._by_conn[key] = name
        answer: dict[str, Any] = {"agent": self.name, "chunk": self.pool.chunk, "staging_bytes": self.pool.size,
                                  "hugepages": self.pool.hugepages, "epoch": peer.epoch, "put_path": self.put_path}
        if args.probe_address is not None:
            answer["probe"] = self._probe(name, args.probe_address, args.probe_length)
        return answer, b"", 0, []

    def _probe(self, peer: str, address: int, length: int) -> str:
        """WRITE random bytes into a client region: proves the data path end to end."""
        if not 0 < length <= MAX_PROBE or address <= 0:
            raise InvalidArgument(f"a NIXL probe is 1-{MAX_PROBE} bytes at a positive address")
        offset, view = self.pool.acquire(length, self.server.config.frame_timeout_s)
        data = os.urandom(length)
        view[:] = data
        try:
            posted = self.agent.post("WRITE", [(self.pool.address + offset, length, 0)], MemoryKind.DRAM,
                                     [(address, length, 0)], MemoryKind.DRAM, peer)
        except MemkvError as exc:
            self.pool.release(offset, length)
            raise Unavailable(f"NIXL probe transfer failed: {exc.message}") from None
        self._settle(_InFlight(-1, posted, offset, length, time.monotonic() + self.server.config.frame_timeout_s))
        return data.hex()

    def _peer_of(self, conn: Connection, reader: msg.MetaReader) -> str:
        name = rec.decode(reader, rec.AgentArgs).agent
        with self._lock:
            if self._by_conn.get(id(conn)) != name:
                raise InvalidArgument(f"NIXL agent {name} is not loaded on this connection; send NIXL_HELLO first")
        return str(name)

    def _arrived(self, notifs: dict[str, list[bytes]]) -> None:
        self.leases.arrived(notifs)
        self.credits.arrived(notifs)

    def connection_closed(self, conn: Connection) -> None:
        self.leases.drop_connection(id(conn))
        self.credits.drop_connection(id(conn))
        with self._lock:
            name = self._by_conn.pop(id(conn), None)
            peer = self._peers.get(name) if name is not None else None
            if peer is None:
                return
            peer.conns.discard(id(conn))
            if peer.conns:
                return
            del self._peers[peer.name]
            # Under the lock: a NIXL_HELLO of the same agent name must not bind in between.
            self.agent.remove_peer(peer.name)

    # ---- transfers ----------------------------------------------------------------------------
    def _deadline(self, length: int) -> float:
        return time.monotonic() + self.server.config.frame_timeout_s + length / MIN_RATE

    def _settle(self, job: _InFlight) -> None:
        """Wait for a transfer and give its staging back; raises the transfer's failure."""
        try:
            self.agent.wait(job.transfer, job.deadline)
        finally:
            self._retire(job)

    def get(self, conn: Connection, header: Header, reader: msg.MetaReader) -> Response:
        peer = self._peer_of(conn, reader)
        engine, namespace = conn.engine, conn.namespace
        descs = msg.nixl_descs(reader, False, engine.limits)
        reader.finish()
        infos = engine.stat(namespace, [d[0] for d in descs])
        results: list[GetResult | None] = [None] * len(descs)
        in_flight: collections.deque[_InFlight] = collections.deque()
        timeout = self.server.config.frame_timeout_s

        def finish(job: _InFlight) -> None:
            try:
                self._settle(job)
                results[job.index] = job.result
            except MemkvError as exc:
                results[job.index] = GetResult(exc.code, f"NIXL write to the client failed: {exc.message}")

        try:
            for i, ((key, address, capacity, device_id, kind, _, _), info) in enumerate(
                    zip(descs, infos, strict=True)):
                if info is None or capacity < info.length:
                    # Asked of the engine so its get/miss counters see it; an empty buffer never
                    # receives bytes (blocks hold at least one): NOT_FOUND or BUFFER_TOO_SMALL.
                    result = engine.get_into(namespace, [key], [bytearray(0)])[0]
                    if info is None and result.status is ErrorCode.BUFFER_TOO_SMALL:
                        result = GetResult(ErrorCode.NOT_FOUND, f"no block {key.hex()} in namespace {namespace}")
                    results[i] = result
                    continue
                if self._streams(engine):
                    results[i] = self._get_streamed(engine, namespace, peer, key, address, capacity, device_id, kind)
                    continue
                try:
                    remote_kind = MemoryKind.of(kind)
                    if address <= 0:
                        raise InvalidArgument("destination address must be positive")
                    offset, view = self.pool.acquire(info.length, timeout)
                except MemkvError as exc:
                    results[i] = GetResult(exc.code, exc.message)
                    continue
                result = engine.get_into(namespace, [key], [view])[0]
                if not result.ok:
                    self.pool.release(offset, info.length)
                    if result.status is ErrorCode.BUFFER_TOO_SMALL:  # replaced meanwhile by a longer block
                        result = GetResult(ErrorCode.BUFFER_TOO_SMALL, "block changed while it was read; retry")
                    results[i] = result
                    continue
                try:
                    posted = self.agent.post("WRITE", [(self.pool.address + offset, result.length, 0)],
                                             MemoryKind.DRAM, [(address, result.length, device_id)], remote_kind, peer)
                except MemkvError as exc:
                    self.pool.release(offset, info.length)
                    results[i] = GetResult(ErrorCode.INVALID_ARGUMENT, "destination is not memory the client "
                                           f"registered with NIXL ({exc.message})")
                    continue
                in_flight.append(_InFlight(i, posted, offset, info.length, self._deadline(result.length), result))
                while len(in_flight) >= PIPELINE_DEPTH:
                    finish(in_flight.popleft())
        finally:
            while in_flight:
                finish(in_flight.popleft())
        final = [r or GetResult(ErrorCode.INTERNAL) for r in results]
        self._count(header.opcode, final, "out", sum(r.length for r in final if r.ok))
        return {}, msg.pack_get_results(final), len(final), []

    def put(self, conn: Connection, header: Header, reader: msg.MetaReader) -> Response:
        peer = self._peer_of(conn, reader)
        engine, namespace = conn.engine, conn.namespace
        limits = engine.limits
        descs = msg.nixl_descs(reader, True, limits)
        reader.finish()
        results: list[ItemResult | None] = [None] * len(descs)
        in_flight: collections.deque[_InFlight] = collections.deque()
        timeout = self.server.config.frame_timeout_s
        moved = 0

        def finish(job: _InFlight) -> None:
            nonlocal moved
            assert job.item is not None
            try:
                self.agent.wait(job.transfer, job.deadline)
            except MemkvError as exc:
                results[job.index] = ItemResult(exc.code, f"NIXL read from the client failed: {exc.message}")
                self._retire(job)
                return
            try:
                results[job.index] = engine.put(namespace, [job.item])[0]
                moved += job.length
            finally:
                self._retire(job)

        try:
            for i, (key, address, length, device_id, kind, checksum, decoded) in enumerate(descs):
                try:
                    meta = check_put_item(length, decoded, limits)
                    remote_kind = MemoryKind.of(kind)
                    if address <= 0:
                        raise InvalidArgument("source address must be positive")
                    if self._streams(engine):
                        streamed = self._put_streamed(engine, namespace, peer, key, address, length, device_id,
                                                      remote_kind, checksum, meta)
                        results[i] = streamed
                        moved += length if streamed.ok else 0
                        continue
                    offset, view = self.pool.acquire(length, timeout)
                except MemkvError as exc:
                    results[i] = ItemResult(exc.code, exc.message)
                    continue
                try:
                    posted = self.agent.post("READ", [(self.pool.address + offset, length, 0)], MemoryKind.DRAM,
                                             [(address, length, device_id)], remote_kind, peer)
                except MemkvError as exc:
                    self.pool.release(offset, length)
                    results[i] = ItemResult(ErrorCode.INVALID_ARGUMENT, "source is not memory the client "
                                            f"registered with NIXL ({exc.message})")
                    continue
                item = PutItem(key, view, meta, checksum)
                in_flight.append(_InFlight(i, posted, offset, length, self._deadline(length), item=item))
                while len(in_flight) >= PIPELINE_DEPTH:
                    finish(in_flight.popleft())
        finally:
            while in_flight:
                finish(in_flight.popleft())
        final = [r or ItemResult(ErrorCode.INTERNAL) for r in results]
        self._count(header.opcode, final, "in", moved)
        return {}, msg.pack_results(final), len(final), []

    # ---- client-driven put: NIXL_SERVER_AGENT, NIXL_ALLOC, (client WRITEs), NIXL_COMMIT ------------
    def server_agent(self, conn: Connection, header: Header, reader: msg.MetaReader) -> Response:
        self._peer_of(conn, reader)
        reader.finish()
        return {"agent": self.name}, msg.pack_blob(self.agent.metadata()), 1, []

    def alloc(self, conn: Connection, header: Header, reader: msg.MetaReader) -> Response:
        peer = self._peer_of(conn, reader)
        limits = conn.engine.limits
        items = reader.put_items(limits)
        reader.finish()
        deadline = time.monotonic() + self.server.config.frame_timeout_s  # one wait for the whole request

        def lend(item: tuple[bytes, int, int, BlockMeta | MemkvError]) -> lease_msg.Grant:
            key, length, checksum, meta = item
            check_key(key)
            checked = check_put_item(length, meta, limits)
            lease = self.leases.grant(id(conn), peer, key, length, checksum, checked, self._storer(conn), deadline)
            return lease_msg.Grant(lease.id, self.pool.address + lease.offset, 0, 0, int(lease.lease_s * 1000),
                                   lease.piece)

        return self._grants(header, {"agent": self.name}, [functools.partial(lend, item) for item in items])

    def _grants(self, header: Header, args: dict[str, Any], attempts: list[Callable[[], lease_msg.Grant]]
                ) -> Response:
        """The NIXL_ALLOC / NIXL_CREDIT answer: per item the result of its attempt and, when OK, its grant."""
        results: list[ItemResult] = []
        grants: list[lease_msg.Grant | None] = []
        for attempt in attempts:
            try:
                grants.append(attempt())
            except MemkvError as exc:
                results.append(ItemResult(exc.code, exc.message))
                grants.append(None)
                continue
            results.append(ItemResult(ErrorCode.OK))
        self._count(header.opcode, results, "in", 0)
        return args, lease_msg.pack_alloc_answer(results, grants), len(results), []

    def commit(self, conn: Connection, header: Header, reader: msg.MetaReader) -> Response:
        self._peer_of(conn, reader)
        items = lease_msg.read_commit_items(reader)
        reader.finish()
        results: list[ItemResult] = []
        moved = 0
        for lease_id, action in items:
            lease = self.leases.take(id(conn), lease_id)
            if lease is None and self.credits.end(id(conn), lease_id):  # MKV-WIRE-038: either action
                results.append(ItemResult(ErrorCode.OK))
                continue
            if lease is None:
                results.append(ItemResult(ErrorCode.UNKNOWN_LEASE, f"no open NIXL lease {lease_id} on this "
                                          "connection (never granted, already ended or expired)"))
                continue
            if action not in (lease_msg.STORE, lease_msg.DISCARD):
                self.leases.finish(lease, lease_msg.DISCARD)
                results.append(ItemResult(ErrorCode.INVALID_ARGUMENT, f"unknown NIXL_COMMIT action {action}"))
                continue
            result = self.leases.finish(lease, action)
            results.append(result)
            moved += lease.length if result.ok and action == lease_msg.STORE else 0
        self._count(header.opcode, results, "in", moved)
        return {}, msg.pack_results(results), len(results), []

    def credit(self, conn: Connection, header: Header, reader: msg.MetaReader) -> Response:
        """NIXL_CREDIT: standing staging for this connection (MKV-WIRE-036)."""
        peer = self._peer_of(conn, reader)
        sizes = lease_msg.read_credit_items(reader)
        reader.finish()
        limits = conn.engine.limits

        def lend(size: int) -> lease_msg.Grant:
            if size == 0:
                raise InvalidArgument("a NIXL credit needs a positive size")
            if size > limits.max_block_size:
                raise BlockTooLarge(f"a credit of {size} bytes exceeds the maximum block size {limits.max_block_size}")
            credit = self.credits.grant(id(conn), peer, size)
            return lease_msg.Grant(credit.id, self.pool.address + credit.offset, 0, 0, int(credit.idle_s * 1000),
                                   credit.piece)

        return self._grants(header, {}, [functools.partial(lend, size) for size in sizes])

    def store(self, conn: Connection, header: Header, reader: msg.MetaReader) -> Response:
        """NIXL_STORE: store what the client wrote into its credits (MKV-WIRE-037, MKV-WIRE-039)."""
        self._peer_of(conn, reader)
        engine, namespace = conn.engine, conn.namespace
        items = lease_msg.read_store_items(reader, engine.limits)
        reader.finish()

        def put(credit: Credit, length: int, fill: Callable[[memoryview], None], key: bytes, checksum: int,
                meta: BlockMeta) -> ItemResult:
            # fill copies out of the credit straight into the store's mapping, or into the credit's
            # own buffers on a device without one: memory never registered with NIXL, the only copy
            # the engine hashes and writes (MKV-WIRE-039); no second copy by pwrite
            return engine.put_stream(namespace, key, length, fill, credit.buffers, meta, checksum)

        running: list[concurrent.futures.Future[ItemResult] | ItemResult | Callable[[], ItemResult]] = []
        for credit_id, use, key, length, checksum, decoded in items:
            try:
                check_key(key)
                meta = check_put_item(length, decoded, engine.limits)
                begun = self.credits.begin(id(conn), credit_id, use, length)
            except MemkvError as exc:
                running.append(ItemResult(exc.code, exc.message))
                continue
            job = functools.partial(self.credits.run, begun, length,
                                    functools.partial(put, key=key, checksum=checksum, meta=meta))
            # the items of a batch are stored side by side; a lone one in this thread (no hand-off)
            running.append(job if len(items) == 1 else self.credits.submit(job))
        results = [r if isinstance(r, ItemResult) else r() if callable(r) else r.result() for r in running]
        moved = sum(item[3] for item, r in zip(items, results, strict=True) if r.ok)
        self._count(header.opcode, results, "in", moved)
        return {}, msg.pack_results(results), len(results), []

    def _storer(self, conn: Connection) -> Callable[[Lease, Callable[[memoryview], None]], ItemResult]:
        """How a lease's block is stored: streamed piece by piece (written while later pieces arrive)
        where the engine can, else as one put once every piece is in."""
        engine, namespace = conn.engine, conn.namespace
        streams = self._streams(engine)

        def store(lease: Lease, fill: Callable[[memoryview], None]) -> ItemResult:
            if streams:
                return engine.put_stream(  # pwrite: no page faults of a mapping
                    namespace, lease.key, lease.length, fill, lease.buffers, lease.meta, lease.checksum,
                    use_mapping=False)
            fill(lease.landing)  # waits for every piece and the commit
            return engine.put(namespace, [PutItem(lease.key, lease.landing, lease.meta, lease.checksum)])[0]

        return store

    # ---- streamed blocks: pieces through staging, device and network overlapping --------------------
    @staticmethod
    def _streams(engine: StorageEngine) -> bool:
        """Whole blocks through staging when MEMKV_NIXL_STREAM=0."""
        return os.environ.get("MEMKV_NIXL_STREAM", "1") != "0"

    def _pieces(self, length: int) -> tuple[int, int, list[memoryview]]:
        """(offset, bytes) of a staging run and the piece views cut from it for one block."""
        piece = min(self.pool.chunk, max(MIN_PIECE, length // STREAM_PIECES // 65536 * 65536))
        count = max(2, min(STREAM_PIECES, -(-length // piece)))
        offset, run = self.pool.acquire(piece * count, self.server.config.frame_timeout_s)
        return offset, piece * count, [run[k * piece : (k + 1) * piece] for k in range(count)]

    def _move(self, op: Operation, piece: memoryview, remote: int, device_id: int, remote_kind: MemoryKind,
              peer: str, broken: list[bool]) -> None:
        """One piece between staging and the client, waited for (the engine reuses the piece next).
        InvalidArgument where NIXL refuses the client's region (not memory it registered)."""
        try:
            posted = self.agent.post(op, [(address_of(piece), len(piece), 0)], MemoryKind.DRAM,
                                     [(remote, len(piece), device_id)], remote_kind, peer)
        except InvalidArgument as exc:
            side = "destination" if op == "WRITE" else "source"
            raise InvalidArgument(f"{side} is not memory the client registered with NIXL ({exc.message})") from None
        try:
            self.agent.wait(posted, self._deadline(len(piece)))
        finally:
            if not self.agent.release(posted):
                broken[0] = True

    def _give_back(self, offset: int, size: int, broken: list[bool]) -> None:
        if broken[0]:
            log.error("a NIXL transfer could not be cancelled; %d staging bytes are retired", size)
            self.pool.quarantine(offset, size)
        else:
            self.pool.release(offset, size)

    def _get_streamed(self, engine: StorageEngine, namespace: str, peer: str, key: bytes, address: int,
                      capacity: int, device_id: int, kind: int) -> GetResult:
        try:
            remote_kind = MemoryKind.of(kind)
            if address <= 0:
                raise InvalidArgument("destination address must be positive")
            block = engine.open_read(namespace, key, capacity)
        except MemkvError as exc:
            return GetResult(exc.code, exc.message)
        broken = [False]
        staged: tuple[int, int] | None = None
        try:
            offset, size, pieces = self._pieces(block.result().length)
            staged = (offset, size)
            position = [address]

            def emit(view: memoryview) -> None:
                self._move("WRITE", view, position[0], device_id, remote_kind, peer, broken)
                position[0] += len(view)

            engine.read_stream(block, pieces, emit, use_mapping=False)  # pieces must be NIXL-registered
            return block.result()
        except MemkvError as exc:
            return GetResult(exc.code, exc.message)
        finally:
            engine.close_read(block)
            if staged is not None:
                self._give_back(*staged, broken)

    def _put_streamed(self, engine: StorageEngine, namespace: str, peer: str, key: bytes, address: int,
                      length: int, device_id: int, remote_kind: MemoryKind, checksum: int, meta: BlockMeta
                      ) -> ItemResult:
        broken = [False]
        offset, size, pieces = self._pieces(length)
        position = [address]

        def fill(view: memoryview) -> None:
            self._move("READ", view, position[0], device_id, remote_kind, peer, broken)
            position[0] += len(view)

        try:
            return engine.put_stream(
                namespace, key, length, fill, pieces, meta, checksum, use_mapping=False)  # pieces are NIXL-registered
        except MemkvError as exc:
            return ItemResult(exc.code, exc.message)
        finally:
            self._give_back(offset, size, broken)

    def _retire(self, job: _InFlight) -> None:
        if self.agent.release(job.transfer):
            self.pool.release(job.offset, job.length)
        else:
            log.error("a NIXL transfer could not be cancelled; %d staging bytes are retired", job.length)
            self.pool.quarantine(job.offset, job.length)

    def _count(self, op: Opcode, results: Sequence[ItemResult], direction: str, moved: int) -> None:
        metrics = self.server.metrics
        for result in results:
            metrics.items.labels(op.name, result.status.name).inc()
        metrics.bytes.labels(direction).inc(moved)

    def close(self) -> None:
        self.credits.close()
        self.leases.close()
        self.pump.close()
        with self._lock:
            peers, self._peers, self._by_conn = list(self._peers), {}, {}
        for name in peers:
            self.agent.remove_peer(name)
        self.agent.deregister(self._registration)


_RDMA_TLS = ("rc", "ud", "dc", "ib", "mlx5", "verbs")


def ucx_has_rdma(ucx_tls: str | None, has_device: bool) -> bool:
    """Whether UCX may pick an RDMA transport: a device exists and UCX_TLS does not rule them out."""
    if not has_device:
        return False
    if not ucx_tls or ucx_tls.startswith("^"):
        return True
    names = [t.strip() for t in ucx_tls.split(",")]
    return any(t == "all" or any(t.startswith(r) or t.endswith(r) for r in _RDMA_TLS) for t in names)


class NixlGate:
    """Whether and when the server runs NIXL: 'on' (at start, or fail), 'auto' (on first use), 'off'."""

    def __init__(self, server: MemkvServer, mode: str = "auto", staging_bytes: int = 256 * 1024 * 1024,
                 chunk: int = 2 * 1024 * 1024) -> None:
        if mode not in MODES:
            raise InvalidArgument(f"nixl must be one of {', '.join(MODES)}, not {mode!r}")
        self.server, self.mode = server, mode
        self.staging_bytes, self.chunk = staging_bytes, chunk
        self._service: NixlService | None = None
        self._failure: str | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.mode == "on":
            self.service()

    def service(self) -> NixlService:
        with self._lock:
            if self._service is not None:
                return self._service
            if self.mode == "off":
                raise Unsupported("this server runs without NIXL (--nixl off); use memkv+tcp://")
            if self._failure is not None:
                raise Unsupported(self._failure)
            try:
                self._service = NixlService(self.server, self.staging_bytes, self.chunk)
            except MemkvError as exc:
                self._failure = f"this server cannot use NIXL: {exc.message}"
                if self.mode == "on":
                    raise
                log.warning("%s; memkv+nixl clients fall back to TCP", self._failure)
                raise Unsupported(self._failure) from None
            return self._service

    def handlers(self, conn: Connection) -> dict[Opcode, Handler]:
        return {
            Opcode.NIXL_HELLO: lambda header, reader: self.service().hello(conn, header, reader),
            Opcode.NIXL_GET: lambda header, reader: self.service().get(conn, header, reader),
            Opcode.NIXL_PUT: lambda header, reader: self.service().put(conn, header, reader),
            Opcode.NIXL_SERVER_AGENT: lambda header, reader: self.service().server_agent(conn, header, reader),
            Opcode.NIXL_ALLOC: lambda header, reader: self.service().alloc(conn, header, reader),
            Opcode.NIXL_COMMIT: lambda header, reader: self.service().commit(conn, header, reader),
            Opcode.NIXL_CREDIT: lambda header, reader: self.service().credit(conn, header, reader),
            Opcode.NIXL_STORE: lambda header, reader: self.service().store(conn, header, reader),
        }

    def connection_closed(self, conn: Connection) -> None:
        service = self._service
        if service is not None:
            service.connection_closed(conn)

    def close(self) -> None:
        with self._lock:
            service, self._service = self._service, None
        if service is not None:
            service.close()


__all__ = ["MODES", "NixlGate", "NixlService", "metadata_agent_name", "ucx_has_rdma"]
