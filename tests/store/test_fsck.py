"""`memkv fsck`: offline check and repair report (MKV-DUR-010's way out)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from helpers_store import extents_of, key, open_engine, payload

from memkv.cli.main import main
from memkv.errors import StoreLocked
from memkv.store.fsck import fsck
from memkv.store.index import pack_extents
from memkv.store.superblock import SUPERBLOCK_SIZE
from memkv.transport import PutItem

SIZE = 100_000


def _store(directory: Path, count: int = 6) -> None:
    engine = open_engine(directory)
    assert all(r.ok for r in engine.put("ns", [PutItem(key(i), payload(i, SIZE)) for i in range(count)]))
    engine.close()


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir() if p.name != "lock"}


def _reads(directory: Path, i: int) -> bool:
    engine = open_engine(directory)
    try:
        dest = bytearray(SIZE)
        return engine.get_into("ns", [key(i)], [dest])[0].ok and bytes(dest) == payload(i, SIZE)
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-010")
def test_a_healthy_store_is_clean_and_untouched(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _store(store_dir)
    before = _digest(store_dir)
    assert main(["fsck", str(store_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] and report["blocks"] == 6 and report["bytes_checked"] == 6 * SIZE
    assert _digest(store_dir) == before


@pytest.mark.requirement("MKV-DUR-010")
def test_a_zeroed_header_is_reported_then_rewritten_from_the_index(store_dir: Path) -> None:
    _store(store_dir)
    with (store_dir / "device.img").open("r+b") as f:
        f.write(bytes(SUPERBLOCK_SIZE))
    damaged = _digest(store_dir)
    report = fsck(str(store_dir))
    assert [f.kind for f in report.findings] == ["header-zeroed"] and "--repair" in report.findings[0].repair
    assert _digest(store_dir) == damaged, "a check without --repair modified the store"
    assert main(["fsck", str(store_dir), "--repair"]) == 0
    assert fsck(str(store_dir)).clean
    assert all(_reads(store_dir, i) for i in range(6))


@pytest.mark.requirement("MKV-DUR-010")
def test_a_damaged_payload_is_found_and_dropped_on_repair(store_dir: Path) -> None:
    _store(store_dir)
    engine = open_engine(store_dir)
    offset = extents_of(engine, "ns", key(2))[0].offset
    engine.close()
    with (store_dir / "device.img").open("r+b") as f:
        f.seek(offset + 100)
        f.write(b"\x00\xff" * 8)
    report = fsck(str(store_dir))
    assert [(f.kind, key(2).hex() in f.detail) for f in report.findings] == [("checksum-mismatch", True)]
    assert main(["fsck", str(store_dir), "--repair"]) == 0
    engine = open_engine(store_dir)
    try:
        assert engine.exists("ns", [key(i) for i in range(6)]) == [True, True, False, True, True, True]
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-010")
def test_overlapping_extents_are_found(store_dir: Path) -> None:
    _store(store_dir)
    engine = open_engine(store_dir)
    shared = extents_of(engine, "ns", key(1))
    engine.close()
    db = sqlite3.connect(store_dir / "index.sqlite")
    db.execute("UPDATE blocks SET extents=? WHERE key=?", (pack_extents(shared), key(4)))
    db.commit()
    db.close()
    kinds = {f.kind for f in fsck(str(store_dir), checksums=False).findings}
    assert kinds == {"extent-overlap"}


def test_fsck_refuses_a_store_in_use(store_dir: Path) -> None:
    _store(store_dir)
    engine = open_engine(store_dir)
    try:
        with pytest.raises(StoreLocked):
            fsck(str(store_dir))
    finally:
        engine.close()
