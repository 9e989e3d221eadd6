"""Target descriptors: how the suite reaches, restarts and inspects an implementation.

A target is named by a spec string:

- a `memkv.connect` URL, e.g. `file:///var/lib/memkv?capacity=256MiB`;
- `module:factory` or `module:factory?name=value&...` for a third-party adapter. The factory is
  called with the query options as keyword arguments (strings) and returns either a `Target`
  or a callable `namespace -> Transport`.

The checks only talk to `Target`; every hook beyond `connect` is optional and a check that
needs a missing hook reports that the requirement cannot be demonstrated (a failure in a
claimed profile). Hooks for the server's profiles (secure, admin) are declared here so a server
target can offer them: `allocate_namespace`, `credential`, `second_client`, `wire_address`,
`admin_url`, `launch`. The memkv server's own target is `memkv.conformance.targets.server`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import shutil
import struct
import tempfile
import urllib.parse
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from memkv.errors import InvalidArgument
from memkv.transport import Capabilities, Transport
from memkv.transport_features import Flushable

DEFAULT_FILE_CAPACITY = 256 * 1024 * 1024
DEFAULT_FILE_UNIT = 256 * 1024


@dataclasses.dataclass
class Launched:
    """What `Target.launch` gives back: did the server start, what it printed, a target over it."""

    started: bool
    output: str
    target: Target | None = None


class Target:
    """A conformance target. Subclass it (or duck-type it) in an adapter."""

    #: the spec string a child process passes to `load_target` to reach the same data
    spec: str = ""
    #: the target can be stopped and started again with its data (profile durable)
    restartable: bool = False
    #: a second process opening the store while this one holds it is refused (MKV-DUR-006)
    exclusive: bool = False
    #: URL of the admin API (profile admin), None when there is none
    admin_url: str | None = None

    def connect(self, namespace: str) -> Transport:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"spec": redact(self.spec), "kind": type(self).__name__}

    def capabilities(self) -> Capabilities:
        transport = self.connect("memkv-conformance-probe")
        try:
            return transport.capabilities()
        finally:
            transport.close()

    def make_small(self, capacity: int) -> Target | None:
        """A fresh, empty target of about `capacity` bytes (eviction checks), or None."""
        return None

    def stop(self) -> None:
        """Shut down cleanly, closing every transport handed out (restartable targets)."""
        raise NotImplementedError

    def start(self) -> None:
        """Start again after `stop` or after a child process that held the data was killed."""
        raise NotImplementedError

    def flush(self, transport: Transport) -> None:
        """Make committed blocks durable (MKV-DUR-002); the default flushes a Flushable transport."""
        if isinstance(transport, Flushable):
            transport.flush()

    def corrupt_block(self, namespace: str, key: bytes) -> bool:
        """Damage the stored bytes of a block behind the target's back; False if not possible."""
        return False

    def bump_format_version(self) -> bool:
        """While stopped, rewrite the on-disk header with a newer format version (MKV-DUR-005)."""
        return False

    def allocate_namespace(self, prefix: str = "c") -> str | None:
        """A fresh namespace the target can serve (a server hands out test namespaces it has keys
        for); None: the suite makes up unique names itself."""
        return None

    def credential(self, namespace: str, role: str) -> str | None:
        """`<key id>:<secret>` of a key of role read, write or admin on `namespace` (profile secure,
        admin); None when not offered."""
        return None

    def second_client(self, namespace: str, credentials: dict[str, str]) -> Transport | None:
        """A transport of `namespace` with other credentials (profile secure): {"key": "<id>:<secret>"}
        or {"role": "read"}; None when not offered. Authentication errors propagate."""
        return None

    def wire_address(self) -> tuple[str, int] | None:
        """(host, port) of a memkv wire-protocol server, for raw-frame checks; None when none."""
        return None

    def launch(self, keys_file: str | None, insecure: bool = False, extra_args: Sequence[str] = (),
               capacity: str | None = None, unit: str | None = None) -> Launched | None:
        """Start another server of the same implementation with this keys file (None: the target's
        own test keys; `insecure`: unauthenticated), extra server flags, capacity and allocation
        unit, for the start-up requirements (MKV-NS-007, MKV-NS-008, MKV-ADM-002) and small
        instances; None when not offered.
        A started one is stopped when this target is closed (or by closing `Launched.target`)."""
        return None

    def close(self) -> None:
        """Release everything; the suite calls it once at the end of a run."""


class FactoryTarget(Target):
    """A target made of a plain `namespace -> Transport` callable."""

    def __init__(self, spec: str, factory: Callable[[str], Transport]) -> None:
        self.spec = spec
        self._factory = factory

    def connect(self, namespace: str) -> Transport:
        return self._factory(namespace)


