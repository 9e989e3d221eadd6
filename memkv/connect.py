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


def connect(url: str, namespace: str = "default", **options: Any) -> Transport:
    """Open a transport. Schemes: file:// (embedded), memkv+tcp://, memkv+nixl://."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "file":
        from .backends.file import FileTransport

        path = urllib.parse.unquote(parsed.path)
        if not path:
            raise InvalidArgument("file:// URL needs a directory path, e.g. file:///var/lib/memkv")
        engine_options = _file_options(urllib.parse.parse_qs(parsed.query)) | options
        return FileTransport.open(path, namespace, **engine_options)
    if parsed.scheme in ("memkv+tcp", "memkv+nixl"):
        tcp_options: dict[str, Any] = {name: values[-1] for name, values in urllib.parse.parse_qs(parsed.query).items()}
        try:
            for name in ("pool_size", "timeout", "connect_timeout"):
                if name in tcp_options:
                    tcp_options[name] = float(tcp_options[name]) if "timeout" in name else int(tcp_options[name])
        except ValueError:
            raise InvalidArgument(f"bad number in {parsed.scheme} option {name!r}") from None
        path_namespace = urllib.parse.unquote(parsed.path.strip("/"))
        if path_namespace and namespace == "default":
            namespace = path_namespace
        try:
            port = parsed.port
        except ValueError:
            raise InvalidArgument(f"bad port in {url!r}") from None
        if parsed.scheme == "memkv+nixl":  # control over TCP, block payloads over NIXL (auto falls back to TCP)
            from .backends.nixl import open_nixl

            return open_nixl(parsed.hostname or "127.0.0.1", port, namespace, tcp_options | options)
        from .backends.tcp import open_tcp

        return open_tcp(parsed.hostname or "127.0.0.1", port, namespace, tcp_options | options)
    raise InvalidArgument(f"unknown URL scheme {parsed.scheme!r}; use file://, memkv+tcp:// or memkv+nixl://")
