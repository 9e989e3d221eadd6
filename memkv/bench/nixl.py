"""The nixl backend of `memkv bench`: memkv+nixl versus a raw NIXL agent-to-agent transfer.

The memkv path is a real server in a subprocess (`memkv serve --nixl on`, authentication on,
the engine over a device file in the bench directory) and the memkv+nixl client in this
process, moving blocks between page-aligned buffers it registered once (as an engine registers
its KV pool). The raw path moves the same sizes between the same buffers and a peer NIXL agent
in another subprocess: put = NIXL WRITE to the peer, get = NIXL READ from the peer, one transfer
per block, waited for before the next. Both use the UCX transports the environment selects
(UCX_TLS), so run it once with UCX_TLS=tcp and once with the defaults.

With `--compare floor` a third path, "floor", adds to the raw path the work that the spec asks
of any implementation, once each and in order, with no protocol around it (no frames, no index,
no device): a put hashes the block in the client (the checksum it declares, MKV-WIRE-010),
WRITEs it, and the peer copies it out of its registered memory into memory no client can write
and hashes the copy (MKV-WIRE-039) before it answers with that hash; a get asks the peer, which
hashes its block (every read verified, MKV-BLK-006) and answers with the hash, READs it, and
hashes what arrived (MKV-WIRE-021). Both ends' hashes must agree, or the run fails. Its ratio
to raw is what the checks cost on this machine; an implementation that overlaps them with the
transfer can beat it, none can avoid them.

With `--batch N` each timed call moves N blocks: memkv puts or gets them in one request, the raw
path moves them in one NIXL transfer of N descriptors, and the floor hashes each block and moves
them in one transfer, its peer copying and hashing each.
Hooked into memkv/bench/runner.py as BACKENDS["nixl"].
"""

from __future__ import annotations

import ctypes
import os
import select
import subprocess
import sys
import time

from ..blocks import MiB
from ..buffers import MemoryRegion, address_of, aligned_buffer
from ..checksum import payload_checksum
from ..errors import Internal
from ..memory_kind import MemoryKind
from ..nixl.agent import NixlAgent
from ..nixl.support import Pump
from .common import BenchConfig, Target, bench_buffers, memkv_ops, remove_run_directory, run_directory

FLOOR_PUT = b"memkv-floor-put:"  # + "<length>:<count>": the notification of a floor put's WRITE of count blocks
FLOOR_GET = b"g"  # + the length and the count, u64 little-endian each, on the peer's stdin: hash your blocks
# The peer answers either with the XXH3-64 of each block it hashed, u64 little-endian, on its answer pipe.
_U64 = 8
ANSWER_TIMEOUT_S = 60.0


