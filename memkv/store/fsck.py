"""`memkv fsck`: an offline check of a store, and the few repairs that lose nothing acknowledged.

Checks, without modifying anything: the store is not in use (its lock); the index opens and
passes SQLite's integrity check; the device header (magic, version, CRC) and its store id match
the index; the device is as long as its header says; every block's extents lie inside the data
area, on allocation-unit boundaries, cover its length and overlap no other block's; every
payload matches its checksum (unless skipped); every session's keys are stored.

Repairs, only with repair=True: a zeroed header is rewritten from the copy the index keeps;
blocks whose bytes fail their checksum, lie outside the device or overlap another block are
dropped from the index (their bytes are unreadable or shared; the cache refills them).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from typing import Any

from ..buffers import aligned_buffer
from ..checksum import payload_hasher
from ..errors import MemkvError
from .device import Device
from .index import BlockRow, Index
from .lock import StoreLock
from .superblock import SUPERBLOCK_RECORD, SUPERBLOCK_SIZE, Superblock

READ_PIECE = 4 * 1024 * 1024


@dataclasses.dataclass
class Finding:
    kind: str
    detail: str
    repair: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class FsckReport:
    directory: str
    device: str
    blocks: int = 0
    bytes_checked: int = 0
    sessions: int = 0
    findings: list[Finding] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)  # normal states worth knowing
    repaired: list[str] = dataclasses.field(default_factory=list)
    fixed: set[str] = dataclasses.field(default_factory=set)  # kinds of finding that --repair fixed

    def unrepaired(self) -> list[Finding]:
        return [f for f in self.findings if f.kind not in self.fixed]

    @property
    def clean(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {"schema": "memkv.fsck/1", "directory": self.directory, "device": self.device,
                "clean": self.clean, "blocks": self.blocks, "bytes_checked": self.bytes_checked,
                "sessions": self.sessions, "findings": [f.as_dict() for f in self.findings],
                "notes": self.notes, "repaired": self.repaired,
                "unrepaired": [f.as_dict() for f in self.unrepaired()]}


def fsck(directory: str, device_path: str | None = None, checksums: bool = True, repair: bool = False) -> FsckReport:
    directory = os.path.abspath(directory)
    device_path = device_path or os.path.join(directory, "device.img")
    report = FsckReport(directory, device_path)
    index_path = os.path.join(directory, "index.sqlite")
    if not os.path.exists(index_path):
        report.findings.append(Finding("no-index", f"{index_path} does not exist", "nothing to check"))
        return report
    lock = StoreLock(os.path.join(directory, "lock"))  # refuses with STORE_LOCKED while a server runs
    try:
        _check(report, index_path, device_path, checksums, repair)
    finally:
        lock.release()
    return report


def _open_index(report: FsckReport, path: str, repair: bool) -> Index | None:
    try:
        if not repair:  # read-only: a check modifies nothing, not even the journal mode
            db = sqlite3.connect(_read_only_uri(path), uri=True)
            verdict = db.execute("PRAGMA integrity_check").fetchone()
            db.close()
        index = Index(path) if repair else _read_only_index(path)
        if repair:
            verdict = index.db.execute("PRAGMA integrity_check").fetchone()
    except (sqlite3.DatabaseError, MemkvError) as exc:
        report.findings.append(Finding("index-unreadable", f"{path}: {exc}",
                                       "restore the index from a backup, or move it away to start empty"))
        return None
    if verdict is None or verdict[0] != "ok":
        report.findings.append(Finding("index-damaged", f"{path}: {verdict}",
                                       "restore the index from a backup, or move it away to start empty"))
    return index


def _read_only_index(path: str) -> Index:
    index = Index.__new__(Index)
    index.path = path
    index.db = sqlite3.connect(_read_only_uri(path), uri=True, check_same_thread=False)
    return index


def _read_only_uri(path: str) -> str:
    """Read-only; immutable (no -wal/-shm files made) unless a crash left a WAL to read."""
    wal = path + "-wal"
    pending = os.path.exists(wal) and os.path.getsize(wal) > 0
    return f"file:{path}?mode=ro" + ("" if pending else "&immutable=1")


def _check(report: FsckReport, index_path: str, device_path: str, checksums: bool, repair: bool) -> None:
    index = _open_index(report, index_path, repair)
    if index is None:
        return
    try:
        rows = list(index.all_blocks())
        report.blocks = len(rows)
        sessions = index.sessions()
        report.sessions = len(sessions)
        if not os.path.exists(device_path):
            report.findings.append(Finding("no-device", f"{device_path} does not exist",
                                           "give the device with --device, or restore it"))
            return
        device = Device(device_path)
        try:
            superblock = _check_header(report, index, device, repair)
            if superblock is None:
                return
            damaged = _check_blocks(report, rows, superblock, device, checksums)
            stored = {(r.namespace, r.key) for r in rows} - damaged
            for session in sessions:
                missing = [k for k in session.keys if (session.namespace, k) not in stored]
                if missing:  # normal after eviction or invalidation: resume truncates the chain there
                    report.notes.append(f"session {session.session_id} of {session.namespace}: "
                                        f"{len(missing)} of its keys are not stored")
            if repair and damaged:
                with index.atomic():
                    for namespace, key in sorted(damaged):
                        index.delete_block(namespace, key)
                report.repaired.append(f"dropped {len(damaged)} damaged blocks from the index")
                report.fixed |= {"extent-invalid", "extent-overlap", "checksum-mismatch"}
        finally:
            device.close()
    finally:
        index.close()


def _check_header(report: FsckReport, index: Index, device: Device, repair: bool) -> Superblock | None:
    header = aligned_buffer(SUPERBLOCK_SIZE)
    if device.size < SUPERBLOCK_SIZE:
        report.findings.append(Finding("device-short", f"{device.path} is {device.size} bytes", "restore the device"))
        return None
    device.read_into(0, header)
    record = index.get_meta(SUPERBLOCK_RECORD)
    if bytes(header) == bytes(SUPERBLOCK_SIZE):
        fix = ("`memkv fsck --repair` rewrites it from the index's copy" if record
               else "no copy in the index (made before this version): restore the device header")
        report.findings.append(Finding("header-zeroed", f"{device.path} has an all-zero header", fix))
        if not (repair and record):
            return None
        raw = bytes.fromhex(record)
        header[:] = raw + bytes(SUPERBLOCK_SIZE - len(raw))
        device.write(0, header)
        device.sync()
        report.repaired.append(f"rewrote the header of {device.path} from the index's copy")
        report.fixed.add("header-zeroed")
    try:
        superblock = Superblock.decode(bytes(header))
    except MemkvError as exc:
        report.findings.append(Finding("header-invalid", f"{device.path}: {exc.message}",
                                       "restore the device header; --format-device erases the store"))
        return None
    bound = index.get_meta("store_id")
    if bound is not None and bound != superblock.store_id.hex():
        report.findings.append(Finding("store-mismatch", f"index lists store {bound}, device holds "
                                       f"{superblock.store_id.hex()}", "pair the index with its own device"))
        return None
    if device.size < superblock.size:
        report.findings.append(Finding("device-short", f"{device.path} is {device.size} bytes, its header says "
                                       f"{superblock.size}", "restore the device's full length"))
        return None
    return superblock


def _check_blocks(report: FsckReport, rows: list[BlockRow], sb: Superblock, device: Device,
                  checksums: bool) -> set[tuple[str, bytes]]:
    """Ids of the blocks found damaged (outside the data area, overlapping, or failing checksums)."""
    damaged: set[tuple[str, bytes]] = set()
    owners: list[tuple[int, int, tuple[str, bytes]]] = []
    for row in rows:
        block_id = (row.namespace, row.key)
        name = f"{row.namespace}/{row.key.hex()}"
        inside = all(sb.data_offset <= e.offset and e.offset + e.length <= sb.size
                     and e.offset % sb.unit == 0 for e in row.extents)
        if not inside or sum(e.length for e in row.extents) < row.length:
            damaged.add(block_id)
            report.findings.append(Finding("extent-invalid", f"block {name} has extents outside the data area "
                                           "or shorter than its length", "--repair drops it"))
            continue
        owners.extend((e.offset, e.offset + e.length, block_id) for e in row.extents)
    owners.sort()
    reach, holder = -1, None  # the furthest end so far and its block: an extent starting before it overlaps
    for start, end, block_id in owners:
        if holder is not None and start < reach and holder != block_id:
            damaged |= {holder, block_id}
            report.findings.append(Finding("extent-overlap", f"blocks {holder[1].hex()} and {block_id[1].hex()} "
                                           "share device space", "--repair drops both"))
        if end > reach:
            reach, holder = end, block_id
    if checksums:
        for row in rows:
            if (row.namespace, row.key) in damaged:
                continue
            if _payload_checksum(device, row) != row.checksum:
                damaged.add((row.namespace, row.key))
                report.findings.append(Finding("checksum-mismatch", f"block {row.namespace}/{row.key.hex()} "
                                               "does not match its checksum", "--repair drops it"))
            report.bytes_checked += row.length
    return damaged


def _payload_checksum(device: Device, row: BlockRow) -> int:
    hasher = payload_hasher()
    buf = aligned_buffer(READ_PIECE)
    left = row.length
    for extent in row.extents:
        pos = 0
        while pos < extent.length and left > 0:
            size = min(READ_PIECE, extent.length - pos, left)
            view = buf[:size]
            device.read_into(extent.offset + pos, view)
            hasher.update(view)
            pos += size
            left -= size
    return int(hasher.intdigest())
