"""Mooncake Store as a peer of `memkv bench --compare mooncake`.

Three processes, all on 127.0.0.1 and all started and stopped by the bench:

- `mooncake_master`: the store's master (object metadata, space allocation), with its embedded
  HTTP metadata server, which the transfer engines use to find each other's segments;
- `mooncake_client` (Mooncake's standalone store client): the storage side, holding the data
  in a global segment of its own DRAM, as `memkv serve` holds memkv's;
- in the bench process, a `MooncakeDistributedStore` that contributes no segment, so every
  block crosses loopback TCP (transfer engine protocol "tcp") to the storage process. The bench's
  page-aligned source and destination buffers are registered with the engine and moved
  zero-copy: put = `put_from`, get = `get_into`, whose result is the byte count (checked).

The CPU counted for the path is the bench process's (`client`), the storage process's (`server`)
and the master's (`master`: a few metadata calls per block; in the total, not in the text table).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from unittest import mock

from ..blocks import MiB
from ..buffers import address_of
from ..errors import Unsupported
from ..server.testing import free_port
from .common import BlockSlots
from .peers import Peer

INSTALL_HINT = "pip install 'memkv[compare]'"
DISTRIBUTIONS = ("mooncake-transfer-engine-non-cuda", "mooncake-transfer-engine")
STARTUP_S = 30.0
HOST = "127.0.0.1"
# Read by Mooncake's transfer engine when it starts: publish it at the loopback address (by
# default it picks the first LAN interface).
ENGINE_ENV = {"MC_TCP_BIND_ADDRESS": HOST}


def mooncake_version() -> str:
    for name in DISTRIBUTIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return f"{name} {importlib.metadata.version(name)}"
    return "mooncake (version unknown)"


def _package_dir() -> Path:
    spec = importlib.util.find_spec("mooncake")
    if spec is None or not spec.submodule_search_locations:
        raise Unsupported(f"--compare mooncake needs Mooncake Store's Python package ({INSTALL_HINT})")
    return Path(next(iter(spec.submodule_search_locations)))


@contextlib.contextmanager
def _stderr_to(log: IO[bytes]) -> Iterator[None]:
    """Mooncake's library logs its start-up to this process's stderr (glog, not silenced by its
    environment variables): kept in `log` instead, and shown when the start-up fails."""
    saved = os.dup(2)
    try:
        os.dup2(log.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _tail(log: IO[bytes], limit: int = 1500) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-limit:]


def _engine_environment() -> Any:
    """ENGINE_ENV set in this process (where not set already) while the library starts, restored after."""
    return mock.patch.dict(os.environ, {name: os.environ.get(name, value) for name, value in ENGINE_ENV.items()})


class _Process:
    """One Mooncake executable, its output kept in a temporary file for error messages."""

    def __init__(self, path: Path, args: list[str]) -> None:
        if not path.is_file():
            raise Unsupported(f"--compare mooncake: {path} is missing ({INSTALL_HINT})")
        self.name = path.name
        # lives as long as the process; closed by stop()
        self.log: IO[bytes] = tempfile.TemporaryFile(prefix=f"memkv-{self.name}-")  # noqa: SIM115
        self.proc = subprocess.Popen([str(path), *args], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env={**ENGINE_ENV, **os.environ})

    def wait_listening(self, port: int) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unsupported(f"{self.name} exited with status {self.proc.returncode} at start:\n"
                                  f"{_tail(self.log)}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
                return
            time.sleep(0.05)
        raise Unsupported(f"{self.name} did not listen on {HOST}:{port} within {STARTUP_S:.0f} s")

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self.log.close()


class MooncakePeer(Peer):
    """Mooncake Store over TCP, zero-copy put_from/get_into, storage in a process of its own."""

    name = "mooncake"

    def __init__(self, largest: int, count: int) -> None:
        package = _package_dir()
        try:
            from mooncake.store import MooncakeDistributedStore
        except ImportError as exc:
            raise Unsupported(f"--compare mooncake: cannot import mooncake.store ({exc}); {INSTALL_HINT} "
                              f"(mooncake-transfer-engine-non-cuda needs no GPU driver)") from None
        self.processes: list[_Process] = []
        self.store: Any = None
        self.registered: list[int] = []
        self.registered_size = 0
        self.slots = BlockSlots()
        self.stored: set[str] = set()
        try:
            self._start(package, MooncakeDistributedStore, 2 * count * largest + 64 * MiB)
        except BaseException:
            self.close()
            raise
        self.description = (f"Mooncake Store ({mooncake_version()}): mooncake_master and a mooncake_client "
                            f"holding the data on {HOST}; transfer engine over TCP, zero-copy "
                            f"put_from/get_into of registered buffers (CPU: client = bench process, "
                            f"server = mooncake_client, master = mooncake_master)")

    def _start(self, package: Path, store_class: Any, segment: int) -> None:
        rpc, metadata, metrics, client_port = free_port(), free_port(), free_port(), free_port()
        master = _Process(package / "mooncake_master", [
            f"--rpc_port={rpc}", f"--rpc_address={HOST}", "--enable_http_metadata_server=true",
            f"--http_metadata_server_port={metadata}", f"--http_metadata_server_host={HOST}",
            f"--metrics_port={metrics}", f"--metrics_host={HOST}", "--enable_metric_reporting=false"])
        self.processes.append(master)
        self.master = master
        master.wait_listening(rpc)
        master.wait_listening(metadata)
        metadata_url = f"http://{HOST}:{metadata}/metadata"
        storage = _Process(package / "mooncake_client", [
            f"--host={HOST}", f"--metadata_server={metadata_url}", f"--master_server_address={HOST}:{rpc}",
            "--protocol=tcp", f"--port={client_port}", f"--global_segment_size={segment}"])
        self.processes.append(storage)
        storage.wait_listening(client_port)  # its service port opens once its segment is mounted
        self.storage = storage
        with tempfile.TemporaryFile(prefix="memkv-mooncake-setup-") as log:
            with _engine_environment(), _stderr_to(log):
                self.store = store_class()
                # no segment and no local buffer of its own: the data lives in the storage process
                code = self.store.setup(HOST, metadata_url, 0, 0, "tcp", "", f"{HOST}:{rpc}")
            if code != 0:
                raise Unsupported(f"MooncakeDistributedStore.setup failed with code {code}:\n{_tail(log)}")

    def begin(self, size: int, count: int) -> None:
        self.slots.begin(size, count)
        buffers = {address_of(self.slots.src(i)) for i in range(count)}
        buffers |= {address_of(self.slots.dst(i)) for i in range(count)}
        if (size, buffers) != (self.registered_size, set(self.registered)):  # a new size: new buffers
            self._unregister(self.store)
            for address in sorted(buffers):
                self._check("register_buffer", self.store.register_buffer(address, size))
                self.registered.append(address)
            self.registered_size = size

    def op(self, op: str, i: int) -> None:
        key, size = self.slots.keys[i].hex(), self.slots.size
        if op == "put":
            self._check("put_from", self.store.put_from(key, address_of(self.slots.src(i)), size))
            self.stored.add(key)
            return
        got = self.store.get_into(key, address_of(self.slots.dst(i)), size)
        if got != size:
            raise Unsupported(f"mooncake get_into returned {got} for a stored block of {size} bytes")

    def end(self) -> None:
        while self.stored:
            # force: a block just read is still under the master's read lease
            self._check("remove", self.store.remove(self.stored.pop(), True))

    def close(self) -> None:
        try:
            if self.store is not None:
                store, self.store = self.store, None
                try:
                    self._unregister(store)
                finally:
                    store.close()
        finally:
            for process in reversed(self.processes):
                process.stop()
            self.processes.clear()

    def server_pid(self) -> int | None:
        return self.storage.proc.pid

    def helper_pids(self) -> dict[str, int]:
        return {"master": self.master.proc.pid}

    def _unregister(self, store: Any) -> None:
        while self.registered:
            self._check("unregister_buffer", store.unregister_buffer(self.registered.pop()))

    @staticmethod
    def _check(call: str, code: int) -> None:
        if code != 0:
            raise Unsupported(f"mooncake {call} failed with code {code}")
