"""Other stores and the physical limit, measured in the same run as memkv (`memkv bench --compare`).

A peer is one more path of the run: it moves the same blocks as memkv, round after round, and
its rate is reported against the same raw path. Peers start their own servers on 127.0.0.1 and
stop them afterwards; a peer whose software is missing is refused before anything runs.

- `redis`: a `redis-server` process (no persistence, enough maxmemory for the round) and
  redis-py (with hiredis when installed): put = SET of the block, get = GET, copied into the
  destination buffer. Redis keeps data in DRAM, like memkv with its store on tmpfs.
- `mooncake`: Mooncake Store over its TCP transfer engine, zero-copy put_from/get_into, with its
  master and its storage process started for the run (memkv.bench.mooncake_peer).
- `disk`: not a store but the device under it: a preallocated file in the bench directory,
  written and read with pwritev/preadv in the store's own open mode (O_DIRECT on a disk), block
  by block like memkv. With the store on disk, memkv cannot beat the slower of this and the raw
  socket; the report's `device_target` compares memkv with that bound.
- `iperf3`: not a store but the machine's loopback limit: one TCP stream of `iperf3` (a native
  sender and receiver), reported beside every memkv figure (`physical_limit` in the report).
- `floor` (`--backend nixl` only): not a store but what the spec's checks cost on the raw path:
  the raw NIXL transfer plus the hashes and the copy any implementation must do, with no
  protocol around them (memkv.bench.nixl: NixlTarget measures it as a path of its own).
"""

from __future__ import annotations

import abc
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InvalidArgument, Unsupported
from ..server.testing import free_port
from .common import BenchConfig, BlockSlots, Target, remove_run_directory, run_directory
from .rawfile import RawFile

