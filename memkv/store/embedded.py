"""The embedded file backend: the storage engine in-process over a preallocated file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..buffers import BufferLike
from ..children import ChildPage
from ..errors import Unavailable
from ..keys import NO_FINGERPRINT
from ..namespaces import check_namespace
from ..sessions import SessionInfo
from ..stats import namespace_stats
from ..transport import (
    BlockInfo,
    Capabilities,
    GetResult,
    ItemResult,
    LookupResult,
    PutItem,
    ResumeResult,
    Transport,
)
from .engine import StorageEngine
from .opening import make_private_dirs as make_private_dirs  # connect() makes the store directory

FILE_PROFILES = frozenset({"core", "sessions", "durable"})


class FileTransport(Transport):
    """A namespace of an embedded store. Several transports may share one engine."""

    def __init__(self, engine: StorageEngine, namespace: str = "default", owns_engine: bool = True) -> None:
        self.engine = engine
        self.namespace = check_namespace(namespace)
        self._owns_engine = owns_engine

    @classmethod
    def open(cls, directory: str, namespace: str = "default", **engine_options: Any) -> FileTransport:
        return cls(StorageEngine(directory, **engine_options), namespace)

    def _engine(self) -> StorageEngine:
        if self._closed:
            raise Unavailable("transport is closed")
        return self.engine

    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        return self._engine().put(self.namespace, items)

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        return self._engine().get_into(self.namespace, keys, buffers)

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        return self._engine().stat(self.namespace, keys)

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        return self._engine().exists(self.namespace, keys)

    def children(self, parents: Sequence[bytes], after: bytes | None = None) -> ChildPage:
        engine = self._engine()
        return engine.children(self.namespace, parents, after, engine.limits.max_batch)

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        return self._engine().lookup(self.namespace, keys, lease_ms)

    def release_lease(self, lease_id: str) -> None:
        self._engine().release_lease(self.namespace, lease_id)

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        return self._engine().delete(self.namespace, keys)

    def open_session(
        self, ttl_s: float, keys: Sequence[bytes] = (), fingerprint: bytes = NO_FINGERPRINT
    ) -> SessionInfo:
        return self._engine().open_session(self.namespace, ttl_s, keys, fingerprint)

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        return self._engine().append(self.namespace, session_id, keys)

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        return self._engine().suspend(self.namespace, session_id, pause_ttl_s)

    def resume(self, session_id: str) -> ResumeResult:
        return self._engine().resume(self.namespace, session_id)

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        return self._engine().fork(self.namespace, session_id, prefix_len, ttl_s)

    def close_session(self, session_id: str) -> SessionInfo:
        return self._engine().close_session(self.namespace, session_id)

    def session_info(self, session_id: str) -> SessionInfo:
        return self._engine().session_info(self.namespace, session_id)

    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        return self._engine().invalidate_keys(self.namespace, keys)

    def invalidate_prefix(self, key: bytes) -> int:
        return self._engine().invalidate_prefix(self.namespace, key)

    def invalidate_session(self, session_id: str) -> int:
        return self._engine().invalidate_session(self.namespace, session_id)

    def invalidate_model(self, fingerprint: bytes) -> int:
        return self._engine().invalidate_model(self.namespace, fingerprint)

    def invalidate_namespace(self) -> int:
        return self._engine().invalidate_namespace(self.namespace)

    def capabilities(self) -> Capabilities:
        engine = self._engine()
        return Capabilities("file", FILE_PROFILES, engine.limits, capacity_bytes=engine.allocator.total_bytes,
                            flush_window_s=engine.flush_interval_s)

    def stats(self) -> dict[str, Any]:
        return namespace_stats(self._engine(), self.namespace)

    def flush(self) -> None:
        self._engine().flush()

    def _close(self) -> None:
        if self._owns_engine:
            self.engine.close()


__all__ = ["FILE_PROFILES", "FileTransport"]
