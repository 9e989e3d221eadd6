"""The S3 endpoint's listener: HTTP/1.1 through h11, one thread per connection (MKV-S3-001, MKV-S3-044)."""

from __future__ import annotations

import http
import logging
import socket
import socketserver
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, cast

import h11

from ...errors import MemkvError, Unavailable
from .errors import S3Error, error_body, from_memkv
from .operations import BUFFER_WAIT_S, Answer, Plan, S3Operations

if TYPE_CHECKING:
    from ..service import MemkvServer

log = logging.getLogger("memkv.s3")

MAX_CONNECTIONS = 64
MAX_HEADER_BYTES = 16 * 1024
REQUEST_TIMEOUT_S = 10.0
SECONDS_PER_MIB = 1.0
RECV_BYTES = 1024 * 1024
DISCARD_BYTES = 4 * 1024 * 1024  # an unwanted body of at most this size is read and dropped, not cut
LINGER_S = 1.0


class _Closed(Exception):
    """The peer went away or ran out of time: drop the connection without an answer."""


class _Listener(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], endpoint: S3Endpoint) -> None:
        self.endpoint = endpoint
        super().__init__(address, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return self.endpoint.admit(request)


class _Handler(socketserver.BaseRequestHandler):
    server: _Listener

    def handle(self) -> None:
        self.server.endpoint.serve_connection(self.request)


class S3Endpoint:
    """Binds its port when made (before the store opens, MKV-CAP-031); serves once started."""

    def __init__(self, address: tuple[str, int]) -> None:
        self._listener = _Listener(address, self)
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.server_address[:2]
        return str(host), int(port)

    def start(self, server: MemkvServer) -> None:
        self.server = server
        self.ops = S3Operations(server.engine, server.keyring, server.budget)
        self._thread = threading.Thread(target=self._listener.serve_forever, args=(0.2,), name="memkv-s3-accept",
                                        daemon=True)
        self._thread.start()
        log.info("S3 endpoint on http://%s:%d (bucket = namespace)", *self.address)

    def close_port(self) -> None:
        self._listener.server_close()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._listener.shutdown()
        self._listener.server_close()
        with self._lock:
            for sock in self._conns:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def admit(self, sock: socket.socket) -> bool:
        """Whether a new connection is served: at most MAX_CONNECTIONS at once (MKV-S3-044)."""
        with self._lock:
            if self._stopping.is_set() or len(self._conns) >= MAX_CONNECTIONS:
                return False
            self._conns.add(sock)
            return True

    def serve_connection(self, sock: socket.socket) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        try:
            while not self._stopping.is_set():
                event = _receive(conn, sock, time.monotonic() + REQUEST_TIMEOUT_S)
                if not isinstance(event, h11.Request):
                    break
                self._answer(conn, sock, event)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    break
                conn.start_next_cycle()
        except (_Closed, OSError, h11.ProtocolError) as exc:
            log.debug("S3 connection ends: %r", exc)
        finally:
            _linger(sock)
            with self._lock:
                self._conns.discard(sock)
            sock.close()

    def _answer(self, conn: h11.Connection, sock: socket.socket, request: h11.Request) -> None:
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers]
        request_id = uuid.uuid4().hex[:16]
        try:
            if _header_bytes(request) > MAX_HEADER_BYTES:
                raise S3Error(431, "RequestHeaderSectionTooLarge", f"request line and headers exceed "
                                                                   f"{MAX_HEADER_BYTES} bytes")
            if self.server.draining.is_set():
                raise from_memkv(Unavailable("the server is shutting down"))
            answer = self._run(conn, sock, self.ops.plan(method, target, headers), headers)
        except S3Error as error:
            answer = _error_answer(error, target, request_id, method == "HEAD")
        except MemkvError as exc:
            answer = _error_answer(from_memkv(exc), target, request_id, method == "HEAD")
        except (_Closed, OSError, h11.ProtocolError):
            raise
        except Exception:
            log.exception("S3 %s %s failed", method, target[:200])
            answer = _error_answer(S3Error(500, "InternalError", "internal error"), target, request_id,
                                   method == "HEAD")
        stated = dict(headers).get("content-length", "")
        if (conn.their_state is h11.SEND_BODY and not conn.they_are_waiting_for_100_continue
                and stated.isdigit() and int(stated) <= DISCARD_BYTES):
            _discard_body(conn, sock)  # a client that sends its body anyway reads the answer after it
        try:
            _send(conn, sock, answer, request_id, method == "HEAD")
        finally:
            if answer.held:
                self.server.budget.release(answer.held)

    def _run(self, conn: h11.Connection, sock: socket.socket, plan: Plan,
             headers: list[tuple[str, str]]) -> Answer:
        if plan.operation == "PutObject":
            held = plan.raw_limit + plan.body_size  # the raw body, and the decoded payload beside it
            self.server.budget.acquire(held, BUFFER_WAIT_S)
            try:
                return self.ops.put(plan, headers, self._body(conn, sock, plan))
            finally:
                self.server.budget.release(held)
        if plan.operation == "GetObject":
            return self.ops.get(plan, dict(headers).get("range"))
        if plan.operation == "DeleteObject":
            return self.ops.delete(plan)
        return self.ops.head(plan)

    def _body(self, conn: h11.Connection, sock: socket.socket, plan: Plan) -> bytearray:
        """The request body, at most `plan.raw_limit` bytes, within its deadline (MKV-S3-030, MKV-S3-044)."""
        if conn.they_are_waiting_for_100_continue:
            sock.sendall(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        deadline = time.monotonic() + REQUEST_TIMEOUT_S + SECONDS_PER_MIB * plan.raw_limit / 2**20
        body = bytearray()
        while True:
            event = _receive(conn, sock, deadline)
            if isinstance(event, h11.EndOfMessage):
                return body
            if not isinstance(event, h11.Data):
                raise _Closed()
            body += event.data
            if len(body) > plan.raw_limit:
                raise S3Error(400, "IncompleteBody", "the body is longer than its stated size")


def _receive(conn: h11.Connection, sock: socket.socket, deadline: float) -> h11.Event | type[h11.PAUSED]:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event  # type: ignore[return-value]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Closed()
        sock.settimeout(remaining)
        try:
            data = sock.recv(RECV_BYTES)
        except TimeoutError:
            raise _Closed() from None
        conn.receive_data(data)


def _header_bytes(request: h11.Request) -> int:
    """The size of a request's line and headers as sent (h11 bounds only a head still arriving)."""
    line = len(request.method) + len(request.target) + 11
    return line + sum(len(name) + len(value) + 4 for name, value in request.headers) + 2


def _discard_body(conn: h11.Connection, sock: socket.socket) -> None:
    """Read and drop a small unread request body (its Content-Length is at most DISCARD_BYTES)."""
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    try:
        while isinstance(_receive(conn, sock, deadline), h11.Data):
            pass
    except (_Closed, OSError, h11.ProtocolError):
        return


def _linger(sock: socket.socket) -> None:
    """Close gently: stop sending, then drop what the peer still sends for a moment, so that the
    last answer is not lost to a reset when the peer was still sending a body."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_S
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if not sock.recv(RECV_BYTES):
                return
    except OSError:
        return


def _error_answer(error: S3Error, resource: str, request_id: str, head: bool) -> Answer:
    body = b"" if head else error_body(error, resource.partition("?")[0], request_id)
    headers = [*error.headers, ("Content-Type", "application/xml")] if body else list(error.headers)
    return Answer(error.status, headers, body)


def _send(conn: h11.Connection, sock: socket.socket, answer: Answer, request_id: str, head: bool) -> None:
    headers = [("Server", "memkv"), ("x-amz-request-id", request_id), *answer.headers]
    if not any(name == "Content-Length" for name, _ in headers) and answer.status != 204:
        headers.append(("Content-Length", str(len(answer.body))))
    if conn.their_state is not h11.DONE:
        headers.append(("Connection", "close"))  # the body was not read: this connection cannot go on
    sock.settimeout(REQUEST_TIMEOUT_S + SECONDS_PER_MIB * len(answer.body) / 2**20)
    reason = http.HTTPStatus(answer.status).phrase.encode()  # some clients need a reason phrase
    sock.sendall(conn.send(h11.Response(status_code=answer.status, headers=headers, reason=reason)) or b"")
    if answer.body and not head:
        for piece in conn.send_with_data_passthrough(h11.Data(data=cast(bytes, answer.body))) or []:
            sock.sendall(piece)
    sock.sendall(conn.send(h11.EndOfMessage()) or b"")
