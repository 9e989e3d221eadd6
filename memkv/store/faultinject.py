"""A storage layer for tests that fails at the Nth operation (the model: SQLite's I/O-error tests).

`interpose(engine, plan)` puts itself between an open engine and its storage: under the I/O
engine of the device (thread pool or io_uring, which still move the bytes), around fdatasync,
and around every SQLite statement that changes the index. `plan` counts operations by kind and
raises the chosen fault once, at the Nth operation of one kind. An optional listener sees every
write and every index commit: the power-cut simulator (powercut.py) builds on it.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import os
import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

from typing_extensions import Buffer

from .engine import StorageEngine
from .io_engines import IOEngine

# kind of operation -> faults that can be injected there
FAULTS: dict[str, tuple[str, ...]] = {
    "write": ("eio", "enospc", "short"),
    "read": ("eio",),
    "sync": ("eio",),
    "index": ("sqlite-full", "sqlite-ioerr"),
}
_SQLITE = {"sqlite-full": (13, "SQLITE_FULL", "database or disk is full"),
           "sqlite-ioerr": (10, "SQLITE_IOERR", "disk I/O error")}
_CHANGES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "COMMIT", "PRAGMA WAL_CHECKPOINT")


class InjectedFault(OSError):
    """An OSError raised on purpose (keeps its errno; the class says it was injected)."""


@dataclasses.dataclass
class FaultPlan:
    """Fail operation number `at` (1-based) of kind `kind` with `fault`; kind None only counts."""

    kind: str | None = None
    at: int = 0
    fault: str = "eio"
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    fired: bool = False

    def __post_init__(self) -> None:
        if self.kind is not None and self.fault not in FAULTS[self.kind]:
            raise ValueError(f"fault {self.fault!r} cannot happen on a {self.kind} operation")

    def step(self, kind: str) -> str | None:
        """Count one operation; the fault to raise now, if any."""
        self.counts[kind] += 1
        if not self.fired and kind == self.kind and self.counts[kind] == self.at:
            self.fired = True
            return self.fault
        return None


class StorageListener(Protocol):
    def wrote(self, offset: int, data: bytes) -> None: ...
    def synced(self) -> None: ...
    def committed(self, db: sqlite3.Connection) -> None: ...
    def checkpointed(self) -> None: ...


def _os_error(fault: str) -> InjectedFault:
    code = errno.ENOSPC if fault == "enospc" else errno.EIO
    return InjectedFault(code, f"injected {os.strerror(code)}")


def _sqlite_error(fault: str) -> sqlite3.Error:
    code, name, message = _SQLITE[fault]
    exc = sqlite3.OperationalError(f"{message} (injected)")
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = name
    return exc


class FaultyIO(IOEngine):
    """The device's real I/O engine, failing where the plan says; a short write really writes half."""

    def __init__(self, real: IOEngine, plan: FaultPlan, listener: StorageListener | None) -> None:
        super().__init__(real.depth, real.chunk_size)
        self.real, self.plan, self.listener = real, plan, listener
        self.name = f"faulty-{real.name}"

    def pwrite_batch(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer]) -> list[int]:
        fault = self.plan.step("write")
        if fault == "short":
            first = memoryview(buffers[0]).cast("B")
            half = len(first) // 2 // 4096 * 4096
            if half:
                self._write(fd, [offsets[0]], [first[:half]])
            raise _os_error("eio")
        if fault is not None:
            raise _os_error(fault)
        return self._write(fd, offsets, buffers)

    def _write(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer]) -> list[int]:
        done = self.real.pwrite_batch(fd, offsets, buffers)
        if self.listener is not None:
            for offset, buf in zip(offsets, buffers, strict=True):
                self.listener.wrote(offset, bytes(memoryview(buf).cast("B")))
        return done

    def pread_batch(self, fd: int, offsets: Sequence[int], buffers: Sequence[Buffer]) -> list[int]:
        fault = self.plan.step("read")
        if fault is not None:
            raise _os_error(fault)
        return self.real.pread_batch(fd, offsets, buffers)

    def close(self) -> None:
        self.real.close()


class FaultyConnection:
    """An sqlite3.Connection whose changing statements count as index operations of the plan."""

    def __init__(self, real: sqlite3.Connection, plan: FaultPlan, listener: StorageListener | None) -> None:
        self.real, self.plan, self.listener = real, plan, listener

    def _changing(self, sql: str) -> bool:
        return sql.lstrip().upper().startswith(_CHANGES)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        return self._run(sql, self.real.execute, args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        return self._run(sql, self.real.executemany, args)

    def _run(self, sql: str, run: Any, args: tuple[Any, ...]) -> sqlite3.Cursor:
        if not self._changing(sql):
            return run(sql, *args)  # type: ignore[no-any-return]
        fault = self.plan.step("index")
        if fault is not None:
            raise _sqlite_error(fault)
        cursor: sqlite3.Cursor = run(sql, *args)
        if self.listener is not None:
            if sql.lstrip().upper().startswith("PRAGMA WAL_CHECKPOINT"):
                self.listener.checkpointed()
            elif not self.real.in_transaction:
                self.listener.committed(self.real)
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def interpose(engine: StorageEngine, plan: FaultPlan, listener: StorageListener | None = None) -> None:
    """Route `engine`'s device I/O, fdatasync and index changes through `plan` (and `listener`)."""
    device = engine.device
    device.engine = FaultyIO(device.engine, plan, listener)
    real_sync = device.sync

    def sync() -> None:
        fault = plan.step("sync")
        if fault is not None:
            raise _os_error(fault)
        real_sync()
        if listener is not None:
            listener.synced()

    setattr(device, "sync", sync)  # noqa: B010 - an instance attribute shadows the method
    engine.index.db = FaultyConnection(engine.index.db, plan, listener)  # type: ignore[assignment]
