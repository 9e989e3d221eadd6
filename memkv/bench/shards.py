"""`memkv bench --backend tcp --clients 1,2,4,8 --shards 1,2`: aggregate throughput of N client processes
against a memkv cluster of S server processes, and against the raw socket peer in the same run.

Each (shards, clients) cell reports memkv and raw GB/s (median over rounds) and their ratio; the
shard scaling is the memkv rate at S shards over the rate at the first shard count, per client
count. Method and numbers: docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgument
from ..units import format_size

SCALE_TARGET_RATIO = 0.80  # aggregate memkv >= 0.80 of raw at every client count (issue 14)
SHARD_TARGET_SPEEDUP = 1.5  # shards=2 >= 1.5 x shards=1 where the CPU is the limit


def parse_counts(text: str, what: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidArgument(f"--{what} takes a comma list of counts, e.g. 1,2,4") from None
    if not counts or min(counts) < 1:
        raise InvalidArgument(f"--{what} takes counts of at least 1")
    return counts


def run_scale(sizes: Sequence[int], clients: Sequence[int], shards: Sequence[int], count: int, rounds: int,
              directory: str | None) -> list[dict[str, Any]]:
    from .tcp import run_clients

    rows: list[dict[str, Any]] = []
    for shard_count in shards:
        rows += run_clients(sizes, clients, count, rounds, directory, shards=shard_count)
    base: dict[tuple[int, int, str], float] = {}
    for row in rows:
        key = (row["clients"], row["size"], row["op"])
        base.setdefault(key, row["memkv"]["gb_per_s"])
        row["shard_speedup"] = row["memkv"]["gb_per_s"] / base[key]
    return rows


def format_scale(rows: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'shards':>6} {'clients':>7} {'size':>8} {'op':>4} {'memkv GB/s':>11} {'raw GB/s':>9} {'ratio':>6} "
             f"{'vs first shards':>15}"]
    for row in rows:
        lines.append(f"{row['shards']:>6} {row['clients']:>7} {format_size(row['size']):>8} {row['op']:>4} "
                     f"{row['memkv']['gb_per_s']:>11.2f} {row['raw']['gb_per_s']:>9.2f} {row['ratio']:>6.2f} "
                     f"{row['shard_speedup']:>15.2f}")
    worst = min(rows, key=lambda r: r["ratio"])
    lines.append(f"target: aggregate memkv >= {SCALE_TARGET_RATIO:.0%} of raw at every client count: "
                 + ("met" if worst["ratio"] >= SCALE_TARGET_RATIO else
                    f"NOT met (lowest {worst['ratio']:.2f}: {worst['shards']} shards, {worst['clients']} clients, "
                    f"{worst['op']})"))
    return "\n".join(lines)


def run(args: argparse.Namespace, sizes: Sequence[int]) -> int:
    """The --clients/--shards form of `memkv bench` (backend tcp only)."""
    if args.backend != "tcp":
        raise InvalidArgument("--clients and --shards measure the tcp backend: add --backend tcp")
    rows = run_scale(sizes, parse_counts(args.clients or "1", "clients"), parse_counts(args.shards or "1", "shards"),
                     args.count, args.rounds, args.dir)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_scale(rows))
    return 0


__all__ = ["format_scale", "parse_counts", "run", "run_scale"]
