"""A cluster of `memkv serve` processes on 127.0.0.1 for tests, demos and the conformance target."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .testing import ServerProcess, free_port


class LocalCluster:
    """`count` unauthenticated servers, each its own shard; a shard restarts on its own port and data."""

    def __init__(self, count: int = 3, capacity: str = "128MiB", unit: str = "64KiB",
                 directory: str | None = None, extra: Iterable[str] = ()) -> None:
        self._owns_directory = directory is None
        self.directory = Path(directory or tempfile.mkdtemp(prefix="memkv-cluster-"))
        self.capacity, self.unit, self.extra = capacity, unit, list(extra)
        self.servers: list[ServerProcess | None] = []
        self.ports: list[int] = []
        try:
            with concurrent.futures.ThreadPoolExecutor(count) as pool:  # start-up is mostly imports: overlap it
                started = [pool.submit(self._start, index, 0) for index in range(count)]
            failures = [f.exception() for f in started if f.exception() is not None]
            self.servers = [f.result() for f in started if f.exception() is None]
            if failures:
                raise failures[0]  # type: ignore[misc]
            self.ports = [server.port for server in self.servers if server is not None]
        except BaseException:
            self.close()
            raise

    def _start(self, index: int, port: int) -> ServerProcess:
        listen = ["--listen", f"127.0.0.1:{port}", "--admin-listen", "off"]
        return ServerProcess(str(self.directory / f"shard-{index}"), None,
                             extra=["--unit", self.unit, *listen, *self.extra], capacity=self.capacity)

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def url(self, namespace: str = "", scheme: str = "memkv+tcp") -> str:
        return f"{scheme}://{','.join(self.addresses)}/{namespace}"

    def kill(self, index: int) -> None:
        """SIGKILL: the shard vanishes mid-request, as in a crash."""
        server = self.servers[index]
        if server is not None:
            server.kill()
            self.servers[index] = None

    def stop(self, index: int) -> None:
        server = self.servers[index]
        if server is not None:
            server.terminate()
            self.servers[index] = None

    def restart(self, index: int) -> None:
        """Start the shard again on its port over the data it left."""
        self.kill(index)
        self.servers[index] = self._start(index, self.ports[index])

    def close(self) -> None:
        for index in range(len(self.servers)):
            self.kill(index)
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()




class EtcdProcess:
    """A one-member etcd (Debian's etcd-server) on 127.0.0.1 free ports over a temporary directory."""

    def __init__(self, binary: str = "etcd", startup_timeout: float = 30.0) -> None:
        path = shutil.which(binary)
        if path is None:
            raise FileNotFoundError(f"{binary} is not installed (apt-get install etcd-server)")
        self.directory = Path(tempfile.mkdtemp(prefix="memkv-etcd-"))
        self.port, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{peer}"
        self._log = open(self.directory / "etcd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [path, "--name", "memkv-test", "--data-dir", str(self.directory / "data"),
             "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"memkv-test={peer_url}"],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{client_url}/health", timeout=1) as answer:
                    if b"true" in answer.read():
                        return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError(f"etcd did not start: {(self.directory / 'etcd.log').read_text()[-2000:]}")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> EtcdProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pool_payload(key: bytes, size: int = 1024) -> bytes:
    return (key * (size // 16 + 1))[:size]


class PoolWriter:
    """A thread that puts a fixed pool of keys over and over (a re-put of the same bytes is allowed) and
    records which keys were acknowledged and which refused; 1200 blocks of 64 KiB units never make a
    128 MiB shard evict."""

    def __init__(self, transport: Any, count: int = 1200, batch: int = 16) -> None:
        self.transport, self.batch = transport, batch
        self.pool = [os.urandom(16) for _ in range(count)]
        self.acknowledged: set[bytes] = set()
        self.refused: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memkv-pool-writer")

    def _run(self) -> None:
        from ..transport import PutItem

        round_no = 0
        while not self._stop.is_set():
            keys = [self.pool[(round_no * self.batch + i) % len(self.pool)] for i in range(self.batch)]
            round_no += 1
            results = self.transport.put([PutItem(k, pool_payload(k)) for k in keys])
            for key, result in zip(keys, results, strict=True):
                (self.acknowledged if result.ok else self.refused).add(key)

    def __enter__(self) -> PoolWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


__all__ = ["EtcdProcess", "LocalCluster", "PoolWriter", "pool_payload"]
