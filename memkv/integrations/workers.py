"""A small worker pool with a bounded backlog: engine I/O that cannot wait is refused, not queued."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable


class BoundedWorkers:
    """Runs jobs on `threads` threads; at most `backlog` jobs are pending or running at once."""

    def __init__(self, backlog: int, threads: int = 2, name: str = "memkv-io") -> None:
        self.backlog = backlog
        self._slots = threading.BoundedSemaphore(backlog)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    def submit(self, run: Callable[[], None], refused: Callable[[], None]) -> bool:
        """Run `run` in the background, or call `refused` at once (backlog full or closed)."""
        if not self._slots.acquire(blocking=False):
            refused()
            return False

        def job() -> None:
            try:
                run()
            finally:
                self._slots.release()

        try:
            self._pool.submit(job)
        except RuntimeError:  # shut down meanwhile
            self._slots.release()
            refused()
            return False
        return True

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every job submitted so far has finished; False when the timeout came first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        held = 0
        try:
            while held < self.backlog:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self._slots.acquire(timeout=remaining):
                    return False
                held += 1
            return True
        finally:
            for _ in range(held):
                self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
