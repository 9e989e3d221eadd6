"""A power-cut simulator (the models: SQLite's crash-test VFS, TigerBeetle's storage simulator).

kill -9 keeps the page cache, so it cannot show what a power loss does. Here a listener of the
fault-injection layer remembers what stable storage holds: device bytes as of the last
fdatasync, and the index as of the last synced commit (a checkpoint, or a commit made with
synchronous=FULL). At a random write or commit the power goes: every device write not yet synced
survives or not, sector by sector, at random; the index comes back as of some commit between its
last synced one and its newest (WAL recovery keeps a prefix of the commits). Then the store is
reopened and checked against a model of the acknowledged operations (MKV-DUR-002, -004, -011).
"""

from __future__ import annotations

import dataclasses
import os
import random
import sqlite3
import threading

from ..errors import Corrupted, MemkvError
from ..transport import PutItem
from .engine import StorageEngine
from .fault_sweep import space_error
from .faultinject import FaultPlan, interpose

KiB = 1024
MiB = 1024 * KiB
SECTOR = 512
KEYS = 48
SQLITE_SYNCHRONOUS_FULL = 2


class PowerLost(BaseException):
    """Raised at the cut: nothing the store does after it reaches stable storage."""


class StableStorage:
    """What a power loss would leave, kept up to date from the fault layer's notifications."""

    def __init__(self, engine: StorageEngine, cut_at: int, rng: random.Random) -> None:
        self.device_path, self.index_path = engine.device.path, engine.index.path
        with open(self.device_path, "rb") as handle:
            self.image = bytearray(handle.read())
        self.unsynced: list[tuple[int, bytes]] = []
        self.commits: list[bytes] = [engine.index.db.serialize()]
        self.synced_commit = 0
        self.steps, self.cut_at, self.rng = 0, cut_at, rng
        self.dead = False
        self._lock = threading.Lock()

    def _step(self) -> None:
        if self.dead:
            raise PowerLost
        self.steps += 1
        if self.steps >= self.cut_at:
            self.dead = True
            raise PowerLost

    def wrote(self, offset: int, data: bytes) -> None:
        with self._lock:
            if not self.dead:
                self.unsynced.append((offset, data))
            self._step()

    def synced(self) -> None:
        with self._lock:
            if self.dead:
                raise PowerLost
            for offset, data in self.unsynced:
                self.image[offset : offset + len(data)] = data
            self.unsynced.clear()

    def committed(self, db: sqlite3.Connection) -> None:
        with self._lock:
            if self.dead:
                raise PowerLost
            self.commits.append(db.serialize())
            if db.execute("PRAGMA synchronous").fetchone()[0] >= SQLITE_SYNCHRONOUS_FULL:
                self.synced_commit = len(self.commits) - 1
            self._step()

    def checkpointed(self) -> None:
        with self._lock:
            if self.dead:
                raise PowerLost
            self.synced_commit = len(self.commits) - 1

    def cut(self) -> None:
        """Write the store's files as the power loss leaves them (the engine is already abandoned)."""
        image = bytearray(self.image)
        for offset, data in self.unsynced:
            for start in range(0, len(data), SECTOR):
                if self.rng.random() < 0.5:
                    image[offset + start : offset + start + SECTOR] = data[start : start + SECTOR]
        with open(self.device_path, "r+b") as handle:
            handle.write(image)
        chosen = self.rng.randint(self.synced_commit, len(self.commits) - 1)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(self.index_path + suffix):
                os.remove(self.index_path + suffix)
        with open(self.index_path, "wb") as handle:
            handle.write(self.commits[chosen])


def abandon(engine: StorageEngine) -> None:
    """Drop an engine as a power loss does: no flush, no close-time writes; files and lock released."""
    engine._closing = True
    engine._closed.set()
    engine._flusher.join()
    engine._io_pool.shutdown(wait=True)
    engine.index.db.close()
    engine.device.close()
    engine._store_lock.release()


@dataclasses.dataclass
class CutReport:
    cycles: int = 0
    operations: int = 0
    acknowledged_puts: int = 0
    removals: int = 0
    durable_checked: int = 0
    lost: int = 0
    resurrected: int = 0
    corrupt: int = 0
    torn_reads_refused: int = 0  # blocks put after the last flush whose bytes did not survive: CORRUPTED
    violations: list[str] = dataclasses.field(default_factory=list)


def _data(key: int, size: int) -> bytes:
    return random.Random(key * 1_000_003 + size).randbytes(size)


