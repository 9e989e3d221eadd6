"""The sans-IO connection of memkv.wire.connection: its table equals spec/connection.yaml, and a client
and a server connection complete the handshake in memory (MKV-CONN-001, MKV-WIRE-011, MKV-SEC-001)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from memkv.errors import ErrorCode, MemkvError, ProtocolError
from memkv.transport import SPEC_VERSION
from memkv.wire import messages as msg
from memkv.wire.connection import TRANSITIONS, Connection, Credential, Event, Grant, ServerPolicy, Side, State
from memkv.wire.frames import HEADER_SIZE, Header, WireLimits, encode_frame, parse_header
from memkv.wire.opcodes import Opcode, Role

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "spec" / "connection.yaml").read_text())
SECRET = os.urandom(32)
req = pytest.mark.requirement


@req("MKV-CONN-001")
def test_table_equals_spec_connection_yaml() -> None:
    assert str(SPEC["spec_version"]) == SPEC_VERSION
    assert SPEC["states"] == [s.value for s in State]
    assert set(SPEC["events"]) == {e.value for e in Event}
    stated = {}
    for row in SPEC["transitions"]:
        for side in (Side if row["side"] == "both" else [Side(row["side"])]):
            stated[(side, State(row["from"]), Event(row["event"]))] = State(row["to"])
    assert stated == TRANSITIONS
    assert all(to is not State.START for to in TRANSITIONS.values())
    assert not [k for k in TRANSITIONS if k[1] is State.CLOSED]  # closed is terminal


def _split(frame: bytes) -> tuple[Header, bytes]:
    header = parse_header(frame[:HEADER_SIZE], WireLimits())
    return header, frame[HEADER_SIZE:HEADER_SIZE + header.meta_len]


def _policy(known: bool = True) -> ServerPolicy:
    seen: set[bytes] = set()

    def remember(nonce: bytes) -> bool:
        fresh = nonce not in seen
        seen.add(nonce)
        return fresh

    grants = {"k1": Grant(SECRET, "team-a", Role.WRITE)} if known else {}
    return ServerPolicy(grants.get, 60.0, remember)


def _handshake(policy: ServerPolicy) -> tuple[Connection, Connection]:
    client, server = Connection(Side.CLIENT), Connection(Side.SERVER)
    header, meta = _split(client.client_hello("team-a", Credential("k1", SECRET), "test"))
    answer, answer_meta = server.server_hello(header, meta, policy, WireLimits(), {"idle_timeout_s": 5.0})
    client.client_hello_answer(answer, answer_meta)
    return client, server


@req("MKV-CONN-001", "MKV-WIRE-011")
def test_handshake_in_memory_then_requests() -> None:
    client, server = _handshake(_policy())
    assert client.state is server.state is State.OPEN
    assert client.tx_key == server.rx_key and client.rx_key == server.tx_key and client.tx_key != client.rx_key
    assert server.role is Role.WRITE and client.hello_args["idle_timeout_s"] == 5.0
    meta = msg.encode_meta({})
    header, _ = _split(encode_frame(Header(Opcode.PING, 1), meta, b"", client.tx_key))
    server.check_request(header, meta)
    with pytest.raises(MemkvError) as info:
        server.check_request(header, meta)  # the same request id again
    assert info.value.code is ErrorCode.UNAUTHENTICATED and server.state is State.CLOSED
    with pytest.raises(ProtocolError):
        server.check_request(header, meta)  # nothing is accepted after a fatal error


@req("MKV-CONN-001", "MKV-SEC-001")
def test_refused_hello_closes_and_hides_key_ids() -> None:
    messages = []
    for policy, secret in ((_policy(known=False), SECRET), (_policy(), os.urandom(32))):
        client, server = Connection(Side.CLIENT), Connection(Side.SERVER)
        header, meta = _split(client.client_hello("team-a", Credential("k1", secret), "test"))
        with pytest.raises(MemkvError) as info:
            server.server_hello(header, meta, policy, WireLimits(), {})
        assert server.state is State.CLOSED
        messages.append((info.value.code, info.value.message))
    assert messages[0] == messages[1] == (ErrorCode.UNAUTHENTICATED, "unknown key or bad signature")


@req("MKV-CONN-001")
def test_client_sends_nothing_before_hello_and_refuses_a_second() -> None:
    client = Connection(Side.CLIENT)
    with pytest.raises(ProtocolError):
        client.handle(Event.REQUEST)
    client.client_hello("team-a", None, "test")
    with pytest.raises(ProtocolError):
        client.client_hello("team-a", None, "test")
