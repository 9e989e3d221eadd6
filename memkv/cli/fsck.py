"""`memkv fsck DIR`: check a stopped store offline (see memkv.store.fsck); --repair fixes what it can.

Exit status: 0 clean, 1 problems found (after --repair: problems that remain unrepaired).
"""

from __future__ import annotations

import argparse
import json

from ..store.fsck import fsck
from .main import Subparsers


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "fsck", help="check a stopped store offline: index against device, checksums, overlapping extents",
        description="Check a stopped store: the index, the device header and its length, every block's "
        "extents and checksum, every session's keys. Nothing is modified unless --repair is given.")
    parser.add_argument("directory", help="the store directory (memkv serve --data)")
    parser.add_argument("--device", help="the device, when not DIRECTORY/device.img")
    parser.add_argument("--no-checksums", action="store_true", help="skip reading every payload")
    parser.add_argument("--repair", action="store_true",
                        help="rewrite a zeroed header from the index's copy; drop damaged blocks from the index")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (schema memkv.fsck/1)")
    return parser


def run(args: argparse.Namespace) -> int:
    report = fsck(args.directory, args.device, checksums=not args.no_checksums, repair=args.repair)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"memkv fsck {report.directory}: {report.blocks} blocks, {report.sessions} sessions, "
              f"{report.bytes_checked} payload bytes checked")
        for finding in report.findings:
            print(f"  {finding.kind}: {finding.detail} -> {finding.repair}")
        for note in report.notes:
            print(f"  note: {note}")
        for repaired in report.repaired:
            print(f"  repaired: {repaired}")
        left = len(report.unrepaired())
        print("clean" if report.clean else f"{len(report.findings)} problems, {left} not repaired")
    return 0 if not report.unrepaired() else 1
