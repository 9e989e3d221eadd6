"""Refuse, don't repair: the checks that keep a damaged store from being opened (MKV-DUR-010).

Each refusal names the file, says that nothing was modified and gives the way out
(`memkv fsck DIR`, or an explicit `--format-device`).
"""

from __future__ import annotations

import os
import sqlite3

from ..errors import Corrupted
from .index import Index


class DamagedStore(Corrupted):
    """The store's files disagree or cannot be read; opening it could lose blocks."""


def open_index(path: str, directory: str) -> Index:
    """The index at `path`, refused with CORRUPTED naming it when SQLite finds it damaged."""
    existed = os.path.exists(path)
    try:
        index = Index(path)
    except sqlite3.DatabaseError as exc:
        raise DamagedStore(f"index {path} cannot be read ({exc}); nothing was modified. Inspect the "
                           f"store with `memkv fsck {directory}`; to start over, move the index away "
                           f"(its blocks are then forgotten)") from None
    if existed:
        try:
            verdict = index.db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            verdict = (str(exc),)
        if verdict is None or verdict[0] != "ok":
            index.close()
            raise DamagedStore(f"index {path} is damaged ({verdict[0] if verdict else 'no answer'}); "
                               f"nothing was modified. Inspect it with `memkv fsck {directory}`")
    return index


def check_device_length(path: str, actual: int, needed: int, directory: str) -> None:
    """A device shorter than its superblock says would put blocks past its end."""
    if actual < needed:
        raise DamagedStore(f"device {path} is {actual} bytes but its store needs {needed}; nothing was "
                           f"modified. Restore the device's full length, or inspect it with "
                           f"`memkv fsck {directory}`")


def refuse_zeroed_header(path: str, indexed: int, directory: str) -> None:
    raise DamagedStore(f"device {path} has a zeroed superblock but the index lists {indexed} blocks on "
                       f"it; nothing was modified. Inspect with `memkv fsck {directory}` (it can "
                       f"rewrite the superblock from the index); --format-device erases the store")
