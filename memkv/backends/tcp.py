"""The memkv+tcp client: the transport interface over signed, pipelined wire frames.

`memkv.connect("memkv+tcp://host:9900", namespace="team-a", key="<key id>:<secret>")`.
Each pooled connection authenticates with HELLO, then sends requests with increasing request
ids while a reader thread matches answers to them (pipelining, MKV-WIRE-013). Framing, signing,
verification and the handshake are the sans-IO memkv.wire.connection.Connection's; this module
is its socket loop. A get answer's payload is received with recv_into straight into the caller's
buffer and verified against its checksum before the result is returned (MKV-BLK-006).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..blocks import Limits
from ..buffers import BufferLike, advance, readable_view, writable_view
from ..checksum import payload_checksum, payload_hasher
from ..children import ChildPage
from ..credentials import checked_credential, parse_credential
from ..errors import (
    ErrorCode,
    InvalidArgument,
    MemkvError,
    ProtocolError,
    Timeout,
    Unavailable,
    Unsupported,
    error_for,
)
from ..keys import NO_FINGERPRINT, check_fingerprint, check_key
from ..namespaces import check_namespace
from ..sessions import SessionInfo
from ..transport import (
    BlockInfo,
    Capabilities,
    GetResult,
    ItemResult,
    LookupResult,
    PutItem,
    ResumeResult,
    Transport,
)
from ..version import __version__
from ..wire import messages as msg
from ..wire import records as rec
from ..wire.connection import Answer, Credential, HelloAnswered, Refused, Side
from ..wire.connection import Connection as WireConnection
from ..wire.frames import Header
from ..wire.opcodes import SINCE_MINOR, Opcode
from ..wire.session_answers import takes_session_parts

log = logging.getLogger("memkv.tcp")

DEFAULT_PORT = 9900
# A get payload is received in pieces of this size, each hashed as soon as it has arrived
# (while it is still in cache and while the kernel keeps receiving the next one).
RECV_PIECE = 1024 * 1024
T = TypeVar("T")
Reply = tuple[Header, msg.MetaReader, Any]


@dataclasses.dataclass(slots=True)
class _Pending:
    future: concurrent.futures.Future[Reply]
    opcode: Opcode
    get_views: list[memoryview] | None = None


def _parse_credential(key: str | tuple[str, bytes] | None) -> tuple[str, bytes] | None:
    if key is None or isinstance(key, tuple):
        return key
    return parse_credential(key)


class TcpConnection:
    """One authenticated connection; thread-safe; many requests may be in flight."""

    def __init__(self, host: str, port: int, namespace: str, credential: tuple[str, bytes] | None,
                 connect_timeout: float = 10.0, send_timeout: float = 60.0) -> None:
        self.namespace = namespace
        self.address = (host, port)
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise Unavailable(f"cannot connect to memkv server {host}:{port}: {exc}") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._delivering = False  # the reader is receiving an answer (maybe into a caller's buffer)
        self._pending_lock = threading.Lock()
        self.closed = False
        self._failure: MemkvError | None = None
        self.wire = WireConnection(Side.CLIENT)  # state, keys and HELLO: memkv.wire.connection (sans-IO)
        try:
            self.server_info = self._hello(credential, connect_timeout)
        except BaseException:
            self.sock.close()
            raise
        self.limits = self.wire.limits  # as the HELLO answer announced them
        self.sock.settimeout(None)
        # A server that stops reading must not block a sender (and the send lock) forever.
        seconds = max(1, int(send_timeout))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
        self._reader = threading.Thread(target=self._read_loop, name="memkv-tcp-reader", daemon=True)
        self._reader.start()

    # ---- socket loop ------------------------------------------------------------------------
    def _recv_into(self, view: memoryview) -> None:
        pos, size = 0, len(view)
        while pos < size:
            # MSG_WAITALL: one call (and one wake-up of this thread) per view on a blocking socket
            got = self.sock.recv_into(view[pos:] if pos else view, size - pos, socket.MSG_WAITALL)
            if got == 0:
                raise Unavailable("server closed the connection")
            pos += got

    def _recv_frame(self) -> Answer | Refused | HelloAnswered:
        """Header and metadata into the wire core's buffers; the checked frame (its payload follows)."""
        wire = self.wire
        self._recv_into(wire.header_buffer())
        if wire.header_received().startswith(b"HTTP/"):
            raise ProtocolError(f"{self.address[0]}:{self.address[1]} is an HTTP endpoint (the admin API?), "
                                "not a memkv wire protocol port")
        wire.receive_header()
        self._recv_into(wire.meta_buffer())
        event = wire.next_event()
        if isinstance(event, (Answer, Refused, HelloAnswered)):
            return event
        raise ProtocolError(f"client received a {type(event).__name__}")  # a server's event: never here

    def _hello(self, credential: tuple[str, bytes] | None, timeout: float) -> dict[str, Any]:
        """The handshake of memkv.wire.connection (sans-IO) over this socket."""
        wire = self.wire
        frame = wire.client_hello(self.namespace, None if credential is None else Credential(*credential),
                                  f"memkv-py/{__version__}")
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(frame)
            answer = self._recv_frame()
        except TimeoutError:
            raise Timeout("server did not answer HELLO in time") from None
        except OSError as exc:
            raise Unavailable(f"connection failed during HELLO: {exc}") from None
        if not isinstance(answer, HelloAnswered):
            raise ProtocolError("server did not answer HELLO")
        return answer.args

    # ---- requests ----------------------------------------------------------------------------
    def in_flight(self) -> int:
        """Requests sent and not yet answered, counting one whose answer is being received."""
        return len(self._pending) + self._delivering

    def request(self, opcode: Opcode, args: rec.Args | None = None, items: bytes = b"", count: int = 0,
                payload: Sequence[memoryview] = (), get_views: list[memoryview] | None = None
                ) -> concurrent.futures.Future[Reply]:
        future: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        payload_len = sum(len(p) for p in payload)
        with self._send_lock:
            if self.closed:
                raise self._failure or Unavailable("connection is closed")
            request_id, frame = self.wire.request_frame(opcode, args, items, count, payload_len)
            with self._pending_lock:
                self._pending[request_id] = _Pending(future, opcode, get_views)
            try:
                self._sendmsg([frame, *payload])
            except OSError as exc:
                self._fail(Unavailable(f"connection lost: {exc}"))
        return future

    def _sendmsg(self, views: list[bytes | memoryview]) -> None:
        pending = [memoryview(v).cast("B") for v in views if len(v)]
        while pending:
            sent = self.sock.sendmsg(pending[:512])
            advance(pending, sent)

    # ---- answers -----------------------------------------------------------------------------
    def _read_loop(self) -> None:
        current: _Pending | None = None  # popped from _pending while its answer is received
        try:
            while True:
                event = self._recv_frame()
                if isinstance(event, HelloAnswered):
                    raise ProtocolError("a second HELLO answer")
                header = event.header
                with self._pending_lock:
                    pending = self._pending.pop(header.request_id, None)
                    self._delivering = pending is not None
                if pending is None:
                    if isinstance(event, Refused):  # an ERROR for no request: the server closes
                        raise event.error if event.error.message else error_for(
                            event.error.code, "server closed the connection")
                    raise ProtocolError(f"answer to unknown request id {header.request_id}")
                current = pending
                try:
                    self._deliver(event, pending)
                finally:
                    self._delivering = False
                current = None
        except MemkvError as exc:
            error: MemkvError = exc if exc.code is not ErrorCode.UNAVAILABLE else Unavailable(exc.message)
        except OSError as exc:
            error = Unavailable(f"connection lost: {exc}")
        except Exception as exc:
            error = ProtocolError(f"client reader failed: {exc!r}")
        self._fail(error)
        if current is not None and not current.future.done():  # the connection died inside its answer
            current.future.set_exception(error_for(error.code, error.message))

    def _deliver(self, event: Answer | Refused, pending: _Pending) -> None:
        if isinstance(event, Refused):
            pending.future.set_exception(event.error)
            return
        header, reader = event.header, event.reader
        if header.opcode is not pending.opcode:
            raise ProtocolError(f"answer opcode {header.opcode.name} does not match {pending.opcode.name}")
        extra: Any = None
        if pending.opcode is Opcode.GET:
            extra = self._receive_get(header, reader, pending.get_views or [])
        elif header.payload_len:
            raise ProtocolError("unexpected payload")
        pending.future.set_result((header, reader, extra))

    def _receive_get(self, header: Header, reader: msg.MetaReader, views: list[memoryview]) -> list[GetResult]:
        results = reader.get_results(Limits(max_user_meta=msg.MAX_BLOCK_META))
        reader.finish()
        if len(results) != len(views):
            raise ProtocolError("get answer has a different number of items than the request")
        expected = sum(r.length for r in results if r.ok)
        if expected != header.payload_len:
            raise ProtocolError("get answer payload does not match its item lengths")
        out: list[GetResult] = []
        for result, view in zip(results, views, strict=True):
            if not result.ok:
                out.append(result)
                continue
            if result.length > len(view):
                raise ProtocolError("server sent more bytes than the buffer holds")
            if self._recv_hashed(view[: result.length]) != result.checksum:
                out.append(GetResult(ErrorCode.CORRUPTED, "payload failed checksum verification after transfer"))
            else:
                out.append(result)
        return out

    def _recv_hashed(self, target: memoryview) -> int:
        """Receive straight into the caller's buffer, hashing each piece as it lands; the checksum."""
        hasher = payload_hasher()
        done, size = 0, len(target)
        while done < size:
            end = min(done + RECV_PIECE, size)
            piece = target[done:end]
            self._recv_into(piece)
            self.wire.payload_received(len(piece))
            hasher.update(piece)
            done = end
        return hasher.intdigest()

    def _fail(self, error: MemkvError) -> None:
        self.closed = True
        self._failure = self._failure or error
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(error_for(error.code, error.message))
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        if not self.closed:
            self._fail(Unavailable("connection is closed"))
        self._reader.join(timeout=5)
        self.sock.close()

    def abandon(self, error: MemkvError) -> None:
        """Give up on this connection after a request timed out: its stream cannot be resynchronised,
        and once this returns the reader thread no longer writes into any caller's buffer."""
        self._fail(error)
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)



