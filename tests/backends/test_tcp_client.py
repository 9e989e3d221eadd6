"""The memkv+tcp client against a live server: what is particular to this client (one pipelined connection,
URL options, streamed gets, timeouts) and the same outcomes as the file backend. What every backend must do
is checked by the conformance checks, which run against this client as `memkv/conformance/checks/...[tcp]`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import memkv
from memkv import PutItem, aligned_buffer
from memkv.backends.tcp import TcpTransport
from memkv.errors import (
    ErrorCode,
    InvalidArgument,
)
from memkv.server.service import MemkvServer
from memkv.server.testing import in_process_server, write_keys_file
from memkv.store.embedded import FileTransport
from memkv.transport import Transport

req = pytest.mark.requirement
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemkvServer, dict[str, str]]]:
    root = tmp_path_factory.mktemp("tcp")
    creds = write_keys_file(root / "keys.yaml", {"team-a": [("a-writer", "write"), ("a-admin", "admin")],
                                                  "team-b": [("b-writer", "write")]})
    srv = in_process_server(str(root / "data"), str(root / "keys.yaml"), admin_listen="off")
    yield srv, creds
    srv.shutdown()


def _url(srv: MemkvServer) -> str:
    return f"memkv+tcp://{srv.address[0]}:{srv.address[1]}"


@pytest.fixture
def tcp(server: tuple[MemkvServer, dict[str, str]]) -> Iterator[Transport]:
    srv, creds = server
    t = memkv.connect(_url(srv), namespace="team-a", key=creds["a-admin"])
    t.invalidate_namespace()
    yield t
    t.close()


@req("MKV-WIRE-014", "MKV-WIRE-015")
@pytest.mark.parametrize("size", [1 * MiB + 7, 16 * MiB])
def test_large_blocks_are_received_into_the_callers_aligned_buffer(tcp: Transport, size: int) -> None:
    """The client side of the zero-copy path; what any backend must return is checked by
    memkv/conformance/checks/test_blocks.py on every backend."""
    key, data = os.urandom(16), os.urandom(size)
    assert tcp.put([PutItem(key, data)])[0].ok
    buf = aligned_buffer(size + 100)
    [res] = tcp.get_into([key], [buf])
    assert res.ok and res.length == size
    assert bytes(buf[:size]) == data
    assert tcp.get([key]) == [data]


@req("MKV-OPS-010", "MKV-WIRE-013")
def test_async_pipelined_on_one_connection(server: tuple[MemkvServer, dict[str, str]]) -> None:
    srv, creds = server
    t = TcpTransport(*srv.address, namespace="team-a", key=creds["a-writer"], pool_size=1)
    try:
        keys = [os.urandom(16) for _ in range(32)]
        futures = [t.put_async([PutItem(k, k * 1000)]) for k in keys]
        assert all(f.result()[0].ok for f in futures)
        bufs = [bytearray(16000) for _ in keys]
        gets = [t.get_into_async([k], [b]) for k, b in zip(keys, bufs, strict=True)]
        assert all(g.result()[0].ok for g in gets)
        assert all(bytes(b) == k * 1000 for k, b in zip(keys, bufs, strict=True))
        assert len(t._conns) == 1
    finally:
        t.close()


def _scenario(t: Transport) -> list[Any]:
    """A mixed scenario whose observable outcome must be the same on every backend."""
    k1, k2 = bytes(range(16)), bytes(range(1, 17))
    out: list[Any] = []
    out.append([r.status for r in t.put([PutItem(k1, b"a" * 100), PutItem(k1, b"b" * 100), PutItem(k2, b"")])])
    out.append([r.status for r in t.get_into([k1, k2, b"x"], [bytearray(100), bytearray(1), bytearray(1)])])
    out.append(t.exists([k1, k2]))
    for call in (lambda: t.session_info("nope"), lambda: t.release_lease("nope"), lambda: t.fork("nope"),
                 lambda: t.open_session(-1), lambda: t.lookup([k1], lease_ms=-1), lambda: t.append("x", [k1]),
                 lambda: t.invalidate_prefix(b"x"), lambda: t.invalidate_model(b"x"),
                 lambda: t.get_into([k1], []), lambda: t.open_session(10, [k2])):
        try:
            call()
            out.append("ok")
        except memkv.MemkvError as exc:
            out.append(exc.code)
    s = t.open_session(10, [k1])
    t.close_session(s.session_id)
    for call in (lambda: t.close_session(s.session_id), lambda: t.resume(s.session_id)):
        try:
            call()
            out.append("ok")
        except memkv.MemkvError as exc:
            out.append(exc.code)
    out.append(t.invalidate_namespace())
    return out


@req("MKV-PRO-001", "MKV-ERR-001")
def test_same_outcomes_as_file_backend(tcp: Transport, tmp_path: Path) -> None:
    """One scenario's outcomes, error codes included, compared between the two backends side by side
    (MKV-PRO-001: a backend changes how bytes move, never what an operation answers); the per-backend
    checks judge each backend against the spec alone, not against the other."""
    file_t = FileTransport.open(str(tmp_path / "f"), "team-a", capacity=64 * MiB)
    try:
        assert _scenario(tcp) == _scenario(file_t)
    finally:
        file_t.close()


def test_connect_url_options(server: tuple[MemkvServer, dict[str, str]], tmp_path: Path) -> None:
    srv, creds = server
    key_file = tmp_path / "cred"
    key_file.write_text(creds["b-writer"])
    t = memkv.connect(f"{_url(srv)}/team-b?pool_size=2&key_file={key_file}")
    try:
        assert t.namespace == "team-b" and t.ping() >= 0  # type: ignore[attr-defined]
    finally:
        t.close()
    with pytest.raises(InvalidArgument):
        memkv.connect(f"{_url(srv)}?bogus=1", namespace="team-b", key=creds["b-writer"])


@req("MKV-WIRE-021", "MKV-BLK-006")
def test_streamed_get_of_a_corrupted_block(tcp: Transport, server: tuple[MemkvServer, dict[str, str]]) -> None:
    """The server streams a get before its own verdict; the client's check reports CORRUPTED."""
    srv, _ = server
    good, bad = os.urandom(16), os.urandom(16)
    data = [os.urandom(3 * MiB + 5), os.urandom(2 * MiB)]
    assert all(r.ok for r in tcp.put([PutItem(good, data[0]), PutItem(bad, data[1])]))
    extent = srv.engine.resident.blocks[("team-a", bad)].row.extents[0]
    fd = os.open(srv.engine.device.path, os.O_RDWR)
    try:
        os.pwrite(fd, b"\x00" * 4096, extent.offset + MiB)
    finally:
        os.close(fd)
    bufs = [aligned_buffer(4 * MiB), aligned_buffer(4 * MiB)]
    first, second = tcp.get_into([good, bad], bufs)
    assert first.ok and bytes(bufs[0][: len(data[0])]) == data[0]
    assert second.status is ErrorCode.CORRUPTED
    assert tcp.get_into([bad], [bufs[1]])[0].status is ErrorCode.NOT_FOUND  # removed by the server
    assert tcp.get([good]) == [data[0]]  # the connection is still in step