class _RawPeer:
    """`python -m memkv.bench.nixl --raw-peer SIZE FD`: a NIXL agent holding SIZE registered bytes,
    answering floor operations on file descriptor FD."""

    def __init__(self, size: int) -> None:
        answers, answer_end = os.pipe()
        self.answers = os.fdopen(answers, "rb", buffering=0)
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "memkv.bench.nixl", "--raw-peer", str(size),
                                          str(answer_end)], pass_fds=(answer_end,),
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except BaseException:
            self.answers.close()
            raise
        finally:
            os.close(answer_end)  # the peer holds its own copy
        self.pumping = False
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:  # NIXL may log to stdout first
            line = raw.decode("ascii", "replace").split()
            if len(line) == 4 and line[0] == "memkv-raw-peer":
                self.name, self.address, self.metadata = line[1], int(line[2]), bytes.fromhex(line[3])
                return
        self.proc.kill()
        self.answers.close()
        raise RuntimeError("the raw NIXL peer did not start")

    def command(self, byte: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(byte)
        self.proc.stdin.flush()

    def answer(self, count: int) -> list[int]:
        """The checksums the peer answers to a floor operation of `count` blocks."""
        answer = b""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while len(answer) < _U64 * count:  # a pipe hands over at most PIPE_BUF bytes at once
            if not select.select([self.answers], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise RuntimeError(f"the raw NIXL peer did not answer within {ANSWER_TIMEOUT_S:.0f} s")
            more = self.answers.read(_U64 * count - len(answer))
            if not more:
                raise RuntimeError("the raw NIXL peer stopped before it answered")
            answer += more
        return [int.from_bytes(answer[j : j + _U64], "little") for j in range(0, len(answer), _U64)]

    def pump(self, on: bool) -> None:
        """The peer progresses its UCX worker only while the raw path runs (as memkv's client does)."""
        if on != self.pumping:
            self.command(b"1" if on else b"0")
            self.pumping = on

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
        finally:
            self.answers.close()


def _check_floor(ours: list[int], theirs: list[int]) -> None:
    for j, (mine, peers) in enumerate(zip(ours, theirs, strict=True)):
        if mine != peers:
            raise Internal(f"floor path: block {j} of the call hashes to {mine:#x} here and {peers:#x} at the raw peer")


def _blocks(size: int, length: int, count: int) -> tuple[int, int]:
    """(length, count) of a floor operation, bounded by the peer's `size` registered bytes."""
    length = max(1, min(size, length))
    return length, max(1, min(count, size // length))


def _hashes(view: memoryview, length: int, count: int) -> bytes:
    """The XXH3-64 of each of `count` blocks of `length` bytes at the start of `view`, as the answer."""
    return b"".join(payload_checksum(view[j * length : (j + 1) * length]).to_bytes(_U64, "little")
                    for j in range(count))


def _raw_peer_main(size: int, answers: int) -> None:
    """Register a buffer, print how to reach it, progress UCX between b"1" and b"0" on stdin, exit
    at EOF. Floor operations answer a checksum on the `answers` descriptor: a WRITE notified
    FLOOR_PUT is copied out of the registered buffer and each block of the copy hashed; FLOOR_GET
    hashes each block of the buffer."""
    agent = NixlAgent(f"memkv-bench-peer-{os.getpid()}")
    buf = aligned_buffer(size)
    private = aligned_buffer(size)  # never registered: no client can write it
    address = address_of(buf)
    agent.register(address, size)

    def stored(notifs: dict[str, list[bytes]]) -> None:
        for messages in notifs.values():
            for message in messages:
                if message.startswith(FLOOR_PUT):
                    length, _, count = message[len(FLOOR_PUT):].partition(b":")
                    block, blocks = _blocks(size, int(length), int(count))
                    ctypes.memmove(address_of(private), address, block * blocks)
                    os.write(answers, _hashes(private, block, blocks))

    pump = Pump(agent, on_notifs=stored)
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
        elif command == FLOOR_GET:
            length, count = (int.from_bytes(sys.stdin.buffer.read(_U64), "little") for _ in range(2))
            block, blocks = _blocks(size, length, count)
            os.write(answers, _hashes(buf, block, blocks))
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
        self._batch = config.batch
        capacity = config.count * largest + 4 * largest + 8 * MiB
        # a client's credits hold at most a quarter of the staging: a whole call fits them
        staging = max(64 * MiB, -(-4 * largest * self._batch // (2 * MiB)) * 2 * MiB)
        keys_file = os.path.join(self.root, "keys.yaml")
        creds = write_keys_file(keys_file, {"bench": [("bench", "write")]})
        self.server = ServerProcess(os.path.join(self.root, "store"), keys_file, capacity=str(capacity),
                                    extra=["--admin-listen", "off", "--nixl", "on", "--nixl-staging", str(staging),
                                           "--buffer-memory", str(max(1024 * MiB, 4 * largest * self._batch))])
        self.paths = ("memkv", "floor", "raw") if "floor" in config.compare else ("memkv", "raw")
        self.peer: _RawPeer | None = None
        try:
            self.transport = NixlTransport(self.server.host, self.server.port, namespace="bench", key=creds["bench"],
                                           transport="nixl", pool_size=1)
            self.peer = _RawPeer(largest * self._batch)
            self.raw_agent = NixlAgent(f"memkv-bench-raw-{os.getpid()}")
            self.raw_agent.add_peer(self.peer.metadata)
        except BaseException:
            self.close()
            raise
        self.description = {
            "dir": self.root, "direct_io": None, "store_capacity_bytes": capacity,
            "ucx_tls": os.environ.get("UCX_TLS", "(UCX default)"),
            "raw": "NIXL agent to agent (UCX), one WRITE (put) or READ (get) per call of --batch blocks, peer in "
                   "another process",
            "memkv": "memkv server subprocess (--nixl on, signed control frames), memkv+nixl client, buffers "
                     "registered once",
        }
        if "floor" in config.compare:
            self.description["floor"] = (
                "the raw path plus the spec's checks, in order, with no protocol: put = client XXH3, WRITE, "
                "peer copies out of registered memory and hashes the copy, answers; get = peer hashes its "
                "block and answers, READ, client XXH3 of what arrived")
        self._buffers: dict[int, tuple[list[memoryview], list[memoryview]]] = {}
        self._keys: list[bytes] = []
        self._size = 0

    def _bufs(self, size: int, count: int) -> tuple[list[memoryview], list[memoryview]]:
        if size not in self._buffers:
            for old_src, old_dst in self._buffers.values():
                for buf in old_src + old_dst:
                    self.transport.deregister(MemoryRegion(address_of(buf), len(buf)))
            sources, dests = bench_buffers(size, count, self._batch)  # a call's blocks in buffers of their own
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
        self.ops(path, op, i, 1)

    def ops(self, path: str, op: str, first: int, n: int) -> None:
        picks = range(first, first + n)
        srcs = [self._src[i % len(self._src)] for i in picks]
        dsts = [self._dst[i % len(self._dst)] for i in picks]
        assert self.peer is not None
        self.peer.pump(path != "memkv")
        if path == "memkv":
            memkv_ops(self.transport, op, self._keys[first : first + n], srcs, dsts)
        elif path == "raw":
            self._transfer(op, srcs if op == "put" else dsts)
        elif op == "put":  # floor
            checksums = [payload_checksum(src.view()) for src in srcs]
            self._transfer(op, srcs, FLOOR_PUT + f"{self._size}:{n}".encode())
            _check_floor(checksums, self.peer.answer(n))
        else:
            self.peer.command(FLOOR_GET + self._size.to_bytes(_U64, "little") + n.to_bytes(_U64, "little"))
            theirs = self.peer.answer(n)
            self._transfer(op, dsts)
            _check_floor([payload_checksum(dst.view()) for dst in dsts], theirs)

    def _transfer(self, op: str, local: list[MemoryRegion], notification: bytes = b"") -> None:
        """One NIXL WRITE (put) or READ (get) between the `local` blocks of the round's size and as
        many consecutive blocks of the peer."""
        assert self.peer is not None
        size = self._size
        posted = self.raw_agent.post("WRITE" if op == "put" else "READ", [(r.address, size, 0) for r in local],
                                     MemoryKind.DRAM, [(self.peer.address + j * size, size, 0)
                                                       for j in range(len(local))], MemoryKind.DRAM,
                                     self.peer.name, notification)
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
                remove_run_directory(self.root)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--raw-peer":
        _raw_peer_main(int(sys.argv[2]), int(sys.argv[3]))
