"""The receiving and framing half of the sans-IO wire core: a client and a server Connection talk
through in-memory bytes only, each receiving where `next_read` says (MKV-CONN-001, MKV-WIRE-007,
MKV-WIRE-010, MKV-WIRE-012)."""

from __future__ import annotations

import os

import pytest

from memkv.errors import ErrorCode, LimitExceeded, MemkvError, ProtocolError, Unavailable
from memkv.wire.connection import (
    Answer,
    Connection,
    Credential,
    FrameEvent,
    Grant,
    Hello,
    HelloAnswered,
    Phase,
    Refused,
    Request,
    ServerPolicy,
    Side,
    State,
)
from memkv.wire.frames import HEADER_SIZE, PRE_AUTH_MAX_META, Header, WireLimits
from memkv.wire.opcodes import Opcode, Role
from memkv.wire.records import LookupArgs

SECRET = os.urandom(32)
req = pytest.mark.requirement


class Stream:
    """Bytes in flight towards one Connection, received the way a socket loop receives them."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.data = bytearray()

    def take(self, size: int) -> bytes:
        assert len(self.data) >= size, "the core asked for more bytes than were sent"
        piece, self.data = bytes(self.data[:size]), self.data[size:]
        return piece

    def frame(self) -> FrameEvent:
        phase, size = self.conn.next_read()
        assert (phase, size) == (Phase.HEADER, HEADER_SIZE)
        self.conn.header_buffer()[:] = self.take(size)
        header = self.conn.receive_header()
        phase, size = self.conn.next_read()
        assert (phase, size) == (Phase.META, header.meta_len)
        self.conn.meta_buffer()[:] = self.take(size)
        return self.conn.next_event()

    def payload_into(self, target: memoryview) -> None:
        """The loop's zero-copy step: the payload lands in the caller's buffer, the core only counts it."""
        phase, size = self.conn.next_read()
        assert phase is Phase.PAYLOAD and size == len(target)
        target[:] = self.take(size)
        self.conn.payload_received(size)


def _pair() -> tuple[Connection, Connection, Stream, Stream]:
    client, server = Connection(Side.CLIENT), Connection(Side.SERVER)
    to_server, to_client = Stream(server), Stream(client)
    policy = ServerPolicy({"k1": Grant(SECRET, "team-a", Role.WRITE)}.get, 60.0, lambda nonce: True)
    to_server.data += client.client_hello("team-a", Credential("k1", SECRET), "test")
    hello = to_server.frame()
    assert isinstance(hello, Hello)
    answer, meta = server.server_hello(hello.header, hello.meta, policy, WireLimits(max_payload=1 << 20), {})
    to_client.data += answer.pack() + meta
    opened = to_client.frame()
    assert isinstance(opened, HelloAnswered) and opened.args["role"] == "write"
    assert client.state is server.state is State.OPEN and client.limits.max_payload == 1 << 20
    return client, server, to_server, to_client


@req("MKV-CONN-001", "MKV-WIRE-010", "MKV-WIRE-012")
def test_request_answer_and_error_through_the_core_only() -> None:
    client, server, to_server, to_client = _pair()
    payload = os.urandom(5000)
    request_id, frame = client.request_frame(Opcode.PUT, None, b"", 0, len(payload))
    to_server.data += frame + payload
    request = to_server.frame()
    assert isinstance(request, Request) and request.header.request_id == request_id == 1
    received = memoryview(bytearray(len(payload)))
    to_server.payload_into(received)
    assert bytes(received) == payload and server.next_read() == (Phase.HEADER, HEADER_SIZE)

    to_client.data += server.answer_frame(request.header, {"count": 3})
    answer = to_client.frame()
    assert isinstance(answer, Answer) and answer.reader.args == {"count": 3}

    second, frame = client.request_frame(Opcode.PING)
    to_server.data += frame
    ping = to_server.frame()
    assert isinstance(ping, Request) and second == 2
    to_client.data += server.error_frame(ping.header, Unavailable("draining"))
    refused = to_client.frame()
    assert isinstance(refused, Refused) and refused.error.code is ErrorCode.UNAVAILABLE
    assert refused.error.message == "draining" and client.state is State.OPEN


@req("MKV-WIRE-010", "MKV-WIRE-012")
def test_tampered_or_replayed_request_is_fatal() -> None:
    client, server, to_server, _ = _pair()
    _, frame = client.request_frame(Opcode.PING)
    to_server.data += frame + frame  # the same request id twice
    assert isinstance(to_server.frame(), Request)
    with pytest.raises(MemkvError) as info:
        to_server.frame()
    assert info.value.code is ErrorCode.UNAUTHENTICATED and server.state is State.CLOSED

    client, server, to_server, _ = _pair()
    _, frame = client.request_frame(Opcode.LOOKUP, LookupArgs(5))
    tampered = bytearray(frame)
    tampered[-3] ^= 1
    to_server.data += tampered
    with pytest.raises(MemkvError) as info:
        to_server.frame()
    assert info.value.code is ErrorCode.UNAUTHENTICATED and server.state is State.CLOSED


@req("MKV-WIRE-007")
def test_bounds_are_checked_before_the_metadata_buffer_exists() -> None:
    server = Connection(Side.SERVER)  # before HELLO: the pre-authentication limits
    server.header_buffer()[:] = Header(Opcode.HELLO, 0, PRE_AUTH_MAX_META + 1).pack()
    with pytest.raises(LimitExceeded):
        server.receive_header()
    assert len(server.meta_buffer()) == 0 and server.next_read() == (Phase.HEADER, HEADER_SIZE)
    server.header_buffer()[:] = Header(Opcode.PING, 1, 10, flags=0x01).pack()
    with pytest.raises(ProtocolError):
        server.receive_header()  # a client sends requests, not responses
    client, _, _, _ = _pair()
    client.header_buffer()[:] = Header(Opcode.PING, 1, 17 * 1024 * 1024, flags=0x01).pack()
    with pytest.raises(LimitExceeded):
        client.receive_header()


def test_next_event_needs_a_received_frame() -> None:
    with pytest.raises(ProtocolError):
        Connection(Side.SERVER).next_event()