class FileTarget(Target):
    """The embedded file backend: one engine in this process, one transport per namespace."""

    restartable = True
    exclusive = True

    def __init__(self, url: str, owns_directory: bool = False) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.directory = urllib.parse.unquote(parsed.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        query.setdefault("capacity", str(DEFAULT_FILE_CAPACITY))
        query.setdefault("unit", str(DEFAULT_FILE_UNIT))
        self.spec = urllib.parse.urlunsplit(("file", "", parsed.path, urllib.parse.urlencode(query), ""))
        self._owns_directory = owns_directory
        self._engine: Any = None
        self._transports: list[Transport] = []
        self._small: list[FileTarget] = []

    @classmethod
    def temporary(cls, capacity: int = DEFAULT_FILE_CAPACITY, unit: int = DEFAULT_FILE_UNIT) -> FileTarget:
        directory = tempfile.mkdtemp(prefix="memkv-conformance-")
        query = urllib.parse.urlencode({"capacity": capacity, "unit": unit})
        return cls(f"file://{urllib.parse.quote(directory)}?{query}", owns_directory=True)

    def start(self) -> None:
        if self._engine is None:
            import memkv

            first = memkv.connect(self.spec, namespace="memkv-conformance-probe")
            self._engine = first.engine  # type: ignore[attr-defined]
            self._transports.append(first)

    def connect(self, namespace: str) -> Transport:
        from memkv.store.embedded import FileTransport

        self.start()
        transport = FileTransport(self._engine, namespace, owns_engine=False)
        self._transports.append(transport)
        return transport

    def stop(self) -> None:
        if self._engine is None:
            return
        for transport in self._transports:
            with contextlib.suppress(Exception):
                transport.close()
        self._transports.clear()
        engine, self._engine = self._engine, None
        engine.close()

    def make_small(self, capacity: int) -> Target:
        unit = 64 * 1024
        small = FileTarget.temporary(capacity=capacity + unit, unit=unit)
        self._small.append(small)
        return small

    def corrupt_block(self, namespace: str, key: bytes) -> bool:
        self.start()
        live = self._engine.resident.get((namespace, bytes(key)))
        if live is None:
            return False
        extent = live.row.extents[0]
        path = self._engine.device.path
        with open(path, "r+b") as handle:
            handle.seek(extent.offset)
            first = handle.read(1)
            handle.seek(extent.offset)
            handle.write(bytes([first[0] ^ 0xFF]))
        return True

    def bump_format_version(self) -> bool:
        """Superblock: magic 8s, version u16, ... then a CRC32 of the layout (memkv/store/superblock.py)."""
        if self._engine is not None:
            return False
        path = os.path.join(self.directory, "device.img")
        layout = struct.Struct("<8sHHIQQ16sd")
        with open(path, "r+b") as handle:
            raw = bytearray(handle.read(layout.size))
            (version,) = struct.unpack_from("<H", raw, 8)
            struct.pack_into("<H", raw, 8, version + 1)
            handle.seek(0)
            handle.write(bytes(raw) + struct.pack("<I", zlib.crc32(bytes(raw))))
        return True

    def describe(self) -> dict[str, Any]:
        return {"spec": redact(self.spec), "kind": "file (embedded engine)", "directory": self.directory}

    def close(self) -> None:
        """Stop, and remove what this target created even when stopping fails (a broken store must not
        leave its temporary directories behind)."""
        try:
            self.stop()
        finally:
            for small in self._small:
                with contextlib.suppress(Exception):
                    small.close()
            self._small.clear()
            if self._owns_directory:
                shutil.rmtree(self.directory, ignore_errors=True)


class URLTarget(Target):
    """Any other `memkv.connect` URL (e.g. memkv+tcp://host:port): one connection per namespace."""

    def __init__(self, url: str) -> None:
        self.spec = url

    def connect(self, namespace: str) -> Transport:
        import memkv

        return memkv.connect(self.spec, namespace=namespace)


def redact(spec: str) -> str:
    """The spec without credentials (user:password@ and token/password/secret options)."""
    parsed = urllib.parse.urlsplit(spec)
    netloc = parsed.netloc.rsplit("@", 1)[-1] if "@" in parsed.netloc else parsed.netloc
    query = [(k, "***" if any(s in k.lower() for s in ("pass", "token", "secret", "key")) else v)
             for k, v in urllib.parse.parse_qsl(parsed.query)]
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, urllib.parse.urlencode(query),
                                    parsed.fragment))


def load_target(spec: str) -> Target:
    """The target named by `spec`: a URL or module:factory[?options]."""
    if not spec:
        raise InvalidArgument("empty target")
    if spec == "memkv-serve" or spec.startswith("memkv-serve?"):
        spec = "memkv.conformance.targets.server:serve" + spec[len("memkv-serve"):]
    parsed = urllib.parse.urlsplit(spec)
    if parsed.scheme in ("memkv+tcp", "memkv+nixl"):
        from .targets.server import from_url

        return from_url(spec)
    if parsed.scheme == "file":
        if not parsed.path:
            return FileTarget.temporary()
        return FileTarget(spec)
    if "://" in spec:
        return URLTarget(spec)
    name, _, query = spec.partition("?")
    module_name, sep, attr = name.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidArgument(f"target {spec!r} is neither a URL nor module:factory")
    module = importlib.import_module(module_name)
    factory = getattr(module, attr)
    options = dict(urllib.parse.parse_qsl(query))
    made = factory(**options)
    if isinstance(made, Target) or hasattr(made, "connect"):
        if not getattr(made, "spec", ""):
            made.spec = spec
        return made  # type: ignore[no-any-return]
    if callable(made):
        return FactoryTarget(spec, made)
    raise InvalidArgument(f"factory {name} returned {type(made).__name__}, not a Target or callable")


__all__ = ["FactoryTarget", "FileTarget", "Launched", "Target", "URLTarget", "load_target", "redact"]
