"""Every file the store creates is 0600 and every directory 0700 (MKV-SEC-004)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import memkv
from memkv import PutItem


@pytest.mark.requirement("MKV-SEC-004")
def test_store_files_and_directories_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a permissive umask must not widen them
    try:
        store = tmp_path / "a" / "b" / "store"
        with memkv.connect(f"file://{store}?capacity=16MiB") as t:
            t.put([PutItem(bytes(16), b"block")])
            t.flush()
            created = [p for p in tmp_path.rglob("*")]
            modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in created}
    finally:
        os.umask(old)
    assert {"a", "a/b", "a/b/store", "a/b/store/index.sqlite", "a/b/store/device.img"} <= set(modes)
    assert any(name.endswith("-wal") for name in modes)
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (tmp_path / name).is_dir() else 0o600)}
    assert wrong == {}
