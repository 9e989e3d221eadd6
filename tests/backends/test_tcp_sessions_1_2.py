"""Sessions of wire 1.2 over memkv+tcp: longer than one frame's `max_items` (256) (MKV-SES-012,
MKV-WIRE-050/051), and the parts of a cluster session (MKV-WIRE-052..055, client side; what a server
does with them is checked over raw frames by memkv/conformance/checks/test_wire_sessions.py).

1.1 bounded every answer by `max_items` and also put the whole chain in every session answer: the
server applied the 257th append, then sent an answer the client refused, and every later answer
about the session failed. A client of minor 2 now receives the whole chain; a peer that settled
minor 1 is refused before anything is applied.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import memkv
from memkv import PutItem
from memkv.backends.tcp import TcpTransport
from memkv.errors import ErrorCode, InvalidArgument, Unsupported
from memkv.server.service import MemkvServer
from memkv.server.testing import in_process_server, read_frame
from memkv.sessions import SessionInfo, SessionState
from memkv.transport import Transport
from memkv.transport_features import SpansSessions
from memkv.wire import messages as msg
from memkv.wire import records as rec
from memkv.wire.connection import Connection as WireConnection
from memkv.wire.connection import Side
from memkv.wire.frames import DEFAULT_MAX_META, Header
from memkv.wire.opcodes import Opcode
from memkv.wire.session_answers import MAX_SESSION_BLOCKS_ON_THE_WIRE

req = pytest.mark.requirement
HOUR = 3600.0
NAMESPACE = "long"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemkvServer]:
    srv = in_process_server(str(tmp_path_factory.mktemp("long") / "data"), admin_listen="off", unit="128KiB")
    yield srv
    srv.shutdown()


@pytest.fixture
def tcp(server: MemkvServer) -> Iterator[Transport]:
    t = memkv.connect(f"memkv+tcp://{server.address[0]}:{server.address[1]}", namespace=NAMESPACE)
    yield t
    t.close()


def _stored_keys(t: Transport, count: int) -> list[bytes]:
    keys = [os.urandom(16) for _ in range(count)]
    for start in range(0, count, 200):
        assert all(r.ok for r in t.put([PutItem(k, b"x") for k in keys[start:start + 200]]))
    return keys


@req("MKV-SES-012", "MKV-WIRE-050")
def test_a_session_of_300_appended_keys_works_over_tcp(tcp: Transport) -> None:
    keys = _stored_keys(tcp, 300)
    sid = tcp.open_session(HOUR).session_id
    for key in keys:  # one append at a time: the 257th answer is the one 1.1 could not carry
        info = tcp.append(sid, [key])
    assert info.keys == tuple(keys)
    assert tcp.session_info(sid).keys == tuple(keys)
    assert tcp.suspend(sid, HOUR).keys == tuple(keys)
    resumed = tcp.resume(sid)
    assert resumed.valid_keys == tuple(keys) and resumed.session.state is SessionState.OPEN
    fork = tcp.fork(sid)
    assert fork.keys == tuple(keys)
    assert tcp.fork(sid, prefix_len=290).keys == tuple(keys[:290])
    assert tcp.close_session(sid).keys == tuple(keys)
    assert tcp.close_session(fork.session_id).state is SessionState.CLOSED


@req("MKV-SES-012", "MKV-WIRE-050")
def test_a_session_opened_with_more_keys_than_one_frame_holds_is_refused_whole_not_half_applied(
        tcp: Transport) -> None:
    """open carries its keys in one request, so more than max_items is a refused frame; the
    client does not split it (the spec's way is open, then append)."""
    keys = _stored_keys(tcp, 300)
    with pytest.raises(memkv.MemkvError) as caught:
        tcp.open_session(HOUR, keys)
    assert caught.value.code is ErrorCode.LIMIT_EXCEEDED
    sid = tcp.open_session(HOUR, keys[:200]).session_id
    assert tcp.append(sid, keys[200:]).keys == tuple(keys)


class _OldPeer:
    """A raw connection that settles minor version 1 in its HELLO, as a 1.1 client does."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        hello = bytearray(WireConnection(Side.CLIENT).client_hello(NAMESPACE, None, "memkv-tests-1.1"))
        hello[5] = 1  # the header's minor version (no MAC without authentication)
        self.sock.sendall(bytes(hello))
        header, meta = read_frame(self.sock)
        assert header.opcode is Opcode.HELLO, header
        assert msg.MetaReader(meta, 0).args["version"] == "1.1"
        self.request_id = 0

    def call(self, opcode: Opcode, args: dict[str, Any], keys: tuple[bytes, ...] = ()) -> tuple[Header, int]:
        """Send one request; the answer's opcode header and its item count."""
        self.request_id += 1
        meta = msg.encode_meta(args, msg.pack_keys(keys), len(keys))
        self.sock.sendall(Header(opcode, self.request_id, len(meta), minor=1).pack() + meta)
        header, answer = read_frame(self.sock)
        return header, msg.MetaReader(answer, 1 << 20).count

    def close(self) -> None:
        self.sock.close()


@req("MKV-WIRE-051")
def test_a_minor_1_peer_is_refused_before_anything_is_applied(server: MemkvServer, tcp: Transport) -> None:
    keys = _stored_keys(tcp, 300)
    long_sid = tcp.open_session(HOUR, keys[:200]).session_id
    tcp.append(long_sid, keys[200:])
    short_sid = tcp.open_session(HOUR, keys[:250]).session_id
    old = _OldPeer(server.address)
    sessions_before = len(server.engine.sessions(NAMESPACE))
    try:
        header, count = old.call(Opcode.SESSION_INFO, {"session_id": short_sid})
        assert header.opcode is Opcode.SESSION_INFO and count == 250  # what fits is answered as before
        refused = [
            (Opcode.SESSION_APPEND, {"session_id": short_sid}, tuple(keys[250:260])),  # would grow past 256
            (Opcode.SESSION_FORK, {"session_id": long_sid, "prefix_len": 257}, ()),
            (Opcode.SESSION_INFO, {"session_id": long_sid}, ()),
            (Opcode.SESSION_SUSPEND, {"session_id": long_sid, "pause_ttl_s": HOUR}, ()),
            (Opcode.SESSION_CLOSE, {"session_id": long_sid}, ()),
        ]
        for opcode, args, items in refused:
            header, _ = old.call(opcode, args, items)
            assert (header.opcode, header.status) == (Opcode.ERROR, ErrorCode.LIMIT_EXCEEDED), opcode
        header, count = old.call(Opcode.SESSION_FORK, {"session_id": long_sid, "prefix_len": 256})
        assert header.opcode is Opcode.SESSION_FORK and count == 256
    finally:
        old.close()
    assert tcp.session_info(short_sid).keys == tuple(keys[:250])  # the refused append changed nothing
    long_info = tcp.session_info(long_sid)
    assert long_info.state is SessionState.OPEN and long_info.keys == tuple(keys)  # neither suspended nor closed
    assert len(server.engine.sessions(NAMESPACE)) == sessions_before + 1  # only the fork that fits


def test_the_old_peer_helper_speaks_minor_1(server: MemkvServer) -> None:
    """The refusals above are to a peer of minor 1, not an artefact of a malformed raw frame: the
    same helper's PING is answered."""
    old = _OldPeer(server.address)
    try:
        header, _ = old.call(Opcode.PING, {})
        assert header.opcode is Opcode.PING and header.minor == 1
    finally:
        old.close()


@req("MKV-WIRE-050")
def test_the_longest_declared_session_fits_in_one_answer(server: MemkvServer) -> None:
    """A server declares no more than 1,048,576 keys a session, and an answer of that many fits in
    the answer metadata bound that every client applies."""
    limit = server.capabilities().limits.max_session_blocks
    assert limit <= MAX_SESSION_BLOCKS_ON_THE_WIRE == 1_048_576
    keys = (bytes(16),) * MAX_SESSION_BLOCKS_ON_THE_WIRE
    info = SessionInfo("s" * 64, SessionState.SUSPENDED, keys, 2592000.0, 4e9, "p" * 64, bytes(16))
    meta = msg.encode_meta(rec.session_answer(info), msg.pack_keys(keys), len(keys))
    assert len(meta) <= DEFAULT_MAX_META


@req("MKV-WIRE-052", "MKV-WIRE-053", "MKV-WIRE-054")
def test_a_part_under_the_clients_id_with_foreign_keys_resumed_to_a_stated_prefix(tcp: Transport) -> None:
    assert isinstance(tcp, TcpTransport) and isinstance(tcp, SpansSessions)
    here, elsewhere = os.urandom(16), os.urandom(16)
    assert tcp.put([PutItem(here, b"x")])[0].ok
    sid = "abcd0123-" + os.urandom(16).hex()
    opened = tcp.open_part(sid, HOUR, [here, elsewhere], bytes(16), foreign=True)
    assert (opened.session_id, opened.keys) == (sid, (here, elsewhere))
    with pytest.raises(InvalidArgument):
        tcp.open_part(sid, HOUR, [], bytes(16), foreign=False)
    assert tcp.append_part(sid, [elsewhere], foreign=True).keys == (here, elsewhere, elsewhere)
    tcp.suspend(sid, HOUR)
    assert tcp.resume(sid).valid_keys == (here,)  # without a stated prefix: what this target stores
    tcp.suspend(sid, HOUR)
    fork = tcp.fork_part(sid, sid + "-f", 1, None)
    assert (fork.session_id, fork.parent_id, fork.keys) == (sid + "-f", sid, (here,))
    resumed = tcp.resume_part(sid, 1)
    assert resumed.state is SessionState.OPEN and resumed.keys == (here,)


@req("MKV-WIRE-055")
def test_no_part_is_sent_on_a_connection_that_settled_minor_1(server: MemkvServer, tcp: Transport) -> None:
    assert isinstance(tcp, TcpTransport)
    conn = tcp.connection()
    conn.wire.minor = 1  # as after a HELLO answered by a 1.1 server
    before = len(server.engine.sessions(NAMESPACE))
    calls = [lambda: tcp.open_part("x" * 8, HOUR, [], bytes(16), foreign=False),
             lambda: tcp.append_part("x" * 8, [], foreign=True),
             lambda: tcp.resume_part("x" * 8, 0),
             lambda: tcp.fork_part("x" * 8, "y" * 8, None, None)]
    for call in calls:
        with pytest.raises(Unsupported, match=r"speaks wire 1\.1"):
            call()
    assert len(server.engine.sessions(NAMESPACE)) == before
    assert tcp.open_session(HOUR).state is SessionState.OPEN  # the 1.1 operations still work
