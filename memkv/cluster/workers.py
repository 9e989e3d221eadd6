"""`memkv serve --shards N`: N server processes, each a shard with its own data, capacity slice and port.

Nothing is shared between the shards: each is a full `memkv serve` over its own store, so one
node uses all its cores and drives. Shard i listens on the listen port + 2i (its admin API on the
port after it) or, with port 0, on a free port; clients reach every shard directly, by the
`memkv+tcp://` list this command prints or through etcd, where each shard registers itself.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidArgument

RESTART_DELAY_S = 1.0
# settings each worker gets its own value of; every other setting is passed on unchanged
PER_SHARD = frozenset({"shards", "data", "device", "capacity", "listen", "admin_listen", "shard_id", "config",
                       "shard_group"})


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise InvalidArgument(f"--listen {listen!r} is not host:port")
    return host, int(port)


def shard_ports(settings: Any) -> list[int]:
    """Each shard's port: the listen port + 2i, or free ports chosen now when it is 0, so that every shard
    can be told the whole group before it starts (MKV-CLU-060)."""
    host, port = _split_listen(settings.listen)
    if port:
        return [port + 2 * i for i in range(settings.shards)]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    held: list[socket.socket] = []
    try:
        for _ in range(settings.shards):  # held open together, so the ports differ
            sock = socket.socket(family, socket.SOCK_STREAM)
            held.append(sock)
            sock.bind((host.strip("[]"), 0))
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def shard_group(settings: Any, ports: list[int]) -> list[str]:
    """The addresses clients reach the shards at: the group's static list (MKV-CLU-040, MKV-CLU-060)."""
    from .serving import advertised_address

    host, _ = _split_listen(settings.listen)
    return [advertised_address(settings, (host, port)) for port in ports]


def worker_flags(settings: Any, index: int, group_ports: list[int] | None = None) -> list[str]:
    """The `memkv serve` flags of shard `index` (settings: a validated ServeSettings); with `group_ports`
    (shard_ports), its port is its entry and every shard learns the group."""
    count = settings.shards
    devices = [d for d in (settings.device or "").split(",") if d]  # one per shard (ServeSettings checks)
    host, port = _split_listen(settings.listen)
    shard_port = group_ports[index] if group_ports else port + 2 * index if port else 0
    slice_size = settings.capacity // count // settings.unit * settings.unit
    if slice_size < settings.unit:
        raise InvalidArgument(f"capacity {settings.capacity} leaves less than one unit per shard")
    flags = ["--data", str(Path(settings.data) / f"shard-{index}"), "--listen", f"{host}:{shard_port}",
             "--capacity", str(slice_size)]
    if devices:
        flags += ["--device", devices[index]]
    if settings.admin_listen == "off":
        flags += ["--admin-listen", "off"]
    elif settings.admin_listen:
        admin_host, admin_port = _split_listen(settings.admin_listen)
        flags += ["--admin-listen", f"{admin_host}:{admin_port + 2 * index if admin_port else 0}"]
    elif not port:
        flags += ["--admin-listen", f"{host}:0"]
    if settings.shard_id:
        flags += ["--shard-id", f"{settings.shard_id}-{index}"]
    if group_ports:
        flags += ["--shard-group", ",".join(shard_group(settings, group_ports))]
    for name, value in settings.model_dump().items():
        default = type(settings).model_fields[name].default
        if name in PER_SHARD or value == default or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


class Worker:
    """One shard's process; its first line (the listening address) is read before the next starts."""

    def __init__(self, index: int, flags: list[str]) -> None:
        self.index, self.flags = index, flags
        self.proc: subprocess.Popen[bytes] | None = None
        self.line = ""

    def spawn(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "memkv.server", *self.flags], stdout=subprocess.PIPE)

    def start(self) -> str:
        if self.proc is None or self.proc.poll() is not None:
            self.spawn()
        assert self.proc is not None and self.proc.stdout is not None
        self.line = self.proc.stdout.readline().decode("utf-8", "replace").strip()
        if "listening on" not in self.line:
            self.proc.wait()
            raise InvalidArgument(f"shard {self.index} did not start (exit status {self.proc.returncode})")
        threading.Thread(target=_drain, args=(self.proc.stdout,), daemon=True).start()
        return self.line

    def address(self) -> str:
        return self.line.split("listening on ", 1)[1].split()[0]


def _drain(stream: IO[bytes]) -> None:
    for line in stream:
        sys.stdout.write(line.decode("utf-8", "replace"))
        sys.stdout.flush()


def run_shards(settings: Any) -> int:
    """Start every shard, print where each listens and the cluster URL, restart a shard that dies,
    and stop them all on SIGTERM or SIGINT."""
    ports = shard_ports(settings)
    workers = [Worker(i, worker_flags(settings, i, ports)) for i in range(settings.shards)]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        for worker in workers:  # start-up is mostly imports and opening the store: overlap it
            worker.spawn()
        for worker in workers:
            print(f"memkv serve: shard {worker.index}: {worker.start()}", flush=True)
        print(f"memkv serve: cluster memkv+tcp://{','.join(shard_group(settings, ports))}", flush=True)
        while not stop.wait(0.5):
            for worker in workers:
                if worker.proc is not None and worker.proc.poll() is not None:
                    print(f"memkv serve: shard {worker.index} exited ({worker.proc.returncode}); restarting",
                          flush=True)
                    time.sleep(RESTART_DELAY_S)
                    worker.flags = _same_port(worker.flags, worker.address())
                    worker.start()
    finally:
        for worker in workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        for worker in workers:
            if worker.proc is not None:
                worker.proc.wait()
    print("memkv serve: stopped", flush=True)
    return 0


def _same_port(flags: list[str], address: str) -> list[str]:
    """A restarted shard keeps its port, so that clients and etcd find it where it was."""
    out = list(flags)
    out[out.index("--listen") + 1] = address
    return out


__all__ = ["run_shards", "shard_group", "shard_ports", "worker_flags"]
