"""A transport that forwards every operation to another: the base of composed transports.

Subclass it and override what you want to observe or change; a logging wrapper, for example:

    class Logged(WrapperTransport):
        def put(self, items):
            results = super().put(items)
            log.info("put %d blocks", len(results))
            return results

The non-blocking forms (put_async, get_into_async, aput, aget_into) and the conveniences (get,
put_one, put_chain, ...) run this transport's own `put` and `get_into`, so one override covers
every path. Closing the wrapper closes the inner transport.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .buffers import BufferLike
from .keys import NO_FINGERPRINT
from .sessions import SessionInfo
from .transport import BlockInfo, Capabilities, GetResult, ItemResult, LookupResult, PutItem, ResumeResult, Transport


class WrapperTransport(Transport):
    """Forwards every `Transport` operation to `inner`.

    The optional features of memkv.transport_features are not forwarded, so that isinstance
    tells the truth about the wrapper: a subclass offers one by defining it, for example
    `def flush(self) -> None: self.inner.flush()` over an inner transport that flushes.
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.namespace = inner.namespace

    # ---- blocks -------------------------------------------------------------------------------
    def put(self, items: Sequence[PutItem]) -> list[ItemResult]:
        return self.inner.put(items)

    def get_into(self, keys: Sequence[bytes], buffers: Sequence[BufferLike]) -> list[GetResult]:
        return self.inner.get_into(keys, buffers)

    def stat(self, keys: Sequence[bytes]) -> list[BlockInfo | None]:
        return self.inner.stat(keys)

    def exists(self, keys: Sequence[bytes]) -> list[bool]:
        return self.inner.exists(keys)

    def lookup(self, keys: Sequence[bytes], lease_ms: int = 0) -> LookupResult:
        return self.inner.lookup(keys, lease_ms)

    def release_lease(self, lease_id: str) -> None:
        self.inner.release_lease(lease_id)

    def delete(self, keys: Sequence[bytes]) -> list[ItemResult]:
        return self.inner.delete(keys)

    # ---- sessions -----------------------------------------------------------------------------
    def open_session(self, ttl_s: float, keys: Sequence[bytes] = (),
                     fingerprint: bytes = NO_FINGERPRINT) -> SessionInfo:
        return self.inner.open_session(ttl_s, keys, fingerprint)

    def append(self, session_id: str, keys: Sequence[bytes]) -> SessionInfo:
        return self.inner.append(session_id, keys)

    def suspend(self, session_id: str, pause_ttl_s: float) -> SessionInfo:
        return self.inner.suspend(session_id, pause_ttl_s)

    def resume(self, session_id: str) -> ResumeResult:
        return self.inner.resume(session_id)

    def fork(self, session_id: str, prefix_len: int | None = None, ttl_s: float | None = None) -> SessionInfo:
        return self.inner.fork(session_id, prefix_len, ttl_s)

    def close_session(self, session_id: str) -> SessionInfo:
        return self.inner.close_session(session_id)

    def session_info(self, session_id: str) -> SessionInfo:
        return self.inner.session_info(session_id)

    # ---- invalidation -------------------------------------------------------------------------
    def invalidate_keys(self, keys: Sequence[bytes]) -> int:
        return self.inner.invalidate_keys(keys)

    def invalidate_prefix(self, key: bytes) -> int:
        return self.inner.invalidate_prefix(key)

    def invalidate_session(self, session_id: str) -> int:
        return self.inner.invalidate_session(session_id)

    def invalidate_model(self, fingerprint: bytes) -> int:
        return self.inner.invalidate_model(fingerprint)

    def invalidate_namespace(self) -> int:
        return self.inner.invalidate_namespace()

    # ---- target -------------------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities()

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def _close(self) -> None:
        self.inner.close()


__all__ = ["WrapperTransport"]
