"""Refuse, don't repair: a damaged store is refused, modifying nothing (MKV-DUR-010).

Each case damages a store holding blocks, checks that opening it is refused with a message
naming the file and the way out, that no byte of any store file changed, and that the store
opens with every block once the damage is undone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers_store import MiB, key, open_engine, payload

from memkv.errors import Corrupted, ErrorCode, InvalidArgument, MemkvError
from memkv.store.superblock import SUPERBLOCK_SIZE, Superblock
from memkv.transport import PutItem

BLOCKS = 12


def _store_with_blocks(directory: Path) -> None:
    engine = open_engine(directory)
    assert all(r.ok for r in engine.put("ns", [PutItem(key(i), payload(i, 100_000)) for i in range(BLOCKS)]))
    engine.close()


def _fingerprint(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
            if p.name != "lock"}


def _all_blocks_read(directory: Path) -> None:
    engine = open_engine(directory)
    try:
        for i in range(BLOCKS):
            dest = bytearray(100_000)
            assert engine.get_into("ns", [key(i)], [dest])[0].ok and bytes(dest) == payload(i, 100_000)
    finally:
        engine.close()


def _zero_header(directory: Path) -> None:
    with (directory / "device.img").open("r+b") as f:
        f.write(bytes(SUPERBLOCK_SIZE))


def _foreign_header(directory: Path) -> None:
    with (directory / "device.img").open("r+b") as f:
        f.write(Superblock.new(256 * 1024, 16 * MiB).encode())


def _truncate_device(directory: Path) -> None:
    os.truncate(directory / "device.img", 8 * MiB)


def _garbage_index(directory: Path) -> None:
    with (directory / "index.sqlite").open("r+b") as f:
        f.seek(0)
        f.write(b"this is not an index" * 50)


DAMAGE: dict[str, tuple[Callable[[Path], None], type[MemkvError], str]] = {
    "zeroed superblock": (_zero_header, Corrupted, "device.img"),
    "foreign superblock": (_foreign_header, Corrupted, "index.sqlite"),
    "device shorter than its superblock": (_truncate_device, Corrupted, "device.img"),
    "unreadable index": (_garbage_index, Corrupted, "index.sqlite"),
}


@pytest.mark.requirement("MKV-DUR-010")
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_store_is_refused_and_left_as_it_is(store_dir: Path, tmp_path: Path, damage: str) -> None:
    _store_with_blocks(store_dir)
    backup = tmp_path / "backup"
    shutil.copytree(store_dir, backup)
    harm, error, named = DAMAGE[damage]
    harm(store_dir)
    damaged = _fingerprint(store_dir)
    for attempt in range(2):  # a second try is refused the same way: nothing was "repaired"
        with pytest.raises(error) as refused:
            open_engine(store_dir)
        message = str(refused.value)
        assert named in message and "memkv fsck" in message and "nothing was modified" in message, message
        assert _fingerprint(store_dir) == damaged, f"attempt {attempt} modified the store"
    shutil.rmtree(store_dir)
    shutil.copytree(backup, store_dir)
    _all_blocks_read(store_dir)


@pytest.mark.requirement("MKV-DUR-010")
def test_format_device_is_the_deliberate_way_to_erase(store_dir: Path) -> None:
    _store_with_blocks(store_dir)
    _zero_header(store_dir)
    engine = open_engine(store_dir, format_device=True)
    try:
        assert engine.stats()["blocks"] == 0 and engine.stats()["used_bytes"] == 0
    finally:
        engine.close()


@pytest.mark.requirement("MKV-DUR-010", "MKV-DUR-005")
def test_a_device_without_a_store_given_by_path_is_still_invalid_argument(store_dir: Path, tmp_path: Path) -> None:
    device = tmp_path / "disk.img"
    device.write_bytes(b"\xa5" * (16 * MiB))
    with pytest.raises(InvalidArgument) as refused:
        open_engine(store_dir, device_path=str(device))
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT and str(device) in str(refused.value)
