"""Namespaces and authentication over the wire (MKV-NS-*, MKV-WIRE-010..012)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

import memkv
from memkv import PutItem
from memkv.credentials import parse_credential
from memkv.errors import ErrorCode, PermissionDenied, Unauthenticated
from memkv.server.keyring import KeyRing
from memkv.server.service import MemkvServer
from memkv.server.testing import (
    closed as _closed,
)
from memkv.server.testing import (
    error_code as _error_code,
)
from memkv.server.testing import (
    hello_bytes as _hello_bytes,
)
from memkv.server.testing import (
    in_process_server,
    write_keys_file,
)
from memkv.server.testing import (
    raw_session as _raw_session,
)
from memkv.server.testing import (
    read_frame as _read_frame,
)
from memkv.wire import messages as msg
from memkv.wire.frames import (
    Header,
    sign,
)
from memkv.wire.opcodes import Opcode

req = pytest.mark.requirement


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemkvServer, dict[str, str]]]:
    root = tmp_path_factory.mktemp("auth")
    creds = write_keys_file(root / "keys.yaml", {
        "team-a": [("a-reader", "read"), ("a-writer", "write"), ("a-admin", "admin")],
        "team-b": [("b-writer", "write")]})
    srv = in_process_server(str(root / "data"), str(root / "keys.yaml"), admin_listen="off", frame_timeout_s=2)
    yield srv, creds
    srv.shutdown()


def _url(srv: MemkvServer) -> str:
    return f"memkv+tcp://{srv.address[0]}:{srv.address[1]}"


@req("MKV-NS-005")
def test_wrong_secret_and_unknown_key(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    key_id, _ = parse_credential(creds["a-writer"])
    with pytest.raises(Unauthenticated):
        memkv.connect(_url(srv), namespace="team-a", key=f"{key_id}:{'00' * 32}")
    with pytest.raises(Unauthenticated):
        memkv.connect(_url(srv), namespace="team-a", key=f"nobody:{'11' * 32}")
    with pytest.raises(Unauthenticated):
        memkv.connect(_url(srv), namespace="team-a")


@req("MKV-NS-001", "MKV-NS-006")
def test_cross_namespace_and_roles(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    with pytest.raises(PermissionDenied):
        memkv.connect(_url(srv), namespace="team-b", key=creds["a-writer"])
    a = memkv.connect(_url(srv), namespace="team-a", key=creds["a-writer"])
    b = memkv.connect(_url(srv), namespace="team-b", key=creds["b-writer"])
    reader = memkv.connect(_url(srv), namespace="team-a", key=creds["a-reader"])
    try:
        key = os.urandom(16)
        assert a.put([PutItem(key, b"secret-a")])[0].ok
        assert b.exists([key]) == [False] and b.get([key]) == [None]
        assert b.invalidate_keys([key]) == 0 and a.exists([key]) == [True]
        assert reader.get([key]) == [b"secret-a"]
        with pytest.raises(PermissionDenied):
            reader.put([PutItem(os.urandom(16), b"x")])
        with pytest.raises(PermissionDenied):
            a.invalidate_namespace()
        assert reader.ping() >= 0  # type: ignore[attr-defined]  # the connection survives a refusal
        stats = b.stats()
        assert "team-a" not in str(stats)
    finally:
        for t in (a, b, reader):
            t.close()


@req("MKV-WIRE-010")
def test_forged_frame_is_refused_and_connection_closed(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    sock, _tx, _ = _raw_session(srv, "team-a", creds["a-writer"])
    meta = msg.encode_meta({})
    forged = sign(os.urandom(32), Header(Opcode.PING, 1, len(meta)), meta)
    sock.sendall(forged.pack() + meta)
    assert _error_code(sock) is ErrorCode.UNAUTHENTICATED
    assert _closed(sock)


@req("MKV-WIRE-012")
def test_replayed_frame_is_refused(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    sock, tx, _ = _raw_session(srv, "team-a", creds["a-writer"])
    key = os.urandom(16)
    items = msg.pack_keys([key])
    meta = msg.encode_meta({}, items, 1)
    frame = sign(tx, Header(Opcode.DELETE, 5, len(meta)), meta).pack() + meta
    sock.sendall(frame)
    header, _ = _read_frame(sock)
    assert header.opcode is Opcode.DELETE
    sock.sendall(frame)  # the very same signed bytes again
    assert _error_code(sock) is ErrorCode.UNAUTHENTICATED
    assert _closed(sock)


@req("MKV-WIRE-012", "MKV-WIRE-011")
def test_replayed_or_stale_hello_is_refused(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    frame, _ = _hello_bytes("team-a", creds["a-reader"])
    for expected in (Opcode.HELLO, Opcode.ERROR):
        sock = socket.create_connection(srv.address, timeout=5)
        sock.sendall(frame)
        header, _ = _read_frame(sock)
        assert header.opcode is expected
        sock.close()
    stale, _ = _hello_bytes("team-a", creds["a-reader"], timestamp_ms=int(time.time() * 1000) - 3_600_000)
    sock = socket.create_connection(srv.address, timeout=5)
    sock.sendall(stale)
    assert _error_code(sock) is ErrorCode.UNAUTHENTICATED


@req("MKV-WIRE-011")
def test_frame_before_hello_is_refused(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, _ = server
    sock = socket.create_connection(srv.address, timeout=5)
    meta = msg.encode_meta({})
    sock.sendall(Header(Opcode.PING, 1, len(meta)).pack() + meta)
    assert _error_code(sock) is ErrorCode.UNAUTHENTICATED
    assert _closed(sock)


@req("MKV-NS-007")
def test_client_with_key_refuses_unauthenticated_server(tmp_path: os.PathLike[str]) -> None:
    srv = in_process_server(os.path.join(tmp_path, "d"), admin_listen="off")
    try:
        with pytest.raises(Unauthenticated):
            memkv.connect(_url(srv), namespace="x", key=f"k:{'00' * 32}")
        t = memkv.connect(_url(srv), namespace="anything")
        assert t.put([PutItem(os.urandom(16), b"dev")])[0].ok
        assert "secure" not in t.capabilities().profiles
        t.close()
    finally:
        srv.shutdown()


@req("MKV-NS-008")
def test_keys_file_must_not_be_world_readable(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "keys.yaml")
    write_keys_file(path, {"ns": [("k", "read")]})
    os.chmod(path, 0o644)
    with pytest.raises(memkv.MemkvError, match="readable or writable by every user"):
        KeyRing.load(path)
    os.chmod(path, 0o600)
    assert KeyRing.load(path).get("k") is not None
