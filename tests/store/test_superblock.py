"""On-disk headers: magic, format version (newer refused, MKV-DUR-005), checksum, binding."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import pytest
from helpers_store import MiB, key, open_engine, payload

from memkv.errors import Corrupted, ErrorCode, InvalidArgument, UnsupportedVersion
from memkv.store.index import INDEX_VERSION
from memkv.store.superblock import FORMAT_VERSION, MAGIC, SUPERBLOCK_SIZE, Superblock
from memkv.transport import PutItem


def test_round_trip() -> None:
    sb = Superblock.new(unit=1 * MiB, size=64 * MiB)
    raw = sb.encode()
    assert len(raw) == SUPERBLOCK_SIZE and raw.startswith(MAGIC)
    assert Superblock.decode(raw) == sb
    assert sb.version == FORMAT_VERSION and sb.data_offset == 1 * MiB


@pytest.mark.requirement("MKV-DUR-005")
def test_newer_format_version_is_refused() -> None:
    raw = bytearray(Superblock.new(unit=4096, size=MiB).encode())
    struct.pack_into("<H", raw, len(MAGIC), FORMAT_VERSION + 1)
    with pytest.raises(UnsupportedVersion) as info:
        Superblock.decode(bytes(raw))
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION


def test_bad_magic_and_damaged_header_are_refused() -> None:
    raw = bytearray(Superblock.new(unit=4096, size=MiB).encode())
    with pytest.raises(InvalidArgument):
        Superblock.decode(b"NOTMEMKV" + bytes(raw[8:]))
    raw[20] ^= 0xFF
    with pytest.raises(Corrupted):
        Superblock.decode(bytes(raw))
    with pytest.raises(Corrupted):
        Superblock.decode(bytes(raw[:10]))


def _store_with_block(directory: Path) -> None:
    engine = open_engine(directory)
    engine.put("ns", [PutItem(key(1), payload(1, 5000))])
    engine.close()


@pytest.mark.requirement("MKV-DUR-005")
def test_engine_refuses_a_device_with_a_newer_format(store_dir: Path) -> None:
    _store_with_block(store_dir)
    image = store_dir / "device.img"
    with image.open("r+b") as f:
        f.seek(len(MAGIC))
        f.write(struct.pack("<H", FORMAT_VERSION + 1))
    before = image.read_bytes()[:SUPERBLOCK_SIZE]
    with pytest.raises(UnsupportedVersion):
        open_engine(store_dir)
    assert image.read_bytes()[:SUPERBLOCK_SIZE] == before, "a refused open rewrote the header"
    # the refusal released the store lock and every file: a fixed store opens again
    with image.open("r+b") as f:
        f.seek(len(MAGIC))
        f.write(struct.pack("<H", FORMAT_VERSION))
    engine = open_engine(store_dir)
    assert engine.exists("ns", [key(1)]) == [True]
    engine.close()


@pytest.mark.requirement("MKV-DUR-005")
def test_engine_refuses_an_index_with_a_newer_version(store_dir: Path) -> None:
    _store_with_block(store_dir)
    db = sqlite3.connect(store_dir / "index.sqlite")
    db.execute("UPDATE meta SET value=? WHERE name='version'", (str(INDEX_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(UnsupportedVersion):
        open_engine(store_dir)
    db = sqlite3.connect(store_dir / "index.sqlite")
    assert db.execute("SELECT value FROM meta WHERE name='version'").fetchone()[0] == str(INDEX_VERSION + 1)
    db.execute("UPDATE meta SET value=? WHERE name='version'", (str(INDEX_VERSION),))
    db.commit()
    db.close()
    engine = open_engine(store_dir)
    assert engine.exists("ns", [key(1)]) == [True]
    engine.close()


def test_device_file_without_header_is_formatted(store_dir: Path) -> None:
    """A process that died between creating device.img and writing its header left zeros; its
    index lists no block. (With blocks listed the open is refused: tests/store/test_store_damage.py.)"""
    open_engine(store_dir).close()
    image = store_dir / "device.img"
    with image.open("r+b") as f:
        f.write(bytes(SUPERBLOCK_SIZE))
    engine = open_engine(store_dir)
    try:
        assert engine.stats()["used_bytes"] == 0
        assert engine.put("ns", [PutItem(key(2), payload(2, 10))])[0].ok
    finally:
        engine.close()


def test_format_device_formats_only_a_device_without_a_store(store_dir: Path, tmp_path: Path) -> None:
    """A raw device (here a file given as device_path) holding foreign bytes is refused unless
    format_device is set; with it set, a restart opens the store it made instead of wiping it."""
    device = tmp_path / "nvme0n1.img"
    device.write_bytes(b"\xa5" * (16 * MiB))
    with pytest.raises(InvalidArgument, match="bad magic"):
        open_engine(store_dir, device_path=str(device))
    engine = open_engine(store_dir, device_path=str(device), format_device=True)
    try:
        assert engine.stats()["blocks"] == 0
        assert engine.put("ns", [PutItem(key(1), payload(1, 100))])[0].ok
    finally:
        engine.close()
    engine = open_engine(store_dir, device_path=str(device), format_device=True)
    try:
        assert engine.exists("ns", [key(1)]) == [True]
    finally:
        engine.close()


def test_reopen_keeps_geometry_whatever_the_options(store_dir: Path) -> None:
    engine = open_engine(store_dir, capacity=8 * MiB, unit=128 * 1024)
    sb = engine.superblock
    engine.close()
    engine = open_engine(store_dir, capacity=32 * MiB, unit=1 * MiB)
    try:
        assert engine.superblock == sb
        assert engine.allocator.unit == 128 * 1024
    finally:
        engine.close()
