"""The client checker: a scripted memkv server that certifies a client library (profile wire, client side).

A second client implementation is certified the way a server is, but the roles swap: this module
listens on 127.0.0.1, completes the handshake from the spec (memkv/conformance/wire_peer.py, no
memkv.wire), and answers each request with frames scripted to provoke one requirement: a get
payload that does not match its checksum (MKV-WIRE-021), an unknown status code (MKV-WIRE-043),
a HELLO answer with a bad MAC (MKV-WIRE-011), a server without authentication (MKV-NS-007),
a small max_payload that forces the client to split a batch (MKV-WIRE-041). The client is driven through
the transport interface, so any library with a `connect(url, namespace, key)` can be certified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import xxhash

from memkv.errors import ErrorCode, MemkvError
from memkv.transport import PutItem, Transport

from .wire_peer import HEADER, HEADER_SIZE, OPCODES, RESPONSE, Frame, derive, header, metadata, sign

Connect = Callable[[str, str, str | None], Transport]
Script = Callable[[Frame, "Session"], bytes]
NAMESPACE = "memkv-cf-client"
KEY_ID = "cf-client"
SCRIPTED_PAYLOAD = b"scripted block payload"


@dataclasses.dataclass
class Result:
    requirement: str
    passed: bool
    what: str
    detail: str = ""


@dataclasses.dataclass
class Session:
    """One accepted connection of the scripted server."""

    sock: socket.socket
    tx: bytes | None = None
    rx: bytes | None = None
    frames: list[Frame] = dataclasses.field(default_factory=list)

    def read(self) -> Frame:
        head = _exact(self.sock, HEADER_SIZE)
        fields = HEADER.unpack(head)
        if fields[6] > 16 * 1024 * 1024 or fields[9] > 64 * 1024 * 1024:
            raise ConnectionError("the client announced an oversized frame")
        return Frame(head, _exact(self.sock, fields[6]), _exact(self.sock, fields[9]))

    def answer(self, request: Frame, args: dict[str, Any], items: bytes = b"", count: int = 0, payload: bytes = b"",
               status: int = 0, opcode: int | None = None) -> bytes:
        meta = metadata(args, items, count)
        head = header(request.opcode if opcode is None else opcode, request.request_id, len(meta), len(payload),
                      flags=RESPONSE, status=status)
        return sign(self.tx, head, meta) + meta + payload


def _exact(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        piece = sock.recv(min(left, 1 << 20))
        if not piece:
            raise ConnectionError("the client closed the connection")
        chunks.append(piece)
        left -= len(piece)
    return b"".join(chunks)


class ScriptedServer:
    """Accepts connections, does the HELLO of spec/wire.md section 3, then answers with `script`."""

    def __init__(self, script: Script, *, auth: bool = True, limits: dict[str, int] | None = None,
                 break_hello_mac: bool = False) -> None:
        self.secret = os.urandom(32)
        self.script, self.auth, self.break_hello_mac = script, auth, break_hello_mac
        self.limits = {"max_meta": 16 * 1024 * 1024, "max_payload": 64 * 1024 * 1024, "max_items": 256,
                       **(limits or {})}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sessions: list[Session] = []
        self._thread = threading.Thread(target=self._serve, daemon=True, name="memkv-cf-scripted")
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.listener.getsockname()[:2]
        return f"memkv+tcp://{host}:{port}"

    @property
    def credential(self) -> str:
        return f"{KEY_ID}:{self.secret.hex()}"

    def close(self) -> None:
        self.listener.close()
        for session in self.sessions:
            with contextlib.suppress(OSError):
                session.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            session = Session(sock)
            self.sessions.append(session)
            threading.Thread(target=self._run, args=(session,), daemon=True).start()

    def _run(self, session: Session) -> None:
        with contextlib.suppress(ConnectionError, OSError, ValueError, KeyError):
            self._hello(session)
            while True:
                request = session.read()
                session.frames.append(request)
                session.sock.sendall(self.script(request, session))

    def _hello(self, session: Session) -> None:
        hello = session.read()
        args = hello.args
        server_nonce = os.urandom(16)
        if self.auth:
            client_nonce = bytes.fromhex(args["client_nonce"])
            session.tx = derive(self.secret, b"s2c", client_nonce, server_nonce, args["namespace"], KEY_ID)
            session.rx = derive(self.secret, b"c2s", client_nonce, server_nonce, args["namespace"], KEY_ID)
        answer = session.answer(hello, {"server_nonce": server_nonce.hex(), "version": "1.2", "auth": self.auth,
                                        "role": "admin", "namespace": args["namespace"], "limits": self.limits,
                                        "idle_timeout_s": 60.0, "server": "memkv-cf-scripted",
                                        "spec_version": "1.2"})
        if self.break_hello_mac:
            answer = answer[:HEADER_SIZE - 1] + bytes([answer[HEADER_SIZE - 1] ^ 1]) + answer[HEADER_SIZE:]
        session.sock.sendall(answer)


@contextlib.contextmanager
def scripted(script: Script, **options: Any) -> Iterator[ScriptedServer]:
    server = ScriptedServer(script, **options)
    try:
        yield server
    finally:
        server.close()


def _results(count: int, status: int) -> bytes:
    return (struct.pack("<HH", status, 0)) * count


def _get_answer(request: Frame, session: Session, corrupt: bool) -> bytes:
    count, items = request.items
    data = SCRIPTED_PAYLOAD
    records, payload = b"", b""
    for i in range(count):
        capacity = struct.unpack_from("<Q", items, i * 24 + 16)[0]
        if capacity < len(data):
            records += struct.pack("<HQQH", 17, 0, 0, 0) + struct.pack("<H", 0)
            continue
        sent = bytes([data[0] ^ 0xFF]) + data[1:] if corrupt else data
        records += struct.pack("<HQQH", 0, len(data), xxhash.xxh3_64_intdigest(data), 0) + struct.pack("<H", 0)
        payload += sent
    return session.answer(request, {}, records, count, payload)


CAPABILITIES = {"backend": "scripted", "profiles": ["core", "wire"], "spec_version": "1.2", "capacity_bytes": None,
                "flush_window_s": None, "limits": {"key_size": 16, "min_block_size": 1, "max_block_size": 1 << 26,
                                                   "max_batch": 256, "max_user_meta": 1024, "max_lease_ms": 600000,
                                                   "max_session_blocks": 1000000}}


def _ping_or(request: Frame, session: Session, handle: Callable[[Frame, Session], bytes]) -> bytes:
    """PING, GOODBYE and CAPABILITIES answered plainly; every other request by `handle`."""
    if request.opcode in (OPCODES["PING"], OPCODES["GOODBYE"]):
        return session.answer(request, {})
    if request.opcode == OPCODES["CAPABILITIES"]:
        return session.answer(request, CAPABILITIES)
    return handle(request, session)


def check_client(connect: Connect) -> list[Result]:
    """Run every client check against the library behind `connect`; one Result per check."""
    results: list[Result] = []

    def attempt(requirement: str, what: str, fn: Callable[[], tuple[bool, str]]) -> None:
        try:
            passed, detail = fn()
        except Exception as exc:  # a crash of the client under test is a failure, reported
            passed, detail = False, f"{type(exc).__name__}: {exc}"
        results.append(Result(requirement, passed, what, detail))

    def corrupted_get() -> tuple[bool, str]:
        with scripted(lambda r, s: _ping_or(r, s, lambda r2, s2: _get_answer(r2, s2, corrupt=True))) as server:
            transport = connect(server.url, NAMESPACE, server.credential)
            try:
                buffer = bytearray(64)
                got = transport.get_into([os.urandom(16)], [buffer])[0]
            finally:
                transport.close()
        return got.status is ErrorCode.CORRUPTED, got.status.name

    def unknown_status() -> tuple[bool, str]:
        def delete(request: Frame, session: Session) -> bytes:
            count, _ = request.items
            return session.answer(request, {}, _results(count, 999), count)

        with scripted(lambda r, s: _ping_or(r, s, delete)) as server:
            transport = connect(server.url, NAMESPACE, server.credential)
            try:
                status = transport.delete([os.urandom(16)])[0].status
            finally:
                transport.close()
        return status is ErrorCode.INTERNAL, status.name

    def refused(**options: Any) -> tuple[bool, str]:
        with scripted(lambda r, s: _ping_or(r, s, lambda r2, s2: s2.answer(r2, {})), **options) as server:
            try:
                transport = connect(server.url, NAMESPACE, server.credential)
            except MemkvError as exc:
                return exc.code is ErrorCode.UNAUTHENTICATED, exc.code.name
            transport.close()
            return False, "the client connected"

    def splits() -> tuple[bool, str]:
        def put(request: Frame, session: Session) -> bytes:
            count, _ = request.items
            return session.answer(request, {}, _results(count, 0), count)

        with scripted(lambda r, s: _ping_or(r, s, put), limits={"max_payload": 100}) as server:
            transport = connect(server.url, NAMESPACE, server.credential)
            try:
                answer = transport.put([PutItem(os.urandom(16), bytes([i]) * 40) for i in range(5)])
            finally:
                transport.close()
            time.sleep(0.05)
            sizes = [len(f.payload) for s in server.sessions for f in s.frames if f.opcode == OPCODES["PUT"]]
        passed = all(r.ok for r in answer) and bool(sizes) and max(sizes) <= 100 and sum(sizes) == 200
        return passed, f"frame payloads {sizes}"

    attempt("MKV-WIRE-021", "a get payload that does not match its checksum is reported CORRUPTED", corrupted_get)
    attempt("MKV-WIRE-043", "an unknown item status is reported as INTERNAL", unknown_status)
    attempt("MKV-WIRE-011", "a HELLO answer whose MAC does not verify is refused",
            lambda: refused(break_hello_mac=True))
    attempt("MKV-NS-007", "a client given a key refuses a server without authentication",
            lambda: refused(auth=False))
    attempt("MKV-WIRE-041", "a PUT over the announced max_payload is split into frames that fit, answers joined",
            splits)
    return results
