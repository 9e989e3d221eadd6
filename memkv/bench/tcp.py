"""The tcp backend of `memkv bench`: memkv over loopback TCP versus a raw loopback socket stream.

Both far ends run in their own processes, so neither competes with the client for its GIL:

- memkv path: `python -m memkv.server` (authentication on, the engine over a device file in
  the bench directory: put `--dir /dev/shm/...` there to take the disk out of the picture) and
  the tcp client of this process (one pooled connection).
- raw path: `python -m memkv.bench.tcp raw-peer`, a plain loopback socket peer that moves
  the same bytes between page-aligned buffers: put = send an 9-byte header and the block, the
  peer recv_into()s it and answers one byte; get = send the 9-byte header, the peer sendall()s
  the block and the client recv_into()s it. No checksum, no metadata, no storage.

`memkv bench --backend tcp` measures one client (TcpTarget). `python -m memkv.bench.tcp
--clients 1,2,4` runs 1, 2 and 4 client processes at once against one server and one raw peer
and reports the aggregate rate of each phase (bytes of all clients / wall time of the phase).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection as Pipe
from typing import IO, Any

from .. import transport as transport_api
from ..blocks import MiB
from ..buffers import aligned_buffer
from ..units import format_size
from .common import (
    OPS,
    PATHS,
    TARGET_RATIO,
    TARGET_SIZE,
    BenchConfig,
    BlockSlots,
    Target,
    fill_store,
    memkv_op,
    parse_sizes,
    remove_run_directory,
    run_directory,
)
from .memory import MemorySampler


def _recv_into_all(sock: socket.socket, view: memoryview) -> None:
    pos = 0
    while pos < len(view):
        got = sock.recv_into(view[pos:])
        if got == 0:
            raise ConnectionError("peer closed")
        pos += got


# ---- the raw peer (its own process) ------------------------------------------------------------

def _serve_raw(conn: socket.socket, largest: int) -> None:
    """b'P' + u64 size -> receive the block, answer b'k'; b'G' + u64 size -> send the block."""
    buf = aligned_buffer(largest)
    head = memoryview(bytearray(9))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        try:
            while True:
                _recv_into_all(conn, head)
                size = int.from_bytes(head[1:], "little")
                if size > largest:
                    return
                if head[0] == ord("P"):
                    _recv_into_all(conn, buf[:size])
                    conn.sendall(b"k")
                else:
                    conn.sendall(buf[:size])
        except (ConnectionError, OSError):
            return


def raw_peer_main(largest: int) -> None:
    """Listen on a loopback port (printed on stdout), a thread per connection, until stdin closes."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    print(f"port {listener.getsockname()[1]}", flush=True)

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=_serve_raw, args=(conn, largest), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()  # the parent holds our stdin; EOF means it is gone
    os._exit(0)


