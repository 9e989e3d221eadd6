"""Whether the store still takes writes: a storage failure that leaves durability unknown stops
them for good (MKV-DUR-009); a retried fsync can report success for pages the kernel already
dropped, so only a restart (and its checks) clears this.
"""

from __future__ import annotations

import logging
import threading

from ..errors import Unavailable
from .storage_errors import describe, is_fatal, unavailable

log = logging.getLogger(__name__)


class StoreHealth:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.failure: str | None = None  # why writes stopped
        self._lock = threading.Lock()

    def fail_stop(self, reason: str) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = reason
                log.critical("memkv store %s stops taking writes: %s; restart it once the storage "
                             "is repaired", self.directory, reason)

    def check_writable(self) -> None:
        if self.failure is not None:
            raise Unavailable(f"store stopped taking writes after a storage failure ({self.failure}); "
                              f"reads still work; restart once the storage is repaired")

    def index_failed(self, exc: BaseException, doing: str = "index update") -> Unavailable:
        """The spec error for a failed SQLite statement; one that leaves durability unknown stops writes."""
        if is_fatal(exc):
            self.fail_stop(f"{doing}: {describe(exc)}")
        return unavailable(exc, doing)
