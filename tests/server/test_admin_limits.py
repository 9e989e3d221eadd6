"""The admin listener bounds what an unauthenticated client can hold: time and connections."""

from __future__ import annotations

import os
import socket
import stat
import time
import urllib.request
from pathlib import Path

import pytest

from memkv.errors import ErrorCode, MemkvError
from memkv.server import admin
from memkv.server.keyring import KeyRing
from memkv.server.testing import in_process_server, write_keys_file


def _admin_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    write_keys_file(tmp_path / "keys.yaml", {"ns": [("adm", "admin")]})
    srv = in_process_server(str(tmp_path / "data"), str(tmp_path / "keys.yaml"), admin_listen="127.0.0.1:0")
    return srv, srv.admin_address


def _health(address: tuple[str, int]) -> int:
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}/v1/health", timeout=5) as answer:
        return int(answer.status)


def test_a_client_that_sends_half_a_body_is_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin._Handler, "timeout", 0.5)
    srv, address = _admin_server(tmp_path)
    try:
        with socket.create_connection(address, timeout=5) as sock:
            sock.sendall(b"POST /v1/namespaces/ns/invalidate HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 65536\r\n\r\n{")
            started = time.monotonic()
            sock.settimeout(5)
            while sock.recv(4096):
                pass  # the server answers or just closes; either way it must let go
            assert time.monotonic() - started < 4
        assert _health(address) == 200
    finally:
        srv.shutdown()


def test_connections_beyond_the_cap_are_closed_and_the_rest_still_served(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "MAX_ADMIN_CONNECTIONS", 4)
    srv, address = _admin_server(tmp_path)
    idle = [socket.create_connection(address, timeout=5) for _ in range(4)]
    try:
        time.sleep(0.3)  # the four handler threads are now waiting for request lines
        with socket.create_connection(address, timeout=5) as extra:
            extra.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert extra.recv(4096) == b""  # refused: closed without an answer
        for sock in idle:
            sock.close()
        deadline = time.monotonic() + 5
        while True:  # slots come back as the idle handlers see their clients go
            try:
                assert _health(address) == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        for sock in idle:
            sock.close()
        srv.shutdown()


@pytest.mark.requirement("MKV-NS-008")
@pytest.mark.parametrize("mode", [0o602, 0o620, 0o644])
def test_keys_files_writable_or_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys.yaml"
    write_keys_file(path, {"ns": [("k", "write")]})
    os.chmod(path, mode)
    with pytest.raises(MemkvError) as caught:
        KeyRing.load(str(path))
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    assert KeyRing.load(str(path)) is not None
