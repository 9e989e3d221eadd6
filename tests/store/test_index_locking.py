"""The index holds SQLite's locks for its life (exclusive locking mode) and still replays its WAL
after a crash (memkv/store/index.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from memkv.store.engine import StorageEngine
from memkv.store.index import Index

MiB = 1024 * 1024

_CRASHING_WRITER = """
import os, sys
from memkv.store.engine import StorageEngine
from memkv.transport import PutItem
engine = StorageEngine(sys.argv[1], capacity=16 * 2**20, unit=2**20, flush_interval_s=3600)
for n in range(3):
    assert engine.put("ns", [PutItem(bytes([n]) * 16, bytes([n]) * 2**20)])[0].ok
os._exit(0)  # no close, no flush: the rows are only in the WAL
"""


def test_the_index_keeps_its_locks_and_no_shared_memory_file(tmp_path: Path) -> None:
    index = Index(str(tmp_path / "index.sqlite"))
    try:
        assert index.db.execute("PRAGMA locking_mode").fetchone()[0] == "exclusive"
        assert index.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        index.set_meta("probe", "1")
        assert (tmp_path / "index.sqlite-wal").exists()
        assert not (tmp_path / "index.sqlite-shm").exists()
    finally:
        index.db.close()


def test_rows_committed_before_a_crash_are_replayed_from_the_wal(tmp_path: Path) -> None:
    store = tmp_path / "store"
    subprocess.run([sys.executable, "-P", "-c", _CRASHING_WRITER, str(store)], check=True, timeout=120,
                   env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    assert (store / "index.sqlite-wal").stat().st_size > 0
    engine = StorageEngine(str(store), capacity=16 * MiB, unit=MiB)
    try:
        out = bytearray(MiB)
        for n in range(3):
            assert engine.get_into("ns", [bytes([n]) * 16], [out])[0].ok
            assert out == bytes([n]) * MiB
    finally:
        engine.close()
