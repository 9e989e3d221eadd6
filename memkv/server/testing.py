"""Helpers to run a memkv server in tests and demos: keys files, in-process and subprocess servers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import yaml

from ..credentials import generate_secret, parse_credential
from ..errors import ErrorCode, MemkvError
from ..wire.connection import Connection as WireConnection
from ..wire.connection import Credential, Side
from ..wire.frames import (
    HEADER_SIZE,
    Header,
    parse_header,
)
from ..wire.opcodes import Opcode
from .config import ServerConfig
from .keyring import KeyRing
from .service import MemkvServer

_LISTEN = re.compile(r"listening on (\S+):(\d+) admin (\S+)")
_S3 = re.compile(r" s3 (http://\S+)")


def write_keys_file(path: str | os.PathLike[str], namespaces: Mapping[str, Iterable[tuple[str, str]]],
                    operators: Iterable[str] = ()) -> dict[str, str]:
    """Write a keys file with fresh secrets (and operator keys of these ids, MKV-ADM-009); returns
    key id -> "<id>:<secret>" credentials."""
    data: dict[str, Any] = {"namespaces": {}}
    creds: dict[str, str] = {}
    for key_id in operators:
        secret = generate_secret()
        data.setdefault("operators", []).append({"id": key_id, "secret": secret})
        creds[key_id] = f"{key_id}:{secret}"
    for ns, keys in namespaces.items():
        entries = []
        for key_id, role in keys:
            secret = generate_secret()
            entries.append({"id": key_id, "secret": secret, "role": role})
            creds[key_id] = f"{key_id}:{secret}"
        data["namespaces"][ns] = entries
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(data, handle)
    return creds


def in_process_server(data_dir: str, keys_file: str | None = None, **settings: Any) -> MemkvServer:
    config = ServerConfig(data_dir=data_dir, listen="127.0.0.1:0", keys_file=keys_file,
                          insecure_no_auth=keys_file is None, capacity=256 * 1024 * 1024)
    config.update(settings)
    server = MemkvServer(config, KeyRing.load(keys_file) if keys_file else None)
    server.start()
    return server


class ServerProcess:
    """`python -m memkv.server ...` in a subprocess; the address is read from its first line."""

    def __init__(self, data_dir: str, keys_file: str | None = None, extra: Iterable[str] = (),
                 capacity: str = "256MiB", startup_timeout: float = 30.0) -> None:
        args = [sys.executable, "-m", "memkv.server", "--data", data_dir, "--listen", "127.0.0.1:0",
                "--capacity", capacity, *extra]
        args += ["--keys", keys_file] if keys_file else ["--insecure-no-auth"]
        self.log_path = Path(data_dir).with_suffix(".log")
        Path(data_dir).parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + startup_timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            match = _LISTEN.search(line.decode("utf-8", "replace"))
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                admin = match.group(3)
                self.admin_url = None if admin == "off" else admin
                s3 = _S3.search(line.decode("utf-8", "replace"))
                self.s3_url = s3.group(1) if s3 else None
                return
            if not line and self.proc.poll() is not None:
                break
        self.proc.kill()
        raise RuntimeError(f"server did not start: {line!r}; log: {self.log_path.read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"memkv+tcp://{self.host}:{self.port}"

    def stdout_rest(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.read().decode("utf-8", "replace")

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


# ---- raw wire helpers (tests that forge, replay or break frames) ---------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a child process to bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        piece = sock.recv(size - len(buf))
        if not piece:
            raise ConnectionError("closed")
        buf += piece
    return buf


def read_frame(sock: socket.socket) -> tuple[Header, bytes]:
    header = parse_header(recv_exact(sock, HEADER_SIZE))
    return header, recv_exact(sock, header.meta_len)


def hello_bytes(namespace: str, cred: str, timestamp_ms: int | None = None, nonce: bytes | None = None
                 ) -> tuple[bytes, bytes]:
    """A signed HELLO (for tests that replay or alter it) and its client nonce."""
    key_id, secret = parse_credential(cred)
    wire = WireConnection(Side.CLIENT)
    frame = wire.client_hello(namespace, Credential(key_id, secret), "memkv-tests", timestamp_ms, nonce)
    return frame, wire.client_nonce


def raw_session(srv: MemkvServer, namespace: str, cred: str) -> tuple[socket.socket, bytes, bytes]:
    return open_raw_session(srv.address, namespace, cred)


def error_code(sock: socket.socket) -> ErrorCode:
    header, _ = read_frame(sock)
    assert header.opcode is Opcode.ERROR
    return ErrorCode(header.status)


def closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def open_raw_session(address: tuple[str, int], namespace: str, cred: str, timeout: float = 5.0
                     ) -> tuple[socket.socket, bytes, bytes]:
    """Like `raw_session`, for any server address (the conformance suite's raw-frame checks).

    Returns the socket after a verified HELLO, and the client-to-server and server-to-client
    connection keys (MKV-WIRE-011).
    """
    sock = socket.create_connection(address, timeout=timeout)
    try:
        key_id, secret = parse_credential(cred)
        wire = WireConnection(Side.CLIENT)
        sock.sendall(wire.client_hello(namespace, Credential(key_id, secret), "memkv-tests"))
        header, meta = read_frame(sock)
        try:
            wire.client_hello_answer(header, meta)
        except MemkvError as exc:
            if header.opcode is Opcode.ERROR:
                raise ConnectionError(f"HELLO refused: {header.opcode.name} {header.status} {exc.message}") from None
            raise
        tx, rx = wire.tx_key, wire.rx_key
        assert tx is not None and rx is not None
    except BaseException:
        sock.close()
        raise
    return sock, tx, rx
