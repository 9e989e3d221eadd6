"""The connection state machine and the handshake of the wire protocol, for both roles; sans-IO.

One `Connection` per socket, client or server: it holds the state, the per-direction keys, the
limits in force and the last request id, and turns frames into checked events. It never reads
or writes a socket (h11 is the model): the server's and the client's socket loops feed it the
frames they read and send the bytes it gives. HELLO is written here once (MKV-WIRE-005, -008,
-011, -012, MKV-SEC-001); the transitions are the table TRANSITIONS, which spec/connection.yaml
states and a test keeps equal.

The byte-level work both sides share lives here too: a socket loop asks `next_read()` what to
receive next and where (the 64-byte header into `header_buffer()`, then the metadata into
`meta_buffer()`, both bounded by the limits in force before anything is allocated), then takes
the checked frame from `next_event()`; payload bytes are never copied through the core: the loop
receives them with recv_into straight into their final buffers and reports them with
`payload_received`. Outgoing frames come from `request_frame`, `answer_frame` and `error_frame`.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import (
    ErrorCode,
    InvalidArgument,
    MemkvError,
    PermissionDenied,
    ProtocolError,
    Unauthenticated,
    error_for,
)
from ..namespaces import check_namespace
from . import messages as msg
from . import records as rec
from .frames import (
    CLIENT_TO_SERVER,
    DEFAULT_MAX_META,
    FLAG_RESPONSE,
    HEADER_SIZE,
    PRE_AUTH_LIMITS,
    SERVER_TO_CLIENT,
    VERSION_MAJOR,
    VERSION_MINOR,
    Header,
    WireLimits,
    connection_key,
    parse_header,
    sign,
    verify,
)
from .opcodes import Opcode, Role
from .session_answers import answer_item_bound


class Side(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    START = "start"              # nothing sent or received yet
    HELLO_SENT = "hello_sent"    # client: HELLO sent, its answer awaited
    OPEN = "open"                # HELLO done: requests and answers flow
    CLOSED = "closed"            # no frame is sent or accepted any more


class Event(enum.Enum):
    SEND_HELLO = "send_hello"            # client
    HELLO_ACCEPTED = "hello_accepted"    # server: a valid HELLO, answered; client: its answer verified
    HELLO_REFUSED = "hello_refused"      # either side: the HELLO (or its answer) failed a check
    REQUEST = "request"                  # a request sent (client) or accepted (server)
    ANSWER = "answer"                    # an answer received (client) or sent (server)
    REFUSAL = "refusal"                  # an error that leaves the connection usable (MKV-WIRE-040, steps 4-7)
    FATAL = "fatal"                      # malformed frame, bad MAC, replay, timeout: then close (steps 1-3)
    GOODBYE = "goodbye"                  # GOODBYE answered
    PEER_CLOSED = "peer_closed"


# (side, state, event) -> next state. A pair not listed is a ProtocolError.
TRANSITIONS: dict[tuple[Side, State, Event], State] = {
    (Side.CLIENT, State.START, Event.SEND_HELLO): State.HELLO_SENT,
    (Side.CLIENT, State.HELLO_SENT, Event.HELLO_ACCEPTED): State.OPEN,
    (Side.CLIENT, State.HELLO_SENT, Event.HELLO_REFUSED): State.CLOSED,
    (Side.SERVER, State.START, Event.HELLO_ACCEPTED): State.OPEN,
    (Side.SERVER, State.START, Event.HELLO_REFUSED): State.CLOSED,
    (Side.SERVER, State.START, Event.FATAL): State.CLOSED,
    (Side.CLIENT, State.HELLO_SENT, Event.FATAL): State.CLOSED,
}
for _side in Side:
    TRANSITIONS |= {
        (_side, State.OPEN, Event.REQUEST): State.OPEN,
        (_side, State.OPEN, Event.ANSWER): State.OPEN,
        (_side, State.OPEN, Event.REFUSAL): State.OPEN,
        (_side, State.OPEN, Event.FATAL): State.CLOSED,
        (_side, State.OPEN, Event.GOODBYE): State.CLOSED,
    }
    for _state in State:
        if _state is not State.CLOSED:
            TRANSITIONS[(_side, _state, Event.PEER_CLOSED)] = State.CLOSED


class Phase(enum.Enum):
    """What the socket loop receives next (`Connection.next_read`)."""

    HEADER = "header"
    META = "meta"
    PAYLOAD = "payload"


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """Server: a request whose MAC and request id are checked; its payload is still on the socket."""

    header: Header
    meta: bytearray


class Hello(Request):
    """Server: the first frame, not yet checked: `server_hello` checks and answers it."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """Client: a verified answer (its payload, if any, is still on the socket)."""

    header: Header
    reader: msg.MetaReader


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """Client: a verified ERROR frame, as the spec error it names."""

    header: Header
    error: MemkvError


@dataclasses.dataclass(frozen=True, slots=True)
class HelloAnswered:
    """Client: HELLO's answer is verified, the keys are derived and the connection is open."""

    args: dict[str, Any]


