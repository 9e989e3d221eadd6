"""The server's internal configuration (memkv/server/settings.py reads it from file, environment and flags)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..addresses import listen_address
from ..errors import InvalidArgument
from ..units import parse_size

DEFAULT_PORT = 9900
GiB = 1024**3
MiB = 1024**2


@dataclasses.dataclass(slots=True)
class ServerConfig:
    data_dir: str = ""
    device: str | None = None
    format_device: bool = False  # format --device when it holds no memkv store yet
    capacity: int = 1 * GiB
    unit: int = 1 * MiB
    listen: str = f"127.0.0.1:{DEFAULT_PORT}"
    admin_listen: str | None = None  # default: 127.0.0.1, listen port + 1; "off" disables
    keys_file: str | None = None
    insecure_no_auth: bool = False
    namespaces: list[str] = dataclasses.field(default_factory=lambda: ["default"])
    max_connections: int = 256
    buffer_memory: int = 1 * GiB
    max_frame_payload: int = 256 * MiB
    idle_timeout_s: float = 300.0
    frame_timeout_s: float = 10.0
    hello_window_s: float = 60.0
    # Connections that have not authenticated get a smaller budget and a short deadline, so they
    # can never take the slots of authenticated clients (MKV-SEC-051).
    max_unauthenticated: int = 64
    max_unauthenticated_per_peer: int = 32
    hello_timeout_s: float = 2.0
    max_connections_per_peer: int = 0  # 0: no cap beyond max_connections
    shutdown_grace_s: float = 10.0
    flush_interval_s: float = 1.0
    nixl: str = "auto"  # NIXL data path for memkv+nixl:// clients: auto (on first use), on, off
    nixl_staging: int = 256 * MiB  # registered DRAM staging pool of the NIXL data path
    admin_tls_cert: str | None = None  # PEM certificate and key: the admin API serves HTTPS
    admin_tls_key: str | None = None
    access_log: str | None = None  # trace-format log of lookups for `memkv plan` (MKV-CAP-009)
    access_log_max_bytes: int = 64 * MiB  # rotated at this size, one older file kept
    s3_listen: str | None = None  # the optional S3 endpoint (spec/s3.md), host:port; off when None
    shard_group: tuple[str, ...] = ()  # every shard of this server's group, itself included (MKV-CLU-060)

    def update(self, values: dict[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        for name, value in values.items():
            name = name.replace("-", "_")
            if name not in names:
                raise InvalidArgument(f"unknown server setting {name!r}; known: {sorted(names)}")
            if value is None:
                continue
            if name in ("capacity", "unit", "buffer_memory", "max_frame_payload", "nixl_staging",
                        "access_log_max_bytes"):
                value = parse_size(value)
            elif name.endswith("_s"):
                value = float(value)
            elif name.startswith("max_connections") or name.startswith("max_unauthenticated"):
                value = int(value)
            elif name == "namespaces":
                value = [str(v) for v in value]
            setattr(self, name, value)

    def listen_address(self) -> tuple[str, int]:
        return listen_address(self.listen, DEFAULT_PORT)

    def s3_address(self) -> tuple[str, int] | None:
        if self.s3_listen in (None, "off", "none", ""):
            return None
        return listen_address(self.s3_listen, 0)

    def admin_address(self) -> tuple[str, int] | None:
        if self.admin_listen in ("off", "none", ""):
            return None
        _, port = self.listen_address()
        next_port = port + 1 if port else 0  # a data port the system picks: so is the admin one
        # loopback unless configured: --listen 0.0.0.0 is for data (MKV-ADM-030)
        return listen_address("127.0.0.1" if self.admin_listen is None else self.admin_listen, next_port)