class _Model:
    """Per key: the last acknowledged state before the last completed flush began, and whether
    anything happened to it since (then either outcome is allowed, but never wrong bytes)."""

    def __init__(self) -> None:
        self.durable: dict[int, int | None] = {}  # key -> size stored, None: removed
        self.current: dict[int, int | None] = {}
        self.touched_since_flush: set[int] = set()
        # Removed with an acknowledgement and not put again since: gone for good (MKV-DUR-011).
        self.removed: set[int] = set()

    def record(self, key: int, size: int | None) -> None:
        self.current[key] = size
        self.touched_since_flush.add(key)
        if size is None:
            self.removed.add(key)

    def flush_started(self) -> dict[int, int | None]:
        return dict(self.current)

    def flush_completed(self, at_start: dict[int, int | None], touched_after_start: set[int]) -> None:
        self.durable = at_start
        self.touched_since_flush = set(touched_after_start)


def _present(engine: StorageEngine) -> dict[int, int]:
    with engine._lock:
        return {int.from_bytes(k, "big"): live.row.length for (ns, k), live in engine._blocks.items() if ns == "pc"}


def _one_cycle(directory: str, rng: random.Random, report: CutReport, io: str | None) -> None:
    engine = StorageEngine(directory, capacity=8 * MiB, unit=64 * KiB, flush_interval_s=3600.0, io=io)
    model = _Model()
    baseline = _present(engine)
    model.current = dict(baseline)
    model.durable = dict(baseline)
    model.touched_since_flush = set()
    stable = StableStorage(engine, cut_at=rng.randint(1, 120), rng=rng)
    interpose(engine, FaultPlan(), stable)
    pending_flush: tuple[dict[int, int | None], set[int]] | None = None
    try:
        while True:
            report.operations += 1
            key = rng.randrange(KEYS)
            choice = rng.random()
            if choice < 0.55:
                size = rng.choice([4 * KiB, 60 * KiB, 200 * KiB, 700 * KiB])
                before = _present(engine)
                model.touched_since_flush.add(key)
                model.removed.discard(key)
                with engine._lock:
                    evicts = engine.allocator.copy().allocate(size) is None
                if evicts:  # a cut inside this put may come after its eviction was committed
                    model.touched_since_flush |= set(before)
                result = engine.put("pc", [PutItem(key.to_bytes(16, "big"), _data(key, size))])[0]
                after = _present(engine)
                for gone in set(before) - set(after):
                    model.record(gone, None)  # evicted to make room
                if result.ok:
                    report.acknowledged_puts += key not in before
                    model.record(key, after[key])
            elif choice < 0.75:
                model.touched_since_flush.add(key)
                if engine.delete("pc", [key.to_bytes(16, "big")])[0].ok:
                    report.removals += 1
                    model.record(key, None)
            elif choice < 0.85:
                model.touched_since_flush.add(key)
                if engine.invalidate_keys("pc", [key.to_bytes(16, "big")]):
                    report.removals += 1
                    model.record(key, None)
            else:
                at_start = model.flush_started()
                model.touched_since_flush = set()
                pending_flush = (at_start, set())
                engine.flush()
                model.flush_completed(at_start, model.touched_since_flush)
                pending_flush = None
    except PowerLost:
        del pending_flush  # a flush the power cut interrupted did not complete
    except MemkvError as exc:
        report.violations.append(f"an operation failed before the cut: {exc}")
    abandon(engine)
    stable.cut()
    report.cycles += 1
    _verify(directory, model, report, io)


def _verify(directory: str, model: _Model, report: CutReport, io: str | None) -> None:
    engine = StorageEngine(directory, capacity=8 * MiB, unit=64 * KiB, flush_interval_s=3600.0, io=io)
    try:
        problem = space_error(engine)
        if problem:
            report.violations.append(f"space accounting after the cut: {problem}")
        shown = _present(engine)
        for key in range(KEYS):
            must = model.durable.get(key)
            settled = key not in model.touched_since_flush
            if key not in shown:
                if settled and must is not None:
                    report.lost += 1
                    report.violations.append(f"key {key} acknowledged before the last flush is lost")
                continue
            dest = bytearray(shown[key])
            try:
                result = engine.get_into("pc", [key.to_bytes(16, "big")], [dest])[0]
            except MemkvError as exc:
                report.violations.append(f"key {key} read raised {exc}")
                continue
            if key in model.removed or (settled and must is None):
                report.resurrected += 1
                report.violations.append(f"key {key} came back after its removal was acknowledged")
            elif result.ok and bytes(dest) != _data(key, shown[key]):
                report.corrupt += 1
                report.violations.append(f"key {key} read back wrong bytes")
            elif not result.ok and result.status is Corrupted.code:
                if settled:
                    report.corrupt += 1
                    report.violations.append(f"key {key} durable before the last flush reads CORRUPTED")
                else:
                    report.torn_reads_refused += 1
            elif settled:
                report.durable_checked += 1
    finally:
        engine.close()


def simulate(directory: str, cycles: int, seed: int = 0, io: str | None = None) -> CutReport:
    """`cycles` power cuts on one store, each at a random write or commit, each checked on reopen."""
    rng = random.Random(seed)
    report = CutReport()
    for _ in range(cycles):
        _one_cycle(directory, rng, report, io)
    return report

