"""`memkv.connect(url)`: pick the backend from the URL scheme (MKV-CAP-005)."""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from typing import Any

from .errors import InvalidArgument
from .transport import Transport
from .units import parse_size

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".local", "share", "memkv")

_FILE_OPTIONS: dict[str, Callable[[str], Any]] = {"capacity": parse_size, "unit": parse_size, "device": str,
                 "flush_interval": float}
# keyword arguments connect() passes on to the embedded engine
FILE_ENGINE_OPTIONS = frozenset({"capacity", "unit", "device_path", "flush_interval_s", "format_device", "limits",
                                 "clock", "io"})


def _file_options(query: dict[str, list[str]]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, values in query.items():
        if name not in _FILE_OPTIONS:
            raise InvalidArgument(f"unknown file:// option {name!r}; known: {sorted(_FILE_OPTIONS)}")
        try:
            options[name] = _FILE_OPTIONS[name](values[-1])
        except ValueError as exc:
            raise InvalidArgument(f"file:// option {name}={values[-1]!r} is not valid: {exc}") from None
    renamed = {"device": "device_path", "flush_interval": "flush_interval_s"}
    return {renamed.get(k, k): v for k, v in options.items()}


def _store_directory(url: str, parsed: urllib.parse.SplitResult) -> str:
    if parsed.netloc not in ("", "localhost"):
        # file://relative/path reads "relative" as a host name: refuse rather than open /path
        raise InvalidArgument(f"{url!r}: a file:// URL names an absolute path (file:///var/lib/memkv, three "
                              f"slashes); for a path relative to the current directory write "
                              f"file:{parsed.netloc}{parsed.path}")
    path = urllib.parse.unquote(parsed.path)
    if not path:
        raise InvalidArgument("file:// URL needs a directory path, e.g. file:///var/lib/memkv")
    return path


def _connect_file(url: str, parsed: urllib.parse.SplitResult, namespace: str, options: dict[str, Any]) -> Transport:
    from .store.embedded import FileTransport, make_private_dirs

    path = _store_directory(url, parsed)
    engine_options = _file_options(urllib.parse.parse_qs(parsed.query)) | options
    unknown = sorted(set(engine_options) - FILE_ENGINE_OPTIONS)
    if unknown:
        extra = " (an embedded store has no authentication: key is for memkv+tcp:// and memkv+nixl://)" \
            if {"key", "key_file"} & set(unknown) else ""
        raise InvalidArgument(f"file:// does not take {', '.join(unknown)}{extra}; "
                              f"it takes {sorted(_FILE_OPTIONS)}")
    try:
        make_private_dirs(path)  # 0700, parents too (MKV-SEC-004)
    except OSError as exc:
        raise InvalidArgument(f"cannot create the store directory {path}: {exc.strerror or exc}") from None
    transport = FileTransport.open(path, namespace, **engine_options)
    requested = engine_options.get("capacity")
    actual = transport.engine.device.size
    if requested is not None and requested != actual:
        transport.close()
        raise InvalidArgument(f"the store in {path} has a capacity of {actual} bytes; capacity={requested} cannot "
                              f"change it (omit capacity to open it as it is, or use a new directory)")
    return transport


def connect(url: str, namespace: str = "default", **options: Any) -> Transport:
    """Open a transport. Schemes: file:// (embedded), memkv+tcp://, memkv+nixl:// (a comma list of
    host:port: a cluster), memkv+etcd://HOST:PORT/CLUSTER/NS (a cluster whose members are in etcd)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        return _connect_file(url, parsed, namespace, options)
    if parsed.scheme in ("memkv+tcp", "memkv+nixl", "memkv+etcd"):
        tcp_options: dict[str, Any] = {name: values[-1] for name, values in urllib.parse.parse_qs(parsed.query).items()}
        try:
            for name in ("pool_size", "timeout", "connect_timeout"):
                if name in tcp_options:
                    tcp_options[name] = float(tcp_options[name]) if "timeout" in name else int(tcp_options[name])
        except ValueError:
            raise InvalidArgument(f"bad number in {parsed.scheme} option {name!r}") from None
        from .cluster.connect import connect_cluster, is_cluster_url

        if is_cluster_url(parsed):  # several shards as one transport (spec/cluster.md)
            return connect_cluster(url, parsed, namespace, tcp_options | options)
        path_namespace = urllib.parse.unquote(parsed.path.strip("/"))
        if path_namespace and namespace == "default":
            namespace = path_namespace
        try:
            port = parsed.port
        except ValueError:
            raise InvalidArgument(f"bad port in {url!r}") from None
        merged = tcp_options | options
        direct = str(merged.pop("direct", "0")).lower() in ("1", "true", "yes")
        if parsed.scheme == "memkv+nixl":  # control over TCP, block payloads over NIXL (auto falls back to TCP)
            from .backends.nixl import open_nixl

            single: Transport = open_nixl(parsed.hostname or "127.0.0.1", port, namespace, dict(merged))
        else:
            from .backends.tcp import open_tcp

            single = open_tcp(parsed.hostname or "127.0.0.1", port, namespace, dict(merged))
        if direct:  # this one server, even when it is one shard of a group (MKV-CLU-061)
            return single
        from .cluster.connect import over_group

        return over_group(single, parsed.scheme, namespace, merged)
    raise InvalidArgument(f"unknown URL scheme {parsed.scheme!r}; use file://, memkv+tcp://, memkv+nixl:// or memkv+etcd://")
