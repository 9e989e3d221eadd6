"""Many clients, slow and malicious clients, malformed input, graceful shutdown (MKV-WIRE-*)."""

from __future__ import annotations

import concurrent.futures
import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import memkv
from memkv import PutItem
from memkv.errors import ErrorCode, MemkvError, Unavailable
from memkv.server.service import MemkvServer
from memkv.server.testing import ServerProcess, in_process_server, write_keys_file
from memkv.server.testing import closed as _closed
from memkv.server.testing import error_code as _error_code
from memkv.server.testing import raw_session as _raw_session
from memkv.server.testing import read_frame as _read_frame
from memkv.wire import messages as msg
from memkv.wire.frames import HEADER_SIZE, Header, sign
from memkv.wire.opcodes import Opcode

req = pytest.mark.requirement


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemkvServer, dict[str, str]]]:
    root = tmp_path_factory.mktemp("robust")
    creds = write_keys_file(root / "keys.yaml", {"ns": [("w", "write")]})
    srv = in_process_server(str(root / "data"), str(root / "keys.yaml"), admin_listen="off",
                            frame_timeout_s=1.0, max_connections=100, unit="128KiB")
    yield srv, creds
    srv.shutdown()


def _client(srv: MemkvServer, cred: str) -> memkv.Transport:
    return memkv.connect(f"memkv+tcp://{srv.address[0]}:{srv.address[1]}", namespace="ns", key=cred)