FrameEvent = Hello | Request | Answer | Refused | HelloAnswered
# Bounds on what a client accepts: a HELLO answer is small and carries no payload; later answers
# may carry what the client asked for (its own buffers bound that), metadata up to the default.
HELLO_ANSWER_LIMITS = WireLimits(max_meta=64 * 1024, max_payload=0)
ANSWER_MAX_PAYLOAD = 1 << 40


def error_of(header: Header, reader: msg.MetaReader, default: str = "") -> MemkvError:
    """The spec error an ERROR frame names (an unknown status is INTERNAL on the client, MKV-WIRE-043)."""
    return error_for(header.status or ErrorCode.PROTOCOL_ERROR, str(reader.args.get("message", default)))


@dataclasses.dataclass(frozen=True, slots=True)
class Credential:
    key_id: str
    secret: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """What a server's key lookup says about a HELLO's key id (None from the lookup: unknown)."""

    secret: bytes = dataclasses.field(repr=False)
    namespace: str
    role: Role


# A HELLO naming an unknown key id is checked against this secret, so it costs the same HMAC and
# gets the same answer as a bad signature (MKV-SEC-001).
_NO_SUCH_KEY = os.urandom(32)
HELLO_REFUSED = "unknown key or bad signature"


@dataclasses.dataclass(slots=True)
class ServerPolicy:
    """The server's side of HELLO: key lookup (None: unauthenticated mode), clock window and nonce memory."""

    lookup: Callable[[str], Grant | None] | None
    window_s: float
    remember_nonce: Callable[[bytes], bool]
    clock_ms: Callable[[], float] = lambda: time.time() * 1000


