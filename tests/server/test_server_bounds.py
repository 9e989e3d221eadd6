"""Bounded and fair under attack (MKV-SEC-050..052, MKV-ADM-030, MKV-ADM-031).

Connections that never authenticate cannot take authenticated clients' slots, numbers in JSON
are bounded before conversion, the admin API stays on loopback unless configured, slow admin
clients from one address cannot silence /v1/health, and keys-file errors quote no secret.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import memkv
from memkv import PutItem
from memkv.errors import ErrorCode, InvalidArgument
from memkv.server import admin
from memkv.server.config import ServerConfig
from memkv.server.keyring import KeyRing
from memkv.server.service import MemkvServer
from memkv.server.testing import error_code, in_process_server, raw_session, read_frame, write_keys_file
from memkv.wire import messages as msg
from memkv.wire.frames import Header, sign
from memkv.wire.opcodes import Opcode

req = pytest.mark.requirement
HUGE = "7" * 5000  # Python itself refuses int() of more than 4,300 digits with a ValueError


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[MemkvServer, dict[str, str]]]:
    creds = write_keys_file(tmp_path / "keys.yaml", {"ns": [("w", "write"), ("adm", "admin")]})
    srv = in_process_server(str(tmp_path / "data"), str(tmp_path / "keys.yaml"), admin_listen="127.0.0.1:0",
                            max_connections=24, max_unauthenticated=8, max_unauthenticated_per_peer=4,
                            hello_timeout_s=1.0, unit="128KiB")
    yield srv, creds
    srv.shutdown()


def _client(srv: MemkvServer, cred: str) -> memkv.Transport:
    return memkv.connect(f"memkv+tcp://{srv.address[0]}:{srv.address[1]}", namespace="ns", key=cred)


def _silent(srv: MemkvServer, count: int, source: str) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        socks.append(socket.create_connection(srv.address, timeout=5, source_address=(source, 0)))
    return socks


@req("MKV-SEC-051")
def test_silent_connections_cannot_starve_authenticated_clients(server: tuple[MemkvServer, dict[str, str]]) -> None:
    """40 connections from one address that never authenticate (the old server gave them every
    slot): the address holds at most its per-peer share; other clients connect and are served."""
    srv, creds = server
    early = _client(srv, creds["w"])
    silent = _silent(srv, 40, "127.0.0.2")
    try:
        time.sleep(0.2)
        for i in range(10):
            t = _client(srv, creds["w"])
            try:
                assert t.put([PutItem(os.urandom(16), b"x" * (i + 1))])[0].ok
            finally:
                t.close()
        # many addresses together fill the unauthenticated budget, never the authenticated slots
        silent += [s for host in range(3, 10) for s in _silent(srv, 4, f"127.0.0.{host}")]
        time.sleep(0.2)
        assert srv.connection_count() <= 8 + 1
        assert early.put([PutItem(os.urandom(16), b"still served")])[0].ok
    finally:
        early.close()
        for sock in silent:
            sock.close()


@req("MKV-SEC-051")
def test_a_connection_that_does_not_authenticate_is_cut_quickly(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, _ = server
    with socket.create_connection(srv.address, timeout=10) as sock:
        started = time.monotonic()
        assert error_code(sock) is ErrorCode.TIMEOUT
        assert time.monotonic() - started < 3.0  # hello_timeout_s=1.0, not the 10 s frame timeout


def _frame_with_args(tx: bytes, args_json: str, request_id: int = 1) -> bytes:
    raw = args_json.encode()
    meta = len(raw).to_bytes(4, "little") + raw + (0).to_bytes(4, "little")
    return sign(tx, Header(Opcode.STATS, request_id, len(meta)), meta).pack() + meta


@req("MKV-SEC-050")
def test_a_huge_json_integer_in_a_signed_frame_gets_an_error_frame(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    sock, tx, _ = raw_session(srv, "ns", creds["w"])
    with sock:
        sock.sendall(_frame_with_args(tx, '{"n": ' + HUGE + "}"))
        header, meta = read_frame(sock)
        assert header.opcode is Opcode.ERROR and ErrorCode(header.status) is ErrorCode.PROTOCOL_ERROR
        assert "number" in msg.MetaReader(meta, 0).args["message"]


@req("MKV-SEC-050")
def test_a_huge_json_integer_before_hello_gets_an_error_frame(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, _ = server
    raw = ('{"timestamp_ms": ' + HUGE + "}").encode()
    meta = len(raw).to_bytes(4, "little") + raw + (0).to_bytes(4, "little")
    with socket.create_connection(srv.address, timeout=5) as sock:
        sock.sendall(Header(Opcode.HELLO, 0, len(meta)).pack() + meta)
        assert error_code(sock) in (ErrorCode.PROTOCOL_ERROR, ErrorCode.UNAUTHENTICATED, ErrorCode.LIMIT_EXCEEDED)


@req("MKV-SEC-050")
def test_a_huge_json_integer_on_the_admin_api_is_400(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    host, port = srv.admin_address or ("", 0)
    conn = http.client.HTTPConnection(host, port, timeout=5)
    body = ('{"keys": [], "lease_ms": ' + HUGE + "}").encode()
    conn.request("POST", "/v1/namespaces/ns/invalidate", body=body,
                 headers={"Authorization": f"Bearer {creds['adm']}", "Content-Type": "application/json"})
    answer = conn.getresponse()
    assert answer.status == 400, answer.read()
    conn.close()


@req("MKV-ADM-030")
def test_the_admin_api_stays_on_loopback_when_data_listens_everywhere(tmp_path: Path) -> None:
    assert ServerConfig(listen="0.0.0.0:9900").admin_address() == ("127.0.0.1", 9901)
    assert ServerConfig(listen="0.0.0.0:9900", admin_listen="0.0.0.0:7000").admin_address() == ("0.0.0.0", 7000)
    srv = in_process_server(str(tmp_path / "data"), None, insecure_no_auth=True, listen="0.0.0.0:0")
    try:
        assert srv.address[0] == "0.0.0.0" and srv.admin_address is not None
        assert srv.admin_address[0] == "127.0.0.1"
    finally:
        srv.shutdown()


@req("MKV-ADM-031")
def test_slow_admin_clients_from_one_address_leave_health_answering(
        server: tuple[MemkvServer, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, _ = server
    monkeypatch.setattr(admin, "MAX_ADMIN_PER_PEER", 4)
    address = srv.admin_address
    assert address is not None
    slow = [socket.create_connection(address, timeout=5, source_address=("127.0.0.1", 0)) for _ in range(12)]
    try:
        time.sleep(0.3)
        for _ in range(5):  # another address on the loopback network is still answered
            health = socket.create_connection(address, timeout=5, source_address=("127.0.0.2", 0))
            with health:
                health.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := health.recv(4096):
                    answer += chunk
            assert b" 200 " in answer.split(b"\r\n")[0], answer[:80]
    finally:
        for sock in slow:
            sock.close()


@req("MKV-SEC-052")
@pytest.mark.parametrize("suffix,text", [
    (".yaml", "namespaces:\n  ns:\n    - {id: k, secret: \"{secret}\", role: write\n      broken: [\n"),
    (".toml", "[namespaces]\nns = [{id = \"k\", secret = \"{secret}\", role = write}]\n"),
    (".yaml", "namespaces: {ns: [{id: k, secret: '{secret}\xff', role: write}]}\n"),
])
def test_a_malformed_keys_file_never_quotes_its_secret(tmp_path: Path, suffix: str, text: str) -> None:
    secret = os.urandom(32).hex()
    path = tmp_path / f"keys{suffix}"
    path.write_bytes(text.replace("{secret}", secret).encode("utf-8", "surrogateescape").replace(
        "\xff".encode(), b"\xff"))
    path.chmod(0o600)
    with pytest.raises(InvalidArgument) as refused:
        KeyRing.load(str(path))
    message = str(refused.value)
    assert str(path) in message
    assert not any(secret[i : i + 6] in message for i in range(len(secret) - 6)), message


@req("MKV-SEC-050")
def test_a_content_length_of_thousands_of_digits_is_400(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    address = srv.admin_address
    assert address is not None
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"POST /v1/namespaces/ns/invalidate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + creds["adm"].encode() + b"\r\nContent-Length: " + HUGE.encode() + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"400", answer[:200]
