"""Exclusive ownership of a store directory by one process (MKV-DUR-006).

A second opener is refused with STORE_LOCKED naming the holder, instead of sharing files
without coordination.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

from ..errors import StoreLocked


class StoreLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder()
            os.close(self.fd)
            raise StoreLocked(f"store is held by {holder}; stop that process or use another path") from None
        try:
            os.ftruncate(self.fd, 0)
            info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                    "command": " ".join(sys.argv)[:200]}
            os.pwrite(self.fd, json.dumps(info).encode(), 0)
        except BaseException:
            self.release()
            raise

    def _read_holder(self) -> str:
        # The holder writes its record just after taking the lock: give it a moment.
        for _ in range(20):
            try:
                raw = os.pread(self.fd, 4096, 0)
                info = json.loads(raw.decode()) if raw else None
            except (OSError, ValueError):
                info = None
            if isinstance(info, dict) and "pid" in info:
                return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command', '')!r})"
            time.sleep(0.005)
        return "another process (its record is unreadable)"

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