@req("MKV-OPS-012", "MKV-WIRE-017")
def test_64_concurrent_clients(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    barrier = threading.Barrier(64)

    def work(i: int) -> int:
        t = _client(srv, creds["w"])
        try:
            barrier.wait(timeout=30)
            keys = [os.urandom(16) for _ in range(4)]
            blobs = [os.urandom(64 * 1024 + i) for _ in keys]
            assert all(r.ok for r in t.put([PutItem(k, b) for k, b in zip(keys, blobs, strict=True)]))
            assert t.get(keys) == blobs
            return srv.connection_count()
        finally:
            t.close()

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        counts = list(pool.map(work, range(64)))
    assert max(counts) >= 32  # they really were connected at the same time


@req("MKV-WIRE-017", "MKV-WIRE-018")
def test_slow_loris_does_not_stall_others_and_is_cut(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    slow, tx, _ = _raw_session(srv, "ns", creds["w"])
    meta = msg.encode_meta({})
    frame = sign(tx, Header(Opcode.PING, 1, len(meta)), meta).pack() + meta
    slow.sendall(frame[:10])  # a partial header, then nothing
    t = _client(srv, creds["w"])
    try:
        started = time.monotonic()
        for _ in range(20):
            t.put([PutItem(os.urandom(16), b"fast")])
        assert time.monotonic() - started < 2.0
    finally:
        t.close()
    assert _error_code(slow) is ErrorCode.TIMEOUT  # cut after the partial-frame timeout
    assert _closed(slow)


@req("MKV-WIRE-013", "MKV-WIRE-018", "MKV-ERR-002")
def test_a_payload_that_stalls_gets_one_timeout_and_the_connection_closes(
        server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    sock, tx, _ = _raw_session(srv, "ns", creds["w"])
    key = os.urandom(16)
    meta = msg.encode_meta({}, msg.pack_put_item(key, 8192, 0, memkv.BlockMeta().encode()), 1)
    sock.sendall(sign(tx, Header(Opcode.PUT, 1, len(meta), 8192), meta).pack() + meta + bytes(100))
    header, _ = _read_frame(sock)  # the rest of the payload never comes: cut after the frame timeout
    assert header.opcode is Opcode.ERROR and header.request_id == 1
    assert ErrorCode(header.status) is ErrorCode.TIMEOUT
    ping = msg.encode_meta({})
    try:  # bytes sent now must not be read as the old payload and answered again
        sock.sendall(bytes(8092) + sign(tx, Header(Opcode.PING, 2, len(ping)), ping).pack() + ping)
    except OSError:
        pass
    assert _closed(sock)
    assert srv.engine.exists("ns", [key]) == [False]


@req("MKV-WIRE-004")
def test_goodbye_is_answered_then_the_connection_closes(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    sock, tx, _ = _raw_session(srv, "ns", creds["w"])
    meta = msg.encode_meta({})
    sock.sendall(sign(tx, Header(Opcode.GOODBYE, 1, len(meta)), meta).pack() + meta)
    header, _ = _read_frame(sock)
    assert header.opcode is Opcode.GOODBYE and header.request_id == 1 and header.status == 0
    assert _closed(sock)


@req("MKV-WIRE-019", "MKV-ERR-002")
@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b" " * 40,
    struct.pack("<4sBBBBQIHHQ32s", b"MKVW", 1, 0, 0x6E, 0, 2, 0, 0, 0, 0, bytes(32)),
    struct.pack("<4sBBBBQIHHQ32s", b"MKVW", 1, 0, 0x02, 0, 2, 1 << 30, 0, 0, 0, bytes(32)),
    struct.pack("<4sBBBBQIHHQ32s", b"MKVW", 9, 0, 0x02, 0, 2, 0, 0, 0, 0, bytes(32)),
])
def test_malformed_input_closes_only_that_connection(server: tuple[MemkvServer, dict[str, str]],
                                                     garbage: bytes) -> None:
    srv, creds = server
    bystander = _client(srv, creds["w"])
    try:
        key = os.urandom(16)
        bystander.put([PutItem(key, b"keep")])
        before = srv.engine.stats()["blocks"]
        bad, _, _ = _raw_session(srv, "ns", creds["w"])
        bad.sendall(garbage[:HEADER_SIZE])
        code = _error_code(bad)
        assert code in (ErrorCode.PROTOCOL_ERROR, ErrorCode.LIMIT_EXCEEDED, ErrorCode.UNSUPPORTED_VERSION,
                        ErrorCode.UNAUTHENTICATED)
        assert _closed(bad)
        assert srv.engine.stats()["blocks"] == before
        assert bystander.get([key]) == [b"keep"]
    finally:
        bystander.close()


@req("MKV-BLK-005", "MKV-WIRE-010")
def test_tampered_payload_is_checksum_mismatch_and_not_stored(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    sock, tx, _ = _raw_session(srv, "ns", creds["w"])
    key, payload = os.urandom(16), b"original bytes!!"
    from memkv.checksum import payload_checksum

    meta = msg.encode_meta({}, msg.pack_put_item(key, len(payload), payload_checksum(payload), b""), 1)
    header = sign(tx, Header(Opcode.PUT, 1, len(meta), len(payload)), meta)
    sock.sendall(header.pack() + meta + b"tampered bytes!!")  # MAC still verifies: it covers the checksum
    reply, reply_meta = _read_frame(sock)
    # empty block meta is malformed -> the item is refused; either way nothing is stored
    assert reply.opcode is Opcode.PUT
    [result] = msg.MetaReader(reply_meta, 4).results()
    assert result.status in (ErrorCode.CHECKSUM_MISMATCH, ErrorCode.INVALID_ARGUMENT)
    meta = msg.encode_meta({}, msg.pack_put_item(key, len(payload), payload_checksum(payload),
                                                  memkv.BlockMeta().encode()), 1)
    header = sign(tx, Header(Opcode.PUT, 2, len(meta), len(payload)), meta)
    sock.sendall(header.pack() + meta + b"tampered bytes!!")
    reply, reply_meta = _read_frame(sock)
    assert msg.MetaReader(reply_meta, 4).results()[0].status is ErrorCode.CHECKSUM_MISMATCH
    assert srv.engine.exists("ns", [key]) == [False]
    sock.close()


@req("MKV-WIRE-017")
def test_connection_limit(tmp_path: Path) -> None:
    srv = in_process_server(str(tmp_path / "d"), admin_listen="off", max_connections=2)
    url = f"memkv+tcp://{srv.address[0]}:{srv.address[1]}"
    try:
        held = [memkv.connect(url, namespace="n", pool_size=1) for _ in range(2)]
        with pytest.raises(Unavailable, match="connection limit"):
            memkv.connect(url, namespace="n")
        for t in held:
            t.close()
        deadline = time.monotonic() + 30
        while srv.connection_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        memkv.connect(url, namespace="n").close()
    finally:
        srv.shutdown()


@req("MKV-WIRE-020", "MKV-DUR-001")
def test_sigterm_drains_and_flushes(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    creds = write_keys_file(keys_file, {"ns": [("w", "write")]})
    data = str(tmp_path / "data")
    stored: list[bytes] = []
    errors: list[MemkvError] = []
    with ServerProcess(data, str(keys_file), extra=["--unit", "4KiB"]) as proc:
        t = memkv.connect(proc.url, namespace="ns", key=creds["w"])
        stop = threading.Event()

        def writer() -> None:
            while not stop.is_set():
                key = os.urandom(16)
                try:
                    if t.put([PutItem(key, key * 256)])[0].ok:
                        stored.append(key)
                except MemkvError as exc:
                    errors.append(exc)
                    return

        thread = threading.Thread(target=writer)
        thread.start()
        deadline = time.monotonic() + 60  # SIGTERM mid-load: once a put has been acknowledged (a busy machine is slow)
        while not stored and not errors and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        assert proc.terminate() == 0
        stop.set()
        thread.join(10)
        t.close()
        assert "stopped" in proc.stdout_rest()
    assert stored
    assert all(e.code in (ErrorCode.UNAVAILABLE,) for e in errors), errors
    with ServerProcess(data, str(keys_file), extra=["--unit", "4KiB"]) as proc:
        t = memkv.connect(proc.url, namespace="ns", key=creds["w"])
        assert all(t.exists(stored[i : i + 256]) == [True] * len(stored[i : i + 256])
                   for i in range(0, len(stored), 256))
        t.close()
        assert proc.terminate() == 0