class Connection:
    def __init__(self, side: Side) -> None:
        self.side = side
        self.state = State.START
        self.tx_key: bytes | None = None
        self.rx_key: bytes | None = None
        self.limits = PRE_AUTH_LIMITS
        self.last_request_id = 0
        self.namespace = ""
        self.key_id: str | None = None
        self.role = Role.READ
        self.minor = VERSION_MINOR
        self.hello_args: dict[str, Any] = {}
        self._client_nonce = b""
        self._credential: Credential | None = None
        self._lock = threading.Lock()
        self._header_raw = bytearray(HEADER_SIZE)
        self._header: Header | None = None
        self._meta = bytearray()
        self._phase = Phase.HEADER
        self.payload_left = 0
        self._next_request_id = 1

    def handle(self, event: Event) -> State:
        with self._lock:  # a client sends from several threads while its reader takes answers
            try:
                self.state = TRANSITIONS[(self.side, self.state, event)]
            except KeyError:
                raise ProtocolError(f"{self.side.value}: {event.value} is not allowed in state "
                                    f"{self.state.value}") from None
            return self.state

    # ---- client -------------------------------------------------------------------------------
    def client_hello(self, namespace: str, credential: Credential | None, client: str,
                     now_ms: int | None = None, nonce: bytes | None = None) -> bytes:
        """The signed HELLO request (MKV-WIRE-008): the bytes to send (a fixed nonce only for tests)."""
        self._client_nonce = nonce or os.urandom(16)
        self._credential = credential
        self.namespace = namespace
        args = rec.HelloArgs(namespace, credential.key_id if credential else None, rec.Hex16(self._client_nonce),
                             int(time.time() * 1000) if now_ms is None else now_ms, client)
        meta = msg.encode_meta(rec.encode(args))
        header = sign(credential.secret if credential else None, Header(Opcode.HELLO, 0, len(meta)), meta)
        self.handle(Event.SEND_HELLO)
        return header.pack() + meta

    @property
    def client_nonce(self) -> bytes:
        return self._client_nonce

    def client_hello_answer(self, header: Header, meta: bytes | bytearray) -> dict[str, Any]:
        """Check the HELLO answer, derive the keys (MKV-WIRE-011) and open; spec errors are raised."""
        try:
            reader = msg.MetaReader(meta, 0)
            if header.opcode is Opcode.ERROR:
                raise error_of(header, reader)
            if header.opcode is not Opcode.HELLO or not header.is_response:
                raise ProtocolError("server did not answer HELLO")
            server_nonce = reader.hex_arg("server_nonce", 16)
            credential = self._credential
            if reader.args.get("auth"):
                if credential is None:
                    raise Unauthenticated("server requires a key")
                self._derive(credential.secret, self._client_nonce, server_nonce, self.namespace, credential.key_id)
            elif credential is not None:
                raise Unauthenticated("server runs without authentication but this client was given a key; "
                                      "refusing an unauthenticated connection")
            verify(self.rx_key, header, meta)
        except MemkvError:
            self.handle(Event.HELLO_REFUSED)
            raise
        self.hello_args = reader.args
        self.minor = min(header.minor, VERSION_MINOR)  # the answer carries the lower minor (MKV-WIRE-005)
        limits = reader.args.get("limits", {})
        self.limits = WireLimits(int(limits.get("max_meta", WireLimits().max_meta)),
                                 int(limits.get("max_payload", WireLimits().max_payload)),
                                 int(limits.get("max_items", WireLimits().max_items)))
        self.handle(Event.HELLO_ACCEPTED)
        return reader.args

    def request_header(self, opcode: Opcode, request_id: int, meta: bytes, payload_len: int) -> Header:
        """The signed header of a request the client sends (MKV-WIRE-010)."""
        self.handle(Event.REQUEST)
        return sign(self.tx_key, Header(opcode, request_id, len(meta), payload_len), meta)

    def check_answer(self, header: Header, meta: bytes | bytearray) -> None:
        """An answer's MAC (MKV-WIRE-010); a frame that does not verify is fatal."""
        try:
            verify(self.rx_key, header, meta)
        except MemkvError:
            self.handle(Event.FATAL)
            raise
        self.handle(Event.ANSWER)

    # ---- server -------------------------------------------------------------------------------
    def server_hello(self, header: Header, meta: bytes | bytearray, policy: ServerPolicy,
                     limits: WireLimits, answer: dict[str, Any]) -> tuple[Header, bytes]:
        """Check a HELLO in the order of MKV-WIRE-040 and give the signed answer (header, metadata).

        `answer` holds the server's own fields (limits, idle timeout, names); a refusal raises the
        spec error, after which the connection is closed.
        """
        try:
            if header.opcode is not Opcode.HELLO:
                raise Unauthenticated("the first frame must be HELLO")
            hello = rec.decode(msg.MetaReader(meta, 0), rec.HelloArgs)
            namespace, key_id, client_nonce, timestamp_ms = (hello.namespace, hello.key_id, hello.client_nonce,
                                                             hello.timestamp_ms)
            if not 0 <= timestamp_ms < 2**53:
                raise InvalidArgument("timestamp_ms must be milliseconds since the epoch")
            server_nonce = os.urandom(16)
            if policy.lookup is not None:
                grant = policy.lookup(key_id) if key_id else None
                try:
                    verify(grant.secret if grant is not None else _NO_SUCH_KEY, header, meta)
                except Unauthenticated:
                    grant = None
                if grant is None or key_id is None:
                    raise Unauthenticated(HELLO_REFUSED)
                if abs(policy.clock_ms() - timestamp_ms) > policy.window_s * 1000:
                    raise Unauthenticated("HELLO timestamp is outside the accepted window (check clocks)")
                if not policy.remember_nonce(client_nonce):
                    raise Unauthenticated("HELLO nonce was already used (replay)")
                check_namespace(namespace)  # the form before the grant (MKV-NS-009)
                if grant.namespace != namespace:
                    raise PermissionDenied(f"key {key_id} grants nothing on namespace {namespace}")
                self._derive(grant.secret, client_nonce, server_nonce, namespace, key_id, server=True)
                self.role, self.key_id = grant.role, key_id
            else:
                check_namespace(namespace)
                self.role = Role.ADMIN
        except MemkvError:
            self.handle(Event.HELLO_REFUSED)
            raise
        self.namespace = namespace
        self.minor = min(header.minor, VERSION_MINOR)
        self.last_request_id = header.request_id
        self.limits = limits
        args = {"server_nonce": server_nonce.hex(), "version": f"{VERSION_MAJOR}.{self.minor}",
                "auth": policy.lookup is not None, "role": self.role.name.lower(), "namespace": namespace,
                "limits": limits.to_dict(), **answer}
        self.handle(Event.HELLO_ACCEPTED)
        return self.answer_header(header, args)

    def check_request(self, header: Header, meta: bytes | bytearray) -> None:
        """A request after HELLO: its MAC (MKV-WIRE-010), then its id (MKV-WIRE-012); failures are fatal."""
        try:
            if header.is_response:
                raise ProtocolError("a client sends requests, not responses")
            verify(self.rx_key, header, meta)
            if header.request_id <= self.last_request_id:
                raise Unauthenticated(f"request id {header.request_id} is replayed or out of order")
        except MemkvError:
            self.handle(Event.FATAL)
            raise
        self.last_request_id = header.request_id
        self.handle(Event.REQUEST)

    def answer_header(self, request: Header, args: dict[str, Any], items: bytes = b"", count: int = 0,
                      payload_len: int = 0, opcode: Opcode | None = None, status: int = 0) -> tuple[Header, bytes]:
        """The signed header and metadata of an answer to `request`."""
        meta = msg.encode_meta(args, items, count)
        header = Header(opcode or request.opcode, request.request_id, len(meta), payload_len, FLAG_RESPONSE, status,
                        minor=min(request.minor, VERSION_MINOR))
        return sign(self.tx_key, header, meta), meta

    # ---- receiving, both sides: the loop receives into the core's buffers ------------------------
    def next_read(self) -> tuple[Phase, int]:
        """What the socket loop receives next and how many bytes of it."""
        if self._phase is Phase.HEADER:
            return Phase.HEADER, HEADER_SIZE
        if self._phase is Phase.META:
            return Phase.META, len(self._meta)
        return Phase.PAYLOAD, self.payload_left

    def header_buffer(self) -> memoryview:
        """Where the next frame's header is received."""
        return memoryview(self._header_raw)

    def header_received(self) -> bytes:
        """The raw bytes now in the header buffer (a client names an HTTP endpoint from them)."""
        return bytes(self._header_raw)

    def receive_header(self) -> Header:
        """Parse the header now in `header_buffer()` against the limits in force (MKV-WIRE-007).

        Nothing is allocated before this check; afterwards `meta_buffer()` has `meta_len` bytes.
        """
        if self.side is Side.SERVER:
            limits = self.limits
        elif self.state is State.HELLO_SENT:
            limits = HELLO_ANSWER_LIMITS
        else:
            limits = WireLimits(DEFAULT_MAX_META, ANSWER_MAX_PAYLOAD, self.limits.max_items)
        header = parse_header(self._header_raw, limits)
        if self.side is Side.SERVER and header.is_response:
            raise ProtocolError("a client sends requests, not responses")
        self._header = header
        self._meta = bytearray(header.meta_len)
        self._phase = Phase.META
        return header

    def meta_buffer(self) -> memoryview:
        """Where the metadata of the frame whose header was received goes."""
        return memoryview(self._meta)

    def next_event(self) -> FrameEvent:
        """The checked frame whose header and metadata were received; its payload comes next."""
        header = self._header
        if header is None or self._phase is not Phase.META:
            raise ProtocolError("next_event before a frame's header and metadata were received")
        meta = self._meta
        self._header, self._meta = None, bytearray()
        self.payload_left = header.payload_len
        self._phase = Phase.PAYLOAD if header.payload_len else Phase.HEADER
        if self.side is Side.SERVER:
            if self.state is State.START:
                return Hello(header, meta)
            self.check_request(header, meta)
            return Request(header, meta)
        if self.state is State.HELLO_SENT:
            return HelloAnswered(self.client_hello_answer(header, meta))
        self.check_answer(header, meta)
        if header.opcode is Opcode.ERROR:
            return Refused(header, error_of(header, msg.MetaReader(meta, 0)))
        bound = answer_item_bound(header.opcode, self.minor, self.limits.max_items, len(meta))
        return Answer(header, msg.MetaReader(meta, bound))

    def payload_received(self, size: int) -> None:
        """`size` payload bytes of the current frame were received (or discarded) by the loop."""
        self.payload_left -= size
        if self.payload_left <= 0:
            self.payload_left = 0
            self._phase = Phase.HEADER

    # ---- sending, both sides ----------------------------------------------------------------------
    def request_frame(self, opcode: Opcode, args: rec.Args | None = None, items: bytes = b"",
                      count: int = 0, payload_len: int = 0) -> tuple[int, bytes]:
        """Client: the next request id and the signed header and metadata of that request.

        `args` is the record of the opcode's arguments (memkv.wire.records; None: it takes none). The
        `payload_len` bytes of payload follow on the socket, sent by the loop from the caller's buffers.
        """
        rec.check_request(opcode, args)
        meta = msg.encode_meta(None if args is None else rec.encode(args), items, count)
        request_id = self._next_request_id
        self._next_request_id += 1
        return request_id, self.request_header(opcode, request_id, meta, payload_len).pack() + meta

    def answer_frame(self, request: Header, args: dict[str, Any], items: bytes = b"", count: int = 0,
                     payload_len: int = 0, opcode: Opcode | None = None, status: int = 0) -> bytes:
        """Server: the signed header and metadata of an answer; `payload_len` payload bytes follow."""
        header, meta = self.answer_header(request, args, items, count, payload_len, opcode, status)
        return header.pack() + meta

    def error_frame(self, request: Header | None, error: MemkvError) -> bytes:
        """Server: the ERROR frame answering `request` (or no request: id 0) with `error`."""
        return self.answer_frame(request or Header(Opcode.ERROR, 0), msg.error_args(error.code, error.message),
                                 opcode=Opcode.ERROR, status=int(error.code))

    def _derive(self, secret: bytes, client_nonce: bytes, server_nonce: bytes, namespace: str, key_id: str,
                server: bool = False) -> None:
        c2s = connection_key(secret, CLIENT_TO_SERVER, client_nonce, server_nonce, namespace, key_id)
        s2c = connection_key(secret, SERVER_TO_CLIENT, client_nonce, server_nonce, namespace, key_id)
        self.tx_key, self.rx_key = (s2c, c2s) if server else (c2s, s2c)