class RawPeerProcess:
    def __init__(self, largest: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "memkv.bench.tcp", "raw-peer", str(largest)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("port "):
            self.close()
            raise RuntimeError(f"raw peer did not start: {line!r}")
        self.address = ("127.0.0.1", int(line.split()[1]))

    def close(self) -> None:
        stdin: IO[bytes] | None = self.proc.stdin
        if stdin is not None:
            stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


BUFFER_MEMORY = 1024 * MiB  # the server's --buffer-memory: its pool of payload buffers

# ---- the server and client ends ----------------------------------------------------------------

class _Endpoints:
    """memkv server processes (`shards` of them, one cluster) and a raw peer process, sized for
    `clients` x `count` blocks each."""

    def __init__(self, directory: str | None, largest: int, count: int, clients: int = 1, stored: int = 0,
                 shards: int = 1) -> None:
        from ..server.testing import ServerProcess, write_keys_file

        self.root = run_directory("memkv-bench-tcp-", directory)
        self.capacity = stored + clients * (count * largest + 4 * largest) + 8 * MiB
        keys_file = os.path.join(self.root, "keys.yaml")
        self.credential = write_keys_file(keys_file, {"bench": [("bench", "write")]})["bench"]
        data = os.path.join(self.root, "store")
        self.servers: list[ServerProcess] = []
        try:
            for shard in range(shards):
                self.servers.append(ServerProcess(data + (f"-{shard}" if shard else ""), keys_file,
                                                  capacity=str(self.capacity),
                                                  extra=["--admin-listen", "off", "--buffer-memory",
                                                         str(BUFFER_MEMORY), "--log-level", "warning"]))
            self.peer = RawPeerProcess(largest)
        except BaseException:
            for server in self.servers:
                server.kill()
            raise
        self.server = self.servers[0]
        # one server: its address; several: the cluster URL the clients connect to (spec/cluster.md)
        self.address: tuple[str, int] | str = (self.server.host, self.server.port) if shards == 1 else \
            "memkv+tcp://" + ",".join(f"{s.host}:{s.port}" for s in self.servers)
        from ..store.device import open_direct

        fd, self.direct = open_direct(os.path.join(data, "device.img"), os.O_RDONLY)
        os.close(fd)

    def close(self, keep: bool = False) -> None:
        try:
            self.peer.close()
            for server in self.servers:
                server.terminate()
        finally:
            if not keep:
                remove_run_directory(self.root)


class _Client:
    """One client: a TcpTransport (one connection; a cluster: one per shard) and one raw socket, with
    source/dest buffers."""

    def __init__(self, server: tuple[str, int] | str, credential: str, peer: tuple[str, int]) -> None:
        from ..backends.tcp import TcpTransport

        if isinstance(server, str):
            import memkv

            self.transport: transport_api.Transport = memkv.connect(server, namespace="bench", key=credential,
                                                                    pool_size=1)
        else:
            self.transport = TcpTransport(*server, namespace="bench", key=credential, pool_size=1)
        self.raw = socket.create_connection(peer)
        self.raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ack = memoryview(bytearray(1))
        self.slots = BlockSlots()

    def begin(self, size: int, count: int) -> None:
        self.slots.begin(size, count)

    def op(self, path: str, op: str, i: int) -> None:
        slots = self.slots
        src, dst = slots.src(i), slots.dst(i)
        if path == "memkv":
            memkv_op(self.transport, op, slots.keys[i], src, dst)
            return
        head = (b"P" if op == "put" else b"G") + slots.size.to_bytes(8, "little")
        if op == "put":
            self.raw.sendmsg([head, src])
            _recv_into_all(self.raw, self.ack)
        else:
            self.raw.sendall(head)
            _recv_into_all(self.raw, dst)

    def end(self) -> None:
        self.transport.invalidate_keys(self.slots.keys)

    def close(self) -> None:
        self.raw.close()
        self.transport.close()


class TcpTarget(Target):
    """`memkv bench --backend tcp`: one client in this process; server and raw peer in their own."""

    def __init__(self, config: BenchConfig) -> None:
        largest = max(config.sizes)
        self.keep = config.keep
        self.ends = _Endpoints(config.directory, largest, config.count, stored=config.stored)
        try:
            self.client = _Client((self.ends.server.host, self.ends.server.port), self.ends.credential,
                                  self.ends.peer.address)
        except BaseException:
            self.ends.close()
            raise
        self.memory = MemorySampler(self.ends.server.proc.pid, BUFFER_MEMORY)
        self.description = {
            "dir": self.ends.root, "direct_io": self.ends.direct, "store_capacity_bytes": self.ends.capacity,
            "raw": "loopback TCP stream to a peer process, sendall/recv_into between page-aligned buffers, "
                   "one round trip per block",
            "memkv": "memkv server process (signed frames, store in the bench dir), tcp client, one connection",
        }

    def begin(self, size: int, count: int, round_no: int) -> None:
        self.client.begin(size, count)

    def op(self, path: str, op: str, i: int) -> None:
        self.client.op(path, op, i)

    def end(self) -> None:
        self.client.end()

    def preload(self, stored: int, block: int) -> int:
        return fill_store(self.client.transport, stored, block)

    def server_memory(self) -> dict[str, Any] | None:
        return self.memory.stop()

    def cpu_processes(self, path: str) -> dict[str, int]:
        far = self.ends.server.proc if path == "memkv" else self.ends.peer.proc
        return {"client": os.getpid(), "server": far.pid}

    def close(self) -> None:
        try:
            self.memory.halt()
            self.client.close()
        finally:
            self.ends.close(self.keep)


# ---- several clients at once (a process each) --------------------------------------------------

def _client_worker(server: tuple[str, int] | str, credential: str, peer: tuple[str, int], pipe: Pipe,
                   barrier: Any) -> None:
    client = _Client(server, credential, peer)
    try:
        while True:
            command = pipe.recv()
            if command is None:
                break
            kind = command[0]
            if kind == "begin":
                client.begin(command[1], command[2])
                pipe.send(None)
            elif kind == "phase":
                _, path, op, count = command
                barrier.wait()
                started = time.monotonic()
                for i in range(count):
                    client.op(path, op, i)
                pipe.send((started, time.monotonic()))
            elif kind == "end":
                client.end()
                pipe.send(None)
    finally:
        client.close()


def run_clients(sizes: Sequence[int], clients: Sequence[int], count: int = 16, rounds: int = 5,
                directory: str | None = None, shards: int = 1) -> list[dict[str, Any]]:
    """Aggregate GB/s of memkv (over `shards` server processes) and raw with N client processes at
    once; median over rounds."""
    ctx = multiprocessing.get_context("spawn")
    ends = _Endpoints(directory, max(sizes), count, max(clients), shards=shards)
    rows: list[dict[str, Any]] = []
    try:
        for n in clients:
            barrier = ctx.Barrier(n)
            pipes, procs = [], []
            for _ in range(n):
                ours, theirs = ctx.Pipe()
                proc = ctx.Process(target=_client_worker, daemon=True,
                                   args=(ends.address, ends.credential,
                                         ends.peer.address, theirs, barrier))
                proc.start()
                pipes.append(ours)
                procs.append(proc)
            rates: dict[tuple[int, str, str], list[float]] = {}
            try:
                for round_no in range(rounds):
                    for size in sizes:
                        for pipe in pipes:
                            pipe.send(("begin", size, count))
                        for pipe in pipes:
                            pipe.recv()
                        for path in (PATHS if round_no % 2 == 0 else PATHS[::-1]):
                            for op in OPS:
                                for pipe in pipes:
                                    pipe.send(("phase", path, op, count))
                                spans = [pipe.recv() for pipe in pipes]
                                wall = max(e for _, e in spans) - min(s for s, _ in spans)
                                rates.setdefault((size, path, op), []).append(n * count * size / wall / 1e9)
                        for pipe in pipes:
                            pipe.send(("end",))
                        for pipe in pipes:
                            pipe.recv()
            finally:
                for pipe in pipes:
                    pipe.send(None)
                for proc in procs:
                    proc.join(10)
            for size in sizes:
                for op in OPS:
                    row: dict[str, Any] = {"clients": n, "shards": shards, "size": size, "op": op}
                    for path in PATHS:
                        row[path] = {"gb_per_s": statistics.median(rates[(size, path, op)]),
                                     "rounds_gb_per_s": rates[(size, path, op)]}
                    row["ratio"] = row["memkv"]["gb_per_s"] / row["raw"]["gb_per_s"]
                    rows.append(row)
    finally:
        ends.close()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["raw-peer"]:
        raw_peer_main(int(args[1]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m memkv.bench.tcp",
                                     description="memkv over loopback TCP vs a raw socket stream, N clients")
    parser.add_argument("--sizes", default="2,16MiB")
    parser.add_argument("--clients", default="1,2,4", help="client process counts, e.g. 1,2,4")
    parser.add_argument("--count", type=int, default=16, help="blocks per client, size and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the store lives (e.g. /dev/shm/memkv-bench)")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args(args)
    rows = run_clients(parse_sizes(opts.sizes), [int(c) for c in opts.clients.split(",")], opts.count,
                       opts.rounds, opts.dir)
    if opts.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{'clients':>7} {'size':>8} {'op':>4} {'memkv GB/s':>11} {'raw GB/s':>9} {'ratio':>6}")
    for row in rows:
        print(f"{row['clients']:>7} {format_size(row['size']):>8} {row['op']:>4} {row['memkv']['gb_per_s']:>11.2f} "
              f"{row['raw']['gb_per_s']:>9.2f} {row['ratio']:>6.2f}")
    print(f"target: {TARGET_RATIO:.0%} of raw at {format_size(TARGET_SIZE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