STARTUP_S = 10.0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Peer(abc.ABC):
    """Another store, measured block by block like memkv."""

    name: str
    description: str

    @abc.abstractmethod
    def begin(self, size: int, count: int) -> None: ...

    @abc.abstractmethod
    def op(self, op: str, i: int) -> None: ...

    @abc.abstractmethod
    def end(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def server_pid(self) -> int | None:
        """The peer's server process, whose CPU time its path costs beside this process's."""
        return None

    def helper_pids(self) -> dict[str, int]:
        """Further processes of the peer (role -> pid) whose CPU time its path also costs."""
        return {}


class RedisPeer(Peer):
    """A redis-server of its own, started by the conformance suite's Redis target (no persistence)."""

    name = "redis"

    def __init__(self, config: BenchConfig) -> None:
        largest, count = max(config.sizes), config.count
        try:
            import redis

            from ..conformance.adapters.redis_adapter import RedisTarget
        except ImportError:
            raise Unsupported("--compare redis needs the redis Python package (pip install 'memkv[compare]')") from None
        if shutil.which("redis-server") is None:
            raise Unsupported("--compare redis needs redis-server on PATH (Debian: apt-get install redis-server)")
        self.server = RedisTarget(maxmemory=2 * count * largest + 64 * 1024 * 1024)
        self.client = self.server.client
        version = self.client.info("server").get("redis_version", "?")
        parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "python parser"
        self.description = f"redis-server {version} on 127.0.0.1, redis-py {redis.__version__} ({parser})"
        self.slots = BlockSlots()
        self.payloads: list[bytes] = []

    def begin(self, size: int, count: int) -> None:
        self.slots.begin(size, count)
        # redis-py sends bytes: made once per round, outside the timed operations
        self.payloads = [bytes(self.slots.src(i)) for i in range(min(count, 4))]

    def op(self, op: str, i: int) -> None:
        key = self.slots.keys[i]
        if op == "put":
            self.client.set(key, self.payloads[i % len(self.payloads)])
            return
        value = self.client.get(key)
        if not isinstance(value, bytes) or len(value) != self.slots.size:
            raise Unsupported(f"redis returned {type(value).__name__} for a stored block")
        self.slots.dst(i)[:] = value

    def end(self) -> None:
        self.client.delete(*self.slots.keys)

    def close(self) -> None:
        self.server.close()

    def server_pid(self) -> int | None:
        return None if self.server.process is None else self.server.process.pid


class DiskPeer(Peer):
    """The device alone: each block written to and read from its own place in a preallocated file
    of the bench directory (memkv.bench.rawfile), with no network and no store."""

    name = "disk"

    def __init__(self, config: BenchConfig) -> None:
        self.root = run_directory("memkv-bench-disk-", config.directory)
        try:
            self.file = RawFile(os.path.join(self.root, "raw.img"), config.count * max(config.sizes))
        except BaseException:
            remove_run_directory(self.root)
            raise
        self.description = f"the device alone: {self.file.describe()} ({self.root})"
        self.slots = BlockSlots()

    def begin(self, size: int, count: int) -> None:
        self.slots.begin(size, count)

    def op(self, op: str, i: int) -> None:
        offset = i * self.slots.size
        if op == "put":
            self.file.write(self.slots.src(i), offset)
        else:
            self.file.read(self.slots.dst(i), offset)

    def end(self) -> None:
        pass  # the next round overwrites the same places

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            remove_run_directory(self.root)


def _mooncake(config: BenchConfig) -> Peer:
    from .mooncake_peer import MooncakePeer  # imports this module's Peer

    return MooncakePeer(max(config.sizes), config.count)


PEERS: dict[str, Callable[[BenchConfig], Peer]] = {"redis": RedisPeer, "mooncake": _mooncake, "disk": DiskPeer}
LIMITS = ("iperf3",)
# Extra paths a backend's own target measures (not peers of every backend): name -> backend.
TARGET_PATHS = {"floor": "nixl"}


def check_compare(names: Sequence[str], backend: str) -> tuple[str, ...]:
    known = (*PEERS, *LIMITS, *TARGET_PATHS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidArgument(f"--compare: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    for name in names:
        if TARGET_PATHS.get(name, backend) != backend:
            raise InvalidArgument(f"--compare {name} applies to --backend {TARGET_PATHS[name]} only")
    return tuple(names)


class ComparedTarget(Target):
    """A backend's target with peers as extra paths, before the raw path."""

    def __init__(self, target: Target, peers: Sequence[Peer]) -> None:
        self.target = target
        self.peers = {peer.name: peer for peer in peers}
        self.paths = (*target.paths[:-1], *self.peers, target.paths[-1])
        self.description = {**target.description, "peers": {p.name: p.description for p in peers}}

    def begin(self, size: int, count: int, round_no: int) -> None:
        self.target.begin(size, count, round_no)
        for peer in self.peers.values():
            peer.begin(size, count)

    def op(self, path: str, op: str, i: int) -> None:
        peer = self.peers.get(path)
        if peer is None:
            self.target.op(path, op, i)
        else:
            peer.op(op, i)

    def end(self) -> None:
        self.target.end()
        for peer in self.peers.values():
            peer.end()

    def preload(self, stored: int, block: int) -> int:
        return self.target.preload(stored, block)

    def server_memory(self) -> dict[str, Any] | None:
        return self.target.server_memory()

    def cpu_processes(self, path: str) -> dict[str, int]:
        peer = self.peers.get(path)
        if peer is None:
            return self.target.cpu_processes(path)
        pid = peer.server_pid()
        return {"client": os.getpid()} | ({} if pid is None else {"server": pid}) | peer.helper_pids()

    def close(self) -> None:
        try:
            self.target.close()
        finally:
            for peer in self.peers.values():
                peer.close()


def start_peers(names: Sequence[str], config: BenchConfig) -> list[Peer]:
    started: list[Peer] = []
    try:
        for name in names:
            if name in PEERS:
                started.append(PEERS[name](config))
    except BaseException:
        for peer in started:
            peer.close()
        raise
    return started


def loopback_limit(seconds: float = 2.0) -> dict[str, Any]:
    """One TCP stream over loopback between a native iperf3 sender and receiver, in GB/s."""
    tool = shutil.which("iperf3")
    if tool is None:
        raise Unsupported("--compare iperf3 needs iperf3 on PATH (Debian: apt-get install iperf3)")
    port = free_port()
    server = subprocess.Popen([tool, "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_iperf(tool, port, server)
        done = subprocess.run([tool, "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
                              capture_output=True, text=True, timeout=seconds + 30)
    finally:
        _stop(server)
    if done.returncode != 0:
        raise Unsupported(f"iperf3 failed: {done.stderr.strip() or done.stdout[-300:]}")
    result = json.loads(done.stdout)
    bits = float(result["end"]["sum_received"]["bits_per_second"])
    return {"tool": "iperf3", "gb_per_s": bits / 8 / 1e9, "seconds": seconds,
            "what": "one TCP stream over loopback, native sender and receiver (iperf3 -c 127.0.0.1)"}


def _wait_for_iperf(tool: str, port: int, server: subprocess.Popen[bytes]) -> None:
    # iperf3 -s takes one client (-1); a plain connect would use it up, so wait for its socket instead
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise Unsupported(f"{tool} -s exited with status {server.returncode} at start")
        with open("/proc/net/tcp", encoding="ascii") as table:
            if any(f":{port:04X} 00000000:0000 0A" in line for line in table):
                return
        time.sleep(0.05)
    raise Unsupported(f"iperf3 did not listen on 127.0.0.1:{port} within {STARTUP_S:.0f} s")
