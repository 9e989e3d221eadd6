"""`memkv bench`: the command line of memkv.bench.runner (memkv against the raw path, in the same run)."""

from __future__ import annotations

import argparse
import json
import sys

from ..bench import common, runner
from ..bench.progress import Progress
from ..errors import InvalidArgument
from ..units import parse_size
from .main import Subparsers


def add_parser(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="put/get throughput and latency of memkv against the raw path",
        description=runner.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="file", help="backend to measure: file, tcp or nixl")
    parser.add_argument("--sizes", default="2,4,8,16MiB", help="block sizes (default 2,4,8,16MiB)")
    parser.add_argument("--count", type=int, default=common.DEFAULT_COUNT,
                        help=f"blocks per size and round (default {common.DEFAULT_COUNT})")
    parser.add_argument("--rounds", type=int, default=common.DEFAULT_ROUNDS,
                        help=f"rounds, alternating which path goes first (default {common.DEFAULT_ROUNDS})")
    parser.add_argument("--dir", default=None, help="directory for the store and the raw file (default: a temp dir)")
    parser.add_argument("--io", default="auto", choices=("auto", "uring", "threads", "both"),
                        help="file backend: device I/O engine; both = io_uring and the thread pool side by side")
    parser.add_argument("--keep", action="store_true", help="keep the store and raw file afterwards")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="also write the report with throughput and latency plots "
                                                      "(memkv against raw, per size) to FILE; needs the plot "
                                                      "extra (matplotlib)")
    parser.add_argument("--compare", default="", metavar="PEERS",
                        help="also measure, in the same run: redis (a redis-server started on 127.0.0.1), "
                             "mooncake (Mooncake Store: its master and a storage process started on 127.0.0.1, "
                             "TCP transfer engine, zero-copy put_from/get_into), disk (the device alone: "
                             "pwritev/preadv of each block to a file in --dir, O_DIRECT as the store), iperf3 "
                             "(the loopback limit of one native TCP stream) and, with --backend nixl, floor (the raw "
                             "NIXL transfer plus the hashes and the copy the spec requires, with no protocol); "
                             "comma-separated")
    parser.add_argument("--stored", default="0", metavar="SIZE",
                        help="keep SIZE of other blocks in the store for the whole run (e.g. 8GiB): is the rate "
                             "flat from an empty store to a full one? (file and tcp backends)")
    parser.add_argument("--batch", type=int, default=1, metavar="N",
                        help="nixl: blocks per call (default 1): memkv puts or gets N blocks in one request, "
                             "the raw path moves them in one NIXL transfer of N descriptors, as an engine moves "
                             "a request's blocks; must divide --count")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--clients", help="tcp: client process counts run at once, e.g. 1,2,4,8 (aggregate rates)")
    parser.add_argument("--shards", help="tcp: server process counts of the cluster measured, e.g. 1,2")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.clients or args.shards:  # several clients and shards at once (docs/scale.md)
        from ..bench.shards import run as run_scale

        if args.batch != 1:
            raise InvalidArgument("--batch is measured with one client (not with --clients or --shards)")

        return run_scale(args, common.parse_sizes(args.sizes))
    config = common.BenchConfig(backend=args.backend, sizes=tuple(common.parse_sizes(args.sizes)), count=args.count,
                         rounds=args.rounds, directory=args.dir, keep=args.keep,
                         io=("uring", "threads") if args.io == "both" else (args.io,),
                                compare=tuple(n.strip() for n in args.compare.split(",") if n.strip()),
                                stored=parse_size(args.stored), batch=args.batch)
    progress = Progress(config.rounds * len(config.sizes), "memkv bench", enabled=not args.quiet)
    report = runner.run_bench(config, progress)
    text = runner.format_report(report)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(text)
    if args.html:
        from ..bench.html import write_html

        write_html(report, text, args.html)
        print(f"memkv bench: wrote {args.html}", file=sys.stderr)
    return 0
