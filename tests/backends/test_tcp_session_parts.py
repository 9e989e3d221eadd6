"""The parts of a cluster session over memkv+tcp (MKV-WIRE-052..055): the client side.

What a server must do with the arguments is checked over raw frames by
memkv/conformance/checks/test_wire_sessions.py; here, that the client sends them only on a
connection that settled minor 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import memkv
from memkv import PutItem
from memkv.backends.tcp import TcpTransport
from memkv.errors import InvalidArgument, UnsupportedVersion
from memkv.server.service import MemkvServer
from memkv.server.testing import in_process_server
from memkv.sessions import SessionState
from memkv.transport_features import SpansSessions

req = pytest.mark.requirement
HOUR = 3600.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemkvServer]:
    srv = in_process_server(str(tmp_path_factory.mktemp("parts") / "data"), admin_listen="off", unit="128KiB")
    yield srv
    srv.shutdown()


@pytest.fixture
def tcp(server: MemkvServer) -> Iterator[TcpTransport]:
    t = memkv.connect(f"memkv+tcp://{server.address[0]}:{server.address[1]}", namespace="parts")
    assert isinstance(t, TcpTransport)
    yield t
    t.close()


@req("MKV-WIRE-052", "MKV-WIRE-053", "MKV-WIRE-054")
def test_a_part_under_the_clients_id_with_foreign_keys_resumed_to_a_stated_prefix(tcp: TcpTransport) -> None:
    assert isinstance(tcp, SpansSessions)
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
def test_no_part_is_sent_on_a_connection_that_settled_minor_1(server: MemkvServer, tcp: TcpTransport) -> None:
    conn = tcp.connection()
    conn.wire.minor = 1  # as after a HELLO answered by a 1.1 server
    before = len(server.engine.sessions("parts"))
    calls = [lambda: tcp.open_part("x" * 8, HOUR, [], bytes(16), foreign=False),
             lambda: tcp.append_part("x" * 8, [], foreign=True),
             lambda: tcp.resume_part("x" * 8, 0),
             lambda: tcp.fork_part("x" * 8, "y" * 8, None, None)]
    for call in calls:
        with pytest.raises(UnsupportedVersion):
            call()
    assert len(server.engine.sessions("parts")) == before
    assert tcp.open_session(HOUR).state is SessionState.OPEN  # the 1.1 operations still work
