"""`host:port` as a cluster names its shards (spec/cluster.md, MKV-CLU-040 and MKV-CLU-060) and as a
server listens (`--listen`, `--admin-listen`, `--s3-listen`): one parser, two strictnesses."""

from __future__ import annotations

from .errors import InvalidArgument

LOOPBACK = "127.0.0.1"


def _port(text: str, lowest: int) -> int | None:
    return int(text) if text.isdigit() and lowest <= int(text) < 65536 else None


def split_address(address: str) -> tuple[str, int]:
    """`host:port` -> (host, port); INVALID_ARGUMENT for anything else (no host, a port outside 1..65535)."""
    host, sep, port_text = address.rpartition(":")
    port = _port(port_text, 1)
    if not sep or not host or port is None:
        raise InvalidArgument(f"cluster member {address!r} is not host:port")
    return host.strip("[]"), port


def listen_address(text: str, default_port: int) -> tuple[str, int]:
    """An address to listen on: `host:port`, `host` (the default port) or `:port` (loopback); port 0
    asks the system for a free one. INVALID_ARGUMENT for a port that is not 0..65535."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        if _port(str(default_port), 0) is None:  # e.g. the admin port next to a data port of 65535
            raise InvalidArgument(f"address {text!r} has no port and its default {default_port} is not 0..65535")
        return text or LOOPBACK, default_port
    port = _port(port_text, 0)
    if port is None:
        raise InvalidArgument(f"cannot read address {text!r}; use host:port with a port of 0..65535")
    return host.strip("[]") or LOOPBACK, port


__all__ = ["listen_address", "split_address"]
