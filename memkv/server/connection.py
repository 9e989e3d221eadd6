"""One client connection: the socket loop around the sans-IO memkv.wire.connection.Connection.

The wire core says what to receive next and checks it (header bounds, HELLO, MAC, request id)
and builds every answer and ERROR frame; this module receives into the buffers it names, runs
requests on the engine and sends the bytes it gives.

Every size in a header is checked before memory is allocated for it; metadata memory and
payload buffers are charged to the server's buffer budget first (MKV-WIRE-007, MKV-CAP-004).
A put payload is received with recv_into straight into aligned piece buffers that the engine
writes to the device while the next piece arrives (StorageEngine.put_stream); a get answer's
header and metadata go out first and each block follows piece by piece with sendmsg from the
buffers the engine reads into, the next piece being read while this one is sent
(StorageEngine.read_stream, MKV-WIRE-015). Checksums are verified before a put commits; a
get's bytes are hashed as they pass and the client verifies them against the checksum of the
answer (MKV-WIRE-021), so a block found corrupted mid-stream reaches the client as CORRUPTED.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..blocks import BlockMeta
from ..buffers import advance, aligned_buffer
from ..errors import (
    BlockTooLarge,
    ErrorCode,
    LimitExceeded,
    MemkvError,
    PermissionDenied,
    ProtocolError,
    Timeout,
    Unavailable,
)
from ..sessions import check_fork, check_ttl
from ..store.engine import BlockRead, CommitBatch
from ..transport import SPEC_VERSION, GetResult, ItemResult
from ..version import __version__
from ..wire import messages as msg
from ..wire import records as rec
from ..wire.connection import Connection as WireConnection
from ..wire.connection import Grant, Hello, Request, ServerPolicy, Side
from ..wire.frames import (
    DEFAULT_MAX_META,
    PRE_AUTH_LIMITS,
    Header,
    WireLimits,
)
from ..wire.opcodes import REQUIRED_ROLE, Opcode, Role
from ..wire.session_answers import whole_chain

if TYPE_CHECKING:
    from .keyring import KeyRing
    from .service import MemkvServer

log = logging.getLogger("memkv.server")

FATAL_CODES = frozenset({ErrorCode.PROTOCOL_ERROR, ErrorCode.UNAUTHENTICATED, ErrorCode.UNSUPPORTED_VERSION,
                         ErrorCode.TIMEOUT})
MIN_PAYLOAD_RATE = 1024 * 1024  # bytes/s a sender must sustain inside one frame
POLL_TICK_S = 0.2
TIMEOUT_QUANTUM_US = 10_000  # socket timeouts may end this much after a deadline
_DISCARD = bytearray(256 * 1024)
_ZEROS = bytes(256 * 1024)
# Streamed put/get: piece size and piece buffers per request (the device works on one piece
# while the socket moves another).
STREAM_PIECE = 1024 * 1024
STREAM_BUFFERS = 3
# After refusing a frame and closing, how long and how much the server still reads and drops.
LINGER_S = 2.0
LINGER_BYTES = 64 * 1024 * 1024


class _Closed(Exception):
    """The peer went away or the connection must end now."""


@dataclasses.dataclass(slots=True)
class _Streamed:
    """An answer payload of `length` bytes that `send()` sends after the header and metadata."""

    length: int
    send: Callable[[], None]


Response = tuple[dict[str, Any], bytes, int, "list[memoryview] | _Streamed"]


class BufferBudget:
    """Bytes of request and answer buffers all connections may hold at once."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._cond = threading.Condition()

    def acquire(self, size: int, timeout: float) -> None:
        if size > self.total:
            raise LimitExceeded(f"request needs {size} bytes of buffers; the server allows {self.total}")
        with self._cond:
            if not self._cond.wait_for(lambda: self.used + size <= self.total, timeout):
                raise Unavailable("server buffer memory is busy; retry later")
            self.used += size

    def release(self, size: int) -> None:
        with self._cond:
            self.used -= size
            self._cond.notify_all()


class BufferPool:
    """Reuse of page-aligned buffers by exact size: no mmap and page faults per request."""

    def __init__(self, max_cached: int) -> None:
        self.max_cached = max_cached
        self.cached = 0
        self._free: dict[int, list[memoryview]] = {}
        self._lock = threading.Lock()

    def take(self, size: int) -> memoryview:
        with self._lock:
            free = self._free.get(size)
            if free:
                self.cached -= size
                return free.pop()
        return aligned_buffer(size)

    def give(self, buf: memoryview) -> None:
        size = len(buf)
        with self._lock:
            if self.cached + size <= self.max_cached:
                self._free.setdefault(size, []).append(buf)
                self.cached += size


