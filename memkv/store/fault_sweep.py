"""The fault sweep: one scenario over every state-changing path, run once per injected fault.

The scenario puts (whole and streamed), reads, deletes, invalidates by keys and by namespace,
evicts, and takes a session through open, suspend (pins), resume, append and close. A counting
run first finds how many operations of each kind (device write, read, fdatasync, index change)
it makes; then the sweep reruns it on a fresh store with the fault at every N. After each step
it checks the one rule (a failed step changed nothing; a successful one changed only what it
says); at the end it reads every block, checks that space accounting is exact, closes, reopens
without faults and checks that the store shows exactly what it showed before: nothing lost,
nothing resurrected, no wrong bytes.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from ..buffers import aligned_buffer
from ..errors import MemkvError
from ..transport import PutItem
from .engine import StorageEngine
from .faultinject import FAULTS, FaultPlan, interpose

KiB = 1024
UNIT = 64 * KiB
CAPACITY = 1024 * KiB  # 15 data units: the scenario's later puts must evict
BLOCK = 100 * KiB  # two units
BlockId = tuple[str, bytes]


def block_key(i: int) -> bytes:
    return i.to_bytes(16, "big")


def block_bytes(block_id: BlockId) -> bytes:
    return random.Random(block_id[0].encode() + block_id[1]).randbytes(BLOCK)


def open_store(directory: str, io: str | None) -> StorageEngine:
    return StorageEngine(directory, capacity=CAPACITY, unit=UNIT, flush_interval_s=3600.0, io=io)


@dataclasses.dataclass
class Outcome:
    """What one run saw: rule violations, and the end-to-end counts the campaign reports."""

    violations: list[str] = dataclasses.field(default_factory=list)
    lost: int = 0
    resurrected: int = 0
    corrupt: int = 0
    failed_steps: int = 0


class _Checker:
    """Runs the scenario's steps against the model of what the store must show."""

    def __init__(self, engine: StorageEngine, outcome: Outcome) -> None:
        self.engine, self.outcome = engine, outcome
        self.universe: list[BlockId] = [("a", block_key(i)) for i in range(8)] + [("b", block_key(i)) for i in (10, 11)]
        self.present: set[BlockId] = set()
        self.session_id = ""

    def state(self) -> tuple[set[BlockId], list[tuple[str, str, tuple[bytes, ...]]], dict[Any, int]]:
        shown = {b for b in self.universe if self.engine.exists(b[0], [b[1]])[0]}
        sessions = sorted((s.session_id, s.state.value, s.keys) for s in self.engine.sessions("a"))
        with self.engine._lock:
            pins = dict(self.engine._pins)
        return shown, sessions, pins

    def step(self, name: str, action: Callable[[], bool], adds: set[BlockId] = frozenset(),  # type: ignore[assignment]
             removes: set[BlockId] = frozenset(), may_evict: bool = False) -> None:  # type: ignore[assignment]
        before = self.state()
        try:
            ok = action()
        except MemkvError:
            ok = False
        except Exception as exc:
            self.outcome.violations.append(f"step {name} raised {type(exc).__name__}: {exc}, not a spec error")
            ok = False
        after = self.state()
        if not ok:
            self.outcome.failed_steps += 1
            changed = after[0] - before[0] or (after[1:] != before[1:]) or (
                not may_evict and after[0] != before[0])
            if changed:
                self.outcome.violations.append(f"failed step {name} changed the store: {before} -> {after}")
        else:
            expected = (before[0] | adds) - removes
            evicted = expected - after[0]
            if after[0] - expected or (evicted and not (may_evict and not evicted & adds)):
                self.outcome.violations.append(f"step {name} left {sorted(after[0])}, expected {sorted(expected)}")
        self.present = after[0]

    def put(self, block_id: BlockId, streamed: bool = False) -> bool:
        data = block_bytes(block_id)
        if not streamed:
            return self.engine.put(block_id[0], [PutItem(block_id[1], data)])[0].ok
        pos = 0

        def fill(view: memoryview) -> None:
            nonlocal pos
            view[:] = data[pos : pos + len(view)]
            pos += len(view)

        buffers = [aligned_buffer(32 * KiB) for _ in range(2)]
        return self.engine.put_stream(block_id[0], block_id[1], len(data), fill, buffers, use_mapping=False).ok

    def read_ok(self, block_id: BlockId) -> bool:
        dest = bytearray(BLOCK)
        result = self.engine.get_into(block_id[0], [block_id[1]], [dest])[0]
        if result.ok and bytes(dest) != block_bytes(block_id):
            self.outcome.corrupt += 1
            self.outcome.violations.append(f"{block_id} read back wrong bytes")
        return result.ok

    def session(self, action: Callable[[], Any]) -> bool:
        action()
        return True

    def run(self) -> None:
        e, a = self.engine, [("a", block_key(i)) for i in range(8)]
        for block_id in a[:5]:
            self.step(f"put {block_id}", lambda b=block_id: self.put(b), adds={block_id})  # type: ignore[misc]
        self.step("get", lambda: self.read_ok(a[0]))
        self.step("delete", lambda: e.delete("a", [a[0][1]])[0].ok, removes={a[0]})
        self.step("invalidate keys", lambda: e.invalidate_keys("a", [a[1][1]]) == 1, removes={a[1]})

        def open_session() -> bool:
            self.session_id = e.open_session("a", 600.0, [a[2][1], a[3][1]]).session_id
            return True

        self.step("open session", open_session)
        self.step("suspend", lambda: self.session(lambda: e.suspend("a", self.session_id, 600.0)))
        for block_id in (("b", block_key(10)), ("b", block_key(11))):
            self.step(f"put {block_id}", lambda b=block_id: self.put(b), adds={block_id})  # type: ignore[misc]
        for i, block_id in enumerate(a[5:8]):
            self.step(f"put {block_id} (evicts)", lambda b=block_id, s=i == 1: self.put(b, streamed=s),  # type: ignore[misc]
                      adds={block_id}, may_evict=True)
        self.step("flush", lambda: self.session(e.flush))
        self.step("resume", lambda: self.session(lambda: e.resume("a", self.session_id)))
        self.step("append", lambda: self.session(lambda: e.append("a", self.session_id, [a[5][1]])))
        self.step("close session", lambda: self.session(lambda: e.close_session("a", self.session_id)))
        b_blocks = {b for b in self.present if b[0] == "b"}
        self.step("invalidate namespace", lambda: e.invalidate_namespace("b") == len(b_blocks), removes=b_blocks)


