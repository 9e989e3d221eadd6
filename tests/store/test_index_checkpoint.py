"""The index checkpoints its WAL in the engine's flush; an insert only after many without one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memkv.blocks import BlockMeta
from memkv.store import index as index_module
from memkv.store.allocator import Extent
from memkv.store.index import BlockRow, Index


def _row(i: int) -> BlockRow:
    return BlockRow("ns", i.to_bytes(16, "big"), 4096, i, BlockMeta(), [Extent(4096 * i, 4096)], time.time())


def test_inserts_leave_checkpoints_to_the_flush_until_many_went_without_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "CHECKPOINT_AFTER_INSERTS", 5)
    index = Index(str(tmp_path / "index.sqlite"))
    try:
        assert index.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # SQLite's own is off
        statements: list[str] = []
        index.db.set_trace_callback(statements.append)

        def checkpoints() -> int:
            return sum("wal_checkpoint" in s for s in statements)

        for i in range(5):
            index.insert_block(_row(i))
        assert checkpoints() == 0
        index.insert_block(_row(5))  # the sixth insert without a checkpoint makes one first
        assert checkpoints() == 1
        index.checkpoint()  # what the engine's flush does: the count starts again
        for i in range(6, 11):
            index.insert_block(_row(i))
        assert checkpoints() == 2
        with index.atomic():  # a batch of rows: the checkpoint comes before its transaction
            for i in range(11, 17):
                index.insert_block(_row(i))
        assert checkpoints() == 3
        with index.atomic():
            index.insert_block(_row(17))
        assert checkpoints() == 4 and index.block_count() == 18
    finally:
        index.close()
