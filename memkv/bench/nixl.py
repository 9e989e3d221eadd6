"""The nixl backend of `memkv bench`: memkv+nixl versus a raw NIXL agent-to-agent transfer.

The memkv path is a real server in a subprocess (`memkv serve --nixl on`, authentication on,
the engine over a device file in the bench directory) and the memkv+nixl client in this
process, moving blocks between page-aligned buffers it registered once (as an engine registers
its KV pool). The raw path moves the same sizes between the same buffers and a peer NIXL agent
in another subprocess: put = NIXL WRITE to the peer, get = NIXL READ from the peer, one transfer
per block, waited for before the next. Both use the UCX transports the environment selects
(UCX_TLS), so run it once with UCX_TLS=tcp and once with the defaults.
Hooked into memkv/bench/runner.py as BACKENDS["nixl"].
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from ..blocks import MiB
from ..buffers import MemoryRegion, address_of, aligned_buffer
from ..memory_kind import MemoryKind
from ..nixl.agent import NixlAgent
from ..nixl.support import Pump
from .common import BenchConfig, Target, bench_buffers, memkv_op, run_directory


class _RawPeer:
    """`python -m memkv.bench.nixl --raw-peer SIZE`: a NIXL agent holding SIZE registered bytes."""

    def __init__(self, size: int) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "memkv.bench.nixl", "--raw-peer", str(size)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pumping = False
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # NIXL may log to stdout first
            line = raw.decode("ascii", "replace").split()
            if len(line) == 4 and line[0] == "memkv-raw-peer":
                self.name, self.address, self.metadata = line[1], int(line[2]), bytes.fromhex(line[3])
                return
        self.proc.kill()
        raise RuntimeError("the raw NIXL peer did not start")

    def pump(self, on: bool) -> None:
        """The peer progresses its UCX worker only while the raw path runs (as memkv's client does)."""
        if on != self.pumping:
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"1" if on else b"0")
            self.proc.stdin.flush()
            self.pumping = on

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _raw_peer_main(size: int) -> None:
    """Register a buffer, print how to reach it, progress UCX between b"1" and b"0" on stdin, exit at EOF."""
    agent = NixlAgent(f"memkv-bench-peer-{os.getpid()}")
    buf = aligned_buffer(size)
    address = address_of(buf)
    agent.register(address, size)
    pump = Pump(agent)
    print("memkv-raw-peer", agent.name, address, agent.metadata().hex(), flush=True)
    pumping = False
    while True:
        command = sys.stdin.buffer.read(1)
        if not command:
            break
        if command == b"1" and not pumping:
            pump.enter()
            pumping = True
        elif command == b"0" and pumping:
            pump.leave()
            pumping = False
    pump.close()


class NixlTarget(Target):
    def __init__(self, config: BenchConfig) -> None:
        from ..backends.nixl import NixlTransport
        from ..nixl import agent as nixl_agent
        from ..server.testing import ServerProcess, write_keys_file

        nixl_agent.load_api()  # Unsupported, with the install hint, before anything starts

        self.root = run_directory("memkv-bench-nixl-", config.directory)
        self.keep = config.keep
        largest = max(config.sizes)
        capacity = config.count * largest + 4 * largest + 8 * MiB
        staging = max(64 * MiB, -(-4 * largest // (2 * MiB)) * 2 * MiB)
        keys_file = os.path.join(self.root, "keys.yaml")
        creds = write_keys_file(keys_file, {"bench": [("bench", "write")]})
        self.server = ServerProcess(os.path.join(self.root, "store"), keys_file, capacity=str(capacity),
                                    extra=["--admin-listen", "off", "--nixl", "on", "--nixl-staging", str(staging),
                                           "--buffer-memory", str(max(1024 * MiB, 4 * largest))])
        self.peer: _RawPeer | None = None
        try:
            self.transport = NixlTransport(self.server.host, self.server.port, namespace="bench", key=creds["bench"],
                                           transport="nixl", pool_size=1)
            self.peer = _RawPeer(largest)
            self.raw_agent = NixlAgent(f"memkv-bench-raw-{os.getpid()}")
            self.raw_agent.add_peer(self.peer.metadata)
        except BaseException:
            self.close()
            raise
        self.description = {
            "dir": self.root, "direct_io": None, "store_capacity_bytes": capacity,
            "ucx_tls": os.environ.get("UCX_TLS", "(UCX default)"),
            "raw": "NIXL agent to agent (UCX), one WRITE (put) or READ (get) per block, peer in another process",
            "memkv": "memkv server subprocess (--nixl on, signed control frames), memkv+nixl client, buffers "
                     "registered once",
        }
        self._buffers: dict[int, tuple[list[memoryview], list[memoryview]]] = {}
        self._keys: list[bytes] = []
        self._size = 0

    def _bufs(self, size: int, count: int) -> tuple[list[memoryview], list[memoryview]]:
        if size not in self._buffers:
            for old_src, old_dst in self._buffers.values():
                for buf in old_src + old_dst:
                    self.transport.deregister(MemoryRegion(address_of(buf), len(buf)))
            sources, dests = bench_buffers(size, count)
            for buf in sources + dests:
                region = MemoryRegion(address_of(buf), len(buf))
                self.transport.register(region)
                self.raw_agent.register(region.address, region.length)
            self._buffers = {size: (sources, dests)}
        return self._buffers[size]

    def begin(self, size: int, count: int, round_no: int) -> None:
        self._size = size
        src, dst = self._bufs(size, count)
        self._src = [MemoryRegion(address_of(b), len(b)) for b in src]
        self._dst = [MemoryRegion(address_of(b), len(b)) for b in dst]
        self._keys = [os.urandom(16) for _ in range(count)]

    def op(self, path: str, op: str, i: int) -> None:
        src = self._src[i % len(self._src)]
        dst = self._dst[i % len(self._dst)]
        assert self.peer is not None
        self.peer.pump(path == "raw")
        if path == "memkv":
            memkv_op(self.transport, op, self._keys[i], src, dst)
            return
        local = src if op == "put" else dst
        posted = self.raw_agent.post("WRITE" if op == "put" else "READ", [(local.address, self._size, 0)],
                                     MemoryKind.DRAM, [(self.peer.address, self._size, 0)], MemoryKind.DRAM,
                                     self.peer.name)
        try:
            self.raw_agent.wait(posted, time.monotonic() + 60)
        finally:
            self.raw_agent.release(posted)

    def end(self) -> None:
        self.transport.invalidate_keys(self._keys)

    def cpu_processes(self, path: str) -> dict[str, int]:
        assert self.peer is not None
        far = self.server.proc if path == "memkv" else self.peer.proc
        return {"client": os.getpid(), "server": far.pid}

    def close(self) -> None:
        try:
            if hasattr(self, "transport"):
                self.transport.close()
            if self.peer is not None:
                self.peer.close()
            self.server.terminate()
        finally:
            if not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--raw-peer":
        _raw_peer_main(int(sys.argv[2]))
