"""Connection set-up and error answers on raw frames (spec/wire.md, MKV-WIRE-008/009)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from memkv.errors import ErrorCode
from memkv.server.service import MemkvServer
from memkv.server.testing import hello_bytes, in_process_server, raw_session, read_frame, write_keys_file
from memkv.wire import messages as msg
from memkv.wire.frames import Header, sign, verify
from memkv.wire.opcodes import Opcode


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemkvServer, dict[str, str]]]:
    root: Path = tmp_path_factory.mktemp("wire")
    creds = write_keys_file(root / "keys.yaml", {"team-a": [("a-writer", "write")]})
    srv = in_process_server(str(root / "data"), str(root / "keys.yaml"), admin_listen="off")
    yield srv, creds
    srv.shutdown()


@pytest.mark.requirement("MKV-WIRE-008")
def test_hello_answer_carries_nonce_version_auth_role_and_limits(served: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = served
    answers = []
    for _ in range(2):
        with socket.create_connection(srv.address, timeout=5) as sock:
            frame, _ = hello_bytes("team-a", creds["a-writer"])
            sock.sendall(frame)
            header, meta = read_frame(sock)
        assert header.opcode is Opcode.HELLO and header.status == 0
        answers.append(msg.MetaReader(meta, 0).args)
    for args in answers:
        assert len(bytes.fromhex(args["server_nonce"])) == 16
        assert args["auth"] is True and args["role"] == "write"
        assert isinstance(args["version"], (list, str, int, dict))
        assert isinstance(args["limits"], dict) and args["limits"]
    assert answers[0]["server_nonce"] != answers[1]["server_nonce"]  # fresh per connection


@pytest.mark.requirement("MKV-WIRE-008")
def test_a_hello_without_a_client_nonce_is_refused(served: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, _ = served
    meta = msg.encode_meta({"namespace": "team-a", "key_id": "a-writer", "timestamp_ms": 0})
    with socket.create_connection(srv.address, timeout=5) as sock:
        sock.sendall(Header(Opcode.HELLO, 0, len(meta)).pack() + meta)
        header, _ = read_frame(sock)
    assert header.opcode is Opcode.ERROR
    assert ErrorCode(header.status) in (ErrorCode.UNAUTHENTICATED, ErrorCode.INVALID_ARGUMENT)


@pytest.mark.requirement("MKV-WIRE-009")
def test_an_error_answer_is_an_error_frame_with_id_code_name_and_message(
        served: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = served
    sock, tx, rx = raw_session(srv, "team-a", creds["a-writer"])
    with sock:
        meta = msg.encode_meta({"session_id": os.urandom(16).hex()})
        sock.sendall(sign(tx, Header(Opcode.SESSION_INFO, 7, len(meta)), meta).pack() + meta)
        header, answer = read_frame(sock)
        verify(rx, header, answer)
    assert header.opcode is Opcode.ERROR and header.request_id == 7
    assert header.status == ErrorCode.UNKNOWN_SESSION
    args = msg.MetaReader(answer, 0).args
    assert args["code"] == int(ErrorCode.UNKNOWN_SESSION) and args["name"] == "UNKNOWN_SESSION"
    assert isinstance(args["message"], str) and args["message"]
