"""A cluster of `memkv serve` processes on 127.0.0.1 for tests, demos and the conformance target."""

from __future__ import annotations

import concurrent.futures
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ..server.testing import ServerProcess


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


__all__ = ["LocalCluster"]