def _gather(futures: list[concurrent.futures.Future[T]], combine: Callable[[list[T]], Any]
            ) -> concurrent.futures.Future[Any]:
    """A future of combine(results) once every future is done; the first error wins."""
    out: concurrent.futures.Future[Any] = concurrent.futures.Future()
    remaining = [len(futures)]
    lock = threading.Lock()

    def done(_: concurrent.futures.Future[T]) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0]:
                return
        try:
            out.set_result(combine([f.result() for f in futures]))
        except BaseException as exc:
            out.set_exception(exc)

    if not futures:
        out.set_result(combine([]))
    for future in futures:
        future.add_done_callback(done)
    return out


class TcpTransport(Transport):
    """A namespace of a memkv server over a pool of TCP connections."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, namespace: str = "default",
                 key: str | tuple[str, bytes] | None = None, pool_size: int = 4, timeout: float = 120.0,
                 connect_timeout: float = 10.0) -> None:
        self.namespace = check_namespace(namespace)
        self.host, self.port = host, port
        self._credential = _parse_credential(key)
        self.pool_size = max(1, int(pool_size))
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self._conns: list[TcpConnection] = []
        self._lock = threading.Lock()
        first = self._open()
        self._conns.append(first)
        caps = self._call(Opcode.CAPABILITIES)[1].args
        self._caps = msg.capabilities_from(caps)
        self.limits: Limits = self._caps.limits
        self.shard_group = self._caps.shard_group  # the server's group, when it is one shard of one (MKV-CLU-060)

    def _open(self) -> TcpConnection:
        return TcpConnection(self.host, self.port, self.namespace, self._credential, self.connect_timeout,
                             send_timeout=self.timeout)

    def connection(self) -> TcpConnection:
        """The least busy pooled connection (a new one while the pool has room and all are busy)."""
        with self._lock:
            if self._closed:
                raise Unavailable("transport is closed")
            self._conns = [c for c in self._conns if not c.closed]
            best = min(self._conns, key=TcpConnection.in_flight, default=None)
            if best is not None and (best.in_flight() == 0 or len(self._conns) >= self.pool_size):
                return best
        conn = self._open()
        with self._lock:
            self._conns.append(conn)
        return conn

    def _request(self, opcode: Opcode, args: rec.Args | None = None, items: bytes = b"", count: int = 0,
                 payload: Sequence[memoryview] = (), get_views: list[memoryview] | None = None
                 ) -> concurrent.futures.Future[Reply]:
        return self.connection().request(opcode, args, items, count, payload, get_views)

    def wait(self, future: concurrent.futures.Future[T]) -> T:
        """The answer of a request, within the transport's timeout."""
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            error = Timeout(f"no answer within {self.timeout} s; the outcome is unknown")
            # The request's connection cannot be told apart from a merely busy one here, and no
            # connection whose answer is late may keep reading into callers' buffers: give up
            # on every connection with requests in flight (the pool reconnects on demand).
            with self._lock:
                stuck = [c for c in self._conns if c.in_flight()]
            for conn in stuck:
                conn.abandon(error)
            raise error from None

    def _call(self, opcode: Opcode, args: rec.Args | None = None, keys: Sequence[bytes] = ()) -> Reply:
        return self.wait(self._request(opcode, args, msg.pack_keys(keys), len(keys)))

    # ---- blocks --------------------------------------------------------------------------------
    def put_async(self, items: Sequence[PutItem]) -> concurrent.futures.Future[list[ItemResult]]:
        items = list(items)
        self.limits.check_batch(len(items))
        results: list[ItemResult | None] = [None] * len(items)
        frames: list[list[tuple[int, bytes, memoryview]]] = [[]]
        frame_bytes = 0
        max_payload = self._conns[0].limits.max_payload if self._conns else 256 * 1024 * 1024
        for i, item in enumerate(items):
            try:
                key = check_key(item.key)
                view = readable_view(item.payload)
                self.limits.check_payload_size(len(view))
                item.meta.validate(self.limits)
                checksum = payload_checksum(view) if item.checksum is None else item.checksum
                record = msg.pack_put_item(key, len(view), checksum, item.meta.encode())
            except MemkvError as exc:
                results[i] = ItemResult(exc.code, exc.message)
                continue
            if frames[-1] and frame_bytes + len(view) > max_payload:
                frames.append([])
                frame_bytes = 0
            frames[-1].append((i, record, view))
            frame_bytes += len(view)
        futures = []
        for frame in frames:
            if frame:
                futures.append(self._request(Opcode.PUT, None, b"".join(r for _, r, _ in frame), len(frame),
                                             [v for _, _, v in frame]))

        def combine(replies: list[Reply]) -> list[ItemResult]:
            for frame, (_, reader, _) in zip([f for f in frames if f], replies, strict=True):
                answers = reader.results()
                if len(answers) != len(frame):
                    raise ProtocolError("put answer has a different number of items than the request")
                for (i, _, _), answer in zip(frame, answers, strict=True):
                    results[i] = answer
            return [r or ItemResult(ErrorCode.INTERNAL) for r in results]

        return _gather(futures, combine)

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        return self.wait(self.put_async(items))

    def get_into_async(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]
                       ) -> concurrent.futures.Future[list[GetResult]]:
        keys, buffers = list(keys), list(buffers)
        self.limits.check_batch(len(keys))
        if len(keys) != len(buffers):
            raise InvalidArgument(f"{len(keys)} keys but {len(buffers)} buffers")
        results: list[GetResult | None] = [None] * len(keys)
        frames: list[list[tuple[int, bytes, memoryview]]] = [[]]
        frame_bytes = 0
        max_payload = self._conns[0].limits.max_payload if self._conns else 256 * 1024 * 1024
        for i, (key, buffer) in enumerate(zip(keys, buffers, strict=True)):
            try:
                checked = check_key(key)
                view = writable_view(buffer)
            except MemkvError as exc:
                results[i] = GetResult(exc.code, exc.message)
                continue
            capacity = min(len(view), self.limits.max_block_size)
            if frames[-1] and frame_bytes + capacity > max_payload:
                frames.append([])
                frame_bytes = 0
            frames[-1].append((i, msg.pack_get_item(checked, len(view)), view))
            frame_bytes += capacity
        sent = [f for f in frames if f]
        futures = [self._request(Opcode.GET, None, b"".join(r for _, r, _ in frame), len(frame),
                                 get_views=[v for _, _, v in frame]) for frame in sent]

        def combine(replies: list[Reply]) -> list[GetResult]:
            for frame, (_, _, answers) in zip(sent, replies, strict=True):
                for (i, _, _), answer in zip(frame, answers, strict=True):
                    results[i] = answer
            return [r or GetResult(ErrorCode.INTERNAL) for r in results]

        return _gather(futures, combine)

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        return self.wait(self.get_into_async(keys, buffers))

    def _checked_keys(self, keys: Sequence[bytes]) -> list[bytes]:
        self.limits.check_batch(len(keys))
        return [check_key(k) for k in keys]

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        checked = self._checked_keys(keys)
        _, reader, _ = self._call(Opcode.STAT, None, checked)
        infos = reader.stat_results(checked, Limits(max_user_meta=msg.MAX_BLOCK_META))
        reader.finish()
        return infos

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        checked = self._checked_keys(keys)
        _, reader, _ = self._call(Opcode.EXISTS, None, checked)
        flags = reader.flags()
        if len(flags) != len(checked):
            raise ProtocolError("exists answer has a different number of items than the request")
        return flags

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        checked = self._checked_keys(keys)
        if not isinstance(lease_ms, int) or isinstance(lease_ms, bool):
            raise InvalidArgument("lease_ms must be an integer")
        _, reader, _ = self._call(Opcode.LOOKUP, rec.LookupArgs(lease_ms), checked)
        return rec.lookup_from(reader)

    def release_lease(self, lease_id: str) -> None:
        if not isinstance(lease_id, str):
            from ..errors import UnknownLease

            raise UnknownLease(f"lease {lease_id!r} does not exist or has expired")
        self._call(Opcode.RELEASE_LEASE, rec.ReleaseLeaseArgs(lease_id))

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        keys = list(keys)
        self.limits.check_batch(len(keys))
        results: list[ItemResult | None] = [None] * len(keys)
        valid: list[tuple[int, bytes]] = []
        for i, key in enumerate(keys):
            try:
                valid.append((i, check_key(key)))
            except MemkvError as exc:
                results[i] = ItemResult(exc.code, exc.message)
        if valid:
            _, reader, _ = self._call(Opcode.DELETE, None, [k for _, k in valid])
            for (i, _), answer in zip(valid, reader.results(), strict=True):
                results[i] = answer
        return [r or ItemResult(ErrorCode.INTERNAL) for r in results]

    def children(self, parents: Sequence[bytes], after: bytes | None = None) -> ChildPage:
        checked = self._checked_keys(parents)
        conn = self.connection()
        self._check_version(conn, Opcode.CHILDREN)
        start = None if after is None else rec.Hex16(check_key(after))
        _, reader, _ = self.wait(conn.request(Opcode.CHILDREN, rec.ChildrenArgs(start), msg.pack_keys(checked),
                                              len(checked)))
        next_key = rec.decode(reader, rec.ChildrenAnswer).next
        keys = reader.keys()
        reader.finish()
        return ChildPage(tuple(keys), next_key)

    @staticmethod
    def speaks(conn: TcpConnection, opcode: Opcode) -> bool:
        """Whether the wire minor this connection settled at HELLO has `opcode` (MKV-WIRE-045)."""
        return conn.wire.minor >= SINCE_MINOR.get(opcode, 0)

    @classmethod
    def _check_version(cls, conn: TcpConnection, opcode: Opcode) -> None:
        """Never send an opcode the settled version lacks (MKV-WIRE-045)."""
        if not cls.speaks(conn, opcode):
            raise Unsupported(f"{opcode.name} needs wire 1.{SINCE_MINOR[opcode]}; the server at {conn.address[0]}:"
                              f"{conn.address[1]} speaks 1.{conn.wire.minor}")

    # ---- sessions -------------------------------------------------------------------------------
    def _session(self, opcode: Opcode, args: rec.Args, keys: Sequence[bytes] = ()) -> SessionInfo:
        _, reader, _ = self._call(opcode, args, [check_key(k) for k in keys])
        return rec.session_from(reader)

    @staticmethod
    def _sid(session_id: str) -> str:
        if not isinstance(session_id, str):
            from ..errors import UnknownSession

            raise UnknownSession("session id must be a string")
        return session_id

    @staticmethod
    def _number(value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgument(f"{name} must be a number")
        return float(value)

    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (),
                     fingerprint: bytes = NO_FINGERPRINT) -> SessionInfo:
        ttl = self._number(ttl_s, "ttl_s")
        fp = check_fingerprint(fingerprint)
        return self._session(Opcode.SESSION_OPEN, rec.SessionOpenArgs(_json_float(ttl), rec.Hex16(fp)), keys)

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        return self._session(Opcode.SESSION_APPEND, rec.SessionAppendArgs(self._sid(session_id)), keys)

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        pause = self._number(pause_ttl_s, "pause_ttl_s")
        return self._session(Opcode.SESSION_SUSPEND, rec.SessionSuspendArgs(self._sid(session_id), _json_float(pause)))

    def resume(self, session_id: str) -> ResumeResult:
        info = self._session(Opcode.SESSION_RESUME, rec.SessionResumeArgs(self._sid(session_id)))
        return ResumeResult(info, info.keys)

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        if prefix_len is not None and (isinstance(prefix_len, bool) or not isinstance(prefix_len, int)):
            raise InvalidArgument("prefix_len must be an integer")
        ttl = None if ttl_s is None else _json_float(self._number(ttl_s, "ttl_s"))
        return self._session(Opcode.SESSION_FORK, rec.SessionForkArgs(self._sid(session_id), prefix_len, ttl))

    def close_session(self, session_id: str) -> SessionInfo:
        return self._session(Opcode.SESSION_CLOSE, rec.SessionArgs(self._sid(session_id)))

    # ---- parts of a cluster session (memkv.transport_features.SpansSessions, MKV-WIRE-052..055) --
    def _spanning(self) -> TcpConnection:
        """A connection that settled minor 2 or later; UNSUPPORTED otherwise, before sending (MKV-WIRE-045)."""
        conn = self.connection()
        if not takes_session_parts(conn.wire.minor):
            raise Unsupported(f"{self.host}:{self.port} speaks wire 1.{conn.wire.minor}; the parts of a "
                                     "cluster session need 1.2 (MKV-WIRE-055)")
        return conn

    def _part(self, opcode: Opcode, args: rec.Args, keys: Sequence[bytes] = ()) -> SessionInfo:
        conn = self._spanning()
        _, reader, _ = self.wait(conn.request(opcode, args, msg.pack_keys([check_key(k) for k in keys]), len(keys)))
        return rec.session_from(reader)

    def open_part(self, session_id: str, ttl_s: float, keys: Sequence[bytes], fingerprint: bytes,
                  foreign: bool) -> SessionInfo:
        ttl = _json_float(self._number(ttl_s, "ttl_s"))
        args = rec.SessionOpenArgs(ttl, rec.Hex16(check_fingerprint(fingerprint)), self._sid(session_id), foreign)
        return self._part(Opcode.SESSION_OPEN, args, keys)

    def append_part(self, session_id: str, keys: Sequence[bytes], foreign: bool) -> SessionInfo:
        return self._part(Opcode.SESSION_APPEND, rec.SessionAppendArgs(self._sid(session_id), foreign), keys)

    def resume_part(self, session_id: str, prefix_len: int) -> SessionInfo:
        return self._part(Opcode.SESSION_RESUME, rec.SessionResumeArgs(self._sid(session_id), prefix_len))

    def fork_part(self, session_id: str, new_session_id: str, prefix_len: int | None,
                  ttl_s: float | None) -> SessionInfo:
        ttl = None if ttl_s is None else _json_float(self._number(ttl_s, "ttl_s"))
        args = rec.SessionForkArgs(self._sid(session_id), prefix_len, ttl, self._sid(new_session_id))
        return self._part(Opcode.SESSION_FORK, args)

    def session_info(self, session_id: str) -> SessionInfo:
        return self._session(Opcode.SESSION_INFO, rec.SessionArgs(self._sid(session_id)))

    # ---- invalidation ---------------------------------------------------------------------------
    def _count(self, opcode: Opcode, args: rec.Args | None, keys: Sequence[bytes] = ()) -> int:
        _, reader, _ = self._call(opcode, args, keys)
        return rec.decode(reader, rec.CountAnswer).count

    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        checked = [check_key(k) for k in keys]
        total = 0
        for start in range(0, len(checked), self.limits.max_batch):
            total += self._count(Opcode.INVALIDATE_KEYS, None, checked[start : start + self.limits.max_batch])
        return total

    def invalidate_prefix(self, key: bytes) -> int:
        return self._count(Opcode.INVALIDATE_PREFIX, rec.InvalidatePrefixArgs(rec.Hex16(check_key(key))))

    def invalidate_session(self, session_id: str) -> int:
        return self._count(Opcode.INVALIDATE_SESSION, rec.SessionArgs(self._sid(session_id)))

    def invalidate_model(self, fingerprint: bytes) -> int:
        return self._count(Opcode.INVALIDATE_MODEL, rec.InvalidateModelArgs(rec.Hex16(check_fingerprint(fingerprint))))

    def invalidate_namespace(self) -> int:
        return self._count(Opcode.INVALIDATE_NAMESPACE, None)

    # ---- target ---------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return msg.capabilities_from(self._call(Opcode.CAPABILITIES)[1].args)

    def stats(self) -> dict[str, Any]:
        return dict(self._call(Opcode.STATS)[1].args)

    def ping(self) -> float:
        started = time.perf_counter()
        self._call(Opcode.PING)
        return time.perf_counter() - started

    def _close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()


