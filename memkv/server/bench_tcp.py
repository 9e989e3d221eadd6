"""The tcp backend of `memkv bench`: memkv over loopback TCP versus a raw loopback socket stream.

The memkv path is a real server (in this process, its own threads, authentication on, the
engine over a device file in the bench directory) and the tcp client. The raw path moves the
same bytes between the same page-aligned buffers over a plain loopback socket: put = send the
block, the peer recv_into()s it and answers one byte; get = send one byte, the peer sendall()s
the block and the client recv_into()s it. Hook into memkv/bench.py with
`BACKENDS["tcp"] = lambda config: TcpTarget(config)` (import lazily from memkv.server.bench_tcp).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from typing import Any

import numpy as np

from ..bench import BenchConfig, Target, run_bench
from ..blocks import MiB
from ..buffers import aligned_buffer
from ..transport import PutItem


def _recv_into_all(sock: socket.socket, view: memoryview) -> None:
    pos = 0
    while pos < len(view):
        got = sock.recv_into(view[pos:])
        if got == 0:
            raise ConnectionError("peer closed")
        pos += got


class _RawPeer:
    """The far end of the raw stream: b'P' + u64 size -> receive, ack; b'G' + u64 size -> send."""

    def __init__(self, largest: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.buf = aligned_buffer(largest)
        self.thread = threading.Thread(target=self._serve, name="memkv-bench-raw", daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return str(host), int(port)

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = memoryview(bytearray(9))
        with conn:
            try:
                while True:
                    _recv_into_all(conn, head)
                    size = int.from_bytes(head[1:], "little")
                    if head[0] == ord("P"):
                        _recv_into_all(conn, self.buf[:size])
                        conn.sendall(b"k")
                    else:
                        conn.sendall(self.buf[:size])
            except (ConnectionError, OSError):
                return

    def close(self) -> None:
        self.listener.close()


class TcpTarget(Target):
    def __init__(self, config: BenchConfig) -> None:
        from ..backends.tcp import TcpTransport
        from .testing import in_process_server, write_keys_file

        base = config.directory
        if base is not None:
            os.makedirs(base, exist_ok=True)
        self.root = tempfile.mkdtemp(prefix="memkv-bench-tcp-", dir=base)
        self.keep = config.keep
        largest = max(config.sizes)
        capacity = config.count * largest + 4 * largest + 8 * MiB
        keys_file = os.path.join(self.root, "keys.yaml")
        creds = write_keys_file(keys_file, {"bench": [("bench", "write")]})
        self.server = in_process_server(os.path.join(self.root, "store"), keys_file, admin_listen="off",
                                        capacity=capacity, buffer_memory=max(1024 * MiB, 4 * largest))
        self.transport = TcpTransport(*self.server.address, namespace="bench", key=creds["bench"], pool_size=1)
        self.peer = _RawPeer(largest)
        self.raw = socket.create_connection(self.peer.address)
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ack = memoryview(bytearray(1))
        self.description = {
            "dir": self.root, "direct_io": bool(self.server.engine.device.direct),
            "store_capacity_bytes": capacity,
            "raw": "loopback TCP stream, sendall/recv_into between page-aligned buffers, one round trip per block",
            "memkv": "memkv server in this process (signed frames), tcp client, one connection",
        }
        self._buffers: dict[int, tuple[list[memoryview], list[memoryview]]] = {}
        self._keys: list[bytes] = []
        self._size = 0

    def _bufs(self, size: int, count: int) -> tuple[list[memoryview], list[memoryview]]:
        if size not in self._buffers:
            rng = np.random.default_rng(size)
            sources = []
            for _ in range(min(count, 4)):
                buf = aligned_buffer(size)
                np.frombuffer(buf, dtype=np.uint8)[:] = rng.integers(0, 256, size, dtype=np.uint8)
                sources.append(buf)
            self._buffers = {size: (sources, [aligned_buffer(size) for _ in range(min(count, 4))])}
        return self._buffers[size]

    def begin(self, size: int, count: int, round_no: int) -> None:
        self._size = size
        self._src, self._dst = self._bufs(size, count)
        self._keys = [os.urandom(16) for _ in range(count)]

    def op(self, path: str, op: str, i: int) -> None:
        src = self._src[i % len(self._src)]
        dst = self._dst[i % len(self._dst)]
        if path == "memkv":
            if op == "put":
                self.transport.put([PutItem(self._keys[i], src)])[0].raise_for_status()
            else:
                self.transport.get_into([self._keys[i]], [dst])[0].raise_for_status()
            return
        head = (b"P" if op == "put" else b"G") + self._size.to_bytes(8, "little")
        if op == "put":
            self.raw.sendmsg([head, src])
            _recv_into_all(self.raw, self.ack)
        else:
            self.raw.sendall(head)
            _recv_into_all(self.raw, dst)

    def end(self) -> None:
        self.transport.invalidate_keys(self._keys)

    def close(self) -> None:
        try:
            self.raw.close()
            self.peer.close()
            self.transport.close()
            self.server.shutdown()
        finally:
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)


def run_tcp_bench(sizes: tuple[int, ...] = (16 * MiB,), count: int = 16, rounds: int = 3,
                  directory: str | None = None) -> list[dict[str, Any]]:
    """memkv-over-tcp and the raw socket stream for the given sizes; one row per (size, op)."""
    import memkv.bench as bench

    bench.BACKENDS.setdefault("tcp", TcpTarget)
    if bench.BACKENDS["tcp"] is not TcpTarget and getattr(bench.BACKENDS["tcp"], "__name__", "") == "factory":
        bench.BACKENDS["tcp"] = TcpTarget
    report = run_bench(BenchConfig(backend="tcp", sizes=sizes, count=count, rounds=rounds, directory=directory))
    rows: list[dict[str, Any]] = report["results"]
    return rows


if __name__ == "__main__":
    for row in run_tcp_bench():
        print(f"{row['size'] // MiB:>3} MiB {row['op']:<4} memkv {row['memkv']['gb_per_s']:.2f} GB/s  "
              f"raw {row['raw']['gb_per_s']:.2f} GB/s  ratio {row['ratio']:.2f}")
