"""CHILDREN through the memkv+tcp client (spec/wire.md MKV-WIRE-044, MKV-WIRE-045): pages in key order,
and never sent to a server whose HELLO answer says 1.1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from memkv import PutItem
from memkv.backends.tcp import TcpTransport
from memkv.blocks import BlockMeta
from memkv.children import ListsChildren
from memkv.errors import Unsupported
from memkv.server.service import MemkvServer
from memkv.server.testing import in_process_server
from memkv.wire import connection as wire_connection


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MemkvServer]:
    srv = in_process_server(str(tmp_path / "data"), admin_listen="off", unit=4096)
    yield srv
    srv.shutdown()


def _client(srv: MemkvServer) -> TcpTransport:
    return TcpTransport(srv.address[0], srv.address[1], namespace="kids")


@pytest.mark.requirement("MKV-WIRE-044")
def test_children_come_in_pages_of_max_items(server: MemkvServer) -> None:
    with _client(server) as client:
        assert isinstance(client, ListsChildren)
        parent, other = os.urandom(16), os.urandom(16)
        kids = sorted(os.urandom(16) for _ in range(300))
        for start in range(0, 300, 100):
            client.put([PutItem(k, b"kid", BlockMeta(parent=parent)) for k in kids[start:start + 100]])
        client.put([PutItem(os.urandom(16), b"not a kid", BlockMeta(parent=other))])
        page = client.children([parent])
        max_items = client.connection().limits.max_items
        assert list(page.keys) == kids[:max_items] and page.next == kids[max_items - 1]
        last = client.children([parent], page.next)
        assert list(last.keys) == kids[max_items:] and last.next is None
        assert client.children([os.urandom(16)]).keys == ()
        assert client.exists(kids[:3]) == [True] * 3  # a read: nothing removed


@pytest.mark.requirement("MKV-WIRE-045")
def test_a_server_that_answers_1_1_is_never_sent_children(server: MemkvServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire_connection, "VERSION_MINOR", 1)  # the server side of HELLO answers "1.1"
    with _client(server) as client:
        assert client.connection().server_info["version"] == "1.1"
        with pytest.raises(Unsupported, match=r"CHILDREN needs wire 1\.2.*speaks 1\.1"):
            client.children([os.urandom(16)])
        assert client.ping() > 0 and len(client._conns) == 1 and not client._conns[0].closed  # still usable
