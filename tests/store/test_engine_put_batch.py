"""StorageEngine.put commits the index rows of the items of one call in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_store import KiB, MiB, check_space, key, open_engine, payload

from memkv.buffers import aligned_buffer
from memkv.checksum import payload_checksum
from memkv.errors import ErrorCode, MemkvError
from memkv.store.engine import CommitBatch, StorageEngine
from memkv.transport import ItemResult, PutItem


def _commits(engine: StorageEngine) -> list[str]:
    statements: list[str] = []
    engine.index.db.set_trace_callback(statements.append)
    return statements


def test_the_items_of_one_put_share_one_commit(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "store")
    try:
        statements = _commits(engine)
        results = engine.put("ns", [PutItem(key(i), payload(i, 256 * KiB)) for i in range(8)])
        assert [r.ok for r in results] == [True] * 8
        assert sum(s.strip().upper() == "COMMIT" for s in statements) == 1
        assert sum(s.startswith("INSERT INTO blocks") for s in statements) == 8
        for i in range(8):
            dest = bytearray(256 * KiB)
            assert engine.get_into("ns", [key(i)], [dest])[0].ok and bytes(dest) == payload(i, 256 * KiB)
        check_space(engine)
    finally:
        engine.close()
    reopened = open_engine(tmp_path / "store")  # the one commit made all eight durable across a restart
    try:
        assert all(reopened.exists("ns", [key(i) for i in range(8)]))
    finally:
        reopened.close()


def test_a_key_twice_in_one_call_is_a_reput_of_the_first(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "store")
    try:
        same, other = payload(1, 64 * KiB), payload(2, 64 * KiB)
        results = engine.put("ns", [PutItem(key(1), same), PutItem(key(1), same), PutItem(key(1), other)])
        assert [r.status for r in results] == [ErrorCode.OK, ErrorCode.OK, ErrorCode.KEY_CONFLICT]
        check_space(engine)
    finally:
        engine.close()


def test_a_failed_commit_fails_every_item_of_the_batch_and_frees_their_space(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = open_engine(tmp_path / "store")
    try:
        free = engine.stats()["free_bytes"]
        real = engine.index.insert_block
        calls = [0]

        def insert(row: object) -> None:
            calls[0] += 1
            if calls[0] == 2:
                raise sqlite3.OperationalError("database or disk is full")
            real(row)  # type: ignore[arg-type]

        monkeypatch.setattr(engine.index, "insert_block", insert)
        results = engine.put("ns", [PutItem(key(i), payload(i, 64 * KiB)) for i in range(3)])
        assert [r.status for r in results] == [ErrorCode.UNAVAILABLE] * 3
        assert engine.exists("ns", [key(i) for i in range(3)]) == [False] * 3
        assert engine.stats()["free_bytes"] == free
        monkeypatch.setattr(engine.index, "insert_block", real)
        assert all(r.ok for r in engine.put("ns", [PutItem(key(i), payload(i, 64 * KiB)) for i in range(3)]))
        check_space(engine)
    finally:
        engine.close()


def test_a_call_larger_than_free_space_commits_its_items_before_evicting(tmp_path: Path) -> None:
    """An item that must evict first commits the items before it, which eviction may then choose,
    as when each item was committed on its own."""
    engine = open_engine(tmp_path / "store")  # 16 MiB
    try:
        items = [PutItem(key(i), payload(i, 4 * MiB)) for i in range(6)]
        results = engine.put("ns", items)
        assert all(r.ok for r in results)
        assert engine.exists("ns", [key(5)]) == [True]
        check_space(engine)
    finally:
        engine.close()


def test_streamed_items_of_one_request_share_one_commit(tmp_path: Path) -> None:
    """What the TCP server does with the items of one PUT frame (put_stream with a batch)."""
    engine = open_engine(tmp_path / "store")
    try:
        statements = _commits(engine)
        results: list[ItemResult] = []
        batch = CommitBatch(results)
        data = [payload(i, 100_000) for i in range(3)]
        pieces = [aligned_buffer(64 * KiB), aligned_buffer(64 * KiB)]
        for i, item in enumerate(data):
            fill = _feeder(item)
            checksum = payload_checksum(item) ^ (1 if i == 1 else 0)  # the second one arrives damaged
            try:
                results.append(engine.put_stream("ns", key(i), len(item), fill, pieces, checksum=checksum,
                                                 batch=batch))
            except MemkvError as exc:
                results.append(ItemResult(exc.code, exc.message))
        assert not engine.exists("ns", [key(0)])[0]  # not visible before the commit
        engine.commit_batch(batch)
        assert [r.status for r in results] == [ErrorCode.OK, ErrorCode.CHECKSUM_MISMATCH, ErrorCode.OK]
        assert engine.exists("ns", [key(0), key(1), key(2)]) == [True, False, True]
        assert sum(s.strip().upper() == "COMMIT" for s in statements) == 1
        check_space(engine)
    finally:
        engine.close()


def _feeder(data: bytes) -> Callable[[memoryview], None]:
    pos = [0]

    def fill(view: memoryview) -> None:
        view[:] = data[pos[0] : pos[0] + len(view)]
        pos[0] += len(view)

    return fill
