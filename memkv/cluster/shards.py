"""One member of a cluster as the client holds it: a lazily opened transport, down/up state and retry."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import ErrorCode, MemkvError, Unavailable
from ..transport import Transport
from .placement import Shard

RETRY_AFTER_S = 1.0  # MKV-CLU-021 allows at most 5 s
LOST_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT})


def is_lost(exc: BaseException) -> bool:
    """An error that means the shard cannot be reached (as opposed to an answer it gave)."""
    if isinstance(exc, MemkvError):
        return exc.code in LOST_CODES
    return isinstance(exc, OSError)


class ShardLink:
    """The transport of one shard; after a failure it is not tried again for RETRY_AFTER_S."""

    def __init__(self, shard: Shard, opener: Callable[[Shard], Transport],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.shard = shard
        self._opener = opener
        self._clock = clock
        self._transport: Transport | None = None
        self._failed_at: float | None = None
        self._last_error = ""
        self._lock = threading.Lock()
        self._closed = False

    @property
    def reachable(self) -> bool:
        return self._failed_at is None

    def transport(self) -> Transport:
        with self._lock:
            if self._closed:
                raise Unavailable("cluster transport is closed")
            if self._transport is not None:
                return self._transport
            if self._failed_at is not None and self._clock() - self._failed_at < RETRY_AFTER_S:
                raise Unavailable(f"shard {self.shard.shard_id} is unreachable: {self._last_error}")
            try:
                self._transport = self._opener(self.shard)
            except Exception as exc:
                if not is_lost(exc):
                    raise
                self._mark_lost(exc)
                raise Unavailable(f"shard {self.shard.shard_id} is unreachable: {self._last_error}") from None
            self._failed_at = None
            return self._transport

    def lost(self, exc: BaseException) -> None:
        """A request failed for want of the shard: drop its transport, try again later."""
        with self._lock:
            self._mark_lost(exc)

    def _mark_lost(self, exc: BaseException) -> None:
        self._failed_at = self._clock()
        self._last_error = str(exc) or type(exc).__name__
        transport, self._transport = self._transport, None
        if transport is not None:
            try:
                transport.close()
            except Exception:  # the shard is gone; closing is best effort
                pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()


__all__ = ["RETRY_AFTER_S", "ShardLink", "is_lost"]
