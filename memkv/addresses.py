"""`host:port` as a cluster names its shards (spec/cluster.md, MKV-CLU-040 and MKV-CLU-060)."""

from __future__ import annotations

from .errors import InvalidArgument


def split_address(address: str) -> tuple[str, int]:
    """`host:port` -> (host, port); INVALID_ARGUMENT for anything else (no host, a port outside 1..65535)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"cluster member {address!r} is not host:port")
    return host.strip("[]"), int(port)


__all__ = ["split_address"]