class Connection:
    def __init__(self, server: MemkvServer, sock: socket.socket, peer: Any) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self.config = server.config
        self.engine = server.engine
        self.namespace = ""
        self.role = Role.READ
        self.key_id: str | None = None
        self.authenticated = False
        self.last_request_id = 0
        self.limits = PRE_AUTH_LIMITS
        self.wire = WireConnection(Side.SERVER)
        self._send_lock = threading.Lock()
        self.closing = False
        self._linger = False  # read what the peer still sends before closing (a refused frame)
        self._after_send: list[Callable[[], None]] = []
        self._poller: select.poll | None = None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Blocking socket; deadlines are kernel timeouts (SO_RCVTIMEO/SO_SNDTIMEO) set before a
        # call: one syscall each instead of Python's non-blocking mode (fcntl, poll, then the call).
        sock.settimeout(None)
        self._kernel_timeouts = {socket.SO_RCVTIMEO: -1, socket.SO_SNDTIMEO: -1}
        self._handlers: dict[Opcode, Callable[[Header, msg.MetaReader], Response]] = {
            Opcode.PUT: self._put, Opcode.GET: self._get, Opcode.STAT: self._stat, Opcode.EXISTS: self._exists,
            Opcode.LOOKUP: self._lookup, Opcode.RELEASE_LEASE: self._release_lease, Opcode.DELETE: self._delete,
            Opcode.CHILDREN: self._children,
            Opcode.SESSION_OPEN: self._session_open, Opcode.SESSION_APPEND: self._session_append,
            Opcode.SESSION_SUSPEND: self._session_suspend, Opcode.SESSION_RESUME: self._session_resume,
            Opcode.SESSION_FORK: self._session_fork, Opcode.SESSION_CLOSE: self._session_close,
            Opcode.SESSION_INFO: self._session_info, Opcode.INVALIDATE_KEYS: self._invalidate_keys,
            Opcode.INVALIDATE_PREFIX: self._invalidate_prefix, Opcode.INVALIDATE_SESSION: self._invalidate_session,
            Opcode.INVALIDATE_MODEL: self._invalidate_model,
            Opcode.INVALIDATE_NAMESPACE: self._invalidate_namespace, Opcode.CAPABILITIES: self._capabilities,
            Opcode.STATS: self._stats, Opcode.PING: self._ping, Opcode.GOODBYE: self._ping,
        }
        self._handlers.update(server.nixl.handlers(self))  # NIXL_HELLO/GET/PUT (memkv/server/nixl_service.py)

    # ---- socket plumbing ------------------------------------------------------------------
    def _timeout(self, option: int, deadline: float) -> bool:
        """Bound the next blocking call by `deadline`; False when it has passed."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        # rounded up to TIMEOUT_QUANTUM_US (never 0: that means "no timeout"), so most calls reuse it
        usec = max(1, -(-int(remaining * 1e6) // TIMEOUT_QUANTUM_US)) * TIMEOUT_QUANTUM_US
        current = self._kernel_timeouts[option]
        # A timeout set for an earlier, nearby deadline still serves: it only bounds one blocking
        # call, whose expiry leads back here. Kept while within [usec/2, usec], so that a frame's
        # header and its payload (deadlines a few seconds apart) do not set it twice per request.
        if not usec // 2 <= current <= usec:
            self.sock.setsockopt(socket.SOL_SOCKET, option, struct.pack("ll", *divmod(usec, 1_000_000)))
            self._kernel_timeouts[option] = usec
        return True

    def _recv_exact(self, view: memoryview, deadline: float) -> None:
        pos, size = 0, len(view)
        while pos < size:
            if not self._timeout(socket.SO_RCVTIMEO, deadline):
                raise Timeout("frame did not arrive in time")
            try:
                got = self.sock.recv_into(view[pos:] if pos else view, size - pos, socket.MSG_WAITALL)
            except (BlockingIOError, TimeoutError):
                continue  # the kernel timeout ran out: the deadline check above decides
            except OSError as exc:
                raise _Closed(str(exc)) from None
            if got == 0:
                raise _Closed("peer closed the connection mid-frame")
            pos += got

    def _payload_deadline(self, size: int) -> float:
        return time.monotonic() + self.config.frame_timeout_s + size / MIN_PAYLOAD_RATE

    def _discard_payload(self, size: int) -> None:
        deadline = self._payload_deadline(size)
        scratch = memoryview(_DISCARD)
        while size > 0:
            piece = min(size, len(scratch))
            # the scratch bytes are never read, so threads may share them
            self._recv_exact(scratch[:piece], deadline)
            size -= piece
            self.wire.payload_received(piece)

    def _send(self, views: Sequence[bytes | memoryview]) -> None:
        pending = [memoryview(v).cast("B") for v in views if len(v)]
        total = sum(len(v) for v in pending)
        deadline = self._payload_deadline(total)
        with self._send_lock:
            while pending:
                if not self._timeout(socket.SO_SNDTIMEO, deadline):
                    raise _Closed("peer does not read its answers")
                try:
                    sent = self.sock.sendmsg(pending[:512])
                except (BlockingIOError, TimeoutError):
                    continue  # the kernel timeout ran out: the deadline check above decides
                except OSError as exc:
                    raise _Closed(str(exc)) from None
                advance(pending, sent)

    def _respond(self, request: Header, args: dict[str, Any], items: bytes = b"", count: int = 0,
                 payload: Sequence[memoryview] | _Streamed = (), opcode: Opcode | None = None,
                 status: int = 0) -> None:
        length = payload.length if isinstance(payload, _Streamed) else sum(len(p) for p in payload)
        frame = self.wire.answer_frame(request, args, items, count, length, opcode, status)
        if isinstance(payload, _Streamed):
            self._send([frame])
            payload.send()
        else:
            self._send([frame, *payload])

    def _send_error(self, request: Header | None, exc: MemkvError) -> None:
        self.server.metrics.errors.labels(exc.code.name).inc()
        try:
            self._send([self.wire.error_frame(request, exc)])
        except (_Closed, OSError):
            pass

    # ---- main loop ----------------------------------------------------------------------------
    def run(self) -> None:
        metrics = self.server.metrics
        metrics.connections.inc()
        metrics.connections_total.inc()
        try:
            while self._wait_for_frame() and self._one_frame():
                pass
        except _Closed:
            pass
        except Exception:
            log.exception("connection %s failed", self.peer)
        finally:
            metrics.connections.dec()
            self.server.nixl.connection_closed(self)
            if self._linger:
                self._drain_before_close()
            try:
                self.sock.close()
            except OSError:
                pass

    def _drain_before_close(self) -> None:
        """Half-close, then read and drop what the peer still sends, for a bounded time and size.

        Closing a socket with unread bytes makes the kernel reset the connection: the peer, still
        sending the frame that was refused, fails its send and may never read the error answer
        that says why. A peer that reads the answer and closes ends this at once.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + LINGER_S
        left = LINGER_BYTES
        scratch = memoryview(_DISCARD)  # never read, so threads may share it
        with contextlib.suppress(_Closed, OSError):
            while left > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._readable(remaining):
                    return
                try:
                    got = self.sock.recv_into(scratch, 0, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                if got == 0:
                    return
                left -= got

    def _readable(self, timeout: float) -> bool:
        try:
            if self._poller is None:
                self._poller = select.poll()  # not select(): descriptors above 1023 must work too
                self._poller.register(self.sock, select.POLLIN)
            return bool(self._poller.poll(max(0, int(timeout * 1000))))
        except (OSError, ValueError):
            raise _Closed("socket closed") from None

    def _wait_for_frame(self) -> bool:
        """Wait for the first byte of the next frame; False on idle timeout or drain."""
        deadline = time.monotonic() + (self.config.idle_timeout_s if self.authenticated
                                       else self.config.hello_timeout_s)
        while True:
            if self.server.draining.is_set():
                return self._readable(0)
            if self._readable(POLL_TICK_S):
                return True
            if time.monotonic() >= deadline:
                if not self.authenticated:
                    self._send_error(None, Timeout("no HELLO in time"))
                return False

    def _one_frame(self) -> bool:
        """Receive one frame where the wire core says, answer it; False when the connection must close."""
        wire = self.wire
        header: Header | None = None
        started = time.monotonic()
        held = 0
        framed = False
        # Before HELLO the whole frame must arrive within the short hello deadline (MKV-SEC-051).
        frame_deadline = started + (self.config.frame_timeout_s if self.authenticated
                                    else min(self.config.frame_timeout_s, self.config.hello_timeout_s))
        try:
            self._recv_exact(wire.header_buffer(), frame_deadline)
            header = wire.receive_header()  # bounds before any allocation (MKV-WIRE-007)
            if header.meta_len:
                self.server.budget.acquire(header.meta_len, self.config.frame_timeout_s)
                held = header.meta_len
            self._recv_exact(wire.meta_buffer(), frame_deadline)
            event = wire.next_event()  # HELLO, or a request whose MAC and id are checked (MKV-WIRE-040 2-3)
            if isinstance(event, Hello):
                self._hello(event)
                return True
            if not isinstance(event, Request):
                raise ProtocolError(f"server received a {type(event).__name__}")  # a client's event: never here
            self.last_request_id = header.request_id
            framed = True
            return self._dispatch(event, started)
        except MemkvError as exc:
            if exc.code not in FATAL_CODES and framed:
                self._send_error(header, exc)
                self._discard_payload(wire.payload_left)
                return not self.closing
            log.info("closing connection %s: %s", self.peer, exc)
            self._send_error(header, exc)
            self._linger = True
            return False
        finally:
            if held:
                self.server.budget.release(held)

    def _dispatch(self, request: Request, started: float) -> bool:
        header = request.header
        op = header.opcode
        metrics = self.server.metrics
        handler = self._handlers.get(op)
        if handler is None:
            raise ProtocolError(f"{op.name} is not a request")
        self._after_send = []
        try:
            if self.server.draining.is_set():
                raise Unavailable("server is shutting down")
            needed = REQUIRED_ROLE.get(op)  # None: HELLO, ERROR and GOODBYE need no role
            if needed is not None and self.role < needed:
                raise PermissionDenied(f"{op.name} needs the {needed.name.lower()} role; "
                                       f"key {self.key_id} has {self.role.name.lower()}")
            reader = msg.MetaReader(request.meta, self.limits.max_items)
            args, items, count, payload = handler(header, reader)
        except MemkvError as exc:
            self._run_after_send()
            metrics.operations.labels(op.name, exc.code.name).inc()
            if exc.code in FATAL_CODES:  # e.g. a payload that stalled: the stream cannot be resynchronised
                raise
            self._send_error(header, exc)
            self._discard_payload(self.wire.payload_left)
            return not self.server.draining.is_set()
        except BaseException:
            self._run_after_send()
            raise
        try:
            self._respond(header, args, items, count, payload)
        finally:
            self._run_after_send()
        metrics.operations.labels(op.name, "OK").inc()
        metrics.latency.labels(op.name).observe(time.monotonic() - started)
        return op is not Opcode.GOODBYE

    def _run_after_send(self) -> None:
        callbacks, self._after_send = self._after_send, []
        for callback in callbacks:
            callback()

    # ---- HELLO (MKV-WIRE-008, MKV-WIRE-011): checked by the sans-IO memkv.wire.connection --------
    def _hello(self, hello: Hello) -> None:
        ring = self.server.keyring
        policy = ServerPolicy(None if ring is None else _grant_of(ring), self.config.hello_window_s,
                              self.server.remember_nonce)
        limits = WireLimits(DEFAULT_MAX_META, self.config.max_frame_payload, self.engine.limits.max_batch)
        answer, answer_meta = self.wire.server_hello(hello.header, hello.meta, policy, limits, {
            "idle_timeout_s": self.config.idle_timeout_s, "server": f"memkv/{__version__}",
            "spec_version": SPEC_VERSION})
        wire = self.wire
        self.namespace, self.role, self.key_id = wire.namespace, wire.role, wire.key_id
        self.limits, self.last_request_id = wire.limits, wire.last_request_id
        self.authenticated = True
        self._send([answer.pack(), answer_meta])

    # ---- data path -----------------------------------------------------------------------------
    def _stream_buffers(self, largest: int) -> tuple[list[memoryview], int]:
        """Piece buffers for one streamed request, charged to the budget; (buffers, bytes held).

        None on a mapped device, where the engine receives into and sends from the page cache."""
        if not largest or self.engine.streams_mapped:
            return [], 0
        piece = min(STREAM_PIECE, -(-largest // 4096) * 4096)
        held = piece * STREAM_BUFFERS
        self.server.budget.acquire(held, self.config.frame_timeout_s)
        return [self.server.pool.take(piece) for _ in range(STREAM_BUFFERS)], held

    def _release_buffers(self, buffers: list[memoryview], held: int) -> None:
        for buf in buffers:
            self.server.pool.give(buf)
        self.server.budget.release(held)

    def _put(self, header: Header, reader: msg.MetaReader) -> Response:
        limits = self.engine.limits
        items = reader.put_items(limits)
        reader.finish()
        if sum(length for _, length, _, _ in items) != header.payload_len:
            raise ProtocolError("payload length does not match the sum of the item lengths")
        largest = max((length for _, length, _, _ in items if 0 < length <= limits.max_block_size), default=0)
        buffers, held = self._stream_buffers(largest)
        results: list[ItemResult] = []
        batch = CommitBatch(results) if len(items) > 1 else None  # one index commit for the request
        try:
            for key, length, checksum, meta in items:
                if length == 0:
                    results.append(ItemResult(ErrorCode.INVALID_ARGUMENT, "payload is empty"))
                elif length > limits.max_block_size:
                    self._discard_payload(length)
                    exc = BlockTooLarge(f"payload of {length} bytes exceeds the maximum {limits.max_block_size}")
                    results.append(ItemResult(exc.code, exc.message))
                elif isinstance(meta, MemkvError):
                    self._discard_payload(length)
                    results.append(ItemResult(meta.code, meta.message))
                else:
                    results.append(self._put_streamed(key, length, checksum, meta, buffers, batch))
            self.server.metrics.bytes.labels("in").inc(header.payload_len)
        finally:
            if batch is not None:
                self.engine.commit_batch(batch)  # before the answer, and also when the socket failed
            self._release_buffers(buffers, held)
        self._count_items(header.opcode, results)
        return {}, msg.pack_results(results), len(results), []

    def _put_streamed(self, key: bytes, length: int, checksum: int, meta: BlockMeta,
                      buffers: list[memoryview], batch: CommitBatch | None) -> ItemResult:
        """One item: received piece by piece into `buffers` while the engine writes the previous piece."""
        received = [0]
        failed: list[BaseException] = []
        deadline = self._payload_deadline(length)

        def fill(view: memoryview) -> None:
            try:
                self._recv_exact(view, deadline)
            except BaseException as exc:
                failed.append(exc)
                raise
            received[0] += len(view)
            self.wire.payload_received(len(view))

        try:
            return self.engine.put_stream(self.namespace, key, length, fill, buffers, meta, checksum, batch=batch)
        except MemkvError as exc:
            if failed:
                raise  # the socket failed: the connection ends
            self._discard_payload(length - received[0])
            return ItemResult(exc.code, exc.message)

    def _count_items(self, op: Opcode, results: Sequence[ItemResult]) -> None:
        for result in results:
            self.server.metrics.items.labels(op.name, result.status.name).inc()

    def _get(self, header: Header, reader: msg.MetaReader) -> Response:
        requests = reader.get_items()
        reader.finish()
        pinned = contextlib.ExitStack()
        self._after_send.append(pinned.close)
        results: list[GetResult] = []
        blocks: list[BlockRead] = []
        for key, capacity in requests:
            try:
                block = self.engine.open_read(self.namespace, key, capacity)
            except MemkvError as exc:
                results.append(GetResult(exc.code, exc.message))
                continue
            pinned.callback(self.engine.close_read, block)
            blocks.append(block)
            results.append(block.result())
        total = sum(r.length for r in results if r.ok)
        if total > self.limits.max_payload:
            raise LimitExceeded(f"answer of {total} bytes exceeds the frame payload limit {self.limits.max_payload}")
        self._count_items(header.opcode, results)
        if not blocks:
            return {}, msg.pack_get_results(results), len(results), []
        buffers, held = self._stream_buffers(max(b.result().length for b in blocks))
        self._after_send.append(lambda: self._release_buffers(buffers, held))

        def send() -> None:
            for block in blocks:
                self._send_block(block, buffers)
            self.server.metrics.bytes.labels("out").inc(total)

        return {}, msg.pack_get_results(results), len(results), _Streamed(total, send)

    def _send_block(self, block: BlockRead, buffers: list[memoryview]) -> None:
        """Send one block of a get answer while its next pieces are read from the device."""
        sent = [0]

        def emit(view: memoryview) -> None:
            self._send([view])
            sent[0] += len(view)

        try:
            self.engine.read_stream(block, buffers, emit)
        except MemkvError as exc:
            log.error("get of %s failed after its answer started: %s", block.key.hex(), exc)
            self.server.metrics.errors.labels(exc.code.name).inc()
            if exc.code is not ErrorCode.CORRUPTED:
                # A device error, not bad bytes: zeros would make the client report CORRUPTED for
                # a block that is kept and may read fine next time. Closing the connection makes
                # it UNAVAILABLE (MKV-ERR-010); the client's pool reconnects.
                raise _Closed(f"device error while sending {block.key.hex()}") from None
            # The answer already promised these bytes. Whatever is left goes out as zeros: the
            # client's checksum check reports the item CORRUPTED (MKV-WIRE-021).
            left = block.result().length - sent[0]
            while left > 0:
                piece = min(left, len(_ZEROS))
                self._send([memoryview(_ZEROS)[:piece]])
                left -= piece

    def _stat(self, header: Header, reader: msg.MetaReader) -> Response:
        keys = reader.keys()
        reader.finish()
        infos = self.engine.stat(self.namespace, keys)
        return {}, msg.pack_stat_results(infos), len(infos), []

    def _exists(self, header: Header, reader: msg.MetaReader) -> Response:
        keys = reader.keys()
        reader.finish()
        flags = self.engine.exists(self.namespace, keys)
        return {}, msg.pack_flags(flags), len(flags), []

    def _lookup(self, header: Header, reader: msg.MetaReader) -> Response:
        args = rec.decode(reader, rec.LookupArgs)
        keys = reader.keys()
        reader.finish()
        result = self.engine.lookup(self.namespace, keys, args.lease_ms)
        if self.server.access_log is not None:
            self.server.access_log.lookup(self.namespace, keys)
        return rec.lookup_answer(result), b"", 0, []

    def _release_lease(self, header: Header, reader: msg.MetaReader) -> Response:
        self.engine.release_lease(self.namespace, rec.decode(reader, rec.ReleaseLeaseArgs).lease_id)
        return {}, b"", 0, []

    def _delete(self, header: Header, reader: msg.MetaReader) -> Response:
        keys = reader.keys()
        reader.finish()
        results = self.engine.delete(self.namespace, keys)
        self._count_items(header.opcode, results)
        return {}, msg.pack_results(results), len(results), []

    def _children(self, header: Header, reader: msg.MetaReader) -> Response:
        after = rec.decode(reader, rec.ChildrenArgs).after
        parents = reader.keys()
        reader.finish()
        page = self.engine.children(self.namespace, parents, after, self.limits.max_items)
        next_key = None if page.next is None else rec.Hex16(page.next)
        return rec.encode(rec.ChildrenAnswer(next_key)), msg.pack_keys(page.keys), len(page.keys), []

    # ---- sessions ------------------------------------------------------------------------------
    def _session(self, info: Any) -> Response:
        return rec.session_answer(info), msg.pack_keys(info.keys), len(info.keys), []

    def _fitting(self, answer_keys: Callable[[], int], apply: Callable[[], Any]) -> Response:
        """`apply` a session operation whose answer has `answer_keys()` keys.

        A peer of minor 0 or 1 takes at most max_items of them: the count is checked and the
        operation applied as one step under the engine lock, so an answer that cannot be sent
        is refused before anything changes (MKV-WIRE-051).
        """
        if whole_chain(self.wire.minor):
            return self._session(apply())
        with self.engine.exclusive():
            count = answer_keys()
            if count > self.limits.max_items:
                raise LimitExceeded(f"the answer would carry {count} session keys; a peer of wire version "
                                    f"1.{self.wire.minor} takes at most {self.limits.max_items} (MKV-WIRE-051)")
            return self._session(apply())

    def _held(self, session_id: str) -> int:
        return len(self.engine.session_info(self.namespace, session_id).keys)

    def _session_keys(self, reader: msg.MetaReader) -> list[bytes]:
        if reader.count > self.engine.limits.max_session_blocks:
            raise LimitExceeded(f"a session holds at most {self.engine.limits.max_session_blocks} blocks")
        keys = reader.keys()
        reader.finish()
        return keys

    def _session_open(self, header: Header, reader: msg.MetaReader) -> Response:
        args = rec.decode(reader, rec.SessionOpenArgs)
        keys = self._session_keys(reader)  # within max_items: the request carried them
        return self._session(self.engine.open_session(self.namespace, args.ttl_s, keys, args.fingerprint,
                                                      args.session_id, args.foreign))

    def _session_append(self, header: Header, reader: msg.MetaReader) -> Response:
        args = rec.decode(reader, rec.SessionAppendArgs)
        keys = self._session_keys(reader)
        return self._fitting(lambda: self._held(args.session_id) + len(keys),
                             lambda: self.engine.append(self.namespace, args.session_id, keys, args.foreign))

    def _session_suspend(self, header: Header, reader: msg.MetaReader) -> Response:
        args = rec.decode(reader, rec.SessionSuspendArgs)
        check_ttl(args.pause_ttl_s, "pause_ttl_s")  # arguments before the operation (MKV-WIRE-040)
        return self._fitting(lambda: self._held(args.session_id),
                             lambda: self.engine.suspend(self.namespace, args.session_id, args.pause_ttl_s))

    def _session_resume(self, header: Header, reader: msg.MetaReader) -> Response:
        args = rec.decode(reader, rec.SessionResumeArgs)
        check_fork(args.prefix_len, None)  # arguments before the operation (MKV-WIRE-040)
        return self._fitting(lambda: self._held(args.session_id),
                             lambda: self.engine.resume(self.namespace, args.session_id, args.prefix_len).session)

    def _session_fork(self, header: Header, reader: msg.MetaReader) -> Response:
        args = rec.decode(reader, rec.SessionForkArgs)
        check_fork(args.prefix_len, args.ttl_s)

        def answer_keys() -> int:
            held = self._held(args.session_id)
            return held if args.prefix_len is None else min(held, args.prefix_len)

        return self._fitting(answer_keys,
                             lambda: self.engine.fork(self.namespace, args.session_id, args.prefix_len, args.ttl_s,
                                                      args.new_session_id))

    def _session_close(self, header: Header, reader: msg.MetaReader) -> Response:
        session_id = self._session_id(reader)
        return self._fitting(lambda: self._held(session_id),
                             lambda: self.engine.close_session(self.namespace, session_id))

    def _session_info(self, header: Header, reader: msg.MetaReader) -> Response:
        session_id = self._session_id(reader)
        return self._fitting(lambda: self._held(session_id),
                             lambda: self.engine.session_info(self.namespace, session_id))

    @staticmethod
    def _session_id(reader: msg.MetaReader) -> str:
        return rec.decode(reader, rec.SessionArgs).session_id

    # ---- invalidation --------------------------------------------------------------------------
    def _invalidate_keys(self, header: Header, reader: msg.MetaReader) -> Response:
        keys = reader.keys()
        reader.finish()
        return self._count(self.engine.invalidate_keys(self.namespace, keys))

    def _invalidate_prefix(self, header: Header, reader: msg.MetaReader) -> Response:
        key = rec.decode(reader, rec.InvalidatePrefixArgs).key
        return self._count(self.engine.invalidate_prefix(self.namespace, key))

    def _invalidate_session(self, header: Header, reader: msg.MetaReader) -> Response:
        return self._count(self.engine.invalidate_session(self.namespace, self._session_id(reader)))

    def _invalidate_model(self, header: Header, reader: msg.MetaReader) -> Response:
        fingerprint = rec.decode(reader, rec.InvalidateModelArgs).fingerprint
        return self._count(self.engine.invalidate_model(self.namespace, fingerprint))

    def _invalidate_namespace(self, header: Header, reader: msg.MetaReader) -> Response:
        return self._count(self.engine.invalidate_namespace(self.namespace))

    @staticmethod
    def _count(count: int) -> Response:
        return rec.encode(rec.CountAnswer(count)), b"", 0, []

    # ---- target --------------------------------------------------------------------------------
    def _capabilities(self, header: Header, reader: msg.MetaReader) -> Response:
        caps = self.server.capabilities()
        return caps.to_dict() | {"wire_limits": self.limits.to_dict()}, b"", 0, []

    def _stats(self, header: Header, reader: msg.MetaReader) -> Response:
        return self.server.namespace_stats(self.namespace), b"", 0, []

    def _ping(self, header: Header, reader: msg.MetaReader) -> Response:
        return {}, b"", 0, []


def _grant_of(ring: KeyRing) -> Callable[[str], Grant | None]:
    def lookup(key_id: str) -> Grant | None:
        key = ring.get(key_id)
        return None if key is None else Grant(key.secret, key.namespace, key.role)

    return lookup


__all__ = ["BufferBudget", "Connection"]
