"""`memkv doctor`: is this host ready for production? (see memkv.cli.doctor_checks)

Exit status: 0 when ready or degraded (1 for degraded with --strict), 1 when not ready.
"""

from __future__ import annotations

import argparse

from .doctor_checks import NOT_READY, READY, format_report, run_checks
from .main import Subparsers


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "doctor",
        help="check this host for production (RDMA, NVMe, hugepages, io_uring, O_DIRECT, NIXL, UCX)",
        description="Check this host for production: RDMA devices and ports, NVMe controllers and health, "
        "hugepages, io_uring, O_DIRECT on the data path, NIXL plugins and UCX transports. "
        "Exit status 0 when ready or degraded, 1 when not ready (or degraded with --strict).",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON (schema memkv.doctor/1)")
    parser.add_argument(
        "--data-path",
        metavar="PATH",
        help="directory or block device that will hold the store (default: $MEMKV_DATA_DIR, "
        "/var/lib/memkv, or the temp directory)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument("--sysfs-root", default="/sys", help=argparse.SUPPRESS)
    parser.add_argument("--procfs-root", default="/proc", help=argparse.SUPPRESS)
    return parser


def run(args: argparse.Namespace) -> int:
    report = run_checks(sysfs_root=args.sysfs_root, procfs_root=args.procfs_root, data_path=args.data_path)
    print(report.to_json() if args.json else format_report(report))
    if report.verdict == NOT_READY:
        return 1
    if args.strict and report.verdict != READY:
        return 1
    return 0