def space_error(engine: StorageEngine) -> str | None:
    """Why free runs and committed blocks do not tile the data area exactly, or None."""
    with engine._lock:
        alloc = engine.allocator
        pieces = [(r.offset, r.length) for r in alloc.runs()]
        pieces += [(x.offset, x.length) for live in engine._blocks.values() for x in live.row.extents]
    cursor = alloc.start
    for offset, length in sorted(pieces):
        if offset != cursor:
            return f"extent at {offset} overlaps or leaves a hole at {cursor}"
        cursor = offset + length
    return None if cursor == alloc.end else f"data area ends at {alloc.end}, tiling at {cursor}"


@dataclasses.dataclass
class SweepReport:
    io: str
    counts: dict[str, int]
    runs: int = 0
    faults_fired: int = 0
    failed_steps: int = 0
    lost: int = 0
    resurrected: int = 0
    corrupt: int = 0
    violations: list[str] = dataclasses.field(default_factory=list)


def run_once(directory: str, plan: FaultPlan, io: str | None) -> Outcome:
    outcome = Outcome()
    engine = open_store(directory, io)
    interpose(engine, plan)
    checker = _Checker(engine, outcome)
    try:
        checker.run()
        plan.kind = None  # the verification below must not be the faulted operation
        for block_id in sorted(checker.present):
            if not checker.read_ok(block_id):
                outcome.violations.append(f"{block_id} is listed but does not read")
        problem = space_error(engine)
        if problem:
            outcome.violations.append(f"space accounting: {problem}")
        before = checker.state()
    finally:
        try:
            engine.close()
        except MemkvError:  # the closing flush met the storage's failure; the restart shows the rest
            outcome.failed_steps += 1
    reopened = open_store(directory, io)
    try:
        checker.engine = reopened
        after = checker.state()
        outcome.lost = len(before[0] - after[0])
        outcome.resurrected = len(after[0] - before[0])
        if after[0] != before[0] or after[1] != before[1]:
            outcome.violations.append(f"after restart the store shows {after[:2]}, before {before[:2]}")
        for block_id in sorted(after[0]):
            checker.read_ok(block_id)
        problem = space_error(reopened)
        if problem:
            outcome.violations.append(f"space accounting after restart: {problem}")
    finally:
        reopened.close()
    return outcome


def plans(counts: dict[str, int], stride: int = 1) -> Iterator[FaultPlan]:
    """Every fault at every `stride`-th operation of its kind (stride 1: all of them)."""
    for kind, faults in FAULTS.items():
        for fault in faults:
            for at in range(1, counts.get(kind, 0) + 1, stride):
                yield FaultPlan(kind, at, fault)


def sweep(io: str | None, stride: int = 1, scratch: str | None = None) -> SweepReport:
    """The scenario once per fault; the report sums what the runs saw."""
    root = tempfile.mkdtemp(prefix="memkv-sweep-", dir=scratch)
    try:
        counting = FaultPlan()
        counted = run_once(root + "/count", counting, io)
        report = SweepReport(io=io or "auto", counts=dict(counting.counts))
        report.violations += counted.violations
        for n, plan in enumerate(plans(report.counts, stride)):
            outcome = run_once(f"{root}/{n}", plan, io)
            shutil.rmtree(f"{root}/{n}", ignore_errors=True)
            report.runs += 1
            report.faults_fired += plan.fired
            report.failed_steps += outcome.failed_steps
            report.lost += outcome.lost
            report.resurrected += outcome.resurrected
            report.corrupt += outcome.corrupt
            report.violations += [f"{plan.kind}#{plan.at} {plan.fault}: {v}" for v in outcome.violations]
        return report
    finally:
        shutil.rmtree(root, ignore_errors=True)