def test_a_late_answer_never_lands_in_a_buffer_after_timeout(server: tuple[MemkvServer, dict[str, str]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """After TIMEOUT the caller owns its buffer again: the connection is abandoned, not read on."""
    import threading
    import time

    from memkv.errors import Timeout

    srv, creds = server
    key, payload = os.urandom(16), os.urandom(64 * 1024)
    writer = TcpTransport(*srv.address, namespace="team-a", key=creds["a-writer"])
    assert writer.put([PutItem(key, payload)])[0].ok
    writer.close()
    release = threading.Event()
    real_open_read = srv.engine.open_read

    def slow_open_read(*args: Any, **kwargs: Any) -> Any:
        release.wait(5)
        return real_open_read(*args, **kwargs)

    monkeypatch.setattr(srv.engine, "open_read", slow_open_read)
    t = TcpTransport(*srv.address, namespace="team-a", key=creds["a-writer"], timeout=0.5)
    try:
        buf = bytearray(len(payload))
        with pytest.raises(Timeout):
            t.get_into([key], [buf])
        release.set()
        time.sleep(0.5)  # the server answers now, on a connection the client gave up
        assert buf == bytearray(len(payload))
        monkeypatch.setattr(srv.engine, "open_read", real_open_read)
        t.timeout = 60.0  # no longer the subject: a busy machine may take more than 0.5 s to reconnect
        assert t.get([key]) == [payload]  # the pool reconnects
    finally:
        release.set()
        t.close()