def _json_float(value: float) -> float:
    """JSON has no NaN or infinity: such a TTL is out of range (MKV-SES-009)."""
    if not msg.finite(value):
        raise InvalidArgument("a TTL must be a finite number of seconds in (0, 30 days]")
    return value


def pop_credential(options: dict[str, Any]) -> str | tuple[str, bytes] | None:
    """The client key from `key=`, else the file named by `key_file=`, else $MEMKV_KEY (id:secret)."""
    key = options.pop("key", None)
    key_file = options.pop("key_file", None)
    if key is not None:
        return key  # type: ignore[no-any-return]
    if key_file:
        with open(key_file, encoding="utf-8") as handle:
            return checked_credential(handle.read(4096).strip(), f"key_file {key_file}")
    from_environment = os.environ.get("MEMKV_KEY")
    return checked_credential(from_environment, "MEMKV_KEY") if from_environment else None


def check_options(scheme: str, options: dict[str, Any], known: set[str]) -> None:
    unknown = set(options) - known
    if unknown:
        everything = sorted(known | {"key", "key_file"})
        raise InvalidArgument(f"unknown {scheme} option(s) {sorted(unknown)}; known: {everything}")


def open_tcp(url_host: str, url_port: int | None, namespace: str, options: dict[str, Any]) -> TcpTransport:
    key = pop_credential(options)
    check_options("memkv+tcp", options, {"pool_size", "timeout", "connect_timeout"})
    return TcpTransport(url_host or "127.0.0.1", url_port or DEFAULT_PORT, namespace, key, **options)


__all__ = ["TcpConnection", "TcpTransport", "open_tcp"]
